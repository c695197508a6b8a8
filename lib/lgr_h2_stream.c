/*
 * lgr_h2_stream.c: the calls a lgr_h2 server receives: request checks and routing, whole messages to the route's
 * handlers, bounded send queues, responses with trailers. Listener, connections and shutdown are lgr_h2_server.c.
 *
 * Request checks follow grpc-go: a method other than POST is answered HTTP 405 and a content-type other than
 * application/grpc[+x][;p] HTTP 415, both with grpc-status INTERNAL; an unknown path is UNIMPLEMENTED. Response
 * HEADERS are sent with the first message; a status without any message is a trailers-only response.
 */
#include "lgr_h2.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lgr_h2_internal.h"

#define STOPPED 100 /* a message handler finished the stream: stop delivering */

/* ---- streams ------------------------------------------------------------------------------------------------ */

static const struct lgr_h2_handlers *handlers(const struct lgr_h2_stream *s)
{
	static const struct lgr_h2_handlers none;

	return s->route != NULL && s->route->handlers != NULL ? s->route->handlers : &none;
}

static void *route_ud(const struct lgr_h2_stream *s)
{
	return s->route != NULL ? s->route->ud : NULL;
}

static void free_stream(struct lgr_h2_stream *s)
{
	lgr_grpc_reader_cleanup(&s->reader);
	lgr_h2__outq_cleanup(&s->q);
	free(s);
}

static void unlink_stream(struct lgr_h2_stream *s)
{
	struct lgr_h2__srv_conn *sc = s->conn;

	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		sc->streams = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	s->prev = s->next = NULL;
}

/* The user's view of s ends: on_close once for an accepted stream. */
void lgr_h2__stream_notify_close(struct lgr_h2_stream *s)
{
	bool owed = s->accepted && !s->closed && !s->conn->srv->freeing;

	s->closed = true;
	if (owed && handlers(s)->on_close != NULL)
		handlers(s)->on_close(s, !s->end_sent, route_ud(s));
}

int lgr_h2__stream_status(struct lgr_h2_stream *s, const char *http_status, int status, const char *message)
{
	nghttp2_session *ng = s->conn->c.ng;
	nghttp2_nv nv[4];
	size_t n = 0;
	int rv;

	snprintf(s->status, sizeof(s->status), "%d", status);
	s->trailers[n++] = lgr_h2__nv("grpc-status", s->status);
	if (message != NULL && message[0] != '\0') {
		lgr_grpc_message_encode(s->message, sizeof(s->message), message);
		s->trailers[n++] = lgr_h2__nv("grpc-message", s->message);
	}
	s->finished = true;
	if (s->responded) {
		s->q.trailers = s->trailers;
		s->q.ntrailers = n;
		s->q.eof = true;
		lgr_h2__outq_resume(&s->q, ng, s->id);
		rv = 0;
	} else {
		/* Trailers-only: one HEADERS frame with END_STREAM carries the status. */
		nv[0] = lgr_h2__nv(":status", http_status);
		nv[1] = lgr_h2__nv("content-type", "application/grpc");
		nv[2] = s->trailers[0];
		if (n > 1)
			nv[3] = s->trailers[1];
		s->responded = true;
		rv = nghttp2_submit_response(ng, s->id, nv, 2 + n, NULL);
	}
	lgr_h2__conn_kick(&s->conn->c);
	return rv == 0 ? LGR_OK : rv == NGHTTP2_ERR_NOMEM ? LGR_ENOMEM : LGR_EINVAL;
}

int lgr_h2_stream_finish(struct lgr_h2_stream *s, int status, const char *message)
{
	if (s->finished || s->closed)
		return LGR_EINVAL;
	return lgr_h2__stream_status(s, "200", status, message);
}

