#!/usr/bin/env bash
# demo.sh: the README's first command, contrib/run.sh, run to the end without a terminal, twice.
#
# Setup is skipped (--no-setup): this tree is built and the machine set up already, and contrib/setup.sh would
# build build/ (or reconfigure it) under a running `make check`. Everything else is the command a user runs: the
# shipped example configurations validated with rsyslogd -N1, then rendered and started as a router and an agent
# on loopback with free ports, the sample app and the tail. Each run gets its own session (setsid), so "everything
# it started" is every process of that session.
#
# Oracle:
#   - `run.sh --seconds 6` validates both examples, exits 0, and its output holds every log line the sample app
#     emitted (run/demo-app.sent) exactly once, in the cf format with [APP/PROC/WEB/0] OUT, plus counter and
#     gauge lines; then `lgr logs --recent` through the router's HTTPS gateway (Log Cache's read, bearer token)
#     shows those lines again, oldest first, in the same format (indented under "run:");
#   - `run.sh` without a bound runs until SIGINT to its process group (Ctrl-C in a terminal), then exits 130 after
#     showing the app's lines;
#   - after each run no process of its session is left, and the rsyslogds' pid files are gone.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
lgr_init
lgr_need_cli
command -v setsid >/dev/null || lgr_skip "setsid is not installed"

W=$LGR_WORK
DEMO_PID=

# A run.sh still running when the test ends is killed with its whole session.
demo_cleanup() {
	local rc=$?
	[ -n "$DEMO_PID" ] && kill -KILL -- "-$DEMO_PID" 2>/dev/null
	(exit "$rc")
	lgr_cleanup
}
trap demo_cleanup EXIT

# demo NAME ARGS...: starts contrib/run.sh --no-setup ARGS in a session of its own; output in NAME.out / NAME.err.
# A background job of this script starts with SIGINT ignored, which bash cannot trap; python restores the default
# first, so that run.sh sees SIGINT as a foreground job in a terminal does.
demo() {
	local name=$1
	shift
	mkdir -p "$W/$name"
	LGR_BUILDDIR=$LGR_TOP_BUILDDIR LGR_RUN_DIR=$W/$name RSYSLOGD=$RSYSLOGD setsid python3 -c \
		'import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execvp(sys.argv[1], sys.argv[1:])' \
		bash "$LGR_TOP_SRCDIR/contrib/run.sh" --no-setup "$@" >"$W/$name.out" 2>"$W/$name.err" &
	DEMO_PID=$!
}

demo_gone() { ! kill -0 "$DEMO_PID" 2>/dev/null; }
session_empty() { ! ps -eo sid= | grep -qx " *$DEMO_PID"; }

# demo_end NAME STATUS: waits for run.sh to exit with STATUS and for its session to empty.
demo_end() {
	local rc
	lgr_wait_for "run.sh ($1) to exit" demo_gone
	wait "$DEMO_PID"
	rc=$?
	if [ "$rc" -ne "$2" ]; then
		cat "$W/$1.out" "$W/$1.err" >&2
		lgr_fail "run.sh ($1) exited with status $rc, expected $2"
	fi
	lgr_wait_for "every process run.sh ($1) started to end" session_empty
	DEMO_PID=
	for f in router.pid agent.pid; do
		[ ! -e "$W/$1/$f" ] || lgr_fail "run.sh ($1) left $f behind"
	done
}

# shown NAME: every line in NAME/demo-app.sent appears exactly once in NAME.out as cf prints it; at least $2.
shown() {
	local name=$1 min=$2 line n count=0
	while IFS= read -r line; do
		n=$(grep -cE "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{2}[+-][0-9]{4} \[APP/PROC/WEB/0\] OUT $line\$" \
			"$W/$name.out")
		[ "$n" -eq 1 ] || lgr_fail "run.sh ($name) printed \"$line\" $n times, expected once"
		count=$((count + 1))
	done <"$W/$name/demo-app.sent"
	[ "$count" -ge "$min" ] || lgr_fail "the sample app emitted $count lines in run.sh ($name), expected $min or more"
	grep -Eq '\] COUNTER requests delta=1 total=[0-9]+$' "$W/$name.out" || lgr_fail "run.sh ($name) showed no counter"
	grep -Eq '\] GAUGE memory=[0-9]+ bytes$' "$W/$name.out" || lgr_fail "run.sh ($name) showed no gauge"
}

lgr_check "run.sh --seconds 6: the examples pass -N1; the tail shows every line the sample app emitted; exit 0"
demo bounded --seconds 6
demo_end bounded 0
for ex in agent router; do
	grep -q "^run: $ex: contrib/examples/$ex.conf is valid for rsyslogd" "$W/bounded.out" ||
		lgr_fail "run.sh did not validate contrib/examples/$ex.conf"
done
grep -q "^run: the tail showed all [0-9]* log lines the app emitted" "$W/bounded.out" ||
	lgr_fail "run.sh did not report the lines shown"
shown bounded 3
grep -q "^run:   HTTPS gateway on https://127.0.0.1:[0-9]* " "$W/bounded.out" ||
	lgr_fail "run.sh did not name the gateway"
grep -q "^run: lgr logs --recent showed the last [0-9]* log lines the app emitted" "$W/bounded.out" ||
	lgr_fail "run.sh did not show the recent logs: $(grep -A3 'recent' "$W/bounded.out" | head -n 8)"
# recent_shown NAME: the lines --recent printed are the app's, in the order it emitted them, the last one included
recent_shown() {
	sed -n 's/^run:   [0-9T:.+-]* \[APP\/PROC\/WEB\/0\] OUT //p' "$W/$1.out" >"$W/$1.recent"
	[ -s "$W/$1.recent" ] || lgr_fail "run.sh ($1) printed no recent log line"
	tail -n "$(wc -l <"$W/$1.recent")" "$W/$1/demo-app.sent" | diff - "$W/$1.recent" >&2 ||
		lgr_fail "run.sh ($1): the recent lines are not the app's last lines in order"
}
recent_shown bounded
grep -q "connected to 127.0.0.1:[0-9]* (doppler): streaming logs of demo-app" "$W/bounded.err" ||
	lgr_fail "the tail did not report its connection"

lgr_check "run.sh without a bound: SIGINT to its process group (Ctrl-C) stops everything; exit 130"
demo interactive
two_lines() { [ "$(lgr_lines "$W/interactive/demo-app.sent")" -ge 2 ] && shown_quietly; }
shown_quietly() { grep -q "OUT $(tail -n 1 "$W/interactive/demo-app.sent")\$" "$W/interactive.out"; }
lgr_wait_for "the tail to show two of the app's lines" two_lines
kill -INT -- "-$DEMO_PID"
demo_end interactive 130
grep -q "^run: stopped the sample app, the tail, the agent and the router" "$W/interactive.out" ||
	lgr_fail "run.sh did not say it stopped everything"
lgr_pass
