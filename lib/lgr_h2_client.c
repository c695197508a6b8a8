/*
 * lgr_h2_client.c: the gRPC client half of lgr_h2: one channel to one target with reconnection and backoff,
 * non-blocking name resolution, keepalive, calls with bounded send queues, statuses from trailers. See lgr_h2.h.
 *
 * New calls go to one connection at a time. Calls made while it is not ready wait in a list and are started when
 * the next connection comes up; the attempt failing ends them with UNAVAILABLE, as does the loss of the connection
 * they run on. After a GOAWAY the old connection keeps the streams the server still serves until they end, while a
 * new connection is opened at once for new calls (and for streams the server refused unseen, which restart).
 */
#include "lgr_h2.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>

#include "lgr_h2_internal.h"
#include "lgr_tls.h"

/* ---- the channel --------------------------------------------------------------------------------------------- */

static void set_state(struct lgr_h2_client *cli, enum lgr_h2_state st, const char *why)
{
	if (cli->state == st || cli->freeing)
		return;
	cli->state = st;
	if (cli->cfg.on_state != NULL)
		cli->cfg.on_state(cli, st, why, cli->cfg.ud);
}

static void cli_enter(void *owner)
{
	((struct lgr_h2_client *)owner)->depth++;
}

static void destroy(struct lgr_h2_client *cli);

static void cli_leave(void *owner)
{
	struct lgr_h2_client *cli = owner;

	if (--cli->depth == 0 && cli->freeing)
		destroy(cli);
}

/*
 * The server takes no new streams on cc: cc finishes the ones it has while new calls go to a new connection,
 * opened at once. A server that found our pings too frequent (grpc-go's too_many_pings) gets them half as often,
 * as grpc-go's clients do.
 */
void lgr_h2__client_goaway(struct lgr_h2__cli_conn *cc, const nghttp2_goaway *ga)
{
	struct lgr_h2_client *cli = cc->cli;

	if (ga->error_code == NGHTTP2_ENHANCE_YOUR_CALM && ga->opaque_data_len == 14 &&
		memcmp(ga->opaque_data, "too_many_pings", 14) == 0 && cli->cfg.keepalive_ms != LGR_H2_NEVER &&
		cli->cfg.keepalive_ms < UINT32_MAX / 2) {
		cli->cfg.keepalive_ms *= 2;
		lgr_log(LGR_LOG_WARNING, "%s: %s: server refuses pings this often, pinging every %u ms now", cli->name,
			cc->c.peer, cli->cfg.keepalive_ms);
	}
	if (cc->goaway)
		return;
	cc->goaway = true;
	if (cli->conn != cc)
		return;
	cli->conn = NULL;
	cc->prev = NULL;
	cc->next = cli->draining;
	if (cli->draining != NULL)
		cli->draining->prev = cc;
	cli->draining = cc;
	if (!cli->freeing) {
		set_state(cli, LGR_H2_CONNECTING, "");
		lgr_h2__client_retry(cli, 0);
	}
}

static int conn_up(struct lgr_h2__conn *c)
{
	struct lgr_h2__cli_conn *cc = (struct lgr_h2__cli_conn *)c;
	struct lgr_h2_client *cli = cc->cli;

	if (nghttp2_session_client_new2(&c->ng, cli->cbs, cc, cli->opt) != 0)
		return LGR_ENOMEM;
	lgr_h2__conn_keepalive(c, cli->cfg.keepalive_ms, cli->cfg.keepalive_timeout_ms);
	if (lgr_h2__conn_settings(c, 0, cli->cfg.stream_window, cli->cfg.conn_window, true) != LGR_OK)
		return LGR_ENOMEM;
	/* Waiting calls start in the order they were made, without waiting for the server's SETTINGS. */
	while (cli->waiting != NULL) {
		struct lgr_h2_call *call = cli->waiting;

		while (call->next != NULL)
			call = call->next;
		lgr_h2__call_unlink(&cli->waiting, call);
		if (lgr_h2__call_start(cc, call) != LGR_OK) {
			lgr_h2__call_end(call, LGR_GRPC_UNAVAILABLE, "cannot start the stream");
			lgr_h2__call_free(call);
		}
	}
	return LGR_OK;
}

/*
 * The server's SETTINGS arrived: the connection works, TLS included (in TLS 1.3 a refused client certificate shows
 * only after the client's handshake is done), so the client is READY and its backoff starts over.
 */
