/*
 * omf_gateway.c: the gateway of one omfirehose action (omf.h): the RLP gateway's GET /v2/read (server-sent events)
 * and Log Cache's GET /api/v1/read/{source_id} (recent envelopes), over HTTPS with HTTP/1.1 and HTTP/2 (lgr_http),
 * on the egress's network thread. What to answer is lgr_gateway's; this file is the plumbing around it.
 *
 * A /v2/read stream is one egress subscriber (omf_sub_new) whose sink writes one "data:" event per batch the
 * subscriber hands over, the envelopes in their use_preferred_tags form, as the real gateway's RLP subscription
 * asks for them. A client that reads too slowly fills its exchange's send queue; the sink then says LGR_EFULL and
 * its envelopes wait in the subscriber's own drop-oldest ring, which loses that client's oldest envelopes and
 * nobody else's. A heartbeat event goes out after heartbeat_ms without data, and after stream_timeout_ms a closing
 * event ends the stream, as the real gateway does.
 *
 * Recent envelopes: omf_gateway_record() keeps a reference of every envelope of the action in an lgr_recent store
 * (its own lock; rsyslog's workers write, the network thread reads). A read answers in Log Cache's form, the
 * envelopes folded as Log Cache's nozzle reads them from the RLP (use_preferred_tags).
 *
 * Threads: the egress's loop (omf_egress_base) is not thread-safe (no evthread locking), so nothing here touches it
 * from another thread. omf_gateway_new, which runs before the loop does, adds a command event on an eventfd of its
 * own; omf_gateway_start and omf_gateway_free (rsyslog threads) post a command through it and wait on a condition
 * variable until the loop thread has carried it out. The tokens are swapped by omf_gateway_reload under tok_mut,
 * which the loop thread holds only while it authorizes a request. Everything else belongs to the loop thread.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/eventfd.h>

#include <event2/event.h>

#include "lgr_gateway.h"
#include "lgr_http.h"
#include "lgr_recent.h"
#include "omf.h"

#define HEARTBEAT_MS  15000u /* the real gateway's */
#define STOP_SLACK_MS 1500u  /* after the grace lgr_http takes at most one more second to close */
#define LOG_WINDOW_MS 10000u /* own log lines: at most LOG_BURST per window */
#define LOG_BURST     5
#define TEXT_PLAIN    "text/plain; charset=utf-8"

enum cmd {
	CMD_NONE,
	CMD_START,
	CMD_STOP,
};

struct sse;

struct omf_gateway {
	/* set by omf_gateway_new, read-only afterwards */
	struct omf_egress *eg;
	struct event_base *base;
	char *name, *address, *tokens_file;
	uint16_t port;
	SSL_CTX *ssl_ctx;
	unsigned heartbeat_ms, stream_timeout_ms;
	struct lgr_recent *recent; /* NULL: no recent store; locks itself */

	/* the tokens (NULL with gateway.auth="none"): replaced by reload, read by the loop, both under tok_mut */
	pthread_mutex_t tok_mut;
	struct lgr_gateway_tokens *tokens;

	/* commands from rsyslog's threads to the loop thread, under mut */
	pthread_mutex_t mut;
	pthread_cond_t cond;
	enum cmd cmd;
	bool cmd_done;
	int cmd_rc;
	uint16_t bound_port;
	int cmd_fd;
	struct event *cmd_ev; /* on cmd_fd; freed by the loop thread once it runs, else by omf_gateway_free */
	bool start_posted;    /* rsyslog thread: the loop runs our events from now on */

	/* the loop thread's */
	struct lgr_http_server *srv;
	struct lgr_http_handlers handlers;
	struct event *stop_ev; /* the end of a stop: the server is done, or its deadline passed */
	bool stopping, finished;
	struct sse *streams; /* doubly linked */
	struct lgr_env **forms;
	size_t forms_cap;
	struct lgr_logger lg; /* own lines: name, the configured sink */
	struct lgr_ratelimit log_rl;
	uint64_t unrecorded; /* atomic: envelopes the recent store could not keep (out of memory) */
};

