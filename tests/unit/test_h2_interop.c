/*
 * test_h2_interop.c: lgr_h2 against an independent gRPC implementation, grpc-js (tests/tools/grpc-peer/peer.js):
 * grpc-js clients call Sender, BatchSender and Send on our server over mutual TLS and in h2c and subscribe to our
 * server's BatchedReceiver stream; our client calls BatchSender on a grpc-js server and subscribes to its
 * BatchedReceiver. Envelopes are checked after decoding (count, order, content), statuses on both sides. Skipped,
 * with a message, when node or the peer's node_modules (npm ci) are missing.
 */
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "egress.pb-c.h"
#include "envelope.pb-c.h"
#include "h2_harness.h"
#include "lgr_grpc.h"

#define PEER_DIR TOP_SRCDIR "/tests/tools/grpc-peer"

extern char **environ;

/* ---- the node peer ----------------------------------------------------------------------------------------- */

struct peer {
	pid_t pid;
	int in; /* its stdin: closing it ends a server */
	struct bufferevent *out;
	char lines[8][1024];
	int nlines;
	bool eof;
};

static struct peer peer;

/* Without the peer the test is skipped, except where LGR_REQUIRE_PEERS is set (contrib/test.sh, CI): there a
 * missing peer fails, so that a run that did not test interop never looks like one that did. */
static void skip_without_node(void)
{
	struct stat st;
	const char *why = NULL;

	if (system("node --version >/dev/null 2>&1") != 0)
		why = "node is not installed: grpc-js interop not tested";
	else if (stat(PEER_DIR "/node_modules/@grpc/grpc-js", &st) != 0)
		why = "run `npm ci` in tests/tools/grpc-peer: grpc-js interop not tested";
	if (why == NULL)
		return;
	if (getenv("LGR_REQUIRE_PEERS") != NULL)
		cr_assert_fail("%s", why);
	cr_skip_test("%s", why);
}

static void peer_read(struct bufferevent *bev, void *arg)
{
	struct evbuffer *in = bufferevent_get_input(bev);
	char *line;
	size_t len;

	while ((line = evbuffer_readln(in, &len, EVBUFFER_EOL_LF)) != NULL) {
		if (getenv("H2_TEST_VERBOSE") != NULL)
			fprintf(stderr, "peer: %s\n", line);
		if (peer.nlines < 8)
			snprintf(peer.lines[peer.nlines++], sizeof(peer.lines[0]), "%s", line);
		free(line);
	}
}

static void peer_event(struct bufferevent *bev, short what, void *arg)
{
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		peer.eof = true;
}

/* Starts node peer.js with args (NULL-terminated after the mode). */
static void peer_start(const char *const *args)
{
	const char *argv[40] = {"node", PEER_DIR "/peer.js"};
	int to[2], from[2], n = 2;
	posix_spawn_file_actions_t fa;

	for (; *args != NULL && n < 38; args++)
		argv[n++] = *args;
	argv[n] = NULL;
	cr_assert_eq(pipe(to), 0);
	cr_assert_eq(pipe(from), 0);
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, to[0], 0);
	posix_spawn_file_actions_adddup2(&fa, from[1], 1);
	posix_spawn_file_actions_addclose(&fa, to[1]);
	posix_spawn_file_actions_addclose(&fa, from[0]);
	cr_assert_eq(posix_spawnp(&peer.pid, "node", &fa, NULL, (char *const *)argv, environ), 0);
	posix_spawn_file_actions_destroy(&fa);
	close(to[0]);
	close(from[1]);
	peer.in = to[1];
	evutil_make_socket_nonblocking(from[0]);
	peer.out = bufferevent_socket_new(base, from[0], BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(peer.out, peer_read, NULL, peer_event, NULL);
	bufferevent_enable(peer.out, EV_READ);
}

static void peer_stop(void)
{
	int st;

	if (peer.pid > 0) {
		close(peer.in);
		kill(peer.pid, SIGTERM);
		waitpid(peer.pid, &st, 0);
	}
	if (peer.out != NULL)
		bufferevent_free(peer.out);
	memset(&peer, 0, sizeof(peer));
}

