// The start-up probe: runs each fast path of node-internals.ts once on a
// loopback socket pair (a write taken at once, a write left pending, a
// writev, re-wrapped pooled reads, the Writable hooks, the parser), checks
// every byte at the peer, and turns on those that work on this Node. It never
// throws: an exception, a surprise or a timeout turns that path off. All
// contact with Node internals goes through node-internals.ts.

import net from 'node:net';
import {
  FAST_PATHS_OFF,
  applyFastPaths,
  fastPathReasons,
  fastPaths,
  fastPathsForcedOff,
  fastPathsTurnedOff,
  initializeParser,
  methodName,
  newParser,
  parserLoadError,
  parserSlots,
  probeHandle,
  rewrapHandle,
  socketClassWithWriteHook,
  pauseReading,
  READ_EOF,
  readNextInto,
  readOffset,
  readResult,
  resetHandle,
  closeHandle,
  shutdownHandle,
  startReading,
  takeHandle,
  takeableHandle,
  tunnelHandlesUnavailable,
  watchWriteContract,
  withFastPaths,
  writeHooksExist,
  writeToHandle,
  type FastPaths,
  type OnRead,
  type PendingWrite,
  type StreamHandle,
  type TunnelHandle,
  type WriteContract,
} from './node-internals.js';

export interface ProbeResult {
  readonly paths: FastPaths;
  /** Why each path that is off is off. */
  readonly reasons: Readonly<Record<string, string>>;
}

let probing: Promise<ProbeResult> | null = null;

/**
 * Runs each fast path once on loopback sockets and turns on those that work
 * on this Node (once per process; later calls share the answer). Never throws:
 * an exception, a surprise or a timeout turns that path off.
 */
export function probeFastPaths(): Promise<ProbeResult> {
  if (fastPathsForcedOff()) {
    const result = { paths: FAST_PATHS_OFF, reasons: { all: 'WSGATE_FAST_PATHS=off' } };
    applyFastPaths(result.paths, result.reasons);
    return Promise.resolve(result);
  }
  probing ??= runProbe().catch((err: unknown) => ({ paths: FAST_PATHS_OFF, reasons: { all: `probe failed: ${describe(err)}` } }));
  return probing.then((result) => {
    applyFastPaths(result.paths, result.reasons);
    return result;
  });
}

/** One line for the start-up log: which paths are on. */
export function describeFastPaths(): string {
  const p = fastPaths();
  const off = Object.entries(fastPathReasons()).map(([k, v]) => `${k}: ${v}`);
  return `fast paths on Node ${process.version}: handle writes ${p.handleWrites}, pooled reads ${p.pooledReads ? 'on' : 'off'}, turn writes ${p.turnWrites ? 'on' : 'off'}, handle tunnels ${p.handleTunnels ? 'on' : 'off'}${off.length > 0 ? ` (${off.join('; ')})` : ''}`;
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

const PROBE_TIMEOUT_MS = 3000;

/**
 * How long each path's probe may take: 3 s, or `WSGATE_PROBE_TIMEOUT_MS` (a
 * positive integer; anything else is ignored). Only a process slowed far below
 * native speed needs more: under valgrind a probe takes longer than 3 s, and the
 * paths it would have found working were measured off (bench/RESULTS.md).
 */
export function probeTimeoutMs(): number {
  const value = (process.env.WSGATE_PROBE_TIMEOUT_MS ?? '').trim();
  return /^[1-9]\d{0,8}$/.test(value) ? Number(value) : PROBE_TIMEOUT_MS;
}

interface Pair {
  readonly server: net.Server;
  /** The accepted side (paused, never read from by Node: pauseOnConnect). */
  readonly accepted: net.Socket;
  /** The dialed side. */
  readonly dialed: net.Socket;
}

async function runProbe(): Promise<ProbeResult> {
  const found: Record<string, string> = {};
  const parserError = probeParser();
  if (parserError !== null) found.parser = parserError;
  const turnedOff = fastPathsTurnedOff();
  const asked = (path: keyof FastPaths): boolean => {
    if (turnedOff.has(path)) found[path] = 'WSGATE_FAST_PATHS';
    return !turnedOff.has(path);
  };

  /**
   * One path's probe: its answer, or `off` with the reason in `found` (turned
   * off, needs handle writes that are off, threw, or timed out).
   */
  const probe = async <T>(path: keyof FastPaths, what: string, off: T, run: () => Promise<T>, writes?: WriteContract): Promise<T> => {
    if (!asked(path)) return off;
    if (writes === 'off') {
      found[path] = 'needs handle writes';
      return off;
    }
    try {
      return await withTimeout(run(), what);
    } catch (err) {
      found[path] = describe(err);
      return off;
    }
  };

  const handleWrites = await probe<WriteContract>('handleWrites', 'handle writes', 'off', probeHandleWrites);
  const pooledReads = await probe('pooledReads', 'pooled reads', false, probeReads);
  const turnWrites = await probe('turnWrites', 'turn writes', false, probeWriteHooks, handleWrites);
  const tunnels = () => withFastPaths({ handleWrites, handleTunnels: true }, probeHandleTunnels).then(() => true);
  const handleTunnels = await probe('handleTunnels', 'handle tunnels', false, tunnels, handleWrites);
  return { paths: Object.freeze({ handleWrites, pooledReads, turnWrites, handleTunnels }), reasons: found };
}

function withTimeout<T>(work: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const ms = probeTimeoutMs();
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
    timer.unref();
  });
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}

