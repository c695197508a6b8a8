/*
 * bench_codec.c: throughput of the v2 envelope codec (lgr_env): decode, encode without and with the cached
 * encoding, and 100-envelope batches both ways; and of the libfastjson form rsyslog keeps an envelope in
 * (lgr_fjson): building the tree as the input module does (without the payload, which becomes the message; for a
 * log also straight from its bytes, without and with a cache of shared string nodes) and releasing it, reading it back
 * joined with the payload, and the outputs' two ways back to the wire (reading it into a scratch and encoding that, or
 * for a log, lgr_fjson_log_measure + lgr_fjson_log_pack straight from the tree). One sample envelope of each type, with
 * the tags the platform sets.
 *
 *   bench_codec [--count N] [--only NAME]
 *
 * N: operations per figure, default 200000; NAME: only the rows of that operation (its name as printed, without
 * the leading blanks), for scripts that need one figure (bench/imloggregator.sh).
 *
 * Prints figures and never judges them: timing depends on the machine. Each measured operation is one function
 * with the signature of measure_fn, listed in the table `ops`, so that other codecs (the JSON form) can be added
 * as rows of the same table.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FJSON_NATIVE_API_ONLY 1 /* without libfastjson's json-c compatibility macros */
#include <libfastjson/json.h>

#include "lgr_env.h"
#include "lgr_fjson.h"
#include "lgr_pb.h"

#define BATCH_SIZE 100

/*
 * What every measurement works on: one sample envelope, its encoding, its libfastjson tree, and a batch of BATCH_SIZE
 * copies.
 */
struct sample {
	const char *name;
	struct lgr_env *env;
	uint8_t *wire; /* the encoding of env (own copy) */
	size_t wire_len;
	struct fjson_object *tree; /* env as $!loggregator holds it: built with LGR_JSON_NO_PAYLOAD */
	struct lgr_env *batch[BATCH_SIZE];
	uint8_t *batch_wire; /* EnvelopeBatch of the BATCH_SIZE envelopes */
	size_t batch_wire_len;
};

/*
 * Runs one operation count times on s and returns LGR_OK or an error. *envelopes is the number of envelopes the
 * operation handles per call (1, or BATCH_SIZE for batches), for the per-envelope figures.
 */
typedef int measure_fn(struct sample *s, unsigned long count, size_t *envelopes);

static volatile size_t sink; /* keeps results observable so that no call is optimised away */

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* --- the measured operations ---------------------------------------------------------------------------------- */

static int op_decode(struct sample *s, unsigned long count, size_t *envelopes)
{
	unsigned long i;
	int rc = LGR_OK;

	*envelopes = 1;
	for (i = 0; i < count && rc == LGR_OK; i++) {
		struct lgr_env *env;

		rc = lgr_env_decode(s->wire, s->wire_len, NULL, &env);
		if (rc == LGR_OK) {
			sink += env->pb->n_tags;
			lgr_env_unref(env);
		}
	}
	return rc;
}

static int op_encode_uncached(struct sample *s, unsigned long count, size_t *envelopes)
{
	unsigned long i;
	const uint8_t *data;
	size_t len;
	int rc = LGR_OK;

	*envelopes = 1;
	for (i = 0; i < count && rc == LGR_OK; i++) {
		/*
		 * Drops the cache by hand (private fields, single-threaded here) so that every call computes the
		 * encoding; a setter would also drop it but would add its own cost.
		 */
		free(s->env->wire);
		s->env->wire = NULL;
		s->env->wire_len = 0;
		rc = lgr_env_encode(s->env, &data, &len);
		sink += len;
	}
	return rc;
}

static int op_encode_cached(struct sample *s, unsigned long count, size_t *envelopes)
{
	unsigned long i;
	const uint8_t *data;
	size_t len;
	int rc = LGR_OK;

	*envelopes = 1;
	for (i = 0; i < count && rc == LGR_OK; i++) {
		rc = lgr_env_encode(s->env, &data, &len);
		sink += len;
	}
	return rc;
}

