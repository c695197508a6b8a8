/*
 * fuzz_drain.c: drain URLs and deny ranges (lgr_drain). The first line of the input is a drain URL, parsed with
 * both metadata defaults; every later line is a deny range, and the last line is also read as an address. Traps
 * (so libFuzzer keeps the input) when a parsed drain breaks its contract: an anonymised form that still carries
 * userinfo or a query, an empty host, port 0, a filter with more log types than the bound, a refusal without a
 * reason; or when a parsed range does not contain its own ends.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lgr_drain.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what)
{
	fprintf(stderr, "fuzz_drain: %s\n", what);
	__builtin_trap();
}

static struct lgr_env *envs[4];

static void make_envs(void)
{
	if (envs[0] != NULL)
		return;
	envs[0] = lgr_env_new();
	lgr_env_set_log(envs[0], "x", 1, LOGGREGATOR__V2__LOG__TYPE__OUT);
	lgr_env_set_tag(envs[0], "source_type", "APP/PROC/WEB");
	envs[1] = lgr_env_new();
	lgr_env_set_log(envs[1], "x", 1, LOGGREGATOR__V2__LOG__TYPE__ERR);
	envs[2] = lgr_env_new();
	lgr_env_set_counter(envs[2], "c", 1, 2);
	envs[3] = lgr_env_new();
	lgr_env_set_timer(envs[3], "t", 1, 2);
}

static void check_url(const char *url, size_t len, unsigned flags)
{
	struct lgr_drain *d = NULL;
	enum lgr_drain_reason why = LGR_DRAIN_OK;
	const char *auth;
	char notice[256];
	size_t i;
	int rc = lgr_drain_parse(url, len, flags, &d, &why);

	if (rc != LGR_OK) {
		if (d != NULL || why == LGR_DRAIN_OK)
			fail("a refusal without a reason, or with a drain");
		lgr_drain_notice(why, "s", "u", notice, sizeof(notice));
		return;
	}
	if (d->host[0] == '\0' || d->port == 0)
		fail("empty host or port 0");
	auth = strstr(d->anon, "://");
	if (auth == NULL || strchr(d->anon, '?') != NULL || strchr(d->anon, '#') != NULL)
		fail("anon keeps a query or fragment");
	if (memchr(auth, '@', strcspn(auth + 3, "/") + 3) != NULL)
		fail("anon keeps userinfo");
	if (strlen(d->url) != len || memcmp(d->url, url, len) != 0)
		fail("url is not the input");
	if (d->filter.n_include + d->filter.n_exclude > LGR_DRAIN_LOG_TYPES_MAX)
		fail("too many log types");
	if (d->format == LGR_DRAIN_LOGPLEX && (d->filter.types & ~(unsigned)LGR_DRAIN_TYPE_LOG))
		fail("a Logplex drain takes more than logs");
	if (d->token == NULL || d->token[0] == '\0')
		fail("no token");
	for (i = 0; i < 4; i++)
		(void)lgr_drain_accepts(d, envs[i]);
	lgr_drain_free(d);
}

static void check_range(const char *s, size_t len)
{
	struct lgr_drain_range r;
	struct lgr_drain_deny deny;
	uint8_t a[16];

	if (lgr_drain_range_parse(s, len, &r) != LGR_OK) {
		if (lgr_drain_addr_parse(s, len, a) == LGR_OK)
			fail("an address that is not a range");
		return;
	}
	if (memcmp(r.lo, r.hi, 16) > 0)
		fail("lo > hi");
	deny.n = 1;
	deny.r = &r;
	if (!lgr_drain_deny_match(&deny, r.lo) || !lgr_drain_deny_match(&deny, r.hi))
		fail("a range misses its ends");
	if (lgr_drain_addr_parse(s, len, a) == LGR_OK && !lgr_drain_deny_match(&deny, a))
		fail("a single address misses itself");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data, *end = s + size, *nl;
	char anon[128], scheme[32];
	size_t len;

	make_envs();
	nl = memchr(s, '\n', size);
	len = nl != NULL ? (size_t)(nl - s) : size;
	check_url(s, len, 0);
	check_url(s, len, LGR_DRAIN_DEFAULT_OMIT_METADATA);
	if (lgr_drain_anonymize(s, len, anon, sizeof(anon)) >= sizeof(anon) || strlen(anon) >= sizeof(anon))
		fail("anonymize past its buffer");
	lgr_drain_scheme_text(s, len, scheme, sizeof(scheme));
	while (nl != NULL) {
		s = nl + 1;
		nl = memchr(s, '\n', (size_t)(end - s));
		check_range(s, nl != NULL ? (size_t)(nl - s) : (size_t)(end - s));
	}
	return 0;
}
