/*
 * lgr_drain.c: drain URLs and their policy (see lgr_drain.h). The parser accepts the subset of RFC 3986 that drain
 * URLs use (scheme "://" [userinfo "@"] host [":" port] [path] ["?" query] ["#" fragment]) and reads the query as
 * Go's url.Query().Get does: '&'-separated pairs, '+' as space, percent escapes, the first value of a key wins and a
 * pair with a bad escape or a ';' is skipped.
 *
 * Memory: the struct and every string it points to share one allocation, sized from the URL's length (bounded by
 * LGR_DRAIN_URL_MAX before anything is allocated), so a drain is freed with one free().
 */
#include "lgr_drain.h"
#include "lgr_crc64.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* --- reasons -------------------------------------------------------------------------------------------------- */

static const char *const reason_names[LGR_DRAIN_REASON_COUNT] = {
	[LGR_DRAIN_OK] = "ok",
	[LGR_DRAIN_BAD_URL] = "bad_url",
	[LGR_DRAIN_BAD_SCHEME] = "bad_scheme",
	[LGR_DRAIN_NO_HOST] = "no_host",
	[LGR_DRAIN_BAD_PARAM] = "bad_param",
	[LGR_DRAIN_RESOLVE_SKIPPED] = "resolve_skipped",
	[LGR_DRAIN_RESOLVE_FAILED] = "resolve_failed",
	[LGR_DRAIN_DENIED] = "denied",
	[LGR_DRAIN_BAD_CERT] = "bad_cert",
	[LGR_DRAIN_BAD_CA] = "bad_ca",
	[LGR_DRAIN_NO_APP] = "no_app",
};

const char *lgr_drain_reason_name(enum lgr_drain_reason why)
{
	if ((unsigned)why >= LGR_DRAIN_REASON_COUNT)
		return "unknown";
	return reason_names[why];
}

int lgr_drain_notice(enum lgr_drain_reason why, const char *scheme, const char *anon_url, char *out, size_t cap)
{
	const char *u = anon_url != NULL ? anon_url : "";
	int n;

	if (cap == 0)
		return LGR_ETOOBIG;
	switch (why) {
	case LGR_DRAIN_BAD_URL: n = snprintf(out, cap, "Cannot parse syslog drain URL."); break;
	case LGR_DRAIN_BAD_SCHEME:
		n = snprintf(out, cap, "Invalid Scheme %s for syslog drain url %s", scheme != NULL ? scheme : "", u);
		break;
	case LGR_DRAIN_NO_HOST: n = snprintf(out, cap, "No hostname found in syslog drain url %s", u); break;
	case LGR_DRAIN_BAD_PARAM: n = snprintf(out, cap, "Invalid parameters for syslog drain url %s", u); break;
	case LGR_DRAIN_RESOLVE_SKIPPED:
		n = snprintf(
			out, cap, "Skipped resolve ip address for syslog drain with url %s due to prior failure", u);
		break;
	case LGR_DRAIN_RESOLVE_FAILED:
		n = snprintf(out, cap, "Cannot resolve ip address for syslog drain with url %s", u);
		break;
	case LGR_DRAIN_DENIED:
		n = snprintf(out, cap, "Resolved ip address for syslog drain with url %s is blacklisted", u);
		break;
	case LGR_DRAIN_BAD_CERT: n = snprintf(out, cap, "failed to load certificate for %s", u); break;
	case LGR_DRAIN_BAD_CA: n = snprintf(out, cap, "failed to load root CA for %s", u); break;
	default: n = snprintf(out, cap, "Invalid syslog drain with url %s", u); break;
	}
	if (n < 0 || (size_t)n >= cap) {
		out[0] = '\0';
		return LGR_ETOOBIG;
	}
	return n;
}

/* --- the URL -------------------------------------------------------------------------------------------------- */

struct span {
	const char *p;
	size_t n;
};

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Percent-decodes s into out (room for s.n + 1); '+' as space when plus. False on a bad escape. */
static bool unescape(struct span s, bool plus, char *out, size_t *out_len)
{
	size_t i, o = 0;
	int hi, lo;

	for (i = 0; i < s.n; i++) {
		if (s.p[i] == '%') {
			if (s.n - i < 3 || (hi = hexval(s.p[i + 1])) < 0 || (lo = hexval(s.p[i + 2])) < 0)
				return false;
			out[o++] = (char)(hi << 4 | lo);
			i += 2;
		} else if (plus && s.p[i] == '+') {
			out[o++] = ' ';
		} else {
			out[o++] = s.p[i];
		}
	}
	out[o] = '\0';
	if (out_len != NULL)
		*out_len = o;
	return true;
}

