/*
 * omd_net.c: the network thread of one omdoppler action (see omd.h): routers' clients, streams, batching,
 * delivery accounting, resending, recycling, shutdown.
 *
 * The loop reacts to five things: the ring's eventfd (envelopes arrived, or the stop request), the gather timer
 * that lets envelopes which do not fill a batch yet wait a moment in the ring for more, a pump event it activates
 * itself to continue work in the next turn, the flush timer of a partial batch, and a housekeeping tick (delivery
 * accounting, drop reports, recycling, the stop deadline). Everything runs on the loop thread; the only
 * state shared with rsyslog's workers is the ring, the counters (atomic) and the stop flag (atomic).
 *
 * A stream takes a batch while its send queue (bytes not yet in DATA frames) is below QUEUE_SOFT; when no stream
 * can take one, envelopes stay in the ring, where the newest are kept and the oldest dropped (counted by the ring),
 * and a short poll timer looks again until a queue drains.
 *
 * Delivery: a batch is kept until the router confirmed it read it, by returning its flow-control window
 * (lgr_h2_call_acked) or by ending the stream normally after our half-close; only then it counts in egress. When a
 * stream or its connection ends otherwise, every batch not confirmed goes out again on another stream (resent),
 * before anything newer: nothing is lost with a connection, and what the router read but could not confirm any more
 * arrives twice. A stream whose batches wait for a confirmation while nothing new goes out (a router that returns
 * window only in large steps, as grpc-go does) is replaced after CONFIRM_MS, which confirms them.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "lgr_conf.h"
#include "lgr_env.h"
#include "lgr_grpc.h"
#include "lgr_h2.h"
#include "lgr_v1.h"
#include "omd.h"

#define PATH_BATCH     "/loggregator.v2.Ingress/BatchSender"
#define PATH_PUSHER    "/plumbing.DopplerIngestor/Pusher"
#define QUEUE_SOFT     (128u << 10) /* a stream takes no new batch while this much waits in its send queue */
#define QUEUE_HARD     (16u << 20)  /* lgr_h2's bound: never reached while QUEUE_SOFT is kept */
#define POLL_MS	       5	    /* while a ready stream's queue is over QUEUE_SOFT */
#define CONFIRM_MS     1000u	    /* a stream idle this long with batches not confirmed is replaced */
#define GATHER_MS      2	    /* envelopes that do not fill a batch wait this long for more before a pump */
#define TICK_MS	       250	    /* housekeeping */
#define PUMP_BATCHES   64	    /* batches per loop turn, so sockets are served in between */
#define RECYCLE_WRITES 100000u	    /* a stream is also replaced after this many messages, as the real agent does */
#define RESTART_MIN_MS 250u	    /* first delay before a stream that ended with an error is opened again */
#define RESTART_MAX_MS 30000u
#define LOG_WINDOW_MS  10000u
#define LOG_BURST      3

/*
 * What one send puts on a stream, ready-made: the gRPC messages (v2: one EnvelopeBatch; v1: the EnvelopeData of one
 * envelope's v1 form) back to back in one block after msg_len[], so that sending again after a lost stream costs
 * no encoding.
 */
struct unit {
	struct unit *next;
	uint64_t end; /* the stream's byte count once this unit's messages are queued */
	size_t n;     /* envelopes */
	size_t nmsg;
	size_t msg_len[];
	/* followed by the messages' bytes */
};

struct unitq {
	struct unit *head, *tail;
	size_t envs;
};

struct router {
	struct omd_net *net;
	struct lgr_h2_client *cli;
	char host[256];
	uint16_t port;
	char label[272];
	bool ready;
	bool failing; /* the last attempt failed: the next success is logged */
};

struct slot;

/* One call on one router: the current call of a slot, or one finishing after a recycle. */
struct ocall {
	struct omd_net *net;
	struct slot *slot; /* NULL once detached (half-closed for recycling, or at stop) */
	struct router *r;
	struct lgr_h2_call *call;
	struct unitq q;	 /* sent units the router has not confirmed yet */
	uint64_t pushed; /* bytes queued on the call so far */
	uint64_t writes;
	uint64_t sent_at; /* ms of the last unit queued */
	bool half_closed;
	bool delivered; /* some unit was confirmed: the slot's backoff starts over */
	struct ocall *prev, *next;
};

struct slot {
	struct omd_net *net;
	struct ocall *cur;
	struct event *restart;
	unsigned backoff_ms;
	uint64_t recycle_at;
};

struct omd_net {
	struct omd_net_conf conf;
	char *name;
	struct lgr_logger lg; /* own lines: name, the configured sink */
	pthread_t thread;
	bool thread_started;
	struct event_base *base;
	struct event *ring_ev, *pump_ev, *flush_ev, *tick_ev, *poll_ev, *gather_ev;
	struct router *routers;
	size_t nrouters;
	struct slot *slots;
	size_t nslots;
	struct ocall *calls;
	unsigned rr;
	uint64_t rng;
	struct lgr_pace pace; /* whether envelopes arrive fast enough to wait for full batches */
	struct ocall *steady; /* partial batches go here while it takes them: a trickle keeps its order */
	/* the open batch */
	struct omd_item **open;
	size_t nopen;
	size_t open_bytes;
	/* units waiting for a stream again */
	struct unitq resend;
	/* reports */
	uint64_t ring_dropped_seen;
	uint64_t drop_full, drop_v1, drop_enc; /* since the last report */
	uint64_t drop_reported_at;
	struct lgr_ratelimit lim_router;
	/* stop */
	int stop_requested; /* atomic */
	unsigned budget_ms;
	bool stopping, closing_all, tearing_down;
	uint64_t deadline;
};

