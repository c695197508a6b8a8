/*
 * test_drain.c: drain URLs and policy (lgr_drain): schemes, hosts, ports and credentials, the anonymised form,
 * the query parameters as the reference reads them, the per-envelope filter, the refusal notices in the
 * reference's words, and deny ranges.
 */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lgr_drain.h"

static struct lgr_drain *parse_ok(const char *url, unsigned flags)
{
	struct lgr_drain *d = NULL;
	enum lgr_drain_reason why;
	int rc = lgr_drain_parse(url, strlen(url), flags, &d, &why);

	cr_assert_eq(rc, LGR_OK, "%s: rc %d why %s", url, rc, lgr_drain_reason_name(why));
	cr_assert_eq(why, LGR_DRAIN_OK);
	return d;
}

static enum lgr_drain_reason parse_bad(const char *url)
{
	struct lgr_drain *d = (struct lgr_drain *)1;
	enum lgr_drain_reason why = LGR_DRAIN_OK;
	int rc = lgr_drain_parse(url, strlen(url), 0, &d, &why);

	cr_expect_neq(rc, LGR_OK, "%s parsed", url);
	cr_expect_null(d);
	return why;
}

static struct lgr_env *env_of(enum lgr_env_type t, const char *source_type)
{
	struct lgr_env *env = lgr_env_new();

	cr_assert_not_null(env);
	switch (t) {
	case LGR_ENV_LOG: lgr_env_set_log(env, "x", 1, LOGGREGATOR__V2__LOG__TYPE__OUT); break;
	case LGR_ENV_COUNTER: lgr_env_set_counter(env, "c", 1, 1); break;
	case LGR_ENV_GAUGE:
		lgr_env_set_gauge(env);
		lgr_env_add_metric(env, "g", "u", 1);
		break;
	case LGR_ENV_TIMER: lgr_env_set_timer(env, "t", 1, 2); break;
	case LGR_ENV_EVENT: lgr_env_set_event(env, "t", "b"); break;
	default: break;
	}
	if (source_type != NULL)
		lgr_env_set_tag(env, "source_type", source_type);
	return env;
}

/* The types a drain URL lets through, as a string "LCGTE" with '-' for the ones it stops. */
static void expect_types(const char *url, const char *want)
{
	static const enum lgr_env_type order[5] = {
		LGR_ENV_LOG, LGR_ENV_COUNTER, LGR_ENV_GAUGE, LGR_ENV_TIMER, LGR_ENV_EVENT};
	static const char letters[] = "LCGTE";
	struct lgr_drain *d = parse_ok(url, 0);
	char got[6];
	int i;

	for (i = 0; i < 5; i++) {
		struct lgr_env *env = env_of(order[i], NULL);

		got[i] = lgr_drain_accepts(d, env) ? letters[i] : '-';
		lgr_env_unref(env);
	}
	got[5] = '\0';
	cr_expect_str_eq(got, want, "%s", url);
	lgr_drain_free(d);
}

/* --- URL parts ------------------------------------------------------------------------------------------------ */

Test(drain_url, schemes_and_their_default_ports)
{
	static const struct {
		const char *url;
		enum lgr_drain_scheme scheme;
		uint16_t port;
		enum lgr_drain_format format;
	} cases[] = {
		{"syslog://logs.example.com", LGR_DRAIN_SYSLOG, 514, LGR_DRAIN_CF},
		{"syslog-tls://logs.example.com", LGR_DRAIN_SYSLOG_TLS, 6514, LGR_DRAIN_CF},
		{"https://logs.example.com/x", LGR_DRAIN_HTTPS, 443, LGR_DRAIN_CF},
		{"https-batch://logs.example.com:8443/x", LGR_DRAIN_HTTPS_BATCH, 8443, LGR_DRAIN_CF},
		{"syslog+tls://logs.example.com:6514", LGR_DRAIN_SYSLOG_TLS, 6514, LGR_DRAIN_LOGPLEX},
		{"SYSLOG://h:1", LGR_DRAIN_SYSLOG, 1, LGR_DRAIN_CF},
		{"https://h/?format=logplex", LGR_DRAIN_HTTPS, 443, LGR_DRAIN_LOGPLEX},
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct lgr_drain *d = parse_ok(cases[i].url, 0);

		cr_expect_eq(d->scheme, cases[i].scheme, "%s", cases[i].url);
		cr_expect_eq(d->port, cases[i].port, "%s", cases[i].url);
		cr_expect_eq(d->format, cases[i].format, "%s", cases[i].url);
		lgr_drain_free(d);
	}
}

