#!/usr/bin/env bash
# shellcheck disable=SC2119,SC2317 # lgr_init takes no script arguments; checks run through lgr_wait_for
# omfirehose-egress.sh: rsyslog as a Loggregator router: envelopes that reach imloggregator (role router) go through
# omfirehose's Egress to independent gRPC subscribers (grpc-js, tests/tools/grpc-peer/peer.js subscribe) over
# mutual TLS, as the real router's and RLP's egress delivers them.
#
# One rsyslogd: imloggregator (role router, h2c) -> omfirehose (mutual TLS, port 0, maxStreams 7, batches of 5 or
# every 50 ms, subscriber buffers of 10000 so that the bursts below never overflow: losses are
# omfirehose-slow.sh's subject).
#
# Oracle:
#   - requests without selectors, or with a selector without a type, end with INVALID_ARGUMENT and lgr_select's
#     messages "Selectors cannot be empty" / "Selectors must have a Message";
#   - phase 1 (role="rlp", 7 subscribers: the maxStreams limit): a BatchedReceiver and a Receiver selecting all five types of
#     source app-a with use_preferred_tags get exactly the app-a envelopes sent (every field, binary payloads,
#     64-bit extremes, NaN), deprecated tags folded into tags; a third without use_preferred_tags gets tags folded
#     into deprecated tags as text; selectors by source id + type (log), counter name (any source) and gauge name
#     set (the exact set: a gauge with a subset does not match) get exactly their envelopes; a v1 BatchSubscribe
#     for app id app-a gets the v1 forms (LogMessage, CounterEvent, ValueMetric per metric, HttpStartStop; nothing
#     for the event); an eighth stream is refused with RESOURCE_EXHAUSTED;
#   - phase 2: three members of one shard group (BatchedReceiver) each get a share of 3000 log envelopes, the
#     shares add up to exactly 3000 without a duplicate; two unsharded subscribers (Receiver, BatchedReceiver) of
#     the same selector each get all 3000;
#   - phase 3: three members of a group with deterministic_name: all envelopes of one counter name go to one
#     member; the sum is exact;
#   - impstats: ingress == envelopes sent, egress == envelopes the subscribers received (v1: envelopes with a v1
#     form), dropped.egress 0, subscriptions as many as are open (7, then 0 at the end);
#   - rsyslogd exits 0 on SIGTERM with subscribers connected (valgrind clean under LGR_VALGRIND=1).
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
lgr_init
lgr_bg_init
lgr_need_peer
lgr_pki

W=$LGR_WORK
conf=$W/rsyslog.conf
lgr_conf_write "$conf" <<EOF
module(load="impstats" interval="1" log.syslog="off" log.file="$W/stats.log" format="legacy")
module(load="$(lgr_module imloggregator)")
module(load="$(lgr_module omfirehose)")
input(type="imloggregator" port="0" listenPortFileName="$W/in.port" role="router" tls="off")
action(type="omfirehose" role="rlp" port="0" listenPortFileName="$W/egress.port" maxStreams="7" batch.maxsize="5"
	batch.flushinterval="50" subscriber.buffer="10000" tls.cacert="$LGR_PKI/ca.crt" tls.mycert="$LGR_PKI/doppler.crt"
	tls.myprivkey="$LGR_PKI/doppler.key")
EOF

cat >"$W/check.py" <<'EOF'
"""Builds the envelopes of the test and checks what the subscribers received (JSON lines of peer.js)."""
import base64, collections, json, sys

def lines(path):
    try:
        with open(path) as f:
            return [json.loads(l) for l in f if l.strip()]
    except FileNotFoundError:
        return []

def key(e):
    return json.dumps(e, sort_keys=True)

def fail(msg):
    print("check.py: " + msg, file=sys.stderr)
    sys.exit(1)

def same(got, want, what):
    g, w = collections.Counter(map(key, got)), collections.Counter(map(key, want))
    if g != w:
        for k in list((g - w).keys())[:3]:
            print("unexpected: " + k, file=sys.stderr)
        for k in list((w - g).keys())[:3]:
            print("missing:    " + k, file=sys.stderr)
        fail("%s: %d received, %d expected, contents differ" % (what, len(got), len(want)))

