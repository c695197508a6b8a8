/*
 * lgr_env.c: the reference-counted v2 envelope (see lgr_env.h): building, decoding after lgr_pb validation,
 * the cached protobuf encoding, batch encoding and content comparison.
 *
 * Threads: an envelope is mutable only while one thread holds its only reference. After that it is read-only,
 * except for the encoding cache, which is filled at most once with a compare-and-swap, and the reference count;
 * both use the __atomic builtins.
 */
#include "lgr_env.h"

#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "lgr_pb.h"

#define BATCH_TAG 0x0a /* EnvelopeBatch.batch: field 1, length-delimited */

/* --- allocation helpers: every part of env->pb comes from malloc (see lgr_env.h) -------------------------------- */

static bool is_default_str(const char *s)
{
	return s == NULL || s == protobuf_c_empty_string;
}

static void str_free(char *s)
{
	if (!is_default_str(s))
		free(s);
}

static char *str_dup(const char *s)
{
	return strdup(s != NULL ? s : "");
}

static void msg_free(void *msg)
{
	if (msg != NULL)
		protobuf_c_message_free_unpacked(msg, NULL);
}

/* A setter is about to change the content: the cached encoding no longer describes it. Sole owner only. */
static void wire_drop(struct lgr_env *env)
{
	free(env->wire);
	env->wire = NULL;
	env->wire_len = 0;
}

/* Grows a malloc'd array of n pointers by one slot; the caller stores into (*arr)[n]. */
static int ptr_array_grow(void ***arr, size_t n)
{
	void **p;

	if (n >= SIZE_MAX / sizeof(void *) - 1)
		return LGR_ENOMEM;
	p = realloc(*arr, (n + 1) * sizeof(void *));
	if (p == NULL)
		return LGR_ENOMEM;
	*arr = p;
	return LGR_OK;
}

/* --- lifecycle ------------------------------------------------------------------------------------------------ */

struct lgr_env *lgr_env_new(void)
{
	Loggregator__V2__Envelope *pb = malloc(sizeof(*pb));

	if (pb == NULL)
		return NULL;
	loggregator__v2__envelope__init(pb);
	return lgr_env_take(pb);
}

struct lgr_env *lgr_env_take(Loggregator__V2__Envelope *pb)
{
	struct lgr_env *env;

	if (pb == NULL)
		return NULL;
	env = calloc(1, sizeof(*env));
	if (env == NULL) {
		msg_free(pb);
		return NULL;
	}
	env->pb = pb;
	env->refs = 1;
	return env;
}

struct lgr_env *lgr_env_ref(struct lgr_env *env)
{
	__atomic_fetch_add(&env->refs, 1, __ATOMIC_RELAXED);
	return env;
}

