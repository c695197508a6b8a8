/*
 * lgr_load.c: a load generator for Loggregator v2 ingress (BatchSender, Sender, Send) on lgr_h2's client, a plain
 * syslog-over-TCP generator for rsyslog's own ceiling (imptcp), and a sink that counts what it is sent, for
 * measuring the transport alone. See usage() for the options and the summary line.
 *
 * Cost per envelope is kept small because on a small machine the generator competes with the process it measures:
 * the envelopes are encoded once into an EnvelopeBatch, and every message sends a prefix of those bytes (copied
 * into the stream's queue by lgr_h2_call_send), after rewriting each envelope's timestamp in place. That is
 * possible because a timestamp of the current epoch in nanoseconds always takes a 9-byte varint, so the encoding
 * keeps its length; --fixed-timestamps skips the rewrite, to measure what it costs.
 *
 * For the receiver (--recv), every envelope also carries two tags: "gen", the run's random id, and "seq", 16 hex
 * digits: the stream's index (4) and the envelope's number on that stream (12, from 0). A tag's value is a string
 * whose length is part of the encoding, so a fixed-width value can be rewritten in place like the timestamp (16
 * bytes per envelope, about as cheap as the timestamp). Per-stream numbers need no coordination between streams
 * or threads, and a stream's numbers are dense, so a receiver finds gaps and repeats with one bitmap per stream.
 * Tags survive every hop (the router's egress, use_preferred_tags or not, and the drains' tags@47450 element),
 * which a field of our own would not.
 *
 * Threads: each worker thread has its own event_base, its own client (one TCP connection) and its share of the
 * streams, rate and count; workers share only read-only data (options, the encoded template, the SSL_CTX) and
 * their counters are read by main after pthread_join.
 */
#define _GNU_SOURCE /* memmem, accept4 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <malloc.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "egress.pb-c.h"
#include "lgr.h"
#include "lgr_env.h"
#include "lgr_grpc.h"
#include "lgr_h2.h"
#include "lgr_select.h"
#include "lgr_tls.h"

#define PROG	       "lgr-load"
#define TICK_US	       1000   /* rate mode: credit is added every millisecond */
#define BURST_S	       0.05   /* rate mode: at most 50 ms of credit saved up after a stall */
#define SYSLOG_BUF_MIN 65536u /* syslog mode: bytes of ready-made frames written round-robin */
#define SYSLOG_ROUNDS  64     /* syslog mode: writes per readiness event, so connections take turns */
#define TS_VARINT      9      /* bytes of a varint in [2^56, 2^63): every epoch-ns timestamp after 1972 */
#define SEQ_HEX	       16     /* hex digits of the "seq" tag: stream index (4), number on the stream (12) */
#define SEQ_BITS       48     /* the number's bits; the stream index is above */
#define SEQ_NUM_MASK   ((UINT64_C(1) << SEQ_BITS) - 1)
#define DEFAULT_QUEUE  (1u << 20)
#define MAX_THREADS    64
#define INGRESS	       "/loggregator.v2.Ingress/"

enum load_mode { MODE_GRPC, MODE_SYSLOG, MODE_SINK, MODE_RECV, MODE_RECV_SYSLOG };
enum load_method {
	METHOD_BATCH_SENDER,
	METHOD_SENDER,
	METHOD_SEND,
	METHOD_BATCHED_RECEIVER, /* --recv */
	METHOD_RECEIVER,
	METHOD_DEFAULT, /* not given: BatchSender, or BatchedReceiver with --recv */
};

struct load_opts {
	enum load_mode mode;
	char host[256];
	uint16_t port;
	bool tls;
	const char *ca, *cert, *key, *server_name;
	unsigned streams;
	unsigned threads;
	enum load_method method;
	unsigned batch;
	uint64_t rate;	 /* envelopes (lines) per second over all threads; 0: flat out */
	double duration; /* seconds; 0: until count */
	uint64_t count;	 /* envelopes (lines); 0: until duration */
	size_t size;	 /* log payload bytes */
	enum lgr_env_type types[5];
	size_t ntypes;
	const char *source_id;
	size_t queue; /* send queue bound per stream */
	bool fixed_timestamps;
	bool no_seq; /* no "gen"/"seq" tags */
	uint64_t gen;
	double grace;	       /* seconds to wait for the statuses after the last send */
	int syslog_format;     /* 5424 or 3164 */
	const char *port_file; /* sink, recv --syslog */
	bool decode;	       /* sink */
	bool verbose;
	/* recv */
	const char *select_source; /* NULL: every source */
	const char *shard_id;
	bool legacy_tags; /* use_preferred_tags false */
	double idle;	  /* seconds without envelopes that end the run, once one arrived */
	const char *ready_file;
	double keepalive; /* seconds between pings (0: none; -1: the transport's default) */
};

static const char *const method_names[] = {"BatchSender", "Sender", "Send", "BatchedReceiver", "Receiver"};
static const char *const h2_alpn[] = {"h2", NULL};

static double mono_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t real_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static double cpu_s(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
	       (double)ru.ru_stime.tv_usec / 1e6;
}

static bool verbose;

static void on_log(enum lgr_log_level level, const char *msg, void *ud)
{
	if (verbose || level <= LGR_LOG_WARNING)
		fprintf(stderr, "%s\n", msg); /* the transport's lines start with the name given, "lgr-load" */
}

/* ---- the encoded template ------------------------------------------------------------------------------------ */

/* Where envelope i lies in the EnvelopeBatch encoding: a prefix of i + 1 records is a valid batch of i + 1. */
struct tmpl_rec {
	size_t end;	/* offset just after the record */
	size_t env_off; /* the Envelope's own encoding (a Sender message) */
	size_t env_len;
	size_t ts_off;	/* its 9-byte timestamp varint; SIZE_MAX: not rewritable */
	size_t seq_off; /* the SEQ_HEX digits of its "seq" tag; SIZE_MAX: none */
};

struct tmpl {
	uint8_t *wire; /* EnvelopeBatch of n envelopes */
	size_t len;
	size_t n;
	struct tmpl_rec *rec;
};

static bool read_varint(const uint8_t *p, size_t len, size_t *pos, uint64_t *v)
{
	*v = 0;
	for (unsigned shift = 0; shift < 64 && *pos < len; shift += 7) {
		uint8_t b = p[(*pos)++];

		*v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80))
			return true;
	}
	return false;
}

/* The offset of the value of the tags entry (field 9, map<string, string>) whose key is "seq", or SIZE_MAX. */
static size_t find_seq(const uint8_t *p, size_t len)
{
	size_t pos = 0, off = SIZE_MAX;
	bool is_seq = false;

	while (pos < len) {
		uint64_t key, v;

		if (!read_varint(p, len, &pos, &key) || (key & 7) != 2 || !read_varint(p, len, &pos, &v) ||
			v > len - pos)
			return SIZE_MAX;
		if (key >> 3 == 1)
			is_seq = v == 3 && memcmp(p + pos, "seq", 3) == 0;
		else if (key >> 3 == 2 && v == SEQ_HEX)
			off = pos;
		pos += v;
	}
	return is_seq ? off : SIZE_MAX;
}

/*
 * Maps the rewritable parts of an Envelope: the value of field 1 (timestamp, varint) when it takes TS_VARINT
 * bytes, and the "seq" tag's value. Offsets are relative to p; SIZE_MAX where absent.
 */
static void find_rewritable(const uint8_t *p, size_t len, size_t *ts_off, size_t *seq_off)
{
	size_t pos = 0;

	*ts_off = *seq_off = SIZE_MAX;
	while (pos < len) {
		uint64_t key, v;
		size_t start;

		if (!read_varint(p, len, &pos, &key))
			break;
		start = pos;
		switch (key & 7) {
		case 0:
			if (!read_varint(p, len, &pos, &v))
				return;
			if (key >> 3 == 1 && pos - start == TS_VARINT)
				*ts_off = start;
			break;
		case 1: pos += 8; break;
		case 2:
			if (!read_varint(p, len, &pos, &v) || v > len - pos)
				return;
			if (key >> 3 == 9 && *seq_off == SIZE_MAX) {
				size_t off = find_seq(p + pos, v);

				if (off != SIZE_MAX)
					*seq_off = pos + off;
			}
			pos += v;
			break;
		case 5: pos += 4; break;
		default: return;
		}
	}
}

static const char hex_digits[] = "0123456789abcdef";

static void put_hex(uint8_t *p, uint64_t v, int digits)
{
	for (int i = digits - 1; i >= 0; i--) {
		p[i] = (uint8_t)hex_digits[v & 15];
		v >>= 4;
	}
}

static void put_ts(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < TS_VARINT - 1; i++) {
		p[i] = (uint8_t)(v & 0x7f) | 0x80;
		v >>= 7;
	}
	p[TS_VARINT - 1] = (uint8_t)v; /* < 0x80 while v < 2^63 */
}

static int fill_envelope(
	struct lgr_env *env, const struct load_opts *o, enum lgr_env_type type, size_t i, const char *payload)
{
	static const char *const tags[4][2] = {
		{"deployment", "cf"}, {"job", "diego-cell"}, {"origin", PROG}, {"source_type", "APP/PROC/WEB"}};
	int64_t ts = (int64_t)real_ns();
	int rc;

	env->pb->timestamp = ts;
	rc = lgr_env_set_source_id(env, o->source_id);
	if (rc == LGR_OK)
		rc = lgr_env_set_instance_id(env, "0");
	for (size_t t = 0; t < 4 && rc == LGR_OK; t++)
		rc = lgr_env_set_tag(env, tags[t][0], tags[t][1]);
	if (rc == LGR_OK && !o->no_seq) {
		char gen[SEQ_HEX + 1], seq[SEQ_HEX + 1];

		put_hex((uint8_t *)gen, o->gen, SEQ_HEX);
		gen[SEQ_HEX] = '\0';
		memset(seq, '0', SEQ_HEX); /* the real numbers are written in place before each send */
		seq[SEQ_HEX] = '\0';
		rc = lgr_env_set_tag(env, "gen", gen);
		if (rc == LGR_OK)
			rc = lgr_env_set_tag(env, "seq", seq);
	}
	if (rc != LGR_OK)
		return rc;
	switch (type) {
	case LGR_ENV_LOG: return lgr_env_set_log(env, payload, o->size, LOGGREGATOR__V2__LOG__TYPE__OUT);
	case LGR_ENV_COUNTER: return lgr_env_set_counter(env, "requests", 1, i + 1);
	case LGR_ENV_GAUGE:
		rc = lgr_env_set_gauge(env);
		if (rc == LGR_OK)
			rc = lgr_env_add_metric(env, "cpu", "percentage", 12.5);
		if (rc == LGR_OK)
			rc = lgr_env_add_metric(env, "memory", "bytes", 1048576.0);
		return rc;
	case LGR_ENV_TIMER: return lgr_env_set_timer(env, "http", ts - 5000000, ts);
	case LGR_ENV_EVENT: return lgr_env_set_event(env, "app-restart", "instance 0 restarted");
	default: return LGR_EINVAL;
	}
}

/* Encodes o->batch envelopes, types taken in turn, and maps the records. */
static int tmpl_build(struct tmpl *t, const struct load_opts *o)
{
	struct lgr_env **envs = calloc(o->batch, sizeof(*envs));
	char *payload = malloc(o->size + 1);
	size_t pos = 0;
	int rc = LGR_ENOMEM;

	memset(t, 0, sizeof(*t));
	t->rec = calloc(o->batch, sizeof(*t->rec));
	if (envs == NULL || payload == NULL || t->rec == NULL)
		goto out;
	memset(payload, 'x', o->size);
	memcpy(payload, "lgr-load message ", o->size < 17 ? o->size : 17);
	for (size_t i = 0; i < o->batch; i++) {
		envs[i] = lgr_env_new();
		if (envs[i] == NULL) {
			rc = LGR_ENOMEM;
			goto out;
		}
		rc = fill_envelope(envs[i], o, o->types[i % o->ntypes], i, payload);
		if (rc != LGR_OK)
			goto out;
	}
	rc = lgr_env_encode_batch(envs, o->batch, &t->wire, &t->len);
	if (rc != LGR_OK)
		goto out;
	for (t->n = 0; t->n < o->batch; t->n++) {
		struct tmpl_rec *r = &t->rec[t->n];
		uint64_t key, len;

		if (!read_varint(t->wire, t->len, &pos, &key) || key != ((1u << 3) | 2) ||
			!read_varint(t->wire, t->len, &pos, &len) || len > t->len - pos) {
			rc = LGR_EDECODE;
			goto out;
		}
		r->env_off = pos;
		r->env_len = len;
		find_rewritable(t->wire + pos, len, &r->ts_off, &r->seq_off);
		if (r->ts_off != SIZE_MAX)
			r->ts_off += pos;
		if (r->seq_off != SIZE_MAX)
			r->seq_off += pos;
		else if (!o->no_seq) {
			rc = LGR_EDECODE; /* the tag was set: not finding it is a bug here */
			goto out;
		}
		pos += len;
		r->end = pos;
	}
	rc = pos == t->len ? LGR_OK : LGR_EDECODE;
out:
	for (size_t i = 0; envs != NULL && i < o->batch; i++)
		lgr_env_unref(envs[i]);
	free(envs);
	free(payload);
	return rc;
}