/* One /v2/read stream: an exchange, its subscriber and its timers. Freed when the exchange closes. */
struct sse {
	struct omf_gateway *gw;
	struct sse *prev, *next;
	struct lgr_http_exchange *x;
	struct omf_sub *sub;	    /* NULL once the stream no longer takes envelopes */
	struct event *heartbeat_ev; /* heartbeat_ms after the last event */
	struct event *timeout_ev;   /* stream_timeout_ms after the start */
	bool ended;		    /* lgr_http_exchange_end was called */
	bool closing;		    /* the closing event waits for room in the send queue */
};

/* ---- small helpers ---------------------------------------------------------------------------------------------- */

static void timer_in(struct event *ev, uint64_t ms)
{
	struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};

	event_add(ev, &tv);
}

/* Sends an lgr_gateway reply as a whole response. */
static void respond_reply(struct lgr_http_exchange *x, const struct lgr_gateway_reply *reply)
{
	static const struct lgr_http_header nosniff[] = {{"X-Content-Type-Options", "nosniff"}};

	lgr_http_exchange_respond(
		x, reply->status, reply->content_type, nosniff, reply->nosniff ? 1 : 0, reply->body, reply->body_len);
}

/* Go's http.Error: text/plain, nosniff, the message and a newline. */
static void respond_text(struct lgr_http_exchange *x, int status, const char *text)
{
	static const struct lgr_http_header nosniff[] = {{"X-Content-Type-Options", "nosniff"}};

	lgr_http_exchange_respond(x, status, TEXT_PLAIN, nosniff, 1, text, strlen(text));
}

/* Room for n envelope pointers in gw->forms. */
static int forms_reserve(struct omf_gateway *gw, size_t n)
{
	struct lgr_env **grown;
	size_t cap;

	if (n <= gw->forms_cap)
		return LGR_OK;
	cap = gw->forms_cap > 0 ? gw->forms_cap : 64;
	while (cap < n)
		cap *= 2;
	grown = realloc(gw->forms, cap * sizeof(*grown));
	if (grown == NULL)
		return LGR_ENOMEM;
	gw->forms = grown;
	gw->forms_cap = cap;
	return LGR_OK;
}

/* ---- /v2/read: server-sent events ------------------------------------------------------------------------------- */

/* The stream takes no more envelopes: its subscriber goes (what it held is counted as dropped), its timers stop. */
static void sse_detach(struct sse *s)
{
	omf_sub_free(s->sub);
	s->sub = NULL;
	event_del(s->heartbeat_ev);
	event_del(s->timeout_ev);
}

/* Ends the response after what is queued; the exchange's on_close frees s. */
static void sse_end(struct sse *s)
{
	sse_detach(s);
	s->closing = false;
	if (!s->ended) {
		s->ended = true;
		lgr_http_exchange_end(s->x);
	}
}

/* Queues one event; on success the heartbeat waits heartbeat_ms from now. Results of lgr_http_exchange_write. */
static int sse_write(struct sse *s, const char *data, size_t len)
{
	int rc = lgr_http_exchange_write(s->x, data, len);

	if (rc == LGR_OK && s->sub != NULL) {
		event_del(s->heartbeat_ev);
		timer_in(s->heartbeat_ev, s->gw->heartbeat_ms);
	}
	return rc;
}

/* The closing event, then the end; while the send queue is full, on_drain tries again. */
static void sse_close(struct sse *s)
{
	int rc;

	sse_detach(s);
	rc = lgr_http_exchange_write(s->x, LGR_GATEWAY_SSE_CLOSING, sizeof(LGR_GATEWAY_SSE_CLOSING) - 1);
	if (rc == LGR_EFULL) {
		s->closing = true;
		return;
	}
	sse_end(s);
}

static void on_heartbeat(evutil_socket_t fd, short what, void *ud)
{
	struct sse *s = ud;
	char buf[LGR_GATEWAY_SSE_HEARTBEAT_MAX];
	int len;

	(void)fd;
	(void)what;
	len = lgr_gateway_sse_heartbeat((int64_t)time(NULL), buf, sizeof(buf));
	/* a full queue means the client has events to read: this heartbeat is not needed */
	if (len > 0)
		lgr_http_exchange_write(s->x, buf, (size_t)len);
	timer_in(s->heartbeat_ev, s->gw->heartbeat_ms);
}

