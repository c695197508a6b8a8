/*
 * imloggregator.c: rsyslog input module for Loggregator envelopes: gRPC v2 Ingress and v1 Pusher listeners, v1
 * dropsonde UDP datagrams, and subscriptions to routers' Egress (see doc and config.md for the parameters).
 *
 * This file is the rsyslog glue: the parameter table, config load and check, counters, the input thread and the
 * submitters. The network side is iml_net.c (listeners) and iml_sub.c (subscriptions to routers), the message
 * mapping iml_msg.c.
 *
 * Threads: rsyslog runs config load, check and activation on its main thread and runInput on one input thread
 * for all instances; the instance list is immutable once activated. The input thread runs one event loop for every
 * instance's listener or subscription (checking what arrives, the push into one of the instance's drop-oldest
 * rings). Each instance has `submitters` submitter threads, one per ring, that pop envelopes from their ring, decode
 * them, apply the agent's rules, build the messages and hand them to rsyslog with multiSubmitMsg2: only submitters
 * ever wait for rsyslog's queue, and while one waits its ring drops its oldest envelopes (counted), so senders never
 * wait. A gRPC call's envelopes (and a router's, when subscribing) all go through one ring (calls take the rings in
 * turn), so each call keeps its order while several calls are turned into messages at once, on as many CPUs. impstats
 * reads the rings' exact counters through a read notifier.
 *
 * Shutdown: rsyslog sets the thread's stop flag and sends SIGTTIN, which the input thread keeps blocked and reads
 * from a signalfd in its loop. Every listener then stops accepting, open calls get a short grace to finish, every
 * subscription closes its streams and connections at once, and each submitter hands everything still in its ring to
 * rsyslog before it exits, within rsyslog's input shutdown timeout, so nothing a sender saw acknowledged is lost.
 */
#include "../common/rsconfig.h" /* rsyslog's config.h, first */

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <event2/event.h>

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
#include "prop.h"
#include "datetime.h"
#include "msg.h"
#include "queue.h"
#include "rsconf.h"

#include "lgr.h"
#include "lgr_agent.h"
#include "lgr_conf.h"
#include "lgr_fjson.h"
#include "lgr_ring.h"
#include "lgr_select.h"
#include "lgr_tls.h"
#include "iml.h"
#include "iml_msg.h"
#include "iml_sub.h"
#include "../common/glue.h"

MODULE_TYPE_INPUT
MODULE_TYPE_NOKEEP
MODULE_CNFNAME("imloggregator")

DEF_IMOD_STATIC_DATA
DEFobjCurrIf(glbl) DEFobjCurrIf(ruleset) DEFobjCurrIf(statsobj) DEFobjCurrIf(prop) DEFobjCurrIf(datetime)

#define MODNAME		    "imloggregator"
#define IML_PORT_GRPC	    3458 /* the real agent's ports */
#define IML_PORT_UDP	    3457
#define SUBMIT_BATCH	    1024 /* envelopes per multiSubmitMsg2 */
#define DIRECT_BATCH	    16	 /* the same into a ruleset with a Direct queue (see submit_batch_max) */
#define GRACE_MS	    300	 /* open calls may finish this long at shutdown (rsyslog allows inputs 1 s in all) */
#define DRAIN_MS	    400	 /* then the submitters hand over what the rings hold for at most this long */
#define AUTO_SUBMITTERS_MAX 4	 /* submitters="0": one per CPU, at most this many */

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
	long long submitters;
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
		.desc = "envelopes in each submitter's drop-oldest buffer between the network and rsyslog"},
	{.name = "submitters",
		.type = LGR_CONF_INT,
		.def = "0",
		.offset = F(submitters),
		.min = 0,
		.max = 64,
		.desc = "threads turning envelopes into messages, each with its own buffer; 0: one per CPU, up to 4"},
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

/* One submitter thread and the ring it reads. */
struct submitter {
	instanceConf_t *inst;
	struct lgr_ring *ring; /* network -> this submitter; from activation to freeCnf */
	pthread_t thread;
	bool running;
};

