/*
 * fuzz_json.c: the JSON envelope parser (lgr_json) and its libfastjson bridge (lgr_fjson). The input is parsed as one
 * envelope and as a batch; every envelope that parses must be written back by both serializers (the direct writer
 * and the json-c builder) and built as a libfastjson tree, and each text must parse again to an equal envelope, as
 * must the tree itself (whole, and without the payload joined with it). Envelopes must also survive the protobuf
 * codec unchanged. Differentially, when libfastjson's tokener reads the input, lgr_fjson_parse() of its tree must
 * agree with lgr_json_parse() of the text: the same result, equal envelopes; and whenever the outputs' fast path
 * (lgr_fjson_log_measure) takes a tree, the reader takes it too and the fast path writes exactly the reader's
 * envelope's encoding. Any mismatch traps, so libFuzzer keeps the input.
 *
 * libfastjson's header defines json-c's names (json_object, ...) as its own unless FJSON_NATIVE_API_ONLY is set:
 * with it, both headers declare disjoint names and can share this file.
 */
#define FJSON_NATIVE_API_ONLY 1
#include <json-c/json.h>
#include <libfastjson/json.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lgr_env.h"
#include "lgr_fjson.h"
#include "lgr_json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what, const char *text)
{
	fprintf(stderr, "fuzz_json: %s\n%s\n", what, text != NULL ? text : "");
	__builtin_trap();
}

static void reparse(const struct lgr_env *env, const char *text, size_t len, const char *who)
{
	struct lgr_env *back = NULL;
	int rc = lgr_json_parse(text, len, NULL, 0, &back);

	if (rc == LGR_ENOMEM)
		return;
	if (rc != LGR_OK)
		fail(who, text);
	if (!lgr_env_equal(env, back))
		fail(who, text);
	lgr_env_unref(back);
}

/*
 * The outputs' fast path on the same tree: when lgr_fjson_log_measure takes it, lgr_fjson_parse took it too (rc, env)
 * and lgr_fjson_log_pack writes exactly that envelope's encoding.
 */
static void fast_agrees(struct fjson_object *tree, const void *payload, size_t len, int rc, const struct lgr_env *env)
{
	static struct lgr_fjson_log m;
	uint8_t *a, *b;
	size_t n;
	int rf = lgr_fjson_log_measure(tree, payload, len, NULL, &m);

	if (rf == LGR_EUNSUPPORTED || rc == LGR_ENOMEM)
		return;
	if (rf != LGR_OK || rc != LGR_OK)
		fail("the fast path takes a tree the reader refuses", fjson_object_to_json_string_ext(tree, 0));
	n = lgr_env_packed_size(env);
	if (m.size != n)
		fail("the fast path measures another size", fjson_object_to_json_string_ext(tree, 0));
	a = malloc(n + 1);
	b = malloc(n + 1);
	if (a != NULL && b != NULL) {
		lgr_env_pack(env, a);
		lgr_fjson_log_pack(&m, b);
		if (memcmp(a, b, n) != 0 ||
			strcmp(m.source_id.s, env->pb->source_id != NULL ? env->pb->source_id : "") != 0)
			fail("the fast path writes other bytes", fjson_object_to_json_string_ext(tree, 0));
	}
	free(a);
	free(b);
}

/*
 * lgr_fjson_parse_scratch of the same tree gives what lgr_fjson_parse gave (rc, and env when LGR_OK): the same
 * result, an equal envelope, the same encoding byte for byte.
 */
static void scratch_agrees(
	struct fjson_object *tree, const void *payload, size_t len, unsigned flags, int rc, const struct lgr_env *env)
{
	static struct lgr_env_scratch *scratch;
	const struct lgr_env *view = NULL;
	uint8_t *a, *b;
	size_t n;
	int rs;