def dtag_text(v):
    if "text" in v:
        return v["text"]
    if "integer" in v:
        return str(int(v["integer"]))
    return repr(float(v["decimal"]))  # the decimals used here print the same in Go's shortest form

def preferred(e):
    e = json.loads(json.dumps(e))
    for k, v in e["deprecated_tags"].items():
        e["tags"][k] = dtag_text(v)
    e["deprecated_tags"] = {}
    return e

def legacy(e):
    e = json.loads(json.dumps(e))
    for k, v in e["tags"].items():
        e["deprecated_tags"][k] = {"text": v}
    e["tags"] = {}
    return e

cmd = sys.argv[1]
if cmd == "gen":
    b64 = lambda b: base64.b64encode(b).decode()
    base = 1731000000000000000
    a, b = "app-a", "app-b"
    envs = [
        {"source_id": a, "instance_id": "0", "tags": {"source_type": "APP/PROC/WEB"},
         "log": {"payload": b64(bytes(range(256)) + b"\x00end"), "type": "OUT"}},
        {"source_id": a, "instance_id": "1", "tags": {"k": "v", "both": "tag"},
         "deprecated_tags": {"int": {"integer": "-9223372036854775808"}, "dec": {"decimal": 1.5},
                             "txt": {"text": "x y"}, "both": {"text": "dtag"}},
         "log": {"payload": "", "type": "ERR"}},
        {"source_id": a, "instance_id": "2", "tags": {"source_type": "APP/PROC/WEB", "caf\u00e9": "\u00fc"},
         "log": {"payload": b64(b"err \xff\x00 line\n"), "type": "ERR"}},
        {"source_id": a, "tags": {"unit": "req"},
         "counter": {"name": "requests", "delta": "7", "total": "18446744073709551615"}},
        {"source_id": a, "counter": {"name": "other", "delta": "1", "total": "2"}},
        {"source_id": a, "gauge": {"metrics": {"cpu": {"unit": "percentage", "value": 12.5},
                                               "memory": {"unit": "bytes", "value": 1073741824}}}},
        {"source_id": a, "gauge": {"metrics": {"cpu": {"unit": "percentage", "value": "NaN"}}}},
        {"source_id": a, "instance_id": "3", "tags": {"request_id": "01234567-89ab-cdef-0123-456789abcdef",
                                                      "method": "GET", "uri": "/x", "status_code": "200"},
         "timer": {"name": "http", "start": "1700000000000000000", "stop": "1700000000250000123"}},
        {"source_id": a, "event": {"title": "deploy", "body": "app \"restarted\" \u00fc"}},
        {"source_id": b, "log": {"payload": b64(b"from b"), "type": "OUT"}},
        {"source_id": b, "counter": {"name": "requests", "delta": "1", "total": "1"}},
        {"source_id": b, "gauge": {"metrics": {"memory": {"unit": "bytes", "value": 1}, "cpu": {"unit": "%", "value": 2}}}},
    ]
    with open(sys.argv[2], "w") as f:
        for i, e in enumerate(envs):
            e["timestamp"] = str(base + i + 1)
            f.write(json.dumps(e) + "\n")
    # phase 3: 20 counter names, 10 envelopes each
    with open(sys.argv[3], "w") as f:
        for i in range(200):
            f.write(json.dumps({"timestamp": str(base + 1000 + i), "source_id": "det-src",
                                "counter": {"name": "c%d" % (i % 20), "delta": "1", "total": str(i)}}) + "\n")
