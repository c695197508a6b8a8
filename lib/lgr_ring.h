/*
 * lgr_ring.h: a bounded drop-oldest queue of pointers between many writers and one reader.
 *
 * This is the buffer the agent keeps between ingress and egress and the router keeps per subscriber: a writer must
 * never wait for a slow reader, so when the ring is full the oldest item is removed to make room, handed to the
 * drop callback (an envelope unref, say) and counted. The counters obey
 *
 *	pushed == popped + dropped + length
 *
 * exactly in every lgr_ring_stats() snapshot, because all four change inside the same critical section.
 *
 * Threading:
 * - lgr_ring_push, lgr_ring_wake and lgr_ring_stats may be called from any number of threads at once.
 * - lgr_ring_pop, lgr_ring_pop_wait, lgr_ring_wait, lgr_ring_drain and lgr_ring_fd_reset belong to one reader
 *   thread at a time (several readers would not corrupt the ring, but the wake-up protocol assumes one).
 * - lgr_ring_new and lgr_ring_free must not race with anything else on the same ring.
 * - One short mutex guards the ring; pop and drain take up to their whole batch per lock, so the reader pays one
 *   lock per batch. The drop, notify and drain callbacks run outside the lock, in the calling thread.
 *
 * Waking the reader (pick what fits the reader's loop):
 * - lgr_ring_wait / lgr_ring_pop_wait block on a condition variable with a timeout;
 * - conf.eventfd gives an fd that polls readable when the ring turns non-empty or lgr_ring_wake is called;
 * - conf.notify is called on the same occasions, for loops with their own cross-thread wake-up (event_active).
 * Notification is edge-triggered on empty -> non-empty: a reader woken by the fd or the callback must pop until a
 * pop returns fewer items than it asked for (the ring was empty at that moment), or reschedule itself; otherwise
 * no further notification comes. With the fd, reset it (lgr_ring_fd_reset) before popping, not after.
 * A reader that sends in batches can leave a partial batch in the ring (lgr_ring_pop_min) and be notified again
 * when the ring holds a full one (conf.notify_at): then it needs a timer of its own for the partial batch, since
 * nothing notifies between the two edges. Woken once per batch instead of once per item, the writers' wake-ups
 * (a system call each) stop costing more than the items.
 *
 * Credit (optional): a reader that hands items on to a queue of its own, bounded in bytes (a stream's send queue),
 * would take them all at once if it had a CPU; dropping them because it waited for one loses them for nothing. With
 * conf.weigh set, the reader tells the ring how many bytes that queue could still take (lgr_ring_set_credit, after
 * each hand-over), and a push into a full ring keeps the oldest items beyond capacity instead of dropping them,
 * while what those weigh stays within the credit and their number within conf.extra_max. They are the oldest, so
 * they leave first; the order never changes. The slot array grows for them (doubling, under the lock, by the
 * pushing writer) and does not shrink. A ring whose reader is merely late therefore holds capacity items plus what
 * its reader's queue has room for, never more; one whose reader's queue is full drops as if it had no credit.
 */
#ifndef LGR_RING_H
#define LGR_RING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lgr.h"

struct lgr_ring;

/* Receives an item the ring gives up: a dropped item, an item still queued at free, a drained item. */
typedef void lgr_ring_item_fn(void *item, void *ud);
/* Tells the reader that items arrived in an empty ring or that lgr_ring_wake was called. Must not block. */
typedef void lgr_ring_notify_fn(void *ud);

/* The bytes an item would take in the reader's own queue (see "Credit"). Called under the ring's lock: keep it cheap.
 */
typedef size_t lgr_ring_weigh_fn(const void *item);

#define LGR_RING_MAX_CAPACITY (1u << 24) /* bounds the slot array (128 MiB of pointers) */

struct lgr_ring_conf {
	size_t capacity;	/* slots, 1 .. LGR_RING_MAX_CAPACITY; fixed for the ring's life */
	lgr_ring_item_fn *drop; /* optional: takes each item pushed out by a newer one (and those left at free) */
	void *drop_ud;
	lgr_ring_notify_fn *notify; /* optional: see "Waking the reader" */
	void *notify_ud;
	bool eventfd;		  /* create the fd returned by lgr_ring_fd */
	size_t notify_at;	  /* > 1: also notify when a push (not one that dropped) brings the length to this */
	lgr_ring_weigh_fn *weigh; /* optional: enables credit (see "Credit") */
	size_t extra_max;	  /* with weigh: items kept beyond capacity at most (0 .. LGR_RING_MAX_CAPACITY) */
};

