#!/usr/bin/env bash
# run.sh: the first run. Sets up and builds (contrib/setup.sh), checks every example configuration with
# `rsyslogd -N1`, then runs a small Loggregator on loopback from the shipped examples and shows it working:
#
#   1. a test PKI (contrib/gen-pki.sh: a CA, certificates with the DNS SANs metron, doppler, reverselogproxy);
#   2. contrib/examples/router.conf and agent.conf rendered (contrib/examples/render.sh) with free ports;
#   3. a router rsyslogd (imloggregator role=router -> omfirehose Egress) and an agent rsyslogd
#      (imloggregator role=agent -> omdoppler -> the router);
#   4. a sample app, demo-app: `lgr emit` once a second (a log line, a counter, a gauge) to the agent;
#   5. `lgr logs --all-types demo-app` tailing it from the router's Egress, in the foreground;
#   6. with --seconds, at the end: `lgr logs --recent demo-app`, the app's recent logs as the router's HTTPS gateway
#      serves them (Log Cache's GET /api/v1/read/demo-app, bearer token demo-admin-token).
#
#   contrib/run.sh [--seconds N] [--no-setup]
#
# Ctrl-C stops everything it started. --seconds N (or LGR_DEMO_SECONDS=N) ends the demo by itself after N seconds
# of tailing: the app stops, the tail waits until every line the app emitted is shown, then everything stops, and
# the exit status says whether they all were. --no-setup skips contrib/setup.sh, for a machine set up and a tree
# built already (the tests use it).
#
# Environment: LGR_BUILDDIR (default build/), LGR_RUN_DIR (default $LGR_BUILDDIR/run: configs, PKI, logs, port
# files), RSYSLOGD (default /usr/sbin/rsyslogd), LGR_DEMO_SECONDS.
# shellcheck disable=SC2317 # the cleanup functions run from the exit trap
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
seconds=${LGR_DEMO_SECONDS:-0}
setup=1
while [ $# -gt 0 ]; do
  case $1 in
    --seconds) [ $# -ge 2 ] || { echo "run.sh: --seconds needs a number" >&2; exit 2; }; seconds=$2; shift ;;
    --seconds=*) seconds=${1#*=} ;;
    --no-setup) setup=0 ;;
    -h|--help) awk 'NR > 1 && !/^#/ {exit} NR > 1 && !/^# shellcheck/ {sub(/^# ?/, ""); print}' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
case $seconds in ''|*[!0-9]*) echo "run.sh: --seconds takes a whole number of seconds" >&2; exit 2 ;; esac

[ $setup -eq 0 ] || contrib/setup.sh

build=${LGR_BUILDDIR:-$top/build}
run=${LGR_RUN_DIR:-$build/run}
rsyslogd=${RSYSLOGD:-/usr/sbin/rsyslogd}
lgr=$build/contrib/lgr-cli/lgr
pki=$run/pki
say() { printf 'run: %s\n' "$*"; }

# ---- 1. the example configurations, as shipped, must pass rsyslogd -N1 ---------------------------------------
mkdir -p "$run/moddir" "$run/data"
contrib/gen-pki.sh "$pki"
# the gateway's bearer tokens and the drains' bindings (none), both files router.conf names
[ -f "$pki/gateway.tokens" ] || printf 'demo-admin-token admin\n' >"$pki/gateway.tokens"
[ -f "$run/data/bindings.json" ] || printf '[]\n' >"$run/data/bindings.json"
for m in imloggregator omdoppler omfirehose; do
  ln -sf "$build/modules/$m/.libs/$m.so" "$run/moddir/$m.so"
