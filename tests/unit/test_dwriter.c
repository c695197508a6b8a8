/*
 * test_dwriter.c: the drain writers against in-process receivers on 127.0.0.1, one event loop per test: a TCP
 * receiver (accepting, reading, stalling, closing on demand), the same with TLS (bufferevent_openssl, client
 * certificates required) and an HTTPS receiver (lgr_http over TLS, HTTP/2 or HTTP/1.1 by ALPN) whose answers each
 * test scripts. The oracle is always the bytes and headers the receiver got, and the writer's counters. The PKI
 * comes from contrib/gen-pki.sh, plus a second CA and a certificate for another host name made with openssl.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <criterion/hooks.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "lgr_drain.h"
#include "lgr_dwriter.h"
#include "lgr_http.h"
#include "lgr_syslog.h"
#include "lgr_tls.h"

#define TOP_SRCDIR VECTORS_DIR "/../.."
#define WAIT_MS	   10000

/* drains.md section 1's vector, 118 bytes with its newline */
#define VECTOR_LINE                                                                                                    \
	"<14>1 1970-01-01T00:00:00.012345+00:00 test-hostname test-app-id [APP/2] - [tags@47450 source_type=\"APP\"] " \
	"just a test\n"

static char pki[256];
static struct event_base *base;
static struct event *tick;
static struct lgr_dw_ctx *ctx;
static struct lgr_drain_deny deny;
static char logs[16384];

/* ---- the PKI: made once per run (RSA key generation is slow), found by the test processes in the environment -- */

ReportHook(PRE_ALL)(struct criterion_test_set *tests)
{
	char tmpl[] = "/tmp/lgr-dw-XXXXXX";
	char cmd[2048];

	(void)tests;
	if (mkdtemp(tmpl) == NULL)
		return;
	snprintf(pki, sizeof(pki), "%s", tmpl);
	snprintf(cmd, sizeof(cmd),
		"'%s/contrib/gen-pki.sh' '%s' >/dev/null && cd '%s' && "
		/* a CA the drains do not trust */
		"openssl req -x509 -newkey rsa:2048 -nodes -keyout other-ca.key -out other-ca.crt -days 2 "
		"-subj /CN=other-ca 2>/dev/null && "
		/* a server certificate from the right CA for a name the drains do not use */
		"openssl req -newkey rsa:2048 -nodes -keyout elsewhere.key -out elsewhere.csr -subj /CN=elsewhere "
		"2>/dev/null && printf 'subjectAltName=DNS:elsewhere.example\\n' >elsewhere.ext && "
		"openssl x509 -req -in elsewhere.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out elsewhere.crt "
		"-days 2 -extfile elsewhere.ext 2>/dev/null",
		TOP_SRCDIR, pki, pki);
	if (system(cmd) != 0)
		fprintf(stderr, "making the test PKI failed\n");
	setenv("LGR_DW_TEST_PKI", pki, 1);
}

