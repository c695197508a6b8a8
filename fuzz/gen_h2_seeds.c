/*
 * gen_h2_seeds.c: writes the seed corpus of fuzz_h2server (fuzz/corpus/h2server/). Each seed is what a gRPC
 * client sends on one h2c connection, produced by nghttp2's client session (preface, SETTINGS, HPACK-encoded
 * request HEADERS, DATA with gRPC-framed envelopes encoded by lgr_env / lgr_v1), behind the byte the target reads
 * first (the seed of its write sizes, and whether the server is freed before the client closes). Not built by the
 * Makefile; see fuzz/corpus/h2server/README for how to build and run it by hand.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nghttp2/nghttp2.h>

#include "lgr_env.h"
#include "lgr_grpc.h"
#include "lgr_pb.h"
#include "lgr_v1.h"

#define OUT_MAX	 (256u * 1024)
#define BODY_MAX (64u * 1024)

#define SENDER	"/loggregator.v2.Ingress/Sender"
#define BATCH	"/loggregator.v2.Ingress/BatchSender"
#define SEND	"/loggregator.v2.Ingress/Send"
#define PUSHER	"/plumbing.DopplerIngestor/Pusher"
#define FLOOD	"/lgr.fuzz.Flood/Flood"
#define GRPC_CT "application/grpc"

/* One connection being written: the client session and the bytes it sent. */
struct gen {
	nghttp2_session *ng;
	uint8_t out[OUT_MAX];
	size_t len;
};

/* A request body: gRPC-framed messages, sent with or without END_STREAM at its end. */
struct body {
	uint8_t data[BODY_MAX];
	size_t len, sent;
	bool open; /* no END_STREAM: the stream stays open for what follows */
};

/* The payloads, encoded once. */
static const uint8_t *env_log, *env_counter, *env_gauge;
static size_t env_log_len, env_counter_len, env_gauge_len;
static uint8_t *batch, *push, *big;
static size_t batch_len, push_len, big_len;

static void die(const char *what)
{
	fprintf(stderr, "gen_h2_seeds: %s\n", what);
	exit(1);
}

static ssize_t on_send(nghttp2_session *ng, const uint8_t *data, size_t len, int flags, void *ud)
{
	struct gen *g = ud;

	if (len > sizeof(g->out) - g->len)
		die("connection too long");
	memcpy(g->out + g->len, data, len);
	g->len += len;
	return (ssize_t)len;
}

static ssize_t body_read(
	nghttp2_session *ng, int32_t id, uint8_t *buf, size_t len, uint32_t *flags, nghttp2_data_source *src, void *ud)
{
	struct body *b = src->ptr;
	size_t n = b->len - b->sent < len ? b->len - b->sent : len;

	memcpy(buf, b->data + b->sent, n);
	b->sent += n;
	if (b->sent == b->len)
		*flags |= NGHTTP2_DATA_FLAG_EOF | (b->open ? NGHTTP2_DATA_FLAG_NO_END_STREAM : 0);
	return (ssize_t)n;
}

/* A new connection: the preface and a SETTINGS frame, with the client's receive window per stream. */
static void start(struct gen *g, uint32_t window)
{
	nghttp2_session_callbacks *cbs;
	nghttp2_settings_entry iv[] = {
		{NGHTTP2_SETTINGS_ENABLE_PUSH, 0}, {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, window}};

	g->len = 0;
	if (nghttp2_session_callbacks_new(&cbs) != 0)
		die("out of memory");
	nghttp2_session_callbacks_set_send_callback(cbs, on_send);
	if (nghttp2_session_client_new(&g->ng, cbs, g) != 0 || nghttp2_submit_settings(g->ng, 0, iv, 2) != 0)
		die("cannot start a client session");
	nghttp2_session_callbacks_del(cbs);
}

static void flush(struct gen *g)
{
	if (nghttp2_session_send(g->ng) != 0)
		die("nghttp2_session_send failed");
}