static int start_response(struct lgr_h2_stream *s)
{
	nghttp2_nv nv[2] = {lgr_h2__nv(":status", "200"), lgr_h2__nv("content-type", "application/grpc")};
	nghttp2_data_provider dp = lgr_h2__outq_provider(&s->q);
	int rv = nghttp2_submit_response(s->conn->c.ng, s->id, nv, 2, &dp);

	if (rv != 0)
		return rv == NGHTTP2_ERR_NOMEM ? LGR_ENOMEM : LGR_EINVAL;
	s->responded = true;
	return LGR_OK;
}

/* After a message was queued: response HEADERS with the first one, else wake the parked data source. */
static int queued(struct lgr_h2_stream *s, int rc)
{
	if (rc == LGR_EFULL)
		s->conn->drain_owed = true;
	if (rc != LGR_OK)
		return rc;
	if (!s->responded)
		rc = start_response(s);
	else
		lgr_h2__outq_resume(&s->q, s->conn->c.ng, s->id);
	lgr_h2__conn_kick(&s->conn->c);
	return rc;
}

int lgr_h2_stream_send(struct lgr_h2_stream *s, const uint8_t *msg, size_t len)
{
	if (s->finished || s->closed)
		return LGR_EINVAL;
	return queued(s, lgr_h2__outq_push(&s->q, msg, len));
}

int lgr_h2_stream_send_buffer(struct lgr_h2_stream *s, struct evbuffer *msg)
{
	if (s->finished || s->closed)
		return LGR_EINVAL;
	return queued(s, lgr_h2__outq_push_buffer(&s->q, msg));
}

size_t lgr_h2_stream_queued(const struct lgr_h2_stream *s)
{
	return lgr_h2__outq_len(&s->q);
}

uint64_t lgr_h2_stream_taken(const struct lgr_h2_stream *s)
{
	return s->q.taken;
}

void lgr_h2_stream_notify_empty(struct lgr_h2_stream *s)
{
	if (s->finished || s->closed)
		return;
	s->q.want_empty = true;
	s->conn->drain_owed = true;
	lgr_h2__conn_kick(&s->conn->c); /* an empty queue is noticed after a send pass */
}

const char *lgr_h2_stream_path(const struct lgr_h2_stream *s)
{
	return s->path;
}

const char *lgr_h2_stream_peer(const struct lgr_h2_stream *s)
{
	return s->conn->c.peer;
}

SSL *lgr_h2_stream_ssl(const struct lgr_h2_stream *s)
{
	return s->conn->c.ssl;
}

void lgr_h2_stream_set_data(struct lgr_h2_stream *s, void *data)
{
	s->data = data;
}

void *lgr_h2_stream_data(const struct lgr_h2_stream *s)
{
	return s->data;
}

/* ---- nghttp2 callbacks ---------------------------------------------------------------------------------------- */

static struct lgr_h2_stream *stream_of(nghttp2_session *ng, int32_t id)
{
	return nghttp2_session_get_stream_user_data(ng, id);
}

static int on_begin_headers(nghttp2_session *ng, const nghttp2_frame *frame, void *ud)
{
	struct lgr_h2__srv_conn *sc = ud;
	struct lgr_h2_stream *s;

	if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	if (lgr_h2__outq_init(&s->q, sc->srv->cfg.max_send_queue) != LGR_OK) {
		free(s);
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	}
	lgr_grpc_reader_init(&s->reader, sc->srv->cfg.max_message);
	s->conn = sc;
	s->id = frame->hd.stream_id;
	s->next = sc->streams;
	if (sc->streams != NULL)
		sc->streams->prev = s;
	sc->streams = s;
	nghttp2_session_set_stream_user_data(ng, s->id, s);
	return 0;
}

