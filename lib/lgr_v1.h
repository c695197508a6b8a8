/*
 * lgr_v1.h: the v1 (dropsonde, package events) Envelope: decoding untrusted bytes, encoding, and the conversions
 * between v1 and v2 that the real agent (v1 -> v2, UDP ingress) and traffic controller (v2 -> v1, websocket
 * streams) perform (wire.md section 6).
 *
 * A v1 envelope is the protobuf-c message Events__Envelope. Every envelope this unit hands out (decoded or
 * converted) is allocated with malloc throughout, so lgr_v1_free() (protobuf_c_message_free_unpacked with the
 * system allocator) frees it; envelopes built by hand that are given to lgr_v1_free() must keep to that.
 *
 * Nothing here keeps state between calls; every function is safe from any thread on distinct envelopes.
 */
#ifndef LGR_V1_H
#define LGR_V1_H

#include <stddef.h>
#include <stdint.h>

#include "lgr.h"
#include "lgr_env.h"
#include "events.pb-c.h"

/*
 * Decodes one v1 Envelope from buf (one UDP datagram, one websocket frame, one EnvelopeData payload). Before
 * anything is allocated the bytes are checked against lim (NULL: defaults):
 *   - len <= lim->max_message, else LGR_ETOOBIG;
 *   - every field of the Envelope and of its known sub-messages well formed (keys of at most 5 bytes, length
 *     prefixes of at most 5 bytes, lengths inside the enclosing message), known fields with their declared wire
 *     type, else LGR_EDECODE;
 *   - tags entries + HttpStartStop.forwarded entries + unknown fields + repeats of a singular field (every item
 *     whose number is not fixed by the schema, since each costs an allocation) <= lim->max_tags, else LGR_ELIMIT.
 * Then:
 *   - a required field (proto2) absent anywhere, or the message that eventType names absent: LGR_EMISSING;
 *   - an eventType other than the six known ones (4..9; 1-3 were retired): LGR_EUNSUPPORTED.
 * Returns LGR_OK and *out (owned by the caller; free with lgr_v1_free), or one of the errors above, LGR_ENOMEM,
 * or LGR_EINVAL (out NULL, or buf NULL with len > 0); *out is NULL on every error.
 */
int lgr_v1_decode(const uint8_t *buf, size_t len, const struct lgr_limits *lim, Events__Envelope **out);

/*
 * Encodes env into a malloc'd buffer (*out, owned by the caller; *out_len bytes). The envelope must be decodable
 * again: origin set, eventType one of the six, its message present and, for HttpStartStop, requestId present.
 * A NULL required string is encoded as ""; unknown fields kept by lgr_v1_decode are written back. Returns LGR_OK,
 * LGR_EMISSING, LGR_EUNSUPPORTED (unknown eventType), LGR_EINVAL (a NULL argument or tags entry) or LGR_ENOMEM;
 * *out is NULL on error.
 */
int lgr_v1_encode(const Events__Envelope *env, uint8_t **out, size_t *out_len);

/* Frees an envelope from lgr_v1_decode, lgr_v1_from_v2 or built with malloc throughout. NULL is a no-op. */
void lgr_v1_free(Events__Envelope *env);

/* "HttpStartStop", "LogMessage", "ValueMetric", "CounterEvent", "Error", "ContainerMetric", or NULL. */
const char *lgr_v1_type_name(Events__Envelope__EventType type);

/*
 * Converts a v1 envelope to v2 as the real agent does (one v1 gives exactly one v2). The result (*out, refcount
 * 1, owned by the caller) has:
 *   - timestamp = Envelope.timestamp (0 when absent; never LogMessage.timestamp);
 *   - tags: the v1 tags, then origin, deployment, job, index, ip (each only when present in v1; an empty string
 *     that is present is copied) and __v1_type = lgr_v1_type_name(eventType);
 *   - source_id = tags["source_id"] (that tag removed) else deployment + "/" + job;
 *   - LogMessage -> Log (payload, OUT/ERR; ERR only for ERR), source_id = app_id when non-empty, instance_id =
 *     source_instance, tag source_type when present;
 *   - ValueMetric -> Gauge {name: {unit, value}}, instance_id = tags["instance_id"] (the tag stays);
 *   - CounterEvent -> Counter {name, delta, total}, instance_id = tags["instance_id"] (the tag is removed);
 *   - Error -> Log OUT with payload = message, tags source and code (decimal);
 *   - ContainerMetric -> Gauge {cpu (percentage), memory, disk, memory_quota, disk_quota (bytes; absent quotas
 *     are 0)}, source_id = applicationId when non-empty, instance_id = instanceIndex in decimal;
 *   - HttpStartStop -> Timer "http" {startTimestamp, stopTimestamp}, source_id = applicationId as UUID text when
 *     present and not all zero, instance_id = instanceIndex in decimal when present, tags request_id (UUID text),
 *     peer_type and method (enum names, or the number for unknown values), uri, remote_address, user_agent,
 *     status_code, and when present content_length, routing_instance_id (= instanceId) and forwarded (the entries
 *     joined with "\n").
 * UUID text is the 16 bytes (low then high, each little-endian) as lower-case 8-4-4-4-12 hex.
 * Returns LGR_OK and *out, LGR_EMISSING (the message that eventType names is absent), LGR_EUNSUPPORTED (unknown
 * eventType), LGR_EINVAL or LGR_ENOMEM; *out is NULL on error.
 */
