#!/usr/bin/env bash
# omdoppler.sh: end-to-end throughput of rsyslog as a Loggregator agent: lgr-load (gRPC BatchSender) -> agent
# rsyslogd (imloggregator role="agent" -> omdoppler) -> router rsyslogd (imloggregator role="router" -> a ruleset
# that only stops), both private daemons on 127.0.0.1, mutual TLS on both hops (--plain: h2c).
#
#   bench/omdoppler.sh [--rate N[,N...] | --search] [--duration S] [--repeat N] [--size B] [--streams N]
#                      [--batch N] [--types LIST] [--plain] [--omd-params 'k="v" ...'] [--agent-params '...']
#                      [--router-params '...'] [--fwd-params '...'] [--from N] [--max N] [--precision PCT]
#                      [--loss PCT] [--keep]
#
# Each point runs the generator at a fixed offered rate for --duration seconds (default 5), waits until the
# counters of both daemons have stopped moving, and prints one row:
#   offered       envelopes the generator queued (lgr-load sent), per second of its run
#   accepted      agent imloggregator ingress - dropped.ingress
#   egress, drop  agent omdoppler egress and dropped.egress
#   received      router imloggregator ingress - dropped.ingress
#   loss          1 - received / offered, in %
#   us/env        CPU microseconds per envelope (/proc/PID/stat utime + stime over the point, start of the generator
#                 to the settled counters; the generator's from its getrusage) of the agent (per accepted), the
#                 router (per received) and the generator (per offered)
#   RSS           VmRSS of each daemon at the end of the point, MiB
#   other         CPUs' worth used meanwhile by processes other than these three: figures are comparable only
#                 while it is near 0 (a shared virtual machine also changes the speed of its CPUs with the host's
#                 load, so compare rows of one run)
# --agent-params and --router-params are added to the imloggregator inputs, --omd-params to the omdoppler action,
# --fwd-params to the agent's ruleset, by default 'queue.type="Direct"' as in contrib/examples/agent.conf (then
# imloggregator's submitting threads run the action themselves; --fwd-params '' hands the messages to rsyslog's main
# queue instead).
#
# --rate runs the listed rates (--repeat times each). --search (the default) finds the highest offered rate whose
# loss is below --loss % (default 0.1): from --from (default 40000) the rate grows by 25 % while a point passes,
# then bisects between the best passing and the lowest failing rate until they are within --precision % (default
# 5). With --repeat N a rate passes when the median loss of its N runs is below the bound (of an even number of
# runs, the higher of the middle two).
#
# Environment: LGR_BUILD (build tree, default <src>/build), RSYSLOGD (default /usr/sbin/rsyslogd).
# Everything binds 127.0.0.1; the daemons and the work dir are removed on exit (--keep keeps the dir, with the
# configurations, impstats output and both daemons' internal logs).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
prog=omdoppler.sh
# shellcheck source=bench/lib.sh
. "$here/lib.sh"
src=$(dirname "$here")
build=${LGR_BUILD:-$src/build}
rsyslogd=${RSYSLOGD:-/usr/sbin/rsyslogd}
load=$build/bench/lgr-load
iml_so=$build/modules/imloggregator/.libs/imloggregator.so
omd_so=$build/modules/omdoppler/.libs/omdoppler.so

rates=
duration=5
repeat=1
size=200
streams=5
batch=100
types=log
plain=0
omd_params=
agent_params=
router_params=
fwd_params='queue.type="Direct"'
from=40000
max=2000000
precision=5
loss_max=0.1
keep=0

usage() {
	sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
}

while [ $# -gt 0 ]; do
	case $1 in
	--rate) rates=$2; shift ;;
	--search) rates= ;;
	--duration) duration=$2; shift ;;
	--repeat) repeat=$2; shift ;;
	--size) size=$2; shift ;;
	--streams) streams=$2; shift ;;
	--batch) batch=$2; shift ;;
	--types) types=$2; shift ;;
	--plain) plain=1 ;;
	--omd-params) omd_params=$2; shift ;;
	--agent-params) agent_params=$2; shift ;;
	--router-params) router_params=$2; shift ;;
	--fwd-params) fwd_params=$2; shift ;;
	--from) from=$2; shift ;;
	--max) max=$2; shift ;;
	--precision) precision=$2; shift ;;
	--loss) loss_max=$2; shift ;;
	--keep) keep=1 ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; exit 2 ;;
	esac
	shift
