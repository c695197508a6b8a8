/*
 * omfirehose.c: rsyslog output module that plays the router's egress side: a gRPC loggregator.v2.Egress listener
 * for subscribers (shard groups, selectors), an optional HTTPS gateway (/v2/read server-sent events and recent
 * envelopes per source id), and syslog drains driven by bindings.
 *
 * This file is the rsyslog glue: the parameter table, config checks, counters and the action lifecycle. Like
 * omdoppler it asks for the message object (OMSR_TPL_AS_MSG) through the non-transactional doAction. The
 * listeners, gateway and drains land in later changes; until then doAction counts each message as ingress and
 * accepts it.
 *
 * Threads: rsyslog may run several workers of one action at once; each has its own wrkrInstanceData_t, and the
 * shared instanceData is read-only after newActInst except for the counters, which are atomic.
 */
#include "../common/rsconfig.h" /* rsyslog's config.h, first */

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

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
MODULE_CNFNAME("omfirehose")

DEF_OMOD_STATIC_DATA
DEFobjCurrIf(statsobj)

#define MODNAME "omfirehose"

	enum omf_auth {
		OMF_AUTH_TOKEN,
		OMF_AUTH_NONE
	};

struct omf_conf {
	char *address;
	int port;
	char *port_file;
	long long subscriber_buffer;
	long long max_streams;
	long long batch_max;
	long long batch_flush_ms;
	long long recent_size;
	long long recent_max_sources;
	bool tls;
	char *tls_cacert;
	char *tls_mycert;
	char *tls_myprivkey;
	struct lgr_conf_strv tls_permitted_peers;
	char *gw_address;
	int gw_port;
	char *gw_port_file;
	bool gw_tls;
	char *gw_tls_cacert;
	char *gw_tls_mycert;
	char *gw_tls_myprivkey;
	char *gw_tokens_file;
	int gw_auth;
	char *drains_bindings_file;
	char *drains_bindings_url;
	char *drains_tls_cacert;
	char *drains_tls_mycert;
	char *drains_tls_myprivkey;
	char *drains_tls_servername;
	long long drains_poll_ms;
	struct lgr_conf_strv drains_aggregate;
	long long drains_per_app;
	long long drains_buffer;
	long long drains_idle_ms;
	struct lgr_conf_strv drains_deny_ranges;
	struct lgr_conf_seen seen;
};

static const char *const auth_modes[] = {"token", "none", NULL};

static bool has_scheme(const char *value, const char *scheme)
{
	size_t len = strlen(scheme);

	return strncasecmp(value, scheme, len) == 0 && value[len] != '\0';
}

/* A drain URL as Loggregator accepts them: syslog://, syslog-tls://, https:// with something after it. */
static int check_drain_url(const char *value, char *why, size_t whylen)
{
	if (has_scheme(value, "syslog://") || has_scheme(value, "syslog-tls://") || has_scheme(value, "https://"))
		return LGR_OK;
	snprintf(why, whylen, "expected a syslog://, syslog-tls:// or https:// URL");
	return LGR_EINVAL;
}

static int check_https_url(const char *value, char *why, size_t whylen)
{
	if (has_scheme(value, "https://"))
		return LGR_OK;
	snprintf(why, whylen, "expected an https:// URL");
	return LGR_EINVAL;
}

