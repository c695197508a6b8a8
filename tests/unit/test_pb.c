/*
 * test_pb.c: the protobuf wire-format scanner (lgr_pb): varint, key and field primitives, and the Envelope /
 * EnvelopeBatch validators with their limits.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "lgr_pb.h"

/* A small protobuf writer for building test inputs by hand. */
struct wbuf {
	uint8_t b[8192];
	size_t n;
};

static void w_raw(struct wbuf *w, const void *p, size_t len)
{
	cr_assert(w->n + len <= sizeof(w->b));
	if (len > 0)
		memcpy(w->b + w->n, p, len);
	w->n += len;
}

static void w_varint(struct wbuf *w, uint64_t v)
{
	uint8_t tmp[LGR_PB_VARINT_MAX];

	w_raw(w, tmp, lgr_pb_varint_put(tmp, v));
}

static void w_key(struct wbuf *w, uint32_t field, unsigned wire)
{
	w_varint(w, ((uint64_t)field << 3) | wire);
}

static void w_len(struct wbuf *w, uint32_t field, const void *p, size_t len)
{
	w_key(w, field, LGR_PB_LEN);
	w_varint(w, len);
	w_raw(w, p, len);
}

static void w_str(struct wbuf *w, uint32_t field, const char *s)
{
	w_len(w, field, s, strlen(s));
}

static void w_msg(struct wbuf *w, uint32_t field, const struct wbuf *m)
{
	w_len(w, field, m->b, m->n);
}

static void w_uint(struct wbuf *w, uint32_t field, uint64_t v)
{
	w_key(w, field, LGR_PB_VARINT);
	w_varint(w, v);
}

static void w_double(struct wbuf *w, uint32_t field, double d)
{
	uint8_t le[8];
	uint64_t bits;
	int i;

	memcpy(&bits, &d, 8);
	for (i = 0; i < 8; i++)
		le[i] = (uint8_t)(bits >> (8 * i));
	w_key(w, field, LGR_PB_I64);
	w_raw(w, le, 8);
}

/* Appends a tags entry (Envelope field 9). */
static void w_tag(struct wbuf *env, const char *k, const char *v)
{
	struct wbuf e = {.n = 0};

	w_str(&e, 1, k);
	w_str(&e, 2, v);
	w_msg(env, 9, &e);
}

/* Appends a deprecated_tags entry (Envelope field 3) with a text Value. */
static void w_dtag(struct wbuf *env, const char *k, const char *text)
{
	struct wbuf v = {.n = 0}, e = {.n = 0};

	w_str(&v, 1, text);
	w_str(&e, 1, k);
	w_msg(&e, 2, &v);
	w_msg(env, 3, &e);
}

/* A Gauge message with n metrics named m0, m1, ... */
static void w_gauge_body(struct wbuf *g, unsigned first, unsigned n)
{
	unsigned i;

	for (i = first; i < first + n; i++) {
		struct wbuf gv = {.n = 0}, e = {.n = 0};
		char name[16];

		snprintf(name, sizeof(name), "m%u", i);
		w_str(&gv, 1, "bytes");
		w_double(&gv, 2, 1.5 * i);
		w_str(&e, 1, name);
		w_msg(&e, 2, &gv);
		w_msg(g, 1, &e);
	}
}

static void w_envelope_basic(struct wbuf *env)
{
	struct wbuf log = {.n = 0};

	w_uint(env, 1, 1795216617216508120ull);
	w_str(env, 2, "app10");
	w_str(env, 8, "0");
	w_tag(env, "k", "v");
	w_str(&log, 1, "hello");
	w_uint(&log, 2, 1);
	w_msg(env, 4, &log);
}

/* --- primitives ----------------------------------------------------------------------------------------------- */

Test(pb_varint, reads_one_and_multi_byte_values_and_advances)
{
	const uint8_t in[] = {0x05, 0xac, 0x02, 0x7f};
	size_t pos = 0;
	uint64_t v = 0;

	cr_assert_eq(lgr_pb_varint(in, sizeof(in), &pos, &v), LGR_OK);
	cr_assert_eq(v, 5);
	cr_assert_eq(pos, 1);
	cr_assert_eq(lgr_pb_varint(in, sizeof(in), &pos, &v), LGR_OK);
	cr_assert_eq(v, 300);
	cr_assert_eq(pos, 3);
}

Test(pb_varint, reads_the_largest_ten_byte_value)
{
	uint8_t in[LGR_PB_VARINT_MAX];
	size_t n = lgr_pb_varint_put(in, UINT64_MAX), pos = 0;
	uint64_t v = 0;

	cr_assert_eq(n, 10);
	cr_assert_eq(in[9], 0x01);
	cr_assert_eq(lgr_pb_varint(in, n, &pos, &v), LGR_OK);
	cr_assert_eq(v, UINT64_MAX);
	cr_assert_eq(pos, 10);
}

