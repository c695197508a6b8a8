/*
 * lgr_ring.c: the drop-oldest ring between many writers and one reader (see lgr_ring.h for the contract).
 *
 * A plain circular array under one mutex. The critical sections are a few stores long and the reader takes a whole
 * batch per lock, so contention stays low; bench/bench_ring measures it. Anything that can take long (the drop
 * callback, cond signalling, the eventfd write, the notify callback) happens after the unlock.
 */
#define _GNU_SOURCE /* PTHREAD_MUTEX_ADAPTIVE_NP */
#include "lgr_ring.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#define DRAIN_BATCH 64

struct lgr_ring {
	pthread_mutex_t lock;
	pthread_cond_t nonempty; /* signalled on empty -> non-empty and on wake, only when waiters > 0 */
	void **slots;
	size_t size;	 /* slots allocated: capacity, more once credit kept items beyond it */
	size_t capacity; /* items held before the oldest are dropped (or kept on credit) */
	size_t head;	 /* index of the oldest item */
	size_t len;
	lgr_ring_weigh_fn *weigh; /* NULL: no credit */
	size_t extra_max;	  /* items beyond capacity at most */
	size_t credit;		  /* atomic: bytes the items beyond capacity may weigh now */
	size_t over_bytes;	  /* what the items beyond capacity (the oldest len - capacity) weigh */
	uint64_t pushed;
	uint64_t popped;
	uint64_t dropped;
	unsigned waiters;
	bool woken; /* a wake not yet consumed by a wait */
	lgr_ring_item_fn *drop;
	void *drop_ud;
	lgr_ring_notify_fn *notify;
	void *notify_ud;
	size_t notify_at;
	int efd;
};

static void mutex_init(pthread_mutex_t *m)
{
	pthread_mutexattr_t attr;

	pthread_mutexattr_init(&attr);
#ifdef PTHREAD_ADAPTIVE_MUTEX_INITIALIZER_NP
	/* The lock is held for a handful of stores: spinning briefly beats sleeping in the kernel. */
	pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ADAPTIVE_NP);
#endif
	pthread_mutex_init(m, &attr);
	pthread_mutexattr_destroy(&attr);
}

int lgr_ring_new(const struct lgr_ring_conf *conf, struct lgr_ring **out)
{
	struct lgr_ring *r = NULL;
	pthread_condattr_t cattr;
	int rc;

	*out = NULL;
	if (conf == NULL || conf->capacity == 0 || conf->capacity > LGR_RING_MAX_CAPACITY ||
		conf->extra_max > LGR_RING_MAX_CAPACITY) {
		rc = LGR_EINVAL;
		goto out;
	}
	r = calloc(1, sizeof(*r));
	if (r == NULL) {
		rc = LGR_ENOMEM;
		goto out;
	}
	r->efd = -1;
	r->slots = calloc(conf->capacity, sizeof(*r->slots));
	if (r->slots == NULL) {
		rc = LGR_ENOMEM;
		goto out;
	}
	if (conf->eventfd) {
		r->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (r->efd < 0) {
			lgr_log(LGR_LOG_ERR, "ring: eventfd: %s", strerror(errno));
			rc = LGR_EIO;
			goto out;
		}
	}
	r->size = conf->capacity;
	r->capacity = conf->capacity;
	r->weigh = conf->weigh;
	r->extra_max = conf->weigh != NULL ? conf->extra_max : 0;
	r->drop = conf->drop;
	r->drop_ud = conf->drop_ud;
	r->notify = conf->notify;
	r->notify_ud = conf->notify_ud;
	r->notify_at = conf->notify_at;
	mutex_init(&r->lock);
	/* Timeouts are intervals: a wall-clock jump must not stretch or cut them. */
	pthread_condattr_init(&cattr);
	pthread_condattr_setclock(&cattr, CLOCK_MONOTONIC);
	pthread_cond_init(&r->nonempty, &cattr);
	pthread_condattr_destroy(&cattr);
	*out = r;
	r = NULL; /* ownership transferred */
	rc = LGR_OK;
out:
	if (r != NULL) {
		if (r->efd >= 0)
			close(r->efd);
		free(r->slots);
		free(r);
	}
	return rc;
}

void lgr_ring_free(struct lgr_ring *r)
{
	if (r == NULL)
		return;
	for (size_t i = 0; i < r->len; i++) {
		void *item = r->slots[(r->head + i) % r->size];

		if (r->drop != NULL)
			r->drop(item, r->drop_ud);
	}
	if (r->efd >= 0)
		close(r->efd);
	pthread_cond_destroy(&r->nonempty);
	pthread_mutex_destroy(&r->lock);
	free(r->slots);
	free(r);
}

