/*
 * cli_emit.c: `lgr emit SOURCE_ID`: test envelopes to an agent over one loggregator.v2.Ingress/BatchSender stream.
 *
 * Envelopes come from MESSAGE (--count times, "{n}" replaced by the sequence number from 1) or, without MESSAGE,
 * from the lines of stdin (logs and events), paced by --rate, in batches of up to BATCH. Nothing is sent before
 * the connection is ready; when the agent cannot be reached for --timeout seconds the command gives up.
 *
 * A BatchSender call acknowledges only at its end, so what a call carried counts as delivered when it ends with
 * OK (or UNKNOWN "EOF", how the real Go agent ends a call the client half-closed) and as possibly lost when it
 * ends otherwise; a lost stream is replaced and the input goes on. Exit 0 when every envelope was acknowledged.
 */
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "cli.h"
#include "lgr_grpc.h"
#include "lgr_h2.h"

#define BATCH	      100
#define TICK_MS	      10
#define STDIN_HIGH    (1u << 20) /* buffered input bytes before stdin is paused */
#define GRACE_S	      5		 /* wait for the final status */
#define METHOD	      "/loggregator.v2.Ingress/BatchSender"
#define MAX_LINE_SIZE (1u << 20)

struct emit {
	const struct cli_opts *o;
	struct event_base *base;
	struct lgr_h2_client *cli;
	struct lgr_h2_call *call;
	struct event *tick, *stdin_ev, *sigint, *sigterm, *unreachable, *grace, *reopen;
	struct evbuffer *in; /* stdin bytes not yet made into envelopes */
	bool from_stdin, stdin_eof, stdin_paused;
	uint8_t *pending; /* an encoded batch the stream's queue refused */
	size_t pending_len, pending_n;
	uint64_t made;	  /* envelopes built */
	uint64_t on_call; /* envelopes queued on the open call */
	uint64_t acked, lost;
	int64_t last_ts;
	double credit;
	bool ready, blocked, input_done, closing;
	char why[256]; /* the last connection failure */
	int exit_code;
};

static const struct lgr_h2_call_handlers handlers;
static void pump(struct emit *e);

static void finish(struct emit *e, int code)
{
	if (e->exit_code < 0)
		e->exit_code = code;
	event_base_loopbreak(e->base);
}

static int64_t next_ts(struct emit *e)
{
	struct timespec ts;
	int64_t now;

	clock_gettime(CLOCK_REALTIME, &ts);
	now = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
	/* Strictly increasing, so that consumers sorting by timestamp keep the emitted order. */
	e->last_ts = now > e->last_ts ? now : e->last_ts + 1;
	return e->last_ts;
}

/* MESSAGE with every "{n}" replaced by seq; malloc'd. */
static char *expand(const char *msg, uint64_t seq)
{
	char num[24];
	size_t nlen, len = 0, cap;
	char *out;

	nlen = (size_t)snprintf(num, sizeof(num), "%llu", (unsigned long long)seq);
	cap = strlen(msg) + 1;
	for (const char *p = strstr(msg, "{n}"); p != NULL; p = strstr(p + 3, "{n}"))
		cap += nlen;
	out = malloc(cap);
	if (out == NULL)
		return NULL;
	for (const char *p = msg; *p != '\0';) {
		if (strncmp(p, "{n}", 3) == 0) {
			memcpy(out + len, num, nlen);
			len += nlen;
			p += 3;
		} else {
			out[len++] = *p++;
		}
	}
	out[len] = '\0';
	return out;
}

static struct lgr_env *build(struct emit *e, const char *text, size_t len)
{
	const struct cli_opts *o = e->o;
	struct lgr_env *env = lgr_env_new();
	int64_t ts = next_ts(e);
	int rc;