Test(pb_varint, rejects_a_tenth_byte_that_overflows_64_bits)
{
	const uint8_t in[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02};
	size_t pos = 0;
	uint64_t v = 42;

	cr_assert_eq(lgr_pb_varint(in, sizeof(in), &pos, &v), LGR_EDECODE);
	cr_assert_eq(pos, 0);
	cr_assert_eq(v, 42);
}

Test(pb_varint, rejects_an_eleven_byte_varint)
{
	const uint8_t in[] = {0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x81, 0x00};
	size_t pos = 0;
	uint64_t v;

	cr_assert_eq(lgr_pb_varint(in, sizeof(in), &pos, &v), LGR_EDECODE);
}

Test(pb_varint, rejects_a_truncated_varint_and_leaves_the_position)
{
	const uint8_t in[] = {0x01, 0x80, 0x80};
	size_t pos = 1;
	uint64_t v;

	cr_assert_eq(lgr_pb_varint(in, sizeof(in), &pos, &v), LGR_EDECODE);
	cr_assert_eq(pos, 1);
	pos = 3;
	cr_assert_eq(lgr_pb_varint(in, sizeof(in), &pos, &v), LGR_EDECODE);
}

Test(pb_varint, size_and_put_agree_at_every_seven_bit_boundary)
{
	unsigned bits;

	for (bits = 0; bits <= 64; bits++) {
		uint64_t v = bits == 64 ? UINT64_MAX : (bits == 0 ? 0 : (1ull << bits) - 1);
		uint8_t out[LGR_PB_VARINT_MAX];
		size_t n = lgr_pb_varint_put(out, v), pos = 0;
		uint64_t back = 0;

		cr_assert_eq(n, lgr_pb_varint_size(v));
		cr_assert_eq(n, bits <= 7 ? 1 : (bits + 6) / 7, "bits %u", bits);
		cr_assert_eq(lgr_pb_varint(out, n, &pos, &back), LGR_OK);
		cr_assert_eq(back, v);
	}
}

Test(pb_key, splits_field_number_and_wire_type)
{
	const uint8_t in[] = {0x4a, 0x81, 0x01};
	size_t pos = 0;
	uint32_t num;
	enum lgr_pb_wire wire;

	cr_assert_eq(lgr_pb_key(in, sizeof(in), &pos, &num, &wire), LGR_OK);
	cr_assert_eq(num, 9);
	cr_assert_eq(wire, LGR_PB_LEN);
	cr_assert_eq(lgr_pb_key(in, sizeof(in), &pos, &num, &wire), LGR_OK);
	cr_assert_eq(num, 16);
	cr_assert_eq(wire, LGR_PB_I64);
}

Test(pb_key, rejects_field_zero_groups_and_undefined_wire_types)
{
	unsigned wire;

	for (wire = 0; wire < 8; wire++) {
		uint8_t in[2] = {(uint8_t)((1 << 3) | wire)};
		uint8_t zero[1] = {(uint8_t)wire};
		size_t pos = 0;
		uint32_t num;
		enum lgr_pb_wire w;
		bool valid = wire == 0 || wire == 1 || wire == 2 || wire == 5;

		cr_assert_eq(lgr_pb_key(in, 1, &pos, &num, &w), valid ? LGR_OK : LGR_EDECODE, "wire %u", wire);
		pos = 0;
		cr_assert_eq(lgr_pb_key(zero, 1, &pos, &num, &w), LGR_EDECODE, "field 0 wire %u", wire);
		cr_assert_eq(pos, 0);
	}
}

Test(pb_key, accepts_the_largest_field_number_and_rejects_one_more)
{
	uint8_t in[LGR_PB_VARINT_MAX];
	size_t n, pos = 0;
	uint32_t num;
	enum lgr_pb_wire w;

	n = lgr_pb_varint_put(in, ((uint64_t)LGR_PB_MAX_FIELD << 3) | LGR_PB_VARINT);
	cr_assert_eq(lgr_pb_key(in, n, &pos, &num, &w), LGR_OK);
	cr_assert_eq(num, LGR_PB_MAX_FIELD);
	pos = 0;
	n = lgr_pb_varint_put(in, ((uint64_t)(LGR_PB_MAX_FIELD + 1u) << 3) | LGR_PB_VARINT);
	cr_assert_eq(lgr_pb_key(in, n, &pos, &num, &w), LGR_EDECODE);
}

