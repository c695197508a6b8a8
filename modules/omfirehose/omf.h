/*
 * omf.h: the egress of one omfirehose action (omf_egress.c), beside its rsyslog glue: the subscription registry,
 * one drop-oldest buffer and batcher per subscriber, and the gRPC Egress server (loggregator.v2.Egress
 * BatchedReceiver and Receiver, plumbing.Doppler BatchSubscribe and Subscribe) on a network thread of its own.
 * It never includes rsyslog headers and never waits for rsyslog; rsyslog's workers never wait for it.
 *
 * Flow: a worker wraps each envelope in an omf_env and calls omf_egress_publish(), which matches it against the
 * registry (lgr_select: selectors, shard groups) and pushes one reference into the ring of each subscriber it goes
 * to. A full ring drops its oldest envelope (counted in dropped, reported per subscriber). The ring wakes the
 * network thread, which takes envelopes out in batches (batch_max, or what is there after flush_ms) and offers
 * them to the subscriber's sink. A sink that cannot take more (a gRPC send queue that is full) leaves them in the
 * subscriber, which stops taking from its ring until the sink calls omf_sub_resume(): the ring keeps the newest.
 *
 * Envelopes are encoded once (on the worker) and shared: a gRPC batch is the concatenation of the cached field-1
 * records, copied when small and referenced when large (evbuffer_add_reference, released when HTTP/2 has sent
 * them). The other forms a sink may need (use_preferred_tags folding, v1) are computed at most once per envelope,
 * on the network thread.
 *
 * Counters (struct omf_counters), with deliveries = one envelope pushed to one subscriber's ring:
 *	deliveries == egress + skipped + dropped + held by subscribers
 * holds at every quiet moment, and with held == 0 once the egress has stopped.
 *
 * Threads: omf_egress_new, omf_egress_start and omf_egress_free run on an rsyslog thread; omf_egress_publish on
 * any number of threads at once. Everything else, the whole subscriber interface included, belongs to the network
 * thread (the sinks' callbacks run there and its functions must be called there).
 */
#ifndef OMF_H
#define OMF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "lgr.h"
#include "lgr_env.h"
#include "lgr_select.h"

struct event_base;

#define OMF_BATCH_MAX_BYTES (1u << 20) /* a gRPC batch is closed once it holds this many bytes of envelopes */
#define OMF_SEND_QUEUE	    (4u << 20) /* bytes queued per gRPC stream before the subscriber waits */
#define OMF_MAX_REQUEST	    (1u << 20) /* largest subscription request accepted */

/* Written with atomic adds (subscriptions: atomic stores); read from any thread. */
struct omf_counters {
	uint64_t egress;	/* envelopes a sink sent */
	uint64_t skipped;	/* envelopes a sink took without sending (no v1 form, no encoding) */
	uint64_t dropped;	/* envelopes a subscriber's ring dropped or a subscriber held when it went away */
	uint64_t slow;		/* slow-consumer episodes: a subscriber started to lose envelopes */
	uint64_t subscriptions; /* subscribers now that are streams (gRPC, SSE); internal ones (drains) are not */
};

/* ---- envelopes as the egress shares them -------------------------------------------------------------------- */

/*
 * One published envelope: the envelope as received, with its other forms cached. Reference counted (atomic);
 * immutable for every thread but the network thread, which alone fills the caches (omf_env_form, omf_env_v1).
 */
struct omf_env;

/*
 * Wraps env (taking the caller's reference, even on failure), refcount 1; NULL when out of memory. omf_env_new
 * keeps env decoded beside its encoding. omf_env_new_encoded keeps only the encoding and what
 * selectors read, and releases env on the calling thread: the workers' way, so that the network thread, which
 * usually drops the last reference, frees one block instead of every part of a decoded envelope (glibc makes frees
 * of another thread's allocations contend with it); the envelope is decoded again only if a form needs it.
 */
struct omf_env *omf_env_new(struct lgr_env *env);
struct omf_env *omf_env_new_encoded(struct lgr_env *env);

/* As omf_env_new_encoded, from an envelope it only reads (a scratch view, lgr_env.h): the encoding is written
 * straight into the published block. NULL when out of memory. */
struct omf_env *omf_env_new_view(const struct lgr_env *view);
/* A Log envelope of wire_len bytes from source_id (sid_len bytes), which the caller writes to *wire before publishing
 * it (msgenv_pack_log). NULL when out of memory. */
