/*
 * lgr_h2_conn.c: one HTTP/2 connection over a libevent bufferevent (plain socket or OpenSSL), and the bounded send
 * queue of a stream. Shared by lgr_h2_server.c and lgr_h2_client.c; see lgr_h2_internal.h.
 *
 * Input is handed to nghttp2 as it arrives (no read backpressure). Output goes through nghttp2_session_send into
 * the bufferevent's output buffer; above out_high bytes nghttp2 is paused and the write callback (output back at
 * half) resumes it, so a slow peer costs at most out_high plus the stream queues. DATA frames are written with
 * NGHTTP2_DATA_FLAG_NO_COPY: the frame header is added and the payload moved from the stream's evbuffer to the
 * output without copying.
 */
#include "lgr_h2_internal.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>

#include "lgr_grpc.h"
#include "lgr_h2.h"
#include "lgr_tls.h"

#define OUT_HIGH     (256u * 1024)
#define FRAME_HEADER 9
#define PEEK_EXTENTS 16

static void arm(struct event *ev, unsigned ms)
{
	struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};

	evtimer_add(ev, &tv);
}

void lgr_h2__conn_kill(struct lgr_h2__conn *c, enum lgr_log_level level, const char *fmt, ...)
{
	va_list ap;

	if (c->dead)
		return;
	c->dead = true;
	c->level = level;
	va_start(ap, fmt);
	vsnprintf(c->why, sizeof(c->why), fmt, ap);
	va_end(ap);
	event_active(c->kick, EV_WRITE, 0);
}

void lgr_h2__conn_kick(struct lgr_h2__conn *c)
{
	event_active(c->kick, EV_WRITE, 0);
}

static void enter(struct lgr_h2__conn *c)
{
	c->ops->enter(c->owner);
}

/* Ends an event of c: a death noticed during it is handed to the owner, which frees c. */
static void leave(struct lgr_h2__conn *c)
{
	const struct lgr_h2__conn_ops *ops = c->ops;
	void *owner = c->owner;

	if (c->dead && !c->down_done) {
		c->down_done = true;
		ops->down(c); /* c is freed */
	}
	ops->leave(owner);
}

/* One pass of nghttp2's output, then a close if the session has nothing left to do in either direction. */
static void send_pass(struct lgr_h2__conn *c)
{
	struct evbuffer *out;
	int rv;

	if (c->dead || c->ng == NULL || c->sending)
		return;
	c->sending = true;
	rv = nghttp2_session_send(c->ng);
	c->sending = false;
	if (rv != 0) {
		lgr_h2__conn_kill(c, LGR_LOG_WARNING, "HTTP/2 send failed: %s", nghttp2_strerror(rv));
		return;
	}
	if (c->ops->flushed != NULL)
		c->ops->flushed(c);
	if (c->dead || nghttp2_session_want_read(c->ng) || nghttp2_session_want_write(c->ng))
		return;
	out = bufferevent_get_output(c->bev);
	if (evbuffer_get_length(out) == 0) {
		lgr_h2__conn_kill(c, LGR_LOG_DEBUG, "connection finished");
	} else if (!c->draining) {
		/* The write callback must now wait for the very last byte, not for half. */
		c->draining = true;
		bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
	}
}

static void become_up(struct lgr_h2__conn *c)
{
	evutil_socket_t fd = bufferevent_getfd(c->bev);
	int one = 1;

	c->need_up = false;
	if (c->ssl != NULL) {
		char proto[32];

		lgr_tls_alpn(c->ssl, proto, sizeof(proto));
		if (strcmp(proto, "h2") != 0) {
			lgr_h2__conn_kill(
				c, LGR_LOG_WARNING, "TLS peer did not agree on ALPN h2 (agreed \"%s\")", proto);
			return;
		}
	}
	/* gRPC messages are latency-sensitive and already coalesced per loop turn: no Nagle delay on top. */
	if (fd >= 0)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	evtimer_del(c->timer);
	if (c->ops->up(c) != LGR_OK) {
		lgr_h2__conn_kill(c, LGR_LOG_ERR, "cannot start an HTTP/2 session: out of memory");
		return;
	}
	c->is_up = true;
	if (c->ka_ms != LGR_H2_NEVER)
		arm(c->timer, c->ka_ms);
}

