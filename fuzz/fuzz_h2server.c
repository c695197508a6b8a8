/*
 * fuzz_h2server.c: the server session of lgr_h2 (HTTP/2 framing through nghttp2, request checks, routing, gRPC
 * message reassembly, send queues and flow control, stream and connection teardown) fed the bytes of one client
 * connection.
 *
 * Each input is one connection to an h2c server routed like imloggregator (v2 Ingress Sender, BatchSender and
 * Send; v1 DopplerIngestor Pusher), plus a flood route that answers with many copies of each message, for the
 * response path (send queues, flow control, the connection's output bound) as a slow subscriber meets it. The server
 * adopts one end of a socketpair; the low 7 bits of the input's first byte seed how the rest is cut into writes to
 * the other end, and after each write the loop runs without blocking until nothing moves, while what the server
 * answers is read and thrown away. Then the client end is closed, the loop runs until the connection is gone, and
 * the server and the loop are freed; with the first byte's top bit set the server is freed first instead, with the
 * connection and its streams still up (the daemon's shutdown). Timers (handshake deadline, keepalive) are never
 * waited for: they go with the connection.
 *
 * Beyond crashes and sanitizer reports: every accepted call gets a record in on_open that only on_close frees and
 * every other handler touches, so a missing on_close is a leak, a second one a double free and a handler after it a
 * use after free; a connection that outlives its closed client, or a loop that never settles, aborts.
 */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "lgr.h"
#include "lgr_env.h"
#include "lgr_h2.h"
#include "lgr_pb.h"
#include "lgr_v1.h"

#define MAX_MESSAGE    65536  /* the server's limit on a request message: reachable by small inputs */
#define MAX_SEND_QUEUE 32768  /* per stream: 9 flooding streams pass the connection's 256 kB output bound */
#define FLOOD_COPIES   128    /* copies of one message the flood route queues at most */
#define FLOOD_REFILLS  4      /* drain notices the flood route answers per call */
#define MAX_STREAMS    16     /* concurrent streams: the fuzzer meets REFUSED_STREAM */
#define MAX_ROUNDS     100000 /* loop turns one settle may take before the server counts as spinning */
#define CHUNK_SEED     0x7f   /* bits of the first byte seeding the write sizes; none set: all at once */
#define FREE_FIRST     0x80   /* bit of the first byte: free the server before the client closes */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct lgr_limits limits = {
	.max_message = MAX_MESSAGE,
	.max_tags = 64,
	.max_metrics = 64,
	.max_batch = 64,
	.max_depth = 8,
};

/* What on_open hands to each accepted call: freed by on_close only, touched by the other handlers. */
struct call {
	size_t events;
	unsigned refills;
};

static void count(struct lgr_h2_stream *s)
{
	struct call *call = lgr_h2_stream_data(s);

	call->events++;
}

static int on_open(struct lgr_h2_stream *s, void *ud)
{
	struct call *call = calloc(1, sizeof(*call));

	if (call == NULL)
		return LGR_GRPC_RESOURCE_EXHAUSTED;
	lgr_h2_stream_set_data(s, call);
	return LGR_GRPC_OK;
}

static void on_close(struct lgr_h2_stream *s, bool reset, void *ud)
{
	free(lgr_h2_stream_data(s)); /* left dangling on purpose: see the file header */
}

/* The client is done: one empty response message (IngressResponse, PushResponse, ...) and OK, as the real ones. */
static void on_half_close(struct lgr_h2_stream *s, void *ud)
{
	count(s);
	lgr_h2_stream_send(s, NULL, 0);
	lgr_h2_stream_finish(s, LGR_GRPC_OK, NULL);
}

static void refuse(struct lgr_h2_stream *s, int rc)
{
	lgr_h2_stream_finish(s, LGR_GRPC_INVALID_ARGUMENT, lgr_strerror(rc));
}

/* /loggregator.v2.Ingress/Sender: a stream of Envelope. */
static void on_envelope(struct lgr_h2_stream *s, const uint8_t *msg, size_t len, void *ud)
{
	struct lgr_env *env = NULL;
	int rc = lgr_env_decode(msg, len, &limits, &env);

	count(s);
	if (rc != LGR_OK)
		refuse(s, rc);
	lgr_env_unref(env);
}

