/*
 * lgr_json.c: the JSON form of v2 envelopes (wire.md section 5): a direct serializer for the gateway's hot path, a
 * json-c builder for rsyslog, and a parser that accepts what protobuf's JSON parser accepts.
 *
 * Unpopulated fields: the real RLP gateway marshals with protojson's EmitUnpopulated, and every data line of its
 * captured output carries instance_id "", deprecated_tags {}, tags {}, log.type "OUT" and counter delta/total. The
 * self-metrics capture (doppler-rlp-self-metrics-json.txt) omits instance_id and a zero counter delta/total because
 * it was printed with protojson's defaults, not by the gateway. We write what the gateway writes, every field of the
 * set message always present, so a consumer written against the gateway sees the key set it expects; the parser
 * accepts both forms (a missing field is its default).
 *
 * Why the serializer is hand-rolled: building a json-c tree costs one allocation per field and per map entry and
 * then a second walk to print it; writing straight into one growing buffer costs a few reallocs per batch. It also
 * lets us print doubles in protojson's shortest form and replace invalid UTF-8, which json-c's printer passes
 * through as raw bytes (invalid JSON).
 */
#include "lgr_json.h"
#include "lgr_text.h"

#include <float.h>
#include <limits.h>
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json.h>

/* --- UTF-8 -------------------------------------------------------------------------------------------------------- */

/* A copy of s with every byte that is not part of a well-formed sequence replaced by U+FFFD (as Go does). */
static int utf8_sanitize(const char *str, size_t n, char **out, size_t *out_len)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0, o = 0, l;
	char *p;

	*out = NULL;
	if (n > (SIZE_MAX - 1) / 3)
		return LGR_ENOMEM;
	p = malloc(n * 3 + 1);
	if (p == NULL)
		return LGR_ENOMEM;
	while (i < n) {
		l = lgr_text_utf8_seq(s + i, n - i);
		if (l == 0) {
			memcpy(p + o, "\xef\xbf\xbd", 3);
			o += 3;
			i++;
		} else {
			memcpy(p + o, s + i, l);
			o += l;
			i += l;
		}
	}
	p[o] = '\0';
	*out = p;
	*out_len = o;
	return LGR_OK;
}

/* --- map keys: protobuf lets a key repeat on the wire (the last wins); JSON readers reject or merge repeats ------- */

typedef const char *key_of_fn(const void *entry);

static const char *str_or_empty(const char *s)
{
	return s != NULL ? s : "";
}

static const char *tag_key(const void *e)
{
	return str_or_empty(((const Loggregator__V2__Envelope__TagsEntry *)e)->key);
}

static const char *dtag_key(const void *e)
{
	return str_or_empty(((const Loggregator__V2__Envelope__DeprecatedTagsEntry *)e)->key);
}

static const char *metric_key(const void *e)
{
	return str_or_empty(((const Loggregator__V2__Gauge__MetricsEntry *)e)->key);
}

/* Up to this many entries a pairwise scan is cheaper than sorting; real envelopes carry fewer than 20 tags. */
#define MAP_SCAN_MAX 16

struct map_view {
	void *const *entries;
	size_t n;
	key_of_fn *key;
	bool *shadowed; /* n flags, or NULL: scan pairwise */
};

/* The next chunk of a key as it will be written: a well-formed sequence, or U+FFFD for one invalid byte. */
static size_t key_chunk(const unsigned char *s, size_t n, const unsigned char **chunk, size_t *chunk_len)
{
	size_t l = lgr_text_utf8_seq(s, n);

	if (l != 0) {
		*chunk = s;
		*chunk_len = l;
		return l;
	}
	*chunk = (const unsigned char *)"\xef\xbf\xbd";
	*chunk_len = 3;
	return 1;
}

/*
 * Keys compared as they will be written, where every invalid UTF-8 byte reads as U+FFFD: two keys that differ only
 * in their invalid bytes are the same JSON key. Chunk by chunk, a total order in which keys that print alike are
 * equal, which is all the sort needs.
 */
static int key_cmp(const char *a, const char *b)
{
	const unsigned char *x = (const unsigned char *)a, *y = (const unsigned char *)b, *cx, *cy;
	size_t nx = strlen(a), ny = strlen(b), lx, ly, used;
	int c;

	while (nx > 0 && ny > 0) {
		used = key_chunk(x, nx, &cx, &lx);
		x += used;
		nx -= used;
		used = key_chunk(y, ny, &cy, &ly);
		y += used;
		ny -= used;
		c = memcmp(cx, cy, lx < ly ? lx : ly);
		if (c != 0)
			return c;
		if (lx != ly)
			return lx < ly ? -1 : 1;
	}
	return nx > 0 ? 1 : ny > 0 ? -1 : 0;
}

struct key_pos {
	const char *key;
	size_t pos;
};

static int key_pos_cmp(const void *a, const void *b)
{
	const struct key_pos *x = a, *y = b;
	int c = key_cmp(x->key, y->key);

	if (c != 0)
		return c;
	return x->pos < y->pos ? -1 : x->pos > y->pos;
}

/* Above MAP_SCAN_MAX entries, finds the shadowed ones by sorting (key, position), so 4096 tags stay cheap. */
static int map_view_init(struct map_view *v, void *const *entries, size_t n, key_of_fn *key)
{
	struct key_pos *kp = NULL;
	size_t i;
	int rc = LGR_OK;

	v->entries = entries;
	v->n = n;
	v->key = key;
	v->shadowed = NULL;
	if (n <= MAP_SCAN_MAX)
		goto out;
	kp = malloc(n * sizeof(*kp));
	v->shadowed = calloc(n, sizeof(*v->shadowed));
	if (kp == NULL || v->shadowed == NULL) {
		rc = LGR_ENOMEM;
		goto out;
	}
	for (i = 0; i < n; i++) {
		kp[i].key = key(entries[i]);
		kp[i].pos = i;
	}
	qsort(kp, n, sizeof(*kp), key_pos_cmp);
	for (i = 0; i + 1 < n; i++)
		if (key_cmp(kp[i].key, kp[i + 1].key) == 0)
			v->shadowed[kp[i].pos] = true;
out:
	free(kp);
	return rc;
}

static bool map_view_shadowed(const struct map_view *v, size_t i)
{
	size_t j;

	if (v->shadowed != NULL)
		return v->shadowed[i];
	for (j = i + 1; j < v->n; j++)
		if (key_cmp(v->key(v->entries[i]), v->key(v->entries[j])) == 0)
			return true;
	return false;
}

static void map_view_cleanup(struct map_view *v)
{
	free(v->shadowed);
	v->shadowed = NULL;
}

/* --- the serializer ----------------------------------------------------------------------------------------------- */

/*
 * A growing output buffer with a sticky result: after the first failure every append is a no-op and the caller
 * checks rc once at the end. Its size follows from the envelope, itself bounded when it was decoded.
 */
struct wbuf {
	char *p;
	size_t len, cap;
	int rc;
};

static bool wb_reserve(struct wbuf *b, size_t more)
{
	size_t cap;
	char *p;

	if (b->rc != LGR_OK)
		return false;
	if (more < b->cap - b->len) /* one byte stays free for the NUL */
		return true;
	if (more > SIZE_MAX / 4 - b->len) {
		b->rc = LGR_ENOMEM;
		return false;
	}
	cap = b->cap != 0 ? b->cap : 512;
	while (cap <= b->len + more)
		cap *= 2;
	p = realloc(b->p, cap);
	if (p == NULL) {
		b->rc = LGR_ENOMEM;
		return false;
	}
	b->p = p;
	b->cap = cap;
	return true;
}

static void wb_put(struct wbuf *b, const char *s, size_t n)
{
	if (!wb_reserve(b, n))
		return;
	memcpy(b->p + b->len, s, n);
	b->len += n;
}

static void wb_lit(struct wbuf *b, const char *s)
{
	wb_put(b, s, strlen(s));
}

/* How an ASCII byte is written inside a JSON string: 0 as is, 'u' as \u00XX, any other letter as \<letter>. */
/* clang-format off */
static const char json_esc[128] = {
	'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'b', 't', 'n', 'u', 'f', 'r', 'u', 'u', /* 0x00 */
	'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', /* 0x10 */
	['"'] = '"',
	['\\'] = '\\',
};
/* clang-format on */

