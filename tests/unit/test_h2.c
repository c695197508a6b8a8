/*
 * test_h2.c: lgr_h2's server and client against each other in one process on 127.0.0.1, over mutual TLS (a PKI
 * from contrib/gen-pki.sh) and in cleartext h2c: whole messages in order across DATA frames, server streaming
 * with trailers, gRPC statuses for unknown paths, oversize, truncated and compressed messages and bad requests
 * (these from a raw nghttp2 client in a thread), many concurrent streams, stream limits, bounded queues with
 * drain notices, cancellation, graceful shutdown, connection loss, reconnection, keepalive and TLS refusals.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <time.h>

#include <event2/buffer.h>
#include <nghttp2/nghttp2.h>

#include "h2_harness.h"
#include "lgr_grpc.h"
#include "lgr_tls.h"

TestSuite(h2, .init = h2_setup, .fini = h2_teardown, .timeout = 120);

/* ---- messages that carry their sequence number and check themselves -------------------------------------- */

static size_t msg_len(uint32_t seq)
{
	/* Mostly small, every 500th large enough to span several 16 KiB DATA frames. */
	return seq % 500 == 499 ? 70000 : 4 + (seq * 7919u) % 900;
}

static void msg_fill(uint8_t *buf, uint32_t seq, size_t len)
{
	buf[0] = (uint8_t)(seq >> 24);
	buf[1] = (uint8_t)(seq >> 16);
	buf[2] = (uint8_t)(seq >> 8);
	buf[3] = (uint8_t)seq;
	for (size_t i = 4; i < len; i++)
		buf[i] = (uint8_t)(seq * 7 + i);
}

/* The sequence number of a well-formed message, -1 otherwise. */
static long msg_check(const uint8_t *buf, size_t len)
{
	uint32_t seq;

	if (len < 4)
		return -1;
	seq = (uint32_t)buf[0] << 24 | (uint32_t)buf[1] << 16 | (uint32_t)buf[2] << 8 | buf[3];
	if (len != msg_len(seq))
		return -1;
	for (size_t i = 4; i < len; i++) {
		if (buf[i] != (uint8_t)(seq * 7 + i))
			return -1;
	}
	return seq;
}

/* ---- the server side: routes and what they saw -------------------------------------------------------------- */

struct seen {
	int opens, messages, half_closes, closes, resets, drains;
	uint64_t bytes; /* framed bytes of the messages handed to the handlers */
	long next_seq;	/* per stream would be nicer; tests with one collecting stream use this */
	int bad;	/* messages malformed or out of order */
	struct lgr_h2_stream *held[64];
	int nheld;
};

static struct seen sv;

static int open_any(struct lgr_h2_stream *s, void *ud)
{
	sv.opens++;
	return LGR_GRPC_OK;
}

static void close_any(struct lgr_h2_stream *s, bool reset, void *ud)
{
	sv.closes++;
	sv.resets += reset;
	for (int i = 0; i < sv.nheld; i++) {
		if (sv.held[i] == s)
			sv.held[i] = NULL;
	}
}

/* Collect: a client stream of sequenced messages; answers the count and OK. */
static void collect_message(struct lgr_h2_stream *s, const uint8_t *msg, size_t len, void *ud)
{
	long seq = msg_check(msg, len);
	uintptr_t n = (uintptr_t)lgr_h2_stream_data(s);

	sv.messages++;
	sv.bytes += LGR_GRPC_PREFIX + len;
	if (seq != (long)n)
		sv.bad++;
	lgr_h2_stream_set_data(s, (void *)(n + 1));
}

