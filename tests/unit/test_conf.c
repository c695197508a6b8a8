/*
 * test_conf.c: the configuration table: defaults, every type's parser and bounds, arrays, lookups in any case,
 * required and cross-field checks, and messages that name the parameter.
 */
#include <criterion/criterion.h>

#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "lgr_conf.h"

enum proto { PROTO_GRPC, PROTO_UDP, PROTO_SUBSCRIBE };

struct sample {
	char *address;
	char *cacert;
	bool tls;
	long long streams;
	size_t max_message;
	long long flush_ms;
	int port;
	int gw_port;
	int protocol;
	struct lgr_conf_strv routers;
	struct lgr_conf_strv tags;
	struct lgr_conf_strv selectors;
	char *sink;
	struct lgr_conf_seen seen;
};

static const char *const protocols[] = {"grpc", "udp", "subscribe", NULL};
static const char *const kinds[] = {"log", "counter", "gauge", "timer", "event", NULL};

static int sample_check(const struct lgr_conf_table *t, void *obj, char *err, size_t errlen)
{
	struct sample *s = obj;
	int rc;

	if (s->tls) {
		rc = lgr_conf_require(t, obj, "tls.cacert", "when tls is on", err, errlen);
		if (rc != LGR_OK)
			return rc;
	}
	if (s->protocol != PROTO_SUBSCRIBE) {
		rc = lgr_conf_forbid(t, obj, "routers", "with protocol=\"subscribe\"", err, errlen);
		if (rc != LGR_OK)
			return rc;
	}
	if (s->port == -1)
		s->port = s->protocol == PROTO_UDP ? 3457 : 3458;
	return LGR_OK;
}

static const struct lgr_conf_param sample_params[] = {
	{.name = "address", .type = LGR_CONF_STRING, .def = "127.0.0.1", .offset = offsetof(struct sample, address)},
	{.name = "tls.cacert", .type = LGR_CONF_STRING, .offset = offsetof(struct sample, cacert)},
	{.name = "tls", .type = LGR_CONF_BOOL, .def = "on", .offset = offsetof(struct sample, tls)},
	{.name = "streams",
		.type = LGR_CONF_INT,
		.def = "5",
		.offset = offsetof(struct sample, streams),
		.min = 1,
		.max = 64},
	{.name = "maxMessageSize",
		.type = LGR_CONF_SIZE,
		.def = "10m",
		.offset = offsetof(struct sample, max_message),
		.min = 1024,
		.max = 1024LL * 1024 * 1024},
	{.name = "batch.flushInterval",
		.type = LGR_CONF_DURATION,
		.def = "100",
		.offset = offsetof(struct sample, flush_ms),
		.min = 1,
		.max = 3600000},
	{.name = "port", .type = LGR_CONF_PORT, .offset = offsetof(struct sample, port)},
	{.name = "gateway.port", .type = LGR_CONF_PORT, .def = "8080", .offset = offsetof(struct sample, gw_port)},
	{.name = "protocol",
		.type = LGR_CONF_ENUM,
		.def = "grpc",
		.offset = offsetof(struct sample, protocol),
		.words = protocols},
	{.name = "routers",
		.type = LGR_CONF_ARRAY,
		.offset = offsetof(struct sample, routers),
		.check = lgr_conf_check_hostport},
	{.name = "defaultTags",
		.type = LGR_CONF_ARRAY,
		.def = "deployment:cf, job:router",
		.offset = offsetof(struct sample, tags),
		.check = lgr_conf_check_tag},
	{.name = "selectors", .type = LGR_CONF_ARRAY, .offset = offsetof(struct sample, selectors), .words = kinds},
	{.name = "sink", .type = LGR_CONF_STRING, .offset = offsetof(struct sample, sink), .flags = LGR_CONF_REQUIRED},
};

static const struct lgr_conf_table sample_table = {
	.name = "sample",
	.params = sample_params,
	.nparams = sizeof(sample_params) / sizeof(sample_params[0]),
	.seen_offset = offsetof(struct sample, seen),
	.check = sample_check,
};

static struct sample s;
static char err[512];

