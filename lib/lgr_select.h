/*
 * lgr_select.h: the egress subscription registry: which subscribers get an envelope (wire.md section 4).
 *
 * Each selector of an egress request is one subscription with a filter path:
 *   source_id ("" = any source) -> type (log, counter, gauge, timer, event)
 *   -> counter: the exact name ("" = any counter); gauge: the exact set of metric names (empty = any gauge).
 * An envelope matches a path when every level matches; a gauge set matches only an envelope whose metric names
 * are exactly that set (a subset or a superset does not match).
 *
 * Subscriptions with the same path and the same non-empty shard_id form a group: each matching envelope goes to
 * exactly one member. The member is random, unless some member of the group has a deterministic_name: then the
 * members are ordered by that name and the member is hash % n, hash = crc64-ECMA(counter name) for counters, the
 * (wrapping) sum of crc64-ECMA of the metric names for gauges, random for other types. An empty shard_id means
 * the subscription is not sharded and receives every matching envelope. A subscriber whose two selectors both
 * match receives the envelope twice. This is how the real router's pubsub behaves.
 *
 * Cost: matching looks up at most four exact paths in one hash table (any / the envelope's source, times
 * any / the envelope's name), so it does not grow with the number of subscriptions, only with the number of
 * deliveries it makes.
 *
 * Threading: a read-write lock. lgr_select_match takes it shared (any number of threads may match at once);
 * add and remove take it exclusive, preferring writers so that a steady stream of matches cannot starve them.
 * The match callback runs under the shared lock: it must be short (push to the subscriber's ring) and must not
 * call lgr_select_add/remove on the same registry (that would deadlock).
 */
#ifndef LGR_SELECT_H
#define LGR_SELECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lgr.h"
#include "lgr_env.h"
#include "egress.pb-c.h"

#define LGR_SELECT_MAX_SELECTORS   1024 /* selectors in one request */
#define LGR_SELECT_MAX_GAUGE_NAMES 1024 /* names in one gauge selector */

struct lgr_select;     /* the registry */
struct lgr_select_sub; /* one subscription (one selector of one subscriber) */

/* One selector. All strings are copied by lgr_select_add. */
struct lgr_selector {
	const char *source_id;		/* NULL or "": any source */
	enum lgr_env_type type;		/* LGR_ENV_LOG .. LGR_ENV_EVENT */
	const char *counter_name;	/* counters: NULL or "": any counter; ignored for other types */
	const char *const *gauge_names; /* gauges: the exact set (duplicates count once); ignored for other types */
	size_t n_gauge_names;		/* 0: any gauge */
};

/* Receives one delivery: the subscriber pointer given to lgr_select_add. */
typedef void lgr_select_fn(void *subscriber, void *ud);

/* A new empty registry. Returns LGR_OK and *out, or LGR_ENOMEM. */
int lgr_select_new(struct lgr_select **out);

/* Frees the registry and every subscription still in it (their handles become invalid). NULL is a no-op. */
void lgr_select_free(struct lgr_select *reg);

/*
 * Adds one subscription for subscriber (an opaque pointer handed back by lgr_select_match; not owned). shard_id
 * and deterministic_name may be NULL (= ""). Returns LGR_OK and *out (owned by the registry until
 * lgr_select_remove), LGR_EINVAL (bad type), LGR_ELIMIT (too many gauge names) or LGR_ENOMEM.
 */
int lgr_select_add(struct lgr_select *reg, void *subscriber, const struct lgr_selector *sel, const char *shard_id,
	const char *deterministic_name, struct lgr_select_sub **out);

/* Removes and frees a subscription. After it returns, no match delivers to it. NULL is a no-op. */
void lgr_select_remove(struct lgr_select *reg, struct lgr_select_sub *sub);

/*
 * Calls fn(subscriber, ud) once per delivery of env, as described above. Returns the number of deliveries.
 * env is only read; an envelope with no message set matches nothing.
 */
size_t lgr_select_match(struct lgr_select *reg, const struct lgr_env *env, lgr_select_fn *fn, void *ud);

/*
 * What matching reads of an envelope, for callers that keep the envelope encoded: its type, source id, counter name
 * (counters) and gauge metric names as sent (gauges, in any order). NULL strings read as "".
 */
struct lgr_select_key {
	enum lgr_env_type type;
	const char *source_id;
	const char *counter_name;
	const char *const *gauge_names;
	size_t n_gauge_names;
};

/* lgr_select_match on a key; lgr_select_match(env) is this on the key of env. */
size_t lgr_select_match_key(struct lgr_select *reg, const struct lgr_select_key *key, lgr_select_fn *fn, void *ud);

/* Subscriptions in the registry. */
size_t lgr_select_count(struct lgr_select *reg);

/*
 * An egress request, validated. The strings and gauge name arrays borrow from the protobuf message, which must
 * outlive this; only the selectors array is owned (free with lgr_select_req_cleanup).
 */
struct lgr_select_req {
	const char *shard_id;		/* "" when not sharded */
	const char *deterministic_name; /* "" when unset */
	bool use_preferred_tags;
	size_t n_selectors;
	struct lgr_selector *selectors;
};

/*
 * Validates an EgressBatchRequest as the RLP does: legacy_selector is used only when selectors is empty; no
 * selector at all -> LGR_EINVAL "Selectors cannot be empty"; a selector without a type -> LGR_EINVAL "Selectors
 * must have a Message"; more than LGR_SELECT_MAX_SELECTORS selectors or LGR_SELECT_MAX_GAUGE_NAMES names in one
 * gauge selector -> LGR_ELIMIT. On error *errmsg (if errmsg is not NULL) is the text for the gRPC status
 * (INVALID_ARGUMENT) and *out is empty. Returns LGR_OK, those codes, or LGR_ENOMEM.
 */
int lgr_select_req_parse(
	const Loggregator__V2__EgressBatchRequest *msg, struct lgr_select_req *out, const char **errmsg);
/* The same for the unbatched EgressRequest (Egress/Receiver), which has the same fields. */
int lgr_select_req_parse_single(
	const Loggregator__V2__EgressRequest *msg, struct lgr_select_req *out, const char **errmsg);
void lgr_select_req_cleanup(struct lgr_select_req *req);

/* What a subscriber asks for: the fields of the request lgr_select_req_pack writes. */
struct lgr_select_ask {
	const char *shard_id;		/* NULL or "": not sharded */
	const char *deterministic_name; /* NULL or "": none */
	unsigned types;			/* a bit (1u << t) per enum lgr_env_type t; 0: all five */
	const char *const *source_ids;	/* one selector per type for each; none: one per type for every source */
	size_t nsource_ids;
	bool use_preferred_tags;
};

/*
 * Encodes ask as an EgressBatchRequest (whose bytes are also a valid EgressRequest: the same fields). A source id
 * given twice is asked for once, since a router delivers an envelope once per selector it matches. *out is
 * malloc'd, the caller's. LGR_OK; LGR_ENOMEM.
 */
int lgr_select_req_pack(const struct lgr_select_ask *ask, uint8_t **out, size_t *out_len);

/*
 * Adds one subscription per selector of req, all or none. subs must have room for req->n_selectors handles.
 * Returns LGR_OK or an error of lgr_select_add (then nothing was added).
 */
int lgr_select_add_req(
	struct lgr_select *reg, void *subscriber, const struct lgr_select_req *req, struct lgr_select_sub **subs);

#endif
