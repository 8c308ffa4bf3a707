// lib/io/node-internals.ts: the start-up probe picks, per Node line, the fast
// paths that work there (a table in helpers/fast-paths.ts), reports them in
// stats() and one log line, never throws, and a Node without what wsgate
// needs gets one line, not a stack. The CLI prints no warning on any Node.
import t from 'tap';
import { once } from 'node:events';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { createGateway } from '../../lib/index.js';
import { fastPaths } from '../../lib/io/node-internals.js';
import { describeFastPaths } from '../../lib/io/probe.js';
import { expectedFastPaths, expectedWriteContract, probedFastPaths } from '../helpers/fast-paths.js';
import { spawnCli } from '../helpers/faults.js';
import { answeringUpstream, rawExchange, wsEcho, type Teardown } from '../helpers/net.js';
import { repoPath } from '../helpers/paths.js';


t.test(`the probe picks the fast paths expected on Node ${process.version}`, async (t) => {
  const paths = await probedFastPaths();
  t.same(paths, expectedFastPaths());
  t.same(fastPaths(), paths, 'in effect after the probe');
  t.match(describeFastPaths(), new RegExp(`^fast paths on Node ${process.version.replace(/\./g, '\\.')}: handle writes ${paths.handleWrites}, `));
});

t.test('the write-contract table: request objects up to Node 24.21, null requests from 24.22 and on 26', async (t) => {
  t.equal(expectedWriteContract('20.20.2'), 'request-object');
  t.equal(expectedWriteContract('22.23.5'), 'request-object');
  t.equal(expectedWriteContract('24.21.0'), 'request-object');
  t.equal(expectedWriteContract('24.22.3'), 'null-request');
  t.equal(expectedWriteContract('26.12.1'), 'null-request');
});

t.test('stats() reports the fast paths; the gateway logs them in one line at start', async (t) => {
  const lines: string[] = [];
  const gw = createGateway({ routes: ['/=http://127.0.0.1:9'], logger: { log: (level, message) => lines.push(`${level} ${message}`) } });
  await gw.listen(0, '127.0.0.1');
  t.teardown(() => gw.close({ drainMs: 0 }));
  t.same(gw.stats().fastPaths, expectedFastPaths());
  t.equal(lines.filter((l) => l.includes('fast paths on Node')).length, 1, 'one line');
});

/** A `--require` script that changes Node before wsgate loads: how these tests play a Node that differs. */
function preloadScript(name: string, lines: string[]): string {
  const file = join(mkdtempSync(join(tmpdir(), 'wsgate-probe-')), name);
  writeFileSync(file, [...lines, ''].join('\n'));
  return file;
}

/** A preload that runs `body` (with `h`, the handle) on each socket wsgate dials, once it is connected. */
function dialedHandlePreload(name: string, body: string[]): string {
  return preloadScript(name, [
    "const net = require('node:net');",
    'const connect = net.Socket.prototype.connect;',
    'net.Socket.prototype.connect = function (...args) {',
    "  this.once('connect', () => { const h = this._handle; if (!h) return;",
    ...body.map((line) => `    ${line}`),
    '  });',
    '  return connect.apply(this, args);',
    '};',
  ]);
}

/** These tests are about what the probe decides: it runs even in the suite's fast-paths-off pass. */
const PROBE_RUNS = { WSGATE_FAST_PATHS: '' };

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Starts the CLI (helpers/faults.ts) with `env` and Node flags, runs `work(port)` once it listens, then stops it with SIGTERM. */
async function runCli(t: Teardown, args: string[], env: NodeJS.ProcessEnv, nodeFlags: string[], work: (port: number) => Promise<void>): Promise<Run> {
  const c = spawnCli(t, args, { env, nodeFlags });
  // Generous: a CI machine running two test files beside this one starts the CLI (and its probes) several times slower.
  const deadline = Date.now() + 30_000;
  while (!/listening on/.test(c.stdout()) && c.child.exitCode === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  const port = Number(/listening on http:\/\/[^:]+:(\d+)/.exec(c.stdout())?.[1] ?? 0);
  try {
    if (port > 0) await work(port);
    else if (c.child.exitCode === null) throw new Error(`the CLI did not listen within 30 s; stderr: ${c.stderr()}`);
  } finally {
    if (c.child.exitCode === null) c.child.kill('SIGTERM');
  }
  return { code: await c.exit, stdout: c.stdout(), stderr: c.stderr() };
}

async function proxyBoth(port: number): Promise<void> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/ws/`);
  await once(ws, 'open');
  const reply = new Promise<string>((r) => ws.once('message', (d) => r(d.toString())));
  ws.send('ping');
  if ((await reply) !== 'ping') throw new Error('no echo');
  ws.close();
  const res = await rawExchange(port, 'GET /page HTTP/1.1\r\nHost: a\r\n\r\n');
  if (!res.text.endsWith('page')) throw new Error(`bad answer ${res.text}`);
}

t.test('the CLI proxies a WebSocket and an HTTP request and prints no warning (deprecations included)', async (t) => {
  const echo = await wsEcho(t);
  const page = await answeringUpstream(t, 'HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\npage');
  const args = ['--listen', '127.0.0.1:0', '--route', `/ws/=http://127.0.0.1:${echo.port}`, '--route', `/=http://127.0.0.1:${page.port}`];
  // --pending-deprecation turns documentation-only deprecations into warnings where Node can.
  const run = await runCli(t, args, {}, ['--pending-deprecation', '--trace-deprecation'], proxyBoth);
  t.equal(run.code, 0, 'graceful exit');
  // tap instruments child processes (process-on-spawn, which calls process.binding): its warnings are the harness's, not wsgate's.
  const warnings = run.stderr.split(/(?=\(node:\d+\) )/).filter((block) => /Warning|DEP0\d+/.test(block) && !/process-on-spawn|@tapjs/.test(block));
  t.same(warnings, [], 'no warning printed');
  t.match(run.stderr, /fast paths on Node/, 'the start-up line names the fast paths');
});

