/*
 * iml_msg.c: one envelope as one rsyslog message (see iml_msg.h for the mapping).
 *
 * This is the submitter's hot path: every property is set with the cheapest call that gives it (props reused
 * while the sender does not change, the JSON tree built directly by lgr_fjson, the timestamp from the envelope
 * without a time zone lookup).
 */
#include "../common/rsconfig.h" /* rsyslog's config.h, first */

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rsyslog.h"
#include "msg.h"

#include "iml.h"
#include "iml_msg.h"
#include "lgr.h"
#include "lgr_fjson.h"
#include "lgr_text.h"

#define FACILITY_USER 1
#define SEVERITY_ERR  3
#define SEVERITY_INFO 6
#define SUMMARY_MAX   1024 /* a metric's one-line summary is cut here */

/* The envelope's nanoseconds as an RFC 5424 timestamp in UTC with microseconds (rsyslog keeps no finer). */
static void envelope_time(int64_t ns, struct syslogTime *t)
{
	struct lgr_civil c;

	lgr_civil_time(ns, &c);
	memset(t, 0, sizeof(*t));
	t->timeType = 2;
	t->year = (short)c.year;
	t->month = (intTiny)c.month;
	t->day = (intTiny)c.day;
	t->wday = (intTiny)c.wday;
	t->hour = (intTiny)c.hour;
	t->minute = (intTiny)c.minute;
	t->second = (intTiny)c.second;
	t->secfrac = c.nsec / 1000;
	t->secfracPrecision = 6;
	t->OffsetMode = 'Z';
	t->inUTC = 1;
}

/* "counter requests delta=2 total=4", "gauge cpu=12.5 percentage memory=1048576 bytes", "timer http 1500000ns",
 * "event deploy: body". Returns the length written (cut at len - 1). */
static size_t summary(const Loggregator__V2__Envelope *pb, char *buf, size_t len)
{
	char num[LGR_TEXT_DOUBLE_MAX];
	locale_t old;
	size_t n = 0, i;
	int w = 0;

#define PUT(...)                                                                                                       \
	do {                                                                                                           \
		w = snprintf(buf + n, len - n, __VA_ARGS__);                                                           \
		n = w < 0 ? n : (size_t)w >= len - n ? len - 1 : n + (size_t)w;                                        \
	} while (0)
	switch (pb->message_case) {
	case LOGGREGATOR__V2__ENVELOPE__MESSAGE_COUNTER:
		PUT("counter %s delta=%" PRIu64 " total=%" PRIu64, pb->counter->name, pb->counter->delta,
			pb->counter->total);
		break;
	case LOGGREGATOR__V2__ENVELOPE__MESSAGE_GAUGE:
		PUT("gauge");
		old = lgr_text_c_locale_enter();
		for (i = 0; i < pb->gauge->n_metrics; i++) {
			const Loggregator__V2__GaugeValue *g = pb->gauge->metrics[i]->value;

			if (g != NULL && isnan(g->value))
				strcpy(num, "NaN");
			else if (g != NULL && isinf(g->value))
				strcpy(num, g->value < 0 ? "-Infinity" : "Infinity");
			else
				lgr_text_double(g != NULL ? g->value : 0, num);
			PUT(" %s=%s%s%s", pb->gauge->metrics[i]->key, num, g != NULL && g->unit[0] ? " " : "",
				g != NULL ? g->unit : "");
		}
		lgr_text_c_locale_leave(old);
		break;
	case LOGGREGATOR__V2__ENVELOPE__MESSAGE_TIMER:
		PUT("timer %s %" PRId64 "ns", pb->timer->name, pb->timer->stop - pb->timer->start);
		break;
	case LOGGREGATOR__V2__ENVELOPE__MESSAGE_EVENT: PUT("event %s: %s", pb->event->title, pb->event->body); break;
	default: PUT("envelope without a message"); break;
	}
#undef PUT
	return n;
}

/* What a message is made of, from a decoded envelope or straight from its bytes. */
struct parts {
	int64_t timestamp;	 /* ns; 0: the reception time */
	const char *source_id;	 /* NUL-terminated, may be empty */
	const char *instance_id; /* likewise */
	const char *text;	 /* %msg% */
	size_t text_len;
	int severity;
	struct fjson_object *tree; /* $!loggregator: taken in every case */
};

/*
 * Makes p->tree the message's $!loggregator (taking it in every case). The message has no variables yet, so its root
 * is built here and handed over whole: the key is the constant below rather than a copy, and rsyslog has no path
 * to parse. A ruleset that replaces or unsets $!loggregator later does so as on any other root (libfastjson frees
 * only keys it copied).
 */