static void setup(void)
{
	memset(&s, 0, sizeof(s));
	err[0] = '\0';
	cr_assert_eq(lgr_conf_defaults(&sample_table, &s, err, sizeof(err)), LGR_OK, "%s", err);
}

static void teardown(void)
{
	lgr_conf_free(&sample_table, &s);
}

static int set(const char *name, const char *value)
{
	err[0] = '\0';
	return lgr_conf_set(&sample_table, &s, name, value, err, sizeof(err));
}

TestSuite(conf, .init = setup, .fini = teardown);

Test(conf, defaults_are_parsed_like_operator_values)
{
	cr_assert_str_eq(s.address, "127.0.0.1");
	cr_assert_null(s.cacert);
	cr_assert(s.tls);
	cr_assert_eq(s.streams, 5);
	cr_assert_eq(s.max_message, 10u * 1024 * 1024);
	cr_assert_eq(s.flush_ms, 100);
	cr_assert_eq(s.gw_port, 8080);
	cr_assert_eq(s.protocol, PROTO_GRPC);
	cr_assert_eq(s.tags.n, 2);
	cr_assert_str_eq(s.tags.v[0], "deployment:cf");
	cr_assert_str_eq(s.tags.v[1], "job:router");
	cr_assert_eq(s.routers.n, 0);
	cr_assert_null(s.routers.v);
}

Test(conf, a_port_without_default_is_minus_one_until_set)
{
	cr_assert_eq(s.port, -1);
	cr_assert_eq(set("port", "0"), LGR_OK);
	cr_assert_eq(s.port, 0);
}

Test(conf, defaults_do_not_count_as_given)
{
	cr_assert_not(lgr_conf_is_set(&sample_table, &s, "address"));
	cr_assert_eq(set("address", "0.0.0.0"), LGR_OK);
	cr_assert(lgr_conf_is_set(&sample_table, &s, "address"));
	cr_assert_not(lgr_conf_is_set(&sample_table, &s, "no.such"));
}

Test(conf, names_are_matched_in_any_case)
{
	cr_assert_eq(lgr_conf_find(&sample_table, "MAXMESSAGESIZE"), &sample_params[4]);
	cr_assert_eq(lgr_conf_find(&sample_table, "batch.flushinterval"), &sample_params[5]);
	cr_assert_null(lgr_conf_find(&sample_table, "maxMessage"));
	cr_assert_eq(set("DefaultTAGS", "a:b"), LGR_OK);
	cr_assert_eq(s.tags.n, 1);
	cr_assert(lgr_conf_is_set(&sample_table, &s, "defaulttags"));
}

Test(conf, an_unknown_name_is_rejected_by_name)
{
	cr_assert_eq(set("bufer.size", "10"), LGR_EINVAL);
	cr_assert_not_null(strstr(err, "sample: "), "%s", err);
	cr_assert_not_null(strstr(err, "unknown parameter 'bufer.size'"), "%s", err);
}

Test(conf, booleans_accept_the_usual_words_in_any_case)
{
	static const char *const off[] = {"off", "OFF", "no", "No", "false", "FALSE", "0"};
	static const char *const on[] = {"on", "On", "yes", "YES", "true", "True", "1"};
	size_t i;

	for (i = 0; i < sizeof(off) / sizeof(off[0]); i++) {
		s.tls = true;
		cr_assert_eq(set("tls", off[i]), LGR_OK, "%s: %s", off[i], err);
		cr_assert_not(s.tls, "%s", off[i]);
	}
	for (i = 0; i < sizeof(on) / sizeof(on[0]); i++) {
		s.tls = false;
		cr_assert_eq(set("tls", on[i]), LGR_OK, "%s: %s", on[i], err);
		cr_assert(s.tls, "%s", on[i]);
	}
}

Test(conf, a_bad_boolean_names_the_parameter_and_the_value)
{
	s.tls = false;
	cr_assert_eq(set("tls", "maybe"), LGR_EINVAL);
	cr_assert_not(s.tls);
	cr_assert_str_eq(err, "sample: parameter 'tls': \"maybe\" is not a boolean (on/off, yes/no, true/false, 1/0)");
	cr_assert_eq(set("tls", ""), LGR_EINVAL);
	cr_assert_eq(set("tls", "onn"), LGR_EINVAL);
}

