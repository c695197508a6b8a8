/*
 * test_env.c: the v2 envelope (lgr_env): setters and readers, protobuf round trips of every field of every type,
 * decoding the real router's bytes, limits on untrusted input, reference counting and the shared encoding cache.
 */
#include <criterion/criterion.h>
#include <json-c/json.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lgr_env.h"
#include "lgr_pb.h"

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

/* Encodes env, decodes the bytes and returns the new envelope (checked equal to env). */
static struct lgr_env *round_trip(struct lgr_env *env)
{
	const uint8_t *data;
	size_t len;
	struct lgr_env *back = NULL;

	cr_assert_eq(lgr_env_encode(env, &data, &len), LGR_OK);
	cr_assert_eq(lgr_env_decode(data, len, NULL, &back), LGR_OK);
	cr_assert_not_null(back);
	cr_assert(lgr_env_equal(env, back));
	cr_assert(lgr_env_equal(back, env));
	return back;
}

/* Reads the hex RAWBATCH lines (decoded into a malloc'd buffer each) and the JSON lines of a vector file. */
struct vector_file {
	uint8_t *batch[8];
	size_t batch_len[8];
	size_t n_batch;
	char *json[16];
	size_t n_json;
};

static void vector_load(const char *name, struct vector_file *v)
{
	char path[1024], *line = NULL;
	size_t cap = 0;
	ssize_t n;
	FILE *f;

	memset(v, 0, sizeof(*v));
	snprintf(path, sizeof(path), "%s/%s", VECTORS_DIR, name);
	f = fopen(path, "r");
	cr_assert_not_null(f, "cannot open %s", path);
	while ((n = getline(&line, &cap, f)) > 0) {
		while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			line[--n] = '\0';
		if (strncmp(line, "RAWBATCH ", 9) == 0) {
			const char *hex = line + 9;
			size_t len = strlen(hex) / 2, i;
			uint8_t *b = malloc(len + 1);

			cr_assert_not_null(b);
			cr_assert_lt(v->n_batch, 8);
			for (i = 0; i < len; i++) {
				unsigned byte;

				cr_assert_eq(sscanf(hex + 2 * i, "%2x", &byte), 1);
				b[i] = (uint8_t)byte;
			}
			v->batch[v->n_batch] = b;
			v->batch_len[v->n_batch++] = len;
		} else if (line[0] == '{') {
			cr_assert_lt(v->n_json, 16);
			v->json[v->n_json++] = strdup(line);
		}
	}
	free(line);
	fclose(f);
}

static void vector_free(struct vector_file *v)
{
	size_t i;

	for (i = 0; i < v->n_batch; i++)
		free(v->batch[i]);
	for (i = 0; i < v->n_json; i++)
		free(v->json[i]);
}

static int b64_value(char c)
{
	const char *alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const char *p = c != '\0' ? strchr(alphabet, c) : NULL;

	return p != NULL ? (int)(p - alphabet) : -1;
}

/* Standard base64 with padding into out; returns the decoded length. */
static size_t b64_decode(const char *in, uint8_t *out, size_t cap)
{
	size_t n = 0, i, len = strlen(in);

	cr_assert_eq(len % 4, 0);
	for (i = 0; i < len; i += 4) {
		int a = b64_value(in[i]), b = b64_value(in[i + 1]), c = b64_value(in[i + 2]), d = b64_value(in[i + 3]);

		cr_assert(a >= 0 && b >= 0);
		cr_assert_lt(n + 3, cap + 1);
		out[n++] = (uint8_t)(a << 2 | b >> 4);
		if (in[i + 2] != '=') {
			cr_assert(c >= 0);
			out[n++] = (uint8_t)((b & 15) << 4 | c >> 2);
		}
		if (in[i + 3] != '=') {
			cr_assert(d >= 0);
			out[n++] = (uint8_t)((c & 3) << 6 | d);
		}
	}
	return n;
}

static const char *jstr(json_object *o, const char *key)
{
	json_object *v;

	return json_object_object_get_ex(o, key, &v) ? json_object_get_string(v) : "";
}

/* protobuf JSON writes 64-bit integers as strings and omits zero values. */
static uint64_t ju64(json_object *o, const char *key)
{
	json_object *v;

	return json_object_object_get_ex(o, key, &v) ? strtoull(json_object_get_string(v), NULL, 10) : 0;
}

static int64_t ji64(json_object *o, const char *key)
{
	json_object *v;

	return json_object_object_get_ex(o, key, &v) ? strtoll(json_object_get_string(v), NULL, 10) : 0;
}

/* Checks every field of env against its protobuf-JSON form (as the vector files hold it). */
static void assert_env_matches_json(const struct lgr_env *env, const char *text)
{
	json_object *j = json_tokener_parse(text), *tags, *m, *metrics;
	const Loggregator__V2__Envelope *pb = env->pb;

	cr_assert_not_null(j, "bad JSON in vector: %s", text);
	cr_assert_eq(pb->timestamp, ji64(j, "timestamp"));
	cr_assert_str_eq(pb->source_id, jstr(j, "source_id"));
	cr_assert_str_eq(pb->instance_id, jstr(j, "instance_id"));
	cr_assert_eq(pb->n_deprecated_tags, 0);
	if (json_object_object_get_ex(j, "tags", &tags)) {
		cr_assert_eq(pb->n_tags, (size_t)json_object_object_length(tags));
		json_object_object_foreach(tags, k, val)
		{
			cr_assert_str_eq(
				lgr_env_tag(env, k) ? lgr_env_tag(env, k) : "(none)", json_object_get_string(val));
		}
	} else {
		cr_assert_eq(pb->n_tags, 0);
	}
	if (json_object_object_get_ex(j, "log", &m)) {
		uint8_t payload[512];
		size_t n = b64_decode(jstr(m, "payload"), payload, sizeof(payload));

		cr_assert_eq(lgr_env_type(env), LGR_ENV_LOG);
		cr_assert_eq(pb->log->payload.len, n);
		cr_assert(n == 0 || memcmp(pb->log->payload.data, payload, n) == 0);
		cr_assert_eq(pb->log->type, strcmp(jstr(m, "type"), "ERR") == 0 ? LOGGREGATOR__V2__LOG__TYPE__ERR
										: LOGGREGATOR__V2__LOG__TYPE__OUT);
	} else if (json_object_object_get_ex(j, "counter", &m)) {
		cr_assert_eq(lgr_env_type(env), LGR_ENV_COUNTER);
		cr_assert_str_eq(pb->counter->name, jstr(m, "name"));
		cr_assert_eq(pb->counter->delta, ju64(m, "delta"));
		cr_assert_eq(pb->counter->total, ju64(m, "total"));
	} else if (json_object_object_get_ex(j, "gauge", &m)) {
		cr_assert_eq(lgr_env_type(env), LGR_ENV_GAUGE);
		cr_assert(json_object_object_get_ex(m, "metrics", &metrics));
		cr_assert_eq(pb->gauge->n_metrics, (size_t)json_object_object_length(metrics));
		json_object_object_foreach(metrics, name, gv)
		{
			size_t i;
			bool found = false;
			json_object *value;

			cr_assert(json_object_object_get_ex(gv, "value", &value));
			for (i = 0; i < pb->gauge->n_metrics; i++) {
				const Loggregator__V2__Gauge__MetricsEntry *e = pb->gauge->metrics[i];

				if (strcmp(e->key, name) != 0)
					continue;
				found = true;
				cr_assert_str_eq(e->value->unit, jstr(gv, "unit"));
				cr_assert_eq(e->value->value, json_object_get_double(value));
			}
			cr_assert(found, "metric %s missing", name);
		}
	} else if (json_object_object_get_ex(j, "timer", &m)) {
		cr_assert_eq(lgr_env_type(env), LGR_ENV_TIMER);
		cr_assert_str_eq(pb->timer->name, jstr(m, "name"));
		cr_assert_eq(pb->timer->start, ji64(m, "start"));
		cr_assert_eq(pb->timer->stop, ji64(m, "stop"));
	} else if (json_object_object_get_ex(j, "event", &m)) {
		cr_assert_eq(lgr_env_type(env), LGR_ENV_EVENT);
		cr_assert_str_eq(pb->event->title, jstr(m, "title"));
		cr_assert_str_eq(pb->event->body, jstr(m, "body"));
	} else {
		cr_assert_eq(lgr_env_type(env), LGR_ENV_NONE);
	}
	json_object_put(j);
}

