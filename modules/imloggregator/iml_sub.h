/*
 * iml_sub.h: the network side of an imloggregator input with protocol="subscribe", the reverse log proxy's fan-in
 * (iml_sub.c).
 *
 * For each router of `routers` it keeps one lgr_h2 client (mutual TLS with the router's DNS SAN checked, ALPN h2, or
 * h2c; reconnected by lgr_h2 with gRPC's capped exponential backoff and jitter, keepalive every 15 s) and one
 * /loggregator.v2.Egress/BatchedReceiver call on it, made with the request of lgr_select_req_pack. Each
 * EnvelopeBatch the router streams enters the instance's rings through iml_push_batch, as a BatchSender call's do:
 * every envelope of one router goes to the same ring, so a router's order is kept. A call that ends (an error, the
 * router's end of stream, a lost connection) is made again after its own capped exponential backoff with jitter,
 * at once when the router's connection becomes ready again.
 *
 * Log lines (one per failure, rate-limited per router) name the router; the transport's own lines for the same
 * failures go to the debug log (its clients have on_state).
 *
 * Threads: an iml_sub and everything it owns belong to the thread running its event_base (the input thread). The
 * counters may be read from any thread.
 */
#ifndef IML_SUB_H
#define IML_SUB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "iml.h"

struct event_base;

/* Written by the input thread with atomic adds; read by impstats from any thread. */
struct iml_sub_counters {
	uint64_t connects; /* connections to a router that became ready */
	uint64_t errors;   /* failed connection attempts, lost connections, streams the router ended */
};

struct iml_sub_conf {
	const char *name;	    /* prefix of log lines, e.g. "imloggregator(subscribe/shard)" */
	const char *const *routers; /* "host:port" each (checked by lgr_conf_check_hostport); copied */
	size_t nrouters;
	SSL_CTX *ssl_ctx;	 /* borrowed, must outlive the sub; NULL: h2c */
	const char *server_name; /* DNS SAN the routers must present (TLS) */
	const uint8_t *request;	 /* the encoded EgressBatchRequest (lgr_select_req_pack); copied */
	size_t request_len;
	size_t max_message;	       /* largest EnvelopeBatch accepted */
	struct lgr_ring *const *rings; /* borrowed: router i's envelopes all go to rings[i % nrings] */
	size_t nrings;
	struct iml_sub_counters *ctr; /* borrowed */
	uint64_t *invalid; /* borrowed: incremented atomically for each EnvelopeBatch refused or lost to memory */
};

struct iml_sub;

/* Starts the clients and calls (they connect from the loop). LGR_OK; LGR_EINVAL (no router, a bad one); LGR_ENOMEM. */
int iml_sub_new(struct event_base *base, const struct iml_sub_conf *conf, struct iml_sub **out);

/* Ends every call and connection at once; nothing more enters the rings. Calling it again has no effect. */
void iml_sub_stop(struct iml_sub *sub);

/* Stops (if not yet) and frees. NULL is a no-op. */
void iml_sub_free(struct iml_sub *sub);

#endif
