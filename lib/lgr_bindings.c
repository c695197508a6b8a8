/*
 * lgr_bindings.c: binding snapshots (see lgr_bindings.h). The JSON is read with json-c after a size check, walked
 * once into (app, entry, credential) references, the static bindings (split once, when the configuration is read)
 * added after them, and all sorted by app id and URL to apply the per-app limit; then the kept strings are copied
 * into a chunked arena that the snapshot owns, the json-c tree is dropped, and an open-addressing table over the
 * apps answers lookups.
 */
#include "lgr_bindings.h"

#include <limits.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <json.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#define DEFAULT_MAX_BYTES   (16u * 1024 * 1024)
#define DEFAULT_MAX_ENTRIES 100000u
#define DEFAULT_MAX_APPS    1000000u
#define DEFAULT_MAX_PEM	    (64u * 1024)
#define DEFAULT_PER_APP	    5u
#define APP_ID_MAX	    256u  /* app ids are GUIDs; anything longer is not one */
#define HOSTNAME_MAX	    1024u /* lines cut it to 255 */
#define JSON_DEPTH	    8	  /* array, entry, credentials, credential, apps, app, and slack */
#define CHUNK_SIZE	    (64u * 1024)

/* --- the arena ------------------------------------------------------------------------------------------------ */

struct chunk {
	struct chunk *next;
	size_t used, cap;
	char data[];
};

static char *arena_strdup(struct chunk **head, const char *s, size_t n)
{
	struct chunk *c = *head;
	char *p;

	if (c == NULL || c->cap - c->used < n + 1) {
		size_t cap = n + 1 > CHUNK_SIZE ? n + 1 : CHUNK_SIZE;

		c = malloc(sizeof(*c) + cap);
		if (c == NULL)
			return NULL;
		c->used = 0;
		c->cap = cap;
		c->next = *head;
		*head = c;
	}
	p = c->data + c->used;
	memcpy(p, s, n);
	p[n] = '\0';
	c->used += n + 1;
	return p;
}

static void arena_free(struct chunk *c)
{
	while (c != NULL) {
		struct chunk *next = c->next;

		free(c);
		c = next;
	}
}

/* --- the snapshot --------------------------------------------------------------------------------------------- */

struct lgr_bindings {
	atomic_int refs;
	struct chunk *arena;
	struct lgr_drain **drains; /* one per entry (and aggregate URL) that parsed; owned */
	size_t n_drains;
	struct lgr_bindings_app *apps; /* app id order */
	size_t n_apps;
	struct lgr_binding *pairs; /* the apps' drains, app by app */
	struct lgr_binding *agg;
	size_t n_agg;
	uint32_t *table; /* 1 + index into apps, 0 for an empty slot */
	size_t mask;
	struct lgr_bindings_stats stats;
};

static uint64_t hash_str(const char *s)
{
	uint64_t h = UINT64_C(0xcbf29ce484222325);

	for (; *s != '\0'; s++)
		h = (h ^ (unsigned char)*s) * UINT64_C(0x100000001b3);
	return h;
}

static void bindings_free(struct lgr_bindings *b)
{
	size_t i;

	if (b == NULL)
		return;
	for (i = 0; i < b->n_drains; i++)
		lgr_drain_free(b->drains[i]);
	free(b->drains);
	free(b->apps);
	free(b->pairs);
	free(b->agg);
	free(b->table);
	arena_free(b->arena);
	free(b);
}

struct lgr_bindings *lgr_bindings_ref(struct lgr_bindings *b)
{
	atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
	return b;
}

void lgr_bindings_unref(struct lgr_bindings *b)
{
	if (b != NULL && atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) == 1)
		bindings_free(b);
}

const struct lgr_bindings_app *lgr_bindings_lookup(const struct lgr_bindings *b, const char *app_id)
{
	size_t i;

	if (b == NULL || app_id == NULL || b->table == NULL)
		return NULL;
	for (i = hash_str(app_id) & b->mask; b->table[i] != 0; i = (i + 1) & b->mask) {
		const struct lgr_bindings_app *a = &b->apps[b->table[i] - 1];

		if (strcmp(a->app_id, app_id) == 0)
			return a;
	}
	return NULL;
}

const struct lgr_binding *lgr_bindings_aggregate(const struct lgr_bindings *b, size_t *n)
{
	*n = b->n_agg;
	return b->agg;
}

const struct lgr_bindings_app *lgr_bindings_apps(const struct lgr_bindings *b, size_t *n)
{
	*n = b->n_apps;
	return b->apps;
}

