#!/usr/bin/env bash
# shellcheck disable=SC2119,SC2317 # lgr_init takes no script arguments; checks run through lgr_wait_for
# imloggregator-subscribe.sh: imloggregator protocol="subscribe" as the reverse log proxy's fan-in: it pulls every
# router's Egress (BatchedReceiver) over mutual TLS and turns what they stream into messages, as if the envelopes
# had come in over gRPC ingress.
#
# Four rsyslogd on loopback:
#   r1, r2:    routers: imloggregator role="router" (port 0) -> omfirehose Egress (port 0), doppler's certificate;
#   bad:       the same with metron's certificate, whose DNS SANs do not hold tls.servername (doppler);
#   subscriber (the daemon under test): two subscribe inputs, role="router", reverselogproxy's certificate:
#     "all":  routers r1, r2 and bad, shardId rlp-all, every type, 2 submitters -> omfile all.bin;
#     "keep": routers r1 and r2, shardId rlp-keep, selectors log and counter, sourceIds app-keep -> omfile keep.bin
#   (records of tests/tools/grpc-peer/records.py, as imloggregator-grpc.sh writes them).
# The grpc-js peer (tests/tools/grpc-peer) sends envelopes of all five types into both routers.
#
# Oracle:
#   - each router counts two subscriptions (omfirehose impstats): both inputs subscribed to both good routers;
#   - the bad router is refused: the subscriber logs a line naming it (unreachable, a certificate verify failure)
#     and never subscribes there (its omfirehose counts no subscription);
#   - all.bin holds every envelope sent to r1 and r2 exactly once and nothing else, equal field by field to what
#     the peer sent (all five types, binary and empty payloads, tags and deprecated tags, 64-bit extremes, NaN),
#     app-name/procid/severity/timereported as imloggregator maps them, %fromhost-ip% the router's host
#     (127.0.0.1); each source id's envelopes in the order they were sent;
#   - keep.bin holds exactly the log and counter envelopes of source app-keep (sourceIds and selectors filter);
#   - r2 stopped (SIGTERM) and started again on the same Egress port: the subscriber logs the loss naming r2, then
#     "connected again", re-subscribes by itself (r2 counts two subscriptions again), and envelopes sent to the new
#     r2 arrive (exactly once, field by field, in all.bin and filtered in keep.bin);
#   - impstats of the "all" input: ingress == envelopes received, dropped.ingress 0, invalid 0, router.connects >= 3,
#     router.errors >= 2 (the bad router, r2's stop);
#   - every daemon exits 0 on SIGTERM (valgrind clean under LGR_VALGRIND=1), the subscriber within the usual bound
#     while connected and while the bad router is still being retried; the subscriber logged nothing about its
#     inputs but the lines above.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
lgr_init
lgr_bg_init
lgr_need_peer
lgr_pki

W=$LGR_WORK
tok=$(lgr_token)
declare -A RPID=()

# router_conf NAME CERT EGRESS_PORT: the config of a router rsyslogd (EGRESS_PORT 0: a free one), with its own work
# directory, internal log ($W/NAME-internal.log), impstats file ($W/NAME-stats.log) and port files.
router_conf() {
	local name=$1 cert=$2 eport=$3 conf=$W/$1.conf
	mkdir -p "$W/$name-work"
	lgr_conf_write "$conf" <<EOF
module(load="impstats" interval="1" log.syslog="off" log.file="$W/$name-stats.log" format="legacy")
module(load="$(lgr_module imloggregator)")
module(load="$(lgr_module omfirehose)")
input(type="imloggregator" port="0" listenPortFileName="$W/$name-in.port" role="router" ruleset="firehose"
	tls.cacert="$LGR_PKI/ca.crt" tls.mycert="$LGR_PKI/$cert.crt" tls.myprivkey="$LGR_PKI/$cert.key")
ruleset(name="firehose" queue.type="Direct") {
	action(type="omfirehose" port="$eport" listenPortFileName="$W/$name-eg.port" subscriber.buffer="10000"
		tls.cacert="$LGR_PKI/ca.crt" tls.mycert="$LGR_PKI/$cert.crt" tls.myprivkey="$LGR_PKI/$cert.key")
}
EOF
	sed -i "s|workDirectory=\"$W\"|workDirectory=\"$W/$name-work\"|; s|$W/internal.log|$W/$name-internal.log|" "$conf"
}

