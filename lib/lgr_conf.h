/*
 * lgr_conf.h: module configuration described as a table and validated in one place.
 *
 * A module lists its parameters once (name, type, default as text, offset of the field that receives the value,
 * flags, bounds, one-line description). The rsyslog glue turns the same table into rsyslog's parameter block and
 * hands every value rsyslog parsed to lgr_conf_set() / lgr_conf_set_array() as text, so `rsyslogd -N1`, the running
 * module and the unit tests apply the same rules and print the same messages. Defaults go through the same
 * parsers as operator values, so a default is always something an operator could have written.
 *
 * Life of a configured struct:
 *   zeroed struct -> lgr_conf_defaults() -> lgr_conf_set*() per value given -> lgr_conf_finish() (required
 *   parameters, then the table's cross-field check) -> use -> lgr_conf_free() (in every case, also after errors).
 *
 * Field types (what the field at `offset` must be):
 *   LGR_CONF_STRING    char *                 owned copy; NULL when unset and without default
 *   LGR_CONF_BOOL      bool                   on/off, yes/no, true/false, 1/0 (any case)
 *   LGR_CONF_INT       long long              decimal, within [min, max] when either is non-zero
 *   LGR_CONF_SIZE      size_t                 bytes; k, m, g suffixes (any case) multiply by 1024, 1024^2, 1024^3
 *   LGR_CONF_DURATION  long long              milliseconds; optional unit ms, s, m (minutes), h
 *   LGR_CONF_PORT      int                    0..65535; -1 when unset and without default
 *   LGR_CONF_ENUM      int                    index of the word in `words` (matched in any case)
 *   LGR_CONF_ARRAY     struct lgr_conf_strv   owned copies; text form is a comma-separated list
 *
 * Every struct configured through a table embeds one struct lgr_conf_seen (at the table's seen_offset) that
 * records which parameters were given, so "required", "only with X" and "unset means derived from Y" work even
 * where a default value is indistinguishable from a given one.
 *
 * Error messages: every fallible function writes a NUL-terminated message into err (may be NULL when errlen is 0)
 * that starts with the table name and names the parameter, e.g.
 *   omdoppler: parameter 'buffer.size': "lots" is not an integer
 * The unit is not thread-safe for one struct; tables are read-only and may be shared.
 */
#ifndef LGR_CONF_H
#define LGR_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lgr.h"

#define LGR_CONF_MAX_PARAMS 128	 /* parameters per table (bits in struct lgr_conf_seen) */
#define LGR_CONF_MAX_VALUE  4096 /* bytes of one value or array item */
#define LGR_CONF_MAX_ITEMS  1024 /* items of one array */

enum lgr_conf_type {
	LGR_CONF_STRING,
	LGR_CONF_BOOL,
	LGR_CONF_INT,
	LGR_CONF_SIZE,
	LGR_CONF_DURATION,
	LGR_CONF_PORT,
	LGR_CONF_ENUM,
	LGR_CONF_ARRAY,
};

/* Flags of a parameter. */
#define LGR_CONF_REQUIRED 0x1u /* must be given, and not as an empty string or array */

struct lgr_conf_strv {
	char **v; /* n owned, NUL-terminated items */
	size_t n;
};

struct lgr_conf_seen {
	uint64_t bits[LGR_CONF_MAX_PARAMS / 64];
};

/*
 * Validates one string value or one array item beyond its type. Returns 0 when acceptable; otherwise writes a
 * short reason ("expected host:port") into why and returns a negative LGR_E* code.
 */
typedef int lgr_conf_check_fn(const char *value, char *why, size_t whylen);

struct lgr_conf_param {
	const char *name; /* documented spelling; looked up in any case */
	enum lgr_conf_type type;
	const char *def;	  /* default as an operator would write it; NULL: none */
	size_t offset;		  /* offsetof(struct, field) */
	unsigned flags;		  /* LGR_CONF_REQUIRED */
	long long min, max;	  /* INT, SIZE, DURATION: bounds, applied when either is non-zero */
	const char *const *words; /* ENUM: allowed words; ARRAY: allowed items (NULL: any). NULL-terminated */
	lgr_conf_check_fn *check; /* STRING values, ARRAY items: extra validation (NULL: none) */
	const char *desc;	  /* one line for docs and debug dumps */
};

struct lgr_conf_table;

/*
 * Cross-field validation, run by lgr_conf_finish() after the per-parameter checks. May also resolve derived
 * defaults (e.g. a port that depends on the protocol). Reports like the other functions (see lgr_conf_error,
 * lgr_conf_require, lgr_conf_forbid) and returns 0 or a negative LGR_E* code.
 */
typedef int lgr_conf_table_check_fn(const struct lgr_conf_table *t, void *obj, char *err, size_t errlen);