int lgr_v1_to_v2(const Events__Envelope *v1, struct lgr_env **out);

/*
 * Receives one converted v1 envelope and takes ownership of it (free with lgr_v1_free), even when it returns an
 * error. A non-zero return stops the conversion and is returned by lgr_v1_from_v2.
 */
typedef int lgr_v1_sink(Events__Envelope *v1, void *ud);

/*
 * Converts a v2 envelope to v1 as the real traffic controller does, handing each v1 envelope to fn in turn (one
 * at a time, so a large gauge never holds all its v1 envelopes in memory). Every envelope gets:
 *   - origin, deployment, job, index, ip from tags[...] else deprecated_tags[...] (integers in decimal, decimals
 *     as %f), set even when absent (then ""), timestamp = the v2 timestamp;
 *   - tags = tags + deprecated_tags as text (a deprecated tag wins over a tag of the same key), plus
 *     tags["source_id"] = source_id when non-empty, without __v1_type, origin, deployment, job, index, ip and the
 *     tags the message itself consumed (below).
 * Messages:
 *   - Log -> LogMessage {payload, OUT/ERR, timestamp = the v2 timestamp, app_id = source_id, source_type =
 *     tags["source_type"] (consumed), source_instance = instance_id}, all set even when empty; but a Log tagged
 *     __v1_type "Error" -> Error {source = tags["source"], code = tags["code"], message = payload} (both consumed);
 *   - Counter -> CounterEvent {name, delta, total}; tags["instance_id"] = instance_id when non-empty;
 *   - Gauge carrying cpu, memory, disk, memory_quota and disk_quota (each with a unit or a non-zero value) -> one
 *     ContainerMetric (applicationId = source_id, instanceIndex = the instance_index metric, else instance_id as
 *     a number, else 0; byte counts clamped to 0..2^64-1); any other Gauge -> one ValueMetric per distinct metric
 *     name, in name order, with tags["instance_id"] = instance_id when non-empty (none for an empty gauge);
 *   - Timer -> HttpStartStop {start, stop, requestId = tags["request_id"] parsed as UUID text, applicationId =
 *     source_id when it is UUID text, peerType / method by name (0 when unknown), uri, remoteAddress, userAgent,
 *     statusCode, instanceIndex = instance_id when a 32-bit number, and when their tags are present
 *     contentLength, instanceId = routing_instance_id, forwarded = split at "\n"} (those tags consumed).
 * Returns LGR_OK (fn called zero or more times), LGR_EUNSUPPORTED (an Event, no message at all, or a Timer without
 * a request_id in UUID text: the real traffic controller emits nothing for those either), LGR_EINVAL, LGR_ENOMEM,
 * or fn's non-zero code. On error, envelopes already handed to fn stay with fn.
 */
int lgr_v1_from_v2(const struct lgr_env *env, lgr_v1_sink *fn, void *ud);

/* What a local v1 emitter (UDP) leaves out and the agent fills in: its own identity. NULL fields mean "". */
struct lgr_v1_defaults {
	const char *deployment;
	const char *job;
	const char *index;
	const char *ip;
};

/*
 * Completes a v1 envelope as the real agent does at UDP ingress, before lgr_v1_to_v2: deployment, job, index and ip
 * are set from def where absent (present ones, even empty, are kept), and tags["source_id"] = origin when that tag
 * is absent or empty. env must be built with malloc throughout (lgr_v1_decode's are).
 * Returns LGR_OK, LGR_EINVAL (NULL argument) or LGR_ENOMEM (env then unchanged or only partly filled, still valid
 * to free).
 */
int lgr_v1_apply_defaults(Events__Envelope *env, const struct lgr_v1_defaults *def);

#endif