static void on_stream_timeout(evutil_socket_t fd, short what, void *ud)
{
	(void)fd;
	(void)what;
	sse_close(ud);
}

/*
 * The sink: one data event for the whole batch. Envelopes that cannot be turned into JSON for want of memory are
 * skipped (counted by the egress as taken but not sent) rather than held, since nothing would wake the subscriber
 * to try them again.
 */
static int sse_deliver(
	struct omf_sub *sub, struct omf_env *const *envs, size_t n, size_t *taken, size_t *sent, void *ud)
{
	struct sse *s = ud;
	struct omf_gateway *gw = s->gw;
	char *event = NULL;
	size_t len = 0;
	int rc;

	(void)sub;
	*taken = *sent = 0;
	if (s->ended || s->closing)
		return LGR_EINVAL;
	rc = forms_reserve(gw, n);
	for (size_t i = 0; i < n && rc == LGR_OK; i++)
		rc = omf_env_form(envs[i], true, &gw->forms[i]);
	if (rc == LGR_OK)
		rc = lgr_gateway_sse_data(gw->forms, n, &event, &len);
	if (rc != LGR_OK) {
		lgr_logger_say(&gw->lg, &gw->log_rl, LGR_LOG_WARNING, "%s: %zu envelopes not sent: %s",
			lgr_http_exchange_request(s->x)->peer, n, lgr_strerror(rc));
		*taken = n;
		return LGR_OK;
	}
	rc = sse_write(s, event, len);
	free(event);
	if (rc == LGR_OK)
		*taken = *sent = n;
	return rc; /* LGR_EFULL: on_drain resumes; LGR_EINVAL: the connection is gone, on_close follows */
}

/* The egress is stopping (it normally outlives the gateway): the stream ends. */
static void sse_sink_close(struct omf_sub *sub, void *ud)
{
	struct sse *s = ud;

	(void)sub;
	sse_end(s);
}

static const struct omf_sink sse_sink = {
	.deliver = sse_deliver,
	.close = sse_sink_close,
};

