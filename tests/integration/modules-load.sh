#!/usr/bin/env bash
# shellcheck disable=SC2119,SC2317 # lgr_init takes no script arguments; checks run through lgr_wait_for
# modules-load.sh: rsyslogd -N1 loads each module alone and all three together, accepts the example configs of
# contrib/examples, and rejects bad parameter values with a message naming the parameter.
#
# Oracle: `rsyslogd -N1` exits 0 for the good configs; for each bad one it exits non-zero and its output names the
# offending parameter with the module's own message.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
lgr_init
shopt -s lastpipe # the checks below read configs from pipes and must be able to end the test

load() { printf 'module(load="%s")\n' "$(lgr_module "$1")"; }

# accepts NAME: the config on stdin (after the harness preamble) must pass -N1.
accepts() {
	local conf=$LGR_WORK/$1.conf
	lgr_conf_write "$conf"
	lgr_n1 "$conf" || { printf '%s\n' "$LGR_N1_OUT" >&2; lgr_fail "-N1 rejects $1"; }
}

# rejects NAME EXPECTED...: the config on stdin must fail -N1 with output that contains every EXPECTED string.
rejects() {
	local name=$1 conf=$LGR_WORK/$1.conf want
	shift
	lgr_conf_write "$conf"
	if lgr_n1 "$conf"; then
		printf '%s\n' "$LGR_N1_OUT" >&2
		lgr_fail "-N1 accepts $name"
	fi
	for want in "$@"; do
		case $LGR_N1_OUT in
		*"$want"*) ;;
		*) printf '%s\n' "$LGR_N1_OUT" >&2; lgr_fail "$name: -N1 output lacks: $want" ;;
		esac
	done
}

lgr_check "each module loads alone"
{ load imloggregator; echo 'input(type="imloggregator" port="0" tls="off")'; } | accepts imloggregator-alone
{ load omdoppler; echo 'action(type="omdoppler" routers=["127.0.0.1:8082"] tls="off")'; } | accepts omdoppler-alone
{ load omfirehose; echo 'action(type="omfirehose" port="0" tls="off")'; } | accepts omfirehose-alone

lgr_check "all three load together, with every input protocol and TLS parameters"
lgr_pki # the TLS files must exist: -N1 loads them and reports unusable ones
{
	load imloggregator
	load omdoppler
	load omfirehose
	cat <<'EOF'
input(type="imloggregator" protocol="grpc" port="0" tls.cacert="/pki/ca.crt" tls.mycert="/pki/a.crt"
      tls.myprivkey="/pki/a.key" tls.permittedpeers=["metron"] defaultTags=["deployment:cf"])
input(type="imloggregator" protocol="udp" port="0" maxMessageSize="64k" buffer.size="500")
input(type="imloggregator" protocol="subscribe" routers=["r1:8082", "[fd00::1]:8082"] shardId="rsyslog"
      selectors=["log", "counter"] sourceIds=["app-1"] tls.cacert="/pki/ca.crt" tls.mycert="/pki/a.crt"
      tls.myprivkey="/pki/a.key" tls.servername="doppler")
action(type="omdoppler" routers=["127.0.0.1:8082"] tls="off" protocol="v1" STREAMS="2" batch.flushInterval="2s")
action(type="omfirehose" port="0" tls="off" gateway.port="0" gateway.tls="off" gateway.auth="none"
       drains.aggregate=["syslog-tls://drain.example:6514"] drains.denyRanges=["10.0.0.0/8", "fd00::/8"])
EOF
} | sed -e "s#/pki/#$LGR_PKI/#g" -e 's#/a\.crt#/doppler.crt#g' -e 's#/a\.key#/doppler.key#g' | accepts all-three

lgr_check "the example configs of contrib/examples pass once rendered"
mkdir -p "$LGR_WORK/moddir"
# the router example's gateway tokens and drains bindings: -N1 loads both
printf 'tok admin\n' >"$LGR_WORK/pki/gateway.tokens"
mkdir -p "$LGR_WORK/data" && printf '[]\n' >"$LGR_WORK/data/bindings.json"
for m in imloggregator omdoppler omfirehose; do
	ln -s "$(lgr_module "$m")" "$LGR_WORK/moddir/$m.so"
done
for ex in agent router; do
	sh "$LGR_TOP_SRCDIR/contrib/examples/render.sh" "$LGR_WORK/moddir" "$LGR_WORK/pki" "$LGR_WORK/data" \
		<"$LGR_TOP_SRCDIR/contrib/examples/$ex.conf" | accepts "example-$ex"
	grep -q '@[A-Z]*@' "$LGR_WORK/example-$ex.conf" && lgr_fail "example $ex.conf has a placeholder render.sh missed"
done