static void tmpl_cleanup(struct tmpl *t)
{
	free(t->wire);
	free(t->rec);
}

/* ---- workers ------------------------------------------------------------------------------------------------- */

struct worker;

/* One stream (gRPC: a call, or the slot of successive unary calls) or one connection (syslog). */
struct slot {
	struct worker *w;
	struct lgr_h2_call *call; /* NULL when none is open */
	uint64_t pending;	  /* envelopes sent on the open call: acknowledged by its OK status */
	uint64_t seq;		  /* number of the next envelope on this stream */
	unsigned index;		  /* the stream's index over all threads, in its "seq" tags */
	bool blocked;		  /* the send queue is full: waiting for on_drain */
	bool done;		  /* this slot starts nothing more */
	/* syslog */
	evutil_socket_t fd;
	struct event *wev, *rev;
	size_t off;	/* position in the frame buffer */
	uint64_t bytes; /* written */
	bool connected;
	bool paused; /* rate mode: out of credit, write event removed until the next tick */
	bool shut;   /* our side is closed: waiting for the server's EOF */
};

struct worker {
	const struct load_opts *o;
	const struct tmpl *t;
	SSL_CTX *ssl_ctx;
	const uint8_t *sys_buf; /* syslog: frames, shared read-only */
	size_t sys_len;
	size_t sys_frame;
	pthread_t thread;
	struct event_base *base;
	struct lgr_h2_client *cli;
	uint8_t *wire; /* own copy of the template, timestamps rewritten */
	struct slot *slots;
	unsigned nslots;
	unsigned rr;	 /* next slot to offer a message to */
	uint64_t target; /* envelopes (lines) to send; UINT64_MAX: until the deadline */
	double rate;	 /* this worker's share; 0: flat out */
	double credit;	 /* envelopes (lines) that may be sent now */
	double last_tick;
	struct event *tick, *deadline, *grace;
	bool stopping;
	unsigned running; /* slots with an open call or connection */
	/* results */
	uint64_t sent, acked, failed, timeouts;
	char error[256]; /* the first failure */
	int rc;		 /* setup failure */
};

