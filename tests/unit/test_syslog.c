/*
 * test_syslog.c: drain lines (lgr_syslog): the drains.md vectors byte for byte, every rule of the CF RFC 5424 form
 * as the reference converter applies it (and where it refuses an envelope), octet framing, the Logplex forms, and
 * the in-stream notices.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lgr_syslog.h"

/* --- helpers -------------------------------------------------------------------------------------------------- */

static struct lgr_env *log_env(const char *payload, Loggregator__V2__Log__Type type)
{
	struct lgr_env *env = lgr_env_new();

	cr_assert_not_null(env);
	cr_assert_eq(lgr_env_set_log(env, payload, strlen(payload), type), LGR_OK);
	env->pb->timestamp = 12345000;
	cr_assert_eq(lgr_env_set_source_id(env, "test-app-id"), LGR_OK);
	return env;
}

static void tag(struct lgr_env *env, const char *k, const char *v)
{
	cr_assert_eq(lgr_env_set_tag(env, k, v), LGR_OK);
}

/* Formats env with opts and flags and returns a malloc'd copy of the output (NULL on error, rc in *rc). */
static char *fmt(const struct lgr_env *env, const char *hostname, bool omit, unsigned flags, int *rc, size_t *n)
{
	struct lgr_syslog_opts o = {hostname, omit};
	struct lgr_syslog_buf b;
	char *s = NULL;
	size_t lines;

	lgr_syslog_buf_init(&b, 0);
	*rc = lgr_syslog_format(env, &o, flags, &b, &lines);
	if (n != NULL)
		*n = lines;
	if (*rc == LGR_OK)
		s = strndup(b.p != NULL ? b.p : "", b.len);
	lgr_syslog_buf_cleanup(&b);
	return s;
}

static void expect_line(const struct lgr_env *env, const char *hostname, bool omit, unsigned flags, const char *want)
{
	int rc;
	char *got = fmt(env, hostname, omit, flags, &rc, NULL);

	cr_assert_eq(rc, LGR_OK, "rc %d", rc);
	cr_expect_str_eq(got, want);
	free(got);
}

static void expect_refused(const struct lgr_env *env, const char *hostname)
{
	int rc;
	size_t n = 9;
	char *got = fmt(env, hostname, false, 0, &rc, &n);

	cr_expect_eq(rc, LGR_EUNSUPPORTED);
	cr_expect_null(got);
	cr_expect_eq(n, 0);
}

#define TS "1970-01-01T00:00:00.012345+00:00"

/* --- the drains.md vectors ------------------------------------------------------------------------------------ */

Test(syslog_vectors, the_118_byte_vector_is_octet_counted_exactly)
{
	struct lgr_env *env = log_env("just a test", LOGGREGATOR__V2__LOG__TYPE__OUT);

	lgr_env_set_instance_id(env, "2");
	tag(env, "source_type", "APP");
	expect_line(env, "test-hostname", false, LGR_SYSLOG_OCTET,
		"118 <14>1 " TS " test-hostname test-app-id [APP/2] - [tags@47450 source_type=\"APP\"] just a test\n");
	lgr_env_unref(env);
}

Test(syslog_vectors, an_err_log_with_org_space_app_tags_uses_them_as_hostname)
{
	struct lgr_env *env = log_env("just a test", LOGGREGATOR__V2__LOG__TYPE__ERR);

	lgr_env_set_instance_id(env, "2");
	tag(env, "source_type", "MY TASK");
	tag(env, "organization_name", "some-org");
	tag(env, "space_name", "some-space");
	tag(env, "app_name", "some-app");
	expect_line(env, "test-hostname", false, 0,
		"<11>1 " TS " some-org.some-space.some-app test-app-id [MY-TASK/2] - [tags@47450 app_name=\"some-app\" "
		"organization_name=\"some-org\" source_type=\"MY TASK\" space_name=\"some-space\"] just a test\n");
	lgr_env_unref(env);
}

