/*
 * lgr_syslog.h: the lines that drains carry, written into a bounded buffer: Cloud Foundry's RFC 5424 form
 * (drains.md section 1, as the syslog agent's converter writes it), RFC 6587 octet-counting frames, Heroku
 * Logplex's syslog and HTTPS forms (section 5), and the notices a drain injects into an app's own log stream.
 *
 * The formatters are pure: no clock, no locale (doubles are written in the C form whatever the process locale),
 * no allocation once the output buffer has grown to its working size (an envelope with more than 64 tags or gauge
 * metrics allocates one scratch array). Every function appends whole units: when one fails, the buffer is as it
 * was before the call.
 *
 * Threading: reentrant; a buffer belongs to one thread at a time.
 */
#ifndef LGR_SYSLOG_H
#define LGR_SYSLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lgr.h"
#include "lgr_env.h"

/* --- the output buffer ---------------------------------------------------------------------------------------- */

/*
 * A growing buffer whose length never exceeds limit. p is NUL-terminated after every successful append (the NUL
 * is not counted in len), so a line can be handed to string functions for logging.
 */
struct lgr_syslog_buf {
	char *p; /* owned; NULL until the first append */
	size_t len;
	size_t cap;
	size_t limit;
};

#define LGR_SYSLOG_BUF_DEFAULT_LIMIT (16u * 1024 * 1024) /* room for one line of a 10 MiB envelope */

/* limit 0 means LGR_SYSLOG_BUF_DEFAULT_LIMIT. Allocates nothing. */
void lgr_syslog_buf_init(struct lgr_syslog_buf *b, size_t limit);
void lgr_syslog_buf_cleanup(struct lgr_syslog_buf *b); /* frees p; the buffer may be initialised again */
void lgr_syslog_buf_reset(struct lgr_syslog_buf *b);   /* len 0, memory kept */
/* Appends n bytes: LGR_OK, LGR_ETOOBIG (past the limit), LGR_ENOMEM. */
int lgr_syslog_buf_put(struct lgr_syslog_buf *b, const void *s, size_t n);

/* --- Cloud Foundry RFC 5424 ----------------------------------------------------------------------------------- */

#define LGR_SYSLOG_PEN		 "47450" /* the Cloud Foundry Foundation's IANA private enterprise number */
#define LGR_SYSLOG_HOSTNAME_MAX	 255
#define LGR_SYSLOG_APPNAME_MAX	 48
#define LGR_SYSLOG_PROCID_MAX	 128
#define LGR_SYSLOG_HOST_PART_MAX 63 /* each of org, space, app in the hostname */
#define LGR_SYSLOG_TIMESTAMP_MAX 40 /* room for any timestamp this unit writes, with its NUL */

struct lgr_syslog_opts {
	const char *hostname; /* the binding's hostname, used when the envelope carries none of organization_name,
				 space_name, app_name; NULL or "" writes "-" */
	bool omit_metadata;   /* no tags@47450 element (disable-metadata=true) */
};

enum {
	LGR_SYSLOG_OCTET = 1u << 0, /* each line framed "<length> SP <line>" (RFC 6587 octet counting) */
};

/*
 * Appends the lines of env to b: one for a log, counter, timer or event, one per gauge metric (in name order;
 * a repeated name counts once, its last value), none for an envelope without a message or a gauge without
 * metrics. *nlines (may be NULL) receives how many were written.
 *
 * Every line is exactly what the reference converter writes:
 *   <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID - SD MSG
 * with PRI 11 for Log ERR and 14 for everything else, the timestamp in UTC with microseconds (trailing zeros and
 * a bare dot trimmed, truncated, not rounded) and "+00:00", and for metrics an empty MSG written as "] \n".
 *
 * Returns LGR_OK; LGR_EUNSUPPORTED when the reference refuses the envelope (it drops it): a hostname, APP-NAME or
 * PROCID with a byte outside printable US-ASCII, a tag key that is not an SD-NAME (printable US-ASCII other than
 * '=', ']', '"'), or a tag or metric value that is not UTF-8; LGR_ETOOBIG when b's limit is reached; LGR_ENOMEM.
 * On any error b is unchanged and *nlines is 0.
 */
int lgr_syslog_format(const struct lgr_env *env, const struct lgr_syslog_opts *opts, unsigned flags,
	struct lgr_syslog_buf *b, size_t *nlines);

/*
 * Walks a buffer of octet-counted frames: *line and *line_len receive the next frame's message and the return value
 * is the number of bytes the frame took (0 at the end of data, or when the data does not start with a well-formed
 * frame). For writers that send each line on its own (https:// drains post one line per request).
 */
size_t lgr_syslog_next_frame(const char *data, size_t len, const char **line, size_t *line_len);

/* The RFC 5424 timestamp of ns (UNIX nanoseconds) as CF writes it; returns its length. */
size_t lgr_syslog_timestamp(int64_t ns, char out[LGR_SYSLOG_TIMESTAMP_MAX]);

/* The hostname that lines of env carry under opts (the tags' org.space.app or the binding's); returns its length. */
size_t lgr_syslog_hostname(const struct lgr_env *env, const char *fallback, char out[LGR_SYSLOG_HOSTNAME_MAX + 1]);

