// lib/io/socket-fields.ts: every wsgate field exists on a socket from the moment
// wsgate takes it, in one order, so that nothing adds one later (which would
// give the socket a new hidden class and make the hot reads megamorphic).
import t from 'tap';
import net from 'node:net';
import { once } from 'node:events';
import { initSocketFields } from '../../lib/io/socket-fields.js';
import { rawUpstream, startGateway, switchingProtocols, upgradeRequest, waitFor } from '../helpers/net.js';

function wsgateKeys(socket: object): string[] {
  const symbols = Object.getOwnPropertySymbols(socket).map((s) => s.description ?? '');
  return [...symbols.filter((d) => d.startsWith('wsgate')), ...Object.keys(socket).filter((k) => k.startsWith('wsgate'))];
}

t.test('a socket that carried a tunnel has exactly the fields it was given, in the same order', async (t) => {
  const expected = wsgateKeys(initSocketFields(new net.Socket()));
  t.ok(expected.length >= 8, `${expected.length} fields`);
  const upstream = await rawUpstream(t, (socket) => {
    socket.once('data', () => {
      socket.write(switchingProtocols());
      socket.on('data', (d) => socket.write(d));
    });
  });
  const { gw } = await startGateway(t, { routes: [`/=http://127.0.0.1:${upstream.port}`] });
  // A socket handed in through the library API, so the test holds wsgate's own end of it.
  const server = net.createServer({ allowHalfOpen: true }, (socket) => gw.handleSocket(socket));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => server.close());
  const accepted = once(server, 'connection');
  const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  t.teardown(() => client.destroy());
  const [downstream] = (await accepted) as [net.Socket];
  let text = '';
  client.on('data', (d: Buffer) => (text += d.toString('latin1')));
  client.write(upgradeRequest('/'));
  await waitFor(() => text.includes('\r\n\r\n'), 5000, '101');
  for (let i = 0; i < 50; i++) client.write(Buffer.alloc(1000 + i * 500, 'x'));
  await waitFor(() => text.length > 50_000, 5000, 'echo');
  t.same(wsgateKeys(downstream), expected);
});
