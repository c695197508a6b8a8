/*
 * test_egress.c: a subscriber's ring when omfirehose's network thread is late (omf_egress.c, lgr_ring's credit).
 *
 * The sink here holds the network thread inside its first delivery, as a thread that waits for a CPU would leave
 * it, while envelopes keep being published into a ring of 100. A sink that reports room in its own queue
 * (omf_sink.room) loses none of those that fit in that room, and they all arrive, in order, once the thread moves
 * on; a sink without room loses all but the newest 100, as before; a sink with a little room loses all but the
 * newest 100 and those its room holds.
 */
#include <criterion/criterion.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "omf.h"

#define BUFFER	  100
#define PUBLISHED 500 /* while the network thread is held */

struct fake {
	pthread_mutex_t mut;
	pthread_cond_t cond;
	bool held;     /* the network thread is inside the first delivery */
	bool release;  /* the test lets it go */
	bool has_room; /* the sink answers room() */
	size_t room;   /* bytes */
	uint32_t got[PUBLISHED + 1];
	size_t ngot;
	struct omf_sub *sub;
	int sub_rc;
	bool subscribed;
};

static struct fake fk;

/* The first value of each envelope's payload: its number (published in order). */
static uint32_t number_of(struct omf_env *e)
{
	const uint8_t *wire;
	size_t len;
	uint32_t v;

	omf_env_wire(e, &wire, &len);
	cr_assert_eq(len, sizeof(v));
	memcpy(&v, wire, sizeof(v));
	return v;
}

static int fake_deliver(
	struct omf_sub *sub, struct omf_env *const *envs, size_t n, size_t *taken, size_t *sent, void *ud)
{
	(void)sub;
	(void)ud;
	pthread_mutex_lock(&fk.mut);
	if (!fk.held) {
		fk.held = true;
		pthread_cond_broadcast(&fk.cond);
		while (!fk.release)
			pthread_cond_wait(&fk.cond, &fk.mut);
	}
	for (size_t i = 0; i < n; i++)
		if (fk.ngot < PUBLISHED + 1)
			fk.got[fk.ngot++] = number_of(envs[i]);
	pthread_cond_broadcast(&fk.cond);
	pthread_mutex_unlock(&fk.mut);
	*taken = *sent = n;
	return LGR_OK;
}

static size_t fake_room(struct omf_sub *sub, void *ud)
{
	(void)sub;
	(void)ud;
	return fk.room;
}

static const struct omf_sink with_room = {.deliver = fake_deliver, .room = fake_room};
static const struct omf_sink without_room = {.deliver = fake_deliver};

/* Runs on the network thread: subscribes to logs of "app", eagerly (every envelope offered at once). */
static void subscribe(evutil_socket_t fd, short what, void *arg)
{
	struct omf_egress *eg = arg;
	struct lgr_selector sel = {.source_id = "app", .type = LGR_ENV_LOG};
	struct lgr_select_req req = {.shard_id = "", .deterministic_name = "", .n_selectors = 1, .selectors = &sel};
	struct omf_sub_opts opts = {.eager = true};

	(void)fd;
	(void)what;
	pthread_mutex_lock(&fk.mut);
	fk.sub_rc = omf_sub_new_opts(eg, &req, fk.has_room ? &with_room : &without_room, NULL, "test", &opts, &fk.sub);
	fk.subscribed = true;
	pthread_cond_broadcast(&fk.cond);
	pthread_mutex_unlock(&fk.mut);
}

static void publish(struct omf_egress *eg, uint32_t number)
{
	uint8_t *wire;
	struct omf_env *e = omf_env_new_log(sizeof(number), "app", 3, &wire);

	cr_assert_not_null(e);
	memcpy(wire, &number, sizeof(number));
	cr_assert_eq(omf_egress_publish(eg, e), 1);
	omf_env_unref(e);
}

