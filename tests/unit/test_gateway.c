/*
 * test_gateway.c: the gateway's protocol logic (lgr_gateway): /v2/read query strings turned into selectors as the
 * real RLP gateway builds them, its error answers byte for byte against the captured vectors, bearer tokens and
 * authorization, server-sent event framing against the captured streams, and Log Cache reads (path, query,
 * defaults, errors, body).
 */
#include <criterion/criterion.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lgr_env.h"
#include "lgr_gateway.h"
#include "lgr_json.h"
#include "lgr_recent.h"
#include "lgr_select.h"

/* --- helpers ---------------------------------------------------------------------------------------------------- */

static char *read_vector(const char *name)
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

static int parse_q(const char *q, struct lgr_gateway_read *r, struct lgr_gateway_reply *reply)
{
	return lgr_gateway_read_parse(q, strlen(q), r, reply);
}

/* The selectors of r as text: "src:type[:name|names]" joined with spaces. */
static const char *describe(const struct lgr_gateway_read *r)
{
	static char buf[8192];
	size_t i, k, o = 0;

	buf[0] = '\0';
	for (i = 0; i < r->req.n_selectors; i++) {
		const struct lgr_selector *s = &r->req.selectors[i];

		o += (size_t)snprintf(buf + o, sizeof(buf) - o, "%s%s:%s", i > 0 ? " " : "",
			s->source_id != NULL ? s->source_id : "(null)", lgr_env_type_name(s->type));
		if (s->type == LGR_ENV_COUNTER && s->counter_name != NULL && s->counter_name[0] != '\0')
			o += (size_t)snprintf(buf + o, sizeof(buf) - o, ":%s", s->counter_name);
		if (s->type == LGR_ENV_GAUGE)
			for (k = 0; k < s->n_gauge_names; k++)
				o += (size_t)snprintf(
					buf + o, sizeof(buf) - o, "%c%s", k == 0 ? ':' : ',', s->gauge_names[k]);
	}
	return buf;
}

static void expect_selectors(const char *query, const char *want)
{
	struct lgr_gateway_read r;
	struct lgr_gateway_reply reply;
	int rc = parse_q(query, &r, &reply);

	cr_assert_eq(rc, LGR_OK, "query %s: %d %s", query, rc, reply.body);
	cr_expect_str_eq(describe(&r), want, "query %s", query);
	cr_expect(r.req.use_preferred_tags);
	lgr_gateway_read_cleanup(&r);
}

#define ERR_EMPTY "{\"message\":\"query cannot be empty\",\"error\":\"empty_query\"}\n\n"
#define ERR_TYPE                                                                                                       \
	"{\"message\":\"query must provide at least one envelope type\",\"error\":\"missing_envelope_type\"}\n\n"
#define ERR_CNAME "{\"message\":\"counter.name is invalid without value\",\"error\":\"missing_counter_name\"}\n\n"
#define ERR_GNAME "{\"message\":\"gauge.name is invalid without value\",\"error\":\"missing_gauge_name\"}\n\n"
#define ERR_404	  "{\"message\":\"resource not found\",\"error\":\"not_found\"}\n\n"
#define ERR_405	  "{\"message\":\"method not allowed\",\"error\":\"method_not_allowed\"}\n\n"

static void expect_error(const char *query, int want_rc, int status, const char *body)
{
	struct lgr_gateway_read r;
	struct lgr_gateway_reply reply;

	memset(&reply, 0, sizeof(reply));
	cr_assert_eq(parse_q(query, &r, &reply), want_rc, "query %s", query);
	cr_expect_eq(reply.status, status, "query %s", query);
	cr_expect_str_eq(reply.body, body, "query %s", query);
	cr_expect_eq(reply.body_len, strlen(body));
	cr_expect_eq(r.req.n_selectors, 0);
	cr_expect_null(r.req.selectors);
	lgr_gateway_read_cleanup(&r);
}

/* --- /v2/read: selectors ------------------------------------------------------------------------------------------ */

Test(gateway_query, each_type_flag_selects_its_type_from_any_source)
{
	expect_selectors("log", ":log");
	expect_selectors("counter", ":counter");
	expect_selectors("gauge", ":gauge");
	expect_selectors("timer", ":timer");
	expect_selectors("event", ":event");
	expect_selectors("event&timer&gauge&counter&log", ":log :counter :gauge :timer :event");
}

Test(gateway_query, a_flag_counts_by_presence_whatever_its_value)
{
	expect_selectors("log=false&counter=&gauge=0", ":log :counter :gauge");
}

Test(gateway_query, each_type_selector_is_built_per_source_id)
{
	expect_selectors("source_id=a&log&counter&source_id=b", "a:log a:counter b:log b:counter");
}

Test(gateway_query, counter_name_repeats_into_one_selector_per_name)
{
	expect_selectors("counter.name=requests&counter.name=errors", ":counter:requests :counter:errors");
}

Test(gateway_query, counter_flag_adds_nothing_once_a_counter_name_is_given)
{
	expect_selectors("counter&counter.name=requests", ":counter:requests");
	expect_selectors("source_id=a&source_id=b&counter.name=x&log", "a:log a:counter:x b:log b:counter:x");
}

Test(gateway_query, gauge_name_is_one_selector_with_the_comma_separated_set)
{
	expect_selectors("gauge.name=cpu,memory", ":gauge:cpu,memory");
	expect_selectors("gauge.name=cpu,memory&gauge.name=disk&gauge", ":gauge:cpu,memory :gauge:disk");
	expect_selectors("gauge.name=cpu%2Cmemory", ":gauge:cpu,memory");
}