/* GET /v2/read: authorization, method and query (lgr_gateway), then a subscriber and the event stream. */
static void serve_read(struct omf_gateway *gw, struct lgr_http_exchange *x, const struct lgr_http_request *req)
{
	struct lgr_http_header headers[4];
	const struct lgr_gateway_header *h;
	struct lgr_gateway_reply reply;
	struct lgr_gateway_read rd;
	struct sse *s = NULL;
	char peer[160];
	size_t nh;
	int rc;

	pthread_mutex_lock(&gw->tok_mut);
	rc = lgr_gateway_read_request(gw->tokens, req->method, lgr_http_request_header(req, "authorization"),
		req->query, strlen(req->query), &rd, &reply);
	pthread_mutex_unlock(&gw->tok_mut);
	if (rc != LGR_OK) {
		respond_reply(x, &reply);
		goto out;
	}
	if (gw->stopping) {
		respond_text(x, 503, "server shutting down\n");
		goto out;
	}
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		goto nomem;
	s->gw = gw;
	s->x = x;
	s->heartbeat_ev = evtimer_new(gw->base, on_heartbeat, s);
	s->timeout_ev = evtimer_new(gw->base, on_stream_timeout, s);
	if (s->heartbeat_ev == NULL || s->timeout_ev == NULL)
		goto nomem;
	snprintf(peer, sizeof(peer), "%s (/v2/read)", req->peer);
	rc = omf_sub_new(gw->eg, &rd.req, &sse_sink, s, peer, &s->sub);
	if (rc == LGR_EFULL) {
		lgr_logger_say(&gw->lg, &gw->log_rl, LGR_LOG_WARNING, "%s: /v2/read refused: maxStreams streams open",
			req->peer);
		respond_text(x, 503, "too many streams\n");
		goto out;
	} else if (rc == LGR_ENOMEM) {
		goto nomem;
	} else if (rc != LGR_OK) {
		lgr_logger_say(
			&gw->lg, &gw->log_rl, LGR_LOG_NOTICE, "%s: /v2/read refused: %s", req->peer, lgr_strerror(rc));
		respond_text(x, rc == LGR_EINVAL && gw->stopping ? 503 : 400, "cannot subscribe\n");
		goto out;
	}
	h = lgr_gateway_sse_headers(req->version != LGR_HTTP_2, &nh);
	for (size_t i = 0; i < nh && i < sizeof(headers) / sizeof(headers[0]); i++) {
		headers[i].name = h[i].name;
		headers[i].value = h[i].value;
	}
	if (lgr_http_exchange_start(x, 200, NULL, headers, nh) != LGR_OK)
		goto out; /* the connection is gone: on_close follows */
	lgr_http_exchange_set_data(x, s);
	s->next = gw->streams;
	if (gw->streams != NULL)
		gw->streams->prev = s;
	gw->streams = s;
	timer_in(s->heartbeat_ev, gw->heartbeat_ms);
	if (gw->stream_timeout_ms > 0)
		timer_in(s->timeout_ev, gw->stream_timeout_ms);
	s = NULL; /* the exchange's now */
	goto out;
nomem:
	respond_text(x, 500, "500 Internal Server Error\n");
out:
	if (s != NULL) {
		omf_sub_free(s->sub);
		if (s->heartbeat_ev != NULL)
			event_free(s->heartbeat_ev);
		if (s->timeout_ev != NULL)
			event_free(s->timeout_ev);
		free(s);
	}
	lgr_gateway_read_cleanup(&rd);
}

/* ---- /api/v1/read/{source_id}: recent envelopes ----------------------------------------------------------------- */

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/*
 * The answer's body from a query's envelopes: each in its use_preferred_tags form (a temporary omf_env folds the
 * ones that carry deprecated tags). LGR_OK or LGR_ENOMEM.
 */
static int recent_body(struct omf_gateway *gw, struct lgr_env **envs, size_t n, char **body, size_t *len)
{
	struct omf_env **tmp = NULL;
	int rc = LGR_OK;
	size_t i;

	if (n > 0) {
		rc = forms_reserve(gw, n);
		tmp = calloc(n, sizeof(*tmp));
		if (tmp == NULL)
			rc = LGR_ENOMEM;
	}
	for (i = 0; i < n && rc == LGR_OK; i++) {
		gw->forms[i] = envs[i];
		if (envs[i]->pb->n_deprecated_tags == 0)
			continue;
		tmp[i] = omf_env_new(lgr_env_ref(envs[i]));
		rc = tmp[i] == NULL ? LGR_ENOMEM : omf_env_form(tmp[i], true, &gw->forms[i]);
	}
	if (rc == LGR_OK)
		rc = lgr_gateway_lc_body(gw->forms, n, body, len);
	for (i = 0; i < n && tmp != NULL; i++)
		omf_env_unref(tmp[i]);
	free(tmp);
	return rc;
}

/* The reply grpc-gateway gives for a path it does not route. */
static void lc_not_found(struct lgr_gateway_reply *reply)
{
	char *id = NULL;

	lgr_gateway_lc_path("", 0, &id, reply); /* never a read path: reply is the 404 */
	free(id);
}

/*
 * GET /api/v1/read/{source_id}, in the order of Log Cache's auth proxy and gateway: the path, the token (404 with
 * an empty body), the method (501), the query (400, 500), then the store.
 */
