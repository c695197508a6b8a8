/*
 * test_bindings.c: binding snapshots (lgr_bindings): the binding cache's JSON read into per-app drains sorted by
 * URL and cut to the per-app limit, refusals one entry at a time with the reason and the apps to tell, aggregate
 * drains, static bindings from the configuration (their parse, its errors, their merge with the JSON's), the
 * bounds on untrusted input, certificate checks, and publishing to reader threads.
 */
#include <criterion/criterion.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lgr_bindings.h"

/* --- helpers -------------------------------------------------------------------------------------------------- */

#define MAX_SEEN 32

struct seen {
	size_t n;
	char app[MAX_SEEN][64];
	enum lgr_drain_reason why[MAX_SEEN];
	char anon[MAX_SEEN][128];
	char scheme[MAX_SEEN][32];
};

static void on_reject(const char *app_id, enum lgr_drain_reason why, const char *scheme, const char *anon, void *ud)
{
	struct seen *s = ud;

	if (s->n >= MAX_SEEN)
		return;
	snprintf(s->app[s->n], sizeof(s->app[0]), "%s", app_id != NULL ? app_id : "(none)");
	snprintf(s->anon[s->n], sizeof(s->anon[0]), "%s", anon != NULL ? anon : "(none)");
	snprintf(s->scheme[s->n], sizeof(s->scheme[0]), "%s", scheme != NULL ? scheme : "(none)");
	s->why[s->n++] = why;
}

static struct lgr_bindings *parse(const char *json, const struct lgr_bindings_conf *conf, struct seen *s)
{
	struct lgr_bindings *b = NULL;
	int rc = lgr_bindings_parse(json, strlen(json), NULL, 0, NULL, conf, on_reject, s, &b);

	cr_assert_eq(rc, LGR_OK, "rc %d", rc);
	cr_assert_not_null(b);
	return b;
}

static int parse_rc(const char *json, const struct lgr_bindings_conf *conf)
{
	struct lgr_bindings *b = (struct lgr_bindings *)1;
	int rc = lgr_bindings_parse(json, strlen(json), NULL, 0, NULL, conf, NULL, NULL, &b);

	if (rc != LGR_OK)
		cr_expect_null(b);
	else
		lgr_bindings_unref(b);
	return rc;
}

/* --- reading -------------------------------------------------------------------------------------------------- */

Test(bindings, the_binding_cache_form_maps_apps_to_drains_sorted_by_url)
{
	const char *json =
		"[{\"url\": \"syslog://z.example.com:514\", \"credentials\": [{\"cert\": \"\", \"key\": \"\", "
		"\"ca\": \"\", \"apps\": [{\"app_id\": \"app-1\", \"hostname\": \"org.space.one\"}]}]},"
		" {\"url\": \"syslog-tls://a.example.com:6514\", \"credentials\": [{\"cert\": \"C\", \"key\": "
		"\"K\", \"ca\": \"CA\", \"apps\": [{\"app_id\": \"app-1\", \"hostname\": \"org.space.one\"},"
		" {\"app_id\": \"app-2\", \"hostname\": \"org.space.two\"}]}], \"extra\": true}]";
	struct seen s = {0};
	struct lgr_bindings *b = parse(json, NULL, &s);
	const struct lgr_bindings_app *a1 = lgr_bindings_lookup(b, "app-1"), *a2 = lgr_bindings_lookup(b, "app-2");
	const struct lgr_bindings_stats *st = lgr_bindings_stats(b);

	cr_expect_eq(s.n, 0);
	cr_assert_not_null(a1);
	cr_assert_eq(a1->n, 2);
	cr_expect_str_eq(a1->drains[0].drain->url, "syslog-tls://a.example.com:6514");
	cr_expect_str_eq(a1->drains[0].cert, "C");
	cr_expect_str_eq(a1->drains[0].key, "K");
	cr_expect_str_eq(a1->drains[0].ca, "CA");
	cr_expect_str_eq(a1->drains[1].drain->url, "syslog://z.example.com:514");
	cr_expect_null(a1->drains[1].cert);
	cr_expect_str_eq(a1->drains[1].hostname, "org.space.one");
	cr_assert_not_null(a2);
	cr_expect_eq(a2->n, 1);
	cr_expect_eq(a2->drains[0].drain, a1->drains[0].drain); /* one drain per entry, shared */
	cr_expect_str_eq(a2->drains[0].hostname, "org.space.two");
	cr_expect_null(lgr_bindings_lookup(b, "app-3"));
	cr_expect_eq(st->entries, 2);
	cr_expect_eq(st->apps, 2);
	cr_expect_eq(st->bindings, 3);
	lgr_bindings_unref(b);
}

