/*
 * omf_drains.c: the drains of one omfirehose action (omf.h): each app's envelopes to the syslog and HTTPS drains it
 * is bound to, in Cloud Foundry's RFC 5424 form or Heroku Logplex's (drains.md).
 *
 * Each bound drain (an app and a URL, or an aggregate URL) is one internal subscriber of the egress: selectors for
 * the app's source id (any source for an aggregate drain) and the types its URL asks for, a lazy ring of
 * drains.buffer envelopes (the per-drain drop-oldest buffer, allocated on the drain's first envelope) and a sink
 * that formats each envelope with lgr_syslog and offers the lines to the drain's writer (lgr_dwriter.h). A writer
 * that cannot take more answers LGR_EFULL; the sink then answers LGR_EFULL too and the subscriber waits, its ring
 * keeping the newest, until the writer's on_ready resumes it. So a dead or slow drain only ever loses its own
 * oldest envelopes; the writers retry with their own backoff.
 *
 * Writers are made on a drain's first line and closed after idle_ms without traffic. Losses (ring drops, lines a
 * writer lost or still held when it was closed, envelopes of a drain whose writer failed for good) are counted per
 * drain (in its own statistics object, omf_dstats_ops, made on its first envelope), logged with the anonymised URL
 * and told into the app's own stream in CF's words ("N messages lost for application ..."), at most once per
 * REPORT_MS per drain. Refused bindings and writer failures worth telling (DNS, deny ranges, certificates) are
 * logged, counted and told into the app's stream too. Those notices are envelopes published through the egress, so
 * the app's gRPC subscribers and its other drains see them, as CF's syslog agent does with its app log, and kept in
 * the gateway's recent store like every other envelope of the app. A Logplex HTTPS drain is told its own ring drops
 * as Logplex does, with an L10 notice in its stream (lgr_dw_overflow).
 *
 * Bindings: a snapshot (lgr_bindings) from the bindings file (read at startup, on HUP and when its stat changes,
 * checked every TICK_MS) or from the bindings URL (fetched over mutual TLS by a thread of its own, every poll_ms with
 * jitter), plus the aggregate URLs and the static bindings of the configuration (drains.static), merged into every
 * snapshot so that a reload keeps them. Applying a snapshot merges it with the running drains (both sorted by app
 * and URL): drains whose binding is unchanged keep their subscriber and writer, others are subscribed or
 * unsubscribed.
 *
 * Threads: everything but omf_drains_new, _start, _reload and _free and the poller runs on the egress's network
 * thread. Those four and the poller reach it through an eventfd (cmd_ev) and the fields under mu: requests (start,
 * reload, stop), a snapshot the poller fetched, and notices to publish. The loop never waits for another thread;
 * omf_drains_free waits on cv for the loop to have stopped the drains (at most budget_ms for writers to send what
 * they hold, then everything is released on the loop). The per-drain statistics objects are made and destroyed on
 * the loop, never under mu.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <event2/event.h>
#include <http_parser.h>
#include <openssl/err.h>

#include "lgr_bindings.h"
#include "lgr_drain.h"
#include "lgr_dwriter.h"
#include "lgr_ring.h"
#include "lgr_syslog.h"
#include "lgr_tls.h"
#include "omf.h"

#define TICK_MS		 1000  /* idle writers, loss reports, bindings file changes */
#define REPORT_MS	 1000  /* a drain's losses are told at most this often */
#define ERROR_NOTICE_MS	 60000 /* a drain's writer failure is told into the app's stream at most this often */
#define STOP_POLL_MS	 20    /* while stopping: how often writers are asked whether they are done */
#define DRAIN_BATCH	 256   /* envelopes offered to a drain's sink at once */
#define LOG_WINDOW_MS	 10000 /* own log lines: at most LOG_BURST per window */
#define LOG_BURST	 20
#define NOTICE_MAX	 1024	     /* bytes of a notice's text */
#define BINDINGS_MAX	 (16u << 20) /* bytes of a bindings document (lgr_bindings' own default) */
#define FETCH_TIMEOUT_MS 10000	     /* one bindings URL fetch, connect to last byte */
#define FETCH_SLICE_MS	 200	     /* the poller looks at its stop flag this often while it waits for the network */

/* ---- state ----------------------------------------------------------------------------------------------------- */

/* A notice waiting to be published into an app's stream (made off the loop, published on it). */
struct notice {
	struct notice *next;
	char *app_id;
	char *text;
};

struct omf_drains;

/* One bound drain: an app (NULL: aggregate) and a URL, with its own parse, subscriber and writer. Loop thread. */
struct drain {
	struct omf_drains *d;
	char *app_id;		 /* NULL for an aggregate drain */
	struct lgr_drain *drain; /* own parse of the binding's URL; the writer borrows it */
	char *hostname;		 /* the binding's, "" when none */
	char *cert, *key, *ca;	 /* PEM, NULL when absent */
	struct omf_sub *sub;	 /* NULL once its writer failed for good */
	struct lgr_dw *w;	 /* NULL until the first line, and after idle_ms without traffic */
	struct omf_counters ctr; /* the subscriber's figures (atomic: its ring drops on rsyslog's workers) */
	size_t line_pos;	 /* lines of the head envelope the writer already took */
	bool failed;		 /* the writer cannot serve this drain (denied, bad TLS material) */
	uint64_t last_use_ms;	 /* the last line offered */
	uint64_t w_sent, w_lost; /* of writers already closed */
	uint64_t refused;	 /* envelopes for a failed drain */
	uint64_t lost_told;	 /* losses already told into the app's stream */
	uint64_t told_at;	 /* ms */
	uint64_t error_told_at;	 /* ms */
	uint64_t sent_counted;	 /* what went into the action's counters so far */
	uint64_t dropped_counted;
	void *stats;	     /* its statistics object (omf_dstats_ops), from its first envelope; NULL: none */
	bool stats_tried;    /* open was called (it is not tried again after a failure) */
	uint64_t stats_sent; /* what went into stats so far */
	uint64_t stats_dropped;
	uint64_t ovf_told; /* ring drops passed to the writer as an overflow (Logplex L10) */
	int64_t ovf_since; /* UNIX ns when ring drops not passed yet were first seen; 0: none */
};

struct omf_drains {
	struct omf_egress *eg;
	struct event_base *base;
	char *name;
	char *bindings_file;
	char *bindings_url;
	SSL_CTX *ssl_ctx;
	char *servername;
	unsigned poll_ms;
	char **aggregate;
	size_t n_aggregate;
	struct lgr_bindings_static *statics; /* parsed once; every snapshot merges them */
	size_t per_app;
	size_t buffer;
	unsigned idle_ms;
	struct lgr_drain_deny deny;
	struct omf_drains_counters *ctr;
	lgr_log_fn *log;
	void *log_ud;
	struct omf_gateway *gw;
	const struct omf_dstats_ops *stats;
	void *stats_ud;

	/* shared with the other threads: under mu */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct lgr_logger lg; /* own lines: name, the configured sink */
	struct lgr_ratelimit log_rl;
	size_t last_stats[4]; /* apps, bindings, aggregate, rejected of the last load, for the log */
	bool have_loaded;
	struct lgr_bindings *pending; /* a snapshot the loop has not applied yet */
	struct notice *notices;	      /* to publish after it */
	bool start_req, reload_req, stop_req, stopped;
	unsigned budget_ms;
	bool poll_stop, poll_now;
	int cmd_fd;

	/* the rsyslog thread's */
	bool loop_started; /* omf_drains_start handed the drains to the loop */
	pthread_t poller;
	bool poller_running;