Test(gateway_query, named_selectors_vector_query_builds_counter_and_gauge_selectors)
{
	expect_selectors("counter.name=requests&gauge.name=cpu,memory", ":counter:requests :gauge:cpu,memory");
}

Test(gateway_query, shard_id_and_deterministic_name_take_their_first_value)
{
	struct lgr_gateway_read r;

	cr_assert_eq(parse_q("log&shard_id=group+1&shard_id=other&deterministic_name=n%31", &r, NULL), LGR_OK);
	cr_expect_str_eq(r.req.shard_id, "group 1");
	cr_expect_str_eq(r.req.deterministic_name, "n1");
	lgr_gateway_read_cleanup(&r);
	cr_assert_eq(parse_q("log", &r, NULL), LGR_OK);
	cr_expect_str_eq(r.req.shard_id, "");
	cr_expect_str_eq(r.req.deterministic_name, "");
	lgr_gateway_read_cleanup(&r);
}

Test(gateway_query, keys_and_values_are_percent_decoded_with_plus_as_space)
{
	struct lgr_gateway_read r;

	expect_selectors("%6Cog&source_id=my+app%2F1", "my app/1:log");
	cr_assert_eq(parse_q("source_id=a%20b&source_id=c&log", &r, NULL), LGR_OK);
	cr_assert_eq(r.n_source_ids, 2);
	cr_expect_str_eq(r.source_ids[0], "a b");
	cr_expect_str_eq(r.source_ids[1], "c");
	lgr_gateway_read_cleanup(&r);
}

Test(gateway_query, pairs_with_a_bad_escape_or_a_semicolon_are_dropped_as_go_does)
{
	expect_selectors("log&source_id=%zz&counter", ":log :counter");
	expect_selectors("log&source_id=a;b&source_id=c", "c:log");
	expect_selectors("log&&&source_id=%4", ":log");
	expect_error("source_id=%zz&log;x", LGR_EDECODE, 400, ERR_EMPTY);
}

Test(gateway_query, empty_query_is_empty_query)
{
	expect_error("", LGR_EDECODE, 400, ERR_EMPTY);
	expect_error("&&", LGR_EDECODE, 400, ERR_EMPTY);
	cr_expect_eq(lgr_gateway_read_parse(NULL, 0, &(struct lgr_gateway_read){0}, NULL), LGR_EDECODE);
}

Test(gateway_query, query_without_a_type_is_missing_envelope_type)
{
	expect_error("source_id=app", LGR_EDECODE, 400, ERR_TYPE);
	expect_error("=", LGR_EDECODE, 400, ERR_TYPE);
	expect_error("logs&counters", LGR_EDECODE, 400, ERR_TYPE);
}

Test(gateway_query, counter_name_without_value_is_missing_counter_name)
{
	expect_error("counter.name", LGR_EDECODE, 400, ERR_CNAME);
	expect_error("counter.name=&log", LGR_EDECODE, 400, ERR_CNAME);
	expect_error("counter.name=a&counter.name=", LGR_EDECODE, 400, ERR_CNAME);
}

Test(gateway_query, gauge_name_without_value_is_missing_gauge_name)
{
	expect_error("gauge.name", LGR_EDECODE, 400, ERR_GNAME);
	expect_error("log&gauge.name=", LGR_EDECODE, 400, ERR_GNAME);
}

Test(gateway_query, counter_name_is_checked_before_gauge_name)
{
	expect_error("gauge.name&counter.name", LGR_EDECODE, 400, ERR_CNAME);
}

Test(gateway_query, too_many_selectors_is_refused_before_anything_is_allocated)
{
	char *q = malloc(LGR_SELECT_MAX_SELECTORS * 16 + 64);
	struct lgr_gateway_reply reply;
	struct lgr_gateway_read r;
	size_t i, o = 0;

	cr_assert_not_null(q);
	o += (size_t)sprintf(q, "log");
	for (i = 0; i < LGR_SELECT_MAX_SELECTORS + 1; i++)
		o += (size_t)sprintf(q + o, "&source_id=%zu", i);
	cr_expect_eq(lgr_gateway_read_parse(q, o, &r, &reply), LGR_EDECODE);
	cr_expect_eq(reply.status, 400);
	cr_expect(strstr(reply.body, "too_many_selectors") != NULL);
	free(q);
}

Test(gateway_query, a_nul_in_a_selector_value_is_refused)
{
	struct lgr_gateway_reply reply;
	struct lgr_gateway_read r;

	cr_expect_eq(parse_q("log&source_id=a%00b", &r, &reply), LGR_EDECODE);
	cr_expect(strstr(reply.body, "invalid_query") != NULL);
	expect_selectors("log=%00&l%00g", ":log");
}

Test(gateway_query, a_query_over_the_bound_is_too_big)
{
	static char q[LGR_GATEWAY_MAX_QUERY + 1];
	struct lgr_gateway_reply reply;
	struct lgr_gateway_read r;

	memset(q, 'a', sizeof(q));
	cr_expect_eq(lgr_gateway_read_parse(q, sizeof(q), &r, &reply), LGR_ETOOBIG);
	cr_expect_eq(reply.status, 414);
}

static void count_delivery(void *subscriber, void *ud)
{
	(void)subscriber;
	(*(int *)ud)++;
}

