# shellcheck shell=bash disable=SC2016,SC2034 # configs hold literal $properties; variables are for the tests
# shellcheck disable=SC2119,SC2317 # lgr_init takes no script arguments; checks run through lgr_wait_for
# lib.sh: harness for integration tests that run a private Debian rsyslogd with the built modules.
#
# Sourced by tests/integration/*.sh (bash). A test calls lgr_init first, writes its config with lgr_conf_write,
# starts the daemon with lgr_start (which validates the config with -N1 first), waits for conditions with
# lgr_wait_for (bounded polling, never a fixed sleep), and ends with lgr_stop and lgr_pass. On exit, whatever
# happened, the daemon it started is killed and the private work dir removed (LGR_KEEP=1 keeps it).
#
# Environment (set by `make check`; defaults work from a built tree):
#   LGR_TOP_SRCDIR, LGR_TOP_BUILDDIR   source and build trees (default: two levels above this file)
#   RSYSLOGD                            the daemon (default /usr/sbin/rsyslogd)
#   LGR_RSYSLOG_SDK                     the configured rsyslog source the modules were built against
#   LGR_VALGRIND=1                      run rsyslogd under valgrind; any error or definite leak fails the test
#   LGR_TIMEOUT                         seconds each wait may take (default 30; multiplied by 5 under valgrind)
#   LGR_KEEP=1                          keep the work dir for inspection
#
# Exit codes of a test: 0 pass, 1 fail, 77 skip (only when something needed cannot run at all here).

lgr_here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${LGR_TOP_SRCDIR:=$(cd "$lgr_here/../.." && pwd)}"
: "${LGR_TOP_BUILDDIR:=$LGR_TOP_SRCDIR}"
: "${RSYSLOGD:=/usr/sbin/rsyslogd}"
: "${LGR_VALGRIND:=0}"
: "${LGR_TIMEOUT:=30}"
: "${LGR_KEEP:=0}"

LGR_TEST=$(basename "$0" .sh)
LGR_WORK=
LGR_PORT=
LGR_PID=
LGR_PIDFILE=

lgr_say() { printf '%s: %s\n' "$LGR_TEST" "$*"; }
lgr_check() { printf '%s: checking %s\n' "$LGR_TEST" "$*"; }

# Prints the end of every log the test produced, so a failure in `make check` can be diagnosed from its .log.
lgr_dump_logs() {
	local f
	[ -n "$LGR_WORK" ] && [ -d "$LGR_WORK" ] || return 0
	for f in "$LGR_WORK"/rsyslogd.out "$LGR_WORK"/internal.log "$LGR_WORK"/valgrind.log; do
		[ -s "$f" ] || continue
		printf -- '----- %s (last 60 lines)\n' "${f##*/}"
		tail -n 60 "$f"
	done
	printf -- '-----\n'
}

lgr_fail() {
	printf '%s: FAIL: %s\n' "$LGR_TEST" "$*" >&2
	lgr_dump_logs >&2
	exit 1
}

lgr_skip() {
	printf '%s: SKIP: %s\n' "$LGR_TEST" "$*"
	exit 77
}

lgr_pass() {
	lgr_say "PASS"
	exit 0
}

lgr_cleanup() {
	local rc=$?
	if [ -n "$LGR_PID" ] && kill -0 "$LGR_PID" 2>/dev/null; then
		kill -KILL "$LGR_PID" 2>/dev/null
		wait "$LGR_PID" 2>/dev/null
	fi
	LGR_PID=
	if [ -n "$LGR_WORK" ] && [ -d "$LGR_WORK" ]; then
		if [ "$LGR_KEEP" = 1 ]; then
			printf '%s: work dir kept: %s\n' "$LGR_TEST" "$LGR_WORK" >&2
		else
			rm -rf "$LGR_WORK"
		fi
	fi
	exit "$rc"
}

# Seconds a wait may take.
lgr_timeout() {
	if [ "$LGR_VALGRIND" = 1 ]; then echo $((LGR_TIMEOUT * 5)); else echo "$LGR_TIMEOUT"; fi
}

# lgr_module NAME: the path of a built module, e.g. lgr_module omfirehose.
lgr_module() {
	printf '%s/modules/%s/.libs/%s.so\n' "$LGR_TOP_BUILDDIR" "$1" "$1"
}