const struct lgr_bindings_stats *lgr_bindings_stats(const struct lgr_bindings *b)
{
	return &b->stats;
}

/* --- static bindings ------------------------------------------------------------------------------------------ */

#define STATIC_SHOWN_MAX 160 /* bytes of an entry shown in an error message */

struct static_entry {
	const char *app_id, *hostname, *url; /* in text; hostname "" when not given */
	size_t hostname_len, url_len;
};

struct lgr_bindings_static {
	size_t n;
	struct static_entry *e;
	char *text; /* the entries' fields, each NUL-terminated */
};

void lgr_bindings_static_free(struct lgr_bindings_static *s)
{
	if (s == NULL)
		return;
	free(s->e);
	free(s->text);
	free(s);
}

static bool is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* RFC 5424's PRINTUSASCII: what an app id and a HOSTNAME may hold. */
static bool printable(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 33 || (unsigned char)s[i] > 126)
			return false;
	return true;
}

static bool looks_like_url(const char *s, size_t n)
{
	for (size_t i = 0; i + 3 <= n; i++)
		if (s[i] == ':' && s[i + 1] == '/' && s[i + 2] == '/')
			return true;
	return false;
}

/* The fields of an entry, anonymised one by one and joined by a space, for messages: a URL's userinfo, query and
 * fragment never show, wherever the operator put the URL. Control bytes show as '?'; cut to STATIC_SHOWN_MAX. */
static void static_shown(const char *entry, char *out, size_t cap)
{
	const char *p = entry, *f;
	size_t o = 0, k;
	char one[STATIC_SHOWN_MAX + 1];

	out[0] = '\0';
	for (;;) {
		while (*p != '\0' && is_blank(*p))
			p++;
		if (*p == '\0' || o + 1 >= cap)
			break;
		for (f = p; *p != '\0' && !is_blank(*p); p++)
			;
		lgr_drain_anonymize(f, (size_t)(p - f), one, sizeof(one));
		if (o > 0)
			out[o++] = ' ';
		for (k = 0; one[k] != '\0' && o + 1 < cap; k++)
			out[o++] = (unsigned char)one[k] < 32 || one[k] == 127 ? '?' : one[k];
		out[o] = '\0';
	}
	if (o + 1 >= cap && cap > 4)
		memcpy(out + cap - 4, "...", 4);
}

/* Splits one entry (copied into *text) into e; LGR_EDECODE with err saying why. */
static int static_entry_parse(const char *entry, size_t index, unsigned drain_flags, char **text,
	struct static_entry *e, char *err, size_t errlen)
{
	const char *field[3] = {NULL, NULL, NULL};
	size_t len[3] = {0, 0, 0}, n = 0, i;
	const char *p = entry, *f;
	char shown[STATIC_SHOWN_MAX + 4], why[512], notice[448], anon[400], scheme[32];
	struct lgr_drain *d = NULL;
	enum lgr_drain_reason reason;
	int rc = LGR_EDECODE;

	why[0] = '\0';
	for (;;) {
		while (*p != '\0' && is_blank(*p))
			p++;
		if (*p == '\0')
			break;
		for (f = p; *p != '\0' && !is_blank(*p); p++)
			;
		if (n < 3) {
			field[n] = f;
			len[n] = (size_t)(p - f);
		}
		n++;
	}
	if (n != 2 && n != 3) {
		snprintf(why, sizeof(why), "expected \"APP_ID URL\" or \"APP_ID HOSTNAME URL\", got %zu field%s", n,
			n == 1 ? "" : "s");
		goto out;
	}
	if (len[0] > APP_ID_MAX || !printable(field[0], len[0])) {
		snprintf(why, sizeof(why), "the app id is not up to %u printable ASCII characters", APP_ID_MAX);
		goto out;
	}
	if (n == 3 && (len[1] > HOSTNAME_MAX || !printable(field[1], len[1]))) {
		snprintf(why, sizeof(why), "the hostname is not up to %u printable ASCII characters", HOSTNAME_MAX);
		goto out;
	}
	/* org.space.app never has one: rather two URLs in one entry, of which the first would become the hostname */
	if (n == 3 && looks_like_url(field[1], len[1])) {
		snprintf(why, sizeof(why), "the hostname is a URL (an entry binds one URL)");
		goto out;
	}
	rc = lgr_drain_parse(field[n - 1], len[n - 1], drain_flags, &d, &reason);
	if (rc == LGR_ENOMEM)
		goto out;
	if (rc != LGR_OK) {
		rc = LGR_EDECODE;
		lgr_drain_anonymize(field[n - 1], len[n - 1], anon, sizeof(anon));
		lgr_drain_scheme_text(field[n - 1], len[n - 1], scheme, sizeof(scheme));
		if (lgr_drain_notice(reason, scheme, anon, notice, sizeof(notice)) < 0)
			snprintf(notice, sizeof(notice), "%s", lgr_drain_reason_name(reason));
		snprintf(why, sizeof(why), "the drain URL is refused: %s", notice);
		goto out;
	}
	/* the fields, one after another in the text copy */
	for (i = 0; i < n; i++) {
		memcpy(*text, field[i], len[i]);
		(*text)[len[i]] = '\0';
		field[i] = *text;
		*text += len[i] + 1;
	}
	e->app_id = field[0];
	e->hostname = n == 3 ? field[1] : "";
	e->hostname_len = n == 3 ? len[1] : 0;
	e->url = field[n - 1];
	e->url_len = len[n - 1];
	rc = LGR_OK;
out:
	lgr_drain_free(d);
	if (rc == LGR_EDECODE && err != NULL && errlen > 0) {
		static_shown(entry, shown, sizeof(shown));
		snprintf(err, errlen, "entry %zu \"%s\": %s", index + 1, shown, why);
	}
	return rc;
}