/* Decodes every batch of a vector file, in order, into l. */
static void decode_vector_batches(const struct vector_file *v, struct env_list *l)
{
	size_t i;

	l->stop_at = -1;
	for (i = 0; i < v->n_batch; i++)
		cr_assert_eq(lgr_env_decode_batch(v->batch[i], v->batch_len[i], NULL, collect, l), LGR_OK);
}

/* An envelope with every envelope-level field set, and a message chosen by the caller. */
static struct lgr_env *full_env(void)
{
	struct lgr_env *env = new_env();

	env->pb->timestamp = -1234567890123456789;
	cr_assert_eq(lgr_env_set_source_id(env, "11111111-2222-3333-4444-555555555555"), LGR_OK);
	cr_assert_eq(lgr_env_set_instance_id(env, "3"), LGR_OK);
	cr_assert_eq(lgr_env_set_tag(env, "deployment", "cf"), LGR_OK);
	cr_assert_eq(lgr_env_set_tag(env, "empty", ""), LGR_OK);
	cr_assert_eq(lgr_env_set_dtag_text(env, "origin", "rep"), LGR_OK);
	cr_assert_eq(lgr_env_set_dtag_integer(env, "index", -42), LGR_OK);
	cr_assert_eq(lgr_env_set_dtag_decimal(env, "ratio", 0.1), LGR_OK);
	return env;
}

static void assert_full_env_fields(const struct lgr_env *env)
{
	const Loggregator__V2__Value *v;

	cr_assert_eq(env->pb->timestamp, -1234567890123456789);
	cr_assert_str_eq(env->pb->source_id, "11111111-2222-3333-4444-555555555555");
	cr_assert_str_eq(env->pb->instance_id, "3");
	cr_assert_eq(env->pb->n_tags, 2);
	cr_assert_str_eq(lgr_env_tag(env, "deployment"), "cf");
	cr_assert_str_eq(lgr_env_tag(env, "empty"), "");
	cr_assert_null(lgr_env_tag(env, "origin"), "deprecated tags are not tags");
	cr_assert_eq(env->pb->n_deprecated_tags, 3);
	v = lgr_env_dtag(env, "origin");
	cr_assert(v != NULL && v->data_case == LOGGREGATOR__V2__VALUE__DATA_TEXT);
	cr_assert_str_eq(v->text, "rep");
	v = lgr_env_dtag(env, "index");
	cr_assert(v != NULL && v->data_case == LOGGREGATOR__V2__VALUE__DATA_INTEGER && v->integer == -42);
	v = lgr_env_dtag(env, "ratio");
	cr_assert(v != NULL && v->data_case == LOGGREGATOR__V2__VALUE__DATA_DECIMAL && v->decimal == 0.1);
	cr_assert_null(lgr_env_dtag(env, "deployment"));
}

/* --- round trips of every type -------------------------------------------------------------------------------- */

Test(env_round_trip, log_with_binary_payload_and_err_type_keeps_every_byte)
{
	static const uint8_t payload[] = {'a', 0x00, 'b', 0xff, 0xfe, 0xc3, 0x28, 0x00, 0x80};
	struct lgr_env *env = full_env(), *back;

	cr_assert_eq(lgr_env_set_log(env, payload, sizeof(payload), LOGGREGATOR__V2__LOG__TYPE__ERR), LGR_OK);
	back = round_trip(env);
	assert_full_env_fields(back);
	cr_assert_eq(lgr_env_type(back), LGR_ENV_LOG);
	cr_assert_eq(back->pb->log->type, LOGGREGATOR__V2__LOG__TYPE__ERR);
	cr_assert_eq(back->pb->log->payload.len, sizeof(payload));
	cr_assert_arr_eq(back->pb->log->payload.data, payload, sizeof(payload));
	lgr_env_unref(back);
	lgr_env_unref(env);
}

Test(env_round_trip, log_with_empty_payload_and_out_type)
{
	struct lgr_env *env = new_env(), *back;

	cr_assert_eq(lgr_env_set_log(env, NULL, 0, LOGGREGATOR__V2__LOG__TYPE__OUT), LGR_OK);
	back = round_trip(env);
	cr_assert_eq(lgr_env_type(back), LGR_ENV_LOG);
	cr_assert_eq(back->pb->log->payload.len, 0);
	cr_assert_eq(back->pb->log->type, LOGGREGATOR__V2__LOG__TYPE__OUT);
	lgr_env_unref(back);
	lgr_env_unref(env);
}

Test(env_round_trip, counter_keeps_name_delta_and_total)
{
	struct lgr_env *env = full_env(), *back;

	cr_assert_eq(lgr_env_set_counter(env, "requests", 2, UINT64_MAX), LGR_OK);
	back = round_trip(env);
	assert_full_env_fields(back);
	cr_assert_eq(lgr_env_type(back), LGR_ENV_COUNTER);
	cr_assert_str_eq(back->pb->counter->name, "requests");
	cr_assert_eq(back->pb->counter->delta, 2);
	cr_assert_eq(back->pb->counter->total, UINT64_MAX);
	lgr_env_unref(back);
	lgr_env_unref(env);
}