static void serve_recent(struct omf_gateway *gw, struct lgr_http_exchange *x, const struct lgr_http_request *req)
{
	struct lgr_gateway_reply reply;
	struct lgr_gateway_lc_read q;
	struct lgr_env **envs = NULL;
	char *source_id = NULL, *body = NULL;
	size_t n = 0, len = 0;
	bool ok = true;
	int rc;

	rc = lgr_gateway_lc_path(req->path, strlen(req->path), &source_id, &reply);
	if (rc != LGR_OK) {
		respond_reply(x, &reply);
		goto out;
	}
	pthread_mutex_lock(&gw->tok_mut);
	if (gw->tokens_file != NULL)
		ok = lgr_gateway_authorized(
			gw->tokens, lgr_http_request_header(req, "authorization"), (const char *const *)&source_id, 1);
	pthread_mutex_unlock(&gw->tok_mut);
	if (!ok) {
		lgr_http_exchange_respond(x, 404, NULL, NULL, 0, NULL, 0);
		goto out;
	}
	if (strcmp(req->method, "GET") != 0) {
		lgr_gateway_lc_reply_method(&reply);
		respond_reply(x, &reply);
		goto out;
	}
	if (gw->recent == NULL) {
		lc_not_found(&reply);
		respond_reply(x, &reply);
		goto out;
	}
	rc = lgr_gateway_lc_query(req->query, strlen(req->query), now_ns(), &q, &reply);
	if (rc != LGR_OK) {
		respond_reply(x, &reply);
		goto out;
	}
	rc = lgr_recent_query(
		gw->recent, source_id, q.start_time, q.end_time, q.type_mask, q.limit, q.descending, &envs, &n);
	if (rc == LGR_OK)
		rc = recent_body(gw, envs, n, &body, &len);
	if (rc != LGR_OK) {
		lgr_logger_say(
			&gw->lg, &gw->log_rl, LGR_LOG_WARNING, "%s: %s: %s", req->peer, req->path, lgr_strerror(rc));
		respond_text(x, 500, "500 Internal Server Error\n");
		goto out;
	}
	lgr_http_exchange_respond(x, 200, "application/json", NULL, 0, body, len);
out:
	lgr_recent_release(envs, n);
	free(body);
	free(source_id);
}

/* ---- the HTTP server's handlers --------------------------------------------------------------------------------- */

static void on_request(struct lgr_http_exchange *x, const struct lgr_http_request *req, void *ud)
{
	struct omf_gateway *gw = ud;
	struct lgr_gateway_reply reply;

	if (strcmp(req->path, "/v2/read") == 0) {
		serve_read(gw, x, req);
	} else if (strncmp(req->path, "/api/v1/", 8) == 0) {
		serve_recent(gw, x, req);
	} else if (strcmp(req->path, "/api/v1") == 0) {
		lc_not_found(&reply);
		respond_reply(x, &reply);
	} else {
		respond_text(x, 404, "404 page not found\n"); /* Go's http.NotFound */
	}
}

static void on_drain(struct lgr_http_exchange *x, void *ud)
{
	struct sse *s = lgr_http_exchange_data(x);

	(void)ud;
	if (s == NULL)
		return;
	if (s->closing)
		sse_close(s);
	else if (s->sub != NULL)
		omf_sub_resume(s->sub);
}

static void on_close(struct lgr_http_exchange *x, bool complete, void *ud)
{
	struct omf_gateway *gw = ud;
	struct sse *s = lgr_http_exchange_data(x);

	(void)complete;
	if (s == NULL)
		return;
	lgr_http_exchange_set_data(x, NULL);
	sse_detach(s);
	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		gw->streams = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	event_free(s->heartbeat_ev);
	event_free(s->timeout_ev);
	free(s);
}

static void on_refused(const char *peer, const char *path, int status, const char *why, void *ud)
{
	struct omf_gateway *gw = ud;

	if (path == NULL)
		lgr_logger_say(&gw->lg, &gw->log_rl, LGR_LOG_NOTICE, "%s: connection refused: %s", peer, why);
	else
		lgr_logger_say(
			&gw->lg, &gw->log_rl, LGR_LOG_NOTICE, "%s: %s: answered %d: %s", peer, path, status, why);
}

/* ---- commands on the loop thread -------------------------------------------------------------------------------- */