struct instanceConf_s {
	struct iml_conf conf;
	ruleset_t *bind_ruleset; /* NULL: the default ruleset */
	SSL_CTX *ssl_ctx;	 /* gRPC or subscribe with TLS: made at check time, so -N1 reports bad certificates */
	struct submitter *subs;	 /* from activation to freeCnf */
	struct lgr_ring **rings; /* subs[i].ring, for the network side */
	size_t nsubs;
	struct lgr_agent *agent; /* role agent: shared by the submitters, under agent_mut */
	pthread_mutex_t agent_mut;
	struct lgr_fjson_wire_rules wire_rules; /* role agent: its rules for Log envelopes built from their bytes */
	const char **permitted; /* tls.permittedpeers, NULL-terminated for lgr_tls_peer_permitted; NULL: any client */
	char *v1_deployment, *v1_job, *v1_index, *v1_ip;
	struct lgr_v1_defaults v1_defaults;
	struct iml_net *net;		 /* input thread only */
	struct iml_sub *sub;		 /* protocol subscribe: input thread only */
	struct iml_sub_counters sub_ctr; /* written by the input thread, read by impstats */
	bool stop;			 /* atomic: the submitters drain their rings and exit */
	struct timespec drain_end;	 /* written before stop is set: what the ring holds after it is discarded */
	uint64_t invalid;		 /* atomic, written by the input thread and the submitter */
	/* impstats: counters updated from the ring's exact figures when impstats reads them */
	statsobj_t *stats;
	pthread_mutex_t stats_mut;
	uint64_t seen_pushed, seen_dropped, seen_invalid, seen_connects, seen_errors;
	STATSCOUNTER_DEF(ctr_ingress, mut_ctr_ingress)
	STATSCOUNTER_DEF(ctr_dropped, mut_ctr_dropped)
	STATSCOUNTER_DEF(ctr_invalid, mut_ctr_invalid)
	STATSCOUNTER_DEF(ctr_connects, mut_ctr_connects) /* subscribe only */
	STATSCOUNTER_DEF(ctr_errors, mut_ctr_errors)
	struct instanceConf_s *next;
};

struct modConfData_s {
	rsconf_t *pConf;
	instanceConf_t *root, *tail;
};

static modConfData_t *loadModConf; /* the config being loaded */
static modConfData_t *runModConf;  /* the config being run */
static prop_t *input_name;	   /* "imloggregator", %inputname% of every message */

static void submitters_join(instanceConf_t *inst, const struct timespec *deadline);

