#!/usr/bin/env node
// peer.js: an independent gRPC peer (grpc-js + proto-loader) for interop tests of the project's HTTP/2 transport.
// It loads the project's own lib/proto/*.proto and speaks loggregator.v2.Ingress (Sender, BatchSender, Send) and
// loggregator.v2.Egress (BatchedReceiver) as a client or as a server, with mutual TLS or in cleartext. It reports
// on stdout, one JSON object per line, so a test can read it.
//
//   node peer.js server [--port 0] [--tls --ca F --cert F --key F] [--calls N] [--status C --message M]
//       [--stream-count N --batch B]
//     prints {"event":"listening","port":P}; after each call {"event":"call","method":...,"messages":n,
//     "envelopes":n,"in_order":bool,"first":ts,"last":ts,"source_ids":[...],"bytes":n}; exits after N calls
//     (default: when stdin closes). --status answers every call with that gRPC status and message.
//     BatchedReceiver streams --stream-count batches of --batch envelopes of the first selector's source id.
//   node peer.js client --target HOST:PORT [--tls --ca F --cert F --key F --name SAN] --method M [--count N]
//       [--batch B] [--source-id S] [--payload-size P] [--cancel-after E]
//     M is BatchSender (N batches of B envelopes), Sender (N envelopes) or Send (N unary calls of B envelopes);
//     timestamps count up from 1 so the receiver can check order. Prints {"event":"result","code":c,
//     "details":"...","sent":n}. M BatchedReceiver subscribes to source S and prints the result with what it
//     received (as a call line's fields); --cancel-after cancels once E envelopes arrived.
//
// Ingress test tools (tests/integration/imloggregator-*.sh). Connection options as for client (--target, --tls,
// --ca, --cert, --key, --name). Each prints one JSON line per result; none of them changes client or server.
//
//   node peer.js send --method Sender|BatchSender|Send|Pusher (--input F | --gen N [--payload-size P])
//       [--batch B] [--parallel W] [--source-id S] [--ts-base T] [--interval-ms M] [--stop-file F] [--dump F]
//     Sends envelopes, encoded here with protobufjs so that the dump is exactly what went on the wire.
//     --input F: JSON lines; v2 methods: one Envelope per line in the JSON form of wire.md section 5 (payload in
//     base64); Pusher: {"v1": <events.Envelope as protobufjs JSON>, "drop": [[field, subfield...], ...]} (the
//     listed fields removed from the encoded bytes, to make a required field absent) or {"hex": "<raw bytes>"}.
//     --gen N: N log envelopes per worker (source_id S, or S-w with --parallel, instance_id w, timestamps T+1..T+N
//     (default T 1700000000000000000), payload "S seq" padded with 'x' to P bytes).
//     Sender sends one envelope per message, BatchSender and Send B per message (Send: one unary call each, one
//     at a time), Pusher one EnvelopeData per envelope. Streaming methods make one call per worker and half-close
//     at the end. --parallel W runs W workers, each on its own connection. --interval-ms M paces one message every
//     M ms; with --stop-file the worker ends (half-closes) once F exists, --gen then being a maximum (0: none).
//     --dump F: each envelope sent as one JSON line (v2: the full JSON form with every default field; Pusher:
//     {"v1hex": "..."}). Prints per worker {"event":"result","worker":w,"method":m,"source_id":s,"code":c,
//     "details":d,"messages":n,"envelopes":n,"acked":n,"acked_last":ts} (acked: envelopes of calls that ended with
//     status OK; acked_last: the last timestamp among them, for Send the end of the acknowledged prefix), then
//     {"event":"done","code":c,"envelopes":n,"acked":n} (c: the first non-OK code of any worker, else 0).
//   node peer.js raw --path P --hex H[,H...] [--stream]
//     One call of method P with the given raw message bytes (a unary request, or with --stream a client stream of
//     each message then a half-close). Prints {"event":"result","code":c,"details":d}.
//   node peer.js h2 --path P [--content-type T] [--http-method M] [--hex H]
//     One raw HTTP/2 request (node's http2, ALPN h2 with --tls) whose body is the bytes H (for example a message
//     prefix announcing more bytes than follow). Prints {"event":"h2","status":s,"grpc_status":c,
//     "grpc_message":m,"rst":code,"error":e} (":status", grpc-status and grpc-message from headers or trailers;
//     rst: the RST_STREAM code when the stream was reset; error: a session or stream error code).
//   node peer.js udp --target HOST:PORT --input F
//     Each line of F (as Pusher input) becomes one datagram. Prints {"event":"result","sent":n}.
//
// Router tool (tests/integration/omdoppler-*.sh): a stand-in for a Loggregator router (doppler).
//
//   node peer.js router [--port 0] [--port-file F] [--tls --ca F --cert F --key F] --records F --token T
//       [--v1-records F] [--eof] [--stall-file F]
//     Serves /loggregator.v2.Ingress/Sender, BatchSender and Send and /plumbing.DopplerIngestor/Pusher on
//     127.0.0.1 (mutual TLS with --tls: client certificates must chain to --ca). Every v2 envelope received is
//     appended to --records as one record in the form tests/tools/grpc-peer/records.py reads (the form of lib.sh's
//     lgr_record_template, markers of token T: source_id as app-name, instance_id as procid, severity err for ERR
//     logs else info, the timestamp in RFC 3339 with microseconds, the client's IP, the JSON form without the
//     payload, then the payload bytes, or for other types a one-line summary naming the counter, metric, timer or
//     event), so that `records.py check` compares them with what was sent. Every v1 envelope of a Pusher stream is
//     appended to --v1-records as {"v1": <events.Envelope as protobufjs JSON>}. Writes the bound port to
//     --port-file (and prints {"event":"listening","port":P}); after each call prints {"event":"call",
//     "method":m,"envelopes":n,"peer":p,"end":"half-close"|"cancelled"}. A stream the client half-closes is
//     answered with OK, or with --eof as the real Go router answers it: UNKNOWN "EOF". While --stall-file exists
//     the router reads nothing (every call is paused, so HTTP/2 flow control stops the client); once it is
//     removed reading resumes. Runs until SIGTERM or SIGINT.
//
// Subscriber tool (tests/integration/omfirehose-*.sh): a consumer of a router's or RLP's egress.
//
//   node peer.js subscribe --target HOST:PORT [--tls --ca F --cert F --key F --name SAN]
//       --method BatchedReceiver|Receiver|BatchSubscribe|Subscribe --out F [--ready-file F] [--pause-file F]
//       [--stop-file F] (--selectors JSON | --app-id A [--filter log|metric]) [--shard-id S]
//       [--deterministic-name N] [--preferred-tags]
//     One egress call. v2 methods send an EgressBatchRequest / EgressRequest with the selectors given as a JSON
//     array of Selector objects (proto field names, e.g. '[{"source_id":"a","log":{}},{"counter":{"name":"c"}}]';
//     '[]' sends none), shard_id, deterministic_name and use_preferred_tags; v1 methods send a SubscriptionRequest
//     {shardID: S, filter: {appID: A, log|metric}} (no filter without --app-id and --filter). Every envelope
//     received is appended to --out as one JSON line: v2 in the JSON form of wire.md section 5 (every default field
//     present, as `send --dump` writes it); v1 as {"v1": <events.Envelope as protobufjs JSON>}. --ready-file is
//     written once the request is sent. While --pause-file exists the call reads nothing (HTTP/2 flow control then
//     stops the server); once it is removed reading resumes. When --stop-file appears, or on SIGTERM, the call is
//     cancelled. At the end prints {"event":"status","code":c,"details":d,"messages":n,"envelopes":n} (code -1
//     when the subscriber cancelled) and exits.
'use strict';

