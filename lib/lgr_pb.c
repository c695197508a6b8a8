/*
 * lgr_pb.c: the protobuf wire-format scanner that checks untrusted v2 Envelope and EnvelopeBatch bytes before
 * protobuf-c sees them (see lgr_pb.h).
 *
 * The validator is driven by a small table of the v2 schema: for each message, the known fields with their wire
 * type and, for sub-messages, which message to descend into. Recursion follows only known sub-messages, so its
 * depth is bounded by the schema (four levels), whatever the input.
 */
#include "lgr_pb.h"

#include <stdbool.h>
#include <string.h>

enum msg {
	MSG_NONE = 0, /* a scalar, string or bytes field: not descended into */
	MSG_BATCH,
	MSG_ENVELOPE,
	MSG_TAG_ENTRY,
	MSG_DTAG_ENTRY,
	MSG_VALUE,
	MSG_LOG,
	MSG_COUNTER,
	MSG_GAUGE,
	MSG_METRIC_ENTRY,
	MSG_GAUGE_VALUE,
	MSG_TIMER,
	MSG_EVENT,
	MSG_COUNT,
};

/* What a field adds to the per-envelope counts bounded by the limits. */
enum count {
	COUNT_NONE = 0,
	COUNT_TAG,
	COUNT_METRIC,
	COUNT_RECORD,
};

struct field_rule {
	uint32_t number;
	enum lgr_pb_wire wire;
	enum msg child;
	enum count count;
};

#define MAX_RULES 10

struct msg_rules {
	size_t n;
	struct field_rule f[MAX_RULES];
};

static const struct msg_rules schema[MSG_COUNT] = {
	[MSG_BATCH] = {1, {{1, LGR_PB_LEN, MSG_ENVELOPE, COUNT_RECORD}}},
	[MSG_ENVELOPE] = {10,
		{
			{1, LGR_PB_VARINT, MSG_NONE, COUNT_NONE},   /* timestamp */
			{2, LGR_PB_LEN, MSG_NONE, COUNT_NONE},	    /* source_id */
			{3, LGR_PB_LEN, MSG_DTAG_ENTRY, COUNT_TAG}, /* deprecated_tags */
			{4, LGR_PB_LEN, MSG_LOG, COUNT_NONE},	    /* log */
			{5, LGR_PB_LEN, MSG_COUNTER, COUNT_NONE},   /* counter */
			{6, LGR_PB_LEN, MSG_GAUGE, COUNT_NONE},	    /* gauge */
			{7, LGR_PB_LEN, MSG_TIMER, COUNT_NONE},	    /* timer */
			{8, LGR_PB_LEN, MSG_NONE, COUNT_NONE},	    /* instance_id */
			{9, LGR_PB_LEN, MSG_TAG_ENTRY, COUNT_TAG},  /* tags */
			{10, LGR_PB_LEN, MSG_EVENT, COUNT_NONE},    /* event */
		}},
	[MSG_TAG_ENTRY] = {2, {{1, LGR_PB_LEN, MSG_NONE, COUNT_NONE}, {2, LGR_PB_LEN, MSG_NONE, COUNT_NONE}}},
	[MSG_DTAG_ENTRY] = {2, {{1, LGR_PB_LEN, MSG_NONE, COUNT_NONE}, {2, LGR_PB_LEN, MSG_VALUE, COUNT_NONE}}},
	[MSG_VALUE] = {3, {{1, LGR_PB_LEN, MSG_NONE, COUNT_NONE}, {2, LGR_PB_VARINT, MSG_NONE, COUNT_NONE},
				  {3, LGR_PB_I64, MSG_NONE, COUNT_NONE}}},
	[MSG_LOG] = {2, {{1, LGR_PB_LEN, MSG_NONE, COUNT_NONE}, {2, LGR_PB_VARINT, MSG_NONE, COUNT_NONE}}},
	[MSG_COUNTER] = {3, {{1, LGR_PB_LEN, MSG_NONE, COUNT_NONE}, {2, LGR_PB_VARINT, MSG_NONE, COUNT_NONE},
				    {3, LGR_PB_VARINT, MSG_NONE, COUNT_NONE}}},
	[MSG_GAUGE] = {1, {{1, LGR_PB_LEN, MSG_METRIC_ENTRY, COUNT_METRIC}}},
	[MSG_METRIC_ENTRY] = {2, {{1, LGR_PB_LEN, MSG_NONE, COUNT_NONE}, {2, LGR_PB_LEN, MSG_GAUGE_VALUE, COUNT_NONE}}},
	[MSG_GAUGE_VALUE] = {2, {{1, LGR_PB_LEN, MSG_NONE, COUNT_NONE}, {2, LGR_PB_I64, MSG_NONE, COUNT_NONE}}},
	[MSG_TIMER] = {3, {{1, LGR_PB_LEN, MSG_NONE, COUNT_NONE}, {2, LGR_PB_VARINT, MSG_NONE, COUNT_NONE},
				  {3, LGR_PB_VARINT, MSG_NONE, COUNT_NONE}}},
	[MSG_EVENT] = {2, {{1, LGR_PB_LEN, MSG_NONE, COUNT_NONE}, {2, LGR_PB_LEN, MSG_NONE, COUNT_NONE}}},
};