Test(syslog_vectors, a_counter_is_its_element_then_the_tags_and_an_empty_message)
{
	struct lgr_env *env = lgr_env_new();

	env->pb->timestamp = 12345000;
	lgr_env_set_source_id(env, "test-app-id");
	lgr_env_set_instance_id(env, "1");
	lgr_env_set_counter(env, "some-counter", 1, 99);
	tag(env, "metric-tag", "scallop");
	expect_line(env, "test-hostname", false, 0,
		"<14>1 " TS " test-hostname test-app-id [1] - [counter@47450 name=\"some-counter\" total=\"99\" "
		"delta=\"1\"][tags@47450 metric-tag=\"scallop\"] \n");
	lgr_env_unref(env);
}

/* --- timestamp ------------------------------------------------------------------------------------------------ */

Test(syslog_timestamp, microseconds_are_trimmed_of_trailing_zeros_and_truncated)
{
	char t[LGR_SYSLOG_TIMESTAMP_MAX];

	lgr_syslog_timestamp(0, t);
	cr_expect_str_eq(t, "1970-01-01T00:00:00+00:00");
	lgr_syslog_timestamp(999, t); /* below a microsecond: no fraction */
	cr_expect_str_eq(t, "1970-01-01T00:00:00+00:00");
	lgr_syslog_timestamp(1500000000, t);
	cr_expect_str_eq(t, "1970-01-01T00:00:01.5+00:00");
	lgr_syslog_timestamp(INT64_C(1700000000123456789), t);
	cr_expect_str_eq(t, "2023-11-14T22:13:20.123456+00:00");
	lgr_syslog_timestamp(INT64_C(951782400000010000), t); /* leap day 2000 */
	cr_expect_str_eq(t, "2000-02-29T00:00:00.00001+00:00");
}

Test(syslog_timestamp, times_before_1970_and_the_int64_extremes_are_calendar_dates)
{
	char t[LGR_SYSLOG_TIMESTAMP_MAX];

	lgr_syslog_timestamp(-1000, t);
	cr_expect_str_eq(t, "1969-12-31T23:59:59.999999+00:00");
	lgr_syslog_timestamp(INT64_MAX, t);
	cr_expect_str_eq(t, "2262-04-11T23:47:16.854775+00:00");
	lgr_syslog_timestamp(INT64_MIN, t);
	cr_expect_str_eq(t, "1677-09-21T00:12:43.145224+00:00");
}

/* --- hostname ------------------------------------------------------------------------------------------------- */

Test(syslog_hostname, parts_are_sanitised_and_cut_to_63)
{
	struct lgr_env *env = log_env("x", LOGGREGATOR__V2__LOG__TYPE__OUT);
	char h[LGR_SYSLOG_HOSTNAME_MAX + 1], want[80];

	tag(env, "organization_name", "My  Org\tName!!");
	tag(env, "space_name", "dev_space--");
	tag(env, "app_name", "caf\xc3\xa9 app ");
	lgr_syslog_hostname(env, "fallback", h);
	cr_expect_str_eq(h, "My-Org-Name.devspace.caf-app");

	memset(want, 'a', 70);
	want[70] = '\0';
	tag(env, "app_name", want);
	lgr_syslog_hostname(env, NULL, h);
	want[63] = '\0';
	cr_expect_str_eq(strrchr(h, '.') + 1, want);
	lgr_env_unref(env);
}

Test(syslog_hostname, any_one_of_the_three_tags_switches_to_the_dotted_form)
{
	struct lgr_env *env = log_env("x", LOGGREGATOR__V2__LOG__TYPE__OUT);
	char h[LGR_SYSLOG_HOSTNAME_MAX + 1];

	tag(env, "app_name", "only-app");
	lgr_syslog_hostname(env, "fallback", h);
	cr_expect_str_eq(h, "..only-app");
	lgr_env_unref(env);
}

