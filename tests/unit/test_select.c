/*
 * test_select.c: the subscription registry and matcher: every selector kind, shard groups (random and
 * deterministic), duplicates, removal, egress request validation, and the crc64 the sharding relies on.
 */
#include <criterion/criterion.h>

#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lgr_crc64.h"
#include "lgr_select.h"

#define MAX_SUBSCRIBERS 16

/* Subscribers are small integers cast to pointers; a tally counts deliveries per subscriber. */
#define SUBSCRIBER(i) ((void *)(uintptr_t)(i))

struct tally {
	unsigned long n[MAX_SUBSCRIBERS];
	unsigned long total;
	uintptr_t last;
};

static void count(void *subscriber, void *ud)
{
	struct tally *t = ud;
	uintptr_t id = (uintptr_t)subscriber;

	cr_assert_lt(id, MAX_SUBSCRIBERS);
	t->n[id]++;
	t->total++;
	t->last = id;
}

static struct lgr_select *registry(void)
{
	struct lgr_select *reg = NULL;

	cr_assert_eq(lgr_select_new(&reg), LGR_OK);
	cr_assert_not_null(reg);
	return reg;
}

static struct lgr_select_sub *add(struct lgr_select *reg, uintptr_t subscriber, const struct lgr_selector *sel,
	const char *shard_id, const char *dname)
{
	struct lgr_select_sub *sub = NULL;

	cr_assert_eq(lgr_select_add(reg, SUBSCRIBER(subscriber), sel, shard_id, dname, &sub), LGR_OK);
	cr_assert_not_null(sub);
	return sub;
}

static struct lgr_env *env_of(enum lgr_env_type type, const char *source)
{
	struct lgr_env *env = lgr_env_new();
	int rc = LGR_OK;

	cr_assert_not_null(env);
	if (source != NULL)
		rc = lgr_env_set_source_id(env, source);
	switch (type) {
	case LGR_ENV_LOG: rc |= lgr_env_set_log(env, "x", 1, LOGGREGATOR__V2__LOG__TYPE__OUT); break;
	case LGR_ENV_COUNTER: rc |= lgr_env_set_counter(env, "requests", 1, 0); break;
	case LGR_ENV_GAUGE: rc |= lgr_env_set_gauge(env) | lgr_env_add_metric(env, "cpu", "percentage", 1.5); break;
	case LGR_ENV_TIMER: rc |= lgr_env_set_timer(env, "http", 1, 2); break;
	case LGR_ENV_EVENT: rc |= lgr_env_set_event(env, "title", "body"); break;
	default: break;
	}
	cr_assert_eq(rc, LGR_OK);
	return env;
}

static struct lgr_env *counter_env(const char *source, const char *name)
{
	struct lgr_env *env = lgr_env_new();

	cr_assert_not_null(env);
	cr_assert_eq(lgr_env_set_source_id(env, source), LGR_OK);
	cr_assert_eq(lgr_env_set_counter(env, name, 1, 0), LGR_OK);
	return env;
}

/* A gauge carrying the metrics named in the NULL-terminated list. */
static struct lgr_env *gauge_env(const char *source, const char *const *names)
{
	struct lgr_env *env = lgr_env_new();

	cr_assert_not_null(env);
	cr_assert_eq(lgr_env_set_source_id(env, source), LGR_OK);
	cr_assert_eq(lgr_env_set_gauge(env), LGR_OK);
	for (size_t i = 0; names[i] != NULL; i++)
		cr_assert_eq(lgr_env_add_metric(env, names[i], "unit", (double)i), LGR_OK);
	return env;
}

static unsigned long match_total(struct lgr_select *reg, struct lgr_env *env)
{
	struct tally t = {0};
	size_t n = lgr_select_match(reg, env, count, &t);

	cr_assert_eq(n, t.total, "match returns the number of deliveries");
	return t.total;
}

static const enum lgr_env_type all_types[] = {
	LGR_ENV_LOG, LGR_ENV_COUNTER, LGR_ENV_GAUGE, LGR_ENV_TIMER, LGR_ENV_EVENT};

/* --- crc64 ---------------------------------------------------------------------------------------------------- */

Test(crc64, matches_the_published_check_value_of_crc64_ecma_as_go_computes_it)
{
	cr_assert_eq(lgr_crc64("123456789", 9), UINT64_C(0x995DC9BBDF1939FA));
	cr_assert_eq(LGR_CRC64_CHECK, UINT64_C(0x995DC9BBDF1939FA));
	cr_assert_eq(lgr_crc64_str("123456789"), UINT64_C(0x995DC9BBDF1939FA));
	cr_assert_eq(lgr_crc64(NULL, 0), 0, "Go: crc64.Checksum(nil, ECMA) == 0");
	cr_assert_eq(lgr_crc64_str("a"), UINT64_C(0x330284772E652B05));
}

Test(crc64, update_continues_a_checksum_across_any_split)
{
	const char *text = "The quick brown fox jumps over the lazy dog, twice over the lazy dog";
	size_t len = strlen(text);
	uint64_t whole = lgr_crc64(text, len);

	for (size_t k = 0; k <= len; k++)
		cr_assert_eq(lgr_crc64_update(lgr_crc64(text, k), text + k, len - k), whole, "split at %zu", k);
	cr_assert_neq(whole, lgr_crc64(text, len - 1));
}

/* --- selector kinds ------------------------------------------------------------------------------------------- */

Test(select, each_type_selector_matches_only_envelopes_of_its_type)
{
	for (size_t s = 0; s < 5; s++) {
		struct lgr_select *reg = registry();
		struct lgr_selector sel = {.type = all_types[s]};

		add(reg, 1, &sel, NULL, NULL);
		for (size_t e = 0; e < 5; e++) {
			struct lgr_env *env = env_of(all_types[e], "app");

			cr_assert_eq(match_total(reg, env), s == e ? 1 : 0, "selector %s, envelope %s",
				lgr_env_type_name(all_types[s]), lgr_env_type_name(all_types[e]));
			lgr_env_unref(env);
		}
		lgr_select_free(reg);
	}
}