static void inst_free(instanceConf_t *inst)
{
	size_t i;

	if (inst == NULL)
		return;
	submitters_join(inst, NULL);
	if (inst->stats != NULL) {
		statsobj.Destruct(&inst->stats);
		pthread_mutex_destroy(&inst->stats_mut);
	}
	for (i = 0; i < inst->nsubs; i++)
		lgr_ring_free(inst->subs[i].ring);
	free(inst->subs);
	free(inst->rings);
	if (inst->agent != NULL) {
		lgr_agent_free(inst->agent);
		pthread_mutex_destroy(&inst->agent_mut);
	}
	SSL_CTX_free(inst->ssl_ctx);
	free(inst->permitted);
	free(inst->v1_deployment);
	free(inst->v1_job);
	free(inst->v1_index);
	free(inst->v1_ip);
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

/*
 * impstats is about to read the counters: add what the ring and the network counted since the last read. Adding
 * deltas (never storing totals) keeps impstats' resetCounters working.
 */
static void stats_read(statsobj_t *stats, void *ud)
{
	instanceConf_t *inst = ud;
	struct lgr_ring_stats st;
	uint64_t invalid, connects, errors, pushed = 0, dropped = 0;
	size_t i;

	(void)stats;
	for (i = 0; i < inst->nsubs; i++) {
		lgr_ring_stats(inst->subs[i].ring, &st);
		pushed += st.pushed;
		dropped += st.dropped;
	}
	invalid = __atomic_load_n(&inst->invalid, __ATOMIC_RELAXED);
	connects = __atomic_load_n(&inst->sub_ctr.connects, __ATOMIC_RELAXED);
	errors = __atomic_load_n(&inst->sub_ctr.errors, __ATOMIC_RELAXED);
	pthread_mutex_lock(&inst->stats_mut);
	STATSCOUNTER_ADD(inst->ctr_ingress, inst->mut_ctr_ingress, pushed - inst->seen_pushed);
	STATSCOUNTER_ADD(inst->ctr_dropped, inst->mut_ctr_dropped, dropped - inst->seen_dropped);
	STATSCOUNTER_ADD(inst->ctr_invalid, inst->mut_ctr_invalid, invalid - inst->seen_invalid);
	inst->seen_pushed = pushed;
	inst->seen_dropped = dropped;
	inst->seen_invalid = invalid;
	if (inst->conf.protocol == IML_SUBSCRIBE) {
		STATSCOUNTER_ADD(inst->ctr_connects, inst->mut_ctr_connects, connects - inst->seen_connects);
		STATSCOUNTER_ADD(inst->ctr_errors, inst->mut_ctr_errors, errors - inst->seen_errors);
		inst->seen_connects = connects;
		inst->seen_errors = errors;
	}
	pthread_mutex_unlock(&inst->stats_mut);
}

static rsRetVal inst_stats_init(instanceConf_t *inst)
{
	const struct glue_counter ctrs[] = {
		{"ingress", &inst->ctr_ingress},
		{"dropped.ingress", &inst->ctr_dropped},
		{"invalid", &inst->ctr_invalid},
		{"router.connects", &inst->ctr_connects}, /* the last two: subscribe only */
		{"router.errors", &inst->ctr_errors},
	};
	size_t n = sizeof(ctrs) / sizeof(ctrs[0]);
	char name[256];

	inst_name(inst, name, sizeof(name));
	pthread_mutex_init(&inst->stats_mut, NULL);
	if (inst->conf.protocol != IML_SUBSCRIBE)
		n -= 2;
	return glue_stats_new(&statsobj, &inst->stats, name, MODNAME, ctrs, n, stats_read, inst);
}

/*
 * The TLS context of a gRPC listener, or of a subscription's clients (the routers' DNS SAN checked against
 * tls.servername); errors name the instance and the file at fault.
 */
static rsRetVal inst_tls_init(instanceConf_t *inst)
{
	static const char *const alpn[] = {"h2", NULL};
	struct lgr_tls_config tc = {0};
	char err[512], name[256];
	int rc;
	DEFiRet;

	if (inst->conf.protocol == IML_UDP || !inst->conf.tls || inst->ssl_ctx != NULL)
		FINALIZE;
	tc.ca_file = inst->conf.tls_cacert;
	tc.cert_file = inst->conf.tls_mycert;
	tc.key_file = inst->conf.tls_myprivkey;
	tc.alpn = alpn;
	if (inst->conf.protocol == IML_SUBSCRIBE) {
		tc.server_name = inst->conf.tls_servername;
		rc = lgr_tls_client_ctx(&tc, &inst->ssl_ctx, err, sizeof(err));
	} else {
		tc.require_client_cert = true;
		rc = lgr_tls_server_ctx(&tc, &inst->ssl_ctx, err, sizeof(err));
	}
	if (rc != LGR_OK) {
		inst_name(inst, name, sizeof(name));
		LogError(0, RS_RET_CONF_PARAM_INVLD, "%s: TLS: %s", name, err);
		ABORT_FINALIZE(RS_RET_CONF_PARAM_INVLD);
	}
finalize_it:
	RETiRet;
}

/* The agent's v1 defaults (deployment, job, index, ip) come from defaultTags of the same names. */
static rsRetVal inst_v1_defaults(instanceConf_t *inst)
{
	static const char *const keys[] = {"deployment", "job", "index", "ip"};
	char **slots[] = {&inst->v1_deployment, &inst->v1_job, &inst->v1_index, &inst->v1_ip};
	const struct lgr_conf_strv *tags = &inst->conf.default_tags;
	size_t i, k, klen;
	DEFiRet;

	for (i = 0; i < tags->n; i++) {
		for (k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
			klen = strlen(keys[k]);
			if (strncmp(tags->v[i], keys[k], klen) == 0 && tags->v[i][klen] == ':') {
				free(*slots[k]);
				CHKmalloc(*slots[k] = strdup(tags->v[i] + klen + 1));
			}
		}
	}
	inst->v1_defaults.deployment = inst->v1_deployment;
	inst->v1_defaults.job = inst->v1_job;
	inst->v1_defaults.index = inst->v1_index;
	inst->v1_defaults.ip = inst->v1_ip;
finalize_it:
	RETiRet;
}

static rsRetVal inst_activate(instanceConf_t *inst)
{
	struct lgr_ring_conf rc = {0};
	struct lgr_agent_conf ac = {0};
	size_t i, n;
	long cpus;
	DEFiRet;

	if (inst->conf.tls_permitted_peers.n > 0) {
		CHKmalloc(inst->permitted = calloc(inst->conf.tls_permitted_peers.n + 1, sizeof(*inst->permitted)));
		memcpy(inst->permitted, inst->conf.tls_permitted_peers.v,
			inst->conf.tls_permitted_peers.n * sizeof(*inst->permitted));
	}
	n = (size_t)inst->conf.submitters;
	if (n == 0) {
		cpus = sysconf(_SC_NPROCESSORS_ONLN);
		n = cpus < 1 ? 1 : cpus > AUTO_SUBMITTERS_MAX ? AUTO_SUBMITTERS_MAX : (size_t)cpus;
	}
	CHKmalloc(inst->subs = calloc(n, sizeof(*inst->subs)));
	CHKmalloc(inst->rings = calloc(n, sizeof(*inst->rings)));
	rc.capacity = (size_t)inst->conf.buffer_size;
	rc.drop = iml_item_free;
	for (i = 0; i < n; i++) {
		inst->subs[i].inst = inst;
		if (lgr_ring_new(&rc, &inst->subs[i].ring) != LGR_OK)
			ABORT_FINALIZE(RS_RET_OUT_OF_MEMORY);
		inst->rings[i] = inst->subs[i].ring;
		inst->nsubs++;
	}
	if (inst->conf.role == IML_AGENT) {
		ac.default_tags = (const char *const *)inst->conf.default_tags.v;
		ac.ndefault_tags = inst->conf.default_tags.n;
		if (lgr_agent_new(&ac, &inst->agent) != LGR_OK)
			ABORT_FINALIZE(RS_RET_OUT_OF_MEMORY);
		pthread_mutex_init(&inst->agent_mut, NULL);
		/* the submitters read the default tags for logs built from their bytes (rules 1 and 3: no lock) */
		inst->wire_rules.ndefaults = lgr_agent_default_tags(
			inst->agent, &inst->wire_rules.default_keys, &inst->wire_rules.default_values);
		/* once, not per envelope; keys the builder cannot take send every envelope down the decoding path */
		(void)lgr_fjson_wire_rules_check(&inst->wire_rules);
		CHKiRet(inst_v1_defaults(inst));
	}
	CHKiRet(inst_stats_init(inst));
finalize_it:
	RETiRet;
}

/* ---- the submitters ---------------------------------------------------------------------------------------- */

static bool past(const struct timespec *t)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return now.tv_sec > t->tv_sec || (now.tv_sec == t->tv_sec && now.tv_nsec >= t->tv_nsec);
}

