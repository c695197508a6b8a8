#!/usr/bin/env bash
# shellcheck disable=SC2119,SC2317 # lgr_init takes no script arguments; checks run through lgr_wait_for
# reliability-reset.sh: a TCP connection reset (RST) in the middle of a stream, on each hop of
# emitter -> agent -> router -> subscriber (two rsyslogd, mutual TLS on every hop). The resets come from
# tests/tools/tcp-relay.js, put on the hop under test (SIGUSR1: every connection it carries is reset on both sides).
#
#   peer.js send -> [relay E] -> agent: imloggregator -> omdoppler -> [relay L] -> router: imloggregator ->
#   (omfile "R SOURCE_ID TIMESTAMP E", omfirehose) -> [relay S] -> lgr-load --recv "A"; lgr-load --recv "B" direct.
#
# Oracle:
#   1. agent -> router reset under a paced stream: omdoppler counts the lost connection (router.errors grows) and
#      connects again (router.connects grows), the stream to the agent ends OK, omdoppler conserves exactly
#      (ingress == egress + dropped.egress, dropped 0), the router wrote every envelope acknowledged to the sender
#      (nothing is lost with the connection: omdoppler resends what the router had not confirmed), nothing that was
#      not sent, and twice only envelopes omdoppler counted as resent (the router read them, its confirmation was
#      lost with the connection); the router received at most egress + resent; the router counts at most one
#      invalid input per reset connection;
#   2. emitter -> agent reset mid-stream: the emitter's stream fails (the reset is visible to the producer), the
#      agent stays up and counts at most one invalid input per reset connection; a new stream afterwards arrives
#      complete; every envelope written was sent, none twice; the agent's imloggregator ingress == omdoppler
#      ingress == egress (nothing dropped);
#   3. router -> subscriber reset: subscriber A is stalled (its relay reads nothing) while N envelopes are sent and
#      B reads them all; then A's connection is reset: omfirehose ends A's subscription (subscriptions back to 1),
#      and every delivery is accounted for: egress + dropped.egress == 2 x N exactly (the envelopes A still held
#      count as dropped), B received exactly N once each, A at most egress - N; what A's stream still had queued
#      (its send queue, up to 4 MiB, beyond what the stalled connection took) counts in dropped.egress, not in
#      egress, with a log line naming A that gives their number, and that number is part of dropped.egress; a new
#      subscriber through the same relay then receives new envelopes. Reported: A's egress (what the connection
#      took: the kernel's socket buffers and the relay), what A received, the bytes relay S took of it;
#   4. both daemons exit 0 on SIGTERM (valgrind clean under LGR_VALGRIND=1): nothing of the reset connections leaks.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
lgr_init
lgr_bg_init
lgr_need_peer
lgr_pki
# shellcheck source=tests/tools/reliability-lib.sh
. "$LGR_TOP_SRCDIR/tests/tools/reliability-lib.sh"
rel_need_load

W=$LGR_WORK
P=$LGR_PKI
pace=2 # ms between messages of 10 envelopes
N=$((3000 * LGR_REL_SCALE)) # phase 3
K=$((1000 * LGR_REL_SCALE)) # envelopes to see arrive before and after a reset
if [ "$LGR_VALGRIND" = 1 ]; then
	pace=20
	N=1000
fi
tls() { printf 'tls.cacert="%s/ca.crt" tls.mycert="%s/%s.crt" tls.myprivkey="%s/%s.key"' "$P" "$P" "$1" "$P" "$1"; }
check() { python3 "$REL_TOOLS/rel-check.py" --dir "$W" "$@"; }

lgr_check "a router (imloggregator -> omfile, omfirehose) and an agent (imloggregator -> omdoppler) start"
rel_router_conf "$W/router.conf" <<EOF
module(load="impstats" interval="1" log.syslog="off" log.file="$W/router-stats.log" format="legacy")
module(load="$(lgr_module imloggregator)")
module(load="$(lgr_module omfirehose)")
template(name="rec" type="string" string="R %app-name% %\$!loggregator!timestamp% E\n")
input(type="imloggregator" port="0" listenPortFileName="$W/router.port" role="router" ruleset="out" $(tls doppler))
ruleset(name="out") {
	action(type="omfile" file="$W/router.rec" template="rec")
	action(type="omfirehose" port="0" listenPortFileName="$W/egress.port" batch.flushinterval="20" $(tls doppler))
}
EOF
lgr_start2 "$W/router.conf"
lgr_wait_port "$W/router.port"
router_port=$LGR_PORT
lgr_wait_port "$W/egress.port"
egress_port=$LGR_PORT
rel_relay L "$router_port"
L_pid=$REL_RELAY_PID
lgr_conf_write "$W/agent.conf" <<EOF
module(load="impstats" interval="1" log.syslog="off" log.file="$W/agent-stats.log" format="legacy")
module(load="$(lgr_module imloggregator)")
module(load="$(lgr_module omdoppler)")
input(type="imloggregator" port="0" listenPortFileName="$W/agent.port" role="agent" ruleset="fwd" $(tls metron))
ruleset(name="fwd") {
	action(type="omdoppler" name="agent" routers=["127.0.0.1:$REL_RELAY_PORT"] streams="3" buffer.size="1000000"
		batch.flushinterval="20" $(tls metron))
}
EOF
lgr_start "$W/agent.conf"
lgr_wait_port "$W/agent.port"
agent_port=$LGR_PORT
rel_relay E "$agent_port"
E_pid=$REL_RELAY_PID
E_port=$REL_RELAY_PORT
rel_relay S "$egress_port"
S_pid=$REL_RELAY_PID
S_port=$REL_RELAY_PORT

