#!/usr/bin/env bash
# omfirehose.sh: throughput, loss and latency of rsyslog as a Loggregator router, end to end: lgr-load (gRPC
# BatchSender) -> router rsyslogd (imloggregator role="router" -> omfirehose) -> lgr-load --recv subscribers
# (BatchedReceiver), all private processes on 127.0.0.1, mutual TLS on every hop (--plain: h2c).
#
#   bench/omfirehose.sh [--topology router|agent|drain] [--subscribers N] [--rate N[,N...] | --search]
#                       [--duration S] [--repeat N] [--size B] [--streams N] [--batch N] [--types LIST] [--plain]
#                       [--omf-params 'k="v" ...'] [--router-params '...'] [--agent-params '...'] [--ruleset-params '...']
#                       [--omd-params '...'] [--recv-threads N] [--from N] [--max N] [--precision PCT]
#                       [--loss PCT] [--long [S]] [--json FILE] [--keep]
#
# Topologies:
#   router  lgr-load -> router -> --subscribers subscriptions (default 1), each its own subscriber
#   agent   lgr-load -> agent rsyslogd (imloggregator role="agent" -> omdoppler) -> router -> subscribers
#   drain   lgr-load -> router whose omfirehose has drains.bindingsFile binding the sender's source id to
#           syslog://127.0.0.1:PORT -> lgr-load --recv --syslog (octet-counted RFC 5424 lines)
#
# The receivers subscribe once, before the first point, and stay: after each point the script waits until every
# counter of the daemons stopped moving, then asks the receiver for the figures of the point (SIGUSR1). Each point
# prints one row:
#   offered       envelopes the generator queued (lgr-load sent), per second of its run
#   routed        router imloggregator ingress - dropped.ingress
#   egress, drop  router omfirehose egress (drains: drains.egress) and dropped.egress
#   unique        distinct envelopes the subscribers got, every subscriber counted (lgr-load --recv unique)
#   loss          1 - unique / (offered envelopes x subscribers), in %; dup: duplicates received
#   p50, p99      latency in ms: arrival at the subscriber minus the envelope's timestamp (its send time)
#   us/env        CPU microseconds per envelope: router (/proc/PID/stat, per routed envelope), agent (per accepted),
#                 receiver and generator (their own getrusage, per envelope received / sent)
#   RSS           VmRSS of each daemon and the receiver at the end of the point, MiB
#   other         CPUs' worth used meanwhile by processes other than these: figures are comparable only while it
#                 is near 0 (a shared virtual machine also changes the speed of its CPUs with the host's load)
#
# --rate runs the listed rates (--repeat times each). --search (the default) finds the highest offered rate whose
# loss is below --loss % (default 0.1): from --from (default 50000) the rate grows by 25 % while a point passes,
# then bisects between the best passing and the lowest failing rate until they are within --precision % (5).
# With --repeat N a rate passes when the median loss of its N runs is below the bound (of an even number of runs,
# the higher of the middle two).
#
# --long [S] (default 600) instead runs one point of S seconds at --rate (default 200000) and samples the RSS of
# every process every 10 s; it prints the samples and each process's least-squares slope in MiB per minute (flat
# memory: a slope near 0 once the buffers have filled; the first minute is left out of the fit of runs of 2 minutes
# or more).
#
# --json FILE appends one JSON object per point (and one for --long) to FILE, for bench/run.sh.
# --omf-params go to the omfirehose action (e.g. 'subscriber.buffer="10000" batch.flushinterval="5"'),
# --router-params / --agent-params to the imloggregator inputs, --omd-params to the agent's omdoppler action,
# --ruleset-params to both daemons' forwarding rulesets (default 'queue.type="Direct"', as the example configs;
# --ruleset-params '' measures rsyslog's main queue instead).
#
# Environment: LGR_BUILD (build tree, default <src>/build), RSYSLOGD (default /usr/sbin/rsyslogd).
# Exit status: 0; 3 when a daemon (e.g. drains not available in this build) refuses to start; 1 on other errors.
# Everything binds 127.0.0.1; the processes and the work dir are removed on exit (--keep keeps the dir, with the
# configurations, impstats output, internal logs and the receiver's output).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
prog=omfirehose.sh
# shellcheck source=bench/lib.sh
. "$here/lib.sh"
src=$(dirname "$here")
build=${LGR_BUILD:-$src/build}
rsyslogd=${RSYSLOGD:-/usr/sbin/rsyslogd}
load=$build/bench/lgr-load
iml_so=$build/modules/imloggregator/.libs/imloggregator.so
omd_so=$build/modules/omdoppler/.libs/omdoppler.so
omf_so=$build/modules/omfirehose/.libs/omfirehose.so

