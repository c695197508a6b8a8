#!/usr/bin/env bash
# imloggregator.sh: ingress throughput of imloggregator (gRPC v2 BatchSender over mutual TLS, role router) in a
# private rsyslogd, against rsyslog's own ceiling on the same machine (imptcp, octet-counted RFC 5424 lines), both
# into a ruleset that only stops, so what is measured is input + rsyslog's main queue, the part every deployment
# pays. The transport alone (lgr-load against lgr-load --sink) is measured too, as a reference.
#
#   bench/imloggregator.sh [--duration S] [--size B] [--streams N] [--batch N] [--types LIST] [--threads N]
#                          [--plain] [--input-params 'k="v" ...'] [--ruleset-params 'k="v" ...'] [--step PCT]
#                          [--rate R] [--no-ceiling] [--no-sink] [--keep]
#
# --rate R measures imloggregator at R envelopes/s only (no flat-out run, no search): what an A/B comparison of two
# builds needs (LGR_BUILD), with the CPU per envelope at the same load. --no-ceiling and --no-sink skip the imptcp and
# the transport-only runs.
#
# --ruleset-params gives the discarding ruleset (both daemons) its own queue, e.g. 'queue.type="Direct"': then the
# thread that submits a message also runs the ruleset and frees the message, instead of rsyslog's main queue worker.
#
# Figures: envelopes (lines) per second that rsyslog accepted, from impstats counters (imloggregator `ingress`
# minus `dropped.ingress`, imptcp `submitted`) over the generator's run, and the generator's acknowledged count;
# CPU microseconds per envelope of rsyslogd (/proc/PID/stat utime + stime) and of the generator (getrusage).
# imloggregator never slows a sender: when rsyslog cannot keep up its drop-oldest ring drops and counts. A figure
# with drops is not a throughput, so when the flat-out run drops, runs at fixed rates (--rate) search for the
# highest without drops, in steps of --step % (see search()); that run's accepted rate is the result.
#
# The bound (see "the bound" below) says how far any input could go with these envelopes: rsyslogd spending on each
# only imptcp's cost per line, plus the $!loggregator tree and the transport's receiving side, beside the generator.
#
# Other processes skew every figure on a small machine: the `other` column says how many CPUs' worth they took
# during each run; only runs where it is near 0 are comparable.
#
# Environment: LGR_BUILD (build tree, default <src>/build), RSYSLOGD (default /usr/sbin/rsyslogd).
# Everything binds 127.0.0.1; the daemons, generators and the work dir are removed on exit (--keep keeps the dir).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src=$(dirname "$here")
build=${LGR_BUILD:-$src/build}
rsyslogd=${RSYSLOGD:-/usr/sbin/rsyslogd}
load=$build/bench/lgr-load
module=$build/modules/imloggregator/.libs/imloggregator.so

duration=20
size=200
streams=5
batch=100
types=log
threads=1
plain=0
input_params=
ruleset_params=
step=10
rate=0
ceiling_run=1
sink=1
sink_us=
keep=0

usage() {
	sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
}

while [ $# -gt 0 ]; do
	case $1 in
	--duration) duration=$2; shift ;;
	--size) size=$2; shift ;;
	--streams) streams=$2; shift ;;
	--batch) batch=$2; shift ;;
	--types) types=$2; shift ;;
	--threads) threads=$2; shift ;;
	--plain) plain=1 ;;
	--input-params) input_params=$2; shift ;;
	--ruleset-params) ruleset_params=$2; shift ;;
	--step) step=$2; shift ;;
	--rate) rate=$2; shift ;;
	--no-ceiling) ceiling_run=0 ;;
	--no-sink) sink=0 ;;
	--keep) keep=1 ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; exit 2 ;;
	esac
	shift
done

