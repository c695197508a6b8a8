#!/usr/bin/env bash
# shellcheck disable=SC2119,SC2317 # lgr_init takes no script arguments; checks run through lgr_wait_for
# omfirehose-drains.sh: rsyslog as Cloud Foundry's syslog agent: envelopes that reach imloggregator (role router)
# go through omfirehose's drains to the syslog and HTTPS drains each app is bound to (drains.md).
#
# Peers: a second rsyslogd as the real receiver (imptcp and imtcp with octet counting, and imtcp over TLS with the
# ossl driver checking the client certificate, x509/certvalid), raw TCP recorders that keep every byte, an HTTPS
# receiver (python ssl) recording every request, an HTTPS bindings endpoint requiring a client certificate; the
# envelopes are sent with the grpc-js peer.
#
# Oracle:
#   - drains.md's vector: exactly "118 <14>1 1970-01-01T00:00:00.012345+00:00 test-hostname test-app-id [APP/2] -
#     [tags@47450 source_type="APP"] just a test\n" on the wire;
#   - an app bound with drain-data=all gets, byte for byte and octet counted, its logs (OUT 14, ERR 11, the
#     org.space.app hostname from its tags with CF's cleaning, a multi-line payload kept in one frame, NUL bytes
#     removed), a counter, a gauge of two metrics (two lines, in name order), a timer and an event as CF writes
#     them; disable-metadata drops the tags element; drain-type=logs drops the event; include-log-types keeps only
#     the types named; format=logplex writes Heroku's line; the aggregate drain gets every source; rsyslog's imptcp
#     takes each frame as one message (the multi-line payload too) and imtcp over TLS receives the lines after
#     checking our client certificate;
#   - https:// posts one line per request (POST, text/plain, basic auth from the URL, the path and query as
#     given); https-batch:// posts the lines together;
#   - refused bindings (a scheme outside the list, an address in drains.denyRanges) are counted (invalid_drains)
#     and told into the app's own stream ("Invalid Scheme ftp for syslog drain url ftp://...", "Resolved ip address
#     for syslog drain with url ... is blacklisted"), which the app's working drain receives, and which the
#     gateway's recent envelopes of the app (/api/v1/read/app-x, curl) hold;
#   - one app bound to a dead drain and a live one under load: the live one receives every envelope exactly once,
#     the dead one's losses are counted (dropped.egress) and told into the app's stream ("N messages lost for
#     application app-load in user provided syslog drain with url syslog://127.0.0.1:P") with N adding up to at
#     least what must have been lost and at most what was counted;
#   - per-drain impstats objects, named by the anonymised URL and the app ("omfirehose-drain(syslog://127.0.0.1:P app
#     app-load)", no userinfo, no query): the dead drain's dropped equals the losses told for it and, with the other
#     drains' dropped, exactly the action's dropped.egress; its egress is 0; the live drain's dropped is 0 and its
#     egress exactly the frames its receiver got; the objects of unbound drains go;
#   - Heroku Logplex HTTPS drain (format=logplex): application/logplex-1 batches of at most 100 KiB whose
#     Logplex-Msg-Count is their frame count, a 25,000-byte message split into 10,000-byte lines; its receiver held
#     up, the drain overflows and tells it in its stream as Logplex does: "Error L10 (output buffer overflow): N
#     messages dropped since <time>." first in a batch, the N adding up to exactly the drain's dropped, the other
#     frames to exactly its egress;
#   - a bindings file change adds and removes drains without a restart (same pid), and a HUP reads it again;
#   - credentials in drain URLs never appear in rsyslog's output or logs;
#   - drains.bindingsUrl: bindings fetched over mutual TLS, polled, a change applied; a drain unbound while its
#     writer still holds lines (a receiver that reads nothing) counts them as lost: dropped.egress grows by exactly
#     the envelopes it got minus the lines the kernel took (its egress);
#   - drains.static: apps bound in rsyslog.conf get their lines byte for byte, with the entry's hostname (rsyslog
#     imtcp receives "<14>1 ... org.space.static-app app-s [APP/PROC/WEB/0] - [tags@47450 ...] static line") or "-"
#     without one (a raw recorder, octet counted); a URL bound both in the file and statically is one drain (the
#     vector arrives once, with the file's hostname); the static bindings stay after a file change and a HUP, and
#     alone they turn the drains on; `rsyslogd -N1` refuses a malformed entry with a message naming it, without the
#     credentials of its URL;
#   - rsyslogd exits 0 on SIGTERM with a dead drain still retrying (valgrind clean under LGR_VALGRIND=1).
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
lgr_init
lgr_bg_init
lgr_need_peer
lgr_pki

W=$LGR_WORK
PKI=$LGR_PKI

# ---- peers ----------------------------------------------------------------------------------------------------
cat >"$W/peers.py" <<'EOF'
"""Test peers: raw TCP recorders, an HTTPS request recorder, an HTTPS file server with client certificates."""
import base64, json, os, re, socket, ssl, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

def listen(port_file, small=False):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if small:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    tmp = port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(s.getsockname()[1]))
    return s, tmp

def raw(work, names):
    """Each NAME listens on a port (NAME.port) and appends every byte received to NAME.bin, and "open" and "close"
    to NAME.conns as connections begin and end; a NAME starting with "stall" accepts and never reads (with a small
    receive buffer, so that the sender soon holds what it writes)."""
    socks = []
    for n in names:
        s, tmp = listen(os.path.join(work, n + ".port"), small=n.startswith("stall"))
        socks.append((n, s, tmp))
    held = []
    def serve(n, s):
        while True:
            c, _ = s.accept()
            if n.startswith("stall"):
                held.append(c)
                continue
            def conn(c=c):
                with open(os.path.join(work, n + ".conns"), "a") as f:
                    f.write("open\n")
                with c, open(os.path.join(work, n + ".bin"), "ab", buffering=0) as f:
                    while True:
                        b = c.recv(65536)
                        if not b:
                            break
                        f.write(b)
                with open(os.path.join(work, n + ".conns"), "a") as f:
                    f.write("close\n")
            threading.Thread(target=conn, daemon=True).start()
    for n, s, tmp in socks:
        threading.Thread(target=serve, args=(n, s), daemon=True).start()
        os.rename(tmp, os.path.join(work, n + ".port"))
    threading.Event().wait()

