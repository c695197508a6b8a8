#!/usr/bin/env bash
# shellcheck disable=SC2119,SC2317 # lgr_init takes no script arguments; checks run through lgr_wait_for
# imloggregator-udp.sh: v1 dropsonde datagrams sent to a protocol="udp" input (role="agent", defaultTags with the
# agent's deployment/job/index/ip) arrive converted to v2 as the real agent converts them; bad datagrams are
# counted and change nothing else.
#
# Oracle (the expected v2 envelopes are written out below from wire.md section 6 and the reference conversion:
# timestamp from the v1 envelope, tags = v1 tags + origin, deployment, job, index, ip (filled from defaultTags
# where the datagram has none), __v1_type; source_id = tags.source_id (default: origin; removed from tags), for
# LogMessage app_id, for ContainerMetric applicationId, for HttpStartStop the applicationId UUID; then the agent
# rules: defaultTags where absent, counter totals accumulated):
#   - LogMessage (OUT with binary payload and full identity; ERR from an emitter without identity), ValueMetric,
#     CounterEvent (twice: totals 5 then 8), ContainerMetric, HttpStartStop, Error each arrive exactly once, field by
#     field as expected (records.py), %msg% the payload bytes, fromhost-ip 127.0.0.1;
#   - a LogMessage without message_type, an envelope without origin, 40 bytes of garbage and a datagram larger than
#     maxMessageSize="4k" each add 1 to invalid, log one line and produce no message; a good datagram sent after
#     them arrives; the module logs nothing else;
#   - impstats: ingress = the 9 good datagrams, invalid = 4, dropped.ingress = 0;
#   - rsyslogd exits 0 on SIGTERM (valgrind clean under LGR_VALGRIND=1).
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
lgr_init
lgr_need_peer

tok=$(lgr_token)
conf=$LGR_WORK/rsyslog.conf
lgr_conf_write "$conf" <<EOF
module(load="impstats" interval="1" log.syslog="off" log.file="$LGR_WORK/stats.log" format="legacy")
module(load="$(lgr_module imloggregator)")
$(lgr_record_template rec "$tok")
input(type="imloggregator" protocol="udp" address="127.0.0.1" port="0" listenPortFileName="$LGR_WORK/udp.port"
	ruleset="udp" role="agent" maxMessageSize="4k"
	defaultTags=["deployment:cf-dflt", "job:agent-job", "index:9", "ip:10.9.9.9", "az:z1"])
ruleset(name="udp") { action(type="omfile" file="$LGR_WORK/out.bin" template="rec") }
EOF

python3 - "$LGR_WORK" <<'EOF' || lgr_fail "cannot write the datagrams"
import base64, json, os, struct, sys
work = sys.argv[1]
b64 = lambda b: base64.b64encode(b).decode()
T = 1731000010000000000
def uuid(low, high):
    """events.UUID as the reference converter prints it: the two halves little-endian, 8-4-4-4-12 hex."""
    b = struct.pack("<QQ", low, high).hex()
    return "%s-%s-%s-%s-%s" % (b[0:8], b[8:12], b[12:16], b[16:20], b[20:32])
ident = {"deployment": "cf", "job": "diego-cell", "index": "idx-1", "ip": "10.0.16.7"}
dflt = {"deployment": "cf-dflt", "job": "agent-job", "index": "9", "ip": "10.9.9.9"}
def v1(origin, kind, ts, body, tags=None, identity=True):
    e = {"origin": origin, "eventType": kind, "timestamp": str(ts)}
    if identity:
        e.update(ident)
    if tags:
        e["tags"] = tags
    e.update(body)
    return e
def v2(sid, iid, ts, kind, tags, body, identity=True, origin=None):
    t = dict(tags)
    t.update(ident if identity else dflt)
    t.update({"origin": origin, "__v1_type": kind, "az": "z1"})
    e = {"timestamp": str(ts), "source_id": sid, "instance_id": iid, "deprecated_tags": {}, "tags": t}
    e.update(body)
    return e
payload = b"udp log \x00\xff\n\ttab"
req = (0x0706050403020100, 0x0f0e0d0c0b0a0908)
app = (0x8877665544332211, 0x00ffeeddccbbaa99)
good, want = [], []
good.append(v1("rep", "LogMessage", T + 1, {"logMessage": {
    "message": b64(payload), "message_type": "OUT", "timestamp": str(T - 1000), "app_id": "app-guid-1",
    "source_type": "APP/PROC/WEB", "source_instance": "0"}}, tags={"custom": "yes"}))