/* The line of the peer whose "event" is ev, waiting for it; NULL after ms. */
static const char *peer_line(const char *ev, int ms)
{
	char want[64];
	int i = 0;

	snprintf(want, sizeof(want), "\"event\":\"%s\"", ev);
	if (!RUN_UNTIL(({
		    bool found_ = false;
		    for (i = 0; i < peer.nlines && !found_; i++)
			    found_ = strstr(peer.lines[i], want) != NULL;
		    found_;
	    }) || peer.eof,
		    ms))
		return NULL;
	return i > 0 && strstr(peer.lines[i - 1], want) != NULL ? peer.lines[i - 1] : NULL;
}

static long long json_int(const char *line, const char *key)
{
	char want[64];
	const char *p;

	snprintf(want, sizeof(want), "\"%s\":", key);
	p = strstr(line, want);
	cr_assert_not_null(p, "no %s in %s", key, line);
	p += strlen(want);
	if (*p == '"')
		p++;
	return strtoll(p, NULL, 10);
}

static bool json_true(const char *line, const char *key)
{
	char want[64];

	snprintf(want, sizeof(want), "\"%s\":true", key);
	return strstr(line, want) != NULL;
}

static void setup(void)
{
	memset(&peer, 0, sizeof(peer));
	h2_setup();
}

static void teardown(void)
{
	peer_stop();
	h2_teardown();
}

TestSuite(h2_interop, .init = setup, .fini = teardown, .timeout = 60);

/* ---- our server --------------------------------------------------------------------------------------------- */

struct received {
	int calls;
	int half_closes;
	int closes;
	bool reset;
	long envelopes;
	long messages;
	int64_t last_ts;
	bool in_order;
	bool content_ok;
};

static struct received rx;

static void check_envelope(const Loggregator__V2__Envelope *e)
{
	char want[64];
	int n;

	if (e->timestamp <= rx.last_ts)
		rx.in_order = false;
	rx.last_ts = e->timestamp;
	n = snprintf(want, sizeof(want), "message %lld ", (long long)e->timestamp);
	if (strcmp(e->source_id, "interop") != 0 || e->message_case != LOGGREGATOR__V2__ENVELOPE__MESSAGE_LOG ||
		e->log->payload.len < (size_t)n || memcmp(e->log->payload.data, want, (size_t)n) != 0)
		rx.content_ok = false;
	rx.envelopes++;
}

static int on_open(struct lgr_h2_stream *s, void *ud)
{
	rx.calls++;
	return LGR_GRPC_OK;
}

static void on_batch(struct lgr_h2_stream *s, const uint8_t *msg, size_t len, void *ud)
{
	Loggregator__V2__EnvelopeBatch *b = loggregator__v2__envelope_batch__unpack(NULL, len, msg);

	rx.messages++;
	if (b == NULL) {
		rx.content_ok = false;
		return;
	}
	for (size_t i = 0; i < b->n_batch; i++)
		check_envelope(b->batch[i]);
	loggregator__v2__envelope_batch__free_unpacked(b, NULL);
}

static void on_envelope(struct lgr_h2_stream *s, const uint8_t *msg, size_t len, void *ud)
{
	Loggregator__V2__Envelope *e = loggregator__v2__envelope__unpack(NULL, len, msg);

	rx.messages++;
	if (e == NULL) {
		rx.content_ok = false;
		return;
	}
	check_envelope(e);
	loggregator__v2__envelope__free_unpacked(e, NULL);
}

/* Client streaming and unary alike answer one empty response message and OK once the client is done. */
static void on_half_close(struct lgr_h2_stream *s, void *ud)
{
	rx.half_closes++;
	cr_assert_eq(lgr_h2_stream_send(s, (const uint8_t *)"", 0), LGR_OK);
	cr_assert_eq(lgr_h2_stream_finish(s, LGR_GRPC_OK, NULL), LGR_OK);
}

static void on_close(struct lgr_h2_stream *s, bool reset, void *ud)
{
	rx.closes++;
	rx.reset = rx.reset || reset;
}