static bool is(const uint8_t *name, size_t len, const char *what)
{
	return len == strlen(what) && memcmp(name, what, len) == 0;
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *frame, const uint8_t *name, size_t namelen,
	const uint8_t *value, size_t valuelen, uint8_t flags, void *ud)
{
	struct lgr_h2_stream *s = stream_of(ng, frame->hd.stream_id);

	if (s == NULL || frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	if (is(name, namelen, ":method")) {
		s->post = is(value, valuelen, "POST");
	} else if (is(name, namelen, ":path")) {
		s->path_ok = valuelen < sizeof(s->path);
		if (s->path_ok) {
			memcpy(s->path, value, valuelen);
			s->path[valuelen] = '\0';
		}
	} else if (is(name, namelen, "content-type")) {
		s->grpc = lgr_h2__grpc_content_type(value, valuelen);
	}
	return 0;
}

static const struct lgr_h2_route *find_route(const struct lgr_h2_server *srv, const char *path)
{
	for (size_t i = 0; i < srv->cfg.nroutes; i++) {
		if (srv->cfg.routes[i].path != NULL && strcmp(srv->cfg.routes[i].path, path) == 0)
			return &srv->cfg.routes[i];
	}
	return NULL;
}

/* The server itself ends the call with an error: the status goes out and the owner's on_refused hears of it. */
static void refuse(struct lgr_h2_stream *s, const char *http_status, int status, const char *message)
{
	const struct lgr_h2_server_config *cfg = &s->conn->srv->cfg;

	lgr_h2__stream_status(s, http_status, status, message);
	if (cfg->on_refused != NULL)
		cfg->on_refused(s->conn->c.peer, s->path_ok ? s->path : "(path too long)", status, message, cfg->ud);
}

static void request_ready(struct lgr_h2_stream *s)
{
	struct lgr_h2_server *srv = s->conn->srv;
	const struct lgr_h2_route *route;
	int status;

	if (s->finished) /* ended by the shutdown while its headers were still arriving */
		return;
	if (!s->post) {
		refuse(s, "405", LGR_GRPC_INTERNAL, "method must be POST");
		return;
	}
	if (!s->grpc) {
		refuse(s, "415", LGR_GRPC_INTERNAL, "content-type must be application/grpc");
		return;
	}
	route = s->path_ok ? find_route(srv, s->path) : NULL;
	if (route == NULL) {
		char msg[LGR_H2_MAX_PATH + 32];

		snprintf(msg, sizeof(msg), "unknown method %s", s->path_ok ? s->path : "(path too long)");
		refuse(s, "200", LGR_GRPC_UNIMPLEMENTED, msg);
		return;
	}
	s->route = route;
	status = handlers(s)->on_open != NULL ? handlers(s)->on_open(s, route->ud) : LGR_GRPC_OK;
	if (status == LGR_GRPC_OK)
		s->accepted = true;
	else if (!s->finished)
		lgr_h2__stream_status(s, "200", status, NULL);
}

static void request_ended(struct lgr_h2_stream *s)
{
	if (!s->accepted || s->finished || s->closed)
		return;
	if (lgr_grpc_reader_partial(&s->reader)) {
		refuse(s, "200", LGR_GRPC_INTERNAL, "request ended inside a message");
		return;
	}
	if (handlers(s)->on_half_close != NULL)
		handlers(s)->on_half_close(s, route_ud(s));
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *frame, void *ud)
{
	struct lgr_h2__srv_conn *sc = ud;
	struct lgr_h2_stream *s;

	lgr_h2__conn_on_frame(&sc->c, frame);
	if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA)
		return 0;
	s = stream_of(ng, frame->hd.stream_id);
	if (s == NULL || sc->srv->freeing)
		return 0;
	if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST)
		request_ready(s);
	if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)
		request_ended(s);
	return 0;
}

static int deliver(const uint8_t *msg, size_t len, void *ud)
{
	struct lgr_h2_stream *s = ud;

	if (handlers(s)->on_message != NULL)
		handlers(s)->on_message(s, msg, len, route_ud(s));
	return s->finished || s->closed || s->conn->srv->freeing ? STOPPED : 0;
}