/* A bump allocator over the drain's own block. */
struct arena {
	char *p;
	size_t left;
};

static char *arena_take(struct arena *a, size_t n)
{
	char *p = a->p;

	if (n > a->left)
		return NULL; /* sized in advance: cannot happen */
	a->p += n;
	a->left -= n;
	return p;
}

static char *arena_copy(struct arena *a, const char *s, size_t n)
{
	char *p = arena_take(a, n + 1);

	if (p != NULL) {
		memcpy(p, s, n);
		p[n] = '\0';
	}
	return p;
}

struct parts {
	struct span scheme, userinfo, host, port, path, query;
	bool has_userinfo, has_query, bracketed;
};

static bool is_scheme_char(char c, bool first)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
		return true;
	return !first && ((c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.');
}

static bool is_host_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
	       c == '_' || c == '~';
}

/* Splits url into its parts; LGR_DRAIN_OK, LGR_DRAIN_BAD_URL or LGR_DRAIN_NO_HOST (no authority at all). */
static enum lgr_drain_reason split(const char *url, size_t len, struct parts *pt)
{
	const char *end = url + len, *p = url, *auth, *auth_end, *at, *h, *colon;
	size_t i;

	memset(pt, 0, sizeof(*pt));
	for (i = 0; i < len; i++)
		if ((unsigned char)url[i] <= 0x20 || url[i] == 0x7f)
			return LGR_DRAIN_BAD_URL;
	if (len == 0 || !is_scheme_char(url[0], true))
		return LGR_DRAIN_BAD_URL;
	while (p < end && is_scheme_char(*p, p == url))
		p++;
	if (p == end || *p != ':')
		return LGR_DRAIN_BAD_URL;
	pt->scheme = (struct span){url, (size_t)(p - url)};
	p++;
	if (end - p < 2 || p[0] != '/' || p[1] != '/')
		return LGR_DRAIN_NO_HOST;
	auth = p + 2;
	for (auth_end = auth; auth_end < end && *auth_end != '/' && *auth_end != '?' && *auth_end != '#'; auth_end++)
		;
	at = NULL;
	for (h = auth; h < auth_end; h++)
		if (*h == '@')
			at = h;
	h = auth;
	if (at != NULL) {
		pt->has_userinfo = true;
		pt->userinfo = (struct span){auth, (size_t)(at - auth)};
		h = at + 1;
	}
	if (h < auth_end && *h == '[') {
		const char *rb = memchr(h, ']', (size_t)(auth_end - h));

		if (rb == NULL)
			return LGR_DRAIN_BAD_URL;
		pt->bracketed = true;
		pt->host = (struct span){h + 1, (size_t)(rb - h - 1)};
		colon = rb + 1;
		if (colon < auth_end && *colon != ':')
			return LGR_DRAIN_BAD_URL;
	} else {
		colon = memchr(h, ':', (size_t)(auth_end - h));
		if (colon == NULL)
			colon = auth_end;
		pt->host = (struct span){h, (size_t)(colon - h)};
		for (i = 0; i < pt->host.n; i++)
			if (!is_host_char(pt->host.p[i]))
				return LGR_DRAIN_BAD_URL;
	}
	if (colon < auth_end) {
		pt->port = (struct span){colon + 1, (size_t)(auth_end - colon - 1)};
		for (i = 0; i < pt->port.n; i++)
			if (pt->port.p[i] < '0' || pt->port.p[i] > '9')
				return LGR_DRAIN_BAD_URL;
	}
	p = auth_end;
	pt->path.p = p;
	while (p < end && *p != '?' && *p != '#')
		p++;
	pt->path.n = (size_t)(p - pt->path.p);
	if (p < end && *p == '?') {
		pt->has_query = true;
		pt->query.p = ++p;
		while (p < end && *p != '#')
			p++;
		pt->query.n = (size_t)(p - pt->query.p);
	}
	return LGR_DRAIN_OK;
}