Test(bindings, an_app_keeps_its_first_drains_by_url_and_counts_the_rest)
{
	char json[4096];
	size_t o = 0;
	int i;
	struct lgr_bindings_conf conf = {.per_app = 5};
	struct lgr_bindings *b;
	const struct lgr_bindings_app *a;

	o += (size_t)snprintf(json + o, sizeof(json) - o, "[");
	for (i = 7; i >= 1; i--)
		o += (size_t)snprintf(json + o, sizeof(json) - o,
			"%s{\"url\": \"syslog://h%d:514\", \"credentials\": [{\"apps\": [{\"app_id\": \"a\"}]}]}",
			i == 7 ? "" : ",", i);
	/* the same URL again in another entry: once for the app */
	o += (size_t)snprintf(json + o, sizeof(json) - o,
		",{\"url\": \"syslog://h1:514\", \"credentials\": [{\"apps\": [{\"app_id\": \"a\"}]}]}]");
	b = parse(json, &conf, NULL);
	a = lgr_bindings_lookup(b, "a");
	cr_assert_not_null(a);
	cr_assert_eq(a->n, 5);
	for (i = 0; i < 5; i++) {
		char want[32];

		snprintf(want, sizeof(want), "syslog://h%d:514", i + 1);
		cr_expect_str_eq(a->drains[i].drain->url, want);
	}
	cr_expect_eq(lgr_bindings_stats(b)->over_limit, 2);
	lgr_bindings_unref(b);
}

Test(bindings, invalid_entries_are_refused_with_a_reason_for_each_app_and_the_rest_kept)
{
	const char *json =
		"["
		"{\"url\": \"ftp://user:pw@h:21?x=1\", \"credentials\": [{\"apps\": [{\"app_id\": \"a\"}, {\"app_id\": "
		"\"b\"}]}]},"
		"{\"url\": \"syslog://\", \"credentials\": [{\"apps\": [{\"app_id\": \"c\"}]}]},"
		"{\"url\": 42, \"credentials\": [{\"apps\": [{\"app_id\": \"d\"}]}]},"
		"{\"url\": \"syslog://ok:514\", \"credentials\": []},"
		"{\"url\": \"syslog://ok:514\", \"credentials\": [{\"apps\": [{\"hostname\": \"no id\"}, {\"app_id\": "
		"\"e\"}]}]},"
		"{\"url\": \"syslog://ok:514\", \"credentials\": [{\"cert\": 5, \"apps\": [{\"app_id\": \"f\"}]}]},"
		"17"
		"]";
	struct seen s = {0};
	struct lgr_bindings *b = parse(json, NULL, &s);
	const struct lgr_bindings_stats *st = lgr_bindings_stats(b);

	cr_assert_eq(s.n, 8);
	cr_expect_str_eq(s.app[0], "a");
	cr_expect_eq(s.why[0], LGR_DRAIN_BAD_SCHEME);
	cr_expect_str_eq(s.scheme[0], "ftp");
	cr_expect_str_eq(s.anon[0], "ftp://h:21");
	cr_expect_str_eq(s.app[1], "b");
	cr_expect_str_eq(s.app[2], "c");
	cr_expect_eq(s.why[2], LGR_DRAIN_NO_HOST);
	cr_expect_str_eq(s.app[3], "d");
	cr_expect_eq(s.why[3], LGR_DRAIN_BAD_URL);
	cr_expect_str_eq(s.anon[3], "(none)");
	cr_expect_str_eq(s.app[4], "(none)");
	cr_expect_eq(s.why[4], LGR_DRAIN_NO_APP);
	cr_expect_eq(s.why[5], LGR_DRAIN_NO_APP);
	cr_expect_str_eq(s.app[6], "f");
	cr_expect_eq(s.why[6], LGR_DRAIN_BAD_CERT);
	cr_expect_eq(s.why[7], LGR_DRAIN_BAD_URL); /* the bare 17 */
	cr_expect_not_null(lgr_bindings_lookup(b, "e"));
	cr_expect_null(lgr_bindings_lookup(b, "a"));
	cr_expect_eq(st->rejected, 8);
	cr_expect_eq(st->rejected_by[LGR_DRAIN_NO_APP], 2);
	lgr_bindings_unref(b);
}