static int deliveries(struct lgr_select *reg, struct lgr_env *env)
{
	int n = 0;

	lgr_select_match(reg, env, count_delivery, &n);
	return n;
}

Test(gateway_query, parsed_request_subscribes_and_matches_in_the_registry)
{
	struct lgr_gateway_read r;
	struct lgr_select *reg;
	struct lgr_select_sub *subs[8];
	struct lgr_env *g = lgr_env_new(), *c = lgr_env_new();
	int sub = 0;

	cr_assert_eq(parse_q("source_id=app&gauge.name=memory,cpu&counter.name=requests", &r, NULL), LGR_OK);
	cr_assert_eq(lgr_select_new(&reg), LGR_OK);
	cr_assert_eq(lgr_select_add_req(reg, &sub, &r.req, subs), LGR_OK);
	lgr_gateway_read_cleanup(&r); /* the registry copied what it needs */

	cr_assert_eq(lgr_env_set_source_id(g, "app"), LGR_OK);
	cr_assert_eq(lgr_env_set_gauge(g), LGR_OK);
	cr_assert_eq(lgr_env_add_metric(g, "cpu", "percentage", 12.5), LGR_OK);
	cr_assert_eq(lgr_env_add_metric(g, "memory", "bytes", 1048576), LGR_OK);
	cr_assert_eq(lgr_env_set_source_id(c, "app"), LGR_OK);
	cr_assert_eq(lgr_env_set_counter(c, "requests", 2, 2), LGR_OK);
	cr_expect_eq(deliveries(reg, g), 1);
	cr_expect_eq(deliveries(reg, c), 1);
	cr_assert_eq(lgr_env_set_counter(c, "other", 2, 2), LGR_OK);
	cr_expect_eq(deliveries(reg, c), 0);
	lgr_select_free(reg);
	lgr_env_unref(g);
	lgr_env_unref(c);
}

/* --- /v2/read: error bodies against the captured answers ------------------------------------------------------- */

/*
 * The body of section `name` in rlp-gateway-error-responses.txt (every byte after the CRLF that ends the headers, up
 * to the next section), with the content-length it was sent with.
 */
static void vector_error(const char *text, const char *name, char *body, size_t size, size_t *content_length)
{
	char hdr[128];
	const char *s, *cl, *b, *e;

	snprintf(hdr, sizeof(hdr), "### %s\n", name);
	s = strstr(text, hdr);
	cr_assert_not_null(s, "no section %s", name);
	cl = strstr(s, "content-length: ");
	cr_assert_not_null(cl);
	*content_length = strtoul(cl + 16, NULL, 10);
	b = strstr(cl, "\r\n\r\n");
	cr_assert_not_null(b);
	b += 4;
	e = strstr(b, "### ");
	if (e == NULL)
		e = b + strlen(b);
	cr_assert_lt((size_t)(e - b), size);
	memcpy(body, b, (size_t)(e - b));
	body[e - b] = '\0';
}

Test(gateway_errors, error_bodies_are_the_real_gateways_bytes)
{
	char *text = read_vector("rlp-gateway-error-responses.txt");
	char body[256];
	size_t cl;
	struct lgr_gateway_reply reply;
	struct lgr_gateway_read r;

	vector_error(text, "sse_noq.out", body, sizeof(body), &cl);
	cr_expect_eq(parse_q("", &r, &reply), LGR_EDECODE);
	cr_expect_str_eq(reply.body, body);
	cr_expect_eq(reply.body_len, cl, "content-length %zu", cl);
	cr_expect_eq(reply.status, 400);
	cr_expect_str_eq(reply.content_type, "text/plain; charset=utf-8");
	cr_expect(reply.nosniff);

	vector_error(text, "sse_notype.out", body, sizeof(body), &cl);
	cr_expect_eq(parse_q("source_id=x", &r, &reply), LGR_EDECODE);
	cr_expect_str_eq(reply.body, body);
	cr_expect_eq(reply.body_len, cl);

	vector_error(text, "sse_noauth.out", body, sizeof(body), &cl);
	lgr_gateway_reply_not_found(&reply);
	cr_expect_str_eq(reply.body, body);
	cr_expect_eq(reply.body_len, cl);
	cr_expect_eq(reply.status, 404);
	cr_expect(reply.nosniff);
	free(text);
}

Test(gateway_errors, every_error_body_is_json_followed_by_two_newlines)
{
	static const char *const bodies[] = {ERR_EMPTY, ERR_TYPE, ERR_CNAME, ERR_GNAME, ERR_404, ERR_405};
	size_t i;

	for (i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
		size_t n = strlen(bodies[i]);
		struct json_object *o = json_tokener_parse(bodies[i]);

		cr_assert_not_null(o, "%s", bodies[i]);
		cr_expect_str_eq(bodies[i] + n - 2, "\n\n");
		cr_expect_not_null(json_object_object_get(o, "message"));
		cr_expect_not_null(json_object_object_get(o, "error"));
		json_object_put(o);
	}
}

/* --- bearer tokens ---------------------------------------------------------------------------------------------- */

#define TOKENS_TEXT                                                                                                    \
	"# tokens for the gateway\n"                                                                                   \
	"\n"                                                                                                           \
	"root-token admin\n"                                                                                           \
	"  app-token\tapp-1,app-2  \r\n"                                                                               \
	"   # an indented comment\n"                                                                                   \
	"one-token app-3"

static struct lgr_gateway_tokens *tokens(void)
{
	struct lgr_gateway_tokens *t = NULL;
	size_t line = 99;

