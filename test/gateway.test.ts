// The library API: listen, close({ drainMs }), reload, handleUpgrade,
// handleSocket, stats and events.
import t from 'tap';
import http from 'node:http';
import net from 'node:net';
import { once } from 'node:events';
import { join } from 'node:path';
import WebSocket from 'ws';
import { ConfigError, createGateway } from '../lib/index.js';
import { answeringUpstream, rawExchange, startGateway, waitFor, wsEcho } from './helpers/net.js';
import { repoPath } from './helpers/paths.js';

function openClient(url: string): Promise<WebSocket> {
  const ws = new WebSocket(url);
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

function echoOnce(ws: WebSocket, text: string): Promise<string> {
  const got = new Promise<string>((r) => ws.once('message', (d) => r(d.toString())));
  ws.send(text);
  return got;
}

t.test('listen accepts a port, host:port and an options object, and reports the address', async (t) => {
  const echo = await wsEcho(t);
  const gw = createGateway({ routes: [`/=http://127.0.0.1:${echo.port}`] });
  t.teardown(() => gw.close({ drainMs: 0 }));
  const a = await gw.listen(0, '127.0.0.1');
  const b = await gw.listen('127.0.0.1:0');
  const c = await gw.listen({ port: 0, host: '127.0.0.1' });
  for (const addr of [a, b, c]) {
    t.equal(addr.host, '127.0.0.1');
    t.ok(addr.port > 0);
    t.equal(addr.url, `http://127.0.0.1:${addr.port}/`);
    const ws = await openClient(`ws://127.0.0.1:${addr.port}/`);
    t.equal(await echoOnce(ws, 'hi'), 'hi');
    ws.close();
  }
  t.equal(gw.addresses.length, 3);
  await t.rejects(gw.listen(a.port, '127.0.0.1'), { code: 'EADDRINUSE' });
});

t.test('config errors throw a ConfigError naming the field', async (t) => {
  const cases: Array<[unknown, string]> = [
    [{}, 'servers'],
    [{ routes: ['/ws/=ftp://x'] }, 'routes[0]'],
    [{ routes: ['ws=http://x:1'] }, 'routes[0]'],
    [{ servers: [{ locations: [{ path: 'ws', upstream: 'http://a:1' }] }] }, 'servers[0].locations[0].path'],
    [{ servers: [{ locations: [{ path: '/', upstream: 'ftp://a:1' }] }] }, 'servers[0].locations[0].upstream'],
    [{ servers: [{ locations: [{ path: '/', upstream: 'http://a:1', tunnelTimeout: -1 }] }] }, 'servers[0].locations[0].tunnelTimeout'],
    [{ servers: [{ locations: [{ path: '/', upstream: 'http://a:1', setHeaders: { X: 'a\r\nB: c' } }] }] }, 'servers[0].locations[0].setHeaders.X'],
    [{ servers: [{ locations: [{ path: '/', upstream: 'http://a:1', removeHeaders: ['bad name'] }] }] }, 'servers[0].locations[0].removeHeaders[0]'],
    [{ servers: [{ names: ['bad host!'], locations: [{ path: '/', upstream: 'http://a:1' }] }] }, 'servers[0].names[0]'],
    [{ routes: ['/=http://a:1'], readTimeout: 'soon' }, 'readTimeout'],
    [{ routes: ['/=http://a:1'], maxHeaders: 0 }, 'maxHeaders'],
    [{ routes: ['/=http://a:1'], listen: ['nope'] }, 'listen[0]'],
    [{ routes: ['/=http://a:1', '/=http://b:1'] }, 'routes[1]'],
    [{ routes: ['/=http://a:1', '/x=http://b:99999'] }, 'routes[1].upstream'],
  ];
  for (const [config, field] of cases) {
    try {
      createGateway(config as never);
      t.fail(`no error for ${JSON.stringify(config)}`);
    } catch (err) {
      t.ok(err instanceof ConfigError, 'ConfigError');
      t.equal((err as ConfigError).field, field, `field of ${JSON.stringify(config)}`);
      t.equal((err as ConfigError).code, 'WSG_ERR_CONFIG');
      t.match((err as Error).message, field);
    }
  }
});

t.test('stats count connections, tunnels and bytes', async (t) => {
  const echo = await wsEcho(t);
  const { gw, port } = await startGateway(t, { routes: [`/=http://127.0.0.1:${echo.port}`] });
  t.match(gw.stats(), { connections: 0, tunnels: 0, totalConnections: 0, totalTunnels: 0, bytesToUpstream: 0, bytesToDownstream: 0, internalErrors: 0 });
  const a = await openClient(`ws://127.0.0.1:${port}/`);
  const b = await openClient(`ws://127.0.0.1:${port}/`);
  await echoOnce(a, 'x'.repeat(100));
  const s = gw.stats();
  t.equal(s.tunnels, 2);
  t.equal(s.connections, 2);
  t.equal(s.totalTunnels, 2);
  t.ok(s.bytesToUpstream >= 106 && s.bytesToDownstream >= 102);
  a.terminate();
  b.terminate();
  await waitFor(() => gw.stats().tunnels === 0);
  t.ok(gw.stats().bytesToUpstream >= 106, 'closed tunnels still counted');
});

t.test('close({ drainMs }): stops accepting, lets tunnels run until the deadline, then closes them', async (t) => {
  const echo = await wsEcho(t);
  const gw = createGateway({ routes: [`/=http://127.0.0.1:${echo.port}`] });
  const { port } = await gw.listen(0, '127.0.0.1');
  const ws = await openClient(`ws://127.0.0.1:${port}/`);
  const reasons: string[] = [];
  gw.on('tunnelClose', (info) => reasons.push(info.reason));
  const started = Date.now();
  const closing = gw.close({ drainMs: 600 });
  // new connections are refused
  const refused = await new Promise<boolean>((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.on('error', () => resolve(true));
    s.on('connect', () => {
      s.destroy();
      resolve(false);
    });
  });
  t.ok(refused, 'no new connections');
  // the open tunnel still works during the drain
  t.equal(await echoOnce(ws, 'during drain'), 'during drain');
  const wsClosed = once(ws, 'close');
  await closing;
  const elapsed = Date.now() - started;
  await wsClosed;
  t.ok(elapsed >= 550, `closed at the deadline (${elapsed} ms)`);
  t.same(reasons, ['shutdown']);
  t.equal(gw.stats().connections, 0);
});

t.test('close() resolves as soon as the last tunnel ends on its own', async (t) => {
  const echo = await wsEcho(t);
  const gw = createGateway({ routes: [`/=http://127.0.0.1:${echo.port}`] });
  const { port } = await gw.listen(0, '127.0.0.1');
  const ws = await openClient(`ws://127.0.0.1:${port}/`);
  const started = Date.now();
  const closing = gw.close({ drainMs: 10_000 });
  setTimeout(() => ws.close(), 100);
  await closing;
  t.ok(Date.now() - started < 3000, 'did not wait for the deadline');
});

t.test('reload: new connections use the new routes, open tunnels stay on the old upstream', async (t) => {
  const oldEcho = await wsEcho(t);
  const newUp = await wsEcho(t);
  newUp.wss.removeAllListeners('connection');
  newUp.wss.on('connection', (s) => s.on('message', (d) => s.send(`new:${d}`)));
  const { gw, port } = await startGateway(t, { routes: [`/=http://127.0.0.1:${oldEcho.port}`] });
  const before = await openClient(`ws://127.0.0.1:${port}/`);
  t.equal(await echoOnce(before, 'a'), 'a');
  gw.reload({ routes: [`/=http://127.0.0.1:${newUp.port}`] });
  const after = await openClient(`ws://127.0.0.1:${port}/`);
  t.equal(await echoOnce(after, 'b'), 'new:b', 'new connection on the new upstream');
  t.equal(await echoOnce(before, 'c'), 'c', 'the open tunnel is untouched');
  t.throws(() => gw.reload({ routes: ['nonsense'] }), ConfigError);
  const still = await openClient(`ws://127.0.0.1:${port}/`);
  t.equal(await echoOnce(still, 'd'), 'new:d', 'a failed reload keeps the running config');
  for (const ws of [before, after, still]) ws.terminate();
});

t.test('handleUpgrade: a node:http server hands its upgrade events to the gateway', async (t) => {
  const echo = await wsEcho(t);
  const gw = createGateway({ routes: [`/ws/=http://127.0.0.1:${echo.port}`] });
  t.teardown(() => gw.close({ drainMs: 0 }));
  const server = http.createServer((_req, res) => res.end('plain page'));
  server.on('upgrade', (req, socket, head) => gw.handleUpgrade(req, socket as net.Socket, head));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  const port = (server.address() as net.AddressInfo).port;
  const ws = await openClient(`ws://127.0.0.1:${port}/ws/`);
  t.equal(await echoOnce(ws, 'via node:http'), 'via node:http');
  t.equal(gw.stats().tunnels, 1);
  ws.terminate();
  // an upgrade for a path with no location is answered by the gateway
  const res = await rawExchange(
    port,
    'GET /nope HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
  );
  t.match(res.text, /^HTTP\/1\.1 404 Not Found\r\n/);
});

t.test('handleSocket: raw sockets accepted elsewhere are served', async (t) => {
  const upstream = await answeringUpstream(t, 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello');
  const gw = createGateway({ routes: [`/=http://127.0.0.1:${upstream.port}`] });
  t.teardown(() => gw.close({ drainMs: 0 }));
  const server = net.createServer({ allowHalfOpen: true }, (socket) => gw.handleSocket(socket));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => server.close());
  const res = await rawExchange((server.address() as net.AddressInfo).port, 'GET / HTTP/1.1\r\nHost: a\r\n\r\n');
  t.match(res.text, /^HTTP\/1\.1 200 OK\r\n[\s\S]*hello$/);
});

t.test('connectionError events carry the typed error and what was answered', async (t) => {
  const upstream = await answeringUpstream(t, 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n');
  const lines: string[] = [];
  const { gw, port } = await startGateway(t, {
    routes: [`/ok=http://127.0.0.1:${upstream.port}`],
    logger: { log: (level, message, fields) => lines.push(`${level} ${message} ${JSON.stringify(fields)}`) },
  });
  const errors: Array<{ code: string; status: number; path: string | null }> = [];
  gw.on('connectionError', (err, info) => errors.push({ code: err.code, status: info.status, path: info.path }));
  await rawExchange(port, 'GET /missing HTTP/1.1\r\nHost: a\r\n\r\n');
  t.same(errors, [{ code: 'WSG_ERR_NO_ROUTE', status: 404, path: '/missing' }]);
  t.ok(lines.some((l) => l.startsWith('warn ') && l.includes('WSG_ERR_NO_ROUTE')), 'a log line');
});

t.test('works inside a process that uses AsyncLocalStorage (context stored on each parser resource)', async (t) => {
  // Bug: a shared frozen async resource made every connection throw
  // "Cannot add property Symbol(kResourceStore), object is not extensible".
  const { AsyncLocalStorage } = await import('node:async_hooks');
  const als = new AsyncLocalStorage<{ request: number }>();
  const upstream = await answeringUpstream(t, 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
  await als.run({ request: 1 }, async () => {
    const { port } = await startGateway(t, { routes: [`/=http://127.0.0.1:${upstream.port}`] });
    const res = await rawExchange(port, 'GET / HTTP/1.1\r\nHost: a\r\n\r\n');
    t.match(res.text, /^HTTP\/1\.1 200 OK\r\n/);
    t.same(als.getStore(), { request: 1 });
  });
});

t.test('maxConnections: one connection over the limit gets 503 and Connection: close; freed slots serve again', async (t) => {
  const echo = await wsEcho(t);
  const { gw, port } = await startGateway(t, { routes: [`/=http://127.0.0.1:${echo.port}`], maxConnections: 2 });
  const errors: string[] = [];
  gw.on('connectionError', (err) => errors.push(err.code));
  const a = await openClient(`ws://127.0.0.1:${port}/`);
  const b = await openClient(`ws://127.0.0.1:${port}/`);
  const refused = await rawExchange(port, 'GET / HTTP/1.1\r\nHost: a\r\n\r\n', { untilClose: true, timeoutMs: 3000 });
  t.match(refused.text, /^HTTP\/1\.1 503 Service Unavailable\r\n/);
  t.match(refused.text, /\r\nConnection: close\r\n/);
  t.ok(refused.closed);
  t.same(errors, ['WSG_ERR_TOO_MANY_CONNECTIONS']);
  a.terminate();
  await waitFor(() => gw.stats().connections === 1);
  const c = await openClient(`ws://127.0.0.1:${port}/`);
  t.equal(await echoOnce(c, 'room again'), 'room again');
  b.terminate();
  c.terminate();
});

t.test('allowedOrigins entries are validated', async (t) => {
  for (const bad of ['example.com', 'https://a.example.com/path', '*', 'ftp://x.test']) {
    try {
      createGateway({ servers: [{ locations: [{ path: '/', upstream: 'http://a:1', allowedOrigins: [bad] }] }] });
      t.fail(`${bad} accepted`);
    } catch (err) {
      t.equal((err as ConfigError).field, 'servers[0].locations[0].allowedOrigins[0]', `${bad} refused`);
    }
  }
});

t.test('every example config in examples/ is valid', async (t) => {
  const { readdirSync, readFileSync } = await import('node:fs');
  const dir = repoPath('examples');
  const files = readdirSync(dir).filter((f) => f.endsWith('.json'));
  t.ok(files.length >= 4);
  for (const file of files) {
    const config = JSON.parse(readFileSync(join(dir, file), 'utf8'));
    t.doesNotThrow(() => createGateway(config), file);
  }
});
