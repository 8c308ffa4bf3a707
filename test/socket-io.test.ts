// Real socket.io through wsgate: the client starts with HTTP long-polling on
// /socket.io/ (keep-alive HTTP through the gateway), then upgrades the same
// session to a WebSocket (a tunnel), as socket.io does by default.
import t from 'tap';
import http from 'node:http';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { Server } from 'socket.io';
import { io as connect, type Socket } from 'socket.io-client';
import { startGateway, waitFor } from './helpers/net.js';

async function socketIoServer(t: { teardown(fn: () => unknown): void }) {
  const server = http.createServer();
  const sio = new Server(server);
  sio.on('connection', (socket) => {
    socket.on('echo', (payload, ack) => ack({ echoed: payload, transport: socket.conn.transport.name }));
    socket.on('broadcast', (text) => sio.emit('news', text));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => {
    sio.close();
    server.closeAllConnections();
  });
  return (server.address() as AddressInfo).port;
}

/** socket.io's emitter is not node's EventEmitter: wait for one event by hand. */
function next<T = unknown>(socket: Socket, event: string): Promise<T> {
  return new Promise((resolve) => socket.once(event, resolve as (arg: unknown) => void));
}

function client(url: string, transports?: string[]): Socket {
  return connect(url, { transports: transports as never, reconnection: false, forceNew: true });
}

t.test('socket.io: polling, then the upgrade to WebSocket, events both ways', async (t) => {
  const port = await socketIoServer(t);
  const { gw } = await startGateway(t, { routes: [`/socket.io/=http://127.0.0.1:${port}`] });
  const url = `http://127.0.0.1:${gw.addresses[0].port}`;
  const a = client(url);
  t.teardown(() => a.close());
  await next(a, 'connect');
  await waitFor(() => a.io.engine.transport.name === 'websocket', 5000, 'upgrade to websocket');
  const reply = await a.timeout(3000).emitWithAck('echo', { text: 'héllo', n: 42 });
  t.same(reply, { echoed: { text: 'héllo', n: 42 }, transport: 'websocket' });
  t.equal(gw.stats().tunnels, 1, 'the upgraded session is one tunnel');

  const b = client(url, ['polling']);
  t.teardown(() => b.close());
  await next(b, 'connect');
  const news = next(b, 'news');
  a.emit('broadcast', 'to everyone');
  t.equal(await news, 'to everyone', 'a polling-only client gets the broadcast through keep-alive HTTP');
  const polled = await b.timeout(3000).emitWithAck('echo', 'over polling');
  t.same(polled, { echoed: 'over polling', transport: 'polling' });
});

t.test('socket.io: websocket-only transport connects straight through the tunnel', async (t) => {
  const port = await socketIoServer(t);
  const { gw } = await startGateway(t, { routes: [`/=http://127.0.0.1:${port}`] });
  const c = client(`http://127.0.0.1:${gw.addresses[0].port}`, ['websocket']);
  t.teardown(() => c.close());
  await next(c, 'connect');
  const reply = await c.timeout(3000).emitWithAck('echo', 'direct');
  t.same(reply, { echoed: 'direct', transport: 'websocket' });
});