/** A request and a response through the parser as head-reader.ts drives it; null when it works. */
function probeParser(): string | null {
  const loadError = parserLoadError();
  if (loadError !== null) return loadError;
  try {
    const slots = parserSlots();
    const seen: unknown[] = [];
    const parser = newParser();
    parser[slots.onMessageBegin] = null;
    parser[slots.onHeaders] = () => {};
    parser[slots.onHeadersComplete] = (major: number, minor: number, headers: string[], method: number, url: string, status: number) => {
      seen.push(major, minor, headers.join('|'), method === undefined ? status : methodName(method), url ?? '');
      return 0;
    };
    parser[slots.onBody] = () => {};
    parser[slots.onMessageComplete] = () => seen.push('end');
    initializeParser(parser, true, 16384);
    parser.execute(Buffer.from('GET /p HTTP/1.1\r\nHost: a\r\n\r\n'));
    initializeParser(parser, false, 16384);
    parser.execute(Buffer.from('HTTP/1.1 204 No Content\r\nX: y\r\n\r\n'));
    parser.remove?.();
    parser.free();
    const got = seen.join(',');
    const want = '1,1,Host|a,GET,/p,end,1,1,X|y,204,,end';
    return got === want ? null : `parser read ${got}, expected ${want}`;
  } catch (err) {
    return describe(err);
  }
}

function openPair(SocketClass: typeof net.Socket = net.Socket): Promise<Pair> {
  return new Promise((resolve, reject) => {
    const server = net.createServer({ pauseOnConnect: true, allowHalfOpen: true });
    server.on('error', reject);
    // exclusive: in a node:cluster worker (--workers) the probe's own loopback pair is bound
    // here, not handed through the primary as shared listeners are.
    server.listen({ port: 0, host: '127.0.0.1', exclusive: true }, () => {
      const { port } = server.address() as net.AddressInfo;
      const dialed = new SocketClass({ allowHalfOpen: true });
      dialed.on('error', () => {});
      server.once('connection', (accepted: net.Socket) => {
        accepted.on('error', () => {});
        if (dialed.connecting) dialed.once('connect', () => resolve({ server, accepted, dialed }));
        else resolve({ server, accepted, dialed });
      });
      dialed.connect(port, '127.0.0.1');
    });
  });
}

function closePair(pair: Pair): void {
  pair.accepted.destroy();
  pair.dialed.destroy();
  pair.server.close();
}

/** Reads `n` bytes from a flowing socket. */
function readBytes(socket: net.Socket, n: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let got = 0;
    const onData = (chunk: Buffer) => {
      chunks.push(chunk);
      got += chunk.length;
      if (got >= n) {
        socket.removeListener('data', onData);
        socket.pause();
        resolve(Buffer.concat(chunks));
      }
    };
    socket.on('data', onData);
    socket.once('close', () => reject(new Error(`peer closed after ${got} of ${n} bytes`)));
    socket.resume();
  });
}

