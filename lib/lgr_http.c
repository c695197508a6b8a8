/*
 * lgr_http.c: the plain HTTP server of lgr_http.h: listener and adopted sockets, the choice of protocol per
 * connection (ALPN after the TLS handshake, or the HTTP/2 preface in cleartext), HTTP/1.1 on libhttp-parser,
 * HTTP/2 on nghttp2 over lgr_h2's connection machinery (lgr_h2__conn, lgr_h2__outq), exchanges, graceful shutdown.
 *
 * Lifetime: as in lgr_h2, a connection dies in two steps: conn_kill() marks it and wakes it; the teardown (on_close
 * of its exchanges, release) runs when the current event of that connection ends. HTTP/1.1 connections and those
 * still choosing their protocol run on this file's bufferevent callbacks; an HTTP/2 connection hands its
 * bufferevent to lgr_h2__conn, whose ops (h2_ops) lead back here. Every event is bracketed by srv_enter/srv_leave,
 * so that lgr_http_server_free() from a handler is deferred until the event ends.
 *
 * HTTP/1.1: one exchange at a time per connection. Input is parsed until a request is complete; the parser is then
 * paused and further input (pipelined requests) waits in the bufferevent, bounded by its read watermark, until the
 * response is complete. The connection's output buffer is the exchange's send queue.
 */
#include "lgr_http.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <http_parser.h>
#include <nghttp2/nghttp2.h>
#include <openssl/err.h>

#include "lgr_h2_internal.h"
#include "lgr_tls.h"

#define FLUSH_MS     1000 /* shutdown: time for the last bytes once every response ended */
#define LINGER_MS    500  /* after the last response: time for the client to close first */
#define PEEK_EXTENTS 16
#define NONE	     UINT32_MAX /* an arena offset not set */
#define PREFACE	     "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#define PREFACE_LEN  24
#define FIELD_EXTRA  4	   /* ": " and CRLF of a field, counted against max_header in both protocols */
#define DISCARD_MAX  65536 /* HTTP/2: request body still to come after an early response, read and dropped */

const char *const lgr_http_alpn[] = {"h2", "http/1.1", NULL};

/* ---- objects ------------------------------------------------------------------------------------------------ */

/* A bounded store of NUL-terminated strings, referred to by offset while it may still move. */
struct arena {
	char *buf;
	size_t len, cap, limit;
};

enum x_state {
	X_READING,   /* the request is arriving */
	X_WAITING,   /* handed to on_request, not answered */
	X_STREAMING, /* a streaming response is open */
	X_ENDED,     /* the response is complete on our side */
};

enum piece { PIECE_NONE, PIECE_URL, PIECE_FIELD, PIECE_VALUE };

struct field {
	uint32_t name, value;
};

struct conn;

struct lgr_http_exchange {
	struct conn *conn;
	struct lgr_http_exchange *prev, *next; /* HTTP/2: the streams of the connection */
	int32_t id;			       /* HTTP/2 stream; 0 in HTTP/1.1 */
	enum x_state state;
	bool delivered;	 /* on_request ran: on_close is owed */
	bool closed;	 /* on_close ran or is not owed */
	bool head;	 /* a HEAD request: no response body */
	bool chunked;	 /* HTTP/1.1 streaming response in chunked coding */
	bool end_sent;	 /* HTTP/2: our END_STREAM went out */
	bool too_big;	 /* HTTP/2: over max_header or LGR_HTTP_MAX_HEADERS */
	bool want_drain; /* HTTP/1.1: a write was refused */
	enum piece last; /* HTTP/1.1: what the parser handed over last */
	size_t hdr_bytes;
	struct arena a;
	uint32_t method, url, authority;
	struct field fields[LGR_HTTP_MAX_HEADERS];
	size_t nfields;
	uint8_t *body;
	size_t body_len;
	uint64_t data_in;      /* HTTP/2: request body bytes received, kept or not */
	struct lgr_h2__outq q; /* HTTP/2 */
	struct lgr_http_header hdrs[LGR_HTTP_MAX_HEADERS];
	struct lgr_http_request req;
	void *data;
};

enum proto { P_DETECT, P_H1, P_H2 };

struct conn {
	struct lgr_h2__conn h2; /* first: nghttp2's user data and lgr_h2's ops see &h2 (HTTP/2); h2.peer always */
	struct lgr_http_server *srv;
	struct conn *prev, *next;
	struct bufferevent *bev; /* ours until HTTP/2 takes it over */
	SSL *ssl;		 /* owned by the bufferevent; NULL in cleartext */
	struct event *kick;	 /* HTTP/1.1: completion of a response, death */
	struct event *timer;	 /* handshake deadline, idle timeout, lingering close */
	enum proto proto;
	/* HTTP/1.1 */
	http_parser parser;
	struct lgr_http_exchange *x; /* being read or answered */
	int perr;		     /* the status a parser callback refuses the request with */
	const char *perr_why;
	bool message_done; /* the parser completed a request */
	bool keep_alive;   /* of the current request */
	bool closing;	   /* no more requests: close once the output is out */
	bool lingering;	   /* output done, write side shut: waiting for the client to close */
	/* HTTP/2 */
	struct lgr_http_exchange *streams;
	size_t nstreams;
	bool drain_owed;
	/* death before or without HTTP/2 (an HTTP/2 connection dies through h2) */
	bool dead;
	bool down_done;
	enum lgr_log_level level;
	char why[192];
};

struct lgr_http_server {
	struct event_base *base;
	struct lgr_http_server_config cfg;
	char name[64];
	struct evconnlistener *listener;
	uint16_t port;
	struct conn *conns;
	size_t nconns;
	nghttp2_session_callbacks *cbs;
	nghttp2_option *opt;
	http_parser_settings ps;
	struct event *phase_ev;
	enum lgr_h2__phase phase;
	void (*done)(void *ud);
	void *done_ud;
	unsigned long refused;
	time_t refused_at;
	int depth;
	bool freeing;
};

static void srv_enter(void *owner)
{
	((struct lgr_http_server *)owner)->depth++;
}

static void destroy(struct lgr_http_server *srv);

static void srv_leave(void *owner)
{
	struct lgr_http_server *srv = owner;

	if (--srv->depth == 0 && srv->freeing)
		destroy(srv);
}

static void arm(struct event *ev, unsigned ms)
{
	struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};

	evtimer_add(ev, &tv);
}

/* What the operator hears: errors to on_refused when installed, everything else to the log hook. */
static void report(struct lgr_http_server *srv, const char *peer, const char *path, int status,
	enum lgr_log_level level, const char *why)
{
	if (srv->cfg.on_refused != NULL && level <= LGR_LOG_WARNING)
		srv->cfg.on_refused(peer, path, status, why, srv->cfg.ud);
	else if (path != NULL)
		lgr_log(level, "%s: %s: %s: %s", srv->name, peer, path, why);
	else
		lgr_log(level, "%s: %s: %s", srv->name, peer, why);
}

/* ---- arena -------------------------------------------------------------------------------------------------- */

/* Room for n more bytes, so that copies from inside the arena cannot see it move. */
static int arena_reserve(struct arena *a, size_t n)
{
	if (n > a->limit - a->len)
		return LGR_ETOOBIG;
	if (a->len + n > a->cap) {
		size_t cap = a->cap > 0 ? a->cap : 256;
		char *b;

		while (cap < a->len + n)
			cap *= 2;
		if (cap > a->limit)
			cap = a->limit;
		b = realloc(a->buf, cap);
		if (b == NULL)
			return LGR_ENOMEM;
		a->buf = b;
		a->cap = cap;
	}
	return LGR_OK;
}

static int arena_put(struct arena *a, const char *p, size_t n, bool lower)
{
	int rc = arena_reserve(a, n);

	if (rc != LGR_OK)
		return rc;
	for (size_t i = 0; i < n; i++)
		a->buf[a->len + i] = lower && p[i] >= 'A' && p[i] <= 'Z' ? (char)(p[i] - 'A' + 'a') : p[i];
	a->len += n;
	return LGR_OK;
}

static int arena_end(struct arena *a)
{
	return arena_put(a, "", 1, false);
}

static const char *arena_str(const struct arena *a, uint32_t off)
{
	return off == NONE ? "" : a->buf + off;
}

/* ---- exchanges ---------------------------------------------------------------------------------------------- */

static struct lgr_http_exchange *x_new(struct conn *hc)
{
	const struct lgr_http_server_config *cfg = &hc->srv->cfg;
	struct lgr_http_exchange *x = calloc(1, sizeof(*x));

	if (x == NULL)
		return NULL;
	x->conn = hc;
	x->method = x->url = x->authority = NONE;
	/* The strings as received, then copies of path and query, which are no longer than the target. */
	x->a.limit = 2 * cfg->max_header + 4 * LGR_HTTP_MAX_HEADERS + 64;
	return x;
}

static void x_free(struct lgr_http_exchange *x)
{
	lgr_h2__outq_cleanup(&x->q);
	free(x->a.buf);
	free(x->body);
	free(x);
}