/* The first value of key in the query, decoded into buf (room for query.n + 1); false when absent. */
static bool query_get(struct span q, const char *key, char *buf, size_t *len)
{
	const char *p = q.p, *end, *amp, *eq;
	size_t klen = strlen(key), kn;

	if (q.n == 0)
		return false; /* q.p may be NULL: no query at all */
	end = q.p + q.n;
	while (p < end) {
		amp = memchr(p, '&', (size_t)(end - p));
		if (amp == NULL)
			amp = end;
		if (memchr(p, ';', (size_t)(amp - p)) == NULL && amp > p) {
			struct span k, v;

			eq = memchr(p, '=', (size_t)(amp - p));
			k = (struct span){p, (size_t)((eq != NULL ? eq : amp) - p)};
			v = eq != NULL ? (struct span){eq + 1, (size_t)(amp - eq - 1)} : (struct span){amp, 0};
			/* the key is decoded too: compare it decoded, value decoded into buf */
			if (k.n >= klen && unescape(k, true, buf, &kn) && kn == klen && memcmp(buf, key, klen) == 0 &&
				unescape(v, true, buf, len))
				return true;
		}
		p = amp + 1;
	}
	return false;
}

static unsigned types_of(const char *drain_type, const char *drain_data, bool deprecated)
{
	const unsigned all = LGR_DRAIN_TYPE_LOG | LGR_DRAIN_TYPE_COUNTER | LGR_DRAIN_TYPE_GAUGE | LGR_DRAIN_TYPE_TIMER |
			     LGR_DRAIN_TYPE_EVENT | 1u << LGR_ENV_NONE;
	const unsigned logs = LGR_DRAIN_TYPE_LOG | LGR_DRAIN_TYPE_EVENT;
	const unsigned metrics = LGR_DRAIN_TYPE_COUNTER | LGR_DRAIN_TYPE_GAUGE;
	unsigned t = logs;

	if (drain_type != NULL) {
		if (strcmp(drain_type, "logs") == 0)
			t = LGR_DRAIN_TYPE_LOG;
		else if (strcmp(drain_type, "metrics") == 0)
			t = metrics;
		else if (strcmp(drain_type, "all") == 0)
			t = LGR_DRAIN_TYPE_LOG | metrics;
	}
	if (drain_data != NULL) {
		if (strcmp(drain_data, "logs") == 0)
			t = logs;
		else if (strcmp(drain_data, "metrics") == 0)
			t = metrics;
		else if (strcmp(drain_data, "traces") == 0)
			t = LGR_DRAIN_TYPE_TIMER;
		else if (strcmp(drain_data, "all") == 0)
			t = all;
	}
	if (deprecated)
		t = all;
	return t;
}

/* Adds the comma-separated list s to f's log types; false when it holds too many or too long entries. */
static bool add_log_types(struct lgr_drain_filter *f, const char *s, unsigned *count)
{
	const char *p = s, *comma;
	size_t n, i;

	while (*p != '\0') {
		comma = strchr(p, ',');
		n = comma != NULL ? (size_t)(comma - p) : strlen(p);
		if (n > 0) {
			unsigned k = f->n_include + f->n_exclude;

			if (n > LGR_DRAIN_LOG_TYPE_MAX || k >= LGR_DRAIN_LOG_TYPES_MAX)
				return false;
			for (i = 0; i < n; i++)
				f->log_types[k][i] = (char)(p[i] >= 'a' && p[i] <= 'z' ? p[i] - 'a' + 'A' : p[i]);
			f->log_types[k][n] = '\0';
			(*count)++;
		}
		if (comma == NULL)
			break;
		p = comma + 1;
	}
	return true;
}

/* A stable Logplex-style token "d.xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" from the URL. */
static void derive_token(const char *url, size_t len, char out[LGR_DRAIN_TOKEN_MAX])
{
	uint64_t a = lgr_crc64(url, len), b = lgr_crc64_update(a, "logplex drain token", 19);

	snprintf(out, LGR_DRAIN_TOKEN_MAX, "d.%08x-%04x-%04x-%04x-%012llx", (unsigned)(a >> 32),
		(unsigned)(a >> 16 & 0xffff), (unsigned)(a & 0xffff), (unsigned)(b >> 48),
		(unsigned long long)(b & UINT64_C(0xffffffffffff)));
}

