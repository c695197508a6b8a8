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
    } else if (a === '--tls') {
      opts.tls = true;
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

function main() {
  const opts = parseArgs(process.argv.slice(2));
  const protoDir = opts['proto-dir'] || path.join(__dirname, '..', '..', '..', 'lib', 'proto');
  const v2 = loadProtos(protoDir);
  const mode = opts._[0];
  if (mode === 'server') runServer(opts, v2);
  else if (mode === 'client') runClient(opts, v2);
  else {
    process.stderr.write('usage: peer.js server|client [options] (see the header of peer.js)\n');
    process.exit(2);
  }
}

main();