/* The state of one walk: the resolved limits and the counts of the envelope being walked. */
struct walk {
	struct lgr_limits lim;
	size_t tags;
	size_t metrics;
	size_t records;
};

/* The general case of varint(): two bytes or more. */
static int varint_long(const uint8_t *buf, size_t len, size_t *pos, uint64_t *out)
{
	uint64_t v = 0;
	size_t p = *pos;
	unsigned shift;
	int rc = LGR_EDECODE;

	for (shift = 0; shift < 7 * LGR_PB_VARINT_MAX; shift += 7) {
		uint8_t b;

		if (p >= len)
			break;
		b = buf[p++];
		/* The tenth byte holds only bit 63: anything more is an overflow or an eleventh byte. */
		if (shift == 63 && b > 1)
			break;
		v |= (uint64_t)(b & 0x7f) << shift;
		if ((b & 0x80) == 0) {
			*pos = p;
			*out = v;
			rc = LGR_OK;
			break;
		}
	}
	return rc;
}

/* Most varints on the wire (keys, lengths, small numbers) are one byte: that case is inlined into the scanners. */
static inline int varint(const uint8_t *buf, size_t len, size_t *pos, uint64_t *out)
{
	if (*pos < len && buf[*pos] < 0x80) {
		*out = buf[(*pos)++];
		return LGR_OK;
	}
	return varint_long(buf, len, pos, out);
}

int lgr_pb_varint(const uint8_t *buf, size_t len, size_t *pos, uint64_t *out)
{
	return varint(buf, len, pos, out);
}

/* A field's key: its number (1 .. LGR_PB_MAX_FIELD) and one of the four wire types in use. */
static inline int key(const uint8_t *buf, size_t len, size_t *pos, uint32_t *number, enum lgr_pb_wire *wire)
{
	uint64_t k, num;
	unsigned w;

	if (varint(buf, len, pos, &k) != LGR_OK)
		return LGR_EDECODE;
	num = k >> 3;
	w = (unsigned)(k & 7);
	if (num == 0 || num > LGR_PB_MAX_FIELD ||
		(w != LGR_PB_VARINT && w != LGR_PB_I64 && w != LGR_PB_LEN && w != LGR_PB_I32))
		return LGR_EDECODE;
	*number = (uint32_t)num;
	*wire = (enum lgr_pb_wire)w;
	return LGR_OK;
}

int lgr_pb_key(const uint8_t *buf, size_t len, size_t *pos, uint32_t *number, enum lgr_pb_wire *wire)
{
	size_t p = *pos;
	int rc = key(buf, len, &p, number, wire);

	if (rc == LGR_OK)
		*pos = p;
	return rc;
}

/* lgr_pb_field_next, inlined into this unit's walk: every field of every envelope received passes here. */
static inline int field_next(const uint8_t *buf, size_t len, size_t *pos, struct lgr_pb_field *f)
{
	size_t p = *pos;
	uint64_t n = 0;

	f->varint = 0;
	f->data = NULL;
	f->len = 0;
	if (key(buf, len, &p, &f->number, &f->wire) != LGR_OK)
		return LGR_EDECODE;
	switch (f->wire) {
	case LGR_PB_VARINT:
		if (varint(buf, len, &p, &f->varint) != LGR_OK)
			return LGR_EDECODE;
		*pos = p;
		return LGR_OK;
	case LGR_PB_I64: n = 8; break;
	case LGR_PB_I32: n = 4; break;
	case LGR_PB_LEN:
		if (varint(buf, len, &p, &n) != LGR_OK)
			return LGR_EDECODE;
		break;
	default: return LGR_EDECODE; /* key() lets no other type through */
	}
	if (n > len - p)
		return LGR_EDECODE;
	f->data = buf + p;
	f->len = (size_t)n;
	*pos = p + (size_t)n;
	return LGR_OK;
}