/*
 * Decodes the item's envelope if it is still encoded, applies the agent's rules, builds its message. A Log envelope as
 * senders make it becomes a message straight from its bytes in both roles (the agent's rules for logs are applied on
 * the way, without the lock: only counters need the agent's table). The router role only reads any other envelope, so
 * it is decoded into the submitter's scratch (no allocation of its own); the agent role edits it, which needs an
 * envelope of its own. NULL when memory ran out (counted in invalid, logged).
 */
static smsg_t *item_message(instanceConf_t *inst, struct iml_msg_ctx *ctx, struct lgr_env_scratch *scratch,
	struct iml_item *it, const struct syslogTime *now, time_t now_tt)
{
	const struct lgr_env *env = it->env;
	const char *why = "building a message";
	smsg_t *msg = NULL;
	rsRetVal rs;
	int rc;

	if (env == NULL) {
		rs = iml_msg_build_wire(ctx, it->data, it->len, iml_item_ip(it), now, now_tt, &msg);
		if (rs == RS_RET_OK)
			return msg;
		if (rs != RS_RET_NOT_FOUND)
			goto fail;
	}
	if (env == NULL && inst->agent == NULL && scratch != NULL) {
		if (lgr_env_scratch_unpack(scratch, it->data, it->len, &env) != LGR_OK)
			goto decode_failed;
	} else if (env == NULL) {
		if (lgr_env_unpack(it->data, it->len, &it->env) != LGR_OK)
			goto decode_failed;
		env = it->env;
	}
	if (inst->agent != NULL) {
		pthread_mutex_lock(&inst->agent_mut);
		rc = lgr_agent_apply(inst->agent, it->env);
		pthread_mutex_unlock(&inst->agent_mut);
		if (rc != LGR_OK) {
			why = "applying the agent's rules";
			goto fail;
		}
	}
	if (iml_msg_build(ctx, env, iml_item_ip(it), now, now_tt, &msg) != RS_RET_OK)
		goto fail;
	return msg;
decode_failed:
	why = "decoding an envelope";
fail:
	__atomic_add_fetch(&inst->invalid, 1, __ATOMIC_RELAXED);
	LogError(0, RS_RET_OUT_OF_MEMORY, MODNAME ": out of memory %s; envelope lost", why);
	return NULL;
}

/* The queue rsyslog puts this input's messages in: its ruleset's own, or the main queue. NULL at shutdown. */
static qqueue_t *target_queue(instanceConf_t *inst)
{
	return inst->bind_ruleset != NULL ? ruleset.GetRulesetQueue(inst->bind_ruleset) : runConf->pMsgQueue;
}

/*
 * How many messages one multiSubmitMsg2 may carry. rsyslog starts a queue's worker at the end of a multi-submit, and
 * a FULL_DELAY message waits inside it while the queue is above its full-delay mark: a batch larger than that mark
 * into a queue whose worker has gone idle would wait for a worker that never starts. A queue whose worker is idle is
 * empty, so a batch up to the mark always completes (and starts the worker); larger queues get SUBMIT_BATCH.
 *
 * A Direct queue runs the ruleset and frees each message inside multiSubmitMsg2, on this thread: small batches let
 * the next batch reuse the memory the last one freed (glibc's per-thread caches), where a large one grows the heap
 * by megabytes and hands it back to the kernel every time (measured: about 15 % less CPU per envelope at 16 than at
 * 1024).
 */
