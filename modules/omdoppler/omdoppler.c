/*
 * omdoppler.c: rsyslog output module that sends messages as Loggregator envelopes to routers (Dopplers) over
 * gRPC v2 BatchSender or v1 Pusher, with a drop-oldest buffer so that rsyslog never waits on slow routers.
 *
 * This file is the rsyslog glue: the parameter table, config checks, counters and the action lifecycle. It asks
 * rsyslog for the message object (OMSR_TPL_AS_MSG) through the non-transactional doAction, because envelopes are
 * rebuilt from the message's $!loggregator JSON, which templates cannot hand over. The egress lands in a later
 * change; until then doAction accepts every message.
 *
 * Threads: rsyslog may run several workers of one action at once; each has its own wrkrInstanceData_t, and the
 * shared instanceData is read-only after newActInst except for the counters, which are atomic.
 */
#include "../common/rsconfig.h" /* rsyslog's config.h, first */

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rsyslog.h"
#include "dirty.h"
#include "cfsysline.h"
#include "module-template.h"
#include "errmsg.h"
#include "debug.h"
#include "statsobj.h"
#include "rainerscript.h"

#include "lgr.h"
#include "lgr_conf.h"
#include "../common/glue.h"

MODULE_TYPE_OUTPUT
MODULE_TYPE_NOKEEP
MODULE_CNFNAME("omdoppler")

DEF_OMOD_STATIC_DATA
DEFobjCurrIf(statsobj)

#define MODNAME "omdoppler"

	enum omd_protocol {
		OMD_V2,
		OMD_V1
	};

struct omd_conf {
	struct lgr_conf_strv routers;
	long long streams;
	long long batch_max;
	long long batch_flush_ms;
	long long buffer_size;
	int protocol;
	char *source_id_tpl;
	char *instance_id_tpl;
	char *source_type_tpl;
	bool tls;
	char *tls_cacert;
	char *tls_mycert;
	char *tls_myprivkey;
	char *tls_servername;
	struct lgr_conf_seen seen;
};

static const char *const protocols[] = {"v2", "v1", NULL};

#define F(m) offsetof(struct omd_conf, m)
static const struct lgr_conf_param omd_params[] = {
	{.name = "routers",
		.type = LGR_CONF_ARRAY,
		.offset = F(routers),
		.flags = LGR_CONF_REQUIRED,
		.check = lgr_conf_check_hostport,
		.desc = "routers to send to, host:port"},
	{.name = "streams",
		.type = LGR_CONF_INT,
		.def = "5",
		.offset = F(streams),
		.min = 1,
		.max = 100,
		.desc = "parallel gRPC streams; each batch goes to a random one"},
	{.name = "batch.maxsize",
		.type = LGR_CONF_INT,
		.def = "100",
		.offset = F(batch_max),
		.min = 1,
		.max = 65536,
		.desc = "envelopes per batch"},
	{.name = "batch.flushinterval",
		.type = LGR_CONF_DURATION,
		.def = "100",
		.offset = F(batch_flush_ms),
		.min = 1,
		.max = 60000,
		.desc = "longest wait before a partial batch is sent (ms)"},
	{.name = "buffer.size",
		.type = LGR_CONF_INT,
		.def = "10000",
		.offset = F(buffer_size),
		.min = 1,
		.max = 10000000,
		.desc = "envelopes in the drop-oldest buffer when routers are slow or gone"},
	{.name = "protocol",
		.type = LGR_CONF_ENUM,
		.def = "v2",
		.offset = F(protocol),
		.words = protocols,
		.desc = "v2 (BatchSender) or v1 (Pusher)"},
	{.name = "sourceId",
		.type = LGR_CONF_STRING,
		.offset = F(source_id_tpl),
		.desc = "template for the source id of messages not from imloggregator (unset: app-name)"},
	{.name = "instanceId",
		.type = LGR_CONF_STRING,
		.offset = F(instance_id_tpl),
		.desc = "template for the instance id of messages not from imloggregator (unset: procid)"},
	{.name = "sourceType",
		.type = LGR_CONF_STRING,
		.offset = F(source_type_tpl),
		.desc = "template for the source_type tag of messages not from imloggregator (unset: APP)"},
	{.name = "tls",
		.type = LGR_CONF_BOOL,
		.def = "on",
		.offset = F(tls),
		.desc = "off: plaintext h2c, for tests and loopback only"},
	{.name = "tls.cacert",
		.type = LGR_CONF_STRING,
		.offset = F(tls_cacert),
		.desc = "PEM file: CA the routers must chain to"},
	{.name = "tls.mycert",
		.type = LGR_CONF_STRING,
		.offset = F(tls_mycert),
		.desc = "PEM file: own client certificate"},
	{.name = "tls.myprivkey",
		.type = LGR_CONF_STRING,
		.offset = F(tls_myprivkey),
		.desc = "PEM file: own private key"},
	{.name = "tls.servername",
		.type = LGR_CONF_STRING,
		.def = "doppler",
		.offset = F(tls_servername),
		.desc = "DNS SAN the routers must present"},
};
#undef F