const fs = require('fs');
const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

function parseArgs(argv) {
  const opts = { _: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) {
      opts._.push(a);
    } else if (a === '--tls' || a === '--stream' || a === '--eof' || a === '--preferred-tags') {
      opts[a.slice(2)] = true;
    } else {
      opts[a.slice(2)] = argv[++i];
    }
  }
  return opts;
}

function say(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function loadProtos(protoDir) {
  const def = protoLoader.loadSync(['ingress.proto', 'egress.proto', 'envelope.proto'], {
    keepCase: true,
    longs: String,
    enums: String,
    bytes: Buffer,
    defaults: false,
    oneofs: true,
    includeDirs: [protoDir],
  });
  return grpc.loadPackageDefinition(def).loggregator.v2;
}

function envelope(ts, sourceId, payloadSize) {
  const text = 'message ' + ts + ' ';
  const payload = Buffer.alloc(Math.max(payloadSize, text.length), 'x');
  payload.write(text);
  return {
    timestamp: String(ts),
    source_id: sourceId,
    instance_id: '0',
    tags: { origin: 'grpc-peer' },
    log: { payload, type: 'OUT' },
  };
}

// Tracks what one call received: counts, order of timestamps, source ids.
function tally(method) {
  return {
    method,
    messages: 0,
    envelopes: 0,
    bytes: 0,
    in_order: true,
    first: null,
    last: null,
    sources: new Set(),
    add(envs) {
      this.messages++;
      for (const e of envs) {
        const ts = BigInt(e.timestamp || 0);
        if (this.last !== null && ts <= this.last) this.in_order = false;
        if (this.first === null) this.first = ts;
        this.last = ts;
        this.envelopes++;
        this.sources.add(e.source_id || '');
        if (e.log && e.log.payload) this.bytes += e.log.payload.length;
      }
    },
    report(extra) {
      say(Object.assign({
        event: 'call',
        method: this.method,
        messages: this.messages,
        envelopes: this.envelopes,
        bytes: this.bytes,
        in_order: this.in_order,
        first: this.first === null ? null : String(this.first),
        last: this.last === null ? null : String(this.last),
        source_ids: [...this.sources],
      }, extra || {}));
    },
  };
}

function serverCreds(opts) {
  if (!opts.tls) return grpc.ServerCredentials.createInsecure();
  return grpc.ServerCredentials.createSsl(fs.readFileSync(opts.ca),
    [{ cert_chain: fs.readFileSync(opts.cert), private_key: fs.readFileSync(opts.key) }], true);
}

function runServer(opts, v2) {
  const server = new grpc.Server({ 'grpc.max_receive_message_length': 10 * 1024 * 1024 });
  const wanted = opts.calls ? parseInt(opts.calls, 10) : 0;
  const answer = opts.status !== undefined
    ? { code: parseInt(opts.status, 10), details: opts.message || '' } : null;
  let done = 0;

  function finished(t, err, extra) {
    t.report(Object.assign(err ? { error: err.message } : {}, extra || {}));
    done++;
    if (wanted && done >= wanted) {
      server.tryShutdown(() => process.exit(0));
      setTimeout(() => process.exit(0), 2000).unref();
    }
  }

  function streaming(method, unpack) {
    return (call, callback) => {
      const t = tally(method);
      call.on('data', (msg) => t.add(unpack(msg)));
      call.on('end', () => {
        callback(answer, answer ? undefined : {});
        finished(t);
      });
      call.on('error', (err) => finished(t, err));
    };
  }

  server.addService(v2.Ingress.service, {
    Sender: streaming('Sender', (e) => [e]),
    BatchSender: streaming('BatchSender', (b) => b.batch || []),
    Send: (call, callback) => {
      const t = tally('Send');
      t.add(call.request.batch || []);
      callback(answer, answer ? undefined : {});
      finished(t);
    },
  });
  server.addService(v2.Egress.service, {
    BatchedReceiver: (call) => {
      const t = tally('BatchedReceiver');
      const sel = (call.request.selectors || [])[0] || {};
      const total = parseInt(opts['stream-count'] || '100', 10);
      const batch = parseInt(opts.batch || '1', 10);
      let ts = 0;
      let sent = 0;
      let cancelled = false;
      call.on('cancelled', () => { cancelled = true; });
      const pump = () => {
        while (!cancelled && sent < total) {
          const envs = [];
          for (let i = 0; i < batch; i++) envs.push(envelope(++ts, sel.source_id || '', 0));
          sent++;
          if (!call.write({ batch: envs })) {
            call.once('drain', pump);
            return;
          }
        }
        if (cancelled) {
          finished(t, null, { sent, cancelled: true, shard_id: call.request.shard_id || '' });
        } else if (answer) {
          call.emit('error', answer);
          finished(t, null, { sent, shard_id: call.request.shard_id || '' });
        } else {
          call.end();
          finished(t, null, { sent, shard_id: call.request.shard_id || '' });
        }
      };
      pump();
    },
  });
  server.bindAsync('127.0.0.1:' + (opts.port || '0'), serverCreds(opts), (err, port) => {
    if (err) {
      say({ event: 'error', error: err.message });
      process.exit(1);
    }
    say({ event: 'listening', port });
  });
  process.stdin.on('end', () => process.exit(0));
  process.stdin.resume();
}

function clientCreds(opts) {
  if (!opts.tls) return [grpc.credentials.createInsecure(), {}];
  const creds = grpc.credentials.createSsl(fs.readFileSync(opts.ca), fs.readFileSync(opts.key),
    fs.readFileSync(opts.cert));
  const name = opts.name || 'doppler';
  return [creds, { 'grpc.ssl_target_name_override': name, 'grpc.default_authority': name }];
}

function runSubscriber(opts, v2) {
  const [creds, chanOpts] = clientCreds(opts);
  const client = new v2.Egress(opts.target, creds, chanOpts);
  const t = tally('BatchedReceiver');
  const cancelAfter = opts['cancel-after'] ? parseInt(opts['cancel-after'], 10) : 0;
  const call = client.BatchedReceiver({
    shard_id: opts['shard-id'] || '',
    selectors: [{ source_id: opts['source-id'] || 'grpc-peer', log: {} }],
  });
  let done = false;
  const result = (code, details) => {
    if (done) return;
    done = true;
    say({
      event: 'result', code, details, messages: t.messages, envelopes: t.envelopes, in_order: t.in_order,
      first: t.first === null ? null : String(t.first), last: t.last === null ? null : String(t.last),
      source_ids: [...t.sources],
    });
    client.close();
  };
  call.on('data', (b) => {
    t.add(b.batch || []);
    if (cancelAfter && t.envelopes >= cancelAfter) call.cancel();
  });
  call.on('status', (st) => result(st.code, st.details));
  call.on('error', (err) => result(err.code, err.details));
}

// ---- subscriber tool --------------------------------------------------------------------------------------------

const EGRESS_PATHS = {
  BatchedReceiver: '/loggregator.v2.Egress/BatchedReceiver',
  Receiver: '/loggregator.v2.Egress/Receiver',
  BatchSubscribe: '/plumbing.Doppler/BatchSubscribe',
  Subscribe: '/plumbing.Doppler/Subscribe',
};

function runSubscribe(opts, protoDir) {
  const method = opts.method || 'BatchedReceiver';
  const rpcPath = EGRESS_PATHS[method];
  if (!rpcPath || !opts.out) {
    process.stderr.write('subscribe: --method must be BatchedReceiver, Receiver, BatchSubscribe or Subscribe; --out is required\n');
    process.exit(2);
  }
  const protobuf = require(require.resolve('protobufjs',
    { paths: [path.dirname(require.resolve('@grpc/proto-loader'))] }));
  const root = new protobuf.Root();
  root.resolvePath = (origin, target) => path.join(protoDir, target);
  root.loadSync(['envelope.proto', 'events.proto', 'egress.proto', 'plumbing.proto'], { keepCase: true });
  const types = { v2: root.lookupType('loggregator.v2.Envelope'), v1: root.lookupType('events.Envelope') };
  const v1 = method === 'BatchSubscribe' || method === 'Subscribe';
  let request;
  if (v1) {
    const req = { shardID: opts['shard-id'] || '' };
    if (opts['app-id'] !== undefined || opts.filter !== undefined) {
      req.filter = { appID: opts['app-id'] || '' };
      if (opts.filter === 'log') req.filter.log = {};
      else if (opts.filter === 'metric') req.filter.metric = {};
    }
    const T = root.lookupType('plumbing.SubscriptionRequest');
    request = Buffer.from(T.encode(T.fromObject(req)).finish());
  } else {
    const T = root.lookupType(method === 'Receiver' ? 'loggregator.v2.EgressRequest' : 'loggregator.v2.EgressBatchRequest');
    request = Buffer.from(T.encode(T.fromObject({
      shard_id: opts['shard-id'] || '',
      deterministic_name: opts['deterministic-name'] || '',
      use_preferred_tags: !!opts['preferred-tags'],
      selectors: JSON.parse(opts.selectors || '[]'),
    })).finish());
  }
  const out = fs.openSync(opts.out, 'a');
  const [creds, chanOpts] = clientCreds(opts);
  const client = new grpc.Client(opts.target, creds,
    Object.assign({ 'grpc.max_receive_message_length': 16 * 1024 * 1024 }, chanOpts));
  const call = client.makeServerStreamRequest(rpcPath, identity, identity, request);
  let messages = 0;
  let envelopes = 0;
  let ended = false;
  const v1Json = (buf) => ({
    v1: types.v1.toObject(types.v1.decode(buf), { longs: String, enums: String, bytes: String, json: true, defaults: false }),
  });
  const write = (lines) => {
    if (lines.length > 0) fs.writeSync(out, lines.map((l) => JSON.stringify(l)).join('\n') + '\n');
  };
  const end = (code, details) => {
    if (ended) return;
    ended = true;
    fs.closeSync(out);
    say({ event: 'status', code, details, messages, envelopes });
    client.close();
    process.exit(0);
  };
  call.on('data', (msg) => {
    messages++;
    let lines;
    if (method === 'BatchedReceiver') lines = batchEnvelopes(msg).map((e) => canonV2(types, e));
    else if (method === 'Receiver') lines = [canonV2(types, msg)];
    else lines = batchEnvelopes(msg).map(v1Json); /* BatchResponse and Response: payload = 1 */
    envelopes += lines.length;
    write(lines);
  });
  call.on('status', (st) => end(st.code, st.details));
  call.on('error', (err) => end(err.code, err.details));
  const pauseFile = opts['pause-file'];
  const stopFile = opts['stop-file'];
  let paused = false;
  setInterval(() => {
    if (stopFile !== undefined && fs.existsSync(stopFile)) {
      call.cancel();
      end(-1, 'cancelled by the subscriber');
    }
    const now = pauseFile !== undefined && fs.existsSync(pauseFile);
    if (now !== paused) {
      paused = now;
      if (paused) call.pause();
      else call.resume();
    }
  }, 20);
  if (pauseFile !== undefined && fs.existsSync(pauseFile)) {
    paused = true;
    call.pause();
  }
  process.on('SIGTERM', () => {
    call.cancel();
    end(-1, 'cancelled by the subscriber');
  });
  if (opts['ready-file']) fs.writeFileSync(opts['ready-file'], 'ready\n');
}

function runClient(opts, v2) {
  if (opts.method === 'BatchedReceiver') return runSubscriber(opts, v2);
  const [creds, chanOpts] = clientCreds(opts);
  const client = new v2.Ingress(opts.target, creds, chanOpts);
  const method = opts.method || 'BatchSender';
  const count = parseInt(opts.count || '1', 10);
  const batch = parseInt(opts.batch || '1', 10);
  const sourceId = opts['source-id'] || 'grpc-peer';
  const payloadSize = parseInt(opts['payload-size'] || '0', 10);
  let ts = 0;
  const result = (err, sent) => {
    say({ event: 'result', code: err ? err.code : 0, details: err ? err.details : '', sent });
    client.close();
  };
  const nextBatch = () => {
    const envs = [];
    for (let i = 0; i < batch; i++) envs.push(envelope(++ts, sourceId, payloadSize));
    return { batch: envs };
  };

  if (method === 'Send') {
    let sent = 0;
    const one = () => {
      if (sent === count) return result(null, sent);
      client.Send(nextBatch(), (err) => {
        if (err) return result(err, sent);
        sent++;
        one();
      });
    };
    one();
    return;
  }
  const call = client[method]((err) => result(err, sent));
  let sent = 0;
  const pump = () => {
    while (sent < count) {
      const msg = method === 'Sender' ? envelope(++ts, sourceId, payloadSize) : nextBatch();
      sent++;
      if (!call.write(msg)) {
        call.once('drain', pump);
        return;
      }
    }
    call.end();
  };
  pump();
}

// ---- ingress test tools: send, raw, h2, udp ---------------------------------------------------------------

// protobufjs, as @grpc/proto-loader brings it, with the project's v2 and v1 envelopes (EnvelopeBatch and
// EnvelopeData are written by hand: one length-delimited field each).
function loadRoot(protoDir) {
  const protobuf = require(require.resolve('protobufjs',
    { paths: [path.dirname(require.resolve('@grpc/proto-loader'))] }));
  const root = new protobuf.Root();
  root.resolvePath = (origin, target) => path.join(protoDir, target);
  root.loadSync(['envelope.proto', 'events.proto'], { keepCase: true });
  return {
    v2: root.lookupType('loggregator.v2.Envelope'),
    v1: root.lookupType('events.Envelope'),
  };
}

function varint(n) {
  const out = [];
  let v = BigInt(n);
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) b |= 0x80;
    out.push(b);
  } while (v > 0n);
  return Buffer.from(out);
}