static size_t escaped_len(const unsigned char *s, size_t n)
{
	size_t i = 0, len = 2, l;

	while (i < n) {
		if (s[i] < 0x80) {
			len += json_esc[s[i]] == 0 ? 1 : json_esc[s[i]] == 'u' ? 6 : 2;
			i++;
			continue;
		}
		l = lgr_text_utf8_seq(s + i, n - i);
		len += l != 0 ? l : 6;
		i += l != 0 ? l : 1;
	}
	return len;
}

/* A JSON string as protojson escapes it (quote, backslash, control characters); invalid UTF-8 becomes \ufffd. */
static void wb_string(struct wbuf *b, const char *str, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0, l;
	char *d;

	if (n > SIZE_MAX / 8) {
		b->rc = LGR_ENOMEM;
		return;
	}
	if (!wb_reserve(b, escaped_len(s, n)))
		return;
	d = b->p + b->len;
	*d++ = '"';
	while (i < n) {
		if (s[i] >= 0x80) {
			l = lgr_text_utf8_seq(s + i, n - i);
			if (l == 0) {
				memcpy(d, "\\ufffd", 6);
				d += 6;
				i++;
			} else {
				memcpy(d, s + i, l);
				d += l;
				i += l;
			}
			continue;
		}
		switch (json_esc[s[i]]) {
		case 0: *d++ = (char)s[i]; break;
		case 'u':
			memcpy(d, "\\u00", 4);
			d[4] = hex[s[i] >> 4];
			d[5] = hex[s[i] & 0xf];
			d += 6;
			break;
		default:
			d[0] = '\\';
			d[1] = json_esc[s[i]];
			d += 2;
			break;
		}
		i++;
	}
	*d++ = '"';
	b->len = (size_t)(d - b->p);
}

static void wb_cstr(struct wbuf *b, const char *s)
{
	s = str_or_empty(s);
	wb_string(b, s, strlen(s));
}

/* protojson writes 64-bit integers as strings: JavaScript numbers lose precision above 2^53. */
static void wb_int(struct wbuf *b, uint64_t mag, bool neg, bool quoted)
{
	char t[24];
	size_t i = sizeof(t);

	if (quoted)
		t[--i] = '"';
	do {
		t[--i] = (char)('0' + mag % 10);
		mag /= 10;
	} while (mag != 0);
	if (neg)
		t[--i] = '-';
	if (quoted)
		t[--i] = '"';
	wb_put(b, t + i, sizeof(t) - i);
}

static void wb_i64(struct wbuf *b, int64_t v)
{
	wb_int(b, v < 0 ? 0 - (uint64_t)v : (uint64_t)v, v < 0, true);
}

static void wb_u64(struct wbuf *b, uint64_t v)
{
	wb_int(b, v, false, true);
}

static void wb_double(struct wbuf *b, double v)
{
	char t[LGR_TEXT_DOUBLE_MAX];

	if (isnan(v))
		wb_lit(b, "\"NaN\"");
	else if (isinf(v))
		wb_lit(b, v > 0 ? "\"Infinity\"" : "\"-Infinity\"");
	else
		wb_put(b, t, lgr_text_double(v, t));
}

static void wb_base64(struct wbuf *b, const uint8_t *s, size_t n)
{
	static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t i;
	uint32_t v;
	char *d;

	if (n > SIZE_MAX / 2) {
		b->rc = LGR_ENOMEM;
		return;
	}
	if (!wb_reserve(b, (n + 2) / 3 * 4 + 2))
		return;
	d = b->p + b->len;
	*d++ = '"';
	for (i = 0; i + 3 <= n; i += 3) {
		v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
		*d++ = alphabet[v >> 18];
		*d++ = alphabet[(v >> 12) & 63];
		*d++ = alphabet[(v >> 6) & 63];
		*d++ = alphabet[v & 63];
	}
	if (n - i == 1) {
		v = (uint32_t)s[i] << 16;
		*d++ = alphabet[v >> 18];
		*d++ = alphabet[(v >> 12) & 63];
		*d++ = '=';
		*d++ = '=';
	} else if (n - i == 2) {
		v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8;
		*d++ = alphabet[v >> 18];
		*d++ = alphabet[(v >> 12) & 63];
		*d++ = alphabet[(v >> 6) & 63];
		*d++ = '=';
	}
	*d++ = '"';
	b->len = (size_t)(d - b->p);
}

static void wb_value(struct wbuf *b, const Loggregator__V2__Value *v)
{
	if (v == NULL) {
		wb_lit(b, "{}");
		return;
	}
	switch (v->data_case) {
	case LOGGREGATOR__V2__VALUE__DATA_TEXT:
		wb_lit(b, "{\"text\":");
		wb_cstr(b, v->text);
		break;
	case LOGGREGATOR__V2__VALUE__DATA_INTEGER:
		wb_lit(b, "{\"integer\":");
		wb_i64(b, v->integer);
		break;
	case LOGGREGATOR__V2__VALUE__DATA_DECIMAL:
		wb_lit(b, "{\"decimal\":");
		wb_double(b, v->decimal);
		break;
	default: wb_lit(b, "{"); break;
	}
	wb_lit(b, "}");
}

static void wb_gauge_value(struct wbuf *b, const Loggregator__V2__GaugeValue *v)
{
	wb_lit(b, "{\"unit\":");
	wb_cstr(b, v != NULL ? v->unit : NULL);
	wb_lit(b, ",\"value\":");
	wb_double(b, v != NULL ? v->value : 0);
	wb_lit(b, "}");
}

enum map_kind { MAP_TAGS, MAP_DTAGS, MAP_METRICS };

static void wb_map(struct wbuf *b, void *const *entries, size_t n, enum map_kind kind)
{
	static key_of_fn *const key_of[] = {[MAP_TAGS] = tag_key, [MAP_DTAGS] = dtag_key, [MAP_METRICS] = metric_key};
	struct map_view view;
	bool first = true;
	size_t i;
	int rc;

	rc = map_view_init(&view, entries, n, key_of[kind]);
	if (rc != LGR_OK) {
		if (b->rc == LGR_OK)
			b->rc = rc;
		goto out;
	}
	wb_lit(b, "{");
	for (i = 0; i < n; i++) {
		if (map_view_shadowed(&view, i))
			continue;
		if (!first)
			wb_lit(b, ",");
		first = false;
		wb_cstr(b, key_of[kind](entries[i]));
		wb_lit(b, ":");
		switch (kind) {
		case MAP_TAGS: wb_cstr(b, ((const Loggregator__V2__Envelope__TagsEntry *)entries[i])->value); break;
		case MAP_DTAGS:
			wb_value(b, ((const Loggregator__V2__Envelope__DeprecatedTagsEntry *)entries[i])->value);
			break;
		case MAP_METRICS:
			wb_gauge_value(b, ((const Loggregator__V2__Gauge__MetricsEntry *)entries[i])->value);
			break;
		}
	}
	wb_lit(b, "}");
out:
	map_view_cleanup(&view);
}

