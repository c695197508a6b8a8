/*
 * lgr.c: `lgr`, the command-line client of a Loggregator built from these modules: tail one app's logs or the
 * firehose from a router's loggregator.v2.Egress, read an app's recent logs from the gateway, and emit test
 * envelopes to an agent. This unit parses the command line (one option table, each option valid for some
 * subcommands), builds the TLS context and explains connection failures; the subcommands live in cli_*.c.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509_vfy.h>

#include "cli.h"
#include "lgr_tls.h"

volatile int cli_stop_requested;

static const char *const h2_alpn[] = {"h2", NULL};

void cli_error(const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fputs(CLI_PROG ": ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

void cli_warn(const struct cli_opts *o, const char *fmt, ...)
{
	va_list ap;

	if (o->quiet)
		return;
	fflush(stdout);
	fputs(CLI_PROG ": ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

int cli_tls_ctx(const struct cli_opts *o, SSL_CTX **out)
{
	struct lgr_tls_config cfg = {0};
	char err[512];

	*out = NULL;
	if (o->plaintext)
		return 0;
	cfg.ca_file = o->ca;
	cfg.cert_file = o->cert;
	cfg.key_file = o->key;
	cfg.server_name = o->server_name;
	cfg.alpn = h2_alpn;
	if (lgr_tls_client_ctx(&cfg, out, err, sizeof(err)) != LGR_OK) {
		cli_error("TLS: %s", err);
		return -1;
	}
	return 0;
}

bool cli_fatal_reason(const char *why)
{
	return strncmp(why, "TLS", 3) == 0;
}

/*
 * A second, blocking handshake with the same settings, to learn why the server's certificate was refused: the
 * transport only reports OpenSSL's "certificate verify failed", which covers both an unknown CA and a name that
 * is not among the certificate's DNS SANs.
 */
static long probe_verify(const struct cli_opts *o)
{
	struct addrinfo hints = {0}, *ai = NULL;
	struct timeval tv = {5, 0};
	SSL_CTX *ctx = NULL;
	SSL *ssl = NULL;
	char port[8];
	long result = -1;
	int fd = -1;

	hints.ai_socktype = SOCK_STREAM;
	snprintf(port, sizeof(port), "%u", o->port);
	if (cli_tls_ctx(o, &ctx) != 0 || ctx == NULL || getaddrinfo(o->host, port, &hints, &ai) != 0)
		goto out;
	fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
	if (fd < 0)
		goto out;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0)
		goto out;
	ssl = lgr_tls_client_ssl(ctx, o->server_name);
	if (ssl == NULL || SSL_set_fd(ssl, fd) != 1)
		goto out;
	SSL_connect(ssl);
	result = SSL_get_verify_result(ssl);
out:
	ERR_clear_error();
	SSL_free(ssl);
	if (fd >= 0)
		close(fd);
	if (ai != NULL)
		freeaddrinfo(ai);
	SSL_CTX_free(ctx);
	return result;
}

void cli_explain_failure(const struct cli_opts *o, const char *why)
{
	const char *peer = o->host;

	if (strstr(why, "certificate verify failed") != NULL) {
		long v = probe_verify(o);

		if (v == X509_V_ERR_HOSTNAME_MISMATCH)
			cli_error("%s:%u: the server's certificate does not carry the name \"%s\" (wrong server name; "
				  "see --server-name)",
				peer, o->port, o->server_name);
		else if (v > 0)
			cli_error("%s:%u: the server's certificate is not trusted by %s: %s (unknown CA; see --ca)",
				peer, o->port, o->ca, X509_verify_cert_error_string(v));
		else
			cli_error("%s:%u: the server's certificate was refused (%s)", peer, o->port, why);
	} else if (strstr(why, "alert") != NULL) {
		cli_error("%s:%u: the server refused this client's certificate %s (%s; see --cert, --key)", peer,
			o->port, o->cert, why);
	} else if (strstr(why, "wrong version number") != NULL || strstr(why, "packet length too long") != NULL) {
		cli_error("%s:%u: the server does not speak TLS on this port (%s; --plaintext for h2c)", peer, o->port,
			why);
	} else if (strstr(why, "ALPN") != NULL) {
		cli_error("%s:%u: not a gRPC server: %s", peer, o->port, why);
	} else {
		cli_error("%s:%u: %s", peer, o->port, why);
	}
}

/* ---- the command line ---------------------------------------------------------------------------------------- */