// One length-delimited field: key, length, bytes.
function lenField(num, bytes) {
  return Buffer.concat([varint((num << 3) | 2), varint(bytes.length), bytes]);
}

function readVarint(buf, pos) {
  let v = 0n;
  let shift = 0n;
  for (;;) {
    if (pos >= buf.length) throw new Error('truncated varint');
    const b = buf[pos++];
    v |= BigInt(b & 0x7f) << shift;
    shift += 7n;
    if (!(b & 0x80)) return [v, pos];
  }
}

// Removes the field at path (field numbers, outermost first) from the encoded message buf.
function dropField(buf, fieldPath) {
  const parts = [];
  let pos = 0;
  while (pos < buf.length) {
    const start = pos;
    let key;
    [key, pos] = readVarint(buf, pos);
    const num = Number(key >> 3n);
    const wt = Number(key & 7n);
    let body = null;
    if (wt === 0) [, pos] = readVarint(buf, pos);
    else if (wt === 1) pos += 8;
    else if (wt === 5) pos += 4;
    else if (wt === 2) {
      let len;
      [len, pos] = readVarint(buf, pos);
      body = buf.subarray(pos, pos + Number(len));
      pos += Number(len);
    } else throw new Error('wire type ' + wt);
    if (num !== fieldPath[0]) parts.push(buf.subarray(start, pos));
    else if (fieldPath.length > 1 && body !== null) parts.push(lenField(num, dropField(body, fieldPath.slice(1))));
  }
  return Buffer.concat(parts);
}