Test(select, an_envelope_without_a_message_matches_nothing)
{
	struct lgr_select *reg = registry();
	struct lgr_env *env = env_of(LGR_ENV_NONE, "app");

	for (size_t s = 0; s < 5; s++) {
		struct lgr_selector sel = {.type = all_types[s]};

		add(reg, 1, &sel, NULL, NULL);
	}
	cr_assert_eq(match_total(reg, env), 0);
	lgr_env_unref(env);
	lgr_select_free(reg);
}

Test(select, an_empty_source_id_selects_every_source)
{
	struct lgr_select *reg = registry();
	struct lgr_selector sel = {.source_id = "", .type = LGR_ENV_LOG};
	struct lgr_selector sel_null = {.source_id = NULL, .type = LGR_ENV_LOG};
	const char *sources[] = {"app-1", "app-2", "", "doppler"};

	add(reg, 1, &sel, NULL, NULL);
	add(reg, 2, &sel_null, NULL, NULL);
	for (size_t i = 0; i < 4; i++) {
		struct lgr_env *env = env_of(LGR_ENV_LOG, sources[i]);
		struct tally t = {0};

		lgr_select_match(reg, env, count, &t);
		cr_assert_eq(t.n[1], 1, "source \"%s\"", sources[i]);
		cr_assert_eq(t.n[2], 1, "NULL is the same as \"\"");
		lgr_env_unref(env);
	}
	lgr_select_free(reg);
}

Test(select, a_source_id_selects_only_that_source)
{
	struct lgr_select *reg = registry();
	struct lgr_selector a = {.source_id = "app-a", .type = LGR_ENV_LOG};
	struct lgr_selector b = {.source_id = "app-b", .type = LGR_ENV_LOG};
	struct lgr_env *ea = env_of(LGR_ENV_LOG, "app-a");
	struct lgr_env *eb = env_of(LGR_ENV_LOG, "app-b");
	struct lgr_env *ec = env_of(LGR_ENV_LOG, "app-a2");
	struct lgr_env *none = env_of(LGR_ENV_LOG, "");
	struct tally t = {0};

	add(reg, 1, &a, NULL, NULL);
	add(reg, 2, &b, NULL, NULL);
	lgr_select_match(reg, ea, count, &t);
	cr_assert_eq(t.total, 1);
	cr_assert_eq(t.n[1], 1);
	memset(&t, 0, sizeof(t));
	lgr_select_match(reg, eb, count, &t);
	cr_assert_eq(t.total, 1);
	cr_assert_eq(t.n[2], 1);
	cr_assert_eq(match_total(reg, ec), 0, "a longer source id is a different source");
	cr_assert_eq(match_total(reg, none), 0, "an envelope without a source matches only any-source selectors");
	lgr_env_unref(ea);
	lgr_env_unref(eb);
	lgr_env_unref(ec);
	lgr_env_unref(none);
	lgr_select_free(reg);
}

Test(select, a_counter_name_matches_exactly_and_an_empty_name_matches_every_counter)
{
	struct lgr_select *reg = registry();
	struct lgr_selector named = {.type = LGR_ENV_COUNTER, .counter_name = "egress"};
	struct lgr_selector any = {.type = LGR_ENV_COUNTER, .counter_name = ""};
	const char *names[] = {"egress", "egres", "egress2", "Egress", "ingress", ""};

	add(reg, 1, &named, NULL, NULL);
	add(reg, 2, &any, NULL, NULL);
	for (size_t i = 0; i < 6; i++) {
		struct lgr_env *env = counter_env("doppler", names[i]);
		struct tally t = {0};

		lgr_select_match(reg, env, count, &t);
		cr_assert_eq(t.n[1], i == 0 ? 1 : 0, "named selector, counter \"%s\"", names[i]);
		cr_assert_eq(t.n[2], 1, "any-counter selector, counter \"%s\"", names[i]);
		lgr_env_unref(env);
	}
	lgr_select_free(reg);
}

Test(select, gauge_names_match_the_exact_set_only)
{
	struct lgr_select *reg = registry();
	const char *set[] = {"memory", "cpu"};
	const char *with_dup[] = {"cpu", "memory", "cpu"};
	struct lgr_selector sel = {.type = LGR_ENV_GAUGE, .gauge_names = set, .n_gauge_names = 2};
	struct lgr_selector dup = {.type = LGR_ENV_GAUGE, .gauge_names = with_dup, .n_gauge_names = 3};
	struct lgr_selector any = {.type = LGR_ENV_GAUGE};
	struct {
		const char *names[4];
		bool match;
		const char *what;
	} cases[] = {
		{{"cpu", "memory", NULL}, true, "the set"},
		{{"memory", "cpu", NULL}, true, "the set in another order"},
		{{"cpu", NULL}, false, "a subset"},
		{{"cpu", "memory", "disk", NULL}, false, "a superset"},
		{{"cpu", "disk", NULL}, false, "another set of the same size"},
		{{"cpu", "cpu", NULL}, false, "a repeated key"},
		{{NULL}, false, "an empty gauge"},
	};

	add(reg, 1, &sel, NULL, NULL);
	add(reg, 2, &dup, NULL, NULL);
	add(reg, 3, &any, NULL, NULL);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct lgr_env *env = gauge_env("app", cases[i].names);
		struct tally t = {0};

		lgr_select_match(reg, env, count, &t);
		cr_assert_eq(t.n[1], cases[i].match ? 1 : 0, "%s", cases[i].what);
		cr_assert_eq(t.n[2], cases[i].match ? 1 : 0, "%s: a repeated selector name counts once", cases[i].what);
		cr_assert_eq(t.n[3], 1, "%s: an empty name list selects every gauge", cases[i].what);
		lgr_env_unref(env);
	}
	lgr_select_free(reg);
}

