// The CLI contract, run as a child process exactly as users and scripts run it.
import t, { type Test } from 'tap';
import { once } from 'node:events';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { answeringUpstream, rawExchange, wsEcho } from './helpers/net.js';
import { spawnCli, startCli } from './helpers/faults.js';

/** Runs each `[args, stderr pattern]` case at once (the CLI's start-up is the cost) and expects exit 2 with that message. */
async function expectExit2(t: Test, cases: Array<[string[], RegExp]>): Promise<void> {
  const runs = cases.map(([args]) => spawnCli(t, args));
  for (const [i, [args, message]] of cases.entries()) {
    t.equal(await runs[i].exit, 2, `exit 2 for ${args.join(' ')}`);
    t.match(runs[i].stderr(), message);
  }
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
  const d = await startCli(t, [
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
  t.equal(await d.exit, 0, 'SIGTERM: graceful exit 0');
});

t.test('HOST/path routes select a server by Host', async (t) => {
  const a = await answeringUpstream(t, 'HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nA');
  const b = await answeringUpstream(t, 'HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nB');
  const d = await startCli(t, ['--listen', '127.0.0.1:0', '--route', `a.test/=http://127.0.0.1:${a.port}`, '--route', `/=http://127.0.0.1:${b.port}`]);
  const viaA = await rawExchange(d.ports[0], 'GET / HTTP/1.1\r\nHost: a.test\r\n\r\n');
  const viaB = await rawExchange(d.ports[0], 'GET / HTTP/1.1\r\nHost: other\r\n\r\n');
  t.ok(viaA.text.endsWith('A'));
  t.ok(viaB.text.endsWith('B'));
  d.child.kill('SIGINT');
  t.equal(await d.exit, 0, 'SIGINT: graceful exit 0');
});

t.test('SIGTERM drains: an open tunnel works until the drain deadline, then exit 0', async (t) => {
  const echo = await wsEcho(t);
  const d = await startCli(t, ['--listen', '127.0.0.1:0', '--route', `/=http://127.0.0.1:${echo.port}`, '--drain-timeout', '1']);
  const ws = new WebSocket(`ws://127.0.0.1:${d.ports[0]}/`);
  await once(ws, 'open');
  const closed = once(ws, 'close');
  d.child.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 200));
  const got = new Promise<string>((r) => ws.once('message', (m) => r(m.toString())));
  ws.send('still draining');
  t.equal(await got, 'still draining');
  const started = Date.now();
  t.equal(await d.exit, 0);
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
  const d = await startCli(t, ['--config', file]);
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
  t.equal(await d.exit, 0);
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
  await expectExit2(t, cases);
});

t.test('--help documents the contract', async (t) => {
  const p = spawnCli(t, ['--help']);
  t.equal(await p.exit, 0);
  for (const flag of ['--listen', '--route', '--tunnel-timeout', '--read-timeout', '--send-timeout', '--connect-timeout', '--config']) {
    t.match(p.stdout(), flag);
  }
});

