/*
 * bench_syslog.c: throughput of the drain formatters (lgr_syslog) on one core: a typical app log line with the tags
 * the platform sets, framed for syslog-tls; the same without metadata; a three-metric gauge; a Logplex HTTPS frame.
 * Lines go into one buffer that is reset every 1000 lines, as a drain writer would flush it.
 *
 *   bench_syslog [--count N]     (N: envelopes per figure, default 1000000)
 *
 * Prints figures and never judges them: timing depends on the machine.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lgr_syslog.h"

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static struct lgr_env *app_log(void)
{
	static const char *const tags[][2] = {{"source_type", "APP/PROC/WEB"}, {"organization_name", "system"},
		{"space_name", "production"}, {"app_name", "checkout-service"}, {"deployment", "cf"},
		{"index", "3b6b1c2a-1e1f-4a33-9a5d-2f7e4c1a0b9d"}, {"ip", "10.0.16.21"}, {"job", "diego-cell"},
		{"origin", "rep"}, {"process_id", "9be15160-4845-4f05-b089-40e827ba61f1"}, {"process_type", "web"},
		{"process_instance_id", "6f1c2b9e-3d7a-4e55-8c1b-0a9f8e7d6c5b"}};
	static const char msg[] = "10.0.0.7 - - [14/Nov/2023:22:13:20 +0000] \"GET /api/v1/orders/8812 HTTP/1.1\" 200 "
				  "1532 \"-\" \"okhttp/4.11.0\" response_time=0.012";
	struct lgr_env *env = lgr_env_new();
	size_t i;

	lgr_env_set_source_id(env, "9be15160-4845-4f05-b089-40e827ba61f1");
	lgr_env_set_instance_id(env, "2");
	lgr_env_set_log(env, msg, sizeof(msg) - 1, LOGGREGATOR__V2__LOG__TYPE__OUT);
	env->pb->timestamp = INT64_C(1700000000123456789);
	for (i = 0; i < sizeof(tags) / sizeof(tags[0]); i++)
		lgr_env_set_tag(env, tags[i][0], tags[i][1]);
	return env;
}

static struct lgr_env *gauge(void)
{
	struct lgr_env *env = app_log();

	lgr_env_set_gauge(env);
	lgr_env_add_metric(env, "cpu", "percentage", 0.2345);
	lgr_env_add_metric(env, "memory", "bytes", 123456789);
	lgr_env_add_metric(env, "disk", "bytes", 1073741824);
	return env;
}

static void run(const char *name, struct lgr_env *env, bool omit, bool logplex, long count)
{
	struct lgr_syslog_opts o = {"fallback", omit};
	char src[LGR_LOGPLEX_FIELD_MAX + 1], proc[LGR_LOGPLEX_FIELD_MAX + 1];
	struct lgr_logplex_line l;
	struct lgr_syslog_buf b;
	size_t lines = 0, n, bytes = 0;
	double t0, dt;
	long i;

	lgr_syslog_buf_init(&b, 0);
	t0 = now();
	for (i = 0; i < count; i++) {
		if (i % 1000 == 0) {
			bytes += b.len;
			lgr_syslog_buf_reset(&b);
		}
		if (logplex) {
			lgr_logplex_from_env(env, "host", &l, src, proc);
			if (lgr_logplex_format(&l, LGR_LOGPLEX_HTTPS, &b, &n) != LGR_OK)
				exit(1);
		} else if (lgr_syslog_format(env, &o, LGR_SYSLOG_OCTET, &b, &n) != LGR_OK) {
			exit(1);
		}
		lines += n;
	}
	dt = now() - t0;
	bytes += b.len;
	printf("%-34s %10.0f envelopes/s %10.0f lines/s %8.1f MB/s\n", name, (double)count / dt, (double)lines / dt,
		(double)bytes / dt / 1e6);
	lgr_syslog_buf_cleanup(&b);
}

int main(int argc, char **argv)
{
	long count = 1000000;
	struct lgr_env *log = app_log(), *g = gauge();

	if (argc == 3 && strcmp(argv[1], "--count") == 0)
		count = atol(argv[2]);
	if (count <= 0) {
		fprintf(stderr, "usage: bench_syslog [--count N]\n");
		return 2;
	}
	run("cf log, 12 tags, octet-counted", log, false, false, count);
	run("cf log, metadata disabled", log, true, false, count);
	run("cf gauge, 3 metrics, 12 tags", g, false, false, count / 3);
	run("logplex https frame", log, false, true, count);
	lgr_env_unref(log);
	lgr_env_unref(g);
	return 0;
}
