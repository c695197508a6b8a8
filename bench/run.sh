#!/usr/bin/env bash
# run.sh: the benchmark scenarios on this machine, in one run, with rsyslog's own ceiling measured alongside; prints
# a table, writes the figures as JSON and a plot of loss against offered rate (SVG).
#
#   bench/run.sh [--quick] [--duration S] [--scenarios LIST] [--plain] [--out DIR] [--keep]
#
# Scenarios (--scenarios, comma-separated, default all):
#   ceiling     rsyslog's own input-to-output ceiling: lgr-load --syslog (octet-counted RFC 5424 lines of the same
#               payload size) flat out -> imptcp -> omfile; lines written per second
#   router      lgr-load -> router (imloggregator -> omfirehose) -> 1 subscriber (lgr-load --recv)
#   router100   the same with 100 subscribers (each gets every envelope)
#   agent       lgr-load -> agent (imloggregator -> omdoppler) -> router -> 1 subscriber
#   drain       lgr-load -> router with one syslog:// drain bound to the sender's source id -> lgr-load --recv
#               --syslog; skipped with a note when the drains part refuses to start or delivers nothing
# For each pipeline: the highest offered rate with less than 0.1 % loss (bench/omfirehose.sh --search), CPU
# microseconds per envelope of every process and RSS at that rate, and p50 / p99 latency at 10,000 and 100,000
# envelopes/s (fixed-rate points); every rate also as a fraction of the ceiling. Targets: router >= 250,000
# envelopes/s, agent -> router -> subscriber >= 120,000, p99 below 5 ms at 10,000 envelopes/s. RSS flatness over
# 10 minutes is a separate run: bench/omfirehose.sh --long.
#
# --quick: 2 s per point and a coarse search (20 %), a few minutes in all; figures for a first look, not for
# comparison. Otherwise --duration (default 5) per point and a 5 % search. Every row carries `other`, the CPUs'
# worth that other processes used meanwhile: figures are comparable only while it is near 0.
#
# Output in --out (default bench-results/ under the current directory): points.jsonl (every point, from
# omfirehose.sh --json), results.json (the summary and the points), loss.svg (loss against offered rate, one line
# per scenario), log.txt (everything the scenarios printed).
# Environment: LGR_BUILD (build tree, default <src>/build), RSYSLOGD (default /usr/sbin/rsyslogd).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src=$(dirname "$here")
build=${LGR_BUILD:-$src/build}
rsyslogd=${RSYSLOGD:-/usr/sbin/rsyslogd}
load=$build/bench/lgr-load

quick=0
duration=
scenarios=ceiling,router,router100,agent,drain
plain=0
out=bench-results
keep=0

usage() {
	sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
}

while [ $# -gt 0 ]; do
	case $1 in
	--quick) quick=1 ;;
	--duration) duration=$2; shift ;;
	--scenarios) scenarios=$2; shift ;;
	--plain) plain=1 ;;
	--out) out=$2; shift ;;
	--keep) keep=1 ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; exit 2 ;;
	esac
	shift
done

say() { printf 'run.sh: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

[ -x "$load" ] || die "no $load: make -C $build"
[ -x "$rsyslogd" ] || die "no rsyslogd at $rsyslogd"
command -v python3 >/dev/null || die "python3 is needed for the report"
if [ -z "$duration" ]; then duration=5; [ "$quick" = 1 ] && duration=2; fi
precision=5
[ "$quick" = 1 ] && precision=20
mkdir -p "$out"
out=$(cd "$out" && pwd)
points=$out/points.jsonl
log=$out/log.txt
: >"$points"
: >"$log"
summary=$out/summary.jsonl
: >"$summary"
common=(--duration "$duration" --precision "$precision")
[ "$plain" = 1 ] && common+=(--plain)
[ "$keep" = 1 ] && common+=(--keep)

# ---- rsyslog's ceiling -------------------------------------------------------------------------------------------

ceiling() {
	local work pid port t0 t1 c0 c1 gen secs lines b0 b1 w0 w1
	work=$(mktemp -d "${TMPDIR:-/tmp}/lgr-bench-ceil.XXXXXX")
	cat >"$work/rs.conf" <<EOF
global(workDirectory="$work" processInternalMessages="on")
module(load="impstats" interval="1" format="json" log.syslog="off" log.file="$work/stats.json")
module(load="imptcp")
template(name="line" type="string" string="%timegenerated:::date-rfc3339% %hostname% %syslogtag%%msg%\n")
ruleset(name="out") { action(type="omfile" name="out" file="$work/out.log" template="line") }
input(type="imptcp" address="127.0.0.1" port="0" listenPortFileName="$work/tcp.port" ruleset="out")
EOF
	"$rsyslogd" -n -f "$work/rs.conf" -i "$work/pid" >"$work/rs.out" 2>&1 &
	pid=$!
	for _ in $(seq 1 100); do
		[ -s "$work/tcp.port" ] && grep -q '"name": "out"' "$work/stats.json" 2>/dev/null && break
		sleep 0.1
	done
	port=$(tr -dc 0-9 <"$work/tcp.port" 2>/dev/null || true)
	if [ -z "$port" ]; then
		say "ceiling: rsyslogd with imptcp did not start"
		kill -KILL "$pid" 2>/dev/null || true
		rm -rf "$work"
		return 1
	fi
	stat_out() { grep -F '"name": "out"' "$work/stats.json" | tail -n 1 | sed -n 's/.*"processed": \([0-9]*\).*/\1/p'; }
	c0=$(stat_out)
	t0=$(sed -E 's/^.*\) //' "/proc/$pid/stat" | awk '{ print $12 + $13 }')
	b0=$(awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat)
	w0=$(date +%s.%N)
	gen=$("$load" --syslog --addr "127.0.0.1:$port" --streams 5 --size 200 --duration "$duration")
	# wait until omfile has written everything the generator sent
	local prev=-1
	for _ in $(seq 1 60); do
		sleep 0.5
		c1=$(stat_out)
		[ "$c1" = "$prev" ] && break
		prev=$c1
	done
	t1=$(sed -E 's/^.*\) //' "/proc/$pid/stat" | awk '{ print $12 + $13 }')
	b1=$(awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat)
	w1=$(date +%s.%N)
	lines=$((c1 - c0))
	secs=$(printf '%s\n' "$gen" | tr ' ' '\n' | sed -n 's/^seconds=//p')
	awk -v n="$lines" -v s="$secs" -v t=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" -v g="$gen" \
		-v rss="$(awk '$1 == "VmRSS:" { printf "%.1f", $2 / 1024 }' "/proc/$pid/status")" \
		-v b=$((b1 - b0)) -v w0="$w0" -v w1="$w1" 'BEGIN {
		split(g, f, " "); gc = 0
		for (i in f) if (f[i] ~ /^cpu_seconds=/) { sub(/^cpu_seconds=/, "", f[i]); gc = f[i] }
		o = ((b - t) / hz - gc) / (w1 - w0); if (o < 0) o = 0
		printf "{\"scenario\": \"ceiling\", \"lines\": %d, \"seconds\": %s, \"lines_per_s\": %d, \"cpu_us\": {\"rsyslogd\": %.2f}, \"rss_mib\": {\"rsyslogd\": %s}, \"other_cpus\": %.2f}\n",
			n, s, (s > 0 ? n / s : 0), (n > 0 ? t * 1e6 / hz / n : 0), rss, o }' >>"$summary"
	say "ceiling: $gen; omfile wrote $lines lines"
	kill -TERM "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	rm -rf "$work"
}