static const struct lgr_h2_handlers batch_handlers = {on_open, on_batch, on_half_close, NULL, on_close};
static const struct lgr_h2_handlers envelope_handlers = {on_open, on_envelope, on_half_close, NULL, on_close};

static const struct lgr_h2_route ingress[] = {
	{"/loggregator.v2.Ingress/BatchSender", &batch_handlers, NULL},
	{"/loggregator.v2.Ingress/Sender", &envelope_handlers, NULL},
	{"/loggregator.v2.Ingress/Send", &batch_handlers, NULL},
};

static struct lgr_h2_server *start_server(SSL_CTX *ctx, size_t nroutes, size_t max_message)
{
	struct lgr_h2_server_config cfg = {0};
	struct lgr_h2_server *srv;

	memset(&rx, 0, sizeof(rx));
	rx.in_order = rx.content_ok = true;
	cfg.address = "127.0.0.1";
	cfg.ssl_ctx = ctx;
	cfg.routes = ingress;
	cfg.nroutes = nroutes;
	cfg.max_message = max_message;
	cr_assert_eq(lgr_h2_server_new(base, &cfg, &srv), LGR_OK, "%s", logs);
	return srv;
}

/* Runs a grpc-js client against our server; returns its result line. */
static const char *grpc_js_client(struct lgr_h2_server *srv, bool tls, const char *method, const char *count,
	const char *batch, const char *payload_size)
{
	char target[32];
	const char *line;

	snprintf(target, sizeof(target), "127.0.0.1:%u", lgr_h2_server_port(srv));
	if (tls) {
		const char *args[] = {"client", "--target", target, "--method", method, "--count", count, "--batch",
			batch, "--source-id", "interop", "--payload-size", payload_size, "--tls", "--ca",
			pki_path("ca.crt"), "--cert", pki_path("client.crt"), "--key", pki_path("client.key"), "--name",
			"doppler", NULL};
		peer_start(args);
	} else {
		const char *args[] = {"client", "--target", target, "--method", method, "--count", count, "--batch",
			batch, "--source-id", "interop", "--payload-size", payload_size, NULL};
		peer_start(args);
	}
	line = peer_line("result", 40000);
	cr_assert_not_null(line, "grpc-js client gave no result; log:\n%s", logs);
	return line;
}

Test(h2_interop, grpc_js_batch_sender_reaches_our_server_over_mutual_tls_whole_and_in_order)
{
	SSL_CTX *ctx = (skip_without_node(), server_ctx("doppler"));
	struct lgr_h2_server *srv = start_server(ctx, 3, 0);
	const char *line = grpc_js_client(srv, true, "BatchSender", "3000", "7", "200");

	cr_assert_eq(json_int(line, "code"), 0, "%s\n%s", line, logs);
	cr_assert(RUN_UNTIL(rx.closes == 1, 5000));
	cr_assert_eq(rx.calls, 1);
	cr_assert_eq(rx.messages, 3000);
	cr_assert_eq(rx.envelopes, 21000);
	cr_assert(rx.in_order);
	cr_assert(rx.content_ok);
	cr_assert_eq(rx.half_closes, 1);
	cr_assert_not(rx.reset, "our OK status must have reached the wire");
	lgr_h2_server_free(srv);
	SSL_CTX_free(ctx);
}

Test(h2_interop, grpc_js_sender_reaches_our_server_over_mutual_tls)
{
	SSL_CTX *ctx = (skip_without_node(), server_ctx("doppler"));
	struct lgr_h2_server *srv = start_server(ctx, 3, 0);
	const char *line = grpc_js_client(srv, true, "Sender", "5000", "1", "0");

	cr_assert_eq(json_int(line, "code"), 0, "%s\n%s", line, logs);
	cr_assert(RUN_UNTIL(rx.closes == 1, 5000));
	cr_assert_eq(rx.messages, 5000);
	cr_assert_eq(rx.envelopes, 5000);
	cr_assert(rx.in_order);
	cr_assert(rx.content_ok);
	lgr_h2_server_free(srv);
	SSL_CTX_free(ctx);
}