AS=$W/agent-stats.log
RS=$W/router-stats.log
A_IML='imloggregator\(grpc/[^)]*\)'
A_OMD='omdoppler\(agent\)'
R_IML='imloggregator\(grpc/[^)]*\)'
R_OMF='omfirehose\([^)]*\)'
records=$W/router.rec
lines_ge() { [ "$(lgr_lines "$1")" -ge "$2" ]; }

# send NAME PORT ARGS...: peer.js send to 127.0.0.1:PORT (the agent, or relay E), dump NAME.jsonl, results NAME.out.
send() {
	local name=$1 port=$2
	shift 2
	lgr_peer send --target "127.0.0.1:$port" "${LGR_PEER_TLS[@]}" --name metron --source-id "$name" \
		--dump "$W/$name.jsonl" "$@" >"$W/$name.out" 2>"$W/$name.err"
}
done_line() {
	local end
	end=$(lgr_peer_line "$W/$1.out" "done")
	[ -n "$end" ] || { cat "$W/$1.err" >&2; lgr_fail "$1: the sender gave no result"; }
	printf '%s\n' "$end"
}

# ---- 1. agent -> router ---------------------------------------------------------------------------------------
lgr_check "agent -> router: the connection reset under a paced stream"
send link "$agent_port" --method BatchSender --batch 10 --gen 200000 --interval-ms "$pace" --payload-size 200 \
	--stop-file "$W/link.stop" &
sender=$!
lgr_wait_for "records at the router" lines_ge "$records" "$K"
lgr_wait_for "omdoppler's connection to be counted" lgr_stat_ge "$AS" "$A_OMD" router.connects 1
errs0=$(lgr_stat "$AS" "$A_OMD" router.errors)
conn0=$(lgr_stat "$AS" "$A_OMD" router.connects)
[ "$(lgr_stat "$AS" "$A_OMD" resent)" = 0 ] || lgr_fail "omdoppler resent envelopes before any connection was lost"
nreset=$(rel_relay_reset L "$L_pid")
[ "$nreset" -ge 1 ] || lgr_fail "relay L carried no connection to reset"
lgr_wait_for "router.errors to count the lost connection" lgr_stat_ge "$AS" "$A_OMD" router.errors $((errs0 + 1))
lgr_wait_for "omdoppler to connect again" lgr_stat_ge "$AS" "$A_OMD" router.connects $((conn0 + 1))
before=$(lgr_lines "$records")
lgr_wait_for "records to grow after the reset" lines_ge "$records" $((before + K))
touch "$W/link.stop"
wait "$sender"
end=$(done_line link)
[ "$(lgr_json "$end" code)" = 0 ] || lgr_fail "the stream to the agent failed: $end"
n=$(lgr_json "$end" acked)
lgr_wait_for "omdoppler ingress=$n" lgr_stat_is "$AS" "$A_OMD" ingress "$n"
lgr_wait_for "omdoppler ingress == egress + dropped.egress" lgr_stat_sum_is "$AS" "$A_OMD" ingress egress dropped.egress
[ "$(lgr_stat "$AS" "$A_OMD" dropped.egress)" = 0 ] || lgr_fail "omdoppler dropped envelopes"
rel_settle "$RS" "$R_IML" 2
r_in=$(lgr_stat "$RS" "$R_IML" ingress)
eg=$(lgr_stat "$AS" "$A_OMD" egress)
resent=$(lgr_stat "$AS" "$A_OMD" resent)
[ "$r_in" -le $((eg + resent)) ] ||
	lgr_fail "the router received $r_in envelopes, more than omdoppler sent ($eg) and resent ($resent)"
lgr_wait_for "the router to write all $r_in" lines_ge "$records" "$r_in"
out1=$(check --records "$records" --sent link --max-duplicates "$resent") || lgr_fail "agent -> router: $out1"
inv=$(lgr_stat "$RS" "$R_IML" invalid)
[ "$inv" -le "$nreset" ] || lgr_fail "the router counted $inv invalid inputs for $nreset reset connections"
lgr_say "agent -> router: $n sent, omdoppler egress $eg, resent $resent, router ingress $r_in ($out1) over $nreset reset connection(s); router invalid $inv"

