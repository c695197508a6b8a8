/*
 * bench_dwriter.c: throughput of one syslog:// drain writer (lgr_dwriter) into an in-process TCP sink on
 * 127.0.0.1: lines per second, and the writer thread's CPU time per line (the sink reads in its own thread, so its
 * cost is not counted). The line is a typical CF RFC 5424 app log line; the writer frames it (octet counting).
 * Lines are offered as the caller would: one by one until LGR_EFULL, then the loop runs until on_ready.
 *
 *   bench_dwriter [--count N] [--size BYTES] [--max-pending BYTES]
 *
 * Prints figures and never judges them: timing depends on the machine.
 */
#define _GNU_SOURCE /* RUSAGE_THREAD */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "lgr_drain.h"
#include "lgr_dwriter.h"

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU seconds of the calling thread. */
static double thread_cpu(void)
{
	struct rusage ru;

	getrusage(RUSAGE_THREAD, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
	       (double)ru.ru_stime.tv_usec / 1e6;
}

struct sink {
	int lfd;
	unsigned long long bytes, want;
};

/* Accepts one connection and reads until want bytes arrived (or the peer closes). */
static void *sink_main(void *arg)
{
	struct sink *s = arg;
	static char buf[1 << 16];
	int fd = accept(s->lfd, NULL, NULL);

	if (fd < 0)
		return NULL;
	while (s->bytes < s->want) {
		ssize_t n = read(fd, buf, sizeof(buf));

		if (n <= 0)
			break;
		__atomic_add_fetch(&s->bytes, (unsigned long long)n, __ATOMIC_RELAXED);
	}
	close(fd);
	return NULL;
}

static int ready;

static void on_ready(void *ud)
{
	(void)ud;
	ready = 1;
}

static void on_error(enum lgr_drain_reason why, const char *text, void *ud)
{
	(void)ud;
	fprintf(stderr, "drain error (%d): %s\n", (int)why, text);
}

int main(int argc, char **argv)
{
	long count = 1000000, size = 300;
	size_t max_pending = 0;
	struct sockaddr_in sin = {0};
	socklen_t sl = sizeof(sin);
	struct sink sink = {0};
	pthread_t th;
	char url[64], *line, head[24];
	struct lgr_drain *d = NULL;
	enum lgr_drain_reason why;
	struct event_base *base;
	struct lgr_dw_ctx *ctx;
	struct lgr_dw_ctx_conf cc = {0};
	struct lgr_dw_conf c = {0};
	struct lgr_dw *w;
	double t0, c0, t1, c1;
	long i, refusals = 0;

	for (int a = 1; a + 1 < argc; a += 2) {
		if (strcmp(argv[a], "--count") == 0)
			count = atol(argv[a + 1]);
		else if (strcmp(argv[a], "--size") == 0)
			size = atol(argv[a + 1]);
		else if (strcmp(argv[a], "--max-pending") == 0)
			max_pending = (size_t)atol(argv[a + 1]);
	}
	if (count <= 0 || size < 8) {
		fprintf(stderr, "usage: bench_dwriter [--count N] [--size BYTES] [--max-pending BYTES]\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	line = malloc((size_t)size);
	snprintf(line, (size_t)size,
		"<14>1 2023-11-14T22:13:20.123456+00:00 system.production.checkout-service "
		"9be15160-4845-4f05-b089-40e827ba61f1 [APP/PROC/WEB/2] - [tags@47450 source_type=\"APP/PROC/WEB\"] ");
	for (size_t k = strlen(line); k < (size_t)size - 1; k++)
		line[k] = 'x';
	line[size - 1] = '\n';

	sink.lfd = socket(AF_INET, SOCK_STREAM, 0);
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(sink.lfd, (struct sockaddr *)&sin, sizeof(sin)) != 0 || listen(sink.lfd, 4) != 0) {
		perror("sink");
		return 1;
	}
	getsockname(sink.lfd, (struct sockaddr *)&sin, &sl);
	sink.want = (unsigned long long)count *
		    ((unsigned long long)size + (unsigned long long)snprintf(head, sizeof(head), "%ld ", size));
	pthread_create(&th, NULL, sink_main, &sink);

	snprintf(url, sizeof(url), "syslog://127.0.0.1:%u", (unsigned)ntohs(sin.sin_port));
	if (lgr_drain_parse(url, strlen(url), 0, &d, &why) != LGR_OK)
		return 1;
	base = event_base_new();
	cc.base = base;
	if (lgr_dw_ctx_new(&cc, &ctx) != LGR_OK)
		return 1;
	c.drain = d;
	c.max_pending = max_pending;
	c.on_ready = on_ready;
	c.on_error = on_error;
	if (lgr_dw_new(ctx, &c, &w, &why) != LGR_OK)
		return 1;

	t0 = now();
	c0 = thread_cpu();
	for (i = 0; i < count;) {
		int rc = lgr_dw_write(w, line, (size_t)size);

		if (rc == LGR_OK) {
			i++;
			continue;
		}
		if (rc != LGR_EFULL) {
			fprintf(stderr, "write: %s\n", lgr_strerror(rc));
			return 1;
		}
		refusals++;
		ready = 0;
		while (!ready)
			event_base_loop(base, EVLOOP_ONCE);
	}
	while (!lgr_dw_idle(w))
		event_base_loop(base, EVLOOP_ONCE);
	c1 = thread_cpu();
	pthread_join(th, NULL);
	t1 = now();

	printf("syslog writer, %ld lines of %ld bytes, max_pending %zu: %.0f lines/s, %.1f MB/s, "
	       "writer CPU %.3f us/line, %ld refusals; sent %llu, lost %llu, sink got %llu of %llu bytes\n",
		count, size, max_pending != 0 ? max_pending : (size_t)1 << 20, (double)count / (t1 - t0),
		(double)sink.bytes / (t1 - t0) / 1e6, (c1 - c0) * 1e6 / (double)count, refusals,
		(unsigned long long)lgr_dw_counters(w)->sent, (unsigned long long)lgr_dw_counters(w)->lost, sink.bytes,
		sink.want);
	lgr_dw_free(w);
	lgr_dw_ctx_free(ctx);
	lgr_drain_free(d);
	event_base_free(base);
	close(sink.lfd);
	free(line);
	return 0;
}