static bool query_flag(struct span q, const char *key, char *buf)
{
	size_t n;

	return query_get(q, key, buf, &n) && n > 0;
}

int lgr_drain_parse(const char *url, size_t len, unsigned flags, struct lgr_drain **out, enum lgr_drain_reason *why)
{
	char *tmp = NULL, *dt = NULL, *dd = NULL, token[LGR_DRAIN_TOKEN_MAX];
	struct lgr_drain *d = NULL;
	struct parts pt;
	struct arena a;
	enum lgr_drain_reason r;
	size_t room, n, i;
	unsigned long port = 0;
	bool logplex = false, plus_tls = false, dep, omit;
	int rc = LGR_EDECODE;

	*out = NULL;
	*why = LGR_DRAIN_BAD_URL;
	if (len > LGR_DRAIN_URL_MAX) {
		rc = LGR_ETOOBIG;
		goto out;
	}
	r = split(url, len, &pt);
	if (r != LGR_DRAIN_OK && r != LGR_DRAIN_NO_HOST) {
		*why = r;
		goto out;
	}

	/* scheme, then host, as the reference checks them */
	*why = LGR_DRAIN_BAD_SCHEME;
	if (pt.scheme.n == 0)
		goto out;
	{
		char s[16];

		if (pt.scheme.n >= sizeof(s))
			goto out;
		for (i = 0; i < pt.scheme.n; i++)
			s[i] = (char)(pt.scheme.p[i] >= 'A' && pt.scheme.p[i] <= 'Z' ? pt.scheme.p[i] - 'A' + 'a'
										     : pt.scheme.p[i]);
		s[i] = '\0';
		if (strcmp(s, "syslog") != 0 && strcmp(s, "syslog-tls") != 0 && strcmp(s, "https") != 0 &&
			strcmp(s, "https-batch") != 0 && strcmp(s, "syslog+tls") != 0)
			goto out;
		plus_tls = strcmp(s, "syslog+tls") == 0;
	}
	*why = LGR_DRAIN_NO_HOST;
	if (r == LGR_DRAIN_NO_HOST || pt.host.n == 0)
		goto out;
	*why = LGR_DRAIN_BAD_URL;
	if (pt.port.n > 0) {
		for (i = 0; i < pt.port.n && port <= 65535; i++)
			port = port * 10 + (unsigned long)(pt.port.p[i] - '0');
		if (port == 0 || port > 65535)
			goto out;
	}
	if (pt.bracketed) {
		struct in6_addr a6;
		char h[64];

		if (pt.host.n >= sizeof(h))
			goto out;
		memcpy(h, pt.host.p, pt.host.n);
		h[pt.host.n] = '\0';
		if (inet_pton(AF_INET6, h, &a6) != 1)
			goto out;
	}

	/* one block: the struct, then every string, each no longer than the URL */
	room = sizeof(*d) + 8 * (len + 1) + LGR_DRAIN_TOKEN_MAX + 64;
	rc = LGR_ENOMEM;
	d = calloc(1, room);
	tmp = malloc(3 * (pt.query.n + 1));
	if (d == NULL || tmp == NULL)
		goto out;
	dt = tmp + pt.query.n + 1;
	dd = dt + pt.query.n + 1;
	a.p = (char *)(d + 1);
	a.left = room - sizeof(*d);

	d->url = arena_copy(&a, url, len);
	{
		char *s = arena_copy(&a, pt.scheme.p, pt.scheme.n);

		for (i = 0; s[i] != '\0'; i++)
			if (s[i] >= 'A' && s[i] <= 'Z')
				s[i] = (char)(s[i] - 'A' + 'a');
		d->scheme_name = s;
		d->scheme = strcmp(s, "syslog") == 0	    ? LGR_DRAIN_SYSLOG
			    : strcmp(s, "https") == 0	    ? LGR_DRAIN_HTTPS
			    : strcmp(s, "https-batch") == 0 ? LGR_DRAIN_HTTPS_BATCH
							    : LGR_DRAIN_SYSLOG_TLS;
	}
	d->host = arena_copy(&a, pt.host.p, pt.host.n);
	d->port = (uint16_t)(port != 0				 ? port
			     : d->scheme == LGR_DRAIN_SYSLOG	 ? LGR_DRAIN_PORT_SYSLOG
			     : d->scheme == LGR_DRAIN_SYSLOG_TLS ? LGR_DRAIN_PORT_SYSLOG_TLS
								 : LGR_DRAIN_PORT_HTTPS);
	{
		/* anon: scheme "://" host [":" port] path */
		const char *host_start = pt.bracketed ? pt.host.p - 1 : pt.host.p;
		const char *auth_end = pt.path.p;
		char *s = arena_take(&a, strlen(d->scheme_name) + 3 + (size_t)(auth_end - host_start) + pt.path.n + 1);

		n = (size_t)sprintf(s, "%s://", d->scheme_name);
		memcpy(s + n, host_start, (size_t)(auth_end - host_start));
		n += (size_t)(auth_end - host_start);
		memcpy(s + n, pt.path.p, pt.path.n);
		n += pt.path.n;
		s[n] = '\0';
		d->anon = s;
	}
	{
		char *s = arena_take(&a, (pt.path.n > 0 ? pt.path.n : 1) + 1 + pt.query.n + 1);

		n = 0;
		if (pt.path.n > 0) {
			memcpy(s, pt.path.p, pt.path.n);
			n = pt.path.n;
		} else {
			s[n++] = '/';
		}
		if (pt.has_query) {
			s[n++] = '?';
			memcpy(s + n, pt.query.p, pt.query.n);
			n += pt.query.n;
		}
		s[n] = '\0';
		d->target = s;
	}
	if (pt.has_userinfo) {
		const char *c = memchr(pt.userinfo.p, ':', pt.userinfo.n);
		struct span u = {pt.userinfo.p, c != NULL ? (size_t)(c - pt.userinfo.p) : pt.userinfo.n};
		char *s = arena_take(&a, u.n + 1);

		rc = LGR_EDECODE;
		if (!unescape(u, false, s, NULL))
			goto out;
		d->user = s;
		if (c != NULL) {
			struct span pw = {c + 1, pt.userinfo.n - u.n - 1};

			s = arena_take(&a, pw.n + 1);
			if (!unescape(pw, false, s, NULL))
				goto out;
			d->password = s;
		}
	}

	/* the query parameters */
	rc = LGR_EDECODE;
	*why = LGR_DRAIN_BAD_PARAM;
	dep = query_flag(pt.query, "include-metrics-deprecated", tmp);
	d->filter.types = types_of(query_get(pt.query, "drain-type", dt, &n) ? dt : NULL,
		query_get(pt.query, "drain-data", dd, &n) ? dd : NULL, dep);
	if (!query_get(pt.query, "disable-metadata", tmp, &n) || n == 0)
		if (!query_get(pt.query, "omit-metadata", tmp, &n))
			tmp[0] = '\0';
	if (flags & LGR_DRAIN_DEFAULT_OMIT_METADATA)
		omit = strcmp(tmp, "false") != 0;
	else
		omit = strcmp(tmp, "true") == 0;
	d->omit_metadata = omit;
	d->internal_tls = query_get(pt.query, "ssl-strict-internal", tmp, &n) && strcmp(tmp, "true") == 0;
	if (query_get(pt.query, "include-log-types", tmp, &n) && !add_log_types(&d->filter, tmp, &d->filter.n_include))
		goto out;
	if (query_get(pt.query, "exclude-log-types", tmp, &n) && !add_log_types(&d->filter, tmp, &d->filter.n_exclude))
		goto out;
	if (query_get(pt.query, "format", tmp, &n)) {
		if (strcmp(tmp, "logplex") == 0)
			logplex = true;
		else if (strcmp(tmp, "cf") != 0 && strcmp(tmp, "rfc5424") != 0)
			goto out;
	}
	if (plus_tls)
		logplex = true;
	if (logplex) {
		d->format = LGR_DRAIN_LOGPLEX;
		d->filter.types &= LGR_DRAIN_TYPE_LOG;
	}
	if (query_get(pt.query, "drain-token", tmp, &n)) {
		if (n == 0 || n >= LGR_DRAIN_TOKEN_MAX)
			goto out;
		for (i = 0; i < n; i++)
			if ((unsigned char)tmp[i] < 33 || (unsigned char)tmp[i] > 126)
				goto out;
		memcpy(token, tmp, n + 1);
	} else {
		derive_token(url, len, token);
	}
	d->token = arena_copy(&a, token, strlen(token));

	*out = d;
	d = NULL; /* ownership transferred */
	*why = LGR_DRAIN_OK;
	rc = LGR_OK;
out:
	free(tmp);
	free(d);
	return rc;
}