/**
 * Which write contract Node itself uses, read off the argument it hands the
 * handle in one plain `socket.write`; then a write taken at once, a write
 * left pending and a writev, each checked byte for byte at the peer.
 */
async function probeHandleWrites(): Promise<WriteContract> {
  const pair = await openPair();
  try {
    const handle = probeHandle(pair.dialed);
    // 1. Watch one write Node makes.
    const watched = readBytes(pair.accepted, 5);
    const contract = watchWriteContract(handle, () => pair.dialed.write(Buffer.from('probe')));
    if (!(await watched).equals(Buffer.from('probe'))) throw new Error('a watched write arrived altered');

    // 2. The contract, exercised: every path of writeToHandle under it.
    await withFastPaths({ handleWrites: contract }, () => exerciseWrites(pair, handle));
    return contract;
  } finally {
    closePair(pair);
  }
}

async function exerciseWrites(pair: Pair, handle: StreamHandle): Promise<void> {
  // Taken at once.
  const small = Buffer.from('taken at once');
  const smallRead = readBytes(pair.accepted, small.length);
  const r1 = writeToHandle(handle, 0, small);
  if (r1 !== 0) throw new Error(`a small write gave ${typeof r1 === 'number' ? r1 : 'a pending request'}`);
  if (!(await smallRead).equals(small)) throw new Error('a small write arrived altered');

  // writev of a string and buffers.
  const chunks = ['head ', 'latin1', Buffer.from('body'), 'buffer'];
  const vRead = readBytes(pair.accepted, 9);
  const r2 = writeToHandle(handle, 2, chunks);
  if (typeof r2 === 'number' && r2 !== 0) throw new Error(`writev failed: ${r2}`);
  if (typeof r2 !== 'number') await completion(r2);
  if ((await vRead).toString('latin1') !== 'head body') throw new Error('a writev arrived altered');

  // Left pending: the peer does not read, so the kernel's buffers fill (a few
  // MiB on loopback) and a write finally waits in libuv. A write that libuv
  // finished inside the call still reports a turn later: Node then hands back
  // a request with writeQueueSize at 0 (seen on a loaded CI machine, where the
  // kernel freed room between Node's try and libuv's write). Such a request is
  // awaited like the others, and the writes go on until one truly waits.
  const sent: Buffer[] = [];
  const pending: Promise<void>[] = [];
  let waited = false;
  for (let i = 0; i < 64 && !waited; i++) {
    const chunk = Buffer.allocUnsafe(1024 * 1024);
    for (let j = 0; j < chunk.length; j += 4) chunk.writeUInt32BE((i << 20) + j, j);
    sent.push(chunk);
    const r = writeToHandle(handle, 0, chunk);
    if (typeof r === 'number') {
      if (r !== 0) throw new Error(`a large write failed: ${r}`);
    } else {
      r.buffer = chunk;
      waited = handle.writeQueueSize !== 0;
      pending.push(observed(completion(r)));
    }
  }
  if (!waited) throw new Error('64 MiB to a peer that does not read never waited in libuv');
  const big = Buffer.concat(sent);
  const bigRead = readBytes(pair.accepted, big.length + 5);
  // A write behind the pending one goes out after it.
  const after = writeToHandle(handle, 1, 'after');
  if (typeof after === 'number' && after !== 0) throw new Error(`a queued write failed: ${after}`);
  if (typeof after !== 'number') pending.push(observed(completion(after)));
  const settled = observed(Promise.all(pending));
  const got = await bigRead;
  await settled;
  if (!got.subarray(0, big.length).equals(big) || got.subarray(big.length).toString('latin1') !== 'after') throw new Error('a pending write arrived altered or out of order');
  if (handle.writeQueueSize !== 0) throw new Error('writeQueueSize not 0 after the last completion');
}

/** `p`, with its rejection marked handled: a probe that gives up early (closing the pair cancels the writes) must not end the process. */
function observed<T>(p: Promise<T>): Promise<T> {
  p.catch(() => {});
  return p;
}

function completion(req: PendingWrite): Promise<void> {
  return new Promise((resolve, reject) => {
    req.oncomplete = function (status: number) {
      this.oncomplete = null;
      this.buffer = null;
      if (status === 0) resolve();
      else reject(new Error(`a pending write completed with ${status}`));
    };
  });
}