static int submit_batch_max(instanceConf_t *inst)
{
	qqueue_t *q = target_queue(inst);
	int mark;

	if (q == NULL)
		return SUBMIT_BATCH;
	if (q->qType == QUEUETYPE_DIRECT)
		return DIRECT_BATCH;
	mark = q->iFullDlyMrk > 0 ? q->iFullDlyMrk : q->iMaxQueueSize;
	if (mark <= 0)
		return SUBMIT_BATCH;
	/* the submitters may all submit at once (see wait_for_room): together their batches fit below the mark */
	mark /= (int)inst->nsubs;
	return mark < 1 ? 1 : mark > SUBMIT_BATCH ? SUBMIT_BATCH : mark;
}

/* Past the stop's drain time: nothing more may be handed to rsyslog. */
static bool drain_over(instanceConf_t *inst)
{
	return __atomic_load_n(&inst->stop, __ATOMIC_ACQUIRE) && past(&inst->drain_end);
}

/*
 * Waits until q has room for n more messages from each submitter below its full-delay mark. rsyslog's own flow control
 * would block a FULL_DELAY message inside multiSubmitMsg2 instead, and when rsyslog terminates its inputs while one
 * waits there, it gives up on the rest of the batch without freeing it. Waiting here, on the condition rsyslog signals
 * as its queue drains and a tenth of a second at a time, keeps every wait outside rsyslog (unless another input fills
 * the same queue at the same moment) and lets the submitter notice a stop. Returns false when the drain time is over.
 */
static bool wait_for_room(instanceConf_t *inst, qqueue_t *q, int n)
{
	struct timespec t;
	bool room = true;
	int mark, need;

	if (q == NULL || q->qType == QUEUETYPE_DIRECT || q->mut == NULL)
		return true;
	mark = q->iFullDlyMrk > 0 ? q->iFullDlyMrk : q->iMaxQueueSize;
	if (mark <= 0)
		return true;
	pthread_mutex_lock(q->mut);
	/* room for a batch of every submitter: others may be between their own check and their submit (a queue smaller
	 * than that only needs to be empty) */
	need = n * (int)inst->nsubs < mark ? n * (int)inst->nsubs : mark;
	while (!(room = q->iQueueSize + need <= mark) && !drain_over(inst)) {
		clock_gettime(CLOCK_REALTIME, &t); /* rsyslog's queue conditions use the default clock */
		t.tv_nsec += 100000000L;
		t.tv_sec += t.tv_nsec / 1000000000L;
		t.tv_nsec %= 1000000000L;
		pthread_cond_timedwait(&q->belowLightDlyWtrMrk, q->mut, &t);
	}
	pthread_mutex_unlock(q->mut);
	return room;
}

/* Ends a submitter's work at stop: what is still buffered in its ring is discarded, with a log line. */
static void discard_rest(struct submitter *sub, void **items, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		iml_item_free(items[i], NULL);
	n += lgr_ring_drain(sub->ring, iml_item_free, NULL);
	if (n > 0)
		LogMsg(0, RS_RET_TIMED_OUT, LOG_WARNING,
			MODNAME ": %zu envelopes still buffered at shutdown were discarded (rsyslog's queue was full)",
			n);
}

/*
 * Pops envelopes, turns them into messages, hands them to rsyslog. At stop it keeps handing over what the ring holds
 * until drain_end, then discards the rest with a log line: rsyslog cancels an input thread that takes more than its
 * shutdown timeout, and a queue that is full at shutdown could otherwise hold the submitter for a second per wait.
 */
static void *submitter_main(void *arg)
{
	struct submitter *sub = arg;
	instanceConf_t *inst = sub->inst;
	void *items[SUBMIT_BATCH];
	smsg_t *msgs[SUBMIT_BATCH];
	multi_submit_t ms = {.maxElem = SUBMIT_BATCH, .nElem = 0, .ppMsgs = msgs};
	struct iml_msg_ctx ctx = {0};
	struct lgr_env_scratch *scratch = NULL;
	struct syslogTime now;
	time_t now_tt;
	qqueue_t *queue = target_queue(inst);
	int batch_max = submit_batch_max(inst);
	bool stopping;
	size_t n, i;
	smsg_t *msg;

	ctx.ruleset = inst->bind_ruleset;
	ctx.rules = inst->agent != NULL ? &inst->wire_rules : NULL;
	ctx.input_name = input_name;
	ctx.hostname = glblGetLocalHostName();
	ctx.hostname_len = ctx.hostname != NULL ? (int)strlen((const char *)ctx.hostname) : 0;
	if (lgr_env_scratch_new(&scratch) != LGR_OK)
		scratch = NULL; /* then every envelope is decoded on its own */
	if (lgr_fjson_strings_new(&ctx.strings) != LGR_OK)
		ctx.strings = NULL; /* then every string is a node of its own */
	for (;;) {
		/* Once stopping, never wait: the one wake-up that announced the stop may already have been consumed. */
		stopping = __atomic_load_n(&inst->stop, __ATOMIC_ACQUIRE);
		n = lgr_ring_pop_wait(sub->ring, items, (size_t)batch_max, stopping ? 0 : -1);
		stopping = __atomic_load_n(&inst->stop, __ATOMIC_ACQUIRE);
		if (n == 0) {
			if (stopping) /* the listeners are gone: nothing more can arrive */
				break;
			continue;
		}
		if (!wait_for_room(inst, queue, (int)n)) {
			discard_rest(sub, items, n);
			break;
		}
		datetime.getCurrTime(&now, &now_tt, TIME_IN_LOCALTIME);
		for (i = 0; i < n; i++) {
			msg = item_message(inst, &ctx, scratch, items[i], &now, now_tt);
			if (msg != NULL)
				ms.ppMsgs[ms.nElem++] = msg;
			iml_item_free(items[i], NULL);
		}
		multiSubmitMsg2(&ms); /* takes the messages: there is room, so none waits */
	}
	lgr_env_scratch_free(scratch);
	lgr_fjson_strings_free(ctx.strings);
	if (ctx.from != NULL)
		prop.Destruct(&ctx.from);
	if (ctx.from_ip != NULL)
		prop.Destruct(&ctx.from_ip);
	return NULL;
}

