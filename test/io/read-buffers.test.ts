// Pooled read buffers (lib/io/read-buffers.ts): a buffer is read into again only
// when nothing refers to it, so no byte may ever be overwritten in flight.
// These tests push distinct random bytes through every path that keeps or
// forwards a slice of a read, with backpressure, and compare hashes.
import t from 'tap';
import net from 'node:net';
import { once } from 'node:events';
import { moveReadBuffers, nextBufferFor, readBufferStats, readInto, retainRead, shrinkIdleReadBuffer, writeHeld, type ReadHolder } from '../../lib/io/read-buffers.js';
import { closeHandle, readResult, startReading, takeHandle, takeableHandle } from '../../lib/io/node-internals.js';
import { kReadBuffer } from '../../lib/io/socket-fields.js';
import { probedFastPaths } from '../helpers/fast-paths.js';
import { oneReadEach, pooledReader } from '../helpers/pooled-reads.js';
import { randomBytes, rawUpstream, sha256, startGateway, switchingProtocols, upgradeRequest, waitFor } from '../helpers/net.js';

/** Reads in short bursts, so writes towards this socket queue up in the proxy. */
function throttle(socket: net.Socket): void {
  socket.pause();
  const timer = setInterval(() => {
    socket.resume();
    setTimeout(() => socket.pause(), 1);
  }, 4);
  socket.on('close', () => clearInterval(timer));
}

/** A slow-reading upstream answering each request with the sha256 of its Content-Length body (64 hex bytes). */
async function hashingUpstream(t: { teardown(fn: () => unknown): void }): Promise<number> {
  const upstream = await rawUpstream(t, (socket) => {
    throttle(socket);
    let pending = Buffer.alloc(0);
    socket.on('data', (d: Buffer) => {
      pending = Buffer.concat([pending, d]);
      for (;;) {
        const end = pending.indexOf('\r\n\r\n');
        if (end === -1) return;
        const length = Number(/\r\ncontent-length: *(\d+)/i.exec(pending.subarray(0, end).toString('latin1'))?.[1] ?? 0);
        if (pending.length < end + 4 + length) return;
        socket.write(`HTTP/1.1 200 OK\r\nContent-Length: 64\r\n\r\n${sha256(pending.subarray(end + 4, end + 4 + length))}`);
        pending = pending.subarray(end + 4 + length);
      }
    });
  });
  return upstream.port;
}

function pipelinedPosts(count: number): { bytes: Buffer; hashes: string[] } {
  const parts: Buffer[] = [];
  const hashes: string[] = [];
  for (let i = 0; i < count; i++) {
    const body = randomBytes(i % 5 === 0 ? 0 : Math.floor(Math.random() * 150_000));
    hashes.push(sha256(body));
    parts.push(Buffer.from(`POST /r${i} HTTP/1.1\r\nHost: a\r\nContent-Length: ${body.length}\r\n\r\n`, 'latin1'), body);
  }
  return { bytes: Buffer.concat(parts), hashes };
}

async function sendAndCollect(port: number, bytes: Buffer, split: boolean, expected: number): Promise<string[]> {
  const client = net.connect(port, '127.0.0.1');
  await once(client, 'connect');
  let text = '';
  client.on('data', (d: Buffer) => (text += d.toString('latin1')));
  if (!split) client.write(bytes);
  else {
    // random pieces, some tiny, so heads and bodies straddle reads every way
    for (let at = 0; at < bytes.length; ) {
      const n = Math.min(bytes.length - at, 1 + Math.floor(Math.random() * (Math.random() < 0.3 ? 10 : 40_000)));
      if (!client.write(bytes.subarray(at, at + n))) await once(client, 'drain');
      at += n;
      if (Math.random() < 0.05) await new Promise((r) => setImmediate(r));
    }
  }
  const bodies = () => [...text.matchAll(/\r\n\r\n([0-9a-f]{64})/g)].map((m) => m[1]);
  await waitFor(() => bodies().length >= expected, 20_000, `${expected} responses`);
  client.destroy();
  return bodies();
}

t.test('pipelined POSTs with Content-Length bodies: every body reaches the upstream intact, in order', async (t) => {
  const upstream = await hashingUpstream(t);
  const { port } = await startGateway(t, { routes: [`/=http://127.0.0.1:${upstream}`] });
  for (const split of [false, true]) {
    const { bytes, hashes } = pipelinedPosts(25);
    t.same(await sendAndCollect(port, bytes, split, hashes.length), hashes, split ? 'random splits' : 'one write');
  }
});

