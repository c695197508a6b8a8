/*
 * lgr_fjson.c: the JSON form of v2 envelopes as libfastjson trees, for rsyslog's message variables: a builder for the
 * input module ($!loggregator) and a reader for the outputs, both working on the tree directly (no text in between).
 *
 * The builder produces what lgr_json_write() writes, node for node: every field of the set message, 64-bit integers
 * as strings, doubles as double nodes carrying their shortest text (so libfastjson prints the gateway's numbers),
 * NaN and the infinities as strings, invalid UTF-8 replaced by U+FFFD, a map key repeated on the wire written once
 * with its last value. It is on the input's hot path, so it allocates only what the tree itself needs: literal keys
 * are added as constants, every key is added as new (repeats are resolved beforehand, which also keeps the result
 * independent of libfastjson's global case-(in)sensitivity switch that rsyslogd turns off), short strings live
 * inside their node.
 *
 * The reader applies lgr_json_parse()'s rules (see lgr_json.c) to the nodes: names in both spellings, integers from
 * strings or numbers, enums by name or number, null as the default, the same limits checked before allocating.
 * Differences come only from what a tree can hold that text cannot (they are listed in lgr_fjson.h).
 *
 * Two hot paths skip the envelope in between for the commonest case, a Log envelope without deprecated tags: the
 * input builds its tree straight from the protobuf bytes (lgr_fjson_build_log_wire), and the outputs encode such a
 * tree straight into protobuf bytes (lgr_fjson_log_measure / lgr_fjson_log_pack). Each takes only what it is sure to
 * handle exactly as the general path would, and says LGR_EUNSUPPORTED for everything else.
 *
 * libfastjson's internals: two things cannot be learnt through its public API, and one costs too much through it;
 * this unit reads them from json_object_private.h, which libfastjson installs and whose layout has not changed since
 * 0.99:
 * - fjson_object_object_add_ex() returns nothing. When allocating a child page fails, the child is simply not added
 *   (seen as an unchanged length); when copying the key fails, the child is added under a NULL key, which its
 *   iterator cannot walk and its destructor skips. newest_key_missing() detects the second case so that the builder
 *   returns LGR_ENOMEM instead of a tree that crashes whoever walks it.
 * - a double node keeps the text it was parsed from (or built with). lgr_json reads integer fields from that text
 *   exactly, as protojson does; fjson_object_get_string() would print it into a buffer cached in the node, i.e.
 *   allocate and write to the caller's tree. double_source() reads it in place. rsyslog's own copies of a tree
 *   (jsonDeepCopy) drop the text: such doubles are read by value.
 * - the outputs' hot path walks an object's child pages itself (members_begin / members_next), for objects nothing
 *   was deleted from; others go through the public iterator.
 */
#define FJSON_NATIVE_API_ONLY 1 /* without libfastjson's json-c compatibility macros */
#include "lgr_fjson.h"
#include "lgr_pb.h"
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

#include <libfastjson/json.h>
#include <libfastjson/json_object_private.h>

/* --- libfastjson internals (see the file header) ------------------------------------------------------------------ */

/* After adding a child to obj, an object this unit made and never deleted from: did libfastjson lose its key? */
static bool newest_key_missing(const struct fjson_object *obj)
{
	int n = obj->o.c_obj.nelem;

	if (n == 0 || obj->o.c_obj.ndeleted != 0)
		return false;
	return obj->o.c_obj.lastpg->children[(n - 1) % FJSON_OBJECT_CHLD_PG_SIZE].k == NULL;
}

/*
 * The members of an object, read from its child pages instead of through libfastjson's iterator (a call for every
 * step, peek and comparison: the outputs' hot path walks some fifteen members per message). Only for an object that
 * nothing was ever deleted from, whose nelem members then fill its pages in order; false for any other, which the
 * caller leaves to the iterator.
 */
struct members {
	const struct _fjson_child_pg *pg;
	int left, i;
};

static bool members_begin(const struct fjson_object *obj, struct members *m)
{
	if (obj->o_type != fjson_type_object || obj->o.c_obj.ndeleted != 0 || obj->o.c_obj.nelem < 0)
		return false;
	m->pg = &obj->o.c_obj.pg;
	m->left = obj->o.c_obj.nelem;
	m->i = 0;
	return true;
}

/* The next member (NULL after the last, *ok true), or NULL with *ok false where the pages are not as expected. */
static const struct _fjson_child *members_next(struct members *m, bool *ok)
{
	const struct _fjson_child *c;

	*ok = true;
	if (m->left == 0)
		return NULL;
	if (m->i == FJSON_OBJECT_CHLD_PG_SIZE) {
		m->pg = m->pg->next;
		m->i = 0;
	}
	if (m->pg == NULL || m->pg->children[m->i].k == NULL) {
		*ok = false;
		return NULL;
	}
	c = &m->pg->children[m->i++];
	m->left--;
	return c;
}

/* The text a double node was parsed from or built with; NULL when it has none (fjson_object_new_double). */
static const char *double_source(const struct fjson_object *v)
{
	return v->o.c_double.source;
}

#define REPLACEMENT "\xef\xbf\xbd" /* U+FFFD */

/* Writes s[0..n) with each byte outside a well-formed sequence replaced by U+FFFD (as Go does) to out, which has
 * room for 3 * n + 1 bytes, NUL-terminated. Returns the length written. */
static size_t utf8_fix(const char *str, size_t n, char *out)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0, o = 0, l;

	while (i < n) {
		l = lgr_text_utf8_seq(s + i, n - i);
		if (l == 0) {
			memcpy(out + o, REPLACEMENT, 3);
			o += 3;
			i++;
		} else {
			memcpy(out + o, s + i, l);
			o += l;
			i += l;
		}
	}
	out[o] = '\0';
	return o;
}

/*
 * Text as it will be written: s itself when it is valid UTF-8, else a fixed copy in stack (when it fits) or in a
 * malloc'd *heap the caller frees. Returns LGR_OK or LGR_ENOMEM.
 */
#define FIX_STACK 256

static int text_as_written(const char **s, size_t *n, char stack[FIX_STACK], char **heap)
{
	char *p = stack;

	*heap = NULL;
	if (lgr_text_utf8_valid(*s, *n))
		return LGR_OK;
	if (*n > (SIZE_MAX - 1) / 3)
		return LGR_ENOMEM;
	if (*n * 3 + 1 > FIX_STACK) {
		p = *heap = malloc(*n * 3 + 1);
		if (p == NULL)
			return LGR_ENOMEM;
	}
	*n = utf8_fix(*s, *n, p);
	*s = p;
	return LGR_OK;
}

/*
 * The next unit of a key as it will be written: the well-formed sequence at s, or U+FFFD standing for one invalid
 * byte. Returns the input bytes it covers.
 */
static size_t key_unit(const unsigned char *s, size_t n, const unsigned char **unit, size_t *unit_len)
{
	size_t l = lgr_text_utf8_seq(s, n);

	if (l == 0) {
		*unit = (const unsigned char *)REPLACEMENT;
		*unit_len = 3;
		return 1;
	}
	*unit = s;
	*unit_len = l;
	return l;
}

/*
 * Orders keys by their written form, in which every invalid byte reads as U+FFFD: keys that differ only in invalid
 * bytes are the same JSON key. Equivalent to comparing the fixed strings bytewise, without making them.
 */
static int key_cmp(const char *a, const char *b)
{
	const unsigned char *x = (const unsigned char *)a, *y = (const unsigned char *)b, *ux, *uy;
	size_t nx, ny, lx, ly, ulx, uly;
	int c;

	while (*x == *y && *x != 0 && *x < 0x80) { /* real keys are ASCII */
		x++;
		y++;
	}
	if (*x < 0x80 && *y < 0x80)
		return (int)*x - (int)*y;
	nx = strlen((const char *)x);
	ny = strlen((const char *)y);
	while (nx > 0 && ny > 0) {
		lx = key_unit(x, nx, &ux, &ulx);
		x += lx;
		nx -= lx;
		ly = key_unit(y, ny, &uy, &uly);
		y += ly;
		ny -= ly;
		/* well-formed sequences are prefix-free: two units either match whole or differ within both */
		c = memcmp(ux, uy, ulx < uly ? ulx : uly);
		if (c != 0)
			return c;
	}
	return nx > 0 ? 1 : ny > 0 ? -1 : 0;
}

/* --- the builder -------------------------------------------------------------------------------------------------- */

static const char *str_or_empty(const char *s)
{
	return s != NULL ? s : "";
}

/*
 * Adds val under key, which obj must not hold yet; a literal key is used in place. Takes val in every case: on
 * failure it is released, and obj must then only be released too. val NULL means making it failed.
 */
static int put(struct fjson_object *obj, const char *key, bool literal, struct fjson_object *val)
{
	int before;

	if (val == NULL)
		return LGR_ENOMEM;
	before = fjson_object_object_length(obj);
	fjson_object_object_add_ex(
		obj, key, val, FJSON_OBJECT_ADD_KEY_IS_NEW | (literal ? FJSON_OBJECT_KEY_IS_CONSTANT : 0));
	/* a child page could not be allocated (val was not taken), or the key copy failed (the destructor skips it) */
	if (fjson_object_object_length(obj) == before || (!literal && newest_key_missing(obj))) {
		fjson_object_put(val);
		return LGR_ENOMEM;
	}
	return LGR_OK;
}

/*
 * Eight bytes at a time, each mixed in by a multiplication whose high half is folded back (so that bytes that differ
 * only in a word's high end still change every bit), then one more multiplication; the result is the high half.
 */
static uint32_t text_hash(const char *s, size_t n)
{
	uint64_t h = (uint64_t)n * 0x9e3779b97f4a7c15u, w;

	for (; n >= 8; s += 8, n -= 8) {
		memcpy(&w, s, 8);
		h = (h ^ w) * 0xff51afd7ed558ccdu;
		h ^= h >> 32;
	}
	if (n > 0) {
		w = 0;
		memcpy(&w, s, n);
		h = (h ^ w) * 0xff51afd7ed558ccdu;
		h ^= h >> 32;
	}
	return (uint32_t)((h * 0xc4ceb9fe1a85ec53u) >> 32);
}