done
rc=0
for example in contrib/examples/*.conf; do
  name=$(basename "$example" .conf)
  conf=$run/$name.validate.conf
  contrib/examples/render.sh "$run/moddir" "$pki" "$run/data" <"$example" >"$conf"
  if "$rsyslogd" -N1 -f "$conf" >"$run/$name.validate.log" 2>&1; then
    say "$name: $example is valid for $("$rsyslogd" -v | head -n 1 | awk '{print $1, $2}')"
  else
    say "$name: rsyslogd -N1 rejected $conf:"
    sed 's/^/run:   /' "$run/$name.validate.log"
    rc=1
  fi
done
[ $rc -eq 0 ] || exit 1
[ -x "$lgr" ] || { say "the client is not built: $lgr (make -C $build)"; exit 1; }

# ---- 2. the demo ------------------------------------------------------------------------------------------------
router_pid='' agent_pid='' tail_pid='' app_pid=''
timeout_s=30

# gone PID [SECONDS]: polls until PID has exited (bash reaps it), at most SECONDS (default 10). The exit trap
# polls instead of using `wait`, which can miss a child that bash reaped while running the trap.
gone() {
  local deadline=$((SECONDS + ${2:-10}))
  while [ "$SECONDS" -lt "$deadline" ]; do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
  ! kill -0 "$1" 2>/dev/null
}

# stop PID: SIGTERM, up to 10 s for the exit, then SIGKILL.
stop() {
  [ -n "$1" ] && kill -0 "$1" 2>/dev/null || return 0
  kill -TERM "$1" 2>/dev/null || return 0
  gone "$1" || kill -KILL "$1" 2>/dev/null || true
}

cleanup() {
  trap - EXIT INT TERM HUP
  : >"$run/app.stop"
  [ -z "$app_pid" ] || gone "$app_pid" 15 || kill -KILL "$app_pid" 2>/dev/null || true
  stop "$tail_pid"
  stop "$agent_pid"
  stop "$router_pid"
  [ -z "$router_pid" ] || say "stopped the sample app, the tail, the agent and the router"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# wait_for WHAT CMD...: polls CMD (at most $timeout_s seconds).
wait_for() {
  local what=$1 deadline=$((SECONDS + timeout_s))
  shift
  until "$@"; do
    if [ "$SECONDS" -ge "$deadline" ]; then say "timed out waiting for $what"; exit 1; fi
    sleep 0.1
  done
}
has_port() { grep -Eqx '[1-9][0-9]*' "$1" 2>/dev/null; }
port_of() { tr -d ' \n' <"$1"; }
alive() { kill -0 "$1" 2>/dev/null || { say "$2 exited; its log: $3"; tail -n 20 "$3" | sed 's/^/run:   /'; exit 1; }; }

# start NAME CONF: a private rsyslogd in the foreground mode, in the background of this script.
start() {
  "$rsyslogd" -n -f "$2" -i "$run/$1.pid" >"$run/$1.log" 2>&1 &
}

rm -f "$run"/data/*.port "$run/app.stop" "$run/demo-app.sent" "$run/demo-app.out" "$run/lgr-logs.err"
: >"$run/demo-app.sent"
contrib/examples/render.sh "$run/moddir" "$pki" "$run/data" ROUTER_ADDRESS=127.0.0.1 ROUTER_PORT=0 EGRESS_PORT=0 \
  GATEWAY_PORT=0 <contrib/examples/router.conf >"$run/router.conf"
start router "$run/router.conf"
router_pid=$!
router_up() { alive "$router_pid" router "$run/router.log"; has_port "$run/data/router-ingress.port" &&
  has_port "$run/data/router-egress.port" && has_port "$run/data/gateway.port"; }
wait_for "the router's port files" router_up
ingress=$(port_of "$run/data/router-ingress.port")
egress=$(port_of "$run/data/router-egress.port")
gateway=https://127.0.0.1:$(port_of "$run/data/gateway.port")

contrib/examples/render.sh "$run/moddir" "$pki" "$run/data" AGENT_PORT=0 AGENT_UDP_PORT=0 \
  ROUTER="127.0.0.1:$ingress" <contrib/examples/agent.conf >"$run/agent.conf"
start agent "$run/agent.conf"
agent_pid=$!
agent_up() { alive "$agent_pid" agent "$run/agent.log"; has_port "$run/data/agent-grpc.port"; }
wait_for "the agent's port file" agent_up
agent=$(port_of "$run/data/agent-grpc.port")

say "router (pid $router_pid): agents in on 127.0.0.1:$ingress, Egress out on 127.0.0.1:$egress (server name doppler),"
say "  HTTPS gateway on $gateway (server name reverselogproxy, token demo-admin-token)"
say "  config $run/router.conf, log $run/router.log"
say "agent (pid $agent_pid): emitters in on 127.0.0.1:$agent (server name metron), out to the router"
say "  config $run/agent.conf, log $run/agent.log"
say "PKI in $pki; port files in $run/data"

# The tail first, so that it sees the app's first line; its lines also go to demo-app.out, its notes to stderr.
"$lgr" logs --pki "$pki" --addr "127.0.0.1:$egress" --all-types demo-app \
  > >(tee "$run/demo-app.out") 2> >(tee "$run/lgr-logs.err" >&2) &
tail_pid=$!
tail_up() { alive "$tail_pid" "lgr logs" "$run/lgr-logs.err"; grep -q 'connected' "$run/lgr-logs.err" 2>/dev/null; }
wait_for "lgr logs to connect" tail_up

# The sample app: once a second a log line, a counter and a gauge; each line it emitted goes to demo-app.sent.
app() {
  local n=0 line
  local opts=(--pki "$pki" --addr "127.0.0.1:$agent" --quiet)
  # Stopped through app.stop only, never halfway through an emit; the main shell's exit trap is not its own.
  trap - EXIT
  trap '' INT TERM HUP
  until [ -e "$run/app.stop" ]; do
    n=$((n + 1))
    line="GET /orders/$n 200 $((RANDOM % 90 + 10))ms"
    if "$lgr" emit "${opts[@]}" demo-app "$line"; then printf '%s\n' "$line" >>"$run/demo-app.sent"; fi
    "$lgr" emit "${opts[@]}" --type counter --name requests demo-app || true
    "$lgr" emit "${opts[@]}" --type gauge --name memory --unit bytes --value $((RANDOM * 1024)) demo-app || true
    [ -e "$run/app.stop" ] || sleep 1
  done
}
app &
app_pid=$!
say "sample app demo-app (pid $app_pid): lgr emit once a second to the agent; its lines in $run/demo-app.sent"
say "in another terminal:"
say "  $lgr firehose --pki $pki --addr 127.0.0.1:$egress"
say "  $lgr emit --pki $pki --addr 127.0.0.1:$agent demo-app 'hello'"
say "  $lgr logs --recent --token demo-admin-token --ca $pki/ca.crt --gateway $gateway demo-app"
say "  curl -N --cacert $pki/ca.crt -H 'Authorization: bearer demo-admin-token' '$gateway/v2/read?log&source_id=demo-app'"

if [ "$seconds" -eq 0 ]; then
  say "tailing demo-app (lgr logs --all-types demo-app); Ctrl-C stops everything"
  # The tail ends with 0 only when it was stopped (Ctrl-C reaches it too): then this run was interrupted.
  rc=0
  wait "$tail_pid" || rc=$?
  tail_pid=
  [ $rc -eq 0 ] && exit 130
  say "lgr logs ended with status $rc"
  exit 1
fi

say "tailing demo-app for $seconds seconds (lgr logs --all-types demo-app)"
end=$((SECONDS + seconds))
while [ "$SECONDS" -lt "$end" ]; do
  alive "$tail_pid" "lgr logs" "$run/lgr-logs.err"
  alive "$router_pid" router "$run/router.log"
  alive "$agent_pid" agent "$run/agent.log"
  sleep 0.2
done
: >"$run/app.stop"
gone "$app_pid" 15 || { say "the sample app does not stop"; exit 1; }
app_pid=
# Every line the app emitted must reach the tail.
all_shown() {
  local line
  while IFS= read -r line; do
    grep -qF -- "[APP/PROC/WEB/0] OUT $line" "$run/demo-app.out" || return 1
  done <"$run/demo-app.sent"
}
sent=$(wc -l <"$run/demo-app.sent")
deadline=$((SECONDS + 15))
until all_shown; do
  if [ "$SECONDS" -ge "$deadline" ]; then
    say "the tail did not show every line the app emitted ($sent lines; see $run/demo-app.sent, $run/demo-app.out)"
    exit 1
  fi
  sleep 0.1
done
say "the tail showed all $sent log lines the app emitted"

# ---- 3. the same logs again, from the gateway's recent store -------------------------------------------------------
# recent.size keeps the newest 100 envelopes of demo-app (a log, a counter and a gauge a second): its last 30 lines
say "recent logs of demo-app from the gateway: lgr logs --recent --gateway $gateway demo-app"
if ! "$lgr" logs --recent --gateway "$gateway" --ca "$pki/ca.crt" --token demo-admin-token demo-app \
  >"$run/demo-app.recent" 2>"$run/lgr-recent.err"; then
  say "lgr logs --recent failed:"
  sed 's/^/run:   /' "$run/lgr-recent.err"
  exit 1
fi
sed 's/^/run:   /' "$run/demo-app.recent"
recent=0
while IFS= read -r line; do
  if ! grep -qF -- "[APP/PROC/WEB/0] OUT $line" "$run/demo-app.recent"; then
    say "lgr logs --recent did not show \"$line\" (see $run/demo-app.recent)"
    exit 1
  fi
  recent=$((recent + 1))
done < <(tail -n 30 "$run/demo-app.sent")
say "lgr logs --recent showed the last $recent log lines the app emitted"
exit 0