static void fail_note(struct worker *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void fail_note(struct worker *w, const char *fmt, ...)
{
	va_list ap;

	if (w->error[0] != '\0')
		return;
	va_start(ap, fmt);
	vsnprintf(w->error, sizeof(w->error), fmt, ap);
	va_end(ap);
}

static void finish_if_idle(struct worker *w)
{
	bool all_done = true;

	for (unsigned i = 0; i < w->nslots; i++)
		all_done = all_done && w->slots[i].done;
	if (w->running == 0 && (w->stopping || all_done))
		event_base_loopexit(w->base, NULL);
}

static void stop(struct worker *w);

/* ---- gRPC ---------------------------------------------------------------------------------------------------- */

static void call_on_drain(struct lgr_h2_call *call, void *ud);
static void call_on_close(struct lgr_h2_call *call, int status, const char *message, void *ud);
static void pump(struct worker *w);

static const struct lgr_h2_call_handlers call_handlers = {
	.on_drain = call_on_drain,
	.on_close = call_on_close,
};

/* Gives the first k envelopes the time of sending and their numbers on s. */
static void stamp(struct worker *w, const struct slot *s, size_t k)
{
	const struct tmpl_rec *rec = w->t->rec;
	uint64_t now, seq;

	if (w->o->fixed_timestamps)
		return;
	now = real_ns();
	seq = ((uint64_t)s->index << SEQ_BITS) | (s->seq & SEQ_NUM_MASK);
	for (size_t i = 0; i < k; i++) {
		if (rec[i].ts_off != SIZE_MAX)
			put_ts(w->wire + rec[i].ts_off, now + i);
		if (rec[i].seq_off != SIZE_MAX)
			put_hex(w->wire + rec[i].seq_off, seq + i, SEQ_HEX);
	}
}

static bool slot_open(struct worker *w, struct slot *s)
{
	char path[64];
	int rc;

	snprintf(path, sizeof(path), INGRESS "%s", method_names[w->o->method]);
	rc = lgr_h2_client_call(w->cli, path, &call_handlers, s, &s->call);
	if (rc != LGR_OK) {
		fail_note(w, "cannot start a call: %s", lgr_strerror(rc));
		w->failed++;
		s->done = true;
		return false;
	}
	w->running++;
	return true;
}

/* Offers k envelopes to s; returns how many its queue took. */
static size_t slot_send(struct worker *w, struct slot *s, size_t k)
{
	const struct tmpl *t = w->t;
	size_t taken = 0;
	int rc = LGR_OK;

	if (s->call == NULL && !slot_open(w, s))
		return 0;
	stamp(w, s, k);
	switch (w->o->method) {
	case METHOD_BATCH_SENDER:
		rc = lgr_h2_call_send(s->call, w->wire, t->rec[k - 1].end);
		taken = rc == LGR_OK ? k : 0;
		break;
	case METHOD_SENDER:
		for (; taken < k; taken++) {
			rc = lgr_h2_call_send(s->call, w->wire + t->rec[taken].env_off, t->rec[taken].env_len);
			if (rc != LGR_OK)
				break;
		}
		break;
	default: /* METHOD_SEND: parse_args allows no other in this mode */
		rc = lgr_h2_call_send(s->call, w->wire, t->rec[k - 1].end);
		if (rc == LGR_OK)
			rc = lgr_h2_call_close_send(s->call);
		taken = rc == LGR_OK ? k : 0;
		break;
	}
	if (rc == LGR_EFULL) {
		s->blocked = true;
	} else if (rc != LGR_OK) {
		/* Only a call that already ended refuses with EINVAL, and its on_close has been counted. */
		fail_note(w, "send refused: %s", lgr_strerror(rc));
		s->done = true;
	}
	s->pending += taken;
	s->seq += taken;
	return taken;
}

static uint64_t allowance(const struct worker *w)
{
	uint64_t left = w->target - w->sent;

	if (w->rate > 0 && w->credit < (double)left)
		left = w->credit > 0 ? (uint64_t)w->credit : 0;
	return left;
}

/* Offers messages to the streams in turn while credit lasts and some queue takes them. */
static void pump(struct worker *w)
{
	unsigned refused = 0;

	while (!w->stopping && refused < w->nslots) {
		struct slot *s = &w->slots[w->rr];
		uint64_t allow = allowance(w);
		size_t k, taken;

		if (allow == 0)
			break;
		w->rr = (w->rr + 1) % w->nslots;
		if (s->done || s->blocked || (w->o->method == METHOD_SEND && s->call != NULL)) {
			refused++;
			continue;
		}
		k = allow < w->o->batch ? (size_t)allow : w->o->batch;
		taken = slot_send(w, s, k);
		w->sent += taken;
		w->credit -= (double)taken;
		refused = taken == k ? 0 : refused + 1;
	}
	if (w->sent >= w->target)
		stop(w);
}

static void call_on_drain(struct lgr_h2_call *call, void *ud)
{
	struct slot *s = ud;

	s->blocked = false;
	pump(s->w);
}

static void call_on_close(struct lgr_h2_call *call, int status, const char *message, void *ud)
{
	struct slot *s = ud;
	struct worker *w = s->w;

	s->call = NULL;
	s->blocked = false;
	w->running--;
	if (status == LGR_GRPC_OK) {
		w->acked += s->pending;
		/* A streaming call the server ended early is over for good; a unary slot starts its next call. */
		if (w->o->method != METHOD_SEND && !w->stopping)
			s->done = true;
	} else {
		fail_note(w, "stream ended with %s%s%s", lgr_grpc_status_name(status), *message ? ": " : "", message);
		w->failed++;
		s->done = true;
	}
	s->pending = 0;
	if (!w->stopping)
		pump(w);
	finish_if_idle(w);
}

static int grpc_start(struct worker *w)
{
	const struct load_opts *o = w->o;
	struct lgr_h2_client_config cfg = {0};
	int rc;

	w->wire = malloc(w->t->len);
	if (w->wire == NULL)
		return LGR_ENOMEM;
	memcpy(w->wire, w->t->wire, w->t->len);
	cfg.host = o->host;
	cfg.port = o->port;
	cfg.ssl_ctx = w->ssl_ctx;
	cfg.server_name = o->server_name;
	cfg.max_send_queue = o->queue;
	cfg.name = PROG;
	rc = lgr_h2_client_new(w->base, &cfg, &w->cli);
	if (rc != LGR_OK)
		return rc;
	/* Streaming calls are opened at once, so that the connection carries them all from the first byte. */
	for (unsigned i = 0; i < w->nslots && o->method != METHOD_SEND; i++)
		slot_open(w, &w->slots[i]);
	pump(w);
	return LGR_OK;
}

static void grpc_stop(struct worker *w)
{
	for (unsigned i = 0; i < w->nslots; i++)
		if (w->slots[i].call != NULL && w->o->method != METHOD_SEND)
			lgr_h2_call_close_send(w->slots[i].call);
}

static void grpc_abandon(struct worker *w)
{
	for (unsigned i = 0; i < w->nslots; i++) {
		struct slot *s = &w->slots[i];

		if (s->call == NULL)
			continue;
		lgr_h2_call_cancel(s->call); /* no handler runs any more */
		s->call = NULL;
		w->running--;
		w->failed++;
		w->timeouts++;
	}
	fail_note(w, "no status within %.0f s of the end", w->o->grace);
}

/* ---- syslog -------------------------------------------------------------------------------------------------- */

static void sys_close(struct worker *w, struct slot *s, bool ok)
{
	if (s->fd < 0)
		return;
	event_del(s->wev);
	event_del(s->rev);
	close(s->fd);
	s->fd = -1;
	s->done = true;
	w->running--;
	if (ok)
		w->acked += s->bytes / w->sys_frame;
	else
		w->failed++;
	finish_if_idle(w);
}

static void sys_fail(struct worker *w, struct slot *s, const char *what, int err)
{
	fail_note(w, "%s: %s", what, strerror(err));
	sys_close(w, s, false);
}

/* Our side is done: the server reads to the end, then closes its side, which tells us it has read everything. */
static void sys_shut(struct worker *w, struct slot *s)
{
	if (s->shut)
		return;
	s->shut = true;
	event_del(s->wev);
	if (shutdown(s->fd, SHUT_WR) != 0) {
		sys_fail(w, s, "shutdown", errno);
		return;
	}
	event_add(s->rev, NULL);
}

static void sys_write(struct worker *w, struct slot *s)
{
	for (int round = 0; round < SYSLOG_ROUNDS; round++) {
		size_t want = w->sys_len - s->off;
		uint64_t in_frame = s->bytes % w->sys_frame;
		ssize_t n;

		if (w->stopping) {
			/* Only the rest of a frame begun, so that the server never sees a truncated one. */
			if (in_frame == 0) {
				sys_shut(w, s);
				return;
			}
			if (want > w->sys_frame - in_frame)
				want = w->sys_frame - in_frame;
		} else {
			uint64_t left = w->target == UINT64_MAX ? UINT64_MAX : w->target * w->sys_frame - w->sent;

			if (w->rate > 0) {
				double c = w->credit * (double)w->sys_frame;

				if (c < (double)left)
					left = c > 0 ? (uint64_t)c : 0;
			}
			if (left == 0) {
				if (w->target != UINT64_MAX && w->sent >= w->target * w->sys_frame) {
					stop(w);
				} else {
					event_del(s->wev);
					s->paused = true;
				}
				return;
			}
			if (want > left)
				want = (size_t)left;
		}
		n = send(s->fd, w->sys_buf + s->off, want, MSG_NOSIGNAL);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			return;
		if (n < 0) {
			sys_fail(w, s, "send", errno);
			return;
		}
		s->off = (s->off + (size_t)n) % w->sys_len;
		s->bytes += (uint64_t)n;
		w->sent += (uint64_t)n; /* bytes in syslog mode, until the summary */
		w->credit -= (double)n / (double)w->sys_frame;
	}
}

static void sys_on_write(evutil_socket_t fd, short what, void *arg)
{
	struct slot *s = arg;
	struct worker *w = s->w;

	if (!s->connected) {
		int err = 0;
		socklen_t len = sizeof(err);

		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
			err = errno;
		if (err != 0) {
			sys_fail(w, s, "connect", err);
			return;
		}
		s->connected = true;
	}
	sys_write(w, s);
}

static void sys_on_read(evutil_socket_t fd, short what, void *arg)
{
	struct slot *s = arg;
	char scratch[4096];
	ssize_t n = recv(fd, scratch, sizeof(scratch), 0);

	if (n == 0)
		sys_close(s->w, s, true);
	else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
		sys_fail(s->w, s, "recv", errno);
}

static int sys_connect(struct worker *w, struct slot *s, const struct addrinfo *ai)
{
	int one = 1;

	s->fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
	if (s->fd < 0)
		return LGR_EIO;
	setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	s->wev = event_new(w->base, s->fd, EV_WRITE | EV_PERSIST, sys_on_write, s);
	s->rev = event_new(w->base, s->fd, EV_READ | EV_PERSIST, sys_on_read, s);
	if (s->wev == NULL || s->rev == NULL)
		return LGR_ENOMEM;
	w->running++;
	if (connect(s->fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS) {
		sys_fail(w, s, "connect", errno);
		return LGR_OK;
	}
	event_add(s->wev, NULL);
	return LGR_OK;
}

static int sys_start(struct worker *w)
{
	struct addrinfo hints = {0}, *ai = NULL;
	char port[8];
	int rc = LGR_OK;

	hints.ai_socktype = SOCK_STREAM;
	snprintf(port, sizeof(port), "%u", w->o->port);
	if (getaddrinfo(w->o->host, port, &hints, &ai) != 0 || ai == NULL) {
		fail_note(w, "cannot resolve %s", w->o->host);
		return LGR_EINVAL;
	}
	for (unsigned i = 0; i < w->nslots && rc == LGR_OK; i++)
		rc = sys_connect(w, &w->slots[i], ai);
	freeaddrinfo(ai);
	return rc;
}

static void sys_stop(struct worker *w)
{
	for (unsigned i = 0; i < w->nslots; i++) {
		struct slot *s = &w->slots[i];

		if (s->fd < 0 || s->shut)
			continue;
		if (s->connected && s->bytes % w->sys_frame == 0)
			sys_shut(w, s);
		else
			event_add(s->wev, NULL); /* finishes the frame (or the connection) first */
	}
}

static void sys_abandon(struct worker *w)
{
	for (unsigned i = 0; i < w->nslots; i++) {
		if (w->slots[i].fd >= 0)
			w->timeouts++;
		sys_close(w, &w->slots[i], false);
	}
	fail_note(w, "the server did not close within %.0f s of the end", w->o->grace);
}

/* ---- the worker's loop --------------------------------------------------------------------------------------- */

static void on_grace(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;

	if (w->o->mode == MODE_GRPC)
		grpc_abandon(w);
	else
		sys_abandon(w);
	event_base_loopexit(w->base, NULL);
}

static void stop(struct worker *w)
{
	struct timeval tv;

	if (w->stopping)
		return;
	w->stopping = true;
	if (w->tick != NULL)
		event_del(w->tick);
	event_del(w->deadline);
	tv.tv_sec = (time_t)w->o->grace;
	tv.tv_usec = (suseconds_t)((w->o->grace - (double)tv.tv_sec) * 1e6);
	evtimer_add(w->grace, &tv);
	if (w->o->mode == MODE_GRPC)
		grpc_stop(w);
	else
		sys_stop(w);
	finish_if_idle(w);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
	stop(arg);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	double now = mono_s();
	double burst = w->rate * BURST_S;

	w->credit += w->rate * (now - w->last_tick);
	if (burst < w->o->batch)
		burst = w->o->batch;
	if (w->credit > burst)
		w->credit = burst;
	w->last_tick = now;
	if (w->o->mode == MODE_GRPC) {
		pump(w);
		return;
	}
	for (unsigned i = 0; i < w->nslots; i++) {
		struct slot *s = &w->slots[i];

		if (s->paused && s->fd >= 0) {
			s->paused = false;
			event_add(s->wev, NULL);
		}
	}
}

static void *worker_run(void *arg)
{
	struct worker *w = arg;
	struct timeval tv;

	w->base = event_base_new();
	w->deadline = w->base != NULL ? evtimer_new(w->base, on_deadline, w) : NULL;
	w->grace = w->base != NULL ? evtimer_new(w->base, on_grace, w) : NULL;
	if (w->rate > 0 && w->base != NULL) {
		w->tick = event_new(w->base, -1, EV_PERSIST, on_tick, w);
		tv = (struct timeval){.tv_sec = 0, .tv_usec = TICK_US};
		if (w->tick != NULL)
			event_add(w->tick, &tv);
		w->last_tick = mono_s();
	}
	if (w->deadline == NULL || w->grace == NULL || (w->rate > 0 && w->tick == NULL)) {
		w->rc = LGR_ENOMEM;
		goto out;
	}
	if (w->o->duration > 0) {
		tv.tv_sec = (time_t)w->o->duration;
		tv.tv_usec = (suseconds_t)((w->o->duration - (double)tv.tv_sec) * 1e6);
		evtimer_add(w->deadline, &tv);
	}
	w->rc = w->o->mode == MODE_GRPC ? grpc_start(w) : sys_start(w);
	if (w->rc == LGR_OK)
		event_base_dispatch(w->base);
out:
	/* After a setup failure calls may still be open: they end CANCELLED here, and nothing new is started. */
	w->stopping = true;
	lgr_h2_client_free(w->cli);
	for (unsigned i = 0; i < w->nslots; i++) {
		struct slot *s = &w->slots[i];

		if (s->fd >= 0)
			close(s->fd);
		if (s->wev != NULL)
			event_free(s->wev);
		if (s->rev != NULL)
			event_free(s->rev);
	}
	if (w->tick != NULL)
		event_free(w->tick);
	if (w->deadline != NULL)
		event_free(w->deadline);
	if (w->grace != NULL)
		event_free(w->grace);
	if (w->base != NULL)
		event_base_free(w->base);
	free(w->wire);
	return NULL;
}

/* ---- syslog frames ------------------------------------------------------------------------------------------- */

/* Frames of one octet-counted message of about o->size payload bytes, repeated to at least SYSLOG_BUF_MIN bytes. */
static uint8_t *syslog_frames(const struct load_opts *o, size_t *len, size_t *frame_len)
{
	char head[160], lenbuf[24];
	char *msg = NULL;
	uint8_t *buf = NULL;
	size_t hlen, mlen, llen, flen, n;

	if (o->syslog_format == 3164)
		hlen = (size_t)snprintf(head, sizeof(head), "<14>Nov 20 10:00:00 lgr-load-host %s[4242]: ", PROG);
	else
		hlen = (size_t)snprintf(
			head, sizeof(head), "<14>1 2026-11-20T10:00:00.000000+00:00 lgr-load-host %s 4242 - - ", PROG);
	mlen = hlen + o->size;
	msg = malloc(mlen);
	if (msg == NULL)
		goto out;
	memcpy(msg, head, hlen);
	memset(msg + hlen, 'x', o->size);
	memcpy(msg + hlen, "lgr-load message ", o->size < 17 ? o->size : 17);
	llen = (size_t)snprintf(lenbuf, sizeof(lenbuf), "%zu ", mlen);
	flen = llen + mlen;
	n = SYSLOG_BUF_MIN / flen + 1;
	buf = malloc(n * flen);
	if (buf == NULL)
		goto out;
	for (size_t i = 0; i < n; i++) {
		memcpy(buf + i * flen, lenbuf, llen);
		memcpy(buf + i * flen + llen, msg, mlen);
	}
	*len = n * flen;
	*frame_len = flen;
out:
	free(msg);
	return buf;
}

/* ---- sink ---------------------------------------------------------------------------------------------------- */

struct sink {
	struct event_base *base;
	bool decode;
	uint64_t calls, messages, envelopes, bytes, invalid;
	double first, last; /* monotonic seconds of the first and the last message */
};

struct sink_route {
	struct sink *sk;
	enum load_method method;
};

static int sink_drop(struct lgr_env *env, void *ud)
{
	(*(uint64_t *)ud)++;
	lgr_env_unref(env);
	return 0;
}

/* Envelopes in an EnvelopeBatch, by walking its records (what a router would see without decoding them). */
static int count_records(const uint8_t *p, size_t len, uint64_t *n)
{
	size_t pos = 0;

	while (pos < len) {
		uint64_t key, l;

		if (!read_varint(p, len, &pos, &key) || (key & 7) != 2 || !read_varint(p, len, &pos, &l) ||
			l > len - pos)
			return LGR_EDECODE;
		pos += l;
		if (key >> 3 == 1)
			(*n)++;
	}
	return LGR_OK;
}

static void sink_on_message(struct lgr_h2_stream *s, const uint8_t *msg, size_t len, void *ud)
{
	struct sink_route *r = ud;
	struct sink *sk = r->sk;
	uint64_t n = 0;
	int rc;

	if (r->method == METHOD_SENDER) {
		struct lgr_env *env = NULL;

		rc = sk->decode ? lgr_env_decode(msg, len, NULL, &env) : LGR_OK;
		lgr_env_unref(env);
		n = 1;
	} else if (sk->decode) {
		rc = lgr_env_decode_batch(msg, len, NULL, sink_drop, &n);
	} else {
		rc = count_records(msg, len, &n);
	}
	sk->last = mono_s();
	if (sk->messages++ == 0)
		sk->first = sk->last;
	sk->bytes += len;
	if (rc != LGR_OK)
		sk->invalid++;
	else
		sk->envelopes += n;
}

static void sink_on_half_close(struct lgr_h2_stream *s, void *ud)
{
	static const uint8_t none[1];

	lgr_h2_stream_send(s, none, 0); /* the empty response message */
	lgr_h2_stream_finish(s, LGR_GRPC_OK, NULL);
}

static void sink_on_close(struct lgr_h2_stream *s, bool reset, void *ud)
{
	((struct sink_route *)ud)->sk->calls++;
}

static void sink_on_signal(evutil_socket_t fd, short what, void *arg)
{
	event_base_loopexit(arg, NULL);
}

static int run_sink(const struct load_opts *o, SSL_CTX *ctx)
{
	static const struct lgr_h2_handlers handlers = {
		.on_message = sink_on_message,
		.on_half_close = sink_on_half_close,
		.on_close = sink_on_close,
	};
	struct sink sk = {0};
	struct sink_route rts[3];
	struct lgr_h2_route routes[3];
	char paths[3][64];
	struct lgr_h2_server_config cfg = {0};
	struct lgr_h2_server *srv = NULL;
	struct event *sigint = NULL, *sigterm = NULL, *timeout = NULL;
	double cpu0, secs, cpu;
	int rc;

	sk.decode = o->decode;
	sk.base = event_base_new();
	if (sk.base == NULL)
		return 1;
	for (int i = 0; i < 3; i++) {
		snprintf(paths[i], sizeof(paths[i]), INGRESS "%s", method_names[i]);
		rts[i] = (struct sink_route){&sk, (enum load_method)i};
		routes[i] = (struct lgr_h2_route){paths[i], &handlers, &rts[i]};
	}
	cfg.address = o->host;
	cfg.port = o->port;
	cfg.ssl_ctx = ctx;
	cfg.routes = routes;
	cfg.nroutes = 3;
	cfg.name = PROG;
	rc = lgr_h2_server_new(sk.base, &cfg, &srv);
	if (rc != LGR_OK) {
		fprintf(stderr, PROG ": cannot listen on %s:%u: %s\n", o->host, o->port, lgr_strerror(rc));
		goto out;
	}
	printf("port=%u\n", lgr_h2_server_port(srv));
	fflush(stdout);
	if (o->port_file != NULL) {
		FILE *f = fopen(o->port_file, "w");

		if (f == NULL || fprintf(f, "%u\n", lgr_h2_server_port(srv)) < 0 || fclose(f) != 0) {
			fprintf(stderr, PROG ": cannot write %s\n", o->port_file);
			rc = LGR_EIO;
			goto out;
		}
	}
	sigint = evsignal_new(sk.base, SIGINT, sink_on_signal, sk.base);
	sigterm = evsignal_new(sk.base, SIGTERM, sink_on_signal, sk.base);
	if (sigint == NULL || sigterm == NULL) {
		rc = LGR_ENOMEM;
		goto out;
	}
	event_add(sigint, NULL);
	event_add(sigterm, NULL);
	if (o->duration > 0) {
		struct timeval tv = {(time_t)o->duration, 0};

		timeout = evtimer_new(sk.base, sink_on_signal, sk.base);
		if (timeout == NULL) {
			rc = LGR_ENOMEM;
			goto out;
		}
		evtimer_add(timeout, &tv);
	}
	cpu0 = cpu_s();
	event_base_dispatch(sk.base);
	cpu = cpu_s() - cpu0;
	secs = sk.last - sk.first;
	printf("mode=sink calls=%" PRIu64 " messages=%" PRIu64 " envelopes=%" PRIu64 " bytes=%" PRIu64
	       " invalid=%" PRIu64 " seconds=%.3f envelopes_per_s=%.0f cpu_seconds=%.3f cpu_us_per_envelope=%.3f\n",
		sk.calls, sk.messages, sk.envelopes, sk.bytes, sk.invalid, secs,
		secs > 0 ? (double)sk.envelopes / secs : 0.0, cpu,
		sk.envelopes > 0 ? cpu * 1e6 / (double)sk.envelopes : 0.0);
out:
	lgr_h2_server_free(srv);
	if (sigint != NULL)
		event_free(sigint);
	if (sigterm != NULL)
		event_free(sigterm);
	if (timeout != NULL)
		event_free(timeout);
	event_base_free(sk.base);
	return rc == LGR_OK ? 0 : 1;
}

/* ---- receiver ------------------------------------------------------------------------------------------------ */

/*
 * --recv: subscriptions (BatchedReceiver or Receiver) on lgr_h2's client, or with --syslog a TCP listener for a
 * drain's octet-counted RFC 5424 lines. Every envelope that carries the sender's "gen" and "seq" tags is marked in
 * the bitmap of its (group, gen, stream): a mark already set is a duplicate, and at the end the numbers below the
 * highest one seen that were never marked are lost (the sender's count tells the tail, which no receiver can see).
 * The envelope's timestamp is its send time, so arrival time minus timestamp is its latency: sender and receiver
 * share the clock on one machine. Latencies go into a log-linear histogram (64 buckets per power of two, so a
 * percentile is within 1.6 %) at a cost of a few instructions per envelope.
 *
 * Groups: without --shard-id every subscription gets every envelope it selects, so each is its own group. With it
 * the subscriptions form one shard group at the router, each envelope goes to one of them, and their bitmaps are
 * merged at the end (where two members got the same envelope, that is a duplicate).
 *
 * Threads: each worker thread has its own client (one connection) and subscriptions, its own table and histogram;
 * main merges them after pthread_join. While the run lasts, main reads only the workers' atomic progress counters
 * (to end the run on --duration, --idle, --count, SIGINT or SIGTERM, which only main receives) and tells them to
 * stop through one atomic flag that each worker's loop polls.
 */
#define HIST_SUB_BITS	 6
#define HIST_SUB	 (1u << HIST_SUB_BITS)
#define HIST_N		 ((2 + 63 - HIST_SUB_BITS) * HIST_SUB)
#define SEQ_MAX_TRACKED	 (UINT64_C(1) << 31) /* numbers per stream kept in a bitmap (at most 256 MiB) */
#define RECV_POLL_MS	 50
#define DRAIN_MAX_FRAME	 (1u << 20) /* longest drain line accepted; a longer one ends its connection */
#define DRAIN_READ_CHUNK 65536u
#define REPORT_QUIET_S	 0.3

static atomic_bool recv_stop;

/* One (group, gen, stream): which numbers arrived. */
struct seqstate {
	bool used;
	uint32_t group, stream;
	uint64_t gen;
	uint64_t *bits;
	size_t nwords;
	uint64_t unique, dups;
	uint64_t top;	    /* highest number seen + 1 */
	uint64_t untracked; /* numbers at or above SEQ_MAX_TRACKED: counted, not checked */
};

/* Open addressing, grown at half full. */
struct seqtab {
	struct seqstate *v;
	size_t cap, n;
};

static size_t seq_hash(uint32_t group, uint32_t stream, uint64_t gen)
{
	uint64_t h = (gen ^ ((uint64_t)group << 32 | stream)) * UINT64_C(0x9e3779b97f4a7c15);

	return (size_t)(h ^ (h >> 29));
}

static struct seqstate *seqtab_slot(struct seqstate *v, size_t cap, uint32_t group, uint32_t stream, uint64_t gen)
{
	size_t i = seq_hash(group, stream, gen) & (cap - 1);

	while (v[i].used && (v[i].group != group || v[i].stream != stream || v[i].gen != gen))
		i = (i + 1) & (cap - 1);
	return &v[i];
}

/* The state of (group, stream, gen), created empty when new; NULL when out of memory. */
static struct seqstate *seqtab_get(struct seqtab *t, uint32_t group, uint32_t stream, uint64_t gen)
{
	struct seqstate *s;

	if (t->n * 2 >= t->cap) {
		size_t cap = t->cap > 0 ? t->cap * 2 : 64;
		struct seqstate *v = calloc(cap, sizeof(*v));

		if (v == NULL)
			return NULL;
		for (size_t i = 0; i < t->cap; i++)
			if (t->v[i].used)
				*seqtab_slot(v, cap, t->v[i].group, t->v[i].stream, t->v[i].gen) = t->v[i];
		free(t->v);
		t->v = v;
		t->cap = cap;
	}
	s = seqtab_slot(t->v, t->cap, group, stream, gen);
	if (!s->used) {
		*s = (struct seqstate){.used = true, .group = group, .stream = stream, .gen = gen};
		t->n++;
	}
	return s;
}

static void seqtab_cleanup(struct seqtab *t)
{
	for (size_t i = 0; i < t->cap; i++)
		free(t->v[i].bits);
	free(t->v);
	memset(t, 0, sizeof(*t));
}

/* Makes room for nwords words of bits (zeroed). */
static int seq_grow(struct seqstate *s, size_t nwords)
{
	size_t n = s->nwords > 0 ? s->nwords : 1024;
	uint64_t *bits;

	while (n < nwords)
		n *= 2;
	bits = realloc(s->bits, n * sizeof(*bits));
	if (bits == NULL)
		return LGR_ENOMEM;
	memset(bits + s->nwords, 0, (n - s->nwords) * sizeof(*bits));
	s->bits = bits;
	s->nwords = n;
	return LGR_OK;
}

static int seq_mark(struct seqstate *s, uint64_t num)
{
	size_t word = (size_t)(num >> 6);
	uint64_t bit = UINT64_C(1) << (num & 63);

	if (num >= SEQ_MAX_TRACKED) {
		s->untracked++;
		return LGR_OK;
	}
	if (word >= s->nwords && seq_grow(s, word + 1) != LGR_OK)
		return LGR_ENOMEM;
	if (s->bits[word] & bit) {
		s->dups++;
		return LGR_OK;
	}
	s->bits[word] |= bit;
	s->unique++;
	if (num >= s->top)
		s->top = num + 1;
	return LGR_OK;
}

/* Adds src's states to dst's: bitmaps or'ed, counts summed; seqtab_settle then counts the union. */
static int seqtab_merge(struct seqtab *dst, const struct seqtab *src)
{
	for (size_t i = 0; i < src->cap; i++) {
		const struct seqstate *s = &src->v[i];
		struct seqstate *d;

		if (!s->used)
			continue;
		d = seqtab_get(dst, s->group, s->stream, s->gen);
		if (d == NULL || (s->nwords > d->nwords && seq_grow(d, s->nwords) != LGR_OK))
			return LGR_ENOMEM;
		for (size_t w = 0; w < s->nwords; w++)
			d->bits[w] |= s->bits[w];
		d->unique += s->unique;
		d->dups += s->dups;
		d->untracked += s->untracked;
		if (s->top > d->top)
			d->top = s->top;
	}
	return LGR_OK;
}

/* After merging: numbers marked by more than one member are duplicates. */
static void seqtab_settle(struct seqtab *t)
{
	for (size_t i = 0; i < t->cap; i++) {
		struct seqstate *s = &t->v[i];
		uint64_t pop = 0;

		if (!s->used)
			continue;
		for (size_t w = 0; w < s->nwords; w++)
			pop += (uint64_t)__builtin_popcountll(s->bits[w]);
		s->dups += s->unique - pop;
		s->unique = pop;
	}
}

static size_t hist_bucket(uint64_t v)
{
	unsigned e;

	if (v < 2 * HIST_SUB)
		return (size_t)v;
	e = 63u - (unsigned)__builtin_clzll(v);
	return 2 * HIST_SUB + (e - HIST_SUB_BITS - 1) * HIST_SUB + (size_t)((v >> (e - HIST_SUB_BITS)) - HIST_SUB);
}

/* The middle of bucket b. */
static uint64_t hist_value(size_t b)
{
	unsigned e;
	uint64_t m;

	if (b < 2 * HIST_SUB)
		return b;
	e = (unsigned)((b - 2 * HIST_SUB) / HIST_SUB) + HIST_SUB_BITS + 1;
	m = (b - 2 * HIST_SUB) % HIST_SUB + HIST_SUB;
	return (m << (e - HIST_SUB_BITS)) + (UINT64_C(1) << (e - HIST_SUB_BITS)) / 2;
}

/* The q-quantile (0 < q <= 1) of n values in h, at most max, in nanoseconds; 0 when empty. */
static uint64_t hist_quantile(const uint64_t *h, uint64_t n, double q, uint64_t max)
{
	uint64_t rank = (uint64_t)(q * (double)n), seen = 0;

	if (n == 0)
		return 0;
	if ((double)rank < q * (double)n || rank == 0)
		rank++; /* the smallest rank covering q of the values (no libm here for ceil) */
	for (size_t b = 0; b < HIST_N; b++) {
		seen += h[b];
		if (seen >= rank)
			return hist_value(b) < max ? hist_value(b)
						   : max; /* the middle of the last bucket may lie beyond */
	}
	return max;
}

/* What a worker counted; merged by recv_print. */
struct rres {
	struct seqtab tab;
	uint64_t hist[HIST_N];
	uint64_t received, unsequenced, negative, invalid, nomem, failed, latency_max, connections;
	double first, last; /* monotonic seconds of the first and the last envelope */
};

struct rworker;

struct rsub {
	struct rworker *w;
	struct lgr_h2_call *call; /* NULL once ended */
	uint32_t group;
};

/* A drain's connection (--syslog). */
struct rconn {
	struct rworker *w;
	evutil_socket_t fd;
	struct event *ev;
	uint8_t *buf;
	size_t len, cap;
	struct rconn *next;
};

struct rworker {
	const struct load_opts *o;
	SSL_CTX *ssl_ctx;
	const uint8_t *req; /* the encoded request, shared read-only */
	size_t req_len;
	pthread_t thread;
	struct event_base *base;
	struct lgr_h2_client *cli;
	struct rsub *subs;
	unsigned nsubs;
	unsigned open; /* calls not ended */
	bool closing;  /* the client is being freed: the calls' ends are ours */
	struct event *poll;
	/* syslog */
	evutil_socket_t lfd;
	struct event *lev;
	struct rconn *conns;
	uint64_t connections;
	/* seen by main while the run lasts */
	atomic_bool ready;
	atomic_bool finished;
	atomic_uint_fast64_t progress; /* envelopes (lines) received */
	atomic_uint report_req;	       /* main asks for the results so far (SIGUSR1) */
	atomic_uint report_done;       /* ... and they are in snap */
	/* results: r is the worker's own until it ends (or moves it to snap for a report); main reads them after */
	struct rres r, snap;
	char error[256];
	int rc;
};

static void rfail_note(struct rworker *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void rfail_note(struct rworker *w, const char *fmt, ...)
{
	va_list ap;

	if (w->error[0] != '\0')
		return;
	va_start(ap, fmt);
	vsnprintf(w->error, sizeof(w->error), fmt, ap);
	va_end(ap);
}

/* What the receiver reads from one envelope. */
struct marks {
	uint64_t ts; /* 0: none */
	uint64_t gen, seq;
	bool has_gen, has_seq;
};

static bool parse_hex(const uint8_t *p, size_t len, uint64_t *v)
{
	*v = 0;
	if (len != SEQ_HEX)
		return false;
	for (size_t i = 0; i < len; i++) {
		uint8_t c = p[i];
		unsigned d;

		if (c >= '0' && c <= '9')
			d = c - '0';
		else if (c >= 'a' && c <= 'f')
			d = c - 'a' + 10;
		else
			return false;
		*v = *v << 4 | d;
	}
	return true;
}

/* A length-delimited field number want inside p (a map entry or a Value); false when absent or malformed. */
static bool find_bytes(const uint8_t *p, size_t len, unsigned want, const uint8_t **out, size_t *out_len)
{
	size_t pos = 0;

	while (pos < len) {
		uint64_t key, v;

		if (!read_varint(p, len, &pos, &key) || (key & 7) != 2 || !read_varint(p, len, &pos, &v) ||
			v > len - pos)
			return false;
		if (key >> 3 == want) {
			*out = p + pos;
			*out_len = (size_t)v;
			return true;
		}
		pos += v;
	}
	return false;
}

/* A tags entry (value a string) or a deprecated_tags entry (value a Value whose text is field 1). */
static void mark_tag(const uint8_t *p, size_t len, bool deprecated, struct marks *m)
{
	const uint8_t *k, *v;
	size_t klen, vlen;

	if (!find_bytes(p, len, 1, &k, &klen) || klen != 3 || !find_bytes(p, len, 2, &v, &vlen))
		return;
	if (deprecated && !find_bytes(v, vlen, 1, &v, &vlen))
		return;
	if (memcmp(k, "seq", 3) == 0)
		m->has_seq = parse_hex(v, vlen, &m->seq);
	else if (memcmp(k, "gen", 3) == 0)
		m->has_gen = parse_hex(v, vlen, &m->gen);
}

/* Walks one Envelope's fields without decoding it: the timestamp and the two tags. False when malformed. */
static bool scan_envelope(const uint8_t *p, size_t len, struct marks *m)
{
	size_t pos = 0;

	*m = (struct marks){0};
	while (pos < len) {
		uint64_t key, v;

		if (!read_varint(p, len, &pos, &key))
			return false;
		switch (key & 7) {
		case 0:
			if (!read_varint(p, len, &pos, &v))
				return false;
			if (key >> 3 == 1)
				m->ts = v;
			break;
		case 1:
			if (len - pos < 8)
				return false;
			pos += 8;
			break;
		case 2:
			if (!read_varint(p, len, &pos, &v) || v > len - pos)
				return false;
			if (key >> 3 == 9 || key >> 3 == 3)
				mark_tag(p + pos, (size_t)v, key >> 3 == 3, m);
			pos += v;
			break;
		case 5:
			if (len - pos < 4)
				return false;
			pos += 4;
			break;
		default: return false;
		}
	}
	return true;
}

/* Counts one envelope of group that arrived at now_ns (realtime). */
static void account(struct rworker *w, uint32_t group, const struct marks *m, uint64_t now_ns)
{
	w->r.received++;
	if (m->ts > 0) {
		uint64_t lat = now_ns >= m->ts ? now_ns - m->ts : 0;

		if (now_ns < m->ts)
			w->r.negative++;
		w->r.hist[hist_bucket(lat)]++;
		if (lat > w->r.latency_max)
			w->r.latency_max = lat;
	}
	if (m->has_seq && m->has_gen) {
		struct seqstate *s = seqtab_get(&w->r.tab, group, (uint32_t)(m->seq >> SEQ_BITS), m->gen);

		if (s == NULL || seq_mark(s, m->seq & SEQ_NUM_MASK) != LGR_OK)
			w->r.nomem++;
	} else {
		w->r.unsequenced++;
	}
}

static void arrived(struct rworker *w, uint64_t n)
{
	w->r.last = mono_s();
	if (w->r.first == 0)
		w->r.first = w->r.last;
	atomic_fetch_add_explicit(&w->progress, n, memory_order_relaxed);
}

static void recv_on_message(struct lgr_h2_call *call, const uint8_t *msg, size_t len, void *ud)
{
	struct rsub *sub = ud;
	struct rworker *w = sub->w;
	uint64_t now = real_ns(), before = w->r.received;
	struct marks m;
	size_t pos = 0;

	if (w->o->method == METHOD_RECEIVER) {
		if (scan_envelope(msg, len, &m))
			account(w, sub->group, &m, now);
		else
			w->r.invalid++;
	} else {
		while (pos < len) {
			uint64_t key, l;

			if (!read_varint(msg, len, &pos, &key) || (key & 7) != 2 || !read_varint(msg, len, &pos, &l) ||
				l > len - pos) {
				w->r.invalid++;
				break;
			}
			if (key >> 3 == 1) {
				if (scan_envelope(msg + pos, (size_t)l, &m))
					account(w, sub->group, &m, now);
				else
					w->r.invalid++;
			}
			pos += l;
		}
	}
	arrived(w, w->r.received - before);
}

static void recv_on_close(struct lgr_h2_call *call, int status, const char *message, void *ud)
{
	struct rsub *sub = ud;
	struct rworker *w = sub->w;

	sub->call = NULL;
	w->open--;
	if (w->closing)
		return;
	if (!atomic_load(&recv_stop)) {
		/* The server ended a subscription before the run did: the figures are short of it. */
		w->r.failed++;
		rfail_note(w, "a subscription ended with %s%s%s", lgr_grpc_status_name(status), *message ? ": " : "",
			message);
	}
	if (w->open == 0)
		event_base_loopexit(w->base, NULL);
}

static const struct lgr_h2_call_handlers recv_handlers = {
	.on_message = recv_on_message,
	.on_close = recv_on_close,
};

static void recv_on_state(struct lgr_h2_client *cli, enum lgr_h2_state state, const char *why, void *ud)
{
	struct rworker *w = ud;

	if (state == LGR_H2_READY)
		atomic_store(&w->ready, true);
	else if (state == LGR_H2_TRANSIENT_FAILURE)
		rfail_note(w, "connection failed: %s", why);
}

static int recv_grpc_start(struct rworker *w)
{
	const struct load_opts *o = w->o;
	struct lgr_h2_client_config cfg = {0};
	char path[64];
	int rc;

	cfg.host = o->host;
	cfg.port = o->port;
	cfg.ssl_ctx = w->ssl_ctx;
	cfg.server_name = o->server_name;
	cfg.on_state = recv_on_state;
	cfg.ud = w;
	cfg.name = PROG;
	if (o->keepalive == 0)
		cfg.keepalive_ms = LGR_H2_NEVER;
	else if (o->keepalive > 0)
		cfg.keepalive_ms = (unsigned)(o->keepalive * 1000 + 0.5);
	rc = lgr_h2_client_new(w->base, &cfg, &w->cli);
	if (rc != LGR_OK)
		return rc;
	snprintf(path, sizeof(path), "/loggregator.v2.Egress/%s", method_names[o->method]);
	for (unsigned i = 0; i < w->nsubs; i++) {
		struct rsub *sub = &w->subs[i];

		rc = lgr_h2_client_call(w->cli, path, &recv_handlers, sub, &sub->call);
		if (rc == LGR_OK) {
			w->open++;
			rc = lgr_h2_call_send(sub->call, w->req, w->req_len);
			if (rc == LGR_OK)
				rc = lgr_h2_call_close_send(sub->call);
		}
		if (rc != LGR_OK) {
			rfail_note(w, "cannot start a subscription: %s", lgr_strerror(rc));
			return rc;
		}
	}
	return LGR_OK;
}

/* ---- receiver: drain lines --------------------------------------------------------------------------------- */

/* Days from 1970-01-01 to a date of the proleptic Gregorian calendar (eras of 400 years of 146097 days). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
	int64_t era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static bool digits(const uint8_t *p, size_t n, int *v)
{
	*v = 0;
	for (size_t i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return false;
		*v = *v * 10 + (p[i] - '0');
	}
	return true;
}

/* An RFC 5424 TIMESTAMP (YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM)) in epoch nanoseconds; 0 when malformed. */
static uint64_t parse_rfc3339(const uint8_t *p, size_t len)
{
	int y, mo, d, h, mi, s, oh = 0, om = 0, frac_digits = 0;
	int64_t ns = 0, secs;
	size_t pos = 19;

	if (len < 20 || !digits(p, 4, &y) || p[4] != '-' || !digits(p + 5, 2, &mo) || p[7] != '-' ||
		!digits(p + 8, 2, &d) || p[10] != 'T' || !digits(p + 11, 2, &h) || p[13] != ':' ||
		!digits(p + 14, 2, &mi) || p[16] != ':' || !digits(p + 17, 2, &s) || mo < 1 || mo > 12)
		return 0;
	if (p[pos] == '.') {
		for (pos++; pos < len && p[pos] >= '0' && p[pos] <= '9'; pos++, frac_digits++)
			if (frac_digits < 9)
				ns = ns * 10 + (p[pos] - '0');
		for (int i = frac_digits; i < 9; i++)
			ns *= 10;
	}
	if (pos < len && (p[pos] == '+' || p[pos] == '-') && len - pos == 6 && digits(p + pos + 1, 2, &oh) &&
		p[pos + 3] == ':' && digits(p + pos + 4, 2, &om)) {
		if (p[pos] == '-') {
			oh = -oh;
			om = -om;
		}
	} else if (!(pos + 1 == len && p[pos] == 'Z')) {
		return 0;
	}
	secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s - oh * 3600 - om * 60;
	return secs > 0 ? (uint64_t)secs * 1000000000u + (uint64_t)ns : 0;
}

static const uint8_t *find_mem(const uint8_t *p, size_t len, const char *needle, size_t nlen)
{
	return memmem(p, len, needle, nlen);
}

/* One drain line: "<PRI>1 TIMESTAMP HOST APP PROCID - SD MSG". The tags element carries gen="..." seq="...". */
static void drain_line(struct rworker *w, const uint8_t *p, size_t len, uint64_t now)
{
	const uint8_t *ts, *sp, *q;
	struct marks m = {0};

	ts = memchr(p, ' ', len);
	sp = ts != NULL ? memchr(ts + 1, ' ', len - (size_t)(ts + 1 - p)) : NULL;
	if (len < 4 || p[0] != '<' || ts == NULL || sp == NULL) {
		w->r.invalid++;
		return;
	}
	m.ts = parse_rfc3339(ts + 1, (size_t)(sp - ts - 1));
	q = find_mem(sp, len - (size_t)(sp - p), " gen=\"", 6);
	if (q != NULL && (size_t)(p + len - q) > 6 + SEQ_HEX)
		m.has_gen = parse_hex(q + 6, SEQ_HEX, &m.gen);
	q = find_mem(sp, len - (size_t)(sp - p), " seq=\"", 6);
	if (q != NULL && (size_t)(p + len - q) > 6 + SEQ_HEX)
		m.has_seq = parse_hex(q + 6, SEQ_HEX, &m.seq);
	account(w, 0, &m, now);
}

static void conn_close(struct rconn *c)
{
	struct rworker *w = c->w;

	for (struct rconn **pp = &w->conns; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	}
	event_free(c->ev);
	close(c->fd);
	free(c->buf);
	free(c);
}

/* Octet-counted frames "LEN SP MSG" (RFC 6587); the buffer keeps an incomplete one for the next read. */
static void conn_on_read(evutil_socket_t fd, short what, void *arg)
{
	struct rconn *c = arg;
	struct rworker *w = c->w;
	uint64_t now, before = w->r.received;
	size_t pos = 0;
	ssize_t n;

	if (c->cap - c->len < DRAIN_READ_CHUNK) {
		size_t cap = c->len + DRAIN_READ_CHUNK;
		uint8_t *buf = realloc(c->buf, cap);

		if (buf == NULL) {
			w->r.nomem++;
			conn_close(c);
			return;
		}
		c->buf = buf;
		c->cap = cap;
	}
	n = recv(fd, c->buf + c->len, c->cap - c->len, 0);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (n <= 0) {
		if (c->len > 0)
			w->r.invalid++; /* a frame cut off by the end of the connection */
		conn_close(c);
		return;
	}
	c->len += (size_t)n;
	now = real_ns();
	while (pos < c->len) {
		size_t flen = 0, i = pos;

		while (i < c->len && i - pos < 8 && c->buf[i] >= '0' && c->buf[i] <= '9')
			flen = flen * 10 + (c->buf[i++] - '0');
		if (i == c->len)
			break; /* the length is not complete yet */
		if (i == pos || c->buf[i] != ' ' || flen == 0 || flen > DRAIN_MAX_FRAME) {
			w->r.invalid++;
			rfail_note(w, "a drain connection sent a line that is not octet-counted; closed");
			conn_close(c);
			arrived(w, w->r.received - before);
			return;
		}
		if (c->len - i - 1 < flen)
			break;
		drain_line(w, c->buf + i + 1, flen, now);
		pos = i + 1 + flen;
	}
	memmove(c->buf, c->buf + pos, c->len - pos);
	c->len -= pos;
	if (w->r.received > before)
		arrived(w, w->r.received - before);
}

static void on_accept(evutil_socket_t lfd, short what, void *arg)
{
	struct rworker *w = arg;
	struct rconn *c;
	evutil_socket_t fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

	if (fd < 0)
		return;
	c = calloc(1, sizeof(*c));
	if (c == NULL || (c->ev = event_new(w->base, fd, EV_READ | EV_PERSIST, conn_on_read, c)) == NULL) {
		free(c);
		close(fd);
		w->r.nomem++;
		return;
	}
	c->w = w;
	c->fd = fd;
	c->next = w->conns;
	w->conns = c;
	w->r.connections++;
	event_add(c->ev, NULL);
}

static int write_port_file(const char *path, uint16_t port)
{
	char tmp[4096];
	FILE *f;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp))
		return LGR_EINVAL;
	f = fopen(tmp, "w");
	if (f == NULL)
		return LGR_EIO;
	if (fprintf(f, "%u\n", port) < 0) {
		fclose(f);
		return LGR_EIO;
	}
	if (fclose(f) != 0 || rename(tmp, path) != 0)
		return LGR_EIO;
	return LGR_OK;
}

static int recv_syslog_start(struct rworker *w)
{
	struct addrinfo hints = {0}, *ai = NULL;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char port[8];
	int one = 1;
	uint16_t bound;

	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST;
	snprintf(port, sizeof(port), "%u", w->o->port);
	if (getaddrinfo(w->o->host, port, &hints, &ai) != 0 || ai == NULL) {
		rfail_note(w, "cannot use %s as a listen address", w->o->host);
		return LGR_EINVAL;
	}
	w->lfd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
	if (w->lfd < 0 || setsockopt(w->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
		bind(w->lfd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(w->lfd, 128) != 0 ||
		getsockname(w->lfd, (struct sockaddr *)&ss, &sl) != 0) {
		rfail_note(w, "cannot listen on %s:%u: %s", w->o->host, w->o->port, strerror(errno));
		freeaddrinfo(ai);
		return LGR_EIO;
	}
	freeaddrinfo(ai);
	bound = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
					       : ((struct sockaddr_in *)&ss)->sin_port);
	w->lev = event_new(w->base, w->lfd, EV_READ | EV_PERSIST, on_accept, w);
	if (w->lev == NULL)
		return LGR_ENOMEM;
	event_add(w->lev, NULL);
	if (w->o->port_file != NULL && write_port_file(w->o->port_file, bound) != LGR_OK) {
		rfail_note(w, "cannot write %s", w->o->port_file);
		return LGR_EIO;
	}
	atomic_store(&w->ready, true);
	return LGR_OK;
}

/* ---- receiver: the run ------------------------------------------------------------------------------------- */

static void recv_on_poll(evutil_socket_t fd, short what, void *arg)
{
	struct rworker *w = arg;

	unsigned req = atomic_load(&w->report_req);

	if (req != atomic_load(&w->report_done)) {
		w->snap = w->r;
		memset(&w->r, 0, sizeof(w->r));
		atomic_store(&w->report_done, req);
	}
	if (atomic_load(&recv_stop))
		event_base_loopexit(w->base, NULL);
}

static void *recv_run(void *arg)
{
	struct rworker *w = arg;
	struct timeval tv = {0, RECV_POLL_MS * 1000};

	w->lfd = -1;
	w->base = event_base_new();
	w->poll = w->base != NULL ? event_new(w->base, -1, EV_PERSIST, recv_on_poll, w) : NULL;
	if (w->poll == NULL) {
		w->rc = LGR_ENOMEM;
		goto out;
	}
	event_add(w->poll, &tv);
	w->rc = w->o->mode == MODE_RECV_SYSLOG ? recv_syslog_start(w) : recv_grpc_start(w);
	if (w->rc == LGR_OK)
		event_base_dispatch(w->base);
out:
	w->closing = true;
	lgr_h2_client_free(w->cli); /* calls still open end CANCELLED: not failures */
	while (w->conns != NULL)
		conn_close(w->conns);
	if (w->lev != NULL)
		event_free(w->lev);
	if (w->lfd >= 0)
		close(w->lfd);
	if (w->poll != NULL)
		event_free(w->poll);
	if (w->base != NULL)
		event_base_free(w->base);
	atomic_store(&w->finished, true);
	return NULL;
}

/* The EgressBatchRequest (same fields as EgressRequest): one selector per type, of --source-id or every source. */
static int recv_request(const struct load_opts *o, uint8_t **out, size_t *out_len)
{
	struct lgr_select_ask ask = {.shard_id = o->shard_id,
		.source_ids = &o->select_source,
		.nsource_ids = o->select_source != NULL ? 1 : 0,
		.use_preferred_tags = !o->legacy_tags};

	for (size_t i = 0; i < o->ntypes; i++)
		ask.types |= 1u << o->types[i];
	return lgr_select_req_pack(&ask, out, out_len);
}

static bool all_ready(struct rworker *ws, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		if (!atomic_load(&ws[i].ready))
			return false;
	return true;
}

static bool all_finished(struct rworker *ws, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		if (!atomic_load(&ws[i].finished))
			return false;
	return true;
}

static uint64_t progress_sum(struct rworker *ws, unsigned n)
{
	uint64_t sum = 0;

	for (unsigned i = 0; i < n; i++)
		sum += atomic_load_explicit(&ws[i].progress, memory_order_relaxed);
	return sum;
}

/*
 * Merges the results of n workers into one summary line on stdout (flushed: a script reads it while the receiver
 * runs on) and frees their tables. Returns the streams that failed.
 */
static uint64_t recv_print(const struct load_opts *o, struct rres *const *rs, unsigned n, double cpu)
{
	struct seqtab all = {0};
	uint64_t *hist = calloc(HIST_N, sizeof(*hist));
	uint64_t received = 0, unsequenced = 0, negative = 0, invalid = 0, nomem = 0, failed = 0, lat_max = 0;
	uint64_t unique = 0, dups = 0, lost = 0, untracked = 0, connections = 0, timed = 0;
	double first = 0, last = 0, secs;

	for (unsigned i = 0; i < n; i++) {
		const struct rres *r = rs[i];

		received += r->received;
		unsequenced += r->unsequenced;
		negative += r->negative;
		invalid += r->invalid;
		nomem += r->nomem;
		failed += r->failed;
		connections += r->connections;
		if (r->latency_max > lat_max)
			lat_max = r->latency_max;
		for (size_t b = 0; hist != NULL && b < HIST_N; b++)
			hist[b] += r->hist[b];
		if (r->first > 0 && (first == 0 || r->first < first))
			first = r->first;
		if (r->last > last)
			last = r->last;
		if (seqtab_merge(&all, &r->tab) != LGR_OK)
			nomem++;
		seqtab_cleanup(&rs[i]->tab);
	}
	seqtab_settle(&all);
	for (size_t i = 0; i < all.cap; i++) {
		const struct seqstate *s = &all.v[i];

		if (!s->used)
			continue;
		unique += s->unique + s->untracked;
		dups += s->dups;
		lost += s->top - s->unique;
		untracked += s->untracked;
	}
	for (size_t b = 0; hist != NULL && b < HIST_N; b++)
		timed += hist[b];
	secs = last - first;
	printf("mode=%s method=%s subscriptions=%u groups=%u received=%" PRIu64 " unique=%" PRIu64
	       " duplicates=%" PRIu64 " lost=%" PRIu64 " unsequenced=%" PRIu64 " untracked=%" PRIu64 " invalid=%" PRIu64
	       " streams_seen=%zu seconds=%.3f envelopes_per_s=%.0f latency_p50_us=%.1f"
	       " latency_p90_us=%.1f latency_p99_us=%.1f latency_p999_us=%.1f latency_max_us=%.1f"
	       " negative_latency=%" PRIu64 " failed_streams=%" PRIu64 " connections=%" PRIu64
	       " cpu_seconds=%.3f cpu_us_per_envelope=%.3f\n",
		o->mode == MODE_RECV_SYSLOG ? "recv-syslog" : "recv",
		o->mode == MODE_RECV_SYSLOG ? "tcp" : method_names[o->method],
		o->mode == MODE_RECV_SYSLOG ? 0 : o->streams,
		o->mode == MODE_RECV_SYSLOG || o->shard_id != NULL ? 1 : o->streams, received, unique, dups, lost,
		unsequenced, untracked, invalid, all.n, secs, secs > 0 ? (double)received / secs : 0.0,
		hist != NULL ? (double)hist_quantile(hist, timed, 0.5, lat_max) / 1e3 : 0.0,
		hist != NULL ? (double)hist_quantile(hist, timed, 0.9, lat_max) / 1e3 : 0.0,
		hist != NULL ? (double)hist_quantile(hist, timed, 0.99, lat_max) / 1e3 : 0.0,
		hist != NULL ? (double)hist_quantile(hist, timed, 0.999, lat_max) / 1e3 : 0.0, (double)lat_max / 1e3,
		negative, failed, connections, cpu, received > 0 ? cpu * 1e6 / (double)received : 0.0);
	fflush(stdout);
	if (nomem > 0)
		fprintf(stderr, PROG ": out of memory for %" PRIu64 " envelopes: their numbers were not checked\n",
			nomem);
	seqtab_cleanup(&all);
	free(hist);
	return failed;
}

/*
 * SIGUSR1: the figures since the last report, once nothing arrived for REPORT_QUIET_S (what was in flight is in).
 * Each running worker moves its results aside at its next poll and says so; one that ended is read directly.
 */
static void recv_report(const struct load_opts *o, struct rworker *ws, unsigned n, double *cpu_mark)
{
	struct rres *rs[MAX_THREADS];
	unsigned want = 0;
	double cpu = cpu_s();

	for (unsigned i = 0; i < n; i++)
		want = atomic_fetch_add(&ws[i].report_req, 1) + 1;
	for (;;) {
		bool all = true;

		for (unsigned i = 0; i < n; i++)
			all = all && (atomic_load(&ws[i].finished) || atomic_load(&ws[i].report_done) == want);
		if (all)
			break;
		nanosleep(&(struct timespec){0, 5000000L}, NULL);
	}
	for (unsigned i = 0; i < n; i++)
		rs[i] = atomic_load(&ws[i].report_done) == want ? &ws[i].snap : &ws[i].r;
	recv_print(o, rs, n, cpu - *cpu_mark);
	for (unsigned i = 0; i < n; i++)
		memset(rs[i], 0, sizeof(*rs[i]));
	*cpu_mark = cpu;
}

/* Main's part: waits for the end of the run (signals, --duration, --idle, --count, every worker ending). */
static void recv_watch(
	const struct load_opts *o, struct rworker *ws, unsigned n, const sigset_t *sigs, double *cpu_mark)
{
	const struct timespec poll = {0, RECV_POLL_MS * 1000000L};
	double start = mono_s(), moved = 0;
	uint64_t last = 0;
	bool announced = false, report = false;

	for (;;) {
		uint64_t now_count;
		double now;
		int sig = sigtimedwait(sigs, NULL, &poll);

		if (sig == SIGUSR1)
			report = true;
		else if (sig > 0)
			break;
		if (all_finished(ws, n))
			break;
		if (!announced && all_ready(ws, n)) {
			announced = true;
			if (o->ready_file != NULL) {
				FILE *f = fopen(o->ready_file, "w");

				if (f == NULL || fputs("ready\n", f) < 0 || fclose(f) != 0)
					fprintf(stderr, PROG ": cannot write %s\n", o->ready_file);
			}
		}
		now = mono_s();
		now_count = progress_sum(ws, n);
		if (now_count != last) {
			last = now_count;
			moved = now;
		}
		if (report && (moved == 0 || now - moved >= REPORT_QUIET_S)) {
			recv_report(o, ws, n, cpu_mark);
			report = false;
		}
		if (o->duration > 0 && now - start >= o->duration)
			break;
		if (o->idle > 0 && moved > 0 && now - moved >= o->idle)
			break;
		if (o->count > 0 && now_count >= o->count)
			break;
	}
	atomic_store(&recv_stop, true);
}

static int run_recv(const struct load_opts *o, SSL_CTX *ctx)
{
	struct rworker *ws = NULL;
	uint8_t *req = NULL;
	size_t req_len = 0;
	double cpu_mark;
	const char *error = NULL;
	unsigned nthreads = o->mode == MODE_RECV_SYSLOG ? 1 : o->threads, started = 0, assigned = 0;
	uint64_t failed;
	sigset_t sigs;
	int rc = 1;

	if (nthreads > o->streams && o->mode != MODE_RECV_SYSLOG)
		nthreads = o->streams;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL); /* the workers inherit it: only main takes the signals */
	ws = calloc(nthreads, sizeof(*ws));
	if (ws == NULL || (o->mode == MODE_RECV && recv_request(o, &req, &req_len) != LGR_OK))
		goto out;
	for (unsigned i = 0; i < nthreads; i++) {
		struct rworker *w = &ws[i];
		unsigned k = o->mode == MODE_RECV_SYSLOG ? 0 : o->streams / nthreads + (i < o->streams % nthreads);

		w->o = o;
		w->ssl_ctx = ctx;
		w->req = req;
		w->req_len = req_len;
		w->nsubs = k;
		w->subs = calloc(k > 0 ? k : 1, sizeof(*w->subs));
		if (w->subs == NULL)
			goto out;
		for (unsigned j = 0; j < k; j++)
			w->subs[j] = (struct rsub){.w = w, .group = o->shard_id != NULL ? 0 : assigned + j};
		assigned += k;
	}
	cpu_mark = cpu_s();
	for (unsigned i = 0; i < nthreads; i++) {
		if (pthread_create(&ws[i].thread, NULL, recv_run, &ws[i]) != 0) {
			fprintf(stderr, PROG ": cannot start a thread\n");
			atomic_store(&recv_stop, true);
			break;
		}
		started++;
	}
	if (started == nthreads)
		recv_watch(o, ws, nthreads, &sigs, &cpu_mark);
	for (unsigned i = 0; i < started; i++)
		pthread_join(ws[i].thread, NULL);
	{
		struct rres *rs[MAX_THREADS];

		for (unsigned i = 0; i < started; i++)
			rs[i] = &ws[i].r;
		failed = recv_print(o, rs, started, cpu_s() - cpu_mark);
	}
	rc = 0;
	for (unsigned i = 0; i < started; i++) {
		struct rworker *w = &ws[i];

		if (w->rc != LGR_OK) {
			failed++;
			if (w->error[0] == '\0')
				snprintf(w->error, sizeof(w->error), "setup failed: %s", lgr_strerror(w->rc));
		}
		if (error == NULL && w->error[0] != '\0')
			error = w->error;
	}
	if (error != NULL)
		fprintf(stderr, PROG ": %s\n", error);
	if (failed > 0 || started < nthreads)
		rc = 1;
out:
	for (unsigned i = 0; ws != NULL && i < nthreads; i++) {
		free(ws[i].subs);
		seqtab_cleanup(&ws[i].r.tab);
		seqtab_cleanup(&ws[i].snap.tab);
	}
	free(ws);
	free(req);
	return rc;
}

/* ---- options ------------------------------------------------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(f,
		"NAME\n"
		"    lgr-load - load generator for Loggregator v2 ingress over gRPC, and for syslog over TCP\n"
		"\n"
		"SYNOPSIS\n"
		"    lgr-load --addr HOST:PORT [--tls --ca F --cert F --key F [--server-name N]]\n"
		"             [--method BatchSender|Sender|Send] [--streams N] [--batch N] [--rate N]\n"
		"             [--duration S | --count N] [--size BYTES] [--types LIST] [--source-id S]\n"
		"    lgr-load --syslog --addr HOST:PORT [--format 5424|3164] [--streams N] [--rate N]\n"
		"             [--duration S | --count N] [--size BYTES]\n"
		"    lgr-load --sink --addr HOST:PORT [--tls --ca F --cert F --key F] [--port-file F] [--decode]\n"
		"    lgr-load --recv --addr HOST:PORT [--tls ...] [--method BatchedReceiver|Receiver]\n"
		"             [--subscriptions N] [--shard-id S] [--source-id S] [--types LIST] [--threads N]\n"
		"             [--ready-file F] [--duration S] [--idle S] [--count N] [--keepalive S]\n"
		"    lgr-load --recv --syslog --addr HOST:PORT [--port-file F] [--ready-file F] [--duration S]\n"
		"             [--idle S] [--count N]\n"
		"\n"
		"DESCRIPTION\n"
		"    Sends Loggregator v2 envelopes to a loggregator.v2.Ingress server (imloggregator, a router, an\n"
		"    agent) on parallel streams, as fast as the server takes them or at a target rate, then "
		"half-closes\n"
		"    every stream, waits for the statuses and prints one summary line. The envelopes are encoded "
		"once;\n"
		"    each message resends those bytes with fresh timestamps, so the generator's own cost per envelope\n"
		"    is small. Send queues are bounded: a full queue waits for the transport's drain notice.\n"
		"\n"
		"    --syslog sends octet-counted syslog lines over plain TCP (e.g. to imptcp) instead, for rsyslog's\n"
		"    own ceiling. --sink is the other end: an Ingress server that counts envelopes and prints a\n"
		"    summary when it gets SIGINT or SIGTERM, for measuring the transport without rsyslog.\n"
		"\n"
		"OPTIONS\n"
		"    --addr HOST:PORT    server (sink: address to listen on; port 0 picks one). [v6]:port accepted.\n"
		"    --tls               mutual TLS with ALPN h2 (default: cleartext h2c)\n"
		"    --ca F, --cert F, --key F\n"
		"                        PEM CA bundle, certificate and key (required with --tls)\n"
		"    --server-name N     DNS SAN the server must present (default: the host of --addr)\n"
		"    --method M          BatchSender (default; stream of EnvelopeBatch), Sender (stream of single\n"
		"                        envelopes) or Send (unary calls of one batch; --streams calls in flight)\n"
		"    --streams N         parallel streams (syslog: TCP connections), default 5\n"
		"    --threads N         worker threads, each with its own connection and share of the streams,\n"
		"                        default 1\n"
		"    --batch N           envelopes per message (Sender: per turn of a stream), default 100\n"
		"    --rate N            target envelopes (lines) per second, over all streams; 0 (default): flat out\n"
		"    --duration S        seconds of sending (default 10 unless --count is given)\n"
		"    --count N           envelopes (lines) to send; with --duration, whichever ends first. In syslog\n"
		"                        mode up to one more line per connection may be sent.\n"
		"    --size BYTES        log payload (syslog: message text) bytes, default 200\n"
		"    --types LIST        comma-separated mix of log,counter,gauge,timer,event taken in turn within a\n"
		"                        batch, default log\n"
		"    --source-id S       source_id of the envelopes, default lgr-load\n"
		"    --queue BYTES       send queue bound per stream, default 1m\n"
		"    --fixed-timestamps  send the encoded timestamps unchanged (measures the cost of refreshing them)\n"
		"    --grace S           seconds to wait for the statuses after the last send, default 30\n"
		"    --syslog            syslog over TCP with octet-counting framing, no TLS\n"
		"    --format F          syslog format: 5424 (default) or 3164\n"
		"    --sink              run the counting Ingress server\n"
		"    --port-file F       sink: write the bound port to F\n"
		"    --decode            sink: decode every envelope (default: only walk the batch records)\n"
		"    --verbose           log the transport's informational lines\n"
		"    --no-seq            sender: no \"gen\" and \"seq\" tags (receivers cannot count losses then)\n"
		"  Receiver (--recv):\n"
		"    --recv              subscribe to a loggregator.v2.Egress server (a router, a reverse log proxy)\n"
		"                        and count what arrives: envelopes, losses and duplicates by the sender's\n"
		"                        \"gen\"/\"seq\" tags, latency from their timestamps. With --syslog:\n"
		"                        listen for a drain's octet-counted RFC 5424 lines (gen=\"...\" and\n"
		"                        seq=\"...\" in tags@47450)\n"
		"    --subscriptions N   streams, each its own subscriber (--streams is the same), default 1\n"
		"    --shard-id S        every subscription joins shard group S: each envelope reaches one of them\n"
		"    --source-id S       select only source S (default: every source); --types: the selected types\n"
		"                        (default all five)\n"
		"    --legacy-tags       use_preferred_tags false (tags arrive as deprecated_tags; both are read)\n"
		"    --threads N         split the subscriptions over N threads, a connection each\n"
		"    --ready-file F      written once every connection is up (--syslog: listening)\n"
		"    --duration S        end after S seconds (default: no limit)\n"
		"    --idle S            end after S seconds without envelopes, once one arrived\n"
		"    --keepalive S       ping the server every S seconds, closing the connection when one is not\n"
		"                        answered within 20 s (default 15; 0: never ping, for a peer that is stalled\n"
		"                        on purpose)\n"
		"    --count N           end once N envelopes arrived\n"
		"    --port-file F       --syslog: write the bound port to F\n"
		"    SIGINT or SIGTERM ends the run; SIGUSR1 prints the figures since the last report (once nothing\n"
		"    arrived for 0.3 s) and starts counting over.\n"
		"    --help              this text\n"
		"    Numbers of envelopes and rates take a k or m suffix (x1000, x1000000); byte sizes take k or m\n"
		"    (KiB, MiB).\n"
		"\n"
		"OUTPUT\n"
		"    One line of key=value figures on stdout:\n"
		"    mode=grpc|syslog method=M streams=N threads=N batch=N size=N rate_target=N\n"
		"    sent=N        envelopes (lines) queued on streams (written to connections)\n"
		"    acked=N       of those, on streams that ended with status OK (syslog: on connections the server\n"
		"                  closed after reading everything)\n"
		"    failed_streams=N   streams (unary calls, connections) that ended otherwise\n"
		"    seconds=S     from the start to the last status\n"
		"    envelopes_per_s=R  acked / seconds\n"
		"    cpu_seconds=C  user + system CPU of this process (getrusage)\n"
		"    cpu_us_per_envelope=U  C / sent, in microseconds\n"
		"    gen=HEX       the run's id in the envelopes' \"gen\" tag (0 with --no-seq)\n"
		"    The first failure, if any, is described on stderr.\n"
		"    Receiver: one line per report (SIGUSR1) and one at the end:\n"
		"    mode=recv|recv-syslog method=M subscriptions=N groups=G (subscriptions that each get every\n"
		"                  envelope; 1 with --shard-id)\n"
		"    received=N    envelopes (lines) that arrived, every subscription counted\n"
		"    unique=N      distinct (group, gen, stream, number) among them\n"
		"    duplicates=N  arrivals of a number its group already had\n"
		"    lost=N        numbers below the highest of their stream that never arrived (the tail of a run is\n"
		"                  only known to the sender: loss = 1 - unique / (sent x groups))\n"
		"    unsequenced=N without the tags; untracked=N numbers too high to track (counted, not checked);\n"
		"    invalid=N     messages or lines that do not parse; streams_seen=N (group, gen, stream) seen\n"
		"    seconds=S envelopes_per_s=R  first to last arrival\n"
		"    latency_p50_us .. latency_p999_us, latency_max_us  arrival minus envelope timestamp (1.6 %%)\n"
		"    negative_latency=N  timestamps in the future (clocks apart), counted as 0\n"
		"    failed_streams=N  subscriptions the server ended; connections=N (--syslog) accepted\n"
		"    cpu_seconds=C cpu_us_per_envelope=U  this process, per received envelope\n"
		"\n"
		"EXIT STATUS\n"
		"    0 when every stream ended OK; 1 when any ended otherwise or the run could not start; 2 for a\n"
		"    usage error.\n"
		"\n"
		"EXAMPLES\n"
		"    lgr-load --addr 127.0.0.1:3458 --duration 20\n"
		"    lgr-load --addr 127.0.0.1:8082 --tls --ca ca.crt --cert metron.crt --key metron.key \\\n"
		"             --server-name doppler --rate 300k --duration 20 --types log,counter,gauge\n"
		"    lgr-load --syslog --addr 127.0.0.1:5140 --duration 20\n"
		"    lgr-load --recv --addr 127.0.0.1:8083 --tls --ca ca.crt --cert rlp.crt --key rlp.key \\\n"
		"             --server-name doppler --subscriptions 100 --ready-file /tmp/ready --idle 2\n");
}

/* A count with an optional k/m suffix (decimal), or a size with k/m (binary) when binary is set. */
static int parse_num(const char *s, bool binary, uint64_t *out)
{
	char *end;
	unsigned long long v;
	uint64_t mult = 1;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || end == s || *s == '-')
		return -1;
	if (*end == 'k' || *end == 'K')
		mult = binary ? 1024 : 1000;
	else if (*end == 'm' || *end == 'M')
		mult = binary ? 1024 * 1024 : 1000000;
	else if (*end != '\0')
		return -1;
	if (mult != 1 && end[1] != '\0')
		return -1;
	if (v > UINT64_MAX / mult)
		return -1;
	*out = v * mult;
	return 0;
}

