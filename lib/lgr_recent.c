/*
 * lgr_recent.c: the recent-envelope store (see lgr_recent.h): a chained hash table of source ids, each with a
 * fixed ring of envelope references, and a list of the source ids ordered by their last write for eviction.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "lgr_recent.h"

struct source {
	struct source *next_hash;     /* chain of its bucket */
	struct source *newer, *older; /* write order: the store's newest .. oldest */
	uint64_t hash;
	size_t head;	       /* slot of the next write */
	size_t count;	       /* references held, <= size */
	struct lgr_env **ring; /* size slots */
	char id[];	       /* NUL-terminated source id */
};

struct lgr_recent {
	pthread_mutex_t lock;
	size_t size;
	size_t max_sources;
	size_t n_buckets; /* a power of two */
	struct source **buckets;
	struct source *newest, *oldest;
	size_t n_sources;
	size_t n_envelopes;
	uint64_t written;
	uint64_t evictions;
};

/* FNV-1a, 64 bits. */
static uint64_t hash_id(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (; *s != '\0'; s++) {
		h ^= (unsigned char)*s;
		h *= 0x100000001b3ull;
	}
	return h;
}

int lgr_recent_new(size_t size, size_t max_sources, struct lgr_recent **out)
{
	struct lgr_recent *r = NULL;
	size_t nb = 16;
	int rc = LGR_EINVAL;

	if (out == NULL)
		return LGR_EINVAL;
	*out = NULL;
	if (size == 0 || size > LGR_RECENT_MAX_SIZE || max_sources == 0 || max_sources > LGR_RECENT_MAX_SOURCES)
		goto out;
	rc = LGR_ENOMEM;
	r = calloc(1, sizeof(*r));
	if (r == NULL)
		goto out;
	while (nb < max_sources && nb < (1u << 20))
		nb <<= 1;
	r->buckets = calloc(nb, sizeof(*r->buckets));
	if (r->buckets == NULL)
		goto out;
	if (pthread_mutex_init(&r->lock, NULL) != 0)
		goto out;
	r->n_buckets = nb;
	r->size = size;
	r->max_sources = max_sources;
	*out = r;
	r = NULL; /* ownership transferred */
	rc = LGR_OK;
out:
	if (r != NULL) {
		free(r->buckets);
		free(r);
	}
	return rc;
}

static void source_free(struct source *s, size_t size)
{
	size_t i;

	if (s == NULL)
		return;
	for (i = 0; i < size; i++)
		lgr_env_unref(s->ring[i]);
	free(s->ring);
	free(s);
}

void lgr_recent_free(struct lgr_recent *r)
{
	struct source *s, *next;

	if (r == NULL)
		return;
	for (s = r->newest; s != NULL; s = next) {
		next = s->older;
		source_free(s, r->size);
	}
	pthread_mutex_destroy(&r->lock);
	free(r->buckets);
	free(r);
}

/* Caller holds the lock. */
static struct source *lookup(struct lgr_recent *r, const char *id, uint64_t h)
{
	struct source *s;

	for (s = r->buckets[h & (r->n_buckets - 1)]; s != NULL; s = s->next_hash)
		if (s->hash == h && strcmp(s->id, id) == 0)
			return s;
	return NULL;
}

/* Caller holds the lock. */
static void list_unlink(struct lgr_recent *r, struct source *s)
{
	if (s->newer != NULL)
		s->newer->older = s->older;
	else
		r->newest = s->older;
	if (s->older != NULL)
		s->older->newer = s->newer;
	else
		r->oldest = s->newer;
	s->newer = s->older = NULL;
}

/* Caller holds the lock. */
static void list_push_newest(struct lgr_recent *r, struct source *s)
{
	s->older = r->newest;
	s->newer = NULL;
	if (r->newest != NULL)
		r->newest->newer = s;
	r->newest = s;
	if (r->oldest == NULL)
		r->oldest = s;
}

/* Removes the least recently written source from the table and the list; the caller frees it unlocked. */
static struct source *evict_oldest(struct lgr_recent *r)
{
	struct source *victim = r->oldest, **pp;

	for (pp = &r->buckets[victim->hash & (r->n_buckets - 1)]; *pp != victim; pp = &(*pp)->next_hash)
		;
	*pp = victim->next_hash;
	list_unlink(r, victim);
	r->n_sources--;
	r->n_envelopes -= victim->count;
	r->evictions++;
	return victim;
}

/* Caller holds the lock; s is in the table. Returns the reference pushed out, to release after unlocking. */
static struct lgr_env *push(struct lgr_recent *r, struct source *s, struct lgr_env *env)
{
	struct lgr_env *old = s->ring[s->head];

	s->ring[s->head] = lgr_env_ref(env);
	s->head = s->head + 1 == r->size ? 0 : s->head + 1;
	if (old == NULL) {
		s->count++;
		r->n_envelopes++;
	}
	r->written++;
	if (r->newest != s) {
		list_unlink(r, s);
		list_push_newest(r, s);
	}
	return old;
}

