/*
 * lgr_dwriter.h: drain writers - one per bound drain, on an event loop of the caller's: syslog:// (TCP) and
 * syslog-tls:// / syslog+tls:// (TLS, RFC 5425) with RFC 6587 octet counting, https:// (one POST per line),
 * https-batch:// (newline-joined lines), and Logplex HTTPS (application/logplex-1 frames). HTTPS goes through
 * libcurl's multi interface driven by the same loop. (drains.md sections 2, 4, 5.)
 *
 * What a writer owns: its connection (or its HTTP requests), the bytes and batches it has accepted, its backoff.
 * What it does not own: a queue of lines. The caller keeps its own drop-oldest buffer and offers lines one by one;
 * a writer that cannot take more answers LGR_EFULL and later calls on_ready, so a dead or slow drain holds up no
 * one: the caller's buffer keeps the newest, the writer holds at most a bounded amount.
 *
 * Behaviour:
 *  - Lazy: nothing is resolved or connected before the first line.
 *  - Every address a drain resolves to is checked against the context's deny ranges before connecting; a denied
 *    drain fails (on_error with LGR_DRAIN_DENIED) and takes nothing until it is freed. Resolution failures are
 *    remembered for 120 s per host (LGR_DRAIN_RESOLVE_SKIPPED).
 *  - syslog/syslog-tls: dial timeout 10 s, write deadline 10 s (bytes queued but not written for that long mean a
 *    dead peer), reconnect on error with exponential backoff from 1 ms doubling to a 15 s cap (with jitter), reset
 *    after a connection has carried data. Bytes lost with a broken connection are counted in lost.
 *  - TLS: verified against the binding's CA (PEM) or the system's store, host name checked (SNI set); the
 *    binding's cert + key (PEM) as client certificate when given. TLS 1.2 or later.
 *  - https: one POST per line (text/plain). https-batch: lines joined by "\n", flushed at batch_bytes (a batch is
 *    sent before a line that would take it past that, so only a single line larger than batch_bytes makes a larger
 *    one) or after flush_ms. Logplex https: octet-counted frames, Content-Type application/logplex-1,
 *    Logplex-Msg-Count, Logplex-Frame-Id (kept across retries of one batch), Logplex-Drain-Token, User-Agent; basic
 *    auth from the URL; the caller's overflows told in the stream as Logplex's L10 notice (lgr_dw_overflow).
 *    2xx = delivered; 4xx other than 429 = dropped (counted in lost); other statuses, 429 and transport errors
 *    are retried twice with backoff, then dropped. Connect timeout 3 s, request timeout 5 s.
 *  - Credentials (URL userinfo, query) never appear in log lines: the writer names itself by drain->anon.
 *
 * Threads: everything runs on the loop's thread, callbacks included; no function may be called from another.
 */
#ifndef LGR_DWRITER_H
#define LGR_DWRITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lgr.h"
#include "lgr_drain.h"

struct event_base;

/* Shared by every writer of one loop: the curl multi handle, DNS resolution, deny ranges, failure cache. */
struct lgr_dw_ctx;

struct lgr_dw_ctx_conf {
	struct event_base *base;	   /* borrowed */
	const struct lgr_drain_deny *deny; /* borrowed, may be NULL; must outlive the context */
	const char *user_agent;		   /* copied; NULL: "lgr-drains" */
	lgr_log_fn *log;		   /* where writers' lines go (rate-limited per writer); NULL: lgr_log */
	void *log_ud;
};

int lgr_dw_ctx_new(const struct lgr_dw_ctx_conf *conf, struct lgr_dw_ctx **out); /* LGR_OK, LGR_ENOMEM */
void lgr_dw_ctx_free(struct lgr_dw_ctx *ctx); /* every writer must be freed first; NULL is a no-op */

/* Per-binding TLS material (PEM text, as the bindings carry it); NULL or "" for absent. Copied. */
struct lgr_dw_tls {
	const char *cert;
	const char *key;
	const char *ca;
};