#define F(m) offsetof(struct omf_conf, m)
static const struct lgr_conf_param omf_params[] = {
	{.name = "address",
		.type = LGR_CONF_STRING,
		.def = "127.0.0.1",
		.offset = F(address),
		.desc = "Egress listen address"},
	{.name = "port",
		.type = LGR_CONF_PORT,
		.def = "8083",
		.offset = F(port),
		.desc = "Egress listen port; 0 picks a free one"},
	{.name = "listenPortFileName",
		.type = LGR_CONF_STRING,
		.offset = F(port_file),
		.desc = "file to write the bound Egress port to"},
	{.name = "subscriber.buffer",
		.type = LGR_CONF_INT,
		.def = "1000",
		.offset = F(subscriber_buffer),
		.min = 1,
		.max = 10000000,
		.desc = "envelopes in each subscriber's drop-oldest buffer"},
	{.name = "maxStreams",
		.type = LGR_CONF_INT,
		.def = "500",
		.offset = F(max_streams),
		.min = 1,
		.max = 100000,
		.desc = "egress streams accepted; beyond, RESOURCE_EXHAUSTED"},
	{.name = "batch.maxsize",
		.type = LGR_CONF_INT,
		.def = "100",
		.offset = F(batch_max),
		.min = 1,
		.max = 65536,
		.desc = "envelopes per egress batch"},
	{.name = "batch.flushinterval",
		.type = LGR_CONF_DURATION,
		.def = "100",
		.offset = F(batch_flush_ms),
		.min = 1,
		.max = 60000,
		.desc = "longest wait before a partial egress batch is sent (ms)"},
	{.name = "recent.size",
		.type = LGR_CONF_INT,
		.def = "100",
		.offset = F(recent_size),
		.min = 0,
		.max = 100000,
		.desc = "recent envelopes kept per source id (0: none)"},
	{.name = "recent.maxSources",
		.type = LGR_CONF_INT,
		.def = "10000",
		.offset = F(recent_max_sources),
		.min = 1,
		.max = 10000000,
		.desc = "source ids kept for recent envelopes, least recently written evicted"},
	{.name = "tls",
		.type = LGR_CONF_BOOL,
		.def = "on",
		.offset = F(tls),
		.desc = "off: plaintext h2c, for tests and loopback only"},
	{.name = "tls.cacert",
		.type = LGR_CONF_STRING,
		.offset = F(tls_cacert),
		.desc = "PEM file: CA that subscribers must chain to"},
	{.name = "tls.mycert",
		.type = LGR_CONF_STRING,
		.offset = F(tls_mycert),
		.desc = "PEM file: own server certificate"},
	{.name = "tls.myprivkey",
		.type = LGR_CONF_STRING,
		.offset = F(tls_myprivkey),
		.desc = "PEM file: own private key"},
	{.name = "tls.permittedpeers",
		.type = LGR_CONF_ARRAY,
		.offset = F(tls_permitted_peers),
		.desc = "client SANs/CNs accepted in addition to the CA check"},
	{.name = "gateway.address",
		.type = LGR_CONF_STRING,
		.def = "127.0.0.1",
		.offset = F(gw_address),
		.desc = "HTTPS gateway listen address"},
	{.name = "gateway.port",
		.type = LGR_CONF_PORT,
		.offset = F(gw_port),
		.desc = "HTTPS gateway listen port; the gateway is off unless set; 0 picks a free one"},
	{.name = "gateway.listenPortFileName",
		.type = LGR_CONF_STRING,
		.offset = F(gw_port_file),
		.desc = "file to write the bound gateway port to"},
	{.name = "gateway.tls",
		.type = LGR_CONF_BOOL,
		.def = "on",
		.offset = F(gw_tls),
		.desc = "off: plaintext HTTP, for tests and loopback only"},
	{.name = "gateway.tls.cacert",
		.type = LGR_CONF_STRING,
		.offset = F(gw_tls_cacert),
		.desc = "PEM file: CA for optional client certificates"},
	{.name = "gateway.tls.mycert",
		.type = LGR_CONF_STRING,
		.offset = F(gw_tls_mycert),
		.desc = "PEM file: gateway server certificate"},
	{.name = "gateway.tls.myprivkey",
		.type = LGR_CONF_STRING,
		.offset = F(gw_tls_myprivkey),
		.desc = "PEM file: gateway private key"},
	{.name = "gateway.tokensFile",
		.type = LGR_CONF_STRING,
		.offset = F(gw_tokens_file),
		.desc = "bearer tokens, one per line: 'token admin' or 'token source_id[,source_id...]'"},
	{.name = "gateway.auth",
		.type = LGR_CONF_ENUM,
		.def = "token",
		.offset = F(gw_auth),
		.words = auth_modes,
		.desc = "token: bearer tokens from gateway.tokensFile; none: no authentication (tests only)"},
	{.name = "drains.bindingsFile",
		.type = LGR_CONF_STRING,
		.offset = F(drains_bindings_file),
		.desc = "JSON bindings in the binding cache's form; reloaded on HUP and when it changes"},
	{.name = "drains.bindingsUrl",
		.type = LGR_CONF_STRING,
		.offset = F(drains_bindings_url),
		.check = check_https_url,
		.desc = "HTTPS endpoint serving the bindings JSON (mutual TLS), polled"},
	{.name = "drains.tls.cacert",
		.type = LGR_CONF_STRING,
		.offset = F(drains_tls_cacert),
		.desc = "PEM file: CA the bindings endpoint must chain to"},
	{.name = "drains.tls.mycert",
		.type = LGR_CONF_STRING,
		.offset = F(drains_tls_mycert),
		.desc = "PEM file: client certificate for the bindings endpoint"},
	{.name = "drains.tls.myprivkey",
		.type = LGR_CONF_STRING,
		.offset = F(drains_tls_myprivkey),
		.desc = "PEM file: client private key for the bindings endpoint"},
	{.name = "drains.tls.servername",
		.type = LGR_CONF_STRING,
		.offset = F(drains_tls_servername),
		.desc = "DNS SAN the bindings endpoint must present (unset: the URL's host)"},
	{.name = "drains.pollInterval",
		.type = LGR_CONF_DURATION,
		.def = "60000",
		.offset = F(drains_poll_ms),
		.min = 1000,
		.max = 86400000,
		.desc = "bindings URL poll interval (ms), with jitter"},
	{.name = "drains.aggregate",
		.type = LGR_CONF_ARRAY,
		.offset = F(drains_aggregate),
		.check = check_drain_url,
		.desc = "drain URLs that receive every source"},
	{.name = "drains.perApp",
		.type = LGR_CONF_INT,
		.def = "5",
		.offset = F(drains_per_app),
		.min = 1,
		.max = 1000,
		.desc = "drains kept per app (sorted by URL)"},
	{.name = "drains.buffer",
		.type = LGR_CONF_INT,
		.def = "10000",
		.offset = F(drains_buffer),
		.min = 1,
		.max = 10000000,
		.desc = "envelopes in each drain's drop-oldest buffer"},
	{.name = "drains.idleTimeout",
		.type = LGR_CONF_DURATION,
		.def = "600000",
		.offset = F(drains_idle_ms),
		.min = 1000,
		.max = 86400000,
		.desc = "close a drain's writer after this long without traffic (ms)"},
	{.name = "drains.denyRanges",
		.type = LGR_CONF_ARRAY,
		.offset = F(drains_deny_ranges),
		.check = lgr_conf_check_cidr,
		.desc = "CIDR ranges drains may not resolve to"},
};
#undef F

