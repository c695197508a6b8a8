#!/usr/bin/env bash
# shellcheck disable=SC2119,SC2317 # lgr_init takes no script arguments; checks run through lgr_wait_for
# omfirehose-gateway.sh: omfirehose's HTTPS gateway as the real RLP gateway (GET /v2/read, server-sent events) and
# Log Cache (GET /api/v1/read/{source_id}, recent envelopes) answer, against curl (HTTP/1.1 and HTTP/2) and a small
# python client, with envelopes sent through imloggregator by the grpc-js peer.
#
# Two rsyslogds: A, imloggregator (role router, h2c) -> omfirehose with the gateway over TLS (ALPN h2 and
# http/1.1), bearer tokens (an admin token, a token for app-a only), recent.size 10, subscriber.buffer 3000;
# B, the same with a cleartext gateway, gateway.auth="none", gateway.streamTimeout 1500 ms and recent.size 0.
#
# Oracle:
#   - rsyslogd -N1 refuses a tokens file with a bad line (naming it) or a missing one;
#   - the answers of tests/vectors/rlp-gateway-error-responses.txt (empty query, no envelope type, no token) with
#     their status, Content-Type, X-Content-Type-Options, Content-Length and body bytes, over HTTP/1.1 and HTTP/2;
#     405 for POST, missing_counter_name / missing_gauge_name for empty names, 404 not_found for a wrong token, for
#     a token limited to app-a asking for app-b or for the firehose; that token reading app-a gets 200;
#   - /v2/read streams whose events parse to the envelopes of tests/vectors/rlp-gateway-sse-all-types.txt and
#     rlp-gateway-sse-named-selectors.txt when the same envelopes are sent (half of their tags sent as deprecated
#     tags: the gateway folds them, use_preferred_tags), over HTTP/1.1 with the headers of
#     rlp-gateway-sse-http11-headers.txt (Date aside) and over HTTP/2 (the same without Connection);
#   - recent reads of a source with 12 envelopes sent (10 kept) answer exactly the envelopes each query parameter
#     selects (start_time, end_time, envelope_types repeated, limit, descending, their combination), Log Cache's
#     errors for bad values (400 code 3, 500 code 2), 501 for POST, 404 with an empty body for a token that may not
#     read the source; B (recent.size 0) answers 404;
#   - SIGHUP re-reads the tokens file: a removed token gets 404, a new one 200; a broken file is logged and the
#     tokens before stay in use;
#   - an idle stream gets a heartbeat event ("event: heartbeat", "data: <unix seconds>") about 15 s after it
#     started, and nothing else;
#   - on B, HTTP/1.1 and HTTP/2 streams end by themselves after 1.5 s with the closing event as their last event;
#   - a client that stops reading (python, tiny receive buffer) loses its oldest envelopes while a fast curl client
#     of the same envelopes gets all 8000 exactly once; slow_consumer counts one episode and the log names the
#     slow client's address; once it reads again it gets the newest envelope;
#   - rsyslogd exits 0 on SIGTERM with streams open, and the curl clients see their streams end properly (exit 0);
#     valgrind clean under LGR_VALGRIND=1.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
lgr_init
lgr_bg_init
lgr_need_peer
lgr_pki
command -v curl >/dev/null || lgr_skip "curl is not installed"
curl -V | grep -q HTTP2 || lgr_skip "curl has no HTTP/2"

W=$LGR_WORK
P=$LGR_PKI
V=$LGR_TOP_SRCDIR/tests/vectors
printf '# gateway tokens\nadmin-token admin\napp-token app-a\n' >"$W/tokens"
conf=$W/a.conf
lgr_conf_write "$conf" <<EOF
module(load="impstats" interval="1" log.syslog="off" log.file="$W/stats.log" format="legacy")
module(load="$(lgr_module imloggregator)")
module(load="$(lgr_module omfirehose)")
input(type="imloggregator" port="0" listenPortFileName="$W/in.port" role="router" tls="off")
action(type="omfirehose" port="0" listenPortFileName="$W/egress.port" tls="off" subscriber.buffer="3000"
	recent.size="10" recent.maxSources="100" gateway.port="0" gateway.listenPortFileName="$W/gw.port"
	gateway.tls.cacert="$P/ca.crt" gateway.tls.mycert="$P/reverselogproxy.crt"
	gateway.tls.myprivkey="$P/reverselogproxy.key" gateway.tokensFile="$W/tokens")