void lgr_env_unref(struct lgr_env *env)
{
	if (env == NULL)
		return;
	/* acq_rel: every reader's last access happens before the free below. */
	if (__atomic_sub_fetch(&env->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	msg_free(env->pb);
	free(env->wire);
	free(env);
}

/* --- readers -------------------------------------------------------------------------------------------------- */

enum lgr_env_type lgr_env_type(const struct lgr_env *env)
{
	switch (env->pb->message_case) {
	case LOGGREGATOR__V2__ENVELOPE__MESSAGE_LOG: return LGR_ENV_LOG;
	case LOGGREGATOR__V2__ENVELOPE__MESSAGE_COUNTER: return LGR_ENV_COUNTER;
	case LOGGREGATOR__V2__ENVELOPE__MESSAGE_GAUGE: return LGR_ENV_GAUGE;
	case LOGGREGATOR__V2__ENVELOPE__MESSAGE_TIMER: return LGR_ENV_TIMER;
	case LOGGREGATOR__V2__ENVELOPE__MESSAGE_EVENT: return LGR_ENV_EVENT;
	default: return LGR_ENV_NONE;
	}
}

const char *lgr_env_type_name(enum lgr_env_type type)
{
	switch (type) {
	case LGR_ENV_LOG: return "log";
	case LGR_ENV_COUNTER: return "counter";
	case LGR_ENV_GAUGE: return "gauge";
	case LGR_ENV_TIMER: return "timer";
	case LGR_ENV_EVENT: return "event";
	default: return "none";
	}
}

static const char *key_or_empty(const char *k)
{
	return k != NULL ? k : "";
}

/*
 * Map lookups search from the end: protobuf-c keeps a repeated key as separate entries, and protobuf's rule for a
 * map is that the last one wins.
 */
static ssize_t tag_find(const Loggregator__V2__Envelope *pb, const char *key)
{
	size_t i;

	for (i = pb->n_tags; i-- > 0;)
		if (strcmp(key_or_empty(pb->tags[i]->key), key) == 0)
			return (ssize_t)i;
	return -1;
}

static ssize_t dtag_find(const Loggregator__V2__Envelope *pb, const char *key)
{
	size_t i;

	for (i = pb->n_deprecated_tags; i-- > 0;)
		if (strcmp(key_or_empty(pb->deprecated_tags[i]->key), key) == 0)
			return (ssize_t)i;
	return -1;
}

static ssize_t metric_find(const Loggregator__V2__Gauge *g, const char *key)
{
	size_t i;

	for (i = g->n_metrics; i-- > 0;)
		if (strcmp(key_or_empty(g->metrics[i]->key), key) == 0)
			return (ssize_t)i;
	return -1;
}

const char *lgr_env_tag(const struct lgr_env *env, const char *key)
{
	ssize_t i = tag_find(env->pb, key);

	return i < 0 ? NULL : key_or_empty(env->pb->tags[i]->value);
}

const Loggregator__V2__Value *lgr_env_dtag(const struct lgr_env *env, const char *key)
{
	ssize_t i = dtag_find(env->pb, key);

	return i < 0 ? NULL : env->pb->deprecated_tags[i]->value;
}

/*
 * protobuf-c leaves a proto3 double out of the encoding when it compares equal to 0, so a gauge value of -0.0
 * would come back as +0.0. Canonical +0.0 everywhere keeps decode, encode and decode again equal bit for bit.
 */
static double zero_canonical(double v)
{
	return v == 0.0 ? 0.0 : v;
}

/* --- setters -------------------------------------------------------------------------------------------------- */

static int str_set(struct lgr_env *env, char **slot, const char *s)
{
	char *copy = str_dup(s);

	if (copy == NULL)
		return LGR_ENOMEM;
	str_free(*slot);
	*slot = copy;
	wire_drop(env);
	return LGR_OK;
}

int lgr_env_set_source_id(struct lgr_env *env, const char *source_id)
{
	return str_set(env, &env->pb->source_id, source_id);
}

int lgr_env_set_instance_id(struct lgr_env *env, const char *instance_id)
{
	return str_set(env, &env->pb->instance_id, instance_id);
}

int lgr_env_set_tag(struct lgr_env *env, const char *key, const char *value)
{
	Loggregator__V2__Envelope *pb = env->pb;
	Loggregator__V2__Envelope__TagsEntry *e = NULL;
	ssize_t i = tag_find(pb, key);
	int rc = LGR_ENOMEM;

	if (i >= 0) {
		rc = str_set(env, &pb->tags[i]->value, value);
		goto out;
	}
	e = malloc(sizeof(*e));
	if (e == NULL)
		goto out;
	loggregator__v2__envelope__tags_entry__init(e);
	e->key = str_dup(key);
	e->value = str_dup(value);
	if (e->key == NULL || e->value == NULL)
		goto out;
	rc = ptr_array_grow((void ***)&pb->tags, pb->n_tags);
	if (rc != LGR_OK)
		goto out;
	pb->tags[pb->n_tags++] = e;
	e = NULL; /* ownership transferred */
	wire_drop(env);
out:
	msg_free(e);
	return rc;
}

int lgr_env_del_tag(struct lgr_env *env, const char *key)
{
	Loggregator__V2__Envelope *pb = env->pb;
	size_t i, kept = 0;

	for (i = 0; i < pb->n_tags; i++) {
		if (strcmp(key_or_empty(pb->tags[i]->key), key) == 0)
			msg_free(pb->tags[i]);
		else
			pb->tags[kept++] = pb->tags[i];
	}
	if (kept != pb->n_tags) {
		pb->n_tags = kept;
		wire_drop(env);
	}
	return LGR_OK;
}

/* Stores v (owned) as deprecated_tags[key], replacing an existing value. Frees v on failure. */
static int dtag_set(struct lgr_env *env, const char *key, Loggregator__V2__Value *v)
{
	Loggregator__V2__Envelope *pb = env->pb;
	Loggregator__V2__Envelope__DeprecatedTagsEntry *e = NULL;
	ssize_t i = dtag_find(pb, key);
	int rc = LGR_ENOMEM;

	if (i >= 0) {
		msg_free(pb->deprecated_tags[i]->value);
		pb->deprecated_tags[i]->value = v;
		v = NULL; /* ownership transferred */
		rc = LGR_OK;
		wire_drop(env);
		goto out;
	}
	e = malloc(sizeof(*e));
	if (e == NULL)
		goto out;
	loggregator__v2__envelope__deprecated_tags_entry__init(e);
	e->value = v;
	v = NULL; /* ownership transferred to e */
	e->key = str_dup(key);
	if (e->key == NULL)
		goto out;
	rc = ptr_array_grow((void ***)&pb->deprecated_tags, pb->n_deprecated_tags);
	if (rc != LGR_OK)
		goto out;
	pb->deprecated_tags[pb->n_deprecated_tags++] = e;
	e = NULL; /* ownership transferred */
	wire_drop(env);
out:
	msg_free(e);
	msg_free(v);
	return rc;
}

static Loggregator__V2__Value *value_new(void)
{
	Loggregator__V2__Value *v = malloc(sizeof(*v));

	if (v != NULL)
		loggregator__v2__value__init(v);
	return v;
}

int lgr_env_set_dtag_text(struct lgr_env *env, const char *key, const char *text)
{
	Loggregator__V2__Value *v = value_new();
	int rc = LGR_ENOMEM;

	if (v == NULL)
		goto out;
	v->text = str_dup(text);
	if (v->text == NULL)
		goto out;
	v->data_case = LOGGREGATOR__V2__VALUE__DATA_TEXT;
	rc = dtag_set(env, key, v);
	v = NULL; /* ownership transferred, even on failure */
out:
	msg_free(v);
	return rc;
}

int lgr_env_set_dtag_integer(struct lgr_env *env, const char *key, int64_t integer)
{
	Loggregator__V2__Value *v = value_new();

	if (v == NULL)
		return LGR_ENOMEM;
	v->data_case = LOGGREGATOR__V2__VALUE__DATA_INTEGER;
	v->integer = integer;
	return dtag_set(env, key, v);
}

int lgr_env_set_dtag_decimal(struct lgr_env *env, const char *key, double decimal)
{
	Loggregator__V2__Value *v = value_new();

	if (v == NULL)
		return LGR_ENOMEM;
	v->data_case = LOGGREGATOR__V2__VALUE__DATA_DECIMAL;
	v->decimal = decimal;
	return dtag_set(env, key, v);
}

/* The oneof member currently set, as a message (NULL when none). */
static ProtobufCMessage *message_get(Loggregator__V2__Envelope *pb)
{
	switch (pb->message_case) {
	case LOGGREGATOR__V2__ENVELOPE__MESSAGE_LOG: return (ProtobufCMessage *)pb->log;
	case LOGGREGATOR__V2__ENVELOPE__MESSAGE_COUNTER: return (ProtobufCMessage *)pb->counter;
	case LOGGREGATOR__V2__ENVELOPE__MESSAGE_GAUGE: return (ProtobufCMessage *)pb->gauge;
	case LOGGREGATOR__V2__ENVELOPE__MESSAGE_TIMER: return (ProtobufCMessage *)pb->timer;
	case LOGGREGATOR__V2__ENVELOPE__MESSAGE_EVENT: return (ProtobufCMessage *)pb->event;
	default: return NULL;
	}
}

/* Replaces the oneof message with msg (owned, already complete). Cannot fail. */
static void message_put(struct lgr_env *env, Loggregator__V2__Envelope__MessageCase which, void *msg)
{
	Loggregator__V2__Envelope *pb = env->pb;
	ProtobufCMessage *old = message_get(pb);

	if (old != NULL)
		msg_free(old);
	pb->message_case = which;
	switch (which) {
	case LOGGREGATOR__V2__ENVELOPE__MESSAGE_LOG: pb->log = msg; break;
	case LOGGREGATOR__V2__ENVELOPE__MESSAGE_COUNTER: pb->counter = msg; break;
	case LOGGREGATOR__V2__ENVELOPE__MESSAGE_GAUGE: pb->gauge = msg; break;
	case LOGGREGATOR__V2__ENVELOPE__MESSAGE_TIMER: pb->timer = msg; break;
	case LOGGREGATOR__V2__ENVELOPE__MESSAGE_EVENT: pb->event = msg; break;
	default: pb->log = NULL; break;
	}
	wire_drop(env);
}

int lgr_env_set_log(struct lgr_env *env, const void *payload, size_t len, Loggregator__V2__Log__Type type)
{
	Loggregator__V2__Log *m = malloc(sizeof(*m));
	int rc = LGR_ENOMEM;

	if (m == NULL)
		goto out;
	loggregator__v2__log__init(m);
	m->type = type;
	if (len > 0) {
		m->payload.data = malloc(len);
		if (m->payload.data == NULL)
			goto out;
		memcpy(m->payload.data, payload, len);
		m->payload.len = len;
	}
	message_put(env, LOGGREGATOR__V2__ENVELOPE__MESSAGE_LOG, m);
	m = NULL; /* ownership transferred */
	rc = LGR_OK;
out:
	msg_free(m);
	return rc;
}

int lgr_env_set_counter(struct lgr_env *env, const char *name, uint64_t delta, uint64_t total)
{
	Loggregator__V2__Counter *m = malloc(sizeof(*m));
	int rc = LGR_ENOMEM;

	if (m == NULL)
		goto out;
	loggregator__v2__counter__init(m);
	m->name = str_dup(name);
	if (m->name == NULL)
		goto out;
	m->delta = delta;
	m->total = total;
	message_put(env, LOGGREGATOR__V2__ENVELOPE__MESSAGE_COUNTER, m);
	m = NULL; /* ownership transferred */
	rc = LGR_OK;
out:
	msg_free(m);
	return rc;
}

int lgr_env_set_gauge(struct lgr_env *env)
{
	Loggregator__V2__Gauge *m = malloc(sizeof(*m));

	if (m == NULL)
		return LGR_ENOMEM;
	loggregator__v2__gauge__init(m);
	message_put(env, LOGGREGATOR__V2__ENVELOPE__MESSAGE_GAUGE, m);
	return LGR_OK;
}

/*
 * Without a gauge set, the first metric makes one (replacing any other message), so the call keeps its documented
 * codes; lgr_env_set_gauge first is the intended use.
 */
int lgr_env_add_metric(struct lgr_env *env, const char *name, const char *unit, double value)
{
	Loggregator__V2__Envelope *pb = env->pb;
	Loggregator__V2__GaugeValue *gv = malloc(sizeof(*gv));
	Loggregator__V2__Gauge__MetricsEntry *e = NULL;
	Loggregator__V2__Gauge *g = NULL, *fresh = NULL;
	ssize_t i;
	int rc = LGR_ENOMEM;

	if (gv == NULL)
		goto out;
	loggregator__v2__gauge_value__init(gv);
	gv->unit = str_dup(unit);
	if (gv->unit == NULL)
		goto out;
	gv->value = zero_canonical(value);
	if (pb->message_case == LOGGREGATOR__V2__ENVELOPE__MESSAGE_GAUGE) {
		g = pb->gauge;
	} else {
		fresh = malloc(sizeof(*fresh));
		if (fresh == NULL)
			goto out;
		loggregator__v2__gauge__init(fresh);
		g = fresh;
	}
	i = metric_find(g, key_or_empty(name));
	if (i >= 0) {
		msg_free(g->metrics[i]->value);
		g->metrics[i]->value = gv;
		gv = NULL; /* ownership transferred */
		rc = LGR_OK;
		wire_drop(env);
		goto out;
	}
	e = malloc(sizeof(*e));
	if (e == NULL)
		goto out;
	loggregator__v2__gauge__metrics_entry__init(e);
	e->value = gv;
	gv = NULL; /* ownership transferred to e */
	e->key = str_dup(name);
	if (e->key == NULL)
		goto out;
	rc = ptr_array_grow((void ***)&g->metrics, g->n_metrics);
	if (rc != LGR_OK)
		goto out;
	g->metrics[g->n_metrics++] = e;
	e = NULL; /* ownership transferred */
	if (fresh != NULL) {
		message_put(env, LOGGREGATOR__V2__ENVELOPE__MESSAGE_GAUGE, fresh);
		fresh = NULL; /* ownership transferred */
	}
	wire_drop(env);
out:
	msg_free(e);
	msg_free(gv);
	msg_free(fresh);
	return rc;
}

int lgr_env_set_timer(struct lgr_env *env, const char *name, int64_t start, int64_t stop)
{
	Loggregator__V2__Timer *m = malloc(sizeof(*m));
	int rc = LGR_ENOMEM;

	if (m == NULL)
		goto out;
	loggregator__v2__timer__init(m);
	m->name = str_dup(name);
	if (m->name == NULL)
		goto out;
	m->start = start;
	m->stop = stop;
	message_put(env, LOGGREGATOR__V2__ENVELOPE__MESSAGE_TIMER, m);
	m = NULL; /* ownership transferred */
	rc = LGR_OK;
out:
	msg_free(m);
	return rc;
}

int lgr_env_set_event(struct lgr_env *env, const char *title, const char *body)
{
	Loggregator__V2__Event *m = malloc(sizeof(*m));
	int rc = LGR_ENOMEM;

	if (m == NULL)
		goto out;
	loggregator__v2__event__init(m);
	m->title = str_dup(title);
	m->body = str_dup(body);
	if (m->title == NULL || m->body == NULL)
		goto out;
	message_put(env, LOGGREGATOR__V2__ENVELOPE__MESSAGE_EVENT, m);
	m = NULL; /* ownership transferred */
	rc = LGR_OK;
out:
	msg_free(m);
	return rc;
}

/* --- decoding ------------------------------------------------------------------------------------------------- */

/*
 * protobuf-c reports a malformed message and a failed allocation alike (NULL). This allocator is plain
 * malloc/free, so free_unpacked(NULL) still frees what it allocated, but it remembers a failure so that the
 * caller can tell the two apart.
 */
struct track_alloc {
	bool failed;
};

static void *track_alloc_fn(void *data, size_t size)
{
	struct track_alloc *t = data;
	void *p = malloc(size);

	if (p == NULL)
		t->failed = true;
	return p;
}

static void track_free_fn(void *data, void *p)
{
	(void)data;
	free(p);
}

static void gauge_canonicalize(Loggregator__V2__Envelope *pb)
{
	size_t i;

	if (pb->message_case != LOGGREGATOR__V2__ENVELOPE__MESSAGE_GAUGE || pb->gauge == NULL)
		return;
	for (i = 0; i < pb->gauge->n_metrics; i++)
		if (pb->gauge->metrics[i]->value != NULL)
			pb->gauge->metrics[i]->value->value = zero_canonical(pb->gauge->metrics[i]->value->value);
}

int lgr_env_unpack(const uint8_t *buf, size_t len, struct lgr_env **out)
{
	struct track_alloc t = {false};
	ProtobufCAllocator a = {track_alloc_fn, track_free_fn, &t};
	Loggregator__V2__Envelope *pb;
	int rc = LGR_OK;

	*out = NULL;
	pb = loggregator__v2__envelope__unpack(&a, len, buf);
	if (pb == NULL) {
		rc = t.failed ? LGR_ENOMEM : LGR_EDECODE;
		goto out;
	}
	gauge_canonicalize(pb);
	*out = lgr_env_take(pb);
	if (*out == NULL)
		rc = LGR_ENOMEM;
out:
	return rc;
}

/* --- scratch decoding ------------------------------------------------------------------------------------------ */

#define SCRATCH_MIN   4096u	 /* the first block; a log envelope with a dozen tags needs about 1 KiB */
#define SCRATCH_KEEP  (1u << 20) /* the block grows to what the largest envelope needed, up to this */
#define SCRATCH_ALIGN sizeof(max_align_t)

/* Memory beyond the block: one malloc each, freed at the next unpack. */
struct scratch_extra {
	struct scratch_extra *next;
	max_align_t data[];
};

struct lgr_env_scratch {
	struct lgr_env env; /* the view handed out */
	uint8_t *block;
	size_t cap, used;
	size_t wanted; /* bytes the current unpack asked for, block or not */
	struct scratch_extra *extra;
	bool failed;
};

static void *scratch_alloc(void *data, size_t size)
{
	struct lgr_env_scratch *s = data;
	struct scratch_extra *x;
	size_t n = (size + SCRATCH_ALIGN - 1) / SCRATCH_ALIGN * SCRATCH_ALIGN;

	if (n < size) /* overflow */
		goto fail;
	s->wanted += n;
	if (n <= s->cap - s->used) {
		void *p = s->block + s->used;

		s->used += n;
		return p;
	}
	if (n > SIZE_MAX - sizeof(*x))
		goto fail;
	x = malloc(sizeof(*x) + n);
	if (x == NULL)
		goto fail;
	x->next = s->extra;
	s->extra = x;
	return x->data;
fail:
	s->failed = true;
	return NULL;
}

static void scratch_free_fn(void *data, void *p)
{
	(void)data;
	(void)p; /* everything goes at once, at the next unpack */
}

/* Forgets the last envelope; grows the block to what it needed when that took extra memory. */
static void scratch_reset(struct lgr_env_scratch *s)
{
	struct scratch_extra *x;
	uint8_t *bigger;

	while ((x = s->extra) != NULL) {
		s->extra = x->next;
		free(x);
	}
	if (s->wanted > s->cap && s->cap < SCRATCH_KEEP) {
		size_t cap = s->wanted < SCRATCH_KEEP ? s->wanted : SCRATCH_KEEP;

		bigger = malloc(cap);
		if (bigger != NULL) { /* else the extras keep serving */
			free(s->block);
			s->block = bigger;
			s->cap = cap;
		}
	}
	s->used = 0;
	s->wanted = 0;
	s->failed = false;
}

int lgr_env_scratch_new(struct lgr_env_scratch **out)
{
	struct lgr_env_scratch *s = calloc(1, sizeof(*s));

	*out = NULL;
	if (s == NULL)
		return LGR_ENOMEM;
	s->block = malloc(SCRATCH_MIN);
	if (s->block == NULL) {
		free(s);
		return LGR_ENOMEM;
	}
	s->cap = SCRATCH_MIN;
	*out = s;
	return LGR_OK;
}

void lgr_env_scratch_free(struct lgr_env_scratch *s)
{
	if (s == NULL)
		return;
	scratch_reset(s);
	free(s->block);
	free(s);
}

void lgr_env_scratch_begin(struct lgr_env_scratch *s)
{
	scratch_reset(s);
}

void *lgr_env_scratch_alloc(struct lgr_env_scratch *s, size_t size)
{
	return scratch_alloc(s, size > 0 ? size : 1);
}

const struct lgr_env *lgr_env_scratch_view(struct lgr_env_scratch *s, Loggregator__V2__Envelope *pb)
{
	memset(&s->env, 0, sizeof(s->env));
	s->env.pb = pb;
	s->env.refs = 1;
	return &s->env;
}

size_t lgr_env_packed_size(const struct lgr_env *env)
{
	return loggregator__v2__envelope__get_packed_size(env->pb);
}

void lgr_env_pack(const struct lgr_env *env, uint8_t *buf)
{
	loggregator__v2__envelope__pack(env->pb, buf);
}

int lgr_env_scratch_unpack(struct lgr_env_scratch *s, const uint8_t *buf, size_t len, const struct lgr_env **view)
{
	ProtobufCAllocator a = {scratch_alloc, scratch_free_fn, s};
	Loggregator__V2__Envelope *pb;

	*view = NULL;
	scratch_reset(s);
	pb = loggregator__v2__envelope__unpack(&a, len, buf);
	if (pb == NULL)
		return s->failed ? LGR_ENOMEM : LGR_EDECODE;
	gauge_canonicalize(pb);
	memset(&s->env, 0, sizeof(s->env));
	s->env.pb = pb;
	s->env.refs = 1;
	*view = &s->env;
	return LGR_OK;
}

int lgr_env_decode(const uint8_t *buf, size_t len, const struct lgr_limits *lim, struct lgr_env **out)
{
	int rc;

	*out = NULL;
	rc = lgr_pb_check_envelope(buf, len, lim);
	if (rc != LGR_OK)
		goto out;
	rc = lgr_env_unpack(buf, len, out);
out:
	return rc;
}

int lgr_env_decode_batch(const uint8_t *buf, size_t len, const struct lgr_limits *lim, lgr_env_sink *fn, void *ud)
{
	struct lgr_env **envs = NULL;
	struct lgr_pb_field f;
	size_t count = 0, n = 0, i = 0, pos = 0;
	int rc;

	rc = lgr_pb_check_batch(buf, len, lim, &count);
	if (rc != LGR_OK || count == 0)
		goto out;
	/* Everything is decoded before fn sees the first envelope, so that fn sees all or none. */
	envs = calloc(count, sizeof(*envs));
	if (envs == NULL) {
		rc = LGR_ENOMEM;
		goto out;
	}
	while (pos < len && n < count) {
		rc = lgr_pb_field_next(buf, len, &pos, &f);
		if (rc != LGR_OK)
			goto out;
		if (f.number != 1 || f.wire != LGR_PB_LEN)
			continue;
		rc = lgr_env_unpack(f.data, f.len, &envs[n]);
		if (rc != LGR_OK)
			goto out;
		n++;
	}
	for (i = 0; i < n && rc == LGR_OK; i++) {
		rc = fn(envs[i], ud);
		envs[i] = NULL; /* ownership transferred */
	}
out:
	for (; i < n; i++)
		lgr_env_unref(envs[i]);
	free(envs);
	return rc;
}

/* --- encoding ------------------------------------------------------------------------------------------------- */

int lgr_env_encode(struct lgr_env *env, const uint8_t **data, size_t *len)
{
	uint8_t *wire = __atomic_load_n(&env->wire, __ATOMIC_ACQUIRE);
	uint8_t *expected = NULL;
	size_t n;
	int rc = LGR_OK;

	if (wire != NULL)
		goto out;
	n = loggregator__v2__envelope__get_packed_size(env->pb);
	wire = malloc(n > 0 ? n : 1);
	if (wire == NULL) {
		rc = LGR_ENOMEM;
		goto out;
	}
	loggregator__v2__envelope__pack(env->pb, wire);
	/* Every racer computes the same length from the same read-only envelope, so storing it twice is harmless. */
	__atomic_store_n(&env->wire_len, n, __ATOMIC_RELAXED);
	if (!__atomic_compare_exchange_n(&env->wire, &expected, wire, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
		free(wire); /* another thread published first: use its bytes */
		wire = expected;
	}
out:
	if (rc == LGR_OK) {
		*data = wire;
		*len = __atomic_load_n(&env->wire_len, __ATOMIC_RELAXED);
	}
	return rc;
}

int lgr_env_encode_batch(struct lgr_env *const *envs, size_t n, uint8_t **out, size_t *out_len)
{
	const uint8_t *data;
	uint8_t *buf = NULL;
	size_t len, total = 0, pos = 0, i;
	int rc = LGR_OK;

	*out = NULL;
	*out_len = 0;
	if (envs == NULL && n > 0) {
		rc = LGR_EINVAL;
		goto out;
	}
	/* First pass fills every cache and sizes the result, so that the buffer is allocated once. */
	for (i = 0; i < n; i++) {
		rc = lgr_env_encode(envs[i], &data, &len);
		if (rc != LGR_OK)
			goto out;
		if (len > SIZE_MAX - total - 1 - LGR_PB_VARINT_MAX) {
			rc = LGR_ENOMEM;
			goto out;
		}
		total += 1 + lgr_pb_varint_size(len) + len;
	}
	buf = malloc(total > 0 ? total : 1);
	if (buf == NULL) {
		rc = LGR_ENOMEM;
		goto out;
	}
	for (i = 0; i < n; i++) {
		rc = lgr_env_encode(envs[i], &data, &len);
		if (rc != LGR_OK)
			goto out;
		buf[pos++] = BATCH_TAG;
		pos += lgr_pb_varint_put(buf + pos, len);
		if (len > 0)
			memcpy(buf + pos, data, len);
		pos += len;
	}
	*out = buf;
	*out_len = pos;
	buf = NULL; /* ownership transferred */
out:
	free(buf);
	return rc;
}

/* --- comparison ----------------------------------------------------------------------------------------------- */

static bool str_eq(const char *a, const char *b)
{
	return strcmp(key_or_empty(a), key_or_empty(b)) == 0;
}

static bool double_eq(double a, double b)
{
	return memcmp(&a, &b, sizeof(a)) == 0;
}

/* A missing Value reads as an unset one, as protobuf's map semantics give it. */
static bool value_eq(const Loggregator__V2__Value *a, const Loggregator__V2__Value *b)
{
	int ca = a != NULL ? (int)a->data_case : 0;
	int cb = b != NULL ? (int)b->data_case : 0;

	if (ca != cb)
		return false;
	switch (ca) {
	case LOGGREGATOR__V2__VALUE__DATA_TEXT: return str_eq(a->text, b->text);
	case LOGGREGATOR__V2__VALUE__DATA_INTEGER: return a->integer == b->integer;
	case LOGGREGATOR__V2__VALUE__DATA_DECIMAL: return double_eq(a->decimal, b->decimal);
	default: return true;
	}
}

static bool gauge_value_eq(const Loggregator__V2__GaugeValue *a, const Loggregator__V2__GaugeValue *b)
{
	const char *ua = a != NULL ? a->unit : "", *ub = b != NULL ? b->unit : "";
	double va = a != NULL ? a->value : 0.0, vb = b != NULL ? b->value : 0.0;

	return str_eq(ua, ub) && double_eq(va, vb);
}

/*
 * Maps as protobuf-c holds them: arrays of entry messages that all start with the base and the key. Compared as
 * maps: the same set of keys, each with an equal last value, in any order.
 */
struct map_view {
	void *const *entries;
	size_t n;
	const char *(*key)(const void *entry);
	bool (*val_eq)(const void *entry_a, const void *entry_b);
};

/* The index of the entry that wins for key (the last one), or n. */
static size_t map_lookup(const struct map_view *m, const char *key)
{
	size_t i;

	for (i = m->n; i-- > 0;)
		if (str_eq(m->key(m->entries[i]), key))
			return i;
	return m->n;
}

static bool map_covers(const struct map_view *a, const struct map_view *b)
{
	size_t i, j;

	for (i = 0; i < a->n; i++) {
		const char *k = a->key(a->entries[i]);

		if (map_lookup(a, k) != i)
			continue; /* shadowed by a later entry */
		j = map_lookup(b, k);
		if (j == b->n || !a->val_eq(a->entries[i], b->entries[j]))
			return false;
	}
	return true;
}

static bool map_eq(const struct map_view *a, const struct map_view *b)
{
	return map_covers(a, b) && map_covers(b, a);
}

static const char *tag_key(const void *e)
{
	return ((const Loggregator__V2__Envelope__TagsEntry *)e)->key;
}

static bool tag_val_eq(const void *a, const void *b)
{
	return str_eq(((const Loggregator__V2__Envelope__TagsEntry *)a)->value,
		((const Loggregator__V2__Envelope__TagsEntry *)b)->value);
}

static const char *dtag_key(const void *e)
{
	return ((const Loggregator__V2__Envelope__DeprecatedTagsEntry *)e)->key;
}

static bool dtag_val_eq(const void *a, const void *b)
{
	return value_eq(((const Loggregator__V2__Envelope__DeprecatedTagsEntry *)a)->value,
		((const Loggregator__V2__Envelope__DeprecatedTagsEntry *)b)->value);
}

static const char *metric_key(const void *e)
{
	return ((const Loggregator__V2__Gauge__MetricsEntry *)e)->key;
}

static bool metric_val_eq(const void *a, const void *b)
{
	return gauge_value_eq(((const Loggregator__V2__Gauge__MetricsEntry *)a)->value,
		((const Loggregator__V2__Gauge__MetricsEntry *)b)->value);
}

static bool gauge_eq(const Loggregator__V2__Gauge *a, const Loggregator__V2__Gauge *b)
{
	struct map_view ma = {(void *const *)a->metrics, a->n_metrics, metric_key, metric_val_eq};
	struct map_view mb = {(void *const *)b->metrics, b->n_metrics, metric_key, metric_val_eq};

	return map_eq(&ma, &mb);
}

static bool message_eq(const Loggregator__V2__Envelope *a, const Loggregator__V2__Envelope *b)
{
	if (a->message_case != b->message_case)
		return false;
	switch (a->message_case) {
	case LOGGREGATOR__V2__ENVELOPE__MESSAGE_LOG:
		return a->log->type == b->log->type && a->log->payload.len == b->log->payload.len &&
		       (a->log->payload.len == 0 ||
			       memcmp(a->log->payload.data, b->log->payload.data, a->log->payload.len) == 0);
	case LOGGREGATOR__V2__ENVELOPE__MESSAGE_COUNTER:
		return str_eq(a->counter->name, b->counter->name) && a->counter->delta == b->counter->delta &&
		       a->counter->total == b->counter->total;
	case LOGGREGATOR__V2__ENVELOPE__MESSAGE_GAUGE: return gauge_eq(a->gauge, b->gauge);
	case LOGGREGATOR__V2__ENVELOPE__MESSAGE_TIMER:
		return str_eq(a->timer->name, b->timer->name) && a->timer->start == b->timer->start &&
		       a->timer->stop == b->timer->stop;
	case LOGGREGATOR__V2__ENVELOPE__MESSAGE_EVENT:
		return str_eq(a->event->title, b->event->title) && str_eq(a->event->body, b->event->body);
	default: return true;
	}
}

bool lgr_env_equal(const struct lgr_env *a, const struct lgr_env *b)
{
	const Loggregator__V2__Envelope *pa = a->pb, *pb = b->pb;
	struct map_view ta = {(void *const *)pa->tags, pa->n_tags, tag_key, tag_val_eq};
	struct map_view tb = {(void *const *)pb->tags, pb->n_tags, tag_key, tag_val_eq};
	struct map_view da = {(void *const *)pa->deprecated_tags, pa->n_deprecated_tags, dtag_key, dtag_val_eq};
	struct map_view db = {(void *const *)pb->deprecated_tags, pb->n_deprecated_tags, dtag_key, dtag_val_eq};

	return pa->timestamp == pb->timestamp && str_eq(pa->source_id, pb->source_id) &&
	       str_eq(pa->instance_id, pb->instance_id) && map_eq(&ta, &tb) && map_eq(&da, &db) && message_eq(pa, pb);
}
