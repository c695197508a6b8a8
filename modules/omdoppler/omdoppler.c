/*
 * omdoppler.c: rsyslog output module that sends messages as Loggregator envelopes to routers (Dopplers) over
 * gRPC v2 BatchSender or v1 Pusher, with a drop-oldest buffer so that rsyslog never waits on slow routers.
 *
 * This file is the rsyslog glue: the parameter table, config checks, the TLS context, counters and the action
 * lifecycle. The network side is omd_net.c, the message mapping ../common/msgenv.c.
 *
 * What the action asks rsyslog for: entry 0 is the message object itself (OMSR_TPL_AS_MSG), through the
 * non-transactional doAction, because envelopes are rebuilt from the message's $!loggregator JSON and %msg% bytes,
 * which string templates cannot hand over whole. The sourceId / instanceId / sourceType parameters name ordinary
 * string templates; each one given adds an entry (1, 2, 3 in that order, only those set) that rsyslog renders for
 * every message, and msgenv uses the rendered text for messages that did not come from imloggregator.
 *
 * doAction converts and pushes into the action's drop-oldest ring and returns at once: it never waits for the
 * network. The network thread starts with the first worker (never during `rsyslogd -N1`) and stops in freeInstance,
 * within SHUTDOWN_MS, handing over what it still holds first.
 *
 * Threads: rsyslog may run several workers of one action at once; each has its own wrkrInstanceData_t. The shared
 * instanceData is read-only after newActInst except for the network start (under start_mut), the counters (atomic)
 * and the bad-input log limiter (under log_mut).
 */
#include "../common/rsconfig.h" /* rsyslog's config.h, first */

#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rsyslog.h"
#include "dirty.h"
#include "cfsysline.h"
#include "module-template.h"
#include "errmsg.h"
#include "debug.h"
#include "statsobj.h"
#include "rainerscript.h"
#include "msg.h"

#include "lgr.h"
#include "lgr_conf.h"
#include "lgr_ring.h"
#include "lgr_tls.h"
#include "omd.h"
#include "../common/glue.h"
#include "../common/msgenv.h"

MODULE_TYPE_OUTPUT
MODULE_TYPE_NOKEEP
MODULE_CNFNAME("omdoppler")

DEF_OMOD_STATIC_DATA
DEFobjCurrIf(statsobj)

#define MODNAME	      "omdoppler"
#define SHUTDOWN_MS   2000   /* freeInstance: what is still buffered gets this long to reach a router */
#define LOG_WINDOW_MS 10000u /* log lines: at most LOG_BURST per LOG_WINDOW_MS */
#define LOG_BURST     10
/* The largest envelope a batch of one can carry to a router (whose limit is 10 MiB per message). */
#define MAX_ENVELOPE (LGR_LIMITS_DEFAULT_MESSAGE - 16)

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
	long long recycle_ms;
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
	{.name = "recycleInterval",
		.type = LGR_CONF_DURATION,
		.def = "180000",
		.offset = F(recycle_ms),
		.min = 1000,
		.max = 86400000,
		.desc = "a stream is replaced after about this long (+-20 %), so load spreads again over the routers "
			"(ms)"},
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

/* The action's own name (rsyslog's `name` parameter, which the core also reads) names the counters. */
static struct cnfparamdescr namedescr[] = {{"name", eCmdHdlrGetWord, 0}};
static struct cnfparamblk nameblk = {CNFPARAMBLK_VERSION, 1, namedescr};

