/*
 * test_http.c: lgr_http against real clients on 127.0.0.1: libcurl (easy and multi API, in a client thread while
 * the test thread runs the server's loop) over TLS with ALPN h2 and http/1.1, without ALPN, and in cleartext
 * (HTTP/1.1 and HTTP/2 with prior knowledge); raw sockets for what curl will not send (malformed requests) and a raw
 * OpenSSL client for TLS 1.0. Whole responses, streaming responses seen incrementally, client disconnects, keep-
 * alive, the limits (431, 413, 400), optional client certificates, bounded send queues with drain notices, many
 * concurrent streams and graceful shutdown. The PKI comes from contrib/gen-pki.sh (h2_harness.h).
 */
#define _GNU_SOURCE /* strcasestr */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <curl/curl.h>
#include <event2/event.h>
#include <openssl/ssl.h>

#include "h2_harness.h"
#include "lgr_http.h"
#include "lgr_tls.h"

#define WAIT_MS	 60000
#define BIG_SIZE (8u << 20) /* bytes of the /big response */

static struct event *tick;

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
}

static void http_setup(void)
{
	struct timeval ms = {0, 2000};

	h2_setup();
	cr_assert_eq(curl_global_init(CURL_GLOBAL_DEFAULT), CURLE_OK);
	/* Client threads change what RUN_UNTIL waits for without an event of this loop: look again every 2 ms. */
	tick = event_new(base, -1, EV_PERSIST, on_tick, NULL);
	event_add(tick, &ms);
}

static void http_teardown(void)
{
	if (tick != NULL)
		event_free(tick);
	tick = NULL;
	curl_global_cleanup();
	h2_teardown();
}

TestSuite(http, .init = http_setup, .fini = http_teardown, .timeout = 180);

/* ---- the server side ---------------------------------------------------------------------------------------- */

struct req_seen {
	char method[16], path[128], query[128], authority[128], accept[64], authorization[64], peer[64];
	int version;
	bool cert;
	size_t body_len;
};

static struct {
	int requests, closes, completes, drains;
	struct req_seen reqs[256];
	struct lgr_http_exchange *held[256];
	int nheld;
	int refusals, refused_status;
	char refused_why[256];
	bool done;
} sv;

static void copy(char *dst, size_t len, const char *src)
{
	snprintf(dst, len, "%s", src != NULL ? src : "(none)");
}

struct big {
	size_t sent, total;
};

static void big_pump(struct lgr_http_exchange *x)
{
	static char chunk[65536];
	struct big *b = lgr_http_exchange_data(x);

	while (b->sent < b->total) {
		size_t n = b->total - b->sent < sizeof(chunk) ? b->total - b->sent : sizeof(chunk);
		int rc;

		for (size_t i = 0; i < n; i++)
			chunk[i] = (char)((b->sent + i) % 251);
		rc = lgr_http_exchange_write(x, chunk, n);
		if (rc == LGR_EFULL)
			return;
		cr_assert_eq(rc, LGR_OK);
		b->sent += n;
	}
	cr_assert_eq(lgr_http_exchange_end(x), LGR_OK);
}

static const struct lgr_http_header sse_headers[] = {
	{"Cache-Control", "no-cache"},
	{"Connection", "keep-alive"},
};

static void on_request(struct lgr_http_exchange *x, const struct lgr_http_request *req, void *ud)
{
	static const struct lgr_http_header extra[] = {{"X-Test", "yes"}};
	struct req_seen *r = &sv.reqs[sv.requests % 256];
	char body[128];

	sv.requests++;
	copy(r->method, sizeof(r->method), req->method);
	copy(r->path, sizeof(r->path), req->path);
	copy(r->query, sizeof(r->query), req->query);
	copy(r->authority, sizeof(r->authority), req->authority);
	copy(r->accept, sizeof(r->accept), lgr_http_request_header(req, "Accept"));
	copy(r->authorization, sizeof(r->authorization), lgr_http_request_header(req, "authorization"));
	copy(r->peer, sizeof(r->peer), req->peer);
	r->version = req->version;
	r->cert = req->ssl != NULL && SSL_get0_peer_certificate(req->ssl) != NULL &&
		  SSL_get_verify_result(req->ssl) == X509_V_OK;
	r->body_len = req->body_len;
	cr_assert_eq(lgr_http_exchange_request(x), req);
	if (strcmp(req->path, "/whole") == 0) {
		snprintf(body, sizeof(body), "hello %d\n", req->version);
		cr_assert_eq(lgr_http_exchange_respond(x, 200, "text/plain", extra, 1, body, strlen(body)), LGR_OK);
		cr_assert_eq(lgr_http_exchange_respond(x, 200, NULL, NULL, 0, NULL, 0), LGR_EINVAL, "answered once");
	} else if (strcmp(req->path, "/stream") == 0) {
		cr_assert_eq(lgr_http_exchange_start(x, 200, "text/event-stream", sse_headers, 2), LGR_OK);
		cr_assert_eq(lgr_http_exchange_write(x, "data: first\n\n", 13), LGR_OK);
		sv.held[sv.nheld++] = x;
	} else if (strcmp(req->path, "/later") == 0) {
		sv.held[sv.nheld++] = x; /* answered by the test, or by the shutdown */
	} else if (strcmp(req->path, "/big") == 0) {
		struct big *b = calloc(1, sizeof(*b));

		b->total = BIG_SIZE;
		lgr_http_exchange_set_data(x, b);
		cr_assert_eq(lgr_http_exchange_start(x, 200, "application/octet-stream", NULL, 0), LGR_OK);
		big_pump(x);
	} else {
		cr_assert_eq(lgr_http_exchange_respond(x, 404, "text/plain", NULL, 0, "not found\n", 10), LGR_OK);
	}
}

static void on_drain(struct lgr_http_exchange *x, void *ud)
{
	sv.drains++;
	if (strcmp(lgr_http_exchange_request(x)->path, "/big") == 0)
		big_pump(x);
}