int lgr_pb_field_next(const uint8_t *buf, size_t len, size_t *pos, struct lgr_pb_field *f)
{
	int rc = field_next(buf, len, pos, f);

	if (rc != LGR_OK)
		memset(f, 0, sizeof(*f));
	return rc;
}

size_t lgr_pb_varint_size(uint64_t v)
{
	size_t n = 1;

	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

size_t lgr_pb_varint_put(uint8_t *dst, uint64_t v)
{
	size_t n = 0;

	while (v >= 0x80) {
		dst[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	dst[n++] = (uint8_t)v;
	return n;
}

static const struct field_rule *rule_find(enum msg m, uint32_t number)
{
	const struct msg_rules *r = &schema[m];
	size_t i;

	if (number >= 1 && number <= r->n && r->f[number - 1].number == number) /* every table lists 1 .. n in order */
		return &r->f[number - 1];
	for (i = 0; i < r->n; i++)
		if (r->f[i].number == number)
			return &r->f[i];
	return NULL;
}

/* Adds one to the count that rule bounds; LGR_ELIMIT once it passes its limit. */
static int count_field(struct walk *w, enum count c)
{
	int rc = LGR_OK;

	switch (c) {
	case COUNT_TAG:
		if (++w->tags > w->lim.max_tags)
			rc = LGR_ELIMIT;
		break;
	case COUNT_METRIC:
		if (++w->metrics > w->lim.max_metrics)
			rc = LGR_ELIMIT;
		break;
	case COUNT_RECORD:
		if (++w->records > w->lim.max_batch)
			rc = LGR_ELIMIT;
		/* Tag and metric limits are per envelope: a new record starts from zero. */
		w->tags = 0;
		w->metrics = 0;
		break;
	case COUNT_NONE: break;
	}
	return rc;
}

/* Walks the message m in buf[0, len), which sits at nesting level depth (its sub-messages at depth + 1). */
static int walk_msg(struct walk *w, enum msg m, const uint8_t *buf, size_t len, unsigned depth)
{
	struct lgr_pb_field f;
	const struct field_rule *rule;
	size_t pos = 0;
	int rc = LGR_OK;

	while (pos < len) {
		rc = field_next(buf, len, &pos, &f);
		if (rc != LGR_OK)
			goto out;
		rule = rule_find(m, f.number);
		if (rule == NULL) {
			/* Unknown: we cannot tell a sub-message from bytes, so it costs one level and is not walked. */
			if (f.wire == LGR_PB_LEN && depth + 1 > w->lim.max_depth) {
				rc = LGR_ELIMIT;
				goto out;
			}
			continue;
		}
		if (rule->wire != f.wire) {
			rc = LGR_EDECODE;
			goto out;
		}
		if (rule->child == MSG_NONE)
			continue;
		if (depth + 1 > w->lim.max_depth) {
			rc = LGR_ELIMIT;
			goto out;
		}
		rc = count_field(w, rule->count);
		if (rc != LGR_OK)
			goto out;
		rc = walk_msg(w, rule->child, f.data, f.len, depth + 1);
		if (rc != LGR_OK)
			goto out;
	}
out:
	return rc;
}

static int check(enum msg m, const uint8_t *buf, size_t len, const struct lgr_limits *lim, size_t *count)
{
	struct walk w;
	int rc;

	memset(&w, 0, sizeof(w));
	if (lim != NULL)
		w.lim = *lim;
	lgr_limits_resolve(&w.lim);
	if (len > w.lim.max_message) {
		rc = LGR_ETOOBIG;
		goto out;
	}
	if (buf == NULL && len > 0) {
		rc = LGR_EINVAL;
		goto out;
	}
	rc = walk_msg(&w, m, buf, len, 0);
	if (rc == LGR_OK && count != NULL)
		*count = w.records;
out:
	return rc;
}

int lgr_pb_check_envelope(const uint8_t *buf, size_t len, const struct lgr_limits *lim)
{
	return check(MSG_ENVELOPE, buf, len, lim, NULL);
}

int lgr_pb_check_batch(const uint8_t *buf, size_t len, const struct lgr_limits *lim, size_t *count)
{
	return check(MSG_BATCH, buf, len, lim, count);
}