	fast_agrees(tree, payload, len, rc, env);
	if (scratch == NULL && lgr_env_scratch_new(&scratch) != LGR_OK)
		return;
	rs = lgr_fjson_parse_scratch(tree, payload, len, NULL, flags, scratch, &view);
	if (rs == LGR_ENOMEM || rc == LGR_ENOMEM)
		return;
	if (rs != rc || (rs != LGR_OK) != (view == NULL) || (rc == LGR_OK && !lgr_env_equal(env, view)))
		fail("lgr_fjson_parse_scratch differs from lgr_fjson_parse",
			fjson_object_to_json_string_ext(tree, FJSON_TO_STRING_PLAIN));
	if (rc != LGR_OK)
		return;
	n = lgr_env_packed_size(env);
	if (lgr_env_packed_size(view) != n)
		fail("a scratch view encodes to another size", fjson_object_to_json_string_ext(tree, 0));
	a = malloc(n + 1);
	b = malloc(n + 1);
	if (a != NULL && b != NULL) {
		lgr_env_pack(env, a);
		lgr_env_pack(view, b);
		if (memcmp(a, b, n) != 0)
			fail("a scratch view encodes to other bytes", fjson_object_to_json_string_ext(tree, 0));
	}
	free(a);
	free(b);
}

/* The same envelope as env, from lgr_fjson_parse of tree (payload joined when not NULL). */
static void tree_reads_back(
	const struct lgr_env *env, struct fjson_object *tree, const void *payload, size_t len, const char *who)
{
	struct lgr_env *back = NULL;
	int rc = lgr_fjson_parse(tree, payload, len, NULL, 0, &back);

	if (rc == LGR_ENOMEM)
		return;
	if (rc != LGR_OK || !lgr_env_equal(env, back))
		fail(who, fjson_object_to_json_string_ext(tree, FJSON_TO_STRING_PLAIN));
	scratch_agrees(tree, payload, len, 0, rc, back);
	lgr_env_unref(back);
}

/* env (as lgr_json_parse made it) built as a libfastjson tree: its text and the tree itself read back equal. */
static void check_fjson_build(struct lgr_env *env)
{
	const Loggregator__V2__Log *log = lgr_env_type(env) == LGR_ENV_LOG ? env->pb->log : NULL;
	struct fjson_object *tree = NULL;
	const char *s;
	int rc;

	rc = lgr_fjson_build(env, 0, &tree);
	if (rc == LGR_OK) {
		s = fjson_object_to_json_string_ext(tree, FJSON_TO_STRING_PLAIN);
		if (s != NULL)
			reparse(env, s, strlen(s), "the libfastjson tree does not print to the same envelope");
		tree_reads_back(env, tree, NULL, 0, "the libfastjson tree does not read back to the same envelope");
	} else if (rc != LGR_ENOMEM) {
		fail("lgr_fjson_build failed", NULL);
	}
	fjson_object_put(tree);
	tree = NULL;
	if (log == NULL)
		return;
	rc = lgr_fjson_build(env, LGR_JSON_NO_PAYLOAD, &tree);
	if (rc == LGR_OK)
		tree_reads_back(env, tree, log->payload.len > 0 ? log->payload.data : (const uint8_t *)"",
			log->payload.len, "the tree without the payload does not join it back to the same envelope");
	else if (rc != LGR_ENOMEM)
		fail("lgr_fjson_build without payload failed", NULL);
	fjson_object_put(tree);
}

static void check_envelope(struct lgr_env *env)
{
	struct json_object *obj = NULL;
	const uint8_t *wire;
	struct lgr_env *back = NULL;
	const char *s;
	char *text = NULL;
	size_t len;
	int rc;

	rc = lgr_json_write(env, 0, &text, &len);
	if (rc == LGR_OK)
		reparse(env, text, len, "the written text does not parse back to the same envelope");
	else if (rc != LGR_ENOMEM)
		fail("lgr_json_write failed", NULL);
	free(text);

	rc = lgr_json_build(env, 0, &obj);
	if (rc == LGR_OK) {
		s = json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PLAIN);
		if (s != NULL)
			reparse(env, s, strlen(s), "the built object does not parse back to the same envelope");
	} else if (rc != LGR_ENOMEM) {
		fail("lgr_json_build failed", NULL);
	}
	json_object_put(obj);

	check_fjson_build(env);

	/* what the parser builds by hand must be a protobuf-c message like any other */
	if (lgr_env_encode(env, &wire, &len) == LGR_OK) {
		rc = lgr_env_decode(wire, len, NULL, &back);
		if (rc == LGR_OK && !lgr_env_equal(env, back))
			fail("the protobuf round trip changed the envelope", NULL);
		if (rc != LGR_OK && rc != LGR_ENOMEM)
			fail("the protobuf encoding of a parsed envelope does not decode", NULL);
		lgr_env_unref(back);
	}
}