Test(select, the_name_level_and_the_source_level_combine)
{
	struct lgr_select *reg = registry();
	struct lgr_selector sel = {.source_id = "doppler", .type = LGR_ENV_COUNTER, .counter_name = "egress"};
	struct lgr_env *hit = counter_env("doppler", "egress");
	struct lgr_env *other_source = counter_env("metron", "egress");
	struct lgr_env *other_name = counter_env("doppler", "ingress");

	add(reg, 1, &sel, NULL, NULL);
	cr_assert_eq(match_total(reg, hit), 1);
	cr_assert_eq(match_total(reg, other_source), 0);
	cr_assert_eq(match_total(reg, other_name), 0);
	lgr_env_unref(hit);
	lgr_env_unref(other_source);
	lgr_env_unref(other_name);
	lgr_select_free(reg);
}

Test(select, a_subscriber_with_two_matching_selectors_gets_the_envelope_twice)
{
	struct lgr_select *reg = registry();
	struct lgr_selector any = {.type = LGR_ENV_LOG};
	struct lgr_selector app = {.source_id = "app", .type = LGR_ENV_LOG};
	struct lgr_env *env = env_of(LGR_ENV_LOG, "app");
	struct tally t = {0};

	add(reg, 1, &any, NULL, NULL);
	add(reg, 1, &app, NULL, NULL);
	add(reg, 2, &any, NULL, NULL);
	add(reg, 2, &any, NULL, NULL); /* the very same selector twice */
	lgr_select_match(reg, env, count, &t);
	cr_assert_eq(t.n[1], 2);
	cr_assert_eq(t.n[2], 2);
	lgr_env_unref(env);
	lgr_select_free(reg);
}

/* --- shard groups --------------------------------------------------------------------------------------------- */

Test(select, a_shard_group_of_three_splits_envelopes_evenly_one_member_each)
{
	struct lgr_select *reg = registry();
	struct lgr_selector sel = {.type = LGR_ENV_LOG};
	struct lgr_env *env = env_of(LGR_ENV_LOG, "app");
	struct tally t = {0};

	for (uintptr_t i = 1; i <= 3; i++)
		add(reg, i, &sel, "group-a", NULL);
	for (int i = 0; i < 30000; i++) {
		size_t before = t.total;

		cr_assert_eq(lgr_select_match(reg, env, count, &t), 1);
		cr_assert_eq(t.total, before + 1, "exactly one member per envelope");
	}
	for (int i = 1; i <= 3; i++)
		cr_assert(t.n[i] >= 9500 && t.n[i] <= 10500, "member %d got %lu of 30000", i, t.n[i]);
	cr_log_info("split %lu / %lu / %lu", t.n[1], t.n[2], t.n[3]);
	lgr_env_unref(env);
	lgr_select_free(reg);
}

Test(select, a_group_and_an_unsharded_subscriber_both_receive)
{
	struct lgr_select *reg = registry();
	struct lgr_selector sel = {.type = LGR_ENV_LOG};
	struct lgr_env *env = env_of(LGR_ENV_LOG, "app");
	struct tally t = {0};

	add(reg, 1, &sel, "g", NULL);
	add(reg, 2, &sel, "g", NULL);
	add(reg, 3, &sel, NULL, NULL);
	add(reg, 4, &sel, "", NULL);
	for (int i = 0; i < 1000; i++)
		cr_assert_eq(lgr_select_match(reg, env, count, &t), 3);
	cr_assert_eq(t.n[1] + t.n[2], 1000);
	cr_assert_gt(t.n[1], 0);
	cr_assert_gt(t.n[2], 0);
	cr_assert_eq(t.n[3], 1000);
	cr_assert_eq(t.n[4], 1000);
	lgr_env_unref(env);
	lgr_select_free(reg);
}

Test(select, groups_are_per_shard_id_and_per_filter_path)
{
	struct lgr_select *reg = registry();
	struct lgr_selector any = {.type = LGR_ENV_LOG};
	struct lgr_selector app = {.source_id = "app", .type = LGR_ENV_LOG};
	struct lgr_env *env = env_of(LGR_ENV_LOG, "app");
	struct tally t = {0};

	add(reg, 1, &any, "g1", NULL);
	add(reg, 2, &any, "g1", NULL);
	add(reg, 3, &any, "g2", NULL);
	add(reg, 4, &app, "g1", NULL); /* same shard id, other path: its own group */
	for (int i = 0; i < 200; i++)
		cr_assert_eq(lgr_select_match(reg, env, count, &t), 3);
	cr_assert_eq(t.n[1] + t.n[2], 200);
	cr_assert_eq(t.n[3], 200);
	cr_assert_eq(t.n[4], 200);
	lgr_env_unref(env);
	lgr_select_free(reg);
}

/* The member the real router picks: members ordered by name, hash modulo their number. */
static uintptr_t expected_member(uint64_t hash, const uintptr_t *by_name, size_t n)
{
	return by_name[hash % n];
}