int lgr_recent_add(struct lgr_recent *r, struct lgr_env *env)
{
	const char *id;
	struct source *s, *fresh = NULL, *victim = NULL;
	struct lgr_env *old;
	uint64_t h;
	size_t len;

	if (r == NULL || env == NULL)
		return LGR_EINVAL;
	id = env->pb->source_id != NULL ? env->pb->source_id : "";
	h = hash_id(id);

	pthread_mutex_lock(&r->lock);
	s = lookup(r, id, h);
	if (s != NULL) {
		old = push(r, s, env);
		pthread_mutex_unlock(&r->lock);
		lgr_env_unref(old);
		return LGR_OK;
	}
	pthread_mutex_unlock(&r->lock);

	/* A new source id: allocate unlocked, then insert unless another writer was quicker. */
	len = strlen(id);
	fresh = calloc(1, sizeof(*fresh) + len + 1);
	if (fresh == NULL)
		return LGR_ENOMEM;
	fresh->ring = calloc(r->size, sizeof(*fresh->ring));
	if (fresh->ring == NULL) {
		free(fresh);
		return LGR_ENOMEM;
	}
	memcpy(fresh->id, id, len + 1);
	fresh->hash = h;

	pthread_mutex_lock(&r->lock);
	s = lookup(r, id, h);
	if (s == NULL) {
		if (r->n_sources == r->max_sources)
			victim = evict_oldest(r);
		s = fresh;
		fresh = NULL; /* ownership transferred to the table */
		s->next_hash = r->buckets[h & (r->n_buckets - 1)];
		r->buckets[h & (r->n_buckets - 1)] = s;
		list_push_newest(r, s);
		r->n_sources++;
	}
	old = push(r, s, env);
	pthread_mutex_unlock(&r->lock);

	lgr_env_unref(old);
	source_free(victim, r->size);
	source_free(fresh, r->size);
	return LGR_OK;
}

struct hit {
	struct lgr_env *env;
	int64_t ts;
	size_t seq; /* arrival order within the ring */
};

static int hit_cmp(const void *a, const void *b)
{
	const struct hit *x = a, *y = b;

	if (x->ts != y->ts)
		return x->ts < y->ts ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static bool type_selected(const struct lgr_env *env, unsigned mask)
{
	return mask == 0 || (mask & LGR_RECENT_TYPE(lgr_env_type(env))) != 0;
}

int lgr_recent_query(struct lgr_recent *r, const char *source_id, int64_t start_time, int64_t end_time,
	unsigned type_mask, size_t limit, bool descending, struct lgr_env ***out, size_t *n)
{
	struct hit *hits = NULL;
	struct lgr_env **envs = NULL;
	struct source *s;
	size_t i, k, nh = 0, take, slot;
	int rc = LGR_EINVAL;

	if (out != NULL)
		*out = NULL;
	if (n != NULL)
		*n = 0;
	if (r == NULL || source_id == NULL || out == NULL || n == NULL)
		goto out;
	rc = LGR_ENOMEM;
	hits = malloc(r->size * sizeof(*hits)); /* before the lock: the ring never holds more */
	if (hits == NULL)
		goto out;

	pthread_mutex_lock(&r->lock);
	s = lookup(r, source_id, hash_id(source_id));
	if (s != NULL) {
		slot = (s->head + r->size - s->count) % r->size; /* the oldest reference */
		for (i = 0; i < s->count; i++) {
			struct lgr_env *e = s->ring[slot];
			int64_t ts = e->pb->timestamp;

			if (ts >= start_time && ts < end_time && type_selected(e, type_mask)) {
				hits[nh].env = lgr_env_ref(e);
				hits[nh].ts = ts;
				hits[nh].seq = i;
				nh++;
			}
			slot = slot + 1 == r->size ? 0 : slot + 1;
		}
	}
	pthread_mutex_unlock(&r->lock);

	rc = LGR_OK;
	if (nh == 0)
		goto out;
	qsort(hits, nh, sizeof(*hits), hit_cmp);
	take = limit == 0 || limit > nh ? nh : limit;
	envs = malloc(take * sizeof(*envs));
	if (envs == NULL) {
		rc = LGR_ENOMEM;
		goto out;
	}
	for (k = 0; k < take; k++) {
		i = descending ? nh - 1 - k : k;
		envs[k] = hits[i].env;
		hits[i].env = NULL; /* ownership transferred to the answer */
	}
	*out = envs;
	*n = take;
out:
	for (i = 0; i < nh; i++)
		lgr_env_unref(hits[i].env);
	free(hits);
	return rc;
}

void lgr_recent_release(struct lgr_env **envs, size_t n)
{
	size_t i;

	if (envs == NULL)
		return;
	for (i = 0; i < n; i++)
		lgr_env_unref(envs[i]);
	free(envs);
}

void lgr_recent_stats(struct lgr_recent *r, struct lgr_recent_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (r == NULL)
		return;
	pthread_mutex_lock(&r->lock);
	out->sources = r->n_sources;
	out->envelopes = r->n_envelopes;
	out->written = r->written;
	out->evictions = r->evictions;
	pthread_mutex_unlock(&r->lock);
}