topology=router
subscribers=1
rates=
duration=5
repeat=1
size=200
streams=5
batch=100
types=log
plain=0
omf_params=
router_params=
ruleset_params='queue.type="Direct"'
agent_params=
omd_params=
recv_threads=
from=50000
max=2000000
precision=5
loss_max=0.1
long=0
long_rate=
json=
keep=0

usage() {
	sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
}

while [ $# -gt 0 ]; do
	case $1 in
	--topology) topology=$2; shift ;;
	--subscribers) subscribers=$2; shift ;;
	--rate) rates=$2; long_rate=$2; shift ;;
	--search) rates= ;;
	--duration) duration=$2; shift ;;
	--repeat) repeat=$2; shift ;;
	--size) size=$2; shift ;;
	--streams) streams=$2; shift ;;
	--batch) batch=$2; shift ;;
	--types) types=$2; shift ;;
	--plain) plain=1 ;;
	--omf-params) omf_params=$2; shift ;;
	--router-params) router_params=$2; shift ;;
	--ruleset-params) ruleset_params=$2; shift ;;
	--agent-params) agent_params=$2; shift ;;
	--omd-params) omd_params=$2; shift ;;
	--recv-threads) recv_threads=$2; shift ;;
	--from) from=$2; shift ;;
	--max) max=$2; shift ;;
	--precision) precision=$2; shift ;;
	--loss) loss_max=$2; shift ;;
	--long)
		long=600
		if [ $# -gt 1 ] && [[ $2 =~ ^[0-9]+$ ]]; then long=$2; shift; fi
		;;
	--json) json=$2; shift ;;
	--keep) keep=1 ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; exit 2 ;;
	esac
	shift
done


case $topology in router | agent | drain) ;; *) die "unknown topology $topology" ;; esac
[ "$topology" = drain ] && subscribers=1
[ -x "$load" ] || die "no $load: make -C $build bench/lgr-load"
for so in "$iml_so" "$omf_so"; do [ -f "$so" ] || die "$so is not built"; done
[ "$topology" != agent ] || [ -f "$omd_so" ] || die "$omd_so is not built"
[ -x "$rsyslogd" ] || die "no rsyslogd at $rsyslogd"
clk_tck=$(getconf CLK_TCK)
[ -n "$recv_threads" ] || recv_threads=$((subscribers > 1 ? 2 : 1))

work=$(mktemp -d "${TMPDIR:-/tmp}/lgr-bench-omf.XXXXXX")
agent_pid=
router_pid=
recv_pid=
pids=

trap cleanup EXIT
trap 'exit 130' INT TERM HUP

pki=$work/pki
"$src/contrib/gen-pki.sh" "$pki" >/dev/null




recv_tls=(--tls --ca "$pki/ca.crt" --cert "$pki/client.crt" --key "$pki/client.key" --server-name doppler)
gen_tls=(--tls --ca "$pki/ca.crt" --cert "$pki/metron.crt" --key "$pki/metron.key" --server-name doppler)
if [ "$plain" = 1 ]; then
	recv_tls=()
	gen_tls=()
fi

# ---- the drain receiver comes first: the router's bindings name its port -----------------------------------------

recv_out=$work/recv.out
drain_params=
if [ "$topology" = drain ]; then
	"$load" --recv --syslog --addr 127.0.0.1:0 --port-file "$work/drain.port" >"$recv_out" 2>"$work/recv.err" &
	recv_pid=$!
	pids="$pids $recv_pid"
	for _ in $(seq 1 100); do [ -s "$work/drain.port" ] && break; sleep 0.05; done
	[ -s "$work/drain.port" ] || die "the drain receiver did not start: $(cat "$work/recv.err")"
	printf '[{"url": "syslog://127.0.0.1:%s", "credentials": [{"cert": "", "key": "", "ca": "", "apps": [{"app_id": "lgr-load", "hostname": "bench.space.app"}]}]}]\n' \
		"$(tr -dc 0-9 <"$work/drain.port")" >"$work/bindings.json"
	drain_params="drains.bindingsFile=\"$work/bindings.json\""
fi

# ---- the daemons -------------------------------------------------------------------------------------------------

router_dir=$work/router
conf_write "$work/router.conf" "$router_dir" <<EOF
module(load="$iml_so")
module(load="$omf_so")
ruleset(name="fwd" $ruleset_params) {
	action(type="omfirehose" name="bench" address="127.0.0.1" port="0" listenPortFileName="$router_dir/egress.port"
		$(tls_params doppler) $drain_params $omf_params)
}
input(type="imloggregator" address="127.0.0.1" port="0" listenPortFileName="$router_dir/grpc.port" role="router"
	ruleset="fwd" $(tls_params doppler) $router_params)