Test(conf, integers_are_checked_against_their_bounds)
{
	cr_assert_eq(set("streams", "1"), LGR_OK);
	cr_assert_eq(s.streams, 1);
	cr_assert_eq(set("streams", "64"), LGR_OK);
	cr_assert_eq(s.streams, 64);
	cr_assert_eq(set("streams", "65"), LGR_EINVAL);
	cr_assert_eq(s.streams, 64, "a rejected value leaves the field alone");
	cr_assert_str_eq(err, "sample: parameter 'streams': \"65\" is out of range (1..64)");
	cr_assert_eq(set("streams", "0"), LGR_EINVAL);
	cr_assert_eq(set("streams", "-3"), LGR_EINVAL);
	cr_assert_not_null(strstr(err, "out of range (1..64)"), "%s", err);
}

Test(conf, integers_reject_words_blanks_and_overflow)
{
	static const char *const bad[] = {"lots", "", "5x", " 5", "5 ", "0x10", "1.5", "+", "99999999999999999999"};
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_assert_eq(set("streams", bad[i]), LGR_EINVAL, "'%s' accepted", bad[i]);
		cr_assert_not_null(strstr(err, "parameter 'streams'"), "%s", err);
	}
	cr_assert_eq(s.streams, 5);
	cr_assert_eq(set("streams", "lots"), LGR_EINVAL);
	cr_assert_str_eq(err, "sample: parameter 'streams': \"lots\" is not an integer");
}

Test(conf, sizes_accept_k_m_g_suffixes_as_powers_of_1024)
{
	cr_assert_eq(set("maxMessageSize", "4096"), LGR_OK);
	cr_assert_eq(s.max_message, 4096);
	cr_assert_eq(set("maxMessageSize", "64k"), LGR_OK);
	cr_assert_eq(s.max_message, 64u * 1024);
	cr_assert_eq(set("maxMessageSize", "3K"), LGR_OK);
	cr_assert_eq(s.max_message, 3u * 1024);
	cr_assert_eq(set("maxMessageSize", "2m"), LGR_OK);
	cr_assert_eq(s.max_message, 2u * 1024 * 1024);
	cr_assert_eq(set("maxMessageSize", "1G"), LGR_OK);
	cr_assert_eq(s.max_message, 1024u * 1024 * 1024);
}

Test(conf, sizes_reject_unknown_suffixes_and_values_out_of_bounds)
{
	static const char *const bad[] = {"lots", "10mb", "10t", "k", "-1k", "1.5m", "", "10 m"};
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_assert_eq(set("maxMessageSize", bad[i]), LGR_EINVAL, "'%s' accepted", bad[i]);
		cr_assert_not_null(strstr(err, "is not a size"), "%s: %s", bad[i], err);
	}
	cr_assert_eq(set("maxMessageSize", "1023"), LGR_EINVAL);
	cr_assert_not_null(strstr(err, "out of range (1024..1073741824)"), "%s", err);
	cr_assert_eq(set("maxMessageSize", "2g"), LGR_EINVAL);
	cr_assert_eq(set("maxMessageSize", "99999999999999999999g"), LGR_EINVAL);
	cr_assert_eq(set("maxMessageSize", "17179869184g"), LGR_EINVAL, "overflows size_t");
	cr_assert_eq(s.max_message, 10u * 1024 * 1024);
}

