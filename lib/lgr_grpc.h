/*
 * lgr_grpc.h: gRPC's message framing over an HTTP/2 stream, and its status codes.
 *
 * On the wire each gRPC message is a 5-byte prefix (a compressed flag byte, then the length as 32-bit big-endian)
 * followed by the message. HTTP/2 DATA frames split and join these prefixes and messages arbitrarily, so the
 * reader is a resumable state machine: feed it any split of the stream and it hands out whole messages, checking
 * each declared length against its limit before buffering anything.
 *
 * A reader belongs to one stream and is used by one thread.
 */
#ifndef LGR_GRPC_H
#define LGR_GRPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lgr.h"

#define LGR_GRPC_PREFIX 5

/* gRPC status codes (the grpc-status trailer). */
enum lgr_grpc_status {
	LGR_GRPC_OK = 0,
	LGR_GRPC_CANCELLED = 1,
	LGR_GRPC_UNKNOWN = 2,
	LGR_GRPC_INVALID_ARGUMENT = 3,
	LGR_GRPC_DEADLINE_EXCEEDED = 4,
	LGR_GRPC_NOT_FOUND = 5,
	LGR_GRPC_ALREADY_EXISTS = 6,
	LGR_GRPC_PERMISSION_DENIED = 7,
	LGR_GRPC_RESOURCE_EXHAUSTED = 8,
	LGR_GRPC_FAILED_PRECONDITION = 9,
	LGR_GRPC_ABORTED = 10,
	LGR_GRPC_OUT_OF_RANGE = 11,
	LGR_GRPC_UNIMPLEMENTED = 12,
	LGR_GRPC_INTERNAL = 13,
	LGR_GRPC_UNAVAILABLE = 14,
	LGR_GRPC_DATA_LOSS = 15,
	LGR_GRPC_UNAUTHENTICATED = 16,
};

/* "OK", "INVALID_ARGUMENT", ...; "UNKNOWN" for codes outside the table. */
const char *lgr_grpc_status_name(int status);

/*
 * Called once per whole message. data is valid only during the call (it may point into the caller's input or
 * into the reader's buffer). A non-zero return stops the reader, which returns that value from feed.
 */
typedef int lgr_grpc_msg_fn(const uint8_t *data, size_t len, void *ud);

struct lgr_grpc_reader {
	size_t max_message; /* largest accepted message */
	uint8_t prefix[LGR_GRPC_PREFIX];
	size_t prefix_have; /* bytes of prefix collected */
	uint8_t *buf;	    /* the message being collected, when it spans feeds */
	size_t cap;	    /* allocated size of buf: grows with the bytes received, up to need */
	size_t need;	    /* its declared length */
	size_t have;	    /* bytes of it collected */
	bool failed;	    /* a previous feed failed: the stream is unusable */
};

void lgr_grpc_reader_init(struct lgr_grpc_reader *r, size_t max_message);
void lgr_grpc_reader_cleanup(struct lgr_grpc_reader *r);

/*
 * Consumes all of data, calling fn for each message completed. A message contained whole in data is passed
 * without a copy; one split across feeds is collected in a buffer that grows with the bytes received (never
 * beyond the declared length, which is checked first), so declared but unsent bytes cost no memory.
 * Returns LGR_OK; LGR_ETOOBIG when a message declares more than max_message (answer RESOURCE_EXHAUSTED);
 * LGR_EUNSUPPORTED when a message is flagged compressed (no compression is negotiated: answer INTERNAL);
 * LGR_EDECODE for a flag byte other than 0 or 1; LGR_ENOMEM; or fn's non-zero value. After any failure the
 * reader refuses further input with the same code class (LGR_EINVAL).
 */
int lgr_grpc_reader_feed(struct lgr_grpc_reader *r, const uint8_t *data, size_t len, lgr_grpc_msg_fn *fn, void *ud);

/* True when the stream stopped inside a message (at end of stream: a truncated message, answer INTERNAL). */
bool lgr_grpc_reader_partial(const struct lgr_grpc_reader *r);

/* Writes the 5-byte prefix of an uncompressed message of len bytes. len must fit 32 bits. */
void lgr_grpc_prefix(uint8_t out[LGR_GRPC_PREFIX], size_t len);

/*
 * Percent-encodes a status message for the grpc-message trailer (RFC 3986 unreserved plus the printable ASCII
 * that gRPC leaves alone; '%' and everything else as %XX). Writes at most cap - 1 bytes and a NUL; returns the
 * length needed without the NUL (as snprintf).
 */
size_t lgr_grpc_message_encode(char *out, size_t cap, const char *msg);

#endif
