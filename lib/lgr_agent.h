/*
 * lgr_agent.h: the rules a Loggregator agent applies to every envelope it accepts (wire.md section 4, "Agent"):
 *
 *   - source_id empty -> tags["origin"], else deprecated_tags["origin"] (its text; integers in decimal, decimals
 *     in shortest form), else left empty;
 *   - every deprecated tag is copied into tags (same conversion), where tags has no such key; deprecated_tags
 *     themselves are left as they are;
 *   - the configured default tags are added where the key is absent;
 *   - counter totals: for each (counter name, source_id, tags) the agent keeps a running total; a counter with
 *     total == 0 and delta != 0 gets total = previous total + delta, any other counter sets the running total to
 *     its own total.
 *
 * The totals table is bounded (max_counters keys; the least recently used key is forgotten first).
 *
 * Threading: an lgr_agent belongs to one thread at a time (imloggregator: its network thread).
 */
#ifndef LGR_AGENT_H
#define LGR_AGENT_H

#include <stddef.h>

#include "lgr.h"
#include "lgr_env.h"

#define LGR_AGENT_DEFAULT_MAX_COUNTERS 100000u

struct lgr_agent;

struct lgr_agent_conf {
	const char *const *default_tags; /* "key:value" strings (split at the first ':'); may be NULL */
	size_t ndefault_tags;
	size_t max_counters; /* 0: LGR_AGENT_DEFAULT_MAX_COUNTERS */
};

/* LGR_OK and *out; LGR_EINVAL (a default tag without ':' or with an empty key); LGR_ENOMEM. */
int lgr_agent_new(const struct lgr_agent_conf *conf, struct lgr_agent **out);
void lgr_agent_free(struct lgr_agent *ag); /* NULL is a no-op */

/*
 * Applies the rules to env, whose only reference the caller must hold (the setters of lgr_env are used).
 * LGR_OK; LGR_ENOMEM (env may then be partly updated: tags added so far stay).
 */
int lgr_agent_apply(struct lgr_agent *ag, struct lgr_env *env);

/* Keys in the counter totals table (for tests and counters). */
size_t lgr_agent_counters(const struct lgr_agent *ag);

#endif
