/*
 * lgr_gateway.h: the protocol logic of omfirehose's HTTP gateway, without the transport: what the real RLP gateway
 * (GET /v2/read, server-sent events) and Log Cache (GET /api/v1/read/{source_id}) decide from a request, and the
 * bytes they answer with (wire.md sections 4 and 5). The HTTP server (lgr_http) feeds it the method, path, query
 * and Authorization header, and sends what it returns.
 *
 * /v2/read, in the real gateway's order:
 *   1. authorization (lgr_gateway_authorized, for the request's source_id values): any failure -> 404 not_found;
 *   2. method: anything but GET -> 405 method_not_allowed;
 *   3. query -> selectors (lgr_gateway_read_parse): 400 empty_query, missing_envelope_type, missing_counter_name,
 *      missing_gauge_name.
 * lgr_gateway_read_request does the three steps. Query parsing follows Go's url.ParseQuery: pairs split on '&',
 * key and value percent-decoded with '+' as space; a pair containing ';' or a bad %-escape is dropped silently; an
 * empty pair is skipped. A flag counts by the presence of its key, whatever its value. For every source_id value
 * (or once with "" = any source when there is none), in this order: `log`; `counter` / `counter.name`: one
 * selector per counter.name value, or one for any counter when there is none (the `counter` flag adds nothing
 * once a counter.name is given); `gauge` / `gauge.name`: one selector per gauge.name value with the set of its
 * comma-separated names, or one for any gauge; `timer`; `event`. shard_id and deterministic_name take their first
 * value; use_preferred_tags is always true.
 * One deliberate difference from the real gateway: there, a counter.name or gauge.name without a value selects
 * any counter / the gauges with a metric named "" (its missing_*_name checks can never fire, because Go gives such
 * a key the value ""); here, as the product's spec says, an empty counter.name or gauge.name value is refused with
 * missing_counter_name / missing_gauge_name.
 *
 * Error bodies are the real gateway's bytes: Go's http.Error of the JSON error plus the newline of Go's JSON
 * encoder plus http.Error's own newline, sent with Content-Type "text/plain; charset=utf-8" and
 * "X-Content-Type-Options: nosniff".
 *
 * /api/v1/read/{source_id}, in Log Cache's order: path -> source id (404 with an empty body when no token may read
 * it, as Log Cache's auth proxy answers); query -> struct lgr_gateway_lc_read, with grpc-gateway's errors (400,
 * {"code":3,"message":...,"details":[]}) for what does not parse and Log Cache's reader errors (500,
 * {"code":2,...}) for values out of range; the answer {"envelopes":{"batch":[...]}}.
 *
 * Threading: every function is reentrant; a tokens set is read-only once loaded and may be shared by threads.
 */
#ifndef LGR_GATEWAY_H
#define LGR_GATEWAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lgr.h"
#include "lgr_env.h"
#include "lgr_select.h"

#define LGR_GATEWAY_MAX_QUERY	    65536u /* bytes of a query string (or path) accepted */
#define LGR_GATEWAY_REPLY_MAX	    512u   /* bytes of an error body */
#define LGR_GATEWAY_MAX_TOKENS_FILE (16u * 1024 * 1024)

/* An error answer: status, headers and body, ready to send. */
struct lgr_gateway_reply {
	int status;		  /* 400, 404, 405, 414, 500, 501 */
	const char *content_type; /* NULL: send no Content-Type (an empty body) */
	bool nosniff;		  /* also send X-Content-Type-Options: nosniff */
	size_t body_len;
	char body[LGR_GATEWAY_REPLY_MAX]; /* NUL-terminated; long quoted values are cut with "..." */
};

/* The real gateway's 404 for every authorization failure: {"message":"resource not found","error":"not_found"}. */
void lgr_gateway_reply_not_found(struct lgr_gateway_reply *reply);
/* Its 405 for a method other than GET on /v2/read. */
void lgr_gateway_reply_method_not_allowed(struct lgr_gateway_reply *reply);

/* --- /v2/read --------------------------------------------------------------------------------------------------- */

/*
 * A parsed /v2/read request. req is what the RLP's egress takes (lgr_select_add_req); its strings and gauge name
 * arrays point into storage this struct owns, so it must outlive every use of req (lgr_select_add copies them,
 * so it may be cleaned up once the subscriptions are added). source_ids are the decoded source_id values, in
 * order (what authorization checks; none = the firehose).
 */
struct lgr_gateway_read {
	struct lgr_select_req req;
	size_t n_source_ids;
	const char **source_ids;
	/* private */
	char *arena;
	const char **ptrs;
};

