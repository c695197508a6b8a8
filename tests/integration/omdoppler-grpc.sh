#!/usr/bin/env bash
# shellcheck disable=SC2119,SC2317 # lgr_init takes no script arguments; checks run through lgr_wait_for
# omdoppler-grpc.sh: rsyslog as a Loggregator agent: what reaches omdoppler arrives at an independent gRPC router
# (grpc-js, tests/tools/grpc-peer/peer.js router) over mutual TLS as the envelopes that were sent, without loss.
#
# One rsyslogd:
#   - imloggregator (role router, so envelopes pass unchanged) -> ruleset fwd -> omdoppler (v2 BatchSender, 3
#     streams, batches of 4) -> router A;
#   - imtcp -> ruleset plain -> omdoppler with the default mapping -> router A;
#   - imtcp -> ruleset tpl -> omdoppler with sourceId / instanceId / sourceType templates -> router A;
#   - imloggregator -> ruleset v1 -> omdoppler protocol="v1" (Pusher) -> router B.
#
# Oracle:
#   - every envelope sent to imloggregator (all five types, log OUT and ERR, a payload of all 256 byte values, an
#     empty payload, tags and deprecated tags of each kind, 64-bit extremes, NaN and -Infinity gauge values) is
#     recorded by router A exactly once and equals what was sent, field by field (records.py check --exact);
#   - RFC 5424 lines sent to imtcp arrive as Log envelopes: payload %msg%, source_id %app-name%, instance_id
#     %procid% ("" for "-"), tags source_type "APP", ERR for severity <= err else OUT, timestamp %timereported% in
#     ns (UTC offsets applied); through the templates, source_id / instance_id / source_type are the rendered text;
#   - a message whose $!loggregator a ruleset broke (log set to a number) is dropped, counted and logged;
#   - v1: a log, a counter and a two-metric gauge arrive at router B as a LogMessage, a CounterEvent and two
#     ValueMetrics with the fields wire.md section 6 gives; the event (no v1 form) is dropped and counted;
#   - impstats: every action's ingress == egress + dropped.egress; dropped.egress 0 except the v1 event and the
#     broken envelope (1 each);
#     router.connects >= 1 and router.errors 0;
#   - rsyslogd -N1 refuses an unreadable certificate, a key that does not match the certificate and an unknown
#     template, naming the file or template;
#   - rsyslogd exits 0 on SIGTERM (valgrind clean under LGR_VALGRIND=1).
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
lgr_init
lgr_bg_init
lgr_need_peer
lgr_pki

tok=$(lgr_token)
lgr_router routerA --tls --ca "$LGR_PKI/ca.crt" --cert "$LGR_PKI/doppler.crt" --key "$LGR_PKI/doppler.key" \
	--records "$LGR_WORK/routerA.rec" --token "$tok"
port_a=$LGR_PORT
lgr_router routerB --tls --ca "$LGR_PKI/ca.crt" --cert "$LGR_PKI/doppler.crt" --key "$LGR_PKI/doppler.key" \
	--records "$LGR_WORK/routerB.rec" --v1-records "$LGR_WORK/routerB.v1" --token "$tok"
port_b=$LGR_PORT
lgr_say "router A on 127.0.0.1:$port_a, router B on 127.0.0.1:$port_b"

