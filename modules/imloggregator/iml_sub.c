/*
 * iml_sub.c: protocol="subscribe" (see iml_sub.h): one BatchedReceiver call per router, kept open, whose batches go
 * into the instance's rings.
 *
 * Per router, two things are kept going: the connection, which lgr_h2 reconnects by itself with gRPC's backoff, and
 * the call, which this file makes again whenever it ends (a call made while the router is down waits for the next
 * connection, and ends with UNAVAILABLE if that attempt fails). The call's own backoff starts over when a batch
 * arrived or a connection became ready, so a router that keeps refusing the stream is not asked in a tight loop.
 *
 * Logging: one line per failure, at most LOG_BURST per LOG_WINDOW_MS per router (a router that keeps failing cannot
 * crowd out the first line about another). A connection that fails before it is ready is reported by on_state
 * ("unreachable: why"); a stream that ends on a ready connection, the loss of that connection included (its calls
 * end before the state changes), by on_call_close, and on_state then says nothing more about it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <event2/util.h>

#include "iml_sub.h"
#include "lgr.h"
#include "lgr_conf.h"
#include "lgr_grpc.h"
#include "lgr_h2.h"

#define PATH_RECEIVER  "/loggregator.v2.Egress/BatchedReceiver"
#define RESTART_MIN_MS 250u /* first delay before a call that ended is made again */
#define RESTART_MAX_MS 30000u
#define LOG_WINDOW_MS  10000u
#define LOG_BURST      3

struct router {
	struct iml_sub *sub;
	struct lgr_h2_client *cli;
	struct lgr_h2_call *call; /* the BatchedReceiver call; NULL between two */
	struct event *restart;
	struct lgr_ring *ring;
	struct lgr_ratelimit log_rl;  /* this router's failure lines */
	struct lgr_ratelimit back_rl; /* its "connected again" lines: never held back by the failures before them */
	unsigned backoff_ms;
	bool ready;	    /* the connection is up */
	bool failing;	    /* a failure was reported: the next connection is reported too */
	bool stream_logged; /* the end of a stream on the current connection was reported */
	char host[256];
	uint16_t port;
	char ip[IML_IP_MAX]; /* %fromhost-ip% of its envelopes: the host as configured */
	char label[300];     /* "router host:port" */
};

struct iml_sub {
	struct iml_sub_conf conf;
	char *name;
	uint8_t *request;
	size_t request_len;
	struct lgr_limits lim;
	struct lgr_logger lg;
	struct router *routers;
	size_t nrouters;
	bool stopped;
};

/* ---- calls ---------------------------------------------------------------------------------------------------- */

static void count(uint64_t *ctr, uint64_t n)
{
	__atomic_add_fetch(ctr, n, __ATOMIC_RELAXED);
}

/* A delay around ms: +-20 %, so that subscribers restarted together do not stay in step. */
static unsigned jitter(unsigned ms)
{
	uint32_t r;

	evutil_secure_rng_get_bytes(&r, sizeof(r));
	return (unsigned)((double)ms * (0.8 + 0.4 * (double)(r % 1001) / 1000.0));
}

static void retry_later(struct router *r)
{
	struct timeval tv;
	unsigned ms;

	r->backoff_ms = r->backoff_ms == 0 ? RESTART_MIN_MS : r->backoff_ms * 2;
	if (r->backoff_ms > RESTART_MAX_MS)
		r->backoff_ms = RESTART_MAX_MS;
	ms = jitter(r->backoff_ms);
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	event_add(r->restart, &tv);
}

static void on_call_message(struct lgr_h2_call *call, const uint8_t *msg, size_t len, void *ud)
{
	struct router *r = ud;
	struct iml_sub *sub = r->sub;
	int rc;

	(void)call;
	rc = iml_push_batch(r->ring, &sub->lim, msg, len, r->ip);
	if (rc == LGR_OK) {
		r->backoff_ms = 0; /* the stream works: a later end is retried promptly */
		return;
	}
	count(sub->conf.invalid, 1);
	lgr_logger_say(&sub->lg, &r->log_rl, LGR_LOG_WARNING, "%s: %zu-byte EnvelopeBatch refused: %s", r->label, len,
		lgr_strerror(rc));
}