static void recv_all(struct lgr_h2__conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);

	while (!c->dead && evbuffer_get_length(in) > 0) {
		struct evbuffer_iovec v[PEEK_EXTENTS];
		int n = evbuffer_peek(in, -1, NULL, v, PEEK_EXTENTS);
		size_t used = 0;

		if (n > PEEK_EXTENTS)
			n = PEEK_EXTENTS;
		for (int i = 0; i < n && !c->dead; i++) {
			ssize_t r = nghttp2_session_mem_recv(c->ng, v[i].iov_base, v[i].iov_len);

			if (r < 0) {
				lgr_h2__conn_kill(
					c, LGR_LOG_WARNING, "HTTP/2 receive failed: %s", nghttp2_strerror((int)r));
				break;
			}
			used += (size_t)r;
		}
		evbuffer_drain(in, used);
	}
	if (!c->dead && c->ops->received != NULL)
		c->ops->received(c);
}

static void on_read(struct bufferevent *bev, void *arg)
{
	struct lgr_h2__conn *c = arg;

	enter(c);
	if (c->need_up && !c->dead)
		become_up(c);
	if (c->ng != NULL && !c->dead)
		recv_all(c);
	send_pass(c);
	leave(c);
}

static void on_write(struct bufferevent *bev, void *arg)
{
	struct lgr_h2__conn *c = arg;

	enter(c);
	send_pass(c);
	leave(c);
}

/* The reason of a failed bufferevent: OpenSSL's queue first, then errno. */
static void describe_error(struct lgr_h2__conn *c, char *buf, size_t len)
{
	unsigned long e = bufferevent_get_openssl_error(c->bev);
	int err = EVUTIL_SOCKET_ERROR();

	if (e != 0) {
		char what[160];

		ERR_error_string_n(e, what, sizeof(what));
		snprintf(buf, len, "TLS: %s", what);
		while (bufferevent_get_openssl_error(c->bev) != 0)
			;
	} else if (err != 0) {
		snprintf(buf, len, "%s", evutil_socket_error_to_string(err));
	} else {
		snprintf(buf, len, c->is_up ? "connection failed" : "TLS handshake failed");
	}
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	struct lgr_h2__conn *c = arg;

	enter(c);
	if (what & BEV_EVENT_CONNECTED) {
		if (!c->dead && !c->is_up)
			become_up(c);
	} else if (what & BEV_EVENT_EOF) {
		bool expected = (c->ng != NULL && !nghttp2_session_want_read(c->ng)) ||
				(c->ops->idle != NULL && c->ops->idle(c));

		lgr_h2__conn_kill(c, expected ? LGR_LOG_DEBUG : LGR_LOG_INFO, "connection closed by the peer");
	} else if (what & BEV_EVENT_ERROR) {
		char buf[sizeof(c->why)];

		describe_error(c, buf, sizeof(buf));
		lgr_h2__conn_kill(c, LGR_LOG_WARNING, "%s", buf);
	} else if (what & BEV_EVENT_TIMEOUT) {
		lgr_h2__conn_kill(c, LGR_LOG_WARNING, "timed out");
	}
	send_pass(c);
	leave(c);
}

static void on_kick(evutil_socket_t fd, short what, void *arg)
{
	struct lgr_h2__conn *c = arg;

	enter(c);
	if (c->need_up && !c->dead) {
		become_up(c);
		/* A connection handed over by lgr_http may hold input read before the hand-over. */
		if (c->ng != NULL && !c->dead)
			recv_all(c);
	}
	send_pass(c);
	leave(c);
}

/* Handshake deadline before up; afterwards the keepalive cycle: interval, ping, wait for the ack, interval. */
static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct lgr_h2__conn *c = arg;

	enter(c);
	if (c->dead) {
		/* down() follows in leave() */
	} else if (!c->is_up) {
		lgr_h2__conn_kill(c, LGR_LOG_WARNING, "no HTTP/2 connection within %u ms", c->handshake_ms);
	} else if (c->ka_waiting) {
		lgr_h2__conn_kill(c, LGR_LOG_WARNING, "keepalive ping unanswered for %u ms", c->ka_timeout_ms);
	} else if (nghttp2_submit_ping(c->ng, NGHTTP2_FLAG_NONE, NULL) != 0) {
		lgr_h2__conn_kill(c, LGR_LOG_ERR, "cannot send a keepalive ping");
	} else {
		c->ka_waiting = true;
		arm(c->timer, c->ka_timeout_ms);
		send_pass(c);
	}
	leave(c);
}