want.append(v2("app-guid-1", "0", T + 1, "LogMessage", {"custom": "yes", "source_type": "APP/PROC/WEB"},
               {"log": {"payload": b64(payload), "type": "OUT"}}, origin="rep"))
good.append(v1("cc", "LogMessage", T + 2, {"logMessage": {
    "message": b64(b"staging failed"), "message_type": "ERR", "timestamp": str(T + 2), "source_type": "STG"}},
    identity=False))
want.append(v2("cc", "", T + 2, "LogMessage", {"source_type": "STG"},
               {"log": {"payload": b64(b"staging failed"), "type": "ERR"}}, identity=False, origin="cc"))
good.append(v1("metron-x", "ValueMetric", T + 3, {"valueMetric": {"name": "cpu", "value": 42.5, "unit": "percent"}},
               tags={"source_id": "custom-src", "instance_id": "i-7"}))
want.append(v2("custom-src", "i-7", T + 3, "ValueMetric", {"instance_id": "i-7"},
               {"gauge": {"metrics": {"cpu": {"unit": "percent", "value": 42.5}}}}, origin="metron-x"))
for i, (delta, total) in enumerate([(5, 5), (3, 8)]):
    good.append(v1("gorouter", "CounterEvent", T + 4 + i, {"counterEvent": {"name": "requests", "delta": str(delta)}},
                   tags={"instance_id": "c-1"}))
    want.append(v2("gorouter", "c-1", T + 4 + i, "CounterEvent", {},
                   {"counter": {"name": "requests", "delta": str(delta), "total": str(total)}}, origin="gorouter"))
good.append(v1("rep", "ContainerMetric", T + 6, {"containerMetric": {
    "applicationId": "app-guid-2", "instanceIndex": 3, "cpuPercentage": 12.5, "memoryBytes": "1048576",
    "diskBytes": "2097152", "memoryBytesQuota": "4194304", "diskBytesQuota": "8388608"}}))
want.append(v2("app-guid-2", "3", T + 6, "ContainerMetric", {}, {"gauge": {"metrics": {
    "cpu": {"unit": "percentage", "value": 12.5}, "memory": {"unit": "bytes", "value": 1048576},
    "disk": {"unit": "bytes", "value": 2097152}, "memory_quota": {"unit": "bytes", "value": 4194304},
    "disk_quota": {"unit": "bytes", "value": 8388608}}}}, origin="rep"))
good.append(v1("gorouter", "HttpStartStop", T + 7, {"httpStartStop": {
    "startTimestamp": str(T), "stopTimestamp": str(T + 1500000),
    "requestId": {"low": str(req[0]), "high": str(req[1])}, "peerType": "Client", "method": "GET",
    "uri": "/v2/info", "remoteAddress": "10.0.0.9:5000", "userAgent": "curl/8.0", "statusCode": 200,
    "contentLength": "512", "applicationId": {"low": str(app[0]), "high": str(app[1])}, "instanceIndex": 1,
    "instanceId": "inst-guid", "forwarded": ["10.0.0.1", "10.0.0.2"]}}))
want.append(v2(uuid(*app), "1", T + 7, "HttpStartStop", {
    "request_id": uuid(*req), "peer_type": "Client", "method": "GET", "uri": "/v2/info",
    "remote_address": "10.0.0.9:5000", "user_agent": "curl/8.0", "status_code": "200", "content_length": "512",
    "routing_instance_id": "inst-guid", "forwarded": "10.0.0.1\n10.0.0.2"},
    {"timer": {"name": "http", "start": str(T), "stop": str(T + 1500000)}}, origin="gorouter"))
good.append(v1("api", "Error", T + 8, {"error": {"source": "cloud_controller", "code": 42, "message": "boom"}}))
want.append(v2("api", "", T + 8, "Error", {"source": "cloud_controller", "code": "42"},
               {"log": {"payload": b64(b"boom"), "type": "OUT"}}, origin="api"))
last = v1("rep", "LogMessage", T + 9, {"logMessage": {"message": b64(b"after the bad ones"), "message_type": "OUT",
                                                      "timestamp": str(T + 9), "app_id": "app-guid-1",
                                                      "source_type": "APP/PROC/WEB", "source_instance": "1"}})
