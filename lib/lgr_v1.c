/*
 * lgr_v1.c: the v1 (dropsonde) Envelope codec and the v1 <-> v2 conversions (see lgr_v1.h and wire.md section 6).
 *
 * Decoding walks the bytes with lgr_pb's field reader against a table of the v1 schema before protobuf-c sees
 * them, so that a failed unpack of bytes that passed the walk can only mean a missing required field (or memory).
 * The conversions follow the real Go converters field by field; where those set a proto2 field to its zero value
 * whether or not there is anything to carry, this code keeps presence instead, so that v1 -> v2 -> v1 keeps what
 * the emitter sent (the differences are listed in lgr_v1.h).
 */
#include "lgr_v1.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lgr_pb.h"

/* --- the v1 schema, as far as the wire walk needs it ------------------------------------------------------------ */

enum msg {
	MSG_NONE = 0, /* scalar, string or bytes: not descended into */
	MSG_ENVELOPE,
	MSG_TAG_ENTRY,
	MSG_LOG,
	MSG_VALUE,
	MSG_COUNTER,
	MSG_ERROR,
	MSG_CONTAINER,
	MSG_UUID,
	MSG_HTTP,
	MSG_COUNT,
};

struct field_rule {
	uint8_t number;
	uint8_t wire;  /* enum lgr_pb_wire */
	uint8_t child; /* enum msg */
	bool repeated;
};

#define MAX_RULES  14
#define MAX_NUMBER 31 /* field numbers of the v1 schema fit a 32-bit "seen" mask */

struct msg_rules {
	size_t n;
	struct field_rule f[MAX_RULES];
};

/* clang-format off */
#define S(n) {n, LGR_PB_LEN, MSG_NONE, false}
#define V(n) {n, LGR_PB_VARINT, MSG_NONE, false}
#define D(n) {n, LGR_PB_I64, MSG_NONE, false}
#define M(n, m) {n, LGR_PB_LEN, m, false}
/* clang-format on */

static const struct msg_rules schema[MSG_COUNT] = {
	[MSG_ENVELOPE] = {14,
		{S(1), V(2), V(6), M(7, MSG_HTTP), M(8, MSG_LOG), M(9, MSG_VALUE), M(10, MSG_COUNTER), M(11, MSG_ERROR),
			M(12, MSG_CONTAINER), S(13), S(14), S(15), S(16), {17, LGR_PB_LEN, MSG_TAG_ENTRY, true}}},
	[MSG_TAG_ENTRY] = {2, {S(1), S(2)}},
	[MSG_LOG] = {6, {S(1), V(2), V(3), S(4), S(5), S(6)}},
	[MSG_VALUE] = {3, {S(1), D(2), S(3)}},
	[MSG_COUNTER] = {3, {S(1), V(2), V(3)}},
	[MSG_ERROR] = {3, {S(1), V(2), S(3)}},
	[MSG_CONTAINER] = {7, {S(1), V(2), D(3), V(4), V(5), V(6), V(7)}},
	[MSG_UUID] = {2, {V(1), V(2)}},
	[MSG_HTTP] = {14, {V(1), V(2), M(3, MSG_UUID), V(4), V(5), S(6), S(7), S(8), V(9), V(10), M(12, MSG_UUID),
				  V(13), S(14), {15, LGR_PB_LEN, MSG_NONE, true}}},
};

#undef S
#undef V
#undef D
#undef M

/* protobuf-c reads keys and length prefixes of at most 5 bytes; longer (overlong) ones are malformed to it. */
#define PBC_MAX_PREFIX 5u

struct walk {
	size_t items; /* entries whose number the schema does not fix: bounded by max_tags */
	size_t max_items;
};

static const struct field_rule *rule_find(enum msg m, uint32_t number)
{
	const struct msg_rules *r = &schema[m];
	size_t i;

	for (i = 0; i < r->n; i++)
		if (r->f[i].number == number)
			return &r->f[i];
	return NULL;
}

static int count_item(struct walk *w)
{
	return ++w->items > w->max_items ? LGR_ELIMIT : LGR_OK;
}

/* The field at buf[start, end) was read by lgr_pb_field_next; checks the parts protobuf-c reads more narrowly. */
static int check_prefixes(const uint8_t *buf, size_t len, size_t start, size_t end, const struct lgr_pb_field *f)
{
	size_t p = start;
	uint32_t number;
	enum lgr_pb_wire wire;
	int rc = LGR_EDECODE;

	if (lgr_pb_key(buf, len, &p, &number, &wire) == LGR_OK && p - start <= PBC_MAX_PREFIX &&
		(f->wire != LGR_PB_LEN || end - p - f->len <= PBC_MAX_PREFIX))
		rc = LGR_OK;
	return rc;
}

static int walk_msg(struct walk *w, enum msg m, const uint8_t *buf, size_t len)
{
	struct lgr_pb_field f;
	const struct field_rule *rule;
	uint32_t seen = 0;
	size_t pos = 0, start;
	int rc = LGR_OK;

	while (pos < len) {
		start = pos;
		rc = lgr_pb_field_next(buf, len, &pos, &f);
		if (rc != LGR_OK)
			goto out;
		rc = check_prefixes(buf, len, start, pos, &f);
		if (rc != LGR_OK)
			goto out;
		rule = rule_find(m, f.number);
		if (rule == NULL) {
			/* protobuf-c keeps each unknown field as an allocation of its own */
			rc = count_item(w);
			if (rc != LGR_OK)
				goto out;
			continue;
		}
		if (rule->wire != f.wire) {
			rc = LGR_EDECODE;
			goto out;
		}
		if (rule->repeated || (seen & (1u << rule->number)) != 0) {
			rc = count_item(w);
			if (rc != LGR_OK)
				goto out;
		}
		seen |= 1u << rule->number;
		if (rule->child != MSG_NONE) {
			/* The schema is at most three levels deep, so this recursion is bounded whatever the input. */
			rc = walk_msg(w, (enum msg)rule->child, f.data, f.len);
			if (rc != LGR_OK)
				goto out;
		}
	}
out:
	return rc;
}

/* --- decode, encode, free ------------------------------------------------------------------------------------- */

/* Plain malloc/free (so lgr_v1_free can free the result) that remembers a failure: protobuf-c reports a failed
 * allocation and a bad message alike. */
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

/* The sub-message that eventType names, or NULL (absent or unknown type). */
static const void *event_message(const Events__Envelope *env)
{
	switch (env->eventtype) {
	case EVENTS__ENVELOPE__EVENT_TYPE__HttpStartStop: return env->httpstartstop;
	case EVENTS__ENVELOPE__EVENT_TYPE__LogMessage: return env->logmessage;
	case EVENTS__ENVELOPE__EVENT_TYPE__ValueMetric: return env->valuemetric;
	case EVENTS__ENVELOPE__EVENT_TYPE__CounterEvent: return env->counterevent;
	case EVENTS__ENVELOPE__EVENT_TYPE__Error: return env->error;
	case EVENTS__ENVELOPE__EVENT_TYPE__ContainerMetric: return env->containermetric;
	default: return NULL;
	}
}

