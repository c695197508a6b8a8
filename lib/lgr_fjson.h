/*
 * lgr_fjson.h: the JSON form of v2 envelopes (wire.md section 5, as lgr_json.h describes it) as libfastjson
 * object trees, the representation rsyslog keeps message variables in ($!loggregator).
 *
 * lgr_json builds json-c trees; rsyslog links libfastjson, whose objects are a different type. This unit is the
 * bridge for the modules: an envelope becomes the tree stored under $!loggregator, and such a tree (as an output
 * reads it back) becomes an envelope again, without loss.
 *
 * Threading: every function is reentrant; envelopes are only read, trees given to lgr_fjson_parse() too (nothing is
 * cached in their nodes), so several threads may read one tree at once. Numbers are formatted and parsed in the C
 * locale whatever the process locale.
 */
#ifndef LGR_FJSON_H
#define LGR_FJSON_H

#include "lgr.h"
#include "lgr_env.h"
#include "lgr_json.h"

struct fjson_object;

/*
 * Builds the JSON form of env as a new libfastjson object (*out, refcount 1, owned by the caller:
 * fjson_object_put). flags: 0 or LGR_JSON_NO_PAYLOAD. The tree holds what lgr_json_write() writes for the same flags:
 * 64-bit integers as strings, finite doubles as double nodes carrying their shortest text, NaN and the infinities as
 * the strings "NaN", "Infinity", "-Infinity", the payload in base64, invalid UTF-8 in strings and keys replaced by
 * U+FFFD, a map key repeated in env once with its last value. Serialized with fjson_object_to_json_string_ext(...,
 * FJSON_TO_STRING_PLAIN), the text is what lgr_json_write() writes, except that libfastjson escapes '/' as "\/" and
 * writes U+FFFD as raw bytes; lgr_json_parse() reads it back to an envelope lgr_env_equal() to env. Every key is
 * added as new, so the result does not depend on fjson_global_do_case_sensitive_comparison().
 * Returns LGR_OK; LGR_EINVAL (NULL argument); LGR_ETOOBIG (a string longer than libfastjson can hold, INT_MAX);
 * LGR_ENOMEM. On error *out is NULL.
 */
int lgr_fjson_build(const struct lgr_env *env, unsigned flags, struct fjson_object **out);

/*
 * String nodes shared between the trees one thread builds. Most strings of a router's envelopes repeat: an app's
 * source id and instance ids, the platform's tags, a log's type. Built through this cache, a text seen before
 * becomes one more reference to the node made for it the first time, instead of a new 296-byte node (and, over 31
 * bytes, a copy of the text) that the thread freeing the message must free again. Texts of up to 128 bytes are
 * looked up; one slot per hash of the text (1024), kept by the value that hits it most.
 *
 * Threading: a cache belongs to one thread (no lock). The nodes it hands out may be released by any thread (their
 * reference count is atomic), and live on in the trees that hold them after the cache is freed. A tree built with a
 * cache shares its string nodes with other trees, as rsyslog's own copies of message variables do: libfastjson has
 * no call that changes a string node's text, and fjson_object_get_string() reads it in place.
 */
struct lgr_fjson_strings;

/* A new, empty cache (*out, lgr_fjson_strings_free). LGR_OK; LGR_EINVAL (out NULL); LGR_ENOMEM. */
int lgr_fjson_strings_new(struct lgr_fjson_strings **out);

/* Drops the cache's references (the trees keep theirs) and frees it. NULL is ignored. */
void lgr_fjson_strings_free(struct lgr_fjson_strings *c);

/* Texts found in the cache and texts not found (too long ones are not counted) since it was made; 0 for NULL. */
void lgr_fjson_strings_stats(const struct lgr_fjson_strings *c, uint64_t *hits, uint64_t *misses);

/* What lgr_fjson_build_log_wire() reads besides the tree: the parts of a message that are not in it. */
#define LGR_FJSON_WIRE_ID_MAX 256
struct lgr_fjson_wire_log {
	int64_t timestamp;
	char source_id[LGR_FJSON_WIRE_ID_MAX];	 /* as protobuf-c gives a string: up to its first NUL */
	char instance_id[LGR_FJSON_WIRE_ID_MAX]; /* likewise */
	const uint8_t *payload;			 /* log.payload, inside the caller's bytes */
	size_t payload_len;
	bool err;		   /* log.type ERR (else OUT) */
	struct fjson_object *tree; /* the caller's (fjson_object_put) */
};

