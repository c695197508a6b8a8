/*
 * fuzz_env.c: fuzz target for the v2 envelope decoder (lgr_pb validation + protobuf-c) and the encoder.
 *
 * The input is decoded both as one Envelope and as an EnvelopeBatch under small limits. Every envelope that
 * decodes must survive encode -> decode with equal content; batches must also survive lgr_env_encode_batch ->
 * lgr_env_decode_batch. An envelope that decodes also decodes, through a scratch reused across inputs (as the input
 * module's submitter uses it), to an equal view. A mismatch aborts, which libFuzzer and the replay runner report as a
 * crash.
 */
#include <stdint.h>
#include <stdlib.h>

#include "lgr_env.h"

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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct lgr_env *env = NULL;

	if (lgr_env_decode(data, size, &fuzz_limits, &env) == LGR_OK) {
		check_round_trip(env);
		check_scratch(env, data, size);
		lgr_env_unref(env);
	}
	check_batch(data, size);
	return 0;
}