Test(bindings, aggregate_drains_get_every_source_and_bad_ones_are_refused)
{
	const char *agg[] = {"syslog://agg:514?drain-data=all", "gopher://x", NULL};
	struct lgr_bindings *b = NULL;
	struct seen s = {0};
	const struct lgr_binding *a;
	size_t n;

	cr_assert_eq(lgr_bindings_parse("[]", 2, agg, 3, NULL, NULL, on_reject, &s, &b), LGR_OK);
	a = lgr_bindings_aggregate(b, &n);
	cr_assert_eq(n, 1);
	cr_expect_str_eq(a[0].drain->anon, "syslog://agg:514");
	cr_expect_str_eq(a[0].hostname, "");
	cr_expect_eq(s.n, 2);
	cr_expect_eq(s.why[0], LGR_DRAIN_BAD_SCHEME);
	cr_expect_str_eq(s.app[0], "(none)");
	cr_expect_eq(s.why[1], LGR_DRAIN_BAD_URL);
	lgr_bindings_apps(b, &n);
	cr_expect_eq(n, 0);
	lgr_bindings_unref(b);

	cr_assert_eq(lgr_bindings_parse(NULL, 0, agg, 1, NULL, NULL, NULL, NULL, &b), LGR_OK);
	lgr_bindings_unref(b);
}

Test(bindings, untrusted_input_is_bounded_before_it_is_read)
{
	struct lgr_bindings_conf small = {.max_bytes = 10}, few = {.max_entries = 1}, apps = {.max_apps = 1},
				 pem = {.max_pem = 2};
	struct seen s = {0};
	struct lgr_bindings *b;

	cr_expect_eq(parse_rc("[                 ]", &small), LGR_ETOOBIG);
	cr_expect_eq(parse_rc("[1, 2]", &few), LGR_ELIMIT);
	cr_expect_eq(parse_rc("[{\"url\": \"syslog://h\", \"credentials\": [{\"apps\": [{\"app_id\": \"a\"}, "
			      "{\"app_id\": \"b\"}]}]}]",
			     &apps),
		LGR_ELIMIT);
	cr_expect_eq(parse_rc("[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]", NULL), LGR_ELIMIT);
	cr_expect_eq(parse_rc("{}", NULL), LGR_EDECODE);
	cr_expect_eq(parse_rc("[", NULL), LGR_EDECODE);
	cr_expect_eq(parse_rc("[] x", NULL), LGR_EDECODE);
	cr_expect_eq(parse_rc("[\"\xff\"]", NULL), LGR_EDECODE);
	cr_expect_eq(parse_rc(" [ ] \n", NULL), LGR_OK);
	b = parse("[{\"url\": \"syslog://h\", \"credentials\": [{\"ca\": \"long\", \"apps\": [{\"app_id\": \"a\"}]}]}]",
		&pem, &s);
	cr_expect_eq(s.n, 1);
	cr_expect_eq(s.why[0], LGR_DRAIN_BAD_CA);
	lgr_bindings_unref(b);
}

Test(bindings, many_apps_are_all_found)
{
	size_t cap = 3000 * 100, o = 0, n;
	char *json = malloc(cap), id[32];
	struct lgr_bindings *b;
	int i;

	o += (size_t)snprintf(json + o, cap - o, "[{\"url\": \"syslog://h:1\", \"credentials\": [{\"apps\": [");
	for (i = 0; i < 3000; i++)
		o += (size_t)snprintf(json + o, cap - o, "%s{\"app_id\": \"app-%d\"}", i ? "," : "", i);
	snprintf(json + o, cap - o, "]}]}]");
	b = parse(json, NULL, NULL);
	for (i = 0; i < 3000; i++) {
		snprintf(id, sizeof(id), "app-%d", i);
		cr_expect_not_null(lgr_bindings_lookup(b, id), "%s", id);
	}
	lgr_bindings_apps(b, &n);
	cr_expect_eq(n, 3000);
	lgr_bindings_unref(b);
	free(json);
}

/* --- static bindings (drains.static) --------------------------------------------------------------------------- */