static void on_call_close(struct lgr_h2_call *call, int status, const char *message, void *ud)
{
	struct router *r = ud;
	struct iml_sub *sub = r->sub;

	(void)call;
	r->call = NULL;
	if (sub->stopped)
		return;
	if (message == NULL)
		message = "";
	/* A call that waited for a connection attempt that failed: on_state reports the attempt. */
	if (r->ready || status != LGR_GRPC_UNAVAILABLE) {
		count(&sub->conf.ctr->errors, 1);
		r->stream_logged = r->ready;
		r->failing = true;
		lgr_logger_say(&sub->lg, &r->log_rl, LGR_LOG_WARNING, "%s: stream ended with %s%s%s; subscribing again",
			r->label, lgr_grpc_status_name(status), message[0] != '\0' ? ": " : "", message);
	}
	retry_later(r);
}

static const struct lgr_h2_call_handlers call_handlers = {
	.on_message = on_call_message,
	.on_close = on_call_close,
};

/* Makes the BatchedReceiver call: the request, then the half-close; the router streams until one side ends it. */
static void call_open(struct router *r)
{
	struct iml_sub *sub = r->sub;
	int rc;

	if (r->call != NULL || sub->stopped)
		return;
	r->stream_logged = false;
	rc = lgr_h2_client_call(r->cli, PATH_RECEIVER, &call_handlers, r, &r->call);
	if (rc == LGR_OK)
		rc = lgr_h2_call_send(r->call, sub->request, sub->request_len);
	if (rc == LGR_OK)
		rc = lgr_h2_call_close_send(r->call);
	if (rc == LGR_OK)
		return;
	lgr_logger_say(&sub->lg, &r->log_rl, LGR_LOG_WARNING, "%s: cannot subscribe: %s", r->label, lgr_strerror(rc));
	if (r->call != NULL)
		lgr_h2_call_cancel(r->call);
	r->call = NULL;
	retry_later(r);
}

static void on_restart(evutil_socket_t fd, short what, void *ud)
{
	(void)fd;
	(void)what;
	call_open(ud);
}

static void on_state(struct lgr_h2_client *cli, enum lgr_h2_state state, const char *why, void *ud)
{
	struct router *r = ud;
	struct iml_sub *sub = r->sub;

	(void)cli;
	if (sub->stopped)
		return;
	if (state == LGR_H2_READY) {
		count(&sub->conf.ctr->connects, 1);
		if (r->failing)
			lgr_logger_say(&sub->lg, &r->back_rl, LGR_LOG_INFO, "%s: connected again", r->label);
		r->ready = true;
		r->failing = false;
		r->stream_logged = false;
		r->backoff_ms = 0;
		/* a call waiting for its restart is made now, on this connection */
		if (r->call == NULL) {
			event_del(r->restart);
			call_open(r);
		}
		return;
	}
	if (state == LGR_H2_TRANSIENT_FAILURE && !(r->ready && r->stream_logged)) {
		count(&sub->conf.ctr->errors, 1);
		lgr_logger_say(&sub->lg, &r->log_rl, LGR_LOG_WARNING, "%s: %s: %s", r->label,
			r->ready ? "connection lost" : "unreachable", why);
		r->failing = true;
	}
	r->ready = false;
}

/* ---- lifecycle ------------------------------------------------------------------------------------------------ */

/* Host, port, %fromhost-ip% and label of a router from its "host:port" or "[v6]:port". */
static int parse_router(const char *spec, struct router *r)
{
	size_t hlen;

	if (lgr_conf_split_hostport(spec, r->host, sizeof(r->host), &r->port) != LGR_OK)
		return LGR_EINVAL;
	/* a longer name is cut: it is only shown as %fromhost-ip% */
	hlen = strlen(r->host);
	hlen = hlen < sizeof(r->ip) ? hlen : sizeof(r->ip) - 1;
	memcpy(r->ip, r->host, hlen);
	r->ip[hlen] = '\0';
	snprintf(r->label, sizeof(r->label), "router %s", spec);
	return LGR_OK;
}