Test(env_round_trip, gauge_keeps_several_metrics_with_units_and_values)
{
	struct lgr_env *env = full_env(), *back;
	const char *names[] = {"cpu", "memory", "disk", "nan"};
	const char *units[] = {"percentage", "bytes", "bytes", "x"};
	/* -0.0 becomes +0.0: protobuf-c cannot encode a negative zero in a proto3 double. */
	double values[] = {12.5, 1048576.0, -0.0, NAN};
	double expect[] = {12.5, 1048576.0, 0.0, NAN};
	size_t i, j;

	cr_assert_eq(lgr_env_set_gauge(env), LGR_OK);
	for (i = 0; i < 4; i++)
		cr_assert_eq(lgr_env_add_metric(env, names[i], units[i], values[i]), LGR_OK);
	back = round_trip(env);
	assert_full_env_fields(back);
	cr_assert_eq(lgr_env_type(back), LGR_ENV_GAUGE);
	cr_assert_eq(back->pb->gauge->n_metrics, 4);
	for (i = 0; i < 4; i++) {
		const Loggregator__V2__Gauge__MetricsEntry *e = NULL;

		for (j = 0; j < 4; j++)
			if (strcmp(back->pb->gauge->metrics[j]->key, names[i]) == 0)
				e = back->pb->gauge->metrics[j];
		cr_assert_not_null(e, "metric %s", names[i]);
		cr_assert_str_eq(e->value->unit, units[i]);
		cr_assert_eq(memcmp(&e->value->value, &expect[i], sizeof(double)), 0, "metric %s", names[i]);
	}
	lgr_env_unref(back);
	lgr_env_unref(env);
}

Test(env_round_trip, a_negative_zero_gauge_value_from_the_wire_decodes_as_zero_and_stays_stable)
{
	static const uint8_t wire[] = {
		0x32, 0x10, 0x0a, 0x0e, 0x0a, 0x01, 'm', 0x12, 0x09, 0x11, 0, 0, 0, 0, 0, 0, 0, 0x80};
	struct lgr_env *env = NULL, *back;
	const double zero = 0.0;

	cr_assert_eq(lgr_env_decode(wire, sizeof(wire), NULL, &env), LGR_OK);
	cr_assert_eq(env->pb->gauge->n_metrics, 1);
	cr_assert_eq(memcmp(&env->pb->gauge->metrics[0]->value->value, &zero, sizeof(zero)), 0);
	back = round_trip(env);
	lgr_env_unref(back);
	lgr_env_unref(env);
}

Test(env_round_trip, timer_keeps_name_start_and_stop)
{
	struct lgr_env *env = full_env(), *back;

	cr_assert_eq(lgr_env_set_timer(env, "http", 1795216617215279264, 1795216617216779264), LGR_OK);
	back = round_trip(env);
	assert_full_env_fields(back);
	cr_assert_eq(lgr_env_type(back), LGR_ENV_TIMER);
	cr_assert_str_eq(back->pb->timer->name, "http");
	cr_assert_eq(back->pb->timer->start, 1795216617215279264);
	cr_assert_eq(back->pb->timer->stop, 1795216617216779264);
	lgr_env_unref(back);
	lgr_env_unref(env);
}

Test(env_round_trip, event_keeps_title_and_body)
{
	struct lgr_env *env = full_env(), *back;

	cr_assert_eq(lgr_env_set_event(env, "deploy", "v2 rolled out"), LGR_OK);
	back = round_trip(env);
	assert_full_env_fields(back);
	cr_assert_eq(lgr_env_type(back), LGR_ENV_EVENT);
	cr_assert_str_eq(back->pb->event->title, "deploy");
	cr_assert_str_eq(back->pb->event->body, "v2 rolled out");
	lgr_env_unref(back);
	lgr_env_unref(env);
}

Test(env_round_trip, an_empty_envelope_encodes_to_nothing_and_decodes_back)
{
	struct lgr_env *env = new_env(), *back;
	const uint8_t *data;
	size_t len = 99;

	cr_assert_eq(lgr_env_encode(env, &data, &len), LGR_OK);
	cr_assert_eq(len, 0);
	cr_assert_not_null(data);
	back = round_trip(env);
	cr_assert_eq(lgr_env_type(back), LGR_ENV_NONE);
	cr_assert_str_eq(back->pb->source_id, "");
	lgr_env_unref(back);
	lgr_env_unref(env);
}

/* --- readers and setters -------------------------------------------------------------------------------------- */

Test(env_readers, type_names_cover_every_type)
{
	cr_assert_str_eq(lgr_env_type_name(LGR_ENV_NONE), "none");
	cr_assert_str_eq(lgr_env_type_name(LGR_ENV_LOG), "log");
	cr_assert_str_eq(lgr_env_type_name(LGR_ENV_COUNTER), "counter");
	cr_assert_str_eq(lgr_env_type_name(LGR_ENV_GAUGE), "gauge");
	cr_assert_str_eq(lgr_env_type_name(LGR_ENV_TIMER), "timer");
	cr_assert_str_eq(lgr_env_type_name(LGR_ENV_EVENT), "event");
}

Test(env_setters, setting_a_tag_twice_replaces_its_value)
{
	struct lgr_env *env = new_env();

	cr_assert_eq(lgr_env_set_tag(env, "job", "router"), LGR_OK);
	cr_assert_eq(lgr_env_set_tag(env, "ip", "10.0.0.1"), LGR_OK);
	cr_assert_eq(lgr_env_set_tag(env, "job", "agent"), LGR_OK);
	cr_assert_eq(env->pb->n_tags, 2);
	cr_assert_str_eq(lgr_env_tag(env, "job"), "agent");
	cr_assert_str_eq(lgr_env_tag(env, "ip"), "10.0.0.1");
	cr_assert_null(lgr_env_tag(env, "index"));
	lgr_env_unref(env);
}

Test(env_setters, deleting_a_tag_removes_it_and_missing_keys_are_fine)
{
	struct lgr_env *env = new_env();

	cr_assert_eq(lgr_env_set_tag(env, "a", "1"), LGR_OK);
	cr_assert_eq(lgr_env_set_tag(env, "b", "2"), LGR_OK);
	cr_assert_eq(lgr_env_set_tag(env, "c", "3"), LGR_OK);
	cr_assert_eq(lgr_env_del_tag(env, "b"), LGR_OK);
	cr_assert_eq(lgr_env_del_tag(env, "zzz"), LGR_OK);
	cr_assert_eq(env->pb->n_tags, 2);
	cr_assert_null(lgr_env_tag(env, "b"));
	cr_assert_str_eq(lgr_env_tag(env, "a"), "1");
	cr_assert_str_eq(lgr_env_tag(env, "c"), "3");
	lgr_env_unref(env);
}