Test(drain_url, credentials_are_kept_decoded_and_the_anonymised_form_drops_them_and_the_query)
{
	struct lgr_drain *d =
		parse_ok("https://us%40er:p%3Ass@Logs.example.com:8080/a/b?drain-type=all&token=s#frag", 0);

	cr_expect_str_eq(d->user, "us@er");
	cr_expect_str_eq(d->password, "p:ss");
	cr_expect_str_eq(d->host, "Logs.example.com");
	cr_expect_eq(d->port, 8080);
	cr_expect_str_eq(d->anon, "https://Logs.example.com:8080/a/b");
	cr_expect_str_eq(d->target, "/a/b?drain-type=all&token=s");
	cr_expect_str_eq(d->url, "https://us%40er:p%3Ass@Logs.example.com:8080/a/b?drain-type=all&token=s#frag");
	lgr_drain_free(d);

	d = parse_ok("syslog://user@h:514", 0);
	cr_expect_str_eq(d->user, "user");
	cr_expect_null(d->password);
	cr_expect_str_eq(d->target, "/");
	cr_expect_str_eq(d->anon, "syslog://h:514");
	lgr_drain_free(d);
}

Test(drain_url, ipv6_literals_lose_their_brackets)
{
	struct lgr_drain *d = parse_ok("syslog-tls://[2001:db8::1]:6000", 0);

	cr_expect_str_eq(d->host, "2001:db8::1");
	cr_expect_eq(d->port, 6000);
	cr_expect_str_eq(d->anon, "syslog-tls://[2001:db8::1]:6000");
	lgr_drain_free(d);
}

Test(drain_url, refusals_give_the_reference_s_reasons)
{
	char big[LGR_DRAIN_URL_MAX + 20];

	cr_expect_eq(parse_bad("ftp://h:21"), LGR_DRAIN_BAD_SCHEME);
	cr_expect_eq(parse_bad("http://h"), LGR_DRAIN_BAD_SCHEME);
	cr_expect_eq(parse_bad("syslog://"), LGR_DRAIN_NO_HOST);
	cr_expect_eq(parse_bad("syslog://:514"), LGR_DRAIN_NO_HOST);
	cr_expect_eq(parse_bad("syslog:host"), LGR_DRAIN_NO_HOST);
	cr_expect_eq(parse_bad("syslog://h:0"), LGR_DRAIN_BAD_URL);
	cr_expect_eq(parse_bad("syslog://h:65536"), LGR_DRAIN_BAD_URL);
	cr_expect_eq(parse_bad("syslog://h:12a"), LGR_DRAIN_BAD_URL);
	cr_expect_eq(parse_bad("syslog://h o"), LGR_DRAIN_BAD_URL);
	cr_expect_eq(parse_bad("syslog://[::1"), LGR_DRAIN_BAD_URL);
	cr_expect_eq(parse_bad("syslog://[zz]:1"), LGR_DRAIN_BAD_URL);
	cr_expect_eq(parse_bad("https://u%zz@h"), LGR_DRAIN_BAD_URL);
	cr_expect_eq(parse_bad("://h"), LGR_DRAIN_BAD_URL);
	cr_expect_eq(parse_bad(""), LGR_DRAIN_BAD_URL);
	memset(big, 'a', sizeof(big) - 1);
	memcpy(big, "syslog://", 9);
	big[sizeof(big) - 1] = '\0';
	cr_expect_eq(parse_bad(big), LGR_DRAIN_BAD_URL);
}

/* --- query parameters ----------------------------------------------------------------------------------------- */