static void pump(struct omd_net *net);

struct omd_item *omd_item_new(size_t len)
{
	struct omd_item *it = malloc(sizeof(*it) + (len > 0 ? len : 1));

	if (it != NULL)
		it->len = len;
	return it;
}

void omd_item_free(void *item, void *ud)
{
	(void)ud;
	free(item);
}

/* ---- small helpers ------------------------------------------------------------------------------------------ */

static uint64_t rnd(struct omd_net *net)
{
	net->rng ^= net->rng << 13;
	net->rng ^= net->rng >> 7;
	net->rng ^= net->rng << 17;
	return net->rng;
}

/* ms with +-20 % jitter. */
static uint64_t jitter(struct omd_net *net, uint64_t ms)
{
	return ms * 8 / 10 + (ms > 0 ? rnd(net) % (ms * 4 / 10 + 1) : 0);
}

static void add(uint64_t *ctr, uint64_t n)
{
	if (n > 0)
		__atomic_add_fetch(ctr, n, __ATOMIC_RELAXED);
}

static void timer_in(struct event *ev, uint64_t ms)
{
	struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};

	event_add(ev, &tv);
}

/* ---- units -------------------------------------------------------------------------------------------------- */

/* A unit of n envelopes with room for nmsg messages of bytes bytes in all (lengths and bytes set by the caller). */
static struct unit *unit_new(size_t n, size_t nmsg, size_t bytes)
{
	struct unit *u = malloc(sizeof(*u) + nmsg * sizeof(u->msg_len[0]) + bytes);

	if (u == NULL)
		return NULL;
	u->next = NULL;
	u->end = 0;
	u->n = n;
	u->nmsg = nmsg;
	return u;
}

static uint8_t *unit_bytes(struct unit *u)
{
	return (uint8_t *)&u->msg_len[u->nmsg];
}

/* Frees u and counts its envelopes in ctr. */
static void unit_free(struct unit *u, uint64_t *ctr)
{
	if (ctr != NULL)
		add(ctr, u->n);
	free(u);
}

static void unitq_push(struct unitq *q, struct unit *u)
{
	u->next = NULL;
	if (q->tail != NULL)
		q->tail->next = u;
	else
		q->head = u;
	q->tail = u;
	q->envs += u->n;
}

static void unitq_push_front(struct unitq *q, struct unit *u)
{
	u->next = q->head;
	q->head = u;
	if (q->tail == NULL)
		q->tail = u;
	q->envs += u->n;
}

static struct unit *unitq_pop(struct unitq *q)
{
	struct unit *u = q->head;

	if (u == NULL)
		return NULL;
	q->head = u->next;
	if (q->head == NULL)
		q->tail = NULL;
	q->envs -= u->n;
	u->next = NULL;
	return u;
}

/* Appends all of from to to, keeping their order. */
static void unitq_move(struct unitq *to, struct unitq *from)
{
	struct unit *u;

	while ((u = unitq_pop(from)) != NULL)
		unitq_push(to, u);
}

/* Gives up every unit of q: counted as dropped. Returns the envelopes given up. */
static uint64_t unitq_drop(struct omd_net *net, struct unitq *q)
{
	uint64_t n = q->envs;
	struct unit *u;

	while ((u = unitq_pop(q)) != NULL)
		unit_free(u, &net->conf.ctr->dropped);
	return n;
}

/* ---- delivery accounting ------------------------------------------------------------------------------------ */

/* Units whose bytes the router confirmed up to acked are delivered: egress. */
static void settle(struct ocall *oc, uint64_t acked)
{
	while (oc->q.head != NULL && oc->q.head->end <= acked) {
		unit_free(unitq_pop(&oc->q), &oc->net->conf.ctr->egress);
		oc->delivered = true;
	}
}

/* ---- sending ------------------------------------------------------------------------------------------------ */

static size_t varint_len(size_t v)
{
	size_t n = 1;

	for (; v >= 0x80; v >>= 7)
		n++;
	return n;
}

static uint8_t *put_varint(uint8_t *p, size_t v)
{
	for (; v >= 0x80; v >>= 7)
		*p++ = (uint8_t)(v | 0x80);
	*p++ = (uint8_t)v;
	return p;
}

/* Bytes of len bytes as a field-1 record: of an EnvelopeBatch (envelopes), or of an EnvelopeData (payload). */
static size_t record_len(size_t len)
{
	return 1 + varint_len(len) + len;
}