typedef struct _instanceData {
	struct omd_conf conf;
	char *action_name;     /* NULL: unnamed */
	SSL_CTX *ssl_ctx;      /* TLS: made in newActInst, so -N1 reports unusable certificates */
	struct lgr_ring *ring; /* doAction -> network thread; items are struct omd_item * */
	struct omd_net *net;   /* started by the first worker, under start_mut */
	bool net_tried;
	pthread_mutex_t start_mut;
	struct omd_counters ctr;      /* the network thread's (atomic) */
	uint64_t invalid;	      /* atomic: messages that gave no envelope */
	struct msgenv_tpl_slots tpls; /* where doAction finds the rendered templates */
	pthread_mutex_t log_mut;
	struct lgr_ratelimit log_rl;
	/* impstats: deltas added when impstats reads */
	pthread_mutex_t stats_mut;
	uint64_t seen_ingress, seen_egress, seen_dropped, seen_connects, seen_errors, seen_resent;
	statsobj_t *stats;
	STATSCOUNTER_DEF(ctr_ingress, mut_ctr_ingress)
	STATSCOUNTER_DEF(ctr_egress, mut_ctr_egress)
	STATSCOUNTER_DEF(ctr_dropped, mut_ctr_dropped)
	STATSCOUNTER_DEF(ctr_connects, mut_ctr_connects)
	STATSCOUNTER_DEF(ctr_errors, mut_ctr_errors)
	STATSCOUNTER_DEF(ctr_resent, mut_ctr_resent)
} instanceData;

typedef struct wrkrInstanceData {
	instanceData *pData;
	struct lgr_env_scratch *scratch; /* messages from imloggregator are read into it; NULL when out of memory */
} wrkrInstanceData_t;

/* "omdoppler(NAME)" for an action with a name, else "omdoppler(r1:8082,r2:8082)", cut to fit: the name impstats
 * shows and log lines begin with. */
static void inst_name(const instanceData *pData, char *buf, size_t len)
{
	size_t used, i;

	if (pData->action_name != NULL) {
		snprintf(buf, len, MODNAME "(%s)", pData->action_name);
		return;
	}
	used = (size_t)snprintf(buf, len, MODNAME "(");
	for (i = 0; i < pData->conf.routers.n && used < len; i++)
		used += (size_t)snprintf(buf + used, len - used, "%s%s", i ? "," : "", pData->conf.routers.v[i]);
	if (used < len)
		snprintf(buf + used, len - used, ")");
}

/*
 * impstats is about to read the counters: add what changed since the last read (deltas, never totals, so that
 * impstats' resetCounters works). ingress = everything doAction took; dropped.egress = the ring's drop-oldest
 * losses, what the network gave up, and messages that gave no envelope.
 */
static void stats_read(statsobj_t *stats, void *ud)
{
	instanceData *pData = ud;
	struct lgr_ring_stats st;
	uint64_t invalid, ingress, egress, dropped, connects, errors, resent;

	(void)stats;
	lgr_ring_stats(pData->ring, &st);
	invalid = __atomic_load_n(&pData->invalid, __ATOMIC_RELAXED);
	ingress = st.pushed + invalid;
	egress = __atomic_load_n(&pData->ctr.egress, __ATOMIC_RELAXED);
	dropped = st.dropped + invalid + __atomic_load_n(&pData->ctr.dropped, __ATOMIC_RELAXED);
	connects = __atomic_load_n(&pData->ctr.connects, __ATOMIC_RELAXED);
	errors = __atomic_load_n(&pData->ctr.errors, __ATOMIC_RELAXED);
	resent = __atomic_load_n(&pData->ctr.resent, __ATOMIC_RELAXED);
	pthread_mutex_lock(&pData->stats_mut);
	STATSCOUNTER_ADD(pData->ctr_ingress, pData->mut_ctr_ingress, ingress - pData->seen_ingress);
	STATSCOUNTER_ADD(pData->ctr_egress, pData->mut_ctr_egress, egress - pData->seen_egress);
	STATSCOUNTER_ADD(pData->ctr_dropped, pData->mut_ctr_dropped, dropped - pData->seen_dropped);
	STATSCOUNTER_ADD(pData->ctr_connects, pData->mut_ctr_connects, connects - pData->seen_connects);
	STATSCOUNTER_ADD(pData->ctr_errors, pData->mut_ctr_errors, errors - pData->seen_errors);
	STATSCOUNTER_ADD(pData->ctr_resent, pData->mut_ctr_resent, resent - pData->seen_resent);
	pData->seen_ingress = ingress;
	pData->seen_egress = egress;
	pData->seen_dropped = dropped;
	pData->seen_connects = connects;
	pData->seen_errors = errors;
	pData->seen_resent = resent;
	pthread_mutex_unlock(&pData->stats_mut);
}