EOF
if ! start "$work/router.conf" "$router_dir"; then
	say "the router rsyslogd did not start (topology $topology)"
	exit 3
fi
router_pid=$started
router_port=$(tr -dc 0-9 <"$router_dir/grpc.port")
egress_port=$(tr -dc 0-9 <"$router_dir/egress.port")
target_port=$router_port

if [ "$topology" = agent ]; then
	agent_dir=$work/agent
	conf_write "$work/agent.conf" "$agent_dir" <<EOF
module(load="$iml_so")
module(load="$omd_so")
ruleset(name="fwd" $ruleset_params) {
	action(type="omdoppler" name="bench" routers=["127.0.0.1:$router_port"] $(tls_params metron) $omd_params)
}
input(type="imloggregator" address="127.0.0.1" port="0" listenPortFileName="$agent_dir/grpc.port" role="agent"
	ruleset="fwd" defaultTags=["deployment:bench"] $(tls_params doppler) $agent_params)
EOF
	start "$work/agent.conf" "$agent_dir" || { say "the agent rsyslogd did not start"; exit 3; }
	agent_pid=$started
	target_port=$(tr -dc 0-9 <"$agent_dir/grpc.port")
fi

# ---- counters ----------------------------------------------------------------------------------------------------


# snapshot: every counter of the daemons, one line: router iml ingress, dropped; omf ingress, egress, dropped,
# drains.egress; agent iml ingress, dropped; omd ingress, egress, dropped.
snapshot() {
	local a='0 0 0 0 0'
	if [ -n "$agent_pid" ]; then
		a="$(stat "$agent_dir" imloggregator ingress) $(stat "$agent_dir" imloggregator dropped.ingress)"
		a="$a $(stat "$agent_dir" omdoppler ingress) $(stat "$agent_dir" omdoppler egress)"
		a="$a $(stat "$agent_dir" omdoppler dropped.egress)"
	fi
	echo "$(stat "$router_dir" imloggregator ingress) $(stat "$router_dir" imloggregator dropped.ingress)" \
		"$(stat "$router_dir" omfirehose ingress) $(stat "$router_dir" omfirehose egress)" \
		"$(stat "$router_dir" omfirehose dropped.egress) $(stat "$router_dir" omfirehose drains.egress) $a"
}

# settle: waits (at most 30 s) until every counter stayed the same over two impstats emissions of the daemons.
settle() {
	local prev='' cur same=0
	for _ in $(seq 1 60); do
		sleep 0.5
		cur=$(snapshot)
		if [ "$cur" = "$prev" ]; then
			same=$((same + 1))
			[ "$same" -ge 4 ] && return 0
		else
			same=0
		fi
		prev=$cur
	done
	say "counters still moving after 30 s"
}


# ---- the subscribers ---------------------------------------------------------------------------------------------

if [ "$topology" != drain ]; then
	"$load" --recv --addr "127.0.0.1:$egress_port" "${recv_tls[@]}" --subscriptions "$subscribers" \
		--threads "$recv_threads" --ready-file "$work/recv.ready" >"$recv_out" 2>"$work/recv.err" &
	recv_pid=$!
	pids="$pids $recv_pid"
	ok=0
	for _ in $(seq 1 200); do
		if [ -s "$work/recv.ready" ] && [ "$(stat "$router_dir" omfirehose subscriptions)" = "$subscribers" ]; then
			ok=1
			break
		fi
		kill -0 "$recv_pid" 2>/dev/null || break
		sleep 0.1
	done
	[ "$ok" = 1 ] || die "the subscribers did not subscribe: $(cat "$work/recv.err")"
fi

# recv_report: asks the receiver for the figures since its last report; prints its line.
recv_report() {
	local n
	n=$(wc -l <"$recv_out")
	kill -USR1 "$recv_pid"
	for _ in $(seq 1 200); do
		[ "$(wc -l <"$recv_out")" -gt "$n" ] && break
		kill -0 "$recv_pid" 2>/dev/null || die "the receiver ended: $(cat "$work/recv.err")"
		sleep 0.05
	done
	sed -n "$((n + 1))p" "$recv_out"
}

# ---- one point ---------------------------------------------------------------------------------------------------

hdr=$(printf '%8s %8s %8s %9s %7s %9s %7s %5s %7s %7s %6s %6s %6s %6s %7s %7s %7s %5s' rate offered/s routed egress \
	drop unique loss% dup p50ms p99ms rout_us agnt_us recv_us gen_us routMiB agntMiB recvMiB other)