static void collect_half_close(struct lgr_h2_stream *s, void *ud)
{
	uintptr_t n = (uintptr_t)lgr_h2_stream_data(s);
	uint8_t count[4] = {(uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n};

	sv.half_closes++;
	cr_assert_eq(lgr_h2_stream_send(s, count, sizeof(count)), LGR_OK);
	cr_assert_eq(lgr_h2_stream_finish(s, LGR_GRPC_OK, NULL), LGR_OK);
}

/* Stream: the request (u32 count) asks for count sequenced messages, sent as the queue allows, then OK. */
struct streamer {
	uint32_t next, total;
};

static void stream_pump(struct lgr_h2_stream *s)
{
	struct streamer *st = lgr_h2_stream_data(s);
	static uint8_t buf[70000];

	while (st->next < st->total) {
		size_t len = msg_len(st->next);
		int rc;

		msg_fill(buf, st->next, len);
		rc = lgr_h2_stream_send(s, buf, len);
		if (rc == LGR_EFULL)
			return;
		cr_assert_eq(rc, LGR_OK);
		st->next++;
	}
	cr_assert_eq(lgr_h2_stream_finish(s, LGR_GRPC_OK, "all sent"), LGR_OK);
}

static void stream_message(struct lgr_h2_stream *s, const uint8_t *msg, size_t len, void *ud)
{
	struct streamer *st = calloc(1, sizeof(*st));

	cr_assert_eq(len, 4);
	st->total = (uint32_t)msg[0] << 24 | (uint32_t)msg[1] << 16 | (uint32_t)msg[2] << 8 | msg[3];
	lgr_h2_stream_set_data(s, st);
	sv.messages++;
	stream_pump(s);
}

static void stream_drain(struct lgr_h2_stream *s, void *ud)
{
	sv.drains++;
	stream_pump(s);
}

static void stream_close(struct lgr_h2_stream *s, bool reset, void *ud)
{
	free(lgr_h2_stream_data(s));
	close_any(s, reset, ud);
}

/* Hold: keeps the stream open and remembers it; the test decides. */
static int hold_open(struct lgr_h2_stream *s, void *ud)
{
	sv.opens++;
	if (sv.nheld < 64)
		sv.held[sv.nheld++] = s;
	return LGR_GRPC_OK;
}

static void hold_message(struct lgr_h2_stream *s, const uint8_t *msg, size_t len, void *ud)
{
	sv.messages++;
}

static void hold_half_close(struct lgr_h2_stream *s, void *ud)
{
	sv.half_closes++;
	lgr_h2_stream_finish(s, LGR_GRPC_OK, "half-closed in time");
}

static void count_drain(struct lgr_h2_stream *s, void *ud)
{
	sv.drains++;
}

static int deny_open(struct lgr_h2_stream *s, void *ud)
{
	sv.opens++;
	return LGR_GRPC_PERMISSION_DENIED;
}

static const struct lgr_h2_handlers collect = {open_any, collect_message, collect_half_close, NULL, close_any};
static const struct lgr_h2_handlers streaming = {open_any, stream_message, NULL, stream_drain, stream_close};
static const struct lgr_h2_handlers hold = {hold_open, hold_message, hold_half_close, NULL, close_any};
static const struct lgr_h2_handlers deny = {deny_open, NULL, NULL, NULL, close_any};
static const struct lgr_h2_handlers hold_drained = {hold_open, hold_message, hold_half_close, count_drain, close_any};

static const struct lgr_h2_route routes[] = {
	{"/test.H2/Collect", &collect, NULL},
	{"/test.H2/Stream", &streaming, NULL},
	{"/test.H2/Hold", &hold, NULL},
	{"/test.H2/Deny", &deny, NULL},
	{"/test.H2/HoldDrained", &hold_drained, NULL},
};

static SSL_CTX *sctx, *cctx;

static struct lgr_h2_server *serve(bool tls, struct lgr_h2_server_config *cfg_in)
{
	struct lgr_h2_server_config cfg = {0};
	struct lgr_h2_server *srv;

	if (cfg_in != NULL)
		cfg = *cfg_in;
	memset(&sv, 0, sizeof(sv));
	cfg.address = cfg.address != NULL ? cfg.address : "127.0.0.1";
	if (cfg.routes == NULL) {
		cfg.routes = routes;
		cfg.nroutes = sizeof(routes) / sizeof(routes[0]);
	}
	if (tls && sctx == NULL)
		sctx = server_ctx("doppler");
	cfg.ssl_ctx = tls ? sctx : NULL;
	cr_assert_eq(lgr_h2_server_new(base, &cfg, &srv), LGR_OK, "%s", logs);
	cr_assert_neq(lgr_h2_server_port(srv), 0);
	return srv;
}

/* ---- the client side ---------------------------------------------------------------------------------------- */

struct result {
	bool closed;
	int status;
	char message[LGR_H2_MAX_STATUS_MESSAGE];
	int responses;
	long next_seq;
	int bad;
	uint32_t count; /* Collect's answer */
};

static int states[3];
static char last_why[256];

static void on_state(struct lgr_h2_client *cli, enum lgr_h2_state st, const char *why, void *ud)
{
	states[st]++;
	snprintf(last_why, sizeof(last_why), "%s", why);
}

static void res_message(struct lgr_h2_call *call, const uint8_t *msg, size_t len, void *ud)
{
	struct result *r = ud;
	long seq = msg_check(msg, len);

	r->responses++;
	if (len == 4)
		r->count = (uint32_t)msg[0] << 24 | (uint32_t)msg[1] << 16 | (uint32_t)msg[2] << 8 | msg[3];
	if (seq >= 0) {
		if (seq != r->next_seq)
			r->bad++;
		r->next_seq = seq + 1;
	}
}

static void res_close(struct lgr_h2_call *call, int status, const char *message, void *ud)
{
	struct result *r = ud;

	cr_assert_not(r->closed, "on_close must run once");
	r->closed = true;
	r->status = status;
	snprintf(r->message, sizeof(r->message), "%s", message);
}

/* Sending side of a Collect call: sequenced messages as fast as the queue takes them. */
struct sender {
	struct lgr_h2_call *call;
	struct result res;
	uint32_t next, total;
	int drains;
	bool close_at_end;
};

static void send_more(struct sender *sd)
{
	static uint8_t buf[70000];

	while (sd->next < sd->total) {
		size_t len = msg_len(sd->next);
		int rc;

		msg_fill(buf, sd->next, len);
		rc = lgr_h2_call_send(sd->call, buf, len);
		if (rc == LGR_EFULL)
			return;
		cr_assert_eq(rc, LGR_OK);
		sd->next++;
	}
	if (sd->close_at_end)
		cr_assert_eq(lgr_h2_call_close_send(sd->call), LGR_OK);
	sd->close_at_end = false;
}

static void sender_message(struct lgr_h2_call *call, const uint8_t *msg, size_t len, void *ud)
{
	res_message(call, msg, len, &((struct sender *)ud)->res);
}

static void sender_close(struct lgr_h2_call *call, int status, const char *message, void *ud)
{
	res_close(call, status, message, &((struct sender *)ud)->res);
}

static void sender_drain(struct lgr_h2_call *call, void *ud)
{
	struct sender *sd = ud;

	sd->drains++;
	send_more(sd);
}

static const struct lgr_h2_call_handlers sender_handlers = {sender_message, sender_drain, sender_close, NULL};
static const struct lgr_h2_call_handlers result_handlers = {res_message, NULL, res_close, NULL};

static struct lgr_h2_client *dial(uint16_t port, bool tls, struct lgr_h2_client_config *cfg_in)
{
	struct lgr_h2_client_config cfg = {0};
	struct lgr_h2_client *cli;

	if (cfg_in != NULL)
		cfg = *cfg_in;
	memset(states, 0, sizeof(states));
	cfg.host = cfg.host != NULL ? cfg.host : "127.0.0.1";
	cfg.port = port;
	if (tls && cctx == NULL && cfg.ssl_ctx == NULL)
		cctx = client_ctx("client");
	if (tls && cfg.ssl_ctx == NULL)
		cfg.ssl_ctx = cctx;
	if (tls && cfg.server_name == NULL)
		cfg.server_name = "doppler";
	cfg.on_state = on_state;
	cr_assert_eq(lgr_h2_client_new(base, &cfg, &cli), LGR_OK);
	return cli;
}

static void free_ctx(void)
{
	SSL_CTX_free(sctx);
	SSL_CTX_free(cctx);
	sctx = cctx = NULL;
}

/* ---- client streaming: 10,000 messages -------------------------------------------------------------------- */

static void ten_thousand(bool tls)
{
	struct lgr_h2_server *srv = serve(tls, NULL);
	struct lgr_h2_client_config ccfg = {.max_send_queue = 256 * 1024};
	struct lgr_h2_client *cli = dial(lgr_h2_server_port(srv), tls, &ccfg);
	struct sender sd = {.total = 10000, .close_at_end = true};

	cr_assert_eq(lgr_h2_client_call(cli, "/test.H2/Collect", &sender_handlers, &sd, &sd.call), LGR_OK);
	send_more(&sd);
	cr_assert(RUN_UNTIL(sd.res.closed, 60000), "no status; log:\n%s", logs);
	cr_assert_eq(sd.res.status, LGR_GRPC_OK, "%d %s", sd.res.status, sd.res.message);
	cr_assert_eq(sd.res.responses, 1);
	cr_assert_eq(sd.res.count, 10000, "the server counted %u", sd.res.count);
	cr_assert(sd.drains > 0, "a 256 KiB queue must have filled and drained");
	cr_assert(RUN_UNTIL(sv.closes == 1, 5000));
	cr_assert_eq(sv.messages, 10000);
	cr_assert_eq(sv.bad, 0, "messages malformed or out of order");
	cr_assert_eq(sv.half_closes, 1);
	cr_assert_eq(sv.resets, 0);
	cr_assert_eq(states[LGR_H2_READY], 1);
	lgr_h2_client_free(cli);
	lgr_h2_server_free(srv);
	free_ctx();
}

Test(h2, ten_thousand_client_streamed_messages_arrive_whole_and_in_order_with_ok_over_tls)
{
	ten_thousand(true);
}

Test(h2, ten_thousand_client_streamed_messages_arrive_whole_and_in_order_with_ok_in_h2c)
{
	ten_thousand(false);
}

/* ---- TLS records ------------------------------------------------------------------------------------------ */

/* Application-data records the server read, and their bytes (TLS 1.2 and 1.3 both carry data in type 23). */
static unsigned records_in;
static size_t record_bytes_in;

static void count_records(int write_p, int version, int content_type, const void *buf, size_t len, SSL *ssl, void *arg)
{
	const uint8_t *h = buf;

	(void)version;
	(void)ssl;
	(void)arg;
	if (write_p || content_type != SSL3_RT_HEADER || len < 5 || h[0] != 23)
		return;
	records_in++;
	record_bytes_in += (size_t)h[3] << 8 | h[4];
}

/*
 * Small messages queued together leave in full records: each DATA frame is written with its header in one stretch of
 * the output, and frames follow each other there, so 199 messages of 4 to 900 bytes (about 90 KB with their
 * prefixes) take one 16 KiB record per 16 KiB and a few more (frame boundaries, the end of a write), not a record
 * per frame header and per small chunk.
 */
Test(h2, small_messages_queued_together_leave_in_full_tls_records)
{
	struct lgr_h2_server *srv = serve(true, NULL);
	struct lgr_h2_client *cli;
	struct sender sd = {.total = 200, .close_at_end = true};
	static uint8_t buf[1000];
	size_t bytes = 0, len;
	unsigned before;

	SSL_CTX_set_msg_callback(sctx, count_records);
	cli = dial(lgr_h2_server_port(srv), true, NULL);
	cr_assert_eq(lgr_h2_client_call(cli, "/test.H2/Collect", &sender_handlers, &sd, &sd.call), LGR_OK);
	/* READY: the server's SETTINGS arrived and their ACK left with it; once message 0 has arrived behind the ACK
	 * and the call's HEADERS, only the messages below remain to be read */
	cr_assert(RUN_UNTIL(states[LGR_H2_READY] == 1 && sv.opens == 1, 10000), "no call; log:\n%s", logs);
	msg_fill(buf, 0, msg_len(0));
	cr_assert_eq(lgr_h2_call_send(sd.call, buf, msg_len(0)), LGR_OK);
	cr_assert(RUN_UNTIL(sv.messages == 1, 10000));
	before = records_in;
	record_bytes_in = 0;
	for (sd.next = 1; sd.next < sd.total; sd.next++) {
		len = msg_len(sd.next);
		msg_fill(buf, sd.next, len);
		cr_assert_eq(lgr_h2_call_send(sd.call, buf, len), LGR_OK);
		bytes += LGR_GRPC_PREFIX + len;
	}
	cr_assert(RUN_UNTIL(sv.messages == (int)sd.total, 10000), "%d messages arrived", sv.messages);
	cr_assert_eq(sv.bad, 0);
	cr_assert_geq(record_bytes_in, bytes);
	cr_assert_leq(records_in - before, bytes / 16384 + 3, "%u records for %zu bytes of messages",
		records_in - before, bytes);
	cr_assert_eq(lgr_h2_call_close_send(sd.call), LGR_OK);
	cr_assert(RUN_UNTIL(sd.res.closed, 10000));
	cr_assert_eq(sd.res.status, LGR_GRPC_OK);
	SSL_CTX_set_msg_callback(sctx, NULL);
	lgr_h2_client_free(cli);
	lgr_h2_server_free(srv);
	free_ctx();
}

/* ---- server streaming ----------------------------------------------------------------------------------------- */

static void server_streaming(bool tls)
{
	struct lgr_h2_server_config scfg = {.max_send_queue = 128 * 1024};
	struct lgr_h2_server *srv = serve(tls, &scfg);
	struct lgr_h2_client *cli = dial(lgr_h2_server_port(srv), tls, NULL);
	struct result r = {0};
	struct lgr_h2_call *call;
	uint8_t req[4] = {0, 0, 0x0b, 0xb8}; /* 3000 */

	cr_assert_eq(lgr_h2_client_call(cli, "/test.H2/Stream", &result_handlers, &r, &call), LGR_OK);
	cr_assert_eq(lgr_h2_call_send(call, req, sizeof(req)), LGR_OK);
	cr_assert_eq(lgr_h2_call_close_send(call), LGR_OK);
	cr_assert(RUN_UNTIL(r.closed, 30000), "no status; log:\n%s", logs);
	cr_assert_eq(r.status, LGR_GRPC_OK);
	cr_assert_str_eq(r.message, "all sent");
	cr_assert_eq(r.responses, 3000);
	cr_assert_eq(r.next_seq, 3000);
	cr_assert_eq(r.bad, 0);
	cr_assert(sv.drains > 0, "a 128 KiB server queue must have filled and drained");
	cr_assert(RUN_UNTIL(sv.closes == 1, 5000));
	cr_assert_eq(sv.resets, 0);
	lgr_h2_client_free(cli);
	lgr_h2_server_free(srv);
	free_ctx();
}

Test(h2, a_server_streamed_response_delivers_every_message_then_the_trailers_over_tls)
{
	server_streaming(true);
}

Test(h2, a_server_streamed_response_delivers_every_message_then_the_trailers_in_h2c)
{
	server_streaming(false);
}

/* ---- statuses ---------------------------------------------------------------------------------------------- */

static struct result call_once(struct lgr_h2_client *cli, const char *path, const uint8_t *msg, size_t len)
{
	struct result r = {0};
	struct lgr_h2_call *call;

	cr_assert_eq(lgr_h2_client_call(cli, path, &result_handlers, &r, &call), LGR_OK);
	if (msg != NULL)
		lgr_h2_call_send(call, msg, len);
	lgr_h2_call_close_send(call);
	cr_assert(RUN_UNTIL(r.closed, 10000), "no status; log:\n%s", logs);
	return r;
}

Test(h2, an_unknown_path_is_unimplemented_and_the_connection_stays_usable)
{
	struct lgr_h2_server *srv = serve(true, NULL);
	struct lgr_h2_client *cli = dial(lgr_h2_server_port(srv), true, NULL);
	struct result r = call_once(cli, "/test.H2/Nope", (const uint8_t *)"x", 1);

	cr_assert_eq(r.status, LGR_GRPC_UNIMPLEMENTED);
	cr_assert_str_eq(r.message, "unknown method /test.H2/Nope");
	cr_assert_eq(sv.opens, 0);
	r = call_once(cli, "/test.H2/Collect", NULL, 0);
	cr_assert_eq(r.status, LGR_GRPC_OK);
	cr_assert_eq(states[LGR_H2_READY], 1, "one connection served both calls");
	lgr_h2_client_free(cli);
	lgr_h2_server_free(srv);
	free_ctx();
}

Test(h2, a_message_over_the_server_limit_is_resource_exhausted)
{
	struct lgr_h2_server_config scfg = {.max_message = 1000};
	struct lgr_h2_server *srv = serve(false, &scfg);
	struct lgr_h2_client *cli = dial(lgr_h2_server_port(srv), false, NULL);
	uint8_t big[1001];
	struct result r;

	msg_fill(big, 0, sizeof(big));
	r = call_once(cli, "/test.H2/Collect", big, sizeof(big));
	cr_assert_eq(r.status, LGR_GRPC_RESOURCE_EXHAUSTED);
	cr_assert_not_null(strstr(r.message, "larger than max"), "%s", r.message);
	cr_assert(RUN_UNTIL(sv.closes == 1, 5000));
	cr_assert_eq(sv.messages, 0);
	lgr_h2_client_free(cli);
	lgr_h2_server_free(srv);
}

Test(h2, a_message_over_the_client_limit_ends_the_call_with_resource_exhausted)
{
	struct lgr_h2_server *srv = serve(false, NULL);
	struct lgr_h2_client_config ccfg = {.max_message = 100};
	struct lgr_h2_client *cli = dial(lgr_h2_server_port(srv), false, &ccfg);
	uint8_t req[4] = {0, 1, 0, 0};
	struct result r = call_once(cli, "/test.H2/Stream", req, sizeof(req)); /* the second message has 723 bytes */

	cr_assert_eq(r.status, LGR_GRPC_RESOURCE_EXHAUSTED);
	cr_assert(RUN_UNTIL(sv.closes == 1, 5000));
	cr_assert_eq(sv.resets, 1, "the client reset the stream");
	lgr_h2_client_free(cli);
	lgr_h2_server_free(srv);
}

Test(h2, a_call_refused_by_on_open_gets_its_status_and_no_other_handler)
{
	struct lgr_h2_server *srv = serve(false, NULL);
	struct lgr_h2_client *cli = dial(lgr_h2_server_port(srv), false, NULL);
	struct result r = call_once(cli, "/test.H2/Deny", (const uint8_t *)"x", 1);

	cr_assert_eq(r.status, LGR_GRPC_PERMISSION_DENIED);
	run_for(100);
	cr_assert_eq(sv.opens, 1);
	cr_assert_eq(sv.closes, 0);
	lgr_h2_client_free(cli);
	lgr_h2_server_free(srv);
}

/* ---- raw requests: what our client never sends ------------------------------------------------------------------ */

struct raw {
	uint16_t port;
	const char *method, *content_type;
	const uint8_t *body;
	size_t body_len, off;
	int fd;
	int http_status, grpc_status;
	char grpc_message[256];
	bool closed;
	int done; /* set by the thread */
};

static ssize_t raw_send(nghttp2_session *ng, const uint8_t *d, size_t n, int flags, void *ud)
{
	ssize_t w = write(((struct raw *)ud)->fd, d, n);

	return w < 0 ? NGHTTP2_ERR_CALLBACK_FAILURE : w;
}

static ssize_t raw_body(
	nghttp2_session *ng, int32_t id, uint8_t *buf, size_t len, uint32_t *flags, nghttp2_data_source *src, void *ud)
{
	struct raw *r = ud;
	size_t n = r->body_len - r->off < len ? r->body_len - r->off : len;

	memcpy(buf, r->body + r->off, n);
	r->off += n;
	if (r->off == r->body_len)
		*flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)n;
}

