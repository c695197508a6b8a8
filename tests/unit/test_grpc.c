/*
 * test_grpc.c: the gRPC message reader accepts any split of the stream and enforces its limits before buffering.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "lgr_grpc.h"

struct seen {
	size_t count;
	size_t lens[64];
	uint8_t bytes[4096];
	size_t used;
	int stop_at; /* return non-zero at this message (1-based), 0 never */
};

static int collect(const uint8_t *data, size_t len, void *ud)
{
	struct seen *s = ud;

	cr_assert_lt(s->count, 64);
	cr_assert_leq(s->used + len, sizeof(s->bytes));
	s->lens[s->count++] = len;
	memcpy(s->bytes + s->used, data, len);
	s->used += len;
	return s->stop_at != 0 && (int)s->count == s->stop_at ? 42 : 0;
}

/* Three messages of 0, 3 and 300 bytes, framed. */
static size_t stream_of_three(uint8_t *out)
{
	size_t n = 0;
	size_t lens[] = {0, 3, 300};

	for (size_t i = 0; i < 3; i++) {
		lgr_grpc_prefix(out + n, lens[i]);
		n += LGR_GRPC_PREFIX;
		for (size_t j = 0; j < lens[i]; j++)
			out[n++] = (uint8_t)(i * 50 + j);
	}
	return n;
}

static void expect_three(const struct seen *s)
{
	cr_assert_eq(s->count, 3);
	cr_assert_eq(s->lens[0], 0);
	cr_assert_eq(s->lens[1], 3);
	cr_assert_eq(s->lens[2], 300);
	cr_assert_eq(s->bytes[0], 50);
	cr_assert_eq(s->bytes[2], 52);
	cr_assert_eq(s->bytes[3], 100);
	cr_assert_eq(s->bytes[302], (uint8_t)(100 + 299));
}

Test(grpc_reader, a_whole_stream_in_one_feed_yields_every_message)
{
	uint8_t buf[512];
	size_t n = stream_of_three(buf);
	struct lgr_grpc_reader r;
	struct seen s = {0};

	lgr_grpc_reader_init(&r, 1024);
	cr_assert_eq(lgr_grpc_reader_feed(&r, buf, n, collect, &s), LGR_OK);
	expect_three(&s);
	cr_assert_not(lgr_grpc_reader_partial(&r));
	lgr_grpc_reader_cleanup(&r);
}

Test(grpc_reader, every_split_point_and_byte_by_byte_feeding_yield_the_same_messages)
{
	uint8_t buf[512];
	size_t n = stream_of_three(buf);

	for (size_t cut = 0; cut <= n; cut++) {
		struct lgr_grpc_reader r;
		struct seen s = {0};

		lgr_grpc_reader_init(&r, 1024);
		cr_assert_eq(lgr_grpc_reader_feed(&r, buf, cut, collect, &s), LGR_OK);
		cr_assert_eq(lgr_grpc_reader_feed(&r, buf + cut, n - cut, collect, &s), LGR_OK);
		expect_three(&s);
		lgr_grpc_reader_cleanup(&r);
	}
	{
		struct lgr_grpc_reader r;
		struct seen s = {0};

		lgr_grpc_reader_init(&r, 1024);
		for (size_t i = 0; i < n; i++)
			cr_assert_eq(lgr_grpc_reader_feed(&r, buf + i, 1, collect, &s), LGR_OK);
		expect_three(&s);
		lgr_grpc_reader_cleanup(&r);
	}
}

Test(grpc_reader, a_declared_length_over_the_limit_is_refused_before_any_byte_is_buffered)
{
	uint8_t prefix[LGR_GRPC_PREFIX];
	struct lgr_grpc_reader r;
	struct seen s = {0};

	lgr_grpc_prefix(prefix, 1025);
	lgr_grpc_reader_init(&r, 1024);
	cr_assert_eq(lgr_grpc_reader_feed(&r, prefix, 3, collect, &s), LGR_OK);
	cr_assert_eq(lgr_grpc_reader_feed(&r, prefix + 3, 2, collect, &s), LGR_ETOOBIG);
	cr_assert_null(r.buf);
	cr_assert_eq(s.count, 0);
	/* The stream is unusable afterwards. */
	cr_assert_eq(lgr_grpc_reader_feed(&r, prefix, 1, collect, &s), LGR_EINVAL);
	lgr_grpc_reader_cleanup(&r);
}

