#!/usr/bin/env bash
# shellcheck disable=SC2119,SC2317 # lgr_init takes no script arguments; checks run through lgr_wait_for
# omdoppler-imfile.sh: app logs tailed from files reach a router as Log envelopes. One rsyslogd:
#   - imfile app.log (tag "app") -> ruleset tpl -> omdoppler with sourceId / instanceId / sourceType templates;
#   - imfile plain.log (tag "webapp"), err.log (tag "errapp", severity error) and warn.log (tag "warnapp", severity
#     warning) -> ruleset dflt -> omdoppler with the default mapping;
# both actions to an independent grpc-js router (tests/tools/grpc-peer/peer.js router) over mutual TLS.
#
# Oracle:
#   - every complete line appended to a file arrives exactly once as a Log envelope whose payload is the line, byte
#     for byte (a multi-byte UTF-8 line included), without its newline;
#   - a line written without its newline is not sent until the newline is appended, and then arrives whole;
#   - through the templates: source_id, instance_id and tags["source_type"] are the templates' text; by default:
#     source_id the app-name (the imfile tag), instance_id "" (imfile's procid is "-"), source_type "APP";
#   - log.type OUT for imfile's default severity (notice) and for warning, ERR for error;
#   - the timestamp is the time the line was read (within the test's run), in ns;
#   - impstats: each action's ingress == egress == its lines, dropped.egress 0, router.errors 0;
#   - rsyslogd exits 0 on SIGTERM (valgrind clean under LGR_VALGRIND=1) and logs nothing from omdoppler.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
lgr_init
lgr_bg_init
lgr_need_peer
lgr_pki

tok=$(lgr_token)
rec=$LGR_WORK/router.rec
lgr_router router --tls --ca "$LGR_PKI/ca.crt" --cert "$LGR_PKI/doppler.crt" --key "$LGR_PKI/doppler.key" \
	--records "$rec" --token "$tok"
port=$LGR_PORT

logs=$LGR_WORK/logs
mkdir -p "$logs"
: >"$logs/app.log"
: >"$logs/plain.log"
: >"$logs/err.log"
: >"$logs/warn.log"

tls_out="tls.cacert=\"$LGR_PKI/ca.crt\" tls.mycert=\"$LGR_PKI/metron.crt\" tls.myprivkey=\"$LGR_PKI/metron.key\""
conf=$LGR_WORK/rsyslog.conf
lgr_conf_write "$conf" <<EOF
module(load="impstats" interval="1" log.syslog="off" log.file="$LGR_WORK/stats.log" format="legacy")
module(load="imfile")
module(load="$(lgr_module omdoppler)")
template(name="sid" type="string" string="6f1c4b7e-2d3a-4c5b-9e8f-0a1b2c3d4e5f")
template(name="iid" type="string" string="3")
template(name="stype" type="string" string="APP/PROC/WEB")
input(type="imfile" file="$logs/app.log" tag="app" ruleset="tpl")
input(type="imfile" file="$logs/plain.log" tag="webapp" ruleset="dflt")
input(type="imfile" file="$logs/err.log" tag="errapp" severity="error" ruleset="dflt")
input(type="imfile" file="$logs/warn.log" tag="warnapp" severity="warning" ruleset="dflt")
ruleset(name="tpl") {
	action(type="omdoppler" name="tpl" routers=["127.0.0.1:$port"] sourceId="sid" instanceId="iid"
		sourceType="stype" batch.flushinterval="20" $tls_out)
}
ruleset(name="dflt") {
	action(type="omdoppler" name="dflt" routers=["127.0.0.1:$port"] streams="2" batch.flushinterval="20" $tls_out)
}
EOF

t0=$(date +%s)
lgr_check "rsyslogd starts with imfile -> omdoppler -> the router"
lgr_start "$conf"
lgr_wait_for "the stats of both actions" lgr_stat_is "$LGR_WORK/stats.log" 'omdoppler\(dflt\)' ingress 0

# want FILE SID IID STYPE TYPE LINE: LINE is expected from FILE with those fields (expect.jsonl, one JSON line).
want() {
	python3 -c 'import json, sys
f, sid, iid, stype, typ, line = sys.argv[1:]
print(json.dumps({"file": f, "source_id": sid, "instance_id": iid, "source_type": stype, "type": typ,
                  "payload": line}, ensure_ascii=False))' "$@" >>"$LGR_WORK/expect.jsonl"
}
guid=6f1c4b7e-2d3a-4c5b-9e8f-0a1b2c3d4e5f
utf8_line='grüße aus Köln: 日本語のログ ✓ 😀 ende'
partial_head='a line written in two parts, '
partial_tail='its end came later'