static void wb_envelope(struct wbuf *b, const Loggregator__V2__Envelope *pb, unsigned flags)
{
	wb_lit(b, "{\"timestamp\":");
	wb_i64(b, pb->timestamp);
	wb_lit(b, ",\"source_id\":");
	wb_cstr(b, pb->source_id);
	wb_lit(b, ",\"instance_id\":");
	wb_cstr(b, pb->instance_id);
	wb_lit(b, ",\"deprecated_tags\":");
	wb_map(b, (void *const *)pb->deprecated_tags, pb->n_deprecated_tags, MAP_DTAGS);
	wb_lit(b, ",\"tags\":");
	wb_map(b, (void *const *)pb->tags, pb->n_tags, MAP_TAGS);
	switch (pb->message_case) {
	case LOGGREGATOR__V2__ENVELOPE__MESSAGE_LOG:
		wb_lit(b, ",\"log\":{");
		if (!(flags & LGR_JSON_NO_PAYLOAD)) {
			wb_lit(b, "\"payload\":");
			if (pb->log != NULL)
				wb_base64(b, pb->log->payload.data, pb->log->payload.len);
			else
				wb_lit(b, "\"\"");
			wb_lit(b, ",");
		}
		wb_lit(b, "\"type\":");
		if (pb->log == NULL || pb->log->type == LOGGREGATOR__V2__LOG__TYPE__OUT)
			wb_lit(b, "\"OUT\"");
		else if (pb->log->type == LOGGREGATOR__V2__LOG__TYPE__ERR)
			wb_lit(b, "\"ERR\"");
		else /* an enum value this schema has no name for: protojson writes its number (an int32) */
			wb_int(b, (uint64_t)llabs((int32_t)pb->log->type), (int32_t)pb->log->type < 0, false);
		wb_lit(b, "}");
		break;
	case LOGGREGATOR__V2__ENVELOPE__MESSAGE_COUNTER:
		wb_lit(b, ",\"counter\":{\"name\":");
		wb_cstr(b, pb->counter != NULL ? pb->counter->name : NULL);
		wb_lit(b, ",\"delta\":");
		wb_u64(b, pb->counter != NULL ? pb->counter->delta : 0);
		wb_lit(b, ",\"total\":");
		wb_u64(b, pb->counter != NULL ? pb->counter->total : 0);
		wb_lit(b, "}");
		break;
	case LOGGREGATOR__V2__ENVELOPE__MESSAGE_GAUGE:
		wb_lit(b, ",\"gauge\":{\"metrics\":");
		if (pb->gauge != NULL)
			wb_map(b, (void *const *)pb->gauge->metrics, pb->gauge->n_metrics, MAP_METRICS);
		else
			wb_lit(b, "{}");
		wb_lit(b, "}");
		break;
	case LOGGREGATOR__V2__ENVELOPE__MESSAGE_TIMER:
		wb_lit(b, ",\"timer\":{\"name\":");
		wb_cstr(b, pb->timer != NULL ? pb->timer->name : NULL);
		wb_lit(b, ",\"start\":");
		wb_i64(b, pb->timer != NULL ? pb->timer->start : 0);
		wb_lit(b, ",\"stop\":");
		wb_i64(b, pb->timer != NULL ? pb->timer->stop : 0);
		wb_lit(b, "}");
		break;
	case LOGGREGATOR__V2__ENVELOPE__MESSAGE_EVENT:
		wb_lit(b, ",\"event\":{\"title\":");
		wb_cstr(b, pb->event != NULL ? pb->event->title : NULL);
		wb_lit(b, ",\"body\":");
		wb_cstr(b, pb->event != NULL ? pb->event->body : NULL);
		wb_lit(b, "}");
		break;
	default: break;
	}
	wb_lit(b, "}");
}

static int wb_finish(struct wbuf *b, char **out, size_t *out_len)
{
	if (b->rc == LGR_OK && !wb_reserve(b, 0)) /* an empty batch still needs its NUL */
		b->rc = LGR_ENOMEM;
	if (b->rc != LGR_OK) {
		free(b->p);
		return b->rc;
	}
	b->p[b->len] = '\0';
	*out = b->p;
	*out_len = b->len;
	return LGR_OK;
}

int lgr_json_write(const struct lgr_env *env, unsigned flags, char **out, size_t *out_len)
{
	struct wbuf b = {.rc = LGR_OK};
	locale_t old;
	int rc;

	if (out != NULL)
		*out = NULL;
	if (env == NULL || env->pb == NULL || out == NULL || out_len == NULL)
		return LGR_EINVAL;
	old = lgr_text_c_locale_enter();
	wb_envelope(&b, env->pb, flags);
	rc = wb_finish(&b, out, out_len);
	lgr_text_c_locale_leave(old);
	return rc;
}

int lgr_json_write_batch(struct lgr_env *const *envs, size_t n, unsigned flags, char **out, size_t *out_len)
{
	struct wbuf b = {.rc = LGR_OK};
	locale_t old;
	size_t i;
	int rc;

	if (out != NULL)
		*out = NULL;
	if ((envs == NULL && n > 0) || out == NULL || out_len == NULL)
		return LGR_EINVAL;
	for (i = 0; i < n; i++)
		if (envs[i] == NULL || envs[i]->pb == NULL)
			return LGR_EINVAL;
	old = lgr_text_c_locale_enter();
	wb_lit(&b, "{\"batch\":[");
	for (i = 0; i < n; i++) {
		if (i > 0)
			wb_lit(&b, ",");
		wb_envelope(&b, envs[i]->pb, flags);
	}
	wb_lit(&b, "]}");
	rc = wb_finish(&b, out, out_len);
	lgr_text_c_locale_leave(old);
	return rc;
}

/* --- the json-c builder ------------------------------------------------------------------------------------------- */

/* Adds val (ours until added; json-c does not free it on failure) under key. */
static int jb_add(struct json_object *obj, const char *key, struct json_object *val)
{
	char *fixed = NULL;
	size_t fixed_len;
	int rc = LGR_OK;

	if (val == NULL)
		return LGR_ENOMEM;
	if (!lgr_text_utf8_valid(key, strlen(key))) {
		rc = utf8_sanitize(key, strlen(key), &fixed, &fixed_len);
		if (rc != LGR_OK)
			goto out;
		key = fixed;
	}
	if (json_object_object_add(obj, key, val) != 0)
		rc = LGR_ENOMEM;
	else
		val = NULL; /* ownership transferred */
out:
	json_object_put(val);
	free(fixed);
	return rc;
}

static int jb_string(const char *s, size_t n, struct json_object **out)
{
	char *fixed = NULL;
	int rc = LGR_OK;

	*out = NULL;
	if (!lgr_text_utf8_valid(s, n)) {
		rc = utf8_sanitize(s, n, &fixed, &n);
		if (rc != LGR_OK)
			goto out;
		s = fixed;
	}
	if (n > INT_MAX) {
		rc = LGR_ETOOBIG;
		goto out;
	}
	*out = json_object_new_string_len(s, (int)n);
	if (*out == NULL)
		rc = LGR_ENOMEM;
out:
	free(fixed);
	return rc;
}

static int jb_add_str(struct json_object *obj, const char *key, const char *s)
{
	struct json_object *v;
	int rc;

	s = str_or_empty(s);
	rc = jb_string(s, strlen(s), &v);
	if (rc == LGR_OK)
		rc = jb_add(obj, key, v);
	return rc;
}

static int jb_add_int(struct json_object *obj, const char *key, uint64_t mag, bool neg)
{
	char t[24];

	snprintf(t, sizeof(t), "%s%llu", neg ? "-" : "", (unsigned long long)mag);
	return jb_add(obj, key, json_object_new_string(t));
}

static int jb_add_i64(struct json_object *obj, const char *key, int64_t v)
{
	return jb_add_int(obj, key, v < 0 ? 0 - (uint64_t)v : (uint64_t)v, v < 0);
}

/* Finite doubles keep their shortest text so that json-c prints them as lgr_json_write does. */
static int jb_add_double(struct json_object *obj, const char *key, double v)
{
	char t[LGR_TEXT_DOUBLE_MAX];

	if (isnan(v))
		return jb_add(obj, key, json_object_new_string("NaN"));
	if (isinf(v))
		return jb_add(obj, key, json_object_new_string(v > 0 ? "Infinity" : "-Infinity"));
	lgr_text_double(v, t);
	return jb_add(obj, key, json_object_new_double_s(v, t));
}

/* Adds a new empty object under key and hands it back (still owned by obj). */
static int jb_add_obj(struct json_object *obj, const char *key, struct json_object **child)
{
	*child = json_object_new_object();
	return jb_add(obj, key, *child);
}

static int jb_value(struct json_object *o, const Loggregator__V2__Value *v)
{
	if (v == NULL)
		return LGR_OK;
	switch (v->data_case) {
	case LOGGREGATOR__V2__VALUE__DATA_TEXT: return jb_add_str(o, "text", v->text);
	case LOGGREGATOR__V2__VALUE__DATA_INTEGER: return jb_add_i64(o, "integer", v->integer);
	case LOGGREGATOR__V2__VALUE__DATA_DECIMAL: return jb_add_double(o, "decimal", v->decimal);
	default: return LGR_OK;
	}
}

/* Repeated keys need no care here: json_object_object_add replaces, so the last value wins as in protobuf. */
static int jb_tags(struct json_object *o, const Loggregator__V2__Envelope *pb)
{
	struct json_object *map, *val;
	size_t i;
	int rc;

	rc = jb_add_obj(o, "deprecated_tags", &map);
	for (i = 0; rc == LGR_OK && i < pb->n_deprecated_tags; i++) {
		rc = jb_add_obj(map, dtag_key(pb->deprecated_tags[i]), &val);
		if (rc == LGR_OK)
			rc = jb_value(val, pb->deprecated_tags[i]->value);
	}
	if (rc == LGR_OK)
		rc = jb_add_obj(o, "tags", &map);
	for (i = 0; rc == LGR_OK && i < pb->n_tags; i++)
		rc = jb_add_str(map, tag_key(pb->tags[i]), pb->tags[i]->value);
	return rc;
}

