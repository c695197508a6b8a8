/*
 * lgr_gateway.c: the gateway's protocol logic (see lgr_gateway.h): query strings as Go reads them, the RLP
 * gateway's selectors and error bodies, bearer tokens, server-sent event framing, Log Cache reads.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lgr_gateway.h"
#include "lgr_json.h"

/* --- replies ----------------------------------------------------------------------------------------------------- */

#define TEXT_PLAIN "text/plain; charset=utf-8"
#define APP_JSON   "application/json"

static void reply_set(struct lgr_gateway_reply *reply, int status, const char *ctype, bool nosniff, const char *body)
{
	size_t n = strlen(body);

	if (reply == NULL)
		return;
	if (n >= sizeof(reply->body))
		n = sizeof(reply->body) - 1;
	reply->status = status;
	reply->content_type = ctype;
	reply->nosniff = nosniff;
	memcpy(reply->body, body, n);
	reply->body[n] = '\0';
	reply->body_len = n;
}

/* The RLP gateway's error: Go's JSON encoder adds a newline, http.Error another. */
#define RLP_ERROR(name, msg) "{\"message\":\"" msg "\",\"error\":\"" name "\"}\n\n"

static void reply_rlp(struct lgr_gateway_reply *reply, int status, const char *body)
{
	reply_set(reply, status, TEXT_PLAIN, true, body);
}

void lgr_gateway_reply_not_found(struct lgr_gateway_reply *reply)
{
	reply_rlp(reply, 404, RLP_ERROR("not_found", "resource not found"));
}

void lgr_gateway_reply_method_not_allowed(struct lgr_gateway_reply *reply)
{
	reply_rlp(reply, 405, RLP_ERROR("method_not_allowed", "method not allowed"));
}

static void reply_too_long(struct lgr_gateway_reply *reply)
{
	reply_set(reply, 414, TEXT_PLAIN, false, "414 URI Too Long");
}

static void reply_internal(struct lgr_gateway_reply *reply)
{
	reply_set(reply, 500, TEXT_PLAIN, false, "500 Internal Server Error");
}

/*
 * A bounded text buffer for error messages: each write goes in whole or not at all, and once one did not fit
 * nothing more is written, so a cut never splits an escape or a UTF-8 sequence.
 */
struct sbuf {
	char *p;
	size_t size, len; /* size > 0 */
	bool full;
};

static void sb_write(struct sbuf *b, const char *s, size_t n)
{
	if (b->full || n >= b->size - b->len) {
		b->full = true;
	} else {
		memcpy(b->p + b->len, s, n);
		b->len += n;
	}
	b->p[b->len] = '\0';
}

static void sb_putc(struct sbuf *b, char c)
{
	sb_write(b, &c, 1);
}

static void sb_puts(struct sbuf *b, const char *s)
{
	sb_write(b, s, strlen(s));
}

static void sb_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
	char tmp[128];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	sb_puts(b, tmp);
}

/* Length of the valid UTF-8 sequence at s[0..n), or 0 when the first byte does not start one. */
static size_t utf8_seq(const unsigned char *s, size_t n, uint32_t *cp)
{
	size_t len, i;
	uint32_t c;

	if (s[0] < 0x80) {
		*cp = s[0];
		return 1;
	}
	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		len = 2;
		c = s[0] & 0x1f;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		len = 3;
		c = s[0] & 0x0f;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		len = 4;
		c = s[0] & 0x07;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		c = (c << 6) | (s[i] & 0x3f);
	}
	if ((len == 3 && (c < 0x800 || (c >= 0xd800 && c <= 0xdfff))) || (len == 4 && (c < 0x10000 || c > 0x10ffff)))
		return 0;
	*cp = c;
	return len;
}

#define QUOTE_MAX 200 /* bytes of a value quoted in an error message */

/*
 * s[0..n) as Go's strconv.Quote writes it (printable characters as they are; C1 controls, U+00A0 and U+00AD as
 * \u escapes: the other non-printable code points Go escapes are not distinguished), cut after QUOTE_MAX bytes.
 */
static void sb_quote(struct sbuf *b, const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0, k;
	uint32_t cp;

	sb_putc(b, '"');
	while (i < n) {
		if (i >= QUOTE_MAX) {
			sb_puts(b, "...");
			break;
		}
		k = utf8_seq(u + i, n - i, &cp);
		if (k == 0) {
			sb_printf(b, "\\x%02x", u[i]);
			i++;
			continue;
		}
		switch (cp) {
		case '\a': sb_puts(b, "\\a"); break;
		case '\b': sb_puts(b, "\\b"); break;
		case '\f': sb_puts(b, "\\f"); break;
		case '\n': sb_puts(b, "\\n"); break;
		case '\r': sb_puts(b, "\\r"); break;
		case '\t': sb_puts(b, "\\t"); break;
		case '\v': sb_puts(b, "\\v"); break;
		case '"': sb_puts(b, "\\\""); break;
		case '\\': sb_puts(b, "\\\\"); break;
		default:
			if (cp < 0x20 || cp == 0x7f)
				sb_printf(b, "\\x%02x", (unsigned)cp);
			else if ((cp >= 0x80 && cp <= 0xa0) || cp == 0xad)
				sb_printf(b, "\\u%04x", (unsigned)cp);
			else
				sb_write(b, s + i, k);
			i += k;
			continue;
		}
		i += k;
	}
	sb_putc(b, '"');
}