tls_in="tls.cacert=\"$LGR_PKI/ca.crt\" tls.mycert=\"$LGR_PKI/metron.crt\" tls.myprivkey=\"$LGR_PKI/metron.key\""
tls_out="tls.cacert=\"$LGR_PKI/ca.crt\" tls.mycert=\"$LGR_PKI/client.crt\" tls.myprivkey=\"$LGR_PKI/client.key\""
conf=$LGR_WORK/rsyslog.conf
lgr_conf_write "$conf" <<EOF
module(load="impstats" interval="1" log.syslog="off" log.file="$LGR_WORK/stats.log" format="legacy")
module(load="imtcp")
module(load="$(lgr_module imloggregator)")
module(load="$(lgr_module omdoppler)")
template(name="sid" type="string" string="%hostname%/%app-name%")
template(name="iid" type="string" string="i-%procid%")
template(name="stype" type="string" string="APP/PROC/%app-name%")
input(type="imloggregator" port="0" listenPortFileName="$LGR_WORK/fwd.port" role="router" ruleset="fwd" $tls_in)
input(type="imloggregator" port="0" listenPortFileName="$LGR_WORK/v1.port" role="router" ruleset="v1" $tls_in)
input(type="imtcp" address="127.0.0.1" port="0" listenPortFileName="$LGR_WORK/plain.port" ruleset="plain")
input(type="imtcp" address="127.0.0.1" port="0" listenPortFileName="$LGR_WORK/tpl.port" ruleset="tpl")
ruleset(name="fwd") {
	action(type="omdoppler" name="fwd" routers=["127.0.0.1:$port_a"] streams="3" batch.maxsize="4"
		batch.flushinterval="50" $tls_out)
}
ruleset(name="plain") {
	if \$app-name == "badapp" then { set \$!loggregator!log = 5; }
	action(type="omdoppler" name="plain" routers=["127.0.0.1:$port_a"] streams="1" $tls_out)
}
ruleset(name="tpl") {
	action(type="omdoppler" name="tpl" routers=["localhost:$port_a"] streams="2" sourceId="sid" instanceId="iid"
		sourceType="stype" $tls_out)
}
ruleset(name="v1") {
	action(type="omdoppler" name="v1" routers=["127.0.0.1:$port_b"] protocol="v1" $tls_out)
}
EOF

python3 - "$LGR_WORK" <<'EOF' || lgr_fail "cannot write the envelopes"
import base64, json, os, sys
work = sys.argv[1]
b64 = lambda b: base64.b64encode(b).decode()
sid = "app-omd"
base = 1731000000123456789
binary = bytes(range(256)) + b"\x00\xff\n\x00 end \xff"
envs = [
    {"timestamp": str(base + 1), "source_id": sid, "instance_id": "0",
     "tags": {"source_type": "APP/PROC/WEB", "method": "x"}, "deprecated_tags": {"origin": {"text": "cell"}},
     "log": {"payload": b64(b"hello from omdoppler\n"), "type": "OUT"}},
    {"timestamp": str(base + 2), "source_id": sid, "instance_id": "1", "tags": {"k": "v", "empty": ""},
     "deprecated_tags": {"int": {"integer": "-9223372036854775808"}, "dec": {"decimal": 1.5}, "txt": {"text": "x y"}},
     "log": {"payload": b64(binary), "type": "ERR"}},
    {"timestamp": str(base + 3), "source_id": sid, "instance_id": "2", "log": {"payload": "", "type": "OUT"}},
    {"timestamp": str(base + 4), "source_id": sid, "instance_id": "0", "tags": {"unit": "req"},
     "counter": {"name": "requests", "delta": "7", "total": "18446744073709551615"}},
    {"timestamp": str(base + 5), "source_id": sid, "instance_id": "0", "tags": {"origin": "metrics"},
     "gauge": {"metrics": {"cpu": {"unit": "percentage", "value": 12.5},
                           "memory": {"unit": "bytes", "value": 1073741824}}}},
    {"timestamp": str(base + 6), "source_id": "", "gauge": {"metrics": {"odd": {"unit": "", "value": "NaN"},
                                                                    "low": {"unit": "x", "value": "-Infinity"}}}},
    {"timestamp": str(base + 7), "source_id": sid, "instance_id": "3",
     "timer": {"name": "http", "start": "1700000000000000000", "stop": "1700000000250000123"}},
    {"timestamp": str(base + 8), "source_id": sid, "event": {"title": "deploy", "body": "app \"restarted\" \u00fc \\ ok"}},
]
for i in range(9, 41):  # more logs, so that batches of 4 spread over the 3 streams
    envs.append({"timestamp": str(base + i), "source_id": sid, "instance_id": str(i % 4),
                 "log": {"payload": b64(("line %d \x00\x01\xfe" % i).encode("latin-1")), "type": "OUT" if i % 3 else "ERR"}})
with open(os.path.join(work, "in-fwd.jsonl"), "w") as f:
    for e in envs:
        f.write(json.dumps(e) + "\n")