static int jb_log(struct json_object *o, const Loggregator__V2__Log *m, unsigned flags)
{
	struct json_object *s;
	struct wbuf b = {.rc = LGR_OK};
	int rc = LGR_OK;

	if (!(flags & LGR_JSON_NO_PAYLOAD)) {
		/* the base64 writer quotes its output: strip the quotes */
		wb_base64(&b, m != NULL ? m->payload.data : NULL, m != NULL ? m->payload.len : 0);
		rc = b.rc;
		if (rc == LGR_OK && b.len - 2 > INT_MAX)
			rc = LGR_ETOOBIG;
		if (rc == LGR_OK) {
			s = json_object_new_string_len(b.p + 1, (int)(b.len - 2));
			rc = jb_add(o, "payload", s);
		}
	}
	if (rc != LGR_OK)
		goto out;
	if (m == NULL || m->type == LOGGREGATOR__V2__LOG__TYPE__OUT)
		rc = jb_add(o, "type", json_object_new_string("OUT"));
	else if (m->type == LOGGREGATOR__V2__LOG__TYPE__ERR)
		rc = jb_add(o, "type", json_object_new_string("ERR"));
	else
		rc = jb_add(o, "type", json_object_new_int((int32_t)m->type));
out:
	free(b.p);
	return rc;
}

static int jb_message(struct json_object *o, const Loggregator__V2__Envelope *pb, unsigned flags)
{
	struct json_object *m, *metrics, *val;
	const Loggregator__V2__Gauge__MetricsEntry *e;
	size_t i;
	int rc = LGR_OK;

	switch (pb->message_case) {
	case LOGGREGATOR__V2__ENVELOPE__MESSAGE_LOG:
		rc = jb_add_obj(o, "log", &m);
		if (rc == LGR_OK)
			rc = jb_log(m, pb->log, flags);
		break;
	case LOGGREGATOR__V2__ENVELOPE__MESSAGE_COUNTER:
		rc = jb_add_obj(o, "counter", &m);
		if (rc == LGR_OK)
			rc = jb_add_str(m, "name", pb->counter != NULL ? pb->counter->name : NULL);
		if (rc == LGR_OK)
			rc = jb_add_int(m, "delta", pb->counter != NULL ? pb->counter->delta : 0, false);
		if (rc == LGR_OK)
			rc = jb_add_int(m, "total", pb->counter != NULL ? pb->counter->total : 0, false);
		break;
	case LOGGREGATOR__V2__ENVELOPE__MESSAGE_GAUGE:
		rc = jb_add_obj(o, "gauge", &m);
		if (rc == LGR_OK)
			rc = jb_add_obj(m, "metrics", &metrics);
		for (i = 0; rc == LGR_OK && pb->gauge != NULL && i < pb->gauge->n_metrics; i++) {
			e = pb->gauge->metrics[i];
			rc = jb_add_obj(metrics, metric_key(e), &val);
			if (rc == LGR_OK)
				rc = jb_add_str(val, "unit", e->value != NULL ? e->value->unit : NULL);
			if (rc == LGR_OK)
				rc = jb_add_double(val, "value", e->value != NULL ? e->value->value : 0);
		}
		break;
	case LOGGREGATOR__V2__ENVELOPE__MESSAGE_TIMER:
		rc = jb_add_obj(o, "timer", &m);
		if (rc == LGR_OK)
			rc = jb_add_str(m, "name", pb->timer != NULL ? pb->timer->name : NULL);
		if (rc == LGR_OK)
			rc = jb_add_i64(m, "start", pb->timer != NULL ? pb->timer->start : 0);
		if (rc == LGR_OK)
			rc = jb_add_i64(m, "stop", pb->timer != NULL ? pb->timer->stop : 0);
		break;
	case LOGGREGATOR__V2__ENVELOPE__MESSAGE_EVENT:
		rc = jb_add_obj(o, "event", &m);
		if (rc == LGR_OK)
			rc = jb_add_str(m, "title", pb->event != NULL ? pb->event->title : NULL);
		if (rc == LGR_OK)
			rc = jb_add_str(m, "body", pb->event != NULL ? pb->event->body : NULL);
		break;
	default: break;
	}
	return rc;
}

static int jb_envelope(const Loggregator__V2__Envelope *pb, unsigned flags, struct json_object **out)
{
	struct json_object *o;
	int rc;

	*out = NULL;
	o = json_object_new_object();
	if (o == NULL)
		return LGR_ENOMEM;
	rc = jb_add_i64(o, "timestamp", pb->timestamp);
	if (rc == LGR_OK)
		rc = jb_add_str(o, "source_id", pb->source_id);
	if (rc == LGR_OK)
		rc = jb_add_str(o, "instance_id", pb->instance_id);
	if (rc == LGR_OK)
		rc = jb_tags(o, pb);
	if (rc == LGR_OK)
		rc = jb_message(o, pb, flags);
	if (rc != LGR_OK) {
		json_object_put(o);
		return rc;
	}
	*out = o;
	return LGR_OK;
}

int lgr_json_build(const struct lgr_env *env, unsigned flags, struct json_object **out)
{
	locale_t old;
	int rc;

	if (out != NULL)
		*out = NULL;
	if (env == NULL || env->pb == NULL || out == NULL)
		return LGR_EINVAL;
	old = lgr_text_c_locale_enter();
	rc = jb_envelope(env->pb, flags, out);
	lgr_text_c_locale_leave(old);
	return rc;
}

int lgr_json_build_batch(struct lgr_env *const *envs, size_t n, unsigned flags, struct json_object **out)
{
	struct json_object *o = NULL, *arr, *e;
	locale_t old = (locale_t)0;
	size_t i;
	int rc;

	if (out != NULL)
		*out = NULL;
	if ((envs == NULL && n > 0) || out == NULL || n > INT_MAX)
		return LGR_EINVAL;
	for (i = 0; i < n; i++)
		if (envs[i] == NULL || envs[i]->pb == NULL)
			return LGR_EINVAL;
	old = lgr_text_c_locale_enter();
	o = json_object_new_object();
	if (o == NULL) {
		rc = LGR_ENOMEM;
		goto out;
	}
	arr = json_object_new_array_ext((int)n);
	rc = jb_add(o, "batch", arr);
	for (i = 0; rc == LGR_OK && i < n; i++) {
		rc = jb_envelope(envs[i]->pb, flags, &e);
		if (rc == LGR_OK && json_object_array_add(arr, e) != 0) {
			json_object_put(e);
			rc = LGR_ENOMEM;
		}
	}
	if (rc == LGR_OK) {
		*out = o;
		o = NULL; /* ownership transferred */
	}
out:
	json_object_put(o);
	lgr_text_c_locale_leave(old);
	return rc;
}

/* --- JSON text: what json-c needs help with ----------------------------------------------------------------------- */