Test(select, deterministic_name_sends_each_counter_name_to_the_same_member)
{
	struct lgr_select *reg = registry();
	struct lgr_selector sel = {.type = LGR_ENV_COUNTER};
	const uintptr_t by_name[] = {2, 3, 1}; /* alpha, bravo, charlie */
	unsigned long used[4] = {0};

	/* Added out of name order: the group must order its members by name. */
	add(reg, 1, &sel, "nozzles", "charlie");
	add(reg, 2, &sel, "nozzles", "alpha");
	add(reg, 3, &sel, "nozzles", "bravo");
	for (int i = 0; i < 300; i++) {
		char name[32];
		struct lgr_env *env;
		uintptr_t want;

		snprintf(name, sizeof(name), "metric.%d", i);
		env = counter_env("app", name);
		want = expected_member(lgr_crc64_str(name), by_name, 3);
		for (int again = 0; again < 5; again++) {
			struct tally t = {0};

			cr_assert_eq(lgr_select_match(reg, env, count, &t), 1);
			cr_assert_eq(t.last, want, "counter %s went to %lu, not %lu", name, (unsigned long)t.last,
				(unsigned long)want);
		}
		used[want]++;
		lgr_env_unref(env);
	}
	cr_assert(used[1] > 0 && used[2] > 0 && used[3] > 0, "the names spread over all members");
	lgr_select_free(reg);
}

Test(select, deterministic_gauges_route_by_the_sum_of_the_crc64_of_their_names)
{
	struct lgr_select *reg = registry();
	struct lgr_selector sel = {.type = LGR_ENV_GAUGE};
	const uintptr_t by_name[] = {1, 2, 3, 4, 5};
	const char *sets[][4] = {
		{"cpu", NULL},
		{"cpu", "memory", NULL},
		{"memory", "cpu", NULL},
		{"disk", "memory", "cpu", NULL},
		{"a", "b", "c", NULL},
		{"x", NULL},
	};

	for (uintptr_t i = 1; i <= 5; i++) {
		char dname[8];

		snprintf(dname, sizeof(dname), "m%lu", (unsigned long)i);
		add(reg, i, &sel, "gauges", dname);
	}
	for (size_t s = 0; s < sizeof(sets) / sizeof(sets[0]); s++) {
		struct lgr_env *env = gauge_env("app", sets[s]);
		uint64_t sum = 0;
		struct tally t = {0};

		for (size_t k = 0; sets[s][k] != NULL; k++)
			sum += lgr_crc64_str(sets[s][k]); /* wraps, like Go's uint64 */
		for (int again = 0; again < 3; again++)
			lgr_select_match(reg, env, count, &t);
		cr_assert_eq(t.total, 3);
		cr_assert_eq(t.n[expected_member(sum, by_name, 5)], 3, "set %zu", s);
		lgr_env_unref(env);
	}
	lgr_select_free(reg);
}

Test(select, one_named_member_makes_the_whole_group_deterministic)
{
	struct lgr_select *reg = registry();
	struct lgr_selector sel = {.type = LGR_ENV_COUNTER};
	const uintptr_t by_name[] = {1, 2}; /* "" sorts before "z" */
	struct lgr_env *env = counter_env("app", "requests");
	struct tally t = {0};

	add(reg, 1, &sel, "g", NULL);
	add(reg, 2, &sel, "g", "z");
	for (int i = 0; i < 100; i++)
		lgr_select_match(reg, env, count, &t);
	cr_assert_eq(t.n[expected_member(lgr_crc64_str("requests"), by_name, 2)], 100);
	lgr_env_unref(env);
	lgr_select_free(reg);
}

Test(select, deterministic_groups_still_pick_at_random_for_logs)
{
	struct lgr_select *reg = registry();
	struct lgr_selector sel = {.type = LGR_ENV_LOG};
	struct lgr_env *env = env_of(LGR_ENV_LOG, "app");
	struct tally t = {0};

	add(reg, 1, &sel, "g", "a");
	add(reg, 2, &sel, "g", "b");
	for (int i = 0; i < 2000; i++)
		cr_assert_eq(lgr_select_match(reg, env, count, &t), 1);
	cr_assert(t.n[1] > 800 && t.n[2] > 800, "split %lu / %lu", t.n[1], t.n[2]);
	lgr_env_unref(env);
	lgr_select_free(reg);
}

/* --- removal and scale ---------------------------------------------------------------------------------------- */

Test(select, a_removed_subscription_receives_nothing_more)
{
	struct lgr_select *reg = registry();
	struct lgr_selector sel = {.source_id = "app", .type = LGR_ENV_LOG};
	struct lgr_env *env = env_of(LGR_ENV_LOG, "app");
	struct lgr_select_sub *a = add(reg, 1, &sel, NULL, NULL);
	struct lgr_select_sub *b = add(reg, 2, &sel, NULL, NULL);
	struct tally t = {0};

	cr_assert_eq(lgr_select_count(reg), 2);
	lgr_select_remove(reg, a);
	cr_assert_eq(lgr_select_count(reg), 1);
	lgr_select_match(reg, env, count, &t);
	cr_assert_eq(t.n[1], 0);
	cr_assert_eq(t.n[2], 1);
	lgr_select_remove(reg, b);
	lgr_select_remove(reg, NULL);
	cr_assert_eq(lgr_select_count(reg), 0);
	cr_assert_eq(match_total(reg, env), 0);
	add(reg, 3, &sel, NULL, NULL); /* the path can be used again after it was emptied */
	cr_assert_eq(match_total(reg, env), 1);
	lgr_env_unref(env);
	lgr_select_free(reg);
}

Test(select, removing_a_group_member_leaves_the_rest_of_the_group_working)
{
	struct lgr_select *reg = registry();
	struct lgr_selector sel = {.type = LGR_ENV_COUNTER};
	struct lgr_env *env = counter_env("app", "requests");
	struct lgr_select_sub *subs[3];
	struct tally t = {0};

	subs[0] = add(reg, 1, &sel, "g", "a");
	subs[1] = add(reg, 2, &sel, "g", "b");
	subs[2] = add(reg, 3, &sel, "g", "c");
	lgr_select_remove(reg, subs[1]);
	{
		const uintptr_t by_name[] = {1, 3};

		for (int i = 0; i < 50; i++)
			cr_assert_eq(lgr_select_match(reg, env, count, &t), 1);
		cr_assert_eq(t.n[expected_member(lgr_crc64_str("requests"), by_name, 2)], 50);
	}
	lgr_select_remove(reg, subs[0]);
	memset(&t, 0, sizeof(t));
	lgr_select_match(reg, env, count, &t);
	cr_assert_eq(t.n[3], 1);
	lgr_env_unref(env);
	lgr_select_free(reg);
}

