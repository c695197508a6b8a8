/*
 * fuzz_env.c: fuzz target for the v2 envelope decoder (lgr_pb validation + protobuf-c) and the encoder.
 *
 * The input is decoded both as one Envelope and as an EnvelopeBatch under small limits. Every envelope that
 * decodes must survive encode -> decode with equal content; batches must also survive lgr_env_encode_batch ->
 * lgr_env_decode_batch. An envelope that decodes also decodes, through a scratch reused across inputs (as the input
 * module's submitter uses it), to an equal view. When the input module's straight-from-the-bytes builder
 * (lgr_fjson_build_log_wire) takes an envelope, its tree prints as lgr_fjson_build's of the decoded envelope and the
 * message parts equal the decoded fields, and the outputs' fast path (lgr_fjson_log_measure) takes that tree and writes
 * what the reader reads from it; with an agent's rules, its tree is that of the decoded envelope after the agent's
 * rules. A mismatch aborts, which libFuzzer and the replay runner report as a crash.
 */
#define FJSON_NATIVE_API_ONLY 1
#include <libfastjson/json.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lgr_agent.h"
#include "lgr_env.h"
#include "lgr_fjson.h"

#define FUZZ_MAX_BATCH 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct lgr_limits fuzz_limits = {
	.max_message = 1u << 20,
	.max_tags = 64,
	.max_metrics = 64,
	.max_batch = FUZZ_MAX_BATCH,
	.max_depth = 8,
};

/*
 * The re-encoding is decoded under the default limits: it may be a little longer than the input (protobuf-c writes
 * a negative enum as ten bytes where the input may have used five), and it is not what is being limited here.
 */
static void check_round_trip(struct lgr_env *env)
{
	const uint8_t *wire;
	size_t len;
	struct lgr_env *back = NULL;

	if (lgr_env_encode(env, &wire, &len) != LGR_OK)
		return;
	if (lgr_env_decode(wire, len, NULL, &back) != LGR_OK)
		abort();
	if (!lgr_env_equal(env, back) || !lgr_env_equal(back, env))
		abort();
	lgr_env_unref(back);
}

struct collected {
	struct lgr_env *env[FUZZ_MAX_BATCH];
	size_t n;
	size_t pos; /* next envelope to compare against, in the second pass */
	bool mismatch;
};

static int collect(struct lgr_env *env, void *ud)
{
	struct collected *c = ud;

	if (c->n >= FUZZ_MAX_BATCH)
		abort(); /* the batch limit let more through than it should */
	c->env[c->n++] = env;
	return 0;
}

static int compare(struct lgr_env *env, void *ud)
{
	struct collected *c = ud;

	if (c->pos >= c->n || !lgr_env_equal(c->env[c->pos], env))
		c->mismatch = true;
	c->pos++;
	lgr_env_unref(env);
	return 0;
}

static void check_batch(const uint8_t *data, size_t size)
{
	struct collected c = {.n = 0};
	uint8_t *wire = NULL;
	size_t len, i;

	if (lgr_env_decode_batch(data, size, &fuzz_limits, collect, &c) != LGR_OK)
		goto out;
	for (i = 0; i < c.n; i++)
		check_round_trip(c.env[i]);
	if (lgr_env_encode_batch(c.env, c.n, &wire, &len) != LGR_OK)
		goto out;
	if (lgr_env_decode_batch(wire, len, NULL, compare, &c) != LGR_OK || c.mismatch || c.pos != c.n)
		abort();
out:
	free(wire);
	for (i = 0; i < c.n; i++)
		lgr_env_unref(c.env[i]);
}

/* The scratch lives across inputs, so that its growth and reuse are fuzzed too (freed at exit by the OS). */
static void check_scratch(const struct lgr_env *env, const uint8_t *data, size_t size)
{
	static struct lgr_env_scratch *scratch;
	const struct lgr_env *view;

	if (scratch == NULL && lgr_env_scratch_new(&scratch) != LGR_OK)
		return;
	if (lgr_env_scratch_unpack(scratch, data, size, &view) != LGR_OK)
		return; /* out of memory only: the bytes were checked */
	if (!lgr_env_equal(env, view))
		abort();
}

static bool same_text(const char *a, const char *b)
{
	return strcmp(a != NULL ? a : "", b != NULL ? b : "") == 0;
}

/*
 * The outputs' fast path takes every tree the input's wire path builds, and writes what the reader reads from it (the
 * tree's strings are the envelope's with invalid UTF-8 replaced, so that, not env, is the reference).
 */
static void check_fast(struct fjson_object *tree, const uint8_t *payload, size_t len)
{
	static struct lgr_fjson_log m;
	struct lgr_env *back = NULL;
	uint8_t *a = NULL, *b = NULL;
	size_t n;
	int rc;

	if (lgr_fjson_log_measure(tree, len > 0 ? (const void *)payload : (const void *)"", len, NULL, &m) != LGR_OK)
		abort();
	rc = lgr_fjson_parse(tree, len > 0 ? (const void *)payload : (const void *)"", len, NULL, 0, &back);
	if (rc == LGR_ENOMEM)
		return;
	if (rc != LGR_OK)
		abort();
	n = lgr_env_packed_size(back);
	if (m.size != n)
		abort();
	a = malloc(n + 1);
	b = malloc(n + 1);
	if (a != NULL && b != NULL) {
		lgr_env_pack(back, a);
		lgr_fjson_log_pack(&m, b);
		if (memcmp(a, b, n) != 0)
			abort();
	}
	free(a);
	free(b);
	lgr_env_unref(back);
}