static uint8_t *put_record(uint8_t *p, const uint8_t *data, size_t len)
{
	*p++ = 0x0a;
	p = put_varint(p, len);
	memcpy(p, data, len);
	return p + len;
}

/* v2: items[0..k) as one EnvelopeBatch of bytes bytes (their records). NULL when out of memory. */
static struct unit *unit_v2(struct omd_item *const *items, size_t k, size_t bytes)
{
	struct unit *u = unit_new(k, 1, bytes);
	uint8_t *p;

	if (u == NULL)
		return NULL;
	u->msg_len[0] = bytes;
	p = unit_bytes(u);
	for (size_t i = 0; i < k; i++)
		p = put_record(p, items[i]->data, items[i]->len);
	return u;
}

/* Collects the encoded v1 envelopes of one v2 envelope's v1 form. */
struct v1_parts {
	uint8_t *enc[64];
	size_t len[64];
	size_t n;
};

static int v1_sink(Events__Envelope *v1, void *ud)
{
	struct v1_parts *p = ud;
	int rc = LGR_ELIMIT;

	if (p->n < sizeof(p->enc) / sizeof(p->enc[0])) {
		rc = lgr_v1_encode(v1, &p->enc[p->n], &p->len[p->n]);
		if (rc == LGR_OK)
			p->n++;
	}
	lgr_v1_free(v1);
	return rc;
}

/*
 * v1: the v1 form of one envelope as EnvelopeData messages {payload = 1: a v1 envelope}. LGR_OK and *out;
 * LGR_EUNSUPPORTED (no v1 form: an event), LGR_ENOMEM, or another error of decoding or converting.
 */
static int unit_v1(const struct omd_item *it, struct unit **out)
{
	struct lgr_env *env = NULL;
	struct v1_parts parts;
	struct unit *u;
	size_t bytes = 0, i;
	uint8_t *p;
	int rc;

	*out = NULL;
	memset(&parts, 0, sizeof(parts));
	rc = lgr_env_decode(it->data, it->len, NULL, &env);
	if (rc == LGR_OK)
		rc = lgr_v1_from_v2(env, v1_sink, &parts);
	if (rc != LGR_OK)
		goto out;
	for (i = 0; i < parts.n; i++)
		bytes += record_len(parts.len[i]);
	rc = LGR_ENOMEM;
	u = unit_new(1, parts.n, bytes);
	if (u == NULL)
		goto out;
	p = unit_bytes(u);
	for (i = 0; i < parts.n; i++) {
		u->msg_len[i] = record_len(parts.len[i]);
		p = put_record(p, parts.enc[i], parts.len[i]);
	}
	*out = u;
	rc = LGR_OK;
out:
	for (i = 0; i < parts.n; i++)
		free(parts.enc[i]);
	lgr_env_unref(env);
	return rc;
}

/* Queues unit u's messages on oc. */
static int send_unit(struct ocall *oc, struct unit *u)
{
	const uint8_t *p = unit_bytes(u);
	int rc = LGR_OK;

	for (size_t i = 0; i < u->nmsg && rc == LGR_OK; i++) {
		rc = lgr_h2_call_send(oc->call, p, u->msg_len[i]);
		if (rc == LGR_OK)
			oc->pushed += LGR_GRPC_PREFIX + u->msg_len[i];
		p += u->msg_len[i];
	}
	if (rc == LGR_OK) {
		u->end = oc->pushed;
		oc->writes++;
		oc->sent_at = lgr_now_ms();
	}
	return rc;
}

static bool takes_batches(const struct ocall *oc)
{
	return oc != NULL && oc->r->ready && !oc->half_closed && lgr_h2_call_queued(oc->call) < QUEUE_SOFT;
}

/*
 * The stream partial batches go to: the same one as long as it takes batches, else one with nothing queued (or
 * NULL). A router reads each stream in order, so envelopes that trickle in leave in the order they came, which
 * random streams per small batch would not keep.
 */
static struct ocall *steady_stream(struct omd_net *net)
{
	uint64_t n = 0;

	if (takes_batches(net->steady))
		return net->steady;
	net->steady = NULL;
	for (size_t i = 0; i < net->nslots; i++) {
		struct ocall *oc = net->slots[i].cur;

		if (takes_batches(oc) && lgr_h2_call_queued(oc->call) == 0 && rnd(net) % ++n == 0)
			net->steady = oc;
	}
	return net->steady;
}

/*
 * Whether a partial batch may go now instead of waiting to fill: unless envelopes arrive fast (lgr_pace), when
 * the steady stream has nothing queued, so that at low rates an envelope leaves at once rather than after the flush
 * interval. No timer is involved: timers fire on the kernel's tick, up to 4 ms late on some machines.
 */
static bool partial_may_go(struct omd_net *net)
{
	struct ocall *oc;

	if (net->pace.busy)
		return false;
	oc = steady_stream(net);
	return oc != NULL && lgr_h2_call_queued(oc->call) == 0;
}