void lgr_drain_free(struct lgr_drain *d)
{
	free(d);
}

static size_t cut_copy(char *out, size_t cap, size_t o, const char *s, size_t n)
{
	if (o + 1 >= cap)
		return o;
	if (n > cap - 1 - o)
		n = cap - 1 - o;
	memcpy(out + o, s, n);
	return o + n;
}

size_t lgr_drain_anonymize(const char *url, size_t len, char *out, size_t cap)
{
	const char *end = url + len, *sep = NULL, *auth, *auth_end, *at = NULL, *p, *stop;
	size_t o = 0;

	if (cap == 0)
		return 0;
	for (p = url; p + 2 < end; p++)
		if (p[0] == ':' && p[1] == '/' && p[2] == '/') {
			sep = p;
			break;
		}
	for (stop = url; stop < end && *stop != '?' && *stop != '#'; stop++)
		;
	if (sep == NULL || sep > stop) {
		o = cut_copy(out, cap, 0, url, (size_t)(stop - url));
		out[o] = '\0';
		return o;
	}
	auth = sep + 3;
	for (auth_end = auth; auth_end < stop && *auth_end != '/'; auth_end++)
		if (*auth_end == '@')
			at = auth_end;
	o = cut_copy(out, cap, o, url, (size_t)(auth - url));
	p = at != NULL ? at + 1 : auth;
	o = cut_copy(out, cap, o, p, (size_t)(stop - p));
	out[o] = '\0';
	return o;
}

