/*
 * lgr_h2_call.c: the calls of lgr_h2's client: request HEADERS, bounded send queues feeding DATA frames, response
 * messages, the final status from trailers (or a trailers-only response, an HTTP status, a reset), cancellation, and
 * the transparent restart of a stream the server refused before seeing any of it. The channel they run on
 * (connections, resolution, backoff) is lgr_h2_client.c. See lgr_h2.h for the contract.
 */
#include "lgr_h2.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lgr_h2_internal.h"

void lgr_h2__call_link(struct lgr_h2_call **head, struct lgr_h2_call *call)
{
	call->prev = NULL;
	call->next = *head;
	if (*head != NULL)
		(*head)->prev = call;
	*head = call;
}

void lgr_h2__call_unlink(struct lgr_h2_call **head, struct lgr_h2_call *call)
{
	if (call->prev != NULL)
		call->prev->next = call->next;
	else
		*head = call->next;
	if (call->next != NULL)
		call->next->prev = call->prev;
	call->prev = call->next = NULL;
}

void lgr_h2__call_free(struct lgr_h2_call *call)
{
	lgr_grpc_reader_cleanup(&call->reader);
	lgr_h2__outq_cleanup(&call->q);
	free(call);
}

/* The single on_close of a call; afterwards it only waits for nghttp2 to let go of it. */
void lgr_h2__call_end(struct lgr_h2_call *call, int status, const char *message)
{
	bool owed = !call->ended && !call->cli->freeing;

	call->ended = true;
	call->q.eof = true;
	if (owed && call->h->on_close != NULL)
		call->h->on_close(call, status, message != NULL ? message : "", call->ud);
}

/* gRPC's mapping of HTTP statuses for responses without grpc-status. */
static int status_from_http(int http)
{
	switch (http) {
	case 400: return LGR_GRPC_INTERNAL;
	case 401: return LGR_GRPC_UNAUTHENTICATED;
	case 403: return LGR_GRPC_PERMISSION_DENIED;
	case 404: return LGR_GRPC_UNIMPLEMENTED;
	case 429:
	case 502:
	case 503:
	case 504: return LGR_GRPC_UNAVAILABLE;
	default: return LGR_GRPC_UNKNOWN;
	}
}

static int status_from_h2_error(uint32_t code)
{
	switch (code) {
	case NGHTTP2_REFUSED_STREAM: return LGR_GRPC_UNAVAILABLE;
	case NGHTTP2_CANCEL: return LGR_GRPC_CANCELLED;
	case NGHTTP2_ENHANCE_YOUR_CALM: return LGR_GRPC_RESOURCE_EXHAUSTED;
	case NGHTTP2_INADEQUATE_SECURITY: return LGR_GRPC_PERMISSION_DENIED;
	default: return LGR_GRPC_INTERNAL;
	}
}

