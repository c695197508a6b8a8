#!/usr/bin/env bash
# shellcheck disable=SC2119,SC2317 # lgr_init takes no script arguments; checks run through lgr_wait_for
# omfirehose-slow.sh: a subscriber that stops reading never slows the router or the other subscribers: its own
# drop-oldest buffer loses the oldest envelopes, counted and reported, while a fast subscriber of the same envelopes
# receives every one.
#
# One rsyslogd: imloggregator (role router, h2c) -> omfirehose (h2c, subscriber.buffer 3000). Two BatchedReceiver
# subscribers of the same selector (grpc-js, peer.js subscribe): "fast" reads everything; "slow" (shard group
# slow-group, alone in it) is paused from the start, so HTTP/2 flow control stops its stream and its send queue
# fills. 8000 log envelopes of 2000 bytes are sent, paced (16 MB: more than the slow subscriber's send queue, flow
# control windows and buffer can hold). Then the slow subscriber resumes reading.
#
# Oracle:
#   - the fast subscriber receives all 8000 envelopes, exactly once each;
#   - ingress == 8000; every delivery is accounted for: egress + dropped.egress == 2 x 8000, dropped.egress > 0,
#     and the slow subscriber received exactly egress - 8000 envelopes, each at most once, the newest among them
#     (drop-oldest: the last envelope sent arrives);
#   - slow_consumer == 1 (one episode), and the log names the slow subscriber's shard id;
#   - rsyslogd exits 0 on SIGTERM (valgrind clean under LGR_VALGRIND=1).
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
lgr_init
lgr_bg_init
lgr_need_peer

W=$LGR_WORK
N=8000
conf=$W/rsyslog.conf
lgr_conf_write "$conf" <<EOF
module(load="impstats" interval="1" log.syslog="off" log.file="$W/stats.log" format="legacy")
module(load="$(lgr_module imloggregator)")
module(load="$(lgr_module omfirehose)")
input(type="imloggregator" port="0" listenPortFileName="$W/in.port" role="router" tls="off")
action(type="omfirehose" port="0" listenPortFileName="$W/egress.port" tls="off" subscriber.buffer="3000")
EOF

lgr_check "rsyslogd starts with imloggregator (router) -> omfirehose (h2c)"
lgr_start "$conf"
lgr_wait_port "$W/in.port"
in_port=$LGR_PORT
lgr_wait_port "$W/egress.port"
eg_port=$LGR_PORT
NAME='omfirehose\(127\.0\.0\.1:0\)'
lgr_wait_for 'the warning about tls="off"' grep -q 'omfirehose: tls="off": plaintext' "$W/internal.log"

lgr_check "a paused and a fast subscriber of the same envelopes"
sel='[{"source_id":"load","log":{}}]'
: >"$W/slow.pause"
lgr_subscriber slow --target "127.0.0.1:$eg_port" --method BatchedReceiver --selectors "$sel" \
	--shard-id slow-group --pause-file "$W/slow.pause"
lgr_subscriber fast --target "127.0.0.1:$eg_port" --method BatchedReceiver --selectors "$sel"
lgr_wait_for "2 subscriptions" lgr_stat_is "$W/stats.log" "$NAME" subscriptions 2

lgr_check "$N envelopes under load: the fast subscriber gets them all, the slow one loses the oldest"
# paced so that the fast subscriber keeps up on a busy machine (10 envelopes per 2 ms; per 20 ms under valgrind,
# which runs one thread at a time)
pace=2
[ "$LGR_VALGRIND" = 1 ] && pace=20
lgr_peer send --target "127.0.0.1:$in_port" --method BatchSender --batch 10 --interval-ms "$pace" --gen "$N" \
	--source-id load --payload-size 2000 >"$W/send.out" 2>"$W/send.err"
[ "$(lgr_json "$(lgr_peer_line "$W/send.out" "done")" acked)" = "$N" ] || lgr_fail "sending failed: $(cat "$W/send.out")"
lgr_wait_for "the fast subscriber to receive $N envelopes" lgr_lines_reach "$W/fast.jsonl" "$N"
lgr_wait_for "ingress=$N" lgr_stat_is "$W/stats.log" "$NAME" ingress "$N"
lgr_wait_for "drops to be counted" lgr_stat_ge "$W/stats.log" "$NAME" dropped.egress 1
lgr_wait_for "one slow-consumer episode" lgr_stat_is "$W/stats.log" "$NAME" slow_consumer 1
lgr_wait_for "the log line naming the slow subscriber" grep -q 'shard id "slow-group") reads too slowly' \
	"$W/internal.log"

lgr_check "the slow subscriber resumes: every delivery is egress or dropped.egress"
rm -f "$W/slow.pause"
accounted() {
	local e d
	e=$(lgr_stat "$W/stats.log" "$NAME" egress)
	d=$(lgr_stat "$W/stats.log" "$NAME" dropped.egress)
	[ -n "$e" ] && [ -n "$d" ] && [ $((e + d)) -eq $((2 * N)) ] && [ "$(lgr_lines "$W/slow.jsonl")" -eq $((e - N)) ]
}
lgr_wait_for "egress + dropped.egress = $((2 * N)) and the slow subscriber's share received" accounted
python3 - "$W" "$N" <<'EOF' || lgr_fail "the subscribers did not receive what they should"
import json, sys
w, n = sys.argv[1], int(sys.argv[2])
def seqs(name):
    with open("%s/%s.jsonl" % (w, name)) as f:
        return [int(json.loads(l)["tags"]["seq"]) for l in f if l.strip()]
fast, slow = seqs("fast"), seqs("slow")
if sorted(fast) != list(range(1, n + 1)):
    sys.exit("fast: %d envelopes, not exactly 1..%d" % (len(fast), n))
if len(set(slow)) != len(slow) or len(slow) >= n or n not in slow:
    sys.exit("slow: %d envelopes (%d distinct); expected fewer than %d, each once, the last one among them"
             % (len(slow), len(set(slow)), n))
print("slow subscriber kept %d of %d" % (len(slow), n))
EOF
lgr_stat_is "$W/stats.log" "$NAME" slow_consumer 1 || lgr_fail "slow_consumer is not 1"

lgr_stop
lgr_pass
