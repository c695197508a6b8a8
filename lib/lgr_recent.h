/*
 * lgr_recent.h: the recent-envelope store behind omfirehose's Log Cache read endpoint
 * (GET /api/v1/read/{source_id}, wire.md section 4) and `cf logs --recent`.
 *
 * Per source id, a ring of references to the last `size` envelopes written for it (in arrival order; the oldest
 * reference is dropped when a newer one arrives). At most `max_sources` source ids are kept: a write for a new
 * source id when the store is full evicts the source id written least recently (reads do not count as use).
 *
 * A query answers as Log Cache's store does: the envelopes of one source id whose timestamp lies in
 * [start_time, end_time) and whose type is in the mask, sorted by timestamp (envelopes with equal timestamps keep
 * their arrival order), ascending by default. The limit is applied in the direction of the walk: ascending gives
 * the OLDEST `limit` envelopes of the range, oldest first; descending gives the NEWEST `limit`, newest first.
 *
 * Ownership: lgr_recent_add takes its own reference to the envelope (the caller keeps its own). A query hands
 * back an array of references owned by the caller (release with lgr_recent_release). Every reference the store
 * holds is dropped on eviction, on replacement in a ring, and at lgr_recent_free.
 *
 * Threading: one mutex guards the store. lgr_recent_add and lgr_recent_query may be called from any number of
 * threads at once (rsyslog action workers write, the network thread reads). A write to a source id that exists
 * takes the lock once and allocates nothing; the envelope it pushes out is released after the lock is dropped.
 * The first write of a source id allocates its ring outside the lock. A query copies references under the lock and
 * sorts outside it. lgr_recent_new and lgr_recent_free must not race with anything else on the same store.
 */
#ifndef LGR_RECENT_H
#define LGR_RECENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lgr.h"
#include "lgr_env.h"

#define LGR_RECENT_DEFAULT_SIZE	       100u   /* recent.size */
#define LGR_RECENT_DEFAULT_MAX_SOURCES 10000u /* recent.maxSources */
#define LGR_RECENT_MAX_SIZE	       (1u << 20)
#define LGR_RECENT_MAX_SOURCES	       (1u << 24)

/* Type mask bits for lgr_recent_query: 1u << LGR_ENV_LOG, ... A mask of 0 selects every type. */
#define LGR_RECENT_TYPE(t) (1u << (unsigned)(t))

struct lgr_recent;

struct lgr_recent_stats {
	size_t sources;	    /* source ids kept now */
	size_t envelopes;   /* envelope references held now */
	uint64_t written;   /* envelopes ever added */
	uint64_t evictions; /* source ids ever evicted to make room for a new one */
};

/*
 * A new empty store. size: envelopes kept per source id (1 .. LGR_RECENT_MAX_SIZE); max_sources: source ids kept
 * (1 .. LGR_RECENT_MAX_SOURCES). Returns LGR_OK and *out, LGR_EINVAL (a bound out of range) or LGR_ENOMEM.
 */
int lgr_recent_new(size_t size, size_t max_sources, struct lgr_recent **out);

/* Releases every reference held and frees the store. NULL is a no-op. */
void lgr_recent_free(struct lgr_recent *r);

/*
 * Keeps a reference to env under env->pb->source_id (an empty source id is a source id like any other).
 * Returns LGR_OK, LGR_EINVAL (NULL argument) or LGR_ENOMEM (the first envelope of a source id could not get its
 * ring; nothing was kept).
 */
int lgr_recent_add(struct lgr_recent *r, struct lgr_env *env);

/*
 * The envelopes of source_id in [start_time, end_time) with a type in type_mask (0: any), ordered and limited as
 * described above. limit 0 means no limit (the whole ring). On LGR_OK, *out is a malloc'd array of *n references
 * owned by the caller (NULL when *n is 0); release it with lgr_recent_release. An unknown source id is not an
 * error: *n is 0. Returns LGR_OK, LGR_EINVAL (NULL argument) or LGR_ENOMEM (*out NULL, *n 0).
 */
int lgr_recent_query(struct lgr_recent *r, const char *source_id, int64_t start_time, int64_t end_time,
	unsigned type_mask, size_t limit, bool descending, struct lgr_env ***out, size_t *n);

/* Drops the references of a query's answer and frees the array. NULL is a no-op. */
void lgr_recent_release(struct lgr_env **envs, size_t n);

/* A consistent snapshot of the counters. */
void lgr_recent_stats(struct lgr_recent *r, struct lgr_recent_stats *out);

#endif
