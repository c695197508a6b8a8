#!/usr/bin/env bash
# shellcheck disable=SC2119,SC2317 # lgr_init takes no script arguments; checks run through lgr_wait_for
# reliability-restart.sh: the agent -> router pipeline (two rsyslogd, mutual TLS) under a steady load while its
# daemons are told to reload, restarted, or killed (doc/reliability.md, faults under load).
#
#   peer.js send -> agent rsyslogd: imloggregator role="agent" -> omdoppler (buffer.size 1000000)
#   -> router rsyslogd: imloggregator role="router" -> omfile, one line "R SOURCE_ID TIMESTAMP E" per envelope.
# tests/tools/rel-check.py compares what the router wrote with what the senders sent and had acknowledged.
#
# Oracle:
#   1. SIGHUP: one paced BatchSender stream while both daemons get SIGHUP three times each: the stream ends OK, the
#      router writes every envelope sent exactly once, agent omdoppler ingress == egress == sent, dropped.egress 0,
#      router imloggregator ingress == sent, invalid 0; both daemons are the same processes as before;
#   2. agent restarted: unary Send calls back to back from a loop of senders while the agent gets SIGTERM and is
#      started again on its port: the agent exits 0 (valgrind clean), and every envelope of a call that ended OK
#      is written by the router exactly once (promise 5); every envelope written was sent, none twice; after the
#      restart, the calls succeed again and the new agent's omdoppler conserves exactly (ingress == egress,
#      dropped.egress 0);
#   3. router killed with SIGKILL and started again on its port under a paced stream: the sender's stream still
#      ends OK (the agent kept accepting), the agent's router.errors grows while the router is down and its
#      router.connects once it is back, omdoppler conserves exactly (ingress == egress + dropped.egress, dropped 0
#      with its large buffer); every envelope the routers wrote was sent, twice only as many as omdoppler counted
#      as resent (what the killed router read but could not confirm any more); every acknowledged envelope is
#      written, except what the killed router had taken in and confirmed but not yet written, lost with its process:
#      those must be among the 500 (0.1 s of the stream) sent right after the last one it wrote, and are reported;
#      a second stream after the restart arrives complete;
#   4. both daemons exit 0 on SIGTERM (valgrind clean under LGR_VALGRIND=1).
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
lgr_init
lgr_bg_init
lgr_need_peer
lgr_pki
# shellcheck source=tests/tools/reliability-lib.sh
. "$LGR_TOP_SRCDIR/tests/tools/reliability-lib.sh"

W=$LGR_WORK
P=$LGR_PKI
pace=2 # ms between messages of 10 envelopes: 5000 envelopes/s
K=$((1000 * LGR_REL_SCALE)) # envelopes to see arrive in each phase of a scenario
[ "$LGR_VALGRIND" = 1 ] && pace=20
tls() { printf 'tls.cacert="%s/ca.crt" tls.mycert="%s/%s.crt" tls.myprivkey="%s/%s.key"' "$P" "$P" "$1" "$P" "$1"; }
check() { python3 "$REL_TOOLS/rel-check.py" --dir "$W" "$@"; }

# router_conf PORT RECORDS: the router's configuration, listening on PORT (0 the first time), writing to RECORDS.
router_conf() {
	rel_router_conf "$W/router.conf" <<EOF
module(load="impstats" interval="1" log.syslog="off" log.file="$W/router-stats.log" format="legacy")
module(load="$(lgr_module imloggregator)")
template(name="rec" type="string" string="R %app-name% %\$!loggregator!timestamp% E\n")
input(type="imloggregator" port="$1" listenPortFileName="$W/router.port" role="router" ruleset="out" $(tls doppler))
ruleset(name="out") { action(type="omfile" file="$2" template="rec") }
EOF
}
# agent_conf PORT ROUTER_PORT
agent_conf() {
	lgr_conf_write "$W/agent.conf" <<EOF
module(load="impstats" interval="1" log.syslog="off" log.file="$W/agent-stats.log" format="legacy")
module(load="$(lgr_module imloggregator)")
module(load="$(lgr_module omdoppler)")
input(type="imloggregator" port="$1" listenPortFileName="$W/agent.port" role="agent" ruleset="fwd" $(tls metron))
ruleset(name="fwd") {
	action(type="omdoppler" name="agent" routers=["127.0.0.1:$2"] buffer.size="1000000" batch.flushinterval="20"
		$(tls metron))
}
EOF
}

lgr_check "a router and an agent rsyslogd start"
router_conf 0 "$W/router1.rec"
lgr_start2 "$W/router.conf"
lgr_wait_port "$W/router.port"
router_port=$LGR_PORT
router_conf "$router_port" "$W/router1.rec" # its port from now on
agent_conf 0 "$router_port"
lgr_start "$W/agent.conf"
lgr_wait_port "$W/agent.port"
agent_port=$LGR_PORT
agent_conf "$agent_port" "$router_port"
AS=$W/agent-stats.log
RS=$W/router-stats.log
A_OMD='omdoppler\(agent\)'
R_IML='imloggregator\(grpc/[^)]*\)'

