#!/usr/bin/env bash
# shellcheck disable=SC2119,SC2317 # lgr_init takes no script arguments; checks run through lgr_wait_for
# omdoppler-agent-router.sh: the full agent-to-router path with two rsyslogd on loopback:
#   emitter (grpc-js) -> agent rsyslogd: imloggregator role="agent" -> omdoppler (mutual TLS, 5 streams)
#   -> router rsyslogd: imloggregator role="router" -> omfile (records of tests/tools/grpc-peer/records.py).
#
# Oracle:
#   - every envelope the emitter sent (all five types, binary and empty payloads, tags and deprecated tags of each
#     kind, 64-bit extremes, NaN and -Infinity gauge values; then 5000 generated logs from 5 connections) is
#     written by the router exactly once, equal field by field to the envelope with the agent's rules applied
#     (records.py agent: source_id from origin, deprecated tags copied, defaultTags added, counter totals kept),
#     with %app-name%, %procid%, severity and %timereported% as imloggregator maps them;
#   - agent impstats: omdoppler ingress == egress == the envelopes sent, dropped.egress 0, router.connects >= 1,
#     router.errors 0; router impstats: imloggregator ingress == the same count, invalid 0;
#   - both daemons exit 0 on SIGTERM, the agent first (valgrind clean under LGR_VALGRIND=1).
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
lgr_init
lgr_bg_init
lgr_need_peer
lgr_pki

tok=$(lgr_token)
default_tags="deployment:cf,job:diego-cell,index:3,ip:10.0.16.7"
rconf=$LGR_WORK/router.conf
lgr_conf_write "$rconf" <<EOF
module(load="impstats" interval="1" log.syslog="off" log.file="$LGR_WORK/router-stats.log" format="legacy")
module(load="$(lgr_module imloggregator)")
$(lgr_record_template rec "$tok")
input(type="imloggregator" port="0" listenPortFileName="$LGR_WORK/router.port" role="router" ruleset="out"
	tls.cacert="$LGR_PKI/ca.crt" tls.mycert="$LGR_PKI/doppler.crt" tls.myprivkey="$LGR_PKI/doppler.key")
ruleset(name="out") { action(type="omfile" file="$LGR_WORK/router.bin" template="rec") }
EOF
# The router daemon has its own work directory.
mkdir -p "$LGR_WORK/router-work"
sed -i "s|workDirectory=\"$LGR_WORK\"|workDirectory=\"$LGR_WORK/router-work\"|; s|$LGR_WORK/internal.log|$LGR_WORK/router-internal.log|" \
	"$rconf"

lgr_check "the router rsyslogd starts (imloggregator role=router -> omfile)"
lgr_start2 "$rconf"
lgr_wait_port "$LGR_WORK/router.port"
router_port=$LGR_PORT

aconf=$LGR_WORK/agent.conf
lgr_conf_write "$aconf" <<EOF
module(load="impstats" interval="1" log.syslog="off" log.file="$LGR_WORK/agent-stats.log" format="legacy")
module(load="$(lgr_module imloggregator)")
module(load="$(lgr_module omdoppler)")
input(type="imloggregator" port="0" listenPortFileName="$LGR_WORK/agent.port" role="agent" ruleset="fwd"
	defaultTags=["deployment:cf", "job:diego-cell", "index:3", "ip:10.0.16.7"]
	tls.cacert="$LGR_PKI/ca.crt" tls.mycert="$LGR_PKI/metron.crt" tls.myprivkey="$LGR_PKI/metron.key")
ruleset(name="fwd") {
	action(type="omdoppler" name="agent" routers=["127.0.0.1:$router_port"] tls.cacert="$LGR_PKI/ca.crt"
		tls.mycert="$LGR_PKI/metron.crt" tls.myprivkey="$LGR_PKI/metron.key")
}
EOF

python3 - "$LGR_WORK" <<'EOF' || lgr_fail "cannot write the envelopes"
import base64, json, os, sys
work = sys.argv[1]
b64 = lambda b: base64.b64encode(b).decode()
a = 1732000000000000000
envs = [
    {"timestamp": str(a + 1), "tags": {"origin": "rep", "source_type": "APP/PROC/WEB"}, "instance_id": "2",
     "log": {"payload": b64(bytes(range(256)) + b"\x00tail"), "type": "ERR"}},
    {"timestamp": str(a + 2), "source_id": "app-1", "deprecated_tags": {"n": {"integer": "-5"}, "d": {"decimal": 0.25},
                                                                  "origin": {"text": "dep"}},
     "log": {"payload": "", "type": "OUT"}},
    {"timestamp": str(a + 3), "source_id": "ctr", "counter": {"name": "hits", "delta": "5"}},
    {"timestamp": str(a + 4), "source_id": "ctr", "counter": {"name": "hits", "delta": "3"}},
    {"timestamp": str(a + 5), "source_id": "ctr", "counter": {"name": "big", "delta": "1", "total": "18446744073709551615"}},
    {"timestamp": str(a + 6), "source_id": "g", "gauge": {"metrics": {"cpu": {"unit": "percentage", "value": 12.5},
                                                                    "odd": {"unit": "", "value": "NaN"},
                                                                    "low": {"unit": "x", "value": "-Infinity"}}}},
    {"timestamp": str(a + 7), "source_id": "t", "instance_id": "1",
     "timer": {"name": "http", "start": "-9223372036854775808", "stop": "9223372036854775807"}},
    {"timestamp": str(a + 8), "tags": {"origin": "events"}, "event": {"title": "deploy", "body": "b\u00fc \"q\""}},
]
with open(os.path.join(work, "in-mixed.jsonl"), "w") as f:
    for e in envs:
        f.write(json.dumps(e) + "\n")
