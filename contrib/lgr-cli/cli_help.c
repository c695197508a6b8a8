/*
 * cli_help.c: the manual of `lgr` and of each subcommand, in man-page sections (NAME, SYNOPSIS, DESCRIPTION,
 * OPTIONS, EXIT STATUS, EXAMPLES). doc/lgr-cli.md says the same at more length.
 */
#include <string.h>

#include "cli.h"

static const char common_opts[] =
	"    --addr HOST:PORT    the server ([v6]:port accepted)\n"
	"    --pki DIR           take --ca, --cert and --key from DIR/ca.crt, DIR/client.crt, DIR/client.key\n"
	"                        (contrib/gen-pki.sh makes such a directory); also the environment's LGR_PKI\n"
	"    --ca FILE           PEM CA bundle the server's certificate must chain to\n"
	"    --cert FILE, --key FILE\n"
	"                        PEM client certificate and key (servers require one of their CA)\n"
	"    --server-name NAME  DNS SAN the server's certificate must carry (the CN is not looked at)\n"
	"    --plaintext         cleartext HTTP/2 (h2c), for servers with tls=\"off\" (tests, loopback)\n"
	"    -q, --quiet         no progress lines on stderr (errors are still printed)\n"
	"    -h, --help          this manual\n";

static const char exit_status[] =
	"EXIT STATUS\n"
	"    0   success (for streams: stopped by SIGINT or SIGTERM)\n"
	"    1   a failure: the TLS handshake refused (unknown CA, wrong server name, client certificate refused),\n"
	"        the server refused the request or the token, envelopes that may not have arrived\n"
	"    2   bad usage\n";

static void overview(FILE *out)
{
	fputs("NAME\n"
	      "    lgr - command-line client of rsyslog-loggregator (Cloud Foundry Loggregator)\n"
	      "\n"
	      "SYNOPSIS\n"
	      "    lgr logs [OPTIONS] SOURCE_ID\n"
	      "    lgr logs --recent [OPTIONS] SOURCE_ID\n"
	      "    lgr firehose [OPTIONS]\n"
	      "    lgr emit [OPTIONS] SOURCE_ID [MESSAGE...]\n"
	      "    lgr COMMAND --help\n"
	      "\n"
	      "DESCRIPTION\n"
	      "    logs      tail one source's logs from a router's loggregator.v2.Egress, printed as cf logs does\n"
	      "    logs --recent\n"
	      "              the recent logs of one source from the gateway (GET /api/v1/read/SOURCE_ID)\n"
	      "    firehose  every envelope (or a selection, or a shard of it) as JSON lines\n"
	      "    emit      send test envelopes to an agent over loggregator.v2.Ingress/BatchSender\n"
	      "\n"
	      "    gRPC connections use mutual TLS with the Loggregator profile (TLS 1.2 ECDHE-RSA-AES-GCM or 1.3,\n"
	      "    ALPN h2). Defaults: logs and firehose 127.0.0.1:8083 with server name doppler (the router's\n"
	      "    Egress in contrib/examples/router.conf); emit 127.0.0.1:3458 with server name metron (the agent).\n"
	      "\n",
		out);
	fputs(exit_status, out);
	fputs("\nEXAMPLES\n"
	      "    lgr logs --pki build/run/pki demo-app\n"
	      "    lgr emit --pki build/run/pki demo-app 'hello from demo-app'\n",
		out);
}

