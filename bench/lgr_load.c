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
 * Threads: each worker thread has its own event_base, its own client (one TCP connection) and its share of the
 * streams, rate and count; workers share only read-only data (options, the encoded template, the SSL_CTX) and
 * their counters are read by main after pthread_join.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "lgr.h"
#include "lgr_env.h"
#include "lgr_grpc.h"
#include "lgr_h2.h"
#include "lgr_tls.h"

#define PROG	       "lgr-load"
#define TICK_US	       1000   /* rate mode: credit is added every millisecond */
#define BURST_S	       0.05   /* rate mode: at most 50 ms of credit saved up after a stall */
#define SYSLOG_BUF_MIN 65536u /* syslog mode: bytes of ready-made frames written round-robin */
#define SYSLOG_ROUNDS  64     /* syslog mode: writes per readiness event, so connections take turns */
#define TS_VARINT      9      /* bytes of a varint in [2^56, 2^63): every epoch-ns timestamp after 1972 */
#define DEFAULT_QUEUE  (1u << 20)
#define INGRESS	       "/loggregator.v2.Ingress/"

enum load_mode { MODE_GRPC, MODE_SYSLOG, MODE_SINK };
enum load_method { METHOD_BATCH_SENDER, METHOD_SENDER, METHOD_SEND };

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
	double grace;	       /* seconds to wait for the statuses after the last send */
	int syslog_format;     /* 5424 or 3164 */
	const char *port_file; /* sink */
	bool decode;	       /* sink */
	bool verbose;
};

static const char *const method_names[] = {"BatchSender", "Sender", "Send"};
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
	size_t ts_off; /* its 9-byte timestamp varint; SIZE_MAX: not rewritable */
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

/* The offset of the value of field 1 (timestamp, varint) in an Envelope, when it takes TS_VARINT bytes. */
static size_t find_timestamp(const uint8_t *p, size_t len)
{
	size_t pos = 0;

	while (pos < len) {
		uint64_t key, v;
		size_t start;

		if (!read_varint(p, len, &pos, &key))
			break;
		start = pos;
		switch (key & 7) {
		case 0:
			if (!read_varint(p, len, &pos, &v))
				return SIZE_MAX;
			if (key >> 3 == 1)
				return pos - start == TS_VARINT ? start : SIZE_MAX;
			break;
		case 1: pos += 8; break;
		case 2:
			if (!read_varint(p, len, &pos, &v) || v > len - pos)
				return SIZE_MAX;
			pos += v;
			break;
		case 5: pos += 4; break;
		default: return SIZE_MAX;
		}
	}
	return SIZE_MAX;
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
		r->ts_off = find_timestamp(t->wire + pos, len);
		if (r->ts_off != SIZE_MAX)
			r->ts_off += pos;
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

static void stamp(struct worker *w, size_t k)
{
	uint64_t now;

	if (w->o->fixed_timestamps)
		return;
	now = real_ns();
	for (size_t i = 0; i < k; i++)
		if (w->t->rec[i].ts_off != SIZE_MAX)
			put_ts(w->wire + w->t->rec[i].ts_off, now + i);
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
	stamp(w, k);
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
	case METHOD_SEND:
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
		"    The first failure, if any, is described on stderr.\n"
		"\n"
		"EXIT STATUS\n"
		"    0 when every stream ended OK; 1 when any ended otherwise or the run could not start; 2 for a\n"
		"    usage error.\n"
		"\n"
		"EXAMPLES\n"
		"    lgr-load --addr 127.0.0.1:3458 --duration 20\n"
		"    lgr-load --addr 127.0.0.1:8082 --tls --ca ca.crt --cert metron.crt --key metron.key \\\n"
		"             --server-name doppler --rate 300k --duration 20 --types log,counter,gauge\n"
		"    lgr-load --syslog --addr 127.0.0.1:5140 --duration 20\n");
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
	{NULL, 0, NULL, 0},
};

/* Returns 0, 1 after --help, or -1 with a message on stderr. */
static int parse_args(int argc, char **argv, struct load_opts *o)
{
	bool have_addr = false;
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
		.types = {LGR_ENV_LOG}};
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
			bad = parse_num(optarg, false, &v) != 0 || v == 0 || v > 100000;
			o->streams = (unsigned)v;
			break;
		case OPT_THREADS:
			bad = parse_num(optarg, false, &v) != 0 || v == 0 || v > 64;
			o->threads = (unsigned)v;
			break;
		case OPT_METHOD:
			for (v = 0; v < 3 && strcasecmp(optarg, method_names[v]) != 0; v++)
				;
			bad = v == 3;
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
		case OPT_TYPES: bad = parse_types(optarg, o); break;
		case OPT_SOURCE_ID: o->source_id = optarg; break;
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
	if (o->tls && (o->ca == NULL || o->cert == NULL || o->key == NULL)) {
		fprintf(stderr, PROG ": --tls needs --ca, --cert and --key\n");
		return -1;
	}
	if (o->tls && o->mode == MODE_SYSLOG) {
		fprintf(stderr, PROG ": --syslog speaks plain TCP only\n");
		return -1;
	}
	if (o->mode != MODE_SINK && o->port == 0) {
		fprintf(stderr, PROG ": --addr needs a port\n");
		return -1;
	}
	if (o->duration == 0 && o->count == 0 && o->mode != MODE_SINK)
		o->duration = 10;
	if (o->threads > o->streams)
		o->threads = o->streams;
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
	unsigned started = 0;
	int rc = parse_args(argc, argv, &o);

	if (rc != 0)
		return rc > 0 ? 0 : 2;
	verbose = o.verbose;
	signal(SIGPIPE, SIG_IGN);
	lgr_log_set(on_log, NULL);
	if (make_ssl_ctx(&o, &ctx) != LGR_OK)
		return 1;
	if (o.mode == MODE_SINK) {
		rc = run_sink(&o, ctx);
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
			w->slots[j] = (struct slot){.w = w, .fd = -1};
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
	       " cpu_us_per_envelope=%.3f\n",
		o.mode == MODE_SYSLOG ? "syslog" : "grpc", o.mode == MODE_SYSLOG ? "tcp" : method_names[o.method],
		o.streams, o.threads, o.batch, o.size, o.rate, sent, acked, failed, secs,
		secs > 0 ? (double)acked / secs : 0.0, cpu, sent > 0 ? cpu * 1e6 / (double)sent : 0.0);
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