Test(h2_interop, grpc_js_unary_send_calls_each_get_their_response_over_mutual_tls)
{
	SSL_CTX *ctx = (skip_without_node(), server_ctx("doppler"));
	struct lgr_h2_server *srv = start_server(ctx, 3, 0);
	const char *line = grpc_js_client(srv, true, "Send", "50", "10", "100");

	cr_assert_eq(json_int(line, "code"), 0, "%s\n%s", line, logs);
	cr_assert_eq(json_int(line, "sent"), 50);
	cr_assert(RUN_UNTIL(rx.closes == 50, 5000));
	cr_assert_eq(rx.calls, 50);
	cr_assert_eq(rx.envelopes, 500);
	cr_assert(rx.in_order);
	cr_assert(rx.content_ok);
	lgr_h2_server_free(srv);
	SSL_CTX_free(ctx);
}

Test(h2_interop, grpc_js_batch_sender_works_in_cleartext_h2c)
{
	struct lgr_h2_server *srv = (skip_without_node(), start_server(NULL, 3, 0));
	const char *line = grpc_js_client(srv, false, "BatchSender", "1000", "3", "5000");

	cr_assert_eq(json_int(line, "code"), 0, "%s\n%s", line, logs);
	cr_assert(RUN_UNTIL(rx.closes == 1, 5000));
	cr_assert_eq(rx.envelopes, 3000);
	cr_assert(rx.in_order);
	cr_assert(rx.content_ok);
	lgr_h2_server_free(srv);
}

Test(h2_interop, grpc_js_gets_unimplemented_for_a_method_we_do_not_route)
{
	SSL_CTX *ctx = (skip_without_node(), server_ctx("doppler"));
	struct lgr_h2_server *srv = start_server(ctx, 2, 0); /* Send is not routed, as on a real router */
	const char *line = grpc_js_client(srv, true, "Send", "1", "1", "0");

	cr_assert_eq(json_int(line, "code"), LGR_GRPC_UNIMPLEMENTED, "%s", line);
	cr_assert_not_null(strstr(line, "unknown method /loggregator.v2.Ingress/Send"), "%s", line);
	cr_assert_eq(rx.calls, 0);
	lgr_h2_server_free(srv);
	SSL_CTX_free(ctx);
}

Test(h2_interop, grpc_js_gets_resource_exhausted_for_a_message_over_our_limit)
{
	SSL_CTX *ctx = (skip_without_node(), server_ctx("doppler"));
	struct lgr_h2_server *srv = start_server(ctx, 3, 4096);
	const char *line = grpc_js_client(srv, true, "BatchSender", "10", "1", "10000");

	cr_assert_eq(json_int(line, "code"), LGR_GRPC_RESOURCE_EXHAUSTED, "%s", line);
	cr_assert(RUN_UNTIL(rx.closes == 1, 5000));
	cr_assert_eq(rx.messages, 0);
	lgr_h2_server_free(srv);
	SSL_CTX_free(ctx);
}

/* ---- our client ----------------------------------------------------------------------------------------------- */

struct outcome {
	bool closed;
	int status;
	char message[LGR_H2_MAX_STATUS_MESSAGE];
	int responses;
	int drains;
	bool ready;
};

static struct outcome oc;

static void call_message(struct lgr_h2_call *call, const uint8_t *msg, size_t len, void *ud)
{
	oc.responses++;
}

static void call_close(struct lgr_h2_call *call, int status, const char *message, void *ud)
{
	oc.closed = true;
	oc.status = status;
	snprintf(oc.message, sizeof(oc.message), "%s", message);
}

struct pump {
	struct lgr_h2_call *call;
	int next;
	int total;
	int batch;
};