# ---- the pipelines -----------------------------------------------------------------------------------------------

# pipeline NAME TOPOLOGY SUBSCRIBERS FROM: the search and the two latency points of one scenario.
pipeline() {
	local name=$1 topo=$2 subs=$3 from=$4 rc=0 before
	say "$name: search for the highest rate with < 0.1 % loss"
	before=$(wc -l <"$points")
	"$here/omfirehose.sh" --topology "$topo" --subscribers "$subs" --search --from "$from" "${common[@]}" \
		--json "$points" >>"$log" 2>&1 || rc=$?
	if [ "$rc" = 3 ]; then
		say "$name: not available (a daemon refused to start; see $log)"
		echo "{\"scenario\": \"$name\", \"available\": false, \"note\": \"not available: the daemon refused the configuration\"}" >>"$summary"
		return 0
	fi
	sed -n "$((before + 1)),\$p" "$points" | sed "s/^{/{\"scenario\": \"$name\", \"phase\": \"search\", /" >"$out/.tmp"
	sed -i "$((before + 1)),\$d" "$points"
	cat "$out/.tmp" >>"$points"
	if [ "$rc" != 0 ]; then
		say "$name: omfirehose.sh failed ($rc); see $log"
		echo "{\"scenario\": \"$name\", \"available\": false, \"note\": \"the benchmark failed (status $rc)\"}" >>"$summary"
		return 0
	fi
	if [ "$topo" = drain ] && ! grep -q "\"scenario\": \"$name\".*\"unique\": [1-9]" "$out/.tmp"; then
		say "$name: not available (nothing reached the drain)"
		echo "{\"scenario\": \"$name\", \"available\": false, \"note\": \"not available: no line reached the drain\"}" >>"$summary"
		return 0
	fi
	say "$name: latency at 10000 and 100000 envelopes/s"
	before=$(wc -l <"$points")
	"$here/omfirehose.sh" --topology "$topo" --subscribers "$subs" --rate 10000,100000 "${common[@]}" \
		--json "$points" >>"$log" 2>&1 || say "$name: the latency points failed; see $log"
	sed -n "$((before + 1)),\$p" "$points" | sed "s/^{/{\"scenario\": \"$name\", \"phase\": \"latency\", /" >"$out/.tmp"
	sed -i "$((before + 1)),\$d" "$points"
	cat "$out/.tmp" >>"$points"
	echo "{\"scenario\": \"$name\", \"available\": true}" >>"$summary"
}

for s in ${scenarios//,/ }; do
	case $s in
	ceiling) ceiling || echo '{"scenario": "ceiling", "available": false, "note": "rsyslogd with imptcp did not start"}' >>"$summary" ;;
	router) pipeline router router 1 50000 ;;
	router100) pipeline router100 router 100 2000 ;;
	agent) pipeline agent agent 1 40000 ;;
	drain) pipeline drain drain 1 20000 ;;
	*) die "unknown scenario $s" ;;
	esac
done
rm -f "$out/.tmp"

python3 "$here/plot.py" --points "$points" --summary "$summary" --json "$out/results.json" --svg "$out/loss.svg" \
	--note "$(nproc) CPUs, $([ "$quick" = 1 ] && echo quick || echo full) run, ${duration}s per point, $(date -u +%Y-%m-%dT%H:%MZ)"
say "results: $out/results.json, $out/loss.svg, $out/log.txt"
