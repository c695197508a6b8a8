/*
 * lgr_agent.c: the agent's envelope rules (contract, order and sources in lgr_agent.h): origin mapping, tag copying,
 * default tags, and the bounded table of counter totals.
 *
 * Order of the rules. The real agent runs its Tagger (deprecated tags, then default tags) before it computes the
 * counter key: NewCounterAggregator(tagger.TagEnvelope) in src/cmd/loggregator-agent/app/app_v2.go, and
 * CounterAggregator.Process in src/pkg/egress/v2/counter_aggregator.go calls that processor first, then keys the
 * total by (name, source_id, HashTags(env.GetTags())), all tags sorted by key. The source_id from origin is set
 * even earlier, by the ingress Receiver (src/pkg/ingress/v2/receiver.go). This unit does the same, so a default
 * tag or a copied deprecated tag is part of the key.
 *
 * The totals table is a chained hash table threaded on an LRU list. A key is the SHA-256 of a per-agent random
 * seed and the length-prefixed parts name, source_id, then each distinct tag key and value in key order: entries
 * have a fixed size however long the tags are, the length prefixes keep ("a", "bc") apart from ("ab", "c"), and the
 * seed keeps senders from choosing keys that share a bucket. Two identities with the same digest would share a
 * total; at 2^-128 that is the same bet as the real agent's concatenated per-tag SHA-256 sums.
 *
 * Cost: deprecated tags are matched against tags with lgr_env_tag, so an envelope costs O(tags x deprecated tags)
 * string comparisons, bounded by lgr_limits.max_tags at decode; real emitters send a handful of each.
 */
#include "lgr_agent.h"

#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <openssl/evp.h>

#define DIGEST_LEN  32 /* SHA-256 */
#define SEED_LEN    16
#define MIN_BUCKETS 16	       /* a power of two */
#define MAX_BUCKETS (1u << 24) /* past this, chains grow instead of the bucket array */

struct counter {
	struct counter *chain; /* next in the bucket */
	struct counter *newer; /* LRU list: toward ag->newest */
	struct counter *older;
	uint64_t total;
	unsigned char digest[DIGEST_LEN];
};

/* One tag of the envelope being keyed; pos breaks ties between repeated keys so the last one is kept. */
struct tag_ref {
	const char *key;
	const char *value;
	size_t pos;
};

struct lgr_agent {
	char **default_keys; /* rule 3, in order; parallel arrays, so callers can read them as they are */
	char **default_values;
	size_t ndefaults;
	size_t max_counters;
	struct counter **buckets;
	size_t nbuckets; /* a power of two */
	size_t max_buckets;
	size_t ncounters;
	struct counter *newest;
	struct counter *oldest;
	EVP_MD *sha256;
	EVP_MD_CTX *md;
	unsigned char seed[SEED_LEN];
	struct tag_ref *refs; /* scratch for sorting an envelope's tags; grows to the largest tag count seen */
	size_t refs_cap;
};

static const char *str_or_empty(const char *s)
{
	return s != NULL ? s : "";
}

/* --- decimal text, as Go's strconv.FormatFloat(d, 'f', -1, 64) ----------------------------------------------- */

/*
 * The real Tagger writes a Value_Decimal with strconv.FormatFloat(v, 'f', -1, 64) and a Value_Integer with
 * strconv.FormatInt(v, 10) (moveDeprecatedTags in src/pkg/egress/v2/tagger.go). Checked against Go 1.19 on 2.5
 * million doubles (random bit patterns, every power of two, subnormals, short decimals, integers): no difference.
 */

/* A positive decimal 0.d[0]d[1]...d[n-1] x 10^dp, as Go's ftoa keeps it. */
struct dec {
	char d[24];
	int n;
	int dp;
};

static void dec_trim(struct dec *x)
{
	while (x->n > 1 && x->d[x->n - 1] == '0')
		x->n--;
}

static bool dec_parses_to(const struct dec *x, double want)
{
	char s[48];

	snprintf(s, sizeof(s), "%.*se%d", x->n, x->d, x->dp - x->n);
	return strtod(s, NULL) == want;
}