	/* the loop's */
	struct event *cmd_ev, *tick_ev;
	struct lgr_dw_ctx *dw;
	bool running, stopping;
	uint64_t stop_deadline;
	struct drain **drains; /* sorted by (app_id, URL), aggregate drains first */
	size_t n;
	bool have_stat;
	struct stat file_st; /* of the bindings file when it was last read */
	struct lgr_syslog_buf buf;
};

/* ---- small helpers --------------------------------------------------------------------------------------------- */

static void add(uint64_t *ctr, uint64_t n)
{
	if (n > 0)
		__atomic_add_fetch(ctr, n, __ATOMIC_RELAXED);
}

static uint64_t load(const uint64_t *ctr)
{
	return __atomic_load_n(ctr, __ATOMIC_RELAXED);
}

static void timer_in(struct event *ev, uint64_t ms)
{
	struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};

	event_add(ev, &tv);
}

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* PEM text as a drain keeps it: NULL for absent or empty. */
static const char *pem(const char *s)
{
	return s != NULL && s[0] != '\0' ? s : NULL;
}

static bool same_str(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

static void wake(struct omf_drains *d)
{
	uint64_t one = 1;
	ssize_t w;

	do
		w = write(d->cmd_fd, &one, sizeof(one));
	while (w < 0 && errno == EINTR);
}

/* One line of the drains' own, at most LOG_BURST per LOG_WINDOW_MS; log_rl is shared by every thread, so under mu. */
#define drains_say(d, ...)                                                                                             \
	do {                                                                                                           \
		pthread_mutex_lock(&(d)->mu);                                                                          \
		lgr_logger_say(&(d)->lg, &(d)->log_rl, __VA_ARGS__);                                                   \
		pthread_mutex_unlock(&(d)->mu);                                                                        \
	} while (0)

/* How a drain is named in log lines: never its credentials. */
static const char *app_of(const struct drain *dr)
{
	return dr->app_id != NULL ? dr->app_id : "(aggregate)";
}

static void notices_free(struct notice *n)
{
	while (n != NULL) {
		struct notice *next = n->next;

		free(n->app_id);
		free(n->text);
		free(n);
		n = next;
	}
}

/* Appends a notice for app_id to *list (kept in order). Out of memory: the notice is lost (it was logged). */
static void notice_add(struct notice **list, const char *app_id, const char *text)
{
	struct notice *n = calloc(1, sizeof(*n));

	if (n == NULL)
		return;
	n->app_id = strdup(app_id);
	n->text = strdup(text);
	if (n->app_id == NULL || n->text == NULL) {
		notices_free(n);
		return;
	}
	while (*list != NULL)
		list = &(*list)->next;
	*list = n;
}

/*
 * Publishes text into app_id's own stream as CF's agent does (lgr_syslog_notice_env): every subscriber of the app
 * gets it, its drains included. Loop thread.
 */
static void publish_notice(struct omf_drains *d, const char *app_id, const char *text)
{
	struct lgr_env *env = NULL;
	struct omf_env *e;

	if (app_id == NULL || app_id[0] == '\0')
		return; /* the reference writes nothing without an app */
	if (lgr_syslog_notice_env(app_id, text, now_ns(), &env) != LGR_OK)
		return;
	e = omf_env_new(env); /* takes env */
	if (e == NULL)
		return;
	omf_egress_publish(d->eg, e);
	omf_gateway_record(d->gw, e); /* /api/v1/read shows it with the app's other envelopes */
	omf_env_unref(e);
}

/* ---- bindings -------------------------------------------------------------------------------------------------- */

/* What a load collects from lgr_bindings_parse's refusals. */
struct load_ctx {
	struct omf_drains *d;
	struct notice *notices;
};

static void on_reject(const char *app_id, enum lgr_drain_reason why, const char *scheme, const char *anon_url, void *ud)
{
	struct load_ctx *lc = ud;
	char text[NOTICE_MAX];

	if (lgr_drain_notice(why, scheme, anon_url != NULL ? anon_url : "", text, sizeof(text)) < 0)
		snprintf(text, sizeof(text), "Invalid syslog drain");
	drains_say(lc->d, LGR_LOG_WARNING, "binding refused (%s) for app %s: %s", lgr_drain_reason_name(why),
		app_id != NULL ? app_id : "(none)", text);
	if (app_id != NULL)
		notice_add(&lc->notices, app_id, text);
}

/*
 * A snapshot from len bytes of JSON (json may be NULL with len 0), the aggregate URLs and the static bindings;
 * refusals become notices in *notices and count in invalid. LGR_OK or lgr_bindings_parse's error (err says why).
 * Any thread.
 */
static int bindings_build(struct omf_drains *d, const char *json, size_t len, struct lgr_bindings **out,
	struct notice **notices, char *err, size_t errlen)
{
	struct lgr_bindings_conf bc = {0};
	struct load_ctx lc = {d, NULL};
	const struct lgr_bindings_stats *st;
	bool same;
	int rc;

	bc.per_app = d->per_app;
	bc.check_pem = true;
	rc = lgr_bindings_parse(json != NULL ? json : "", len, (const char *const *)d->aggregate, d->n_aggregate,
		d->statics, &bc, on_reject, &lc, out);
	if (rc != LGR_OK) {
		notices_free(lc.notices);
		snprintf(err, errlen, "%s", rc == LGR_EDECODE ? "not a JSON array of bindings" : lgr_strerror(rc));
		return rc;
	}
	st = lgr_bindings_stats(*out);
	add(&d->ctr->invalid, st->rejected);
	if (st->over_limit > 0)
		drains_say(d, LGR_LOG_WARNING,
			"%zu bindings ignored: their apps have more than %zu drains (drains.perApp)", st->over_limit,
			d->per_app);
	/* a poll that brings the same bindings again is not worth a line */
	pthread_mutex_lock(&d->mu);
	same = d->last_stats[0] == st->apps && d->last_stats[1] == st->bindings && d->last_stats[2] == st->aggregate &&
	       d->last_stats[3] == st->rejected && d->have_loaded;
	d->last_stats[0] = st->apps;
	d->last_stats[1] = st->bindings;
	d->last_stats[2] = st->aggregate;
	d->last_stats[3] = st->rejected;
	d->have_loaded = true;
	pthread_mutex_unlock(&d->mu);
	if (!same || d->bindings_url == NULL)
		drains_say(d, LGR_LOG_INFO, "bindings: %zu apps, %zu app drains, %zu aggregate drains, %zu refused",
			st->apps, st->bindings, st->aggregate, st->rejected);
	*notices = lc.notices;
	return LGR_OK;
}

/* Reads the bindings file (at most BINDINGS_MAX bytes); *st is its stat before reading. */
static int read_file(const char *path, char **out, size_t *len, struct stat *st, char *err, size_t errlen)
{
	char *buf = NULL;
	size_t n = 0;
	ssize_t r;
	int fd, rc = LGR_EIO;

	*out = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, st) != 0) {
		snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
		goto out;
	}
	if (st->st_size > (off_t)BINDINGS_MAX) {
		snprintf(err, errlen, "%s is larger than %u bytes", path, BINDINGS_MAX);
		rc = LGR_ETOOBIG;
		goto out;
	}
	buf = malloc((size_t)st->st_size + 1);
	if (buf == NULL) {
		rc = LGR_ENOMEM;
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	/* a file that grows while it is read is cut at its size then; the next look at its stat reads it again */
	while (n < (size_t)st->st_size) {
		r = read(fd, buf + n, (size_t)st->st_size - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
			goto out;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	buf[n] = '\0';
	*out = buf;
	*len = n;
	buf = NULL;
	rc = LGR_OK;
out:
	free(buf);
	if (fd >= 0)
		close(fd);
	return rc;
}

/* The bindings file as a snapshot; *st receives its stat. */
static int load_file(struct omf_drains *d, struct lgr_bindings **out, struct notice **notices, struct stat *st,
	char *err, size_t errlen)
{
	char *json = NULL, why[256];
	size_t len = 0;
	int rc;

	rc = read_file(d->bindings_file, &json, &len, st, err, errlen);
	if (rc == LGR_OK) {
		rc = bindings_build(d, json, len, out, notices, why, sizeof(why));
		if (rc != LGR_OK)
			snprintf(err, errlen, "%s: %s", d->bindings_file, why);
	}
	free(json);
	return rc;
}

/* ---- one drain: its sink and its writer ------------------------------------------------------------------------ */

static void on_writer_ready(void *ud)
{
	struct drain *dr = ud;

	if (dr->sub != NULL)
		omf_sub_resume(dr->sub);
}

static void on_writer_error(enum lgr_drain_reason why, const char *text, void *ud)
{
	struct drain *dr = ud;
	struct omf_drains *d = dr->d;
	char notice[NOTICE_MAX];
	uint64_t now = lgr_now_ms();

	if (why == LGR_DRAIN_OK) {
		drains_say(d, LGR_LOG_WARNING, "drain %s of app %s: %s", dr->drain->anon, app_of(dr),
			text != NULL ? text : "");
		return;
	}
	add(&d->ctr->invalid, 1);
	if (lgr_drain_notice(why, dr->drain->scheme_name, dr->drain->anon, notice, sizeof(notice)) < 0)
		snprintf(notice, sizeof(notice), "Invalid syslog drain");
	drains_say(d, LGR_LOG_WARNING, "drain %s of app %s refused (%s): %s", dr->drain->anon, app_of(dr),
		lgr_drain_reason_name(why), notice);
	if (dr->error_told_at != 0 && now - dr->error_told_at < ERROR_NOTICE_MS)
		return;
	dr->error_told_at = now;
	publish_notice(d, dr->app_id, notice);
}

/* Counters of the drain's writer and of those before it. */
static void writer_figures(const struct drain *dr, uint64_t *sent, uint64_t *lost)
{
	const struct lgr_dw_counters *c = dr->w != NULL ? lgr_dw_counters(dr->w) : NULL;

	*sent = dr->w_sent + (c != NULL ? c->sent : 0);
	*lost = dr->w_lost + (c != NULL ? c->lost : 0);
}

/* Closes the drain's writer; lines it still held count as lost (lgr_dw_close counts them before it goes). */
static void writer_close(struct drain *dr)
{
	struct lgr_dw_counters c;

	if (dr->w == NULL)
		return;
	lgr_dw_close(dr->w, &c);
	dr->w = NULL;
	dr->w_sent += c.sent;
	dr->w_lost += c.lost;
	__atomic_sub_fetch(&dr->d->ctr->drains, 1, __ATOMIC_RELAXED);
	/* no on_ready will come from it: a subscriber it held up tries again (with a new writer) */
	if (dr->sub != NULL)
		omf_sub_resume(dr->sub);
}

/* The drain's writer, made on first use. LGR_OK, or LGR_EIO when the drain cannot be served (then failed). */
static int writer_open(struct drain *dr)
{
	struct omf_drains *d = dr->d;
	struct lgr_dw_conf wc = {0};
	enum lgr_drain_reason why = LGR_DRAIN_OK;
	int rc;

	if (dr->w != NULL)
		return LGR_OK;
	if (d->dw == NULL)
		return LGR_EIO;
	wc.drain = dr->drain;
	wc.tls.cert = dr->cert;
	wc.tls.key = dr->key;
	wc.tls.ca = dr->ca;
	wc.on_ready = on_writer_ready;
	wc.on_error = on_writer_error;
	wc.ud = dr;
	rc = lgr_dw_new(d->dw, &wc, &dr->w, &why);
	if (rc == LGR_OK) {
		dr->last_use_ms = lgr_now_ms();
		__atomic_add_fetch(&d->ctr->drains, 1, __ATOMIC_RELAXED);
		return LGR_OK;
	}
	dr->w = NULL;
	if (rc == LGR_EINVAL) {
		dr->failed = true;
		on_writer_error(why != LGR_DRAIN_OK ? why : LGR_DRAIN_BAD_URL, NULL, dr);
	} else {
		drains_say(d, LGR_LOG_ERR, "drain %s of app %s: cannot make its writer: %s", dr->drain->anon,
			app_of(dr), lgr_strerror(rc));
	}
	return LGR_EIO;
}

/*
 * The lines of env for dr into b, each an octet-counted frame (lgr_syslog_next_frame walks them): CF's RFC 5424
 * lines, or Logplex's (the syslog form, the drain token as host, for syslog drains; the HTTPS form otherwise).
 */
static int format(const struct drain *dr, const struct lgr_env *env, struct lgr_syslog_buf *b, size_t *nlines)
{
	struct lgr_syslog_opts so = {0};
	struct lgr_logplex_line l;
	char source[LGR_LOGPLEX_FIELD_MAX + 1], process[LGR_LOGPLEX_FIELD_MAX + 1];
	bool https = dr->drain->scheme == LGR_DRAIN_HTTPS || dr->drain->scheme == LGR_DRAIN_HTTPS_BATCH;
	int rc;

	lgr_syslog_buf_reset(b);
	if (dr->drain->format == LGR_DRAIN_CF) {
		so.hostname = dr->hostname;
		so.omit_metadata = dr->drain->omit_metadata;
		return lgr_syslog_format(env, &so, LGR_SYSLOG_OCTET, b, nlines);
	}
	rc = lgr_logplex_from_env(env, dr->drain->token, &l, source, process);
	if (rc != LGR_OK)
		return rc;
	return lgr_logplex_format(&l, https ? LGR_LOGPLEX_HTTPS : LGR_LOGPLEX_SYSLOG, b, nlines);
}

/*
 * Offers env's lines from dr->line_pos on. LGR_OK: all taken (or none to send); LGR_EFULL: the writer refused one,
 * dr->line_pos says where to go on; LGR_EIO: the writer failed for good.
 */
static int write_env(struct drain *dr, const struct lgr_env *env, bool *sent)
{
	struct omf_drains *d = dr->d;
	struct lgr_syslog_buf *b = &d->buf;
	const char *line;
	size_t nlines = 0, line_len, pos = 0, used, k;
	int rc;

	*sent = false;
	rc = format(dr, env, b, &nlines);
	if (rc != LGR_OK) {
		/* the reference drops what it cannot convert; our limits are the only other cause */
		if (rc != LGR_EUNSUPPORTED)
			drains_say(d, LGR_LOG_WARNING, "drain %s of app %s: an envelope cannot be formatted: %s",
				dr->drain->anon, app_of(dr), lgr_strerror(rc));
		dr->line_pos = 0;
		return LGR_OK;
	}
	for (k = 0; (used = lgr_syslog_next_frame(b->p + pos, b->len - pos, &line, &line_len)) > 0; k++, pos += used) {
		if (k < dr->line_pos)
			continue;
		rc = lgr_dw_write(dr->w, line, line_len);
		if (rc != LGR_OK)
			return rc == LGR_EFULL ? LGR_EFULL : LGR_EIO;
		dr->line_pos = k + 1;
		dr->last_use_ms = lgr_now_ms();
	}
	*sent = nlines > 0;
	dr->line_pos = 0;
	return LGR_OK;
}

/* The drain's statistics object, made on its first envelope (a drain that never gets one shows nowhere). */
static void stats_open(struct drain *dr)
{
	const struct omf_drains *d = dr->d;
	char name[LGR_DRAIN_URL_MAX + 256];

	if (dr->stats_tried || d->stats == NULL)
		return;
	dr->stats_tried = true;
	if (dr->app_id != NULL)
		snprintf(name, sizeof(name), "omfirehose-drain(%s app %s)", dr->drain->anon, dr->app_id);
	else
		snprintf(name, sizeof(name), "omfirehose-drain(%s aggregate)", dr->drain->anon);
	dr->stats = d->stats->open(name, d->stats_ud);
	if (dr->stats == NULL)
		drains_say(dr->d, LGR_LOG_WARNING,
			"drain %s of app %s: cannot make its statistics object; its figures stay in the sums",
			dr->drain->anon, app_of(dr));
}

/*
 * A Logplex HTTPS drain hears of its ring's drops as Logplex's drains do: its writer puts an L10 notice in the
 * stream (lgr_dw_overflow). Drops seen while there is no writer wait for the next one. The time given is when the
 * drops were first seen here: on the next delivery or tick, so within TICK_MS of the first.
 */
static void drain_overflow(struct drain *dr)
{
	uint64_t dropped;

	if (dr->drain->format != LGR_DRAIN_LOGPLEX ||
		(dr->drain->scheme != LGR_DRAIN_HTTPS && dr->drain->scheme != LGR_DRAIN_HTTPS_BATCH))
		return;
	dropped = load(&dr->ctr.dropped);
	if (dropped == dr->ovf_told)
		return;
	if (dr->ovf_since == 0)
		dr->ovf_since = now_ns();
	if (dr->w == NULL)
		return;
	lgr_dw_overflow(dr->w, dropped - dr->ovf_told, dr->ovf_since);
	dr->ovf_told = dropped;
	dr->ovf_since = 0;
}

static int drain_deliver(
	struct omf_sub *sub, struct omf_env *const *envs, size_t n, size_t *taken, size_t *sent, void *ud)
{
	struct drain *dr = ud;
	const struct lgr_env *env;
	size_t i, k = 0;
	bool one;
	int rc = LGR_OK;

	(void)sub;
	stats_open(dr);
	for (i = 0; i < n; i++) {
		env = omf_env_v2(envs[i]);
		if (env == NULL || !lgr_drain_accepts(dr->drain, env))
			continue;
		if (!dr->failed)
			writer_open(dr);
		if (dr->failed || dr->w == NULL) {
			dr->refused++;
			continue;
		}
		if (dr->line_pos == 0)
			drain_overflow(dr);
		rc = write_env(dr, env, &one);
		if (rc == LGR_EFULL)
			break;
		if (rc == LGR_EIO) {
			/* denied, or TLS material that does not load: this and every later envelope are refused */
			dr->failed = true;
			dr->refused++;
			dr->line_pos = 0;
			rc = LGR_OK;
			continue;
		}
		if (one)
			k++;
	}
	*taken = i;
	*sent = k;
	return rc;
}

static const struct omf_sink drain_sink = {
	.deliver = drain_deliver, .close = NULL, /* the drains free their subscribers before the egress stops */
};

/* Subscribes dr: its app's source id (any for aggregate) and the types its URL asks for. */
static int drain_subscribe(struct drain *dr)
{
	static const enum lgr_env_type types[] = {
		LGR_ENV_LOG, LGR_ENV_COUNTER, LGR_ENV_GAUGE, LGR_ENV_TIMER, LGR_ENV_EVENT};
	struct lgr_selector sel[sizeof(types) / sizeof(types[0])];
	struct lgr_select_req req = {0};
	struct omf_sub_opts so = {0};
	size_t n = 0;

	memset(sel, 0, sizeof(sel));
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		if (!(dr->drain->filter.types & (1u << types[i])))
			continue;
		sel[n].source_id = dr->app_id != NULL ? dr->app_id : "";
		sel[n].type = types[i];
		n++;
	}
	if (n == 0)
		return LGR_OK; /* nothing it could ever receive */
	req.shard_id = "";
	req.deterministic_name = "";
	req.n_selectors = n;
	req.selectors = sel;
	so.buffer = dr->d->buffer;
	so.batch_max = DRAIN_BATCH;
	so.eager = true;
	so.internal = true;
	so.lazy_ring = true;
	so.ctr = &dr->ctr;
	return omf_sub_new_opts(dr->d->eg, &req, &drain_sink, dr, dr->drain->anon, &so, &dr->sub);
}

/* Losses of dr so far: its ring, its writers, and (refused) envelopes of a failed drain. */
static uint64_t drain_lost(const struct drain *dr)
{
	uint64_t sent, lost;

	writer_figures(dr, &sent, &lost);
	return load(&dr->ctr.dropped) + lost;
}

/* Moves dr's figures into the action's counters and into the drain's statistics object. */
static void drain_count(struct drain *dr)
{
	uint64_t sent, lost, dropped;

	writer_figures(dr, &sent, &lost);
	dropped = load(&dr->ctr.dropped) + lost + dr->refused;
	add(&dr->d->ctr->sent, sent - dr->sent_counted);
	add(&dr->d->ctr->dropped, dropped - dr->dropped_counted);
	dr->sent_counted = sent;
	dr->dropped_counted = dropped;
	if (dr->stats == NULL || (sent == dr->stats_sent && dropped == dr->stats_dropped))
		return;
	dr->d->stats->add(dr->stats, sent - dr->stats_sent, dropped - dr->stats_dropped);
	dr->stats_sent = sent;
	dr->stats_dropped = dropped;
}

/* Tells new losses of dr (log line and app notice), at most once per REPORT_MS unless final. */
static void drain_report(struct drain *dr, uint64_t now, bool final)
{
	uint64_t lost = drain_lost(dr), n = lost - dr->lost_told;
	char text[NOTICE_MAX];

	if (n == 0 || (!final && now - dr->told_at < REPORT_MS))
		return;
	dr->lost_told = lost;
	dr->told_at = now;
	drains_say(dr->d, LGR_LOG_WARNING, "drain %s of app %s: %" PRIu64 " envelopes lost (%" PRIu64 " in all)",
		dr->drain->anon, app_of(dr), n, lost);
	if (final || dr->app_id == NULL)
		return;
	if (lgr_syslog_notice_lost(n, dr->app_id, dr->drain->anon, text, sizeof(text)) >= 0)
		publish_notice(dr->d, dr->app_id, text);
}

static void drain_free(struct drain *dr)
{
	if (dr == NULL)
		return;
	omf_sub_free(dr->sub); /* what it held counts as dropped */
	dr->sub = NULL;
	writer_close(dr); /* and what its writer held as lost */
	drain_count(dr);
	drain_report(dr, lgr_now_ms(), true);
	if (dr->stats != NULL)
		dr->d->stats->close(dr->stats);
	lgr_drain_free(dr->drain);
	free(dr->app_id);
	free(dr->hostname);
	free(dr->cert);
	free(dr->key);
	free(dr->ca);
	free(dr);
}

/* A drain for binding b of app_id (NULL: aggregate), subscribed. NULL when it cannot be made (logged). */
static struct drain *drain_new(struct omf_drains *d, const char *app_id, const struct lgr_binding *b)
{
	struct drain *dr = calloc(1, sizeof(*dr));
	enum lgr_drain_reason why = LGR_DRAIN_OK;
	int rc = LGR_ENOMEM;

	if (dr == NULL)
		goto fail;
	dr->d = d;
	dr->app_id = app_id != NULL ? strdup(app_id) : NULL;
	dr->hostname = strdup(b->hostname != NULL ? b->hostname : "");
	dr->cert = pem(b->cert) != NULL ? strdup(b->cert) : NULL;
	dr->key = pem(b->key) != NULL ? strdup(b->key) : NULL;
	dr->ca = pem(b->ca) != NULL ? strdup(b->ca) : NULL;
	if ((app_id != NULL && dr->app_id == NULL) || dr->hostname == NULL || (pem(b->cert) && dr->cert == NULL) ||
		(pem(b->key) && dr->key == NULL) || (pem(b->ca) && dr->ca == NULL))
		goto fail;
	/* the snapshot's parse goes with the snapshot: the drain keeps its own */
	rc = lgr_drain_parse(b->drain->url, strlen(b->drain->url), 0, &dr->drain, &why);
	if (rc != LGR_OK)
		goto fail;
	rc = drain_subscribe(dr);
	if (rc != LGR_OK)
		goto fail;
	return dr;
fail:
	drains_say(d, LGR_LOG_ERR, "drain %s of app %s: cannot subscribe: %s", b->drain->anon,
		app_id != NULL ? app_id : "(aggregate)", lgr_strerror(rc));
	drain_free(dr);
	return NULL;
}

/* ---- applying a snapshot --------------------------------------------------------------------------------------- */

/* Aggregate drains (app NULL) first, then by app id, then by URL. */
static int key_cmp(const char *app_a, const char *url_a, const char *app_b, const char *url_b)
{
	int c;

	if (app_a == NULL || app_b == NULL)
		c = (app_a != NULL) - (app_b != NULL);
	else
		c = strcmp(app_a, app_b);
	return c != 0 ? c : strcmp(url_a, url_b);
}

struct want {
	const char *app_id;
	const struct lgr_binding *b;
};

static int want_cmp(const void *a, const void *b)
{
	const struct want *x = a, *y = b;

	return key_cmp(x->app_id, x->b->drain->url, y->app_id, y->b->drain->url);
}

/* Whether a running drain serves binding b unchanged (a drain that failed for good is made again). */
static bool drain_same(const struct drain *dr, const struct lgr_binding *b)
{
	return !dr->failed && strcmp(dr->hostname, b->hostname != NULL ? b->hostname : "") == 0 &&
	       same_str(dr->cert, pem(b->cert)) && same_str(dr->key, pem(b->key)) && same_str(dr->ca, pem(b->ca));
}

/*
 * Makes the running drains those of snap: a merge of two lists sorted by (app, URL). Unchanged drains keep their
 * subscriber and writer (and so their buffered envelopes); a drain that failed for good gets another chance.
 * Loop thread.
 */
static void apply(struct omf_drains *d, const struct lgr_bindings *snap)
{
	const struct lgr_bindings_app *apps;
	const struct lgr_binding *agg;
	struct want *want = NULL;
	struct drain **next = NULL, *dr;
	size_t n_apps, n_agg, nw = 0, i = 0, j = 0, k = 0;
	int c;

	agg = lgr_bindings_aggregate(snap, &n_agg);
	apps = lgr_bindings_apps(snap, &n_apps);
	nw = n_agg;
	for (size_t a = 0; a < n_apps; a++)
		nw += apps[a].n;
	want = calloc(nw + 1, sizeof(*want));
	next = calloc(nw + 1, sizeof(*next));
	if (want == NULL || next == NULL) {
		drains_say(d, LGR_LOG_ERR, "cannot apply the bindings: out of memory; the drains stay as they were");
		goto out;
	}
	nw = 0;
	for (size_t a = 0; a < n_agg; a++)
		want[nw++] = (struct want){NULL, &agg[a]};
	for (size_t a = 0; a < n_apps; a++)
		for (size_t b = 0; b < apps[a].n; b++)
			want[nw++] = (struct want){apps[a].app_id, &apps[a].drains[b]};
	qsort(want, nw, sizeof(*want), want_cmp);
	while (i < d->n || j < nw) {
		if (i == d->n)
			c = 1;
		else if (j == nw)
			c = -1;
		else
			c = key_cmp(
				d->drains[i]->app_id, d->drains[i]->drain->url, want[j].app_id, want[j].b->drain->url);
		if (c < 0) {
			drain_free(d->drains[i++]); /* unbound */
			continue;
		}
		if (c == 0 && drain_same(d->drains[i], want[j].b)) {
			next[k++] = d->drains[i++];
			j++;
			continue;
		}
		if (c == 0)
			drain_free(d->drains[i++]); /* bound differently: a fresh drain */
		if (j > 0 && key_cmp(want[j - 1].app_id, want[j - 1].b->drain->url, want[j].app_id,
				     want[j].b->drain->url) == 0) {
			j++; /* the same URL bound twice (aggregate and app never share a key) */
			continue;
		}
		dr = drain_new(d, want[j].app_id, want[j].b);
		j++;
		if (dr != NULL)
			next[k++] = dr;
	}
	free(d->drains);
	d->drains = next;
	d->n = k;
	next = NULL;
out:
	free(want);
	free(next);
}

/* Applies a snapshot and publishes the notices of its load. Loop thread; takes both. */
static void apply_load(struct omf_drains *d, struct lgr_bindings *snap, struct notice *notices)
{
	if (snap != NULL && d->dw != NULL)
		apply(d, snap);
	lgr_bindings_unref(snap);
	for (struct notice *n = notices; n != NULL; n = n->next)
		publish_notice(d, n->app_id, n->text);
	notices_free(notices);
}

/* Reads the bindings file again; on failure the drains stay as they are. Loop thread. */
static void reload_file(struct omf_drains *d)
{
	struct lgr_bindings *snap = NULL;
	struct notice *notices = NULL;
	struct stat st;
	char err[512];

	if (load_file(d, &snap, &notices, &st, err, sizeof(err)) != LGR_OK) {
		drains_say(d, LGR_LOG_ERR, "bindings not reloaded, the drains stay as they are: %s", err);
		/* the same content is not read again until it changes */
		if (stat(d->bindings_file, &st) == 0) {
			d->file_st = st;
			d->have_stat = true;
		}
		return;
	}
	d->file_st = st;
	d->have_stat = true;
	apply_load(d, snap, notices);
}

/* Whether the bindings file changed since it was read (it was replaced, rewritten or touched). */
static bool file_changed(struct omf_drains *d)
{
	struct stat st;

	if (stat(d->bindings_file, &st) != 0)
		return false; /* gone for now (a rename in progress): the drains stay as they are */
	if (!d->have_stat)
		return true;
	return st.st_ino != d->file_st.st_ino || st.st_dev != d->file_st.st_dev || st.st_size != d->file_st.st_size ||
	       st.st_mtim.tv_sec != d->file_st.st_mtim.tv_sec || st.st_mtim.tv_nsec != d->file_st.st_mtim.tv_nsec ||
	       st.st_ctim.tv_sec != d->file_st.st_ctim.tv_sec || st.st_ctim.tv_nsec != d->file_st.st_ctim.tv_nsec;
}

/* ---- the loop's events ----------------------------------------------------------------------------------------- */

static void stop_check(evutil_socket_t fd, short what, void *ud);

/* Every drain has sent what it held (or the budget is spent): everything is released, the waiter told. */
static void stop_finish(struct omf_drains *d)
{
	for (size_t i = 0; i < d->n; i++)
		drain_free(d->drains[i]);
	free(d->drains);
	d->drains = NULL;
	d->n = 0;
	lgr_dw_ctx_free(d->dw);
	d->dw = NULL;
	event_free(d->cmd_ev);
	d->cmd_ev = NULL;
	if (d->tick_ev != NULL)
		event_free(d->tick_ev);
	d->tick_ev = NULL;
	d->running = false;
	pthread_mutex_lock(&d->mu);
	d->stopped = true;
	pthread_cond_broadcast(&d->cv);
	pthread_mutex_unlock(&d->mu); /* d belongs to omf_drains_free from here on */
}

static bool drains_done(struct omf_drains *d)
{
	for (size_t i = 0; i < d->n; i++) {
		struct drain *dr = d->drains[i];

		if (dr->failed)
			continue;
		if (dr->sub != NULL && omf_sub_held(dr->sub) > 0)
			return false;
		if (dr->w != NULL && !lgr_dw_idle(dr->w))
			return false;
	}
	return true;
}

/* A one-shot check (event_base_once: nothing to free on the way out) until done or the deadline. */
static void stop_check(evutil_socket_t fd, short what, void *ud)
{
	struct omf_drains *d = ud;
	struct timeval tv = {0, STOP_POLL_MS * 1000};

	(void)fd;
	(void)what;
	for (size_t i = 0; i < d->n; i++)
		if (d->drains[i]->w != NULL)
			lgr_dw_flush(d->drains[i]->w);
	if (drains_done(d) || lgr_now_ms() >= d->stop_deadline ||
		event_base_once(d->base, -1, EV_TIMEOUT, stop_check, d, &tv) != 0)
		stop_finish(d);
}

static void begin_stop(struct omf_drains *d, unsigned budget_ms)
{
	d->stopping = true;
	d->stop_deadline = lgr_now_ms() + budget_ms;
	if (d->tick_ev != NULL)
		event_del(d->tick_ev);
	stop_check(-1, 0, d);
}

static void on_tick(evutil_socket_t fd, short what, void *ud)
{
	struct omf_drains *d = ud;
	uint64_t now = lgr_now_ms();

	(void)fd;
	(void)what;
	if (d->bindings_file != NULL && file_changed(d))
		reload_file(d);
	for (size_t i = 0; i < d->n; i++) {
		struct drain *dr = d->drains[i];

		if (dr->failed && dr->sub != NULL) {
			/* a drain that cannot be served stops receiving until the bindings are loaded again */
			omf_sub_free(dr->sub);
			dr->sub = NULL;
		}
		drain_overflow(dr);
		if (dr->w != NULL && now - dr->last_use_ms >= d->idle_ms && lgr_dw_idle(dr->w) &&
			(dr->sub == NULL || omf_sub_held(dr->sub) == 0))
			writer_close(dr);
		drain_count(dr);
		drain_report(dr, now, false);
	}
}

/* Start, reload and stop requests, and snapshots the poller fetched. */
static void on_cmd(evutil_socket_t fd, short what, void *ud)
{
	struct omf_drains *d = ud;
	struct lgr_bindings *snap;
	struct notice *notices;
	struct lgr_dw_ctx_conf cc = {0};
	bool start, reload, stop;
	unsigned budget;
	uint64_t v;
	int rc;

	(void)what;
	while (read(fd, &v, sizeof(v)) < 0 && errno == EINTR)
		;
	pthread_mutex_lock(&d->mu);
	start = d->start_req;
	reload = d->reload_req;
	stop = d->stop_req;
	budget = d->budget_ms;
	d->start_req = d->reload_req = false;
	snap = d->pending;
	notices = d->notices;
	if (d->running || start) {
		d->pending = NULL;
		d->notices = NULL;
	} else {
		snap = NULL;
		notices = NULL;
	}
	pthread_mutex_unlock(&d->mu);
	if (d->stopping)
		goto out;
	if (start && !d->running) {
		d->running = true;
		cc.base = d->base;
		cc.deny = &d->deny;
		cc.user_agent = "rsyslog-omfirehose";
		cc.log = d->log;
		cc.log_ud = d->log_ud;
		rc = lgr_dw_ctx_new(&cc, &d->dw);
		if (rc != LGR_OK) {
			d->dw = NULL;
			drains_say(d, LGR_LOG_ERR, "drain writers unavailable (%s): no drain gets anything",
				lgr_strerror(rc));
		}
		timer_in(d->tick_ev, TICK_MS);
	}
	if (snap != NULL || notices != NULL)
		apply_load(d, snap, notices);
	snap = NULL;
	notices = NULL;
	if (reload && d->bindings_file != NULL)
		reload_file(d);
	if (stop)
		begin_stop(d, budget);
out:
	lgr_bindings_unref(snap);
	notices_free(notices);
}

/* ---- the bindings URL: a poller thread ------------------------------------------------------------------------- */

struct fetch {
	char *body;
	size_t len, cap;
	bool done, too_big;
};

static int on_body(http_parser *p, const char *at, size_t len)
{
	struct fetch *f = p->data;
	char *grown;
	size_t cap;

	if (f->len + len > BINDINGS_MAX) {
		f->too_big = true;
		return 1;
	}
	if (f->len + len + 1 > f->cap) {
		cap = f->cap > 0 ? f->cap : 65536;
		while (cap < f->len + len + 1)
			cap *= 2;
		grown = realloc(f->body, cap);
		if (grown == NULL)
			return 1;
		f->body = grown;
		f->cap = cap;
	}
	memcpy(f->body + f->len, at, len);
	f->len += len;
	f->body[f->len] = '\0';
	return 0;
}

static int on_complete(http_parser *p)
{
	struct fetch *f = p->data;

	f->done = true;
	return 0;
}

static bool poll_stopping(struct omf_drains *d)
{
	bool stop;

	pthread_mutex_lock(&d->mu);
	stop = d->poll_stop;
	pthread_mutex_unlock(&d->mu);
	return stop;
}

/* Waits until fd is ready for events, the deadline passes (false) or the drains stop (false). */
static bool wait_fd(struct omf_drains *d, int fd, short events, uint64_t deadline)
{
	struct pollfd p = {fd, events, 0};
	uint64_t now;
	int r;

	for (;;) {
		now = lgr_now_ms();
		if (now >= deadline || poll_stopping(d))
			return false;
		r = poll(&p, 1, (int)(deadline - now < FETCH_SLICE_MS ? deadline - now : FETCH_SLICE_MS));
		if (r > 0)
			return true;
		if (r < 0 && errno != EINTR)
			return false;
	}
}

/* A non-blocking TCP connection to host:port within the deadline; -1 on failure (err says why). */
static int dial(struct omf_drains *d, const char *host, uint16_t port, uint64_t deadline, char *err, size_t errlen)
{
	struct addrinfo hints = {0}, *res = NULL, *ai;
	char service[8];
	socklen_t sl;
	int fd = -1, rc, soerr;

	hints.ai_socktype = SOCK_STREAM;
	snprintf(service, sizeof(service), "%u", port);
	rc = getaddrinfo(host, service, &hints, &res);
	if (rc != 0) {
		snprintf(err, errlen, "cannot resolve %s: %s", host, gai_strerror(rc));
		return -1;
	}
	snprintf(err, errlen, "cannot connect to %s:%u", host, port);
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0)
			continue;
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		if (errno == EINPROGRESS && wait_fd(d, fd, POLLOUT, deadline)) {
			soerr = 0;
			sl = sizeof(soerr);
			if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr == 0)
				break;
			snprintf(err, errlen, "cannot connect to %s:%u: %s", host, port, strerror(soerr));
		}
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	return fd;
}