static void logs(FILE *out)
{
	fputs("NAME\n"
	      "    lgr logs - tail the logs of one source, or print its recent logs\n"
	      "\n"
	      "SYNOPSIS\n"
	      "    lgr logs [--addr HOST:PORT] [--pki DIR | --ca F --cert F --key F] [--server-name N]\n"
	      "             [--all-types] [--shard-id ID] [--format text|json] SOURCE_ID\n"
	      "    lgr logs --recent [--gateway URL] [--token TOKEN] [--ca F] [--server-name N] [--all-types]\n"
	      "             [--format text|json] SOURCE_ID\n"
	      "\n"
	      "DESCRIPTION\n"
	      "    Streams the log envelopes of SOURCE_ID (an app GUID or a component name) from a router's\n"
	      "    loggregator.v2.Egress/BatchedReceiver and prints each as the cf CLI does:\n"
	      "\n"
	      "        2026-11-20T23:11:07.12+0000 [APP/PROC/WEB/0] OUT message\n"
	      "\n"
	      "    the envelope's timestamp in local time (hundredths of a second, numeric zone; set TZ to change\n"
	      "    it), the source_type tag and the instance id, OUT or ERR, then the payload, one line per line of\n"
	      "    it. With --all-types, counters, gauges, timers and events come too, one line each:\n"
	      "\n"
	      "        2026-11-20T23:11:07.12+0000 [APP/PROC/WEB/0] COUNTER requests delta=1 total=42\n"
	      "        2026-11-20T23:11:07.12+0000 [APP/PROC/WEB/0] GAUGE cpu=12.5 percentage memory=1024 bytes\n"
	      "\n"
	      "    When the stream ends or the connection is lost, it reconnects with a backoff and goes on; what\n"
	      "    was sent meanwhile is not replayed. It runs until interrupted.\n"
	      "\n"
	      "    With --recent, it reads the newest 1000 log envelopes of SOURCE_ID that the gateway keeps, from\n"
	      "    GET URL/api/v1/read/SOURCE_ID (Log Cache's form), prints them oldest first and exits.\n"
	      "\n"
	      "OPTIONS\n",
		out);
	fputs(common_opts, out);
	fputs("    --all-types         every envelope type of the source, not only logs\n"
	      "    --shard-id ID       join the shard group ID: its members share the stream\n"
	      "    --format text|json  cf's text lines (default) or the gateway's JSON form, one per line\n"
	      "    --recent            read the recent logs from the gateway instead of streaming\n"
	      "    --gateway URL       the gateway (default https://127.0.0.1:8088; also LGR_GATEWAY)\n"
	      "    --token TOKEN       bearer token for --recent (also LGR_TOKEN); \"bearer \" is added if missing\n"
	      "    With --recent, --ca is the CA of the gateway's certificate (default: the system's), --cert and\n"
	      "    --key are optional, and the URL's host is checked against the certificate unless\n"
	      "    --server-name names another (e.g. reverselogproxy).\n"
	      "\n"
	      "    Defaults: --addr 127.0.0.1:8083, --server-name doppler.\n"
	      "\n",
		out);
	fputs(exit_status, out);
	fputs("\nEXAMPLES\n"
	      "    lgr logs --pki build/run/pki demo-app\n"
	      "    lgr logs --pki /etc/loggregator/pki --addr 10.0.32.4:8083 --all-types 6d8ef1bb-6c9e-4f7a\n"
	      "    LGR_TOKEN=demo-admin-token lgr logs --recent --ca build/run/pki/ca.crt demo-app\n",
		out);
}

static void firehose(FILE *out)
{
	fputs("NAME\n"
	      "    lgr firehose - print every envelope a router serves\n"
	      "\n"
	      "SYNOPSIS\n"
	      "    lgr firehose [--addr HOST:PORT] [--pki DIR | --ca F --cert F --key F] [--server-name N]\n"
	      "                 [--shard-id ID [--deterministic-name NAME]] [--type LIST] [--source-id S]...\n"
	      "                 [--format json|text]\n"
	      "\n"
	      "DESCRIPTION\n"
	      "    Subscribes to a router's loggregator.v2.Egress/BatchedReceiver and prints every envelope as one\n"
	      "    line of the gateway's JSON form (timestamp, source_id, instance_id, deprecated_tags, tags and\n"
	      "    the message; 64-bit integers as strings, payloads in base64), or as text with --format text.\n"
	      "    The request asks for preferred tags (deprecated tags folded into tags).\n"
	      "\n"
	      "    The selectors are one per type of --type for each --source-id (or for every source). Clients\n"
	      "    with the same --shard-id share the stream: each envelope goes to one of them. Lost streams are\n"
	      "    opened again with a backoff; it runs until interrupted.\n"
	      "\n"
	      "OPTIONS\n",
		out);
	fputs(common_opts, out);
	fputs("    --type LIST         comma-separated log,counter,gauge,timer,event (default all five)\n"
	      "    --source-id S       only source S; repeatable\n"
	      "    --shard-id ID       join the shard group ID\n"
	      "    --deterministic-name NAME\n"
	      "                        within the group, route each counter name (gauge name set) to one member\n"
	      "    --format json|text  JSON lines (default) or cf-style text lines\n"
	      "\n"
	      "    Defaults: --addr 127.0.0.1:8083, --server-name doppler.\n"
	      "\n",
		out);
	fputs(exit_status, out);
	fputs("\nEXAMPLES\n"
	      "    lgr firehose --pki build/run/pki\n"
	      "    lgr firehose --pki build/run/pki --type counter,gauge --source-id demo-app\n"
	      "    lgr firehose --pki build/run/pki --shard-id nozzle    # run two: each gets a share\n",
		out);
}