/* A gauge value as Go's strconv.FormatFloat(v, 'g', -1, 64) writes it ("0.23", "1e+06", "NaN"); its length. */
#define LGR_SYSLOG_DOUBLE_MAX 32
size_t lgr_syslog_double(double v, char out[LGR_SYSLOG_DOUBLE_MAX]);

/* --- in-stream notices ---------------------------------------------------------------------------------------- */

/* source_type of the notices the syslog agent writes into an app's stream (instance "0"). */
#define LGR_SYSLOG_NOTICE_SOURCE_TYPE "LGR"

/*
 * "N messages lost for application <app_id> in user provided syslog drain with url <anon_url>", the reference's
 * wording for drops. Writes at most cap bytes with the NUL; returns the length, or LGR_ETOOBIG (out holds "").
 */
int lgr_syslog_notice_lost(uint64_t n, const char *app_id, const char *anon_url, char *out, size_t cap);

/*
 * A log envelope carrying text into app_id's own stream as the reference's EmitAppLog builds it: source_id app_id,
 * instance_id "0", tag source_type "LGR", type OUT, timestamp now_ns. Returns LGR_OK and *out (refcount 1),
 * LGR_EINVAL for an empty app_id (the reference writes nothing then) or LGR_ENOMEM.
 */
int lgr_syslog_notice_env(const char *app_id, const char *text, int64_t now_ns, struct lgr_env **out);

/* --- Heroku Logplex ------------------------------------------------------------------------------------------- */

#define LGR_LOGPLEX_LINE_MAX	 10000 /* message bytes per line: longer messages are split into such chunks */
#define LGR_LOGPLEX_FRAME_ID_LEN 32    /* hex digits of a Logplex-Frame-Id */
#define LGR_LOGPLEX_PRI_OVERFLOW 172   /* local5.warning, as Logplex writes its L10 notice */
#define LGR_LOGPLEX_PRI_OUT	 190   /* local7.info: what this unit writes for Log OUT */
#define LGR_LOGPLEX_PRI_ERR	 187   /* local7.err: for Log ERR */
#define LGR_LOGPLEX_FIELD_MAX	 128   /* app and process fields */

enum lgr_logplex_form {
	/* syslog:// and syslog+tls:// drains: "<PRI>1 TIME <drain-token> <source> <process> - - <msg>\n" */
	LGR_LOGPLEX_SYSLOG,
	/* HTTPS drains: "<PRI>1 TIME host <source> <process> - <msg>\n", no structured data and no NILVALUE for it */
	LGR_LOGPLEX_HTTPS,
};

struct lgr_logplex_line {
	int pri;	     /* 0..191 */
	int64_t time_ns;     /* UNIX nanoseconds */
	bool time_seconds;   /* TIME without a fraction (Logplex's own notices); else 6 digits of microseconds */
	const char *host;    /* LGR_LOGPLEX_SYSLOG: the drain token; ignored for LGR_LOGPLEX_HTTPS ("host") */
	const char *source;  /* "app" for an app's output, "heroku" for the platform's */
	const char *process; /* e.g. "web.1" */
	const void *msg;     /* not NUL-terminated; NUL bytes are dropped */
	size_t msg_len;
};

/*
 * Appends l as octet-counted frames: one per LGR_LOGPLEX_LINE_MAX bytes of message (a trailing newline is not
 * message; each frame's line ends with one). Header fields have bytes outside printable US-ASCII replaced by '-'
 * and are cut to LGR_LOGPLEX_FIELD_MAX ("-" when empty). *nframes (may be NULL) receives the frame count.
 * Returns LGR_OK, LGR_EINVAL (pri out of range), LGR_ETOOBIG, LGR_ENOMEM; on error b is unchanged.
 */
int lgr_logplex_format(
	const struct lgr_logplex_line *l, enum lgr_logplex_form form, struct lgr_syslog_buf *b, size_t *nframes);

/*
 * A Logplex line for a log envelope: PRI LGR_LOGPLEX_PRI_OUT or _ERR, source "app" when the source_type tag's
 * first segment is APP (else "heroku"), process the source_type's last segment in lower case, a dot and the
 * instance id ("APP/PROC/WEB" + "1" -> "web.1"; without an instance id the segment alone). The strings are
 * written into the caller's arrays; l->msg points into env, which must outlive l. LGR_EUNSUPPORTED for anything
 * but a log (Logplex carries logs only).
 */
int lgr_logplex_from_env(const struct lgr_env *env, const char *host, struct lgr_logplex_line *l,
	char source[LGR_LOGPLEX_FIELD_MAX + 1], char process[LGR_LOGPLEX_FIELD_MAX + 1]);

/*
 * Appends Logplex's overflow notice as one frame: "Error L10 (output buffer overflow): N messages dropped since
 * <since>." from source heroku, process logplex, PRI 172, TIME now_ns; both times to the second. An HTTPS writer
 * appends it first in the batch it sends after losing messages, and counts it in Logplex-Msg-Count.
 */
int lgr_logplex_overflow(enum lgr_logplex_form form, const char *host, uint64_t n, int64_t since_ns, int64_t now_ns,
	struct lgr_syslog_buf *b);

/*
 * A fresh Logplex-Frame-Id: 32 upper-case hex digits, unique per call within the process and random across
 * processes. A batch keeps its id across retries.
 */
void lgr_logplex_frame_id(char out[LGR_LOGPLEX_FRAME_ID_LEN + 1]);

#endif
