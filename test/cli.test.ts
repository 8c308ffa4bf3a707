// The CLI contract, run as a child process exactly as users and scripts run it.
import t from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { answeringUpstream, rawExchange, wsEcho } from './helpers/net.js';

const CLI = fileURLToPath(new URL('../dist/lib/cli.js', import.meta.url));

function run(args: string[], nodeFlags: string[] = []): { child: ChildProcess; stdout: () => string; stderr: () => string } {
  const child = spawn(process.execPath, [...nodeFlags, CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (err += d));
  return { child, stdout: () => out, stderr: () => err };
}

async function exitOf(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null) return child.exitCode;
  const [code] = await once(child, 'exit');
  return code as number | null;
}

/** Starts the daemon and resolves with the ports it printed. */
async function startDaemon(t: { teardown(fn: () => unknown): void }, args: string[], nodeFlags: string[] = []) {
  const proc = run(args, nodeFlags);
  t.teardown(() => {
    if (proc.child.exitCode === null) proc.child.kill('SIGKILL');
  });
  const deadline = Date.now() + 10_000;
  while (!/listening on/.test(proc.stdout())) {
    if (proc.child.exitCode !== null || Date.now() > deadline) throw new Error(`daemon did not start: ${proc.stderr()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  await new Promise((r) => setTimeout(r, 50));
  const ports = [...proc.stdout().matchAll(/listening on http:\/\/[^:]+:(\d+)/g)].map((m) => Number(m[1]));
  return { ...proc, ports };
}

async function echoVia(port: number, path: string, text: string): Promise<string> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}${path}`);
  await once(ws, 'open');
  const got = new Promise<string>((r) => ws.once('message', (d) => r(d.toString())));
  ws.send(text);
  const reply = await got;
  ws.close();
  return reply;
}

t.test('wsgate --listen --route proxies WebSockets and HTTP, prints one line per listener', async (t) => {
  const echo = await wsEcho(t);
  const page = await answeringUpstream(t, 'HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\npage');
  const d = await startDaemon(t, [
    '--listen', '127.0.0.1:0', '--listen', '127.0.0.1:0',
    '--route', `/ws/=http://127.0.0.1:${echo.port}`,
    '--route', `/=http://127.0.0.1:${page.port}`,
    '--tunnel-timeout', '60', '--read-timeout', '5', '--send-timeout', '5', '--connect-timeout', '1',
  ]);
  t.equal(d.ports.length, 2);
  t.match(d.stdout(), /^listening on http:\/\/127\.0\.0\.1:\d+\nlistening on http:\/\/127\.0\.0\.1:\d+\n$/);
  for (const port of d.ports) t.equal(await echoVia(port, '/ws/', `hello ${port}`), `hello ${port}`);
  const res = await rawExchange(d.ports[0], 'GET /index.html HTTP/1.1\r\nHost: a\r\n\r\n');
  t.match(res.text, /\r\n\r\npage$/);
  d.child.kill('SIGTERM');
  t.equal(await exitOf(d.child), 0, 'SIGTERM: graceful exit 0');
});

t.test('HOST/path routes select a server by Host', async (t) => {
  const a = await answeringUpstream(t, 'HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nA');
  const b = await answeringUpstream(t, 'HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nB');
  const d = await startDaemon(t, ['--listen', '127.0.0.1:0', '--route', `a.test/=http://127.0.0.1:${a.port}`, '--route', `/=http://127.0.0.1:${b.port}`]);
  const viaA = await rawExchange(d.ports[0], 'GET / HTTP/1.1\r\nHost: a.test\r\n\r\n');
  const viaB = await rawExchange(d.ports[0], 'GET / HTTP/1.1\r\nHost: other\r\n\r\n');
  t.ok(viaA.text.endsWith('A'));
  t.ok(viaB.text.endsWith('B'));
  d.child.kill('SIGINT');
  t.equal(await exitOf(d.child), 0, 'SIGINT: graceful exit 0');
});

t.test('SIGTERM drains: an open tunnel works until the drain deadline, then exit 0', async (t) => {
  const echo = await wsEcho(t);
  const d = await startDaemon(t, ['--listen', '127.0.0.1:0', '--route', `/=http://127.0.0.1:${echo.port}`, '--drain-timeout', '1']);
  const ws = new WebSocket(`ws://127.0.0.1:${d.ports[0]}/`);
  await once(ws, 'open');
  const closed = once(ws, 'close');
  d.child.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 200));
  const got = new Promise<string>((r) => ws.once('message', (m) => r(m.toString())));
  ws.send('still draining');
  t.equal(await got, 'still draining');
  const started = Date.now();
  t.equal(await exitOf(d.child), 0);
  await closed;
  t.ok(Date.now() - started < 3000);
});

