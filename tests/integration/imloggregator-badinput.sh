#!/usr/bin/env bash
# shellcheck disable=SC2119,SC2317 # lgr_init takes no script arguments; checks run through lgr_wait_for
# imloggregator-badinput.sh: a gRPC input (role="router", mutual TLS, maxMessageSize="64k") refuses every kind of
# bad input with the right answer, counts and logs it, and stays up for the good clients, one of which streams
# through it all.
#
# Oracle, for each case (each from its own connection):
#   - malformed protobuf (Send, Sender, BatchSender, an EnvelopeData that is not protobuf, an EnvelopeData whose
#     payload is not a v1 envelope): the call ends with INVALID_ARGUMENT (3) as grpc-js reports it;
#   - a message over maxMessageSize (Send, Sender): RESOURCE_EXHAUSTED (8);
#   - a request whose stream ends inside a message (its prefix announces 100 bytes, 3 follow; Send and Sender, raw
#     HTTP/2): :status 200 and grpc-status INTERNAL (13), which is what lib/lgr_h2_stream.c answers;
#   - an unknown method: UNIMPLEMENTED (12); content-type text/plain (raw HTTP/2): :status 415 with grpc-status
#     INTERNAL (13), as grpc-go answers;
#   - TLS (openssl s_client, which must fail): no client certificate, TLS 1.3 -> alert 116 certificate_required,
#     TLS 1.2 -> alert 40 handshake_failure; a certificate of another CA -> alert 48 unknown_ca (1.3 and 1.2);
#     a TLS 1.0 client -> alert 70 protocol_version and no ALPN; no ALPN offered, or only http/1.1 -> alert 120
#     no_application_protocol and no ALPN; a plaintext gRPC client (grpc-js) -> UNAVAILABLE (14);
#   - on a second input with tls.permittedpeers=["metron"]: a client whose certificate names only "client" gets
#     PERMISSION_DENIED (7); one with the metron certificate gets through;
#   - every case leaves a new imloggregator line in internal.log that names its problem; every case (malformed, too large, truncated, not permitted, unknown method,
#     content-type, each TLS refusal) adds exactly 1 to impstats' invalid (doc/imloggregator.md);
#     rsyslogd is still running. The module logs at most 5 refusals per 10 s per input, so each case starts only
#     once fewer than 5 module lines were logged in the last 11 s (a wait on the log, not a sleep).
# And overall: a Sender stream opened before the first case and paced through all of them ends with OK and every
# envelope it sent arrives; a client sending after the last case gets everything through; the output holds
# exactly those good envelopes (a bad input never becomes a message); ingress counts exactly the good envelopes of
# each input, dropped.ingress is 0; rsyslogd exits 0 on SIGTERM (valgrind clean under LGR_VALGRIND=1).
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
lgr_init
lgr_need_peer
lgr_pki
other=$LGR_WORK/other-pki
bash "$LGR_TOP_SRCDIR/contrib/gen-pki.sh" "$other" >/dev/null 2>&1 || lgr_fail "cannot make the second PKI"

tok=$(lgr_token)
conf=$LGR_WORK/rsyslog.conf
lgr_conf_write "$conf" <<EOF
module(load="impstats" interval="1" log.syslog="off" log.file="$LGR_WORK/stats.log" format="legacy")
module(load="$(lgr_module imloggregator)")
$(lgr_record_template rec "$tok")
input(type="imloggregator" protocol="grpc" address="127.0.0.1" port="0" listenPortFileName="$LGR_WORK/grpc.port"
	ruleset="main" role="router" maxMessageSize="64k" tls.cacert="$LGR_PKI/ca.crt"
	tls.mycert="$LGR_PKI/doppler.crt" tls.myprivkey="$LGR_PKI/doppler.key")
input(type="imloggregator" protocol="grpc" address="127.0.0.2" port="0" listenPortFileName="$LGR_WORK/peers.port"
	ruleset="main" role="router" tls.permittedpeers=["metron"] tls.cacert="$LGR_PKI/ca.crt"
	tls.mycert="$LGR_PKI/doppler.crt" tls.myprivkey="$LGR_PKI/doppler.key")