t.test('a port already in use exits 1 with the reason', async (t) => {
  const page = await answeringUpstream(t, 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n');
  const p = spawnCli(t, ['--listen', `127.0.0.1:${page.port}`, '--route', '/=http://127.0.0.1:1']);
  t.equal(await p.exit, 1);
  t.match(p.stderr(), /EADDRINUSE/);
});

t.test('--trusted-proxy none replaces forwarding fields; --insecure-http-parser does not loosen the head reader', async (t) => {
  const upstream = await answeringUpstream(t, 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
  const d = await startCli(t, ['--listen', '127.0.0.1:0', '--route', `/=http://127.0.0.1:${upstream.port}`, '--trusted-proxy', 'none'], { nodeFlags: ['--insecure-http-parser'] });
  const ok = await rawExchange(d.ports[0], 'GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n');
  t.match(ok.text, /^HTTP\/1\.1 200 /);
  t.match(upstream.text(0), /\r\nX-Forwarded-For: 127\.0\.0\.1\r\n/, 'the spoofed chain is replaced');
  // Bare LF line ends are accepted by llhttp only in lenient mode (CVE-2022-32214).
  const bad = await rawExchange(d.ports[0], 'GET / HTTP/1.1\nHost: a\n\n', { untilClose: true });
  t.match(bad.text, /^HTTP\/1\.1 400 /, 'still strict');
  t.equal(upstream.received.length, 1, 'the lenient-only request never reached the upstream');
  d.child.kill('SIGTERM');
  t.equal(await d.exit, 0);
});

t.test('--check: "configuration ok" or every problem, exit 0 or 2, and nothing bound (issue #15)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'wsgate-check-'));
  const good = join(dir, 'good.json');
  writeFileSync(good, JSON.stringify({ $schema: '../wsgate.schema.json', servers: [{ locations: [{ path: '/', upstream: 'http://127.0.0.1:1', tunnelTimeout: 5 }] }] }));
  const typos = join(dir, 'typos.json');
  writeFileSync(typos, JSON.stringify({ readTimout: 3, servers: [{ locations: [{ path: '/', upstream: 'http://127.0.0.1:1', tunelTimeout: 5 }] }] }));
  // A port already taken: a --check that bound it would fail with exit 1.
  const taken = await answeringUpstream(t, 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n');

  // All four at once: the CLI's start-up is what takes the time.
  const ok = spawnCli(t, ['--check', '--config', good, '--listen', `127.0.0.1:${taken.port}`]);
  const bad = spawnCli(t, ['--check', '--config', typos]);
  const flags = spawnCli(t, ['--check', '--route', '/=http://127.0.0.1:1', '--listen', 'nowhere']);
  // Starting (not checking) with a typo is refused the same way, before anything is bound.
  const start = spawnCli(t, ['--config', typos, '--listen', `127.0.0.1:${taken.port}`]);
  t.equal(await ok.exit, 0, 'good config: exit 0');
  t.equal(ok.stdout(), 'configuration ok\n');

  t.equal(await bad.exit, 2, 'typos: exit 2');
  t.equal(
    bad.stderr(),
    'wsgate: invalid configuration: readTimout: unknown field (did you mean readTimeout?)\n' +
      'wsgate: invalid configuration: servers[0].locations[0].tunelTimeout: unknown field (did you mean tunnelTimeout?)\n',
  );
  t.equal(bad.stdout(), '', 'no "configuration ok"');

  t.equal(await flags.exit, 2, 'a bad flag value: exit 2');
  t.match(flags.stderr(), /listen\[0\]: expected HOST:PORT/);

  t.equal(await start.exit, 2, 'the daemon refuses a typo: exit 2');
  t.match(start.stderr(), /^wsgate: invalid configuration: readTimout: unknown field \(did you mean readTimeout\?\)\n$/);
});

t.test('TLS and edge flags: --tls-listen serves https and wss, --check reads the certificates, pairing mistakes exit 2', async (t) => {
  const { makePki } = await import('./helpers/tls.js');
  const pki = makePki(t);
  const a = pki.leaf('cli-a', ['a.test', '127.0.0.1']);
  const b = pki.leaf('cli-b', ['b.test']);
  const echo = await wsEcho(t);
  const d = await startCli(t, ['--listen', '127.0.0.1:0', '--tls-listen', '127.0.0.1:0', '--tls-cert', a.cert, '--tls-key', a.key, '--route', `/=http://127.0.0.1:${echo.port}`, '--proxy-protocol']);
  t.match(d.stdout(), /^listening on http:\/\/127\.0\.0\.1:\d+\nlistening on https:\/\/127\.0\.0\.1:\d+\n$/, 'one line per listener, https for the TLS one');
  // --proxy-protocol applies to every listener: a connection without a header is closed unanswered.
  const plain = await rawExchange(d.ports[0], 'GET / HTTP/1.1\r\nHost: a\r\n\r\n');
  t.same(plain, { text: '', closed: true }, 'no PROXY header: closed without an answer');
  d.child.kill('SIGTERM');
  t.equal(await d.exit, 0);

  const tlsOnly = await startCli(t, ['--tls-listen', '127.0.0.1:0', '--tls-cert', a.cert, '--tls-key', a.key, '--route', `/=http://127.0.0.1:${echo.port}`]);
  const ws = new WebSocket(`wss://127.0.0.1:${tlsOnly.port}/`, { ca: pki.caPem });
  await once(ws, 'open');
  const reply = new Promise<string>((r) => ws.once('message', (m) => r(m.toString())));
  ws.send('over --tls-listen');
  t.equal(await reply, 'over --tls-listen');
  ws.close();
  tlsOnly.child.kill('SIGTERM');
  t.equal(await tlsOnly.exit, 0);

  const cases: Array<[string[], RegExp]> = [
    [['--tls-listen', '127.0.0.1:0', '--route', '/=http://127.0.0.1:1'], /--tls-listen: needs --tls-cert and --tls-key/],
    [['--tls-cert', a.cert, '--tls-key', a.key, '--route', '/=http://127.0.0.1:1'], /--tls-cert: needs --tls-listen/],
    [['--tls-listen', '127.0.0.1:0', '--tls-cert', a.cert, '--tls-cert', b.cert, '--tls-key', a.key, '--route', '/=http://127.0.0.1:1'], /2 --tls-cert but 1 --tls-key/],
    [['--check', '--tls-listen', '127.0.0.1:0', '--tls-cert', a.cert, '--tls-key', b.key, '--route', '/=http://127.0.0.1:1'], /listen\[0\]\.tls\.certificates\[0\]: the key .*cli-b\.key does not belong to the certificate .*cli-a\.pem/],
    [['--check', '--upstream-ca', '/nonexistent/ca.pem', '--route', '/=https://127.0.0.1:1'], /upstreamTls\.ca\[0\]: cannot read \/nonexistent\/ca\.pem: ENOENT/],
    [['--connection-rate-per-client', '5/h', '--route', '/=http://127.0.0.1:1'], /connectionRatePerClient: expected "N\/s", "N\/m"/],
  ];
  await expectExit2(t, cases);
  const ok = spawnCli(t, ['--check', '--tls-listen', '127.0.0.1:0', '--tls-cert', a.cert, '--tls-key', a.key, '--tls-cert', b.cert, '--tls-key', b.key, '--upstream-ca', pki.caCert, '--route', '/=https://127.0.0.1:1', '--max-connections-per-client', '10', '--connection-rate-per-client', '20/s']);
  t.equal(await ok.exit, 0, '--check accepts two good pairs, a CA and the limits');
  t.equal(ok.stdout(), 'configuration ok\n');
});