/* The bytes one published envelope weighs in a ring (its EnvelopeBatch record). */
static size_t weight(void)
{
	uint8_t *wire;
	const uint8_t *rec;
	size_t len;
	struct omf_env *e = omf_env_new_log(4, "app", 3, &wire);

	cr_assert_not_null(e);
	memset(wire, 0, 4);
	omf_env_record(e, &rec, &len);
	omf_env_unref(e);
	return len;
}

/*
 * Holds the network thread in the first delivery, publishes PUBLISHED more, releases it, and waits until the
 * subscriber has received everything its ring kept. Returns the envelopes dropped.
 */
static uint64_t run(bool has_room, size_t room)
{
	struct omf_counters ctr = {0};
	struct omf_egress_conf conf = {.name = "test",
		.address = "127.0.0.1",
		.sub_buffer = BUFFER,
		.max_streams = 4,
		.batch_max = 10,
		.flush_ms = 100,
		.ctr = &ctr};
	struct omf_egress *eg;
	uint16_t port;
	uint64_t dropped;

	evthread_use_pthreads();
	memset(&fk, 0, sizeof(fk));
	pthread_mutex_init(&fk.mut, NULL);
	pthread_cond_init(&fk.cond, NULL);
	fk.has_room = has_room;
	fk.room = room;
	cr_assert_eq(omf_egress_new(&conf, &eg), LGR_OK);
	cr_assert_eq(omf_egress_start(eg, &port), LGR_OK);
	cr_assert_eq(event_base_once(omf_egress_base(eg), -1, EV_TIMEOUT, subscribe, eg, NULL), 0);
	pthread_mutex_lock(&fk.mut);
	while (!fk.subscribed)
		pthread_cond_wait(&fk.cond, &fk.mut);
	cr_assert_eq(fk.sub_rc, LGR_OK);
	pthread_mutex_unlock(&fk.mut);

	publish(eg, 0);
	pthread_mutex_lock(&fk.mut);
	while (!fk.held)
		pthread_cond_wait(&fk.cond, &fk.mut);
	pthread_mutex_unlock(&fk.mut);
	for (uint32_t i = 1; i <= PUBLISHED; i++)
		publish(eg, i);
	dropped = __atomic_load_n(&ctr.dropped, __ATOMIC_RELAXED);

	pthread_mutex_lock(&fk.mut);
	fk.release = true;
	pthread_cond_broadcast(&fk.cond);
	while (fk.ngot < PUBLISHED + 1 - dropped)
		pthread_cond_wait(&fk.cond, &fk.mut);
	pthread_mutex_unlock(&fk.mut);
	/* the newest arrive, oldest first, after the one the thread was held in */
	cr_assert_eq(fk.got[0], 0);
	for (size_t i = 1; i < fk.ngot; i++)
		cr_assert_eq(fk.got[i], (uint32_t)(dropped + i), "received #%zu is %u, want %llu", i, fk.got[i],
			(unsigned long long)(dropped + i));
	omf_egress_free(eg, 100); /* frees the subscriber too (its sink has no close) */
	/* counted after the delivery returns: read once the network thread is gone */
	cr_assert_eq(__atomic_load_n(&ctr.egress, __ATOMIC_RELAXED), PUBLISHED + 1 - dropped);
	pthread_cond_destroy(&fk.cond);
	pthread_mutex_destroy(&fk.mut);
	return dropped;
}

Test(egress, a_late_network_thread_loses_nothing_a_sink_with_room_would_take, .timeout = 60)
{
	cr_assert_eq(run(true, 1 << 20), 0);
}

Test(egress, a_sink_without_room_keeps_only_the_newest_buffer, .timeout = 60)
{
	cr_assert_eq(run(false, 0), PUBLISHED - BUFFER);
}

Test(egress, a_sink_with_little_room_keeps_the_buffer_and_what_its_room_holds, .timeout = 60)
{
	const size_t extra = 50;

	cr_assert_eq(run(true, extra * weight()), PUBLISHED - BUFFER - extra);
}
