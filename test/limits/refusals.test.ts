// Connections refused before their request is read (lib/limits/refusals.ts):
// the prebuilt 503 with Connection: close, the count of refused sockets still
// open, the grace on the timer wheel, and the descriptor-limit log line that
// comes at once and then at most once a second with a count.
import t from 'tap';
import net from 'node:net';
import { once } from 'node:events';
import { Refusals, type RefusalHost } from '../../lib/limits/refusals.js';
import type { DescriptorHolder } from '../../lib/limits/descriptor-limit.js';
import { WsgateError } from '../../lib/core/errors.js';
import type { LogLevel } from '../../lib/core/log.js';
import { TimerWheel } from '../../lib/core/timer-wheel.js';
import { rawClient, waitFor, type Teardown } from '../helpers/net.js';

const ANSWER_503 =
  'HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 24\r\nConnection: close\r\n\r\n503 Service Unavailable\n';

interface Harness {
  refusals: Refusals;
  wheel: TimerWheel;
  /** The wheel's clock: move it, then `wheel.advance()`. */
  clock: { now: number };
  logs: Array<[LogLevel, string, Record<string, unknown> | undefined]>;
  refused: Array<[string, string]>;
  holder: DescriptorHolder & { reserved: number };
  port: number;
  /** Server-side sockets, in accept order. */
  accepted: net.Socket[];
  /** Resolves with the n-th accepted socket. */
  acceptedSocket(n: number): Promise<net.Socket>;
}

