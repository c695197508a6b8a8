/*
 * omfirehose.c: rsyslog output module that plays the router's egress side: a gRPC loggregator.v2.Egress listener
 * for subscribers (shard groups, selectors), an optional HTTPS gateway (/v2/read server-sent events and recent
 * envelopes per source id), and syslog drains driven by bindings.
 *
 * This file is the rsyslog glue: the parameter table, config checks, the TLS context, counters and the action
 * lifecycle. The egress (subscribers, batching, the gRPC server and its network thread) is omf_egress.c (omf.h),
 * the gateway (/v2/read, /api/v1/read on the egress's loop) omf_gateway.c, the drains omf_drains.c, the message
 * mapping ../common/msgenv.c.
 *
 * What the action asks rsyslog for: entry 0 is the message object itself (OMSR_TPL_AS_MSG), through the
 * non-transactional doAction, as omdoppler does: envelopes are rebuilt from the message's $!loggregator JSON and
 * %msg% bytes. The sourceId / instanceId / sourceType parameters name string templates; each one given adds an
 * entry (1, 2, 3 in that order, only those set) that msgenv uses for messages not from imloggregator.
 *
 * doAction converts, encodes once, hands the envelope to the subscribers it matches (each subscriber's own
 * drop-oldest ring) and returns at once: it never waits for a socket. The listener and its network thread start
 * in activateCnf (never during `rsyslogd -N1`), when the port file is written, and stop in freeInstance.
 *
 * Threads: rsyslog may run several workers of one action at once; each has its own wrkrInstanceData_t. The shared
 * instanceData is read-only after activateCnf except for the counters (atomic) and the bad-input log limiter
 * (under log_mut).
 */
#include "../common/rsconfig.h" /* rsyslog's config.h, first */

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
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
#include "lgr_http.h"
#include "lgr_tls.h"
#include "omf.h"
#include "../common/glue.h"
#include "../common/msgenv.h"

MODULE_TYPE_OUTPUT
MODULE_TYPE_NOKEEP
MODULE_CNFNAME("omfirehose")

DEF_OMOD_STATIC_DATA
DEFobjCurrIf(statsobj)

#define MODNAME	      "omfirehose"
#define SHUTDOWN_MS   1000   /* freeInstance: subscribers get this long to take what they still hold */
#define LOG_WINDOW_MS 10000u /* bad-input lines: at most LOG_BURST per LOG_WINDOW_MS */
#define LOG_BURST     10

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
	char *source_id_tpl;
	char *instance_id_tpl;
	char *source_type_tpl;
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
	long long gw_stream_timeout_ms;
	int role;
	char *drains_bindings_file;
	char *drains_bindings_url;
	char *drains_tls_cacert;
	char *drains_tls_mycert;
	char *drains_tls_myprivkey;
	char *drains_tls_servername;
	long long drains_poll_ms;
	struct lgr_conf_strv drains_aggregate;
	struct lgr_conf_strv drains_static;
	long long drains_per_app;
	long long drains_buffer;
	long long drains_idle_ms;
	struct lgr_conf_strv drains_deny_ranges;
	struct lgr_conf_seen seen;
};

static const char *const auth_modes[] = {"token", "none", NULL};
static const char *const roles[] = {"router", "rlp", NULL};

static bool has_scheme(const char *value, const char *scheme)
{
	size_t len = strlen(scheme);

	return strncasecmp(value, scheme, len) == 0 && value[len] != '\0';
}