static void on_close(struct lgr_http_exchange *x, bool complete, void *ud)
{
	sv.closes++;
	sv.completes += complete;
	free(strcmp(lgr_http_exchange_request(x)->path, "/big") == 0 ? lgr_http_exchange_data(x) : NULL);
	for (int i = 0; i < sv.nheld; i++) {
		if (sv.held[i] == x)
			sv.held[i] = NULL;
	}
}

static void on_refused(const char *peer, const char *path, int status, const char *why, void *ud)
{
	sv.refusals++;
	sv.refused_status = status;
	snprintf(sv.refused_why, sizeof(sv.refused_why), "%s", why);
}

static const struct lgr_http_handlers handlers = {on_request, on_drain, on_close};

static SSL_CTX *sctx;

/* The gateway's context: ALPN {"h2", "http/1.1"} or none, a client certificate optional. */
static SSL_CTX *gateway_ctx(void)
{
	struct lgr_tls_config cfg = {0};
	char err[512];
	SSL_CTX *ctx;

	cfg.ca_file = pki_path("ca.crt");
	cfg.cert_file = pki_path("reverselogproxy.crt");
	cfg.key_file = pki_path("reverselogproxy.key");
	cfg.request_client_cert = true;
	cfg.alpn = lgr_http_alpn;
	cfg.alpn_optional = true;
	cr_assert_eq(lgr_tls_server_ctx(&cfg, &ctx, err, sizeof(err)), LGR_OK, "%s", err);
	return ctx;
}

static struct lgr_http_server *serve(bool tls, const struct lgr_http_server_config *over)
{
	struct lgr_http_server_config cfg = {0};
	struct lgr_http_server *srv;

	if (over != NULL)
		cfg = *over;
	memset(&sv, 0, sizeof(sv));
	cfg.address = "127.0.0.1";
	cfg.handlers = &handlers;
	cfg.on_refused = on_refused;
	cfg.name = "test";
	if (cfg.max_header == 0)
		cfg.max_header = 8192;
	if (tls) {
		sctx = gateway_ctx();
		cfg.ssl_ctx = sctx;
	}
	cr_assert_eq(lgr_http_server_new(base, &cfg, &srv), LGR_OK, "%s", logs);
	cr_assert_neq(lgr_http_server_port(srv), 0);
	return srv;
}

static void unserve(struct lgr_http_server *srv)
{
	lgr_http_server_free(srv);
	if (sctx != NULL)
		SSL_CTX_free(sctx);
	sctx = NULL;
}

/* ---- curl clients in a thread ------------------------------------------------------------------------------- */

struct xfer {
	/* the request */
	char url[256];
	long version; /* CURL_HTTP_VERSION_* */
	bool tls, cert, no_alpn, nobody, abort_first;
	const char *header;
	const char *post;
	size_t post_len;
	/* the outcome */
	CURLcode rc;
	long status, http_version, connects;
	char head[8192];
	size_t head_len;
	char *body;
	size_t body_len, body_cap;
	atomic_bool first; /* body bytes arrived */
	struct curl_slist *slist;
};

struct job {
	struct xfer *xs;
	int n;
	bool sequential; /* one easy handle for all, in turn (one connection when kept alive) */
	atomic_bool done;
	pthread_t t;
};

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
	struct xfer *x = ud;
	size_t len = size * n;

	if (x->abort_first) {
		atomic_store(&x->first, true);
		return 0; /* curl ends the transfer: the client goes away */
	}
	if (x->body_len + len + 1 > x->body_cap) {
		x->body_cap = (x->body_len + len + 1) * 2;
		x->body = realloc(x->body, x->body_cap);
	}
	memcpy(x->body + x->body_len, p, len);
	x->body_len += len;
	x->body[x->body_len] = '\0';
	atomic_store(&x->first, true);
	return len;
}

static size_t on_head(char *p, size_t size, size_t n, void *ud)
{
	struct xfer *x = ud;
	size_t len = size * n;

	if (x->head_len + len < sizeof(x->head)) {
		memcpy(x->head + x->head_len, p, len);
		x->head_len += len;
		x->head[x->head_len] = '\0';
	}
	return len;
}

static void prepare(CURL *e, struct xfer *x)
{
	curl_easy_setopt(e, CURLOPT_URL, x->url);
	curl_easy_setopt(e, CURLOPT_HTTP_VERSION, x->version);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_head);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
	curl_easy_setopt(e, CURLOPT_PRIVATE, x);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)WAIT_MS);
	if (getenv("LGR_CURL_VERBOSE") != NULL)
		curl_easy_setopt(e, CURLOPT_VERBOSE, 1L);
	if (x->tls) {
		curl_easy_setopt(e, CURLOPT_CAINFO, pki_path("ca.crt"));
		if (x->cert) {
			curl_easy_setopt(e, CURLOPT_SSLCERT, pki_path("client.crt"));
			curl_easy_setopt(e, CURLOPT_SSLKEY, pki_path("client.key"));
		}
		if (x->no_alpn)
			curl_easy_setopt(e, CURLOPT_SSL_ENABLE_ALPN, 0L);
	}
	if (x->nobody)
		curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
	if (x->header != NULL) {
		x->slist = curl_slist_append(x->slist, x->header);
		curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->slist);
	}
	if (x->post != NULL) {
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, x->post);
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)x->post_len);
	}
}

static void outcome(CURL *e, struct xfer *x, CURLcode rc)
{
	x->rc = rc;
	curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &x->status);
	curl_easy_getinfo(e, CURLINFO_HTTP_VERSION, &x->http_version);
	curl_easy_getinfo(e, CURLINFO_NUM_CONNECTS, &x->connects);
	curl_slist_free_all(x->slist);
	x->slist = NULL;
}