/*
 * Starts the instance's submitters. One that cannot start leaves its ring unread, so the rings are handed to the
 * network side only when all started (LGR_OK); otherwise the others are stopped again.
 */
static int submitters_start(instanceConf_t *inst)
{
	size_t i;
	int rc = 0;

	__atomic_store_n(&inst->stop, false, __ATOMIC_RELEASE);
	for (i = 0; i < inst->nsubs && rc == 0; i++) {
		rc = lgr_thread_create(&inst->subs[i].thread, submitter_main, &inst->subs[i]);
		inst->subs[i].running = rc == 0;
	}
	if (rc == 0)
		return LGR_OK;
	LogError(rc, RS_RET_ERR, MODNAME ": cannot start a submitter thread");
	submitters_join(inst, NULL);
	return LGR_EIO;
}

static bool submitters_running(const instanceConf_t *inst)
{
	size_t i;

	for (i = 0; i < inst->nsubs; i++) {
		if (inst->subs[i].running)
			return true;
	}
	return false;
}

/* Tells the submitters to finish within DRAIN_MS. */
static void submitters_signal(instanceConf_t *inst)
{
	size_t i;

	if (!submitters_running(inst) || __atomic_load_n(&inst->stop, __ATOMIC_ACQUIRE))
		return;
	clock_gettime(CLOCK_MONOTONIC, &inst->drain_end);
	inst->drain_end.tv_nsec += (long)DRAIN_MS * 1000000L;
	inst->drain_end.tv_sec += inst->drain_end.tv_nsec / 1000000000L;
	inst->drain_end.tv_nsec %= 1000000000L;
	__atomic_store_n(&inst->stop, true, __ATOMIC_RELEASE);
	for (i = 0; i < inst->nsubs; i++)
		lgr_ring_wake(inst->subs[i].ring);
}

/* Waits for the submitters until the real-time deadline (NULL: for as long as it takes). */
static void submitters_join(instanceConf_t *inst, const struct timespec *deadline)
{
	struct submitter *sub;
	size_t i;

	submitters_signal(inst);
	for (i = 0; i < inst->nsubs; i++) {
		sub = &inst->subs[i];
		if (sub->running && (deadline == NULL ? pthread_join(sub->thread, NULL) == 0
						      : pthread_timedjoin_np(sub->thread, NULL, deadline) == 0))
			sub->running = false;
	}
}

/* ---- the input thread -------------------------------------------------------------------------------------- */

struct run {
	struct event_base *base;
	thrdInfo_t *thrd;
	int sigfd;
	struct event *sig_ev;
	unsigned open; /* listeners not yet shut down */
	bool stopping;
};

static void listener_done(void *ud)
{
	struct run *run = ud;

	if (--run->open == 0)
		event_base_loopexit(run->base, NULL);
}

static void begin_stop(struct run *run)
{
	instanceConf_t *inst;

	if (run->stopping)
		return;
	run->stopping = true;
	event_del(run->sig_ev);
	run->open = 1; /* held until every listener has been told, so none can end the loop early */
	for (inst = runModConf->root; inst != NULL; inst = inst->next) {
		iml_sub_stop(inst->sub); /* nothing to wait for: what the routers sent is in the rings */
		if (inst->net == NULL)
			continue;
		run->open++;
		iml_net_shutdown(inst->net, GRACE_MS, listener_done, run);
	}
	listener_done(run);
}

static bool stop_requested(struct run *run)
{
	return __atomic_load_n(&run->thrd->bShallStop, __ATOMIC_ACQUIRE) || glbl.GetGlobalInputTermState();
}

