/*
 * lgr_crc64.c: table-driven CRC-64/ECMA (Go's crc64.ECMA table), used to route envelopes in shard groups the way the
 * real router does and to index selectors.
 *
 * Slicing by 8: eight tables let the loop fold eight input bytes per step. Source ids (36-byte GUIDs) are hashed
 * for every envelope the matcher sees, so this is on the hot path.
 */
#include "lgr_crc64.h"

#include <pthread.h>
#include <string.h>

#define POLY UINT64_C(0xC96C5795D7870F42) /* ECMA-182, bit-reversed */

static uint64_t table[8][256];
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void table_build(void)
{
	for (unsigned i = 0; i < 256; i++) {
		uint64_t c = i;

		for (int k = 0; k < 8; k++)
			c = (c & 1) ? (c >> 1) ^ POLY : c >> 1;
		table[0][i] = c;
	}
	/* table[k][i] is the CRC of byte i followed by k zero bytes. */
	for (unsigned i = 0; i < 256; i++)
		for (int k = 1; k < 8; k++)
			table[k][i] = table[0][table[k - 1][i] & 0xff] ^ (table[k - 1][i] >> 8);
}

static uint64_t load_le64(const unsigned char *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

uint64_t lgr_crc64_update(uint64_t crc, const void *data, size_t len)
{
	const unsigned char *p = data;

	pthread_once(&table_once, table_build);
	crc = ~crc;
	while (len >= 8) {
		uint64_t v = crc ^ load_le64(p);

		crc = table[7][v & 0xff] ^ table[6][(v >> 8) & 0xff] ^ table[5][(v >> 16) & 0xff] ^
		      table[4][(v >> 24) & 0xff] ^ table[3][(v >> 32) & 0xff] ^ table[2][(v >> 40) & 0xff] ^
		      table[1][(v >> 48) & 0xff] ^ table[0][v >> 56];
		p += 8;
		len -= 8;
	}
	while (len-- > 0)
		crc = table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return ~crc;
}

uint64_t lgr_crc64(const void *data, size_t len)
{
	return lgr_crc64_update(0, data, len);
}

uint64_t lgr_crc64_str(const char *s)
{
	return lgr_crc64_update(0, s, strlen(s));
}