Test(select, ten_thousand_subscriptions_still_deliver_to_exactly_the_right_one)
{
	struct lgr_select *reg = registry();
	static struct lgr_select_sub *subs[10000];
	char source[32];

	for (int i = 0; i < 10000; i++) {
		struct lgr_selector sel = {.source_id = source, .type = LGR_ENV_LOG};

		snprintf(source, sizeof(source), "app-%d", i);
		subs[i] = add(reg, (uintptr_t)(i % MAX_SUBSCRIBERS), &sel, NULL, NULL);
	}
	cr_assert_eq(lgr_select_count(reg), 10000);
	for (int i = 0; i < 10000; i += 997) {
		struct lgr_env *env;
		struct tally t = {0};

		snprintf(source, sizeof(source), "app-%d", i);
		env = env_of(LGR_ENV_LOG, source);
		lgr_select_match(reg, env, count, &t);
		cr_assert_eq(t.total, 1, "source %s", source);
		cr_assert_eq(t.last, (uintptr_t)(i % MAX_SUBSCRIBERS));
		lgr_env_unref(env);
	}
	for (int i = 0; i < 10000; i++)
		lgr_select_remove(reg, subs[i]);
	cr_assert_eq(lgr_select_count(reg), 0);
	lgr_select_free(reg);
}

Test(select, add_rejects_a_selector_without_a_valid_type_or_with_too_many_names)
{
	struct lgr_select *reg = registry();
	struct lgr_selector none = {.type = LGR_ENV_NONE};
	struct lgr_selector bogus = {.type = (enum lgr_env_type)42};
	static const char *names[LGR_SELECT_MAX_GAUGE_NAMES + 1];
	struct lgr_selector big = {.type = LGR_ENV_GAUGE, .gauge_names = names, .n_gauge_names = 0};
	struct lgr_select_sub *sub = SUBSCRIBER(1);

	for (size_t i = 0; i <= LGR_SELECT_MAX_GAUGE_NAMES; i++)
		names[i] = "n";
	cr_assert_eq(lgr_select_add(reg, SUBSCRIBER(1), &none, NULL, NULL, &sub), LGR_EINVAL);
	cr_assert_null(sub);
	cr_assert_eq(lgr_select_add(reg, SUBSCRIBER(1), &bogus, NULL, NULL, &sub), LGR_EINVAL);
	big.n_gauge_names = LGR_SELECT_MAX_GAUGE_NAMES + 1;
	cr_assert_eq(lgr_select_add(reg, SUBSCRIBER(1), &big, NULL, NULL, &sub), LGR_ELIMIT);
	big.n_gauge_names = LGR_SELECT_MAX_GAUGE_NAMES; /* at the bound: fine (and all the same name) */
	cr_assert_eq(lgr_select_add(reg, SUBSCRIBER(1), &big, NULL, NULL, &sub), LGR_OK);
	cr_assert_eq(lgr_select_count(reg), 1);
	lgr_select_free(reg);
}

/* --- egress requests ------------------------------------------------------------------------------------------ */

Test(select_req, empty_selectors_are_rejected_with_the_rlp_message)
{
	Loggregator__V2__EgressBatchRequest req = LOGGREGATOR__V2__EGRESS_BATCH_REQUEST__INIT;
	struct lgr_select_req out;
	const char *msg = NULL;

	cr_assert_eq(lgr_select_req_parse(&req, &out, &msg), LGR_EINVAL);
	cr_assert_str_eq(msg, "Selectors cannot be empty");
	cr_assert_eq(out.n_selectors, 0);
	cr_assert_null(out.selectors);
	lgr_select_req_cleanup(&out);
}

Test(select_req, a_selector_without_a_type_is_rejected)
{
	Loggregator__V2__EgressBatchRequest req = LOGGREGATOR__V2__EGRESS_BATCH_REQUEST__INIT;
	Loggregator__V2__Selector typed = LOGGREGATOR__V2__SELECTOR__INIT;
	Loggregator__V2__Selector untyped = LOGGREGATOR__V2__SELECTOR__INIT;
	Loggregator__V2__LogSelector log = LOGGREGATOR__V2__LOG_SELECTOR__INIT;
	Loggregator__V2__Selector *list[] = {&typed, &untyped};
	struct lgr_select_req out;
	const char *msg = NULL;

	typed.message_case = LOGGREGATOR__V2__SELECTOR__MESSAGE_LOG;
	typed.log = &log;
	untyped.source_id = "app";
	req.selectors = list;
	req.n_selectors = 2;
	cr_assert_eq(lgr_select_req_parse(&req, &out, &msg), LGR_EINVAL);
	cr_assert_str_eq(msg, "Selectors must have a Message");
	cr_assert_null(out.selectors);

	req.n_selectors = 0; /* an untyped legacy selector is no better */
	req.legacy_selector = &untyped;
	cr_assert_eq(lgr_select_req_parse(&req, &out, &msg), LGR_EINVAL);
	cr_assert_str_eq(msg, "Selectors must have a Message");
}