Test(pb_field, returns_each_wire_type_with_its_bounds)
{
	struct wbuf w = {.n = 0};
	struct lgr_pb_field f;
	size_t pos = 0;
	const uint8_t i32[4] = {1, 2, 3, 4};

	w_uint(&w, 1, 300);
	w_double(&w, 2, 2.0);
	w_str(&w, 3, "abc");
	w_key(&w, 4, LGR_PB_I32);
	w_raw(&w, i32, 4);

	cr_assert_eq(lgr_pb_field_next(w.b, w.n, &pos, &f), LGR_OK);
	cr_assert(f.number == 1 && f.wire == LGR_PB_VARINT && f.varint == 300);
	cr_assert_eq(lgr_pb_field_next(w.b, w.n, &pos, &f), LGR_OK);
	cr_assert(f.number == 2 && f.wire == LGR_PB_I64 && f.len == 8);
	cr_assert_eq(lgr_pb_field_next(w.b, w.n, &pos, &f), LGR_OK);
	cr_assert(f.number == 3 && f.wire == LGR_PB_LEN && f.len == 3 && memcmp(f.data, "abc", 3) == 0);
	cr_assert_eq(lgr_pb_field_next(w.b, w.n, &pos, &f), LGR_OK);
	cr_assert(f.number == 4 && f.wire == LGR_PB_I32 && f.len == 4 && memcmp(f.data, i32, 4) == 0);
	cr_assert_eq(pos, w.n);
}

Test(pb_field, rejects_a_length_or_fixed_value_running_past_the_end)
{
	struct wbuf w = {.n = 0};
	struct lgr_pb_field f;
	size_t pos = 0;

	w_str(&w, 3, "abcdef");
	cr_assert_eq(lgr_pb_field_next(w.b, w.n - 1, &pos, &f), LGR_EDECODE);
	cr_assert_eq(pos, 0);

	w.n = 0;
	w_double(&w, 2, 1.0);
	cr_assert_eq(lgr_pb_field_next(w.b, w.n - 1, &pos, &f), LGR_EDECODE);

	/* A length larger than any buffer must not wrap around. */
	w.n = 0;
	w_key(&w, 3, LGR_PB_LEN);
	w_varint(&w, UINT64_MAX);
	cr_assert_eq(lgr_pb_field_next(w.b, w.n, &pos, &f), LGR_EDECODE);
}

/* --- Envelope validator --------------------------------------------------------------------------------------- */

Test(pb_envelope, accepts_a_well_formed_envelope_and_the_empty_one)
{
	struct wbuf env = {.n = 0};

	w_envelope_basic(&env);
	cr_assert_eq(lgr_pb_check_envelope(env.b, env.n, NULL), LGR_OK);
	cr_assert_eq(lgr_pb_check_envelope(env.b, 0, NULL), LGR_OK);
}

Test(pb_envelope, rejects_a_message_larger_than_max_message_before_walking)
{
	struct wbuf env = {.n = 0};
	struct lgr_limits lim = {.max_message = 16};

	w_envelope_basic(&env);
	cr_assert_gt(env.n, 16);
	cr_assert_eq(lgr_pb_check_envelope(env.b, env.n, &lim), LGR_ETOOBIG);
	lim.max_message = env.n;
	cr_assert_eq(lgr_pb_check_envelope(env.b, env.n, &lim), LGR_OK);
	/* Garbage is not even looked at when too big. */
	memset(env.b, 0xff, env.n);
	lim.max_message = env.n - 1;
	cr_assert_eq(lgr_pb_check_envelope(env.b, env.n, &lim), LGR_ETOOBIG);
}

Test(pb_envelope, counts_tags_and_deprecated_tags_together_against_max_tags)
{
	struct wbuf env = {.n = 0};
	struct lgr_limits lim = {.max_tags = 4};

	w_tag(&env, "a", "1");
	w_tag(&env, "b", "2");
	w_dtag(&env, "c", "3");
	w_dtag(&env, "d", "4");
	cr_assert_eq(lgr_pb_check_envelope(env.b, env.n, &lim), LGR_OK);
	w_dtag(&env, "e", "5");
	cr_assert_eq(lgr_pb_check_envelope(env.b, env.n, &lim), LGR_ELIMIT);
	lim.max_tags = 5;
	cr_assert_eq(lgr_pb_check_envelope(env.b, env.n, &lim), LGR_OK);
}