/* The handler's view of x ends: on_close once for a delivered exchange. */
static void x_notify_close(struct lgr_http_exchange *x, bool complete)
{
	struct lgr_http_server *srv = x->conn->srv;
	bool owed = x->delivered && !x->closed && !srv->freeing;

	x->closed = true;
	if (owed && srv->cfg.handlers->on_close != NULL)
		srv->cfg.handlers->on_close(x, complete, srv->cfg.ud);
}

static int x_body(struct lgr_http_exchange *x, const char *data, size_t len)
{
	size_t max = x->conn->srv->cfg.max_body;
	uint8_t *b;

	if (len > max - x->body_len)
		return LGR_ETOOBIG;
	if (len == 0)
		return LGR_OK;
	b = realloc(x->body, x->body_len + len);
	if (b == NULL)
		return LGR_ENOMEM;
	memcpy(b + x->body_len, data, len);
	x->body = b;
	x->body_len += len;
	return LGR_OK;
}

static const char *x_field(const struct lgr_http_exchange *x, const char *name)
{
	for (size_t i = 0; i < x->nfields; i++) {
		if (strcmp(arena_str(&x->a, x->fields[i].name), name) == 0)
			return arena_str(&x->a, x->fields[i].value);
	}
	return NULL;
}

/* Path and query from the target, then every offset into a pointer: the request as on_request sees it. */
static int x_resolve(struct lgr_http_exchange *x, enum lgr_http_version version)
{
	struct http_parser_url u;
	size_t tlen = strlen(arena_str(&x->a, x->url));
	const char *target;
	uint32_t path = NONE, query = NONE;
	const char *host;

	http_parser_url_init(&u);
	if (tlen == 0 || tlen > UINT16_MAX ||
		http_parser_parse_url(
			arena_str(&x->a, x->url), tlen, strcmp(arena_str(&x->a, x->method), "CONNECT") == 0, &u) != 0)
		return LGR_EDECODE;
	/* Path and query are copied from the target inside the arena: it must not move meanwhile. */
	if (arena_reserve(&x->a, 2 * tlen + 2) != LGR_OK)
		return LGR_ENOMEM;
	target = arena_str(&x->a, x->url);
	if (u.field_set & (1 << UF_PATH)) {
		path = (uint32_t)x->a.len;
		if (arena_put(&x->a, target + u.field_data[UF_PATH].off, u.field_data[UF_PATH].len, false) != LGR_OK ||
			arena_end(&x->a) != LGR_OK)
			return LGR_ENOMEM;
	}
	if (u.field_set & (1 << UF_QUERY)) {
		query = (uint32_t)x->a.len;
		if (arena_put(&x->a, target + u.field_data[UF_QUERY].off, u.field_data[UF_QUERY].len, false) !=
				LGR_OK ||
			arena_end(&x->a) != LGR_OK)
			return LGR_ENOMEM;
	}
	for (size_t i = 0; i < x->nfields; i++) {
		char *v = x->a.buf + x->fields[i].value;
		size_t n;

		if (x->fields[i].value == NONE)
			continue;
		/* Trailing whitespace is not part of a field value (RFC 9110 5.5). */
		n = strlen(v);
		while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
			v[--n] = '\0';
	}
	for (size_t i = 0; i < x->nfields; i++) {
		x->hdrs[i].name = arena_str(&x->a, x->fields[i].name);
		x->hdrs[i].value = arena_str(&x->a, x->fields[i].value);
	}
	host = x_field(x, "host");
	x->req.method = arena_str(&x->a, x->method);
	x->req.path = arena_str(&x->a, path);
	x->req.query = arena_str(&x->a, query);
	x->req.authority = x->authority != NONE ? arena_str(&x->a, x->authority) : host != NULL ? host : "";
	x->req.headers = x->hdrs;
	x->req.nheaders = x->nfields;
	x->req.body = x->body;
	x->req.body_len = x->body_len;
	x->req.peer = x->conn->h2.peer;
	x->req.version = version;
	x->req.ssl = x->conn->ssl;
	x->head = strcmp(x->req.method, "HEAD") == 0;
	return LGR_OK;
}

static void deliver(struct lgr_http_exchange *x)
{
	struct lgr_http_server *srv = x->conn->srv;

	x->state = X_WAITING;
	x->delivered = true;
	srv->cfg.handlers->on_request(x, &x->req, srv->cfg.ud);
}

const char *lgr_http_request_header(const struct lgr_http_request *req, const char *name)
{
	for (size_t i = 0; i < req->nheaders; i++) {
		if (strcasecmp(req->headers[i].name, name) == 0)
			return req->headers[i].value;
	}
	return NULL;
}

/* ---- response headers --------------------------------------------------------------------------------------- */

static void http_date(char *buf, size_t len)
{
	static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
	static const char months[12][4] = {
		"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	time_t now = time(NULL);
	struct tm tm;

	gmtime_r(&now, &tm);
	snprintf(buf, len, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday % 7], tm.tm_mday,
		months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

static const char *reason(int status)
{
	const char *r = http_status_str((enum http_status)status);

	return strcmp(r, "<unknown>") == 0 ? "" : r;
}

static bool is_token(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			    strchr("!#$%&'*+-.^_`|~", c) != NULL))
			return false;
	}
	return true;
}

static bool is_value(const char *s)
{
	return strpbrk(s, "\r\n") == NULL;
}

static bool valid_response(int status, const char *ctype, const struct lgr_http_header *h, size_t n)
{
	if (status < 200 || status > 999 || n > LGR_HTTP_MAX_HEADERS || (n > 0 && h == NULL) ||
		(ctype != NULL && !is_value(ctype)))
		return false;
	for (size_t i = 0; i < n; i++) {
		if (h[i].name == NULL || h[i].value == NULL || !is_token(h[i].name) || !is_value(h[i].value))
			return false;
	}
	return true;
}

enum use { USE_PASS, USE_DROP, USE_CONNECTION, USE_DATE };

/* What becomes of a handler's header: framing and hop-by-hop fields are the server's. */
static enum use classify(const char *name)
{
	static const char *const drop[] = {
		"content-length", "transfer-encoding", "keep-alive", "upgrade", "te", "proxy-connection"};

	for (size_t i = 0; i < sizeof(drop) / sizeof(drop[0]); i++) {
		if (strcasecmp(name, drop[i]) == 0)
			return USE_DROP;
	}
	if (strcasecmp(name, "connection") == 0)
		return USE_CONNECTION;
	if (strcasecmp(name, "date") == 0)
		return USE_DATE;
	return USE_PASS;
}

static bool bodiless(int status)
{
	return status == 204 || status == 304;
}

/* ---- connections ---------------------------------------------------------------------------------------------- */