size_t lgr_drain_scheme_text(const char *url, size_t len, char *out, size_t cap)
{
	size_t n = 0;

	if (cap == 0)
		return 0;
	while (n < len && n + 1 < cap && is_scheme_char(url[n], n == 0))
		n++;
	if (n == len || url[n] != ':')
		n = 0;
	memcpy(out, url, n);
	out[n] = '\0';
	return n;
}

/* The source_type tag's first segment equals entry, without case. */
static bool type_is(const char *st, size_t st_len, const char *entry)
{
	return strlen(entry) == st_len && strncasecmp(st, entry, st_len) == 0;
}

bool lgr_drain_accepts(const struct lgr_drain *d, const struct lgr_env *env)
{
	const struct lgr_drain_filter *f = &d->filter;
	enum lgr_env_type t = lgr_env_type(env);
	const char *st, *slash;
	size_t st_len;
	unsigned i;
	bool hit;

	if (!(f->types & 1u << t))
		return false;
	if (t != LGR_ENV_LOG || f->n_include + f->n_exclude == 0)
		return true;
	st = lgr_env_tag(env, "source_type");
	if (st == NULL)
		return f->n_include == 0;
	slash = strchr(st, '/');
	st_len = slash != NULL ? (size_t)(slash - st) : strlen(st);
	if (f->n_include > 0) {
		for (hit = false, i = 0; i < f->n_include && !hit; i++)
			hit = type_is(st, st_len, f->log_types[i]);
		if (!hit)
			return false;
	}
	for (i = f->n_include; i < f->n_include + f->n_exclude; i++)
		if (type_is(st, st_len, f->log_types[i]))
			return false;
	return true;
}

/* --- deny ranges ---------------------------------------------------------------------------------------------- */

int lgr_drain_addr_parse(const char *s, size_t len, uint8_t out[16])
{
	char buf[INET6_ADDRSTRLEN + 1];
	struct in_addr a4;

	if (len == 0 || len >= sizeof(buf) || memchr(s, '\0', len) != NULL)
		return LGR_EDECODE;
	memcpy(buf, s, len);
	buf[len] = '\0';
	if (inet_pton(AF_INET, buf, &a4) == 1) {
		memset(out, 0, 10);
		out[10] = out[11] = 0xff;
		memcpy(out + 12, &a4, 4);
		return LGR_OK;
	}
	if (inet_pton(AF_INET6, buf, out) == 1)
		return LGR_OK;
	return LGR_EDECODE;
}

