/*
 * test_agent.c: the agent's envelope rules: source_id from origin, deprecated tags copied into tags, default tags,
 * their precedence, the text of integers and decimals (vectors printed by Go 1.19's strconv.FormatFloat(v, 'f', -1,
 * 64), which the real agent's Tagger uses), and the bounded table of counter totals.
 */
#include <criterion/criterion.h>

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "lgr_agent.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static struct lgr_agent *agent_with(const char *const *tags, size_t ntags, size_t max_counters)
{
	struct lgr_agent_conf conf = {.default_tags = tags, .ndefault_tags = ntags, .max_counters = max_counters};
	struct lgr_agent *ag = NULL;

	cr_assert_eq(lgr_agent_new(&conf, &ag), LGR_OK);
	cr_assert_not_null(ag);
	return ag;
}

static struct lgr_agent *plain_agent(void)
{
	return agent_with(NULL, 0, 0);
}

static struct lgr_env *log_env(const char *source_id)
{
	struct lgr_env *env = lgr_env_new();

	cr_assert_not_null(env);
	cr_assert_eq(lgr_env_set_log(env, "hi", 2, LOGGREGATOR__V2__LOG__TYPE__OUT), LGR_OK);
	if (source_id != NULL)
		cr_assert_eq(lgr_env_set_source_id(env, source_id), LGR_OK);
	return env;
}

static struct lgr_env *counter_env(const char *name, const char *source_id, uint64_t delta, uint64_t total)
{
	struct lgr_env *env = lgr_env_new();

	cr_assert_not_null(env);
	cr_assert_eq(lgr_env_set_counter(env, name, delta, total), LGR_OK);
	cr_assert_eq(lgr_env_set_source_id(env, source_id), LGR_OK);
	return env;
}

/* Applies the rules to env, drops it, and returns the total the agent wrote into it. */
static uint64_t total_after(struct lgr_agent *ag, struct lgr_env *env)
{
	uint64_t total;

	cr_assert_eq(lgr_agent_apply(ag, env), LGR_OK);
	cr_assert_eq(lgr_env_type(env), LGR_ENV_COUNTER);
	total = env->pb->counter->total;
	lgr_env_unref(env);
	return total;
}

static uint64_t count(struct lgr_agent *ag, const char *name, const char *source_id, uint64_t delta, uint64_t total)
{
	return total_after(ag, counter_env(name, source_id, delta, total));
}

static void assert_tag(const struct lgr_env *env, const char *key, const char *want)
{
	const char *got = lgr_env_tag(env, key);

	cr_assert_not_null(got, "tag %s missing", key);
	cr_assert_str_eq(got, want, "tag %s", key);
}

static struct lgr_env *decode(const uint8_t *buf, size_t len)
{
	struct lgr_env *env = NULL;

	cr_assert_eq(lgr_env_decode(buf, len, NULL, &env), LGR_OK);
	return env;
}

/* The decoding of a's encoding followed by b's: protobuf merges them, so a map key set in both appears twice. */
static struct lgr_env *concat(struct lgr_env *a, struct lgr_env *b)
{
	const uint8_t *da, *db;
	size_t la, lb;
	uint8_t buf[1024];
	struct lgr_env *env;

	cr_assert_eq(lgr_env_encode(a, &da, &la), LGR_OK);
	cr_assert_eq(lgr_env_encode(b, &db, &lb), LGR_OK);
	cr_assert_leq(la + lb, sizeof(buf));
	memcpy(buf, da, la);
	memcpy(buf + la, db, lb);
	env = decode(buf, la + lb);
	lgr_env_unref(a);
	lgr_env_unref(b);
	return env;
}

static const char *fmt(double d)
{
	static char buf[LGR_AGENT_DECIMAL_MAX];
	size_t len = lgr_agent_format_decimal(d, buf);

	cr_assert_eq(len, strlen(buf));
	cr_assert_lt(len, LGR_AGENT_DECIMAL_MAX);
	return buf;
}