Test(syslog_hostname, the_bindings_hostname_is_cut_to_255_and_must_be_printable)
{
	struct lgr_env *env = log_env("x", LOGGREGATOR__V2__LOG__TYPE__OUT);
	char longname[300], h[LGR_SYSLOG_HOSTNAME_MAX + 1];

	memset(longname, 'h', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	cr_expect_eq(lgr_syslog_hostname(env, longname, h), 255);
	expect_refused(env, "bad host");
	expect_line(env, "", false, 0, "<14>1 " TS " - test-app-id [] - - x\n");
	lgr_env_unref(env);
}

/* --- APP-NAME and PROCID -------------------------------------------------------------------------------------- */

Test(syslog_fields, app_name_is_the_source_id_cut_to_48)
{
	struct lgr_env *env = log_env("x", LOGGREGATOR__V2__LOG__TYPE__OUT);
	char id[60], want[200];

	memset(id, 'a', 59);
	id[59] = '\0';
	lgr_env_set_source_id(env, id);
	id[48] = '\0';
	snprintf(want, sizeof(want), "<14>1 " TS " h %s [] - - x\n", id);
	expect_line(env, "h", false, 0, want);
	lgr_env_set_source_id(env, "");
	expect_line(env, "h", false, 0, "<14>1 " TS " h - [] - - x\n");
	lgr_env_set_source_id(env, "has space");
	expect_refused(env, "h");
	lgr_env_unref(env);
}

Test(syslog_fields, procid_forms_for_logs)
{
	struct lgr_env *env = log_env("x", LOGGREGATOR__V2__LOG__TYPE__OUT);

	tag(env, "source_type", "APP/PROC/WEB");
	lgr_env_set_instance_id(env, "0");
	expect_line(env, "h", true, 0, "<14>1 " TS " h test-app-id [APP/PROC/WEB/0] - - x\n");
	tag(env, "source_type", "rtr");
	lgr_env_set_instance_id(env, "1");
	expect_line(env, "h", true, 0, "<14>1 " TS " h test-app-id [RTR/1] - - x\n");
	lgr_env_set_instance_id(env, "");
	tag(env, "source_type", "src ");
	expect_line(env, "h", true, 0, "<14>1 " TS " h test-app-id [SRC] - - x\n");
	tag(env, "source_type", "a\x01\xc3\xa9 b--");
	expect_line(env, "h", true, 0, "<14>1 " TS " h test-app-id [A-B] - - x\n");
	lgr_env_set_instance_id(env, "bad instance");
	expect_refused(env, "h");
	lgr_env_unref(env);
}

Test(syslog_fields, procid_is_cut_to_128_with_the_instance_shortened_first)
{
	struct lgr_env *env = log_env("x", LOGGREGATOR__V2__LOG__TYPE__OUT);
	char inst[200], want[400];

	memset(inst, '9', 199);
	inst[199] = '\0';
	tag(env, "source_type", "APP");
	lgr_env_set_instance_id(env, inst);
	inst[128 - 3 - 3] = '\0';
	snprintf(want, sizeof(want), "<14>1 " TS " h test-app-id [APP/%s] - - x\n", inst);
	expect_line(env, "h", true, 0, want);
	lgr_env_unref(env);
}

/* --- structured data ------------------------------------------------------------------------------------------ */

Test(syslog_sd, tags_are_sorted_escaped_and_a_repeated_key_keeps_its_last_value)
{
	struct lgr_env *env = log_env("x", LOGGREGATOR__V2__LOG__TYPE__OUT);
	Loggregator__V2__Envelope__TagsEntry *dup;

	tag(env, "z", "last");
	tag(env, "b", "q\"uo\\te]d");
	tag(env, "a", "");
	/* a repeated key as it can arrive on the wire */
	dup = malloc(sizeof(*dup));
	loggregator__v2__envelope__tags_entry__init(dup);
	dup->key = strdup("z");
	dup->value = strdup("later");
	env->pb->tags = realloc(env->pb->tags, (env->pb->n_tags + 1) * sizeof(*env->pb->tags));
	env->pb->tags[env->pb->n_tags++] = dup;
	expect_line(env, "h", false, 0,
		"<14>1 " TS " h test-app-id [] - [tags@47450 a=\"\" b=\"q\\\"uo\\\\te\\]d\" z=\"later\"] x\n");
	lgr_env_unref(env);
}

Test(syslog_sd, many_tags_sort_like_few)
{
	struct lgr_env *env = log_env("x", LOGGREGATOR__V2__LOG__TYPE__OUT);
	char k[16], *got, *p, prev[16] = "";
	int i, rc;

	for (i = 99; i >= 0; i--) {
		snprintf(k, sizeof(k), "k%03d", i);
		tag(env, k, "v");
	}
	got = fmt(env, "h", false, 0, &rc, NULL);
	cr_assert_eq(rc, LGR_OK);
	for (p = strstr(got, " k"), i = 0; p != NULL; p = strstr(p + 1, " k"), i++) {
		cr_expect_gt(strncmp(p + 1, prev, 4), 0);
		memcpy(prev, p + 1, 4);
	}
	cr_expect_eq(i, 100);
	free(got);
	lgr_env_unref(env);
}

Test(syslog_sd, keys_that_are_not_sd_names_and_values_that_are_not_utf8_are_refused)
{
	struct lgr_env *env = log_env("x", LOGGREGATOR__V2__LOG__TYPE__OUT);

	tag(env, "a=b", "v");
	expect_refused(env, "h");
	lgr_env_del_tag(env, "a=b");
	tag(env, "k", "\xff");
	expect_refused(env, "h");
	/* without metadata the tags are not written, so nothing is refused */
	expect_line(env, "h", true, 0, "<14>1 " TS " h test-app-id [] - - x\n");
	lgr_env_unref(env);
}

/* --- MSG ------------------------------------------------------------------------------------------------------ */

Test(syslog_msg, nul_bytes_are_removed_and_one_newline_ends_the_line)
{
	struct lgr_env *env = lgr_env_new();

	lgr_env_set_source_id(env, "a");
	lgr_env_set_log(env, "x\0y\0\n", 5, LOGGREGATOR__V2__LOG__TYPE__OUT);
	expect_line(env, "h", false, 0, "<14>1 1970-01-01T00:00:00+00:00 h a [] - - xy\n");
	lgr_env_set_log(env, "", 0, LOGGREGATOR__V2__LOG__TYPE__OUT);
	expect_line(env, "h", false, 0, "<14>1 1970-01-01T00:00:00+00:00 h a [] - - \n");
	lgr_env_unref(env);
}

Test(syslog_msg, a_multi_line_payload_stays_one_octet_counted_message)
{
	struct lgr_env *env = lgr_env_new();
	const char *line, *want = "<14>1 1970-01-01T00:00:00+00:00 h a [] - - one\ntwo\n\nthree\n";
	size_t n, used;
	int rc;
	char *got;

	lgr_env_set_source_id(env, "a");
	lgr_env_set_log(env, "one\ntwo\n\nthree", 14, LOGGREGATOR__V2__LOG__TYPE__OUT);
	got = fmt(env, "h", false, LGR_SYSLOG_OCTET, &rc, NULL);
	cr_assert_eq(rc, LGR_OK);
	used = lgr_syslog_next_frame(got, strlen(got), &line, &n);
	cr_expect_eq(used, strlen(got));
	cr_expect_eq(n, strlen(want));
	cr_expect_eq(memcmp(line, want, n), 0);
	free(got);
	lgr_env_unref(env);
}

/* --- metrics -------------------------------------------------------------------------------------------------- */

Test(syslog_metrics, a_gauge_writes_one_line_per_metric_in_name_order)
{
	struct lgr_env *env = lgr_env_new();
	size_t n;
	int rc;
	char *got;

	lgr_env_set_source_id(env, "app");
	lgr_env_set_instance_id(env, "3");
	lgr_env_set_gauge(env);
	lgr_env_add_metric(env, "memory", "bytes", 1e6);
	lgr_env_add_metric(env, "cpu", "percentage", 0.23);
	lgr_env_add_metric(env, "disk", "bytes", 123456);
	got = fmt(env, "h", true, 0, &rc, &n);
	cr_assert_eq(rc, LGR_OK);
	cr_expect_eq(n, 3);
	cr_expect_str_eq(got,
		"<14>1 1970-01-01T00:00:00+00:00 h app [3] - [gauge@47450 name=\"cpu\" value=\"0.23\" "
		"unit=\"percentage\"] \n"
		"<14>1 1970-01-01T00:00:00+00:00 h app [3] - [gauge@47450 name=\"disk\" value=\"123456\" "
		"unit=\"bytes\"] \n"
		"<14>1 1970-01-01T00:00:00+00:00 h app [3] - [gauge@47450 name=\"memory\" value=\"1e+06\" "
		"unit=\"bytes\"] \n");
	free(got);
	lgr_env_unref(env);
}

Test(syslog_metrics, gauge_values_print_as_go_formats_them)
{
	static const struct {
		double v;
		const char *s;
	} cases[] = {
		{0.23, "0.23"},
		{0, "0"},
		{-0.0, "-0"},
		{3, "3"},
		{100000, "100000"},
		{1234567, "1.234567e+06"},
		{0.0001, "0.0001"},
		{0.00001, "1e-05"},
		{1e21, "1e+21"},
		{1.5e300, "1.5e+300"},
		{5e-324, "5e-324"},
		{123456789, "1.23456789e+08"},
		{0.1 + 0.2, "0.30000000000000004"},
		{-2.5, "-2.5"},
		{123.456, "123.456"},
		{INFINITY, "+Inf"},
		{-INFINITY, "-Inf"},
		{NAN, "NaN"},
	};
	char out[LGR_SYSLOG_DOUBLE_MAX];
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		lgr_syslog_double(cases[i].v, out);
		cr_expect_str_eq(out, cases[i].s, "%.17g", cases[i].v);
	}
}