struct omf_env *omf_env_new_log(size_t wire_len, const char *source_id, size_t sid_len, uint8_t **wire);
struct omf_env *omf_env_ref(struct omf_env *e);
void omf_env_unref(struct omf_env *e); /* NULL is a no-op; any thread */

/*
 * A worker thread's home for the blocks it makes (omf_egress.c): a block given a home (omf_env_set_home, before it is
 * published) goes back there when its last reference goes, and omf_home_collect, on the worker's thread, frees what
 * came back; omf_home_leave is the worker's last call (blocks still in use free themselves and the home later).
 */
struct omf_home;
int omf_home_new(struct omf_home **out); /* LGR_OK or LGR_ENOMEM */
void omf_home_collect(struct omf_home *h);
void omf_home_leave(struct omf_home *h);
void omf_env_set_home(struct omf_env *e, struct omf_home *h); /* e: refcount 1, not yet shared */

/* The envelope as published, decoded on first use (any thread); NULL when out of memory. */
struct lgr_env *omf_env_v2(struct omf_env *e);

/* The envelope's v2 encoding, valid as long as a reference. */
void omf_env_wire(const struct omf_env *e, const uint8_t **wire, size_t *len);
/* The same as a record of an EnvelopeBatch (field 1: key, length, the encoding), in one piece. */
void omf_env_record(const struct omf_env *e, const uint8_t **rec, size_t *len);

/*
 * The envelope as a subscriber with use_preferred_tags = preferred sees it (wire.md section 4): true: deprecated
 * tags folded into tags (text as is, integers in decimal, decimals as the agent writes them; a deprecated tag wins
 * over a tag of the same key), deprecated_tags empty; false: tags folded into deprecated_tags as text (a tag wins),
 * tags empty. The envelope itself when folding changes nothing. Computed on first use; the reference stays the
 * omf_env's. Network thread only. LGR_OK or LGR_ENOMEM.
 */
int omf_env_form(struct omf_env *e, bool preferred, struct lgr_env **out);

/*
 * The v1 form (lgr_v1_from_v2): the encoded v1 envelopes, each as one field-1 record (key 0x0a, varint length,
 * bytes), concatenated: exactly the body of a plumbing.BatchResponse, and each record exactly one
 * plumbing.Response. *len 0 for an envelope without a v1 form (an Event). Computed on first use; valid as long as
 * the caller's reference. Network thread only. LGR_OK or LGR_ENOMEM.
 */
int omf_env_v1(struct omf_env *e, const uint8_t **data, size_t *len);

/* ---- the egress ------------------------------------------------------------------------------------------------- */

struct omf_egress_conf {
	const char *name;		    /* prefix of log lines, e.g. "omfirehose(127.0.0.1:8083)"; copied */
	const char *address;		    /* numeric listen address; copied */
	int port;			    /* 0: an ephemeral port */
	SSL_CTX *ssl_ctx;		    /* borrowed, must outlive the egress; NULL: h2c */
	const char *const *permitted_peers; /* TLS: NULL-terminated client names (borrowed), or NULL for any */
	size_t sub_buffer;		    /* envelopes in each subscriber's ring */
	unsigned max_streams;		    /* subscribers at once; beyond, RESOURCE_EXHAUSTED */
	unsigned batch_max;		    /* envelopes per batch */
	unsigned flush_ms;		    /* longest wait of a partial batch */
	/* true: a gRPC subscriber's use_preferred_tags folds tags as the reverse log proxy does (omf_env_form);
	 * false: envelopes go out as they came in, as the router sends them */
	bool fold_tags;
	struct omf_counters *ctr; /* borrowed */
	/* Where the egress's own lines go (rate-limited here); NULL: lgr_log. Called on the network thread. */
	lgr_log_fn *log;
	void *log_ud;
};

struct omf_egress;

/* Creates the registry and the loop; no thread, no socket yet. LGR_OK; LGR_EINVAL; LGR_ENOMEM. */
int omf_egress_new(const struct omf_egress_conf *conf, struct omf_egress **out);

/*
 * Binds the listener and starts the network thread; *port is the bound port. LGR_OK; LGR_EINVAL (bad address or
 * already started); LGR_EIO (bind failed, or the thread cannot start; reported through lgr_log); LGR_ENOMEM.
 */
int omf_egress_start(struct omf_egress *eg, uint16_t *port);

/*
 * Hands e to every subscription it matches (one reference per delivery); e stays the caller's. Never blocks
 * beyond the registry's shared lock and the rings' short locks. Returns the number of deliveries. Any thread.
 */