# ---- 2. emitter -> agent --------------------------------------------------------------------------------------
lgr_check "emitter -> agent: the connection reset mid-stream"
a_inv0=$(lgr_stat "$AS" "$A_IML" invalid)
before=$(lgr_lines "$records")
send emit "$E_port" --method BatchSender --batch 10 --gen 200000 --interval-ms "$pace" --payload-size 200 \
	--ts-base 1800000000000000000 --stop-file "$W/emit.stop" &
sender=$!
lgr_wait_for "the stream's records at the router" lines_ge "$records" $((before + K))
nreset=$(rel_relay_reset E "$E_pid")
[ "$nreset" -ge 1 ] || lgr_fail "relay E carried no connection to reset"
# the stream must see its connection fail by itself; the stop file only bounds the test if it does not
emit_gone() { ! kill -0 "$sender" 2>/dev/null; }
lgr_wait_for "the emitter's stream to end" emit_gone
wait "$sender"
end=$(done_line emit)
[ "$(lgr_json "$end" code)" != 0 ] || lgr_fail "the emitter's stream ended OK through a reset connection: $end"
lgr_alive || lgr_fail "the agent died"
lgr_check "a new stream through the same relay arrives complete"
send again "$E_port" --method BatchSender --batch 10 --gen 2000 --payload-size 200 --ts-base 1900000000000000000
end=$(done_line again)
[ "$(lgr_json "$end" code)" = 0 ] && [ "$(lgr_json "$end" acked)" = 2000 ] || lgr_fail "the new stream failed: $end"
# the input took everything before the sender's calls ended OK; two more reports make its counters current (each
# report shows what the previous read found), so a_in is final
rel_settle "$AS" "$A_IML" 2
a_in=$(lgr_stat "$AS" "$A_IML" ingress)
lgr_wait_for "omdoppler ingress == imloggregator ingress ($a_in)" lgr_stat_is "$AS" "$A_OMD" ingress "$a_in"
lgr_wait_for "the agent to send everything" lgr_stat_sum_is "$AS" "$A_OMD" ingress egress dropped.egress
[ "$(lgr_stat "$AS" "$A_IML" dropped.ingress)" = 0 ] && [ "$(lgr_stat "$AS" "$A_OMD" dropped.egress)" = 0 ] ||
	lgr_fail "the agent dropped envelopes"
rel_settle "$RS" "$R_IML" 2
lgr_wait_for "the router to write everything it took" lines_ge "$records" "$(lgr_stat "$RS" "$R_IML" ingress)"
out2=$(check --records "$records" --sent link,emit,again --max-duplicates "$resent") ||
	lgr_fail "emitter -> agent: $out2"
[ "$(lgr_count "$records" '^R again ')" = 2000 ] || lgr_fail "the stream after the reset did not arrive complete"
a_inv=$(($(lgr_stat "$AS" "$A_IML" invalid) - a_inv0))
[ "$a_inv" -le "$nreset" ] || lgr_fail "the agent counted $a_inv invalid inputs for $nreset reset connections"
lgr_say "emitter -> agent: stream ended with $(lgr_json "$(done_line emit)" code) after the reset; agent invalid +$a_inv"

# ---- 3. router -> subscriber ----------------------------------------------------------------------------------
lgr_check "router -> subscriber: a stalled subscriber's connection reset"
# recv NAME PORT SOURCE_ID [ARGS...]: lgr-load --recv (BatchedReceiver) of one source to 127.0.0.1:PORT.
recv() {
	local name=$1 port=$2 src=$3
	shift 3
	"$REL_LOAD" --recv --addr "127.0.0.1:$port" --tls --ca "$P/ca.crt" --cert "$P/client.crt" --key "$P/client.key" \
		--server-name doppler --source-id "$src" --ready-file "$W/$name.ready" "$@" >"$W/$name.recv" \
		2>"$W/$name.recv.err" &
	LGR_BG_PIDS+=("$!")
}
recv A "$S_port" sub
A_pid=$!
recv B "$egress_port" sub
B_pid=$!
lgr_wait_for "2 subscriptions" lgr_stat_is "$RS" "$R_OMF" subscriptions 2
eg0=$(lgr_stat "$RS" "$R_OMF" egress)
dr0=$(lgr_stat "$RS" "$R_OMF" dropped.egress)
rel_relay_rate S "$S_pid" stop
f_in0=$(lgr_stat "$RS" "$R_OMF" ingress)
# lgr-load sends: its envelopes carry the numbers the receivers check for duplicates and gaps
"$REL_LOAD" --addr "127.0.0.1:$agent_port" --tls --ca "$P/ca.crt" --cert "$P/client.crt" --key "$P/client.key" \
	--server-name metron --source-id sub --count "$N" --rate $((5000 / pace)) --size 2000 --streams 1 --batch 10 \
	>"$W/sub.load" 2>&1 || lgr_fail "lgr-load failed: $(cat "$W/sub.load")"
