/* test_log.c: the log-line limiter (lgr_ratelimit), the components' prefixed, limited lines (lgr_logger), and the
 * batch pace judge (lgr_pace), the byte-stream settling queue (lgr_settle), the computed calendar date and time
 * (lgr_civil_date, lgr_civil_time) and the scheduler slice request (lgr_thread_short_slice) that live beside them in
 * lgr.c. */
#define _GNU_SOURCE /* SCHED_BATCH */
#include <criterion/criterion.h>
#include <errno.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "lgr.h"

struct captured {
	int n;
	enum lgr_log_level level;
	char line[1024];
};

static void capture(enum lgr_log_level level, const char *msg, void *ud)
{
	struct captured *c = ud;

	c->n++;
	c->level = level;
	snprintf(c->line, sizeof(c->line), "%s", msg);
}

Test(ratelimit, lets_a_burst_through_per_window_and_counts_the_rest)
{
	struct lgr_ratelimit rl = LGR_RATELIMIT_INIT(1000, 2);
	uint64_t held = 99;

	cr_assert(lgr_ratelimit_take(&rl, 5000, &held));
	cr_assert_eq(held, 0);
	cr_assert(lgr_ratelimit_take(&rl, 5001, &held));
	cr_assert_not(lgr_ratelimit_take(&rl, 5002, &held));
	cr_assert_not(lgr_ratelimit_take(&rl, 5999, &held));
	cr_assert(lgr_ratelimit_take(&rl, 6000, &held), "a new window starts after window_ms");
	cr_assert_eq(held, 2, "the two lines held back are reported once");
	cr_assert(lgr_ratelimit_take(&rl, 6001, &held));
	cr_assert_eq(held, 0);
}

Test(logger, prefixes_the_name_and_uses_the_sink)
{
	struct captured c = {0};
	const struct lgr_logger lg = {"comp(1.2.3.4:5)", capture, &c};

	lgr_logger_put(&lg, LGR_LOG_NOTICE, "%d things", 3);
	cr_assert_eq(c.n, 1);
	cr_assert_eq(c.level, LGR_LOG_NOTICE);
	cr_assert_str_eq(c.line, "comp(1.2.3.4:5): 3 things");
}

Test(logger, without_a_sink_goes_to_lgr_log)
{
	struct captured c = {0};
	const struct lgr_logger lg = {"comp", NULL, NULL};

	lgr_log_set(capture, &c);
	lgr_logger_put(&lg, LGR_LOG_WARNING, "x");
	lgr_log_set(NULL, NULL);
	cr_assert_eq(c.n, 1);
	cr_assert_str_eq(c.line, "comp: x");
}

Test(logger, say_drops_beyond_the_burst_and_the_next_line_says_how_many)
{
	struct captured c = {0};
	const struct lgr_logger lg = {"comp", capture, &c};
	struct lgr_ratelimit rl = LGR_RATELIMIT_INIT(60000, 1);

	lgr_logger_say(&lg, &rl, LGR_LOG_WARNING, "first %s", "line");
	cr_assert_eq(c.n, 1);
	cr_assert_str_eq(c.line, "comp: first line");
	lgr_logger_say(&lg, &rl, LGR_LOG_WARNING, "second");
	lgr_logger_say(&lg, &rl, LGR_LOG_WARNING, "third");
	cr_assert_eq(c.n, 1, "the burst is spent: nothing more in this window");
	rl.start -= 60000; /* the window is over */
	lgr_logger_say(&lg, &rl, LGR_LOG_ERR, "fourth");
	cr_assert_eq(c.n, 2);
	cr_assert_eq(c.level, LGR_LOG_ERR);
	cr_assert_str_eq(c.line, "comp: fourth (2 similar lines suppressed before this one)");
}

