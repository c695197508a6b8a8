#!/usr/bin/env python3
"""records.py: reads what rsyslog wrote for imloggregator's messages and compares it with what a peer sent.

The integration tests write every message with the template that `record_template()` describes (lib.sh's
lgr_record_template prints it):

    START %app-name% US %procid% US %syslogseverity-text% US %timereported:::date-rfc3339% US %fromhost-ip% US
    %$!loggregator% US %msg% END LF

START and END carry a random token of the test run, US is the byte 0x1f. %msg% comes last, so the payload bytes may
be anything (NUL, 0xff, newlines, US) except the run's END marker, which a test never puts in a payload.

From each record the envelope is rebuilt: the JSON of $!loggregator with, for a log, "payload" set to the base64
of the %msg% bytes. Expected envelopes are JSON lines in the JSON form of wire.md section 5 with every default field
present (peer.js send --dump writes them), log payloads in base64. A record matches its expected envelope when:

    - the rebuilt envelope equals the expected one, field by field (64-bit integers as strings, tags maps, types);
    - %app-name% is source_id and %procid% is instance_id (either "" or "-" when those are empty);
    - %syslogseverity-text% is "err" for ERR logs, "info" for everything else;
    - %timereported% is the envelope timestamp, to the microsecond (truncated), in any UTC offset;
    - %fromhost-ip% is the address given with --ip;
    - for a type other than log, %msg% is a one-line summary that names the counter, timer, event or a metric.

Records and expected envelopes are paired by (source_id, timestamp) of the expected envelope; a test gives every
envelope of a run its own pair.

Commands (exit 0 when the check holds, 1 with a report of the first differences otherwise):

    records.py check --out FILE --token T --expect FILE [--ip ADDR] [--exact [--allow FILE]] [--in-order]
        every expected envelope is in FILE exactly once; with --exact FILE holds nothing else, except envelopes
        of the --allow file, each at most once and matching it; with --in-order the envelopes of each source_id
        are in FILE in the order of the --expect file.
    records.py count --out FILE --token T [--source-prefix P]
        prints the number of records (whose source_id starts with P).
    records.py agent --default-tags k:v,... < sent.jsonl > expected.jsonl
        applies the agent's rules (wire.md section 4) to envelopes in the order they were sent.
    records.py acked --dump FILE... --results FILE...
        prints the dumped envelopes (peer.js send --dump) that their sender saw acknowledged, from the result lines
        of the same runs: for Send every envelope up to the worker's acked_last, for a stream all of them when it
        ended with OK (peer.js send --gen: timestamps grow with each envelope of a worker).
    records.py payloads --out FILE --token T
        prints, per record, the source_id, timestamp and the hex of %msg% (for diagnosis).
"""
import argparse
import base64
import calendar
import copy
import decimal
import json
import os
import re
import sys

US = b"\x1f"


def markers(token):
    return ("@@LGR-%s@@" % token).encode(), ("##LGR-%s##" % token).encode()


def record_template(token):
    start, end = (m.decode() for m in markers(token))
    return (start + "%app-name%\\037%procid%\\037%syslogseverity-text%\\037%timereported:::date-rfc3339%\\037"
            "%fromhost-ip%\\037%$!loggregator%\\037%msg%" + end + "\\n")