/*
 * Map keys as constants. Tag names come from a small set (the agent's, Diego's, the Cloud Controller's, an operator's
 * own), and a key libfastjson copies is an allocation made for every message and freed again by whichever thread
 * frees the message. Such names are kept once, for the life of the process, in a fixed table, and added to trees as
 * constants: the platform's common names from the start, any other valid UTF-8 name once it has been seen
 * KEY_ADMIT times (counted by hash in a table of small counters that is cleared every KEY_EPOCH misses, so that
 * names seen once, such as generated ones, seldom take a place). A full table leaves further names to be copied.
 * Readers take no lock: a slot is written once, under keys_mut, published with release and never changed again.
 */
#define KEYS_SLOTS   512 /* a power of two */
#define KEYS_FILL    384 /* names kept at most, so that probe sequences stay short */
#define KEY_TEXT_MAX 48	 /* longer names are copied */
#define KEY_PROBES   8
#define KEY_COUNTERS 4096 /* a power of two */
#define KEY_ADMIT    4
#define KEY_EPOCH    65536

struct key_slot {
	uint32_t hash;
	uint8_t len;
	uint8_t ready; /* atomic: text, len and hash are written */
	char text[KEY_TEXT_MAX];
};

static struct key_slot keys[KEYS_SLOTS];
static uint8_t key_counts[KEY_COUNTERS]; /* atomic */
static uint32_t key_misses;		 /* atomic */
static unsigned keys_kept;		 /* under keys_mut */
static pthread_mutex_t keys_mut = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t keys_once = PTHREAD_ONCE_INIT;

static const char *const common_keys[] = {"app_id", "app_name", "deployment", "id", "index", "instance_id", "ip", "job",
	"organization_id", "organization_name", "origin", "process_id", "process_instance_id", "process_type",
	"product", "source_id", "source_type", "space_id", "space_name", "system_domain"};

/* The kept name equal to s[0..n) (hash h); NULL when there is none. */
static const char *key_find(const char *s, size_t n, uint32_t h)
{
	const struct key_slot *k;
	unsigned i;

	for (i = 0; i < KEY_PROBES; i++) {
		k = &keys[(h + i) & (KEYS_SLOTS - 1)];
		if (!__atomic_load_n(&k->ready, __ATOMIC_ACQUIRE))
			return NULL; /* slots are taken in probe order: the name is not kept (or is being added) */
		if (k->hash == h && k->len == n && memcmp(k->text, s, n) == 0)
			return k->text;
	}
	return NULL;
}

/* Keeps s[0..n) (n < KEY_TEXT_MAX, valid UTF-8) while there is room; returns the kept name or NULL. */
static const char *key_keep(const char *s, size_t n, uint32_t h)
{
	const char *kept;
	struct key_slot *k;
	unsigned i;

	pthread_mutex_lock(&keys_mut);
	kept = key_find(s, n, h);
	for (i = 0; kept == NULL && keys_kept < KEYS_FILL && i < KEY_PROBES; i++) {
		k = &keys[(h + i) & (KEYS_SLOTS - 1)];
		if (k->ready)
			continue;
		memcpy(k->text, s, n);
		k->text[n] = '\0';
		k->len = (uint8_t)n;
		k->hash = h;
		__atomic_store_n(&k->ready, 1, __ATOMIC_RELEASE);
		keys_kept++;
		kept = k->text;
	}
	pthread_mutex_unlock(&keys_mut);
	return kept;
}

static void keys_init(void)
{
	size_t i, n;

	for (i = 0; i < sizeof(common_keys) / sizeof(common_keys[0]); i++) {
		n = strlen(common_keys[i]);
		key_keep(common_keys[i], n, text_hash(common_keys[i], n));
	}
}

/* The constant to add s[0..n) (NUL-terminated) as; NULL when it is to be copied. */
static const char *constant_key(const char *s, size_t n)
{
	uint8_t *count;
	const char *kept;
	uint32_t h;

	if (n >= KEY_TEXT_MAX)
		return NULL;
	pthread_once(&keys_once, keys_init);
	h = text_hash(s, n);
	kept = key_find(s, n, h);
	if (kept != NULL)
		return kept;
	if ((__atomic_add_fetch(&key_misses, 1, __ATOMIC_RELAXED) & (KEY_EPOCH - 1)) == 0) {
		for (size_t i = 0; i < KEY_COUNTERS; i++)
			__atomic_store_n(&key_counts[i], 0, __ATOMIC_RELAXED);
	}
	count = &key_counts[(h >> 20) & (KEY_COUNTERS - 1)];
	if (__atomic_load_n(count, __ATOMIC_RELAXED) + 1 < KEY_ADMIT) {
		__atomic_add_fetch(count, 1, __ATOMIC_RELAXED);
		return NULL;
	}
	if (!lgr_text_utf8_valid(s, n))
		return NULL;
	return key_keep(s, n, h);
}

/* As put, for a key from the envelope, s[0..n) (NUL-terminated): written with invalid UTF-8 replaced. */
static int put_key(struct fjson_object *obj, const char *key, size_t n, struct fjson_object *val)
{
	char stack[FIX_STACK], *heap;
	const char *constant = constant_key(key, n);
	int rc;

	if (constant != NULL)
		return put(obj, constant, true, val);
	rc = text_as_written(&key, &n, stack, &heap);
	if (rc == LGR_OK)
		rc = put(obj, key, false, val);
	else
		fjson_object_put(val);
	free(heap);
	return rc;
}

/* A string node for s[0..n) as it will be written. */
static int new_text(const char *s, size_t n, struct fjson_object **out)
{
	char stack[FIX_STACK], *heap;
	int rc;

	*out = NULL;
	rc = text_as_written(&s, &n, stack, &heap);
	if (rc == LGR_OK && n > INT_MAX)
		rc = LGR_ETOOBIG;
	if (rc == LGR_OK) {
		*out = fjson_object_new_string_len(s, (int)n);
		if (*out == NULL)
			rc = LGR_ENOMEM;
	}
	free(heap);
	return rc;
}

static int put_text(struct fjson_object *obj, const char *key, const char *s)
{
	struct fjson_object *v;
	int rc;

	s = str_or_empty(s);
	rc = new_text(s, strlen(s), &v);
	return rc == LGR_OK ? put(obj, key, true, v) : rc;
}

/* protojson writes 64-bit integers as strings: JavaScript numbers lose precision above 2^53. */
static int put_int(struct fjson_object *obj, const char *key, uint64_t mag, bool neg)
{
	char t[LGR_TEXT_INT_MAX], *s = lgr_text_int(mag, neg, t);

	return put(obj, key, true, fjson_object_new_string_len(s, (int)(t + LGR_TEXT_INT_MAX - 1 - s)));
}

static int put_i64(struct fjson_object *obj, const char *key, int64_t v)
{
	return put_int(obj, key, v < 0 ? 0 - (uint64_t)v : (uint64_t)v, v < 0);
}

/* A double: a number carrying its shortest text, or one of the strings protojson uses for the others. */
static struct fjson_object *new_double(double v)
{
	char t[LGR_TEXT_DOUBLE_MAX];

	if (isnan(v))
		return fjson_object_new_string_len("NaN", 3);
	if (isinf(v))
		return v > 0 ? fjson_object_new_string_len("Infinity", 8) : fjson_object_new_string_len("-Infinity", 9);
	lgr_text_double(v, t);
	return fjson_object_new_double_s(v, t);
}

/* Adds an empty object under a literal key and hands it back (owned by obj). */
static int put_obj(struct fjson_object *obj, const char *key, struct fjson_object **child)
{
	*child = fjson_object_new_object();
	return put(obj, key, true, *child);
}

/* --- maps: the protobuf wire may repeat a key (the last wins); JSON holds each key once ------------------------- */

enum map_kind { MAP_TAGS, MAP_DTAGS, MAP_METRICS };

static const char *entry_key(const void *e, enum map_kind kind)
{
	switch (kind) {
	case MAP_TAGS: return str_or_empty(((const Loggregator__V2__Envelope__TagsEntry *)e)->key);
	case MAP_DTAGS: return str_or_empty(((const Loggregator__V2__Envelope__DeprecatedTagsEntry *)e)->key);
	default: return str_or_empty(((const Loggregator__V2__Gauge__MetricsEntry *)e)->key);
	}
}

/* Up to this many entries a pairwise scan is cheaper than sorting; real envelopes carry fewer than 20 tags. */
#define MAP_SCAN_MAX 16

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

/*
 * Marks in shadowed[0..n) the entries a later entry with the same written key replaces. shadowed is stack (room for
 * MAP_SCAN_MAX) or, for larger maps, a calloc'd array returned in *heap for the caller to free.
 */
static int find_shadowed(void *const *entries, size_t n, enum map_kind kind, bool *stack, bool **shadowed, bool **heap)
{
	struct key_pos *kp;
	size_t i, j;

	*heap = NULL;
	*shadowed = stack;
	if (n <= MAP_SCAN_MAX) {
		for (i = 0; i < n; i++) {
			stack[i] = false;
			for (j = i + 1; j < n && !stack[i]; j++)
				stack[i] = key_cmp(entry_key(entries[i], kind), entry_key(entries[j], kind)) == 0;
		}
		return LGR_OK;
	}
	kp = malloc(n * sizeof(*kp));
	*shadowed = *heap = calloc(n, sizeof(**heap));
	if (kp == NULL || *heap == NULL) {
		free(kp);
		return LGR_ENOMEM;
	}
	for (i = 0; i < n; i++) {
		kp[i].key = entry_key(entries[i], kind);
		kp[i].pos = i;
	}
	qsort(kp, n, sizeof(*kp), key_pos_cmp);
	for (i = 0; i + 1 < n; i++)
		if (key_cmp(kp[i].key, kp[i + 1].key) == 0)
			(*heap)[kp[i].pos] = true;
	free(kp);
	return LGR_OK;
}

