/*
 * lgr_env.h: the v2 envelope as the core passes it around: a reference-counted wrapper of the protobuf-c
 * message, immutable once shared, with its protobuf encoding computed at most once.
 *
 * Ownership: lgr_env_new/lgr_env_take/decoders return a reference the caller owns (refcount 1). lgr_env_ref adds
 * a reference, lgr_env_unref drops one and frees the envelope with the last. The setters may be used only while
 * the caller holds the only reference and no other thread can see the envelope; afterwards the envelope is
 * read-only and may be read from any thread.
 *
 * Every part of env->pb is allocated with malloc so that protobuf_c_message_free_unpacked() with the system
 * allocator frees it; code that builds or edits env->pb by hand must keep to that (the setters do).
 */
#ifndef LGR_ENV_H
#define LGR_ENV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lgr.h"
#include "envelope.pb-c.h"

enum lgr_env_type {
	LGR_ENV_NONE = 0, /* no message set (valid on the wire, but carries nothing) */
	LGR_ENV_LOG,
	LGR_ENV_COUNTER,
	LGR_ENV_GAUGE,
	LGR_ENV_TIMER,
	LGR_ENV_EVENT,
};

struct lgr_env {
	Loggregator__V2__Envelope *pb; /* owned; never NULL */
	/* private below */
	int refs;      /* atomic */
	uint8_t *wire; /* cached encoding; set once, atomically */
	size_t wire_len;
};

/* A new empty envelope (all fields zero), refcount 1; NULL when out of memory. */
struct lgr_env *lgr_env_new(void);

/* Wraps pb, which must be allocated as described above; takes ownership of pb even on failure (NULL). */
struct lgr_env *lgr_env_take(Loggregator__V2__Envelope *pb);

struct lgr_env *lgr_env_ref(struct lgr_env *env);
void lgr_env_unref(struct lgr_env *env); /* NULL is a no-op */

enum lgr_env_type lgr_env_type(const struct lgr_env *env);
/* "log", "counter", "gauge", "timer", "event", or "none". */
const char *lgr_env_type_name(enum lgr_env_type type);

/* The value of tags[key], or NULL. deprecated_tags are not consulted. */
const char *lgr_env_tag(const struct lgr_env *env, const char *key);
/* The deprecated tag key's Value, or NULL. */
const Loggregator__V2__Value *lgr_env_dtag(const struct lgr_env *env, const char *key);

/*
 * Setters for building an envelope. All copy their arguments. Each returns LGR_OK or LGR_ENOMEM; on failure the
 * envelope is unchanged. Setting a message (log, counter, ...) replaces any message already set; adding a tag or
 * metric whose key exists replaces its value.
 */
int lgr_env_set_source_id(struct lgr_env *env, const char *source_id);
int lgr_env_set_instance_id(struct lgr_env *env, const char *instance_id);
int lgr_env_set_tag(struct lgr_env *env, const char *key, const char *value);
int lgr_env_del_tag(struct lgr_env *env, const char *key); /* LGR_OK whether or not it was there */
int lgr_env_set_dtag_text(struct lgr_env *env, const char *key, const char *text);
int lgr_env_set_dtag_integer(struct lgr_env *env, const char *key, int64_t integer);
int lgr_env_set_dtag_decimal(struct lgr_env *env, const char *key, double decimal);
int lgr_env_set_log(struct lgr_env *env, const void *payload, size_t len, Loggregator__V2__Log__Type type);
int lgr_env_set_counter(struct lgr_env *env, const char *name, uint64_t delta, uint64_t total);
int lgr_env_set_gauge(struct lgr_env *env); /* an empty gauge; then lgr_env_add_metric */
int lgr_env_add_metric(struct lgr_env *env, const char *name, const char *unit, double value);
int lgr_env_set_timer(struct lgr_env *env, const char *name, int64_t start, int64_t stop);
int lgr_env_set_event(struct lgr_env *env, const char *title, const char *body);

/*
 * Decodes one Envelope from buf. The wire form is checked against lim (NULL: defaults) before anything is
 * allocated: size, tag and metric counts, nesting depth, well-formed field keys and lengths.
 * Returns LGR_OK and *out, or LGR_ETOOBIG, LGR_ELIMIT, LGR_EDECODE, LGR_ENOMEM (and *out NULL).
 */