# router_start NAME RUN: starts router NAME (output rsyslogd-RUN.out, valgrind-RUN.log) and waits for its ports.
router_start() {
	local name=$1 run=$2
	lgr_validate "$W/$name.conf"
	rm -f "$W/$name-in.port" "$W/$name-eg.port" "$W/$name.pid"
	lgr_spawn "$W/$name.conf" "$W/$name.pid" "-$run"
	RPID[$name]=$LGR_SPAWNED
	LGR_BG_PIDS+=("$LGR_SPAWNED")
	lgr_wait_for "router $name to listen" lgr_has_port "$W/$name-eg.port"
	lgr_wait_for "router $name's ingress to listen" lgr_has_port "$W/$name-in.port"
}

router_gone() { ! kill -0 "${RPID[$1]}" 2>/dev/null; }

# router_stop NAME RUN: SIGTERM, a bounded wait, exit status 0 (and a clean valgrind-RUN.log under valgrind).
router_stop() {
	local name=$1 run=$2 rc
	kill -TERM "${RPID[$name]}" 2>/dev/null || lgr_fail "router $name was not running at stop"
	lgr_wait_for "router $name to exit after SIGTERM" router_gone "$name"
	wait "${RPID[$name]}"
	rc=$?
	if [ "$LGR_VALGRIND" = 1 ]; then
		lgr_valgrind_clean "$W/valgrind-$run.log" || lgr_fail "valgrind reported errors in router $name"
	fi
	[ "$rc" -eq 0 ] || lgr_fail "router $name exited with status $rc"
}

port_of() { tr -d ' \n' <"$1"; }

# lines_match FILE ERE: FILE has a line matching ERE (for lgr_wait_for).
lines_match() { [ -f "$1" ] && grep -Eq -- "$2" "$1"; }

router_conf r1 doppler 0
router_conf r2 doppler 0
router_conf bad metron 0
lgr_check "three router rsyslogds start (imloggregator role=router -> omfirehose), one with metron's certificate"
router_start r1 r1
router_start r2 r2a
router_start bad bad
eg1=$(port_of "$W/r1-eg.port")
eg2=$(port_of "$W/r2-eg.port")
egbad=$(port_of "$W/bad-eg.port")
in1=$(port_of "$W/r1-in.port")
in2=$(port_of "$W/r2-in.port")
lgr_say "r1 in $in1 egress $eg1, r2 in $in2 egress $eg2, bad egress $egbad"

sub_tls="tls.cacert=\"$LGR_PKI/ca.crt\" tls.mycert=\"$LGR_PKI/reverselogproxy.crt\""
sub_tls="$sub_tls tls.myprivkey=\"$LGR_PKI/reverselogproxy.key\""
conf=$W/rsyslog.conf
lgr_conf_write "$conf" <<EOF
module(load="impstats" interval="1" log.syslog="off" log.file="$W/stats.log" format="legacy")
module(load="$(lgr_module imloggregator)")
$(lgr_record_template rec "$tok")
input(type="imloggregator" protocol="subscribe" role="router" ruleset="all" submitters="2" shardId="rlp-all"
	routers=["127.0.0.1:$eg1", "127.0.0.1:$eg2", "127.0.0.1:$egbad"] $sub_tls)
input(type="imloggregator" protocol="subscribe" role="router" ruleset="keep" shardId="rlp-keep"
	routers=["127.0.0.1:$eg1", "127.0.0.1:$eg2"] selectors=["log", "counter"] sourceIds=["app-keep"]
	tls.servername="doppler" $sub_tls)
ruleset(name="all") { action(type="omfile" file="$W/all.bin" template="rec") }
ruleset(name="keep") { action(type="omfile" file="$W/keep.bin" template="rec") }
EOF

# The envelopes: a set per phase (1: to r1, 2: to r2, 3: to r2 after its restart), each with app-keep and a source
# of its own; every (source_id, timestamp) is unique.
python3 - "$W" <<'EOF' || lgr_fail "cannot write the envelopes"
import base64, json, os, sys
work = sys.argv[1]
b64 = lambda b: base64.b64encode(b).decode()
def mixed(phase, base):
    own = "app-%d" % phase
    out = []
    for sid in ("app-keep", own):
        out += [
            {"timestamp": str(base + 1), "source_id": sid, "instance_id": "0",
             "tags": {"source_type": "APP/PROC/WEB", "phase": str(phase)},
             "deprecated_tags": {"origin": {"text": "cell"}, "n": {"integer": "-9223372036854775808"},
                                 "d": {"decimal": 1.5}},
             "log": {"payload": b64(bytes(range(256)) + b"\x00\xff\n end"), "type": "ERR"}},
            {"timestamp": str(base + 2), "source_id": sid, "instance_id": "1",
             "log": {"payload": "", "type": "OUT"}},
            {"timestamp": str(base + 3), "source_id": sid, "tags": {"unit": "req"},
             "counter": {"name": "requests", "delta": "7", "total": "18446744073709551615"}},
            {"timestamp": str(base + 4), "source_id": sid,
             "gauge": {"metrics": {"cpu": {"unit": "percentage", "value": 12.5},
                                   "odd": {"unit": "", "value": "NaN"}}}},
            {"timestamp": str(base + 5), "source_id": sid, "instance_id": "3",
             "timer": {"name": "http", "start": "-9223372036854775808", "stop": "9223372036854775807"}},
            {"timestamp": str(base + 6), "source_id": sid,
             "event": {"title": "deploy", "body": "app \"restarted\" \u00fc \\ ok"}},
        ]
        base += 100
    return out