#define FOR_LOGS     (1u << CLI_LOGS)
#define FOR_FIREHOSE (1u << CLI_FIREHOSE)
#define FOR_EMIT     (1u << CLI_EMIT)
#define FOR_ALL	     (FOR_LOGS | FOR_FIREHOSE | FOR_EMIT)

enum {
	OPT_ADDR = 256,
	OPT_CA,
	OPT_CERT,
	OPT_KEY,
	OPT_PKI,
	OPT_SERVER_NAME,
	OPT_PLAINTEXT,
	OPT_QUIET,
	OPT_HELP,
	OPT_FORMAT,
	OPT_RECENT,
	OPT_ALL_TYPES,
	OPT_GATEWAY,
	OPT_TOKEN,
	OPT_SHARD_ID,
	OPT_DET_NAME,
	OPT_TYPE,
	OPT_SOURCE_ID,
	OPT_COUNT,
	OPT_RATE,
	OPT_INSTANCE_ID,
	OPT_SOURCE_TYPE,
	OPT_NAME,
	OPT_VALUE,
	OPT_UNIT,
	OPT_DELTA,
	OPT_ERR,
	OPT_TAG,
	OPT_TIMEOUT,
	OPT_END,
};

static const struct option longopts[] = {
	{"addr", required_argument, NULL, OPT_ADDR},
	{"ca", required_argument, NULL, OPT_CA},
	{"cert", required_argument, NULL, OPT_CERT},
	{"key", required_argument, NULL, OPT_KEY},
	{"pki", required_argument, NULL, OPT_PKI},
	{"server-name", required_argument, NULL, OPT_SERVER_NAME},
	{"plaintext", no_argument, NULL, OPT_PLAINTEXT},
	{"quiet", no_argument, NULL, OPT_QUIET},
	{"help", no_argument, NULL, OPT_HELP},
	{"format", required_argument, NULL, OPT_FORMAT},
	{"recent", no_argument, NULL, OPT_RECENT},
	{"all-types", no_argument, NULL, OPT_ALL_TYPES},
	{"gateway", required_argument, NULL, OPT_GATEWAY},
	{"token", required_argument, NULL, OPT_TOKEN},
	{"shard-id", required_argument, NULL, OPT_SHARD_ID},
	{"deterministic-name", required_argument, NULL, OPT_DET_NAME},
	{"type", required_argument, NULL, OPT_TYPE},
	{"source-id", required_argument, NULL, OPT_SOURCE_ID},
	{"count", required_argument, NULL, OPT_COUNT},
	{"rate", required_argument, NULL, OPT_RATE},
	{"instance-id", required_argument, NULL, OPT_INSTANCE_ID},
	{"source-type", required_argument, NULL, OPT_SOURCE_TYPE},
	{"name", required_argument, NULL, OPT_NAME},
	{"value", required_argument, NULL, OPT_VALUE},
	{"unit", required_argument, NULL, OPT_UNIT},
	{"delta", required_argument, NULL, OPT_DELTA},
	{"err", no_argument, NULL, OPT_ERR},
	{"tag", required_argument, NULL, OPT_TAG},
	{"timeout", required_argument, NULL, OPT_TIMEOUT},
	{NULL, 0, NULL, 0},
};

