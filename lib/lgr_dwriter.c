/*
 * lgr_dwriter.c: the drain writers (lgr_dwriter.h).
 *
 * syslog:// and syslog-tls:// run on libevent bufferevents (bufferevent_openssl for TLS), with names resolved by
 * evdns on the caller's loop so that nothing ever blocks it. https, https-batch and Logplex run on one libcurl
 * multi handle per context, driven by the same loop through CURLMOPT_SOCKETFUNCTION / TIMERFUNCTION; curl resolves
 * with its own asynchronous resolver and every address it is about to connect to goes through the deny ranges in
 * CURLOPT_OPENSOCKETFUNCTION.
 *
 * The caller's callbacks (on_ready, on_error) only ever run from the writer's own "notify" event, never from inside
 * a libevent or curl callback: whatever the caller does there (write, free the writer) meets a writer in a stable
 * state. A writer freed from inside its own callback is torn down at once and its memory released when the callback
 * returns.
 *
 * Choices the header leaves open:
 *  - syslog writers refuse lines (LGR_EFULL) until connected: a line taken while connecting would be lost with a
 *    refused connection, while the caller's ring keeps it. After a failure the writer reconnects by itself only when
 *    a line is waiting (it refused one); an idle drain whose peer went away reconnects on its next line.
 *  - lines queued in the output buffer count as sent once the kernel (or the TLS layer) took them; a queue of the
 *    lines' ends (lgr_settle) maps drained bytes back to lines, so lost counts whole lines, partly written ones too.
 *  - a resolution that takes longer than the dial timeout counts as a resolution failure (cached like one).
 *  - transport errors (refused, reset, TLS, failed POSTs) reach on_error at most once per minute per writer, as the
 *    caller may turn each into a line of the app's own stream; reasons (denied, resolve) always do.
 *  - https retries wait about 250 ms, then 500 ms (with jitter); a host that does not resolve is not retried but
 *    waits out the 120 s failure cache. Proxy settings from the environment are ignored: the deny ranges must see
 *    the drain's own address.
 *  - https-batch bodies are the lines concatenated, each ending with exactly one "\n" (the CF writer's lines carry
 *    theirs; one is added when missing).
 *  - a batch goes before an entry that would take it past batch_bytes, so batches stay at or under it (Logplex aims
 *    at 100 KiB) unless one entry alone is larger.
 *  - Logplex's overflow notice (lgr_dw_overflow) is a frame of the writer's own, put first in the body when a batch
 *    is sent: counted in Logplex-Msg-Count, never in sent or lost, which stay the caller's lines.
 */
#include "lgr_dwriter.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "lgr_syslog.h"

#define DIAL_MS			    10000u /* syslog: resolve + connect + TLS handshake */
#define WRITE_DEADLINE_MS	    10000u /* syslog: queued bytes with no progress for this long: a dead peer */
#define BACKOFF_FIRST_MS	    1u
#define BACKOFF_CAP_MS		    15000u
#define RESOLVE_FAIL_MS		    120000u /* a host that failed to resolve is not tried again for this long */
#define HTTP_CONNECT_MS		    3000L
#define HTTP_REQUEST_MS		    5000L
#define HTTP_RETRIES		    2u	 /* after the first attempt */
#define HTTP_RETRY_FIRST_MS	    250u /* then doubling */
#define DEFAULT_MAX_PENDING	    (1u << 20)
#define DEFAULT_BATCH_BYTES	    (512u * 1024)
#define DEFAULT_LOGPLEX_BATCH_BYTES (100u * 1024)
#define DEFAULT_FLUSH_MS	    1000u
#define DEFAULT_MAX_REQUESTS	    16u
#define DEFAULT_USER_AGENT	    "lgr-drains"
#define MAX_ADDRS		    8
#define MAX_LINE		    (1u << 30) /* one line; far beyond any formatter's output */
#define LOG_WINDOW_MS		    10000u
#define LOG_BURST		    3
#define ERROR_WINDOW_MS		    60000u /* transport errors told through on_error: one per window and writer */

/* --- the context ------------------------------------------------------------------------------------------------ */

/* A host that failed to resolve, and until when that is remembered. */
struct resolve_fail {
	struct resolve_fail *next;
	uint64_t until;
	char host[];
};

/* One socket curl asked us to watch. */
struct csock {
	struct lgr_dw_ctx *ctx;
	struct csock *prev, *next;
	struct event *ev;
};

struct lgr_dw_ctx {
	struct event_base *base;
	const struct lgr_drain_deny *deny;
	char *user_agent;
	lgr_log_fn *log;
	void *log_ud;
	struct evdns_base *dns; /* made on first use */
	CURLM *multi;
	struct event *curl_timer;
	struct csock *socks;
	struct resolve_fail *fails;
	uint64_t rnd; /* jitter */
	bool curl_inited;
};

/* --- the writer ------------------------------------------------------------------------------------------------- */

enum wstate {
	W_IDLE,	      /* nothing connected or connecting (syslog); ready (https) */
	W_WAIT,	      /* backing off or due to connect at the next loop turn (syslog); resolve-skipped (https) */
	W_RESOLVING,  /* syslog */
	W_CONNECTING, /* syslog: TCP connect and TLS handshake */
	W_UP,	      /* syslog: connected */
	W_FAILED,     /* for good: denied */
};

/* One HTTP POST: a line (https) or a batch, with its attempts. */
struct req {
	struct req *next;
	struct lgr_dw *w;
	CURL *easy;
	struct curl_slist *hdrs;
	char *body;
	size_t len;
	uint64_t nlines; /* the caller's lines in body (an overflow notice is not one of them) */
	unsigned attempt;
	bool in_multi;
	struct event *retry;
	char frame_id[LGR_LOGPLEX_FRAME_ID_LEN + 1];
	char err[CURL_ERROR_SIZE];
};

struct lgr_dw {
	struct lgr_dw_ctx *ctx;
	const struct lgr_drain *drain;
	bool http, batch, logplex, tls;
	size_t max_pending, batch_bytes;
	unsigned flush_ms, max_requests;
	void (*on_ready)(void *ud);
	void (*on_error)(enum lgr_drain_reason why, const char *text, void *ud);
	void *ud;
	struct lgr_dw_counters c;
	struct lgr_logger lg; /* own lines, named "drain ANONYMISED-URL" (lg_name), never by credentials */
	char *lg_name;
	struct lgr_ratelimit log_rl, err_rl;

	enum wstate state;
	bool want_ready; /* a write was refused: on_ready is owed */
	bool ready_due, err_due;
	enum lgr_drain_reason err_why;
	char err_text[320];
	unsigned busy; /* inside the caller's callbacks */
	bool doomed;   /* freed while busy */
	unsigned backoff_ms;
	struct event *timer;  /* syslog: backoff, connect kick, dial deadline; https: end of a resolve skip */
	struct event *notify; /* runs the caller's callbacks */

	/* syslog */
	SSL_CTX *ssl_ctx;
	struct bufferevent *bev;
	struct lgr_settle lines;       /* the framed lines in the output buffer: sent and lost are counted from it */
	uint64_t out_queued, out_gone; /* bytes of lines added to / gone from the current connection's output */
	struct evdns_getaddrinfo_request *dnsreq;
	struct sockaddr_storage addrs[MAX_ADDRS];
	socklen_t addr_len[MAX_ADDRS];
	unsigned naddrs, next_addr;
	bool carried; /* the current connection wrote bytes */