/** A Refusals on a manual wheel, and a listener whose connections the test refuses by hand. */
async function harness(t: Teardown): Promise<Harness> {
  const clock = { now: 1_000_000 };
  const wheel = new TimerWheel({ tickMs: 10, autoStart: false, clock: () => clock.now });
  const logs: Harness['logs'] = [];
  const refused: Harness['refused'] = [];
  const host: RefusalHost = {
    wheel,
    log: (level, message, fields) => logs.push([level, message, fields]),
    refused: (err, remoteAddress) => refused.push([err.code, remoteAddress]),
  };
  const holder = { reserved: 5, descriptorsReserved: () => holder.reserved, descriptorsHeld: () => holder.reserved };
  const refusals = new Refusals(host, holder);
  const accepted: net.Socket[] = [];
  const waiters: Array<{ n: number; resolve: (s: net.Socket) => void }> = [];
  const server = net.createServer((socket) => {
    accepted.push(socket);
    for (const w of waiters) if (w.n === accepted.length - 1) w.resolve(socket);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(async () => {
    for (const s of accepted) s.destroy();
    wheel.clear();
    await new Promise((r) => server.close(r));
  });
  return {
    refusals,
    wheel,
    clock,
    logs,
    refused,
    holder,
    port: (server.address() as net.AddressInfo).port,
    accepted,
    acceptedSocket: (n) => (accepted[n] ? Promise.resolve(accepted[n]) : new Promise((resolve) => waiters.push({ n, resolve }))),
  };
}

/** A raw client that stays half-open after the 503 (it never closes its side on its own). */
async function client(t: Teardown, port: number) {
  const c = await rawClient(port);
  t.teardown(() => c.destroy());
  return c;
}

const tooMany = () => new WsgateError('WSG_ERR_TOO_MANY_CONNECTIONS', '3 open');
const noDescriptors = () => new WsgateError('WSG_ERR_DESCRIPTOR_LIMIT', '~1000 of 1024 in use, 32 kept free');

t.test('refuse answers the prebuilt 503 with Connection: close, then FIN, whatever the client sent', async (t) => {
  const h = await harness(t);
  const c = await client(t, h.port);
  c.write('GET / HTTP/1.1\r\nHost: a\r\n\r\n');
  const socket = await h.acceptedSocket(0);
  h.refusals.refuse(socket, tooMany(), true);
  await once(c, 'end');
  t.equal(c.text(), ANSWER_503, 'exact bytes');
});

t.test('a logged refusal is one warn line with code, status and remote; the host hears of every refusal', async (t) => {
  const h = await harness(t);
  const c = await client(t, h.port);
  const err = tooMany();
  h.refusals.refuse(await h.acceptedSocket(0), err, true);
  t.same(h.logs, [['warn', 'maxConnections reached: 3 open', { code: 'WSG_ERR_TOO_MANY_CONNECTIONS', status: 503, remote: '127.0.0.1' }]]);
  t.same(h.refused, [['WSG_ERR_TOO_MANY_CONNECTIONS', '127.0.0.1']]);
  const c2 = await client(t, h.port);
  h.refusals.refuse(await h.acceptedSocket(1), err, false);
  t.equal(h.logs.length, 1, 'log: false writes no line');
  t.equal(h.refused.length, 2, 'but still reports the refusal');
  await Promise.all([once(c, 'end'), once(c2, 'end')]);
});

t.test('a refused socket is counted open until it closes: when the client closes its side', async (t) => {
  const h = await harness(t);
  const c = await client(t, h.port);
  const socket = await h.acceptedSocket(0);
  h.refusals.refuse(socket, tooMany(), false);
  t.equal(h.refusals.open, 1);
  await once(c, 'end');
  t.equal(h.refusals.open, 1, 'still open while the client keeps its side');
  c.end();
  await once(socket, 'close');
  t.equal(h.refusals.open, 0);
});

t.test('a client that never closes gets a one-second grace on the wheel, then the socket is destroyed', async (t) => {
  const h = await harness(t);
  const c = await client(t, h.port);
  const socket = await h.acceptedSocket(0);
  const start = h.clock.now;
  h.refusals.refuse(socket, tooMany(), false);
  t.equal(h.wheel.size, 1, 'one grace timer');
  await once(c, 'end');
  h.clock.now = start + 990;
  h.wheel.advance();
  t.equal(socket.destroyed, false, 'not before the grace is over');
  h.clock.now = start + 1000;
  h.wheel.advance();
  t.equal(socket.destroyed, true, 'destroyed at 1000 ms');
  t.equal(h.wheel.size, 0);
  await waitFor(() => h.refusals.open === 0, 2000, 'open back to 0');
});

t.test('a socket already closed is answered but never counted', async (t) => {
  const h = await harness(t);
  await client(t, h.port);
  const socket = await h.acceptedSocket(0);
  socket.destroy();
  await once(socket, 'close');
  h.refusals.refuse(socket, tooMany(), true);
  t.equal(h.refusals.open, 0);
  t.equal(h.refused.length, 1);
});

t.test('an error on a refused socket (the client reset) concerns nobody', async (t) => {
  const h = await harness(t);
  const c = await client(t, h.port);
  const socket = await h.acceptedSocket(0);
  c.resetAndDestroy();
  h.refusals.refuse(socket, tooMany(), false);
  // events.once would reject on the 'error' (ECONNRESET): wait for 'close' alone
  await new Promise((resolve) => socket.once('close', resolve));
  t.equal(h.refusals.open, 0, 'no uncaught error, and the count is back to 0');
});

t.test('descriptor refusals: logged at once with a count, then at most once a second, then quiet', async (t) => {
  const h = await harness(t);
  const start = h.clock.now;
  const d = h.refusals.descriptors;
  // fds: the holder's reservation (the rest of the process was never measured here)
  const line = (refused: number, fds: number) => [
    'warn',
    'descriptor limit reached: new connections get 503',
    { code: 'WSG_ERR_DESCRIPTOR_LIMIT', status: 503, refused, fds, limit: d.limit, reserve: d.reserve },
  ];
  const refuse = async (n: number) => {
    await client(t, h.port);
    h.refusals.refuseForDescriptors(await h.acceptedSocket(n), noDescriptors());
  };
  await refuse(0);
  t.same(h.logs, [line(1, 5)], 'the first refusal is logged at once');
  t.same(h.refused, [['WSG_ERR_DESCRIPTOR_LIMIT', '127.0.0.1']]);
  await refuse(1);
  await refuse(2);
  h.holder.reserved = 9;
  t.equal(h.logs.length, 1, 'the next ones within the second are only counted');
  h.clock.now = start + 1000;
  h.wheel.advance();
  t.same(h.logs, [line(1, 5), line(2, 9)], 'one line a second later, with the count since the last');
  h.clock.now = start + 2000;
  h.wheel.advance();
  t.equal(h.logs.length, 2, 'a quiet second logs nothing');
  h.clock.now = start + 5000;
  h.wheel.advance();
  t.equal(h.logs.length, 2, 'and the log timer has stopped');
  await refuse(3);
  t.same(h.logs[2], line(1, 9), 'after a quiet spell the next refusal is logged at once again');
  t.equal(h.refused.length, 4, 'every refusal reported to the host');
});

t.test('past half the reserve, a refused socket is destroyed as soon as its 503 is in the kernel', async (t) => {
  const h = await harness(t);
  const half = h.refusals.descriptors.reserve / 2;
  const clients: Array<Awaited<ReturnType<typeof client>>> = [];
  let n = 0;
  for (; n <= half; n++) {
    const c = await client(t, h.port);
    clients.push(c);
    const socket = await h.acceptedSocket(n);
    h.refusals.refuseForDescriptors(socket, noDescriptors());
    const over = h.refusals.open > half;
    t.equal(socket.destroyed, over, `refusal ${n + 1} with ${h.refusals.open} open: ${over ? 'destroyed at once' : 'kept for the client to close'}`);
    if (over) break;
  }
  t.equal(n, Math.floor(half), `the first ${Math.floor(half)} are kept`);
  const last = clients[clients.length - 1];
  await waitFor(() => last.text().length >= ANSWER_503.length, 2000, 'the 503 of the destroyed one');
  t.equal(last.text(), ANSWER_503, 'the destroyed one still got its whole 503');
  await waitFor(() => h.refusals.open === Math.floor(half), 2000, 'its descriptor freed');
});

t.test('admitsOneMore asks the descriptor limit about the holder', async (t) => {
  const h = await harness(t);
  const d = h.refusals.descriptors;
  if (d.limit === Infinity) {
    t.equal(h.refusals.admitsOneMore(), true, 'no readable limit: no guard');
    return;
  }
  h.holder.reserved = 0;
  t.equal(h.refusals.admitsOneMore(), true, 'a gateway holding nothing admits');
  h.holder.reserved = d.limit;
  t.equal(h.refusals.admitsOneMore(), false, 'a gateway holding the whole table does not');
});

t.test('describeUse says the estimate, the limit and the reserve', async (t) => {
  const h = await harness(t);
  const d = h.refusals.descriptors;
  h.holder.reserved = 41;
  t.equal(h.refusals.describeUse(), `~41 of ${d.limit} in use, ${d.reserve} kept free`, 'never measured: the holder\'s count alone');
});
