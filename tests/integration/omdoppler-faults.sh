#!/usr/bin/env bash
# shellcheck disable=SC2119,SC2317 # lgr_init takes no script arguments; checks run through lgr_wait_for
# omdoppler-faults.sh: omdoppler when routers fail: killed and restarted under load, dead beside a live one,
# stalling their reads, ending streams as the real router does, presenting a certificate with the wrong SAN or from
# another CA. Routers are grpc-js (tests/tools/grpc-peer/peer.js router) with mutual TLS; load comes through
# imloggregator (role router, so envelopes pass unchanged), one input, ruleset and omdoppler action per scenario.
#
# Oracle:
#   - restart: a router is killed while a paced sender keeps sending, then started again on its port. The sender
#     sees every call end OK (the agent kept accepting), router.errors grows while it is down, the restarted router
#     receives envelopes again, and at the end ingress == egress + dropped.egress exactly, dropped.egress 0 (the
#     buffer was large enough), every recorded envelope is one that was sent, and twice only as many as omdoppler
#     counted in resent (the killed router read them, its confirmation died with it);
#   - one dead: routers = [dead, live]: every envelope arrives at the live router exactly once, nothing dropped,
#     router.errors grows (the dead one is retried);
#   - stall: the router stops reading (HTTP/2 flow control stops omdoppler): with buffer.size 300, 20000 envelopes
#     sent fast are all acknowledged, reach omdoppler (ingress 20000) and another action of the same ruleset
#     writes all 20000 (rsyslog is not blocked), omdoppler drops (dropped.egress > 0); after the stall ends,
#     ingress == egress + dropped.egress exactly and every recorded envelope was sent, none twice;
#   - EOF: a router that ends each stream as the real Go router does (UNKNOWN "EOF" after the half-close), with
#     streams recycled every second: every envelope arrives exactly once, router.errors 0;
#   - refused: a router whose certificate carries the wrong DNS SAN (its CN is "doppler", which must not count) and
#     one whose certificate comes from another CA receive nothing; router.errors grows, egress stays 0;
#   - rsyslogd exits 0 on SIGTERM (valgrind clean under LGR_VALGRIND=1).
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
lgr_init
lgr_bg_init
lgr_need_peer
lgr_pki

# Certificates a client must refuse: the right CA but the SAN "wrongname" (CN doppler), and another CA.
(
	cd "$LGR_PKI" || exit 1
	openssl req -newkey rsa:2048 -nodes -keyout wrongsan.key -out wrongsan.csr -subj "/CN=doppler" 2>/dev/null &&
		printf 'subjectAltName=DNS:wrongname,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n' >wrongsan.ext &&
		openssl x509 -req -in wrongsan.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out wrongsan.crt -days 2 \
			-extfile wrongsan.ext 2>/dev/null &&
		openssl req -x509 -newkey rsa:2048 -nodes -keyout otherca.key -out otherca.crt -days 2 \
			-subj "/CN=other-ca" 2>/dev/null &&
		openssl req -newkey rsa:2048 -nodes -keyout otherdoppler.key -out otherdoppler.csr -subj "/CN=doppler" \
			2>/dev/null &&
		printf 'subjectAltName=DNS:doppler,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n' >od.ext &&
		openssl x509 -req -in otherdoppler.csr -CA otherca.crt -CAkey otherca.key -CAcreateserial \
			-out otherdoppler.crt -days 2 -extfile od.ext 2>/dev/null
) || lgr_fail "cannot make the refused certificates"

tok=$(lgr_token)
router_tls=(--tls --ca "$LGR_PKI/ca.crt" --cert "$LGR_PKI/doppler.crt" --key "$LGR_PKI/doppler.key")
lgr_router restart "${router_tls[@]}" --records "$LGR_WORK/restart-1.rec" --token "$tok"
p_restart=$LGR_PORT
pid_restart=$LGR_ROUTER_PID
lgr_router live "${router_tls[@]}" --records "$LGR_WORK/live.rec" --token "$tok"
p_live=$LGR_PORT
lgr_router dead "${router_tls[@]}" --records "$LGR_WORK/dead.rec" --token "$tok"
p_dead=$LGR_PORT
lgr_router_kill "$LGR_ROUTER_PID" # its port now refuses connections
lgr_router stall "${router_tls[@]}" --records "$LGR_WORK/stall.rec" --token "$tok" --stall-file "$LGR_WORK/stall.on"
p_stall=$LGR_PORT
lgr_router eof "${router_tls[@]}" --records "$LGR_WORK/eof.rec" --token "$tok" --eof
p_eof=$LGR_PORT
lgr_router wrongsan --tls --ca "$LGR_PKI/ca.crt" --cert "$LGR_PKI/wrongsan.crt" --key "$LGR_PKI/wrongsan.key" \
	--records "$LGR_WORK/wrongsan.rec" --token "$tok"
