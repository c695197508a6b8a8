#!/usr/bin/env bash
# drains.sh: throughput of omfirehose's drains inside a private rsyslogd: syslog lines in (imptcp, flat out) ->
# omfirehose -> syslog:// drains (octet-counted TCP) -> a counting sink, for one app with one drain and for the
# same load spread over many apps with one drain each.
#
#   bench/drains.sh [--duration S] [--size B] [--apps N[,N...]] [--buffer N] [--keep]
#
# For each app count (default "1,1000") the script writes a bindings file (app-0 .. app-N-1, each bound to its
# own syslog://127.0.0.1:P drain on one sink), starts rsyslogd (imptcp -> omfirehose with drains.bindingsFile,
# impstats every second), sends RFC 5424 lines whose APP-NAME cycles through the apps (the envelope's source id)
# flat out for --duration seconds (default 10), waits until the sink stops receiving, and prints one row:
#   apps          drains bound (one per app)
#   sent          lines the generator wrote (imptcp pushes back when rsyslog's queue is full, so this is what
#                 rsyslog took)
#   delivered     lines the sink received (octet-counted frames)
#   lines/s       delivered / seconds from the first to the last line at the sink
#   dropped       omfirehose dropped.egress (a drain's buffer overflowing, or a writer losing lines)
#   us/line       rsyslogd's CPU (utime + stime, /proc/PID/stat) over the run, per delivered line: input, queue,
#                 envelope, drains
#   sink us/line  the sink's own CPU per line (python; it competes with rsyslogd for the machine)
# The target is 150,000 lines/s to a single TCP drain. The generator and the sink run on the same machine as
# rsyslogd: on 2 CPUs they take a share of what is measured, so compare rows of one run.
#
# Environment: LGR_BUILD (build tree, default <src>/build), RSYSLOGD (default /usr/sbin/rsyslogd). Everything binds
# 127.0.0.1; the daemon and the work dir are removed on exit (--keep keeps the dir).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src=$(dirname "$here")
build=${LGR_BUILD:-$src/build}
rsyslogd=${RSYSLOGD:-/usr/sbin/rsyslogd}
omf_so=$build/modules/omfirehose/.libs/omfirehose.so

duration=10
size=200
apps_list=1,1000
buffer=10000
keep=0

usage() {
	sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
}

while [ $# -gt 0 ]; do
	case $1 in
	--duration) duration=$2; shift ;;
	--size) size=$2; shift ;;
	--apps) apps_list=$2; shift ;;
	--buffer) buffer=$2; shift ;;
	--keep) keep=1 ;;
	-h|--help) usage; exit 0 ;;
	*) echo "drains.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
	esac
	shift
done

[ -f "$omf_so" ] || { echo "drains.sh: $omf_so is not built" >&2; exit 1; }
W=$(mktemp -d "${TMPDIR:-/tmp}/bench-drains.XXXXXX")
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	if [ "$keep" = 1 ]; then echo "work dir kept: $W" >&2; else rm -rf "$W"; fi
}
trap cleanup EXIT

cat >"$W/tools.py" <<'EOF'
"""The sink (counts octet-counted frames on any number of connections) and the generator."""
import os, resource, selectors, signal, socket, sys, time

def sink(work, nports):
    sel = selectors.DefaultSelector()
    ports = []
    for _ in range(nports):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
        s.listen(1024)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, None)
        ports.append(s.getsockname()[1])
    with open(work + "/ports.tmp", "w") as f:
        f.write("\n".join(map(str, ports)) + "\n")
    os.rename(work + "/ports.tmp", work + "/ports")
    lines, first, last, next_report = 0, 0.0, 0.0, 0.0
    def report():
        ru = resource.getrusage(resource.RUSAGE_SELF)
        with open(work + "/sink.tmp", "w") as f:
            f.write("%d %.6f %.6f %.3f\n" % (lines, first, last, ru.ru_utime + ru.ru_stime))
        os.rename(work + "/sink.tmp", work + "/sink")
    signal.signal(signal.SIGTERM, lambda *a: (report(), sys.exit(0)))
    while True:
        for key, _ in sel.select(0.2):
            if key.data is None:
                c, _ = key.fileobj.accept()
                c.setblocking(False)
                sel.register(c, selectors.EVENT_READ, b"c")
                continue
            try:
                b = key.fileobj.recv(1 << 20)
            except BlockingIOError:
                continue
            if not b:
                sel.unregister(key.fileobj)
                key.fileobj.close()
                continue
            n = b.count(b"\n")  # every frame ends with its line's newline; payloads here have none
            if n:
                now = time.monotonic()
                if lines == 0:
                    first = now
                last = now
                lines += n
        now = time.monotonic()
        if now >= next_report:
            report()
            next_report = now + 0.5