void lgr_h2__client_ready(struct lgr_h2__cli_conn *cc)
{
	struct lgr_h2_client *cli = cc->cli;

	if (cc->ready)
		return;
	cc->ready = true;
	if (cli->conn != cc)
		return;
	cli->backoff_ms = 0;
	set_state(cli, LGR_H2_READY, "");
}

void lgr_h2__client_retry(struct lgr_h2_client *cli, unsigned ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

	event_del(cli->retry);
	event_add(cli->retry, &tv);
}

/* A random number below n (n > 0); secure randomness is cheap enough at connection rate. */
static uint32_t random_below(uint32_t n)
{
	uint32_t r;

	evutil_secure_rng_get_bytes(&r, sizeof(r));
	return r % n;
}

/* The next delay: min, then x1.6 up to max, with +-20 % jitter (gRPC's connection backoff). */
static unsigned next_backoff(struct lgr_h2_client *cli)
{
	unsigned base = cli->backoff_ms == 0 ? cli->cfg.backoff_min_ms : cli->backoff_ms;
	double jitter = 0.8 + 0.4 * (double)random_below(1001) / 1000.0;
	unsigned ms = (unsigned)(base * jitter);

	cli->backoff_ms = base * 8 / 5 > cli->cfg.backoff_max_ms ? cli->cfg.backoff_max_ms : base * 8 / 5;
	return ms;
}

/* Ends calls that were waiting for an attempt that failed. */
static void fail_waiting(struct lgr_h2_client *cli, const char *why)
{
	struct lgr_h2_call *list = cli->waiting;

	/* Calls made by the handlers below wait for the next attempt, not this one. */
	cli->waiting = NULL;
	while (list != NULL) {
		struct lgr_h2_call *call = list;

		lgr_h2__call_unlink(&list, call);
		lgr_h2__call_end(call, LGR_GRPC_UNAVAILABLE, why);
		lgr_h2__call_free(call);
	}
}

/* The level of the transport's line about a failure that on_state reports too: the owner's to log, if it has one. */
static enum lgr_log_level failure_level(const struct lgr_h2_client *cli, enum lgr_log_level level)
{
	return cli->cfg.on_state != NULL ? LGR_LOG_DEBUG : level;
}

static void conn_down(struct lgr_h2__conn *c)
{
	struct lgr_h2__cli_conn *cc = (struct lgr_h2__cli_conn *)c;
	struct lgr_h2_client *cli = cc->cli;
	bool current = cli->conn == cc;
	bool was_up = cc->ready;
	bool graceful = c->level == LGR_LOG_DEBUG;
	char why[sizeof(c->why) + 16];

	snprintf(why, sizeof(why), "%s", c->why);
	/* only the current connection's end changes the state; a draining one's is the transport's to report */
	lgr_log(current && !cli->freeing ? failure_level(cli, c->level) : c->level, "%s: %s: %s", cli->name, c->peer,
		c->why);
	if (current) {
		cli->conn = NULL;
	} else {
		if (cc->prev != NULL)
			cc->prev->next = cc->next;
		else
			cli->draining = cc->next;
		if (cc->next != NULL)
			cc->next->prev = cc->prev;
	}
	for (struct lgr_h2_call *call = cc->calls; call != NULL; call = call->next)
		lgr_h2__call_end(call, LGR_GRPC_UNAVAILABLE, why);
	while (cc->calls != NULL) {
		struct lgr_h2_call *call = cc->calls;

		lgr_h2__call_unlink(&cc->calls, call);
		lgr_h2__call_free(call);
	}
	lgr_h2__conn_cleanup(c);
	free(cc);
	/* The end of a draining connection changes nothing else: its successor is already under way. */
	if (cli->freeing || !current)
		return;
	if (!was_up)
		fail_waiting(cli, why);
	/* A connection that ended gracefully (idle close) is replaced at once; a failure waits. */
	if (was_up && graceful) {
		set_state(cli, LGR_H2_CONNECTING, "");
		lgr_h2__client_retry(cli, 0);
	} else {
		set_state(cli, LGR_H2_TRANSIENT_FAILURE, why);
		lgr_h2__client_retry(cli, next_backoff(cli));
	}
}

static const struct lgr_h2__conn_ops conn_ops = {
	.enter = cli_enter,
	.leave = cli_leave,
	.up = conn_up,
	.flushed = lgr_h2__calls_flushed,
	.down = conn_down,
};

/* ---- connecting ---------------------------------------------------------------------------------------------- */