Test(conf, durations_are_milliseconds_with_optional_units)
{
	cr_assert_eq(set("batch.flushInterval", "250"), LGR_OK);
	cr_assert_eq(s.flush_ms, 250);
	cr_assert_eq(set("batch.flushInterval", "250ms"), LGR_OK);
	cr_assert_eq(s.flush_ms, 250);
	cr_assert_eq(set("batch.flushInterval", "2s"), LGR_OK);
	cr_assert_eq(s.flush_ms, 2000);
	cr_assert_eq(set("batch.flushInterval", "3m"), LGR_OK);
	cr_assert_eq(s.flush_ms, 180000);
	cr_assert_eq(set("batch.flushInterval", "1h"), LGR_OK);
	cr_assert_eq(s.flush_ms, 3600000);
	cr_assert_eq(set("batch.flushInterval", "2h"), LGR_EINVAL);
	cr_assert_not_null(strstr(err, "out of range (1..3600000)"), "%s", err);
	cr_assert_eq(set("batch.flushInterval", "soon"), LGR_EINVAL);
	cr_assert_not_null(strstr(err, "parameter 'batch.flushInterval': \"soon\" is not a duration"), "%s", err);
	cr_assert_eq(set("batch.flushInterval", "5d"), LGR_EINVAL);
	cr_assert_eq(s.flush_ms, 3600000);
}

Test(conf, ports_are_0_to_65535)
{
	cr_assert_eq(set("port", "65535"), LGR_OK);
	cr_assert_eq(s.port, 65535);
	cr_assert_eq(set("port", "70000"), LGR_EINVAL);
	cr_assert_str_eq(err, "sample: parameter 'port': \"70000\" is not a port (0..65535)");
	cr_assert_eq(set("port", "-1"), LGR_EINVAL);
	cr_assert_eq(set("port", "http"), LGR_EINVAL);
	cr_assert_eq(s.port, 65535);
}

Test(conf, enums_store_the_index_of_the_word_and_list_the_words_on_error)
{
	cr_assert_eq(set("protocol", "UDP"), LGR_OK);
	cr_assert_eq(s.protocol, PROTO_UDP);
	cr_assert_eq(set("protocol", "subscribe"), LGR_OK);
	cr_assert_eq(s.protocol, PROTO_SUBSCRIBE);
	cr_assert_eq(set("protocol", "king"), LGR_EINVAL);
	cr_assert_str_eq(err, "sample: parameter 'protocol': \"king\" is not one of: grpc, udp, subscribe");
	cr_assert_eq(s.protocol, PROTO_SUBSCRIBE);
}

Test(conf, arrays_from_text_are_comma_separated_and_trimmed)
{
	cr_assert_eq(set("routers", " r1:8082 ,r2.example:8082,[::1]:8082 "), LGR_OK, "%s", err);
	cr_assert_eq(s.routers.n, 3);
	cr_assert_str_eq(s.routers.v[0], "r1:8082");
	cr_assert_str_eq(s.routers.v[1], "r2.example:8082");
	cr_assert_str_eq(s.routers.v[2], "[::1]:8082");
	cr_assert_eq(set("routers", ""), LGR_OK);
	cr_assert_eq(s.routers.n, 0);
	cr_assert_eq(set("routers", "a:1,,b:2"), LGR_EINVAL);
	cr_assert_not_null(strstr(err, "parameter 'routers': item 2 is empty"), "%s", err);
}

Test(conf, arrays_from_items_keep_commas_inside_items)
{
	const char *items[] = {"env:prod,eu", "team:a"};

	cr_assert_eq(lgr_conf_set_array(&sample_table, &s, "defaultTags", items, 2, err, sizeof(err)), LGR_OK);
	cr_assert_eq(s.tags.n, 2);
	cr_assert_str_eq(s.tags.v[0], "env:prod,eu");
	cr_assert_str_eq(s.tags.v[1], "team:a");
}

Test(conf, array_items_are_validated_one_by_one_and_a_bad_item_changes_nothing)
{
	const char *items[] = {"r1:8082", "r2"};

	cr_assert_eq(set("routers", "r0:1"), LGR_OK);
	cr_assert_eq(lgr_conf_set_array(&sample_table, &s, "routers", items, 2, err, sizeof(err)), LGR_EINVAL);
	cr_assert_str_eq(err, "sample: parameter 'routers': \"r2\" is invalid: expected host:port");
	cr_assert_eq(s.routers.n, 1);
	cr_assert_str_eq(s.routers.v[0], "r0:1");
	cr_assert_eq(set("routers", "r1:0"), LGR_EINVAL);
	cr_assert_eq(set("routers", "r1:65536"), LGR_EINVAL);
	cr_assert_eq(set("routers", "::1:8082"), LGR_EINVAL);
	cr_assert_not_null(strstr(err, "brackets"), "%s", err);
	cr_assert_eq(set("routers", "[nope]:8082"), LGR_EINVAL);
	cr_assert_eq(set("defaultTags", "novalue"), LGR_EINVAL);
	cr_assert_not_null(strstr(err, "expected key:value"), "%s", err);
	cr_assert_eq(set("defaultTags", ":v"), LGR_EINVAL);
	cr_assert_eq(set("defaultTags", "k:"), LGR_OK, "an empty tag value is allowed");
}