static int hexval(uint8_t c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* grpc-message is percent-encoded; a malformed escape is kept as it is, as gRPC does. */
static void decode_message(char *out, size_t cap, const uint8_t *in, size_t len)
{
	size_t w = 0;

	for (size_t i = 0; i < len && w + 1 < cap; i++) {
		int hi, lo;

		if (in[i] == '%' && i + 2 < len && (hi = hexval(in[i + 1])) >= 0 && (lo = hexval(in[i + 2])) >= 0) {
			out[w++] = (char)(hi << 4 | lo);
			i += 2;
		} else {
			out[w++] = (char)in[i];
		}
	}
	out[w] = '\0';
}

int lgr_h2__call_start(struct lgr_h2__cli_conn *cc, struct lgr_h2_call *call)
{
	struct lgr_h2_client *cli = cc->cli;
	nghttp2_data_provider dp = lgr_h2__outq_provider(&call->q);
	nghttp2_nv nv[7];
	int32_t id;

	nv[0] = lgr_h2__nv(":method", "POST");
	nv[1] = lgr_h2__nv(":scheme", cli->cfg.ssl_ctx != NULL ? "https" : "http");
	nv[2] = lgr_h2__nv(":path", call->path);
	nv[3] = lgr_h2__nv(":authority", cli->authority);
	nv[4] = lgr_h2__nv("content-type", "application/grpc");
	nv[5] = lgr_h2__nv("te", "trailers");
	nv[6] = lgr_h2__nv("user-agent", "lgr-h2/1.0");
	id = nghttp2_submit_request(cc->c.ng, NULL, nv, sizeof(nv) / sizeof(nv[0]), &dp, call);
	if (id < 0)
		return id == NGHTTP2_ERR_NOMEM ? LGR_ENOMEM : LGR_EIO;
	call->id = id;
	call->conn = cc;
	cc->drain_owed = cc->drain_owed || call->q.want_drain; /* filled up while waiting for the connection */
	lgr_h2__call_link(&cc->calls, call);
	lgr_h2__conn_kick(&cc->c);
	return LGR_OK;
}

/* ---- nghttp2 callbacks ---------------------------------------------------------------------------------------- */

static struct lgr_h2_call *call_of(nghttp2_session *ng, int32_t id)
{
	return nghttp2_session_get_stream_user_data(ng, id);
}

static bool is(const uint8_t *name, size_t len, const char *what)
{
	return len == strlen(what) && memcmp(name, what, len) == 0;
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *frame, const uint8_t *name, size_t namelen,
	const uint8_t *value, size_t valuelen, uint8_t flags, void *ud)
{
	struct lgr_h2_call *call = call_of(ng, frame->hd.stream_id);

	if (call == NULL || frame->hd.type != NGHTTP2_HEADERS)
		return 0;
	if (is(name, namelen, ":status")) {
		call->http_status = 0;
		for (size_t i = 0; i < valuelen && i < 3 && value[i] >= '0' && value[i] <= '9'; i++)
			call->http_status = call->http_status * 10 + (value[i] - '0');
	} else if (is(name, namelen, "grpc-status")) {
		call->grpc_status = 0;
		for (size_t i = 0; i < valuelen && i < 4 && value[i] >= '0' && value[i] <= '9'; i++)
			call->grpc_status = call->grpc_status * 10 + (value[i] - '0');
		if (valuelen == 0 || valuelen > 4)
			call->grpc_status = LGR_GRPC_UNKNOWN;
	} else if (is(name, namelen, "grpc-message")) {
		decode_message(call->message, sizeof(call->message), value, valuelen);
	} else if (is(name, namelen, "content-type") && frame->headers.cat == NGHTTP2_HCAT_RESPONSE &&
		   !lgr_h2__grpc_content_type(value, valuelen)) {
		call->http_status = call->http_status == 200 ? 415 : call->http_status;
	}
	return 0;
}

/* END_STREAM from the server: the status is final now, whatever we still wanted to send. */
static void response_ended(struct lgr_h2__cli_conn *cc, struct lgr_h2_call *call)
{
	int status = call->grpc_status;

	if (status < 0 && call->http_status != 200 && call->http_status != 0) {
		snprintf(call->message, sizeof(call->message), "HTTP status %d", call->http_status);
		status = status_from_http(call->http_status);
	} else if (status < 0) {
		snprintf(call->message, sizeof(call->message), "response ended without grpc-status");
		status = LGR_GRPC_INTERNAL;
	} else if (status == LGR_GRPC_OK && lgr_grpc_reader_partial(&call->reader)) {
		snprintf(call->message, sizeof(call->message), "response ended inside a message");
		status = LGR_GRPC_INTERNAL;
	}
	if (!nghttp2_session_get_stream_local_close(cc->c.ng, call->id))
		nghttp2_submit_rst_stream(cc->c.ng, NGHTTP2_FLAG_NONE, call->id, NGHTTP2_CANCEL);
	lgr_h2__call_end(call, status, call->message);
}

/* The server returned window for request bytes: it read them (see lgr_h2_call_acked). */
static void window_returned(nghttp2_session *ng, const nghttp2_frame *frame)
{
	struct lgr_h2_call *call = call_of(ng, frame->hd.stream_id);
	uint64_t acked;

	if (call == NULL || call->ended || call->cli->freeing)
		return;
	acked = call->q.acked + (uint32_t)frame->window_update.window_size_increment;
	if (acked > call->q.taken)
		acked = call->q.taken;
	if (acked <= call->q.acked)
		return;
	call->q.acked = acked;
	if (call->h->on_acked != NULL)
		call->h->on_acked(call, acked, call->ud);
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *frame, void *ud)
{
	struct lgr_h2__cli_conn *cc = ud;
	struct lgr_h2_call *call;

	lgr_h2__conn_on_frame(&cc->c, frame);
	if (frame->hd.type == NGHTTP2_SETTINGS && !(frame->hd.flags & NGHTTP2_FLAG_ACK)) {
		lgr_h2__client_ready(cc);
		return 0;
	}
	if (frame->hd.type == NGHTTP2_GOAWAY) {
		lgr_h2__client_goaway(cc, &frame->goaway);
		return 0;
	}
	if (frame->hd.type == NGHTTP2_WINDOW_UPDATE && frame->hd.stream_id != 0) {
		window_returned(ng, frame);
		return 0;
	}
	if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA)
		return 0;
	call = call_of(ng, frame->hd.stream_id);
	if (call == NULL || call->ended)
		return 0;
	if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_RESPONSE)
		call->headers_seen = true;
	if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)
		response_ended(cc, call);
	return 0;
}

