/* lgr_dwriter.c: drain writers (lgr_dwriter.h). Placeholder until the implementation lands. */
#include "lgr_dwriter.h"

int lgr_dw_ctx_new(const struct lgr_dw_ctx_conf *conf, struct lgr_dw_ctx **out)
{
	(void)conf;
	*out = NULL;
	return LGR_EUNSUPPORTED;
}

void lgr_dw_ctx_free(struct lgr_dw_ctx *ctx)
{
	(void)ctx;
}
