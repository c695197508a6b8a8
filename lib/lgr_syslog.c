/*
 * lgr_syslog.c: drain lines (see lgr_syslog.h). The Cloud Foundry form follows the syslog agent's converter and
 * the RFC 5424 marshaller it calls, rule for rule, including where those refuse an envelope; the Logplex forms
 * follow Logplex's syslog utilities. Each public function writes into the caller's buffer and undoes its partial
 * output on failure, so a writer can append many envelopes into one batch and drop just the one that failed.
 */
#include "lgr_syslog.h"
#include "lgr_text.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

/* --- the output buffer -------------------------------------------------------------------------------------- */

void lgr_syslog_buf_init(struct lgr_syslog_buf *b, size_t limit)
{
	b->p = NULL;
	b->len = 0;
	b->cap = 0;
	b->limit = limit != 0 ? limit : LGR_SYSLOG_BUF_DEFAULT_LIMIT;
}

void lgr_syslog_buf_cleanup(struct lgr_syslog_buf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = 0;
	b->cap = 0;
}

void lgr_syslog_buf_reset(struct lgr_syslog_buf *b)
{
	b->len = 0;
	if (b->p != NULL)
		b->p[0] = '\0';
}

/* Room for more bytes and the NUL: LGR_OK, LGR_ETOOBIG, LGR_ENOMEM. */
static int buf_reserve(struct lgr_syslog_buf *b, size_t more)
{
	size_t need, cap;
	char *p;

	if (more > b->limit - b->len)
		return LGR_ETOOBIG;
	need = b->len + more + 1;
	if (need <= b->cap)
		return LGR_OK;
	cap = b->cap != 0 ? b->cap : 256;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	if (cap > b->limit + 1)
		cap = b->limit + 1;
	p = realloc(b->p, cap);
	if (p == NULL)
		return LGR_ENOMEM;
	b->p = p;
	b->cap = cap;
	return LGR_OK;
}

int lgr_syslog_buf_put(struct lgr_syslog_buf *b, const void *s, size_t n)
{
	int rc = buf_reserve(b, n);

	if (rc != LGR_OK)
		return rc;
	if (n > 0)
		memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
	return LGR_OK;
}

/* A sticky writer: after the first failure every append is a no-op and the caller checks rc once. */
struct out {
	struct lgr_syslog_buf *b;
	int rc;
};

static void put(struct out *o, const void *s, size_t n)
{
	if (o->rc == LGR_OK)
		o->rc = lgr_syslog_buf_put(o->b, s, n);
}

static void put_str(struct out *o, const char *s)
{
	put(o, s, strlen(s));
}

static void put_char(struct out *o, char c)
{
	put(o, &c, 1);
}

static void put_u64(struct out *o, uint64_t v)
{
	char t[LGR_TEXT_INT_MAX];

	put_str(o, lgr_text_int(v, false, t));
}

static void put_i64(struct out *o, int64_t v)
{
	char t[LGR_TEXT_INT_MAX];
	uint64_t mag = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;

	put_str(o, lgr_text_int(mag, v < 0, t));
}

/* Frames the line that starts at offset start: "<length> SP" is moved in front of it. */
static void frame_from(struct out *o, size_t start)
{
	char t[LGR_TEXT_INT_MAX], *digits;
	struct lgr_syslog_buf *b = o->b;
	size_t n, dn;

	if (o->rc != LGR_OK)
		return;
	n = b->len - start;
	digits = lgr_text_int(n, false, t);
	dn = strlen(digits);
	o->rc = buf_reserve(b, dn + 1);
	if (o->rc != LGR_OK)
		return;
	memmove(b->p + start + dn + 1, b->p + start, n);
	memcpy(b->p + start, digits, dn);
	b->p[start + dn] = ' ';
	b->len += dn + 1;
	b->p[b->len] = '\0';
}

/* Ends a call: on failure the buffer goes back to where the call found it. */
static int finish(struct out *o, size_t mark)
{
	if (o->rc != LGR_OK) {
		o->b->len = mark;
		if (o->b->p != NULL)
			o->b->p[mark] = '\0';
	}
	return o->rc;
}

/* --- field rules -------------------------------------------------------------------------------------------- */

static const char *nz(const char *s)
{
	return s != NULL ? s : "";
}

/* Go's RE2 \s: ASCII space, \t, \n, \f, \r (not \v). */
static bool is_go_space(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\f' || c == '\r';
}

static bool is_print_ascii(unsigned char c)
{
	return c >= 33 && c <= 126;
}