static void attempt_failed(struct lgr_h2_client *cli, const char *why)
{
	lgr_log(failure_level(cli, LGR_LOG_WARNING), "%s: %s:%s: %s", cli->name, cli->host, cli->port, why);
	fail_waiting(cli, why);
	set_state(cli, LGR_H2_TRANSIENT_FAILURE, why);
	lgr_h2__client_retry(cli, next_backoff(cli));
}

static void connect_to(struct lgr_h2_client *cli, const struct sockaddr *sa, int salen)
{
	int opts = BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS;
	struct lgr_h2__cli_conn *cc = calloc(1, sizeof(*cc));
	struct bufferevent *bev = NULL;
	SSL *ssl = NULL;

	if (cc == NULL)
		goto out;
	if (cli->cfg.ssl_ctx != NULL) {
		ssl = lgr_tls_client_ssl(cli->cfg.ssl_ctx, cli->server_name);
		if (ssl == NULL)
			goto out;
		bev = bufferevent_openssl_socket_new(cli->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING, opts);
	} else {
		bev = bufferevent_socket_new(cli->base, -1, opts);
	}
	if (bev == NULL)
		goto out;
	ssl = NULL; /* ownership transferred to bev */
	cc->cli = cli;
	snprintf(cc->c.peer, sizeof(cc->c.peer), "%s:%s", cli->host, cli->port);
	if (lgr_h2__conn_init(&cc->c, cli->base, bev, bufferevent_openssl_get_ssl(bev), &conn_ops, cli,
		    cli->cfg.connect_ms) != LGR_OK)
		goto out;
	bev = NULL;
	cli->conn = cc;
	cc = NULL; /* owned by the client */
	/* Failures of the connect itself are reported through the event loop, like later ones. */
	if (bufferevent_socket_connect(cli->conn->c.bev, sa, salen) != 0)
		lgr_h2__conn_kill(&cli->conn->c, LGR_LOG_WARNING, "cannot connect: %s",
			evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
out:
	if (bev != NULL)
		bufferevent_free(bev);
	if (ssl != NULL)
		SSL_free(ssl);
	if (cc != NULL || cli->conn == NULL) {
		free(cc);
		attempt_failed(cli, "cannot set up a connection: out of memory");
	}
}

static void on_resolved(int result, struct evutil_addrinfo *res, void *arg)
{
	struct lgr_h2_client *cli;
	struct evutil_addrinfo *pick;
	int n = 0;

	/* A cancelled request (client being freed) must not touch the client. */
	if (result == EVUTIL_EAI_CANCEL)
		return;
	cli = arg;
	cli->depth++;
	cli->dns_req = NULL;
	if (result != 0 || res == NULL) {
		char why[192];

		snprintf(why, sizeof(why), "cannot resolve: %s", evutil_gai_strerror(result));
		attempt_failed(cli, why);
		goto out;
	}
	/* A name with several addresses spreads clients over them (routers behind one DNS name). */
	for (pick = res; pick != NULL; pick = pick->ai_next)
		n++;
	pick = res;
	for (uint32_t i = random_below((uint32_t)n); i > 0; i--)
		pick = pick->ai_next;
	connect_to(cli, pick->ai_addr, (int)pick->ai_addrlen);
out:
	if (res != NULL)
		evutil_freeaddrinfo(res);
	cli_leave(cli);
}

/* A numeric host needs no resolver (and works where /etc/resolv.conf is missing). */
static bool numeric(const struct lgr_h2_client *cli, struct sockaddr_storage *ss, int *sslen)
{
	char spec[LGR_H2__MAX_HOST + 16];

	snprintf(spec, sizeof(spec), strchr(cli->host, ':') != NULL ? "[%s]:%s" : "%s:%s", cli->host, cli->port);
	*sslen = sizeof(*ss);
	return evutil_parse_sockaddr_port(spec, (struct sockaddr *)ss, sslen) == 0;
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
	struct lgr_h2_client *cli = arg;
	struct evutil_addrinfo hints = {0};
	struct sockaddr_storage ss;
	int sslen;

	cli->depth++;
	if (cli->conn != NULL || cli->dns_req != NULL || cli->freeing)
		goto out;
	set_state(cli, LGR_H2_CONNECTING, "");
	if (numeric(cli, &ss, &sslen)) {
		connect_to(cli, (struct sockaddr *)&ss, sslen);
		goto out;
	}
	if (cli->dns == NULL) {
		cli->dns =
			evdns_base_new(cli->base, EVDNS_BASE_INITIALIZE_NAMESERVERS | EVDNS_BASE_DISABLE_WHEN_INACTIVE);
		if (cli->dns == NULL) {
			attempt_failed(cli, "cannot set up name resolution");
			goto out;
		}
	}
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	/* Numeric hosts and /etc/hosts entries are answered at once, through on_resolved. */
	cli->dns_req = evdns_getaddrinfo(cli->dns, cli->host, cli->port, &hints, on_resolved, cli);
out:
	cli_leave(cli);
}

/* ---- public ---------------------------------------------------------------------------------------------------- */

int lgr_h2_client_call(struct lgr_h2_client *cli, const char *path, const struct lgr_h2_call_handlers *handlers,
	void *ud, struct lgr_h2_call **out)
{
	static const struct lgr_h2_call_handlers none;
	struct lgr_h2_call *call = NULL;
	int rc = LGR_EINVAL;

	*out = NULL;
	if (cli->freeing || path == NULL || path[0] != '/' || strlen(path) >= LGR_H2_MAX_PATH)
		goto out;
	rc = LGR_ENOMEM;
	call = calloc(1, sizeof(*call));
	if (call == NULL || lgr_h2__outq_init(&call->q, cli->cfg.max_send_queue) != LGR_OK)
		goto out;
	lgr_grpc_reader_init(&call->reader, cli->cfg.max_message);
	call->cli = cli;
	call->h = handlers != NULL ? handlers : &none;
	call->ud = ud;
	call->grpc_status = -1;
	snprintf(call->path, sizeof(call->path), "%s", path);
	rc = LGR_OK;
	if (cli->conn != NULL && cli->conn->c.ng != NULL && !cli->conn->goaway && !cli->conn->c.dead)
		rc = lgr_h2__call_start(cli->conn, call);
	else
		lgr_h2__call_link(&cli->waiting, call);
	if (rc == LGR_OK) {
		*out = call;
		call = NULL; /* owned by the client until on_close */
	}
out:
	if (call != NULL)
		lgr_h2__call_free(call);
	return rc;
}

enum lgr_h2_state lgr_h2_client_state(const struct lgr_h2_client *cli)
{
	return cli->state;
}

static void destroy(struct lgr_h2_client *cli)
{
	cli->depth++; /* handlers below must not recurse into destroy */
	if (cli->dns_req != NULL)
		evdns_getaddrinfo_cancel(cli->dns_req);
	cli->dns_req = NULL;
	while (cli->conn != NULL || cli->draining != NULL) {
		struct lgr_h2__cli_conn *cc = cli->conn != NULL ? cli->conn : cli->draining;

		cc->c.dead = true;
		cc->c.level = LGR_LOG_DEBUG;
		snprintf(cc->c.why, sizeof(cc->c.why), "client closed");
		conn_down(&cc->c);
	}
	while (cli->waiting != NULL) {
		struct lgr_h2_call *call = cli->waiting;

		lgr_h2__call_unlink(&cli->waiting, call);
		lgr_h2__call_free(call);
	}
	if (cli->dns != NULL)
		evdns_base_free(cli->dns, 0);
	if (cli->retry != NULL)
		event_free(cli->retry);
	if (cli->cbs != NULL)
		nghttp2_session_callbacks_del(cli->cbs);
	if (cli->opt != NULL)
		nghttp2_option_del(cli->opt);
	free(cli);
}

void lgr_h2_client_free(struct lgr_h2_client *cli)
{
	if (cli == NULL || cli->freeing)
		return;
	/* Every call hears of its end now, even when the memory goes later. */
	for (struct lgr_h2_call *call = cli->waiting; call != NULL; call = call->next)
		lgr_h2__call_end(call, LGR_GRPC_CANCELLED, "client closed");
	if (cli->conn != NULL) {
		for (struct lgr_h2_call *call = cli->conn->calls; call != NULL; call = call->next)
			lgr_h2__call_end(call, LGR_GRPC_CANCELLED, "client closed");
	}
	for (struct lgr_h2__cli_conn *cc = cli->draining; cc != NULL; cc = cc->next) {
		for (struct lgr_h2_call *call = cc->calls; call != NULL; call = call->next)
			lgr_h2__call_end(call, LGR_GRPC_CANCELLED, "client closed");
	}
	cli->freeing = true;
	if (cli->depth == 0)
		destroy(cli);
}

static void resolve_defaults(struct lgr_h2_client_config *cfg)
{
	if (cfg->max_message == 0)
		cfg->max_message = LGR_LIMITS_DEFAULT_MESSAGE;
	if (cfg->stream_window == 0)
		cfg->stream_window = LGR_H2_DEFAULT_STREAM_WINDOW;
	if (cfg->conn_window == 0)
		cfg->conn_window = LGR_H2_DEFAULT_CONN_WINDOW;
	if (cfg->max_send_queue == 0)
		cfg->max_send_queue = LGR_H2_DEFAULT_SEND_QUEUE;
	if (cfg->connect_ms == 0)
		cfg->connect_ms = LGR_H2_DEFAULT_CONNECT_MS;
	if (cfg->keepalive_ms == 0)
		cfg->keepalive_ms = LGR_H2_DEFAULT_KEEPALIVE_MS;
	if (cfg->keepalive_timeout_ms == 0)
		cfg->keepalive_timeout_ms = LGR_H2_DEFAULT_KEEPALIVE_TIMEOUT_MS;
	if (cfg->backoff_min_ms == 0)
		cfg->backoff_min_ms = LGR_H2_DEFAULT_BACKOFF_MIN_MS;
	if (cfg->backoff_max_ms == 0)
		cfg->backoff_max_ms = LGR_H2_DEFAULT_BACKOFF_MAX_MS;
	if (cfg->backoff_max_ms < cfg->backoff_min_ms)
		cfg->backoff_max_ms = cfg->backoff_min_ms;
}

static int make_callbacks(struct lgr_h2_client *cli)
{
	if (nghttp2_session_callbacks_new(&cli->cbs) != 0 || nghttp2_option_new(&cli->opt) != 0)
		return LGR_ENOMEM;
	lgr_h2__conn_callbacks(cli->cbs);
	lgr_h2__call_callbacks(cli->cbs);
	nghttp2_option_set_no_closed_streams(cli->opt, 1);
	return LGR_OK;
}

int lgr_h2_client_new(struct event_base *base, const struct lgr_h2_client_config *cfg, struct lgr_h2_client **out)
{
	struct lgr_h2_client *cli = NULL;
	int rc = LGR_EINVAL;

	*out = NULL;
	if (base == NULL || cfg == NULL || cfg->host == NULL || cfg->host[0] == '\0' ||
		strlen(cfg->host) >= LGR_H2__MAX_HOST ||
		(cfg->server_name != NULL && strlen(cfg->server_name) >= LGR_H2__MAX_HOST) ||
		(cfg->authority != NULL && strlen(cfg->authority) >= LGR_H2__MAX_HOST) || cfg->port == 0 ||
		cfg->stream_window > INT32_MAX || cfg->conn_window > INT32_MAX)
		goto out;
	rc = LGR_ENOMEM;
	cli = calloc(1, sizeof(*cli));
	if (cli == NULL)
		goto out;
	cli->base = base;
	cli->cfg = *cfg;
	resolve_defaults(&cli->cfg);
	snprintf(cli->name, sizeof(cli->name), "%s", cfg->name != NULL ? cfg->name : "h2 client");
	snprintf(cli->host, sizeof(cli->host), "%s", cfg->host);
	snprintf(cli->port, sizeof(cli->port), "%u", cfg->port);
	snprintf(cli->server_name, sizeof(cli->server_name), "%s",
		cfg->server_name != NULL ? cfg->server_name : cfg->host);
	if (cfg->authority != NULL)
		snprintf(cli->authority, sizeof(cli->authority), "%s", cfg->authority);
	else if (cfg->server_name != NULL)
		snprintf(cli->authority, sizeof(cli->authority), "%s", cfg->server_name);
	else
		snprintf(cli->authority, sizeof(cli->authority), strchr(cfg->host, ':') ? "[%s]:%u" : "%s:%u",
			cfg->host, cfg->port);
	cli->cfg.host = cli->host;
	cli->cfg.server_name = cli->server_name;
	cli->cfg.authority = cli->authority;
	cli->cfg.name = cli->name;
	cli->state = LGR_H2_CONNECTING;
	cli->retry = evtimer_new(base, on_retry, cli);
	if (cli->retry == NULL || make_callbacks(cli) != LGR_OK)
		goto out;
	/* The first attempt starts from the loop, so on_state never runs inside this function. */
	lgr_h2__client_retry(cli, 0);
	*out = cli;
	cli = NULL;
	rc = LGR_OK;
out:
	if (cli != NULL)
		destroy(cli);
	return rc;
}