int lgr_bindings_static_parse(const char *const *entries, size_t n, unsigned drain_flags,
	struct lgr_bindings_static **out, size_t *bad, char *err, size_t errlen)
{
	struct lgr_bindings_static *s;
	size_t total = 1, i;
	char *text;
	int rc = LGR_ENOMEM;

	*out = NULL;
	if (err != NULL && errlen > 0)
		err[0] = '\0';
	/* an entry's fields and their NULs take at most its length and one: blanks separate them */
	for (i = 0; i < n; i++)
		total += strlen(entries[i] != NULL ? entries[i] : "") + 1;
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		goto out;
	s->e = calloc(n + 1, sizeof(*s->e));
	s->text = malloc(total);
	if (s->e == NULL || s->text == NULL)
		goto out;
	text = s->text;
	for (i = 0; i < n; i++) {
		rc = static_entry_parse(
			entries[i] != NULL ? entries[i] : "", i, drain_flags, &text, &s->e[i], err, errlen);
		if (rc != LGR_OK) {
			if (bad != NULL)
				*bad = i;
			goto out;
		}
	}
	s->n = n;
	*out = s;
	s = NULL; /* ownership transferred */
	rc = LGR_OK;
out:
	if (rc == LGR_ENOMEM && err != NULL && errlen > 0)
		snprintf(err, errlen, "out of memory");
	lgr_bindings_static_free(s);
	return rc;
}

/* --- parsing -------------------------------------------------------------------------------------------------- */

struct cred {
	const char *cert, *key, *ca; /* json strings, NULL when absent or empty */
	size_t cert_len, key_len, ca_len;
	const char *c_cert, *c_key, *c_ca; /* arena copies, made on first use */
	bool copied;
};

struct ref {
	const char *app_id; /* json string */
	const char *hostname;
	size_t hostname_len;
	size_t entry; /* index into drains of the parse */
	size_t cred;  /* index into creds */
	size_t seq;   /* input order, for a stable sort */
};

struct parse {
	const struct lgr_bindings_conf *conf;
	lgr_bindings_reject_fn *reject;
	void *ud;
	struct lgr_bindings *b;
	struct lgr_drain **entry_drain; /* per entry; NULL when refused (not owned: b->drains owns) */
	struct cred *creds;
	size_t n_creds, cap_creds;
	struct ref *refs;
	size_t n_refs, cap_refs;
};

static void refuse(struct parse *p, const char *app_id, enum lgr_drain_reason why, const char *scheme, const char *anon)
{
	p->b->stats.rejected++;
	p->b->stats.rejected_by[why]++;
	if (p->reject != NULL)
		p->reject(app_id, why, scheme, anon, p->ud);
}

static struct json_object *member(struct json_object *o, const char *key)
{
	struct json_object *v = NULL;

	if (!json_object_object_get_ex(o, key, &v))
		return NULL;
	return v;
}