	/* https */
	char *url;
	char *ca, *cert, *key; /* PEM copies for curl's blobs */
	struct req *reqs;
	unsigned nreqs;
	size_t held; /* bytes of requests and the open batch */
	char *batch_buf;
	size_t batch_len, batch_cap;
	uint64_t batch_lines;
	struct event *flush;
	bool denied_socket; /* curl was refused an address */
	uint64_t ovf_n;	    /* Logplex: envelopes the caller's buffer dropped, not told yet (L10) */
	int64_t ovf_since;  /* UNIX ns of the first of them */
};

/* A pseudo-random number for jitter (xorshift64*): no need for quality, only for spread between writers. */
static uint64_t rnd(struct lgr_dw_ctx *ctx)
{
	uint64_t x = ctx->rnd;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	ctx->rnd = x;
	return x * 2685821657736338717ull;
}

static void ms_to_tv(uint64_t ms, struct timeval *tv)
{
	tv->tv_sec = (time_t)(ms / 1000);
	tv->tv_usec = (suseconds_t)(ms % 1000) * 1000;
}

static void timer_in(struct event *ev, uint64_t ms)
{
	struct timeval tv;

	ms_to_tv(ms, &tv);
	evtimer_add(ev, &tv);
}

/* --- the caller's callbacks ------------------------------------------------------------------------------------- */

static void notify_cb(evutil_socket_t fd, short what, void *arg)
{
	struct lgr_dw *w = arg;

	(void)fd;
	(void)what;
	w->busy++;
	if (w->err_due) {
		w->err_due = false;
		if (w->on_error != NULL)
			w->on_error(w->err_why, w->err_text, w->ud);
	}
	if (!w->doomed && w->ready_due) {
		w->ready_due = false;
		if (w->on_ready != NULL)
			w->on_ready(w->ud);
	}
	w->busy--;
	if (w->doomed && w->busy == 0)
		free(w);
}

/* on_ready at the next loop turn, if a write was refused since the last one. */
static void notify_ready(struct lgr_dw *w)
{
	if (!w->want_ready || w->state == W_FAILED)
		return;
	w->want_ready = false;
	w->ready_due = true;
	event_active(w->notify, EV_TIMEOUT, 0);
}

/*
 * on_error at the next loop turn. Reasons are always told; transport errors (LGR_DRAIN_OK) at most once per
 * ERROR_WINDOW_MS, since the caller may turn each into a line of the app's own stream.
 */
static void notify_error(struct lgr_dw *w, enum lgr_drain_reason why, const char *text)
{
	if (why == LGR_DRAIN_OK && !lgr_ratelimit_take(&w->err_rl, lgr_now_ms(), NULL))
		return;
	w->err_due = true;
	w->err_why = why;
	snprintf(w->err_text, sizeof(w->err_text), "%s", text);
	event_active(w->notify, EV_TIMEOUT, 0);
}

/* A refusal the app must hear about, in the reference's words; logged too. */
static void tell_reason(struct lgr_dw *w, enum lgr_drain_reason why)
{
	char text[256];

	if (lgr_drain_notice(why, w->drain->scheme_name, w->drain->anon, text, sizeof(text)) < 0)
		snprintf(text, sizeof(text), "%s", lgr_drain_reason_name(why));
	lgr_logger_say(&w->lg, &w->log_rl, LGR_LOG_WARNING, "%s", text);
	notify_error(w, why, text);
}

/* The next backoff delay: 1 ms doubling to the cap, then a random point in its upper half. */
static unsigned next_backoff(struct lgr_dw *w)
{
	unsigned b;

	if (w->backoff_ms == 0)
		w->backoff_ms = BACKOFF_FIRST_MS;
	else if (w->backoff_ms < BACKOFF_CAP_MS)
		w->backoff_ms = w->backoff_ms * 2 > BACKOFF_CAP_MS ? BACKOFF_CAP_MS : w->backoff_ms * 2;
	b = w->backoff_ms;
	return b / 2 + (unsigned)(rnd(w->ctx) % (b - b / 2 + 1));
}

/* --- the resolution failure cache ------------------------------------------------------------------------------- */

/* Whether host failed to resolve less than RESOLVE_FAIL_MS ago; *until says when that ends. Drops stale entries. */
static bool fail_cached(struct lgr_dw_ctx *ctx, const char *host, uint64_t *until)
{
	uint64_t now = lgr_now_ms();
	struct resolve_fail **pp = &ctx->fails, *f;

	while ((f = *pp) != NULL) {
		if (f->until <= now) {
			*pp = f->next;
			free(f);
			continue;
		}
		if (strcmp(f->host, host) == 0) {
			*until = f->until;
			return true;
		}
		pp = &f->next;
	}
	return false;
}

static void fail_remember(struct lgr_dw_ctx *ctx, const char *host)
{
	uint64_t until;
	size_t len = strlen(host);
	struct resolve_fail *f;

	if (fail_cached(ctx, host, &until))
		return;
	f = malloc(sizeof(*f) + len + 1);
	if (f == NULL)
		return; /* only a cache: without it the next attempt resolves again */
	memcpy(f->host, host, len + 1);
	f->until = lgr_now_ms() + RESOLVE_FAIL_MS;
	f->next = ctx->fails;
	ctx->fails = f;
}

/* Whether any of a drain's addresses falls in the deny ranges. */
static bool denied(struct lgr_dw_ctx *ctx, const struct sockaddr *sa)
{
	uint8_t a[16];

	if (ctx->deny == NULL || ctx->deny->n == 0)
		return false;
	if (lgr_drain_addr_from_sockaddr(sa, a) != LGR_OK)
		return true; /* neither IPv4 nor IPv6: nothing a drain may use */
	return lgr_drain_deny_match(ctx->deny, a);
}

/* --- TLS material ----------------------------------------------------------------------------------------------- */

static bool present(const char *s)
{
	return s != NULL && s[0] != '\0';
}

/* Loads every certificate of PEM text pem into the context's trust store; the number loaded. */
static int load_ca(SSL_CTX *sctx, const char *pem)
{
	X509_STORE *store = SSL_CTX_get_cert_store(sctx);
	BIO *bio = BIO_new_mem_buf(pem, -1);
	X509 *x;
	int n = 0;

	if (bio == NULL)
		return 0;
	while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
		if (X509_STORE_add_cert(store, x) == 1)
			n++;
		X509_free(x);
	}
	BIO_free(bio);
	ERR_clear_error(); /* the end of the text reads as an error */
	return n;
}

/* Certificate (with its chain) and key from PEM text; false when they do not load as a pair. */
static bool load_cert(SSL_CTX *sctx, const char *cert, const char *key)
{
	BIO *bio = BIO_new_mem_buf(cert, -1);
	EVP_PKEY *pkey = NULL;
	X509 *x = NULL;
	bool ok = false;

	if (bio == NULL)
		goto out;
	x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
	if (x == NULL || SSL_CTX_use_certificate(sctx, x) != 1)
		goto out;
	for (;;) {
		X509 *chain = PEM_read_bio_X509(bio, NULL, NULL, NULL);

		if (chain == NULL)
			break;
		if (SSL_CTX_add0_chain_cert(sctx, chain) != 1) {
			X509_free(chain);
			goto out;
		}
	}
	BIO_free(bio);
	bio = BIO_new_mem_buf(key, -1);
	if (bio == NULL)
		goto out;
	pkey = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
	if (pkey == NULL || SSL_CTX_use_PrivateKey(sctx, pkey) != 1)
		goto out;
	ok = SSL_CTX_check_private_key(sctx) == 1;
out:
	ERR_clear_error();
	BIO_free(bio);
	X509_free(x);
	EVP_PKEY_free(pkey);
	return ok;
}