static bool is_number_char(char c)
{
	return (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E';
}

/* An integer literal json-c would mangle: 19 digits or more (it saturates at 64 bits), or -0 (it drops the sign). */
static bool literal_needs_fix(const char *s, size_t n)
{
	size_t i = s[0] == '-' ? 1 : 0, digits = n - i;

	for (; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	if (digits == 1 && s[0] == '-' && s[1] == '0')
		return true;
	return digits >= 19;
}

/*
 * Finds what json-c would accept or mangle silently, before it parses:
 * - integer literals of 19 digits or more, which json-c saturates to 64 bits (Go writes a gauge value of 1e20 as
 *   100000000000000000000), and -0, whose sign it drops: when out is not NULL, the text is copied there with ".0"
 *   appended to each, so that json-c keeps them as doubles together with their text, which we read exactly;
 * - NUL bytes and raw control characters inside strings, which JSON forbids and json-c lets through;
 * - the escape \u0000, at which json-c silently cuts object keys.
 * Returns LGR_OK and the number of literals to rewrite in *nfix, LGR_EDECODE or LGR_EUNSUPPORTED.
 */
static int prescan(const char *buf, size_t len, char *out, size_t *nfix)
{
	bool in_string = false;
	size_t i = 0, o = 0, start;

	*nfix = 0;
	while (i < len) {
		unsigned char c = (unsigned char)buf[i];

		if (c == '\0' || (in_string && c < 0x20))
			return LGR_EDECODE;
		if (in_string && c == '\\') {
			if (i + 1 < len && (unsigned char)buf[i + 1] < 0x20)
				return LGR_EDECODE;
			if (i + 5 < len && memcmp(buf + i + 1, "u0000", 5) == 0)
				return LGR_EUNSUPPORTED;
			start = i;
			i += i + 1 < len ? 2 : 1; /* the escaped character does not end the string */
		} else if (c == '"') {
			in_string = !in_string;
			start = i++;
		} else if (!in_string && (c == '-' || (c >= '0' && c <= '9'))) {
			start = i;
			while (i < len && is_number_char(buf[i]))
				i++;
			if (literal_needs_fix(buf + start, i - start)) {
				if (out != NULL) {
					memcpy(out + o, buf + start, i - start);
					o += i - start;
					memcpy(out + o, ".0", 2);
					o += 2;
				}
				(*nfix)++;
				continue;
			}
		} else {
			start = i++;
		}
		if (out != NULL) {
			memcpy(out + o, buf + start, i - start);
			o += i - start;
		}
	}
	if (out != NULL)
		out[o] = '\0';
	return LGR_OK;
}

static bool is_json_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static int parse_text(const char *buf, size_t len, const struct lgr_limits *lim, struct json_object **out)
{
	struct json_tokener *tok = NULL;
	struct json_object *obj = NULL;
	enum json_tokener_error err;
	char *fixed = NULL;
	size_t nfix, end;
	int rc;

	*out = NULL;
	rc = prescan(buf, len, NULL, &nfix);
	if (rc != LGR_OK)
		goto out;
	if (nfix > 0) {
		fixed = malloc(len + 2 * nfix + 1);
		if (fixed == NULL) {
			rc = LGR_ENOMEM;
			goto out;
		}
		prescan(buf, len, fixed, &nfix);
		buf = fixed;
		len += 2 * nfix;
	}
	if (len > INT_MAX) {
		rc = LGR_ETOOBIG;
		goto out;
	}
	/* json-c counts the top-level value in its depth: max_depth nested levels need one more */
	tok = json_tokener_new_ex(lim->max_depth >= INT_MAX ? INT_MAX : (int)lim->max_depth + 1);
	if (tok == NULL) {
		rc = LGR_ENOMEM;
		goto out;
	}
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	obj = json_tokener_parse_ex(tok, buf, (int)len);
	err = json_tokener_get_error(tok);
	end = json_tokener_get_parse_end(tok);
	if (err == json_tokener_continue) {
		/* a value that only the end of input completes (a number at the top level) or a truncated one */
		obj = json_tokener_parse_ex(tok, "", 1);
		err = json_tokener_get_error(tok);
		end = len;
	}
	if (err != json_tokener_success) {
		rc = err == json_tokener_error_depth ? LGR_ELIMIT : LGR_EDECODE;
		goto out;
	}
	for (; end < len; end++) {
		if (!is_json_space(buf[end])) {
			rc = LGR_EDECODE;
			goto out;
		}
	}
	*out = obj;
	obj = NULL; /* ownership transferred */
out:
	json_object_put(obj);
	if (tok != NULL)
		json_tokener_free(tok);
	free(fixed);
	return rc;
}

/* --- JSON values -> fields ---------------------------------------------------------------------------------------- */

struct pctx {
	struct lgr_limits lim; /* resolved */
	unsigned flags;
	size_t budget; /* bytes of strings still allowed (lim.max_message for one envelope or one batch) */
	size_t ntags;  /* tags and deprecated tags of the current envelope */
};

static int copy_text(struct pctx *c, const char *s, size_t n, char **out)
{
	char *p;
	int rc = LGR_OK;

	if (n > c->budget)
		rc = LGR_ETOOBIG;
	else if (memchr(s, '\0', n) != NULL)
		rc = LGR_EUNSUPPORTED;
	else if (!lgr_text_utf8_valid(s, n))
		rc = LGR_EDECODE;
	if (rc != LGR_OK)
		goto out;
	if (n == 0) {
		*out = (char *)protobuf_c_empty_string; /* the descriptors' default: free_unpacked leaves it alone */
		goto out;
	}
	p = malloc(n + 1);
	if (p == NULL) {
		rc = LGR_ENOMEM;
		goto out;
	}
	memcpy(p, s, n);
	p[n] = '\0';
	*out = p;
	c->budget -= n;
out:
	return rc;
}

static int get_string(struct pctx *c, struct json_object *v, char **out)
{
	if (!json_object_is_type(v, json_type_string))
		return LGR_EDECODE;
	return copy_text(c, json_object_get_string(v), (size_t)json_object_get_string_len(v), out);
}

/* A json-c string equals lit, NULs included (a caller's tree may hold "NaN\0x"). */
static bool string_is(struct json_object *v, const char *lit)
{
	size_t n = strlen(lit);

	return (size_t)json_object_get_string_len(v) == n && memcmp(json_object_get_string(v), lit, n) == 0;
}

/* A JSON number's parts: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? */
struct number {
	bool neg;
	const char *ipart, *fpart;
	size_t ilen, flen;
	int64_t exp; /* saturated far beyond any exponent that could matter */
};

static bool number_syntax(const char *s, size_t n, struct number *num)
{
	size_t i = 0;
	bool eneg = false;

	memset(num, 0, sizeof(*num));
	if (i < n && s[i] == '-') {
		num->neg = true;
		i++;
	}
	num->ipart = s + i;
	if (i < n && s[i] == '0') {
		i++;
	} else if (i < n && s[i] >= '1' && s[i] <= '9') {
		while (i < n && s[i] >= '0' && s[i] <= '9')
			i++;
	} else {
		return false;
	}
	num->ilen = (size_t)(s + i - num->ipart);
	if (i < n && s[i] == '.') {
		num->fpart = s + ++i;
		while (i < n && s[i] >= '0' && s[i] <= '9')
			i++;
		num->flen = (size_t)(s + i - num->fpart);
		if (num->flen == 0)
			return false;
	}
	if (i < n && (s[i] == 'e' || s[i] == 'E')) {
		i++;
		if (i < n && (s[i] == '+' || s[i] == '-'))
			eneg = s[i++] == '-';
		if (i == n || s[i] < '0' || s[i] > '9')
			return false;
		for (; i < n && s[i] >= '0' && s[i] <= '9'; i++)
			if (num->exp < 1000000000000000LL)
				num->exp = num->exp * 10 + (s[i] - '0');
		if (eneg)
			num->exp = -num->exp;
	}
	return i == n;
}

static int digit_at(const struct number *num, size_t pos)
{
	return (pos < num->ilen ? num->ipart[pos] : num->fpart[pos - num->ilen]) - '0';
}

/*
 * The exact integer a JSON number denotes, as protojson reads integer fields: "1e3" and "2.0" are integers, "1.5"
 * is not. Returns LGR_OK with sign and magnitude, or LGR_EDECODE (not an integer, or beyond 64 bits).
 */
static int parse_integer(const char *s, size_t n, bool *neg, uint64_t *mag)
{
	struct number num;
	size_t total, first, last, pos;
	int64_t top, low;
	uint64_t m = 0;
	int rc = LGR_EDECODE;

	*neg = false;
	*mag = 0;
	if (!number_syntax(s, n, &num))
		goto out;
	total = num.ilen + num.flen;
	for (first = 0; first < total && digit_at(&num, first) == 0; first++)
		;
	if (first == total) { /* zero, whatever its exponent */
		rc = LGR_OK;
		goto out;
	}
	for (last = total - 1; digit_at(&num, last) == 0; last--)
		;
	/* the digit at pos weighs 10^(ilen - 1 - pos + exp); integers need the last nonzero one at 10^0 or above */
	top = (int64_t)num.ilen - 1 - (int64_t)first + num.exp;
	low = (int64_t)num.ilen - 1 - (int64_t)last + num.exp;
	if (low < 0 || top > 19)
		goto out;
	for (pos = first; pos <= last; pos++)
		if (__builtin_mul_overflow(m, 10, &m) || __builtin_add_overflow(m, (uint64_t)digit_at(&num, pos), &m))
			goto out;
	for (; low > 0; low--)
		if (__builtin_mul_overflow(m, 10, &m))
			goto out;
	*neg = num.neg;
	*mag = m;
	rc = LGR_OK;
out:
	return rc;
}

/* An integer field given as a JSON number or a string holding one. */
static int get_integer(struct json_object *v, bool *neg, uint64_t *mag)
{
	const char *s;
	int64_t i;

	switch (json_object_get_type(v)) {
	case json_type_int:
		i = json_object_get_int64(v);
		*neg = i < 0;
		if (i < 0)
			*mag = 0 - (uint64_t)i;
		else if (i == INT64_MAX) /* json-c keeps values above it as uint64 */
			*mag = json_object_get_uint64(v);
		else
			*mag = (uint64_t)i;
		return LGR_OK;
	case json_type_double: /* its text: the tokener keeps it, and a double is exact only by chance */
		s = json_object_get_string(v);
		return parse_integer(s, strlen(s), neg, mag);
	case json_type_string:
		return parse_integer(json_object_get_string(v), (size_t)json_object_get_string_len(v), neg, mag);
	default: return LGR_EDECODE;
	}
}

static int get_int64(struct json_object *v, int64_t *out)
{
	uint64_t mag;
	bool neg;
	int rc = get_integer(v, &neg, &mag);

	if (rc == LGR_OK && (neg ? mag > (uint64_t)INT64_MAX + 1 : mag > (uint64_t)INT64_MAX))
		rc = LGR_EDECODE;
	if (rc == LGR_OK)
		*out = neg ? (int64_t)(0 - mag) : (int64_t)mag;
	return rc;
}

static int get_uint64(struct json_object *v, uint64_t *out)
{
	uint64_t mag;
	bool neg;
	int rc = get_integer(v, &neg, &mag);

	if (rc == LGR_OK && neg && mag != 0)
		rc = LGR_EDECODE;
	if (rc == LGR_OK)
		*out = mag;
	return rc;
}

/* A double field: a number, or a string holding a number, "NaN", "Infinity" or "-Infinity". */
static int get_double(struct json_object *v, double *out)
{
	struct number num;
	const char *s;
	double d = 0;
	int rc = LGR_OK;

	switch (json_object_get_type(v)) {
	case json_type_int: d = json_object_get_double(v); break;
	case json_type_double:
		/* the text, because json-c also reads bare NaN, Infinity and "1.", which JSON does not have */
		s = json_object_get_string(v);
		d = json_object_get_double(v);
		if (!number_syntax(s, strlen(s), &num) || !isfinite(d))
			rc = LGR_EDECODE;
		break;
	case json_type_string:
		if (string_is(v, "NaN")) {
			d = NAN;
		} else if (string_is(v, "Infinity")) {
			d = INFINITY;
		} else if (string_is(v, "-Infinity")) {
			d = -INFINITY;
		} else if (number_syntax(json_object_get_string(v), (size_t)json_object_get_string_len(v), &num)) {
			d = strtod(json_object_get_string(v), NULL);
			if (!isfinite(d)) /* beyond the double range: protojson refuses it too */
				rc = LGR_EDECODE;
		} else {
			rc = LGR_EDECODE;
		}
		break;
	default: rc = LGR_EDECODE; break;
	}
	if (rc == LGR_OK)
		*out = d;
	return rc;
}

static int get_log_type(struct json_object *v, Loggregator__V2__Log__Type *out)
{
	int64_t i = 0;
	int rc = LGR_OK;

	if (json_object_is_type(v, json_type_string)) {
		if (string_is(v, "OUT"))
			i = LOGGREGATOR__V2__LOG__TYPE__OUT;
		else if (string_is(v, "ERR"))
			i = LOGGREGATOR__V2__LOG__TYPE__ERR;
		else
			rc = LGR_EDECODE;
	} else if (json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double)) {
		/* a number, also one this schema has no name for: proto3 enums are open */
		rc = get_int64(v, &i);
		if (rc == LGR_OK && (i < INT32_MIN || i > INT32_MAX))
			rc = LGR_EDECODE;
	} else {
		rc = LGR_EDECODE;
	}
	if (rc == LGR_OK)
		*out = (Loggregator__V2__Log__Type)i;
	return rc;
}

static signed char b64_value(unsigned char c, bool url)
{
	if (c >= 'A' && c <= 'Z')
		return (signed char)(c - 'A');
	if (c >= 'a' && c <= 'z')
		return (signed char)(c - 'a' + 26);
	if (c >= '0' && c <= '9')
		return (signed char)(c - '0' + 52);
	if (c == (url ? '-' : '+'))
		return 62;
	if (c == (url ? '_' : '/'))
		return 63;
	return -1;
}

/*
 * Bytes as protojson reads them: the URL-safe alphabet when '-' or '_' appears, else the standard one; padded when
 * the length is a multiple of 4, unpadded otherwise. The size is checked before the buffer is allocated.
 */
static int get_bytes(struct pctx *c, struct json_object *v, ProtobufCBinaryData *out)
{
	const unsigned char *s;
	size_t n, body, len, i, o = 0;
	uint32_t acc = 0;
	unsigned bits = 0;
	signed char d;
	uint8_t *p = NULL;
	bool url;
	int rc = LGR_OK;

	if (!json_object_is_type(v, json_type_string)) {
		rc = LGR_EDECODE;
		goto out;
	}
	s = (const unsigned char *)json_object_get_string(v);
	n = (size_t)json_object_get_string_len(v);
	url = memchr(s, '-', n) != NULL || memchr(s, '_', n) != NULL;
	body = n;
	if (n % 4 == 0)
		while (body > 0 && n - body < 2 && s[body - 1] == '=')
			body--;
	if (body % 4 == 1) {
		rc = LGR_EDECODE;
		goto out;
	}
	len = body / 4 * 3 + (body % 4 == 0 ? 0 : body % 4 - 1);
	if (len > c->budget) {
		rc = LGR_ETOOBIG;
		goto out;
	}
	if (len == 0) /* then body is 0 too */
		goto out;
	p = malloc(len);
	if (p == NULL) {
		rc = LGR_ENOMEM;
		goto out;
	}
	for (i = 0; i < body; i++) {
		d = b64_value(s[i], url);
		if (d < 0) {
			rc = LGR_EDECODE;
			goto out;
		}
		acc = acc << 6 | (uint32_t)d;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			p[o++] = (uint8_t)(acc >> bits);
		}
	}
	/* Go's decoder is not strict: leftover bits need not be zero */
	c->budget -= len;
	out->data = p;
	out->len = len;
	p = NULL; /* ownership transferred */
out:
	free(p);
	return rc;
}