done


[ -x "$load" ] || die "no $load: make -C $build bench/lgr-load"
if [ ! -f "$iml_so" ] || [ ! -f "$omd_so" ]; then die "modules not built in $build"; fi
[ -x "$rsyslogd" ] || die "no rsyslogd at $rsyslogd"
clk_tck=$(getconf CLK_TCK)

work=$(mktemp -d "${TMPDIR:-/tmp}/lgr-bench-omd.XXXXXX")
agent_pid=
router_pid=
pids=

trap cleanup EXIT
trap 'exit 130' INT TERM HUP

pki=$work/pki
"$src/contrib/gen-pki.sh" "$pki" >/dev/null




router_dir=$work/router
conf_write "$work/router.conf" "$router_dir" <<EOF
module(load="$iml_so")
ruleset(name="discard") { stop }
input(type="imloggregator" address="127.0.0.1" port="0" listenPortFileName="$router_dir/grpc.port" role="router"
	ruleset="discard" $(tls_params doppler) $router_params)
EOF
start "$work/router.conf" "$router_dir" || die "the router rsyslogd did not start"
router_pid=$started
router_port=$(tr -dc 0-9 <"$router_dir/grpc.port")

agent_dir=$work/agent
conf_write "$work/agent.conf" "$agent_dir" <<EOF
module(load="$iml_so")
module(load="$omd_so")
ruleset(name="fwd" $fwd_params) {
	action(type="omdoppler" name="bench" routers=["127.0.0.1:$router_port"] $(tls_params metron) $omd_params)
}
input(type="imloggregator" address="127.0.0.1" port="0" listenPortFileName="$agent_dir/grpc.port" role="agent"
	ruleset="fwd" defaultTags=["deployment:bench"] $(tls_params doppler) $agent_params)
EOF
start "$work/agent.conf" "$agent_dir" || die "the agent rsyslogd did not start"
agent_pid=$started
agent_port=$(tr -dc 0-9 <"$agent_dir/grpc.port")

gen_tls=(--tls --ca "$pki/ca.crt" --cert "$pki/metron.crt" --key "$pki/metron.key" --server-name doppler)
[ "$plain" = 1 ] && gen_tls=()
gen=(--addr "127.0.0.1:$agent_port" "${gen_tls[@]}" --streams "$streams" --batch "$batch" --size "$size"
	--types "$types" --duration "$duration")

# ---- counters --------------------------------------------------------------------------------------------------


# snapshot: the counters of both daemons, one line.
snapshot() {
	echo "$(stat "$agent_dir" imloggregator ingress) $(stat "$agent_dir" imloggregator dropped.ingress)" \
		"$(stat "$agent_dir" omdoppler ingress) $(stat "$agent_dir" omdoppler egress)" \
		"$(stat "$agent_dir" omdoppler dropped.egress)" \
		"$(stat "$router_dir" imloggregator ingress) $(stat "$router_dir" imloggregator dropped.ingress)"
}

# settle: waits (at most 30 s) until every counter stayed the same over two impstats emissions of both daemons and
# omdoppler holds nothing (ingress == egress + dropped.egress).
settle() {
	local prev='' cur same=0 ai ae ad
	for _ in $(seq 1 60); do
		sleep 0.5
		cur=$(snapshot)
		read -r _ _ ai ae ad _ _ <<<"$cur"
		if [ "$cur" = "$prev" ] && [ "$ai" = $((ae + ad)) ]; then
			same=$((same + 1))
			[ "$same" -ge 4 ] && return 0
		else
			same=0
		fi
		prev=$cur
	done
	say "counters still moving after 30 s"
}


# ---- one point -------------------------------------------------------------------------------------------------

