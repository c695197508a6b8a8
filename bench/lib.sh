# bench/lib.sh: what the benchmark scripts that run rsyslogd daemons share. Sourced, never run. The sourcing script
# sets prog (its name, for messages), rsyslogd, src, plain (1: h2c), keep (1: keep the work dir) and, before the
# trap fires, work (the work dir) and pids (the processes to stop on exit, a space-separated list it appends to).
# shellcheck shell=bash disable=SC2154 # prog, keep, plain, pki, rsyslogd come from the sourcing script

say() { printf '%s: %s\n' "$prog" "$*" >&2; }
die() {
	say "$*"
	exit 1
}

# cleanup: the EXIT trap: stops every process in pids, removes the work dir unless --keep.
cleanup() {
	local rc=$? p
	for p in $pids; do
		kill -TERM "$p" 2>/dev/null || true
	done
	for p in $pids; do
		wait "$p" 2>/dev/null || true
	done
	if [ -n "${work:-}" ]; then
		if [ "$keep" = 1 ]; then say "work dir kept: $work"; else rm -rf "$work"; fi
	fi
	exit "$rc"
}

# tls_params ROLE: the TLS parameters of a listener or a client with ROLE's certificate from $pki.
tls_params() {
	if [ "$plain" = 1 ]; then
		printf 'tls="off"'
	else
		printf 'tls.cacert="%s" tls.mycert="%s/%s.crt" tls.myprivkey="%s/%s.key"' "$pki/ca.crt" "$pki" "$1" "$pki" "$1"
	fi
}

# conf_write FILE DIR: work directory, impstats every second in JSON, internal messages to a file, then stdin.
conf_write() {
	mkdir -p "$2"
	{
		printf 'global(workDirectory="%s" processInternalMessages="on")\n' "$2"
		printf 'module(load="impstats" interval="1" format="json" log.syslog="off" log.file="%s/stats.json")\n' "$2"
		# shellcheck disable=SC2016 # a literal rsyslog property
		printf 'if $programname == "rsyslogd" then {\n\taction(type="omfile" file="%s/internal.log")\n\tstop\n}\n' "$2"
		cat
	} >"$1"
}

# start CONF DIR: validates CONF, starts rsyslogd in the background, waits for DIR/grpc.port and the first stats
# line. Sets started (the pid) and adds it to pids.
start() {
	local conf=$1 dir=$2
	"$rsyslogd" -N1 -f "$conf" >"$dir/n1.out" 2>&1 || { tail -n 5 "$dir/n1.out" >&2; return 1; }
	"$rsyslogd" -n -f "$conf" -i "$dir/rsyslogd.pid" >"$dir/rsyslogd.out" 2>&1 &
	started=$!
	pids="$pids $started"
	for _ in $(seq 1 150); do
		if [ -s "$dir/grpc.port" ] && grep -q '"name"' "$dir/stats.json" 2>/dev/null; then
			return 0
		fi
		kill -0 "$started" 2>/dev/null || break
		sleep 0.1
	done
	cat "$dir/rsyslogd.out" "$dir/internal.log" 2>/dev/null | tail -n 20 >&2
	kill -KILL "$started" 2>/dev/null || true
	wait "$started" 2>/dev/null || true
	return 1
}

# stat DIR ORIGIN KEY: the last value of KEY in DIR's stats lines of ORIGIN (0 when absent).
stat() {
	local v
	v=$(grep -F "\"origin\": \"$2\"" "$1/stats.json" | tail -n 1 | sed -n "s/.*\"$3\": \([0-9]*\).*/\1/p")
	echo "${v:-0}"
}

# ticks PID: its user + system CPU ticks (0 without a pid); rss_mib PID: its VmRSS in MiB (- without a pid).
ticks() { if [ -n "$1" ]; then sed -E 's/^.*\) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; else echo 0; fi; }
rss_mib() { if [ -n "$1" ]; then awk '$1 == "VmRSS:" { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; else echo -; fi; }
# busy_ticks: CPU ticks of the whole machine that were not idle.
busy_ticks() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; }
# field LINE KEY: the value of the first KEY=value of an lgr-load summary line.
field() { printf '%s\n' "$1" | tr ' ' '\n' | sed -n "s/^$2=//p" | head -n 1; }

# passes RATE: runs point RATE (the script's own: it sets p_loss, in %) repeat times; true when the median loss is
# below loss_max (of an even number of runs, the higher of the middle two).
passes() {
	local losses=() i med
	for ((i = 0; i < repeat; i++)); do
		say "offered rate $1 for $duration s (run $((i + 1)) of $repeat)"
		point "$1"
		losses+=("$p_loss")
	done
	med=$(printf '%s
' "${losses[@]}" | sort -g | sed -n "$((repeat / 2 + 1))p")
	awk -v l="$med" -v m="$loss_max" 'BEGIN { exit !(l < m) }'
}

# search_best: sets best, the highest passing rate: of the listed $rates when given, else from $from up by 25 % while
# points pass (up to $max), then bisecting between the best passing and the lowest failing rate until they are
# within $precision %.
search_best() {
	local lo=0 hi=0 rate=$from r
	best=0
	if [ -n "$rates" ]; then
		for r in ${rates//,/ }; do
			passes "$r" && [ "$r" -gt "$best" ] && best=$r
		done
		return 0
	fi
	for _ in $(seq 1 20); do
		if passes "$rate"; then
			lo=$rate
			if [ "$hi" = 0 ]; then
				rate=$((rate * 5 / 4))
				[ "$rate" -le "$max" ] || break
			else
				rate=$(((lo + hi) / 2))
			fi
		else
			hi=$rate
			if [ "$lo" = 0 ]; then rate=$((rate * 7 / 10)); else rate=$(((lo + hi) / 2)); fi
			[ "$rate" -gt 1000 ] || break
		fi
		if [ "$lo" -gt 0 ] && [ "$hi" -gt 0 ] && [ $(((hi - lo) * 100)) -le $((lo * precision)) ]; then
			break
		fi
	done
	best=$lo
}