p_wrongsan=$LGR_PORT
lgr_router otherca --tls --ca "$LGR_PKI/ca.crt" --cert "$LGR_PKI/otherdoppler.crt" --key "$LGR_PKI/otherdoppler.key" \
	--records "$LGR_WORK/otherca.rec" --token "$tok"
p_otherca=$LGR_PORT

tls_in="tls.cacert=\"$LGR_PKI/ca.crt\" tls.mycert=\"$LGR_PKI/metron.crt\" tls.myprivkey=\"$LGR_PKI/metron.key\""
tls_out="tls.cacert=\"$LGR_PKI/ca.crt\" tls.mycert=\"$LGR_PKI/client.crt\" tls.myprivkey=\"$LGR_PKI/client.key\""
conf=$LGR_WORK/rsyslog.conf
{
	printf 'module(load="impstats" interval="1" log.syslog="off" log.file="%s" format="legacy")\n' "$LGR_WORK/stats.log"
	printf 'module(load="%s")\nmodule(load="%s")\n' "$(lgr_module imloggregator)" "$(lgr_module omdoppler)"
	printf 'template(name="plainmsg" type="string" string="%%msg%%\\n")\n'
	for s in restart live stall eof wrongsan otherca; do
		printf 'input(type="imloggregator" port="0" listenPortFileName="%s/%s.in" role="router" ruleset="%s" %s)\n' \
			"$LGR_WORK" "$s" "$s" "$tls_in"
	done
	cat <<EOF
ruleset(name="restart") {
	action(type="omdoppler" name="restart" routers=["127.0.0.1:$p_restart"] streams="3" buffer.size="1000000" $tls_out)
}
ruleset(name="live") {
	action(type="omdoppler" name="live" routers=["127.0.0.1:$p_dead", "127.0.0.1:$p_live"] streams="4" $tls_out)
}
ruleset(name="stall") {
	action(type="omfile" file="$LGR_WORK/stall.all" template="plainmsg")
	action(type="omdoppler" name="stall" routers=["127.0.0.1:$p_stall"] streams="2" buffer.size="300" $tls_out)
}
ruleset(name="eof") {
	action(type="omdoppler" name="eof" routers=["127.0.0.1:$p_eof"] streams="2" recycleInterval="1000" $tls_out)
}
ruleset(name="wrongsan") {
	action(type="omdoppler" name="wrongsan" routers=["127.0.0.1:$p_wrongsan"] $tls_out)
}
ruleset(name="otherca") {
	action(type="omdoppler" name="otherca" routers=["127.0.0.1:$p_otherca"] $tls_out)
}
EOF
} | lgr_conf_write "$conf"

lgr_check "rsyslogd starts with six omdoppler actions"
lgr_start "$conf"
declare -A in_port
for s in restart live stall eof wrongsan otherca; do
	lgr_wait_port "$LGR_WORK/$s.in"
	in_port[$s]=$LGR_PORT
done
st=$LGR_WORK/stats.log
obj() { printf 'omdoppler\\(%s\\)' "$1"; }