/* {"text":..} | {"integer":".."} | {"decimal":..} | {} */
static int new_value(const Loggregator__V2__Value *v, struct fjson_object **out)
{
	struct fjson_object *o = fjson_object_new_object();
	int rc = LGR_OK;

	*out = NULL;
	if (o == NULL)
		return LGR_ENOMEM;
	switch (v != NULL ? v->data_case : LOGGREGATOR__V2__VALUE__DATA__NOT_SET) {
	case LOGGREGATOR__V2__VALUE__DATA_TEXT: rc = put_text(o, "text", v->text); break;
	case LOGGREGATOR__V2__VALUE__DATA_INTEGER: rc = put_i64(o, "integer", v->integer); break;
	case LOGGREGATOR__V2__VALUE__DATA_DECIMAL: rc = put(o, "decimal", true, new_double(v->decimal)); break;
	default: break;
	}
	if (rc != LGR_OK)
		fjson_object_put(o);
	else
		*out = o;
	return rc;
}

/* {"unit":"..","value":..} */
static int new_gauge_value(const Loggregator__V2__GaugeValue *v, struct fjson_object **out)
{
	struct fjson_object *o = fjson_object_new_object();
	int rc;

	*out = NULL;
	if (o == NULL)
		return LGR_ENOMEM;
	rc = put_text(o, "unit", v != NULL ? v->unit : NULL);
	if (rc == LGR_OK)
		rc = put(o, "value", true, new_double(v != NULL ? v->value : 0));
	if (rc != LGR_OK)
		fjson_object_put(o);
	else
		*out = o;
	return rc;
}

static int new_entry_value(const void *e, enum map_kind kind, struct fjson_object **out)
{
	const char *s;

	switch (kind) {
	case MAP_TAGS:
		s = str_or_empty(((const Loggregator__V2__Envelope__TagsEntry *)e)->value);
		return new_text(s, strlen(s), out);
	case MAP_DTAGS: return new_value(((const Loggregator__V2__Envelope__DeprecatedTagsEntry *)e)->value, out);
	default: return new_gauge_value(((const Loggregator__V2__Gauge__MetricsEntry *)e)->value, out);
	}
}

/* Adds the map of entries[0..n) under a literal key, each written key once, in the order of its last entry. */
static int put_map(struct fjson_object *obj, const char *key, void *const *entries, size_t n, enum map_kind kind)
{
	bool stack[MAP_SCAN_MAX], *shadowed, *heap = NULL;
	struct fjson_object *map, *val;
	const char *k;
	size_t i;
	int rc;

	rc = put_obj(obj, key, &map);
	if (rc != LGR_OK || n == 0)
		goto out;
	rc = find_shadowed(entries, n, kind, stack, &shadowed, &heap);
	for (i = 0; rc == LGR_OK && i < n; i++) {
		if (shadowed[i])
			continue;
		rc = new_entry_value(entries[i], kind, &val);
		k = entry_key(entries[i], kind);
		if (rc == LGR_OK)
			rc = put_key(map, k, strlen(k), val);
	}
out:
	free(heap);
	return rc;
}

/* --- the message -------------------------------------------------------------------------------------------------- */

static const char b64_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Standard base64 with padding of s[0..n) to out, which has room for (n + 2) / 3 * 4 bytes. */
static void b64_encode(const uint8_t *s, size_t n, char *out)
{
	size_t i;
	uint32_t v;

	for (i = 0; i + 3 <= n; i += 3) {
		v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
		*out++ = b64_alphabet[v >> 18];
		*out++ = b64_alphabet[(v >> 12) & 63];
		*out++ = b64_alphabet[(v >> 6) & 63];
		*out++ = b64_alphabet[v & 63];
	}
	if (i < n) {
		v = (uint32_t)s[i] << 16 | (i + 1 < n ? (uint32_t)s[i + 1] << 8 : 0);
		*out++ = b64_alphabet[v >> 18];
		*out++ = b64_alphabet[(v >> 12) & 63];
		*out++ = i + 1 < n ? b64_alphabet[(v >> 6) & 63] : '=';
		*out++ = '=';
	}
}

#define B64_STACK 1024

static int put_log(struct fjson_object *o, const Loggregator__V2__Log *m, unsigned flags)
{
	char stack[B64_STACK], *heap = NULL, *p = stack;
	size_t n = m != NULL ? m->payload.len : 0, len;
	int rc = LGR_OK;

	if (!(flags & LGR_JSON_NO_PAYLOAD)) {
		if (n > (size_t)INT_MAX / 4 * 3) {
			rc = LGR_ETOOBIG;
			goto out;
		}
		len = (n + 2) / 3 * 4;
		if (len > sizeof(stack)) {
			p = heap = malloc(len);
			if (heap == NULL) {
				rc = LGR_ENOMEM;
				goto out;
			}
		}
		b64_encode(m != NULL ? m->payload.data : NULL, n, p);
		rc = put(o, "payload", true, fjson_object_new_string_len(p, (int)len));
		if (rc != LGR_OK)
			goto out;
	}
	if (m == NULL || m->type == LOGGREGATOR__V2__LOG__TYPE__OUT)
		rc = put(o, "type", true, fjson_object_new_string_len("OUT", 3));
	else if (m->type == LOGGREGATOR__V2__LOG__TYPE__ERR)
		rc = put(o, "type", true, fjson_object_new_string_len("ERR", 3));
	else /* an enum value this schema has no name for: protojson writes its number (an int32) */
		rc = put(o, "type", true, fjson_object_new_int((int32_t)m->type));
out:
	free(heap);
	return rc;
}

static int put_message(struct fjson_object *o, const Loggregator__V2__Envelope *pb, unsigned flags)
{
	const Loggregator__V2__Counter *c = pb->counter;
	const Loggregator__V2__Timer *t = pb->timer;
	const Loggregator__V2__Event *e = pb->event;
	struct fjson_object *m;
	int rc = LGR_OK;

	switch (pb->message_case) {
	case LOGGREGATOR__V2__ENVELOPE__MESSAGE_LOG:
		rc = put_obj(o, "log", &m);
		if (rc == LGR_OK)
			rc = put_log(m, pb->log, flags);
		break;
	case LOGGREGATOR__V2__ENVELOPE__MESSAGE_COUNTER:
		rc = put_obj(o, "counter", &m);
		if (rc == LGR_OK)
			rc = put_text(m, "name", c != NULL ? c->name : NULL);
		if (rc == LGR_OK)
			rc = put_int(m, "delta", c != NULL ? c->delta : 0, false);
		if (rc == LGR_OK)
			rc = put_int(m, "total", c != NULL ? c->total : 0, false);
		break;
	case LOGGREGATOR__V2__ENVELOPE__MESSAGE_GAUGE:
		rc = put_obj(o, "gauge", &m);
		if (rc == LGR_OK)
			rc = put_map(m, "metrics", pb->gauge != NULL ? (void *const *)pb->gauge->metrics : NULL,
				pb->gauge != NULL ? pb->gauge->n_metrics : 0, MAP_METRICS);
		break;
	case LOGGREGATOR__V2__ENVELOPE__MESSAGE_TIMER:
		rc = put_obj(o, "timer", &m);
		if (rc == LGR_OK)
			rc = put_text(m, "name", t != NULL ? t->name : NULL);
		if (rc == LGR_OK)
			rc = put_i64(m, "start", t != NULL ? t->start : 0);
		if (rc == LGR_OK)
			rc = put_i64(m, "stop", t != NULL ? t->stop : 0);
		break;
	case LOGGREGATOR__V2__ENVELOPE__MESSAGE_EVENT:
		rc = put_obj(o, "event", &m);
		if (rc == LGR_OK)
			rc = put_text(m, "title", e != NULL ? e->title : NULL);
		if (rc == LGR_OK)
			rc = put_text(m, "body", e != NULL ? e->body : NULL);
		break;
	default: break;
	}
	return rc;
}

static int build_envelope(const Loggregator__V2__Envelope *pb, unsigned flags, struct fjson_object **out)
{
	struct fjson_object *o = fjson_object_new_object();
	int rc;

	if (o == NULL)
		return LGR_ENOMEM;
	rc = put_i64(o, "timestamp", pb->timestamp);
	if (rc == LGR_OK)
		rc = put_text(o, "source_id", pb->source_id);
	if (rc == LGR_OK)
		rc = put_text(o, "instance_id", pb->instance_id);
	if (rc == LGR_OK)
		rc = put_map(
			o, "deprecated_tags", (void *const *)pb->deprecated_tags, pb->n_deprecated_tags, MAP_DTAGS);
	if (rc == LGR_OK)
		rc = put_map(o, "tags", (void *const *)pb->tags, pb->n_tags, MAP_TAGS);
	if (rc == LGR_OK)
		rc = put_message(o, pb, flags);
	if (rc != LGR_OK) {
		fjson_object_put(o);
		return rc;
	}
	*out = o;
	return LGR_OK;
}

int lgr_fjson_build(const struct lgr_env *env, unsigned flags, struct fjson_object **out)
{
	locale_t old;
	int rc;

	if (out != NULL)
		*out = NULL;
	if (env == NULL || env->pb == NULL || out == NULL)
		return LGR_EINVAL;
	old = lgr_text_c_locale_enter();
	rc = build_envelope(env->pb, flags, out);
	lgr_text_c_locale_leave(old);
	return rc;
}

/* --- shared string nodes (struct lgr_fjson_strings) ---------------------------------------------------------- */

/*
 * A direct-mapped table of string nodes by their text. Each slot holds one reference to its node; a tree that takes
 * the node adds its own. A slot's score counts hits less the misses of other texts that land on it (capped), and a
 * newcomer takes the slot only once the score is 0: a value on nearly every envelope keeps its slot against values
 * seen once (a sequence number, a request id), which then cost a lookup and nothing else.
 */
#define STRINGS_SLOTS	  1024 /* a power of two; 24 KiB */
#define STRINGS_TEXT_MAX  128  /* longer texts are rarely repeated: not looked up */
#define STRINGS_SCORE_MAX 16

struct strings_slot {
	struct fjson_object *node; /* NULL: free */
	const char *text;	   /* the node's: valid UTF-8, as the envelope had it */
	uint32_t len;
	uint32_t score;
};

struct lgr_fjson_strings {
	struct strings_slot slot[STRINGS_SLOTS];
	uint64_t hits, misses;
};