/* prefix, then zeros '0's, then suffix. */
static const char *spelled(const char *prefix, size_t zeros, const char *suffix)
{
	static char buf[LGR_AGENT_DECIMAL_MAX];
	size_t n = strlen(prefix);

	cr_assert_lt(n + zeros + strlen(suffix), sizeof(buf));
	memcpy(buf, prefix, n);
	memset(buf + n, '0', zeros);
	strcpy(buf + n + zeros, suffix);
	return buf;
}

/* --- source_id from origin ------------------------------------------------------------------------------------ */

Test(agent, an_empty_source_id_takes_the_origin_tag)
{
	struct lgr_agent *ag = plain_agent();
	struct lgr_env *env = log_env(NULL);

	cr_assert_eq(lgr_env_set_tag(env, "origin", "gorouter"), LGR_OK);
	cr_assert_eq(lgr_agent_apply(ag, env), LGR_OK);
	cr_assert_str_eq(env->pb->source_id, "gorouter");
	lgr_env_unref(env);
	lgr_agent_free(ag);
}

Test(agent, a_source_id_that_is_set_is_kept_whatever_the_origin)
{
	struct lgr_agent *ag = plain_agent();
	struct lgr_env *env = log_env("app-guid");

	cr_assert_eq(lgr_env_set_tag(env, "origin", "gorouter"), LGR_OK);
	cr_assert_eq(lgr_env_set_dtag_text(env, "origin", "rep"), LGR_OK);
	cr_assert_eq(lgr_agent_apply(ag, env), LGR_OK);
	cr_assert_str_eq(env->pb->source_id, "app-guid");
	lgr_env_unref(env);
	lgr_agent_free(ag);
}

Test(agent, the_origin_tag_wins_over_the_deprecated_origin)
{
	struct lgr_agent *ag = plain_agent();
	struct lgr_env *env = log_env(NULL);

	cr_assert_eq(lgr_env_set_dtag_text(env, "origin", "rep"), LGR_OK);
	cr_assert_eq(lgr_env_set_tag(env, "origin", "gorouter"), LGR_OK);
	cr_assert_eq(lgr_agent_apply(ag, env), LGR_OK);
	cr_assert_str_eq(env->pb->source_id, "gorouter");
	lgr_env_unref(env);
	lgr_agent_free(ag);
}

Test(agent, the_deprecated_origin_is_used_when_there_is_no_origin_tag)
{
	struct lgr_agent *ag = plain_agent();
	struct lgr_env *env = log_env(NULL);

	cr_assert_eq(lgr_env_set_dtag_text(env, "origin", "rep"), LGR_OK);
	cr_assert_eq(lgr_agent_apply(ag, env), LGR_OK);
	cr_assert_str_eq(env->pb->source_id, "rep");
	lgr_env_unref(env);
	lgr_agent_free(ag);
}

Test(agent, a_numeric_deprecated_origin_gives_no_source_id_like_the_real_receiver)
{
	struct lgr_agent *ag = plain_agent();
	struct lgr_env *a = log_env(NULL), *b = log_env(NULL);

	cr_assert_eq(lgr_env_set_dtag_integer(a, "origin", -17), LGR_OK);
	cr_assert_eq(lgr_env_set_dtag_decimal(b, "origin", 2.5), LGR_OK);
	cr_assert_eq(lgr_agent_apply(ag, a), LGR_OK);
	cr_assert_eq(lgr_agent_apply(ag, b), LGR_OK);
	cr_assert_str_eq(a->pb->source_id, "");
	cr_assert_str_eq(b->pb->source_id, "");
	lgr_env_unref(a);
	lgr_env_unref(b);
	lgr_agent_free(ag);
}

Test(agent, an_empty_origin_tag_leaves_the_source_id_empty_like_the_real_agent)
{
	struct lgr_agent *ag = plain_agent();
	struct lgr_env *env = log_env(NULL);

	/* The real receiver stops at a present tags["origin"], empty or not. */
	cr_assert_eq(lgr_env_set_tag(env, "origin", ""), LGR_OK);
	cr_assert_eq(lgr_env_set_dtag_text(env, "origin", "rep"), LGR_OK);
	cr_assert_eq(lgr_agent_apply(ag, env), LGR_OK);
	cr_assert_str_eq(env->pb->source_id, "");
	lgr_env_unref(env);
	lgr_agent_free(ag);
}