Test(select_req, the_legacy_selector_counts_only_when_selectors_is_empty)
{
	Loggregator__V2__EgressBatchRequest req = LOGGREGATOR__V2__EGRESS_BATCH_REQUEST__INIT;
	Loggregator__V2__Selector legacy = LOGGREGATOR__V2__SELECTOR__INIT;
	Loggregator__V2__Selector sel = LOGGREGATOR__V2__SELECTOR__INIT;
	Loggregator__V2__LogSelector log = LOGGREGATOR__V2__LOG_SELECTOR__INIT;
	Loggregator__V2__TimerSelector timer = LOGGREGATOR__V2__TIMER_SELECTOR__INIT;
	Loggregator__V2__Selector *list[] = {&sel};
	struct lgr_select_req out;
	const char *msg = "unchanged";

	legacy.source_id = "legacy-app";
	legacy.message_case = LOGGREGATOR__V2__SELECTOR__MESSAGE_LOG;
	legacy.log = &log;
	sel.message_case = LOGGREGATOR__V2__SELECTOR__MESSAGE_TIMER;
	sel.timer = &timer;
	req.legacy_selector = &legacy;

	cr_assert_eq(lgr_select_req_parse(&req, &out, &msg), LGR_OK);
	cr_assert_null(msg);
	cr_assert_eq(out.n_selectors, 1);
	cr_assert_eq(out.selectors[0].type, LGR_ENV_LOG);
	cr_assert_str_eq(out.selectors[0].source_id, "legacy-app");
	lgr_select_req_cleanup(&out);

	req.selectors = list;
	req.n_selectors = 1;
	cr_assert_eq(lgr_select_req_parse(&req, &out, &msg), LGR_OK);
	cr_assert_eq(out.n_selectors, 1);
	cr_assert_eq(out.selectors[0].type, LGR_ENV_TIMER);
	cr_assert_str_eq(out.selectors[0].source_id, "");
	lgr_select_req_cleanup(&out);
}

Test(select_req, every_selector_kind_and_the_request_fields_are_carried_over)
{
	Loggregator__V2__EgressBatchRequest req = LOGGREGATOR__V2__EGRESS_BATCH_REQUEST__INIT;
	Loggregator__V2__Selector s[5] = {LOGGREGATOR__V2__SELECTOR__INIT, LOGGREGATOR__V2__SELECTOR__INIT,
		LOGGREGATOR__V2__SELECTOR__INIT, LOGGREGATOR__V2__SELECTOR__INIT, LOGGREGATOR__V2__SELECTOR__INIT};
	Loggregator__V2__LogSelector log = LOGGREGATOR__V2__LOG_SELECTOR__INIT;
	Loggregator__V2__CounterSelector counter = LOGGREGATOR__V2__COUNTER_SELECTOR__INIT;
	Loggregator__V2__GaugeSelector gauge = LOGGREGATOR__V2__GAUGE_SELECTOR__INIT;
	Loggregator__V2__TimerSelector timer = LOGGREGATOR__V2__TIMER_SELECTOR__INIT;
	Loggregator__V2__EventSelector event = LOGGREGATOR__V2__EVENT_SELECTOR__INIT;
	Loggregator__V2__Selector *list[] = {&s[0], &s[1], &s[2], &s[3], &s[4]};
	char *gauge_names[] = {"cpu", "memory"};
	struct lgr_select_req out;

	s[0].message_case = LOGGREGATOR__V2__SELECTOR__MESSAGE_LOG;
	s[0].log = &log;
	s[0].source_id = "app";
	s[1].message_case = LOGGREGATOR__V2__SELECTOR__MESSAGE_COUNTER;
	s[1].counter = &counter;
	counter.name = "egress";
	s[2].message_case = LOGGREGATOR__V2__SELECTOR__MESSAGE_GAUGE;
	s[2].gauge = &gauge;
	gauge.names = gauge_names;
	gauge.n_names = 2;
	s[3].message_case = LOGGREGATOR__V2__SELECTOR__MESSAGE_TIMER;
	s[3].timer = &timer;
	s[4].message_case = LOGGREGATOR__V2__SELECTOR__MESSAGE_EVENT;
	s[4].event = &event;
	req.selectors = list;
	req.n_selectors = 5;
	req.shard_id = "shard";
	req.deterministic_name = "det";
	req.use_preferred_tags = 1;

	cr_assert_eq(lgr_select_req_parse(&req, &out, NULL), LGR_OK);
	cr_assert_eq(out.n_selectors, 5);
	cr_assert_str_eq(out.shard_id, "shard");
	cr_assert_str_eq(out.deterministic_name, "det");
	cr_assert(out.use_preferred_tags);
	cr_assert_eq(out.selectors[0].type, LGR_ENV_LOG);
	cr_assert_str_eq(out.selectors[0].source_id, "app");
	cr_assert_eq(out.selectors[1].type, LGR_ENV_COUNTER);
	cr_assert_str_eq(out.selectors[1].counter_name, "egress");
	cr_assert_eq(out.selectors[2].type, LGR_ENV_GAUGE);
	cr_assert_eq(out.selectors[2].n_gauge_names, 2);
	cr_assert_str_eq(out.selectors[2].gauge_names[1], "memory");
	cr_assert_eq(out.selectors[3].type, LGR_ENV_TIMER);
	cr_assert_eq(out.selectors[4].type, LGR_ENV_EVENT);
	lgr_select_req_cleanup(&out);
	cr_assert_null(out.selectors);
}

Test(select_req, too_many_selectors_are_refused_before_anything_is_allocated)
{
	Loggregator__V2__EgressBatchRequest req = LOGGREGATOR__V2__EGRESS_BATCH_REQUEST__INIT;
	static Loggregator__V2__Selector *list[LGR_SELECT_MAX_SELECTORS + 1];
	Loggregator__V2__Selector sel = LOGGREGATOR__V2__SELECTOR__INIT;
	Loggregator__V2__LogSelector log = LOGGREGATOR__V2__LOG_SELECTOR__INIT;
	struct lgr_select_req out;
	const char *msg = NULL;

	sel.message_case = LOGGREGATOR__V2__SELECTOR__MESSAGE_LOG;
	sel.log = &log;
	for (size_t i = 0; i <= LGR_SELECT_MAX_SELECTORS; i++)
		list[i] = &sel;
	req.selectors = list;
	req.n_selectors = LGR_SELECT_MAX_SELECTORS + 1;
	cr_assert_eq(lgr_select_req_parse(&req, &out, &msg), LGR_ELIMIT);
	cr_assert_not_null(msg);
	req.n_selectors = LGR_SELECT_MAX_SELECTORS;
	cr_assert_eq(lgr_select_req_parse(&req, &out, &msg), LGR_OK);
	lgr_select_req_cleanup(&out);
}