ruleset(name="main") { action(type="omfile" file="$LGR_WORK/out.bin" template="rec") }
EOF

lgr_check "rsyslogd starts with a TLS gRPC input, maxMessageSize=64k"
lgr_start "$conf"
lgr_wait_port "$LGR_WORK/peers.port"
peers_port=$LGR_PORT
lgr_wait_port "$LGR_WORK/grpc.port"
target=(--target "127.0.0.1:$LGR_PORT" "${LGR_PEER_TLS[@]}" --name doppler)
stats=$LGR_WORK/stats.log
main_obj='imloggregator\(grpc/127\.0\.0\.1:[0-9]+\)'
peers_obj='imloggregator\(grpc/127\.0\.0\.2:[0-9]+\)'
obj=$main_obj

lgr_check "a good Sender stream is open and delivering before the bad input starts"
lgr_peer send "${target[@]}" --method Sender --gen 0 --interval-ms 50 --stop-file "$LGR_WORK/steady.stop" \
	--source-id steady --dump "$LGR_WORK/sent-steady.jsonl" >"$LGR_WORK/steady.out" 2>"$LGR_WORK/steady.err" &
steady=$!
lgr_wait_for "the steady stream's first record" lgr_records_reach "$LGR_WORK/out.bin" "$tok" 1

# The settled value of an impstats counter: read from a line written at least one full interval after now.
stat_lines() { if [ -f "$stats" ]; then grep -cE "$obj: origin=" "$stats"; else echo 0; fi; }
stat_lines_over() { [ "$(stat_lines)" -gt "$1" ]; }
settled_stat() {
	local n0
	n0=$(stat_lines)
	lgr_wait_for "two more impstats lines" stat_lines_over $((n0 + 1))
	lgr_stat "$stats" "$obj" "$1"
}

# The module's lines in internal.log, without the notices of clients that close without TLS close_notify.
module_lines() { grep -F 'imloggregator' "$LGR_WORK/internal.log" 2>/dev/null | grep -v 'unexpected eof while reading'; }
log_mark=0
new_line_matches() { module_lines | tail -n +$((log_mark + 1)) | grep -Eiq -- "$1"; }
# True when fewer than 5 module lines (of any kind, of every input) carry a timestamp of the last 11 seconds: the
# module's log limiter (5 lines per 10 s per input) then lets the next refusal's line through.
limiter_clear() {
	grep -F 'imloggregator' "$LGR_WORK/internal.log" 2>/dev/null | python3 -c 'import datetime, sys
now = datetime.datetime.now(datetime.timezone.utc)
recent = [l for l in sys.stdin if (now - datetime.datetime.fromisoformat(l.split()[0])).total_seconds() < 11]
sys.exit(0 if len(recent) < 5 else 1)'
}

invalid=$(settled_stat invalid)
[ "$invalid" = 0 ] || lgr_fail "invalid is '$invalid' before any bad input"
[ "$(lgr_stat "$stats" "$peers_obj" invalid)" = 0 ] || lgr_fail "invalid of the permittedpeers input is not 0"
ncase=0

# A failed check of one case is reported at once and the test goes on with the next case, so that one run shows
# every case that fails; the test fails at the end. A dead rsyslogd ends it at once.
failures=()
case_fail() {
	printf '%s: FAIL (going on with the next case): %s\n' "$LGR_TEST" "$*" >&2
	failures+=("$*")
}
# wait_briefly CMD...: polls CMD for a sixth of the timeout (the cases' effects are immediate; this only bounds how
# long a missing one delays the run).
wait_briefly() {
	local deadline=$((SECONDS + $(lgr_timeout) / 6))
	while ! "$@"; do
		lgr_alive || lgr_fail "rsyslogd exited"
		[ "$SECONDS" -lt "$deadline" ] || return 1
		sleep 0.05
	done
}