/* Which subcommands accept each option, indexed by OPT_* - OPT_ADDR. */
static const unsigned opt_scope[OPT_END - OPT_ADDR] = {
	[OPT_ADDR - OPT_ADDR] = FOR_ALL,
	[OPT_CA - OPT_ADDR] = FOR_ALL,
	[OPT_CERT - OPT_ADDR] = FOR_ALL,
	[OPT_KEY - OPT_ADDR] = FOR_ALL,
	[OPT_PKI - OPT_ADDR] = FOR_ALL,
	[OPT_SERVER_NAME - OPT_ADDR] = FOR_ALL,
	[OPT_PLAINTEXT - OPT_ADDR] = FOR_ALL,
	[OPT_QUIET - OPT_ADDR] = FOR_ALL,
	[OPT_HELP - OPT_ADDR] = FOR_ALL,
	[OPT_FORMAT - OPT_ADDR] = FOR_LOGS | FOR_FIREHOSE,
	[OPT_RECENT - OPT_ADDR] = FOR_LOGS,
	[OPT_ALL_TYPES - OPT_ADDR] = FOR_LOGS,
	[OPT_GATEWAY - OPT_ADDR] = FOR_LOGS,
	[OPT_TOKEN - OPT_ADDR] = FOR_LOGS,
	[OPT_SHARD_ID - OPT_ADDR] = FOR_LOGS | FOR_FIREHOSE,
	[OPT_DET_NAME - OPT_ADDR] = FOR_FIREHOSE,
	[OPT_TYPE - OPT_ADDR] = FOR_FIREHOSE | FOR_EMIT,
	[OPT_SOURCE_ID - OPT_ADDR] = FOR_FIREHOSE,
	[OPT_COUNT - OPT_ADDR] = FOR_EMIT,
	[OPT_RATE - OPT_ADDR] = FOR_EMIT,
	[OPT_INSTANCE_ID - OPT_ADDR] = FOR_EMIT,
	[OPT_SOURCE_TYPE - OPT_ADDR] = FOR_EMIT,
	[OPT_NAME - OPT_ADDR] = FOR_EMIT,
	[OPT_VALUE - OPT_ADDR] = FOR_EMIT,
	[OPT_UNIT - OPT_ADDR] = FOR_EMIT,
	[OPT_DELTA - OPT_ADDR] = FOR_EMIT,
	[OPT_ERR - OPT_ADDR] = FOR_EMIT,
	[OPT_TAG - OPT_ADDR] = FOR_EMIT,
	[OPT_TIMEOUT - OPT_ADDR] = FOR_EMIT,
};

static int parse_u64(const char *s, uint64_t *out)
{
	char *end;

	errno = 0;
	*out = strtoull(s, &end, 10);
	return errno == 0 && end != s && *end == '\0' && *s != '-' ? 0 : -1;
}

static int parse_double(const char *s, double *out)
{
	char *end;

	errno = 0;
	*out = strtod(s, &end);
	return errno == 0 && end != s && *end == '\0' && isfinite(*out) ? 0 : -1;
}

static int parse_addr(const char *s, struct cli_opts *o)
{
	const char *host = s, *colon;
	size_t hlen;
	uint64_t port;

	if (*s == '[') {
		const char *close = strchr(s, ']');

		if (close == NULL || close[1] != ':')
			return -1;
		host = s + 1;
		hlen = (size_t)(close - host);
		colon = close + 1;
	} else {
		colon = strrchr(s, ':');
		if (colon == NULL)
			return -1;
		hlen = (size_t)(colon - s);
	}
	if (hlen == 0 || hlen >= sizeof(o->host) || parse_u64(colon + 1, &port) != 0 || port == 0 || port > 65535)
		return -1;
	memcpy(o->host, host, hlen);
	o->host[hlen] = '\0';
	o->port = (uint16_t)port;
	return 0;
}

static int type_bit(const char *name)
{
	for (int t = LGR_ENV_LOG; t <= LGR_ENV_EVENT; t++)
		if (strcmp(name, lgr_env_type_name((enum lgr_env_type)t)) == 0)
			return t;
	return -1;
}

static int parse_types(const char *s, unsigned *mask)
{
	char *copy = strdup(s), *save = NULL;
	int rc = 0;

	if (copy == NULL)
		return -1;
	*mask = 0;
	for (char *tok = strtok_r(copy, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
		int t = type_bit(tok);

		if (t < 0)
			rc = -1;
		else
			*mask |= 1u << t;
	}
	free(copy);
	return rc == 0 && *mask != 0 ? 0 : -1;
}

/* A PEM path under DIR, kept for the life of the process. */
static const char *pki_file(const char *dir, const char *name)
{
	size_t len = strlen(dir) + strlen(name) + 2;
	char *p = malloc(len);

	if (p != NULL)
		snprintf(p, len, "%s/%s", dir, name);
	return p;
}

static int usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int usage_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	fputs(CLI_PROG ": ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry '" CLI_PROG " %s--help' for more information.\n", cmd != NULL ? cmd : "");
	return -1;
}

/* Joins argv[from..argc) with spaces into a new string. */
static char *join_words(int argc, char **argv, int from)
{
	size_t len = 1;
	char *s;

	for (int i = from; i < argc; i++)
		len += strlen(argv[i]) + 1;
	s = malloc(len);
	if (s == NULL)
		return NULL;
	s[0] = '\0';
	for (int i = from; i < argc; i++) {
		if (i > from)
			strcat(s, " ");
		strcat(s, argv[i]);
	}
	return s;
}

