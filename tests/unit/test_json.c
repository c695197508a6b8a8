/*
 * test_json.c: the JSON form of envelopes (lgr_json): the real RLP gateway's output parsed and written back with the
 * same content and the same key sets, the exact layout of every type, the forms protobuf's JSON parser accepts, and
 * the input it must refuse, with limits and ownership on every path.
 */
#include <criterion/criterion.h>
#include <json-c/json.h>
#include <float.h>
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lgr_env.h"
#include "lgr_json.h"

/* --- helpers -------------------------------------------------------------------------------------------------- */

#define MAX_ENVS 64

struct env_list {
	struct lgr_env *e[MAX_ENVS];
	size_t n;
	int stop_at; /* the sink returns 7 when handed envelope number stop_at (-1: never) */
};

static int collect(struct lgr_env *env, void *ud)
{
	struct env_list *l = ud;

	if (l->n >= MAX_ENVS) {
		lgr_env_unref(env);
		return -100;
	}
	l->e[l->n++] = env;
	return (int)l->n - 1 == l->stop_at ? 7 : 0;
}

static void env_list_free(struct env_list *l)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		lgr_env_unref(l->e[i]);
	l->n = 0;
}

static struct lgr_env *new_env(void)
{
	struct lgr_env *env = lgr_env_new();

	cr_assert_not_null(env);
	return env;
}