rows=()

# point RATE [DURATION]: one run; sets p_loss (%), p_offered and appends a row (and a JSON object).
point() {
	local rate=$1 secs_run=${2:-$duration} s0 s1 rt0 rt1 at0 at1 b0 b1 w0 w1 out rcv secs sent
	local ri0 rd0 oi0 oe0 od0 de0 ai0 ad0 ri1 rd1 oi1 oe1 od1 de1 ai1 ad1 routed egress dropped accepted
	local unique dups p50 p99 rus aus rcv_us gen_us other
	s0=$(snapshot)
	rt0=$(ticks "$router_pid")
	at0=$(ticks "$agent_pid")
	b0=$(busy_ticks)
	w0=$(date +%s.%N)
	out=$("$load" --addr "127.0.0.1:$target_port" "${gen_tls[@]}" --streams "$streams" --batch "$batch" \
		--size "$size" --types "$types" --duration "$secs_run" --rate "$rate") ||
		say "lgr-load ended with an error: $out"
	settle
	rcv=$(recv_report)
	s1=$(snapshot)
	rt1=$(ticks "$router_pid")
	at1=$(ticks "$agent_pid")
	b1=$(busy_ticks)
	w1=$(date +%s.%N)
	read -r ri0 rd0 oi0 oe0 od0 de0 ai0 ad0 _ _ _ <<<"$s0"
	read -r ri1 rd1 oi1 oe1 od1 de1 ai1 ad1 _ _ _ <<<"$s1"
	sent=$(field "$out" sent)
	secs=$(field "$out" seconds)
	routed=$(((ri1 - ri0) - (rd1 - rd0)))
	accepted=$(((ai1 - ai0) - (ad1 - ad0)))
	egress=$((oe1 - oe0))
	[ "$topology" = drain ] && egress=$((de1 - de0))
	dropped=$((od1 - od0))
	[ $((oi1 - oi0)) = "$routed" ] || say "  omfirehose ingress $((oi1 - oi0)) != routed $routed"
	unique=$(field "$rcv" unique)
	dups=$(field "$rcv" duplicates)
	p_offered=$(awk -v n="$sent" -v s="$secs" 'BEGIN { printf "%d", (s > 0 ? n / s : 0) }')
	p_loss=$(awk -v n="$sent" -v u="$unique" -v g="$subscribers" \
		'BEGIN { printf "%.3f", (n > 0 ? 100 * (n * g - u) / (n * g) : 100) }')
	p50=$(awk -v v="$(field "$rcv" latency_p50_us)" 'BEGIN { printf "%.2f", v / 1000 }')
	p99=$(awk -v v="$(field "$rcv" latency_p99_us)" 'BEGIN { printf "%.2f", v / 1000 }')
	us() { awk -v t="$1" -v hz="$clk_tck" -v n="$2" 'BEGIN { printf "%.2f", (n > 0 ? t * 1e6 / hz / n : 0) }'; }
	rus=$(us $((rt1 - rt0)) "$routed")
	aus=-
	[ -n "$agent_pid" ] && aus=$(us $((at1 - at0)) "$accepted")
	rcv_us=$(field "$rcv" cpu_us_per_envelope)
	gen_us=$(field "$out" cpu_us_per_envelope)
	other=$(awk -v b=$((b1 - b0)) -v d=$((rt1 - rt0 + at1 - at0)) -v g="$(field "$out" cpu_seconds)" \
		-v r="$(field "$rcv" cpu_seconds)" -v hz="$clk_tck" -v w0="$w0" -v w1="$w1" \
		'BEGIN { o = ((b - d) / hz - g - r) / (w1 - w0); printf "%.2f", (o > 0 ? o : 0) }')
	rows+=("$(printf '%8s %8s %8s %9s %7s %9s %7s %5s %7s %7s %6s %6s %6s %6s %7s %7s %7s %5s' "$rate" "$p_offered" \
		"$routed" "$egress" "$dropped" "$unique" "$p_loss" "$dups" "$p50" "$p99" "$rus" "$aus" "$rcv_us" "$gen_us" \
		"$(rss_mib "$router_pid")" "$(rss_mib "$agent_pid")" "$(rss_mib "$recv_pid")" "$other")")
	say "  generator: $out"
	say "  receiver:  $rcv"
	say "$hdr"
	say "${rows[-1]}"
	if [ -n "$json" ]; then
		{
			printf '{"topology": "%s", "subscribers": %s, "rate": %s, "seconds": %s, "offered_per_s": %s, "sent": %s,' \
				"$topology" "$subscribers" "$rate" "$secs_run" "$p_offered" "$sent"
			printf ' "routed": %s, "egress": %s, "dropped_egress": %s, "unique": %s, "duplicates": %s, "loss_pct": %s,' \
				"$routed" "$egress" "$dropped" "$unique" "$dups" "$p_loss"
			printf ' "p50_ms": %s, "p99_ms": %s, "cpu_us": {"router": %s, "agent": %s, "receiver": %s, "generator": %s},' \
				"$p50" "$p99" "$rus" "$([ "$aus" = - ] && echo null || echo "$aus")" "$rcv_us" "$gen_us"
			printf ' "rss_mib": {"router": %s, "agent": %s, "receiver": %s}, "other_cpus": %s}\n' \
				"$(rss_mib "$router_pid")" "$([ -n "$agent_pid" ] && rss_mib "$agent_pid" || echo null)" \
				"$(rss_mib "$recv_pid")" "$other"
		} >>"$json"
	fi
}

