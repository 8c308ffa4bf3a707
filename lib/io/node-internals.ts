// The one module that touches Node below its public API. Everything else in
// lib/ asks here, and gets a public-API answer whenever a fast path is off.
//
// What lives here, and why each is safe:
// - Node's llhttp binding (`HTTPParser` from `_http_common`: the parser
//   node:http uses; the design keeps it), its callback slot indices and its
//   method table. No public fallback exists: if it cannot be loaded, wsgate
//   says so in one line and does not start (`parserUnavailable`).
// - A socket's libuv handle (`_handle`) and its write methods
//   (`writeBuffer`, `writeLatin1String`, `writev`) for writes below the
//   Writable (handle-writes.ts). Node changed their contract in 24.22 and 26:
//     request-object (Node 20, 22, 24 before 24.22): JavaScript builds a
//       WriteWrap, passes it in, gets an error number back; the write waits
//       in libuv when `writeQueueSize` is not 0, and `req.oncomplete` reports it.
//     null-request (Node 24.22+, 26): JavaScript passes null and gets a number
//       when the write (or its failure) finished inside the call, else a
//       request object made in C++, whose completion may already be recorded
//       in `req.writeStatus` before `oncomplete` is attached.
//   Which one this Node uses is read off a write Node itself makes (the
//   argument it hands the handle), never guessed by calling the handle with
//   the wrong one: a wrong request argument is a native assertion, not an
//   exception.
// - Re-wrapping a `pauseOnConnect` socket's handle in a socket created with
//   `onread` (net.Server has no such option), for pooled read buffers.
// - Hooks in a net.Socket's Writable implementation (`_write`, `_writev`,
//   `_final`, `_destroy`) for writes held back to the end of the turn.
//
// Each fast path is chosen by `probeFastPaths()` at gateway start: it runs the
// path once on a loopback socket pair (a write taken at once, a write left
// pending, a writev, the read path, the Writable hooks, the parser) and turns
// off whatever throws or surprises it. It never throws. Until it has run, and
// when `WSGATE_FAST_PATHS=off` is set, every fast path is off. Node's own
// `_http_server.js` feature-tests its internals the same way, with `typeof`.

import { createRequire } from 'node:module';
import net from 'node:net';

// --- the fast paths in effect -------------------------------------------------

export type WriteContract = 'request-object' | 'null-request' | 'off';

export interface FastPaths {
  /** Writes to a socket's handle, below the Writable, and which contract they follow. */
  readonly handleWrites: WriteContract;
  /** Sockets read into pooled buffers (`onread`), accepted ones re-wrapped to do so. */
  readonly pooledReads: boolean;
  /** Writes held back to the end of the event-loop turn (needs handle writes). */
  readonly turnWrites: boolean;
}

export const FAST_PATHS_OFF: FastPaths = Object.freeze({ handleWrites: 'off', pooledReads: false, turnWrites: false });

let current: FastPaths = FAST_PATHS_OFF;
/** Why each path is off, after the probe: for the start-up log line and stats(). */
let reasons: Record<string, string> = {};

/** The fast paths in effect now. */
export function fastPaths(): FastPaths {
  return current;
}

/** Why paths the probe turned off are off (empty until it ran, or when all are on). */
export function fastPathReasons(): Readonly<Record<string, string>> {
  return reasons;
}

/** `WSGATE_FAST_PATHS=off` (or `0`, `false`, `none`) forces every public-API fallback. */
export function fastPathsForcedOff(): boolean {
  const value = (process.env.WSGATE_FAST_PATHS ?? '').trim().toLowerCase();
  return value === 'off' || value === '0' || value === 'false' || value === 'none';
}

/** For tests: force a set of paths (the probe's result is restored by `probeFastPaths`). */
export function setFastPathsForTest(paths: FastPaths): void {
  current = paths;
}

// --- llhttp ---------------------------------------------------------------------

export interface NativeParser {
  initialize(type: number, resource: object, maxHeaderSize: number, lenient: number): void;
  execute(data: Buffer): number | (Error & { code: string; bytesParsed: number });
  finish(): undefined | (Error & { code: string });
  free(): void;
  close(): void;
  remove?(): void;
  [slot: number]: unknown;
}

interface NativeParserClass {
  new (): NativeParser;
  REQUEST: number;
  RESPONSE: number;
  kOnMessageBegin: number;
  kOnHeaders: number;
  kOnHeadersComplete: number;
  kOnBody: number;
  kOnMessageComplete: number;
  kLenientNone: number;
}