/* A drain URL of a scheme the drains serve, with something after it (lgr_drain_parse checks the rest). */
static int check_drain_url(const char *value, char *why, size_t whylen)
{
	static const char *const schemes[] = {
		"syslog://", "syslog-tls://", "syslog+tls://", "https://", "https-batch://", NULL};

	for (size_t i = 0; schemes[i] != NULL; i++)
		if (has_scheme(value, schemes[i]))
			return LGR_OK;
	snprintf(why, whylen, "expected a syslog://, syslog-tls://, syslog+tls://, https:// or https-batch:// URL");
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
	{.name = "role",
		.type = LGR_CONF_ENUM,
		.def = "router",
		.offset = F(role),
		.words = roles,
		.desc = "router: gRPC subscribers get envelopes as they came in; rlp: use_preferred_tags is honoured, "
			"as the reverse log proxy does"},
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
	{.name = "gateway.streamTimeout",
		.type = LGR_CONF_DURATION,
		.def = "840000",
		.offset = F(gw_stream_timeout_ms),
		.min = 0,
		.max = 86400000,
		.desc = "a /v2/read stream is closed after this long (ms; 0: never), as the RLP gateway does"},
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
	/* no item check here: lgr_conf's messages quote the value, and an entry's URL may carry a password; the drains
	 * check each entry and name it anonymised (drains_init) */
	{.name = "drains.static",
		.type = LGR_CONF_ARRAY,
		.offset = F(drains_static),
		.desc = "apps bound to drains here: \"APP_ID URL\" or \"APP_ID HOSTNAME URL\" (no client certificate)"},
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
		"gateway.auth", "gateway.streamTimeout", NULL};
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
	struct _instanceData *next; /* the instances of one configuration, for activateCnf */
	SSL_CTX *ssl_ctx;	    /* TLS: made in newActInst, so -N1 reports unusable certificates */
	const char **permitted;	    /* tls.permittedpeers, NULL-terminated; NULL when none */
	struct omf_egress *eg;	    /* made in newActInst, started in activateCnf */
	SSL_CTX *gw_ssl_ctx;	    /* the gateway's server context (client certificates optional) */
	struct omf_gateway *gw;	    /* NULL unless gateway.port is set; made in newActInst, started with the egress */
	SSL_CTX *drains_ssl_ctx;    /* client context for drains.bindingsUrl */
	struct omf_drains *drains;  /* NULL without bindings or aggregate drains */
	struct omf_drains_counters dctr; /* the drains' (atomic) */
	struct omf_counters ctr;	 /* the egress's (atomic) */
	uint64_t ingress;		 /* atomic: messages the action took */
	uint64_t invalid;		 /* atomic: messages that gave no envelope */
	struct msgenv_tpl_slots tpls;	 /* where doAction finds the rendered templates */
	pthread_mutex_t log_mut;
	struct lgr_ratelimit log_rl;
	/* impstats: deltas added when impstats reads */
	pthread_mutex_t stats_mut;
	uint64_t seen_ingress, seen_egress, seen_dropped, seen_slow, seen_d_sent, seen_d_invalid;
	statsobj_t *stats;
	STATSCOUNTER_DEF(ctr_ingress, mut_ctr_ingress)
	STATSCOUNTER_DEF(ctr_egress, mut_ctr_egress)
	STATSCOUNTER_DEF(ctr_dropped, mut_ctr_dropped)
	STATSCOUNTER_DEF(ctr_subscriptions, mut_ctr_subscriptions)
	STATSCOUNTER_DEF(ctr_slow, mut_ctr_slow)
	STATSCOUNTER_DEF(ctr_d_sent, mut_ctr_d_sent)
	STATSCOUNTER_DEF(ctr_d_invalid, mut_ctr_d_invalid)
	intctr_t ctr_d_active;
} instanceData;

typedef struct wrkrInstanceData {
	instanceData *pData;
	struct lgr_env_scratch *scratch; /* messages from imloggregator are read into it; NULL when out of memory */
	struct omf_home *home;		 /* where this worker's blocks come back to be freed; NULL: none */
} wrkrInstanceData_t;

struct modConfData_s {
	rsconf_t *pConf;
	instanceData *insts; /* created for this configuration, started in activateCnf */
};
static modConfData_t *loadModConf; /* the configuration being loaded */

/*
 * impstats is about to read the counters: add what changed since the last read (deltas, never totals, so that
 * impstats' resetCounters works); subscriptions and active_drains are levels and set as they are. dropped.egress =
 * subscribers' losses (drop-oldest, and what a subscriber held when it went away), drains' losses and messages that
 * gave no envelope; drains.egress = lines the drains sent; invalid_drains = bindings refused.
 */