/* Appends one message with its gRPC prefix. */
static void message(struct body *b, const uint8_t *msg, size_t len)
{
	if (len + LGR_GRPC_PREFIX > sizeof(b->data) - b->len)
		die("body too long");
	lgr_grpc_prefix(b->data + b->len, len);
	memcpy(b->data + b->len + LGR_GRPC_PREFIX, msg, len);
	b->len += LGR_GRPC_PREFIX + len;
}

/* Appends bytes as they are (a hand-made prefix). */
static void raw(struct body *b, const void *bytes, size_t len)
{
	if (len > sizeof(b->data) - b->len)
		die("body too long");
	memcpy(b->data + b->len, bytes, len);
	b->len += len;
}

/* Submits a request; b NULL: HEADERS alone, with END_STREAM. Returns the stream id. */
static int32_t request(struct gen *g, const char *method, const char *path, const char *ctype, struct body *b)
{
	const char *hdr[][2] = {{":method", method}, {":scheme", "http"}, {":path", path}, {":authority", "localhost"},
		{"content-type", ctype}, {"te", "trailers"}, {"user-agent", "grpc-go/1.56.3"}};
	nghttp2_nv nv[7];
	nghttp2_data_provider dp = {.source.ptr = b, .read_callback = body_read};
	int32_t id;

	for (size_t i = 0; i < 7; i++)
		nv[i] = (nghttp2_nv){(uint8_t *)hdr[i][0], (uint8_t *)hdr[i][1], strlen(hdr[i][0]), strlen(hdr[i][1]),
			NGHTTP2_NV_FLAG_NONE};
	id = nghttp2_submit_request(g->ng, NULL, nv, 7, b != NULL ? &dp : NULL, b);
	if (id < 0)
		die("cannot submit a request");
	return id;
}

/* One request with one message on its own connection. */
static void single(struct gen *g, const char *path, const uint8_t *msg, size_t len)
{
	static struct body b;

	memset(&b, 0, sizeof(b));
	message(&b, msg, len);
	start(g, 65535);
	request(g, "POST", path, GRPC_CT, &b);
	flush(g);
}

static void write_seed(const char *dir, const char *name, uint8_t seed, const struct gen *g, size_t cut)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "wb");
	if (f == NULL || fwrite(&seed, 1, 1, f) != 1 || fwrite(g->out, 1, g->len - cut, f) != g->len - cut ||
		fclose(f) != 0)
		die(path);
	printf("%s: %zu bytes\n", name, g->len - cut + 1);
}

static void done(struct gen *g)
{
	nghttp2_session_del(g->ng);
	g->ng = NULL;
}

/* lgr_v1_from_v2's sink: the first v1 envelope, encoded and wrapped in EnvelopeData { bytes payload = 1; }. */
static int wrap_v1(Events__Envelope *v1, void *ud)
{
	uint8_t *wire = NULL;
	size_t len = 0;

	if (push == NULL && lgr_v1_encode(v1, &wire, &len) == LGR_OK) {
		push = malloc(1 + LGR_PB_VARINT_MAX + len);
		if (push != NULL) {
			push[0] = 0x0a; /* field 1, length-delimited */
			push_len = 1 + lgr_pb_varint_put(push + 1, len);
			memcpy(push + push_len, wire, len);
			push_len += len;
		}
	}
	free(wire);
	lgr_v1_free(v1);
	return 0;
}