static int op_encode_batch(struct sample *s, unsigned long count, size_t *envelopes)
{
	unsigned long i;
	int rc = LGR_OK;

	*envelopes = BATCH_SIZE;
	for (i = 0; i < count && rc == LGR_OK; i++) {
		uint8_t *out;
		size_t len;

		rc = lgr_env_encode_batch(s->batch, BATCH_SIZE, &out, &len);
		if (rc == LGR_OK) {
			sink += len;
			free(out);
		}
	}
	return rc;
}

static int count_and_drop(struct lgr_env *env, void *ud)
{
	(*(size_t *)ud)++;
	lgr_env_unref(env);
	return 0;
}

static int op_decode_batch(struct sample *s, unsigned long count, size_t *envelopes)
{
	unsigned long i;
	size_t seen = 0;
	int rc = LGR_OK;

	*envelopes = BATCH_SIZE;
	for (i = 0; i < count && rc == LGR_OK; i++)
		rc = lgr_env_decode_batch(s->batch_wire, s->batch_wire_len, NULL, count_and_drop, &seen);
	sink += seen;
	return rc;
}

/* The input's network thread: the untrusted batch checked before anything is allocated for it. */
static int op_check_batch(struct sample *s, unsigned long count, size_t *envelopes)
{
	unsigned long i;
	size_t seen = 0;
	int rc = LGR_OK;

	*envelopes = BATCH_SIZE;
	for (i = 0; i < count && rc == LGR_OK; i++) {
		rc = lgr_pb_check_batch(s->batch_wire, s->batch_wire_len, NULL, &seen);
		sink += seen;
	}
	return rc;
}

/* The input module's conversion: the tree without the payload, built and released. */
static int op_fjson_build(struct sample *s, unsigned long count, size_t *envelopes)
{
	unsigned long i;
	int rc = LGR_OK;

	*envelopes = 1;
	for (i = 0; i < count && rc == LGR_OK; i++) {
		struct fjson_object *tree;

		rc = lgr_fjson_build(s->env, LGR_JSON_NO_PAYLOAD, &tree);
		if (rc == LGR_OK) {
			sink += (size_t)fjson_object_object_length(tree);
			fjson_object_put(tree);
		}
	}
	return rc;
}

/*
 * The input's hot path for a Log envelope: its tree straight from the bytes, then released (as rsyslog frees the
 * message), without and with the submitter's cache of string nodes, in which every text of the sample repeats.
 */
static int wire_build_put(struct sample *s, unsigned long count, struct lgr_fjson_strings *strings)
{
	struct lgr_fjson_wire_log w;
	unsigned long i;
	int rc = LGR_OK;

	for (i = 0; i < count && rc == LGR_OK; i++) {
		rc = lgr_fjson_build_log_wire(s->wire, s->wire_len, strings, &w);
		if (rc == LGR_OK) {
			sink += (size_t)fjson_object_object_length(w.tree);
			fjson_object_put(w.tree);
		}
	}
	return rc;
}

static int op_fjson_wire(struct sample *s, unsigned long count, size_t *envelopes)
{
	*envelopes = 1;
	return wire_build_put(s, count, NULL);
}

static int op_fjson_wire_shared(struct sample *s, unsigned long count, size_t *envelopes)
{
	struct lgr_fjson_strings *strings;
	int rc = lgr_fjson_strings_new(&strings);

	*envelopes = 1;
	if (rc == LGR_OK)
		rc = wire_build_put(s, count, strings);
	lgr_fjson_strings_free(strings);
	return rc;
}

/* The outputs' conversion: the tree read back, a log joined with its payload (the message), and released. */
static int op_fjson_parse(struct sample *s, unsigned long count, size_t *envelopes)
{
	const Loggregator__V2__Log *log = lgr_env_type(s->env) == LGR_ENV_LOG ? s->env->pb->log : NULL;
	unsigned long i;
	int rc = LGR_OK;

	*envelopes = 1;
	for (i = 0; i < count && rc == LGR_OK; i++) {
		struct lgr_env *env;

		rc = lgr_fjson_parse(s->tree, log != NULL ? log->payload.data : NULL,
			log != NULL ? log->payload.len : 0, NULL, 0, &env);
		if (rc == LGR_OK) {
			sink += env->pb->n_tags;
			lgr_env_unref(env);
		}
	}
	return rc;
}

