// Tunnels that keep only their two TCP handles (lib/tunnel/handle-side.ts):
// which tunnels shed their sockets, and what the sockets' 'close' did that a
// handle tunnel must still do. The byte-level behaviour (order, half-close,
// resets, backpressure, idle timeouts) is tunnel.test.ts's, which runs on
// handles wherever the probe turns them on and on sockets in the
// WSGATE_FAST_PATHS=off pass.
import t from 'tap';
import { once } from 'node:events';
import net from 'node:net';
import WebSocket from 'ws';
import { createGateway, type Gateway } from '../../lib/index.js';
import { answeringUpstream, rawClient, rawExchange, randomBytes, sha256, startGateway, switchingProtocols, upgradeRequest, waitFor, wsEcho } from '../helpers/net.js';

/** Open tunnels on handles where the probe turned them on, else none. */
function expectedOnHandles(gw: Gateway, n: number): number {
  return gw.stats().fastPaths.handleTunnels ? n : 0;
}

async function openWs(t: { teardown(fn: () => void): void }, port: number, localAddress = '127.0.0.1'): Promise<WebSocket> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/ws/`, { localAddress, maxPayload: 8 * 1024 * 1024 });
  t.teardown(() => ws.terminate());
  await once(ws, 'open');
  return ws;
}

async function echo(ws: WebSocket, payload: Buffer): Promise<Buffer> {
  const got = new Promise<Buffer>((resolve) => ws.once('message', (data) => resolve(data as Buffer)));
  ws.send(payload);
  return got;
}

t.test('a tunnel on its handles carries every byte both ways, then reports its close and leaves the count', async (t) => {
  const upstream = await wsEcho(t, { maxPayload: 8 * 1024 * 1024 });
  const { gw, port } = await startGateway(t, { routes: [`/ws/=http://127.0.0.1:${upstream.port}`] });
  const closes: Array<{ reason: string; bytesToUpstream: number; bytesToDownstream: number }> = [];
  gw.on('tunnelClose', (info) => closes.push(info));
  const ws = await openWs(t, port);
  await waitFor(() => gw.stats().tunnelsOnHandles === expectedOnHandles(gw, 1), 3000, 'on handles');
  let sent = 0;
  for (const size of [1, 125, 4096, 65536, 1024 * 1024, 5 * 1024 * 1024]) {
    const payload = randomBytes(size);
    const back = await echo(ws, payload);
    t.equal(sha256(back), sha256(payload), `${size} bytes came back unchanged`);
    sent += size;
  }
  t.equal(gw.stats().tunnelsOnHandles, expectedOnHandles(gw, 1), 'still on its handles after 6 MiB');
  ws.close();
  await once(ws, 'close');
  await waitFor(() => closes.length === 1, 3000, 'tunnelClose');
  t.equal(closes[0].reason, 'done');
  t.ok(closes[0].bytesToUpstream > sent && closes[0].bytesToDownstream > sent, `bytes counted: ${closes[0].bytesToUpstream} up, ${closes[0].bytesToDownstream} down`);
  t.equal(gw.stats().tunnels, 0);
  t.equal(gw.stats().tunnelsOnHandles, 0);
});