Test(pb_envelope, counts_gauge_metrics_over_every_gauge_field)
{
	struct wbuf env = {.n = 0}, g1 = {.n = 0}, g2 = {.n = 0};
	struct lgr_limits lim = {.max_metrics = 5};

	/* protobuf merges repeated occurrences of a message field, so the metrics of both add up. */
	w_gauge_body(&g1, 0, 3);
	w_gauge_body(&g2, 3, 2);
	w_msg(&env, 6, &g1);
	w_msg(&env, 6, &g2);
	cr_assert_eq(lgr_pb_check_envelope(env.b, env.n, &lim), LGR_OK);
	lim.max_metrics = 4;
	cr_assert_eq(lgr_pb_check_envelope(env.b, env.n, &lim), LGR_ELIMIT);
}

Test(pb_envelope, bounds_nesting_depth_with_a_gauge_value_at_level_three)
{
	struct wbuf env = {.n = 0}, g = {.n = 0};
	struct lgr_limits lim = {.max_depth = 3};

	w_gauge_body(&g, 0, 1);
	w_msg(&env, 6, &g);
	cr_assert_eq(lgr_pb_check_envelope(env.b, env.n, &lim), LGR_OK);
	lim.max_depth = 2;
	cr_assert_eq(lgr_pb_check_envelope(env.b, env.n, &lim), LGR_ELIMIT);
}

Test(pb_envelope, counts_an_unknown_length_delimited_field_as_one_level)
{
	struct wbuf env = {.n = 0}, log = {.n = 0};
	struct lgr_limits lim = {.max_depth = 1};

	/* A known string is no level; an unknown field inside the log is level 2. */
	w_str(&log, 1, "payload");
	w_msg(&env, 4, &log);
	cr_assert_eq(lgr_pb_check_envelope(env.b, env.n, &lim), LGR_OK);
	w_str(&log, 15, "unknown");
	env.n = 0;
	w_msg(&env, 4, &log);
	cr_assert_eq(lgr_pb_check_envelope(env.b, env.n, &lim), LGR_ELIMIT);
	lim.max_depth = 2;
	cr_assert_eq(lgr_pb_check_envelope(env.b, env.n, &lim), LGR_OK);
}

Test(pb_envelope, accepts_unknown_fields_of_every_wire_type)
{
	struct wbuf env = {.n = 0};
	const uint8_t four[4] = {0};

	w_envelope_basic(&env);
	w_uint(&env, 100, 7);
	w_double(&env, 101, 1.0);
	w_str(&env, 102, "x");
	w_key(&env, 103, LGR_PB_I32);
	w_raw(&env, four, 4);
	cr_assert_eq(lgr_pb_check_envelope(env.b, env.n, NULL), LGR_OK);
}

Test(pb_envelope, rejects_a_known_field_with_the_wrong_wire_type)
{
	struct wbuf env = {.n = 0};

	w_str(&env, 1, "timestamp as bytes");
	cr_assert_eq(lgr_pb_check_envelope(env.b, env.n, NULL), LGR_EDECODE);
	env.n = 0;
	w_uint(&env, 9, 1); /* tags as a varint */
	cr_assert_eq(lgr_pb_check_envelope(env.b, env.n, NULL), LGR_EDECODE);
}

Test(pb_envelope, rejects_groups_and_undefined_wire_types)
{
	unsigned wire;

	for (wire = 3; wire < 8; wire++) {
		struct wbuf env = {.n = 0};

		if (wire == LGR_PB_I32)
			continue;
		w_envelope_basic(&env);
		w_key(&env, 50, wire);
		w_varint(&env, 0);
		cr_assert_eq(lgr_pb_check_envelope(env.b, env.n, NULL), LGR_EDECODE, "wire %u", wire);
	}
}

Test(pb_envelope, rejects_every_truncation_of_a_valid_envelope)
{
	struct wbuf env = {.n = 0}, g = {.n = 0};
	size_t cut;

	w_envelope_basic(&env);
	w_gauge_body(&g, 0, 2);
	w_msg(&env, 6, &g);
	/* Each cut either ends between top-level fields (valid) or inside one (malformed); never a crash. */
	for (cut = 0; cut < env.n; cut++) {
		int rc = lgr_pb_check_envelope(env.b, cut, NULL);
		size_t pos = 0;
		struct lgr_pb_field f;
		bool boundary = true;

		while (pos < cut)
			if (lgr_pb_field_next(env.b, cut, &pos, &f) != LGR_OK) {
				boundary = false;
				break;
			}
		cr_assert_eq(rc, boundary ? LGR_OK : LGR_EDECODE, "cut at %zu", cut);
	}
}