Test(grpc_reader, a_compressed_message_is_refused_as_unsupported_and_a_bad_flag_as_malformed)
{
	uint8_t frame[] = {1, 0, 0, 0, 1, 0x55};
	struct lgr_grpc_reader r;
	struct seen s = {0};

	lgr_grpc_reader_init(&r, 1024);
	cr_assert_eq(lgr_grpc_reader_feed(&r, frame, sizeof(frame), collect, &s), LGR_EUNSUPPORTED);
	lgr_grpc_reader_cleanup(&r);

	frame[0] = 7;
	lgr_grpc_reader_init(&r, 1024);
	cr_assert_eq(lgr_grpc_reader_feed(&r, frame, sizeof(frame), collect, &s), LGR_EDECODE);
	lgr_grpc_reader_cleanup(&r);
	cr_assert_eq(s.count, 0);
}

Test(grpc_reader, a_stream_ending_inside_a_message_is_reported_partial)
{
	uint8_t buf[512];
	size_t n = stream_of_three(buf);
	struct lgr_grpc_reader r;
	struct seen s = {0};

	lgr_grpc_reader_init(&r, 1024);
	cr_assert_eq(lgr_grpc_reader_feed(&r, buf, n - 1, collect, &s), LGR_OK);
	cr_assert_eq(s.count, 2);
	cr_assert(lgr_grpc_reader_partial(&r));
	lgr_grpc_reader_cleanup(&r);

	lgr_grpc_reader_init(&r, 1024);
	cr_assert_eq(lgr_grpc_reader_feed(&r, buf, 2, collect, &s), LGR_OK);
	cr_assert(lgr_grpc_reader_partial(&r));
	lgr_grpc_reader_cleanup(&r);
}

Test(grpc_reader, a_callback_error_stops_the_reader_and_is_returned)
{
	uint8_t buf[512];
	size_t n = stream_of_three(buf);
	struct lgr_grpc_reader r;
	struct seen s = {.stop_at = 2};

	lgr_grpc_reader_init(&r, 1024);
	cr_assert_eq(lgr_grpc_reader_feed(&r, buf, n, collect, &s), 42);
	cr_assert_eq(s.count, 2);
	lgr_grpc_reader_cleanup(&r);
}

Test(grpc_status, names_follow_the_grpc_table)
{
	cr_assert_str_eq(lgr_grpc_status_name(LGR_GRPC_OK), "OK");
	cr_assert_str_eq(lgr_grpc_status_name(LGR_GRPC_RESOURCE_EXHAUSTED), "RESOURCE_EXHAUSTED");
	cr_assert_str_eq(lgr_grpc_status_name(LGR_GRPC_UNAUTHENTICATED), "UNAUTHENTICATED");
	cr_assert_str_eq(lgr_grpc_status_name(99), "UNKNOWN");
}

Test(grpc_status, messages_are_percent_encoded_and_truncated_safely)
{
	char out[64];

	cr_assert_eq(lgr_grpc_message_encode(out, sizeof(out), "Selectors cannot be empty"), 25);
	cr_assert_str_eq(out, "Selectors cannot be empty");
	cr_assert_eq(lgr_grpc_message_encode(out, sizeof(out), "100%\n\xc3\xa9"), 3 + 3 + 3 + 6);
	cr_assert_str_eq(out, "100%25%0A%C3%A9");
	/* Too small: never a torn escape, always terminated, the needed length returned. */
	cr_assert_eq(lgr_grpc_message_encode(out, 5, "ab%cd"), 7);
	cr_assert_str_eq(out, "ab");
	cr_assert_eq(lgr_grpc_message_encode(out, 1, "x"), 1);
	cr_assert_str_eq(out, "");
}

Test(grpc_reader, a_large_declared_length_costs_memory_only_for_the_bytes_that_arrive)
{
	uint8_t frame[LGR_GRPC_PREFIX + 10] = {0};
	struct lgr_grpc_reader r;
	struct seen s = {0};

	lgr_grpc_prefix(frame, 1024 * 1024);
	lgr_grpc_reader_init(&r, 10 * 1024 * 1024);
	cr_assert_eq(lgr_grpc_reader_feed(&r, frame, sizeof(frame), collect, &s), LGR_OK);
	cr_assert_leq(r.cap, 4096);
	cr_assert_eq(r.have, 10);
	cr_assert(lgr_grpc_reader_partial(&r));
	lgr_grpc_reader_cleanup(&r);
}
