/*
 * lgr_select.c: the subscription registry and envelope matcher (contract in lgr_select.h).
 *
 * Every distinct filter path (source, type, name level) is one node in a single chained hash table; the shard
 * groups of that path hang off the node, and the subscriptions are the members of a group. An envelope can only
 * match four paths: {any source, its source} x {any name, its counter name or gauge name set}, so matching is at
 * most four lookups however many subscriptions exist. Nodes and groups are freed with their last member, so the
 * table does not grow with subscription churn.
 *
 * The name hash of a path is the value the real router shards by (crc64 of the counter name, sum of crc64 of the
 * gauge names), so one computation per envelope serves both the lookup and deterministic routing.
 */
#define _GNU_SOURCE /* PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP */
#include "lgr_select.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "lgr_crc64.h"

#define INITIAL_BUCKETS 64 /* a power of two */
#define BITS_PER_WORD	64

struct group;
struct node;

struct lgr_select_sub {
	void *subscriber;
	char *dname; /* "" when unset */
	struct group *group;
};

struct group {
	struct group *next;
	struct node *node;
	char *shard_id;			 /* "": not sharded, every member gets a copy */
	struct lgr_select_sub **members; /* ordered by dname, insertion order among equals */
	size_t n;
	size_t cap;
	size_t n_named; /* members with a deterministic name: the group routes by hash when > 0 */
};

struct node {
	struct node *next; /* hash chain */
	uint64_t hash;
	char *source_id; /* NULL: any source */
	enum lgr_env_type type;
	bool any_name; /* counters and gauges: no name level; always true for other types */
	char *counter_name;
	char **gauge_names; /* sorted, distinct */
	size_t n_gauge_names;
	uint64_t name_hash;
	struct group *groups;
};

struct lgr_select {
	pthread_rwlock_t lock;
	struct node **buckets;
	size_t n_buckets;
	size_t n_nodes;
	size_t n_subs;
};

/* What a lookup compares nodes against: from a selector (gauge names sorted) or from an envelope (metrics). */
struct probe {
	const char *source_id; /* NULL: any */
	uint64_t source_hash;
	enum lgr_env_type type;
	bool any_name;
	const char *counter_name;
	const char *const *names; /* selector: sorted, distinct */
	size_t n_names;
	const char *const *metrics; /* envelope: gauge names as sent (NULL entries read as "") */
	size_t n_metrics;
	uint64_t name_hash;
};

/* --- helpers ------------------------------------------------------------------------------------------------ */

static uint64_t mix64(uint64_t h)
{
	h ^= h >> 33;
	h *= UINT64_C(0xff51afd7ed558ccd);
	h ^= h >> 33;
	h *= UINT64_C(0xc4ceb9fe1a85ec53);
	h ^= h >> 33;
	return h;
}

static uint64_t probe_hash(const struct probe *p)
{
	uint64_t level = ((uint64_t)p->type << 1) | (p->any_name ? 1 : 0);
	uint64_t name = p->any_name ? 0 : p->name_hash; /* a probe carries the envelope's name even at "any" */

	return mix64(p->source_hash ^ mix64(name + level));
}

static const char *str_or_empty(const char *s)
{
	return s != NULL ? s : "";
}

/* Per-thread xorshift64*: several threads may match at once, and rand() would serialise them. */
static _Thread_local uint64_t rng_state;

