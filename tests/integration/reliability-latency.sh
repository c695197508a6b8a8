#!/usr/bin/env bash
# shellcheck disable=SC2119,SC2317 # lgr_init takes no script arguments; checks run through lgr_wait_for
# reliability-latency.sh: producers never wait (doc/reliability.md promise 1): an emitter's send latency into an
# agent whose router is dead, or alive but reading nothing, stays within 2 x its latency when the router is live.
#
# One agent rsyslogd, three gRPC inputs (mutual TLS, role="agent"), each with its own ruleset and omdoppler action
# (default buffers of 10,000 envelopes; the rulesets have queues of their own: a Direct one makes rsyslog leak a
# per-thread worker object under valgrind, see doc/reliability.md): "live" sends to a router rsyslogd
# (imloggregator -> discard), "dead" to a port nobody listens on, "stalled" to a relay (tests/tools/tcp-relay.js)
# in front of the router that reads nothing once the action has connected through it (after one unmeasured run),
# so that the action's TCP and HTTP/2 windows fill and its buffer overflows. The emitter is lgr-load with unary
# Send calls of 10 envelopes, one call in flight (--streams 1): its seconds per call is the latency of a call,
# measured by its own clock. Runs go in turn (live, dead, stalled, live, ...) so that the machine's load moves all
# three alike.
#
# Oracle:
#   - every call of every run ends OK (failed_streams 0, acked == sent);
#   - the median per-call latency of the dead and of the stalled runs is at most 2 x the median of the live runs;
#   - the scenario is real: the dead and the stalled actions dropped (dropped.egress > 0; under valgrind, too slow
#     to fill the stalled action's windows, only the dead one), the dead one never connected (router.connects 0,
#     router.errors > 0), the live one sent at least 90 % of what it got (flat out, its buffer may overflow now and
#     then: counted), and every input and action conserves exactly: imloggregator ingress == envelopes sent ==
#     dropped.ingress + omdoppler ingress, omdoppler ingress == egress + dropped.egress (+ 10000 for the dead
#     action: its full buffer, held until a router comes);
#   - rsyslogd exits 0 on SIGTERM (valgrind clean under LGR_VALGRIND=1).
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
runs=$((5 * LGR_REL_SCALE))
count=20000 # envelopes per run: 2000 calls
size=200
if [ "$LGR_VALGRIND" = 1 ]; then
	runs=3
	count=3000 # 4 x 3000 still overflows the dead action's buffer of 10000
fi
tls() { printf 'tls.cacert="%s/ca.crt" tls.mycert="%s/%s.crt" tls.myprivkey="%s/%s.key"' "$P" "$P" "$1" "$P" "$1"; }

lgr_check "a router rsyslogd (imloggregator -> discard) and a relay in front of it that reads nothing"
rel_router_conf "$W/router.conf" <<EOF
module(load="impstats" interval="1" log.syslog="off" log.file="$W/router-stats.log" format="legacy")
module(load="$(lgr_module imloggregator)")
input(type="imloggregator" port="0" listenPortFileName="$W/router.port" role="router" ruleset="out" $(tls doppler))
ruleset(name="out") { stop }
EOF
lgr_start2 "$W/router.conf"
lgr_wait_port "$W/router.port"
router_port=$LGR_PORT
rel_relay stall "$router_port" 0 # it stops reading once the stalled action has connected through it
stall_pid=$REL_RELAY_PID
stall_port=$REL_RELAY_PORT
dead_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

lgr_check "the agent starts with three inputs: to the live router, to a dead port, to the stalled relay"
{
	printf 'module(load="impstats" interval="1" log.syslog="off" log.file="%s/agent-stats.log" format="legacy")\n' "$W"
	printf 'module(load="%s")\nmodule(load="%s")\n' "$(lgr_module imloggregator)" "$(lgr_module omdoppler)"
	for s in live:1:"$router_port" dead:2:"$dead_port" stalled:3:"$stall_port"; do
		n=${s%%:*}
		printf 'input(type="imloggregator" address="127.0.0.%s" port="0" listenPortFileName="%s/%s.port" role="agent"\n' \
			"$(cut -d: -f2 <<<"$s")" "$W" "$n"
		printf '\truleset="%s" %s)\n' "$n" "$(tls metron)"
		printf 'ruleset(name="%s" queue.type="LinkedList") {\n' "$n"
		printf '\taction(type="omdoppler" name="%s" routers=["127.0.0.1:%s"] %s)\n}\n' "$n" "${s##*:}" "$(tls metron)"
	done
} | lgr_conf_write "$W/agent.conf"
lgr_start "$W/agent.conf"
declare -A port addr=([live]=127.0.0.1 [dead]=127.0.0.2 [stalled]=127.0.0.3)
for n in live dead stalled; do
	lgr_wait_port "$W/$n.port"
	port[$n]=$LGR_PORT
done
AS=$W/agent-stats.log

