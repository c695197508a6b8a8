# shellcheck shell=bash disable=SC2034,SC2317 # variables are for the tests that source this; checks run through lgr_wait_for
# reliability-lib.sh: helpers shared by tests/integration/reliability-*.sh, sourced after tests/integration/lib.sh
# (and after lgr_init, lgr_bg_init, lgr_need_peer and lgr_pki): an agent and a router rsyslogd on loopback, the TCP
# relay (tests/tools/tcp-relay.js), lgr-load, and impstats reads across daemons.
#
# Environment:
#   LGR_REL_SCALE   multiplies the durations and loads of the scenarios (default 1: the short versions run by
#                   `make check`; bench/reliability.sh runs them longer)
#   LGR_REL_FIGURES file to which each test appends its figures as one line "TEST key=value ..." (optional)

: "${LGR_REL_SCALE:=1}"
REL_TOOLS=$LGR_TOP_SRCDIR/tests/tools
REL_LOAD=$LGR_TOP_BUILDDIR/bench/lgr-load

# rel_need_load: lgr-load must be built.
rel_need_load() { [ -x "$REL_LOAD" ] || lgr_fail "lgr-load is not built ($REL_LOAD)"; }

# rel_figures KEY=VALUE...: prints the test's figures, and appends them to $LGR_REL_FIGURES when set.
rel_figures() {
	lgr_say "figures: $*"
	[ -z "${LGR_REL_FIGURES:-}" ] || printf '%s %s\n' "$LGR_TEST" "$*" >>"$LGR_REL_FIGURES"
}

# rel_relay NAME TARGET_PORT [RATE]: starts tests/tools/tcp-relay.js in front of 127.0.0.1:TARGET_PORT, its output in
# $LGR_WORK/NAME.relay, its rate file $LGR_WORK/NAME.rate (RATE, default 0: no limit); sets REL_RELAY_PORT and
# REL_RELAY_PID. Not for use in $(...).
rel_relay() {
	local name=$1 target=$2 rate=${3:-0}
	printf '%s\n' "$rate" >"$LGR_WORK/$name.rate"
	rm -f "$LGR_WORK/$name.rport"
	node "$REL_TOOLS/tcp-relay.js" --target "127.0.0.1:$target" --port-file "$LGR_WORK/$name.rport" \
		--rate "$rate" --rate-file "$LGR_WORK/$name.rate" >"$LGR_WORK/$name.relay" 2>"$LGR_WORK/$name.relay.err" &
	REL_RELAY_PID=$!
	LGR_BG_PIDS+=("$REL_RELAY_PID")
	lgr_wait_for "relay $name to listen" lgr_has_port "$LGR_WORK/$name.rport"
	REL_RELAY_PORT=$(tr -d ' \n' <"$LGR_WORK/$name.rport")
}

# rel_relay_rate NAME PID RATE: sets a running relay's rate (a number of bytes per second, 0 for no limit, or stop)
# and waits until it says so.
rel_relay_rate() {
	local n
	n=$(grep -c '"event":"rate"' "$LGR_WORK/$1.relay")
	printf '%s\n' "$3" >"$LGR_WORK/$1.rate"
	kill -HUP "$2" || lgr_fail "relay $1 is not running"
	rel_rate_seen() { [ "$(grep -c '"event":"rate"' "$LGR_WORK/$1.relay")" -gt "$2" ]; }
	lgr_wait_for "relay $1 to apply rate $3" rel_rate_seen "$1" "$n"
}

# rel_relay_reset NAME PID: resets (TCP RST) every connection the relay carries; waits until it did, and prints how
# many it reset.
rel_relay_reset() {
	local n
	n=$(grep -c '"event":"reset"' "$LGR_WORK/$1.relay")
	kill -USR1 "$2" || lgr_fail "relay $1 is not running"
	rel_reset_seen() { [ "$(grep -c '"event":"reset"' "$LGR_WORK/$1.relay")" -gt "$2" ]; }
	lgr_wait_for "relay $1 to reset its connections" rel_reset_seen "$1" "$n"
	grep '"event":"reset"' "$LGR_WORK/$1.relay" | tail -n 1 | sed -n 's/.*"connections":\([0-9]*\).*/\1/p'
}

# rel_router_conf FILE: lgr_conf_write for the second (router) daemon: its own work directory and internal log
# (router-internal.log), so that the two daemons do not share rsyslog's state files.
rel_router_conf() {
	lgr_conf_write "$1"
	mkdir -p "$LGR_WORK/router-work"
	sed -i "s|workDirectory=\"$LGR_WORK\"|workDirectory=\"$LGR_WORK/router-work\"|; s|$LGR_WORK/internal.log|$LGR_WORK/router-internal.log|" \
		"$1"
}

# rel_kv LINE KEY: the value of KEY in lgr-load's key=value summary LINE.
rel_kv() { printf '%s\n' "$1" | tr ' ' '\n' | sed -n "s/^$2=//p" | head -n 1; }

# rel_stat_lines FILE NAME_ERE: impstats lines written so far for the object (to wait for fresh ones).
rel_stat_lines() {
	[ -f "$1" ] || { echo 0; return; }
	grep -cE "(^|[: ])$2: origin=" "$1"
}

# rel_settle FILE NAME_ERE N: waits until the object has N more impstats lines than now (N intervals passed).
rel_settle() {
	local n0
	n0=$(rel_stat_lines "$1" "$2")
	rel_lines_over() { [ "$(rel_stat_lines "$1" "$2")" -ge "$3" ]; }
	lgr_wait_for "$3 more impstats reports of $2" rel_lines_over "$1" "$2" $((n0 + $3))
}

# rel_sum FILE NAME_ERE COUNTER...: the sum of the counters in the object's last impstats line (empty when one is
# missing).
rel_sum() {
	local f=$1 o=$2 c v s=0
	shift 2
	for c in "$@"; do
		v=$(lgr_stat "$f" "$o" "$c")
		[ -n "$v" ] || return 0
		s=$((s + v))
	done
	echo "$s"
}
