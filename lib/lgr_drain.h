/*
 * lgr_drain.h: one drain as a binding names it: its URL taken apart (scheme, host, port, credentials, request
 * target), the anonymised form that logs and metric labels may show, the query parameters that decide what it
 * receives and how lines look, and the deny ranges its address is checked against (drains.md sections 2 and 3).
 *
 * Schemes: syslog (TCP), syslog-tls (TLS), https (one POST per line), https-batch (batched POSTs), as the CF
 * syslog agent accepts them, and syslog+tls, Logplex's name for TLS. A drain writes Heroku Logplex lines instead of
 * CF's when its scheme is syslog+tls or its query has format=logplex (CF has no such parameter: Logplex HTTPS
 * drains are plain https:// URLs, so nothing in the URL alone tells them apart). A Logplex drain's token comes from
 * drain-token=d.<uuid>, else a stable one is derived from the URL.
 *
 * Filtering follows the agent's binding parser and filtering writer: drain-type=logs (logs), metrics (counters,
 * gauges), all (logs, counters, gauges); no parameter: logs and events; drain-data=logs (logs, events) | metrics |
 * traces (timers) | all (every type) wins over drain-type; include-metrics-deprecated with any value means all.
 * include-log-types / exclude-log-types take comma-separated source types compared without case with the
 * source_type tag's first segment ("app" matches APP/PROC/WEB); they apply to logs only. A Logplex drain receives
 * logs only.
 *
 * A drain is immutable once parsed and may be read from any thread.
 */
#ifndef LGR_DRAIN_H
#define LGR_DRAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "lgr.h"
#include "lgr_env.h"

#define LGR_DRAIN_URL_MAX	  4096 /* bytes of a drain URL */
#define LGR_DRAIN_LOG_TYPES_MAX	  16   /* entries of include-log-types plus exclude-log-types */
#define LGR_DRAIN_LOG_TYPE_MAX	  31   /* bytes of one entry */
#define LGR_DRAIN_PORT_SYSLOG	  514
#define LGR_DRAIN_PORT_SYSLOG_TLS 6514
#define LGR_DRAIN_PORT_HTTPS	  443
#define LGR_DRAIN_TOKEN_MAX	  64

enum lgr_drain_scheme {
	LGR_DRAIN_SYSLOG = 1,  /* syslog:// */
	LGR_DRAIN_SYSLOG_TLS,  /* syslog-tls://, and syslog+tls:// (Logplex) */
	LGR_DRAIN_HTTPS,       /* https:// */
	LGR_DRAIN_HTTPS_BATCH, /* https-batch:// (sent as https) */
};

enum lgr_drain_format {
	LGR_DRAIN_CF = 0,  /* lgr_syslog_format() lines */
	LGR_DRAIN_LOGPLEX, /* lgr_logplex_format() lines; an https Logplex drain posts application/logplex-1 batches */
};

/* Why a binding is refused; each has the reference's wording as a notice (lgr_drain_notice). */
enum lgr_drain_reason {
	LGR_DRAIN_OK = 0,
	LGR_DRAIN_BAD_URL,	   /* not a URL (too long, control bytes, bad port or escapes) */
	LGR_DRAIN_BAD_SCHEME,	   /* a scheme outside the list */
	LGR_DRAIN_NO_HOST,	   /* no host */
	LGR_DRAIN_BAD_PARAM,	   /* a query parameter of ours with a value we cannot use */
	LGR_DRAIN_RESOLVE_SKIPPED, /* the host failed to resolve recently */
	LGR_DRAIN_RESOLVE_FAILED,  /* the host does not resolve */
	LGR_DRAIN_DENIED,	   /* it resolves into a deny range */
	LGR_DRAIN_BAD_CERT,	   /* cert + key do not load as a pair */
	LGR_DRAIN_BAD_CA,	   /* ca holds no certificate */
	LGR_DRAIN_NO_APP,	   /* a binding entry without apps or app_id */
	LGR_DRAIN_REASON_COUNT
};

/* A short stable name for a reason ("bad_scheme", ...), for counter labels; never NULL. */
const char *lgr_drain_reason_name(enum lgr_drain_reason why);

/*
 * The notice for an app's stream, in the reference's words, e.g. "Invalid Scheme ftp for syslog drain url
 * ftp://host" or "Resolved ip address for syslog drain with url <anon> is blacklisted". scheme may be NULL when
 * the reason does not name it. Returns the length written (out NUL-terminated) or LGR_ETOOBIG.
 */
int lgr_drain_notice(enum lgr_drain_reason why, const char *scheme, const char *anon_url, char *out, size_t cap);

enum {
	LGR_DRAIN_TYPE_LOG = 1u << LGR_ENV_LOG,
	LGR_DRAIN_TYPE_COUNTER = 1u << LGR_ENV_COUNTER,
	LGR_DRAIN_TYPE_GAUGE = 1u << LGR_ENV_GAUGE,
	LGR_DRAIN_TYPE_TIMER = 1u << LGR_ENV_TIMER,
	LGR_DRAIN_TYPE_EVENT = 1u << LGR_ENV_EVENT,
};

