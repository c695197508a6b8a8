/*
 * msgenv.h: an rsyslog message back to a Loggregator v2 envelope, for the outputs (omdoppler, omfirehose). Include
 * after rsyslog's headers ("rsyslog.h", "msg.h", "objomsr.h").
 *
 * Two kinds of messages reach an output:
 * - from imloggregator: the message carries the whole envelope in $!loggregator (the JSON form without the log
 *   payload) and the payload as %msg%. The envelope is rebuilt from both without loss (lgr_fjson_parse), every type,
 *   binary payloads included (the %msg% bytes are taken by length, so NUL bytes survive);
 * - from any other input (imfile, imtcp, imjournal): the message becomes a Log envelope: payload %msg%, source_id
 *   and instance_id from the caller's rendered templates or else %app-name% and %procid% ("-", rsyslog's nil value,
 *   becomes ""), tags["source_type"] from the caller's template or else "APP" (where Loggregator keeps a log's
 *   source type), type ERR for severities emerg..err and OUT otherwise, timestamp %timereported% in UNIX ns.
 *
 * Threads: reentrant. The message is only read; its JSON is read under the message's own mutex, as rsyslog's
 * accessors do, because a ruleset running on another thread may still set variables of a message an output holds.
 */
#ifndef LGR_MSGENV_H
#define LGR_MSGENV_H

#include <stdbool.h>
#include <stdint.h>

#include "lgr.h"
#include "lgr_env.h"
#include "lgr_fjson.h"

/* Rendered templates for messages not from imloggregator; a NULL member takes the default described above. */
struct msgenv_tpl {
	const char *source_id;
	const char *instance_id;
	const char *source_type;
};

/*
 * Where an action finds those templates among its doAction parameters: entry 0 is the message itself
 * (OMSR_TPL_AS_MSG), the configured templates follow, in this order, unconfigured ones left out.
 */
struct msgenv_tpl_slots {
	const char *names[3]; /* the configured template names (borrowed), n of them */
	int n;
	int source_id, instance_id, source_type; /* parameter index; 0: not configured */
};

/* Lays out the slots for the configured template names (NULL: not configured; borrowed). */
void msgenv_tpl_slots_init(
	struct msgenv_tpl_slots *s, const char *source_id, const char *instance_id, const char *source_type);

/*
 * Fills omsr, made by CODE_STD_STRING_REQUESTnewActInst(1 + s->n): the message as entry 0, then each template.
 * RS_RET_OK or RS_RET_OUT_OF_MEMORY.
 */
rsRetVal msgenv_tpl_request(const struct msgenv_tpl_slots *s, omodStringRequest_t *omsr);

/* The rendered templates of one doAction call. */
void msgenv_tpl_get(const struct msgenv_tpl_slots *s, void **params, struct msgenv_tpl *out);

/*
 * Builds the envelope of msg into *out (refcount 1, the caller's). lim bounds what $!loggregator may hold (NULL:
 * defaults). When from_iml is not NULL it tells whether msg carried $!loggregator.
 * Returns LGR_OK; for a message that carried $!loggregator, lgr_fjson_parse()'s errors when the tree cannot be
 * read back (LGR_EDECODE, LGR_ELIMIT, LGR_ETOOBIG, LGR_EUNSUPPORTED); LGR_EDECODE when $!loggregator is not an
 * object; LGR_EINVAL (NULL argument); LGR_ENOMEM. On error *out is NULL.
 */
int msgenv_build(
	smsg_t *msg, const struct msgenv_tpl *tpl, const struct lgr_limits *lim, struct lgr_env **out, bool *from_iml);

/*
 * As msgenv_build, for an output that only reads the envelope briefly (to encode it): a message that carries
 * $!loggregator is read into scratch (lgr_fjson_parse_scratch: no allocation per envelope), *view valid until the
 * scratch's next use, *owned NULL; another message's envelope is built as msgenv_build does, *owned = *view = it,
 * for the caller to release (lgr_env_unref). Errors as msgenv_build's (also LGR_EINVAL for a NULL scratch); on
 * error *view and *owned are NULL.
 */
int msgenv_read(smsg_t *msg, const struct msgenv_tpl *tpl, const struct lgr_limits *lim,
	struct lgr_env_scratch *scratch, const struct lgr_env **view, struct lgr_env **owned, bool *from_iml);

/*
 * Where the fast path's bytes go: given the measure (m->size bytes; m->source_id for the caller's own use), returns
 * LGR_OK and *dst with room for them, or an error that msgenv_pack_log() returns as it is.
 */
typedef int msgenv_place_fn(void *ud, const struct lgr_fjson_log *m, uint8_t **dst);

/*
 * The encoding an output needs, the fast way, for the commonest message: one imloggregator made of a Log envelope
 * (the trees lgr_fjson_log_measure() takes). place() is called once with the measure and the encoding written where
 * it says, with the message's mutex held; the bytes are those lgr_env_pack() writes for msgenv_read()'s envelope.
 * Returns LGR_OK; place()'s error; LGR_EUNSUPPORTED, without calling place(), for every other message: read it with
 * msgenv_read() or msgenv_build(). LGR_EINVAL for a NULL argument.
 */
int msgenv_pack_log(smsg_t *msg, const struct lgr_limits *lim, msgenv_place_fn *place, void *ud);

/*
 * The syslog time t (any UTC offset, any fraction precision) as UNIX ns; 0 for an unset time (timeType 0).
 * Exposed for tests.
 */
int64_t msgenv_time_ns(const struct syslogTime *t);

#endif