static void *run_job(void *arg)
{
	struct job *job = arg;

	if (job->sequential) {
		CURL *e = curl_easy_init();

		for (int i = 0; i < job->n; i++) {
			prepare(e, &job->xs[i]);
			outcome(e, &job->xs[i], curl_easy_perform(e));
		}
		curl_easy_cleanup(e);
	} else {
		CURLM *m = curl_multi_init();
		CURL *es[256];
		int running = 1;

		curl_multi_setopt(m, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
		for (int i = 0; i < job->n; i++) {
			es[i] = curl_easy_init();
			prepare(es[i], &job->xs[i]);
			/* HTTP/2: wait for the first connection and multiplex over it rather than opening one each. */
			if (job->xs[i].version != CURL_HTTP_VERSION_1_1)
				curl_easy_setopt(es[i], CURLOPT_PIPEWAIT, 1L);
			curl_multi_add_handle(m, es[i]);
		}
		while (running > 0) {
			CURLMsg *msg;
			int left;

			curl_multi_perform(m, &running);
			while ((msg = curl_multi_info_read(m, &left)) != NULL) {
				struct xfer *x;

				if (msg->msg != CURLMSG_DONE)
					continue;
				curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
				outcome(msg->easy_handle, x, msg->data.result);
			}
			if (running > 0)
				curl_multi_poll(m, NULL, 0, 100, NULL);
		}
		for (int i = 0; i < job->n; i++) {
			curl_multi_remove_handle(m, es[i]);
			curl_easy_cleanup(es[i]);
		}
		curl_multi_cleanup(m);
	}
	atomic_store(&job->done, true);
	return NULL;
}

static void start(struct job *job, struct xfer *xs, int n, bool sequential)
{
	job->xs = xs;
	job->n = n;
	job->sequential = sequential;
	atomic_store(&job->done, false);
	cr_assert_eq(pthread_create(&job->t, NULL, run_job, job), 0);
}

static void finish(struct job *job)
{
	cr_assert(RUN_UNTIL(atomic_load(&job->done), WAIT_MS), "the client did not finish; log: %s", logs);
	pthread_join(job->t, NULL);
}

static void url(struct xfer *x, bool tls, struct lgr_http_server *srv, const char *path)
{
	snprintf(
		x->url, sizeof(x->url), "%s://127.0.0.1:%u%s", tls ? "https" : "http", lgr_http_server_port(srv), path);
	x->tls = tls;
}

static void xfer_free(struct xfer *xs, int n)
{
	for (int i = 0; i < n; i++)
		free(xs[i].body);
}

/* One request, the whole exchange. */
static void fetch(struct xfer *x)
{
	struct job job;

	start(&job, x, 1, true);
	finish(&job);
}

/* ---- raw clients in a thread -------------------------------------------------------------------------------- */

struct raw {
	uint16_t port;
	const char *req;
	size_t len;
	char resp[16384];
	size_t resp_len;
	atomic_bool done;
	pthread_t t;
};

static int connect_to(uint16_t port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
	struct timeval tv = {WAIT_MS / 1000, 0};
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Sends the request, then reads until the server closes the connection. */
static void *run_raw(void *arg)
{
	struct raw *r = arg;
	int fd = connect_to(r->port);
	ssize_t n;

	if (fd >= 0) {
		if (send(fd, r->req, r->len, MSG_NOSIGNAL) == (ssize_t)r->len) {
			while (r->resp_len < sizeof(r->resp) - 1 &&
				(n = recv(fd, r->resp + r->resp_len, sizeof(r->resp) - 1 - r->resp_len, 0)) > 0)
				r->resp_len += (size_t)n;
		}
		close(fd);
	}
	r->resp[r->resp_len] = '\0';
	atomic_store(&r->done, true);
	return NULL;
}

static void raw_exchange(struct raw *r, uint16_t port, const char *req, size_t len)
{
	memset(r, 0, sizeof(*r));
	r->port = port;
	r->req = req;
	r->len = len;
	cr_assert_eq(pthread_create(&r->t, NULL, run_raw, r), 0);
	cr_assert(RUN_UNTIL(atomic_load(&r->done), WAIT_MS), "the raw client did not finish");
	pthread_join(r->t, NULL);
}

/* ---- whole responses and protocol choice -------------------------------------------------------------------- */

static void whole_response(bool tls, long version, bool no_alpn, int want_version, long curl_version)
{
	struct lgr_http_server *srv = serve(tls, NULL);
	struct xfer x = {.version = version, .no_alpn = no_alpn};
	char want[32];

	url(&x, tls, srv, "/whole?log&source_id=app-1");
	x.header = "Authorization: bearer token-1";
	fetch(&x);
	cr_assert_eq(x.rc, CURLE_OK, "%s; log: %s", curl_easy_strerror(x.rc), logs);
	cr_assert_eq(x.status, 200);
	cr_assert_eq(x.http_version, curl_version);
	snprintf(want, sizeof(want), "hello %d\n", want_version);
	cr_assert_str_eq(x.body, want);
	cr_assert_eq(sv.requests, 1);
	cr_assert_eq(sv.reqs[0].version, want_version);
	cr_assert_str_eq(sv.reqs[0].method, "GET");
	cr_assert_str_eq(sv.reqs[0].path, "/whole");
	cr_assert_str_eq(sv.reqs[0].query, "log&source_id=app-1");
	cr_assert_str_eq(sv.reqs[0].authorization, "bearer token-1");
	cr_assert_str_eq(sv.reqs[0].accept, "*/*");
	cr_assert_neq(strstr(sv.reqs[0].authority, "127.0.0.1:"), NULL, "%s", sv.reqs[0].authority);
	cr_assert_neq(strstr(sv.reqs[0].peer, "127.0.0.1:"), NULL);
	cr_assert(strcasestr(x.head, "content-type: text/plain\r\n") != NULL, "%s", x.head);
	cr_assert(strcasestr(x.head, "x-test: yes\r\n") != NULL, "%s", x.head);
	cr_assert(strcasestr(x.head, "content-length: 9\r\n") != NULL, "%s", x.head);
	cr_assert(strcasestr(x.head, "\r\ndate: ") != NULL, "%s", x.head);
	cr_assert(strcasestr(x.head, "transfer-encoding") == NULL, "%s", x.head);
	cr_assert(RUN_UNTIL(sv.closes == 1, WAIT_MS));
	cr_assert_eq(sv.completes, 1);
	cr_assert_eq(sv.refusals, 0, "%s", sv.refused_why);
	xfer_free(&x, 1);
	unserve(srv);
}

Test(http, alpn_http_1_1_gets_a_whole_http_1_1_response_with_its_request_seen_in_full)
{
	whole_response(true, CURL_HTTP_VERSION_1_1, false, LGR_HTTP_1_1, CURL_HTTP_VERSION_1_1);
}

Test(http, alpn_h2_gets_a_whole_http_2_response_with_its_request_seen_in_full)
{
	whole_response(true, CURL_HTTP_VERSION_2TLS, false, LGR_HTTP_2, CURL_HTTP_VERSION_2_0);
}

Test(http, a_tls_client_without_alpn_is_served_http_1_1)
{
	whole_response(true, CURL_HTTP_VERSION_2TLS, true, LGR_HTTP_1_1, CURL_HTTP_VERSION_1_1);
}

Test(http, cleartext_http_1_1_is_served)
{
	whole_response(false, CURL_HTTP_VERSION_1_1, false, LGR_HTTP_1_1, CURL_HTTP_VERSION_1_1);
}

Test(http, cleartext_http_2_with_prior_knowledge_is_served)
{
	whole_response(false, CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE, false, LGR_HTTP_2, CURL_HTTP_VERSION_2_0);
}

Test(http, a_cleartext_upgrade_to_h2c_is_ignored_and_answered_in_http_1_1)
{
	whole_response(false, CURL_HTTP_VERSION_2_0, false, LGR_HTTP_1_1, CURL_HTTP_VERSION_1_1);
}

Test(http, head_gets_the_length_of_the_body_without_the_body)
{
	struct lgr_http_server *srv = serve(true, NULL);
	struct xfer x = {.version = CURL_HTTP_VERSION_1_1, .nobody = true};

	url(&x, true, srv, "/whole");
	fetch(&x);
	cr_assert_eq(x.rc, CURLE_OK, "%s", curl_easy_strerror(x.rc));
	cr_assert_str_eq(sv.reqs[0].method, "HEAD");
	cr_assert(strcasestr(x.head, "content-length: 9\r\n") != NULL, "%s", x.head);
	cr_assert_eq(x.body_len, 0);
	xfer_free(&x, 1);
	unserve(srv);
}

Test(http, keep_alive_serves_two_requests_on_one_connection)
{
	struct lgr_http_server *srv = serve(true, NULL);
	struct xfer xs[2] = {{.version = CURL_HTTP_VERSION_1_1}, {.version = CURL_HTTP_VERSION_1_1}};
	struct job job;

	url(&xs[0], true, srv, "/whole");
	url(&xs[1], true, srv, "/nothing");
	start(&job, xs, 2, true);
	finish(&job);
	cr_assert_eq(xs[0].rc, CURLE_OK);
	cr_assert_eq(xs[1].rc, CURLE_OK);
	cr_assert_eq(xs[0].status, 200);
	cr_assert_eq(xs[1].status, 404);
	cr_assert_eq(xs[1].connects, 0, "the second request reused the connection");
	cr_assert_eq(sv.requests, 2);
	cr_assert_str_eq(sv.reqs[0].peer, sv.reqs[1].peer);
	cr_assert(RUN_UNTIL(lgr_http_server_connections(srv) == 0, WAIT_MS), "the client closed its connection");
	xfer_free(xs, 2);
	unserve(srv);
}

Test(http, pipelined_requests_are_answered_in_order)
{
	struct lgr_http_server *srv = serve(false, NULL);
	static const char req[] = "GET /whole HTTP/1.1\r\nHost: a\r\n\r\n"
				  "GET /nothing HTTP/1.1\r\nHost: a\r\n\r\n"
				  "GET /whole HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
	struct raw r;
	char *second, *third;

	raw_exchange(&r, lgr_http_server_port(srv), req, sizeof(req) - 1);
	cr_assert_eq(sv.requests, 3);
	cr_assert_eq(strncmp(r.resp, "HTTP/1.1 200 OK\r\n", 17), 0, "%s", r.resp);
	second = strstr(r.resp + 1, "HTTP/1.1 404 Not Found\r\n");
	cr_assert_not_null(second, "%s", r.resp);
	third = strstr(second + 1, "HTTP/1.1 200 OK\r\n");
	cr_assert_not_null(third, "%s", r.resp);
	cr_assert_not_null(strstr(third, "Connection: close\r\n"), "%s", third);
	cr_assert_not_null(strstr(third, "\r\n\r\nhello 11\n"), "%s", third);
	unserve(srv);
}

/* An HPACK field as a literal without indexing, no Huffman coding (short names and values). */
static size_t literal(uint8_t *p, const char *name, const char *value)
{
	size_t n = strlen(name), v = strlen(value);

	p[0] = 0;
	p[1] = (uint8_t)n;
	memcpy(p + 2, name, n);
	p[2 + n] = (uint8_t)v;
	memcpy(p + 3 + n, value, v);
	return 3 + n + v;
}

static size_t frame_header(uint8_t *p, size_t len, uint8_t type, uint8_t flags, uint32_t id)
{
	p[0] = (uint8_t)(len >> 16);
	p[1] = (uint8_t)(len >> 8);
	p[2] = (uint8_t)len;
	p[3] = type;
	p[4] = flags;
	p[5] = (uint8_t)(id >> 24);
	p[6] = (uint8_t)(id >> 16);
	p[7] = (uint8_t)(id >> 8);
	p[8] = (uint8_t)id;
	return 9;
}

Test(http, a_cleartext_http_2_request_arriving_with_its_preface_in_one_write_is_served)
{
	struct lgr_http_server_config cfg = {.idle_ms = 300}; /* the server ends the connection once idle */
	struct lgr_http_server *srv = serve(false, &cfg);
	uint8_t req[512], block[256];
	size_t n = 0, b = 0;
	struct raw r;

	memcpy(req, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24);
	n = 24;
	n += frame_header(req + n, 0, 4, 0, 0); /* SETTINGS */
	b += literal(block + b, ":method", "GET");
	b += literal(block + b, ":scheme", "http");
	b += literal(block + b, ":path", "/whole?q");
	b += literal(block + b, ":authority", "gw");
	n += frame_header(req + n, b, 1, 0x05, 1); /* HEADERS, END_STREAM | END_HEADERS */
	memcpy(req + n, block, b);
	n += b;
	raw_exchange(&r, lgr_http_server_port(srv), (const char *)req, n);
	cr_assert_eq(sv.requests, 1, "log: %s", logs);
	cr_assert_eq(sv.reqs[0].version, LGR_HTTP_2);
	cr_assert_str_eq(sv.reqs[0].authority, "gw");
	cr_assert_str_eq(sv.reqs[0].query, "q");
	cr_assert(memmem(r.resp, r.resp_len, "hello 20\n", 9) != NULL, "the DATA frame carries the body");
	unserve(srv);
}

/* ---- limits and refusals ------------------------------------------------------------------------------------- */

static void refused(bool tls, long version, const char *header, const char *post, size_t post_len, long want)
{
	struct lgr_http_server_config cfg = {.max_header = 8192, .max_body = 1024};
	struct lgr_http_server *srv = serve(tls, &cfg);
	struct xfer x = {.version = version, .header = header, .post = post, .post_len = post_len};

	url(&x, tls, srv, "/whole");
	fetch(&x);
	cr_assert_eq(x.status, want, "status %ld, curl %s; log: %s", x.status, curl_easy_strerror(x.rc), logs);
	cr_assert_eq(sv.requests, 0, "the handler never sees it");
	cr_assert(sv.refusals >= 1);
	cr_assert_eq(sv.refused_status, want, "%d: %s", sv.refused_status, sv.refused_why);
	xfer_free(&x, 1);
	unserve(srv);
}

static char *big_header(void)
{
	static char h[20100];

	memcpy(h, "X-Big: ", 7);
	memset(h + 7, 'a', 20000);
	h[20007] = '\0';
	return h;
}

Test(http, headers_over_the_limit_are_431_in_http_1_1)
{
	refused(true, CURL_HTTP_VERSION_1_1, big_header(), NULL, 0, 431);
}

Test(http, headers_over_the_limit_are_431_in_http_2)
{
	refused(true, CURL_HTTP_VERSION_2TLS, big_header(), NULL, 0, 431);
}

Test(http, a_body_over_the_limit_is_413_in_http_1_1)
{
	static char body[4096];

	memset(body, 'b', sizeof(body));
	refused(true, CURL_HTTP_VERSION_1_1, "Expect:", body, sizeof(body), 413);
}

Test(http, a_body_over_the_limit_is_413_in_http_2)
{
	static char body[4096];

	memset(body, 'b', sizeof(body));
	refused(true, CURL_HTTP_VERSION_2TLS, NULL, body, sizeof(body), 413);
}

Test(http, a_small_body_reaches_the_handler)
{
	struct lgr_http_server *srv = serve(true, NULL);
	struct xfer x = {.version = CURL_HTTP_VERSION_1_1, .post = "0123456789", .post_len = 10};

	url(&x, true, srv, "/whole");
	fetch(&x);
	cr_assert_eq(x.status, 200);
	cr_assert_str_eq(sv.reqs[0].method, "POST");
	cr_assert_eq(sv.reqs[0].body_len, 10);
	xfer_free(&x, 1);
	unserve(srv);
}

static void malformed(const char *req, const char *want_status_line, int want)
{
	struct lgr_http_server *srv = serve(false, NULL);
	struct raw r;

	raw_exchange(&r, lgr_http_server_port(srv), req, strlen(req));
	cr_assert_eq(strncmp(r.resp, want_status_line, strlen(want_status_line)), 0, "%s", r.resp);
	cr_assert_not_null(strstr(r.resp, "Connection: close\r\n"), "%s", r.resp);
	cr_assert_eq(sv.requests, 0);
	cr_assert_eq(sv.refused_status, want, "%s", sv.refused_why);
	cr_assert(RUN_UNTIL(lgr_http_server_connections(srv) == 0, WAIT_MS), "the server closed the connection");
	unserve(srv);
}

Test(http, a_malformed_request_is_400_and_the_connection_closes)
{
	malformed("GET / HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n", "HTTP/1.1 400 Bad Request\r\n", 400);
}

Test(http, garbage_is_400)
{
	malformed("\x16\x03\x01 not http at all\r\n\r\n", "HTTP/1.1 400 Bad Request\r\n", 400);
}

Test(http, an_http_1_1_request_without_host_is_400)
{
	malformed("GET / HTTP/1.1\r\n\r\n", "HTTP/1.1 400 Bad Request\r\n", 400);
}

Test(http, a_request_line_over_the_limit_is_431)
{
	static char req[12000];

	memcpy(req, "GET /", 5);
	memset(req + 5, 'p', 10000);
	snprintf(req + 10005, sizeof(req) - 10005, " HTTP/1.1\r\nHost: a\r\n\r\n");
	malformed(req, "HTTP/1.1 431 Request Header Fields Too Large\r\n", 431);
}

/* ---- TLS ---------------------------------------------------------------------------------------------------- */

Test(http, a_client_certificate_is_optional_and_verified_when_sent)
{
	struct lgr_http_server *srv = serve(true, NULL);
	struct xfer xs[2] = {{.version = CURL_HTTP_VERSION_2TLS, .cert = true}, {.version = CURL_HTTP_VERSION_2TLS}};

	url(&xs[0], true, srv, "/whole");
	url(&xs[1], true, srv, "/whole");
	fetch(&xs[0]);
	fetch(&xs[1]);
	cr_assert_eq(xs[0].status, 200, "%s", logs);
	cr_assert_eq(xs[1].status, 200, "%s", logs);
	cr_assert_eq(sv.requests, 2);
	cr_assert(sv.reqs[0].cert, "the handler sees the verified certificate");
	cr_assert_not(sv.reqs[1].cert, "no certificate");
	xfer_free(xs, 2);
	unserve(srv);
}

struct tls10 {
	uint16_t port;
	int result;
	atomic_bool done;
};

static void *run_tls10(void *arg)
{
	struct tls10 *t = arg;
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	SSL *ssl;
	int fd = connect_to(t->port);

	/* A client that can only speak TLS 1.0 (security level 0 lets OpenSSL offer it at all). */
	SSL_CTX_set_security_level(ctx, 0);
	SSL_CTX_set_cipher_list(ctx, "ALL:@SECLEVEL=0");
	SSL_CTX_set_min_proto_version(ctx, TLS1_VERSION);
	SSL_CTX_set_max_proto_version(ctx, TLS1_VERSION);
	ssl = SSL_new(ctx);
	SSL_set_fd(ssl, fd);
	t->result = SSL_connect(ssl);
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	close(fd);
	atomic_store(&t->done, true);
	return NULL;
}

Test(http, tls_1_0_is_refused)
{
	struct lgr_http_server *srv = serve(true, NULL);
	struct tls10 t = {.port = lgr_http_server_port(srv)};
	pthread_t th;

	cr_assert_eq(pthread_create(&th, NULL, run_tls10, &t), 0);
	cr_assert(RUN_UNTIL(atomic_load(&t.done) && sv.refusals > 0, WAIT_MS), "%s", logs);
	pthread_join(th, NULL);
	cr_assert_neq(t.result, 1, "the handshake failed");
	cr_assert_eq(sv.refused_status, -1);
	cr_assert_not_null(strstr(sv.refused_why, "TLS"), "%s", sv.refused_why);
	cr_assert_not_null(strstr(sv.refused_why, "unsupported protocol"), "%s", sv.refused_why);
	cr_assert_eq(sv.requests, 0);
	unserve(srv);
}

/* ---- streaming responses ------------------------------------------------------------------------------------- */

static void streaming(bool tls, long version, long curl_version)
{
	struct lgr_http_server *srv = serve(tls, NULL);
	struct xfer x = {.version = version};
	struct job job;

	url(&x, tls, srv, "/stream");
	x.header = "Accept: text/event-stream";
	start(&job, &x, 1, true);
	cr_assert(RUN_UNTIL(sv.nheld == 1 && atomic_load(&x.first), WAIT_MS), "first event; log: %s", logs);
	cr_assert_not(atomic_load(&job.done), "the client saw the first event while the response goes on");
	cr_assert_str_eq(sv.reqs[0].accept, "text/event-stream");
	cr_assert_eq(lgr_http_exchange_write(sv.held[0], "data: second\n\n", 14), LGR_OK);
	cr_assert_eq(lgr_http_exchange_write(sv.held[0], "", 0), LGR_OK, "an empty write is no chunk");
	cr_assert_eq(lgr_http_exchange_end(sv.held[0]), LGR_OK);
	finish(&job);
	cr_assert_eq(x.rc, CURLE_OK, "%s", curl_easy_strerror(x.rc));
	cr_assert_eq(x.http_version, curl_version);
	cr_assert_str_eq(x.body, "data: first\n\ndata: second\n\n");
	cr_assert(strcasestr(x.head, "content-type: text/event-stream\r\n") != NULL, "%s", x.head);
	cr_assert(strcasestr(x.head, "cache-control: no-cache\r\n") != NULL, "%s", x.head);
	if (curl_version == CURL_HTTP_VERSION_1_1) {
		cr_assert(strstr(x.head, "Transfer-Encoding: chunked\r\n") != NULL, "%s", x.head);
		cr_assert(strstr(x.head, "Connection: keep-alive\r\n") != NULL, "%s", x.head);
	} else {
		cr_assert(strcasestr(x.head, "connection:") == NULL, "no connection header in HTTP/2: %s", x.head);
	}
	cr_assert(RUN_UNTIL(sv.closes == 1, WAIT_MS));
	cr_assert_eq(sv.completes, 1);
	xfer_free(&x, 1);
	unserve(srv);
}

Test(http, a_streaming_response_arrives_incrementally_in_http_1_1_chunks)
{
	streaming(true, CURL_HTTP_VERSION_1_1, CURL_HTTP_VERSION_1_1);
}

Test(http, a_streaming_response_arrives_incrementally_in_http_2)
{
	streaming(true, CURL_HTTP_VERSION_2TLS, CURL_HTTP_VERSION_2_0);
}

Test(http, a_streaming_response_arrives_incrementally_in_cleartext_http_2)
{
	streaming(false, CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE, CURL_HTTP_VERSION_2_0);
}

static void client_leaves(long version)
{
	struct lgr_http_server *srv = serve(true, NULL);
	struct xfer x = {.version = version, .abort_first = true};
	struct job job;

	url(&x, true, srv, "/stream");
	start(&job, &x, 1, false);
	cr_assert(RUN_UNTIL(sv.closes == 1, WAIT_MS), "on_close; log: %s", logs);
	cr_assert_eq(sv.completes, 0, "the response did not complete");
	cr_assert_eq(sv.held[0], NULL);
	finish(&job);
	cr_assert_eq(x.rc, CURLE_WRITE_ERROR);
	xfer_free(&x, 1);
	unserve(srv);
}

Test(http, a_client_leaving_a_streaming_response_is_on_close_in_http_1_1)
{
	client_leaves(CURL_HTTP_VERSION_1_1);
}

Test(http, a_client_leaving_a_streaming_response_is_on_close_in_http_2)
{
	client_leaves(CURL_HTTP_VERSION_2TLS);
}

static void bounded(long version)
{
	struct lgr_http_server_config cfg = {.max_send_queue = 256 * 1024};
	struct lgr_http_server *srv = serve(true, &cfg);
	struct xfer x = {.version = version};

	url(&x, true, srv, "/big");
	fetch(&x);
	cr_assert_eq(x.rc, CURLE_OK, "%s; log: %s", curl_easy_strerror(x.rc), logs);
	cr_assert_eq(x.body_len, BIG_SIZE);
	for (size_t i = 0; i < x.body_len; i++)
		cr_assert_eq((unsigned char)x.body[i], i % 251, "byte %zu", i);
	cr_assert_gt(sv.drains, 0, "the queue filled up and drained");
	cr_assert(RUN_UNTIL(sv.completes == 1, WAIT_MS));
	xfer_free(&x, 1);
	unserve(srv);
}

Test(http, the_send_queue_is_bounded_and_drain_notices_resume_writing_in_http_1_1)
{
	bounded(CURL_HTTP_VERSION_1_1);
}

Test(http, the_send_queue_is_bounded_and_drain_notices_resume_writing_in_http_2)
{
	bounded(CURL_HTTP_VERSION_2TLS);
}

Test(http, a_full_queue_refuses_a_write_with_efull_and_an_empty_one_takes_any_size)
{
	struct lgr_http_server_config cfg = {.max_send_queue = 1024};
	struct lgr_http_server *srv = serve(false, &cfg);
	struct xfer x = {.version = CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE};
	static char block[4096];
	struct job job;
	int rc;

	url(&x, false, srv, "/stream");
	start(&job, &x, 1, true);
	cr_assert(RUN_UNTIL(sv.nheld == 1 && atomic_load(&x.first), WAIT_MS));
	cr_assert_eq(lgr_http_exchange_queued(sv.held[0]), 0);
	cr_assert_eq(lgr_http_exchange_write(sv.held[0], block, sizeof(block)), LGR_OK, "empty: any size");
	rc = lgr_http_exchange_write(sv.held[0], block, 16);
	cr_assert_eq(rc, LGR_EFULL);
	cr_assert(RUN_UNTIL(sv.drains == 1, WAIT_MS), "drain notice");
	cr_assert_eq(lgr_http_exchange_end(sv.held[0]), LGR_OK);
	cr_assert_eq(lgr_http_exchange_end(sv.held[0]), LGR_EINVAL, "ended once");
	finish(&job);
	cr_assert_eq(x.body_len, 13 + sizeof(block));
	xfer_free(&x, 1);
	unserve(srv);
}

static void many(long version, int n, size_t want_connections)
{
	struct lgr_http_server *srv = serve(true, NULL);
	struct xfer *xs = calloc((size_t)n, sizeof(*xs));
	struct job job;
	int firsts = 0;

	for (int i = 0; i < n; i++) {
		xs[i].version = version;
		url(&xs[i], true, srv, "/stream");
	}
	start(&job, xs, n, false);
	cr_assert(RUN_UNTIL(sv.nheld == n, WAIT_MS), "%d of %d streams open; log: %s", sv.nheld, n, logs);
	for (int i = 0; i < n; i++)
		cr_assert(RUN_UNTIL(atomic_load(&xs[i].first), WAIT_MS), "stream %d", i);
	cr_assert_eq(lgr_http_server_connections(srv), want_connections);
	for (int round = 0; round < 10; round++) {
		for (int i = 0; i < n; i++) {
			char ev[32];

			snprintf(ev, sizeof(ev), "data: %d\n\n", round);
			cr_assert_eq(lgr_http_exchange_write(sv.held[i], ev, strlen(ev)), LGR_OK);
		}
		event_base_loop(base, EVLOOP_NONBLOCK);
	}
	for (int i = 0; i < n; i++)
		cr_assert_eq(lgr_http_exchange_end(sv.held[i]), LGR_OK);
	finish(&job);
	for (int i = 0; i < n; i++) {
		cr_assert_eq(xs[i].rc, CURLE_OK, "%d: %s", i, curl_easy_strerror(xs[i].rc));
		cr_assert_str_eq(xs[i].body, "data: first\n\ndata: 0\n\ndata: 1\n\ndata: 2\n\ndata: 3\n\ndata: 4\n\n"
					     "data: 5\n\ndata: 6\n\ndata: 7\n\ndata: 8\n\ndata: 9\n\n");
		firsts += atomic_load(&xs[i].first);
	}
	cr_assert_eq(firsts, n);
	cr_assert(RUN_UNTIL(sv.completes == n, WAIT_MS));
	xfer_free(xs, n);
	free(xs);
	unserve(srv);
}

Test(http, fifty_concurrent_streaming_responses_share_one_http_2_connection)
{
	many(CURL_HTTP_VERSION_2TLS, 50, 1);
}

Test(http, fifty_concurrent_streaming_responses_over_fifty_http_1_1_connections)
{
	many(CURL_HTTP_VERSION_1_1, 50, 50);
}

/* ---- shutdown ----------------------------------------------------------------------------------------------- */

static void on_done(void *ud)
{
	sv.done = true;
}

Test(http, shutdown_ends_open_streams_answers_waiting_requests_and_closes_every_connection)
{
	struct lgr_http_server *srv = serve(true, NULL);
	struct xfer xs[3] = {{.version = CURL_HTTP_VERSION_1_1}, {.version = CURL_HTTP_VERSION_2TLS},
		{.version = CURL_HTTP_VERSION_2TLS}};
	struct job jobs[3];
	struct xfer late = {.version = CURL_HTTP_VERSION_1_1};

	url(&xs[0], true, srv, "/stream");
	url(&xs[1], true, srv, "/stream");
	url(&xs[2], true, srv, "/later");
	for (int i = 0; i < 3; i++)
		start(&jobs[i], &xs[i], 1, true);
	cr_assert(RUN_UNTIL(sv.nheld == 3 && atomic_load(&xs[0].first) && atomic_load(&xs[1].first), WAIT_MS));
	lgr_http_server_shutdown(srv, 100, on_done, NULL);
	cr_assert(RUN_UNTIL(sv.done, WAIT_MS), "done; log: %s", logs);
	cr_assert_eq(lgr_http_server_connections(srv), 0);
	for (int i = 0; i < 3; i++)
		finish(&jobs[i]);
	cr_assert_eq(xs[0].rc, CURLE_OK, "%s", curl_easy_strerror(xs[0].rc));
	cr_assert_eq(xs[1].rc, CURLE_OK, "%s", curl_easy_strerror(xs[1].rc));
	cr_assert_str_eq(xs[0].body, "data: first\n\n");
	cr_assert_str_eq(xs[1].body, "data: first\n\n");
	cr_assert_eq(xs[2].status, 503);
	cr_assert_eq(sv.closes, 3);
	cr_assert_eq(sv.completes, 3, "every response ended properly");
	/* The listener is gone. */
	url(&late, true, srv, "/whole");
	fetch(&late);
	cr_assert_eq(late.rc, CURLE_COULDNT_CONNECT, "%s", curl_easy_strerror(late.rc));
	xfer_free(xs, 3);
	xfer_free(&late, 1);
	unserve(srv);
}

Test(http, freeing_the_server_ends_every_exchange_once)
{
	struct lgr_http_server *srv = serve(true, NULL);
	struct xfer xs[2] = {{.version = CURL_HTTP_VERSION_1_1}, {.version = CURL_HTTP_VERSION_2TLS}};
	struct job job;

	url(&xs[0], true, srv, "/stream");
	url(&xs[1], true, srv, "/stream");
	start(&job, xs, 2, false);
	cr_assert(RUN_UNTIL(sv.nheld == 2, WAIT_MS));
	unserve(srv);
	cr_assert_eq(sv.closes, 2);
	cr_assert_eq(sv.completes, 0);
	finish(&job);
	cr_assert_neq(xs[0].rc, CURLE_OK);
	cr_assert_neq(xs[1].rc, CURLE_OK);
	xfer_free(xs, 2);
}

/* Sends bytes on a connected socket (they are small: one send). */
static void say(int fd, const char *what)
{
	cr_assert_eq(send(fd, what, strlen(what), MSG_NOSIGNAL), (ssize_t)strlen(what));
}

Test(http, an_idle_keep_alive_connection_closes_after_idle_ms)
{
	struct lgr_http_server_config cfg = {.idle_ms = 200};
	struct lgr_http_server *srv = serve(false, &cfg);
	int fd = connect_to(lgr_http_server_port(srv));

	cr_assert_geq(fd, 0);
	say(fd, "GET /whole HTTP/1.1\r\nHost: a\r\n\r\n");
	cr_assert(RUN_UNTIL(sv.closes == 1, WAIT_MS));
	cr_assert_eq(lgr_http_server_connections(srv), 1, "kept alive");
	cr_assert(RUN_UNTIL(lgr_http_server_connections(srv) == 0, WAIT_MS), "closed when idle");
	cr_assert_eq(sv.refusals, 0, "an idle close is no refusal: %s", sv.refused_why);
	close(fd);
	unserve(srv);
}

Test(http, headers_not_complete_within_idle_ms_close_the_connection_as_a_refusal)
{
	struct lgr_http_server_config cfg = {.idle_ms = 200};
	struct lgr_http_server *srv = serve(false, &cfg);
	int fd = connect_to(lgr_http_server_port(srv));

	cr_assert_geq(fd, 0);
	say(fd, "GET /whole HTTP/1.1\r\nHost: a\r\n");
	cr_assert(RUN_UNTIL(lgr_http_server_connections(srv) == 0 && sv.refusals == 1, WAIT_MS), "%s", logs);
	cr_assert_not_null(strstr(sv.refused_why, "incomplete"), "%s", sv.refused_why);
	cr_assert_eq(sv.requests, 0);
	close(fd);
	unserve(srv);
}

Test(http, a_connection_that_never_chooses_a_protocol_is_closed_at_the_handshake_deadline)
{
	struct lgr_http_server_config cfg = {.handshake_ms = 200};
	struct lgr_http_server *srv = serve(true, &cfg);
	int fd = connect_to(lgr_http_server_port(srv));

	cr_assert_geq(fd, 0);
	cr_assert(RUN_UNTIL(lgr_http_server_connections(srv) == 0 && sv.refusals == 1, WAIT_MS), "%s", logs);
	cr_assert_not_null(strstr(sv.refused_why, "TLS handshake"), "%s", sv.refused_why);
	close(fd);
	unserve(srv);
}

Test(http, connections_beyond_the_limit_are_refused)
{
	struct lgr_http_server_config cfg = {.max_connections = 1};
	struct lgr_http_server *srv = serve(false, &cfg);
	int first = connect_to(lgr_http_server_port(srv));
	struct raw r;

	cr_assert(RUN_UNTIL(lgr_http_server_connections(srv) == 1, WAIT_MS));
	raw_exchange(&r, lgr_http_server_port(srv), "GET /whole HTTP/1.1\r\nHost: a\r\n\r\n", 33);
	cr_assert_eq(r.resp_len, 0, "closed without an answer");
	cr_assert_eq(sv.refusals, 1);
	cr_assert_not_null(strstr(sv.refused_why, "refused"), "%s", sv.refused_why);
	close(first);
	unserve(srv);
}