Test(pace, zeroed_is_not_busy_and_a_window_decides_only_when_it_ends)
{
	struct lgr_pace p = {0};
	uint64_t t = 1000000;

	cr_assert(!p.busy);
	lgr_pace_count(&p, 0, 100, t); /* the first call closes the empty window before it */
	cr_assert(!p.busy);
	/* 100 per 500 us: a batch of 100 fills twice as fast as LGR_PACE_FILL_US */
	for (int i = 1; i < 20; i++) {
		lgr_pace_count(&p, 100, 100, t + (uint64_t)i * 500);
		cr_assert(!p.busy, "no decision before the window of %u us ends", LGR_PACE_WINDOW_US);
	}
	lgr_pace_count(&p, 100, 100, t + LGR_PACE_WINDOW_US);
	cr_assert(p.busy);
	/* then 100 per 2 ms: a batch would take twice LGR_PACE_FILL_US to fill */
	t += LGR_PACE_WINDOW_US;
	for (int i = 1; i <= 5; i++)
		lgr_pace_count(&p, 100, 100, t + (uint64_t)i * 2000);
	cr_assert(!p.busy);
}

Test(pace, exactly_a_batch_per_fill_time_is_busy_and_a_larger_batch_is_not)
{
	struct lgr_pace p = {0};

	lgr_pace_count(&p, 0, 100, 5000000);
	lgr_pace_count(&p, 1000, 100, 5000000 + LGR_PACE_WINDOW_US); /* 100 per 1000 us */
	cr_assert(p.busy);
	lgr_pace_count(&p, 1000, 101, 5000000 + 2 * LGR_PACE_WINDOW_US); /* a batch of 101 takes longer to fill */
	cr_assert(!p.busy);
}

/* lgr_civil_date(days) against gmtime_r of that day's midnight. */
static void civil_date_agrees(int64_t days)
{
	time_t t = (time_t)(days * 86400);
	struct tm tm;
	int y, m, d, w;

	cr_assert_not_null(gmtime_r(&t, &tm));
	lgr_civil_date(days, &y, &m, &d, &w);
	cr_assert(y == tm.tm_year + 1900 && m == tm.tm_mon + 1 && d == tm.tm_mday && w == tm.tm_wday,
		"day %lld: %d-%d-%d (weekday %d), want %d-%d-%d (%d)", (long long)days, y, m, d, w, tm.tm_year + 1900,
		tm.tm_mon + 1, tm.tm_mday, tm.tm_wday);
}

Test(settle, counts_a_message_once_its_last_byte_is_gone_and_drops_the_rest)
{
	struct lgr_settle q = {0};

	cr_assert_eq(lgr_settle_upto(&q, 100), 0); /* empty */
	cr_assert_eq(lgr_settle_push(&q, 10, 1), LGR_OK);
	cr_assert_eq(lgr_settle_push(&q, 25, 100), LGR_OK);
	cr_assert_eq(lgr_settle_push(&q, 30, 2), LGR_OK);
	cr_assert_eq(lgr_settle_upto(&q, 9), 0);
	cr_assert_eq(lgr_settle_upto(&q, 10), 1);
	cr_assert_eq(lgr_settle_upto(&q, 29), 100, "the message ending at 25, not the one partly gone");
	cr_assert_eq(lgr_settle_push(&q, 40, 5), LGR_OK);
	lgr_settle_unpush(&q); /* never went out */
	cr_assert_eq(q.n, 1);
	cr_assert_eq(lgr_settle_drop(&q), 2);
	cr_assert_eq(lgr_settle_drop(&q), 0);
	lgr_settle_free(&q);
	cr_assert_eq(q.v, NULL);
}

Test(settle, keeps_order_across_growth_while_the_ring_wraps)
{
	enum { N = 3000 };
	static uint64_t ends[N], items[N];
	struct lgr_settle q = {0};
	uint64_t end = 0, rest = 0;
	size_t oldest = 0, i;

	/* three pushes per settle of two: the ring wraps, and grows several times with messages in it */
	for (i = 0; i < N; i++) {
		end += i % 7 + 1;
		ends[i] = end;
		items[i] = i + 1;
		cr_assert_eq(lgr_settle_push(&q, end, items[i]), LGR_OK);
		if (i % 3 == 2) {
			cr_assert_eq(lgr_settle_upto(&q, ends[oldest + 1]), items[oldest] + items[oldest + 1]);
			oldest += 2;
		}
	}
	cr_assert_eq(q.n, N - oldest);
	for (i = oldest; i < N; i++)
		rest += items[i];
	cr_assert_eq(lgr_settle_drop(&q), rest);
	lgr_settle_free(&q);
}