/* Some ready stream has a long queue (a router reads slowly): its draining has to be watched for. */
static bool any_full(struct omd_net *net)
{
	for (size_t i = 0; i < net->nslots; i++) {
		struct ocall *oc = net->slots[i].cur;

		if (oc != NULL && oc->r->ready && !oc->half_closed && !takes_batches(oc))
			return true;
	}
	return false;
}

/* A random stream that takes a batch now, or NULL. */
static struct ocall *pick(struct omd_net *net)
{
	struct ocall *chosen = NULL;
	uint64_t n = 0;

	/* one pass, each candidate kept with probability 1/n: a uniform choice without a list */
	for (size_t i = 0; i < net->nslots; i++) {
		if (takes_batches(net->slots[i].cur) && rnd(net) % ++n == 0)
			chosen = net->slots[i].cur;
	}
	return chosen;
}

/*
 * Sends u on a stream (a partial batch on the steady one, a full one at random), or keeps it for later (front of the
 * resend queue). False when no stream took it.
 */
static bool dispatch(struct omd_net *net, struct unit *u, bool partial)
{
	struct ocall *oc = partial ? steady_stream(net) : NULL;

	if (oc == NULL)
		oc = pick(net);

	if (oc != NULL && send_unit(oc, u) == LGR_OK) {
		unitq_push(&oc->q, u);
		return true;
	}
	/* no stream takes it now (none ready, or the stream refused: full or ended): another one takes it later */
	unitq_push_front(&net->resend, u);
	return false;
}

/*
 * Takes the first envelopes of the open batch (up to OMD_BATCH_MAX_BYTES; one with v1) as a unit into *out.
 * LGR_OK, with *out NULL when the envelope was given up (no v1 form, or not convertible: counted, reported by the
 * next tick); LGR_ENOMEM, the open batch unchanged.
 */
static int take_open(struct omd_net *net, struct unit **out)
{
	size_t k = 0, bytes = 0, rlen;
	int rc;

	*out = NULL;
	if (net->conf.v1) {
		k = 1;
		bytes = record_len(net->open[0]->len);
		rc = unit_v1(net->open[0], out);
		if (rc == LGR_ENOMEM)
			return rc;
		if (rc != LGR_OK) {
			if (rc == LGR_EUNSUPPORTED)
				net->drop_v1++;
			else
				net->drop_enc++;
			add(&net->conf.ctr->dropped, 1);
		}
	} else {
		while (k < net->nopen) {
			rlen = record_len(net->open[k]->len);
			if (k > 0 && bytes + rlen > OMD_BATCH_MAX_BYTES)
				break;
			bytes += rlen;
			k++;
		}
		*out = unit_v2(net->open, k, bytes);
		if (*out == NULL)
			return LGR_ENOMEM;
	}
	for (size_t i = 0; i < k; i++)
		omd_item_free(net->open[i], NULL);
	lgr_pace_count(&net->pace, k, net->conf.batch_max, lgr_now_us());
	net->nopen -= k;
	memmove(net->open, net->open + k, net->nopen * sizeof(net->open[0]));
	net->open_bytes = net->open_bytes > bytes ? net->open_bytes - bytes : 0;
	if (net->nopen == 0)
		event_del(net->flush_ev);
	return LGR_OK;
}

/* Fills the open batch from the ring. Returns true when the ring had fewer than asked (it is empty). */
static bool fill_open(struct omd_net *net)
{
	size_t want = net->conf.batch_max - net->nopen, got, i;
	bool was_empty = net->nopen == 0;

	if (want == 0)
		return false;
	got = lgr_ring_pop(net->conf.ring, (void **)(net->open + net->nopen), want);
	for (i = 0; i < got; i++)
		net->open_bytes += record_len(net->open[net->nopen + i]->len);
	net->nopen += got;
	if (was_empty && net->nopen > 0)
		timer_in(net->flush_ev, net->conf.flush_ms);
	return got < want;
}

/*
 * Moves data towards the streams: resends first, then full batches from the ring, then (on the flush timer, at
 * stop, or when partial_may_go) the partial batch. Bounded per turn; schedules itself again when it stopped for that
 * reason.
 */
static void pump_work(struct omd_net *net, bool flush)
{
	unsigned budget = PUMP_BATCHES;
	bool ring_empty = false, partial;
	struct unit *u;

	while (budget > 0) {
		if (net->resend.head != NULL) {
			if (!dispatch(net, unitq_pop(&net->resend), false))
				break;
			budget--;
			continue;
		}
		if (pick(net) == NULL)
			break;
		if (!ring_empty && net->nopen < net->conf.batch_max && net->open_bytes < OMD_BATCH_MAX_BYTES)
			ring_empty = fill_open(net);
		if (net->nopen == 0)
			break;
		partial = net->nopen < net->conf.batch_max && net->open_bytes < OMD_BATCH_MAX_BYTES;
		if (partial && !flush && !net->stopping && !partial_may_go(net))
			break;
		if (take_open(net, &u) != LGR_OK)
			break; /* out of memory: the flush timer tries again */
		if (u != NULL)
			dispatch(net, u, partial);
		budget--;
		if (net->nopen == 0 && ring_empty)
			break;
	}
	if (budget == 0)
		event_active(net->pump_ev, EV_WRITE, 0);
	else if (any_full(net) && !event_pending(net->poll_ev, EV_TIMEOUT, NULL))
		timer_in(net->poll_ev, POLL_MS); /* no event tells when a queue drains below QUEUE_SOFT: look again */
}

