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
// - A tunnel's two TCP handles taken from their sockets, which are then let
//   go (tunnel/handle-side.ts): reads through the handle's `onread` with the
//   byte count from Node's `streamBaseState` (`process.binding('stream_wrap')`),
//   FIN by a `ShutdownWrap`, abortive close by `reset`, close by `close`;
//   an idle one's next read moved to a smaller buffer by `useUserBuffer`.
//   An idle tunnel then costs its two handles, not two net.Sockets.
//
// Each fast path is chosen by `probeFastPaths()` (probe.ts) at gateway start: it runs the
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
  /** Tunnels that keep only their two TCP handles once running (needs handle writes). */
  readonly handleTunnels: boolean;
}

export const FAST_PATHS_OFF: FastPaths = Object.freeze({ handleWrites: 'off', pooledReads: false, turnWrites: false, handleTunnels: false });

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

const PATH_NAMES: Readonly<Record<string, keyof FastPaths>> = {
  'handle-writes': 'handleWrites',
  'pooled-reads': 'pooledReads',
  'turn-writes': 'turnWrites',
  'handle-tunnels': 'handleTunnels',
};

/**
 * The paths `WSGATE_FAST_PATHS` turns off one by one: a comma-separated list
 * of `no-handle-writes`, `no-pooled-reads`, `no-turn-writes`, `no-handle-tunnels` (for an A/B of one
 * path, or to step around one that misbehaves on some Node). Other words are
 * ignored.
 */
