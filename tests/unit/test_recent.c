/*
 * test_recent.c: the recent-envelope store (lgr_recent): ring order per source id, eviction of the source id
 * written least recently, Log Cache's query semantics (time range [start, end), type mask, limit taken from the
 * oldest or the newest end, order), counters, references released everywhere, and concurrent writers with a reader.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lgr_env.h"
#include "lgr_recent.h"

/* --- helpers ---------------------------------------------------------------------------------------------------- */

static struct lgr_env *mk(const char *sid, int64_t ts, enum lgr_env_type type)
{
	struct lgr_env *e = lgr_env_new();

	cr_assert_not_null(e);
	cr_assert_eq(lgr_env_set_source_id(e, sid), LGR_OK);
	e->pb->timestamp = ts;
	switch (type) {
	case LGR_ENV_LOG: cr_assert_eq(lgr_env_set_log(e, "x", 1, LOGGREGATOR__V2__LOG__TYPE__OUT), LGR_OK); break;
	case LGR_ENV_COUNTER: cr_assert_eq(lgr_env_set_counter(e, "c", 1, 1), LGR_OK); break;
	case LGR_ENV_GAUGE:
		cr_assert_eq(lgr_env_set_gauge(e), LGR_OK);
		cr_assert_eq(lgr_env_add_metric(e, "cpu", "percentage", 1.5), LGR_OK);
		break;
	case LGR_ENV_TIMER: cr_assert_eq(lgr_env_set_timer(e, "t", 1, 2), LGR_OK); break;
	case LGR_ENV_EVENT: cr_assert_eq(lgr_env_set_event(e, "title", "body"), LGR_OK); break;
	default: break;
	}
	return e;
}

/* Adds a new envelope and drops the test's reference, so the store holds the only one. */
static void put(struct lgr_recent *r, const char *sid, int64_t ts, enum lgr_env_type type)
{
	struct lgr_env *e = mk(sid, ts, type);

	cr_assert_eq(lgr_recent_add(r, e), LGR_OK);
	lgr_env_unref(e);
}

struct answer {
	struct lgr_env **e;
	size_t n;
};

static struct answer query(
	struct lgr_recent *r, const char *sid, int64_t start, int64_t end, unsigned mask, size_t limit, bool desc)
{
	struct answer a;

	cr_assert_eq(lgr_recent_query(r, sid, start, end, mask, limit, desc, &a.e, &a.n), LGR_OK);
	return a;
}

/* The answer's timestamps, as "1,2,3". */
static const char *stamps(const struct answer *a)
{
	static char buf[4096];
	size_t i, o = 0;

	buf[0] = '\0';
	for (i = 0; i < a->n; i++)
		o += (size_t)snprintf(
			buf + o, sizeof(buf) - o, "%s%lld", i > 0 ? "," : "", (long long)a->e[i]->pb->timestamp);
	return buf;
}

static void expect(struct lgr_recent *r, const char *sid, int64_t start, int64_t end, unsigned mask, size_t limit,
	bool desc, const char *want)
{
	struct answer a = query(r, sid, start, end, mask, limit, desc);

	cr_expect_str_eq(stamps(&a), want, "query %s [%lld,%lld) mask %x limit %zu desc %d", sid, (long long)start,
		(long long)end, mask, limit, desc);
	lgr_recent_release(a.e, a.n);
}

#define ALL INT64_MIN, INT64_MAX

/* --- construction ----------------------------------------------------------------------------------------------- */

Test(recent, new_refuses_bounds_out_of_range)
{
	struct lgr_recent *r = (void *)1;

	cr_expect_eq(lgr_recent_new(0, 10, &r), LGR_EINVAL);
	cr_expect_null(r);
	cr_expect_eq(lgr_recent_new(10, 0, &r), LGR_EINVAL);
	cr_expect_eq(lgr_recent_new(LGR_RECENT_MAX_SIZE + 1, 10, &r), LGR_EINVAL);
	cr_expect_eq(lgr_recent_new(10, LGR_RECENT_MAX_SOURCES + 1, &r), LGR_EINVAL);
	cr_expect_eq(lgr_recent_new(10, 10, NULL), LGR_EINVAL);
	cr_expect_eq(lgr_recent_add(NULL, NULL), LGR_EINVAL);
	lgr_recent_free(NULL);
}

Test(recent, unknown_source_id_answers_nothing)
{
	struct lgr_recent *r;
	struct answer a;

	cr_assert_eq(lgr_recent_new(4, 4, &r), LGR_OK);
	put(r, "app", 1, LGR_ENV_LOG);
	a = query(r, "other", ALL, 0, 0, false);
	cr_expect_eq(a.n, 0);
	cr_expect_null(a.e);
	lgr_recent_free(r);
}

