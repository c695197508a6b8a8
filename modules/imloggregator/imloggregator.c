/*
 * imloggregator.c: rsyslog input module for Loggregator envelopes: gRPC v2 Ingress and v1 Pusher listeners, v1
 * dropsonde UDP datagrams, and subscriptions to routers' Egress (see doc and config.md for the parameters).
 *
 * This file is the rsyslog glue: the parameter table, config load and check, counters, and the input thread's
 * lifecycle. The network side lands in a later change; until then the input thread only waits, without
 * polling, for rsyslog to stop it.
 *
 * Threads: rsyslog runs config load, check and activation on its main thread and runInput on one input thread
 * for all instances; the instance list is immutable once activated.
 */
#include "../common/rsconfig.h" /* rsyslog's config.h, first */

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
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
#include "glbl.h"
#include "ruleset.h"
#include "statsobj.h"
#include "rainerscript.h"

#include "lgr.h"
#include "lgr_conf.h"
#include "../common/glue.h"

MODULE_TYPE_INPUT
MODULE_TYPE_NOKEEP
MODULE_CNFNAME("imloggregator")

DEF_IMOD_STATIC_DATA
DEFobjCurrIf(glbl) DEFobjCurrIf(ruleset) DEFobjCurrIf(statsobj)

#define MODNAME	      "imloggregator"
#define IML_PORT_GRPC 3458 /* the real agent's ports */
#define IML_PORT_UDP  3457

	enum iml_protocol {
		IML_GRPC,
		IML_UDP,
		IML_SUBSCRIBE
	};
enum iml_role { IML_AGENT, IML_ROUTER };

struct iml_conf {
	int protocol;
	char *address;
	int port;
	char *port_file;
	char *ruleset;
	int role;
	struct lgr_conf_strv default_tags;
	size_t max_message;
	long long buffer_size;
	struct lgr_conf_strv routers;
	char *shard_id;
	struct lgr_conf_strv selectors;
	struct lgr_conf_strv source_ids;
	bool tls;
	char *tls_cacert;
	char *tls_mycert;
	char *tls_myprivkey;
	char *tls_servername;
	struct lgr_conf_strv tls_permitted_peers;
	struct lgr_conf_seen seen;
};

static const char *const protocols[] = {"grpc", "udp", "subscribe", NULL};
static const char *const roles[] = {"agent", "router", NULL};
static const char *const envelope_types[] = {"log", "counter", "gauge", "timer", "event", NULL};

#define F(m) offsetof(struct iml_conf, m)
static const struct lgr_conf_param iml_params[] = {
	{.name = "protocol",
		.type = LGR_CONF_ENUM,
		.def = "grpc",
		.offset = F(protocol),
		.words = protocols,
		.desc = "grpc (v2 Ingress + v1 Pusher), udp (v1 dropsonde datagrams), subscribe (routers' Egress)"},
	{.name = "address",
		.type = LGR_CONF_STRING,
		.def = "127.0.0.1",
		.offset = F(address),
		.desc = "listen address"},
	{.name = "port",
		.type = LGR_CONF_PORT,
		.offset = F(port),
		.desc = "listen port; 0 picks a free one; default 3458 (grpc), 3457 (udp)"},
	{.name = "listenPortFileName",
		.type = LGR_CONF_STRING,
		.offset = F(port_file),
		.desc = "file to write the bound port to"},
	{.name = "ruleset", .type = LGR_CONF_STRING, .offset = F(ruleset), .desc = "ruleset the messages go to"},
	{.name = "role",
		.type = LGR_CONF_ENUM,
		.def = "agent",
		.offset = F(role),
		.words = roles,
		.desc = "agent applies the agent's envelope rules; router passes envelopes through"},
	{.name = "defaultTags",
		.type = LGR_CONF_ARRAY,
		.offset = F(default_tags),
		.check = lgr_conf_check_tag,
		.desc = "key:value tags added where absent (agent role)"},
	{.name = "maxMessageSize",
		.type = LGR_CONF_SIZE,
		.def = "10m",
		.offset = F(max_message),
		.min = 1024,
		.max = 256LL * 1024 * 1024,
		.desc = "largest accepted gRPC message or datagram"},
	{.name = "buffer.size",
		.type = LGR_CONF_INT,
		.def = "10000",
		.offset = F(buffer_size),
		.min = 1,
		.max = 10000000,
		.desc = "envelopes in the drop-oldest buffer between the network and rsyslog"},
	{.name = "routers",
		.type = LGR_CONF_ARRAY,
		.offset = F(routers),
		.check = lgr_conf_check_hostport,
		.desc = "subscribe: routers (host:port) to pull from"},
	{.name = "shardId", .type = LGR_CONF_STRING, .offset = F(shard_id), .desc = "subscribe: shard group to join"},
	{.name = "selectors",
		.type = LGR_CONF_ARRAY,
		.offset = F(selectors),
		.words = envelope_types,
		.desc = "subscribe: envelope types to receive (all when unset)"},
	{.name = "sourceIds",
		.type = LGR_CONF_ARRAY,
		.offset = F(source_ids),
		.desc = "subscribe: source ids to receive (all when unset)"},
	{.name = "tls",
		.type = LGR_CONF_BOOL,
		.def = "on",
		.offset = F(tls),
		.desc = "off: plaintext h2c, for tests and loopback only"},
	{.name = "tls.cacert",
		.type = LGR_CONF_STRING,
		.offset = F(tls_cacert),
		.desc = "PEM file: CA that peers must chain to"},
	{.name = "tls.mycert", .type = LGR_CONF_STRING, .offset = F(tls_mycert), .desc = "PEM file: own certificate"},
	{.name = "tls.myprivkey",
		.type = LGR_CONF_STRING,
		.offset = F(tls_myprivkey),
		.desc = "PEM file: own private key"},
	{.name = "tls.servername",
		.type = LGR_CONF_STRING,
		.def = "doppler",
		.offset = F(tls_servername),
		.desc = "subscribe: DNS SAN the routers must present"},
	{.name = "tls.permittedpeers",
		.type = LGR_CONF_ARRAY,
		.offset = F(tls_permitted_peers),
		.desc = "listeners: client SANs/CNs accepted in addition to the CA check"},
};
#undef F