static int raw_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name, size_t nl, const uint8_t *value,
	size_t vl, uint8_t flags, void *ud)
{
	struct raw *r = ud;

	if (nl == 7 && memcmp(name, ":status", 7) == 0)
		r->http_status = atoi((const char *)value);
	else if (nl == 11 && memcmp(name, "grpc-status", 11) == 0)
		r->grpc_status = atoi((const char *)value);
	else if (nl == 12 && memcmp(name, "grpc-message", 12) == 0)
		snprintf(r->grpc_message, sizeof(r->grpc_message), "%.*s", (int)vl, value);
	return 0;
}

static int raw_close(nghttp2_session *ng, int32_t id, uint32_t code, void *ud)
{
	((struct raw *)ud)->closed = true;
	return 0;
}

/* A blocking HTTP/2 client on its own thread: one request, then the response headers and trailers. */
static void *raw_run(void *arg)
{
	struct raw *r = arg;
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(r->port)};
	nghttp2_session_callbacks *cbs;
	nghttp2_session *ng;
	nghttp2_data_provider dp = {.read_callback = raw_body};
	nghttp2_nv nv[] = {
		{(uint8_t *)":method", (uint8_t *)r->method, 7, strlen(r->method), 0},
		{(uint8_t *)":scheme", (uint8_t *)"http", 7, 4, 0},
		{(uint8_t *)":path", (uint8_t *)"/test.H2/Collect", 5, 16, 0},
		{(uint8_t *)":authority", (uint8_t *)"test", 10, 4, 0},
		{(uint8_t *)"content-type", (uint8_t *)r->content_type, 12, strlen(r->content_type), 0},
	};
	time_t end = time(NULL) + 10;

	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	r->fd = socket(AF_INET, SOCK_STREAM, 0);
	if (connect(r->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
		goto out;
	nghttp2_session_callbacks_new(&cbs);
	nghttp2_session_callbacks_set_send_callback(cbs, raw_send);
	nghttp2_session_callbacks_set_on_header_callback(cbs, raw_header);
	nghttp2_session_callbacks_set_on_stream_close_callback(cbs, raw_close);
	nghttp2_session_client_new(&ng, cbs, r);
	nghttp2_session_callbacks_del(cbs);
	nghttp2_submit_settings(ng, NGHTTP2_FLAG_NONE, NULL, 0);
	nghttp2_submit_request(ng, NULL, nv, sizeof(nv) / sizeof(nv[0]), r->body != NULL ? &dp : NULL, NULL);
	while (!r->closed && time(NULL) < end) {
		struct pollfd p = {.fd = r->fd, .events = POLLIN};
		uint8_t buf[16384];

		nghttp2_session_send(ng);
		if (poll(&p, 1, 100) == 1) {
			ssize_t n = read(r->fd, buf, sizeof(buf));

			if (n <= 0 || nghttp2_session_mem_recv(ng, buf, (size_t)n) < 0)
				break;
		}
	}
	nghttp2_session_del(ng);
out:
	close(r->fd);
	__atomic_store_n(&r->done, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

static struct raw raw_request(const char *method, const char *content_type, const uint8_t *body, size_t len)
{
	struct lgr_h2_server *srv = serve(false, NULL);
	struct raw r = {.method = method, .content_type = content_type, .body = body, .body_len = len};
	pthread_t t;

	r.port = lgr_h2_server_port(srv);
	r.grpc_status = -1;
	cr_assert_eq(pthread_create(&t, NULL, raw_run, &r), 0);
	cr_assert(RUN_UNTIL(__atomic_load_n(&r.done, __ATOMIC_SEQ_CST), 15000));
	pthread_join(t, NULL);
	cr_assert(r.closed, "the stream was not closed");
	lgr_h2_server_free(srv);
	return r;
}

Test(h2, a_method_other_than_post_is_http_405_with_grpc_status_internal)
{
	struct raw r = raw_request("GET", "application/grpc", NULL, 0);

	cr_assert_eq(r.http_status, 405);
	cr_assert_eq(r.grpc_status, LGR_GRPC_INTERNAL);
	cr_assert_eq(sv.opens, 0);
}

Test(h2, a_content_type_other_than_grpc_is_http_415_with_grpc_status_internal)
{
	struct raw r = raw_request("POST", "application/json", (const uint8_t *)"{}", 2);

	cr_assert_eq(r.http_status, 415);
	cr_assert_eq(r.grpc_status, LGR_GRPC_INTERNAL);
	cr_assert_eq(sv.opens, 0);
}

Test(h2, grpc_content_types_with_a_subtype_or_parameters_are_accepted)
{
	struct raw r = raw_request("POST", "application/grpc+proto; charset=utf-8", (const uint8_t *)"\0\0\0\0\0", 5);

	cr_assert_eq(r.http_status, 200);
	cr_assert_eq(r.grpc_status, LGR_GRPC_OK, "%s", r.grpc_message);
	cr_assert_eq(sv.messages, 1, "an empty message is a message");
	cr_assert_eq(sv.half_closes, 1);
}

Test(h2, a_request_ending_inside_a_message_is_internal)
{
	static const uint8_t body[] = {0, 0, 0, 0, 100, 'a', 'b', 'c'};
	struct raw r = raw_request("POST", "application/grpc", body, sizeof(body));

	cr_assert_eq(r.grpc_status, LGR_GRPC_INTERNAL);
	cr_assert_str_eq(r.grpc_message, "request ended inside a message");
	cr_assert_eq(sv.half_closes, 0);
	cr_assert_eq(sv.closes, 1);
}

Test(h2, a_compressed_message_is_internal)
{
	static const uint8_t body[] = {1, 0, 0, 0, 3, 'a', 'b', 'c'};
	struct raw r = raw_request("POST", "application/grpc", body, sizeof(body));

	cr_assert_eq(r.grpc_status, LGR_GRPC_INTERNAL);
	cr_assert_not_null(strstr(r.grpc_message, "compress"), "%s", r.grpc_message);
	cr_assert_eq(sv.messages, 0);
}

/* ---- many streams --------------------------------------------------------------------------------------------------
 */

Test(h2, two_hundred_concurrent_streams_on_one_connection_each_arrive_whole)
{
	struct lgr_h2_server *srv = serve(true, NULL);
	struct lgr_h2_client *cli = dial(lgr_h2_server_port(srv), true, NULL);
	static struct sender sd[200];
	int closed = 0;

	memset(sd, 0, sizeof(sd));
	for (int i = 0; i < 200; i++) {
		sd[i].total = 50;
		sd[i].close_at_end = true;
		cr_assert_eq(
			lgr_h2_client_call(cli, "/test.H2/Collect", &sender_handlers, &sd[i], &sd[i].call), LGR_OK);
		send_more(&sd[i]);
	}
	cr_assert(RUN_UNTIL(({
		closed = 0;
		for (int i = 0; i < 200; i++)
			closed += sd[i].res.closed;
		closed == 200;
	}),
			  60000),
		"%d of 200 closed; log:\n%s", closed, logs);
	for (int i = 0; i < 200; i++) {
		cr_assert_eq(sd[i].res.status, LGR_GRPC_OK, "call %d: %d %s", i, sd[i].res.status, sd[i].res.message);
		cr_assert_eq(sd[i].res.count, 50, "call %d", i);
	}
	cr_assert_eq(sv.bad, 0);
	cr_assert_eq(sv.messages, 200 * 50);
	cr_assert_eq(lgr_h2_server_connections(srv), 1);
	lgr_h2_client_free(cli);
	lgr_h2_server_free(srv);
	free_ctx();
}

Test(h2, calls_beyond_the_server_stream_limit_wait_for_a_free_slot)
{
	struct lgr_h2_server_config scfg = {.max_streams = 4};
	struct lgr_h2_server *srv = serve(false, &scfg);
	struct lgr_h2_client *cli = dial(lgr_h2_server_port(srv), false, NULL);
	struct lgr_h2_call *call[10];
	struct result r[10] = {0};
	int closed = 0;

	for (int i = 0; i < 10; i++)
		cr_assert_eq(lgr_h2_client_call(cli, "/test.H2/Hold", &result_handlers, &r[i], &call[i]), LGR_OK);
	cr_assert(RUN_UNTIL(sv.opens == 4, 5000));
	run_for(200);
	cr_assert_eq(sv.opens, 4, "no more than 4 streams at a time");
	for (int i = 0; i < 10; i++)
		lgr_h2_call_close_send(call[i]);
	cr_assert(RUN_UNTIL(({
		closed = 0;
		for (int i = 0; i < 10; i++)
			closed += r[i].closed;
		closed == 10;
	}),
			  10000),
		"%d of 10", closed);
	for (int i = 0; i < 10; i++)
		cr_assert_eq(r[i].status, LGR_GRPC_OK, "call %d: %s", i, r[i].message);
	cr_assert_eq(sv.opens, 10);
	lgr_h2_client_free(cli);
	lgr_h2_server_free(srv);
}

/* ---- queues --------------------------------------------------------------------------------------------------- */

static void unref_cb(const void *data, size_t len, void *arg)
{
	(*(int *)arg)++;
}

Test(h2, the_send_queue_is_bounded_and_always_takes_one_message_when_empty)
{
	struct lgr_h2_client_config ccfg = {.max_send_queue = 10000, .connect_ms = 60000};
	struct lgr_h2_client *cli = dial(9, false, &ccfg); /* discard port: nothing listens, the call waits */
	static uint8_t big[20000];
	struct lgr_h2_call *call;
	struct result r = {0};
	int n = 0, rc;

	cr_assert_eq(lgr_h2_client_call(cli, "/test.H2/Collect", &result_handlers, &r, &call), LGR_OK);
	cr_assert_eq(lgr_h2_call_send(call, big, sizeof(big)), LGR_OK, "an empty queue takes any message");
	cr_assert_eq(lgr_h2_call_send(call, big, 10), LGR_EFULL);
	lgr_h2_call_cancel(call);
	cr_assert_eq(lgr_h2_client_call(cli, "/test.H2/Collect", &result_handlers, &r, &call), LGR_OK);
	while ((rc = lgr_h2_call_send(call, big, 995)) == LGR_OK)
		n++;
	cr_assert_eq(rc, LGR_EFULL);
	cr_assert_eq(n, 10, "10 framed messages of 1000 bytes fill 10000 bytes");
	cr_assert_eq(lgr_h2_call_queued(call), 10000);
	lgr_h2_client_free(cli);
	cr_assert(r.closed, "freeing the client ends the second call (the cancelled one hears nothing)");
	cr_assert_eq(r.status, LGR_GRPC_CANCELLED);
}

static void notify_empty(bool tls)
{
	struct lgr_h2_server *srv = serve(tls, NULL);
	struct lgr_h2_client *cli = dial(lgr_h2_server_port(srv), tls, NULL);
	static uint8_t buf[70000];
	struct lgr_h2_stream *s;
	struct lgr_h2_call *call;
	struct result r = {0};

	cr_assert_eq(lgr_h2_client_call(cli, "/test.H2/HoldDrained", &result_handlers, &r, &call), LGR_OK);
	msg_fill(buf, 0, msg_len(0));
	cr_assert_eq(lgr_h2_call_send(call, buf, msg_len(0)), LGR_OK);
	cr_assert(RUN_UNTIL(sv.messages == 1, 10000), "log:\n%s", logs);
	s = sv.held[0];
	lgr_h2_stream_notify_empty(s);
	cr_assert(RUN_UNTIL(sv.drains == 1, 10000), "an empty queue is told at once; log:\n%s", logs);
	for (uint32_t seq = 0; seq < 500; seq++) {
		msg_fill(buf, seq, msg_len(seq));
		cr_assert_eq(lgr_h2_stream_send(s, buf, msg_len(seq)), LGR_OK);
	}
	cr_assert_gt(lgr_h2_stream_queued(s), 0);
	lgr_h2_stream_notify_empty(s);
	cr_assert(RUN_UNTIL(sv.drains == 2, 10000), "log:\n%s", logs);
	cr_assert_eq(lgr_h2_stream_queued(s), 0, "told only once the queue is empty");
	cr_assert(RUN_UNTIL(r.responses == 500, 10000));
	cr_assert_eq(sv.drains, 2, "told once per request");
	cr_assert_eq(r.bad, 0);
	cr_assert_eq(lgr_h2_call_close_send(call), LGR_OK);
	cr_assert(RUN_UNTIL(r.closed, 10000));
	cr_assert_eq(r.status, LGR_GRPC_OK);
	lgr_h2_client_free(cli);
	lgr_h2_server_free(srv);
	free_ctx();
}

Test(h2, notify_empty_calls_on_drain_once_when_the_send_queue_is_empty_over_tls)
{
	notify_empty(true);
}

Test(h2, notify_empty_calls_on_drain_once_when_the_send_queue_is_empty_in_h2c)
{
	notify_empty(false);
}

/* ---- confirmation: the server returns the window of what its handlers received ------------------------------ */

struct acked {
	struct result r;    /* first: res_message and res_close take the same ud */
	uint64_t end[1200]; /* where each message sent ends in the request's bytes */
	int sent;
	uint64_t last;
	int calls;
	int ahead; /* confirmations of a message the server's handlers had not received, or going back */
};

static void acked_seen(struct lgr_h2_call *call, uint64_t acked, void *ud)
{
	struct acked *a = ud;
	int whole = 0;

	while (whole < a->sent && a->end[whole] <= acked)
		whole++;
	a->calls++;
	a->ahead += whole > sv.messages || acked <= a->last || acked != lgr_h2_call_acked(call);
	a->last = acked;
}

static void acked_send(struct lgr_h2_call *call, struct acked *a, uint32_t seq)
{
	static uint8_t buf[70000];

	msg_fill(buf, seq, msg_len(seq));
	cr_assert_eq(lgr_h2_call_send(call, buf, msg_len(seq)), LGR_OK);
	a->end[a->sent] = (a->sent > 0 ? a->end[a->sent - 1] : 0) + LGR_GRPC_PREFIX + msg_len(seq);
	a->sent++;
}

static void confirmation(bool tls)
{
	static const struct lgr_h2_call_handlers h = {res_message, NULL, res_close, acked_seen};
	struct lgr_h2_server *srv = serve(tls, NULL);
	struct lgr_h2_client *cli = dial(lgr_h2_server_port(srv), tls, NULL);
	static struct acked a;
	struct lgr_h2_call *call;
	uint32_t seq = 0;

	memset(&a, 0, sizeof(a));
	cr_assert_eq(lgr_h2_client_call(cli, "/test.H2/Collect", &h, &a, &call), LGR_OK);
	/* three small messages: far below the half window after which nghttp2 would return it by itself */
	for (; seq < 3; seq++)
		acked_send(call, &a, seq);
	cr_assert(RUN_UNTIL(a.last == a.end[2], 10000), "confirmed %" PRIu64 " of %" PRIu64 "; log:\n%s", a.last,
		a.end[2], logs);
	cr_assert_eq(sv.messages, 3);
	/* then many, with large ones spanning several DATA frames and reads */
	for (; seq < 1200; seq++)
		acked_send(call, &a, seq);
	cr_assert(RUN_UNTIL(a.last == a.end[1199], 10000), "confirmed %" PRIu64 " of %" PRIu64, a.last, a.end[1199]);
	cr_assert_eq(sv.messages, 1200);
	cr_assert_eq(sv.bad, 0);
	cr_assert_eq(a.ahead, 0, "a confirmation ran ahead of what the handlers had, or went back");
	cr_assert_gt(a.calls, 1);
	cr_assert_eq(lgr_h2_call_close_send(call), LGR_OK);
	cr_assert(RUN_UNTIL(a.r.closed, 10000));
	cr_assert_eq(a.r.status, LGR_GRPC_OK);
	lgr_h2_client_free(cli);
	lgr_h2_server_free(srv);
	free_ctx();
}

Test(h2, the_server_confirms_each_read_so_the_client_knows_what_arrived_over_tls)
{
	confirmation(true);
}

Test(h2, the_server_confirms_each_read_so_the_client_knows_what_arrived_in_h2c)
{
	confirmation(false);
}

Test(h2, a_referenced_buffer_is_sent_without_a_copy_and_released_after_sending)
{
	struct lgr_h2_server *srv = serve(false, NULL);
	struct lgr_h2_client *cli = dial(lgr_h2_server_port(srv), false, NULL);
	static uint8_t msg[3][70000];
	struct lgr_h2_call *call;
	struct result r = {0};
	int released = 0;

	cr_assert_eq(lgr_h2_client_call(cli, "/test.H2/Collect", &result_handlers, &r, &call), LGR_OK);
	for (uint32_t i = 0; i < 3; i++) {
		struct evbuffer *b = evbuffer_new();

		msg_fill(msg[i], i, msg_len(i));
		evbuffer_add_reference(b, msg[i], msg_len(i), unref_cb, &released);
		cr_assert_eq(lgr_h2_call_send_buffer(call, b), LGR_OK);
		cr_assert_eq(evbuffer_get_length(b), 0);
		evbuffer_free(b);
	}
	cr_assert_eq(released, 0, "the queue holds the references");
	lgr_h2_call_close_send(call);
	cr_assert(RUN_UNTIL(r.closed, 10000));
	cr_assert_eq(r.status, LGR_GRPC_OK);
	cr_assert_eq(r.count, 3);
	cr_assert_eq(sv.bad, 0);
	cr_assert_eq(released, 3);
	lgr_h2_client_free(cli);
	lgr_h2_server_free(srv);
}

/* ---- ends: cancel, shutdown, loss ----------------------------------------------------------------------------- */

Test(h2, a_cancelled_call_resets_the_stream_and_runs_no_more_handlers)
{
	struct lgr_h2_server *srv = serve(false, NULL);
	struct lgr_h2_client *cli = dial(lgr_h2_server_port(srv), false, NULL);
	struct lgr_h2_call *call;
	struct result r = {0};

	cr_assert_eq(lgr_h2_client_call(cli, "/test.H2/Hold", &result_handlers, &r, &call), LGR_OK);
	lgr_h2_call_send(call, (const uint8_t *)"abc", 3);
	cr_assert(RUN_UNTIL(sv.messages == 1, 5000));
	lgr_h2_call_cancel(call);
	cr_assert(RUN_UNTIL(sv.closes == 1, 5000));
	cr_assert_eq(sv.resets, 1);
	run_for(100);
	cr_assert_not(r.closed);
	lgr_h2_client_free(cli);
	lgr_h2_server_free(srv);
}

static int done_calls;

static void shutdown_done(void *ud)
{
	done_calls++;
}

Test(h2, server_shutdown_ends_open_streams_with_unavailable_after_the_grace_period)
{
	struct lgr_h2_server *srv = serve(true, NULL);
	struct lgr_h2_client_config ccfg = {.backoff_min_ms = 50, .backoff_max_ms = 100};
	struct lgr_h2_client *cli = dial(lgr_h2_server_port(srv), true, &ccfg);
	struct lgr_h2_call *call[4];
	struct result r[4] = {0};
	struct result late = {0};
	struct lgr_h2_call *late_call;

	done_calls = 0;
	for (int i = 0; i < 4; i++) {
		cr_assert_eq(lgr_h2_client_call(cli, "/test.H2/Hold", &result_handlers, &r[i], &call[i]), LGR_OK);
		lgr_h2_call_send(call[i], (const uint8_t *)"x", 1);
	}
	cr_assert(RUN_UNTIL(sv.messages == 4, 5000), "log:\n%s", logs);
	lgr_h2_server_shutdown(srv, 300, shutdown_done, NULL);
	/* One stream finishes during the grace period; a call made now waits for another connection. */
	run_for(100);
	lgr_h2_call_close_send(call[0]);
	cr_assert_eq(lgr_h2_client_call(cli, "/test.H2/Hold", &result_handlers, &late, &late_call), LGR_OK);
	cr_assert(RUN_UNTIL(r[1].closed && r[2].closed && r[3].closed && done_calls == 1, 5000), "log:\n%s", logs);
	cr_assert_eq(r[0].status, LGR_GRPC_OK);
	cr_assert_str_eq(r[0].message, "half-closed in time");
	for (int i = 1; i < 4; i++) {
		cr_assert_eq(r[i].status, LGR_GRPC_UNAVAILABLE, "call %d: %d", i, r[i].status);
		cr_assert_str_eq(r[i].message, "server shutting down");
	}
	cr_assert_eq(lgr_h2_server_connections(srv), 0);
	cr_assert_eq(sv.closes, 4);
	/* Nothing listens any more: the late call fails with the next attempt. */
	cr_assert(RUN_UNTIL(late.closed, 5000));
	cr_assert_eq(late.status, LGR_GRPC_UNAVAILABLE);
	cr_assert(states[LGR_H2_TRANSIENT_FAILURE] >= 1);
	lgr_h2_client_free(cli);
	lgr_h2_server_free(srv);
	free_ctx();
}

Test(h2, after_a_goaway_old_streams_finish_while_new_calls_use_a_new_connection)
{
	struct lgr_h2_server *old = serve(false, NULL), *fresh;
	uint16_t port = lgr_h2_server_port(old);
	struct lgr_h2_server_config same = {.port = port};
	struct lgr_h2_client *cli = dial(port, false, NULL);
	struct lgr_h2_call *call;
	struct result r = {0};

	cr_assert_eq(lgr_h2_client_call(cli, "/test.H2/Hold", &result_handlers, &r, &call), LGR_OK);
	cr_assert(RUN_UNTIL(sv.opens == 1, 5000));
	done_calls = 0;
	lgr_h2_server_shutdown(old, 5000, shutdown_done, NULL);
	fresh = serve(false, &same); /* the old listener is closed: a successor takes the port */
	cr_assert(RUN_UNTIL(states[LGR_H2_READY] == 2, 5000), "no second connection; log:\n%s", logs);
	cr_assert_eq(call_once(cli, "/test.H2/Collect", NULL, 0).status, LGR_GRPC_OK);
	cr_assert_not(r.closed, "the old stream is still open");
	cr_assert_eq(lgr_h2_server_connections(old), 1);
	lgr_h2_call_close_send(call);
	cr_assert(RUN_UNTIL(r.closed && done_calls == 1, 5000));
	cr_assert_eq(r.status, LGR_GRPC_OK);
	cr_assert_str_eq(r.message, "half-closed in time");
	cr_assert_eq(states[LGR_H2_TRANSIENT_FAILURE], 0);
	lgr_h2_client_free(cli);
	lgr_h2_server_free(old);
	lgr_h2_server_free(fresh);
}

Test(h2, a_lost_connection_ends_calls_with_unavailable_and_the_client_reconnects)
{
	struct lgr_h2_server *srv = serve(false, NULL);
	uint16_t port = lgr_h2_server_port(srv);
	struct lgr_h2_server_config again = {.port = port};
	struct lgr_h2_client_config ccfg = {.backoff_min_ms = 50, .backoff_max_ms = 200};
	struct lgr_h2_client *cli = dial(port, false, &ccfg);
	struct lgr_h2_call *call;
	struct result r = {0};

	cr_assert_eq(lgr_h2_client_call(cli, "/test.H2/Hold", &result_handlers, &r, &call), LGR_OK);
	cr_assert(RUN_UNTIL(sv.opens == 1, 5000));
	lgr_h2_server_free(srv);
	cr_assert_eq(sv.closes, 1, "the server's own stream hears of the end at once");
	cr_assert_eq(sv.resets, 1);
	cr_assert(RUN_UNTIL(r.closed, 5000));
	cr_assert_eq(r.status, LGR_GRPC_UNAVAILABLE);
	cr_assert(RUN_UNTIL(states[LGR_H2_TRANSIENT_FAILURE] >= 1, 5000));
	srv = serve(false, &again);
	cr_assert(RUN_UNTIL(states[LGR_H2_READY] == 2, 5000), "no reconnection; log:\n%s", logs);
	cr_assert_eq(call_once(cli, "/test.H2/Collect", NULL, 0).status, LGR_GRPC_OK);
	lgr_h2_client_free(cli);
	lgr_h2_server_free(srv);
}

static void free_client_on_close(struct lgr_h2_call *call, int status, const char *message, void *ud)
{
	res_close(call, status, message, ud);
	lgr_h2_client_free(lgr_h2_call_client(call));
}

Test(h2, freeing_the_client_from_a_handler_is_safe_and_ends_every_call_once)
{
	static const struct lgr_h2_call_handlers h = {res_message, NULL, free_client_on_close, NULL};
	struct lgr_h2_server *srv = serve(false, NULL);
	struct lgr_h2_client *cli = dial(lgr_h2_server_port(srv), false, NULL);
	struct lgr_h2_call *call[3];
	struct result r[3] = {0};

	for (int i = 0; i < 3; i++)
		cr_assert_eq(lgr_h2_client_call(cli, "/test.H2/Hold", &h, &r[i], &call[i]), LGR_OK);
	cr_assert(RUN_UNTIL(sv.opens == 3, 5000));
	lgr_h2_call_close_send(call[1]); /* Hold answers OK, the handler frees the client */
	cr_assert(RUN_UNTIL(r[1].closed, 5000));
	cr_assert_eq(r[1].status, LGR_GRPC_OK);
	cr_assert(r[0].closed && r[2].closed);
	cr_assert_eq(r[0].status, LGR_GRPC_CANCELLED);
	cr_assert(RUN_UNTIL(sv.closes == 3, 5000));
	lgr_h2_server_free(srv);
}

/* ---- keepalive and limits ------------------------------------------------------------------------------------- */

Test(h2, keepalive_pings_keep_a_healthy_connection_and_close_a_silent_one)
{
	struct lgr_h2_server *srv = serve(false, NULL);
	struct lgr_h2_client_config ccfg = {.keepalive_ms = 50, .keepalive_timeout_ms = 200};
	struct lgr_h2_client *cli = dial(lgr_h2_server_port(srv), false, &ccfg);
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t salen = sizeof(sa);
	int silent = socket(AF_INET, SOCK_STREAM, 0);

	cr_assert(RUN_UNTIL(states[LGR_H2_READY] == 1, 5000));
	run_for(500);
	cr_assert_eq(states[LGR_H2_TRANSIENT_FAILURE], 0, "%s", last_why);
	lgr_h2_client_free(cli);
	/* A listener that never accepts: TCP connects, nothing ever answers the pings. */
	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	cr_assert_eq(bind(silent, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(listen(silent, 4), 0);
	getsockname(silent, (struct sockaddr *)&sa, &salen);
	cli = dial(ntohs(sa.sin_port), false, &ccfg);
	cr_assert(RUN_UNTIL(states[LGR_H2_TRANSIENT_FAILURE] == 1, 5000));
	cr_assert_not_null(strstr(last_why, "keepalive"), "%s", last_why);
	lgr_h2_client_free(cli);
	close(silent);
	lgr_h2_server_free(srv);
}

Test(h2, connections_beyond_the_server_limit_are_refused_without_affecting_others)
{
	struct lgr_h2_server_config scfg = {.max_connections = 1};
	struct lgr_h2_server *srv = serve(true, &scfg);
	struct lgr_h2_client *a = dial(lgr_h2_server_port(srv), true, NULL);
	struct lgr_h2_client *b;
	struct result rb;

	cr_assert(RUN_UNTIL(lgr_h2_client_state(a) == LGR_H2_READY, 5000));
	b = dial(lgr_h2_server_port(srv), true, NULL);
	rb = call_once(b, "/test.H2/Collect", NULL, 0);
	cr_assert_eq(rb.status, LGR_GRPC_UNAVAILABLE);
	cr_assert_not_null(strstr(logs, "refused, 1 connections open"), "%s", logs);
	cr_assert_eq(call_once(a, "/test.H2/Collect", NULL, 0).status, LGR_GRPC_OK);
	lgr_h2_client_free(a);
	lgr_h2_client_free(b);
	lgr_h2_server_free(srv);
	free_ctx();
}

/* ---- TLS -----------------------------------------------------------------------------------------------------------
 */

Test(h2, a_client_without_a_certificate_cannot_make_calls)
{
	struct lgr_h2_server *srv = serve(true, NULL);
	SSL_CTX *nocert = SSL_CTX_new(TLS_client_method());
	struct lgr_h2_client_config ccfg = {.ssl_ctx = nocert};
	struct lgr_h2_client *cli;
	struct result r;

	SSL_CTX_load_verify_locations(nocert, pki_path("ca.crt"), NULL);
	SSL_CTX_set_alpn_protos(nocert, (const unsigned char *)"\x02h2", 3);
	cli = dial(lgr_h2_server_port(srv), true, &ccfg);
	r = call_once(cli, "/test.H2/Collect", NULL, 0);
	cr_assert_eq(r.status, LGR_GRPC_UNAVAILABLE);
	cr_assert_eq(sv.opens, 0);
	cr_assert(states[LGR_H2_TRANSIENT_FAILURE] >= 1);
	cr_assert_eq(states[LGR_H2_READY], 0, "TLS 1.3 lets the client finish first: READY waits for the server");
	cr_assert_not_null(strstr(logs, "certificate"), "the server says why: %s", logs);
	lgr_h2_client_free(cli);
	lgr_h2_server_free(srv);
	SSL_CTX_free(nocert);
	free_ctx();
}

Test(h2, the_client_refuses_a_server_whose_certificate_lacks_the_expected_name)
{
	struct lgr_h2_server *srv = serve(true, NULL); /* doppler's certificate */
	struct lgr_h2_client_config ccfg = {.server_name = "reverselogproxy"};
	struct lgr_h2_client *cli = dial(lgr_h2_server_port(srv), true, &ccfg);
	struct result r = call_once(cli, "/test.H2/Collect", NULL, 0);

	cr_assert_eq(r.status, LGR_GRPC_UNAVAILABLE);
	cr_assert_eq(states[LGR_H2_READY], 0);
	cr_assert_not_null(strstr(last_why, "certificate verify failed"), "%s", last_why);
	lgr_h2_client_free(cli);
	lgr_h2_server_free(srv);
	free_ctx();
}

Test(h2, a_plaintext_client_is_refused_by_a_tls_server)
{
	struct lgr_h2_server *srv = serve(true, NULL);
	struct lgr_h2_client *cli = dial(lgr_h2_server_port(srv), false, NULL);
	struct result r = call_once(cli, "/test.H2/Collect", NULL, 0);

	cr_assert_eq(r.status, LGR_GRPC_UNAVAILABLE);
	cr_assert_eq(sv.opens, 0);
	lgr_h2_client_free(cli);
	lgr_h2_server_free(srv);
	free_ctx();
}

Test(h2, a_host_name_is_resolved_without_blocking)
{
	struct lgr_h2_server *srv = serve(false, NULL);
	struct lgr_h2_client_config ccfg = {.host = "localhost", .backoff_min_ms = 20, .backoff_max_ms = 50};
	struct lgr_h2_client *cli = dial(lgr_h2_server_port(srv), false, &ccfg);

	/* Where localhost also resolves to ::1 an attempt may be refused; the client picks again after a backoff. */
	cr_assert(RUN_UNTIL(lgr_h2_client_state(cli) == LGR_H2_READY, 5000), "%s", last_why);
	cr_assert_eq(call_once(cli, "/test.H2/Collect", NULL, 0).status, LGR_GRPC_OK);
	lgr_h2_client_free(cli);
	lgr_h2_server_free(srv);
}

Test(h2, an_unresolvable_name_fails_the_attempt_and_its_calls)
{
	struct lgr_h2_client_config ccfg = {.host = "no-such-host.invalid", .backoff_min_ms = 5000};
	struct lgr_h2_client *cli = dial(8082, false, &ccfg);
	struct result r = call_once(cli, "/test.H2/Collect", NULL, 0);

	cr_assert_eq(r.status, LGR_GRPC_UNAVAILABLE);
	cr_assert_not_null(strstr(r.message, "resolve"), "%s", r.message);
	cr_assert_eq(states[LGR_H2_TRANSIENT_FAILURE], 1);
	lgr_h2_client_free(cli);
}

/* ---- server lifecycle and connection policing ------------------------------------------------------------------ */

static struct lgr_h2_server *victim;

static void free_server_on_message(struct lgr_h2_stream *s, const uint8_t *msg, size_t len, void *ud)
{
	sv.messages++;
	lgr_h2_server_free(victim);
	victim = NULL;
}

Test(h2, freeing_the_server_from_a_handler_is_safe_and_ends_every_stream_once)
{
	static const struct lgr_h2_handlers h = {hold_open, free_server_on_message, NULL, NULL, close_any};
	static const struct lgr_h2_route r[] = {{"/test.H2/Hold", &hold, NULL}, {"/test.H2/Free", &h, NULL}};
	struct lgr_h2_server_config scfg = {.routes = r, .nroutes = 2};
	struct lgr_h2_client *cli;
	struct lgr_h2_call *call[3];
	struct result res[3] = {0};

	victim = serve(true, &scfg);
	cli = dial(lgr_h2_server_port(victim), true, NULL);
	for (int i = 0; i < 2; i++)
		cr_assert_eq(lgr_h2_client_call(cli, "/test.H2/Hold", &result_handlers, &res[i], &call[i]), LGR_OK);
	cr_assert(RUN_UNTIL(sv.opens == 2, 5000));
	cr_assert_eq(lgr_h2_client_call(cli, "/test.H2/Free", &result_handlers, &res[2], &call[2]), LGR_OK);
	lgr_h2_call_send(call[2], (const uint8_t *)"x", 1);
	lgr_h2_call_send(call[2], (const uint8_t *)"y", 1); /* delivered in the same read: must not reach a handler */
	cr_assert(RUN_UNTIL(victim == NULL, 5000));
	cr_assert_eq(sv.messages, 1);
	cr_assert_eq(sv.closes, 3);
	cr_assert_eq(sv.resets, 3);
	cr_assert(RUN_UNTIL(res[0].closed && res[1].closed && res[2].closed, 5000));
	for (int i = 0; i < 3; i++)
		cr_assert_eq(res[i].status, LGR_GRPC_UNAVAILABLE);
	lgr_h2_client_free(cli);
	free_ctx();
}

static int permitted_open(struct lgr_h2_stream *s, void *ud)
{
	const char *const *names = ud;

	sv.opens++;
	return lgr_tls_peer_permitted(lgr_h2_stream_ssl(s), names) ? LGR_GRPC_OK : LGR_GRPC_PERMISSION_DENIED;
}

Test(h2, the_client_certificate_is_available_to_on_open_for_a_permitted_peers_check)
{
	static const char *const only_metron[] = {"metron", NULL};
	static const char *const client_too[] = {"metron", "client", NULL};
	static const struct lgr_h2_handlers h = {permitted_open, NULL, collect_half_close, NULL, close_any};
	static const struct lgr_h2_route r[] = {
		{"/test.H2/Metron", &h, (void *)only_metron}, {"/test.H2/Client", &h, (void *)client_too}};
	struct lgr_h2_server_config scfg = {.routes = r, .nroutes = 2};
	struct lgr_h2_server *srv = serve(true, &scfg);
	struct lgr_h2_client *cli = dial(lgr_h2_server_port(srv), true, NULL);

	cr_assert_eq(call_once(cli, "/test.H2/Metron", NULL, 0).status, LGR_GRPC_PERMISSION_DENIED);
	cr_assert_eq(call_once(cli, "/test.H2/Client", NULL, 0).status, LGR_GRPC_OK);
	cr_assert_eq(sv.opens, 2);
	lgr_h2_client_free(cli);
	lgr_h2_server_free(srv);
	free_ctx();
}

static int connect_raw(uint16_t port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

Test(h2, a_connection_that_never_completes_its_handshake_is_closed_at_the_deadline)
{
	struct lgr_h2_server_config scfg = {.handshake_ms = 200};
	struct lgr_h2_server *srv = serve(true, &scfg);
	int fd = connect_raw(lgr_h2_server_port(srv)); /* says nothing */
	char byte;

	cr_assert(RUN_UNTIL(lgr_h2_server_connections(srv) == 1, 5000));
	run_for(100);
	cr_assert_eq(lgr_h2_server_connections(srv), 1);
	cr_assert(RUN_UNTIL(lgr_h2_server_connections(srv) == 0, 5000));
	cr_assert_eq(read(fd, &byte, 1), 0, "the server closed the socket");
	cr_assert_not_null(strstr(logs, "no HTTP/2 connection within 200 ms"), "%s", logs);
	close(fd);
	lgr_h2_server_free(srv);
	free_ctx();
}

Test(h2, server_keepalive_closes_a_client_that_stopped_answering)
{
	static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
	static const uint8_t empty_settings[] = {0, 0, 0, 4, 0, 0, 0, 0, 0};
	struct lgr_h2_server_config scfg = {.keepalive_ms = 100, .keepalive_timeout_ms = 200};
	struct lgr_h2_server *srv = serve(false, &scfg);
	struct lgr_h2_client *cli = dial(lgr_h2_server_port(srv), false, NULL);
	int fd;

	/* Our client answers the pings: its connection stays. */
	cr_assert(RUN_UNTIL(lgr_h2_client_state(cli) == LGR_H2_READY, 5000));
	run_for(600);
	cr_assert_eq(lgr_h2_server_connections(srv), 1);
	/* A raw client says hello once and never reads again. */
	fd = connect_raw(lgr_h2_server_port(srv));
	cr_assert_eq(write(fd, preface, sizeof(preface) - 1), (ssize_t)(sizeof(preface) - 1));
	cr_assert_eq(write(fd, empty_settings, sizeof(empty_settings)), (ssize_t)sizeof(empty_settings));
	cr_assert(RUN_UNTIL(lgr_h2_server_connections(srv) == 2, 5000));
	cr_assert(RUN_UNTIL(lgr_h2_server_connections(srv) == 1, 5000), "%s", logs);
	cr_assert_not_null(strstr(logs, "keepalive ping unanswered"), "%s", logs);
	cr_assert_eq(lgr_h2_client_state(cli), LGR_H2_READY);
	close(fd);
	lgr_h2_client_free(cli);
	lgr_h2_server_free(srv);
}
