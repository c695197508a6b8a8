/*
 * lgr.h: what every unit of the core shares: result codes, limits on untrusted input, and the reporting hook.
 *
 * The core never prints and never aborts. Fallible functions return LGR_OK (0), a negative LGR_E* code, or, in
 * incremental code, LGR_AGAIN (positive) for "need more input". Whatever the core has to tell an operator goes
 * through the hook that the glue (an rsyslog module, a test, a tool) installs with lgr_log_set().
 */
#ifndef LGR_H
#define LGR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <pthread.h>

enum {
	LGR_OK = 0,
	LGR_AGAIN = 1,	       /* incremental decoders: consumed everything, need more */
	LGR_ENOMEM = -1,       /* allocation failed */
	LGR_EINVAL = -2,       /* caller error: bad argument */
	LGR_EDECODE = -3,      /* malformed input (protobuf, JSON, framing) */
	LGR_ETOOBIG = -4,      /* input larger than a configured limit */
	LGR_ELIMIT = -5,       /* too many of something (tags, metrics, envelopes, nesting) */
	LGR_EMISSING = -6,     /* a required field is absent */
	LGR_EUNSUPPORTED = -7, /* valid input that has no representation in the target form */
	LGR_EFULL = -8,	       /* a bounded container is full */
	LGR_EIO = -9,	       /* a system call failed; errno-style detail goes to the log hook */
};

/* A short English description of a result code; never NULL. */
const char *lgr_strerror(int rc);

/*
 * Bounds applied to untrusted input before anything is allocated for it. Zero in any field means the default
 * (LGR_LIMITS_DEFAULT_*). Counts are per envelope unless stated.
 */
struct lgr_limits {
	size_t max_message; /* bytes of one encoded message or datagram */
	size_t max_tags;    /* tags + deprecated_tags entries */
	size_t max_metrics; /* gauge metrics */
	size_t max_batch;   /* envelopes in one EnvelopeBatch */
	unsigned max_depth; /* nesting of length-delimited fields, unknown ones included */
};

#define LGR_LIMITS_DEFAULT_MESSAGE (10u * 1024 * 1024) /* the real agent and router accept 10 MiB */
#define LGR_LIMITS_DEFAULT_TAGS	   4096u
#define LGR_LIMITS_DEFAULT_METRICS 4096u
#define LGR_LIMITS_DEFAULT_BATCH   65536u
#define LGR_LIMITS_DEFAULT_DEPTH   16u

/* Fills every zero field of *lim with its default. */
void lgr_limits_resolve(struct lgr_limits *lim);

enum lgr_log_level {
	LGR_LOG_ERR = 3,
	LGR_LOG_WARNING = 4,
	LGR_LOG_NOTICE = 5,
	LGR_LOG_INFO = 6,
	LGR_LOG_DEBUG = 7,
};

typedef void lgr_log_fn(enum lgr_log_level level, const char *msg, void *ud);

/* Installs the reporting hook (NULL: discard). Not thread-safe: call before any other thread uses the core. */
void lgr_log_set(lgr_log_fn *fn, void *ud);

