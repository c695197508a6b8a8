#!/usr/bin/env bash
# shellcheck disable=SC2119,SC2317 # lgr_init takes no script arguments; checks run through lgr_wait_for
# reliability-tls.sh: the TLS refusals that no other test covers, on every TLS endpoint of the modules:
# imloggregator's server, omfirehose's gRPC egress and HTTPS gateway, omdoppler's client (doc/reliability.md lists
# which test covers which cell of the matrix; imloggregator-badinput.sh and omdoppler-faults.sh hold the others).
#
# One rsyslogd: imloggregator (mutual TLS, role router) -> omfirehose (egress with mutual TLS and
# tls.permittedpeers=["client"], gateway over TLS with tokens) and four omdoppler actions whose routers must be
# refused. Certificates: contrib/gen-pki.sh's, one of the same CA valid only in January 2020 ("expired", SANs
# doppler, metron, client), one of the same CA with only the SAN "wrongname", and another CA's client certificate.
# Probes are openssl s_client (the server's alert number is read from its output), grpc-js and curl.
#
# Oracle:
#   - imloggregator: an expired client certificate -> alert 45 certificate_expired (TLS 1.3 and 1.2); TLS 1.1 ->
#     alert 70 protocol_version, no ALPN agreed; each adds exactly 1 to invalid;
#   - omfirehose egress: no client certificate -> alert 116 certificate_required (TLS 1.3) / 40 handshake_failure
#     (TLS 1.2); another CA -> 48 unknown_ca; expired -> 45; TLS 1.0 and 1.1 -> 70; no ALPN, or only http/1.1 ->
#     120 no_application_protocol; a plaintext gRPC client -> UNAVAILABLE; a certificate of the CA whose SAN is not
#     in tls.permittedpeers -> PERMISSION_DENIED; none of them is ever counted as a subscription, and a good
#     subscriber then receives what is sent;
#   - omfirehose gateway (client certificates optional, by design): another CA -> 48; expired -> 45; TLS 1.0 and
#     1.1 -> 70; plaintext HTTP to the TLS port -> no HTTP answer; without a client certificate and with no ALPN
#     (HTTP/1.1) a reader with a token is served (the documented behaviour, checked so that the refusals above
#     are refusals of the certificate and the version only);
#   - omdoppler: a router with an expired certificate, a plaintext (h2c) router, a router that speaks only TLS 1.1
#     (openssl s_server) and a router that agrees no ALPN protocol (openssl s_server): none is connected
#     (router.connects 0, egress 0), every one counted in router.errors (>= 2: retried), and each logged with its
#     reason (certificate verify failed, a TLS error, protocol version, no ALPN h2);
#   - rsyslogd is alive after all of it and exits 0 on SIGTERM (valgrind clean under LGR_VALGRIND=1).
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
lgr_init
lgr_bg_init
lgr_need_peer
lgr_pki
command -v curl >/dev/null || lgr_skip "curl is not installed"
# shellcheck source=tests/tools/reliability-lib.sh
. "$LGR_TOP_SRCDIR/tests/tools/reliability-lib.sh"

W=$LGR_WORK
P=$LGR_PKI
other=$W/other-pki
bash "$LGR_TOP_SRCDIR/contrib/gen-pki.sh" "$other" >/dev/null 2>&1 || lgr_fail "cannot make the second PKI"

# cert NAME SAN DAYS_ARGS...: a certificate of the test CA with SAN, signed with `openssl ca` (which, unlike
# `openssl x509` in OpenSSL 3.0, takes a start and an end date).
cert() {
	local name=$1 san=$2
	shift 2
	(
		cd "$P" || exit 1
		printf '[ca]\ndefault_ca = d\n[d]\ndir = .\ndatabase = %s.index\nnew_certs_dir = .\nserial = %s.serial\n' \
			"$name" "$name" >"$name.cnf"
		printf 'default_md = sha256\npolicy = p\nunique_subject = no\n[p]\ncommonName = supplied\n' >>"$name.cnf"
		printf '[ext]\nsubjectAltName = %s\nextendedKeyUsage = serverAuth,clientAuth\n' "$san" >>"$name.cnf"
		: >"$name.index"
		echo 01 >"$name.serial"
		openssl req -newkey rsa:2048 -nodes -keyout "$name.key" -out "$name.csr" -subj "/CN=$name" 2>/dev/null &&
			openssl ca -batch -config "$name.cnf" -cert ca.crt -keyfile ca.key -in "$name.csr" -out "$name.crt" \
				-extensions ext -notext "$@" >/dev/null 2>&1
	) || lgr_fail "cannot make the certificate $name"
}
cert expired "DNS:doppler,DNS:metron,DNS:client,DNS:localhost,IP:127.0.0.1" \
	-startdate 20200101000000Z -enddate 20200201000000Z