# lgr_init [--no-modules]: makes the work dir, installs the cleanup, checks that the daemon and (unless told
# otherwise) the three built modules are there.
lgr_init() {
	local m
	trap lgr_cleanup EXIT
	trap 'exit 1' INT TERM HUP
	[ -x "$RSYSLOGD" ] || lgr_skip "no rsyslogd at $RSYSLOGD"
	if [ "${1:-}" != --no-modules ]; then
		for m in imloggregator omdoppler omfirehose; do
			[ -f "$(lgr_module "$m")" ] || lgr_fail "module $m is not built ($(lgr_module "$m"))"
		done
	fi
	if [ "$LGR_VALGRIND" = 1 ]; then
		command -v valgrind >/dev/null || lgr_skip "LGR_VALGRIND=1 but valgrind is not installed"
	fi
	LGR_WORK=$(mktemp -d "${TMPDIR:-/tmp}/lgr-$LGR_TEST.XXXXXX") || lgr_fail "cannot make a work dir"
	LGR_PIDFILE=$LGR_WORK/rsyslogd.pid
}

# lgr_conf_write FILE: writes FILE from stdin, after a preamble that keeps the daemon private: its own work
# directory, internal messages processed (so module errors reach a file) and written to $LGR_WORK/internal.log
# before anything else sees them.
lgr_conf_write() {
	{
		printf 'global(workDirectory="%s" processInternalMessages="on")\n' "$LGR_WORK"
		printf 'if $programname == "rsyslogd" or $programname == "rsyslogd-pstats" then {\n'
		printf '\tif $programname == "rsyslogd" then action(type="omfile" file="%s/internal.log")\n' "$LGR_WORK"
		printf '\tstop\n}\n'
		cat
	} >"$1"
}

# lgr_n1 CONF: runs `rsyslogd -N1 -f CONF` and returns its status, its output in LGR_N1_OUT. Under LGR_VALGRIND=1
# the run is under valgrind too (config parsing and its error paths must not leak), and a valgrind report fails
# the test whatever rsyslogd's verdict.
lgr_n1() {
	local rc vlog
	if [ "$LGR_VALGRIND" = 1 ]; then
		vlog=$(mktemp "$LGR_WORK/valgrind-n1.XXXXXX")
		LGR_N1_OUT=$(valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
			--suppressions="$lgr_here/valgrind.supp" --log-file="$vlog" "$RSYSLOGD" -N1 -f "$1" 2>&1)
		rc=$?
		if ! lgr_valgrind_clean "$vlog"; then
			cat "$vlog" >&2
			lgr_fail "valgrind reported errors in rsyslogd -N1 -f $1"
		fi
	else
		LGR_N1_OUT=$("$RSYSLOGD" -N1 -f "$1" 2>&1)
		rc=$?
	fi
	return "$rc"
}

# lgr_validate CONF: rsyslogd -N1 must accept CONF.
lgr_validate() {
	lgr_n1 "$1" || { printf '%s\n' "$LGR_N1_OUT" >&2; lgr_fail "rsyslogd -N1 rejects $1"; }
}

# lgr_wait_for WHAT CMD...: polls CMD until it succeeds, at most lgr_timeout seconds; fails the test with WHAT
# otherwise. Also fails at once if the daemon died meanwhile and CMD still fails (asked again: the daemon may have
# ended between the two looks, as it does when CMD waits for its exit).
lgr_wait_for() {
	local what=$1 deadline
	shift
	deadline=$((SECONDS + $(lgr_timeout)))
	while ! "$@"; do
		if [ -n "$LGR_PID" ] && ! kill -0 "$LGR_PID" 2>/dev/null; then
			"$@" && return 0
			lgr_fail "rsyslogd exited while waiting for $what"
		fi
		[ "$SECONDS" -lt "$deadline" ] || lgr_fail "timed out after $(lgr_timeout)s waiting for $what"
		sleep 0.05
	done
}

lgr_nonempty() { [ -s "$1" ]; }

# lgr_wait_port FILE: waits until FILE (a listenPortFileName) holds a port number and sets LGR_PORT to it. Not
# for use in $(...): a failure must end the test, not a subshell.
lgr_wait_port() {
	lgr_wait_for "a port number in $1" lgr_has_port "$1"
	LGR_PORT=$(tr -d ' \n' <"$1")
}
lgr_has_port() { [ -s "$1" ] && grep -Eqx '[[:space:]]*[1-9][0-9]*[[:space:]]*' "$1"; }

