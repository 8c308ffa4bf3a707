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
//   env TLS=1: the client speaks TLS (a full TLS 1.3 handshake each time, no
//     resumption, EC P-256 certificate like the bench's TLS scenarios); the
//     node-naive peer is then a bare Node TLS relay (tls.createServer, connect, pipe)
//   env COUNT: instructions (default: callgrind) | cpu (no valgrind: the proxy pinned to
//     CPU 0 and this process to CPU 1, CPU µs per handshake from /proc, per thread too) |
//     syscalls (no valgrind: `strace -c -f` attached for the counted handshakes)
//   env HTTP=1: keep-alive HTTP requests instead of handshakes (C connections, each
//     GET after GET; the upstream answers 200 with a 2-byte body on kept-alive
//     connections; nginx and HAProxy reuse theirs as in the bench): N and WARM count
//     requests, the figures are per request
//   env ECHO=1: the bench's handshake scenario instead (bench/lib/ws-load.ts): after
//     the 101 one 16 B frame each way, then a close frame with the FIN and the socket
//     destroyed at once (an RST when the proxy's bytes are still coming)
//   env NODE: the Node binary for the Node peers (default: this one)
//   env CLI: the wsgate CLI (default: this checkout's dist/lib/cli.js)
//   env WSGATE_FAST_PATHS: passed through to the wsgate peer
//   env NODE_FLAGS: flags for the Node peers' node (e.g. --perf-basic-prof, whose
//     /tmp/perf-PID.map names the JIT addresses in callgrind_annotate's output)
// Prints one JSON line: { peer, node, fastPaths (the wsgate start-up line), n, instructions, perHandshake, mainThreadPerHandshake }.
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
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
const TLS = process.env.TLS === '1';
const ECHO = process.env.ECHO === '1';
const HTTP = process.env.HTTP === '1';
const HTTP_RESPONSE = Buffer.from('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok');
const FRAME = Buffer.from([0x82, 0x90, 1, 2, 3, 4, ...Buffer.alloc(16, 7)]); // masked 16 B binary frame
const ECHOED = Buffer.from([0x82, 0x10, ...Buffer.alloc(16, 7)]); // the upstream's answer
const CLOSE = Buffer.from([0x88, 0x80, 0, 0, 0, 0]);
const dir = mkdtempSync(join(tmpdir(), 'wsgate-hs-instr-'));
const CERT = join(dir, 'cert.pem');
const KEYFILE = join(dir, 'key.pem');
const COMBINED = join(dir, 'combined.pem');
if (TLS) {
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', KEYFILE, '-out', CERT, '-days', '2', '-subj', '/CN=bench.test'], { stdio: 'ignore' });
  writeFileSync(COMBINED, readFileSync(CERT).toString() + readFileSync(KEYFILE).toString());
  // The bare Node TLS relay: the floor for a Node proxy that terminates TLS.
  writeFileSync(
    join(dir, 'tls-relay.mjs'),
    `import net from 'node:net'; import tls from 'node:tls'; import { readFileSync } from 'node:fs';
const [port, up] = process.argv.slice(2).map(Number);
tls.createServer({ cert: readFileSync(${JSON.stringify(CERT)}), key: readFileSync(${JSON.stringify(KEYFILE)}), minVersion: 'TLSv1.2', ALPNProtocols: ['http/1.1'] }, (c) => {
  const u = net.connect(up, '127.0.0.1');
  c.on('error', () => u.destroy()); u.on('error', () => c.destroy());
  c.pipe(u).pipe(c);
}).on('tlsClientError', (_e, c) => c.destroy()).listen(port, '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));
`,
  );
}

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const KEY = 'dGhlIHNhbXBsZSBub25jZQ==';
const ACCEPT = createHash('sha1').update(KEY + GUID).digest('base64');