/* x plus or minus one unit in its last digit; false when that leaves no digits (1 - 1). */
static bool dec_step(const struct dec *x, int dir, struct dec *out)
{
	int i;

	*out = *x;
	if (dir > 0) {
		for (i = out->n - 1; i >= 0 && out->d[i] == '9'; i--)
			out->d[i] = '0';
		if (i < 0) { /* 99 + 1 = 100: one digit, one place up */
			out->d[0] = '1';
			out->n = 1;
			out->dp++;
			return true;
		}
		out->d[i]++;
		dec_trim(out);
		return true;
	}
	for (i = out->n - 1; i >= 0 && out->d[i] == '0'; i--)
		out->d[i] = '9';
	if (i < 0)
		return false;
	out->d[i]--;
	if (out->d[0] == '0') { /* 100 - 1 = 099 */
		if (out->n == 1)
			return false;
		memmove(out->d, out->d + 1, (size_t)out->n - 1);
		out->n--;
		out->dp--;
	}
	dec_trim(out);
	return true;
}

/*
 * The shortest digits that parse back to v (positive, finite), and among those of that length the closest to v:
 * Go's shortest mode. printf's %.*e gives the correctly rounded p digits for each p; at a power of two the doubles
 * below v are twice as dense as above, so the rounded digits may fall just outside the values that parse to v while
 * their neighbour on the other side of v is inside: that neighbour is then the answer for p. p = 17 always parses.
 */
static void dec_shortest(double v, struct dec *out)
{
	char buf[40];
	struct dec x, y;
	int p, i;

	for (p = 1; p <= 17; p++) {
		snprintf(buf, sizeof(buf), "%.*e", p - 1, v); /* "d.ddde+XX", or "de+XX" when p == 1 */
		x.d[0] = buf[0];
		for (i = 1; i < p; i++)
			x.d[i] = buf[i + 1];
		x.n = p;
		x.dp = atoi(strchr(buf, 'e') + 1) + 1;
		if (dec_parses_to(&x, v)) /* untrimmed: the neighbours below differ in the p-th digit */
			goto out;
		if (dec_step(&x, +1, &y) && dec_parses_to(&y, v))
			goto found_neighbour;
		if (dec_step(&x, -1, &y) && dec_parses_to(&y, v))
			goto found_neighbour;
	}
	goto out; /* not reached: x holds 17 digits, which always parse back */
found_neighbour:
	x = y;
out:
	dec_trim(&x);
	*out = x;
}

size_t lgr_agent_format_decimal(double d, char buf[LGR_AGENT_DECIMAL_MAX])
{
	struct dec x;
	size_t pos = 0;
	int i;

	if (isnan(d))
		return (size_t)snprintf(buf, LGR_AGENT_DECIMAL_MAX, "NaN");
	if (isinf(d))
		return (size_t)snprintf(buf, LGR_AGENT_DECIMAL_MAX, "%s", d > 0 ? "+Inf" : "-Inf");
	if (signbit(d)) {
		buf[pos++] = '-';
		d = -d;
	}
	if (d == 0) {
		buf[pos++] = '0';
		goto out;
	}
	dec_shortest(d, &x);
	/* |d| < 2^1024 gives dp <= 309; |d| >= 2^-1074 needs no digit past the 324th after the point. */
	if (x.dp <= 0) {
		buf[pos++] = '0';
	} else {
		for (i = 0; i < x.dp; i++)
			buf[pos++] = i < x.n ? x.d[i] : '0';
	}
	if (x.n > x.dp) {
		buf[pos++] = '.';
		for (i = x.dp; i < x.n; i++)
			buf[pos++] = i < 0 ? '0' : x.d[i];
	}
out:
	buf[pos] = '\0';
	return pos;
}

/* The text of a deprecated tag's value as the real Tagger writes it; num holds a converted number. */
static const char *value_text(const Loggregator__V2__Value *v, char num[LGR_AGENT_DECIMAL_MAX])
{
	if (v == NULL)
		return "";
	switch (v->data_case) {
	case LOGGREGATOR__V2__VALUE__DATA_TEXT: return str_or_empty(v->text);
	case LOGGREGATOR__V2__VALUE__DATA_INTEGER:
		snprintf(num, LGR_AGENT_DECIMAL_MAX, "%" PRId64, v->integer);
		return num;
	case LOGGREGATOR__V2__VALUE__DATA_DECIMAL: lgr_agent_format_decimal(v->decimal, num); return num;
	default: return ""; /* Go writes an empty Value's text form: nothing */
	}
}

/* --- lifecycle ------------------------------------------------------------------------------------------------ */