Test(agent, without_any_origin_the_source_id_stays_empty)
{
	struct lgr_agent *ag = plain_agent();
	struct lgr_env *env = log_env(NULL);

	cr_assert_eq(lgr_agent_apply(ag, env), LGR_OK);
	cr_assert_str_eq(env->pb->source_id, "");
	cr_assert_eq(env->pb->n_tags, 0);
	lgr_env_unref(env);
	lgr_agent_free(ag);
}

/* --- deprecated tags ------------------------------------------------------------------------------------------ */

Test(agent, deprecated_tags_are_copied_into_tags_and_kept_as_they_are)
{
	struct lgr_agent *ag = plain_agent();
	struct lgr_env *env = log_env("s");
	const Loggregator__V2__Value *v;

	cr_assert_eq(lgr_env_set_dtag_text(env, "job", "diego_cell"), LGR_OK);
	cr_assert_eq(lgr_env_set_dtag_integer(env, "index", 3), LGR_OK);
	cr_assert_eq(lgr_env_set_dtag_decimal(env, "load", 0.75), LGR_OK);
	cr_assert_eq(lgr_agent_apply(ag, env), LGR_OK);
	assert_tag(env, "job", "diego_cell");
	assert_tag(env, "index", "3");
	assert_tag(env, "load", "0.75");
	cr_assert_eq(env->pb->n_tags, 3);
	cr_assert_eq(env->pb->n_deprecated_tags, 3);
	v = lgr_env_dtag(env, "index");
	cr_assert_not_null(v);
	cr_assert_eq(v->data_case, LOGGREGATOR__V2__VALUE__DATA_INTEGER);
	cr_assert_eq(v->integer, 3);
	lgr_env_unref(env);
	lgr_agent_free(ag);
}

Test(agent, deprecated_integers_are_copied_in_decimal)
{
	struct lgr_agent *ag = plain_agent();
	struct lgr_env *env = log_env("s");

	cr_assert_eq(lgr_env_set_dtag_integer(env, "zero", 0), LGR_OK);
	cr_assert_eq(lgr_env_set_dtag_integer(env, "neg", -42), LGR_OK);
	cr_assert_eq(lgr_env_set_dtag_integer(env, "max", INT64_MAX), LGR_OK);
	cr_assert_eq(lgr_env_set_dtag_integer(env, "min", INT64_MIN), LGR_OK);
	cr_assert_eq(lgr_agent_apply(ag, env), LGR_OK);
	assert_tag(env, "zero", "0");
	assert_tag(env, "neg", "-42");
	assert_tag(env, "max", "9223372036854775807");
	assert_tag(env, "min", "-9223372036854775808");
	lgr_env_unref(env);
	lgr_agent_free(ag);
}

Test(agent, deprecated_decimals_are_copied_as_go_formats_them)
{
	struct lgr_agent *ag = plain_agent();
	struct lgr_env *env = log_env("s");

	cr_assert_eq(lgr_env_set_dtag_decimal(env, "big", 1e21), LGR_OK);
	cr_assert_eq(lgr_env_set_dtag_decimal(env, "small", 1e-7), LGR_OK);
	cr_assert_eq(lgr_env_set_dtag_decimal(env, "sum", 0.1 + 0.2), LGR_OK);
	cr_assert_eq(lgr_env_set_dtag_decimal(env, "whole", 100.0), LGR_OK);
	cr_assert_eq(lgr_agent_apply(ag, env), LGR_OK);
	assert_tag(env, "big", "1000000000000000000000");
	assert_tag(env, "small", "0.0000001");
	assert_tag(env, "sum", "0.30000000000000004");
	assert_tag(env, "whole", "100");
	lgr_env_unref(env);
	lgr_agent_free(ag);
}

Test(agent, a_deprecated_tag_replaces_a_tag_of_the_same_key_like_the_real_tagger)
{
	struct lgr_agent *ag = plain_agent();
	struct lgr_env *env = log_env("s");

	cr_assert_eq(lgr_env_set_tag(env, "job", "router"), LGR_OK);
	cr_assert_eq(lgr_env_set_dtag_text(env, "job", "diego_cell"), LGR_OK);
	cr_assert_eq(lgr_agent_apply(ag, env), LGR_OK);
	assert_tag(env, "job", "diego_cell");
	cr_assert_eq(env->pb->n_tags, 1);
	lgr_env_unref(env);
	lgr_agent_free(ag);
}