t.test('WSGATE_FAST_PATHS=off: every fallback, and the CLI still proxies both ways', async (t) => {
  const echo = await wsEcho(t);
  const page = await answeringUpstream(t, 'HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\npage');
  const args = ['--listen', '127.0.0.1:0', '--route', `/ws/=http://127.0.0.1:${echo.port}`, '--route', `/=http://127.0.0.1:${page.port}`];
  const run = await runCli(t, args, { WSGATE_FAST_PATHS: 'off' }, [], proxyBoth);
  t.equal(run.code, 0);
  t.match(run.stderr, /handle writes off, pooled reads off, turn writes off, handle tunnels off \(all: WSGATE_FAST_PATHS=off\)/);
});

t.test('WSGATE_FAST_PATHS=no-pooled-reads,no-turn-writes: just those off, named in the start-up line; the CLI still proxies', async (t) => {
  const echo = await wsEcho(t);
  const page = await answeringUpstream(t, 'HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\npage');
  const args = ['--listen', '127.0.0.1:0', '--route', `/ws/=http://127.0.0.1:${echo.port}`, '--route', `/=http://127.0.0.1:${page.port}`];
  const run = await runCli(t, args, { WSGATE_FAST_PATHS: 'no-pooled-reads, no-turn-writes,bogus' }, [], proxyBoth);
  t.equal(run.code, 0);
  t.match(run.stderr, new RegExp(`handle writes ${expectedWriteContract()}, pooled reads off, turn writes off, handle tunnels on \\(pooledReads: WSGATE_FAST_PATHS; turnWrites: WSGATE_FAST_PATHS\\)`));
});

t.test('a Node whose net.Socket lacks the Writable hooks: turn writes off, the rest still proxies', async (t) => {
  const preload = preloadScript('no-final.cjs', ["const net = require('node:net'); delete net.Socket.prototype._final; net.Socket.prototype._final = undefined;"]);
  const echo = await wsEcho(t);
  const page = await answeringUpstream(t, 'HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\npage');
  const args = ['--listen', '127.0.0.1:0', '--route', `/ws/=http://127.0.0.1:${echo.port}`, '--route', `/=http://127.0.0.1:${page.port}`];
  const run = await runCli(t, args, PROBE_RUNS, ['--require', preload], async (port) => {
    // _final is what end() calls: a Node without it cannot half-close; only check the start-up verdict and a tunnel.
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws/`);
    await once(ws, 'open');
    ws.terminate();
  });
  t.match(run.stderr, /turn writes off, handle tunnels on \(turnWrites: net\.Socket has no _write\/_writev\/_final\/_destroy\)/);
});

t.test('a Node whose handle writes misbehave: the probe turns them off instead of throwing', async (t) => {
  // A handle whose writeBuffer lies about the queue: the probe's pending write never waits.
  const preload = dialedHandlePreload('odd-writes.cjs', ["Object.defineProperty(h, 'writeQueueSize', { get: () => 0 });"]);
  const page = await answeringUpstream(t, 'HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\npage');
  const run = await runCli(t, ['--listen', '127.0.0.1:0', '--route', `/=http://127.0.0.1:${page.port}`], PROBE_RUNS, ['--require', preload], async (port) => {
    const res = await rawExchange(port, 'GET /page HTTP/1.1\r\nHost: a\r\n\r\n');
    if (!res.text.endsWith('page')) throw new Error(`bad answer ${res.text}`);
  });
  t.equal(run.code, 0);
  t.match(run.stderr, /handle writes off, pooled reads on, turn writes off, handle tunnels off \(handleWrites: [^;]+; turnWrites: needs handle writes; handleTunnels: needs handle writes\)/);
});