	if (env == NULL)
		return NULL;
	env->pb->timestamp = ts;
	rc = lgr_env_set_source_id(env, o->source_id);
	if (rc == LGR_OK && *o->instance_id)
		rc = lgr_env_set_instance_id(env, o->instance_id);
	if (rc == LGR_OK && *o->source_type)
		rc = lgr_env_set_tag(env, "source_type", o->source_type);
	for (size_t i = 0; rc == LGR_OK && i < o->n_tags; i++)
		rc = lgr_env_set_tag(env, o->tags[i][0], o->tags[i][1]);
	if (rc != LGR_OK)
		goto fail;
	switch (o->emit_type) {
	case LGR_ENV_COUNTER: rc = lgr_env_set_counter(env, o->name != NULL ? o->name : "requests", o->delta, 0); break;
	case LGR_ENV_GAUGE:
		rc = lgr_env_set_gauge(env);
		if (rc == LGR_OK)
			rc = lgr_env_add_metric(
				env, o->name != NULL ? o->name : "value", o->unit != NULL ? o->unit : "", o->value);
		break;
	case LGR_ENV_TIMER:
		rc = lgr_env_set_timer(env, o->name != NULL ? o->name : "http", ts - (int64_t)(o->value * 1e6), ts);
		break;
	case LGR_ENV_EVENT: {
		char *body = strndup(text, len);

		rc = body == NULL ? LGR_ENOMEM : lgr_env_set_event(env, o->name != NULL ? o->name : "event", body);
		free(body);
		break;
	}
	default:
		rc = lgr_env_set_log(env, text, len,
			o->err_stream ? LOGGREGATOR__V2__LOG__TYPE__ERR : LOGGREGATOR__V2__LOG__TYPE__OUT);
		break;
	}
	if (rc == LGR_OK)
		return env;
fail:
	lgr_env_unref(env);
	return NULL;
}

static bool open_call(struct emit *e)
{
	int rc;

	if (e->call != NULL)
		return true;
	rc = lgr_h2_client_call(e->cli, METHOD, &handlers, e, &e->call);
	if (rc != LGR_OK) {
		cli_error("cannot start a stream: %s", lgr_strerror(rc));
		finish(e, CLI_EXIT_FAIL);
		return false;
	}
	e->on_call = 0;
	return true;
}

/* Sends the pending batch; false when the queue refused it again. */
static bool send_pending(struct emit *e)
{
	int rc;

	if (e->pending == NULL)
		return true;
	if (!open_call(e))
		return false;
	rc = lgr_h2_call_send(e->call, e->pending, e->pending_len);
	if (rc == LGR_EFULL) {
		e->blocked = true;
		return false;
	}
	if (rc == LGR_OK)
		e->on_call += e->pending_n;
	else
		e->lost += e->pending_n; /* the call already ended; its on_close runs */
	free(e->pending);
	e->pending = NULL;
	e->pending_n = 0;
	return rc == LGR_OK;
}

/* The next input as (text, len); false when there is none now. *owned is set when text must be freed. */
static bool next_input(struct emit *e, char **owned, const char **text, size_t *len)
{
	const struct cli_opts *o = e->o;

	*owned = NULL;
	if (o->count > 0 && e->made >= o->count)
		return false;
	if (!e->from_stdin) {
		*owned = expand(o->message != NULL ? o->message : "", e->made + 1);
		*text = *owned;
		*len = *owned != NULL ? strlen(*owned) : 0;
		return *owned != NULL;
	}
	if (evbuffer_get_length(e->in) == 0)
		return false;
	*owned = evbuffer_readln(e->in, len, EVBUFFER_EOL_LF);
	if (*owned == NULL && e->stdin_eof) {
		/* The last line, without a newline. */
		*len = evbuffer_get_length(e->in);
		*owned = malloc(*len + 1);
		if (*owned != NULL) {
			evbuffer_remove(e->in, *owned, *len);
			(*owned)[*len] = '\0';
		}
	}
	if (*owned == NULL)
		return false;
	if (*len > 0 && (*owned)[*len - 1] == '\r')
		(*len)--;
	*text = *owned;
	return true;
}

static bool input_exhausted(const struct emit *e)
{
	const struct cli_opts *o = e->o;

	if (o->count > 0 && e->made >= o->count)
		return true;
	return e->from_stdin && e->stdin_eof && evbuffer_get_length(e->in) == 0;
}