Test(agent, the_last_of_a_repeated_deprecated_key_is_the_one_copied)
{
	struct lgr_agent *ag = plain_agent();
	struct lgr_env *a = lgr_env_new(), *b = lgr_env_new(), *env;

	cr_assert_eq(lgr_env_set_dtag_text(a, "job", "first"), LGR_OK);
	cr_assert_eq(lgr_env_set_dtag_text(b, "job", "last"), LGR_OK);
	env = concat(a, b);
	cr_assert_eq(env->pb->n_deprecated_tags, 2);
	cr_assert_eq(lgr_agent_apply(ag, env), LGR_OK);
	assert_tag(env, "job", "last");
	cr_assert_eq(env->pb->n_tags, 1);
	lgr_env_unref(env);
	lgr_agent_free(ag);
}

Test(agent, a_deprecated_tag_without_a_value_is_copied_as_empty_text)
{
	/* Envelope{deprecated_tags: {"k": Value{}}, deprecated_tags: {"m": (no value)}} */
	static const uint8_t wire[] = {0x1a, 0x05, 0x0a, 0x01, 'k', 0x12, 0x00, 0x1a, 0x03, 0x0a, 0x01, 'm'};
	struct lgr_agent *ag = plain_agent();
	struct lgr_env *env = decode(wire, sizeof(wire));

	cr_assert_eq(lgr_agent_apply(ag, env), LGR_OK);
	assert_tag(env, "k", "");
	assert_tag(env, "m", "");
	lgr_env_unref(env);
	lgr_agent_free(ag);
}

/* --- decimal text --------------------------------------------------------------------------------------------- */

Test(agent, decimals_use_the_shortest_digits_that_parse_back)
{
	cr_assert_str_eq(fmt(0.1), "0.1");
	cr_assert_str_eq(fmt(0.1 + 0.2), "0.30000000000000004");
	cr_assert_str_eq(fmt(1.0 / 3), "0.3333333333333333");
	cr_assert_str_eq(fmt(123.456), "123.456");
	cr_assert_str_eq(fmt(3.14), "3.14");
	cr_assert_str_eq(fmt(-42.25), "-42.25");
	cr_assert_str_eq(fmt(9007199254740993.0), "9007199254740992");
}

Test(agent, decimals_are_written_without_an_exponent)
{
	cr_assert_str_eq(fmt(1e21), "1000000000000000000000");
	cr_assert_str_eq(fmt(1e23), "100000000000000000000000");
	cr_assert_str_eq(fmt(1e-7), "0.0000001");
	cr_assert_str_eq(fmt(2.5e-8), "0.000000025");
	cr_assert_str_eq(fmt(100), "100");
	cr_assert_str_eq(fmt(1.5), "1.5");
}

Test(agent, decimals_at_a_power_of_two_take_the_shorter_neighbour_like_go)
{
	/* Below a power of two the doubles are twice as dense: the correctly rounded 17 digits of 2^-24 are exact, but
	 * Go finds 16 digits on the other side that still parse to it. */
	cr_assert_str_eq(fmt(ldexp(1, -24)), "0.00000005960464477539063");
	cr_assert_str_eq(fmt(ldexp(1, 89)), "618970019642690200000000000");
}

Test(agent, the_longest_decimals_fit_the_buffer)
{
	cr_assert_str_eq(fmt(DBL_MAX), spelled("17976931348623157", 292, ""));
	cr_assert_str_eq(fmt(5e-324), spelled("0.", 323, "5"));
	cr_assert_str_eq(fmt(-DBL_MIN), spelled("-0.", 307, "22250738585072014"));
}