EOF
conf2=$W/b.conf
lgr_conf_write "$conf2" <<EOF
module(load="$(lgr_module imloggregator)")
module(load="$(lgr_module omfirehose)")
input(type="imloggregator" port="0" listenPortFileName="$W/in2.port" role="router" tls="off")
action(type="omfirehose" port="0" listenPortFileName="$W/egress2.port" tls="off" recent.size="0"
	gateway.port="0" gateway.listenPortFileName="$W/gw2.port" gateway.tls="off" gateway.auth="none"
	gateway.streamTimeout="1500")
EOF

cat >"$W/check.py" <<'PYEOF'
"""Reads what the gateway answered (event streams, headers, bodies) and compares it with the vectors."""
import base64, collections, json, re, sys, time

def fail(msg):
    print("check.py: " + msg, file=sys.stderr)
    sys.exit(1)

def events(path):
    """The events of an event stream: (event name or None, data)."""
    with open(path, "rb") as f:
        text = f.read().decode("utf-8")
    out = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        name, data = None, []
        for line in block.split("\n"):
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
            else:
                fail("%s: a line that is not an event field: %r" % (path, line[:200]))
        out.append((name, "\n".join(data)))
    return out, text.endswith("\n\n") or text == ""

def envelopes(path):
    envs = []
    for name, data in events(path)[0]:
        if name is None:
            envs += json.loads(data)["batch"]
    return envs

def key(e):
    return json.dumps(e, sort_keys=True)

def same(got, want, what):
    g, w = collections.Counter(map(key, got)), collections.Counter(map(key, want))
    if g != w:
        for k in list((g - w).keys())[:3]:
            print("unexpected: " + k, file=sys.stderr)
        for k in list((w - g).keys())[:3]:
            print("missing:    " + k, file=sys.stderr)
        fail("%s: %d envelopes, %d expected, contents differ" % (what, len(got), len(want)))

def headers(path):
    """Status line and header fields of the last response head curl -D wrote."""
    with open(path, "rb") as f:
        heads = f.read().decode("latin-1").replace("\r\n", "\n").strip("\n").split("\n\n")
    lines = heads[-1].split("\n")
    return lines[0].strip(), [tuple(x.strip() for x in l.split(":", 1)) for l in lines[1:] if l.strip()]

def vector_sections(path):
    """The ### sections of a vector file: name -> text."""
    out, name = {}, None
    for line in open(path, encoding="utf-8"):
        if line.startswith("### "):
            name = line[4:].strip()
            out[name] = ""
        elif name is not None:
            out[name] += line
    return out

cmd = sys.argv[1]
if cmd == "input":
    # the envelopes of a vector's data events, every other one with its tags sent as deprecated tags
    n = 0
    with open(sys.argv[3], "w") as f:
        for name, data in events(sys.argv[2])[0]:
            if name is not None:
                continue
            for e in json.loads(data)["batch"]:
                if n % 2 == 1:
                    e["deprecated_tags"] = {k: {"text": v} for k, v in e["tags"].items()}
                    e["tags"] = {}
                f.write(json.dumps(e) + "\n")
                n += 1
elif cmd == "count":
    try:
        print(len(envelopes(sys.argv[2])))
    except FileNotFoundError:
        print(0)  # curl makes the file with the first bytes of the body
    except (ValueError, KeyError, UnicodeDecodeError):
        print(0)  # a stream cut in the middle of an event
elif cmd == "stream":
    # stream GOT VECTOR: the data events carry the vector's envelopes; nothing but data and heartbeats
    evs, whole = events(sys.argv[2])
    if not whole:
        fail("%s does not end with a complete event" % sys.argv[2])
    for name, data in evs:
        if name not in (None, "heartbeat"):
            fail("%s: unexpected event %s" % (sys.argv[2], name))
    want = envelopes(sys.argv[3])
    same(envelopes(sys.argv[2]), want, sys.argv[2].rsplit("/", 1)[-1])
    print("%d envelopes as in %s" % (len(want), sys.argv[3].rsplit("/", 1)[-1]))
elif cmd == "sse-headers":
    # sse-headers GOT VECTOR h1|h2: the vector's head, Date aside (HTTP/2: lower case, no Connection)
    status, got = headers(sys.argv[2])
    vstatus, want = headers(sys.argv[3])
    got_date = [v for k, v in got if k.lower() == "date"]
    if len(got_date) != 1 or not re.match(r"^[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT$", got_date[0]):
        fail("%s: no Date header in Go's form: %s" % (sys.argv[2], got))
    got = [(k, v) for k, v in got if k.lower() != "date"]
    want = [(k, v) for k, v in want if k.lower() != "date"]
    if sys.argv[4] == "h2":
        want = [(k.lower(), v) for k, v in want if k.lower() not in ("connection", "transfer-encoding")]
        vstatus = "HTTP/2 200"
    if status != vstatus or got != want:
        fail("%s: head %r %r, expected %r %r" % (sys.argv[2], status, got, vstatus, want))