const char *lgr_v1_type_name(Events__Envelope__EventType type)
{
	const ProtobufCEnumValue *v =
		protobuf_c_enum_descriptor_get_value(&events__envelope__event_type__descriptor, (int)type);

	return v != NULL ? v->name : NULL;
}

int lgr_v1_decode(const uint8_t *buf, size_t len, const struct lgr_limits *lim, Events__Envelope **out)
{
	struct lgr_limits l = {0};
	struct walk w = {0};
	struct track_alloc t = {false};
	ProtobufCAllocator a = {track_alloc_fn, track_free_fn, &t};
	Events__Envelope *env = NULL;
	int rc;

	if (out == NULL) {
		rc = LGR_EINVAL;
		goto out;
	}
	*out = NULL;
	if (lim != NULL)
		l = *lim;
	lgr_limits_resolve(&l);
	if (len > l.max_message) {
		rc = LGR_ETOOBIG;
		goto out;
	}
	if (buf == NULL && len > 0) {
		rc = LGR_EINVAL;
		goto out;
	}
	w.max_items = l.max_tags;
	rc = walk_msg(&w, MSG_ENVELOPE, buf, len);
	if (rc != LGR_OK)
		goto out;
	env = events__envelope__unpack(&a, len, buf);
	if (env == NULL) {
		/* The walk accepted the form, so protobuf-c refused a missing required field. */
		rc = t.failed ? LGR_ENOMEM : LGR_EMISSING;
		goto out;
	}
	if (lgr_v1_type_name(env->eventtype) == NULL) {
		rc = LGR_EUNSUPPORTED;
		goto out;
	}
	if (event_message(env) == NULL) {
		rc = LGR_EMISSING;
		goto out;
	}
	*out = env;
	env = NULL; /* ownership transferred */
out:
	lgr_v1_free(env);
	return rc;
}

int lgr_v1_encode(const Events__Envelope *env, uint8_t **out, size_t *out_len)
{
	uint8_t *buf = NULL;
	size_t n, i;
	int rc = LGR_OK;

	if (out == NULL || out_len == NULL || env == NULL) {
		rc = LGR_EINVAL;
		goto out;
	}
	*out = NULL;
	*out_len = 0;
	if (lgr_v1_type_name(env->eventtype) == NULL) {
		rc = LGR_EUNSUPPORTED;
		goto out;
	}
	/* protobuf-c would write these as empty messages that no decoder accepts back. */
	if (env->origin == NULL || event_message(env) == NULL ||
		(env->eventtype == EVENTS__ENVELOPE__EVENT_TYPE__HttpStartStop &&
			env->httpstartstop->requestid == NULL)) {
		rc = LGR_EMISSING;
		goto out;
	}
	for (i = 0; i < env->n_tags; i++) {
		if (env->tags[i] == NULL) {
			rc = LGR_EINVAL;
			goto out;
		}
	}
	n = events__envelope__get_packed_size(env);
	buf = malloc(n > 0 ? n : 1);
	if (buf == NULL) {
		rc = LGR_ENOMEM;
		goto out;
	}
	*out_len = events__envelope__pack(env, buf);
	*out = buf;
	buf = NULL; /* ownership transferred */
out:
	free(buf);
	return rc;
}

void lgr_v1_free(Events__Envelope *env)
{
	if (env != NULL)
		protobuf_c_message_free_unpacked(&env->base, NULL);
}

/* --- text helpers shared by both directions --------------------------------------------------------------------- */

static const char *or_empty(const char *s)
{
	return s != NULL ? s : "";
}

/* A malloc'd copy of len bytes as a NUL-terminated string. */
static char *mem_str(const void *p, size_t len)
{
	char *s;

	if (len == SIZE_MAX)
		return NULL;
	s = malloc(len + 1);
	if (s == NULL)
		return NULL;
	if (len > 0)
		memcpy(s, p, len);
	s[len] = '\0';
	return s;
}

static char *str_dup(const char *s)
{
	return strdup(or_empty(s));
}

/* The UUID as the real converters print it: its 16 little-endian bytes as lower-case 8-4-4-4-12 hex. */
static void uuid_format(const Events__UUID *u, char out[37])
{
	static const char hex[] = "0123456789abcdef";
	uint8_t b[16];
	size_t i, o = 0;

	for (i = 0; i < 8; i++) {
		b[i] = (uint8_t)(u->low >> (8 * i));
		b[8 + i] = (uint8_t)(u->high >> (8 * i));
	}
	for (i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[o++] = '-';
		out[o++] = hex[b[i] >> 4];
		out[o++] = hex[b[i] & 0xf];
	}
	out[o] = '\0';
}

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* The reverse of uuid_format (either case of hex); false for anything that is not 36 characters of UUID text. */
static bool uuid_parse(const char *s, uint64_t *low, uint64_t *high)
{
	uint8_t b[16];
	size_t i, n = 0;
	int hi, lo;

	if (s == NULL || strlen(s) != 36)
		return false;
	for (i = 0; i < 36;) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return false;
			i++;
			continue;
		}
		hi = hex_digit(s[i]);
		lo = hex_digit(s[i + 1]);
		if (hi < 0 || lo < 0)
			return false;
		b[n++] = (uint8_t)(hi << 4 | lo);
		i += 2;
	}
	*low = 0;
	*high = 0;
	for (i = 0; i < 8; i++) {
		*low |= (uint64_t)b[i] << (8 * i);
		*high |= (uint64_t)b[8 + i] << (8 * i);
	}
	return true;
}