struct lgr_conf_table {
	const char *name; /* prefix of every message, e.g. "omdoppler" */
	const struct lgr_conf_param *params;
	size_t nparams;			/* at most LGR_CONF_MAX_PARAMS */
	size_t seen_offset;		/* offsetof(struct, its struct lgr_conf_seen member) */
	lgr_conf_table_check_fn *check; /* NULL: none */
};

/*
 * Initializes every field of *obj from the table's defaults and clears its record of given parameters. obj must
 * be zeroed or have been through lgr_conf_free(). Returns LGR_OK, LGR_ENOMEM, or LGR_EINVAL for a broken table
 * (too many parameters, duplicate names, a default its own parser rejects: a programming error, reported like
 * the rest). On failure obj still needs lgr_conf_free().
 */
int lgr_conf_defaults(const struct lgr_conf_table *t, void *obj, char *err, size_t errlen);

/*
 * Sets the parameter called name (any case) from its text form, replacing an earlier value. On error the field
 * keeps its previous value. Returns LGR_OK; LGR_EINVAL for an unknown name or a value its type, bounds, words or
 * check reject; LGR_ETOOBIG for a value over LGR_CONF_MAX_VALUE bytes; LGR_ELIMIT for an array of more than
 * LGR_CONF_MAX_ITEMS items; LGR_ENOMEM.
 */
int lgr_conf_set(
	const struct lgr_conf_table *t, void *obj, const char *name, const char *value, char *err, size_t errlen);

/*
 * Sets an ARRAY parameter from separate items (as rsyslog delivers `["a", "b"]`), so items may contain commas.
 * For a scalar parameter, n must be 1 and the item is set as by lgr_conf_set(). Same returns as lgr_conf_set().
 */
int lgr_conf_set_array(const struct lgr_conf_table *t, void *obj, const char *name, const char *const *items, size_t n,
	char *err, size_t errlen);

/* Checks required parameters (LGR_EMISSING) and then runs the table's check callback. */
int lgr_conf_finish(const struct lgr_conf_table *t, void *obj, char *err, size_t errlen);

/* Frees the strings and arrays obj owns and leaves them NULL/empty. Safe on a zeroed or already freed struct. */
void lgr_conf_free(const struct lgr_conf_table *t, void *obj);

/* The parameter called name in any case, or NULL. */
const struct lgr_conf_param *lgr_conf_find(const struct lgr_conf_table *t, const char *name);

/* Whether the parameter called name was given since lgr_conf_defaults(). false for an unknown name. */
bool lgr_conf_is_set(const struct lgr_conf_table *t, const void *obj, const char *name);

/* For check callbacks: formats "<table>: <message>" into err and returns rc. */
int lgr_conf_error(const struct lgr_conf_table *t, char *err, size_t errlen, int rc, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

/*
 * For check callbacks: LGR_EMISSING with "<table>: parameter '<name>' is required <condition>" unless the
 * parameter was given with a non-empty value; condition is e.g. "when tls is on".
 */
int lgr_conf_require(const struct lgr_conf_table *t, const void *obj, const char *name, const char *condition,
	char *err, size_t errlen);

/*
 * For check callbacks: LGR_EINVAL with "<table>: parameter '<name>' is only valid <condition>" when the parameter
 * was given; condition is e.g. "with protocol=\"subscribe\"".
 */
int lgr_conf_forbid(const struct lgr_conf_table *t, const void *obj, const char *name, const char *condition, char *err,
	size_t errlen);

/* A short name of a type ("size", "port", ...), for docs and debug dumps. */
const char *lgr_conf_type_name(enum lgr_conf_type type);

/* Stock item checks. host:port with a non-empty host ([v6]:port for IPv6) and port 1..65535. */
int lgr_conf_check_hostport(const char *value, char *why, size_t whylen);
/*
 * Splits a value lgr_conf_check_hostport accepted into host (brackets of [v6] removed, NUL-terminated) and port.
 * LGR_OK; LGR_EINVAL (no colon, an empty host or one of hostlen bytes or more, a port outside 1..65535).
 */
int lgr_conf_split_hostport(const char *value, char *host, size_t hostlen, uint16_t *port);
/* key:value with a non-empty key (the value may contain ':' and may be empty). */
int lgr_conf_check_tag(const char *value, char *why, size_t whylen);
/* An IPv4 or IPv6 network in CIDR notation, e.g. 10.0.0.0/8 or fd00::/8. */
int lgr_conf_check_cidr(const char *value, char *why, size_t whylen);

/*
 * value as it may be shown in a message (an error, a debug line): the userinfo of a URL in it ("scheme://user:pass@")
 * replaced by "***", since drain URLs carry credentials; everything else as it is. Cut to fit out (outlen > 0).
 */
void lgr_conf_shown(const char *value, char *out, size_t outlen);

#endif