# lgr_start CONF: validates CONF, starts a private rsyslogd in the foreground mode (in the background of this
# shell) and waits until it wrote its pid file.
# lgr_spawn CONF PIDFILE N: starts rsyslogd in the background (under valgrind with LGR_VALGRIND=1), its output in
# rsyslogdN.out and valgrind's in valgrindN.log; the pid in LGR_SPAWNED.
lgr_spawn() {
	local conf=$1 pidfile=$2 n=$3
	if [ "$LGR_VALGRIND" = 1 ]; then
		valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
			--suppressions="$lgr_here/valgrind.supp" --log-file="$LGR_WORK/valgrind$n.log" \
			"$RSYSLOGD" -n -f "$conf" -i "$pidfile" >"$LGR_WORK/rsyslogd$n.out" 2>&1 &
	else
		"$RSYSLOGD" -n -f "$conf" -i "$pidfile" >"$LGR_WORK/rsyslogd$n.out" 2>&1 &
	fi
	LGR_SPAWNED=$!
}

lgr_start() {
	local conf=$1
	lgr_validate "$conf"
	rm -f "$LGR_PIDFILE"
	lgr_spawn "$conf" "$LGR_PIDFILE" ""
	LGR_PID=$LGR_SPAWNED
	lgr_wait_for "rsyslogd to write its pid file" lgr_nonempty "$LGR_PIDFILE"
	[ "$(cat "$LGR_PIDFILE")" = "$LGR_PID" ] || lgr_fail "pid file holds $(cat "$LGR_PIDFILE"), expected $LGR_PID"
}

lgr_gone() { ! kill -0 "$LGR_PID" 2>/dev/null; }

# lgr_stop: SIGTERM, a bounded wait for the exit, then the exit status (and, under valgrind, its report) must be
# clean.
lgr_stop() {
	local rc
	[ -n "$LGR_PID" ] || lgr_fail "lgr_stop without a running rsyslogd"
	kill -TERM "$LGR_PID" 2>/dev/null || lgr_fail "rsyslogd was not running at stop"
	lgr_wait_for "rsyslogd to exit after SIGTERM" lgr_gone
	wait "$LGR_PID"
	rc=$?
	LGR_PID=
	if [ "$LGR_VALGRIND" = 1 ]; then
		lgr_valgrind_clean || lgr_fail "valgrind reported errors (exit $rc)"
	fi
	[ "$rc" -eq 0 ] || lgr_fail "rsyslogd exited with status $rc"
}

# lgr_valgrind_clean [LOG]: valgrind's verdict in LOG (default the daemon's): no errors, no definite leaks.
lgr_valgrind_clean() {
	local log=${1:-$LGR_WORK/valgrind.log}
	[ -s "$log" ] || return 1
	grep -q 'ERROR SUMMARY: 0 errors' "$log" || return 1
	! grep -Eq 'definitely lost: [1-9]' "$log"
}

# lgr_send_tcp PORT LINE...: sends each LINE plus a newline over one TCP connection to 127.0.0.1:PORT.
lgr_send_tcp() {
	local port=$1
	shift
	exec 3<>"/dev/tcp/127.0.0.1/$port" || lgr_fail "cannot connect to 127.0.0.1:$port"
	printf '%s\n' "$@" >&3
	exec 3>&-
}

# lgr_count FILE PATTERN: lines of FILE matching the extended regex PATTERN (0 when FILE is absent).
lgr_count() {
	[ -f "$1" ] || { echo 0; return; }
	grep -Ec -- "$2" "$1"
}

# ---- helpers of the imloggregator tests: the grpc-js peer, a test PKI, record files, impstats, TLS probes ------

LGR_PEER_DIR=$LGR_TOP_SRCDIR/tests/tools/grpc-peer

# lgr_need_peer: node with the peer's node_modules (npm ci, contrib/setup.sh), python3 and openssl. Without one
# the test is skipped, or fails where LGR_REQUIRE_PEERS=1 (contrib/test.sh), so that a run that did not test the
# module never looks like one that did.
lgr_need_peer() {
	local why=
	if ! command -v node >/dev/null; then
		why="node is not installed"
	elif [ ! -d "$LGR_PEER_DIR/node_modules/@grpc/grpc-js" ]; then
		why="the grpc-js peer is not installed (npm ci in tests/tools/grpc-peer)"
	elif ! command -v python3 >/dev/null; then
		why="python3 is not installed"
	elif ! command -v openssl >/dev/null; then
		why="openssl is not installed"
	fi
	[ -z "$why" ] && return 0
	[ "${LGR_REQUIRE_PEERS:-0}" = 1 ] && lgr_fail "$why"
	lgr_skip "$why"
}