def https(work, name, cert, key, ca, body_file=None):
    """Records every request as a JSON line in NAME.jsonl (or, with body_file, serves its content on GET, client
    certificates required). While NAME.hold exists a POST is answered only when it goes, or after 3.5 s (before
    the writer's 5 s request timeout, so that a held receiver never makes it retry)."""
    hold = os.path.join(work, name + ".hold")
    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        def log_message(self, *a):
            pass
        def do_POST(self):
            n = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(n)
            until = time.monotonic() + 3.5
            while os.path.exists(hold) and time.monotonic() < until:
                time.sleep(0.02)
            rec = {"method": "POST", "path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                   "body": base64.b64encode(body).decode()}
            with open(os.path.join(work, name + ".jsonl"), "a") as f:
                f.write(json.dumps(rec) + "\n")
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
        def do_GET(self):
            with open(os.path.join(work, name + ".gets"), "a") as f:
                f.write(self.path + "\n")
            data = open(body_file, "rb").read()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    if body_file:
        ctx.load_verify_locations(ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    tmp = os.path.join(work, name + ".port.tmp")
    with open(tmp, "w") as f:
        f.write(str(srv.server_address[1]))
    os.rename(tmp, os.path.join(work, name + ".port"))
    srv.serve_forever()

def frames(path, partial=False):
    """The octet-counted frames of a recording; fails on anything else (partial: a frame still arriving at the end
    is left out)."""
    try:
        data = open(path, "rb").read()
    except FileNotFoundError:
        return []
    out, i = [], 0
    while i < len(data):
        sp = data.find(b" ", i)
        if sp < 0 and partial:
            break
        if sp < 0:
            raise SystemExit("%s: bad frame at byte %d" % (path, i))
        n = int(data[i:sp])
        if partial and sp + 1 + n > len(data):
            break
        if str(n).encode() != data[i:sp] or sp + 1 + n > len(data):
            raise SystemExit("%s: bad frame at byte %d" % (path, i))
        out.append(data[sp + 1:sp + 1 + n])
        i = sp + 1 + n
    return out

STAT = re.compile(r"^\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4}: (.*): origin=(\S+)(.*)$")

def passes(path, main):
    """impstats passes of a legacy-format file: [(main object's counters, {per-drain object: counters})], one per
    pass. The per-drain objects are made at runtime, so they follow the action's object in rsyslog's list."""
    out = []
    for line in open(path, errors="replace"):
        m = STAT.match(line.rstrip("\n"))
        if not m:
            continue
        ctrs = dict(kv.split("=", 1) for kv in m.group(3).split())
        ctrs = {k: int(v) for k, v in ctrs.items() if v.isdigit()}
        if m.group(1) == main:
            out.append((ctrs, {}))
        elif m.group(1).startswith("omfirehose-drain(") and out:
            out[-1][1][m.group(1)] = ctrs
    return out

def sums_match(path, main):
    """The drains' losses in the last complete pass add up to the action's dropped.egress, which impstats shows one
    pass later (the action's counters are brought up to date after its line is written)."""
    p = passes(path, main)
    if len(p) < 3:
        return False
    drains, later = p[-2][1], p[-1][0]
    return bool(drains) and sum(c.get("dropped", 0) for c in drains.values()) == later.get("dropped.egress")

def logplex(path, want_path):
    """The Logplex drain's batches (one per Logplex-Frame-Id: a retried batch counts once): checks their form and
    prints the frames other than L10 notices, the sum of the L10 notices' N, and the notices."""
    seen, frames, dropped, notices = set(), 0, 0, []
    for r in (json.loads(l) for l in open(path)):
        if not r["path"].startswith(want_path):
            continue
        h, body = r["headers"], base64.b64decode(r["body"])
        if h.get("content-type") != "application/logplex-1" or not h.get("logplex-drain-token") == "d.5e1f":
            raise SystemExit("logplex headers: %r" % h)
        if h["logplex-frame-id"] in seen:
            continue
        seen.add(h["logplex-frame-id"])
        i, n, l10 = 0, 0, 0
        while i < len(body):
            sp = body.index(b" ", i)
            ln = int(body[i:sp])
            f = body[sp + 1:sp + 1 + ln]
            if len(f) != ln or not f.endswith(b"\n"):
                raise SystemExit("logplex frame: %r" % body[i:i + 80])
            m = re.match(rb"<172>1 (\S+) host heroku logplex - Error L10 \(output buffer overflow\): (\d+) messages "
                         rb"dropped since (\S+)\.\n$", f)
            if m:
                if m.group(3) > m.group(1) or i != 0:
                    raise SystemExit("L10 notice: %r (at byte %d)" % (f, i))
                dropped += int(m.group(2))
                notices.append(f.decode().strip())
                l10 += len(f) + sp + 1 - i
            else:
                frames += 1
            n += 1
            i = sp + 1 + ln
        if int(h["logplex-msg-count"]) != n or len(body) - l10 > 100 * 1024:
            raise SystemExit("logplex batch: %s frames, Logplex-Msg-Count %s, %d bytes" %
                             (n, h["logplex-msg-count"], len(body)))
    print(frames, dropped, len(notices))

def logplex_split(path, want_path):
    """The message lengths of the frames of the split message (all "y"), in order."""
    out = []
    for r in (json.loads(l) for l in open(path)):
        if r["path"].startswith(want_path):
            for f in re.findall(rb"\d+ (<\d+>1 \S+ host \S+ \S+ - [^\n]*)\n", base64.b64decode(r["body"])):
                msg = f.split(b" - ", 1)[1]
                if set(msg) == {ord("y")}:
                    out.append(len(msg))
    print(" ".join(map(str, out)))

if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "raw":
        raw(sys.argv[2], sys.argv[3:])
    elif mode == "https":
        https(*sys.argv[2:])
    elif mode == "count":  # frames in a recording so far
        print(len(frames(sys.argv[2], partial=True)))
    elif mode == "sums":  # STATS MAIN: exit 0 when the drains' losses add up to the action's
        sys.exit(0 if sums_match(sys.argv[2], sys.argv[3]) else 1)
    elif mode == "names":  # STATS MAIN: the per-drain objects of the last complete pass
        p = passes(sys.argv[2], sys.argv[3])
        print("\n".join(sorted(p[-2][1])) if len(p) >= 2 else "")
    elif mode == "logplex":
        logplex(sys.argv[2], sys.argv[3])
    elif mode == "split":
        logplex_split(sys.argv[2], sys.argv[3])
EOF

# bg NAME CMD...: a background peer, killed at the end.
bg() {
	local name=$1
	shift
	"$@" >"$W/$name.out" 2>"$W/$name.err" &
	LGR_BG_PIDS+=("$!")
}

bg raw python3 "$W/peers.py" raw "$W" vec app agg load filt new idle stall stat
bg https python3 "$W/peers.py" https "$W" hsink "$PKI/doppler.crt" "$PKI/doppler.key" "$PKI/ca.crt"
bg lsink python3 "$W/peers.py" https "$W" lsink "$PKI/doppler.crt" "$PKI/doppler.key" "$PKI/ca.crt"
for p in vec app agg load filt new idle stall stat hsink lsink; do
	lgr_wait_for "the $p peer" lgr_has_port "$W/$p.port"
done
port() { tr -d ' \n' <"$W/$1.port"; }
# a port nobody listens on: the dead drain (the recorder's listener for it is closed again)
DEAD=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

# ---- the receiving rsyslogd: imptcp, and imtcp over TLS requiring a client certificate from our CA --------------
have_tls=1
[ -f /usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_ossl.so ] || [ -f /usr/lib/rsyslog/lmnsd_ossl.so ] || have_tls=0
if [ "$have_tls" = 0 ]; then
	[ "${LGR_REQUIRE_PEERS:-0}" = 1 ] && lgr_fail "rsyslog's ossl stream driver (rsyslog-openssl) is not installed"
	lgr_say "rsyslog-openssl is not installed: the syslog-tls:// part is not tested"
fi
R=$W/recv
mkdir -p "$R"
{
	printf 'module(load="imptcp")\n'
	printf 'template(name="raw" type="string" string="%%rawmsg%%\\n")\n'
	printf 'ruleset(name="ptcp") { action(type="omfile" file="%s/ptcp.txt" template="raw") }\n' "$R"
	printf 'input(type="imptcp" port="0" listenPortFileName="%s/ptcp.port" ruleset="ptcp")\n' "$R"
	if [ "$have_tls" = 1 ]; then
		printf 'global(defaultNetstreamDriverCAFile="%s/ca.crt" defaultNetstreamDriverCertFile="%s/doppler.crt"\n' \
			"$PKI" "$PKI"
		printf '\tdefaultNetstreamDriverKeyFile="%s/doppler.key")\n' "$PKI"
		printf 'module(load="imtcp" streamDriver.name="ossl" streamDriver.mode="1" streamDriver.authMode="x509/certvalid")\n'
		printf 'ruleset(name="tls") { action(type="omfile" file="%s/tls.txt" template="raw") }\n' "$R"
		printf 'input(type="imtcp" port="0" listenPortFileName="%s/tls.port" ruleset="tls")\n' "$R"
	fi
	# and plain imtcp (for drains.static), its driver named where the module's default is TLS
	[ "$have_tls" = 1 ] || printf 'module(load="imtcp")\n'
	printf 'ruleset(name="tcp") { action(type="omfile" file="%s/tcp.txt" template="raw") }\n' "$R"
	printf 'input(type="imtcp" port="0" listenPortFileName="%s/tcp.port" ruleset="tcp"' "$R"
	[ "$have_tls" = 0 ] || printf ' streamDriver.name="ptcp" streamDriver.mode="0" streamDriver.authMode="anon"'
	printf ')\n'
} | lgr_conf_write "$W/recv.conf"
lgr_start2 "$W/recv.conf"
lgr_wait_for "the receiver's imptcp port" lgr_has_port "$R/ptcp.port"
lgr_wait_for "the receiver's imtcp port" lgr_has_port "$R/tcp.port"
[ "$have_tls" = 0 ] || lgr_wait_for "the receiver's TLS port" lgr_has_port "$R/tls.port"

# ---- bindings --------------------------------------------------------------------------------------------------
pem() { python3 -c 'import json, sys; print(json.dumps(open(sys.argv[1]).read()))' "$1"; }
CA=$(pem "$PKI/ca.crt")
CCERT=$(pem "$PKI/client.crt")
CKEY=$(pem "$PKI/client.key")
SECRET=s3cr3t-Pw
# binding URL APP HOSTNAME [CERT KEY CA]: one entry of the binding cache's JSON
binding() {
	printf '{"url": "%s", "credentials": [{"cert": %s, "key": %s, "ca": %s, "apps": [{"app_id": "%s", "hostname": "%s"}]}]}' \
		"$1" "${4:-\"\"}" "${5:-\"\"}" "${6:-\"\"}" "$2" "$3"
}
# write_bindings ENTRY...: the bindings file, replaced at once (as a deployment tool would)
write_bindings() {
	local IFS=,
	printf '[%s]\n' "$*" >"$W/bindings.tmp"
	mv "$W/bindings.tmp" "$W/bindings.json"
}
B_VEC=$(binding "syslog://127.0.0.1:$(port vec)" test-app-id test-hostname)
B_APP=$(binding "syslog://127.0.0.1:$(port app)/?drain-data=all" app-x fallback-host)
B_PTCP=$(binding "syslog://127.0.0.1:$(tr -d ' \n' <"$R/ptcp.port")?drain-data=all" app-x fallback-host)
B_NOMETA=$(binding "syslog://127.0.0.1:$(port filt)?disable-metadata=true&drain-type=logs" app-f host-f)
B_LOGPLEX=$(binding "syslog://127.0.0.1:$(port filt)?format=logplex&drain-token=d.0123" app-p host-p)
B_INCL=$(binding "syslog://127.0.0.1:$(port filt)?include-log-types=rtr" app-i host-i)
B_HTTPS=$(binding "https://user:$SECRET@127.0.0.1:$(port hsink)/drain/one?token=$SECRET" app-h host-h '""' '""' "$CA")
B_BATCH=$(binding "https-batch://127.0.0.1:$(port hsink)/batch" app-hb host-hb '""' '""' "$CA")
B_BAD=$(binding "ftp://user:$SECRET@example.invalid/x" app-x fallback-host)
B_DENIED=$(binding "syslog://127.0.0.2:$(port app)" app-x fallback-host)
B_LIVE=$(binding "syslog://127.0.0.1:$(port load)" app-load load-host)
B_DEAD=$(binding "syslog://127.0.0.1:$DEAD" app-load load-host)
B_NEW=$(binding "syslog://127.0.0.1:$(port new)" app-new new-host)
B_LPH=$(binding "https://lp:$SECRET@127.0.0.1:$(port lsink)/logplex?format=logplex&drain-token=d.5e1f" app-lp lp-host \
	'""' '""' "$CA")
B_TLS=
if [ "$have_tls" = 1 ]; then
	B_TLS=$(binding "syslog-tls://localhost:$(tr -d ' \n' <"$R/tls.port")?drain-data=all" app-x fallback-host "$CCERT" \
		"$CKEY" "$CA")
fi
ENTRIES=("$B_VEC" "$B_APP" "$B_PTCP" "$B_NOMETA" "$B_LOGPLEX" "$B_INCL" "$B_HTTPS" "$B_BATCH" "$B_BAD" "$B_DENIED"
	"$B_LIVE" "$B_DEAD" "$B_LPH")
[ -z "$B_TLS" ] || ENTRIES+=("$B_TLS")
write_bindings "${ENTRIES[@]}"

# ---- the agent: imloggregator -> omfirehose with drains ------------------------------------------------------------
conf=$W/rsyslog.conf
lgr_conf_write "$conf" <<EOF
module(load="impstats" interval="1" log.syslog="off" log.file="$W/stats.log" format="legacy")
module(load="$(lgr_module imloggregator)")
module(load="$(lgr_module omfirehose)")
input(type="imloggregator" port="0" listenPortFileName="$W/in.port" role="router" tls="off")
action(type="omfirehose" port="0" listenPortFileName="$W/egress.port" tls="off" drains.bindingsFile="$W/bindings.json"
	gateway.port="0" gateway.listenPortFileName="$W/gw.port" gateway.tls="off" gateway.auth="none"
	drains.buffer="1000" drains.denyRanges=["127.0.0.2/32"]
	drains.aggregate=["syslog://127.0.0.1:$(port agg)?drain-data=all&include-metrics-deprecated=x"]
	drains.static=["app-s org.space.static-app syslog://127.0.0.1:$(tr -d ' \n' <"$R/tcp.port")",
		"app-s2 syslog://user:$SECRET@127.0.0.1:$(port stat)?drain-data=all",
		"test-app-id syslog://127.0.0.1:$(port vec)"])
EOF
lgr_start "$conf"
lgr_wait_port "$W/in.port"
IN=$LGR_PORT
STATS=(lgr_stat_is "$W/stats.log" 'omfirehose\(127\.0\.0\.1:0\)')
MAIN='omfirehose(127.0.0.1:0)'
# the ERE of a per-drain object's name: drain_obj URL APP (APP "aggregate" for an aggregate drain)
drain_obj() {
	local who="app $2"
	[ "$2" = aggregate ] && who=aggregate
	printf 'omfirehose-drain\\(%s %s\\)' "$(printf '%s' "$1" | sed 's/[.]/\\./g')" "$who"
}
# dstat URL APP COUNTER: the per-drain object's last value in $STATS_LOG
STATS_LOG=$W/stats.log
dstat() { lgr_stat "$STATS_LOG" "$(drain_obj "$1" "$2")" "$3"; }
dstat_is() { [ "$(dstat "$1" "$2" "$3")" = "$4" ]; }
dstat_ge() { local v; v=$(dstat "$1" "$2" "$3"); [ -n "$v" ] && [ "$v" -ge "$4" ]; }

# send NAME ARGS...: the grpc-js peer sends envelopes to imloggregator; it must end with status OK.
send() {
	local name=$1
	shift
	lgr_peer send --target "127.0.0.1:$IN" "$@" >"$W/$name.sent" 2>"$W/$name.err" ||
		lgr_fail "peer send $name failed: $(cat "$W/$name.sent" "$W/$name.err")"
	grep -q '"event":"done","code":0' "$W/$name.sent" || lgr_fail "peer send $name: $(cat "$W/$name.sent")"
}
frames() { python3 "$W/peers.py" count "$W/$1.bin"; }
frames_reach() { [ "$(frames "$1")" -ge "$2" ]; }
# probe FILE RECORDER TEXT: sends the envelopes of FILE until RECORDER holds a frame with TEXT (a bindings change
# takes effect at a moment the test cannot see otherwise: rsyslog's own log lines may come late)
probe() {
	local deadline=$((SECONDS + $(lgr_timeout))) until
	while :; do
		send probe --method BatchSender --input "$1"
		until=$((SECONDS + 2))
		while [ "$SECONDS" -lt "$until" ]; do
			has_notice "$2" "$3" && return 0
			sleep 0.1
		done
		[ "$SECONDS" -lt "$deadline" ] || lgr_fail "timed out waiting for \"$3\" at $2"
	done
}

# ---- 1. the vector and the formats -----------------------------------------------------------------------------
b64() { printf '%s' "$1" | base64 -w0; }
TS=1731000000123456789
cat >"$W/formats.jsonl" <<EOF
{"source_id":"test-app-id","instance_id":"2","timestamp":"12345000","tags":{"source_type":"APP"},"log":{"payload":"$(b64 'just a test')","type":"OUT"}}
{"source_id":"app-x","instance_id":"0","timestamp":"$TS","tags":{"source_type":"APP/PROC/WEB","organization_name":"My Org!","space_name":"dev space","app_name":"shop-app-","quote":"a\"b]c\\\\d"},"log":{"payload":"$(printf 'first line\nsecond line\000 end' | base64 -w0)","type":"OUT"}}
{"source_id":"app-x","instance_id":"3","timestamp":"1731000000100000000","tags":{"source_type":"STG"},"log":{"payload":"$(b64 $'staging failed\n')","type":"ERR"}}
{"source_id":"app-x","instance_id":"1","timestamp":"1731000000000000000","tags":{"metric-tag":"scallop"},"counter":{"name":"requests","delta":"1","total":"99"}}
{"source_id":"app-x","instance_id":"1","timestamp":"1731000000000001000","tags":{"k":"v"},"gauge":{"metrics":{"memory":{"unit":"bytes","value":1024},"cpu":{"unit":"percentage","value":0.23}}}}
{"source_id":"app-x","instance_id":"2","timestamp":"1731000000000002000","tags":{"k":"v"},"timer":{"name":"http","start":"10","stop":"20"}}
{"source_id":"app-x","instance_id":"0","timestamp":"1731000000000003000","tags":{"k":"v"},"event":{"title":"deploy","body":"app \"restarted\""}}
{"source_id":"app-f","instance_id":"4","timestamp":"1731000000000004000","tags":{"source_type":"APP/PROC/WEB","k":"v"},"log":{"payload":"$(b64 'no metadata')","type":"OUT"}}
{"source_id":"app-f","instance_id":"4","timestamp":"1731000000000005000","tags":{"k":"v"},"event":{"title":"t","body":"b"}}
{"source_id":"app-p","instance_id":"1","timestamp":"1731000000000006000","tags":{"source_type":"APP/PROC/WEB"},"log":{"payload":"$(b64 'Hi from logplex')","type":"OUT"}}
{"source_id":"app-i","instance_id":"0","timestamp":"1731000000000007000","tags":{"source_type":"APP/PROC/WEB"},"log":{"payload":"$(b64 'app line, excluded')","type":"OUT"}}
{"source_id":"app-i","instance_id":"1","timestamp":"1731000000000008000","tags":{"source_type":"RTR"},"log":{"payload":"$(b64 'router line')","type":"OUT"}}
{"source_id":"app-h","instance_id":"0","timestamp":"1731000000000009000","tags":{"source_type":"APP"},"log":{"payload":"$(b64 'to https 1')","type":"OUT"}}
{"source_id":"app-h","instance_id":"0","timestamp":"1731000000000010000","tags":{"source_type":"APP"},"log":{"payload":"$(b64 'to https 2')","type":"OUT"}}
{"source_id":"app-hb","instance_id":"0","timestamp":"1731000000000011000","tags":{"source_type":"APP"},"log":{"payload":"$(b64 'batch 1')","type":"OUT"}}
{"source_id":"app-hb","instance_id":"0","timestamp":"1731000000000012000","tags":{"source_type":"APP"},"log":{"payload":"$(b64 'batch 2')","type":"OUT"}}
EOF
send formats --method BatchSender --input "$W/formats.jsonl" --batch 100

lgr_check "the vector of drains.md, byte for byte"
lgr_wait_for "the vector drain's line" lgr_nonempty "$W/vec.bin"
want=$'118 <14>1 1970-01-01T00:00:00.012345+00:00 test-hostname test-app-id [APP/2] - [tags@47450 source_type="APP"] just a test\n'
size_reach() { [ "$(stat -c %s "$1")" -ge "$2" ]; }
lgr_wait_for "118 bytes and their count" size_reach "$W/vec.bin" 122
[ "$(cat "$W/vec.bin"; printf x)" = "${want}x" ] || lgr_fail "vector: got $(od -c "$W/vec.bin" | head -20)"

lgr_check "CF's lines for logs, every metric type and an event, octet counted"
cat >"$W/expect-app.txt" <<'EOF'
<14>1 2024-11-07T17:20:00.123456+00:00 My-Org.dev-space.shop-app app-x [APP/PROC/WEB/0] - [tags@47450 app_name="shop-app-" organization_name="My Org!" quote="a\"b\]c\\d" source_type="APP/PROC/WEB" space_name="dev space"] first line\nsecond line end\n
<11>1 2024-11-07T17:20:00.1+00:00 fallback-host app-x [STG/3] - [tags@47450 source_type="STG"] staging failed\n
<14>1 2024-11-07T17:20:00+00:00 fallback-host app-x [1] - [counter@47450 name="requests" total="99" delta="1"][tags@47450 metric-tag="scallop"] \n
<14>1 2024-11-07T17:20:00.000001+00:00 fallback-host app-x [1] - [gauge@47450 name="cpu" value="0.23" unit="percentage"][tags@47450 k="v"] \n
<14>1 2024-11-07T17:20:00.000001+00:00 fallback-host app-x [1] - [gauge@47450 name="memory" value="1024" unit="bytes"][tags@47450 k="v"] \n
<14>1 2024-11-07T17:20:00.000002+00:00 fallback-host app-x [2] - [timer@47450 name="http" start="10" stop="20"][tags@47450 k="v"] \n
<14>1 2024-11-07T17:20:00.000003+00:00 fallback-host app-x [0] - [event@47450 title="deploy" body="app \"restarted\""][tags@47450 k="v"] \n
EOF
# the expected lines, with \n as the line end and the embedded newline, in the order sent
cat >"$W/check.py" <<'EOF'
import sys
sys.path.insert(0, sys.argv[1])
import peers
want = [l.rstrip("\n").replace("\\n", "\n").encode() for l in open(sys.argv[2], encoding="utf-8")]
got = [f for f in peers.frames(sys.argv[3]) if b" [LGR/0] " not in f]  # notices are checked on their own
if sorted(got) != sorted(want):
    for g in got:
        if g not in want:
            print("unexpected: %r" % g, file=sys.stderr)
    for w in want:
        if w not in got:
            print("missing:    %r" % w, file=sys.stderr)
    sys.exit("%s: %d frames, %d expected, contents differ" % (sys.argv[3], len(got), len(want)))
EOF
lgr_wait_for "7 lines at app-x's drain" frames_reach app 9
python3 "$W/check.py" "$W" "$W/expect-app.txt" "$W/app.bin" || lgr_fail "app-x's drain"

lgr_check "disable-metadata and drain-type=logs, format=logplex, include-log-types"
cat >"$W/expect-filt.txt" <<'EOF'
<14>1 2024-11-07T17:20:00.000004+00:00 host-f app-f [APP/PROC/WEB/4] - - no metadata\n
<190>1 2024-11-07T17:20:00.000006+00:00 d.0123 app web.1 - - Hi from logplex\n
<14>1 2024-11-07T17:20:00.000008+00:00 host-i app-i [RTR/1] - [tags@47450 source_type="RTR"] router line\n
EOF
lgr_wait_for "3 lines at the filtered drains" frames_reach filt 3
python3 "$W/check.py" "$W" "$W/expect-filt.txt" "$W/filt.bin" || lgr_fail "filtered drains"

lgr_check "the aggregate drain gets every source"
lgr_wait_for "19 lines at the aggregate drain (17 and 2 notices)" frames_reach agg 19

lgr_check "rsyslog's imptcp takes each octet-counted frame as one message"
lgr_wait_for "9 messages at imptcp (7 and 2 notices)" lgr_lines_reach "$R/ptcp.txt" 9
grep -qxF '<14>1 2024-11-07T17:20:00.123456+00:00 My-Org.dev-space.shop-app app-x [APP/PROC/WEB/0] - [tags@47450 app_name="shop-app-" organization_name="My Org!" quote="a\"b\]c\\d" source_type="APP/PROC/WEB" space_name="dev space"] first line#012second line end' "$R/ptcp.txt" ||
	lgr_fail "imptcp: the multi-line message is not one message: $(head -3 "$R/ptcp.txt")"
[ "$(lgr_lines "$R/ptcp.txt")" = 9 ] || lgr_fail "imptcp: $(lgr_lines "$R/ptcp.txt") messages, expected 9"

if [ "$have_tls" = 1 ]; then
	lgr_check "syslog-tls:// to rsyslog imtcp (ossl), client certificate checked"
	lgr_wait_for "9 messages over TLS" lgr_lines_reach "$R/tls.txt" 9
	grep -qF 'fallback-host app-x [STG/3] - [tags@47450 source_type="STG"] staging failed' "$R/tls.txt" ||
		lgr_fail "TLS receiver: $(head -3 "$R/tls.txt")"
fi

lgr_check "https:// posts one line per request, https-batch:// several"
cat >"$W/check-https.py" <<'EOF'
import base64, json, sys
secret, path = sys.argv[1], sys.argv[2]
reqs = [json.loads(l) for l in open(path)]
one = [r for r in reqs if r["path"].startswith("/drain/one")]
batch = [r for r in reqs if r["path"] == "/batch"]
def body(r):
    return base64.b64decode(r["body"]).decode()
sd = '[tags@47450 source_type="APP"]'
want1 = ["<14>1 2024-11-07T17:20:00.000009+00:00 host-h app-h [APP/0] - %s to https 1\n" % sd,
         "<14>1 2024-11-07T17:20:00.00001+00:00 host-h app-h [APP/0] - %s to https 2\n" % sd]
# a POST retried after a timeout may arrive twice (the writer cannot know the first one was taken): each request
# carries exactly one of the lines, and every line arrives
if sorted(set(body(r) for r in one)) != want1:
    sys.exit("https bodies: %r" % [body(r) for r in one])
auth = "Basic " + base64.b64encode(("user:" + secret).encode()).decode()
for r in one:
    if r["method"] != "POST" or r["path"] != "/drain/one?token=" + secret or r["headers"].get("authorization") != auth \
            or not r["headers"].get("content-type", "").startswith("text/plain"):
        sys.exit("https request: %r" % r)
lines = "".join(body(r) for r in batch)
for n, us in ((1, "000011"), (2, "000012")):
    if ("<14>1 2024-11-07T17:20:00.%s+00:00 host-hb app-hb [APP/0] - %s batch %d\n" % (us, sd, n)) not in lines:
        sys.exit("https-batch: %r" % lines)
EOF
https_done() { [ "$(lgr_lines "$W/hsink.jsonl")" -ge 3 ] && grep -q '"/batch"' "$W/hsink.jsonl" &&
	[ "$(grep -c '/drain/one' "$W/hsink.jsonl")" -ge 2 ]; }
lgr_wait_for "the HTTPS requests" https_done
python3 "$W/check-https.py" "$SECRET" "$W/hsink.jsonl" || lgr_fail "HTTPS drains: $(cat "$W/hsink.jsonl")"

lgr_check "refused bindings: counted, logged, told into the app's stream"
notice_at() { python3 -c 'import sys
sys.path.insert(0, sys.argv[1]); import peers
print(sum(1 for f in peers.frames(sys.argv[2], partial=True) if sys.argv[3].encode() in f))' "$W" "$W/$1.bin" "$2"; }
has_notice() { [ "$(notice_at "$1" "$2")" -ge 1 ]; }
lgr_wait_for "the scheme notice" has_notice app "[LGR/0] - [tags@47450 source_type=\"LGR\"] Invalid Scheme ftp for syslog drain url ftp://example.invalid/x"
lgr_wait_for "the deny-range notice" has_notice app "Resolved ip address for syslog drain with url syslog://127.0.0.2:$(port app) is blacklisted"
lgr_wait_for "invalid_drains >= 2" lgr_stat_ge "$W/stats.log" 'omfirehose\(127\.0\.0\.1:0\)' invalid_drains 2
lgr_wait_for "the refusal's log line" grep -q 'binding refused (bad_scheme) for app app-x' "$W/internal.log"
lgr_wait_for "the gateway's port" lgr_has_port "$W/gw.port"
# recent_has APP TEXT: the gateway's recent envelopes of APP hold a log whose payload contains TEXT
recent_has() {
	curl -sS --max-time 5 --http1.1 "http://127.0.0.1:$(port gw)/api/v1/read/$1?limit=1000" >"$W/recent.json" &&
		python3 - "$W/recent.json" "$2" <<'EOF'
import base64, json, sys
batch = json.load(open(sys.argv[1])).get("envelopes", {}).get("batch", [])
texts = [base64.b64decode(e["log"].get("payload", "")).decode("utf-8", "replace") for e in batch if "log" in e]
sys.exit(0 if any(sys.argv[2] in t for t in texts) else 1)
EOF
}
lgr_check "the notices are kept with the app's recent envelopes (/api/v1/read)"
lgr_wait_for "the scheme notice at /api/v1/read/app-x" recent_has app-x "Invalid Scheme ftp for syslog drain url ftp://example.invalid/x"

lgr_check "one impstats object per drain, named by its anonymised URL and app"
lgr_wait_for "the vector drain's object" dstat_is "syslog://127.0.0.1:$(port vec)" test-app-id egress 1
dstat_is "syslog://127.0.0.1:$(port vec)" test-app-id dropped 0 || lgr_fail "the vector drain dropped something"
# userinfo and query gone from the name, the path kept
lgr_wait_for "the HTTPS drain's object" dstat_is "https://127.0.0.1:$(port hsink)/drain/one" app-h egress 2
lgr_wait_for "the aggregate drain's object" dstat_ge "syslog://127.0.0.1:$(port agg)" aggregate egress 19

# ---- 1b. drains.static: apps bound in rsyslog.conf ---------------------------------------------------------------
lgr_check "drains.static: CF's lines to rsyslog imtcp with the entry's hostname, and octet counted with \"-\" without one"
cat >"$W/static.jsonl" <<EOF
{"source_id":"app-s","instance_id":"0","timestamp":"1731000000000013000","tags":{"source_type":"APP/PROC/WEB"},"log":{"payload":"$(b64 'static line')","type":"OUT"}}
{"source_id":"app-s2","instance_id":"2","timestamp":"1731000000000014000","tags":{"source_type":"APP"},"log":{"payload":"$(b64 'static err')","type":"ERR"}}
{"source_id":"app-s2","instance_id":"1","timestamp":"1731000000000015000","tags":{"metric-tag":"m"},"counter":{"name":"c","delta":"2","total":"5"}}
EOF
send static --method BatchSender --input "$W/static.jsonl"
# static_tcp_is N: rsyslog's imtcp received exactly the first N of these messages, each once (its %rawmsg%: the
# frame without its count and trailing newline)
STATIC_TCP=('<14>1 2024-11-07T17:20:00.000013+00:00 org.space.static-app app-s [APP/PROC/WEB/0] - [tags@47450 source_type="APP/PROC/WEB"] static line'
	'<14>1 2024-11-07T17:20:00.000016+00:00 org.space.static-app app-s [APP/PROC/WEB/1] - [tags@47450 source_type="APP/PROC/WEB"] after HUP')
static_tcp_is() {
	local i
	[ "$(lgr_lines "$R/tcp.txt")" = "$1" ] || return 1
	for ((i = 0; i < $1; i++)); do
		[ "$(grep -cxF "${STATIC_TCP[$i]}" "$R/tcp.txt")" = 1 ] || return 1
	done
}
lgr_wait_for "the static binding's line at imtcp" lgr_lines_reach "$R/tcp.txt" 1
static_tcp_is 1 || lgr_fail "imtcp (drains.static): $(cat "$R/tcp.txt")"
cat >"$W/expect-stat.txt" <<'EOF'
<11>1 2024-11-07T17:20:00.000014+00:00 - app-s2 [APP/2] - [tags@47450 source_type="APP"] static err\n
<14>1 2024-11-07T17:20:00.000015+00:00 - app-s2 [1] - [counter@47450 name="c" total="5" delta="2"][tags@47450 metric-tag="m"] \n
EOF
lgr_wait_for "2 lines at the static binding without hostname" frames_reach stat 2
python3 "$W/check.py" "$W" "$W/expect-stat.txt" "$W/stat.bin" || lgr_fail "app-s2's static drain"
lgr_wait_for "the static drain's object, named without its userinfo" \
	dstat_is "syslog://127.0.0.1:$(port stat)" app-s2 egress 2

# ---- 2. a dead drain and a live one under load -----------------------------------------------------------------
lgr_check "one app, a dead drain and a live one: the live one gets everything, the dead one's losses are told"
N=6000
# paced so that the network thread keeps up with the live drain (under valgrind it runs many times slower): the live
# drain's buffer of 1000 must never fill, the dead one's overflows whatever the pace
pace=2
[ "$LGR_VALGRIND" = 1 ] && pace=60
send load --method BatchSender --gen "$N" --source-id app-load --batch 100 --interval-ms "$pace" --payload-size 100
live_has_all() { python3 - "$W" "$N" <<'EOF'
import re, sys
sys.path.insert(0, sys.argv[1]); import peers
got = [f for f in peers.frames(sys.argv[1] + "/load.bin", partial=True) if b"[LGR/0]" not in f]
sys.exit(0 if len(got) >= int(sys.argv[2]) else 1)
EOF
}
lgr_wait_for "$N lines at the live drain" live_has_all
lost_told() { python3 - "$W" "$DEAD" <<'EOF'
import re, sys
sys.path.insert(0, sys.argv[1]); import peers
pat = re.compile(rb"\] (\d+) messages lost for application app-load in user provided syslog drain with url "
                 rb"syslog://127\.0\.0\.1:" + sys.argv[2].encode() + rb"\n$")
print(sum(int(m.group(1)) for m in (pat.search(f) for f in peers.frames(sys.argv[1] + "/load.bin", partial=True)) if m))
EOF
}
told_reach() { [ "$(lost_told)" -ge "$1" ]; }
# the dead drain holds at most its buffer (1000) and one offered batch (256): the rest must have been told lost
lgr_wait_for "the dead drain's losses told" told_reach $((N - 1256))
python3 - "$W" "$N" <<'EOF' || lgr_fail "the live drain"
import collections, re, sys
sys.path.insert(0, sys.argv[1]); import peers
got = [f for f in peers.frames(sys.argv[1] + "/load.bin") if b"[LGR/0]" not in f]
seqs = collections.Counter(re.search(rb" app-load (\d+)x*\n$", f).group(1) for f in got)
if len(got) != int(sys.argv[2]) or len(seqs) != int(sys.argv[2]) or max(seqs.values()) != 1:
    sys.exit("live drain: %d lines, %d distinct" % (len(got), len(seqs)))
EOF
told=$(lost_told)
lgr_wait_for "dropped.egress to be counted" lgr_stat_ge "$W/stats.log" 'omfirehose\(127\.0\.0\.1:0\)' dropped.egress "$told"
lgr_wait_for "the log line of the dead drain's losses" \
	grep -q "drain syslog://127.0.0.1:$DEAD of app app-load: [0-9]* envelopes lost" "$W/internal.log"

lgr_check "per-drain statistics: the dead drain's losses are its own, exactly what was told and what the sum holds"
# While the dead drain stays bound, each loss notice it gets (the app's stream reaches it too) may push out one
# more envelope, told a second later: its object, the notices and the action's sum move together, once a tick.
dead_exact() {
	local d
	d=$(dstat "syslog://127.0.0.1:$DEAD" app-load dropped)
	[ -n "$d" ] && [ "$d" -ge $((N - 1256)) ] && [ "$d" = "$(lost_told)" ] &&
		dstat_is "syslog://127.0.0.1:$DEAD" app-load egress 0 &&
		dstat_is "syslog://127.0.0.1:$(port load)" app-load dropped 0 &&
		python3 "$W/peers.py" sums "$W/stats.log" "$MAIN"
}
lgr_wait_for "the dead drain's dropped = the losses told = its share of dropped.egress" dead_exact

# ---- 2b. a Heroku Logplex HTTPS drain ------------------------------------------------------------------------------
lgr_check "Logplex HTTPS: application/logplex-1 batches, a 25,000-byte message in lines of 10,000 bytes"
LP_URL="https://127.0.0.1:$(port lsink)/logplex"
big=$(head -c 25000 /dev/zero | tr '\0' y | base64 -w0)
printf '{"source_id":"app-lp","instance_id":"1","timestamp":"1731000003000000000","tags":{"source_type":"APP/PROC/WEB"},"log":{"payload":"%s","type":"OUT"}}\n' \
	"$big" >"$W/big.jsonl"
send big --method BatchSender --input "$W/big.jsonl"
split_done() { [ "$(python3 "$W/peers.py" split "$W/lsink.jsonl" /logplex 2>/dev/null)" = "10000 10000 5000" ]; }
lgr_wait_for "the message in three lines" split_done
lgr_wait_for "the three lines counted" dstat_is "$LP_URL" app-lp egress 3

lgr_check "Logplex HTTPS: a held-up receiver makes the drain overflow, told as L10 notices adding up to its dropped"
# the receiver answers nothing while lsink.hold exists: the writer holds its 1 MiB, the drain's buffer (1000) fills
touch "$W/lsink.hold"
send lp --method BatchSender --gen 3000 --source-id app-lp --batch 100 --payload-size 2000
lgr_wait_for "the Logplex drain to overflow" dstat_ge "$LP_URL" app-lp dropped 1
rm -f "$W/lsink.hold"
lp_exact() {
	local got
	got=$(python3 "$W/peers.py" logplex "$W/lsink.jsonl" /logplex 2>&1) || lgr_fail "Logplex batches: $got"
	# shellcheck disable=SC2086 # frames, dropped, notices
	set -- $got
	[ "$3" -ge 1 ] && dstat_is "$LP_URL" app-lp egress "$1" && dstat_is "$LP_URL" app-lp dropped "$2"
}
lgr_wait_for "the L10 notices to add up to the drain's dropped and the other lines to its egress" lp_exact
lgr_say "Logplex drain: $(python3 "$W/peers.py" logplex "$W/lsink.jsonl" /logplex) (lines, dropped, L10 notices)"

# ---- 3. bindings file changes and HUP ---------------------------------------------------------------------------
lgr_check "a bindings file change adds and removes drains without a restart"
pid=$LGR_PID
# with a refused binding in it, every load of the file shows in invalid_drains (impstats, which unlike rsyslog's own
# log lines is written at once)
B_BAD_NEW=$(binding "ftp://user:$SECRET@example.invalid/y" app-new new-host)
INVALID=(lgr_stat_is "$W/stats.log" 'omfirehose\(127\.0\.0\.1:0\)' invalid_drains)
lgr_wait_for "invalid_drains 2" "${INVALID[@]}" 2
write_bindings "$B_NEW" "$B_LIVE" "$B_BAD_NEW"
lgr_wait_for "the changed file to be read (invalid_drains 3)" "${INVALID[@]}" 3
cat >"$W/new.jsonl" <<EOF
{"source_id":"app-new","instance_id":"0","timestamp":"1731000001000000000","tags":{"source_type":"APP"},"log":{"payload":"$(b64 'hello new')","type":"OUT"}}
EOF
probe "$W/new.jsonl" new "new-host app-new [APP/0] - [tags@47450 source_type=\"APP\"] hello new"
before=$(frames app)
cat >"$W/after.jsonl" <<EOF
{"source_id":"app-x","instance_id":"0","timestamp":"1731000001000001000","tags":{"source_type":"APP"},"log":{"payload":"$(b64 'after unbinding')","type":"OUT"}}
{"source_id":"app-load","instance_id":"0","timestamp":"1731000001000002000","tags":{"source_type":"APP"},"log":{"payload":"$(b64 'still bound')","type":"OUT"}}
EOF
send after --method BatchSender --input "$W/after.jsonl"
lgr_wait_for "the kept drain's line" has_notice load "still bound"
lgr_check "per-drain statistics after the change: unbound drains' objects gone, the live one's egress exact"
live_exact() {
	local names
	names=$(python3 "$W/peers.py" names "$W/stats.log" "$MAIN")
	dstat_is "syslog://127.0.0.1:$(port load)" app-load egress "$(frames load)" &&
		dstat_is "syslog://127.0.0.1:$(port load)" app-load dropped 0 &&
		grep -qxF "omfirehose-drain(syslog://127.0.0.1:$(port load) app app-load)" <<<"$names" &&
		! grep -qF "syslog://127.0.0.1:$DEAD app app-load" <<<"$names" &&
		! grep -qF "app app-lp)" <<<"$names"
}
lgr_wait_for "the live drain's egress = the frames its receiver got" live_exact
lgr_wait_for "the aggregate drain's copy" has_notice agg "after unbinding"
[ "$(frames app)" = "$before" ] || lgr_fail "app-x's drain still receives after it was unbound"
[ "$LGR_PID" = "$pid" ] && lgr_alive || lgr_fail "rsyslogd restarted"

lgr_check "HUP reads the bindings file again"
kill -HUP "$LGR_PID"
lgr_wait_for "a reload after HUP (invalid_drains 4)" "${INVALID[@]}" 4

lgr_check "drains.static: the static bindings stay after a bindings file change and a HUP"
cat >"$W/static2.jsonl" <<EOF
{"source_id":"app-s","instance_id":"1","timestamp":"1731000000000016000","tags":{"source_type":"APP/PROC/WEB"},"log":{"payload":"$(b64 'after HUP')","type":"OUT"}}
{"source_id":"app-s2","instance_id":"0","timestamp":"1731000000000017000","tags":{"source_type":"APP"},"log":{"payload":"$(b64 'after HUP')","type":"OUT"}}
EOF
send static2 --method BatchSender --input "$W/static2.jsonl"
printf '%s\n' '<14>1 2024-11-07T17:20:00.000017+00:00 - app-s2 [APP/0] - [tags@47450 source_type="APP"] after HUP\n' \
	>>"$W/expect-stat.txt"
lgr_wait_for "the static binding's line at imtcp after the HUP" lgr_lines_reach "$R/tcp.txt" 2
static_tcp_is 2 || lgr_fail "imtcp (drains.static) after the HUP: $(cat "$R/tcp.txt")"
lgr_wait_for "3 lines at the static binding without hostname" frames_reach stat 3
python3 "$W/check.py" "$W" "$W/expect-stat.txt" "$W/stat.bin" || lgr_fail "app-s2's static drain after the HUP"

lgr_check "credentials never appear in rsyslog's output"
if grep -rl "$SECRET" "$W/internal.log" "$W/rsyslogd.out" "$W/stats.log" 2>/dev/null; then
	lgr_fail "the drain password appears in the logs"
fi
lgr_stop

# ---- 4. bindings from an HTTPS endpoint (mutual TLS), polled ----------------------------------------------------
lgr_check "drains.bindingsUrl: fetched over mutual TLS, polled, changes applied; idle writers closed"
STALL="syslog://127.0.0.1:$(port stall)"
write_bindings "$(binding "syslog://127.0.0.1:$(port idle)" app-url url-host)" "$(binding "$STALL" app-stall stall-host)"
cp "$W/bindings.json" "$W/served.json"
bg bsrv python3 "$W/peers.py" https "$W" bsrv "$PKI/doppler.crt" "$PKI/doppler.key" "$PKI/ca.crt" "$W/served.json"
lgr_wait_for "the bindings endpoint" lgr_has_port "$W/bsrv.port"
lgr_conf_write "$conf" <<EOF
module(load="impstats" interval="1" log.syslog="off" log.file="$W/stats2.log" format="legacy")
module(load="$(lgr_module imloggregator)")
module(load="$(lgr_module omfirehose)")
input(type="imloggregator" port="0" listenPortFileName="$W/in2.port" role="router" tls="off")
action(type="omfirehose" port="0" listenPortFileName="$W/egress2.port" tls="off"
	drains.bindingsUrl="https://127.0.0.1:$(port bsrv)/v2/bindings" drains.tls.cacert="$PKI/ca.crt"
	drains.tls.mycert="$PKI/client.crt" drains.tls.myprivkey="$PKI/client.key" drains.tls.servername="doppler"
	drains.pollInterval="1000" drains.idleTimeout="1000")
EOF
lgr_start "$conf"
lgr_wait_port "$W/in2.port"
IN=$LGR_PORT
lgr_wait_for "the first fetch" lgr_nonempty "$W/bsrv.gets"
cat >"$W/url.jsonl" <<EOF
{"source_id":"app-url","instance_id":"0","timestamp":"1731000002000000000","tags":{"source_type":"APP"},"log":{"payload":"$(b64 'bound by url')","type":"OUT"}}
EOF
probe "$W/url.jsonl" idle "url-host app-url [APP/0] - [tags@47450 source_type=\"APP\"] bound by url"
lgr_wait_for "the URL-bound drain's line" has_notice idle "url-host app-url [APP/0] - [tags@47450 source_type=\"APP\"] bound by url"
closed() { [ "$(lgr_count "$W/idle.conns" '^close$')" -ge 1 ]; }
lgr_wait_for "the idle writer to close its connection" closed
[ "$(lgr_count "$W/idle.conns" '^open$')" = 1 ] || lgr_fail "the idle drain connected $(lgr_count "$W/idle.conns" '^open$') times"
sed 's/bound by url/bound by url again/; s/"instance_id":"0"/"instance_id":"1"/' "$W/url.jsonl" | \
	sed "s/$(b64 'bound by url')/$(b64 'after idle')/" >"$W/url-again.jsonl"
send again --method BatchSender --input "$W/url-again.jsonl"
lgr_wait_for "a line after the idle close, on a new connection" has_notice idle "[APP/1] - [tags@47450 source_type=\"APP\"] after idle"
[ "$(lgr_count "$W/idle.conns" '^open$')" = 2 ] || lgr_fail "no new connection after the idle close"
grep -qx '/v2/bindings' "$W/bsrv.gets" || lgr_fail "the endpoint was asked for $(head -1 "$W/bsrv.gets")"
lgr_check "a drain unbound while its writer holds lines counts them as lost"
# 1000 lines of about 8 KB to a receiver that reads nothing: more than the kernel takes (its send buffer grows to
# at most net.ipv4.tcp_wmem's 4 MiB) and the writer's 1 MiB, so the writer is full (and the drain's buffer of
# 10000 holds the rest); unbound, its buffer and what its writer held are lost: every line the kernel did not take
STATS_LOG=$W/stats2.log
K=1000
send stall --method BatchSender --gen "$K" --source-id app-stall --batch 100 --payload-size 8000
stall_settled() {
	local last
	last=$(grep -F "omfirehose-drain($STALL app app-stall):" "$STATS_LOG" | tail -n 3 |
		sed -n 's/.* egress=\([0-9]*\) dropped=0 *$/\1/p' | uniq)
	[ "$(grep -cF "omfirehose-drain($STALL app app-stall):" "$STATS_LOG")" -ge 3 ] && [ -n "$last" ] &&
		[ "$(wc -l <<<"$last")" = 1 ] && [ "$last" -gt 0 ]
}
lgr_wait_for "the stalled drain's egress to settle" stall_settled
E=$(dstat "$STALL" app-stall egress)
[ "$E" -lt $((K - 128)) ] || lgr_fail "the kernel took $E of $K lines: the writer was never full"
lgr_stat_is "$STATS_LOG" 'omfirehose\(127\.0\.0\.1:0\)' dropped.egress 0 || lgr_fail "losses before the unbinding"
printf '[%s, %s]\n' "$(binding "syslog://127.0.0.1:$(port idle)" app-url url-host)" \
	"$(binding "syslog://127.0.0.1:$(port new)" app-url2 url2-host)" >"$W/served.tmp"
mv "$W/served.tmp" "$W/served.json"
sed 's/app-url"/app-url2"/; s/1731000002000000000/1731000002000000001/' "$W/url.jsonl" >"$W/url2.jsonl"
probe "$W/url2.jsonl" new "url2-host app-url2 [APP/0]"
lgr_wait_for "dropped.egress = the $((K - E)) lines the unbound writer held" \
	lgr_stat_is "$STATS_LOG" 'omfirehose\(127\.0\.0\.1:0\)' dropped.egress $((K - E))
lgr_stop

# ---- 5. drains.static alone, and malformed entries ------------------------------------------------------------------
lgr_check "drains.static alone turns the drains on"
lgr_conf_write "$conf" <<EOF
module(load="$(lgr_module imloggregator)")
module(load="$(lgr_module omfirehose)")
input(type="imloggregator" port="0" listenPortFileName="$W/in3.port" role="router" tls="off")
action(type="omfirehose" port="0" listenPortFileName="$W/egress3.port" tls="off"
	drains.static=["app-s org.space.static-app syslog://127.0.0.1:$(tr -d ' \n' <"$R/tcp.port")"])
EOF
lgr_start "$conf"
lgr_wait_port "$W/in3.port"
IN=$LGR_PORT
STATIC_TCP+=('<14>1 2024-11-07T17:20:00.000018+00:00 org.space.static-app app-s [APP/PROC/WEB/2] - [tags@47450 source_type="APP/PROC/WEB"] static alone')
cat >"$W/static3.jsonl" <<EOF
{"source_id":"app-s","instance_id":"2","timestamp":"1731000000000018000","tags":{"source_type":"APP/PROC/WEB"},"log":{"payload":"$(b64 'static alone')","type":"OUT"}}
EOF
send static3 --method BatchSender --input "$W/static3.jsonl"
lgr_wait_for "the line of drains.static alone at imtcp" lgr_lines_reach "$R/tcp.txt" 3
static_tcp_is 3 || lgr_fail "imtcp (drains.static alone): $(cat "$R/tcp.txt")"
lgr_stop

lgr_check "rsyslogd -N1 refuses a malformed drains.static entry, naming it without its URL's credentials"
# static_refused NAME ENTRY EXPECTED: -N1 fails for an action with a good entry and ENTRY, and says EXPECTED
static_refused() {
	lgr_conf_write "$W/$1.conf" <<EOF
module(load="$(lgr_module omfirehose)")
action(type="omfirehose" port="0" tls="off" drains.static=["app-ok syslog://127.0.0.1:1", "$2"])
EOF
	if lgr_n1 "$W/$1.conf"; then
		printf '%s\n' "$LGR_N1_OUT" >&2
		lgr_fail "-N1 accepts the drains.static entry $1"
	fi
	case $LGR_N1_OUT in
	*"$3"*) ;;
	*) printf '%s\n' "$LGR_N1_OUT" >&2; lgr_fail "$1: -N1 output lacks: $3" ;;
	esac
	case $LGR_N1_OUT in
	*"$SECRET"*) lgr_fail "$1: -N1 output shows the URL's password" ;;
	esac
}
static_refused static-scheme "app-bad ftp://user:$SECRET@example.invalid/x?token=$SECRET" \
	'omfirehose(drains): drains.static: entry 2 "app-bad ftp://example.invalid/x": the drain URL is refused: Invalid Scheme ftp for syslog drain url ftp://example.invalid/x'
static_refused static-fields "just-one-field" \
	'omfirehose(drains): drains.static: entry 2 "just-one-field": expected "APP_ID URL" or "APP_ID HOSTNAME URL", got 1 field'
static_refused static-port "app-bad host-bad syslog://user:$SECRET@127.0.0.1:99999" \
	'drains.static: entry 2 "app-bad host-bad syslog://127.0.0.1:99999": the drain URL is refused: Cannot parse syslog drain URL.'
lgr_stop2
lgr_pass