Test(syslog_metrics, timers_and_events_have_their_own_elements)
{
	struct lgr_env *env = lgr_env_new();

	lgr_env_set_source_id(env, "app");
	lgr_env_set_timer(env, "http", 10, -20);
	tag(env, "t", "v");
	expect_line(env, "h", false, 0,
		"<14>1 1970-01-01T00:00:00+00:00 h app [] - [timer@47450 name=\"http\" start=\"10\" stop=\"-20\"]"
		"[tags@47450 t=\"v\"] \n");
	lgr_env_set_event(env, "t\"", "b]");
	expect_line(env, "h", true, 0,
		"<14>1 1970-01-01T00:00:00+00:00 h app [] - [event@47450 title=\"t\\\"\" body=\"b\\]\"] \n");
	lgr_env_set_counter(env, "c", UINT64_MAX, 0);
	expect_line(env, "h", true, 0,
		"<14>1 1970-01-01T00:00:00+00:00 h app [] - [counter@47450 name=\"c\" total=\"0\" "
		"delta=\"18446744073709551615\"] \n");
	lgr_env_unref(env);
}

Test(syslog_metrics, an_envelope_without_message_and_an_empty_gauge_write_nothing)
{
	struct lgr_env *env = lgr_env_new();
	size_t n = 7;
	int rc;
	char *got = fmt(env, "h", false, 0, &rc, &n);

	cr_expect_eq(rc, LGR_OK);
	cr_expect_eq(n, 0);
	cr_expect_str_eq(got, "");
	free(got);
	lgr_env_set_gauge(env);
	got = fmt(env, "h", false, 0, &rc, &n);
	cr_expect_eq(rc, LGR_OK);
	cr_expect_eq(n, 0);
	free(got);
	lgr_env_unref(env);
}