static void payloads(void)
{
	static char text[40000];
	struct lgr_env *e[3] = {lgr_env_new(), lgr_env_new(), lgr_env_new()};
	struct lgr_env *large = lgr_env_new();

	if (e[0] == NULL || e[1] == NULL || e[2] == NULL || large == NULL)
		die("out of memory");
	for (int i = 0; i < 3; i++) {
		lgr_env_set_source_id(e[i], "7b1f2e0c-0000-4000-8000-000000000001");
		lgr_env_set_instance_id(e[i], "0");
		lgr_env_set_tag(e[i], "deployment", "cf");
		lgr_env_set_tag(e[i], "origin", "rep");
	}
	lgr_env_set_log(e[0], "hello from the app", 18, LOGGREGATOR__V2__LOG__TYPE__OUT);
	lgr_env_set_counter(e[1], "requests", 1, 42);
	lgr_env_set_gauge(e[2]);
	lgr_env_add_metric(e[2], "cpu", "percentage", 12.5);
	lgr_env_add_metric(e[2], "memory", "bytes", 1048576);
	memset(text, 'x', sizeof(text));
	lgr_env_set_log(large, text, sizeof(text), LOGGREGATOR__V2__LOG__TYPE__ERR);
	if (lgr_env_encode(e[0], &env_log, &env_log_len) != LGR_OK ||
		lgr_env_encode(e[1], &env_counter, &env_counter_len) != LGR_OK ||
		lgr_env_encode(e[2], &env_gauge, &env_gauge_len) != LGR_OK ||
		lgr_env_encode_batch(e, 3, &batch, &batch_len) != LGR_OK ||
		lgr_env_encode_batch(&large, 1, &big, &big_len) != LGR_OK ||
		lgr_v1_from_v2(e[0], wrap_v1, NULL) != LGR_OK || push == NULL)
		die("cannot encode the envelopes");
	/* The encodings stay referenced by the envelopes, which live as long as the program. */
}

/* Valid calls, one route each: every message decodes, the client half-closes, the server answers OK. */
static void valid_calls(const char *dir, struct gen *g)
{
	static struct body b[3];

	memset(b, 0, sizeof(b));
	message(&b[0], env_log, env_log_len);
	message(&b[0], env_counter, env_counter_len);
	message(&b[0], env_gauge, env_gauge_len);
	start(g, 65535);
	request(g, "POST", SENDER, GRPC_CT, &b[0]);
	flush(g);
	write_seed(dir, "sender-three-envelopes", 0, g, 0);
	/* the same bytes cut into writes of 1..8 bytes, and cut short inside the last DATA frame */
	write_seed(dir, "sender-byte-by-byte", 3, g, 0);
	write_seed(dir, "truncated-frame", 0, g, 7);
	done(g);

	message(&b[1], batch, batch_len);
	message(&b[1], batch, batch_len);
	start(g, 65535);
	request(g, "POST", BATCH, GRPC_CT, &b[1]);
	flush(g);
	write_seed(dir, "batch-sender-two-batches", 9, g, 0);
	done(g);

	single(g, SEND, batch, batch_len);
	write_seed(dir, "send-one-batch", 0, g, 0);
	done(g);

	message(&b[2], push, push_len);
	message(&b[2], push, push_len);
	start(g, 65535);
	request(g, "POST", PUSHER, GRPC_CT, &b[2]);
	flush(g);
	write_seed(dir, "pusher-two-envelopes", 0, g, 0);
	done(g);

	/* a 40 kB envelope in DATA frames of 16 kB */
	single(g, BATCH, big, big_len);
	write_seed(dir, "batch-sender-split-message", 12, g, 0);
	done(g);
}

/* Every route on one connection, the streams' frames interleaved by nghttp2. */
static void all_routes(const char *dir, struct gen *g)
{
	static struct body b[5];

	memset(b, 0, sizeof(b));
	message(&b[0], env_log, env_log_len);
	message(&b[1], batch, batch_len);
	message(&b[2], batch, batch_len);
	message(&b[3], push, push_len);
	message(&b[4], env_counter, env_counter_len);
	start(g, 65535);
	request(g, "POST", SENDER, GRPC_CT, &b[0]);
	request(g, "POST", BATCH, GRPC_CT, &b[1]);
	request(g, "POST", SEND, GRPC_CT, &b[2]);
	request(g, "POST", PUSHER, GRPC_CT, &b[3]);
	request(g, "POST", FLOOD, GRPC_CT, &b[4]);
	flush(g);
	write_seed(dir, "all-routes-one-connection", 0, g, 0);
	done(g);
}