/* Formats and reports one line through the hook. Thread-safe; cheap when no hook is installed. */
void lgr_log(enum lgr_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * A limiter for repeated log lines: at most burst lines per window; those beyond are counted, and the next line let
 * through reports how many were held back. Not thread-safe: keep one per thread, or take the caller's own lock.
 */
struct lgr_ratelimit {
	uint64_t window_ms; /* length of a window */
	unsigned burst;	    /* lines per window */
	uint64_t start;	    /* start of the current window (ms) */
	unsigned lines;	    /* lines let through in it */
	uint64_t held;	    /* lines held back since the last one let through */
};

#define LGR_RATELIMIT_INIT(window_ms, burst)                                                                           \
	{                                                                                                              \
		(window_ms), (burst), 0, 0, 0                                                                          \
	}

/*
 * Whether a line may go out at now_ms (any monotonic clock in milliseconds). When it may, *held (if not NULL) is the
 * number of lines held back since the last one let through, and that count starts again from zero.
 */
bool lgr_ratelimit_take(struct lgr_ratelimit *rl, uint64_t now_ms, uint64_t *held);

/* Milliseconds of CLOCK_MONOTONIC, for lgr_ratelimit_take and timers. */
uint64_t lgr_now_ms(void);

/* Microseconds of CLOCK_MONOTONIC. */
uint64_t lgr_now_us(void);

/*
 * The proleptic Gregorian date (UTC) of the day days after 1970-01-01 (before it when negative) and its weekday
 * (0 Sunday), as gmtime_r gives them but computed: glibc's gmtime_r takes its time zone lock on every call, which
 * threads stamping messages contend for.
 */
void lgr_civil_date(int64_t days, int *year, int *month, int *day, int *wday);

/* The UTC calendar time ns nanoseconds after 1970-01-01T00:00:00Z (before it when negative), by lgr_civil_date. */
struct lgr_civil {
	int year, month, day, wday; /* month 1-12, day 1-31, wday 0 Sunday */
	int hour, minute, second;
	int nsec; /* [0, 999999999] */
};
void lgr_civil_time(int64_t ns, struct lgr_civil *c);

/*
 * Whether a sender's envelopes arrive fast enough that a batch of batch_max fills within LGR_PACE_FILL_US anyway,
 * judged over windows of LGR_PACE_WINDOW_US from the counts given to lgr_pace_count. A busy sender waits for full
 * batches, which costs little latency and spares both sides the CPU of many small messages; an idle one sends a
 * partial batch as soon as its stream has nothing left to send, which keeps latency low without a timer. Zeroed
 * memory is a valid pace (not busy).
 */
#define LGR_PACE_WINDOW_US 10000u
#define LGR_PACE_FILL_US   1000u

struct lgr_pace {
	uint64_t start_us; /* the window began */
	uint64_t count;	   /* envelopes counted in it */
	bool busy;
};

/* Counts n envelopes taken into batches at now_us (lgr_now_us); at a window's end, decides busy for the next. */
void lgr_pace_count(struct lgr_pace *p, size_t n, size_t batch_max, uint64_t now_us);

/*
 * What a byte stream carried, settled as its bytes leave: the messages queued on it, oldest first, each as the
 * stream's byte count where it ends and the items it completes (envelopes, lines). A sender that counts an item once
 * its bytes left its own queue pushes each message as it queues it, settles up to the count of bytes gone, and drops
 * the rest when the stream is gone, so a lost connection's items count as lost where they were. Zeroed memory is an
 * empty queue; one thread at a time.
 */
struct lgr_settle_msg {
	uint64_t end;
	uint64_t items;
};

struct lgr_settle {
	struct lgr_settle_msg *v; /* a ring of cap */
	size_t cap, head, n;
};

int lgr_settle_push(struct lgr_settle *q, uint64_t end, uint64_t items); /* LGR_OK; LGR_ENOMEM */
void lgr_settle_unpush(struct lgr_settle *q);				 /* the newest taken back (it never went out) */
uint64_t lgr_settle_upto(struct lgr_settle *q, uint64_t gone); /* pops messages ending at or before: their items */
uint64_t lgr_settle_drop(struct lgr_settle *q);		       /* pops every message: their items */
void lgr_settle_free(struct lgr_settle *q);		       /* the memory; the queue is empty again */

/*
 * Where one component's own lines go: each prefixed with "name: " and handed to log (NULL: lgr_log). Both strings
 * are borrowed. Thread-safe as far as log is.
 */
struct lgr_logger {
	const char *name;
	lgr_log_fn *log;
	void *log_ud;
};

void lgr_logger_put(const struct lgr_logger *lg, enum lgr_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/*
 * lgr_logger_put when rl lets the line through; the first line after others were held back says how many. rl
 * follows lgr_ratelimit's rules: the caller serialises its use.
 */
void lgr_logger_say(const struct lgr_logger *lg, struct lgr_ratelimit *rl, enum lgr_log_level level, const char *fmt,
	...) __attribute__((format(printf, 4, 5)));

/*
 * pthread_create for the threads of ours inside a daemon: the new thread blocks every signal, so signals sent to
 * the process (rsyslogd wakes its main loop with kill(getpid(), SIGTTOU) for each internal message) reach the
 * daemon's own threads, never ours. Returns pthread_create's result.
 */
int lgr_thread_create(pthread_t *thread, void *(*fn)(void *), void *arg);

/*
 * Asks the scheduler to give the calling thread short turns: a thread that only moves data between a small buffer
 * and its sockets must run soon after it is woken, or the buffer overflows behind threads that compute. Linux 6.12
 * and later (EEVDF) take a requested slice (sched_attr.sched_runtime, 100 us at the least) for an ordinary thread
 * and run a woken thread with a shorter slice than the running one's first; the thread's share of the CPU is
 * unchanged. Needs no privilege; the thread's policy and nice value stay as they are, and a thread under another
 * policy (real-time, batch, idle: the administrator's choice) is left alone. Earlier kernels accept the request
 * and ignore it. Returns 0, or an errno value when the kernel refused (nothing changed then).
 */
int lgr_thread_short_slice(unsigned slice_us);

#endif