/* Packs n Log envelopes of source_id with timestamps first, first + 1, ... into buf (large enough). */
static size_t pack_batch(uint8_t *buf, long long first, int n, const char *source_id)
{
	Loggregator__V2__Envelope env[16], *envs[16];
	Loggregator__V2__Log log[16];
	Loggregator__V2__EnvelopeBatch b = LOGGREGATOR__V2__ENVELOPE_BATCH__INIT;
	char payload[16][48];

	cr_assert(n <= 16);
	for (int i = 0; i < n; i++) {
		loggregator__v2__envelope__init(&env[i]);
		loggregator__v2__log__init(&log[i]);
		snprintf(payload[i], sizeof(payload[i]), "message %lld from lgr", first + i);
		log[i].payload.data = (uint8_t *)payload[i];
		log[i].payload.len = strlen(payload[i]);
		env[i].timestamp = first + i;
		env[i].source_id = (char *)source_id;
		env[i].message_case = LOGGREGATOR__V2__ENVELOPE__MESSAGE_LOG;
		env[i].log = &log[i];
		envs[i] = &env[i];
	}
	b.n_batch = (size_t)n;
	b.batch = envs;
	return loggregator__v2__envelope_batch__pack(&b, buf);
}

/* Sends batches until the queue is full; on_drain resumes. Timestamps count up from 1. */
static void pump_batches(struct pump *p)
{
	while (p->next < p->total) {
		uint8_t buf[4096];
		size_t len = pack_batch(buf, (long long)p->next * p->batch + 1, p->batch, "lgr-client");
		int rc = lgr_h2_call_send(p->call, buf, len);

		if (rc == LGR_EFULL)
			return;
		cr_assert_eq(rc, LGR_OK);
		p->next++;
	}
	cr_assert_eq(lgr_h2_call_close_send(p->call), LGR_OK);
}

/* BatchedReceiver: the request's first selector names the source; batches of 10 follow as the queue allows. */
struct egress {
	int opens, closes;
	bool reset;
	long total; /* batches per subscription */
	char source_id[64];
	char shard_id[64];
};

static struct egress eg;

struct feed {
	long next;
};

static void egress_pump(struct lgr_h2_stream *s)
{
	struct feed *f = lgr_h2_stream_data(s);

	while (f->next < eg.total) {
		uint8_t buf[4096];
		size_t len = pack_batch(buf, f->next * 10 + 1, 10, eg.source_id);
		int rc = lgr_h2_stream_send(s, buf, len);

		if (rc == LGR_EFULL)
			return;
		cr_assert_eq(rc, LGR_OK);
		f->next++;
	}
	cr_assert_eq(lgr_h2_stream_finish(s, LGR_GRPC_OK, NULL), LGR_OK);
}

static void egress_request(struct lgr_h2_stream *s, const uint8_t *msg, size_t len, void *ud)
{
	Loggregator__V2__EgressBatchRequest *req = loggregator__v2__egress_batch_request__unpack(NULL, len, msg);

	cr_assert_not_null(req);
	cr_assert_eq(req->n_selectors, 1);
	cr_assert_eq(req->selectors[0]->message_case, LOGGREGATOR__V2__SELECTOR__MESSAGE_LOG);
	snprintf(eg.source_id, sizeof(eg.source_id), "%s", req->selectors[0]->source_id);
	snprintf(eg.shard_id, sizeof(eg.shard_id), "%s", req->shard_id);
	loggregator__v2__egress_batch_request__free_unpacked(req, NULL);
	lgr_h2_stream_set_data(s, calloc(1, sizeof(struct feed)));
	egress_pump(s);
}

static int egress_open(struct lgr_h2_stream *s, void *ud)
{
	eg.opens++;
	return LGR_GRPC_OK;
}

static void egress_drain(struct lgr_h2_stream *s, void *ud)
{
	egress_pump(s);
}

static void egress_close(struct lgr_h2_stream *s, bool reset, void *ud)
{
	free(lgr_h2_stream_data(s));
	eg.closes++;
	eg.reset = reset;
}

static const struct lgr_h2_handlers egress_handlers = {egress_open, egress_request, NULL, egress_drain, egress_close};
static const struct lgr_h2_route egress_routes[] = {
	{"/loggregator.v2.Egress/BatchedReceiver", &egress_handlers, NULL},
};

static void call_drain(struct lgr_h2_call *call, void *ud)
{
	oc.drains++;
	pump_batches(ud);
}