static int drop(struct lgr_env *env, void *ud)
{
	lgr_env_unref(env);
	return 0;
}

/* /loggregator.v2.Ingress/BatchSender (a stream of EnvelopeBatch) and /Send (one EnvelopeBatch). */
static void on_batch(struct lgr_h2_stream *s, const uint8_t *msg, size_t len, void *ud)
{
	int rc = lgr_env_decode_batch(msg, len, &limits, drop, NULL);

	count(s);
	if (rc != LGR_OK)
		refuse(s, rc);
}

/* /plumbing.DopplerIngestor/Pusher: EnvelopeData { bytes payload = 1; } around a v1 Envelope; the last wins. */
static void on_push(struct lgr_h2_stream *s, const uint8_t *msg, size_t len, void *ud)
{
	const uint8_t *payload = NULL;
	size_t pos = 0, plen = 0;
	Events__Envelope *v1 = NULL;
	int rc = LGR_OK;

	count(s);
	while (pos < len && rc == LGR_OK) {
		struct lgr_pb_field f;

		rc = lgr_pb_field_next(msg, len, &pos, &f);
		if (rc == LGR_OK && f.number == 1 && f.wire != LGR_PB_LEN)
			rc = LGR_EDECODE;
		if (rc == LGR_OK && f.number == 1) {
			payload = f.data;
			plen = f.len;
		}
	}
	if (rc == LGR_OK)
		rc = lgr_v1_decode(payload, plen, &limits, &v1);
	if (rc != LGR_OK)
		refuse(s, rc);
	lgr_v1_free(v1);
}

/* Queues msg until the queue refuses it (which owes a drain notice) or FLOOD_COPIES copies are in. */
static void flood(struct lgr_h2_stream *s, const uint8_t *msg, size_t len)
{
	for (unsigned i = 0; i < FLOOD_COPIES && lgr_h2_stream_send(s, msg, len) == LGR_OK; i++)
		;
}

/* /lgr.fuzz.Flood/Flood: copies of every message back; each drain notice refills the queue, a few times a call. */
static void on_flood(struct lgr_h2_stream *s, const uint8_t *msg, size_t len, void *ud)
{
	count(s);
	flood(s, msg, len);
}

static void on_drain(struct lgr_h2_stream *s, void *ud)
{
	static const uint8_t filler[256] = {0x0a, 0xfe, 0x01};
	struct call *call = lgr_h2_stream_data(s);

	count(s);
	if (call->refills++ < FLOOD_REFILLS)
		flood(s, filler, sizeof(filler));
}

static const struct lgr_h2_handlers envelope_handlers = {
	.on_open = on_open,
	.on_message = on_envelope,
	.on_half_close = on_half_close,
	.on_close = on_close,
};
static const struct lgr_h2_handlers batch_handlers = {
	.on_open = on_open,
	.on_message = on_batch,
	.on_half_close = on_half_close,
	.on_close = on_close,
};
static const struct lgr_h2_handlers push_handlers = {
	.on_open = on_open,
	.on_message = on_push,
	.on_half_close = on_half_close,
	.on_close = on_close,
};
static const struct lgr_h2_handlers flood_handlers = {
	.on_open = on_open,
	.on_message = on_flood,
	.on_half_close = on_half_close,
	.on_drain = on_drain,
	.on_close = on_close,
};

static const struct lgr_h2_route routes[] = {
	{"/loggregator.v2.Ingress/Sender", &envelope_handlers, NULL},
	{"/loggregator.v2.Ingress/BatchSender", &batch_handlers, NULL},
	{"/loggregator.v2.Ingress/Send", &batch_handlers, NULL},
	{"/plumbing.DopplerIngestor/Pusher", &push_handlers, NULL},
	{"/lgr.fuzz.Flood/Flood", &flood_handlers, NULL},
};

/* ---- the client end ---------------------------------------------------------------------------------------- */