Test(drain_query, drain_type_and_drain_data_select_types_as_the_reference)
{
	expect_types("syslog://h", "L---E");
	expect_types("syslog://h?drain-type=logs", "L----");
	expect_types("syslog://h?drain-type=metrics", "-CG--");
	expect_types("syslog://h?drain-type=all", "LCG--");
	expect_types("syslog://h?drain-type=bogus", "L---E");
	expect_types("syslog://h?drain-data=logs&drain-type=metrics", "L---E");
	expect_types("syslog://h?drain-data=metrics", "-CG--");
	expect_types("syslog://h?drain-data=traces", "---T-");
	expect_types("syslog://h?drain-data=all", "LCGTE");
	expect_types("syslog://h?drain-type=logs&include-metrics-deprecated=1", "LCGTE");
	expect_types("syslog://h?include-metrics-deprecated=", "L---E");
	expect_types("syslog://h?drain-type=metrics&drain-type=logs", "-CG--"); /* the first value wins */
	expect_types("syslog://h?drain%2Dtype=metrics", "-CG--");
	expect_types("syslog+tls://h?drain-data=all", "L----"); /* Logplex carries logs */
}

Test(drain_query, metadata_is_dropped_on_request_and_the_default_can_be_flipped)
{
	static const struct {
		const char *url;
		unsigned flags;
		bool omit;
	} cases[] = {
		{"syslog://h", 0, false},
		{"syslog://h?disable-metadata=true", 0, true},
		{"syslog://h?omit-metadata=true", 0, true},
		{"syslog://h?disable-metadata=&omit-metadata=true", 0, true},
		{"syslog://h?disable-metadata=yes", 0, false},
		{"syslog://h", LGR_DRAIN_DEFAULT_OMIT_METADATA, true},
		{"syslog://h?disable-metadata=false", LGR_DRAIN_DEFAULT_OMIT_METADATA, false},
		{"syslog://h?omit-metadata=false", LGR_DRAIN_DEFAULT_OMIT_METADATA, false},
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct lgr_drain *d = parse_ok(cases[i].url, cases[i].flags);

		cr_expect_eq(d->omit_metadata, cases[i].omit, "%s flags %u", cases[i].url, cases[i].flags);
		lgr_drain_free(d);
	}
}

Test(drain_query, log_types_filter_logs_by_the_source_types_first_segment)
{
	struct lgr_drain *inc = parse_ok("syslog://h?include-log-types=app,RTR", 0);
	struct lgr_drain *exc = parse_ok("syslog://h?exclude-log-types=stg", 0);
	struct lgr_env *app = env_of(LGR_ENV_LOG, "APP/PROC/WEB"), *stg = env_of(LGR_ENV_LOG, "STG"),
		       *rtr = env_of(LGR_ENV_LOG, "rtr"), *none = env_of(LGR_ENV_LOG, NULL),
		       *appx = env_of(LGR_ENV_LOG, "APPX"), *ev = env_of(LGR_ENV_EVENT, "STG");

	cr_expect(lgr_drain_accepts(inc, app));
	cr_expect(lgr_drain_accepts(inc, rtr));
	cr_expect_not(lgr_drain_accepts(inc, stg));
	cr_expect_not(lgr_drain_accepts(inc, none));
	cr_expect_not(lgr_drain_accepts(inc, appx));
	cr_expect(lgr_drain_accepts(exc, app));
	cr_expect_not(lgr_drain_accepts(exc, stg));
	cr_expect(lgr_drain_accepts(exc, none));
	cr_expect(lgr_drain_accepts(exc, ev)); /* events are not logs */
	lgr_env_unref(app);
	lgr_env_unref(stg);
	lgr_env_unref(rtr);
	lgr_env_unref(none);
	lgr_env_unref(appx);
	lgr_env_unref(ev);
	lgr_drain_free(inc);
	lgr_drain_free(exc);
	cr_expect_eq(parse_bad("syslog://h?include-log-types=a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q"), LGR_DRAIN_BAD_PARAM);
	cr_expect_eq(
		parse_bad("syslog://h?exclude-log-types=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"), LGR_DRAIN_BAD_PARAM);
	cr_expect_eq(parse_bad("syslog://h?format=json"), LGR_DRAIN_BAD_PARAM);
}