static const struct lgr_h2_call_handlers call_handlers = {call_message, call_drain, call_close, NULL};

static void on_state(struct lgr_h2_client *cli, enum lgr_h2_state st, const char *why, void *ud)
{
	if (st == LGR_H2_READY)
		oc.ready = true;
}

/* Starts a grpc-js server (extra args appended) and returns its port. */
static uint16_t grpc_js_server(bool tls, const char *const *extra)
{
	const char *args[30] = {"server", "--calls", "1"};
	int n = 3;
	const char *line;

	if (tls) {
		const char *t[] = {"--tls", "--ca", pki_path("ca.crt"), "--cert", pki_path("doppler.crt"), "--key",
			pki_path("doppler.key")};

		for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
			args[n++] = t[i];
	}
	for (; extra != NULL && *extra != NULL; extra++)
		args[n++] = *extra;
	args[n] = NULL;
	peer_start(args);
	line = peer_line("listening", 20000);
	cr_assert_not_null(line, "grpc-js server did not start");
	return (uint16_t)json_int(line, "port");
}

static struct lgr_h2_client *connect_client(uint16_t port, SSL_CTX *ctx, size_t queue)
{
	struct lgr_h2_client_config cfg = {0};
	struct lgr_h2_client *cli;

	memset(&oc, 0, sizeof(oc));
	cfg.host = "127.0.0.1";
	cfg.port = port;
	cfg.ssl_ctx = ctx;
	cfg.server_name = ctx != NULL ? "doppler" : NULL;
	cfg.max_send_queue = queue;
	cfg.on_state = on_state;
	cr_assert_eq(lgr_h2_client_new(base, &cfg, &cli), LGR_OK);
	return cli;
}

Test(h2_interop, our_batch_sender_reaches_a_grpc_js_server_over_mutual_tls_whole_and_in_order)
{
	SSL_CTX *ctx = (skip_without_node(), client_ctx("client"));
	uint16_t port = grpc_js_server(true, NULL);
	struct lgr_h2_client *cli = connect_client(port, ctx, 64 * 1024);
	struct pump p = {.total = 4000, .batch = 5};
	const char *line;

	cr_assert_eq(
		lgr_h2_client_call(cli, "/loggregator.v2.Ingress/BatchSender", &call_handlers, &p, &p.call), LGR_OK);
	pump_batches(&p);
	cr_assert(RUN_UNTIL(oc.closed, 30000), "no status; log:\n%s", logs);
	cr_assert_eq(oc.status, LGR_GRPC_OK, "%d %s", oc.status, oc.message);
	cr_assert_eq(oc.responses, 1, "a client-streaming call answers one message");
	cr_assert(oc.drains > 0, "a 64 KiB queue must have filled and drained");
	line = peer_line("call", 10000);
	cr_assert_not_null(line);
	cr_assert_eq(json_int(line, "messages"), 4000, "%s", line);
	cr_assert_eq(json_int(line, "envelopes"), 20000, "%s", line);
	cr_assert_eq(json_int(line, "last"), 20000, "%s", line);
	cr_assert(json_true(line, "in_order"), "%s", line);
	cr_assert_not_null(strstr(line, "\"source_ids\":[\"lgr-client\"]"), "%s", line);
	lgr_h2_client_free(cli);
	SSL_CTX_free(ctx);
}

Test(h2_interop, our_client_works_with_a_grpc_js_server_in_cleartext_h2c)
{
	uint16_t port = (skip_without_node(), grpc_js_server(false, NULL));
	struct lgr_h2_client *cli = connect_client(port, NULL, 0);
	struct pump p = {.total = 100, .batch = 3};
	const char *line;

	cr_assert_eq(
		lgr_h2_client_call(cli, "/loggregator.v2.Ingress/BatchSender", &call_handlers, &p, &p.call), LGR_OK);
	pump_batches(&p);
	cr_assert(RUN_UNTIL(oc.closed, 20000), "no status; log:\n%s", logs);
	cr_assert_eq(oc.status, LGR_GRPC_OK, "%d %s", oc.status, oc.message);
	line = peer_line("call", 10000);
	cr_assert_not_null(line);
	cr_assert_eq(json_int(line, "envelopes"), 300, "%s", line);
	lgr_h2_client_free(cli);
}