export function fastPathsTurnedOff(): ReadonlySet<keyof FastPaths> {
  const off = new Set<keyof FastPaths>();
  for (const word of (process.env.WSGATE_FAST_PATHS ?? '').toLowerCase().split(',')) {
    const name = word.trim();
    if (name.startsWith('no-') && Object.hasOwn(PATH_NAMES, name.slice(3))) off.add(PATH_NAMES[name.slice(3)]);
  }
  return off;
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

/**
 * Runs `work` with Node's warnings that mention one of `words` dropped: only
 * those, only during this call; nothing is hidden globally.
 */
function quietly<T>(words: readonly string[], work: () => T): T {
  const emitWarning = process.emitWarning;
  process.emitWarning = function filtered(this: unknown, warning: unknown, ...rest: unknown[]): void {
    const text = `${typeof warning === 'string' ? warning : (warning as Error)?.message} ${JSON.stringify(rest)}`;
    if (words.some((word) => text.includes(word))) return;
    (emitWarning as (...args: unknown[]) => void).call(process, warning, ...rest);
  } as typeof process.emitWarning;
  try {
    return work();
  } finally {
    process.emitWarning = emitWarning;
  }
}

function loadParser(): LoadedParser | Error {
  try {
    const require = createRequire(import.meta.url);
    // `_http_common` is documentation-deprecated (DEP0199); should a Node make
    // that a runtime warning, this one require must not print it to users.
    const common = quietly(['DEP0199', '_http_common'], () => require('_http_common') as { HTTPParser?: unknown; methods?: unknown });
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

/** The socket's handle when handle writes are on and it has one (a plain TCP socket); else null. */
export function writableHandle(socket: net.Socket): StreamHandle | null {
  // A TLS socket's handle takes plaintext to encrypt; the probe checked plain TCP handles only.
  if (current.handleWrites === 'off' || (socket as { encrypted?: boolean }).encrypted === true) return null;
  return (socket as HandleSocket)._handle ?? null;
}

/** Whether the socket has a handle: it is open and not yet closed. */
export function hasHandle(socket: net.Socket): boolean {
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

// --- tunnels on handles --------------------------------------------------------------

/** A TCP handle taken from its socket for a tunnel (tunnel/handle-side.ts drives it through the functions below). */
export interface TunnelHandle extends StreamHandle {
  onread: ((this: TunnelHandle, arrayBuffer: ArrayBuffer | undefined) => Uint8Array | undefined) | null;
  readStart(): number;
  readStop(): number;
  shutdown(req: object): number;
  close(callback?: () => void): void;
  reset?(callback: () => void): number;
}

interface StreamWrapBinding {
  streamBaseState: Int32Array;
  kReadBytesOrError: number;
  kArrayBufferOffset: number;
  ShutdownWrap: new () => ShutdownRequest;
}

interface ShutdownRequest {
  oncomplete: ((this: ShutdownRequest, status: number) => void) | null;
  handle: unknown;
  callback: () => void;
  owner: unknown;
  done: ((owner: unknown, status: number) => void) | null;
}

/** libuv's end-of-stream read result (UV_EOF), the same on every platform; the probe sees it arrive. */
export const READ_EOF = -4095;

let streamWrap: StreamWrapBinding | Error | null = null;

function loadStreamWrap(): StreamWrapBinding | Error {
  try {
    // process.binding is deprecated (DEP0111: a warning under --pending-deprecation); this one call must not print it.
    const binding = quietly(['DEP0111', 'process.binding'], () =>
      (process as unknown as { binding(name: string): Partial<StreamWrapBinding> }).binding('stream_wrap'),
    );
    if (!(binding.streamBaseState instanceof Int32Array)) return new Error("stream_wrap has no streamBaseState");
    if (!Number.isInteger(binding.kReadBytesOrError) || !Number.isInteger(binding.kArrayBufferOffset)) return new Error('stream_wrap has no read result slots');
    if (typeof binding.ShutdownWrap !== 'function') return new Error('stream_wrap has no ShutdownWrap');
    return binding as StreamWrapBinding;
  } catch (err) {
    return err instanceof Error ? err : new Error(String(err));
  }
}

/** Null when tunnels can drive handles on this Node (read results and shutdown requests are reachable); else why not. */
export function tunnelHandlesUnavailable(): string | null {
  streamWrap ??= loadStreamWrap();
  return streamWrap instanceof Error ? streamWrap.message : null;
}

/** The byte count (> 0), 0, or negative errno (READ_EOF at FIN) of the read an `onread` is called for. */
export function readResult(): number {
  const binding = streamWrap as StreamWrapBinding;
  return binding.streamBaseState[binding.kReadBytesOrError];
}

/** Where in the `arrayBuffer` handed to `onread` the read's bytes start (reads into buffers Node allocates). */
export function readOffset(): number {
  const binding = streamWrap as StreamWrapBinding;
  return binding.streamBaseState[binding.kArrayBufferOffset];
}

type TakeableSocket = HandleSocket & { _readableState?: { ended?: boolean; length?: number } };

/**
 * The socket's handle when a tunnel may take it now: a plain TCP socket,
 * open, connected, whose reads Node has handed out entirely (no FIN read and
 * not yet emitted) and whose writes are all in the kernel. Null otherwise,
 * and whenever handle tunnels are off.
 */
export function takeableHandle(socket: net.Socket): TunnelHandle | null {
  if (!current.handleTunnels || (socket as { encrypted?: boolean }).encrypted === true) return null;
  const internal = socket as TakeableSocket;
  const handle = internal._handle as (TunnelHandle & Record<symbol, unknown>) | null | undefined;
  if (handle == null || socket.destroyed || socket.connecting || socket.writableEnded || socket.writableLength !== 0) return null;
  const state = internal._readableState;
  if (state === undefined || state.ended !== false || state.length !== 0) return null;
  if (handle.writeQueueSize !== 0 || typeof handle.readStart !== 'function' || typeof handle.readStop !== 'function') return null;
  if (typeof handle.shutdown !== 'function' || typeof handle.close !== 'function') return null;
  return ownerSymbolOf(handle, socket) === undefined ? null : handle;
}

/** The symbol under which Node keeps the handle's socket (`owner_symbol`), if it holds `socket` there. */
function ownerSymbolOf(handle: object, socket: net.Socket): symbol | undefined {
  for (const symbol of Object.getOwnPropertySymbols(handle)) {
    if (symbol.description === 'owner_symbol') return (handle as Record<symbol, unknown>)[symbol] === socket ? symbol : undefined;
  }
  return undefined;
}

/**
 * Takes the handle `takeableHandle` returned from its socket: the handle no
 * longer knows the socket, the socket has no handle, loses every listener
 * and is destroyed (which closes nothing: it has no handle), so the GC takes
 * it. From here the caller owns the handle, not reading: start its reads, close it.
 */
export function takeHandle(socket: net.Socket, handle: TunnelHandle): void {
  const owner = ownerSymbolOf(handle, socket);
  if (owner !== undefined) (handle as unknown as Record<symbol, unknown>)[owner] = null;
  handle.readStop(); // reads wait in the kernel until startReading
  (socket as HandleSocket)._handle = null;
  socket.removeAllListeners();
  socket.on('error', () => {});
  socket.destroy();
}

/**
 * The next read of a taken handle whose reads go into buffers handed out
 * (it was a socket's with `onread`) goes into `buffer`, not the one handed
 * out after its last read: Node's `useUserBuffer`, which puts a listener
 * with `buffer` over the handle's current one (that one stays, unused, until
 * the handle closes). Native code keeps only the address: the caller keeps
 * `buffer` alive while the handle may read into it. False when the handle
 * cannot; never throws.
 */
export function readNextInto(handle: TunnelHandle, buffer: Uint8Array): boolean {
  const use = (handle as { useUserBuffer?: unknown }).useUserBuffer;
  if (typeof use !== 'function') return false;
  try {
    use.call(handle, buffer);
    return true;
  } catch {
    return false;
  }
}

const kReader = Symbol('wsgate reader of this handle');
const kOnRead = Symbol('wsgate read callback of this handle');
type ReadingHandle = TunnelHandle & { [kReader]: unknown; [kOnRead]: (owner: unknown, arrayBuffer: ArrayBuffer | undefined) => Uint8Array | undefined };

/** Node calls a handle's `onread` with the handle as `this`: to its reader. */
function handleOnRead(this: TunnelHandle, arrayBuffer: ArrayBuffer | undefined): Uint8Array | undefined {
  const handle = this as ReadingHandle;
  return handle[kOnRead](handle[kReader], arrayBuffer);
}

/**
 * Reads of a taken handle go to `onread(owner, arrayBuffer)` (it returns the
 * next buffer, when reads go into buffers handed out; `readResult()` says what
 * the read brought); true when reading started.
 */
export function startReading<O>(handle: TunnelHandle, owner: O, onread: (owner: O, arrayBuffer: ArrayBuffer | undefined) => Uint8Array | undefined): boolean {
  const reading = handle as ReadingHandle;
  reading[kReader] = owner;
  reading[kOnRead] = onread as ReadingHandle[typeof kOnRead];
  handle.onread = handleOnRead;
  return handle.readStart() === 0;
}

export function resumeReading(handle: TunnelHandle): void {
  handle.readStart();
}

export function pauseReading(handle: TunnelHandle): void {
  handle.readStop();
}

/** Bytes libuv holds for the handle, not yet in the kernel. */
export function queuedBytes(handle: TunnelHandle): number {
  return handle.writeQueueSize;
}

function shutdownOnComplete(this: ShutdownRequest, status: number): void {
  const done = this.done!;
  const owner = this.owner;
  this.done = null;
  this.owner = null;
  this.oncomplete = null;
  done(owner, status);
}

/**
 * Sends FIN once the writes queued on the handle are out (uv_shutdown):
 * 0 and `done(owner, status)` later, or a number now: 1 when it finished at
 * once, else a negative errno.
 */
export function shutdownHandle<T>(handle: TunnelHandle, owner: T, done: (owner: T, status: number) => void): number {
  try {
    const req = new (streamWrap as StreamWrapBinding).ShutdownWrap();
    req.oncomplete = shutdownOnComplete;
    req.handle = handle;
    req.callback = () => {};
    req.owner = owner;
    req.done = done as (owner: unknown, status: number) => void;
    return handle.shutdown(req);
  } catch {
    return -1; // EPERM: the caller closes the handle instead
  }
}

/** Closes the handle; `done(owner)` once libuv has. */
export function closeHandle<T>(handle: TunnelHandle, owner: T, done: (owner: T) => void): void {
  handle.readStop();
  handle.close(() => done(owner));
}

/** Closes the handle with a reset (RST, as a socket's `resetAndDestroy`), or plainly where that fails; `done(owner)` once closed. */
export function resetHandle<T>(handle: TunnelHandle, owner: T, done: (owner: T) => void): void {
  handle.readStop();
  try {
    if (typeof handle.reset === 'function' && handle.reset(() => done(owner)) === 0) return;
  } catch {
    // a Node without reset(): close plainly
  }
  handle.close(() => done(owner));
}

// --- for the start-up probe (probe.ts) -------------------------------------------

/** Puts the probe's choice in effect, with why each path that is off is off. */
export function applyFastPaths(paths: FastPaths, why: Record<string, string>): void {
  current = paths;
  reasons = { ...why };
}

/** Why Node's HTTP parser could not be loaded, or null. */
export function parserLoadError(): string | null {
  return parserLoad instanceof Error ? parserLoad.message : null;
}

/** Whether net.Socket has the Writable methods `socketClassWithWriteHook` hooks. */
export function writeHooksExist(): boolean {
  return hooksExist;
}

const WRITE_METHODS = ['writeBuffer', 'writeLatin1String', 'writev'] as const;

/** The handle of a connected socket, for the probe's own writes; throws when it has none or lacks the write methods. */
export function probeHandle(socket: net.Socket): StreamHandle {
  const handle = (socket as HandleSocket)._handle;
  if (handle == null) throw new Error('a connected socket has no _handle');
  const proto = Object.getPrototypeOf(handle) as Record<string, unknown>;
  for (const name of WRITE_METHODS) {
    if (typeof proto[name] !== 'function') throw new Error(`the handle has no ${name}()`);
  }
  if (typeof handle.writeQueueSize !== 'number') throw new Error('the handle has no writeQueueSize');
  return handle;
}

/**
 * Which write contract this Node uses, read off the request argument Node
 * itself hands `handle` during `write()` (one plain socket.write the caller
 * makes); on a request-object Node the request class is learnt too. Throws on
 * anything unexpected.
 */
export function watchWriteContract(handle: StreamHandle, write: () => void): WriteContract {
  let seenReq: unknown = undefined;
  let seenReturn: unknown = undefined;
  const proto = Object.getPrototypeOf(handle) as Record<string, unknown>;
  const own = handle as unknown as Record<string, unknown>;
  for (const name of WRITE_METHODS) {
    const original = proto[name] as (...args: unknown[]) => unknown;
    own[name] = function watch(this: unknown, req: unknown, ...rest: unknown[]): unknown {
      seenReq = req;
      seenReturn = original.call(this, req, ...rest);
      return seenReturn;
    };
  }
  try {
    write();
  } finally {
    for (const name of WRITE_METHODS) delete own[name];
  }
  if (seenReq === null) {
    if (typeof seenReturn !== 'number' && (typeof seenReturn !== 'object' || seenReturn === null)) throw new Error(`handle write returned ${typeof seenReturn}`);
    return 'null-request';
  }
  if (typeof seenReq === 'object' && seenReq !== undefined) {
    const Class = (seenReq as { constructor?: unknown }).constructor;
    if (typeof Class !== 'function' || Class === Object) throw new Error('the write request has no class of its own');
    if (typeof seenReturn !== 'number') throw new Error(`handle write returned ${typeof seenReturn} with a request object`);
    WriteWrap = Class as new () => PendingWrite;
    return 'request-object';
  }
  throw new Error(seenReq === undefined ? 'socket.write did not reach the handle' : `unexpected write request ${typeof seenReq}`);
}

/** Runs `work` with `paths` in effect (the probe tries a path before turning it on), then puts back what was in effect. */
export async function withFastPaths(paths: Partial<FastPaths>, work: () => Promise<void>): Promise<void> {
  const previous = current;
  current = { ...current, ...paths };
  try {
    await work();
  } finally {
    current = previous;
  }
}

/** `rewrapAccepted` whatever the fast paths in effect: the probe tries it before turning it on. */
export function rewrapHandle(accepted: net.Socket, SocketClass: typeof net.Socket, onread: OnRead): net.Socket | null {
  return rewrap(accepted, SocketClass, onread);
}