static void close_stream(struct emit *e)
{
	struct timeval tv = {GRACE_S, 0};

	if (e->closing)
		return;
	e->closing = true;
	if (e->call == NULL) {
		finish(e, e->lost > 0 ? CLI_EXIT_FAIL : CLI_EXIT_OK);
		return;
	}
	lgr_h2_call_close_send(e->call);
	evtimer_add(e->grace, &tv);
}

static void pump(struct emit *e)
{
	const struct cli_opts *o = e->o;

	if (!e->ready || e->blocked || e->closing || e->exit_code >= 0 || !send_pending(e))
		return;
	while (!e->input_done) {
		struct lgr_env *envs[BATCH];
		size_t n = 0, allow = BATCH;

		if (o->rate > 0)
			allow = e->credit >= BATCH ? BATCH : (size_t)e->credit;
		while (n < allow) {
			char *owned;
			const char *text;
			size_t len;

			if (!next_input(e, &owned, &text, &len))
				break;
			envs[n] = build(e, text, len);
			free(owned);
			if (envs[n] == NULL) {
				cli_error("out of memory");
				finish(e, CLI_EXIT_FAIL);
				break;
			}
			n++;
			e->made++;
		}
		if (n > 0) {
			if (lgr_env_encode_batch(envs, n, &e->pending, &e->pending_len) != LGR_OK) {
				cli_error("out of memory");
				finish(e, CLI_EXIT_FAIL);
			}
			e->pending_n = n;
			e->credit -= (double)n;
		}
		for (size_t i = 0; i < n; i++)
			lgr_env_unref(envs[i]);
		if (e->exit_code >= 0)
			return;
		if (input_exhausted(e))
			e->input_done = true;
		if (!send_pending(e))
			return;
		if (n < allow || n == 0)
			break;
	}
	if (e->from_stdin && e->stdin_paused && !e->stdin_eof && evbuffer_get_length(e->in) < STDIN_HIGH / 2) {
		event_add(e->stdin_ev, NULL);
		e->stdin_paused = false;
	}
	if (e->input_done)
		close_stream(e);
}

static void on_stdin(evutil_socket_t fd, short what, void *arg)
{
	struct emit *e = arg;
	int n = evbuffer_read(e->in, fd, 65536);

	if (n <= 0) {
		e->stdin_eof = true;
		event_del(e->stdin_ev);
	} else if (evbuffer_get_length(e->in) >= STDIN_HIGH) {
		/* Waiting for the stream or the rate: a line this long would never end. */
		if (evbuffer_search_eol(e->in, NULL, NULL, EVBUFFER_EOL_LF).pos < 0 &&
			evbuffer_get_length(e->in) > MAX_LINE_SIZE) {
			cli_error("a line of stdin is longer than %u bytes", MAX_LINE_SIZE);
			finish(e, CLI_EXIT_FAIL);
			return;
		}
		event_del(e->stdin_ev);
		e->stdin_paused = true;
	}
	if (input_exhausted(e) && !e->ready && e->made == 0) {
		/* Empty input: nothing to send. */
		e->input_done = true;
		finish(e, CLI_EXIT_OK);
		return;
	}
	pump(e);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct emit *e = arg;
	double cap = e->o->rate / 20 > 1 ? e->o->rate / 20 : 1;

	e->credit += e->o->rate * TICK_MS / 1000.0;
	if (e->credit > cap)
		e->credit = cap;
	pump(e);
}

static void on_drain(struct lgr_h2_call *call, void *ud)
{
	struct emit *e = ud;

	e->blocked = false;
	pump(e);
}

static void on_reopen(evutil_socket_t fd, short what, void *arg)
{
	pump(arg);
}