// The upstream: one 101 per upgrade request, then it waits for the close.
const upstream = net.createServer((s) => {
  s.on('error', () => {});
  let head = '';
  s.on('data', (d) => {
    if (HTTP) {
      // one answer per request head (GETs: no bodies)
      head += d.toString('latin1');
      let end;
      while ((end = head.indexOf('\r\n\r\n')) >= 0) {
        head = head.slice(end + 4);
        s.write(HTTP_RESPONSE);
      }
      return;
    }
    if (head === null) {
      if (ECHO && d[0] === 0x82) s.write(ECHOED);
      return;
    }
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
      return [NODE, ...NODE_FLAGS, CLI, ...(TLS ? ['--tls-listen', `127.0.0.1:${P}`, '--tls-cert', CERT, '--tls-key', KEYFILE] : ['--listen', `127.0.0.1:${P}`]), '--route', `/=http://127.0.0.1:${U}`, '--log-level', 'info'];
    case 'node-naive':
      return [NODE, ...NODE_FLAGS, TLS ? join(dir, 'tls-relay.mjs') : join(ROOT, 'dist/bench/lib/naive-relay.js'), String(P), String(U)];
    case 'nginx':
      writeFileSync(
        join(dir, 'nginx.conf'),
        `daemon off; master_process off; worker_processes 1; pid ${dir}/nginx.pid; error_log ${dir}/error.log error;
events { worker_connections 4096; }
http { access_log off; client_body_temp_path ${dir}/b; proxy_temp_path ${dir}/p; fastcgi_temp_path ${dir}/f; uwsgi_temp_path ${dir}/u; scgi_temp_path ${dir}/s;
  map $http_upgrade $connection_upgrade { default upgrade; '' ''; }
  upstream kept { server 127.0.0.1:${U}; keepalive 64; }
  server { listen 127.0.0.1:${P}${TLS ? ` ssl; ssl_certificate ${CERT}; ssl_certificate_key ${KEYFILE}; ssl_protocols TLSv1.2 TLSv1.3` : ''};
    location / { proxy_pass http://${HTTP ? 'kept' : `127.0.0.1:${U}`}; proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade; proxy_set_header Host $host; proxy_read_timeout 3600s; } } }
`,
      );
      return ['nginx', '-p', dir, '-c', join(dir, 'nginx.conf')];
    case 'haproxy':
      writeFileSync(
        join(dir, 'haproxy.cfg'),
        `global\n  maxconn 4096\n  nbthread 1\ndefaults\n  mode http\n  timeout connect 5s\n  timeout client 1h\n  timeout server 1h\n  timeout tunnel 1h\nfrontend in\n  bind 127.0.0.1:${P}${TLS ? ` ssl crt ${COMBINED} alpn http/1.1` : ''}\n  option http-keep-alive\n  default_backend out\nbackend out\n  http-reuse always\n  server s1 127.0.0.1:${U}\n`,
      );
      return ['haproxy', '-db', '-f', join(dir, 'haproxy.cfg')];
    default:
      throw new Error(`unknown peer ${peer}`);
  }
}

const cmd = command();
const out = join(dir, 'callgrind.out');
const COUNT = process.env.COUNT ?? 'instructions';
// Under valgrind the start-up probe takes far longer than its 3 s: without more time every
// fast path is measured off (sessions 9-11 measured so by mistake: bench/RESULTS.md).
const env = {
  ...process.env,
  WSGATE_FAST_PATHS: peer === 'wsgate-off' ? 'off' : (process.env.WSGATE_FAST_PATHS ?? ''),
  ...(COUNT === 'instructions' ? { WSGATE_PROBE_TIMEOUT_MS: '600000' } : {}),
};
if (!['instructions', 'cpu', 'syscalls'].includes(COUNT)) throw new Error(`COUNT: instructions, cpu or syscalls, not ${COUNT}`);
const wrapped = COUNT === 'instructions' ? ['valgrind', '--tool=callgrind', '--cache-sim=no', '--smc-check=all-non-file', '--separate-threads=yes', `--callgrind-out-file=${out}`, ...cmd] : cmd;
const child = spawn(wrapped[0], wrapped.slice(1), {
  env,
  stdio: ['ignore', 'ignore', 'pipe'],
});
let stderr = '';
child.stderr.on('data', (d) => (stderr += d));

const REQUEST = Buffer.from(`GET /ws HTTP/1.1\r\nHost: bench.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n`);

function handshake() {
  return new Promise((resolve) => {
    const s = TLS ? tls.connect({ port: P, host: '127.0.0.1', rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] }) : net.connect(P, '127.0.0.1');
    let head = '';
    let done = false;
    let echoing = false;
    let got = 0;
    const finish = (ok) => {
      if (done) return;
      done = true;
      if (ECHO) {
        s.end(CLOSE);
        s.destroy();
      } else {
        s.end();
        s.resume();
      }
      resolve(ok);
    };
    s.on(TLS ? 'secureConnect' : 'connect', () => s.write(REQUEST));
    s.on('data', (d) => {
      if (done) return;
      if (echoing) {
        got += d.length;
        if (got >= ECHOED.length) finish(true);
        return;
      }
      head += d.toString('latin1');
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      const ok = head.startsWith('HTTP/1.1 101') && head.includes(ACCEPT);
      if (!ECHO || !ok) return finish(ok);
      echoing = true;
      got = head.length - end - 4;
      s.write(FRAME);
    });
    s.on('error', () => finish(false));
    s.on('close', () => finish(false));
  });
}

const GET = Buffer.from('GET /index.html HTTP/1.1\r\nHost: bench.test\r\nUser-Agent: instructions\r\nAccept: */*\r\n\r\n');

/**
 * C kept-alive connections, n GETs in all, one at a time on each; a connection
 * the proxy closes (its keep-alive request limit) is replaced. Resolves to the failures.
 */
async function requests(n) {
  let next = 0;
  let failed = 0;
  const connection = () =>
    new Promise((resolve) => {
      const s = TLS ? tls.connect({ port: P, host: '127.0.0.1', rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] }) : net.connect(P, '127.0.0.1');
      let buffered = '';
      let waiting = false;
      const send = () => {
        if (next >= n) {
          s.end();
          s.resume();
          return;
        }
        next++;
        waiting = true;
        s.write(GET);
      };
      s.on(TLS ? 'secureConnect' : 'connect', send);
      s.on('data', (d) => {
        buffered += d.toString('latin1');
        const end = buffered.indexOf('\r\n\r\n');
        if (end < 0) return;
        const length = Number(/content-length:\s*(\d+)/i.exec(buffered.slice(0, end))?.[1] ?? 0);
        if (buffered.length < end + 4 + length) return;
        if (!buffered.startsWith('HTTP/1.1 200')) failed++;
        const last = /\r\nconnection:\s*close/i.test(buffered.slice(0, end)); // the proxy's keep-alive limit
        buffered = buffered.slice(end + 4 + length);
        waiting = false;
        if (last) s.end();
        else send();
      });
      s.on('error', () => {});
      s.on('close', () => {
        if (waiting) failed++;
        resolve();
      });
    });
  const worker = async () => {
    while (next < n) await connection();
  };
  await Promise.all(Array.from({ length: C }, worker));
  return failed;
}