/* --- buffer and frames ---------------------------------------------------------------------------------------- */

Test(syslog_buf, a_line_past_the_limit_leaves_the_buffer_as_it_was)
{
	struct lgr_env *env = log_env("just a test", LOGGREGATOR__V2__LOG__TYPE__OUT);
	struct lgr_syslog_opts o = {"h", false};
	struct lgr_syslog_buf b;
	size_t n, first;

	lgr_syslog_buf_init(&b, 100);
	cr_assert_eq(lgr_syslog_format(env, &o, LGR_SYSLOG_OCTET, &b, &n), LGR_OK);
	first = b.len;
	cr_expect_eq(lgr_syslog_format(env, &o, LGR_SYSLOG_OCTET, &b, &n), LGR_ETOOBIG);
	cr_expect_eq(b.len, first);
	cr_expect_eq(b.p[first], '\0');
	cr_expect_eq(n, 0);
	lgr_syslog_buf_reset(&b);
	cr_expect_eq(lgr_syslog_format(env, &o, LGR_SYSLOG_OCTET, &b, &n), LGR_OK);
	lgr_syslog_buf_cleanup(&b);
	lgr_env_unref(env);
}

Test(syslog_buf, frames_walk_back_out_and_malformed_frames_stop_the_walk)
{
	const char *data = "3 abc1 x", *line;
	size_t n;

	cr_expect_eq(lgr_syslog_next_frame(data, strlen(data), &line, &n), 5);
	cr_expect_eq(n, 3);
	cr_expect_eq(lgr_syslog_next_frame(data + 5, 3, &line, &n), 3);
	cr_expect_eq(lgr_syslog_next_frame("", 0, &line, &n), 0);
	cr_expect_eq(lgr_syslog_next_frame("05 abcde", 8, &line, &n), 0); /* leading zero */
	cr_expect_eq(lgr_syslog_next_frame("9 abc", 5, &line, &n), 0);	  /* short */
	cr_expect_eq(lgr_syslog_next_frame("99999999999999999999 a", 22, &line, &n), 0);
}