cert wrongsan "DNS:wrongname,IP:127.0.0.1" -days 2
openssl x509 -in "$P/expired.crt" -noout -checkend 0 >/dev/null && lgr_fail "the expired certificate is not expired"

# ---- routers omdoppler must refuse ----------------------------------------------------------------------------
tok=$(lgr_token)
lgr_router expired --tls --ca "$P/ca.crt" --cert "$P/expired.crt" --key "$P/expired.key" --records "$W/exp.rec" \
	--token "$tok"
p_expired=$LGR_PORT
lgr_router plain --records "$W/plain.rec" --token "$tok"
p_plain=$LGR_PORT
# s_server NAME ARGS...: openssl s_server -www (which, unlike its default mode, does not end at the end of its
# input) with the doppler certificate on a free port (printed as "ACCEPT
# 127.0.0.1:PORT"); sets LGR_PORT.
s_server() {
	local name=$1
	shift
	openssl s_server -www -accept 127.0.0.1:0 -cert "$P/doppler.crt" -key "$P/doppler.key" "$@" </dev/null \
		>"$W/$name.out" 2>&1 &
	LGR_BG_PIDS+=("$!")
	accepting() { grep -q '^ACCEPT ' "$W/$1.out"; }
	lgr_wait_for "s_server $name" accepting "$name"
	LGR_PORT=$(sed -n 's/^ACCEPT 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$W/$name.out")
}
s_server tls11 -tls1_1 -cipher 'DEFAULT:@SECLEVEL=0'
p_tls11=$LGR_PORT
s_server noalpn
p_noalpn=$LGR_PORT

# ---- the daemon -----------------------------------------------------------------------------------------------
printf 'admin-token admin\n' >"$W/tokens"
tls() { printf 'tls.cacert="%s/ca.crt" tls.mycert="%s/%s.crt" tls.myprivkey="%s/%s.key"' "$P" "$P" "$1" "$P" "$1"; }
{
	cat <<EOF
module(load="impstats" interval="1" log.syslog="off" log.file="$W/stats.log" format="legacy")
module(load="$(lgr_module imloggregator)")
module(load="$(lgr_module omfirehose)")
module(load="$(lgr_module omdoppler)")
input(type="imloggregator" port="0" listenPortFileName="$W/in.port" role="router" ruleset="out" $(tls doppler))
ruleset(name="out") {
	action(type="omfirehose" port="0" listenPortFileName="$W/egress.port" tls.permittedpeers=["client"]
		batch.flushinterval="20" $(tls doppler) gateway.port="0" gateway.listenPortFileName="$W/gw.port"
		gateway.tls.cacert="$P/ca.crt" gateway.tls.mycert="$P/reverselogproxy.crt"
		gateway.tls.myprivkey="$P/reverselogproxy.key" gateway.tokensFile="$W/tokens")
EOF
	for r in expired:"$p_expired" plain:"$p_plain" tls11:"$p_tls11" noalpn:"$p_noalpn"; do
		printf '\taction(type="omdoppler" name="%s" routers=["127.0.0.1:%s"] %s)\n' "${r%%:*}" "${r##*:}" "$(tls metron)"
	done
	printf '}\n'
} | lgr_conf_write "$W/rsyslog.conf"
lgr_check "rsyslogd starts: imloggregator -> omfirehose (egress, gateway) and four omdoppler actions"
lgr_start "$W/rsyslog.conf"
lgr_wait_port "$W/in.port"
in_port=$LGR_PORT
lgr_wait_port "$W/gw.port"
gw_port=$LGR_PORT
lgr_wait_port "$W/egress.port"
egress_port=$LGR_PORT
S=$W/stats.log
IML='imloggregator\(grpc/[^)]*\)'
OMF='omfirehose\([^)]*\)'

failures=()
case_fail() {
	printf '%s: FAIL (going on with the next case): %s\n' "$LGR_TEST" "$*" >&2
	failures+=("$*")
}
ncase=0
# refused ALERT [--no-alpn] ARGS...: an s_client handshake with 127.0.0.1:$LGR_PORT fails with the server's alert
# ALERT (and, with --no-alpn, agrees no ALPN protocol).
refused() {
	local alert=$1 no_alpn=0 out rc
	shift
	[ "$1" = --no-alpn ] && { no_alpn=1; shift; }
	ncase=$((ncase + 1))
	out=$W/probe-$ncase.out
	lgr_tls_probe "$out" -CAfile "$P/ca.crt" "$@"
	rc=$?
	if [ "$rc" -eq 0 ] || [ "$rc" -eq 124 ]; then
		printf 's_client %s exited %s, expected a failure\n' "$*" "$rc" >&2
		return 1
	fi
	grep -q "SSL alert number $alert\$" "$out" || { cat "$out" >&2; printf 'no alert %s\n' "$alert" >&2; return 1; }
	if [ "$no_alpn" = 1 ] && grep -q '^ALPN protocol:' "$out"; then
		printf 'an ALPN protocol was agreed\n' >&2
		return 1
	fi
}
old=(-cipher 'DEFAULT:@SECLEVEL=0')
good=(-cert "$P/client.crt" -key "$P/client.key")
exp=(-cert "$P/expired.crt" -key "$P/expired.key")
oth=(-cert "$other/client.crt" -key "$other/client.key")

# The settled value of a counter: read from a report written at least one full interval after now.
settled() {
	rel_settle "$S" "$1" 2
	lgr_stat "$S" "$1" "$2"
}

# ---- imloggregator --------------------------------------------------------------------------------------------
LGR_PORT=$in_port
# iml_case NAME ALERT ARGS...: a refusal that adds exactly 1 to invalid.
iml_case() {
	local name=$1 before got
	shift
	lgr_check "imloggregator: $name"
	before=$(settled "$IML" invalid)
	refused "$@" || case_fail "imloggregator: $name: not refused as expected (above)"
	got=$(settled "$IML" invalid)
	[ "$got" = $((before + 1)) ] || case_fail "imloggregator: $name: invalid went from $before to $got, not +1"
}
iml_case "an expired client certificate (TLS 1.3) -> certificate_expired" 45 -tls1_3 -alpn h2 "${exp[@]}"
iml_case "an expired client certificate (TLS 1.2) -> certificate_expired" 45 -tls1_2 -alpn h2 "${exp[@]}"
iml_case "TLS 1.1 -> protocol_version" 70 --no-alpn -tls1_1 "${old[@]}" -alpn h2 "${good[@]}"

# ---- omfirehose egress ----------------------------------------------------------------------------------------
LGR_PORT=$egress_port
eg_case() {
	lgr_check "omfirehose egress: $1"
	shift
	refused "$@" || case_fail "egress: not refused as expected (above)"
}
eg_case "no client certificate (TLS 1.3) -> certificate_required" 116 -tls1_3 -alpn h2
eg_case "no client certificate (TLS 1.2) -> handshake_failure" 40 -tls1_2 -alpn h2
eg_case "a certificate of another CA -> unknown_ca" 48 -alpn h2 "${oth[@]}"
eg_case "an expired certificate -> certificate_expired" 45 -alpn h2 "${exp[@]}"
eg_case "TLS 1.0 -> protocol_version" 70 --no-alpn -tls1 "${old[@]}" -alpn h2 "${good[@]}"
eg_case "TLS 1.1 -> protocol_version" 70 --no-alpn -tls1_1 "${old[@]}" -alpn h2 "${good[@]}"
eg_case "no ALPN -> no_application_protocol" 120 --no-alpn "${good[@]}"
eg_case "only ALPN http/1.1 -> no_application_protocol" 120 --no-alpn -alpn http/1.1 "${good[@]}"
# sub_status NAME WANT ARGS...: a peer.js subscriber that the server ends with status WANT.
sub_status() {
	local name=$1 want=$2 st
	shift 2
	lgr_check "omfirehose egress: $name"
	lgr_subscriber "$name" --method BatchedReceiver --selectors '[{"source_id":"tls","log":{}}]' "$@"
	lgr_subscriber_wait "$name"
	st=$(lgr_subscriber_status "$name")
	[ "$(lgr_json "$st" code 2>/dev/null)" = "$want" ] || case_fail "egress: $name: status $st, expected $want"
}
sub_status "a plaintext gRPC client -> UNAVAILABLE" 14 --target "127.0.0.1:$egress_port"
sub_status "a certificate whose SAN is not in tls.permittedpeers -> PERMISSION_DENIED" 7 \
	--target "127.0.0.1:$egress_port" --tls --ca "$P/ca.crt" --cert "$P/wrongsan.crt" --key "$P/wrongsan.key" \
	--name doppler
[ "$(settled "$OMF" subscriptions)" = 0 ] || case_fail "egress: a refused client is counted as a subscription"

# ---- omfirehose gateway ---------------------------------------------------------------------------------------
LGR_PORT=$gw_port
gw_case() {
	lgr_check "omfirehose gateway: $1"
	shift
	refused "$@" || case_fail "gateway: not refused as expected (above)"
}
gw_case "a client certificate of another CA -> unknown_ca" 48 "${oth[@]}"
gw_case "an expired client certificate -> certificate_expired" 45 "${exp[@]}"
gw_case "TLS 1.0 -> protocol_version" 70 -tls1 "${old[@]}"
gw_case "TLS 1.1 -> protocol_version" 70 -tls1_1 "${old[@]}"
lgr_check "omfirehose gateway: plaintext HTTP to the TLS port gets no HTTP answer"
code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 10 -H 'Authorization: bearer admin-token' \
	"http://127.0.0.1:$gw_port/api/v1/read/tls" 2>/dev/null)
[ "$code" = 000 ] || case_fail "gateway: plaintext HTTP got an HTTP answer ($code)"
lgr_check "omfirehose gateway: no client certificate and no ALPN (HTTP/1.1) is served, as documented"
code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 10 --http1.1 --no-alpn --cacert "$P/ca.crt" \
	-H 'Authorization: bearer admin-token' "https://localhost:$gw_port/api/v1/read/tls" 2>&1)
