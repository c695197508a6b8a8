/*
 * lgr_agent.h: the rules a Loggregator agent applies to every envelope it accepts (wire.md section 4, "Agent"),
 * in this order:
 *
 *   1. source_id empty -> tags["origin"] when that key exists, else deprecated_tags["origin"] when it is text,
 *      else left empty;
 *   2. every deprecated tag is copied into tags (integers in decimal, decimals as lgr_agent_format_decimal),
 *      replacing a tag of the same key; deprecated_tags themselves are left as they are;
 *   3. the configured default tags are added where the key is still absent (tags from the envelope win);
 *   4. counters: for each (counter name, source_id, tags) the agent keeps a running total; a counter with
 *      total == 0 and delta != 0 gets total = previous total + delta, any other counter sets the running total to
 *      its own total. The key is computed after steps 1-3, from all tags, whatever their order on the wire.
 *
 * A key repeated within tags or deprecated_tags counts once, with its last value (protobuf's rule for maps).
 *
 * Where this contract differs from the real agent (loggregator-agent-release: src/pkg/egress/v2/tagger.go and
 * counter_aggregator.go, src/pkg/ingress/v2/receiver.go, src/cmd/loggregator-agent/app/app_v2.go):
 *   - the real agent forgets all totals at once past 10000 keys; here the least recently used key goes first;
 *   - the real agent tags and totals on its egress side, after its drop-oldest buffer, so an envelope that buffer
 *     drops is never counted; a caller that applies these rules before its own buffer counts it.
 *
 * The totals table is bounded: at most max_counters keys, and each key is stored as a fixed-size SHA-256 digest
 * of (name, source_id, sorted tags), so neither the number nor the length of the tags grows it.
 *
 * Threading: an lgr_agent belongs to one thread at a time (imloggregator: its network thread).
 */
#ifndef LGR_AGENT_H
#define LGR_AGENT_H

#include <stddef.h>

#include "lgr.h"
#include "lgr_env.h"

#define LGR_AGENT_DEFAULT_MAX_COUNTERS 100000u

/* Room for any lgr_agent_format_decimal result and its NUL: a sign, "0.", at most 324 digits after the point. */
#define LGR_AGENT_DECIMAL_MAX 352

struct lgr_agent;

struct lgr_agent_conf {
	const char *const *default_tags; /* "key:value" strings (split at the first ':'); may be NULL */
	size_t ndefault_tags;		 /* a key given twice: the later entry wins */
	size_t max_counters;		 /* 0: LGR_AGENT_DEFAULT_MAX_COUNTERS */
};

/*
 * LGR_OK and *out (owned by the caller; lgr_agent_free); LGR_EINVAL (a default tag without ':' or with an empty
 * key); LGR_ENOMEM. *out is NULL on failure. conf is copied: it need not outlive the call.
 */
int lgr_agent_new(const struct lgr_agent_conf *conf, struct lgr_agent **out);
void lgr_agent_free(struct lgr_agent *ag); /* NULL is a no-op */

/*
 * Applies the rules to env, whose only reference the caller must hold (the setters of lgr_env are used).
 * LGR_OK; LGR_ENOMEM (env may then be partly updated: tags added so far stay; a counter's total is then left as
 * received and the totals table is unchanged).
 */
int lgr_agent_apply(struct lgr_agent *ag, struct lgr_env *env);

/*
 * The default tags as rule 3 adds them (split, a key given twice merged, in order): returns how many, with *keys and
 * *values their keys and values side by side (NULL when there are none), which live as long as ag. A caller that
 * applies rule 3 itself (the input's straight-from-the-bytes builder, lgr_fjson_build_log_wire_rules) reads them here.
 */
size_t lgr_agent_default_tags(const struct lgr_agent *ag, const char *const **keys, const char *const **values);

/* Keys in the counter totals table (for tests and counters). */
size_t lgr_agent_counters(const struct lgr_agent *ag);

/*
 * Writes d as the real agent writes a decimal deprecated tag, Go's strconv.FormatFloat(d, 'f', -1, 64): the
 * shortest digits that parse back to exactly d, in plain positional notation without an exponent ("0.1",
 * "1000000000000000000000", "0.0000001", "-0"), and "NaN", "+Inf", "-Inf". Returns the length (always less
 * than LGR_AGENT_DECIMAL_MAX).
 */
size_t lgr_agent_format_decimal(double d, char buf[LGR_AGENT_DECIMAL_MAX]);

#endif