	cr_assert_eq(lgr_gateway_tokens_parse(TOKENS_TEXT, strlen(TOKENS_TEXT), &t, &line), LGR_OK);
	cr_assert_eq(line, 0);
	return t;
}

Test(gateway_tokens, parses_admin_and_source_id_lists_with_comments_blanks_and_crlf)
{
	struct lgr_gateway_tokens *t = tokens();

	cr_expect_eq(lgr_gateway_tokens_count(t), 3);
	lgr_gateway_tokens_free(t);
}

Test(gateway_tokens, empty_file_has_no_tokens)
{
	struct lgr_gateway_tokens *t = NULL;

	cr_assert_eq(lgr_gateway_tokens_parse("", 0, &t, NULL), LGR_OK);
	cr_expect_eq(lgr_gateway_tokens_count(t), 0);
	cr_expect(!lgr_gateway_authorized(t, "bearer x", NULL, 0));
	lgr_gateway_tokens_free(t);
}

static void expect_bad_tokens(const char *text, size_t want_line)
{
	struct lgr_gateway_tokens *t = (void *)1;
	size_t line = 0;

	cr_expect_eq(lgr_gateway_tokens_parse(text, strlen(text), &t, &line), LGR_EDECODE, "%s", text);
	cr_expect_null(t);
	cr_expect_eq(line, want_line, "%s: line %zu", text, line);
}

Test(gateway_tokens, bad_lines_are_refused_with_their_line_number)
{
	expect_bad_tokens("a admin\nlonely\n", 2);
	expect_bad_tokens("# c\n\na b c\n", 3);
	expect_bad_tokens("a x,,y\n", 1);
	expect_bad_tokens("a x,\n", 1);
	expect_bad_tokens("a ,x\n", 1);
	expect_bad_tokens("a admin\nb x\na y\n", 3);
}

Test(gateway_tokens, a_nul_byte_is_refused_with_its_line_number)
{
	struct lgr_gateway_tokens *t = NULL;
	size_t line = 0;

	cr_expect_eq(lgr_gateway_tokens_parse("a admin\nb x\0y\n", 14, &t, &line), LGR_EDECODE);
	cr_expect_eq(line, 2);
}

Test(gateway_tokens, load_reads_a_file_and_reports_a_missing_one)
{
	char path[] = "/tmp/test_gateway_tokensXXXXXX";
	struct lgr_gateway_tokens *t = NULL;
	size_t line = 0;
	int fd = mkstemp(path);

	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, TOKENS_TEXT, strlen(TOKENS_TEXT)), (ssize_t)strlen(TOKENS_TEXT));
	close(fd);
	cr_expect_eq(lgr_gateway_tokens_load(path, &t, &line), LGR_OK);
	cr_expect_eq(lgr_gateway_tokens_count(t), 3);
	lgr_gateway_tokens_free(t);
	unlink(path);
	cr_expect_eq(lgr_gateway_tokens_load(path, &t, &line), LGR_EIO);
	cr_expect_null(t);
}

Test(gateway_auth, admin_reads_anything_including_the_firehose)
{
	struct lgr_gateway_tokens *t = tokens();
	const char *ids[] = {"app-1", "anything", ""};

	cr_expect(lgr_gateway_authorized(t, "bearer root-token", NULL, 0));
	cr_expect(lgr_gateway_authorized(t, "bearer root-token", ids, 3));
	lgr_gateway_tokens_free(t);
}

Test(gateway_auth, a_source_token_reads_only_requests_naming_its_own_source_ids)
{
	struct lgr_gateway_tokens *t = tokens();
	const char *mine[] = {"app-2", "app-1", "app-2"};
	const char *mixed[] = {"app-1", "app-3"};
	const char *fire[] = {""};

	cr_expect(lgr_gateway_authorized(t, "bearer app-token", mine, 3));
	cr_expect(lgr_gateway_authorized(t, "bearer app-token", mine, 1));
	cr_expect(!lgr_gateway_authorized(t, "bearer app-token", mixed, 2));
	cr_expect(!lgr_gateway_authorized(t, "bearer app-token", NULL, 0), "no source id is the firehose");
	cr_expect(!lgr_gateway_authorized(t, "bearer app-token", fire, 1));
	cr_expect(lgr_gateway_authorized(t, "bearer one-token", mixed + 1, 1));
	lgr_gateway_tokens_free(t);
}

Test(gateway_auth, accepts_bearer_in_any_case_and_the_bare_token)
{
	struct lgr_gateway_tokens *t = tokens();

	cr_expect(lgr_gateway_authorized(t, "bearer root-token", NULL, 0));
	cr_expect(lgr_gateway_authorized(t, "Bearer root-token", NULL, 0));
	cr_expect(lgr_gateway_authorized(t, "BEARER \t root-token  ", NULL, 0));
	cr_expect(lgr_gateway_authorized(t, "root-token", NULL, 0));
	cr_expect(lgr_gateway_authorized(t, " root-token ", NULL, 0));
	lgr_gateway_tokens_free(t);
}

