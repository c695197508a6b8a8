/*
 * lgr.c: result-code names, limit defaults and the reporting hook shared by every unit of the core.
 */
#include "lgr.h"

#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static lgr_log_fn *log_fn;
static void *log_ud;

const char *lgr_strerror(int rc)
{
	switch (rc) {
	case LGR_OK: return "success";
	case LGR_AGAIN: return "more input needed";
	case LGR_ENOMEM: return "out of memory";
	case LGR_EINVAL: return "invalid argument";
	case LGR_EDECODE: return "malformed input";
	case LGR_ETOOBIG: return "input exceeds the size limit";
	case LGR_ELIMIT: return "input exceeds a count or nesting limit";
	case LGR_EMISSING: return "a required field is missing";
	case LGR_EUNSUPPORTED: return "no representation in the target form";
	case LGR_EFULL: return "container full";
	case LGR_EIO: return "input/output error";
	default: return "unknown error";
	}
}

void lgr_limits_resolve(struct lgr_limits *lim)
{
	if (lim->max_message == 0)
		lim->max_message = LGR_LIMITS_DEFAULT_MESSAGE;
	if (lim->max_tags == 0)
		lim->max_tags = LGR_LIMITS_DEFAULT_TAGS;
	if (lim->max_metrics == 0)
		lim->max_metrics = LGR_LIMITS_DEFAULT_METRICS;
	if (lim->max_batch == 0)
		lim->max_batch = LGR_LIMITS_DEFAULT_BATCH;
	if (lim->max_depth == 0)
		lim->max_depth = LGR_LIMITS_DEFAULT_DEPTH;
}

void lgr_log_set(lgr_log_fn *fn, void *ud)
{
	log_fn = fn;
	log_ud = ud;
}

void lgr_log(enum lgr_log_level level, const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	if (log_fn == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	log_fn(level, line, log_ud);
}

void lgr_logger_put(const struct lgr_logger *lg, enum lgr_log_level level, const char *fmt, ...)
{
	char line[1024];
	int n;
	va_list ap;

	n = snprintf(line, sizeof(line), "%s: ", lg->name);
	if (n < 0 || (size_t)n >= sizeof(line))
		n = 0;
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	va_end(ap);
	if (lg->log != NULL)
		lg->log(level, line, lg->log_ud);
	else
		lgr_log(level, "%s", line);
}

void lgr_logger_say(
	const struct lgr_logger *lg, struct lgr_ratelimit *rl, enum lgr_log_level level, const char *fmt, ...)
{
	char text[768];
	uint64_t held;
	va_list ap;

	if (!lgr_ratelimit_take(rl, lgr_now_ms(), &held))
		return;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	if (held > 0)
		lgr_logger_put(lg, level, "%s (%" PRIu64 " similar lines suppressed before this one)", text, held);
	else
		lgr_logger_put(lg, level, "%s", text);
}

bool lgr_ratelimit_take(struct lgr_ratelimit *rl, uint64_t now_ms, uint64_t *held)
{
	if (rl->lines == 0 || now_ms - rl->start >= rl->window_ms) {
		rl->start = now_ms;
		rl->lines = 0;
	}
	if (rl->lines >= rl->burst) {
		rl->held++;
		return false;
	}
	rl->lines++;
	if (held != NULL)
		*held = rl->held;
	rl->held = 0;
	return true;
}

uint64_t lgr_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t lgr_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void lgr_civil_date(int64_t days, int *year, int *month, int *day, int *wday)
{
	int64_t z = days + 719468; /* days since 0000-03-01, in eras of 400 years of 146097 days */
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	int64_t doe = z - era * 146097;					     /* [0, 146096] */
	int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365; /* [0, 399] */
	int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);		     /* [0, 365], from March */
	int64_t mp = (5 * doy + 2) / 153;				     /* [0, 11], March = 0 */

	*day = (int)(doy - (153 * mp + 2) / 5 + 1);
	*month = (int)(mp < 10 ? mp + 3 : mp - 9);
	*year = (int)(yoe + era * 400 + (*month <= 2));
	*wday = (int)((days % 7 + 11) % 7); /* 1970-01-01 was a Thursday (4) */
}