static void conn_kill(struct conn *hc, enum lgr_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void conn_kill(struct conn *hc, enum lgr_log_level level, const char *fmt, ...)
{
	char why[sizeof(hc->why)];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	if (hc->proto == P_H2) {
		lgr_h2__conn_kill(&hc->h2, level, "%s", why);
		return;
	}
	if (hc->dead)
		return;
	hc->dead = true;
	hc->level = level;
	snprintf(hc->why, sizeof(hc->why), "%s", why);
	event_active(hc->kick, EV_WRITE, 0);
}

static bool conn_gone(const struct conn *hc)
{
	return hc->srv->freeing || (hc->proto == P_H2 ? hc->h2.dead || hc->h2.ng == NULL : hc->dead);
}

static void maybe_done(struct lgr_http_server *srv)
{
	static const struct timeval now = {0, 0};

	if (srv->phase == LGR_H2__RUNNING || srv->phase == LGR_H2__CLOSED || srv->nconns > 0)
		return;
	srv->phase = LGR_H2__CLOSED;
	event_del(srv->phase_ev);
	event_add(srv->phase_ev, &now);
}

/* Unlinks and frees hc, whose exchanges are gone already. */
static void conn_release(struct conn *hc)
{
	struct lgr_http_server *srv = hc->srv;

	if (hc->prev != NULL)
		hc->prev->next = hc->next;
	else
		srv->conns = hc->next;
	if (hc->next != NULL)
		hc->next->prev = hc->prev;
	srv->nconns--;
	if (hc->bev != NULL)
		bufferevent_free(hc->bev);
	if (hc->kick != NULL)
		event_free(hc->kick);
	if (hc->timer != NULL)
		event_free(hc->timer);
	free(hc);
	maybe_done(srv);
}

/* The end of a connection that is not HTTP/2: its exchange hears of it, then it goes. */
static void conn_down(struct conn *hc)
{
	report(hc->srv, hc->h2.peer, NULL, -1, hc->level, hc->why);
	if (hc->x != NULL) {
		x_notify_close(hc->x, hc->x->state == X_ENDED);
		x_free(hc->x);
		hc->x = NULL;
	}
	conn_release(hc);
}

static void conn_enter(struct conn *hc)
{
	srv_enter(hc->srv);
}

/* Ends an event of hc: a death noticed during it is handled now (HTTP/2 connections die through lgr_h2). */
static void conn_leave(struct conn *hc)
{
	struct lgr_http_server *srv = hc->srv;

	if (hc->proto != P_H2 && hc->dead && !hc->down_done) {
		hc->down_done = true;
		conn_down(hc); /* hc is freed */
	}
	srv_leave(srv);
}

/* The reason of a failed bufferevent: OpenSSL's queue first, then errno. */
static void describe_error(struct bufferevent *bev, bool handshaking, char *buf, size_t len)
{
	unsigned long e = bufferevent_get_openssl_error(bev);
	int err = EVUTIL_SOCKET_ERROR();

	if (e != 0) {
		char what[160];

		ERR_error_string_n(e, what, sizeof(what));
		snprintf(buf, len, "TLS: %s", what);
		while (bufferevent_get_openssl_error(bev) != 0)
			;
	} else if (err != 0) {
		snprintf(buf, len, "%s", evutil_socket_error_to_string(err));
	} else {
		snprintf(buf, len, handshaking ? "TLS handshake failed" : "connection failed");
	}
}

/* ---- HTTP/1.1: responses -------------------------------------------------------------------------------------- */

enum framing { FRAME_LENGTH, FRAME_CHUNKED, FRAME_NONE };

/* Status line and header block of a response, queued whole. */
static int h1_head(struct conn *hc, int status, const char *ctype, const struct lgr_http_header *h, size_t n,
	enum framing framing, size_t len, bool close)
{
	struct evbuffer *b = evbuffer_new();
	bool has_date = false;
	int rc = LGR_ENOMEM;
	int bad = 0;

	if (b == NULL)
		return LGR_ENOMEM;
	bad |= evbuffer_add_printf(b, "HTTP/1.1 %d %s\r\n", status, reason(status)) < 0;
	if (ctype != NULL)
		bad |= evbuffer_add_printf(b, "Content-Type: %s\r\n", ctype) < 0;
	for (size_t i = 0; i < n; i++) {
		enum use use = classify(h[i].name);

		if (use == USE_DROP || (use == USE_CONNECTION && close))
			continue;
		has_date |= use == USE_DATE;
		bad |= evbuffer_add_printf(b, "%s: %s\r\n", h[i].name, h[i].value) < 0;
	}
	if (!has_date) {
		char date[40];

		http_date(date, sizeof(date));
		bad |= evbuffer_add_printf(b, "Date: %s\r\n", date) < 0;
	}
	if (framing == FRAME_LENGTH)
		bad |= evbuffer_add_printf(b, "Content-Length: %zu\r\n", len) < 0;
	else if (framing == FRAME_CHUNKED)
		bad |= evbuffer_add_printf(b, "Transfer-Encoding: chunked\r\n") < 0;
	if (close)
		bad |= evbuffer_add_printf(b, "Connection: close\r\n") < 0;
	bad |= evbuffer_add(b, "\r\n", 2) != 0;
	if (!bad && evbuffer_add_buffer(bufferevent_get_output(hc->bev), b) == 0)
		rc = LGR_OK;
	evbuffer_free(b);
	return rc;
}

/* The last response is queued: close once it is out (cleartext: half-close and wait for the client's close). */
static void h1_close_soon(struct conn *hc)
{
	struct evbuffer *out = bufferevent_get_output(hc->bev);

	if (hc->closing)
		return;
	hc->closing = true;
	bufferevent_setwatermark(hc->bev, EV_WRITE, 0, 0);
	evtimer_del(hc->timer);
	arm(hc->timer, hc->srv->cfg.idle_ms);
	if (evbuffer_get_length(out) > 0)
		return; /* the write callback goes on */
	if (hc->ssl != NULL) {
		conn_kill(hc, LGR_LOG_DEBUG, "closed after the last response");
		return;
	}
	/* Closing with unread input would reset the connection and could destroy the response in flight. */
	hc->lingering = true;
	shutdown(bufferevent_getfd(hc->bev), SHUT_WR);
	evbuffer_drain(bufferevent_get_input(hc->bev), evbuffer_get_length(bufferevent_get_input(hc->bev)));
	evtimer_del(hc->timer);
	arm(hc->timer, LINGER_MS);
}

/* The server answers a request itself (malformed, over a limit) and closes the connection after it. */
static void h1_refuse(struct conn *hc, int status, const char *why)
{
	struct lgr_http_exchange *x = hc->x;
	char body[64];
	const char *path = NULL;

	if (x != NULL && x->url != NONE && x->last != PIECE_URL)
		path = arena_str(&x->a, x->url);
	report(hc->srv, hc->h2.peer, path, status, LGR_LOG_WARNING, why);
	hc->x = NULL;
	if (x != NULL)
		x_free(x);
	snprintf(body, sizeof(body), "%d %s\n", status, reason(status));
	if (h1_head(hc, status, "text/plain; charset=utf-8", NULL, 0, FRAME_LENGTH, strlen(body), true) != LGR_OK ||
		evbuffer_add(bufferevent_get_output(hc->bev), body, strlen(body)) != 0) {
		conn_kill(hc, LGR_LOG_ERR, "out of memory");
		return;
	}
	h1_close_soon(hc);
}

static int h1_respond(struct lgr_http_exchange *x, int status, const char *ctype, const struct lgr_http_header *h,
	size_t n, const void *body, size_t len)
{
	struct conn *hc = x->conn;
	bool close = !hc->keep_alive || hc->srv->phase != LGR_H2__RUNNING;
	bool none = bodiless(status);
	int rc;

	rc = h1_head(hc, status, ctype, h, n, none ? FRAME_NONE : FRAME_LENGTH, len, close);
	if (rc == LGR_OK && !none && !x->head && len > 0 &&
		evbuffer_add(bufferevent_get_output(hc->bev), body, len) != 0)
		rc = LGR_ENOMEM;
	if (rc != LGR_OK) {
		conn_kill(hc, LGR_LOG_ERR, "out of memory");
		return rc;
	}
	hc->keep_alive = !close;
	x->state = X_ENDED;
	event_active(hc->kick, EV_WRITE, 0);
	return LGR_OK;
}

static int h1_start(
	struct lgr_http_exchange *x, int status, const char *ctype, const struct lgr_http_header *h, size_t n)
{
	struct conn *hc = x->conn;
	bool chunked = x->req.version == LGR_HTTP_1_1;
	/* Without chunked coding (HTTP/1.0) the end of the connection is the end of the body. */
	bool close = !hc->keep_alive || hc->srv->phase != LGR_H2__RUNNING || (!chunked && !x->head);
	int rc = h1_head(hc, status, ctype, h, n, chunked ? FRAME_CHUNKED : FRAME_NONE, 0, close);

	if (rc != LGR_OK) {
		conn_kill(hc, LGR_LOG_ERR, "out of memory");
		return rc;
	}
	hc->keep_alive = !close;
	x->chunked = chunked;
	if (x->head) {
		x->state = X_ENDED;
		event_active(hc->kick, EV_WRITE, 0);
	} else {
		x->state = X_STREAMING;
	}
	return LGR_OK;
}

static int h1_admit(struct lgr_http_exchange *x, size_t len)
{
	size_t have = evbuffer_get_length(bufferevent_get_output(x->conn->bev));
	size_t limit = x->conn->srv->cfg.max_send_queue;

	if (have > 0 && (len > limit || have > limit - len)) {
		x->want_drain = true;
		return LGR_EFULL;
	}
	return LGR_OK;
}

/* One chunk: data (or the contents of buf, moved). */
static int h1_write(struct lgr_http_exchange *x, const void *data, struct evbuffer *buf, size_t len)
{
	struct evbuffer *out = bufferevent_get_output(x->conn->bev);
	char size[24];
	int rc = h1_admit(x, len);

	if (rc != LGR_OK || len == 0)
		return rc;
	snprintf(size, sizeof(size), "%zx\r\n", len);
	if (evbuffer_expand(out, strlen(size) + (buf == NULL ? len : 0) + 2) != 0)
		return LGR_ENOMEM;
	if (x->chunked)
		evbuffer_add(out, size, strlen(size));
	if (buf != NULL ? evbuffer_add_buffer(out, buf) != 0 : evbuffer_add(out, data, len) != 0) {
		conn_kill(x->conn, LGR_LOG_ERR, "out of memory");
		return LGR_ENOMEM;
	}
	if (x->chunked)
		evbuffer_add(out, "\r\n", 2);
	return LGR_OK;
}

static int h1_end(struct lgr_http_exchange *x)
{
	struct conn *hc = x->conn;

	if (x->chunked && evbuffer_add(bufferevent_get_output(hc->bev), "0\r\n\r\n", 5) != 0) {
		conn_kill(hc, LGR_LOG_ERR, "out of memory");
		return LGR_ENOMEM;
	}
	x->state = X_ENDED;
	event_active(hc->kick, EV_WRITE, 0);
	return LGR_OK;
}

/* ---- HTTP/1.1: requests --------------------------------------------------------------------------------------- */

static int h1_fail(struct conn *hc, int status, const char *why)
{
	hc->perr = status;
	hc->perr_why = why;
	return -1;
}

static int h1_begin(http_parser *p)
{
	struct conn *hc = p->data;

	hc->x = x_new(hc);
	return hc->x != NULL ? 0 : h1_fail(hc, 503, "out of memory");
}

/* A piece of the target, a field name or a field value; pieces of one kind in a row are one string. */
static int h1_piece(http_parser *p, enum piece kind, const char *at, size_t len)
{
	struct conn *hc = p->data;
	struct lgr_http_exchange *x = hc->x;
	int rc = LGR_OK;

	x->hdr_bytes += len;
	if (kind != x->last) {
		if (x->last != PIECE_NONE)
			rc = arena_end(&x->a);
		if (kind == PIECE_URL) {
			x->url = (uint32_t)x->a.len;
		} else if (kind == PIECE_FIELD) {
			if (x->nfields == LGR_HTTP_MAX_HEADERS)
				return h1_fail(hc, 431, "too many header fields");
			x->fields[x->nfields].name = (uint32_t)x->a.len;
			x->fields[x->nfields].value = NONE;
			x->nfields++;
			x->hdr_bytes += FIELD_EXTRA;
		} else {
			x->fields[x->nfields - 1].value = (uint32_t)x->a.len;
		}
		x->last = kind;
	}
	if (x->hdr_bytes > hc->srv->cfg.max_header)
		return h1_fail(hc, 431, "request line and headers over the limit");
	if (rc == LGR_OK)
		rc = arena_put(&x->a, at, len, kind == PIECE_FIELD);
	if (rc == LGR_ENOMEM)
		return h1_fail(hc, 503, "out of memory");
	return rc == LGR_OK ? 0 : h1_fail(hc, 431, "request line and headers over the limit");
}

static int h1_url(http_parser *p, const char *at, size_t len)
{
	return h1_piece(p, PIECE_URL, at, len);
}

static int h1_field(http_parser *p, const char *at, size_t len)
{
	return h1_piece(p, PIECE_FIELD, at, len);
}

static int h1_value(http_parser *p, const char *at, size_t len)
{
	return h1_piece(p, PIECE_VALUE, at, len);
}

/* Returns -1 (not 1 or 2, which mean "no body" to the parser) to refuse. */
static int h1_headers(http_parser *p)
{
	struct conn *hc = p->data;
	struct lgr_http_exchange *x = hc->x;
	const char *expect;
	const char *method = http_method_str((enum http_method)p->method);

	if (x->url == NONE || (x->last != PIECE_NONE && arena_end(&x->a) != LGR_OK))
		return h1_fail(hc, 431, "request line and headers over the limit");
	x->last = PIECE_NONE;
	x->method = (uint32_t)x->a.len;
	if (arena_put(&x->a, method, strlen(method), false) != LGR_OK || arena_end(&x->a) != LGR_OK)
		return h1_fail(hc, 431, "request line and headers over the limit");
	if (p->http_major != 1)
		return h1_fail(hc, 505, "HTTP version not supported");
	if ((p->flags & F_CONTENTLENGTH) && p->content_length > hc->srv->cfg.max_body)
		return h1_fail(hc, 413, "request body over the limit");
	if (p->http_minor >= 1 && x_field(x, "host") == NULL)
		return h1_fail(hc, 400, "no Host header");
	/* HTTP/1.0 connections are not kept: a keep-alive 1.0 client would need the header echoed. */
	hc->keep_alive = p->http_minor >= 1 && http_should_keep_alive(p) && p->method != HTTP_CONNECT;
	expect = x_field(x, "expect");
	if (expect != NULL && p->http_minor >= 1 && strcasecmp(expect, "100-continue") == 0 &&
		evbuffer_add(bufferevent_get_output(hc->bev), "HTTP/1.1 100 Continue\r\n\r\n", 25) != 0)
		return h1_fail(hc, 503, "out of memory");
	return 0;
}

static int h1_body(http_parser *p, const char *at, size_t len)
{
	struct conn *hc = p->data;
	int rc = x_body(hc->x, at, len);

	if (rc == LGR_ETOOBIG)
		return h1_fail(hc, 413, "request body over the limit");
	return rc == LGR_OK ? 0 : h1_fail(hc, 503, "out of memory");
}

static int h1_complete(http_parser *p)
{
	struct conn *hc = p->data;

	hc->message_done = true;
	http_parser_pause(p, 1);
	return 0;
}

static void h1_reset(struct conn *hc)
{
	http_parser_init(&hc->parser, HTTP_REQUEST);
	hc->parser.data = hc;
	hc->perr = 0;
	hc->perr_why = NULL;
	hc->message_done = false;
}

static void h1_deliver(struct conn *hc)
{
	struct lgr_http_exchange *x = hc->x;
	int rc = x_resolve(x, hc->parser.http_minor >= 1 ? LGR_HTTP_1_1 : LGR_HTTP_1_0);

	if (rc != LGR_OK) {
		h1_refuse(hc, rc == LGR_ENOMEM ? 503 : 400, rc == LGR_ENOMEM ? "out of memory" : "bad request target");
		return;
	}
	evtimer_del(hc->timer);
	deliver(x);
}

/* Parses buffered input while no exchange is being answered. */
static void h1_process(struct conn *hc)
{
	struct lgr_http_server *srv = hc->srv;
	struct evbuffer *in = bufferevent_get_input(hc->bev);

	while (!hc->dead && !hc->closing && !srv->freeing && (hc->x == NULL || hc->x->state == X_READING) &&
		evbuffer_get_length(in) > 0) {
		struct evbuffer_iovec v[PEEK_EXTENTS];
		int n = evbuffer_peek(in, -1, NULL, v, PEEK_EXTENTS);
		enum http_errno err = HPE_OK;
		size_t used = 0;

		if (n > PEEK_EXTENTS)
			n = PEEK_EXTENTS;
		for (int i = 0; i < n && err == HPE_OK && !hc->message_done; i++) {
			used += http_parser_execute(&hc->parser, &srv->ps, v[i].iov_base, v[i].iov_len);
			err = HTTP_PARSER_ERRNO(&hc->parser);
		}
		evbuffer_drain(in, used);
		if (hc->message_done) {
			hc->message_done = false;
			h1_deliver(hc);
		} else if (err != HPE_OK) {
			int status = hc->perr != 0 ? hc->perr : err == HPE_HEADER_OVERFLOW ? 431 : 400;

			h1_refuse(hc, status, hc->perr_why != NULL ? hc->perr_why : http_errno_description(err));
		}
	}
}

/* The response of the current exchange is complete: the handler hears of it, the next request may come. */
static void h1_finish(struct conn *hc)
{
	struct lgr_http_server *srv = hc->srv;
	struct lgr_http_exchange *x = hc->x;

	if (x == NULL || x->state != X_ENDED)
		return;
	hc->x = NULL;
	x_notify_close(x, true);
	x_free(x);
	if (hc->dead || srv->freeing)
		return;
	if (!hc->keep_alive || srv->phase != LGR_H2__RUNNING) {
		h1_close_soon(hc);
		return;
	}
	h1_reset(hc);
	arm(hc->timer, srv->cfg.idle_ms);
	h1_process(hc);
}

static void on_kick(evutil_socket_t fd, short what, void *arg)
{
	struct conn *hc = arg;

	conn_enter(hc);
	if (!hc->dead && hc->proto == P_H1)
		h1_finish(hc);
	conn_leave(hc);
}

static void choose(struct conn *hc);

static void on_read(struct bufferevent *bev, void *arg)
{
	struct conn *hc = arg;
	struct evbuffer *in = bufferevent_get_input(bev);

	conn_enter(hc);
	if (!hc->dead && hc->proto == P_DETECT)
		choose(hc);
	if (!hc->dead && hc->proto == P_H1) {
		if (hc->lingering)
			evbuffer_drain(in, evbuffer_get_length(in));
		else
			h1_process(hc);
	}
	conn_leave(hc);
}

static void on_write(struct bufferevent *bev, void *arg)
{
	struct conn *hc = arg;
	size_t have = evbuffer_get_length(bufferevent_get_output(bev));

	conn_enter(hc);
	if (!hc->dead && hc->proto == P_H1) {
		if (hc->closing && !hc->lingering && have == 0) {
			hc->closing = false; /* h1_close_soon again, now with the output empty */
			h1_close_soon(hc);
		} else if (hc->x != NULL && hc->x->want_drain && have <= hc->srv->cfg.max_send_queue / 2) {
			hc->x->want_drain = false;
			if (hc->x->state == X_STREAMING && hc->srv->cfg.handlers->on_drain != NULL)
				hc->srv->cfg.handlers->on_drain(hc->x, hc->srv->cfg.ud);
		}
	}
	conn_leave(hc);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	struct conn *hc = arg;

	conn_enter(hc);
	if (what & BEV_EVENT_CONNECTED) {
		if (!hc->dead && hc->proto == P_DETECT) {
			choose(hc);
			if (!hc->dead && hc->proto == P_H1)
				h1_process(hc);
		}
	} else if (what & BEV_EVENT_EOF) {
		conn_kill(hc, LGR_LOG_DEBUG, "connection closed by the peer");
	} else if (what & BEV_EVENT_ERROR) {
		char buf[sizeof(hc->why)];

		describe_error(bev, hc->proto == P_DETECT, buf, sizeof(buf));
		/* Before the protocol is chosen this is a refused handshake; later, a client that went away. */
		conn_kill(hc, hc->proto == P_DETECT ? LGR_LOG_WARNING : LGR_LOG_INFO, "%s", buf);
	}
	conn_leave(hc);
}

/* Handshake deadline, idle time, or the end of a lingering close. */
static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct conn *hc = arg;
	const struct lgr_http_server_config *cfg = &hc->srv->cfg;

	conn_enter(hc);
	if (hc->proto == P_H2) {
		/* Idle: GOAWAY, then the connection closes once it has nothing more to send. */
		if (hc->nstreams == 0 && hc->h2.ng != NULL && !hc->h2.dead) {
			nghttp2_session_terminate_session(hc->h2.ng, NGHTTP2_NO_ERROR);
			lgr_h2__conn_kick(&hc->h2);
		}
	} else if (hc->dead) {
		/* conn_leave tears it down */
	} else if (hc->proto == P_DETECT) {
		conn_kill(hc, LGR_LOG_WARNING, "no %s within %u ms", hc->ssl != NULL ? "TLS handshake" : "request",
			cfg->handshake_ms);
	} else if (hc->lingering) {
		conn_kill(hc, LGR_LOG_DEBUG, "closed after the last response");
	} else if (hc->closing) {
		conn_kill(hc, LGR_LOG_INFO, "the last response was not taken within %u ms", cfg->idle_ms);
	} else if (hc->x != NULL && hc->x->state == X_READING) {
		conn_kill(hc, LGR_LOG_WARNING, "request headers incomplete after %u ms", cfg->idle_ms);
	} else if (hc->x == NULL) {
		conn_kill(hc, LGR_LOG_DEBUG, "idle for %u ms", cfg->idle_ms);
	}
	conn_leave(hc);
}