Test(agent, zero_infinities_and_nan_are_written_as_go_writes_them)
{
	cr_assert_str_eq(fmt(0.0), "0");
	cr_assert_str_eq(fmt(-0.0), "-0");
	cr_assert_str_eq(fmt(INFINITY), "+Inf");
	cr_assert_str_eq(fmt(-INFINITY), "-Inf");
	cr_assert_str_eq(fmt(NAN), "NaN");
	cr_assert_str_eq(fmt(-NAN), "NaN");
}

/* --- default tags --------------------------------------------------------------------------------------------- */

Test(agent, default_tags_are_added_where_absent)
{
	static const char *const defaults[] = {"deployment:cf", "job:router", "ip:10.0.0.1"};
	struct lgr_agent *ag = agent_with(defaults, N(defaults), 0);
	struct lgr_env *env = log_env("s");

	cr_assert_eq(lgr_agent_apply(ag, env), LGR_OK);
	assert_tag(env, "deployment", "cf");
	assert_tag(env, "job", "router");
	assert_tag(env, "ip", "10.0.0.1");
	cr_assert_eq(env->pb->n_tags, 3);
	lgr_env_unref(env);
	lgr_agent_free(ag);
}

Test(agent, an_envelope_tag_wins_over_a_default_tag)
{
	static const char *const defaults[] = {"job:router"};
	struct lgr_agent *ag = agent_with(defaults, N(defaults), 0);
	struct lgr_env *env = log_env("s");

	cr_assert_eq(lgr_env_set_tag(env, "job", "api"), LGR_OK);
	cr_assert_eq(lgr_agent_apply(ag, env), LGR_OK);
	assert_tag(env, "job", "api");
	cr_assert_eq(env->pb->n_tags, 1);
	lgr_env_unref(env);
	lgr_agent_free(ag);
}

Test(agent, a_deprecated_tag_wins_over_a_default_tag)
{
	static const char *const defaults[] = {"index:0"};
	struct lgr_agent *ag = agent_with(defaults, N(defaults), 0);
	struct lgr_env *env = log_env("s");

	cr_assert_eq(lgr_env_set_dtag_integer(env, "index", 7), LGR_OK);
	cr_assert_eq(lgr_agent_apply(ag, env), LGR_OK);
	assert_tag(env, "index", "7");
	cr_assert_eq(env->pb->n_tags, 1);
	lgr_env_unref(env);
	lgr_agent_free(ag);
}

Test(agent, a_default_tag_is_split_at_its_first_colon)
{
	static const char *const defaults[] = {"url:https://example.com:8443/x", "empty:"};
	struct lgr_agent *ag = agent_with(defaults, N(defaults), 0);
	struct lgr_env *env = log_env("s");

	cr_assert_eq(lgr_agent_apply(ag, env), LGR_OK);
	assert_tag(env, "url", "https://example.com:8443/x");
	assert_tag(env, "empty", "");
	lgr_env_unref(env);
	lgr_agent_free(ag);
}

Test(agent, a_default_tag_given_twice_keeps_the_later_value)
{
	static const char *const defaults[] = {"az:z1", "job:x", "az:z2"};
	struct lgr_agent *ag = agent_with(defaults, N(defaults), 0);
	struct lgr_env *env = log_env("s");

	cr_assert_eq(lgr_agent_apply(ag, env), LGR_OK);
	assert_tag(env, "az", "z2");
	cr_assert_eq(env->pb->n_tags, 2);
	lgr_env_unref(env);
	lgr_agent_free(ag);
}

Test(agent, new_rejects_a_default_tag_without_a_colon_or_a_key)
{
	static const char *const no_colon[] = {"ok:1", "deployment"};
	static const char *const no_key[] = {":value"};
	struct lgr_agent_conf conf = {.default_tags = no_colon, .ndefault_tags = N(no_colon)};
	struct lgr_agent *ag = (struct lgr_agent *)&conf;

	cr_assert_eq(lgr_agent_new(&conf, &ag), LGR_EINVAL);
	cr_assert_null(ag);
	conf.default_tags = no_key;
	conf.ndefault_tags = N(no_key);
	ag = (struct lgr_agent *)&conf;
	cr_assert_eq(lgr_agent_new(&conf, &ag), LGR_EINVAL);
	cr_assert_null(ag);
}

