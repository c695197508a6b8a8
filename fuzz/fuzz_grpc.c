/*
 * fuzz_grpc.c: the gRPC message reader. The input's first byte seeds how the rest is cut into feeds; the
 * messages handed out must be the same, in the same order, as when the whole stream is fed at once.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lgr_grpc.h"

#define MAX_MESSAGE 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct digest {
	size_t count;
	uint64_t hash; /* FNV-1a over every message's length and bytes */
};

static int absorb(const uint8_t *msg, size_t len, void *ud)
{
	struct digest *d = ud;

	d->count++;
	for (size_t i = 0; i < sizeof(len); i++)
		d->hash = (d->hash ^ ((len >> (8 * i)) & 0xff)) * 1099511628211u;
	for (size_t i = 0; i < len; i++)
		d->hash = (d->hash ^ msg[i]) * 1099511628211u;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct lgr_grpc_reader whole, split;
	struct digest a = {0, 14695981039346656037u}, b = {0, 14695981039346656037u};
	unsigned seed;
	int ra, rb = LGR_OK;
	size_t off;

	if (size == 0)
		return 0;
	seed = data[0];
	data++;
	size--;

	lgr_grpc_reader_init(&whole, MAX_MESSAGE);
	ra = lgr_grpc_reader_feed(&whole, data, size, absorb, &a);

	lgr_grpc_reader_init(&split, MAX_MESSAGE);
	for (off = 0; off < size && rb == LGR_OK;) {
		size_t n = 1 + (seed % 7) * (seed % 13);

		seed = seed * 1103515245u + 12345u;
		if (n > size - off)
			n = size - off;
		rb = lgr_grpc_reader_feed(&split, data + off, n, absorb, &b);
		off += n;
	}
	if (ra != rb || a.count != b.count || a.hash != b.hash)
		abort();
	if (ra == LGR_OK && lgr_grpc_reader_partial(&whole) != lgr_grpc_reader_partial(&split))
		abort();
	lgr_grpc_reader_cleanup(&whole);
	lgr_grpc_reader_cleanup(&split);
	return 0;
}