static char *read_file(const char *name)
{
	char path[1024];
	FILE *f;
	long n;
	char *buf;

	snprintf(path, sizeof(path), "%s/%s", VECTORS_DIR, name);
	f = fopen(path, "rb");
	cr_assert_not_null(f, "cannot open %s", path);
	cr_assert_eq(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	cr_assert_geq(n, 0);
	rewind(f);
	buf = malloc((size_t)n + 1);
	cr_assert_not_null(buf);
	cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

/* Parses text strictly with json-c (the oracle's own reader, independent of lgr_json's parser). */
static struct json_object *jparse(const char *text)
{
	struct json_tokener *tok = json_tokener_new();
	struct json_object *o;

	cr_assert_not_null(tok);
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	o = json_tokener_parse_ex(tok, text, (int)strlen(text));
	cr_assert_eq(json_tokener_get_error(tok), json_tokener_success, "not valid JSON (%s): %s",
		json_tokener_error_desc(json_tokener_get_error(tok)), text);
	json_tokener_free(tok);
	return o;
}

static bool is_number(struct json_object *o)
{
	return json_object_is_type(o, json_type_int) || json_object_is_type(o, json_type_double);
}

/* Numbers compared as values: integers exactly, anything else as doubles. */
static bool number_eq(struct json_object *a, struct json_object *b)
{
	if (json_object_is_type(a, json_type_int) && json_object_is_type(b, json_type_int))
		return json_object_get_int64(a) == json_object_get_int64(b) &&
		       json_object_get_uint64(a) == json_object_get_uint64(b);
	return json_object_get_double(a) == json_object_get_double(b);
}

/* A value that protojson leaves out when unpopulated fields are not emitted. */
static bool is_default(struct json_object *o)
{
	const char *s;

	if (o == NULL)
		return true;
	switch (json_object_get_type(o)) {
	case json_type_string:
		s = json_object_get_string(o);
		return strcmp(s, "") == 0 || strcmp(s, "0") == 0 || strcmp(s, "OUT") == 0;
	case json_type_object: return json_object_object_length(o) == 0;
	case json_type_array: return json_object_array_length(o) == 0;
	case json_type_int:
	case json_type_double: return json_object_get_double(o) == 0;
	case json_type_boolean: return !json_object_get_boolean(o);
	default: return false;
	}
}

/*
 * Semantic comparison of two json-c trees: key order ignored, numbers as values. With relaxed, a key missing from
 * expected may be present in got with a default value (expected printed without unpopulated fields); without it the
 * key sets must be identical.
 */
static bool json_same(struct json_object *got, struct json_object *expected, bool relaxed, char *why, size_t whylen)
{
	struct json_object_iterator it, end;
	struct json_object *v;
	const char *key;
	size_t i, n;

	if (is_number(got) && is_number(expected)) {
		if (!number_eq(got, expected))
			snprintf(why, whylen, "number %s != %s", json_object_to_json_string(got),
				json_object_to_json_string(expected));
		return number_eq(got, expected);
	}
	if (json_object_get_type(got) != json_object_get_type(expected)) {
		snprintf(why, whylen, "type %s != %s (%s vs %s)", json_type_to_name(json_object_get_type(got)),
			json_type_to_name(json_object_get_type(expected)), json_object_to_json_string(got),
			json_object_to_json_string(expected));
		return false;
	}
	switch (json_object_get_type(got)) {
	case json_type_null: return true;
	case json_type_boolean: return json_object_get_boolean(got) == json_object_get_boolean(expected);
	case json_type_string:
		if (json_object_get_string_len(got) != json_object_get_string_len(expected) ||
			memcmp(json_object_get_string(got), json_object_get_string(expected),
				(size_t)json_object_get_string_len(got)) != 0) {
			snprintf(why, whylen, "string \"%s\" != \"%s\"", json_object_get_string(got),
				json_object_get_string(expected));
			return false;
		}
		return true;
	case json_type_array:
		n = json_object_array_length(got);
		if (n != json_object_array_length(expected)) {
			snprintf(why, whylen, "array length %zu != %zu", n, json_object_array_length(expected));
			return false;
		}
		for (i = 0; i < n; i++)
			if (!json_same(json_object_array_get_idx(got, i), json_object_array_get_idx(expected, i),
				    relaxed, why, whylen))
				return false;
		return true;
	case json_type_object:
		it = json_object_iter_begin(expected);
		end = json_object_iter_end(expected);
		for (; !json_object_iter_equal(&it, &end); json_object_iter_next(&it)) {
			key = json_object_iter_peek_name(&it);
			if (!json_object_object_get_ex(got, key, &v)) {
				snprintf(why, whylen, "key \"%s\" missing", key);
				return false;
			}
			if (!json_same(v, json_object_iter_peek_value(&it), relaxed, why, whylen))
				return false;
		}
		it = json_object_iter_begin(got);
		end = json_object_iter_end(got);
		for (; !json_object_iter_equal(&it, &end); json_object_iter_next(&it)) {
			key = json_object_iter_peek_name(&it);
			if (json_object_object_get_ex(expected, key, NULL))
				continue;
			if (!relaxed || !is_default(json_object_iter_peek_value(&it))) {
				snprintf(why, whylen, "extra key \"%s\"", key);
				return false;
			}
		}
		return true;
	default: return false;
	}
}

static void assert_json_same(struct json_object *got, struct json_object *expected, bool relaxed)
{
	char why[512] = "";

	cr_assert(json_same(got, expected, relaxed, why, sizeof(why)), "%s\n got:      %s\n expected: %s", why,
		json_object_to_json_string(got), json_object_to_json_string(expected));
}

/* The object has exactly these keys (a NULL-terminated list). */
static void assert_keys(struct json_object *o, const char *const *keys)
{
	int n = 0;

	cr_assert(json_object_is_type(o, json_type_object), "not an object: %s", json_object_to_json_string(o));
	for (; keys[n] != NULL; n++)
		cr_assert(json_object_object_get_ex(o, keys[n], NULL), "key %s missing in %s", keys[n],
			json_object_to_json_string(o));
	cr_assert_eq(json_object_object_length(o), n, "extra keys in %s", json_object_to_json_string(o));
}

static struct json_object *member(struct json_object *o, const char *key)
{
	struct json_object *v = NULL;

	cr_assert(json_object_object_get_ex(o, key, &v), "no key %s in %s", key, json_object_to_json_string(o));
	return v;
}

/*
 * The key set the real gateway writes for one envelope (rlp-gateway-sse-*.txt): every base key, exactly one
 * message member with all of its fields, deprecated tag values with exactly one member, metrics {unit, value}.
 */
static void assert_gateway_keys(struct json_object *env)
{
	static const char *const base[] = {"timestamp", "source_id", "instance_id", "deprecated_tags", "tags"};
	static const struct {
		const char *name;
		const char *keys[4];
	} messages[] = {
		{"log", {"payload", "type", NULL}},
		{"counter", {"name", "delta", "total", NULL}},
		{"gauge", {"metrics", NULL}},
		{"timer", {"name", "start", "stop", NULL}},
		{"event", {"title", "body", NULL}},
	};
	struct json_object_iterator it, end;
	struct json_object *m;
	size_t i;
	int found = 0;

	for (i = 0; i < 5; i++)
		member(env, base[i]);
	for (i = 0; i < 5; i++) {
		if (!json_object_object_get_ex(env, messages[i].name, &m))
			continue;
		found++;
		assert_keys(m, messages[i].keys);
		if (strcmp(messages[i].name, "gauge") != 0)
			continue;
		it = json_object_iter_begin(member(m, "metrics"));
		end = json_object_iter_end(member(m, "metrics"));
		for (; !json_object_iter_equal(&it, &end); json_object_iter_next(&it))
			assert_keys(json_object_iter_peek_value(&it), (const char *const[]){"unit", "value", NULL});
	}
	cr_assert_eq(json_object_object_length(env), 5 + found, "extra keys in %s", json_object_to_json_string(env));
	cr_assert_leq(found, 1);
	it = json_object_iter_begin(member(env, "deprecated_tags"));
	end = json_object_iter_end(member(env, "deprecated_tags"));
	for (; !json_object_iter_equal(&it, &end); json_object_iter_next(&it))
		cr_assert_eq(json_object_object_length(json_object_iter_peek_value(&it)), 1);
}

/* lgr_json_write of env, checked to be valid JSON, as a json-c tree. */
static struct json_object *written(const struct lgr_env *env, unsigned flags)
{
	struct json_object *o;
	char *text = NULL;
	size_t len = 0;

	cr_assert_eq(lgr_json_write(env, flags, &text, &len), LGR_OK);
	cr_assert_not_null(text);
	cr_assert_eq(strlen(text), len);
	o = jparse(text);
	free(text);
	return o;
}

/* lgr_json_build of env, printed by json-c and read back (so json-c's printer must produce valid JSON). */
static struct json_object *built(const struct lgr_env *env, unsigned flags)
{
	struct json_object *b = NULL, *o;

	cr_assert_eq(lgr_json_build(env, flags, &b), LGR_OK);
	cr_assert_not_null(b);
	o = jparse(json_object_to_json_string_ext(b, JSON_C_TO_STRING_PLAIN));
	json_object_put(b);
	return o;
}

static struct lgr_env *parse_ok(const char *text)
{
	struct lgr_env *env = NULL;
	int rc = lgr_json_parse(text, strlen(text), NULL, 0, &env);

	cr_assert_eq(rc, LGR_OK, "parse failed (%s): %s", lgr_strerror(rc), text);
	cr_assert_not_null(env);
	return env;
}

static int parse_rc(const char *text)
{
	struct lgr_env *env = (struct lgr_env *)&env; /* must be reset to NULL on failure */
	int rc = lgr_json_parse(text, strlen(text), NULL, 0, &env);

	if (rc == LGR_OK)
		lgr_env_unref(env);
	else
		cr_assert_null(env, "*out not NULL after %s", lgr_strerror(rc));
	return rc;
}

/* Writes env, parses it back and checks the content survived; returns the written text (caller frees). */
static char *round_trip(const struct lgr_env *env)
{
	struct lgr_env *back;
	char *text = NULL;
	size_t len;

	cr_assert_eq(lgr_json_write(env, 0, &text, &len), LGR_OK);
	back = parse_ok(text);
	cr_assert(lgr_env_equal(env, back), "round trip changed the envelope: %s", text);
	lgr_env_unref(back);
	return text;
}

/* --- the real gateway's output ---------------------------------------------------------------------------------- */

/*
 * Every "data:" line of an SSE capture that holds a JSON batch: parsed, written back (directly and through the
 * json-c builder) and compared with the line, batch and envelope by envelope, key sets included. Returns the number
 * of envelopes; lines cut by the capture ("[... truncated ...]" follows) must be refused.
 */
static size_t check_sse_vector(const char *name, size_t *truncated)
{
	char *text = read_file(name), *line, *save = NULL, *next, *out;
	struct json_object *vec, *got, *one, *b;
	struct env_list l = {.stop_at = -1};
	size_t envs = 0, len, i;

	*truncated = 0;
	for (line = strtok_r(text, "\n", &save); line != NULL; line = next) {
		next = strtok_r(NULL, "\n", &save);
		if (strncmp(line, "data: {", 7) != 0)
			continue; /* event: lines, heartbeat and closing data */
		line += 6;
		if (next != NULL && strstr(next, "truncated") != NULL) {
			cr_assert_eq(lgr_json_parse_batch(line, strlen(line), NULL, 0, collect, &l), LGR_EDECODE);
			cr_assert_eq(l.n, 0);
			(*truncated)++;
			continue;
		}
		vec = jparse(line);
		cr_assert_eq(lgr_json_parse_batch(line, strlen(line), NULL, 0, collect, &l), LGR_OK, "%s", line);
		cr_assert_eq(l.n, json_object_array_length(member(vec, "batch")));

		cr_assert_eq(lgr_json_write_batch(l.e, l.n, 0, &out, &len), LGR_OK);
		got = jparse(out);
		free(out);
		assert_json_same(got, vec, false);
		assert_keys(got, (const char *const[]){"batch", NULL});
		json_object_put(got);

		cr_assert_eq(lgr_json_build_batch(l.e, l.n, 0, &b), LGR_OK);
		got = jparse(json_object_to_json_string(b));
		json_object_put(b);
		assert_json_same(got, vec, false);
		json_object_put(got);

		for (i = 0; i < l.n; i++) {
			one = written(l.e[i], 0);
			assert_json_same(one, json_object_array_get_idx(member(vec, "batch"), i), false);
			assert_gateway_keys(one);
			json_object_put(one);
		}
		envs += l.n;
		env_list_free(&l);
		json_object_put(vec);
	}
	free(text);
	return envs;
}

Test(json_vectors, every_envelope_of_the_all_types_capture_is_written_back_as_the_gateway_wrote_it)
{
	size_t truncated;

	cr_assert_eq(check_sse_vector("rlp-gateway-sse-all-types.txt", &truncated), 6);
	cr_assert_eq(truncated, 0);
}

Test(json_vectors, every_envelope_of_the_named_selectors_capture_is_written_back_as_the_gateway_wrote_it)
{
	size_t truncated;

	cr_assert_eq(check_sse_vector("rlp-gateway-sse-named-selectors.txt", &truncated), 2);
	cr_assert_eq(truncated, 0);
}

Test(json_vectors, the_udp_origin_capture_round_trips_and_its_truncated_line_is_refused)
{
	size_t truncated;

	/* the capture cut its second batch mid-envelope: one complete batch remains */
	cr_assert_eq(check_sse_vector("rlp-gateway-sse-http2-udp-origin.txt", &truncated), 1);
	cr_assert_eq(truncated, 1);
}

/*
 * The self-metrics capture omits unpopulated fields (protojson defaults); we write them, as the gateway does, so the
 * comparison allows extra keys holding defaults and checks our key set against the gateway's.
 */
Test(json_vectors, every_self_metric_line_parses_and_is_written_with_the_gateway_key_set)
{
	char *text = read_file("doppler-rlp-self-metrics-json.txt"), *line, *save = NULL;
	struct json_object *vec, *got;
	struct lgr_env *env;
	size_t lines = 0;

	for (line = strtok_r(text, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
		if (line[0] != '{')
			continue;
		vec = jparse(line);
		env = parse_ok(line);
		got = written(env, 0);
		assert_json_same(got, vec, true);
		assert_gateway_keys(got);
		json_object_put(got);
		got = built(env, 0);
		assert_json_same(got, vec, true);
		assert_gateway_keys(got);
		json_object_put(got);
		lgr_env_unref(env);
		json_object_put(vec);
		lines++;
	}
	free(text);
	cr_assert_eq(lines, 20);
}

static size_t unhex(const char *hex, uint8_t *out, size_t cap)
{
	size_t n = 0;
	unsigned v;

	while (hex[0] != '\0' && hex[0] != '\n' && hex[1] != '\0') {
		cr_assert_lt(n, cap);
		cr_assert_eq(sscanf(hex, "%2x", &v), 1);
		out[n++] = (uint8_t)v;
		hex += 2;
	}
	return n;
}

/* The router's protobuf bytes, decoded by lgr_env and written by us, match the JSON the capture shows for them. */
Test(json_vectors, the_router_protobuf_capture_is_written_as_its_recorded_json)
{
	char *text = read_file("router-egress-all-types.txt"), *line, *save = NULL;
	struct env_list l = {.stop_at = -1};
	static uint8_t raw[65536];
	struct json_object *vec, *got;
	size_t n, checked = 0;

	for (line = strtok_r(text, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
		if (strncmp(line, "RAWBATCH ", 9) == 0) {
			n = unhex(line + 9, raw, sizeof(raw));
			cr_assert_eq(lgr_env_decode_batch(raw, n, NULL, collect, &l), LGR_OK);
		} else if (line[0] == '{') {
			cr_assert_lt(checked, l.n);
			vec = jparse(line);
			got = written(l.e[checked], 0);
			/* the RAWBATCH lines and the JSON lines are two runs: the timestamps differ */
			json_object_object_del(vec, "timestamp");
			json_object_object_del(got, "timestamp");
			assert_json_same(got, vec, true);
			json_object_put(got);
			json_object_put(vec);
			checked++;
		}
	}
	cr_assert_eq(checked, 6);
	cr_assert_eq(l.n, 6);
	env_list_free(&l);
	free(text);
}

/* --- envelope -> JSON: exact layout ----------------------------------------------------------------------------- */

Test(json_write, a_counter_is_written_compactly_with_every_field_and_64_bit_integers_as_strings)
{
	struct lgr_env *env = new_env();
	char *text;
	size_t len;

	env->pb->timestamp = -5;
	cr_assert_eq(lgr_env_set_source_id(env, "s"), LGR_OK);
	cr_assert_eq(lgr_env_set_tag(env, "a", "b"), LGR_OK);
	cr_assert_eq(lgr_env_set_counter(env, "c", UINT64_MAX, 0), LGR_OK);
	cr_assert_eq(lgr_json_write(env, 0, &text, &len), LGR_OK);
	cr_assert_str_eq(text, "{\"timestamp\":\"-5\",\"source_id\":\"s\",\"instance_id\":\"\",\"deprecated_tags\":{},"
			       "\"tags\":{\"a\":\"b\"},\"counter\":{\"name\":\"c\",\"delta\":\"18446744073709551615\","
			       "\"total\":\"0\"}}");
	free(text);
	free(round_trip(env));
	lgr_env_unref(env);
}

Test(json_write, a_log_payload_is_standard_base64_with_padding_and_the_type_is_named)
{
	static const uint8_t payload[] = {0x00, 0xff, 0xfe, 0xfb, 0xef, 0x0a};
	static const char *const expect[] = {"", "AA==", "AP8=", "AP/+", "AP/++w==", "AP/+++8=", "AP/+++8K"};
	struct lgr_env *env = new_env();
	struct json_object *o;
	size_t n;

	for (n = 0; n <= sizeof(payload); n++) {
		cr_assert_eq(lgr_env_set_log(env, payload, n, n % 2 ? LOGGREGATOR__V2__LOG__TYPE__ERR : 0), LGR_OK);
		o = written(env, 0);
		assert_gateway_keys(o);
		cr_assert_str_eq(json_object_get_string(member(member(o, "log"), "payload")), expect[n]);
		cr_assert_str_eq(json_object_get_string(member(member(o, "log"), "type")), n % 2 ? "ERR" : "OUT");
		json_object_put(o);
		o = built(env, 0);
		cr_assert_str_eq(json_object_get_string(member(member(o, "log"), "payload")), expect[n]);
		json_object_put(o);
		free(round_trip(env));
	}
	lgr_env_unref(env);
}

Test(json_write, every_byte_value_of_a_binary_payload_survives_the_round_trip)
{
	uint8_t payload[256];
	struct lgr_env *env = new_env();
	size_t i;

	for (i = 0; i < sizeof(payload); i++)
		payload[i] = (uint8_t)(255 - i);
	cr_assert_eq(lgr_env_set_log(env, payload, sizeof(payload), LOGGREGATOR__V2__LOG__TYPE__OUT), LGR_OK);
	free(round_trip(env));
	lgr_env_unref(env);
}

Test(json_write, no_payload_leaves_the_payload_out_and_keeps_the_type)
{
	struct lgr_env *env = new_env();
	struct json_object *o;

	cr_assert_eq(lgr_env_set_log(env, "hello", 5, LOGGREGATOR__V2__LOG__TYPE__ERR), LGR_OK);
	o = written(env, LGR_JSON_NO_PAYLOAD);
	assert_keys(member(o, "log"), (const char *const[]){"type", NULL});
	cr_assert_str_eq(json_object_get_string(member(member(o, "log"), "type")), "ERR");
	json_object_put(o);
	o = built(env, LGR_JSON_NO_PAYLOAD);
	assert_keys(member(o, "log"), (const char *const[]){"type", NULL});
	json_object_put(o);
	lgr_env_unref(env);
}

Test(json_write, gauge_values_are_shortest_numbers_and_non_finite_ones_are_named_strings)
{
	static const struct {
		const char *name;
		double v;
		const char *text; /* as protojson writes it */
	} cases[] = {
		{"nan", NAN, "\"NaN\""},
		{"inf", INFINITY, "\"Infinity\""},
		{"ninf", -INFINITY, "\"-Infinity\""},
		{"zero", 0.0, "0"},
		{"half", 12.5, "12.5"},
		{"tenth", 0.1, "0.1"},
		{"mib", 1048576, "1048576"},
		{"big", 1e20, "100000000000000000000"},
		{"huge", 1e21, "1e+21"},
		{"micro", 1e-6, "0.000001"},
		{"small", 1e-7, "1e-7"},
		{"third", 1.0 / 3, "0.3333333333333333"},
		{"neg", -2.5e-300, "-2.5e-300"},
		{"max", DBL_MAX, "1.7976931348623157e+308"},
		{"denormal", 5e-324, "5e-324"},
		{"seventeen", 0.30000000000000004, "0.30000000000000004"},
	};
	struct lgr_env *env = new_env();
	char *text, want[128];
	size_t i;

	cr_assert_eq(lgr_env_set_gauge(env), LGR_OK);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		cr_assert_eq(lgr_env_add_metric(env, cases[i].name, "u", cases[i].v), LGR_OK);
		cr_assert_eq(lgr_env_set_dtag_decimal(env, cases[i].name, cases[i].v), LGR_OK);
	}
	text = round_trip(env);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(want, sizeof(want), "\"%s\":{\"unit\":\"u\",\"value\":%s}", cases[i].name, cases[i].text);
		cr_assert_not_null(strstr(text, want), "%s not in %s", want, text);
		snprintf(want, sizeof(want), "\"%s\":{\"decimal\":%s}", cases[i].name, cases[i].text);
		cr_assert_not_null(strstr(text, want), "%s not in %s", want, text);
	}
	free(text);
	lgr_env_unref(env);
}

Test(json_write, deprecated_tags_carry_text_integer_and_decimal_values)
{
	struct lgr_env *env = new_env();
	struct json_object *o, *d;
	char *text;
	size_t len;

	cr_assert_eq(lgr_env_set_dtag_text(env, "t", "x"), LGR_OK);
	cr_assert_eq(lgr_env_set_dtag_integer(env, "i", INT64_MIN), LGR_OK);
	cr_assert_eq(lgr_env_set_dtag_decimal(env, "d", -0.0), LGR_OK);
	cr_assert_eq(lgr_env_set_event(env, "title", ""), LGR_OK);
	o = written(env, 0);
	assert_gateway_keys(o);
	d = member(o, "deprecated_tags");
	cr_assert_str_eq(json_object_get_string(member(member(d, "t"), "text")), "x");
	cr_assert_str_eq(json_object_get_string(member(member(d, "i"), "integer")), "-9223372036854775808");
	cr_assert_str_eq(json_object_get_string(member(member(o, "event"), "body")), "");
	json_object_put(o);
	/* json-c reads -0 as the integer 0: the sign shows in the text only (and round_trip checks it bitwise) */
	cr_assert_eq(lgr_json_write(env, 0, &text, &len), LGR_OK);
	cr_assert_not_null(strstr(text, "\"d\":{\"decimal\":-0}"), "%s", text);
	free(text);
	free(round_trip(env));
	lgr_env_unref(env);
}

Test(json_write, a_timer_has_signed_start_and_stop_as_strings)
{
	struct lgr_env *env = new_env();
	struct json_object *o;

	cr_assert_eq(lgr_env_set_timer(env, "http", INT64_MIN, INT64_MAX), LGR_OK);
	o = written(env, 0);
	assert_gateway_keys(o);
	cr_assert_str_eq(json_object_get_string(member(member(o, "timer"), "start")), "-9223372036854775808");
	cr_assert_str_eq(json_object_get_string(member(member(o, "timer"), "stop")), "9223372036854775807");
	json_object_put(o);
	free(round_trip(env));
	lgr_env_unref(env);
}

Test(json_write, an_envelope_without_a_message_has_only_the_base_keys)
{
	struct lgr_env *env = new_env();
	struct json_object *o = written(env, 0);

	assert_keys(o, (const char *const[]){"timestamp", "source_id", "instance_id", "deprecated_tags", "tags", NULL});
	cr_assert_str_eq(json_object_get_string(member(o, "timestamp")), "0");
	json_object_put(o);
	free(round_trip(env));
	lgr_env_unref(env);
}

Test(json_write, quotes_backslashes_and_control_characters_are_escaped_and_unicode_kept)
{
	static const char s[] =
		"tab\there \"q\" back\\slash \x01\x1f\x7f/ \xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x98\x80\n\r\b\f";
	struct lgr_env *env = new_env();
	struct json_object *o;
	char *text;

	cr_assert_eq(lgr_env_set_source_id(env, s), LGR_OK);
	cr_assert_eq(lgr_env_set_tag(env, s, s), LGR_OK);
	cr_assert_eq(lgr_env_set_event(env, s, s), LGR_OK);
	text = round_trip(env);
	cr_assert_not_null(
		strstr(text, "\"tab\\there \\\"q\\\" back\\\\slash \\u0001\\u001f\x7f/ \xc3\xa9 \xe2\x9c\x93 "
			     "\xf0\x9f\x98\x80\\n\\r\\b\\f\""),
		"%s", text);
	free(text);
	o = built(env, 0);
	cr_assert_str_eq(json_object_get_string(member(o, "source_id")), s);
	cr_assert_str_eq(json_object_get_string(member(member(o, "tags"), s)), s);
	json_object_put(o);
	lgr_env_unref(env);
}

Test(json_write, invalid_utf8_becomes_replacement_characters_and_the_output_stays_valid_json)
{
	static const char bad[] = "a\xff"
				  "b\xc0\x80"
				  "c\xed\xa0\x80"
				  "d\xe2\x9c"; /* stray, overlong, surrogate, cut */
	struct lgr_env *env = new_env();
	struct json_object *o;
	char want[64];

	snprintf(want, sizeof(want), "a%sb%s%sc%s%s%sd%s%s", "\xef\xbf\xbd", "\xef\xbf\xbd", "\xef\xbf\xbd",
		"\xef\xbf\xbd", "\xef\xbf\xbd", "\xef\xbf\xbd", "\xef\xbf\xbd", "\xef\xbf\xbd");
	cr_assert_eq(lgr_env_set_tag(env, bad, bad), LGR_OK);
	cr_assert_eq(lgr_env_set_source_id(env, bad), LGR_OK);
	o = written(env, 0); /* jparse validates UTF-8 */
	cr_assert_str_eq(json_object_get_string(member(o, "source_id")), want);
	cr_assert_str_eq(json_object_get_string(member(member(o, "tags"), want)), want);
	json_object_put(o);
	o = built(env, 0);
	cr_assert_str_eq(json_object_get_string(member(o, "source_id")), want);
	cr_assert_str_eq(json_object_get_string(member(member(o, "tags"), want)), want);
	json_object_put(o);
	lgr_env_unref(env);
}

/* Appends a tags entry by hand: the setters replace, but the protobuf wire may repeat a key. */
static void push_tag(struct lgr_env *env, const char *key, const char *value)
{
	Loggregator__V2__Envelope *pb = env->pb;
	Loggregator__V2__Envelope__TagsEntry *e = malloc(sizeof(*e));

	cr_assert_not_null(e);
	loggregator__v2__envelope__tags_entry__init(e);
	e->key = strdup(key);
	e->value = strdup(value);
	pb->tags = realloc(pb->tags, (pb->n_tags + 1) * sizeof(*pb->tags));
	cr_assert_not_null(pb->tags);
	pb->tags[pb->n_tags++] = e;
}

static void check_repeated_keys_written_once(size_t distinct)
{
	struct lgr_env *env = new_env();
	struct json_object *o, *tags;
	char key[32], val[32];
	size_t i;
	char *text;

	for (i = 0; i < distinct * 3; i++) {
		snprintf(key, sizeof(key), "k%zu", i % distinct);
		snprintf(val, sizeof(val), "v%zu", i);
		push_tag(env, key, val);
	}
	cr_assert_eq(lgr_json_write(env, 0, &text, &i), LGR_OK);
	cr_assert_not_null(strstr(text, "\"k0\":\"v"));
	cr_assert_null(strstr(strstr(text, "\"k0\":\"v") + 1, "\"k0\":\"v"), "k0 written twice: %s", text);
	o = jparse(text);
	free(text);
	tags = member(o, "tags");
	cr_assert_eq(json_object_object_length(tags), (int)distinct);
	for (i = 0; i < distinct; i++) {
		snprintf(key, sizeof(key), "k%zu", i);
		snprintf(val, sizeof(val), "v%zu", i + 2 * distinct);
		cr_assert_str_eq(json_object_get_string(member(tags, key)), val); /* the last one wins */
	}
	json_object_put(o);
	free(round_trip(env));
	lgr_env_unref(env);
}

Test(json_write, a_map_key_repeated_on_the_wire_is_written_once_with_its_last_value)
{
	check_repeated_keys_written_once(3);
}

Test(json_write, a_large_map_with_repeated_keys_is_written_once_per_key)
{
	check_repeated_keys_written_once(40);
}

/* How often needle occurs in the text lgr_json_write makes of env. */
static size_t count_written(const struct lgr_env *env, const char *needle)
{
	char *text, *p;
	size_t len, n = 0;

	cr_assert_eq(lgr_json_write(env, 0, &text, &len), LGR_OK);
	for (p = strstr(text, needle); p != NULL; p = strstr(p + 1, needle))
		n++;
	free(text);
	return n;
}

Test(json_write, keys_that_differ_only_in_invalid_utf8_are_written_once)
{
	struct lgr_env *env = new_env();
	struct json_object *o;
	char key[32];
	size_t i;

	push_tag(env, "k\xff", "first");
	push_tag(env, "k\xfe", "second");
	cr_assert_eq(count_written(env, "\"k\\ufffd\":"), 1);
	o = written(env, 0);
	cr_assert_eq(json_object_object_length(member(o, "tags")), 1);
	cr_assert_str_eq(json_object_get_string(member(member(o, "tags"), "k\xef\xbf\xbd")), "second");
	json_object_put(o);
	for (i = 0; i < 20; i++) { /* enough entries for the sorted path */
		snprintf(key, sizeof(key), "%zu\xc0", i);
		push_tag(env, key, "x");
	}
	push_tag(env, "k\xc1", "third");
	cr_assert_eq(count_written(env, "\"k\\ufffd\":"), 1);
	o = written(env, 0);
	cr_assert_eq(json_object_object_length(member(o, "tags")), 21);
	cr_assert_str_eq(json_object_get_string(member(member(o, "tags"), "k\xef\xbf\xbd")), "third");
	json_object_put(o);
	lgr_env_unref(env);
}

Test(json_write, a_batch_holds_its_envelopes_in_order_and_may_be_empty)
{
	struct lgr_env *envs[3];
	struct json_object *o, *b;
	char *text;
	size_t len, i;

	cr_assert_eq(lgr_json_write_batch(NULL, 0, 0, &text, &len), LGR_OK);
	cr_assert_str_eq(text, "{\"batch\":[]}");
	free(text);
	cr_assert_eq(lgr_json_build_batch(NULL, 0, 0, &b), LGR_OK);
	cr_assert_str_eq(json_object_to_json_string_ext(b, JSON_C_TO_STRING_PLAIN), "{\"batch\":[]}");
	json_object_put(b);
	for (i = 0; i < 3; i++) {
		envs[i] = new_env();
		envs[i]->pb->timestamp = (int64_t)i + 10;
	}
	cr_assert_eq(lgr_json_write_batch(envs, 3, 0, &text, &len), LGR_OK);
	o = jparse(text);
	free(text);
	cr_assert_eq(json_object_array_length(member(o, "batch")), 3);
	for (i = 0; i < 3; i++)
		cr_assert_eq(
			json_object_get_int64(member(json_object_array_get_idx(member(o, "batch"), i), "timestamp")),
			(int64_t)i + 10);
	json_object_put(o);
	for (i = 0; i < 3; i++)
		lgr_env_unref(envs[i]);
}

Test(json_write, the_builder_and_the_writer_agree_on_every_type)
{
	struct lgr_env *env = new_env();
	struct json_object *w, *b;
	int type;

	cr_assert_eq(lgr_env_set_dtag_integer(env, "n", 42), LGR_OK);
	cr_assert_eq(lgr_env_set_tag(env, "k", "v"), LGR_OK);
	for (type = 0; type < 5; type++) {
		switch (type) {
		case 0:
			cr_assert_eq(lgr_env_set_log(env, "\x01\x02", 2, LOGGREGATOR__V2__LOG__TYPE__ERR), LGR_OK);
			break;
		case 1: cr_assert_eq(lgr_env_set_counter(env, "c", 1, 2), LGR_OK); break;
		case 2:
			cr_assert_eq(lgr_env_set_gauge(env), LGR_OK);
			cr_assert_eq(lgr_env_add_metric(env, "m", "b", 0.1), LGR_OK);
			cr_assert_eq(lgr_env_add_metric(env, "x", "b", NAN), LGR_OK);
			break;
		case 3: cr_assert_eq(lgr_env_set_timer(env, "t", 1, 2), LGR_OK); break;
		default: cr_assert_eq(lgr_env_set_event(env, "a", "b"), LGR_OK); break;
		}
		w = written(env, 0);
		b = built(env, 0);
		assert_gateway_keys(w);
		assert_json_same(b, w, false);
		json_object_put(w);
		json_object_put(b);
	}
	lgr_env_unref(env);
}

Test(json_write, numbers_use_a_decimal_point_whatever_the_locale)
{
	locale_t de = newlocale(LC_ALL_MASK, "de_DE.UTF-8", (locale_t)0), old;
	struct lgr_env *env = new_env(), *back;
	const char *text2;
	char *text;
	size_t len;

	if (de == (locale_t)0) {
		lgr_env_unref(env);
		cr_skip_test("no de_DE.UTF-8 locale here (LOCPATH with a localedef'd one enables this test)");
	}
	cr_assert_eq(lgr_env_set_gauge(env), LGR_OK);
	cr_assert_eq(lgr_env_add_metric(env, "m", "u", 12.5), LGR_OK);
	old = uselocale(de);
	cr_assert_eq(lgr_json_write(env, 0, &text, &len), LGR_OK);
	cr_assert_not_null(strstr(text, "12.5"), "%s", text);
	text2 = "{\"gauge\":{\"metrics\":{\"m\":{\"unit\":\"u\",\"value\":\"0.25\"}}}}";
	cr_assert_eq(lgr_json_parse(text2, strlen(text2), NULL, 0, &back), LGR_OK);
	cr_assert_eq(back->pb->gauge->metrics[0]->value->value, 0.25);
	uselocale(old);
	freelocale(de);
	free(text);
	lgr_env_unref(back);
	lgr_env_unref(env);
}

/* --- JSON -> envelope: what protojson accepts -------------------------------------------------------------------- */

Test(json_parse, lower_camel_case_keys_are_read_like_the_proto_names)
{
	struct lgr_env *env =
		parse_ok("{\"sourceId\":\"a\",\"instanceId\":\"1\",\"deprecatedTags\":{\"k\":{\"text\":\"v\"}},"
			 "\"timestamp\":\"7\"}");

	cr_assert_str_eq(env->pb->source_id, "a");
	cr_assert_str_eq(env->pb->instance_id, "1");
	cr_assert_str_eq(lgr_env_dtag(env, "k")->text, "v");
	cr_assert_eq(env->pb->timestamp, 7);
	lgr_env_unref(env);
}

Test(json_parse, missing_and_null_fields_are_defaults)
{
	struct lgr_env *env = parse_ok("{\"source_id\":null,\"log\":null,\"tags\":null,\"counter\":{\"name\":\"x\","
				       "\"delta\":null}}");

	cr_assert_str_eq(env->pb->source_id, "");
	cr_assert_eq(env->pb->n_tags, 0);
	cr_assert_eq(lgr_env_type(env), LGR_ENV_COUNTER);
	cr_assert_str_eq(env->pb->counter->name, "x");
	cr_assert_eq(env->pb->counter->delta, 0);
	lgr_env_unref(env);
	env = parse_ok("{}");
	cr_assert_eq(lgr_env_type(env), LGR_ENV_NONE);
	cr_assert_eq(env->pb->timestamp, 0);
	lgr_env_unref(env);
}

Test(json_parse, sixty_four_bit_integers_are_read_from_strings_and_numbers_exactly)
{
	static const struct {
		const char *json;
		int64_t want;
	} ts[] = {
		{"123", 123},
		{"\"123\"", 123},
		{"\"-0\"", 0},
		{"1e3", 1000},
		{"\"1.50e1\"", 15},
		{"2.0", 2},
		{"9223372036854775807", INT64_MAX},
		{"-9223372036854775808", INT64_MIN},
		{"\"9223372036854775807\"", INT64_MAX},
		{"1795216269089010666", 1795216269089010666},
		{"0.00001e5", 1},
		{"100000000000000000e-17", 1},
	};
	char text[128];
	struct lgr_env *env;
	size_t i;

	for (i = 0; i < sizeof(ts) / sizeof(ts[0]); i++) {
		snprintf(text, sizeof(text), "{\"timestamp\":%s}", ts[i].json);
		env = parse_ok(text);
		cr_assert_eq(env->pb->timestamp, ts[i].want, "%s", text);
		lgr_env_unref(env);
	}
	env = parse_ok("{\"counter\":{\"delta\":18446744073709551615,\"total\":\"18446744073709551615\"}}");
	cr_assert_eq(env->pb->counter->delta, UINT64_MAX);
	cr_assert_eq(env->pb->counter->total, UINT64_MAX);
	lgr_env_unref(env);
}

Test(json_parse, enums_are_read_by_name_or_number)
{
	struct lgr_env *env = parse_ok("{\"log\":{\"type\":1}}");
	char *text;

	cr_assert_eq(env->pb->log->type, LOGGREGATOR__V2__LOG__TYPE__ERR);
	lgr_env_unref(env);
	env = parse_ok("{\"log\":{\"type\":\"ERR\"}}");
	cr_assert_eq(env->pb->log->type, LOGGREGATOR__V2__LOG__TYPE__ERR);
	lgr_env_unref(env);
	/* proto3 enums are open: a number without a name is kept and written back as a number */
	env = parse_ok("{\"log\":{\"type\":7}}");
	cr_assert_eq((int)env->pb->log->type, 7);
	text = round_trip(env);
	cr_assert_not_null(strstr(text, "\"type\":7}"), "%s", text);
	free(text);
	lgr_env_unref(env);
	env = parse_ok("{\"log\":{\"type\":-1}}");
	text = round_trip(env);
	cr_assert_not_null(strstr(text, "\"type\":-1}"), "%s", text);
	free(text);
	lgr_env_unref(env);
}

Test(json_parse, base64_is_read_standard_or_url_safe_with_or_without_padding)
{
	static const char *const forms[] = {"\"+/8=\"", "\"+/8\"", "\"-_8=\"", "\"-_8\""};
	struct lgr_env *env;
	char text[64];
	size_t i;

	for (i = 0; i < 4; i++) {
		snprintf(text, sizeof(text), "{\"log\":{\"payload\":%s}}", forms[i]);
		env = parse_ok(text);
		cr_assert_eq(env->pb->log->payload.len, 2, "%s", text);
		cr_assert_eq(memcmp(env->pb->log->payload.data, "\xfb\xff", 2), 0, "%s", text);
		lgr_env_unref(env);
	}
	env = parse_ok("{\"log\":{\"payload\":\"aGk\"}}");
	cr_assert_eq(env->pb->log->payload.len, 2);
	cr_assert_eq(memcmp(env->pb->log->payload.data, "hi", 2), 0);
	lgr_env_unref(env);
	env = parse_ok("{\"log\":{\"payload\":\"\"}}");
	cr_assert_eq(env->pb->log->payload.len, 0);
	lgr_env_unref(env);
}

Test(json_parse, doubles_are_read_from_numbers_and_strings_including_non_finite_names)
{
	struct lgr_env *env =
		parse_ok("{\"gauge\":{\"metrics\":{\"a\":{\"value\":\"12.5\"},\"b\":{\"value\":\"NaN\"},"
			 "\"c\":{\"value\":\"Infinity\"},\"d\":{\"value\":\"-Infinity\"},\"e\":{\"value\":3},"
			 "\"f\":{\"value\":100000000000000000000},\"g\":{\"value\":-1.5e-7},"
			 "\"h\":{\"value\":-0}}}}");
	Loggregator__V2__Gauge *g = env->pb->gauge;

	cr_assert_eq(g->n_metrics, 8);
	cr_assert_eq(g->metrics[0]->value->value, 12.5);
	cr_assert(isnan(g->metrics[1]->value->value));
	cr_assert(isinf(g->metrics[2]->value->value) && g->metrics[2]->value->value > 0);
	cr_assert(isinf(g->metrics[3]->value->value) && g->metrics[3]->value->value < 0);
	cr_assert_eq(g->metrics[4]->value->value, 3);
	cr_assert_eq(g->metrics[5]->value->value, 1e20); /* json-c alone would saturate it to 2^64-1 */
	cr_assert_eq(g->metrics[6]->value->value, -1.5e-7);
	cr_assert_eq(g->metrics[7]->value->value, 0);
	cr_assert(!signbit(g->metrics[7]->value->value)); /* as lgr_env's decoder: -0 does not survive protobuf-c */
	cr_assert_str_eq(g->metrics[0]->value->unit, "");
	lgr_env_unref(env);
	env = parse_ok("{\"deprecated_tags\":{\"z\":{\"decimal\":-0},\"y\":{\"decimal\":\"-0.0\"}}}");
	cr_assert(signbit(lgr_env_dtag(env, "z")->decimal));
	cr_assert(signbit(lgr_env_dtag(env, "y")->decimal));
	lgr_env_unref(env);
}

Test(json_parse, whitespace_around_and_inside_the_value_is_allowed)
{
	struct lgr_env *env = parse_ok(" \r\n\t{ \"source_id\" : \"a\" ,\n\"tags\" : { } }\n\n");

	cr_assert_str_eq(env->pb->source_id, "a");
	lgr_env_unref(env);
}

Test(json_parse, escapes_and_surrogate_pairs_decode_to_utf8)
{
	struct lgr_env *env =
		parse_ok("{\"source_id\":\"\\u00e9\\ud83d\\ude00\\/\\t\",\"tags\":{\"\\u2713\":\"\\\"\"}}");

	cr_assert_str_eq(env->pb->source_id, "\xc3\xa9\xf0\x9f\x98\x80/\t");
	cr_assert_str_eq(lgr_env_tag(env, "\xe2\x9c\x93"), "\"");
	lgr_env_unref(env);
}

Test(json_parse, unknown_keys_fail_unless_discarded)
{
	const char *text = "{\"source_id\":\"a\",\"future\":{\"x\":[1]},\"log\":{\"payload\":\"\",\"level\":3}}";
	struct lgr_env *env = NULL;

	cr_assert_eq(parse_rc(text), LGR_EDECODE);
	cr_assert_eq(lgr_json_parse(text, strlen(text), NULL, LGR_JSON_DISCARD_UNKNOWN, &env), LGR_OK);
	cr_assert_str_eq(env->pb->source_id, "a");
	cr_assert_eq(lgr_env_type(env), LGR_ENV_LOG);
	lgr_env_unref(env);
}

Test(json_parse, the_input_length_bounds_the_text_not_a_terminator)
{
	const char *text = "{\"source_id\":\"a\"}garbage";
	struct lgr_env *env = NULL;

	cr_assert_eq(lgr_json_parse(text, 17, NULL, 0, &env), LGR_OK);
	cr_assert_str_eq(env->pb->source_id, "a");
	lgr_env_unref(env);
	cr_assert_eq(lgr_json_parse(text, strlen(text), NULL, 0, &env), LGR_EDECODE);
	cr_assert_eq(lgr_json_parse(text, 16, NULL, 0, &env), LGR_EDECODE);
}

Test(json_parse, a_json_c_tree_built_by_a_program_is_read_like_text)
{
	struct json_object *o = json_object_new_object(), *c = json_object_new_object(), *g = json_object_new_object();
	struct json_object *m = json_object_new_object(), *v = json_object_new_object();
	struct lgr_env *env;

	json_object_object_add(o, "timestamp", json_object_new_int64(INT64_MIN));
	json_object_object_add(c, "delta", json_object_new_uint64(UINT64_MAX));
	json_object_object_add(c, "total", json_object_new_double(3.0));
	json_object_object_add(o, "counter", c);
	cr_assert_eq(lgr_json_from_object(o, NULL, 0, &env), LGR_OK);
	cr_assert_eq(env->pb->timestamp, INT64_MIN);
	cr_assert_eq(env->pb->counter->delta, UINT64_MAX);
	cr_assert_eq(env->pb->counter->total, 3);
	lgr_env_unref(env);
	json_object_object_del(o, "counter");

	json_object_object_add(v, "value", json_object_new_double(0.1));
	json_object_object_add(m, "cpu", v);
	json_object_object_add(g, "metrics", m);
	json_object_object_add(o, "gauge", g);
	cr_assert_eq(lgr_json_from_object(o, NULL, 0, &env), LGR_OK);
	cr_assert_eq(env->pb->gauge->metrics[0]->value->value, 0.1);
	lgr_env_unref(env);

	/* its strings may hold NULs, which text input cannot: "NaN\0x" is not "NaN" */
	json_object_object_add(v, "value", json_object_new_string_len("NaN\0x", 5));
	cr_assert_eq(lgr_json_from_object(o, NULL, 0, &env), LGR_EDECODE);
	json_object_object_add(v, "value", json_object_new_string("NaN"));
	json_object_object_add(o, "instance_id", json_object_new_string_len("a\0b", 3));
	cr_assert_eq(lgr_json_from_object(o, NULL, 0, &env), LGR_EUNSUPPORTED);
	json_object_object_del(o, "instance_id");

	/* strings of a caller's tree are checked: invalid UTF-8 is refused, not passed on */
	json_object_object_add(o, "source_id", json_object_new_string("\xff"));
	cr_assert_eq(lgr_json_from_object(o, NULL, 0, &env), LGR_EDECODE);
	cr_assert_null(env);
	json_object_put(o);
}

Test(json_parse, a_batch_hands_every_envelope_to_the_sink_in_order)
{
	const char *text = "{\"batch\":[{\"timestamp\":\"1\"},{\"timestamp\":2},{\"timestamp\":\"3\"}]}";
	struct env_list l = {.stop_at = -1};
	size_t i;

	cr_assert_eq(lgr_json_parse_batch(text, strlen(text), NULL, 0, collect, &l), LGR_OK);
	cr_assert_eq(l.n, 3);
	for (i = 0; i < 3; i++)
		cr_assert_eq(l.e[i]->pb->timestamp, (int64_t)i + 1);
	env_list_free(&l);
	cr_assert_eq(lgr_json_parse_batch("{}", 2, NULL, 0, collect, &l), LGR_OK);
	cr_assert_eq(lgr_json_parse_batch("{\"batch\":null}", 14, NULL, 0, collect, &l), LGR_OK);
	cr_assert_eq(lgr_json_parse_batch("{\"batch\":[]}", 12, NULL, 0, collect, &l), LGR_OK);
	cr_assert_eq(l.n, 0);
}

Test(json_parse, a_sink_error_stops_the_batch_and_the_rest_is_freed)
{
	const char *text = "{\"batch\":[{\"source_id\":\"a\"},{\"source_id\":\"b\"},{\"source_id\":\"c\"}]}";
	struct env_list l = {.stop_at = 0};

	cr_assert_eq(lgr_json_parse_batch(text, strlen(text), NULL, 0, collect, &l), 7);
	cr_assert_eq(l.n, 1);
	env_list_free(&l);
}

Test(json_parse, a_bad_envelope_anywhere_in_a_batch_hands_over_none)
{
	const char *text = "{\"batch\":[{\"source_id\":\"a\"},{\"source_id\":\"b\"},{\"source_id\":5}]}";
	struct env_list l = {.stop_at = -1};

	cr_assert_eq(lgr_json_parse_batch(text, strlen(text), NULL, 0, collect, &l), LGR_EDECODE);
	cr_assert_eq(l.n, 0);
	cr_assert_eq(lgr_json_parse_batch("{\"batch\":[{},null]}", 19, NULL, 0, collect, &l), LGR_EDECODE);
	cr_assert_eq(lgr_json_parse_batch("{\"batch\":{}}", 12, NULL, 0, collect, &l), LGR_EDECODE);
	cr_assert_eq(lgr_json_parse_batch("{\"batch\":[1]}", 13, NULL, 0, collect, &l), LGR_EDECODE);
	cr_assert_eq(lgr_json_parse_batch("[]", 2, NULL, 0, collect, &l), LGR_EDECODE);
	cr_assert_eq(l.n, 0);
}

Test(json_parse, a_batch_from_a_json_c_tree)
{
	struct json_object *o = jparse("{\"batch\":[{\"event\":{\"title\":\"t\"}},{\"timer\":{\"name\":\"n\"}}]}");
	struct env_list l = {.stop_at = -1};

	cr_assert_eq(lgr_json_batch_from_object(o, NULL, 0, collect, &l), LGR_OK);
	cr_assert_eq(l.n, 2);
	cr_assert_eq(lgr_env_type(l.e[0]), LGR_ENV_EVENT);
	cr_assert_eq(lgr_env_type(l.e[1]), LGR_ENV_TIMER);
	env_list_free(&l);
	json_object_put(o);
}

/* --- JSON -> envelope: what must be refused ------------------------------------------------------------------- */

Test(json_parse, wrong_json_types_are_refused)
{
	static const char *const bad[] = {
		"{\"source_id\":5}",
		"{\"source_id\":true}",
		"{\"timestamp\":true}",
		"{\"timestamp\":{}}",
		"{\"tags\":[]}",
		"{\"tags\":{\"a\":1}}",
		"{\"tags\":{\"a\":null}}",
		"{\"deprecated_tags\":{\"a\":\"x\"}}",
		"{\"deprecated_tags\":{\"a\":null}}",
		"{\"deprecated_tags\":{\"a\":{\"integer\":\"x\"}}}",
		"{\"deprecated_tags\":{\"a\":{\"text\":1}}}",
		"{\"log\":\"x\"}",
		"{\"log\":[]}",
		"{\"log\":{\"payload\":5}}",
		"{\"log\":{\"type\":\"INFO\"}}",
		"{\"log\":{\"type\":\"1\"}}",
		"{\"log\":{\"type\":1.5}}",
		"{\"log\":{\"type\":true}}",
		"{\"counter\":{\"delta\":-1}}",
		"{\"counter\":{\"delta\":\"-1\"}}",
		"{\"counter\":{\"delta\":\"1.5\"}}",
		"{\"counter\":{\"delta\":\" 1\"}}",
		"{\"counter\":{\"delta\":\"0x10\"}}",
		"{\"counter\":{\"delta\":\"+1\"}}",
		"{\"counter\":{\"delta\":\"01\"}}",
		"{\"counter\":{\"name\":[]}}",
		"{\"gauge\":{\"metrics\":{\"m\":null}}}",
		"{\"gauge\":{\"metrics\":{\"m\":{\"value\":true}}}}",
		"{\"gauge\":{\"metrics\":{\"m\":{\"value\":\"12,5\"}}}}",
		"{\"gauge\":{\"metrics\":{\"m\":{\"value\":\"nan\"}}}}",
		"{\"gauge\":{\"metrics\":[]}}",
		"{\"timer\":{\"start\":\"abc\"}}",
		"{\"event\":{\"title\":{}}}",
	};
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(parse_rc(bad[i]), LGR_EDECODE, "accepted: %s", bad[i]);
}

Test(json_parse, bad_base64_is_refused)
{
	static const char *const bad[] = {"a", "a===", "YQ=", "Y Q==", "+-8=", "YQ==YQ==", "====", "YQ%3D", "aGk\\n"};
	char text[64];
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(text, sizeof(text), "{\"log\":{\"payload\":\"%s\"}}", bad[i]);
		cr_assert_eq(parse_rc(text), LGR_EDECODE, "accepted: %s", text);
	}
}

Test(json_parse, numbers_out_of_range_are_refused)
{
	static const char *const bad[] = {
		"{\"timestamp\":9223372036854775808}",
		"{\"timestamp\":\"9223372036854775808\"}",
		"{\"timestamp\":-9223372036854775809}",
		"{\"timestamp\":123456789012345678901234567890}",
		"{\"timestamp\":1e19}",
		"{\"timestamp\":\"1e99999999999999999999\"}",
		"{\"timestamp\":1.5}",
		"{\"timestamp\":1e-1}",
		"{\"counter\":{\"delta\":18446744073709551616}}",
		"{\"counter\":{\"total\":\"1e20\"}}",
		"{\"log\":{\"type\":2147483648}}",
		"{\"gauge\":{\"metrics\":{\"m\":{\"value\":1e400}}}}",
		"{\"gauge\":{\"metrics\":{\"m\":{\"value\":\"-1e400\"}}}}",
		"{\"deprecated_tags\":{\"a\":{\"integer\":\"-9223372036854775809\"}}}",
	};
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(parse_rc(bad[i]), LGR_EDECODE, "accepted: %s", bad[i]);
}

Test(json_parse, a_field_given_twice_or_two_oneof_members_are_refused)
{
	cr_assert_eq(parse_rc("{\"source_id\":\"a\",\"sourceId\":\"b\"}"), LGR_EDECODE);
	cr_assert_eq(parse_rc("{\"sourceId\":null,\"source_id\":\"b\"}"), LGR_EDECODE);
	cr_assert_eq(parse_rc("{\"log\":{},\"counter\":{}}"), LGR_EDECODE);
	cr_assert_eq(parse_rc("{\"deprecated_tags\":{\"a\":{\"text\":\"a\",\"integer\":\"1\"}}}"), LGR_EDECODE);
	/* a null member does not set the oneof */
	cr_assert_eq(parse_rc("{\"log\":null,\"counter\":{}}"), LGR_OK);
	cr_assert_eq(parse_rc("{\"deprecated_tags\":{\"a\":{\"text\":null,\"integer\":\"1\"}}}"), LGR_OK);
}

Test(json_parse, text_that_is_not_one_json_object_is_refused)
{
	static const char *const bad[] = {"", " ", "[]", "null", "5", "\"x\"", "{", "{}x", "{}{}", "{\"a\"}", "nul",
		"{'source_id':'a'}", "{\"source_id\":\"a\",}", "{\"gauge\":{\"metrics\":{\"m\":{\"value\":NaN}}}}",
		"{\"gauge\":{\"metrics\":{\"m\":{\"value\":Infinity}}}}",
		"{\"gauge\":{\"metrics\":{\"m\":{\"value\":1.}}}}", "{\"source_id\":\"a\tb\"}",
		"{\"source_id\":\"\xff\"}", "{\"source_id\":\"\xc0\x80\"}", "{/*c*/}"};
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(parse_rc(bad[i]), LGR_EDECODE, "accepted: %s", bad[i]);
	cr_assert_eq(lgr_json_parse("{\"a\":\"\0\"}", 9, NULL, LGR_JSON_DISCARD_UNKNOWN, &(struct lgr_env *){NULL}),
		LGR_EDECODE);
}

Test(json_parse, a_nul_character_in_a_string_or_key_has_no_representation)
{
	cr_assert_eq(parse_rc("{\"source_id\":\"a\\u0000b\"}"), LGR_EUNSUPPORTED);
	cr_assert_eq(parse_rc("{\"tags\":{\"a\\u0000b\":\"c\"}}"), LGR_EUNSUPPORTED);
	/* an escaped backslash followed by u0000 is text, not the escape */
	cr_assert_eq(parse_rc("{\"source_id\":\"\\\\u0000\"}"), LGR_OK);
}

Test(json_parse, too_many_tags_metrics_or_envelopes_are_refused_before_allocation)
{
	struct lgr_limits lim = {.max_tags = 3, .max_metrics = 2, .max_batch = 2};
	struct env_list l = {.stop_at = -1};
	struct lgr_env *env = NULL;
	const char *t;

	t = "{\"tags\":{\"a\":\"1\",\"b\":\"2\"},\"deprecated_tags\":{\"c\":{},\"d\":{}}}";
	cr_assert_eq(lgr_json_parse(t, strlen(t), &lim, 0, &env), LGR_ELIMIT);
	cr_assert_null(env);
	t = "{\"tags\":{\"a\":\"1\",\"b\":\"2\"},\"deprecated_tags\":{\"c\":{}}}";
	cr_assert_eq(lgr_json_parse(t, strlen(t), &lim, 0, &env), LGR_OK);
	lgr_env_unref(env);
	t = "{\"gauge\":{\"metrics\":{\"a\":{},\"b\":{},\"c\":{}}}}";
	cr_assert_eq(lgr_json_parse(t, strlen(t), &lim, 0, &env), LGR_ELIMIT);
	t = "{\"batch\":[{},{},{}]}";
	cr_assert_eq(lgr_json_parse_batch(t, strlen(t), &lim, 0, collect, &l), LGR_ELIMIT);
	cr_assert_eq(l.n, 0);
	t = "{\"batch\":[{},{}]}";
	cr_assert_eq(lgr_json_parse_batch(t, strlen(t), &lim, 0, collect, &l), LGR_OK);
	cr_assert_eq(l.n, 2);
	env_list_free(&l);
}

Test(json_parse, text_or_strings_over_the_message_size_are_refused)
{
	struct lgr_limits lim = {.max_message = 32};
	struct json_object *o;
	struct env_list l = {.stop_at = -1};
	struct lgr_env *env = NULL;
	const char *t = "{\"source_id\":\"0123456789012345678901234567891234\"}"; /* 34 bytes */

	cr_assert_eq(lgr_json_parse(t, strlen(t), &lim, 0, &env), LGR_ETOOBIG);
	cr_assert_eq(lgr_json_parse_batch(t, strlen(t), &lim, 0, collect, &l), LGR_ETOOBIG);
	/* a tree the caller holds has no text length: its strings together are bounded */
	o = jparse(t);
	cr_assert_eq(lgr_json_from_object(o, &lim, 0, &env), LGR_ETOOBIG);
	json_object_put(o);
	o = jparse("{\"source_id\":\"0123456789\",\"event\":{\"title\":\"0123456789\",\"body\":\"0123456789abc\"}}");
	cr_assert_eq(lgr_json_from_object(o, &lim, 0, &env), LGR_ETOOBIG);
	json_object_put(o);
	o = jparse("{\"log\":{\"payload\":\"MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5\"}}"); /* 30 bytes decoded */
	cr_assert_eq(lgr_json_from_object(o, &lim, 0, &env), LGR_OK);
	lgr_env_unref(env);
	json_object_put(o);
	o = jparse("{\"batch\":[{\"source_id\":\"0123456789abcdefg\"},{\"source_id\":\"0123456789abcdefg\"},{}]}");
	cr_assert_eq(lgr_json_batch_from_object(o, &lim, 0, collect, &l), LGR_ETOOBIG);
	cr_assert_eq(l.n, 0);
	json_object_put(o);
}

Test(json_parse, nesting_deeper_than_the_limit_is_refused)
{
	struct lgr_limits lim = {.max_depth = 4};
	struct lgr_env *env = NULL;
	const char *gauge = "{\"gauge\":{\"metrics\":{\"m\":{\"unit\":\"u\"}}}}";
	char deep[256];
	int i, n = 0;

	cr_assert_eq(lgr_json_parse(gauge, strlen(gauge), &lim, 0, &env), LGR_OK);
	lgr_env_unref(env);
	lim.max_depth = 3;
	cr_assert_eq(lgr_json_parse(gauge, strlen(gauge), &lim, 0, &env), LGR_ELIMIT);
	n += snprintf(deep + n, sizeof(deep) - (size_t)n, "{\"future\":");
	for (i = 0; i < 40; i++)
		deep[n++] = '[';
	for (i = 0; i < 40; i++)
		deep[n++] = ']';
	snprintf(deep + n, sizeof(deep) - (size_t)n, "}");
	cr_assert_eq(lgr_json_parse(deep, strlen(deep), NULL, LGR_JSON_DISCARD_UNKNOWN, &env), LGR_ELIMIT);
}

Test(json_api, null_arguments_are_caller_errors)
{
	struct lgr_env *env = new_env(), *out = NULL;
	struct json_object *o = NULL;
	char *text = (char *)"x";
	size_t len;

	cr_assert_eq(lgr_json_write(NULL, 0, &text, &len), LGR_EINVAL);
	cr_assert_null(text);
	cr_assert_eq(lgr_json_write(env, 0, NULL, &len), LGR_EINVAL);
	cr_assert_eq(lgr_json_write_batch(NULL, 1, 0, &text, &len), LGR_EINVAL);
	cr_assert_eq(lgr_json_build(NULL, 0, &o), LGR_EINVAL);
	cr_assert_eq(lgr_json_build_batch((struct lgr_env *[]){NULL}, 1, 0, &o), LGR_EINVAL);
	cr_assert_null(o);
	cr_assert_eq(lgr_json_parse(NULL, 3, NULL, 0, &out), LGR_EINVAL);
	cr_assert_null(out);
	cr_assert_eq(lgr_json_parse("{}", 2, NULL, 0, NULL), LGR_EINVAL);
	cr_assert_eq(lgr_json_parse_batch("{}", 2, NULL, 0, NULL, NULL), LGR_EINVAL);
	cr_assert_eq(lgr_json_from_object(NULL, NULL, 0, &out), LGR_EINVAL);
	cr_assert_eq(lgr_json_batch_from_object(NULL, NULL, 0, collect, NULL), LGR_EINVAL);
	lgr_env_unref(env);
}

/* What the parser builds by hand must encode like any other envelope: e.g. an empty text still sets the oneof. */
Test(json_parse, parsed_envelopes_survive_the_protobuf_codec)
{
	static const char *const texts[] = {
		"{\"deprecated_tags\":{\"t\":{\"text\":\"\"},\"e\":{}},\"log\":{}}",
		"{\"timestamp\":\"-1\",\"source_id\":\"s\",\"tags\":{\"a\":\"\"},\"gauge\":{\"metrics\":{\"m\":{}}}}",
		"{\"counter\":{}}",
		"{\"timer\":{\"name\":\"\",\"start\":\"1\"}}",
		"{\"event\":{\"body\":\"b\"}}",
	};
	struct lgr_env *env, *back;
	const uint8_t *wire;
	size_t i, len;

	for (i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		env = parse_ok(texts[i]);
		cr_assert_eq(lgr_env_encode(env, &wire, &len), LGR_OK);
		cr_assert_eq(lgr_env_decode(wire, len, NULL, &back), LGR_OK);
		cr_assert(lgr_env_equal(env, back), "%s", texts[i]);
		if (i == 0)
			cr_assert_eq(lgr_env_dtag(back, "t")->data_case, LOGGREGATOR__V2__VALUE__DATA_TEXT);
		lgr_env_unref(back);
		lgr_env_unref(env);
	}
}