# send NAME SCENARIO ARGS...: peer.js send to the scenario's input, output in NAME.out, dump in NAME.jsonl.
send() {
	local name=$1 s=$2
	shift 2
	lgr_peer send --target "127.0.0.1:${in_port[$s]}" "${LGR_PEER_TLS[@]}" --name metron --source-id "$name" \
		--dump "$LGR_WORK/$name.jsonl" "$@" >"$LGR_WORK/$name.out" 2>"$LGR_WORK/$name.err"
}
# sent_ok NAME N: the send ended with every call OK and N envelopes acknowledged.
sent_ok() {
	local end
	end=$(lgr_peer_line "$LGR_WORK/$1.out" "done")
	[ -n "$end" ] || { cat "$LGR_WORK/$1.err" >&2; lgr_fail "$1: the sender gave no result"; }
	[ "$(lgr_json "$end" code)" = 0 ] || lgr_fail "$1: a call failed: $end"
	[ -z "$2" ] || [ "$(lgr_json "$end" acked)" = "$2" ] || lgr_fail "$1: $(lgr_json "$end" acked) acknowledged, not $2"
}
# unique_subset DUMP RECORDS...: every record is an envelope of DUMP (equal field by field), none twice (with
# MAXDUP=N in the environment, at most N records repeat an earlier one).
unique_subset() {
	local dump=$1 f
	shift
	for f in "$@"; do [ -f "$f" ] || : >"$f"; done
	python3 - "$dump" "$tok" "$LGR_PEER_DIR" "${MAXDUP:-0}" "$@" <<'EOF'
import sys
sys.path.insert(0, sys.argv[3])
import records
dump, tok, maxdup, files = sys.argv[1], sys.argv[2], int(sys.argv[4]), sys.argv[5:]
want = {(e.get("source_id", ""), e["timestamp"]): e for e in records.read_jsonl(dump)}
seen, problems, dups = set(), [], 0
for f in files:
    recs, errs = records.read_records(f, tok)
    problems += errs
    for r in recs:
        k = r.key()
        if k in seen:
            dups += 1
            if dups > maxdup:
                problems.append("%r recorded twice (%d repeated records allowed)" % (k, maxdup))
        seen.add(k)
        if k not in want:
            problems.append("%r was never sent" % (k,))
            continue
        problems += ["%r: %s" % (k, d) for d in records.compare(r, want[k], None)]
print("%d sent, %d recorded, %d repeated, %d problems" % (len(want), len(seen), dups, len(problems)))
for p in problems[:20]:
    print("  " + p)
sys.exit(1 if problems else 0)
EOF
}
count_recs() { lgr_record_count "$1" "$tok"; }
recs_ge() { [ "$(count_recs "$1")" -ge "$2" ]; }

lgr_check "restart: a router killed under load and started again on its port"
send restart restart --method BatchSender --batch 5 --gen 0 --interval-ms 5 --payload-size 100 \
	--stop-file "$LGR_WORK/restart.stop" &
sender=$!
lgr_wait_for "records at the first router" recs_ge "$LGR_WORK/restart-1.rec" 200
lgr_router_kill "$pid_restart"
errs0=$(lgr_stat "$st" "$(obj restart)" router.errors)
lgr_wait_for "router.errors to grow while the router is down" lgr_stat_ge "$st" "$(obj restart)" router.errors \
	$((errs0 + 1))
lgr_router restart2 "${router_tls[@]}" --port "$p_restart" --records "$LGR_WORK/restart-2.rec" --token "$tok"
[ "$LGR_PORT" = "$p_restart" ] || lgr_fail "the router did not get its port back"
lgr_wait_for "records at the restarted router" recs_ge "$LGR_WORK/restart-2.rec" 200
touch "$LGR_WORK/restart.stop"
wait "$sender"
sent_ok restart ""
nr=$(lgr_json "$(lgr_peer_line "$LGR_WORK/restart.out" "done")" acked)
lgr_wait_for "omdoppler ingress=$nr" lgr_stat_is "$st" "$(obj restart)" ingress "$nr"
lgr_wait_for "ingress == egress + dropped.egress" lgr_stat_sum_is "$st" "$(obj restart)" ingress egress dropped.egress
[ "$(lgr_stat "$st" "$(obj restart)" dropped.egress)" = 0 ] || lgr_fail "restart: envelopes were dropped"
resent=$(lgr_stat "$st" "$(obj restart)" resent)
MAXDUP=$resent unique_subset "$LGR_WORK/restart.jsonl" "$LGR_WORK/restart-1.rec" "$LGR_WORK/restart-2.rec" ||
	lgr_fail "restart: the routers recorded envelopes that were not sent, or more twice than omdoppler resent ($resent)"
got=$(($(count_recs "$LGR_WORK/restart-1.rec") + $(count_recs "$LGR_WORK/restart-2.rec")))
lgr_say "restart: $nr sent, $(lgr_stat "$st" "$(obj restart)" egress) egress, $resent resent, $got records in all (repeats included)"

lgr_check "one dead router beside a live one: everything arrives at the live one"
send live live --method BatchSender --batch 10 --gen 3000 --payload-size 50
sent_ok live 3000
lgr_wait_for "3000 records at the live router" recs_ge "$LGR_WORK/live.rec" 3000
lgr_records check --out "$LGR_WORK/live.rec" --token "$tok" --expect "$LGR_WORK/live.jsonl" --ip 127.0.0.1 --exact ||
	lgr_fail "live: the live router did not receive exactly the envelopes sent"