/** The parser's callback slots, by name. */
export interface ParserSlots {
  readonly onMessageBegin: number;
  readonly onHeaders: number;
  readonly onHeadersComplete: number;
  readonly onBody: number;
  readonly onMessageComplete: number;
}

interface LoadedParser {
  readonly Parser: NativeParserClass;
  readonly slots: ParserSlots;
  readonly methodNames: readonly string[];
}

const parserLoad: LoadedParser | Error = loadParser();

function loadParser(): LoadedParser | Error {
  try {
    const require = createRequire(import.meta.url);
    // `_http_common` is documentation-deprecated (DEP0199); should a Node make
    // that a runtime warning, this one require must not print it to users.
    // Only that warning, only during this call: nothing is hidden globally.
    const emitWarning = process.emitWarning;
    let common: { HTTPParser?: unknown; methods?: unknown };
    process.emitWarning = function filtered(this: unknown, warning: unknown, ...rest: unknown[]): void {
      const text = `${typeof warning === 'string' ? warning : (warning as Error)?.message} ${JSON.stringify(rest)}`;
      if (text.includes('DEP0199') || text.includes('_http_common')) return;
      (emitWarning as (...args: unknown[]) => void).call(process, warning, ...rest);
    } as typeof process.emitWarning;
    try {
      common = require('_http_common') as typeof common;
    } finally {
      process.emitWarning = emitWarning;
    }
    const Parser = common.HTTPParser as NativeParserClass | undefined;
    const methods = common.methods as string[] | undefined;
    if (typeof Parser !== 'function') return new Error("_http_common has no HTTPParser");
    if (!Array.isArray(methods)) return new Error('_http_common has no methods table');
    const slots: ParserSlots = {
      onMessageBegin: Parser.kOnMessageBegin,
      onHeaders: Parser.kOnHeaders,
      onHeadersComplete: Parser.kOnHeadersComplete,
      onBody: Parser.kOnBody,
      onMessageComplete: Parser.kOnMessageComplete,
    };
    for (const [name, slot] of Object.entries(slots)) {
      if (!Number.isInteger(slot)) return new Error(`HTTPParser has no callback slot ${name}`);
    }
    for (const name of ['REQUEST', 'RESPONSE', 'kLenientNone'] as const) {
      if (!Number.isInteger(Parser[name])) return new Error(`HTTPParser has no ${name}`);
    }
    for (const name of ['initialize', 'execute', 'finish', 'free', 'close'] as const) {
      if (typeof (Parser.prototype as unknown as Record<string, unknown>)[name] !== 'function') return new Error(`HTTPParser has no ${name}()`);
    }
    // llhttp's method numbers (llhttp.h HTTP_METHOD_MAP). Node's `methods` is
    // the subset http.METHODS lists: it matches llhttp only up to SOURCE (33),
    // so a later method such as QUERY (46) would read as undefined. RTSP-only
    // numbers stay empty.
    const names = methods.slice(0, 34);
    if (names[33] !== 'SOURCE' || names[1] !== 'GET') return new Error('unexpected llhttp method table');
    names[34] = 'PRI';
    names[46] = 'QUERY';
    return { Parser, slots, methodNames: names };
  } catch (err) {
    return err instanceof Error ? err : new Error(String(err));
  }
}

/**
 * Null when Node's HTTP parser is usable; else one line saying what is
 * missing on this Node, for the CLI to print before it exits.
 */
export function parserUnavailable(): string | null {
  if (!(parserLoad instanceof Error)) return null;
  return `cannot run on Node ${process.version}: its HTTP parser (HTTPParser from _http_common) is not usable: ${parserLoad.message}`;
}

function loaded(): LoadedParser {
  if (parserLoad instanceof Error) throw new Error(parserUnavailable()!);
  return parserLoad;
}

/** A new llhttp parser (callbacks unset). Throws only when `parserUnavailable()` says why. */
export function newParser(): NativeParser {
  return new (loaded().Parser)();
}

/** The callback slot indices. */
export function parserSlots(): ParserSlots {
  return loaded().slots;
}

/** `parser.initialize` for requests or responses, in strict mode (none of llhttp's lenient flags). */
export function initializeParser(parser: NativeParser, request: boolean, maxHeadSize: number): void {
  const { Parser } = loaded();
  parser.initialize(request ? Parser.REQUEST : Parser.RESPONSE, {}, maxHeadSize, Parser.kLenientNone);
}

/** The method name for llhttp's method number, or undefined. */
export function methodName(index: number): string | undefined {
  return loaded().methodNames[index];
}