t.test('tunnels with backpressure both ways: every byte echoed intact; read buffers are reused, not allocated per read', async (t) => {
  const upstream = await rawUpstream(t, (socket) => {
    let head = '';
    const onHead = (d: Buffer) => {
      head += d.toString('latin1');
      const end = head.indexOf('\r\n\r\n');
      if (end === -1) return;
      socket.removeListener('data', onHead);
      socket.write(switchingProtocols());
      const early = Buffer.from(head.slice(end + 4), 'latin1');
      if (early.length > 0) socket.write(early);
      // Read nothing for a while: every buffer on the way fills and the proxy's
      // writes to this socket are left pending while its client keeps sending.
      socket.pause();
      setTimeout(() => {
        throttle(socket);
        socket.pipe(socket); // echo, with backpressure
      }, 400);
    };
    socket.on('data', onHead);
  });
  const { port } = await startGateway(t, { routes: [`/=http://127.0.0.1:${upstream.port}`] });
  const createdBefore = readBufferStats().created;
  const size = 12 * 1024 * 1024;
  const results = await Promise.all(
    Array.from({ length: 4 }, async () => {
      const payload = randomBytes(size);
      const client = net.connect(port, '127.0.0.1');
      await once(client, 'connect');
      const got: Buffer[] = [];
      let gotLength = -1;
      let head = '';
      client.on('data', (d: Buffer) => {
        if (gotLength < 0) {
          head += d.toString('latin1');
          const end = head.indexOf('\r\n\r\n');
          if (end === -1) return;
          gotLength = 0;
          d = Buffer.from(head.slice(end + 4), 'latin1');
        }
        got.push(d);
        gotLength += d.length;
        // a slow reader now and then: writes back up through the proxy
        if (Math.random() < 0.05) {
          client.pause();
          setTimeout(() => client.resume(), 2);
        }
      });
      // the first bytes ride with the upgrade head: they wait for the 101
      client.write(Buffer.concat([Buffer.from(upgradeRequest('/'), 'latin1'), payload.subarray(0, 1000)]));
      for (let at = 1000; at < size; ) {
        // mostly small writes: a small pending write does not say "full", so reading goes on behind it
        const n = Math.min(size - at, 1 + Math.floor(Math.random() * (Math.random() < 0.9 ? 4000 : 100_000)));
        if (!client.write(payload.subarray(at, at + n))) await once(client, 'drain');
        at += n;
      }
      await waitFor(() => gotLength >= size, 30_000, 'echo');
      client.destroy();
      return sha256(Buffer.concat(got).subarray(0, size)) === sha256(payload);
    }),
  );
  t.same(results, results.map(() => true), 'every tunnel echoed its own bytes, in order');
  // 4 tunnels x 2 sockets move 96 MiB in thousands of reads; a buffer per read would show here.
  const created = readBufferStats().created - createdBefore;
  t.ok(created <= 64, `${created} read buffers created`);
});



/** A connected socket to write to, and what its far end received. */
async function sinkSocket(t: { teardown(fn: () => unknown): void }): Promise<{ dest: net.Socket; sinkGot: Buffer[] }> {
  const sinkGot: Buffer[] = [];
  const sink = net.createServer((s) => s.on('data', (d) => sinkGot.push(d)));
  sink.listen(0, '127.0.0.1');
  await once(sink, 'listening');
  t.teardown(() => sink.close());
  const dest = net.connect((sink.address() as net.AddressInfo).port, '127.0.0.1');
  await once(dest, 'connect');
  return { dest, sinkGot };
}

t.test('a pending write pins its read buffer: the next read goes elsewhere, the queued bytes stay intact', async (t) => {
  const messages = Array.from({ length: 20 }, (_, i) => Buffer.alloc(100 + i, 65 + i));
  const { dest, sinkGot } = await sinkSocket(t);
  dest.cork(); // every write stays pending (write() still says there is room) until uncork
  const port = await oneReadEach(t, messages);
  const { source, buffersUsed } = pooledReader(port, (chunk) => writeHeld(dest, chunk));
  await once(source, 'end');
  dest.uncork();
  const expected = Buffer.concat(messages);
  await waitFor(() => Buffer.concat(sinkGot).length >= expected.length, 5000, 'sink');
  t.ok(Buffer.concat(sinkGot).equals(expected), 'bytes written while pending arrive as they were read');
  t.ok(buffersUsed.size > 1, `reads used ${buffersUsed.size} buffers while writes were pending`);
  dest.destroy();
  source.destroy();
});