Test(gateway_auth, missing_unknown_or_malformed_tokens_are_refused)
{
	struct lgr_gateway_tokens *t = tokens();

	cr_expect(!lgr_gateway_authorized(t, NULL, NULL, 0));
	cr_expect(!lgr_gateway_authorized(t, "", NULL, 0));
	cr_expect(!lgr_gateway_authorized(t, "bearer ", NULL, 0));
	cr_expect(!lgr_gateway_authorized(t, "bearer root", NULL, 0));
	cr_expect(!lgr_gateway_authorized(t, "bearer root-token-x", NULL, 0));
	cr_expect(!lgr_gateway_authorized(t, "bearerroot-token", NULL, 0));
	cr_expect(!lgr_gateway_authorized(t, "Basic root-token", NULL, 0));
	cr_expect(!lgr_gateway_authorized(t, "bearer admin", NULL, 0));
	cr_expect(!lgr_gateway_authorized(NULL, "bearer root-token", NULL, 0));
	lgr_gateway_tokens_free(t);
}

static void expect_request(const struct lgr_gateway_tokens *t, const char *method, const char *auth, const char *q,
	int want_rc, int status, const char *body)
{
	struct lgr_gateway_read r;
	struct lgr_gateway_reply reply;
	int rc;

	memset(&reply, 0, sizeof(reply));
	rc = lgr_gateway_read_request(t, method, auth, q, strlen(q), &r, &reply);
	cr_expect_eq(rc, want_rc, "%s %s ?%s: %d", method, auth, q, rc);
	if (rc != LGR_OK) {
		cr_expect_eq(reply.status, status, "%s %s ?%s", method, auth, q);
		cr_expect_str_eq(reply.body, body, "%s %s ?%s", method, auth, q);
	}
	lgr_gateway_read_cleanup(&r);
}

Test(gateway_auth, request_checks_authorization_then_method_then_query)
{
	struct lgr_gateway_tokens *t = tokens();

	expect_request(t, "GET", "bearer root-token", "log", LGR_OK, 200, "");
	expect_request(t, "GET", "bearer app-token", "log&source_id=app-1", LGR_OK, 200, "");
	expect_request(t, "GET", NULL, "log", LGR_EINVAL, 404, ERR_404);
	expect_request(t, "GET", "bearer nope", "", LGR_EINVAL, 404, ERR_404);
	expect_request(t, "GET", "bearer app-token", "log", LGR_EINVAL, 404, ERR_404);
	expect_request(t, "GET", "bearer app-token", "log&source_id=app-1&source_id=x", LGR_EINVAL, 404, ERR_404);
	expect_request(t, "POST", "bearer nope", "log", LGR_EINVAL, 404, ERR_404);
	expect_request(t, "POST", "bearer root-token", "", LGR_EINVAL, 405, ERR_405);
	expect_request(t, "HEAD", "bearer app-token", "source_id=app-1", LGR_EINVAL, 405, ERR_405);
	expect_request(t, "GET", "bearer root-token", "", LGR_EDECODE, 400, ERR_EMPTY);
	expect_request(t, "GET", "bearer app-token", "source_id=app-2", LGR_EDECODE, 400, ERR_TYPE);
	/* without tokens (gateway.auth="none") only the method and the query count */
	expect_request(NULL, "GET", NULL, "log", LGR_OK, 200, "");
	expect_request(NULL, "PUT", NULL, "log", LGR_EINVAL, 405, ERR_405);
	lgr_gateway_tokens_free(t);
}

/* --- server-sent events ----------------------------------------------------------------------------------------- */

Test(gateway_sse, headers_are_the_real_gateways_for_http11_and_drop_connection_for_http2)
{
	char *text = read_vector("rlp-gateway-sse-http11-headers.txt");
	const struct lgr_gateway_header *h;
	char line[256];
	size_t n, i;

	h = lgr_gateway_sse_headers(true, &n);
	cr_assert_eq(n, 3);
	for (i = 0; i < n; i++) {
		snprintf(line, sizeof(line), "\r\n%s: %s\r\n", h[i].name, h[i].value);
		cr_expect_not_null(strstr(text, line), "header %s", line);
	}
	/* in the order Go writes them (sorted by name) */
	cr_expect_lt(strstr(text, h[0].name), strstr(text, h[1].name));
	cr_expect_lt(strstr(text, h[1].name), strstr(text, h[2].name));
	h = lgr_gateway_sse_headers(false, &n);
	cr_assert_eq(n, 2);
	for (i = 0; i < n; i++)
		cr_expect_str_neq(h[i].name, "Connection");
	free(text);
}

static int collect(struct lgr_env *env, void *ud)
{
	struct lgr_env ***list = ud;
	size_t k = 0;

	while ((*list)[k] != NULL)
		k++;
	cr_assert_lt(k, 63);
	(*list)[k] = env;
	return 0;
}

static size_t count_envs(struct lgr_env **envs)
{
	size_t n = 0;

	while (envs[n] != NULL)
		n++;
	return n;
}

/*
 * Replays a captured stream event by event: each data event is parsed and framed again by lgr_gateway_sse_data,
 * which must give the same framing and, parsed back, the same envelopes; heartbeat and closing events must be
 * byte for byte what lgr_gateway_sse_heartbeat and LGR_GATEWAY_SSE_CLOSING give. Events the capture cut short
 * are counted and skipped.
 */