static bool all_print_ascii(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (!is_print_ascii((unsigned char)s[i]))
			return false;
	return true;
}

static bool is_sd_name(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	for (; *p != '\0'; p++)
		if (!is_print_ascii(*p) || *p == '=' || *p == ']' || *p == '"')
			return false;
	return true;
}

/*
 * The converter's sanitizers, in one pass: a run of whitespace becomes one '-', bytes that keep() refuses go,
 * trailing dashes go. At most cap bytes are kept in out; the return value is the length of the whole result, so
 * callers that cut it see the length the reference computes with.
 */
static size_t sanitize(const char *s, bool (*keep)(unsigned char), char *out, size_t cap)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n = 0, end = 0;
	bool in_space = false;

	for (; *p != '\0'; p++) {
		unsigned char c;

		if (is_go_space(*p)) {
			if (in_space)
				continue;
			in_space = true;
			c = '-';
		} else {
			in_space = false;
			if (!keep(*p))
				continue;
			c = *p;
		}
		if (n < cap)
			out[n] = (char)c;
		n++;
		if (c != '-')
			end = n;
	}
	return end;
}

static bool keep_host(unsigned char c)
{
	return c == '-' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static bool keep_graph(unsigned char c)
{
	return is_print_ascii(c);
}

size_t lgr_syslog_hostname(const struct lgr_env *env, const char *fallback, char out[LGR_SYSLOG_HOSTNAME_MAX + 1])
{
	static const char *const keys[3] = {"organization_name", "space_name", "app_name"};
	const char *v[3];
	size_t n = 0, k, i;

	for (i = 0; i < 3; i++)
		v[i] = lgr_env_tag(env, keys[i]);
	if (v[0] == NULL && v[1] == NULL && v[2] == NULL) {
		n = strlen(nz(fallback));
		if (n > LGR_SYSLOG_HOSTNAME_MAX)
			n = LGR_SYSLOG_HOSTNAME_MAX;
		memcpy(out, nz(fallback), n);
		out[n] = '\0';
		return n;
	}
	for (i = 0; i < 3; i++) {
		if (i > 0)
			out[n++] = '.';
		k = sanitize(nz(v[i]), keep_host, out + n, LGR_SYSLOG_HOST_PART_MAX);
		n += k < LGR_SYSLOG_HOST_PART_MAX ? k : LGR_SYSLOG_HOST_PART_MAX;
	}
	out[n] = '\0';
	return n;
}

static void upper(char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (s[i] >= 'a' && s[i] <= 'z')
			s[i] = (char)(s[i] - 'a' + 'A');
}

/* A log's PROCID: "[" SOURCE-TYPE "/" INSTANCE "]" or "[" SOURCE-TYPE "]", cut to 128. */
static size_t log_procid(const struct lgr_env *env, char out[LGR_SYSLOG_PROCID_MAX + 1])
{
	char st[LGR_SYSLOG_PROCID_MAX + 1], tmp[2 * LGR_SYSLOG_PROCID_MAX + 4];
	const char *inst = nz(env->pb->instance_id);
	size_t st_len = sanitize(nz(lgr_env_tag(env, "source_type")), keep_graph, st, sizeof(st));
	size_t st_keep = st_len < sizeof(st) ? st_len : sizeof(st);
	size_t inst_len = strlen(inst), n = 0;

	upper(st, st_keep);
	tmp[n++] = '[';
	memcpy(tmp + n, st, st_keep);
	n += st_keep;
	if (inst_len > 0) {
		/* the reference cuts the instance so that the whole fits 128 */
		if (st_len + inst_len + 3 > LGR_SYSLOG_PROCID_MAX)
			inst_len = st_len + 3 >= LGR_SYSLOG_PROCID_MAX ? 0 : LGR_SYSLOG_PROCID_MAX - st_len - 3;
		tmp[n++] = '/';
		if (inst_len > LGR_SYSLOG_PROCID_MAX)
			inst_len = LGR_SYSLOG_PROCID_MAX;
		memcpy(tmp + n, inst, inst_len);
		n += inst_len;
	}
	tmp[n++] = ']';
	if (n > LGR_SYSLOG_PROCID_MAX)
		n = LGR_SYSLOG_PROCID_MAX;
	memcpy(out, tmp, n);
	out[n] = '\0';
	return n;
}

/* A metric's PROCID: "[" INSTANCE "]", cut to 128. */
static size_t metric_procid(const struct lgr_env *env, char out[LGR_SYSLOG_PROCID_MAX + 1])
{
	const char *inst = nz(env->pb->instance_id);
	size_t inst_len = strlen(inst), n = 0;

	if (inst_len > LGR_SYSLOG_PROCID_MAX)
		inst_len = LGR_SYSLOG_PROCID_MAX;
	out[n++] = '[';
	memcpy(out + n, inst, inst_len);
	n += inst_len;
	if (n < LGR_SYSLOG_PROCID_MAX)
		out[n++] = ']';
	out[n] = '\0';
	return n;
}

/* --- time --------------------------------------------------------------------------------------------------- */

static char *two(char *p, unsigned v)
{
	*p++ = (char)('0' + v / 10 % 10);
	*p++ = (char)('0' + v % 10);
	return p;
}

enum ts_frac { TS_TRIM, TS_MICRO, TS_NONE };

/* int64 nanoseconds span the years 1677 to 2262, so the year always has four digits. */
static size_t timestamp(int64_t ns, enum ts_frac frac, char out[LGR_SYSLOG_TIMESTAMP_MAX])
{
	struct lgr_civil c;
	unsigned us, i, nd;
	char *p = out, f[6];

	lgr_civil_time(ns, &c);
	p = two(p, (unsigned)(c.year / 100));
	p = two(p, (unsigned)(c.year % 100));
	*p++ = '-';
	p = two(p, (unsigned)c.month);
	*p++ = '-';
	p = two(p, (unsigned)c.day);
	*p++ = 'T';
	p = two(p, (unsigned)c.hour);
	*p++ = ':';
	p = two(p, (unsigned)c.minute);
	*p++ = ':';
	p = two(p, (unsigned)c.second);
	us = (unsigned)(c.nsec / 1000);
	if (frac != TS_NONE && (us != 0 || frac == TS_MICRO)) {
		for (i = 6; i-- > 0; us /= 10)
			f[i] = (char)('0' + us % 10);
		nd = 6;
		if (frac == TS_TRIM)
			while (f[nd - 1] == '0')
				nd--;
		*p++ = '.';
		memcpy(p, f, nd);
		p += nd;
	}
	memcpy(p, "+00:00", 7);
	return (size_t)(p - out) + 6;
}

size_t lgr_syslog_timestamp(int64_t ns, char out[LGR_SYSLOG_TIMESTAMP_MAX])
{
	return timestamp(ns, TS_TRIM, out);
}

/* --- numbers ------------------------------------------------------------------------------------------------ */

size_t lgr_syslog_double(double v, char out[LGR_SYSLOG_DOUBLE_MAX])
{
	char s[LGR_TEXT_DOUBLE_MAX], dig[LGR_TEXT_DOUBLE_MAX], *p = out, *q;
	size_t nd = 0, i, lead = 0, frac;
	int dp = 0, exp10 = 0, ex;
	bool seen_dot = false;
	locale_t old;

	if (isnan(v)) {
		memcpy(out, "NaN", 4);
		return 3;
	}
	if (isinf(v)) {
		memcpy(out, v < 0 ? "-Inf" : "+Inf", 5);
		return 4;
	}
	old = lgr_text_c_locale_enter();
	lgr_text_double(v, s);
	lgr_text_c_locale_leave(old);

	/* s is [-]digits[.digits][e±X]: take the significant digits and where the decimal point sits */
	q = s;
	if (*q == '-') {
		*p++ = '-';
		q++;
	}
	for (; *q != '\0' && *q != 'e'; q++) {
		if (*q == '.') {
			seen_dot = true;
			continue;
		}
		dig[nd++] = *q;
		if (!seen_dot)
			dp++;
	}
	if (*q == 'e')
		exp10 = atoi(q + 1);
	dp += exp10;
	while (lead < nd && dig[lead] == '0')
		lead++;
	memmove(dig, dig + lead, nd - lead);
	nd -= lead;
	dp -= (int)lead;
	while (nd > 0 && dig[nd - 1] == '0')
		nd--;
	if (nd == 0) {
		*p++ = '0';
		*p = '\0';
		return (size_t)(p - out);
	}

	ex = dp - 1;
	if (ex < -4 || ex >= 6) {
		*p++ = dig[0];
		if (nd > 1) {
			*p++ = '.';
			memcpy(p, dig + 1, nd - 1);
			p += nd - 1;
		}
		*p++ = 'e';
		*p++ = ex < 0 ? '-' : '+';
		ex = ex < 0 ? -ex : ex;
		if (ex >= 100)
			*p++ = (char)('0' + ex / 100);
		p = two(p, (unsigned)(ex % 100));
		*p = '\0';
		return (size_t)(p - out);
	}
	if (dp > 0) {
		for (i = 0; i < (size_t)dp; i++)
			*p++ = i < nd ? dig[i] : '0';
	} else {
		*p++ = '0';
	}
	frac = (int)nd > dp ? (size_t)((int)nd - dp) : 0;
	if (frac > 0) {
		*p++ = '.';
		for (i = 0; i < frac; i++) {
			int j = dp + (int)i;

			*p++ = j >= 0 && (size_t)j < nd ? dig[j] : '0';
		}
	}
	*p = '\0';
	return (size_t)(p - out);
}

/* --- structured data ---------------------------------------------------------------------------------------- */

/* An SD-PARAM value: '\\', '"' and ']' escaped. The caller has checked it is UTF-8. */
static void put_sd_value(struct out *o, const char *s)
{
	const char *run = s;

	for (; *s != '\0'; s++) {
		if (*s != '\\' && *s != '"' && *s != ']')
			continue;
		put(o, run, (size_t)(s - run));
		put_char(o, '\\');
		run = s;
	}
	put(o, run, (size_t)(s - run));
}

/* ` name="value"`; LGR_EUNSUPPORTED for a value that is not UTF-8. */
static void put_param(struct out *o, const char *name, const char *value)
{
	value = nz(value);
	if (o->rc != LGR_OK)
		return;
	if (!lgr_text_utf8_valid(value, strlen(value))) {
		o->rc = LGR_EUNSUPPORTED;
		return;
	}
	put_char(o, ' ');
	put_str(o, name);
	put(o, "=\"", 2);
	put_sd_value(o, value);
	put_char(o, '"');
}

/* Entries of a protobuf map in key order, a repeated key once (its last entry, as Go's map keeps it). */
#define SORT_STACK 64

struct sorted {
	const void **e;
	size_t n;
	const void *stack[SORT_STACK];
	const char *(*key)(const void *);
};

static const char *tag_key(const void *e)
{
	return nz(((const Loggregator__V2__Envelope__TagsEntry *)e)->key);
}

static const char *metric_key(const void *e)
{
	return nz(((const Loggregator__V2__Gauge__MetricsEntry *)e)->key);
}

struct ent_pos {
	const void *e;
	size_t pos;
	const char *key;
};

static int ent_pos_cmp(const void *a, const void *b)
{
	const struct ent_pos *x = a, *y = b;
	int c = strcmp(x->key, y->key);

	if (c != 0)
		return c;
	return x->pos < y->pos ? -1 : x->pos > y->pos;
}

static int sorted_init(struct sorted *s, void *const *entries, size_t n, const char *(*key)(const void *))
{
	struct ent_pos *tmp = NULL, stack_tmp[SORT_STACK];
	size_t i, j;

	s->key = key;
	s->e = s->stack;
	s->n = 0;
	if (n > SORT_STACK) {
		tmp = malloc(n * sizeof(*tmp));
		s->e = malloc(n * sizeof(*s->e));
		if (tmp == NULL || s->e == NULL) {
			free(tmp);
			free((void *)s->e);
			s->e = s->stack;
			return LGR_ENOMEM;
		}
	}
	{
		struct ent_pos *t = tmp != NULL ? tmp : stack_tmp;

		for (i = 0; i < n; i++) {
			t[i].e = entries[i];
			t[i].pos = i;
			t[i].key = key(entries[i]);
		}
		if (n > 16) {
			qsort(t, n, sizeof(*t), ent_pos_cmp);
		} else {
			for (i = 1; i < n; i++) {
				struct ent_pos x = t[i];

				for (j = i; j > 0 && ent_pos_cmp(&t[j - 1], &x) > 0; j--)
					t[j] = t[j - 1];
				t[j] = x;
			}
		}
		for (i = 0; i < n; i++)
			if (i + 1 == n || strcmp(t[i].key, t[i + 1].key) != 0)
				s->e[s->n++] = t[i].e;
	}
	free(tmp);
	return LGR_OK;
}

static void sorted_cleanup(struct sorted *s)
{
	if (s->e != s->stack)
		free((void *)s->e);
	s->e = s->stack;
	s->n = 0;
}

/* [tags@47450 k="v" ...], nothing when there are no tags or metadata is off. */
static void put_tags(struct out *o, const struct sorted *tags)
{
	size_t i;

	if (tags->n == 0)
		return;
	put_str(o, "[tags@" LGR_SYSLOG_PEN);
	for (i = 0; i < tags->n && o->rc == LGR_OK; i++) {
		const Loggregator__V2__Envelope__TagsEntry *t = tags->e[i];

		if (!is_sd_name(nz(t->key))) {
			o->rc = LGR_EUNSUPPORTED;
			return;
		}
		put_param(o, nz(t->key), t->value);
	}
	put_char(o, ']');
}

/* --- the CF line -------------------------------------------------------------------------------------------- */

struct head {
	char ts[LGR_SYSLOG_TIMESTAMP_MAX];
	char host[LGR_SYSLOG_HOSTNAME_MAX + 1];
	char procid[LGR_SYSLOG_PROCID_MAX + 1];
	const char *app;
	size_t ts_len, host_len, app_len, procid_len;
};

/* "<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID - " */
static void put_head(struct out *o, int pri, const struct head *h)
{
	put_char(o, '<');
	put_u64(o, (uint64_t)pri);
	put(o, ">1 ", 3);
	put(o, h->ts, h->ts_len);
	put_char(o, ' ');
	if (h->host_len > 0)
		put(o, h->host, h->host_len);
	else
		put_char(o, '-');
	put_char(o, ' ');
	if (h->app_len > 0)
		put(o, h->app, h->app_len);
	else
		put_char(o, '-');
	put_char(o, ' ');
	put(o, h->procid, h->procid_len);
	put(o, " - ", 3);
}

/* The payload with NUL bytes removed and a newline appended when it does not end with one. */
static void put_payload(struct out *o, const uint8_t *p, size_t n)
{
	const uint8_t *end = p + n, *z;
	bool nl = n > 0 && p[n - 1] == '\n';

	while (p < end && o->rc == LGR_OK) {
		z = memchr(p, '\0', (size_t)(end - p));
		if (z == NULL)
			z = end;
		put(o, p, (size_t)(z - p));
		p = z < end ? z + 1 : end;
	}
	if (!nl)
		put_char(o, '\n');
}

static void begin_line(struct out *o, size_t *start)
{
	*start = o->b->len;
}

static void end_line(struct out *o, size_t start, unsigned flags, size_t *nlines)
{
	if (o->rc != LGR_OK)
		return;
	if (flags & LGR_SYSLOG_OCTET)
		frame_from(o, start);
	(*nlines)++;
}

static void put_metric_line(struct out *o, const struct head *h, const struct sorted *tags, unsigned flags,
	size_t *nlines, void (*element)(struct out *, const void *), const void *arg)
{
	size_t start;

	begin_line(o, &start);
	put_head(o, 14, h);
	element(o, arg);
	put_tags(o, tags);
	put(o, " \n", 2);
	end_line(o, start, flags, nlines);
}

static void el_counter(struct out *o, const void *arg)
{
	const Loggregator__V2__Counter *c = arg;

	put_str(o, "[counter@" LGR_SYSLOG_PEN);
	put_param(o, "name", c->name);
	put(o, " total=\"", 8);
	put_u64(o, c->total);
	put(o, "\" delta=\"", 9);
	put_u64(o, c->delta);
	put(o, "\"]", 2);
}

static void el_timer(struct out *o, const void *arg)
{
	const Loggregator__V2__Timer *t = arg;

	put_str(o, "[timer@" LGR_SYSLOG_PEN);
	put_param(o, "name", t->name);
	put(o, " start=\"", 8);
	put_i64(o, t->start);
	put(o, "\" stop=\"", 8);
	put_i64(o, t->stop);
	put(o, "\"]", 2);
}

static void el_event(struct out *o, const void *arg)
{
	const Loggregator__V2__Event *e = arg;

	put_str(o, "[event@" LGR_SYSLOG_PEN);
	put_param(o, "title", e->title);
	put_param(o, "body", e->body);
	put_char(o, ']');
}

static void el_gauge(struct out *o, const void *arg)
{
	const Loggregator__V2__Gauge__MetricsEntry *m = arg;
	char num[LGR_SYSLOG_DOUBLE_MAX];

	lgr_syslog_double(m->value != NULL ? m->value->value : 0.0, num);
	put_str(o, "[gauge@" LGR_SYSLOG_PEN);
	put_param(o, "name", m->key);
	put_param(o, "value", num);
	put_param(o, "unit", m->value != NULL ? m->value->unit : "");
	put_char(o, ']');
}

int lgr_syslog_format(const struct lgr_env *env, const struct lgr_syslog_opts *opts, unsigned flags,
	struct lgr_syslog_buf *b, size_t *nlines)
{
	static const struct lgr_syslog_opts no_opts;
	const Loggregator__V2__Envelope *pb;
	struct out o = {b, LGR_OK};
	struct sorted tags = {0}, metrics = {0};
	struct head h;
	size_t mark = b->len, lines = 0, i, start;
	enum lgr_env_type type;

	tags.e = tags.stack;
	metrics.e = metrics.stack;
	if (nlines != NULL)
		*nlines = 0;
	if (env == NULL || env->pb == NULL)
		return LGR_EINVAL;
	if (opts == NULL)
		opts = &no_opts;
	pb = env->pb;
	type = lgr_env_type(env);
	if (type == LGR_ENV_NONE || (type == LGR_ENV_GAUGE && pb->gauge->n_metrics == 0))
		return LGR_OK;

	/* the header fields, checked as the marshaller checks them after cutting */
	h.ts_len = lgr_syslog_timestamp(pb->timestamp, h.ts);
	h.host_len = lgr_syslog_hostname(env, opts->hostname, h.host);
	h.app = nz(pb->source_id);
	h.app_len = strlen(h.app);
	if (h.app_len > LGR_SYSLOG_APPNAME_MAX)
		h.app_len = LGR_SYSLOG_APPNAME_MAX;
	h.procid_len = type == LGR_ENV_LOG ? log_procid(env, h.procid) : metric_procid(env, h.procid);
	if (!all_print_ascii(h.host, h.host_len) || !all_print_ascii(h.app, h.app_len) ||
		!all_print_ascii(h.procid, h.procid_len)) {
		o.rc = LGR_EUNSUPPORTED;
		goto out;
	}
	if (!opts->omit_metadata) {
		o.rc = sorted_init(&tags, (void *const *)pb->tags, pb->n_tags, tag_key);
		if (o.rc != LGR_OK)
			goto out;
	}

	switch (type) {
	case LGR_ENV_LOG:
		begin_line(&o, &start);
		put_head(&o, pb->log->type == LOGGREGATOR__V2__LOG__TYPE__ERR ? 11 : 14, &h);
		if (tags.n == 0)
			put_char(&o, '-');
		put_tags(&o, &tags);
		put_char(&o, ' ');
		put_payload(&o, pb->log->payload.data, pb->log->payload.len);
		end_line(&o, start, flags, &lines);
		break;
	case LGR_ENV_COUNTER: put_metric_line(&o, &h, &tags, flags, &lines, el_counter, pb->counter); break;
	case LGR_ENV_TIMER: put_metric_line(&o, &h, &tags, flags, &lines, el_timer, pb->timer); break;
	case LGR_ENV_EVENT: put_metric_line(&o, &h, &tags, flags, &lines, el_event, pb->event); break;
	case LGR_ENV_GAUGE:
		o.rc = sorted_init(&metrics, (void *const *)pb->gauge->metrics, pb->gauge->n_metrics, metric_key);
		for (i = 0; i < metrics.n && o.rc == LGR_OK; i++)
			put_metric_line(&o, &h, &tags, flags, &lines, el_gauge, metrics.e[i]);
		break;
	default: break;
	}
out:
	sorted_cleanup(&tags);
	sorted_cleanup(&metrics);
	if (finish(&o, mark) != LGR_OK)
		return o.rc;
	if (nlines != NULL)
		*nlines = lines;
	return LGR_OK;
}

size_t lgr_syslog_next_frame(const char *data, size_t len, const char **line, size_t *line_len)
{
	size_t i = 0, n = 0;

	*line = NULL;
	*line_len = 0;
	if (len == 0 || data[0] < '1' || data[0] > '9')
		return 0;
	for (; i < len && data[i] >= '0' && data[i] <= '9'; i++) {
		if (i >= 19)
			return 0;
		n = n * 10 + (size_t)(data[i] - '0');
	}
	if (i == len || data[i] != ' ' || n > len - i - 1)
		return 0;
	*line = data + i + 1;
	*line_len = n;
	return i + 1 + n;
}

/* --- notices ------------------------------------------------------------------------------------------------ */

int lgr_syslog_notice_lost(uint64_t n, const char *app_id, const char *anon_url, char *out, size_t cap)
{
	int len;

	if (cap == 0)
		return LGR_ETOOBIG;
	len = snprintf(out, cap, "%llu messages lost for application %s in user provided syslog drain with url %s",
		(unsigned long long)n, nz(app_id), nz(anon_url));
	if (len < 0 || (size_t)len >= cap) {
		out[0] = '\0';
		return LGR_ETOOBIG;
	}
	return len;
}

int lgr_syslog_notice_env(const char *app_id, const char *text, int64_t now_ns, struct lgr_env **out)
{
	struct lgr_env *env = NULL;
	int rc = LGR_EINVAL;

	*out = NULL;
	if (app_id == NULL || app_id[0] == '\0')
		goto out;
	rc = LGR_ENOMEM;
	env = lgr_env_new();
	if (env == NULL)
		goto out;
	env->pb->timestamp = now_ns;
	if (lgr_env_set_source_id(env, app_id) != LGR_OK || lgr_env_set_instance_id(env, "0") != LGR_OK ||
		lgr_env_set_tag(env, "source_type", LGR_SYSLOG_NOTICE_SOURCE_TYPE) != LGR_OK ||
		lgr_env_set_log(env, nz(text), strlen(nz(text)), LOGGREGATOR__V2__LOG__TYPE__OUT) != LGR_OK)
		goto out;
	*out = env;
	env = NULL; /* ownership transferred */
	rc = LGR_OK;
out:
	lgr_env_unref(env);
	return rc;
}

/* --- Logplex ------------------------------------------------------------------------------------------------ */

/* A header field: printable US-ASCII, other bytes as '-', at most LGR_LOGPLEX_FIELD_MAX, "-" when empty. */
static void put_field(struct out *o, const char *s)
{
	char f[LGR_LOGPLEX_FIELD_MAX];
	size_t n;

	s = nz(s);
	for (n = 0; s[n] != '\0' && n < sizeof(f); n++)
		f[n] = is_print_ascii((unsigned char)s[n]) ? s[n] : '-';
	if (n == 0)
		put_char(o, '-');
	else
		put(o, f, n);
}

static void put_logplex_line(struct out *o, const struct lgr_logplex_line *l, enum lgr_logplex_form form,
	const char *ts, size_t ts_len, const uint8_t *chunk, size_t n)
{
	const uint8_t *end = chunk + n, *z;

	put_char(o, '<');
	put_u64(o, (uint64_t)l->pri);
	put(o, ">1 ", 3);
	put(o, ts, ts_len);
	put_char(o, ' ');
	if (form == LGR_LOGPLEX_HTTPS)
		put(o, "host", 4);
	else
		put_field(o, l->host);
	put_char(o, ' ');
	put_field(o, l->source);
	put_char(o, ' ');
	put_field(o, l->process);
	put_str(o, form == LGR_LOGPLEX_HTTPS ? " - " : " - - ");
	while (chunk < end && o->rc == LGR_OK) {
		z = memchr(chunk, '\0', (size_t)(end - chunk));
		if (z == NULL)
			z = end;
		put(o, chunk, (size_t)(z - chunk));
		chunk = z < end ? z + 1 : end;
	}
	put_char(o, '\n');
}

int lgr_logplex_format(
	const struct lgr_logplex_line *l, enum lgr_logplex_form form, struct lgr_syslog_buf *b, size_t *nframes)
{
	struct out o = {b, LGR_OK};
	char ts[LGR_SYSLOG_TIMESTAMP_MAX];
	const uint8_t *msg = l->msg;
	size_t mark = b->len, n = l->msg_len, off = 0, chunk, frames = 0, start, ts_len;

	if (nframes != NULL)
		*nframes = 0;
	if (l->pri < 0 || l->pri > 191 || (msg == NULL && n > 0) ||
		(form != LGR_LOGPLEX_SYSLOG && form != LGR_LOGPLEX_HTTPS))
		return LGR_EINVAL;
	if (n > 0 && msg[n - 1] == '\n')
		n--;
	ts_len = timestamp(l->time_ns, l->time_seconds ? TS_NONE : TS_MICRO, ts);
	do {
		chunk = n - off > LGR_LOGPLEX_LINE_MAX ? LGR_LOGPLEX_LINE_MAX : n - off;
		start = b->len;
		put_logplex_line(&o, l, form, ts, ts_len, msg != NULL ? msg + off : NULL, chunk);
		if (o.rc == LGR_OK)
			frame_from(&o, start);
		off += chunk;
		frames++;
	} while (off < n && o.rc == LGR_OK);
	if (finish(&o, mark) != LGR_OK)
		return o.rc;
	if (nframes != NULL)
		*nframes = frames;
	return LGR_OK;
}

/* Copies the lower-cased segment of a source type into out, field rules applied; returns its length. */
static size_t lower_segment(const char *s, size_t n, char *out, size_t cap)
{
	size_t i, k = 0;

	for (i = 0; i < n && k < cap; i++) {
		char c = s[i];

		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		out[k++] = is_print_ascii((unsigned char)c) ? c : '-';
	}
	return k;
}

int lgr_logplex_from_env(const struct lgr_env *env, const char *host, struct lgr_logplex_line *l,
	char source[LGR_LOGPLEX_FIELD_MAX + 1], char process[LGR_LOGPLEX_FIELD_MAX + 1])
{
	const char *st, *slash, *last, *inst;
	size_t first_len, k, ilen;

	memset(l, 0, sizeof(*l));
	if (env == NULL || lgr_env_type(env) != LGR_ENV_LOG)
		return LGR_EUNSUPPORTED;
	st = nz(lgr_env_tag(env, "source_type"));
	slash = strchr(st, '/');
	first_len = slash != NULL ? (size_t)(slash - st) : strlen(st);
	strcpy(source, first_len == 3 && strncasecmp(st, "app", 3) == 0 ? "app" : "heroku");
	last = strrchr(st, '/');
	last = last != NULL ? last + 1 : st;
	k = lower_segment(last, strlen(last), process, LGR_LOGPLEX_FIELD_MAX);
	inst = nz(env->pb->instance_id);
	ilen = strlen(inst);
	if (ilen > 0 && k < LGR_LOGPLEX_FIELD_MAX) {
		process[k++] = '.';
		if (ilen > LGR_LOGPLEX_FIELD_MAX - k)
			ilen = LGR_LOGPLEX_FIELD_MAX - k;
		memcpy(process + k, inst, ilen);
		k += ilen;
	}
	process[k] = '\0';
	l->pri = env->pb->log->type == LOGGREGATOR__V2__LOG__TYPE__ERR ? LGR_LOGPLEX_PRI_ERR : LGR_LOGPLEX_PRI_OUT;
	l->time_ns = env->pb->timestamp;
	l->host = host;
	l->source = source;
	l->process = process;
	l->msg = env->pb->log->payload.data;
	l->msg_len = env->pb->log->payload.len;
	return LGR_OK;
}

int lgr_logplex_overflow(enum lgr_logplex_form form, const char *host, uint64_t n, int64_t since_ns, int64_t now_ns,
	struct lgr_syslog_buf *b)
{
	char since[LGR_SYSLOG_TIMESTAMP_MAX], text[160];
	struct lgr_logplex_line l = {0};
	int len;

	timestamp(since_ns, TS_NONE, since);
	len = snprintf(text, sizeof(text), "Error L10 (output buffer overflow): %llu messages dropped since %s.",
		(unsigned long long)n, since);
	if (len < 0 || (size_t)len >= sizeof(text))
		return LGR_EINVAL;
	l.pri = LGR_LOGPLEX_PRI_OVERFLOW;
	l.time_ns = now_ns;
	l.time_seconds = true;
	l.host = host;
	l.source = "heroku";
	l.process = "logplex";
	l.msg = text;
	l.msg_len = (size_t)len;
	return lgr_logplex_format(&l, form, b, NULL);
}

/* --- frame ids: a per-process random key mixed with a counter ------------------------------------------------ */

static pthread_once_t frame_once = PTHREAD_ONCE_INIT;
static uint64_t frame_key[2];
static atomic_uint_fast64_t frame_seq;

static uint64_t mix64(uint64_t z)
{
	z += UINT64_C(0x9E3779B97F4A7C15);
	z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
	return z ^ (z >> 31);
}

static void frame_init(void)
{
	struct timespec ts;

	if (getrandom(frame_key, sizeof(frame_key), GRND_NONBLOCK) == (ssize_t)sizeof(frame_key))
		return;
	/* no entropy yet (early boot): the clock and the address space still make ids differ between processes */
	clock_gettime(CLOCK_REALTIME, &ts);
	frame_key[0] = mix64((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec);
	frame_key[1] = mix64(frame_key[0] ^ (uint64_t)(uintptr_t)&ts);
}

void lgr_logplex_frame_id(char out[LGR_LOGPLEX_FRAME_ID_LEN + 1])
{
	static const char hex[] = "0123456789ABCDEF";
	uint64_t seq, w[2];
	int i, j;

	pthread_once(&frame_once, frame_init);
	seq = atomic_fetch_add(&frame_seq, 1);
	w[0] = mix64(frame_key[0] ^ seq);
	w[1] = mix64(frame_key[1] ^ w[0]);
	for (i = 0; i < 2; i++)
		for (j = 0; j < 16; j++)
			out[i * 16 + j] = hex[(w[i] >> (60 - 4 * j)) & 0xf];
	out[LGR_LOGPLEX_FRAME_ID_LEN] = '\0';
}