/* Log Cache's error: protojson of google.rpc.Status with unpopulated fields. msg is printable ASCII or UTF-8. */
static void reply_status(struct lgr_gateway_reply *reply, int status, int code, const char *msg)
{
	struct sbuf b;
	const char *m;
	uint32_t cp;
	size_t k;

	if (reply == NULL)
		return;
	b.p = reply->body;
	b.size = sizeof(reply->body);
	b.len = 0;
	b.full = false;
	/* protojson refuses a string that is not UTF-8; grpc-gateway then sends its fallback */
	for (m = msg; *m != '\0'; m += k) {
		k = utf8_seq((const unsigned char *)m, strlen(m), &cp);
		if (k == 0) {
			reply_set(reply, 500, APP_JSON, false,
				"{\"code\": 13, \"message\": \"failed to marshal error message\"}");
			return;
		}
	}
	b.size = sizeof(reply->body) - 16; /* room kept for the closing part */
	sb_printf(&b, "{\"code\":%d,\"message\":\"", code);
	for (m = msg; *m != '\0'; m += k) {
		k = utf8_seq((const unsigned char *)m, strlen(m), &cp);
		if (*m == '"' || *m == '\\') {
			char esc[2] = {'\\', *m};

			sb_write(&b, esc, 2);
		} else if (cp < 0x20) {
			sb_printf(&b, "\\u%04x", (unsigned)cp);
		} else {
			sb_write(&b, m, k);
		}
	}
	b.size = sizeof(reply->body);
	b.full = false;
	sb_puts(&b, "\",\"details\":[]}");
	reply->status = status;
	reply->content_type = APP_JSON;
	reply->nosniff = false;
	reply->body_len = b.len;
}

/* --- query strings, as Go's url.ParseQuery reads them ------------------------------------------------------------ */

struct pair {
	const char *key;
	char *value;
	size_t vlen; /* decoded length: a value may hold %00 */
};

struct query {
	char *arena; /* decoded keys and values */
	struct pair *pairs;
	size_t n;
	char err[256]; /* Go's error of ParseQuery, or "" */
};

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * Percent-decodes s[0..n) into dst (room for n + 1), '+' as space when plus. Returns the decoded length, or -1 with
 * *bad at the escape Go reports (up to 3 bytes from the '%').
 */
static long unescape(const char *s, size_t n, char *dst, bool plus, const char **bad, size_t *bad_len)
{
	size_t i, o = 0;

	for (i = 0; i < n; i++) {
		if (s[i] == '%') {
			if (i + 2 >= n || hexval(s[i + 1]) < 0 || hexval(s[i + 2]) < 0) {
				*bad = s + i;
				*bad_len = n - i < 3 ? n - i : 3;
				return -1;
			}
			dst[o++] = (char)(hexval(s[i + 1]) << 4 | hexval(s[i + 2]));
			i += 2;
		} else if (s[i] == '+' && plus) {
			dst[o++] = ' ';
		} else {
			dst[o++] = s[i];
		}
	}
	dst[o] = '\0';
	return (long)o;
}

static void query_error(struct query *q, const char *bad, size_t bad_len)
{
	struct sbuf b = {.p = q->err, .size = sizeof(q->err), .len = 0, .full = false};

	if (q->err[0] != '\0')
		return;
	sb_puts(&b, "invalid URL escape ");
	sb_quote(&b, bad, bad_len);
}

static void query_free(struct query *q)
{
	free(q->arena);
	free(q->pairs);
	q->arena = NULL;
	q->pairs = NULL;
	q->n = 0;
}

/* Splits s[0..len) into decoded pairs; a pair with ';' or a bad escape is dropped and noted as Go does. */
static int query_split(const char *s, size_t len, struct query *q)
{
	size_t i, npairs = 1, start, end, eq, o = 0, kl;
	const char *bad;
	char *key;
	size_t bad_len;
	long k;
	bool semicolon = false;

	memset(q, 0, sizeof(*q));
	for (i = 0; i < len; i++)
		if (s[i] == '&')
			npairs++;
	q->arena = malloc(len + 2 * npairs + 1);
	q->pairs = malloc(npairs * sizeof(*q->pairs));
	if (q->arena == NULL || q->pairs == NULL) {
		query_free(q);
		return LGR_ENOMEM;
	}
	for (start = 0; start <= len; start = end + 1) {
		for (end = start; end < len && s[end] != '&'; end++)
			;
		if (memchr(s + start, ';', end - start) != NULL) {
			semicolon = true;
			continue;
		}
		if (end == start)
			continue;
		for (eq = start; eq < end && s[eq] != '='; eq++)
			;
		k = unescape(s + start, eq - start, q->arena + o, true, &bad, &bad_len);
		if (k < 0) {
			query_error(q, bad, bad_len);
			continue;
		}
		key = q->arena + o;
		kl = (size_t)k;
		eq = eq < end ? eq + 1 : end;
		k = unescape(s + eq, end - eq, key + kl + 1, true, &bad, &bad_len);
		if (k < 0) {
			query_error(q, bad, bad_len);
			continue;
		}
		o += kl + 1 + (size_t)k + 1;
		if (strlen(key) != kl)
			continue; /* a key holding %00 is no key anyone reads */
		q->pairs[q->n].key = key;
		q->pairs[q->n].value = key + kl + 1;
		q->pairs[q->n].vlen = (size_t)k;
		q->n++;
	}
	/* Go's semicolon error replaces any earlier error; later escape errors do not replace it */
	if (semicolon)
		snprintf(q->err, sizeof(q->err), "invalid semicolon separator in query");
	return LGR_OK;
}