Test(env_setters, setting_a_deprecated_tag_replaces_its_value_even_of_another_kind)
{
	struct lgr_env *env = new_env();
	const Loggregator__V2__Value *v;

	cr_assert_eq(lgr_env_set_dtag_text(env, "k", "text"), LGR_OK);
	cr_assert_eq(lgr_env_set_dtag_integer(env, "k", 5), LGR_OK);
	cr_assert_eq(env->pb->n_deprecated_tags, 1);
	v = lgr_env_dtag(env, "k");
	cr_assert(v->data_case == LOGGREGATOR__V2__VALUE__DATA_INTEGER && v->integer == 5);
	cr_assert_eq(lgr_env_set_dtag_decimal(env, "k", 2.5), LGR_OK);
	cr_assert_eq(lgr_env_set_dtag_text(env, "k", "again"), LGR_OK);
	cr_assert_eq(env->pb->n_deprecated_tags, 1);
	v = lgr_env_dtag(env, "k");
	cr_assert_eq(v->data_case, LOGGREGATOR__V2__VALUE__DATA_TEXT);
	cr_assert_str_eq(v->text, "again");
	lgr_env_unref(env);
}

Test(env_setters, adding_a_metric_twice_replaces_its_unit_and_value)
{
	struct lgr_env *env = new_env();

	cr_assert_eq(lgr_env_set_gauge(env), LGR_OK);
	cr_assert_eq(lgr_env_add_metric(env, "cpu", "percentage", 1.0), LGR_OK);
	cr_assert_eq(lgr_env_add_metric(env, "mem", "bytes", 2.0), LGR_OK);
	cr_assert_eq(lgr_env_add_metric(env, "cpu", "ratio", 0.5), LGR_OK);
	cr_assert_eq(env->pb->gauge->n_metrics, 2);
	cr_assert_str_eq(env->pb->gauge->metrics[0]->key, "cpu");
	cr_assert_str_eq(env->pb->gauge->metrics[0]->value->unit, "ratio");
	cr_assert_eq(env->pb->gauge->metrics[0]->value->value, 0.5);
	lgr_env_unref(env);
}

Test(env_setters, adding_a_metric_without_a_gauge_makes_one)
{
	struct lgr_env *env = new_env();

	cr_assert_eq(lgr_env_set_log(env, "x", 1, LOGGREGATOR__V2__LOG__TYPE__OUT), LGR_OK);
	cr_assert_eq(lgr_env_add_metric(env, "cpu", "percentage", 1.0), LGR_OK);
	cr_assert_eq(lgr_env_type(env), LGR_ENV_GAUGE);
	cr_assert_eq(env->pb->gauge->n_metrics, 1);
	lgr_env_unref(env);
}

Test(env_setters, setting_a_message_replaces_the_previous_one)
{
	struct lgr_env *env = new_env();

	cr_assert_eq(lgr_env_set_log(env, "hello", 5, LOGGREGATOR__V2__LOG__TYPE__OUT), LGR_OK);
	cr_assert_eq(lgr_env_set_counter(env, "c", 1, 2), LGR_OK);
	cr_assert_eq(lgr_env_type(env), LGR_ENV_COUNTER);
	cr_assert_eq(lgr_env_set_gauge(env), LGR_OK);
	cr_assert_eq(lgr_env_add_metric(env, "m", "u", 1.0), LGR_OK);
	cr_assert_eq(lgr_env_set_timer(env, "t", 1, 2), LGR_OK);
	cr_assert_eq(lgr_env_set_event(env, "e", "b"), LGR_OK);
	cr_assert_eq(lgr_env_type(env), LGR_ENV_EVENT);
	cr_assert_str_eq(env->pb->event->title, "e");
	cr_assert_eq(lgr_env_set_source_id(env, "first"), LGR_OK);
	cr_assert_eq(lgr_env_set_source_id(env, "second"), LGR_OK);
	cr_assert_str_eq(env->pb->source_id, "second");
	lgr_env_unref(env);
}

Test(env_setters, a_setter_after_encode_refreshes_the_cached_encoding)
{
	struct lgr_env *env = new_env(), *back = NULL;
	const uint8_t *data;
	size_t len;

	cr_assert_eq(lgr_env_set_source_id(env, "before"), LGR_OK);
	cr_assert_eq(lgr_env_encode(env, &data, &len), LGR_OK);
	cr_assert_eq(lgr_env_set_source_id(env, "after"), LGR_OK);
	cr_assert_eq(lgr_env_encode(env, &data, &len), LGR_OK);
	cr_assert_eq(lgr_env_decode(data, len, NULL, &back), LGR_OK);
	cr_assert_str_eq(back->pb->source_id, "after");
	lgr_env_unref(back);
	lgr_env_unref(env);
}

/* --- equality ------------------------------------------------------------------------------------------------- */

Test(env_equal, ignores_map_order_but_not_map_content)
{
	struct lgr_env *a = new_env(), *b = new_env();

	cr_assert_eq(lgr_env_set_tag(a, "x", "1"), LGR_OK);
	cr_assert_eq(lgr_env_set_tag(a, "y", "2"), LGR_OK);
	cr_assert_eq(lgr_env_set_tag(b, "y", "2"), LGR_OK);
	cr_assert_eq(lgr_env_set_tag(b, "x", "1"), LGR_OK);
	cr_assert_eq(lgr_env_set_gauge(a), LGR_OK);
	cr_assert_eq(lgr_env_add_metric(a, "m1", "u", 1.0), LGR_OK);
	cr_assert_eq(lgr_env_add_metric(a, "m2", "u", 2.0), LGR_OK);
	cr_assert_eq(lgr_env_set_gauge(b), LGR_OK);
	cr_assert_eq(lgr_env_add_metric(b, "m2", "u", 2.0), LGR_OK);
	cr_assert_eq(lgr_env_add_metric(b, "m1", "u", 1.0), LGR_OK);
	cr_assert(lgr_env_equal(a, b));
	cr_assert_eq(lgr_env_set_tag(b, "z", "3"), LGR_OK);
	cr_assert_not(lgr_env_equal(a, b));
	cr_assert_not(lgr_env_equal(b, a));
	cr_assert_eq(lgr_env_del_tag(b, "z"), LGR_OK);
	cr_assert_eq(lgr_env_set_tag(b, "x", "other"), LGR_OK);
	cr_assert_not(lgr_env_equal(a, b));
	lgr_env_unref(a);
	lgr_env_unref(b);
}

