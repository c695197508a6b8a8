/*
 * cli_egress.c: `lgr logs SOURCE_ID` and `lgr firehose`: one loggregator.v2.Egress/BatchedReceiver stream from a
 * router, every envelope printed as it arrives (text or JSON lines).
 *
 * The stream is kept up: when it ends for any reason but a refusal that retrying cannot cure, it is opened again
 * after a backoff (250 ms doubling to 8 s, back to the start once a stream delivered something), on the client's
 * connection, which reconnects by itself. Curable: the connection was lost or refused, the router shut down
 * (UNAVAILABLE), too many streams (RESOURCE_EXHAUSTED). Not curable, exit 1: a TLS refusal in either direction,
 * INVALID_ARGUMENT, UNIMPLEMENTED, PERMISSION_DENIED, UNAUTHENTICATED. SIGINT and SIGTERM end it with status 0.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "cli.h"
#include "egress.pb-c.h"
#include "lgr_grpc.h"
#include "lgr_h2.h"
#include "lgr_select.h"

#define BACKOFF_MIN_MS 250u
#define BACKOFF_MAX_MS 8000u
#define METHOD	       "/loggregator.v2.Egress/BatchedReceiver"

struct egress {
	const struct cli_opts *o;
	struct event_base *base;
	struct lgr_h2_client *cli;
	struct lgr_h2_call *call;
	struct event *retry;
	struct event *sigint, *sigterm;
	uint8_t *req; /* the encoded EgressBatchRequest */
	size_t req_len;
	unsigned backoff_ms;
	bool announced; /* the first READY was reported */
	bool failing;	/* a failure was reported and no READY since */
	int exit_code;
};

static const struct lgr_h2_call_handlers handlers;

static void finish(struct egress *e, int code)
{
	e->exit_code = code;
	event_base_loopbreak(e->base);
}

/* One selector per type for each source id (or for every source). */
static int build_request(struct egress *e)
{
	const struct cli_opts *o = e->o;
	struct lgr_select_ask ask = {.shard_id = o->shard_id,
		.deterministic_name = o->deterministic_name,
		.types = o->types,
		.use_preferred_tags = true};

	if (o->cmd == CLI_LOGS) {
		ask.source_ids = &o->source_id;
		ask.nsource_ids = 1;
	} else {
		ask.source_ids = o->source_ids;
		ask.nsource_ids = o->n_source_ids;
	}
	return lgr_select_req_pack(&ask, &e->req, &e->req_len) == LGR_OK ? 0 : -1;
}

static void open_call(struct egress *e)
{
	int rc = lgr_h2_client_call(e->cli, METHOD, &handlers, e, &e->call);

	if (rc == LGR_OK)
		rc = lgr_h2_call_send(e->call, e->req, e->req_len);
	if (rc == LGR_OK)
		rc = lgr_h2_call_close_send(e->call);
	if (rc != LGR_OK) {
		cli_error("cannot start the stream: %s", lgr_strerror(rc));
		finish(e, CLI_EXIT_FAIL);
	}
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
	open_call(arg);
}

static int print_envelope(struct lgr_env *env, void *ud)
{
	struct egress *e = ud;
	int rc = e->o->json ? cli_fmt_json(stdout, env) : cli_fmt_text(stdout, env);

	lgr_env_unref(env);
	return rc == 0 ? LGR_OK : LGR_EIO;
}

static void on_message(struct lgr_h2_call *call, const uint8_t *msg, size_t len, void *ud)
{
	struct egress *e = ud;
	int rc = lgr_env_decode_batch(msg, len, NULL, print_envelope, e);

	e->backoff_ms = BACKOFF_MIN_MS;
	if (rc == LGR_EIO) {
		/* stdout is gone (a closed pipe): nothing more to do. */
		finish(e, CLI_EXIT_FAIL);
	} else if (rc != LGR_OK) {
		cli_warn(e->o, "skipped a batch that does not decode: %s", lgr_strerror(rc));
	}
}

static bool status_is_fatal(int status)
{
	return status == LGR_GRPC_INVALID_ARGUMENT || status == LGR_GRPC_UNIMPLEMENTED ||
	       status == LGR_GRPC_PERMISSION_DENIED || status == LGR_GRPC_UNAUTHENTICATED;
}