static size_t query_count(const struct query *q, const char *key)
{
	size_t i, n = 0;

	for (i = 0; i < q->n; i++)
		if (strcmp(q->pairs[i].key, key) == 0)
			n++;
	return n;
}

static const char *query_first(const struct query *q, const char *key)
{
	size_t i;

	for (i = 0; i < q->n; i++)
		if (strcmp(q->pairs[i].key, key) == 0)
			return q->pairs[i].value;
	return NULL;
}

static bool query_has_empty(const struct query *q, const char *key)
{
	size_t i;

	for (i = 0; i < q->n; i++)
		if (strcmp(q->pairs[i].key, key) == 0 && q->pairs[i].value[0] == '\0')
			return true;
	return false;
}

/* Whether a value the selectors use holds a NUL byte, which no envelope's string can. */
static bool query_has_nul(const struct query *q)
{
	static const char *const keys[] = {"source_id", "counter.name", "gauge.name", "shard_id", "deterministic_name"};
	size_t i, k;

	for (i = 0; i < q->n; i++)
		for (k = 0; k < sizeof(keys) / sizeof(keys[0]); k++)
			if (strcmp(q->pairs[i].key, keys[k]) == 0 && strlen(q->pairs[i].value) != q->pairs[i].vlen)
				return true;
	return false;
}

/* --- /v2/read ---------------------------------------------------------------------------------------------------- */

void lgr_gateway_read_cleanup(struct lgr_gateway_read *out)
{
	if (out == NULL)
		return;
	lgr_select_req_cleanup(&out->req);
	free(out->arena);
	free(out->ptrs);
	memset(out, 0, sizeof(*out));
}

static size_t count_char(const char *s, char c)
{
	size_t n = 0;

	for (; *s != '\0'; s++)
		if (*s == c)
			n++;
	return n;
}

