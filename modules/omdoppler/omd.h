/*
 * omd.h: the network side of one omdoppler action (omd_net.c): one thread running an event loop that drains the
 * action's drop-oldest ring into long-lived gRPC streams to the routers. It never includes rsyslog headers and
 * never waits for rsyslog; rsyslog's workers never wait for it: the ring is the only hand-over.
 *
 * Streams: `streams` calls of /loggregator.v2.Ingress/BatchSender (or /plumbing.DopplerIngestor/Pusher with v1),
 * each on the lgr_h2 client of one router (one client per router, kept connected with lgr_h2's capped exponential
 * backoff and jitter, keepalive every 15 s). A stream is bound to a random router that is ready (round robin while
 * none is), restarted with its own backoff after an error, and recycled after recycle_ms (+-20 %) so load spreads
 * again when routers come and go. Each batch goes to a random ready stream whose send queue is short.
 *
 * Delivery: a batch counts as egress once HTTP/2 took all its bytes into DATA frames. Batches still queued when a
 * stream ends otherwise than normally (or partly taken) are sent again on another stream, oldest first; nothing is
 * given up while a router is reachable. A router's end of stream after our half-close (OK, or UNKNOWN "EOF" from
 * the real Go router) is normal.
 *
 * Items: the ring carries each envelope as its protobuf encoding (struct omd_item), made on rsyslog's worker that
 * built the envelope, so the envelope's many small allocations are freed by the thread that made them and the
 * network thread only copies bytes into batches.
 *
 * Counters: every envelope popped from the ring ends as exactly one of egress or dropped (given up at shutdown,
 * or having no v1 form), so with the ring's own figures
 *	pushed == egress + ring dropped + net dropped + ring length + in flight
 * holds at every quiet moment and exactly once the thread has stopped.
 *
 * Threads: omd_net_new and omd_net_free run on an rsyslog thread; everything else of the loop belongs to the
 * network thread. The counters are updated atomically and may be read from any thread.
 */
#ifndef OMD_H
#define OMD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "lgr.h"
#include "lgr_ring.h"

#define OMD_RECYCLE_DEFAULT_MS 180000u	  /* a stream is replaced after about three minutes */
#define OMD_BATCH_MAX_BYTES    (1u << 20) /* a batch is closed once it holds this many bytes of envelopes */

/* Written by the network thread with atomic adds; read by impstats from any thread. */
struct omd_counters {
	uint64_t egress;   /* envelopes whose batch the router confirmed it read */
	uint64_t resent;   /* envelopes sent again: their stream ended before the router confirmed them */
	uint64_t dropped;  /* envelopes popped from the ring and then given up */
	uint64_t connects; /* connections to a router that became ready */
	uint64_t errors;   /* failed connection attempts, lost connections, streams ended with an error */
};

struct omd_net_conf {
	const char *name;	    /* prefix of log lines, e.g. "omdoppler(127.0.0.1:8082)" */
	const char *const *routers; /* "host:port" each; copied */
	size_t nrouters;
	unsigned streams;	  /* 1.. */
	unsigned batch_max;	  /* envelopes per batch */
	unsigned flush_ms;	  /* longest wait of a partial batch */
	unsigned recycle_ms;	  /* stream lifetime; 0: OMD_RECYCLE_DEFAULT_MS */
	bool v1;		  /* Pusher with v1 envelopes instead of BatchSender */
	SSL_CTX *ssl_ctx;	  /* borrowed, must outlive the net; NULL: h2c */
	const char *server_name;  /* DNS SAN the routers must present (TLS) */
	struct lgr_ring *ring;	  /* borrowed; made with conf.eventfd, items are struct omd_item * */
	struct omd_counters *ctr; /* borrowed */
	/* Where the net's own lines go (already rate-limited here, unlike the transport's, which take lgr_log);
	 * NULL: lgr_log. Called on the network thread. */
	lgr_log_fn *log;
	void *log_ud;
};

struct omd_net;

/*
 * Starts the network thread. LGR_OK; LGR_EINVAL (a router is not host:port, no router, no stream); LGR_ENOMEM;
 * LGR_EIO (the thread or its event loop cannot be set up; reported through lgr_log).
 */
int omd_net_new(const struct omd_net_conf *conf, struct omd_net **out);

/*
 * Stops the thread and frees the net: what the ring, the open batch and the streams still hold is sent for at most
 * budget_ms (streams are then half-closed and given the rest of the budget to end), then given up and counted as
 * dropped. Returns after the thread has ended. NULL is a no-op.
 */
void omd_net_free(struct omd_net *net, unsigned budget_ms);

/* One envelope in the ring: its protobuf encoding (an Envelope message, as lgr_env_encode gives it). */
struct omd_item {
	size_t len;
	uint8_t data[];
};

/* A new item with room for len bytes, which the caller writes; NULL when out of memory. Free with omd_item_free. */
struct omd_item *omd_item_new(size_t len);

/* Frees a ring item; the ring's drop callback. */
void omd_item_free(void *item, void *ud);

#endif