/* tree prints as lgr_fjson_build's tree of env (without the payload), or the build ran out of memory. */
static void check_as_built(struct fjson_object *tree, const struct lgr_env *env)
{
	struct fjson_object *full = NULL;
	char *text;

	if (lgr_fjson_build(env, LGR_JSON_NO_PAYLOAD, &full) != LGR_OK)
		return;
	text = strdup(fjson_object_to_json_string_ext(tree, FJSON_TO_STRING_PLAIN));
	if (text != NULL && strcmp(text, fjson_object_to_json_string_ext(full, FJSON_TO_STRING_PLAIN)) != 0)
		abort();
	free(text);
	fjson_object_put(full);
}

/*
 * The input's builder, through a cache of string nodes kept across inputs (as a submitter thread keeps one across
 * envelopes), so that one input's texts meet the nodes an earlier one left: the tree must be the one built without.
 */
static struct lgr_fjson_strings *strings;

static void check_wire(const struct lgr_env *env, const uint8_t *data, size_t size)
{
	const Loggregator__V2__Envelope *pb = env->pb;
	struct lgr_fjson_wire_log w, plain;
	char *text;
	int rc;

	if (strings == NULL && lgr_fjson_strings_new(&strings) != LGR_OK)
		return;
	rc = lgr_fjson_build_log_wire(data, size, strings, &w);

	if (rc == LGR_EUNSUPPORTED || rc == LGR_ENOMEM)
		return;
	if (rc != LGR_OK || pb->message_case != LOGGREGATOR__V2__ENVELOPE__MESSAGE_LOG)
		abort();
	if (w.timestamp != pb->timestamp || !same_text(w.source_id, pb->source_id) ||
		!same_text(w.instance_id, pb->instance_id) || w.payload_len != pb->log->payload.len ||
		(w.payload_len > 0 && memcmp(w.payload, pb->log->payload.data, w.payload_len) != 0) ||
		w.err != (pb->log->type == LOGGREGATOR__V2__LOG__TYPE__ERR))
		abort();
	check_fast(w.tree, w.payload, w.payload_len);
	check_as_built(w.tree, env);
	if (lgr_fjson_build_log_wire(data, size, NULL, &plain) == LGR_OK) {
		text = strdup(fjson_object_to_json_string_ext(w.tree, FJSON_TO_STRING_PLAIN));
		if (text != NULL &&
			strcmp(text, fjson_object_to_json_string_ext(plain.tree, FJSON_TO_STRING_PLAIN)) != 0)
			abort();
		free(text);
		fjson_object_put(plain.tree);
	}
	fjson_object_put(w.tree);
}

/*
 * The agent's builder: with the rules of an agent whose default tags include keys senders use (and "origin"), the
 * tree and parts must be those of the decoded envelope after lgr_agent_apply.
 */
static struct lgr_agent *agent;
static struct lgr_fjson_wire_rules agent_rules;

static void check_wire_agent(const uint8_t *data, size_t size)
{
	static const char *const specs[] = {"deployment:cf", "origin:default", "k:v", "index:0"};
	struct lgr_agent_conf conf = {.default_tags = specs, .ndefault_tags = 4};
	struct lgr_fjson_wire_log w;
	struct lgr_env *env = NULL;
	int rc;

	if (agent == NULL) {
		if (lgr_agent_new(&conf, &agent) != LGR_OK)
			return;
		agent_rules.ndefaults =
			lgr_agent_default_tags(agent, &agent_rules.default_keys, &agent_rules.default_values);
		if (lgr_fjson_wire_rules_check(&agent_rules) != LGR_OK) /* as the input module does */
			abort();
	}
	rc = lgr_fjson_build_log_wire_rules(data, size, strings, &agent_rules, &w);
	if (rc == LGR_EUNSUPPORTED || rc == LGR_ENOMEM)
		return;
	if (rc != LGR_OK)
		abort();
	/* decoded again: the rules edit the envelope */
	if (lgr_env_decode(data, size, &fuzz_limits, &env) != LGR_OK || lgr_agent_apply(agent, env) != LGR_OK) {
		lgr_env_unref(env);
		fjson_object_put(w.tree);
		return;
	}
	if (!same_text(w.source_id, env->pb->source_id) || !same_text(w.instance_id, env->pb->instance_id))
		abort();
	check_as_built(w.tree, env);
	check_fast(w.tree, w.payload, w.payload_len);
	fjson_object_put(w.tree);
	lgr_env_unref(env);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct lgr_env *env = NULL;

	if (lgr_env_decode(data, size, &fuzz_limits, &env) == LGR_OK) {
		check_round_trip(env);
		check_scratch(env, data, size);
		check_wire(env, data, size);
		lgr_env_unref(env);
		check_wire_agent(data, size);
	}
	check_batch(data, size);
	return 0;
}
