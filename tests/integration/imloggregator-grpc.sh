#!/usr/bin/env bash
# shellcheck disable=SC2119,SC2317 # lgr_init takes no script arguments; checks run through lgr_wait_for
# imloggregator-grpc.sh: envelopes sent by an independent gRPC client (grpc-js, tests/tools/grpc-peer) over mutual
# TLS reach rsyslog as messages that carry them without loss, through every Ingress method and the v1 Pusher, in
# both roles, from many connections at once.
#
# One rsyslogd, two inputs: role="router" on 127.0.0.1 and role="agent" with defaultTags on 127.0.0.2, each with its
# own ruleset and omfile action writing every message as a record (app-name, procid, severity, timereported,
# fromhost-ip, $!loggregator, msg; see tests/tools/grpc-peer/records.py).
#
# Oracle:
#   - router: every envelope the peer sent (its dump of the encoded bytes: all five types, log OUT and ERR, a payload
#     of all 256 byte values, an empty payload, tags and deprecated tags of each kind, 64-bit extremes, NaN and
#     -Infinity gauge values) through Sender, BatchSender (3 per batch) and Send (2 per call) is rebuilt from its
#     record (JSON + %msg% bytes) field by field and equals what was sent; app-name = source_id, procid =
#     instance_id, severity err for ERR logs else info, timereported = the timestamp to the microsecond,
#     fromhost-ip 127.0.0.1; every call ends with status OK;
#   - Pusher (router): a v1 LogMessage and a v1 CounterEvent arrive converted as wire.md section 6 says (written out
#     below by hand: source_id from app_id or deployment/job, instance_id from source_instance, the v1 envelope
#     timestamp, tags origin/deployment/job/index/ip/__v1_type/source_type);
#   - agent: the same comparison against the sent envelopes with the agent's rules applied as the real agent
#     applies them (doc/imloggregator.md "Roles"; records.py agent): source_id from tags.origin when that key exists,
#     else from a text deprecated origin; deprecated tags copied into tags, replacing (decimals as Go's
#     FormatFloat 'f' -1: 0.25, 100, 1000000000000000000000); defaultTags where absent; counter totals accumulated
#     per (name, source_id, tags) when total is 0;
#   - 20 clients on their own connections at once (10 Sender, 10 BatchSender), 500 envelopes each: every envelope
#     arrives exactly once, and nothing else arrives (each record file holds exactly the expected envelopes); the
#     router input has 3 submitters, and each stream's envelopes are written in the order it sent them (unary Send
#     calls: each call's);
#   - impstats: each input's ingress equals the envelopes sent to it, dropped.ingress and invalid are 0;
#   - rsyslogd exits 0 on SIGTERM (valgrind clean under LGR_VALGRIND=1) and the module logged nothing but
#     connection notices.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
lgr_init
lgr_need_peer
lgr_pki

tok=$(lgr_token)
per_client=500
default_tags="deployment:cf,job:diego-cell,index:3,ip:10.0.16.7,az:z1"
conf=$LGR_WORK/rsyslog.conf
lgr_conf_write "$conf" <<EOF
module(load="impstats" interval="1" log.syslog="off" log.file="$LGR_WORK/stats.log" format="legacy")
module(load="$(lgr_module imloggregator)")
$(lgr_record_template rec "$tok")
input(type="imloggregator" protocol="grpc" address="127.0.0.1" port="0" listenPortFileName="$LGR_WORK/router.port"
	ruleset="router" role="router" submitters="3" tls="on" tls.cacert="$LGR_PKI/ca.crt"
	tls.mycert="$LGR_PKI/doppler.crt" tls.myprivkey="$LGR_PKI/doppler.key")
input(type="imloggregator" protocol="grpc" address="127.0.0.2" port="0" listenPortFileName="$LGR_WORK/agent.port"
	ruleset="agent" role="agent" defaultTags=["deployment:cf", "job:diego-cell", "index:3", "ip:10.0.16.7", "az:z1"]
	tls.cacert="$LGR_PKI/ca.crt" tls.mycert="$LGR_PKI/metron.crt" tls.myprivkey="$LGR_PKI/metron.key")
ruleset(name="router") { action(type="omfile" file="$LGR_WORK/router.bin" template="rec") }
ruleset(name="agent") { action(type="omfile" file="$LGR_WORK/agent.bin" template="rec") }
EOF