int lgr_gateway_read_parse(const char *query, size_t len, struct lgr_gateway_read *out, struct lgr_gateway_reply *reply)
{
	struct query q;
	bool log, counter, gauge, timer, event;
	size_t n_sid, n_cn, n_gv, n_gnames = 0, per_sid, total, i, k, s, sel, p;
	size_t *gauge_start = NULL; /* for each gauge.name value: where its names start in ptrs */
	size_t *gauge_counts = NULL;
	int rc;

	memset(&q, 0, sizeof(q));
	if (out == NULL || (query == NULL && len > 0)) {
		reply_internal(reply);
		return LGR_EINVAL;
	}
	memset(out, 0, sizeof(*out));
	if (len > LGR_GATEWAY_MAX_QUERY) {
		reply_too_long(reply);
		return LGR_ETOOBIG;
	}
	rc = query_split(query != NULL ? query : "", len, &q);
	if (rc != LGR_OK)
		goto out;

	rc = LGR_EDECODE;
	if (q.n == 0) {
		reply_rlp(reply, 400, RLP_ERROR("empty_query", "query cannot be empty"));
		goto out;
	}
	log = query_count(&q, "log") > 0;
	timer = query_count(&q, "timer") > 0;
	event = query_count(&q, "event") > 0;
	n_cn = query_count(&q, "counter.name");
	n_gv = query_count(&q, "gauge.name");
	counter = n_cn > 0 || query_count(&q, "counter") > 0;
	gauge = n_gv > 0 || query_count(&q, "gauge") > 0;
	if (!(log || counter || gauge || timer || event)) {
		reply_rlp(reply, 400,
			RLP_ERROR("missing_envelope_type", "query must provide at least one envelope type"));
		goto out;
	}
	if (query_has_empty(&q, "counter.name")) {
		reply_rlp(reply, 400, RLP_ERROR("missing_counter_name", "counter.name is invalid without value"));
		goto out;
	}
	if (query_has_empty(&q, "gauge.name")) {
		reply_rlp(reply, 400, RLP_ERROR("missing_gauge_name", "gauge.name is invalid without value"));
		goto out;
	}
	if (query_has_nul(&q)) {
		reply_rlp(reply, 400, RLP_ERROR("invalid_query", "query values cannot contain NUL"));
		goto out;
	}

	n_sid = query_count(&q, "source_id");
	per_sid = (log ? 1 : 0) + (counter ? (n_cn > 0 ? n_cn : 1) : 0) + (gauge ? (n_gv > 0 ? n_gv : 1) : 0) +
		  (timer ? 1 : 0) + (event ? 1 : 0);
	total = per_sid * (n_sid > 0 ? n_sid : 1);
	for (i = 0; i < q.n; i++) {
		if (strcmp(q.pairs[i].key, "gauge.name") != 0)
			continue;
		k = count_char(q.pairs[i].value, ',') + 1;
		if (k > LGR_SELECT_MAX_GAUGE_NAMES)
			total = SIZE_MAX;
		n_gnames += k;
	}
	if (total > LGR_SELECT_MAX_SELECTORS) {
		reply_rlp(reply, 400, RLP_ERROR("too_many_selectors", "query selects too much"));
		goto out;
	}

	rc = LGR_ENOMEM;
	out->ptrs = malloc((n_sid + n_gnames + 1) * sizeof(*out->ptrs));
	out->req.selectors = calloc(total, sizeof(*out->req.selectors));
	gauge_start = malloc((n_gv + 1) * sizeof(*gauge_start));
	gauge_counts = malloc((n_gv + 1) * sizeof(*gauge_counts));
	if (out->ptrs == NULL || out->req.selectors == NULL || gauge_start == NULL || gauge_counts == NULL)
		goto out;

	/* the source ids, then each gauge.name value cut at its commas, all pointing into the arena */
	p = 0;
	out->source_ids = out->ptrs;
	for (i = 0; i < q.n; i++)
		if (strcmp(q.pairs[i].key, "source_id") == 0)
			out->ptrs[p++] = q.pairs[i].value;
	out->n_source_ids = p;
	k = 0;
	for (i = 0; i < q.n; i++) {
		char *v = q.pairs[i].value, *c;

		if (strcmp(q.pairs[i].key, "gauge.name") != 0)
			continue;
		gauge_start[k] = p;
		gauge_counts[k] = 0;
		for (;;) {
			out->ptrs[p++] = v;
			gauge_counts[k]++;
			c = strchr(v, ',');
			if (c == NULL)
				break;
			*c = '\0';
			v = c + 1;
		}
		k++;
	}

	sel = 0;
	for (s = 0; s < (n_sid > 0 ? n_sid : 1); s++) {
		const char *sid = n_sid > 0 ? out->source_ids[s] : "";
		struct lgr_selector *x;

		if (log) {
			x = &out->req.selectors[sel++];
			x->source_id = sid;
			x->type = LGR_ENV_LOG;
		}
		if (counter && n_cn == 0) {
			x = &out->req.selectors[sel++];
			x->source_id = sid;
			x->type = LGR_ENV_COUNTER;
		}
		for (i = 0; counter && i < q.n; i++) {
			if (strcmp(q.pairs[i].key, "counter.name") != 0)
				continue;
			x = &out->req.selectors[sel++];
			x->source_id = sid;
			x->type = LGR_ENV_COUNTER;
			x->counter_name = q.pairs[i].value;
		}
		if (gauge && n_gv == 0) {
			x = &out->req.selectors[sel++];
			x->source_id = sid;
			x->type = LGR_ENV_GAUGE;
		}
		for (k = 0; gauge && k < n_gv; k++) {
			x = &out->req.selectors[sel++];
			x->source_id = sid;
			x->type = LGR_ENV_GAUGE;
			x->gauge_names = &out->ptrs[gauge_start[k]];
			x->n_gauge_names = gauge_counts[k];
		}
		if (timer) {
			x = &out->req.selectors[sel++];
			x->source_id = sid;
			x->type = LGR_ENV_TIMER;
		}
		if (event) {
			x = &out->req.selectors[sel++];
			x->source_id = sid;
			x->type = LGR_ENV_EVENT;
		}
	}
	out->req.n_selectors = sel;
	out->req.shard_id = query_first(&q, "shard_id");
	if (out->req.shard_id == NULL)
		out->req.shard_id = "";
	out->req.deterministic_name = query_first(&q, "deterministic_name");
	if (out->req.deterministic_name == NULL)
		out->req.deterministic_name = "";
	out->req.use_preferred_tags = true;
	out->arena = q.arena;
	q.arena = NULL; /* ownership transferred */
	rc = LGR_OK;
out:
	if (rc == LGR_ENOMEM)
		reply_internal(reply);
	if (rc != LGR_OK)
		lgr_gateway_read_cleanup(out);
	free(gauge_start);
	free(gauge_counts);
	query_free(&q);
	return rc;
}

int lgr_gateway_read_request(const struct lgr_gateway_tokens *tokens, const char *method, const char *authorization,
	const char *query, size_t len, struct lgr_gateway_read *out, struct lgr_gateway_reply *reply)
{
	struct query q;
	const char **sids = NULL;
	size_t i, n = 0;
	bool ok;
	int rc;

	if (out != NULL)
		memset(out, 0, sizeof(*out));
	if (out == NULL || method == NULL || (query == NULL && len > 0)) {
		reply_internal(reply);
		return LGR_EINVAL;
	}
	if (len > LGR_GATEWAY_MAX_QUERY) {
		reply_too_long(reply);
		return LGR_ETOOBIG;
	}
	if (tokens != NULL) {
		/* the real gateway authorizes the source_id values before it looks at anything else */
		rc = query_split(query != NULL ? query : "", len, &q);
		if (rc != LGR_OK) {
			reply_internal(reply);
			return rc;
		}
		sids = malloc((q.n + 1) * sizeof(*sids));
		if (sids == NULL) {
			query_free(&q);
			reply_internal(reply);
			return LGR_ENOMEM;
		}
		for (i = 0; i < q.n; i++)
			if (strcmp(q.pairs[i].key, "source_id") == 0)
				sids[n++] = q.pairs[i].value;
		ok = lgr_gateway_authorized(tokens, authorization, sids, n);
		free(sids);
		query_free(&q);
		if (!ok) {
			lgr_gateway_reply_not_found(reply);
			return LGR_EINVAL;
		}
	}
	if (strcmp(method, "GET") != 0) {
		lgr_gateway_reply_method_not_allowed(reply);
		return LGR_EINVAL;
	}
	return lgr_gateway_read_parse(query, len, out, reply);
}