struct lgr_ring_stats {
	uint64_t pushed;  /* items ever accepted */
	uint64_t popped;  /* items ever handed to the reader (pop and drain) */
	uint64_t dropped; /* items ever pushed out by newer ones */
	size_t len;	  /* items queued now */
	size_t capacity;
	size_t over_bytes; /* what the items held beyond capacity on credit weigh */
};

/*
 * Creates a ring. Returns LGR_OK and *out, LGR_EINVAL (capacity 0, or it or extra_max above the maximum),
 * LGR_ENOMEM, or LGR_EIO (the eventfd could not be created; detail through lgr_log).
 */
int lgr_ring_new(const struct lgr_ring_conf *conf, struct lgr_ring **out);

/* Frees the ring; items still queued go to the drop callback (not counted). NULL is a no-op. */
void lgr_ring_free(struct lgr_ring *ring);

/*
 * Appends item (any pointer, NULL included). Never blocks beyond the short lock and never fails: on a full ring (one
 * its credit lets hold no more) the oldest item is removed, counted as dropped and handed to the drop callback before
 * this returns (in this thread, after the lock is released). Returns how many were dropped to make room: 0, 1, or 2
 * when the items held beyond capacity weigh more than a credit that shrank (see "Credit").
 */
size_t lgr_ring_push(struct lgr_ring *ring, void *item);

/*
 * Moves up to max of the oldest items into items[], oldest first, without blocking. Returns how many; fewer than
 * max means the ring was empty when the call returned.
 */
size_t lgr_ring_pop(struct lgr_ring *ring, void **items, size_t max);

/*
 * lgr_ring_pop, but only when the ring holds at least min items (min 0 or 1: lgr_ring_pop); otherwise nothing is
 * taken. *left (may be NULL) receives the length after the call.
 */
size_t lgr_ring_pop_min(struct lgr_ring *ring, void **items, size_t max, size_t min, size_t *left);

/*
 * Waits until the ring holds an item, lgr_ring_wake is called, or timeout_ms passes (negative: no timeout, 0: just
 * look). Returns the number of queued items, 0 on timeout or wake with an empty ring. A wake that arrives while
 * nobody waits is kept for the next wait, so "set my stop flag, then wake" can never be lost; every wait return
 * consumes it, so the reader checks its own condition after each return.
 */
size_t lgr_ring_wait(struct lgr_ring *ring, int timeout_ms);

/* lgr_ring_wait followed by lgr_ring_pop, under one lock. */
size_t lgr_ring_pop_wait(struct lgr_ring *ring, void **items, size_t max, int timeout_ms);

/* Makes the reader's current or next wait return, and signals the fd and notify callback. Any thread. */
void lgr_ring_wake(struct lgr_ring *ring);

/*
 * For shutdown: pops as many items as were queued at the time of the call (fewer if writers pushed some out
 * meanwhile) and hands each to fn (NULL: discard), oldest first, outside the lock; they count as popped. Bounded
 * by that initial length, so this ends even while writers keep pushing. Returns the count.
 */
size_t lgr_ring_drain(struct lgr_ring *ring, lgr_ring_item_fn *fn, void *ud);

/* Sets the credit (see "Credit"): bytes the items beyond capacity may weigh from now on. Any thread. */
void lgr_ring_set_credit(struct lgr_ring *ring, size_t bytes);
/* A consistent snapshot of the counters. Any thread. */
void lgr_ring_stats(struct lgr_ring *ring, struct lgr_ring_stats *st);

/* The eventfd (non-blocking, close-on-exec, owned by the ring), or -1 when conf.eventfd was false. */
int lgr_ring_fd(const struct lgr_ring *ring);

/* Clears the fd's readable state; call before popping. No-op without an fd. */
void lgr_ring_fd_reset(struct lgr_ring *ring);

#endif