elif cmd == "error":
    # error VECTOR SECTION HEADERS BODY h1|h2: the answer of the vector's section, Date aside
    vec = vector_sections(sys.argv[2])[sys.argv[3]].strip("\n").split("\n\n", 1)
    vlines = vec[0].split("\n")
    vstatus = vlines[0].split()[1]
    want = [tuple(x.strip() for x in l.split(":", 1)) for l in vlines[1:] if not l.lower().startswith("date:")]
    want_body = vec[1].rstrip("\n") + "\n\n"
    status, got = headers(sys.argv[4])
    got = [(k.lower(), v) for k, v in got if k.lower() != "date"]
    with open(sys.argv[5], "rb") as f:
        body = f.read().decode("utf-8")
    if status.split()[1] != vstatus or sorted(got) != sorted(want) or body != want_body:
        fail("%s over %s: %s %r %r, expected %s %r %r" % (sys.argv[3], sys.argv[6], status, got, body, vstatus,
             want, want_body))
elif cmd == "recent-input":
    # 12 envelopes of source rec: timestamps T+1..T+12, logs, counters and gauges; one with deprecated tags
    T = int(sys.argv[3])
    with open(sys.argv[2], "w") as f:
        for i in range(1, 13):
            e = {"timestamp": str(T + i), "source_id": "rec", "instance_id": str(i % 3), "tags": {"n": str(i)}}
            if i % 3 == 1:
                e["log"] = {"payload": base64.b64encode(b"line %d" % i).decode(), "type": "OUT" if i % 2 else "ERR"}
            elif i % 3 == 2:
                e["counter"] = {"name": "c", "delta": "1", "total": str(i)}
            else:
                e["gauge"] = {"metrics": {"g": {"unit": "u", "value": i}}}
            if i == 12:
                e["deprecated_tags"] = {"d": {"text": "x"}, "n": {"text": "twelve"}}
            f.write(json.dumps(e, sort_keys=True) + "\n")
elif cmd == "recent":
    # recent BODY DUMP ts... : the answer holds exactly the sent envelopes with those timestamps, in that order
    with open(sys.argv[2], "rb") as f:
        got = json.load(f)["envelopes"]["batch"]
    sent = {}
    for line in open(sys.argv[3]):
        e = json.loads(line)
        if e["deprecated_tags"]:  # the gateway shows them folded into tags, as with use_preferred_tags
            for k, v in e["deprecated_tags"].items():
                e["tags"][k] = v["text"]
            e["deprecated_tags"] = {}
        sent[e["timestamp"]] = e
    want = [sent[t] for t in sys.argv[4:]]
    if [key(e) for e in got] != [key(e) for e in want]:
        fail("recent: got timestamps %s, expected %s%s" % ([e.get("timestamp") for e in got], sys.argv[4:],
             "" if [e.get("timestamp") for e in got] != sys.argv[4:] else " (contents differ: %s)" % got))
elif cmd == "heartbeat":
    # heartbeat STREAM START: only heartbeats, the first 14..25 s after START, each with a plausible time
    evs, whole = events(sys.argv[2])
    start = int(sys.argv[3])
    if not whole or not evs:
        fail("the idle stream holds no complete event")
    for name, data in evs:
        if name != "heartbeat" or not re.fullmatch(r"[0-9]+", data):
            fail("the idle stream got %r %r" % (name, data))
        if not start <= int(data) <= time.time() + 1:
            fail("heartbeat time %s is not between the stream's start %d and now" % (data, start))
    first = int(evs[0][1])
    if not 14 <= first - start <= 25:
        fail("the first heartbeat came %d s after the stream started, expected about 15" % (first - start))
    print("%d heartbeats, the first %d s after the start" % (len(evs), first - start))
elif cmd == "closing":
    # closing STREAM: data, then the closing event last, the stream complete
    evs, whole = events(sys.argv[2])
    if not whole or not evs or evs[-1] != ("closing", "closing due to stream timeout"):
        fail("%s does not end with the closing event: %r" % (sys.argv[2], evs[-2:]))
    if sum(1 for e in evs if e[0] == "closing") != 1:
        fail("%s has more than one closing event" % sys.argv[2])
elif cmd == "seqs":
    # seqs STREAM: the sequence numbers of the peer's generated payloads ("load N" padded with x)
    out = []
    for e in envelopes(sys.argv[2]):
        out.append(int(base64.b64decode(e["log"]["payload"]).decode().split()[1].rstrip("x")))
    print(" ".join(map(str, out)))
PYEOF