class Record:
    def __init__(self, index, fields):
        self.index = index
        self.app, self.procid, self.severity, self.time, self.ip = (f.decode("utf-8", "replace") for f in fields[:5])
        self.json_text = fields[5]
        self.msg = fields[6]
        self.error = None
        try:
            self.json = json.loads(self.json_text.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            self.json = None
            self.error = "$!loggregator is not JSON (%s): %r" % (e, self.json_text[:200])

    def key(self):
        if not isinstance(self.json, dict):
            return None
        return (self.json.get("source_id"), self.json.get("timestamp"))

    def envelope(self):
        """The envelope as the record carries it: $!loggregator plus the payload from %msg% for a log."""
        env = copy.deepcopy(self.json)
        if isinstance(env, dict) and isinstance(env.get("log"), dict):
            if "payload" in env["log"]:
                self.error = "$!loggregator carries log.payload (it must be left out: the payload is %msg%)"
            env["log"]["payload"] = base64.b64encode(self.msg).decode()
        return env


def read_records(path, token):
    """Every record of the file; malformed ones are reported as errors."""
    start, end = markers(token)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return [], ["%s does not exist (nothing was written)" % path]
    chunks = data.split(start)
    errors = []
    if chunks[0] != b"":
        errors.append("the file does not start with a record: %r" % chunks[0][:200])
    records = []
    for i, chunk in enumerate(chunks[1:]):
        if not chunk.endswith(end + b"\n"):
            errors.append("record %d does not end with the end marker and a newline: %r" % (i, chunk[-200:]))
            continue
        fields = chunk[: -len(end) - 1].split(US, 6)
        if len(fields) != 7:
            errors.append("record %d has %d fields, not 7: %r" % (i, len(fields), chunk[:200]))
            continue
        records.append(Record(i, fields))
    return records, errors


def read_jsonl(path):
    with open(path, "r", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


RFC3339 = re.compile(r"^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$")


def check_time(text, ns):
    """None when text (date-rfc3339) is the timestamp ns to the microsecond, else why not."""
    m = RFC3339.match(text)
    if not m:
        return "timereported %r is not RFC 3339" % text
    y, mo, d, h, mi, s, frac, off = m.groups()
    secs = calendar.timegm((int(y), int(mo), int(d), int(h), int(mi), int(s), 0, 0, 0))
    if off != "Z":
        sign = 1 if off[0] == "+" else -1
        secs -= sign * (int(off[1:3]) * 3600 + int(off[4:6]) * 60)
    if frac is None or len(frac) != 6:
        return "timereported %r does not carry microseconds" % text
    want_s, want_ns = divmod(ns, 10 ** 9)
    if secs != want_s or int(frac) != want_ns // 1000:
        return "timereported %r is not the envelope timestamp %d ns" % (text, ns)
    return None


def summary_names(env):
    if "counter" in env:
        return [env["counter"]["name"]]
    if "timer" in env:
        return [env["timer"]["name"]]
    if "event" in env:
        return [env["event"]["title"]]
    if "gauge" in env:
        return list(env["gauge"]["metrics"].keys())
    return []


def short(v):
    text = repr(v)
    return text if len(text) <= 120 else text[:100] + "...(%d chars)" % len(text)


def diff(path, want, got, out):
    """Appends to out one line per field where got differs from want."""
    if isinstance(want, dict) and isinstance(got, dict):
        for k in sorted(set(want) | set(got)):
            if k not in got:
                out.append("%s%s missing (want %r)" % (path, k, want[k]))
            elif k not in want:
                out.append("%s%s unexpected (%r)" % (path, k, got[k]))
            else:
                diff(path + k + ".", want[k], got[k], out)
    elif type(want) is not type(got) and not (isinstance(want, (int, float)) and isinstance(got, (int, float))
                                               and not isinstance(want, bool) and not isinstance(got, bool)):
        out.append("%s: %r (%s) instead of %r (%s)" % (path.rstrip("."), got, type(got).__name__, want,
                                                       type(want).__name__))
    elif want != got:
        out.append("%s: %s instead of %s" % (path.rstrip("."), short(got), short(want)))


def compare(rec, want, ip):
    """The differences between a record and its expected envelope (empty when it matches)."""
    out = []
    if rec.error:
        return [rec.error]
    got = rec.envelope()
    if rec.error:
        out.append(rec.error)
    diff("", want, got, out)
    empty = ("", "-")
    sid, iid = want.get("source_id", ""), want.get("instance_id", "")
    if not (rec.app == sid or (sid == "" and rec.app in empty)):
        out.append("app-name %r instead of source_id %r" % (rec.app, sid))
    if not (rec.procid == iid or (iid == "" and rec.procid in empty)):
        out.append("procid %r instead of instance_id %r" % (rec.procid, iid))
    sev = "err" if want.get("log", {}).get("type") == "ERR" else "info"
    if rec.severity != sev:
        out.append("severity %r instead of %r" % (rec.severity, sev))
    why = check_time(rec.time, int(want["timestamp"]))
    if why:
        out.append(why)
    if ip is not None and rec.ip != ip:
        out.append("fromhost-ip %r instead of %r" % (rec.ip, ip))
    if "log" not in want:
        names = summary_names(want)
        if rec.msg == b"" or b"\n" in rec.msg:
            out.append("msg %r is not a one-line summary" % rec.msg)
        elif names and not any(n.encode() in rec.msg for n in names):
            out.append("msg %r names none of %r" % (rec.msg, names))
    return out


def cmd_check(args):
    records, errors = read_records(args.out, args.token)
    expected = read_jsonl(args.expect)
    start, end = markers(args.token)
    by_key = {}
    for rec in records:
        by_key.setdefault(rec.key(), []).append(rec)
    seen = set()
    problems = list(errors)
    for want in expected:
        key = (want.get("source_id", ""), want["timestamp"])
        if key in seen:
            problems.append("expected envelope %r given twice (a test error)" % (key,))
            continue
        seen.add(key)
        payload = base64.b64decode(want["log"]["payload"]) if "log" in want else b""
        if start in payload or end in payload:
            problems.append("payload of %r holds the record marker (a test error)" % (key,))
        found = by_key.get(key, [])
        if len(found) != 1:
            problems.append("envelope %r (%s) appears %d times" % (key, envelope_kind(want), len(found)))
            continue
        for d in compare(found[0], want, args.ip):
            problems.append("envelope %r (%s): %s" % (key, envelope_kind(want), d))
    allowed = {}
    for want in read_jsonl(args.allow) if args.allow else []:
        allowed.setdefault((want.get("source_id", ""), want["timestamp"]), want)
    if args.exact:
        extra = []
        for key, found in by_key.items():
            if key in seen:
                continue
            if key not in allowed:
                extra.extend(found)
                continue
            if len(found) != 1:
                problems.append("envelope %r (allowed) appears %d times" % (key, len(found)))
            for d in compare(found[0], allowed[key], args.ip):
                problems.append("envelope %r (allowed): %s" % (key, d))
        if extra:
            problems.append("%d records match no expected envelope, e.g. %r" % (len(extra), extra[0].json_text[:300]))
    if args.in_order:
        problems.extend(order_problems(expected, by_key))
    if problems:
        print("records: %d expected envelopes, %d records, %d problems:" % (len(expected), len(records),
                                                                          len(problems)))
        for p in problems[:40]:
            print("  " + p)
        if len(problems) > 40:
            print("  ... %d more" % (len(problems) - 40))
        return 1
    print("records: all %d expected envelopes match (%d records in the file)" % (len(expected), len(records)))
    return 0


def order_problems(expected, by_key):
    """Each source_id's records, in file order, follow the order of the expected envelopes."""
    last = {}
    problems = []
    for want in expected:
        sid = want.get("source_id", "")
        found = by_key.get((sid, want["timestamp"]), [])
        if len(found) != 1:
            continue  # reported already
        prev = last.get(sid)
        if prev is not None and found[0].index < prev[0]:
            problems.append("source_id %r: the envelope of timestamp %s is written before that of %s, sent earlier"
                            % (sid, want["timestamp"], prev[1]))
        last[sid] = (found[0].index, want["timestamp"])
    return problems


def envelope_kind(env):
    for k in ("log", "counter", "gauge", "timer", "event"):
        if k in env:
            return k if k != "log" else "log " + env["log"].get("type", "OUT")
    return "no message"


def cmd_count(args):
    if not os.path.exists(args.out):
        print(0)
        return 0
    records, errors = read_records(args.out, args.token)
    for e in errors:
        print("records: " + e, file=sys.stderr)
    n = 0
    for r in records:
        sid = r.json.get("source_id", "") if isinstance(r.json, dict) else ""
        if sid.startswith(args.source_prefix):
            n += 1
    print(n)
    return 1 if errors else 0


def tag_text(value):
    """A deprecated tag's value as the real agent writes it into tags: decimals as Go's
    strconv.FormatFloat(v, 'f', -1, 64) (the shortest digits that read back, never an exponent)."""
    if "text" in value:
        return value["text"]
    if "integer" in value:
        return str(int(value["integer"]))
    if "decimal" in value:
        return format(decimal.Decimal(repr(float(value["decimal"]))).normalize(), "f")
    return ""


def agent_apply(envs, default_tags):
    """The agent's rules (wire.md section 4, doc/imloggregator.md "Roles", as the real agent applies them), on
    envelopes in the order they were sent: source_id from tags.origin when that key exists, else from a text
    deprecated origin; deprecated tags copied into tags, replacing; default tags where absent; counter totals."""
    totals = {}
    out = []
    for env in envs:
        env = copy.deepcopy(env)
        tags = env.setdefault("tags", {})
        dtags = env.get("deprecated_tags", {})
        if env.get("source_id", "") == "":
            if "origin" in tags:
                env["source_id"] = tags["origin"]
            elif "text" in dtags.get("origin", {}):
                env["source_id"] = dtags["origin"]["text"]
        for k, v in dtags.items():
            tags[k] = tag_text(v)
        for k, v in default_tags:
            if k not in tags:
                tags[k] = v
        if "counter" in env:
            c = env["counter"]
            key = (c["name"], env["source_id"], tuple(sorted(tags.items())))
            if int(c["total"]) == 0 and int(c["delta"]) != 0:
                c["total"] = str(totals.get(key, 0) + int(c["delta"]))
            totals[key] = int(c["total"])
        out.append(env)
    return out


def cmd_agent(args):
    tags = []
    for kv in filter(None, args.default_tags.split(",")):
        k, v = kv.split(":", 1)
        tags.append((k, v))
    envs = [json.loads(line) for line in sys.stdin if line.strip()]
    for env in agent_apply(envs, tags):
        print(json.dumps(env))
    return 0


def cmd_acked(args):
    """The dumped envelopes whose sender saw them acknowledged (peer.js send result lines)."""
    acked_last = {}
    for path in args.results:
        with open(path, "r", encoding="utf-8") as f:
            for line in f:
                r = json.loads(line) if line.startswith("{") else {}
                if r.get("event") != "result":
                    continue
                if r["acked_last"] is not None and (r["method"] == "Send" or r["code"] == 0):
                    acked_last[r["source_id"]] = int(r["acked_last"])
    for path in args.dump:
        for env in read_jsonl(path):
            last = acked_last.get(env["source_id"])
            if last is not None and int(env["timestamp"]) <= last:
                print(json.dumps(env))
    return 0


def cmd_payloads(args):
    records, errors = read_records(args.out, args.token)
    for e in errors:
        print("error: " + e)
    for r in records:
        k = r.key()
        print("%r %s" % (k, r.msg.hex()))
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check")
    c.add_argument("--out", required=True)
    c.add_argument("--token", required=True)
    c.add_argument("--expect", required=True)
    c.add_argument("--ip")
    c.add_argument("--exact", action="store_true")
    c.add_argument("--allow")
    c.add_argument("--in-order", action="store_true")
    c.set_defaults(fn=cmd_check)
    c = sub.add_parser("count")
    c.add_argument("--out", required=True)
    c.add_argument("--token", required=True)
    c.add_argument("--source-prefix", default="")
    c.set_defaults(fn=cmd_count)
    c = sub.add_parser("agent")
    c.add_argument("--default-tags", default="")
    c.set_defaults(fn=cmd_agent)
    c = sub.add_parser("acked")
    c.add_argument("--dump", action="append", required=True)
    c.add_argument("--results", action="append", required=True)
    c.set_defaults(fn=cmd_acked)
    c = sub.add_parser("payloads")
    c.add_argument("--out", required=True)
    c.add_argument("--token", required=True)
    c.set_defaults(fn=cmd_payloads)
    c = sub.add_parser("template")
    c.add_argument("--token", required=True)
    c.set_defaults(fn=lambda a: print(record_template(a.token)) or 0)
    args = p.parse_args()
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