int lgr_fjson_strings_new(struct lgr_fjson_strings **out)
{
	if (out == NULL)
		return LGR_EINVAL;
	*out = calloc(1, sizeof(**out));
	return *out != NULL ? LGR_OK : LGR_ENOMEM;
}

void lgr_fjson_strings_free(struct lgr_fjson_strings *c)
{
	size_t i;

	if (c == NULL)
		return;
	for (i = 0; i < STRINGS_SLOTS; i++)
		fjson_object_put(c->slot[i].node);
	free(c);
}

void lgr_fjson_strings_stats(const struct lgr_fjson_strings *c, uint64_t *hits, uint64_t *misses)
{
	*hits = c != NULL ? c->hits : 0;
	*misses = c != NULL ? c->misses : 0;
}

/*
 * As new_text, for s[0..n) without NUL, through the cache c (NULL: none). A text found in c is valid UTF-8 as it
 * stands (it equals one that was checked), so a hit also skips the check.
 */
static int new_text_shared(struct lgr_fjson_strings *c, const char *s, size_t n, struct fjson_object **out)
{
	struct strings_slot *e;

	if (c == NULL || n > STRINGS_TEXT_MAX)
		return new_text(s, n, out);
	e = &c->slot[text_hash(s, n) & (STRINGS_SLOTS - 1)];
	if (e->node != NULL && e->len == n && memcmp(e->text, s, n) == 0) {
		c->hits++;
		if (e->score < STRINGS_SCORE_MAX)
			e->score++;
		*out = fjson_object_get(e->node);
		return LGR_OK;
	}
	c->misses++;
	if (!lgr_text_utf8_valid(s, n))
		return new_text(s, n, out); /* written fixed: not the text it would be found by */
	*out = fjson_object_new_string_len(s, (int)n);
	if (*out == NULL)
		return LGR_ENOMEM;
	if (e->node != NULL && e->score > 0) {
		e->score--;
		return LGR_OK;
	}
	fjson_object_put(e->node);
	e->node = fjson_object_get(*out);
	e->text = fjson_object_get_string(e->node);
	e->len = (uint32_t)n;
	e->score = 1;
	return LGR_OK;
}

/* --- the builder, straight from the wire: a Log envelope as every sender encodes it ---------------------------- */

/* A string field as protobuf-c hands it over: its bytes up to the first NUL. */
static size_t wire_text_len(const uint8_t *data, size_t len)
{
	const uint8_t *nul = memchr(data, 0, len);

	return nul != NULL ? (size_t)(nul - data) : len;
}

/* Copies a string field into dst (room for max bytes), NUL-terminated as protobuf-c would give it. False when it
 * does not fit. */
static bool wire_text_copy(const struct lgr_pb_field *f, char *dst, size_t max)
{
	size_t n = wire_text_len(f->data, f->len);

	if (n >= max)
		return false;
	memcpy(dst, f->data, n);
	dst[n] = '\0';
	return true;
}

struct wire_tag {
	const uint8_t *key, *val; /* in the envelope's bytes; NULL: absent (the empty string) */
	size_t key_len, val_len;  /* up to the first NUL */
};

struct wire_env {
	struct lgr_fjson_wire_log *out;
	struct lgr_fjson_strings *strings;
	const struct lgr_fjson_wire_rules *rules; /* NULL: none */
	struct wire_tag tags[MAP_SCAN_MAX];
	size_t ntags;
	bool log;
};

/* The envelope's tag of that key (up to its first NUL), or NULL. */
static const struct wire_tag *wire_find_tag(const struct wire_env *w, const uint8_t *key, size_t n)
{
	for (size_t i = 0; i < w->ntags; i++)
		if (w->tags[i].key_len == n && (n == 0 || memcmp(w->tags[i].key, key, n) == 0))
			return &w->tags[i];
	return NULL;
}

/* One tags entry: key = 1, value = 2, each once, valid UTF-8 keys. */
static int wire_tag(const uint8_t *buf, size_t len, struct wire_tag *t)
{
	struct lgr_pb_field f;
	size_t pos = 0;

	memset(t, 0, sizeof(*t));
	while (pos < len) {
		if (lgr_pb_field_next(buf, len, &pos, &f) != LGR_OK)
			return LGR_EUNSUPPORTED;
		if ((f.number == 1 || f.number == 2) && f.wire != LGR_PB_LEN)
			return LGR_EUNSUPPORTED;
		if (f.number == 1) {
			if (t->key != NULL)
				return LGR_EUNSUPPORTED;
			t->key = f.data;
			t->key_len = wire_text_len(f.data, f.len);
		} else if (f.number == 2) {
			if (t->val != NULL)
				return LGR_EUNSUPPORTED;
			t->val = f.data;
			t->val_len = wire_text_len(f.data, f.len);
		}
	}
	/* wire_put_tags copies a key to the stack; keys that differ only in invalid bytes are one JSON key */
	if (t->key_len >= FIX_STACK || (t->key != NULL && !lgr_text_utf8_valid((const char *)t->key, t->key_len)))
		return LGR_EUNSUPPORTED;
	return LGR_OK;
}

/* The Log message: payload = 1, type = 2 (OUT or ERR), each once. */
static int wire_log(const uint8_t *buf, size_t len, struct lgr_fjson_wire_log *out)
{
	struct lgr_pb_field f;
	bool payload = false, type = false;
	size_t pos = 0;

	while (pos < len) {
		if (lgr_pb_field_next(buf, len, &pos, &f) != LGR_OK)
			return LGR_EUNSUPPORTED;
		if (f.number == 1) {
			if (payload || f.wire != LGR_PB_LEN)
				return LGR_EUNSUPPORTED;
			payload = true;
			out->payload = f.data;
			out->payload_len = f.len;
		} else if (f.number == 2) {
			if (type || f.wire != LGR_PB_VARINT || f.varint > LOGGREGATOR__V2__LOG__TYPE__ERR)
				return LGR_EUNSUPPORTED;
			type = true;
			out->err = f.varint == LOGGREGATOR__V2__LOG__TYPE__ERR;
		}
	}
	return LGR_OK;
}

/* The envelope's fields: timestamp, source_id, instance_id, tags and log, each singular one once. */
static int wire_fields(const uint8_t *buf, size_t len, struct wire_env *w)
{
	struct lgr_fjson_wire_log *out = w->out;
	bool ts = false, sid = false, iid = false;
	struct lgr_pb_field f;
	size_t pos = 0;
	int rc;

	while (pos < len) {
		if (lgr_pb_field_next(buf, len, &pos, &f) != LGR_OK)
			return LGR_EUNSUPPORTED;
		switch (f.number) {
		case 1: /* timestamp */
			if (ts || f.wire != LGR_PB_VARINT)
				return LGR_EUNSUPPORTED;
			ts = true;
			out->timestamp = (int64_t)f.varint;
			break;
		case 2: /* source_id */
			if (sid || f.wire != LGR_PB_LEN || !wire_text_copy(&f, out->source_id, sizeof(out->source_id)))
				return LGR_EUNSUPPORTED;
			sid = true;
			break;
		case 4: /* log */
			if (w->log || f.wire != LGR_PB_LEN)
				return LGR_EUNSUPPORTED;
			w->log = true;
			rc = wire_log(f.data, f.len, out);
			if (rc != LGR_OK)
				return rc;
			break;
		case 8: /* instance_id */
			if (iid || f.wire != LGR_PB_LEN ||
				!wire_text_copy(&f, out->instance_id, sizeof(out->instance_id)))
				return LGR_EUNSUPPORTED;
			iid = true;
			break;
		case 9: /* tags: a key given twice is left to the full path, which keeps its last value in its place */
			if (f.wire != LGR_PB_LEN || w->ntags == MAP_SCAN_MAX)
				return LGR_EUNSUPPORTED;
			rc = wire_tag(f.data, f.len, &w->tags[w->ntags]);
			if (rc != LGR_OK)
				return rc;
			if (wire_find_tag(w, w->tags[w->ntags].key, w->tags[w->ntags].key_len) != NULL)
				return LGR_EUNSUPPORTED;
			w->ntags++;
			break;
		case 3: /* deprecated_tags */
		case 5: /* counter */
		case 6: /* gauge */
		case 7: /* timer */
		case 10: /* event */ return LGR_EUNSUPPORTED;
		default: break; /* unknown: protobuf-c keeps it aside, the JSON form has no place for it */
		}
	}
	return w->log ? LGR_OK : LGR_EUNSUPPORTED;
}

/* A string node for a wire string (absent: empty). */
static int wire_new_text(struct lgr_fjson_strings *c, const uint8_t *s, size_t n, struct fjson_object **out)
{
	return new_text_shared(c, s != NULL ? (const char *)s : "", s != NULL ? n : 0, out);
}

static int wire_put_tags(struct fjson_object *o, const struct wire_env *w)
{
	char key[FIX_STACK];
	struct fjson_object *map, *val;
	size_t i;
	int rc;

	rc = put_obj(o, "tags", &map);
	for (i = 0; rc == LGR_OK && i < w->ntags; i++) {
		const struct wire_tag *t = &w->tags[i];

		if (t->key_len > 0)
			memcpy(key, t->key, t->key_len);
		key[t->key_len] = '\0';
		rc = wire_new_text(w->strings, t->val, t->val_len, &val);
		if (rc == LGR_OK)
			rc = put_key(map, key, t->key_len, val);
	}
	for (i = 0; rc == LGR_OK && w->rules != NULL && i < w->rules->ndefaults; i++) {
		const char *k = w->rules->default_keys[i], *v = w->rules->default_values[i];
		size_t n = strlen(k);

		if (wire_find_tag(w, (const uint8_t *)k, n) != NULL)
			continue; /* the envelope's own tag wins */
		rc = new_text_shared(w->strings, v, strlen(v), &val);
		if (rc == LGR_OK)
			rc = put_key(map, k, n, val);
	}
	return rc;
}