t.test("maxConnectionsPerClient: a tunnel on its handles counts until its handle closes (the socket's 'close' carried over)", async (t) => {
  const upstream = await wsEcho(t);
  const page = await answeringUpstream(t, 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
  const { gw, port } = await startGateway(t, { routes: [`/ws/=http://127.0.0.1:${upstream.port}`, `/=http://127.0.0.1:${page.port}`], maxConnectionsPerClient: 1 });
  const first = await openWs(t, port);
  await waitFor(() => gw.stats().tunnelsOnHandles === expectedOnHandles(gw, 1), 3000, 'on handles');
  // Its socket was let go: the client still counts.
  const refused = await rawExchange(port, 'GET / HTTP/1.1\r\nHost: a\r\n\r\n');
  t.match(refused.text, /^HTTP\/1\.1 503 /, 'a second connection from the address: 503');
  first.close();
  await once(first, 'close');
  await waitFor(() => gw.stats().tunnels === 0, 3000, 'tunnel closed');
  const served = await rawExchange(port, 'GET / HTTP/1.1\r\nHost: a\r\n\r\n');
  t.match(served.text, /^HTTP\/1\.1 200 /, 'the handle closed: the address may connect again');
});

t.test('a tunnel behind a PROXY protocol listener (reads Node allocates) sheds its sockets too', async (t) => {
  let upSocket: net.Socket | null = null;
  const upstream = await answeringUpstream(t, (_head, socket) => {
    socket.write(switchingProtocols());
    socket.on('data', (chunk: Buffer) => socket.write(chunk)); // echo
    upSocket = socket;
  });
  const gw = createGateway({ routes: [`/ws/=http://127.0.0.1:${upstream.port}`] });
  t.teardown(() => gw.close({ drainMs: 0 }));
  const { port } = await gw.listen({ host: '127.0.0.1', port: 0, proxyProtocol: true });
  const client = await rawClient(port);
  client.write('PROXY TCP4 192.0.2.7 127.0.0.1 40000 80\r\n' + upgradeRequest());
  await waitFor(() => upSocket !== null && client.text().includes('\r\n\r\n'), 3000, '101');
  await waitFor(() => gw.stats().tunnelsOnHandles === expectedOnHandles(gw, 1), 3000, 'on handles');
  const headLength = client.text().indexOf('\r\n\r\n') + 4;
  const payload = randomBytes(3 * 1024 * 1024);
  client.write(payload);
  await waitFor(() => client.chunks.reduce((n, c) => n + c.length, 0) >= headLength + payload.length, 10000, 'echo');
  t.equal(sha256(Buffer.concat(client.chunks).subarray(headLength)), sha256(payload), '3 MiB echoed unchanged');
  const upstreamEnded = once(upSocket!, 'end');
  client.end();
  await upstreamEnded; // the client's FIN, through the tunnel
  upSocket!.end();
  await waitFor(() => gw.stats().tunnels === 0, 3000, 'closed after both FINs');
});

t.test('a socket handed in through handleSocket keeps its socket tunnel: its owner still gets its events', async (t) => {
  const upstream = await wsEcho(t);
  const gw = createGateway({ routes: [`/ws/=http://127.0.0.1:${upstream.port}`] });
  t.teardown(() => gw.close({ drainMs: 0 }));
  let closedSeen = false;
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    socket.on('close', () => (closedSeen = true));
    gw.handleSocket(socket);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => server.close());
  // handleSocket does not probe; a gateway that listened would have. Probe here so the path is on where it can be.
  await gw.listen({ host: '127.0.0.1', port: 0 });
  const ws = await openWs(t, (server.address() as net.AddressInfo).port);
  t.equal((await echo(ws, Buffer.from('hello'))).toString(), 'hello');
  await new Promise((r) => setTimeout(r, 50));
  t.equal(gw.stats().tunnels, 1);
  t.equal(gw.stats().tunnelsOnHandles, 0, 'on its sockets');
  ws.close();
  await waitFor(() => closedSeen, 3000, "the owner's 'close'");
  t.pass("the socket's owner saw its 'close'");
});

t.test('close({ drainMs: 0 }) closes tunnels on handles at once: both peers see the close', async (t) => {
  let upSocket: net.Socket | null = null;
  const upstream = await answeringUpstream(t, (_head, socket) => {
    socket.write(switchingProtocols());
    upSocket = socket;
  });
  const gw = createGateway({ routes: [`/ws/=http://127.0.0.1:${upstream.port}`] });
  const { port } = await gw.listen({ host: '127.0.0.1', port: 0 });
  const client = await rawClient(port);
  client.write(upgradeRequest());
  await waitFor(() => upSocket !== null && client.text().includes('\r\n\r\n'), 3000, '101');
  await waitFor(() => gw.stats().tunnelsOnHandles === expectedOnHandles(gw, 1), 3000, 'on handles');
  const reasons: string[] = [];
  gw.on('tunnelClose', (info) => reasons.push(info.reason));
  // Both peers half-close-capable: the FIN (or reset) of the proxy's close is what they see.
  const clientSaw = new Promise((resolve) => (client.once('end', resolve), client.once('close', resolve)));
  const upstreamSaw = new Promise((resolve) => (upSocket!.once('end', resolve), upSocket!.once('close', resolve)));
  await gw.close({ drainMs: 0 });
  await clientSaw;
  await upstreamSaw;
  t.same(reasons, ['shutdown']);
  t.equal(gw.stats().tunnels, 0);
});