# lgr_pki [DIR]: a throwaway PKI (contrib/gen-pki.sh: a CA, certificates for metron, doppler, reverselogproxy and
# client) in DIR, default $LGR_WORK/pki. Sets LGR_PKI and LGR_PEER_TLS, the peer's options for mutual TLS with the
# client certificate (add --name SAN).
lgr_pki() {
	LGR_PKI=${1:-$LGR_WORK/pki}
	bash "$LGR_TOP_SRCDIR/contrib/gen-pki.sh" "$LGR_PKI" >/dev/null 2>&1 || lgr_fail "gen-pki.sh $LGR_PKI failed"
	LGR_PEER_TLS=(--tls --ca "$LGR_PKI/ca.crt" --cert "$LGR_PKI/client.crt" --key "$LGR_PKI/client.key")
}

# lgr_peer ARGS...: runs the grpc-js peer (tests/tools/grpc-peer/peer.js; modes and output described there).
lgr_peer() { node "$LGR_PEER_DIR/peer.js" "$@"; }

# lgr_records ARGS...: runs tests/tools/grpc-peer/records.py (reads and checks the record files of the tests).
lgr_records() { python3 "$LGR_PEER_DIR/records.py" "$@"; }

# lgr_json LINE KEY...: the value at KEY... of the JSON object LINE (objects and lists as JSON, null as "null").
lgr_json() {
	python3 -c 'import json, sys
v = json.loads(sys.argv[1])
for k in sys.argv[2:]:
    v = v[k]
print(json.dumps(v) if isinstance(v, (dict, list, bool)) or v is None else v)' "$@"
}

# lgr_peer_line FILE EVENT: the last line of the peer output FILE whose "event" is EVENT.
lgr_peer_line() { grep -F "\"event\":\"$2\"" "$1" 2>/dev/null | tail -n 1; }

# lgr_token: a random token, for the markers of record files.
lgr_token() { od -An -N8 -tx1 /dev/urandom | tr -d ' \n'; }

# lgr_record_template NAME TOKEN: a template() statement writing each message as one record that records.py reads
# (app-name, procid, severity, timereported, fromhost-ip, $!loggregator, msg, between markers made of TOKEN).
lgr_record_template() {
	printf 'template(name="%s" type="string" string="%s")\n' "$1" "$(lgr_records template --token "$2")"
}

# lgr_stat FILE NAME_ERE COUNTER: COUNTER in the last impstats line (format="legacy") of the object whose name
# matches the extended regex NAME_ERE; empty while there is none.
lgr_stat() {
	grep -E "(^|[: ])$2: origin=" "$1" 2>/dev/null | tail -n 1 | sed -n "s/.* $3=\([0-9][0-9]*\).*/\1/p"
}

# lgr_stat_is FILE NAME_ERE COUNTER VALUE: for lgr_wait_for.
lgr_stat_is() { [ "$(lgr_stat "$1" "$2" "$3")" = "$4" ]; }

# lgr_alive: the daemon is still running.
lgr_alive() { [ -n "$LGR_PID" ] && kill -0 "$LGR_PID" 2>/dev/null; }

# lgr_tls_probe OUT ARGS...: one `openssl s_client` handshake with 127.0.0.1:$LGR_PORT and ARGS, its stdout and
# stderr in OUT, its exit status returned. s_client reads until the server closes (-ign_eof, no input), so an
# alert the server sends after the client's last handshake message (TLS 1.3) is in OUT too; bounded by the
# timeout.
lgr_tls_probe() {
	local out=$1
	shift
	timeout "$(lgr_timeout)" openssl s_client -connect "127.0.0.1:$LGR_PORT" -ign_eof "$@" </dev/null >"$out" 2>&1
}

# lgr_record_count FILE TOKEN: records written so far to FILE with lgr_record_template's markers of TOKEN (cheap
# enough to poll; records.py count checks their form too).
lgr_record_count() {
	[ -f "$1" ] || { echo 0; return; }
	grep -a -o -F "##LGR-$2##" "$1" | wc -l
}