# The envelopes: one set per v2 method (router), one for the agent, and the v1 ones for Pusher with the v2 form the
# conversion must give.
python3 - "$LGR_WORK" <<'EOF' || lgr_fail "cannot write the envelopes"
import base64, json, os, sys
work = sys.argv[1]
b64 = lambda b: base64.b64encode(b).decode()
def mixed(tag, base):
    sid = "app-" + tag
    binary = bytes(range(256)) + b"\x00\xff\n\x00 end \xff"
    return [
        {"timestamp": str(base + 1), "source_id": sid, "instance_id": "0",
         "tags": {"source_type": "APP/PROC/WEB", "method": tag},
         "deprecated_tags": {"origin": {"text": "cell"}},
         "log": {"payload": b64(("hello from %s\n" % tag).encode()), "type": "OUT"}},
        {"timestamp": str(base + 2), "source_id": sid, "instance_id": "1",
         "tags": {"k": "v", "empty": ""},
         "deprecated_tags": {"int": {"integer": "-9223372036854775808"}, "dec": {"decimal": 1.5}, "txt": {"text": "x y"}},
         "log": {"payload": b64(binary), "type": "ERR"}},
        {"timestamp": str(base + 3), "source_id": sid, "instance_id": "2",
         "log": {"payload": "", "type": "OUT"}},
        {"timestamp": str(base + 4), "source_id": sid, "instance_id": "0", "tags": {"unit": "req"},
         "counter": {"name": "requests", "delta": "7", "total": "18446744073709551615"}},
        {"timestamp": str(base + 5), "source_id": sid, "instance_id": "0", "tags": {"origin": "metrics"},
         "gauge": {"metrics": {"cpu": {"unit": "percentage", "value": 12.5},
                               "memory": {"unit": "bytes", "value": 1073741824}}}},
        {"timestamp": str(base + 6), "source_id": "", "gauge": {"metrics": {"odd": {"unit": "", "value": "NaN"},
                                                                        "low": {"unit": "x", "value": "-Infinity"}}}},
        {"timestamp": str(base + 7), "source_id": sid, "instance_id": "3",
         "timer": {"name": "http", "start": "1700000000000000000", "stop": "1700000000250000123"}},
        {"timestamp": str(base + 8), "source_id": sid,
         "event": {"title": "deploy", "body": "app \"restarted\" \u00fc \\ ok"}},
        # logs as senders make them (no deprecated tags): the router builds these straight from their bytes
        {"timestamp": str(base + 9), "source_id": sid, "instance_id": "4",
         "tags": {"source_type": "APP/PROC/WEB", "app_name": "\u00fcber", "k": "v \"q\""},
         "log": {"payload": b64(binary), "type": "ERR"}},
        {"timestamp": str(base + 10), "source_id": sid + "/\u00e9", "instance_id": "",
         "log": {"payload": b64(b"plain\n"), "type": "OUT"}},
    ]
