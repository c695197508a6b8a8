/*
 * test_ring.c: the drop-oldest ring: order, exact counters, batch pop, waking the reader, and many writers.
 */
#include <criterion/criterion.h>

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "lgr_ring.h"

#define ITEM(i) ((void *)(uintptr_t)(i))
#define VAL(p)	((uintptr_t)(p))

struct recorder {
	uintptr_t items[64];
	size_t n;
};

static void record(void *item, void *ud)
{
	struct recorder *r = ud;

	if (r->n < 64)
		r->items[r->n] = VAL(item);
	r->n++;
}

static struct lgr_ring *ring_with(size_t capacity, lgr_ring_item_fn *drop, void *ud)
{
	struct lgr_ring_conf conf = {.capacity = capacity, .drop = drop, .drop_ud = ud};
	struct lgr_ring *r = NULL;

	cr_assert_eq(lgr_ring_new(&conf, &r), LGR_OK);
	cr_assert_not_null(r);
	return r;
}

static void assert_counts(struct lgr_ring *r, uint64_t pushed, uint64_t popped, uint64_t dropped, size_t len)
{
	struct lgr_ring_stats st;

	lgr_ring_stats(r, &st);
	cr_assert_eq(st.pushed, pushed, "pushed %llu", (unsigned long long)st.pushed);
	cr_assert_eq(st.popped, popped, "popped %llu", (unsigned long long)st.popped);
	cr_assert_eq(st.dropped, dropped, "dropped %llu", (unsigned long long)st.dropped);
	cr_assert_eq(st.len, len, "len %zu", st.len);
	cr_assert_eq(st.pushed, st.popped + st.dropped + st.len);
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

Test(ring, new_rejects_a_zero_or_oversized_capacity)
{
	struct lgr_ring_conf conf = {.capacity = 0};
	struct lgr_ring *r = ITEM(1);

	cr_assert_eq(lgr_ring_new(&conf, &r), LGR_EINVAL);
	cr_assert_null(r);
	conf.capacity = (size_t)LGR_RING_MAX_CAPACITY + 1;
	cr_assert_eq(lgr_ring_new(&conf, &r), LGR_EINVAL);
	cr_assert_null(r);
}

Test(ring, push_on_a_full_ring_drops_the_oldest_and_counts_it)
{
	struct recorder drops = {0};
	struct lgr_ring *r = ring_with(4, record, &drops);
	void *out[8];

	for (uintptr_t i = 1; i <= 4; i++)
		cr_assert_not(lgr_ring_push(r, ITEM(i)), "no drop while there is room");
	cr_assert_eq(lgr_ring_push(r, ITEM(5)), 1);
	cr_assert_eq(lgr_ring_push(r, ITEM(6)), 1);
	cr_assert_eq(drops.n, 2);
	cr_assert_eq(drops.items[0], 1);
	cr_assert_eq(drops.items[1], 2);
	assert_counts(r, 6, 0, 2, 4);

	cr_assert_eq(lgr_ring_pop(r, out, 8), 4);
	for (size_t i = 0; i < 4; i++)
		cr_assert_eq(VAL(out[i]), i + 3, "slot %zu holds %lu", i, (unsigned long)VAL(out[i]));
	assert_counts(r, 6, 4, 2, 0);
	lgr_ring_free(r);
	cr_assert_eq(drops.n, 2, "nothing left to drop at free");
}

struct reentrant {
	struct lgr_ring *ring;
	int calls;
	bool consistent;
};

/* Takes the ring's lock again: this would deadlock if callbacks ran under it. */
static void stats_from_callback(void *item, void *ud)
{
	struct reentrant *re = ud;
	struct lgr_ring_stats st;

	(void)item;
	lgr_ring_stats(re->ring, &st);
	re->consistent = st.pushed == st.popped + st.dropped + st.len;
	re->calls++;
}

static void stats_from_notify(void *ud)
{
	stats_from_callback(NULL, ud);
}

Test(ring, callbacks_run_outside_the_lock_and_may_use_the_ring, .timeout = 20)
{
	struct reentrant re = {0};
	struct lgr_ring_conf conf = {.capacity = 1,
		.drop = stats_from_callback,
		.drop_ud = &re,
		.notify = stats_from_notify,
		.notify_ud = &re};

	cr_assert_eq(lgr_ring_new(&conf, &re.ring), LGR_OK);
	lgr_ring_push(re.ring, ITEM(1)); /* notify */
	lgr_ring_push(re.ring, ITEM(2)); /* drop */
	cr_assert_eq(re.calls, 2);
	cr_assert(re.consistent);
	lgr_ring_drain(re.ring, stats_from_callback, &re);
	cr_assert_eq(re.calls, 3);
	lgr_ring_free(re.ring);
}

Test(ring, a_ring_of_one_keeps_only_the_newest)
{
	struct recorder drops = {0};
	struct lgr_ring *r = ring_with(1, record, &drops);
	void *out[2];

	lgr_ring_push(r, ITEM(10));
	lgr_ring_push(r, ITEM(11));
	lgr_ring_push(r, ITEM(12));
	cr_assert_eq(lgr_ring_pop(r, out, 2), 1);
	cr_assert_eq(VAL(out[0]), 12);
	cr_assert_eq(drops.n, 2);
	cr_assert_eq(drops.items[0], 10);
	cr_assert_eq(drops.items[1], 11);
	assert_counts(r, 3, 1, 2, 0);
	lgr_ring_free(r);
}

Test(ring, pop_takes_at_most_the_batch_oldest_first_across_the_wrap)
{
	struct lgr_ring *r = ring_with(8, NULL, NULL);
	void *out[8];
	uintptr_t next_in = 1;
	uintptr_t next_out = 1;

	/* Move the head around the array several times with uneven batches. */
	for (int round = 0; round < 20; round++) {
		size_t n;

		for (int k = 0; k < 5; k++)
			lgr_ring_push(r, ITEM(next_in++));
		n = lgr_ring_pop(r, out, 3);
		cr_assert_eq(n, 3);
		for (size_t i = 0; i < n; i++)
			cr_assert_eq(VAL(out[i]), next_out++);
		n = lgr_ring_pop(r, out, 8);
		cr_assert_eq(n, 2);
		for (size_t i = 0; i < n; i++)
			cr_assert_eq(VAL(out[i]), next_out++);
	}
	cr_assert_eq(lgr_ring_pop(r, out, 8), 0);
	assert_counts(r, 100, 100, 0, 0);
	lgr_ring_free(r);
}

Test(ring, null_items_are_carried_like_any_other)
{
	struct lgr_ring *r = ring_with(2, NULL, NULL);
	void *out[2] = {ITEM(1), ITEM(1)};

	lgr_ring_push(r, NULL);
	cr_assert_eq(lgr_ring_pop(r, out, 2), 1);
	cr_assert_null(out[0]);
	lgr_ring_free(r);
}

Test(ring, wait_times_out_on_an_empty_ring)
{
	struct lgr_ring *r = ring_with(4, NULL, NULL);
	double t0 = now_ms();

	cr_assert_eq(lgr_ring_wait(r, 60), 0);
	cr_assert_geq(now_ms() - t0, 55.0, "returned after %.1f ms", now_ms() - t0);
	cr_assert_eq(lgr_ring_wait(r, 0), 0, "a zero timeout only looks");
	lgr_ring_free(r);
}

Test(ring, wait_returns_at_once_when_items_are_queued)
{
	struct lgr_ring *r = ring_with(4, NULL, NULL);
	double t0;

	lgr_ring_push(r, ITEM(1));
	lgr_ring_push(r, ITEM(2));
	t0 = now_ms();
	cr_assert_eq(lgr_ring_wait(r, 5000), 2);
	cr_assert_lt(now_ms() - t0, 1000.0);
	lgr_ring_free(r);
}

struct waiter {
	struct lgr_ring *ring;
	int timeout_ms;
	size_t result;
	void *items[4];
	double elapsed_ms;
};

static void *wait_thread(void *arg)
{
	struct waiter *w = arg;
	double t0 = now_ms();

	w->result = lgr_ring_wait(w->ring, w->timeout_ms);
	w->elapsed_ms = now_ms() - t0;
	return NULL;
}

static void *pop_wait_thread(void *arg)
{
	struct waiter *w = arg;
	double t0 = now_ms();

	w->result = lgr_ring_pop_wait(w->ring, w->items, 4, w->timeout_ms);
	w->elapsed_ms = now_ms() - t0;
	return NULL;
}

static void sleep_ms(int ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

/* The wait has no timeout: if the wake did not reach it, the test hangs and Criterion's timeout fails it. */
Test(ring, wake_interrupts_a_blocked_wait, .timeout = 20)
{
	struct waiter w = {.ring = ring_with(4, NULL, NULL), .timeout_ms = -1};
	pthread_t t;

	pthread_create(&t, NULL, wait_thread, &w);
	sleep_ms(100);
	lgr_ring_wake(w.ring);
	pthread_join(t, NULL);
	cr_assert_eq(w.result, 0, "woken with an empty ring");
	lgr_ring_free(w.ring);
}

Test(ring, a_wake_before_the_wait_is_kept_and_consumed_once)
{
	struct lgr_ring *r = ring_with(4, NULL, NULL);
	double t0;

	lgr_ring_wake(r);
	t0 = now_ms();
	cr_assert_eq(lgr_ring_wait(r, 5000), 0);
	cr_assert_lt(now_ms() - t0, 1000.0, "the earlier wake made the wait return");
	t0 = now_ms();
	cr_assert_eq(lgr_ring_wait(r, 60), 0);
	cr_assert_geq(now_ms() - t0, 55.0, "the wake was consumed by the first wait");
	lgr_ring_free(r);
}

Test(ring, a_push_wakes_a_blocked_pop_wait_with_the_item)
{
	struct waiter w = {.ring = ring_with(4, NULL, NULL), .timeout_ms = 10000};
	pthread_t t;

	pthread_create(&t, NULL, pop_wait_thread, &w);
	sleep_ms(50);
	lgr_ring_push(w.ring, ITEM(42));
	pthread_join(t, NULL);
	cr_assert_eq(w.result, 1);
	cr_assert_eq(VAL(w.items[0]), 42);
	cr_assert_lt(w.elapsed_ms, 5000.0, "woken by the push, not the timeout");
	assert_counts(w.ring, 1, 1, 0, 0);
	lgr_ring_free(w.ring);
}

static bool fd_readable(int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};

	return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

Test(ring, the_eventfd_turns_readable_when_the_ring_turns_non_empty)
{
	struct lgr_ring_conf conf = {.capacity = 4, .eventfd = true};
	struct lgr_ring *r = NULL;
	void *out[4];
	int fd;

	cr_assert_eq(lgr_ring_new(&conf, &r), LGR_OK);
	fd = lgr_ring_fd(r);
	cr_assert_geq(fd, 0);
	cr_assert_not(fd_readable(fd));
	lgr_ring_push(r, ITEM(1));
	cr_assert(fd_readable(fd));
	lgr_ring_fd_reset(r);
	cr_assert_not(fd_readable(fd));
	lgr_ring_push(r, ITEM(2));
	cr_assert_not(fd_readable(fd), "edge-triggered: the ring was not empty");
	cr_assert_eq(lgr_ring_pop(r, out, 4), 2);
	lgr_ring_push(r, ITEM(3));
	cr_assert(fd_readable(fd), "empty again, so the next push notifies");
	lgr_ring_fd_reset(r);
	lgr_ring_wake(r);
	cr_assert(fd_readable(fd), "wake signals the fd too");
	lgr_ring_free(r);
}

Test(ring, without_the_option_there_is_no_fd)
{
	struct lgr_ring *r = ring_with(4, NULL, NULL);

	cr_assert_eq(lgr_ring_fd(r), -1);
	lgr_ring_fd_reset(r); /* harmless */
	lgr_ring_free(r);
}

static void count_notify(void *ud)
{
	(*(int *)ud)++;
}

Test(ring, the_notify_callback_runs_on_empty_to_non_empty_and_on_wake)
{
	int calls = 0;
	struct lgr_ring_conf conf = {.capacity = 2, .notify = count_notify, .notify_ud = &calls};
	struct lgr_ring *r = NULL;
	void *out[2];

	cr_assert_eq(lgr_ring_new(&conf, &r), LGR_OK);
	lgr_ring_push(r, ITEM(1));
	lgr_ring_push(r, ITEM(2));
	lgr_ring_push(r, ITEM(3)); /* full: drops, but the ring never was empty */
	cr_assert_eq(calls, 1);
	lgr_ring_pop(r, out, 2);
	lgr_ring_push(r, ITEM(4));
	cr_assert_eq(calls, 2);
	lgr_ring_wake(r);
	cr_assert_eq(calls, 3);
	lgr_ring_free(r);
}

Test(ring, notify_at_also_notifies_when_a_push_fills_a_batch_but_not_while_dropping)
{
	int calls = 0;
	struct lgr_ring_conf conf = {.capacity = 4, .notify = count_notify, .notify_ud = &calls, .notify_at = 3};
	struct lgr_ring *r = NULL;
	void *out[4];

	cr_assert_eq(lgr_ring_new(&conf, &r), LGR_OK);
	lgr_ring_push(r, ITEM(1)); /* empty -> non-empty */
	lgr_ring_push(r, ITEM(2));
	cr_assert_eq(calls, 1);
	lgr_ring_push(r, ITEM(3)); /* length 3 */
	cr_assert_eq(calls, 2);
	lgr_ring_push(r, ITEM(4));
	lgr_ring_push(r, ITEM(5)); /* full: drops, length stays 4 */
	cr_assert_eq(calls, 2);
	cr_assert_eq(lgr_ring_pop(r, out, 2), 2);
	lgr_ring_push(r, ITEM(6)); /* back to 3 */
	cr_assert_eq(calls, 3);
	lgr_ring_free(r);
}

Test(ring, pop_min_takes_nothing_below_min_and_reports_what_is_left)
{
	struct lgr_ring_conf conf = {.capacity = 8};
	struct lgr_ring *r = NULL;
	struct lgr_ring_stats st;
	void *out[8];
	size_t left = 99;

	cr_assert_eq(lgr_ring_new(&conf, &r), LGR_OK);
	lgr_ring_push(r, ITEM(1));
	lgr_ring_push(r, ITEM(2));
	cr_assert_eq(lgr_ring_pop_min(r, out, 8, 3, &left), 0);
	cr_assert_eq(left, 2);
	lgr_ring_push(r, ITEM(3));
	cr_assert_eq(lgr_ring_pop_min(r, out, 2, 3, &left), 2);
	cr_assert_eq(out[0], ITEM(1));
	cr_assert_eq(out[1], ITEM(2));
	cr_assert_eq(left, 1);
	cr_assert_eq(lgr_ring_pop_min(r, out, 8, 0, NULL), 1);
	cr_assert_eq(out[0], ITEM(3));
	lgr_ring_stats(r, &st);
	cr_assert_eq(st.popped, 3);
	cr_assert_eq(st.len, 0);
	lgr_ring_free(r);
}

Test(ring, drain_hands_every_queued_item_over_and_counts_it_popped)
{
	struct recorder got = {0};
	struct recorder drops = {0};
	struct lgr_ring *r = ring_with(200, record, &drops);

	for (uintptr_t i = 1; i <= 150; i++)
		lgr_ring_push(r, ITEM(i));
	cr_assert_eq(lgr_ring_drain(r, record, &got), 150);
	cr_assert_eq(got.n, 150);
	for (size_t i = 0; i < 64; i++)
		cr_assert_eq(got.items[i], i + 1, "oldest first");
	cr_assert_eq(drops.n, 0);
	assert_counts(r, 150, 150, 0, 0);
	cr_assert_eq(lgr_ring_drain(r, record, &got), 0);
	lgr_ring_free(r);
}

static void free_item(void *item, void *ud)
{
	atomic_int *n = ud;

	free(item);
	atomic_fetch_add(n, 1);
}

Test(ring, free_hands_items_still_queued_to_the_drop_callback)
{
	atomic_int freed = 0;
	struct lgr_ring *r = ring_with(8, free_item, &freed);

	for (int i = 0; i < 5; i++)
		lgr_ring_push(r, malloc(16)); /* valgrind reports a leak if any is lost */
	lgr_ring_free(r);
	cr_assert_eq(atomic_load(&freed), 5);
}

/* --- credit -------------------------------------------------------------------------------------------------- */

static size_t weigh_ten(const void *item)
{
	(void)item;
	return 10;
}

static size_t weigh_one(const void *item)
{
	(void)item;
	return 1;
}

static size_t weigh_value(const void *item)
{
	return (size_t)VAL(item);
}

static struct lgr_ring *ring_on_credit(
	size_t capacity, lgr_ring_weigh_fn *weigh, size_t extra_max, size_t credit, struct recorder *drops)
{
	struct lgr_ring_conf conf = {
		.capacity = capacity, .drop = record, .drop_ud = drops, .weigh = weigh, .extra_max = extra_max};
	struct lgr_ring *r = NULL;

	cr_assert_eq(lgr_ring_new(&conf, &r), LGR_OK);
	lgr_ring_set_credit(r, credit);
	return r;
}

static size_t over_bytes(struct lgr_ring *r)
{
	struct lgr_ring_stats st;

	lgr_ring_stats(r, &st);
	return st.over_bytes;
}

static void assert_pops(struct lgr_ring *r, size_t max, const uintptr_t *want, size_t n)
{
	void *out[64];
	size_t got = lgr_ring_pop(r, out, max);

	cr_assert_eq(got, n, "popped %zu, want %zu", got, n);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(VAL(out[i]), want[i], "item %zu is %lu, want %lu", i, (unsigned long)VAL(out[i]),
			(unsigned long)want[i]);
}

/* Pushes item into a full ring and checks that exactly victim went to the drop callback. */
static void assert_push_drops(struct lgr_ring *r, uintptr_t item, struct recorder *drops, uintptr_t victim)
{
	size_t before = drops->n;

	cr_assert_eq(lgr_ring_push(r, ITEM(item)), 1);
	cr_assert_eq(drops->n, before + 1);
	cr_assert_eq(drops->items[before], victim, "dropped %lu, want %lu", (unsigned long)drops->items[before],
		(unsigned long)victim);
}

Test(ring, credit_keeps_the_oldest_beyond_capacity_and_they_leave_first)
{
	struct recorder drops = {0};
	struct lgr_ring *r = ring_on_credit(4, weigh_ten, 100, 30, &drops);
	const uintptr_t all[] = {2, 3, 4, 5, 6, 7, 8};

	for (uintptr_t i = 1; i <= 7; i++)
		cr_assert_not(lgr_ring_push(r, ITEM(i)), "push %lu dropped within the credit", (unsigned long)i);
	assert_counts(r, 7, 0, 0, 7);
	cr_assert_eq(over_bytes(r), 30);
	/* a fourth item beyond capacity would weigh 40: the oldest goes instead */
	assert_push_drops(r, 8, &drops, 1);
	assert_counts(r, 8, 0, 1, 7);
	cr_assert_eq(over_bytes(r), 30);
	assert_pops(r, 64, all, 7);
	cr_assert_eq(over_bytes(r), 0);
	lgr_ring_free(r);
}

Test(ring, without_credit_or_weigh_a_full_ring_drops_as_before)
{
	struct recorder drops = {0};
	struct lgr_ring *r = ring_on_credit(4, weigh_ten, 100, 0, &drops);
	struct lgr_ring *plain = ring_with(4, NULL, NULL);
	const uintptr_t kept[] = {3, 4, 5, 6};

	lgr_ring_set_credit(plain, 1000); /* no weigh: ignored */
	for (uintptr_t i = 1; i <= 6; i++) {
		lgr_ring_push(r, ITEM(i));
		lgr_ring_push(plain, ITEM(i));
	}
	assert_counts(r, 6, 0, 2, 4);
	assert_counts(plain, 6, 0, 2, 4);
	cr_assert_eq(drops.n, 2);
	assert_pops(r, 64, kept, 4);
	assert_pops(plain, 64, kept, 4);
	/* credit given later takes effect from the next push */
	lgr_ring_set_credit(r, 10);
	for (uintptr_t i = 1; i <= 5; i++)
		lgr_ring_push(r, ITEM(i));
	assert_counts(r, 11, 4, 2, 5);
	lgr_ring_free(r);
	lgr_ring_free(plain);
}

Test(ring, credit_counts_exactly_what_the_items_beyond_capacity_weigh)
{
	struct recorder drops = {0};
	struct lgr_ring *r = ring_on_credit(2, weigh_value, 10, 100, &drops);
	const uintptr_t first[] = {30, 40}, rest[] = {50, 60, 70, 80};

	for (uintptr_t v = 10; v <= 60; v += 10)
		cr_assert_not(lgr_ring_push(r, ITEM(v)));
	cr_assert_eq(over_bytes(r), 10 + 20 + 30 + 40);
	/*
	 * 70: keeping all would put 50 beyond capacity too (150 > 100). The oldest (10) goes, 50 joins those beyond
	 * (140, still over), so the next oldest (20) goes as well: a shrinking margin is followed.
	 */
	cr_assert_eq(lgr_ring_push(r, ITEM(70)), 2);
	cr_assert_eq(drops.n, 2);
	cr_assert_eq(drops.items[0], 10);
	cr_assert_eq(drops.items[1], 20);
	cr_assert_eq(over_bytes(r), 30 + 40 + 50);
	assert_counts(r, 7, 0, 2, 5);
	lgr_ring_set_credit(r, 1000);
	cr_assert_not(lgr_ring_push(r, ITEM(80)));
	cr_assert_eq(over_bytes(r), 30 + 40 + 50 + 60);
	assert_pops(r, 2, first, 2); /* a partial pop takes its items' weight */
	cr_assert_eq(over_bytes(r), 50 + 60);
	assert_pops(r, 64, rest, 4);
	cr_assert_eq(over_bytes(r), 0);
	for (uintptr_t v = 1; v <= 3; v++)
		lgr_ring_push(r, ITEM(v));
	cr_assert_eq(over_bytes(r), 1);
	lgr_ring_free(r);
}

Test(ring, credit_grows_the_slots_across_a_wrap_up_to_extra_max)
{
	struct recorder drops = {0};
	struct lgr_ring *r = ring_on_credit(4, weigh_one, 6, 1000, &drops);
	const uintptr_t first[] = {1, 2}, all[] = {4, 5, 6, 7, 8, 9, 10, 11, 12, 13};

	for (uintptr_t i = 1; i <= 3; i++)
		lgr_ring_push(r, ITEM(i));
	assert_pops(r, 2, first, 2); /* the oldest now sits past the start of the slots */
	for (uintptr_t i = 4; i <= 12; i++)
		cr_assert_not(lgr_ring_push(r, ITEM(i)));
	assert_counts(r, 12, 2, 0, 10);
	/* 4 + 6 items held: the credit would take more, extra_max does not */
	assert_push_drops(r, 13, &drops, 3);
	assert_counts(r, 13, 2, 1, 10);
	cr_assert_eq(over_bytes(r), 6);
	assert_pops(r, 64, all, 10);
	cr_assert_eq(over_bytes(r), 0);
	lgr_ring_free(r);
}

Test(ring, new_rejects_an_oversized_extra_max)
{
	struct lgr_ring_conf conf = {.capacity = 4, .weigh = weigh_one, .extra_max = (size_t)LGR_RING_MAX_CAPACITY + 1};
	struct lgr_ring *r = ITEM(1);

	cr_assert_eq(lgr_ring_new(&conf, &r), LGR_EINVAL);
	cr_assert_null(r);
}

/* --- many writers --------------------------------------------------------------------------------------------- */

#define WRITERS	 4
#define PUSHES	 200000
#define SEQ_BITS 32
#define CREDIT	 300 /* the most the reader's queue takes, with weigh_one in items */

struct mt {
	struct lgr_ring *ring;
	atomic_int writers_left;
	atomic_ullong drop_calls;
	atomic_ullong drops_reported;
	atomic_bool stop_sampler;
	unsigned long long popped;
	unsigned long long order_errors;
	unsigned long long invariant_errors;
	unsigned long long samples;
	int id;
	size_t extra_max; /* with credit: weigh_one, so over_bytes is exactly the items beyond capacity */
	size_t most_over; /* the most items beyond capacity the reader found */
};

struct writer_arg {
	struct mt *mt;
	uintptr_t id;
};

static void count_drop(void *item, void *ud)
{
	struct mt *mt = ud;

	(void)item;
	atomic_fetch_add(&mt->drop_calls, 1);
}

static void *writer(void *arg)
{
	struct writer_arg *w = arg;
	unsigned long long dropped = 0;

	/* Item = writer id in the high bits, 1-based sequence in the low bits. */
	for (uintptr_t seq = 1; seq <= PUSHES; seq++)
		dropped += lgr_ring_push(w->mt->ring, ITEM((w->id << SEQ_BITS) | seq));
	atomic_fetch_add(&w->mt->drops_reported, dropped);
	atomic_fetch_sub(&w->mt->writers_left, 1);
	lgr_ring_wake(w->mt->ring);
	return NULL;
}

static void consume(struct mt *mt, void **items, size_t n, uintptr_t *last)
{
	for (size_t i = 0; i < n; i++) {
		uintptr_t v = VAL(items[i]);
		uintptr_t id = v >> SEQ_BITS;
		uintptr_t seq = v & ((UINT64_C(1) << SEQ_BITS) - 1);

		/* Each writer's items leave in the order it pushed them, with gaps only where items were dropped. */
		if (id >= WRITERS || seq <= last[id])
			mt->order_errors++;
		else
			last[id] = seq;
	}
	mt->popped += n;
}

static void *reader(void *arg)
{
	struct mt *mt = arg;
	uintptr_t last[WRITERS] = {0};
	void *items[64];

	for (unsigned turn = 0; atomic_load(&mt->writers_left) > 0; turn++) {
		size_t n = lgr_ring_pop_wait(mt->ring, items, 64, 100);

		consume(mt, items, n, last);
		if (mt->extra_max > 0) {
			struct lgr_ring_stats st;

			lgr_ring_stats(mt->ring, &st);
			if (st.len > st.capacity && st.len - st.capacity > mt->most_over)
				mt->most_over = st.len - st.capacity;
			lgr_ring_set_credit(mt->ring, turn % 3 == 0 ? 0 : CREDIT); /* a queue that fills and empties */
		}
	}
	for (;;) {
		size_t n = lgr_ring_pop(mt->ring, items, 64);

		if (n == 0)
			break;
		consume(mt, items, n, last);
	}
	return NULL;
}

static void *sampler(void *arg)
{
	struct mt *mt = arg;

	while (!atomic_load(&mt->stop_sampler)) {
		struct lgr_ring_stats st;

		lgr_ring_stats(mt->ring, &st);
		if (st.pushed != st.popped + st.dropped + st.len || st.len > st.capacity + mt->extra_max ||
			st.over_bytes != (st.len > st.capacity ? st.len - st.capacity : 0) || st.over_bytes > CREDIT)
			mt->invariant_errors++;
		mt->samples++;
		sched_yield();
	}
	return NULL;
}

static void run_many(struct lgr_ring_conf *conf, size_t extra_max)
{
	struct mt mt = {0};
	struct writer_arg args[WRITERS];
	pthread_t w[WRITERS], rd, smp;
	struct lgr_ring_stats st;

	conf->drop = count_drop;
	conf->drop_ud = &mt;
	mt.extra_max = extra_max;
	cr_assert_eq(lgr_ring_new(conf, &mt.ring), LGR_OK);
	atomic_store(&mt.writers_left, WRITERS);
	pthread_create(&rd, NULL, reader, &mt);
	pthread_create(&smp, NULL, sampler, &mt);
	for (int i = 0; i < WRITERS; i++) {
		args[i].mt = &mt;
		args[i].id = (uintptr_t)i;
		pthread_create(&w[i], NULL, writer, &args[i]);
	}
	for (int i = 0; i < WRITERS; i++)
		pthread_join(w[i], NULL);
	pthread_join(rd, NULL);
	atomic_store(&mt.stop_sampler, true);
	pthread_join(smp, NULL);

	lgr_ring_stats(mt.ring, &st);
	cr_assert_eq(st.pushed, (uint64_t)WRITERS * PUSHES);
	cr_assert_eq(st.len, 0);
	cr_assert_eq(st.popped, mt.popped, "popped %llu, reader saw %llu", (unsigned long long)st.popped, mt.popped);
	cr_assert_eq(st.pushed, st.popped + st.dropped);
	cr_assert_eq(atomic_load(&mt.drop_calls), st.dropped, "drop callback %llu times for %llu drops",
		atomic_load(&mt.drop_calls), (unsigned long long)st.dropped);
	cr_assert_eq(atomic_load(&mt.drops_reported), st.dropped);
	cr_assert_eq(mt.order_errors, 0);
	cr_assert_eq(
		mt.invariant_errors, 0, "%llu of %llu snapshots broke the invariant", mt.invariant_errors, mt.samples);
	if (extra_max > 0)
		cr_assert_leq(mt.most_over, CREDIT, "%zu items beyond capacity", mt.most_over);
	cr_log_info("popped %llu dropped %llu snapshots %llu, at most %zu beyond capacity", mt.popped,
		(unsigned long long)st.dropped, mt.samples, mt.most_over);
	lgr_ring_free(mt.ring);
}

Test(ring, many_writers_and_one_reader_keep_every_count_exact, .timeout = 300)
{
	struct lgr_ring_conf conf = {.capacity = 1024};

	run_many(&conf, 0);
}

Test(ring, many_writers_with_a_changing_credit_keep_order_and_counts, .timeout = 300)
{
	struct lgr_ring_conf conf = {.capacity = 256, .weigh = weigh_one, .extra_max = 2048};

	run_many(&conf, conf.extra_max);
}