[ "$code" = 200 ] || case_fail "gateway: a reader without a client certificate and ALPN got '$code', not 200"

# ---- after the refusals: a good subscriber gets what is sent ---------------------------------------------------
lgr_check "a good subscriber after all the refusals receives 100 envelopes"
lgr_subscriber good --target "127.0.0.1:$egress_port" "${LGR_PEER_TLS[@]}" --name doppler \
	--method BatchedReceiver --selectors '[{"source_id":"tls","log":{}}]'
lgr_wait_for "1 subscription" lgr_stat_is "$S" "$OMF" subscriptions 1
lgr_peer send --target "127.0.0.1:$in_port" "${LGR_PEER_TLS[@]}" --name doppler --method BatchSender --batch 10 \
	--gen 100 --source-id tls >"$W/send.out" 2>&1
lgr_wait_for "100 envelopes at the good subscriber" lgr_lines_reach "$W/good.jsonl" 100
lgr_subscriber_stop good

# ---- omdoppler ------------------------------------------------------------------------------------------------
errs_ge() { lgr_stat_ge "$S" "omdoppler\\($1\\)" router.errors 2; }
for r in expired plain tls11 noalpn; do
	lgr_check "omdoppler: the $r router is refused, counted and retried"
	lgr_wait_for "$r: router.errors >= 2" errs_ge "$r"
	[ "$(lgr_stat "$S" "omdoppler\\($r\\)" router.connects)" = 0 ] || case_fail "omdoppler: the $r router was connected"
	[ "$(lgr_stat "$S" "omdoppler\\($r\\)" egress)" = 0 ] || case_fail "omdoppler: envelopes went to the $r router"
	case $r in
	expired) why='certificate verify failed' ;;
	plain) why='TLS: ' ;;
	tls11) why='protocol version' ;;
	noalpn) why='ALPN h2' ;;
	esac
	grep -q "omdoppler($r): router 127.0.0.1:[0-9]*: unreachable: .*$why" "$W/internal.log" ||
		case_fail "omdoppler: the $r router's refusal was not logged with its reason ($why)"
done
[ "$(lgr_count "$W/exp.rec" "##LGR-$tok##")" = 0 ] && [ "$(lgr_count "$W/plain.rec" "##LGR-$tok##")" = 0 ] ||
	case_fail "omdoppler: a refused router recorded envelopes"

lgr_alive || lgr_fail "rsyslogd died"
rel_figures "cases=$((ncase + 6)) failed=${#failures[@]}"
lgr_check "rsyslogd stops cleanly on SIGTERM$([ "$LGR_VALGRIND" = 1 ] && echo ', valgrind clean')"
lgr_stop
if [ ${#failures[@]} -gt 0 ]; then
	printf '%s: failed checks:\n' "$LGR_TEST" >&2
	printf '  %s\n' "${failures[@]}" >&2
	lgr_fail "${#failures[@]} TLS checks failed"
fi
lgr_pass