static int wire_build(const struct wire_env *w, struct fjson_object **out)
{
	const struct lgr_fjson_wire_log *p = w->out;
	struct fjson_object *o = fjson_object_new_object(), *m, *v;
	int rc;

	if (o == NULL)
		return LGR_ENOMEM;
	rc = put_i64(o, "timestamp", p->timestamp);
	if (rc == LGR_OK)
		rc = new_text_shared(w->strings, p->source_id, strlen(p->source_id), &v);
	if (rc == LGR_OK)
		rc = put(o, "source_id", true, v);
	if (rc == LGR_OK)
		rc = new_text_shared(w->strings, p->instance_id, strlen(p->instance_id), &v);
	if (rc == LGR_OK)
		rc = put(o, "instance_id", true, v);
	if (rc == LGR_OK)
		rc = put_obj(o, "deprecated_tags", &m);
	if (rc == LGR_OK)
		rc = wire_put_tags(o, w);
	if (rc == LGR_OK)
		rc = put_obj(o, "log", &m);
	if (rc == LGR_OK)
		rc = new_text_shared(w->strings, p->err ? "ERR" : "OUT", 3, &v);
	if (rc == LGR_OK)
		rc = put(m, "type", true, v);
	if (rc != LGR_OK) {
		fjson_object_put(o);
		return rc;
	}
	*out = o;
	return LGR_OK;
}

/* Rule 1: an empty source_id from the origin tag (there are no deprecated tags on this path). */
static int wire_origin(struct wire_env *w)
{
	static const char origin[] = "origin";
	const struct wire_tag *t;

	if (w->out->source_id[0] != '\0')
		return LGR_OK;
	t = wire_find_tag(w, (const uint8_t *)origin, sizeof(origin) - 1);
	if (t == NULL || t->val == NULL || t->val_len == 0)
		return LGR_OK;
	if (t->val_len >= sizeof(w->out->source_id))
		return LGR_EUNSUPPORTED;
	memcpy(w->out->source_id, t->val, t->val_len);
	w->out->source_id[t->val_len] = '\0';
	return LGR_OK;
}

/* Default keys the builder can put as the full path would: valid UTF-8 (no fixing that could merge two keys), and
 * short enough for the stack copy. */
static bool wire_rules_usable(const struct lgr_fjson_wire_rules *r)
{
	for (size_t i = 0; i < r->ndefaults; i++) {
		size_t n;

		if (r->default_keys[i] == NULL || r->default_values[i] == NULL)
			return false;
		n = strlen(r->default_keys[i]);
		if (n >= FIX_STACK || !lgr_text_utf8_valid(r->default_keys[i], n))
			return false;
	}
	return true;
}

int lgr_fjson_wire_rules_check(struct lgr_fjson_wire_rules *r)
{
	if (r == NULL || (r->ndefaults > 0 && (r->default_keys == NULL || r->default_values == NULL)))
		return LGR_EINVAL;
	r->checked = wire_rules_usable(r);
	return r->checked ? LGR_OK : LGR_EUNSUPPORTED;
}

int lgr_fjson_build_log_wire_rules(const uint8_t *buf, size_t len, struct lgr_fjson_strings *strings,
	const struct lgr_fjson_wire_rules *rules, struct lgr_fjson_wire_log *out)
{
	struct wire_env w = {.out = out, .strings = strings, .rules = rules};
	int rc;

	if (out == NULL)
		return LGR_EINVAL;
	memset(out, 0, sizeof(*out));
	if ((buf == NULL && len > 0) || (rules != NULL && rules->ndefaults > 0 &&
						(rules->default_keys == NULL || rules->default_values == NULL)))
		return LGR_EINVAL;
	if (rules != NULL && !rules->checked && !wire_rules_usable(rules))
		return LGR_EUNSUPPORTED;
	rc = wire_fields(buf, len, &w);
	if (rc == LGR_OK && rules != NULL)
		rc = wire_origin(&w);
	if (rc == LGR_OK)
		rc = wire_build(&w, &out->tree);
	return rc;
}

int lgr_fjson_build_log_wire(
	const uint8_t *buf, size_t len, struct lgr_fjson_strings *strings, struct lgr_fjson_wire_log *out)
{
	return lgr_fjson_build_log_wire_rules(buf, len, strings, NULL, out);
}

/* --- the reader: values ------------------------------------------------------------------------------------------- */

struct pctx {
	struct lgr_limits lim; /* resolved */
	unsigned flags;
	size_t budget;	   /* bytes of strings (and the joined payload) still allowed: lim.max_message in all */
	size_t ntags;	   /* tags and deprecated tags so far */
	bool join_payload; /* the payload comes from the caller: the tree's log must not carry one */
	struct lgr_env_scratch *scratch; /* where the envelope's parts go; NULL: malloc, freed with the envelope */
};

/* Memory for a part of the envelope being read: from the scratch when there is one. */
static void *c_alloc(struct pctx *c, size_t n)
{
	return c->scratch != NULL ? lgr_env_scratch_alloc(c->scratch, n) : malloc(n);
}

/* Releases a part c_alloc gave that never became part of the envelope (a scratch keeps it until it starts over). */
static void c_free(struct pctx *c, void *p)
{
	if (c->scratch == NULL)
		free(p);
}

static int copy_text(struct pctx *c, const char *s, size_t n, char **out)
{
	char *p;

	if (n > c->budget)
		return LGR_ETOOBIG;
	if (memchr(s, '\0', n) != NULL)
		return LGR_EUNSUPPORTED; /* envelope strings are NUL-terminated */
	if (!lgr_text_utf8_valid(s, n))
		return LGR_EDECODE;
	if (n == 0) {
		*out = (char *)protobuf_c_empty_string; /* the descriptors' default: free_unpacked leaves it alone */
		return LGR_OK;
	}
	p = c_alloc(c, n + 1);
	if (p == NULL)
		return LGR_ENOMEM;
	memcpy(p, s, n);
	p[n] = '\0';
	*out = p;
	c->budget -= n;
	return LGR_OK;
}

static int get_string(struct pctx *c, struct fjson_object *v, char **out)
{
	if (!fjson_object_is_type(v, fjson_type_string))
		return LGR_EDECODE;
	return copy_text(c, fjson_object_get_string(v), (size_t)fjson_object_get_string_len(v), out);
}

/* A string node equals lit, NULs included (a tree may hold "NaN\0x"). */
static bool string_is(struct fjson_object *v, const char *lit)
{
	size_t n = strlen(lit);

	return (size_t)fjson_object_get_string_len(v) == n && memcmp(fjson_object_get_string(v), lit, n) == 0;
}

/* A JSON number, -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?, as its digits (integer and fraction part) and the
 * power of ten of the last digit. */
struct number {
	bool neg;
	const char *ipart, *fpart;
	size_t ilen, flen;
	int64_t exp; /* the exponent as written, saturated far beyond any that could matter */
};

static bool is_digit(char ch)
{
	return ch >= '0' && ch <= '9';
}

static bool number_syntax(const char *s, size_t n, struct number *num)
{
	const char *end = s + n;
	bool eneg = false;

	memset(num, 0, sizeof(*num));
	if (s < end && *s == '-') {
		num->neg = true;
		s++;
	}
	num->ipart = s;
	if (s < end && *s == '0')
		s++;
	else if (s < end && *s >= '1' && *s <= '9')
		while (s < end && is_digit(*s))
			s++;
	else
		return false;
	num->ilen = (size_t)(s - num->ipart);
	if (s < end && *s == '.') {
		num->fpart = ++s;
		while (s < end && is_digit(*s))
			s++;
		num->flen = (size_t)(s - num->fpart);
		if (num->flen == 0)
			return false;
	}
	if (s < end && (*s == 'e' || *s == 'E')) {
		s++;
		if (s < end && (*s == '+' || *s == '-'))
			eneg = *s++ == '-';
		if (s == end || !is_digit(*s))
			return false;
		for (; s < end && is_digit(*s); s++)
			if (num->exp < 1000000000000LL)
				num->exp = num->exp * 10 + (*s - '0');
		if (eneg)
			num->exp = -num->exp;
	}
	return s == end;
}

static int nth_digit(const struct number *num, size_t i)
{
	return (i < num->ilen ? num->ipart[i] : num->fpart[i - num->ilen]) - '0';
}

/*
 * The integer a JSON number's text denotes exactly, as protojson reads integer fields: "1e3" and "2.0" are
 * integers, "1.5" is not. Returns LGR_OK with sign and magnitude, or LGR_EDECODE (not an integer, beyond 64 bits).
 */
static int parse_integer(const char *s, size_t n, bool *neg, uint64_t *mag)
{
	struct number num;
	size_t first, last, total, i;
	int64_t pow10; /* the power of ten of digit `last` */
	uint64_t m = 0;

	*neg = false;
	*mag = 0;
	if (!number_syntax(s, n, &num))
		return LGR_EDECODE;
	total = num.ilen + num.flen;
	for (first = 0; first < total && nth_digit(&num, first) == 0; first++)
		;
	if (first == total)
		return LGR_OK; /* zero, -0 and 0e99 included */
	for (last = total - 1; nth_digit(&num, last) == 0; last--)
		;
	pow10 = (int64_t)num.ilen - 1 - (int64_t)last + num.exp;
	if (pow10 < 0 || pow10 + (int64_t)(last - first) > 19) /* a fraction, or more than 20 digits */
		return LGR_EDECODE;
	for (i = first; i <= last; i++)
		if (__builtin_mul_overflow(m, 10, &m) || __builtin_add_overflow(m, (uint64_t)nth_digit(&num, i), &m))
			return LGR_EDECODE;
	for (; pow10 > 0; pow10--)
		if (__builtin_mul_overflow(m, 10, &m))
			return LGR_EDECODE;
	*neg = num.neg;
	*mag = m;
	return LGR_OK;
}