# bad_case NAME DELTA LOG_ERE CMD...: runs CMD, which checks the answer; then a new module line matching LOG_ERE,
# invalid of the input $obj grown by exactly DELTA, rsyslogd alive.
bad_case() {
	local name=$1 delta=$2 ere=$3 before got
	shift 3
	ncase=$((ncase + 1))
	lgr_wait_for "the log limiter's window to clear" limiter_clear
	lgr_check "bad input $ncase: $name"
	before=$(lgr_stat "$stats" "$obj" invalid)
	log_mark=$(module_lines | wc -l)
	"$@" || case_fail "$name: the answer is wrong (above)"
	got=$(settled_stat invalid)
	[ "$got" = $((before + delta)) ] || case_fail "$name: invalid went from $before to $got, expected $((before + delta))"
	wait_briefly new_line_matches "$ere" || case_fail "$name: no new imloggregator line in internal.log matches /$ere/"
	lgr_alive || lgr_fail "rsyslogd died after $name"
}

# grpc_status WANT ARGS...: a peer run whose result line has code WANT.
grpc_status() {
	local want=$1 line
	shift
	line=$(lgr_peer "$@" 2>&1 | grep -E '"event":"(result|done)"' | tail -n 1)
	[ "$(lgr_json "$line" code 2>/dev/null)" = "$want" ] && return 0
	printf 'expected gRPC status %s, the peer said: %s\n' "$want" "$line" >&2
	return 1
}

# h2_answer STATUS GRPC_STATUS ARGS...: a raw HTTP/2 request answered with that :status and grpc-status.
h2_answer() {
	local status=$1 gstatus=$2 line
	shift 2
	line=$(lgr_peer h2 "${target[@]}" "$@" 2>&1 | grep -F '"event":"h2"')
	[ "$(lgr_json "$line" status 2>/dev/null)" = "$status" ] &&
		[ "$(lgr_json "$line" grpc_status 2>/dev/null)" = "$gstatus" ] && return 0
	printf 'expected :status %s and grpc-status %s, got: %s\n' "$status" "$gstatus" "$line" >&2
	return 1
}

# tls_refused ALERT ARGS...: an openssl s_client handshake with ARGS fails with the server's alert number ALERT;
# with --no-alpn first, no ALPN protocol was agreed either.
tls_refused() {
	local alert=$1 no_alpn=0 out rc
	shift
	[ "$1" = --no-alpn ] && { no_alpn=1; shift; }
	out=$LGR_WORK/probe-$ncase.out
	lgr_tls_probe "$out" -CAfile "$LGR_PKI/ca.crt" "$@"
	rc=$?
	if [ "$rc" -eq 0 ] || [ "$rc" -eq 124 ]; then
		cat "$out" >&2
		printf 's_client %s exited %s, expected a failure\n' "$*" "$rc" >&2
		return 1
	fi
	if ! grep -q "SSL alert number $alert\$" "$out"; then
		cat "$out" >&2
		printf 'no alert %s from the server\n' "$alert" >&2
		return 1
	fi
	if [ "$no_alpn" = 1 ] && grep -q '^ALPN protocol:' "$out"; then
		printf 'an ALPN protocol was agreed: %s\n' "$(grep '^ALPN protocol:' "$out")" >&2
		return 1
	fi
}

# What each case's log line must mention (the wording is the module's; these are the words any wording needs).
malformed='malformed|invalid|decode|pars'
too_large='large|size|exhaust|limit|max'
truncated='inside a message|truncat|incomplete|ended'
tls='TLS|SSL|certificate|handshake|ALPN|protocol'
send_path=/loggregator.v2.Ingress/Send
sender_path=/loggregator.v2.Ingress/Sender
batch_path=/loggregator.v2.Ingress/BatchSender
pusher_path=/plumbing.DopplerIngestor/Pusher
# 0x12 0x0a "ab": source_id (field 2) announcing 10 bytes of which 2 follow; 0x0a 0x03 ...: a batch entry cut short.
bad_case "Send with a malformed EnvelopeBatch -> INVALID_ARGUMENT" 1 "$malformed" \
	grpc_status 3 raw "${target[@]}" --path "$send_path" --hex 0a05120a6162
bad_case "Sender with a malformed Envelope -> INVALID_ARGUMENT" 1 "$malformed" \
	grpc_status 3 raw "${target[@]}" --path "$sender_path" --stream --hex 120a6162
