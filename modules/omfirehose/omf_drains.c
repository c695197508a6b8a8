/*
 * omf_drains.c: the drains of one omfirehose action (omf.h). Placeholder until the implementation lands: drains
 * are refused.
 */
#include <stdio.h>

#include "omf.h"

int omf_drains_new(struct omf_egress *eg, const struct omf_drains_conf *conf, struct omf_drains_counters *ctr,
	struct omf_drains **out, char *err, size_t errlen)
{
	(void)eg;
	(void)conf;
	(void)ctr;
	*out = NULL;
	snprintf(err, errlen, "drains are not built yet");
	return LGR_EUNSUPPORTED;
}

int omf_drains_start(struct omf_drains *d)
{
	(void)d;
	return LGR_EIO;
}

void omf_drains_reload(struct omf_drains *d)
{
	(void)d;
}

void omf_drains_free(struct omf_drains *d, unsigned budget_ms)
{
	(void)d;
	(void)budget_ms;
}
