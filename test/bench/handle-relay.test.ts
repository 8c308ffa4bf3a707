// The experiment relay behind bench/RESULTS.md's "a tunnel that keeps only its
// two handles" must still relay, on every Node line CI runs, or its memory
// figure measures a broken relay.
import t from 'tap';
import net from 'node:net';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { startHandleRelay, tunnels } from '../../bench/lib/handle-relay.js';
import { fastPathsForcedOff, fastPathsTurnedOff } from '../../lib/io/node-internals.js';

const skip = (fastPathsForcedOff() || fastPathsTurnedOff().has('handleWrites')) && 'handle writes forced off (WSGATE_FAST_PATHS): the experiment relay has no fallback';
t.test('the handles-only relay carries bytes both ways in order and closes both sides', { skip }, async (t) => {
  const upstreamClosed: Promise<unknown>[] = [];
  const upstream = net.createServer((socket) => {
    upstreamClosed.push(once(socket, 'close'));
    socket.on('data', (d) => socket.write(d)); // echo
    socket.on('end', () => socket.end());
  });
  upstream.listen(0, '127.0.0.1');
  await once(upstream, 'listening');
  t.teardown(() => upstream.close());
  const relay = await startHandleRelay(0, (upstream.address() as net.AddressInfo).port);
  t.teardown(() => relay.close());
  const port = (relay.address() as net.AddressInfo).port;

  const payload = randomBytes(300_000); // several reads and, likely, a write left pending
  const client = net.connect(port, '127.0.0.1');
  const received: Buffer[] = [];
  client.on('data', (d: Buffer) => received.push(d));
  await once(client, 'connect');
  client.write(payload.subarray(0, 10)); // before the relay's upstream connects: held, then sent first
  client.write(payload.subarray(10));
  while (Buffer.concat(received).length < payload.length) await once(client, 'data');
  t.ok(Buffer.concat(received).equals(payload), 'echoed bytes equal the bytes sent, in order');
  t.equal(tunnels.size, 1, 'one tunnel held');

  client.end();
  await once(client, 'close');
  await Promise.all(upstreamClosed);
  t.equal(tunnels.size, 0, 'the tunnel is gone once either side ends');
});