bad_case "BatchSender with a malformed EnvelopeBatch -> INVALID_ARGUMENT" 1 "$malformed" \
	grpc_status 3 raw "${target[@]}" --path "$batch_path" --stream --hex 0a03120a61
bad_case "Pusher with a malformed EnvelopeData -> INVALID_ARGUMENT" 1 "$malformed" \
	grpc_status 3 raw "${target[@]}" --path "$pusher_path" --stream --hex 0a05abcd
bad_case "Pusher with an EnvelopeData whose payload is not a v1 envelope -> INVALID_ARGUMENT" 1 "$malformed" \
	grpc_status 3 raw "${target[@]}" --path "$pusher_path" --stream --hex 0a04deadbeef
bad_case "Send with a 70000-byte message over maxMessageSize=64k -> RESOURCE_EXHAUSTED" 1 "$too_large" \
	grpc_status 8 send "${target[@]}" --method Send --gen 1 --payload-size 70000 --source-id big
bad_case "Sender with a 70000-byte message -> RESOURCE_EXHAUSTED" 1 "$too_large" \
	grpc_status 8 send "${target[@]}" --method Sender --gen 1 --payload-size 70000 --source-id big
bad_case "Send whose request ends inside a message -> grpc-status INTERNAL" 1 "$truncated" \
	h2_answer 200 13 --path "$send_path" --hex 0000000064616263
bad_case "Sender whose request ends inside a message -> grpc-status INTERNAL" 1 "$truncated" \
	h2_answer 200 13 --path "$sender_path" --hex 0000000064616263
bad_case "an unknown method -> UNIMPLEMENTED" 1 "Ingress/Nope|unknown|unimplemented" \
	grpc_status 12 raw "${target[@]}" --path /loggregator.v2.Ingress/Nope --hex ''
bad_case "content-type text/plain -> :status 415, grpc-status INTERNAL" 1 "content-type|415" \
	h2_answer 415 13 --path "$send_path" --content-type text/plain --hex 0000000000
bad_case "TLS 1.3 client without a certificate -> alert certificate_required" 1 "$tls" \
	tls_refused 116 -tls1_3 -alpn h2
bad_case "TLS 1.2 client without a certificate -> alert handshake_failure" 1 "$tls" \
	tls_refused 40 -tls1_2 -alpn h2
bad_case "a certificate from another CA (TLS 1.3) -> alert unknown_ca" 1 "$tls" \
	tls_refused 48 -tls1_3 -alpn h2 -cert "$other/client.crt" -key "$other/client.key"
bad_case "a certificate from another CA (TLS 1.2) -> alert unknown_ca" 1 "$tls" \
	tls_refused 48 -tls1_2 -alpn h2 -cert "$other/client.crt" -key "$other/client.key"
bad_case "a TLS 1.0 client -> alert protocol_version" 1 "$tls" \
	tls_refused 70 --no-alpn -tls1 -cipher 'DEFAULT:@SECLEVEL=0' -alpn h2 -cert "$LGR_PKI/client.crt" \
	-key "$LGR_PKI/client.key"
bad_case "a client offering no ALPN -> alert no_application_protocol" 1 "$tls" \
	tls_refused 120 --no-alpn -cert "$LGR_PKI/client.crt" -key "$LGR_PKI/client.key"
bad_case "a client offering only ALPN http/1.1 -> alert no_application_protocol" 1 "$tls" \
	tls_refused 120 --no-alpn -alpn http/1.1 -cert "$LGR_PKI/client.crt" -key "$LGR_PKI/client.key"
bad_case "a plaintext gRPC client on the TLS port -> UNAVAILABLE" 1 "$tls" \
	grpc_status 14 send --target "127.0.0.1:$LGR_PORT" --method Send --gen 1 --source-id plain
obj=$peers_obj
bad_case "a client certificate not in tls.permittedpeers -> PERMISSION_DENIED" 1 "permit" \
	grpc_status 7 send --target "127.0.0.2:$peers_port" "${LGR_PEER_TLS[@]}" --name doppler --method Send --gen 1 \
	--source-id not-permitted
obj=$main_obj