/* Requests the server must refuse, and messages the handlers must refuse. */
static void refused(const char *dir, struct gen *g)
{
	static const uint8_t garbage[] = {0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01};
	static const uint8_t push_varint[] = {0x08, 0x01}; /* EnvelopeData field 1 as a varint */
	static const uint8_t oversized[] = {0x00, 0x7f, 0xff, 0xff, 0xff, 0x0a, 0x00};
	static const uint8_t compressed[] = {0x01, 0x00, 0x00, 0x00, 0x02, 0x0a, 0x00};
	static const uint8_t short_msg[] = {0x00, 0x00, 0x00, 0x00, 0x64, 0x0a, 0x00, 0x12};
	static struct body b;
	char long_path[300];

	single(g, SENDER, garbage, sizeof(garbage));
	write_seed(dir, "sender-invalid-envelope", 0, g, 0);
	done(g);
	single(g, PUSHER, push_varint, sizeof(push_varint));
	write_seed(dir, "pusher-payload-not-bytes", 0, g, 0);
	done(g);
	single(g, SEND, garbage, sizeof(garbage));
	write_seed(dir, "send-invalid-batch", 0, g, 0);
	done(g);

	start(g, 65535);
	request(g, "POST", SENDER, "text/plain", NULL);
	flush(g);
	write_seed(dir, "wrong-content-type", 0, g, 0);
	done(g);
	start(g, 65535);
	request(g, "GET", SENDER, GRPC_CT, NULL);
	flush(g);
	write_seed(dir, "get-method", 0, g, 0);
	done(g);
	single(g, "/loggregator.v2.Ingress/Unknown", env_log, env_log_len);
	write_seed(dir, "unknown-path", 0, g, 0);
	done(g);
	memset(long_path, 'a', sizeof(long_path) - 1);
	long_path[0] = '/';
	long_path[sizeof(long_path) - 1] = '\0';
	start(g, 65535);
	request(g, "POST", long_path, GRPC_CT, NULL);
	flush(g);
	write_seed(dir, "path-too-long", 0, g, 0);
	done(g);

	const struct {
		const char *name;
		const uint8_t *bytes;
		size_t len;
	} framing[] = {
		{"oversized-length-prefix", oversized, sizeof(oversized)},
		{"compressed-flag", compressed, sizeof(compressed)},
		{"stream-ends-inside-message", short_msg, sizeof(short_msg)},
	};
	for (size_t i = 0; i < sizeof(framing) / sizeof(framing[0]); i++) {
		memset(&b, 0, sizeof(b));
		raw(&b, framing[i].bytes, framing[i].len);
		start(g, 65535);
		request(g, "POST", SENDER, GRPC_CT, &b);
		flush(g);
		write_seed(dir, framing[i].name, 0, g, 0);
		done(g);
	}
}