// --- socket handles ---------------------------------------------------------------

/** The part of a libuv stream handle (TCPWrap, Pipe) that handle writes use. */
export interface StreamHandle {
  writeBuffer(req: object | null, data: Uint8Array): unknown;
  writeLatin1String(req: object | null, data: string): unknown;
  writev(req: object | null, chunks: unknown[], allBuffers: boolean): unknown;
  readonly writeQueueSize: number;
  readStart?(): number;
}

/** A write libuv still holds: `oncomplete(status)` runs when it is done. Fields are wsgate's own bookkeeping. */
export interface PendingWrite {
  oncomplete: ((this: PendingWrite, status: number) => void) | null;
  /** The socket written to, while the write waits. */
  socket: unknown;
  /** The read buffer the bytes live in, pinned while the write waits. */
  held: unknown;
  /** The bytes: libuv reads them from memory the GC must not free meanwhile (Node keeps `req.buffer` too). */
  buffer: unknown;
}

type HandleSocket = net.Socket & { _handle?: StreamHandle | null };

/** The socket's handle when handle writes are on and it has one; else null. */
export function writableHandle(socket: net.Socket): StreamHandle | null {
  if (current.handleWrites === 'off') return null;
  return (socket as HandleSocket)._handle ?? null;
}

/** Whether the socket has a handle (open, not yet closed); with handle writes off, whether it is open. */
export function hasHandle(socket: net.Socket): boolean {
  if (current.handleWrites === 'off') return !socket.destroyed && !socket.connecting;
  return (socket as HandleSocket)._handle != null;
}

let WriteWrap: (new () => PendingWrite) | null = null;

/**
 * One write straight to `handle`: 0 when every byte is in the kernel, a
 * negative errno when it failed, else the request libuv holds until it is
 * sent (the caller sets its `oncomplete` and fields at once, in this turn).
 * `kind` 0: one buffer, 1: one latin1 string, 2: writev of (chunk, encoding) pairs.
 */
export function writeToHandle(handle: StreamHandle, kind: 0 | 1 | 2, data: unknown): number | PendingWrite {
  if (current.handleWrites === 'null-request') {
    const ret =
      kind === 0
        ? handle.writeBuffer(null, data as Uint8Array)
        : kind === 1
          ? handle.writeLatin1String(null, data as string)
          : handle.writev(null, data as unknown[], false);
    if (typeof ret === 'number') return ret;
    const req = ret as PendingWrite & { writeStatus?: number | null };
    // Finished inside the call before anyone could attach `oncomplete`: Node records the status.
    const status = req.writeStatus;
    if (status != null) {
      req.writeStatus = null;
      return status;
    }
    return req;
  }
  // request-object: a new request per write, as in Node. One is never reused:
  // libuv may finish a write inside the call and report it a turn later, so
  // native code may still hold a request whose write looked done (it then
  // finds no `oncomplete` on it).
  const req = new WriteWrap!();
  const err = (
    kind === 0 ? handle.writeBuffer(req, data as Uint8Array) : kind === 1 ? handle.writeLatin1String(req, data as string) : handle.writev(req, data as unknown[], false)
  ) as number;
  if (err !== 0) return err;
  return handle.writeQueueSize === 0 ? 0 : req;
}

/** Bytes libuv holds for the socket's handle, not yet in the kernel (0 without a handle). */
export function handleQueueSize(socket: net.Socket): number {
  return (socket as HandleSocket)._handle?.writeQueueSize ?? 0;
}

// --- accepted sockets with pooled reads ---------------------------------------------

export interface OnRead {
  buffer: () => Uint8Array;
  callback: (this: net.Socket, nread: number, buffer: Uint8Array) => boolean;
}

/**
 * The socket a `pauseOnConnect` server accepted, re-created as a `SocketClass`
 * over the same handle with `onread`; nothing was read yet. Null (the socket
 * untouched) when pooled reads are off or the handle is not reachable.
 */
export function rewrapAccepted(accepted: net.Socket, SocketClass: typeof net.Socket, onread: OnRead): net.Socket | null {
  if (!current.pooledReads) return null;
  return rewrap(accepted, SocketClass, onread);
}

function rewrap(accepted: net.Socket, SocketClass: typeof net.Socket, onread: OnRead): net.Socket | null {
  const internal = accepted as HandleSocket;
  const handle = internal._handle;
  if (handle == null || typeof handle.readStart !== 'function') return null;
  internal._handle = null;
  accepted.destroy(); // only the wrapper: it has no handle to close; the server's count drops with it
  const options = { handle, allowHalfOpen: true, readable: true, writable: true, onread };
  return new SocketClass(options as net.SocketConstructorOpts);
}