/*
 * A client context for a binding's material: the binding's CA or the system's store, its certificate as client
 * certificate, TLS 1.2 or later. Third-party drains are not Loggregator peers: OpenSSL's default ciphers, no ALPN.
 */
static int tls_ctx(const struct lgr_dw_tls *t, SSL_CTX **out, enum lgr_drain_reason *why)
{
	SSL_CTX *sctx = SSL_CTX_new(TLS_client_method());
	int rc = LGR_EINVAL;

	*out = NULL;
	if (sctx == NULL)
		return LGR_ENOMEM;
	SSL_CTX_set_min_proto_version(sctx, TLS1_2_VERSION);
	SSL_CTX_set_options(sctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
	SSL_CTX_set_verify(sctx, SSL_VERIFY_PEER, NULL);
	if (present(t->ca)) {
		if (load_ca(sctx, t->ca) == 0) {
			*why = LGR_DRAIN_BAD_CA;
			goto out;
		}
	} else if (SSL_CTX_set_default_verify_paths(sctx) != 1) {
		ERR_clear_error(); /* no system store: every peer then fails verification, reported per connection */
	}
	if (present(t->cert) || present(t->key)) {
		if (!present(t->cert) || !present(t->key) || !load_cert(sctx, t->cert, t->key)) {
			*why = LGR_DRAIN_BAD_CERT;
			goto out;
		}
	}
	rc = LGR_OK;
	*out = sctx;
	sctx = NULL;
out:
	SSL_CTX_free(sctx);
	return rc;
}

/* Waits ms, then connects if a line is waiting for that (see timer_cb). */
static void wait_then_connect(struct lgr_dw *w, uint64_t ms)
{
	w->state = W_WAIT;
	timer_in(w->timer, ms);
}

static void close_bev(struct lgr_dw *w)
{
	if (w->bev == NULL)
		return;
	w->c.lost += lgr_settle_drop(&w->lines);
	w->out_queued = w->out_gone = 0;
	bufferevent_free(w->bev);
	w->bev = NULL;
}

/* A connection attempt or a connection failed: count, tell, back off and try the next address. */
static void conn_failed(struct lgr_dw *w, const char *what)
{
	char text[400];
	unsigned delay;

	evtimer_del(w->timer);
	close_bev(w);
	w->c.errors++;
	if (w->carried)
		w->backoff_ms = 0; /* a connection that carried data resets the backoff */
	w->carried = false;
	delay = next_backoff(w);
	w->next_addr++;
	snprintf(text, sizeof(text), "%s", what);
	lgr_logger_say(&w->lg, &w->log_rl, LGR_LOG_WARNING, "%s; reconnecting in %u ms", text, delay);
	notify_error(w, LGR_DRAIN_OK, text);
	wait_then_connect(w, delay);
}

/* Bytes left the output buffer for the socket (or the TLS layer). */
static void out_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
	struct lgr_dw *w = arg;

	(void)buf;
	if (info->n_deleted == 0)
		return;
	w->out_gone += info->n_deleted;
	w->c.sent += lgr_settle_upto(&w->lines, w->out_gone);
	if (!w->carried) {
		w->carried = true;
		w->backoff_ms = 0;
	}
}

/* The output went down to the low watermark: room again. */
static void write_cb(struct bufferevent *bev, void *arg)
{
	(void)bev;
	notify_ready(arg);
}

/* A drain sends nothing worth reading; reading only notices the peer closing. */
static void read_cb(struct bufferevent *bev, void *arg)
{
	(void)arg;
	evbuffer_drain(bufferevent_get_input(bev), evbuffer_get_length(bufferevent_get_input(bev)));
}

/* What went wrong on a connection, in words. */
static void describe(struct lgr_dw *w, short what, char *out, size_t cap)
{
	unsigned long e = w->tls ? bufferevent_get_openssl_error(w->bev) : 0;
	int err = EVUTIL_SOCKET_ERROR();
	const char *stage = w->state == W_UP ? "connection" : "connect";

	if (e != 0) {
		char why[256];
		SSL *ssl = bufferevent_openssl_get_ssl(w->bev);
		long vr = ssl != NULL ? SSL_get_verify_result(ssl) : X509_V_OK;

		ERR_error_string_n(e, why, sizeof(why));
		while (bufferevent_get_openssl_error(w->bev) != 0)
			;
		if (vr != X509_V_OK)
			snprintf(out, cap, "TLS handshake failed: %s (%s)", X509_verify_cert_error_string(vr), why);
		else
			snprintf(out, cap, "TLS %s failed: %s", w->state == W_UP ? "connection" : "handshake", why);
	} else if (what & BEV_EVENT_TIMEOUT) {
		snprintf(out, cap, "%s timed out", w->state == W_UP ? "write" : "connect");
	} else if (what & BEV_EVENT_EOF) {
		snprintf(out, cap, "%s closed by the peer", stage);
	} else {
		snprintf(out, cap, "%s failed: %s", stage, err != 0 ? evutil_socket_error_to_string(err) : "error");
	}
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct lgr_dw *w = arg;
	char text[400];

	(void)bev;
	if (what & BEV_EVENT_CONNECTED) {
		struct timeval wd;

		evtimer_del(w->timer); /* the dial deadline */
		w->state = W_UP;
		w->c.connects++;
		ms_to_tv(WRITE_DEADLINE_MS, &wd);
		bufferevent_set_timeouts(w->bev, NULL, &wd);
		bufferevent_enable(w->bev, EV_READ | EV_WRITE);
		notify_ready(w);
		return;
	}
	describe(w, what, text, sizeof(text));
	conn_failed(w, text);
}

/* An SSL object for the drain's host: SNI for names (never for address literals) and the name or address checked. */
static SSL *tls_ssl(struct lgr_dw *w)
{
	const char *host = w->drain->host;
	SSL *ssl = SSL_new(w->ssl_ctx);
	unsigned char tmp[16];
	bool literal = evutil_inet_pton(AF_INET, host, tmp) == 1 || evutil_inet_pton(AF_INET6, host, tmp) == 1;

	if (ssl == NULL)
		return NULL;
	SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	/* OpenSSL 3 takes an address literal here as an IP SAN to match */
	if (SSL_set1_host(ssl, host) != 1 || (!literal && SSL_set_tlsext_host_name(ssl, host) != 1)) {
		SSL_free(ssl);
		return NULL;
	}
	return ssl;
}