# lgr_records_reach FILE TOKEN N: at least N records in FILE (for lgr_wait_for).
lgr_records_reach() { [ "$(lgr_record_count "$1" "$2")" -ge "$3" ]; }

# ---- helpers of the omdoppler tests: routers (grpc-js) and a second rsyslogd in the background ----------------
# A test that uses them calls lgr_bg_init right after lgr_init: on exit the background processes are killed, then
# lgr_cleanup runs as before.

LGR_BG_PIDS=()
LGR_PID2=
LGR_PIDFILE2=

lgr_bg_cleanup() {
	local rc=$? p
	for p in "${LGR_BG_PIDS[@]}" "$LGR_PID2"; do
		[ -n "$p" ] && kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null && wait "$p" 2>/dev/null
	done
	(exit "$rc")
	lgr_cleanup
}

lgr_bg_init() {
	trap lgr_bg_cleanup EXIT
	LGR_PIDFILE2=$LGR_WORK/rsyslogd2.pid
}

# lgr_router NAME ARGS...: starts a grpc-js router (peer.js router) on 127.0.0.1 port 0 with ARGS, its output in
# $LGR_WORK/NAME.out, its port file $LGR_WORK/NAME.port; waits for the port and sets LGR_PORT and LGR_ROUTER_PID.
# Not for use in $(...).
lgr_router() {
	local name=$1
	shift
	rm -f "$LGR_WORK/$name.port"
	node "$LGR_PEER_DIR/peer.js" router --port-file "$LGR_WORK/$name.port" "$@" \
		>"$LGR_WORK/$name.out" 2>"$LGR_WORK/$name.err" &
	LGR_ROUTER_PID=$!
	LGR_BG_PIDS+=("$LGR_ROUTER_PID")
	lgr_wait_for "router $name to listen" lgr_has_port "$LGR_WORK/$name.port"
	LGR_PORT=$(tr -d ' \n' <"$LGR_WORK/$name.port")
}

# lgr_router_kill PID: SIGKILL, and waits for it.
lgr_router_kill() {
	kill -KILL "$1" 2>/dev/null
	wait "$1" 2>/dev/null
	return 0
}

lgr_gone2() { ! kill -0 "$LGR_PID2" 2>/dev/null; }

# lgr_start2 CONF / lgr_stop2: a second private rsyslogd, as lgr_start / lgr_stop do for the first (pid file
# rsyslogd2.pid, output rsyslogd2.out, valgrind log valgrind2.log).
lgr_start2() {
	local conf=$1
	lgr_validate "$conf"
	rm -f "$LGR_PIDFILE2"
	lgr_spawn "$conf" "$LGR_PIDFILE2" 2
	LGR_PID2=$LGR_SPAWNED
	lgr_wait_for "the second rsyslogd to write its pid file" lgr_nonempty "$LGR_PIDFILE2"
}

lgr_stop2() {
	local rc
	[ -n "$LGR_PID2" ] || lgr_fail "lgr_stop2 without a second rsyslogd"
	kill -TERM "$LGR_PID2" 2>/dev/null || lgr_fail "the second rsyslogd was not running at stop"
	lgr_wait_for "the second rsyslogd to exit after SIGTERM" lgr_gone2
	wait "$LGR_PID2"
	rc=$?
	LGR_PID2=
	if [ "$LGR_VALGRIND" = 1 ]; then
		lgr_valgrind_clean "$LGR_WORK/valgrind2.log" || lgr_fail "valgrind reported errors in the second rsyslogd"
	fi
	[ "$rc" -eq 0 ] || lgr_fail "the second rsyslogd exited with status $rc"
}

# lgr_stat_sum_is FILE NAME_ERE A B C: counter A equals B + C in the last impstats line of the object (for
# lgr_wait_for).
lgr_stat_sum_is() {
	local a b c
	a=$(lgr_stat "$1" "$2" "$3")
	b=$(lgr_stat "$1" "$2" "$4")
	c=$(lgr_stat "$1" "$2" "$5")
	[ -n "$a" ] && [ -n "$b" ] && [ -n "$c" ] && [ "$a" -eq $((b + c)) ]
}

# lgr_stat_ge FILE NAME_ERE COUNTER N: COUNTER >= N (for lgr_wait_for).
lgr_stat_ge() {
	local v
	v=$(lgr_stat "$1" "$2" "$3")
	[ -n "$v" ] && [ "$v" -ge "$4" ]
}