Test(conf, a_bad_item_holding_commas_gets_a_hint_about_arrays)
{
	const char *one[] = {"r1:8082,r2"};

	cr_assert_eq(lgr_conf_set_array(&sample_table, &s, "routers", one, 1, err, sizeof(err)), LGR_EINVAL);
	cr_assert_not_null(strstr(err, "parameter 'routers': \"r1:8082,r2\" is invalid: "), "%s", err);
	cr_assert_not_null(strstr(err, " (several items go in an array: [\"a\", \"b\"])"), "%s", err);
	cr_assert_eq(set("routers", "r1"), LGR_EINVAL);
	cr_assert_null(strstr(err, "several items"), "%s", err);
}

Test(conf, array_items_restricted_to_words_are_stored_in_canonical_spelling)
{
	cr_assert_eq(set("selectors", "LOG, Gauge"), LGR_OK);
	cr_assert_eq(s.selectors.n, 2);
	cr_assert_str_eq(s.selectors.v[0], "log");
	cr_assert_str_eq(s.selectors.v[1], "gauge");
	cr_assert_eq(set("selectors", "log,metric"), LGR_EINVAL);
	cr_assert_str_eq(
		err, "sample: parameter 'selectors': \"metric\" is not one of: log, counter, gauge, timer, event");
}

Test(conf, a_scalar_given_as_a_list_of_one_is_set_and_a_longer_list_is_rejected)
{
	const char *one[] = {"10.0.0.1"};
	const char *two[] = {"10.0.0.1", "10.0.0.2"};

	cr_assert_eq(lgr_conf_set_array(&sample_table, &s, "address", one, 1, err, sizeof(err)), LGR_OK);
	cr_assert_str_eq(s.address, "10.0.0.1");
	cr_assert_eq(lgr_conf_set_array(&sample_table, &s, "address", two, 2, err, sizeof(err)), LGR_EINVAL);
	cr_assert_not_null(strstr(err, "parameter 'address' takes one value"), "%s", err);
}

Test(conf, values_over_the_limit_are_refused_and_quoted_shortened)
{
	char *big = malloc(LGR_CONF_MAX_VALUE + 2);

	cr_assert_not_null(big);
	memset(big, 'a', LGR_CONF_MAX_VALUE + 1);
	big[LGR_CONF_MAX_VALUE + 1] = '\0';
	cr_assert_eq(set("address", big), LGR_ETOOBIG);
	cr_assert_not_null(strstr(err, "parameter 'address'"), "%s", err);
	cr_assert_not_null(strstr(err, "...\" is longer than the limit of 4096 bytes"), "%s", err);
	cr_assert_lt(strlen(err), 200);
	big[LGR_CONF_MAX_VALUE] = '\0';
	cr_assert_eq(set("address", big), LGR_OK);
	cr_assert_eq(strlen(s.address), LGR_CONF_MAX_VALUE);
	/* a drain URL refused this way does not show its credentials */
	memcpy(big, "syslog://drain:s3cret@h/", 24);
	big[LGR_CONF_MAX_VALUE] = 'a';
	cr_assert_eq(set("address", big), LGR_ETOOBIG);
	cr_assert_not_null(strstr(err, "\"syslog://***@h/aaa"), "%s", err);
	cr_assert_null(strstr(err, "s3cret"), "%s", err);
	free(big);
}