/* The command is carried out: the waiting thread may go on (and, after a stop, free gw). Touch nothing after. */
static void cmd_finish(struct omf_gateway *gw, int rc)
{
	pthread_mutex_lock(&gw->mut);
	gw->cmd_rc = rc;
	gw->cmd_done = true;
	pthread_cond_signal(&gw->cond);
	pthread_mutex_unlock(&gw->mut);
}

static int do_start(struct omf_gateway *gw)
{
	struct lgr_http_server_config cfg = {0};
	int rc;

	gw->handlers.on_request = on_request;
	gw->handlers.on_drain = on_drain;
	gw->handlers.on_close = on_close;
	cfg.address = gw->address;
	cfg.port = gw->port;
	cfg.ssl_ctx = gw->ssl_ctx;
	cfg.handlers = &gw->handlers;
	cfg.name = gw->name;
	cfg.on_refused = on_refused;
	cfg.ud = gw;
	rc = lgr_http_server_new(gw->base, &cfg, &gw->srv);
	if (rc == LGR_OK)
		gw->bound_port = lgr_http_server_port(gw->srv);
	return rc;
}

/* The last step of a stop: whatever is left goes, our events leave the loop, the waiting thread is told. */
static void stop_finish(struct omf_gateway *gw)
{
	if (gw->finished)
		return;
	gw->finished = true;
	lgr_http_server_free(gw->srv); /* the exchanges still open see on_close now */
	gw->srv = NULL;
	event_free(gw->stop_ev);
	gw->stop_ev = NULL;
	event_free(gw->cmd_ev);
	gw->cmd_ev = NULL;
	cmd_finish(gw, LGR_OK);
}

static void on_stop_ev(evutil_socket_t fd, short what, void *ud)
{
	(void)fd;
	(void)what;
	stop_finish(ud);
}

/* The server has closed its last connection: finish at the next loop turn, once lgr_http has returned. */
static void on_server_done(void *ud)
{
	struct omf_gateway *gw = ud;

	event_del(gw->stop_ev);
	timer_in(gw->stop_ev, 0);
}

/*
 * Stop: every stream ends now (its subscriber goes first, so that nothing more is queued), the server shuts down
 * gracefully (budget_ms for the last bytes), and at the latest STOP_SLACK_MS after that everything is closed.
 */
static void do_stop(struct omf_gateway *gw, unsigned budget_ms)
{
	struct sse *s, *next;

	gw->stopping = true;
	for (s = gw->streams; s != NULL; s = next) {
		next = s->next;
		sse_end(s);
	}
	if (gw->srv == NULL) {
		stop_finish(gw);
		return;
	}
	timer_in(gw->stop_ev, (uint64_t)budget_ms + STOP_SLACK_MS);
	lgr_http_server_shutdown(gw->srv, budget_ms, on_server_done, gw);
}

static void on_cmd(evutil_socket_t fd, short what, void *ud)
{
	struct omf_gateway *gw = ud;
	enum cmd cmd;
	unsigned budget;
	uint64_t v;

	(void)what;
	while (read(fd, &v, sizeof(v)) < 0 && errno == EINTR)
		;
	pthread_mutex_lock(&gw->mut);
	cmd = gw->cmd;
	budget = (unsigned)gw->cmd_rc; /* CMD_STOP: the budget travels in cmd_rc */
	gw->cmd = CMD_NONE;
	pthread_mutex_unlock(&gw->mut);
	if (cmd == CMD_START)
		cmd_finish(gw, do_start(gw));
	else if (cmd == CMD_STOP && !gw->stopping)
		do_stop(gw, budget);
}

/* Posts cmd to the loop thread and waits until it is carried out; returns its result. rsyslog thread. */
static int post(struct omf_gateway *gw, enum cmd cmd, int arg)
{
	uint64_t one = 1;
	ssize_t w;
	int rc;

	pthread_mutex_lock(&gw->mut);
	gw->cmd = cmd;
	gw->cmd_rc = arg;
	gw->cmd_done = false;
	pthread_mutex_unlock(&gw->mut);
	do
		w = write(gw->cmd_fd, &one, sizeof(one));
	while (w < 0 && errno == EINTR);
	pthread_mutex_lock(&gw->mut);
	while (!gw->cmd_done)
		pthread_cond_wait(&gw->cond, &gw->mut);
	rc = gw->cmd_rc;
	pthread_mutex_unlock(&gw->mut);
	return rc;
}