static void replay_stream(const char *name, size_t want_data, size_t want_cut, bool want_closing, bool want_heartbeat)
{
	char *text = read_vector(name), *ev = text, *end;
	size_t data = 0, cut = 0, closing = 0, heartbeat = 0;

	while (*ev != '\0') {
		end = strstr(ev, "\n\n");
		cr_assert_not_null(end, "%s: unterminated event", name);
		end += 2;
		if (strncmp(ev, "data: ", 6) == 0 && strchr(ev, '\n') != end - 2) {
			cut++; /* a data line cut short: the capture goes on at the next line */
			ev = strchr(ev, '\n') + 1;
			continue;
		}
		if (ev[0] == '[') {
			cut++; /* the capture's marker line */
			ev = strchr(ev, '\n') + 1;
			continue;
		}
		if (strncmp(ev, "data: ", 6) == 0) {
			struct lgr_env *envs[64] = {0}, **pe = envs, *again[64] = {0}, **pa = again;
			const char *json = ev + 6;
			size_t jlen = (size_t)(end - 2 - json), n, i, olen;
			char *out = NULL;

			if (memchr(json, '\n', jlen) != NULL ||
				lgr_json_parse_batch(json, jlen, NULL, 0, collect, &pe) != LGR_OK) {
				cut++;
				ev = end;
				continue;
			}
			n = count_envs(envs);
			cr_assert_gt(n, 0);
			cr_assert_eq(lgr_gateway_sse_data(envs, n, &out, &olen), LGR_OK);
			cr_expect_eq(strlen(out), olen);
			cr_expect_eq(strncmp(out, "data: {\"batch\":[", 16), 0);
			cr_expect_str_eq(out + olen - 2, "\n\n");
			cr_expect_null(memchr(out, '\n', olen - 2), "one data line");
			cr_assert_eq(lgr_json_parse_batch(out + 6, olen - 8, NULL, 0, collect, &pa), LGR_OK);
			cr_assert_eq(count_envs(again), n);
			for (i = 0; i < n; i++) {
				cr_expect(lgr_env_equal(envs[i], again[i]), "%s: envelope %zu", name, i);
				lgr_env_unref(envs[i]);
				lgr_env_unref(again[i]);
			}
			free(out);
			data++;
		} else if (strncmp(ev, "event: heartbeat\n", 17) == 0) {
			char buf[LGR_GATEWAY_SSE_HEARTBEAT_MAX];
			long long secs = strtoll(ev + 17 + 6, NULL, 10);
			int k = lgr_gateway_sse_heartbeat(secs, buf, sizeof(buf));

			cr_assert_gt(k, 0);
			cr_expect_eq((size_t)k, (size_t)(end - ev));
			cr_expect_eq(memcmp(buf, ev, (size_t)k), 0, "heartbeat bytes");
			heartbeat++;
		} else if (strncmp(ev, "event: closing\n", 15) == 0) {
			cr_expect_eq(strlen(LGR_GATEWAY_SSE_CLOSING), (size_t)(end - ev));
			cr_expect_eq(memcmp(LGR_GATEWAY_SSE_CLOSING, ev, (size_t)(end - ev)), 0, "closing bytes");
			closing++;
		} else {
			cut++;
		}
		ev = end;
	}
	cr_expect_eq(data, want_data, "%s: data events", name);
	cr_expect_eq(cut, want_cut, "%s: cut events", name);
	cr_expect_eq(closing, want_closing ? 1 : 0, "%s", name);
	cr_expect_eq(heartbeat, want_heartbeat ? 1 : 0, "%s", name);
	free(text);
}

Test(gateway_sse, data_events_frame_the_all_types_stream_as_the_real_gateway)
{
	replay_stream("rlp-gateway-sse-all-types.txt", 4, 0, true, false);
}

Test(gateway_sse, data_events_frame_the_named_selectors_stream_as_the_real_gateway)
{
	replay_stream("rlp-gateway-sse-named-selectors.txt", 2, 0, true, false);
}

Test(gateway_sse, heartbeat_in_the_udp_origin_stream_is_byte_exact)
{
	replay_stream("rlp-gateway-sse-http2-udp-origin.txt", 1, 2, false, true);
}

Test(gateway_sse, empty_batch_and_heartbeat_edges)
{
	char *out = NULL, buf[LGR_GATEWAY_SSE_HEARTBEAT_MAX];
	size_t len;

	cr_assert_eq(lgr_gateway_sse_data(NULL, 0, &out, &len), LGR_OK);
	cr_expect_str_eq(out, "data: {\"batch\":[]}\n\n");
	free(out);
	cr_expect_eq(lgr_gateway_sse_data(NULL, 0, NULL, &len), LGR_EINVAL);
	cr_expect_eq(lgr_gateway_sse_heartbeat(INT64_MIN, buf, sizeof(buf)), 45);
	cr_expect_str_eq(buf, "event: heartbeat\ndata: -9223372036854775808\n\n");
	cr_expect_eq(lgr_gateway_sse_heartbeat(1, buf, 10), LGR_EINVAL);
	cr_expect_eq(lgr_gateway_sse_heartbeat(1, NULL, 10), LGR_EINVAL);
}

/* --- Log Cache: path ---------------------------------------------------------------------------------------------- */

static void expect_path(const char *path, int want_rc, const char *want_id, int status)
{
	struct lgr_gateway_reply reply;
	char *id = NULL;

	memset(&reply, 0, sizeof(reply));
	cr_assert_eq(lgr_gateway_lc_path(path, strlen(path), &id, &reply), want_rc, "%s", path);
	if (want_rc == LGR_OK) {
		cr_expect_str_eq(id, want_id, "%s", path);
	} else {
		cr_expect_null(id);
		cr_expect_eq(reply.status, status, "%s", path);
	}
	free(id);
}

Test(gateway_lc, path_gives_the_percent_decoded_source_id)
{
	expect_path("/api/v1/read/app-guid", LGR_OK, "app-guid", 0);
	expect_path("/api/v1/read/my%20app+x", LGR_OK, "my app+x", 0);
}