static rsRetVal set_tree(smsg_t *msg, struct parts *p)
{
	static const char key[] = "loggregator";
	struct fjson_object *root = fjson_object_new_object();

	if (root == NULL)
		return RS_RET_OUT_OF_MEMORY;
	fjson_object_object_add_ex(root, key, p->tree, FJSON_OBJECT_ADD_KEY_IS_NEW | FJSON_OBJECT_KEY_IS_CONSTANT);
	if (fjson_object_object_length(root) != 1) { /* not taken: no room for the member */
		fjson_object_put(root);
		return RS_RET_OUT_OF_MEMORY;
	}
	p->tree = NULL;
	return msgAddJSON(msg, (uchar *)"!", root, 0, 0);
}

static rsRetVal build(struct iml_msg_ctx *ctx, struct parts *p, const char *ip, const struct syslogTime *now,
	time_t now_tt, smsg_t **out)
{
	size_t ip_len = strlen(ip);
	smsg_t *msg = NULL;
	DEFiRet;

	CHKiRet(msgConstructWithTime(&msg, now, now_tt));
	if (p->timestamp != 0)
		envelope_time(p->timestamp, &msg->tTIMESTAMP);
	MsgSetInputName(msg, ctx->input_name);
	MsgSetFlowControlType(msg, eFLOWCTL_FULL_DELAY);
	MsgSetRuleset(msg, ctx->ruleset);
	msg->msgFlags = 0; /* every property is set here: no parser runs */
	MsgSetRawMsg(msg, p->text, p->text_len);
	MsgSetMSGoffs(msg, 0);
	msgSetPRI(msg, (syslog_pri_t)(FACILITY_USER * 8 + p->severity));
	MsgSetHOSTNAME(msg, ctx->hostname, ctx->hostname_len);
	if (ip_len > 0) {
		MsgSetRcvFromStr(msg, (const uchar *)ip, (int)ip_len, &ctx->from);
		CHKiRet(MsgSetRcvFromIPStr(msg, (const uchar *)ip, (int)ip_len, &ctx->from_ip));
	}
	if (p->source_id[0] != '\0') {
		MsgSetTAG(msg, (const uchar *)p->source_id, strlen(p->source_id));
		CHKiRet(MsgSetAPPNAME(msg, p->source_id));
	}
	if (p->instance_id[0] != '\0')
		CHKiRet(MsgSetPROCID(msg, p->instance_id));
	CHKiRet(set_tree(msg, p));
	*out = msg;
	msg = NULL;
finalize_it:
	if (p->tree != NULL)
		fjson_object_put(p->tree);
	p->tree = NULL;
	if (msg != NULL)
		msgDestruct(&msg);
	RETiRet;
}

rsRetVal iml_msg_build(struct iml_msg_ctx *ctx, const struct lgr_env *env, const char *ip, const struct syslogTime *now,
	time_t now_tt, smsg_t **out)
{
	const Loggregator__V2__Envelope *pb = env->pb;
	char text[SUMMARY_MAX];
	struct parts p = {
		.timestamp = pb->timestamp,
		.source_id = pb->source_id != NULL ? pb->source_id : "",
		.instance_id = pb->instance_id != NULL ? pb->instance_id : "",
		.severity = SEVERITY_INFO,
	};

	if (pb->message_case == LOGGREGATOR__V2__ENVELOPE__MESSAGE_LOG) {
		p.text = (const char *)pb->log->payload.data;
		p.text_len = pb->log->payload.len;
		if (pb->log->type == LOGGREGATOR__V2__LOG__TYPE__ERR)
			p.severity = SEVERITY_ERR;
	} else {
		p.text_len = summary(pb, text, sizeof(text));
		p.text = text;
	}
	if (lgr_fjson_build(env, LGR_JSON_NO_PAYLOAD, &p.tree) != LGR_OK)
		return RS_RET_OUT_OF_MEMORY;
	return build(ctx, &p, ip, now, now_tt, out);
}

rsRetVal iml_msg_build_wire(struct iml_msg_ctx *ctx, const uint8_t *buf, size_t len, const char *ip,
	const struct syslogTime *now, time_t now_tt, smsg_t **out)
{
	struct lgr_fjson_wire_log w;
	struct parts p;
	int rc = lgr_fjson_build_log_wire_rules(buf, len, ctx->strings, ctx->rules, &w);

	if (rc == LGR_EUNSUPPORTED)
		return RS_RET_NOT_FOUND;
	if (rc != LGR_OK)
		return RS_RET_OUT_OF_MEMORY;
	p = (struct parts){
		.timestamp = w.timestamp,
		.source_id = w.source_id,
		.instance_id = w.instance_id,
		.text = (const char *)w.payload,
		.text_len = w.payload_len,
		.severity = w.err ? SEVERITY_ERR : SEVERITY_INFO,
		.tree = w.tree,
	};
	return build(ctx, &p, ip, now, now_tt, out);
}
