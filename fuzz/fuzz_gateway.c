/*
 * fuzz_gateway.c: the gateway's parsers of untrusted text (lgr_gateway): the /v2/read query string, the Log Cache
 * read path and query, and the tokens file. The whole input goes through each. Beyond memory safety, each answer
 * must hold together: a parsed /v2/read request has 1..LGR_SELECT_MAX_SELECTORS selectors of valid types that the
 * registry accepts, an error has a status and a body of its kind (the RLP gateway's JSON plus two newlines, Log
 * Cache's google.rpc.Status JSON); a tokens set that parses authorizes each of its own lines' tokens. Any broken
 * invariant traps, so libFuzzer keeps the input.
 */
#include <json-c/json.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lgr_gateway.h"
#include "lgr_select.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what, const char *detail)
{
	fprintf(stderr, "fuzz_gateway: %s\n%s\n", what, detail != NULL ? detail : "");
	__builtin_trap();
}

static void check_json(const struct lgr_gateway_reply *reply, const char *who)
{
	struct json_object *o;

	if (reply->body_len != strlen(reply->body))
		fail(who, "body_len differs from the body");
	o = json_tokener_parse(reply->body);
	if (o == NULL || !json_object_is_type(o, json_type_object))
		fail(who, reply->body);
	json_object_put(o);
}

static void check_read(const char *q, size_t n)
{
	struct lgr_gateway_read r;
	struct lgr_gateway_reply reply;
	struct lgr_select *reg = NULL;
	struct lgr_select_sub **subs;
	size_t i;
	int rc, sub = 0;

	memset(&reply, 0, sizeof(reply));
	rc = lgr_gateway_read_parse(q, n, &r, &reply);
	if (rc == LGR_OK) {
		if (r.req.n_selectors == 0 || r.req.n_selectors > LGR_SELECT_MAX_SELECTORS || !r.req.use_preferred_tags)
			fail("a parsed request with a bad selector count", NULL);
		for (i = 0; i < r.req.n_selectors; i++)
			if (r.req.selectors[i].type < LGR_ENV_LOG || r.req.selectors[i].type > LGR_ENV_EVENT ||
				r.req.selectors[i].source_id == NULL)
				fail("a selector without a type or a source", NULL);
		subs = malloc(r.req.n_selectors * sizeof(*subs));
		if (subs != NULL && lgr_select_new(&reg) == LGR_OK) {
			rc = lgr_select_add_req(reg, &sub, &r.req, subs);
			if (rc != LGR_OK && rc != LGR_ENOMEM)
				fail("the registry refuses a parsed request", lgr_strerror(rc));
		}
		lgr_select_free(reg);
		free(subs);
	} else if (rc == LGR_EDECODE) {
		if (reply.status != 400 || reply.body_len < 2 || strcmp(reply.body + reply.body_len - 2, "\n\n") != 0)
			fail("a 400 that is not the gateway's", reply.body);
		check_json(&reply, "the RLP error body is not JSON");
		if (r.req.selectors != NULL || r.arena != NULL)
			fail("a failed parse left storage behind", NULL);
	} else if (rc != LGR_ETOOBIG && rc != LGR_ENOMEM) {
		fail("an unexpected result", lgr_strerror(rc));
	}
	lgr_gateway_read_cleanup(&r);
}

static void check_lc(const char *q, size_t n)
{
	struct lgr_gateway_lc_read r;
	struct lgr_gateway_reply reply;
	char *id = NULL;
	int rc;

	memset(&reply, 0, sizeof(reply));
	rc = lgr_gateway_lc_query(q, n, 42, &r, &reply);
	if (rc == LGR_OK) {
		/* start_time may exceed the defaulted end_time: Log Cache checks the order only when end_time is set */
		if (r.limit < 1 || r.limit > LGR_GATEWAY_LC_MAX_LIMIT || r.end_time == 0 || (r.type_mask & ~0x3eu) != 0)
			fail("a Log Cache read out of range", q);
	} else if (rc == LGR_EDECODE || rc == LGR_EINVAL) {
		/* a message that is not UTF-8 gets grpc-gateway's fallback: 500, code 13 */
		if (reply.status != (rc == LGR_EDECODE && strstr(reply.body, "\"code\": 13") == NULL ? 400 : 500))
			fail("a Log Cache error with the wrong status", reply.body);
		check_json(&reply, "the Log Cache error body is not JSON");
	} else if (rc != LGR_ETOOBIG && rc != LGR_ENOMEM) {
		fail("an unexpected Log Cache result", lgr_strerror(rc));
	}

	rc = lgr_gateway_lc_path(q, n, &id, &reply);
	if (rc == LGR_OK) {
		if (id == NULL || id[0] == '\0' || strchr(id, '/') != NULL)
			fail("a bad source id from a path", id);
	} else if (id != NULL) {
		fail("a source id left on failure", id);
	}
	free(id);
}

static void check_tokens(const char *text, size_t n)
{
	struct lgr_gateway_tokens *t = NULL;
	size_t line = 0;
	char first[64], header[80];
	int rc = lgr_gateway_tokens_parse(text, n, &t, &line);

	if (rc != LGR_OK) {
		if (t != NULL)
			fail("tokens left on failure", NULL);
		if (rc == LGR_EDECODE && line == 0)
			fail("a bad tokens file without a line number", NULL);
		return;
	}
	/* the first token of a one-line file must be found again */
	if (lgr_gateway_tokens_count(t) > 0 && sscanf(text, " %63s", first) == 1 && first[0] != '#' &&
		memchr(text, '\n', n) == NULL && strlen(first) < 63) {
		snprintf(header, sizeof(header), "Bearer %s", first);
		if (strstr(text, "admin") != NULL && strcmp(first, "admin") != 0 &&
			!lgr_gateway_authorized(t, header, NULL, 0)) {
			const char *rest = text + strspn(text, " \t") + strlen(first);

			if (strncmp(rest + strspn(rest, " \t\r\v\f"), "admin", 5) == 0 &&
				rest[strspn(rest, " \t\r\v\f") + 5] == '\0')
				fail("an admin token is not authorized", text);
		}
	}
	lgr_gateway_authorized(t, text, NULL, 0);
	lgr_gateway_tokens_free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);

	if (text == NULL)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	check_read(text, size);
	check_lc(text, size);
	check_tokens(text, size);
	free(text);
	return 0;
}
