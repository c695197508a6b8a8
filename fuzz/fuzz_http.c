/*
 * fuzz_http.c: the lgr_http server (protocol choice by the HTTP/2 preface, HTTP/1.1 parsing with libhttp-parser,
 * request limits and refusals, keep-alive and pipelining, whole and streaming responses with bounded queues, HTTP/2
 * on nghttp2, connection teardown) fed the bytes of one cleartext client connection.
 *
 * The server is routed like the gateway: /v2/read opens a streaming response (server-sent events) that ends after a
 * few events, or stays open with "hold" in the query; /api/v1/read/... answers one JSON document; /flood streams
 * until the queue refuses and refills on a few drain notices; /later is never answered; anything else is 404 (405
 * for a method other than GET or HEAD). Limits are small, so that short inputs reach them. As fuzz_h2server.c: the
 * server adopts one end of a socketpair; the low 7 bits of the first byte seed how the rest is cut into writes, and
 * after each write the loop runs without blocking until nothing moves, while the answers are read and thrown away.
 * Then the client end closes and the loop runs until the connection is gone; with the first byte's top bit set the
 * server is freed first instead, with its connection and exchanges still up.
 *
 * Beyond crashes and sanitizer reports: every exchange gets a record in on_request that only on_close frees and
 * every other handler touches, so a missing on_close is a leak, a second one a double free and a handler after it a
 * use after free; a connection that outlives its closed client, or a loop that never settles, aborts.
 */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "lgr.h"
#include "lgr_http.h"

#define MAX_HEADER     1024   /* request line and fields */
#define MAX_BODY       64     /* request body */
#define MAX_SEND_QUEUE 4096   /* per exchange */
#define FLOOD_REFILLS  4      /* drain notices /flood answers */
#define SSE_EVENTS     3      /* events of a /v2/read that is not held */
#define MAX_ROUNDS     100000 /* loop turns one settle may take before the server counts as spinning */
#define CHUNK_SEED     0x7f
#define FREE_FIRST     0x80

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* What on_request hands to each exchange: freed by on_close only, touched by the other handlers. */
struct record {
	size_t events;
	unsigned refills;
};

static void touch(struct lgr_http_exchange *x)
{
	struct record *r = lgr_http_exchange_data(x);

	r->events++;
}

static void flood(struct lgr_http_exchange *x)
{
	static const char filler[512] = "data: flood\n\n";

	while (lgr_http_exchange_write(x, filler, sizeof(filler)) == LGR_OK)
		;
}

static const struct lgr_http_header sse[] = {{"Cache-Control", "no-cache"}, {"Connection", "keep-alive"}};

static void on_request(struct lgr_http_exchange *x, const struct lgr_http_request *req, void *ud)
{
	static const char json[] = "{\"envelopes\":{\"batch\":[]}}";
	struct record *r = calloc(1, sizeof(*r));
	bool get = strcmp(req->method, "GET") == 0 || strcmp(req->method, "HEAD") == 0;

	if (r == NULL)
		abort();
	lgr_http_exchange_set_data(x, r);
	/* Everything the request carries is read, as a handler would. */
	r->events += strlen(req->path) + strlen(req->query) + strlen(req->authority) + req->body_len;
	for (size_t i = 0; i < req->nheaders; i++)
		r->events += strlen(req->headers[i].name) + strlen(req->headers[i].value);
	r->events += lgr_http_request_header(req, "authorization") != NULL;
	if (!get) {
		lgr_http_exchange_respond(x, 405, "text/plain", NULL, 0, "method not allowed\n", 19);
	} else if (strcmp(req->path, "/v2/read") == 0) {
		if (lgr_http_exchange_start(x, 200, "text/event-stream", sse, 2) != LGR_OK)
			return;
		for (int i = 0; i < SSE_EVENTS; i++)
			lgr_http_exchange_write(x, "event: heartbeat\ndata: 1\n\n", 26);
		if (strstr(req->query, "hold") == NULL)
			lgr_http_exchange_end(x);
	} else if (strncmp(req->path, "/api/v1/read/", 13) == 0) {
		lgr_http_exchange_respond(x, 200, "application/json", NULL, 0, json, sizeof(json) - 1);
	} else if (strcmp(req->path, "/flood") == 0) {
		if (lgr_http_exchange_start(x, 200, "text/event-stream", NULL, 0) == LGR_OK)
			flood(x);
	} else if (strcmp(req->path, "/later") != 0) {
		lgr_http_exchange_respond(x, 404, "application/json", NULL, 0, "{}\n", 3);
	}
}

static void on_drain(struct lgr_http_exchange *x, void *ud)
{
	struct record *r = lgr_http_exchange_data(x);

	touch(x);
	if (r->refills++ < FLOOD_REFILLS)
		flood(x);
	else
		lgr_http_exchange_end(x);
}

static void on_close(struct lgr_http_exchange *x, bool complete, void *ud)
{
	touch(x);
	free(lgr_http_exchange_data(x)); /* left dangling on purpose: see the file header */
}

static const struct lgr_http_handlers handlers = {on_request, on_drain, on_close};

/* ---- the client end (as fuzz_h2server.c) ------------------------------------------------------------------- */

static size_t discard(int fd)
{
	static uint8_t sink[65536];
	size_t total = 0;
	ssize_t n;

	while ((n = recv(fd, sink, sizeof(sink), 0)) > 0)
		total += (size_t)n;
	return total;
}

/* Whether bytes written to fd still wait for the server to read them (TIOCOUTQ of a Unix socket). */
static bool unread(int fd)
{
	int n = 0;

	return ioctl(fd, TIOCOUTQ, &n) == 0 && n > 0;
}

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
			break; /* the socket is full and the server takes nothing (a request waiting for its answer) */
	}
	settle(base, fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool once;
	struct lgr_http_server_config cfg = {
		.address = "127.0.0.1",
		.handlers = &handlers,
		.max_header = MAX_HEADER,
		.max_body = MAX_BODY,
		.max_send_queue = MAX_SEND_QUEUE,
		.max_connections = 1,
		.max_streams = 8,
		.name = "fuzz",
	};
	struct event_base *base = NULL;
	struct lgr_http_server *srv = NULL;
	int sv[2];

	if (!once) {
		signal(SIGPIPE, SIG_IGN);
		once = true;
	}
	if (size == 0)
		return 0;
	base = event_base_new();
	if (base == NULL || lgr_http_server_new(base, &cfg, &srv) != LGR_OK ||
		socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0) {
		fprintf(stderr, "fuzz_http: cannot set up the server or the socket pair\n");
		abort();
	}
	if (lgr_http_server_adopt(srv, sv[0], "fuzz-client") != LGR_OK)
		abort();
	feed(base, sv[1], data + 1, size - 1, data[0] & CHUNK_SEED);
	if (data[0] & FREE_FIRST) {
		lgr_http_server_free(srv);
		srv = NULL;
	}
	close(sv[1]);
	for (unsigned round = 0; srv != NULL && lgr_http_server_connections(srv) > 0; round++) {
		if (round == MAX_ROUNDS)
			abort(); /* the connection outlives its client */
		event_base_loop(base, EVLOOP_NONBLOCK);
	}
	lgr_http_server_free(srv);
	event_base_free(base);
	return 0;
}
