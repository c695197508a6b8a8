/*
 * h2_harness.h: what the lgr_h2 tests share: a throwaway PKI (contrib/gen-pki.sh), TLS contexts from lgr_tls, an
 * event loop run until a condition holds or a deadline passes, and the core's log lines kept for assertions.
 */
#ifndef H2_HARNESS_H
#define H2_HARNESS_H

#include <criterion/criterion.h>
#include <criterion/hooks.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/err.h>

#include "lgr.h"
#include "lgr_h2.h"
#include "lgr_tls.h"

static char pki[256];
static struct event_base *base;
static char logs[16384];

static inline void keep_log(enum lgr_log_level level, const char *msg, void *ud)
{
	size_t have = strlen(logs);

	if (getenv("H2_TEST_VERBOSE") != NULL)
		fprintf(stderr, "[%d] %s\n", level, msg);
	if (have + strlen(msg) + 2 < sizeof(logs))
		snprintf(logs + have, sizeof(logs) - have, "%s\n", msg);
}

/* One PKI for the whole run, made by the runner before it starts the tests (RSA key generation is slow). */
ReportHook(PRE_ALL)(struct criterion_test_set *tests)
{
	char tmpl[] = "/tmp/lgr-h2-XXXXXX";
	char cmd[600];

	if (mkdtemp(tmpl) == NULL)
		return;
	snprintf(pki, sizeof(pki), "%s", tmpl);
	snprintf(cmd, sizeof(cmd), "'%s/contrib/gen-pki.sh' '%s' >/dev/null", TOP_SRCDIR, pki);
	if (system(cmd) != 0)
		fprintf(stderr, "%s failed\n", cmd);
	/* Test workers are new processes: they learn the directory from the environment. */
	setenv("LGR_H2_TEST_PKI", pki, 1);
}

ReportHook(POST_ALL)(struct criterion_global_stats *stats)
{
	char cmd[300];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", pki);
	if (pki[0] != '\0' && system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", pki);
}

static inline void h2_setup(void)
{
	char probe[300];

	signal(SIGPIPE, SIG_IGN);
	snprintf(pki, sizeof(pki), "%s", getenv("LGR_H2_TEST_PKI") != NULL ? getenv("LGR_H2_TEST_PKI") : "");
	snprintf(probe, sizeof(probe), "%s/client.key", pki);
	cr_assert_eq(access(probe, R_OK), 0, "no test PKI in %s", pki);
	base = event_base_new();
	cr_assert_not_null(base);
	logs[0] = '\0';
	lgr_log_set(keep_log, NULL);
}

static inline void h2_teardown(void)
{
	if (base != NULL)
		event_base_free(base);
	base = NULL;
	lgr_log_set(NULL, NULL);
}

static inline const char *pki_path(const char *name)
{
	static char buf[8][512];
	static int next;
	char *p = buf[next++ % 8];

	snprintf(p, 512, "%s/%s", pki, name);
	return p;
}

static const char *const h2_alpn[] = {"h2", NULL};

static inline SSL_CTX *server_ctx(const char *name)
{
	char crt[64], key[64], err[512];
	struct lgr_tls_config cfg = {0};
	SSL_CTX *ctx;

	snprintf(crt, sizeof(crt), "%s.crt", name);
	snprintf(key, sizeof(key), "%s.key", name);
	cfg.ca_file = pki_path("ca.crt");
	cfg.cert_file = pki_path(crt);
	cfg.key_file = pki_path(key);
	cfg.require_client_cert = true;
	cfg.alpn = h2_alpn;
	cr_assert_eq(lgr_tls_server_ctx(&cfg, &ctx, err, sizeof(err)), LGR_OK, "%s", err);
	return ctx;
}

static inline SSL_CTX *client_ctx(const char *name)
{
	char crt[64], key[64], err[512];
	struct lgr_tls_config cfg = {0};
	SSL_CTX *ctx;

	snprintf(crt, sizeof(crt), "%s.crt", name);
	snprintf(key, sizeof(key), "%s.key", name);
	cfg.ca_file = pki_path("ca.crt");
	cfg.cert_file = pki_path(crt);
	cfg.key_file = pki_path(key);
	cfg.alpn = h2_alpn;
	cr_assert_eq(lgr_tls_client_ctx(&cfg, &ctx, err, sizeof(err)), LGR_OK, "%s", err);
	return ctx;
}

static inline void expire(evutil_socket_t fd, short what, void *arg)
{
	*(bool *)arg = true;
}

/* Runs the loop until cond holds or ms pass; evaluates to cond. */
#define RUN_UNTIL(cond, ms)                                                                                            \
	({                                                                                                             \
		bool expired_ = false;                                                                                 \
		struct timeval tv_ = {(ms) / 1000, ((ms) % 1000) * 1000};                                              \
		struct event *ev_ = evtimer_new(base, expire, &expired_);                                              \
		evtimer_add(ev_, &tv_);                                                                                \
		while (!(cond) && !expired_)                                                                           \
			event_base_loop(base, EVLOOP_ONCE);                                                            \
		event_free(ev_);                                                                                       \
		(bool)(cond);                                                                                          \
	})

/* Runs the loop for ms whatever happens (to show that something does not happen). */
static inline void run_for(int ms)
{
	bool never = false;

	(void)RUN_UNTIL(never, ms);
}

#endif