/* Connects to the next resolved address. */
static void connect_addr(struct lgr_dw *w)
{
	unsigned i = w->next_addr % w->naddrs;
	struct bufferevent *bev;
	int rc;

	if (w->tls) {
		SSL *ssl = tls_ssl(w);

		if (ssl == NULL) {
			conn_failed(w, "TLS setup failed (out of memory)");
			return;
		}
		bev = bufferevent_openssl_socket_new(
			w->ctx->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
		if (bev == NULL)
			SSL_free(ssl);
		else
			bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	} else {
		bev = bufferevent_socket_new(w->ctx->base, -1, BEV_OPT_CLOSE_ON_FREE);
	}
	if (bev == NULL) {
		conn_failed(w, "out of memory");
		return;
	}
	w->bev = bev;
	w->state = W_CONNECTING;
	w->carried = false;
	bufferevent_setcb(bev, read_cb, write_cb, event_cb, w);
	bufferevent_setwatermark(bev, EV_WRITE, w->max_pending / 2, 0);
	evbuffer_add_cb(bufferevent_get_output(bev), out_cb, w);
	timer_in(w->timer, DIAL_MS);
	rc = bufferevent_socket_connect(bev, (struct sockaddr *)&w->addrs[i], (int)w->addr_len[i]);
	if (rc != 0 && w->bev == bev && w->state == W_CONNECTING) {
		char text[300];
		int err = EVUTIL_SOCKET_ERROR();

		snprintf(text, sizeof(text), "connect failed: %s",
			err != 0 ? evutil_socket_error_to_string(err) : "error");
		conn_failed(w, text);
	}
}

static void dns_cb(int result, struct evutil_addrinfo *res, void *arg)
{
	struct lgr_dw *w = arg;
	struct evutil_addrinfo *ai;

	if (result == EVUTIL_EAI_CANCEL) {
		if (res != NULL)
			evutil_freeaddrinfo(res);
		return; /* the writer is gone, or gave up waiting */
	}
	w->dnsreq = NULL;
	if (result != 0 || res == NULL) {
		lgr_logger_say(&w->lg, &w->log_rl, LGR_LOG_WARNING, "cannot resolve %s: %s", w->drain->host,
			evutil_gai_strerror(result));
		fail_remember(w->ctx, w->drain->host);
		w->c.errors++;
		tell_reason(w, LGR_DRAIN_RESOLVE_FAILED);
		wait_then_connect(w, RESOLVE_FAIL_MS);
		if (res != NULL)
			evutil_freeaddrinfo(res);
		return;
	}
	w->naddrs = 0;
	w->next_addr = 0;
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		if (denied(w->ctx, ai->ai_addr)) {
			evtimer_del(w->timer);
			w->state = W_FAILED;
			w->naddrs = 0;
			tell_reason(w, LGR_DRAIN_DENIED);
			evutil_freeaddrinfo(res);
			return;
		}
		if (w->naddrs < MAX_ADDRS && ai->ai_addrlen <= sizeof(w->addrs[0])) {
			memcpy(&w->addrs[w->naddrs], ai->ai_addr, ai->ai_addrlen);
			w->addr_len[w->naddrs] = (socklen_t)ai->ai_addrlen;
			w->naddrs++;
		}
	}
	evutil_freeaddrinfo(res);
	if (w->naddrs == 0) {
		conn_failed(w, "no usable address");
		return;
	}
	connect_addr(w);
}

/* Resolves (first time, or once every address has been tried) and connects. */
static void start_connect(struct lgr_dw *w)
{
	struct lgr_dw_ctx *ctx = w->ctx;
	struct evutil_addrinfo hints;
	struct evdns_getaddrinfo_request *req;
	char port[8];
	uint64_t until;

	if (w->naddrs > 0 && w->next_addr % w->naddrs != 0) {
		connect_addr(w);
		return;
	}
	if (fail_cached(ctx, w->drain->host, &until)) {
		tell_reason(w, LGR_DRAIN_RESOLVE_SKIPPED);
		wait_then_connect(w, until - lgr_now_ms() + 1);
		return;
	}
	if (ctx->dns == NULL) {
		ctx->dns =
			evdns_base_new(ctx->base, EVDNS_BASE_INITIALIZE_NAMESERVERS | EVDNS_BASE_DISABLE_WHEN_INACTIVE);
		if (ctx->dns == NULL) {
			conn_failed(w, "cannot set up DNS resolution");
			return;
		}
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	hints.ai_flags = EVUTIL_AI_NUMERICSERV;
	snprintf(port, sizeof(port), "%u", (unsigned)w->drain->port);
	w->state = W_RESOLVING;
	timer_in(w->timer, DIAL_MS);
	/* An address literal or a hosts-file name is answered inside this call (dns_cb runs before it returns). */
	req = evdns_getaddrinfo(ctx->dns, w->drain->host, port, &hints, dns_cb, w);
	if (req != NULL && w->state == W_RESOLVING)
		w->dnsreq = req;
}

/* syslog: backoff over, connect kick, or a deadline (resolution or dial). */
static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct lgr_dw *w = arg;

	(void)fd;
	(void)what;
	switch (w->state) {
	case W_WAIT:
		/* Reconnect only for a line refused meanwhile: an idle drain stays closed until the next line. */
		if (w->want_ready)
			start_connect(w);
		else
			w->state = W_IDLE;
		break;
	case W_RESOLVING:
		if (w->dnsreq != NULL) {
			struct evdns_getaddrinfo_request *req = w->dnsreq;

			w->dnsreq = NULL;
			evdns_getaddrinfo_cancel(req);
		}
		/* A name that does not resolve in time fails like one that does not resolve (as Go's lookup does). */
		lgr_logger_say(&w->lg, &w->log_rl, LGR_LOG_WARNING, "cannot resolve %s: timed out", w->drain->host);
		w->naddrs = 0;
		w->c.errors++;
		fail_remember(w->ctx, w->drain->host);
		tell_reason(w, LGR_DRAIN_RESOLVE_FAILED);
		wait_then_connect(w, RESOLVE_FAIL_MS);
		break;
	case W_CONNECTING: conn_failed(w, "connect timed out"); break;
	default: break;
	}
}

static int syslog_write(struct lgr_dw *w, const void *line, size_t len)
{
	char head[24];
	int n = snprintf(head, sizeof(head), "%zu ", len);
	size_t frame = (size_t)n + len;
	struct evbuffer *out;
	size_t pending;

	if (w->state != W_UP) {
		w->want_ready = true;
		if (w->state == W_IDLE)
			wait_then_connect(w, 0); /* not from here: callbacks never run inside lgr_dw_write */
		return LGR_EFULL;
	}
	out = bufferevent_get_output(w->bev);
	pending = evbuffer_get_length(out);
	/* An empty queue takes one line of any size, so that no line is too big to ever go. */
	if (pending > 0 && pending + frame > w->max_pending) {
		w->want_ready = true;
		return LGR_EFULL;
	}
	if (lgr_settle_push(&w->lines, w->out_queued + frame, 1) != LGR_OK)
		return LGR_ENOMEM;
	w->out_queued += frame;
	if (evbuffer_add(out, head, (size_t)n) != 0 || (len > 0 && evbuffer_add(out, line, len) != 0)) {
		/* cannot happen short of memory; the partial frame would corrupt the stream: start afresh */
		lgr_settle_unpush(&w->lines);
		w->out_queued -= frame;
		conn_failed(w, "out of memory");
		return LGR_ENOMEM;
	}
	return LGR_OK;
}

/* --- https: curl on the loop ------------------------------------------------------------------------------------ */

static void req_done(struct req *r, CURLcode result);

static void check_done(struct lgr_dw_ctx *ctx)
{
	CURLMsg *m;
	int left;

	while ((m = curl_multi_info_read(ctx->multi, &left)) != NULL) {
		char *r = NULL;

		if (m->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &r);
		if (r != NULL)
			req_done((struct req *)(void *)r, m->data.result);
	}
}