static int require_all(const struct lgr_conf_table *t, const void *c, const char *const *names, const char *condition,
	char *err, size_t errlen)
{
	int rc = LGR_OK;

	for (; *names != NULL && rc == LGR_OK; names++)
		rc = lgr_conf_require(t, c, *names, condition, err, errlen);
	return rc;
}

static int forbid_all(const struct lgr_conf_table *t, const void *c, const char *const *names, const char *condition,
	char *err, size_t errlen)
{
	int rc = LGR_OK;

	for (; *names != NULL && rc == LGR_OK; names++)
		rc = lgr_conf_forbid(t, c, *names, condition, err, errlen);
	return rc;
}

static int check_gateway(const struct lgr_conf_table *t, const struct omf_conf *c, char *err, size_t errlen)
{
	static const char *const gateway_params[] = {"gateway.address", "gateway.listenPortFileName", "gateway.tls",
		"gateway.tls.cacert", "gateway.tls.mycert", "gateway.tls.myprivkey", "gateway.tokensFile",
		"gateway.auth", NULL};
	static const char *const gateway_files[] = {"gateway.tls.mycert", "gateway.tls.myprivkey", NULL};
	int rc;

	if (!lgr_conf_is_set(t, c, "gateway.port"))
		return forbid_all(
			t, c, gateway_params, "with gateway.port (the gateway is off without it)", err, errlen);
	if (c->gw_tls) {
		rc = require_all(t, c, gateway_files, "when the gateway is on and gateway.tls is on", err, errlen);
		if (rc != LGR_OK)
			return rc;
	}
	if (c->gw_auth == OMF_AUTH_TOKEN)
		return lgr_conf_require(t, c, "gateway.tokensFile",
			"when the gateway is on, unless gateway.auth=\"none\"", err, errlen);
	return lgr_conf_forbid(t, c, "gateway.tokensFile", "with gateway.auth=\"token\"", err, errlen);
}

static int check_drains(const struct lgr_conf_table *t, const struct omf_conf *c, char *err, size_t errlen)
{
	static const char *const url_params[] = {"drains.tls.cacert", "drains.tls.mycert", "drains.tls.myprivkey",
		"drains.tls.servername", "drains.pollInterval", NULL};
	static const char *const url_files[] = {"drains.tls.cacert", "drains.tls.mycert", "drains.tls.myprivkey", NULL};

	if (lgr_conf_is_set(t, c, "drains.bindingsFile") && lgr_conf_is_set(t, c, "drains.bindingsUrl"))
		return lgr_conf_error(t, err, errlen, LGR_EINVAL,
			"parameters 'drains.bindingsFile' and 'drains.bindingsUrl' exclude each other");
	if (!lgr_conf_is_set(t, c, "drains.bindingsUrl"))
		return forbid_all(t, c, url_params, "with drains.bindingsUrl", err, errlen);
	return require_all(t, c, url_files, "with drains.bindingsUrl (mutual TLS)", err, errlen);
}

