/*
 * omf_egress.c: the egress of one omfirehose action (see omf.h): shared envelopes and their cached forms,
 * subscribers (ring, batching, slow-consumer accounting), the gRPC sinks and the Egress server, and the network
 * thread that runs them.
 *
 * The loop reacts to: the wake eventfd (a subscriber's ring turned non-empty, or the stop request), each
 * subscriber's pump event (activated by the loop itself to continue in the next turn, or by omf_sub_resume), each
 * subscriber's flush timer (a partial batch waited flush_ms), and a housekeeping tick (drop reports). The only
 * state shared with rsyslog's workers is the registry (its own lock), the rings (their own locks), the per
 * subscriber pending flags and drop counts, the wake flag and the counters (all atomic).
 *
 * Waking: a ring calls sub_notify() when it turns non-empty; that marks the subscriber pending and writes the
 * eventfd only if no wake is outstanding, so a burst of pushes into many rings costs one write. The loop clears
 * the outstanding flag before it scans the pending flags (both sequentially consistent), so a push that the scan
 * missed always writes the eventfd again.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/eventfd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "lgr_agent.h"
#include "lgr_grpc.h"
#include "lgr_h2.h"
#include "lgr_ring.h"
#include "lgr_tls.h"
#include "lgr_v1.h"
#include "omf.h"
#include "plumbing.pb-c.h"

#define TICK_MS	      500   /* drop reports */
#define PUMP_ROUNDS   16    /* batches per subscriber per loop turn, so sockets are served in between */
#define LOG_WINDOW_MS 10000 /* own log lines: at most LOG_BURST per window */
#define LOG_BURST     5
#define STOP_SLACK_MS 1500 /* after the grace the transport takes at most one more second to close */
/* The network thread's requested scheduler slice: at 250,000 envelopes/s a subscriber's default ring of 1000 lasts
 * 4 ms, as long as a computing thread may run before the kernel's next tick; see lgr_thread_short_slice */
#define SLICE_US   100
#define CREDIT_MAX (OMF_SEND_QUEUE / 128) /* envelopes a ring keeps beyond subscriber.buffer on credit, at most */
#define COPY_MAX   1024 /* records up to this size are copied into a subscriber's message, larger ones referenced */

/* ---- small helpers ---------------------------------------------------------------------------------------------- */

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

