/*
 * lgr_pb.h: a protobuf wire-format scanner for untrusted bytes.
 *
 * protobuf-c allocates while it parses and trusts counts it finds on the way, so every v2 Envelope and
 * EnvelopeBatch coming from the network goes through these checks first: the scanner walks the bytes without
 * allocating, verifies that every key, wire type and length stays inside its enclosing message, and counts what
 * the limits bound (tags, gauge metrics, batch records, nesting). Only bytes that pass are handed to protobuf-c.
 *
 * Nothing here allocates, logs or keeps state between calls; every function is safe from any thread.
 */
#ifndef LGR_PB_H
#define LGR_PB_H

#include <stddef.h>
#include <stdint.h>

#include "lgr.h"

enum lgr_pb_wire {
	LGR_PB_VARINT = 0,
	LGR_PB_I64 = 1,
	LGR_PB_LEN = 2,
	LGR_PB_SGROUP = 3, /* groups: never valid in our messages */
	LGR_PB_EGROUP = 4,
	LGR_PB_I32 = 5,
};

#define LGR_PB_MAX_FIELD  ((1u << 29) - 1) /* the largest field number protobuf allows */
#define LGR_PB_VARINT_MAX 10u		   /* bytes of the longest varint (64 bits) */

/* One field as lgr_pb_field_next() found it. data points into the caller's buffer. */
struct lgr_pb_field {
	uint32_t number;
	enum lgr_pb_wire wire;
	uint64_t varint;     /* LGR_PB_VARINT: the value */
	const uint8_t *data; /* LGR_PB_LEN: the payload; LGR_PB_I64 / LGR_PB_I32: the 8 / 4 value bytes */
	size_t len;	     /* bytes at data */
};

/*
 * Reads a varint from buf[*pos, len) and advances *pos past it.
 * Returns LGR_OK and *out, or LGR_EDECODE when the varint is truncated, longer than 10 bytes, or does not fit
 * 64 bits (*pos and *out unchanged).
 */
int lgr_pb_varint(const uint8_t *buf, size_t len, size_t *pos, uint64_t *out);

/*
 * Reads a field key from buf[*pos, len) and advances *pos past it.
 * Returns LGR_OK, *number and *wire, or LGR_EDECODE for a bad varint, field number 0 or above LGR_PB_MAX_FIELD,
 * a group wire type (3, 4) or an undefined one (6, 7) (*pos unchanged).
 */
int lgr_pb_key(const uint8_t *buf, size_t len, size_t *pos, uint32_t *number, enum lgr_pb_wire *wire);

/*
 * Reads one whole field (key and value) from buf[*pos, len) and advances *pos past it. A length-delimited payload
 * or fixed-width value must lie entirely inside buf[*pos, len).
 * Returns LGR_OK and *f, or LGR_EDECODE as lgr_pb_key() or for a truncated value (*pos unchanged).
 */
int lgr_pb_field_next(const uint8_t *buf, size_t len, size_t *pos, struct lgr_pb_field *f);

/* Bytes needed to encode v as a varint (1..10). */
size_t lgr_pb_varint_size(uint64_t v);

/* Writes v as a varint to dst, which has room for lgr_pb_varint_size(v) bytes; returns the bytes written. */
size_t lgr_pb_varint_put(uint8_t *dst, uint64_t v);

/*
 * Checks that buf[0, len) is a well-formed loggregator.v2.Envelope within lim (NULL: defaults):
 *   - len <= lim->max_message, else LGR_ETOOBIG (checked before anything else);
 *   - every field of the Envelope and of its known sub-messages well formed, known fields with their declared wire
 *     type, lengths inside the enclosing message, else LGR_EDECODE;
 *   - tags (field 9) + deprecated_tags (field 3) entries <= lim->max_tags, else LGR_ELIMIT;
 *   - gauge metrics (field 6 -> field 1 entries, over every occurrence of field 6) <= lim->max_metrics, else
 *     LGR_ELIMIT;
 *   - nesting <= lim->max_depth, else LGR_ELIMIT. The Envelope is level 0, its sub-messages (a tag entry, the
 *     gauge) level 1, theirs level 2 and so on (a gauge metric's value is level 3). An unknown length-delimited
 *     field counts as a sub-message (one level) and is not descended into; strings and bytes are no level.
 * Returns LGR_OK or the first of those errors met while walking the bytes in order, or LGR_EINVAL when buf is NULL
 * and len is not 0.
 */
int lgr_pb_check_envelope(const uint8_t *buf, size_t len, const struct lgr_limits *lim);

/*
 * Checks that buf[0, len) is a well-formed loggregator.v2.EnvelopeBatch within lim (NULL: defaults): the size as
 * above against lim->max_message, each field-1 record as lgr_pb_check_envelope() with the batch as level 0 (so
 * the envelope itself is level 1), at most lim->max_batch records (else LGR_ELIMIT). Unknown fields of the batch
 * are checked for form and skipped.
 * Returns LGR_OK and *count (the number of records; may be NULL), or an error as lgr_pb_check_envelope().
 */
int lgr_pb_check_batch(const uint8_t *buf, size_t len, const struct lgr_limits *lim, size_t *count);

#endif