Test(select_req, the_unbatched_request_is_parsed_the_same_way)
{
	Loggregator__V2__EgressRequest req = LOGGREGATOR__V2__EGRESS_REQUEST__INIT;
	Loggregator__V2__Selector sel = LOGGREGATOR__V2__SELECTOR__INIT;
	Loggregator__V2__EventSelector event = LOGGREGATOR__V2__EVENT_SELECTOR__INIT;
	struct lgr_select_req out;
	const char *msg = NULL;

	cr_assert_eq(lgr_select_req_parse_single(&req, &out, &msg), LGR_EINVAL);
	cr_assert_str_eq(msg, "Selectors cannot be empty");
	sel.message_case = LOGGREGATOR__V2__SELECTOR__MESSAGE_EVENT;
	sel.event = &event;
	req.legacy_selector = &sel;
	cr_assert_eq(lgr_select_req_parse_single(&req, &out, &msg), LGR_OK);
	cr_assert_eq(out.n_selectors, 1);
	cr_assert_eq(out.selectors[0].type, LGR_ENV_EVENT);
	lgr_select_req_cleanup(&out);
}

Test(select_req, a_decoded_request_subscribes_every_selector_and_matches)
{
	Loggregator__V2__EgressBatchRequest req = LOGGREGATOR__V2__EGRESS_BATCH_REQUEST__INIT;
	Loggregator__V2__EgressBatchRequest *decoded;
	Loggregator__V2__Selector s[2] = {LOGGREGATOR__V2__SELECTOR__INIT, LOGGREGATOR__V2__SELECTOR__INIT};
	Loggregator__V2__LogSelector log = LOGGREGATOR__V2__LOG_SELECTOR__INIT;
	Loggregator__V2__CounterSelector counter = LOGGREGATOR__V2__COUNTER_SELECTOR__INIT;
	Loggregator__V2__Selector *list[] = {&s[0], &s[1]};
	struct lgr_select_sub *subs[2] = {0};
	struct lgr_select *reg = registry();
	struct lgr_select_req out;
	struct lgr_env *logenv = env_of(LGR_ENV_LOG, "app");
	struct lgr_env *cenv = counter_env("other", "egress");
	uint8_t buf[256];
	size_t len;

	s[0].message_case = LOGGREGATOR__V2__SELECTOR__MESSAGE_LOG;
	s[0].log = &log;
	s[0].source_id = "app";
	s[1].message_case = LOGGREGATOR__V2__SELECTOR__MESSAGE_COUNTER;
	s[1].counter = &counter;
	counter.name = "egress";
	req.selectors = list;
	req.n_selectors = 2;
	cr_assert_lt(loggregator__v2__egress_batch_request__get_packed_size(&req), sizeof(buf));
	len = loggregator__v2__egress_batch_request__pack(&req, buf);
	decoded = loggregator__v2__egress_batch_request__unpack(NULL, len, buf);
	cr_assert_not_null(decoded);

	cr_assert_eq(lgr_select_req_parse(decoded, &out, NULL), LGR_OK);
	cr_assert_eq(lgr_select_add_req(reg, SUBSCRIBER(7), &out, subs), LGR_OK);
	cr_assert_eq(lgr_select_count(reg), 2);
	lgr_select_req_cleanup(&out);
	loggregator__v2__egress_batch_request__free_unpacked(decoded, NULL); /* the registry keeps its own copies */
	cr_assert_eq(match_total(reg, logenv), 1);
	cr_assert_eq(match_total(reg, cenv), 1);
	lgr_select_remove(reg, subs[0]);
	lgr_select_remove(reg, subs[1]);
	cr_assert_eq(match_total(reg, logenv), 0);
	lgr_env_unref(logenv);
	lgr_env_unref(cenv);
	lgr_select_free(reg);
}

Test(select_req, add_req_adds_all_selectors_or_none)
{
	struct lgr_select *reg = registry();
	struct lgr_selector sels[3] = {{.type = LGR_ENV_LOG}, {.type = LGR_ENV_TIMER}, {.type = LGR_ENV_NONE}};
	struct lgr_select_req req = {.shard_id = "", .deterministic_name = "", .n_selectors = 3, .selectors = sels};
	struct lgr_select_sub *subs[3] = {0};

	cr_assert_eq(lgr_select_add_req(reg, SUBSCRIBER(1), &req, subs), LGR_EINVAL);
	cr_assert_eq(lgr_select_count(reg), 0, "the first two were rolled back");
	cr_assert_null(subs[0]);
	cr_assert_null(subs[1]);
	req.n_selectors = 2;
	cr_assert_eq(lgr_select_add_req(reg, SUBSCRIBER(1), &req, subs), LGR_OK);
	cr_assert_eq(lgr_select_count(reg), 2);
	lgr_select_free(reg);
}

/* --- threads -------------------------------------------------------------------------------------------------- */

struct churn {
	struct lgr_select *reg;
	volatile bool stop;
	unsigned long matches;
	unsigned long delivered;
	unsigned long short_matches; /* matches that missed the permanent subscriber */
};

static void count_any(void *subscriber, void *ud)
{
	(void)subscriber;
	(*(unsigned long *)ud)++;
}