# run NAME I: one run of unary Send calls into input NAME; appends its seconds per call to NAME.lat.
run() {
	local out
	out=$("$REL_LOAD" --addr "${addr[$1]}:${port[$1]}" --tls --ca "$P/ca.crt" --cert "$P/client.crt" \
		--key "$P/client.key" --server-name metron --method Send --streams 1 --batch 10 --count "$count" --size "$size" \
		--source-id "$1" 2>&1) || lgr_fail "$1 run $2: lgr-load failed: $out"
	[ "$(rel_kv "$out" failed_streams)" = 0 ] && [ "$(rel_kv "$out" acked)" = "$count" ] ||
		lgr_fail "$1 run $2: not every call ended OK: $out"
	printf '%s\n' "$out" >>"$W/$1.runs"
	python3 -c 'import sys; print(float(sys.argv[1]) / (int(sys.argv[2]) / 10) * 1e6)' "$(rel_kv "$out" seconds)" \
		"$count" >>"$W/$1.lat"
}

lgr_check "$runs runs of $((count / 10)) calls into each input, in turn"
# one unmeasured run each first: connections, TLS sessions and the router's backoff settle
for n in live dead stalled; do run "$n" 0; done
lgr_wait_for "the stalled action to connect through the relay" lgr_stat_ge "$AS" 'omdoppler\(stalled\)' router.connects 1
rel_relay_rate stall "$stall_pid" stop
rm -f "$W"/*.lat
for i in $(seq 1 "$runs"); do
	for n in live dead stalled; do run "$n" "$i"; done
done
median() { sort -n "$W/$1.lat" | awk '{ v[NR] = $1 } END { printf "%.0f\n", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
m_live=$(median live)
m_dead=$(median dead)
m_stalled=$(median stalled)
lgr_say "median microseconds per call of 10 envelopes: live $m_live, dead $m_dead, stalled $m_stalled"
lgr_say "  live:    $(paste -sd' ' "$W/live.lat")"
lgr_say "  dead:    $(paste -sd' ' "$W/dead.lat")"
lgr_say "  stalled: $(paste -sd' ' "$W/stalled.lat")"

lgr_check "the scenario is real: every stage conserves, the dead and stalled actions dropped"
rel_relay_rate stall "$stall_pid" 0 # the stalled action can drain now
total=$(((runs + 1) * count))
# conserved NAME HELD: the input took everything; what it did not drop reached the action; the action sent or
# dropped all of it but HELD (the dead action's buffer: full, buffer.size 10000 exactly, as the runs send more)
conserved() {
	local i="imloggregator\\(grpc/${addr[$1]//./\\.}:0\\)" o="omdoppler\\($1\\)" a b c
	[ "$(lgr_stat "$AS" "$i" ingress)" = "$total" ] || return 1
	a=$(lgr_stat "$AS" "$o" ingress)
	b=$(lgr_stat "$AS" "$o" egress)
	c=$(lgr_stat "$AS" "$o" dropped.egress)
	[ "$((total - $(lgr_stat "$AS" "$i" dropped.ingress)))" = "$a" ] && [ "$a" -eq $((b + c + $2)) ]
}
for n in live dead stalled; do
	held=0
	[ "$n" = dead ] && held=10000
	lgr_wait_for "$n: every envelope accepted, and conserved by the input and the action" conserved "$n" "$held"
	lgr_say "$n: $(grep -E "omdoppler\\($n\\)" "$AS" | tail -n 1 | cut -d' ' -f6-)"
done
# under valgrind the runs pass too few bytes to fill the stalled action's TCP and HTTP/2 windows besides its buffer
dropping=(dead)
[ "$LGR_VALGRIND" = 1 ] || dropping+=(stalled)
for n in "${dropping[@]}"; do
	lgr_stat_ge "$AS" "omdoppler\\($n\\)" dropped.egress 1 || lgr_fail "the $n action dropped nothing"
done
[ "$(lgr_stat "$AS" 'omdoppler\(dead\)' router.connects)" = 0 ] && lgr_stat_ge "$AS" 'omdoppler\(dead\)' router.errors 1 ||
	lgr_fail "the dead router was reached, or its failures not counted"
lgr_stat_ge "$AS" 'omdoppler\(live\)' egress $((total * 9 / 10)) || lgr_fail "the live action sent less than 90 %"

lgr_check "producers never wait: dead and stalled within 2 x live"
[ "$m_dead" -le $((2 * m_live)) ] || lgr_fail "with a dead router a call takes $m_dead us, more than 2 x $m_live us"
[ "$m_stalled" -le $((2 * m_live)) ] ||
	lgr_fail "with a stalled router a call takes $m_stalled us, more than 2 x $m_live us"
rel_figures "runs=$runs calls_per_run=$((count / 10)) live_us=$m_live dead_us=$m_dead stalled_us=$m_stalled" \
	"dead_ratio=$(python3 -c "print(round($m_dead / $m_live, 2))") stalled_ratio=$(python3 -c "print(round($m_stalled / $m_live, 2))")"

lgr_check "rsyslogd stops cleanly on SIGTERM$([ "$LGR_VALGRIND" = 1 ] && echo ', valgrind clean')"
lgr_stop
lgr_stop2
lgr_pass