/* --- JSON objects -> messages ------------------------------------------------------------------------------------- */

struct field {
	const char *name;      /* the proto name, which the gateway writes */
	const char *json_name; /* lowerCamelCase, which protojson also reads; NULL when the same */
};

typedef int field_fn(struct pctx *c, unsigned idx, struct json_object *val, void *msg);

/*
 * Walks the members of obj, which must be an object, and hands each known non-null one to fn with its index in
 * fields. As protojson: an unknown key fails (unless LGR_JSON_DISCARD_UNKNOWN), a field named twice (under both
 * spellings) fails, null leaves the default.
 */
static int walk(
	struct pctx *c, struct json_object *obj, const struct field *fields, unsigned nfields, field_fn *fn, void *msg)
{
	struct json_object_iterator it, end;
	struct json_object *val;
	unsigned seen = 0, i;
	const char *key;
	int rc = LGR_OK;

	if (!json_object_is_type(obj, json_type_object)) {
		rc = LGR_EDECODE;
		goto out;
	}
	it = json_object_iter_begin(obj);
	end = json_object_iter_end(obj);
	for (; rc == LGR_OK && !json_object_iter_equal(&it, &end); json_object_iter_next(&it)) {
		key = json_object_iter_peek_name(&it);
		val = json_object_iter_peek_value(&it);
		for (i = 0; i < nfields; i++)
			if (strcmp(key, fields[i].name) == 0 ||
				(fields[i].json_name != NULL && strcmp(key, fields[i].json_name) == 0))
				break;
		if (i == nfields) {
			if (!(c->flags & LGR_JSON_DISCARD_UNKNOWN))
				rc = LGR_EDECODE;
			continue;
		}
		if (seen & (1u << i)) {
			rc = LGR_EDECODE;
			continue;
		}
		seen |= 1u << i;
		if (val != NULL)
			rc = fn(c, i, val, msg);
	}
out:
	return rc;
}

static const struct field value_fields[] = {{"text", NULL}, {"integer", NULL}, {"decimal", NULL}};

static int value_field(struct pctx *c, unsigned idx, struct json_object *val, void *msg)
{
	Loggregator__V2__Value *m = msg;
	int rc;

	if (m->data_case != LOGGREGATOR__V2__VALUE__DATA__NOT_SET)
		return LGR_EDECODE; /* two members of the oneof */
	switch (idx) {
	case 0:
		rc = get_string(c, val, &m->text);
		/*
		 * An empty text still sets the member, but protobuf-c does not encode a oneof string that is the
		 * descriptor's default pointer: it needs a string of its own.
		 */
		if (rc == LGR_OK && m->text == protobuf_c_empty_string) {
			m->text = strdup("");
			rc = m->text != NULL ? LGR_OK : LGR_ENOMEM;
		}
		if (rc == LGR_OK)
			m->data_case = LOGGREGATOR__V2__VALUE__DATA_TEXT;
		return rc;
	case 1:
		rc = get_int64(val, &m->integer);
		if (rc == LGR_OK)
			m->data_case = LOGGREGATOR__V2__VALUE__DATA_INTEGER;
		return rc;
	default:
		rc = get_double(val, &m->decimal);
		if (rc == LGR_OK)
			m->data_case = LOGGREGATOR__V2__VALUE__DATA_DECIMAL;
		return rc;
	}
}

