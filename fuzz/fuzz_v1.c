/*
 * fuzz_v1.c: the v1 (dropsonde) decoder and both conversions on untrusted bytes: decode as a v1 Envelope (as a
 * UDP datagram or a websocket frame would be), apply the UDP defaults, convert to v2, convert back to v1 and encode
 * every result. Whatever the input, nothing may crash or leak, and every v1 envelope the conversion produces must
 * encode and decode again (a failure there traps, so that libFuzzer keeps the input).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "lgr_v1.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Small limits, so that the fuzzer reaches them with small inputs. */
static const struct lgr_limits fuzz_limits = {.max_message = 65507, .max_tags = 64};

static int check_encodes(Events__Envelope *v1, void *ud)
{
	Events__Envelope *back = NULL;
	uint8_t *buf = NULL;
	size_t len = 0;
	int rc;

	(void)ud;
	rc = lgr_v1_encode(v1, &buf, &len);
	if (rc == LGR_OK)
		rc = lgr_v1_decode(buf, len, NULL, &back);
	/* Out of memory is the only acceptable failure for an envelope the conversion built itself. */
	if (rc != LGR_OK && rc != LGR_ENOMEM)
		__builtin_trap();
	lgr_v1_free(back);
	free(buf);
	lgr_v1_free(v1);
	return LGR_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct lgr_v1_defaults defaults = {"fuzz-deployment", "fuzz-job", "0", "127.0.0.1"};
	Events__Envelope *v1 = NULL;
	struct lgr_env *v2 = NULL;
	uint8_t *buf = NULL;
	size_t len;

	if (lgr_v1_decode(data, size, &fuzz_limits, &v1) != LGR_OK)
		goto out;
	if (lgr_v1_encode(v1, &buf, &len) == LGR_OK)
		free(buf);
	if (lgr_v1_to_v2(v1, &v2) == LGR_OK) {
		lgr_v1_from_v2(v2, check_encodes, NULL);
		lgr_env_unref(v2);
		v2 = NULL;
	}
	/* the UDP ingress path: defaults first, then the same conversions */
	if (lgr_v1_apply_defaults(v1, &defaults) == LGR_OK && lgr_v1_to_v2(v1, &v2) == LGR_OK)
		lgr_v1_from_v2(v2, check_encodes, NULL);
out:
	lgr_env_unref(v2);
	lgr_v1_free(v1);
	return 0;
}
