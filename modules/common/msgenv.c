/*
 * msgenv.c: an rsyslog message back to a Loggregator envelope (see msgenv.h for the mapping).
 *
 * This runs on rsyslog's action workers for every message an output takes, so it reads the message in place: the
 * $!loggregator tree under the message's mutex (no deep copy, as msgGetJSONPropJSON would make), %msg% by pointer
 * and length.
 */
#include "rsconfig.h" /* rsyslog's config.h, first */

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <libfastjson/json.h>

#include "rsyslog.h"
#include "msg.h"
#include "objomsr.h"

#include "lgr_fjson.h"
#include "msgenv.h"

#define SEVERITY_ERR 3

/* Days from 1970-01-01 to the proleptic Gregorian date y-m-d (m 1..12). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	int64_t era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

int64_t msgenv_time_ns(const struct syslogTime *t)
{
	int64_t secs, frac = 0, offset;
	int p;

	if (t->timeType == 0 || t->month < 1 || t->month > 12)
		return 0;
	secs = days_from_civil(t->year, (unsigned)t->month, (unsigned)t->day) * 86400 + t->hour * 3600 +
	       t->minute * 60 + t->second;
	offset = (int64_t)t->OffsetHour * 3600 + (int64_t)t->OffsetMinute * 60;
	if (t->OffsetMode == '+')
		secs -= offset;
	else if (t->OffsetMode == '-')
		secs += offset;
	if (t->secfracPrecision > 0 && t->secfracPrecision <= 9 && t->secfrac > 0) {
		frac = t->secfrac;
		for (p = t->secfracPrecision; p < 9; p++)
			frac *= 10;
	}
	return secs * 1000000000 + frac;
}

/* rsyslog's nil value "-" (and a missing property) mean "none". */
static const char *prop_or_empty(const char *v)
{
	return v == NULL || strcmp(v, "-") == 0 ? "" : v;
}

/*
 * Rebuilds an imloggregator envelope from tree ($!loggregator) and %msg%: into scratch (*view) when there is one,
 * else a new one (*out). Called with the message's mutex held: nothing here calls back into rsyslog.
 */
static int from_tree(smsg_t *msg, struct fjson_object *tree, const struct lgr_limits *lim,
	struct lgr_env_scratch *scratch, const struct lgr_env **view, struct lgr_env **out)
{
	struct fjson_object *log = NULL;
	const void *payload = NULL;
	size_t len = 0;
	int mlen;

	if (!fjson_object_is_type(tree, fjson_type_object))
		return LGR_EDECODE;
	if (fjson_object_object_get_ex(tree, "log", &log) && log != NULL) {
		mlen = getMSGLen(msg);
		payload = mlen > 0 ? (const void *)getMSG(msg) : (const void *)"";
		len = mlen > 0 ? (size_t)mlen : 0;
	}
	if (scratch != NULL)
		return lgr_fjson_parse_scratch(tree, payload, len, lim, 0, scratch, view);
	return lgr_fjson_parse(tree, payload, len, lim, 0, out);
}

/* A Log envelope for a message from another input. */
static int from_plain(smsg_t *msg, const struct msgenv_tpl *tpl, struct lgr_env **out)
{
	struct lgr_env *env;
	const char *sid, *iid, *stype;
	int mlen = getMSGLen(msg);
	int rc = LGR_ENOMEM;

	env = lgr_env_new();
	if (env == NULL)
		goto out;
	sid = tpl->source_id != NULL ? tpl->source_id : prop_or_empty(getAPPNAME(msg, LOCK_MUTEX));
	iid = tpl->instance_id != NULL ? tpl->instance_id : prop_or_empty(getPROCID(msg, LOCK_MUTEX));
	stype = tpl->source_type != NULL ? tpl->source_type : "APP";
	env->pb->timestamp = msgenv_time_ns(&msg->tTIMESTAMP);
	rc = lgr_env_set_source_id(env, sid);
	if (rc == LGR_OK)
		rc = lgr_env_set_instance_id(env, iid);
	if (rc == LGR_OK)
		rc = lgr_env_set_tag(env, "source_type", stype);
	if (rc == LGR_OK)
		rc = lgr_env_set_log(env, mlen > 0 ? getMSG(msg) : (const uchar *)"", mlen > 0 ? (size_t)mlen : 0,
			msg->iSeverity <= SEVERITY_ERR ? LOGGREGATOR__V2__LOG__TYPE__ERR
						       : LOGGREGATOR__V2__LOG__TYPE__OUT);
	if (rc != LGR_OK)
		goto out;
	*out = env;
	env = NULL; /* ownership transferred */
out:
	lgr_env_unref(env);
	return rc;
}