for phase in (1, 2, 3):
    with open(os.path.join(work, "in-%d.jsonl" % phase), "w") as f:
        for e in mixed(phase, 1733000000000000000 + phase * 1000000):
            f.write(json.dumps(e) + "\n")
EOF

# keep_of FILE...: the envelopes of the dumps that the "keep" input selects (source app-keep, log or counter).
keep_of() {
	python3 -c 'import json, sys
for path in sys.argv[1:]:
    for line in open(path):
        e = json.loads(line)
        if e["source_id"] == "app-keep" and ("log" in e or "counter" in e):
            print(json.dumps(e))' "$@"
}

# send NAME PORT INPUT: the peer sends INPUT to a router's ingress (BatchSender, 4 per batch) and must end OK;
# the envelopes as sent in $W/sent-NAME.jsonl.
send() {
	local name=$1 port=$2 input=$3 end
	lgr_peer send --target "127.0.0.1:$port" "${LGR_PEER_TLS[@]}" --name doppler --method BatchSender --batch 4 \
		--input "$input" --dump "$W/sent-$name.jsonl" >"$W/$name.out" 2>"$W/$name.err"
	end=$(lgr_peer_line "$W/$name.out" "done")
	[ -n "$end" ] || { cat "$W/$name.err" >&2; lgr_fail "$name: the peer gave no result"; }
	[ "$(lgr_json "$end" code)" = 0 ] || lgr_fail "$name: the call failed: $end"
}

# send_gen NAME PORT N: N generated logs of source bulk-NAME to a router (BatchSender, 10 per batch), dumped.
send_gen() {
	local name=$1 port=$2 n=$3 end
	lgr_peer send --target "127.0.0.1:$port" "${LGR_PEER_TLS[@]}" --name doppler --method BatchSender --batch 10 \
		--gen "$n" --source-id "bulk-$name" --payload-size 100 --dump "$W/sent-$name.jsonl" \
		>"$W/$name.out" 2>"$W/$name.err"
	end=$(lgr_peer_line "$W/$name.out" "done")
	[ -n "$end" ] || { cat "$W/$name.err" >&2; lgr_fail "$name: the peer gave no result"; }
	[ "$(lgr_json "$end" code)" = 0 ] || lgr_fail "$name: the call failed: $end"
}

# check_all EXPECT: all.bin holds exactly the envelopes of EXPECT, field by field, each source's in order.
check_all() {
	lgr_records check --out "$W/all.bin" --token "$tok" --expect "$1" --ip 127.0.0.1 --exact --in-order ||
		lgr_fail "all.bin differs from the envelopes sent to the routers"
}
check_keep() {
	lgr_records check --out "$W/keep.bin" --token "$tok" --expect "$1" --ip 127.0.0.1 --exact ||
		lgr_fail "keep.bin differs from the app-keep log and counter envelopes sent"
}

FH='omfirehose\([^)]*\)'
ALL='imloggregator\(subscribe/rlp-all\)'
lgr_check "the subscriber rsyslogd starts; both inputs subscribe to r1 and r2 (2 subscriptions at each)"
lgr_start "$conf"
lgr_wait_for "2 subscriptions at r1" lgr_stat_is "$W/r1-stats.log" "$FH" subscriptions 2
lgr_wait_for "2 subscriptions at r2" lgr_stat_is "$W/r2-stats.log" "$FH" subscriptions 2

lgr_check "the router whose certificate does not name doppler is refused, with a log line naming it"
bad_line="imloggregator\(subscribe/rlp-all\): router 127\.0\.0\.1:$egbad: unreachable: .*certificate verify failed"
lgr_wait_for "a line about the bad router" lines_match "$W/internal.log" "$bad_line"
grep -E "$bad_line" "$W/internal.log" | head -n 1
lgr_wait_for "router.errors >= 1" lgr_stat_ge "$W/stats.log" "$ALL" router.errors 1
lgr_stat_is "$W/bad-stats.log" "$FH" subscriptions 0 || lgr_fail "the bad router counts a subscription"