static const struct field log_fields[] = {{"payload", NULL}, {"type", NULL}};

static int log_field(struct pctx *c, unsigned idx, struct json_object *val, void *msg)
{
	Loggregator__V2__Log *m = msg;

	if (idx == 0)
		return get_bytes(c, val, &m->payload);
	return get_log_type(val, &m->type);
}

static const struct field counter_fields[] = {{"name", NULL}, {"delta", NULL}, {"total", NULL}};

static int counter_field(struct pctx *c, unsigned idx, struct json_object *val, void *msg)
{
	Loggregator__V2__Counter *m = msg;

	switch (idx) {
	case 0: return get_string(c, val, &m->name);
	case 1: return get_uint64(val, &m->delta);
	default: return get_uint64(val, &m->total);
	}
}

static const struct field gauge_value_fields[] = {{"unit", NULL}, {"value", NULL}};

static int gauge_value_field(struct pctx *c, unsigned idx, struct json_object *val, void *msg)
{
	Loggregator__V2__GaugeValue *m = msg;
	int rc;

	if (idx == 0)
		return get_string(c, val, &m->unit);
	rc = get_double(val, &m->value);
	/*
	 * -0 becomes +0 as lgr_env's decoder and setter make it: protobuf-c drops a proto3 double equal to 0 from
	 * the encoding, so only +0 survives a trip through the wire form.
	 */
	if (rc == LGR_OK && m->value == 0)
		m->value = 0.0;
	return rc;
}

static int get_metrics(struct pctx *c, struct json_object *val, Loggregator__V2__Gauge *m)
{
	struct json_object_iterator it, end;
	Loggregator__V2__Gauge__MetricsEntry *e;
	const char *key;
	size_t n = 0;
	int rc = LGR_OK;

	if (!json_object_is_type(val, json_type_object))
		rc = LGR_EDECODE;
	else if ((n = (size_t)json_object_object_length(val)) > c->lim.max_metrics)
		rc = LGR_ELIMIT;
	if (rc != LGR_OK || n == 0)
		goto out;
	m->metrics = malloc(n * sizeof(*m->metrics));
	if (m->metrics == NULL) {
		rc = LGR_ENOMEM;
		goto out;
	}
	it = json_object_iter_begin(val);
	end = json_object_iter_end(val);
	for (; rc == LGR_OK && !json_object_iter_equal(&it, &end); json_object_iter_next(&it)) {
		e = malloc(sizeof(*e));
		if (e == NULL) {
			rc = LGR_ENOMEM;
			goto out;
		}
		loggregator__v2__gauge__metrics_entry__init(e);
		m->metrics[m->n_metrics++] = e; /* from here on freed with the envelope */
		key = json_object_iter_peek_name(&it);
		rc = copy_text(c, key, strlen(key), &e->key);
		if (rc != LGR_OK)
			goto out;
		e->value = malloc(sizeof(*e->value));
		if (e->value == NULL) {
			rc = LGR_ENOMEM;
			goto out;
		}
		loggregator__v2__gauge_value__init(e->value);
		/* null is no GaugeValue: protojson refuses it in a map */
		rc = walk(c, json_object_iter_peek_value(&it), gauge_value_fields, 2, gauge_value_field, e->value);
	}
out:
	return rc;
}

static const struct field gauge_fields[] = {{"metrics", NULL}};

static int gauge_field(struct pctx *c, unsigned idx, struct json_object *val, void *msg)
{
	return get_metrics(c, val, msg);
}

static const struct field timer_fields[] = {{"name", NULL}, {"start", NULL}, {"stop", NULL}};

static int timer_field(struct pctx *c, unsigned idx, struct json_object *val, void *msg)
{
	Loggregator__V2__Timer *m = msg;

	switch (idx) {
	case 0: return get_string(c, val, &m->name);
	case 1: return get_int64(val, &m->start);
	default: return get_int64(val, &m->stop);
	}
}

static const struct field event_fields[] = {{"title", NULL}, {"body", NULL}};

static int event_field(struct pctx *c, unsigned idx, struct json_object *val, void *msg)
{
	Loggregator__V2__Event *m = msg;

	if (idx == 0)
		return get_string(c, val, &m->title);
	return get_string(c, val, &m->body);
}

/* Both tag maps; the count of the two together is checked against max_tags before either array is allocated. */
static int get_tags(struct pctx *c, struct json_object *val, Loggregator__V2__Envelope *pb, bool deprecated)
{
	struct json_object_iterator it, end;
	Loggregator__V2__Envelope__DeprecatedTagsEntry *d;
	Loggregator__V2__Envelope__TagsEntry *t;
	const char *key;
	size_t n = 0;
	int rc = LGR_OK;

	if (!json_object_is_type(val, json_type_object))
		rc = LGR_EDECODE;
	else if ((n = (size_t)json_object_object_length(val)) > c->lim.max_tags - c->ntags)
		rc = LGR_ELIMIT;
	if (rc != LGR_OK || n == 0)
		goto out;
	c->ntags += n;
	if (deprecated)
		pb->deprecated_tags = malloc(n * sizeof(*pb->deprecated_tags));
	else
		pb->tags = malloc(n * sizeof(*pb->tags));
	if (deprecated ? pb->deprecated_tags == NULL : pb->tags == NULL) {
		rc = LGR_ENOMEM;
		goto out;
	}
	it = json_object_iter_begin(val);
	end = json_object_iter_end(val);
	for (; rc == LGR_OK && !json_object_iter_equal(&it, &end); json_object_iter_next(&it)) {
		key = json_object_iter_peek_name(&it);
		if (!deprecated) {
			t = malloc(sizeof(*t));
			if (t == NULL) {
				rc = LGR_ENOMEM;
				goto out;
			}
			loggregator__v2__envelope__tags_entry__init(t);
			pb->tags[pb->n_tags++] = t; /* from here on freed with the envelope */
			rc = copy_text(c, key, strlen(key), &t->key);
			if (rc == LGR_OK) /* a null value is refused: it is not a string */
				rc = get_string(c, json_object_iter_peek_value(&it), &t->value);
			continue;
		}
		d = malloc(sizeof(*d));
		if (d == NULL) {
			rc = LGR_ENOMEM;
			goto out;
		}
		loggregator__v2__envelope__deprecated_tags_entry__init(d);
		pb->deprecated_tags[pb->n_deprecated_tags++] = d;
		rc = copy_text(c, key, strlen(key), &d->key);
		if (rc != LGR_OK)
			goto out;
		d->value = malloc(sizeof(*d->value));
		if (d->value == NULL) {
			rc = LGR_ENOMEM;
			goto out;
		}
		loggregator__v2__value__init(d->value);
		rc = walk(c, json_object_iter_peek_value(&it), value_fields, 3, value_field, d->value);
	}
out:
	return rc;
}

enum env_field {
	F_TIMESTAMP,
	F_SOURCE_ID,
	F_INSTANCE_ID,
	F_DTAGS,
	F_TAGS,
	F_LOG,
	F_COUNTER,
	F_GAUGE,
	F_TIMER,
	F_EVENT
};

static const struct field env_fields[] = {
	[F_TIMESTAMP] = {"timestamp", NULL},
	[F_SOURCE_ID] = {"source_id", "sourceId"},
	[F_INSTANCE_ID] = {"instance_id", "instanceId"},
	[F_DTAGS] = {"deprecated_tags", "deprecatedTags"},
	[F_TAGS] = {"tags", NULL},
	[F_LOG] = {"log", NULL},
	[F_COUNTER] = {"counter", NULL},
	[F_GAUGE] = {"gauge", NULL},
	[F_TIMER] = {"timer", NULL},
	[F_EVENT] = {"event", NULL},
};

