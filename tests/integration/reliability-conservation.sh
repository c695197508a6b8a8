#!/usr/bin/env bash
# shellcheck disable=SC2119,SC2317 # lgr_init takes no script arguments; checks run through lgr_wait_for
# reliability-conservation.sh: conservation at every stage of agent -> router -> subscriber, with every buffer small
# and overloaded at once (doc/reliability.md promise 4, doc/counters.md).
#
#   lgr-load (2 x the agent ruleset's rate) -> agent rsyslogd: imloggregator buffer.size 200 -> ruleset limited to
#   about half of that (queue.dequeueSlowdown) -> omdoppler buffer.size 200 -> relay1 (tcp-relay.js, bytes per second
#   limited to about half of what omdoppler gets) -> router rsyslogd: imloggregator buffer.size 200 -> ruleset
#   limited to about half of what arrives -> omfirehose subscriber.buffer 200 -> relay2 (stalled while the load
#   runs and until the router has passed on everything) -> lgr-load --recv (one BatchedReceiver subscription of
#   everything). Mutual TLS on every hop, through the
#   relays. Each imloggregator has one submitter, so one buffer of 200 (the default, one per CPU, would multiply it
#   and lengthen the stall). The subscriber sends no keepalive pings (--keepalive 0): behind the stalled relay none
#   would be answered, and on a slow machine under valgrind the stall outlasts a ping's 20 s. Envelopes of 8000
#   bytes, so that the byte-based queues behind the buffers (the subscriber's 4 MiB send queue, TCP) fill within the
#   run.
#
# Oracle, once the load has stopped, the relays pass everything and every counter stopped moving (and again two
# impstats intervals later, unchanged):
#   - sender: every stream ended OK (failed_streams 0), acked == sent;
#   - agent imloggregator: ingress == sent; ingress == dropped.ingress + omdoppler ingress (every envelope handed to
#     rsyslog reached the action: the ruleset queue discarded nothing, discarded.full == discarded.nf == 0);
#   - agent omdoppler: ingress == egress + dropped.egress;
#   - the link: router imloggregator ingress == agent omdoppler egress (nothing lost between the daemons);
#   - router imloggregator: ingress == dropped.ingress + omfirehose ingress (its ruleset queue discarded nothing);
#   - router omfirehose (one subscriber of everything): ingress == egress + dropped.egress;
#   - subscriber: received == omfirehose egress, unique == received, duplicates 0;
#   - each of the four buffers dropped something (dropped.ingress, dropped.egress > 0 at both daemons): every stage
#     was overloaded, and its losses are where the counters say (under valgrind, which passes too few bytes to fill
#     the egress stages' byte-bounded queues, only the two ingress stages); sent - received == the sum of the four;
#   - both daemons exit 0 on SIGTERM (valgrind clean under LGR_VALGRIND=1).
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
size=8000
rate=1000          # envelopes per second offered to the agent
secs=$((8 * LGR_REL_SCALE))
agent_slow=10000   # the agent ruleset: 5 messages per 10 ms, at most 500/s
router_slow=40000  # the router ruleset: 5 messages per 40 ms, at most 125/s
link=2000000       # relay1: 2 MB/s, about 250 envelopes/s
if [ "$LGR_VALGRIND" = 1 ]; then
	rate=200
	agent_slow=50000  # 100/s
	router_slow=200000 # 25/s
	link=400000        # 50/s
fi
tls() { printf 'tls.cacert="%s/ca.crt" tls.mycert="%s/%s.crt" tls.myprivkey="%s/%s.key"' "$P" "$P" "$1" "$P" "$1"; }

lgr_check "the router rsyslogd starts: imloggregator (buffer 200) -> slow ruleset -> omfirehose (buffer 200)"
rel_router_conf "$W/router.conf" <<EOF
module(load="impstats" interval="1" log.syslog="off" log.file="$W/router-stats.log" format="legacy")
module(load="$(lgr_module imloggregator)")
module(load="$(lgr_module omfirehose)")
input(type="imloggregator" port="0" listenPortFileName="$W/router.port" role="router" buffer.size="200"
	submitters="1" ruleset="out" $(tls doppler))
ruleset(name="out" queue.type="LinkedList" queue.size="50" queue.dequeueBatchSize="5"
	queue.dequeueSlowdown="$router_slow") {
	action(type="omfirehose" port="0" listenPortFileName="$W/egress.port" subscriber.buffer="200" $(tls doppler))
}
EOF
lgr_start2 "$W/router.conf"
lgr_wait_port "$W/router.port"
router_port=$LGR_PORT
lgr_wait_port "$W/egress.port"
egress_port=$LGR_PORT