/* An integer field: an int node, a double node (its text when it has one, else its value), or a string. */
static int get_integer(struct fjson_object *v, bool *neg, uint64_t *mag)
{
	const char *s;
	int64_t i;
	double d;

	switch (fjson_object_get_type(v)) {
	case fjson_type_int:
		i = fjson_object_get_int64(v);
		*neg = i < 0;
		*mag = i < 0 ? 0 - (uint64_t)i : (uint64_t)i;
		return LGR_OK;
	case fjson_type_double:
		s = double_source(v);
		if (s != NULL)
			return parse_integer(s, strlen(s), neg, mag);
		d = fabs(fjson_object_get_double(v));
		if (!(d < 18446744073709551616.0) || (double)(uint64_t)d != d) /* NaN, beyond 64 bits, a fraction */
			return LGR_EDECODE;
		*neg = fjson_object_get_double(v) < 0;
		*mag = (uint64_t)d;
		return LGR_OK;
	case fjson_type_string:
		return parse_integer(fjson_object_get_string(v), (size_t)fjson_object_get_string_len(v), neg, mag);
	default: return LGR_EDECODE;
	}
}

static int get_int64(struct fjson_object *v, int64_t *out)
{
	uint64_t mag;
	bool neg;
	int rc = get_integer(v, &neg, &mag);

	if (rc == LGR_OK && mag > (uint64_t)INT64_MAX + (neg ? 1 : 0))
		rc = LGR_EDECODE;
	if (rc == LGR_OK)
		*out = neg ? (int64_t)(0 - mag) : (int64_t)mag;
	return rc;
}

static int get_uint64(struct fjson_object *v, uint64_t *out)
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

/*
 * A double field: a number (a double node's text, when it has one, must be JSON: libfastjson's own tokener also
 * reads "1." and bare NaN), or a string holding a number, "NaN", "Infinity" or "-Infinity".
 */
static int get_double(struct fjson_object *v, double *out)
{
	struct number num;
	const char *s;
	double d;

	switch (fjson_object_get_type(v)) {
	case fjson_type_int: d = (double)fjson_object_get_int64(v); break;
	case fjson_type_double:
		s = double_source(v);
		d = fjson_object_get_double(v);
		if ((s != NULL && !number_syntax(s, strlen(s), &num)) || !isfinite(d))
			return LGR_EDECODE;
		break;
	case fjson_type_string:
		s = fjson_object_get_string(v);
		if (string_is(v, "NaN")) {
			d = NAN;
		} else if (string_is(v, "Infinity")) {
			d = INFINITY;
		} else if (string_is(v, "-Infinity")) {
			d = -INFINITY;
		} else {
			if (!number_syntax(s, (size_t)fjson_object_get_string_len(v), &num))
				return LGR_EDECODE;
			d = strtod(s, NULL);
			if (!isfinite(d)) /* beyond the double range: protojson refuses it too */
				return LGR_EDECODE;
		}
		break;
	default: return LGR_EDECODE;
	}
	*out = d;
	return LGR_OK;
}

static int get_log_type(struct fjson_object *v, Loggregator__V2__Log__Type *out)
{
	int64_t i = 0;
	int rc = LGR_OK;

	switch (fjson_object_get_type(v)) {
	case fjson_type_string:
		if (string_is(v, "OUT"))
			i = LOGGREGATOR__V2__LOG__TYPE__OUT;
		else if (string_is(v, "ERR"))
			i = LOGGREGATOR__V2__LOG__TYPE__ERR;
		else
			rc = LGR_EDECODE;
		break;
	case fjson_type_int:
	case fjson_type_double: /* a number, also one without a name here: proto3 enums are open */
		rc = get_int64(v, &i);
		if (rc == LGR_OK && (i < INT32_MIN || i > INT32_MAX))
			rc = LGR_EDECODE;
		break;
	default: rc = LGR_EDECODE; break;
	}
	if (rc == LGR_OK)
		*out = (Loggregator__V2__Log__Type)i;
	return rc;
}

static int b64_digit(unsigned char ch, bool url)
{
	if (ch >= 'A' && ch <= 'Z')
		return ch - 'A';
	if (ch >= 'a' && ch <= 'z')
		return ch - 'a' + 26;
	if (ch >= '0' && ch <= '9')
		return ch - '0' + 52;
	if (ch == (url ? '-' : '+'))
		return 62;
	if (ch == (url ? '_' : '/'))
		return 63;
	return -1;
}

/*
 * Bytes as protojson reads them: the URL-safe alphabet when '-' or '_' appears, else the standard one; padded when
 * the length is a multiple of 4, unpadded otherwise; leftover bits need not be zero (Go's decoder is not strict).
 * The decoded size is checked against the budget before the buffer is allocated.
 */
static int get_bytes(struct pctx *c, struct fjson_object *v, ProtobufCBinaryData *out)
{
	const unsigned char *s;
	size_t n, body, len, i, o = 0;
	uint32_t acc = 0;
	unsigned bits = 0;
	uint8_t *p;
	bool url;
	int d;

	if (!fjson_object_is_type(v, fjson_type_string))
		return LGR_EDECODE;
	s = (const unsigned char *)fjson_object_get_string(v);
	n = (size_t)fjson_object_get_string_len(v);
	url = memchr(s, '-', n) != NULL || memchr(s, '_', n) != NULL;
	body = n;
	if (n % 4 == 0)
		while (body > 0 && n - body < 2 && s[body - 1] == '=')
			body--;
	if (body % 4 == 1)
		return LGR_EDECODE;
	len = body / 4 * 3 + (body % 4 == 0 ? 0 : body % 4 - 1);
	if (len > c->budget)
		return LGR_ETOOBIG;
	if (len == 0)
		return LGR_OK;
	p = c_alloc(c, len);
	if (p == NULL)
		return LGR_ENOMEM;
	for (i = 0; i < body; i++) {
		d = b64_digit(s[i], url);
		if (d < 0) {
			c_free(c, p);
			return LGR_EDECODE;
		}
		acc = acc << 6 | (uint32_t)d;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			p[o++] = (uint8_t)(acc >> bits);
		}
	}
	c->budget -= len;
	out->data = p;
	out->len = len;
	return LGR_OK;
}

/* --- the reader: objects -> messages ------------------------------------------------------------------------------ */

struct field {
	const char *name;      /* the proto name, which the gateway writes */
	const char *json_name; /* lowerCamelCase, which protojson also reads; NULL when the same */
};

typedef int field_fn(struct pctx *c, unsigned idx, struct fjson_object *val, void *msg);

static bool key_is(const char *key, const char *name)
{
	return name != NULL && key[0] == name[0] && strcmp(key, name) == 0;
}

/*
 * Walks the members of obj, which must be an object, and hands each known non-null one to fn with its index in
 * fields. As protojson: an unknown key fails (unless LGR_JSON_DISCARD_UNKNOWN), a field named twice (under both
 * spellings) fails, null leaves the default. Unknown members are not looked into.
 */
static int walk(
	struct pctx *c, struct fjson_object *obj, const struct field *fields, unsigned nfields, field_fn *fn, void *msg)
{
	struct fjson_object_iterator it, end;
	struct fjson_object *val;
	unsigned seen = 0, i;
	const char *key;
	int rc = LGR_OK;