t.test('--config loads JSON; SIGHUP reloads it and keeps open tunnels', async (t) => {
  const first = await wsEcho(t);
  const second = await wsEcho(t);
  second.wss.removeAllListeners('connection');
  second.wss.on('connection', (s) => s.on('message', (m) => s.send(`second:${m}`)));
  const dir = mkdtempSync(join(tmpdir(), 'wsgate-cli-'));
  const file = join(dir, 'wsgate.json');
  writeFileSync(file, JSON.stringify({ listen: ['127.0.0.1:0'], servers: [{ locations: [{ path: '/', upstream: `http://127.0.0.1:${first.port}` }] }] }));
  const d = await startDaemon(t, ['--config', file]);
  const port = d.ports[0];
  const open = new WebSocket(`ws://127.0.0.1:${port}/`);
  await once(open, 'open');
  writeFileSync(file, JSON.stringify({ listen: ['127.0.0.1:0'], servers: [{ locations: [{ path: '/', upstream: `http://127.0.0.1:${second.port}` }] }] }));
  d.child.kill('SIGHUP');
  await new Promise((r) => setTimeout(r, 300));
  t.match(d.stderr(), /config reloaded/);
  t.equal(await echoVia(port, '/', 'x'), 'second:x', 'new connections use the reloaded config');
  const got = new Promise<string>((r) => open.once('message', (m) => r(m.toString())));
  open.send('y');
  t.equal(await got, 'y', 'the open tunnel still reaches the first upstream');
  // a broken file is refused and the running config kept
  writeFileSync(file, '{ not json');
  d.child.kill('SIGHUP');
  await new Promise((r) => setTimeout(r, 300));
  t.match(d.stderr(), /reload failed/);
  t.equal(await echoVia(port, '/', 'z'), 'second:z');
  open.terminate();
  d.child.kill('SIGTERM');
  t.equal(await exitOf(d.child), 0);
});

t.test('bad flags and bad config exit 2 with a clear message', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'wsgate-cli-'));
  const badFile = join(dir, 'bad.json');
  writeFileSync(badFile, JSON.stringify({ servers: [{ locations: [{ path: '/', upstream: 'http://a:1', readTimeout: -5 }] }] }));
  const cases: Array<[string[], RegExp]> = [
    [['--listen', '127.0.0.1:0'], /servers: at least one route/],
    [['--route', 'nonsense'], /routes\[0\]/],
    // issue #6, CVE-2018-12116: a non-latin1 upstream path would split the request line
    [['--route', '/=http://127.0.0.1:1/a\u010D\u010AX:\u0120y/'], /routes\[0\]\.upstream: the path must be visible ASCII/],
    [['--route', '/=http://127.0.0.1:1', '--listen', 'what'], /listen\[0\]/],
    [['--route', '/=http://127.0.0.1:1', '--bogus-flag'], /Unknown argument/i],
    [['--route', '/=http://127.0.0.1:1', '--tunnel-timeout', '-1'], /tunnelTimeout/],
    [['--config', join(dir, 'missing.json')], /cannot read/],
    [['--config', badFile], /servers\[0\]\.locations\[0\]\.readTimeout/],
  ];
  for (const [args, message] of cases) {
    const p = run(args);
    t.equal(await exitOf(p.child), 2, `exit 2 for ${args.join(' ')}`);
    t.match(p.stderr(), message);
  }
});

t.test('--help documents the contract', async (t) => {
  const p = run(['--help']);
  t.equal(await exitOf(p.child), 0);
  for (const flag of ['--listen', '--route', '--tunnel-timeout', '--read-timeout', '--send-timeout', '--connect-timeout', '--config']) {
    t.match(p.stdout(), flag);
  }
});

t.test('a port already in use exits 1 with the reason', async (t) => {
  const page = await answeringUpstream(t, 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n');
  const p = run(['--listen', `127.0.0.1:${page.port}`, '--route', '/=http://127.0.0.1:1']);
  t.equal(await exitOf(p.child), 1);
  t.match(p.stderr(), /EADDRINUSE/);
});

t.test('--trusted-proxy none replaces forwarding fields; --insecure-http-parser does not loosen the head reader', async (t) => {
  const upstream = await answeringUpstream(t, 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
  const d = await startDaemon(t, ['--listen', '127.0.0.1:0', '--route', `/=http://127.0.0.1:${upstream.port}`, '--trusted-proxy', 'none'], ['--insecure-http-parser']);
  const ok = await rawExchange(d.ports[0], 'GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n');
  t.match(ok.text, /^HTTP\/1\.1 200 /);
  t.match(upstream.text(0), /\r\nX-Forwarded-For: 127\.0\.0\.1\r\n/, 'the spoofed chain is replaced');
  // Bare LF line ends are accepted by llhttp only in lenient mode (CVE-2022-32214).
  const bad = await rawExchange(d.ports[0], 'GET / HTTP/1.1\nHost: a\n\n', { untilClose: true });
  t.match(bad.text, /^HTTP\/1\.1 400 /, 'still strict');
  t.equal(upstream.received.length, 1, 'the lenient-only request never reached the upstream');
  d.child.kill('SIGTERM');
  t.equal(await exitOf(d.child), 0);
});