/* Tells an event-loop reader; called without the lock. */
static void notify_reader(struct lgr_ring *r)
{
	if (r->efd >= 0) {
		uint64_t one = 1;
		/* EAGAIN means the counter is saturated, i.e. already readable: nothing is lost. */
		ssize_t n = write(r->efd, &one, sizeof(one));

		(void)n;
	}
	if (r->notify != NULL)
		r->notify(r->notify_ud);
}

/* The index of the i-th oldest item (i < size); lock held. */
static size_t at(const struct lgr_ring *r, size_t i)
{
	size_t k = r->head + i;

	return k >= r->size ? k - r->size : k;
}

/* Doubles the slot array (at most capacity + extra_max), keeping the order; lock held. False: out of memory. */
static bool grow_locked(struct lgr_ring *r)
{
	size_t want = r->size * 2, end;
	void **slots;

	if (want > r->capacity + r->extra_max)
		want = r->capacity + r->extra_max;
	slots = realloc(r->slots, want * sizeof(*slots));
	if (slots == NULL)
		return false;
	if (r->len > 0 && r->head > 0) {
		/* the oldest items, from head to the old end, move to the new end */
		end = r->size - r->head;
		memmove(slots + want - end, slots + r->head, end * sizeof(*slots));
		r->head = want - end;
	}
	r->slots = slots;
	r->size = want;
	return true;
}

/*
 * Whether a push into a ring holding capacity items or more may keep them all: the item that joins those beyond
 * capacity (the oldest still within it) fits in the credit, and one more slot is there or can be made. Lock held.
 */
static bool keep_locked(struct lgr_ring *r)
{
	size_t w;

	if (r->weigh == NULL || r->len >= r->capacity + r->extra_max)
		return false;
	w = r->weigh(r->slots[at(r, r->len - r->capacity)]);
	if (r->over_bytes + w > __atomic_load_n(&r->credit, __ATOMIC_RELAXED))
		return false;
	if (r->len == r->size && !grow_locked(r))
		return false;
	r->over_bytes += w;
	return true;
}

/* Removes the oldest item, counted as dropped; lock held, len > 0. over: it was among the items beyond capacity. */
static void *drop_oldest_locked(struct lgr_ring *r, bool over)
{
	void *victim = r->slots[r->head];

	if (over)
		r->over_bytes -= r->weigh(victim);
	r->head = r->head + 1 == r->size ? 0 : r->head + 1;
	r->len--;
	r->dropped++;
	return victim;
}

size_t lgr_ring_push(struct lgr_ring *r, void *item)
{
	void *victim[2];
	size_t nvictims = 0;
	bool was_empty, filled;
	bool signal;

	pthread_mutex_lock(&r->lock);
	was_empty = r->len == 0;
	if (r->len >= r->capacity && !keep_locked(r)) {
		victim[nvictims++] = drop_oldest_locked(r, r->len > r->capacity);
		if (r->len >= r->capacity) {
			/* the oldest still within capacity goes beyond it, where the new item pushes it */
			r->over_bytes += r->weigh(r->slots[at(r, r->len - r->capacity)]);
			/* a credit that shrank is followed one item per push (the oldest is beyond capacity) */
			if (r->over_bytes > __atomic_load_n(&r->credit, __ATOMIC_RELAXED))
				victim[nvictims++] = drop_oldest_locked(r, true);
		}
	}
	r->slots[at(r, r->len)] = item;
	r->len++;
	r->pushed++;
	signal = was_empty && r->waiters > 0;
	filled = nvictims == 0 && r->notify_at > 1 && r->len == r->notify_at;
	pthread_mutex_unlock(&r->lock);

	/* Signalling after the unlock is safe: a waiter registered itself under the lock before we looked. */
	if (signal)
		pthread_cond_signal(&r->nonempty);
	if (was_empty || filled)
		notify_reader(r);
	if (r->drop != NULL)
		for (size_t i = 0; i < nvictims; i++)
			r->drop(victim[i], r->drop_ud);
	return nvictims;
}