# send NAME ARGS...: peer.js send to the agent, its dump NAME.jsonl and result lines NAME.out.
send() {
	local name=$1
	shift
	lgr_peer send --target "127.0.0.1:$agent_port" "${LGR_PEER_TLS[@]}" --name metron --source-id "$name" \
		--dump "$W/$name.jsonl" "$@" >"$W/$name.out" 2>"$W/$name.err"
}
ended_ok() {
	local end
	end=$(lgr_peer_line "$W/$1.out" "done")
	[ -n "$end" ] || { cat "$W/$1.err" >&2; lgr_fail "$1: the sender gave no result"; }
	[ "$(lgr_json "$end" code)" = 0 ] || lgr_fail "$1: a call failed: $end"
	[ "$(lgr_json "$end" acked)" = "$(lgr_json "$end" envelopes)" ] || lgr_fail "$1: not all acknowledged: $end"
	lgr_json "$end" acked
}
lines() { lgr_lines "$1"; }
lines_ge() { [ "$(lines "$1")" -ge "$2" ]; }
records=$W/router1.rec

# ---- 1. SIGHUP to both daemons under load ----------------------------------------------------------------------
lgr_check "SIGHUP: three to each daemon while a stream sends"
agent_pid=$LGR_PID
router_pid=$LGR_PID2
send hup --method BatchSender --batch 10 --gen 200000 --interval-ms "$pace" --payload-size 200 \
	--stop-file "$W/hup.stop" &
sender=$!
for i in $(seq 1 $((3 * LGR_REL_SCALE))); do
	lgr_wait_for "records to grow before HUP $i" lines_ge "$records" $((i * K))
	kill -HUP "$LGR_PID" "$LGR_PID2"
done
lgr_wait_for "records to grow after the last HUP" lines_ge "$records" $(((3 * LGR_REL_SCALE + 1) * K))
touch "$W/hup.stop"
wait "$sender"
n=$(ended_ok hup)
lgr_wait_for "agent omdoppler egress=$n" lgr_stat_is "$AS" "$A_OMD" egress "$n"
lgr_wait_for "router ingress=$n" lgr_stat_is "$RS" "$R_IML" ingress "$n"
lgr_wait_for "the router to write $n records" lines_ge "$records" "$n"
[ "$(lgr_stat "$AS" "$A_OMD" ingress)" = "$n" ] && [ "$(lgr_stat "$AS" "$A_OMD" dropped.egress)" = 0 ] ||
	lgr_fail "agent omdoppler after HUP: $(grep -E "$A_OMD" "$AS" | tail -n 1)"
[ "$(lgr_stat "$RS" "$R_IML" invalid)" = 0 ] || lgr_fail "the router counted invalid input"
check --records "$records" --sent hup --strict || lgr_fail "HUP: the router did not write exactly what was sent"
[ "$LGR_PID" = "$agent_pid" ] && [ "$LGR_PID2" = "$router_pid" ] && lgr_alive && kill -0 "$LGR_PID2" ||
	lgr_fail "a daemon restarted or died on SIGHUP"
hup_n=$n

# ---- 2. the agent restarted under load ------------------------------------------------------------------------
lgr_check "agent restart: SIGTERM and a new start on its port while unary calls go on"
# a loop of senders: each runs until its first failed call; the next starts 50 ms later, until the stop file
: >"$W/senders"
(
	i=0
	while [ ! -e "$W/loop.stop" ]; do
		i=$((i + 1))
		echo "ar$i" >>"$W/senders"
		send "ar$i" --method Send --batch 10 --gen 100000 --interval-ms "$pace" --payload-size 200 \
			--ts-base $((1700000000000000000 + i * 1000000)) --stop-file "$W/loop.stop"
		sleep 0.05
	done
) &
loop=$!
LGR_BG_PIDS+=("$loop")
before=$(lines "$records")
lgr_wait_for "the loop's envelopes at the router" lines_ge "$records" $((before + K))
lgr_stop # exits 0, valgrind clean
lgr_start "$W/agent.conf"
lgr_wait_port "$W/agent.port"
[ "$LGR_PORT" = "$agent_port" ] || lgr_fail "the agent did not get its port back"
before=$(lines "$records")
lgr_wait_for "the loop's envelopes at the router after the restart" lines_ge "$records" $((before + K))
touch "$W/loop.stop"
wait "$loop"
senders=$(paste -sd, "$W/senders")
lgr_wait_for "the new agent to send everything" lgr_stat_sum_is "$AS" "$A_OMD" ingress egress dropped.egress
[ "$(lgr_stat "$AS" "$A_OMD" dropped.egress)" = 0 ] || lgr_fail "the new agent dropped envelopes"
router_took() { lines_ge "$1" "$(lgr_stat "$RS" "$R_IML" ingress)"; }
rel_settle "$RS" "$R_IML" 2
lgr_wait_for "the router to write everything it took" router_took "$records"
restart_out=$(check --records "$records" --sent "hup,$senders") ||
	lgr_fail "agent restart: $restart_out"