/* --- bearer tokens ----------------------------------------------------------------------------------------------- */

struct token {
	const char *token;
	size_t line;
	bool admin;
	size_t n_ids;
	const char **ids;
};

struct lgr_gateway_tokens {
	char *text; /* a copy of the file, cut into NUL-terminated fields */
	size_t n;
	struct token *tokens; /* sorted by token */
	const char **ids;     /* all source ids, each token's in one run */
};

void lgr_gateway_tokens_free(struct lgr_gateway_tokens *t)
{
	if (t == NULL)
		return;
	free(t->text);
	free(t->tokens);
	free(t->ids);
	free(t);
}

size_t lgr_gateway_tokens_count(const struct lgr_gateway_tokens *t)
{
	return t != NULL ? t->n : 0;
}

static bool is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

static int token_cmp(const void *a, const void *b)
{
	return strcmp(((const struct token *)a)->token, ((const struct token *)b)->token);
}

/* Cuts the next blank-separated field of line [*p, end); NULL at the end of the line. */
static char *next_field(char **p, char *end)
{
	char *s = *p, *f;

	while (s < end && is_blank(*s))
		s++;
	if (s == end) {
		*p = s;
		return NULL;
	}
	f = s;
	while (s < end && !is_blank(*s))
		s++;
	if (s < end)
		*s++ = '\0';
	*p = s;
	return f;
}

int lgr_gateway_tokens_parse(const char *text, size_t len, struct lgr_gateway_tokens **out, size_t *line)
{
	struct lgr_gateway_tokens *t = NULL;
	size_t lines = 1, commas = 0, i, lineno = 0, nid = 0;
	char *p, *end, *eol, *tok, *list, *extra, *id, *c;
	int rc = LGR_EINVAL;

	if (line != NULL)
		*line = 0;
	if (out != NULL)
		*out = NULL;
	if (out == NULL || (text == NULL && len > 0))
		goto out;
	rc = LGR_ETOOBIG;
	if (len > LGR_GATEWAY_MAX_TOKENS_FILE)
		goto out;
	for (i = 0; i < len; i++) {
		if (text[i] == '\n')
			lines++;
		else if (text[i] == ',')
			commas++;
	}
	rc = LGR_ENOMEM;
	t = calloc(1, sizeof(*t));
	if (t == NULL)
		goto out;
	t->text = malloc(len + 1);
	t->tokens = calloc(lines, sizeof(*t->tokens));
	t->ids = calloc(lines + commas, sizeof(*t->ids));
	if (t->text == NULL || t->tokens == NULL || t->ids == NULL)
		goto out;
	if (len > 0)
		memcpy(t->text, text, len);
	t->text[len] = '\0';

	rc = LGR_EDECODE;
	end = t->text + len;
	for (p = t->text; p < end; p = eol + 1) {
		lineno++;
		eol = memchr(p, '\n', (size_t)(end - p));
		if (eol == NULL)
			eol = end;
		*eol = '\0';
		if (memchr(p, '\0', (size_t)(eol - p)) != NULL)
			goto bad_line;
		tok = next_field(&p, eol);
		if (tok == NULL || tok[0] == '#')
			continue;
		list = next_field(&p, eol);
		extra = next_field(&p, eol);
		if (list == NULL || extra != NULL)
			goto bad_line;
		t->tokens[t->n].token = tok;
		t->tokens[t->n].line = lineno;
		if (strcmp(list, "admin") == 0) {
			t->tokens[t->n].admin = true;
		} else {
			t->tokens[t->n].ids = &t->ids[nid];
			for (id = list;; id = c + 1) {
				c = strchr(id, ',');
				if (c != NULL)
					*c = '\0';
				if (id[0] == '\0')
					goto bad_line;
				t->ids[nid++] = id;
				t->tokens[t->n].n_ids++;
				if (c == NULL)
					break;
			}
		}
		t->n++;
	}
	qsort(t->tokens, t->n, sizeof(*t->tokens), token_cmp);
	for (i = 1; i < t->n; i++) {
		if (strcmp(t->tokens[i - 1].token, t->tokens[i].token) == 0) {
			/* the later of the two lines */
			lineno = t->tokens[i - 1].line > t->tokens[i].line ? t->tokens[i - 1].line : t->tokens[i].line;
			goto bad_line;
		}
	}
	*out = t;
	t = NULL; /* ownership transferred */
	rc = LGR_OK;
	goto out;
bad_line:
	if (line != NULL)
		*line = lineno;
out:
	lgr_gateway_tokens_free(t);
	return rc;
}

