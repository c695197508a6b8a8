/* test_dwriter.c: drain writers against in-process receivers. Placeholder until the writers land. */
#include <criterion/criterion.h>

#include "lgr_dwriter.h"

Test(dwriter, placeholder)
{
	struct lgr_dw_ctx *ctx = NULL;

	cr_assert_eq(lgr_dw_ctx_new(NULL, &ctx), LGR_EUNSUPPORTED);
}