static void *matcher(void *arg)
{
	struct churn *c = arg;
	struct lgr_env *env = env_of(LGR_ENV_LOG, "app");

	while (!__atomic_load_n(&c->stop, __ATOMIC_ACQUIRE)) {
		unsigned long got = 0;

		lgr_select_match(c->reg, env, count_any, &got);
		if (got == 0)
			__atomic_fetch_add(&c->short_matches, 1, __ATOMIC_RELAXED);
		__atomic_fetch_add(&c->delivered, got, __ATOMIC_RELAXED);
		__atomic_fetch_add(&c->matches, 1, __ATOMIC_RELAXED);
	}
	lgr_env_unref(env);
	return NULL;
}

Test(select, matching_while_another_thread_adds_and_removes_is_safe, .timeout = 120)
{
	struct churn c = {.reg = registry()};
	struct lgr_selector sel = {.source_id = "app", .type = LGR_ENV_LOG};
	struct lgr_selector any = {.type = LGR_ENV_LOG};
	pthread_t t[2];

	add(c.reg, 0, &any, NULL, NULL); /* always there: every match delivers at least once */
	pthread_create(&t[0], NULL, matcher, &c);
	pthread_create(&t[1], NULL, matcher, &c);
	while (__atomic_load_n(&c.matches, __ATOMIC_RELAXED) == 0)
		sched_yield(); /* churn only once matching is under way */
	for (int i = 0; i < 3000; i++) {
		struct lgr_select_sub *a = add(c.reg, 1, &sel, (i & 1) ? "g" : NULL, NULL);
		struct lgr_select_sub *b = add(c.reg, 2, &sel, "g", (i & 2) ? "n" : NULL);

		lgr_select_remove(c.reg, a);
		lgr_select_remove(c.reg, b);
	}
	__atomic_store_n(&c.stop, true, __ATOMIC_RELEASE);
	pthread_join(t[0], NULL);
	pthread_join(t[1], NULL);
	cr_assert_eq(lgr_select_count(c.reg), 1);
	cr_assert_gt(c.matches, 0);
	cr_assert_eq(c.short_matches, 0, "every match reached the permanent subscriber");
	cr_assert_geq(c.delivered, c.matches);
	cr_log_info("%lu matches, %lu deliveries", c.matches, c.delivered);
	lgr_select_free(c.reg);
}

/* ---- the subscriber's request ---------------------------------------------------------------------------------- */

Test(select_pack, a_request_has_one_selector_per_type_per_distinct_source_id_and_parses_back)
{
	const char *ids[] = {"app-a", "app-b", "app-a"};
	struct lgr_select_ask ask = {.shard_id = "rlp",
		.deterministic_name = "dn",
		.types = 1u << LGR_ENV_LOG | 1u << LGR_ENV_GAUGE,
		.source_ids = ids,
		.nsource_ids = 3,
		.use_preferred_tags = true};
	Loggregator__V2__EgressBatchRequest *msg;
	struct lgr_select_req req;
	size_t len, logs = 0, gauges = 0;
	uint8_t *buf;

	cr_assert_eq(lgr_select_req_pack(&ask, &buf, &len), LGR_OK);
	msg = loggregator__v2__egress_batch_request__unpack(NULL, len, buf);
	cr_assert_not_null(msg);
	cr_assert_str_eq(msg->shard_id, "rlp");
	cr_assert_str_eq(msg->deterministic_name, "dn");
	cr_assert(msg->use_preferred_tags);
	cr_assert_eq(msg->n_selectors, 4, "2 types x 2 distinct source ids, not %zu", msg->n_selectors);
	for (size_t i = 0; i < msg->n_selectors; i++) {
		const Loggregator__V2__Selector *s = msg->selectors[i];

		cr_assert(strcmp(s->source_id, "app-a") == 0 || strcmp(s->source_id, "app-b") == 0);
		logs += s->message_case == LOGGREGATOR__V2__SELECTOR__MESSAGE_LOG;
		gauges += s->message_case == LOGGREGATOR__V2__SELECTOR__MESSAGE_GAUGE;
	}
	cr_assert_eq(logs, 2);
	cr_assert_eq(gauges, 2);
	cr_assert_eq(lgr_select_req_parse(msg, &req, NULL), LGR_OK, "what a subscriber sends, a router accepts");
	cr_assert_eq(req.n_selectors, 4);
	lgr_select_req_cleanup(&req);
	loggregator__v2__egress_batch_request__free_unpacked(msg, NULL);
	free(buf);
}

Test(select_pack, no_types_and_no_source_ids_ask_for_every_type_of_every_source)
{
	struct lgr_select_ask ask = {0};
	Loggregator__V2__EgressBatchRequest *msg;
	unsigned seen = 0;
	size_t len;
	uint8_t *buf;

	cr_assert_eq(lgr_select_req_pack(&ask, &buf, &len), LGR_OK);
	msg = loggregator__v2__egress_batch_request__unpack(NULL, len, buf);
	cr_assert_not_null(msg);
	cr_assert_str_eq(msg->shard_id, "");
	cr_assert_not(msg->use_preferred_tags);
	cr_assert_eq(msg->n_selectors, 5);
	for (size_t i = 0; i < msg->n_selectors; i++) {
		cr_assert_str_eq(msg->selectors[i]->source_id, "");
		seen |= 1u << msg->selectors[i]->message_case;
	}
	cr_assert_eq(seen, 1u << LOGGREGATOR__V2__SELECTOR__MESSAGE_LOG |
				   1u << LOGGREGATOR__V2__SELECTOR__MESSAGE_COUNTER |
				   1u << LOGGREGATOR__V2__SELECTOR__MESSAGE_GAUGE |
				   1u << LOGGREGATOR__V2__SELECTOR__MESSAGE_TIMER |
				   1u << LOGGREGATOR__V2__SELECTOR__MESSAGE_EVENT);
	loggregator__v2__egress_batch_request__free_unpacked(msg, NULL);
	free(buf);
}