Test(agent, the_conf_need_not_outlive_new)
{
	char spec[] = "job:router";
	const char *defaults[] = {spec};
	struct lgr_agent *ag = agent_with(defaults, 1, 0);
	struct lgr_env *env = log_env("s");

	memset(spec, 'x', sizeof(spec) - 1);
	cr_assert_eq(lgr_agent_apply(ag, env), LGR_OK);
	assert_tag(env, "job", "router");
	lgr_env_unref(env);
	lgr_agent_free(ag);
}

/* --- counter totals ------------------------------------------------------------------------------------------- */

Test(agent, delta_only_counters_accumulate_their_total_across_envelopes)
{
	struct lgr_agent *ag = plain_agent();

	cr_assert_eq(count(ag, "requests", "app", 2, 0), 2);
	cr_assert_eq(count(ag, "requests", "app", 3, 0), 5);
	cr_assert_eq(count(ag, "requests", "app", 1, 0), 6);
	cr_assert_eq(lgr_agent_counters(ag), 1);
	lgr_agent_free(ag);
}

Test(agent, a_counter_with_a_total_sets_the_running_total)
{
	struct lgr_agent *ag = plain_agent();

	cr_assert_eq(count(ag, "requests", "app", 5, 0), 5);
	cr_assert_eq(count(ag, "requests", "app", 1, 100), 100);
	cr_assert_eq(count(ag, "requests", "app", 4, 0), 104);
	cr_assert_eq(count(ag, "requests", "app", 0, 3), 3);
	cr_assert_eq(count(ag, "requests", "app", 1, 0), 4);
	lgr_agent_free(ag);
}

Test(agent, a_counter_with_neither_delta_nor_total_resets_the_running_total)
{
	struct lgr_agent *ag = plain_agent();

	cr_assert_eq(count(ag, "requests", "app", 5, 0), 5);
	cr_assert_eq(count(ag, "requests", "app", 0, 0), 0);
	cr_assert_eq(count(ag, "requests", "app", 2, 0), 2);
	lgr_agent_free(ag);
}

Test(agent, a_counter_keeps_its_name_and_delta)
{
	struct lgr_agent *ag = plain_agent();
	struct lgr_env *env = counter_env("requests", "app", 3, 0);

	cr_assert_eq(count(ag, "requests", "app", 4, 0), 4);
	cr_assert_eq(lgr_agent_apply(ag, env), LGR_OK);
	cr_assert_str_eq(env->pb->counter->name, "requests");
	cr_assert_eq(env->pb->counter->delta, 3);
	cr_assert_eq(env->pb->counter->total, 7);
	lgr_env_unref(env);
	lgr_agent_free(ag);
}

Test(agent, the_running_total_wraps_like_the_agents_uint64)
{
	struct lgr_agent *ag = plain_agent();

	cr_assert_eq(count(ag, "c", "app", 0, UINT64_MAX), UINT64_MAX);
	cr_assert_eq(count(ag, "c", "app", 2, 0), 1);
	lgr_agent_free(ag);
}

Test(agent, counters_are_kept_apart_by_name_source_and_tags)
{
	struct lgr_agent *ag = plain_agent();
	struct lgr_env *env;

	cr_assert_eq(count(ag, "requests", "app", 1, 0), 1);
	cr_assert_eq(count(ag, "errors", "app", 10, 0), 10);
	cr_assert_eq(count(ag, "requests", "other", 100, 0), 100);
	env = counter_env("requests", "app", 1000, 0);
	cr_assert_eq(lgr_env_set_tag(env, "instance", "1"), LGR_OK);
	cr_assert_eq(total_after(ag, env), 1000);
	env = counter_env("requests", "app", 1000, 0);
	cr_assert_eq(lgr_env_set_tag(env, "instance", "2"), LGR_OK);
	cr_assert_eq(total_after(ag, env), 1000);
	cr_assert_eq(count(ag, "requests", "app", 1, 0), 2);
	cr_assert_eq(lgr_agent_counters(ag), 5);
	lgr_agent_free(ag);
}