rel_relay link "$router_port" "$link"
link_pid=$REL_RELAY_PID
link_port=$REL_RELAY_PORT
rel_relay sub "$egress_port" 0
sub_pid=$REL_RELAY_PID
sub_port=$REL_RELAY_PORT

lgr_check "the agent rsyslogd starts: imloggregator (buffer 200) -> slow ruleset -> omdoppler (buffer 200) -> relay"
lgr_conf_write "$W/agent.conf" <<EOF
module(load="impstats" interval="1" log.syslog="off" log.file="$W/agent-stats.log" format="legacy")
module(load="$(lgr_module imloggregator)")
module(load="$(lgr_module omdoppler)")
input(type="imloggregator" port="0" listenPortFileName="$W/agent.port" role="agent" buffer.size="200"
	submitters="1" ruleset="fwd" $(tls metron))
ruleset(name="fwd" queue.type="LinkedList" queue.size="50" queue.dequeueBatchSize="5"
	queue.dequeueSlowdown="$agent_slow") {
	action(type="omdoppler" name="agent" routers=["127.0.0.1:$link_port"] streams="2" buffer.size="200" $(tls metron))
}
EOF
lgr_start "$W/agent.conf"
lgr_wait_port "$W/agent.port"
agent_port=$LGR_PORT

AS=$W/agent-stats.log
RS=$W/router-stats.log
A_IML='imloggregator\(grpc/[^)]*\)'
A_OMD='omdoppler\(agent\)'
R_IML='imloggregator\(grpc/[^)]*\)'
R_OMF='omfirehose\([^)]*\)'

lgr_check "a subscriber of everything, through a relay that is stalled while the load runs"
"$REL_LOAD" --recv --addr "127.0.0.1:$sub_port" --tls --ca "$P/ca.crt" --cert "$P/client.crt" --key "$P/client.key" \
	--server-name doppler --keepalive 0 --ready-file "$W/recv.ready" >"$W/recv.out" 2>"$W/recv.err" &
recv_pid=$!
LGR_BG_PIDS+=("$recv_pid")
lgr_wait_for "the subscriber to connect" lgr_nonempty "$W/recv.ready"
lgr_wait_for "the router to count the subscription" lgr_stat_is "$RS" "$R_OMF" subscriptions 1
rel_relay_rate sub "$sub_pid" stop

lgr_check "$((rate * secs)) envelopes of $size bytes at $rate/s: about twice what each stage passes on"
"$REL_LOAD" --addr "127.0.0.1:$agent_port" --tls --ca "$P/ca.crt" --cert "$P/client.crt" --key "$P/client.key" \
	--server-name metron --rate "$rate" --duration "$secs" --count $((rate * secs)) --size "$size" --streams 2 \
	--batch 10 >"$W/load.out" 2>"$W/load.err" || lgr_fail "lgr-load failed: $(cat "$W/load.out" "$W/load.err")"
load=$(cat "$W/load.out")
sent=$(rel_kv "$load" sent)
[ "$(rel_kv "$load" failed_streams)" = 0 ] || lgr_fail "a sender stream failed: $load"
[ "$(rel_kv "$load" acked)" = "$sent" ] || lgr_fail "not every envelope was acknowledged: $load"

# The stages drain in order, each still overloaded by the next: the agent through the limited link, then the router
# into the stalled subscriber; only then does the subscriber's relay pass everything.
agent_drained() {
	local o_in o_eg o_drop
	o_in=$(lgr_stat "$AS" "$A_OMD" ingress)
	o_eg=$(lgr_stat "$AS" "$A_OMD" egress)
	o_drop=$(lgr_stat "$AS" "$A_OMD" dropped.egress)
	[ -n "$o_drop" ] && [ "$(lgr_stat "$AS" "$A_IML" ingress)" = "$sent" ] && [ "$o_in" -eq $((o_eg + o_drop)) ] &&
		[ "$(rel_sum "$AS" "$A_IML" dropped.ingress)" -eq $((sent - o_in)) ]
}
router_drained() {
	local r_in f_in
	r_in=$(lgr_stat "$RS" "$R_IML" ingress)
	f_in=$(lgr_stat "$RS" "$R_OMF" ingress)
	[ -n "$f_in" ] && [ "$r_in" = "$(lgr_stat "$AS" "$A_OMD" egress)" ] &&
		[ "$r_in" -eq $(($(lgr_stat "$RS" "$R_IML" dropped.ingress) + f_in)) ]
}
lgr_check "the agent drains through the limited link, then the router into the stalled subscriber"
lgr_wait_for "the agent to drain" agent_drained
lgr_wait_for "the router to take everything the agent sent and pass it on" router_drained
lgr_check "the relays pass everything again; waiting for every stage to drain"
rel_relay_rate link "$link_pid" 0
rel_relay_rate sub "$sub_pid" 0