static int deliver(const uint8_t *msg, size_t len, void *ud)
{
	struct lgr_h2_call *call = ud;

	if (call->h->on_message != NULL)
		call->h->on_message(call, msg, len, call->ud);
	return call->ended || call->cli->freeing ? 1 : 0;
}

static int on_data(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data, size_t len, void *ud)
{
	struct lgr_h2_call *call = call_of(ng, id);
	const char *why = NULL;
	int status = LGR_GRPC_INTERNAL;
	int rc;

	if (call == NULL || call->ended || call->cli->freeing)
		return 0;
	rc = lgr_grpc_reader_feed(&call->reader, data, len, deliver, call);
	if (rc == LGR_ETOOBIG) {
		why = "received message larger than max";
		status = LGR_GRPC_RESOURCE_EXHAUSTED;
	} else if (rc == LGR_EUNSUPPORTED) {
		why = "compressed message but no compression was negotiated";
	} else if (rc == LGR_EDECODE) {
		why = "malformed message prefix";
	} else if (rc == LGR_ENOMEM) {
		why = "out of memory";
		status = LGR_GRPC_RESOURCE_EXHAUSTED;
	}
	if (why != NULL && !call->ended) {
		nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
		lgr_h2__call_end(call, status, why);
	}
	return 0;
}

/*
 * A stream the server refused before reading any of it (REFUSED_STREAM: over its stream limit before our client
 * learnt it, or beyond a GOAWAY) is started again, as grpc-go does, on this connection when it still takes
 * streams, else on the next. False when the call cannot be restarted.
 */
static bool restart(struct lgr_h2__cli_conn *cc, struct lgr_h2_call *call, uint32_t error_code)
{
	if (error_code != NGHTTP2_REFUSED_STREAM || call->ended || call->headers_seen || call->q.taken > 0 ||
		call->retries >= LGR_H2__MAX_RETRIES || cc->cli->freeing)
		return false;
	call->retries++;
	call->conn = NULL;
	call->id = 0;
	call->q.deferred = false;
	if (!cc->goaway && !cc->c.dead && lgr_h2__call_start(cc, call) == LGR_OK)
		return true;
	lgr_h2__call_link(&cc->cli->waiting, call);
	return true;
}

/* The stream of call is gone: restart it, or end it (if not yet) and free it. */
static void stream_gone(struct lgr_h2__cli_conn *cc, struct lgr_h2_call *call, uint32_t error_code)
{
	lgr_h2__call_unlink(&cc->calls, call);
	if (restart(cc, call, error_code))
		return;
	if (!call->ended) {
		char why[64];

		snprintf(why, sizeof(why), "stream reset by the server: %s", nghttp2_http2_strerror(error_code));
		lgr_h2__call_end(call, status_from_h2_error(error_code), why);
	}
	lgr_h2__call_free(call);
}