int lgr_drain_addr_from_sockaddr(const struct sockaddr *sa, uint8_t out[16])
{
	if (sa->sa_family == AF_INET) {
		memset(out, 0, 10);
		out[10] = out[11] = 0xff;
		memcpy(out + 12, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
		return LGR_OK;
	}
	if (sa->sa_family == AF_INET6) {
		memcpy(out, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, 16);
		return LGR_OK;
	}
	return LGR_EUNSUPPORTED;
}

static bool is_mapped(const uint8_t a[16])
{
	static const uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

	return memcmp(a, prefix, 12) == 0;
}

int lgr_drain_range_parse(const char *s, size_t len, struct lgr_drain_range *out)
{
	const char *slash = memchr(s, '/', len), *dash = memchr(s, '-', len);
	unsigned long bits = 0;
	size_t i, alen;
	bool v4;

	if (slash != NULL && dash != NULL)
		return LGR_EDECODE;
	if (dash != NULL) {
		if (lgr_drain_addr_parse(s, (size_t)(dash - s), out->lo) != LGR_OK ||
			lgr_drain_addr_parse(dash + 1, len - (size_t)(dash - s) - 1, out->hi) != LGR_OK ||
			is_mapped(out->lo) != is_mapped(out->hi) || memcmp(out->lo, out->hi, 16) > 0)
			return LGR_EDECODE;
		return LGR_OK;
	}
	alen = slash != NULL ? (size_t)(slash - s) : len;
	if (lgr_drain_addr_parse(s, alen, out->lo) != LGR_OK)
		return LGR_EDECODE;
	v4 = is_mapped(out->lo) && memchr(s, ':', alen) == NULL;
	if (slash == NULL) {
		memcpy(out->hi, out->lo, 16);
		return LGR_OK;
	}
	if (len - alen - 1 == 0 || len - alen - 1 > 3)
		return LGR_EDECODE;
	for (i = alen + 1; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return LGR_EDECODE;
		bits = bits * 10 + (unsigned long)(s[i] - '0');
	}
	if (bits > (v4 ? 32u : 128u))
		return LGR_EDECODE;
	if (v4)
		bits += 96;
	for (i = 0; i < 16; i++) {
		unsigned keep = bits >= 8 * (i + 1) ? 8 : bits > 8 * i ? (unsigned)(bits - 8 * i) : 0;
		uint8_t mask = (uint8_t)(keep == 0 ? 0 : 0xff << (8 - keep));

		out->lo[i] &= mask;
		out->hi[i] = (uint8_t)(out->lo[i] | (uint8_t)~mask);
	}
	return LGR_OK;
}

#define DENY_MAX 65536u

int lgr_drain_deny_init(struct lgr_drain_deny *d, const char *const *ranges, size_t n, size_t *bad)
{
	size_t i;
	int rc;

	d->n = 0;
	d->r = NULL;
	if (n == 0)
		return LGR_OK;
	if (n > DENY_MAX)
		return LGR_ELIMIT;
	d->r = calloc(n, sizeof(*d->r));
	if (d->r == NULL)
		return LGR_ENOMEM;
	for (i = 0; i < n; i++) {
		const char *s = ranges[i] != NULL ? ranges[i] : "";

		rc = lgr_drain_range_parse(s, strlen(s), &d->r[i]);
		if (rc != LGR_OK) {
			if (bad != NULL)
				*bad = i;
			lgr_drain_deny_cleanup(d);
			return rc;
		}
	}
	d->n = n;
	return LGR_OK;
}

void lgr_drain_deny_cleanup(struct lgr_drain_deny *d)
{
	free(d->r);
	d->r = NULL;
	d->n = 0;
}

bool lgr_drain_deny_match(const struct lgr_drain_deny *d, const uint8_t addr[16])
{
	size_t i;

	for (i = 0; i < d->n; i++)
		if (memcmp(addr, d->r[i].lo, 16) >= 0 && memcmp(addr, d->r[i].hi, 16) <= 0)
			return true;
	return false;
}