static void stats_read(statsobj_t *stats, void *ud)
{
	instanceData *pData = ud;
	uint64_t ingress, egress, dropped, slow, d_sent, d_invalid;

	(void)stats;
	ingress = __atomic_load_n(&pData->ingress, __ATOMIC_RELAXED);
	egress = __atomic_load_n(&pData->ctr.egress, __ATOMIC_RELAXED);
	dropped = __atomic_load_n(&pData->ctr.dropped, __ATOMIC_RELAXED) +
		  __atomic_load_n(&pData->invalid, __ATOMIC_RELAXED) +
		  __atomic_load_n(&pData->dctr.dropped, __ATOMIC_RELAXED);
	slow = __atomic_load_n(&pData->ctr.slow, __ATOMIC_RELAXED);
	d_sent = __atomic_load_n(&pData->dctr.sent, __ATOMIC_RELAXED);
	d_invalid = __atomic_load_n(&pData->dctr.invalid, __ATOMIC_RELAXED);
	pthread_mutex_lock(&pData->stats_mut);
	STATSCOUNTER_ADD(pData->ctr_ingress, pData->mut_ctr_ingress, ingress - pData->seen_ingress);
	STATSCOUNTER_ADD(pData->ctr_egress, pData->mut_ctr_egress, egress - pData->seen_egress);
	STATSCOUNTER_ADD(pData->ctr_dropped, pData->mut_ctr_dropped, dropped - pData->seen_dropped);
	STATSCOUNTER_ADD(pData->ctr_slow, pData->mut_ctr_slow, slow - pData->seen_slow);
	STATSCOUNTER_ADD(pData->ctr_d_sent, pData->mut_ctr_d_sent, d_sent - pData->seen_d_sent);
	STATSCOUNTER_ADD(pData->ctr_d_invalid, pData->mut_ctr_d_invalid, d_invalid - pData->seen_d_invalid);
	pData->ctr_subscriptions = (intctr_t)__atomic_load_n(&pData->ctr.subscriptions, __ATOMIC_RELAXED);
	pData->ctr_d_active = (intctr_t)__atomic_load_n(&pData->dctr.drains, __ATOMIC_RELAXED);
	pData->seen_ingress = ingress;
	pData->seen_egress = egress;
	pData->seen_dropped = dropped;
	pData->seen_slow = slow;
	pData->seen_d_sent = d_sent;
	pData->seen_d_invalid = d_invalid;
	pthread_mutex_unlock(&pData->stats_mut);
}

static rsRetVal stats_init(instanceData *pData)
{
	const struct glue_counter ctrs[] = {
		{"ingress", &pData->ctr_ingress},
		{"egress", &pData->ctr_egress},
		{"dropped.egress", &pData->ctr_dropped},
		{"subscriptions", &pData->ctr_subscriptions},
		{"slow_consumer", &pData->ctr_slow},
		{"drains.egress", &pData->ctr_d_sent},
		{"invalid_drains", &pData->ctr_d_invalid},
		{"active_drains", &pData->ctr_d_active},
	};
	char name[256];

	snprintf(name, sizeof(name), MODNAME "(%s:%d)", pData->conf.address, pData->conf.port);
	return glue_stats_new(
		&statsobj, &pData->stats, name, MODNAME, ctrs, sizeof(ctrs) / sizeof(ctrs[0]), stats_read, pData);
}

/* The server TLS context (client certificates required) and the permitted peers. */
static rsRetVal tls_init(instanceData *pData)
{
	static const char *const alpn[] = {"h2", NULL};
	struct lgr_tls_config tc = {0};
	const struct lgr_conf_strv *pp = &pData->conf.tls_permitted_peers;
	char err[512];
	DEFiRet;

	if (!pData->conf.tls)
		FINALIZE;
	tc.ca_file = pData->conf.tls_cacert;
	tc.cert_file = pData->conf.tls_mycert;
	tc.key_file = pData->conf.tls_myprivkey;
	tc.require_client_cert = true;
	tc.alpn = alpn;
	if (lgr_tls_server_ctx(&tc, &pData->ssl_ctx, err, sizeof(err)) != LGR_OK) {
		LogError(0, RS_RET_CONF_PARAM_INVLD, MODNAME "(%s:%d): TLS: %s", pData->conf.address, pData->conf.port,
			err);
		ABORT_FINALIZE(RS_RET_CONF_PARAM_INVLD);
	}
	if (pp->n > 0) {
		CHKmalloc(pData->permitted = calloc(pp->n + 1, sizeof(pData->permitted[0])));
		for (size_t i = 0; i < pp->n; i++)
			pData->permitted[i] = pp->v[i];
	}
finalize_it:
	RETiRet;
}