elif cmd == "phase1":
    sent, w = lines(sys.argv[2]), sys.argv[3]
    app_a = [e for e in sent if e["source_id"] == "app-a"]
    same(lines(w + "/all_b.jsonl"), [preferred(e) for e in app_a], "BatchedReceiver, app-a, all types")
    same(lines(w + "/all_r.jsonl"), [preferred(e) for e in app_a], "Receiver, app-a, all types")
    same(lines(w + "/legacy.jsonl"), [legacy(e) for e in app_a], "BatchedReceiver without use_preferred_tags")
    same(lines(w + "/log.jsonl"), [preferred(e) for e in app_a if "log" in e], "selector app-a log")
    same(lines(w + "/counter.jsonl"),
         [preferred(e) for e in sent if "counter" in e and e["counter"]["name"] == "requests"], "counter requests")
    same(lines(w + "/gauge.jsonl"),
         [preferred(e) for e in sent if "gauge" in e and sorted(e["gauge"]["metrics"]) == ["cpu", "memory"]],
         "gauge {cpu, memory}")
    v1 = [l["v1"] for l in lines(w + "/v1.jsonl")]
    kinds = collections.Counter(e["eventType"] for e in v1)
    want = {"LogMessage": 3, "CounterEvent": 2, "ValueMetric": 3, "HttpStartStop": 1}
    if kinds != collections.Counter(want):
        fail("v1 BatchSubscribe: got %s, expected %s" % (dict(kinds), want))
    logs = sorted((e for e in v1 if e["eventType"] == "LogMessage"), key=lambda e: e["timestamp"])
    if logs[0]["logMessage"]["message"] != app_a[0]["log"]["payload"] or logs[0]["logMessage"]["app_id"] != "app-a" \
            or logs[1]["logMessage"]["message_type"] != "ERR" or logs[2]["logMessage"]["message_type"] != "ERR":
        fail("v1 BatchSubscribe: log messages differ: %s" % logs)
    ctr = [e for e in v1 if e["eventType"] == "CounterEvent" and e["counterEvent"]["name"] == "requests"]
    if len(ctr) != 1 or ctr[0]["counterEvent"]["total"] != "18446744073709551615":
        fail("v1 BatchSubscribe: counter differs: %s" % ctr)
    # egress: v2 envelopes received, and for v1 the envelopes that have a v1 form (all app-a but the event)
    n = sum(len(lines(w + "/%s.jsonl" % s)) for s in ("all_b", "all_r", "legacy", "log", "counter", "gauge"))
    print(n + len([e for e in app_a if "event" not in e]))
elif cmd == "shards":
    w, total, members, full = sys.argv[2], int(sys.argv[3]), sys.argv[4].split(","), sys.argv[5].split(",")
    seqs = []
    for m in members:
        got = [int(e["tags"]["seq"]) for e in (preferred(x) for x in lines(w + "/%s.jsonl" % m))]
        if not got:
            fail("shard member %s got nothing" % m)
        print("%s: %d" % (m, len(got)), file=sys.stderr)
        seqs += got
    if len(seqs) != total or sorted(seqs) != list(range(1, total + 1)):
        fail("shard group: %d envelopes, %d distinct, expected exactly 1..%d once each" % (len(seqs), len(set(seqs)), total))
    for s in full:
        got = sorted(int(e["tags"]["seq"]) for e in (preferred(x) for x in lines(w + "/%s.jsonl" % s)))
        if got != list(range(1, total + 1)):
            fail("unsharded subscriber %s: %d envelopes, not exactly 1..%d" % (s, len(got), total))
elif cmd == "deterministic":
    w, total, members = sys.argv[2], int(sys.argv[3]), sys.argv[4].split(",")
    owner, n = {}, 0
    for m in members:
        for e in lines(w + "/%s.jsonl" % m):
            name = e["counter"]["name"]
            if owner.setdefault(name, m) != m:
                fail("counter %s went to %s and to %s" % (name, owner[name], m))
            n += 1
    if n != total:
        fail("deterministic group: %d envelopes, expected %d" % (n, total))
    print("owners: %s" % sorted(collections.Counter(owner.values()).items()), file=sys.stderr)
EOF
python3 "$W/check.py" gen "$W/phase1.jsonl" "$W/phase3.jsonl" || lgr_fail "cannot write the envelopes"

lgr_check "rsyslogd starts with imloggregator (router) -> omfirehose (mutual TLS)"
lgr_start "$conf"
lgr_wait_port "$W/in.port"
in_port=$LGR_PORT
lgr_wait_port "$W/egress.port"
eg_port=$LGR_PORT
T=(--target "127.0.0.1:$eg_port" "${LGR_PEER_TLS[@]}" --name doppler)
STATS=(lgr_stat_is "$W/stats.log" 'omfirehose\(127\.0\.0\.1:0\)')