static void curl_event_cb(evutil_socket_t fd, short what, void *arg)
{
	struct lgr_dw_ctx *ctx = arg;
	int flags = ((what & EV_READ) ? CURL_CSELECT_IN : 0) | ((what & EV_WRITE) ? CURL_CSELECT_OUT : 0);
	int running;

	curl_multi_socket_action(ctx->multi, fd, flags, &running);
	check_done(ctx);
}

static void curl_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct lgr_dw_ctx *ctx = arg;
	int running;

	(void)fd;
	(void)what;
	curl_multi_socket_action(ctx->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	check_done(ctx);
}

static void csock_free(struct csock *cs)
{
	struct lgr_dw_ctx *ctx = cs->ctx;

	if (cs->ev != NULL)
		event_free(cs->ev);
	if (cs->prev != NULL)
		cs->prev->next = cs->next;
	else
		ctx->socks = cs->next;
	if (cs->next != NULL)
		cs->next->prev = cs->prev;
	free(cs);
}

/* curl says which of its sockets to watch for what. */
static int curl_sock_cb(CURL *e, curl_socket_t s, int what, void *userp, void *socketp)
{
	struct lgr_dw_ctx *ctx = userp;
	struct csock *cs = socketp;
	short events = EV_PERSIST;

	(void)e;
	if (what == CURL_POLL_REMOVE) {
		if (cs != NULL) {
			curl_multi_assign(ctx->multi, s, NULL);
			csock_free(cs);
		}
		return 0;
	}
	if (cs == NULL) {
		cs = calloc(1, sizeof(*cs));
		if (cs == NULL)
			return -1;
		cs->ctx = ctx;
		cs->next = ctx->socks;
		if (ctx->socks != NULL)
			ctx->socks->prev = cs;
		ctx->socks = cs;
		curl_multi_assign(ctx->multi, s, cs);
	}
	if (cs->ev != NULL)
		event_free(cs->ev);
	if (what & CURL_POLL_IN)
		events |= EV_READ;
	if (what & CURL_POLL_OUT)
		events |= EV_WRITE;
	cs->ev = event_new(ctx->base, s, events, curl_event_cb, ctx);
	if (cs->ev == NULL || event_add(cs->ev, NULL) != 0)
		return -1;
	return 0;
}

static int curl_timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	struct lgr_dw_ctx *ctx = userp;

	(void)multi;
	if (timeout_ms < 0)
		evtimer_del(ctx->curl_timer);
	else
		timer_in(ctx->curl_timer, (uint64_t)timeout_ms); /* 0: at the next loop turn, never from in here */
	return 0;
}

/* Every address curl is about to connect to passes the deny ranges first. */
static curl_socket_t open_sock_cb(void *arg, curlsocktype purpose, struct curl_sockaddr *a)
{
	struct req *r = arg;
	int fd;

	if (purpose != CURLSOCKTYPE_IPCXN)
		return CURL_SOCKET_BAD;
	if (r->w->denied_socket || denied(r->w->ctx, &a->addr)) {
		r->w->denied_socket = true;
		return CURL_SOCKET_BAD;
	}
	fd = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
	return fd < 0 ? CURL_SOCKET_BAD : fd;
}

static size_t discard_cb(char *p, size_t size, size_t n, void *ud)
{
	(void)p;
	(void)ud;
	return size * n;
}

static void req_free(struct req *r)
{
	struct lgr_dw *w = r->w;
	struct req **pp;

	for (pp = &w->reqs; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == r) {
			*pp = r->next;
			break;
		}
	}
	w->nreqs--;
	w->held -= r->len;
	if (r->in_multi)
		curl_multi_remove_handle(w->ctx->multi, r->easy);
	if (r->retry != NULL)
		event_free(r->retry);
	curl_easy_cleanup(r->easy);
	curl_slist_free_all(r->hdrs);
	free(r->body);
	free(r);
}

static int req_add(struct req *r)
{
	if (curl_multi_add_handle(r->w->ctx->multi, r->easy) != CURLM_OK)
		return LGR_ENOMEM;
	r->in_multi = true;
	return LGR_OK;
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct req *r = arg;
	struct lgr_dw *w = r->w;

	(void)fd;
	(void)what;
	if (req_add(r) != LGR_OK) {
		lgr_logger_say(&w->lg, &w->log_rl, LGR_LOG_ERR,
			"cannot retry a request: out of memory; %" PRIu64 " lines lost", r->nlines);
		w->c.lost += r->nlines;
		req_free(r);
		notify_ready(w);
	}
}

static bool capacity(const struct lgr_dw *w)
{
	if (w->state == W_FAILED || w->state == W_WAIT)
		return false;
	if (!w->batch && w->nreqs >= w->max_requests)
		return false;
	return w->held < w->max_pending;
}

/* Fails the writer for good: everything it holds is lost. */
static void http_fail(struct lgr_dw *w)
{
	w->state = W_FAILED;
	w->c.lost += w->batch_lines;
	w->batch_lines = 0;
	w->held -= w->batch_len;
	w->batch_len = 0;
	evtimer_del(w->flush);
	while (w->reqs != NULL) {
		w->c.lost += w->reqs->nlines;
		req_free(w->reqs);
	}
}

/* A request finished: delivered, dropped, or retried. */
static void req_done(struct req *r, CURLcode result)
{
	struct lgr_dw *w = r->w;
	long status = 0;
	char text[400];
	uint64_t until;

	curl_multi_remove_handle(w->ctx->multi, r->easy);
	r->in_multi = false;
	if (w->denied_socket) {
		w->c.errors++;
		tell_reason(w, LGR_DRAIN_DENIED);
		http_fail(w);
		return;
	}
	if (result == CURLE_OK)
		curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
	if (result == CURLE_OK && status >= 200 && status < 300) {
		w->c.sent += r->nlines;
		req_free(r);
		goto ready;
	}
	w->c.errors++;
	if (result == CURLE_COULDNT_RESOLVE_HOST) {
		/* Retrying a name that does not resolve is pointless: wait out the failure cache instead. */
		lgr_logger_say(&w->lg, &w->log_rl, LGR_LOG_WARNING, "cannot resolve %s: %s; %" PRIu64 " lines lost",
			w->drain->host, r->err[0] != '\0' ? r->err : curl_easy_strerror(result), r->nlines);
		w->c.lost += r->nlines;
		req_free(r);
		fail_remember(w->ctx, w->drain->host);
		if (fail_cached(w->ctx, w->drain->host, &until) && w->state != W_WAIT) {
			tell_reason(w, LGR_DRAIN_RESOLVE_FAILED);
			w->state = W_WAIT;
			timer_in(w->timer, until - lgr_now_ms() + 1);
		}
		return;
	}
	if (result == CURLE_OK)
		snprintf(text, sizeof(text), "POST answered %ld", status);
	else
		snprintf(
			text, sizeof(text), "POST failed: %s", r->err[0] != '\0' ? r->err : curl_easy_strerror(result));
	if (result == CURLE_OK && status >= 400 && status < 500 && status != 429) {
		/* The receiver refuses these lines; sending them again would be refused again. */
		lgr_logger_say(&w->lg, &w->log_rl, LGR_LOG_WARNING, "%s; %" PRIu64 " lines dropped", text, r->nlines);
		notify_error(w, LGR_DRAIN_OK, text);
		w->c.lost += r->nlines;
		req_free(r);
		goto ready;
	}
	if (r->attempt < HTTP_RETRIES) {
		unsigned b = HTTP_RETRY_FIRST_MS << r->attempt;

		r->attempt++;
		b = b / 2 + (unsigned)(rnd(w->ctx) % (b - b / 2 + 1));
		if (r->retry == NULL)
			r->retry = evtimer_new(w->ctx->base, retry_cb, r);
		if (r->retry != NULL) {
			lgr_logger_say(&w->lg, &w->log_rl, LGR_LOG_INFO, "%s; retrying in %u ms", text, b);
			timer_in(r->retry, b);
			return;
		}
	}
	lgr_logger_say(&w->lg, &w->log_rl, LGR_LOG_WARNING, "%s; %" PRIu64 " lines lost after %u attempts", text,
		r->nlines, r->attempt + 1);
	notify_error(w, LGR_DRAIN_OK, text);
	w->c.lost += r->nlines;
	req_free(r);
ready:
	if (capacity(w))
		notify_ready(w);
}