Test(gateway_lc, paths_that_are_not_one_segment_are_not_found)
{
	struct lgr_gateway_reply reply;
	char *id;

	expect_path("/api/v1/read/", LGR_EINVAL, NULL, 404);
	expect_path("/api/v1/read", LGR_EINVAL, NULL, 404);
	expect_path("/api/v1/read/a/b", LGR_EINVAL, NULL, 404);
	expect_path("/api/v1/read/a%2Fb", LGR_EINVAL, NULL, 404);
	expect_path("/api/v1/read/a%00", LGR_EINVAL, NULL, 404);
	expect_path("/v2/read", LGR_EINVAL, NULL, 404);
	expect_path("/api/v1/read/a%zz", LGR_EDECODE, NULL, 400);
	cr_assert_eq(lgr_gateway_lc_path("/x", 2, &id, &reply), LGR_EINVAL);
	cr_expect_str_eq(reply.body, "{\"code\":5,\"message\":\"Not Found\",\"details\":[]}");
	cr_expect_str_eq(reply.content_type, "application/json");
	lgr_gateway_lc_reply_method(&reply);
	cr_expect_eq(reply.status, 501);
	cr_expect_str_eq(reply.body, "{\"code\":12,\"message\":\"Method Not Allowed\",\"details\":[]}");
}

/* --- Log Cache: query ------------------------------------------------------------------------------------------- */

#define NOW 1795216269000000000LL

static struct lgr_gateway_lc_read lc_ok(const char *q)
{
	struct lgr_gateway_lc_read r;
	struct lgr_gateway_reply reply;
	int rc = lgr_gateway_lc_query(q, strlen(q), NOW, &r, &reply);

	cr_assert_eq(rc, LGR_OK, "%s: %d %s", q, rc, reply.body);
	return r;
}

static void lc_err(const char *q, int want_rc, int status, const char *body)
{
	struct lgr_gateway_lc_read r;
	struct lgr_gateway_reply reply;
	struct json_object *o;

	memset(&reply, 0, sizeof(reply));
	cr_assert_eq(lgr_gateway_lc_query(q, strlen(q), NOW, &r, &reply), want_rc, "%s", q);
	cr_expect_eq(reply.status, status, "%s", q);
	cr_expect_str_eq(reply.body, body, "%s", q);
	cr_expect_str_eq(reply.content_type, "application/json");
	o = json_tokener_parse(reply.body);
	cr_expect_not_null(o, "%s: body is JSON", q);
	json_object_put(o);
}

Test(gateway_lc, defaults_are_log_caches)
{
	struct lgr_gateway_lc_read r = lc_ok("");

	cr_expect_eq(r.start_time, 0);
	cr_expect_eq(r.end_time, NOW);
	cr_expect_eq(r.limit, 100);
	cr_expect_eq(r.type_mask, 0);
	cr_expect(!r.descending);
	r = lc_ok("limit=0&end_time=0");
	cr_expect_eq(r.limit, 100);
	cr_expect_eq(r.end_time, NOW);
}

Test(gateway_lc, parameters_by_proto_or_json_name)
{
	struct lgr_gateway_lc_read r = lc_ok("start_time=-5&end_time=%2B20&limit=1000&descending=true&source_id=x&x=y");

	cr_expect_eq(r.start_time, -5);
	cr_expect_eq(r.end_time, 20);
	cr_expect_eq(r.limit, 1000);
	cr_expect(r.descending);
	r = lc_ok("startTime=7&endTime=9&envelopeTypes=GAUGE&descending=F");
	cr_expect_eq(r.start_time, 7);
	cr_expect_eq(r.end_time, 9);
	cr_expect_eq(r.type_mask, 1u << LGR_ENV_GAUGE);
	cr_expect(!r.descending);
	r = lc_ok("start_time=5&end_time=5");
	cr_expect_eq(r.end_time, 5);
}

Test(gateway_lc, envelope_types_repeat_by_name_or_number_and_any_is_dropped)
{
	struct lgr_gateway_lc_read r = lc_ok("envelope_types=LOG&envelope_types=COUNTER&envelope_types=5");

	cr_expect_eq(r.type_mask, (1u << LGR_ENV_LOG) | (1u << LGR_ENV_COUNTER) | (1u << LGR_ENV_EVENT));
	r = lc_ok("envelope_types=ANY");
	cr_expect_eq(r.type_mask, 0);
	r = lc_ok("envelope_types=ANY&envelope_types=TIMER");
	cr_expect_eq(r.type_mask, 1u << LGR_ENV_TIMER, "ANY next to a type does not widen it");
}