static int defaults_add(struct lgr_agent *ag, const char *spec)
{
	const char *colon = spec != NULL ? strchr(spec, ':') : NULL;
	char *key = NULL, *value = NULL;
	size_t i;
	int rc = LGR_EINVAL;

	if (colon == NULL || colon == spec)
		goto out;
	rc = LGR_ENOMEM;
	key = strndup(spec, (size_t)(colon - spec));
	value = strdup(colon + 1);
	if (key == NULL || value == NULL)
		goto out;
	for (i = 0; i < ag->ndefaults; i++) {
		if (strcmp(ag->default_keys[i], key) == 0) { /* given twice: the later value wins */
			free(ag->default_values[i]);
			ag->default_values[i] = value;
			value = NULL; /* ownership transferred */
			rc = LGR_OK;
			goto out;
		}
	}
	ag->default_keys[ag->ndefaults] = key;
	ag->default_values[ag->ndefaults] = value;
	ag->ndefaults++;
	key = value = NULL; /* ownership transferred */
	rc = LGR_OK;
out:
	free(key);
	free(value);
	return rc;
}

static void seed_fill(unsigned char seed[SEED_LEN])
{
	struct timespec ts;
	uint64_t mix;
	size_t i;

	if (getrandom(seed, SEED_LEN, GRND_NONBLOCK) == SEED_LEN)
		return;
	/* No entropy yet (early boot): keys stay correct, only bucket placement becomes guessable. */
	clock_gettime(CLOCK_REALTIME, &ts);
	mix = (uint64_t)ts.tv_sec * 1000000007u ^ (uint64_t)ts.tv_nsec ^ (uint64_t)(uintptr_t)seed;
	for (i = 0; i < SEED_LEN; i++)
		seed[i] = (unsigned char)(mix >> (8 * (i % 8)));
}

int lgr_agent_new(const struct lgr_agent_conf *conf, struct lgr_agent **out)
{
	struct lgr_agent *ag = NULL;
	size_t i;
	int rc = LGR_EINVAL;

	*out = NULL;
	if (conf == NULL || (conf->ndefault_tags > 0 && conf->default_tags == NULL))
		goto out;
	rc = LGR_ENOMEM;
	ag = calloc(1, sizeof(*ag));
	if (ag == NULL)
		goto out;
	if (conf->ndefault_tags > 0) {
		ag->default_keys = calloc(conf->ndefault_tags, sizeof(*ag->default_keys));
		ag->default_values = calloc(conf->ndefault_tags, sizeof(*ag->default_values));
		if (ag->default_keys == NULL || ag->default_values == NULL)
			goto out;
	}
	for (i = 0; i < conf->ndefault_tags; i++) {
		rc = defaults_add(ag, conf->default_tags[i]);
		if (rc != LGR_OK)
			goto out;
	}
	rc = LGR_ENOMEM;
	ag->max_counters = conf->max_counters != 0 ? conf->max_counters : LGR_AGENT_DEFAULT_MAX_COUNTERS;
	for (ag->max_buckets = 1; ag->max_buckets < ag->max_counters && ag->max_buckets < MAX_BUCKETS;)
		ag->max_buckets <<= 1;
	ag->nbuckets = ag->max_buckets < MIN_BUCKETS ? ag->max_buckets : MIN_BUCKETS;
	ag->buckets = calloc(ag->nbuckets, sizeof(*ag->buckets));
	ag->sha256 = EVP_MD_fetch(NULL, "SHA2-256", NULL);
	ag->md = EVP_MD_CTX_new();
	if (ag->buckets == NULL || ag->sha256 == NULL || ag->md == NULL)
		goto out;
	seed_fill(ag->seed);
	*out = ag;
	ag = NULL; /* ownership transferred */
	rc = LGR_OK;
out:
	lgr_agent_free(ag);
	return rc;
}

void lgr_agent_free(struct lgr_agent *ag)
{
	struct counter *c, *next;
	size_t i;

	if (ag == NULL)
		return;
	for (c = ag->newest; c != NULL; c = next) {
		next = c->older;
		free(c);
	}
	for (i = 0; i < ag->ndefaults; i++) {
		free(ag->default_keys[i]);
		free(ag->default_values[i]);
	}
	free(ag->default_keys);
	free(ag->default_values);
	free(ag->buckets);
	free(ag->refs);
	EVP_MD_CTX_free(ag->md);
	EVP_MD_free(ag->sha256);
	free(ag);
}

size_t lgr_agent_counters(const struct lgr_agent *ag)
{
	return ag->ncounters;
}

size_t lgr_agent_default_tags(const struct lgr_agent *ag, const char *const **keys, const char *const **values)
{
	*keys = (const char *const *)ag->default_keys;
	*values = (const char *const *)ag->default_values;
	return ag->ndefaults;
}

/* --- tags ----------------------------------------------------------------------------------------------------- */