static void on_close(struct lgr_h2_call *call, int status, const char *message, void *ud)
{
	struct emit *e = ud;
	bool ok = status == LGR_GRPC_OK || (status == LGR_GRPC_UNKNOWN && strcmp(message, "EOF") == 0);
	struct timeval tv = {0, 500000};

	e->call = NULL;
	e->blocked = false;
	if (ok) {
		e->acked += e->on_call;
	} else {
		e->lost += e->on_call;
		if (cli_fatal_reason(message)) {
			cli_explain_failure(e->o, message);
			finish(e, CLI_EXIT_FAIL);
			return;
		}
		if (status != LGR_GRPC_UNAVAILABLE && status != LGR_GRPC_RESOURCE_EXHAUSTED) {
			cli_error("%s:%u refused the stream: %s%s%s", e->o->host, e->o->port,
				lgr_grpc_status_name(status), *message ? ": " : "", message);
			finish(e, CLI_EXIT_FAIL);
			return;
		}
		if (e->on_call > 0)
			cli_warn(e->o, "the stream ended (%s%s%s): %llu envelopes may not have arrived",
				lgr_grpc_status_name(status), *message ? ": " : "", message,
				(unsigned long long)e->on_call);
	}
	e->on_call = 0;
	if (e->closing) {
		if (e->pending == NULL && e->input_done) {
			if (e->lost > 0)
				cli_error("%llu of %llu envelopes may not have arrived", (unsigned long long)e->lost,
					(unsigned long long)e->made);
			finish(e, e->lost > 0 ? CLI_EXIT_FAIL : CLI_EXIT_OK);
			return;
		}
		e->closing = false;
	}
	/* More to send: a new stream, after a pause so that a server ending streams at once is not hammered. */
	evtimer_add(e->reopen, &tv);
}

static const struct lgr_h2_call_handlers handlers = {
	.on_drain = on_drain,
	.on_close = on_close,
};

static void arm_unreachable(struct emit *e)
{
	struct timeval tv;

	tv.tv_sec = (time_t)e->o->timeout;
	tv.tv_usec = (suseconds_t)((e->o->timeout - floor(e->o->timeout)) * 1e6);
	if (!evtimer_pending(e->unreachable, NULL))
		evtimer_add(e->unreachable, &tv);
}

static void on_unreachable(evutil_socket_t fd, short what, void *arg)
{
	struct emit *e = arg;

	cli_error("%s:%u: not reachable within %g s (%s)", e->o->host, e->o->port, e->o->timeout,
		e->why[0] ? e->why : "no connection");
	finish(e, CLI_EXIT_FAIL);
}

static void on_grace(evutil_socket_t fd, short what, void *arg)
{
	struct emit *e = arg;

	cli_error("%s:%u: no answer to the end of the stream within %d s: %llu envelopes not acknowledged", e->o->host,
		e->o->port, GRACE_S, (unsigned long long)e->on_call);
	finish(e, CLI_EXIT_FAIL);
}

static void on_state(struct lgr_h2_client *cli, enum lgr_h2_state state, const char *why, void *ud)
{
	struct emit *e = ud;

	e->ready = state == LGR_H2_READY;
	if (e->ready) {
		evtimer_del(e->unreachable);
		e->why[0] = '\0';
		pump(e);
		return;
	}
	if (state == LGR_H2_TRANSIENT_FAILURE && e->exit_code < 0) {
		if (cli_fatal_reason(why)) {
			cli_explain_failure(e->o, why);
			finish(e, CLI_EXIT_FAIL);
			return;
		}
		if (e->why[0] == '\0')
			cli_warn(e->o, "%s:%u: %s; retrying", e->o->host, e->o->port, why);
		snprintf(e->why, sizeof(e->why), "%s", why);
		arm_unreachable(e);
	}
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct emit *e = arg;

	if (e->input_done) {
		finish(e, CLI_EXIT_FAIL); /* a second signal: do not wait */
		return;
	}
	e->input_done = true;
	if (e->stdin_ev != NULL)
		event_del(e->stdin_ev);
	if (!e->ready && e->call == NULL)
		finish(e, e->made > e->acked ? CLI_EXIT_FAIL : CLI_EXIT_OK);
	else
		close_stream(e);
}