// One line of v1 input (Pusher, UDP) as the bytes to send.
function v1Bytes(types, line) {
  if (line.hex !== undefined) return Buffer.from(line.hex, 'hex');
  let buf = Buffer.from(types.v1.encode(types.v1.fromObject(line.v1)).finish());
  for (const p of line.drop || []) buf = dropField(buf, p);
  return buf;
}

// The JSON form of wire.md section 5 (every default field present) of an encoded v2 Envelope.
function canonV2(types, buf) {
  const o = types.v2.toObject(types.v2.decode(buf),
    { longs: String, enums: String, bytes: String, json: true, defaults: false, oneofs: false });
  const out = {
    timestamp: o.timestamp || '0', source_id: o.source_id || '', instance_id: o.instance_id || '',
    deprecated_tags: {}, tags: Object.assign({}, o.tags || {}),
  };
  for (const [k, v] of Object.entries(o.deprecated_tags || {})) {
    const d = {};
    for (const f of ['text', 'integer', 'decimal']) if (v[f] !== undefined) d[f] = v[f];
    out.deprecated_tags[k] = d;
  }
  if (o.log) {
    out.log = { payload: o.log.payload || '', type: o.log.type || 'OUT' };
  } else if (o.counter) {
    out.counter = { name: o.counter.name || '', delta: o.counter.delta || '0', total: o.counter.total || '0' };
  } else if (o.gauge) {
    out.gauge = { metrics: {} };
    for (const [k, v] of Object.entries(o.gauge.metrics || {})) {
      out.gauge.metrics[k] = { unit: v.unit || '', value: v.value === undefined ? 0 : v.value };
    }
  } else if (o.timer) {
    out.timer = { name: o.timer.name || '', start: o.timer.start || '0', stop: o.timer.stop || '0' };
  } else if (o.event) {
    out.event = { title: o.event.title || '', body: o.event.body || '' };
  }
  return out;
}

