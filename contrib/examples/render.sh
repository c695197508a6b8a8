#!/bin/sh
# render.sh MODDIR PKI DATADIR [NAME=VALUE...] < example.conf > rsyslog.conf
#
# Replaces the placeholders of the example configurations: @MODDIR@ (directory holding imloggregator.so,
# omdoppler.so, omfirehose.so), @PKI@ (PEM files and the gateway token file) and @DATADIR@ (drain bindings, port
# files). The listeners' placeholders default to the real Loggregator's addresses and ports; NAME=VALUE sets one:
#   AGENT_PORT=3458  AGENT_UDP_PORT=3457  ROUTER=doppler.service.cf.internal:8082
#   ROUTER_ADDRESS=0.0.0.0  ROUTER_PORT=8082  EGRESS_PORT=8083  GATEWAY_PORT=8088
# A port of 0 picks a free one, written to the port file beside it in DATADIR. Values must not contain '|'.
[ $# -ge 3 ] || {
	echo "usage: render.sh MODDIR PKI DATADIR [NAME=VALUE...] < example.conf > rsyslog.conf" >&2
	exit 2
}
moddir=$1 pki=$2 datadir=$3
shift 3
AGENT_PORT=3458 AGENT_UDP_PORT=3457 ROUTER=doppler.service.cf.internal:8082
ROUTER_ADDRESS=0.0.0.0 ROUTER_PORT=8082 EGRESS_PORT=8083 GATEWAY_PORT=8088
for kv in "$@"; do
	case ${kv%%=*} in
	AGENT_PORT | AGENT_UDP_PORT | ROUTER | ROUTER_ADDRESS | ROUTER_PORT | EGRESS_PORT | GATEWAY_PORT)
		eval "${kv%%=*}=\${kv#*=}" ;;
	*) echo "render.sh: unknown placeholder ${kv%%=*}" >&2; exit 2 ;;
	esac
done
exec sed -e "s|@MODDIR@|$moddir|g" -e "s|@PKI@|$pki|g" -e "s|@DATADIR@|$datadir|g" \
	-e "s|@AGENT_PORT@|$AGENT_PORT|g" -e "s|@AGENT_UDP_PORT@|$AGENT_UDP_PORT|g" -e "s|@ROUTER@|$ROUTER|g" \
	-e "s|@ROUTER_ADDRESS@|$ROUTER_ADDRESS|g" -e "s|@ROUTER_PORT@|$ROUTER_PORT|g" \
	-e "s|@EGRESS_PORT@|$EGRESS_PORT|g" -e "s|@GATEWAY_PORT@|$GATEWAY_PORT|g"