static int on_data(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data, size_t len, void *ud)
{
	struct lgr_h2_stream *s = stream_of(ng, id);
	int rc;

	if (s == NULL || !s->accepted || s->finished || s->closed || s->conn->srv->freeing)
		return 0;
	s->ack_owed = true;
	s->conn->acks_owed = true;
	rc = lgr_grpc_reader_feed(&s->reader, data, len, deliver, s);
	if (rc == LGR_ETOOBIG) {
		char msg[96];

		snprintf(msg, sizeof(msg), "grpc: received message larger than max (%zu bytes)", s->reader.max_message);
		refuse(s, "200", LGR_GRPC_RESOURCE_EXHAUSTED, msg);
	} else if (rc == LGR_EUNSUPPORTED) {
		refuse(s, "200", LGR_GRPC_INTERNAL, "grpc: compressed message but no compression was negotiated");
	} else if (rc == LGR_EDECODE) {
		refuse(s, "200", LGR_GRPC_INTERNAL, "grpc: malformed message prefix");
	} else if (rc == LGR_ENOMEM) {
		refuse(s, "200", LGR_GRPC_RESOURCE_EXHAUSTED, "out of memory");
	}
	return 0;
}

static int on_frame_send(nghttp2_session *ng, const nghttp2_frame *frame, void *ud)
{
	struct lgr_h2_stream *s;

	if ((frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) ||
		!(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
		return 0;
	s = stream_of(ng, frame->hd.stream_id);
	if (s == NULL)
		return 0;
	s->end_sent = true;
	/* The response is complete: a client still sending is told to stop, without error (RFC 9113 8.1). */
	if (!nghttp2_session_get_stream_remote_close(ng, s->id))
		nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_NO_ERROR);
	return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t id, uint32_t error_code, void *ud)
{
	struct lgr_h2_stream *s = stream_of(ng, id);

	if (s == NULL)
		return 0;
	nghttp2_session_set_stream_user_data(ng, id, NULL);
	unlink_stream(s);
	lgr_h2__stream_notify_close(s);
	free_stream(s);
	return 0;
}

void lgr_h2__streams_flushed(struct lgr_h2__conn *c)
{
	struct lgr_h2__srv_conn *sc = (struct lgr_h2__srv_conn *)c;

	if (!sc->drain_owed)
		return;
	sc->drain_owed = false;
	for (struct lgr_h2_stream *s = sc->streams; s != NULL; s = s->next) {
		if (!s->q.want_drain && !s->q.want_empty)
			continue;
		if (s->closed || s->finished || sc->srv->freeing) {
			s->q.want_drain = false;
			s->q.want_empty = false;
		} else if (lgr_h2__outq_drained(&s->q)) {
			if (handlers(s)->on_drain != NULL)
				handlers(s)->on_drain(s, route_ud(s));
		} else {
			sc->drain_owed = true;
		}
	}
}

/*
 * nghttp2 would return a stream's window only once half of it was received; returning it after every read instead
 * tells the client within a round trip which of its messages reached the handlers (lgr_h2_call_acked): a client
 * that resends what a lost connection held then resends only what may really be lost. One WINDOW_UPDATE per stream
 * and read.
 */
void lgr_h2__streams_received(struct lgr_h2__conn *c)
{
	struct lgr_h2__srv_conn *sc = (struct lgr_h2__srv_conn *)c;

	if (!sc->acks_owed)
		return;
	sc->acks_owed = false;
	for (struct lgr_h2_stream *s = sc->streams; s != NULL; s = s->next) {
		int32_t n;

		if (!s->ack_owed)
			continue;
		s->ack_owed = false;
		n = nghttp2_session_get_stream_effective_recv_data_length(c->ng, s->id);
		if (n > 0 && nghttp2_submit_window_update(c->ng, NGHTTP2_FLAG_NONE, s->id, n) != 0)
			break; /* out of memory: nghttp2 returns the window by itself at half */
	}
}

/* Unlinks s from its connection and frees it; its user was told already (lgr_h2__stream_notify_close). */
void lgr_h2__stream_release(struct lgr_h2_stream *s)
{
	unlink_stream(s);
	free_stream(s);
}

void lgr_h2__stream_callbacks(nghttp2_session_callbacks *cbs)
{
	nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data);
	nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send);
	nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
}