/* Moves up to max items out; lock held. */
static size_t take_locked(struct lgr_ring *r, void **items, size_t max)
{
	size_t n = r->len < max ? r->len : max;
	size_t first = r->size - r->head; /* slots before the wrap */

	if (n == 0)
		return 0;
	if (first >= n) {
		memcpy(items, r->slots + r->head, n * sizeof(*items));
	} else {
		memcpy(items, r->slots + r->head, first * sizeof(*items));
		memcpy(items + first, r->slots, (n - first) * sizeof(*items));
	}
	if (r->len > r->capacity) {
		/* the items beyond capacity are the oldest: these leave first */
		if (n >= r->len - r->capacity)
			r->over_bytes = 0;
		else
			for (size_t i = 0; i < n; i++)
				r->over_bytes -= r->weigh(items[i]);
	}
	r->head += n;
	if (r->head >= r->size)
		r->head -= r->size;
	r->len -= n;
	r->popped += n;
	return n;
}

size_t lgr_ring_pop(struct lgr_ring *r, void **items, size_t max)
{
	size_t n;

	pthread_mutex_lock(&r->lock);
	n = take_locked(r, items, max);
	pthread_mutex_unlock(&r->lock);
	return n;
}

size_t lgr_ring_pop_min(struct lgr_ring *r, void **items, size_t max, size_t min, size_t *left)
{
	size_t n = 0;

	pthread_mutex_lock(&r->lock);
	if (r->len >= min)
		n = take_locked(r, items, max);
	if (left != NULL)
		*left = r->len;
	pthread_mutex_unlock(&r->lock);
	return n;
}

static void deadline_after(struct timespec *ts, int timeout_ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += timeout_ms / 1000;
	ts->tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

/* Waits for an item or a wake and consumes the wake; lock held. */
static void wait_locked(struct lgr_ring *r, int timeout_ms)
{
	struct timespec deadline;

	if (timeout_ms > 0)
		deadline_after(&deadline, timeout_ms);
	while (r->len == 0 && !r->woken && timeout_ms != 0) {
		int rc;

		r->waiters++;
		if (timeout_ms < 0)
			rc = pthread_cond_wait(&r->nonempty, &r->lock);
		else
			rc = pthread_cond_timedwait(&r->nonempty, &r->lock, &deadline);
		r->waiters--;
		if (rc == ETIMEDOUT)
			break;
	}
	r->woken = false;
}

size_t lgr_ring_wait(struct lgr_ring *r, int timeout_ms)
{
	size_t n;

	pthread_mutex_lock(&r->lock);
	wait_locked(r, timeout_ms);
	n = r->len;
	pthread_mutex_unlock(&r->lock);
	return n;
}

size_t lgr_ring_pop_wait(struct lgr_ring *r, void **items, size_t max, int timeout_ms)
{
	size_t n;

	pthread_mutex_lock(&r->lock);
	wait_locked(r, timeout_ms);
	n = take_locked(r, items, max);
	pthread_mutex_unlock(&r->lock);
	return n;
}

void lgr_ring_wake(struct lgr_ring *r)
{
	bool signal;

	pthread_mutex_lock(&r->lock);
	r->woken = true;
	signal = r->waiters > 0;
	pthread_mutex_unlock(&r->lock);
	if (signal)
		pthread_cond_broadcast(&r->nonempty);
	notify_reader(r);
}

size_t lgr_ring_drain(struct lgr_ring *r, lgr_ring_item_fn *fn, void *ud)
{
	void *batch[DRAIN_BATCH];
	size_t left;
	size_t total = 0;

	pthread_mutex_lock(&r->lock);
	left = r->len;
	pthread_mutex_unlock(&r->lock);
	while (left > 0) {
		size_t n = lgr_ring_pop(r, batch, left < DRAIN_BATCH ? left : DRAIN_BATCH);

		if (n == 0)
			break; /* dropped meanwhile by writers pushing into a full ring */
		for (size_t i = 0; i < n; i++)
			if (fn != NULL)
				fn(batch[i], ud);
		left -= n;
		total += n;
	}
	return total;
}

void lgr_ring_stats(struct lgr_ring *r, struct lgr_ring_stats *st)
{
	pthread_mutex_lock(&r->lock);
	st->pushed = r->pushed;
	st->popped = r->popped;
	st->dropped = r->dropped;
	st->len = r->len;
	st->capacity = r->capacity;
	st->over_bytes = r->over_bytes;
	pthread_mutex_unlock(&r->lock);
}

void lgr_ring_set_credit(struct lgr_ring *r, size_t bytes)
{
	__atomic_store_n(&r->credit, bytes, __ATOMIC_RELAXED);
}

int lgr_ring_fd(const struct lgr_ring *r)
{
	return r->efd;
}

void lgr_ring_fd_reset(struct lgr_ring *r)
{
	uint64_t v;

	if (r->efd >= 0) {
		ssize_t n = read(r->efd, &v, sizeof(v)); /* EAGAIN: already clear */

		(void)n;
	}
}