/*
 * The input's hot path: builds the tree lgr_fjson_build(env, LGR_JSON_NO_PAYLOAD) gives for env = the Envelope
 * encoded in buf[0, len) (checked by lgr_pb_check_envelope() or lgr_pb_check_batch()), straight from the bytes
 * without decoding them first, for the case every sender produces: a Log envelope of type OUT or ERR, each singular
 * field at most once, no deprecated_tags, up to 16 tags with distinct, valid UTF-8 keys shorter than 256 bytes, ids
 * shorter than LGR_FJSON_WIRE_ID_MAX bytes. Any other envelope gives LGR_EUNSUPPORTED and nothing else: decode it and
 * use lgr_fjson_build(). strings: the calling thread's cache of string nodes, or NULL (every string a node of its
 * own); the tree is the same either way, node for node. Returns LGR_OK and *out (the tree owned by the caller, the
 * payload pointing into buf); LGR_EUNSUPPORTED; LGR_EINVAL; LGR_ENOMEM. On error out->tree is NULL.
 */
int lgr_fjson_build_log_wire(
	const uint8_t *buf, size_t len, struct lgr_fjson_strings *strings, struct lgr_fjson_wire_log *out);

/*
 * The agent's rules for Log envelopes (lgr_agent.h: rule 1, and rule 3 with these default tags; rule 2 has nothing to
 * do where there are no deprecated tags, and rule 4 is for counters), applied while the tree is built from the bytes.
 * The strings are the caller's, NUL-terminated, and must outlive the call; a key appears once.
 */
struct lgr_fjson_wire_rules {
	const char *const *default_keys; /* added after the envelope's tags, in this order, where the key is absent */
	const char *const *default_values;
	size_t ndefaults;
	bool checked; /* set by lgr_fjson_wire_rules_check: the builder need not look at the keys again */
};

/*
 * Checks once what lgr_fjson_build_log_wire_rules() would otherwise check for every envelope (the default keys below)
 * and marks the rules checked when the builder can apply them: LGR_OK; LGR_EUNSUPPORTED (the builder then refuses
 * every envelope, as it does with unchecked rules); LGR_EINVAL. Checked rules must not change afterwards.
 */
int lgr_fjson_wire_rules_check(struct lgr_fjson_wire_rules *r);

/*
 * lgr_fjson_build_log_wire() for an agent: the tree and parts are those lgr_fjson_build(env, LGR_JSON_NO_PAYLOAD)
 * and the decoded fields give for env = the envelope after lgr_agent_apply() with rules' default tags. An empty
 * source_id becomes the "origin" tag's value (the tree's and out->source_id), and the default tags are added as rule
 * 3 adds them. Besides lgr_fjson_build_log_wire()'s cases, LGR_EUNSUPPORTED also when a default key is not valid
 * UTF-8 or is 256 bytes or longer, and when the origin is too long for out->source_id. rules NULL: no rules.
 */
int lgr_fjson_build_log_wire_rules(const uint8_t *buf, size_t len, struct lgr_fjson_strings *strings,
	const struct lgr_fjson_wire_rules *rules, struct lgr_fjson_wire_log *out);