t.test('a retained slice is a copy: the next read into the same buffer leaves it intact', async (t) => {
  const messages = [Buffer.alloc(300, 'a'), Buffer.alloc(300, 'b'), Buffer.alloc(300, 'c')];
  const kept: Buffer[] = [];
  const port = await oneReadEach(t, messages);
  const { source, buffersUsed } = pooledReader(port, (chunk) => kept.push(retainRead(chunk)));
  await once(source, 'end');
  t.equal(buffersUsed.size, 1, 'nothing pinned the buffer: every read reused it');
  t.ok(Buffer.concat(kept).equals(Buffer.concat(messages)), 'what was kept is what was read');
  source.destroy();
});

t.test('a write the kernel takes at once pins nothing: every read goes into the same buffer', async (t) => {
  const messages = Array.from({ length: 20 }, (_, i) => Buffer.alloc(200 + i, 97 + i));
  const { dest, sinkGot } = await sinkSocket(t);
  const port = await oneReadEach(t, messages);
  const { source, buffersUsed } = pooledReader(port, (chunk) => writeHeld(dest, chunk));
  await once(source, 'end');
  const expected = Buffer.concat(messages);
  await waitFor(() => Buffer.concat(sinkGot).length >= expected.length, 5000, 'sink');
  t.ok(Buffer.concat(sinkGot).equals(expected), 'the sink got every byte in order');
  t.equal(buffersUsed.size, 1, 'the written buffer was free again before the next read');
  dest.destroy();
  source.destroy();
});

t.test('small reads use a small buffer; a read that fills it moves to a 64 KiB one, and when the burst pauses the socket is back on a buffer of its own', async (t) => {
  const big = randomBytes(300_000);
  const messages = [Buffer.alloc(100, 'a'), Buffer.alloc(100, 'b'), big, Buffer.alloc(100, 'c'), Buffer.alloc(100, 'd'), Buffer.alloc(100, 'e')];
  const got: Buffer[] = [];
  const port = await oneReadEach(t, messages);
  const { source, reads } = pooledReader(port, (chunk) => got.push(Buffer.from(chunk)));
  await once(source, 'end');
  t.ok(Buffer.concat(got).equals(Buffer.concat(messages)), 'every byte read, in order');
  const small = reads[0].buffer;
  t.ok(small.length <= 4096, `the first reads go into a small buffer (${small.length} B), not 64 KiB`);
  t.equal(reads[1].buffer, small, 'and stay there while reads leave room');
  const bigReads = reads.filter((r) => r.buffer.length === 64 * 1024);
  t.ok(bigReads.length >= 2, `the 300 KB burst was read mostly in 64 KiB reads (${bigReads.length})`);
  t.ok(bigReads.some((r) => r.nread > 16 * 1024), 'with reads larger than the small buffer');
  const last = reads[reads.length - 1].buffer;
  t.ok(last.length <= 16 * 1024, `after the burst the socket reads into its own buffer again (${last.length} B), not a pooled 64 KiB one`);
  t.equal(reads[reads.length - 2].buffer, last, 'and stays there');
  source.destroy();
});

t.test("a socket's own buffer grows to hold its messages: 4 KiB messages take one read each, into 8 KiB", async (t) => {
  const messages = Array.from({ length: 12 }, (_, i) => randomBytes(4096 + (i % 3)));
  const got: Buffer[] = [];
  const port = await oneReadEach(t, messages);
  const { source, reads } = pooledReader(port, (chunk) => got.push(Buffer.from(chunk)));
  await once(source, 'end');
  t.ok(Buffer.concat(got).equals(Buffer.concat(messages)), 'every byte read, in order');
  const steady = reads.slice(-6);
  t.ok(steady.every((r) => r.nread >= 4096), `the last messages took one read each (${steady.map((r) => r.nread).join(', ')})`);
  t.ok(steady.every((r) => r.buffer === steady[0].buffer && r.buffer.length === 8192), 'all into one 8 KiB buffer of the socket');
  t.ok(reads.length <= messages.length + 3, `${reads.length} reads for ${messages.length} messages`);
  source.destroy();
});