# The network thread asks for short scheduler turns (lgr_thread_short_slice): on kernels that keep a slice per
# thread (/proc/PID/task/TID/sched shows se.slice), exactly one thread of the daemon has 100 us, the others the
# default.
slices=$(cat /proc/"$LGR_PID"/task/*/sched 2>/dev/null | awk '$1 == "se.slice" { print $3 }' | sort | uniq -c)
if [ -n "$slices" ]; then
	lgr_check "the egress network thread runs with a 100 us scheduler slice"
	[ "$(printf '%s\n' "$slices" | awk '$2 == 100000 { print $1 }')" = 1 ] ||
		lgr_fail "threads per slice (count, ns): $slices"
fi

send() {
	local name=$1 end
	shift
	lgr_peer send --target "127.0.0.1:$in_port" "$@" >"$W/$name.out" 2>"$W/$name.err"
	end=$(lgr_peer_line "$W/$name.out" "done")
	[ "$(lgr_json "$end" code)" = 0 ] || { cat "$W/$name.out" "$W/$name.err" >&2; lgr_fail "$name: sending failed"; }
}

# status NAME CODE MESSAGE: the subscriber ended by itself with that gRPC status and message.
status() {
	local line
	lgr_subscriber_wait "$1"
	line=$(lgr_subscriber_status "$1")
	if [ "$(lgr_json "$line" code)" != "$2" ] || [ "$(lgr_json "$line" details)" != "$3" ]; then
		lgr_fail "$1: expected status $2 \"$3\", got: $line $(cat "$W/$1.err")"
	fi
}

lgr_check "empty selectors and a selector without a type: INVALID_ARGUMENT with the RLP's messages"
lgr_subscriber empty "${T[@]}" --method BatchedReceiver --selectors '[]'
lgr_subscriber notype "${T[@]}" --method Receiver --selectors '[{"source_id":"app-a"}]'
status empty 3 "Selectors cannot be empty"
status notype 3 "Selectors must have a Message"

lgr_check "phase 1: seven subscribers with selectors by source, type, counter name, gauge names; v1"
all5='[{"source_id":"app-a","log":{}},{"source_id":"app-a","counter":{}},{"source_id":"app-a","gauge":{}},
{"source_id":"app-a","timer":{}},{"source_id":"app-a","event":{}}]'
lgr_subscriber all_b "${T[@]}" --method BatchedReceiver --selectors "$all5" --preferred-tags
lgr_subscriber all_r "${T[@]}" --method Receiver --selectors "$all5" --preferred-tags
lgr_subscriber legacy "${T[@]}" --method BatchedReceiver --selectors "$all5"
lgr_subscriber log "${T[@]}" --method BatchedReceiver --selectors '[{"source_id":"app-a","log":{}}]' --preferred-tags
lgr_subscriber counter "${T[@]}" --method BatchedReceiver --selectors '[{"counter":{"name":"requests"}}]' \
	--preferred-tags
lgr_subscriber gauge "${T[@]}" --method Receiver --selectors '[{"gauge":{"names":["memory","cpu"]}}]' \
	--preferred-tags
lgr_subscriber v1 "${T[@]}" --method BatchSubscribe --app-id app-a
lgr_wait_for "7 subscriptions" "${STATS[@]}" subscriptions 7

lgr_check "an eighth stream beyond maxStreams=7: RESOURCE_EXHAUSTED"
lgr_subscriber over "${T[@]}" --method BatchedReceiver --selectors '[{"log":{}}]'
status over 8 "too many egress streams"

send phase1 --method BatchSender --batch 3 --input "$W/phase1.jsonl" --dump "$W/sent1.jsonl"
lgr_wait_for "all_b to receive 8 envelopes" lgr_lines_reach "$W/all_b.jsonl" 8
lgr_wait_for "all_r to receive 8 envelopes" lgr_lines_reach "$W/all_r.jsonl" 8
lgr_wait_for "legacy to receive 8 envelopes" lgr_lines_reach "$W/legacy.jsonl" 8
lgr_wait_for "log to receive 2 envelopes" lgr_lines_reach "$W/log.jsonl" 2
lgr_wait_for "counter to receive 2 envelopes" lgr_lines_reach "$W/counter.jsonl" 2
lgr_wait_for "gauge to receive 2 envelopes" lgr_lines_reach "$W/gauge.jsonl" 2
lgr_wait_for "v1 to receive 8 v1 envelopes" lgr_lines_reach "$W/v1.jsonl" 8
egress1=$(python3 "$W/check.py" phase1 "$W/sent1.jsonl" "$W") || lgr_fail "phase 1: a subscriber got other envelopes"
for s in all_b all_r legacy log counter gauge v1; do lgr_subscriber_stop "$s"; done
lgr_wait_for "0 subscriptions" "${STATS[@]}" subscriptions 0

lgr_check "phase 2: a shard group of three splits 3000 envelopes exactly; two unsharded subscribers get all"
sel='[{"source_id":"shard-src","log":{}}]'
for m in m1 m2 m3; do
	lgr_subscriber "$m" "${T[@]}" --method BatchedReceiver --selectors "$sel" --shard-id group-1
done
lgr_subscriber full_b "${T[@]}" --method BatchedReceiver --selectors "$sel"
lgr_subscriber full_r "${T[@]}" --method Receiver --selectors "$sel"
lgr_wait_for "5 subscriptions" "${STATS[@]}" subscriptions 5
send phase2 --method BatchSender --batch 50 --gen 3000 --source-id shard-src
lgr_wait_for "full_b to receive 3000 envelopes" lgr_lines_reach "$W/full_b.jsonl" 3000
lgr_wait_for "full_r to receive 3000 envelopes" lgr_lines_reach "$W/full_r.jsonl" 3000
shard_sum() { [ $(($(lgr_lines "$W/m1.jsonl") + $(lgr_lines "$W/m2.jsonl") + $(lgr_lines "$W/m3.jsonl"))) -ge 3000 ]; }
lgr_wait_for "the shard group to receive 3000 envelopes" shard_sum
python3 "$W/check.py" shards "$W" 3000 m1,m2,m3 full_b,full_r || lgr_fail "phase 2: the shard group split wrongly"
for s in m1 m2 m3 full_b full_r; do lgr_subscriber_stop "$s"; done
lgr_wait_for "0 subscriptions" "${STATS[@]}" subscriptions 0

lgr_check "phase 3: deterministic_name sends every envelope of one counter name to the same member"
for m in d1 d2 d3; do
	lgr_subscriber "$m" "${T[@]}" --method BatchedReceiver --selectors '[{"source_id":"det-src","counter":{}}]' \
		--shard-id group-2 --deterministic-name "$m" --preferred-tags
done
lgr_wait_for "3 subscriptions" "${STATS[@]}" subscriptions 3
send phase3 --method BatchSender --batch 10 --input "$W/phase3.jsonl"
det_sum() { [ $(($(lgr_lines "$W/d1.jsonl") + $(lgr_lines "$W/d2.jsonl") + $(lgr_lines "$W/d3.jsonl"))) -ge 200 ]; }
lgr_wait_for "the deterministic group to receive 200 envelopes" det_sum
python3 "$W/check.py" deterministic "$W" 200 d1,d2,d3 || lgr_fail "phase 3: a counter name went to two members"

lgr_check "impstats: ingress, egress, dropped.egress and subscriptions match what was sent and received"
ingress=$(($(lgr_lines "$W/phase1.jsonl") + 3000 + 200))
egress=$((egress1 + 3 * 3000 + 200))
lgr_wait_for "ingress=$ingress" "${STATS[@]}" ingress "$ingress"
lgr_wait_for "egress=$egress" "${STATS[@]}" egress "$egress"
"${STATS[@]}" dropped.egress 0 || lgr_fail "dropped.egress is $(lgr_stat "$W/stats.log" 'omfirehose\(127\.0\.0\.1:0\)' dropped.egress)"
"${STATS[@]}" subscriptions 3 || lgr_fail "subscriptions is not 3"

lgr_check "rsyslogd exits cleanly with subscribers connected; they see the stream end"
lgr_stop
for m in d1 d2 d3; do status "$m" 14 "server shutting down"; done
lgr_pass
