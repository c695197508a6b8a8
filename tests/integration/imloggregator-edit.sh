#!/usr/bin/env bash
# shellcheck disable=SC2119,SC2317 # lgr_init takes no script arguments; checks run through lgr_wait_for
# imloggregator-edit.sh: a ruleset that edits $!loggregator changes its own message only, though the router input
# shares the string nodes of repeated values (source id, instance id, tag values, log type) between the messages it
# builds (doc/imloggregator.md, "Throughput").
#
# Oracle: 96 Log envelopes from a grpc-js sender (BatchSender, 16 per batch, so that each batch of messages the input
# hands to rsyslog shares its nodes), all with the same source id, instance id, tags and type; every third payload is
# "edit-N", whose message the ruleset changes (set a tag and the source id, unset the instance id and the log type,
# set a new tag); of the others, every sixth one (counting from 1) is "swap-N", whose ruleset unsets $!loggregator
# whole and sets a member of a new one (the input builds the message's root with a constant key: the unset must
# release it as any other), and the rest "keep-N". An omfile action after the edit writes each message's members:
# the edited ones show the new values, every other one exactly what was sent, and each message's whole
# $!loggregator is as expected (python compares the JSON). rsyslogd exits 0 (valgrind clean under LGR_VALGRIND=1).
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
lgr_init
lgr_need_peer

conf=$LGR_WORK/rsyslog.conf
lgr_conf_write "$conf" <<EOF
module(load="$(lgr_module imloggregator)")
template(name="members" type="list") {
	property(name="msg") constant(value="\t")
	property(name="\$!loggregator!source_id") constant(value="\t")
	property(name="\$!loggregator!instance_id") constant(value="\t")
	property(name="\$!loggregator!tags!app_name") constant(value="\t")
	property(name="\$!loggregator!tags!job") constant(value="\t")
	property(name="\$!loggregator") constant(value="\n")
}
input(type="imloggregator" protocol="grpc" address="127.0.0.1" port="0" listenPortFileName="$LGR_WORK/router.port"
	ruleset="router" role="router" tls="off")
ruleset(name="router" queue.type="Direct") {
	if \$msg startswith "edit-" then {
		set \$!loggregator!tags!app_name = "changed";
		set \$!loggregator!source_id = "other-app";
		unset \$!loggregator!instance_id;
		unset \$!loggregator!log!type;
		set \$!loggregator!tags!edited = "yes";
	}
	if \$msg startswith "swap-" then {
		unset \$!loggregator;
		set \$!loggregator!note = "replaced";
	}
	action(type="omfile" file="$LGR_WORK/out.tsv" template="members")
}
EOF

n=96
python3 - "$LGR_WORK" "$n" <<'EOF' || lgr_fail "cannot write the envelopes"
import base64, json, sys
work, n = sys.argv[1], int(sys.argv[2])
with open(work + "/in.jsonl", "w") as f:
    for i in range(n):
        payload = ("edit-%d" if i % 3 == 0 else "swap-%d" if i % 6 == 1 else "keep-%d") % i
        f.write(json.dumps({
            "timestamp": str(1795216269089010000 + i), "source_id": "0f8d2c2e-8b5a-4a5f-9d52-2c3f0b6f9a11",
            "instance_id": "3", "tags": {"app_name": "web", "job": "diego-cell", "source_type": "APP/PROC/WEB"},
            "log": {"payload": base64.b64encode(payload.encode()).decode(), "type": "ERR"}}) + "\n")
EOF

lgr_check "rsyslogd starts with a router input (h2c) and a ruleset that edits every third message"
lgr_start "$conf"
lgr_wait_port "$LGR_WORK/router.port"

lgr_check "$n envelopes in batches of 16 through BatchSender end OK"
lgr_peer send --target "127.0.0.1:$LGR_PORT" --method BatchSender --batch 16 --input "$LGR_WORK/in.jsonl" \
	>"$LGR_WORK/send.out" 2>"$LGR_WORK/send.err"
end=$(lgr_peer_line "$LGR_WORK/send.out" "done")
[ -n "$end" ] || { cat "$LGR_WORK/send.err" >&2; lgr_fail "the sender gave no result"; }
[ "$(lgr_json "$end" code)" = 0 ] || lgr_fail "the call failed: $end"

lines() { [ "$(wc -l <"$LGR_WORK/out.tsv" 2>/dev/null || echo 0)" -ge "$1" ]; }
lgr_wait_for "$n lines in out.tsv" lines "$n"

lgr_check "edited and replaced trees show the change, every other one what was sent"
python3 - "$LGR_WORK/out.tsv" "$n" <<'EOF' || lgr_fail "a message shows another message's edit, or lost its own"
import json, sys
path, n = sys.argv[1], int(sys.argv[2])
sid = "0f8d2c2e-8b5a-4a5f-9d52-2c3f0b6f9a11"
tags = {"app_name": "web", "job": "diego-cell", "source_type": "APP/PROC/WEB"}
seen, bad = set(), 0
for line in open(path, encoding="utf-8"):
    msg, source_id, instance_id, app_name, job, tree = line.rstrip("\n").split("\t")
    i = int(msg.split("-")[1])
    seen.add(i)
    want = {"timestamp": str(1795216269089010000 + i), "source_id": sid, "instance_id": "3",
            "deprecated_tags": {}, "tags": dict(tags), "log": {"type": "ERR"}}
    if msg.startswith("edit-"):
        want["source_id"] = "other-app"
        del want["instance_id"]
        want["tags"]["app_name"] = "changed"
        want["tags"]["edited"] = "yes"
        del want["log"]["type"]
    elif msg.startswith("swap-"):
        want = {"note": "replaced"}
    got_members = (source_id, instance_id, app_name, job)
    want_members = (want.get("source_id", ""), want.get("instance_id", ""),
                    want.get("tags", {}).get("app_name", ""), "diego-cell" if "tags" in want else "")
    if got_members != want_members or json.loads(tree) != want:
        bad += 1
        if bad <= 5:
            print("%s: got %r %s, want %r %s" % (msg, got_members, tree, want_members, json.dumps(want)))
if bad or seen != set(range(n)):
    print("%d of %d messages differ; %d distinct messages written" % (bad, n, len(seen)))
    sys.exit(1)
EOF

lgr_stop
lgr_pass