hop='mutual TLS'
[ "$plain" = 1 ] && hop=h2c
desc="$topology, $subscribers subscriber(s), $hop, $(nproc) CPUs, $streams streams x $batch envelopes of $size bytes"
desc="$desc ($types)${omf_params:+; omfirehose: $omf_params}"

# ---- --long: memory over a long run ----------------------------------------------------------------------------

if [ "$long" -gt 0 ]; then
	rate=${long_rate:-200000}
	samples=$work/rss.txt
	say "long run: $rate envelopes/s for $long s, RSS sampled every 10 s"
	(
		t0=$(date +%s)
		while sleep 10; do
			echo "$(($(date +%s) - t0)) $(rss_mib "$router_pid") $(rss_mib "$agent_pid") $(rss_mib "$recv_pid")"
		done
	) >"$samples" &
	sampler=$!
	point "$rate" "$long"
	kill "$sampler" 2>/dev/null || true
	wait "$sampler" 2>/dev/null || true
	echo
	echo "long run: $desc, $rate envelopes/s for $long s"
	echo "$hdr"
	printf '%s\n' "${rows[@]}"
	echo
	printf '%6s %9s %9s %9s\n' seconds routerMiB agentMiB recvMiB
	awk '{ printf "%6s %9s %9s %9s\n", $1, $2, $3, $4 }' "$samples"
	# least-squares slope of each column against time, from the second minute on
	fit_from=60
	[ "$long" -ge 120 ] || fit_from=0
	slopes=$(awk -v from="$fit_from" '$1 >= from { n++; sx += $1; for (c = 2; c <= 4; c++) if ($c != "-") { s[c] += $c; sxy[c] += $1 * $c }
		sxx += $1 * $1 }
		END { for (c = 2; c <= 4; c++) {
			d = n * sxx - sx * sx
			printf "%s ", (n > 2 && d > 0 && (c in s) ? sprintf("%.3f", 60 * (n * sxy[c] - sx * s[c]) / d) : "-") } }' \
		"$samples")
	read -r sr sa sv <<<"$slopes"
	echo "RSS slope, MiB per minute (from $fit_from s on): router $sr, agent $sa, receiver $sv"
	if [ -n "$json" ]; then
		[ "$sr" = - ] && sr=null
		[ "$sa" = - ] && sa=null
		[ "$sv" = - ] && sv=null
		printf '{"topology": "%s", "long_seconds": %s, "rate": %s, "rss_slope_mib_per_min": {"router": %s, "agent": %s, "receiver": %s}, "rss_samples": [%s]}\n' \
			"$topology" "$long" "$rate" "$sr" "$sa" "$sv" \
			"$(awk '{ printf "%s[%s, %s]", (NR > 1 ? ", " : ""), $1, $2 }' "$samples")" >>"$json"
	fi
	exit 0
fi

# ---- rates -------------------------------------------------------------------------------------------------------

search_best
[ -n "$json" ] && printf '{"topology": "%s", "subscribers": %s, "best_rate": %s, "loss_bound_pct": %s}\n' \
	"$topology" "$subscribers" "$best" "$loss_max" >>"$json"

echo
echo "$desc, ${duration}s per point"
echo "$hdr"
printf '%s\n' "${rows[@]}"
echo
target=250000
[ "$topology" = agent ] && target=120000
[ "$topology" = drain ] && target=150000
echo "highest offered rate with median loss < $loss_max %: $best envelopes/s" \
	"(target >= $target: $([ "$best" -ge "$target" ] && echo met || echo 'NOT met'))"