static int omf_check(const struct lgr_conf_table *t, void *obj, char *err, size_t errlen)
{
	static const char *const files[] = {"tls.cacert", "tls.mycert", "tls.myprivkey", NULL};
	const struct omf_conf *c = obj;
	int rc = LGR_OK;

	if (c->tls)
		rc = require_all(t, c, files, "when tls is on", err, errlen);
	if (rc == LGR_OK)
		rc = check_gateway(t, c, err, errlen);
	if (rc == LGR_OK)
		rc = check_drains(t, c, err, errlen);
	return rc;
}

static const struct lgr_conf_table omf_table = {
	.name = MODNAME,
	.params = omf_params,
	.nparams = sizeof(omf_params) / sizeof(omf_params[0]),
	.seen_offset = offsetof(struct omf_conf, seen),
	.check = omf_check,
};

static struct cnfparamdescr actpdescr[sizeof(omf_params) / sizeof(omf_params[0])];
static struct cnfparamblk actpblk;

typedef struct _instanceData {
	struct omf_conf conf;
	statsobj_t *stats;
	STATSCOUNTER_DEF(ctr_ingress, mut_ctr_ingress)
	STATSCOUNTER_DEF(ctr_egress, mut_ctr_egress)
	STATSCOUNTER_DEF(ctr_dropped, mut_ctr_dropped)
	STATSCOUNTER_DEF(ctr_subscriptions, mut_ctr_subscriptions)
	STATSCOUNTER_DEF(ctr_slow, mut_ctr_slow)
} instanceData;

typedef struct wrkrInstanceData {
	instanceData *pData;
} wrkrInstanceData_t;

static rsRetVal stats_init(instanceData *pData)
{
	const struct glue_counter ctrs[] = {
		{"ingress", &pData->ctr_ingress},
		{"egress", &pData->ctr_egress},
		{"dropped.egress", &pData->ctr_dropped},
		{"subscriptions", &pData->ctr_subscriptions},
		{"slow_consumer", &pData->ctr_slow},
	};
	char name[256];

	snprintf(name, sizeof(name), MODNAME "(%s:%d)", pData->conf.address, pData->conf.port);
	return glue_stats_new(
		&statsobj, &pData->stats, name, MODNAME, ctrs, sizeof(ctrs) / sizeof(ctrs[0]), NULL, NULL);
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
	lgr_conf_free(&omf_table, &pData->conf);
ENDfreeInstance

BEGINfreeWrkrInstance
CODESTARTfreeWrkrInstance
ENDfreeWrkrInstance

BEGINisCompatibleWithFeature
CODESTARTisCompatibleWithFeature
ENDisCompatibleWithFeature

BEGINdbgPrintInstInfo
CODESTARTdbgPrintInstInfo
	glue_conf_debug(&omf_table, &pData->conf);
ENDdbgPrintInstInfo

BEGINtryResume
CODESTARTtryResume
ENDtryResume

/* The core passes the message object (OMSR_TPL_AS_MSG) and keeps owning it. */
BEGINdoAction_NoStrings
	smsg_t *const msg = ((smsg_t **)pMsgData)[0];
	instanceData *const pData = pWrkrData->pData;
CODESTARTdoAction
	(void)msg;
	STATSCOUNTER_INC(pData->ctr_ingress, pData->mut_ctr_ingress);
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
	if (glue_conf_load(&omf_table, &actpblk, pvals, &pData->conf, err, sizeof(err)) != LGR_OK) {
		LogError(0, RS_RET_CONF_PARAM_INVLD, "%s", err);
		ABORT_FINALIZE(RS_RET_CONF_PARAM_INVLD);
	}
	if (!pData->conf.tls)
		LogMsg(0, NO_ERRCODE, LOG_WARNING, MODNAME ": tls=\"off\": plaintext, for tests and loopback only");
	if (lgr_conf_is_set(&omf_table, &pData->conf, "gateway.port") && !pData->conf.gw_tls)
		LogMsg(0, NO_ERRCODE, LOG_WARNING,
			MODNAME ": gateway.tls=\"off\": plaintext, for tests and loopback only");
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
	glue_paramblk_init(&omf_table, actpdescr, &actpblk);
	lgr_log_set(glue_log, (void *)MODNAME);
ENDmodInit
	/* clang-format on */