/* Rule 1: an empty source_id comes from the origin tag, preferred over the deprecated one. */
static int map_origin(struct lgr_env *env)
{
	char num[LGR_AGENT_DECIMAL_MAX];
	const Loggregator__V2__Value *dtag;
	const char *origin;

	if (str_or_empty(env->pb->source_id)[0] != '\0')
		return LGR_OK;
	origin = lgr_env_tag(env, "origin");
	if (origin == NULL) {
		/* The real receiver reads the deprecated origin with GetText(): a number there gives no source_id. */
		dtag = lgr_env_dtag(env, "origin");
		origin = dtag != NULL && dtag->data_case == LOGGREGATOR__V2__VALUE__DATA_TEXT ? value_text(dtag, num)
											      : "";
	}
	if (origin[0] == '\0')
		return LGR_OK;
	return lgr_env_set_source_id(env, origin);
}

/* Rule 2, as the real Tagger: every deprecated tag is assigned, over a tag of the same key; in wire order, so the
 * last of a repeated key is the one kept. */
static int copy_deprecated_tags(struct lgr_env *env)
{
	const Loggregator__V2__Envelope *pb = env->pb;
	char num[LGR_AGENT_DECIMAL_MAX];
	const char *key;
	size_t i;
	int rc = LGR_OK;

	for (i = 0; i < pb->n_deprecated_tags && rc == LGR_OK; i++) {
		key = str_or_empty(pb->deprecated_tags[i]->key);
		rc = lgr_env_set_tag(env, key, value_text(pb->deprecated_tags[i]->value, num));
	}
	return rc;
}

/* Rule 3. */
static int add_default_tags(const struct lgr_agent *ag, struct lgr_env *env)
{
	size_t i;
	int rc = LGR_OK;

	for (i = 0; i < ag->ndefaults && rc == LGR_OK; i++)
		if (lgr_env_tag(env, ag->default_keys[i]) == NULL)
			rc = lgr_env_set_tag(env, ag->default_keys[i], ag->default_values[i]);
	return rc;
}

/* --- counter totals ------------------------------------------------------------------------------------------- */

static int tag_ref_cmp(const void *a, const void *b)
{
	const struct tag_ref *x = a, *y = b;
	int c = strcmp(x->key, y->key);

	if (c != 0)
		return c;
	return x->pos < y->pos ? -1 : x->pos > y->pos;
}

static bool digest_part(EVP_MD_CTX *md, const char *s)
{
	unsigned char len[8];
	size_t n = strlen(s);
	int i;

	for (i = 0; i < 8; i++)
		len[i] = (unsigned char)((uint64_t)n >> (8 * i));
	return EVP_DigestUpdate(md, len, sizeof(len)) == 1 && EVP_DigestUpdate(md, s, n) == 1;
}

/* The identity of env's counter: (name, source_id, every distinct tag sorted by key). */
static int counter_digest(struct lgr_agent *ag, const struct lgr_env *env, unsigned char digest[DIGEST_LEN])
{
	const Loggregator__V2__Envelope *pb = env->pb;
	struct tag_ref *refs;
	unsigned int len = 0;
	size_t i, n = pb->n_tags;
	bool ok;

	if (n > ag->refs_cap) {
		refs = realloc(ag->refs, n * sizeof(*refs));
		if (refs == NULL)
			return LGR_ENOMEM;
		ag->refs = refs;
		ag->refs_cap = n;
	}
	for (i = 0; i < n; i++) {
		ag->refs[i].key = str_or_empty(pb->tags[i]->key);
		ag->refs[i].value = str_or_empty(pb->tags[i]->value);
		ag->refs[i].pos = i;
	}
	if (n > 1)
		qsort(ag->refs, n, sizeof(*ag->refs), tag_ref_cmp);
	ok = EVP_DigestInit_ex2(ag->md, ag->sha256, NULL) == 1 &&
	     EVP_DigestUpdate(ag->md, ag->seed, sizeof(ag->seed)) == 1 &&
	     digest_part(ag->md, str_or_empty(pb->counter->name)) && digest_part(ag->md, str_or_empty(pb->source_id));
	for (i = 0; i < n && ok; i++) {
		if (i + 1 < n && strcmp(ag->refs[i].key, ag->refs[i + 1].key) == 0)
			continue; /* a repeated key: the last one on the wire counts */
		ok = digest_part(ag->md, ag->refs[i].key) && digest_part(ag->md, ag->refs[i].value);
	}
	ok = ok && EVP_DigestFinal_ex(ag->md, digest, &len) == 1 && len == DIGEST_LEN;
	return ok ? LGR_OK : LGR_ENOMEM; /* OpenSSL fails only for want of memory here */
}