static void no_delay(struct bufferevent *bev)
{
	evutil_socket_t fd = bufferevent_getfd(bev);
	int one = 1;

	/* Server-sent events are small and must leave at once. */
	if (fd >= 0)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static void to_h1(struct conn *hc)
{
	const struct lgr_http_server_config *cfg = &hc->srv->cfg;

	hc->proto = P_H1;
	evtimer_del(hc->timer);
	arm(hc->timer, cfg->idle_ms);
	h1_reset(hc);
	/* Pipelined input waiting for the current response is bounded; reading resumes as it is parsed. */
	bufferevent_setwatermark(hc->bev, EV_READ, 0, cfg->max_header + cfg->max_body + 16384);
	bufferevent_setwatermark(hc->bev, EV_WRITE, cfg->max_send_queue / 2, 0);
	no_delay(hc->bev);
}

static const struct lgr_h2__conn_ops h2_ops;

static void to_h2(struct conn *hc)
{
	struct lgr_http_server *srv = hc->srv;

	evtimer_del(hc->timer);
	bufferevent_setcb(hc->bev, NULL, NULL, NULL, NULL);
	if (lgr_h2__conn_init(&hc->h2, srv->base, hc->bev, hc->ssl, &h2_ops, srv, srv->cfg.handshake_ms) != LGR_OK) {
		bufferevent_setcb(hc->bev, on_read, on_write, on_event, hc);
		conn_kill(hc, LGR_LOG_ERR, "cannot set up an HTTP/2 connection: out of memory");
		return;
	}
	hc->bev = NULL; /* ownership transferred to h2 */
	hc->proto = P_H2;
	lgr_h2__conn_start(&hc->h2);
}

/* TLS: ALPN "h2" is HTTP/2, anything else HTTP/1.1. Cleartext: the HTTP/2 preface or HTTP/1.1. */
static void choose(struct conn *hc)
{
	struct evbuffer *in;
	char head[PREFACE_LEN];
	size_t n;

	if (hc->ssl != NULL) {
		char proto[32];

		lgr_tls_alpn(hc->ssl, proto, sizeof(proto));
		if (strcmp(proto, "h2") == 0)
			to_h2(hc);
		else
			to_h1(hc);
		return;
	}
	in = bufferevent_get_input(hc->bev);
	n = evbuffer_get_length(in);
	if (n == 0)
		return;
	if (n > PREFACE_LEN)
		n = PREFACE_LEN;
	evbuffer_copyout(in, head, n);
	if (memcmp(head, PREFACE, n) != 0)
		to_h1(hc);
	else if (n == PREFACE_LEN)
		to_h2(hc);
}

/* ---- HTTP/2 ----------------------------------------------------------------------------------------------------- */

static struct lgr_http_exchange *stream_of(nghttp2_session *ng, int32_t id)
{
	return nghttp2_session_get_stream_user_data(ng, id);
}

static int h2_up(struct lgr_h2__conn *c)
{
	struct conn *hc = (struct conn *)c;
	struct lgr_http_server *srv = hc->srv;
	nghttp2_settings_entry iv[2] = {
		{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, srv->cfg.max_streams},
		{NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, (uint32_t)srv->cfg.max_header},
	};

	if (nghttp2_session_server_new2(&c->ng, srv->cbs, c, srv->opt) != 0)
		return LGR_ENOMEM;
	if (nghttp2_submit_settings(c->ng, NGHTTP2_FLAG_NONE, iv, 2) != 0)
		return LGR_ENOMEM;
	if (srv->phase != LGR_H2__RUNNING)
		nghttp2_session_terminate_session(c->ng, NGHTTP2_NO_ERROR);
	arm(hc->timer, srv->cfg.idle_ms);
	return LGR_OK;
}

static void h2_down(struct lgr_h2__conn *c)
{
	struct conn *hc = (struct conn *)c;

	report(hc->srv, c->peer, NULL, -1, c->level, c->why);
	for (struct lgr_http_exchange *x = hc->streams; x != NULL; x = x->next)
		x_notify_close(x, x->end_sent);
	while (hc->streams != NULL) {
		struct lgr_http_exchange *x = hc->streams;

		hc->streams = x->next;
		x_free(x);
	}
	lgr_h2__conn_cleanup(c);
	conn_release(hc);
}

/* After every send pass: drain notices for the streams whose queue went below half. */
static void h2_flushed(struct lgr_h2__conn *c)
{
	struct conn *hc = (struct conn *)c;
	struct lgr_http_server *srv = hc->srv;

	if (!hc->drain_owed)
		return;
	hc->drain_owed = false;
	for (struct lgr_http_exchange *x = hc->streams; x != NULL; x = x->next) {
		if (!x->q.want_drain)
			continue;
		if (x->closed || x->state != X_STREAMING || srv->freeing) {
			x->q.want_drain = false;
		} else if (lgr_h2__outq_drained(&x->q)) {
			if (srv->cfg.handlers->on_drain != NULL)
				srv->cfg.handlers->on_drain(x, srv->cfg.ud);
		} else {
			hc->drain_owed = true;
		}
	}
}

static bool h2_idle(struct lgr_h2__conn *c)
{
	return ((struct conn *)c)->nstreams == 0;
}

static const struct lgr_h2__conn_ops h2_ops = {
	.enter = srv_enter,
	.leave = srv_leave,
	.up = h2_up,
	.flushed = h2_flushed,
	.down = h2_down,
	.idle = h2_idle,
};

/* Response HEADERS: :status, content-type, the handler's headers (names in lower case), date, content-length. */
static int h2_submit(struct lgr_http_exchange *x, int status, const char *ctype, const struct lgr_http_header *h,
	size_t n, const size_t *length, bool data)
{
	struct conn *hc = x->conn;
	nghttp2_nv nv[LGR_HTTP_MAX_HEADERS + 4];
	char st[8], date[40], len[24];
	char *names;
	size_t k = 0, total = 0, at = 0;
	bool has_date = false;
	nghttp2_data_provider dp = lgr_h2__outq_provider(&x->q);
	int rv;

	for (size_t i = 0; i < n; i++)
		total += strlen(h[i].name) + 1;
	names = malloc(total + 1);
	if (names == NULL)
		return LGR_ENOMEM;
	snprintf(st, sizeof(st), "%d", status);
	nv[k++] = lgr_h2__nv(":status", st);
	if (ctype != NULL)
		nv[k++] = lgr_h2__nv("content-type", ctype);
	for (size_t i = 0; i < n; i++) {
		enum use use = classify(h[i].name);
		char *name = names + at;

		if (use == USE_DROP || use == USE_CONNECTION)
			continue;
		has_date |= use == USE_DATE;
		for (const char *p = h[i].name; *p != '\0'; p++)
			names[at++] = *p >= 'A' && *p <= 'Z' ? (char)(*p - 'A' + 'a') : *p;
		names[at++] = '\0';
		nv[k++] = lgr_h2__nv(name, h[i].value);
	}
	if (!has_date) {
		http_date(date, sizeof(date));
		nv[k++] = lgr_h2__nv("date", date);
	}
	if (length != NULL) {
		snprintf(len, sizeof(len), "%zu", *length);
		nv[k++] = lgr_h2__nv("content-length", len);
	}
	rv = nghttp2_submit_response(hc->h2.ng, x->id, nv, k, data ? &dp : NULL);
	free(names); /* nghttp2 copied the headers */
	if (rv != 0)
		return rv == NGHTTP2_ERR_NOMEM ? LGR_ENOMEM : LGR_EINVAL;
	lgr_h2__conn_kick(&hc->h2);
	return LGR_OK;
}

static int h2_respond(struct lgr_http_exchange *x, int status, const char *ctype, const struct lgr_http_header *h,
	size_t n, const void *body, size_t len)
{
	bool none = bodiless(status);
	bool data = !none && !x->head && len > 0;
	int rc = LGR_OK;

	/* The queue is empty: it takes a body of any size. */
	if (data)
		rc = lgr_h2__outq_push_raw(&x->q, body, len);
	if (rc == LGR_OK) {
		x->q.eof = true;
		rc = h2_submit(x, status, ctype, h, n, none ? NULL : &len, data);
	}
	if (rc == LGR_OK)
		x->state = X_ENDED;
	return rc;
}

static int h2_start(
	struct lgr_http_exchange *x, int status, const char *ctype, const struct lgr_http_header *h, size_t n)
{
	int rc = h2_submit(x, status, ctype, h, n, NULL, !x->head);

	if (rc == LGR_OK)
		x->state = x->head ? X_ENDED : X_STREAMING;
	return rc;
}

static int h2_write(struct lgr_http_exchange *x, const void *data, struct evbuffer *buf, size_t len)
{
	struct conn *hc = x->conn;
	int rc;

	if (len == 0)
		return LGR_OK;
	rc = buf != NULL ? lgr_h2__outq_push_raw_buffer(&x->q, buf) : lgr_h2__outq_push_raw(&x->q, data, len);
	if (rc == LGR_EFULL)
		hc->drain_owed = true;
	if (rc != LGR_OK)
		return rc;
	lgr_h2__outq_resume(&x->q, hc->h2.ng, x->id);
	lgr_h2__conn_kick(&hc->h2);
	return LGR_OK;
}

static int h2_end(struct lgr_http_exchange *x)
{
	struct conn *hc = x->conn;

	x->q.eof = true;
	x->state = X_ENDED;
	lgr_h2__outq_resume(&x->q, hc->h2.ng, x->id);
	lgr_h2__conn_kick(&hc->h2);
	return LGR_OK;
}

/* The server answers a stream itself; the handler never sees it. */
static void h2_refuse(struct lgr_http_exchange *x, int status, const char *why)
{
	struct conn *hc = x->conn;
	char body[64];
	const char *path = x->url != NONE ? arena_str(&x->a, x->url) : NULL;

	report(hc->srv, hc->h2.peer, path, status, LGR_LOG_WARNING, why);
	snprintf(body, sizeof(body), "%d %s\n", status, reason(status));
	if (h2_respond(x, status, "text/plain; charset=utf-8", NULL, 0, body, strlen(body)) != LGR_OK) {
		nghttp2_submit_rst_stream(hc->h2.ng, NGHTTP2_FLAG_NONE, x->id, NGHTTP2_INTERNAL_ERROR);
		lgr_h2__conn_kick(&hc->h2);
	}
	x->state = X_ENDED;
}

static int h2_begin_headers(nghttp2_session *ng, const nghttp2_frame *frame, void *ud)
{
	struct conn *hc = ud;
	struct lgr_http_exchange *x;

	if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	x = x_new(hc);
	if (x == NULL)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	if (lgr_h2__outq_init(&x->q, hc->srv->cfg.max_send_queue) != LGR_OK) {
		x_free(x);
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	}
	x->id = frame->hd.stream_id;
	x->next = hc->streams;
	if (hc->streams != NULL)
		hc->streams->prev = x;
	hc->streams = x;
	hc->nstreams++;
	evtimer_del(hc->timer);
	nghttp2_session_set_stream_user_data(ng, x->id, x);
	return 0;
}

static bool is(const uint8_t *name, size_t len, const char *what)
{
	return len == strlen(what) && memcmp(name, what, len) == 0;
}

static int h2_header(nghttp2_session *ng, const nghttp2_frame *frame, const uint8_t *name, size_t namelen,
	const uint8_t *value, size_t valuelen, uint8_t flags, void *ud)
{
	struct conn *hc = ud;
	struct lgr_http_exchange *x = stream_of(ng, frame->hd.stream_id);
	uint32_t *slot = NULL;
	int rc = LGR_OK;

	if (x == NULL || x->too_big || frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	x->hdr_bytes += namelen + valuelen + FIELD_EXTRA;
	if (x->hdr_bytes > hc->srv->cfg.max_header) {
		x->too_big = true;
		return 0;
	}
	if (namelen > 0 && name[0] == ':') {
		if (is(name, namelen, ":method"))
			slot = &x->method;
		else if (is(name, namelen, ":path"))
			slot = &x->url;
		else if (is(name, namelen, ":authority"))
			slot = &x->authority;
		if (slot == NULL)
			return 0;
		*slot = (uint32_t)x->a.len;
	} else {
		if (x->nfields == LGR_HTTP_MAX_HEADERS) {
			x->too_big = true;
			return 0;
		}
		x->fields[x->nfields].name = (uint32_t)x->a.len;
		rc = arena_put(&x->a, (const char *)name, namelen, false);
		if (rc == LGR_OK)
			rc = arena_end(&x->a);
		x->fields[x->nfields].value = (uint32_t)x->a.len;
		x->nfields++;
	}
	if (rc == LGR_OK)
		rc = arena_put(&x->a, (const char *)value, valuelen, false);
	if (rc == LGR_OK)
		rc = arena_end(&x->a);
	if (rc == LGR_ENOMEM)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	if (rc != LGR_OK)
		x->too_big = true;
	return 0;
}

static void h2_headers_done(struct lgr_http_exchange *x)
{
	const char *cl;

	if (x->too_big) {
		h2_refuse(x, 431, "request headers over the limit");
		return;
	}
	cl = x_field(x, "content-length");
	if (cl != NULL && strtoull(cl, NULL, 10) > x->conn->srv->cfg.max_body)
		h2_refuse(x, 413, "request body over the limit");
}

static void h2_request_done(struct lgr_http_exchange *x)
{
	int rc = x_resolve(x, LGR_HTTP_2);

	if (rc != LGR_OK)
		h2_refuse(x, rc == LGR_ENOMEM ? 503 : 400, rc == LGR_ENOMEM ? "out of memory" : "bad request target");
	else
		deliver(x);
}

static int h2_frame_recv(nghttp2_session *ng, const nghttp2_frame *frame, void *ud)
{
	struct conn *hc = ud;
	struct lgr_http_exchange *x;

	lgr_h2__conn_on_frame(&hc->h2, frame);
	if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA)
		return 0;
	x = stream_of(ng, frame->hd.stream_id);
	if (x == NULL || hc->srv->freeing)
		return 0;
	if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST)
		h2_headers_done(x);
	if ((frame->hd.flags & NGHTTP2_FLAG_END_STREAM) && x->state == X_READING)
		h2_request_done(x);
	return 0;
}