const INGRESS_PATHS = {
  Sender: '/loggregator.v2.Ingress/Sender',
  BatchSender: '/loggregator.v2.Ingress/BatchSender',
  Send: '/loggregator.v2.Ingress/Send',
  Pusher: '/plumbing.DopplerIngestor/Pusher',
};

const identity = (b) => b;

function readLines(file) {
  return fs.readFileSync(file, 'utf8').split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l));
}

// What one worker sends: next() gives {wire, ts, dump} per envelope, or null at the end.
function envelopeSource(opts, types, worker) {
  const method = opts.method;
  if (opts.input) {
    const lines = readLines(opts.input);
    let i = 0;
    return () => {
      if (i >= lines.length) return null;
      const line = lines[i++];
      if (method === 'Pusher') {
        const wire = v1Bytes(types, line);
        return { wire, ts: line.v1 && line.v1.timestamp ? String(line.v1.timestamp) : '0', dump: { v1hex: wire.toString('hex') } };
      }
      const wire = Buffer.from(types.v2.encode(types.v2.fromObject(line)).finish());
      return { wire, ts: String(line.timestamp || '0') };
    };
  }
  const total = parseInt(opts.gen || '0', 10);
  const base = BigInt(opts['ts-base'] || '1700000000000000000');
  const parallel = parseInt(opts.parallel || '1', 10);
  const prefix = opts['source-id'] || 'grpc-peer';
  const sourceId = parallel > 1 ? prefix + '-' + worker : prefix;
  const payloadSize = parseInt(opts['payload-size'] || '0', 10);
  let seq = 0;
  return () => {
    if (total > 0 && seq >= total) return null;
    seq++;
    const text = sourceId + ' ' + seq;
    const payload = Buffer.alloc(Math.max(payloadSize, text.length), 'x');
    payload.write(text);
    const ts = String(base + BigInt(seq));
    const env = {
      timestamp: ts, source_id: sourceId, instance_id: String(worker),
      tags: { origin: 'grpc-peer', seq: String(seq) }, log: { payload, type: 'OUT' },
    };
    return { wire: Buffer.from(types.v2.encode(types.v2.fromObject(env)).finish()), ts };
  };
}