int lgr_h2__conn_init(struct lgr_h2__conn *c, struct event_base *base, struct bufferevent *bev, SSL *ssl,
	const struct lgr_h2__conn_ops *ops, void *owner, unsigned handshake_ms)
{
	c->base = base;
	c->ops = ops;
	c->owner = owner;
	c->ssl = ssl;
	c->out_high = OUT_HIGH;
	c->handshake_ms = handshake_ms;
	c->ka_ms = LGR_H2_NEVER;
	c->kick = event_new(base, -1, 0, on_kick, c);
	c->timer = evtimer_new(base, on_timer, c);
	if (c->kick == NULL || c->timer == NULL) {
		if (c->kick != NULL)
			event_free(c->kick);
		if (c->timer != NULL)
			event_free(c->timer);
		c->kick = c->timer = NULL;
		return LGR_ENOMEM;
	}
	c->bev = bev;
	if (ssl != NULL)
		bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	bufferevent_setcb(bev, on_read, on_write, on_event, c);
	bufferevent_setwatermark(bev, EV_WRITE, c->out_high / 2, 0);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
	arm(c->timer, handshake_ms);
	return LGR_OK;
}

void lgr_h2__conn_start(struct lgr_h2__conn *c)
{
	c->need_up = true;
	event_active(c->kick, EV_WRITE, 0);
}

void lgr_h2__conn_keepalive(struct lgr_h2__conn *c, unsigned interval_ms, unsigned timeout_ms)
{
	c->ka_ms = interval_ms;
	c->ka_timeout_ms = timeout_ms;
}

void lgr_h2__conn_cleanup(struct lgr_h2__conn *c)
{
	nghttp2_session_del(c->ng);
	c->ng = NULL;
	if (c->bev != NULL)
		bufferevent_free(c->bev);
	c->bev = NULL;
	c->ssl = NULL;
	if (c->kick != NULL)
		event_free(c->kick);
	if (c->timer != NULL)
		event_free(c->timer);
	c->kick = c->timer = NULL;
}

void lgr_h2__conn_on_frame(struct lgr_h2__conn *c, const nghttp2_frame *frame)
{
	if (frame->hd.type == NGHTTP2_PING && (frame->hd.flags & NGHTTP2_FLAG_ACK) && c->ka_waiting) {
		c->ka_waiting = false;
		evtimer_del(c->timer);
		if (c->ka_ms != LGR_H2_NEVER)
			arm(c->timer, c->ka_ms);
	}
}

int lgr_h2__conn_settings(
	struct lgr_h2__conn *c, uint32_t max_streams, uint32_t stream_window, uint32_t conn_window, bool client)
{
	nghttp2_settings_entry iv[3];
	size_t n = 0;

	iv[n++] = (nghttp2_settings_entry){NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, stream_window};
	if (client)
		iv[n++] = (nghttp2_settings_entry){NGHTTP2_SETTINGS_ENABLE_PUSH, 0};
	else
		iv[n++] = (nghttp2_settings_entry){NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, max_streams};
	if (nghttp2_submit_settings(c->ng, NGHTTP2_FLAG_NONE, iv, n) != 0)
		return LGR_ENOMEM;
	/* The connection window is not a setting: it grows with a WINDOW_UPDATE on stream 0. */
	if (conn_window > NGHTTP2_INITIAL_CONNECTION_WINDOW_SIZE &&
		nghttp2_session_set_local_window_size(c->ng, NGHTTP2_FLAG_NONE, 0, (int32_t)conn_window) != 0)
		return LGR_ENOMEM;
	return LGR_OK;
}

static ssize_t send_cb(nghttp2_session *ng, const uint8_t *data, size_t len, int flags, void *ud)
{
	struct lgr_h2__conn *c = ud;
	struct evbuffer *out = bufferevent_get_output(c->bev);

	if (evbuffer_get_length(out) >= c->out_high)
		return NGHTTP2_ERR_WOULDBLOCK;
	if (evbuffer_add(out, data, len) != 0)
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	return (ssize_t)len;
}

