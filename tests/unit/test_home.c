/*
 * test_home.c: the homes omfirehose's workers give the blocks they publish (omf_egress.c). A block whose last
 * reference goes on another thread must come back to its home and be freed by the worker's thread when it collects,
 * never by the thread that released it; a home whose worker left is freed by the last block, with nothing leaked
 * (valgrind and ASan in CI). free() is wrapped (-Wl,--wrap=free) to see which thread frees each block.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "omf.h"

#define N(a)   (sizeof(a) / sizeof((a)[0]))
#define BLOCKS 1000

void __real_free(void *p);
void __wrap_free(void *p);

/* The blocks under watch and the thread that freed each (0: not yet). */
static void *watched[BLOCKS];
static pthread_t freed_by[BLOCKS];
static bool freed[BLOCKS];
static pthread_mutex_t watch_mut = PTHREAD_MUTEX_INITIALIZER;

void __wrap_free(void *p)
{
	if (p != NULL) {
		pthread_mutex_lock(&watch_mut);
		for (size_t i = 0; i < BLOCKS; i++) {
			if (watched[i] == p && !freed[i]) {
				freed[i] = true;
				freed_by[i] = pthread_self();
				break;
			}
		}
		pthread_mutex_unlock(&watch_mut);
	}
	__real_free(p);
}

static size_t count_freed(void)
{
	size_t n = 0;

	pthread_mutex_lock(&watch_mut);
	for (size_t i = 0; i < BLOCKS; i++)
		n += freed[i];
	pthread_mutex_unlock(&watch_mut);
	return n;
}

/* BLOCKS log blocks, each with home h (NULL: none), refcount 1. */
static void make_blocks(struct omf_env **envs, struct omf_home *h)
{
	uint8_t *wire;

	memset(freed, 0, sizeof(freed));
	for (size_t i = 0; i < BLOCKS; i++) {
		envs[i] = omf_env_new_log(4, "app", 3, &wire);
		cr_assert_not_null(envs[i]);
		memcpy(wire, "\x08\x01\x10\x02", 4);
		omf_env_set_home(envs[i], h);
		watched[i] = envs[i];
	}
}

struct releaser {
	struct omf_env **envs;
	size_t from, to;
};

static void *release(void *arg)
{
	struct releaser *r = arg;

	for (size_t i = r->from; i < r->to; i++)
		omf_env_unref(r->envs[i]);
	return NULL;
}

/* Releases envs[first..BLOCKS) once, spread over nthreads threads. */
static void release_on_threads(struct omf_env **envs, size_t first, size_t nthreads)
{
	struct releaser r[4];
	pthread_t t[4];

	cr_assert_leq(nthreads, N(t));
	for (size_t i = 0; i < nthreads; i++) {
		r[i] = (struct releaser){
			envs, first + (BLOCKS - first) * i / nthreads, first + (BLOCKS - first) * (i + 1) / nthreads};
		cr_assert_eq(pthread_create(&t[i], NULL, release, &r[i]), 0);
	}
	for (size_t i = 0; i < nthreads; i++)
		cr_assert_eq(pthread_join(t[i], NULL), 0);
}

Test(home, blocks_released_on_other_threads_are_freed_by_the_worker_that_collects)
{
	static struct omf_env *envs[BLOCKS];
	struct omf_home *h;

	cr_assert_eq(omf_home_new(&h), LGR_OK);
	make_blocks(envs, h);
	for (size_t i = 0; i < BLOCKS; i++)
		omf_env_ref(envs[i]); /* shared: the first release is not the last */
	release_on_threads(envs, 0, 4);
	omf_home_collect(h);
	cr_assert_eq(count_freed(), 0, "a block still referenced was freed");
	release_on_threads(envs, 0, 2); /* the last references */
	cr_assert_eq(count_freed(), 0, "a releasing thread freed a block that has a home");
	omf_home_collect(h);
	cr_assert_eq(count_freed(), BLOCKS);
	for (size_t i = 0; i < BLOCKS; i++)
		cr_assert(pthread_equal(freed_by[i], pthread_self()), "block %zu freed by another thread", i);
	omf_home_leave(h);
}

Test(home, a_home_whose_worker_left_is_freed_by_its_last_block)
{
	static struct omf_env *envs[BLOCKS];
	struct omf_home *h;

	cr_assert_eq(omf_home_new(&h), LGR_OK);
	make_blocks(envs, h);
	omf_env_unref(envs[0]); /* returned before the worker leaves: freed by the leaving */
	omf_home_leave(h);
	cr_assert_eq(count_freed(), 1);
	release_on_threads(envs, 1, 4);
	cr_assert_eq(count_freed(), BLOCKS, "blocks returned after the worker left were not freed");
}

Test(home, blocks_without_a_home_are_freed_by_the_thread_that_releases_them)
{
	static struct omf_env *envs[BLOCKS];
	size_t elsewhere = 0;

	make_blocks(envs, NULL);
	release_on_threads(envs, 0, 4);
	cr_assert_eq(count_freed(), BLOCKS);
	for (size_t i = 0; i < BLOCKS; i++)
		elsewhere += !pthread_equal(freed_by[i], pthread_self());
	cr_assert_eq(elsewhere, BLOCKS);
}