/* --- the ring --------------------------------------------------------------------------------------------------- */

Test(recent, ring_keeps_the_last_size_envelopes_of_a_source)
{
	struct lgr_recent *r;
	struct lgr_recent_stats st;
	int i;

	cr_assert_eq(lgr_recent_new(3, 10, &r), LGR_OK);
	for (i = 1; i <= 5; i++)
		put(r, "app", i, LGR_ENV_LOG);
	expect(r, "app", ALL, 0, 0, false, "3,4,5");
	lgr_recent_stats(r, &st);
	cr_expect_eq(st.sources, 1);
	cr_expect_eq(st.envelopes, 3);
	cr_expect_eq(st.written, 5);
	cr_expect_eq(st.evictions, 0);
	lgr_recent_free(r);
}

Test(recent, envelopes_are_answered_sorted_by_timestamp_whatever_their_arrival_order)
{
	struct lgr_recent *r;

	cr_assert_eq(lgr_recent_new(10, 10, &r), LGR_OK);
	put(r, "app", 30, LGR_ENV_LOG);
	put(r, "app", 10, LGR_ENV_LOG);
	put(r, "app", 20, LGR_ENV_LOG);
	expect(r, "app", ALL, 0, 0, false, "10,20,30");
	expect(r, "app", ALL, 0, 0, true, "30,20,10");
	lgr_recent_free(r);
}

Test(recent, equal_timestamps_keep_their_arrival_order)
{
	struct lgr_recent *r;
	struct lgr_env *a = mk("app", 5, LGR_ENV_LOG), *b = mk("app", 5, LGR_ENV_COUNTER);
	struct answer x;

	cr_assert_eq(lgr_recent_new(10, 10, &r), LGR_OK);
	cr_assert_eq(lgr_recent_add(r, a), LGR_OK);
	cr_assert_eq(lgr_recent_add(r, b), LGR_OK);
	x = query(r, "app", ALL, 0, 0, false);
	cr_assert_eq(x.n, 2);
	cr_expect_eq(x.e[0], a);
	cr_expect_eq(x.e[1], b);
	lgr_recent_release(x.e, x.n);
	lgr_recent_free(r);
	lgr_env_unref(a);
	lgr_env_unref(b);
}

Test(recent, sources_are_kept_apart)
{
	struct lgr_recent *r;

	cr_assert_eq(lgr_recent_new(10, 10, &r), LGR_OK);
	put(r, "a", 1, LGR_ENV_LOG);
	put(r, "b", 2, LGR_ENV_LOG);
	put(r, "a", 3, LGR_ENV_LOG);
	put(r, "", 4, LGR_ENV_LOG);
	expect(r, "a", ALL, 0, 0, false, "1,3");
	expect(r, "b", ALL, 0, 0, false, "2");
	expect(r, "", ALL, 0, 0, false, "4");
	lgr_recent_free(r);
}

/* --- eviction --------------------------------------------------------------------------------------------------- */

Test(recent, a_new_source_evicts_the_source_written_least_recently)
{
	struct lgr_recent *r;
	struct lgr_recent_stats st;

	cr_assert_eq(lgr_recent_new(4, 2, &r), LGR_OK);
	put(r, "a", 1, LGR_ENV_LOG);
	put(r, "b", 2, LGR_ENV_LOG);
	put(r, "a", 3, LGR_ENV_LOG); /* a is now the most recently written */
	put(r, "c", 4, LGR_ENV_LOG); /* evicts b */
	expect(r, "a", ALL, 0, 0, false, "1,3");
	expect(r, "b", ALL, 0, 0, false, "");
	expect(r, "c", ALL, 0, 0, false, "4");
	lgr_recent_stats(r, &st);
	cr_expect_eq(st.sources, 2);
	cr_expect_eq(st.envelopes, 3);
	cr_expect_eq(st.evictions, 1);
	put(r, "b", 5, LGR_ENV_LOG); /* evicts a */
	expect(r, "a", ALL, 0, 0, false, "");
	expect(r, "b", ALL, 0, 0, false, "5");
	lgr_recent_stats(r, &st);
	cr_expect_eq(st.evictions, 2);
	lgr_recent_free(r);
}

Test(recent, reading_a_source_does_not_protect_it_from_eviction)
{
	struct lgr_recent *r;

	cr_assert_eq(lgr_recent_new(4, 2, &r), LGR_OK);
	put(r, "a", 1, LGR_ENV_LOG);
	put(r, "b", 2, LGR_ENV_LOG);
	expect(r, "a", ALL, 0, 0, false, "1");
	put(r, "c", 3, LGR_ENV_LOG);
	expect(r, "a", ALL, 0, 0, false, "");
	expect(r, "b", ALL, 0, 0, false, "2");
	lgr_recent_free(r);
}