Test(pb_envelope, rejects_a_nested_length_running_past_its_parent)
{
	struct wbuf env = {.n = 0};
	/* tags entry of 4 bytes whose key claims 10 bytes */
	const uint8_t bad[] = {0x4a, 0x04, 0x0a, 0x0a, 'a', 'b', 0x12, 0x00};

	w_raw(&env, bad, sizeof(bad));
	cr_assert_eq(lgr_pb_check_envelope(env.b, env.n, NULL), LGR_EDECODE);
}

/* --- EnvelopeBatch validator ---------------------------------------------------------------------------------- */

Test(pb_batch, counts_records_and_skips_unknown_fields)
{
	struct wbuf batch = {.n = 0}, env = {.n = 0};
	size_t count = 0;

	w_envelope_basic(&env);
	w_msg(&batch, 1, &env);
	w_str(&batch, 7, "unknown");
	w_msg(&batch, 1, &env);
	w_uint(&batch, 8, 3);
	w_len(&batch, 1, NULL, 0);
	cr_assert_eq(lgr_pb_check_batch(batch.b, batch.n, NULL, &count), LGR_OK);
	cr_assert_eq(count, 3);
}

Test(pb_batch, rejects_more_records_than_max_batch)
{
	struct wbuf batch = {.n = 0}, env = {.n = 0};
	struct lgr_limits lim = {.max_batch = 3};
	size_t count = 0;
	int i;

	w_envelope_basic(&env);
	for (i = 0; i < 3; i++)
		w_msg(&batch, 1, &env);
	cr_assert_eq(lgr_pb_check_batch(batch.b, batch.n, &lim, &count), LGR_OK);
	cr_assert_eq(count, 3);
	w_msg(&batch, 1, &env);
	cr_assert_eq(lgr_pb_check_batch(batch.b, batch.n, &lim, &count), LGR_ELIMIT);
}

Test(pb_batch, applies_tag_limits_per_envelope_not_per_batch)
{
	struct wbuf batch = {.n = 0}, env = {.n = 0};
	struct lgr_limits lim = {.max_tags = 2};

	w_tag(&env, "a", "1");
	w_tag(&env, "b", "2");
	w_msg(&batch, 1, &env);
	w_msg(&batch, 1, &env);
	cr_assert_eq(lgr_pb_check_batch(batch.b, batch.n, &lim, NULL), LGR_OK);
	w_tag(&env, "c", "3");
	w_msg(&batch, 1, &env);
	cr_assert_eq(lgr_pb_check_batch(batch.b, batch.n, &lim, NULL), LGR_ELIMIT);
}

Test(pb_batch, checks_every_envelope_and_the_batch_size)
{
	struct wbuf batch = {.n = 0}, env = {.n = 0}, g = {.n = 0};
	struct lgr_limits lim = {.max_depth = 4};
	const uint8_t bad_env[] = {0x12, 0x05, 'a'}; /* source_id claims 5 bytes, has 1 */

	w_gauge_body(&g, 0, 1);
	w_msg(&env, 6, &g);
	w_msg(&batch, 1, &env);
	/* In a batch, the envelope is level 1, so its gauge value is level 4. */
	cr_assert_eq(lgr_pb_check_batch(batch.b, batch.n, &lim, NULL), LGR_OK);
	lim.max_depth = 3;
	cr_assert_eq(lgr_pb_check_batch(batch.b, batch.n, &lim, NULL), LGR_ELIMIT);
	lim.max_depth = 0;
	lim.max_message = batch.n - 1;
	cr_assert_eq(lgr_pb_check_batch(batch.b, batch.n, &lim, NULL), LGR_ETOOBIG);
	w_len(&batch, 1, bad_env, sizeof(bad_env));
	cr_assert_eq(lgr_pb_check_batch(batch.b, batch.n, NULL, NULL), LGR_EDECODE);
}

Test(pb_batch, accepts_the_real_router_bytes)
{
	/* The first RAWBATCH of tests/vectors/router-egress-all-types.txt. */
	static const char hex[] =
		"0a3c08d881c6e08780f9f418120561707031304201304a1b0a0b736f757263655f74797065120c4150502f"
		"50524f432f57454222090a0768656c6c6f2030";
	uint8_t buf[sizeof(hex) / 2];
	size_t i, count = 0;

	for (i = 0; i < sizeof(buf); i++) {
		unsigned byte;

		cr_assert_eq(sscanf(hex + 2 * i, "%2x", &byte), 1);
		buf[i] = (uint8_t)byte;
	}
	cr_assert_eq(lgr_pb_check_batch(buf, sizeof(buf), NULL, &count), LGR_OK);
	cr_assert_eq(count, 1);
	/* The envelope inside starts after the tag and the one-byte length. */
	cr_assert_eq(lgr_pb_check_envelope(buf + 2, sizeof(buf) - 2, NULL), LGR_OK);
}