static void on_signal(evutil_socket_t fd, short what, void *ud)
{
	struct run *run = ud;
	struct signalfd_siginfo si;

	(void)what;
	while (read(fd, &si, sizeof(si)) == (ssize_t)sizeof(si))
		;
	if (stop_requested(run))
		begin_stop(run);
}

/* The types of `selectors` as lgr_select_ask's bits (1u << enum lgr_env_type); 0 (every type) when unset. */
static unsigned sub_types(const instanceConf_t *inst)
{
	const struct lgr_conf_strv *sel = &inst->conf.selectors;
	unsigned types = 0;
	size_t i;
	int t;

	for (i = 0; i < sel->n; i++) {
		for (t = LGR_ENV_LOG; t <= LGR_ENV_EVENT; t++) {
			if (strcmp(sel->v[i], lgr_env_type_name((enum lgr_env_type)t)) == 0)
				types |= 1u << t;
		}
	}
	return types;
}

/* A subscribe instance: its submitters, then one BatchedReceiver call per router. Failures are logged. */
static void sub_start(struct run *run, instanceConf_t *inst, const char *name)
{
	struct lgr_select_ask ask = {.shard_id = inst->conf.shard_id,
		.types = sub_types(inst),
		.source_ids = (const char *const *)inst->conf.source_ids.v,
		.nsource_ids = inst->conf.source_ids.n};
	struct iml_sub_conf sc = {0};
	uint8_t *req = NULL;
	size_t req_len = 0;
	int rc;

	rc = lgr_select_req_pack(&ask, &req, &req_len);
	if (rc != LGR_OK)
		goto out;
	if (submitters_start(inst) != LGR_OK) {
		rc = LGR_EIO;
		goto out;
	}
	sc.name = name;
	sc.routers = (const char *const *)inst->conf.routers.v;
	sc.nrouters = inst->conf.routers.n;
	sc.ssl_ctx = inst->ssl_ctx;
	sc.server_name = inst->conf.tls_servername;
	sc.request = req;
	sc.request_len = req_len;
	sc.max_message = inst->conf.max_message;
	sc.rings = inst->rings;
	sc.nrings = inst->nsubs;
	sc.ctr = &inst->sub_ctr;
	sc.invalid = &inst->invalid;
	rc = iml_sub_new(run->base, &sc, &inst->sub);
	if (rc != LGR_OK)
		submitters_join(inst, NULL);
out:
	if (rc != LGR_OK)
		LogError(0, RS_RET_NO_LSTN_DEFINED, "%s: cannot subscribe (%s); input not started", name,
			lgr_strerror(rc));
	else
		DBGPRINTF(MODNAME ": %s subscribing to %zu router(s)\n", name, inst->conf.routers.n);
	free(req);
}

static void listeners_start(struct run *run)
{
	struct iml_net_conf nc;
	instanceConf_t *inst;
	char name[256];

	for (inst = runModConf->root; inst != NULL; inst = inst->next) {
		inst_name(inst, name, sizeof(name));
		if (inst->conf.protocol == IML_SUBSCRIBE) {
			sub_start(run, inst, name);
			continue;
		}
		memset(&nc, 0, sizeof(nc));
		nc.name = name;
		nc.kind = inst->conf.protocol == IML_UDP ? IML_NET_UDP : IML_NET_GRPC;
		nc.address = inst->conf.address;
		nc.port = inst->conf.port;
		nc.ssl_ctx = inst->ssl_ctx;
		nc.permitted_peers = inst->permitted;
		nc.max_message = inst->conf.max_message;
		nc.v1_defaults = inst->conf.role == IML_AGENT ? &inst->v1_defaults : NULL;
		nc.rings = inst->rings;
		nc.nrings = inst->nsubs;
		nc.invalid = &inst->invalid;
		if (submitters_start(inst) != LGR_OK) {
			LogError(0, RS_RET_NO_LSTN_DEFINED, "%s: input not started", name);
			continue;
		}
		if (iml_net_new(run->base, &nc, &inst->net) != LGR_OK) {
			LogError(0, RS_RET_NO_LSTN_DEFINED, "%s: cannot listen; input not started", name);
			submitters_join(inst, NULL);
			continue;
		}
		glue_write_port_file(MODNAME, inst->conf.port_file, iml_net_port(inst->net));
		DBGPRINTF(MODNAME ": %s listening on port %u\n", name, (unsigned)iml_net_port(inst->net));
	}
}

/*
 * rsyslog's enqueue of a FULL_DELAY message into a full queue waits for room a second at a time, and looks at the
 * input termination flag (set before inputs are told to stop) only between waits. Waking the waiters makes a
 * submitter blocked there see the flag now, so that it finishes within the drain time instead of up to a second
 * later. The queue's mutex is held so that a waiter between its check and its wait cannot miss the wake-up.
 */