Test(drain_query, logplex_tokens_come_from_the_url_or_are_derived_stably)
{
	struct lgr_drain *a = parse_ok("syslog+tls://h:1?drain-token=d.abc", 0);
	struct lgr_drain *b = parse_ok("syslog+tls://h:1", 0), *c = parse_ok("syslog+tls://h:1", 0);
	struct lgr_drain *d = parse_ok("syslog+tls://h:2", 0);

	cr_expect_str_eq(a->token, "d.abc");
	cr_expect_eq(strncmp(b->token, "d.", 2), 0);
	cr_expect_eq(strlen(b->token), 38);
	cr_expect_str_eq(b->token, c->token);
	cr_expect_str_neq(b->token, d->token);
	cr_expect_eq(parse_bad("syslog+tls://h:1?drain-token=a%20b"), LGR_DRAIN_BAD_PARAM);
	lgr_drain_free(a);
	lgr_drain_free(b);
	lgr_drain_free(c);
	lgr_drain_free(d);
}

/* --- notices -------------------------------------------------------------------------------------------------- */

Test(drain_notice, refusals_are_worded_as_the_reference_words_them)
{
	char out[256];

	lgr_drain_notice(LGR_DRAIN_BAD_SCHEME, "ftp", "ftp://h", out, sizeof(out));
	cr_expect_str_eq(out, "Invalid Scheme ftp for syslog drain url ftp://h");
	lgr_drain_notice(LGR_DRAIN_NO_HOST, NULL, "syslog://", out, sizeof(out));
	cr_expect_str_eq(out, "No hostname found in syslog drain url syslog://");
	lgr_drain_notice(LGR_DRAIN_BAD_URL, NULL, NULL, out, sizeof(out));
	cr_expect_str_eq(out, "Cannot parse syslog drain URL.");
	lgr_drain_notice(LGR_DRAIN_DENIED, NULL, "syslog://10.0.0.1:514", out, sizeof(out));
	cr_expect_str_eq(out, "Resolved ip address for syslog drain with url syslog://10.0.0.1:514 is blacklisted");
	lgr_drain_notice(LGR_DRAIN_RESOLVE_FAILED, NULL, "syslog://x:1", out, sizeof(out));
	cr_expect_str_eq(out, "Cannot resolve ip address for syslog drain with url syslog://x:1");
	lgr_drain_notice(LGR_DRAIN_BAD_CERT, NULL, "syslog-tls://x:1", out, sizeof(out));
	cr_expect_str_eq(out, "failed to load certificate for syslog-tls://x:1");
	lgr_drain_notice(LGR_DRAIN_BAD_CA, NULL, "syslog-tls://x:1", out, sizeof(out));
	cr_expect_str_eq(out, "failed to load root CA for syslog-tls://x:1");
	cr_expect_eq(lgr_drain_notice(LGR_DRAIN_BAD_CA, NULL, "syslog-tls://x:1", out, 5), LGR_ETOOBIG);
	cr_expect_str_eq(lgr_drain_reason_name(LGR_DRAIN_DENIED), "denied");
	cr_expect_str_eq(lgr_drain_reason_name((enum lgr_drain_reason)99), "unknown");
}

Test(drain_notice, any_text_can_be_anonymised)
{
	char out[64], s[16];

	lgr_drain_anonymize("ftp://u:p@h:1/x?y#z", 19, out, sizeof(out));
	cr_expect_str_eq(out, "ftp://h:1/x");
	lgr_drain_anonymize("not a url?secret", 16, out, sizeof(out));
	cr_expect_str_eq(out, "not a url");
	lgr_drain_anonymize("syslog://a@b@c/d", 16, out, 8);
	cr_expect_str_eq(out, "syslog:");
	lgr_drain_scheme_text("FTP://x", 7, s, sizeof(s));
	cr_expect_str_eq(s, "FTP");
	lgr_drain_scheme_text("no scheme", 9, s, sizeof(s));
	cr_expect_str_eq(s, "");
}