/* --- notices -------------------------------------------------------------------------------------------------- */

Test(syslog_notice, the_lost_message_notice_has_the_reference_wording)
{
	char out[256];

	cr_expect_gt(lgr_syslog_notice_lost(42, "guid-1", "syslog://host:514", out, sizeof(out)), 0);
	cr_expect_str_eq(out, "42 messages lost for application guid-1 in user provided syslog drain with url "
			      "syslog://host:514");
	cr_expect_eq(lgr_syslog_notice_lost(42, "guid-1", "syslog://host:514", out, 10), LGR_ETOOBIG);
	cr_expect_str_eq(out, "");
}

Test(syslog_notice, the_notice_envelope_is_an_lgr_log_in_the_apps_stream)
{
	struct lgr_env *env = NULL;

	cr_expect_eq(lgr_syslog_notice_env("", "x", 1, &env), LGR_EINVAL);
	cr_assert_eq(lgr_syslog_notice_env("guid-1", "hello", 5000, &env), LGR_OK);
	expect_line(env, "h", false, 0,
		"<14>1 1970-01-01T00:00:00.000005+00:00 h guid-1 [LGR/0] - [tags@47450 "
		"source_type=\"LGR\"] hello\n");
	lgr_env_unref(env);
}

/* --- Logplex -------------------------------------------------------------------------------------------------- */

static char *plex(const struct lgr_logplex_line *l, enum lgr_logplex_form form, size_t *frames)
{
	struct lgr_syslog_buf b;
	char *s;

	lgr_syslog_buf_init(&b, 0);
	cr_assert_eq(lgr_logplex_format(l, form, &b, frames), LGR_OK);
	s = strndup(b.p, b.len);
	lgr_syslog_buf_cleanup(&b);
	return s;
}

Test(logplex, the_https_frame_matches_logplexs_readme_example)
{
	struct lgr_logplex_line l = {.pri = 174,
		.time_ns = INT64_C(1342915586) * 1000000000,
		.time_seconds = true,
		.source = "erlang",
		.process = "console",
		.msg = "Hi from erlang",
		.msg_len = 14};
	size_t frames;
	char *got = plex(&l, LGR_LOGPLEX_HTTPS, &frames);

	cr_expect_str_eq(got, "70 <174>1 2012-07-22T00:06:26+00:00 host erlang console - Hi from erlang\n");
	cr_expect_eq(frames, 1);
	free(got);
}