static int on_stream_close(nghttp2_session *ng, int32_t id, uint32_t error_code, void *ud)
{
	struct lgr_h2_call *call = call_of(ng, id);

	if (call == NULL)
		return 0;
	nghttp2_session_set_stream_user_data(ng, id, NULL);
	stream_gone(ud, call, error_code);
	return 0;
}

/* A request whose HEADERS could not even be sent (GOAWAY received meanwhile) never got a stream to close. */
static int on_frame_not_send(nghttp2_session *ng, const nghttp2_frame *frame, int error, void *ud)
{
	struct lgr_h2__cli_conn *cc = ud;
	struct lgr_h2_call *call = cc->calls;

	if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST ||
		nghttp2_session_find_stream(ng, frame->hd.stream_id) != NULL)
		return 0;
	while (call != NULL && call->id != frame->hd.stream_id)
		call = call->next;
	if (call != NULL)
		stream_gone(cc, call, NGHTTP2_REFUSED_STREAM);
	return 0;
}

void lgr_h2__calls_flushed(struct lgr_h2__conn *c)
{
	struct lgr_h2__cli_conn *cc = (struct lgr_h2__cli_conn *)c;

	if (!cc->drain_owed)
		return;
	cc->drain_owed = false;
	for (struct lgr_h2_call *call = cc->calls; call != NULL; call = call->next) {
		if (!call->q.want_drain)
			continue;
		if (call->ended || cc->cli->freeing) {
			call->q.want_drain = false;
		} else if (lgr_h2__outq_drained(&call->q)) {
			if (call->h->on_drain != NULL)
				call->h->on_drain(call, call->ud);
		} else {
			cc->drain_owed = true;
		}
	}
}

/* After a message was queued: wake the parked data source of a started call. */
/* ---- public ---------------------------------------------------------------------------------------------------- */

static int queued(struct lgr_h2_call *call, int rc)
{
	if (rc == LGR_EFULL && call->conn != NULL)
		call->conn->drain_owed = true;
	if (rc == LGR_OK && call->conn != NULL) {
		lgr_h2__outq_resume(&call->q, call->conn->c.ng, call->id);
		lgr_h2__conn_kick(&call->conn->c);
	}
	return rc;
}

int lgr_h2_call_send(struct lgr_h2_call *call, const uint8_t *msg, size_t len)
{
	if (call->ended)
		return LGR_EINVAL;
	return queued(call, lgr_h2__outq_push(&call->q, msg, len));
}

int lgr_h2_call_send_buffer(struct lgr_h2_call *call, struct evbuffer *msg)
{
	if (call->ended)
		return LGR_EINVAL;
	return queued(call, lgr_h2__outq_push_buffer(&call->q, msg));
}

int lgr_h2_call_close_send(struct lgr_h2_call *call)
{
	if (call->ended || call->q.eof)
		return LGR_EINVAL;
	call->q.eof = true;
	if (call->conn != NULL) {
		lgr_h2__outq_resume(&call->q, call->conn->c.ng, call->id);
		lgr_h2__conn_kick(&call->conn->c);
	}
	return LGR_OK;
}

void lgr_h2_call_cancel(struct lgr_h2_call *call)
{
	call->ended = true;
	call->q.eof = true;
	if (call->conn == NULL) {
		lgr_h2__call_unlink(&call->cli->waiting, call);
		lgr_h2__call_free(call);
		return;
	}
	/* nghttp2 still refers to the call until the stream closes; on_stream_close frees it. */
	nghttp2_submit_rst_stream(call->conn->c.ng, NGHTTP2_FLAG_NONE, call->id, NGHTTP2_CANCEL);
	lgr_h2__conn_kick(&call->conn->c);
}

size_t lgr_h2_call_queued(const struct lgr_h2_call *call)
{
	return lgr_h2__outq_len(&call->q);
}

uint64_t lgr_h2_call_acked(const struct lgr_h2_call *call)
{
	return call->q.acked;
}

struct lgr_h2_client *lgr_h2_call_client(const struct lgr_h2_call *call)
{
	return call->cli;
}

void lgr_h2__call_callbacks(nghttp2_session_callbacks *cbs)
{
	nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data);
	nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
	nghttp2_session_callbacks_set_on_frame_not_send_callback(cbs, on_frame_not_send);
}