/*
 * GET url over mutual TLS (the configured client context, the server's name checked), HTTP/1.1 with
 * Connection: close. LGR_OK and the body in f (status 200), or an error with err saying why.
 */
static int fetch_url(struct omf_drains *d, struct fetch *f, char *err, size_t errlen)
{
	static const http_parser_settings settings = {.on_body = on_body, .on_message_complete = on_complete};
	struct lgr_drain *u = NULL;
	enum lgr_drain_reason why;
	http_parser parser;
	uint64_t deadline = lgr_now_ms() + FETCH_TIMEOUT_MS;
	char req[2048], buf[16384], tls_err[256];
	size_t off = 0, reqlen;
	SSL *ssl = NULL;
	int fd = -1, rc = LGR_EIO, r, e;

	if (lgr_drain_parse(d->bindings_url, strlen(d->bindings_url), 0, &u, &why) != LGR_OK) {
		snprintf(err, errlen, "drains.bindingsUrl is not a usable URL");
		return LGR_EINVAL;
	}
	fd = dial(d, u->host, u->port, deadline, err, errlen);
	if (fd < 0)
		goto out;
	ssl = lgr_tls_client_ssl(d->ssl_ctx, d->servername != NULL ? d->servername : u->host);
	if (ssl == NULL || SSL_set_fd(ssl, fd) != 1) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	ERR_clear_error();
	while ((r = SSL_connect(ssl)) != 1) {
		e = SSL_get_error(ssl, r);
		if ((e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) ||
			!wait_fd(d, fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline)) {
			snprintf(err, errlen, "TLS handshake with %s:%u failed: %s", u->host, u->port,
				lgr_tls_error(tls_err, sizeof(tls_err)));
			goto out;
		}
	}
	reqlen = (size_t)snprintf(req, sizeof(req),
		"GET %s HTTP/1.1\r\nHost: %s%s%s:%u\r\nUser-Agent: rsyslog-omfirehose\r\nAccept: application/json\r\n"
		"Connection: close\r\n\r\n",
		u->target, strchr(u->host, ':') != NULL ? "[" : "", u->host, strchr(u->host, ':') != NULL ? "]" : "",
		u->port);
	if (reqlen >= sizeof(req)) {
		snprintf(err, errlen, "drains.bindingsUrl is too long");
		goto out;
	}
	while (off < reqlen) {
		r = SSL_write(ssl, req + off, (int)(reqlen - off));
		if (r > 0) {
			off += (size_t)r;
			continue;
		}
		e = SSL_get_error(ssl, r);
		if ((e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) ||
			!wait_fd(d, fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline)) {
			snprintf(err, errlen, "cannot send the request to %s:%u", u->host, u->port);
			goto out;
		}
	}
	http_parser_init(&parser, HTTP_RESPONSE);
	parser.data = f;
	while (!f->done) {
		r = SSL_read(ssl, buf, sizeof(buf));
		if (r <= 0) {
			e = SSL_get_error(ssl, r);
			if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
				if (wait_fd(d, fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline))
					continue;
				snprintf(err, errlen, "no complete answer from %s:%u in time", u->host, u->port);
				goto out;
			}
			/* the end of the connection ends a response without a length */
			http_parser_execute(&parser, &settings, NULL, 0);
			if (!f->done) {
				snprintf(err, errlen, "the connection to %s:%u ended before the answer did", u->host,
					u->port);
				goto out;
			}
			break;
		}
		if (http_parser_execute(&parser, &settings, buf, (size_t)r) != (size_t)r && !f->done) {
			snprintf(err, errlen, "%s from %s:%u",
				f->too_big ? "an answer too large" : http_errno_description(HTTP_PARSER_ERRNO(&parser)),
				u->host, u->port);
			goto out;
		}
	}
	if (parser.status_code != 200) {
		snprintf(err, errlen, "%s:%u answered with status %u", u->host, u->port, parser.status_code);
		goto out;
	}
	rc = LGR_OK;