/* A string member: true and *s (NULL when absent, null or empty); false when it has another type. */
static bool opt_string(struct json_object *o, const char *key, const char **s, size_t *n)
{
	struct json_object *v = member(o, key);

	*s = NULL;
	*n = 0;
	if (v == NULL || json_object_is_type(v, json_type_null))
		return true;
	if (!json_object_is_type(v, json_type_string))
		return false;
	*n = (size_t)json_object_get_string_len(v);
	*s = *n > 0 ? json_object_get_string(v) : NULL;
	return true;
}

/* Each app id of one credential's apps, for notices; fn skips apps without a usable id. */
static void each_app(
	struct json_object *cred, void (*fn)(struct parse *, const char *, void *), struct parse *p, void *arg)
{
	struct json_object *apps = json_object_is_type(cred, json_type_object) ? member(cred, "apps") : NULL;
	size_t i, n;

	if (apps == NULL || !json_object_is_type(apps, json_type_array))
		return;
	n = json_object_array_length(apps);
	for (i = 0; i < n; i++) {
		struct json_object *app = json_object_array_get_idx(apps, i), *id;

		if (!json_object_is_type(app, json_type_object))
			continue;
		id = member(app, "app_id");
		if (id != NULL && json_object_is_type(id, json_type_string) && json_object_get_string_len(id) > 0 &&
			(size_t)json_object_get_string_len(id) <= APP_ID_MAX)
			fn(p, json_object_get_string(id), arg);
	}
}

struct notice {
	enum lgr_drain_reason why;
	const char *scheme, *anon;
};

static void notify_one(struct parse *p, const char *app_id, void *arg)
{
	const struct notice *n = arg;

	refuse(p, app_id, n->why, n->scheme, n->anon);
}

/* Refuses every app of the credentials array (or one credential), or the entry itself when it names none. */
static void refuse_apps(struct parse *p, struct json_object *creds, struct json_object *one, struct notice *n)
{
	size_t before = p->b->stats.rejected, i, cnt;

	if (one != NULL) {
		each_app(one, notify_one, p, n);
	} else if (creds != NULL && json_object_is_type(creds, json_type_array)) {
		cnt = json_object_array_length(creds);
		for (i = 0; i < cnt; i++)
			each_app(json_object_array_get_idx(creds, i), notify_one, p, n);
	}
	if (p->b->stats.rejected == before)
		refuse(p, NULL, n->why, n->scheme, n->anon);
}

static bool pem_pair_loads(const char *cert, size_t cert_len, const char *key, size_t key_len)
{
	BIO *cb = BIO_new_mem_buf(cert, (int)cert_len), *kb = BIO_new_mem_buf(key, (int)key_len);
	X509 *x = NULL;
	EVP_PKEY *k = NULL;
	bool ok = false;

	if (cb == NULL || kb == NULL)
		goto out;
	x = PEM_read_bio_X509(cb, NULL, NULL, NULL);
	k = PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL);
	ok = x != NULL && k != NULL && X509_check_private_key(x, k) == 1;
out:
	X509_free(x);
	EVP_PKEY_free(k);
	BIO_free(cb);
	BIO_free(kb);
	ERR_clear_error();
	return ok;
}

static bool pem_ca_loads(const char *ca, size_t len)
{
	BIO *b = BIO_new_mem_buf(ca, (int)len);
	X509 *x = NULL;
	bool ok;

	x = b != NULL ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
	ok = x != NULL;
	X509_free(x);
	BIO_free(b);
	ERR_clear_error();
	return ok;
}

static int push_cred(struct parse *p, const struct cred *c)
{
	if (p->n_creds == p->cap_creds) {
		size_t cap = p->cap_creds != 0 ? p->cap_creds * 2 : 64;
		struct cred *n = realloc(p->creds, cap * sizeof(*n));

		if (n == NULL)
			return LGR_ENOMEM;
		p->creds = n;
		p->cap_creds = cap;
	}
	p->creds[p->n_creds++] = *c;
	return LGR_OK;
}

static int push_ref(struct parse *p, const struct ref *r)
{
	if (p->n_refs >= p->conf->max_apps)
		return LGR_ELIMIT;
	if (p->n_refs == p->cap_refs) {
		size_t cap = p->cap_refs != 0 ? p->cap_refs * 2 : 256;
		struct ref *n = realloc(p->refs, cap * sizeof(*n));

		if (n == NULL)
			return LGR_ENOMEM;
		p->refs = n;
		p->cap_refs = cap;
	}
	p->refs[p->n_refs] = *r;
	p->refs[p->n_refs].seq = p->n_refs;
	p->n_refs++;
	return LGR_OK;
}