Test(gateway_lc, values_that_do_not_parse_are_grpc_gateway_400s)
{
	lc_err("limit=abc", LGR_EDECODE, 400,
		"{\"code\":3,\"message\":\"parsing field \\\"limit\\\": strconv.ParseInt: parsing \\\"abc\\\": invalid "
		"syntax\",\"details\":[]}");
	lc_err("start_time=99999999999999999999", LGR_EDECODE, 400,
		"{\"code\":3,\"message\":\"parsing field \\\"start_time\\\": strconv.ParseInt: parsing "
		"\\\"99999999999999999999\\\": value out of range\",\"details\":[]}");
	lc_err("endTime=", LGR_EDECODE, 400,
		"{\"code\":3,\"message\":\"parsing field \\\"end_time\\\": strconv.ParseInt: parsing \\\"\\\": invalid "
		"syntax\",\"details\":[]}");
	lc_err("descending", LGR_EDECODE, 400,
		"{\"code\":3,\"message\":\"parsing field \\\"descending\\\": strconv.ParseBool: parsing \\\"\\\": "
		"invalid syntax\",\"details\":[]}");
	lc_err("envelope_types=log", LGR_EDECODE, 400,
		"{\"code\":3,\"message\":\"parsing list \\\"envelope_types\\\": \\\"log\\\" is not a valid "
		"value\",\"details\":[]}");
	lc_err("envelope_types=6", LGR_EDECODE, 400,
		"{\"code\":3,\"message\":\"parsing list \\\"envelope_types\\\": \\\"6\\\" is not a valid "
		"value\",\"details\":[]}");
	lc_err("limit=1&limit=2", LGR_EDECODE, 400,
		"{\"code\":3,\"message\":\"too many values for field \\\"limit\\\": 1, 2\",\"details\":[]}");
}

Test(gateway_lc, quoted_values_are_escaped_as_go_quotes_them)
{
	lc_err("limit=a%0A%22%5C%FF%00", LGR_EDECODE, 400,
		"{\"code\":3,\"message\":\"parsing field \\\"limit\\\": strconv.ParseInt: parsing "
		"\\\"a\\\\n\\\\\\\"\\\\\\\\\\\\xff\\\\x00\\\": invalid syntax\",\"details\":[]}");
}

Test(gateway_lc, a_bad_escape_or_semicolon_is_a_parse_form_400)
{
	lc_err("limit=%zz", LGR_EDECODE, 400,
		"{\"code\":3,\"message\":\"invalid URL escape \\\"%zz\\\"\",\"details\":[]}");
	lc_err("limit=5&x=%4", LGR_EDECODE, 400,
		"{\"code\":3,\"message\":\"invalid URL escape \\\"%4\\\"\",\"details\":[]}");
	lc_err("x=%zz&limit=5;", LGR_EDECODE, 400,
		"{\"code\":3,\"message\":\"invalid semicolon separator in query\",\"details\":[]}");
}

Test(gateway_lc, out_of_range_values_are_log_cache_reader_500s)
{
	lc_err("limit=1001", LGR_EINVAL, 500,
		"{\"code\":2,\"message\":\"limit (1001) must be 1000 or less\",\"details\":[]}");
	lc_err("limit=-1", LGR_EINVAL, 500,
		"{\"code\":2,\"message\":\"limit (-1) must be greater than zero\",\"details\":[]}");
	lc_err("start_time=10&end_time=9", LGR_EINVAL, 500,
		"{\"code\":2,\"message\":\"StartTime (10) must be before EndTime (9)\",\"details\":[]}");
}

Test(gateway_lc, start_after_now_without_end_time_is_not_an_error)
{
	struct lgr_gateway_lc_read r = lc_ok("start_time=9223372036854775807");

	cr_expect_eq(r.end_time, NOW);
}

Test(gateway_lc, body_is_envelopes_batch_and_reads_back_with_the_store)
{
	struct lgr_recent *store;
	struct lgr_gateway_lc_read r = lc_ok("envelope_types=LOG&limit=2&descending=true");
	struct lgr_env **envs, *back[64] = {0}, **pb = back;
	struct json_object *o, *e, *b;
	char *out = NULL;
	size_t n, len, i;

	cr_assert_eq(lgr_recent_new(10, 10, &store), LGR_OK);
	for (i = 1; i <= 4; i++) {
		struct lgr_env *env = lgr_env_new();

		cr_assert_eq(lgr_env_set_source_id(env, "app"), LGR_OK);
		cr_assert_eq(lgr_env_set_log(env, "hi", 2, LOGGREGATOR__V2__LOG__TYPE__OUT), LGR_OK);
		env->pb->timestamp = (int64_t)i;
		cr_assert_eq(lgr_recent_add(store, env), LGR_OK);
		lgr_env_unref(env);
	}
	cr_assert_eq(
		lgr_recent_query(store, "app", r.start_time, r.end_time, r.type_mask, r.limit, r.descending, &envs, &n),
		LGR_OK);
	cr_assert_eq(n, 2);
	cr_assert_eq(lgr_gateway_lc_body(envs, n, &out, &len), LGR_OK);
	cr_expect_eq(strlen(out), len);
	o = json_tokener_parse(out);
	cr_assert_not_null(o, "%s", out);
	cr_assert(json_object_object_get_ex(o, "envelopes", &e));
	cr_assert(json_object_object_get_ex(e, "batch", &b));
	cr_expect_eq(json_object_array_length(b), 2);
	cr_assert_eq(lgr_json_parse_batch(out + strlen("{\"envelopes\":"), len - strlen("{\"envelopes\":") - 1, NULL, 0,
			     collect, &pb),
		LGR_OK);
	cr_expect_eq(back[0]->pb->timestamp, 4);
	cr_expect_eq(back[1]->pb->timestamp, 3);
	lgr_env_unref(back[0]);
	lgr_env_unref(back[1]);
	json_object_put(o);
	free(out);
	lgr_recent_release(envs, n);
	lgr_recent_free(store);

	cr_assert_eq(lgr_gateway_lc_body(NULL, 0, &out, &len), LGR_OK);
	cr_expect_str_eq(out, "{\"envelopes\":{\"batch\":[]}}");
	free(out);
}