Test(agent, parts_that_concatenate_alike_are_different_counters)
{
	struct lgr_agent *ag = plain_agent();
	struct lgr_env *env;

	cr_assert_eq(count(ag, "ab", "c", 1, 0), 1);
	cr_assert_eq(count(ag, "a", "bc", 1, 0), 1);
	env = counter_env("n", "s", 1, 0);
	cr_assert_eq(lgr_env_set_tag(env, "a", "bc"), LGR_OK);
	cr_assert_eq(total_after(ag, env), 1);
	env = counter_env("n", "s", 1, 0);
	cr_assert_eq(lgr_env_set_tag(env, "ab", "c"), LGR_OK);
	cr_assert_eq(total_after(ag, env), 1);
	env = counter_env("n", "s", 1, 0);
	cr_assert_eq(lgr_env_set_tag(env, "a", ""), LGR_OK);
	cr_assert_eq(lgr_env_set_tag(env, "bc", ""), LGR_OK);
	cr_assert_eq(total_after(ag, env), 1);
	cr_assert_eq(lgr_agent_counters(ag), 5);
	lgr_agent_free(ag);
}

Test(agent, the_order_of_tags_on_the_wire_does_not_change_the_counter)
{
	struct lgr_agent *ag = plain_agent();
	struct lgr_env *env;

	env = counter_env("requests", "app", 1, 0);
	cr_assert_eq(lgr_env_set_tag(env, "a", "1"), LGR_OK);
	cr_assert_eq(lgr_env_set_tag(env, "b", "2"), LGR_OK);
	cr_assert_eq(lgr_env_set_tag(env, "c", "3"), LGR_OK);
	cr_assert_eq(total_after(ag, env), 1);
	env = counter_env("requests", "app", 1, 0);
	cr_assert_eq(lgr_env_set_tag(env, "c", "3"), LGR_OK);
	cr_assert_eq(lgr_env_set_tag(env, "a", "1"), LGR_OK);
	cr_assert_eq(lgr_env_set_tag(env, "b", "2"), LGR_OK);
	cr_assert_eq(total_after(ag, env), 2);
	cr_assert_eq(lgr_agent_counters(ag), 1);
	lgr_agent_free(ag);
}

Test(agent, a_repeated_tag_key_counts_with_its_last_value)
{
	struct lgr_agent *ag = plain_agent();
	struct lgr_env *a = counter_env("requests", "app", 1, 0), *b = lgr_env_new(), *env;

	cr_assert_eq(lgr_env_set_tag(a, "zone", "z1"), LGR_OK);
	cr_assert_eq(lgr_env_set_tag(b, "zone", "z2"), LGR_OK);
	env = concat(a, b);
	cr_assert_eq(env->pb->n_tags, 2);
	cr_assert_eq(total_after(ag, env), 1);
	env = counter_env("requests", "app", 1, 0);
	cr_assert_eq(lgr_env_set_tag(env, "zone", "z2"), LGR_OK);
	cr_assert_eq(total_after(ag, env), 2);
	lgr_agent_free(ag);
}

Test(agent, default_and_deprecated_tags_are_part_of_the_counter_key)
{
	static const char *const defaults[] = {"deployment:cf"};
	struct lgr_agent *ag = agent_with(defaults, N(defaults), 0);
	struct lgr_env *env;

	/* The real agent tags before it keys: the default tag is in the key whether it came with the envelope or not,
	 * and a deprecated integer counts as its text. */
	env = counter_env("requests", "app", 1, 0);
	cr_assert_eq(lgr_env_set_dtag_integer(env, "index", 3), LGR_OK);
	cr_assert_eq(total_after(ag, env), 1);
	env = counter_env("requests", "app", 1, 0);
	cr_assert_eq(lgr_env_set_tag(env, "index", "3"), LGR_OK);
	cr_assert_eq(lgr_env_set_tag(env, "deployment", "cf"), LGR_OK);
	cr_assert_eq(total_after(ag, env), 2);
	cr_assert_eq(lgr_agent_counters(ag), 1);
	/* Another deployment is another counter. */
	env = counter_env("requests", "app", 1, 0);
	cr_assert_eq(lgr_env_set_tag(env, "index", "3"), LGR_OK);
	cr_assert_eq(lgr_env_set_tag(env, "deployment", "other"), LGR_OK);
	cr_assert_eq(total_after(ag, env), 1);
	cr_assert_eq(lgr_agent_counters(ag), 2);
	lgr_agent_free(ag);
}