/* The oneof member. */
static int get_message(struct pctx *c, unsigned idx, struct json_object *val, Loggregator__V2__Envelope *pb)
{
	static const struct {
		const ProtobufCMessageDescriptor *desc;
		Loggregator__V2__Envelope__MessageCase which;
		const struct field *fields;
		unsigned nfields;
		field_fn *fn;
	} members[] = {
		[F_LOG - F_LOG] = {&loggregator__v2__log__descriptor, LOGGREGATOR__V2__ENVELOPE__MESSAGE_LOG,
			log_fields, 2, log_field},
		[F_COUNTER - F_LOG] = {&loggregator__v2__counter__descriptor,
			LOGGREGATOR__V2__ENVELOPE__MESSAGE_COUNTER, counter_fields, 3, counter_field},
		[F_GAUGE - F_LOG] = {&loggregator__v2__gauge__descriptor, LOGGREGATOR__V2__ENVELOPE__MESSAGE_GAUGE,
			gauge_fields, 1, gauge_field},
		[F_TIMER - F_LOG] = {&loggregator__v2__timer__descriptor, LOGGREGATOR__V2__ENVELOPE__MESSAGE_TIMER,
			timer_fields, 3, timer_field},
		[F_EVENT - F_LOG] = {&loggregator__v2__event__descriptor, LOGGREGATOR__V2__ENVELOPE__MESSAGE_EVENT,
			event_fields, 2, event_field},
	};
	ProtobufCMessage *msg;
	int rc = LGR_OK;

	if (pb->message_case != LOGGREGATOR__V2__ENVELOPE__MESSAGE__NOT_SET) {
		rc = LGR_EDECODE; /* two members of the oneof */
		goto out;
	}
	msg = malloc(members[idx - F_LOG].desc->sizeof_message);
	if (msg == NULL) {
		rc = LGR_ENOMEM;
		goto out;
	}
	protobuf_c_message_init(members[idx - F_LOG].desc, msg);
	switch (members[idx - F_LOG].which) {
	case LOGGREGATOR__V2__ENVELOPE__MESSAGE_LOG: pb->log = (Loggregator__V2__Log *)msg; break;
	case LOGGREGATOR__V2__ENVELOPE__MESSAGE_COUNTER: pb->counter = (Loggregator__V2__Counter *)msg; break;
	case LOGGREGATOR__V2__ENVELOPE__MESSAGE_GAUGE: pb->gauge = (Loggregator__V2__Gauge *)msg; break;
	case LOGGREGATOR__V2__ENVELOPE__MESSAGE_TIMER: pb->timer = (Loggregator__V2__Timer *)msg; break;
	default: pb->event = (Loggregator__V2__Event *)msg; break;
	}
	/* attached before it is filled, so that a failure frees it with the envelope */
	pb->message_case = members[idx - F_LOG].which;
	rc = walk(c, val, members[idx - F_LOG].fields, members[idx - F_LOG].nfields, members[idx - F_LOG].fn, msg);
out:
	return rc;
}

static int env_field(struct pctx *c, unsigned idx, struct json_object *val, void *msg)
{
	Loggregator__V2__Envelope *pb = msg;

	switch (idx) {
	case F_TIMESTAMP: return get_int64(val, &pb->timestamp);
	case F_SOURCE_ID: return get_string(c, val, &pb->source_id);
	case F_INSTANCE_ID: return get_string(c, val, &pb->instance_id);
	case F_DTAGS: return get_tags(c, val, pb, true);
	case F_TAGS: return get_tags(c, val, pb, false);
	default: return get_message(c, idx, val, pb);
	}
}

static int envelope_from_object(struct pctx *c, struct json_object *obj, struct lgr_env **out)
{
	Loggregator__V2__Envelope *pb;
	int rc;

	*out = NULL;
	pb = malloc(sizeof(*pb));
	if (pb == NULL) {
		rc = LGR_ENOMEM;
		goto out;
	}
	loggregator__v2__envelope__init(pb);
	c->ntags = 0;
	rc = walk(c, obj, env_fields, sizeof(env_fields) / sizeof(env_fields[0]), env_field, pb);
	if (rc != LGR_OK)
		goto out;
	*out = lgr_env_take(pb);
	pb = NULL; /* ownership transferred, even on failure */
	if (*out == NULL)
		rc = LGR_ENOMEM;
out:
	if (pb != NULL)
		protobuf_c_message_free_unpacked(&pb->base, NULL);
	return rc;
}

static const struct field batch_fields[] = {{"batch", NULL}};

static int batch_field(struct pctx *c, unsigned idx, struct json_object *val, void *msg)
{
	if (!json_object_is_type(val, json_type_array))
		return LGR_EDECODE;
	*(struct json_object **)msg = val;
	return LGR_OK;
}

static int batch_from_object(struct pctx *c, struct json_object *obj, lgr_env_sink *fn, void *ud)
{
	struct json_object *arr = NULL;
	struct lgr_env **envs = NULL;
	size_t n = 0, i;
	int rc;

	rc = walk(c, obj, batch_fields, 1, batch_field, &arr);
	if (rc != LGR_OK || arr == NULL)
		goto out;
	n = json_object_array_length(arr);
	if (n > c->lim.max_batch) {
		rc = LGR_ELIMIT;
		n = 0;
		goto out;
	}
	if (n == 0)
		goto out;
	envs = calloc(n, sizeof(*envs));
	if (envs == NULL) {
		rc = LGR_ENOMEM;
		n = 0;
		goto out;
	}
	/* every envelope decoded before the first is handed over, as lgr_env_decode_batch does */
	for (i = 0; rc == LGR_OK && i < n; i++)
		rc = envelope_from_object(c, json_object_array_get_idx(arr, i), &envs[i]);
	for (i = 0; rc == LGR_OK && i < n; i++) {
		rc = fn(envs[i], ud);
		envs[i] = NULL; /* ownership transferred */
	}
out:
	for (i = 0; i < n; i++)
		lgr_env_unref(envs[i]);
	free(envs);
	return rc;
}

static void pctx_init(struct pctx *c, const struct lgr_limits *lim, unsigned flags)
{
	memset(c, 0, sizeof(*c));
	if (lim != NULL)
		c->lim = *lim;
	lgr_limits_resolve(&c->lim);
	c->flags = flags;
	c->budget = c->lim.max_message;
}

int lgr_json_from_object(struct json_object *obj, const struct lgr_limits *lim, unsigned flags, struct lgr_env **out)
{
	struct pctx c;
	locale_t old;
	int rc;

	if (out == NULL)
		return LGR_EINVAL;
	*out = NULL;
	if (obj == NULL)
		return LGR_EINVAL;
	pctx_init(&c, lim, flags);
	old = lgr_text_c_locale_enter();
	rc = envelope_from_object(&c, obj, out);
	lgr_text_c_locale_leave(old);
	return rc;
}

int lgr_json_batch_from_object(
	struct json_object *obj, const struct lgr_limits *lim, unsigned flags, lgr_env_sink *fn, void *ud)
{
	struct pctx c;
	locale_t old;
	int rc;

	if (obj == NULL || fn == NULL)
		return LGR_EINVAL;
	pctx_init(&c, lim, flags);
	old = lgr_text_c_locale_enter();
	rc = batch_from_object(&c, obj, fn, ud);
	lgr_text_c_locale_leave(old);
	return rc;
}

int lgr_json_parse(const char *buf, size_t len, const struct lgr_limits *lim, unsigned flags, struct lgr_env **out)
{
	struct json_object *obj = NULL;
	struct pctx c;
	locale_t old = (locale_t)0;
	int rc;

	if (out == NULL)
		return LGR_EINVAL;
	*out = NULL;
	if (buf == NULL && len > 0)
		return LGR_EINVAL;
	pctx_init(&c, lim, flags);
	if (len > c.lim.max_message)
		return LGR_ETOOBIG;
	old = lgr_text_c_locale_enter();
	rc = parse_text(buf, len, &c.lim, &obj);
	if (rc == LGR_OK)
		rc = envelope_from_object(&c, obj, out);
	json_object_put(obj);
	lgr_text_c_locale_leave(old);
	return rc;
}

int lgr_json_parse_batch(
	const char *buf, size_t len, const struct lgr_limits *lim, unsigned flags, lgr_env_sink *fn, void *ud)
{
	struct json_object *obj = NULL;
	struct pctx c;
	locale_t old = (locale_t)0;
	int rc;

	if ((buf == NULL && len > 0) || fn == NULL)
		return LGR_EINVAL;
	pctx_init(&c, lim, flags);
	if (len > c.lim.max_message)
		return LGR_ETOOBIG;
	old = lgr_text_c_locale_enter();
	rc = parse_text(buf, len, &c.lim, &obj);
	if (rc == LGR_OK)
		rc = batch_from_object(&c, obj, fn, ud);
	json_object_put(obj);
	lgr_text_c_locale_leave(old);
	return rc;
}
