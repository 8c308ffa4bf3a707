import t, { type Test } from 'tap';
import { once } from 'node:events';
import type net from 'node:net';
import WebSocket from 'ws';
import type { Gateway } from '../../lib/index.js';
import {
  answeringUpstream,
  rawClient,
  rawUpstream,
  randomBytes,
  sha256,
  startGateway,
  switchingProtocols,
  upgradeRequest,
  waitFor,
  writeUntilBlocked,
  wsEcho,
} from '../helpers/net.js';

async function echoThroughGateway(t: Test, wsOptions = {}, gwExtra = {}) {
  const echo = await wsEcho(t, wsOptions);
  const { gw, port } = await startGateway(t, { routes: [`/ws/=http://127.0.0.1:${echo.port}`], ...gwExtra });
  return { gw, port, echo };
}

/**
 * Waits until `n` open tunnels keep only their handles where the probe turned
 * handle tunnels on (none where it did not: WSGATE_FAST_PATHS=off), so that
 * what a test checks next runs on the path this Node takes.
 */
async function onTheirPath(t: Test, gw: Gateway, n: number): Promise<void> {
  const want = gw.stats().fastPaths.handleTunnels ? n : 0;
  await waitFor(() => gw.stats().tunnelsOnHandles === want, 3000, `${want} tunnels on handles`);
  t.equal(gw.stats().tunnelsOnHandles, want, `${want} of ${n} tunnels keep only their handles`);
}

