#!/usr/bin/env bash
# shellcheck disable=SC2119,SC2317 # lgr_init takes no script arguments; checks run through lgr_wait_for
# imloggregator-shutdown.sh: what imloggregator does with envelopes when rsyslog cannot keep up, and when rsyslogd
# is stopped while clients stream at full speed.
#
# One rsyslogd, two gRPC inputs (mutual TLS, role="router"):
#   - 127.0.0.2, buffer.size="10", bound to a ruleset with its own small queue (20 messages) that dequeues one
#     message every 5 ms: a burst of 2000 envelopes (one BatchSender call) must overflow the drop-oldest buffer;
#   - 127.0.0.1, buffer.size="100000" (more than the clients may send in all, so nothing can be dropped), bound to a
#     ruleset writing to a file; the main queue may take up to 60 s to drain at shutdown, so rsyslog's own queue
#     never discards what the module handed over;
#   - 127.0.0.3, buffer.size="100000", bound to a second slow ruleset (queue of 20, one message per 5 ms): 5000
#     envelopes sent just before SIGTERM are still in its buffer, and its submitter is blocked in rsyslog's full
#     queue, when rsyslogd is told to stop.
#
# Oracle:
#   - drop-oldest and conservation: the burst call ends OK; once the slow ruleset has written everything, impstats
#     shows ingress = 2000, dropped.ingress > 0 and ingress = written + dropped.ingress exactly (written: the records
#     in the file), stable over further impstats intervals; the last 10 envelopes of the burst (the newest, which
#     drop-oldest must keep) are all written; every record is one of the burst's envelopes, once, unaltered;
#   - SIGTERM under load: 4 workers calling Send back to back (100 envelopes per call) and 2 Sender streams, each on
#     its own connection and each capped so that all of them together stay below buffer.size, are sending when
#     SIGTERM arrives (after 3000 records were written, 1000 under valgrind); rsyslogd exits 0 within the timeout (valgrind clean under
#     LGR_VALGRIND=1); every Send worker ends with a non-OK status (it was interrupted); every envelope of a Send
#     call that ended with OK, and of a stream that ended with OK, is in the output exactly once; every other
#     record is an envelope that was sent, at most once, unaltered;
#   - a full queue at shutdown: the submitter blocked in it lets go at once (rsyslogd still exits 0 within the
#     timeout, valgrind clean: the messages rsyslog refuses at shutdown are freed, not leaked), every record the
#     second slow ruleset wrote is one of its envelopes, at most once.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
lgr_init
lgr_need_peer
lgr_pki

tok=$(lgr_token)
burst=2000
cap=15000   # envelopes per worker at most: 6 workers x 15000 < buffer.size 100000
trigger=3000 # records written before SIGTERM
if [ "$LGR_VALGRIND" = 1 ]; then
	cap=3000
	trigger=1000
fi
conf=$LGR_WORK/rsyslog.conf
tls_params="tls.cacert=\"$LGR_PKI/ca.crt\" tls.mycert=\"$LGR_PKI/doppler.crt\" tls.myprivkey=\"$LGR_PKI/doppler.key\""
lgr_conf_write "$conf" <<EOF
main_queue(queue.timeoutShutdown="60000")
module(load="impstats" interval="1" log.syslog="off" log.file="$LGR_WORK/stats.log" format="legacy")
module(load="$(lgr_module imloggregator)")
$(lgr_record_template rec "$tok")
input(type="imloggregator" address="127.0.0.2" port="0" listenPortFileName="$LGR_WORK/small.port" role="router"
	buffer.size="10" ruleset="slow" $tls_params)
input(type="imloggregator" address="127.0.0.1" port="0" listenPortFileName="$LGR_WORK/big.port" role="router"
	buffer.size="100000" ruleset="main" $tls_params)
ruleset(name="slow" queue.type="LinkedList" queue.size="20" queue.dequeueBatchSize="1"
	queue.dequeueSlowdown="5000") {
	action(type="omfile" file="$LGR_WORK/slow.bin" template="rec")
}
ruleset(name="main") { action(type="omfile" file="$LGR_WORK/out.bin" template="rec") }
input(type="imloggregator" address="127.0.0.3" port="0" listenPortFileName="$LGR_WORK/full.port" role="router"
	buffer.size="100000" ruleset="slow2" $tls_params)