static uint64_t rng_next(void)
{
	uint64_t x = rng_state;

	if (x == 0) {
		struct timespec ts;

		if (getrandom(&x, sizeof(x), GRND_NONBLOCK) != (ssize_t)sizeof(x) || x == 0) {
			clock_gettime(CLOCK_MONOTONIC, &ts);
			x = mix64((uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)(uintptr_t)&rng_state);
		}
		if (x == 0)
			x = UINT64_C(0x9E3779B97F4A7C15);
	}
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	rng_state = x;
	return x * UINT64_C(0x2545F4914F6CDD1D);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The envelope's metric names are exactly the node's set: same count, each found, none found twice. */
static bool gauge_set_equals(const struct node *n, const char *const *metrics, size_t nm)
{
	uint64_t seen[LGR_SELECT_MAX_GAUGE_NAMES / BITS_PER_WORD] = {0};

	if (nm != n->n_gauge_names)
		return false;
	for (size_t i = 0; i < nm; i++) {
		const char *key = str_or_empty(metrics[i]);
		char **hit = bsearch(&key, n->gauge_names, n->n_gauge_names, sizeof(char *), cmp_str);
		size_t idx;

		if (hit == NULL)
			return false;
		idx = (size_t)(hit - n->gauge_names);
		if (seen[idx / BITS_PER_WORD] & (UINT64_C(1) << (idx % BITS_PER_WORD)))
			return false;
		seen[idx / BITS_PER_WORD] |= UINT64_C(1) << (idx % BITS_PER_WORD);
	}
	return true;
}

static bool node_matches(const struct node *n, uint64_t hash, const struct probe *p)
{
	if (n->hash != hash || n->type != p->type || n->any_name != p->any_name)
		return false;
	if ((n->source_id == NULL) != (p->source_id == NULL))
		return false;
	if (n->source_id != NULL && strcmp(n->source_id, p->source_id) != 0)
		return false;
	if (n->any_name)
		return true;
	if (n->type == LGR_ENV_COUNTER)
		return strcmp(n->counter_name, p->counter_name) == 0;
	if (n->name_hash != p->name_hash)
		return false;
	if (p->metrics != NULL)
		return gauge_set_equals(n, p->metrics, p->n_metrics);
	if (p->n_names != n->n_gauge_names)
		return false;
	for (size_t i = 0; i < p->n_names; i++)
		if (strcmp(p->names[i], n->gauge_names[i]) != 0)
			return false;
	return true;
}

static struct node *lookup(const struct lgr_select *reg, const struct probe *p)
{
	uint64_t hash = probe_hash(p);

	for (struct node *n = reg->buckets[hash & (reg->n_buckets - 1)]; n != NULL; n = n->next)
		if (node_matches(n, hash, p))
			return n;
	return NULL;
}

/* --- registry ----------------------------------------------------------------------------------------------- */

int lgr_select_new(struct lgr_select **out)
{
	struct lgr_select *reg = NULL;
	pthread_rwlockattr_t attr;
	int rc;

	*out = NULL;
	reg = calloc(1, sizeof(*reg));
	if (reg == NULL) {
		rc = LGR_ENOMEM;
		goto out;
	}
	reg->buckets = calloc(INITIAL_BUCKETS, sizeof(*reg->buckets));
	if (reg->buckets == NULL) {
		rc = LGR_ENOMEM;
		goto out;
	}
	reg->n_buckets = INITIAL_BUCKETS;
	pthread_rwlockattr_init(&attr);
#ifdef PTHREAD_RWLOCK_WRITER_NONRECURSIVE_INITIALIZER_NP
	/* glibc prefers readers by default: a busy egress would never let a subscriber in or out. */
	pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
#endif
	pthread_rwlock_init(&reg->lock, &attr);
	pthread_rwlockattr_destroy(&attr);
	*out = reg;
	reg = NULL; /* ownership transferred */
	rc = LGR_OK;
out:
	if (reg != NULL) {
		free(reg->buckets);
		free(reg);
	}
	return rc;
}

static void sub_free(struct lgr_select_sub *sub)
{
	free(sub->dname);
	free(sub);
}

static void group_free(struct group *g)
{
	for (size_t i = 0; i < g->n; i++)
		sub_free(g->members[i]);
	free(g->members);
	free(g->shard_id);
	free(g);
}

static void node_free(struct node *n)
{
	while (n->groups != NULL) {
		struct group *g = n->groups;

		n->groups = g->next;
		group_free(g);
	}
	for (size_t i = 0; i < n->n_gauge_names; i++)
		free(n->gauge_names[i]);
	free(n->gauge_names);
	free(n->counter_name);
	free(n->source_id);
	free(n);
}

void lgr_select_free(struct lgr_select *reg)
{
	if (reg == NULL)
		return;
	for (size_t b = 0; b < reg->n_buckets; b++) {
		while (reg->buckets[b] != NULL) {
			struct node *n = reg->buckets[b];

			reg->buckets[b] = n->next;
			node_free(n);
		}
	}
	pthread_rwlock_destroy(&reg->lock);
	free(reg->buckets);
	free(reg);
}

size_t lgr_select_count(struct lgr_select *reg)
{
	size_t n;

	pthread_rwlock_rdlock(&reg->lock);
	n = reg->n_subs;
	pthread_rwlock_unlock(&reg->lock);
	return n;
}

/* Doubles the table when it is as full as it has buckets; a failed resize leaves longer chains, not an error. */
static void maybe_grow(struct lgr_select *reg)
{
	size_t nb = reg->n_buckets * 2;
	struct node **nbk;

	if (reg->n_nodes < reg->n_buckets || nb > SIZE_MAX / sizeof(*nbk))
		return;
	nbk = calloc(nb, sizeof(*nbk));
	if (nbk == NULL)
		return;
	for (size_t b = 0; b < reg->n_buckets; b++) {
		while (reg->buckets[b] != NULL) {
			struct node *n = reg->buckets[b];

			reg->buckets[b] = n->next;
			n->next = nbk[n->hash & (nb - 1)];
			nbk[n->hash & (nb - 1)] = n;
		}
	}
	free(reg->buckets);
	reg->buckets = nbk;
	reg->n_buckets = nb;
}

/* A node for the probe's path, strings copied; NULL when out of memory. */
static struct node *node_new(const struct probe *p, uint64_t hash)
{
	struct node *n = calloc(1, sizeof(*n));
	bool ok = n != NULL;

	if (!ok)
		goto out;
	n->hash = hash;
	n->type = p->type;
	n->any_name = p->any_name;
	n->name_hash = p->name_hash;
	if (p->source_id != NULL)
		ok = (n->source_id = strdup(p->source_id)) != NULL;
	if (ok && !p->any_name && p->type == LGR_ENV_COUNTER)
		ok = (n->counter_name = strdup(p->counter_name)) != NULL;
	if (ok && !p->any_name && p->type == LGR_ENV_GAUGE) {
		n->gauge_names = calloc(p->n_names, sizeof(*n->gauge_names));
		ok = n->gauge_names != NULL;
		for (size_t i = 0; ok && i < p->n_names; i++) {
			n->gauge_names[i] = strdup(p->names[i]);
			ok = n->gauge_names[i] != NULL;
			n->n_gauge_names = i + 1; /* so node_free frees what was copied */
		}
	}
out:
	if (!ok && n != NULL) {
		node_free(n);
		n = NULL;
	}
	return n;
}

static void node_unlink(struct lgr_select *reg, struct node *n)
{
	struct node **pp = &reg->buckets[n->hash & (reg->n_buckets - 1)];

	while (*pp != n)
		pp = &(*pp)->next;
	*pp = n->next;
	reg->n_nodes--;
}

static int group_insert(struct group *g, struct lgr_select_sub *sub)
{
	size_t pos;

	if (g->n == g->cap) {
		size_t ncap = g->cap != 0 ? g->cap * 2 : 4;
		struct lgr_select_sub **m = realloc(g->members, ncap * sizeof(*m));

		if (m == NULL)
			return LGR_ENOMEM;
		g->members = m;
		g->cap = ncap;
	}
	/* After every member with a name <= ours: deterministic order, stable for equal names. */
	pos = g->n;
	while (pos > 0 && strcmp(g->members[pos - 1]->dname, sub->dname) > 0)
		pos--;
	memmove(g->members + pos + 1, g->members + pos, (g->n - pos) * sizeof(*g->members));
	g->members[pos] = sub;
	g->n++;
	if (sub->dname[0] != '\0')
		g->n_named++;
	sub->group = g;
	return LGR_OK;
}

static void remove_locked(struct lgr_select *reg, struct lgr_select_sub *sub)
{
	struct group *g = sub->group;
	struct node *n = g->node;
	size_t i = 0;

	while (i < g->n && g->members[i] != sub)
		i++;
	if (i < g->n) {
		memmove(g->members + i, g->members + i + 1, (g->n - i - 1) * sizeof(*g->members));
		g->n--;
		if (sub->dname[0] != '\0')
			g->n_named--;
		reg->n_subs--;
	}
	sub_free(sub);
	if (g->n == 0) {
		struct group **pp = &n->groups;

		while (*pp != g)
			pp = &(*pp)->next;
		*pp = g->next;
		group_free(g);
	}
	if (n->groups == NULL) {
		node_unlink(reg, n);
		node_free(n);
	}
}

/* Fills p from sel; *sorted receives a malloc'd sorted copy of the gauge name pointers (free it). */
static int probe_from_selector(const struct lgr_selector *sel, struct probe *p, const char ***sorted)
{
	const char **names = NULL;
	size_t n = 0;
	int rc;

	memset(p, 0, sizeof(*p));
	*sorted = NULL;
	if (sel == NULL || sel->type < LGR_ENV_LOG || sel->type > LGR_ENV_EVENT) {
		rc = LGR_EINVAL;
		goto out;
	}
	p->type = sel->type;
	p->any_name = true;
	if (sel->source_id != NULL && sel->source_id[0] != '\0') {
		p->source_id = sel->source_id;
		p->source_hash = lgr_crc64_str(sel->source_id);
	}
	if (sel->type == LGR_ENV_COUNTER && sel->counter_name != NULL && sel->counter_name[0] != '\0') {
		p->any_name = false;
		p->counter_name = sel->counter_name;
		p->name_hash = lgr_crc64_str(sel->counter_name);
	}
	if (sel->type == LGR_ENV_GAUGE && sel->n_gauge_names > 0) {
		if (sel->n_gauge_names > LGR_SELECT_MAX_GAUGE_NAMES) {
			rc = LGR_ELIMIT;
			goto out;
		}
		if (sel->gauge_names == NULL) {
			rc = LGR_EINVAL;
			goto out;
		}
		names = malloc(sel->n_gauge_names * sizeof(*names));
		if (names == NULL) {
			rc = LGR_ENOMEM;
			goto out;
		}
		for (size_t i = 0; i < sel->n_gauge_names; i++) {
			if (sel->gauge_names[i] == NULL) {
				rc = LGR_EINVAL;
				goto out;
			}
			names[i] = sel->gauge_names[i];
		}
		qsort(names, sel->n_gauge_names, sizeof(*names), cmp_str);
		for (size_t i = 0; i < sel->n_gauge_names; i++) {
			if (n > 0 && strcmp(names[n - 1], names[i]) == 0)
				continue; /* a set: a repeated name counts once */
			names[n++] = names[i];
			p->name_hash += lgr_crc64_str(names[i]);
		}
		p->any_name = false;
		p->names = names;
		p->n_names = n;
	}
	*sorted = names;
	names = NULL; /* ownership transferred */
	rc = LGR_OK;
out:
	free(names);
	return rc;
}

static int add_locked(struct lgr_select *reg, void *subscriber, const struct lgr_selector *sel, const char *shard_id,
	const char *dname, struct lgr_select_sub **out)
{
	const char **sorted = NULL;
	struct lgr_select_sub *sub = NULL;
	struct group *g = NULL;
	struct node *n = NULL;
	bool new_node = false;
	bool new_group = false;
	struct probe p;
	int rc;

	*out = NULL;
	shard_id = str_or_empty(shard_id);
	rc = probe_from_selector(sel, &p, &sorted);
	if (rc != LGR_OK)
		goto out;
	sub = calloc(1, sizeof(*sub));
	if (sub == NULL || (sub->dname = strdup(str_or_empty(dname))) == NULL) {
		rc = LGR_ENOMEM;
		goto out;
	}
	sub->subscriber = subscriber;
	n = lookup(reg, &p);
	if (n == NULL) {
		uint64_t hash = probe_hash(&p);

		n = node_new(&p, hash);
		if (n == NULL) {
			rc = LGR_ENOMEM;
			goto out;
		}
		new_node = true;
	}
	for (g = n->groups; g != NULL; g = g->next)
		if (strcmp(g->shard_id, shard_id) == 0)
			break;
	if (g == NULL) {
		g = calloc(1, sizeof(*g));
		new_group = g != NULL;
		if (g == NULL || (g->shard_id = strdup(shard_id)) == NULL) {
			rc = LGR_ENOMEM;
			goto out;
		}
		g->node = n;
	}
	rc = group_insert(g, sub);
	if (rc != LGR_OK)
		goto out;
	if (new_group) {
		g->next = n->groups;
		n->groups = g;
	}
	if (new_node) {
		size_t b = n->hash & (reg->n_buckets - 1);

		n->next = reg->buckets[b];
		reg->buckets[b] = n;
		reg->n_nodes++;
		maybe_grow(reg);
	}
	reg->n_subs++;
	*out = sub;
	sub = NULL; /* ownership transferred */
	rc = LGR_OK;
out:
	if (rc != LGR_OK) {
		if (new_group) {
			free(g->shard_id);
			free(g->members);
			free(g);
		}
		if (new_node)
			node_free(n);
		if (sub != NULL)
			sub_free(sub);
	}
	free(sorted);
	return rc;
}

int lgr_select_add(struct lgr_select *reg, void *subscriber, const struct lgr_selector *sel, const char *shard_id,
	const char *deterministic_name, struct lgr_select_sub **out)
{
	int rc;

	pthread_rwlock_wrlock(&reg->lock);
	rc = add_locked(reg, subscriber, sel, shard_id, deterministic_name, out);
	pthread_rwlock_unlock(&reg->lock);
	return rc;
}

int lgr_select_add_req(
	struct lgr_select *reg, void *subscriber, const struct lgr_select_req *req, struct lgr_select_sub **subs)
{
	size_t i;
	int rc = LGR_OK;

	pthread_rwlock_wrlock(&reg->lock);
	for (i = 0; i < req->n_selectors; i++) {
		rc = add_locked(reg, subscriber, &req->selectors[i], req->shard_id, req->deterministic_name, &subs[i]);
		if (rc != LGR_OK)
			break;
	}
	if (rc != LGR_OK)
		while (i-- > 0) {
			remove_locked(reg, subs[i]);
			subs[i] = NULL;
		}
	pthread_rwlock_unlock(&reg->lock);
	return rc;
}

void lgr_select_remove(struct lgr_select *reg, struct lgr_select_sub *sub)
{
	if (sub == NULL)
		return;
	pthread_rwlock_wrlock(&reg->lock);
	remove_locked(reg, sub);
	pthread_rwlock_unlock(&reg->lock);
}

/* --- matching ----------------------------------------------------------------------------------------------- */

static size_t deliver(const struct node *n, bool hashed, uint64_t hash, lgr_select_fn *fn, void *ud)
{
	size_t count = 0;

	for (const struct group *g = n->groups; g != NULL; g = g->next) {
		size_t idx;

		if (g->shard_id[0] == '\0') {
			for (size_t i = 0; i < g->n; i++)
				fn(g->members[i]->subscriber, ud);
			count += g->n;
			continue;
		}
		/* Modulo bias is below n / 2^64: irrelevant for any real group size. */
		if (g->n_named > 0 && hashed)
			idx = (size_t)(hash % g->n);
		else
			idx = (size_t)(rng_next() % g->n);
		fn(g->members[idx]->subscriber, ud);
		count++;
	}
	return count;
}

size_t lgr_select_match_key(struct lgr_select *reg, const struct lgr_select_key *key, lgr_select_fn *fn, void *ud)
{
	const char *source = str_or_empty(key->source_id);
	struct probe p = {0};
	bool named = false; /* the envelope has a name level to look up */
	size_t count = 0;

	p.type = key->type;
	if (p.type == LGR_ENV_NONE)
		return 0;
	if (p.type == LGR_ENV_COUNTER) {
		p.counter_name = str_or_empty(key->counter_name);
		p.name_hash = lgr_crc64_str(p.counter_name);
		named = true;
	}
	if (p.type == LGR_ENV_GAUGE) {
		/* The sum is over the envelope's names as sent; a repeated key (not valid protobuf map content) thus
		 * changes the sum and the count, and such an envelope matches no named set. */
		p.metrics = key->gauge_names;
		p.n_metrics = key->n_gauge_names;
		for (size_t i = 0; i < p.n_metrics; i++)
			p.name_hash += lgr_crc64_str(str_or_empty(p.metrics[i]));
		/* No named set is empty, and none is larger than the bound. */
		named = p.n_metrics > 0 && p.n_metrics <= LGR_SELECT_MAX_GAUGE_NAMES;
	}

	pthread_rwlock_rdlock(&reg->lock);
	for (int pass = 0; pass < 2 && reg->n_subs > 0; pass++) {
		const struct node *n;

		if (pass == 1) {
			if (source[0] == '\0')
				break;
			p.source_id = source;
			p.source_hash = lgr_crc64_str(source);
		}
		p.any_name = true;
		n = lookup(reg, &p);
		if (n != NULL)
			count += deliver(n, p.type == LGR_ENV_COUNTER || p.type == LGR_ENV_GAUGE, p.name_hash, fn, ud);
		if (named) {
			p.any_name = false;
			n = lookup(reg, &p);
			if (n != NULL)
				count += deliver(n, true, p.name_hash, fn, ud);
		}
	}
	pthread_rwlock_unlock(&reg->lock);
	return count;
}

#define KEY_NAMES_STACK 64

size_t lgr_select_match(struct lgr_select *reg, const struct lgr_env *env, lgr_select_fn *fn, void *ud)
{
	const Loggregator__V2__Envelope *pb = env->pb;
	const char *stack[KEY_NAMES_STACK];
	const char **names = stack;
	struct lgr_select_key key = {0};
	size_t count;

	key.type = lgr_env_type(env);
	key.source_id = pb->source_id;
	if (key.type == LGR_ENV_COUNTER && pb->counter != NULL)
		key.counter_name = pb->counter->name;
	if (key.type == LGR_ENV_GAUGE && pb->gauge != NULL) {
		key.n_gauge_names = pb->gauge->n_metrics;
		if (key.n_gauge_names > KEY_NAMES_STACK) {
			names = malloc(key.n_gauge_names * sizeof(*names));
			if (names == NULL)
				return 0;
		}
		for (size_t i = 0; i < key.n_gauge_names; i++)
			names[i] = pb->gauge->metrics[i] != NULL ? pb->gauge->metrics[i]->key : NULL;
		key.gauge_names = names;
	}
	count = lgr_select_match_key(reg, &key, fn, ud);
	if (names != stack)
		free(names);
	return count;
}

/* --- request parsing ---------------------------------------------------------------------------------------- */

static int parse_fields(const char *shard_id, const char *dname, bool use_preferred_tags, size_t n_sel,
	Loggregator__V2__Selector *const *sels, Loggregator__V2__Selector *legacy, struct lgr_select_req *out,
	const char **errmsg)
{
	struct lgr_selector *arr = NULL;
	const char *msg = NULL;
	int rc;

	memset(out, 0, sizeof(*out));
	if (n_sel == 0 && legacy != NULL) {
		sels = &legacy;
		n_sel = 1;
	}
	if (n_sel == 0) {
		msg = "Selectors cannot be empty";
		rc = LGR_EINVAL;
		goto out;
	}
	if (n_sel > LGR_SELECT_MAX_SELECTORS) {
		msg = "too many selectors";
		rc = LGR_ELIMIT;
		goto out;
	}
	arr = calloc(n_sel, sizeof(*arr));
	if (arr == NULL) {
		msg = "out of memory";
		rc = LGR_ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n_sel; i++) {
		const Loggregator__V2__Selector *s = sels[i];
		struct lgr_selector *d = &arr[i];

		if (s == NULL || s->message_case == LOGGREGATOR__V2__SELECTOR__MESSAGE__NOT_SET) {
			msg = "Selectors must have a Message";
			rc = LGR_EINVAL;
			goto out;
		}
		d->source_id = str_or_empty(s->source_id);
		switch (s->message_case) {
		case LOGGREGATOR__V2__SELECTOR__MESSAGE_LOG: d->type = LGR_ENV_LOG; break;
		case LOGGREGATOR__V2__SELECTOR__MESSAGE_TIMER: d->type = LGR_ENV_TIMER; break;
		case LOGGREGATOR__V2__SELECTOR__MESSAGE_EVENT: d->type = LGR_ENV_EVENT; break;
		case LOGGREGATOR__V2__SELECTOR__MESSAGE_COUNTER:
			d->type = LGR_ENV_COUNTER;
			d->counter_name = s->counter != NULL ? str_or_empty(s->counter->name) : "";
			break;
		case LOGGREGATOR__V2__SELECTOR__MESSAGE_GAUGE:
			d->type = LGR_ENV_GAUGE;
			if (s->gauge != NULL && s->gauge->n_names > LGR_SELECT_MAX_GAUGE_NAMES) {
				msg = "too many gauge names in a selector";
				rc = LGR_ELIMIT;
				goto out;
			}
			if (s->gauge != NULL) {
				d->gauge_names = (const char *const *)s->gauge->names;
				d->n_gauge_names = s->gauge->n_names;
			}
			break;
		default:
			msg = "Selectors must have a Message";
			rc = LGR_EINVAL;
			goto out;
		}
	}
	out->shard_id = str_or_empty(shard_id);
	out->deterministic_name = str_or_empty(dname);
	out->use_preferred_tags = use_preferred_tags;
	out->n_selectors = n_sel;
	out->selectors = arr;
	arr = NULL; /* ownership transferred */
	rc = LGR_OK;
out:
	free(arr);
	if (errmsg != NULL)
		*errmsg = msg;
	return rc;
}

int lgr_select_req_parse(
	const Loggregator__V2__EgressBatchRequest *msg, struct lgr_select_req *out, const char **errmsg)
{
	return parse_fields(msg->shard_id, msg->deterministic_name, msg->use_preferred_tags, msg->n_selectors,
		msg->selectors, msg->legacy_selector, out, errmsg);
}

int lgr_select_req_parse_single(
	const Loggregator__V2__EgressRequest *msg, struct lgr_select_req *out, const char **errmsg)
{
	return parse_fields(msg->shard_id, msg->deterministic_name, msg->use_preferred_tags, msg->n_selectors,
		msg->selectors, msg->legacy_selector, out, errmsg);
}

void lgr_select_req_cleanup(struct lgr_select_req *req)
{
	if (req == NULL)
		return;
	free(req->selectors);
	memset(req, 0, sizeof(*req));
}

/* ---- requests, the subscriber's side --------------------------------------------------------------------------- */

#define NTYPES 5 /* LGR_ENV_LOG .. LGR_ENV_EVENT */

/* Makes s a selector of type t; the type's sub-message is empty and shared (the packer only reads it). */
static void selector_type(Loggregator__V2__Selector *s, enum lgr_env_type t)
{
	static Loggregator__V2__LogSelector log = LOGGREGATOR__V2__LOG_SELECTOR__INIT;
	static Loggregator__V2__CounterSelector counter = LOGGREGATOR__V2__COUNTER_SELECTOR__INIT;
	static Loggregator__V2__GaugeSelector gauge = LOGGREGATOR__V2__GAUGE_SELECTOR__INIT;
	static Loggregator__V2__TimerSelector timer = LOGGREGATOR__V2__TIMER_SELECTOR__INIT;
	static Loggregator__V2__EventSelector event = LOGGREGATOR__V2__EVENT_SELECTOR__INIT;

	switch (t) {
	case LGR_ENV_LOG:
		s->message_case = LOGGREGATOR__V2__SELECTOR__MESSAGE_LOG;
		s->log = &log;
		break;
	case LGR_ENV_COUNTER:
		s->message_case = LOGGREGATOR__V2__SELECTOR__MESSAGE_COUNTER;
		s->counter = &counter;
		break;
	case LGR_ENV_GAUGE:
		s->message_case = LOGGREGATOR__V2__SELECTOR__MESSAGE_GAUGE;
		s->gauge = &gauge;
		break;
	case LGR_ENV_TIMER:
		s->message_case = LOGGREGATOR__V2__SELECTOR__MESSAGE_TIMER;
		s->timer = &timer;
		break;
	default:
		s->message_case = LOGGREGATOR__V2__SELECTOR__MESSAGE_EVENT;
		s->event = &event;
		break;
	}
}

/* Whether source id i repeats an earlier one. */
static bool repeated(const char *const *ids, size_t i)
{
	for (size_t j = 0; j < i; j++) {
		if (strcmp(ids[j], ids[i]) == 0)
			return true;
	}
	return false;
}

int lgr_select_req_pack(const struct lgr_select_ask *ask, uint8_t **out, size_t *out_len)
{
	static const char *const any[] = {""};
	Loggregator__V2__EgressBatchRequest req = LOGGREGATOR__V2__EGRESS_BATCH_REQUEST__INIT;
	Loggregator__V2__Selector *sels = NULL, **ptrs = NULL;
	const char *const *ids = ask->nsource_ids > 0 ? ask->source_ids : any;
	size_t nids = ask->nsource_ids > 0 ? ask->nsource_ids : 1, n = 0;
	unsigned types = ask->types != 0 ? ask->types : ((1u << NTYPES) - 1) << LGR_ENV_LOG;
	int rc = LGR_ENOMEM;

	*out = NULL;
	*out_len = 0;
	sels = calloc(nids * NTYPES, sizeof(*sels));
	ptrs = calloc(nids * NTYPES, sizeof(*ptrs));
	if (sels == NULL || ptrs == NULL)
		goto out;
	for (size_t i = 0; i < nids; i++) {
		if (repeated(ids, i))
			continue;
		for (unsigned t = LGR_ENV_LOG; t < LGR_ENV_LOG + NTYPES; t++) {
			if ((types & (1u << t)) == 0)
				continue;
			loggregator__v2__selector__init(&sels[n]);
			sels[n].source_id = (char *)ids[i];
			selector_type(&sels[n], (enum lgr_env_type)t);
			ptrs[n] = &sels[n];
			n++;
		}
	}
	req.shard_id = (char *)(ask->shard_id != NULL ? ask->shard_id : "");
	req.deterministic_name = (char *)(ask->deterministic_name != NULL ? ask->deterministic_name : "");
	req.use_preferred_tags = ask->use_preferred_tags;
	req.selectors = ptrs;
	req.n_selectors = n;
	*out_len = loggregator__v2__egress_batch_request__get_packed_size(&req);
	*out = malloc(*out_len > 0 ? *out_len : 1);
	if (*out == NULL)
		goto out;
	loggregator__v2__egress_batch_request__pack(&req, *out);
	rc = LGR_OK;
out:
	free(sels);
	free(ptrs);
	return rc;
}