Test(conf, arrays_over_the_item_limit_are_refused)
{
	const char **items = calloc(LGR_CONF_MAX_ITEMS + 1, sizeof(*items));
	size_t i;

	cr_assert_not_null(items);
	for (i = 0; i <= LGR_CONF_MAX_ITEMS; i++)
		items[i] = "k:v";
	cr_assert_eq(
		lgr_conf_set_array(&sample_table, &s, "defaultTags", items, LGR_CONF_MAX_ITEMS + 1, err, sizeof(err)),
		LGR_ELIMIT);
	cr_assert_not_null(strstr(err, "parameter 'defaultTags'"), "%s", err);
	cr_assert_eq(lgr_conf_set_array(&sample_table, &s, "defaultTags", items, LGR_CONF_MAX_ITEMS, err, sizeof(err)),
		LGR_OK);
	cr_assert_eq(s.tags.n, LGR_CONF_MAX_ITEMS);
	free(items);
}

Test(conf, a_missing_required_parameter_is_named)
{
	cr_assert_eq(set("tls", "off"), LGR_OK);
	cr_assert_eq(lgr_conf_finish(&sample_table, &s, err, sizeof(err)), LGR_EMISSING);
	cr_assert_str_eq(err, "sample: parameter 'sink' is required");
	cr_assert_eq(set("sink", ""), LGR_OK);
	cr_assert_eq(lgr_conf_finish(&sample_table, &s, err, sizeof(err)), LGR_EMISSING, "empty is missing");
	cr_assert_eq(set("sink", "x"), LGR_OK);
	cr_assert_eq(lgr_conf_finish(&sample_table, &s, err, sizeof(err)), LGR_OK, "%s", err);
}

Test(conf, the_cross_field_check_runs_after_the_required_ones)
{
	cr_assert_eq(set("sink", "x"), LGR_OK);
	cr_assert_eq(lgr_conf_finish(&sample_table, &s, err, sizeof(err)), LGR_EMISSING);
	cr_assert_str_eq(err, "sample: parameter 'tls.cacert' is required when tls is on");
	cr_assert_eq(set("tls.cacert", "/ca.pem"), LGR_OK);
	cr_assert_eq(set("routers", "r:1"), LGR_OK);
	cr_assert_eq(lgr_conf_finish(&sample_table, &s, err, sizeof(err)), LGR_EINVAL);
	cr_assert_str_eq(err, "sample: parameter 'routers' is only valid with protocol=\"subscribe\"");
	cr_assert_eq(set("protocol", "subscribe"), LGR_OK);
	cr_assert_eq(lgr_conf_finish(&sample_table, &s, err, sizeof(err)), LGR_OK, "%s", err);
}

Test(conf, the_cross_field_check_can_derive_a_default_from_another_parameter)
{
	cr_assert_eq(set("sink", "x"), LGR_OK);
	cr_assert_eq(set("tls", "no"), LGR_OK);
	cr_assert_eq(set("protocol", "udp"), LGR_OK);
	cr_assert_eq(lgr_conf_finish(&sample_table, &s, err, sizeof(err)), LGR_OK, "%s", err);
	cr_assert_eq(s.port, 3457);
}

Test(conf, free_releases_everything_and_leaves_the_struct_reusable)
{
	cr_assert_eq(set("routers", "a:1,b:2"), LGR_OK);
	cr_assert_eq(set("tls.cacert", "/ca.pem"), LGR_OK);
	lgr_conf_free(&sample_table, &s);
	cr_assert_null(s.address);
	cr_assert_null(s.cacert);
	cr_assert_null(s.routers.v);
	cr_assert_eq(s.routers.n, 0);
	lgr_conf_free(&sample_table, &s);
	cr_assert_eq(lgr_conf_defaults(&sample_table, &s, err, sizeof(err)), LGR_OK);
	cr_assert_str_eq(s.address, "127.0.0.1");
	cr_assert_not(lgr_conf_is_set(&sample_table, &s, "routers"));
}

Test(conf, a_null_error_buffer_is_allowed)
{
	cr_assert_eq(lgr_conf_set(&sample_table, &s, "port", "x", NULL, 0), LGR_EINVAL);
	cr_assert_eq(lgr_conf_set(&sample_table, &s, "nope", "x", NULL, 0), LGR_EINVAL);
}