/* The outputs' general way to the wire: the tree read into a scratch with the payload, then encoded. */
static int op_fjson_encode(struct sample *s, unsigned long count, size_t *envelopes)
{
	const Loggregator__V2__Log *log = lgr_env_type(s->env) == LGR_ENV_LOG ? s->env->pb->log : NULL;
	struct lgr_env_scratch *scratch = NULL;
	const struct lgr_env *view;
	uint8_t *out = malloc(s->wire_len);
	unsigned long i;
	int rc = out != NULL ? lgr_env_scratch_new(&scratch) : LGR_ENOMEM;

	*envelopes = 1;
	for (i = 0; i < count && rc == LGR_OK; i++) {
		rc = lgr_fjson_parse_scratch(s->tree, log != NULL ? log->payload.data : NULL,
			log != NULL ? log->payload.len : 0, NULL, 0, scratch, &view);
		if (rc == LGR_OK && lgr_env_packed_size(view) != s->wire_len)
			rc = LGR_EINVAL;
		if (rc == LGR_OK)
			lgr_env_pack(view, out);
		sink += out[0];
	}
	lgr_env_scratch_free(scratch);
	free(out);
	return rc;
}

/* The outputs' fast way for a Log envelope from imloggregator: measured on the tree and written straight. */
static int op_fjson_log(struct sample *s, unsigned long count, size_t *envelopes)
{
	const Loggregator__V2__Log *log = s->env->pb->log;
	struct lgr_fjson_log *m = malloc(sizeof(*m));
	uint8_t *out = malloc(s->wire_len);
	unsigned long i;
	int rc = m != NULL && out != NULL ? LGR_OK : LGR_ENOMEM;

	*envelopes = 1;
	for (i = 0; i < count && rc == LGR_OK; i++) {
		rc = lgr_fjson_log_measure(s->tree, log->payload.data, log->payload.len, NULL, m);
		if (rc == LGR_OK && m->size != s->wire_len)
			rc = LGR_EINVAL;
		if (rc == LGR_OK)
			lgr_fjson_log_pack(m, out);
		sink += out[0];
	}
	free(m);
	free(out);
	return rc;
}

struct op {
	const char *name;
	measure_fn *fn;
	unsigned divisor; /* batches run count / divisor times, so that each row handles about count envelopes */
	bool log_only;
};

static const struct op ops[] = {
	{"pb decode", op_decode, 1, false},
	{"pb encode (uncached)", op_encode_uncached, 1, false},
	{"pb encode (cached)", op_encode_cached, 1, false},
	{"pb encode batch of 100", op_encode_batch, BATCH_SIZE, false},
	{"pb decode batch of 100", op_decode_batch, BATCH_SIZE, false},
	{"pb check batch of 100", op_check_batch, BATCH_SIZE, false},
	{"fjson build + put", op_fjson_build, 1, false},
	{"fjson from the wire + put", op_fjson_wire, 1, true},
	{"  with shared strings", op_fjson_wire_shared, 1, true},
	{"fjson parse (+ payload)", op_fjson_parse, 1, false},
	{"fjson read + encode", op_fjson_encode, 1, false},
	{"fjson log straight to wire", op_fjson_log, 1, true},
};

/* --- samples -------------------------------------------------------------------------------------------------- */

static int sample_common(struct lgr_env *env)
{
	static const char *const tags[5][2] = {{"deployment", "cf"}, {"job", "diego-cell"}, {"index", "0"},
		{"ip", "10.0.16.23"}, {"source_type", "APP/PROC/WEB"}};
	int rc = LGR_OK;
	size_t i;

	env->pb->timestamp = 1795216617216508120;
	rc = lgr_env_set_source_id(env, "0f8d2c2e-8b5a-4a5f-9d52-2c3f0b6f9a11");
	if (rc == LGR_OK)
		rc = lgr_env_set_instance_id(env, "3");
	for (i = 0; i < 5 && rc == LGR_OK; i++)
		rc = lgr_env_set_tag(env, tags[i][0], tags[i][1]);
	return rc;
}