lgr_check "every type sent to r1, then to r2, then 500 logs to each, arrives exactly once, field by field"
send p1 "$in1" "$W/in-1.jsonl"
n=$(wc -l <"$W/sent-p1.jsonl")
lgr_wait_for "$n records in all.bin" lgr_records_reach "$W/all.bin" "$tok" "$n"
send p2 "$in2" "$W/in-2.jsonl"
send_gen g1 "$in1" 500
send_gen g2 "$in2" 500
cat "$W"/sent-p1.jsonl "$W"/sent-p2.jsonl "$W"/sent-g1.jsonl "$W"/sent-g2.jsonl >"$W/expect-all.jsonl"
keep_of "$W/sent-p1.jsonl" "$W/sent-p2.jsonl" >"$W/expect-keep.jsonl"
n=$(wc -l <"$W/expect-all.jsonl")
nk=$(wc -l <"$W/expect-keep.jsonl")
if [ "$n" -ne 1024 ] || [ "$nk" -ne 6 ]; then
	lgr_fail "the peer dumped $n envelopes ($nk to keep), expected 1024 (6)"
fi
lgr_wait_for "$n records in all.bin" lgr_records_reach "$W/all.bin" "$tok" "$n"
lgr_wait_for "$nk records in keep.bin" lgr_records_reach "$W/keep.bin" "$tok" "$nk"
check_all "$W/expect-all.jsonl"
check_keep "$W/expect-keep.jsonl"

lgr_check "r2 stopped: the subscriber logs the loss naming r2; r2 started again on egress port $eg2"
router_stop r2 r2a
r2_line="imloggregator\(subscribe/rlp-(all|keep)\): router 127\.0\.0\.1:$eg2: "
lgr_wait_for "a line about r2" lines_match "$W/internal.log" "$r2_line(stream ended|connection lost|unreachable)"
lgr_wait_for "router.errors >= 2" lgr_stat_ge "$W/stats.log" "$ALL" router.errors 2
rm -f "$W/r2-stats.log"
router_conf r2 doppler "$eg2"
router_start r2 r2b
in2=$(port_of "$W/r2-in.port")
[ "$(port_of "$W/r2-eg.port")" = "$eg2" ] || lgr_fail "r2 did not get its egress port $eg2 again"

lgr_check "the subscriber reconnects to r2 by itself and re-subscribes; envelopes sent to the new r2 arrive"
lgr_wait_for "2 subscriptions at the new r2" lgr_stat_is "$W/r2-stats.log" "$FH" subscriptions 2
lgr_wait_for "'connected again' about r2" lines_match "$W/internal.log" "${r2_line}connected again"
send p3 "$in2" "$W/in-3.jsonl"
cat "$W/sent-p3.jsonl" >>"$W/expect-all.jsonl"
keep_of "$W/sent-p3.jsonl" >>"$W/expect-keep.jsonl"
n=$(wc -l <"$W/expect-all.jsonl")
nk=$(wc -l <"$W/expect-keep.jsonl")
lgr_wait_for "$n records in all.bin" lgr_records_reach "$W/all.bin" "$tok" "$n"
lgr_wait_for "$nk records in keep.bin" lgr_records_reach "$W/keep.bin" "$tok" "$nk"
check_all "$W/expect-all.jsonl"
check_keep "$W/expect-keep.jsonl"

lgr_check "impstats: ingress == $n, dropped.ingress 0, invalid 0, router.connects >= 3, router.errors >= 2"
lgr_wait_for "ingress=$n" lgr_stat_is "$W/stats.log" "$ALL" ingress "$n"
lgr_wait_for "router.connects >= 3" lgr_stat_ge "$W/stats.log" "$ALL" router.connects 3
for c in dropped.ingress invalid; do
	v=$(lgr_stat "$W/stats.log" "$ALL" "$c")
	[ "$v" = 0 ] || lgr_fail "impstats $c is '$v', expected 0"
done
lgr_wait_for "the keep input's ingress=$nk" lgr_stat_is "$W/stats.log" 'imloggregator\(subscribe/rlp-keep\)' ingress "$nk"

lgr_check "the subscriber stops cleanly on SIGTERM$([ "$LGR_VALGRIND" = 1 ] && echo ', valgrind clean'), then the routers"
lgr_stop
router_stop r1 r1
router_stop r2 r2b
router_stop bad bad
check_all "$W/expect-all.jsonl"
check_keep "$W/expect-keep.jsonl"

lgr_check "the subscriber logged nothing about its inputs but the bad router, r2's loss and its return"
expected="router 127\.0\.0\.1:$egbad: |router 127\.0\.0\.1:$eg2: |lines suppressed|tls=\"off\""
if grep -F 'imloggregator' "$W/internal.log" | grep -Ev "$expected"; then
	lgr_fail "imloggregator logged unexpected messages (above)"
fi
lgr_pass