Test(conf, a_short_error_buffer_is_truncated_not_overrun)
{
	char small[16];

	memset(small, 'X', sizeof(small));
	cr_assert_eq(lgr_conf_set(&sample_table, &s, "port", "70000", small, 8), LGR_EINVAL);
	cr_assert_str_eq(small, "sample:");
	cr_assert_eq(small[8], 'X');
}

struct broken {
	long long n;
	int e;
	struct lgr_conf_seen seen;
};

static const struct lgr_conf_param bad_default_params[] = {
	{.name = "n", .type = LGR_CONF_INT, .def = "ten", .offset = offsetof(struct broken, n)},
};
static const struct lgr_conf_param duplicate_params[] = {
	{.name = "n", .type = LGR_CONF_INT, .offset = offsetof(struct broken, n)},
	{.name = "N", .type = LGR_CONF_INT, .offset = offsetof(struct broken, n)},
};
static const struct lgr_conf_param wordless_params[] = {
	{.name = "e", .type = LGR_CONF_ENUM, .offset = offsetof(struct broken, e)},
};

Test(conf_table, a_default_that_its_own_parser_rejects_is_reported)
{
	struct lgr_conf_table t = {"broken", bad_default_params, 1, offsetof(struct broken, seen), NULL};
	struct broken b = {0};

	cr_assert_eq(lgr_conf_defaults(&t, &b, err, sizeof(err)), LGR_EINVAL);
	cr_assert_str_eq(err, "broken: parameter 'n': \"ten\" is not an integer (the table's default is invalid)");
}

Test(conf_table, duplicate_names_in_any_case_are_reported)
{
	struct lgr_conf_table t = {"broken", duplicate_params, 2, offsetof(struct broken, seen), NULL};
	struct broken b = {0};

	cr_assert_eq(lgr_conf_defaults(&t, &b, err, sizeof(err)), LGR_EINVAL);
	cr_assert_str_eq(err, "broken: table lists parameter 'N' twice");
}

Test(conf_table, an_enum_without_words_is_reported)
{
	struct lgr_conf_table t = {"broken", wordless_params, 1, offsetof(struct broken, seen), NULL};
	struct broken b = {0};

	cr_assert_eq(lgr_conf_defaults(&t, &b, err, sizeof(err)), LGR_EINVAL);
	cr_assert_not_null(strstr(err, "parameter 'e' is an enum without words"), "%s", err);
}

Test(conf_table, more_parameters_than_the_seen_record_holds_are_refused)
{
	struct lgr_conf_table t = {
		"broken", bad_default_params, LGR_CONF_MAX_PARAMS + 1, offsetof(struct broken, seen), NULL};
	struct broken b = {0};

	cr_assert_eq(lgr_conf_defaults(&t, &b, err, sizeof(err)), LGR_EINVAL);
	cr_assert_not_null(strstr(err, "more than 128"), "%s", err);
}

Test(conf_check, cidr_ranges_accept_v4_and_v6_networks_only)
{
	char why[128];

	cr_assert_eq(lgr_conf_check_cidr("10.0.0.0/8", why, sizeof(why)), LGR_OK);
	cr_assert_eq(lgr_conf_check_cidr("169.254.0.0/16", why, sizeof(why)), LGR_OK);
	cr_assert_eq(lgr_conf_check_cidr("0.0.0.0/0", why, sizeof(why)), LGR_OK);
	cr_assert_eq(lgr_conf_check_cidr("fd00::/8", why, sizeof(why)), LGR_OK);
	cr_assert_eq(lgr_conf_check_cidr("::1/128", why, sizeof(why)), LGR_OK);
	cr_assert_eq(lgr_conf_check_cidr("10.0.0.0", why, sizeof(why)), LGR_EINVAL);
	cr_assert_eq(lgr_conf_check_cidr("10.0.0.0/33", why, sizeof(why)), LGR_EINVAL);
	cr_assert_str_eq(why, "the prefix length is not in 0..32");
	cr_assert_eq(lgr_conf_check_cidr("fd00::/129", why, sizeof(why)), LGR_EINVAL);
	cr_assert_eq(lgr_conf_check_cidr("10.0.0/8", why, sizeof(why)), LGR_EINVAL);
	cr_assert_eq(lgr_conf_check_cidr("example.com/8", why, sizeof(why)), LGR_EINVAL);
	cr_assert_eq(lgr_conf_check_cidr("/8", why, sizeof(why)), LGR_EINVAL);
	cr_assert_eq(lgr_conf_check_cidr("10.0.0.0/", why, sizeof(why)), LGR_EINVAL);
}