/*
 * Builds out from the raw query string query[0..len) (no leading '?'; need not be NUL-terminated). On any error
 * out is empty (cleanup is still safe) and *reply (if not NULL) is the answer to send.
 * Returns LGR_OK; LGR_EDECODE (400: empty_query, missing_envelope_type, missing_counter_name, missing_gauge_name,
 * too_many_selectors when more than LGR_SELECT_MAX_SELECTORS selectors or LGR_SELECT_MAX_GAUGE_NAMES names in
 * one gauge.name would result, or invalid_query when a source_id, counter.name, gauge.name, shard_id or
 * deterministic_name value holds %00: the real gateway has neither check, these two bodies are ours); LGR_ETOOBIG (414,
 * len over LGR_GATEWAY_MAX_QUERY); LGR_EINVAL (NULL argument; reply 500); LGR_ENOMEM (reply 500).
 */
int lgr_gateway_read_parse(
	const char *query, size_t len, struct lgr_gateway_read *out, struct lgr_gateway_reply *reply);

/* Frees what out owns and empties it. Safe on a zeroed or already cleaned struct. */
void lgr_gateway_read_cleanup(struct lgr_gateway_read *out);

struct lgr_gateway_tokens;

/*
 * The whole /v2/read decision: authorization (tokens NULL: no authorization, gateway.auth="none"), then the method,
 * then the query, as described at the top. authorization is the Authorization header's value or NULL.
 * Returns LGR_OK (out ready); LGR_EINVAL (404 not_found or 405, *reply set); the codes of lgr_gateway_read_parse.
 */
int lgr_gateway_read_request(const struct lgr_gateway_tokens *tokens, const char *method, const char *authorization,
	const char *query, size_t len, struct lgr_gateway_read *out, struct lgr_gateway_reply *reply);

/* --- bearer tokens --------------------------------------------------------------------------------------------- */

/*
 * Parses a tokens file (gateway.tokensFile): one token per line, `TOKEN admin` or `TOKEN SOURCE_ID[,SOURCE_ID...]`,
 * fields separated by spaces or tabs; blank lines and lines whose first non-blank character is '#' are skipped;
 * CRLF line ends are accepted. A token may appear once; a list may not have an empty element. On error *line is the
 * 1-based number of the offending line (0 when the error is not about a line), *out is NULL.
 * Returns LGR_OK and *out (owned by the caller: lgr_gateway_tokens_free; it may hold no token at all);
 * LGR_EDECODE (a line with one field, more than two, an empty source id, a NUL byte, a token given twice);
 * LGR_ETOOBIG (more than LGR_GATEWAY_MAX_TOKENS_FILE bytes); LGR_EINVAL (NULL argument); LGR_ENOMEM.
 */
int lgr_gateway_tokens_parse(const char *text, size_t len, struct lgr_gateway_tokens **out, size_t *line);

/* As lgr_gateway_tokens_parse, from a file. Returns its codes, or LGR_EIO when the file cannot be read. */
int lgr_gateway_tokens_load(const char *path, struct lgr_gateway_tokens **out, size_t *line);

void lgr_gateway_tokens_free(struct lgr_gateway_tokens *t); /* NULL is a no-op */

/* Tokens in the set. */
size_t lgr_gateway_tokens_count(const struct lgr_gateway_tokens *t);

/*
 * Whether the Authorization header value lets its bearer read source_ids[0..n). The header is "bearer TOKEN" with
 * the scheme in any case and one or more spaces or tabs after it (as Log Cache reads it), or the bare TOKEN (the
 * real RLP gateway strips a lower-case "bearer" only and sends the rest to UAA); surrounding blanks are ignored.
 * An admin token may read anything, including the firehose (n == 0 or a source id ""); any other token only when n
 * > 0 and every source id is one of its own. NULL or empty header, unknown token: false.
 */
bool lgr_gateway_authorized(
	const struct lgr_gateway_tokens *t, const char *authorization, const char *const *source_ids, size_t n);

/* --- server-sent events ---------------------------------------------------------------------------------------- */

struct lgr_gateway_header {
	const char *name;
	const char *value;
};

/*
 * The headers of a 200 /v2/read answer, in the order Go writes them: Cache-Control: no-cache,
 * Connection: keep-alive (HTTP/1.1 only: a connection-specific header is not allowed in HTTP/2),
 * Content-Type: text/event-stream. The HTTP layer adds Date and, for HTTP/1.1, Transfer-Encoding: chunked.
 * Returns a static array of *n headers.
 */
const struct lgr_gateway_header *lgr_gateway_sse_headers(bool http11, size_t *n);

/*
 * One data event for envs[0..n-1]: "data: " + the JSON EnvelopeBatch (lgr_json_write_batch) + "\n\n".
 * *out is malloc'd, NUL-terminated, owned by the caller; *out_len excludes the NUL.
 * Returns LGR_OK, or the codes of lgr_json_write_batch (LGR_EINVAL, LGR_ENOMEM); on error *out is NULL.
 */