Test(logplex, the_syslog_form_carries_the_drain_token_and_two_nilvalues)
{
	struct lgr_env *env = log_env("Your message\n", LOGGREGATOR__V2__LOG__TYPE__OUT);
	char src[LGR_LOGPLEX_FIELD_MAX + 1], proc[LGR_LOGPLEX_FIELD_MAX + 1];
	struct lgr_logplex_line l;
	char *got;

	tag(env, "source_type", "APP/PROC/WEB");
	lgr_env_set_instance_id(env, "1");
	cr_assert_eq(lgr_logplex_from_env(env, "d.9173ea1f-6f4a-4b7e-9f38-7c0f1d4f8a3e", &l, src, proc), LGR_OK);
	got = plex(&l, LGR_LOGPLEX_SYSLOG, NULL);
	cr_expect_str_eq(got, "106 <190>1 1970-01-01T00:00:00.012345+00:00 d.9173ea1f-6f4a-4b7e-9f38-7c0f1d4f8a3e app "
			      "web.1 - - Your message\n");
	free(got);
	tag(env, "source_type", "RTR");
	lgr_logplex_from_env(env, "t", &l, src, proc);
	cr_expect_str_eq(src, "heroku");
	cr_expect_str_eq(proc, "rtr.1");
	lgr_env_unref(env);
}

Test(logplex, messages_over_10000_bytes_are_split_into_chunks)
{
	char *msg = malloc(25001), *got, *p;
	struct lgr_logplex_line l = {.pri = 190, .source = "app", .process = "web.1", .msg_len = 25001};
	const char *line;
	size_t frames, n, used, lens[3], i = 0;

	memset(msg, 'm', 25000);
	msg[25000] = '\n';
	l.msg = msg;
	got = plex(&l, LGR_LOGPLEX_HTTPS, &frames);
	cr_expect_eq(frames, 3);
	for (p = got; (used = lgr_syslog_next_frame(p, strlen(p), &line, &n)) > 0; p += used) {
		const char *m = strstr(line, " - ") + 3;

		cr_assert_lt(i, 3);
		lens[i++] = (size_t)(line + n - m) - 1;
		cr_expect_eq(line[n - 1], '\n');
	}
	cr_expect_eq(i, 3);
	cr_expect_eq(lens[0], 10000);
	cr_expect_eq(lens[1], 10000);
	cr_expect_eq(lens[2], 5000);
	free(got);
	free(msg);
}

Test(logplex, the_overflow_notice_has_logplexs_wording_and_priority)
{
	struct lgr_syslog_buf b;

	lgr_syslog_buf_init(&b, 0);
	cr_assert_eq(lgr_logplex_overflow(LGR_LOGPLEX_HTTPS, NULL, 7, INT64_C(1342915586) * 1000000000,
			     INT64_C(1342915590) * 1000000000 + 5, &b),
		LGR_OK);
	cr_expect_str_eq(b.p, "143 <172>1 2012-07-22T00:06:30+00:00 host heroku logplex - Error L10 (output buffer "
			      "overflow): 7 messages dropped since 2012-07-22T00:06:26+00:00.\n");
	lgr_syslog_buf_cleanup(&b);
}

Test(logplex, header_fields_are_made_printable_and_bad_priorities_refused)
{
	struct lgr_logplex_line l = {.pri = 192, .host = "a b", .source = "", .process = NULL};
	struct lgr_syslog_buf b;
	char *got;

	lgr_syslog_buf_init(&b, 0);
	cr_expect_eq(lgr_logplex_format(&l, LGR_LOGPLEX_SYSLOG, &b, NULL), LGR_EINVAL);
	lgr_syslog_buf_cleanup(&b);
	l.pri = 0;
	got = plex(&l, LGR_LOGPLEX_SYSLOG, NULL);
	cr_expect_str_eq(got, "51 <0>1 1970-01-01T00:00:00.000000+00:00 a-b - - - - \n");
	free(got);
}

Test(logplex, frame_ids_are_32_hex_digits_and_differ)
{
	char a[LGR_LOGPLEX_FRAME_ID_LEN + 1], b[LGR_LOGPLEX_FRAME_ID_LEN + 1];

	lgr_logplex_frame_id(a);
	lgr_logplex_frame_id(b);
	cr_expect_eq(strlen(a), 32);
	cr_expect_eq(strspn(a, "0123456789ABCDEF"), 32);
	cr_expect_str_neq(a, b);
}