Test(recent, evicted_and_replaced_envelopes_are_released)
{
	struct lgr_recent *r;
	struct lgr_env *held = mk("a", 1, LGR_ENV_LOG), *other = mk("b", 2, LGR_ENV_LOG);
	struct answer x;

	cr_assert_eq(lgr_recent_new(1, 1, &r), LGR_OK);
	cr_assert_eq(lgr_recent_add(r, held), LGR_OK);
	cr_expect_eq(held->refs, 2);
	x = query(r, "a", ALL, 0, 0, false);
	cr_expect_eq(held->refs, 3, "an answer holds its own reference");
	lgr_recent_release(x.e, x.n);
	cr_expect_eq(held->refs, 2);
	cr_assert_eq(lgr_recent_add(r, held), LGR_OK); /* replaces itself in a ring of one */
	cr_expect_eq(held->refs, 2);
	cr_assert_eq(lgr_recent_add(r, other), LGR_OK); /* evicts source a */
	cr_expect_eq(held->refs, 1);
	cr_expect_eq(other->refs, 2);
	lgr_recent_free(r);
	cr_expect_eq(other->refs, 1);
	lgr_env_unref(held);
	lgr_env_unref(other);
}

/* --- queries ---------------------------------------------------------------------------------------------------- */

Test(recent, time_range_includes_start_and_excludes_end)
{
	struct lgr_recent *r;
	int i;

	cr_assert_eq(lgr_recent_new(10, 10, &r), LGR_OK);
	for (i = 1; i <= 5; i++)
		put(r, "app", i * 10, LGR_ENV_LOG);
	expect(r, "app", 20, 40, 0, 0, false, "20,30");
	expect(r, "app", 21, 41, 0, 0, false, "30,40");
	expect(r, "app", 30, 30, 0, 0, false, "");
	expect(r, "app", 60, 100, 0, 0, false, "");
	expect(r, "app", 0, 11, 0, 0, true, "10");
	lgr_recent_free(r);
}

Test(recent, type_mask_selects_types_and_zero_means_any)
{
	struct lgr_recent *r;

	cr_assert_eq(lgr_recent_new(10, 10, &r), LGR_OK);
	put(r, "app", 1, LGR_ENV_LOG);
	put(r, "app", 2, LGR_ENV_COUNTER);
	put(r, "app", 3, LGR_ENV_GAUGE);
	put(r, "app", 4, LGR_ENV_TIMER);
	put(r, "app", 5, LGR_ENV_EVENT);
	expect(r, "app", ALL, 0, 0, false, "1,2,3,4,5");
	expect(r, "app", ALL, LGR_RECENT_TYPE(LGR_ENV_LOG), 0, false, "1");
	expect(r, "app", ALL, LGR_RECENT_TYPE(LGR_ENV_GAUGE) | LGR_RECENT_TYPE(LGR_ENV_EVENT), 0, false, "3,5");
	expect(r, "app", ALL, LGR_RECENT_TYPE(LGR_ENV_COUNTER) | LGR_RECENT_TYPE(LGR_ENV_TIMER), 0, true, "4,2");
	lgr_recent_free(r);
}

Test(recent, ascending_limit_takes_the_oldest_of_the_range_as_log_cache_does)
{
	struct lgr_recent *r;
	int i;

	cr_assert_eq(lgr_recent_new(10, 10, &r), LGR_OK);
	for (i = 1; i <= 6; i++)
		put(r, "app", i, LGR_ENV_LOG);
	expect(r, "app", ALL, 0, 2, false, "1,2");
	expect(r, "app", 3, 100, 0, 2, false, "3,4");
	lgr_recent_free(r);
}

Test(recent, descending_limit_takes_the_newest_of_the_range_newest_first)
{
	struct lgr_recent *r;
	int i;

	cr_assert_eq(lgr_recent_new(10, 10, &r), LGR_OK);
	for (i = 1; i <= 6; i++)
		put(r, "app", i, LGR_ENV_LOG);
	expect(r, "app", ALL, 0, 2, true, "6,5");
	expect(r, "app", 0, 5, 0, 3, true, "4,3,2");
	expect(r, "app", ALL, 0, 100, true, "6,5,4,3,2,1");
	lgr_recent_free(r);
}