Test(env_equal, compares_doubles_bitwise)
{
	struct lgr_env *a = new_env(), *b = new_env();

	cr_assert_eq(lgr_env_set_dtag_decimal(a, "d", NAN), LGR_OK);
	cr_assert_eq(lgr_env_set_dtag_decimal(b, "d", NAN), LGR_OK);
	cr_assert(lgr_env_equal(a, b));
	cr_assert_eq(lgr_env_set_dtag_decimal(a, "d", 0.0), LGR_OK);
	cr_assert_eq(lgr_env_set_dtag_decimal(b, "d", -0.0), LGR_OK);
	cr_assert_not(lgr_env_equal(a, b));
	lgr_env_unref(a);
	lgr_env_unref(b);
}

Test(env_equal, tells_apart_every_field)
{
	struct lgr_env *base = full_env(), *other;
	int i;

	cr_assert_eq(lgr_env_set_log(base, "abc", 3, LOGGREGATOR__V2__LOG__TYPE__OUT), LGR_OK);
	for (i = 0; i < 10; i++) {
		other = full_env();
		cr_assert_eq(lgr_env_set_log(other, "abc", 3, LOGGREGATOR__V2__LOG__TYPE__OUT), LGR_OK);
		cr_assert(lgr_env_equal(base, other));
		switch (i) {
		case 0: other->pb->timestamp++; break;
		case 1: lgr_env_set_source_id(other, "x"); break;
		case 2: lgr_env_set_instance_id(other, "4"); break;
		case 3: lgr_env_set_tag(other, "deployment", "cf2"); break;
		case 4: lgr_env_set_dtag_integer(other, "index", -43); break;
		case 5: lgr_env_set_dtag_text(other, "index", "-42"); break;
		case 6: lgr_env_set_log(other, "abd", 3, LOGGREGATOR__V2__LOG__TYPE__OUT); break;
		case 7: lgr_env_set_log(other, "abc", 3, LOGGREGATOR__V2__LOG__TYPE__ERR); break;
		case 8: lgr_env_set_log(other, "ab", 2, LOGGREGATOR__V2__LOG__TYPE__OUT); break;
		case 9: lgr_env_set_event(other, "abc", ""); break;
		}
		cr_assert_not(lgr_env_equal(base, other), "change %d", i);
		lgr_env_unref(other);
	}
	lgr_env_unref(base);
}

/* --- the real router's bytes ---------------------------------------------------------------------------------- */

Test(env_vectors, router_batches_of_all_types_decode_to_the_json_content)
{
	struct vector_file v;
	struct env_list l = {.n = 0};
	size_t i;

	vector_load("router-egress-all-types.txt", &v);
	cr_assert_eq(v.n_batch, 2);
	cr_assert_eq(v.n_json, 6);
	decode_vector_batches(&v, &l);
	cr_assert_eq(l.n, v.n_json);
	for (i = 0; i < l.n; i++)
		assert_env_matches_json(l.e[i], v.json[i]);
	env_list_free(&l);
	vector_free(&v);
}

Test(env_vectors, router_batches_carry_the_expected_facts)
{
	static const char boom[] = "boom \xe2\x9c\x93";
	struct vector_file v;
	struct env_list l = {.n = 0};
	const Loggregator__V2__Envelope *pb;
	size_t i;

	vector_load("router-egress-all-types.txt", &v);
	decode_vector_batches(&v, &l);
	cr_assert_eq(l.n, 6);
	for (i = 0; i < l.n; i++) {
		cr_assert_str_eq(l.e[i]->pb->source_id, "app10");
		cr_assert_str_eq(l.e[i]->pb->instance_id, "0");
	}
	pb = l.e[1]->pb;
	cr_assert_str_eq(lgr_env_tag(l.e[1], "k"), "errlog");
	cr_assert_eq(pb->log->type, LOGGREGATOR__V2__LOG__TYPE__ERR);
	cr_assert_eq(pb->log->payload.len, strlen(boom));
	cr_assert_arr_eq(pb->log->payload.data, boom, strlen(boom));
	pb = l.e[2]->pb;
	cr_assert_str_eq(pb->counter->name, "requests");
	cr_assert_eq(pb->counter->delta, 2);
	cr_assert_eq(pb->counter->total, 0);
	pb = l.e[3]->pb;
	cr_assert_eq(pb->gauge->n_metrics, 2);
	for (i = 0; i < 2; i++) {
		const Loggregator__V2__Gauge__MetricsEntry *e = pb->gauge->metrics[i];

		if (strcmp(e->key, "cpu") == 0) {
			cr_assert_str_eq(e->value->unit, "percentage");
			cr_assert_eq(e->value->value, 12.5);
		} else {
			cr_assert_str_eq(e->key, "memory");
			cr_assert_str_eq(e->value->unit, "bytes");
			cr_assert_eq(e->value->value, 1048576.0);
		}
	}
	pb = l.e[4]->pb;
	cr_assert_str_eq(pb->timer->name, "http");
	cr_assert_eq(pb->timer->stop - pb->timer->start, 1500000);
	pb = l.e[5]->pb;
	cr_assert_str_eq(pb->event->title, "deploy");
	cr_assert_str_eq(pb->event->body, "v2 rolled out");
	env_list_free(&l);
	vector_free(&v);
}

Test(env_vectors, agent_batch_carries_the_default_tags)
{
	struct vector_file v;
	struct env_list l = {.n = 0};
	const Loggregator__V2__Envelope *pb;

	vector_load("router-egress-raw-envelopebatch-hex.txt", &v);
	cr_assert_eq(v.n_batch, 1);
	decode_vector_batches(&v, &l);
	cr_assert_eq(l.n, 1);
	pb = l.e[0]->pb;
	cr_assert_eq(lgr_env_type(l.e[0]), LGR_ENV_LOG);
	cr_assert_str_eq(pb->source_id, "app1");
	cr_assert_str_eq(pb->instance_id, "0");
	cr_assert_eq(pb->n_tags, 3);
	cr_assert_str_eq(lgr_env_tag(l.e[0], "source_type"), "APP/PROC/WEB");
	cr_assert_str_eq(lgr_env_tag(l.e[0], "deployment"), "test");
	cr_assert_str_eq(lgr_env_tag(l.e[0], "job"), "peer");
	cr_assert_eq(pb->log->payload.len, 7);
	cr_assert_arr_eq(pb->log->payload.data, "hello 0", 7);
	env_list_free(&l);
	vector_free(&v);
}