/*
 * A whole DATA frame: nghttp2's header, then the payload copied out of the stream's queue, straight after whatever
 * the connection's output holds (no padding is used). A TLS bufferevent writes each chunk of its output with an
 * SSL_write of its own, i.e. one record and one system call per chunk, up to 16 KiB: a header in a chunk of its own,
 * or a payload referenced where it lies (a few hundred bytes per envelope), would cost a record and a write apiece.
 * Copied, frames fill the output's last chunk and continue in a new one, so that records are full but where a chunk
 * ends. The copy costs far less than the encryption that reads the same bytes.
 */
static int send_data_cb(nghttp2_session *ng, nghttp2_frame *frame, const uint8_t *framehd, size_t length,
	nghttp2_data_source *src, void *ud)
{
	struct lgr_h2__conn *c = ud;
	struct lgr_h2__outq *q = src->ptr;
	struct evbuffer *out = bufferevent_get_output(c->bev);
	const size_t total = FRAME_HEADER + length;
	struct evbuffer_iovec v[2];
	size_t done = 0, room, head;
	int n, used;

	if (frame->data.padlen > 0)
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	/* the last chunk's room, then a new chunk for the rest */
	n = evbuffer_reserve_space(out, (ev_ssize_t)total, v, 2);
	for (used = 0; used < n && done < total; used++) {
		room = v[used].iov_len < total - done ? v[used].iov_len : total - done;
		head = done < FRAME_HEADER ? FRAME_HEADER - done : 0;
		head = head < room ? head : room;
		if (head > 0)
			memcpy(v[used].iov_base, framehd + done, head);
		if (room > head &&
			evbuffer_remove(q->buf, (uint8_t *)v[used].iov_base + head, room - head) != (int)(room - head))
			return NGHTTP2_ERR_CALLBACK_FAILURE; /* nothing committed: out is as it was */
		v[used].iov_len = room;
		done += room;
	}
	if (done != total || evbuffer_commit_space(out, v, used) != 0)
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	q->taken += length;
	return evbuffer_get_length(out) >= c->out_high ? NGHTTP2_ERR_PAUSE : 0;
}

void lgr_h2__conn_callbacks(nghttp2_session_callbacks *cbs)
{
	nghttp2_session_callbacks_set_send_callback(cbs, send_cb);
	nghttp2_session_callbacks_set_send_data_callback(cbs, send_data_cb);
}

/* ---- send queue ------------------------------------------------------------------------------------------------ */

int lgr_h2__outq_init(struct lgr_h2__outq *q, size_t limit)
{
	memset(q, 0, sizeof(*q));
	q->limit = limit;
	q->buf = evbuffer_new();
	return q->buf != NULL ? LGR_OK : LGR_ENOMEM;
}

void lgr_h2__outq_cleanup(struct lgr_h2__outq *q)
{
	if (q->buf != NULL)
		evbuffer_free(q->buf);
	q->buf = NULL;
}

/*
 * Whether a message of len bytes plus overhead bytes of framing may join the queue; records the refusal for the
 * drain notice.
 */
static int admit(struct lgr_h2__outq *q, size_t len, size_t overhead)
{
	size_t have = evbuffer_get_length(q->buf);

	if (q->eof || len > UINT32_MAX)
		return LGR_EINVAL;
	if (have > 0 && (len + overhead > q->limit || have > q->limit - len - overhead)) {
		q->want_drain = true;
		return LGR_EFULL;
	}
	return LGR_OK;
}

int lgr_h2__outq_push(struct lgr_h2__outq *q, const uint8_t *msg, size_t len)
{
	uint8_t prefix[LGR_GRPC_PREFIX];
	int rc = admit(q, len, LGR_GRPC_PREFIX);

	if (rc != LGR_OK)
		return rc;
	lgr_grpc_prefix(prefix, len);
	/* Reserving first means neither add below can fail half-way and leave a prefix without its message. */
	if (evbuffer_expand(q->buf, LGR_GRPC_PREFIX + len) != 0)
		return LGR_ENOMEM;
	evbuffer_add(q->buf, prefix, sizeof(prefix));
	if (len > 0)
		evbuffer_add(q->buf, msg, len);
	return LGR_OK;
}

