// User-space instructions per WebSocket handshake, counted by valgrind's
// callgrind: a figure that does not move with the machine's noise (the same
// build, inputs and environment give the same count within about 1 %), so a
// change of a few percent to the handshake path can be decided on a 2-core
// machine where wall-clock CPU per handshake moves by 13-30 % between runs.
// It counts instructions, not time: system calls, cache misses and the
// kernel are not in it (RESULTS.md, "Handshake instructions").
//
// The proxy runs under callgrind; this process is the upstream (answers 101,
// then closes when the client does) and the client (C concurrent handshakes:
// connect, upgrade request, read the 101 head, FIN). After WARM handshakes
// the counters are zeroed, N handshakes are counted, and the dump's total is
// divided by N.
//
// usage: node bench/extra/handshake-instructions.mjs PEER [N] [WARM] [C]
//   PEER: wsgate | wsgate-off | node-naive | nginx | haproxy
//   env NODE: the Node binary for the Node peers (default: this one)
//   env CLI: the wsgate CLI (default: this checkout's dist/lib/cli.js)
//   env WSGATE_FAST_PATHS: passed through to the wsgate peer
//   env NODE_FLAGS: flags for the Node peers' node (e.g. --perf-basic-prof, whose
//     /tmp/perf-PID.map names the JIT addresses in callgrind_annotate's output)
// Prints one JSON line: { peer, node, n, instructions, perHandshake, mainThreadPerHandshake }.
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '../..');
const [peer = 'wsgate', nArg = '1000', warmArg = '300', cArg = '20'] = process.argv.slice(2);
const N = Number(nArg);
const WARM = Number(warmArg);
const C = Number(cArg);
const NODE = process.env.NODE ?? process.execPath;
const CLI = process.env.CLI ?? join(ROOT, 'dist/lib/cli.js');
const NODE_FLAGS = (process.env.NODE_FLAGS ?? '').split(' ').filter(Boolean);
const dir = mkdtempSync(join(tmpdir(), 'wsgate-hs-instr-'));

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const KEY = 'dGhlIHNhbXBsZSBub25jZQ==';
const ACCEPT = createHash('sha1').update(KEY + GUID).digest('base64');

// The upstream: one 101 per upgrade request, then it waits for the close.
const upstream = net.createServer((s) => {
  s.on('error', () => {});
  let head = '';
  s.on('data', (d) => {
    if (head === null) return;
    head += d.toString('latin1');
    const end = head.indexOf('\r\n\r\n');
    if (end < 0) return;
    const key = /sec-websocket-key:\s*(\S+)/i.exec(head.slice(0, end))?.[1] ?? '';
    head = null;
    const accept = createHash('sha1').update(key + GUID).digest('base64');
    s.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
  });
  s.on('end', () => s.end());
});
upstream.listen(0, '127.0.0.1');
await once(upstream, 'listening');
const U = upstream.address().port;

const probe = net.createServer();
probe.listen(0, '127.0.0.1');
await once(probe, 'listening');
const P = probe.address().port;
probe.close();

function command() {
  switch (peer) {
    case 'wsgate':
    case 'wsgate-off':
      return [NODE, ...NODE_FLAGS, CLI, '--listen', `127.0.0.1:${P}`, '--route', `/=http://127.0.0.1:${U}`, '--log-level', 'error'];
    case 'node-naive':
      return [NODE, ...NODE_FLAGS, join(ROOT, 'dist/bench/lib/naive-relay.js'), String(P), String(U)];
    case 'nginx':
      writeFileSync(
        join(dir, 'nginx.conf'),
        `daemon off; master_process off; worker_processes 1; pid ${dir}/nginx.pid; error_log ${dir}/error.log error;
events { worker_connections 4096; }
http { access_log off; client_body_temp_path ${dir}/b; proxy_temp_path ${dir}/p; fastcgi_temp_path ${dir}/f; uwsgi_temp_path ${dir}/u; scgi_temp_path ${dir}/s;
  map $http_upgrade $connection_upgrade { default upgrade; '' ''; }
  server { listen 127.0.0.1:${P};
    location / { proxy_pass http://127.0.0.1:${U}; proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade; proxy_set_header Host $host; proxy_read_timeout 3600s; } } }
`,
      );
      return ['nginx', '-p', dir, '-c', join(dir, 'nginx.conf')];
    case 'haproxy':
      writeFileSync(
        join(dir, 'haproxy.cfg'),
        `global\n  maxconn 4096\n  nbthread 1\ndefaults\n  mode http\n  timeout connect 5s\n  timeout client 1h\n  timeout server 1h\n  timeout tunnel 1h\nfrontend in\n  bind 127.0.0.1:${P}\n  default_backend out\nbackend out\n  server s1 127.0.0.1:${U}\n`,
      );
      return ['haproxy', '-db', '-f', join(dir, 'haproxy.cfg')];
    default:
      throw new Error(`unknown peer ${peer}`);
  }
}