/* ---- streams ------------------------------------------------------------------------------------------------ */

static void on_call_close(struct lgr_h2_call *call, int status, const char *message, void *ud);

static void on_call_acked(struct lgr_h2_call *call, uint64_t acked, void *ud)
{
	(void)call;
	settle(ud, acked);
}

static const struct lgr_h2_call_handlers call_handlers = {
	.on_acked = on_call_acked,
	.on_close = on_call_close,
};

static void ocall_unlink(struct omd_net *net, struct ocall *oc)
{
	if (net->steady == oc)
		net->steady = NULL;
	if (oc->prev != NULL)
		oc->prev->next = oc->next;
	else
		net->calls = oc->next;
	if (oc->next != NULL)
		oc->next->prev = oc->prev;
}

/* A ready router at random, else the next one in turn (so attempts go round while none is ready). */
static struct router *choose_router(struct omd_net *net)
{
	struct router *chosen = NULL;
	uint64_t n = 0;

	for (size_t i = 0; i < net->nrouters; i++) {
		if (net->routers[i].ready && rnd(net) % ++n == 0)
			chosen = &net->routers[i];
	}
	return chosen != NULL ? chosen : &net->routers[net->rr++ % net->nrouters];
}

static void slot_retry(struct slot *s, bool failed)
{
	struct omd_net *net = s->net;
	uint64_t ms = 0;

	if (failed) {
		s->backoff_ms = s->backoff_ms == 0 ? RESTART_MIN_MS : s->backoff_ms * 2;
		if (s->backoff_ms > RESTART_MAX_MS)
			s->backoff_ms = RESTART_MAX_MS;
		ms = jitter(net, s->backoff_ms);
	}
	timer_in(s->restart, ms);
}

static void slot_open(struct slot *s)
{
	struct omd_net *net = s->net;
	struct ocall *oc;
	int rc;

	if (s->cur != NULL || net->closing_all || net->tearing_down)
		return;
	oc = calloc(1, sizeof(*oc));
	if (oc == NULL) {
		slot_retry(s, true);
		return;
	}
	oc->net = net;
	oc->slot = s;
	oc->r = choose_router(net);
	rc = lgr_h2_client_call(oc->r->cli, net->conf.v1 ? PATH_PUSHER : PATH_BATCH, &call_handlers, oc, &oc->call);
	if (rc != LGR_OK) {
		lgr_logger_say(&net->lg, &net->lim_router, LGR_LOG_WARNING, "cannot open a stream to %s: %s",
			oc->r->label, lgr_strerror(rc));
		free(oc);
		slot_retry(s, true);
		return;
	}
	oc->next = net->calls;
	if (net->calls != NULL)
		net->calls->prev = oc;
	net->calls = oc;
	s->cur = oc;
	s->recycle_at = lgr_now_ms() + jitter(net, net->conf.recycle_ms);
}

static void on_restart(evutil_socket_t fd, short what, void *ud)
{
	struct slot *s = ud;

	(void)fd;
	(void)what;
	slot_open(s);
	pump(s->net);
}

/* No more batches on oc: it finishes what it has and ends; its slot gets a new stream. */
static void detach(struct ocall *oc)
{
	struct slot *s = oc->slot;

	if (s != NULL && s->cur == oc)
		s->cur = NULL;
	oc->slot = NULL;
	if (!oc->half_closed) {
		oc->half_closed = true;
		lgr_h2_call_close_send(oc->call);
	}
}

static void on_call_close(struct lgr_h2_call *call, int status, const char *message, void *ud)
{
	struct ocall *oc = ud;
	struct omd_net *net = oc->net;
	struct slot *s = oc->slot;
	bool normal =
		status == LGR_GRPC_OK || (status == LGR_GRPC_UNKNOWN && strcmp(message, "EOF") == 0 && oc->half_closed);

	/* a normal end after our half-close: the router read everything up to it */
	settle(oc, normal && oc->half_closed ? oc->pushed : lgr_h2_call_acked(call));
	if (net->tearing_down) {
		unitq_drop(net, &oc->q);
	} else if (oc->q.head != NULL) {
		/* what the router did not confirm goes out again on another stream, before anything newer */
		struct unitq back = {0};

		add(&net->conf.ctr->resent, oc->q.envs);
		unitq_move(&back, &oc->q);
		unitq_move(&back, &net->resend);
		net->resend = back;
	}
	if (!normal && !net->tearing_down && status != LGR_GRPC_UNAVAILABLE && status != LGR_GRPC_CANCELLED) {
		add(&net->conf.ctr->errors, 1);
		lgr_logger_say(&net->lg, &net->lim_router, LGR_LOG_WARNING, "%s: stream ended with %s: %s",
			oc->r->label, lgr_grpc_status_name(status), message);
	}
	if (s != NULL && s->cur == oc) {
		s->cur = NULL;
		if (oc->delivered)
			s->backoff_ms = 0;
		/* a stream the router ended on its own, even with OK, is reopened after a backoff: no tight loop */
		if (!net->tearing_down)
			slot_retry(s, !normal || !oc->half_closed);
	}
	ocall_unlink(net, oc);
	free(oc);
	if (!net->tearing_down)
		event_active(net->pump_ev, EV_WRITE, 0);
}

