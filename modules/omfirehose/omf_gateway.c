/*
 * omf_gateway.c: the gateway of one omfirehose action (omf.h). Placeholder until the implementation lands: the
 * gateway refuses to start.
 */
#include <stdio.h>

#include "omf.h"

int omf_gateway_new(struct omf_egress *eg, const struct omf_gateway_conf *conf, struct omf_gateway **out, char *err,
	size_t errlen)
{
	(void)eg;
	(void)conf;
	*out = NULL;
	snprintf(err, errlen, "the gateway is not built yet");
	return LGR_EUNSUPPORTED;
}

int omf_gateway_start(struct omf_gateway *gw, uint16_t *port)
{
	(void)gw;
	(void)port;
	return LGR_EIO;
}

void omf_gateway_record(struct omf_gateway *gw, struct omf_env *e)
{
	(void)gw;
	(void)e;
}

void omf_gateway_reload(struct omf_gateway *gw)
{
	(void)gw;
}

void omf_gateway_free(struct omf_gateway *gw, unsigned budget_ms)
{
	(void)gw;
	(void)budget_ms;
}
