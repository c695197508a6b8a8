/*
 * omf_dstats.c: the per-drain impstats objects of omfirehose's drains (omf.h, struct omf_dstats_ops) on rsyslog's
 * statsobj interface, the only rsyslog code the drains reach; omf_drains.c itself stays rsyslog-free.
 *
 * One statsobj per drain, origin "omfirehose", with the resettable counters egress and dropped. The drains add to
 * them on the egress's network thread with 64-bit atomic adds; impstats reads them (and resets them with
 * resetCounters) on its own thread, as rsyslog's own counters are read. So there is no read notifier and no lock
 * of ours: statsobj's Construct and Destruct take only rsyslog's list lock, which no code of ours holds. Objects
 * are made and destroyed while rsyslogd runs, as imfile does for the files it follows.
 */
#include "../common/rsconfig.h" /* rsyslog's config.h, first */

#include <stdint.h>
#include <stdlib.h>

#include "rsyslog.h"
#include "errmsg.h"
#include "debug.h"
#include "statsobj.h"
#include "rainerscript.h"

#include "omf.h"
#include "../common/glue.h"

#define ORIGIN "omfirehose"

struct dstats {
	statsobj_if_t *so; /* the module's interface (borrowed) */
	statsobj_t *obj;
	intctr_t egress;  /* atomic adds; read and reset by impstats */
	intctr_t dropped; /* atomic adds; read and reset by impstats */
};

/* Registers s's object under name with its two counters. */
static rsRetVal dstats_register(struct dstats *s, const char *name)
{
	const struct glue_counter ctrs[] = {{"egress", &s->egress}, {"dropped", &s->dropped}};

	return glue_stats_new(s->so, &s->obj, name, ORIGIN, ctrs, sizeof(ctrs) / sizeof(ctrs[0]), NULL, NULL);
}

static void *dstats_open(const char *name, void *ud)
{
	struct dstats *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	s->so = ud;
	if (dstats_register(s, name) != RS_RET_OK) {
		/* not finalized, so not listed: destroying it takes it out of nothing */
		if (s->obj != NULL)
			s->so->Destruct(&s->obj);
		free(s);
		return NULL;
	}
	return s;
}

static void dstats_add(void *obj, uint64_t egress, uint64_t dropped)
{
	struct dstats *s = obj;

	if (egress > 0)
		__atomic_add_fetch(&s->egress, egress, __ATOMIC_RELAXED);
	if (dropped > 0)
		__atomic_add_fetch(&s->dropped, dropped, __ATOMIC_RELAXED);
}

static void dstats_close(void *obj)
{
	struct dstats *s = obj;

	if (s == NULL)
		return;
	s->so->Destruct(&s->obj); /* out of impstats' list first: nothing reads the counters after this */
	free(s);
}

const struct omf_dstats_ops omf_dstats_rsyslog = {
	.open = dstats_open,
	.add = dstats_add,
	.close = dstats_close,
};