const cmd = command();
const out = join(dir, 'callgrind.out');
const env = { ...process.env, WSGATE_FAST_PATHS: peer === 'wsgate-off' ? 'off' : (process.env.WSGATE_FAST_PATHS ?? '') };
const child = spawn('valgrind', ['--tool=callgrind', '--cache-sim=no', '--smc-check=all-non-file', '--separate-threads=yes', `--callgrind-out-file=${out}`, ...cmd], {
  env,
  stdio: ['ignore', 'ignore', 'pipe'],
});
let stderr = '';
child.stderr.on('data', (d) => (stderr += d));

const REQUEST = Buffer.from(`GET /ws HTTP/1.1\r\nHost: bench.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n`);

function handshake() {
  return new Promise((resolve) => {
    const s = net.connect(P, '127.0.0.1');
    let head = '';
    let done = false;
    const finish = (ok) => {
      if (done) return;
      done = true;
      s.end();
      s.resume();
      resolve(ok);
    };
    s.on('connect', () => s.write(REQUEST));
    s.on('data', (d) => {
      if (done) return;
      head += d.toString('latin1');
      if (head.includes('\r\n\r\n')) finish(head.startsWith('HTTP/1.1 101') && head.includes(ACCEPT));
    });
    s.on('error', () => finish(false));
    s.on('close', () => finish(false));
  });
}

async function load(n) {
  let next = 0;
  let failed = 0;
  const worker = async () => {
    while (next < n) {
      next++;
      if (!(await handshake())) failed++;
    }
  };
  await Promise.all(Array.from({ length: C }, worker));
  return failed;
}

// Wait until the proxy answers (valgrind starts Node slowly).
const started = Date.now();
for (;;) {
  if (child.exitCode !== null) throw new Error(`${peer} exited: ${stderr.slice(-2000)}`);
  const ok = await new Promise((resolve) => {
    const s = net.connect(P, '127.0.0.1', () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
  if (ok) break;
  if (Date.now() - started > 120_000) throw new Error(`${peer} did not listen: ${stderr.slice(-2000)}`);
  await new Promise((r) => setTimeout(r, 250));
}

const pid = String(child.pid);
const warmFailed = await load(WARM);
await new Promise((r) => setTimeout(r, 500));
execFileSync('callgrind_control', ['-z', pid], { stdio: 'ignore' });
const failed = await load(N);
await new Promise((r) => setTimeout(r, 500)); // the closes finish
execFileSync('callgrind_control', ['-d', pid], { stdio: 'ignore' });
child.kill('SIGTERM');
await once(child, 'exit');
upstream.close();

// Dumps are out.1-01, out.1-02, ... per thread (nginx, HAProxy: one thread); thread 01
// is the main thread, the event loop; the others are V8's helpers (concurrent
// marking and scavenging, the optimizing compiler) and libuv's pool.
let instructions = 0;
let mainThread = 0;
for (const f of readdirSync(dir).filter((f) => /^callgrind\.out\.\d+(-\d+)?$/.test(f))) {
  const m = /^summary:\s+(\d+)/m.exec(readFileSync(join(dir, f), 'utf8'));
  if (!m) continue;
  instructions += Number(m[1]);
  if (!f.includes('-') || f.endsWith('-01')) mainThread += Number(m[1]);
}
const node = peer.startsWith('wsgate') || peer === 'node-naive' ? execFileSync(NODE, ['--version']).toString().trim() : null;
console.log(JSON.stringify({ peer, node, n: N, warm: WARM, concurrency: C, failed: failed + warmFailed, instructions, perHandshake: Math.round(instructions / N), mainThreadPerHandshake: Math.round(mainThread / N), dumps: dir }));