# ---- helpers of the omfirehose tests: egress subscribers (peer.js subscribe) in the background -----------------
# A test that uses them calls lgr_bg_init first; subscribers are background processes like the routers.

declare -A LGR_SUB_PIDS=()

# lgr_lines FILE: lines in FILE (0 when absent).
lgr_lines() {
	[ -f "$1" ] || { echo 0; return; }
	wc -l <"$1" | tr -d ' '
}

# lgr_lines_reach FILE N: at least N lines in FILE (for lgr_wait_for).
lgr_lines_reach() { [ "$(lgr_lines "$1")" -ge "$2" ]; }

# lgr_subscriber NAME ARGS...: starts `peer.js subscribe` with ARGS (target, TLS, method, selectors...); what it
# receives goes to $LGR_WORK/NAME.jsonl, its final status line to $LGR_WORK/NAME.out; it ends when
# $LGR_WORK/NAME.stop appears. Returns at once (the request is on its way once $LGR_WORK/NAME.ready exists; that the
# server registered it shows in the subscriptions counter).
lgr_subscriber() {
	local name=$1
	shift
	rm -f "$LGR_WORK/$name.jsonl" "$LGR_WORK/$name.stop" "$LGR_WORK/$name.ready"
	node "$LGR_PEER_DIR/peer.js" subscribe --out "$LGR_WORK/$name.jsonl" --ready-file "$LGR_WORK/$name.ready" \
		--stop-file "$LGR_WORK/$name.stop" "$@" >"$LGR_WORK/$name.out" 2>"$LGR_WORK/$name.err" &
	LGR_SUB_PIDS[$name]=$!
	LGR_BG_PIDS+=("$!")
}

lgr_sub_gone() { ! kill -0 "${LGR_SUB_PIDS[$1]}" 2>/dev/null; }

# lgr_subscriber_wait NAME: waits until the subscriber has ended by itself (a status from the server).
lgr_subscriber_wait() {
	lgr_wait_for "subscriber $1 to end" lgr_sub_gone "$1"
	wait "${LGR_SUB_PIDS[$1]}" 2>/dev/null
	return 0
}

# lgr_subscriber_stop NAME: cancels the subscriber's call and waits until it has ended.
lgr_subscriber_stop() {
	: >"$LGR_WORK/$1.stop"
	lgr_subscriber_wait "$1"
}

# lgr_subscriber_status NAME: the subscriber's final status line ({"event":"status","code":c,...}).
lgr_subscriber_status() { lgr_peer_line "$LGR_WORK/$1.out" status; }

# ---- helpers of the client tests: lgr (contrib/lgr-cli) in the background -------------------------------------
# A test that uses them calls lgr_bg_init first; clients are background processes like the subscribers.

LGR_CLI=$LGR_TOP_BUILDDIR/contrib/lgr-cli/lgr
declare -A LGR_CLIENT_PIDS=()

# lgr_need_cli: the client must be built.
lgr_need_cli() { [ -x "$LGR_CLI" ] || lgr_fail "the client is not built ($LGR_CLI)"; }

# lgr_client NAME ARGS...: starts `lgr ARGS` in the background, its stdout in $LGR_WORK/NAME.out and its stderr in
# $LGR_WORK/NAME.err. Returns at once.
lgr_client() {
	local name=$1
	shift
	"$LGR_CLI" "$@" >"$LGR_WORK/$name.out" 2>"$LGR_WORK/$name.err" &
	LGR_CLIENT_PIDS[$name]=$!
	LGR_BG_PIDS+=("$!")
}

lgr_client_gone() { ! kill -0 "${LGR_CLIENT_PIDS[$1]}" 2>/dev/null; }

# lgr_client_stop NAME: SIGTERM, waits for the exit, which must be status 0.
lgr_client_stop() {
	local rc
	kill -TERM "${LGR_CLIENT_PIDS[$1]}" 2>/dev/null || lgr_fail "client $1 was not running at stop"
	lgr_wait_for "client $1 to exit after SIGTERM" lgr_client_gone "$1"
	wait "${LGR_CLIENT_PIDS[$1]}"
	rc=$?
	[ "$rc" -eq 0 ] || { cat "$LGR_WORK/$1.err" >&2; lgr_fail "client $1 exited with status $rc after SIGTERM"; }
}