# A client that asks for a stream over HTTP/1.1 with a tiny receive buffer and reads nothing while a pause file
# exists; then it reads (chunked coding undone) into OUT until a stop file appears or the stream ends.
cat >"$W/slow.py" <<'PYEOF'
import os, socket, ssl, sys, time
port, path, token, ca, ready, pause, stop, out = sys.argv[1:9]
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.connect(("127.0.0.1", int(port)))
ctx = ssl.create_default_context(cafile=ca)
ctx.set_alpn_protocols(["http/1.1"])
t = ctx.wrap_socket(s, server_hostname="127.0.0.1")
t.sendall(("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%s\r\nAuthorization: bearer %s\r\nAccept: text/event-stream\r\n\r\n"
           % (path, port, token)).encode())
open(ready, "w").close()
while os.path.exists(pause):
    time.sleep(0.05)
t.settimeout(0.2)
buf, body, head = b"", open(out, "wb"), None
def more():
    global buf
    while True:
        if os.path.exists(stop):
            sys.exit(0)
        try:
            d = t.recv(65536)
        except (socket.timeout, ssl.SSLWantReadError):
            continue
        if not d:
            sys.exit(0)
        buf += d
        return
while b"\r\n\r\n" not in buf:
    more()
head, buf = buf.split(b"\r\n\r\n", 1)
if not head.startswith(b"HTTP/1.1 200"):
    sys.exit("answered: %r" % head)
while True:
    while b"\r\n" not in buf:
        more()
    size_line, buf = buf.split(b"\r\n", 1)
    size = int(size_line, 16)
    while len(buf) < size + 2:
        more()
    body.write(buf[:size])
    body.flush()
    buf = buf[size + 2:]
    if size == 0:
        sys.exit(0)
PYEOF

declare -A SSE_PIDS=()

# sse NAME CURL-ARGS...: a curl stream in the background: body in NAME.out, head in NAME.hdr.
sse() {
	local name=$1
	shift
	rm -f "$W/$name.out" "$W/$name.hdr" "$W/$name.rc"
	curl -sS -N -D "$W/$name.hdr" -o "$W/$name.out" "$@" 2>"$W/$name.err" &
	SSE_PIDS[$name]=$!
	LGR_BG_PIDS+=("$!")
}

# sse_rc NAME: waits for curl NAME (which has ended or is ending) and keeps its exit status in NAME.rc.
sse_rc() {
	[ -s "$W/$1.rc" ] && return 0
	wait "${SSE_PIDS[$1]}"
	echo $? >"$W/$1.rc"
}

# sse_open NAME: curl has the response head (the server has subscribed it).
sse_open() { grep -q '^HTTP/[0-9.]* 200' "$W/$1.hdr" 2>/dev/null; }

# sse_count NAME N: the stream carried at least N envelopes (for lgr_wait_for).
sse_count() { [ "$(python3 "$W/check.py" count "$W/$1.out" 2>/dev/null || echo 0)" -ge "$2" ]; }

# sse_ended NAME: curl NAME has exited (its status then in NAME.rc, see sse_rc).
sse_ended() { ! kill -0 "${SSE_PIDS[$1]}" 2>/dev/null; }

# sse_kill NAME: ends a stream from the client side.
sse_kill() {
	kill -TERM "${SSE_PIDS[$1]}" 2>/dev/null
	lgr_wait_for "curl $1 to end" sse_ended "$1"
	sse_rc "$1"
}

send() {
	local name=$1 end
	shift
	lgr_peer send --target "127.0.0.1:$in_port" --method BatchSender "$@" >"$W/$name.out" 2>"$W/$name.err"
	end=$(lgr_peer_line "$W/$name.out" "done")
	[ "$(lgr_json "$end" code)" = 0 ] || { cat "$W/$name.out" "$W/$name.err" >&2; lgr_fail "$name: sending failed"; }
}

# get NAME URL CURL-ARGS...: one request; head in NAME.hdr, body in NAME.body; prints the status.
get() {
	local name=$1 url=$2
	shift 2
	curl -sS -D "$W/$name.hdr" -o "$W/$name.body" -w '%{http_code}' "$@" "$url" 2>"$W/$name.err"
}

# expect_status NAME STATUS URL CURL-ARGS...
expect_status() {
	local name=$1 want=$2 url=$3 got
	shift 3
	got=$(get "$name" "$url" "$@")
	[ "$got" = "$want" ] || lgr_fail "$name: $url answered $got, expected $want: $(head -c 300 "$W/$name.body")"
}

