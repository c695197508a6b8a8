/*
 * iml_msg.h: one envelope as one rsyslog message (config.md, "A message inside rsyslog"). Include after rsyslog's
 * headers.
 *
 * Threads: an iml_msg_ctx belongs to one submitter thread; the envelope is only read.
 */
#ifndef IML_MSG_H
#define IML_MSG_H

#include "iml.h"

/* The props are the caller's to release (prop.Destruct) when the context is done. */
struct iml_msg_ctx {
	ruleset_t *ruleset; /* NULL: the default ruleset */
	prop_t *input_name; /* "imloggregator", shared */
	const uchar *hostname;
	int hostname_len;
	prop_t *from;	 /* the last sender's address as %fromhost%, reused while it does not change */
	prop_t *from_ip; /* the same as %fromhost-ip% */
	struct lgr_fjson_strings *strings; /* the thread's shared string nodes (NULL: none); the caller frees it */
	const struct lgr_fjson_wire_rules *rules; /* role agent: its rules for iml_msg_build_wire (NULL: router) */
};

/*
 * Builds the message for env (which stays the caller's), received from ip ("" when unknown): %msg% the log payload or a
 * one-line summary, app-name source_id, procid instance_id, TAG source_id, timestamp the envelope's (received time when
 * it is 0), severity err for ERR logs and info otherwise, facility user, $!loggregator the envelope's JSON form without
 * the payload. now / now_tt: the reception time to stamp. RS_RET_OK and *out (refcount 1, the caller's), or an error.
 */
rsRetVal iml_msg_build(struct iml_msg_ctx *ctx, const struct lgr_env *env, const char *ip, const struct syslogTime *now,
	time_t now_tt, smsg_t **out);

/*
 * As iml_msg_build for the envelope encoded in buf[0, len) (checked already), built straight from its bytes: the
 * hot path of both roles. Takes the envelopes every sender makes (see lgr_fjson_build_log_wire; with ctx->rules, the
 * agent's rules are applied on the way as lgr_fjson_build_log_wire_rules applies them); RS_RET_NOT_FOUND for any
 * other, which the caller then decodes (and gives to lgr_agent_apply) and to iml_msg_build. The message is the same
 * either way.
 */
rsRetVal iml_msg_build_wire(struct iml_msg_ctx *ctx, const uint8_t *buf, size_t len, const char *ip,
	const struct syslogTime *now, time_t now_tt, smsg_t **out);

#endif