function runSend(opts, types) {
  const method = opts.method;
  const rpcPath = INGRESS_PATHS[method];
  if (!rpcPath) {
    process.stderr.write('send: --method must be Sender, BatchSender, Send or Pusher\n');
    process.exit(2);
  }
  const parallel = parseInt(opts.parallel || '1', 10);
  const batch = method === 'BatchSender' || method === 'Send' ? parseInt(opts.batch || '1', 10) : 1;
  const interval = parseInt(opts['interval-ms'] || '0', 10);
  const stopFile = opts['stop-file'];
  const dumpFd = opts.dump ? fs.openSync(opts.dump, 'w') : null;
  const [creds, baseOpts] = clientCreds(opts);
  const results = [];
  let running = parallel;

  const stopped = () => stopFile !== undefined && fs.existsSync(stopFile);
  const pause = (ms) => new Promise((r) => setTimeout(r, ms));

  function finish() {
    const bad = results.find((r) => r.code !== 0);
    say({
      event: 'done', code: bad ? bad.code : 0,
      envelopes: results.reduce((n, r) => n + r.envelopes, 0), acked: results.reduce((n, r) => n + r.acked, 0),
    });
    if (dumpFd !== null) fs.closeSync(dumpFd);
    process.exit(0);
  }

  async function worker(w) {
    const client = new grpc.Client(opts.target, creds, Object.assign({ 'grpc.use_local_subchannel_pool': 1 }, baseOpts));
    const next = envelopeSource(opts, types, w);
    const r = {
      event: 'result', worker: w, method, source_id: '', code: 0, details: '', messages: 0, envelopes: 0, acked: 0,
      acked_last: null,
    };
    // The next message: its bytes and the envelopes in it; null when the source or the stop file says so.
    const take = () => {
      if (stopped()) return null;
      const envs = [];
      for (let i = 0; i < batch; i++) {
        const e = next();
        if (e === null) break;
        envs.push(e);
      }
      if (envs.length === 0) return null;
      if (dumpFd !== null) {
        for (const e of envs) fs.writeSync(dumpFd, JSON.stringify(e.dump || canonV2(types, e.wire)) + '\n');
      }
      if (r.messages === 0 && method !== 'Pusher') r.source_id = types.v2.decode(envs[0].wire).source_id || '';
      let wire;
      if (method === 'Sender') wire = envs[0].wire;
      else if (method === 'Pusher') wire = lenField(1, envs[0].wire);
      else wire = Buffer.concat(envs.map((e) => lenField(1, e.wire)));
      r.messages++;
      r.envelopes += envs.length;
      return { wire, last: envs[envs.length - 1].ts, n: envs.length };
    };
    const failed = (err) => {
      r.code = err.code;
      r.details = err.details;
    };
    pending.add(r);

    try {
      if (method === 'Send') {
        for (let m = take(); m !== null; m = take()) {
          const err = await new Promise((resolve) => {
            client.makeUnaryRequest(rpcPath, identity, identity, m.wire, resolve);
          });
          if (err) {
            failed(err);
            break;
          }
          r.acked += m.n;
          r.acked_last = m.last;
          if (interval > 0) await pause(interval);
        }
      } else {
        let status;
        let call;
        const done = new Promise((resolve) => {
          call = client.makeClientStreamRequest(rpcPath, identity, identity, (err) => resolve(err || null));
        });
        done.then((err) => { status = err; });
        let last = null;
        for (let m = status === undefined ? take() : null; m !== null; m = status === undefined ? take() : null) {
          last = m.last;
          if (!call.write(m.wire)) {
            await new Promise((resolve) => {
              call.once('drain', resolve);
              done.then(resolve);
            });
          }
          if (interval > 0) await pause(interval);
          else if (r.messages % 64 === 0) await new Promise(setImmediate); /* lets an early status arrive */
        }
        call.end();
        const err = await done;
        if (err) {
          failed(err);
        } else {
          r.acked = r.envelopes;
          r.acked_last = last;
        }
      }
    } catch (e) {
      r.code = -1;
      r.details = String((e && e.stack) || e);
    }
    client.close();
    pending.delete(r);
    say(r);
    results.push(r);
    if (--running === 0) finish();
  }

  // A call the client library dropped without a status would otherwise end the process in silence once its
  // connection is gone: such a worker is reported with code -2; what it counted as acknowledged stays (a stream's
  // envelopes count only once its OK status arrives, so none of them do).
  const pending = new Set();
  process.on('beforeExit', () => {
    for (const r of pending) {
      r.code = -2;
      r.details = 'the client library ended the process with this call still open and no status';
      say(r);
      results.push(r);
    }
    if (pending.size > 0) finish();
  });
  for (let w = 0; w < parallel; w++) worker(w);
}