/* One credential of entry e: its PEM checked, its apps collected. */
static int read_cred(struct parse *p, size_t e, struct json_object *cj, const char *anon)
{
	struct notice n = {LGR_DRAIN_NO_APP, NULL, anon};
	struct json_object *apps;
	struct cred c = {0};
	size_t i, cnt, before;
	int rc;

	if (!json_object_is_type(cj, json_type_object)) {
		refuse(p, NULL, LGR_DRAIN_NO_APP, NULL, anon);
		return LGR_OK;
	}
	n.why = LGR_DRAIN_BAD_CERT;
	if (!opt_string(cj, "cert", &c.cert, &c.cert_len) || !opt_string(cj, "key", &c.key, &c.key_len) ||
		c.cert_len > p->conf->max_pem || c.key_len > p->conf->max_pem) {
		refuse_apps(p, NULL, cj, &n);
		return LGR_OK;
	}
	n.why = LGR_DRAIN_BAD_CA;
	if (!opt_string(cj, "ca", &c.ca, &c.ca_len) || c.ca_len > p->conf->max_pem) {
		refuse_apps(p, NULL, cj, &n);
		return LGR_OK;
	}
	if (p->conf->check_pem) {
		n.why = LGR_DRAIN_BAD_CERT;
		if (c.cert != NULL && c.key != NULL && !pem_pair_loads(c.cert, c.cert_len, c.key, c.key_len)) {
			refuse_apps(p, NULL, cj, &n);
			return LGR_OK;
		}
		n.why = LGR_DRAIN_BAD_CA;
		if (c.ca != NULL && !pem_ca_loads(c.ca, c.ca_len)) {
			refuse_apps(p, NULL, cj, &n);
			return LGR_OK;
		}
	}
	rc = push_cred(p, &c);
	if (rc != LGR_OK)
		return rc;
	apps = member(cj, "apps");
	before = p->n_refs;
	if (apps != NULL && json_object_is_type(apps, json_type_array)) {
		cnt = json_object_array_length(apps);
		for (i = 0; i < cnt; i++) {
			struct json_object *aj = json_object_array_get_idx(apps, i), *id;
			struct ref r = {0};

			id = json_object_is_type(aj, json_type_object) ? member(aj, "app_id") : NULL;
			if (id == NULL || !json_object_is_type(id, json_type_string) ||
				json_object_get_string_len(id) == 0 ||
				(size_t)json_object_get_string_len(id) > APP_ID_MAX ||
				!opt_string(aj, "hostname", &r.hostname, &r.hostname_len) ||
				r.hostname_len > HOSTNAME_MAX) {
				refuse(p, NULL, LGR_DRAIN_NO_APP, NULL, anon);
				continue;
			}
			r.app_id = json_object_get_string(id);
			r.entry = e;
			r.cred = p->n_creds - 1;
			rc = push_ref(p, &r);
			if (rc != LGR_OK)
				return rc;
		}
	}
	if (p->n_refs == before && (apps == NULL || !json_object_is_type(apps, json_type_array)))
		refuse(p, NULL, LGR_DRAIN_NO_APP, NULL, anon);
	return LGR_OK;
}

static int read_entry(struct parse *p, size_t e, struct json_object *ej)
{
	struct json_object *uj, *creds;
	struct lgr_drain *d = NULL;
	enum lgr_drain_reason why;
	char anon[512], scheme[32];
	struct notice n = {LGR_DRAIN_BAD_URL, NULL, NULL};
	const char *url;
	size_t len, i, cnt;
	int rc;

	if (!json_object_is_type(ej, json_type_object)) {
		refuse(p, NULL, LGR_DRAIN_BAD_URL, NULL, NULL);
		return LGR_OK;
	}
	uj = member(ej, "url");
	creds = member(ej, "credentials");
	if (uj == NULL || !json_object_is_type(uj, json_type_string)) {
		refuse_apps(p, creds, NULL, &n);
		return LGR_OK;
	}
	url = json_object_get_string(uj);
	len = (size_t)json_object_get_string_len(uj);
	lgr_drain_anonymize(url, len, anon, sizeof(anon));
	if (creds == NULL || !json_object_is_type(creds, json_type_array) || json_object_array_length(creds) == 0) {
		refuse(p, NULL, LGR_DRAIN_NO_APP, NULL, anon);
		return LGR_OK;
	}
	rc = lgr_drain_parse(url, len, p->conf->drain_flags, &d, &why);
	if (rc == LGR_ENOMEM)
		return rc;
	if (rc != LGR_OK) {
		lgr_drain_scheme_text(url, len, scheme, sizeof(scheme));
		n.why = why;
		n.scheme = scheme;
		n.anon = why == LGR_DRAIN_BAD_URL ? NULL : anon;
		refuse_apps(p, creds, NULL, &n);
		return LGR_OK;
	}
	p->b->drains[p->b->n_drains++] = d;
	p->entry_drain[e] = d;
	cnt = json_object_array_length(creds);
	for (i = 0; i < cnt; i++) {
		rc = read_cred(p, e, json_object_array_get_idx(creds, i), d->anon);
		if (rc != LGR_OK)
			return rc;
	}
	return LGR_OK;
}

