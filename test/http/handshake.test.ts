// WebSocket handshake checks and the WebSocket-smuggling attempts
// (0ang3el/websocket-smuggle 2019; HAProxy websocket.vtc; RFC 6455 §4.1).
import t from 'tap';
import { once } from 'node:events';
import { acceptFor, checkUpgradeRequest } from '../../lib/http/handshake.js';
import {
  WS_ACCEPT,
  WS_KEY,
  answeringUpstream,
  rawClient,
  rawExchange,
  rawUpstream,
  startGateway,
  switchingProtocols,
  upgradeRequest,
  waitFor,
} from '../helpers/net.js';

t.test('acceptFor computes the RFC 6455 §1.3 example', async (t) => {
  t.equal(acceptFor(WS_KEY), WS_ACCEPT);
});

const refusals: Array<[string, string]> = [
  ['403 Forbidden', 'HTTP/1.1 403 Forbidden\r\nContent-Length: 6\r\n\r\nno way'],
  ['426 Upgrade Required', 'HTTP/1.1 426 Upgrade Required\r\nContent-Length: 0\r\n\r\n'],
  ['200 OK', 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'],
  ['404 chunked', 'HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nnah\r\n0\r\n\r\n'],
];

for (const [name, answer] of refusals) {
  t.test(`an upstream ${name} is relayed, never tunnelled, and later client bytes never reach it`, async (t) => {
    const upstream = await answeringUpstream(t, answer);
    const { gw, port } = await startGateway(t, { routes: [`/=http://127.0.0.1:${upstream.port}`] });
    const client = await rawClient(port);
    // the smuggled request rides along with the handshake and again after the answer
    client.write(upgradeRequest('/ws') + 'GET /internal HTTP/1.1\r\nHost: a\r\n\r\n');
    await once(client, 'end');
    if (!client.destroyed) client.write('GET /internal2 HTTP/1.1\r\nHost: a\r\n\r\n');
    await new Promise((r) => setTimeout(r, 100));
    const status = answer.slice(9, 12);
    t.match(client.text(), new RegExp(`^HTTP/1\\.1 ${status} `));
    t.match(client.text(), /\r\nConnection: close\r\n/);
    t.notMatch(upstream.text(), /internal/, 'the smuggled request never reaches the upstream');
    t.equal(upstream.received.length, 1);
    t.equal(gw.stats().totalTunnels, 0);
    client.destroy();
  });
}

t.test('a 101 without Upgrade: websocket is a 502, not a tunnel', async (t) => {
  const upstream = await answeringUpstream(t, 'HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n');
  const { gw, port } = await startGateway(t, { routes: [`/=http://127.0.0.1:${upstream.port}`] });
  const res = await rawExchange(port, upgradeRequest('/ws') + 'SMUGGLED', { endAfterWrite: false, timeoutMs: 2000 });
  t.match(res.text, /^HTTP\/1\.1 502 Bad Gateway\r\n/);
  t.notMatch(upstream.text(), /SMUGGLED/);
  t.equal(gw.stats().totalTunnels, 0);
});

t.test('a 101 whose Sec-WebSocket-Accept does not match the key is a 502', async (t) => {
  const upstream = await answeringUpstream(t, switchingProtocols('AAAAAAAAAAAAAAAAAAAAAAAAAAA='));
  const { port } = await startGateway(t, { routes: [`/=http://127.0.0.1:${upstream.port}`] });
  const res = await rawExchange(port, upgradeRequest('/ws'), { timeoutMs: 2000 });
  t.match(res.text, /^HTTP\/1\.1 502 Bad Gateway\r\n/);
});

t.test('checkWebSocketAccept: false lets an odd upstream through', async (t) => {
  const upstream = await answeringUpstream(t, switchingProtocols('AAAAAAAAAAAAAAAAAAAAAAAAAAA='));
  const { port } = await startGateway(t, { routes: [`/=http://127.0.0.1:${upstream.port}`], checkWebSocketAccept: false });
  const client = await rawClient(port);
  client.write(upgradeRequest('/ws'));
  await waitFor(() => client.text().includes('\r\n\r\n'));
  t.match(client.text(), /^HTTP\/1\.1 101 /);
  client.destroy();
});

t.test('a 101 to a request that did not ask to upgrade is a 502 (RFC 9110 §15.2.2)', async (t) => {
  const upstream = await answeringUpstream(t, switchingProtocols());
  const { port } = await startGateway(t, { routes: [`/=http://127.0.0.1:${upstream.port}`] });
  const res = await rawExchange(port, 'GET / HTTP/1.1\r\nHost: a\r\n\r\n', { timeoutMs: 2000 });
  t.match(res.text, /^HTTP\/1\.1 502 Bad Gateway\r\n/);
});

const badHandshakes: Array<[string, string]> = [
  ['no Sec-WebSocket-Key', 'GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n'],
  ['a short key', 'GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: abc\r\n\r\n'],
  ['POST with a body', `POST /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${WS_KEY}\r\nContent-Length: 5\r\n\r\nhelloGET /admin HTTP/1.1\r\n\r\n`],
  ['GET with a body', `GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${WS_KEY}\r\nContent-Length: 5\r\n\r\nhello`],
  ['GET chunked', `GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${WS_KEY}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n`],
  ['HTTP/1.0', `GET /ws HTTP/1.0\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${WS_KEY}\r\n\r\n`],
];

for (const [name, request] of badHandshakes) {
  t.test(`a handshake with ${name} is answered 400 and nothing reaches the upstream`, async (t) => {
    const upstream = await rawUpstream(t);
    const { port } = await startGateway(t, { routes: [`/=http://127.0.0.1:${upstream.port}`] });
    const res = await rawExchange(port, request, { timeoutMs: 2000 });
    t.match(res.text, /^HTTP\/1\.1 400 Bad Request\r\n/);
    t.match(res.text, /\r\nConnection: close\r\n/);
    await new Promise((r) => setTimeout(r, 50));
    t.equal(upstream.received.length, 0, 'no upstream connection');
  });
}

t.test('Upgrade: h2c is never forwarded as an upgrade; HTTP2-Settings is stripped', async (t) => {
  const upstream = await answeringUpstream(t, 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
  const { port } = await startGateway(t, { routes: [`/=http://127.0.0.1:${upstream.port}`] });
  const res = await rawExchange(
    port,
    'GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nConnection: Upgrade, HTTP2-Settings\r\n\r\nPRI * HTTP/2.0\r\n\r\nSM\r\n\r\n',
    { timeoutMs: 2000 },
  );
  t.match(res.text, /^HTTP\/1\.1 200 OK\r\n/);
  const sent = upstream.text();
  t.notMatch(sent, /h2c/i);
  t.notMatch(sent, /HTTP2-Settings/i);
  t.notMatch(sent, /PRI \*/);
  t.match(sent, /\r\nConnection: keep-alive\r\n\r\n$/);
});

t.test('checkUpgradeRequest accepts a valid handshake', async (t) => {
  const head = {
    versionMajor: 1,
    versionMinor: 1,
    rawHeaders: ['Host', 'a', 'Sec-WebSocket-Key', WS_KEY, 'Sec-WebSocket-Version', '13'],
    method: 'GET',
    url: '/',
    statusCode: 0,
    statusMessage: '',
    upgrade: true,
    shouldKeepAlive: true,
  };
  t.equal(checkUpgradeRequest(head), null);
});

t.test('after an h2c upgrade request answered 200 the connection closes (what followed the head was never parsed)', async (t) => {
  const upstream = await answeringUpstream(t, 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
  const { port } = await startGateway(t, { routes: [`/=http://127.0.0.1:${upstream.port}`] });
  const res = await rawExchange(port, 'GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n', { untilClose: true });
  t.match(res.text, /^HTTP\/1\.1 200 OK\r\n[\s\S]*Connection: close\r\n/);
  t.ok(res.closed);
  t.notMatch(upstream.text(), /smuggled/);
});

t.test('allowedOrigins: a WebSocket from another Origin gets 403 and never reaches the upstream (RFC 6455 §10.2)', async (t) => {
  const upstream = await answeringUpstream(t, switchingProtocols());
  const { port } = await startGateway(t, {
    servers: [
      {
        locations: [
          { path: '/ws/', upstream: `http://127.0.0.1:${upstream.port}`, allowedOrigins: ['https://app.example.com', '*.trusted.test'] },
          { path: '/open/', upstream: `http://127.0.0.1:${upstream.port}` },
        ],
      },
    ],
  });
  const cases: Array<[string, string | null, number]> = [
    ['/ws/', 'https://app.example.com', 101],
    ['/ws/', 'HTTPS://APP.EXAMPLE.COM', 101],
    ['/ws/', 'http://a.trusted.test:8080', 101],
    ['/ws/', null, 101],
    ['/ws/', 'https://evil.example', 403],
    ['/ws/', 'https://app.example.com.evil.example', 403],
    ['/ws/', 'https://trusted.test', 403],
    ['/ws/', 'null', 403],
    ['/open/', 'https://evil.example', 101],
  ];
  for (const [path, origin, status] of cases) {
    const before = upstream.received.length;
    const res = await rawExchange(port, upgradeRequest(path, origin === null ? '' : `Origin: ${origin}\r\n`), { timeoutMs: 1000 });
    t.match(res.text, new RegExp(`^HTTP/1\\.1 ${status} `), `${path} from ${origin}: ${status}`);
    if (status === 403) t.equal(upstream.received.length, before, `${origin}: no upstream connection`);
  }
});
