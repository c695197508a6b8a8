/* test_log.c: the log-line limiter (lgr_ratelimit) and the components' prefixed, limited lines (lgr_logger). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

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