/* ---- lifecycle -------------------------------------------------------------------------------------------------- */

/* Loads the tokens file; on failure err says why. */
static int load_tokens(const char *path, struct lgr_gateway_tokens **out, char *err, size_t errlen)
{
	size_t line = 0;
	int rc = lgr_gateway_tokens_load(path, out, &line);
	FILE *f;

	if (rc == LGR_OK)
		return rc;
	if (rc == LGR_EIO) {
		/* the loader's own line says why, but errno is gone by now: ask again for this message */
		f = fopen(path, "r");
		snprintf(err, errlen, "gateway.tokensFile %s cannot be read: %s", path,
			f == NULL ? strerror(errno) : "read error");
		if (f != NULL)
			fclose(f);
	} else if (rc == LGR_EDECODE && line > 0) {
		snprintf(err, errlen,
			"gateway.tokensFile %s, line %zu: expected 'TOKEN admin' or 'TOKEN SOURCE_ID[,SOURCE_ID...]' "
			"(a token once, no empty source id)",
			path, line);
	} else if (rc == LGR_ETOOBIG) {
		snprintf(err, errlen, "gateway.tokensFile %s is larger than %u bytes", path,
			LGR_GATEWAY_MAX_TOKENS_FILE);
	} else {
		snprintf(err, errlen, "gateway.tokensFile %s: %s", path, lgr_strerror(rc));
	}
	return rc;
}

/* Frees what omf_gateway_new made; the loop never ran our events, or has freed them. */
static void release(struct omf_gateway *gw)
{
	if (gw->cmd_ev != NULL)
		event_free(gw->cmd_ev);
	if (gw->stop_ev != NULL)
		event_free(gw->stop_ev);
	if (gw->cmd_fd >= 0)
		close(gw->cmd_fd);
	lgr_recent_free(gw->recent);
	lgr_gateway_tokens_free(gw->tokens);
	pthread_mutex_destroy(&gw->tok_mut);
	pthread_mutex_destroy(&gw->mut);
	pthread_cond_destroy(&gw->cond);
	free(gw->forms);
	free(gw->name);
	free(gw->address);
	free(gw->tokens_file);
	free(gw);
}

int omf_gateway_new(
	struct omf_egress *eg, const struct omf_gateway_conf *conf, struct omf_gateway **out, char *err, size_t errlen)
{
	struct omf_gateway *gw;
	int rc = LGR_EINVAL;