static rsRetVal stats_init(instanceData *pData)
{
	const struct glue_counter ctrs[] = {
		{"ingress", &pData->ctr_ingress},
		{"egress", &pData->ctr_egress},
		{"dropped.egress", &pData->ctr_dropped},
		{"router.connects", &pData->ctr_connects},
		{"router.errors", &pData->ctr_errors},
		{"resent", &pData->ctr_resent},
	};
	char name[256];

	inst_name(pData, name, sizeof(name));
	return glue_stats_new(
		&statsobj, &pData->stats, name, MODNAME, ctrs, sizeof(ctrs) / sizeof(ctrs[0]), stats_read, pData);
}

/* The client TLS context; errors name the action's routers and the file at fault. */
static rsRetVal tls_init(instanceData *pData)
{
	static const char *const alpn[] = {"h2", NULL};
	struct lgr_tls_config tc = {0};
	char err[512], name[256];
	DEFiRet;

	if (!pData->conf.tls)
		FINALIZE;
	tc.ca_file = pData->conf.tls_cacert;
	tc.cert_file = pData->conf.tls_mycert;
	tc.key_file = pData->conf.tls_myprivkey;
	tc.server_name = pData->conf.tls_servername;
	tc.alpn = alpn;
	if (lgr_tls_client_ctx(&tc, &pData->ssl_ctx, err, sizeof(err)) != LGR_OK) {
		inst_name(pData, name, sizeof(name));
		LogError(0, RS_RET_CONF_PARAM_INVLD, "%s: TLS: %s", name, err);
		ABORT_FINALIZE(RS_RET_CONF_PARAM_INVLD);
	}
finalize_it:
	RETiRet;
}

/* Starts the network thread once, from the first worker; a failure is logged and not retried (the ring then
 * keeps the newest envelopes and counts the others as dropped). */
static void net_start(instanceData *pData)
{
	struct omd_net_conf nc = {0};
	char name[256];

	pthread_mutex_lock(&pData->start_mut);
	if (pData->net_tried)
		goto out;
	pData->net_tried = true;
	inst_name(pData, name, sizeof(name));
	nc.name = name;
	nc.routers = (const char *const *)pData->conf.routers.v;
	nc.nrouters = pData->conf.routers.n;
	nc.streams = (unsigned)pData->conf.streams;
	nc.batch_max = (unsigned)pData->conf.batch_max;
	nc.flush_ms = (unsigned)pData->conf.batch_flush_ms;
	nc.recycle_ms = (unsigned)pData->conf.recycle_ms;
	nc.v1 = pData->conf.protocol == OMD_V1;
	nc.ssl_ctx = pData->ssl_ctx;
	nc.server_name = pData->conf.tls_servername;
	nc.ring = pData->ring;
	nc.ctr = &pData->ctr;
	nc.log = glue_log;
	nc.log_ud = (void *)MODNAME;
	if (omd_net_new(&nc, &pData->net) != LGR_OK)
		LogError(0, RS_RET_ERR, "%s: cannot start the network thread; envelopes are dropped", name);
out:
	pthread_mutex_unlock(&pData->start_mut);
}

/* A message that gave no envelope: counted, and logged at most LOG_BURST times per LOG_WINDOW_MS. */
static void bad_input(instanceData *pData, int rc, bool from_iml, size_t size)
{
	uint64_t suppressed = 0;
	bool log;

	__atomic_add_fetch(&pData->invalid, 1, __ATOMIC_RELAXED);
	pthread_mutex_lock(&pData->log_mut);
	log = lgr_ratelimit_take(&pData->log_rl, lgr_now_ms(), &suppressed);
	pthread_mutex_unlock(&pData->log_mut);
	if (!log)
		return;
	if (size > 0)
		LogMsg(0, NO_ERRCODE, LOG_WARNING,
			MODNAME ": an envelope of %zu bytes is larger than a router takes; dropped "
				"(%" PRIu64 " similar lines suppressed before this one)",
			size, suppressed);
	else
		LogMsg(0, NO_ERRCODE, LOG_WARNING,
			MODNAME ": cannot rebuild an envelope from a message%s: %s; dropped "
				"(%" PRIu64 " similar lines suppressed before this one)",
			from_iml ? " ($!loggregator)" : "", lgr_strerror(rc), suppressed);
}