sets = {"sender": 1731000000123456789, "batchsender": 1731000001123456789, "send": 1731000002123456789}
for tag, base in sets.items():
    with open(os.path.join(work, "in-%s.jsonl" % tag), "w") as f:
        for i, e in enumerate(mixed(tag, base)):
            # unary Send: each call (2 envelopes, --batch 2 below) keeps its order, different calls may take
            # different submitters; a source id per call lets the order check ask for exactly that
            if tag == "send" and e["source_id"]:
                e["source_id"] = e["source_id"].replace("app-send", "app-send%d" % (i // 2), 1)
            f.write(json.dumps(e) + "\n")
# The agent's set, sent in this order on one stream (counter totals depend on it).
a = 1731000003000000000
agent = [
    {"timestamp": str(a + 1), "tags": {"origin": "from-tags"}, "deprecated_tags": {"origin": {"text": "ignored"}},
     "log": {"payload": b64(b"origin from tags"), "type": "OUT"}},
    {"timestamp": str(a + 2), "instance_id": "4",
     "deprecated_tags": {"origin": {"text": "from-deprecated"}, "job": {"text": "custom-job"},
                         "n": {"integer": "-5"}, "d": {"decimal": 0.25}, "hundred": {"decimal": 100},
                         "big": {"decimal": 1e21}},
     "log": {"payload": b64(b"origin from deprecated tags\x00"), "type": "ERR"}},
    {"timestamp": str(a + 16), "tags": {"origin": "", "job": "replaced"},
     "deprecated_tags": {"origin": {"text": "dep"}, "job": {"text": "from-deprecated"}},
     "log": {"payload": b64(b"empty origin tag"), "type": "OUT"}},
    {"timestamp": str(a + 3), "source_id": "explicit", "tags": {"deployment": "own", "origin": "not-used"},
     "log": {"payload": b64(b"explicit source"), "type": "OUT"}},
    {"timestamp": str(a + 4), "source_id": "ctr", "counter": {"name": "hits", "delta": "5"}},
    {"timestamp": str(a + 5), "source_id": "ctr", "counter": {"name": "hits", "delta": "3"}},
    {"timestamp": str(a + 6), "source_id": "ctr", "tags": {"route": "a"}, "counter": {"name": "hits", "delta": "4"}},
    {"timestamp": str(a + 7), "source_id": "ctr", "counter": {"name": "hits", "total": "100"}},
    {"timestamp": str(a + 8), "source_id": "ctr", "counter": {"name": "hits", "delta": "2"}},
    {"timestamp": str(a + 9), "source_id": "ctr2", "counter": {"name": "hits", "delta": "1"}},
    {"timestamp": str(a + 10), "source_id": "ctr", "tags": {"route": "a"}, "counter": {"name": "hits", "delta": "6"}},
    {"timestamp": str(a + 11), "source_id": "ctr", "counter": {"name": "hits", "delta": "9", "total": "50"}},
    {"timestamp": str(a + 12), "source_id": "ctr", "counter": {"name": "hits", "delta": "1"}},
    {"timestamp": str(a + 13), "tags": {"origin": "gauges"},
     "gauge": {"metrics": {"a": {"unit": "u", "value": 1}, "b": {"unit": "v", "value": 2}}}},
    {"timestamp": str(a + 14), "deprecated_tags": {"origin": {"integer": "77"}}, "timer": {"name": "t", "start": "1",
                                                                                         "stop": "2"}},
    {"timestamp": str(a + 15), "tags": {"origin": "events"}, "event": {"title": "e", "body": "b"}},
    # logs as senders make them (no deprecated tags) take the input's path straight from the bytes
    {"timestamp": str(a + 17), "tags": {"origin": "fast-origin", "az": "own-az"},
     "log": {"payload": b64(b"origin from tags, built from the bytes"), "type": "ERR"}},
    {"timestamp": str(a + 18), "tags": {"origin": ""}, "log": {"payload": b64(b"no source id"), "type": "OUT"}},
]
with open(os.path.join(work, "in-agent.jsonl"), "w") as f:
    for e in agent:
        f.write(json.dumps(e) + "\n")
# v1 through Pusher (router role: converted, no agent defaults) and what each must become.
p = 1731000004000000000
log_bytes = b"v1 log \x00\xff\n line two"
v1 = [
    {"v1": {"origin": "rep", "eventType": "LogMessage", "timestamp": str(p + 1), "deployment": "cf",
            "job": "diego-cell", "index": "idx-1", "ip": "10.0.16.7", "tags": {"custom": "yes"},
            "logMessage": {"message": b64(log_bytes), "message_type": "ERR", "timestamp": str(p - 5),
                           "app_id": "11111111-2222-3333-4444-555555555555", "source_type": "APP/PROC/WEB",
                           "source_instance": "2"}}},
    {"v1": {"origin": "gorouter", "eventType": "CounterEvent", "timestamp": str(p + 2), "deployment": "cf",
            "job": "router", "index": "0", "ip": "10.0.1.1",
            "counterEvent": {"name": "total_requests", "delta": "3", "total": "300"}}},
]
v2 = [
    {"timestamp": str(p + 1), "source_id": "11111111-2222-3333-4444-555555555555", "instance_id": "2",
     "deprecated_tags": {},
     "tags": {"custom": "yes", "origin": "rep", "deployment": "cf", "job": "diego-cell", "index": "idx-1",
              "ip": "10.0.16.7", "__v1_type": "LogMessage", "source_type": "APP/PROC/WEB"},
     "log": {"payload": b64(log_bytes), "type": "ERR"}},
    {"timestamp": str(p + 2), "source_id": "cf/router", "instance_id": "", "deprecated_tags": {},
     "tags": {"origin": "gorouter", "deployment": "cf", "job": "router", "index": "0", "ip": "10.0.1.1",
              "__v1_type": "CounterEvent"},
     "counter": {"name": "total_requests", "delta": "3", "total": "300"}},
]
with open(os.path.join(work, "in-pusher.jsonl"), "w") as f:
    for e in v1:
        f.write(json.dumps(e) + "\n")
with open(os.path.join(work, "expect-pusher.jsonl"), "w") as f:
    for e in v2:
        f.write(json.dumps(e) + "\n")
EOF

lgr_check "rsyslogd starts with a router and an agent imloggregator input (mutual TLS, port 0)"
lgr_start "$conf"
lgr_wait_port "$LGR_WORK/router.port"
router_port=$LGR_PORT
lgr_wait_port "$LGR_WORK/agent.port"
agent_port=$LGR_PORT
lgr_say "router input on 127.0.0.1:$router_port, agent input on 127.0.0.2:$agent_port"
to_router=(--target "127.0.0.1:$router_port" "${LGR_PEER_TLS[@]}" --name doppler)
to_agent=(--target "127.0.0.2:$agent_port" "${LGR_PEER_TLS[@]}" --name metron)

# peer_ok NAME ARGS...: runs the peer, its output in $LGR_WORK/NAME.out; the run must end with status OK.
peer_ok() {
	local name=$1 end
	shift
	lgr_peer "$@" >"$LGR_WORK/$name.out" 2>"$LGR_WORK/$name.err"
	end=$(lgr_peer_line "$LGR_WORK/$name.out" "done")
	[ -n "$end" ] || { cat "$LGR_WORK/$name.err" >&2; lgr_fail "$name: the peer gave no result"; }
	[ "$(lgr_json "$end" code)" = 0 ] || { cat "$LGR_WORK/$name.out" >&2; lgr_fail "$name: a call failed: $end"; }
}

lgr_check "router: every envelope type through Sender, BatchSender (3 per batch) and Send (2 per call) ends OK"
peer_ok sender send "${to_router[@]}" --method Sender --input "$LGR_WORK/in-sender.jsonl" \
	--dump "$LGR_WORK/sent-sender.jsonl"
peer_ok batchsender send "${to_router[@]}" --method BatchSender --batch 3 --input "$LGR_WORK/in-batchsender.jsonl" \
	--dump "$LGR_WORK/sent-batchsender.jsonl"
peer_ok send send "${to_router[@]}" --method Send --batch 2 --input "$LGR_WORK/in-send.jsonl" \
	--dump "$LGR_WORK/sent-send.jsonl"
lgr_check "router: a v1 LogMessage and a v1 CounterEvent through Pusher end OK"
peer_ok pusher send "${to_router[@]}" --method Pusher --input "$LGR_WORK/in-pusher.jsonl"
cat "$LGR_WORK"/sent-sender.jsonl "$LGR_WORK"/sent-batchsender.jsonl "$LGR_WORK"/sent-send.jsonl \
	"$LGR_WORK"/expect-pusher.jsonl >"$LGR_WORK/expect-router-1.jsonl"
n1=$(wc -l <"$LGR_WORK/expect-router-1.jsonl")
lgr_wait_for "$n1 records in router.bin" lgr_records_reach "$LGR_WORK/router.bin" "$tok" "$n1"
lgr_records check --out "$LGR_WORK/router.bin" --token "$tok" --expect "$LGR_WORK/expect-router-1.jsonl" \
	--ip 127.0.0.1 --exact || lgr_fail "router: the records differ from the envelopes sent"

lgr_check "agent: source_id from origin, deprecated tags copied, defaultTags added, counter totals kept"
peer_ok agent send "${to_agent[@]}" --method BatchSender --batch 4 --input "$LGR_WORK/in-agent.jsonl" \
	--dump "$LGR_WORK/sent-agent.jsonl"
lgr_records agent --default-tags "$default_tags" <"$LGR_WORK/sent-agent.jsonl" >"$LGR_WORK/expect-agent.jsonl" ||
	lgr_fail "cannot apply the agent rules to the sent envelopes"
na=$(wc -l <"$LGR_WORK/expect-agent.jsonl")
lgr_wait_for "$na records in agent.bin" lgr_records_reach "$LGR_WORK/agent.bin" "$tok" "$na"
lgr_records check --out "$LGR_WORK/agent.bin" --token "$tok" --expect "$LGR_WORK/expect-agent.jsonl" \
	--ip 127.0.0.1 --exact || lgr_fail "agent: the records differ from the envelopes with the agent rules applied"

lgr_check "20 clients at once (10 Sender, 10 BatchSender), $per_client envelopes each: each arrives exactly once"
lgr_peer send "${to_router[@]}" --method Sender --parallel 10 --gen "$per_client" --source-id conc-s \
	--payload-size 64 --dump "$LGR_WORK/sent-conc-s.jsonl" >"$LGR_WORK/conc-s.out" 2>"$LGR_WORK/conc-s.err" &
conc_s=$!
lgr_peer send "${to_router[@]}" --method BatchSender --batch 10 --parallel 10 --gen "$per_client" \
	--source-id conc-b --dump "$LGR_WORK/sent-conc-b.jsonl" >"$LGR_WORK/conc-b.out" 2>"$LGR_WORK/conc-b.err" &
conc_b=$!
wait "$conc_s" "$conc_b"
for f in conc-s conc-b; do
	done_line=$(lgr_peer_line "$LGR_WORK/$f.out" "done")
	[ -n "$done_line" ] || { cat "$LGR_WORK/$f.err" >&2; lgr_fail "$f: the peer gave no result"; }
	[ "$(lgr_json "$done_line" code)" = 0 ] || lgr_fail "$f: a call failed: $(cat "$LGR_WORK/$f.out")"
	[ "$(lgr_json "$done_line" acked)" = $((10 * per_client)) ] || lgr_fail "$f: not every envelope acknowledged"
done
cat "$LGR_WORK/expect-router-1.jsonl" "$LGR_WORK/sent-conc-s.jsonl" "$LGR_WORK/sent-conc-b.jsonl" \
	>"$LGR_WORK/expect-router.jsonl"
nr=$(wc -l <"$LGR_WORK/expect-router.jsonl")
[ "$nr" -eq $((n1 + 20 * per_client)) ] || lgr_fail "the peers dumped $nr envelopes, expected $((n1 + 20 * per_client))"
lgr_wait_for "$nr records in router.bin" lgr_records_reach "$LGR_WORK/router.bin" "$tok" "$nr"

lgr_check "impstats: router ingress=$nr, agent ingress=$na, dropped.ingress=0 and invalid=0 on both"
router_stats='imloggregator\(grpc/127\.0\.0\.1:[0-9]+\)'
agent_stats='imloggregator\(grpc/127\.0\.0\.2:[0-9]+\)'
lgr_wait_for "router ingress=$nr in stats.log" lgr_stat_is "$LGR_WORK/stats.log" "$router_stats" ingress "$nr"
lgr_wait_for "agent ingress=$na in stats.log" lgr_stat_is "$LGR_WORK/stats.log" "$agent_stats" ingress "$na"
for s in "$router_stats" "$agent_stats"; do
	for c in dropped.ingress invalid; do
		v=$(lgr_stat "$LGR_WORK/stats.log" "$s" "$c")
		[ "$v" = 0 ] || lgr_fail "impstats $s $c is '$v', expected 0"
	done
done

lgr_check "rsyslogd stops cleanly on SIGTERM$([ "$LGR_VALGRIND" = 1 ] && echo ', valgrind clean')"
lgr_stop

lgr_check "after the stop, router.bin holds exactly the $nr envelopes sent (each once), agent.bin the $na"
lgr_records check --out "$LGR_WORK/router.bin" --token "$tok" --expect "$LGR_WORK/expect-router.jsonl" \
	--ip 127.0.0.1 --exact --in-order || lgr_fail "router: the records differ from the envelopes sent"
lgr_records check --out "$LGR_WORK/agent.bin" --token "$tok" --expect "$LGR_WORK/expect-agent.jsonl" \
	--ip 127.0.0.1 --exact || lgr_fail "agent: the records differ after the stop"

lgr_check "the module logged nothing but connection notices"
benign='connection closed by the peer|unexpected eof while reading|connection finished'
if grep -F 'imloggregator' "$LGR_WORK/internal.log" | grep -Ev "$benign"; then
	lgr_fail "imloggregator logged unexpected messages (above)"
fi
lgr_pass