Test(civil_date, agrees_with_gmtime_r_over_four_thousand_years_and_at_every_edge)
{
	static const int64_t edges[] = {0, -1, 59, 60, 365, -365, 10956, 10957, 11016, 11017, 11018, 20454, -719468,
		-719469, 2932896, INT32_MAX / 86400};
	int64_t days;
	size_t i;

	/* every day of 1900..2100 (leap and century rules), then every 13th day of +-2000 years */
	for (days = -25567; days <= 47482; days++)
		civil_date_agrees(days);
	for (days = -730485; days <= 730485; days += 13)
		civil_date_agrees(days);
	for (i = 0; i < sizeof(edges) / sizeof(edges[0]); i++)
		civil_date_agrees(edges[i]);
}

Test(civil_time, splits_nanoseconds_either_side_of_the_epoch_as_gmtime_r_does)
{
	static const int64_t ns[] = {0, 1, -1, 999999999, -999999999, -1000000000, 1731000000123456789, -86400000000001,
		INT64_MAX, INT64_MIN};
	struct lgr_civil c;
	struct tm tm;
	time_t t;
	int64_t frac;

	for (size_t i = 0; i < sizeof(ns) / sizeof(ns[0]); i++) {
		frac = ns[i] % 1000000000;
		t = (time_t)(ns[i] / 1000000000 - (frac < 0));
		frac += frac < 0 ? 1000000000 : 0;
		cr_assert_not_null(gmtime_r(&t, &tm));
		lgr_civil_time(ns[i], &c);
		cr_assert(c.year == tm.tm_year + 1900 && c.month == tm.tm_mon + 1 && c.day == tm.tm_mday &&
				  c.wday == tm.tm_wday && c.hour == tm.tm_hour && c.minute == tm.tm_min &&
				  c.second == tm.tm_sec && c.nsec == frac,
			"%lld ns: %d-%d-%d %d:%d:%d.%09d", (long long)ns[i], c.year, c.month, c.day, c.hour, c.minute,
			c.second, c.nsec);
	}
}

/* ---- lgr_thread_short_slice (each test runs in a process of its own, so its scheduling changes stay there) ---- */

struct sched_view {
	uint32_t size, policy;
	uint64_t flags;
	int32_t nice;
	uint32_t priority;
	uint64_t runtime, deadline, period;
};

static struct sched_view sched_now(void)
{
	struct sched_view v;

	memset(&v, 0, sizeof(v));
	cr_assert_eq(
		syscall(SYS_sched_getattr, 0, &v, (unsigned)sizeof(v), 0), 0, "sched_getattr: %s", strerror(errno));
	return v;
}

Test(short_slice, sets_the_slice_and_keeps_the_nice_value)
{
	struct sched_view before, after;
	pid_t tid = (pid_t)syscall(SYS_gettid);

	cr_assert_eq(setpriority(PRIO_PROCESS, (id_t)tid, 3), 0); /* raising it needs no privilege */
	before = sched_now();
	cr_assert_eq(before.policy, SCHED_OTHER);
	cr_assert_eq(lgr_thread_short_slice(100), 0);
	after = sched_now();
	cr_assert_eq(after.policy, SCHED_OTHER);
	cr_assert_eq(after.nice, 3, "nice %d", after.nice);
	/* kernels that keep a slice per thread report it (1.4 ms by default on 2 CPUs); earlier ones report 0 */
	if (before.runtime != 0)
		cr_assert_eq(after.runtime, 100000, "slice %llu ns", (unsigned long long)after.runtime);
	cr_assert_eq(lgr_thread_short_slice(250), 0);
	if (before.runtime != 0)
		cr_assert_eq(sched_now().runtime, 250000);
}

Test(short_slice, leaves_a_thread_under_another_policy_alone)
{
	struct sched_param sp = {.sched_priority = 0};
	struct sched_view before, after;

	cr_assert_eq(sched_setscheduler(0, SCHED_BATCH, &sp), 0, "%s", strerror(errno));
	before = sched_now();
	cr_assert_eq(lgr_thread_short_slice(100), 0);
	after = sched_now();
	cr_assert_eq(after.policy, SCHED_BATCH);
	cr_assert_eq(after.runtime, before.runtime);
}