static int parse_seconds(const char *s, double *out)
{
	char *end;

	errno = 0;
	*out = strtod(s, &end);
	return errno == 0 && end != s && *end == '\0' && *out >= 0 && isfinite(*out) && *out < 1e7 ? 0 : -1;
}

static int parse_addr(const char *s, struct load_opts *o)
{
	const char *colon;
	const char *host = s;
	size_t hlen;
	uint64_t port;

	if (*s == '[') {
		const char *close = strchr(s, ']');

		if (close == NULL || close[1] != ':')
			return -1;
		host = s + 1;
		hlen = (size_t)(close - host);
		colon = close + 1;
	} else {
		colon = strrchr(s, ':');
		if (colon == NULL)
			return -1;
		hlen = (size_t)(colon - s);
	}
	if (hlen == 0 || hlen >= sizeof(o->host) || parse_num(colon + 1, false, &port) != 0 || port > 65535)
		return -1;
	memcpy(o->host, host, hlen);
	o->host[hlen] = '\0';
	o->port = (uint16_t)port;
	return 0;
}

static int parse_types(const char *s, struct load_opts *o)
{
	static const enum lgr_env_type all[] = {
		LGR_ENV_LOG, LGR_ENV_COUNTER, LGR_ENV_GAUGE, LGR_ENV_TIMER, LGR_ENV_EVENT};
	char *copy = strdup(s), *save = NULL;
	int rc = 0;

	if (copy == NULL)
		return -1;
	o->ntypes = 0;
	for (char *tok = strtok_r(copy, ",", &save); tok != NULL && rc == 0; tok = strtok_r(NULL, ",", &save)) {
		size_t i;

		for (i = 0; i < 5 && strcmp(tok, lgr_env_type_name(all[i])) != 0; i++)
			;
		if (i == 5 || o->ntypes == 5)
			rc = -1;
		else
			o->types[o->ntypes++] = all[i];
	}
	free(copy);
	return rc == 0 && o->ntypes > 0 ? 0 : -1;
}