size_t omf_egress_publish(struct omf_egress *eg, struct omf_env *e);

/*
 * Stops and frees: GOAWAY to every client, what each subscriber holds offered to its sink once more, every
 * stream ended (UNAVAILABLE "server shutting down"), at most budget_ms for the last bytes to leave; then the
 * thread is joined and every envelope reference released (what was still held counted as dropped). NULL is a
 * no-op.
 */
void omf_egress_free(struct omf_egress *eg, unsigned budget_ms);

/* The network thread's loop, for another listener of the same action (the gateway) to share it. */
struct event_base *omf_egress_base(struct omf_egress *eg);

/* ---- subscribers: what a sink (gRPC stream, gateway SSE stream) builds on --------------------------------------- */

struct omf_sub;

/*
 * A sink's side of a subscriber. Both callbacks run on the network thread.
 *
 * deliver: envs[0..n) (n >= 1, oldest first) are offered; they stay the subscriber's: the sink takes references
 *   (omf_env_ref, or evbuffer_add_reference with an unref) for whatever it keeps. The sink sets *taken to the
 *   number of envelopes it consumed from the front (sent, or deliberately skipped) and *sent to how many of those
 *   it actually sent, then returns
 *     LGR_OK: it can take more now; with *taken < n the rest is offered again at once (a size-capped batch);
 *     LGR_EFULL: it cannot take more; the rest waits until the sink calls omf_sub_resume();
 *     another error: the stream is unusable; the rest stays until the sink frees the subscriber.
 *   A sink that sends one envelope as several messages and is refused half-way keeps its own position in
 *   envs[0] and counts it as not taken.
 * close: the egress is stopping; what the subscriber held has been offered. The sink ends its stream and, now or
 *   later, calls omf_sub_free(). May be NULL (the subscriber is then freed by the egress at its end).
 */
struct omf_sink {
	int (*deliver)(
		struct omf_sub *sub, struct omf_env *const *envs, size_t n, size_t *taken, size_t *sent, void *ud);
	void (*close)(struct omf_sub *sub, void *ud);
	/*
	 * Optional: true when nothing the sink took is still on its way, so a partial batch is offered at once and an
	 * envelope waits for the batch to fill only while an earlier one is being sent. When it answers false the sink
	 * owes an omf_sub_resume once it has sent what it holds. NULL: a partial batch waits flush_ms.
	 */
	bool (*idle)(struct omf_sub *sub, void *ud);
	/*
	 * Optional: the bytes the sink's own queue could still take. With it, a subscriber's ring keeps envelopes
	 * beyond subscriber.buffer while they fit in that room (lgr_ring's credit, renewed after every hand-over),
	 * so that envelopes the network thread was merely late to move are not dropped. NULL: the ring drops at
	 * subscriber.buffer.
	 */
	size_t (*room)(struct omf_sub *sub, void *ud);
	/*
	 * A sink with its own queue in front of the connection may count its deliveries itself: with settles set,
	 * what deliver reports as sent is not counted in egress; the sink calls omf_sub_settle once those envelopes
	 * have left its queue, and counts those still in it when its stream ends as dropped, so that what a lost
	 * connection held in the process is counted where it was lost.
	 */
	bool settles;
};

/* For a sink that settles: sent envelopes left its queue (egress), lost ones were in it when it ended (dropped). */
void omf_sub_settle(struct omf_sub *sub, uint64_t sent, uint64_t lost);

/*
 * Subscribes: one subscription per selector of req (shard group and deterministic name as lgr_select says),
 * a ring of the egress's sub_buffer, batches of batch_max or after flush_ms. sink is borrowed (it must outlive
 * the subscriber); peer names the subscriber in log lines (copied). LGR_OK and *out (owned by the caller until
 * omf_sub_free); LGR_EFULL (max_streams subscribers already); LGR_EINVAL (the egress is stopping, or a selector
 * lgr_select refuses); LGR_ELIMIT; LGR_ENOMEM.
 */
int omf_sub_new(struct omf_egress *eg, const struct lgr_select_req *req, const struct omf_sink *sink, void *ud,
	const char *peer, struct omf_sub **out);

/*
 * What a subscriber that is not a gRPC or SSE stream (a drain) may set differently; zero fields are the egress's
 * defaults, so {0} makes an ordinary subscriber.
 */