say() { printf 'imloggregator.sh: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

[ -x "$load" ] || die "no $load: make -C $build bench/lgr-load"
[ -x "$rsyslogd" ] || die "no rsyslogd at $rsyslogd"
clk_tck=$(getconf CLK_TCK)

work=$(mktemp -d "${TMPDIR:-/tmp}/lgr-bench.XXXXXX")
rs_pid=
bg_pids=()

cleanup() {
	local rc=$? p
	for p in "${bg_pids[@]}" $rs_pid; do
		kill -TERM "$p" 2>/dev/null || true
	done
	for p in "${bg_pids[@]}" $rs_pid; do
		wait "$p" 2>/dev/null || true
	done
	if [ "$keep" = 1 ]; then say "work dir kept: $work"; else rm -rf "$work"; fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

"$src/contrib/gen-pki.sh" "$work/pki" >/dev/null
pki=$work/pki
client_tls=(--tls --ca "$pki/ca.crt" --cert "$pki/metron.crt" --key "$pki/metron.key" --server-name doppler)
[ "$plain" = 1 ] && client_tls=()
gen_opts=(--streams "$streams" --batch "$batch" --size "$size" --types "$types" --threads "$threads")

# ---- the private daemon ------------------------------------------------------------------------------------------

# conf_write FILE TAG: the common part (work dir, impstats every second in JSON, internal messages to a file, the
# discarding ruleset), then the inputs from stdin.
conf_write() {
	local dir=$work/$2
	mkdir -p "$dir"
	{
		printf 'global(workDirectory="%s" processInternalMessages="on")\n' "$dir"
		printf 'module(load="impstats" interval="1" format="json" log.syslog="off" log.file="%s/stats.json")\n' "$dir"
		# shellcheck disable=SC2016 # a literal rsyslog property
		printf 'if $programname == "rsyslogd" then {\n\taction(type="omfile" file="%s/internal.log")\n\tstop\n}\n' "$dir"
		printf 'ruleset(name="discard" %s) {\n\tstop\n}\n' "$ruleset_params"
		cat
	} >"$1"
}

# rs_start CONF PORTFILE: validates CONF, starts rsyslogd in the foreground mode in the background and waits for
# PORTFILE. Sets rs_pid, rs_dir, rs_port. Returns 1 (daemon stopped) when the port does not appear.
rs_start() {
	local conf=$1 portfile=$2
	rs_dir=$(dirname "$portfile")
	"$rsyslogd" -N1 -f "$conf" >"$rs_dir/n1.out" 2>&1 || { cat "$rs_dir/n1.out" >&2; return 1; }
	"$rsyslogd" -n -f "$conf" -i "$rs_dir/rsyslogd.pid" >"$rs_dir/rsyslogd.out" 2>&1 &
	rs_pid=$!
	for _ in $(seq 1 150); do
		if [ -s "$portfile" ] && grep -q '"name"' "$rs_dir/stats.json" 2>/dev/null; then
			rs_port=$(tr -dc 0-9 <"$portfile")
			return 0
		fi
		kill -0 "$rs_pid" 2>/dev/null || break
		sleep 0.1
	done
	say "no port in $portfile; rsyslogd output and internal log:"
	cat "$rs_dir/rsyslogd.out" "$rs_dir/internal.log" 2>/dev/null | tail -n 20 >&2
	rs_stop
	return 1
}

rs_stop() {
	[ -n "$rs_pid" ] || return 0
	kill -TERM "$rs_pid" 2>/dev/null || true
	for _ in $(seq 1 100); do
		kill -0 "$rs_pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$rs_pid" 2>/dev/null || true
	wait "$rs_pid" 2>/dev/null || true
	rs_pid=
}

# CPU ticks (utime + stime) of rsyslogd; the fields after the command name, which may hold spaces.
rs_ticks() {
	sed -E 's/^.*\) //' "/proc/$rs_pid/stat" | awk '{ print $12 + $13 }'
}

# stat_last SELECT KEY: the last value of KEY in stats lines containing SELECT.
stat_last() {
	grep -F -- "$1" "$rs_dir/stats.json" | tail -n 1 | sed -n "s/.*\"$2\": \([0-9]*\).*/\1/p"
}

stat_lines() { wc -l <"$rs_dir/stats.json"; }

# stat_median SELECT KEY DROPKEY FROM TO: the median of the per-second increments of KEY minus DROPKEY (both of the
# same stats line; DROPKEY may be empty) between stats lines FROM and TO, leaving out the first and the last
# (partial seconds).
stat_median() {
	sed -n "$4,$5p" "$rs_dir/stats.json" | grep -F -- "$1" |
		awk -v key="\"$2\": " -v dkey="${3:+\"$3\": }" '
		function value(k,   i) {
			i = index($0, k)
			return i == 0 ? 0 : substr($0, i + length(k)) + 0
		}
		{ cur = value(key) - (dkey == "" ? 0 : value(dkey)) }
		NR > 1 { d[n++] = cur - prev }
		{ prev = cur }
		END {
			m = 0
			for (i = 1; i < n - 1; i++) v[m++] = d[i]
			if (m == 0) { print 0; exit }
			for (i = 0; i < m; i++) for (j = i + 1; j < m; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
			print v[int(m / 2)]
		}'
}

# settle SELECT KEY: waits (at most 20 s) until the main queue is empty and KEY has not moved for two emissions.
settle() {
	local prev=-1 same=0 v q
	for _ in $(seq 1 80); do
		sleep 0.25
		v=$(stat_last "$1" "$2")
		q=$(stat_last '"name": "main Q"' size)
		if [ "$v" = "$prev" ] && [ "${q:-1}" = 0 ]; then
			same=$((same + 1))
			[ "$same" -ge 8 ] && return 0
		else
			same=0
		fi
		prev=$v
	done
}

# Busy CPU ticks of the whole machine, to see how much else ran during a measurement.
busy_ticks() {
	awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat
}

now_s() { date +%s.%N; }

# field LINE KEY: the value of KEY=... in a summary line.
field() { printf '%s\n' "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }

# ---- one measured run --------------------------------------------------------------------------------------------

# measure SELECT COUNTER DROPSEL DROPKEY -- lgr-load arguments: runs the generator against the running daemon
# and sets: m_gen (its summary line), m_accepted (COUNTER delta, minus drops), m_drops, m_rate (accepted / the
# generator's seconds), m_steady (median per-second rate), m_rs_us and m_gen_us (CPU us per envelope), m_qfull,
# m_other (CPUs' worth used by other processes meanwhile: figures are only comparable when it is near 0).
measure() {
	local sel=$1 key=$2 dsel=$3 dkey=$4 c0 c1 d0 d1 q0 q1 t0 t1 l0 l1 secs b0 b1 w0 w1
	shift 5
	c0=$(stat_last "$sel" "$key"); c0=${c0:-0}
	d0=0; [ -n "$dsel" ] && d0=$(stat_last "$dsel" "$dkey") && d0=${d0:-0}
	q0=$(stat_last '"name": "main Q"' discarded.full); q0=${q0:-0}
	l0=$(stat_lines)
	t0=$(rs_ticks)
	b0=$(busy_ticks)
	w0=$(now_s)
	m_gen=$("$load" "$@") || say "lgr-load ended with an error: $m_gen"
	l1=$(stat_lines)
	settle "$sel" "$key"
	t1=$(rs_ticks)
	b1=$(busy_ticks)
	w1=$(now_s)
	c1=$(stat_last "$sel" "$key"); c1=${c1:-0}
	d1=0; [ -n "$dsel" ] && d1=$(stat_last "$dsel" "$dkey") && d1=${d1:-0}
	q1=$(stat_last '"name": "main Q"' discarded.full); q1=${q1:-0}
	m_drops=$((d1 - d0))
	m_qfull=$((q1 - q0))
	m_accepted=$((c1 - c0 - m_drops))
	secs=$(field "$m_gen" seconds)
	m_rate=$(awk -v a="$m_accepted" -v s="$secs" 'BEGIN { printf "%d", (s > 0 ? a / s : 0) }')
	m_steady=$(stat_median "$sel" "$key" "$dkey" "$l0" "$l1")
	m_rs_us=$(awk -v t=$((t1 - t0)) -v hz="$clk_tck" -v n="$m_accepted" \
		'BEGIN { printf "%.2f", (n > 0 ? t * 1e6 / hz / n : 0) }')
	m_gen_us=$(field "$m_gen" cpu_us_per_envelope)
	m_other=$(awk -v b=$((b1 - b0)) -v r=$((t1 - t0)) -v g="$(field "$m_gen" cpu_seconds)" -v hz="$clk_tck" \
		-v w0="$w0" -v w1="$w1" 'BEGIN { o = ((b - r) / hz - g) / (w1 - w0); printf "%.2f", (o > 0 ? o : 0) }')
	say "  generator: $m_gen"
	say "  rsyslogd: accepted=$m_accepted dropped=$m_drops queue_discarded=$m_qfull rate=$m_rate/s" \
		"steady=$m_steady/s cpu=$(awk -v t=$((t1 - t0)) -v hz="$clk_tck" 'BEGIN { printf "%.2f", t / hz }')s" \
		"($m_rs_us us/envelope); other processes: $m_other CPUs"
}

# probe RATE: one run at RATE; true when nothing was dropped and every stream ended OK.
probe() {
	local short=$((duration / 2 > 5 ? duration / 2 : 5))
	say "imloggregator: --rate $1 for $short s"
	measure "$sel" ingress "$sel" dropped.ingress -- --addr "127.0.0.1:$rs_port" "${client_tls[@]}" \
		"${gen_opts[@]}" --duration "$short" --rate "$1"
	row "imloggregator --rate $1" "$m_rate" "$m_steady" "$m_drops" "$m_rs_us" "$m_gen_us" "$m_other"
	[ "$m_drops" = 0 ] && [ "$(field "$m_gen" failed_streams)" = 0 ]
}

# search: the highest rate without drops, within --step %. Flat out, the input decodes envelopes that are then
# dropped, so what it accepted then is only a starting point: from there the rate goes down in steps until a run
# has no drops, or up until one has, and the last run without drops gives the figure (its accepted rate).
search() {
	local rate=$m_steady
	[ "$rate" -gt 0 ] || rate=$m_rate
	if probe "$rate"; then
		took
		for _ in 1 2 3 4 5 6 7 8; do
			rate=$((rate * (100 + step) / 100))
			probe "$rate" || return 0
			took
		done
		return 0
	fi
	for _ in 1 2 3 4 5 6 7 8; do
		rate=$((rate * (100 - step) / 100))
		[ "$rate" -gt 0 ] || break
		if probe "$rate"; then
			took
			return 0
		fi
	done
	iml_note="drops at every rate tried"
}

rows=()
row() { rows+=("$(printf '%-34s %12s %12s %10s %10s %10s %8s' "$@")"); }

# ---- imloggregator ---------------------------------------------------------------------------------------------

iml_rate=0
iml_gen_us=
# took: the run just measured gives the figure (its accepted rate, and the generator's CPU per envelope for the bound).
took() {
	iml_rate=$m_rate
	iml_gen_us=$m_gen_us
}
iml_note=
if [ ! -f "$module" ]; then
	iml_note="module not built ($module)"
else
	conf=$work/iml.conf
	if [ "$plain" = 1 ]; then
		tls='tls="off"'
	else
		tls="tls=\"on\" tls.cacert=\"$pki/ca.crt\" tls.mycert=\"$pki/doppler.crt\" tls.myprivkey=\"$pki/doppler.key\""
	fi
	conf_write "$conf" iml <<EOF
module(load="$module")
input(type="imloggregator" address="127.0.0.1" port="0" listenPortFileName="$work/iml/grpc.port" role="router"
	ruleset="discard" $tls $input_params)
EOF
	say "imloggregator: starting rsyslogd"
	if ! rs_start "$conf" "$work/iml/grpc.port"; then
		iml_note="no listener: the input wrote no port file"
	else
		sel='"origin": "imloggregator"'
		if [ "$rate" -gt 0 ]; then
			probe "$rate" && took
		else
			say "imloggregator: flat out for $duration s ($streams streams, batch $batch, $size-byte payloads," \
				"$types)"
			measure "$sel" ingress "$sel" dropped.ingress -- --addr "127.0.0.1:$rs_port" "${client_tls[@]}" \
				"${gen_opts[@]}" --duration "$duration"
			acked=$(field "$m_gen" acked)
			failed=$(field "$m_gen" failed_streams)
			if [ "${acked:-0}" = 0 ] || [ "${failed:-1}" != 0 ]; then
				iml_note="the calls failed: $m_gen"
			fi
			row "imloggregator flat out" "$m_rate" "$m_steady" "$m_drops" "$m_rs_us" "$m_gen_us" "$m_other"
			if [ -z "$iml_note" ] && [ "$m_drops" = 0 ]; then
				took
			elif [ -z "$iml_note" ]; then
				search
			fi
		fi
		rs_stop
	fi
fi
[ -n "$iml_note" ] && say "imloggregator: $iml_note"

# ---- rsyslog's ceiling: imptcp -----------------------------------------------------------------------------------

ceiling=0
if [ "$ceiling_run" = 1 ]; then
	conf=$work/tcp.conf
	conf_write "$conf" tcp <<-EOF
	module(load="imptcp")
	input(type="imptcp" address="127.0.0.1" port="0" listenPortFileName="$work/tcp/tcp.port" ruleset="discard")
	EOF
	say "imptcp: starting rsyslogd"
	rs_start "$conf" "$work/tcp/tcp.port" || die "rsyslogd with imptcp did not start"
	say "imptcp: octet-counted RFC 5424 lines flat out for $duration s ($streams connections, $size-byte messages)"
	measure '"name": "imptcp(' submitted '' '' -- --syslog --addr "127.0.0.1:$rs_port" --streams "$streams" \
		--size "$size" --duration "$duration"
	ceiling=$m_rate
	ceiling_us=$m_rs_us
	row "imptcp (rsyslog's ceiling)" "$m_rate" "$m_steady" "$m_qfull" "$m_rs_us" "$m_gen_us" "$m_other"
	rs_stop
fi

# ---- the transport alone ---------------------------------------------------------------------------------------

if [ "$sink" = 1 ]; then
	sink_tls=(--tls --ca "$pki/ca.crt" --cert "$pki/doppler.crt" --key "$pki/doppler.key")
	[ "$plain" = 1 ] && sink_tls=()
	sd=$((duration < 10 ? duration : 10))
	"$load" --sink --addr 127.0.0.1:0 --port-file "$work/sink.port" "${sink_tls[@]}" >"$work/sink.out" 2>&1 &
	bg_pids+=($!)
	for _ in $(seq 1 50); do [ -s "$work/sink.port" ] && break; sleep 0.1; done
	say "transport: lgr-load against lgr-load --sink for $sd s"
	gen=$("$load" --addr "127.0.0.1:$(cat "$work/sink.port")" "${client_tls[@]}" "${gen_opts[@]}" \
		--duration "$sd") || true
	kill -TERM "${bg_pids[0]}"
	wait "${bg_pids[0]}" 2>/dev/null || true
	bg_pids=()
	sk=$(grep '^mode=sink' "$work/sink.out" || true)
	say "  generator: $gen"
	say "  sink: $sk"
	sink_us=$(field "$sk" cpu_us_per_envelope)
	row "transport only (lgr-load --sink)" "$(field "$gen" envelopes_per_s)" - 0 "$sink_us" \
		"$(field "$gen" cpu_us_per_envelope)" -
fi

# ---- the bound ---------------------------------------------------------------------------------------------------
# What no input carrying these envelopes could beat on this machine: rsyslogd spending on each envelope only what it
# spent on each imptcp line (reading, parsing, the message, the queue, the ruleset: the work that the envelope's
# mapping replaces, and more), plus the $!loggregator tree that config.md's mapping requires (bench_codec: built
# from the wire with shared strings, and released; one log envelope with five tags), plus the receiving side of the
# transport (the sink above), while the generator spends what it spent per envelope in the run that gave the figure.
# The machine's CPUs divided by that sum is the bound.

bound_rate=0
if [ "$ceiling" -gt 0 ] && [ -n "$sink_us" ] && [ -n "$iml_gen_us" ] && [ -x "$build/bench/bench_codec" ]; then
	tree_ns=$("$build/bench/bench_codec" --only "with shared strings" | awk '$4 == "log" { print $6 }')
	if [ -n "$tree_ns" ]; then
		bound_us=$(awk -v c="$ceiling_us" -v t="$tree_ns" -v s="$sink_us" \
			'BEGIN { printf "%.2f", c + t / 1000 + s }')
		bound_rate=$(awk -v b="$bound_us" -v g="$iml_gen_us" -v n="$(nproc)" 'BEGIN { printf "%d", n * 1e6 / (b + g) }')
		row "bound (imptcp + tree + transport)" "$bound_rate" - - "$bound_us" "$iml_gen_us" -
	fi
fi

# ---- report ------------------------------------------------------------------------------------------------------

echo
printf '%-34s %12s %12s %10s %10s %10s %8s\n' "run ($(nproc) CPUs, ${duration}s)" "per s (avg)" "per s (med)" \
	"drops" "rs us/env" "gen us/env" "other"
printf '%s\n' "${rows[@]}"
echo
if [ "$iml_rate" -gt 0 ] && [ "$ceiling" -gt 0 ]; then
	pct=$(awk -v a="$iml_rate" -v c="$ceiling" 'BEGIN { printf "%.0f", 100 * a / c }')
	echo "imloggregator without drops: $iml_rate envelopes/s = $pct % of the imptcp ceiling ($ceiling lines/s)"
	verdict() { if [ "$1" -ge "$2" ]; then echo met; else echo "NOT met"; fi; }
	if [ "$rate" -gt 0 ]; then
		echo "(a run at --rate $rate, not a throughput: the targets are judged without --rate)"
	else
		echo "target >= 300000 envelopes/s: $(verdict "$iml_rate" 300000); target >= 70 % of the ceiling:" \
			"$(verdict "$pct" 70)"
	fi
	if [ "$bound_rate" -gt 0 ]; then
		echo "bound: $bound_rate envelopes/s = $(awk -v a="$bound_rate" -v c="$ceiling" \
			'BEGIN { printf "%.0f", 100 * a / c }') % of the ceiling for any input that spent no more than imptcp" \
			"per line plus the tree and the transport; imloggregator reached" \
			"$(awk -v a="$iml_rate" -v b="$bound_rate" 'BEGIN { printf "%.0f", 100 * a / b }') % of the bound"
	fi
elif [ "$iml_rate" -gt 0 ]; then
	echo "imloggregator without drops: $iml_rate envelopes/s (no ceiling measured)"
else
	[ "$rate" -gt 0 ] && [ -z "$iml_note" ] && iml_note="drops at --rate $rate"
	echo "imloggregator: no valid figure (${iml_note:-none}); imptcp ceiling: $ceiling lines/s"
fi