int lgr_gateway_tokens_load(const char *path, struct lgr_gateway_tokens **out, size_t *line)
{
	FILE *f = NULL;
	char *buf = NULL;
	size_t n = 0, cap = 4096, k;
	int rc = LGR_EINVAL;

	if (line != NULL)
		*line = 0;
	if (out != NULL)
		*out = NULL;
	if (path == NULL || out == NULL)
		goto out;
	rc = LGR_EIO;
	f = fopen(path, "rb");
	if (f == NULL) {
		lgr_log(LGR_LOG_ERR, "gateway: cannot open tokens file %s: %s", path, strerror(errno));
		goto out;
	}
	for (;;) {
		char *nb;

		if (n == cap || buf == NULL) {
			rc = LGR_ETOOBIG;
			if (n > LGR_GATEWAY_MAX_TOKENS_FILE)
				goto out;
			rc = LGR_ENOMEM;
			cap = buf == NULL ? cap : cap * 2;
			nb = realloc(buf, cap);
			if (nb == NULL)
				goto out;
			buf = nb;
		}
		k = fread(buf + n, 1, cap - n, f);
		n += k;
		if (k == 0)
			break;
	}
	rc = LGR_EIO;
	if (ferror(f)) {
		lgr_log(LGR_LOG_ERR, "gateway: cannot read tokens file %s", path);
		goto out;
	}
	rc = lgr_gateway_tokens_parse(buf, n, out, line);
out:
	if (f != NULL)
		fclose(f);
	free(buf);
	return rc;
}