static int check_tls(const struct lgr_conf_table *t, const struct iml_conf *c, char *err, size_t errlen)
{
	static const char *const files[] = {"tls.cacert", "tls.mycert", "tls.myprivkey"};
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

/* Each name in names must not have been given, for the reason in condition. */
static int forbid_all(const struct lgr_conf_table *t, const struct iml_conf *c, const char *const *names,
	const char *condition, char *err, size_t errlen)
{
	int rc = LGR_OK;

	for (; *names != NULL && rc == LGR_OK; names++)
		rc = lgr_conf_forbid(t, c, *names, condition, err, errlen);
	return rc;
}

static int iml_check(const struct lgr_conf_table *t, void *obj, char *err, size_t errlen)
{
	static const char *const subscribe_only[] = {
		"routers", "shardId", "selectors", "sourceIds", "tls.servername", NULL};
	static const char *const listener_only[] = {
		"address", "port", "listenPortFileName", "tls.permittedpeers", NULL};
	static const char *const tls_params[] = {
		"tls", "tls.cacert", "tls.mycert", "tls.myprivkey", "tls.permittedpeers", NULL};
	struct iml_conf *c = obj;
	int rc;

	if (c->role != IML_AGENT) {
		rc = lgr_conf_forbid(t, c, "defaultTags", "with role=\"agent\"", err, errlen);
		if (rc != LGR_OK)
			goto out;
	}
	switch (c->protocol) {
	case IML_GRPC:
		rc = forbid_all(t, c, subscribe_only, "with protocol=\"subscribe\"", err, errlen);
		if (rc == LGR_OK)
			rc = check_tls(t, c, err, errlen);
		if (c->port < 0)
			c->port = IML_PORT_GRPC;
		break;
	case IML_UDP:
		rc = forbid_all(t, c, subscribe_only, "with protocol=\"subscribe\"", err, errlen);
		if (rc == LGR_OK)
			rc = forbid_all(t, c, tls_params, "with protocol=\"grpc\" or \"subscribe\" (UDP is plaintext)",
				err, errlen);
		if (c->port < 0)
			c->port = IML_PORT_UDP;
		break;
	case IML_SUBSCRIBE:
		rc = forbid_all(t, c, listener_only, "with protocol=\"grpc\" or \"udp\"", err, errlen);
		if (rc == LGR_OK)
			rc = lgr_conf_require(t, c, "routers", "with protocol=\"subscribe\"", err, errlen);
		if (rc == LGR_OK)
			rc = check_tls(t, c, err, errlen);
		break;
	default: rc = lgr_conf_error(t, err, errlen, LGR_EINVAL, "parameter 'protocol' has no known value"); break;
	}
out:
	return rc;
}

static const struct lgr_conf_table iml_table = {
	.name = MODNAME,
	.params = iml_params,
	.nparams = sizeof(iml_params) / sizeof(iml_params[0]),
	.seen_offset = offsetof(struct iml_conf, seen),
	.check = iml_check,
};

static struct cnfparamdescr inppdescr[sizeof(iml_params) / sizeof(iml_params[0])];
static struct cnfparamblk inppblk;

struct instanceConf_s {
	struct iml_conf conf;
	ruleset_t *bind_ruleset; /* NULL: the default ruleset */
	statsobj_t *stats;
	STATSCOUNTER_DEF(ctr_ingress, mut_ctr_ingress)
	STATSCOUNTER_DEF(ctr_dropped, mut_ctr_dropped)
	STATSCOUNTER_DEF(ctr_invalid, mut_ctr_invalid)
	struct instanceConf_s *next;
};

struct modConfData_s {
	rsconf_t *pConf;
	instanceConf_t *root, *tail;
};

static modConfData_t *loadModConf; /* the config being loaded */
static modConfData_t *runModConf;  /* the config being run */

static void inst_free(instanceConf_t *inst)
{
	if (inst == NULL)
		return;
	if (inst->stats != NULL)
		statsobj.Destruct(&inst->stats);
	lgr_conf_free(&iml_table, &inst->conf);
	free(inst);
}

/* "imloggregator(grpc/127.0.0.1:3458)" or "imloggregator(subscribe/shard)": the name impstats shows. */
static void inst_name(const instanceConf_t *inst, char *buf, size_t len)
{
	const struct iml_conf *c = &inst->conf;

	if (c->protocol == IML_SUBSCRIBE)
		snprintf(buf, len, MODNAME "(subscribe/%s)", c->shard_id ? c->shard_id : "");
	else
		snprintf(buf, len, MODNAME "(%s/%s:%d)", protocols[c->protocol], c->address, c->port);
}

static rsRetVal inst_stats_init(instanceConf_t *inst)
{
	char name[256];
	DEFiRet;

	inst_name(inst, name, sizeof(name));
	CHKiRet(statsobj.Construct(&inst->stats));
	CHKiRet(statsobj.SetName(inst->stats, (uchar *)name));
	CHKiRet(statsobj.SetOrigin(inst->stats, (uchar *)MODNAME));
	STATSCOUNTER_INIT(inst->ctr_ingress, inst->mut_ctr_ingress);
	CHKiRet(statsobj.AddCounter(
		inst->stats, (uchar *)"ingress", ctrType_IntCtr, CTR_FLAG_RESETTABLE, &inst->ctr_ingress));
	STATSCOUNTER_INIT(inst->ctr_dropped, inst->mut_ctr_dropped);
	CHKiRet(statsobj.AddCounter(
		inst->stats, (uchar *)"dropped.ingress", ctrType_IntCtr, CTR_FLAG_RESETTABLE, &inst->ctr_dropped));
	STATSCOUNTER_INIT(inst->ctr_invalid, inst->mut_ctr_invalid);
	CHKiRet(statsobj.AddCounter(
		inst->stats, (uchar *)"invalid", ctrType_IntCtr, CTR_FLAG_RESETTABLE, &inst->ctr_invalid));
	CHKiRet(statsobj.ConstructFinalize(inst->stats));
finalize_it:
	RETiRet;
}

/*
 * Waits until rsyslog asks the input thread to stop. rsyslog sets bShallStop and then sends SIGTTIN once; keeping
 * SIGTTIN blocked except inside ppoll() makes that race-free: a signal that arrives while the flag is checked
 * stays pending and ends the next ppoll() at once.
 */
static void wait_for_stop(thrdInfo_t *thrd)
{
	sigset_t ttin, during_wait;

	sigemptyset(&ttin);
	sigaddset(&ttin, SIGTTIN);
	pthread_sigmask(SIG_BLOCK, &ttin, &during_wait);
	sigdelset(&during_wait, SIGTTIN);
	while (!__atomic_load_n(&thrd->bShallStop, __ATOMIC_ACQUIRE) && !glbl.GetGlobalInputTermState()) {
		if (ppoll(NULL, 0, NULL, &during_wait) < 0 && errno != EINTR) {
			LogError(errno, RS_RET_ERR, MODNAME ": waiting for shutdown failed");
			break;
		}
	}
	pthread_sigmask(SIG_UNBLOCK, &ttin, NULL);
}

/* rsyslog's entry points: its macros are not statements clang-format understands, so it keeps off them */
/* clang-format off */

BEGINnewInpInst
	struct cnfparamvals *pvals = NULL;
	instanceConf_t *inst = NULL;
	char err[GLUE_ERR_MAX];
CODESTARTnewInpInst
	pvals = nvlstGetParams(lst, &inppblk, NULL);
	if (pvals == NULL)
		ABORT_FINALIZE(RS_RET_MISSING_CNFPARAMS);
	CHKmalloc(inst = calloc(1, sizeof(*inst)));
	if (glue_conf_load(&iml_table, &inppblk, pvals, &inst->conf, err, sizeof(err)) != LGR_OK) {
		LogError(0, RS_RET_CONF_PARAM_INVLD, "%s", err);
		ABORT_FINALIZE(RS_RET_CONF_PARAM_INVLD);
	}
	glue_conf_debug(&iml_table, &inst->conf);
	if (loadModConf->tail == NULL)
		loadModConf->root = inst;
	else
		loadModConf->tail->next = inst;
	loadModConf->tail = inst;
	inst = NULL; /* ownership transferred to the config */
finalize_it:
	inst_free(inst);
	cnfparamvalsDestruct(pvals, &inppblk);
ENDnewInpInst

BEGINbeginCnfLoad
CODESTARTbeginCnfLoad
	loadModConf = pModConf;
	pModConf->pConf = pConf;
ENDbeginCnfLoad

BEGINendCnfLoad
CODESTARTendCnfLoad
	loadModConf = NULL;
ENDendCnfLoad

BEGINcheckCnf
	instanceConf_t *inst;
	rsRetVal r;
CODESTARTcheckCnf
	for (inst = pModConf->root; inst != NULL; inst = inst->next) {
		inst->bind_ruleset = NULL;
		if (inst->conf.ruleset == NULL)
			continue;
		r = ruleset.GetRuleset(pModConf->pConf, &inst->bind_ruleset, (uchar *)inst->conf.ruleset);
		if (r != RS_RET_OK) {
			LogError(0, r, MODNAME ": parameter 'ruleset': ruleset '%s' not found", inst->conf.ruleset);
			iRet = r;
		}
	}
	if (pModConf->root == NULL)
		LogMsg(0, NO_ERRCODE, LOG_WARNING, MODNAME ": module loaded, but no input() uses it");
ENDcheckCnf

BEGINactivateCnf
	instanceConf_t *inst;
CODESTARTactivateCnf
	runModConf = pModConf;
	for (inst = runModConf->root; inst != NULL; inst = inst->next) {
		CHKiRet(inst_stats_init(inst));
		if (!inst->conf.tls && inst->conf.protocol != IML_UDP)
			LogMsg(0, NO_ERRCODE, LOG_WARNING,
				MODNAME ": tls=\"off\" on a %s input: plaintext, for tests and loopback only",
				protocols[inst->conf.protocol]);
	}
finalize_it:
ENDactivateCnf

BEGINfreeCnf
	instanceConf_t *inst, *next;
CODESTARTfreeCnf
	for (inst = pModConf->root; inst != NULL; inst = next) {
		next = inst->next;
		inst_free(inst);
	}
	if (runModConf == pModConf)
		runModConf = NULL;
ENDfreeCnf

BEGINrunInput
	instanceConf_t *inst;
	char name[256];
CODESTARTrunInput
	for (inst = runModConf->root; inst != NULL; inst = inst->next) {
		inst_name(inst, name, sizeof(name));
		DBGPRINTF(MODNAME ": %s configured; the network side is not part of this build yet\n", name);
	}
	wait_for_stop(pThrd);
ENDrunInput

BEGINwillRun
CODESTARTwillRun
	if (runModConf == NULL || runModConf->root == NULL)
		iRet = RS_RET_NO_RUN;
ENDwillRun

BEGINafterRun
CODESTARTafterRun
ENDafterRun

BEGINmodExit
CODESTARTmodExit
	lgr_log_set(NULL, NULL);
	objRelease(statsobj, CORE_COMPONENT);
	objRelease(ruleset, CORE_COMPONENT);
	objRelease(glbl, CORE_COMPONENT);
ENDmodExit

BEGINisCompatibleWithFeature
CODESTARTisCompatibleWithFeature
	if (eFeat == sFEATURENonCancelInputTermination)
		iRet = RS_RET_OK;
ENDisCompatibleWithFeature

BEGINqueryEtryPt
CODESTARTqueryEtryPt
CODEqueryEtryPt_STD_IMOD_QUERIES
CODEqueryEtryPt_STD_CONF2_QUERIES
CODEqueryEtryPt_STD_CONF2_IMOD_QUERIES
CODEqueryEtryPt_IsCompatibleWithFeature_IF_OMOD_QUERIES
ENDqueryEtryPt

BEGINmodInit()
CODESTARTmodInit
	*ipIFVersProvided = CURR_MOD_IF_VERSION;
CODEmodInit_QueryRegCFSLineHdlr
	CHKiRet(objUse(glbl, CORE_COMPONENT));
	CHKiRet(objUse(ruleset, CORE_COMPONENT));
	CHKiRet(objUse(statsobj, CORE_COMPONENT));
	glue_paramblk_init(&iml_table, inppdescr, &inppblk);
	lgr_log_set(glue_log, (void *)MODNAME);
ENDmodInit
	/* clang-format on */