/* Returns 0 to run, 1 after --help, -1 on a usage error (already reported). */
static int parse_args(int argc, char **argv, struct cli_opts *o)
{
	const char *cmd = argv[1], *pki = getenv("LGR_PKI"), *type_arg = NULL;
	char cmdsp[16];
	bool have_addr = false, have_format = false;
	int c;

	memset(o, 0, sizeof(*o));
	if (strcmp(cmd, "logs") == 0)
		o->cmd = CLI_LOGS;
	else if (strcmp(cmd, "firehose") == 0)
		o->cmd = CLI_FIREHOSE;
	else if (strcmp(cmd, "emit") == 0)
		o->cmd = CLI_EMIT;
	else
		return usage_error(NULL, "unknown command '%s'", cmd);
	snprintf(cmdsp, sizeof(cmdsp), "%s ", cmd);
	o->json = o->cmd == CLI_FIREHOSE;
	o->types = o->cmd == CLI_FIREHOSE ? CLI_TYPE_ALL : 1u << LGR_ENV_LOG;
	o->emit_type = LGR_ENV_LOG;
	o->gateway = getenv("LGR_GATEWAY") != NULL ? getenv("LGR_GATEWAY") : "https://127.0.0.1:8088";
	o->token = getenv("LGR_TOKEN");
	o->limit = 1000;
	o->instance_id = "0";
	o->source_type = "APP/PROC/WEB";
	o->delta = 1;
	o->timeout = 30;
	optind = 2;
	while ((c = getopt_long(argc, argv, "hq", longopts, NULL)) != -1) {
		int bad = 0;

		if (c == 'h')
			c = OPT_HELP;
		if (c == 'q')
			c = OPT_QUIET;
		if (c < OPT_ADDR || c >= OPT_END)
			return usage_error(cmdsp, "invalid option");
		if (!(opt_scope[c - OPT_ADDR] & (1u << o->cmd)))
			return usage_error(
				cmdsp, "option --%s does not apply to '%s'", longopts[c - OPT_ADDR].name, cmd);
		switch (c) {
		case OPT_ADDR:
			bad = parse_addr(optarg, o);
			have_addr = true;
			break;
		case OPT_CA: o->ca = optarg; break;
		case OPT_CERT: o->cert = optarg; break;
		case OPT_KEY: o->key = optarg; break;
		case OPT_PKI: pki = optarg; break;
		case OPT_SERVER_NAME: o->server_name = optarg; break;
		case OPT_PLAINTEXT: o->plaintext = true; break;
		case OPT_QUIET: o->quiet = true; break;
		case OPT_HELP: cli_help(stdout, cmd); return 1;
		case OPT_FORMAT:
			bad = strcmp(optarg, "json") != 0 && strcmp(optarg, "text") != 0;
			o->json = strcmp(optarg, "json") == 0;
			have_format = true;
			break;
		case OPT_RECENT: o->recent = true; break;
		case OPT_ALL_TYPES: o->all_types = true; break;
		case OPT_GATEWAY: o->gateway = optarg; break;
		case OPT_TOKEN: o->token = optarg; break;
		case OPT_SHARD_ID: o->shard_id = optarg; break;
		case OPT_DET_NAME: o->deterministic_name = optarg; break;
		case OPT_TYPE: type_arg = optarg; break;
		case OPT_SOURCE_ID:
			bad = o->n_source_ids == CLI_MAX_SOURCE_IDS;
			if (!bad)
				o->source_ids[o->n_source_ids++] = optarg;
			break;
		case OPT_COUNT:
			bad = parse_u64(optarg, &o->count);
			o->count_set = true;
			break;
		case OPT_RATE: bad = parse_double(optarg, &o->rate) != 0 || o->rate < 0; break;
		case OPT_INSTANCE_ID: o->instance_id = optarg; break;
		case OPT_SOURCE_TYPE: o->source_type = optarg; break;
		case OPT_NAME: o->name = optarg; break;
		case OPT_VALUE: bad = parse_double(optarg, &o->value); break;
		case OPT_UNIT: o->unit = optarg; break;
		case OPT_DELTA: bad = parse_u64(optarg, &o->delta); break;
		case OPT_ERR: o->err_stream = true; break;
		case OPT_TAG: {
			char *eq = strchr(optarg, '=');

			bad = eq == NULL || eq == optarg || o->n_tags == CLI_MAX_TAGS;
			if (!bad) {
				*eq = '\0';
				o->tags[o->n_tags][0] = optarg;
				o->tags[o->n_tags++][1] = eq + 1;
			}
			break;
		}
		case OPT_TIMEOUT: bad = parse_double(optarg, &o->timeout) != 0 || o->timeout <= 0; break;
		}
		if (bad)
			return usage_error(cmdsp, "invalid value for --%s: '%s'", longopts[c - OPT_ADDR].name, optarg);
	}
	if (type_arg != NULL) {
		if (o->cmd == CLI_FIREHOSE) {
			if (parse_types(type_arg, &o->types) != 0)
				return usage_error(cmdsp, "--type takes a comma-separated list of log, counter, gauge, "
							  "timer, event");
		} else {
			int t = type_bit(type_arg);

			if (t < 0)
				return usage_error(cmdsp, "--type takes one of log, counter, gauge, timer, event");
			o->emit_type = (enum lgr_env_type)t;
		}
	}
	if (o->all_types)
		o->types = CLI_TYPE_ALL;
	if (o->cmd != CLI_FIREHOSE) {
		if (optind >= argc)
			return usage_error(cmdsp, "SOURCE_ID is missing");
		o->source_id = argv[optind++];
		if (*o->source_id == '\0')
			return usage_error(cmdsp, "SOURCE_ID must not be empty");
	}
	if (o->cmd == CLI_EMIT && optind < argc) {
		o->message = join_words(argc, argv, optind);
		if (o->message == NULL)
			return usage_error(cmdsp, "out of memory");
	} else if (optind < argc) {
		return usage_error(cmdsp, "unexpected argument '%s'", argv[optind]);
	}
	if (o->cmd == CLI_EMIT && !o->count_set)
		o->count = o->message != NULL || (o->emit_type != LGR_ENV_LOG && o->emit_type != LGR_ENV_EVENT) ? 1 : 0;
	if (o->cmd == CLI_LOGS && o->recent && (have_addr || o->shard_id != NULL))
		return usage_error(cmdsp, "--recent reads from --gateway; --addr and --shard-id are for streaming");
	if (o->cmd == CLI_LOGS && !o->recent && o->token != NULL && getenv("LGR_TOKEN") != o->token)
		return usage_error(cmdsp, "--token is for --recent");
	if (!have_format && o->cmd == CLI_LOGS)
		o->json = false;
	if (!have_addr) {
		snprintf(o->host, sizeof(o->host), "127.0.0.1");
		o->port = o->cmd == CLI_EMIT ? 3458 : 8083;
	}
	/* --recent checks the gateway URL's host unless told another name. */
	if (o->server_name == NULL && !o->recent)
		o->server_name = o->cmd == CLI_EMIT ? "metron" : "doppler";
	if (pki != NULL && *pki != '\0') {
		if (o->ca == NULL)
			o->ca = pki_file(pki, "ca.crt");
		if (o->cert == NULL)
			o->cert = pki_file(pki, "client.crt");
		if (o->key == NULL)
			o->key = pki_file(pki, "client.key");
	}
	if (!o->plaintext && !(o->cmd == CLI_LOGS && o->recent) && (o->ca == NULL || o->cert == NULL || o->key == NULL))
		return usage_error(
			cmdsp, "mutual TLS needs --ca, --cert and --key (or --pki DIR); --plaintext for h2c");
	if ((o->cert == NULL) != (o->key == NULL))
		return usage_error(cmdsp, "--cert and --key go together");
	return 0;
}

int main(int argc, char **argv)
{
	struct cli_opts o;
	int rc;

	if (argc < 2) {
		cli_help(stderr, NULL);
		return CLI_EXIT_USAGE;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
		cli_help(stdout, argc > 2 ? argv[2] : NULL);
		return CLI_EXIT_OK;
	}
	rc = parse_args(argc, argv, &o);
	if (rc != 0)
		return rc > 0 ? CLI_EXIT_OK : CLI_EXIT_USAGE;
	/* Lines reach a pipe (tee, grep, a test) as they are printed. */
	setvbuf(stdout, NULL, _IOLBF, 0);
	switch (o.cmd) {
	case CLI_LOGS: rc = o.recent ? cli_recent_run(&o) : cli_egress_run(&o); break;
	case CLI_FIREHOSE: rc = cli_egress_run(&o); break;
	case CLI_EMIT: rc = cli_emit_run(&o); break;
	default: rc = CLI_EXIT_USAGE;
	}
	free(o.message);
	return rc;
}