static struct lgr_bindings_static *static_ok(const char *const *entries, size_t n)
{
	struct lgr_bindings_static *st = NULL;
	char err[256] = "";
	int rc = lgr_bindings_static_parse(entries, n, 0, &st, NULL, err, sizeof(err));

	cr_assert_eq(rc, LGR_OK, "rc %d: %s", rc, err);
	cr_assert_not_null(st);
	return st;
}

Test(bindings, static_entries_with_and_without_hostname_bind_their_apps)
{
	const char *entries[] = {"app-1 syslog://h1.example.com:514", "app-2  org.space.two\thttps://user:pw@h2/x?y=1",
		" \tapp-3 syslog-tls://h3:6514?drain-data=all\n"};
	struct lgr_bindings_static *st = static_ok(entries, 3);
	struct seen s = {0};
	struct lgr_bindings *b = NULL;
	const struct lgr_bindings_app *a;
	const struct lgr_bindings_stats *stats;

	cr_assert_eq(lgr_bindings_parse(NULL, 0, NULL, 0, st, NULL, on_reject, &s, &b), LGR_OK);
	cr_expect_eq(s.n, 0);
	a = lgr_bindings_lookup(b, "app-1");
	cr_assert_not_null(a);
	cr_assert_eq(a->n, 1);
	cr_expect_str_eq(a->drains[0].drain->url, "syslog://h1.example.com:514");
	cr_expect_str_eq(a->drains[0].hostname, ""); /* as a JSON binding without one: the lines say "-" */
	cr_expect_null(a->drains[0].cert);
	cr_expect_null(a->drains[0].key);
	cr_expect_null(a->drains[0].ca);
	a = lgr_bindings_lookup(b, "app-2");
	cr_assert_not_null(a);
	cr_assert_eq(a->n, 1);
	cr_expect_str_eq(a->drains[0].drain->url, "https://user:pw@h2/x?y=1");
	cr_expect_str_eq(a->drains[0].drain->password, "pw");
	cr_expect_str_eq(a->drains[0].hostname, "org.space.two");
	a = lgr_bindings_lookup(b, "app-3");
	cr_assert_not_null(a);
	cr_expect_str_eq(a->drains[0].drain->anon, "syslog-tls://h3:6514");
	cr_expect(a->drains[0].drain->filter.types & LGR_DRAIN_TYPE_TIMER);
	stats = lgr_bindings_stats(b);
	cr_expect_eq(stats->statics, 3);
	cr_expect_eq(stats->entries, 0);
	cr_expect_eq(stats->apps, 3);
	cr_expect_eq(stats->bindings, 3);
	lgr_bindings_unref(b);
	lgr_bindings_static_free(st);

	/* none at all is fine too */
	st = static_ok(NULL, 0);
	cr_assert_eq(lgr_bindings_parse("[]", 2, NULL, 0, st, NULL, NULL, NULL, &b), LGR_OK);
	cr_expect_eq(lgr_bindings_stats(b)->apps, 0);
	lgr_bindings_unref(b);
	lgr_bindings_static_free(st);
}

/* The entry at index bad of entries is refused, err holding want, and never the password "s3cret". */
static void static_bad(const char *const *entries, size_t n, size_t want_bad, const char *want)
{
	struct lgr_bindings_static *st = (struct lgr_bindings_static *)1;
	size_t bad = 99;
	char err[512] = "";
	int rc = lgr_bindings_static_parse(entries, n, 0, &st, &bad, err, sizeof(err));
	cr_expect_eq(rc, LGR_EDECODE, "rc %d for %s", rc, entries[want_bad]);
	cr_expect_null(st);
	cr_expect_eq(bad, want_bad, "bad %zu for %s", bad, entries[want_bad]);
	cr_expect(strstr(err, want) != NULL, "err \"%s\" lacks \"%s\"", err, want);
	cr_expect(strstr(err, "s3cret") == NULL, "err shows the password: %s", err);
}