Test(h2_interop, our_client_reads_a_grpc_js_error_status_and_its_percent_encoded_message)
{
	SSL_CTX *ctx = (skip_without_node(), client_ctx("client"));
	const char *extra[] = {"--status", "7", "--message", "refused: 100% sure, caf\xc3\xa9", NULL};
	uint16_t port = grpc_js_server(true, extra);
	struct lgr_h2_client *cli = connect_client(port, ctx, 0);
	struct pump p = {.total = 3, .batch = 1};

	cr_assert_eq(
		lgr_h2_client_call(cli, "/loggregator.v2.Ingress/BatchSender", &call_handlers, &p, &p.call), LGR_OK);
	pump_batches(&p);
	cr_assert(RUN_UNTIL(oc.closed, 20000), "no status; log:\n%s", logs);
	cr_assert_eq(oc.status, LGR_GRPC_PERMISSION_DENIED);
	cr_assert_str_eq(oc.message, "refused: 100% sure, caf\xc3\xa9");
	lgr_h2_client_free(cli);
	SSL_CTX_free(ctx);
}

/* ---- server streaming: BatchedReceiver ------------------------------------------------------------------------ */

static struct lgr_h2_server *start_egress(SSL_CTX *ctx, long total)
{
	struct lgr_h2_server_config cfg = {0};
	struct lgr_h2_server *srv;

	memset(&eg, 0, sizeof(eg));
	eg.total = total;
	cfg.address = "127.0.0.1";
	cfg.ssl_ctx = ctx;
	cfg.routes = egress_routes;
	cfg.nroutes = 1;
	cfg.max_send_queue = 64 * 1024; /* small, so that drain notices pace the stream */
	cr_assert_eq(lgr_h2_server_new(base, &cfg, &srv), LGR_OK, "%s", logs);
	return srv;
}

static void grpc_js_subscriber(struct lgr_h2_server *srv, const char *cancel_after)
{
	char target[32];
	const char *args[] = {"client", "--target", target, "--method", "BatchedReceiver", "--source-id", "interop",
		"--tls", "--ca", pki_path("ca.crt"), "--cert", pki_path("client.crt"), "--key", pki_path("client.key"),
		"--name", "doppler", cancel_after != NULL ? "--cancel-after" : NULL, cancel_after, NULL};

	snprintf(target, sizeof(target), "127.0.0.1:%u", lgr_h2_server_port(srv));
	peer_start(args);
}

Test(h2_interop, a_grpc_js_subscriber_receives_our_server_stream_and_trailers_over_mutual_tls)
{
	SSL_CTX *ctx = (skip_without_node(), server_ctx("doppler"));
	struct lgr_h2_server *srv = start_egress(ctx, 2000);
	const char *line;

	grpc_js_subscriber(srv, NULL);
	line = peer_line("result", 40000);
	cr_assert_not_null(line, "no result; log:\n%s", logs);
	cr_assert_eq(json_int(line, "code"), 0, "%s", line);
	cr_assert_eq(json_int(line, "messages"), 2000, "%s", line);
	cr_assert_eq(json_int(line, "envelopes"), 20000, "%s", line);
	cr_assert_eq(json_int(line, "last"), 20000, "%s", line);
	cr_assert(json_true(line, "in_order"), "%s", line);
	cr_assert_not_null(strstr(line, "\"source_ids\":[\"interop\"]"), "%s", line);
	cr_assert(RUN_UNTIL(eg.closes == 1, 5000));
	cr_assert_str_eq(eg.source_id, "interop");
	cr_assert_not(eg.reset);
	lgr_h2_server_free(srv);
	SSL_CTX_free(ctx);
}

