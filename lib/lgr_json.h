/*
 * lgr_json.h: the JSON form of v2 envelopes, both directions, as the real RLP gateway writes it and as
 * protobuf's JSON parser reads it (wire.md section 5).
 *
 * Envelope -> JSON: protobuf's canonical JSON with unpopulated fields emitted and the proto field names:
 *
 *   {"timestamp":"<int64>","source_id":"..","instance_id":"..","deprecated_tags":{"k":{"text":".."}|
 *    {"integer":"<int64>"}|{"decimal":<number>}},"tags":{"k":".."}, <one of>
 *    "log":{"payload":"<base64>","type":"OUT"|"ERR"}        "counter":{"name":"..","delta":"<u64>","total":"<u64>"}
 *    "gauge":{"metrics":{"name":{"unit":"..","value":<number>}}}  "timer":{"name":"..","start":"<i64>","stop":"<i64>"}
 *    "event":{"title":"..","body":".."}}
 *
 * 64-bit integers are JSON strings; doubles are numbers in their shortest round-trip form, except NaN, Infinity and
 * -Infinity, which are the strings "NaN", "Infinity", "-Infinity"; bytes are standard base64 with padding. Strings
 * that are not valid UTF-8 have each offending byte replaced by U+FFFD, so the output is always valid JSON. A map
 * key present more than once in the envelope (possible on the protobuf wire) is written once, with its last value,
 * because protobuf's JSON parser rejects duplicate keys.
 *
 * JSON -> envelope accepts what protobuf's JSON parser accepts for these messages: keys in snake_case or
 * lowerCamelCase (sourceId, instanceId, deprecatedTags), 64-bit integers as strings or numbers (also "1e3", "2.0"
 * when the value is an exact integer), doubles as numbers or strings (and "NaN", "Infinity", "-Infinity"), enums by
 * name or number, missing or null fields as defaults, base64 standard or URL-safe, with or without padding. It
 * rejects what that parser rejects: wrong JSON types, unknown keys (unless LGR_JSON_DISCARD_UNKNOWN), the same field
 * under both spellings, two members of a oneof, invalid UTF-8, out-of-range numbers. Two known differences, both
 * from json-c: a key repeated with the same spelling keeps its last value instead of being an error, and a raw
 * control character inside a string is an error here only for text input, not for a caller's json_object.
 * A string containing U+0000 is refused with LGR_EUNSUPPORTED: the envelope keeps strings NUL-terminated.
 *
 * Threading: every function is reentrant; envelopes are only read. Numbers are formatted and parsed in the C locale
 * whatever the process locale (rsyslogd calls setlocale).
 */
#ifndef LGR_JSON_H
#define LGR_JSON_H

#include <stddef.h>

#include "lgr.h"
#include "lgr_env.h"

struct json_object;

/* Flags, envelope -> JSON: leave log.payload out (log.type stays); for rsyslog, where the payload is the message. */
#define LGR_JSON_NO_PAYLOAD 0x1u
/* Flags, JSON -> envelope: skip keys this schema does not know instead of failing with LGR_EDECODE. */
#define LGR_JSON_DISCARD_UNKNOWN 0x2u

/*
 * Builds the JSON form of env as a new json-c object (*out, refcount 1, owned by the caller: json_object_put).
 * flags: 0 or LGR_JSON_NO_PAYLOAD. Finite doubles carry their shortest text, so json_object_to_json_string()
 * prints the same numbers as lgr_json_write().
 * Returns LGR_OK; LGR_EINVAL (NULL argument); LGR_ETOOBIG (a string longer than json-c can hold, INT_MAX);
 * LGR_ENOMEM. On error *out is NULL.
 */
int lgr_json_build(const struct lgr_env *env, unsigned flags, struct json_object **out);

/* As lgr_json_build for {"batch":[...]} of envs[0..n-1] (n may be 0). Same return codes. */
int lgr_json_build_batch(struct lgr_env *const *envs, size_t n, unsigned flags, struct json_object **out);

/*
 * Serializes env straight to compact JSON text, without building json-c objects (the gateway's hot path).
 * *out is malloc'd, NUL-terminated, owned by the caller (free); *out_len excludes the NUL. flags as lgr_json_build.
 * Returns LGR_OK; LGR_EINVAL (NULL argument); LGR_ENOMEM. On error *out is NULL.
 */
int lgr_json_write(const struct lgr_env *env, unsigned flags, char **out, size_t *out_len);

/* As lgr_json_write for {"batch":[...]} of envs[0..n-1] (n may be 0): one SSE data line's payload. */
int lgr_json_write_batch(struct lgr_env *const *envs, size_t n, unsigned flags, char **out, size_t *out_len);

/*
 * Parses one Envelope from JSON text buf[0..len) (no NUL needed; whitespace around the value is allowed, anything
 * else after it is not). len is checked against lim->max_message before anything is parsed; nesting is bounded
 * by lim->max_depth; tag and metric counts are checked against lim before their arrays are allocated
 * (lim NULL: defaults). flags: 0 or LGR_JSON_DISCARD_UNKNOWN.
 * Returns LGR_OK and *out (refcount 1, owned by the caller); LGR_EINVAL (NULL argument); LGR_ETOOBIG (len, or the
 * strings of the envelope together, over lim->max_message); LGR_ELIMIT (too many tags or metrics, nesting deeper
 * than lim->max_depth); LGR_EDECODE (not JSON, wrong JSON type, bad base64, out-of-range number, unknown key, a
 * field given twice, two oneof members, invalid UTF-8); LGR_EUNSUPPORTED (a string containing U+0000);
 * LGR_ENOMEM. On error *out is NULL.
 */
int lgr_json_parse(const char *buf, size_t len, const struct lgr_limits *lim, unsigned flags, struct lgr_env **out);

/*
 * Parses an EnvelopeBatch {"batch":[...]} from JSON text and hands each envelope to fn in order (fn takes
 * ownership of env), as lgr_env_decode_batch: every envelope is decoded before the first is handed over, so fn
 * sees either all of them or none. At most lim->max_batch envelopes; lim->max_message bounds the text and the
 * strings of all envelopes together. A non-zero return of fn stops the walk (the remaining envelopes are freed)
 * and is returned.
 * Returns LGR_OK, the codes of lgr_json_parse (LGR_ELIMIT also for too many envelopes), or fn's code.
 */
int lgr_json_parse_batch(
	const char *buf, size_t len, const struct lgr_limits *lim, unsigned flags, lgr_env_sink *fn, void *ud);

/*
 * As lgr_json_parse, from a json-c object tree the caller already holds (not modified; the caller keeps its
 * reference). The limits on strings, tags and metrics apply as for text; nesting was the caller's business.
 * Returns the codes of lgr_json_parse.
 */
int lgr_json_from_object(struct json_object *obj, const struct lgr_limits *lim, unsigned flags, struct lgr_env **out);

/* As lgr_json_parse_batch, from a json-c object tree. Returns the codes of lgr_json_parse_batch. */
int lgr_json_batch_from_object(
	struct json_object *obj, const struct lgr_limits *lim, unsigned flags, lgr_env_sink *fn, void *ud);

#endif