/* ---- routers ------------------------------------------------------------------------------------------------ */

static void on_state(struct lgr_h2_client *cli, enum lgr_h2_state state, const char *why, void *ud)
{
	struct router *r = ud;
	struct omd_net *net = r->net;

	(void)cli;
	if (state == LGR_H2_READY) {
		r->ready = true;
		add(&net->conf.ctr->connects, 1);
		if (r->failing)
			lgr_logger_say(&net->lg, &net->lim_router, LGR_LOG_INFO, "%s: connected again", r->label);
		r->failing = false;
		/* streams waiting for a restart, or parked on a router that is down, move here now */
		for (size_t i = 0; i < net->nslots; i++) {
			struct slot *s = &net->slots[i];

			if (s->cur == NULL && !net->closing_all) {
				event_del(s->restart);
				slot_open(s);
			} else if (s->cur != NULL && s->cur->r->failing && s->cur->q.head == NULL) {
				struct ocall *oc = s->cur;

				lgr_h2_call_cancel(oc->call);
				s->cur = NULL;
				ocall_unlink(net, oc);
				free(oc);
				slot_open(s);
			}
		}
	} else {
		if (state == LGR_H2_TRANSIENT_FAILURE) {
			add(&net->conf.ctr->errors, 1);
			lgr_logger_say(&net->lg, &net->lim_router, LGR_LOG_WARNING, "%s: %s: %s", r->label,
				r->ready ? "connection lost" : "unreachable", why);
			r->failing = true;
		}
		r->ready = false;
	}
	if (!net->tearing_down)
		event_active(net->pump_ev, EV_WRITE, 0);
}

/* ---- stop --------------------------------------------------------------------------------------------------- */

static void drain_one(void *item, void *ud)
{
	struct omd_net *net = ud;

	omd_item_free(item, NULL);
	add(&net->conf.ctr->dropped, 1);
}

/* The end: streams cancelled, everything still held given up (counted), the loop told to exit. */
static void teardown(struct omd_net *net)
{
	uint64_t before = __atomic_load_n(&net->conf.ctr->dropped, __ATOMIC_RELAXED), lost;

	if (net->tearing_down)
		return;
	net->tearing_down = true;
	for (size_t i = 0; i < net->nrouters; i++) {
		lgr_h2_client_free(net->routers[i].cli); /* every call's on_close runs now */
		net->routers[i].cli = NULL;
	}
	unitq_drop(net, &net->resend);
	for (size_t i = 0; i < net->nopen; i++)
		drain_one(net->open[i], net);
	net->nopen = 0;
	lgr_ring_drain(net->conf.ring, drain_one, net);
	lost = __atomic_load_n(&net->conf.ctr->dropped, __ATOMIC_RELAXED) - before;
	if (lost > 0)
		lgr_logger_put(&net->lg, LGR_LOG_WARNING,
			"%" PRIu64 " envelopes not delivered before the shutdown deadline were dropped", lost);
	event_base_loopexit(net->base, NULL);
}

/* At stop: once everything is handed to streams, half-close them all; once they all ended, tear down. */
static void stop_progress(struct omd_net *net)
{
	struct lgr_ring_stats st;

	if (!net->stopping || net->tearing_down)
		return;
	if (lgr_now_ms() >= net->deadline) {
		teardown(net);
		return;
	}
	lgr_ring_stats(net->conf.ring, &st);
	if (!net->closing_all && st.len == 0 && net->nopen == 0 && net->resend.head == NULL) {
		net->closing_all = true;
		for (size_t i = 0; i < net->nslots; i++) {
			event_del(net->slots[i].restart);
			if (net->slots[i].cur != NULL)
				detach(net->slots[i].cur);
		}
	}
	if (net->closing_all && net->calls == NULL)
		teardown(net);
}

static void pump(struct omd_net *net)
{
	if (net->tearing_down)
		return;
	pump_work(net, false);
	stop_progress(net);
}

/* ---- events ------------------------------------------------------------------------------------------------- */

/*
 * The ring turned non-empty (or the stop was requested). Envelopes that do not fill a batch yet are left in the
 * ring for GATHER_MS: the ring signals only its empty -> non-empty turn, so taking each envelope as it comes would
 * wake this thread (and make the producer write the eventfd) for every few envelopes.
 */