ReportHook(POST_ALL)(struct criterion_global_stats *stats)
{
	char cmd[300];

	(void)stats;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", pki);
	if (pki[0] != '\0' && system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", pki);
}

static const char *pki_path(const char *name)
{
	static char buf[8][512];
	static int next;
	char *p = buf[next++ % 8];

	snprintf(p, 512, "%s/%s", pki, name);
	return p;
}

/* A PEM file's text; the caller frees it. */
static char *pem(const char *name)
{
	FILE *f = fopen(pki_path(name), "r");
	char *s;
	long n;

	cr_assert_not_null(f, "no %s in the test PKI", name);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	s = calloc(1, (size_t)n + 1);
	cr_assert_eq(fread(s, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	return s;
}

/* ---- the loop ---------------------------------------------------------------------------------------------- */

static void keep_log(enum lgr_log_level level, const char *msg, void *ud)
{
	size_t have = strlen(logs);

	(void)ud;
	if (getenv("DW_TEST_VERBOSE") != NULL)
		fprintf(stderr, "[%d] %s\n", level, msg);
	if (have + strlen(msg) + 2 < sizeof(logs))
		snprintf(logs + have, sizeof(logs) - have, "%s\n", msg);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
}

/* Runs the loop until cond holds or ms pass; the value of cond. */
#define RUN_UNTIL(cond, ms)                                                                                            \
	({                                                                                                             \
		uint64_t end_ = lgr_now_ms() + (ms);                                                                   \
		bool ok_;                                                                                              \
		while (!(ok_ = (cond)) && lgr_now_ms() < end_)                                                         \
			event_base_loop(base, EVLOOP_ONCE);                                                            \
		ok_;                                                                                                   \
	})

static void run_for(unsigned ms)
{
	uint64_t end = lgr_now_ms() + ms;

	while (lgr_now_ms() < end)
		event_base_loop(base, EVLOOP_ONCE);
}

static void make_ctx(const char *const *ranges, size_t n)
{
	struct lgr_dw_ctx_conf cc = {0};

	if (n > 0)
		cr_assert_eq(lgr_drain_deny_init(&deny, ranges, n, NULL), LGR_OK);
	cc.base = base;
	cc.deny = n > 0 ? &deny : NULL;
	cc.user_agent = "dw-test/1";
	cc.log = keep_log;
	cr_assert_eq(lgr_dw_ctx_new(&cc, &ctx), LGR_OK);
}

static void setup(void)
{
	struct timeval ms = {0, 5000};

	signal(SIGPIPE, SIG_IGN);
	snprintf(pki, sizeof(pki), "%s", getenv("LGR_DW_TEST_PKI") != NULL ? getenv("LGR_DW_TEST_PKI") : "");
	logs[0] = '\0';
	base = event_base_new();
	cr_assert_not_null(base);
	/* wakes the loop so that RUN_UNTIL looks at its condition again */
	tick = event_new(base, -1, EV_PERSIST, on_tick, NULL);
	event_add(tick, &ms);
}

static void teardown(void)
{
	lgr_dw_ctx_free(ctx);
	ctx = NULL;
	lgr_drain_deny_cleanup(&deny);
	memset(&deny, 0, sizeof(deny));
	event_free(tick);
	event_base_free(base);
	base = NULL;
}

TestSuite(dwriter, .init = setup, .fini = teardown, .timeout = 60);

/* ---- a writer and what it told us --------------------------------------------------------------------------- */

static struct {
	int ready, errors;
	enum lgr_drain_reason why;
	char text[400];
	struct lgr_dw *free_me; /* freed from inside on_ready */
} seen;

static void on_ready(void *ud)
{
	(void)ud;
	seen.ready++;
	if (seen.free_me != NULL) {
		lgr_dw_free(seen.free_me);
		seen.free_me = NULL;
	}
}

static void on_error(enum lgr_drain_reason why, const char *text, void *ud)
{
	(void)ud;
	seen.errors++;
	seen.why = why;
	snprintf(seen.text, sizeof(seen.text), "%s", text);
}

static struct lgr_drain *drain(const char *url)
{
	struct lgr_drain *d = NULL;
	enum lgr_drain_reason why;

	cr_assert_eq(lgr_drain_parse(url, strlen(url), 0, &d, &why), LGR_OK, "%s: %d", url, why);
	return d;
}

static struct lgr_dw *writer(const struct lgr_drain *d, const struct lgr_dw_conf *base_conf)
{
	struct lgr_dw_conf c = {0};
	struct lgr_dw *w = NULL;
	enum lgr_drain_reason why = LGR_DRAIN_OK;

	if (base_conf != NULL)
		c = *base_conf;
	c.drain = d;
	c.on_ready = on_ready;
	c.on_error = on_error;
	memset(&seen, 0, sizeof(seen));
	cr_assert_eq(lgr_dw_new(ctx, &c, &w, &why), LGR_OK, "lgr_dw_new: %d", why);
	return w;
}

/* Offers a line until the writer takes it (waiting for on_ready after a refusal). */
static void put(struct lgr_dw *w, const char *line)
{
	for (int i = 0; i < 100; i++) {
		int ready = seen.ready;
		int rc = lgr_dw_write(w, line, strlen(line));

		if (rc == LGR_OK)
			return;
		cr_assert_eq(rc, LGR_EFULL, "write: %s", lgr_strerror(rc));
		cr_assert(RUN_UNTIL(seen.ready > ready, WAIT_MS), "no on_ready after LGR_EFULL (logs: %s)", logs);
	}
	cr_assert_fail("the writer never took the line");
}

/* ---- a TCP (or TLS) receiver ------------------------------------------------------------------------------- */

struct conn {
	struct bufferevent *bev;
	int fd; /* a stalled connection: accepted, never read */
};

static struct rcv {
	struct evconnlistener *lis;
	uint16_t port;
	SSL_CTX *ssl;
	bool stall;
	int accepted, handshakes, closed;
	char peer_cn[128], sni[128];
	struct evbuffer *got;
	struct conn conns[32];
	int nconns;
} rcv;

static void rcv_read(struct bufferevent *bev, void *arg)
{
	(void)arg;
	evbuffer_add_buffer(rcv.got, bufferevent_get_input(bev));
}

static void rcv_event(struct bufferevent *bev, short what, void *arg)
{
	(void)arg;
	if (what & BEV_EVENT_CONNECTED) {
		X509 *peer = SSL_get1_peer_certificate(bufferevent_openssl_get_ssl(bev));

		const char *sni = SSL_get_servername(bufferevent_openssl_get_ssl(bev), TLSEXT_NAMETYPE_host_name);

		rcv.handshakes++;
		snprintf(rcv.sni, sizeof(rcv.sni), "%s", sni != NULL ? sni : "");
		if (peer != NULL) {
			X509_NAME_get_text_by_NID(
				X509_get_subject_name(peer), NID_commonName, rcv.peer_cn, sizeof(rcv.peer_cn));
			X509_free(peer);
		}
		return;
	}
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		for (int i = 0; i < rcv.nconns; i++)
			if (rcv.conns[i].bev == bev)
				rcv.conns[i].bev = NULL;
		bufferevent_free(bev);
		rcv.closed++;
	}
}

static void rcv_serve(int i)
{
	struct bufferevent *bev;
	int fd = rcv.conns[i].fd;

	if (rcv.ssl != NULL)
		bev = bufferevent_openssl_socket_new(
			base, fd, SSL_new(rcv.ssl), BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
	else
		bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	cr_assert_not_null(bev);
	rcv.conns[i].bev = bev;
	rcv.conns[i].fd = -1;
	bufferevent_setcb(bev, rcv_read, NULL, rcv_event, NULL);
	bufferevent_enable(bev, EV_READ);
}

static void rcv_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len, void *arg)
{
	int i = rcv.nconns++;

	(void)l;
	(void)sa;
	(void)len;
	(void)arg;
	cr_assert_lt(i, 32);
	rcv.accepted++;
	rcv.conns[i].fd = fd;
	rcv.conns[i].bev = NULL;
	if (!rcv.stall)
		rcv_serve(i);
}

/* Listens on 127.0.0.1:port (0: any); a small receive buffer so that a stalled receiver stalls soon. */
static void rcv_start(uint16_t port, SSL_CTX *ssl)
{
	struct sockaddr_in sin = {0};
	socklen_t sl = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1, small = 4096;

	cr_assert_geq(fd, 0);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin.sin_port = htons(port);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	cr_assert_eq(listen(fd, 16), 0);
	evutil_make_socket_nonblocking(fd);
	getsockname(fd, (struct sockaddr *)&sin, &sl);
	rcv.port = ntohs(sin.sin_port);
	rcv.ssl = ssl;
	if (rcv.got == NULL)
		rcv.got = evbuffer_new();
	rcv.lis = evconnlistener_new(base, rcv_accept, NULL, LEV_OPT_CLOSE_ON_FREE, -1, fd);
	cr_assert_not_null(rcv.lis);
}

static void rcv_stop(void)
{
	for (int i = 0; i < rcv.nconns; i++) {
		if (rcv.conns[i].bev != NULL)
			bufferevent_free(rcv.conns[i].bev);
		if (rcv.conns[i].fd >= 0)
			close(rcv.conns[i].fd);
	}
	rcv.nconns = 0;
	if (rcv.lis != NULL)
		evconnlistener_free(rcv.lis);
	rcv.lis = NULL;
	if (rcv.ssl != NULL)
		SSL_CTX_free(rcv.ssl);
	rcv.ssl = NULL;
}

static void rcv_cleanup(void)
{
	rcv_stop();
	if (rcv.got != NULL)
		evbuffer_free(rcv.got);
	memset(&rcv, 0, sizeof(rcv));
}

static size_t got_len(void)
{
	return evbuffer_get_length(rcv.got);
}

static bool got_is(const char *want)
{
	size_t n = strlen(want);

	return got_len() == n && memcmp(evbuffer_pullup(rcv.got, -1), want, n) == 0;
}

/* A port nothing listens on (bound, then released). */
static uint16_t free_port(void)
{
	struct sockaddr_in sin = {0};
	socklen_t sl = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	getsockname(fd, (struct sockaddr *)&sin, &sl);
	close(fd);
	return ntohs(sin.sin_port);
}

static char url_buf[512];

/* fmt with "%u" for the port */
static const char *__attribute__((format(printf, 1, 0))) url(const char *fmt, uint16_t port)
{
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
	snprintf(url_buf, sizeof(url_buf), fmt, (unsigned)port);
#pragma GCC diagnostic pop
	return url_buf;
}

/* ---- syslog over TCP ---------------------------------------------------------------------------------------- */

Test(dwriter, syslog_frames_each_line_with_its_octet_count_and_keeps_multi_line_payloads_intact)
{
	const char *multi = "<14>1 - h a [APP/0] - - first line\nsecond line\n\nfourth\n";
	char want[512];
	struct lgr_drain *d;
	struct lgr_dw *w;

	make_ctx(NULL, 0);
	rcv_start(0, NULL);
	d = drain(url("syslog://127.0.0.1:%u", rcv.port));
	w = writer(d, NULL);
	cr_assert(lgr_dw_idle(w));
	cr_assert_eq(rcv.accepted, 0, "lazy: nothing connects before the first line");
	put(w, VECTOR_LINE);
	put(w, multi);
	snprintf(want, sizeof(want), "118 " VECTOR_LINE "%zu %s", strlen(multi), multi);
	cr_assert(RUN_UNTIL(got_len() >= strlen(want), WAIT_MS));
	cr_assert(got_is(want), "received: %.*s", (int)got_len(), evbuffer_pullup(rcv.got, -1));
	cr_assert(RUN_UNTIL(lgr_dw_counters(w)->sent == 2, WAIT_MS));
	cr_assert_eq(lgr_dw_counters(w)->lost, 0);
	cr_assert_eq(lgr_dw_counters(w)->connects, 1);
	cr_assert_eq(lgr_dw_counters(w)->errors, 0);
	cr_assert(lgr_dw_idle(w));
	cr_assert_eq(lgr_dw_pending(w), 0);
	cr_assert_eq(rcv.accepted, 1);
	lgr_dw_free(w);
	lgr_drain_free(d);
	rcv_cleanup();
}

Test(dwriter, syslog_reconnects_after_the_receiver_closes_and_later_lines_arrive)
{
	struct lgr_drain *d;
	struct lgr_dw *w;

	make_ctx(NULL, 0);
	rcv_start(0, NULL);
	d = drain(url("syslog://127.0.0.1:%u", rcv.port));
	w = writer(d, NULL);
	put(w, "one\n");
	cr_assert(RUN_UNTIL(got_is("4 one\n"), WAIT_MS));
	/* the receiver drops the connection: the writer sees the close and reconnects for the next line */
	bufferevent_free(rcv.conns[0].bev);
	rcv.conns[0].bev = NULL;
	cr_assert(RUN_UNTIL(lgr_dw_counters(w)->errors == 1, WAIT_MS));
	cr_assert_eq(seen.errors, 1);
	cr_assert_eq(seen.why, LGR_DRAIN_OK);
	cr_assert(strstr(seen.text, "closed by the peer") != NULL, "%s", seen.text);
	put(w, "two\n");
	put(w, "three\n");
	cr_assert(RUN_UNTIL(got_is("4 one\n4 two\n6 three\n"), WAIT_MS), "received: %.*s", (int)got_len(),
		evbuffer_pullup(rcv.got, -1));
	cr_assert_eq(rcv.accepted, 2);
	cr_assert_eq(lgr_dw_counters(w)->connects, 2);
	cr_assert(RUN_UNTIL(lgr_dw_counters(w)->sent == 3, WAIT_MS));
	cr_assert_eq(lgr_dw_counters(w)->lost, 0);
	cr_assert(strstr(logs, "drain syslog://127.0.0.1:") != NULL, "logs: %s", logs);
	lgr_dw_free(w);
	lgr_drain_free(d);
	rcv_cleanup();
}

Test(dwriter, syslog_refused_connection_backs_off_then_on_ready_once_the_receiver_comes_up)
{
	uint16_t port = free_port();
	struct lgr_drain *d;
	struct lgr_dw *w;
	uint64_t errs;

	make_ctx(NULL, 0);
	d = drain(url("syslog://127.0.0.1:%u", port));
	w = writer(d, NULL);
	cr_assert_eq(lgr_dw_write(w, "x\n", 2), LGR_EFULL, "connecting: not now");
	run_for(300);
	errs = lgr_dw_counters(w)->errors;
	/* 1, 2, 4, ... 256 ms: about nine attempts in 300 ms, not hundreds */
	cr_assert_geq(errs, 3);
	cr_assert_leq(errs, 14, "%" PRIu64 " attempts: no backoff", errs);
	cr_assert_eq(seen.ready, 0);
	cr_assert_eq(seen.errors, 1, "transport errors are told once a minute");
	cr_assert(strstr(seen.text, "refused") != NULL, "%s", seen.text);
	cr_assert_eq(lgr_dw_write(w, "x\n", 2), LGR_EFULL);
	rcv_start(port, NULL);
	cr_assert(RUN_UNTIL(seen.ready == 1, WAIT_MS), "logs: %s", logs);
	cr_assert_eq(lgr_dw_write(w, "x\n", 2), LGR_OK);
	cr_assert(RUN_UNTIL(got_is("2 x\n"), WAIT_MS));
	cr_assert_eq(lgr_dw_counters(w)->connects, 1);
	cr_assert_eq(lgr_dw_counters(w)->lost, 0);
	lgr_dw_free(w);
	lgr_drain_free(d);
	rcv_cleanup();
}

/* Offers 1 KiB lines until the writer refuses and stays refusing; the number taken. */
static uint64_t fill(struct lgr_dw *w, size_t max_pending)
{
	char line[1024];
	uint64_t taken = 0;

	memset(line, 'a', sizeof(line));
	line[sizeof(line) - 1] = '\n';
	for (int rounds = 0; rounds < 100000; rounds++) {
		int rc = lgr_dw_write(w, line, sizeof(line));
		int ready = seen.ready;

		if (rc == LGR_OK) {
			taken++;
			continue;
		}
		cr_assert_eq(rc, LGR_EFULL);
		cr_assert_leq(lgr_dw_pending(w), max_pending);
		if (!RUN_UNTIL(seen.ready > ready, 200))
			return taken;
	}
	cr_assert_fail("the writer never stopped taking lines from a receiver that reads nothing");
	return taken;
}

Test(dwriter, syslog_stalled_receiver_fills_max_pending_then_refuses_without_blocking)
{
	size_t max = 64 * 1024;
	struct lgr_dw_conf c = {.max_pending = max};
	struct lgr_drain *d;
	struct lgr_dw *w;
	uint64_t taken, t0;

	make_ctx(NULL, 0);
	rcv_start(0, NULL);
	rcv.stall = true;
	d = drain(url("syslog://127.0.0.1:%u", rcv.port));
	w = writer(d, &c);
	put(w, "first\n");
	t0 = lgr_now_ms();
	taken = fill(w, max);
	cr_assert_lt(lgr_now_ms() - t0, 30000);
	cr_assert_gt(lgr_dw_pending(w), max / 2, "refused with room left: %zu", lgr_dw_pending(w));
	cr_assert_leq(lgr_dw_pending(w), max);
	cr_assert(!lgr_dw_idle(w));
	/* the receiver reads again: everything taken arrives, on_ready follows */
	rcv_serve(0);
	cr_assert(
		RUN_UNTIL(got_len() == 8 + taken * 1029, WAIT_MS), "got %zu of %" PRIu64, got_len(), 8 + taken * 1029);
	cr_assert(RUN_UNTIL(lgr_dw_counters(w)->sent == taken + 1, WAIT_MS));
	cr_assert_geq(seen.ready, 2);
	cr_assert_eq(lgr_dw_counters(w)->lost, 0);
	cr_assert(lgr_dw_idle(w));
	lgr_dw_free(w);
	lgr_drain_free(d);
	rcv_cleanup();
}

Test(dwriter, syslog_lines_held_when_the_connection_breaks_are_counted_lost)
{
	size_t max = 64 * 1024;
	struct lgr_dw_conf c = {.max_pending = max};
	struct lgr_drain *d;
	struct lgr_dw *w;
	struct linger lg = {1, 0};
	uint64_t taken, held;

	make_ctx(NULL, 0);
	rcv_start(0, NULL);
	rcv.stall = true;
	d = drain(url("syslog://127.0.0.1:%u", rcv.port));
	w = writer(d, &c);
	put(w, "first\n");
	taken = fill(w, max) + 1;
	held = lgr_dw_pending(w) / 1029;
	cr_assert_gt(held, 0);
	/* a reset, not a close: the writer finds out at once */
	setsockopt(rcv.conns[0].fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(rcv.conns[0].fd);
	rcv.conns[0].fd = -1;
	rcv.stall = false;
	cr_assert(RUN_UNTIL(lgr_dw_counters(w)->errors == 1, WAIT_MS));
	cr_assert_geq(lgr_dw_counters(w)->lost, held);
	cr_assert_eq(lgr_dw_counters(w)->sent + lgr_dw_counters(w)->lost, taken);
	cr_assert_eq(lgr_dw_pending(w), 0);
	put(w, "after\n");
	cr_assert(RUN_UNTIL(got_is("6 after\n"), WAIT_MS));
	cr_assert_eq(lgr_dw_counters(w)->connects, 2);
	lgr_dw_free(w);
	lgr_drain_free(d);
	rcv_cleanup();
}

Test(dwriter, syslog_free_counts_what_is_still_held_as_lost)
{
	size_t max = 64 * 1024;
	struct lgr_dw_conf c = {.max_pending = max};
	struct lgr_drain *d;
	struct lgr_dw *w;
	uint64_t taken;
	const struct lgr_dw_counters *cn;

	make_ctx(NULL, 0);
	rcv_start(0, NULL);
	rcv.stall = true;
	d = drain(url("syslog://127.0.0.1:%u", rcv.port));
	w = writer(d, &c);
	put(w, "first\n");
	taken = fill(w, max) + 1;
	cn = lgr_dw_counters(w);
	cr_assert_gt(lgr_dw_pending(w), 0);
	/* freed from inside its own on_ready: the writer goes at once, its memory once the callback returns */
	seen.free_me = w;
	rcv_serve(0);
	cr_assert(RUN_UNTIL(seen.free_me == NULL, WAIT_MS));
	(void)cn;
	(void)taken;
	lgr_drain_free(d);
	rcv_cleanup();
}

Test(dwriter, syslog_drain_resolving_into_a_deny_range_fails_and_connects_nowhere)
{
	const char *ranges[] = {"10.0.0.0/8", "127.0.0.0/8"};
	struct lgr_drain *d;
	struct lgr_dw *w;

	make_ctx(ranges, 2);
	rcv_start(0, NULL);
	d = drain(url("syslog://127.0.0.1:%u", rcv.port));
	w = writer(d, NULL);
	cr_assert_eq(lgr_dw_write(w, "x\n", 2), LGR_EFULL);
	cr_assert(RUN_UNTIL(seen.errors == 1, WAIT_MS));
	cr_assert_eq(seen.why, LGR_DRAIN_DENIED);
	cr_assert(strstr(seen.text, "is blacklisted") != NULL, "%s", seen.text);
	cr_assert_eq(lgr_dw_write(w, "x\n", 2), LGR_EIO);
	run_for(50);
	cr_assert_eq(rcv.accepted, 0);
	cr_assert_eq(seen.ready, 0);
	cr_assert_eq(lgr_dw_counters(w)->connects, 0);
	lgr_dw_free(w);
	lgr_drain_free(d);
	rcv_cleanup();
}

Test(dwriter, syslog_host_names_resolve_without_blocking_and_deny_ranges_apply_to_them)
{
	const char *ranges[] = {"192.168.0.0/16"};
	struct lgr_drain *d;
	struct lgr_dw *w;

	make_ctx(ranges, 1);
	rcv_start(0, NULL);
	d = drain(url("syslog://localhost:%u", rcv.port));
	w = writer(d, NULL);
	put(w, "by name\n");
	cr_assert(RUN_UNTIL(got_is("8 by name\n"), WAIT_MS), "logs: %s", logs);
	lgr_dw_free(w);
	lgr_drain_free(d);
	rcv_cleanup();
}

/* ---- syslog over TLS ---------------------------------------------------------------------------------------- */

static SSL_CTX *tls_server(const char *name)
{
	struct lgr_tls_config cfg = {0};
	char crt[64], key[64], err[512];
	SSL_CTX *s = NULL;

	snprintf(crt, sizeof(crt), "%s.crt", name);
	snprintf(key, sizeof(key), "%s.key", name);
	cfg.ca_file = pki_path("ca.crt");
	cfg.cert_file = pki_path(crt);
	cfg.key_file = pki_path(key);
	cfg.require_client_cert = true;
	cr_assert_eq(lgr_tls_server_ctx(&cfg, &s, err, sizeof(err)), LGR_OK, "%s", err);
	return s;
}

struct tls_pems {
	char *ca, *cert, *key;
};

static struct lgr_dw_conf tls_conf(struct tls_pems *p, const char *ca)
{
	struct lgr_dw_conf c = {0};

	p->ca = pem(ca);
	p->cert = pem("client.crt");
	p->key = pem("client.key");
	c.tls.ca = p->ca;
	c.tls.cert = p->cert;
	c.tls.key = p->key;
	return c;
}

static void tls_pems_free(struct tls_pems *p)
{
	free(p->ca);
	free(p->cert);
	free(p->key);
}

Test(dwriter, syslog_tls_verifies_the_server_and_presents_the_client_certificate)
{
	struct tls_pems p;
	struct lgr_dw_conf c = tls_conf(&p, "ca.crt");
	struct lgr_drain *d;
	struct lgr_dw *w;
	char want[256];

	make_ctx(NULL, 0);
	rcv_start(0, tls_server("metron"));
	d = drain(url("syslog-tls://127.0.0.1:%u", rcv.port));
	w = writer(d, &c);
	put(w, VECTOR_LINE);
	put(w, "two\nlines\n");
	snprintf(want, sizeof(want), "118 " VECTOR_LINE "10 two\nlines\n");
	cr_assert(RUN_UNTIL(got_is(want), WAIT_MS), "logs: %s", logs);
	cr_assert_eq(rcv.handshakes, 1);
	cr_assert_str_eq(rcv.peer_cn, "client", "the server verified the binding's client certificate");
	cr_assert_str_eq(rcv.sni, "", "no SNI for an address");
	cr_assert(RUN_UNTIL(lgr_dw_counters(w)->sent == 2, WAIT_MS));
	lgr_dw_free(w);
	lgr_drain_free(d);
	tls_pems_free(&p);
	rcv_cleanup();
}

Test(dwriter, syslog_tls_by_host_name_sends_sni_and_checks_the_name)
{
	struct tls_pems p;
	struct lgr_dw_conf c = tls_conf(&p, "ca.crt");
	struct lgr_drain *d;
	struct lgr_dw *w;

	make_ctx(NULL, 0);
	rcv_start(0, tls_server("doppler"));
	d = drain(url("syslog+tls://localhost:%u", rcv.port));
	w = writer(d, &c);
	put(w, "hi\n");
	cr_assert(RUN_UNTIL(got_is("3 hi\n"), WAIT_MS), "logs: %s", logs);
	cr_assert_str_eq(rcv.sni, "localhost");
	lgr_dw_free(w);
	lgr_drain_free(d);
	tls_pems_free(&p);
	rcv_cleanup();
}

Test(dwriter, syslog_tls_refuses_a_server_outside_the_bindings_ca)
{
	struct tls_pems p;
	struct lgr_dw_conf c = tls_conf(&p, "other-ca.crt");
	struct lgr_drain *d;
	struct lgr_dw *w;

	make_ctx(NULL, 0);
	rcv_start(0, tls_server("metron"));
	d = drain(url("syslog-tls://127.0.0.1:%u", rcv.port));
	w = writer(d, &c);
	cr_assert_eq(lgr_dw_write(w, "x\n", 2), LGR_EFULL);
	cr_assert(RUN_UNTIL(seen.errors == 1, WAIT_MS));
	cr_assert_eq(seen.why, LGR_DRAIN_OK);
	cr_assert(strstr(seen.text, "certificate") != NULL, "%s", seen.text);
	run_for(100);
	cr_assert_eq(seen.ready, 0);
	cr_assert_eq(rcv.handshakes, 0);
	cr_assert_eq(got_len(), 0);
	cr_assert_eq(lgr_dw_counters(w)->connects, 0);
	cr_assert_geq(lgr_dw_counters(w)->errors, 1);
	lgr_dw_free(w);
	lgr_drain_free(d);
	tls_pems_free(&p);
	rcv_cleanup();
}

Test(dwriter, syslog_tls_refuses_a_certificate_for_another_host)
{
	struct tls_pems p;
	struct lgr_dw_conf c = tls_conf(&p, "ca.crt");
	struct lgr_drain *d;
	struct lgr_dw *w;

	make_ctx(NULL, 0);
	rcv_start(0, tls_server("elsewhere"));
	d = drain(url("syslog-tls://127.0.0.1:%u", rcv.port));
	w = writer(d, &c);
	cr_assert_eq(lgr_dw_write(w, "x\n", 2), LGR_EFULL);
	cr_assert(RUN_UNTIL(seen.errors == 1, WAIT_MS));
	cr_assert(strstr(seen.text, "mismatch") != NULL, "%s", seen.text);
	run_for(100);
	cr_assert_eq(seen.ready, 0);
	cr_assert_eq(got_len(), 0);
	cr_assert_eq(lgr_dw_counters(w)->connects, 0);
	lgr_dw_free(w);
	lgr_drain_free(d);
	tls_pems_free(&p);
	rcv_cleanup();
}

Test(dwriter, unusable_tls_material_is_refused_when_the_writer_is_made)
{
	struct lgr_drain *d = drain("syslog-tls://127.0.0.1:6514");
	struct lgr_drain *h = drain("https://127.0.0.1/x");
	struct lgr_dw_conf c = {0};
	enum lgr_drain_reason why;
	struct lgr_dw *w = NULL;
	char *cert = pem("client.crt"), *key = pem("metron.key");

	make_ctx(NULL, 0);
	c.drain = d;
	c.tls.ca = "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n";
	cr_assert_eq(lgr_dw_new(ctx, &c, &w, &why), LGR_EINVAL);
	cr_assert_eq(why, LGR_DRAIN_BAD_CA);
	cr_assert_null(w);
	c.tls.ca = NULL;
	c.tls.cert = cert;
	cr_assert_eq(lgr_dw_new(ctx, &c, &w, &why), LGR_EINVAL, "a certificate without its key");
	cr_assert_eq(why, LGR_DRAIN_BAD_CERT);
	c.tls.key = key;
	cr_assert_eq(lgr_dw_new(ctx, &c, &w, &why), LGR_EINVAL, "a key of another certificate");
	cr_assert_eq(why, LGR_DRAIN_BAD_CERT);
	c.drain = h;
	cr_assert_eq(lgr_dw_new(ctx, &c, &w, &why), LGR_EINVAL, "https bindings are checked the same way");
	cr_assert_eq(why, LGR_DRAIN_BAD_CERT);
	free(cert);
	free(key);
	lgr_drain_free(d);
	lgr_drain_free(h);
}

/* ---- https ------------------------------------------------------------------------------------------------ */

#define MAX_REQS 32

static struct {
	struct lgr_http_server *srv;
	SSL_CTX *ssl;
	int statuses[MAX_REQS]; /* answers in order; 0: 200 */
	int n;
	struct {
		char method[8], path[64], query[64], ctype[64], auth[128], ua[64];
		char count[16], frame[64], token[64], client_cn[64];
		char *body;
		size_t body_len;
	} r[MAX_REQS];
} hs;

static void hcopy(char *dst, size_t cap, const char *v)
{
	snprintf(dst, cap, "%s", v != NULL ? v : "");
}

static void hs_request(struct lgr_http_exchange *x, const struct lgr_http_request *req, void *ud)
{
	int i = hs.n++;
	int status;

	(void)ud;
	cr_assert_lt(i, MAX_REQS);
	status = hs.statuses[i] != 0 ? hs.statuses[i] : 200;
	hcopy(hs.r[i].method, sizeof(hs.r[i].method), req->method);
	hcopy(hs.r[i].path, sizeof(hs.r[i].path), req->path);
	hcopy(hs.r[i].query, sizeof(hs.r[i].query), req->query);
	hcopy(hs.r[i].ctype, sizeof(hs.r[i].ctype), lgr_http_request_header(req, "content-type"));
	hcopy(hs.r[i].auth, sizeof(hs.r[i].auth), lgr_http_request_header(req, "authorization"));
	hcopy(hs.r[i].ua, sizeof(hs.r[i].ua), lgr_http_request_header(req, "user-agent"));
	hcopy(hs.r[i].count, sizeof(hs.r[i].count), lgr_http_request_header(req, "logplex-msg-count"));
	hcopy(hs.r[i].frame, sizeof(hs.r[i].frame), lgr_http_request_header(req, "logplex-frame-id"));
	hcopy(hs.r[i].token, sizeof(hs.r[i].token), lgr_http_request_header(req, "logplex-drain-token"));
	if (req->ssl != NULL) {
		X509 *peer = SSL_get1_peer_certificate(req->ssl);

		if (peer != NULL) {
			X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, hs.r[i].client_cn,
				sizeof(hs.r[i].client_cn));
			X509_free(peer);
		}
	}
	hs.r[i].body = strndup(req->body != NULL ? (const char *)req->body : "", req->body_len);
	hs.r[i].body_len = req->body_len;
	lgr_http_exchange_respond(x, status, "text/plain", NULL, 0, "", 0);
}

static const struct lgr_http_handlers hs_handlers = {.on_request = hs_request};

static void hs_start(void)
{
	struct lgr_tls_config cfg = {0};
	struct lgr_http_server_config sc = {0};
	char err[512];

	cfg.ca_file = pki_path("ca.crt");
	cfg.cert_file = pki_path("reverselogproxy.crt");
	cfg.key_file = pki_path("reverselogproxy.key");
	cfg.alpn = lgr_http_alpn;
	cfg.alpn_optional = true;
	cfg.request_client_cert = true; /* verified when sent */
	cr_assert_eq(lgr_tls_server_ctx(&cfg, &hs.ssl, err, sizeof(err)), LGR_OK, "%s", err);
	sc.address = "127.0.0.1";
	sc.ssl_ctx = hs.ssl;
	sc.handlers = &hs_handlers;
	sc.max_body = LGR_HTTP_MAX_BODY_LIMIT;
	cr_assert_eq(lgr_http_server_new(base, &sc, &hs.srv), LGR_OK);
}

static void hs_stop(void)
{
	lgr_http_server_free(hs.srv);
	SSL_CTX_free(hs.ssl);
	for (int i = 0; i < hs.n; i++)
		free(hs.r[i].body);
	memset(&hs, 0, sizeof(hs));
}

static const char *hurl(const char *fmt)
{
	return url(fmt, lgr_http_server_port(hs.srv));
}

static struct lgr_dw_conf https_conf(char **ca)
{
	struct lgr_dw_conf c = {0};

	*ca = pem("ca.crt");
	c.tls.ca = *ca;
	return c;
}

Test(dwriter, https_posts_each_line_as_text_plain_with_basic_auth)
{
	char *ca;
	struct lgr_dw_conf c = https_conf(&ca);
	struct lgr_drain *d;
	struct lgr_dw *w;

	make_ctx(NULL, 0);
	hs_start();
	d = drain(hurl("https://us%%40er:p%%3Ass@127.0.0.1:%u/drain/path?drain-type=logs"));
	w = writer(d, &c);
	put(w, VECTOR_LINE);
	put(w, "second\n");
	cr_assert(RUN_UNTIL(lgr_dw_counters(w)->sent == 2, WAIT_MS), "logs: %s", logs);
	cr_assert_eq(hs.n, 2);
	for (int i = 0; i < 2; i++) {
		cr_assert_str_eq(hs.r[i].method, "POST");
		cr_assert_str_eq(hs.r[i].path, "/drain/path");
		cr_assert_str_eq(hs.r[i].query, "drain-type=logs");
		cr_assert_str_eq(hs.r[i].ctype, "text/plain");
		/* base64("us@er:p:ss") */
		cr_assert_str_eq(hs.r[i].auth, "Basic dXNAZXI6cDpzcw==");
		cr_assert_str_eq(hs.r[i].ua, "dw-test/1");
		cr_assert_str_eq(hs.r[i].client_cn, "", "no client certificate in the binding, none sent");
	}
	/* two requests may arrive in either order on one HTTP/2 connection */
	cr_assert(strcmp(hs.r[0].body, VECTOR_LINE) == 0 || strcmp(hs.r[1].body, VECTOR_LINE) == 0);
	cr_assert(strcmp(hs.r[0].body, "second\n") == 0 || strcmp(hs.r[1].body, "second\n") == 0);
	cr_assert(lgr_dw_idle(w));
	cr_assert_eq(lgr_dw_counters(w)->lost, 0);
	cr_assert(strstr(logs, "p:ss") == NULL && strstr(logs, "us@er") == NULL, "credentials logged: %s", logs);
	lgr_dw_free(w);
	lgr_drain_free(d);
	free(ca);
	hs_stop();
}

Test(dwriter, https_limits_requests_in_flight_and_tells_when_there_is_room)
{
	char *ca;
	struct lgr_dw_conf c = https_conf(&ca);
	struct lgr_drain *d;
	struct lgr_dw *w;

	c.max_requests = 2;
	make_ctx(NULL, 0);
	hs_start();
	d = drain(hurl("https://127.0.0.1:%u/"));
	w = writer(d, &c);
	cr_assert_eq(lgr_dw_write(w, "a", 1), LGR_OK);
	cr_assert_eq(lgr_dw_write(w, "b", 1), LGR_OK);
	cr_assert_eq(lgr_dw_write(w, "c", 1), LGR_EFULL);
	cr_assert_eq(lgr_dw_pending(w), 2);
	cr_assert(RUN_UNTIL(seen.ready == 1, WAIT_MS));
	cr_assert_eq(lgr_dw_write(w, "c", 1), LGR_OK);
	cr_assert(RUN_UNTIL(lgr_dw_counters(w)->sent == 3, WAIT_MS));
	lgr_dw_free(w);
	lgr_drain_free(d);
	free(ca);
	hs_stop();
}

Test(dwriter, https_batch_joins_lines_and_flushes_at_size_and_after_the_interval)
{
	char *ca;
	struct lgr_dw_conf c = https_conf(&ca);
	struct lgr_drain *d;
	struct lgr_dw *w;
	uint64_t t0;

	c.batch_bytes = 20;
	c.flush_ms = 200;
	make_ctx(NULL, 0);
	hs_start();
	d = drain(hurl("https-batch://127.0.0.1:%u/batch"));
	w = writer(d, &c);
	cr_assert_eq(lgr_dw_write(w, "line one\n", 9), LGR_OK);
	cr_assert_eq(lgr_dw_write(w, "no newline", 10), LGR_OK);
	cr_assert_eq(lgr_dw_pending(w), 20, "the writer ends each line with one newline");
	cr_assert(RUN_UNTIL(hs.n == 1, WAIT_MS));
	cr_assert_str_eq(hs.r[0].body, "line one\nno newline\n");
	cr_assert_str_eq(hs.r[0].path, "/batch");
	cr_assert_str_eq(hs.r[0].ctype, "text/plain");
	t0 = lgr_now_ms();
	cr_assert_eq(lgr_dw_write(w, "three\n", 6), LGR_OK);
	cr_assert_eq(lgr_dw_write(w, "four\n", 5), LGR_OK);
	cr_assert(RUN_UNTIL(hs.n == 2, WAIT_MS));
	cr_assert_geq(lgr_now_ms() - t0, 150, "flushed before flush_ms");
	cr_assert_str_eq(hs.r[1].body, "three\nfour\n");
	/* lgr_dw_flush sends at once */
	cr_assert_eq(lgr_dw_write(w, "five\n", 5), LGR_OK);
	lgr_dw_flush(w);
	cr_assert(RUN_UNTIL(hs.n == 3, 150));
	cr_assert_str_eq(hs.r[2].body, "five\n");
	cr_assert(RUN_UNTIL(lgr_dw_counters(w)->sent == 5, WAIT_MS));
	cr_assert(lgr_dw_idle(w));
	lgr_dw_free(w);
	lgr_drain_free(d);
	free(ca);
	hs_stop();
}

Test(dwriter, logplex_batches_carry_their_headers_and_keep_the_frame_id_across_a_retry)
{
	const char *l1 = "<190>1 2012-07-22T00:06:26.000000+00:00 host app web.1 - Hi\n";
	const char *l2 = "<190>1 2012-07-22T00:06:27.000000+00:00 host app web.1 - there\n";
	char *ca, want[512];
	struct lgr_dw_conf c = https_conf(&ca);
	struct lgr_drain *d;
	struct lgr_dw *w;

	make_ctx(NULL, 0);
	hs_start();
	hs.statuses[0] = 500;
	d = drain(hurl("https://user:secret@127.0.0.1:%u/logs?format=logplex"));
	cr_assert_eq(d->format, LGR_DRAIN_LOGPLEX);
	w = writer(d, &c);
	cr_assert_eq(lgr_dw_write(w, l1, strlen(l1)), LGR_OK);
	cr_assert_eq(lgr_dw_write(w, l2, strlen(l2)), LGR_OK);
	lgr_dw_flush(w);
	cr_assert(RUN_UNTIL(lgr_dw_counters(w)->sent == 2, WAIT_MS), "logs: %s", logs);
	cr_assert_eq(hs.n, 2);
	snprintf(want, sizeof(want), "%zu %s%zu %s", strlen(l1), l1, strlen(l2), l2);
	for (int i = 0; i < 2; i++) {
		cr_assert_str_eq(hs.r[i].body, want);
		cr_assert_str_eq(hs.r[i].ctype, "application/logplex-1");
		cr_assert_str_eq(hs.r[i].count, "2");
		cr_assert_str_eq(hs.r[i].token, d->token);
		cr_assert_str_eq(hs.r[i].auth, "Basic dXNlcjpzZWNyZXQ=");
		cr_assert_str_eq(hs.r[i].ua, "dw-test/1");
		cr_assert_eq(strlen(hs.r[i].frame), 32);
	}
	cr_assert_str_eq(hs.r[0].frame, hs.r[1].frame, "a retried batch keeps its frame id");
	cr_assert_eq(lgr_dw_counters(w)->errors, 1);
	cr_assert_eq(lgr_dw_counters(w)->lost, 0);
	/* the next batch has an id of its own */
	cr_assert_eq(lgr_dw_write(w, l1, strlen(l1)), LGR_OK);
	lgr_dw_flush(w);
	cr_assert(RUN_UNTIL(hs.n == 3, WAIT_MS));
	cr_assert_str_eq(hs.r[2].count, "1");
	cr_assert_str_neq(hs.r[2].frame, hs.r[0].frame);
	lgr_dw_free(w);
	lgr_drain_free(d);
	free(ca);
	hs_stop();
}

Test(dwriter, https_4xx_answers_are_dropped_without_retry)
{
	char *ca;
	struct lgr_dw_conf c = https_conf(&ca);
	struct lgr_drain *d;
	struct lgr_dw *w;

	make_ctx(NULL, 0);
	hs_start();
	hs.statuses[0] = 400;
	hs.statuses[1] = 404;
	d = drain(hurl("https://127.0.0.1:%u/"));
	w = writer(d, &c);
	cr_assert_eq(lgr_dw_write(w, "a\n", 2), LGR_OK);
	cr_assert(RUN_UNTIL(lgr_dw_counters(w)->lost == 1, WAIT_MS));
	cr_assert_eq(seen.errors, 1);
	cr_assert(strstr(seen.text, "400") != NULL, "%s", seen.text);
	cr_assert_eq(lgr_dw_write(w, "b\n", 2), LGR_OK);
	cr_assert(RUN_UNTIL(lgr_dw_counters(w)->lost == 2, WAIT_MS));
	run_for(600);
	cr_assert_eq(hs.n, 2, "4xx is not retried");
	cr_assert_eq(lgr_dw_counters(w)->sent, 0);
	cr_assert_eq(lgr_dw_counters(w)->errors, 2);
	lgr_dw_free(w);
	lgr_drain_free(d);
	free(ca);
	hs_stop();
}

Test(dwriter, https_429_and_5xx_are_retried_twice_then_lost)
{
	char *ca;
	struct lgr_dw_conf c = https_conf(&ca);
	struct lgr_drain *d;
	struct lgr_dw *w;

	make_ctx(NULL, 0);
	hs_start();
	hs.statuses[0] = 429;
	hs.statuses[1] = 503;
	hs.statuses[2] = 500;
	d = drain(hurl("https://127.0.0.1:%u/"));
	w = writer(d, &c);
	cr_assert_eq(lgr_dw_write(w, "a\n", 2), LGR_OK);
	cr_assert(RUN_UNTIL(lgr_dw_counters(w)->lost == 1, WAIT_MS));
	run_for(800);
	cr_assert_eq(hs.n, 3);
	cr_assert_eq(lgr_dw_counters(w)->errors, 3);
	cr_assert_eq(lgr_dw_counters(w)->sent, 0);
	cr_assert(strstr(seen.text, "500") != NULL, "%s", seen.text);
	cr_assert(lgr_dw_idle(w));
	lgr_dw_free(w);
	lgr_drain_free(d);
	free(ca);
	hs_stop();
}

Test(dwriter, https_refuses_a_server_outside_the_bindings_ca)
{
	char *ca = pem("other-ca.crt");
	struct lgr_dw_conf c = {.tls.ca = ca};
	struct lgr_drain *d;
	struct lgr_dw *w;

	make_ctx(NULL, 0);
	hs_start();
	d = drain(hurl("https://127.0.0.1:%u/"));
	w = writer(d, &c);
	cr_assert_eq(lgr_dw_write(w, "a\n", 2), LGR_OK);
	cr_assert(RUN_UNTIL(lgr_dw_counters(w)->lost == 1, WAIT_MS));
	cr_assert_eq(hs.n, 0);
	cr_assert_eq(seen.errors, 1);
	cr_assert(strstr(seen.text, "certificate") != NULL || strstr(seen.text, "SSL") != NULL, "%s", seen.text);
	lgr_dw_free(w);
	lgr_drain_free(d);
	free(ca);
	hs_stop();
}

Test(dwriter, https_drain_resolving_into_a_deny_range_fails_and_connects_nowhere)
{
	const char *ranges[] = {"127.0.0.0/8"};
	char *ca;
	struct lgr_dw_conf c = https_conf(&ca);
	struct lgr_drain *d;
	struct lgr_dw *w;

	make_ctx(ranges, 1);
	hs_start();
	d = drain(hurl("https://localhost:%u/"));
	w = writer(d, &c);
	cr_assert_eq(lgr_dw_write(w, "a\n", 2), LGR_OK);
	cr_assert(RUN_UNTIL(seen.errors == 1, WAIT_MS));
	cr_assert_eq(seen.why, LGR_DRAIN_DENIED);
	cr_assert_eq(lgr_dw_write(w, "b\n", 2), LGR_EIO);
	cr_assert_eq(lgr_dw_counters(w)->lost, 1);
	run_for(50);
	cr_assert_eq(lgr_http_server_connections(hs.srv), 0);
	cr_assert_eq(hs.n, 0);
	lgr_dw_free(w);
	lgr_drain_free(d);
	free(ca);
	hs_stop();
}

Test(dwriter, free_with_a_batch_open_and_requests_in_flight_releases_everything)
{
	char *ca;
	struct lgr_dw_conf c = https_conf(&ca);
	struct lgr_drain *d;
	struct lgr_dw *w;

	make_ctx(NULL, 0);
	hs_start();
	d = drain(hurl("https-batch://127.0.0.1:%u/"));
	w = writer(d, &c);
	cr_assert_eq(lgr_dw_write(w, "a\n", 2), LGR_OK);
	cr_assert_eq(lgr_dw_write(w, "b\n", 2), LGR_OK);
	cr_assert(!lgr_dw_idle(w));
	cr_assert_eq(lgr_dw_pending(w), 4);
	lgr_dw_free(w);
	lgr_drain_free(d);
	free(ca);
	hs_stop();
}

Test(dwriter, https_presents_the_bindings_client_certificate)
{
	char *ca;
	struct lgr_dw_conf c = https_conf(&ca);
	char *cert = pem("client.crt"), *key = pem("client.key");
	struct lgr_drain *d;
	struct lgr_dw *w;

	c.tls.cert = cert;
	c.tls.key = key;
	make_ctx(NULL, 0);
	hs_start();
	d = drain(hurl("https://localhost:%u/mtls"));
	w = writer(d, &c);
	cr_assert_eq(lgr_dw_write(w, "a\n", 2), LGR_OK);
	cr_assert(RUN_UNTIL(lgr_dw_counters(w)->sent == 1, WAIT_MS), "logs: %s", logs);
	cr_assert_str_eq(hs.r[0].client_cn, "client");
	lgr_dw_free(w);
	lgr_drain_free(d);
	free(ca);
	free(cert);
	free(key);
	hs_stop();
}

/* The one slow test: a peer that takes nothing for WRITE_DEADLINE_MS (10 s) is given up. */
Test(dwriter, syslog_peer_that_reads_nothing_for_ten_seconds_is_dropped, .timeout = 40)
{
	size_t max = 64 * 1024;
	struct lgr_dw_conf c = {.max_pending = max};
	struct lgr_drain *d;
	struct lgr_dw *w;
	uint64_t t0, taken, dt;

	make_ctx(NULL, 0);
	rcv_start(0, NULL);
	rcv.stall = true;
	d = drain(url("syslog://127.0.0.1:%u", rcv.port));
	w = writer(d, &c);
	put(w, "first\n");
	taken = fill(w, max) + 1;
	t0 = lgr_now_ms();
	cr_assert(RUN_UNTIL(lgr_dw_counters(w)->errors == 1, 20000));
	dt = lgr_now_ms() - t0;
	cr_assert_geq(dt, 9000, "gave up after %" PRIu64 " ms", dt);
	cr_assert(strstr(seen.text, "write timed out") != NULL, "%s", seen.text);
	cr_assert_gt(lgr_dw_counters(w)->lost, 0);
	cr_assert_eq(lgr_dw_counters(w)->sent + lgr_dw_counters(w)->lost, taken);
	lgr_dw_free(w);
	lgr_drain_free(d);
	rcv_cleanup();
}

Test(dwriter, https_transport_errors_are_retried_twice_then_lost)
{
	char *ca;
	struct lgr_dw_conf c = https_conf(&ca);
	struct lgr_drain *d;
	struct lgr_dw *w;

	make_ctx(NULL, 0);
	d = drain(url("https://127.0.0.1:%u/", free_port()));
	w = writer(d, &c);
	cr_assert_eq(lgr_dw_write(w, "a\n", 2), LGR_OK);
	cr_assert(!lgr_dw_idle(w));
	cr_assert(RUN_UNTIL(lgr_dw_counters(w)->lost == 1, WAIT_MS));
	cr_assert_eq(lgr_dw_counters(w)->errors, 3, "one attempt and two retries");
	cr_assert_eq(seen.errors, 1);
	cr_assert(strstr(seen.text, "POST failed") != NULL, "%s", seen.text);
	cr_assert(lgr_dw_idle(w));
	cr_assert_eq(lgr_dw_pending(w), 0);
	/* the writer goes on taking lines */
	cr_assert_eq(lgr_dw_write(w, "b\n", 2), LGR_OK);
	lgr_dw_free(w);
	lgr_drain_free(d);
	free(ca);
}

Test(dwriter, https_batch_that_fills_max_pending_is_sent_at_once_and_on_ready_follows)
{
	char *ca;
	struct lgr_dw_conf c = https_conf(&ca);
	struct lgr_drain *d;
	struct lgr_dw *w;

	c.max_pending = 10;
	c.flush_ms = 60000;
	make_ctx(NULL, 0);
	hs_start();
	d = drain(hurl("https-batch://127.0.0.1:%u/"));
	w = writer(d, &c);
	cr_assert_eq(lgr_dw_write(w, "12345678\n", 9), LGR_OK);
	cr_assert_eq(lgr_dw_write(w, "abc\n", 4), LGR_EFULL);
	cr_assert(RUN_UNTIL(seen.ready == 1, WAIT_MS));
	cr_assert_eq(hs.n, 1);
	cr_assert_str_eq(hs.r[0].body, "12345678\n");
	cr_assert_eq(lgr_dw_write(w, "abc\n", 4), LGR_OK);
	lgr_dw_free(w);
	lgr_drain_free(d);
	free(ca);
	hs_stop();
}

/* ---- what a closed writer held; Logplex's overflow notice and batch size ----------------------------------- */

Test(dwriter, syslog_close_counts_every_line_still_held_as_lost_in_the_final_counters)
{
	size_t max = 64 * 1024;
	struct lgr_dw_conf c = {.max_pending = max};
	struct lgr_dw_counters last;
	struct lgr_drain *d;
	struct lgr_dw *w;
	uint64_t taken;

	make_ctx(NULL, 0);
	rcv_start(0, NULL);
	rcv.stall = true;
	d = drain(url("syslog://127.0.0.1:%u", rcv.port));
	w = writer(d, &c);
	put(w, "first\n");
	taken = fill(w, max) + 1;
	cr_assert_gt(lgr_dw_pending(w), 0);
	memset(&last, 0xff, sizeof(last));
	lgr_dw_close(w, &last);
	cr_assert_gt(last.lost, 0, "lines queued on the connection are lost with it");
	cr_assert_eq(last.sent + last.lost, taken, "sent %" PRIu64 " + lost %" PRIu64 " of %" PRIu64, last.sent,
		last.lost, taken);
	lgr_drain_free(d);
	rcv_cleanup();
}

Test(dwriter, https_close_counts_the_open_batch_and_requests_in_flight_as_lost)
{
	char *ca;
	struct lgr_dw_conf c = https_conf(&ca);
	struct lgr_dw_counters last;
	struct lgr_drain *one, *batch;
	struct lgr_dw *w1, *wb;

	make_ctx(NULL, 0);
	hs_start();
	one = drain(hurl("https://127.0.0.1:%u/one"));
	batch = drain(hurl("https-batch://127.0.0.1:%u/batch"));
	w1 = writer(one, &c);
	wb = writer(batch, &c);
	/* the loop does not run in between: the requests are in flight, the batch open */
	cr_assert_eq(lgr_dw_write(w1, "a\n", 2), LGR_OK);
	cr_assert_eq(lgr_dw_write(w1, "b\n", 2), LGR_OK);
	cr_assert_eq(lgr_dw_write(wb, "c\n", 2), LGR_OK);
	cr_assert_eq(lgr_dw_write(wb, "d\n", 2), LGR_OK);
	cr_assert_eq(lgr_dw_write(wb, "e\n", 2), LGR_OK);
	lgr_dw_close(w1, &last);
	cr_assert_eq(last.lost, 2);
	cr_assert_eq(last.sent, 0);
	lgr_dw_close(wb, &last);
	cr_assert_eq(last.lost, 3);
	cr_assert_eq(last.sent, 0);
	lgr_drain_free(one);
	lgr_drain_free(batch);
	free(ca);
	hs_stop();
}

/* The frames of a Logplex body: each frame's message into msgs (up to max); their number. */
static size_t logplex_frames(const char *body, size_t len, const char **msgs, size_t *lens, size_t max)
{
	size_t n = 0, pos = 0, used;
	const char *line;
	size_t line_len;

	while ((used = lgr_syslog_next_frame(body + pos, len - pos, &line, &line_len)) > 0) {
		if (n < max) {
			msgs[n] = line;
			lens[n] = line_len;
		}
		n++;
		pos += used;
	}
	cr_assert_eq(pos, len, "the body is not made of octet-counted frames only");
	return n;
}

#define L10_TEXT                                                                                                       \
	" host heroku logplex - Error L10 (output buffer overflow): 7 messages dropped since "                         \
	"2012-07-22T00:06:26+00:00.\n"

Test(dwriter, logplex_overflow_goes_first_in_the_next_batch_as_an_l10_frame_counted_in_msg_count_only)
{
	const char *l1 = "<190>1 2012-07-22T00:06:31.000000+00:00 host app web.1 - after the loss\n";
	const char *msgs[4];
	size_t lens[4];
	char *ca;
	struct lgr_dw_conf c = https_conf(&ca);
	struct lgr_drain *d;
	struct lgr_dw *w;

	make_ctx(NULL, 0);
	hs_start();
	d = drain(hurl("https://127.0.0.1:%u/logs?format=logplex&drain-token=d.0123"));
	w = writer(d, &c);
	/* two losses before the batch goes: one notice, their sum, the earlier time */
	lgr_dw_overflow(w, 5, INT64_C(1342915586) * 1000000000 + 700000000);
	lgr_dw_overflow(w, 2, INT64_C(1342915589) * 1000000000);
	cr_assert(!lgr_dw_idle(w), "a notice is due");
	cr_assert_eq(lgr_dw_write(w, l1, strlen(l1)), LGR_OK);
	lgr_dw_flush(w);
	cr_assert(RUN_UNTIL(lgr_dw_counters(w)->sent == 1, WAIT_MS), "logs: %s", logs);
	cr_assert_eq(hs.n, 1);
	cr_assert_eq(logplex_frames(hs.r[0].body, hs.r[0].body_len, msgs, lens, 4), 2);
	cr_assert(strncmp(msgs[0], "<172>1 ", 7) == 0, "%.*s", (int)lens[0], msgs[0]);
	cr_assert(lens[0] > strlen(L10_TEXT) &&
			  memcmp(msgs[0] + lens[0] - strlen(L10_TEXT), L10_TEXT, strlen(L10_TEXT)) == 0,
		"%.*s", (int)lens[0], msgs[0]);
	cr_assert(lens[1] == strlen(l1) && memcmp(msgs[1], l1, lens[1]) == 0);
	cr_assert_str_eq(hs.r[0].count, "2", "the notice is one of the batch's messages");
	cr_assert_str_eq(hs.r[0].token, "d.0123");
	cr_assert_eq(lgr_dw_counters(w)->lost, 0);
	cr_assert(RUN_UNTIL(lgr_dw_idle(w), WAIT_MS));
	/* told once */
	cr_assert_eq(lgr_dw_write(w, l1, strlen(l1)), LGR_OK);
	lgr_dw_flush(w);
	cr_assert(RUN_UNTIL(hs.n == 2, WAIT_MS));
	cr_assert_eq(logplex_frames(hs.r[1].body, hs.r[1].body_len, msgs, lens, 4), 1);
	cr_assert_str_eq(hs.r[1].count, "1");
	lgr_dw_free(w);
	lgr_drain_free(d);
	free(ca);
	hs_stop();
}

Test(dwriter, logplex_overflow_without_a_line_after_it_goes_alone_within_flush_ms)
{
	const char *msgs[2];
	size_t lens[2];
	char *ca;
	struct lgr_dw_conf c = https_conf(&ca);
	struct lgr_drain *d;
	struct lgr_dw *w;
	uint64_t t0;

	c.flush_ms = 200;
	make_ctx(NULL, 0);
	hs_start();
	d = drain(hurl("https://127.0.0.1:%u/logs?format=logplex"));
	w = writer(d, &c);
	t0 = lgr_now_ms();
	lgr_dw_overflow(w, 7, INT64_C(1342915586) * 1000000000);
	cr_assert(RUN_UNTIL(hs.n == 1, WAIT_MS), "logs: %s", logs);
	cr_assert_geq(lgr_now_ms() - t0, 150, "sent before flush_ms");
	cr_assert_eq(logplex_frames(hs.r[0].body, hs.r[0].body_len, msgs, lens, 2), 1);
	cr_assert(memcmp(msgs[0] + lens[0] - strlen(L10_TEXT), L10_TEXT, strlen(L10_TEXT)) == 0, "%.*s", (int)lens[0],
		msgs[0]);
	cr_assert_str_eq(hs.r[0].count, "1");
	cr_assert(RUN_UNTIL(lgr_dw_idle(w), WAIT_MS));
	cr_assert_eq(lgr_dw_counters(w)->sent, 0, "the notice is not one of the caller's lines");
	cr_assert_eq(lgr_dw_counters(w)->lost, 0);
	lgr_dw_free(w);
	lgr_drain_free(d);
	free(ca);
	hs_stop();
}

Test(dwriter, overflow_is_ignored_by_writers_that_are_not_logplex)
{
	char *ca;
	struct lgr_dw_conf c = https_conf(&ca);
	struct lgr_drain *d;
	struct lgr_dw *w;

	make_ctx(NULL, 0);
	hs_start();
	d = drain(hurl("https-batch://127.0.0.1:%u/batch"));
	w = writer(d, &c);
	lgr_dw_overflow(w, 3, INT64_C(1342915586) * 1000000000);
	cr_assert(lgr_dw_idle(w));
	cr_assert_eq(lgr_dw_write(w, "x\n", 2), LGR_OK);
	lgr_dw_flush(w);
	cr_assert(RUN_UNTIL(hs.n == 1, WAIT_MS));
	cr_assert_str_eq(hs.r[0].body, "x\n");
	lgr_dw_free(w);
	lgr_drain_free(d);
	free(ca);
	hs_stop();
}

Test(dwriter, logplex_batches_aim_at_100_kib_and_never_cut_a_frame)
{
	enum { LINES = 25, MSG = LGR_LOGPLEX_LINE_MAX };
	char *ca, *line = malloc(MSG + 64);
	struct lgr_dw_conf c = https_conf(&ca);
	struct lgr_drain *d;
	struct lgr_dw *w;
	size_t len, frames = 0, total = 0;
	const char *msgs[16];
	size_t lens[16];

	cr_assert_not_null(line);
	len = (size_t)snprintf(line, 64, "<190>1 2012-07-22T00:06:26.000000+00:00 host app web.1 - ");
	memset(line + len, 'x', MSG);
	len += MSG;
	line[len++] = '\n';
	make_ctx(NULL, 0);
	hs_start();
	d = drain(hurl("https://127.0.0.1:%u/logs?format=logplex"));
	w = writer(d, &c);
	for (int i = 0; i < LINES; i++)
		cr_assert_eq(lgr_dw_write(w, line, len), LGR_OK, "line %d", i);
	lgr_dw_flush(w);
	cr_assert(RUN_UNTIL(lgr_dw_counters(w)->sent == LINES, WAIT_MS), "logs: %s", logs);
	for (int i = 0; i < hs.n; i++) {
		size_t n = logplex_frames(hs.r[i].body, hs.r[i].body_len, msgs, lens, 16);
		char count[16];

		cr_assert_leq(hs.r[i].body_len, 100 * 1024, "batch %d: %zu bytes", i, hs.r[i].body_len);
		snprintf(count, sizeof(count), "%zu", n);
		cr_assert_str_eq(hs.r[i].count, count);
		for (size_t k = 0; k < n && k < 16; k++)
			cr_assert_eq(lens[k], len);
		frames += n;
		total += hs.r[i].body_len;
	}
	cr_assert_eq(frames, LINES);
	/* 10 frames of 10,064 bytes fill a batch as far as 100 KiB allows: 10 + 10 + 5 */
	cr_assert_eq(hs.n, 3, "%d batches for %zu bytes", hs.n, total);
	lgr_dw_free(w);
	lgr_drain_free(d);
	free(ca);
	free(line);
	hs_stop();
}