# v1: a log, a counter, a gauge of two metrics, an event (no v1 form)
v = 1731000005000000000
v1in = [
    {"timestamp": str(v + 1), "source_id": "v1-app", "instance_id": "7", "tags": {"source_type": "APP/PROC/WEB"},
     "log": {"payload": b64(b"v1 payload \x00\xff"), "type": "ERR"}},
    {"timestamp": str(v + 2), "source_id": "v1-app", "counter": {"name": "hits", "delta": "3", "total": "30"}},
    {"timestamp": str(v + 3), "source_id": "v1-app", "gauge": {"metrics": {"a": {"unit": "ms", "value": 1.5},
                                                                       "b": {"unit": "B", "value": 2}}}},
    {"timestamp": str(v + 4), "source_id": "v1-app", "event": {"title": "t", "body": "b"}},
]
with open(os.path.join(work, "in-v1.jsonl"), "w") as f:
    for e in v1in:
        f.write(json.dumps(e) + "\n")
# imtcp lines (RFC 5424) and the Log envelopes they must become
lines = [
    ("<11>1 2024-01-02T03:04:05.123456Z host1 myapp 42 - - hello world", "myapp", "42", 1704164645123456000, "ERR", "hello world"),
    ("<14>1 2024-01-02T03:04:06.5+02:00 host1 myapp - - - an info line", "myapp", "", 1704157446500000000, "OUT", "an info line"),
    ("<8>1 2024-01-02T03:04:07Z host2 other 9 - - emergency", "other", "9", 1704164647000000000, "ERR", "emergency"),
    ("<13>1 2024-01-02T03:04:08.000001-01:30 host2 other 10 - - notice \u00fcml", "other", "10", 1704170048000001000, "OUT", "notice \u00fcml"),
]
with open(os.path.join(work, "lines.txt"), "w") as f:
    for l in lines:
        f.write(l[0] + "\n")
def log_env(sid, iid, ts, typ, text, stype, host=None):
    return {"timestamp": str(ts), "source_id": sid, "instance_id": iid, "deprecated_tags": {},
            "tags": {"source_type": stype}, "log": {"payload": b64(text.encode()), "type": typ}}
with open(os.path.join(work, "expect-plain.jsonl"), "w") as f:
    for l in lines:
        f.write(json.dumps(log_env(l[1], l[2], l[3] + 0, l[4], l[5], "APP")) + "\n")
with open(os.path.join(work, "expect-tpl.jsonl"), "w") as f:
    for l in lines:
        host = l[0].split(" ")[2]
        # the same lines as above: the keys differ through the source_id
        f.write(json.dumps(log_env(host + "/" + l[1], "i-" + (l[2] or "-"), l[3], l[4], l[5], "APP/PROC/" + l[1])) + "\n")
EOF

lgr_check "rsyslogd -N1 refuses an unreadable certificate, a key of another certificate and an unknown template"
bad=$LGR_WORK/bad.conf
for case in "tls.cacert=\"$LGR_PKI/ca.crt\" tls.mycert=\"$LGR_WORK/missing.crt\" tls.myprivkey=\"$LGR_PKI/client.key\"|missing.crt" \
	"tls.cacert=\"$LGR_PKI/ca.crt\" tls.mycert=\"$LGR_PKI/client.crt\" tls.myprivkey=\"$LGR_PKI/metron.key\"|metron.key" \
	"tls=\"off\" sourceId=\"no_such_template\"|no_such_template"; do
	printf 'module(load="%s")\naction(type="omdoppler" routers=["127.0.0.1:1"] %s)\n' "$(lgr_module omdoppler)" \
		"${case%|*}" | lgr_conf_write "$bad"
	if lgr_n1 "$bad"; then
		lgr_fail "rsyslogd -N1 accepted ${case%|*}"
	fi
	grep -qF "${case#*|}" <<<"$LGR_N1_OUT" || { printf '%s\n' "$LGR_N1_OUT" >&2; lgr_fail "-N1 did not name ${case#*|}"; }
done