// --- Writable hooks ---------------------------------------------------------------

type Callback = (error?: Error | null) => void;
type WritableImpl = {
  _write(chunk: unknown, encoding: BufferEncoding, callback: Callback): void;
  _writev?(chunks: Array<{ chunk: unknown; encoding: BufferEncoding }>, callback: Callback): void;
  _final(callback: Callback): void;
  _destroy(error: Error | null, callback: Callback): void;
};

const socketImpl = net.Socket.prototype as unknown as WritableImpl;
const hooksExist =
  typeof socketImpl._write === 'function' &&
  typeof socketImpl._writev === 'function' &&
  typeof socketImpl._final === 'function' &&
  typeof socketImpl._destroy === 'function';

/**
 * A net.Socket class whose Writable runs `before(socket)` ahead of each of its
 * own writes, its FIN (`_final`) and its close (`_destroy`). Where net.Socket
 * has no such methods, net.Socket itself (and the probe turns turn writes off).
 */
export function socketClassWithWriteHook(before: (socket: net.Socket) => void): typeof net.Socket {
  if (!hooksExist) return net.Socket;
  class HookedSocket extends net.Socket {}
  const proto = HookedSocket.prototype as unknown as WritableImpl;
  proto._write = function (this: net.Socket, chunk, encoding, callback) {
    before(this);
    socketImpl._write.call(this, chunk, encoding, callback);
  };
  proto._writev = function (this: net.Socket, chunks, callback) {
    before(this);
    socketImpl._writev!.call(this, chunks, callback);
  };
  proto._final = function (this: net.Socket, callback) {
    before(this);
    socketImpl._final.call(this, callback);
  };
  proto._destroy = function (this: net.Socket, error, callback) {
    before(this); // sent before the close, as they would have been without holding back
    socketImpl._destroy.call(this, error, callback);
  };
  return HookedSocket;
}

// --- the probe --------------------------------------------------------------------

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
    current = FAST_PATHS_OFF;
    reasons = { all: 'WSGATE_FAST_PATHS=off' };
    return Promise.resolve({ paths: current, reasons });
  }
  probing ??= runProbe().catch((err: unknown) => ({ paths: FAST_PATHS_OFF, reasons: { all: `probe failed: ${describe(err)}` } }));
  return probing.then((result) => {
    current = result.paths;
    reasons = { ...result.reasons };
    return result;
  });
}

/** One line for the start-up log: which paths are on. */
export function describeFastPaths(): string {
  const p = current;
  const off = Object.entries(reasons).map(([k, v]) => `${k}: ${v}`);
  return `fast paths on Node ${process.version}: handle writes ${p.handleWrites}, pooled reads ${p.pooledReads ? 'on' : 'off'}, turn writes ${p.turnWrites ? 'on' : 'off'}${off.length > 0 ? ` (${off.join('; ')})` : ''}`;
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

const PROBE_TIMEOUT_MS = 3000;

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

  let handleWrites: WriteContract = 'off';
  try {
    handleWrites = await withTimeout(probeHandleWrites(), 'handle writes');
  } catch (err) {
    found.handleWrites = describe(err);
  }
  let pooledReads = false;
  try {
    pooledReads = await withTimeout(probeReads(), 'pooled reads');
  } catch (err) {
    found.pooledReads = describe(err);
  }
  let turnWrites = false;
  if (handleWrites === 'off') {
    found.turnWrites = 'needs handle writes';
  } else {
    try {
      turnWrites = await withTimeout(probeWriteHooks(), 'turn writes');
    } catch (err) {
      found.turnWrites = describe(err);
    }
  }
  return { paths: Object.freeze({ handleWrites, pooledReads, turnWrites }), reasons: found };
}