Test(agent, the_source_id_from_origin_is_part_of_the_counter_key)
{
	struct lgr_agent *ag = plain_agent();
	struct lgr_env *env;

	env = counter_env("requests", "", 1, 0);
	cr_assert_eq(lgr_env_set_tag(env, "origin", "gorouter"), LGR_OK);
	cr_assert_eq(total_after(ag, env), 1);
	env = counter_env("requests", "gorouter", 1, 0);
	cr_assert_eq(lgr_env_set_tag(env, "origin", "gorouter"), LGR_OK);
	cr_assert_eq(total_after(ag, env), 2);
	lgr_agent_free(ag);
}

Test(agent, other_envelope_types_leave_the_counter_table_alone)
{
	struct lgr_agent *ag = plain_agent();
	struct lgr_env *env = log_env("app");

	cr_assert_eq(lgr_agent_apply(ag, env), LGR_OK);
	lgr_env_unref(env);
	env = lgr_env_new();
	cr_assert_eq(lgr_env_set_gauge(env), LGR_OK);
	cr_assert_eq(lgr_env_add_metric(env, "cpu", "percentage", 12.5), LGR_OK);
	cr_assert_eq(lgr_agent_apply(ag, env), LGR_OK);
	lgr_env_unref(env);
	env = lgr_env_new();
	cr_assert_eq(lgr_agent_apply(ag, env), LGR_OK);
	lgr_env_unref(env);
	cr_assert_eq(lgr_agent_counters(ag), 0);
	lgr_agent_free(ag);
}

Test(agent, the_least_recently_used_counter_is_forgotten_at_max_counters)
{
	struct lgr_agent *ag = agent_with(NULL, 0, 2);

	cr_assert_eq(count(ag, "a", "s", 1, 0), 1);
	cr_assert_eq(count(ag, "b", "s", 10, 0), 10);
	cr_assert_eq(count(ag, "a", "s", 1, 0), 2); /* a is now the most recently used */
	cr_assert_eq(count(ag, "c", "s", 100, 0), 100);
	cr_assert_eq(lgr_agent_counters(ag), 2);
	cr_assert_eq(count(ag, "a", "s", 1, 0), 3);   /* kept */
	cr_assert_eq(count(ag, "b", "s", 10, 0), 10); /* forgotten: starts again, and pushes c out */
	cr_assert_eq(count(ag, "c", "s", 100, 0), 100);
	cr_assert_eq(lgr_agent_counters(ag), 2);
	lgr_agent_free(ag);
}

Test(agent, the_counter_table_never_holds_more_than_max_counters)
{
	struct lgr_agent *ag = agent_with(NULL, 0, 1000);
	char name[32];
	unsigned i;

	for (i = 0; i < 5000; i++) {
		snprintf(name, sizeof(name), "c%u", i);
		cr_assert_eq(count(ag, name, "s", 1, 0), 1);
		cr_assert_leq(lgr_agent_counters(ag), 1000);
	}
	cr_assert_eq(lgr_agent_counters(ag), 1000);
	/* The newest 1000 are all still there, after the table grew and evicted. */
	for (i = 4000; i < 5000; i++) {
		snprintf(name, sizeof(name), "c%u", i);
		cr_assert_eq(count(ag, name, "s", 1, 0), 2, "%s", name);
	}
	cr_assert_eq(count(ag, "c0", "s", 1, 0), 1);
	lgr_agent_free(ag);
}

Test(agent, a_table_of_one_counter_still_counts)
{
	struct lgr_agent *ag = agent_with(NULL, 0, 1);

	cr_assert_eq(count(ag, "a", "s", 1, 0), 1);
	cr_assert_eq(count(ag, "a", "s", 1, 0), 2);
	cr_assert_eq(count(ag, "b", "s", 5, 0), 5);
	cr_assert_eq(count(ag, "a", "s", 1, 0), 1);
	cr_assert_eq(lgr_agent_counters(ag), 1);
	lgr_agent_free(ag);
}