struct omf_sub_opts {
	size_t buffer;	    /* envelopes in the ring; 0: the egress's sub_buffer */
	unsigned batch_max; /* envelopes offered at once; 0: the egress's batch_max */
	bool eager;	    /* offer what there is at once instead of waiting flush_ms to fill a batch */
	bool internal;	    /* not a stream: outside maxStreams and the subscriptions counter, and no slow-consumer
			       lines (the owner reports its own losses) */
	bool lazy_ring;	    /* the ring is allocated on the first delivery: a subscriber that never gets an
			       envelope costs no buffer */
	struct omf_counters *ctr; /* where this subscriber's egress, skipped, dropped and slow go (borrowed, must
				     outlive it); NULL: the egress's */
};

/* omf_sub_new with opts (NULL: as omf_sub_new). Same results; LGR_EINVAL also for a buffer above the ring's
 * maximum. */
int omf_sub_new_opts(struct omf_egress *eg, const struct lgr_select_req *req, const struct omf_sink *sink, void *ud,
	const char *peer, const struct omf_sub_opts *opts, struct omf_sub **out);

/* The sink can take envelopes again (after LGR_EFULL), or became idle: delivery continues from the loop. */
void omf_sub_resume(struct omf_sub *sub);

/* Envelopes the subscriber holds now: in its ring and offered but not taken. */
size_t omf_sub_held(const struct omf_sub *sub);

/*
 * Unsubscribes and frees: no delivery reaches the subscriber after this; envelopes it still held are released
 * and counted as dropped. Never call it from inside deliver. NULL is a no-op.
 */
void omf_sub_free(struct omf_sub *sub);

bool omf_sub_preferred_tags(const struct omf_sub *sub); /* the request's use_preferred_tags */
const char *omf_sub_peer(const struct omf_sub *sub);
const char *omf_sub_shard_id(const struct omf_sub *sub);
struct omf_egress *omf_sub_egress(const struct omf_sub *sub);

/* ---- the gateway (omf_gateway.c): HTTPS /v2/read server-sent events and /api/v1/read recent envelopes ----------- */

/*
 * The RLP gateway and Log Cache read of one action, on the egress's network thread (omf_egress_base): an lgr_http
 * listener; /v2/read subscribes through omf_sub_new with a sink that writes server-sent events (lgr_gateway),
 * heartbeats every heartbeat_ms, ends a stream after stream_timeout_ms; /api/v1/read/{source_id} answers from the
 * recent store that omf_gateway_record fills. Bearer tokens from tokens_file (reloaded by omf_gateway_reload);
 * every auth failure answers 404.
 */
struct omf_gateway_conf {
	const char *name;	    /* prefix of log lines; copied */
	const char *address;	    /* numeric listen address; copied */
	int port;		    /* 0: an ephemeral port */
	SSL_CTX *ssl_ctx;	    /* borrowed, must outlive the gateway; NULL: cleartext (h2c or HTTP/1.1) */
	const char *tokens_file;    /* NULL: no authentication (gateway.auth="none") */
	size_t recent_size;	    /* envelopes kept per source id; 0: no recent store (/api/v1/read answers 404) */
	size_t recent_max_sources;  /* source ids kept */
	unsigned heartbeat_ms;	    /* 0: 15000 */
	unsigned stream_timeout_ms; /* 0: never */
	lgr_log_fn *log;	    /* NULL: lgr_log */
	void *log_ud;
};

struct omf_gateway;

/* Loads the tokens and makes the recent store; no socket yet. LGR_OK; LGR_EINVAL (tokens file unusable: err says
 * why); LGR_ENOMEM. */
int omf_gateway_new(
	struct omf_egress *eg, const struct omf_gateway_conf *conf, struct omf_gateway **out, char *err, size_t errlen);

/* Binds and starts serving on the egress's loop (the egress must be started). *port: the bound port.
 * LGR_OK; LGR_EIO (bind failed; reported through the log). */
int omf_gateway_start(struct omf_gateway *gw, uint16_t *port);

/* Keeps e for /api/v1/read (a reference or a copy; e stays the caller's). Any thread. NULL gw is a no-op. */
void omf_gateway_record(struct omf_gateway *gw, struct omf_env *e);
/* Whether omf_gateway_record keeps envelopes (the recent store is on); NULL: false. */
bool omf_gateway_records(const struct omf_gateway *gw);

/* Re-reads the tokens file (HUP); on failure the old tokens stay and the reason is logged. Any thread. */
void omf_gateway_reload(struct omf_gateway *gw);

