/*
 * fuzz_json.c: the JSON envelope parser (lgr_json). The input is parsed as one envelope and as a batch; every
 * envelope that parses must be written back by both serializers (the direct writer and the json-c builder), and the
 * text must parse again to an equal envelope. Envelopes must also survive the protobuf codec unchanged. Any
 * mismatch aborts, so libFuzzer keeps the input.
 */
#include <json-c/json.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lgr_env.h"
#include "lgr_json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what, const char *text)
{
	fprintf(stderr, "fuzz_json: %s\n%s\n", what, text != NULL ? text : "");
	abort();
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
	}
	return 0;
}