t.test('a socket idle after a large message holds at most 16 KiB, not a 64 KiB buffer', async (t) => {
  // 40 KB arrives as one read of less than 64 KiB; the next read shows the buffer the socket kept meanwhile.
  const messages = [Buffer.alloc(100, 'a'), randomBytes(40_000), Buffer.alloc(100, 'z')];
  const got: Buffer[] = [];
  const port = await oneReadEach(t, messages);
  const { source, reads } = pooledReader(port, (chunk) => got.push(Buffer.from(chunk)));
  await once(source, 'end');
  t.ok(Buffer.concat(got).equals(Buffer.concat(messages)), 'every byte read, in order');
  t.ok(reads.some((r) => r.buffer.length === 64 * 1024), 'the large message was read into a 64 KiB buffer');
  const kept = reads[reads.length - 1];
  t.equal(kept.nread, 100, 'the last read is the small message');
  t.ok(kept.buffer.length <= 16 * 1024, `the buffer held while idle: ${kept.buffer.length} B`);
  source.destroy();
});

t.test("an idle tunnel's handle reads next into 256 B, then its buffer grows back with its reads; no byte is lost or reordered", async (t) => {
  const paths = await probedFastPaths();
  if (!paths.handleTunnels || !paths.pooledReads) {
    t.pass('handle tunnels or pooled reads are off in this run: a tunnel keeps its sockets and their buffers');
    return;
  }
  // A head-sized first read (into the socket's own 1 KiB buffer), then the tunnel's traffic, one write each, a little apart.
  const head = randomBytes(900);
  const rest = [randomBytes(10), randomBytes(200), randomBytes(3000), randomBytes(100_000), randomBytes(10), randomBytes(4000), randomBytes(4000)];
  let peer: net.Socket | null = null;
  const server = net.createServer((socket) => {
    peer ??= socket;
    socket.write(head);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => server.close());
  const first: Buffer[] = [];
  const { source, reads } = pooledReader((server.address() as net.AddressInfo).port, (chunk) => first.push(Buffer.from(chunk)));
  await waitFor(() => first.length === 1 && peer !== null, 3000, 'the first read');
  t.equal(reads[0].buffer.length, 1024, "the socket's own 1 KiB buffer");
  await new Promise((r) => setImmediate(r));
  const handle = takeableHandle(source);
  if (handle === null) throw new Error('a socket at rest has no takeable handle');
  const holder: ReadHolder = {};
  t.ok(moveReadBuffers(source, holder), 'the socket read into pooled buffers');
  const given = holder[kReadBuffer]!.bytes;
  shrinkIdleReadBuffer(holder, handle);
  takeHandle(source, handle);
  t.teardown(() => closeHandle(handle, null, () => {}));
  // The 1 KiB slot it gave up is the next connection's: that head lands there, and nothing else does.
  const second: Buffer[] = [];
  const next = pooledReader((server.address() as net.AddressInfo).port, (chunk) => second.push(Buffer.from(chunk)));
  t.teardown(() => next.source.destroy());
  await waitFor(() => second.length === 1, 3000, 'the next connection reads its head');
  t.ok(next.reads[0].buffer.buffer === given.buffer && next.reads[0].buffer.byteOffset === given.byteOffset, "the next connection's head went into the slot the tunnel gave up");
  t.ok(second[0].equals(head), 'intact');
  const got: Buffer[] = [];
  const reads2: Array<{ size: number; nread: number }> = [];
  let handed = holder[kReadBuffer]!.bytes; // what the handle reads into next
  t.equal(handed.length, 256, 'the handle reads next into 256 B');
  startReading(handle, null, () => {
    const nread = readResult();
    if (nread <= 0) return undefined;
    const chunk = readInto(holder, nread);
    if (chunk.buffer !== handed.buffer || chunk.byteOffset !== handed.byteOffset) throw new Error('a read landed elsewhere than in the buffer handed out');
    reads2.push({ size: handed.length, nread });
    got.push(Buffer.from(chunk));
    handed = nextBufferFor(holder);
    return handed;
  });
  for (const message of rest) {
    peer!.write(message);
    await new Promise((r) => setTimeout(r, 10));
  }
  const total = rest.reduce((n, m) => n + m.length, 0);
  await waitFor(() => got.reduce((n, c) => n + c.length, 0) >= total, 5000, 'every byte');
  t.ok(Buffer.concat(got).equals(Buffer.concat(rest)), 'every byte read, in order');
  t.same(reads2[0], { size: 256, nread: 10 }, 'the first message went into the 256 B buffer');
  const last = reads2.slice(-2);
  t.ok(last.every((r) => r.nread === 4000 && r.size >= 4096), `the buffer grew back: 4000 B messages take one read each (${JSON.stringify(last)})`);
});