async function load(n) {
  if (HTTP) return requests(n);
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

// The wsgate peers log which fast paths the probe chose: reported, and a wsgate peer that
// should have them all but runs without one is an error, not a figure.
const fastPathLine = /fast paths on Node [^\n]*/.exec(stderr)?.[0] ?? null;
if (peer === 'wsgate' && !process.env.WSGATE_FAST_PATHS && fastPathLine !== null && /\b(?:handle writes off|pooled reads off|turn writes off)\b/.test(fastPathLine)) {
  child.kill('SIGKILL');
  throw new Error(`wsgate runs without a fast path: ${fastPathLine}`);
}
const pid = String(child.pid);
if (COUNT === 'cpu') {
  execFileSync('taskset', ['-apc', '0', pid], { stdio: 'ignore' });
  execFileSync('taskset', ['-pc', '1', String(process.pid)], { stdio: 'ignore' });
}
/** CPU ticks (user, system) of each of the proxy's threads. */
const threadTicks = () =>
  Object.fromEntries(
    readdirSync(`/proc/${pid}/task`).map((t) => {
      const stat = readFileSync(`/proc/${pid}/task/${t}/stat`, 'latin1');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      return [`${t} ${stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'))}`, [Number(fields[11]), Number(fields[12])]];
    }),
  );
const warmFailed = await load(WARM);
await new Promise((r) => setTimeout(r, 500));
let tracer = null;
let ticksBefore = null;
if (COUNT === 'instructions') execFileSync('callgrind_control', ['-z', pid], { stdio: 'ignore' });
else if (COUNT === 'syscalls') {
  tracer = spawn('strace', ['-c', '-f', '-o', out, '-p', pid], { stdio: 'ignore' });
  await new Promise((r) => setTimeout(r, 1500)); // attached to every thread
} else ticksBefore = threadTicks();
const failed = await load(N);
await new Promise((r) => setTimeout(r, 500)); // the closes finish
let counted = {};
if (COUNT === 'instructions') execFileSync('callgrind_control', ['-d', pid], { stdio: 'ignore' });
else if (COUNT === 'syscalls') {
  tracer.kill('SIGINT');
  await once(tracer, 'exit');
  // strace -c's table: calls per handshake of each system call
  for (const line of readFileSync(out, 'latin1').split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length >= 5 && /^\d+$/.test(f[3]) && /^[a-z_0-9]+$/.test(f[f.length - 1]) && f[f.length - 1] !== 'total') counted[f[f.length - 1]] = Number((Number(f[3]) / N).toFixed(2));
  }
} else {
  const tick = 1e6 / 100; // µs per clock tick (USER_HZ 100)
  const after = threadTicks();
  let user = 0;
  let system = 0;
  const perThread = {};
  for (const [k, [u, sy]] of Object.entries(after)) {
    const [u0, s0] = ticksBefore[k] ?? [0, 0];
    user += u - u0;
    system += sy - s0;
    if (u - u0 + sy - s0 > 0) perThread[k] = Math.round(((u - u0 + sy - s0) * tick) / N);
  }
  counted = { [HTTP ? 'cpuUsPerRequest' : 'cpuUsPerHandshake']: Math.round(((user + system) * tick) / N), userUs: Math.round((user * tick) / N), systemUs: Math.round((system * tick) / N), perThread };
}
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
const base = { peer, tls: TLS, echo: ECHO, node, fastPaths: fastPathLine, n: N, warm: WARM, concurrency: C, failed: failed + warmFailed };
const per = HTTP ? 'Request' : 'Handshake';
if (COUNT === 'instructions') console.log(JSON.stringify({ ...base, http: HTTP, instructions, [`per${per}`]: Math.round(instructions / N), [`mainThreadPer${per}`]: Math.round(mainThread / N), dumps: dir }));
else console.log(JSON.stringify({ ...base, count: COUNT, ...counted }));