lgr_say "agent restart: $restart_out ($(wc -l <"$W/senders") senders)"
last=$(lgr_peer_line "$W/$(tail -n 1 "$W/senders").out" "done")
[ "$(lgr_json "$last" code 2>/dev/null)" = 0 ] && [ "$(lgr_json "$last" acked)" -gt 0 ] ||
	lgr_fail "the calls to the restarted agent do not succeed: $last"

# ---- 3. the router killed with SIGKILL and started again ------------------------------------------------------
lgr_check "router SIGKILL under load, started again on its port"
errs0=$(lgr_stat "$AS" "$A_OMD" router.errors)
conn0=$(lgr_stat "$AS" "$A_OMD" router.connects)
send kill --method BatchSender --batch 10 --gen 200000 --interval-ms "$pace" --payload-size 200 \
	--ts-base 1800000000000000000 --stop-file "$W/kill.stop" &
sender=$!
before=$(lines "$records")
lgr_wait_for "the stream's envelopes at the router" lines_ge "$records" $((before + K))
kill -KILL "$LGR_PID2"
wait "$LGR_PID2" 2>/dev/null
LGR_PID2=
lgr_wait_for "router.errors to grow while the router is down" lgr_stat_ge "$AS" "$A_OMD" router.errors $((errs0 + 1))
router_conf "$router_port" "$W/router2.rec"
lgr_start2 "$W/router.conf"
lgr_wait_port "$W/router.port"
[ "$LGR_PORT" = "$router_port" ] || lgr_fail "the router did not get its port back"
lgr_wait_for "router.connects to grow" lgr_stat_ge "$AS" "$A_OMD" router.connects $((conn0 + 1))
lgr_wait_for "the stream's envelopes at the new router" lines_ge "$W/router2.rec" "$K"
touch "$W/kill.stop"
wait "$sender"
n=$(ended_ok kill)
lgr_wait_for "omdoppler ingress == egress + dropped.egress" lgr_stat_sum_is "$AS" "$A_OMD" ingress egress \
	dropped.egress
[ "$(lgr_stat "$AS" "$A_OMD" dropped.egress)" = 0 ] || lgr_fail "the agent dropped envelopes while the router was down"
rel_settle "$RS" "$R_IML" 2
lgr_wait_for "the new router to write everything it took" router_took "$W/router2.rec"
# what omdoppler resent after the kill may have reached the killed router too: those alone may repeat
resent=$(lgr_stat "$AS" "$A_OMD" resent)
kill_out=$(check --records "$records,$W/router2.rec" --sent "$senders,hup,kill" --ignore-partial-last \
	--max-duplicates "$resent" --lost-near "$records:500") ||
	lgr_fail "router kill: $kill_out"
# of the kill stream: what neither router wrote
lost=$(python3 - "$W" "$n" <<'EOF'
import re, sys
w, n = sys.argv[1], int(sys.argv[2])
got = set()
for f in ("router1.rec", "router2.rec"):
    for line in open("%s/%s" % (w, f), errors="replace"):
        m = re.match(r"^R kill (\d+) E$", line.rstrip("\n"))
        if m:
            got.add(m.group(1))
print(n - len(got))
EOF
)
lgr_say "router kill: $n sent and acknowledged, $lost lost in the killed router (taken in and confirmed, not yet written)"

lgr_check "after the restart: a stream of 3000 arrives complete"
send after --method BatchSender --batch 10 --gen 3000 --payload-size 200 --ts-base 1900000000000000000
m=$(ended_ok after)
lgr_wait_for "$m more records" lines_ge "$W/router2.rec" $(($(lgr_count "$W/router2.rec" '^R kill ') + m))
all=(--records "$records,$W/router2.rec" --sent "$senders,hup,kill,after" --ignore-partial-last
	--max-duplicates "$resent" --lost-near "$records:500")
check "${all[@]}" >/dev/null || lgr_fail "after the restart: $(check "${all[@]}")"
[ "$(lgr_count "$W/router2.rec" '^R after ')" = 3000 ] || lgr_fail "the stream after the restart did not arrive complete"

ra() { printf '%s\n' "$restart_out" | head -n 1 | tr ' ' '\n' | sed -n "s/^$1=//p"; }
rel_figures "hup_sent=$hup_n hup_lost=0 agent_restart_sent=$(ra sent) agent_restart_acked=$(ra acked)" \
	"agent_restart_recorded=$(ra recorded) acked_lost=0 router_kill_sent=$n router_kill_lost=$lost"

lgr_check "both daemons stop cleanly on SIGTERM$([ "$LGR_VALGRIND" = 1 ] && echo ', valgrind clean')"
lgr_stop
lgr_stop2
lgr_pass