function openClient(url: string, protocols?: string | string[], options: WebSocket.ClientOptions = {}): Promise<WebSocket> {
  const ws = new WebSocket(url, protocols, options);
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

t.test('echoes messages byte for byte at every frame-length boundary', async (t) => {
  const { gw, port } = await echoThroughGateway(t, { maxPayload: 64 * 1024 * 1024 });
  const ws = await openClient(`ws://127.0.0.1:${port}/ws/`, undefined, { maxPayload: 64 * 1024 * 1024 });
  t.teardown(() => ws.terminate());
  await onTheirPath(t, gw, 1);
  for (const size of [0, 125, 126, 65535, 65536, 64 * 1024 + 1, 1024 * 1024, 16 * 1024 * 1024]) {
    const payload = randomBytes(size);
    const got = new Promise<Buffer>((resolve) => ws.once('message', (data) => resolve(data as Buffer)));
    ws.send(payload);
    const echoed = await got;
    t.equal(echoed.length, size, `size ${size}`);
    t.equal(sha256(echoed), sha256(payload), `content of ${size} bytes`);
  }
  // text frames too
  const text = new Promise<string>((resolve) => ws.once('message', (d, isBinary) => resolve(isBinary ? 'binary?' : d.toString())));
  ws.send('héllo wsgate');
  t.equal(await text, 'héllo wsgate');
});

t.test('subprotocol and permessage-deflate are negotiated end to end', async (t) => {
  const { port } = await echoThroughGateway(t, {
    perMessageDeflate: { threshold: 0 },
    handleProtocols: (protocols: Set<string>) => (protocols.has('chat.v2') ? 'chat.v2' : false),
  });
  const ws = await openClient(`ws://127.0.0.1:${port}/ws/`, ['chat.v1', 'chat.v2'], { perMessageDeflate: { threshold: 0 } });
  t.teardown(() => ws.terminate());
  t.equal(ws.protocol, 'chat.v2');
  t.match(ws.extensions, /permessage-deflate/);
  const payload = 'compress me '.repeat(1000);
  const got = new Promise<string>((resolve) => ws.once('message', (d) => resolve(d.toString())));
  ws.send(payload);
  t.equal(await got, payload);
});

t.test('sends the upgrade headers upstream and relays the 101 head', async (t) => {
  const upstream = await answeringUpstream(t, switchingProtocols(undefined, 'Sec-WebSocket-Protocol: p1\r\n'));
  const { port } = await startGateway(t, { routes: [`/ws/=http://127.0.0.1:${upstream.port}`] });
  const client = await rawClient(port);
  client.write(upgradeRequest('/ws/chat?x=1', 'Sec-WebSocket-Protocol: p1, p2\r\n'));
  await waitFor(() => client.text().includes('\r\n\r\n'));
  const sent = upstream.text();
  t.match(sent, /^GET \/ws\/chat\?x=1 HTTP\/1\.1\r\nHost: example\.test\r\n/);
  t.match(sent, /\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n$/);
  t.match(sent, /\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n/);
  t.match(sent, /\r\nSec-WebSocket-Protocol: p1, p2\r\n/);
  t.match(sent, /\r\nX-Forwarded-For: 127\.0\.0\.1\r\n/);
  t.match(client.text(), /^HTTP\/1\.1 101 Switching Protocols\r\n/);
  t.match(client.text(), /\r\nSec-WebSocket-Protocol: p1\r\n/);
  t.match(client.text(), /\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n$/);
  client.destroy();
});

t.test('bytes pipelined with the handshake reach each side in order, after the heads', async (t) => {
  const upstream = await answeringUpstream(t, (_head, socket) => socket.write(switchingProtocols() + 'SERVER-EARLY'));
  const { gw, port } = await startGateway(t, { routes: [`/ws/=http://127.0.0.1:${upstream.port}`] });
  const client = await rawClient(port);
  client.write(upgradeRequest() + 'CLIENT-EARLY');
  await waitFor(() => client.text().endsWith('SERVER-EARLY'), 3000, 'server early bytes');
  await waitFor(() => upstream.text().endsWith('CLIENT-EARLY'), 3000, 'client early bytes');
  await onTheirPath(t, gw, 1);
  client.write('-MORE');
  await waitFor(() => upstream.text().endsWith('CLIENT-EARLY-MORE'));
  (await upstream.connection()).write('-REPLY');
  await waitFor(() => client.text().endsWith('SERVER-EARLY-REPLY'));
  t.pass('early data relayed in order');
  client.destroy();
});

/** A gateway, a raw upstream that answers 101, and a raw client whose tunnel is open; tunnel close reasons recorded. */
async function openRawTunnel(t: Test) {
  const upstream = await answeringUpstream(t, switchingProtocols());
  const { gw, port } = await startGateway(t, { routes: [`/ws/=http://127.0.0.1:${upstream.port}`] });
  const closes: string[] = [];
  gw.on('tunnelClose', (info) => closes.push(info.reason));
  const client = await rawClient(port);
  client.write(upgradeRequest());
  await waitFor(() => client.text().includes('\r\n\r\n'));
  const up = await upstream.connection();
  await onTheirPath(t, gw, 1);
  return { gw, upstream, up, client, closes };
}

t.test('half-close: the client FIN reaches the upstream, which can still answer', async (t) => {
  const { gw, upstream, up, client } = await openRawTunnel(t);
  client.end('bye!');
  await once(up, 'end');
  t.ok(upstream.text().endsWith('bye!'), 'data before FIN arrives');
  up.write('late reply');
  await waitFor(() => client.text().endsWith('late reply'), 3000, 'reply after client FIN');
  const closed = once(client, 'close');
  up.end();
  await closed;
  await waitFor(() => gw.stats().tunnels === 0, 3000, 'tunnel closed');
  t.pass('tunnel closed after both halves');
});

t.test('half-close: the upstream FIN reaches the client, which can still send', async (t) => {
  const { upstream, up, client, closes } = await openRawTunnel(t);
  up.end('server done');
  await once(client, 'end');
  t.ok(client.text().endsWith('server done'));
  client.write('client still talking');
  await waitFor(() => upstream.text().endsWith('client still talking'));
  client.end();
  await once(up, 'end');
  up.destroy();
  await waitFor(() => closes.length === 1);
  t.same(closes, ['done']);
});

for (const side of ['client', 'upstream'] as const) {
  t.test(`a reset from the ${side} destroys the other side`, async (t) => {
    const { gw, up, client, closes } = await openRawTunnel(t);
    const [resetting, other] = side === 'client' ? [client, up] : [up, client];
    const otherClosed = new Promise((r) => other.once('close', r));
    resetting.resetAndDestroy();
    await otherClosed;
    await waitFor(() => closes.length === 1);
    t.same(closes, [side === 'client' ? 'downstream-error' : 'upstream-error']);
    t.equal(gw.stats().tunnels, 0);
  });
}

t.test('an idle tunnel is closed after tunnelTimeout, an active one is not', async (t) => {
  const echo = await wsEcho(t);
  const { gw, port } = await startGateway(t, {
    servers: [{ locations: [{ path: '/ws/', upstream: `http://127.0.0.1:${echo.port}`, tunnelTimeout: 0.6 }] }],
  });
  const closes: Array<{ reason: string; durationMs: number }> = [];
  gw.on('tunnelClose', (info) => closes.push(info));
  const idle = await openClient(`ws://127.0.0.1:${port}/ws/`);
  const busy = await openClient(`ws://127.0.0.1:${port}/ws/`);
  await onTheirPath(t, gw, 2);
  const idleClosed = once(idle, 'close');
  // keep `busy` active for 1.5 s, well past the timeout
  const started = Date.now();
  while (Date.now() - started < 1500) {
    const got = new Promise((r) => busy.once('message', r));
    busy.send('ping');
    await got;
    await new Promise((r) => setTimeout(r, 150));
  }
  await idleClosed;
  t.equal(busy.readyState, WebSocket.OPEN, 'active tunnel survives');
  t.equal(closes.length, 1);
  t.equal(closes[0].reason, 'idle');
  t.ok(closes[0].durationMs >= 550 && closes[0].durationMs < 1400, `idle close after ${closes[0].durationMs} ms`);
  busy.terminate();
});

t.test('the default tunnel timeout keeps an idle WebSocket open past 60 s-style limits', async (t) => {
  const echo = await wsEcho(t);
  // readTimeout is tiny: it must not apply to tunnels (the nginx proxy_read_timeout pitfall).
  const { port } = await startGateway(t, { routes: [`/ws/=http://127.0.0.1:${echo.port}`], readTimeout: 0.2, sendTimeout: 0.2 });
  const ws = await openClient(`ws://127.0.0.1:${port}/ws/`);
  await new Promise((r) => setTimeout(r, 900));
  t.equal(ws.readyState, WebSocket.OPEN);
  const got = new Promise<string>((r) => ws.once('message', (d) => r(d.toString())));
  ws.send('still here');
  t.equal(await got, 'still here');
  ws.terminate();
});

t.test('backpressure: a client that stops reading pauses the upstream instead of buffering', async (t) => {
  let upSocket: net.Socket | null = null;
  const upstream = await answeringUpstream(t, (_h, socket) => {
    socket.write(switchingProtocols());
    upSocket = socket;
  });
  const { gw, port } = await startGateway(t, { routes: [`/ws/=http://127.0.0.1:${upstream.port}`] });
  const client = await rawClient(port);
  client.write(upgradeRequest());
  await waitFor(() => upSocket !== null && client.text().includes('\r\n\r\n'));
  await onTheirPath(t, gw, 1);
  client.pause();
  const up = upSocket!;
  const { written, blocked } = await writeUntilBlocked(up, 1024 * 1024 * 1024, 500);
  t.ok(blocked, 'the upstream writer blocks');
  // Loopback socket buffers hold a few MiB; the proxy itself must hold no more than about one chunk.
  t.ok(written < 64 * 1024 * 1024, `blocked after ${(written / 1048576).toFixed(1)} MiB`);
  const headLength = client.text().indexOf('\r\n\r\n') + 4;
  let got = client.chunks.reduce((n, c) => n + c.length, 0) - headLength;
  client.removeAllListeners('data');
  client.on('data', (c) => (got += c.length));
  client.resume();
  await waitFor(() => got >= written, 20000, 'client received every byte');
  t.pass('resumed and delivered everything');
  client.destroy();
});

t.test('1,000 concurrent tunnels each carry their own bytes', async (t) => {
  const { gw, port } = await echoThroughGateway(t);
  const N = 1000;
  const agent = { perMessageDeflate: false };
  const clients: WebSocket[] = [];
  for (let i = 0; i < N; i += 100) {
    clients.push(...(await Promise.all(Array.from({ length: Math.min(100, N - i) }, () => openClient(`ws://127.0.0.1:${port}/ws/`, undefined, agent)))));
  }
  t.equal(gw.stats().tunnels, N);
  let mismatches = 0;
  await Promise.all(
    clients.map(async (ws) => {
      const payload = randomBytes(2048);
      const got = new Promise<Buffer>((r) => ws.once('message', (d) => r(d as Buffer)));
      ws.send(payload);
      if (sha256(await got) !== sha256(payload)) mismatches++;
    }),
  );
  t.equal(mismatches, 0);
  const stats = gw.stats();
  t.ok(stats.bytesToUpstream >= N * 2048 && stats.bytesToDownstream >= N * 2048, 'byte counters add up');
  for (const ws of clients) ws.terminate();
  await waitFor(() => gw.stats().tunnels === 0, 10000, 'all tunnels closed');
});

t.test('tunnel events carry bytes and duration', async (t) => {
  const { gw, port } = await echoThroughGateway(t);
  const opened: unknown[] = [];
  const closed: Array<{ bytesToUpstream: number; bytesToDownstream: number; durationMs: number; path: string }> = [];
  gw.on('tunnelOpen', (info) => opened.push(info));
  gw.on('tunnelClose', (info) => closed.push(info));
  const ws = await openClient(`ws://127.0.0.1:${port}/ws/?room=1`);
  const got = new Promise((r) => ws.once('message', r));
  ws.send(Buffer.alloc(1000));
  await got;
  ws.close();
  await waitFor(() => closed.length === 1);
  t.equal(opened.length, 1);
  t.equal(closed[0].path, '/ws/?room=1');
  // 1000 B payload + 2 B header + 4 B mask key client->upstream; close frames both ways.
  t.ok(closed[0].bytesToUpstream >= 1006, `up ${closed[0].bytesToUpstream}`);
  t.ok(closed[0].bytesToDownstream >= 1004, `down ${closed[0].bytesToDownstream}`);
  t.ok(closed[0].durationMs >= 0);
});

t.test('upstream connect refused before a tunnel: 502, nothing leaks', async (t) => {
  const dead = await rawUpstream(t);
  const deadPort = dead.port;
  await dead.close();
  const { gw, port } = await startGateway(t, { routes: [`/ws/=http://127.0.0.1:${deadPort}`] });
  const client = await rawClient(port);
  client.write(upgradeRequest());
  await once(client, 'end');
  client.end();
  t.match(client.text(), /^HTTP\/1\.1 502 Bad Gateway\r\n/);
  t.match(client.text(), /\r\nConnection: close\r\n/);
  await waitFor(() => gw.stats().connections === 0);
});


t.test('bytes flooding in behind an upgrade head are not buffered without bound before the 101', async (t) => {
  // Bug: the socket kept flowing after llhttp stopped at the upgrade head, so
  // everything a client sent before the 101 piled up in the proxy's memory.
  let release: () => void = () => {};
  const gate = new Promise<void>((r) => (release = r));
  const upstream = await answeringUpstream(t, (_h, socket) => void gate.then(() => socket.write(switchingProtocols())));
  const { port } = await startGateway(t, { routes: [`/ws/=http://127.0.0.1:${upstream.port}`] });
  const client = await rawClient(port);
  client.write(upgradeRequest());
  const { written, blocked } = await writeUntilBlocked(client, 512 * 1024 * 1024, 300, 7);
  t.ok(blocked, 'the client is blocked: the proxy stopped reading');
  t.ok(written < 64 * 1024 * 1024, `blocked after ${(written / 1048576).toFixed(1)} MiB`);
  release();
  const receivedBytes = () => upstream.received[0].reduce((n, c) => n + c.length, 0);
  await waitFor(() => receivedBytes() >= written, 20000, 'the held bytes reach the upstream after the 101');
  client.destroy();
});