struct lgr_dw_counters {
	uint64_t sent;	 /* lines handed to the kernel (syslog) or acknowledged with 2xx (https) */
	uint64_t lost;	 /* lines accepted by lgr_dw_write and then lost (broken connection, refused or failed POST) */
	uint64_t errors; /* connection failures, failed requests (each retry counts) */
	uint64_t connects; /* connections made (syslog) */
};

struct lgr_dw_conf {
	const struct lgr_drain *drain; /* borrowed; must outlive the writer */
	struct lgr_dw_tls tls;
	size_t max_pending;    /* bytes a writer holds (socket queue, batches, requests) before LGR_EFULL; 0: 1 MiB */
	size_t batch_bytes;    /* https-batch flush size; 0: 512 KiB; Logplex: 0 means 100 KiB */
	unsigned flush_ms;     /* https-batch / Logplex flush interval; 0: 1000 */
	unsigned max_requests; /* https (one POST per line): requests in flight; 0: 16 */
	/* on_ready: after LGR_EFULL, the writer can take lines again. on_error: a failure worth telling the app about
	 * (why: LGR_DRAIN_RESOLVE_FAILED, _RESOLVE_SKIPPED, _DENIED, _BAD_CERT, _BAD_CA; or LGR_DRAIN_OK for a
	 * transport error, with text). Both may be NULL. Called on the loop, never from inside lgr_dw_write. */
	void (*on_ready)(void *ud);
	void (*on_error)(enum lgr_drain_reason why, const char *text, void *ud);
	void *ud;
};

struct lgr_dw;

/* LGR_OK; LGR_EINVAL (a drain scheme the writer cannot serve, TLS material that does not load: *why says which);
 * LGR_ENOMEM. why may be NULL. */
int lgr_dw_new(struct lgr_dw_ctx *ctx, const struct lgr_dw_conf *conf, struct lgr_dw **out, enum lgr_drain_reason *why);

/*
 * Offers one formatted line: for syslog drains the RFC 5424 message without its octet count (the writer frames
 * it), for https the POST body, for https-batch and Logplex one entry of the batch (Logplex: the frame's message,
 * the writer adds "<len> "). LGR_OK: taken (the writer copied it); LGR_EFULL: not now (connecting, backing off, or
 * max_pending reached), on_ready follows; LGR_EIO: the writer has failed for good (denied, unusable TLS material).
 */
int lgr_dw_write(struct lgr_dw *w, const void *line, size_t len);

/* Sends what is batched now (https-batch, Logplex) instead of waiting for flush_ms. */
void lgr_dw_flush(struct lgr_dw *w);

/*
 * The caller's own buffer for this drain overflowed: it dropped n envelopes, the first of them at since_ns (UNIX
 * ns). A Logplex HTTPS writer tells the drain as Logplex does, with an L10 frame "Error L10 (output buffer
 * overflow): N messages dropped since <since>." (lgr_logplex_overflow) first in the next batch it sends, within
 * flush_ms even when no line follows. Calls before that batch goes add up into one frame (the earliest since).
 * The frame counts in Logplex-Msg-Count, not in sent or lost. Other writers, and a failed one, ignore it.
 */
void lgr_dw_overflow(struct lgr_dw *w, uint64_t n, int64_t since_ns);

bool lgr_dw_idle(const struct lgr_dw *w);      /* nothing held, nothing in flight, no overflow notice due */
size_t lgr_dw_pending(const struct lgr_dw *w); /* bytes held */
const struct lgr_dw_counters *lgr_dw_counters(const struct lgr_dw *w);

/*
 * Closes at once: what it still held (lines queued or partly written on the connection, the open batch, requests
 * in flight) is counted in lost, and *last (may be NULL) receives the final counters, those lines included.
 * NULL w is a no-op. Safe from inside the writer's own callbacks.
 */
void lgr_dw_close(struct lgr_dw *w, struct lgr_dw_counters *last);

/* lgr_dw_close without the final counters. */
void lgr_dw_free(struct lgr_dw *w);

#endif