static int router_start(struct iml_sub *sub, struct event_base *base, size_t i, const char *spec)
{
	struct router *r = &sub->routers[i];
	struct lgr_h2_client_config cc = {0};
	int rc;

	r->sub = sub;
	r->ring = sub->conf.rings[i % sub->conf.nrings];
	r->log_rl = (struct lgr_ratelimit)LGR_RATELIMIT_INIT(LOG_WINDOW_MS, LOG_BURST);
	r->back_rl = (struct lgr_ratelimit)LGR_RATELIMIT_INIT(LOG_WINDOW_MS, LOG_BURST);
	rc = parse_router(spec, r);
	if (rc != LGR_OK)
		return rc;
	r->restart = evtimer_new(base, on_restart, r);
	if (r->restart == NULL)
		return LGR_ENOMEM;
	cc.host = r->host;
	cc.port = r->port;
	cc.ssl_ctx = sub->conf.ssl_ctx;
	cc.server_name = sub->conf.ssl_ctx != NULL ? sub->conf.server_name : NULL;
	cc.max_message = sub->conf.max_message;
	cc.keepalive_ms = LGR_H2_DEFAULT_KEEPALIVE_MS;
	cc.on_state = on_state;
	cc.ud = r;
	cc.name = sub->name;
	rc = lgr_h2_client_new(base, &cc, &r->cli);
	if (rc != LGR_OK)
		return rc;
	call_open(r); /* waits for the first connection, which starts from the loop */
	return LGR_OK;
}

int iml_sub_new(struct event_base *base, const struct iml_sub_conf *conf, struct iml_sub **out)
{
	struct iml_sub *sub;
	int rc = LGR_EINVAL;

	*out = NULL;
	if (conf->nrouters == 0 || conf->rings == NULL || conf->nrings == 0 || conf->ctr == NULL ||
		conf->invalid == NULL || conf->request == NULL)
		return LGR_EINVAL;
	sub = calloc(1, sizeof(*sub));
	if (sub == NULL)
		return LGR_ENOMEM;
	sub->conf = *conf;
	sub->conf.routers = NULL; /* copied into the routers below */
	sub->lim.max_message = conf->max_message;
	lgr_limits_resolve(&sub->lim);
	sub->conf.max_message = sub->lim.max_message;
	rc = LGR_ENOMEM;
	sub->name = strdup(conf->name != NULL ? conf->name : "imloggregator");
	sub->request = malloc(conf->request_len > 0 ? conf->request_len : 1);
	sub->routers = calloc(conf->nrouters, sizeof(*sub->routers));
	if (sub->name == NULL || sub->request == NULL || sub->routers == NULL)
		goto out;
	sub->lg = (struct lgr_logger){sub->name, NULL, NULL};
	memcpy(sub->request, conf->request, conf->request_len);
	sub->request_len = conf->request_len;
	sub->conf.request = sub->request;
	for (size_t i = 0; i < conf->nrouters; i++) {
		sub->nrouters = i + 1; /* so that a failure frees what this one made */
		rc = router_start(sub, base, i, conf->routers[i]);
		if (rc != LGR_OK)
			goto out;
	}
	*out = sub;
	sub = NULL;
	rc = LGR_OK;
out:
	iml_sub_free(sub);
	return rc;
}

void iml_sub_stop(struct iml_sub *sub)
{
	if (sub == NULL || sub->stopped)
		return;
	sub->stopped = true; /* the calls' on_close below make nothing again */
	for (size_t i = 0; i < sub->nrouters; i++) {
		struct router *r = &sub->routers[i];

		if (r->restart != NULL)
			event_del(r->restart);
		lgr_h2_client_free(r->cli); /* its call ends (on_close, CANCELLED) */
		r->cli = NULL;
		r->call = NULL;
	}
}

void iml_sub_free(struct iml_sub *sub)
{
	if (sub == NULL)
		return;
	iml_sub_stop(sub);
	for (size_t i = 0; i < sub->nrouters; i++) {
		if (sub->routers[i].restart != NULL)
			event_free(sub->routers[i].restart);
	}
	free(sub->routers);
	free(sub->request);
	free(sub->name);
	free(sub);
}