lgr_check "the metron certificate, named in tls.permittedpeers, gets through"
lgr_peer send --target "127.0.0.2:$peers_port" --tls --ca "$LGR_PKI/ca.crt" --cert "$LGR_PKI/metron.crt" \
	--key "$LGR_PKI/metron.key" --name doppler --method Send --batch 5 --gen 5 --source-id permitted \
	--dump "$LGR_WORK/sent-permitted.jsonl" >"$LGR_WORK/permitted.out" 2>&1
line=$(lgr_peer_line "$LGR_WORK/permitted.out" "done")
[ "$(lgr_json "$line" acked 2>/dev/null)" = 5 ] || lgr_fail "the permitted client failed: $(cat "$LGR_WORK/permitted.out")"

lgr_check "a client after the bad input: 50 envelopes through BatchSender end OK"
lgr_peer send "${target[@]}" --method BatchSender --batch 10 --gen 50 --source-id after \
	--dump "$LGR_WORK/sent-after.jsonl" >"$LGR_WORK/after.out" 2>&1
line=$(lgr_peer_line "$LGR_WORK/after.out" "done")
if [ "$(lgr_json "$line" code)" != 0 ] || [ "$(lgr_json "$line" acked)" != 50 ]; then
	lgr_fail "the good client failed: $line"
fi

lgr_check "the stream opened before the bad input ends with OK, every envelope acknowledged"
touch "$LGR_WORK/steady.stop"
wait "$steady"
line=$(lgr_peer_line "$LGR_WORK/steady.out" result)
[ -n "$line" ] || { cat "$LGR_WORK/steady.err" >&2; lgr_fail "the steady stream gave no result"; }
[ "$(lgr_json "$line" code)" = 0 ] || lgr_fail "the steady stream failed: $line"
[ "$(lgr_json "$line" acked)" = "$(lgr_json "$line" envelopes)" ] || lgr_fail "steady: not all acknowledged: $line"

cat "$LGR_WORK/sent-steady.jsonl" "$LGR_WORK/sent-after.jsonl" >"$LGR_WORK/expect-main.jsonl"
n=$(wc -l <"$LGR_WORK/expect-main.jsonl")
cat "$LGR_WORK/expect-main.jsonl" "$LGR_WORK/sent-permitted.jsonl" >"$LGR_WORK/expect.jsonl"
nall=$((n + 5))
lgr_check "impstats: ingress=$n (the good envelopes), invalid=19 (every bad case), dropped.ingress=0"
lgr_wait_for "ingress=$n" lgr_stat_is "$stats" "$obj" ingress "$n"
invalid=$(settled_stat invalid)
[ "$invalid" = 19 ] || case_fail "invalid is $invalid at the end, expected 19 (every bad case)"
[ "$(lgr_stat "$stats" "$obj" dropped.ingress)" = 0 ] || lgr_fail "dropped.ingress is not 0"
[ "$(lgr_stat "$stats" "$obj" ingress)" = "$n" ] || lgr_fail "ingress changed after reaching $n"
lgr_wait_for "ingress=5 on the permittedpeers input" lgr_stat_is "$stats" "$peers_obj" ingress 5
[ "$(lgr_stat "$stats" "$peers_obj" invalid)" = 1 ] || case_fail "the permittedpeers input's invalid is not 1"
lgr_wait_for "$nall records in out.bin" lgr_records_reach "$LGR_WORK/out.bin" "$tok" "$nall"

lgr_check "rsyslogd stops cleanly on SIGTERM$([ "$LGR_VALGRIND" = 1 ] && echo ', valgrind clean')"
lgr_stop

lgr_check "the output holds exactly the $nall good envelopes, each once, as sent"
lgr_records check --out "$LGR_WORK/out.bin" --token "$tok" --expect "$LGR_WORK/expect.jsonl" --ip 127.0.0.1 \
	--exact || lgr_fail "the output is not exactly the good envelopes"
if [ ${#failures[@]} -gt 0 ]; then
	printf '%s: failed checks:\n' "$LGR_TEST" >&2
	printf '  %s\n' "${failures[@]}" >&2
	lgr_fail "${#failures[@]} bad-input checks failed"
fi
lgr_pass
