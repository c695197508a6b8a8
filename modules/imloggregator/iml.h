/*
 * iml.h: the parts of imloggregator beside its rsyslog glue.
 *
 * iml_net (iml_net.c) is the network side of one input instance: a gRPC listener (v2 Ingress Sender, BatchSender,
 * Send and v1 DopplerIngestor/Pusher) or a UDP socket for v1 dropsonde datagrams. It checks what arrives (v1 is
 * converted to v2 there) and pushes one iml_item per envelope into one of the instance's drop-oldest rings: every
 * envelope of a gRPC call into the same ring (calls take the rings in turn), every datagram from an address into the
 * same ring, so that each keeps its order.
 * It never includes rsyslog headers and never waits for rsyslog: the rings are the only hand-over.
 *
 * iml_sub (iml_sub.c, iml_sub.h) is the network side of a subscribe instance: BatchedReceiver streams from routers,
 * whose EnvelopeBatches enter the rings through iml_push_batch, as a BatchSender call's do.
 *
 * iml_msg (iml_msg.c) turns one envelope into one rsyslog message (the mapping of config.md); it runs on the
 * instance's submitter threads (one per ring), which also decode the v2 envelopes and apply the agent's rules.
 *
 * Threads: an iml_net and everything it owns belong to the thread running its event_base (the input thread).
 * The invalid counter may be read from any thread. Items in a ring are handed from the loop thread to its
 * submitter (or freed by the ring when dropped, in the pushing thread); an item is never touched by two threads.
 */
#ifndef IML_H
#define IML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "lgr_env.h"
#include "lgr_ring.h"
#include "lgr_v1.h"

struct event_base;

#define IML_IP_MAX 48 /* an IPv6 address in text, with its NUL */

/*
 * What the ring carries: one item per envelope. Items that arrived together (a gRPC message, a datagram) share one
 * allocation, the iml_batch, which holds the sender's address, the items and a copy of the message bytes, and is
 * freed with its last item. v2 envelopes stay encoded until the submitter takes them (the network thread only
 * checks them, so that the sender gets its status), which keeps every allocation of the decoded envelope, and its
 * release, on the submitter's thread; v1 envelopes arrive converted.
 */
struct iml_batch;

struct iml_item {
	struct iml_batch *batch; /* one reference per item */
	const uint8_t *data;	 /* the encoded v2 envelope, checked by lgr_pb; NULL when env is set */
	size_t len;
	struct lgr_env *env; /* a decoded envelope owned by the item, or NULL */
};

/* Frees an item (the ring's drop callback; ud unused). */
void iml_item_free(void *item, void *ud);

/* The sender's address (for %fromhost-ip%), "" when unknown. */
const char *iml_item_ip(const struct iml_item *it);

/*
 * Checks one encoded EnvelopeBatch as a whole against lim (all or nothing), copies it once and pushes one item per
 * envelope into ring, in order, each with the sender's address ip. This is the one way envelopes enter a ring from
 * a gRPC message, whether a client sent it (BatchSender, Send) or a router streamed it (subscribe). LGR_OK (also
 * for an empty batch); an lgr_pb_check_batch error (malformed, over a limit: nothing pushed); LGR_ENOMEM.
 */
int iml_push_batch(
	struct lgr_ring *ring, const struct lgr_limits *lim, const uint8_t *msg, size_t len, const char ip[IML_IP_MAX]);

enum iml_net_kind {
	IML_NET_GRPC,
	IML_NET_UDP,
};

struct iml_net_conf {
	const char *name; /* prefix of log lines, e.g. "imloggregator(grpc/127.0.0.1:3458)" */
	enum iml_net_kind kind;
	const char *address;			   /* numeric listen address */
	int port;				   /* 0: an ephemeral port */
	SSL_CTX *ssl_ctx;			   /* gRPC: borrowed, must outlive the iml_net; NULL: h2c */
	const char *const *permitted_peers;	   /* gRPC over TLS: NULL-terminated client names, or NULL for any */
	size_t max_message;			   /* largest gRPC message or datagram */
	const struct lgr_v1_defaults *v1_defaults; /* UDP: the agent's deployment/job/index/ip; may be NULL */
	struct lgr_ring *const *rings;		   /* borrowed: a call's envelopes all go to one, in turn */
	size_t nrings;
	uint64_t *invalid; /* borrowed: incremented atomically for each message or datagram refused */
};

struct iml_net;

/* Binds and listens. LGR_OK; LGR_EINVAL; LGR_EIO (bind failed, reported through lgr_log); LGR_ENOMEM. */
int iml_net_new(struct event_base *base, const struct iml_net_conf *conf, struct iml_net **out);

/* The bound port. */
uint16_t iml_net_port(const struct iml_net *net);

/*
 * Stops accepting: a gRPC listener sends GOAWAY, lets open calls run for grace_ms and then ends them; a UDP socket
 * reads what is queued and closes. done runs on the loop thread when nothing is open any more.
 */
void iml_net_shutdown(struct iml_net *net, unsigned grace_ms, void (*done)(void *ud), void *ud);

/* Closes everything at once and frees. NULL is a no-op. */
void iml_net_free(struct iml_net *net);

#endif