Test(bindings, static_entries_that_do_not_parse_are_refused_naming_the_entry)
{
	char long_id[300], entry[400];
	const char *ok = "app-0 syslog://ok:514";

	{
		const char *e[] = {ok, "lonely"};
		static_bad(
			e, 2, 1, "entry 2 \"lonely\": expected \"APP_ID URL\" or \"APP_ID HOSTNAME URL\", got 1 field");
	}
	{
		const char *e[] = {ok, ok, "a b c syslog://u:s3cret@h:514"};
		static_bad(e, 3, 2, "entry 3 \"a b c syslog://h:514\": expected \"APP_ID URL\"");
	}
	{
		/* an empty app id: the URL alone is one field */
		const char *e[] = {"  syslog://u:s3cret@h:514?token=s3cret"};
		static_bad(e, 1, 0, "entry 1 \"syslog://h:514\": expected");
	}
	{
		const char *e[] = {"", ok};
		static_bad(e, 2, 0, "entry 1 \"\": expected \"APP_ID URL\" or \"APP_ID HOSTNAME URL\", got 0 fields");
	}
	{
		const char *e[] = {"app-1 ftp://user:s3cret@h/x?token=s3cret"};
		static_bad(e, 1, 0,
			"entry 1 \"app-1 ftp://h/x\": the drain URL is refused: Invalid Scheme ftp for syslog drain "
			"url "
			"ftp://h/x");
	}
	{
		const char *e[] = {"app-1 host-1 syslog://user:s3cret@:514"};
		static_bad(e, 1, 0, "the drain URL is refused: No hostname found in syslog drain url syslog://:514");
	}
	{
		const char *e[] = {"app-1 syslog://h:99999"};
		static_bad(e, 1, 0, "entry 1 \"app-1 syslog://h:99999\": the drain URL is refused: Cannot parse");
	}
	{
		const char *e[] = {"app-1 syslog://h:514?format=json"};
		static_bad(e, 1, 0, "Invalid parameters for syslog drain url syslog://h:514");
	}
	{
		const char *e[] = {"app\x01x syslog://h:514"};
		static_bad(e, 1, 0, "entry 1 \"app?x syslog://h:514\": the app id is not");
	}
	{
		const char *e[] = {"app-1 host\x7f syslog://h:514"};
		static_bad(e, 1, 0, "the hostname is not");
	}
	{
		const char *e[] = {"app-1 syslog://u:s3cret@h:1 syslog://h:2"};
		static_bad(e, 1, 0, "entry 1 \"app-1 syslog://h:1 syslog://h:2\": the hostname is a URL");
	}
	memset(long_id, 'x', 257);
	long_id[257] = '\0';
	snprintf(entry, sizeof(entry), "%s syslog://h:514", long_id);
	{
		const char *e[] = {entry};
		static_bad(e, 1, 0, "...\": the app id is not up to 256 printable ASCII characters");
	}
	memset(long_id, 'x', 256); /* 256 is the most an app id may have */
	long_id[256] = '\0';
	snprintf(entry, sizeof(entry), "%s syslog://h:514", long_id);
	{
		const char *e[] = {entry};
		lgr_bindings_static_free(static_ok(e, 1));
	}
}