/* The gateway's server context: HTTP/2 or HTTP/1.1 by ALPN (or none), client certificates optional. */
static rsRetVal gateway_tls_init(instanceData *pData)
{
	struct lgr_tls_config tc = {0};
	char err[512];
	DEFiRet;

	if (!lgr_conf_is_set(&omf_table, &pData->conf, "gateway.port") || !pData->conf.gw_tls)
		FINALIZE;
	tc.ca_file = pData->conf.gw_tls_cacert;
	tc.cert_file = pData->conf.gw_tls_mycert;
	tc.key_file = pData->conf.gw_tls_myprivkey;
	tc.request_client_cert = tc.ca_file != NULL;
	tc.alpn = lgr_http_alpn;
	tc.alpn_optional = true;
	if (lgr_tls_server_ctx(&tc, &pData->gw_ssl_ctx, err, sizeof(err)) != LGR_OK) {
		LogError(0, RS_RET_CONF_PARAM_INVLD, MODNAME "(%s:%d): gateway TLS: %s", pData->conf.gw_address,
			pData->conf.gw_port, err);
		ABORT_FINALIZE(RS_RET_CONF_PARAM_INVLD);
	}
finalize_it:
	RETiRet;
}

/* The gateway: tokens loaded and the recent store made here, so -N1 reports an unusable tokens file. */
static rsRetVal gateway_init(instanceData *pData)
{
	struct omf_gateway_conf gc = {0};
	char name[256], err[512];
	DEFiRet;

	if (!lgr_conf_is_set(&omf_table, &pData->conf, "gateway.port"))
		FINALIZE;
	snprintf(name, sizeof(name), MODNAME "(gateway %s:%d)", pData->conf.gw_address, pData->conf.gw_port);
	gc.name = name;
	gc.address = pData->conf.gw_address;
	gc.port = pData->conf.gw_port;
	gc.ssl_ctx = pData->gw_ssl_ctx;
	gc.tokens_file = pData->conf.gw_auth == OMF_AUTH_TOKEN ? pData->conf.gw_tokens_file : NULL;
	gc.recent_size = (size_t)pData->conf.recent_size;
	gc.recent_max_sources = (size_t)pData->conf.recent_max_sources;
	gc.stream_timeout_ms = (unsigned)pData->conf.gw_stream_timeout_ms;
	gc.log = glue_log;
	gc.log_ud = (void *)MODNAME;
	if (omf_gateway_new(pData->eg, &gc, &pData->gw, err, sizeof(err)) != LGR_OK) {
		LogError(0, RS_RET_CONF_PARAM_INVLD, "%s: %s", name, err);
		ABORT_FINALIZE(RS_RET_CONF_PARAM_INVLD);
	}
finalize_it:
	RETiRet;
}

/* The client context for drains.bindingsUrl (mutual TLS, as CF's binding cache requires). */
static rsRetVal drains_tls_init(instanceData *pData)
{
	struct lgr_tls_config tc = {0};
	char err[512];
	DEFiRet;

	if (pData->conf.drains_bindings_url == NULL)
		FINALIZE;
	tc.ca_file = pData->conf.drains_tls_cacert;
	tc.cert_file = pData->conf.drains_tls_mycert;
	tc.key_file = pData->conf.drains_tls_myprivkey;
	tc.server_name = pData->conf.drains_tls_servername;
	if (lgr_tls_client_ctx(&tc, &pData->drains_ssl_ctx, err, sizeof(err)) != LGR_OK) {
		LogError(0, RS_RET_CONF_PARAM_INVLD, MODNAME ": drains.tls: %s", err);
		ABORT_FINALIZE(RS_RET_CONF_PARAM_INVLD);
	}
finalize_it:
	RETiRet;
}