static int omd_check(const struct lgr_conf_table *t, void *obj, char *err, size_t errlen)
{
	static const char *const files[] = {"tls.cacert", "tls.mycert", "tls.myprivkey"};
	const struct omd_conf *c = obj;
	size_t i;
	int rc = LGR_OK;

	if (!c->tls)
		goto out;
	for (i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		rc = lgr_conf_require(t, c, files[i], "when tls is on", err, errlen);
		if (rc != LGR_OK)
			goto out;
	}
out:
	return rc;
}

static const struct lgr_conf_table omd_table = {
	.name = MODNAME,
	.params = omd_params,
	.nparams = sizeof(omd_params) / sizeof(omd_params[0]),
	.seen_offset = offsetof(struct omd_conf, seen),
	.check = omd_check,
};

static struct cnfparamdescr actpdescr[sizeof(omd_params) / sizeof(omd_params[0])];
static struct cnfparamblk actpblk;

typedef struct _instanceData {
	struct omd_conf conf;
	statsobj_t *stats;
	STATSCOUNTER_DEF(ctr_egress, mut_ctr_egress)
	STATSCOUNTER_DEF(ctr_dropped, mut_ctr_dropped)
	STATSCOUNTER_DEF(ctr_connects, mut_ctr_connects)
	STATSCOUNTER_DEF(ctr_errors, mut_ctr_errors)
} instanceData;

typedef struct wrkrInstanceData {
	instanceData *pData;
} wrkrInstanceData_t;

/* "omdoppler(r1:8082,r2:8082)", cut to fit: the name impstats shows. */
static void inst_name(const instanceData *pData, char *buf, size_t len)
{
	size_t used, i;

	used = (size_t)snprintf(buf, len, MODNAME "(");
	for (i = 0; i < pData->conf.routers.n && used < len; i++)
		used += (size_t)snprintf(buf + used, len - used, "%s%s", i ? "," : "", pData->conf.routers.v[i]);
	if (used < len)
		snprintf(buf + used, len - used, ")");
}

static rsRetVal stats_init(instanceData *pData)
{
	char name[256];
	DEFiRet;

	inst_name(pData, name, sizeof(name));
	CHKiRet(statsobj.Construct(&pData->stats));
	CHKiRet(statsobj.SetName(pData->stats, (uchar *)name));
	CHKiRet(statsobj.SetOrigin(pData->stats, (uchar *)MODNAME));
	STATSCOUNTER_INIT(pData->ctr_egress, pData->mut_ctr_egress);
	CHKiRet(statsobj.AddCounter(
		pData->stats, (uchar *)"egress", ctrType_IntCtr, CTR_FLAG_RESETTABLE, &pData->ctr_egress));
	STATSCOUNTER_INIT(pData->ctr_dropped, pData->mut_ctr_dropped);
	CHKiRet(statsobj.AddCounter(
		pData->stats, (uchar *)"dropped.egress", ctrType_IntCtr, CTR_FLAG_RESETTABLE, &pData->ctr_dropped));
	STATSCOUNTER_INIT(pData->ctr_connects, pData->mut_ctr_connects);
	CHKiRet(statsobj.AddCounter(
		pData->stats, (uchar *)"router.connects", ctrType_IntCtr, CTR_FLAG_RESETTABLE, &pData->ctr_connects));
	STATSCOUNTER_INIT(pData->ctr_errors, pData->mut_ctr_errors);
	CHKiRet(statsobj.AddCounter(
		pData->stats, (uchar *)"router.errors", ctrType_IntCtr, CTR_FLAG_RESETTABLE, &pData->ctr_errors));
	CHKiRet(statsobj.ConstructFinalize(pData->stats));
finalize_it:
	RETiRet;
}