static void on_ring(evutil_socket_t fd, short what, void *ud)
{
	struct omd_net *net = ud;
	struct lgr_ring_stats st;

	(void)fd;
	(void)what;
	lgr_ring_fd_reset(net->conf.ring);
	if (!net->stopping && __atomic_load_n(&net->stop_requested, __ATOMIC_ACQUIRE)) {
		net->stopping = true;
		net->deadline = lgr_now_ms() + net->budget_ms;
	}
	if (!net->stopping && net->resend.head == NULL) {
		if (event_pending(net->gather_ev, EV_TIMEOUT, NULL))
			return;
		lgr_ring_stats(net->conf.ring, &st);
		if (st.len + net->nopen < net->conf.batch_max && !partial_may_go(net)) {
			timer_in(net->gather_ev, GATHER_MS);
			return;
		}
	}
	pump(net);
}

static void on_pump(evutil_socket_t fd, short what, void *ud)
{
	(void)fd;
	(void)what;
	pump(ud);
}

static void on_flush(evutil_socket_t fd, short what, void *ud)
{
	struct omd_net *net = ud;

	(void)fd;
	(void)what;
	if (net->tearing_down)
		return;
	pump_work(net, true);
	if (net->nopen > 0 && !event_pending(net->flush_ev, EV_TIMEOUT, NULL))
		timer_in(net->flush_ev, net->conf.flush_ms);
	stop_progress(net);
}

/* Reports the drops since the last report, at most once per LOG_WINDOW_MS. */
static void report_drops(struct omd_net *net, uint64_t now)
{
	struct lgr_ring_stats st;

	lgr_ring_stats(net->conf.ring, &st);
	net->drop_full += st.dropped - net->ring_dropped_seen;
	net->ring_dropped_seen = st.dropped;
	if (net->drop_full + net->drop_v1 + net->drop_enc == 0 || now - net->drop_reported_at < LOG_WINDOW_MS)
		return;
	net->drop_reported_at = now;
	if (net->drop_full > 0)
		lgr_logger_put(&net->lg, LGR_LOG_WARNING,
			"%" PRIu64
			" envelopes dropped, oldest first: buffer.size (%zu) full, routers slow or unreachable",
			net->drop_full, st.capacity);
	if (net->drop_v1 > 0)
		lgr_logger_put(&net->lg, LGR_LOG_WARNING, "%" PRIu64 " event envelopes dropped: they have no v1 form",
			net->drop_v1);
	if (net->drop_enc > 0)
		lgr_logger_put(&net->lg, LGR_LOG_WARNING, "%" PRIu64 " envelopes dropped: they could not be encoded",
			net->drop_enc);
	net->drop_full = net->drop_v1 = net->drop_enc = 0;
}

static void on_tick(evutil_socket_t fd, short what, void *ud)
{
	struct omd_net *net = ud;
	uint64_t now = lgr_now_ms();

	(void)fd;
	(void)what;
	if (net->tearing_down)
		return;
	report_drops(net, now);
	/*
	 * recycling: a stream past its time (or write count) is half-closed and replaced, and so is one whose batches
	 * wait for a confirmation while nothing else goes out on it (the router's normal end confirms them)
	 */
	for (size_t i = 0; i < net->nslots && !net->stopping; i++) {
		struct ocall *oc = net->slots[i].cur;
		bool unconfirmed = oc != NULL && oc->q.head != NULL && lgr_h2_call_queued(oc->call) == 0 &&
				   now - oc->sent_at >= CONFIRM_MS;

		if (oc != NULL && oc->r->ready &&
			(now >= net->slots[i].recycle_at || oc->writes >= RECYCLE_WRITES || unconfirmed)) {
			detach(oc);
			slot_open(&net->slots[i]);
		}
	}
	pump(net);
}

static void *net_main(void *arg)
{
	struct omd_net *net = arg;

	event_base_dispatch(net->base);
	return NULL;
}

/* ---- lifecycle ---------------------------------------------------------------------------------------------- */

static int parse_router(const char *spec, struct router *r)
{
	if (lgr_conf_split_hostport(spec, r->host, sizeof(r->host), &r->port) != LGR_OK)
		return LGR_EINVAL;
	snprintf(r->label, sizeof(r->label), "router %s", spec);
	return LGR_OK;
}

static int routers_new(struct omd_net *net, const char *const *specs)
{
	struct lgr_h2_client_config cc;
	int rc;

	for (size_t i = 0; i < net->nrouters; i++) {
		struct router *r = &net->routers[i];

		r->net = net;
		rc = parse_router(specs[i], r);
		if (rc != LGR_OK)
			return rc;
		memset(&cc, 0, sizeof(cc));
		cc.host = r->host;
		cc.port = r->port;
		cc.ssl_ctx = net->conf.ssl_ctx;
		cc.server_name = net->conf.ssl_ctx != NULL ? net->conf.server_name : NULL;
		cc.max_send_queue = QUEUE_HARD;
		cc.keepalive_ms = LGR_H2_DEFAULT_KEEPALIVE_MS;
		cc.on_state = on_state;
		cc.ud = r;
		cc.name = net->name;
		rc = lgr_h2_client_new(net->base, &cc, &r->cli);
		if (rc != LGR_OK)
			return rc;
	}
	return LGR_OK;
}