def gen(port, apps, size, duration):
    ts = "2024-11-07T17:20:00.123456Z"
    block = bytearray()
    per = max(1, 4096 // apps) if apps < 4096 else 1
    for i in range(apps):
        for _ in range(per):
            msg = ("app-%d line " % i).ljust(size, "x")
            block += ("<14>1 %s bench app-%d 0 - - %s\n" % (ts, i, msg)).encode()
    nlines = apps * per
    block = bytes(block)
    while len(block) < (1 << 20):
        block = block + block
        nlines *= 2
    s = socket.create_connection(("127.0.0.1", port))
    sent, end = 0, time.monotonic() + duration
    while time.monotonic() < end:
        s.sendall(block)
        sent += nlines
    s.close()
    print(sent)

if __name__ == "__main__":
    if sys.argv[1] == "sink":
        sink(sys.argv[2], int(sys.argv[3]))
    else:
        gen(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]))
EOF

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
stat_of() { grep -E "omfirehose\(127\.0\.0\.1:0\): origin=" "$W/stats.log" | tail -n 1 | sed -n "s/.* $1=\([0-9]*\).*/\1/p"; }

printf '%-6s %10s %10s %10s %9s %8s %13s\n' apps sent delivered lines/s dropped us/line "sink us/line"
IFS=, read -r -a apps_arr <<<"$apps_list"
for apps in "${apps_arr[@]}"; do
	rm -f "$W"/ports "$W"/sink "$W"/stats.log "$W"/in.port "$W"/pid
	python3 "$W/tools.py" sink "$W" "$apps" &
	sink_pid=$!
	pids+=("$sink_pid")
	while [ ! -s "$W/ports" ]; do sleep 0.05; done
	mapfile -t ports <"$W/ports"
	{
		printf '['
		for ((i = 0; i < apps; i++)); do
			[ "$i" -eq 0 ] || printf ','
			printf '{"url":"syslog://127.0.0.1:%s","credentials":[{"cert":"","key":"","ca":"","apps":[{"app_id":"app-%d","hostname":"bench"}]}]}' \
				"${ports[$i]}" "$i"
		done
		printf ']\n'
	} >"$W/bindings.json"
	cat >"$W/rsyslog.conf" <<EOF
global(workDirectory="$W")
module(load="impstats" interval="1" log.syslog="off" log.file="$W/stats.log" format="legacy")
module(load="imptcp")
module(load="$omf_so")
input(type="imptcp" port="0" listenPortFileName="$W/in.port" ruleset="drains")
ruleset(name="drains") {
	action(type="omfirehose" port="0" tls="off" drains.bindingsFile="$W/bindings.json" drains.buffer="$buffer")
}
EOF
	"$rsyslogd" -n -f "$W/rsyslog.conf" -i "$W/pid" >"$W/rsyslogd.out" 2>&1 &
	rs_pid=$!
	pids+=("$rs_pid")
	while [ ! -s "$W/in.port" ]; do sleep 0.05; done
	c0=$(cpu_ticks "$rs_pid")
	sent=$(python3 "$W/tools.py" gen "$(cat "$W/in.port")" "$apps" "$size" "$duration")
	# settled: the sink's count has not moved for a second
	prev=-1
	while :; do
		sleep 1
		cur=$(cut -d' ' -f1 "$W/sink")
		[ "$cur" != "$prev" ] || break
		prev=$cur
	done
	c1=$(cpu_ticks "$rs_pid")
	sleep 1.2 # one more impstats line
	dropped=$(stat_of dropped.egress)
	kill -TERM "$rs_pid"
	wait "$rs_pid" 2>/dev/null || true
	kill -TERM "$sink_pid"
	wait "$sink_pid" 2>/dev/null || true
	read -r delivered first last sink_cpu <"$W/sink"
	python3 - "$apps" "$sent" "$delivered" "$first" "$last" "${dropped:-?}" "$((c1 - c0))" "$(getconf CLK_TCK)" \
		"$sink_cpu" <<'EOF'
import sys
apps, sent, got, first, last, dropped, ticks, hz, sink_cpu = sys.argv[1:]
got = int(got)
secs = float(last) - float(first)
rate = got / secs if secs > 0 else 0
us = int(ticks) / int(hz) * 1e6 / got if got else 0
sus = float(sink_cpu) * 1e6 / got if got else 0
print("%-6s %10s %10d %10.0f %9s %8.2f %13.2f" % (apps, sent, got, rate, dropped, us, sus))
EOF
done
echo "target: >= 150000 lines/s to a single TCP drain"