ruleset(name="slow2" queue.type="LinkedList" queue.size="20" queue.dequeueBatchSize="1"
	queue.dequeueSlowdown="5000") {
	action(type="omfile" file="$LGR_WORK/full.bin" template="rec")
}
EOF

lgr_check "rsyslogd starts with a buffer.size=10 input on a slow ruleset and a buffer.size=100000 input"
lgr_start "$conf"
lgr_wait_port "$LGR_WORK/small.port"
small_port=$LGR_PORT
lgr_wait_port "$LGR_WORK/big.port"
big_port=$LGR_PORT
lgr_wait_port "$LGR_WORK/full.port"
full_port=$LGR_PORT
stats=$LGR_WORK/stats.log
small='imloggregator\(grpc/127\.0\.0\.2:[0-9]+\)'
big='imloggregator\(grpc/127\.0\.0\.1:[0-9]+\)'

lgr_check "a burst of $burst envelopes (one BatchSender call, 100 per batch) into buffer.size=10 ends OK"
lgr_peer send --target "127.0.0.2:$small_port" "${LGR_PEER_TLS[@]}" --name doppler --method BatchSender --batch 100 \
	--gen "$burst" --source-id burst --dump "$LGR_WORK/sent-burst.jsonl" >"$LGR_WORK/burst.out" 2>&1
line=$(lgr_peer_line "$LGR_WORK/burst.out" "done")
[ "$(lgr_json "$line" code 2>/dev/null)" = 0 ] || lgr_fail "the burst failed: $(cat "$LGR_WORK/burst.out")"

lgr_check "after the flush: ingress=$burst = written + dropped.ingress, dropped.ingress > 0"
lgr_wait_for "ingress=$burst" lgr_stat_is "$stats" "$small" ingress "$burst"
written() { lgr_record_count "$LGR_WORK/slow.bin" "$tok"; }
conserved() {
	local dropped
	dropped=$(lgr_stat "$stats" "$small" dropped.ingress)
	[ -n "$dropped" ] && [ "$(lgr_stat "$stats" "$small" ingress)" = "$burst" ] &&
		[ $(($(written) + dropped)) -eq "$burst" ]
}
lgr_wait_for "written + dropped.ingress = $burst" conserved
stat_lines() { grep -cE "$small: origin=" "$stats"; }
stat_lines_over() { [ "$(stat_lines)" -gt "$1" ]; }
n0=$(stat_lines)
lgr_wait_for "two more impstats intervals" stat_lines_over $((n0 + 1))
dropped=$(lgr_stat "$stats" "$small" dropped.ingress)
ingress=$(lgr_stat "$stats" "$small" ingress)
w=$(written)
lgr_say "ingress=$ingress written=$w dropped.ingress=$dropped"
if [ "$ingress" != "$burst" ] || [ $((w + dropped)) -ne "$ingress" ]; then
	lgr_fail "not conserved after the flush: ingress=$ingress written=$w dropped.ingress=$dropped"
fi
[ "$dropped" -gt 0 ] || lgr_fail "dropped.ingress is 0: the buffer never overflowed"

lgr_check "drop-oldest: the newest 10 envelopes of the burst are written, every record is a burst envelope, once"
tail -n 10 "$LGR_WORK/sent-burst.jsonl" >"$LGR_WORK/expect-newest.jsonl"
lgr_records check --out "$LGR_WORK/slow.bin" --token "$tok" --expect "$LGR_WORK/expect-newest.jsonl" \
	--allow "$LGR_WORK/sent-burst.jsonl" --exact --ip 127.0.0.1 || lgr_fail "the slow ruleset's records are wrong"

lgr_check "5000 envelopes into buffer.size=100000 before a ruleset whose queue (20) is full"
lgr_peer send --target "127.0.0.3:$full_port" "${LGR_PEER_TLS[@]}" --name doppler --method BatchSender --batch 100 \
	--gen 5000 --source-id full --dump "$LGR_WORK/sent-full.jsonl" >"$LGR_WORK/full.out" 2>&1