static int sample_fill_log(struct lgr_env *env)
{
	char payload[201];
	int rc = sample_common(env);

	snprintf(payload, sizeof(payload), "%-200s",
		"2026-11-20T23:03:20.123Z INFO  [http-nio-8080-exec-4] c.e.shop.OrderController : order 81723 accepted "
		"for customer 5521 in 12 ms, 3 items, total 118.40 EUR, payment pending");
	if (rc == LGR_OK)
		rc = lgr_env_set_log(env, payload, 200, LOGGREGATOR__V2__LOG__TYPE__OUT);
	return rc;
}

static int sample_fill_gauge(struct lgr_env *env)
{
	int rc = sample_common(env);

	if (rc == LGR_OK)
		rc = lgr_env_set_gauge(env);
	if (rc == LGR_OK)
		rc = lgr_env_add_metric(env, "cpu", "percentage", 12.5);
	if (rc == LGR_OK)
		rc = lgr_env_add_metric(env, "memory", "bytes", 1048576.0);
	if (rc == LGR_OK)
		rc = lgr_env_add_metric(env, "disk", "bytes", 73400320.0);
	if (rc == LGR_OK)
		rc = lgr_env_add_metric(env, "memory_quota", "bytes", 268435456.0);
	return rc;
}

static int sample_fill_counter(struct lgr_env *env)
{
	int rc = sample_common(env);

	if (rc == LGR_OK)
		rc = lgr_env_set_counter(env, "requests", 1, 81723);
	return rc;
}

static int sample_fill_timer(struct lgr_env *env)
{
	int rc = sample_common(env);

	if (rc == LGR_OK)
		rc = lgr_env_set_timer(env, "http", 1795216617216508120, 1795216617228508120);
	return rc;
}

static int sample_fill_event(struct lgr_env *env)
{
	int rc = sample_common(env);

	if (rc == LGR_OK)
		rc = lgr_env_set_event(env, "app crashed", "instance 3 exited with status 137 (out of memory)");
	return rc;
}

static int sample_init(struct sample *s, const char *name, int (*fill)(struct lgr_env *))
{
	const uint8_t *data;
	size_t i;
	int rc = LGR_ENOMEM;

	memset(s, 0, sizeof(*s));
	s->name = name;
	s->env = lgr_env_new();
	if (s->env == NULL || (rc = fill(s->env)) != LGR_OK)
		goto out;
	rc = lgr_env_encode(s->env, &data, &s->wire_len);
	if (rc != LGR_OK)
		goto out;
	s->wire = malloc(s->wire_len + 1);
	if (s->wire == NULL) {
		rc = LGR_ENOMEM;
		goto out;
	}
	memcpy(s->wire, data, s->wire_len);
	rc = lgr_fjson_build(s->env, LGR_JSON_NO_PAYLOAD, &s->tree);
	if (rc != LGR_OK)
		goto out;
	for (i = 0; i < BATCH_SIZE; i++) {
		s->batch[i] = lgr_env_new();
		if (s->batch[i] == NULL) {
			rc = LGR_ENOMEM;
			goto out;
		}
		rc = fill(s->batch[i]);
		if (rc != LGR_OK)
			goto out;
		s->batch[i]->pb->timestamp += (int64_t)i;
	}
	rc = lgr_env_encode_batch(s->batch, BATCH_SIZE, &s->batch_wire, &s->batch_wire_len);
out:
	return rc;
}

static void sample_cleanup(struct sample *s)
{
	size_t i;

	lgr_env_unref(s->env);
	fjson_object_put(s->tree);
	for (i = 0; i < BATCH_SIZE; i++)
		lgr_env_unref(s->batch[i]);
	free(s->wire);
	free(s->batch_wire);
}

/* --- driver --------------------------------------------------------------------------------------------------- */