static const struct token *token_find(const struct lgr_gateway_tokens *t, const char *tok, size_t len)
{
	size_t lo = 0, hi = t->n, mid;
	int c;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		c = strncmp(t->tokens[mid].token, tok, len);
		if (c == 0 && t->tokens[mid].token[len] != '\0')
			c = 1;
		if (c == 0)
			return &t->tokens[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static bool token_has(const struct token *k, const char *id)
{
	size_t i;

	for (i = 0; i < k->n_ids; i++)
		if (strcmp(k->ids[i], id) == 0)
			return true;
	return false;
}

static bool blank_or_space(char c)
{
	return c == ' ' || c == '\t';
}

bool lgr_gateway_authorized(
	const struct lgr_gateway_tokens *t, const char *authorization, const char *const *source_ids, size_t n)
{
	const char *s, *e;
	const struct token *k;
	size_t i;

	if (t == NULL || authorization == NULL || (source_ids == NULL && n > 0))
		return false;
	s = authorization;
	while (blank_or_space(*s))
		s++;
	if (strncasecmp(s, "bearer", 6) == 0 && blank_or_space(s[6])) {
		s += 6;
		while (blank_or_space(*s))
			s++;
	}
	e = s + strlen(s);
	while (e > s && blank_or_space(e[-1]))
		e--;
	if (e == s)
		return false;
	k = token_find(t, s, (size_t)(e - s));
	if (k == NULL)
		return false;
	if (k->admin)
		return true;
	if (n == 0)
		return false;
	for (i = 0; i < n; i++)
		if (source_ids[i] == NULL || !token_has(k, source_ids[i]))
			return false;
	return true;
}

/* --- server-sent events ------------------------------------------------------------------------------------------ */

static const struct lgr_gateway_header sse_headers[] = {
	{"Cache-Control", "no-cache"},
	{"Connection", "keep-alive"},
	{"Content-Type", "text/event-stream"},
};
static const struct lgr_gateway_header sse_headers_h2[] = {
	{"Cache-Control", "no-cache"},
	{"Content-Type", "text/event-stream"},
};

const struct lgr_gateway_header *lgr_gateway_sse_headers(bool http11, size_t *n)
{
	if (http11) {
		*n = sizeof(sse_headers) / sizeof(sse_headers[0]);
		return sse_headers;
	}
	*n = sizeof(sse_headers_h2) / sizeof(sse_headers_h2[0]);
	return sse_headers_h2;
}

/* Wraps json (malloc'd, len bytes) as prefix + json + suffix in place; frees json on failure. */
static int wrap(char *json, size_t len, const char *prefix, const char *suffix, char **out, size_t *out_len)
{
	size_t pl = strlen(prefix), sl = strlen(suffix);
	char *b = realloc(json, pl + len + sl + 1);

	if (b == NULL) {
		free(json);
		return LGR_ENOMEM;
	}
	memmove(b + pl, b, len);
	memcpy(b, prefix, pl);
	memcpy(b + pl + len, suffix, sl + 1);
	*out = b;
	*out_len = pl + len + sl;
	return LGR_OK;
}

int lgr_gateway_sse_data(struct lgr_env *const *envs, size_t n, char **out, size_t *out_len)
{
	char *json = NULL;
	size_t len;
	int rc;

	if (out != NULL)
		*out = NULL;
	if (out == NULL || out_len == NULL)
		return LGR_EINVAL;
	rc = lgr_json_write_batch(envs, n, 0, &json, &len);
	if (rc != LGR_OK)
		return rc;
	return wrap(json, len, "data: ", "\n\n", out, out_len);
}

int lgr_gateway_sse_heartbeat(int64_t unix_seconds, char *buf, size_t size)
{
	int k;

	if (buf == NULL)
		return LGR_EINVAL;
	k = snprintf(buf, size, "event: heartbeat\ndata: %" PRId64 "\n\n", unix_seconds);
	if (k < 0 || (size_t)k >= size)
		return LGR_EINVAL;
	return k;
}

/* --- /api/v1/read/{source_id} ------------------------------------------------------------------------------------ */

void lgr_gateway_lc_reply_method(struct lgr_gateway_reply *reply)
{
	reply_status(reply, 501, 12, "Method Not Allowed");
}

int lgr_gateway_lc_path(const char *path, size_t len, char **source_id, struct lgr_gateway_reply *reply)
{
	const size_t pl = sizeof(LGR_GATEWAY_LC_PREFIX) - 1;
	const char *bad;
	size_t bad_len;
	char *id = NULL;
	long k;

	if (source_id != NULL)
		*source_id = NULL;
	if (source_id == NULL || (path == NULL && len > 0)) {
		reply_internal(reply);
		return LGR_EINVAL;
	}
	if (len > LGR_GATEWAY_MAX_QUERY) {
		reply_too_long(reply);
		return LGR_ETOOBIG;
	}
	if (len <= pl || memcmp(path, LGR_GATEWAY_LC_PREFIX, pl) != 0 || memchr(path + pl, '/', len - pl) != NULL) {
		reply_status(reply, 404, 5, "Not Found");
		return LGR_EINVAL;
	}
	id = malloc(len - pl + 1);
	if (id == NULL) {
		reply_internal(reply);
		return LGR_ENOMEM;
	}
	k = unescape(path + pl, len - pl, id, false, &bad, &bad_len);
	if (k < 0) {
		free(id);
		reply_set(reply, 400, TEXT_PLAIN, false, "400 Bad Request");
		return LGR_EDECODE;
	}
	/* Go routes on the decoded path: a %2F makes a second segment, a %00 cannot be a C string */
	if (memchr(id, '/', (size_t)k) != NULL || strlen(id) != (size_t)k) {
		free(id);
		reply_status(reply, 404, 5, "Not Found");
		return LGR_EINVAL;
	}
	*source_id = id;
	return LGR_OK;
}

enum lc_field { LC_NONE, LC_START, LC_END, LC_LIMIT, LC_TYPES, LC_DESC };

static enum lc_field lc_field_of(const char *key, const char **proto_name)
{
	static const struct {
		const char *name, *json;
		enum lc_field f;
	} fields[] = {
		{"start_time", "startTime", LC_START},
		{"end_time", "endTime", LC_END},
		{"limit", "limit", LC_LIMIT},
		{"envelope_types", "envelopeTypes", LC_TYPES},
		{"descending", "descending", LC_DESC},
	};
	size_t i;

	for (i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		if (strcmp(key, fields[i].name) == 0 || strcmp(key, fields[i].json) == 0) {
			*proto_name = fields[i].name;
			return fields[i].f;
		}
	}
	return LC_NONE;
}

/* Go's strconv.ParseInt(s, 10, 64): 0, or 1 for invalid syntax, 2 for out of range. */
static int parse_int64(const char *s, int64_t *v)
{
	bool neg = false;
	uint64_t u = 0, lim;

	if (*s == '+' || *s == '-')
		neg = *s++ == '-';
	if (*s == '\0')
		return 1;
	lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9')
			return 1;
		if (u > (lim - (uint64_t)(*s - '0')) / 10) {
			/* Go reports the range only when the rest is digits too */
			for (s++; *s != '\0'; s++)
				if (*s < '0' || *s > '9')
					return 1;
			return 2;
		}
		u = u * 10 + (uint64_t)(*s - '0');
	}
	*v = neg ? (int64_t)(0 - u) : (int64_t)u;
	return 0;
}

static int parse_bool(const char *s, bool *v)
{
	static const char *const t[] = {"1", "t", "T", "TRUE", "true", "True"};
	static const char *const f[] = {"0", "f", "F", "FALSE", "false", "False"};
	size_t i;

	for (i = 0; i < 6; i++) {
		if (strcmp(s, t[i]) == 0) {
			*v = true;
			return 0;
		}
		if (strcmp(s, f[i]) == 0) {
			*v = false;
			return 0;
		}
	}
	return 1;
}

/* Log Cache's EnvelopeType by name or number: 0 ANY .. 5 EVENT, or -1. */
static int parse_type(const char *s)
{
	static const char *const names[] = {"ANY", "LOG", "COUNTER", "GAUGE", "TIMER", "EVENT"};
	int64_t v;
	int i;

	for (i = 0; i < 6; i++)
		if (strcmp(s, names[i]) == 0)
			return i;
	/* strconv.Atoi: a decimal with an optional sign */
	if (parse_int64(s, &v) == 0 && v >= 0 && v <= 5)
		return (int)v;
	return -1;
}

static bool has_nul(const struct pair *p)
{
	return strlen(p->value) != p->vlen;
}

static int lc_bad(struct lgr_gateway_reply *reply, struct sbuf *b)
{
	reply_status(reply, 400, 3, b->p);
	return LGR_EDECODE;
}

int lgr_gateway_lc_query(
	const char *query, size_t len, int64_t now_ns, struct lgr_gateway_lc_read *out, struct lgr_gateway_reply *reply)
{
	static const char *const num_err[] = {"", "invalid syntax", "value out of range"};
	struct query q;
	struct lgr_gateway_lc_read r = {0};
	int64_t limit = 0, v;
	const char *name;
	char msg[400];
	struct sbuf b = {.p = msg, .size = sizeof(msg)};
	size_t i, j;
	bool seen, desc;
	int rc, e, t;

	msg[0] = '\0';
	if (out == NULL || (query == NULL && len > 0)) {
		reply_internal(reply);
		return LGR_EINVAL;
	}
	memset(out, 0, sizeof(*out));
	if (len > LGR_GATEWAY_MAX_QUERY) {
		reply_too_long(reply);
		return LGR_ETOOBIG;
	}
	rc = query_split(query != NULL ? query : "", len, &q);
	if (rc != LGR_OK) {
		reply_internal(reply);
		return rc;
	}
	rc = LGR_EDECODE;
	if (q.err[0] != '\0') {
		sb_puts(&b, q.err);
		rc = lc_bad(reply, &b);
		goto out;
	}
	/* each key once, in the order of its first appearance, with all its values */
	for (i = 0; i < q.n; i++) {
		enum lc_field f = lc_field_of(q.pairs[i].key, &name);
		size_t nv = 0;

		if (f == LC_NONE)
			continue;
		for (j = 0, seen = false; j < i && !seen; j++)
			seen = strcmp(q.pairs[j].key, q.pairs[i].key) == 0;
		if (seen)
			continue;
		for (j = i; j < q.n; j++)
			nv += strcmp(q.pairs[j].key, q.pairs[i].key) == 0;
		if (f == LC_TYPES) {
			r.type_mask = 0;
			for (j = i; j < q.n; j++) {
				if (strcmp(q.pairs[j].key, q.pairs[i].key) != 0)
					continue;
				t = has_nul(&q.pairs[j]) ? -1 : parse_type(q.pairs[j].value);
				if (t < 0) {
					sb_printf(&b, "parsing list \"%s\": ", name);
					sb_quote(&b, q.pairs[j].value, q.pairs[j].vlen);
					sb_puts(&b, " is not a valid value");
					rc = lc_bad(reply, &b);
					goto out;
				}
				if (t != 0)
					r.type_mask |= 1u << (unsigned)t;
			}
			continue;
		}
		if (nv > 1) {
			sb_printf(&b, "too many values for field \"%s\": ", name);
			for (j = i, nv = 0; j < q.n; j++) {
				if (strcmp(q.pairs[j].key, q.pairs[i].key) != 0)
					continue;
				if (nv++ > 0)
					sb_puts(&b, ", ");
				sb_write(&b, q.pairs[j].value, q.pairs[j].vlen);
			}
			rc = lc_bad(reply, &b);
			goto out;
		}
		if (f == LC_DESC) {
			if (has_nul(&q.pairs[i]) || parse_bool(q.pairs[i].value, &desc) != 0) {
				sb_printf(&b, "parsing field \"%s\": strconv.ParseBool: parsing ", name);
				sb_quote(&b, q.pairs[i].value, q.pairs[i].vlen);
				sb_puts(&b, ": invalid syntax");
				rc = lc_bad(reply, &b);
				goto out;
			}
			r.descending = desc;
			continue;
		}
		e = has_nul(&q.pairs[i]) ? 1 : parse_int64(q.pairs[i].value, &v);
		if (e != 0) {
			sb_printf(&b, "parsing field \"%s\": strconv.ParseInt: parsing ", name);
			sb_quote(&b, q.pairs[i].value, q.pairs[i].vlen);
			sb_printf(&b, ": %s", num_err[e]);
			rc = lc_bad(reply, &b);
			goto out;
		}
		if (f == LC_START)
			r.start_time = v;
		else if (f == LC_END)
			r.end_time = v;
		else
			limit = v;
	}

	/* Log Cache's reader: plain errors, which gRPC turns into Unknown and grpc-gateway into 500 */
	rc = LGR_EINVAL;
	if (r.end_time != 0 && r.start_time > r.end_time) {
		sb_printf(&b, "StartTime (%" PRId64 ") must be before EndTime (%" PRId64 ")", r.start_time, r.end_time);
		reply_status(reply, 500, 2, msg);
		goto out;
	}
	if (limit > LGR_GATEWAY_LC_MAX_LIMIT) {
		sb_printf(&b, "limit (%" PRId64 ") must be 1000 or less", limit);
		reply_status(reply, 500, 2, msg);
		goto out;
	}
	if (limit < 0) {
		sb_printf(&b, "limit (%" PRId64 ") must be greater than zero", limit);
		reply_status(reply, 500, 2, msg);
		goto out;
	}
	if (r.end_time == 0)
		r.end_time = now_ns;
	r.limit = limit == 0 ? LGR_GATEWAY_LC_DEFAULT_LIMIT : (size_t)limit;
	*out = r;
	rc = LGR_OK;
out:
	query_free(&q);
	return rc;
}

int lgr_gateway_lc_body(struct lgr_env *const *envs, size_t n, char **out, size_t *out_len)
{
	char *json = NULL;
	size_t len;
	int rc;

	if (out != NULL)
		*out = NULL;
	if (out == NULL || out_len == NULL)
		return LGR_EINVAL;
	rc = lgr_json_write_batch(envs, n, 0, &json, &len);
	if (rc != LGR_OK)
		return rc;
	return wrap(json, len, "{\"envelopes\":", "}", out, out_len);
}