static void on_lib_log(enum lgr_log_level level, const char *msg, void *ud)
{
	if (level <= LGR_LOG_ERR)
		fprintf(stderr, "%s\n", msg);
}

int cli_emit_run(const struct cli_opts *o)
{
	struct emit e = {.o = o, .exit_code = -1};
	struct lgr_h2_client_config cfg = {0};
	struct timeval tick = {0, TICK_MS * 1000};
	SSL_CTX *ctx = NULL;
	int rc = CLI_EXIT_FAIL;

	signal(SIGPIPE, SIG_IGN);
	lgr_log_set(on_lib_log, NULL);
	e.from_stdin = o->message == NULL && (o->emit_type == LGR_ENV_LOG || o->emit_type == LGR_ENV_EVENT);
	e.credit = o->rate > 0 ? 1 : 0;
	if (cli_tls_ctx(o, &ctx) != 0)
		goto out;
	e.base = event_base_new();
	e.in = evbuffer_new();
	if (e.base == NULL || e.in == NULL)
		goto out;
	e.tick = event_new(e.base, -1, EV_PERSIST, on_tick, &e);
	e.sigint = evsignal_new(e.base, SIGINT, on_signal, &e);
	e.sigterm = evsignal_new(e.base, SIGTERM, on_signal, &e);
	e.unreachable = evtimer_new(e.base, on_unreachable, &e);
	e.grace = evtimer_new(e.base, on_grace, &e);
	e.reopen = evtimer_new(e.base, on_reopen, &e);
	if (e.from_stdin)
		e.stdin_ev = event_new(e.base, STDIN_FILENO, EV_READ | EV_PERSIST, on_stdin, &e);
	if (e.tick == NULL || e.sigint == NULL || e.sigterm == NULL || e.unreachable == NULL || e.grace == NULL ||
		e.reopen == NULL || (e.from_stdin && e.stdin_ev == NULL))
		goto out;
	event_add(e.sigint, NULL);
	event_add(e.sigterm, NULL);
	if (o->rate > 0)
		event_add(e.tick, &tick);
	if (e.from_stdin && event_add(e.stdin_ev, NULL) != 0) {
		/* A regular file cannot be polled: it is read whole now (it never blocks). */
		while (evbuffer_read(e.in, STDIN_FILENO, 65536) > 0)
			;
		e.stdin_eof = true;
		event_free(e.stdin_ev);
		e.stdin_ev = NULL;
		if (input_exhausted(&e)) {
			rc = CLI_EXIT_OK;
			goto out;
		}
	}
	cfg.host = o->host;
	cfg.port = o->port;
	cfg.ssl_ctx = ctx;
	cfg.server_name = o->plaintext ? NULL : o->server_name;
	cfg.on_state = on_state;
	cfg.ud = &e;
	cfg.name = CLI_PROG;
	cfg.backoff_min_ms = 500;
	cfg.backoff_max_ms = 5000;
	if (lgr_h2_client_new(e.base, &cfg, &e.cli) != LGR_OK) {
		cli_error("cannot create a client for %s:%u", o->host, o->port);
		goto out;
	}
	arm_unreachable(&e);
	event_base_dispatch(e.base);
	rc = e.exit_code < 0 ? CLI_EXIT_FAIL : e.exit_code;
out:
	if (e.call != NULL)
		lgr_h2_call_cancel(e.call);
	lgr_h2_client_free(e.cli);
	if (e.stdin_ev != NULL)
		event_free(e.stdin_ev);
	if (e.tick != NULL)
		event_free(e.tick);
	if (e.sigint != NULL)
		event_free(e.sigint);
	if (e.sigterm != NULL)
		event_free(e.sigterm);
	if (e.unreachable != NULL)
		event_free(e.unreachable);
	if (e.grace != NULL)
		event_free(e.grace);
	if (e.reopen != NULL)
		event_free(e.reopen);
	if (e.in != NULL)
		evbuffer_free(e.in);
	if (e.base != NULL)
		event_base_free(e.base);
	free(e.pending);
	SSL_CTX_free(ctx);
	return rc;
}