int lgr_env_decode(const uint8_t *buf, size_t len, const struct lgr_limits *lim, struct lgr_env **out);

/*
 * The second half of lgr_env_decode, for bytes that lgr_pb_check_envelope() (or lgr_pb_check_batch(), for one of
 * its records) has accepted: a receiver checks on its network thread, answers the sender, and leaves the
 * allocations to the thread that uses the envelope. Returns LGR_OK and *out, or LGR_ENOMEM (LGR_EDECODE only for
 * bytes that were not checked).
 */
int lgr_env_unpack(const uint8_t *buf, size_t len, struct lgr_env **out);

/*
 * Scratch decoding, for a thread that reads each envelope briefly and lets it go (imloggregator's submitter builds
 * a message from it): the envelope is unpacked into a block of memory the scratch owns and reuses, instead of a
 * dozen or more small allocations that would be freed one by one. Each lgr_env_scratch_unpack() starts the block
 * over, so the view it returns is valid until the next unpack into the same scratch or its free. A view is read-only:
 * never pass it to lgr_env_ref/lgr_env_unref or a setter. One scratch belongs to one thread at a time.
 */
struct lgr_env_scratch;

int lgr_env_scratch_new(struct lgr_env_scratch **out); /* LGR_OK or LGR_ENOMEM */
void lgr_env_scratch_free(struct lgr_env_scratch *s);  /* NULL is a no-op */

/* As lgr_env_unpack, for checked bytes: LGR_OK and *view, or LGR_ENOMEM. */
int lgr_env_scratch_unpack(struct lgr_env_scratch *s, const uint8_t *buf, size_t len, const struct lgr_env **view);

/*
 * Building a view by hand (lgr_fjson_parse_scratch): lgr_env_scratch_begin starts the block over, as an unpack does;
 * lgr_env_scratch_alloc hands out aligned memory from it (NULL when out of memory), valid until the next begin,
 * unpack or free; lgr_env_scratch_view wraps pb, allocated that way, as the scratch's view.
 */
void lgr_env_scratch_begin(struct lgr_env_scratch *s);
void *lgr_env_scratch_alloc(struct lgr_env_scratch *s, size_t size);
const struct lgr_env *lgr_env_scratch_view(struct lgr_env_scratch *s, Loggregator__V2__Envelope *pb);

/* The size of env's encoding, and the encoding written to buf (which has that many bytes), without caching it: for
 * views, and for writing it straight where it is kept. */
size_t lgr_env_packed_size(const struct lgr_env *env);
void lgr_env_pack(const struct lgr_env *env, uint8_t *buf);

/*
 * Decodes an EnvelopeBatch, handing each envelope to fn in order (fn takes ownership of env). The whole batch is
 * checked before the first envelope is decoded, so fn sees either every envelope or none. A non-zero return of fn
 * stops the walk and is returned. Unknown fields of the batch are skipped.
 * Returns LGR_OK, an error as lgr_env_decode, or fn's code.
 */
typedef int lgr_env_sink(struct lgr_env *env, void *ud);
int lgr_env_decode_batch(const uint8_t *buf, size_t len, const struct lgr_limits *lim, lgr_env_sink *fn, void *ud);

/*
 * The protobuf encoding of env, computed on first use and cached (thread-safe: concurrent callers get the same
 * bytes). *data stays valid as long as the caller's reference. Returns LGR_OK or LGR_ENOMEM.
 */
int lgr_env_encode(struct lgr_env *env, const uint8_t **data, size_t *len);

/*
 * Appends the EnvelopeBatch encoding of envs to a malloc'd buffer: each envelope as a field-1 record of its cached
 * encoding, so a batch costs one copy per envelope. *out is malloc'd and owned by the caller.
 */
int lgr_env_encode_batch(struct lgr_env *const *envs, size_t n, uint8_t **out, size_t *out_len);

/* True when a and b carry the same content (map order ignored, doubles compared bitwise). For tests and tools. */
bool lgr_env_equal(const struct lgr_env *a, const struct lgr_env *b);

#endif