static void wake_enqueue_waiters(instanceConf_t *inst)
{
	qqueue_t *q = target_queue(inst);

	if (q == NULL || q->mut == NULL)
		return;
	pthread_mutex_lock(q->mut);
	pthread_cond_broadcast(&q->belowLightDlyWtrMrk);
	pthread_cond_broadcast(&q->notFull);
	pthread_mutex_unlock(q->mut);
}

/*
 * Closes the listeners and lets the submitters finish, waiting for them at most until shortly before rsyslog's
 * input timeout; one still busy then (blocked in a full queue) is joined when its instance is freed.
 */
static void listeners_free(void)
{
	instanceConf_t *inst;
	struct timespec deadline;

	for (inst = runModConf->root; inst != NULL; inst = inst->next) {
		iml_net_free(inst->net);
		inst->net = NULL;
		iml_sub_free(inst->sub);
		inst->sub = NULL;
		submitters_signal(inst);
		wake_enqueue_waiters(inst);
	}
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_nsec += (long)(DRAIN_MS + 100) * 1000000L;
	deadline.tv_sec += deadline.tv_nsec / 1000000000L;
	deadline.tv_nsec %= 1000000000L;
	for (inst = runModConf->root; inst != NULL; inst = inst->next)
		submitters_join(inst, &deadline);
}

/* Runs when run_input returns, and when rsyslog cancels the thread after its input shutdown timeout. */
static void run_cleanup(void *ud)
{
	struct run *run = ud;
	sigset_t ttin;

	listeners_free();
	if (run->sig_ev != NULL)
		event_free(run->sig_ev);
	if (run->base != NULL)
		event_base_free(run->base);
	if (run->sigfd >= 0)
		close(run->sigfd);
	sigemptyset(&ttin);
	sigaddset(&ttin, SIGTTIN);
	pthread_sigmask(SIG_UNBLOCK, &ttin, NULL);
}

static rsRetVal run_loop(struct run *run)
{
	sigset_t ttin;
	DEFiRet;

	/* SIGTTIN stays pending for this thread from now on, and is read from the signalfd in the loop. */
	sigemptyset(&ttin);
	sigaddset(&ttin, SIGTTIN);
	pthread_sigmask(SIG_BLOCK, &ttin, NULL);
	run->sigfd = signalfd(-1, &ttin, SFD_NONBLOCK | SFD_CLOEXEC);
	run->base = event_base_new();
	if (run->sigfd < 0 || run->base == NULL) {
		LogError(errno, RS_RET_ERR, MODNAME ": cannot set up the event loop");
		ABORT_FINALIZE(RS_RET_ERR);
	}
	run->sig_ev = event_new(run->base, run->sigfd, EV_READ | EV_PERSIST, on_signal, run);
	if (run->sig_ev == NULL || event_add(run->sig_ev, NULL) != 0)
		ABORT_FINALIZE(RS_RET_OUT_OF_MEMORY);
	listeners_start(run);
	if (stop_requested(run)) /* asked before the signal could reach the signalfd */
		begin_stop(run);
	event_base_dispatch(run->base);
finalize_it:
	RETiRet;
}

static rsRetVal run_input(thrdInfo_t *thrd)
{
	struct run run = {.thrd = thrd, .sigfd = -1};
	rsRetVal rc;

	pthread_cleanup_push(run_cleanup, &run);
	rc = run_loop(&run);
	pthread_cleanup_pop(1);
	return rc;
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
	for (inst = pModConf->root; inst != NULL; inst = inst->next) {
		r = inst_tls_init(inst);
		if (r != RS_RET_OK)
			iRet = r;
	}
	if (pModConf->root == NULL)
		LogMsg(0, NO_ERRCODE, LOG_WARNING, MODNAME ": module loaded, but no input() uses it");
ENDcheckCnf

BEGINactivateCnf
	instanceConf_t *inst;
CODESTARTactivateCnf
	runModConf = pModConf;
	for (inst = runModConf->root; inst != NULL; inst = inst->next) {
		CHKiRet(inst_activate(inst));
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
CODESTARTrunInput
	iRet = run_input(pThrd);
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
	if (input_name != NULL)
		prop.Destruct(&input_name);
	objRelease(datetime, CORE_COMPONENT);
	objRelease(prop, CORE_COMPONENT);
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
	CHKiRet(objUse(prop, CORE_COMPONENT));
	CHKiRet(objUse(datetime, CORE_COMPONENT));
	CHKiRet(prop.CreateStringProp(&input_name, (const uchar *)MODNAME, sizeof(MODNAME) - 1));
	glue_paramblk_init(&iml_table, inppdescr, &inppblk);
	lgr_log_set(glue_log, (void *)MODNAME);
ENDmodInit
	/* clang-format on */