static int sink(struct lgr_env *env, void *ud)
{
	(void)ud;
	check_envelope(env);
	lgr_env_unref(env);
	return 0;
}

/* --- the differential part: a libfastjson tree against its text ------------------------------------------------- */

static bool utf8_valid(const uint8_t *s, size_t n)
{
	size_t i = 0, len, k;
	uint8_t lo, hi;

	while (i < n) {
		if (s[i] < 0x80) {
			i++;
			continue;
		}
		lo = 0x80;
		hi = 0xbf;
		if (s[i] >= 0xc2 && s[i] <= 0xdf) {
			len = 2;
		} else if (s[i] >= 0xe0 && s[i] <= 0xef) {
			len = 3;
			lo = s[i] == 0xe0 ? 0xa0 : 0x80;
			hi = s[i] == 0xed ? 0x9f : 0xbf;
		} else if (s[i] >= 0xf0 && s[i] <= 0xf4) {
			len = 4;
			lo = s[i] == 0xf0 ? 0x90 : 0x80;
			hi = s[i] == 0xf4 ? 0x8f : 0xbf;
		} else {
			return false;
		}
		if (n - i < len || s[i + 1] < lo || s[i + 1] > hi)
			return false;
		for (k = 2; k < len; k++)
			if (s[i + k] < 0x80 || s[i + k] > 0xbf)
				return false;
		i += len;
	}
	return true;
}

static bool is_num_char(uint8_t c)
{
	return (c >= '0' && c <= '9') || c == '.' || c == '+' || c == '-' || c == 'e' || c == 'E';
}

/* -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? and whether it has a fraction or exponent. */
static bool json_number(const uint8_t *s, size_t n, bool *integer, size_t *digits)
{
	size_t i = 0, start;

	*integer = true;
	if (i < n && s[i] == '-')
		i++;
	start = i;
	if (i < n && s[i] == '0')
		i++;
	else if (i < n && s[i] >= '1' && s[i] <= '9')
		while (i < n && s[i] >= '0' && s[i] <= '9')
			i++;
	else
		return false;
	*digits = i - start;
	if (i < n && s[i] == '.') {
		*integer = false;
		if (++i == n || s[i] < '0' || s[i] > '9')
			return false;
		while (i < n && s[i] >= '0' && s[i] <= '9')
			i++;
	}
	if (i < n && (s[i] == 'e' || s[i] == 'E')) {
		*integer = false;
		i++;
		if (i < n && (s[i] == '+' || s[i] == '-'))
			i++;
		if (i == n || s[i] < '0' || s[i] > '9')
			return false;
		while (i < n && s[i] >= '0' && s[i] <= '9')
			i++;
	}
	return i == n;
}

/*
 * Whether libfastjson's tokener and lgr_json's text reader (json-c and its prescan) see the same JSON in data. They
 * do not for (each a known difference of the two tokeners, not of lgr_fjson_parse, and listed in lgr_fjson.h):
 * - control bytes: raw in strings (JSON and lgr_json refuse them, libfastjson keeps them), NUL, \v and \f anywhere;
 * - invalid UTF-8 anywhere (libfastjson does not check it; lgr_json refuses it in skipped members too);
 * - the escape \u0000 (lgr_json refuses it anywhere; libfastjson cuts keys at it);
 * - number literals that are not JSON ("-01", "1+2": libfastjson's sscanf reads them as ints), the literal -0 (an
 *   int node loses its sign) and integer literals of 19 digits or more (libfastjson saturates them at INT64_MAX);
 * - bare words other than true, false and null: libfastjson reads NaN, Infinity and -Infinity even when strict.
 */