Test(bindings, static_bindings_merge_with_the_files_one_drain_per_url_and_the_limit_over_both)
{
	const char *json =
		"[{\"url\": \"syslog://h4:514\", \"credentials\": [{\"apps\": [{\"app_id\": \"a\", \"hostname\": "
		"\"file-host\"}]}]},"
		" {\"url\": \"syslog-tls://h2:6514\", \"credentials\": [{\"cert\": \"C\", \"key\": \"K\", \"ca\": "
		"\"CA\", \"apps\": [{\"app_id\": \"a\", \"hostname\": \"file-host\"}]}]}]";
	const char *entries[] = {"a static-host syslog://h6:514", "a static-host syslog-tls://h2:6514",
		"a syslog://h1:514", "a syslog://h5:514", "a static-host syslog://h3:514", "a syslog://h1:514",
		"b syslog://h4:514"};
	const char *want[] = {"syslog-tls://h2:6514", "syslog://h1:514", "syslog://h3:514", "syslog://h4:514"};
	struct lgr_bindings_conf conf = {.per_app = 4};
	struct lgr_bindings_static *st = static_ok(entries, 7);
	struct lgr_bindings *b = NULL;
	const struct lgr_bindings_app *a;
	const struct lgr_bindings_stats *stats;
	int round;

	/* a reload (the second round: another file) keeps the static bindings */
	for (round = 0; round < 2; round++) {
		cr_assert_eq(
			lgr_bindings_parse(json, round == 0 ? strlen(json) : 0, NULL, 0, st, &conf, NULL, NULL, &b),
			LGR_OK);
		a = lgr_bindings_lookup(b, "a");
		cr_assert_not_null(a);
		stats = lgr_bindings_stats(b);
		if (round == 0) {
			/* h1 (twice static), h2 (file and static: once, the file's), h3, h4 (file); h5, h6 over 4 */
			cr_assert_eq(a->n, 4);
			for (size_t i = 0; i < 4; i++)
				cr_expect_str_eq(a->drains[i].drain->url, want[i]);
			cr_expect_str_eq(a->drains[0].hostname, "file-host");
			cr_expect_str_eq(a->drains[0].cert, "C");
			cr_expect_str_eq(a->drains[0].ca, "CA");
			cr_expect_str_eq(a->drains[1].hostname, "");
			cr_expect_null(a->drains[1].cert);
			cr_expect_str_eq(a->drains[2].hostname, "static-host");
			cr_expect_str_eq(a->drains[3].hostname, "file-host");
			cr_expect_eq(stats->over_limit, 2);
			cr_expect_eq(stats->bindings, 5);
		} else {
			/* without the file: h1, h2 (now the static one), h3, h5; h6 over */
			cr_assert_eq(a->n, 4);
			cr_expect_str_eq(a->drains[0].drain->url, "syslog-tls://h2:6514");
			cr_expect_str_eq(a->drains[0].hostname, "static-host");
			cr_expect_null(a->drains[0].cert);
			cr_expect_str_eq(a->drains[3].drain->url, "syslog://h5:514");
			cr_expect_eq(stats->over_limit, 1);
		}
		a = lgr_bindings_lookup(b, "b");
		cr_assert_not_null(a);
		cr_expect_eq(a->n, 1);
		cr_expect_str_eq(a->drains[0].drain->url, "syslog://h4:514");
		cr_expect_eq(stats->statics, 7);
		cr_expect_eq(stats->apps, 2);
		lgr_bindings_unref(b);
		b = NULL;
	}
	lgr_bindings_static_free(st);
}

Test(bindings, static_bindings_count_against_the_apps_limit)
{
	const char *json = "[{\"url\": \"syslog://h:1\", \"credentials\": [{\"apps\": [{\"app_id\": \"a\"}]}]}]";
	const char *entries[] = {"b syslog://h:2"};
	struct lgr_bindings_conf one = {.max_apps = 1};
	struct lgr_bindings_static *st = static_ok(entries, 1);
	struct lgr_bindings *b = (struct lgr_bindings *)1;

	cr_expect_eq(lgr_bindings_parse(json, strlen(json), NULL, 0, st, &one, NULL, NULL, &b), LGR_ELIMIT);
	cr_expect_null(b);
	cr_expect_eq(lgr_bindings_parse("[]", 2, NULL, 0, st, &one, NULL, NULL, &b), LGR_OK);
	lgr_bindings_unref(b);
	lgr_bindings_static_free(st);
}

/* --- certificates --------------------------------------------------------------------------------------------- */

/* A fresh self-signed P-256 certificate and its key, as PEM. */
static void make_pair(char **cert, char **key)
{
	EVP_PKEY *k = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	BIO *cb = BIO_new(BIO_s_mem()), *kb = BIO_new(BIO_s_mem());
	char *p;
	long n;

	cr_assert(k != NULL && x != NULL && cb != NULL && kb != NULL);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	X509_set_pubkey(x, k);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC, (const unsigned char *)"t", -1, -1, 0);
	X509_set_issuer_name(x, X509_get_subject_name(x));
	cr_assert(X509_sign(x, k, EVP_sha256()) > 0);
	PEM_write_bio_X509(cb, x);
	PEM_write_bio_PrivateKey(kb, k, NULL, NULL, 0, NULL, NULL);
	n = BIO_get_mem_data(cb, &p);
	*cert = strndup(p, (size_t)n);
	n = BIO_get_mem_data(kb, &p);
	*key = strndup(p, (size_t)n);
	BIO_free(cb);
	BIO_free(kb);
	X509_free(x);
	EVP_PKEY_free(k);
}

/* JSON string escaping for PEM: newlines only. */
static char *jstr(const char *s)
{
	char *o = malloc(strlen(s) * 2 + 1), *p = o;

	for (; *s != '\0'; s++) {
		if (*s == '\n') {
			*p++ = '\\';
			*p++ = 'n';
		} else {
			*p++ = *s;
		}
	}
	*p = '\0';
	return o;
}