	*out = NULL;
	if (eg == NULL || conf->port < 0 || conf->port > 65535) {
		snprintf(err, errlen, "no egress or a bad port");
		return rc;
	}
	gw = calloc(1, sizeof(*gw));
	if (gw == NULL)
		goto nomem;
	gw->cmd_fd = -1;
	pthread_mutex_init(&gw->tok_mut, NULL);
	pthread_mutex_init(&gw->mut, NULL);
	pthread_cond_init(&gw->cond, NULL);
	gw->eg = eg;
	gw->base = omf_egress_base(eg);
	gw->port = (uint16_t)conf->port;
	gw->ssl_ctx = conf->ssl_ctx;
	gw->heartbeat_ms = conf->heartbeat_ms > 0 ? conf->heartbeat_ms : HEARTBEAT_MS;
	gw->stream_timeout_ms = conf->stream_timeout_ms;
	gw->log_rl = (struct lgr_ratelimit)LGR_RATELIMIT_INIT(LOG_WINDOW_MS, LOG_BURST);
	gw->name = strdup(conf->name != NULL ? conf->name : "omfirehose(gateway)");
	gw->lg = (struct lgr_logger){gw->name, conf->log, conf->log_ud};
	gw->address = strdup(conf->address != NULL ? conf->address : "127.0.0.1");
	gw->tokens_file = conf->tokens_file != NULL ? strdup(conf->tokens_file) : NULL;
	if (gw->name == NULL || gw->address == NULL || (conf->tokens_file != NULL && gw->tokens_file == NULL))
		goto nomem;
	if (gw->tokens_file != NULL) {
		rc = load_tokens(gw->tokens_file, &gw->tokens, err, errlen);
		if (rc != LGR_OK)
			goto out;
	}
	if (conf->recent_size > 0) {
		rc = lgr_recent_new(conf->recent_size, conf->recent_max_sources, &gw->recent);
		if (rc == LGR_ENOMEM)
			goto nomem;
		if (rc != LGR_OK) {
			snprintf(err, errlen, "recent.size %zu or recent.maxSources %zu out of range",
				conf->recent_size, conf->recent_max_sources);
			goto out;
		}
	}
	gw->cmd_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (gw->cmd_fd < 0) {
		snprintf(err, errlen, "eventfd: %s", strerror(errno));
		rc = LGR_EIO;
		goto out;
	}
	/* the loop is not running yet (the egress starts later), so its events may be added from here */
	gw->cmd_ev = event_new(gw->base, gw->cmd_fd, EV_READ | EV_PERSIST, on_cmd, gw);
	gw->stop_ev = evtimer_new(gw->base, on_stop_ev, gw);
	if (gw->cmd_ev == NULL || gw->stop_ev == NULL || event_add(gw->cmd_ev, NULL) != 0)
		goto nomem;
	*out = gw;
	return LGR_OK;
nomem:
	rc = LGR_ENOMEM;
	snprintf(err, errlen, "out of memory");
out:
	if (gw != NULL)
		release(gw);
	return rc;
}

int omf_gateway_start(struct omf_gateway *gw, uint16_t *port)
{
	int rc;

	if (gw == NULL || gw->start_posted)
		return LGR_EIO;
	gw->start_posted = true;
	rc = post(gw, CMD_START, 0);
	if (rc != LGR_OK)
		return LGR_EIO;
	*port = gw->bound_port;
	return LGR_OK;
}

bool omf_gateway_records(const struct omf_gateway *gw)
{
	return gw != NULL && gw->recent != NULL;
}

void omf_gateway_record(struct omf_gateway *gw, struct omf_env *e)
{
	struct lgr_env *env;

	if (!omf_gateway_records(gw))
		return;
	env = omf_env_v2(e);
	if (env == NULL || lgr_recent_add(gw->recent, env) != LGR_OK)
		__atomic_add_fetch(&gw->unrecorded, 1, __ATOMIC_RELAXED);
}

void omf_gateway_reload(struct omf_gateway *gw)
{
	struct lgr_gateway_tokens *t = NULL, *old;
	char err[512];

	if (gw == NULL || gw->tokens_file == NULL)
		return;
	if (load_tokens(gw->tokens_file, &t, err, sizeof(err)) != LGR_OK) {
		lgr_logger_put(&gw->lg, LGR_LOG_WARNING, "%s; the tokens loaded before stay in use", err);
		return;
	}
	pthread_mutex_lock(&gw->tok_mut);
	old = gw->tokens;
	gw->tokens = t;
	pthread_mutex_unlock(&gw->tok_mut);
	lgr_gateway_tokens_free(old);
	lgr_logger_put(&gw->lg, LGR_LOG_INFO, "gateway.tokensFile %s reloaded: %zu tokens", gw->tokens_file,
		lgr_gateway_tokens_count(t));
}

void omf_gateway_free(struct omf_gateway *gw, unsigned budget_ms)
{
	uint64_t lost;

	if (gw == NULL)
		return;
	/* once started, our events belong to the running loop: the loop thread tears down and frees them */
	if (gw->start_posted)
		post(gw, CMD_STOP, (int)(budget_ms > 600000 ? 600000 : budget_ms));
	lost = __atomic_load_n(&gw->unrecorded, __ATOMIC_RELAXED);
	if (lost > 0)
		lgr_logger_put(&gw->lg, LGR_LOG_WARNING,
			"%" PRIu64 " envelopes could not be kept for /api/v1/read (out of memory)", lost);
	release(gw);
}
