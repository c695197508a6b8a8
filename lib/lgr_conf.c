/*
 * lgr_conf.c: table-driven configuration: defaults, parsing and validation of parameter values given as text.
 *
 * Every value (defaults included) goes through one parser per type into a temporary, and only a value that passed
 * every check replaces the field, so a failed lgr_conf_set() leaves the struct as it was.
 */
#include "lgr_conf.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SHOW_MAX 64 /* bytes of an operator's value quoted back in a message */
#define STR2(x)	 #x
#define STR(x)	 STR2(x)
#define TOO_LONG "is longer than the limit of " STR(LGR_CONF_MAX_VALUE) " bytes"

/* A parsed value before it is stored. */
union value {
	char *s;
	bool b;
	long long ll;
	size_t sz;
	int i;
	struct lgr_conf_strv a;
};

static void *field(const struct lgr_conf_param *p, void *obj)
{
	return (char *)obj + p->offset;
}

static struct lgr_conf_seen *seen_of(const struct lgr_conf_table *t, const void *obj)
{
	return (struct lgr_conf_seen *)((char *)obj + t->seen_offset);
}

static size_t index_of(const struct lgr_conf_table *t, const struct lgr_conf_param *p)
{
	return (size_t)(p - t->params);
}

static void mark_seen(const struct lgr_conf_table *t, void *obj, const struct lgr_conf_param *p)
{
	size_t i = index_of(t, p);

	seen_of(t, obj)->bits[i / 64] |= UINT64_C(1) << (i % 64);
}

static bool was_seen(const struct lgr_conf_table *t, const void *obj, const struct lgr_conf_param *p)
{
	size_t i = index_of(t, p);

	return (seen_of(t, obj)->bits[i / 64] >> (i % 64)) & 1u;
}

static void vformat(char *err, size_t errlen, const char *fmt, va_list ap)
{
	if (err == NULL || errlen == 0)
		return;
	vsnprintf(err, errlen, fmt, ap);
}

