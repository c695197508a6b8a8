#!/usr/bin/env bash
# client.sh: the command-line client (contrib/lgr-cli, `lgr`) against two private rsyslogds over mutual TLS: an
# agent (imloggregator role=agent -> omdoppler) and a router (imloggregator role=router -> omfirehose).
#
# Oracle:
#   - `lgr emit` (stdin lines, ending at LF or CRLF; MESSAGE with --count; a counter; a gauge) exits 0 and
#     everything it sent reaches the router through the agent;
#   - `lgr logs app-a` prints exactly the emitted log lines of app-a, each as the cf CLI prints it: the envelope's
#     timestamp in local time (TZ set to +05:30 here) as 2006-01-02T15:04:05.00-0700, [source_type/instance_id],
#     OUT/ERR, the payload; nothing of app-b, no metric; `--all-types` adds the counter and gauge lines;
#   - `lgr firehose` prints one JSON line per envelope, which parses, and whose content is what was emitted;
#   - two `lgr firehose --shard-id` clients split 300 envelopes: both get some, together each exactly once;
#   - a wrong CA, a wrong server name and a client certificate of another CA end `lgr logs`, `lgr firehose` and
#     `lgr emit` with status 1 and a message naming the cause; bad usage ends with status 2;
#   - `--help` of each subcommand prints the manual's sections and exits 0;
#   - `lgr logs --recent` reads app-a's recent envelopes from the router's HTTPS gateway (Log Cache's read, bearer
#     token): exactly the lines `lgr logs` printed, oldest first; with --all-types exactly the lines of
#     `lgr logs --all-types`, in timestamp order; a token of app-a reading app-b, a wrong token, a wrong CA and a
#     wrong --server-name end it with status 1 and a message naming the cause; the right --server-name works;
#   - when the router restarts (same ports), `lgr logs` says it is retrying, reconnects, and prints a line emitted
#     afterwards;
#   - the clients exit 0 on SIGTERM.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
lgr_init
lgr_bg_init
lgr_need_cli
lgr_pki
command -v python3 >/dev/null || lgr_skip "python3 is not installed"
export TZ=XST-5:30

W=$LGR_WORK
P=$LGR_PKI
printf 'test-admin-token admin\ntest-app-token app-a\n' >"$P/gateway.tokens"
router_conf=$W/router.conf
lgr_conf_write "$router_conf" <<EOF
module(load="impstats" interval="1" log.syslog="off" log.file="$W/stats.log" format="legacy")
module(load="$(lgr_module imloggregator)")
module(load="$(lgr_module omfirehose)")
input(type="imloggregator" port="0" listenPortFileName="$W/in.port" role="router" tls.cacert="$P/ca.crt"
	tls.mycert="$P/doppler.crt" tls.myprivkey="$P/doppler.key")
action(type="omfirehose" port="0" listenPortFileName="$W/egress.port" tls.cacert="$P/ca.crt"
	tls.mycert="$P/doppler.crt" tls.myprivkey="$P/doppler.key" gateway.address="127.0.0.1" gateway.port="0"
	gateway.listenPortFileName="$W/gateway.port" gateway.tls.cacert="$P/ca.crt" gateway.tls.mycert="$P/reverselogproxy.crt"
	gateway.tls.myprivkey="$P/reverselogproxy.key" gateway.tokensFile="$P/gateway.tokens")
EOF

lgr_check "--help of each subcommand prints the manual; bad usage exits 2"
for cmd in logs firehose emit; do
	out=$("$LGR_CLI" "$cmd" --help) || lgr_fail "lgr $cmd --help exited non-zero"
	for section in NAME SYNOPSIS DESCRIPTION OPTIONS "EXIT STATUS" EXAMPLES; do
		grep -q "^$section\$" <<<"$out" || lgr_fail "lgr $cmd --help has no $section section"
	done
	grep -q "lgr $cmd" <<<"$out" || lgr_fail "lgr $cmd --help does not name the command"
