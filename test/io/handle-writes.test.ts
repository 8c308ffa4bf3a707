// Tunnel writes straight to the socket handle (lib/io/handle-writes.ts): they
// must keep every byte in order with the Writable's own writes, hold the
// source back while the kernel cannot take more, and let it go on 'drain'.
import t from 'tap';
import net from 'node:net';
import { once } from 'node:events';
import { handleWritesEnabled, writePieces, writeToSocket } from '../../lib/io/handle-writes.js';
import { probedFastPaths } from '../helpers/fast-paths.js';
import { randomBytes, rawUpstream, sha256, startGateway, switchingProtocols, upgradeRequest, waitFor, writeUntilBlocked } from '../helpers/net.js';

const paths = await probedFastPaths();
const direct = paths.handleWrites !== 'off';

/** A connected pair: `near` is written to, `far` records what arrives. */
async function socketPair(t: { teardown(fn: () => unknown): void }): Promise<{ near: net.Socket; far: net.Socket; got: () => Buffer }> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const accepted = once(server, 'connection');
  const near = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  await once(near, 'connect');
  const [far] = (await accepted) as [net.Socket];
  const chunks: Buffer[] = [];
  far.on('data', (d: Buffer) => chunks.push(d));
  t.teardown(() => {
    near.destroy();
    far.destroy();
    server.close();
  });
  return { near, far, got: () => Buffer.concat(chunks) };
}

/** A raw upstream that answers the upgrade and then reads nothing until `release()`. */
async function stalledUpstream(t: { teardown(fn: () => unknown): void }) {
  let release: () => void = () => {};
  const released = new Promise<void>((r) => (release = r));
  const upstream = await rawUpstream(t, (socket) => {
    socket.once('data', () => {
      socket.write(switchingProtocols());
      socket.pause();
      void released.then(() => socket.resume());
    });
  });
  return { upstream, release };
}

t.test('writes to the handle and through the Writable arrive in the order they were made', async (t) => {
  const { near, got } = await socketPair(t);
  const expected: Buffer[] = [];
  for (let i = 0; i < 200; i++) {
    const piece = Buffer.alloc(1 + (i % 7) * 3000, i % 251);
    expected.push(piece);
    if (i % 3 === 0) near.write(piece);
    else writeToSocket(near, piece);
    if (i % 50 === 10) near.cork(); // the Writable holds what follows: direct writes must queue behind it
    if (i % 50 === 30) near.uncork();
  }
  const total = Buffer.concat(expected);
  await waitFor(() => got().length >= total.length, 5000, 'all bytes');
  t.ok(got().equals(total), 'every byte, in write order');
});

t.test('a tunnel relays through the handle: after the first write no tunnel write goes through the Writable', { skip: !direct && 'handle writes are off' }, async (t) => {
  const upstream = await rawUpstream(t, (socket) => {
    socket.once('data', () => {
      socket.write(switchingProtocols());
      socket.on('data', (d) => socket.write(d));
    });
  });
  const { port } = await startGateway(t, { routes: [`/=http://127.0.0.1:${upstream.port}`] });
  const client = net.connect(port, '127.0.0.1');
  t.teardown(() => client.destroy());
  let text = '';
  client.on('data', (d: Buffer) => (text += d.toString('latin1')));
  client.write(upgradeRequest('/'));
  await waitFor(() => text.includes('\r\n\r\n'), 5000, '101');
  for (let i = 0; i < 20; i++) client.write(`ping ${i};`);
  await waitFor(() => text.includes('ping 19;'), 5000, 'echo');
  t.ok(handleWritesEnabled(), 'this Node hands tunnel writes to the handle');
});

t.test('the kernel cannot take more: the source is held back, then every byte follows on drain', async (t) => {
  const { upstream, release } = await stalledUpstream(t);
  const { port } = await startGateway(t, { routes: [`/=http://127.0.0.1:${upstream.port}`] });
  const client = net.connect(port, '127.0.0.1');
  t.teardown(() => client.destroy());
  let head = '';
  const onHead = (d: Buffer) => (head += d.toString('latin1'));
  client.on('data', onHead);
  client.write(upgradeRequest('/'));
  await waitFor(() => head.includes('\r\n\r\n'), 5000, '101');
  const payload = randomBytes(256 * 1024);
  // Fill every buffer on the way: the proxy must stop reading the client.
  const chunk = payload.subarray(0, 64 * 1024);
  const { written, blocked } = await writeUntilBlocked(client, 256 * 1024 * 1024, 500, 7);
  t.ok(blocked, `the client was blocked after ${(written / 1048576).toFixed(1)} MiB`);
  t.ok(written < 64 * 1024 * 1024, 'the proxy did not read without bound');
  release();
  // Now everything must drain through, and the tunnel go on working.
  const upstreamSocket = await upstream.connection(0);
  const relayed = () => {
    const all = Buffer.concat(upstream.received[0]);
    return all.subarray(all.indexOf('\r\n\r\n') + 4); // after the forwarded upgrade head
  };
  client.write(chunk);
  await waitFor(() => relayed().length >= written + chunk.length, 20_000, 'all bytes at the upstream');
  const body = relayed();
  t.equal(body.length, written + chunk.length, 'every byte arrived once');
  t.ok(body.subarray(0, written).equals(Buffer.alloc(written, 7)), 'the blocked bytes are intact');
  t.equal(sha256(body.subarray(written)), sha256(chunk), 'the bytes written after the drain follow them');
  upstreamSocket.destroy();
});