	if (!fjson_object_is_type(obj, fjson_type_object))
		return LGR_EDECODE;
	it = fjson_object_iter_begin(obj);
	end = fjson_object_iter_end(obj);
	for (; rc == LGR_OK && !fjson_object_iter_equal(&it, &end); fjson_object_iter_next(&it)) {
		key = fjson_object_iter_peek_name(&it);
		val = fjson_object_iter_peek_value(&it);
		for (i = 0; i < nfields; i++)
			if (key_is(key, fields[i].name) || key_is(key, fields[i].json_name))
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
	return rc;
}

static const struct field value_fields[] = {{"text", NULL}, {"integer", NULL}, {"decimal", NULL}};

static int value_field(struct pctx *c, unsigned idx, struct fjson_object *val, void *msg)
{
	Loggregator__V2__Value *m = msg;
	int rc;

	if (m->data_case != LOGGREGATOR__V2__VALUE__DATA__NOT_SET)
		return LGR_EDECODE; /* two members of the oneof */
	switch (idx) {
	case 0:
		rc = get_string(c, val, &m->text);
		/* an empty text sets the member too, but protobuf-c does not encode a oneof string left at the
		 * descriptor's default pointer: it needs a string of its own */
		if (rc == LGR_OK && m->text == protobuf_c_empty_string) {
			m->text = c_alloc(c, 1);
			if (m->text != NULL)
				m->text[0] = '\0';
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

static int log_field(struct pctx *c, unsigned idx, struct fjson_object *val, void *msg)
{
	Loggregator__V2__Log *m = msg;

	if (idx == 1)
		return get_log_type(val, &m->type);
	if (c->join_payload)
		return LGR_EDECODE; /* the payload is the caller's: the tree must not carry another */
	return get_bytes(c, val, &m->payload);
}

static const struct field counter_fields[] = {{"name", NULL}, {"delta", NULL}, {"total", NULL}};

static int counter_field(struct pctx *c, unsigned idx, struct fjson_object *val, void *msg)
{
	Loggregator__V2__Counter *m = msg;

	switch (idx) {
	case 0: return get_string(c, val, &m->name);
	case 1: return get_uint64(val, &m->delta);
	default: return get_uint64(val, &m->total);
	}
}

static const struct field gauge_value_fields[] = {{"unit", NULL}, {"value", NULL}};

static int gauge_value_field(struct pctx *c, unsigned idx, struct fjson_object *val, void *msg)
{
	Loggregator__V2__GaugeValue *m = msg;
	int rc;

	if (idx == 0)
		return get_string(c, val, &m->unit);
	rc = get_double(val, &m->value);
	/* -0 becomes +0, as lgr_env's decoder and setter make it: only +0 survives protobuf-c's encoding */
	if (rc == LGR_OK && m->value == 0)
		m->value = 0.0;
	return rc;
}

static int get_metrics(struct pctx *c, struct fjson_object *val, Loggregator__V2__Gauge *m)
{
	struct fjson_object_iterator it, end;
	Loggregator__V2__Gauge__MetricsEntry *e;
	const char *key;
	size_t n;
	int rc = LGR_OK;

	if (!fjson_object_is_type(val, fjson_type_object))
		return LGR_EDECODE;
	n = (size_t)fjson_object_object_length(val);
	if (n > c->lim.max_metrics)
		return LGR_ELIMIT;
	if (n == 0)
		return LGR_OK;
	m->metrics = c_alloc(c, n * sizeof(*m->metrics));
	if (m->metrics == NULL)
		return LGR_ENOMEM;
	it = fjson_object_iter_begin(val);
	end = fjson_object_iter_end(val);
	for (; rc == LGR_OK && !fjson_object_iter_equal(&it, &end); fjson_object_iter_next(&it)) {
		e = c_alloc(c, sizeof(*e));
		if (e == NULL)
			return LGR_ENOMEM;
		loggregator__v2__gauge__metrics_entry__init(e);
		m->metrics[m->n_metrics++] = e; /* from here on freed with the envelope */
		key = fjson_object_iter_peek_name(&it);
		rc = copy_text(c, key, strlen(key), &e->key);
		if (rc != LGR_OK)
			return rc;
		e->value = c_alloc(c, sizeof(*e->value));
		if (e->value == NULL)
			return LGR_ENOMEM;
		loggregator__v2__gauge_value__init(e->value);
		/* null is no GaugeValue: protojson refuses it in a map (walk refuses what is not an object) */
		rc = walk(c, fjson_object_iter_peek_value(&it), gauge_value_fields, 2, gauge_value_field, e->value);
	}
	return rc;
}

static const struct field gauge_fields[] = {{"metrics", NULL}};

static int gauge_field(struct pctx *c, unsigned idx, struct fjson_object *val, void *msg)
{
	return get_metrics(c, val, msg);
}

static const struct field timer_fields[] = {{"name", NULL}, {"start", NULL}, {"stop", NULL}};

static int timer_field(struct pctx *c, unsigned idx, struct fjson_object *val, void *msg)
{
	Loggregator__V2__Timer *m = msg;

	switch (idx) {
	case 0: return get_string(c, val, &m->name);
	case 1: return get_int64(val, &m->start);
	default: return get_int64(val, &m->stop);
	}
}

static const struct field event_fields[] = {{"title", NULL}, {"body", NULL}};

static int event_field(struct pctx *c, unsigned idx, struct fjson_object *val, void *msg)
{
	Loggregator__V2__Event *m = msg;

	return get_string(c, val, idx == 0 ? &m->title : &m->body);
}

static int get_tag(struct pctx *c, const char *key, struct fjson_object *val, Loggregator__V2__Envelope *pb)
{
	Loggregator__V2__Envelope__TagsEntry *t = c_alloc(c, sizeof(*t));
	int rc;

	if (t == NULL)
		return LGR_ENOMEM;
	loggregator__v2__envelope__tags_entry__init(t);
	pb->tags[pb->n_tags++] = t; /* from here on freed with the envelope */
	rc = copy_text(c, key, strlen(key), &t->key);
	if (rc == LGR_OK) /* a null value is refused: it is not a string */
		rc = get_string(c, val, &t->value);
	return rc;
}

static int get_dtag(struct pctx *c, const char *key, struct fjson_object *val, Loggregator__V2__Envelope *pb)
{
	Loggregator__V2__Envelope__DeprecatedTagsEntry *d = c_alloc(c, sizeof(*d));
	int rc;

	if (d == NULL)
		return LGR_ENOMEM;
	loggregator__v2__envelope__deprecated_tags_entry__init(d);
	pb->deprecated_tags[pb->n_deprecated_tags++] = d;
	rc = copy_text(c, key, strlen(key), &d->key);
	if (rc != LGR_OK)
		return rc;
	d->value = c_alloc(c, sizeof(*d->value));
	if (d->value == NULL)
		return LGR_ENOMEM;
	loggregator__v2__value__init(d->value);
	return walk(c, val, value_fields, 3, value_field, d->value);
}

/* Either tag map; the two together are checked against max_tags before either array is allocated. */
static int get_tags(struct pctx *c, struct fjson_object *val, Loggregator__V2__Envelope *pb, bool deprecated)
{
	struct fjson_object_iterator it, end;
	size_t n;
	void *arr;
	int rc = LGR_OK;

	if (!fjson_object_is_type(val, fjson_type_object))
		return LGR_EDECODE;
	n = (size_t)fjson_object_object_length(val);
	if (n > c->lim.max_tags - c->ntags)
		return LGR_ELIMIT;
	if (n == 0)
		return LGR_OK;
	c->ntags += n;
	arr = c_alloc(c, n * sizeof(void *));
	if (arr == NULL)
		return LGR_ENOMEM;
	if (deprecated)
		pb->deprecated_tags = arr;
	else
		pb->tags = arr;
	it = fjson_object_iter_begin(val);
	end = fjson_object_iter_end(val);
	for (; rc == LGR_OK && !fjson_object_iter_equal(&it, &end); fjson_object_iter_next(&it)) {
		if (deprecated)
			rc = get_dtag(c, fjson_object_iter_peek_name(&it), fjson_object_iter_peek_value(&it), pb);
		else
			rc = get_tag(c, fjson_object_iter_peek_name(&it), fjson_object_iter_peek_value(&it), pb);
	}
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
	F_EVENT,
	F_COUNT
};

static const struct field env_fields[F_COUNT] = {
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

struct member {
	const ProtobufCMessageDescriptor *desc;
	Loggregator__V2__Envelope__MessageCase which;
	const struct field *fields;
	unsigned nfields;
	field_fn *fn;
};

/* The oneof member idx (F_LOG..F_EVENT). */
static int get_message(struct pctx *c, unsigned idx, struct fjson_object *val, Loggregator__V2__Envelope *pb)
{
	static const struct member members[] = {
		{&loggregator__v2__log__descriptor, LOGGREGATOR__V2__ENVELOPE__MESSAGE_LOG, log_fields, 2, log_field},
		{&loggregator__v2__counter__descriptor, LOGGREGATOR__V2__ENVELOPE__MESSAGE_COUNTER, counter_fields, 3,
			counter_field},
		{&loggregator__v2__gauge__descriptor, LOGGREGATOR__V2__ENVELOPE__MESSAGE_GAUGE, gauge_fields, 1,
			gauge_field},
		{&loggregator__v2__timer__descriptor, LOGGREGATOR__V2__ENVELOPE__MESSAGE_TIMER, timer_fields, 3,
			timer_field},
		{&loggregator__v2__event__descriptor, LOGGREGATOR__V2__ENVELOPE__MESSAGE_EVENT, event_fields, 2,
			event_field},
	};
	const struct member *mb = &members[idx - F_LOG];
	ProtobufCMessage *msg;

	if (pb->message_case != LOGGREGATOR__V2__ENVELOPE__MESSAGE__NOT_SET)
		return LGR_EDECODE; /* two members of the oneof */
	msg = c_alloc(c, mb->desc->sizeof_message);
	if (msg == NULL)
		return LGR_ENOMEM;
	protobuf_c_message_init(mb->desc, msg);
	switch (mb->which) {
	case LOGGREGATOR__V2__ENVELOPE__MESSAGE_LOG: pb->log = (Loggregator__V2__Log *)msg; break;
	case LOGGREGATOR__V2__ENVELOPE__MESSAGE_COUNTER: pb->counter = (Loggregator__V2__Counter *)msg; break;
	case LOGGREGATOR__V2__ENVELOPE__MESSAGE_GAUGE: pb->gauge = (Loggregator__V2__Gauge *)msg; break;
	case LOGGREGATOR__V2__ENVELOPE__MESSAGE_TIMER: pb->timer = (Loggregator__V2__Timer *)msg; break;
	default: pb->event = (Loggregator__V2__Event *)msg; break;
	}
	pb->message_case = mb->which; /* attached before it is filled, so that a failure frees it with the envelope */
	return walk(c, val, mb->fields, mb->nfields, mb->fn, msg);
}

static int env_field(struct pctx *c, unsigned idx, struct fjson_object *val, void *msg)
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

/* The caller's payload as log.payload; its size was taken from the budget before the walk. */
static int join_payload(struct pctx *c, Loggregator__V2__Envelope *pb, const void *payload, size_t len)
{
	if (pb->message_case != LOGGREGATOR__V2__ENVELOPE__MESSAGE_LOG)
		return LGR_EMISSING;
	if (len == 0)
		return LGR_OK;
	pb->log->payload.data = c_alloc(c, len);
	if (pb->log->payload.data == NULL)
		return LGR_ENOMEM;
	memcpy(pb->log->payload.data, payload, len);
	pb->log->payload.len = len;
	return LGR_OK;
}

/* Reads obj into a new Envelope (*out), its parts from c_alloc; on error the parts already made are freed, or left
 * to the scratch. */
static int parse(struct pctx *c, struct fjson_object *obj, const void *payload, size_t payload_len,
	const struct lgr_limits *lim, unsigned flags, Loggregator__V2__Envelope **out)
{
	Loggregator__V2__Envelope *pb;
	locale_t old;
	int rc;

	*out = NULL;
	if (obj == NULL || (payload == NULL && payload_len > 0))
		return LGR_EINVAL;
	if (lim != NULL)
		c->lim = *lim;
	lgr_limits_resolve(&c->lim);
	c->flags = flags;
	c->budget = c->lim.max_message;
	c->join_payload = payload != NULL;
	if (payload_len > c->budget)
		return LGR_ETOOBIG;
	c->budget -= payload_len;
	pb = c_alloc(c, sizeof(*pb));
	if (pb == NULL)
		return LGR_ENOMEM;
	loggregator__v2__envelope__init(pb);
	old = lgr_text_c_locale_enter();
	rc = walk(c, obj, env_fields, F_COUNT, env_field, pb);
	lgr_text_c_locale_leave(old);
	if (rc == LGR_OK && c->join_payload)
		rc = join_payload(c, pb, payload, payload_len);
	if (rc != LGR_OK) {
		if (c->scratch == NULL)
			protobuf_c_message_free_unpacked(&pb->base, NULL);
		return rc;
	}
	*out = pb;
	return LGR_OK;
}

int lgr_fjson_parse(struct fjson_object *obj, const void *payload, size_t payload_len, const struct lgr_limits *lim,
	unsigned flags, struct lgr_env **out)
{
	Loggregator__V2__Envelope *pb;
	struct pctx c = {0};
	int rc;

	if (out == NULL)
		return LGR_EINVAL;
	*out = NULL;
	rc = parse(&c, obj, payload, payload_len, lim, flags, &pb);
	if (rc != LGR_OK)
		return rc;
	*out = lgr_env_take(pb); /* takes pb, even on failure */
	return *out != NULL ? LGR_OK : LGR_ENOMEM;
}

int lgr_fjson_parse_scratch(struct fjson_object *obj, const void *payload, size_t payload_len,
	const struct lgr_limits *lim, unsigned flags, struct lgr_env_scratch *scratch, const struct lgr_env **view)
{
	Loggregator__V2__Envelope *pb;
	struct pctx c = {.scratch = scratch};
	int rc;

	if (view == NULL)
		return LGR_EINVAL;
	*view = NULL;
	if (scratch == NULL)
		return LGR_EINVAL;
	lgr_env_scratch_begin(scratch);
	rc = parse(&c, obj, payload, payload_len, lim, flags, &pb);
	if (rc == LGR_OK)
		*view = lgr_env_scratch_view(scratch, pb);
	return rc;
}

/* --- the outputs' hot path: a Log tree straight to the wire --------------------------------------------------------
 */

/* Text the reader takes as it is: no U+0000, valid UTF-8 (the ASCII prefix checked here, the rest by the library). */
static bool plain_text(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;

	for (size_t i = 0; i < n; i++) {
		if (p[i] == 0)
			return false;
		if (p[i] >= 0x80)
			return memchr(p + i, 0, n - i) == NULL && lgr_text_utf8_valid(s + i, n - i);
	}
	return true;
}

/* A string node the reader would copy unchanged. */
static bool log_text(struct fjson_object *v, struct lgr_fjson_text *out)
{
	if (v == NULL || v->o_type != fjson_type_string)
		return false;
	out->s = fjson_object_get_string(v);
	out->n = (size_t)fjson_object_get_string_len(v);
	return plain_text(out->s, out->n);
}

/* A timestamp as the builders write it: an int node, or a string of decimal digits without a leading zero or '+'. */
static bool log_timestamp(struct fjson_object *v, int64_t *out)
{
	const char *s;
	size_t n, i = 0;
	uint64_t mag = 0, max;
	bool neg;

	if (v->o_type == fjson_type_int) {
		*out = fjson_object_get_int64(v);
		return true;
	}
	if (v->o_type != fjson_type_string)
		return false;
	s = fjson_object_get_string(v);
	n = (size_t)fjson_object_get_string_len(v);
	neg = n > 0 && s[0] == '-';
	i = neg ? 1 : 0;
	if (i == n || n - i > 19 || (s[i] == '0' && n - i > 1) || (neg && s[i] == '0'))
		return false;
	for (; i < n; i++) {
		if (!is_digit(s[i]))
			return false;
		mag = mag * 10 + (uint64_t)(s[i] - '0'); /* 19 digits fit 64 bits */
	}
	max = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
	if (mag > max)
		return false;
	*out = neg ? (int64_t)(0 - mag) : (int64_t)mag;
	return true;
}

/* The tags object: string values only, at most LGR_FJSON_LOG_TAGS_MAX and max_tags; adds their bytes to *text. */
static bool log_tags(struct fjson_object *v, size_t max_tags, struct lgr_fjson_log *m, size_t *text)
{
	const struct _fjson_child *c;
	struct lgr_fjson_text *t;
	struct members it;
	bool ok;

	if (!members_begin(v, &it))
		return false;
	while ((c = members_next(&it, &ok)) != NULL) {
		if (m->ntags == LGR_FJSON_LOG_TAGS_MAX || m->ntags == max_tags)
			return false;
		t = m->tags[m->ntags];
		t[0].s = c->k;
		t[0].n = strlen(c->k);
		if (!plain_text(t[0].s, t[0].n) || !log_text(c->v, &t[1]))
			return false;
		*text += t[0].n + t[1].n;
		m->ntags++;
	}
	return ok;
}

/* The log object: nothing, or only its type OUT or ERR (the payload is the caller's). */
static bool log_member(struct fjson_object *v, bool *err)
{
	const struct _fjson_child *c;
	struct members it;
	bool ok;

	*err = false;
	if (!members_begin(v, &it))
		return false;
	c = members_next(&it, &ok);
	if (c == NULL)
		return ok;
	if (strcmp(c->k, "type") != 0 || c->v == NULL || c->v->o_type != fjson_type_string ||
		members_next(&it, &ok) != NULL || !ok)
		return false;
	if (string_is(c->v, "ERR"))
		*err = true;
	else if (!string_is(c->v, "OUT"))
		return false;
	return true;
}

/* Bytes of a length-delimited field of one-byte key holding n bytes; 0 for n == 0 when empty is left out. */
static size_t len_field_size(size_t n, bool keep_empty)
{
	return n == 0 && !keep_empty ? 0 : 1 + lgr_pb_varint_size(n) + n;
}

static size_t tag_entry_len(const struct lgr_fjson_text t[2])
{
	return len_field_size(t[0].n, false) + len_field_size(t[1].n, false);
}

/* The members of a Log tree, as bits of what lgr_fjson_log_measure has seen. */
enum { S_TS = 1, S_SID = 2, S_IID = 4, S_DTAGS = 8, S_TAGS = 16, S_LOG = 32 };

/* Which member a key names (0: none), with one comparison: the first letters leave one candidate. */
static unsigned log_key(const char *key)
{
	switch (key[0]) {
	case 't': return key[1] == 'a' ? (key_is(key, "tags") ? S_TAGS : 0) : (key_is(key, "timestamp") ? S_TS : 0);
	case 's': return key_is(key, "source_id") ? S_SID : 0;
	case 'i': return key_is(key, "instance_id") ? S_IID : 0;
	case 'd': return key_is(key, "deprecated_tags") ? S_DTAGS : 0;
	case 'l': return key_is(key, "log") ? S_LOG : 0;
	default: return 0;
	}
}

int lgr_fjson_log_measure(struct fjson_object *tree, const void *payload, size_t payload_len,
	const struct lgr_limits *lim, struct lgr_fjson_log *m)
{
	const struct _fjson_child *c;
	struct lgr_limits l = {0};
	struct members it;
	struct fjson_object *v;
	unsigned seen = 0, bit;
	size_t text, i;
	bool ok, walked;

	if (tree == NULL || m == NULL || (payload == NULL && payload_len > 0))
		return LGR_EINVAL;
	if (lim != NULL)
		l = *lim;
	lgr_limits_resolve(&l);
	m->timestamp = 0;
	m->source_id = (struct lgr_fjson_text){"", 0};
	m->instance_id = (struct lgr_fjson_text){"", 0};
	m->payload = payload != NULL ? payload : (const void *)"";
	m->payload_len = payload_len;
	m->err = false;
	m->ntags = 0;
	text = payload_len;
	if (!members_begin(tree, &it))
		return LGR_EUNSUPPORTED;
	while ((c = members_next(&it, &walked)) != NULL) {
		v = c->v;
		if (v == NULL)
			return LGR_EUNSUPPORTED; /* null: the reader's default, not worth a case here */
		bit = log_key(c->k);
		switch (bit) {
		case S_TS: ok = log_timestamp(v, &m->timestamp); break;
		case S_SID:
			ok = log_text(v, &m->source_id);
			text += m->source_id.n;
			break;
		case S_IID:
			ok = log_text(v, &m->instance_id);
			text += m->instance_id.n;
			break;
		case S_DTAGS: ok = v->o_type == fjson_type_object && fjson_object_object_length(v) == 0; break;
		case S_TAGS: ok = log_tags(v, l.max_tags, m, &text); break;
		case S_LOG: ok = log_member(v, &m->err); break;
		default: return LGR_EUNSUPPORTED; /* another member, or a name in its other spelling */
		}
		if (!ok || (seen & bit))
			return LGR_EUNSUPPORTED;
		seen |= bit;
	}
	if (!walked || !(seen & S_LOG) || text > l.max_message)
		return LGR_EUNSUPPORTED;
	m->log_len = len_field_size(payload_len, false) + (m->err ? 2 : 0);
	m->size = (m->timestamp != 0 ? 1 + lgr_pb_varint_size((uint64_t)m->timestamp) : 0) +
		  len_field_size(m->source_id.n, false) + len_field_size(m->log_len, true) +
		  len_field_size(m->instance_id.n, false);
	for (i = 0; i < m->ntags; i++)
		m->size += len_field_size(tag_entry_len(m->tags[i]), true);
	return LGR_OK;
}

/* Writes a length-delimited field (key, length, bytes); an empty one only when keep_empty. */
static uint8_t *put_len_field(uint8_t *p, uint8_t key, const void *s, size_t n, bool keep_empty)
{
	if (n == 0 && !keep_empty)
		return p;
	*p++ = key;
	p += lgr_pb_varint_put(p, n);
	if (n > 0)
		memcpy(p, s, n);
	return p + n;
}

void lgr_fjson_log_pack(const struct lgr_fjson_log *m, uint8_t *out)
{
	uint8_t *p = out;

	/* fields in the order of their numbers, as protobuf-c writes them */
	if (m->timestamp != 0) {
		*p++ = 0x08; /* 1 timestamp, varint */
		p += lgr_pb_varint_put(p, (uint64_t)m->timestamp);
	}
	p = put_len_field(p, 0x12, m->source_id.s, m->source_id.n, false); /* 2 source_id */
	*p++ = 0x22;							   /* 4 log */
	p += lgr_pb_varint_put(p, m->log_len);
	p = put_len_field(p, 0x0a, m->payload, m->payload_len, false); /* log 1 payload */
	if (m->err) {
		*p++ = 0x10; /* log 2 type */
		*p++ = 0x01;
	}
	p = put_len_field(p, 0x42, m->instance_id.s, m->instance_id.n, false); /* 8 instance_id */
	for (size_t i = 0; i < m->ntags; i++) {
		const struct lgr_fjson_text *t = m->tags[i];

		*p++ = 0x4a; /* 9 tags, an entry */
		p += lgr_pb_varint_put(p, tag_entry_len(t));
		p = put_len_field(p, 0x0a, t[0].s, t[0].n, false); /* key */
		p = put_len_field(p, 0x12, t[1].s, t[1].n, false); /* value */
	}
}