/* The core's log hook for this module: glue_log, at most LOG_BURST lines per LOG_WINDOW_S (debug lines apart). The
 * transport's lines about failed attempts and lost connections are debug lines (the network thread reports those
 * itself, named and rate-limited per action, and goes to glue_log directly); this bounds whatever else it says. */
static pthread_mutex_t hook_mut = PTHREAD_MUTEX_INITIALIZER;
static struct lgr_ratelimit hook_rl = LGR_RATELIMIT_INIT(LOG_WINDOW_MS, LOG_BURST);

static void omd_log(enum lgr_log_level level, const char *msg, void *ud)
{
	uint64_t suppressed = 0;
	bool pass = true;
	char line[640];

	if (level < LGR_LOG_DEBUG) {
		pthread_mutex_lock(&hook_mut);
		pass = lgr_ratelimit_take(&hook_rl, lgr_now_ms(), &suppressed);
		pthread_mutex_unlock(&hook_mut);
	}
	if (!pass)
		return;
	if (suppressed > 0) {
		snprintf(line, sizeof(line), "%s (%" PRIu64 " lines suppressed before this one)", msg, suppressed);
		msg = line;
	}
	glue_log(level, msg, ud);
}

/* msgenv_pack_log's place: the ring item (*ud, a struct omd_item *). One too large for a batch is left to the
 * general path, which reports it. */
static int place_log(void *ud, const struct lgr_fjson_log *m, uint8_t **dst)
{
	struct omd_item **item = ud;

	if (m->size > MAX_ENVELOPE)
		return LGR_EUNSUPPORTED;
	*item = omd_item_new(m->size);
	if (*item == NULL)
		return LGR_ENOMEM;
	*dst = (*item)->data;
	return LGR_OK;
}

/* rsyslog's entry points: its macros are not statements clang-format understands, so it keeps off them */
/* clang-format off */

BEGINcreateInstance
CODESTARTcreateInstance
	pthread_mutex_init(&pData->start_mut, NULL);
	pthread_mutex_init(&pData->log_mut, NULL);
	pData->log_rl = (struct lgr_ratelimit)LGR_RATELIMIT_INIT(LOG_WINDOW_MS, LOG_BURST);
	pthread_mutex_init(&pData->stats_mut, NULL);
ENDcreateInstance

BEGINcreateWrkrInstance
CODESTARTcreateWrkrInstance
	if (lgr_env_scratch_new(&pWrkrData->scratch) != LGR_OK)
		pWrkrData->scratch = NULL; /* then each envelope is built on its own */
	net_start(pWrkrData->pData);
ENDcreateWrkrInstance

BEGINfreeInstance
CODESTARTfreeInstance
	omd_net_free(pData->net, SHUTDOWN_MS);
	pData->net = NULL;
	if (pData->stats != NULL)
		statsobj.Destruct(&pData->stats);
	lgr_ring_free(pData->ring);
	SSL_CTX_free(pData->ssl_ctx);
	pthread_mutex_destroy(&pData->start_mut);
	pthread_mutex_destroy(&pData->log_mut);
	pthread_mutex_destroy(&pData->stats_mut);
	free(pData->action_name);
	lgr_conf_free(&omd_table, &pData->conf);
ENDfreeInstance

BEGINfreeWrkrInstance
CODESTARTfreeWrkrInstance
	lgr_env_scratch_free(pWrkrData->scratch);
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

/*
 * The core passes the message object (entry 0, OMSR_TPL_AS_MSG; the core keeps owning it) and the rendered
 * templates that were configured. Whatever happens, the action succeeds: a message that gives no envelope is a
 * counted drop, never a retry.
 */