EOF

lgr_check "the agent rsyslogd starts (imloggregator role=agent -> omdoppler -> the router)"
lgr_start "$aconf"
lgr_wait_port "$LGR_WORK/agent.port"
agent_port=$LGR_PORT

to_agent=(--target "127.0.0.1:$agent_port" "${LGR_PEER_TLS[@]}" --name metron)
lgr_check "an emitter sends every type, then 5000 logs from 5 connections"
lgr_peer send "${to_agent[@]}" --method Sender --input "$LGR_WORK/in-mixed.jsonl" --dump "$LGR_WORK/sent-mixed.jsonl" \
	>"$LGR_WORK/mixed.out" 2>"$LGR_WORK/mixed.err"
lgr_peer send "${to_agent[@]}" --method BatchSender --batch 20 --parallel 5 --gen 1000 --payload-size 120 \
	--source-id bulk --dump "$LGR_WORK/sent-bulk.jsonl" >"$LGR_WORK/bulk.out" 2>"$LGR_WORK/bulk.err"
for f in mixed bulk; do
	end=$(lgr_peer_line "$LGR_WORK/$f.out" "done")
	[ -n "$end" ] || { cat "$LGR_WORK/$f.err" >&2; lgr_fail "$f: the emitter gave no result"; }
	[ "$(lgr_json "$end" code)" = 0 ] || lgr_fail "$f: a call failed: $end"
done
cat "$LGR_WORK/sent-mixed.jsonl" "$LGR_WORK/sent-bulk.jsonl" |
	lgr_records agent --default-tags "$default_tags" >"$LGR_WORK/expect.jsonl" || lgr_fail "cannot apply the agent rules"
n=$(wc -l <"$LGR_WORK/expect.jsonl")
[ "$n" -eq 5008 ] || lgr_fail "the emitter dumped $n envelopes, expected 5008"

lgr_check "the router writes exactly the $n envelopes, with the agent's rules applied"
lgr_wait_for "$n records at the router" lgr_records_reach "$LGR_WORK/router.bin" "$tok" "$n"
lgr_records check --out "$LGR_WORK/router.bin" --token "$tok" --expect "$LGR_WORK/expect.jsonl" --ip 127.0.0.1 \
	--exact || lgr_fail "the router's records differ from the envelopes sent (agent rules applied)"

lgr_check "impstats: agent omdoppler ingress == egress == $n, nothing dropped, no errors; router ingress == $n"
lgr_wait_for "agent egress=$n" lgr_stat_is "$LGR_WORK/agent-stats.log" 'omdoppler\(agent\)' egress "$n"
for c in ingress:"$n" dropped.egress:0 router.errors:0; do
	v=$(lgr_stat "$LGR_WORK/agent-stats.log" 'omdoppler\(agent\)' "${c%%:*}")
	[ "$v" = "${c#*:}" ] || lgr_fail "agent impstats ${c%%:*} is '$v', expected ${c#*:}"
done
lgr_stat_ge "$LGR_WORK/agent-stats.log" 'omdoppler\(agent\)' router.connects 1 || lgr_fail "no router connection counted"
lgr_wait_for "router ingress=$n" lgr_stat_is "$LGR_WORK/router-stats.log" 'imloggregator\(grpc/[^)]*\)' ingress "$n"
[ "$(lgr_stat "$LGR_WORK/router-stats.log" 'imloggregator\(grpc/[^)]*\)' invalid)" = 0 ] ||
	lgr_fail "the router counted invalid input"

lgr_check "both daemons stop cleanly on SIGTERM$([ "$LGR_VALGRIND" = 1 ] && echo ', valgrind clean')"
lgr_stop
lgr_stop2
lgr_records check --out "$LGR_WORK/router.bin" --token "$tok" --expect "$LGR_WORK/expect.jsonl" --ip 127.0.0.1 \
	--exact || lgr_fail "the router's records changed at the stop"
if grep -F 'omdoppler' "$LGR_WORK/internal.log"; then
	lgr_fail "omdoppler logged messages (above)"
fi
lgr_pass