Test(bindings, certificates_that_do_not_load_are_refused_when_checking_pem)
{
	char *c1, *k1, *c2, *k2, *jc1, *jk1, *jk2, *json;
	struct lgr_bindings_conf conf = {.check_pem = true};
	struct seen s = {0};
	struct lgr_bindings *b;
	size_t cap;

	make_pair(&c1, &k1);
	make_pair(&c2, &k2);
	jc1 = jstr(c1);
	jk1 = jstr(k1);
	jk2 = jstr(k2);
	cap = strlen(jc1) * 4 + strlen(jk1) * 4 + 1024;
	json = malloc(cap);
	snprintf(json, cap,
		"[{\"url\": \"syslog-tls://h:1\", \"credentials\": ["
		"{\"cert\": \"%s\", \"key\": \"%s\", \"ca\": \"%s\", \"apps\": [{\"app_id\": \"good\"}]},"
		"{\"cert\": \"%s\", \"key\": \"%s\", \"apps\": [{\"app_id\": \"mismatch\"}]},"
		"{\"ca\": \"not a pem\", \"apps\": [{\"app_id\": \"badca\"}]}]}]",
		jc1, jk1, jc1, jc1, jk2);
	b = parse(json, &conf, &s);
	cr_expect_not_null(lgr_bindings_lookup(b, "good"));
	cr_expect_str_eq(lgr_bindings_lookup(b, "good")->drains[0].cert, c1);
	cr_expect_null(lgr_bindings_lookup(b, "mismatch"));
	cr_expect_null(lgr_bindings_lookup(b, "badca"));
	cr_assert_eq(s.n, 2);
	cr_expect_str_eq(s.app[0], "mismatch");
	cr_expect_eq(s.why[0], LGR_DRAIN_BAD_CERT);
	cr_expect_str_eq(s.anon[0], "syslog-tls://h:1");
	cr_expect_str_eq(s.app[1], "badca");
	cr_expect_eq(s.why[1], LGR_DRAIN_BAD_CA);
	lgr_bindings_unref(b);
	free(json);
	free(jc1);
	free(jk1);
	free(jk2);
	free(c1);
	free(k1);
	free(c2);
	free(k2);
}

/* --- publishing ----------------------------------------------------------------------------------------------- */

struct reader {
	struct lgr_bindings_slot *slot;
	size_t found;
};

static void *read_loop(void *arg)
{
	struct reader *r = arg;
	int i;

	for (i = 0; i < 20000; i++) {
		struct lgr_bindings *b = lgr_bindings_slot_get(r->slot);
		const struct lgr_bindings_app *a = lgr_bindings_lookup(b, "a");

		if (a != NULL && a->n == 1 && strncmp(a->drains[0].drain->url, "syslog://h", 10) == 0)
			r->found++;
		lgr_bindings_unref(b);
	}
	return NULL;
}

Test(bindings, readers_keep_their_snapshot_while_reloads_replace_it)
{
	struct lgr_bindings_slot slot;
	struct reader r[2] = {{&slot, 0}, {&slot, 0}};
	pthread_t t[2];
	char json[160];
	int i;

	cr_assert_eq(lgr_bindings_slot_init(&slot), LGR_OK);
	cr_expect_null(lgr_bindings_slot_get(&slot));
	{
		/* readers find a snapshot from their first iteration on */
		const char *first =
			"[{\"url\": \"syslog://h:514\", \"credentials\": [{\"apps\": [{\"app_id\": \"a\"}]}]}]";
		struct lgr_bindings *b = NULL;

		cr_assert_eq(lgr_bindings_parse(first, strlen(first), NULL, 0, NULL, NULL, NULL, NULL, &b), LGR_OK);
		lgr_bindings_slot_set(&slot, b);
	}
	for (i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, read_loop, &r[i]);
	for (i = 0; i < 300; i++) {
		struct lgr_bindings *b = NULL;

		snprintf(json, sizeof(json),
			"[{\"url\": \"syslog://h%d:514\", \"credentials\": [{\"apps\": [{\"app_id\": \"a\"}]}]}]", i);
		cr_assert_eq(lgr_bindings_parse(json, strlen(json), NULL, 0, NULL, NULL, NULL, NULL, &b), LGR_OK);
		lgr_bindings_slot_set(&slot, b);
	}
	for (i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	cr_expect_gt(r[0].found + r[1].found, 0);
	lgr_bindings_slot_cleanup(&slot);
}