enum {
	OPT_ADDR = 256,
	OPT_TLS,
	OPT_CA,
	OPT_CERT,
	OPT_KEY,
	OPT_SERVER_NAME,
	OPT_STREAMS,
	OPT_THREADS,
	OPT_METHOD,
	OPT_BATCH,
	OPT_RATE,
	OPT_DURATION,
	OPT_COUNT,
	OPT_SIZE,
	OPT_TYPES,
	OPT_SOURCE_ID,
	OPT_QUEUE,
	OPT_FIXED_TS,
	OPT_GRACE,
	OPT_SYSLOG,
	OPT_FORMAT,
	OPT_SINK,
	OPT_PORT_FILE,
	OPT_DECODE,
	OPT_VERBOSE,
	OPT_HELP,
	OPT_NO_SEQ,
	OPT_RECV,
	OPT_SUBSCRIPTIONS,
	OPT_SHARD_ID,
	OPT_LEGACY_TAGS,
	OPT_IDLE,
	OPT_READY,
	OPT_KEEPALIVE,
};

static const struct option longopts[] = {
	{"addr", required_argument, NULL, OPT_ADDR},
	{"tls", no_argument, NULL, OPT_TLS},
	{"ca", required_argument, NULL, OPT_CA},
	{"cert", required_argument, NULL, OPT_CERT},
	{"key", required_argument, NULL, OPT_KEY},
	{"server-name", required_argument, NULL, OPT_SERVER_NAME},
	{"streams", required_argument, NULL, OPT_STREAMS},
	{"threads", required_argument, NULL, OPT_THREADS},
	{"method", required_argument, NULL, OPT_METHOD},
	{"batch", required_argument, NULL, OPT_BATCH},
	{"rate", required_argument, NULL, OPT_RATE},
	{"duration", required_argument, NULL, OPT_DURATION},
	{"count", required_argument, NULL, OPT_COUNT},
	{"size", required_argument, NULL, OPT_SIZE},
	{"types", required_argument, NULL, OPT_TYPES},
	{"source-id", required_argument, NULL, OPT_SOURCE_ID},
	{"queue", required_argument, NULL, OPT_QUEUE},
	{"fixed-timestamps", no_argument, NULL, OPT_FIXED_TS},
	{"grace", required_argument, NULL, OPT_GRACE},
	{"syslog", no_argument, NULL, OPT_SYSLOG},
	{"format", required_argument, NULL, OPT_FORMAT},
	{"sink", no_argument, NULL, OPT_SINK},
	{"port-file", required_argument, NULL, OPT_PORT_FILE},
	{"decode", no_argument, NULL, OPT_DECODE},
	{"verbose", no_argument, NULL, OPT_VERBOSE},
	{"help", no_argument, NULL, OPT_HELP},
	{"no-seq", no_argument, NULL, OPT_NO_SEQ},
	{"recv", no_argument, NULL, OPT_RECV},
	{"subscriptions", required_argument, NULL, OPT_SUBSCRIPTIONS},
	{"shard-id", required_argument, NULL, OPT_SHARD_ID},
	{"legacy-tags", no_argument, NULL, OPT_LEGACY_TAGS},
	{"idle", required_argument, NULL, OPT_IDLE},
	{"ready-file", required_argument, NULL, OPT_READY},
	{"keepalive", required_argument, NULL, OPT_KEEPALIVE},
	{NULL, 0, NULL, 0},
};