static int events_new(struct omd_net *net)
{
	net->ring_ev = event_new(net->base, lgr_ring_fd(net->conf.ring), EV_READ | EV_PERSIST, on_ring, net);
	net->pump_ev = event_new(net->base, -1, 0, on_pump, net);
	net->flush_ev = evtimer_new(net->base, on_flush, net);
	net->poll_ev = evtimer_new(net->base, on_pump, net);
	net->gather_ev = evtimer_new(net->base, on_pump, net);
	net->tick_ev = event_new(net->base, -1, EV_PERSIST, on_tick, net);
	if (net->ring_ev == NULL || net->pump_ev == NULL || net->flush_ev == NULL || net->poll_ev == NULL ||
		net->tick_ev == NULL || net->gather_ev == NULL || event_add(net->ring_ev, NULL) != 0)
		return LGR_ENOMEM;
	timer_in(net->tick_ev, TICK_MS);
	for (size_t i = 0; i < net->nslots; i++) {
		net->slots[i].net = net;
		net->slots[i].restart = evtimer_new(net->base, on_restart, &net->slots[i]);
		if (net->slots[i].restart == NULL)
			return LGR_ENOMEM;
		timer_in(net->slots[i].restart, 0); /* the first streams open from the loop */
	}
	return LGR_OK;
}

static void net_release(struct omd_net *net)
{
	if (!net->tearing_down) {
		/* never started, or failed to: nothing ran on the loop, so freeing here is the loop's own teardown */
		net->tearing_down = true;
		for (size_t i = 0; i < net->nrouters && net->routers != NULL; i++)
			lgr_h2_client_free(net->routers[i].cli);
		unitq_drop(net, &net->resend);
		for (size_t i = 0; i < net->nopen; i++)
			drain_one(net->open[i], net);
	}
	for (size_t i = 0; i < net->nslots && net->slots != NULL; i++) {
		if (net->slots[i].restart != NULL)
			event_free(net->slots[i].restart);
	}
	if (net->ring_ev != NULL)
		event_free(net->ring_ev);
	if (net->pump_ev != NULL)
		event_free(net->pump_ev);
	if (net->flush_ev != NULL)
		event_free(net->flush_ev);
	if (net->poll_ev != NULL)
		event_free(net->poll_ev);
	if (net->tick_ev != NULL)
		event_free(net->tick_ev);
	if (net->gather_ev != NULL)
		event_free(net->gather_ev);
	if (net->base != NULL)
		event_base_free(net->base);
	free(net->routers);
	free(net->slots);
	free(net->open);
	free(net->name);
	free(net);
}

int omd_net_new(const struct omd_net_conf *conf, struct omd_net **out)
{
	struct omd_net *net;
	int rc = LGR_EINVAL;

	*out = NULL;
	if (conf->nrouters == 0 || conf->streams == 0 || conf->batch_max == 0 || conf->ring == NULL ||
		lgr_ring_fd(conf->ring) < 0 || conf->ctr == NULL)
		return LGR_EINVAL;
	net = calloc(1, sizeof(*net));
	if (net == NULL)
		return LGR_ENOMEM;
	net->conf = *conf;
	net->conf.routers = NULL; /* copied into the routers below */
	net->lim_router = (struct lgr_ratelimit)LGR_RATELIMIT_INIT(LOG_WINDOW_MS, LOG_BURST);
	if (net->conf.recycle_ms == 0)
		net->conf.recycle_ms = OMD_RECYCLE_DEFAULT_MS;
	net->rng = (uint64_t)time(NULL) ^ ((uint64_t)(uintptr_t)net << 16) ^ 0x9e3779b97f4a7c15ull;
	rc = LGR_ENOMEM;
	net->name = strdup(conf->name != NULL ? conf->name : "omdoppler");
	net->lg = (struct lgr_logger){net->name, conf->log, conf->log_ud};
	net->nrouters = conf->nrouters;
	net->routers = calloc(conf->nrouters, sizeof(*net->routers));
	net->nslots = conf->streams;
	net->slots = calloc(conf->streams, sizeof(*net->slots));
	net->open = calloc(conf->batch_max, sizeof(*net->open));
	net->base = event_base_new();
	if (net->name == NULL || net->routers == NULL || net->slots == NULL || net->open == NULL || net->base == NULL)
		goto out;
	rc = routers_new(net, conf->routers);
	if (rc != LGR_OK)
		goto out;
	rc = events_new(net);
	if (rc != LGR_OK)
		goto out;
	if (lgr_thread_create(&net->thread, net_main, net) != 0) {
		lgr_log(LGR_LOG_ERR, "%s: cannot start the network thread", net->name);
		rc = LGR_EIO;
		goto out;
	}
	net->thread_started = true;
	*out = net;
	net = NULL;
	rc = LGR_OK;
out:
	if (net != NULL)
		net_release(net);
	return rc;
}

void omd_net_free(struct omd_net *net, unsigned budget_ms)
{
	if (net == NULL)
		return;
	if (net->thread_started) {
		net->budget_ms = budget_ms;
		__atomic_store_n(&net->stop_requested, 1, __ATOMIC_RELEASE);
		lgr_ring_wake(net->conf.ring);
		pthread_join(net->thread, NULL);
	}
	net_release(net);
}