function runRaw(opts) {
  const [creds, chanOpts] = clientCreds(opts);
  const client = new grpc.Client(opts.target, creds, chanOpts);
  const msgs = (opts.hex || '').split(',').map((h) => Buffer.from(h, 'hex'));
  const done = (err) => {
    say({ event: 'result', code: err ? err.code : 0, details: err ? err.details : '' });
    client.close();
    process.exit(0);
  };
  if (opts.stream) {
    const call = client.makeClientStreamRequest(opts.path, identity, identity, done);
    for (const m of msgs) call.write(m);
    call.end();
  } else {
    client.makeUnaryRequest(opts.path, identity, identity, msgs[0], done);
  }
}

function runH2(opts) {
  const http2 = require('http2');
  const res = { event: 'h2', status: null, grpc_status: null, grpc_message: null, rst: null, error: null };
  let reported = false;
  const report = () => {
    if (reported) return;
    reported = true;
    say(res);
    process.exit(0);
  };
  const note = (h) => {
    if (h[':status'] !== undefined) res.status = Number(h[':status']);
    if (h['grpc-status'] !== undefined) res.grpc_status = Number(h['grpc-status']);
    if (h['grpc-message'] !== undefined) res.grpc_message = decodeURIComponent(h['grpc-message']);
  };
  const connOpts = opts.tls ? {
    ca: fs.readFileSync(opts.ca), cert: fs.readFileSync(opts.cert), key: fs.readFileSync(opts.key),
    servername: opts.name || 'doppler', ALPNProtocols: ['h2'],
  } : {};
  const session = http2.connect((opts.tls ? 'https://' : 'http://') + opts.target, connOpts);
  session.on('error', (e) => {
    res.error = e.code || e.message;
    report();
  });
  const headers = {
    ':method': opts['http-method'] || 'POST', ':path': opts.path,
    'content-type': opts['content-type'] !== undefined ? opts['content-type'] : 'application/grpc', te: 'trailers',
  };
  const req = session.request(headers);
  req.on('response', note);
  req.on('trailers', note);
  req.on('data', () => {});
  req.on('error', (e) => { res.error = e.code || e.message; });
  req.on('close', () => {
    if (req.rstCode !== undefined && req.rstCode !== 0) res.rst = req.rstCode;
    session.close();
    report();
  });
  req.end(Buffer.from(opts.hex || '', 'hex'));
}

function runUdp(opts, types) {
  const dgram = require('dgram');
  const lines = readLines(opts.input);
  const sep = opts.target.lastIndexOf(':');
  const host = opts.target.slice(0, sep);
  const port = parseInt(opts.target.slice(sep + 1), 10);
  const sock = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
  let sent = 0;
  const one = () => {
    if (sent === lines.length) {
      sock.close();
      say({ event: 'result', sent });
      return;
    }
    sock.send(v1Bytes(types, lines[sent]), port, host, (err) => {
      if (err) {
        say({ event: 'result', sent, error: err.message });
        process.exit(1);
      }
      sent++;
      one();
    });
  };
  one();
}

// ---- router tool ----------------------------------------------------------------------------------------------

// The timestamp (ns, as a decimal string) in RFC 3339, UTC, with microseconds.
function rfc3339Micro(ns) {
  const t = BigInt(ns);
  const secs = t / 1000000000n;
  const micros = (t % 1000000000n) / 1000n;
  const base = new Date(Number(secs) * 1000).toISOString().replace(/\.\d{3}Z$/, '');
  return base + '.' + String(micros).padStart(6, '0') + 'Z';
}

// One record of records.py's form for an encoded v2 envelope received from ip.
function routerRecord(types, token, ip, wire) {
  const env = canonV2(types, wire);
  let msg;
  let severity = 'info';
  if (env.log) {
    msg = Buffer.from(env.log.payload, 'base64');
    if (env.log.type === 'ERR') severity = 'err';
    delete env.log.payload;
  } else if (env.counter) {
    msg = Buffer.from('counter ' + env.counter.name);
  } else if (env.gauge) {
    msg = Buffer.from('gauge ' + Object.keys(env.gauge.metrics).join(' '));
  } else if (env.timer) {
    msg = Buffer.from('timer ' + env.timer.name);
  } else if (env.event) {
    msg = Buffer.from('event ' + env.event.title);
  } else {
    msg = Buffer.from('envelope without a message');
  }
  const us = '\x1f';
  const head = '@@LGR-' + token + '@@' + env.source_id + us + env.instance_id + us + severity + us +
    rfc3339Micro(env.timestamp) + us + ip + us + JSON.stringify(env) + us;
  return Buffer.concat([Buffer.from(head), msg, Buffer.from('##LGR-' + token + '##\n')]);
}

// Envelopes of one EnvelopeBatch (field 1, repeated), as encoded bytes.
function batchEnvelopes(buf) {
  const out = [];
  let pos = 0;
  while (pos < buf.length) {
    let key;
    [key, pos] = readVarint(buf, pos);
    const wt = Number(key & 7n);
    if (wt === 0) {
      [, pos] = readVarint(buf, pos);
      continue;
    }
    if (wt === 1 || wt === 5) {
      pos += wt === 1 ? 8 : 4;
      continue;
    }
    if (wt !== 2) throw new Error('wire type ' + wt);
    let len;
    [len, pos] = readVarint(buf, pos);
    const body = buf.subarray(pos, pos + Number(len));
    pos += Number(len);
    if (Number(key >> 3n) === 1) out.push(body);
  }
  return out;
}