static void format(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void format(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vformat(err, errlen, fmt, ap);
	va_end(ap);
}

/* "<table>: parameter '<name>': <value quoted> <why>", the form of every value error. */
void lgr_conf_shown(const char *value, char *out, size_t outlen)
{
	const char *scheme = strstr(value, "://"), *host, *at;

	if (scheme != NULL) {
		host = scheme + 3;
		at = host + strcspn(host, "@/?#");
		if (*at == '@') {
			snprintf(out, outlen, "%.*s***%s", (int)(host - value), value, at);
			return;
		}
	}
	snprintf(out, outlen, "%s", value);
}

static int value_error(const struct lgr_conf_table *t, const struct lgr_conf_param *p, const char *value, char *err,
	size_t errlen, int rc, const char *why)
{
	char shown[SHOW_MAX + 2]; /* one byte more than shown tells whether it was cut */

	lgr_conf_shown(value, shown, sizeof(shown));
	format(err, errlen, "%s: parameter '%s': \"%.*s%s\" %s", t->name, p->name, SHOW_MAX, shown,
		strlen(shown) > SHOW_MAX ? "..." : "", why);
	return rc;
}

int lgr_conf_error(const struct lgr_conf_table *t, char *err, size_t errlen, int rc, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	format(err, errlen, "%s: %s", t->name, msg);
	return rc;
}

const char *lgr_conf_type_name(enum lgr_conf_type type)
{
	switch (type) {
	case LGR_CONF_STRING: return "string";
	case LGR_CONF_BOOL: return "bool";
	case LGR_CONF_INT: return "integer";
	case LGR_CONF_SIZE: return "size";
	case LGR_CONF_DURATION: return "duration";
	case LGR_CONF_PORT: return "port";
	case LGR_CONF_ENUM: return "enum";
	case LGR_CONF_ARRAY: return "array";
	}
	return "unknown";
}

const struct lgr_conf_param *lgr_conf_find(const struct lgr_conf_table *t, const char *name)
{
	size_t i;

	if (name == NULL)
		return NULL;
	for (i = 0; i < t->nparams; i++) {
		if (strcasecmp(t->params[i].name, name) == 0)
			return &t->params[i];
	}
	return NULL;
}

bool lgr_conf_is_set(const struct lgr_conf_table *t, const void *obj, const char *name)
{
	const struct lgr_conf_param *p = lgr_conf_find(t, name);

	return p != NULL && was_seen(t, obj, p);
}

/* Unsigned decimal digits at s, at least one; *end is the first byte after them. 0, or -1 on no digits/overflow. */
static int parse_digits(const char *s, unsigned long long *out, const char **end)
{
	unsigned long long v = 0;
	const char *c = s;

	if (!isdigit((unsigned char)*c))
		return -1;
	for (; isdigit((unsigned char)*c); c++) {
		unsigned d = (unsigned)(*c - '0');

		if (v > (ULLONG_MAX - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	*out = v;
	*end = c;
	return 0;
}

static bool in_bounds(const struct lgr_conf_param *p, long long v)
{
	if (p->min == 0 && p->max == 0)
		return true;
	return v >= p->min && v <= p->max;
}

static bool in_bounds_u(const struct lgr_conf_param *p, unsigned long long v)
{
	if (p->min == 0 && p->max == 0)
		return true;
	if (p->max < 0 || v > (unsigned long long)p->max)
		return false;
	return p->min <= 0 || v >= (unsigned long long)p->min;
}

static int out_of_range(
	const struct lgr_conf_table *t, const struct lgr_conf_param *p, const char *value, char *err, size_t errlen)
{
	char why[96];

	if (p->min == 0 && p->max == 0)
		snprintf(why, sizeof(why), "is too large");
	else
		snprintf(why, sizeof(why), "is out of range (%lld..%lld)", p->min, p->max);
	return value_error(t, p, value, err, errlen, LGR_EINVAL, why);
}

static int parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = {"on", "yes", "true", "1"};
	static const char *const no[] = {"off", "no", "false", "0"};
	size_t i;

	for (i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return -1;
}

static int parse_int(const char *s, long long *out)
{
	unsigned long long mag;
	const char *end;
	bool neg = false;

	if (*s == '-' || *s == '+') {
		neg = *s == '-';
		s++;
	}
	if (parse_digits(s, &mag, &end) != 0 || *end != '\0')
		return -1;
	if (neg) {
		if (mag > (unsigned long long)LLONG_MAX + 1)
			return -1;
		*out = mag == (unsigned long long)LLONG_MAX + 1 ? LLONG_MIN : -(long long)mag;
	} else {
		if (mag > (unsigned long long)LLONG_MAX)
			return -1;
		*out = (long long)mag;
	}
	return 0;
}

/* Returns 0, -1 for a malformed value, -2 for one that does not fit. */
static int parse_size(const char *s, unsigned long long *out)
{
	unsigned long long v, mult = 1;
	const char *end;

	if (parse_digits(s, &v, &end) != 0)
		return isdigit((unsigned char)*s) ? -2 : -1;
	switch (*end) {
	case '\0': break;
	case 'k':
	case 'K': mult = 1024ull; break;
	case 'm':
	case 'M': mult = 1024ull * 1024; break;
	case 'g':
	case 'G': mult = 1024ull * 1024 * 1024; break;
	default: return -1;
	}
	if (*end != '\0' && end[1] != '\0')
		return -1;
	if (v > SIZE_MAX / mult)
		return -2;
	*out = v * mult;
	return 0;
}

/* Returns 0, -1 for a malformed value, -2 for one that does not fit. */
static int parse_duration(const char *s, unsigned long long *out)
{
	static const struct {
		const char *unit;
		unsigned long long ms;
	} units[] = {{"", 1}, {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}};
	unsigned long long v;
	const char *end;
	size_t i;

	if (parse_digits(s, &v, &end) != 0)
		return isdigit((unsigned char)*s) ? -2 : -1;
	for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcasecmp(end, units[i].unit) != 0)
			continue;
		if (v > (unsigned long long)LLONG_MAX / units[i].ms)
			return -2;
		*out = v * units[i].ms;
		return 0;
	}
	return -1;
}

/* The index of s in words (any case), or -1. */
static int word_index(const char *const *words, const char *s)
{
	int i;

	for (i = 0; words != NULL && words[i] != NULL; i++) {
		if (strcasecmp(words[i], s) == 0)
			return i;
	}
	return -1;
}

static int not_a_word(
	const struct lgr_conf_table *t, const struct lgr_conf_param *p, const char *value, char *err, size_t errlen)
{
	char why[256];
	size_t used, i;

	used = (size_t)snprintf(why, sizeof(why), "is not one of:");
	for (i = 0; p->words != NULL && p->words[i] != NULL && used < sizeof(why); i++)
		used += (size_t)snprintf(why + used, sizeof(why) - used, "%s %s", i ? "," : "", p->words[i]);
	return value_error(t, p, value, err, errlen, LGR_EINVAL, why);
}

/* Validates one string value or array item and returns an owned copy in *out (canonical spelling for words). */
static int parse_item(const struct lgr_conf_table *t, const struct lgr_conf_param *p, const char *value, char **out,
	char *err, size_t errlen)
{
	char why[128] = "";
	char msg[224];
	const char *keep = value;
	int rc = LGR_OK, w;

	if (strlen(value) > LGR_CONF_MAX_VALUE) {
		rc = value_error(t, p, value, err, errlen, LGR_ETOOBIG, TOO_LONG);
		goto out;
	}
	if (p->type == LGR_CONF_ARRAY && p->words != NULL) {
		w = word_index(p->words, value);
		if (w < 0) {
			rc = not_a_word(t, p, value, err, errlen);
			goto out;
		}
		keep = p->words[w];
	}
	if (p->check != NULL && (rc = p->check(value, why, sizeof(why))) != 0) {
		/* rsyslog hands a single string as an array of one item, unsplit */
		bool list_in_one = p->type == LGR_CONF_ARRAY && strchr(value, ',') != NULL;

		snprintf(msg, sizeof(msg), "is invalid: %s%s", why[0] ? why : "rejected",
			list_in_one ? " (several items go in an array: [\"a\", \"b\"])" : "");
		rc = value_error(t, p, value, err, errlen, rc < 0 ? rc : LGR_EINVAL, msg);
		goto out;
	}
	*out = strdup(keep);
	if (*out == NULL)
		rc = lgr_conf_error(t, err, errlen, LGR_ENOMEM, "parameter '%s': out of memory", p->name);
out:
	return rc;
}

static void strv_free(struct lgr_conf_strv *a)
{
	size_t i;

	for (i = 0; i < a->n; i++)
		free(a->v[i]);
	free(a->v);
	a->v = NULL;
	a->n = 0;
}

static int parse_array(const struct lgr_conf_table *t, const struct lgr_conf_param *p, const char *const *items,
	size_t n, struct lgr_conf_strv *out, char *err, size_t errlen)
{
	struct lgr_conf_strv a = {NULL, 0};
	int rc = LGR_OK;
	size_t i;

	if (n > LGR_CONF_MAX_ITEMS) {
		rc = lgr_conf_error(t, err, errlen, LGR_ELIMIT, "parameter '%s': %zu items, more than the limit of %d",
			p->name, n, LGR_CONF_MAX_ITEMS);
		goto out;
	}
	if (n > 0) {
		a.v = calloc(n, sizeof(*a.v));
		if (a.v == NULL) {
			rc = lgr_conf_error(t, err, errlen, LGR_ENOMEM, "parameter '%s': out of memory", p->name);
			goto out;
		}
	}
	for (i = 0; i < n; i++) {
		if (items[i][0] == '\0') {
			rc = lgr_conf_error(
				t, err, errlen, LGR_EINVAL, "parameter '%s': item %zu is empty", p->name, i + 1);
			goto out;
		}
		rc = parse_item(t, p, items[i], &a.v[i], err, errlen);
		if (rc != LGR_OK)
			goto out;
		a.n = i + 1;
	}
	*out = a;
	a.v = NULL;
	a.n = 0; /* ownership transferred */
out:
	strv_free(&a);
	return rc;
}

/* Splits "a, b,c" into items (blanks around items trimmed); an empty or blank text is an empty array. */
static int parse_array_text(const struct lgr_conf_table *t, const struct lgr_conf_param *p, const char *value,
	struct lgr_conf_strv *out, char *err, size_t errlen)
{
	const char **items = NULL;
	char *copy = NULL, *c, *start;
	size_t n = 0, cap = 1;
	int rc;

	copy = strdup(value);
	if (copy == NULL) {
		rc = lgr_conf_error(t, err, errlen, LGR_ENOMEM, "parameter '%s': out of memory", p->name);
		goto out;
	}
	for (c = copy; *c != '\0'; c++)
		cap += *c == ',';
	items = calloc(cap, sizeof(*items));
	if (items == NULL) {
		rc = lgr_conf_error(t, err, errlen, LGR_ENOMEM, "parameter '%s': out of memory", p->name);
		goto out;
	}
	for (start = copy;; start = c + 1) {
		char *e;

		c = strchr(start, ',');
		if (c != NULL)
			*c = '\0';
		while (isspace((unsigned char)*start))
			start++;
		e = start + strlen(start);
		while (e > start && isspace((unsigned char)e[-1]))
			*--e = '\0';
		items[n++] = start;
		if (c == NULL)
			break;
	}
	if (n == 1 && items[0][0] == '\0')
		n = 0;
	rc = parse_array(t, p, items, n, out, err, errlen);
out:
	free(items);
	free(copy);
	return rc;
}

/* SIZE and DURATION: an unsigned amount within the parameter's bounds. */
static int parse_amount(const struct lgr_conf_table *t, const struct lgr_conf_param *p, const char *value,
	unsigned long long *u, char *err, size_t errlen)
{
	int rc;

	rc = p->type == LGR_CONF_SIZE ? parse_size(value, u) : parse_duration(value, u);
	if (rc == -1)
		return value_error(t, p, value, err, errlen, LGR_EINVAL,
			p->type == LGR_CONF_SIZE
				? "is not a size (a number of bytes with an optional k, m or g suffix)"
				: "is not a duration (milliseconds, or a number with unit ms, s, m or h)");
	if (rc != 0 || !in_bounds_u(p, *u))
		return out_of_range(t, p, value, err, errlen);
	return LGR_OK;
}

/* Parses value as p's type into *v; on success the caller owns what *v holds. */
static int parse_value(const struct lgr_conf_table *t, const struct lgr_conf_param *p, const char *value,
	union value *v, char *err, size_t errlen)
{
	unsigned long long u = 0;
	const char *end;
	int rc = LGR_OK;

	if (p->type != LGR_CONF_ARRAY && strlen(value) > LGR_CONF_MAX_VALUE) {
		rc = value_error(t, p, value, err, errlen, LGR_ETOOBIG, TOO_LONG);
		goto out;
	}
	switch (p->type) {
	case LGR_CONF_STRING: rc = parse_item(t, p, value, &v->s, err, errlen); break;
	case LGR_CONF_BOOL:
		if (parse_bool(value, &v->b) != 0)
			rc = value_error(t, p, value, err, errlen, LGR_EINVAL,
				"is not a boolean (on/off, yes/no, true/false, 1/0)");
		break;
	case LGR_CONF_INT:
		if (parse_int(value, &v->ll) != 0)
			rc = value_error(t, p, value, err, errlen, LGR_EINVAL, "is not an integer");
		else if (!in_bounds(p, v->ll))
			rc = out_of_range(t, p, value, err, errlen);
		break;
	case LGR_CONF_SIZE:
		rc = parse_amount(t, p, value, &u, err, errlen);
		v->sz = (size_t)u;
		break;
	case LGR_CONF_DURATION:
		rc = parse_amount(t, p, value, &u, err, errlen);
		v->ll = (long long)u;
		break;
	case LGR_CONF_PORT:
		if (parse_digits(value, &u, &end) != 0 || *end != '\0' || u > 65535)
			rc = value_error(t, p, value, err, errlen, LGR_EINVAL, "is not a port (0..65535)");
		else
			v->i = (int)u;
		break;
	case LGR_CONF_ENUM:
		v->i = word_index(p->words, value);
		if (v->i < 0)
			rc = not_a_word(t, p, value, err, errlen);
		break;
	case LGR_CONF_ARRAY: rc = parse_array_text(t, p, value, &v->a, err, errlen); break;
	default: rc = lgr_conf_error(t, err, errlen, LGR_EINVAL, "parameter '%s' has an unknown type", p->name); break;
	}
out:
	return rc;
}

/* Frees what the field owns and stores v (ownership transferred). */
static void store(const struct lgr_conf_param *p, void *obj, union value *v)
{
	void *f = field(p, obj);

	switch (p->type) {
	case LGR_CONF_STRING:
		free(*(char **)f);
		*(char **)f = v->s;
		break;
	case LGR_CONF_BOOL: *(bool *)f = v->b; break;
	case LGR_CONF_INT:
	case LGR_CONF_DURATION: *(long long *)f = v->ll; break;
	case LGR_CONF_SIZE: *(size_t *)f = v->sz; break;
	case LGR_CONF_PORT:
	case LGR_CONF_ENUM: *(int *)f = v->i; break;
	case LGR_CONF_ARRAY:
		strv_free((struct lgr_conf_strv *)f);
		*(struct lgr_conf_strv *)f = v->a;
		break;
	}
}

/* The value of a parameter that has no default. */
static void clear(const struct lgr_conf_param *p, void *obj)
{
	union value v;

	memset(&v, 0, sizeof(v));
	if (p->type == LGR_CONF_PORT)
		v.i = -1;
	store(p, obj, &v);
}

int lgr_conf_defaults(const struct lgr_conf_table *t, void *obj, char *err, size_t errlen)
{
	char why[512];
	union value v;
	size_t i, j;
	int rc = LGR_OK;

	if (t->nparams > LGR_CONF_MAX_PARAMS) {
		rc = lgr_conf_error(t, err, errlen, LGR_EINVAL, "table has %zu parameters, more than %d", t->nparams,
			LGR_CONF_MAX_PARAMS);
		goto out;
	}
	memset(seen_of(t, obj), 0, sizeof(struct lgr_conf_seen));
	for (i = 0; i < t->nparams; i++) {
		const struct lgr_conf_param *p = &t->params[i];

		for (j = 0; j < i; j++) {
			if (strcasecmp(t->params[j].name, p->name) == 0) {
				rc = lgr_conf_error(
					t, err, errlen, LGR_EINVAL, "table lists parameter '%s' twice", p->name);
				goto out;
			}
		}
		if (p->type == LGR_CONF_ENUM && (p->words == NULL || p->words[0] == NULL)) {
			rc = lgr_conf_error(
				t, err, errlen, LGR_EINVAL, "parameter '%s' is an enum without words", p->name);
			goto out;
		}
		clear(p, obj);
		if (p->def == NULL)
			continue;
		rc = parse_value(t, p, p->def, &v, why, sizeof(why));
		if (rc != LGR_OK) {
			format(err, errlen, "%s (the table's default is invalid)", why);
			goto out;
		}
		store(p, obj, &v);
	}
out:
	return rc;
}

int lgr_conf_set(
	const struct lgr_conf_table *t, void *obj, const char *name, const char *value, char *err, size_t errlen)
{
	const struct lgr_conf_param *p = lgr_conf_find(t, name);
	union value v;
	int rc;

	if (p == NULL) {
		rc = lgr_conf_error(
			t, err, errlen, LGR_EINVAL, "unknown parameter '%.*s'", SHOW_MAX, name ? name : "(null)");
		goto out;
	}
	if (value == NULL) {
		rc = lgr_conf_error(t, err, errlen, LGR_EINVAL, "parameter '%s' has no value", p->name);
		goto out;
	}
	rc = parse_value(t, p, value, &v, err, errlen);
	if (rc != LGR_OK)
		goto out;
	store(p, obj, &v);
	mark_seen(t, obj, p);
out:
	return rc;
}

int lgr_conf_set_array(const struct lgr_conf_table *t, void *obj, const char *name, const char *const *items, size_t n,
	char *err, size_t errlen)
{
	const struct lgr_conf_param *p = lgr_conf_find(t, name);
	union value v;
	size_t i;
	int rc;

	if (p == NULL) {
		rc = lgr_conf_error(
			t, err, errlen, LGR_EINVAL, "unknown parameter '%.*s'", SHOW_MAX, name ? name : "(null)");
		goto out;
	}
	for (i = 0; i < n; i++) {
		if (items[i] == NULL) {
			rc = lgr_conf_error(
				t, err, errlen, LGR_EINVAL, "parameter '%s': item %zu has no value", p->name, i + 1);
			goto out;
		}
	}
	if (p->type != LGR_CONF_ARRAY) {
		if (n != 1) {
			rc = lgr_conf_error(
				t, err, errlen, LGR_EINVAL, "parameter '%s' takes one value, not a list", p->name);
			goto out;
		}
		rc = lgr_conf_set(t, obj, p->name, items[0], err, errlen);
		goto out;
	}
	rc = parse_array(t, p, items, n, &v.a, err, errlen);
	if (rc != LGR_OK)
		goto out;
	store(p, obj, &v);
	mark_seen(t, obj, p);
out:
	return rc;
}

/* Whether a given parameter holds something: a string or array counts only when non-empty. */
static bool has_value(const struct lgr_conf_table *t, const void *obj, const struct lgr_conf_param *p)
{
	const void *f = (const char *)obj + p->offset;

	if (!was_seen(t, obj, p))
		return false;
	if (p->type == LGR_CONF_STRING)
		return *(char *const *)f != NULL && (*(char *const *)f)[0] != '\0';
	if (p->type == LGR_CONF_ARRAY)
		return ((const struct lgr_conf_strv *)f)->n > 0;
	return true;
}

int lgr_conf_require(const struct lgr_conf_table *t, const void *obj, const char *name, const char *condition,
	char *err, size_t errlen)
{
	const struct lgr_conf_param *p = lgr_conf_find(t, name);

	if (p == NULL)
		return lgr_conf_error(t, err, errlen, LGR_EINVAL, "unknown parameter '%s'", name);
	if (has_value(t, obj, p))
		return LGR_OK;
	return lgr_conf_error(t, err, errlen, LGR_EMISSING, "parameter '%s' is required%s%s", p->name,
		condition && condition[0] ? " " : "", condition ? condition : "");
}

int lgr_conf_forbid(const struct lgr_conf_table *t, const void *obj, const char *name, const char *condition, char *err,
	size_t errlen)
{
	const struct lgr_conf_param *p = lgr_conf_find(t, name);

	if (p == NULL)
		return lgr_conf_error(t, err, errlen, LGR_EINVAL, "unknown parameter '%s'", name);
	if (!was_seen(t, obj, p))
		return LGR_OK;
	return lgr_conf_error(t, err, errlen, LGR_EINVAL, "parameter '%s' is only valid %s", p->name,
		condition ? condition : "in another configuration");
}

int lgr_conf_finish(const struct lgr_conf_table *t, void *obj, char *err, size_t errlen)
{
	size_t i;
	int rc = LGR_OK;

	for (i = 0; i < t->nparams; i++) {
		const struct lgr_conf_param *p = &t->params[i];

		if ((p->flags & LGR_CONF_REQUIRED) && !has_value(t, obj, p)) {
			rc = lgr_conf_error(t, err, errlen, LGR_EMISSING, "parameter '%s' is required", p->name);
			goto out;
		}
	}
	if (t->check != NULL)
		rc = t->check(t, obj, err, errlen);
out:
	return rc;
}

void lgr_conf_free(const struct lgr_conf_table *t, void *obj)
{
	size_t i;

	for (i = 0; i < t->nparams; i++) {
		void *f = field(&t->params[i], obj);

		if (t->params[i].type == LGR_CONF_STRING) {
			free(*(char **)f);
			*(char **)f = NULL;
		} else if (t->params[i].type == LGR_CONF_ARRAY) {
			strv_free((struct lgr_conf_strv *)f);
		}
	}
}

static int why_fail(char *why, size_t whylen, const char *msg)
{
	format(why, whylen, "%s", msg);
	return LGR_EINVAL;
}

static bool is_port(const char *s)
{
	unsigned long long u;
	const char *end;

	return parse_digits(s, &u, &end) == 0 && *end == '\0' && u >= 1 && u <= 65535;
}

int lgr_conf_check_hostport(const char *value, char *why, size_t whylen)
{
	const char *colon;

	if (value[0] == '[') {
		const char *close = strchr(value, ']');
		struct in6_addr a6;
		char host[INET6_ADDRSTRLEN];
		size_t len;

		if (close == NULL || close[1] != ':')
			return why_fail(why, whylen, "expected [ipv6-address]:port");
		len = (size_t)(close - value - 1);
		if (len == 0 || len >= sizeof(host))
			return why_fail(why, whylen, "expected [ipv6-address]:port");
		memcpy(host, value + 1, len);
		host[len] = '\0';
		if (inet_pton(AF_INET6, host, &a6) != 1)
			return why_fail(why, whylen, "the address in brackets is not an IPv6 address");
		colon = close + 1;
	} else {
		colon = strrchr(value, ':');
		if (colon == NULL || colon == value)
			return why_fail(why, whylen, "expected host:port");
		if (memchr(value, ':', (size_t)(colon - value)) != NULL)
			return why_fail(why, whylen, "an IPv6 address needs brackets: [address]:port");
	}
	if (!is_port(colon + 1))
		return why_fail(why, whylen, "the port is not a number in 1..65535");
	return LGR_OK;
}

int lgr_conf_split_hostport(const char *value, char *host, size_t hostlen, uint16_t *port)
{
	const char *colon = strrchr(value, ':');
	const char *h = value;
	size_t hlen;
	char *end;
	long p;

	if (colon == NULL)
		return LGR_EINVAL;
	hlen = (size_t)(colon - value);
	if (hlen >= 2 && value[0] == '[' && colon[-1] == ']') {
		h++;
		hlen -= 2;
	}
	p = strtol(colon + 1, &end, 10);
	if (hlen == 0 || hlen >= hostlen || *end != '\0' || colon[1] == '\0' || p < 1 || p > 65535)
		return LGR_EINVAL;
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	*port = (uint16_t)p;
	return LGR_OK;
}

int lgr_conf_check_tag(const char *value, char *why, size_t whylen)
{
	const char *colon = strchr(value, ':');

	if (colon == NULL)
		return why_fail(why, whylen, "expected key:value");
	if (colon == value)
		return why_fail(why, whylen, "the key before ':' is empty");
	return LGR_OK;
}

int lgr_conf_check_cidr(const char *value, char *why, size_t whylen)
{
	unsigned char addr[sizeof(struct in6_addr)];
	char host[INET6_ADDRSTRLEN];
	const char *slash = strchr(value, '/');
	unsigned long long bits;
	const char *end;
	size_t len;
	int af;

	if (slash == NULL)
		return why_fail(why, whylen, "expected address/prefix-length");
	len = (size_t)(slash - value);
	if (len == 0 || len >= sizeof(host))
		return why_fail(why, whylen, "expected address/prefix-length");
	memcpy(host, value, len);
	host[len] = '\0';
	af = strchr(host, ':') != NULL ? AF_INET6 : AF_INET;
	if (inet_pton(af, host, addr) != 1)
		return why_fail(why, whylen, af == AF_INET6 ? "not an IPv6 address" : "not an IPv4 address");
	if (parse_digits(slash + 1, &bits, &end) != 0 || *end != '\0' || bits > (af == AF_INET6 ? 128u : 32u))
		return why_fail(why, whylen,
			af == AF_INET6 ? "the prefix length is not in 0..128" : "the prefix length is not in 0..32");
	return LGR_OK;
}