lgr_check "rsyslogd starts with three omdoppler v2 actions and one v1 action over mutual TLS"
lgr_start "$conf"
lgr_wait_port "$LGR_WORK/fwd.port"
fwd_port=$LGR_PORT
lgr_wait_port "$LGR_WORK/v1.port"
v1_port=$LGR_PORT
lgr_wait_port "$LGR_WORK/plain.port"
plain_port=$LGR_PORT
lgr_wait_port "$LGR_WORK/tpl.port"
tpl_port=$LGR_PORT

peer_ok() {
	local name=$1 end
	shift
	lgr_peer "$@" >"$LGR_WORK/$name.out" 2>"$LGR_WORK/$name.err"
	end=$(lgr_peer_line "$LGR_WORK/$name.out" "done")
	[ -n "$end" ] || { cat "$LGR_WORK/$name.err" >&2; lgr_fail "$name: the peer gave no result"; }
	[ "$(lgr_json "$end" code)" = 0 ] || { cat "$LGR_WORK/$name.out" >&2; lgr_fail "$name: a call failed: $end"; }
}

lgr_check "imloggregator -> omdoppler -> grpc-js router: all five types and binary payloads arrive intact"
peer_ok fwd send --target "127.0.0.1:$fwd_port" "${LGR_PEER_TLS[@]}" --name metron --method BatchSender --batch 3 \
	--input "$LGR_WORK/in-fwd.jsonl" --dump "$LGR_WORK/sent-fwd.jsonl"
nf=$(wc -l <"$LGR_WORK/sent-fwd.jsonl")
lgr_wait_for "$nf records at router A" lgr_records_reach "$LGR_WORK/routerA.rec" "$tok" "$nf"
lgr_records check --out "$LGR_WORK/routerA.rec" --token "$tok" --expect "$LGR_WORK/sent-fwd.jsonl" --ip 127.0.0.1 \
	--exact || lgr_fail "router A did not receive exactly the envelopes sent"

lgr_check "imtcp lines become Log envelopes (default mapping, and through the sourceId/instanceId/sourceType templates)"
mapfile -t lines <"$LGR_WORK/lines.txt"
lgr_send_tcp "$plain_port" "${lines[@]}" "<11>1 2024-01-02T03:04:05Z host1 badapp 1 - - a broken envelope"
lgr_send_tcp "$tpl_port" "${lines[@]}"
cat "$LGR_WORK/sent-fwd.jsonl" "$LGR_WORK/expect-plain.jsonl" "$LGR_WORK/expect-tpl.jsonl" >"$LGR_WORK/expect-a.jsonl"
na=$(wc -l <"$LGR_WORK/expect-a.jsonl")
lgr_wait_for "$na records at router A" lgr_records_reach "$LGR_WORK/routerA.rec" "$tok" "$na"
lgr_records check --out "$LGR_WORK/routerA.rec" --token "$tok" --expect "$LGR_WORK/expect-a.jsonl" --ip 127.0.0.1 \
	--exact || lgr_fail "router A: the plain lines did not arrive as the expected Log envelopes"

lgr_check "protocol v1 (Pusher): LogMessage, CounterEvent and two ValueMetrics; the event is dropped and counted"
peer_ok v1 send --target "127.0.0.1:$v1_port" "${LGR_PEER_TLS[@]}" --name metron --method Sender \
	--input "$LGR_WORK/in-v1.jsonl"
v1_has_4() { [ -f "$LGR_WORK/routerB.v1" ] && [ "$(wc -l <"$LGR_WORK/routerB.v1")" -ge 4 ]; }
lgr_wait_for "4 v1 envelopes at router B" v1_has_4
python3 - "$LGR_WORK/routerB.v1" <<'EOF' || lgr_fail "router B: the v1 envelopes differ from the expected conversion"
import base64, json, sys
got = [json.loads(l)["v1"] for l in open(sys.argv[1]) if l.strip()]
v = 1731000005000000000
problems = []
def expect(cond, what):
    if not cond:
        problems.append(what)