Test(env_vectors, reencoded_router_batches_decode_to_equal_envelopes)
{
	struct vector_file v;
	struct env_list l = {.n = 0}, again = {.n = 0, .stop_at = -1};
	uint8_t *buf = NULL;
	size_t len = 0, i;

	vector_load("router-egress-all-types.txt", &v);
	decode_vector_batches(&v, &l);
	cr_assert_eq(lgr_env_encode_batch(l.e, l.n, &buf, &len), LGR_OK);
	cr_assert_eq(lgr_env_decode_batch(buf, len, NULL, collect, &again), LGR_OK);
	cr_assert_eq(again.n, l.n);
	for (i = 0; i < l.n; i++)
		cr_assert(lgr_env_equal(l.e[i], again.e[i]), "envelope %zu", i);
	/* The same content from Go and from protobuf-c has the same size (no byte comparison: map order differs). */
	cr_assert_eq(len, v.batch_len[0] + v.batch_len[1]);
	free(buf);
	env_list_free(&again);
	env_list_free(&l);
	vector_free(&v);
}

/* --- decode limits and malformed input ------------------------------------------------------------------------ */

/* Encodes an envelope with n tags and m metrics into a malloc'd buffer. */
static uint8_t *encode_with(size_t n_tags, size_t n_dtags, size_t n_metrics, size_t *len)
{
	struct lgr_env *env = new_env();
	const uint8_t *data;
	uint8_t *copy;
	size_t i;
	char k[32];

	for (i = 0; i < n_tags; i++) {
		snprintf(k, sizeof(k), "t%zu", i);
		cr_assert_eq(lgr_env_set_tag(env, k, "v"), LGR_OK);
	}
	for (i = 0; i < n_dtags; i++) {
		snprintf(k, sizeof(k), "d%zu", i);
		cr_assert_eq(lgr_env_set_dtag_integer(env, k, (int64_t)i), LGR_OK);
	}
	if (n_metrics > 0)
		cr_assert_eq(lgr_env_set_gauge(env), LGR_OK);
	for (i = 0; i < n_metrics; i++) {
		snprintf(k, sizeof(k), "m%zu", i);
		cr_assert_eq(lgr_env_add_metric(env, k, "u", (double)i), LGR_OK);
	}
	cr_assert_eq(lgr_env_encode(env, &data, len), LGR_OK);
	copy = malloc(*len + 1);
	cr_assert_not_null(copy);
	memcpy(copy, data, *len);
	lgr_env_unref(env);
	return copy;
}

Test(env_decode, an_oversized_message_is_too_big)
{
	struct lgr_limits lim = {.max_message = 64};
	struct lgr_env *env = (struct lgr_env *)1;
	size_t len;
	uint8_t *buf = encode_with(10, 0, 0, &len);

	cr_assert_gt(len, 64);
	cr_assert_eq(lgr_env_decode(buf, len, &lim, &env), LGR_ETOOBIG);
	cr_assert_null(env);
	lim.max_message = len;
	cr_assert_eq(lgr_env_decode(buf, len, &lim, &env), LGR_OK);
	lgr_env_unref(env);
	free(buf);
}

Test(env_decode, too_many_tags_hit_the_limit)
{
	struct lgr_limits lim = {.max_tags = 5};
	struct lgr_env *env = NULL;
	size_t len;
	uint8_t *buf = encode_with(3, 3, 0, &len);

	cr_assert_eq(lgr_env_decode(buf, len, &lim, &env), LGR_ELIMIT);
	cr_assert_null(env);
	lim.max_tags = 6;
	cr_assert_eq(lgr_env_decode(buf, len, &lim, &env), LGR_OK);
	cr_assert_eq(env->pb->n_tags + env->pb->n_deprecated_tags, 6);
	lgr_env_unref(env);
	free(buf);
}

Test(env_decode, too_many_metrics_hit_the_limit)
{
	struct lgr_limits lim = {.max_metrics = 7};
	struct lgr_env *env = NULL;
	size_t len;
	uint8_t *buf = encode_with(0, 0, 8, &len);

	cr_assert_eq(lgr_env_decode(buf, len, &lim, &env), LGR_ELIMIT);
	cr_assert_null(env);
	lim.max_metrics = 8;
	cr_assert_eq(lgr_env_decode(buf, len, &lim, &env), LGR_OK);
	cr_assert_eq(env->pb->gauge->n_metrics, 8);
	lgr_env_unref(env);
	free(buf);
}

Test(env_decode, deep_nesting_hits_the_limit)
{
	struct lgr_limits lim = {.max_depth = 2};
	struct lgr_env *env = NULL;
	size_t len;
	uint8_t *buf = encode_with(0, 0, 1, &len);

	cr_assert_eq(lgr_env_decode(buf, len, &lim, &env), LGR_ELIMIT);
	cr_assert_null(env);
	lim.max_depth = 3;
	cr_assert_eq(lgr_env_decode(buf, len, &lim, &env), LGR_OK);
	lgr_env_unref(env);
	free(buf);
}

Test(env_decode, malformed_bytes_are_decode_errors)
{
	static const struct {
		const char *what;
		uint8_t b[12];
		size_t n;
	} cases[] = {
		{"truncated varint", {0x08, 0x80, 0x80}, 3},
		{"truncated key", {0x80}, 1},
		{"length past the end", {0x12, 0x05, 'a', 'b'}, 4},
		{"truncated nested length", {0x4a, 0x02, 0x0a, 0x05}, 4},
		{"group wire type", {0x0b, 0x0c}, 2},
		{"wire type 6", {0x0e, 0x00}, 2},
		{"wire type 7", {0x0f, 0x00}, 2},
		{"timestamp as bytes", {0x0a, 0x00}, 2},
		{"truncated gauge value double", {0x32, 0x08, 0x0a, 0x06, 0x12, 0x04, 0x11, 1, 2, 3}, 10},
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct lgr_env *env = (struct lgr_env *)1;

		cr_assert_eq(lgr_env_decode(cases[i].b, cases[i].n, NULL, &env), LGR_EDECODE, "%s", cases[i].what);
		cr_assert_null(env, "%s", cases[i].what);
	}
}

Test(env_decode, every_truncation_of_a_real_envelope_fails_cleanly_or_decodes)
{
	struct vector_file v;
	size_t cut, len;
	const uint8_t *env_bytes;

	vector_load("router-egress-all-types.txt", &v);
	/* The gauge envelope of the second batch, found by walking its records. */
	{
		struct lgr_pb_field f;
		size_t pos = 0, k = 0;

		do {
			cr_assert_eq(lgr_pb_field_next(v.batch[1], v.batch_len[1], &pos, &f), LGR_OK);
		} while (k++ < 2);
		env_bytes = f.data;
		len = f.len;
	}
	for (cut = 0; cut <= len; cut++) {
		struct lgr_env *env = NULL;
		int rc = lgr_env_decode(env_bytes, cut, NULL, &env);

		cr_assert(rc == LGR_OK || rc == LGR_EDECODE, "cut %zu: %d", cut, rc);
		cr_assert_eq(rc == LGR_OK, env != NULL);
		if (cut == len)
			cr_assert_eq(lgr_env_type(env), LGR_ENV_GAUGE);
		lgr_env_unref(env);
	}
	vector_free(&v);
}