out:
	if (ssl != NULL) {
		SSL_shutdown(ssl);
		SSL_free(ssl);
	}
	if (fd >= 0)
		close(fd);
	lgr_drain_free(u);
	return rc;
}

/* Hands a fetched snapshot and its notices to the loop (a newer one replaces one not yet applied). */
static void hand_over(struct omf_drains *d, struct lgr_bindings *snap, struct notice *notices)
{
	struct lgr_bindings *old;
	struct notice **tail;

	pthread_mutex_lock(&d->mu);
	old = d->pending;
	d->pending = snap;
	for (tail = &d->notices; *tail != NULL; tail = &(*tail)->next)
		;
	*tail = notices;
	pthread_mutex_unlock(&d->mu);
	lgr_bindings_unref(old);
	wake(d);
}

/* poll_ms, give or take a fifth, so that many agents do not poll in step. */
static uint64_t jittered(unsigned poll_ms, unsigned *seed)
{
	uint64_t spread = poll_ms / 5;

	return poll_ms - spread + (spread > 0 ? (uint64_t)rand_r(seed) % (2 * spread + 1) : 0);
}

static void *poller_main(void *arg)
{
	struct omf_drains *d = arg;
	struct lgr_bindings *snap;
	struct notice *notices;
	struct timespec until;
	struct fetch f;
	unsigned seed = (unsigned)now_ns() ^ (unsigned)(uintptr_t)d;
	uint64_t wait_ms;
	char err[512], why[256];

	for (;;) {
		memset(&f, 0, sizeof(f));
		snap = NULL;
		notices = NULL;
		if (fetch_url(d, &f, err, sizeof(err)) != LGR_OK)
			drains_say(d, LGR_LOG_ERR, "bindings not fetched, the drains stay as they are: %s", err);
		else if (f.len == 0)
			drains_say(
				d, LGR_LOG_ERR, "bindings not fetched, the drains stay as they are: an empty answer");
		else if (bindings_build(d, f.body, f.len, &snap, &notices, why, sizeof(why)) != LGR_OK)
			drains_say(d, LGR_LOG_ERR,
				"bindings from drains.bindingsUrl refused, the drains stay as they are: %s", why);
		else
			hand_over(d, snap, notices);
		free(f.body);
		wait_ms = jittered(d->poll_ms, &seed);
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += (time_t)(wait_ms / 1000);
		until.tv_nsec += (long)(wait_ms % 1000) * 1000000;
		if (until.tv_nsec >= 1000000000) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000;
		}
		pthread_mutex_lock(&d->mu);
		while (!d->poll_stop && !d->poll_now)
			if (pthread_cond_timedwait(&d->cv, &d->mu, &until) == ETIMEDOUT)
				break;
		d->poll_now = false;
		if (d->poll_stop) {
			pthread_mutex_unlock(&d->mu);
			return NULL;
		}
		pthread_mutex_unlock(&d->mu);
	}
}

