/* lgr_fjson.c: placeholder, being written. */
#include "lgr_fjson.h"

int lgr_fjson_build(const struct lgr_env *env, unsigned flags, struct fjson_object **out)
{
	(void)env;
	(void)flags;
	*out = NULL;
	return LGR_EUNSUPPORTED;
}

int lgr_fjson_parse(struct fjson_object *obj, const void *payload, size_t payload_len, const struct lgr_limits *lim,
	unsigned flags, struct lgr_env **out)
{
	(void)obj;
	(void)payload;
	(void)payload_len;
	(void)lim;
	(void)flags;
	*out = NULL;
	return LGR_EUNSUPPORTED;
}