lgr_check "rsyslogd -N1 names an unusable tokens file: a bad line, a missing file"
printf 'ok-token admin\nlonely\n' >"$W/bad.tokens"
sed "s|$W/tokens|$W/bad.tokens|" "$conf" >"$W/bad.conf"
lgr_n1 "$W/bad.conf" && lgr_fail "rsyslogd -N1 accepted a tokens file with a line of one field"
grep -q "gateway.tokensFile $W/bad.tokens, line 2: expected 'TOKEN admin'" <<<"$LGR_N1_OUT" ||
	lgr_fail "-N1 did not name line 2 of the tokens file: $LGR_N1_OUT"
sed "s|$W/tokens|$W/missing.tokens|" "$conf" >"$W/missing.conf"
lgr_n1 "$W/missing.conf" && lgr_fail "rsyslogd -N1 accepted a missing tokens file"
grep -q "gateway.tokensFile $W/missing.tokens cannot be read: No such file or directory" <<<"$LGR_N1_OUT" ||
	lgr_fail "-N1 did not say the tokens file is missing: $LGR_N1_OUT"

lgr_check "rsyslogd A (TLS gateway, tokens) and B (cleartext gateway, streamTimeout 1500) start"
lgr_start "$conf"
lgr_wait_port "$W/in.port"
in_port=$LGR_PORT
lgr_wait_port "$W/gw.port"
gw_port=$LGR_PORT
lgr_start2 "$conf2"
lgr_wait_port "$W/gw2.port"
gw2_port=$LGR_PORT
GW=https://127.0.0.1:$gw_port
GW2=http://127.0.0.1:$gw2_port
TLS=(--cacert "$P/ca.crt")
ADMIN=(-H 'Authorization: bearer admin-token')
APP=(-H 'Authorization: bearer app-token')
NAME='omfirehose\(127\.0\.0\.1:0\)'

lgr_check "an idle stream opens now; its heartbeat is checked at the end"
idle_start=$(date +%s)
sse idle --http1.1 "${TLS[@]}" "${ADMIN[@]}" "$GW/v2/read?log&source_id=idle-app"
lgr_wait_for "the idle stream to open" sse_open idle

lgr_check "the real gateway's error answers (rlp-gateway-error-responses.txt) over HTTP/1.1 and HTTP/2"
for proto in http1.1 http2; do
	get noq "$GW/v2/read" "--$proto" "${TLS[@]}" "${ADMIN[@]}" >/dev/null
	python3 "$W/check.py" error "$V/rlp-gateway-error-responses.txt" sse_noq.out "$W/noq.hdr" "$W/noq.body" "$proto" ||
		lgr_fail "empty query"
	get notype "$GW/v2/read?source_id=app-a&shard_id=s" "--$proto" "${TLS[@]}" "${ADMIN[@]}" >/dev/null
	python3 "$W/check.py" error "$V/rlp-gateway-error-responses.txt" sse_notype.out "$W/notype.hdr" \
		"$W/notype.body" "$proto" || lgr_fail "no envelope type"
	get noauth "$GW/v2/read?log" "--$proto" "${TLS[@]}" >/dev/null
	python3 "$W/check.py" error "$V/rlp-gateway-error-responses.txt" sse_noauth.out "$W/noauth.hdr" \
		"$W/noauth.body" "$proto" || lgr_fail "no token"
done
expect_status post 405 "$GW/v2/read?log" -X POST "${TLS[@]}" "${ADMIN[@]}"
[ "$(cat "$W/post.body")" = '{"message":"method not allowed","error":"method_not_allowed"}' ] ||
	lgr_fail "405 body: $(cat "$W/post.body")"
expect_status noname 400 "$GW/v2/read?counter.name=" "${TLS[@]}" "${ADMIN[@]}"
grep -q '"error":"missing_counter_name"' "$W/noname.body" || lgr_fail "counter.name=: $(cat "$W/noname.body")"
expect_status nogauge 400 "$GW/v2/read?gauge.name=" "${TLS[@]}" "${ADMIN[@]}"
grep -q '"error":"missing_gauge_name"' "$W/nogauge.body" || lgr_fail "gauge.name=: $(cat "$W/nogauge.body")"

lgr_check "tokens: a wrong one, one for app-a asking for app-b or the firehose: 404 not_found"
notfound='{"message":"resource not found","error":"not_found"}'
expect_status wrong 404 "$GW/v2/read?log" "${TLS[@]}" -H 'Authorization: bearer nope'
[ "$(cat "$W/wrong.body")" = "$notfound" ] || lgr_fail "wrong token: $(cat "$W/wrong.body")"
expect_status other 404 "$GW/v2/read?log&source_id=app-b" --http1.1 "${TLS[@]}" "${APP[@]}"
expect_status mixed 404 "$GW/v2/read?log&source_id=app-a&source_id=app-b" "${TLS[@]}" "${APP[@]}"
expect_status fire 404 "$GW/v2/read?log" "${TLS[@]}" "${APP[@]}"
expect_status nopath 404 "$GW/v2/reader?log" "${TLS[@]}" "${ADMIN[@]}"
sse own --http2 "${TLS[@]}" "${APP[@]}" "$GW/v2/read?log&source_id=app-a"
lgr_wait_for "app-token's stream of app-a to open" sse_open own

