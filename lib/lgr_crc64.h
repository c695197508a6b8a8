/*
 * lgr_crc64.h: CRC-64/ECMA exactly as Go's hash/crc64 computes it with crc64.MakeTable(crc64.ECMA) (also known as
 * CRC-64/XZ: reflected polynomial 0xC96C5795D7870F42, initial value and final xor all ones). The real router hashes
 * counter and gauge names with it to route envelopes within a shard group, so our hash must give the same numbers.
 *
 * Thread-safe: the lookup table is built once, on first use, under pthread_once.
 */
#ifndef LGR_CRC64_H
#define LGR_CRC64_H

#include <stddef.h>
#include <stdint.h>

/* The check value: lgr_crc64("123456789", 9). */
#define LGR_CRC64_CHECK UINT64_C(0x995DC9BBDF1939FA)

/*
 * Continues a checksum: crc is the result of an earlier call (0 to start), as Go's crc64.Update. So
 * lgr_crc64_update(lgr_crc64(a, n), b, m) equals the checksum of a followed by b.
 */
uint64_t lgr_crc64_update(uint64_t crc, const void *data, size_t len);

/* The checksum of len bytes at data (data may be NULL when len is 0). */
uint64_t lgr_crc64(const void *data, size_t len);

/* The checksum of a NUL-terminated string, without the NUL. */
uint64_t lgr_crc64_str(const char *s);

#endif