/* The drains: bindings loaded here (a file that does not parse fails the configuration, and -N1 says why). */
static rsRetVal drains_init(instanceData *pData)
{
	const struct omf_conf *c = &pData->conf;
	struct omf_drains_conf dc = {0};
	char err[512];
	DEFiRet;

	if (c->drains_bindings_file == NULL && c->drains_bindings_url == NULL && c->drains_aggregate.n == 0 &&
		c->drains_static.n == 0)
		FINALIZE;
	dc.name = MODNAME "(drains)";
	dc.bindings_file = c->drains_bindings_file;
	dc.bindings_url = c->drains_bindings_url;
	dc.bindings_ssl_ctx = pData->drains_ssl_ctx;
	dc.bindings_servername = c->drains_tls_servername;
	dc.poll_ms = (unsigned)c->drains_poll_ms;
	dc.aggregate = (const char *const *)c->drains_aggregate.v;
	dc.n_aggregate = c->drains_aggregate.n;
	dc.statics = (const char *const *)c->drains_static.v;
	dc.n_static = c->drains_static.n;
	dc.per_app = (size_t)c->drains_per_app;
	dc.buffer = (size_t)c->drains_buffer;
	dc.idle_ms = (unsigned)c->drains_idle_ms;
	dc.deny_ranges = (const char *const *)c->drains_deny_ranges.v;
	dc.n_deny = c->drains_deny_ranges.n;
	dc.log = glue_log;
	dc.log_ud = (void *)MODNAME;
	dc.gw = pData->gw; /* made before: gateway_init runs first */
	dc.stats = &omf_dstats_rsyslog;
	dc.stats_ud = &statsobj;
	if (omf_drains_new(pData->eg, &dc, &pData->dctr, &pData->drains, err, sizeof(err)) != LGR_OK) {
		LogError(0, RS_RET_CONF_PARAM_INVLD, MODNAME "(drains): %s", err);
		ABORT_FINALIZE(RS_RET_CONF_PARAM_INVLD);
	}
finalize_it:
	RETiRet;
}

static rsRetVal egress_init(instanceData *pData)
{
	struct omf_egress_conf ec = {0};
	char name[256];
	DEFiRet;

	snprintf(name, sizeof(name), MODNAME "(%s:%d)", pData->conf.address, pData->conf.port);
	ec.name = name;
	ec.address = pData->conf.address;
	ec.port = pData->conf.port;
	ec.ssl_ctx = pData->ssl_ctx;
	ec.permitted_peers = pData->permitted;
	ec.sub_buffer = (size_t)pData->conf.subscriber_buffer;
	ec.max_streams = (unsigned)pData->conf.max_streams;
	ec.batch_max = (unsigned)pData->conf.batch_max;
	ec.flush_ms = (unsigned)pData->conf.batch_flush_ms;
	ec.fold_tags = pData->conf.role == 1;
	ec.ctr = &pData->ctr;
	ec.log = glue_log;
	ec.log_ud = (void *)MODNAME;
	if (omf_egress_new(&ec, &pData->eg) != LGR_OK)
		ABORT_FINALIZE(RS_RET_OUT_OF_MEMORY);
finalize_it:
	RETiRet;
}

/* Binds and starts the network thread; a failure is logged and the action then only counts its messages. */
static void egress_start(instanceData *pData)
{
	uint16_t port = 0;

	if (omf_egress_start(pData->eg, &port) != LGR_OK) {
		LogError(0, RS_RET_ERR, MODNAME "(%s:%d): cannot start the Egress listener; no subscriber can connect",
			pData->conf.address, pData->conf.port);
		return;
	}
	glue_write_port_file(MODNAME, pData->conf.port_file, port);
	if (pData->gw != NULL) {
		if (omf_gateway_start(pData->gw, &port) == LGR_OK)
			glue_write_port_file(MODNAME, pData->conf.gw_port_file, port);
		else
			LogError(0, RS_RET_ERR, MODNAME "(%s:%d): cannot start the gateway", pData->conf.gw_address,
				pData->conf.gw_port);
	}
	if (pData->drains != NULL && omf_drains_start(pData->drains) != LGR_OK)
		LogError(0, RS_RET_ERR, MODNAME ": cannot start the drains; no drain gets anything");
}