Test(env_decode, unknown_fields_are_accepted)
{
	static const uint8_t bytes[] = {0x12, 0x01, 'a', 0xa8, 0x06, 0x01, 0xb2, 0x06, 0x02, 'z', 'z'};
	struct lgr_env *env = NULL;

	cr_assert_eq(lgr_env_decode(bytes, sizeof(bytes), NULL, &env), LGR_OK);
	cr_assert_str_eq(env->pb->source_id, "a");
	lgr_env_unref(env);
}

/* --- batches -------------------------------------------------------------------------------------------------- */

static void make_batch(size_t n, uint8_t **buf, size_t *len)
{
	struct lgr_env *envs[16];
	size_t i;

	cr_assert_leq(n, 16);
	for (i = 0; i < n; i++) {
		envs[i] = new_env();
		envs[i]->pb->timestamp = (int64_t)i + 1;
		cr_assert_eq(lgr_env_set_counter(envs[i], "c", i, 0), LGR_OK);
	}
	cr_assert_eq(lgr_env_encode_batch(envs, n, buf, len), LGR_OK);
	for (i = 0; i < n; i++)
		lgr_env_unref(envs[i]);
}

Test(env_batch, hands_every_envelope_to_the_sink_in_order)
{
	struct env_list l = {.n = 0, .stop_at = -1};
	uint8_t *buf;
	size_t len, i;

	make_batch(5, &buf, &len);
	cr_assert_eq(lgr_env_decode_batch(buf, len, NULL, collect, &l), LGR_OK);
	cr_assert_eq(l.n, 5);
	for (i = 0; i < 5; i++)
		cr_assert_eq(l.e[i]->pb->timestamp, (int64_t)i + 1);
	env_list_free(&l);
	free(buf);
}

Test(env_batch, too_many_envelopes_hit_the_limit_and_none_is_handed_over)
{
	struct env_list l = {.n = 0, .stop_at = -1};
	struct lgr_limits lim = {.max_batch = 4};
	uint8_t *buf;
	size_t len;

	make_batch(5, &buf, &len);
	cr_assert_eq(lgr_env_decode_batch(buf, len, &lim, collect, &l), LGR_ELIMIT);
	cr_assert_eq(l.n, 0);
	lim.max_batch = 5;
	cr_assert_eq(lgr_env_decode_batch(buf, len, &lim, collect, &l), LGR_OK);
	cr_assert_eq(l.n, 5);
	env_list_free(&l);
	free(buf);
}

Test(env_batch, a_malformed_last_envelope_means_the_sink_sees_none)
{
	struct env_list l = {.n = 0, .stop_at = -1};
	uint8_t *buf, *bad;
	size_t len;
	const uint8_t tail[] = {0x0a, 0x03, 0x08, 0x80, 0x80}; /* a record whose timestamp varint is cut */

	make_batch(3, &buf, &len);
	bad = malloc(len + sizeof(tail));
	cr_assert_not_null(bad);
	memcpy(bad, buf, len);
	memcpy(bad + len, tail, sizeof(tail));
	cr_assert_eq(lgr_env_decode_batch(bad, len + sizeof(tail), NULL, collect, &l), LGR_EDECODE);
	cr_assert_eq(l.n, 0);
	free(bad);
	free(buf);
}

Test(env_batch, a_sink_error_stops_the_walk_and_frees_the_rest)
{
	struct env_list l = {.n = 0, .stop_at = 1};
	uint8_t *buf;
	size_t len;

	make_batch(4, &buf, &len);
	cr_assert_eq(lgr_env_decode_batch(buf, len, NULL, collect, &l), 7);
	cr_assert_eq(l.n, 2);
	env_list_free(&l);
	free(buf);
}

Test(env_batch, unknown_batch_fields_are_skipped_and_empty_batches_are_fine)
{
	struct env_list l = {.n = 0, .stop_at = -1};
	const uint8_t bytes[] = {0x12, 0x02, 'x', 'y', 0x0a, 0x00, 0x18, 0x05, 0x0a, 0x02, 0x08, 0x07};
	uint8_t *empty = NULL;
	size_t len = 1;

	cr_assert_eq(lgr_env_decode_batch(bytes, sizeof(bytes), NULL, collect, &l), LGR_OK);
	cr_assert_eq(l.n, 2);
	cr_assert_eq(lgr_env_type(l.e[0]), LGR_ENV_NONE);
	cr_assert_eq(l.e[1]->pb->timestamp, 7);
	env_list_free(&l);
	cr_assert_eq(lgr_env_encode_batch(NULL, 0, &empty, &len), LGR_OK);
	cr_assert_eq(len, 0);
	cr_assert_eq(lgr_env_decode_batch(empty, len, NULL, collect, &l), LGR_OK);
	cr_assert_eq(l.n, 0);
	free(empty);
}

Test(env_batch, batch_encoding_is_each_cached_encoding_as_a_field_one_record)
{
	struct lgr_env *envs[2] = {new_env(), new_env()};
	const uint8_t *d0, *d1;
	size_t l0, l1, len;
	uint8_t *buf;
	char big[300];

	memset(big, 'p', sizeof(big));
	cr_assert_eq(lgr_env_set_log(envs[0], big, sizeof(big), LOGGREGATOR__V2__LOG__TYPE__OUT), LGR_OK);
	cr_assert_eq(lgr_env_set_source_id(envs[1], "s"), LGR_OK);
	cr_assert_eq(lgr_env_encode_batch(envs, 2, &buf, &len), LGR_OK);
	cr_assert_eq(lgr_env_encode(envs[0], &d0, &l0), LGR_OK);
	cr_assert_eq(lgr_env_encode(envs[1], &d1, &l1), LGR_OK);
	cr_assert_gt(l0, 127, "the length needs a two-byte varint");
	cr_assert_eq(len, 1 + 2 + l0 + 1 + 1 + l1);
	cr_assert_eq(buf[0], 0x0a);
	cr_assert_eq(buf[1], (uint8_t)(l0 | 0x80));
	cr_assert_eq(buf[2], (uint8_t)(l0 >> 7));
	cr_assert_arr_eq(buf + 3, d0, l0);
	cr_assert_eq(buf[3 + l0], 0x0a);
	cr_assert_eq(buf[4 + l0], l1);
	cr_assert_arr_eq(buf + 5 + l0, d1, l1);
	free(buf);
	lgr_env_unref(envs[0]);
	lgr_env_unref(envs[1]);
}

/* --- sharing: references and the encoding cache --------------------------------------------------------------- */

