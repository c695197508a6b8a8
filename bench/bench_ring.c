/*
 * bench_ring.c: throughput of the drop-oldest ring (1, 2, 4 writers against one batch-popping reader) and of the
 * selector matcher (1, 100, 10,000 subscriptions). Prints figures only; nothing here asserts a speed.
 *
 * Flat-out writers saturate the lock, and a mutex hands it back to the thread that just released it, so the
 * reader's share there says little; the paced run shows whether the reader keeps up with a heavy but finite load.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "lgr_env.h"
#include "lgr_ring.h"
#include "lgr_select.h"

#define RING_CAPACITY 10000 /* the agent's ring */
#define PUSHES_TOTAL  4000000
#define PACED_TOTAL   1000000
#define POP_BATCH     256
#define MATCH_ROUNDS  2000000
#define N_ENVELOPES   1024

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct ring_run {
	struct lgr_ring *ring;
	atomic_int writers_left;
	unsigned long long per_writer;
	unsigned long long popped;
	bool paced; /* writers push PACE_BURST items per millisecond instead of flat out */
};

#define PACE_BURST 250 /* 4 paced writers offer about 1 M envelopes/s, far above the router's 16 k/s warning */

static void *writer(void *arg)
{
	struct ring_run *run = arg;
	struct timespec ms = {.tv_nsec = 1000000L};

	for (unsigned long long i = 0; i < run->per_writer; i++) {
		lgr_ring_push(run->ring, (void *)(uintptr_t)(i + 1));
		if (run->paced && (i + 1) % PACE_BURST == 0)
			nanosleep(&ms, NULL);
	}
	atomic_fetch_sub(&run->writers_left, 1);
	lgr_ring_wake(run->ring);
	return NULL;
}

static void *reader(void *arg)
{
	struct ring_run *run = arg;
	void *items[POP_BATCH];

	while (atomic_load(&run->writers_left) > 0)
		run->popped += lgr_ring_pop_wait(run->ring, items, POP_BATCH, 10);
	for (size_t n; (n = lgr_ring_pop(run->ring, items, POP_BATCH)) > 0;)
		run->popped += n;
	return NULL;
}

static int bench_ring(int writers, bool paced)
{
	struct lgr_ring_conf conf = {.capacity = RING_CAPACITY};
	struct ring_run run = {.paced = paced};
	struct lgr_ring_stats st;
	pthread_t w[8], rd;
	double t0, dt;

	run.per_writer = (paced ? PACED_TOTAL : PUSHES_TOTAL) / (unsigned long long)writers;
	if (lgr_ring_new(&conf, &run.ring) != LGR_OK)
		return 1;
	atomic_store(&run.writers_left, writers);
	pthread_create(&rd, NULL, reader, &run);
	t0 = now_s();
	for (int i = 0; i < writers; i++)
		pthread_create(&w[i], NULL, writer, &run);
	for (int i = 0; i < writers; i++)
		pthread_join(w[i], NULL);
	dt = now_s() - t0;
	pthread_join(rd, NULL);
	lgr_ring_stats(run.ring, &st);
	printf("ring  %d writer%s + 1 reader%s: %6.2f M pushes/s  (popped %5.1f%%, dropped %5.1f%%, invariant %s)\n",
		writers, writers == 1 ? " " : "s", paced ? ", paced" : "", (double)st.pushed / dt / 1e6,
		100.0 * (double)st.popped / (double)st.pushed, 100.0 * (double)st.dropped / (double)st.pushed,
		st.pushed == st.popped + st.dropped + st.len ? "holds" : "BROKEN");
	lgr_ring_free(run.ring);
	return 0;
}

static void count_delivery(void *subscriber, void *ud)
{
	(void)subscriber;
	(*(unsigned long long *)ud)++;
}

/*
 * subs subscriptions, one per source id "app-<i>" (log selector), plus envelopes from N_ENVELOPES sources of which
 * every one has exactly one subscriber: the matcher must find it among all the others.
 */
static int bench_match(int subs)
{
	struct lgr_env *envs[N_ENVELOPES] = {0};
	struct lgr_select *reg = NULL;
	unsigned long long delivered = 0;
	char source[32];
	double t0, dt;
	int rc = 1;

	if (lgr_select_new(&reg) != LGR_OK)
		goto out;
	for (int i = 0; i < subs; i++) {
		struct lgr_selector sel = {.source_id = source, .type = LGR_ENV_LOG};
		struct lgr_select_sub *sub;

		snprintf(source, sizeof(source), "app-%d", i);
		if (lgr_select_add(reg, (void *)(uintptr_t)(i + 1), &sel, NULL, NULL, &sub) != LGR_OK)
			goto out;
	}
	for (int i = 0; i < N_ENVELOPES; i++) {
		envs[i] = lgr_env_new();
		if (envs[i] == NULL)
			goto out;
		snprintf(source, sizeof(source), "app-%d", i % subs);
		if (lgr_env_set_source_id(envs[i], source) != LGR_OK ||
			lgr_env_set_log(envs[i], "hello", 5, LOGGREGATOR__V2__LOG__TYPE__OUT) != LGR_OK)
			goto out;
	}
	t0 = now_s();
	for (int i = 0; i < MATCH_ROUNDS; i++)
		lgr_select_match(reg, envs[i % N_ENVELOPES], count_delivery, &delivered);
	dt = now_s() - t0;
	printf("match %5d subscriptions: %6.2f M matches/s  (%llu deliveries for %d envelopes)\n", subs,
		(double)MATCH_ROUNDS / dt / 1e6, delivered, MATCH_ROUNDS);
	rc = 0;
out:
	for (int i = 0; i < N_ENVELOPES; i++)
		lgr_env_unref(envs[i]);
	lgr_select_free(reg);
	return rc;
}

int main(void)
{
	static const int writers[] = {1, 2, 4};
	static const int subs[] = {1, 100, 10000};

	for (size_t i = 0; i < sizeof(writers) / sizeof(writers[0]); i++)
		if (bench_ring(writers[i], false) != 0)
			return 1;
	if (bench_ring(4, true) != 0)
		return 1;
	for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++)
		if (bench_match(subs[i]) != 0)
			return 1;
	return 0;
}