BEGINdoAction_NoStrings
	void **params = pMsgData;
	smsg_t *const msg = params[0];
	instanceData *const pData = pWrkrData->pData;
	struct msgenv_tpl tpl;
	struct lgr_env *env = NULL;
	const struct lgr_env *view = NULL;
	struct omd_item *item = NULL;
	size_t len = 0;
	bool from_iml = false;
	int rc;
CODESTARTdoAction
	msgenv_tpl_get(&pData->tpls, params, &tpl);
	/* encoded straight into the ring item, which the network thread only copies into batches: a Log envelope from
	 * imloggregator straight from its tree, any other read into this worker's scratch (no allocation per
	 * envelope) */
	rc = msgenv_pack_log(msg, NULL, place_log, &item);
	from_iml = rc != LGR_EUNSUPPORTED;
	if (rc == LGR_EUNSUPPORTED) {
		if (pWrkrData->scratch != NULL) {
			rc = msgenv_read(msg, &tpl, NULL, pWrkrData->scratch, &view, &env, &from_iml);
		} else {
			rc = msgenv_build(msg, &tpl, NULL, &env, &from_iml);
			view = env;
		}
		if (rc == LGR_OK)
			len = lgr_env_packed_size(view);
		if (rc == LGR_OK && len <= MAX_ENVELOPE) {
			item = omd_item_new(len);
			if (item == NULL)
				rc = LGR_ENOMEM;
			else
				lgr_env_pack(view, item->data);
		}
		lgr_env_unref(env);
	}
	if (item == NULL) {
		bad_input(pData, rc, from_iml, rc == LGR_OK ? len : 0);
		FINALIZE;
	}
	lgr_ring_push(pData->ring, item); /* ownership transferred; a full ring drops its oldest */
finalize_it:
ENDdoAction

BEGINnewActInst
	struct cnfparamvals *pvals = NULL, *nvals = NULL;
	struct lgr_ring_conf rconf = {0};
	char err[GLUE_ERR_MAX];
CODESTARTnewActInst
	pvals = nvlstGetParams(lst, &actpblk, NULL);
	if (pvals == NULL)
		ABORT_FINALIZE(RS_RET_MISSING_CNFPARAMS);
	CHKiRet(createInstance(&pData));
	nvals = nvlstGetParams(lst, &nameblk, NULL);
	if (nvals != NULL && nvals[0].bUsed)
		CHKmalloc(pData->action_name = es_str2cstr(nvals[0].val.d.estr, NULL));
	if (glue_conf_load(&omd_table, &actpblk, pvals, &pData->conf, err, sizeof(err)) != LGR_OK) {
		LogError(0, RS_RET_CONF_PARAM_INVLD, "%s", err);
		ABORT_FINALIZE(RS_RET_CONF_PARAM_INVLD);
	}
	if (!pData->conf.tls)
		LogMsg(0, NO_ERRCODE, LOG_WARNING, MODNAME ": tls=\"off\": plaintext, for tests and loopback only");
	CHKiRet(tls_init(pData));
	rconf.capacity = (size_t)pData->conf.buffer_size;
	rconf.drop = omd_item_free;
	rconf.eventfd = true;
	if (lgr_ring_new(&rconf, &pData->ring) != LGR_OK)
		ABORT_FINALIZE(RS_RET_OUT_OF_MEMORY);
	msgenv_tpl_slots_init(&pData->tpls, pData->conf.source_id_tpl, pData->conf.instance_id_tpl,
		pData->conf.source_type_tpl);
	CODE_STD_STRING_REQUESTnewActInst(1 + pData->tpls.n)
	CHKiRet(msgenv_tpl_request(&pData->tpls, *ppOMSR));
	CHKiRet(stats_init(pData));
CODE_STD_FINALIZERnewActInst
	cnfparamvalsDestruct(pvals, &actpblk);
	if (nvals != NULL)
		cnfparamvalsDestruct(nvals, &nameblk);
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
	lgr_log_set(omd_log, (void *)MODNAME);
ENDmodInit
	/* clang-format on */