/* A message that gave no envelope: counted, and logged at most LOG_BURST times per LOG_WINDOW_MS. */
static void bad_input(instanceData *pData, int rc, bool from_iml)
{
	uint64_t held = 0;
	bool log;

	__atomic_add_fetch(&pData->invalid, 1, __ATOMIC_RELAXED);
	pthread_mutex_lock(&pData->log_mut);
	log = lgr_ratelimit_take(&pData->log_rl, lgr_now_ms(), &held);
	pthread_mutex_unlock(&pData->log_mut);
	if (log)
		LogMsg(0, NO_ERRCODE, LOG_WARNING,
			MODNAME ": cannot rebuild an envelope from a message%s: %s; dropped "
				"(%" PRIu64 " similar lines suppressed before this one)",
			from_iml ? " ($!loggregator)" : "", lgr_strerror(rc), held);
}

/* msgenv_pack_log's place: the block a Log envelope is published in (*ud, a struct omf_env *). */
static int place_log(void *ud, const struct lgr_fjson_log *m, uint8_t **dst)
{
	struct omf_env **item = ud;

	*item = omf_env_new_log(m->size, m->source_id.s, m->source_id.n, dst);
	return *item != NULL ? LGR_OK : LGR_ENOMEM;
}

/* rsyslog's entry points: its macros are not statements clang-format understands, so it keeps off them */
/* clang-format off */

BEGINcreateInstance
CODESTARTcreateInstance
	pthread_mutex_init(&pData->log_mut, NULL);
	pData->log_rl = (struct lgr_ratelimit)LGR_RATELIMIT_INIT(LOG_WINDOW_MS, LOG_BURST);
	pthread_mutex_init(&pData->stats_mut, NULL);
ENDcreateInstance

BEGINcreateWrkrInstance
CODESTARTcreateWrkrInstance
	if (lgr_env_scratch_new(&pWrkrData->scratch) != LGR_OK)
		pWrkrData->scratch = NULL; /* then each envelope is built on its own */
	if (omf_home_new(&pWrkrData->home) != LGR_OK)
		pWrkrData->home = NULL; /* then the thread that drops a block's last reference frees it */
ENDcreateWrkrInstance

BEGINfreeInstance
CODESTARTfreeInstance
	/* the drains first: their notices go to the gateway's recent store until they stop */
	omf_drains_free(pData->drains, SHUTDOWN_MS);
	pData->drains = NULL;
	omf_gateway_free(pData->gw, SHUTDOWN_MS);
	pData->gw = NULL;
	omf_egress_free(pData->eg, SHUTDOWN_MS);
	pData->eg = NULL;
	if (pData->stats != NULL)
		statsobj.Destruct(&pData->stats);
	SSL_CTX_free(pData->ssl_ctx);
	SSL_CTX_free(pData->gw_ssl_ctx);
	SSL_CTX_free(pData->drains_ssl_ctx);
	free(pData->permitted);
	pthread_mutex_destroy(&pData->log_mut);
	pthread_mutex_destroy(&pData->stats_mut);
	lgr_conf_free(&omf_table, &pData->conf);
ENDfreeInstance

BEGINfreeWrkrInstance
CODESTARTfreeWrkrInstance
	lgr_env_scratch_free(pWrkrData->scratch);
	omf_home_leave(pWrkrData->home);
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

/* HUP: the gateway's tokens and the drains' bindings file are read again. */
BEGINdoHUP
CODESTARTdoHUP
	omf_gateway_reload(pData->gw);
	if (pData->drains != NULL)
		omf_drains_reload(pData->drains);