static void emit(FILE *out)
{
	fputs("NAME\n"
	      "    lgr emit - send test envelopes to an agent\n"
	      "\n"
	      "SYNOPSIS\n"
	      "    lgr emit [--addr HOST:PORT] [--pki DIR | --ca F --cert F --key F] [--server-name N]\n"
	      "             [--type log|counter|gauge|timer|event] [--count N] [--rate R] [--instance-id I]\n"
	      "             [--source-type T] [--tag K=V]... [--err] [--name N] [--value V] [--unit U]\n"
	      "             [--delta D] [--timeout S] SOURCE_ID [MESSAGE...]\n"
	      "\n"
	      "DESCRIPTION\n"
	      "    Sends envelopes of SOURCE_ID over one loggregator.v2.Ingress/BatchSender stream, in batches of\n"
	      "    up to 100, and waits for the agent to acknowledge the stream. Each envelope carries the current\n"
	      "    time (strictly increasing), the instance id and the source_type tag.\n"
	      "\n"
	      "    With MESSAGE (its words joined by spaces), --count envelopes are sent (default 1; 0: until\n"
	      "    interrupted), \"{n}\" in MESSAGE replaced by the sequence number from 1. Without MESSAGE, a log\n"
	      "    or event is sent for each line of stdin (ending at LF or CRLF) until its end (or --count lines).\n"
	      "    Counters, gauges and\n"
	      "    timers take their content from the options and need no MESSAGE:\n"
	      "      log      payload MESSAGE, OUT (ERR with --err)\n"
	      "      counter  --name (default requests), --delta (default 1); the agent keeps the total\n"
	      "      gauge    one metric --name (default value) = --value, --unit\n"
	      "      timer    --name (default http), lasting --value milliseconds up to now\n"
	      "      event    title --name (default event), body MESSAGE\n"
	      "\n"
	      "    A stream lost midway is replaced and the input goes on; what the lost stream carried is counted\n"
	      "    as possibly lost. When the agent cannot be reached for --timeout seconds, emit gives up.\n"
	      "\n"
	      "OPTIONS\n",
		out);
	fputs(common_opts, out);
	fputs("    --type T            log (default), counter, gauge, timer or event\n"
	      "    --count N           envelopes to send (default 1 with MESSAGE or for metrics; 0: no limit)\n"
	      "    --rate R            envelopes per second (default: as fast as the stream takes them)\n"
	      "    --instance-id I     instance_id (default 0; \"\" for none)\n"
	      "    --source-type T     source_type tag (default APP/PROC/WEB; \"\" for none)\n"
	      "    --tag K=V           one more tag; repeatable\n"
	      "    --err               logs of type ERR (default OUT)\n"
	      "    --name N, --value V, --unit U, --delta D\n"
	      "                        the metric, as described above\n"
	      "    --timeout S         give up when the agent is unreachable this long (default 30)\n"
	      "\n"
	      "    Defaults: --addr 127.0.0.1:3458, --server-name metron.\n"
	      "\n",
		out);
	fputs(exit_status, out);
	fputs("\nEXAMPLES\n"
	      "    lgr emit --pki build/run/pki demo-app 'hello from demo-app'\n"
	      "    lgr emit --pki build/run/pki --count 100 --rate 10 demo-app 'request {n} served'\n"
	      "    tail -f app.log | lgr emit --pki build/run/pki --instance-id 1 demo-app\n"
	      "    lgr emit --pki build/run/pki --type gauge --name memory --value 1048576 --unit bytes demo-app\n",
		out);
}

void cli_help(FILE *out, const char *cmd)
{
	if (cmd != NULL && strcmp(cmd, "logs") == 0)
		logs(out);
	else if (cmd != NULL && strcmp(cmd, "firehose") == 0)
		firehose(out);
	else if (cmd != NULL && strcmp(cmd, "emit") == 0)
		emit(out);
	else
		overview(out);
}