static int h2_data(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data, size_t len, void *ud)
{
	struct lgr_http_exchange *x = stream_of(ng, id);
	int rc;

	if (x != NULL)
		x->data_in += len;
	if (x == NULL || x->state != X_READING || x->conn->srv->freeing)
		return 0;
	rc = x_body(x, (const char *)data, len);
	if (rc == LGR_ETOOBIG)
		h2_refuse(x, 413, "request body over the limit");
	else if (rc != LGR_OK)
		h2_refuse(x, 503, "out of memory");
	return 0;
}

/* Whether the request body still to come is declared and at most DISCARD_MAX bytes. nghttp2 resets a stream
 * whose DATA exceeds its content-length. */
static bool small_rest(const struct lgr_http_exchange *x)
{
	const char *cl = x_field(x, "content-length");
	char *end;
	unsigned long long n;

	if (cl == NULL)
		return false;
	errno = 0;
	n = strtoull(cl, &end, 10);
	return errno == 0 && *end == '\0' && end != cl && n >= x->data_in && n - x->data_in <= DISCARD_MAX;
}

static int h2_frame_send(nghttp2_session *ng, const nghttp2_frame *frame, void *ud)
{
	struct lgr_http_exchange *x;

	if ((frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) ||
		!(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
		return 0;
	x = stream_of(ng, frame->hd.stream_id);
	if (x == NULL)
		return 0;
	x->end_sent = true;
	/* The response is complete: a client still sending is told to stop, without error (RFC 9113 8.1), unless
	 * what it has still to send is small and its length known: that is read and discarded, since some clients
	 * (curl 7.88) fail the exchange, response and all, when the stream is reset under an upload. */
	if (!nghttp2_session_get_stream_remote_close(ng, x->id) && !small_rest(x))
		nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, x->id, NGHTTP2_NO_ERROR);
	return 0;
}

static int h2_stream_close(nghttp2_session *ng, int32_t id, uint32_t error_code, void *ud)
{
	struct conn *hc = ud;
	struct lgr_http_exchange *x = stream_of(ng, id);

	if (x == NULL)
		return 0;
	nghttp2_session_set_stream_user_data(ng, id, NULL);
	if (x->prev != NULL)
		x->prev->next = x->next;
	else
		hc->streams = x->next;
	if (x->next != NULL)
		x->next->prev = x->prev;
	hc->nstreams--;
	x_notify_close(x, x->end_sent);
	x_free(x);
	if (hc->nstreams == 0 && !hc->h2.dead)
		arm(hc->timer, hc->srv->cfg.idle_ms);
	return 0;
}

/* ---- exchanges: the handler's side ---------------------------------------------------------------------------- */

int lgr_http_exchange_respond(struct lgr_http_exchange *x, int status, const char *content_type,
	const struct lgr_http_header *headers, size_t nheaders, const void *body, size_t len)
{
	if (x->state != X_WAITING || x->closed || conn_gone(x->conn) ||
		!valid_response(status, content_type, headers, nheaders) || (len > 0 && body == NULL))
		return LGR_EINVAL;
	if (x->conn->proto == P_H2)
		return h2_respond(x, status, content_type, headers, nheaders, body, len);
	return h1_respond(x, status, content_type, headers, nheaders, body, len);
}

int lgr_http_exchange_start(struct lgr_http_exchange *x, int status, const char *content_type,
	const struct lgr_http_header *headers, size_t nheaders)
{
	if (x->state != X_WAITING || x->closed || conn_gone(x->conn) || bodiless(status) ||
		!valid_response(status, content_type, headers, nheaders))
		return LGR_EINVAL;
	if (x->conn->proto == P_H2)
		return h2_start(x, status, content_type, headers, nheaders);
	return h1_start(x, status, content_type, headers, nheaders);
}

int lgr_http_exchange_write(struct lgr_http_exchange *x, const void *data, size_t len)
{
	if (x->state != X_STREAMING || x->closed || conn_gone(x->conn) || (len > 0 && data == NULL))
		return LGR_EINVAL;
	if (x->conn->proto == P_H2)
		return h2_write(x, data, NULL, len);
	return h1_write(x, data, NULL, len);
}

int lgr_http_exchange_write_buffer(struct lgr_http_exchange *x, struct evbuffer *data)
{
	size_t len = evbuffer_get_length(data);

	if (x->state != X_STREAMING || x->closed || conn_gone(x->conn))
		return LGR_EINVAL;
	if (x->conn->proto == P_H2)
		return h2_write(x, NULL, data, len);
	return h1_write(x, NULL, data, len);
}

int lgr_http_exchange_end(struct lgr_http_exchange *x)
{
	if (x->state != X_STREAMING || x->closed || conn_gone(x->conn))
		return LGR_EINVAL;
	if (x->conn->proto == P_H2)
		return h2_end(x);
	return h1_end(x);
}

size_t lgr_http_exchange_queued(const struct lgr_http_exchange *x)
{
	const struct conn *hc = x->conn;

	if (hc->proto == P_H2)
		return lgr_h2__outq_len(&x->q);
	return hc->bev != NULL ? evbuffer_get_length(bufferevent_get_output(hc->bev)) : 0;
}

const struct lgr_http_request *lgr_http_exchange_request(const struct lgr_http_exchange *x)
{
	return &x->req;
}

void lgr_http_exchange_set_data(struct lgr_http_exchange *x, void *data)
{
	x->data = data;
}

void *lgr_http_exchange_data(const struct lgr_http_exchange *x)
{
	return x->data;
}

/* ---- listener and connections ----------------------------------------------------------------------------------- */

/* A socket the listener accepted or lgr_http_server_adopt() was given becomes a connection; fd is taken. */
static int add_conn(struct lgr_http_server *srv, evutil_socket_t fd, const char *peer)
{
	struct conn *hc = NULL;
	SSL *ssl = NULL;
	int opts = BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS;
	int rc = LGR_EFULL;

	if (srv->nconns >= srv->cfg.max_connections) {
		time_t now = time(NULL);
		char why[96];

		srv->refused++;
		snprintf(why, sizeof(why), "refused, %zu connections open (%lu refused in all)", srv->nconns,
			srv->refused);
		/* Without a hook, a flood of refused connections is logged once a second, not once each. */
		if (srv->cfg.on_refused != NULL)
			srv->cfg.on_refused(peer, NULL, -1, why, srv->cfg.ud);
		else if (now != srv->refused_at)
			lgr_log(LGR_LOG_WARNING, "%s: %s: %s", srv->name, peer, why);
		srv->refused_at = now;
		goto out;
	}
	rc = LGR_ENOMEM;
	hc = calloc(1, sizeof(*hc));
	if (hc == NULL)
		goto out;
	hc->srv = srv;
	snprintf(hc->h2.peer, sizeof(hc->h2.peer), "%s", peer);
	hc->kick = event_new(srv->base, -1, 0, on_kick, hc);
	hc->timer = evtimer_new(srv->base, on_timer, hc);
	if (hc->kick == NULL || hc->timer == NULL)
		goto out;
	if (srv->cfg.ssl_ctx != NULL) {
		ssl = SSL_new(srv->cfg.ssl_ctx);
		if (ssl == NULL)
			goto out;
		hc->bev = bufferevent_openssl_socket_new(srv->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING, opts);
	} else {
		hc->bev = bufferevent_socket_new(srv->base, fd, opts);
	}
	if (hc->bev == NULL)
		goto out;
	hc->ssl = ssl;
	ssl = NULL; /* ownership transferred to the bufferevent */
	fd = -1;    /* likewise */
	if (hc->ssl != NULL)
		bufferevent_openssl_set_allow_dirty_shutdown(hc->bev, 1);
	bufferevent_setcb(hc->bev, on_read, on_write, on_event, hc);
	bufferevent_enable(hc->bev, EV_READ | EV_WRITE);
	arm(hc->timer, srv->cfg.handshake_ms);
	hc->next = srv->conns;
	if (srv->conns != NULL)
		srv->conns->prev = hc;
	srv->conns = hc;
	srv->nconns++;
	hc = NULL;
	rc = LGR_OK;
out:
	if (hc != NULL) {
		lgr_log(LGR_LOG_ERR, "%s: %s: cannot set up the connection", srv->name, peer);
		if (hc->bev != NULL)
			bufferevent_free(hc->bev);
		if (hc->kick != NULL)
			event_free(hc->kick);
		if (hc->timer != NULL)
			event_free(hc->timer);
		free(hc);
	}
	if (ssl != NULL)
		SSL_free(ssl);
	if (fd >= 0)
		evutil_closesocket(fd);
	return rc;
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
	struct lgr_http_server *srv = arg;
	char peer[64];

	srv_enter(srv);
	lgr_h2__peer_name(sa, peer, sizeof(peer));
	add_conn(srv, fd, peer);
	srv_leave(srv);
}

int lgr_http_server_adopt(struct lgr_http_server *srv, int fd, const char *peer)
{
	if (fd < 0)
		return LGR_EINVAL;
	if (srv->phase != LGR_H2__RUNNING || srv->freeing) {
		evutil_closesocket(fd);
		return LGR_EINVAL;
	}
	if (evutil_make_socket_nonblocking(fd) != 0) {
		lgr_log(LGR_LOG_ERR, "%s: %s: cannot make the socket non-blocking", srv->name,
			peer != NULL ? peer : "?");
		evutil_closesocket(fd);
		return LGR_EIO;
	}
	return add_conn(srv, fd, peer != NULL ? peer : "?");
}

uint16_t lgr_http_server_port(const struct lgr_http_server *srv)
{
	return srv->port;
}

size_t lgr_http_server_connections(const struct lgr_http_server *srv)
{
	return srv->nconns;
}

/* ---- shutdown and release --------------------------------------------------------------------------------------- */

/* The end of the grace period: every open exchange is ended by the server. */
static void end_exchange(struct lgr_http_exchange *x)
{
	static const char body[] = "server shutting down\n";

	if (!x->delivered || x->closed)
		return;
	if (x->state == X_STREAMING)
		lgr_http_exchange_end(x);
	else if (x->state == X_WAITING)
		lgr_http_exchange_respond(x, 503, "text/plain; charset=utf-8", NULL, 0, body, sizeof(body) - 1);
}

/* Forces the end of any connection from outside its events (the shutdown clock, the release of the server). */
static void force_down(struct conn *hc, enum lgr_log_level level, const char *why)
{
	if (hc->proto == P_H2) {
		hc->h2.dead = true;
		hc->h2.level = level;
		snprintf(hc->h2.why, sizeof(hc->h2.why), "%s", why);
		h2_down(&hc->h2);
	} else {
		hc->dead = true;
		hc->level = level;
		snprintf(hc->why, sizeof(hc->why), "%s", why);
		conn_down(hc);
	}
}

static void on_phase(evutil_socket_t fd, short what, void *arg)
{
	struct lgr_http_server *srv = arg;

	srv_enter(srv);
	if (srv->phase == LGR_H2__GRACE) {
		srv->phase = LGR_H2__FLUSHING;
		for (struct conn *hc = srv->conns; hc != NULL; hc = hc->next) {
			if (hc->proto == P_H1 && hc->x != NULL)
				end_exchange(hc->x);
			for (struct lgr_http_exchange *x = hc->streams; x != NULL; x = x->next)
				end_exchange(x);
		}
		arm(srv->phase_ev, FLUSH_MS);
	} else if (srv->phase == LGR_H2__FLUSHING) {
		while (srv->conns != NULL)
			force_down(srv->conns, LGR_LOG_INFO, "closed at the end of the shutdown");
	} else if (srv->phase == LGR_H2__CLOSED && srv->done != NULL) {
		void (*done)(void *) = srv->done;

		srv->done = NULL;
		if (!srv->freeing)
			done(srv->done_ud);
	}
	srv_leave(srv);
}

void lgr_http_server_shutdown(struct lgr_http_server *srv, unsigned grace_ms, void (*done)(void *ud), void *ud)
{
	if (srv->phase != LGR_H2__RUNNING || srv->freeing)
		return;
	srv->phase = LGR_H2__GRACE;
	srv->done = done;
	srv->done_ud = ud;
	if (srv->listener != NULL)
		evconnlistener_free(srv->listener);
	srv->listener = NULL;
	for (struct conn *hc = srv->conns; hc != NULL; hc = hc->next) {
		if (hc->proto == P_DETECT) {
			conn_kill(hc, LGR_LOG_DEBUG, "server shutting down");
		} else if (hc->proto == P_H1) {
			/* A connection between requests closes now, a busy one after its response (h1_finish). */
			if (hc->x == NULL || hc->x->state == X_READING)
				conn_kill(hc, LGR_LOG_DEBUG, "server shutting down");
		} else if (hc->h2.ng == NULL) {
			conn_kill(hc, LGR_LOG_DEBUG, "server shutting down");
		} else if (hc->nstreams == 0) {
			nghttp2_session_terminate_session(hc->h2.ng, NGHTTP2_NO_ERROR);
			lgr_h2__conn_kick(&hc->h2);
		} else {
			nghttp2_submit_goaway(hc->h2.ng, NGHTTP2_FLAG_NONE,
				nghttp2_session_get_last_proc_stream_id(hc->h2.ng), NGHTTP2_NO_ERROR, NULL, 0);
			lgr_h2__conn_kick(&hc->h2);
		}
	}
	if (srv->nconns == 0)
		maybe_done(srv);
	else
		arm(srv->phase_ev, grace_ms);
}

static void destroy(struct lgr_http_server *srv)
{
	srv->depth++; /* handlers running below may call lgr_http_server_free again: it must not recurse */
	if (srv->listener != NULL)
		evconnlistener_free(srv->listener);
	while (srv->conns != NULL)
		force_down(srv->conns, LGR_LOG_DEBUG, "server closed");
	if (srv->phase_ev != NULL)
		event_free(srv->phase_ev);
	if (srv->cbs != NULL)
		nghttp2_session_callbacks_del(srv->cbs);
	if (srv->opt != NULL)
		nghttp2_option_del(srv->opt);
	free(srv);
}

void lgr_http_server_free(struct lgr_http_server *srv)
{
	if (srv == NULL || srv->freeing)
		return;
	/* Every delivered exchange hears of its end now, even when the memory goes later. */
	for (struct conn *hc = srv->conns; hc != NULL; hc = hc->next) {
		if (hc->x != NULL)
			x_notify_close(hc->x, false);
		for (struct lgr_http_exchange *x = hc->streams; x != NULL; x = x->next)
			x_notify_close(x, false);
	}
	srv->freeing = true;
	if (srv->depth == 0)
		destroy(srv);
}

/* ---- creation ---------------------------------------------------------------------------------------------------- */

static int resolve_config(struct lgr_http_server_config *cfg)
{
	if (cfg->handlers == NULL || cfg->handlers->on_request == NULL || cfg->max_header > LGR_HTTP_MAX_HEADER_LIMIT ||
		cfg->max_body > LGR_HTTP_MAX_BODY_LIMIT)
		return LGR_EINVAL;
	if (cfg->max_header == 0)
		cfg->max_header = LGR_HTTP_DEFAULT_MAX_HEADER;
	if (cfg->max_body == 0)
		cfg->max_body = LGR_HTTP_DEFAULT_MAX_BODY;
	if (cfg->max_send_queue == 0)
		cfg->max_send_queue = LGR_HTTP_DEFAULT_SEND_QUEUE;
	if (cfg->max_connections == 0)
		cfg->max_connections = LGR_HTTP_DEFAULT_MAX_CONNECTIONS;
	if (cfg->max_streams == 0)
		cfg->max_streams = LGR_HTTP_DEFAULT_MAX_STREAMS;
	if (cfg->handshake_ms == 0)
		cfg->handshake_ms = LGR_HTTP_DEFAULT_HANDSHAKE_MS;
	if (cfg->idle_ms == 0)
		cfg->idle_ms = LGR_HTTP_DEFAULT_IDLE_MS;
	return LGR_OK;
}

static int make_callbacks(struct lgr_http_server *srv)
{
	nghttp2_session_callbacks *cbs;

	if (nghttp2_session_callbacks_new(&srv->cbs) != 0 || nghttp2_option_new(&srv->opt) != 0)
		return LGR_ENOMEM;
	cbs = srv->cbs;
	lgr_h2__conn_callbacks(cbs);
	nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, h2_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback(cbs, h2_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, h2_frame_recv);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, h2_data);
	nghttp2_session_callbacks_set_on_frame_send_callback(cbs, h2_frame_send);
	nghttp2_session_callbacks_set_on_stream_close_callback(cbs, h2_stream_close);
	nghttp2_option_set_no_closed_streams(srv->opt, 1);
	http_parser_settings_init(&srv->ps);
	srv->ps.on_message_begin = h1_begin;
	srv->ps.on_url = h1_url;
	srv->ps.on_header_field = h1_field;
	srv->ps.on_header_value = h1_value;
	srv->ps.on_headers_complete = h1_headers;
	srv->ps.on_body = h1_body;
	srv->ps.on_message_complete = h1_complete;
	return LGR_OK;
}

