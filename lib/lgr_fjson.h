/*
 * lgr_fjson.h: the JSON form of v2 envelopes (wire.md section 5, as lgr_json.h describes it) as libfastjson
 * object trees, the representation rsyslog keeps message variables in ($!loggregator).
 *
 * lgr_json builds json-c trees; rsyslog links libfastjson, whose objects are a different type. This unit is the
 * bridge for the modules: an envelope becomes the tree stored under $!loggregator, and such a tree (as an output
 * reads it back) becomes an envelope again, without loss.
 *
 * Threading: every function is reentrant; envelopes are only read.
 */
#ifndef LGR_FJSON_H
#define LGR_FJSON_H

#include "lgr.h"
#include "lgr_env.h"
#include "lgr_json.h"

struct fjson_object;

/*
 * Builds the JSON form of env as a new libfastjson object (*out, refcount 1, owned by the caller:
 * fjson_object_put). flags: 0 or LGR_JSON_NO_PAYLOAD. Serialized with fjson_object_to_json_string_ext(...,
 * FJSON_TO_STRING_PLAIN), the text parses to the same JSON value as lgr_json_write()'s for the same flags.
 * Returns LGR_OK; LGR_EINVAL (NULL argument); LGR_ETOOBIG (a string longer than libfastjson can hold); LGR_ENOMEM.
 * On error *out is NULL.
 */
int lgr_fjson_build(const struct lgr_env *env, unsigned flags, struct fjson_object **out);

/*
 * Reads an Envelope from a libfastjson tree in the JSON form (not modified; the caller keeps its reference), with
 * the rules and limits of lgr_json_parse(). flags: 0 or LGR_JSON_DISCARD_UNKNOWN. When payload is not NULL it
 * becomes log.payload (payload_len bytes, any content) and the tree must then hold a "log" member without
 * "payload": this is how a message's %msg% and $!loggregator are joined again.
 * Returns the codes of lgr_json_parse(); *out (refcount 1) is owned by the caller.
 */
int lgr_fjson_parse(struct fjson_object *obj, const void *payload, size_t payload_len, const struct lgr_limits *lim,
	unsigned flags, struct lgr_env **out);

#endif