Test(env_refs, each_reference_keeps_the_envelope_alive_until_the_last_unref)
{
	struct lgr_env *env = new_env();

	cr_assert_eq(lgr_env_set_source_id(env, "shared"), LGR_OK);
	cr_assert_eq(lgr_env_ref(env), env);
	cr_assert_eq(lgr_env_ref(env), env);
	cr_assert_eq(env->refs, 3);
	lgr_env_unref(env);
	lgr_env_unref(env);
	/* Still readable (valgrind would report a use after free otherwise). */
	cr_assert_eq(env->refs, 1);
	cr_assert_str_eq(env->pb->source_id, "shared");
	lgr_env_unref(env);
	lgr_env_unref(NULL);
}

Test(env_refs, take_wraps_a_hand_built_message_and_null_is_refused)
{
	Loggregator__V2__Envelope *pb = malloc(sizeof(*pb));
	struct lgr_env *env;

	cr_assert_not_null(pb);
	loggregator__v2__envelope__init(pb);
	pb->timestamp = 5;
	env = lgr_env_take(pb);
	cr_assert_not_null(env);
	cr_assert_eq(env->pb, pb);
	cr_assert_eq(env->refs, 1);
	lgr_env_unref(env);
	cr_assert_null(lgr_env_take(NULL));
}

Test(env_cache, encoding_twice_returns_the_same_bytes)
{
	struct lgr_env *env = full_env();
	const uint8_t *a, *b;
	size_t la, lb;

	cr_assert_eq(lgr_env_encode(env, &a, &la), LGR_OK);
	cr_assert_eq(lgr_env_encode(env, &b, &lb), LGR_OK);
	cr_assert_eq(a, b);
	cr_assert_eq(la, lb);
	cr_assert_eq(la, loggregator__v2__envelope__get_packed_size(env->pb));
	lgr_env_unref(env);
}

#define RACERS 8

struct race {
	struct lgr_env *env;
	pthread_barrier_t *start;
	const uint8_t *data;
	size_t len;
	int rc;
};

static void *race_encode(void *arg)
{
	struct race *r = arg;

	pthread_barrier_wait(r->start);
	r->rc = lgr_env_encode(r->env, &r->data, &r->len);
	return NULL;
}

Test(env_cache, concurrent_encoders_all_get_the_same_pointer)
{
	int round, i;

	for (round = 0; round < 50; round++) {
		pthread_barrier_t start;
		pthread_t t[RACERS];
		struct race r[RACERS];
		struct lgr_env *env = full_env();

		cr_assert_eq(lgr_env_set_log(env, "race", 4, LOGGREGATOR__V2__LOG__TYPE__OUT), LGR_OK);
		cr_assert_eq(pthread_barrier_init(&start, NULL, RACERS), 0);
		for (i = 0; i < RACERS; i++) {
			r[i] = (struct race){.env = lgr_env_ref(env), .start = &start};
			cr_assert_eq(pthread_create(&t[i], NULL, race_encode, &r[i]), 0);
		}
		for (i = 0; i < RACERS; i++)
			cr_assert_eq(pthread_join(t[i], NULL), 0);
		for (i = 0; i < RACERS; i++) {
			cr_assert_eq(r[i].rc, LGR_OK);
			cr_assert_eq(r[i].data, r[0].data, "round %d racer %d", round, i);
			cr_assert_eq(r[i].len, r[0].len);
			lgr_env_unref(r[i].env);
		}
		pthread_barrier_destroy(&start);
		lgr_env_unref(env);
	}
}

/* --- scratch decoding ----------------------------------------------------------------------------------------- */

Test(env_scratch, a_view_equals_the_envelope_decoded_on_its_own)
{
	struct lgr_env *env = full_env(), *alone;
	struct lgr_env_scratch *s;
	const struct lgr_env *view;
	const uint8_t *data;
	size_t len;

	cr_assert_eq(lgr_env_set_log(env, "a\0b", 3, LOGGREGATOR__V2__LOG__TYPE__ERR), LGR_OK);
	cr_assert_eq(lgr_env_encode(env, &data, &len), LGR_OK);
	cr_assert_eq(lgr_env_scratch_new(&s), LGR_OK);
	cr_assert_eq(lgr_env_scratch_unpack(s, data, len, &view), LGR_OK);
	cr_assert_eq(lgr_env_unpack(data, len, &alone), LGR_OK);
	cr_assert(lgr_env_equal(view, alone));
	cr_assert(lgr_env_equal(view, env));
	assert_full_env_fields(view);
	lgr_env_unref(alone);
	lgr_env_unref(env);
	lgr_env_scratch_free(s);
}

/* Envelopes larger than the first block take extra memory once, then the block grows; small ones after big ones
 * still decode right; ASan and valgrind see every byte freed. */
Test(env_scratch, envelopes_of_any_size_decode_one_after_another)
{
	static const size_t tags[] = {0, 3, 500, 2, 5000, 1, 5000, 0};
	struct lgr_env_scratch *s;
	const struct lgr_env *view;
	uint8_t *wire;
	size_t len, i;
	char k[32];

	cr_assert_eq(lgr_env_scratch_new(&s), LGR_OK);
	for (i = 0; i < sizeof(tags) / sizeof(tags[0]); i++) {
		wire = encode_with(tags[i], tags[i] / 2, tags[i] / 3, &len);
		cr_assert_eq(lgr_env_scratch_unpack(s, wire, len, &view), LGR_OK);
		cr_assert_eq(view->pb->n_tags, tags[i]);
		cr_assert_eq(view->pb->n_deprecated_tags, tags[i] / 2);
		if (tags[i] > 0) {
			snprintf(k, sizeof(k), "t%zu", tags[i] - 1);
			cr_assert_str_eq(lgr_env_tag(view, k), "v");
		}
		free(wire);
	}
	lgr_env_scratch_free(s);
}

Test(env_scratch, unchecked_garbage_is_refused_and_the_scratch_stays_usable)
{
	static const uint8_t garbage[] = {0x0a, 0x7f, 0x01};
	struct lgr_env_scratch *s;
	const struct lgr_env *view = (const void *)1;
	uint8_t *wire;
	size_t len;

	cr_assert_eq(lgr_env_scratch_new(&s), LGR_OK);
	cr_assert_eq(lgr_env_scratch_unpack(s, garbage, sizeof(garbage), &view), LGR_EDECODE);
	cr_assert_null(view);
	wire = encode_with(2, 0, 0, &len);
	cr_assert_eq(lgr_env_scratch_unpack(s, wire, len, &view), LGR_OK);
	cr_assert_eq(view->pb->n_tags, 2);
	free(wire);
	lgr_env_scratch_free(s);
	lgr_env_scratch_free(NULL);
}
