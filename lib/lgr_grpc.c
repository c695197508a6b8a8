/*
 * lgr_grpc.c: the gRPC length-prefixed message reader, status names and grpc-message encoding.
 */
#include "lgr_grpc.h"

#include <stdlib.h>
#include <string.h>

static const char *const status_names[] = {
	"OK",
	"CANCELLED",
	"UNKNOWN",
	"INVALID_ARGUMENT",
	"DEADLINE_EXCEEDED",
	"NOT_FOUND",
	"ALREADY_EXISTS",
	"PERMISSION_DENIED",
	"RESOURCE_EXHAUSTED",
	"FAILED_PRECONDITION",
	"ABORTED",
	"OUT_OF_RANGE",
	"UNIMPLEMENTED",
	"INTERNAL",
	"UNAVAILABLE",
	"DATA_LOSS",
	"UNAUTHENTICATED",
};

const char *lgr_grpc_status_name(int status)
{
	if (status < 0 || (size_t)status >= sizeof(status_names) / sizeof(status_names[0]))
		return "UNKNOWN";
	return status_names[status];
}

void lgr_grpc_reader_init(struct lgr_grpc_reader *r, size_t max_message)
{
	memset(r, 0, sizeof(*r));
	r->max_message = max_message;
}

void lgr_grpc_reader_cleanup(struct lgr_grpc_reader *r)
{
	free(r->buf);
	r->buf = NULL;
	r->cap = 0;
	r->prefix_have = 0;
	r->need = 0;
	r->have = 0;
}

/* Checks a complete prefix and sets need; called once per message, before any byte of it is buffered. */
static int take_prefix(struct lgr_grpc_reader *r, const uint8_t *p)
{
	size_t len = (size_t)p[1] << 24 | (size_t)p[2] << 16 | (size_t)p[3] << 8 | (size_t)p[4];

	if (p[0] == 1)
		return LGR_EUNSUPPORTED;
	if (p[0] != 0)
		return LGR_EDECODE;
	if (len > r->max_message)
		return LGR_ETOOBIG;
	r->need = len;
	r->have = 0;
	return LGR_OK;
}

/*
 * Makes room for at least want bytes of the message being collected. The buffer grows with the bytes that
 * actually arrive, never straight to the declared length: a peer that declares 10 MiB and sends 5 bytes pins
 * little memory, whatever the number of streams it opens.
 */
static int reserve(struct lgr_grpc_reader *r, size_t want)
{
	size_t cap = r->cap > 0 ? r->cap : 4096;
	uint8_t *p;

	if (want <= r->cap)
		return LGR_OK;
	while (cap < want)
		cap = cap > SIZE_MAX / 2 ? want : cap * 2;
	if (cap > r->need)
		cap = r->need;
	p = realloc(r->buf, cap);
	if (p == NULL)
		return LGR_ENOMEM;
	r->buf = p;
	r->cap = cap;
	return LGR_OK;
}

int lgr_grpc_reader_feed(struct lgr_grpc_reader *r, const uint8_t *data, size_t len, lgr_grpc_msg_fn *fn, void *ud)
{
	int rc = LGR_OK;

	if (r->failed)
		return LGR_EINVAL;
	while (len > 0) {
		size_t n;

		if (r->prefix_have < LGR_GRPC_PREFIX) {
			/* Fast path: a whole prefix and message in the input, nothing buffered. */
			if (r->prefix_have == 0 && len >= LGR_GRPC_PREFIX) {
				rc = take_prefix(r, data);
				if (rc != LGR_OK)
					goto out;
				if (len - LGR_GRPC_PREFIX >= r->need) {
					rc = fn(data + LGR_GRPC_PREFIX, r->need, ud);
					if (rc != 0)
						goto out;
					data += LGR_GRPC_PREFIX + r->need;
					len -= LGR_GRPC_PREFIX + r->need;
					r->need = 0;
					continue;
				}
				memcpy(r->prefix, data, LGR_GRPC_PREFIX);
				r->prefix_have = LGR_GRPC_PREFIX;
				data += LGR_GRPC_PREFIX;
				len -= LGR_GRPC_PREFIX;
			} else {
				n = LGR_GRPC_PREFIX - r->prefix_have;
				if (n > len)
					n = len;
				memcpy(r->prefix + r->prefix_have, data, n);
				r->prefix_have += n;
				data += n;
				len -= n;
				if (r->prefix_have < LGR_GRPC_PREFIX)
					break;
				rc = take_prefix(r, r->prefix);
				if (rc != LGR_OK)
					goto out;
			}
		}
		n = r->need - r->have;
		if (n > len)
			n = len;
		if (n > 0) {
			rc = reserve(r, r->have + n);
			if (rc != LGR_OK)
				goto out;
			memcpy(r->buf + r->have, data, n);
			r->have += n;
			data += n;
			len -= n;
		}
		if (r->have == r->need) {
			uint8_t *msg = r->buf;
			size_t msg_len = r->need;

			r->buf = NULL;
			r->cap = 0;
			r->prefix_have = 0;
			r->need = 0;
			r->have = 0;
			rc = fn(msg != NULL ? msg : (const uint8_t *)"", msg_len, ud);
			free(msg);
			if (rc != 0)
				goto out;
		}
	}
out:
	if (rc != LGR_OK)
		r->failed = true;
	return rc;
}

bool lgr_grpc_reader_partial(const struct lgr_grpc_reader *r)
{
	return r->prefix_have > 0;
}

void lgr_grpc_prefix(uint8_t out[LGR_GRPC_PREFIX], size_t len)
{
	out[0] = 0;
	out[1] = (uint8_t)(len >> 24);
	out[2] = (uint8_t)(len >> 16);
	out[3] = (uint8_t)(len >> 8);
	out[4] = (uint8_t)len;
}

size_t lgr_grpc_message_encode(char *out, size_t cap, const char *msg)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = 0; /* length needed */
	size_t w = 0; /* bytes written: stops growing at the first piece that does not fit */
	bool fits = cap > 0;

	for (; *msg != '\0'; msg++) {
		unsigned char c = (unsigned char)*msg;
		char piece[3];
		size_t len = 1;

		if (c >= 0x20 && c <= 0x7e && c != '%') {
			piece[0] = (char)c;
		} else {
			piece[0] = '%';
			piece[1] = hex[c >> 4];
			piece[2] = hex[c & 0xf];
			len = 3;
		}
		if (fits && w + len < cap) {
			memcpy(out + w, piece, len);
			w += len;
		} else {
			fits = false;
		}
		n += len;
	}
	if (cap > 0)
		out[w] = '\0';
	return n;
}