Test(conf_check, host_port_needs_a_host_and_a_port_in_1_to_65535)
{
	char why[128];

	cr_assert_eq(lgr_conf_check_hostport("doppler.service.cf.internal:8082", why, sizeof(why)), LGR_OK);
	cr_assert_eq(lgr_conf_check_hostport("127.0.0.1:1", why, sizeof(why)), LGR_OK);
	cr_assert_eq(lgr_conf_check_hostport("[fd00::1]:8082", why, sizeof(why)), LGR_OK);
	cr_assert_eq(lgr_conf_check_hostport(":8082", why, sizeof(why)), LGR_EINVAL);
	cr_assert_eq(lgr_conf_check_hostport("host:", why, sizeof(why)), LGR_EINVAL);
	cr_assert_eq(lgr_conf_check_hostport("host:80x", why, sizeof(why)), LGR_EINVAL);
	cr_assert_eq(lgr_conf_check_hostport("[fd00::1]8082", why, sizeof(why)), LGR_EINVAL);
	cr_assert_eq(lgr_conf_check_hostport("[]:8082", why, sizeof(why)), LGR_EINVAL);
}

Test(conf_check, type_names_are_short_words)
{
	cr_assert_str_eq(lgr_conf_type_name(LGR_CONF_SIZE), "size");
	cr_assert_str_eq(lgr_conf_type_name(LGR_CONF_ARRAY), "array");
	cr_assert_str_eq(lgr_conf_type_name(LGR_CONF_PORT), "port");
}

Test(conf, split_hostport_gives_the_host_without_brackets_and_the_port)
{
	char host[16];
	uint16_t port = 0;

	cr_assert_eq(lgr_conf_split_hostport("doppler.example:8082", host, sizeof(host), &port), LGR_OK);
	cr_assert_str_eq(host, "doppler.example");
	cr_assert_eq(port, 8082);
	cr_assert_eq(lgr_conf_split_hostport("[::1]:3458", host, sizeof(host), &port), LGR_OK);
	cr_assert_str_eq(host, "::1");
	cr_assert_eq(port, 3458);
	cr_assert_eq(lgr_conf_split_hostport("nocolon", host, sizeof(host), &port), LGR_EINVAL);
	cr_assert_eq(lgr_conf_split_hostport(":8082", host, sizeof(host), &port), LGR_EINVAL);
	cr_assert_eq(lgr_conf_split_hostport("h:", host, sizeof(host), &port), LGR_EINVAL);
	cr_assert_eq(lgr_conf_split_hostport("h:65536", host, sizeof(host), &port), LGR_EINVAL);
	cr_assert_eq(lgr_conf_split_hostport("h:80x", host, sizeof(host), &port), LGR_EINVAL);
	cr_assert_eq(lgr_conf_split_hostport("a-name-of-16-chars:1", host, sizeof(host), &port), LGR_EINVAL);
}

Test(conf, values_shown_in_messages_mask_the_credentials_of_urls)
{
	char out[128];

	lgr_conf_shown("syslog-tls://user:s3cret@logs.example.com:6514/x?drain-data=all", out, sizeof(out));
	cr_assert_str_eq(out, "syslog-tls://***@logs.example.com:6514/x?drain-data=all");
	lgr_conf_shown("https://collector.example.com/in?to=a@b", out, sizeof(out));
	cr_assert_str_eq(out, "https://collector.example.com/in?to=a@b", "an @ after the host is not userinfo");
	lgr_conf_shown("127.0.0.1:8082", out, sizeof(out));
	cr_assert_str_eq(out, "127.0.0.1:8082");
	lgr_conf_shown("ftp://u:p@h", out, 8);
	cr_assert_str_eq(out, "ftp://*", "cut to fit");
}