/* ---- lifecycle ------------------------------------------------------------------------------------------------- */

/* Everything but the loop's part (which stop_finish, or omf_drains_free without a loop, has released). */
static void drains_release(struct omf_drains *d)
{
	if (d == NULL)
		return;
	lgr_bindings_unref(d->pending);
	notices_free(d->notices);
	if (d->cmd_fd >= 0)
		close(d->cmd_fd);
	for (size_t i = 0; i < d->n_aggregate; i++)
		free(d->aggregate[i]);
	free(d->aggregate);
	lgr_bindings_static_free(d->statics);
	lgr_drain_deny_cleanup(&d->deny);
	lgr_syslog_buf_cleanup(&d->buf);
	pthread_cond_destroy(&d->cv);
	pthread_mutex_destroy(&d->mu);
	free(d->name);
	free(d->bindings_file);
	free(d->bindings_url);
	free(d->servername);
	free(d);
}

int omf_drains_new(struct omf_egress *eg, const struct omf_drains_conf *conf, struct omf_drains_counters *ctr,
	struct omf_drains **out, char *err, size_t errlen)
{
	struct omf_drains *d;
	struct stat st;
	size_t bad = 0;
	char why[400];
	int rc = LGR_ENOMEM;

	*out = NULL;
	if (eg == NULL || ctr == NULL || conf->buffer == 0 || conf->buffer > LGR_RING_MAX_CAPACITY ||
		conf->per_app == 0 || conf->idle_ms == 0 ||
		(conf->bindings_url != NULL && conf->bindings_ssl_ctx == NULL)) {
		snprintf(err, errlen, "invalid drains configuration");
		return LGR_EINVAL;
	}
	d = calloc(1, sizeof(*d));
	if (d == NULL) {
		snprintf(err, errlen, "out of memory");
		return LGR_ENOMEM;
	}
	d->cmd_fd = -1;
	pthread_mutex_init(&d->mu, NULL);
	pthread_cond_init(&d->cv, NULL);
	d->log_rl = (struct lgr_ratelimit)LGR_RATELIMIT_INIT(LOG_WINDOW_MS, LOG_BURST);
	d->eg = eg;
	d->base = omf_egress_base(eg);
	d->ctr = ctr;
	d->log = conf->log;
	d->log_ud = conf->log_ud;
	d->gw = conf->gw;
	d->stats = conf->stats;
	d->stats_ud = conf->stats_ud;
	d->poll_ms = conf->poll_ms > 0 ? conf->poll_ms : 60000;
	d->per_app = conf->per_app;
	d->buffer = conf->buffer;
	d->idle_ms = conf->idle_ms;
	lgr_syslog_buf_init(&d->buf, 0);
	d->name = strdup(conf->name != NULL ? conf->name : "omfirehose(drains)");
	d->lg = (struct lgr_logger){d->name, conf->log, conf->log_ud};
	d->bindings_file = conf->bindings_file != NULL ? strdup(conf->bindings_file) : NULL;
	d->bindings_url = conf->bindings_url != NULL ? strdup(conf->bindings_url) : NULL;
	d->servername = conf->bindings_servername != NULL ? strdup(conf->bindings_servername) : NULL;
	d->ssl_ctx = conf->bindings_ssl_ctx;
	d->aggregate = calloc(conf->n_aggregate + 1, sizeof(*d->aggregate));
	if (d->name == NULL || (conf->bindings_file != NULL && d->bindings_file == NULL) ||
		(conf->bindings_url != NULL && d->bindings_url == NULL) ||
		(conf->bindings_servername != NULL && d->servername == NULL) || d->aggregate == NULL)
		goto nomem;
	for (; d->n_aggregate < conf->n_aggregate; d->n_aggregate++)
		if ((d->aggregate[d->n_aggregate] = strdup(conf->aggregate[d->n_aggregate])) == NULL)
			goto nomem;
	rc = lgr_drain_deny_init(&d->deny, conf->deny_ranges, conf->n_deny, &bad);
	if (rc != LGR_OK) {
		snprintf(err, errlen, "drains.denyRanges: %s", rc == LGR_EDECODE ? conf->deny_ranges[bad] : "too many");
		goto fail;
	}
	/* checked here, once: an entry that does not parse fails the configuration rather than a later load */
	rc = lgr_bindings_static_parse(conf->statics, conf->n_static, 0, &d->statics, NULL, why, sizeof(why));
	if (rc != LGR_OK) {
		snprintf(err, errlen, "drains.static: %s", why);
		rc = rc == LGR_ENOMEM ? rc : LGR_EINVAL;
		goto fail;
	}
	/* the first snapshot, applied by the loop once it starts: the file's, or the aggregate and static drains */
	if (d->bindings_file != NULL)
		rc = load_file(d, &d->pending, &d->notices, &st, err, errlen);
	else
		rc = bindings_build(d, NULL, 0, &d->pending, &d->notices, err, errlen);
	if (rc != LGR_OK)
		goto fail;
	if (d->bindings_file != NULL) {
		d->file_st = st;
		d->have_stat = true;
	}
	/* the loop is not running yet (omf_egress_start comes later), so its events can be made from here */
	rc = LGR_EIO;
	d->cmd_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (d->cmd_fd < 0) {
		snprintf(err, errlen, "eventfd: %s", strerror(errno));
		goto fail;
	}
	d->cmd_ev = event_new(d->base, d->cmd_fd, EV_READ | EV_PERSIST, on_cmd, d);
	d->tick_ev = event_new(d->base, -1, EV_PERSIST, on_tick, d);
	if (d->cmd_ev == NULL || d->tick_ev == NULL || event_add(d->cmd_ev, NULL) != 0)
		goto nomem;
	*out = d;
	return LGR_OK;
nomem:
	rc = LGR_ENOMEM;
	snprintf(err, errlen, "out of memory");
fail:
	if (d->cmd_ev != NULL)
		event_free(d->cmd_ev);
	if (d->tick_ev != NULL)
		event_free(d->tick_ev);
	drains_release(d);
	return rc;
}

