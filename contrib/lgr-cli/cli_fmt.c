/*
 * cli_fmt.c: envelopes as `lgr` prints them.
 *
 * Text is the cf CLI's log line: the envelope's timestamp in local time as Go's "2006-01-02T15:04:05.00-0700"
 * (hundredths truncated, numeric zone), "[SOURCE_TYPE/INSTANCE]" from the source_type tag and the instance_id,
 * OUT or ERR, then the payload; a payload of several lines prints one line each, all with the same header, as cf
 * does. Metrics, which cf never shows, get one line in the same layout with the type in place of OUT/ERR:
 *   COUNTER requests delta=1 total=42
 *   GAUGE cpu=12.5 percentage memory=1048576 bytes      (metrics in name order)
 *   TIMER http 1.500 ms                                  (stop - start)
 *   EVENT title: body
 * JSON is the gateway's form (lgr_json), one envelope per line.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "lgr_json.h"
#include "lgr_text.h"

void cli_fmt_time(int64_t ns, char *buf, size_t len)
{
	time_t secs = (time_t)(ns / 1000000000);
	int64_t frac = ns % 1000000000;
	struct tm tm;
	char date[32], zone[8];

	if (frac < 0) { /* before 1970: floor, as Go does */
		frac += 1000000000;
		secs--;
	}
	localtime_r(&secs, &tm);
	strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm);
	strftime(zone, sizeof(zone), "%z", &tm);
	snprintf(buf, len, "%s.%02d%s", date, (int)(frac / 10000000), zone);
}

static void header(const struct lgr_env *env, char *buf, size_t len)
{
	const char *st = lgr_env_tag(env, "source_type");
	char ts[40];

	cli_fmt_time(env->pb->timestamp, ts, sizeof(ts));
	snprintf(buf, len, "%s [%s/%s]", ts, st != NULL ? st : "", env->pb->instance_id);
}

static int cmp_metric(const void *a, const void *b)
{
	const Loggregator__V2__Gauge__MetricsEntry *const *x = a, *const *y = b;

	return strcmp((*x)->key, (*y)->key);
}

static int print_gauge(FILE *out, const Loggregator__V2__Gauge *g)
{
	Loggregator__V2__Gauge__MetricsEntry **sorted = NULL;
	locale_t old;
	int rc = 0;

	if (g->n_metrics > 0) {
		sorted = malloc(g->n_metrics * sizeof(*sorted));
		if (sorted == NULL)
			return -1;
		memcpy(sorted, g->metrics, g->n_metrics * sizeof(*sorted));
		qsort(sorted, g->n_metrics, sizeof(*sorted), cmp_metric);
	}
	old = lgr_text_c_locale_enter();
	fputs("GAUGE", out);
	for (size_t i = 0; i < g->n_metrics; i++) {
		char num[LGR_TEXT_DOUBLE_MAX];
		double v = sorted[i]->value != NULL ? sorted[i]->value->value : 0;
		const char *unit = sorted[i]->value != NULL ? sorted[i]->value->unit : "";

		if (v != v)
			snprintf(num, sizeof(num), "NaN");
		else if (v > 1e308 || v < -1e308)
			snprintf(num, sizeof(num), "%s", v > 0 ? "Infinity" : "-Infinity");
		else
			lgr_text_double(v, num);
		if (fprintf(out, " %s=%s%s%s", sorted[i]->key, num, *unit ? " " : "", unit) < 0)
			rc = -1;
	}
	lgr_text_c_locale_leave(old);
	free(sorted);
	return rc;
}

int cli_fmt_text(FILE *out, const struct lgr_env *env)
{
	const Loggregator__V2__Envelope *pb = env->pb;
	char head[512];
	int rc = 0;

	header(env, head, sizeof(head));
	switch (pb->message_case) {
	case LOGGREGATOR__V2__ENVELOPE__MESSAGE_LOG: {
		const char *type = pb->log->type == LOGGREGATOR__V2__LOG__TYPE__ERR ? "ERR" : "OUT";
		const char *p = (const char *)pb->log->payload.data;
		size_t left = pb->log->payload.len;

		/* A trailing newline ends the last line; it does not start an empty one. */
		if (left > 0 && p[left - 1] == '\n')
			left--;
		do {
			const char *nl = left > 0 ? memchr(p, '\n', left) : NULL;
			size_t n = nl != NULL ? (size_t)(nl - p) : left;
			size_t shown = n;

			while (shown > 0 && (p[shown - 1] == '\r' || p[shown - 1] == '\n'))
				shown--;
			if (fprintf(out, "%s %s ", head, type) < 0 || fwrite(p, 1, shown, out) != shown ||
				fputc('\n', out) == EOF)
				rc = -1;
			p += nl != NULL ? n + 1 : n;
			left -= nl != NULL ? n + 1 : n;
			if (nl == NULL)
				break;
		} while (true);
		return rc;
	}
	case LOGGREGATOR__V2__ENVELOPE__MESSAGE_COUNTER:
		return fprintf(out, "%s COUNTER %s delta=%" PRIu64 " total=%" PRIu64 "\n", head, pb->counter->name,
			       pb->counter->delta, pb->counter->total) < 0
			       ? -1
			       : 0;
	case LOGGREGATOR__V2__ENVELOPE__MESSAGE_GAUGE:
		if (fprintf(out, "%s ", head) < 0 || print_gauge(out, pb->gauge) != 0 || fputc('\n', out) == EOF)
			return -1;
		return 0;
	case LOGGREGATOR__V2__ENVELOPE__MESSAGE_TIMER: {
		double ms = ((double)pb->timer->stop - (double)pb->timer->start) / 1e6;
		locale_t old = lgr_text_c_locale_enter();

		rc = fprintf(out, "%s TIMER %s %.3f ms\n", head, pb->timer->name, ms) < 0 ? -1 : 0;
		lgr_text_c_locale_leave(old);
		return rc;
	}
	case LOGGREGATOR__V2__ENVELOPE__MESSAGE_EVENT:
		return fprintf(out, "%s EVENT %s: %s\n", head, pb->event->title, pb->event->body) < 0 ? -1 : 0;
	default: return fprintf(out, "%s NONE\n", head) < 0 ? -1 : 0;
	}
}

int cli_fmt_json(FILE *out, const struct lgr_env *env)
{
	char *text = NULL;
	size_t len = 0;
	int rc = -1;

	if (lgr_json_write(env, 0, &text, &len) != LGR_OK)
		goto out;
	if (fwrite(text, 1, len, out) != len || fputc('\n', out) == EOF)
		goto out;
	rc = 0;
out:
	free(text);
	return rc;
}