t.test('a pending write that libuv finished inside the call (writeQueueSize 0) does not turn handle writes off', async (t) => {
  // CI (node24, a loaded machine): the kernel freed room between Node's try-write and libuv's write, so the
  // probe's first pending write came back with writeQueueSize 0 and the probe turned handle writes off.
  // Played here: on each dialed handle, the first non-zero queue size read is reported as 0.
  const preload = dialedHandlePreload('finished-in-call.cjs', [
    "let d = null; for (let p = h; p && !d; p = Object.getPrototypeOf(p)) d = Object.getOwnPropertyDescriptor(p, 'writeQueueSize');",
    'if (!d || !d.get) return;',
    'let hidden = false;',
    "Object.defineProperty(h, 'writeQueueSize', { configurable: true, get() { const v = d.get.call(h); if (v !== 0 && !hidden) { hidden = true; return 0; } return v; } });",
  ]);
  const echo = await wsEcho(t);
  const page = await answeringUpstream(t, 'HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\npage');
  const args = ['--listen', '127.0.0.1:0', '--route', `/ws/=http://127.0.0.1:${echo.port}`, '--route', `/=http://127.0.0.1:${page.port}`];
  const run = await runCli(t, args, PROBE_RUNS, ['--require', preload], proxyBoth);
  t.equal(run.code, 0, `exit code; stderr: ${run.stderr}`);
  t.match(run.stderr, new RegExp(`fast paths on Node [^:]+: handle writes ${expectedWriteContract(process.versions.node)}, `));
});

t.test('a slow start (valgrind): each probe waits WSGATE_PROBE_TIMEOUT_MS, 3 s by default', async (t) => {
  // Every socket's 'connect' event comes 400 ms late: a probe given 100 ms gives up, one given 20 s does not.
  const preload = preloadScript('slow-connect.cjs', [
    "const net = require('node:net');",
    'const emit = net.Socket.prototype.emit;',
    "net.Socket.prototype.emit = function (name, ...args) { if (name !== 'connect') return emit.call(this, name, ...args); setTimeout(() => emit.call(this, name, ...args), 400); return true; };",
  ]);
  const page = await answeringUpstream(t, 'HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\npage');
  const serve = async (port: number) => {
    const res = await rawExchange(port, 'GET /page HTTP/1.1\r\nHost: a\r\n\r\n');
    if (!res.text.endsWith('page')) throw new Error(`bad answer ${res.text}`);
  };
  const args = ['--listen', '127.0.0.1:0', '--route', `/=http://127.0.0.1:${page.port}`];
  const short = await runCli(t, args, { ...PROBE_RUNS, WSGATE_PROBE_TIMEOUT_MS: '100' }, ['--require', preload], serve);
  t.equal(short.code, 0, `exit code; stderr: ${short.stderr}`);
  t.match(short.stderr, /handle writes off, .*handleWrites: handle writes: no answer within 100 ms/);
  const long = await runCli(t, args, { ...PROBE_RUNS, WSGATE_PROBE_TIMEOUT_MS: '20000' }, ['--require', preload], serve);
  t.equal(long.code, 0, `exit code; stderr: ${long.stderr}`);
  t.match(long.stderr, new RegExp(`fast paths on Node [^:]+: handle writes ${expectedWriteContract(process.versions.node)}, `));
  t.notMatch(long.stderr, /no answer within/);
});

t.test('a Node without a usable HTTP parser: the CLI exits 1 with one line naming the Node version', async (t) => {
  const preload = preloadScript('no-parser.cjs', [
    "const Module = require('node:module');",
    'const load = Module._load;',
    "Module._load = function (request, ...rest) { if (request === '_http_common') throw new Error('No such built-in module: _http_common'); return load.call(this, request, ...rest); };",
  ]);
  const run = await runCli(t, ['--listen', '127.0.0.1:0', '--route', '/=http://127.0.0.1:9'], {}, ['--require', preload], async () => {});
  t.equal(run.code, 1);
  const lines = run.stderr.trim().split('\n');
  t.equal(lines.length, 1, `one line: ${run.stderr}`);
  t.match(lines[0], new RegExp(`^wsgate: cannot run on Node ${process.version.replace(/\./g, '\\.')}: its HTTP parser .*No such built-in module`));
});

t.test('no file in lib/ but io/node-internals.ts touches an underscore field, an internal module or class', async (t) => {
  const lib = repoPath('lib');
  const files = readdirSync(lib, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts') && f !== join('io', 'node-internals.ts'));
  t.ok(files.length > 20, `${files.length} files checked`);
  // An underscore member access (`._handle`, `['_final']`), Node's internal modules and bindings, its write request class.
  const internal = /\.\s*_[a-z]\w*|\[\s*['"]_[a-z]\w*['"]\s*\]|_http_common|_http_server|internalBinding|process\.binding|\bWriteWrap\b|\bHTTPParser\b|\bkOn(?:Headers|Body|MessageComplete|MessageBegin|Execute)\b/;
  const offenders: string[] = [];
  for (const file of files) {
    const lines = readFileSync(join(lib, file), 'utf8').split('\n');
    lines.forEach((line, i) => {
      const code = line.replace(/\/\/.*$/, '').replace(/^\s*\*.*$/, ''); // comments may name them
      if (internal.test(code)) offenders.push(`lib/${file}:${i + 1}: ${line.trim()}`);
    });
  }
  t.same(offenders, [], 'only lib/io/node-internals.ts reaches below the public API');
});