/* A decimal integer as Go's strconv.ParseInt(s, 10, 64) takes it: optional sign, digits only, in range. */
static bool parse_int64(const char *s, int64_t *out)
{
	bool neg = false;
	uint64_t v = 0, lim;
	const char *p = s;

	if (p == NULL)
		return false;
	if (*p == '+' || *p == '-')
		neg = *p++ == '-';
	if (*p == '\0')
		return false;
	lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
	for (; *p != '\0'; p++) {
		if (*p < '0' || *p > '9')
			return false;
		if (v > (lim - (uint64_t)(*p - '0')) / 10)
			return false;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	*out = neg ? (int64_t)(0 - v) : (int64_t)v;
	return true;
}

static bool parse_int32(const char *s, int32_t *out)
{
	int64_t v;

	if (!parse_int64(s, &v) || v < INT32_MIN || v > INT32_MAX)
		return false;
	*out = (int32_t)v;
	return true;
}

/* The real converter's atoi: the number, or 0 for anything that is not one. */
static int64_t atoi64(const char *s)
{
	int64_t v;

	return parse_int64(s, &v) ? v : 0;
}

/* Go's int32(x) of an int64: the low 32 bits. */
static int32_t low32(int64_t v)
{
	return (int32_t)(uint32_t)(uint64_t)v;
}

/* double -> integer without C's undefined behaviour outside the range: NaN gives 0, the rest saturates. */
static uint64_t clamp_u64(double v)
{
	if (!(v > 0))
		return 0;
	if (v >= 18446744073709551616.0)
		return UINT64_MAX;
	return (uint64_t)v;
}

static int32_t clamp_i32(double v)
{
	if (isnan(v))
		return 0;
	if (v <= (double)INT32_MIN)
		return INT32_MIN;
	if (v >= (double)INT32_MAX)
		return INT32_MAX;
	return (int32_t)v;
}

/* --- v1 -> v2 -------------------------------------------------------------------------------------------------- */

/* The value of the last v1 tag with this key (protobuf's last-wins rule for map entries), or NULL. */
static const char *v1_tag(const Events__Envelope *v1, const char *key)
{
	size_t i;

	for (i = v1->n_tags; i-- > 0;)
		if (v1->tags[i] != NULL && strcmp(or_empty(v1->tags[i]->key), key) == 0)
			return or_empty(v1->tags[i]->value);
	return NULL;
}

static int set_tag_int(struct lgr_env *env, const char *key, int64_t v)
{
	char num[24];

	snprintf(num, sizeof(num), "%lld", (long long)v);
	return lgr_env_set_tag(env, key, num);
}

static int set_instance_index(struct lgr_env *env, int32_t index)
{
	char num[16];

	snprintf(num, sizeof(num), "%d", index);
	return lgr_env_set_instance_id(env, num);
}

/* The name of an enum value, or the number as text for a value the schema does not know (Go's String()). */
static int set_tag_enum(struct lgr_env *env, const char *key, const ProtobufCEnumDescriptor *desc, int value)
{
	const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(desc, value);

	return v != NULL ? lgr_env_set_tag(env, key, v->name) : set_tag_int(env, key, value);
}

static int conv_log(const Events__Envelope *v1, struct lgr_env *env)
{
	const Events__LogMessage *m = v1->logmessage;
	/* OUT for OUT and for any value the schema does not know, as the real converter maps by name */
	Loggregator__V2__Log__Type type = m->message_type == EVENTS__LOG_MESSAGE__MESSAGE_TYPE__ERR
						  ? LOGGREGATOR__V2__LOG__TYPE__ERR
						  : LOGGREGATOR__V2__LOG__TYPE__OUT;
	int rc = LGR_OK;

	if (m->source_type != NULL)
		rc = lgr_env_set_tag(env, "source_type", m->source_type);
	if (rc == LGR_OK && m->source_instance != NULL && m->source_instance[0] != '\0')
		rc = lgr_env_set_instance_id(env, m->source_instance);
	if (rc == LGR_OK && m->app_id != NULL && m->app_id[0] != '\0')
		rc = lgr_env_set_source_id(env, m->app_id);
	if (rc == LGR_OK)
		rc = lgr_env_set_log(env, m->message.data, m->message.len, type);
	return rc;
}

static int conv_value(const Events__Envelope *v1, struct lgr_env *env)
{
	const Events__ValueMetric *m = v1->valuemetric;
	const char *instance = v1_tag(v1, "instance_id");
	int rc = LGR_OK;

	if (instance != NULL && instance[0] != '\0')
		rc = lgr_env_set_instance_id(env, instance);
	if (rc == LGR_OK)
		rc = lgr_env_set_gauge(env);
	if (rc == LGR_OK)
		rc = lgr_env_add_metric(env, or_empty(m->name), or_empty(m->unit), m->value);
	return rc;
}

static int conv_counter(const Events__Envelope *v1, struct lgr_env *env)
{
	const Events__CounterEvent *m = v1->counterevent;
	const char *instance = v1_tag(v1, "instance_id");
	int rc = LGR_OK;

	if (instance != NULL && instance[0] != '\0')
		rc = lgr_env_set_instance_id(env, instance);
	if (rc == LGR_OK)
		rc = lgr_env_del_tag(env, "instance_id");
	if (rc == LGR_OK)
		rc = lgr_env_set_counter(env, or_empty(m->name), m->delta, m->has_total ? m->total : 0);
	return rc;
}

static int conv_error(const Events__Envelope *v1, struct lgr_env *env)
{
	const Events__Error *m = v1->error;
	const char *msg = or_empty(m->message);
	int rc;

	rc = lgr_env_set_tag(env, "source", or_empty(m->source));
	if (rc == LGR_OK)
		rc = set_tag_int(env, "code", m->code);
	if (rc == LGR_OK)
		rc = lgr_env_set_log(env, msg, strlen(msg), LOGGREGATOR__V2__LOG__TYPE__OUT);
	return rc;
}

static int conv_container(const Events__Envelope *v1, struct lgr_env *env)
{
	const Events__ContainerMetric *m = v1->containermetric;
	int rc = LGR_OK;

	if (m->applicationid != NULL && m->applicationid[0] != '\0')
		rc = lgr_env_set_source_id(env, m->applicationid);
	if (rc == LGR_OK)
		rc = set_instance_index(env, m->instanceindex);
	if (rc == LGR_OK)
		rc = lgr_env_set_gauge(env);
	if (rc == LGR_OK)
		rc = lgr_env_add_metric(env, "cpu", "percentage", m->cpupercentage);
	if (rc == LGR_OK)
		rc = lgr_env_add_metric(env, "memory", "bytes", (double)m->memorybytes);
	if (rc == LGR_OK)
		rc = lgr_env_add_metric(env, "disk", "bytes", (double)m->diskbytes);
	if (rc == LGR_OK)
		rc = lgr_env_add_metric(
			env, "memory_quota", "bytes", m->has_memorybytesquota ? (double)m->memorybytesquota : 0);
	if (rc == LGR_OK)
		rc = lgr_env_add_metric(
			env, "disk_quota", "bytes", m->has_diskbytesquota ? (double)m->diskbytesquota : 0);
	return rc;
}

/* The forwarded entries joined with "\n", malloc'd. */
static char *join_forwarded(const Events__HttpStartStop *m)
{
	size_t i, n = 0, o = 0;
	char *s;

	for (i = 0; i < m->n_forwarded; i++)
		n += strlen(or_empty(m->forwarded[i])) + 1;
	s = malloc(n > 0 ? n : 1);
	if (s == NULL)
		return NULL;
	for (i = 0; i < m->n_forwarded; i++) {
		size_t l = strlen(or_empty(m->forwarded[i]));

		if (i > 0)
			s[o++] = '\n';
		memcpy(s + o, or_empty(m->forwarded[i]), l);
		o += l;
	}
	s[o] = '\0';
	return s;
}

static int conv_http(const Events__Envelope *v1, struct lgr_env *env)
{
	const Events__HttpStartStop *m = v1->httpstartstop;
	char uuid[37];
	char *fwd = NULL;
	int rc = LGR_OK;

	if (m->applicationid != NULL && (m->applicationid->low != 0 || m->applicationid->high != 0)) {
		uuid_format(m->applicationid, uuid);
		rc = lgr_env_set_source_id(env, uuid);
	}
	if (rc == LGR_OK && m->has_instanceindex)
		rc = set_instance_index(env, m->instanceindex);
	if (rc == LGR_OK)
		rc = lgr_env_set_timer(env, "http", m->starttimestamp, m->stoptimestamp);
	if (rc == LGR_OK && m->requestid != NULL) {
		uuid_format(m->requestid, uuid);
		rc = lgr_env_set_tag(env, "request_id", uuid);
	}
	if (rc == LGR_OK)
		rc = set_tag_enum(env, "peer_type", &events__peer_type__descriptor, (int)m->peertype);
	if (rc == LGR_OK)
		rc = set_tag_enum(env, "method", &events__method__descriptor, (int)m->method);
	if (rc == LGR_OK)
		rc = lgr_env_set_tag(env, "uri", or_empty(m->uri));
	if (rc == LGR_OK)
		rc = lgr_env_set_tag(env, "remote_address", or_empty(m->remoteaddress));
	if (rc == LGR_OK)
		rc = lgr_env_set_tag(env, "user_agent", or_empty(m->useragent));
	if (rc == LGR_OK)
		rc = set_tag_int(env, "status_code", m->statuscode);
	if (rc == LGR_OK && m->has_contentlength)
		rc = set_tag_int(env, "content_length", m->contentlength);
	if (rc == LGR_OK && m->instanceid != NULL)
		rc = lgr_env_set_tag(env, "routing_instance_id", m->instanceid);
	if (rc == LGR_OK && m->n_forwarded > 0) {
		fwd = join_forwarded(m);
		rc = fwd != NULL ? lgr_env_set_tag(env, "forwarded", fwd) : LGR_ENOMEM;
	}
	free(fwd);
	return rc;
}

/* deployment + "/" + job, malloc'd: the agent's source_id for an envelope that names none. */
static char *default_source_id(const Events__Envelope *v1)
{
	const char *d = or_empty(v1->deployment), *j = or_empty(v1->job);
	size_t dl = strlen(d), jl = strlen(j);
	char *s = malloc(dl + jl + 2);

	if (s != NULL) {
		memcpy(s, d, dl);
		s[dl] = '/';
		memcpy(s + dl + 1, j, jl + 1);
	}
	return s;
}

static int conv_common(const Events__Envelope *v1, struct lgr_env *env)
{
	static const struct {
		const char *key;
		size_t off;
	} ident[] = {
		{"origin", offsetof(Events__Envelope, origin)},
		{"deployment", offsetof(Events__Envelope, deployment)},
		{"job", offsetof(Events__Envelope, job)},
		{"index", offsetof(Events__Envelope, index)},
		{"ip", offsetof(Events__Envelope, ip)},
	};
	const char *sid;
	char *fallback = NULL;
	size_t i;
	int rc = LGR_OK;

	env->pb->timestamp = v1->timestamp;
	for (i = 0; i < v1->n_tags && rc == LGR_OK; i++)
		if (v1->tags[i] != NULL)
			rc = lgr_env_set_tag(env, or_empty(v1->tags[i]->key), or_empty(v1->tags[i]->value));
	for (i = 0; i < sizeof(ident) / sizeof(ident[0]) && rc == LGR_OK; i++) {
		const char *v = *(char *const *)((const char *)v1 + ident[i].off);

		if (v != NULL)
			rc = lgr_env_set_tag(env, ident[i].key, v);
	}
	if (rc == LGR_OK)
		rc = lgr_env_set_tag(env, "__v1_type", lgr_v1_type_name(v1->eventtype));
	if (rc != LGR_OK)
		goto out;
	sid = v1_tag(v1, "source_id");
	if (sid == NULL) {
		fallback = default_source_id(v1);
		if (fallback == NULL) {
			rc = LGR_ENOMEM;
			goto out;
		}
		sid = fallback;
	}
	rc = lgr_env_set_source_id(env, sid);
	if (rc == LGR_OK)
		rc = lgr_env_del_tag(env, "source_id");
out:
	free(fallback);
	return rc;
}

int lgr_v1_to_v2(const Events__Envelope *v1, struct lgr_env **out)
{
	struct lgr_env *env = NULL;
	int rc;

	if (out == NULL || v1 == NULL) {
		rc = LGR_EINVAL;
		goto out;
	}
	*out = NULL;
	if (lgr_v1_type_name(v1->eventtype) == NULL) {
		rc = LGR_EUNSUPPORTED;
		goto out;
	}
	if (event_message(v1) == NULL) {
		rc = LGR_EMISSING;
		goto out;
	}
	env = lgr_env_new();
	if (env == NULL) {
		rc = LGR_ENOMEM;
		goto out;
	}
	rc = conv_common(v1, env);
	if (rc != LGR_OK)
		goto out;
	switch (v1->eventtype) {
	case EVENTS__ENVELOPE__EVENT_TYPE__LogMessage: rc = conv_log(v1, env); break;
	case EVENTS__ENVELOPE__EVENT_TYPE__ValueMetric: rc = conv_value(v1, env); break;
	case EVENTS__ENVELOPE__EVENT_TYPE__CounterEvent: rc = conv_counter(v1, env); break;
	case EVENTS__ENVELOPE__EVENT_TYPE__Error: rc = conv_error(v1, env); break;
	case EVENTS__ENVELOPE__EVENT_TYPE__ContainerMetric: rc = conv_container(v1, env); break;
	case EVENTS__ENVELOPE__EVENT_TYPE__HttpStartStop: rc = conv_http(v1, env); break;
	default: rc = LGR_EUNSUPPORTED; break; /* excluded above */
	}
	if (rc != LGR_OK)
		goto out;
	*out = env;
	env = NULL; /* ownership transferred */
out:
	lgr_env_unref(env);
	return rc;
}

/* --- v2 -> v1 -------------------------------------------------------------------------------------------------- */

/* What a v2 envelope becomes; decides which tags the message consumes. */
enum kind {
	KIND_LOG,
	KIND_ERROR,
	KIND_COUNTER,
	KIND_VALUE,
	KIND_CONTAINER,
	KIND_HTTP,
};

/* One candidate v1 tag; seq orders the sources so that the later one wins, as in the real converter. */
struct tag_item {
	const char *key;
	const char *value;
	size_t seq;
};

/* Everything the v1 envelopes of one v2 envelope share, computed once. */
struct base {
	const struct lgr_env *env;
	enum kind kind;
	char *ident[5]; /* origin, deployment, job, index, ip; malloc'd, never NULL once built */
	struct tag_item *tags;
	size_t n_tags;
	char **owned; /* formatted deprecated tag values the items point into */
	size_t n_owned;
};

static const char *const ident_keys[5] = {"origin", "deployment", "job", "index", "ip"};

/* Text of a v2 Value as the real converter writes it into a v1 tag; *out NULL for a Value without data. */
static int value_text(const Loggregator__V2__Value *v, char **out)
{
	char buf[32];
	const char *s = NULL;
	int n, rc = LGR_OK;

	*out = NULL;
	switch (v != NULL ? v->data_case : LOGGREGATOR__V2__VALUE__DATA__NOT_SET) {
	case LOGGREGATOR__V2__VALUE__DATA_TEXT: s = or_empty(v->text); break;
	case LOGGREGATOR__V2__VALUE__DATA_INTEGER:
		snprintf(buf, sizeof(buf), "%lld", (long long)v->integer);
		s = buf;
		break;
	case LOGGREGATOR__V2__VALUE__DATA_DECIMAL:
		/* Go's %f: six decimals, and its own spelling of the non-finite values */
		if (isnan(v->decimal)) {
			s = "NaN";
		} else if (isinf(v->decimal)) {
			s = v->decimal > 0 ? "+Inf" : "-Inf";
		} else {
			n = snprintf(NULL, 0, "%f", v->decimal);
			*out = n >= 0 ? malloc((size_t)n + 1) : NULL;
			if (*out == NULL) {
				rc = LGR_ENOMEM;
				goto out;
			}
			snprintf(*out, (size_t)n + 1, "%f", v->decimal);
			goto out;
		}
		break;
	default: goto out; /* no data: nothing to write */
	}
	*out = strdup(s);
	if (*out == NULL)
		rc = LGR_ENOMEM;
out:
	return rc;
}

/* tags[key], else deprecated_tags[key] as text: malloc'd in *out, or NULL when neither has the key. */
static int v2_tag(const struct lgr_env *env, const char *key, char **out)
{
	const char *t = lgr_env_tag(env, key);
	int rc = LGR_OK;

	*out = NULL;
	if (t == NULL) {
		rc = value_text(lgr_env_dtag(env, key), out);
		goto out;
	}
	*out = strdup(t);
	if (*out == NULL)
		rc = LGR_ENOMEM;
out:
	return rc;
}

/* As v2_tag, but "" when absent. */
static int v2_tag_or_empty(const struct lgr_env *env, const char *key, char **out)
{
	int rc = v2_tag(env, key, out);

	if (rc == LGR_OK && *out == NULL) {
		*out = strdup("");
		if (*out == NULL)
			rc = LGR_ENOMEM;
	}
	return rc;
}

static bool consumed(enum kind kind, const char *key)
{
	static const char *const common[] = {"__v1_type", "origin", "deployment", "job", "index", "ip", NULL};
	static const char *const log[] = {"source_type", NULL};
	static const char *const error[] = {"source", "code", NULL};
	static const char *const http[] = {"peer_type", "method", "request_id", "uri", "remote_address", "user_agent",
		"status_code", "content_length", "routing_instance_id", "forwarded", NULL};
	const char *const *lists[2] = {common, NULL};
	size_t l, i;

	if (kind == KIND_LOG)
		lists[1] = log;
	else if (kind == KIND_ERROR)
		lists[1] = error;
	else if (kind == KIND_HTTP)
		lists[1] = http;
	for (l = 0; l < 2 && lists[l] != NULL; l++)
		for (i = 0; lists[l][i] != NULL; i++)
			if (strcmp(lists[l][i], key) == 0)
				return true;
	return false;
}

static int item_cmp(const void *a, const void *b)
{
	const struct tag_item *x = a, *y = b;
	int c = strcmp(x->key, y->key);

	if (c != 0)
		return c;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static void base_cleanup(struct base *b)
{
	size_t i;

	for (i = 0; i < 5; i++)
		free(b->ident[i]);
	for (i = 0; i < b->n_owned; i++)
		free(b->owned[i]);
	free(b->owned);
	free(b->tags);
}

/*
 * The v1 tags: tags, then deprecated tags (text), then source_id, then (counters and value metrics) instance_id,
 * the later winning for one key; then without the keys the envelope fields and the message consume. Sorted by key.
 */
static int base_tags(struct base *b)
{
	const Loggregator__V2__Envelope *pb = b->env->pb;
	const char *sid = or_empty(pb->source_id), *iid = or_empty(pb->instance_id);
	size_t n = 0, i, out;
	char *text;
	int rc = LGR_ENOMEM;

	/* b owns what is allocated here even on failure: base_cleanup frees it */
	if (pb->n_tags > SIZE_MAX / 2 / sizeof(*b->tags) || pb->n_deprecated_tags > SIZE_MAX / 2 / sizeof(*b->tags))
		goto out;
	b->tags = malloc((pb->n_tags + pb->n_deprecated_tags + 2) * sizeof(*b->tags));
	b->owned = malloc((pb->n_deprecated_tags > 0 ? pb->n_deprecated_tags : 1) * sizeof(*b->owned));
	if (b->tags == NULL || b->owned == NULL)
		goto out;
	for (i = 0; i < pb->n_tags; i++, n++)
		b->tags[n] = (struct tag_item){or_empty(pb->tags[i]->key), or_empty(pb->tags[i]->value), n};
	for (i = 0; i < pb->n_deprecated_tags; i++) {
		rc = value_text(pb->deprecated_tags[i]->value, &text);
		if (rc != LGR_OK)
			goto out;
		if (text == NULL)
			continue; /* a Value without data carries nothing */
		b->owned[b->n_owned++] = text;
		b->tags[n] = (struct tag_item){or_empty(pb->deprecated_tags[i]->key), text, n};
		n++;
	}
	if (sid[0] != '\0') {
		b->tags[n] = (struct tag_item){"source_id", sid, n};
		n++;
	}
	if ((b->kind == KIND_COUNTER || b->kind == KIND_VALUE) && iid[0] != '\0') {
		b->tags[n] = (struct tag_item){"instance_id", iid, n};
		n++;
	}
	qsort(b->tags, n, sizeof(*b->tags), item_cmp);
	for (i = 0, out = 0; i < n; i++) {
		if (i + 1 < n && strcmp(b->tags[i].key, b->tags[i + 1].key) == 0)
			continue; /* a later source has this key */
		if (consumed(b->kind, b->tags[i].key))
			continue;
		b->tags[out++] = b->tags[i];
	}
	b->n_tags = out;
	rc = LGR_OK;
out:
	return rc;
}

static int base_init(struct base *b, const struct lgr_env *env, enum kind kind)
{
	size_t i;
	int rc = LGR_OK;

	memset(b, 0, sizeof(*b));
	b->env = env;
	b->kind = kind;
	for (i = 0; i < 5 && rc == LGR_OK; i++)
		rc = v2_tag_or_empty(env, ident_keys[i], &b->ident[i]);
	if (rc == LGR_OK)
		rc = base_tags(b);
	return rc;
}

/* A new v1 envelope with the shared fields of b; the caller sets the message. */
static int v1_new(const struct base *b, Events__Envelope__EventType type, Events__Envelope **out)
{
	Events__Envelope *v1 = malloc(sizeof(*v1));
	size_t i;
	int rc = LGR_ENOMEM;

	*out = NULL;
	if (v1 == NULL)
		goto out;
	events__envelope__init(v1);
	v1->eventtype = type;
	v1->has_timestamp = 1;
	v1->timestamp = b->env->pb->timestamp;
	v1->origin = strdup(b->ident[0]);
	v1->deployment = strdup(b->ident[1]);
	v1->job = strdup(b->ident[2]);
	v1->index = strdup(b->ident[3]);
	v1->ip = strdup(b->ident[4]);
	if (v1->origin == NULL || v1->deployment == NULL || v1->job == NULL || v1->index == NULL || v1->ip == NULL)
		goto out;
	v1->tags = malloc((b->n_tags > 0 ? b->n_tags : 1) * sizeof(*v1->tags));
	if (v1->tags == NULL)
		goto out;
	for (i = 0; i < b->n_tags; i++) {
		Events__Envelope__TagsEntry *e = malloc(sizeof(*e));

		if (e == NULL)
			goto out;
		events__envelope__tags_entry__init(e);
		v1->tags[v1->n_tags++] = e;
		e->key = strdup(b->tags[i].key);
		e->value = strdup(b->tags[i].value);
		if (e->key == NULL || e->value == NULL)
			goto out;
	}
	*out = v1;
	v1 = NULL; /* ownership transferred */
	rc = LGR_OK;
out:
	lgr_v1_free(v1);
	return rc;
}

static int from_log(const struct base *b, lgr_v1_sink *fn, void *ud)
{
	const Loggregator__V2__Envelope *pb = b->env->pb;
	const Loggregator__V2__Log *log = pb->log;
	Events__Envelope *v1 = NULL;
	Events__LogMessage *m;
	int rc;

	rc = v1_new(b, EVENTS__ENVELOPE__EVENT_TYPE__LogMessage, &v1);
	if (rc != LGR_OK)
		goto out;
	rc = LGR_ENOMEM;
	m = v1->logmessage = malloc(sizeof(*m));
	if (m == NULL)
		goto out;
	events__log_message__init(m);
	m->message.data = malloc(log->payload.len > 0 ? log->payload.len : 1);
	if (m->message.data == NULL)
		goto out;
	if (log->payload.len > 0)
		memcpy(m->message.data, log->payload.data, log->payload.len);
	m->message.len = log->payload.len;
	m->message_type = EVENTS__LOG_MESSAGE__MESSAGE_TYPE__ERR;
	if (log->type == LOGGREGATOR__V2__LOG__TYPE__OUT)
		m->message_type = EVENTS__LOG_MESSAGE__MESSAGE_TYPE__OUT;
	m->timestamp = pb->timestamp;
	m->app_id = str_dup(pb->source_id);
	m->source_instance = str_dup(pb->instance_id);
	if (m->app_id == NULL || m->source_instance == NULL)
		goto out;
	rc = v2_tag_or_empty(b->env, "source_type", &m->source_type);
	if (rc != LGR_OK)
		goto out;
	rc = fn(v1, ud);
	v1 = NULL; /* ownership transferred */
out:
	lgr_v1_free(v1);
	return rc;
}

static int from_error(const struct base *b, lgr_v1_sink *fn, void *ud)
{
	const Loggregator__V2__Log *log = b->env->pb->log;
	Events__Envelope *v1 = NULL;
	Events__Error *m;
	char *code = NULL;
	int rc;

	rc = v1_new(b, EVENTS__ENVELOPE__EVENT_TYPE__Error, &v1);
	if (rc != LGR_OK)
		goto out;
	rc = LGR_ENOMEM;
	m = v1->error = malloc(sizeof(*m));
	if (m == NULL)
		goto out;
	events__error__init(m);
	m->message = mem_str(log->payload.data, log->payload.len);
	if (m->message == NULL)
		goto out;
	rc = v2_tag_or_empty(b->env, "source", &m->source);
	if (rc == LGR_OK)
		rc = v2_tag(b->env, "code", &code);
	if (rc != LGR_OK)
		goto out;
	m->code = low32(atoi64(code));
	rc = fn(v1, ud);
	v1 = NULL; /* ownership transferred */
out:
	free(code);
	lgr_v1_free(v1);
	return rc;
}

static int from_counter(const struct base *b, lgr_v1_sink *fn, void *ud)
{
	const Loggregator__V2__Counter *c = b->env->pb->counter;
	Events__Envelope *v1 = NULL;
	Events__CounterEvent *m;
	int rc;

	rc = v1_new(b, EVENTS__ENVELOPE__EVENT_TYPE__CounterEvent, &v1);
	if (rc != LGR_OK)
		goto out;
	rc = LGR_ENOMEM;
	m = v1->counterevent = malloc(sizeof(*m));
	if (m == NULL)
		goto out;
	events__counter_event__init(m);
	m->name = str_dup(c->name);
	if (m->name == NULL)
		goto out;
	m->delta = c->delta;
	m->has_total = 1;
	m->total = c->total;
	rc = fn(v1, ud);
	v1 = NULL; /* ownership transferred */
out:
	lgr_v1_free(v1);
	return rc;
}

static const char *metric_name(const Loggregator__V2__Gauge__MetricsEntry *e)
{
	return or_empty(e->key);
}

/* The last metric with this name, or NULL. */
static const Loggregator__V2__Gauge__MetricsEntry *metric_find(const Loggregator__V2__Gauge *g, const char *name)
{
	size_t i;

	for (i = g->n_metrics; i-- > 0;)
		if (strcmp(metric_name(g->metrics[i]), name) == 0)
			return g->metrics[i];
	return NULL;
}

static double metric_value(const Loggregator__V2__Gauge__MetricsEntry *e)
{
	return e != NULL && e->value != NULL ? e->value->value : 0;
}

static const char *metric_unit(const Loggregator__V2__Gauge__MetricsEntry *e)
{
	return e != NULL && e->value != NULL ? or_empty(e->value->unit) : "";
}

static const char *const container_keys[5] = {"cpu", "memory", "disk", "memory_quota", "disk_quota"};

/* The real converter's test: all five container metrics, none of them wholly zero (no unit and value 0). */
static bool is_container(const Loggregator__V2__Gauge *g)
{
	const Loggregator__V2__Gauge__MetricsEntry *e;
	size_t i;

	for (i = 0; i < 5; i++) {
		e = metric_find(g, container_keys[i]);
		if (e == NULL || (metric_unit(e)[0] == '\0' && metric_value(e) == 0))
			return false;
	}
	return true;
}

static int from_container(const struct base *b, lgr_v1_sink *fn, void *ud)
{
	const Loggregator__V2__Envelope *pb = b->env->pb;
	const Loggregator__V2__Gauge *g = pb->gauge;
	const Loggregator__V2__Gauge__MetricsEntry *idx = metric_find(g, "instance_index");
	Events__Envelope *v1 = NULL;
	Events__ContainerMetric *m;
	int32_t index = 0;
	int rc;

	rc = v1_new(b, EVENTS__ENVELOPE__EVENT_TYPE__ContainerMetric, &v1);
	if (rc != LGR_OK)
		goto out;
	rc = LGR_ENOMEM;
	m = v1->containermetric = malloc(sizeof(*m));
	if (m == NULL)
		goto out;
	events__container_metric__init(m);
	m->applicationid = str_dup(pb->source_id);
	if (m->applicationid == NULL)
		goto out;
	if (idx != NULL)
		index = clamp_i32(metric_value(idx));
	else if (!parse_int32(or_empty(pb->instance_id), &index))
		index = 0;
	m->instanceindex = index;
	m->cpupercentage = metric_value(metric_find(g, "cpu"));
	m->memorybytes = clamp_u64(metric_value(metric_find(g, "memory")));
	m->diskbytes = clamp_u64(metric_value(metric_find(g, "disk")));
	m->has_memorybytesquota = 1;
	m->memorybytesquota = clamp_u64(metric_value(metric_find(g, "memory_quota")));
	m->has_diskbytesquota = 1;
	m->diskbytesquota = clamp_u64(metric_value(metric_find(g, "disk_quota")));
	rc = fn(v1, ud);
	v1 = NULL; /* ownership transferred */
out:
	lgr_v1_free(v1);
	return rc;
}

/* A metric and its position, so that sorting by name keeps the last entry of a name recognisable. */
struct metric_ref {
	const Loggregator__V2__Gauge__MetricsEntry *e;
	size_t pos;
};

static int metric_ref_cmp(const void *a, const void *b)
{
	const struct metric_ref *x = a, *y = b;
	int c = strcmp(metric_name(x->e), metric_name(y->e));

	if (c != 0)
		return c;
	return x->pos < y->pos ? -1 : x->pos > y->pos;
}

static int from_values(const struct base *b, lgr_v1_sink *fn, void *ud)
{
	const Loggregator__V2__Gauge *g = b->env->pb->gauge;
	struct metric_ref *order = NULL;
	Events__Envelope *v1 = NULL;
	Events__ValueMetric *m;
	size_t i, n = g->n_metrics;
	int rc = LGR_OK;

	if (n == 0)
		goto out;
	/* Sorting references, not the entries: env is shared and read-only. */
	order = n <= SIZE_MAX / sizeof(*order) ? malloc(n * sizeof(*order)) : NULL;
	if (order == NULL) {
		rc = LGR_ENOMEM;
		goto out;
	}
	for (i = 0; i < n; i++)
		order[i] = (struct metric_ref){g->metrics[i], i};
	qsort(order, n, sizeof(*order), metric_ref_cmp);
	for (i = 0; i < n; i++) {
		if (i + 1 < n && strcmp(metric_name(order[i].e), metric_name(order[i + 1].e)) == 0)
			continue; /* a later entry has this name */
		rc = v1_new(b, EVENTS__ENVELOPE__EVENT_TYPE__ValueMetric, &v1);
		if (rc != LGR_OK)
			goto out;
		rc = LGR_ENOMEM;
		m = v1->valuemetric = malloc(sizeof(*m));
		if (m == NULL)
			goto out;
		events__value_metric__init(m);
		m->name = strdup(metric_name(order[i].e));
		m->unit = strdup(metric_unit(order[i].e));
		if (m->name == NULL || m->unit == NULL)
			goto out;
		m->value = metric_value(order[i].e);
		rc = fn(v1, ud);
		v1 = NULL; /* ownership transferred */
		if (rc != LGR_OK)
			goto out;
	}
out:
	lgr_v1_free(v1);
	free(order);
	return rc;
}

static int enum_by_name(const ProtobufCEnumDescriptor *desc, const char *name)
{
	const ProtobufCEnumValue *v = name != NULL ? protobuf_c_enum_descriptor_get_value_by_name(desc, name) : NULL;

	return v != NULL ? v->value : 0;
}

static Events__UUID *uuid_new(uint64_t low, uint64_t high)
{
	Events__UUID *u = malloc(sizeof(*u));

	if (u != NULL) {
		events__uuid__init(u);
		u->low = low;
		u->high = high;
	}
	return u;
}

/* Splits s at "\n" into m->forwarded (each piece malloc'd). */
static int split_forwarded(Events__HttpStartStop *m, const char *s)
{
	size_t n = 1, i;
	const char *p, *nl;
	int rc = LGR_ENOMEM;

	for (p = s; *p != '\0'; p++)
		n += *p == '\n';
	m->forwarded = malloc(n * sizeof(*m->forwarded));
	if (m->forwarded == NULL)
		goto out;
	for (i = 0, p = s; i < n; i++) {
		nl = strchr(p, '\n');
		m->forwarded[m->n_forwarded] = mem_str(p, nl != NULL ? (size_t)(nl - p) : strlen(p));
		if (m->forwarded[m->n_forwarded] == NULL)
			goto out;
		m->n_forwarded++;
		if (nl != NULL)
			p = nl + 1;
	}
	rc = LGR_OK;
out:
	return rc;
}

/* The HttpStartStop tags: malloc'd text, NULL where the tag is absent. */
enum http_tag {
	HT_PEER,
	HT_METHOD,
	HT_URI,
	HT_REMOTE,
	HT_AGENT,
	HT_STATUS,
	HT_LENGTH,
	HT_ROUTING,
	HT_FORWARDED,
	HT_COUNT,
};

static const char *const http_keys[HT_COUNT] = {"peer_type", "method", "uri", "remote_address", "user_agent",
	"status_code", "content_length", "routing_instance_id", "forwarded"};

static int fill_http(const struct base *b, Events__HttpStartStop *m, char **t)
{
	const Loggregator__V2__Envelope *pb = b->env->pb;
	uint64_t low, high;
	int32_t index;
	size_t i;
	int rc = LGR_OK;

	for (i = 0; i < HT_COUNT && rc == LGR_OK; i++)
		rc = v2_tag(b->env, http_keys[i], &t[i]);
	if (rc != LGR_OK)
		goto out;
	rc = LGR_ENOMEM;
	m->starttimestamp = pb->timer->start;
	m->stoptimestamp = pb->timer->stop;
	m->peertype = (Events__PeerType)enum_by_name(&events__peer_type__descriptor, t[HT_PEER]);
	m->method = (Events__Method)enum_by_name(&events__method__descriptor, t[HT_METHOD]);
	m->uri = str_dup(t[HT_URI]);
	m->remoteaddress = str_dup(t[HT_REMOTE]);
	m->useragent = str_dup(t[HT_AGENT]);
	if (m->uri == NULL || m->remoteaddress == NULL || m->useragent == NULL)
		goto out;
	m->statuscode = low32(atoi64(t[HT_STATUS]));
	if (t[HT_LENGTH] != NULL) {
		m->has_contentlength = 1;
		m->contentlength = atoi64(t[HT_LENGTH]);
	}
	if (t[HT_ROUTING] != NULL) {
		m->instanceid = strdup(t[HT_ROUTING]);
		if (m->instanceid == NULL)
			goto out;
	}
	if (parse_int32(or_empty(pb->instance_id), &index)) {
		m->has_instanceindex = 1;
		m->instanceindex = index;
	}
	if (uuid_parse(pb->source_id, &low, &high)) {
		m->applicationid = uuid_new(low, high);
		if (m->applicationid == NULL)
			goto out;
	}
	rc = t[HT_FORWARDED] != NULL ? split_forwarded(m, t[HT_FORWARDED]) : LGR_OK;
out:
	return rc;
}

static int from_timer(const struct base *b, lgr_v1_sink *fn, void *ud)
{
	Events__Envelope *v1 = NULL;
	Events__HttpStartStop *m;
	char *request = NULL;
	char *t[HT_COUNT] = {NULL};
	uint64_t low, high;
	size_t i;
	int rc;

	rc = v2_tag(b->env, "request_id", &request);
	if (rc != LGR_OK)
		goto out;
	/* requestId is required; the real traffic controller cannot marshal a timer without one and drops it */
	if (!uuid_parse(request, &low, &high)) {
		rc = LGR_EUNSUPPORTED;
		goto out;
	}
	rc = v1_new(b, EVENTS__ENVELOPE__EVENT_TYPE__HttpStartStop, &v1);
	if (rc != LGR_OK)
		goto out;
	rc = LGR_ENOMEM;
	m = v1->httpstartstop = malloc(sizeof(*m));
	if (m == NULL)
		goto out;
	events__http_start_stop__init(m);
	m->requestid = uuid_new(low, high);
	if (m->requestid == NULL)
		goto out;
	rc = fill_http(b, m, t);
	if (rc != LGR_OK)
		goto out;
	rc = fn(v1, ud);
	v1 = NULL; /* ownership transferred */
out:
	for (i = 0; i < HT_COUNT; i++)
		free(t[i]);
	free(request);
	lgr_v1_free(v1);
	return rc;
}

/* A Log that came from a v1 Error carries __v1_type "Error" (read without allocating: no failure to report). */
static bool is_error_log(const struct lgr_env *env)
{
	const char *type = lgr_env_tag(env, "__v1_type");
	const Loggregator__V2__Value *v;

	if (type == NULL) {
		v = lgr_env_dtag(env, "__v1_type");
		if (v != NULL && v->data_case == LOGGREGATOR__V2__VALUE__DATA_TEXT)
			type = v->text;
	}
	return type != NULL && strcmp(type, "Error") == 0;
}

int lgr_v1_from_v2(const struct lgr_env *env, lgr_v1_sink *fn, void *ud)
{
	struct base b;
	enum kind kind;
	int rc;

	memset(&b, 0, sizeof(b));
	if (env == NULL || fn == NULL) {
		rc = LGR_EINVAL;
		goto out;
	}
	switch (lgr_env_type(env)) {
	case LGR_ENV_LOG: kind = is_error_log(env) ? KIND_ERROR : KIND_LOG; break;
	case LGR_ENV_COUNTER: kind = KIND_COUNTER; break;
	case LGR_ENV_GAUGE: kind = is_container(env->pb->gauge) ? KIND_CONTAINER : KIND_VALUE; break;
	case LGR_ENV_TIMER: kind = KIND_HTTP; break;
	default: rc = LGR_EUNSUPPORTED; goto out;
	}
	rc = base_init(&b, env, kind);
	if (rc != LGR_OK)
		goto out;
	switch (kind) {
	case KIND_LOG: rc = from_log(&b, fn, ud); break;
	case KIND_ERROR: rc = from_error(&b, fn, ud); break;
	case KIND_COUNTER: rc = from_counter(&b, fn, ud); break;
	case KIND_CONTAINER: rc = from_container(&b, fn, ud); break;
	case KIND_VALUE: rc = from_values(&b, fn, ud); break;
	case KIND_HTTP: rc = from_timer(&b, fn, ud); break;
	}
out:
	base_cleanup(&b);
	return rc;
}

/* --- UDP ingress defaults --------------------------------------------------------------------------------------- */

static int fill_absent(char **field, const char *def)
{
	if (*field != NULL)
		return LGR_OK;
	*field = str_dup(def);
	return *field != NULL ? LGR_OK : LGR_ENOMEM;
}

int lgr_v1_apply_defaults(Events__Envelope *env, const struct lgr_v1_defaults *def)
{
	Events__Envelope__TagsEntry *e = NULL, **grown;
	char *origin = NULL;
	size_t i;
	int rc = LGR_EINVAL;

	if (env == NULL || def == NULL)
		goto out;
	rc = fill_absent(&env->deployment, def->deployment);
	if (rc == LGR_OK)
		rc = fill_absent(&env->job, def->job);
	if (rc == LGR_OK)
		rc = fill_absent(&env->index, def->index);
	if (rc == LGR_OK)
		rc = fill_absent(&env->ip, def->ip);
	if (rc != LGR_OK)
		goto out;
	for (i = env->n_tags; i-- > 0;)
		if (env->tags[i] != NULL && strcmp(or_empty(env->tags[i]->key), "source_id") == 0)
			break;
	if (i != SIZE_MAX && env->tags[i]->value != NULL && env->tags[i]->value[0] != '\0')
		goto out; /* the emitter named its source */
	rc = LGR_ENOMEM;
	origin = str_dup(env->origin);
	if (origin == NULL)
		goto out;
	if (i != SIZE_MAX) {
		free(env->tags[i]->value);
		env->tags[i]->value = origin;
		origin = NULL; /* ownership transferred */
		rc = LGR_OK;
		goto out;
	}
	e = malloc(sizeof(*e));
	if (e == NULL)
		goto out;
	events__envelope__tags_entry__init(e);
	e->key = strdup("source_id");
	if (e->key == NULL || env->n_tags >= SIZE_MAX / sizeof(*grown) - 1)
		goto out;
	grown = realloc(env->tags, (env->n_tags + 1) * sizeof(*grown));
	if (grown == NULL)
		goto out;
	env->tags = grown;
	e->value = origin;
	origin = NULL; /* ownership transferred */
	env->tags[env->n_tags++] = e;
	e = NULL; /* ownership transferred */
	rc = LGR_OK;
out:
	if (e != NULL)
		protobuf_c_message_free_unpacked(&e->base, NULL);
	free(origin);
	return rc;
}
