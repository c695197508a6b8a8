#!/usr/bin/env node
// tcp-relay.js: a TCP relay for the reliability tests (tests/integration/reliability-*.sh), which puts faults of
// the network between two peers without touching either: it forwards bytes both ways, unchanged (TLS passes
// through end to end), optionally at a limited rate, and on a signal resets every connection it carries.
//
//   node tcp-relay.js --target HOST:PORT [--port-file F] [--rate BYTES_PER_SECOND] [--rate-file F]
//
// Listens on 127.0.0.1, port 0; writes the bound port to --port-file (atomically, through a rename) and prints
// {"event":"listening","port":P}. Each accepted connection is relayed to --target. With --rate each direction of
// each connection is held to that many bytes per second (reading pauses, so TCP flow control pushes back on the
// sender, as a congested link does). Prints one JSON line per event: {"event":"open","n":k} when a connection is
// relayed, {"event":"close","n":k,"up":bytes,"down":bytes} when it ends. --rate 0 (the default) is no limit;
// --rate stop reads nothing (every connection stalls: the peers' TCP windows close).
//
// Signals:
//   SIGUSR1  every open connection is reset on both sides (TCP RST, socket.resetAndDestroy(): the peers see
//            ECONNRESET, not an orderly close); prints {"event":"reset","connections":n}. New connections are
//            relayed as before.
//   SIGHUP   reads the rate again from --rate-file (a number, or "stop"), prints {"event":"rate","rate":r} and
//            applies it at once to every connection (stalled ones resume).
//   SIGTERM, SIGINT  exit.
'use strict';

const fs = require('fs');
const net = require('net');

function parseArgs(argv) {
  const opts = {};
  for (let i = 0; i < argv.length; i += 2) {
    if (!argv[i].startsWith('--') || i + 1 >= argv.length) {
      throw new Error('usage: tcp-relay.js --target HOST:PORT [--port-file F] [--rate N|stop] [--rate-file F]');
    }
    opts[argv[i].slice(2)] = argv[i + 1];
  }
  if (!opts.target) throw new Error('--target is required');
  return opts;
}

function say(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

const opts = parseArgs(process.argv.slice(2));
const sep = opts.target.lastIndexOf(':');
const targetHost = opts.target.slice(0, sep);
const targetPort = Number(opts.target.slice(sep + 1));
let rate = parseRate(opts.rate || '0');
const open = new Set();
const directions = new Set(); // every live direction, to apply a new rate at once
let seq = 0;

function parseRate(text) {
  const t = String(text).trim();
  if (t === 'stop') return -1;
  const n = Number(t);
  if (!Number.isFinite(n) || n < 0) throw new Error('bad rate: ' + t);
  return n;
}

// A direction SRC -> DST: at most `rate` bytes per second when rate > 0, nothing while rate < 0, DST's
// backpressure honoured; counts into stat[key].
function relay(src, dst, stat, key) {
  const d = { src, dst, start: Date.now(), since: 0, timer: null, held: false };
  directions.add(d);
  src.on('close', () => directions.delete(d));
  d.kick = () => {
    // resume unless something still holds reading: a stop, a rate delay, or a full DST
    if (rate < 0 || d.timer || dst.writableNeedDrain) return;
    d.held = false;
    src.resume();
  };
  src.on('data', (chunk) => {
    stat[key] += chunk.length;
    if (!dst.write(chunk)) {
      src.pause();
      dst.once('drain', d.kick);
    }
    if (rate < 0) {
      src.pause();
      d.held = true;
    } else if (rate > 0) {
      // hold reading until the bytes so far fit the rate: (since / rate) seconds after start
      d.since += chunk.length;
      const wait = d.start + (d.since * 1000) / rate - Date.now();
      if (wait > 0) {
        src.pause();
        d.timer = setTimeout(() => {
          d.timer = null;
          d.kick();
        }, wait);
      } else if (wait < -1000) {
        d.start = Date.now(); // idle for a while: no burst credit beyond a second
        d.since = 0;
      }
    }
  });
  src.on('end', () => dst.end());
}

function setRate(r) {
  rate = r;
  for (const d of directions) {
    if (d.timer) {
      clearTimeout(d.timer);
      d.timer = null;
    }
    d.start = Date.now();
    d.since = 0;
    d.kick();
  }
  say({ event: 'rate', rate: r < 0 ? 'stop' : r });
}

const server = net.createServer({ allowHalfOpen: true }, (client) => {
  const n = ++seq;
  const stat = { up: 0, down: 0 };
  const upstream = net.connect({ port: targetPort, host: targetHost, allowHalfOpen: true });
  // no Nagle delay on either side: the peers' own small frames (acknowledgements, WINDOW_UPDATEs) pass as they
  // would without the relay
  client.setNoDelay(true);
  upstream.setNoDelay(true);
  const pair = { client, upstream };
  open.add(pair);
  say({ event: 'open', n });
  relay(client, upstream, stat, 'up');
  relay(upstream, client, stat, 'down');
  // an error on either side ends both; an orderly end is passed on (half-close) and the pair is done once both
  // sides have closed
  let closed = 0;
  let reported = false;
  const finish = () => {
    if (reported) return;
    reported = true;
    open.delete(pair);
    client.destroy();
    upstream.destroy();
    say({ event: 'close', n, up: stat.up, down: stat.down });
  };
  const closedOne = () => {
    if (++closed === 2) finish();
  };
  client.on('error', finish);
  upstream.on('error', finish);
  client.on('close', closedOne);
  upstream.on('close', closedOne);
});

process.on('SIGUSR1', () => {
  const n = open.size;
  for (const { client, upstream } of open) {
    // RST on both sides: each peer sees its connection reset mid-stream
    if (!client.destroyed) client.resetAndDestroy();
    if (!upstream.destroyed) upstream.resetAndDestroy();
  }
  say({ event: 'reset', connections: n });
});
process.on('SIGHUP', () => {
  if (opts['rate-file']) setRate(parseRate(fs.readFileSync(opts['rate-file'], 'utf8')));
});
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));

server.listen(0, '127.0.0.1', () => {
  const port = server.address().port;
  if (opts['port-file']) {
    fs.writeFileSync(opts['port-file'] + '.tmp', String(port) + '\n');
    fs.renameSync(opts['port-file'] + '.tmp', opts['port-file']);
  }
  say({ event: 'listening', port });
});