/* Appends a protobuf varint; returns its length (at most 10). */
static size_t put_varint(uint8_t *p, uint64_t v)
{
	size_t n = 0;

	while (v >= 0x80) {
		p[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	p[n++] = (uint8_t)v;
	return n;
}

/* ---- shared envelopes ------------------------------------------------------------------------------------------- */

struct omf_env {
	int refs; /* atomic */
	/* set at creation, immutable: the encoding and what selectors read of it, both inside this allocation; the
	 * encoding follows its record header in an EnvelopeBatch (field 1, its length), so that a batch takes both at
	 * once */
	const uint8_t *wire;
	size_t wire_len;
	uint8_t rec_hdr; /* the header's bytes, just before wire */
	struct lgr_select_key key;
	struct lgr_env *env; /* atomic: the decoded envelope, from creation or decoded on first use */
	/* network thread only */
	bool form_done[2];
	struct lgr_env *form[2]; /* [0]: use_preferred_tags false, [1]: true; a reference of its own */
	bool v1_done;
	uint8_t *v1;
	size_t v1_len;
	struct omf_home *home; /* NULL: freed by whichever thread drops the last reference */
	struct omf_env *next;  /* in its home's stack of returned blocks */
};

/*
 * Where the blocks one worker thread makes go back to, so that the worker frees them itself. The network thread
 * drops the last reference of nearly every published envelope; glibc's free of a block another thread allocated
 * takes that thread's arena lock, which the worker holds for its own allocations most of the time, and the two then
 * meet in the kernel (futex waits and wakes, thousands a second at full rate). Instead a dead block is pushed onto
 * its home's stack (lock-free) and the worker frees whatever is there before its next envelope.
 *
 * refs counts the worker and every block not yet returned; whoever brings it to 0 (the worker leaving, or the last
 * block returned after it left) frees what the stack still holds and the home.
 */
struct omf_home {
	struct omf_env *returned; /* atomic */
	int refs;		  /* atomic */
};

int omf_home_new(struct omf_home **out)
{
	*out = calloc(1, sizeof(**out));
	if (*out == NULL)
		return LGR_ENOMEM;
	(*out)->refs = 1;
	return LGR_OK;
}

void omf_home_collect(struct omf_home *h)
{
	struct omf_env *e, *next;

	if (h == NULL || __atomic_load_n(&h->returned, __ATOMIC_RELAXED) == NULL)
		return;
	for (e = __atomic_exchange_n(&h->returned, NULL, __ATOMIC_ACQUIRE); e != NULL; e = next) {
		next = e->next;
		free(e);
	}
}

static void home_unref(struct omf_home *h)
{
	if (__atomic_sub_fetch(&h->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	omf_home_collect(h); /* nothing else can reach h now */
	free(h);
}

void omf_home_leave(struct omf_home *h)
{
	if (h == NULL)
		return;
	omf_home_collect(h);
	home_unref(h);
}

void omf_env_set_home(struct omf_env *e, struct omf_home *h)
{
	if (e == NULL || h == NULL || e->home != NULL)
		return;
	__atomic_add_fetch(&h->refs, 1, __ATOMIC_RELAXED);
	e->home = h;
}

/* A dead block back to its home; it is not touched after the push (the worker may free it at once). */
static void home_return(struct omf_env *e)
{
	struct omf_home *h = e->home;

	e->next = __atomic_load_n(&h->returned, __ATOMIC_RELAXED);
	while (!__atomic_compare_exchange_n(&h->returned, &e->next, e, true, __ATOMIC_RELEASE, __ATOMIC_RELAXED))
		;
	home_unref(h);
}

/* Bytes to keep a copy of s with its NUL ("" for NULL). */
static size_t str_size(const char *s)
{
	return (s != NULL ? strlen(s) : 0) + 1;
}

/* Copies s (NULL as "") to *p and advances *p past it; returns the copy. */
static const char *str_put(char **p, const char *s)
{
	size_t n = str_size(s) - 1;
	char *copy = *p;

	if (n > 0)
		memcpy(copy, s, n);
	copy[n] = '\0';
	*p += n + 1;
	return copy;
}

/* Bytes of the EnvelopeBatch record header (key of field 1, varint length) for an encoding of wire_len bytes. */
static size_t rec_hdr_size(size_t wire_len)
{
	uint8_t scratch[10];

	return 1 + put_varint(scratch, wire_len);
}

/* Writes the record header at p, then points e at the encoding after it; returns where the encoding goes. */
static uint8_t *rec_place(struct omf_env *e, uint8_t *p, size_t wire_len)
{
	p[0] = 0x0a;
	e->rec_hdr = (uint8_t)(1 + put_varint(p + 1, wire_len));
	e->wire = p + e->rec_hdr;
	e->wire_len = wire_len;
	return p + e->rec_hdr;
}

/*
 * One allocation holds the omf_env, the gauge names' pointers, the encoding and the key's strings, so that a
 * published envelope costs one free, whichever thread frees it (its worker, through its home, or the network thread).
 * env is encoded straight into the block.
 */
static struct omf_env *env_block(const struct lgr_env *env)
{
	size_t wire_len = lgr_env_packed_size(env);
	const Loggregator__V2__Envelope *pb = env->pb;
	const Loggregator__V2__Gauge *g = lgr_env_type(env) == LGR_ENV_GAUGE ? pb->gauge : NULL;
	const Loggregator__V2__Counter *c = lgr_env_type(env) == LGR_ENV_COUNTER ? pb->counter : NULL;
	size_t n_names = g != NULL ? g->n_metrics : 0;
	size_t size = sizeof(struct omf_env) + n_names * sizeof(char *) + rec_hdr_size(wire_len) + wire_len +
		      str_size(pb->source_id);
	struct omf_env *e;
	const char **names;
	char *p;

	size += c != NULL ? str_size(c->name) : 0;
	for (size_t i = 0; i < n_names; i++)
		size += str_size(g->metrics[i] != NULL ? g->metrics[i]->key : NULL);
	e = calloc(1, size);
	if (e == NULL)
		return NULL;
	names = (const char **)(e + 1);
	p = (char *)rec_place(e, (uint8_t *)(names + n_names), wire_len);
	lgr_env_pack(env, (uint8_t *)p);
	p += wire_len;
	e->key.type = lgr_env_type(env);
	e->key.source_id = str_put(&p, pb->source_id);
	if (c != NULL)
		e->key.counter_name = str_put(&p, c->name);
	for (size_t i = 0; i < n_names; i++)
		names[i] = str_put(&p, g->metrics[i] != NULL ? g->metrics[i]->key : NULL);
	e->key.gauge_names = n_names > 0 ? names : NULL;
	e->key.n_gauge_names = n_names;
	e->refs = 1;
	return e;
}

/* Wraps env (taking the caller's reference either way); keep: env stays decoded beside its encoding. */
static struct omf_env *env_new(struct lgr_env *env, bool keep)
{
	struct omf_env *e = env_block(env);

	if (e != NULL && keep) {
		e->env = env;
		return e;
	}
	lgr_env_unref(env);
	return e;
}

struct omf_env *omf_env_new(struct lgr_env *env)
{
	return env_new(env, true);
}

struct omf_env *omf_env_new_encoded(struct lgr_env *env)
{
	return env_new(env, false);
}

struct omf_env *omf_env_new_view(const struct lgr_env *view)
{
	return env_block(view);
}

struct omf_env *omf_env_new_log(size_t wire_len, const char *source_id, size_t sid_len, uint8_t **wire)
{
	struct omf_env *e = malloc(sizeof(*e) + rec_hdr_size(wire_len) + wire_len + sid_len + 1);
	char *sid;

	if (e == NULL)
		return NULL;
	memset(e, 0, sizeof(*e));
	*wire = rec_place(e, (uint8_t *)(e + 1), wire_len);
	sid = (char *)*wire + wire_len;
	memcpy(sid, source_id, sid_len);
	sid[sid_len] = '\0';
	e->key.type = LGR_ENV_LOG;
	e->key.source_id = sid;
	e->refs = 1;
	return e;
}

struct omf_env *omf_env_ref(struct omf_env *e)
{
	__atomic_add_fetch(&e->refs, 1, __ATOMIC_RELAXED);
	return e;
}

void omf_env_unref(struct omf_env *e)
{
	if (e == NULL || __atomic_sub_fetch(&e->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	lgr_env_unref(e->form[0]);
	lgr_env_unref(e->form[1]);
	lgr_env_unref(e->env);
	free(e->v1);
	if (e->home != NULL)
		home_return(e);
	else
		free(e);
}

struct lgr_env *omf_env_v2(struct omf_env *e)
{
	struct lgr_env *env = __atomic_load_n(&e->env, __ATOMIC_ACQUIRE), *expected = NULL;

	if (env != NULL)
		return env;
	/* decoded on first use; threads racing here each decode, one installs its copy */
	if (lgr_env_unpack(e->wire, e->wire_len, &env) != LGR_OK)
		return NULL;
	if (!__atomic_compare_exchange_n(&e->env, &expected, env, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
		lgr_env_unref(env);
		env = expected;
	}
	return env;
}

void omf_env_wire(const struct omf_env *e, const uint8_t **wire, size_t *len)
{
	*wire = e->wire;
	*len = e->wire_len;
}

void omf_env_record(const struct omf_env *e, const uint8_t **rec, size_t *len)
{
	*rec = e->wire - e->rec_hdr;
	*len = e->rec_hdr + e->wire_len;
}

/* Frees every entry of a protobuf-c map field and empties it. */
static void clear_map(size_t *n, void ***entries)
{
	for (size_t i = 0; i < *n; i++)
		protobuf_c_message_free_unpacked((*entries)[i], NULL);
	free(*entries);
	*entries = NULL;
	*n = 0;
}

/* Deprecated tags into tags (true) or tags into deprecated tags as text (false), on an unshared copy. */
static int fold(struct lgr_env *env, bool preferred)
{
	Loggregator__V2__Envelope *pb = env->pb;
	char num[LGR_AGENT_DECIMAL_MAX];
	const char *text;
	int rc = LGR_OK;

	if (preferred) {
		for (size_t i = 0; i < pb->n_deprecated_tags && rc == LGR_OK; i++) {
			const Loggregator__V2__Value *v = pb->deprecated_tags[i]->value;

			text = "";
			if (v != NULL && v->data_case == LOGGREGATOR__V2__VALUE__DATA_TEXT && v->text != NULL) {
				text = v->text;
			} else if (v != NULL && v->data_case == LOGGREGATOR__V2__VALUE__DATA_INTEGER) {
				snprintf(num, sizeof(num), "%" PRId64, (int64_t)v->integer);
				text = num;
			} else if (v != NULL && v->data_case == LOGGREGATOR__V2__VALUE__DATA_DECIMAL) {
				lgr_agent_format_decimal(v->decimal, num);
				text = num;
			}
			rc = lgr_env_set_tag(env, pb->deprecated_tags[i]->key ? pb->deprecated_tags[i]->key : "", text);
		}
		if (rc == LGR_OK)
			clear_map(&pb->n_deprecated_tags, (void ***)&pb->deprecated_tags);
		return rc;
	}
	for (size_t i = 0; i < pb->n_tags && rc == LGR_OK; i++)
		rc = lgr_env_set_dtag_text(
			env, pb->tags[i]->key ? pb->tags[i]->key : "", pb->tags[i]->value ? pb->tags[i]->value : "");
	if (rc == LGR_OK)
		clear_map(&pb->n_tags, (void ***)&pb->tags);
	return rc;
}

int omf_env_form(struct omf_env *e, bool preferred, struct lgr_env **out)
{
	struct lgr_env *env;
	const Loggregator__V2__Envelope *pb;
	struct lgr_env *copy = NULL;
	int i = preferred ? 1 : 0, rc;

	if (e->form_done[i])
		goto done;
	env = omf_env_v2(e);
	if (env == NULL)
		return LGR_ENOMEM;
	pb = env->pb;
	/* nothing to fold: the envelope as it is */
	if ((preferred && pb->n_deprecated_tags == 0) || (!preferred && pb->n_tags == 0)) {
		e->form[i] = lgr_env_ref(env);
		e->form_done[i] = true;
		goto done;
	}
	rc = lgr_env_unpack(e->wire, e->wire_len, &copy);
	if (rc == LGR_OK)
		rc = fold(copy, preferred);
	if (rc != LGR_OK) {
		lgr_env_unref(copy);
		return rc;
	}
	e->form[i] = copy;
	e->form_done[i] = true;
done:
	*out = e->form[i];
	return LGR_OK;
}

struct v1_acc {
	uint8_t *buf;
	size_t len, cap;
	int rc;
};

static int v1_collect(Events__Envelope *v1, void *ud)
{
	struct v1_acc *a = ud;
	uint8_t *enc = NULL, *grown;
	size_t len = 0, need;
	int rc;

	rc = lgr_v1_encode(v1, &enc, &len);
	lgr_v1_free(v1);
	if (rc != LGR_OK)
		goto out;
	need = a->len + 11 + len;
	if (need > a->cap) {
		rc = LGR_ENOMEM;
		grown = realloc(a->buf, need * 2);
		if (grown == NULL)
			goto out;
		a->buf = grown;
		a->cap = need * 2;
	}
	a->buf[a->len++] = 0x0a; /* field 1, length-delimited */
	a->len += put_varint(a->buf + a->len, len);
	memcpy(a->buf + a->len, enc, len);
	a->len += len;
	rc = LGR_OK;
out:
	free(enc);
	return rc;
}

int omf_env_v1(struct omf_env *e, const uint8_t **data, size_t *len)
{
	struct v1_acc a = {0};
	struct lgr_env *env;
	int rc;

	if (!e->v1_done) {
		env = omf_env_v2(e);
		if (env == NULL)
			return LGR_ENOMEM;
		rc = lgr_v1_from_v2(env, v1_collect, &a);
		if (rc == LGR_ENOMEM) {
			free(a.buf);
			return rc;
		}
		/* LGR_EUNSUPPORTED (an Event) and envelopes that cannot be encoded have no v1 form */
		if (rc != LGR_OK)
			a.len = 0;
		e->v1 = a.buf;
		e->v1_len = a.len;
		e->v1_done = true;
	}
	*data = e->v1;
	*len = e->v1_len;
	return LGR_OK;
}

/* ---- the egress and its subscribers ----------------------------------------------------------------------------- */

enum gkind {
	G_BATCHED,
	G_RECEIVER,
	G_V1_BATCH,
	G_V1_SINGLE,
};

static const char *const paths[] = {
	[G_BATCHED] = "/loggregator.v2.Egress/BatchedReceiver",
	[G_RECEIVER] = "/loggregator.v2.Egress/Receiver",
	[G_V1_BATCH] = "/plumbing.Doppler/BatchSubscribe",
	[G_V1_SINGLE] = "/plumbing.Doppler/Subscribe",
};
#define NPATHS (sizeof(paths) / sizeof(paths[0]))

struct omf_egress {
	struct omf_egress_conf conf;
	char *name;
	struct lgr_logger lg; /* own lines: name, the configured sink */
	char *address;
	struct event_base *base;
	struct lgr_select *reg;
	struct lgr_h2_server *srv;
	struct lgr_h2_route routes[NPATHS];
	struct event *wake_ev, *tick_ev, *deadline_ev;
	int wake_fd;
	int wake_pending;   /* atomic */
	int stop_requested; /* atomic */
	unsigned budget_ms;
	pthread_t thread;
	bool started, stopping;
	struct omf_sub *subs; /* doubly linked */
	size_t nsubs;
	size_t nstreams;	      /* of nsubs, those that are streams (not internal): maxStreams and the counter */
	size_t reserved;	      /* gRPC streams accepted that have not subscribed yet */
	struct lgr_ratelimit log_rl;  /* own log lines (loop thread) */
	struct lgr_ratelimit slow_rl; /* slow-consumer lines, a budget of their own: refusals never hide them */
};

struct omf_sub {
	struct omf_egress *eg;
	struct omf_sub *prev, *next;
	const struct omf_sink *sink;
	void *ud;
	char *peer, *shard_id;
	bool preferred;
	bool internal; /* omf_sub_opts */
	bool eager;
	unsigned batch_max;
	size_t capacity;
	struct omf_counters *ctr; /* the egress's or the owner's */
	struct lgr_ring *ring;	  /* atomic: a lazy ring is made by the first publishing worker (sub_ring) */
	struct lgr_select_sub **sel;
	size_t nsel;
	struct event *pump_ev, *flush_ev;
	struct omf_env **open; /* taken from the ring, offered to the sink, oldest first */
	size_t nopen;
	bool blocked;	  /* the sink said LGR_EFULL */
	bool failed;	  /* the sink said its stream is unusable */
	bool closing;	  /* close was called */
	int pending;	  /* atomic: the ring turned non-empty */
	uint64_t dropped; /* atomic: drop-oldest losses of this ring */
	uint64_t dropped_seen, dropped_reported;
	uint64_t reported_at; /* ms: drop reports at most once per LOG_WINDOW_MS per subscriber */
	bool slow;	      /* in a slow-consumer episode */
	struct lgr_pace pace; /* whether envelopes arrive fast enough to wait for full batches */
};

/* The ring's drop callback: a worker pushed out the oldest envelope. Runs on that worker. */
static void sub_drop(void *item, void *ud)
{
	struct omf_sub *sub = ud;

	omf_env_unref(item);
	__atomic_add_fetch(&sub->dropped, 1, __ATOMIC_RELAXED);
	add(&sub->ctr->dropped, 1);
}

/* The ring's notify callback (see the file comment). Runs on a worker; must not block. */
static void sub_notify(void *ud)
{
	struct omf_sub *sub = ud;
	struct omf_egress *eg = sub->eg;
	uint64_t one = 1;
	ssize_t w;

	__atomic_store_n(&sub->pending, 1, __ATOMIC_SEQ_CST);
	if (__atomic_exchange_n(&eg->wake_pending, 1, __ATOMIC_SEQ_CST) == 0) {
		do
			w = write(eg->wake_fd, &one, sizeof(one));
		while (w < 0 && errno == EINTR);
	}
}

/* Releases an envelope the subscriber still held when it went away: counted as dropped. */
static void sub_release(void *item, void *ud)
{
	struct omf_sub *sub = ud;

	omf_env_unref(item);
	add(&sub->ctr->dropped, 1);
}

void omf_sub_settle(struct omf_sub *sub, uint64_t sent, uint64_t lost)
{
	add(&sub->ctr->egress, sent);
	add(&sub->ctr->dropped, lost);
}

/* New drops on sub's ring start an episode (counted once) and are reported, rate-limited. */
static void sub_check_drops(struct omf_sub *sub)
{
	struct omf_egress *eg = sub->eg;
	uint64_t d = __atomic_load_n(&sub->dropped, __ATOMIC_RELAXED);

	if (d == sub->dropped_seen)
		return;
	sub->dropped_seen = d;
	if (!sub->slow) {
		sub->slow = true;
		sub->reported_at = lgr_now_ms();
		add(&sub->ctr->slow, 1);
		if (!sub->internal)
			lgr_logger_say(&eg->lg, &eg->slow_rl, LGR_LOG_WARNING,
				"subscriber %s (shard id \"%s\") reads too slowly: its buffer of %zu envelopes is "
				"full, the "
				"oldest are dropped",
				sub->peer, sub->shard_id, eg->conf.sub_buffer);
	}
}

/* Drops since the last report; at most once per LOG_WINDOW_MS unless final (the subscriber goes away). */
static void sub_report_drops(struct omf_sub *sub, bool final)
{
	uint64_t n = sub->dropped_seen - sub->dropped_reported, now = lgr_now_ms();

	if (n == 0 || (!final && now - sub->reported_at < LOG_WINDOW_MS))
		return;
	sub->dropped_reported = sub->dropped_seen;
	sub->reported_at = now;
	if (!sub->internal)
		lgr_logger_say(&sub->eg->lg, &sub->eg->slow_rl, LGR_LOG_WARNING,
			"subscriber %s (shard id \"%s\"): %" PRIu64 " envelopes dropped, oldest first", sub->peer,
			sub->shard_id, n);
}

/* Offers the open batch to the sink once and applies its answer. */
static int sub_offer(struct omf_sub *sub)
{
	struct omf_counters *ctr = sub->ctr;
	size_t taken = 0, sent = 0;
	int rc;

	rc = sub->sink->deliver(sub, sub->open, sub->nopen, &taken, &sent, sub->ud);
	if (taken > sub->nopen)
		taken = sub->nopen;
	if (sent > taken)
		sent = taken;
	for (size_t i = 0; i < taken; i++)
		omf_env_unref(sub->open[i]);
	sub->nopen -= taken;
	memmove(sub->open, sub->open + taken, sub->nopen * sizeof(sub->open[0]));
	if (!sub->sink->settles)
		add(&ctr->egress, sent);
	add(&ctr->skipped, taken - sent);
	lgr_pace_count(&sub->pace, taken, sub->batch_max, lgr_now_us());
	if (rc == LGR_EFULL)
		sub->blocked = true;
	else if (rc != LGR_OK)
		sub->failed = true;
	if (sub->nopen == 0)
		event_del(sub->flush_ev);
	return rc;
}

/*
 * Whether a partial batch may go now rather than wait to fill: unless envelopes arrive so fast that it fills within
 * LGR_PACE_FILL_US anyway (lgr_pace), when the sink has sent everything it took. When it has not, omf_sink.idle
 * resumes sub once it has. No timer is involved: they fire on the kernel's tick, late by up to 4 ms on some
 * machines, which is the whole latency budget.
 */
static bool partial_may_go(struct omf_sub *sub)
{
	return !sub->pace.busy && sub->sink->idle != NULL && sub->sink->idle(sub, sub->ud);
}

/* Tells sub's ring how many bytes its sink could still take (lgr_ring's credit). */
static void sub_credit(struct omf_sub *sub)
{
	struct lgr_ring *ring = __atomic_load_n(&sub->ring, __ATOMIC_ACQUIRE);

	if (ring != NULL && sub->sink->room != NULL)
		lgr_ring_set_credit(ring, sub->failed || sub->closing ? 0 : sub->sink->room(sub, sub->ud));
}

/*
 * Moves envelopes from the ring to the sink: full batches at once; a partial batch when flush is set (its flush
 * timer fired, or the egress stops), when partial_may_go (so a lone envelope leaves at once, and batches form
 * while the sink is busy, growing with the load), or else once its timer fires. Continues in the next
 * loop turn after PUMP_ROUNDS batches.
 */
static void pump_batches(struct omf_sub *sub, bool flush)
{
	struct lgr_ring *ring = __atomic_load_n(&sub->ring, __ATOMIC_ACQUIRE);
	unsigned batch_max = sub->batch_max;
	size_t got, want, left = 0;
	bool empty, partial, now;

	if (ring == NULL && sub->nopen == 0)
		return; /* a lazy ring nobody has published to yet */

	sub_check_drops(sub);
	for (unsigned rounds = 0;; rounds++) {
		if (sub->blocked || sub->failed)
			return;
		if (rounds >= PUMP_ROUNDS) {
			event_active(sub->pump_ev, EV_WRITE, 0);
			return;
		}
		empty = false;
		partial = false;
		now = flush || sub->eager;
		if (sub->nopen < batch_max && ring != NULL) {
			/* a partial batch stays in the ring while the sink is busy: the ring notifies again when it is
			 * full, the sink when it is idle, the timer after flush_ms */
			want = batch_max - sub->nopen;
			got = lgr_ring_pop_min(ring, (void **)(sub->open + sub->nopen), want,
				now ? 1 : (want < sub->capacity ? want : sub->capacity), &left);
			if (got == 0 && left > 0 && sub->nopen == 0 && partial_may_go(sub)) {
				now = true;
				got = lgr_ring_pop_min(ring, (void **)(sub->open + sub->nopen), want, 1, &left);
			}
			sub->nopen += got;
			empty = got < want && left == 0;
			partial = got == 0 && left > 0;
		}
		if (sub->nopen == 0 && partial) {
			if (!event_pending(sub->flush_ev, EV_TIMEOUT, NULL))
				timer_in(sub->flush_ev, sub->eg->conf.flush_ms);
			return;
		}
		if (sub->nopen == 0) {
			/* caught up: a slow-consumer episode ends once nothing more was dropped */
			sub_check_drops(sub);
			if (empty && __atomic_load_n(&sub->dropped, __ATOMIC_RELAXED) == sub->dropped_seen)
				sub->slow = false;
			return;
		}
		if (sub->nopen < batch_max && !now && !partial_may_go(sub)) {
			/* armed when the first envelope of the batch arrived, or after a refusal ended the last wait */
			if (!event_pending(sub->flush_ev, EV_TIMEOUT, NULL))
				timer_in(sub->flush_ev, sub->eg->conf.flush_ms);
			return;
		}
		sub_offer(sub);
	}
}

/* pump_batches, then the ring learns the sink's room. */
static void sub_pump(struct omf_sub *sub, bool flush)
{
	pump_batches(sub, flush);
	sub_credit(sub);
}

static void on_sub_pump(evutil_socket_t fd, short what, void *ud)
{
	(void)fd;
	(void)what;
	sub_pump(ud, false);
}

static void on_sub_flush(evutil_socket_t fd, short what, void *ud)
{
	(void)fd;
	(void)what;
	sub_pump(ud, true);
}

/* What an envelope would take in a stream's send queue: its EnvelopeBatch record (lgr_ring_weigh_fn). */
static size_t env_weigh(const void *item)
{
	const struct omf_env *e = item;

	return e->rec_hdr + e->wire_len;
}

/* A new ring for sub (LGR_OK, LGR_EINVAL, LGR_ENOMEM). */
static int ring_new(struct omf_sub *sub, struct lgr_ring **out)
{
	struct lgr_ring_conf rc_conf = {0};

	rc_conf.capacity = sub->capacity;
	rc_conf.drop = sub_drop;
	rc_conf.drop_ud = sub;
	rc_conf.notify = sub_notify;
	rc_conf.notify_ud = sub;
	rc_conf.notify_at = sub->eager ? 0 : (sub->batch_max < sub->capacity ? sub->batch_max : sub->capacity);
	if (sub->sink->room != NULL) {
		rc_conf.weigh = env_weigh;
		rc_conf.extra_max = CREDIT_MAX;
	}
	return lgr_ring_new(&rc_conf, out);
}

/*
 * The ring of sub, made now if it is lazy and still missing. Publishing workers race here: each makes a ring, one
 * installs it, the others free theirs. NULL when out of memory. Any thread.
 */
static struct lgr_ring *sub_ring(struct omf_sub *sub)
{
	struct lgr_ring *ring = __atomic_load_n(&sub->ring, __ATOMIC_ACQUIRE), *expected = NULL;

	if (ring != NULL)
		return ring;
	if (ring_new(sub, &ring) != LGR_OK)
		return NULL;
	if (!__atomic_compare_exchange_n(&sub->ring, &expected, ring, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
		lgr_ring_free(ring);
		ring = expected;
	}
	return ring;
}

/* Called by lgr_select_match under the registry's shared lock, on the publishing thread. */
static void publish_one(void *subscriber, void *ud)
{
	struct omf_sub *sub = subscriber;
	struct lgr_ring *ring = sub_ring(sub);

	if (ring == NULL) {
		/* a lazy ring that cannot be made: the envelope is lost for this subscriber */
		__atomic_add_fetch(&sub->dropped, 1, __ATOMIC_RELAXED);
		add(&sub->ctr->dropped, 1);
		return;
	}
	lgr_ring_push(ring, omf_env_ref(ud)); /* a full ring drops its oldest (sub_drop) */
}

size_t omf_egress_publish(struct omf_egress *eg, struct omf_env *e)
{
	return lgr_select_match_key(eg->reg, &e->key, publish_one, e);
}

int omf_sub_new(struct omf_egress *eg, const struct lgr_select_req *req, const struct omf_sink *sink, void *ud,
	const char *peer, struct omf_sub **out)
{
	return omf_sub_new_opts(eg, req, sink, ud, peer, NULL, out);
}

int omf_sub_new_opts(struct omf_egress *eg, const struct lgr_select_req *req, const struct omf_sink *sink, void *ud,
	const char *peer, const struct omf_sub_opts *opts, struct omf_sub **out)
{
	static const struct omf_sub_opts defaults = {0};
	struct omf_sub *sub;
	int rc;

	*out = NULL;
	if (opts == NULL)
		opts = &defaults;
	if (eg->stopping || sink == NULL || sink->deliver == NULL || req->n_selectors == 0 ||
		opts->buffer > LGR_RING_MAX_CAPACITY)
		return LGR_EINVAL;
	if (!opts->internal && eg->nstreams + eg->reserved >= eg->conf.max_streams)
		return LGR_EFULL;
	sub = calloc(1, sizeof(*sub));
	if (sub == NULL)
		return LGR_ENOMEM;
	sub->eg = eg;
	sub->sink = sink;
	sub->ud = ud;
	sub->preferred = req->use_preferred_tags;
	sub->internal = opts->internal;
	sub->eager = opts->eager;
	sub->batch_max = opts->batch_max != 0 ? opts->batch_max : eg->conf.batch_max;
	sub->capacity = opts->buffer != 0 ? opts->buffer : eg->conf.sub_buffer;
	sub->ctr = opts->ctr != NULL ? opts->ctr : eg->conf.ctr;
	rc = LGR_ENOMEM;
	sub->peer = strdup(peer != NULL ? peer : "?");
	sub->shard_id = strdup(req->shard_id != NULL ? req->shard_id : "");
	sub->open = calloc(sub->batch_max, sizeof(sub->open[0]));
	sub->sel = calloc(req->n_selectors, sizeof(sub->sel[0]));
	sub->pump_ev = event_new(eg->base, -1, 0, on_sub_pump, sub);
	sub->flush_ev = evtimer_new(eg->base, on_sub_flush, sub);
	if (sub->peer == NULL || sub->shard_id == NULL || sub->open == NULL || sub->sel == NULL ||
		sub->pump_ev == NULL || sub->flush_ev == NULL)
		goto fail;
	if (!opts->lazy_ring) {
		rc = ring_new(sub, &sub->ring);
		if (rc != LGR_OK)
			goto fail;
		sub_credit(sub);
	}
	/* the last step: from here on workers deliver */
	rc = lgr_select_add_req(eg->reg, sub, req, sub->sel);
	if (rc != LGR_OK)
		goto fail;
	sub->nsel = req->n_selectors;
	sub->next = eg->subs;
	if (eg->subs != NULL)
		eg->subs->prev = sub;
	eg->subs = sub;
	eg->nsubs++;
	if (!sub->internal) {
		eg->nstreams++;
		__atomic_store_n(&eg->conf.ctr->subscriptions, (uint64_t)eg->nstreams, __ATOMIC_RELAXED);
	}
	*out = sub;
	return LGR_OK;
fail:
	lgr_ring_free(sub->ring);
	if (sub->pump_ev != NULL)
		event_free(sub->pump_ev);
	if (sub->flush_ev != NULL)
		event_free(sub->flush_ev);
	free(sub->sel);
	free(sub->open);
	free(sub->shard_id);
	free(sub->peer);
	free(sub);
	return rc;
}

void omf_sub_resume(struct omf_sub *sub)
{
	sub->blocked = false;
	event_active(sub->pump_ev, EV_WRITE, 0);
}

void omf_sub_free(struct omf_sub *sub)
{
	struct omf_egress *eg;

	if (sub == NULL)
		return;
	eg = sub->eg;
	for (size_t i = 0; i < sub->nsel; i++)
		lgr_select_remove(eg->reg, sub->sel[i]); /* waits for matches in progress */
	if (sub->prev != NULL)
		sub->prev->next = sub->next;
	else
		eg->subs = sub->next;
	if (sub->next != NULL)
		sub->next->prev = sub->prev;
	eg->nsubs--;
	if (!sub->internal) {
		eg->nstreams--;
		__atomic_store_n(&eg->conf.ctr->subscriptions, (uint64_t)eg->nstreams, __ATOMIC_RELAXED);
	}
	sub_check_drops(sub);
	sub_report_drops(sub, true);
	for (size_t i = 0; i < sub->nopen; i++)
		sub_release(sub->open[i], sub);
	if (sub->ring != NULL) /* no worker can reach the subscriber any more (lgr_select_remove) */
		lgr_ring_drain(sub->ring, sub_release, sub);
	lgr_ring_free(sub->ring);
	event_free(sub->pump_ev);
	event_free(sub->flush_ev);
	free(sub->sel);
	free(sub->open);
	free(sub->shard_id);
	free(sub->peer);
	free(sub);
}

size_t omf_sub_held(const struct omf_sub *sub)
{
	struct lgr_ring *ring = __atomic_load_n(&sub->ring, __ATOMIC_ACQUIRE);
	struct lgr_ring_stats st = {0};

	if (ring != NULL)
		lgr_ring_stats(ring, &st);
	return st.len + sub->nopen;
}

bool omf_sub_preferred_tags(const struct omf_sub *sub)
{
	return sub->preferred;
}

const char *omf_sub_peer(const struct omf_sub *sub)
{
	return sub->peer;
}

const char *omf_sub_shard_id(const struct omf_sub *sub)
{
	return sub->shard_id;
}

struct omf_egress *omf_sub_egress(const struct omf_sub *sub)
{
	return sub->eg;
}

struct event_base *omf_egress_base(struct omf_egress *eg)
{
	return eg->base;
}

/* ---- the gRPC sinks --------------------------------------------------------------------------------------------- */

/* One Egress call: before its request it holds a reserved stream slot; after, a subscriber. */
struct gstream {
	struct omf_egress *eg;
	struct lgr_h2_stream *s;
	enum gkind kind;
	struct omf_sub *sub;
	struct evbuffer *buf; /* reused to build messages; empty between calls */
	size_t v1_pos;	      /* Subscribe: records of the head envelope already sent */
	bool ended;
	struct lgr_settle queued; /* messages not yet taken by the connection: lgr_h2_stream_taken's count, envelopes */
	bool armed;		  /* lgr_h2_stream_notify_empty was asked for; cleared by on_drain */
};

static void ref_done(const void *data, size_t len, void *extra)
{
	(void)data;
	(void)len;
	omf_env_unref(extra);
}

/*
 * Appends the bytes [data, data+len), which e keeps alive. Small records are copied: the copy lands in the buffer's
 * current chunk, where a reference costs a chunk of its own (an allocation, freed after the write) and a reference
 * count taken and released for every subscriber; copying a few hundred bytes is cheaper than either. Large records
 * are referenced, so that one encoding serves every subscriber.
 */
static int add_record(struct evbuffer *buf, struct omf_env *e, const uint8_t *data, size_t len)
{
	if (len == 0)
		return LGR_OK;
	if (len <= COPY_MAX)
		return evbuffer_add(buf, data, len) == 0 ? LGR_OK : LGR_ENOMEM;
	omf_env_ref(e);
	if (evbuffer_add_reference(buf, data, len, ref_done, e) != 0) {
		omf_env_unref(e);
		return LGR_ENOMEM;
	}
	return LGR_OK;
}

/* The encoding of e as this subscriber sees it; LGR_OK or LGR_ENOMEM. */
static int v2_wire(struct gstream *g, struct omf_env *e, const uint8_t **wire, size_t *len)
{
	struct lgr_env *form;
	int rc;

	if (!omf_sub_egress(g->sub)->conf.fold_tags) {
		omf_env_wire(e, wire, len); /* the router's way: as it came in */
		return LGR_OK;
	}
	rc = omf_env_form(e, omf_sub_preferred_tags(g->sub), &form);
	if (rc == LGR_OK)
		rc = lgr_env_encode(form, wire, len);
	return rc;
}

/* Sends the built message; on refusal the references are released again. */
static int send_built(struct gstream *g)
{
	int rc = lgr_h2_stream_send_buffer(g->s, g->buf);

	if (rc != LGR_OK)
		evbuffer_drain(g->buf, evbuffer_get_length(g->buf));
	return rc;
}

/*
 * n envelopes end with the message just queued: they count in egress once the connection has taken its bytes
 * (settle). Without memory to remember the message they count at once, as taken by the stream.
 */
static void queued_add(struct gstream *g, size_t n)
{
	if (n > 0 && lgr_settle_push(&g->queued, lgr_h2_stream_taken(g->s) + lgr_h2_stream_queued(g->s), n) != LGR_OK)
		omf_sub_settle(g->sub, n, 0);
}

/*
 * Counts in egress the envelopes whose messages the connection has taken. While some are still queued, asks once
 * to be told when the queue is empty (on_drain settles again), so that the count never waits for more traffic.
 */
static void settle(struct gstream *g)
{
	const uint64_t sent = lgr_settle_upto(&g->queued, lgr_h2_stream_taken(g->s));

	if (sent > 0) /* none before the subscriber is set: omf_sub_new asks for the room */
		omf_sub_settle(g->sub, sent, 0);
	if (g->queued.n > 0 && !g->armed && !g->ended) {
		g->armed = true;
		lgr_h2_stream_notify_empty(g->s);
	}
}

/* The stream is gone: what the connection took counts in egress, what its queue still held in dropped.egress. */
static void settle_end(struct gstream *g)
{
	uint64_t lost;

	g->ended = true;
	settle(g);
	lost = lgr_settle_drop(&g->queued);
	if (lost == 0)
		return;
	omf_sub_settle(g->sub, 0, lost);
	lgr_logger_say(&g->eg->lg, &g->eg->slow_rl, LGR_LOG_WARNING,
		"subscriber %s (shard id \"%s\"): its stream ended with %" PRIu64 " envelopes still queued, counted as "
		"dropped",
		omf_sub_peer(g->sub), omf_sub_shard_id(g->sub), lost);
}

/* BatchedReceiver (EnvelopeBatch) and BatchSubscribe (BatchResponse): one message of field-1 records. */
static int deliver_batch(struct gstream *g, struct omf_env *const *envs, size_t n, size_t *taken, size_t *sent)
{
	const bool fold = omf_sub_egress(g->sub)->conf.fold_tags;
	uint8_t hdr[11];
	const uint8_t *data;
	size_t len, bytes = 0, i, k = 0;
	int rc = LGR_OK;

	for (i = 0; i < n; i++) {
		if (g->kind == G_BATCHED && !fold) {
			/* the record as the block holds it, header included */
			omf_env_record(envs[i], &data, &len);
			if (k > 0 && bytes + len > OMF_BATCH_MAX_BYTES)
				break;
			rc = add_record(g->buf, envs[i], data, len);
		} else if (g->kind == G_BATCHED) {
			if (v2_wire(g, envs[i], &data, &len) != LGR_OK)
				continue; /* skipped */
			if (k > 0 && bytes + len > OMF_BATCH_MAX_BYTES)
				break;
			hdr[0] = 0x0a;
			rc = evbuffer_add(g->buf, hdr, 1 + put_varint(hdr + 1, len)) == 0 ? LGR_OK : LGR_ENOMEM;
			if (rc == LGR_OK)
				rc = add_record(g->buf, envs[i], data, len);
		} else {
			if (omf_env_v1(envs[i], &data, &len) != LGR_OK || len == 0)
				continue; /* skipped: no v1 form */
			if (k > 0 && bytes + len > OMF_BATCH_MAX_BYTES)
				break;
			rc = add_record(g->buf, envs[i], data, len); /* already field-1 records */
		}
		if (rc != LGR_OK)
			break;
		bytes += len;
		k++;
	}
	if (rc == LGR_OK && k > 0)
		rc = send_built(g);
	else
		evbuffer_drain(g->buf, evbuffer_get_length(g->buf));
	if (rc != LGR_OK) {
		*taken = *sent = 0;
		return rc == LGR_ENOMEM ? LGR_EFULL : rc; /* out of memory: try again after the next drain */
	}
	queued_add(g, k);
	*taken = i;
	*sent = k;
	return LGR_OK;
}

/* Receiver: one Envelope per message. */
static int deliver_single(struct gstream *g, struct omf_env *const *envs, size_t n, size_t *taken, size_t *sent)
{
	const uint8_t *data;
	size_t len, i;
	int rc = LGR_OK;

	*sent = 0;
	for (i = 0; i < n; i++) {
		if (v2_wire(g, envs[i], &data, &len) != LGR_OK)
			continue;
		rc = add_record(g->buf, envs[i], data, len);
		if (rc == LGR_OK)
			rc = send_built(g);
		if (rc != LGR_OK)
			break;
		queued_add(g, 1);
		(*sent)++;
	}
	*taken = i;
	return rc == LGR_ENOMEM ? LGR_EFULL : rc;
}

/* Subscribe: one Response per v1 envelope; an envelope may give several, so the position is kept on refusal. */
static int deliver_v1_single(struct gstream *g, struct omf_env *const *envs, size_t n, size_t *taken, size_t *sent)
{
	const uint8_t *data;
	size_t len, i, pos, rlen;
	uint64_t v;
	int rc = LGR_OK, shift;

	*sent = 0;
	for (i = 0; i < n && rc == LGR_OK; i++) {
		if (omf_env_v1(envs[i], &data, &len) != LGR_OK || len == 0) {
			g->v1_pos = 0;
			continue;
		}
		for (pos = g->v1_pos; pos < len; pos += rlen) {
			/* one record: key, varint length, bytes (written by omf_env_v1, so well formed) */
			rlen = 1;
			v = 0;
			shift = 0;
			while (data[pos + rlen] & 0x80) {
				v |= (uint64_t)(data[pos + rlen] & 0x7f) << shift;
				shift += 7;
				rlen++;
			}
			v |= (uint64_t)data[pos + rlen] << shift;
			rlen += 1 + (size_t)v;
			rc = add_record(g->buf, envs[i], data + pos, rlen);
			if (rc == LGR_OK)
				rc = send_built(g);
			if (rc != LGR_OK)
				break;
		}
		if (rc != LGR_OK) {
			g->v1_pos = pos;
			break;
		}
		g->v1_pos = 0;
		queued_add(g, 1); /* with its last record */
		(*sent)++;
	}
	*taken = i; /* after a refusal i is the refused envelope, whose position g->v1_pos keeps */
	return rc == LGR_ENOMEM ? LGR_EFULL : rc;
}

static int grpc_deliver(
	struct omf_sub *sub, struct omf_env *const *envs, size_t n, size_t *taken, size_t *sent, void *ud)
{
	struct gstream *g = ud;

	(void)sub;
	if (g->ended) {
		*taken = *sent = 0;
		return LGR_EINVAL;
	}
	settle(g);
	switch (g->kind) {
	case G_BATCHED:
	case G_V1_BATCH: return deliver_batch(g, envs, n, taken, sent);
	case G_RECEIVER: return deliver_single(g, envs, n, taken, sent);
	case G_V1_SINGLE: return deliver_v1_single(g, envs, n, taken, sent);
	}
	*taken = *sent = 0;
	return LGR_EINVAL;
}

static void grpc_close(struct omf_sub *sub, void *ud)
{
	struct gstream *g = ud;

	(void)sub;
	if (g->ended)
		return;
	g->ended = true;
	lgr_h2_stream_finish(g->s, LGR_GRPC_UNAVAILABLE, "server shutting down");
}

/* Idle when the stream's send queue is empty: what was sent is in the connection's hands. */
static bool grpc_idle(struct omf_sub *sub, void *ud)
{
	struct gstream *g = ud;

	(void)sub;
	if (g->ended)
		return false;
	if (lgr_h2_stream_queued(g->s) == 0)
		return true;
	lgr_h2_stream_notify_empty(g->s);
	return false;
}

/* The room left in the stream's send queue. */
static size_t grpc_room(struct omf_sub *sub, void *ud)
{
	struct gstream *g = ud;
	size_t queued;

	(void)sub;
	if (g->ended)
		return 0;
	settle(g);
	queued = lgr_h2_stream_queued(g->s);
	return queued < OMF_SEND_QUEUE ? OMF_SEND_QUEUE - queued : 0;
}

static const struct omf_sink grpc_sink = {
	.idle = grpc_idle,
	.room = grpc_room,
	.deliver = grpc_deliver,
	.close = grpc_close,
	.settles = true,
};

/* ---- the Egress server ------------------------------------------------------------------------------------------ */

static void refuse(struct gstream *g, int status, const char *message)
{
	g->ended = true;
	lgr_h2_stream_finish(g->s, status, message);
}

static int on_open(struct lgr_h2_stream *s, void *ud)
{
	struct omf_egress *eg = ud;
	const char *path = lgr_h2_stream_path(s);
	struct gstream *g;
	SSL *ssl = lgr_h2_stream_ssl(s);

	if (ssl != NULL && eg->conf.permitted_peers != NULL && !lgr_tls_peer_permitted(ssl, eg->conf.permitted_peers)) {
		lgr_logger_say(&eg->lg, &eg->log_rl, LGR_LOG_WARNING, "%s: client certificate names no permitted peer",
			lgr_h2_stream_peer(s));
		lgr_h2_stream_finish(s, LGR_GRPC_PERMISSION_DENIED, "client not permitted");
		return LGR_GRPC_PERMISSION_DENIED;
	}
	if (eg->stopping) {
		lgr_h2_stream_finish(s, LGR_GRPC_UNAVAILABLE, "server shutting down");
		return LGR_GRPC_UNAVAILABLE;
	}
	if (eg->nstreams + eg->reserved >= eg->conf.max_streams) {
		lgr_logger_say(&eg->lg, &eg->log_rl, LGR_LOG_WARNING,
			"%s: %s refused: maxStreams (%u) egress streams open", lgr_h2_stream_peer(s), path,
			eg->conf.max_streams);
		lgr_h2_stream_finish(s, LGR_GRPC_RESOURCE_EXHAUSTED, "too many egress streams");
		return LGR_GRPC_RESOURCE_EXHAUSTED;
	}
	g = calloc(1, sizeof(*g));
	if (g == NULL || (g->buf = evbuffer_new()) == NULL) {
		free(g);
		return LGR_GRPC_RESOURCE_EXHAUSTED;
	}
	g->eg = eg;
	g->s = s;
	for (size_t i = 0; i < NPATHS; i++) {
		if (strcmp(path, paths[i]) == 0)
			g->kind = (enum gkind)i;
	}
	eg->reserved++;
	lgr_h2_stream_set_data(s, g);
	return LGR_GRPC_OK;
}

/* A v1 SubscriptionRequest as selectors: the filter's app id as source id; log -> Log; metric -> Counter, Gauge,
 * Timer; no filter or no type -> all four (Events have no v1 form). */
static int v1_req(const Plumbing__SubscriptionRequest *r, struct lgr_select_req *out)
{
	static const enum lgr_env_type all[] = {LGR_ENV_LOG, LGR_ENV_COUNTER, LGR_ENV_GAUGE, LGR_ENV_TIMER};
	const Plumbing__Filter *f = r->filter;
	const char *app = f != NULL && f->appid != NULL ? f->appid : "";
	size_t first = 0, n = 4;

	memset(out, 0, sizeof(*out));
	if (f != NULL && f->message_case == PLUMBING__FILTER__MESSAGE_LOG)
		n = 1;
	else if (f != NULL && f->message_case == PLUMBING__FILTER__MESSAGE_METRIC)
		first = 1, n = 3;
	out->selectors = calloc(n, sizeof(out->selectors[0]));
	if (out->selectors == NULL)
		return LGR_ENOMEM;
	for (size_t i = 0; i < n; i++) {
		out->selectors[i].source_id = app;
		out->selectors[i].type = all[first + i];
	}
	out->n_selectors = n;
	out->shard_id = r->shardid != NULL ? r->shardid : "";
	out->deterministic_name = "";
	out->use_preferred_tags = false;
	return LGR_OK;
}

static void on_message(struct lgr_h2_stream *s, const uint8_t *msg, size_t len, void *ud)
{
	struct omf_egress *eg = ud;
	struct gstream *g = lgr_h2_stream_data(s);
	Loggregator__V2__EgressBatchRequest *breq = NULL;
	Loggregator__V2__EgressRequest *sreq = NULL;
	Plumbing__SubscriptionRequest *vreq = NULL;
	struct lgr_select_req req = {0};
	const char *why = NULL;
	int rc = LGR_EDECODE;

	if (g->ended || g->sub != NULL)
		return; /* a server-streaming call has one request */
	switch (g->kind) {
	case G_BATCHED:
		breq = loggregator__v2__egress_batch_request__unpack(NULL, len, msg);
		if (breq != NULL)
			rc = lgr_select_req_parse(breq, &req, &why);
		break;
	case G_RECEIVER:
		sreq = loggregator__v2__egress_request__unpack(NULL, len, msg);
		if (sreq != NULL)
			rc = lgr_select_req_parse_single(sreq, &req, &why);
		break;
	case G_V1_BATCH:
	case G_V1_SINGLE:
		vreq = plumbing__subscription_request__unpack(NULL, len, msg);
		if (vreq != NULL)
			rc = v1_req(vreq, &req);
		break;
	}
	if (rc == LGR_EDECODE && why == NULL)
		why = "cannot decode the request";
	if (rc == LGR_OK) {
		eg->reserved--;
		rc = omf_sub_new(eg, &req, &grpc_sink, g, lgr_h2_stream_peer(s), &g->sub);
		if (rc != LGR_OK)
			eg->reserved++;
		if (rc == LGR_EFULL)
			why = "too many egress streams";
		else if (rc != LGR_OK)
			why = lgr_strerror(rc);
	}
	if (rc != LGR_OK) {
		lgr_logger_say(&eg->lg, &eg->log_rl, LGR_LOG_NOTICE, "%s: %s refused: %s", lgr_h2_stream_peer(s),
			paths[g->kind], why);
		refuse(g, rc == LGR_ENOMEM || rc == LGR_EFULL ? LGR_GRPC_RESOURCE_EXHAUSTED : LGR_GRPC_INVALID_ARGUMENT,
			why);
	}
	lgr_select_req_cleanup(&req);
	if (breq != NULL)
		loggregator__v2__egress_batch_request__free_unpacked(breq, NULL);
	if (sreq != NULL)
		loggregator__v2__egress_request__free_unpacked(sreq, NULL);
	if (vreq != NULL)
		plumbing__subscription_request__free_unpacked(vreq, NULL);
}

static void on_drain(struct lgr_h2_stream *s, void *ud)
{
	struct gstream *g = lgr_h2_stream_data(s);

	(void)ud;
	g->armed = false;
	if (g->sub == NULL)
		return;
	settle(g);
	omf_sub_resume(g->sub);
}

static void on_close(struct lgr_h2_stream *s, bool reset, void *ud)
{
	struct omf_egress *eg = ud;
	struct gstream *g = lgr_h2_stream_data(s);

	(void)reset;
	if (g->sub != NULL) {
		settle_end(g);
		omf_sub_free(g->sub);
	} else {
		eg->reserved--;
	}
	evbuffer_free(g->buf);
	lgr_settle_free(&g->queued);
	free(g);
	lgr_h2_stream_set_data(s, NULL);
}

static void on_refused(const char *peer, const char *path, int status, const char *why, void *ud)
{
	struct omf_egress *eg = ud;

	if (path == NULL)
		lgr_logger_say(&eg->lg, &eg->log_rl, LGR_LOG_NOTICE, "%s: connection refused: %s", peer, why);
	else
		lgr_logger_say(&eg->lg, &eg->log_rl, LGR_LOG_NOTICE, "%s: %s: call refused with status %d (%s): %s",
			peer, path, status, lgr_grpc_status_name(status), why);
}

static const struct lgr_h2_handlers handlers = {
	.on_open = on_open,
	.on_message = on_message,
	.on_drain = on_drain,
	.on_close = on_close,
};

/* ---- the loop --------------------------------------------------------------------------------------------------- */

static void on_server_done(void *ud)
{
	struct omf_egress *eg = ud;

	event_base_loopexit(eg->base, NULL);
}

static void on_deadline(evutil_socket_t fd, short what, void *ud)
{
	struct omf_egress *eg = ud;

	(void)fd;
	(void)what;
	event_base_loopexit(eg->base, NULL);
}

/* Stop: GOAWAY, what each subscriber holds offered once more, every sink closed; the loop ends once the last
 * connection is gone (or at the deadline). */
static void begin_stop(struct omf_egress *eg)
{
	struct omf_sub *sub, *next;

	eg->stopping = true;
	timer_in(eg->deadline_ev, eg->budget_ms + STOP_SLACK_MS);
	lgr_h2_server_shutdown(eg->srv, eg->budget_ms, on_server_done, eg);
	for (sub = eg->subs; sub != NULL; sub = sub->next)
		sub_pump(sub, true);
	for (sub = eg->subs; sub != NULL; sub = next) {
		next = sub->next;
		if (sub->closing)
			continue;
		sub->closing = true;
		if (sub->sink->close != NULL)
			sub->sink->close(sub, sub->ud);
	}
}

static void on_wake(evutil_socket_t fd, short what, void *ud)
{
	struct omf_egress *eg = ud;
	struct omf_sub *sub;
	uint64_t v;

	(void)what;
	while (read(fd, &v, sizeof(v)) < 0 && errno == EINTR)
		;
	__atomic_store_n(&eg->wake_pending, 0, __ATOMIC_SEQ_CST);
	if (!eg->stopping && __atomic_load_n(&eg->stop_requested, __ATOMIC_ACQUIRE)) {
		begin_stop(eg);
		return;
	}
	for (sub = eg->subs; sub != NULL; sub = sub->next) {
		if (__atomic_exchange_n(&sub->pending, 0, __ATOMIC_SEQ_CST))
			sub_pump(sub, false);
	}
}

static void on_tick(evutil_socket_t fd, short what, void *ud)
{
	struct omf_egress *eg = ud;

	(void)fd;
	(void)what;
	for (struct omf_sub *sub = eg->subs; sub != NULL; sub = sub->next) {
		sub_check_drops(sub);
		sub_report_drops(sub, false);
	}
}

static void *loop_main(void *arg)
{
	struct omf_egress *eg = arg;
	int err = lgr_thread_short_slice(SLICE_US);

	if (err != 0)
		lgr_logger_put(&eg->lg, LGR_LOG_DEBUG, "short scheduler turns not granted: %s", strerror(err));
	event_base_dispatch(eg->base);
	return NULL;
}

/* ---- lifecycle -------------------------------------------------------------------------------------------------- */

int omf_egress_new(const struct omf_egress_conf *conf, struct omf_egress **out)
{
	struct omf_egress *eg;
	int rc = LGR_EINVAL;

	*out = NULL;
	if (conf->ctr == NULL || conf->sub_buffer == 0 || conf->max_streams == 0 || conf->batch_max == 0 ||
		conf->flush_ms == 0)
		return rc;
	eg = calloc(1, sizeof(*eg));
	if (eg == NULL)
		return LGR_ENOMEM;
	eg->conf = *conf;
	eg->wake_fd = -1;
	eg->log_rl = (struct lgr_ratelimit)LGR_RATELIMIT_INIT(LOG_WINDOW_MS, LOG_BURST);
	eg->slow_rl = (struct lgr_ratelimit)LGR_RATELIMIT_INIT(LOG_WINDOW_MS, LOG_BURST);
	rc = LGR_ENOMEM;
	eg->name = strdup(conf->name != NULL ? conf->name : "omfirehose");
	eg->lg = (struct lgr_logger){eg->name, conf->log, conf->log_ud};
	eg->address = strdup(conf->address != NULL ? conf->address : "127.0.0.1");
	eg->base = event_base_new();
	if (eg->name == NULL || eg->address == NULL || eg->base == NULL)
		goto out;
	eg->conf.name = eg->name;
	eg->conf.address = eg->address;
	rc = lgr_select_new(&eg->reg);
	if (rc != LGR_OK)
		goto out;
	eg->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (eg->wake_fd < 0) {
		lgr_log(LGR_LOG_ERR, "%s: eventfd: %s", eg->name, strerror(errno));
		rc = LGR_EIO;
		goto out;
	}
	rc = LGR_ENOMEM;
	eg->wake_ev = event_new(eg->base, eg->wake_fd, EV_READ | EV_PERSIST, on_wake, eg);
	eg->tick_ev = event_new(eg->base, -1, EV_PERSIST, on_tick, eg);
	eg->deadline_ev = evtimer_new(eg->base, on_deadline, eg);
	if (eg->wake_ev == NULL || eg->tick_ev == NULL || eg->deadline_ev == NULL || event_add(eg->wake_ev, NULL) != 0)
		goto out;
	timer_in(eg->tick_ev, TICK_MS);
	*out = eg;
	eg = NULL;
	rc = LGR_OK;
out:
	omf_egress_free(eg, 0);
	return rc;
}

int omf_egress_start(struct omf_egress *eg, uint16_t *port)
{
	struct lgr_h2_server_config cfg = {0};
	int rc;

	if (eg->started || eg->srv != NULL)
		return LGR_EINVAL;
	for (size_t i = 0; i < NPATHS; i++) {
		eg->routes[i].path = paths[i];
		eg->routes[i].handlers = &handlers;
		eg->routes[i].ud = eg;
	}
	cfg.address = eg->address;
	cfg.port = (uint16_t)eg->conf.port;
	cfg.ssl_ctx = eg->conf.ssl_ctx;
	cfg.routes = eg->routes;
	cfg.nroutes = NPATHS;
	cfg.max_message = OMF_MAX_REQUEST;
	cfg.max_send_queue = OMF_SEND_QUEUE;
	cfg.name = eg->name;
	cfg.on_refused = on_refused;
	cfg.ud = eg;
	rc = lgr_h2_server_new(eg->base, &cfg, &eg->srv);
	if (rc != LGR_OK)
		return rc;
	*port = lgr_h2_server_port(eg->srv);
	if (lgr_thread_create(&eg->thread, loop_main, eg) != 0) {
		lgr_log(LGR_LOG_ERR, "%s: cannot start the network thread", eg->name);
		lgr_h2_server_free(eg->srv);
		eg->srv = NULL;
		return LGR_EIO;
	}
	eg->started = true;
	return LGR_OK;
}

void omf_egress_free(struct omf_egress *eg, unsigned budget_ms)
{
	uint64_t one = 1;
	ssize_t w;

	if (eg == NULL)
		return;
	if (eg->started) {
		eg->budget_ms = budget_ms;
		__atomic_store_n(&eg->stop_requested, 1, __ATOMIC_RELEASE);
		do
			w = write(eg->wake_fd, &one, sizeof(one));
		while (w < 0 && errno == EINTR);
		pthread_join(eg->thread, NULL);
	}
	/* the loop has ended: what is left is released here, on this thread */
	eg->stopping = true;
	lgr_h2_server_free(eg->srv); /* streams still open see on_close and free their subscribers */
	while (eg->subs != NULL)
		omf_sub_free(eg->subs);
	if (eg->wake_ev != NULL)
		event_free(eg->wake_ev);
	if (eg->tick_ev != NULL)
		event_free(eg->tick_ev);
	if (eg->deadline_ev != NULL)
		event_free(eg->deadline_ev);
	if (eg->base != NULL)
		event_base_free(eg->base);
	if (eg->wake_fd >= 0)
		close(eg->wake_fd);
	lgr_select_free(eg->reg);
	free(eg->name);
	free(eg->address);
	free(eg);
}
