/*
 * cli.h: what the units of `lgr`, the command-line client, share: the parsed options, the subcommands' entry
 * points, the envelope formatters and the connection helpers.
 *
 * Units: lgr.c (main, options, TLS, signals), cli_help.c (the manual of each subcommand), cli_fmt.c (envelopes as
 * cf-style text lines or JSON lines), cli_egress.c (`logs` and `firehose` over Egress/BatchedReceiver),
 * cli_emit.c (`emit` over Ingress/BatchSender), cli_recent.c (`logs --recent` from the gateway over HTTPS).
 *
 * Threads: one. Everything runs on one libevent loop (the gRPC client), or, for `logs --recent`, in one blocking
 * HTTP request.
 */
#ifndef LGR_CLI_H
#define LGR_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <openssl/ssl.h>

#include "lgr_env.h"

#define CLI_PROG "lgr"

/* Exit statuses of every subcommand. */
enum {
	CLI_EXIT_OK = 0,
	CLI_EXIT_FAIL = 1,  /* a runtime failure: TLS or authorization refused, a server error, data lost */
	CLI_EXIT_USAGE = 2, /* bad command line */
};

enum cli_cmd { CLI_LOGS, CLI_FIREHOSE, CLI_EMIT };

#define CLI_MAX_SOURCE_IDS 256
#define CLI_MAX_TAGS	   64
#define CLI_TYPE_ALL	   0x3eu /* the bits 1 << LGR_ENV_LOG .. 1 << LGR_ENV_EVENT */

struct cli_opts {
	enum cli_cmd cmd;
	/* connection */
	char host[256];
	uint16_t port;
	const char *ca, *cert, *key;
	const char *server_name;
	bool plaintext;
	bool quiet;
	/* logs */
	const char *source_id; /* logs, emit: the positional SOURCE_ID */
	bool recent;
	bool all_types;
	const char *gateway;
	const char *token;
	unsigned limit; /* --recent: envelopes asked for */
	/* firehose */
	const char *shard_id;
	const char *deterministic_name;
	unsigned types; /* bits 1 << enum lgr_env_type */
	const char *source_ids[CLI_MAX_SOURCE_IDS];
	size_t n_source_ids;
	bool json; /* output format: JSON lines (firehose default) or text */
	/* emit */
	enum lgr_env_type emit_type;
	uint64_t count; /* 0: unbounded */
	bool count_set;
	double rate; /* envelopes per second; 0: as fast as the stream takes them */
	const char *instance_id;
	const char *source_type;
	const char *name; /* counter, gauge metric, timer name; event title */
	const char *unit;
	double value; /* gauge value; timer duration in ms */
	uint64_t delta;
	bool err_stream; /* log type ERR */
	const char *tags[CLI_MAX_TAGS][2];
	size_t n_tags;
	char *message;	/* MESSAGE words joined; NULL: read lines from stdin */
	double timeout; /* emit: seconds to wait for an agent that cannot be reached */
};

/* lgr.c */
/* An SSL_CTX for a gRPC client with the options' files (NULL with --plaintext); NULL and a message on failure. */
int cli_tls_ctx(const struct cli_opts *o, SSL_CTX **out);
/* True when a connection failure reason from lgr_h2 is one retrying cannot cure (TLS refused, no ALPN h2). */
bool cli_fatal_reason(const char *why);
/* Prints the diagnosis of a fatal connection failure (unknown CA, wrong server name, certificate refused). */
void cli_explain_failure(const struct cli_opts *o, const char *why);
void cli_warn(const struct cli_opts *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* SIGINT / SIGTERM seen. */
extern volatile int cli_stop_requested;

/* cli_help.c: the manual of a subcommand (NULL: the overview) to out. */
void cli_help(FILE *out, const char *cmd);

/* cli_fmt.c */
/* One envelope as `cf logs` prints it: TIMESTAMP [SOURCE_TYPE/INSTANCE] OUT|ERR line, one line per payload line;
 * other types as one summary line. Returns 0, or -1 when writing failed. */
int cli_fmt_text(FILE *out, const struct lgr_env *env);
/* One envelope as one line of the gateway's JSON form (use_preferred_tags). */
int cli_fmt_json(FILE *out, const struct lgr_env *env);
/* cf's timestamp: local time, 2006-01-02T15:04:05.00-0700. buf has room for 40 bytes. */
void cli_fmt_time(int64_t ns, char *buf, size_t len);

/* Subcommands; each returns the exit status. */
int cli_egress_run(const struct cli_opts *o);
int cli_emit_run(const struct cli_opts *o);
int cli_recent_run(const struct cli_opts *o);

#endif