Test(recent, limit_applies_after_the_type_filter)
{
	struct lgr_recent *r;

	cr_assert_eq(lgr_recent_new(10, 10, &r), LGR_OK);
	put(r, "app", 1, LGR_ENV_COUNTER);
	put(r, "app", 2, LGR_ENV_LOG);
	put(r, "app", 3, LGR_ENV_COUNTER);
	put(r, "app", 4, LGR_ENV_LOG);
	expect(r, "app", ALL, LGR_RECENT_TYPE(LGR_ENV_LOG), 1, false, "2");
	expect(r, "app", ALL, LGR_RECENT_TYPE(LGR_ENV_LOG), 1, true, "4");
	lgr_recent_free(r);
}

Test(recent, query_refuses_null_arguments)
{
	struct lgr_recent *r;
	struct lgr_env **e = (void *)1;
	size_t n = 7;

	cr_assert_eq(lgr_recent_new(1, 1, &r), LGR_OK);
	cr_expect_eq(lgr_recent_query(r, NULL, ALL, 0, 0, false, &e, &n), LGR_EINVAL);
	cr_expect_null(e);
	cr_expect_eq(n, 0);
	cr_expect_eq(lgr_recent_query(NULL, "a", ALL, 0, 0, false, &e, &n), LGR_EINVAL);
	lgr_recent_release(NULL, 0);
	lgr_recent_free(r);
}

/* --- threads ---------------------------------------------------------------------------------------------------- */

#define WRITERS	   4
#define PER_WRITER 20000
#define SOURCES	   8

struct writer_arg {
	struct lgr_recent *r;
	int id;
};

static void *writer(void *p)
{
	struct writer_arg *a = p;
	char sid[16];
	int i;

	for (i = 0; i < PER_WRITER; i++) {
		struct lgr_env *e;

		/* each writer owns two sources and shares the rest, so eviction and replacement both race */
		snprintf(sid, sizeof(sid), "s%d", (i % 3 == 0) ? a->id : (i % (SOURCES + 4)));
		e = lgr_env_new();
		if (e == NULL || lgr_env_set_source_id(e, sid) != LGR_OK ||
			lgr_env_set_log(e, "x", 1, LOGGREGATOR__V2__LOG__TYPE__OUT) != LGR_OK)
			abort();
		e->pb->timestamp = (int64_t)a->id * PER_WRITER + i;
		if (lgr_recent_add(a->r, e) != LGR_OK)
			abort();
		lgr_env_unref(e);
	}
	return NULL;
}

struct reader_arg {
	struct lgr_recent *r;
	volatile int stop;
	long answers;
	int bad;
};

static void *reader(void *p)
{
	struct reader_arg *a = p;
	char sid[16];
	int k = 0;

	while (!a->stop) {
		struct lgr_env **e;
		size_t n, i;

		snprintf(sid, sizeof(sid), "s%d", k++ % (SOURCES + 4));
		if (lgr_recent_query(a->r, sid, INT64_MIN, INT64_MAX, 0, 0, k % 2 == 0, &e, &n) != LGR_OK) {
			a->bad++;
			continue;
		}
		for (i = 1; i < n; i++) {
			int64_t x = e[i - 1]->pb->timestamp, y = e[i]->pb->timestamp;

			if (k % 2 == 0 ? x < y : x > y)
				a->bad++;
		}
		for (i = 0; i < n; i++)
			if (strcmp(e[i]->pb->source_id, sid) != 0)
				a->bad++;
		if (n > 16)
			a->bad++;
		lgr_recent_release(e, n);
		a->answers++;
	}
	return NULL;
}

Test(recent, concurrent_writers_and_a_reader_see_a_consistent_store)
{
	struct lgr_recent *r;
	struct writer_arg wa[WRITERS];
	struct reader_arg ra = {0};
	struct lgr_recent_stats st;
	pthread_t wt[WRITERS], rt;
	int i;

	cr_assert_eq(lgr_recent_new(16, SOURCES, &r), LGR_OK);
	ra.r = r;
	cr_assert_eq(pthread_create(&rt, NULL, reader, &ra), 0);
	for (i = 0; i < WRITERS; i++) {
		wa[i].r = r;
		wa[i].id = i;
		cr_assert_eq(pthread_create(&wt[i], NULL, writer, &wa[i]), 0);
	}
	for (i = 0; i < WRITERS; i++)
		pthread_join(wt[i], NULL);
	ra.stop = 1;
	pthread_join(rt, NULL);

	cr_expect_eq(ra.bad, 0);
	cr_expect_gt(ra.answers, 0);
	lgr_recent_stats(r, &st);
	cr_expect_eq(st.written, (uint64_t)WRITERS * PER_WRITER);
	cr_expect_leq(st.sources, SOURCES);
	cr_expect_gt(st.evictions, 0);
	cr_expect_leq(st.envelopes, st.sources * 16);
	lgr_recent_free(r);
}