t.test('a write left waiting keeps its bytes alive: sockets handed in without pooled reads, with the GC running', async (t) => {
  const v8 = await import('node:v8');
  const vm = await import('node:vm');
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc') as () => void;
  const { upstream, release } = await stalledUpstream(t);
  const { gw } = await startGateway(t, { routes: [`/=http://127.0.0.1:${upstream.port}`] });
  // The library API: wsgate gets a socket that reads into fresh buffers, which only the write request keeps.
  const server = net.createServer({ allowHalfOpen: true }, (socket) => gw.handleSocket(socket));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => server.close());
  const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  t.teardown(() => client.destroy());
  let head = '';
  client.on('data', (d: Buffer) => (head += d.toString('latin1')));
  client.write(upgradeRequest('/'));
  await waitFor(() => head.includes('\r\n\r\n'), 5000, '101');
  const payload = randomBytes(16 * 1024 * 1024);
  for (let at = 0; at < payload.length; at += 100_000) client.write(payload.subarray(at, at + 100_000));
  await new Promise((r) => setTimeout(r, 300)); // the proxy fills the stalled upstream's buffers and waits
  for (let i = 0; i < 5; i++) gc(); // the chunks of the waiting writes must survive this
  // and memory freed by mistake would be reused by these, so the bytes sent would change
  const junk = Array.from({ length: 256 }, () => Buffer.alloc(64 * 1024, 0x5a));
  release();
  const relayed = () => {
    const all = Buffer.concat(upstream.received[0]);
    return all.subarray(all.indexOf('\r\n\r\n') + 4);
  };
  const gcWhileDraining = setInterval(gc, 20);
  t.teardown(() => clearInterval(gcWhileDraining));
  await waitFor(() => relayed().length >= payload.length, 30_000, 'all bytes at the upstream');
  clearInterval(gcWhileDraining);
  t.equal(sha256(relayed()), sha256(payload), 'the upstream got every byte as sent');
  t.equal(junk.length, 256);
});

t.test('no request object serves two writes: native code may still hold one whose write looked done', { skip: !direct && 'handle writes are off' }, async (t) => {
  // libuv can finish a queued write inside the call and report it a turn later; a
  // request object reused then is attached twice (a native assertion on Node 24).
  const { near, got } = await socketPair(t);
  writeToSocket(near, Buffer.from('first'));
  const handle = (near as unknown as { _handle: Record<string, (...args: unknown[]) => number> })._handle;
  const seen = new Set<object>();
  let reused = 0;
  let nulls = 0;
  for (const name of ['writeBuffer', 'writev', 'writeLatin1String']) {
    const original = Object.getPrototypeOf(handle)[name] as (...args: unknown[]) => number;
    handle[name] = function (this: unknown, ...args: unknown[]) {
      const req = args[0] as object | null;
      // null-request Node (24.22+, 26): no request goes in; native code makes one per waiting write.
      if (req === null) nulls++;
      else if (seen.has(req)) reused++;
      else seen.add(req);
      return original.apply(this, args);
    };
  }
  for (let i = 0; i < 50; i++) {
    writeToSocket(near, Buffer.from(`b${i};`));
    writePieces(near, [`s${i};`, Buffer.from(`v${i};`)]);
    writePieces(near, [`l${i};`]);
  }
  await waitFor(() => got().toString('latin1').includes('l49;'), 5000, 'all bytes');
  t.ok(seen.size + nulls >= 150, `${seen.size + nulls} writes reached the handle`);
  t.equal(reused, 0, 'every write had its own request object');
  if (paths.handleWrites === 'null-request') t.equal(seen.size, 0, 'no request object passed in on a null-request Node');
  else t.equal(nulls, 0, 'a request object passed in on a request-object Node');
  t.ok(got().toString('latin1').startsWith('firstb0;s0;v0;l0;b1;'), 'in order');
});