lgr_check "bad values are rejected with a message naming the parameter"
{ load imloggregator; echo 'input(type="imloggregator" port="0" tls="off" buffer.size="lots")'; } |
	rejects imloggregator-buffer "imloggregator: parameter 'buffer.size': \"lots\" is not an integer"
{ load imloggregator; echo 'input(type="imloggregator" port="70000" tls="off")'; } |
	rejects imloggregator-port "imloggregator: parameter 'port': \"70000\" is not a port (0..65535)"
{ load imloggregator; echo 'input(type="imloggregator" port="0" tls="off" role="king")'; } |
	rejects imloggregator-role "imloggregator: parameter 'role': \"king\" is not one of: agent, router"
{ load imloggregator; echo 'input(type="imloggregator" port="0" tls="off" maxMessageSize="10x")'; } |
	rejects imloggregator-size "parameter 'maxMessageSize': \"10x\" is not a size"
{ load imloggregator; echo 'input(type="imloggregator" port="0" tls.cacert="/ca.crt")'; } |
	rejects imloggregator-tls "imloggregator: parameter 'tls.mycert' is required when tls is on"
{ load imloggregator; echo 'input(type="imloggregator" protocol="subscribe" tls="off")'; } |
	rejects imloggregator-subscribe "imloggregator: parameter 'routers' is required with protocol=\"subscribe\""
{ load imloggregator; echo 'input(type="imloggregator" protocol="udp" routers=["r:1"])'; } |
	rejects imloggregator-udp-routers "parameter 'routers' is only valid with protocol=\"subscribe\""
{ load imloggregator; echo 'input(type="imloggregator" tls="off" defaultTags=["nocolon"])'; } |
	rejects imloggregator-tags "parameter 'defaultTags': \"nocolon\" is invalid: expected key:value"
{ load imloggregator; echo 'input(type="imloggregator" port="0" tls="off" ruleset="nosuch")'; } |
	rejects imloggregator-ruleset "imloggregator: parameter 'ruleset': ruleset 'nosuch' not found"
{ load omdoppler; echo 'action(type="omdoppler" routers=["r:8082"] tls="off" buffer.size="lots")'; } |
	rejects omdoppler-buffer "omdoppler: parameter 'buffer.size': \"lots\" is not an integer"
{ load omdoppler; echo 'action(type="omdoppler" tls="off")'; } |
	rejects omdoppler-routers "omdoppler: parameter 'routers' is required"
{ load omdoppler; echo 'action(type="omdoppler" routers=["r8082"] tls="off")'; } |
	rejects omdoppler-hostport "omdoppler: parameter 'routers': \"r8082\" is invalid: expected host:port"
{ load omdoppler; echo 'action(type="omdoppler" routers=["r:8082"] tls="off" streams="0")'; } |
	rejects omdoppler-streams "omdoppler: parameter 'streams': \"0\" is out of range (1..100)"
{ load omdoppler; echo 'action(type="omdoppler" routers=["r:8082"] tls="off" protocol="v3")'; } |
	rejects omdoppler-protocol "omdoppler: parameter 'protocol': \"v3\" is not one of: v2, v1"
{ load omfirehose; echo 'action(type="omfirehose" port="70000" tls="off")'; } |
	rejects omfirehose-port "omfirehose: parameter 'port': \"70000\" is not a port (0..65535)"
{ load omfirehose; echo 'action(type="omfirehose" port="0" tls="off" drains.idleTimeout="soon")'; } |
	rejects omfirehose-duration "omfirehose: parameter 'drains.idleTimeout': \"soon\" is not a duration"
{ load omfirehose; echo 'action(type="omfirehose" port="0" tls="off" drains.denyRanges=["10.0.0.0/33"])'; } |
	rejects omfirehose-cidr "parameter 'drains.denyRanges': \"10.0.0.0/33\" is invalid"
{ load omfirehose; echo 'action(type="omfirehose" port="0" tls="off" gateway.port="0" gateway.tls="off")'; } |
	rejects omfirehose-tokens "omfirehose: parameter 'gateway.tokensFile' is required when the gateway is on"
{ load omfirehose; echo 'action(type="omfirehose" port="0" tls="off" gateway.tokensFile="/t")'; } |
	rejects omfirehose-gateway-off "parameter 'gateway.tokensFile' is only valid with gateway.port"
{ load omfirehose; echo 'action(type="omfirehose" port="0" tls="off" drains.bindingsUrl="http://x")'; } |
	rejects omfirehose-url "parameter 'drains.bindingsUrl': \"http://x\" is invalid: expected an https:// URL"
{ load omfirehose; echo 'action(type="omfirehose" port="0" tls="off" no.such="1")'; } |
	rejects omfirehose-unknown "parameter 'no.such' not known"
lgr_pass