/* Reads and discards whatever the server wrote; returns the bytes read. */
static size_t discard(int fd)
{
	static uint8_t sink[65536];
	size_t total = 0;
	ssize_t n;

	while ((n = recv(fd, sink, sizeof(sink), 0)) > 0)
		total += (size_t)n;
	return total;
}

/*
 * Whether bytes written to fd still wait for the server to read them (Linux: TIOCOUTQ, alias SIOCOUTQ, of a Unix
 * socket stays non-zero while its peer has anything unread).
 */
static bool unread(int fd)
{
	int n = 0;

	return ioctl(fd, TIOCOUTQ, &n) == 0 && n > 0;
}

/*
 * Runs the loop without blocking until it settles: no event pending activation, no input the server has not read,
 * nothing new from the server. Returns whether anything moved.
 */
static bool settle(struct event_base *base, int fd)
{
	bool moved = false;

	for (unsigned round = 0;; round++) {
		if (round == MAX_ROUNDS)
			abort(); /* the server keeps itself busy without any input */
		event_base_loop(base, EVLOOP_NONBLOCK);
		if (discard(fd) == 0 && event_base_get_num_events(base, EVENT_BASE_COUNT_ACTIVE) == 0 && !unread(fd))
			return moved;
		moved = true;
	}
}

/* The size of the next write: 1 up to 4096 bytes, spread by the seed; seed 0: everything at once. */
static size_t next_chunk(unsigned seed, uint32_t *rng)
{
	*rng = *rng * 1103515245u + 12345u;
	if (seed == 0)
		return SIZE_MAX;
	return 1 + (*rng >> 8) % (1u << (seed % 13));
}

static void feed(struct event_base *base, int fd, const uint8_t *data, size_t size, unsigned seed)
{
	uint32_t rng = seed;
	size_t off = 0;

	while (off < size) {
		size_t n = next_chunk(seed, &rng);
		ssize_t w;

		if (n > size - off)
			n = size - off;
		w = send(fd, data + off, n, MSG_NOSIGNAL);
		if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			break; /* the server closed the connection */
		if (w > 0)
			off += (size_t)w;
		if (!settle(base, fd) && w <= 0)
			break; /* the socket is full and the server takes nothing: cannot happen while it reads */
	}
	settle(base, fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool once;
	struct lgr_h2_server_config cfg = {
		.address = "127.0.0.1",
		.routes = routes,
		.nroutes = sizeof(routes) / sizeof(routes[0]),
		.max_message = MAX_MESSAGE,
		.max_streams = MAX_STREAMS,
		.max_connections = 1,
		.max_send_queue = MAX_SEND_QUEUE,
		.name = "fuzz",
	};
	struct event_base *base = NULL;
	struct lgr_h2_server *srv = NULL;
	int sv[2];

	if (!once) {
		/* As rsyslogd: a write to a vanished peer is an error to handle, not a signal. */
		signal(SIGPIPE, SIG_IGN);
		once = true;
	}
	if (size == 0)
		return 0;
	base = event_base_new();
	if (base == NULL || lgr_h2_server_new(base, &cfg, &srv) != LGR_OK ||
		socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0) {
		/* Not a finding, but a run that tests nothing must not pass for one that found nothing. */
		fprintf(stderr, "fuzz_h2server: cannot set up the server or the socket pair\n");
		abort();
	}
	/* sv[0] is the server's from here on, whatever the result */
	if (lgr_h2_server_adopt(srv, sv[0], "fuzz-client") != LGR_OK)
		abort();
	feed(base, sv[1], data + 1, size - 1, data[0] & CHUNK_SEED);
	if (data[0] & FREE_FIRST) {
		lgr_h2_server_free(srv);
		srv = NULL;
	}
	close(sv[1]);
	for (unsigned round = 0; srv != NULL && lgr_h2_server_connections(srv) > 0; round++) {
		if (round == MAX_ROUNDS)
			abort(); /* the connection outlives its client */
		event_base_loop(base, EVLOOP_NONBLOCK);
	}
	lgr_h2_server_free(srv);
	event_base_free(base);
	return 0;
}