lgr_check "streams over HTTP/1.1 and HTTP/2 carry the envelopes of the vectors, with the vectors' headers"
python3 "$W/check.py" input "$V/rlp-gateway-sse-all-types.txt" "$W/all-types.jsonl" || lgr_fail "no input"
sse all_h1 --http1.1 "${TLS[@]}" "${ADMIN[@]}" "$GW/v2/read?log&counter&gauge&timer&event&source_id=app10"
sse all_h2 --http2 "${TLS[@]}" "${ADMIN[@]}" "$GW/v2/read?log&counter&gauge&timer&event&source_id=app10"
sse named_h1 --http1.1 "${TLS[@]}" "${ADMIN[@]}" "$GW/v2/read?counter.name=requests&gauge.name=cpu,memory"
sse named_h2 --http2 "${TLS[@]}" "${ADMIN[@]}" "$GW/v2/read?source_id=app10&counter.name=requests&gauge.name=cpu,memory"
for s in all_h1 all_h2 named_h1 named_h2; do lgr_wait_for "stream $s to open" sse_open "$s"; done
send all-types --batch 2 --input "$W/all-types.jsonl"
for s in all_h1 all_h2; do lgr_wait_for "stream $s to carry 6 envelopes" sse_count "$s" 6; done
for s in named_h1 named_h2; do lgr_wait_for "stream $s to carry 2 envelopes" sse_count "$s" 2; done
for s in all_h1 all_h2 named_h1 named_h2; do sse_kill "$s"; done
for s in all_h1 all_h2; do
	python3 "$W/check.py" stream "$W/$s.out" "$V/rlp-gateway-sse-all-types.txt" || lgr_fail "stream $s"
done
for s in named_h1 named_h2; do
	python3 "$W/check.py" stream "$W/$s.out" "$V/rlp-gateway-sse-named-selectors.txt" || lgr_fail "stream $s"
done
python3 "$W/check.py" sse-headers "$W/all_h1.hdr" "$V/rlp-gateway-sse-http11-headers.txt" h1 || lgr_fail "HTTP/1.1 head"
python3 "$W/check.py" sse-headers "$W/all_h2.hdr" "$V/rlp-gateway-sse-http11-headers.txt" h2 || lgr_fail "HTTP/2 head"
[ "$(python3 "$W/check.py" count "$W/own.out")" = 0 ] || lgr_fail "app-token's app-a stream got app10's envelopes"

lgr_check "recent envelopes: each query parameter selects exactly what Log Cache would"
T=1795216300000000000
python3 "$W/check.py" recent-input "$W/rec.jsonl" "$T" || lgr_fail "no recent input"
send rec --batch 4 --input "$W/rec.jsonl" --dump "$W/rec.sent"
ts() { local i out=(); for i in "$@"; do out+=("$((T + i))"); done; echo "${out[@]}"; }
recent() { # QUERY TIMESTAMP-OFFSETS...
	local q=$1
	shift
	expect_status rec 200 "$GW/api/v1/read/rec?$q" "${TLS[@]}" "${ADMIN[@]}"
	grep -qi '^content-type: application/json' "$W/rec.hdr" || lgr_fail "recent: no JSON content type"
	# shellcheck disable=SC2046 # one argument per timestamp
	python3 "$W/check.py" recent "$W/rec.body" "$W/rec.sent" $(ts "$@") || lgr_fail "recent read ?$q"
}
# 12 sent, 10 kept: T+3 .. T+12
rec_kept() {
	curl -sS -o "$W/rec.poll" "${TLS[@]}" "${ADMIN[@]}" "$GW/api/v1/read/rec" 2>/dev/null &&
		[ "$(grep -o '"timestamp"' "$W/rec.poll" | wc -l)" -eq 10 ]
}
lgr_wait_for "the recent store to hold rec's envelopes" rec_kept
recent "" 3 4 5 6 7 8 9 10 11 12
recent "descending=true" 12 11 10 9 8 7 6 5 4 3
recent "start_time=$((T + 5))" 5 6 7 8 9 10 11 12
recent "end_time=$((T + 8))" 3 4 5 6 7
recent "start_time=$((T + 4))&end_time=$((T + 9))&descending=true" 8 7 6 5 4
recent "envelope_types=LOG" 4 7 10
recent "envelope_types=COUNTER&envelope_types=GAUGE" 3 5 6 8 9 11 12
recent "envelope_types=ANY" 3 4 5 6 7 8 9 10 11 12
recent "limit=3" 3 4 5
recent "limit=3&descending=true" 12 11 10
recent "envelope_types=GAUGE&limit=2&descending=true&start_time=$((T + 1))&end_time=$((T + 12))" 9 6
recent "descending=false&limit=1000" 3 4 5 6 7 8 9 10 11 12
expect_status none 200 "$GW/api/v1/read/nobody" "${TLS[@]}" "${ADMIN[@]}"
[ "$(cat "$W/none.body")" = '{"envelopes":{"batch":[]}}' ] || lgr_fail "an unknown source: $(cat "$W/none.body")"
lc_error() { # STATUS BODY QUERY
	expect_status lcerr "$1" "$GW/api/v1/read/rec?$3" "${TLS[@]}" "${ADMIN[@]}"
	[ "$(cat "$W/lcerr.body")" = "$2" ] || lgr_fail "?$3 answered $(cat "$W/lcerr.body"), expected $2"
}
lc_error 500 '{"code":2,"message":"limit (1001) must be 1000 or less","details":[]}' "limit=1001"
lc_error 400 '{"code":3,"message":"parsing field \"limit\": strconv.ParseInt: parsing \"x\": invalid syntax","details":[]}' "limit=x"
lc_error 500 "{\"code\":2,\"message\":\"StartTime ($((T + 5))) must be before EndTime ($((T + 2)))\",\"details\":[]}" \
	"start_time=$((T + 5))&end_time=$((T + 2))"