static int run(const struct op *op, struct sample *s, unsigned long count)
{
	unsigned long calls = count / op->divisor > 0 ? count / op->divisor : 1;
	size_t per_call = 1;
	double t0, ns;
	int rc;

	if (op->log_only && lgr_env_type(s->env) != LGR_ENV_LOG)
		return LGR_OK;
	/* A short warm-up so that the first row does not pay for page faults and cold caches. */
	rc = op->fn(s, calls / 10 + 1, &per_call);
	if (rc != LGR_OK)
		goto out;
	t0 = now_ns();
	rc = op->fn(s, calls, &per_call);
	ns = now_ns() - t0;
	if (rc != LGR_OK)
		goto out;
	printf("%-26s %-7s %10lu %12.1f %14.0f", op->name, s->name, calls * per_call, ns / (double)(calls * per_call),
		1e9 * (double)(calls * per_call) / ns);
	if (per_call > 1)
		printf("   (%.1f us per batch)", ns / (double)calls / 1e3);
	printf("\n");
out:
	if (rc != LGR_OK)
		fprintf(stderr, "bench_codec: %s on %s failed: %s\n", op->name, s->name, lgr_strerror(rc));
	return rc;
}

/* The operation's name as printed, without the blanks that indent a variant under the row above it. */
static const char *op_name(const struct op *op)
{
	const char *n = op->name;

	while (*n == ' ')
		n++;
	return n;
}

static int parse_args(int argc, char **argv, unsigned long *count, const char **only)
{
	int i;

	for (i = 1; i < argc; i++) {
		char *end;

		if (strcmp(argv[i], "--count") == 0 && i + 1 < argc) {
			errno = 0;
			*count = strtoul(argv[++i], &end, 10);
			if (errno != 0 || *end != '\0' || *count == 0)
				return -1;
		} else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) {
			*only = argv[++i];
		} else {
			return -1;
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*fill)(struct lgr_env *);
	} kinds[] = {{"log", sample_fill_log}, {"counter", sample_fill_counter}, {"gauge", sample_fill_gauge},
		{"timer", sample_fill_timer}, {"event", sample_fill_event}};
	enum { NSAMPLES = sizeof(kinds) / sizeof(kinds[0]) };
	struct sample samples[NSAMPLES];
	unsigned long count = 200000;
	const char *only = NULL;
	size_t i, j;
	int rc = 0;

	if (parse_args(argc, argv, &count, &only) != 0) {
		fprintf(stderr, "usage: %s [--count N] [--only NAME]\n", argv[0]);
		return 2;
	}
	if (only != NULL) {
		for (i = 0; i < sizeof(ops) / sizeof(ops[0]) && strcmp(op_name(&ops[i]), only) != 0; i++)
			;
		if (i == sizeof(ops) / sizeof(ops[0])) {
			fprintf(stderr, "bench_codec: no operation named \"%s\"\n", only);
			return 2;
		}
	}
	for (j = 0; j < NSAMPLES; j++) {
		if (sample_init(&samples[j], kinds[j].name, kinds[j].fill) != LGR_OK) {
			fprintf(stderr, "bench_codec: cannot build the sample envelopes\n");
			return 1;
		}
	}
	printf("v2 envelope codec, %lu envelopes per figure; bytes encoded:", count);
	for (j = 0; j < NSAMPLES; j++)
		printf(" %s %zu%s", samples[j].name, samples[j].wire_len, j + 1 < NSAMPLES ? "," : "\n");
	printf("%-26s %-7s %10s %12s %14s\n", "operation", "type", "envelopes", "ns/envelope", "envelopes/s");
	for (i = 0; i < sizeof(ops) / sizeof(ops[0]) && rc == 0; i++) {
		if (only != NULL && strcmp(op_name(&ops[i]), only) != 0)
			continue;
		for (j = 0; j < NSAMPLES && rc == 0; j++)
			rc = run(&ops[i], &samples[j], count);
	}
	for (j = 0; j < NSAMPLES; j++)
		sample_cleanup(&samples[j]);
	return rc == 0 ? 0 : 1;
}