/** An accepted handle re-wrapped with `onread`: reads arrive in the buffer handed out, and in order. */
async function probeReads(): Promise<boolean> {
  const pair = await openPair();
  try {
    const handed = new Set<Uint8Array>();
    const received: Buffer[] = [];
    let foreign = false;
    let total = 0;
    const payload = Buffer.allocUnsafe(256 * 1024);
    for (let i = 0; i < payload.length; i++) payload[i] = (i * 7) & 0xff;
    const all = new Promise<void>((resolve) => {
      const onread: OnRead = {
        buffer: () => {
          const b = Buffer.allocUnsafe(4096);
          handed.add(b);
          return b;
        },
        callback(nread, buffer) {
          if (!handed.has(buffer)) foreign = true;
          received.push(Buffer.from(buffer.subarray(0, nread)));
          total += nread;
          if (total >= payload.length) resolve();
          return true;
        },
      };
      const socket = rewrapHandle(pair.accepted, net.Socket, onread);
      if (socket === null) throw new Error('the accepted socket has no handle to re-wrap');
      socket.on('error', () => {});
      (pair as { accepted: net.Socket }).accepted = socket;
      socket.resume();
    });
    pair.dialed.write(payload);
    await all;
    if (foreign) throw new Error('onread handed the callback a buffer it did not ask for');
    if (!Buffer.concat(received).equals(payload)) throw new Error('reads arrived altered');
    return true;
  } finally {
    closePair(pair);
  }
}

/** The Writable hooks run before a write, a FIN and a close, and the bytes still arrive. */
async function probeWriteHooks(): Promise<boolean> {
  if (!writeHooksExist()) throw new Error('net.Socket has no _write/_writev/_final/_destroy');
  const calls: string[] = [];
  let armed = false;
  const Hooked = socketClassWithWriteHook(() => {
    if (armed) calls.push('hook');
  });
  const pair = await openPair(Hooked);
  try {
    armed = true;
    const read = new Promise<Buffer>((resolve) => {
      const chunks: Buffer[] = [];
      pair.accepted.on('data', (c: Buffer) => chunks.push(c));
      pair.accepted.on('end', () => resolve(Buffer.concat(chunks)));
      pair.accepted.resume();
    });
    pair.dialed.write('one');
    pair.dialed.end('two');
    const got = await read;
    const afterEnd = calls.length;
    if (got.toString() !== 'onetwo') throw new Error('bytes through the hooked socket arrived altered');
    if (afterEnd < 2) throw new Error(`the write hooks ran ${afterEnd} times for a write and an end`);
  } finally {
    closePair(pair);
  }
  // The close hook on a socket still open: the one above may already have been closed by
  // its peer's FIN (a busy machine lets that arrive first), and a closed socket is not closed twice.
  const open = await openPair(Hooked);
  try {
    const before = calls.length;
    open.dialed.destroy();
    if (calls.length <= before) throw new Error('the hook did not run on destroy');
    return true;
  } finally {
    closePair(open);
  }
}

/**
 * A tunnel's handles, as tunnel/handle-side.ts drives them: taken from a
 * socket that reads into buffers handed out (as wsgate's do) and from one
 * whose reads Node allocates, then reads (with their byte count and offset),
 * a write, a FIN each way (READ_EOF arrives), a close, and a reset the peer
 * sees as ECONNRESET.
 */