expect(len(got) == 4, "%d v1 envelopes, expected 4" % len(got))
logs = [e for e in got if e.get("eventType") == "LogMessage"]
ctrs = [e for e in got if e.get("eventType") == "CounterEvent"]
vms = sorted((e for e in got if e.get("eventType") == "ValueMetric"), key=lambda e: e["valueMetric"]["name"])
expect(len(logs) == 1 and len(ctrs) == 1 and len(vms) == 2, "types: %r" % [e.get("eventType") for e in got])
if logs:
    l = logs[0]
    lm = l["logMessage"]
    expect(base64.b64decode(lm["message"]) == b"v1 payload \x00\xff", "log payload %r" % lm["message"])
    expect(lm["message_type"] == "ERR", "log type %r" % lm["message_type"])
    expect(lm["app_id"] == "v1-app" and lm["source_instance"] == "7", "app_id/source_instance %r" % lm)
    expect(lm["source_type"] == "APP/PROC/WEB", "source_type %r" % lm.get("source_type"))
    expect(str(lm["timestamp"]) == str(v + 1) and str(l["timestamp"]) == str(v + 1), "log timestamps %r" % l)
if ctrs:
    c = ctrs[0]
    expect(c["counterEvent"]["name"] == "hits" and str(c["counterEvent"]["delta"]) == "3"
           and str(c["counterEvent"]["total"]) == "30", "counter %r" % c["counterEvent"])
    expect(c.get("tags", {}).get("source_id") == "v1-app", "counter tags %r" % c.get("tags"))
if len(vms) == 2:
    expect(vms[0]["valueMetric"] == {"name": "a", "value": 1.5, "unit": "ms"}, "metric a %r" % vms[0])
    expect(vms[1]["valueMetric"] == {"name": "b", "value": 2, "unit": "B"}, "metric b %r" % vms[1])
    expect(all(str(e["timestamp"]) == str(v + 3) for e in vms), "gauge timestamps")
for p in problems:
    print("v1: " + p)
sys.exit(1 if problems else 0)
EOF

lgr_check "impstats: ingress == egress + dropped.egress on every action; drops only for the v1 event; no errors"
st=$LGR_WORK/stats.log
lgr_wait_for "fwd egress=$nf" lgr_stat_is "$st" "omdoppler\(fwd\)" egress "$nf"
lgr_wait_for "plain egress=4" lgr_stat_is "$st" "omdoppler\(plain\)" egress 4
lgr_wait_for "tpl egress=4" lgr_stat_is "$st" "omdoppler\(tpl\)" egress 4
lgr_wait_for "v1 egress=3" lgr_stat_is "$st" "omdoppler\(v1\)" egress 3
for a in fwd plain tpl v1; do
	o="omdoppler\($a\)"
	lgr_wait_for "$a: ingress == egress + dropped.egress" lgr_stat_sum_is "$st" "$o" ingress egress dropped.egress
	want=0
	if [ "$a" = v1 ] || [ "$a" = plain ]; then want=1; fi
	v=$(lgr_stat "$st" "$o" dropped.egress)
	[ "$v" = "$want" ] || lgr_fail "impstats $a dropped.egress is '$v', expected $want"
	v=$(lgr_stat "$st" "$o" router.errors)
	[ "$v" = 0 ] || lgr_fail "impstats $a router.errors is '$v', expected 0"
	lgr_stat_ge "$st" "$o" router.connects 1 || lgr_fail "impstats $a router.connects is not >= 1"
done

lgr_check "rsyslogd stops cleanly on SIGTERM$([ "$LGR_VALGRIND" = 1 ] && echo ', valgrind clean')"
lgr_stop
lgr_records check --out "$LGR_WORK/routerA.rec" --token "$tok" --expect "$LGR_WORK/expect-a.jsonl" --ip 127.0.0.1 \
	--exact || lgr_fail "router A: records changed after the stop"
grep -q 'omdoppler: cannot rebuild an envelope from a message (\$!loggregator): malformed' "$LGR_WORK/internal.log" ||
	lgr_fail "the broken envelope was not logged"
if grep -F 'omdoppler' "$LGR_WORK/internal.log" |
	grep -Ev 'event envelopes dropped: they have no v1 form|cannot rebuild an envelope'; then
	lgr_fail "omdoppler logged unexpected messages (above)"
fi
lgr_pass