done
"$LGR_CLI" --help | grep -q '^SYNOPSIS$' || lgr_fail "lgr --help has no SYNOPSIS"
usage() {
	local rc
	"$LGR_CLI" "$@" >"$W/usage.out" 2>&1
	rc=$?
	[ "$rc" -eq 2 ] || lgr_fail "lgr $* exited $rc, expected 2 (usage)"
	[ -s "$W/usage.out" ] || lgr_fail "lgr $* said nothing about the usage error"
}
usage
usage logs --pki "$P"
usage nosuch
usage firehose --pki "$P" --type log,bogus
usage emit --pki "$P" --count x app
usage logs app-a
usage firehose --pki "$P" --count 3

lgr_check "a router and an agent start; the agent forwards to the router over mutual TLS"
lgr_start "$router_conf"
lgr_wait_port "$W/in.port"
in_port=$LGR_PORT
lgr_wait_port "$W/egress.port"
eg_port=$LGR_PORT
agent_conf=$W/agent.conf
lgr_conf_write "$agent_conf" <<EOF
module(load="$(lgr_module imloggregator)")
module(load="$(lgr_module omdoppler)")
input(type="imloggregator" port="0" listenPortFileName="$W/agent.port" role="agent" tls.cacert="$P/ca.crt"
	tls.mycert="$P/metron.crt" tls.myprivkey="$P/metron.key" ruleset="out")
ruleset(name="out") {
	action(type="omdoppler" routers=["127.0.0.1:$in_port"] batch.flushinterval="20" tls.cacert="$P/ca.crt"
		tls.mycert="$P/metron.crt" tls.myprivkey="$P/metron.key" tls.servername="doppler")
}
EOF
lgr_start2 "$agent_conf"
lgr_wait_port "$W/agent.port"
ag_port=$LGR_PORT

EG=(--pki "$P" --addr "127.0.0.1:$eg_port")
AG=(--pki "$P" --addr "127.0.0.1:$ag_port")
STATS=(lgr_stat_is "$W/stats.log" 'omfirehose\(127\.0\.0\.1:0\)')

lgr_check "five clients subscribe: logs, logs --all-types, firehose, two firehose shard members"
lgr_client logs logs "${EG[@]}" app-a
lgr_client logs_all logs "${EG[@]}" --all-types app-a
lgr_client fire firehose "${EG[@]}"
lgr_client shard1 firehose "${EG[@]}" --shard-id group-1 --source-id shard-src --type log
lgr_client shard2 firehose "${EG[@]}" --shard-id group-1 --source-id shard-src --type log
lgr_wait_for "5 subscriptions at the router" "${STATS[@]}" subscriptions 5
grep -q "connected to 127.0.0.1:$eg_port (doppler)" "$W/logs.err" || lgr_fail "lgr logs did not say it connected"

lgr_check "lgr emit sends logs (stdin, MESSAGE --count), ERR lines, a counter and a gauge; each exits 0"
emit() {
	"$LGR_CLI" emit "${AG[@]}" "$@" 2>"$W/emit.err" || { cat "$W/emit.err" >&2; lgr_fail "lgr emit $* failed"; }
}
printf 'first line of app-a\n  indented, with "quotes" and \\ backslash\nline with a CR\r\n\nlast line ü\n' \
	| emit app-a
emit --err --instance-id 3 --source-type APP/PROC/WORKER app-a "an error on instance 3"
emit --count 5 app-a "request {n} served"
emit --source-type "" app-b "from b"
emit --type counter --name requests --delta 2 app-a
emit --type gauge --name memory --value 1048576 --unit bytes app-a
# 5 lines + 1 ERR + 5 = 11 logs of app-a, 1 of app-b, 1 counter, 1 gauge
lgr_wait_for "lgr logs to print 11 lines" lgr_lines_reach "$W/logs.out" 11
lgr_wait_for "lgr logs --all-types to print 13 lines" lgr_lines_reach "$W/logs_all.out" 13
lgr_wait_for "lgr firehose to print 14 lines" lgr_lines_reach "$W/fire.out" 14