/* A request for body (taken): nlines of the caller's lines in count frames (Logplex-Msg-Count). */
static int req_new(struct lgr_dw *w, char *body, size_t len, uint64_t nlines, uint64_t count, struct req **out)
{
	struct req *r = calloc(1, sizeof(*r));
	char h[128];
	int rc = LGR_ENOMEM;

	*out = NULL;
	if (r == NULL)
		goto out;
	r->w = w;
	r->easy = curl_easy_init();
	if (r->easy == NULL)
		goto out;
	if (w->logplex) {
		lgr_logplex_frame_id(r->frame_id);
		r->hdrs = curl_slist_append(r->hdrs, "Content-Type: application/logplex-1");
		snprintf(h, sizeof(h), "Logplex-Msg-Count: %" PRIu64, count);
		r->hdrs = r->hdrs != NULL ? curl_slist_append(r->hdrs, h) : NULL;
		snprintf(h, sizeof(h), "Logplex-Frame-Id: %s", r->frame_id);
		r->hdrs = r->hdrs != NULL ? curl_slist_append(r->hdrs, h) : NULL;
		snprintf(h, sizeof(h), "Logplex-Drain-Token: %s", w->drain->token);
		r->hdrs = r->hdrs != NULL ? curl_slist_append(r->hdrs, h) : NULL;
	} else {
		r->hdrs = curl_slist_append(r->hdrs, "Content-Type: text/plain");
	}
	/* no "Expect: 100-continue" round trip before large bodies */
	r->hdrs = r->hdrs != NULL ? curl_slist_append(r->hdrs, "Expect:") : NULL;
	if (r->hdrs == NULL)
		goto out;
	curl_easy_setopt(r->easy, CURLOPT_URL, w->url);
	curl_easy_setopt(r->easy, CURLOPT_PROTOCOLS_STR, "https");
	curl_easy_setopt(r->easy, CURLOPT_PROXY, ""); /* the deny ranges apply to the drain, not to a proxy */
	curl_easy_setopt(r->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(r->easy, CURLOPT_PRIVATE, (char *)r);
	curl_easy_setopt(r->easy, CURLOPT_ERRORBUFFER, r->err);
	curl_easy_setopt(r->easy, CURLOPT_CONNECTTIMEOUT_MS, HTTP_CONNECT_MS);
	curl_easy_setopt(r->easy, CURLOPT_TIMEOUT_MS, HTTP_REQUEST_MS);
	curl_easy_setopt(r->easy, CURLOPT_POST, 1L);
	curl_easy_setopt(r->easy, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(r->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
	curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER, r->hdrs);
	curl_easy_setopt(r->easy, CURLOPT_USERAGENT, w->ctx->user_agent);
	curl_easy_setopt(r->easy, CURLOPT_WRITEFUNCTION, discard_cb);
	curl_easy_setopt(r->easy, CURLOPT_OPENSOCKETFUNCTION, open_sock_cb);
	curl_easy_setopt(r->easy, CURLOPT_OPENSOCKETDATA, r);
	curl_easy_setopt(r->easy, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
	curl_easy_setopt(r->easy, CURLOPT_PIPEWAIT, 1L);
	if (w->drain->user != NULL) {
		curl_easy_setopt(r->easy, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
		curl_easy_setopt(r->easy, CURLOPT_USERNAME, w->drain->user);
		curl_easy_setopt(r->easy, CURLOPT_PASSWORD, w->drain->password != NULL ? w->drain->password : "");
	}
	if (w->ca != NULL) {
		struct curl_blob b = {w->ca, strlen(w->ca), CURL_BLOB_NOCOPY};

		/* only the binding's CA, not the system's store besides */
		curl_easy_setopt(r->easy, CURLOPT_CAINFO_BLOB, &b);
		curl_easy_setopt(r->easy, CURLOPT_CAPATH, NULL);
	}
	if (w->cert != NULL) {
		struct curl_blob c = {w->cert, strlen(w->cert), CURL_BLOB_NOCOPY};
		struct curl_blob k = {w->key, strlen(w->key), CURL_BLOB_NOCOPY};

		curl_easy_setopt(r->easy, CURLOPT_SSLCERT_BLOB, &c);
		curl_easy_setopt(r->easy, CURLOPT_SSLCERTTYPE, "PEM");
		curl_easy_setopt(r->easy, CURLOPT_SSLKEY_BLOB, &k);
		curl_easy_setopt(r->easy, CURLOPT_SSLKEYTYPE, "PEM");
	}
	r->body = body;
	r->len = len;
	r->nlines = nlines;
	body = NULL; /* ownership transferred */
	rc = LGR_OK;
out:
	if (rc != LGR_OK && r != NULL) {
		curl_slist_free_all(r->hdrs);
		if (r->easy != NULL)
			curl_easy_cleanup(r->easy);
		free(r);
		r = NULL;
	}
	free(body);
	*out = r;
	return rc;
}

/* Starts a request for body (taken); on failure its lines count as lost when they had been taken (batches). */
static int post(struct lgr_dw *w, char *body, size_t len, uint64_t nlines, uint64_t count, bool taken)
{
	struct req *r;
	int rc = req_new(w, body, len, nlines, count, &r);

	if (rc == LGR_OK) {
		r->next = w->reqs;
		w->reqs = r;
		w->nreqs++;
		w->held += len;
		rc = req_add(r);
		if (rc != LGR_OK)
			req_free(r);
	}
	if (rc != LGR_OK && taken) {
		lgr_logger_say(&w->lg, &w->log_rl, LGR_LOG_ERR, "cannot start a request: %s; %" PRIu64 " lines lost",
			lgr_strerror(rc), nlines);
		w->c.lost += nlines;
	}
	return rc;
}

static int64_t wall_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/*
 * Puts the overflow notice (Logplex's L10 frame) in front of *body (len bytes, taken and replaced). LGR_OK, or
 * LGR_ENOMEM with *body as it was: the notice then waits for the next batch.
 */
static int ovf_prepend(struct lgr_dw *w, char **body, size_t *len)
{
	struct lgr_syslog_buf b;
	char *joined = NULL;
	int rc;

	lgr_syslog_buf_init(&b, 0);
	rc = lgr_logplex_overflow(LGR_LOGPLEX_HTTPS, w->drain->token, w->ovf_n, w->ovf_since, wall_ns(), &b);
	if (rc == LGR_OK) {
		joined = malloc(b.len + *len);
		rc = joined != NULL ? LGR_OK : LGR_ENOMEM;
	}
	if (rc == LGR_OK) {
		memcpy(joined, b.p, b.len);
		if (*len > 0)
			memcpy(joined + b.len, *body, *len);
		free(*body);
		*body = joined;
		*len += b.len;
		w->ovf_n = 0;
	}
	lgr_syslog_buf_cleanup(&b);
	return rc;
}

/* Sends the open batch, and Logplex's overflow notice first when one is due (alone if no line waits). */
static void batch_send(struct lgr_dw *w)
{
	char *body = w->batch_buf;
	size_t len = w->batch_len;
	uint64_t n = w->batch_lines, count = n;

	evtimer_del(w->flush);
	if (len == 0 && w->ovf_n == 0)
		return;
	w->batch_buf = NULL;
	w->batch_len = w->batch_cap = 0;
	w->batch_lines = 0;
	w->held -= len;
	if (w->ovf_n > 0 && ovf_prepend(w, &body, &len) == LGR_OK)
		count++;
	if (len == 0) {
		free(body);
		return;
	}
	post(w, body, len, n, count, true);
}

static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	batch_send(arg);
}

/* https: the end of a resolution failure's quarantine. */
static void http_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct lgr_dw *w = arg;

	(void)fd;
	(void)what;
	if (w->state == W_WAIT) {
		w->state = W_IDLE;
		notify_ready(w);
	}
}

static int batch_put(struct lgr_dw *w, const void *p, size_t n)
{
	if (n == 0)
		return LGR_OK;
	if (w->batch_len + n > w->batch_cap) {
		size_t cap = w->batch_cap == 0 ? 4096 : w->batch_cap;
		char *b;

		while (cap < w->batch_len + n)
			cap *= 2;
		b = realloc(w->batch_buf, cap);
		if (b == NULL)
			return LGR_ENOMEM;
		w->batch_buf = b;
		w->batch_cap = cap;
	}
	memcpy(w->batch_buf + w->batch_len, p, n);
	w->batch_len += n;
	return LGR_OK;
}

static int http_write(struct lgr_dw *w, const void *line, size_t len)
{
	uint64_t until;
	char head[24];
	size_t hn = 0, entry, old;
	bool nl = false;
	int rc;

	if (w->state == W_WAIT) {
		w->want_ready = true;
		return LGR_EFULL;
	}
	if (fail_cached(w->ctx, w->drain->host, &until)) {
		tell_reason(w, LGR_DRAIN_RESOLVE_SKIPPED);
		w->state = W_WAIT;
		w->want_ready = true;
		timer_in(w->timer, until - lgr_now_ms() + 1);
		return LGR_EFULL;
	}
	if (w->logplex)
		hn = (size_t)snprintf(head, sizeof(head), "%zu ", len);
	else if (w->batch)
		nl = len == 0 || ((const char *)line)[len - 1] != '\n'; /* lines are newline-terminated in the batch */
	entry = hn + len + (nl ? 1 : 0);
	/* the open batch goes first when this entry would take it past batch_bytes */
	if (w->batch && w->batch_len > 0 && w->batch_len + entry > w->batch_bytes)
		batch_send(w);
	if (!capacity(w) || (w->held > 0 && w->held + entry > w->max_pending)) {
		w->want_ready = true;
		/* a batch that fills max_pending on its own goes now: its answer brings on_ready */
		if (w->batch && w->nreqs == 0)
			batch_send(w);
		return LGR_EFULL;
	}
	if (!w->batch) {
		char *body = malloc(len > 0 ? len : 1);

		if (body == NULL)
			return LGR_ENOMEM;
		if (len > 0)
			memcpy(body, line, len);
		return post(w, body, len, 1, 1, false);
	}
	old = w->batch_len;
	rc = batch_put(w, head, hn);
	if (rc == LGR_OK)
		rc = batch_put(w, line, len);
	if (rc == LGR_OK && nl)
		rc = batch_put(w, "\n", 1);
	if (rc != LGR_OK) {
		w->batch_len = old; /* not taken: no part of the entry stays */
		return rc;
	}
	w->batch_lines++;
	w->held += entry;
	if (w->batch_len >= w->batch_bytes)
		batch_send(w);
	else if (!evtimer_pending(w->flush, NULL))
		timer_in(w->flush, w->flush_ms);
	return LGR_OK;
}

/* --- the interface ---------------------------------------------------------------------------------------------- */

int lgr_dw_ctx_new(const struct lgr_dw_ctx_conf *conf, struct lgr_dw_ctx **out)
{
	struct lgr_dw_ctx *ctx;
	int rc = LGR_ENOMEM;

	*out = NULL;
	if (conf == NULL || conf->base == NULL)
		return LGR_EINVAL;
	ctx = calloc(1, sizeof(*ctx));
	if (ctx == NULL)
		return LGR_ENOMEM;
	ctx->base = conf->base;
	ctx->deny = conf->deny;
	ctx->log = conf->log;
	ctx->log_ud = conf->log_ud;
	ctx->rnd = (lgr_now_ms() ^ (uint64_t)(uintptr_t)ctx ^ ((uint64_t)getpid() << 32)) | 1;
	ctx->user_agent = strdup(conf->user_agent != NULL ? conf->user_agent : DEFAULT_USER_AGENT);
	if (ctx->user_agent == NULL)
		goto out;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		goto out;
	ctx->curl_inited = true;
	ctx->multi = curl_multi_init();
	ctx->curl_timer = evtimer_new(ctx->base, curl_timeout_cb, ctx);
	if (ctx->multi == NULL || ctx->curl_timer == NULL)
		goto out;
	curl_multi_setopt(ctx->multi, CURLMOPT_SOCKETFUNCTION, curl_sock_cb);
	curl_multi_setopt(ctx->multi, CURLMOPT_SOCKETDATA, ctx);
	curl_multi_setopt(ctx->multi, CURLMOPT_TIMERFUNCTION, curl_timer_cb);
	curl_multi_setopt(ctx->multi, CURLMOPT_TIMERDATA, ctx);
	rc = LGR_OK;
	*out = ctx;
	ctx = NULL;
out:
	lgr_dw_ctx_free(ctx);
	return rc;
}

void lgr_dw_ctx_free(struct lgr_dw_ctx *ctx)
{
	if (ctx == NULL)
		return;
	/* Connections curl keeps open close in the cleanup: it is not to call back into a context half gone. */
	if (ctx->multi != NULL) {
		curl_multi_setopt(ctx->multi, CURLMOPT_SOCKETFUNCTION, NULL);
		curl_multi_setopt(ctx->multi, CURLMOPT_TIMERFUNCTION, NULL);
		curl_multi_cleanup(ctx->multi);
	}
	while (ctx->socks != NULL)
		csock_free(ctx->socks);
	if (ctx->curl_timer != NULL)
		event_free(ctx->curl_timer);
	if (ctx->curl_inited)
		curl_global_cleanup();
	if (ctx->dns != NULL)
		evdns_base_free(ctx->dns, 1);
	while (ctx->fails != NULL) {
		struct resolve_fail *f = ctx->fails;

		ctx->fails = f->next;
		free(f);
	}
	free(ctx->user_agent);
	free(ctx);
}

static char *dup_present(const char *s, bool *fail)
{
	char *d;

	if (!present(s))
		return NULL;
	d = strdup(s);
	if (d == NULL)
		*fail = true;
	return d;
}

/* The https URL of a drain: https-batch goes as https; an IPv6 literal gets its brackets back. */
static char *http_url(const struct lgr_drain *d)
{
	bool v6 = strchr(d->host, ':') != NULL;
	size_t len = strlen(d->host) + strlen(d->target) + 32;
	char *u = malloc(len);

	if (u != NULL)
		snprintf(u, len, "https://%s%s%s:%u%s", v6 ? "[" : "", d->host, v6 ? "]" : "", (unsigned)d->port,
			d->target);
	return u;
}

int lgr_dw_new(struct lgr_dw_ctx *ctx, const struct lgr_dw_conf *conf, struct lgr_dw **out, enum lgr_drain_reason *why)
{
	enum lgr_drain_reason dummy = LGR_DRAIN_OK;
	struct lgr_dw *w;
	bool fail = false;
	int rc = LGR_ENOMEM;

	if (why == NULL)
		why = &dummy;
	*why = LGR_DRAIN_OK;
	*out = NULL;
	if (ctx == NULL || conf == NULL || conf->drain == NULL)
		return LGR_EINVAL;
	switch (conf->drain->scheme) {
	case LGR_DRAIN_SYSLOG:
	case LGR_DRAIN_SYSLOG_TLS:
	case LGR_DRAIN_HTTPS:
	case LGR_DRAIN_HTTPS_BATCH: break;
	default: *why = LGR_DRAIN_BAD_SCHEME; return LGR_EINVAL;
	}
	w = calloc(1, sizeof(*w));
	if (w == NULL)
		return LGR_ENOMEM;
	w->ctx = ctx;
	w->drain = conf->drain;
	w->http = conf->drain->scheme == LGR_DRAIN_HTTPS || conf->drain->scheme == LGR_DRAIN_HTTPS_BATCH;
	w->logplex = w->http && conf->drain->format == LGR_DRAIN_LOGPLEX;
	w->batch = conf->drain->scheme == LGR_DRAIN_HTTPS_BATCH || w->logplex;
	w->tls = conf->drain->scheme == LGR_DRAIN_SYSLOG_TLS;
	w->max_pending = conf->max_pending != 0 ? conf->max_pending : DEFAULT_MAX_PENDING;
	w->batch_bytes = conf->batch_bytes != 0 ? conf->batch_bytes
			 : w->logplex		? DEFAULT_LOGPLEX_BATCH_BYTES
						: DEFAULT_BATCH_BYTES;
	w->flush_ms = conf->flush_ms != 0 ? conf->flush_ms : DEFAULT_FLUSH_MS;
	w->max_requests = conf->max_requests != 0 ? conf->max_requests : DEFAULT_MAX_REQUESTS;
	w->on_ready = conf->on_ready;
	w->on_error = conf->on_error;
	w->ud = conf->ud;
	w->log_rl = (struct lgr_ratelimit)LGR_RATELIMIT_INIT(LOG_WINDOW_MS, LOG_BURST);
	w->lg_name = malloc(sizeof("drain ") + strlen(conf->drain->anon));
	if (w->lg_name == NULL)
		goto out;
	sprintf(w->lg_name, "drain %s", conf->drain->anon);
	w->lg = (struct lgr_logger){w->lg_name, ctx->log, ctx->log_ud};
	w->err_rl = (struct lgr_ratelimit)LGR_RATELIMIT_INIT(ERROR_WINDOW_MS, 1);
	w->state = W_IDLE;
	w->notify = event_new(ctx->base, -1, 0, notify_cb, w);
	w->timer = evtimer_new(ctx->base, w->http ? http_timer_cb : timer_cb, w);
	if (w->notify == NULL || w->timer == NULL)
		goto out;
	if (w->tls || (w->http && (present(conf->tls.ca) || present(conf->tls.cert) || present(conf->tls.key)))) {
		/* loaded now so that bad material is refused up front; curl gets the same PEM text */
		rc = tls_ctx(&conf->tls, &w->ssl_ctx, why);
		if (rc != LGR_OK)
			goto out;
		rc = LGR_ENOMEM;
	}
	if (w->http) {
		SSL_CTX_free(w->ssl_ctx);
		w->ssl_ctx = NULL;
		w->url = http_url(w->drain);
		w->flush = evtimer_new(ctx->base, flush_cb, w);
		w->ca = dup_present(conf->tls.ca, &fail);
		w->cert = dup_present(conf->tls.cert, &fail);
		w->key = dup_present(conf->tls.key, &fail);
		if (w->url == NULL || w->flush == NULL || fail)
			goto out;
	}
	rc = LGR_OK;
	*out = w;
	w = NULL;
out:
	if (w != NULL)
		lgr_dw_free(w);
	return rc;
}

int lgr_dw_write(struct lgr_dw *w, const void *line, size_t len)
{
	if (w == NULL || (line == NULL && len > 0) || len > MAX_LINE)
		return LGR_EINVAL;
	if (w->state == W_FAILED || w->doomed)
		return LGR_EIO;
	return w->http ? http_write(w, line, len) : syslog_write(w, line, len);
}

void lgr_dw_flush(struct lgr_dw *w)
{
	if (w != NULL && w->batch && w->state != W_FAILED)
		batch_send(w);
}

void lgr_dw_overflow(struct lgr_dw *w, uint64_t n, int64_t since_ns)
{
	if (w == NULL || n == 0 || !w->logplex || w->state == W_FAILED || w->doomed)
		return;
	if (w->ovf_n == 0 || since_ns < w->ovf_since)
		w->ovf_since = since_ns;
	w->ovf_n += n;
	/* told within flush_ms even when no line follows */
	if (!evtimer_pending(w->flush, NULL))
		timer_in(w->flush, w->flush_ms);
}

bool lgr_dw_idle(const struct lgr_dw *w)
{
	if (w->http)
		return w->nreqs == 0 && w->batch_len == 0 && w->ovf_n == 0;
	return w->bev == NULL || evbuffer_get_length(bufferevent_get_output(w->bev)) == 0;
}

size_t lgr_dw_pending(const struct lgr_dw *w)
{
	if (w->http)
		return w->held;
	return w->bev != NULL ? evbuffer_get_length(bufferevent_get_output(w->bev)) : 0;
}

const struct lgr_dw_counters *lgr_dw_counters(const struct lgr_dw *w)
{
	return &w->c;
}

void lgr_dw_free(struct lgr_dw *w)
{
	lgr_dw_close(w, NULL);
}

void lgr_dw_close(struct lgr_dw *w, struct lgr_dw_counters *last)
{
	if (w == NULL || w->doomed)
		return;
	if (w->dnsreq != NULL) {
		struct evdns_getaddrinfo_request *req = w->dnsreq;

		w->dnsreq = NULL;
		evdns_getaddrinfo_cancel(req);
	}
	close_bev(w);
	w->c.lost += w->batch_lines;
	while (w->reqs != NULL) {
		w->c.lost += w->reqs->nlines;
		req_free(w->reqs);
	}
	if (last != NULL)
		*last = w->c;
	if (w->flush != NULL)
		event_free(w->flush);
	if (w->timer != NULL)
		event_free(w->timer);
	if (w->notify != NULL)
		event_free(w->notify);
	SSL_CTX_free(w->ssl_ctx);
	lgr_settle_free(&w->lines);
	free(w->batch_buf);
	free(w->url);
	free(w->ca);
	free(w->cert);
	free(w->key);
	free(w->lg_name);
	w->doomed = true;
	if (w->busy == 0)
		free(w);
}