# counters: every stage's counters from the last reports of both daemons, into a_in ... f_drop
counters() {
	a_in=$(lgr_stat "$AS" "$A_IML" ingress)
	a_drop=$(lgr_stat "$AS" "$A_IML" dropped.ingress)
	o_in=$(lgr_stat "$AS" "$A_OMD" ingress)
	o_eg=$(lgr_stat "$AS" "$A_OMD" egress)
	o_drop=$(lgr_stat "$AS" "$A_OMD" dropped.egress)
	r_in=$(lgr_stat "$RS" "$R_IML" ingress)
	r_drop=$(lgr_stat "$RS" "$R_IML" dropped.ingress)
	f_in=$(lgr_stat "$RS" "$R_OMF" ingress)
	f_eg=$(lgr_stat "$RS" "$R_OMF" egress)
	f_drop=$(lgr_stat "$RS" "$R_OMF" dropped.egress)
}
# drained: every identity holds in the last reports of both daemons (they only hold once nothing is buffered)
drained() {
	counters
	[ -n "$f_drop" ] && [ -n "$o_drop" ] || return 1
	[ "$a_in" -eq "$sent" ] && [ "$a_in" -eq $((a_drop + o_in)) ] && [ "$o_in" -eq $((o_eg + o_drop)) ] &&
		[ "$r_in" -eq "$o_eg" ] && [ "$r_in" -eq $((r_drop + f_in)) ] && [ "$f_in" -eq $((f_eg + f_drop)) ]
}
lgr_wait_for "every stage's identity to hold" drained
rel_settle "$AS" "$A_OMD" 2
rel_settle "$RS" "$R_OMF" 2
drained || lgr_fail "the identities held, then changed: $(tail -n 4 "$AS") $(tail -n 4 "$RS")"

kill -TERM "$recv_pid"
wait "$recv_pid"
recv=$(tail -n 1 "$W/recv.out")
lgr_say "sender: $load"
lgr_say "subscriber: $recv"

counters
lgr_say "agent: ingress $a_in = dropped.ingress $a_drop + omdoppler ingress $o_in; $o_in = egress $o_eg + dropped.egress $o_drop"
lgr_say "router: ingress $r_in = dropped.ingress $r_drop + omfirehose ingress $f_in; $f_in = egress $f_eg + dropped.egress $f_drop"

lgr_check "the subscriber received exactly omfirehose's egress, each envelope once"
got=$(rel_kv "$recv" received)
[ "$got" = "$f_eg" ] || lgr_fail "the subscriber received $got envelopes, omfirehose counted $f_eg in egress"
[ "$(rel_kv "$recv" unique)" = "$got" ] && [ "$(rel_kv "$recv" duplicates)" = 0 ] ||
	lgr_fail "the subscriber got duplicates: $recv"

lgr_check "no stage's loss went uncounted: rsyslog's ruleset queues discarded nothing"
for q in "$AS:fwd" "$RS:out"; do
	for c in discarded.full discarded.nf; do
		v=$(lgr_stat "${q%%:*}" "${q##*:}" "$c")
		[ "$v" = 0 ] || lgr_fail "ruleset queue ${q##*:}: $c is '$v'"
	done
done

lgr_check "every stage was overloaded: each of the four buffers dropped, sent - received == the drops"
overloaded=("agent dropped.ingress:$a_drop" "router dropped.ingress:$r_drop")
# Under valgrind the daemons pass too few bytes to fill the byte-bounded queues behind the egress buffers (TCP, 4 MiB
# per subscriber stream) within the run: only the ingress stages are required to drop there.
[ "$LGR_VALGRIND" = 1 ] || overloaded+=("agent dropped.egress:$o_drop" "router dropped.egress:$f_drop")
for d in "${overloaded[@]}"; do
	[ "${d##*:}" -gt 0 ] || lgr_fail "${d%%:*} is 0: that stage was not overloaded"
done
[ $((sent - got)) -eq $((a_drop + o_drop + r_drop + f_drop)) ] ||
	lgr_fail "sent $sent - received $got != the drops counted $((a_drop + o_drop + r_drop + f_drop))"
rel_figures "sent=$sent agent_dropped_ingress=$a_drop agent_dropped_egress=$o_drop" \
	"router_dropped_ingress=$r_drop router_dropped_egress=$f_drop received=$got unaccounted=0"

lgr_check "both daemons stop cleanly on SIGTERM$([ "$LGR_VALGRIND" = 1 ] && echo ', valgrind clean')"
lgr_stop
lgr_stop2
lgr_pass