Test(h2_interop, a_grpc_js_subscriber_that_cancels_resets_our_stream)
{
	SSL_CTX *ctx = (skip_without_node(), server_ctx("doppler"));
	struct lgr_h2_server *srv = start_egress(ctx, 1L << 40); /* endless */
	const char *line;

	grpc_js_subscriber(srv, "1000");
	line = peer_line("result", 40000);
	cr_assert_not_null(line, "no result; log:\n%s", logs);
	cr_assert_eq(json_int(line, "code"), LGR_GRPC_CANCELLED, "%s", line);
	cr_assert(json_int(line, "envelopes") >= 1000, "%s", line);
	cr_assert(RUN_UNTIL(eg.closes == 1, 5000), "our stream did not end; log:\n%s", logs);
	cr_assert(eg.reset);
	lgr_h2_server_free(srv);
	SSL_CTX_free(ctx);
}

struct subscription {
	long envelopes, messages;
	int64_t last;
	bool in_order, content_ok;
};

static struct subscription sub;

static void sub_message(struct lgr_h2_call *call, const uint8_t *msg, size_t len, void *ud)
{
	Loggregator__V2__EnvelopeBatch *b = loggregator__v2__envelope_batch__unpack(NULL, len, msg);

	sub.messages++;
	if (b == NULL) {
		sub.content_ok = false;
		return;
	}
	for (size_t i = 0; i < b->n_batch; i++) {
		if (b->batch[i]->timestamp <= sub.last)
			sub.in_order = false;
		sub.last = b->batch[i]->timestamp;
		if (strcmp(b->batch[i]->source_id, "lgr-sub") != 0)
			sub.content_ok = false;
		sub.envelopes++;
	}
	loggregator__v2__envelope_batch__free_unpacked(b, NULL);
}

static const struct lgr_h2_call_handlers sub_handlers = {sub_message, NULL, call_close, NULL};

Test(h2_interop, our_client_subscribes_to_a_grpc_js_server_stream_over_mutual_tls)
{
	SSL_CTX *ctx = (skip_without_node(), client_ctx("client"));
	const char *extra[] = {"--stream-count", "500", "--batch", "10", NULL};
	uint16_t port = grpc_js_server(true, extra);
	struct lgr_h2_client *cli = connect_client(port, ctx, 0);
	Loggregator__V2__EgressBatchRequest req = LOGGREGATOR__V2__EGRESS_BATCH_REQUEST__INIT;
	Loggregator__V2__Selector sel = LOGGREGATOR__V2__SELECTOR__INIT, *sels[1] = {&sel};
	Loggregator__V2__LogSelector log = LOGGREGATOR__V2__LOG_SELECTOR__INIT;
	struct lgr_h2_call *call;
	uint8_t buf[256];
	const char *line;

	memset(&sub, 0, sizeof(sub));
	sub.in_order = sub.content_ok = true;
	sel.source_id = "lgr-sub";
	sel.message_case = LOGGREGATOR__V2__SELECTOR__MESSAGE_LOG;
	sel.log = &log;
	req.shard_id = "shard-1";
	req.n_selectors = 1;
	req.selectors = sels;
	cr_assert_eq(
		lgr_h2_client_call(cli, "/loggregator.v2.Egress/BatchedReceiver", &sub_handlers, NULL, &call), LGR_OK);
	cr_assert_eq(lgr_h2_call_send(call, buf, loggregator__v2__egress_batch_request__pack(&req, buf)), LGR_OK);
	cr_assert_eq(lgr_h2_call_close_send(call), LGR_OK);
	cr_assert(RUN_UNTIL(oc.closed, 30000), "no status; log:\n%s", logs);
	cr_assert_eq(oc.status, LGR_GRPC_OK, "%d %s", oc.status, oc.message);
	cr_assert_eq(sub.messages, 500);
	cr_assert_eq(sub.envelopes, 5000);
	cr_assert_eq(sub.last, 5000);
	cr_assert(sub.in_order);
	cr_assert(sub.content_ok);
	line = peer_line("call", 10000);
	cr_assert_not_null(line);
	cr_assert_not_null(strstr(line, "\"shard_id\":\"shard-1\""), "%s", line);
	lgr_h2_client_free(cli);
	SSL_CTX_free(ctx);
}