int lgr_h2__outq_push_buffer(struct lgr_h2__outq *q, struct evbuffer *msg)
{
	uint8_t prefix[LGR_GRPC_PREFIX];
	size_t len = evbuffer_get_length(msg);
	int rc = admit(q, len, LGR_GRPC_PREFIX);

	if (rc != LGR_OK)
		return rc;
	lgr_grpc_prefix(prefix, len);
	/* The prefix goes in front of msg, then msg's chains are moved as a whole. */
	if (evbuffer_prepend(msg, prefix, sizeof(prefix)) != 0)
		return LGR_ENOMEM;
	if (evbuffer_add_buffer(q->buf, msg) != 0) {
		evbuffer_drain(msg, sizeof(prefix));
		return LGR_ENOMEM;
	}
	return LGR_OK;
}

int lgr_h2__outq_push_raw(struct lgr_h2__outq *q, const uint8_t *data, size_t len)
{
	int rc = admit(q, len, 0);

	if (rc != LGR_OK || len == 0)
		return rc;
	return evbuffer_add(q->buf, data, len) == 0 ? LGR_OK : LGR_ENOMEM;
}

int lgr_h2__outq_push_raw_buffer(struct lgr_h2__outq *q, struct evbuffer *data)
{
	int rc = admit(q, evbuffer_get_length(data), 0);

	if (rc != LGR_OK)
		return rc;
	return evbuffer_add_buffer(q->buf, data) == 0 ? LGR_OK : LGR_ENOMEM;
}

bool lgr_h2__outq_drained(struct lgr_h2__outq *q)
{
	size_t len = evbuffer_get_length(q->buf);

	if (!(q->want_drain && len <= q->limit / 2) && !(q->want_empty && len == 0))
		return false;
	q->want_drain = false;
	q->want_empty = false;
	return true;
}

void lgr_h2__outq_resume(struct lgr_h2__outq *q, nghttp2_session *ng, int32_t id)
{
	if (!q->deferred || ng == NULL || id <= 0)
		return;
	q->deferred = false;
	nghttp2_session_resume_data(ng, id);
}

size_t lgr_h2__outq_len(const struct lgr_h2__outq *q)
{
	return q->buf != NULL ? evbuffer_get_length(q->buf) : 0;
}

static ssize_t outq_read(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t length, uint32_t *flags,
	nghttp2_data_source *src, void *ud)
{
	struct lgr_h2__outq *q = src->ptr;
	size_t have = evbuffer_get_length(q->buf);
	size_t n = have < length ? have : length;

	if (n == 0 && !q->eof) {
		q->deferred = true;
		return NGHTTP2_ERR_DEFERRED;
	}
	if (n > 0)
		*flags |= NGHTTP2_DATA_FLAG_NO_COPY;
	if (n == have && q->eof) {
		*flags |= NGHTTP2_DATA_FLAG_EOF;
		if (q->ntrailers > 0) {
			*flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
			if (nghttp2_submit_trailer(ng, id, q->trailers, q->ntrailers) != 0)
				return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
		}
	}
	return (ssize_t)n;
}

nghttp2_data_provider lgr_h2__outq_provider(struct lgr_h2__outq *q)
{
	nghttp2_data_provider dp;

	dp.source.ptr = q;
	dp.read_callback = outq_read;
	return dp;
}

/* ---- helpers ----------------------------------------------------------------------------------------------------- */

nghttp2_nv lgr_h2__nv(const char *name, const char *value)
{
	nghttp2_nv nv;

	nv.name = (uint8_t *)name;
	nv.namelen = strlen(name);
	nv.value = (uint8_t *)value;
	nv.valuelen = strlen(value);
	nv.flags = NGHTTP2_NV_FLAG_NONE;
	return nv;
}

bool lgr_h2__grpc_content_type(const uint8_t *value, size_t len)
{
	static const char base[] = "application/grpc";
	size_t n = sizeof(base) - 1;

	if (len < n || strncasecmp((const char *)value, base, n) != 0)
		return false;
	return len == n || value[n] == '+' || value[n] == ';';
}