void lgr_civil_time(int64_t ns, struct lgr_civil *c)
{
	int64_t secs = ns / 1000000000, sub = ns % 1000000000, days, sod;

	if (sub < 0) {
		sub += 1000000000;
		secs--;
	}
	days = secs / 86400;
	sod = secs % 86400;
	if (sod < 0) {
		sod += 86400;
		days--;
	}
	lgr_civil_date(days, &c->year, &c->month, &c->day, &c->wday);
	c->hour = (int)(sod / 3600);
	c->minute = (int)(sod / 60 % 60);
	c->second = (int)(sod % 60);
	c->nsec = (int)sub;
}

void lgr_pace_count(struct lgr_pace *p, size_t n, size_t batch_max, uint64_t now_us)
{
	uint64_t span;

	p->count += n;
	span = now_us - p->start_us;
	if (span < LGR_PACE_WINDOW_US)
		return;
	p->busy = p->count * LGR_PACE_FILL_US >= (uint64_t)batch_max * span;
	p->start_us = now_us;
	p->count = 0;
}

int lgr_thread_create(pthread_t *thread, void *(*fn)(void *), void *arg)
{
	sigset_t all, old;
	int rc;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old); /* the new thread inherits the mask */
	rc = pthread_create(thread, NULL, fn, arg);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return rc;
}

/* The kernel's struct sched_attr (its first version, 48 bytes); the C library has no wrapper before glibc 2.41. */
struct sched_attr_v1 {
	uint32_t size;
	uint32_t policy;
	uint64_t flags;
	int32_t nice;
	uint32_t priority;
	uint64_t runtime; /* ns; for an ordinary thread its requested slice (Linux 6.12 and later) */
	uint64_t deadline;
	uint64_t period;
};

int lgr_thread_short_slice(unsigned slice_us)
{
#if defined(SYS_sched_getattr) && defined(SYS_sched_setattr)
	struct sched_attr_v1 attr;

	memset(&attr, 0, sizeof(attr));
	if (syscall(SYS_sched_getattr, 0, &attr, (unsigned)sizeof(attr), 0) != 0)
		return errno;
	if (attr.policy != SCHED_OTHER)
		return 0;
	/* nice and policy as read: setattr sets both, and only a privileged thread may lower its nice value */
	attr.size = sizeof(attr);
	attr.flags = 0;
	attr.runtime = (uint64_t)slice_us * 1000;
	if (syscall(SYS_sched_setattr, 0, &attr, 0) != 0)
		return errno;
	return 0;
#else
	(void)slice_us;
	return ENOSYS;
#endif
}

/* ---- settling what a byte stream carried ------------------------------------------------------------------- */

int lgr_settle_push(struct lgr_settle *q, uint64_t end, uint64_t items)
{
	struct lgr_settle_msg *v;
	size_t cap;

	if (q->n == q->cap) {
		cap = q->cap > 0 ? 2 * q->cap : 64;
		v = malloc(cap * sizeof(*v));
		if (v == NULL)
			return LGR_ENOMEM;
		for (size_t i = 0; i < q->n; i++) /* unwrapped into the new array */
			v[i] = q->v[(q->head + i) % q->cap];
		free(q->v);
		q->v = v;
		q->cap = cap;
		q->head = 0;
	}
	q->v[(q->head + q->n) % q->cap] = (struct lgr_settle_msg){.end = end, .items = items};
	q->n++;
	return LGR_OK;
}

void lgr_settle_unpush(struct lgr_settle *q)
{
	if (q->n > 0)
		q->n--;
}

uint64_t lgr_settle_upto(struct lgr_settle *q, uint64_t gone)
{
	uint64_t items = 0;

	while (q->n > 0 && q->v[q->head].end <= gone) {
		items += q->v[q->head].items;
		q->head = (q->head + 1) % q->cap;
		q->n--;
	}
	return items;
}

uint64_t lgr_settle_drop(struct lgr_settle *q)
{
	return lgr_settle_upto(q, UINT64_MAX);
}

void lgr_settle_free(struct lgr_settle *q)
{
	free(q->v);
	memset(q, 0, sizeof(*q));
}