lc_error 400 '{"code":3,"message":"parsing list \"envelope_types\": \"FOO\" is not a valid value","details":[]}' "envelope_types=FOO"
expect_status lcpost 501 "$GW/api/v1/read/rec" -X POST "${TLS[@]}" "${ADMIN[@]}"
[ "$(cat "$W/lcpost.body")" = '{"code":12,"message":"Method Not Allowed","details":[]}' ] ||
	lgr_fail "POST: $(cat "$W/lcpost.body")"
expect_status lcauth 404 "$GW/api/v1/read/rec" "${TLS[@]}" "${APP[@]}"
[ ! -s "$W/lcauth.body" ] || lgr_fail "a token that may not read rec got a body: $(cat "$W/lcauth.body")"
expect_status lcnoauth 404 "$GW/api/v1/read/rec" --http1.1 "${TLS[@]}"
expect_status lcown 200 "$GW/api/v1/read/app-a?limit=5" "${TLS[@]}" "${APP[@]}"
expect_status lcnorecent 404 "$GW2/api/v1/read/rec" --http1.1
[ "$(cat "$W/lcnorecent.body")" = '{"code":5,"message":"Not Found","details":[]}' ] ||
	lgr_fail "B without a recent store: $(cat "$W/lcnorecent.body")"

lgr_check "SIGHUP re-reads the tokens file; a broken one is logged and the old tokens stay"
printf 'admin-token admin\nnew-token rec,app-a\n' >"$W/tokens"
kill -HUP "$LGR_PID"
lgr_wait_for "the reload to be logged" grep -q "gateway.tokensFile $W/tokens reloaded: 2 tokens" "$W/internal.log"
expect_status hup_old 404 "$GW/api/v1/read/app-a" "${TLS[@]}" "${APP[@]}"
expect_status hup_old_sse 404 "$GW/v2/read?log&source_id=app-a" "${TLS[@]}" "${APP[@]}"
expect_status hup_new 200 "$GW/api/v1/read/rec?limit=1" "${TLS[@]}" -H 'Authorization: bearer new-token'
printf 'admin-token admin\nbroken\n' >"$W/tokens"
kill -HUP "$LGR_PID"
lgr_wait_for "the broken file to be logged" grep -q "tokensFile $W/tokens, line 2: .*tokens loaded before stay in use" \
	"$W/internal.log"
expect_status hup_kept 200 "$GW/api/v1/read/rec?limit=1" "${TLS[@]}" -H 'Authorization: bearer new-token'
sse_open own || lgr_fail "the stream opened with the removed token did not stay open"

lgr_check "B: streams end by themselves after gateway.streamTimeout with the closing event"
start=$SECONDS
sse t_h1 --http1.1 "$GW2/v2/read?log&source_id=t"
sse t_h2 --http2-prior-knowledge "$GW2/v2/read?log&source_id=t"
for s in t_h1 t_h2; do
	lgr_wait_for "stream $s to end" sse_ended "$s"
	sse_rc "$s"