/* --- deny ranges ---------------------------------------------------------------------------------------------- */

static bool denied(const struct lgr_drain_deny *d, const char *addr)
{
	uint8_t a[16];

	cr_assert_eq(lgr_drain_addr_parse(addr, strlen(addr), a), LGR_OK, "%s", addr);
	return lgr_drain_deny_match(d, a);
}

Test(drain_deny, cidr_single_and_start_end_ranges_of_both_families)
{
	const char *ranges[] = {
		"10.0.0.0/8", "192.168.1.77", "172.16.0.5-172.16.0.9", "fd00::/8", "2001:db8::1/128", "100.64.1.2/0"};
	struct lgr_drain_deny d;

	cr_assert_eq(lgr_drain_deny_init(&d, ranges, 5, NULL), LGR_OK);
	cr_expect(denied(&d, "10.255.255.255"));
	cr_expect_not(denied(&d, "11.0.0.0"));
	cr_expect(denied(&d, "192.168.1.77"));
	cr_expect_not(denied(&d, "192.168.1.78"));
	cr_expect(denied(&d, "172.16.0.9"));
	cr_expect_not(denied(&d, "172.16.0.10"));
	cr_expect(denied(&d, "fdff::1"));
	cr_expect_not(denied(&d, "fe00::1"));
	cr_expect(denied(&d, "2001:db8::1"));
	cr_expect_not(denied(&d, "2001:db8::2"));
	cr_expect(denied(&d, "::ffff:10.1.2.3")); /* a mapped peer is its IPv4 address */
	lgr_drain_deny_cleanup(&d);

	/* an IPv4 /0 covers IPv4 only */
	cr_assert_eq(lgr_drain_deny_init(&d, ranges + 5, 1, NULL), LGR_OK);
	cr_expect(denied(&d, "1.2.3.4"));
	cr_expect_not(denied(&d, "2001:db8::2"));
	lgr_drain_deny_cleanup(&d);
}

Test(drain_deny, a_bad_range_names_its_index)
{
	const char *ranges[] = {"10.0.0.0/8", "10.0.0.0/33", "x"};
	const char *bad[] = {"10.0.0.0/", "10.0.0.9-10.0.0.1", "10.0.0.1-::1", "::/129", "1.2.3.4/8/8", "",
		"1.2.3.4/-1", "1.2.3.4-"};
	struct lgr_drain_range r;
	struct lgr_drain_deny d;
	size_t at = 9, i;

	cr_expect_eq(lgr_drain_deny_init(&d, ranges, 3, &at), LGR_EDECODE);
	cr_expect_eq(at, 1);
	cr_expect_eq(d.n, 0);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_expect_eq(lgr_drain_range_parse(bad[i], strlen(bad[i]), &r), LGR_EDECODE, "%s", bad[i]);
}

Test(drain_deny, socket_addresses_of_both_families_are_checked)
{
	const char *ranges[] = {"127.0.0.0/8", "::1"};
	struct lgr_drain_deny d;
	struct sockaddr_in sin = {.sin_family = AF_INET};
	struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6};
	struct sockaddr sa = {.sa_family = AF_UNIX};
	uint8_t a[16];

	cr_assert_eq(lgr_drain_deny_init(&d, ranges, 2, NULL), LGR_OK);
	inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
	inet_pton(AF_INET6, "::1", &sin6.sin6_addr);
	cr_assert_eq(lgr_drain_addr_from_sockaddr((struct sockaddr *)&sin, a), LGR_OK);
	cr_expect(lgr_drain_deny_match(&d, a));
	cr_assert_eq(lgr_drain_addr_from_sockaddr((struct sockaddr *)&sin6, a), LGR_OK);
	cr_expect(lgr_drain_deny_match(&d, a));
	cr_expect_eq(lgr_drain_addr_from_sockaddr(&sa, a), LGR_EUNSUPPORTED);
	lgr_drain_deny_cleanup(&d);
}