static size_t bucket_of(const struct lgr_agent *ag, const unsigned char digest[DIGEST_LEN])
{
	uint64_t h;

	memcpy(&h, digest, sizeof(h));
	return (size_t)h & (ag->nbuckets - 1);
}

static struct counter *table_find(const struct lgr_agent *ag, const unsigned char digest[DIGEST_LEN])
{
	struct counter *c;

	for (c = ag->buckets[bucket_of(ag, digest)]; c != NULL; c = c->chain)
		if (memcmp(c->digest, digest, DIGEST_LEN) == 0)
			return c;
	return NULL;
}

static void lru_unlink(struct lgr_agent *ag, struct counter *c)
{
	if (c->newer != NULL)
		c->newer->older = c->older;
	else
		ag->newest = c->older;
	if (c->older != NULL)
		c->older->newer = c->newer;
	else
		ag->oldest = c->newer;
	c->newer = c->older = NULL;
}

static void lru_push(struct lgr_agent *ag, struct counter *c)
{
	c->newer = NULL;
	c->older = ag->newest;
	if (ag->newest != NULL)
		ag->newest->newer = c;
	else
		ag->oldest = c;
	ag->newest = c;
}

static void chain_remove(struct lgr_agent *ag, struct counter *c)
{
	struct counter **p;

	for (p = &ag->buckets[bucket_of(ag, c->digest)]; *p != NULL; p = &(*p)->chain) {
		if (*p == c) {
			*p = c->chain;
			break;
		}
	}
	c->chain = NULL;
}

static void chain_insert(struct lgr_agent *ag, struct counter *c)
{
	struct counter **head = &ag->buckets[bucket_of(ag, c->digest)];

	c->chain = *head;
	*head = c;
}

/* Doubles the bucket array once it holds as many keys as buckets. Failing to grow only lengthens the chains. */
static void table_grow(struct lgr_agent *ag)
{
	struct counter **buckets;
	struct counter *c;

	if (ag->ncounters < ag->nbuckets || ag->nbuckets >= ag->max_buckets)
		return;
	buckets = calloc(ag->nbuckets * 2, sizeof(*buckets));
	if (buckets == NULL)
		return;
	free(ag->buckets);
	ag->buckets = buckets;
	ag->nbuckets *= 2;
	for (c = ag->newest; c != NULL; c = c->older)
		chain_insert(ag, c);
}

/* Rule 4. Everything that can fail happens before the envelope or the table changes. */
static int count(struct lgr_agent *ag, struct lgr_env *env)
{
	const Loggregator__V2__Counter *m = env->pb->counter;
	unsigned char digest[DIGEST_LEN];
	struct counter *c, *fresh = NULL;
	uint64_t total;
	int rc;

	rc = counter_digest(ag, env, digest);
	if (rc != LGR_OK)
		goto out;
	c = table_find(ag, digest);
	if (c == NULL && ag->ncounters < ag->max_counters) {
		fresh = calloc(1, sizeof(*fresh));
		if (fresh == NULL) {
			rc = LGR_ENOMEM;
			goto out;
		}
	}
	if (m->total == 0 && m->delta != 0)
		total = (c != NULL ? c->total : 0) + m->delta; /* wraps at 2^64 like the agent's uint64 */
	else
		total = m->total;
	if (total != m->total) {
		rc = lgr_env_set_counter(env, m->name, m->delta, total);
		m = NULL; /* replaced by the setter */
		if (rc != LGR_OK)
			goto out;
	}
	if (c != NULL) {
		lru_unlink(ag, c);
	} else {
		if (fresh == NULL) { /* full: the least recently used key makes room */
			c = ag->oldest;
			lru_unlink(ag, c);
			chain_remove(ag, c);
			ag->ncounters--;
		} else {
			c = fresh;
			fresh = NULL; /* ownership transferred to the table */
		}
		memcpy(c->digest, digest, DIGEST_LEN);
		ag->ncounters++;
		table_grow(ag);
		chain_insert(ag, c);
	}
	c->total = total;
	lru_push(ag, c);
out:
	free(fresh);
	return rc;
}

int lgr_agent_apply(struct lgr_agent *ag, struct lgr_env *env)
{
	int rc;

	rc = map_origin(env);
	if (rc != LGR_OK)
		goto out;
	rc = copy_deprecated_tags(env);
	if (rc != LGR_OK)
		goto out;
	rc = add_default_tags(ag, env);
	if (rc != LGR_OK)
		goto out;
	if (lgr_env_type(env) == LGR_ENV_COUNTER && env->pb->counter != NULL)
		rc = count(ag, env);
out:
	return rc;
}