function withTimeout<T>(work: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${PROBE_TIMEOUT_MS} ms`)), PROBE_TIMEOUT_MS);
    timer.unref();
  });
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}

/** A request and a response through the parser as head-reader.ts drives it; null when it works. */
function probeParser(): string | null {
  if (parserLoad instanceof Error) return parserLoad.message;
  try {
    const { slots } = parserLoad;
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
    server.listen(0, '127.0.0.1', () => {
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
    const handle = (pair.dialed as HandleSocket)._handle;
    if (handle == null) throw new Error('a connected socket has no _handle');
    const proto = Object.getPrototypeOf(handle) as Record<string, unknown>;
    for (const name of ['writeBuffer', 'writeLatin1String', 'writev'] as const) {
      if (typeof proto[name] !== 'function') throw new Error(`the handle has no ${name}()`);
    }
    if (typeof handle.writeQueueSize !== 'number') throw new Error('the handle has no writeQueueSize');

    // 1. Watch one write Node makes.
    let seenReq: unknown = undefined;
    let seenReturn: unknown = undefined;
    const own = handle as unknown as Record<string, unknown>;
    for (const name of ['writeBuffer', 'writeLatin1String', 'writev'] as const) {
      const original = proto[name] as (...args: unknown[]) => unknown;
      own[name] = function watch(this: unknown, req: unknown, ...rest: unknown[]): unknown {
        seenReq = req;
        seenReturn = original.call(this, req, ...rest);
        return seenReturn;
      };
    }
    const watched = readBytes(pair.accepted, 5);
    try {
      pair.dialed.write(Buffer.from('probe'));
    } finally {
      for (const name of ['writeBuffer', 'writeLatin1String', 'writev']) delete own[name];
    }
    if (!(await watched).equals(Buffer.from('probe'))) throw new Error('a watched write arrived altered');
    let contract: WriteContract;
    if (seenReq === null) {
      if (typeof seenReturn !== 'number' && (typeof seenReturn !== 'object' || seenReturn === null)) throw new Error(`handle write returned ${typeof seenReturn}`);
      contract = 'null-request';
    } else if (typeof seenReq === 'object' && seenReq !== undefined) {
      const Class = (seenReq as { constructor?: unknown }).constructor;
      if (typeof Class !== 'function' || Class === Object) throw new Error('the write request has no class of its own');
      if (typeof seenReturn !== 'number') throw new Error(`handle write returned ${typeof seenReturn} with a request object`);
      WriteWrap = Class as new () => PendingWrite;
      contract = 'request-object';
    } else {
      throw new Error(seenReq === undefined ? 'socket.write did not reach the handle' : `unexpected write request ${typeof seenReq}`);
    }

    // 2. The contract, exercised: every path of writeToHandle under it.
    const previous = current;
    current = { ...current, handleWrites: contract };
    try {
      await exerciseWrites(pair, handle);
    } finally {
      current = previous;
    }
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
  // MiB on loopback) and a write finally waits in libuv.
  const sent: Buffer[] = [];
  let r3: PendingWrite | null = null;
  for (let i = 0; i < 64 && r3 === null; i++) {
    const chunk = Buffer.allocUnsafe(1024 * 1024);
    for (let j = 0; j < chunk.length; j += 4) chunk.writeUInt32BE((i << 20) + j, j);
    sent.push(chunk);
    const r = writeToHandle(handle, 0, chunk);
    if (typeof r === 'number') {
      if (r !== 0) throw new Error(`a large write failed: ${r}`);
    } else {
      r.buffer = chunk;
      r3 = r;
    }
  }
  if (r3 === null) throw new Error('64 MiB to a peer that does not read never waited in libuv');
  if (handle.writeQueueSize === 0) throw new Error('a pending write left writeQueueSize at 0');
  const big = Buffer.concat(sent);
  const done = completion(r3);
  const bigRead = readBytes(pair.accepted, big.length + 5);
  // A write behind the pending one goes out after it.
  const after = writeToHandle(handle, 1, 'after');
  const afterDone = typeof after === 'number' ? (after === 0 ? Promise.resolve() : Promise.reject(new Error(`a queued write failed: ${after}`))) : completion(after);
  await done;
  await afterDone;
  const got = await bigRead;
  if (!got.subarray(0, big.length).equals(big) || got.subarray(big.length).toString('latin1') !== 'after') throw new Error('a pending write arrived altered or out of order');
  if (handle.writeQueueSize !== 0) throw new Error('writeQueueSize not 0 after the last completion');
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
      const socket = rewrap(pair.accepted, net.Socket, onread);
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
  if (!hooksExist) throw new Error('net.Socket has no _write/_writev/_final/_destroy');
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
    pair.dialed.destroy();
    if (got.toString() !== 'onetwo') throw new Error('bytes through the hooked socket arrived altered');
    if (afterEnd < 2) throw new Error(`the write hooks ran ${afterEnd} times for a write and an end`);
    if (calls.length <= afterEnd) throw new Error('the hook did not run on destroy');
    return true;
  } finally {
    closePair(pair);
  }
}