async function probeHandleTunnels(): Promise<void> {
  const unavailable = tunnelHandlesUnavailable();
  if (unavailable !== null) throw new Error(unavailable);
  const pair = await openPair();
  const other = await openPair();
  const open = new Set<TunnelHandle>(); // taken and not yet closed: closed whatever happens
  const closed = (h: TunnelHandle) => () => open.delete(h);
  try {
    // 1. Reads into buffers handed out: the accepted side re-wrapped with onread, one read through the socket.
    let lastHanded: Buffer = Buffer.alloc(0);
    const firstRead = new Promise<void>((resolve) => {
      const socket = rewrapHandle(pair.accepted, net.Socket, {
        buffer: () => (lastHanded = Buffer.alloc(64)),
        callback: () => {
          resolve();
          return true;
        },
      });
      if (socket === null) throw new Error('the accepted socket has no handle to re-wrap');
      socket.on('error', () => {});
      (pair as { accepted: net.Socket }).accepted = socket;
      socket.resume();
    });
    pair.dialed.write('one');
    await firstRead;
    await new Promise((resolve) => setImmediate(resolve)); // Node has asked for the next buffer
    const handle = takeableHandle(pair.accepted);
    if (handle === null) throw new Error('a socket at rest has no takeable handle');
    takeHandle(pair.accepted, handle);
    open.add(handle);
    // The next read into another buffer than the one handed out (an idle tunnel's smaller one): it must land there.
    const swapped = Buffer.alloc(64);
    if (!readNextInto(handle, swapped)) throw new Error('a taken handle cannot change its read buffer');
    lastHanded = swapped;
    const events: string[] = [];
    let eof: () => void = () => {};
    const gotEof = new Promise<void>((resolve) => (eof = resolve));
    let gotTwo: () => void = () => {};
    const two = new Promise<void>((resolve) => (gotTwo = resolve));
    if (!startReading(handle, null, () => {
      const nread = readResult();
      if (nread > 0) {
        events.push(lastHanded.toString('latin1', 0, nread));
        gotTwo();
        return (lastHanded = Buffer.alloc(64)); // the next read goes here
      }
      if (nread === READ_EOF) eof();
      else if (nread < 0) events.push(`error ${nread}`);
      return undefined;
    })) throw new Error('a taken handle did not start reading');
    pair.dialed.write('two');
    await two;
    // 2. A write and a FIN from the taken handle; the peer's FIN arrives as READ_EOF.
    const back = readUntilEnd(pair.dialed);
    const written = writeToHandle(handle, 0, Buffer.from('back'));
    if (typeof written !== 'number') await completion(written);
    else if (written !== 0) throw new Error(`a write to a taken handle gave ${written}`);
    const shutdown = await new Promise<number>((resolve) => {
      const now = shutdownHandle(handle, null, (_, status) => resolve(status));
      if (now !== 0) resolve(now === 1 ? 0 : now);
    });
    if (shutdown !== 0) throw new Error(`a shutdown gave ${shutdown}`);
    if ((await back) !== 'back') throw new Error('bytes written to a taken handle arrived altered, or no FIN');
    pair.dialed.end();
    await gotEof;
    if (events.join('|') !== 'two') throw new Error(`a taken handle read ${events.join('|')}, expected two`);
    await new Promise<void>((resolve) => closeHandle(handle, null, () => (open.delete(handle), resolve())));
    // 3. Reads Node allocates (a socket without onread), then a reset.
    await new Promise((resolve) => setImmediate(resolve));
    const plain = takeableHandle(other.dialed);
    if (plain === null) throw new Error('a connected socket has no takeable handle');
    takeHandle(other.dialed, plain);
    open.add(plain);
    const read = new Promise<string>((resolve) => {
      startReading(plain, null, (_, arrayBuffer) => {
        const nread = readResult();
        if (nread > 0 && arrayBuffer !== undefined) resolve(Buffer.from(arrayBuffer, readOffset(), nread).toString('latin1'));
        return undefined;
      });
    });
    other.accepted.resume();
    other.accepted.write('plain');
    if ((await read) !== 'plain') throw new Error('a read into a buffer Node allocated arrived altered');
    pauseReading(plain);
    const reset = new Promise<string>((resolve) => {
      other.accepted.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'));
      other.accepted.on('close', () => resolve('closed without an error'));
    });
    await new Promise<void>((resolve) => resetHandle(plain, null, () => (open.delete(plain), resolve())));
    const seen = await reset;
    if (seen !== 'ECONNRESET') throw new Error(`a reset handle's peer saw ${seen}, not ECONNRESET`);
  } finally {
    for (const h of open) closeHandle(h, h, closed(h));
    closePair(pair);
    closePair(other);
  }
}

/** All a socket reads until its peer's FIN, as latin1. */
function readUntilEnd(socket: net.Socket): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.once('end', () => resolve(Buffer.concat(chunks).toString('latin1')));
    socket.once('close', () => reject(new Error('closed before FIN')));
    socket.resume();
  });
}