want_last = v2("app-guid-1", "1", T + 9, "LogMessage", {"source_type": "APP/PROC/WEB"},
               {"log": {"payload": b64(b"after the bad ones"), "type": "OUT"}}, origin="rep")
bad = [
    {"v1": good[0], "drop": [[8, 2]]},  # LogMessage.message_type (required) removed
    {"v1": good[6], "drop": [[1]]},  # Envelope.origin (required) removed
    {"hex": "ff" * 8 + "0a" + "ffffffff0f" + "00" * 26},  # not a protobuf message
    {"v1": v1("rep", "LogMessage", T + 10, {"logMessage": {"message": b64(b"x" * 6000), "message_type": "OUT",
                                                           "timestamp": str(T + 10)}})},  # over maxMessageSize
]
with open(os.path.join(work, "good.jsonl"), "w") as f:
    for e in good:
        f.write(json.dumps({"v1": e}) + "\n")
with open(os.path.join(work, "bad.jsonl"), "w") as f:
    for e in bad:
        f.write(json.dumps(e) + "\n")
with open(os.path.join(work, "last.jsonl"), "w") as f:
    f.write(json.dumps({"v1": last}) + "\n")
with open(os.path.join(work, "expect.jsonl"), "w") as f:
    for e in want + [want_last]:
        f.write(json.dumps(e) + "\n")
EOF

lgr_check "rsyslogd starts with a UDP imloggregator input on port 0"
lgr_start "$conf"
lgr_wait_port "$LGR_WORK/udp.port"
stats=$LGR_WORK/stats.log
obj='imloggregator\(udp/127\.0\.0\.1:[0-9]+\)'

# udp_send FILE: every line of FILE as one datagram.
udp_send() {
	local line
	line=$(lgr_peer udp --target "127.0.0.1:$LGR_PORT" --input "$1" 2>&1 | grep -F '"event":"result"')
	[ "$(lgr_json "$line" sent 2>/dev/null)" = "$(wc -l <"$1")" ] || lgr_fail "sending $1 failed: $line"
}

lgr_check "8 good datagrams (LogMessage x2, ValueMetric, CounterEvent x2, ContainerMetric, HttpStartStop, Error)"
udp_send "$LGR_WORK/good.jsonl"
lgr_wait_for "8 records in out.bin" lgr_records_reach "$LGR_WORK/out.bin" "$tok" 8
lgr_wait_for "ingress=8" lgr_stat_is "$stats" "$obj" ingress 8

lgr_check "bad datagrams: no message_type, no origin, garbage, over maxMessageSize: invalid=4"
udp_send "$LGR_WORK/bad.jsonl"
lgr_wait_for "invalid=4" lgr_stat_is "$stats" "$obj" invalid 4
lgr_alive || lgr_fail "rsyslogd died after the bad datagrams"
module_lines() { grep -cF 'imloggregator(udp/' "$LGR_WORK/internal.log"; }
module_lines_are() { [ "$(module_lines)" -eq "$1" ]; }
lgr_wait_for "a log line for each bad datagram" module_lines_are 4

lgr_check "a good datagram after the bad ones arrives"
udp_send "$LGR_WORK/last.jsonl"
lgr_wait_for "9 records in out.bin" lgr_records_reach "$LGR_WORK/out.bin" "$tok" 9
lgr_wait_for "ingress=9" lgr_stat_is "$stats" "$obj" ingress 9
[ "$(lgr_stat "$stats" "$obj" invalid)" = 4 ] || lgr_fail "invalid is $(lgr_stat "$stats" "$obj" invalid), expected 4"
[ "$(lgr_stat "$stats" "$obj" dropped.ingress)" = 0 ] || lgr_fail "dropped.ingress is not 0"

lgr_check "rsyslogd stops cleanly on SIGTERM$([ "$LGR_VALGRIND" = 1 ] && echo ', valgrind clean')"
lgr_stop

module_lines_are 4 || lgr_fail "the module logged more than the 4 bad datagrams: $(grep -F imloggregator "$LGR_WORK/internal.log")"

lgr_check "the output holds exactly the 9 good envelopes, converted as the agent converts them"
lgr_records check --out "$LGR_WORK/out.bin" --token "$tok" --expect "$LGR_WORK/expect.jsonl" --ip 127.0.0.1 \
	--exact || lgr_fail "the converted envelopes differ from the expected ones"
lgr_pass