/* Stops serving (streams ended, at most budget_ms for the last bytes) and frees; must run before
 * omf_egress_free. NULL is a no-op. */
void omf_gateway_free(struct omf_gateway *gw, unsigned budget_ms);

/* ---- drains (omf_drains.c): each app's envelopes to the drains it is bound to ------------------------------------ */

/*
 * Per-drain statistics (impstats): one object per drain from its first envelope until the drain goes (unbound,
 * bound differently, stopped), named "omfirehose-drain(<anonymised URL> app <app id>)", or "omfirehose-drain(<URL>
 * aggregate)" for an aggregate drain, with the counters egress (lines the drain's writers sent) and dropped
 * (envelopes the drain lost: pushed out of its buffer, held when it went, refused while it cannot be served, and
 * lines its writers lost). The drains call these on the egress's network thread, never while holding a lock of
 * theirs (so rsyslog may take its own statistics locks in open and close); add must not block. omf_dstats.c
 * implements them on rsyslog's statsobj; tests can bring their own.
 */
struct omf_dstats_ops {
	/* A new object called name, counters at 0; NULL when it cannot be made (the drain then goes without one). */
	void *(*open)(const char *name, void *ud);
	/* Adds what changed since the last call (deltas, so that impstats' resetCounters works). */
	void (*add)(void *obj, uint64_t egress, uint64_t dropped);
	/* The drain is gone: the object leaves impstats and is freed. */
	void (*close)(void *obj);
};

/* omf_dstats.c: rsyslog's statsobj; ud is the module's statsobj interface (statsobj_if_t *, borrowed). */
extern const struct omf_dstats_ops omf_dstats_rsyslog;

struct omf_drains_conf {
	const char *name;		 /* prefix of log lines; copied */
	const char *bindings_file;	 /* NULL: none */
	const char *bindings_url;	 /* NULL: none */
	SSL_CTX *bindings_ssl_ctx;	 /* client context for bindings_url (borrowed) */
	const char *bindings_servername; /* NULL: the URL's host */
	unsigned poll_ms;		 /* bindings_url poll interval (with jitter) */
	const char *const *aggregate;	 /* drain URLs for every source (borrowed), n_aggregate of them */
	size_t n_aggregate;
	const char *const *statics; /* "APP_ID [HOSTNAME] URL" (borrowed), n_static of them */
	size_t n_static;
	size_t per_app;			/* drains kept per app */
	size_t buffer;			/* envelopes in each drain's drop-oldest buffer */
	unsigned idle_ms;		/* a drain's writer closes after this long without traffic */
	const char *const *deny_ranges; /* CIDR ranges (borrowed), n_deny of them */
	size_t n_deny;
	lgr_log_fn *log; /* NULL: lgr_log */
	void *log_ud;
	/* the gateway whose recent store keeps the notices told into apps' streams too (borrowed; the drains must be
	 * freed before it); NULL: none */
	struct omf_gateway *gw;
	const struct omf_dstats_ops *stats; /* per-drain statistics (borrowed); NULL: none */
	void *stats_ud;			    /* for stats->open */
};

/* Per-drain figures go to the per-drain statistics (stats) and the log; these add up over all drains. Atomic. */
struct omf_drains_counters {
	uint64_t sent;	  /* lines a drain writer sent */
	uint64_t dropped; /* envelopes lost: drop-oldest, writer losses, refused */
	uint64_t invalid; /* bindings refused (counted once per load) */
	uint64_t drains;  /* drains with a writer now (a level) */
};

struct omf_drains;

/* Loads the bindings (a file that does not parse, or a static binding that does not, is an error here, at
 * startup). No thread, no socket. LGR_OK; LGR_EINVAL (err says why); LGR_ENOMEM. */
int omf_drains_new(struct omf_egress *eg, const struct omf_drains_conf *conf, struct omf_drains_counters *ctr,
	struct omf_drains **out, char *err, size_t errlen);

/* Starts on the egress's loop (the egress must be started): file watching, URL polling. LGR_OK or LGR_EIO. */
int omf_drains_start(struct omf_drains *d);

/* Re-reads the bindings file now (HUP). Any thread. */
void omf_drains_reload(struct omf_drains *d);

/*
 * Stops (at most budget_ms for writers to send what they hold; what they still hold then counts as dropped) and
 * frees, per-drain statistics included; before omf_gateway_free and omf_egress_free. NULL: no-op.
 */
void omf_drains_free(struct omf_drains *d, unsigned budget_ms);

#endif