/* Returns 0, 1 after --help, or -1 with a message on stderr. */
static int parse_args(int argc, char **argv, struct load_opts *o)
{
	bool have_addr = false, recv = false, have_types = false, have_source = false, have_streams = false;
	uint64_t v;
	int c;

	*o = (struct load_opts){.streams = 5,
		.threads = 1,
		.batch = 100,
		.size = 200,
		.source_id = PROG,
		.queue = DEFAULT_QUEUE,
		.grace = 30,
		.syslog_format = 5424,
		.ntypes = 1,
		.types = {LGR_ENV_LOG},
		.keepalive = -1,
		.method = METHOD_DEFAULT};
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		int bad = 0;

		switch (c) {
		case OPT_ADDR:
			bad = parse_addr(optarg, o);
			have_addr = true;
			break;
		case OPT_TLS: o->tls = true; break;
		case OPT_CA: o->ca = optarg; break;
		case OPT_CERT: o->cert = optarg; break;
		case OPT_KEY: o->key = optarg; break;
		case OPT_SERVER_NAME: o->server_name = optarg; break;
		case OPT_STREAMS:
		case OPT_SUBSCRIPTIONS:
			bad = parse_num(optarg, false, &v) != 0 || v == 0 || v > 100000;
			o->streams = (unsigned)v;
			have_streams = true;
			break;
		case OPT_THREADS:
			bad = parse_num(optarg, false, &v) != 0 || v == 0 || v > MAX_THREADS;
			o->threads = (unsigned)v;
			break;
		case OPT_METHOD:
			for (v = 0; v < METHOD_DEFAULT && strcasecmp(optarg, method_names[v]) != 0; v++)
				;
			bad = v == METHOD_DEFAULT;
			o->method = (enum load_method)v;
			break;
		case OPT_BATCH:
			bad = parse_num(optarg, false, &v) != 0 || v == 0 || v > 65536;
			o->batch = (unsigned)v;
			break;
		case OPT_RATE: bad = parse_num(optarg, false, &o->rate); break;
		case OPT_DURATION: bad = parse_seconds(optarg, &o->duration); break;
		case OPT_COUNT: bad = parse_num(optarg, false, &o->count); break;
		case OPT_SIZE:
			bad = parse_num(optarg, true, &v) != 0 || v > (1u << 24);
			o->size = (size_t)v;
			break;
		case OPT_TYPES:
			bad = parse_types(optarg, o);
			have_types = true;
			break;
		case OPT_SOURCE_ID:
			o->source_id = optarg;
			have_source = true;
			break;
		case OPT_QUEUE:
			bad = parse_num(optarg, true, &v) != 0 || v == 0 || v > (1u << 30);
			o->queue = (size_t)v;
			break;
		case OPT_FIXED_TS: o->fixed_timestamps = true; break;
		case OPT_GRACE: bad = parse_seconds(optarg, &o->grace); break;
		case OPT_SYSLOG: o->mode = MODE_SYSLOG; break;
		case OPT_FORMAT:
			bad = strcmp(optarg, "5424") != 0 && strcmp(optarg, "3164") != 0;
			o->syslog_format = atoi(optarg);
			break;
		case OPT_SINK: o->mode = MODE_SINK; break;
		case OPT_PORT_FILE: o->port_file = optarg; break;
		case OPT_DECODE: o->decode = true; break;
		case OPT_VERBOSE: o->verbose = true; break;
		case OPT_HELP: usage(stdout); return 1;
		case OPT_NO_SEQ: o->no_seq = true; break;
		case OPT_RECV: recv = true; break;
		case OPT_SHARD_ID: o->shard_id = optarg; break;
		case OPT_LEGACY_TAGS: o->legacy_tags = true; break;
		case OPT_IDLE: bad = parse_seconds(optarg, &o->idle); break;
		case OPT_READY: o->ready_file = optarg; break;
		case OPT_KEEPALIVE: bad = parse_seconds(optarg, &o->keepalive) || o->keepalive > 86400; break;
		default: return -1;
		}
		if (bad) {
			fprintf(stderr, PROG ": invalid value for --%s: %s\n", longopts[c - OPT_ADDR].name, optarg);
			return -1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, PROG ": unexpected argument %s\n", argv[optind]);
		return -1;
	}
	if (!have_addr) {
		fprintf(stderr, PROG ": --addr HOST:PORT is required\n");
		return -1;
	}
	if (recv) {
		if (o->mode == MODE_SINK) {
			fprintf(stderr, PROG ": --recv and --sink exclude each other\n");
			return -1;
		}
		o->mode = o->mode == MODE_SYSLOG ? MODE_RECV_SYSLOG : MODE_RECV;
		if (o->method == METHOD_DEFAULT)
			o->method = METHOD_BATCHED_RECEIVER;
		if (o->method != METHOD_BATCHED_RECEIVER && o->method != METHOD_RECEIVER) {
			fprintf(stderr, PROG ": --recv takes --method BatchedReceiver or Receiver\n");
			return -1;
		}
		if (!have_types) {
			static const enum lgr_env_type all[] = {
				LGR_ENV_LOG, LGR_ENV_COUNTER, LGR_ENV_GAUGE, LGR_ENV_TIMER, LGR_ENV_EVENT};

			memcpy(o->types, all, sizeof(all));
			o->ntypes = 5;
		}
		o->select_source = have_source ? o->source_id : NULL;
		if (!have_streams)
			o->streams = 1;
		if (o->mode == MODE_RECV_SYSLOG && o->port == 0 && o->port_file == NULL) {
			fprintf(stderr, PROG ": --recv --syslog with port 0 needs --port-file\n");
			return -1;
		}
	} else {
		if (o->method == METHOD_DEFAULT)
			o->method = METHOD_BATCH_SENDER;
		if (o->method > METHOD_SEND) {
			fprintf(stderr, PROG ": %s is a --recv method\n", method_names[o->method]);
			return -1;
		}
	}
	if (o->tls && (o->ca == NULL || o->cert == NULL || o->key == NULL)) {
		fprintf(stderr, PROG ": --tls needs --ca, --cert and --key\n");
		return -1;
	}
	if (o->tls && (o->mode == MODE_SYSLOG || o->mode == MODE_RECV_SYSLOG)) {
		fprintf(stderr, PROG ": --syslog speaks plain TCP only\n");
		return -1;
	}
	if (o->mode != MODE_SINK && o->mode != MODE_RECV_SYSLOG && o->port == 0) {
		fprintf(stderr, PROG ": --addr needs a port\n");
		return -1;
	}
	if (o->duration == 0 && o->count == 0 && (o->mode == MODE_GRPC || o->mode == MODE_SYSLOG))
		o->duration = 10;
	if (o->threads > o->streams)
		o->threads = o->streams;
	if (!o->no_seq && getrandom(&o->gen, sizeof(o->gen), 0) != (ssize_t)sizeof(o->gen))
		o->gen = real_ns() ^ ((uint64_t)getpid() << 32);
	return 0;
}