int lgr_gateway_sse_data(struct lgr_env *const *envs, size_t n, char **out, size_t *out_len);

/*
 * "event: heartbeat\ndata: <unix_seconds>\n\n" into buf[0..size). Returns its length (without the NUL), or
 * LGR_EINVAL when buf is NULL or too small (LGR_GATEWAY_SSE_HEARTBEAT_MAX always suffices).
 */
#define LGR_GATEWAY_SSE_HEARTBEAT_MAX 48u
int lgr_gateway_sse_heartbeat(int64_t unix_seconds, char *buf, size_t size);

/* The last event of a stream that reached its timeout (14 minutes in the real gateway). */
#define LGR_GATEWAY_SSE_CLOSING "event: closing\ndata: closing due to stream timeout\n\n"

/* --- /api/v1/read/{source_id} (Log Cache) ---------------------------------------------------------------------- */

#define LGR_GATEWAY_LC_PREFIX	     "/api/v1/read/"
#define LGR_GATEWAY_LC_DEFAULT_LIMIT 100
#define LGR_GATEWAY_LC_MAX_LIMIT     1000

/*
 * The source id of a Log Cache read path "/api/v1/read/{source_id}" (no query; one non-empty segment, percent-
 * decoded, '+' kept), in *source_id (malloc'd, owned by the caller).
 * Returns LGR_OK; LGR_EINVAL (not a read path, including a decoded '/' or an empty segment: reply 404
 * {"code":5,"message":"Not Found","details":[]}, as grpc-gateway routes); LGR_EDECODE (a bad %-escape: reply 400,
 * as Go's HTTP server answers a URI it cannot parse); LGR_ETOOBIG (414); LGR_ENOMEM (500). reply may be NULL.
 */
int lgr_gateway_lc_path(const char *path, size_t len, char **source_id, struct lgr_gateway_reply *reply);

/*
 * grpc-gateway's answer to a method other than GET on a read path: 501
 * {"code":12,"message":"Method Not Allowed","details":[]}.
 */
void lgr_gateway_lc_reply_method(struct lgr_gateway_reply *reply);

/* A Log Cache read, validated and with Log Cache's defaults applied. */
struct lgr_gateway_lc_read {
	int64_t start_time; /* ns, inclusive; default 0 */
	int64_t end_time;   /* ns, exclusive; 0 or absent -> now_ns */
	unsigned type_mask; /* LGR_RECENT_TYPE bits (1u << LGR_ENV_*); 0: any type */
	size_t limit;	    /* 1 .. 1000; 0 or absent -> 100 */
	bool descending;
};

/*
 * Parses the query of a Log Cache read as grpc-gateway and Log Cache do. Keys by their proto name or JSON name:
 * start_time/startTime, end_time/endTime (int64 decimal, optional sign), limit, envelope_types/envelopeTypes
 * (repeatable; LOG, COUNTER, GAUGE, TIMER, EVENT, ANY by exact name or number 0..5; ANY is dropped, so the mask
 * holds the other types named, and no type at all means any), descending (Go's ParseBool: 1 t T TRUE true True,
 * 0 f F FALSE false False; a bare `descending` is the empty string, which is invalid). Unknown keys are ignored
 * (so are source_id and name_filter: the name regexp filter is not supported). now_ns is the current time.
 * Returns LGR_OK; LGR_EDECODE with reply 400 {"code":3,...}: a bad %-escape or ';' (Go's ParseForm: `invalid URL
 * escape "%zz"`, `invalid semicolon separator in query`), a value that does not parse (`parsing field "limit":
 * strconv.ParseInt: parsing "x": invalid syntax`, `... value out of range`, `parsing list "envelope_types": "x" is
 * not a valid value`), a singular key given twice (`too many values for field "limit": 1, 2`); LGR_EINVAL with reply
 * 500 {"code":2,...}: `StartTime (s) must be before EndTime (e)` (end_time set and below start_time),
 * `limit (n) must be 1000 or less`, `limit (n) must be greater than zero`; LGR_ETOOBIG (414); LGR_ENOMEM (500).
 */
int lgr_gateway_lc_query(const char *query, size_t len, int64_t now_ns, struct lgr_gateway_lc_read *out,
	struct lgr_gateway_reply *reply);

/*
 * The 200 body: {"envelopes":{"batch":[...]}} of envs[0..n-1] (n may be 0), Content-Type application/json.
 * *out is malloc'd and owned by the caller. Returns LGR_OK, LGR_EINVAL or LGR_ENOMEM; on error *out is NULL.
 */
int lgr_gateway_lc_body(struct lgr_env *const *envs, size_t n, char **out, size_t *out_len);

#endif