done
[ $((SECONDS - start)) -ge 1 ] || lgr_fail "the streams ended before the timeout"
for s in t_h1 t_h2; do
	[ "$(cat "$W/$s.rc")" = 0 ] || lgr_fail "curl $s ended with status $(cat "$W/$s.rc"): $(cat "$W/$s.err")"
	python3 "$W/check.py" closing "$W/$s.out" || lgr_fail "stream $s"
done

lgr_check "a client that stops reading loses its oldest envelopes; a fast one gets all 8000"
N=8000
: >"$W/slow.pause"
python3 "$W/slow.py" "$gw_port" "/v2/read?log&source_id=load" admin-token "$P/ca.crt" "$W/slow.ready" "$W/slow.pause" \
	"$W/slow.stop" "$W/slow.out" 2>"$W/slow.err" &
slow_pid=$!
LGR_BG_PIDS+=("$slow_pid")
sse fast --http2 "${TLS[@]}" "${ADMIN[@]}" "$GW/v2/read?log&source_id=load"
lgr_wait_for "the fast stream to open" sse_open fast
slow_ready() { [ -e "$W/slow.ready" ]; }
lgr_wait_for "the slow client to send its request" slow_ready
# the slow client's subscriber is in place once the gateway counts 4 subscriptions: idle, own, fast, slow
lgr_wait_for "4 subscriptions" lgr_stat_is "$W/stats.log" "$NAME" subscriptions 4
pace=2
[ "$LGR_VALGRIND" = 1 ] && pace=20
send load --interval-ms "$pace" --batch 10 --gen "$N" --source-id load --payload-size 2000
lgr_wait_for "the fast stream to carry $N envelopes" sse_count fast "$N"
lgr_wait_for "one slow-consumer episode" lgr_stat_is "$W/stats.log" "$NAME" slow_consumer 1
lgr_wait_for "the log line naming the slow client" grep -q 'subscriber 127\.0\.0\.1:[0-9]* (/v2/read) (shard id "") reads too slowly' \
	"$W/internal.log"
rm -f "$W/slow.pause"
slow_has_last() { python3 "$W/check.py" seqs "$W/slow.out" 2>/dev/null | grep -qw "$N"; }
lgr_wait_for "the slow client to get the newest envelope" slow_has_last
: >"$W/slow.stop"
wait "$slow_pid" || lgr_fail "the slow client failed: $(cat "$W/slow.err")"
sse_kill fast
fast_seqs=$(python3 "$W/check.py" seqs "$W/fast.out") || lgr_fail "the fast stream does not parse"
slow_seqs=$(python3 "$W/check.py" seqs "$W/slow.out") || lgr_fail "the slow stream does not parse"
python3 - "$fast_seqs" "$slow_seqs" "$N" <<'PYEOF' || lgr_fail "the fast and slow clients did not receive what they should"
import sys
fast, slow, n = [list(map(int, a.split())) for a in sys.argv[1:3]] + [int(sys.argv[3])]
if sorted(fast) != list(range(1, n + 1)):
    sys.exit("fast: %d envelopes, not exactly 1..%d" % (len(fast), n))
if len(set(slow)) != len(slow) or len(slow) >= n or n not in slow or slow != sorted(slow):
    sys.exit("slow: %d envelopes (%d distinct); expected fewer than %d, in order, each once, the last among them"
             % (len(slow), len(set(slow)), n))
print("the slow client kept %d of %d" % (len(slow), n))
PYEOF

lgr_check "the idle stream got heartbeats only, the first about 15 s after it opened"
lgr_wait_for "a heartbeat on the idle stream" grep -qs '^event: heartbeat' "$W/idle.out"
python3 "$W/check.py" heartbeat "$W/idle.out" "$idle_start" || lgr_fail "heartbeat"

lgr_check "rsyslogd exits 0 with streams open; the clients see their streams end"
sse last_h1 --http1.1 "${TLS[@]}" "${ADMIN[@]}" "$GW/v2/read?log"
sse last_h2 --http2 "${TLS[@]}" "${ADMIN[@]}" "$GW/v2/read?counter"
lgr_wait_for "stream last_h1 to open" sse_open last_h1
lgr_wait_for "stream last_h2 to open" sse_open last_h2
lgr_stop
lgr_stop2
for s in idle own last_h1 last_h2; do
	lgr_wait_for "curl $s to end" sse_ended "$s"
	sse_rc "$s"
	[ "$(cat "$W/$s.rc")" = 0 ] || lgr_fail "curl $s ended with status $(cat "$W/$s.rc"): $(cat "$W/$s.err")"
done
lgr_pass