static int make_ssl_ctx(const struct load_opts *o, SSL_CTX **ctx)
{
	struct lgr_tls_config cfg = {0};
	char err[512];
	int rc;

	*ctx = NULL;
	if (!o->tls)
		return LGR_OK;
	cfg.ca_file = o->ca;
	cfg.cert_file = o->cert;
	cfg.key_file = o->key;
	cfg.server_name = o->server_name;
	cfg.alpn = h2_alpn;
	cfg.require_client_cert = true;
	rc = o->mode == MODE_SINK ? lgr_tls_server_ctx(&cfg, ctx, err, sizeof(err))
				  : lgr_tls_client_ctx(&cfg, ctx, err, sizeof(err));
	if (rc != LGR_OK)
		fprintf(stderr, PROG ": TLS: %s\n", err);
	return rc;
}

/* ---- main ---------------------------------------------------------------------------------------------------- */

int main(int argc, char **argv)
{
	struct load_opts o;
	struct tmpl t = {0};
	struct worker *ws = NULL;
	SSL_CTX *ctx = NULL;
	uint8_t *sys_buf = NULL;
	size_t sys_len = 0, sys_frame = 1;
	uint64_t sent = 0, acked = 0, failed = 0, assigned = 0, total;
	double t0, cpu0, secs, cpu;
	const char *error = NULL;
	unsigned started = 0, streams_before = 0;
	int rc = parse_args(argc, argv, &o);

	if (rc != 0)
		return rc > 0 ? 0 : 2;
	verbose = o.verbose;
	signal(SIGPIPE, SIG_IGN);
	/* Send queues fill and empty in bursts (a tick's worth of messages at a time): keep the freed heap instead of
	 * returning it to the kernel after every burst and faulting it in again for the next one. */
	mallopt(M_TRIM_THRESHOLD, 256 << 20);
	mallopt(M_MMAP_THRESHOLD, 64 << 20);
	lgr_log_set(on_log, NULL);
	if (make_ssl_ctx(&o, &ctx) != LGR_OK)
		return 1;
	if (o.mode == MODE_SINK) {
		rc = run_sink(&o, ctx);
		SSL_CTX_free(ctx);
		return rc;
	}
	if (o.mode == MODE_RECV || o.mode == MODE_RECV_SYSLOG) {
		rc = run_recv(&o, ctx);
		SSL_CTX_free(ctx);
		return rc;
	}
	if (o.mode == MODE_GRPC && (rc = tmpl_build(&t, &o)) != LGR_OK) {
		fprintf(stderr, PROG ": cannot build the envelopes: %s\n", lgr_strerror(rc));
		rc = 1;
		goto out;
	}
	if (o.mode == MODE_SYSLOG && (sys_buf = syslog_frames(&o, &sys_len, &sys_frame)) == NULL) {
		rc = 1;
		goto out;
	}
	ws = calloc(o.threads, sizeof(*ws));
	if (ws == NULL) {
		rc = 1;
		goto out;
	}
	total = o.count > 0 ? o.count : UINT64_MAX;
	for (unsigned i = 0; i < o.threads; i++) {
		struct worker *w = &ws[i];
		unsigned n = o.streams / o.threads + (i < o.streams % o.threads ? 1 : 0);

		w->o = &o;
		w->t = &t;
		w->ssl_ctx = ctx;
		w->sys_buf = sys_buf;
		w->sys_len = sys_len;
		w->sys_frame = sys_frame;
		w->nslots = n;
		w->slots = calloc(n, sizeof(*w->slots));
		if (w->slots == NULL) {
			rc = 1;
			goto out;
		}
		for (unsigned j = 0; j < n; j++)
			w->slots[j] = (struct slot){.w = w, .fd = -1, .index = streams_before + j};
		streams_before += n;
		/* Shares in proportion to the streams; the last worker takes what rounding left. */
		if (total == UINT64_MAX)
			w->target = total;
		else
			w->target = i + 1 < o.threads ? total / o.streams * n : total - assigned;
		assigned += w->target == UINT64_MAX ? 0 : w->target;
		w->rate = (double)o.rate * n / o.streams;
		w->credit = w->rate > 0 ? o.batch : 0;
	}
	cpu0 = cpu_s();
	t0 = mono_s();
	for (unsigned i = 0; i < o.threads; i++) {
		if (pthread_create(&ws[i].thread, NULL, worker_run, &ws[i]) != 0) {
			fprintf(stderr, PROG ": cannot start a thread\n");
			rc = 1;
			break;
		}
		started++;
	}
	for (unsigned i = 0; i < started; i++)
		pthread_join(ws[i].thread, NULL);
	secs = mono_s() - t0;
	cpu = cpu_s() - cpu0;
	for (unsigned i = 0; i < started; i++) {
		struct worker *w = &ws[i];

		if (o.mode == MODE_SYSLOG) {
			for (unsigned j = 0; j < w->nslots; j++)
				sent += w->slots[j].bytes / sys_frame;
		} else {
			sent += w->sent;
		}
		acked += w->acked;
		failed += w->failed;
		if (w->rc != LGR_OK) {
			failed++;
			if (w->error[0] == '\0')
				snprintf(w->error, sizeof(w->error), "setup failed: %s", lgr_strerror(w->rc));
		}
		if (error == NULL && w->error[0] != '\0')
			error = w->error;
	}
	printf("mode=%s method=%s streams=%u threads=%u batch=%u size=%zu rate_target=%" PRIu64 " sent=%" PRIu64
	       " acked=%" PRIu64 " failed_streams=%" PRIu64 " seconds=%.3f envelopes_per_s=%.0f cpu_seconds=%.3f"
	       " cpu_us_per_envelope=%.3f gen=%016" PRIx64 "\n",
		o.mode == MODE_SYSLOG ? "syslog" : "grpc", o.mode == MODE_SYSLOG ? "tcp" : method_names[o.method],
		o.streams, o.threads, o.batch, o.size, o.rate, sent, acked, failed, secs,
		secs > 0 ? (double)acked / secs : 0.0, cpu, sent > 0 ? cpu * 1e6 / (double)sent : 0.0,
		o.mode == MODE_GRPC && !o.no_seq ? o.gen : 0);
	if (error != NULL)
		fprintf(stderr, PROG ": %s\n", error);
	if (failed > 0)
		rc = 1;
out:
	for (unsigned i = 0; ws != NULL && i < o.threads; i++)
		free(ws[i].slots);
	free(ws);
	free(sys_buf);
	tmpl_cleanup(&t);
	SSL_CTX_free(ctx);
	return rc;
}