cat >"$W/check.py" <<'PYEOF'
"""Checks the clients' output against the envelopes of the firehose (JSON lines) and what was emitted."""
import base64, collections, datetime, json, sys

def fail(msg):
    print("check.py: " + msg, file=sys.stderr)
    sys.exit(1)

def cf_time(ns):
    # Go's "2006-01-02T15:04:05.00-0700" in local time: hundredths truncated, numeric zone
    t = datetime.datetime.fromtimestamp(ns // 10**9).astimezone()
    return t.strftime("%Y-%m-%dT%H:%M:%S") + ".%02d" % (ns % 10**9 // 10**7) + t.strftime("%z")

def num(v):
    # the shortest text that reads back as v, without a trailing ".0" (the values here are plain)
    s = repr(float(v))
    return s[:-2] if s.endswith(".0") else s

def head(e):
    return "%s [%s/%s]" % (cf_time(int(e["timestamp"])), e["tags"].get("source_type", ""), e["instance_id"])

def text(e):
    if "log" in e:
        p = base64.b64decode(e["log"]["payload"]).decode()
        return ["%s %s %s" % (head(e), e["log"]["type"], l.rstrip("\r\n")) for l in p.split("\n")]
    if "counter" in e:
        c = e["counter"]
        return ["%s COUNTER %s delta=%s total=%s" % (head(e), c["name"], c["delta"], c["total"])]
    if "gauge" in e:
        m = e["gauge"]["metrics"]
        return ["%s GAUGE %s" % (head(e), " ".join("%s=%s %s" % (k, num(m[k]["value"]), m[k]["unit"]) for k in sorted(m)))]
    fail("unexpected envelope %s" % e)

def lines(path):
    with open(path, encoding="utf-8") as f:
        return [l.rstrip("\n") for l in f]

w = sys.argv[1]
fire = []
for l in lines(w + "/fire.out"):
    try:
        fire.append(json.loads(l))
    except ValueError:
        fail("firehose printed a line that is not JSON: %r" % l)
for e in fire:
    for k in ("timestamp", "source_id", "instance_id", "deprecated_tags", "tags"):
        if k not in e:
            fail("firehose line without %s: %s" % (k, e))
payloads = collections.Counter(
    (e["source_id"], e["log"]["type"], base64.b64decode(e["log"]["payload"]).decode()) for e in fire if "log" in e)
want = collections.Counter([("app-a", "OUT", "first line of app-a"),
    ("app-a", "OUT", '  indented, with "quotes" and \\ backslash'), ("app-a", "OUT", "line with a CR"),
    ("app-a", "OUT", ""), ("app-a", "OUT", "last line \u00fc"), ("app-a", "ERR", "an error on instance 3"),
    ("app-b", "OUT", "from b")] + [("app-a", "OUT", "request %d served" % i) for i in range(1, 6)])
if payloads != want:
    fail("firehose logs differ from what was emitted:\n got  %s\n want %s" % (sorted(payloads), sorted(want)))
metrics = [e for e in fire if "log" not in e]
if len(metrics) != 2 or metrics[0]["counter"] != {"name": "requests", "delta": "2", "total": "2"} \
        or metrics[1]["gauge"]["metrics"] != {"memory": {"unit": "bytes", "value": 1048576}}:
    fail("firehose metrics differ: %s" % metrics)
for e in fire:
    if e["source_id"] == "app-a" and (e["tags"].get("deployment") is not None or e["instance_id"] not in ("0", "3")):
        fail("unexpected tags or instance: %s" % e)
app_a = [e for e in fire if e["source_id"] == "app-a"]
for name, envs in (("logs", [e for e in app_a if "log" in e]), ("logs_all", app_a)):
    got = collections.Counter(lines("%s/%s.out" % (w, name)))
    exp = collections.Counter(l for e in envs for l in text(e))
    if got != exp:
        fail("lgr %s printed other lines:\n unexpected %s\n missing    %s" % (name, list((got - exp).elements()),
                                                                           list((exp - got).elements())))
worker = [l for l in lines(w + "/logs.out") if "[APP/PROC/WORKER/3] ERR an error on instance 3" in l]
if len(worker) != 1:
    fail("the ERR line of instance 3 is not printed as [APP/PROC/WORKER/3] ERR")
print("%d firehose envelopes, %d log lines checked" % (len(fire), sum(1 for _ in lines(w + "/logs.out"))))
PYEOF
python3 "$W/check.py" "$W" || lgr_fail "the clients' output differs from what was emitted"

lgr_check "two firehose clients of one shard group split 300 envelopes exactly"
seq 1 300 | sed 's/^/shard line /' | emit shard-src
shard_sum() { [ $(($(lgr_lines "$W/shard1.out") + $(lgr_lines "$W/shard2.out"))) -ge 300 ]; }
lgr_wait_for "the shard group to receive 300 envelopes" shard_sum
python3 - "$W" <<'PYEOF' || lgr_fail "the shard group split wrongly"
import base64, json, sys
w = sys.argv[1]
seqs = []
for m in ("shard1", "shard2"):
    got = [int(base64.b64decode(json.loads(l)["log"]["payload"]).split()[-1]) for l in open("%s/%s.out" % (w, m))]
    print("%s: %d envelopes" % (m, len(got)), file=sys.stderr)
    if not got:
        sys.exit("member %s got nothing" % m)
    seqs += got
if sorted(seqs) != list(range(1, 301)):
    sys.exit("the members got %d envelopes, %d distinct, not exactly 1..300" % (len(seqs), len(set(seqs))))
PYEOF

lgr_check "TLS refusals end every subcommand with status 1 and a message naming the cause"
lgr_pki "$W/other-pki"
O=$W/other-pki
LGR_PKI=$P
refused() { # EXPECTED-MESSAGE ARGS...
	local want=$1 rc
	shift
	timeout "$(lgr_timeout)" "$LGR_CLI" "$@" >"$W/refused.out" 2>"$W/refused.err"
	rc=$?
	[ "$rc" -eq 1 ] || { cat "$W/refused.err" >&2; lgr_fail "lgr $* exited $rc, expected 1"; }
	grep -q -- "$want" "$W/refused.err" || { cat "$W/refused.err" >&2; lgr_fail "lgr $*: no \"$want\" message"; }
	[ ! -s "$W/refused.out" ] || lgr_fail "lgr $* printed output"
}
for cmd in logs firehose; do
	args=(--addr "127.0.0.1:$eg_port")
	[ "$cmd" = logs ] && tail=(app-a) || tail=()
	refused "unknown CA" "$cmd" "${args[@]}" --ca "$O/ca.crt" --cert "$P/client.crt" --key "$P/client.key" "${tail[@]}"
	refused "wrong server name" "$cmd" "${args[@]}" --pki "$P" --server-name metron "${tail[@]}"
	refused "refused this client's certificate" "$cmd" "${args[@]}" --ca "$P/ca.crt" --cert "$O/client.crt" \
		--key "$O/client.key" "${tail[@]}"
done
refused "unknown CA" emit --addr "127.0.0.1:$ag_port" --ca "$O/ca.crt" --cert "$P/client.crt" --key "$P/client.key" \
	app-a x
refused "wrong server name" emit --addr "127.0.0.1:$ag_port" --pki "$P" --server-name doppler app-a x
refused "refused this client's certificate" emit --addr "127.0.0.1:$ag_port" --ca "$P/ca.crt" --cert "$O/client.crt" \
	--key "$O/client.key" app-a x
refused "not reachable" emit --pki "$P" --addr "127.0.0.1:$eg_port" --server-name doppler --timeout 1 \
	--plaintext app-a x

lgr_check "lgr logs --recent reads app-a's recent logs from the gateway, oldest first, as lgr logs printed them"
lgr_wait_port "$W/gateway.port"
gw="https://127.0.0.1:$LGR_PORT"
recent() { # OUT ARGS...: lgr logs --recent ARGS, which must succeed
	local out=$1
	shift
	"$LGR_CLI" logs --recent --gateway "$gw" --ca "$P/ca.crt" "$@" >"$W/$out" 2>"$W/$out.err" ||
		{ cat "$W/$out.err" >&2; lgr_fail "lgr logs --recent $* failed"; }
}
recent recent.out --token test-app-token app-a
diff "$W/logs.out" "$W/recent.out" >&2 || lgr_fail "lgr logs --recent printed other lines than lgr logs"
recent recent_all.out --token test-admin-token --all-types app-a
diff <(sort "$W/logs_all.out") <(sort "$W/recent_all.out") >&2 ||
	lgr_fail "lgr logs --recent --all-types printed other lines than lgr logs --all-types"
sort -c -s -k1,1 "$W/recent_all.out" || lgr_fail "lgr logs --recent --all-types is not in timestamp order"
recent recent_sn.out --token "bearer test-app-token" --server-name reverselogproxy app-a
diff "$W/logs.out" "$W/recent_sn.out" >&2 || lgr_fail "lgr logs --recent --server-name printed other lines"
refused "may not read" logs --recent --gateway "$gw" --ca "$P/ca.crt" --token test-app-token app-b
refused "may not read" logs --recent --gateway "$gw" --ca "$P/ca.crt" --token wrong app-a
refused "certificate was refused" logs --recent --gateway "$gw" --ca "$O/ca.crt" --token test-app-token app-a
refused "certificate was refused" logs --recent --gateway "$gw" --ca "$P/ca.crt" --server-name doppler \
	--token test-app-token app-a

lgr_check "lgr logs reconnects when the router restarts and prints what is sent afterwards"
lgr_stop
lgr_wait_for "lgr logs to notice the router is gone" grep -q "retrying" "$W/logs.err"
# the same ports again, so the agent and the clients find the new router where the old one was
sed -e "s|port=\"0\" listenPortFileName=\"$W/in.port\"|port=\"$in_port\" listenPortFileName=\"$W/in.port\"|" \
	-e "s|port=\"0\" listenPortFileName=\"$W/egress.port\"|port=\"$eg_port\" listenPortFileName=\"$W/egress.port\"|" \
	"$router_conf" >"$W/router2.conf"
grep -q "port=\"$eg_port\"" "$W/router2.conf" || lgr_fail "the restarted router's config lost its ports"
lgr_start "$W/router2.conf"
STATS=(lgr_stat_is "$W/stats.log" "omfirehose\\(127\\.0\\.0\\.1:$eg_port\\)")
lgr_wait_for "lgr logs to reconnect" grep -q "reconnected to 127.0.0.1:$eg_port" "$W/logs.err"
# the connection is up before the stream is subscribed: emit once the router counts all five clients again
lgr_wait_for "5 subscriptions at the restarted router" "${STATS[@]}" subscriptions 5
# straight to the router's ingress: what is checked is the client's reconnect, not the agent's
"$LGR_CLI" emit --pki "$P" --addr "127.0.0.1:$in_port" --server-name doppler app-a "sent after the router restarted" \
	2>"$W/emit.err" || { cat "$W/emit.err" >&2; lgr_fail "lgr emit to the restarted router failed"; }
lgr_wait_for "lgr logs to print the line sent after the restart" grep -q "OUT sent after the router restarted\$" \
	"$W/logs.out"

lgr_check "the clients exit 0 on SIGTERM; the router sees their streams end"
for c in logs logs_all fire shard1 shard2; do lgr_client_stop "$c"; done
lgr_wait_for "0 subscriptions" "${STATS[@]}" subscriptions 0
lgr_stop2
lgr_stop
lgr_pass