/* rsyslog's entry points: its macros are not statements clang-format understands, so it keeps off them */
/* clang-format off */

BEGINcreateInstance
CODESTARTcreateInstance
ENDcreateInstance

BEGINcreateWrkrInstance
CODESTARTcreateWrkrInstance
ENDcreateWrkrInstance

BEGINfreeInstance
CODESTARTfreeInstance
	if (pData->stats != NULL)
		statsobj.Destruct(&pData->stats);
	lgr_conf_free(&omd_table, &pData->conf);
ENDfreeInstance

BEGINfreeWrkrInstance
CODESTARTfreeWrkrInstance
ENDfreeWrkrInstance

BEGINisCompatibleWithFeature
CODESTARTisCompatibleWithFeature
ENDisCompatibleWithFeature

BEGINdbgPrintInstInfo
CODESTARTdbgPrintInstInfo
	glue_conf_debug(&omd_table, &pData->conf);
ENDdbgPrintInstInfo

BEGINtryResume
CODESTARTtryResume
ENDtryResume

/* The core passes the message object (OMSR_TPL_AS_MSG) and keeps owning it. */
BEGINdoAction_NoStrings
	smsg_t *const msg = ((smsg_t **)pMsgData)[0];
CODESTARTdoAction
	(void)msg;
ENDdoAction

BEGINnewActInst
	struct cnfparamvals *pvals = NULL;
	char err[GLUE_ERR_MAX];
	uchar *tpl = NULL;
CODESTARTnewActInst
	pvals = nvlstGetParams(lst, &actpblk, NULL);
	if (pvals == NULL)
		ABORT_FINALIZE(RS_RET_MISSING_CNFPARAMS);
	CHKiRet(createInstance(&pData));
	if (glue_conf_load(&omd_table, &actpblk, pvals, &pData->conf, err, sizeof(err)) != LGR_OK) {
		LogError(0, RS_RET_CONF_PARAM_INVLD, "%s", err);
		ABORT_FINALIZE(RS_RET_CONF_PARAM_INVLD);
	}
	if (!pData->conf.tls)
		LogMsg(0, NO_ERRCODE, LOG_WARNING, MODNAME ": tls=\"off\": plaintext, for tests and loopback only");
	CODE_STD_STRING_REQUESTnewActInst(1)
	/* the name is not used for a message-passing entry, but the core wants one */
	CHKmalloc(tpl = (uchar *)strdup("RSYSLOG_FileFormat"));
	CHKiRet(OMSRsetEntry(*ppOMSR, 0, tpl, OMSR_TPL_AS_MSG));
	tpl = NULL; /* ownership transferred */
	CHKiRet(stats_init(pData));
CODE_STD_FINALIZERnewActInst
	free(tpl);
	cnfparamvalsDestruct(pvals, &actpblk);
ENDnewActInst

NO_LEGACY_CONF_parseSelectorAct

BEGINmodExit
CODESTARTmodExit
	lgr_log_set(NULL, NULL);
	objRelease(statsobj, CORE_COMPONENT);
ENDmodExit

BEGINqueryEtryPt
CODESTARTqueryEtryPt
CODEqueryEtryPt_STD_OMOD_QUERIES
CODEqueryEtryPt_STD_OMOD8_QUERIES
CODEqueryEtryPt_STD_CONF2_OMOD_QUERIES
ENDqueryEtryPt

BEGINmodInit()
CODESTARTmodInit
	*ipIFVersProvided = CURR_MOD_IF_VERSION;
CODEmodInit_QueryRegCFSLineHdlr
	CHKiRet(objUse(statsobj, CORE_COMPONENT));
	glue_paramblk_init(&omd_table, actpdescr, &actpblk);
	lgr_log_set(glue_log, (void *)MODNAME);
ENDmodInit
	/* clang-format on */