lgr_wait_for "live: egress=3000" lgr_stat_is "$st" "$(obj live)" egress 3000
[ "$(lgr_stat "$st" "$(obj live)" dropped.egress)" = 0 ] || lgr_fail "live: envelopes were dropped"
lgr_stat_ge "$st" "$(obj live)" router.errors 1 || lgr_fail "live: the dead router's failures are not counted"
grep -q "omdoppler(live): router 127.0.0.1:$p_dead: unreachable" "$LGR_WORK/internal.log" ||
	lgr_fail "live: the dead router was not logged as unreachable"

lgr_check "stall: a router that stops reading; omdoppler drops oldest and counts, rsyslog is not blocked"
touch "$LGR_WORK/stall.on"
lgr_wait_for "the router to stall" grep -q '"event":"stalled"' "$LGR_WORK/stall.out"
send stall stall --method BatchSender --batch 100 --gen 20000 --payload-size 300
sent_ok stall 20000
stall_lines() { [ -f "$LGR_WORK/stall.all" ] && [ "$(wc -l <"$LGR_WORK/stall.all")" -ge 20000 ]; }
lgr_wait_for "the omfile action beside omdoppler to write all 20000" stall_lines
lgr_wait_for "omdoppler ingress=20000" lgr_stat_is "$st" "$(obj stall)" ingress 20000
lgr_stat_ge "$st" "$(obj stall)" dropped.egress 1 || lgr_fail "stall: omdoppler dropped nothing"
lgr_say "stall: $(lgr_stat "$st" "$(obj stall)" dropped.egress) dropped while the router stalled"
lgr_wait_for "the drops to be logged" grep -q 'omdoppler(stall): [0-9]* envelopes dropped, oldest first' \
	"$LGR_WORK/internal.log"
rm -f "$LGR_WORK/stall.on"
lgr_wait_for "ingress == egress + dropped.egress after the stall" lgr_stat_sum_is "$st" "$(obj stall)" ingress egress \
	dropped.egress
lgr_wait_for "the router to record what omdoppler sent" lgr_stat_is "$st" "$(obj stall)" egress \
	"$(count_recs "$LGR_WORK/stall.rec")"
unique_subset "$LGR_WORK/stall.jsonl" "$LGR_WORK/stall.rec" ||
	lgr_fail "stall: the router recorded envelopes that were not sent, or some twice"

lgr_check "EOF: streams ended as the real router ends them, recycled every second: nothing lost, no error"
send eof eof --method BatchSender --batch 4 --gen 1500 --interval-ms 2 --payload-size 20
sent_ok eof 1500
lgr_wait_for "1500 records at the EOF router" recs_ge "$LGR_WORK/eof.rec" 1500
lgr_records check --out "$LGR_WORK/eof.rec" --token "$tok" --expect "$LGR_WORK/eof.jsonl" --ip 127.0.0.1 --exact ||
	lgr_fail "eof: the router did not receive exactly the envelopes sent"
recycled() { [ "$(grep -c '"end":"half-close"' "$LGR_WORK/eof.out")" -ge 3 ]; }
lgr_wait_for "streams to be recycled (3 half-closes at the EOF router)" recycled
lgr_wait_for "eof: egress=1500" lgr_stat_is "$st" "$(obj eof)" egress 1500
[ "$(lgr_stat "$st" "$(obj eof)" router.errors)" = 0 ] || lgr_fail "eof: the router's EOF was counted as an error"

lgr_check "refused: a certificate with the wrong SAN, and one from another CA"
send wrongsan wrongsan --method BatchSender --batch 10 --gen 100
send otherca otherca --method BatchSender --batch 10 --gen 100
for s in wrongsan otherca; do
	sent_ok "$s" 100
	lgr_wait_for "$s: router.errors >= 2" lgr_stat_ge "$st" "$(obj "$s")" router.errors 2
	[ "$(lgr_stat "$st" "$(obj "$s")" egress)" = 0 ] || lgr_fail "$s: egress is not 0"
	[ "$(count_recs "$LGR_WORK/$s.rec")" = 0 ] || lgr_fail "$s: the router received envelopes"
	[ "$(lgr_stat "$st" "$(obj "$s")" router.connects)" = 0 ] || lgr_fail "$s: a connection was counted"
done
grep -F 'omdoppler' "$LGR_WORK/internal.log" | grep -qiE 'certificate|verify' ||
	lgr_fail "the refused certificates were not logged"

lgr_check "rsyslogd stops cleanly on SIGTERM$([ "$LGR_VALGRIND" = 1 ] && echo ', valgrind clean')"
lgr_stop
lgr_pass