static int listen_on(struct lgr_http_server *srv)
{
	struct sockaddr_storage ss;
	int sslen;
	const char *addr = srv->cfg.address != NULL ? srv->cfg.address : "0.0.0.0";
	unsigned flags = LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_REUSEABLE;

	if (lgr_h2__parse_address(addr, srv->cfg.port, &ss, &sslen) != LGR_OK) {
		lgr_log(LGR_LOG_ERR, "%s: bad listen address %s (a numeric IPv4 or IPv6 address is needed)", srv->name,
			addr);
		return LGR_EINVAL;
	}
	srv->listener = evconnlistener_new_bind(srv->base, on_accept, srv, flags, 511, (struct sockaddr *)&ss, sslen);
	if (srv->listener == NULL) {
		lgr_log(LGR_LOG_ERR, "%s: cannot listen on %s port %u: %s", srv->name, addr, srv->cfg.port,
			evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
		return LGR_EIO;
	}
	sslen = sizeof(ss);
	if (getsockname(evconnlistener_get_fd(srv->listener), (struct sockaddr *)&ss, (socklen_t *)&sslen) == 0)
		srv->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
							   : ((struct sockaddr_in *)&ss)->sin_port);
	return LGR_OK;
}

int lgr_http_server_new(struct event_base *base, const struct lgr_http_server_config *cfg, struct lgr_http_server **out)
{
	struct lgr_http_server *srv = NULL;
	int rc = LGR_EINVAL;

	*out = NULL;
	if (base == NULL || cfg == NULL)
		goto out;
	rc = LGR_ENOMEM;
	srv = calloc(1, sizeof(*srv));
	if (srv == NULL)
		goto out;
	srv->base = base;
	srv->cfg = *cfg;
	rc = resolve_config(&srv->cfg);
	if (rc != LGR_OK)
		goto out;
	snprintf(srv->name, sizeof(srv->name), "%s", cfg->name != NULL ? cfg->name : "http server");
	srv->cfg.name = srv->name;
	rc = LGR_ENOMEM;
	srv->phase_ev = evtimer_new(base, on_phase, srv);
	if (srv->phase_ev == NULL || make_callbacks(srv) != LGR_OK)
		goto out;
	rc = listen_on(srv);
	if (rc != LGR_OK)
		goto out;
	*out = srv;
	srv = NULL;
out:
	if (srv != NULL)
		destroy(srv);
	return rc;
}