[ "$(rel_kv "$(cat "$W/sub.load")" acked)" = "$N" ] || lgr_fail "sending failed: $(cat "$W/sub.load")"
lgr_wait_for "omfirehose ingress to grow by $N" lgr_stat_is "$RS" "$R_OMF" ingress $((f_in0 + N))
nreset=$(rel_relay_reset S "$S_pid")
[ "$nreset" = 1 ] || lgr_fail "relay S reset $nreset connections, expected 1"
lgr_wait_for "omfirehose to end A's subscription" lgr_stat_is "$RS" "$R_OMF" subscriptions 1
accounted() {
	local e d
	e=$(lgr_stat "$RS" "$R_OMF" egress)
	d=$(lgr_stat "$RS" "$R_OMF" dropped.egress)
	[ $((e - eg0 + d - dr0)) -eq $((2 * N)) ]
}
lgr_wait_for "egress + dropped.egress to grow by exactly 2 x $N" accounted
kill -TERM "$B_pid" "$A_pid" 2>/dev/null
wait "$B_pid"
wait "$A_pid"
b=$(tail -n 1 "$W/B.recv")
a=$(tail -n 1 "$W/A.recv")
[ "$(rel_kv "$b" unique)" = "$N" ] && [ "$(rel_kv "$b" duplicates)" = 0 ] && [ "$(rel_kv "$b" received)" = "$N" ] ||
	lgr_fail "B did not receive exactly $N once each: $b"
e=$(($(lgr_stat "$RS" "$R_OMF" egress) - eg0))
d=$(($(lgr_stat "$RS" "$R_OMF" dropped.egress) - dr0))
a_got=$(rel_kv "$a" received)
[ "${a_got:-0}" -le $((e - N)) ] || lgr_fail "A received $a_got, more than omfirehose counted for it ($((e - N)))"
queued_line() { grep -E 'its stream ended with [0-9]+ envelopes still queued, counted as dropped' "$W/router-internal.log"; }
lgr_wait_for "the log line on what A's stream still had queued" queued_line
a_queued=$(queued_line | head -n 1 | sed -n 's/.*ended with \([0-9]*\) envelopes still queued.*/\1/p')
[ "${a_queued:-0}" -gt 0 ] && [ "$a_queued" -le "$d" ] ||
	lgr_fail "A's stream ended with ${a_queued:-?} envelopes queued, dropped.egress grew by $d: $(queued_line)"
# what of A's share left the router's process: the bytes relay S took from it before the reset (the rest of what
# omfirehose counted in egress for A was in the connection's output and the kernel's socket buffers)
a_bytes=$(grep '"event":"close"' "$W/S.relay" | head -n 1 | sed -n 's/.*"down":\([0-9]*\).*/\1/p')
lgr_say "router -> subscriber: A's share of $N: egress $((e - N)) ($(((e - N) * 2080)) bytes or so), dropped $d ($a_queued of them still in its stream's send queue), received ${a_got:-0}; relay S took ${a_bytes:-0} bytes of A's stream before the reset"

lgr_check "a new subscriber through the same relay receives new envelopes"
rel_relay_rate S "$S_pid" 0
recv C "$S_port" sub2 --count 500
C_pid=$!
lgr_wait_for "1 subscription again" lgr_stat_is "$RS" "$R_OMF" subscriptions 1
send sub2 "$agent_port" --method BatchSender --batch 10 --gen 500 --payload-size 200
c_gone() { ! kill -0 "$C_pid" 2>/dev/null; }
lgr_wait_for "C to receive the 500" c_gone
wait "$C_pid"
c=$(tail -n 1 "$W/C.recv")
[ "$(rel_kv "$c" received)" = 500 ] || lgr_fail "C: $c"

rel_figures "link_reset_lost=0 link_reset_resent=$resent link_reset_duplicates=$(rel_kv "$out1" duplicates)" \
	"emitter_reset_code=$(lgr_json "$(done_line emit)" code)" \
	"subscriber_reset_egress=$((e - N)) subscriber_reset_dropped=$d subscriber_reset_queued=$a_queued" \
	"subscriber_reset_received=${a_got:-0}" \
	"subscriber_reset_relay_bytes=${a_bytes:-0}"

lgr_check "both daemons stop cleanly on SIGTERM$([ "$LGR_VALGRIND" = 1 ] && echo ', valgrind clean')"
lgr_stop
lgr_stop2
lgr_pass