static void on_close(struct lgr_h2_call *call, int status, const char *message, void *ud)
{
	struct egress *e = ud;
	struct timeval tv;

	e->call = NULL;
	if (e->exit_code >= 0)
		return;
	if (status_is_fatal(status)) {
		cli_error("%s:%u refused the stream: %s%s%s", e->o->host, e->o->port, lgr_grpc_status_name(status),
			*message ? ": " : "", message);
		finish(e, CLI_EXIT_FAIL);
		return;
	}
	if (cli_fatal_reason(message)) {
		cli_explain_failure(e->o, message);
		finish(e, CLI_EXIT_FAIL);
		return;
	}
	/* Connection failures are reported by on_state; a stream the server ended is reported here. */
	if (lgr_h2_client_state(e->cli) == LGR_H2_READY)
		cli_warn(e->o, "the stream ended (%s%s%s); opening it again", lgr_grpc_status_name(status),
			*message ? ": " : "", message);
	tv.tv_sec = e->backoff_ms / 1000;
	tv.tv_usec = (e->backoff_ms % 1000) * 1000;
	e->backoff_ms = e->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : e->backoff_ms * 2;
	evtimer_add(e->retry, &tv);
}

static const struct lgr_h2_call_handlers handlers = {
	.on_message = on_message,
	.on_close = on_close,
};

static void on_state(struct lgr_h2_client *cli, enum lgr_h2_state state, const char *why, void *ud)
{
	struct egress *e = ud;
	const struct cli_opts *o = e->o;

	if (state == LGR_H2_READY) {
		if (!e->announced) {
			if (o->cmd == CLI_LOGS)
				cli_warn(o, "connected to %s:%u (%s): streaming logs of %s", o->host, o->port,
					o->plaintext ? "h2c" : o->server_name, o->source_id);
			else
				cli_warn(o, "connected to %s:%u (%s): streaming the firehose", o->host, o->port,
					o->plaintext ? "h2c" : o->server_name);
		} else if (e->failing) {
			cli_warn(o, "reconnected to %s:%u", o->host, o->port);
		}
		e->announced = true;
		e->failing = false;
	} else if (state == LGR_H2_TRANSIENT_FAILURE && e->exit_code < 0) {
		if (cli_fatal_reason(why)) {
			cli_explain_failure(o, why);
			finish(e, CLI_EXIT_FAIL);
			return;
		}
		if (!e->failing)
			cli_warn(o, "%s:%u: %s; retrying", o->host, o->port, why);
		e->failing = true;
	}
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	finish(arg, CLI_EXIT_OK);
}

static void on_lib_log(enum lgr_log_level level, const char *msg, void *ud)
{
	/* The transport's own lines repeat what on_state reports; only errors of its own are shown. */
	if (level <= LGR_LOG_ERR)
		fprintf(stderr, "%s\n", msg);
}

int cli_egress_run(const struct cli_opts *o)
{
	struct egress e = {.o = o, .backoff_ms = BACKOFF_MIN_MS, .exit_code = -1};
	struct lgr_h2_client_config cfg = {0};
	SSL_CTX *ctx = NULL;
	int rc = CLI_EXIT_FAIL;

	signal(SIGPIPE, SIG_IGN);
	lgr_log_set(on_lib_log, NULL);
	if (cli_tls_ctx(o, &ctx) != 0)
		goto out;
	if (build_request(&e) != 0) {
		cli_error("out of memory");
		goto out;
	}
	e.base = event_base_new();
	if (e.base == NULL)
		goto out;
	e.retry = evtimer_new(e.base, on_retry, &e);
	e.sigint = evsignal_new(e.base, SIGINT, on_signal, &e);
	e.sigterm = evsignal_new(e.base, SIGTERM, on_signal, &e);
	if (e.retry == NULL || e.sigint == NULL || e.sigterm == NULL)
		goto out;
	event_add(e.sigint, NULL);
	event_add(e.sigterm, NULL);
	cfg.host = o->host;
	cfg.port = o->port;
	cfg.ssl_ctx = ctx;
	cfg.server_name = o->plaintext ? NULL : o->server_name;
	cfg.on_state = on_state;
	cfg.ud = &e;
	cfg.name = CLI_PROG;
	cfg.backoff_min_ms = 500;
	cfg.backoff_max_ms = 8000;
	if (lgr_h2_client_new(e.base, &cfg, &e.cli) != LGR_OK) {
		cli_error("cannot create a client for %s:%u", o->host, o->port);
		goto out;
	}
	open_call(&e);
	if (e.exit_code < 0)
		event_base_dispatch(e.base);
	rc = e.exit_code < 0 ? CLI_EXIT_FAIL : e.exit_code;
out:
	if (e.call != NULL)
		lgr_h2_call_cancel(e.call);
	lgr_h2_client_free(e.cli);
	if (e.retry != NULL)
		event_free(e.retry);
	if (e.sigint != NULL)
		event_free(e.sigint);
	if (e.sigterm != NULL)
		event_free(e.sigterm);
	if (e.base != NULL)
		event_base_free(e.base);
	SSL_CTX_free(ctx);
	free(e.req);
	fflush(stdout);
	return rc;
}