static bool same_json_for_both(const uint8_t *data, size_t size)
{
	bool in_string = false, integer;
	size_t i = 0, start, digits;

	if (!utf8_valid(data, size))
		return false;
	while (i < size) {
		uint8_t c = data[i];

		if (c < 0x20 && (in_string || (c != '\t' && c != '\n' && c != '\r')))
			return false;
		if (in_string) {
			if (c == '\\') {
				if (i + 5 < size && memcmp(data + i + 1, "u0000", 5) == 0)
					return false;
				i += 2;
				continue;
			}
			in_string = c != '"';
			i++;
			continue;
		}
		if (c == '"') {
			in_string = true;
			i++;
		} else if (c == '-' || (c >= '0' && c <= '9')) {
			start = i;
			while (i < size && is_num_char(data[i]))
				i++;
			if (!json_number(data + start, i - start, &integer, &digits) ||
				(integer && (digits >= 19 ||
						    (data[start] == '-' && digits == 1 && data[start + 1] == '0'))))
				return false;
		} else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
			start = i;
			while (i < size && ((data[i] >= 'a' && data[i] <= 'z') || (data[i] >= 'A' && data[i] <= 'Z')))
				i++;
			if (!((i - start == 4 &&
				      (memcmp(data + start, "true", 4) == 0 || memcmp(data + start, "null", 4) == 0)) ||
				    (i - start == 5 && memcmp(data + start, "false", 5) == 0)))
				return false;
		} else {
			i++;
		}
	}
	return true;
}

/* data as a libfastjson tree, read strictly with lgr_json's default nesting bound, or NULL. */
static struct fjson_object *fjson_tree(const uint8_t *data, size_t size)
{
	struct fjson_tokener *tok;
	struct fjson_object *obj;

	if (size > INT32_MAX)
		return NULL;
	tok = fjson_tokener_new_ex(LGR_LIMITS_DEFAULT_DEPTH + 1); /* both tokeners count the top-level value */
	if (tok == NULL)
		return NULL;
	fjson_tokener_set_flags(tok, FJSON_TOKENER_STRICT);
	obj = fjson_tokener_parse_ex(tok, (const char *)data, (int)size);
	if (fjson_tokener_get_error(tok) != fjson_tokener_success) {
		fjson_object_put(obj);
		obj = NULL;
	}
	fjson_tokener_free(tok);
	return obj;
}

static void check_tree_against_text(const uint8_t *data, size_t size, unsigned flags)
{
	struct lgr_env *from_text = NULL, *from_tree = NULL;
	struct fjson_object *tree;
	int rt, rf;

	if (!same_json_for_both(data, size))
		return;
	tree = fjson_tree(data, size);
	if (tree == NULL)
		return;
	rt = lgr_json_parse((const char *)data, size, NULL, flags, &from_text);
	rf = lgr_fjson_parse(tree, NULL, 0, NULL, flags, &from_tree);
	scratch_agrees(tree, NULL, 0, flags, rf, from_tree);
	if (rt != LGR_ENOMEM && rf != LGR_ENOMEM &&
		(rt != rf || (rt == LGR_OK && !lgr_env_equal(from_text, from_tree)) ||
			(rf != LGR_OK && from_tree != NULL))) {
		fprintf(stderr, "fuzz_json: lgr_json_parse %s, lgr_fjson_parse %s%s, flags %u, input:\n%.*s\n",
			lgr_strerror(rt), lgr_strerror(rf), rt == rf ? " (envelopes differ)" : "", flags, (int)size,
			(const char *)data);
		fail("the tree and its text read differently", fjson_object_to_json_string_ext(tree, 0));
	}
	lgr_env_unref(from_text);
	lgr_env_unref(from_tree);
	fjson_object_put(tree);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct lgr_env *env = NULL;
	unsigned flags;

	for (flags = 0; flags <= LGR_JSON_DISCARD_UNKNOWN; flags += LGR_JSON_DISCARD_UNKNOWN) {
		if (lgr_json_parse((const char *)data, size, NULL, flags, &env) == LGR_OK) {
			check_envelope(env);
			lgr_env_unref(env);
		} else if (env != NULL) {
			fail("*out set on failure", NULL);
		}
		lgr_json_parse_batch((const char *)data, size, NULL, flags, sink, NULL);
		check_tree_against_text(data, size, flags);
	}
	return 0;
}