ENDdoHUP

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
	const struct lgr_env *view;
	struct omf_env *item = NULL;
	bool from_iml = false;
	int rc;
CODESTARTdoAction
	__atomic_add_fetch(&pData->ingress, 1, __ATOMIC_RELAXED);
	omf_home_collect(pWrkrData->home);
	msgenv_tpl_get(&pData->tpls, params, &tpl);
	/* encoded once, here on rsyslog's workers; every subscriber shares these bytes */
	if (omf_gateway_records(pData->gw) || pWrkrData->scratch == NULL) {
		rc = msgenv_build(msg, &tpl, NULL, &env, &from_iml);
		/* takes env; frees it here unless the recent store keeps it decoded */
		if (rc == LGR_OK)
			item = omf_gateway_records(pData->gw) ? omf_env_new(env) : omf_env_new_encoded(env);
	} else {
		/* encoded straight into the block subscribers share, that block the only allocation per envelope: a
		 * Log envelope from imloggregator straight from its tree, any other read into this worker's scratch */
		rc = msgenv_pack_log(msg, NULL, place_log, &item);
		from_iml = rc != LGR_EUNSUPPORTED;
		if (rc == LGR_EUNSUPPORTED) {
			rc = msgenv_read(msg, &tpl, NULL, pWrkrData->scratch, &view, &env, &from_iml);
			if (rc == LGR_OK)
				item = omf_env_new_view(view);
			lgr_env_unref(env);
		}
	}
	if (item == NULL) {
		bad_input(pData, rc != LGR_OK ? rc : LGR_ENOMEM, from_iml);
		FINALIZE;
	}
	omf_env_set_home(item, pWrkrData->home);
	omf_egress_publish(pData->eg, item);
	omf_gateway_record(pData->gw, item);
	omf_env_unref(item);
finalize_it:
ENDdoAction

BEGINnewActInst
	struct cnfparamvals *pvals = NULL;
	char err[GLUE_ERR_MAX];
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
	CHKiRet(tls_init(pData));
	CHKiRet(egress_init(pData));
	CHKiRet(gateway_tls_init(pData));
	CHKiRet(gateway_init(pData));
	CHKiRet(drains_tls_init(pData));
	CHKiRet(drains_init(pData));
	msgenv_tpl_slots_init(&pData->tpls, pData->conf.source_id_tpl, pData->conf.instance_id_tpl,
		pData->conf.source_type_tpl);
	CODE_STD_STRING_REQUESTnewActInst(1 + pData->tpls.n)
	CHKiRet(msgenv_tpl_request(&pData->tpls, *ppOMSR));
	CHKiRet(stats_init(pData));
	/* the last step, nothing can fail after it: a failed instance is freed by the core and must not be listed */
	if (loadModConf != NULL) {
		pData->next = loadModConf->insts;
		loadModConf->insts = pData;
	}
CODE_STD_FINALIZERnewActInst
	cnfparamvalsDestruct(pvals, &actpblk);
ENDnewActInst

NO_LEGACY_CONF_parseSelectorAct

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
CODESTARTcheckCnf
ENDcheckCnf

/* The configuration becomes the running one (never with -N1): listeners and network threads start. */
BEGINactivateCnf
	instanceData *inst;
CODESTARTactivateCnf
	for (inst = pModConf->insts; inst != NULL; inst = inst->next)
		egress_start(inst);
ENDactivateCnf

/* The instances themselves are freed by the core (freeInstance), before this. */
BEGINfreeCnf
CODESTARTfreeCnf
ENDfreeCnf

BEGINmodExit
CODESTARTmodExit
	lgr_log_set(NULL, NULL);
	objRelease(statsobj, CORE_COMPONENT);
ENDmodExit

BEGINqueryEtryPt
CODESTARTqueryEtryPt
CODEqueryEtryPt_STD_OMOD_QUERIES
CODEqueryEtryPt_STD_OMOD8_QUERIES
CODEqueryEtryPt_STD_CONF2_QUERIES
CODEqueryEtryPt_STD_CONF2_OMOD_QUERIES
CODEqueryEtryPt_doHUP
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