/*
 * Reads an Envelope from a libfastjson tree in the JSON form (not modified; the caller keeps its reference), with
 * the rules and limits of lgr_json_parse(): the tree's strings, tags and metrics are bounded by lim (NULL: defaults)
 * as text input is. flags: 0 or LGR_JSON_DISCARD_UNKNOWN.
 *
 * When payload is not NULL it becomes log.payload (payload_len bytes, any content, counted in lim->max_message) and
 * the tree must hold a non-null "log" member without "payload": this is how a message's %msg% and $!loggregator are
 * joined again. payload NULL with payload_len 0 reads log.payload from the tree.
 *
 * A tree is not text, so a few inputs read differently from lgr_json_parse() of the text libfastjson would print:
 * - an int node holds at most an int64: a uint64 counter above INT64_MAX must be a string (the builder writes all
 *   64-bit integers as strings; libfastjson's tokener saturates larger JSON numbers to INT64_MAX);
 * - a double node with its text (from libfastjson's tokener or the builder) is read like that text, exactly; one
 *   without (fjson_object_new_double, rsyslog's copies of message variables) is read by its value: an integer field
 *   takes it when it is integral and in range, a double field when it is finite;
 * - raw control characters in strings, invalid UTF-8 or U+0000 in keys or values this schema does not read (with
 *   LGR_JSON_DISCARD_UNKNOWN), and nesting of any depth are accepted: the text parser refuses them while reading the
 *   text, the tree has been read already. Unknown members are not looked into.
 *
 * Returns LGR_OK and *out (refcount 1, owned by the caller); LGR_EINVAL (out or obj NULL, payload NULL with
 * payload_len > 0); LGR_ETOOBIG (strings and payload together over lim->max_message); LGR_ELIMIT (too many tags or
 * metrics); LGR_EDECODE (wrong JSON type, bad base64, out-of-range number, unknown key, a field given twice, two oneof
 * members, invalid UTF-8 in a string read, "payload" in the tree while payload is given); LGR_EUNSUPPORTED (a string
 * read contains U+0000); LGR_EMISSING (payload given but the tree has no "log" member); LGR_ENOMEM. On error *out is
 * NULL.
 */
int lgr_fjson_parse(struct fjson_object *obj, const void *payload, size_t payload_len, const struct lgr_limits *lim,
	unsigned flags, struct lgr_env **out);

/*
 * As lgr_fjson_parse, into scratch (lgr_env.h): *view, read-only and valid until the scratch's next use, is the
 * envelope lgr_fjson_parse gives, with no allocation of its own (an output that only encodes envelopes reads each
 * message this way). LGR_EINVAL also when scratch is NULL.
 */
int lgr_fjson_parse_scratch(struct fjson_object *obj, const void *payload, size_t payload_len,
	const struct lgr_limits *lim, unsigned flags, struct lgr_env_scratch *scratch, const struct lgr_env **view);

/* A run of bytes inside a tree. */
struct lgr_fjson_text {
	const char *s; /* NUL-terminated there (the text holds no NUL) */
	size_t n;
};

/* What lgr_fjson_log_measure() found: size and source_id for the caller, the rest for lgr_fjson_log_pack(). */
#define LGR_FJSON_LOG_TAGS_MAX 32
struct lgr_fjson_log {
	size_t size;			   /* bytes of the encoding */
	struct lgr_fjson_text source_id;   /* the tree's ("" when absent) */
	struct lgr_fjson_text instance_id; /* likewise */
	int64_t timestamp;
	const void *payload;
	size_t payload_len;
	bool err;
	size_t log_len; /* bytes of the encoded Log */
	size_t ntags;
	struct lgr_fjson_text tags[LGR_FJSON_LOG_TAGS_MAX][2]; /* key, value */
};

/*
 * The outputs' hot path, the inverse of lgr_fjson_build_log_wire(): measures the encoding of the envelope that
 * lgr_fjson_parse(tree, payload, payload_len, lim, 0) reads, for the trees imloggregator makes of Log envelopes
 * without deprecated tags: members timestamp (an int node, or a string of decimal digits as the builders write it),
 * source_id, instance_id (strings), deprecated_tags (empty), tags (up to LGR_FJSON_LOG_TAGS_MAX strings) and log
 * (nothing, or only type "OUT" or "ERR"), in any order, each at most once, log present, in their proto spelling,
 * none null; strings and keys valid UTF-8 without U+0000; within lim (NULL: defaults). Every other tree (and every one
 * the reader would refuse) gives LGR_EUNSUPPORTED: read it with lgr_fjson_parse(). payload may hold any bytes.
 * Returns LGR_OK and *m; LGR_EUNSUPPORTED; LGR_EINVAL (tree or m NULL, payload NULL with payload_len > 0).
 * *m points into the tree and the payload: pack before either changes.
 */
int lgr_fjson_log_measure(struct fjson_object *tree, const void *payload, size_t payload_len,
	const struct lgr_limits *lim, struct lgr_fjson_log *m);

/* Writes the m->size bytes lgr_env_pack() writes for that envelope (fields in number order, as protobuf-c). */
void lgr_fjson_log_pack(const struct lgr_fjson_log *m, uint8_t *out);

#endif