line=$(lgr_peer_line "$LGR_WORK/full.out" "done")
[ "$(lgr_json "$line" code 2>/dev/null)" = 0 ] || lgr_fail "the 5000 envelopes were refused: $(cat "$LGR_WORK/full.out")"
full='imloggregator\(grpc/127\.0\.0\.3:[0-9]+\)'
lgr_wait_for "ingress=5000 on the full input" lgr_stat_is "$stats" "$full" ingress 5000
lgr_wait_for "the slow ruleset writing" lgr_records_reach "$LGR_WORK/full.bin" "$tok" 1

lgr_check "SIGTERM while 4 Send workers and 2 Sender streams send at full speed (at most $cap envelopes each)"
to_big=(--target "127.0.0.1:$big_port" "${LGR_PEER_TLS[@]}" --name doppler)
lgr_peer send "${to_big[@]}" --method Send --batch 100 --parallel 4 --gen "$cap" --source-id send \
	--dump "$LGR_WORK/sent-send.jsonl" >"$LGR_WORK/send.out" 2>"$LGR_WORK/send.err" &
send_pid=$!
lgr_peer send "${to_big[@]}" --method Sender --parallel 2 --gen "$cap" --source-id stream \
	--dump "$LGR_WORK/sent-stream.jsonl" >"$LGR_WORK/stream.out" 2>"$LGR_WORK/stream.err" &
stream_pid=$!
lgr_wait_for "$trigger records in out.bin" lgr_records_reach "$LGR_WORK/out.bin" "$tok" "$trigger"
[ "$(lgr_stat "$stats" "$big" dropped.ingress)" = 0 ] || lgr_fail "the big input dropped envelopes before SIGTERM"
t0=$(date +%s%N)
lgr_stop
lgr_say "rsyslogd exited 0, $((($(date +%s%N) - t0) / 1000000)) ms after SIGTERM"
wait "$send_pid" || lgr_fail "the Send peer exited with status $?: $(cat "$LGR_WORK/send.err")"
wait "$stream_pid" || lgr_fail "the Sender peer exited with status $?: $(cat "$LGR_WORK/stream.err")"
for f in send stream; do
	[ -n "$(lgr_peer_line "$LGR_WORK/$f.out" "done")" ] || { cat "$LGR_WORK/$f.err" >&2; lgr_fail "$f: no result"; }
done
interrupted=$(grep -F '"event":"result"' "$LGR_WORK/send.out" | grep -cv '"code":0,')
[ "$interrupted" -eq 4 ] || lgr_fail "only $interrupted of 4 Send workers were still sending at SIGTERM"
lgr_say "$(lgr_json "$(lgr_peer_line "$LGR_WORK/send.out" "done")" acked) envelopes acknowledged to the Send workers"
grep -F '"event":"result"' "$LGR_WORK/stream.out" | sed "s/^/$LGR_TEST: stream: /"

lgr_check "every acknowledged envelope is in the output once; every other record was sent, at most once"
lgr_records acked --dump "$LGR_WORK/sent-send.jsonl" --dump "$LGR_WORK/sent-stream.jsonl" \
	--results "$LGR_WORK/send.out" --results "$LGR_WORK/stream.out" >"$LGR_WORK/expect-acked.jsonl" ||
	lgr_fail "cannot list the acknowledged envelopes"
cat "$LGR_WORK/sent-send.jsonl" "$LGR_WORK/sent-stream.jsonl" >"$LGR_WORK/sent-all.jsonl"
lgr_records check --out "$LGR_WORK/out.bin" --token "$tok" --expect "$LGR_WORK/expect-acked.jsonl" \
	--allow "$LGR_WORK/sent-all.jsonl" --exact --ip 127.0.0.1 || lgr_fail "acknowledged envelopes are missing"

lgr_check "the full queue's ruleset wrote only envelopes that were sent to it, at most once"
: >"$LGR_WORK/none.jsonl"
lgr_records check --out "$LGR_WORK/full.bin" --token "$tok" --expect "$LGR_WORK/none.jsonl" \
	--allow "$LGR_WORK/sent-full.jsonl" --exact --ip 127.0.0.1 || lgr_fail "the full queue's records are wrong"
lgr_say "$(lgr_record_count "$LGR_WORK/full.bin" "$tok") of 5000 written by the slow ruleset before the end"

lgr_pass