int omf_drains_start(struct omf_drains *d)
{
	if (d->loop_started)
		return LGR_EIO;
	pthread_mutex_lock(&d->mu);
	d->start_req = true;
	pthread_mutex_unlock(&d->mu);
	d->loop_started = true;
	wake(d);
	if (d->bindings_url != NULL) {
		if (lgr_thread_create(&d->poller, poller_main, d) != 0) {
			drains_say(
				d, LGR_LOG_ERR, "cannot start the bindings poller: drains.bindingsUrl is not fetched");
			return LGR_EIO;
		}
		d->poller_running = true;
	}
	return LGR_OK;
}

void omf_drains_reload(struct omf_drains *d)
{
	if (d == NULL)
		return;
	pthread_mutex_lock(&d->mu);
	d->reload_req = true;
	d->poll_now = true; /* a HUP also fetches the bindings URL now */
	pthread_cond_broadcast(&d->cv);
	pthread_mutex_unlock(&d->mu);
	if (d->cmd_fd >= 0)
		wake(d);
}

void omf_drains_free(struct omf_drains *d, unsigned budget_ms)
{
	if (d == NULL)
		return;
	if (d->poller_running) {
		pthread_mutex_lock(&d->mu);
		d->poll_stop = true;
		pthread_cond_broadcast(&d->cv);
		pthread_mutex_unlock(&d->mu);
		pthread_join(d->poller, NULL);
	}
	if (d->loop_started) {
		pthread_mutex_lock(&d->mu);
		d->stop_req = true;
		d->budget_ms = budget_ms;
		pthread_mutex_unlock(&d->mu);
		wake(d);
		pthread_mutex_lock(&d->mu);
		while (!d->stopped)
			pthread_cond_wait(&d->cv, &d->mu);
		pthread_mutex_unlock(&d->mu);
	} else {
		/* the loop never ran the drains: nothing was subscribed and the loop is not running */
		event_free(d->cmd_ev);
		event_free(d->tick_ev);
	}
	drains_release(d);
}