hdr=$(printf '%9s %9s %9s %9s %7s %9s %7s %7s %7s %7s %7s %7s %6s' rate offered/s accepted egress drop received \
	loss% agent_us router_us gen_us agentMiB routMiB other)
rows=()

# point RATE: one run at RATE; sets p_loss (%), p_offered (per s) and appends a row.
point() {
	local rate=$1 s0 s1 at0 at1 rt0 rt1 b0 b1 w0 w1 out secs sent
	local a_in0 a_dr0 o_in0 o_eg0 o_dr0 r_in0 r_dr0 a_in1 a_dr1 o_in1 o_eg1 o_dr1 r_in1 r_dr1
	local accepted egress dropped received
	s0=$(snapshot)
	at0=$(ticks "$agent_pid")
	rt0=$(ticks "$router_pid")
	b0=$(busy_ticks)
	w0=$(date +%s.%N)
	out=$("$load" "${gen[@]}" --rate "$rate") || say "lgr-load ended with an error: $out"
	settle
	s1=$(snapshot)
	at1=$(ticks "$agent_pid")
	rt1=$(ticks "$router_pid")
	b1=$(busy_ticks)
	w1=$(date +%s.%N)
	read -r a_in0 a_dr0 o_in0 o_eg0 o_dr0 r_in0 r_dr0 <<<"$s0"
	read -r a_in1 a_dr1 o_in1 o_eg1 o_dr1 r_in1 r_dr1 <<<"$s1"
	sent=$(field "$out" sent)
	secs=$(field "$out" seconds)
	accepted=$(((a_in1 - a_in0) - (a_dr1 - a_dr0)))
	egress=$((o_eg1 - o_eg0))
	dropped=$((o_dr1 - o_dr0))
	received=$(((r_in1 - r_in0) - (r_dr1 - r_dr0)))
	[ $((o_in1 - o_in0)) = "$accepted" ] || say "  omdoppler ingress $((o_in1 - o_in0)) != accepted $accepted"
	p_offered=$(awk -v n="$sent" -v s="$secs" 'BEGIN { printf "%d", (s > 0 ? n / s : 0) }')
	p_loss=$(awk -v n="$sent" -v r="$received" 'BEGIN { printf "%.3f", (n > 0 ? 100 * (n - r) / n : 100) }')
	us() { awk -v t="$1" -v hz="$clk_tck" -v n="$2" 'BEGIN { printf "%.2f", (n > 0 ? t * 1e6 / hz / n : 0) }'; }
	rows+=("$(printf '%9s %9s %9s %9s %7s %9s %7s %7s %7s %7s %7s %7s %6s' "$rate" "$p_offered" "$accepted" \
		"$egress" "$dropped" "$received" "$p_loss" "$(us $((at1 - at0)) "$accepted")" \
		"$(us $((rt1 - rt0)) "$received")" "$(field "$out" cpu_us_per_envelope)" "$(rss_mib "$agent_pid")" \
		"$(rss_mib "$router_pid")" \
		"$(awk -v b=$((b1 - b0)) -v d=$((at1 - at0 + rt1 - rt0)) -v g="$(field "$out" cpu_seconds)" \
			-v hz="$clk_tck" -v w0="$w0" -v w1="$w1" \
			'BEGIN { o = ((b - d) / hz - g) / (w1 - w0); printf "%.2f", (o > 0 ? o : 0) }')")")
	say "  generator: $out"
	say "$hdr"
	say "${rows[-1]}"
}

search_best

echo
hop='mutual TLS'
[ "$plain" = 1 ] && hop=h2c
echo "agent -> router, $hop, $(nproc) CPUs, ${duration}s per point, $streams streams x $batch envelopes of" \
	"$size bytes ($types)${omd_params:+; omdoppler: $omd_params}${fwd_params:+; agent ruleset: $fwd_params}"
echo "$hdr"
printf '%s\n' "${rows[@]}"
echo
echo "highest offered rate with median loss < $loss_max %: $best envelopes/s" \
	"(target >= 120000: $([ "$best" -ge 120000 ] && echo met || echo 'NOT met'))"