static int ref_cmp(const void *a, const void *b)
{
	const struct ref *x = a, *y = b;
	int c = strcmp(x->app_id, y->app_id);

	if (c != 0)
		return c;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* The refs of one app, ordered by URL (then input order), in place. */
struct url_ref {
	const char *url;
	size_t i;
};

static int url_ref_cmp(const void *a, const void *b)
{
	const struct url_ref *x = a, *y = b;
	int c = strcmp(x->url, y->url);

	if (c != 0)
		return c;
	return x->i < y->i ? -1 : x->i > y->i;
}

static int copy_cred(struct parse *p, struct cred *c)
{
	struct chunk **a = &p->b->arena;

	if (c->copied)
		return LGR_OK;
	if ((c->cert != NULL && (c->c_cert = arena_strdup(a, c->cert, c->cert_len)) == NULL) ||
		(c->key != NULL && (c->c_key = arena_strdup(a, c->key, c->key_len)) == NULL) ||
		(c->ca != NULL && (c->c_ca = arena_strdup(a, c->ca, c->ca_len)) == NULL))
		return LGR_ENOMEM;
	c->copied = true;
	return LGR_OK;
}

/* Groups the refs by app, applies the per-app limit and copies what is kept. */
static int build_apps(struct parse *p)
{
	struct lgr_bindings *b = p->b;
	struct url_ref *ur = NULL;
	size_t i = 0, j, k, kept, slots;
	int rc = LGR_ENOMEM;

	if (p->n_refs == 0)
		return LGR_OK;
	qsort(p->refs, p->n_refs, sizeof(*p->refs), ref_cmp);
	b->pairs = calloc(p->n_refs, sizeof(*b->pairs));
	b->apps = calloc(p->n_refs, sizeof(*b->apps));
	ur = malloc(p->n_refs * sizeof(*ur));
	if (b->pairs == NULL || b->apps == NULL || ur == NULL)
		goto out;
	while (i < p->n_refs) {
		struct lgr_bindings_app *app = &b->apps[b->n_apps];
		struct lgr_binding *first = &b->pairs[b->stats.bindings];
		const char *prev = NULL;

		for (j = i; j < p->n_refs && strcmp(p->refs[j].app_id, p->refs[i].app_id) == 0; j++) {
			ur[j - i].url = p->entry_drain[p->refs[j].entry]->url;
			ur[j - i].i = j;
		}
		qsort(ur, j - i, sizeof(*ur), url_ref_cmp);
		for (kept = 0, k = 0; k < j - i; k++) {
			const struct ref *r = &p->refs[ur[k].i];
			struct cred *c = &p->creds[r->cred];
			struct lgr_binding *out = &first[kept];

			if (prev != NULL && strcmp(prev, ur[k].url) == 0)
				continue; /* the same URL bound twice */
			prev = ur[k].url;
			if (kept == p->conf->per_app) {
				b->stats.over_limit++;
				continue;
			}
			if (copy_cred(p, c) != LGR_OK)
				goto out;
			out->drain = p->entry_drain[r->entry];
			out->hostname =
				arena_strdup(&b->arena, r->hostname != NULL ? r->hostname : "", r->hostname_len);
			if (out->hostname == NULL)
				goto out;
			out->cert = c->c_cert;
			out->key = c->c_key;
			out->ca = c->c_ca;
			kept++;
		}
		app->app_id = arena_strdup(&b->arena, p->refs[i].app_id, strlen(p->refs[i].app_id));
		if (app->app_id == NULL)
			goto out;
		app->n = kept;
		app->drains = first;
		b->stats.bindings += kept;
		b->n_apps++;
		i = j;
	}
	b->stats.apps = b->n_apps;

	for (slots = 16; slots < 2 * b->n_apps; slots *= 2)
		;
	b->table = calloc(slots, sizeof(*b->table));
	if (b->table == NULL)
		goto out;
	b->mask = slots - 1;
	for (i = 0; i < b->n_apps; i++) {
		for (k = hash_str(b->apps[i].app_id) & b->mask; b->table[k] != 0; k = (k + 1) & b->mask)
			;
		b->table[k] = (uint32_t)(i + 1);
	}
	rc = LGR_OK;
out:
	free(ur);
	return rc;
}

static int read_aggregate(struct parse *p, const char *const *urls, size_t n)
{
	struct lgr_bindings *b = p->b;
	struct lgr_drain *d;
	enum lgr_drain_reason why;
	char anon[512], scheme[32];
	size_t i, len;
	int rc;

	if (n == 0)
		return LGR_OK;
	b->agg = calloc(n, sizeof(*b->agg));
	if (b->agg == NULL)
		return LGR_ENOMEM;
	for (i = 0; i < n; i++) {
		const char *u = urls[i] != NULL ? urls[i] : "";

		len = strlen(u);
		rc = lgr_drain_parse(u, len, p->conf->drain_flags, &d, &why);
		if (rc == LGR_ENOMEM)
			return rc;
		if (rc != LGR_OK) {
			lgr_drain_anonymize(u, len, anon, sizeof(anon));
			lgr_drain_scheme_text(u, len, scheme, sizeof(scheme));
			refuse(p, NULL, why, scheme, why == LGR_DRAIN_BAD_URL ? NULL : anon);
			continue;
		}
		b->drains[b->n_drains++] = d;
		b->agg[b->n_agg].drain = d;
		b->agg[b->n_agg].hostname = "";
		b->n_agg++;
	}
	b->stats.aggregate = b->n_agg;
	return LGR_OK;
}

/*
 * The static bindings as refs after the JSON's, so that where both bind an app to the same URL the JSON's binding
 * (which may carry credentials) is the one kept. Their drains go to entry_drain from index first on; they share
 * one empty credential.
 */
static int read_static(struct parse *p, size_t first, const struct lgr_bindings_static *st)
{
	struct lgr_bindings *b = p->b;
	struct cred none = {0};
	struct lgr_drain *d;
	enum lgr_drain_reason why;
	char anon[512], scheme[32];
	size_t i;
	int rc;

	if (st == NULL || st->n == 0)
		return LGR_OK;
	rc = push_cred(p, &none);
	if (rc != LGR_OK)
		return rc;
	b->stats.statics = st->n;
	for (i = 0; i < st->n; i++) {
		const struct static_entry *e = &st->e[i];
		struct ref r = {0};

		rc = lgr_drain_parse(e->url, e->url_len, p->conf->drain_flags, &d, &why);
		if (rc == LGR_ENOMEM)
			return rc;
		if (rc != LGR_OK) {
			lgr_drain_anonymize(e->url, e->url_len, anon, sizeof(anon));
			lgr_drain_scheme_text(e->url, e->url_len, scheme, sizeof(scheme));
			refuse(p, e->app_id, why, scheme, why == LGR_DRAIN_BAD_URL ? NULL : anon);
			continue;
		}
		b->drains[b->n_drains++] = d;
		p->entry_drain[first + i] = d;
		r.app_id = e->app_id;
		r.hostname = e->hostname_len > 0 ? e->hostname : NULL;
		r.hostname_len = e->hostname_len;
		r.entry = first + i;
		r.cred = p->n_creds - 1;
		rc = push_ref(p, &r);
		if (rc != LGR_OK)
			return rc;
	}
	return LGR_OK;
}

static struct json_object *parse_json(const char *json, size_t len, int *rc)
{
	struct json_tokener *tok = json_tokener_new_ex(JSON_DEPTH);
	struct json_object *obj;
	enum json_tokener_error err;

	*rc = LGR_ENOMEM;
	if (tok == NULL)
		return NULL;
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	obj = json_tokener_parse_ex(tok, json, (int)len);
	err = json_tokener_get_error(tok);
	if (err == json_tokener_continue) {
		/* a number at the very end needs to see the end of input */
		obj = json_tokener_parse_ex(tok, "", 1);
		err = json_tokener_get_error(tok);
	}
	if (err == json_tokener_success && json_tokener_get_parse_end(tok) < len) {
		size_t i;

		for (i = json_tokener_get_parse_end(tok); i < len; i++)
			if (json[i] != ' ' && json[i] != '\t' && json[i] != '\n' && json[i] != '\r')
				err = json_tokener_error_parse_unexpected;
	}
	if (err != json_tokener_success) {
		json_object_put(obj);
		obj = NULL;
		*rc = err == json_tokener_error_depth ? LGR_ELIMIT : LGR_EDECODE;
	} else {
		*rc = LGR_OK;
	}
	json_tokener_free(tok);
	return obj;
}

int lgr_bindings_parse(const char *json, size_t len, const char *const *aggregate, size_t n_aggregate,
	const struct lgr_bindings_static *statics, const struct lgr_bindings_conf *conf, lgr_bindings_reject_fn *reject,
	void *ud, struct lgr_bindings **out)
{
	struct lgr_bindings_conf c = conf != NULL ? *conf : (struct lgr_bindings_conf){0};
	struct parse p = {0};
	struct json_object *root = NULL;
	size_t n_entries = 0, n_static = statics != NULL ? statics->n : 0, i;
	int rc;

	*out = NULL;
	if (c.max_bytes == 0)
		c.max_bytes = DEFAULT_MAX_BYTES;
	if (c.max_entries == 0)
		c.max_entries = DEFAULT_MAX_ENTRIES;
	if (c.max_apps == 0)
		c.max_apps = DEFAULT_MAX_APPS;
	if (c.max_pem == 0)
		c.max_pem = DEFAULT_MAX_PEM;
	if (c.per_app == 0)
		c.per_app = DEFAULT_PER_APP;
	p.conf = &c;
	p.reject = reject;
	p.ud = ud;

	rc = LGR_ETOOBIG;
	if (len > c.max_bytes || len > INT_MAX)
		goto out;
	rc = LGR_ELIMIT;
	if (n_aggregate > c.max_entries)
		goto out;
	if (len > 0) {
		root = parse_json(json, len, &rc);
		if (rc != LGR_OK)
			goto out;
		rc = LGR_EDECODE;
		if (!json_object_is_type(root, json_type_array))
			goto out;
		n_entries = json_object_array_length(root);
		rc = LGR_ELIMIT;
		if (n_entries > c.max_entries)
			goto out;
	}

	rc = LGR_ENOMEM;
	p.b = calloc(1, sizeof(*p.b));
	if (p.b == NULL)
		goto out;
	atomic_init(&p.b->refs, 1);
	p.b->drains = calloc(n_entries + n_static + n_aggregate + 1, sizeof(*p.b->drains));
	p.entry_drain = calloc(n_entries + n_static + 1, sizeof(*p.entry_drain));
	if (p.b->drains == NULL || p.entry_drain == NULL)
		goto out;
	p.b->stats.entries = n_entries;
	for (i = 0; i < n_entries; i++) {
		rc = read_entry(&p, i, json_object_array_get_idx(root, i));
		if (rc != LGR_OK)
			goto out;
	}
	rc = read_static(&p, n_entries, statics);
	if (rc != LGR_OK)
		goto out;
	rc = build_apps(&p);
	if (rc != LGR_OK)
		goto out;
	rc = read_aggregate(&p, aggregate, n_aggregate);
	if (rc != LGR_OK)
		goto out;
	*out = p.b;
	p.b = NULL; /* ownership transferred */
out:
	bindings_free(p.b);
	free(p.entry_drain);
	free(p.creds);
	free(p.refs);
	json_object_put(root);
	return rc;
}

/* --- publishing ----------------------------------------------------------------------------------------------- */

int lgr_bindings_slot_init(struct lgr_bindings_slot *s)
{
	s->cur = NULL;
	return pthread_mutex_init(&s->mu, NULL) == 0 ? LGR_OK : LGR_ENOMEM;
}

void lgr_bindings_slot_cleanup(struct lgr_bindings_slot *s)
{
	lgr_bindings_unref(s->cur);
	s->cur = NULL;
	pthread_mutex_destroy(&s->mu);
}

struct lgr_bindings *lgr_bindings_slot_get(struct lgr_bindings_slot *s)
{
	struct lgr_bindings *b;

	pthread_mutex_lock(&s->mu);
	b = s->cur != NULL ? lgr_bindings_ref(s->cur) : NULL;
	pthread_mutex_unlock(&s->mu);
	return b;
}

void lgr_bindings_slot_set(struct lgr_bindings_slot *s, struct lgr_bindings *b)
{
	struct lgr_bindings *old;

	pthread_mutex_lock(&s->mu);
	old = s->cur;
	s->cur = b;
	pthread_mutex_unlock(&s->mu);
	lgr_bindings_unref(old); /* outside the lock: freeing a big snapshot takes a while */
}