/* Control frames: RST_STREAM, PING, WINDOW_UPDATE, GOAWAY, and more streams than the server allows. */
static void control(const char *dir, struct gen *g)
{
	static struct body b[20];
	int32_t id;

	memset(b, 0, sizeof(b));
	b[0].open = true;
	message(&b[0], env_log, env_log_len);
	start(g, 65535);
	id = request(g, "POST", SENDER, GRPC_CT, &b[0]);
	flush(g);
	nghttp2_submit_rst_stream(g->ng, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
	flush(g);
	write_seed(dir, "rst-stream-after-message", 0, g, 0);
	done(g);

	start(g, 65535);
	nghttp2_submit_ping(g->ng, NGHTTP2_FLAG_NONE, (const uint8_t *)"lgr-ping");
	nghttp2_submit_ping(g->ng, NGHTTP2_FLAG_NONE, NULL);
	flush(g);
	write_seed(dir, "ping", 0, g, 0);
	done(g);

	/*
	 * The flood route answers 43 kB into a 16-byte window: its 32 kB queue fills, the window updates drain it and
	 * on_drain refills it; the stream stays open (a half close first would finish it without a drain notice).
	 */
	message(&b[1], batch, batch_len);
	b[1].open = true;
	start(g, 16);
	id = request(g, "POST", FLOOD, GRPC_CT, &b[1]);
	flush(g);
	for (int i = 0; i < 4; i++) {
		nghttp2_submit_window_update(g->ng, NGHTTP2_FLAG_NONE, id, 1024);
		nghttp2_submit_window_update(g->ng, NGHTTP2_FLAG_NONE, 0, 1024);
	}
	nghttp2_submit_window_update(g->ng, NGHTTP2_FLAG_NONE, id, 65536);
	flush(g);
	write_seed(dir, "flood-window-update", 0, g, 0);
	write_seed(dir, "flood-window-update-chunked", 11, g, 0);
	write_seed(dir, "free-server-flood-queued", 0x80, g, 0); /* top bit: the server is freed first */
	done(g);

	/* Ten flooding streams and wide windows: 320 kB of answers pass the connection's 256 kB output bound. */
	start(g, 1u << 20);
	nghttp2_submit_window_update(g->ng, NGHTTP2_FLAG_NONE, 0, 8u << 20);
	for (int i = 10; i < 20; i++) {
		b[i].open = true;
		message(&b[i], batch, batch_len);
		request(g, "POST", FLOOD, GRPC_CT, &b[i]);
	}
	flush(g);
	write_seed(dir, "flood-past-output-bound", 0, g, 0);
	write_seed(dir, "free-server-flood-output-bound", 0x80, g, 0);
	done(g);
	memset(b, 0, sizeof(b));

	/* GOAWAY from the client between two messages of an open stream, which then ends normally */
	b[2].open = true;
	message(&b[2], env_log, env_log_len);
	message(&b[3], env_counter, env_counter_len);
	start(g, 65535);
	id = request(g, "POST", SENDER, GRPC_CT, &b[2]);
	flush(g);
	nghttp2_submit_goaway(g->ng, NGHTTP2_FLAG_NONE, 0, NGHTTP2_NO_ERROR, (const uint8_t *)"bye", 3);
	if (nghttp2_submit_data(g->ng, NGHTTP2_FLAG_END_STREAM, id,
		    &(nghttp2_data_provider){.source.ptr = &b[3], .read_callback = body_read}) != 0)
		die("cannot submit DATA");
	flush(g);
	write_seed(dir, "goaway", 0, g, 0);
	done(g);

	/* 18 open streams against a limit of 16: the last ones are refused */
	start(g, 65535);
	for (int i = 4; i < 20; i++) {
		b[i].open = true;
		message(&b[i], env_counter, env_counter_len);
		request(g, "POST", SENDER, GRPC_CT, &b[i]);
	}
	request(g, "POST", SENDER, GRPC_CT, NULL);
	request(g, "POST", SENDER, GRPC_CT, NULL);
	flush(g);
	write_seed(dir, "too-many-streams", 0, g, 0);
	write_seed(dir, "free-server-open-streams", 0x85, g, 0);
	done(g);
}

int main(int argc, char **argv)
{
	static struct gen g;
	static const char http1[] = "POST /loggregator.v2.Ingress/Sender HTTP/1.1\r\nHost: localhost\r\n\r\n";

	if (argc != 2)
		die("usage: gen_h2_seeds DIR");
	payloads();
	valid_calls(argv[1], &g);
	all_routes(argv[1], &g);
	refused(argv[1], &g);
	control(argv[1], &g);
	/* the preface and SETTINGS alone in writes of one or two bytes; then an HTTP/1.1 request instead of a preface
	 */
	start(&g, 65535);
	flush(&g);
	write_seed(argv[1], "preface-settings", 1, &g, 0);
	done(&g);
	memcpy(g.out, http1, sizeof(http1) - 1);
	g.len = sizeof(http1) - 1;
	write_seed(argv[1], "http1-request", 0, &g, 0);
	return 0;
}