/* msgenv_build (scratch NULL) and msgenv_read. */
static int build(smsg_t *msg, const struct msgenv_tpl *tpl, const struct lgr_limits *lim,
	struct lgr_env_scratch *scratch, const struct lgr_env **view, struct lgr_env **out, bool *from_iml)
{
	static const struct msgenv_tpl none;
	struct fjson_object *tree = NULL;
	bool found;
	int rc;

	pthread_mutex_lock(&msg->mut);
	found = msg->json != NULL && fjson_object_object_get_ex(msg->json, "loggregator", &tree) && tree != NULL;
	rc = found ? from_tree(msg, tree, lim, scratch, view, out) : LGR_OK;
	pthread_mutex_unlock(&msg->mut);
	if (from_iml != NULL)
		*from_iml = found;
	if (!found)
		rc = from_plain(msg, tpl != NULL ? tpl : &none, out);
	return rc;
}

int msgenv_build(
	smsg_t *msg, const struct msgenv_tpl *tpl, const struct lgr_limits *lim, struct lgr_env **out, bool *from_iml)
{
	if (out == NULL)
		return LGR_EINVAL;
	*out = NULL;
	if (msg == NULL)
		return LGR_EINVAL;
	return build(msg, tpl, lim, NULL, NULL, out, from_iml);
}

int msgenv_read(smsg_t *msg, const struct msgenv_tpl *tpl, const struct lgr_limits *lim,
	struct lgr_env_scratch *scratch, const struct lgr_env **view, struct lgr_env **owned, bool *from_iml)
{
	int rc;

	if (view == NULL || owned == NULL)
		return LGR_EINVAL;
	*view = NULL;
	*owned = NULL;
	if (msg == NULL || scratch == NULL)
		return LGR_EINVAL;
	rc = build(msg, tpl, lim, scratch, view, owned, from_iml);
	if (rc == LGR_OK && *owned != NULL)
		*view = *owned;
	return rc;
}

int msgenv_pack_log(smsg_t *msg, const struct lgr_limits *lim, msgenv_place_fn *place, void *ud)
{
	struct fjson_object *tree = NULL;
	struct lgr_fjson_log m;
	uint8_t *dst = NULL;
	int mlen, rc = LGR_EUNSUPPORTED;

	if (msg == NULL || place == NULL)
		return LGR_EINVAL;
	pthread_mutex_lock(&msg->mut);
	if (msg->json != NULL && fjson_object_object_get_ex(msg->json, "loggregator", &tree) && tree != NULL) {
		mlen = getMSGLen(msg);
		rc = lgr_fjson_log_measure(tree, mlen > 0 ? (const void *)getMSG(msg) : (const void *)"",
			mlen > 0 ? (size_t)mlen : 0, lim, &m);
		if (rc == LGR_OK)
			rc = place(ud, &m, &dst);
		if (rc == LGR_OK)
			lgr_fjson_log_pack(&m, dst);
	}
	pthread_mutex_unlock(&msg->mut);
	return rc;
}

void msgenv_tpl_slots_init(
	struct msgenv_tpl_slots *s, const char *source_id, const char *instance_id, const char *source_type)
{
	memset(s, 0, sizeof(*s));
	if (source_id != NULL) {
		s->names[s->n++] = source_id;
		s->source_id = s->n;
	}
	if (instance_id != NULL) {
		s->names[s->n++] = instance_id;
		s->instance_id = s->n;
	}
	if (source_type != NULL) {
		s->names[s->n++] = source_type;
		s->source_type = s->n;
	}
}

rsRetVal msgenv_tpl_request(const struct msgenv_tpl_slots *s, omodStringRequest_t *omsr)
{
	uchar *tpl = NULL;
	int i;
	DEFiRet;

	/* the name is not used for a message-passing entry, but the core wants one */
	CHKmalloc(tpl = (uchar *)strdup("RSYSLOG_FileFormat"));
	CHKiRet(OMSRsetEntry(omsr, 0, tpl, OMSR_TPL_AS_MSG));
	tpl = NULL; /* ownership transferred */
	for (i = 0; i < s->n; i++) {
		CHKmalloc(tpl = (uchar *)strdup(s->names[i]));
		CHKiRet(OMSRsetEntry(omsr, 1 + i, tpl, OMSR_NO_RQD_TPL_OPTS));
		tpl = NULL; /* ownership transferred */
	}
finalize_it:
	free(tpl);
	RETiRet;
}

void msgenv_tpl_get(const struct msgenv_tpl_slots *s, void **params, struct msgenv_tpl *out)
{
	out->source_id = s->source_id > 0 ? params[s->source_id] : NULL;
	out->instance_id = s->instance_id > 0 ? params[s->instance_id] : NULL;
	out->source_type = s->source_type > 0 ? params[s->source_type] : NULL;
}
