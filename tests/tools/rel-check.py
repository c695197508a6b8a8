#!/usr/bin/env python3
"""rel-check.py: what a receiver recorded against what senders sent and had acknowledged (the reliability tests).

    rel-check.py --records FILE[,FILE...] --sent NAME[,NAME...] --dir DIR [--strict] [--ignore-partial-last]
                 [--max-duplicates N] [--lost-near FILE:N]

Each sender NAME has DIR/NAME.jsonl (peer.js send --dump: one envelope per line, with source_id and timestamp) and
DIR/NAME.out (peer.js send's result lines, with acked_last per worker). A record file has one line per envelope
received, "R SOURCE_ID TIMESTAMP E" (the envelope's source_id and timestamp in nanoseconds).

Checks, printing each problem:
  - every recorded envelope was sent by one of the senders, and none is recorded twice (with --max-duplicates N,
    at most N recordings repeat an earlier one: a sender that resends what a lost connection may have delivered);
  - every acknowledged envelope (of a worker's calls up to its acked_last: a stream that ended OK, or the prefix of
    unary Send calls that ended OK) is recorded; with --lost-near FILE:N, except those among the N envelopes its
    sender sent right after the last one recorded in FILE (what a receiver killed while writing FILE had taken in
    but not written yet: lost with its process);
  - with --strict, every envelope sent is recorded (nothing may have been lost at all).
--ignore-partial-last: the last line of each record file may be cut short (its writer was killed): it is skipped
when it does not have the form above.
Prints one summary line: sent=N acked=N recorded=N duplicates=N lost_unacked=N (sent, not acknowledged, not
recorded).
Exit status 0 when there is no problem, 1 otherwise.
"""
import argparse
import bisect
import json
import re
import sys

LINE = re.compile(r"^R (\S*) (\d+) E$")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", required=True)
    ap.add_argument("--sent", required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--strict", action="store_true")
    ap.add_argument("--ignore-partial-last", action="store_true")
    ap.add_argument("--max-duplicates", type=int, default=0)
    ap.add_argument("--lost-near")
    a = ap.parse_args()

    sent, acked, order = set(), set(), {}  # order: source_id -> timestamps sent, ascending
    for name in a.sent.split(","):
        last = {}  # source_id -> acked_last (each worker has its own source_id)
        with open("%s/%s.out" % (a.dir, name)) as f:
            for line in f:
                r = json.loads(line)
                if r.get("event") == "result" and r.get("acked_last") is not None:
                    last[r["source_id"]] = int(r["acked_last"])
        try:
            dump = open("%s/%s.jsonl" % (a.dir, name))
        except FileNotFoundError:
            continue
        with dump:
            for line in dump:
                e = json.loads(line)
                key = (e.get("source_id", ""), int(e["timestamp"]))
                sent.add(key)
                order.setdefault(key[0], []).append(key[1])
                if key[0] in last and key[1] <= last[key[0]]:
                    acked.add(key)

    problems, seen, dups = [], set(), []
    for path in a.records.split(","):
        try:
            lines = open(path, errors="replace").read().split("\n")
        except FileNotFoundError:
            lines = []
        if lines and lines[-1] == "":
            lines.pop()
        for i, line in enumerate(lines):
            m = LINE.match(line)
            if not m:
                if a.ignore_partial_last and i == len(lines) - 1:
                    continue
                problems.append("%s: bad record %r" % (path, line))
                continue
            key = (m.group(1), int(m.group(2)))
            if key in seen:
                dups.append(key)
            seen.add(key)
            if key not in sent:
                problems.append("%r recorded, never sent" % (key,))
    if len(dups) > a.max_duplicates:
        for k in dups[:10]:
            problems.append("%r recorded twice" % (k,))
        problems.append("%d recordings repeat an earlier one, more than the %d allowed" % (len(dups),
                                                                                        a.max_duplicates))
    missing = sorted(acked - seen)
    near = []
    if a.lost_near:
        path, n = a.lost_near.rsplit(":", 1)
        last = {}  # source_id -> the last timestamp recorded in path
        for line in open(path, errors="replace"):
            m = LINE.match(line.rstrip("\n"))
            if m:
                last[m.group(1)] = max(last.get(m.group(1), 0), int(m.group(2)))
        for src in order:
            order[src].sort()
        for k in missing:
            ts = order.get(k[0], [])
            if k[0] in last and 0 < bisect.bisect_left(ts, k[1]) - bisect.bisect_left(ts, last[k[0]]) <= int(n):
                near.append(k)
        near_set = set(near)
        missing = [k for k in missing if k not in near_set]
    for k in missing[:10]:
        problems.append("%r acknowledged, not recorded" % (k,))
    if len(missing) > 10:
        problems.append("... %d acknowledged envelopes not recorded in all" % len(missing))
    if a.strict:
        lost = sorted(sent - seen)
        if lost:
            problems.append("%d envelopes sent, not recorded (first %r)" % (len(lost), lost[0]))
    print("sent=%d acked=%d recorded=%d duplicates=%d lost_near=%d lost_unacked=%d" % (
        len(sent), len(acked), len(seen), len(dups), len(near), len(sent - acked - seen)))
    for p in problems[:30]:
        print("  " + p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