struct lgr_drain_filter {
	unsigned types;	    /* LGR_DRAIN_TYPE_* bits of the envelopes that go */
	unsigned n_include; /* the first n_include entries of log_types */
	unsigned n_exclude; /* the next n_exclude */
	char log_types[LGR_DRAIN_LOG_TYPES_MAX][LGR_DRAIN_LOG_TYPE_MAX + 1]; /* upper case */
};

struct lgr_drain {
	const char *url;	 /* as given */
	const char *anon;	 /* scheme://host[:port]path: no userinfo, query or fragment (safe to log) */
	const char *scheme_name; /* lower case, as given ("syslog+tls") */
	enum lgr_drain_scheme scheme;
	enum lgr_drain_format format;
	const char *host;     /* an IPv6 literal without its brackets */
	uint16_t port;	      /* the URL's, or the scheme's default */
	const char *user;     /* percent-decoded userinfo, NULL when absent */
	const char *password; /* NULL when absent */
	const char *target;   /* https request target: the path ("/" when empty) and "?query" as given */
	const char *token;    /* Logplex drain token: drain-token, or "d." and a UUID derived from url */
	bool omit_metadata;   /* no tags element */
	bool internal_tls;    /* ssl-strict-internal=true */
	struct lgr_drain_filter filter;
	/* the strings above live in one allocation with the struct */
};

enum {
	/* the operator's default is no metadata: disable-metadata=false (or omit-metadata=false) turns it on */
	LGR_DRAIN_DEFAULT_OMIT_METADATA = 1u << 0,
};

/*
 * Parses a drain URL of len bytes (no NUL needed). Returns LGR_OK and *out (free with lgr_drain_free), or
 * LGR_EDECODE with *why set (and *out NULL), LGR_ETOOBIG (over LGR_DRAIN_URL_MAX, *why LGR_DRAIN_BAD_URL),
 * LGR_ENOMEM. Checks are made in the reference's order: URL syntax, scheme, host, then our parameters.
 */
int lgr_drain_parse(const char *url, size_t len, unsigned flags, struct lgr_drain **out, enum lgr_drain_reason *why);
void lgr_drain_free(struct lgr_drain *d); /* NULL is a no-op */

/*
 * The anonymised form of any text, parsed or not, for notices about URLs that lgr_drain_parse refused: userinfo
 * (up to the last '@' of the authority), query and fragment removed. Writes at most cap bytes with the NUL (cut
 * when longer); returns the length written.
 */
size_t lgr_drain_anonymize(const char *url, size_t len, char *out, size_t cap);

/* The scheme of url (the text before the first ':', when it has scheme syntax) or "": for notices. */
size_t lgr_drain_scheme_text(const char *url, size_t len, char *out, size_t cap);

/* Whether env goes to drain d. */
bool lgr_drain_accepts(const struct lgr_drain *d, const struct lgr_env *env);

/* --- deny ranges ------------------------------------------------------------------------------------------------ */

/* An inclusive address range; IPv4 is held as IPv4-mapped IPv6 (::ffff:a.b.c.d), so it covers mapped peers too. */
struct lgr_drain_range {
	uint8_t lo[16];
	uint8_t hi[16];
};

/*
 * Parses "10.0.0.0/8", "fd00::/8", a single address, or "a-b" (the reference's start-end form; a <= b, same
 * family). A CIDR's host bits need not be zero. Returns LGR_OK or LGR_EDECODE.
 */
int lgr_drain_range_parse(const char *s, size_t len, struct lgr_drain_range *out);

/* An address as 16 bytes (IPv4 mapped): from text (LGR_OK or LGR_EDECODE) or from a socket address. */
int lgr_drain_addr_parse(const char *s, size_t len, uint8_t out[16]);
int lgr_drain_addr_from_sockaddr(const struct sockaddr *sa, uint8_t out[16]); /* LGR_OK, LGR_EUNSUPPORTED */

struct lgr_drain_deny {
	size_t n;
	struct lgr_drain_range *r; /* owned */
};

/*
 * Parses the configured ranges (drains.denyRanges). On LGR_EDECODE *bad (may be NULL) is the index of the entry
 * that does not parse. LGR_ELIMIT over 65536 ranges. d is empty (and needs no cleanup) on failure.
 */
int lgr_drain_deny_init(struct lgr_drain_deny *d, const char *const *ranges, size_t n, size_t *bad);
void lgr_drain_deny_cleanup(struct lgr_drain_deny *d);
/* True when addr falls in one of the ranges. */
bool lgr_drain_deny_match(const struct lgr_drain_deny *d, const uint8_t addr[16]);

#endif