# check_records: the router's records are exactly expect.jsonl (as a multiset), field by field.
check_records() {
	python3 - "$rec" "$tok" "$LGR_WORK/expect.jsonl" "$t0" "$(($(date +%s) + 1))" <<'EOF'
import json, sys
rec, tok, expect_file, t0, t1 = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
start, end = ("@@LGR-%s@@" % tok).encode(), ("##LGR-%s##\n" % tok).encode()
data = open(rec, "rb").read()
got, errors = [], []
for chunk in data.split(end):
    if not chunk:
        continue
    if not chunk.startswith(start):
        errors.append("not a record: %r" % chunk[:80])
        continue
    fields = chunk[len(start):].split(b"\x1f", 6)
    env = json.loads(fields[5])
    ts = int(env.get("timestamp", "0"))
    if not t0 - 1 <= ts // 10**9 <= t1:
        errors.append("timestamp %d is not the time of the run (%d..%d)" % (ts, t0, t1))
    if "log" not in env:
        errors.append("not a log envelope: %s" % fields[5])
        continue
    got.append({"source_id": env.get("source_id", ""), "instance_id": env.get("instance_id", ""),
                "source_type": env.get("tags", {}).get("source_type"), "type": env["log"].get("type", "OUT"),
                "payload": fields[6].decode("utf-8", "surrogateescape"),
                "other_tags": sorted(k for k in env.get("tags", {}) if k != "source_type")})
expect = [json.loads(l) for l in open(expect_file, encoding="utf-8")]
for e in expect:
    e.pop("file")
    e["other_tags"] = []
key = lambda e: json.dumps(e, sort_keys=True)
g, x = sorted(map(key, got)), sorted(map(key, expect))
if g != x:
    for k in sorted(set(g) | set(x)):
        if g.count(k) != x.count(k):
            errors.append("received %d times, expected %d times: %s" % (g.count(k), x.count(k), k))
for e in errors[:20]:
    print("check_records: " + e, file=sys.stderr)
sys.exit(1 if errors else 0)
EOF
}

lgr_check "lines appended to app.log arrive through the templates; a line without its newline waits"
want app "$guid" 3 APP/PROC/WEB OUT "first line of the app"
want app "$guid" 3 APP/PROC/WEB OUT "$utf8_line"
printf '%s\n%s\n%s' "first line of the app" "$utf8_line" "$partial_head" >>"$logs/app.log"
lgr_wait_for "2 records at the router" lgr_records_reach "$rec" "$tok" 2
lgr_wait_for "omdoppler(tpl) egress=2" lgr_stat_is "$LGR_WORK/stats.log" 'omdoppler\(tpl\)' egress 2
check_records || lgr_fail "the router's records differ (the partial line must not have been sent yet)"

lgr_check "the partial line is sent once its newline is appended, whole"
want app "$guid" 3 APP/PROC/WEB OUT "$partial_head$partial_tail"
want app "$guid" 3 APP/PROC/WEB OUT "last line of the app"
printf '%s\n%s\n' "$partial_tail" "last line of the app" >>"$logs/app.log"
lgr_wait_for "4 records at the router" lgr_records_reach "$rec" "$tok" 4
check_records || lgr_fail "the router's records differ"

lgr_check "default mapping: source_id the app-name, instance_id empty, source_type APP; ERR for severity error"
for i in 1 2 3; do
	want plain webapp "" APP OUT "plain line $i"
	printf 'plain line %s\n' "$i" >>"$logs/plain.log"
done
want plain webapp "" APP OUT "$utf8_line"
printf '%s\n' "$utf8_line" >>"$logs/plain.log"
want err errapp "" APP ERR "something failed"
printf 'something failed\n' >>"$logs/err.log"
want warn warnapp "" APP OUT "a warning is not an error"
printf 'a warning is not an error\n' >>"$logs/warn.log"
lgr_wait_for "10 records at the router" lgr_records_reach "$rec" "$tok" 10
check_records || lgr_fail "the router's records differ"

lgr_check "impstats: ingress == egress == the lines of each action, nothing dropped, no router errors"
lgr_wait_for "omdoppler(tpl) egress=4" lgr_stat_is "$LGR_WORK/stats.log" 'omdoppler\(tpl\)' egress 4
lgr_wait_for "omdoppler(dflt) egress=6" lgr_stat_is "$LGR_WORK/stats.log" 'omdoppler\(dflt\)' egress 6
for a in tpl:4 dflt:6; do
	for c in ingress:"${a#*:}" dropped.egress:0 router.errors:0; do
		v=$(lgr_stat "$LGR_WORK/stats.log" "omdoppler\\(${a%%:*}\\)" "${c%%:*}")
		[ "$v" = "${c#*:}" ] || lgr_fail "omdoppler(${a%%:*}) ${c%%:*} is '$v', expected ${c#*:}"
	done
	lgr_stat_ge "$LGR_WORK/stats.log" "omdoppler\\(${a%%:*}\\)" router.connects 1 ||
		lgr_fail "omdoppler(${a%%:*}) counted no router connection"
done

lgr_check "rsyslogd stops cleanly on SIGTERM$([ "$LGR_VALGRIND" = 1 ] && echo ', valgrind clean')"
lgr_stop
check_records || lgr_fail "the router's records changed at the stop"
if grep -F 'omdoppler' "$LGR_WORK/internal.log"; then
	lgr_fail "omdoppler logged messages (above)"
fi
lgr_pass
