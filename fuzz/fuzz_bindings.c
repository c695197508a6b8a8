/*
 * fuzz_bindings.c: the binding cache's JSON (lgr_bindings) with small limits, so that the limits themselves are
 * reached, merged with static bindings (drains.static). An input with a NUL byte is static entries (one per line)
 * before it and JSON after it; without one it is all JSON, merged with a fixed set of static entries. Static
 * entries that do not parse must be refused with a message naming the entry. Every snapshot that builds is walked:
 * each app must be found by lookup, hold 1..per_app drains in URL order, and its lines must format (hostnames come
 * from the input); the stats must add up. Any breach traps.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lgr_bindings.h"
#include "lgr_syslog.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what)
{
	fprintf(stderr, "fuzz_bindings: %s\n", what);
	__builtin_trap();
}

static void count(const char *app_id, enum lgr_drain_reason why, const char *scheme, const char *anon, void *ud)
{
	size_t *n = ud;
	char notice[512];

	if (why == LGR_DRAIN_OK || why >= LGR_DRAIN_REASON_COUNT)
		fail("a refusal without a reason");
	lgr_drain_notice(why, scheme, anon, notice, sizeof(notice));
	(void)app_id;
	(*n)++;
}

#define MAX_STATIC 16

/*
 * The static bindings: the lines before the input's first NUL (*json and *len then point past it), or the fixed
 * set. NULL when the lines do not parse (the message checked).
 */
static struct lgr_bindings_static *statics(const uint8_t **json, size_t *len)
{
	static const char *const fixed[] = {"a syslog://h0:514", "a org.s.a syslog://h1:514", "app-2 syslog://s:1"};
	const uint8_t *nul = memchr(*json, '\0', *len);
	const char *entries[MAX_STATIC];
	struct lgr_bindings_static *st = NULL;
	char *text, *p, *nl, err[512];
	size_t n = 0, bad = MAX_STATIC;
	int rc;

	if (nul == NULL) {
		if (lgr_bindings_static_parse(fixed, 3, 0, &st, NULL, NULL, 0) != LGR_OK)
			fail("the fixed static entries are refused");
		return st;
	}
	text = malloc((size_t)(nul - *json) + 1);
	if (text == NULL)
		fail("no memory for the static entries");
	memcpy(text, *json, (size_t)(nul - *json));
	text[nul - *json] = '\0';
	*len -= (size_t)(nul - *json) + 1;
	*json = nul + 1;
	for (p = text; n < MAX_STATIC; p = nl + 1) {
		entries[n++] = p;
		nl = strchr(p, '\n');
		if (nl == NULL)
			break;
		*nl = '\0';
	}
	rc = lgr_bindings_static_parse(entries, n, 0, &st, &bad, err, sizeof(err));
	if (rc == LGR_OK && st == NULL)
		fail("static entries parsed into nothing");
	if (rc != LGR_OK && (st != NULL || (rc == LGR_EDECODE && (bad >= n || strncmp(err, "entry ", 6) != 0))))
		fail("a refused static entry is not named");
	free(text);
	return st;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const agg[] = {"syslog://agg:514", "nope"};
	struct lgr_bindings_conf conf = {
		.max_bytes = 1 << 20, .max_entries = 64, .max_apps = 256, .max_pem = 4096, .per_app = 3};
	const struct lgr_bindings_app *apps;
	const struct lgr_bindings_stats *st;
	struct lgr_bindings *b = NULL;
	struct lgr_bindings_static *sb;
	struct lgr_syslog_buf buf;
	struct lgr_env *env;
	size_t n_apps, i, j, refused = 0, pairs = 0;
	int rc;

	sb = statics(&data, &size);
	if (sb == NULL)
		return 0;
	rc = lgr_bindings_parse((const char *)data, size, agg, 2, sb, &conf, count, &refused, &b);
	lgr_bindings_static_free(sb); /* a snapshot does not need them once built */
	if (rc != LGR_OK) {
		if (b != NULL)
			fail("a snapshot on failure");
		return 0;
	}
	env = lgr_env_new();
	if (env == NULL || lgr_env_set_log(env, "x", 1, LOGGREGATOR__V2__LOG__TYPE__OUT) != LGR_OK)
		fail("no memory for the envelope");
	lgr_syslog_buf_init(&buf, 1 << 16);
	st = lgr_bindings_stats(b);
	if (st->rejected != refused)
		fail("refusals and the counter differ");
	apps = lgr_bindings_apps(b, &n_apps);
	for (i = 0; i < n_apps; i++) {
		const struct lgr_bindings_app *a = &apps[i];

		if (lgr_bindings_lookup(b, a->app_id) != a)
			fail("an app is not found");
		if (a->n == 0 || a->n > conf.per_app)
			fail("drain count out of bounds");
		if (i > 0 && strcmp(apps[i - 1].app_id, a->app_id) >= 0)
			fail("apps out of order");
		for (j = 0; j < a->n; j++) {
			struct lgr_syslog_opts o = {a->drains[j].hostname, a->drains[j].drain->omit_metadata};

			if (j > 0 && strcmp(a->drains[j - 1].drain->url, a->drains[j].drain->url) >= 0)
				fail("drains out of order or repeated");
			lgr_syslog_buf_reset(&buf);
			rc = lgr_syslog_format(env, &o, LGR_SYSLOG_OCTET, &buf, NULL);
			if (rc != LGR_OK && rc != LGR_EUNSUPPORTED && rc != LGR_ENOMEM)
				fail("a line does not format");
		}
		pairs += a->n;
	}
	if (pairs != st->bindings || n_apps != st->apps)
		fail("stats do not add up");
	lgr_bindings_aggregate(b, &i);
	if (i != 1)
		fail("the aggregate drain is missing");
	lgr_syslog_buf_cleanup(&buf);
	lgr_env_unref(env);
	lgr_bindings_unref(b);
	return 0;
}
