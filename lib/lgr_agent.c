/* lgr_agent.c: placeholder, being written. */
#include <stdlib.h>

#include "lgr_agent.h"

struct lgr_agent {
	int unused;
};

int lgr_agent_new(const struct lgr_agent_conf *conf, struct lgr_agent **out)
{
	(void)conf;
	*out = calloc(1, sizeof(**out));
	return *out ? LGR_OK : LGR_ENOMEM;
}

void lgr_agent_free(struct lgr_agent *ag)
{
	free(ag);
}

int lgr_agent_apply(struct lgr_agent *ag, struct lgr_env *env)
{
	(void)ag;
	(void)env;
	return LGR_OK;
}

size_t lgr_agent_counters(const struct lgr_agent *ag)
{
	(void)ag;
	return 0;
}