function peerIp(call) {
  const p = call.getPeer();
  const m = /^(?:ipv[46]:)?\[?([^\]]*?)\]?:\d+$/.exec(p);
  return m ? m[1] : p;
}

function runRouter(opts, types) {
  const server = new grpc.Server({ 'grpc.max_receive_message_length': 10 * 1024 * 1024 });
  const records = fs.openSync(opts.records, 'a');
  const v1Records = opts['v1-records'] ? fs.openSync(opts['v1-records'], 'a') : null;
  const token = opts.token || 'router';
  const stallFile = opts['stall-file'];
  const calls = new Set();
  let stalled = false;

  const stallCheck = () => {
    const now = stallFile !== undefined && fs.existsSync(stallFile);
    if (now === stalled) return;
    stalled = now;
    for (const c of calls) {
      if (stalled) c.pause();
      else c.resume();
    }
    say({ event: stalled ? 'stalled' : 'resumed' });
  };
  if (stallFile !== undefined) setInterval(stallCheck, 20);

  const record = (ip, wire) => fs.writeSync(records, routerRecord(types, token, ip, wire));
  const unpack = {
    Sender: (ip, msg) => { record(ip, msg); return 1; },
    BatchSender: (ip, msg) => {
      const envs = batchEnvelopes(msg);
      for (const e of envs) record(ip, e);
      return envs.length;
    },
    Pusher: (ip, msg) => {
      const envs = batchEnvelopes(msg); /* EnvelopeData: payload = 1 */
      for (const e of envs) {
        const obj = types.v1.toObject(types.v1.decode(e),
          { longs: String, enums: String, bytes: String, json: true, defaults: false });
        if (v1Records !== null) fs.writeSync(v1Records, JSON.stringify({ v1: obj }) + '\n');
      }
      return envs.length;
    },
  };
  const streaming = (method) => (call, callback) => {
    const ip = peerIp(call);
    let n = 0;
    let ended = false;
    calls.add(call);
    if (stalled) call.pause();
    const finish = (how) => {
      if (ended) return;
      ended = true;
      calls.delete(call);
      say({ event: 'call', method, envelopes: n, peer: call.getPeer(), end: how });
    };
    call.on('data', (msg) => {
      try {
        n += unpack[method](ip, msg);
      } catch (e) {
        say({ event: 'error', method, error: String(e) });
      }
    });
    call.on('end', () => {
      if (opts.eof) callback({ code: grpc.status.UNKNOWN, details: 'EOF' });
      else callback(null, Buffer.alloc(0));
      finish('half-close');
    });
    call.on('cancelled', () => finish('cancelled'));
    call.on('error', () => finish('cancelled'));
  };
  const def = (path, stream) => ({
    path, requestStream: stream, responseStream: false,
    requestSerialize: identity, requestDeserialize: identity,
    responseSerialize: identity, responseDeserialize: identity,
  });
  server.addService({
    Sender: def(INGRESS_PATHS.Sender, true),
    BatchSender: def(INGRESS_PATHS.BatchSender, true),
    Send: def(INGRESS_PATHS.Send, false),
  }, {
    Sender: streaming('Sender'),
    BatchSender: streaming('BatchSender'),
    Send: (call, callback) => {
      const n = unpack.BatchSender(peerIp(call), call.request);
      callback(null, Buffer.alloc(0));
      say({ event: 'call', method: 'Send', envelopes: n, peer: call.getPeer(), end: 'unary' });
    },
  });
  server.addService({ Pusher: def(INGRESS_PATHS.Pusher, true) }, { Pusher: streaming('Pusher') });
  server.bindAsync('127.0.0.1:' + (opts.port || '0'), serverCreds(opts), (err, port) => {
    if (err) {
      say({ event: 'error', error: err.message });
      process.exit(1);
    }
    if (opts['port-file']) {
      fs.writeFileSync(opts['port-file'] + '.tmp', port + '\n');
      fs.renameSync(opts['port-file'] + '.tmp', opts['port-file']);
    }
    say({ event: 'listening', port });
  });
  const quit = () => {
    fs.closeSync(records);
    if (v1Records !== null) fs.closeSync(v1Records);
    process.exit(0);
  };
  process.on('SIGTERM', quit);
  process.on('SIGINT', quit);
}

function main() {
  const opts = parseArgs(process.argv.slice(2));
  const protoDir = opts['proto-dir'] || path.join(__dirname, '..', '..', '..', 'lib', 'proto');
  const v2 = loadProtos(protoDir);
  const mode = opts._[0];
  if (mode === 'server') runServer(opts, v2);
  else if (mode === 'client') runClient(opts, v2);
  else if (mode === 'send') runSend(opts, loadRoot(protoDir));
  else if (mode === 'raw') runRaw(opts);
  else if (mode === 'h2') runH2(opts);
  else if (mode === 'udp') runUdp(opts, loadRoot(protoDir));
  else if (mode === 'router') runRouter(opts, loadRoot(protoDir));
  else if (mode === 'subscribe') runSubscribe(opts, protoDir);
  else {
    process.stderr.write('usage: peer.js server|client|send|raw|h2|udp|router|subscribe [options] (see the header of peer.js)\n');
    process.exit(2);
  }
}

main();
