// Pooled read buffers (net `onread`) for upstream sockets and for the sockets
// wsgate accepts itself. By default every socket read gets a fresh ArrayBuffer;
// V8 frees those lazily, as external memory, so relaying 128 MiB between a fast
// and a slow peer left 70+ MiB of dead read buffers on Node 24. Here a socket
// reads into a buffer it keeps, and a buffer is read into again only when
// nothing refers to it any more:
// - a write that forwards a slice of it (`writeHeld`) pins it until the write
//   completes (a write the kernel took at once pins nothing);
// - a slice kept for later (a queued body piece, bytes after an upgrade head)
//   is copied out (`retainRead`): those are rare and short;
// - llhttp copies bodies out itself, so what it reads needs neither.
//
// Each socket owns a buffer sized to its reads: a 1 KiB slice of a shared slab
// at first (an idle tunnel holds two of them, not two 64 KiB buffers), grown
// by powers of two up to 16 KiB to hold the reads it sees. A read that fills
// it (more is waiting) or finds it pinned moves the socket to a 64 KiB buffer
// from a free list; a read that leaves room in that one (the burst paused)
// moves it back to its own, grown if that read would not have fitted. So a
// socket holds a pooled 64 KiB buffer only while reads keep filling it: one
// that goes idle after a burst or a large message keeps at most 16 KiB (nginx
// keeps its 4-8 KiB proxy_buffer_size per side). Messages up to 8 KiB take one
// read each into the socket's own buffer.
//
// Which buffer a chunk pins is told by the chunk itself: every read buffer's
// memory is tagged with its ReadBuffer (a 1 KiB one by its slot in the slab),
// so `writeHeld`, `retainRead` and the handle writes find it from the bytes,
// with no module-level "read being dispatched" mode. Each socket's buffer
// generator is its own (`onreadFor`): Node asks it for the next buffer right
// after a read, and it looks at that socket's last read.

import net from 'node:net';
import { fastPaths, readNextInto, rewrapAccepted, type TunnelHandle } from './node-internals.js';
import { guard } from '../core/guard.js';
import { initSocketFields, kHeld, kOwnBuffer, kReadBuffer, ownerOfSocket } from './socket-fields.js';

const BIG_SIZE = 64 * 1024; // what libuv asks for per read; one read fills at most this
const SMALL_SIZE = 1024; // a socket's first own buffer: a chat message, a small frame, most request heads
const TINY_SIZE = 256; // what an idle tunnel's handle keeps (shrinkIdleReadBuffer): a chat message or a ping
const OWN_MAX = 16 * 1024; // an own buffer grows up to this; larger reads use pooled big buffers
const SLAB_SIZE = 64 * 1024; // 1 KiB and 256 B own buffers are cut from shared slabs of this size
const MAX_FREE = 32; // 2 MiB of big buffers kept for reuse; more are left to the GC
const MAX_FREE_SMALL = 1024; // 1 MiB of 1 KiB slots given up by tunnels (shrinkIdleReadBuffer), for new connections' heads

const kOwner = Symbol('wsgate read buffers of this memory');
const kSlot = Symbol('wsgate slab slot size');

class ReadBuffer {
  /** Writes of a slice of `bytes` that have not completed. */
  pending = 0;
  /** Bytes the last read into it brought (a full one means more is waiting). */
  lastRead = 0;
  /** A socket still reads into it (an own buffer: still owned by its socket). */
  reading = true;
  /** An own buffer a read filled: the socket outgrew it. */
  filled = false;
  constructor(
    readonly bytes: Buffer,
    /** A socket's own buffer, never pooled; else a pooled 64 KiB one. */
    readonly own: boolean,
  ) {
    const memory = bytes.buffer as TaggedMemory;
    if (bytes.byteLength !== memory.byteLength) {
      // A slot of a shared slab (all of one size): the slab's memory lists its slots.
      memory[kSlot] = bytes.length;
      ((memory[kOwner] as ReadBuffer[] | undefined) ?? (memory[kOwner] = []))[bytes.byteOffset / bytes.length] = this;
    } else {
      memory[kOwner] = this;
    }
  }
}

type TaggedMemory = ArrayBufferLike & { [kOwner]?: ReadBuffer | ReadBuffer[]; [kSlot]?: number };

/** The read buffer `chunk` is a slice of, or null: any other bytes (llhttp's copies, Node's own reads, our strings). */
function readBufferOf(chunk: Uint8Array): ReadBuffer | null {
  const memory = chunk.buffer as TaggedMemory;
  const tag = memory[kOwner];
  if (tag === undefined) return null;
  if (!Array.isArray(tag)) return tag;
  return tag[Math.floor(chunk.byteOffset / memory[kSlot]!)] ?? null;
}

const free: ReadBuffer[] = [];

/** What reads into pooled buffers: a socket, or a tunnel side that took a socket's handle (tunnel/handle-side.ts). */
export interface ReadHolder {
  [kReadBuffer]?: ReadBuffer;
  [kOwnBuffer]?: ReadBuffer;
}

type ReadingSocket = net.Socket & ReadHolder;

let created = 0;

/** Where own buffers of one slot size are cut from: a shared slab, used up front to back. */
class Slab {
  bytes: Buffer = Buffer.alloc(0);
  used = 0;
  constructor(readonly slot: number) {}
  take(): ReadBuffer {
    if (this.used + this.slot > this.bytes.length) {
      this.bytes = Buffer.allocUnsafeSlow(SLAB_SIZE); // freed by the GC with the last holder that reads into it
      this.used = 0;
    }
    const rb = new ReadBuffer(this.bytes.subarray(this.used, this.used + this.slot), true);
    this.used += this.slot;
    return rb;
  }
}

const smallSlab = new Slab(SMALL_SIZE);
const tinySlab = new Slab(TINY_SIZE);
/** 1 KiB slots that tunnels gave up, nothing referring to them: the next connections read their heads into them. */
const freeSmall: ReadBuffer[] = [];

function takeBig(): ReadBuffer {
  let rb = free.pop();
  if (rb === undefined) {
    rb = new ReadBuffer(Buffer.allocUnsafeSlow(BIG_SIZE), false);
    created++;
  }
  rb.reading = true;
  return rb;
}

/** A new own buffer of at least `size` bytes: up to 1 KiB cut from a shared slab (256 B or 1 KiB slots). */
function takeOwn(size: number): ReadBuffer {
  if (size > SMALL_SIZE) return new ReadBuffer(Buffer.allocUnsafeSlow(size), true);
  if (size <= TINY_SIZE) return tinySlab.take();
  const reused = freeSmall.pop();
  if (reused === undefined) return smallSlab.take();
  reused.lastRead = 0;
  reused.reading = true;
  reused.filled = false;
  return reused;
}

/** A big buffer nobody reads into or writes from: back to the free list. Own ones stay with their socket. */
function recycle(rb: ReadBuffer): void {
  if (!rb.own && free.length < MAX_FREE) free.push(rb);
}

/** The socket stops reading into its big buffer `rb`: recycled now, or when its last write completes. */
function leaveBig(rb: ReadBuffer): void {
  rb.reading = false;
  if (rb.pending === 0) recycle(rb);
}

/**
 * The socket's own buffer for its next read, after a read of `nread` bytes
 * into a big one left room: twice the size if a read filled it before (the
 * message did not fit), larger still if this read would fill it, and a new
 * one if a pending write still pins it.
 */
function ownAfter(socket: ReadHolder, nread: number): ReadBuffer {
  const own = socket[kOwnBuffer];
  let size = own === undefined ? SMALL_SIZE : own.filled ? Math.min(OWN_MAX, own.bytes.length * 2) : own.bytes.length;
  while (size <= nread && size < OWN_MAX) size *= 2; // a read must leave room: then it took all there was
  if (own !== undefined && own.bytes.length === size && own.pending === 0) {
    own.filled = false;
    return own;
  }
  // The old one is left to the GC once the writes that pin it are done.
  const next = takeOwn(size);
  socket[kOwnBuffer] = next;
  return next;
}

/**
 * The buffer `socket`'s next read goes into: Node asks once when the socket
 * starts reading and then after every read callback.
 */
function nextReadBuffer(socket: ReadHolder | null): Buffer {
  // First read of a socket (still being built): claimed by its first callback.
  if (socket === null) return takeOwn(SMALL_SIZE).bytes;
  const current = socket[kReadBuffer];
  if (current === undefined) return takeOwn(SMALL_SIZE).bytes; // released already: never throw inside node's read path
  const lastReadLength = current.lastRead;
  if (current.own) {
    // A read that leaves room took all there was; a full one means more is waiting.
    if (lastReadLength < current.bytes.length) {
      if (current.pending === 0) return current.bytes;
    } else {
      current.filled = true;
    }
  } else {
    if (lastReadLength < BIG_SIZE) {
      leaveBig(current);
      const own = ownAfter(socket, lastReadLength);
      socket[kReadBuffer] = own;
      return own.bytes;
    }
    if (current.pending === 0) return current.bytes;
    leaveBig(current);
  }
  const next = takeBig();
  socket[kReadBuffer] = next;
  return next.bytes;
}

/** Runs `dispatch(chunk)` for one read of `nread` bytes into `buffer`; writes of its bytes go through `writeHeld`. */
export function dispatchRead<S extends net.Socket>(target: S, nread: number, buffer: Buffer, dispatch: (socket: S, chunk: Buffer) => void): void {
  const socket = target as S & ReadingSocket;
  let rb = socket[kReadBuffer];
  if (rb === undefined || rb.bytes !== buffer) {
    rb = readBufferOf(buffer)!; // Node hands the callback the very buffer it read into
    socket[kReadBuffer] = rb;
    if (rb.own) socket[kOwnBuffer] = rb; // its first read: the buffer it keeps
  }
  rb.lastRead = nread; // set first: the next buffer is asked for even if the dispatch throws
  dispatch(socket, buffer.subarray(0, nread));
}

/**
 * The `onread` option for one socket: pooled buffers from its own generator,
 * reads to `callback`. `socketOf` gives the socket once it exists (Node asks
 * for the first buffer while constructing it).
 */
export function onreadFor(
  socketOf: () => net.Socket | undefined,
  callback: (this: net.Socket, nread: number, buffer: Uint8Array) => boolean,
): { buffer: () => Buffer; callback: (this: net.Socket, nread: number, buffer: Uint8Array) => boolean } {
  return { buffer: () => nextReadBuffer((socketOf() as ReadingSocket | undefined) ?? null), callback };
}

/** The socket (or handle) closed: its big read buffer returns to the pool once its writes are done. */
export function releaseReadBuffer(holder: net.Socket | ReadHolder): void {
  const socket = holder as ReadHolder;
  const rb = socket[kReadBuffer];
  if (rb === undefined) return;
  socket[kReadBuffer] = undefined;
  socket[kOwnBuffer] = undefined;
  if (!rb.own) leaveBig(rb);
}

// --- a tunnel's handle taken from its socket (tunnel/handle-side.ts) ---------------

/**
 * Moves the socket's read buffers to `to`, which reads from the socket's
 * handle from now on. True when the socket read into pooled buffers: the
 * handle's next read then goes into `to`'s current buffer (Node asked the
 * socket's generator for it after its last read); false when Node allocates
 * each read.
 */
export function moveReadBuffers(from: net.Socket, to: ReadHolder): boolean {
  const socket = from as ReadingSocket;
  to[kReadBuffer] = socket[kReadBuffer];
  to[kOwnBuffer] = socket[kOwnBuffer];
  socket[kReadBuffer] = undefined;
  socket[kOwnBuffer] = undefined;
  return to[kReadBuffer] !== undefined;
}

/**
 * A tunnel's taken handle, at rest, reads next into a 256 B own buffer
 * instead of the 1 KiB (or larger) one its socket read its HTTP head or its
 * last message into: an idle tunnel keeps 512 B of read buffers, not 2 KiB or
 * more. Its own buffer grows again with its reads as a socket's does. Left as
 * it is when its buffer is not an own one (reads are coming), a write still
 * pins it, or the handle cannot change buffers. A 1 KiB slot given up goes to
 * the next connection that reads a head: memory freed to the allocator stays
 * in the process's RSS, memory reused does not grow it.
 */
export function shrinkIdleReadBuffer(holder: ReadHolder, handle: TunnelHandle): void {
  const current = holder[kReadBuffer];
  if (current === undefined || !current.own || current.pending !== 0 || current.bytes.length <= TINY_SIZE) return;
  const tiny = tinySlab.take();
  if (!readNextInto(handle, tiny.bytes)) return;
  holder[kReadBuffer] = tiny;
  holder[kOwnBuffer] = tiny;
  // Nothing refers to it now: no write pins it, and the handle reads into the tiny one.
  if (current.bytes.length === SMALL_SIZE && freeSmall.length < MAX_FREE_SMALL) freeSmall.push(current);
}

/** The bytes one read of `nread` brought into `holder`'s current buffer (a pooled-read holder). */
export function readInto(holder: ReadHolder, nread: number): Buffer {
  const rb = holder[kReadBuffer]!;
  rb.lastRead = nread;
  return rb.bytes.subarray(0, nread);
}

/** The buffer `holder`'s next read goes into, after a read: as for a socket's own generator. */
export function nextBufferFor(holder: ReadHolder): Buffer {
  return nextReadBuffer(holder);
}

/** A read buffer pinned by one write that waits (handle-writes.ts). */
export type HeldReadBuffer = ReadBuffer;

/**
 * Pins the read buffer that a write's bytes are a slice of, for a write that
 * did not complete inside its call or is held back to the end of the turn
 * (turn-writes.ts), when the socket may be reading into it again. `bytes`: a
 * buffer, or pieces (strings and buffers, in any order). The bytes of one
 * write come from one read at most (what is kept longer is copied:
 * `retainRead`). Null when they pin nothing.
 */
export function holdReadBuffer(bytes: unknown): HeldReadBuffer | null {
  if (bytes instanceof Uint8Array) return pin(readBufferOf(bytes));
  if (!Array.isArray(bytes)) return null;
  for (let i = 0; i < bytes.length; i++) {
    const piece: unknown = bytes[i];
    if (piece instanceof Uint8Array) {
      const rb = readBufferOf(piece);
      if (rb !== null) return pin(rb);
    }
  }
  return null;
}

function pin(rb: ReadBuffer | null): ReadBuffer | null {
  if (rb !== null) rb.pending++;
  return rb;
}

/** That write completed (or failed: the buffer is then left to the GC). */
export function releaseHeld(rb: HeldReadBuffer, failed: boolean): void {
  if (--rb.pending === 0 && !rb.reading && !failed) recycle(rb);
}

/** A write that completed inside write(): its buffer was released there. */
const RELEASED = new ReadBuffer(Buffer.alloc(0), true);

/** Completed writes of held slices, in write order (a Writable completes writes in order). */
class HeldWrites {
  readonly buffers: ReadBuffer[] = [];
  readonly onWritten = (err?: Error | null): void => {
    const rb = this.buffers.shift()!;
    // After a failed write the memory is no longer read by the kernel either,
    // but a buffer that saw an error is simply left to the GC.
    if (rb !== RELEASED) releaseHeld(rb, !!err);
  };
}

type HoldingSocket = net.Socket & { [kHeld]?: HeldWrites };

/**
 * `dest.write(chunk)`; when `chunk` is a slice of a read buffer, that buffer
 * is not read into again until this write completes.
 */
export function writeHeld(dest: net.Socket, chunk: Buffer): boolean {
  const rb = readBufferOf(chunk);
  if (rb === null) return dest.write(chunk);
  const socket = dest as HoldingSocket;
  const held = (socket[kHeld] ??= new HeldWrites());
  rb.pending++;
  held.buffers.push(rb);
  const roomLeft = socket.write(chunk, held.onWritten);
  // Nothing queued means the kernel took the bytes during write(): nothing
  // refers to them any more, so the buffer may be read into again at once,
  // before the callback (which Node defers to the next tick) says so.
  if (socket.writableLength === 0) {
    rb.pending--;
    held.buffers[held.buffers.length - 1] = RELEASED;
  }
  return roomLeft;
}

/** A slice to keep past the read's dispatch: copied out of a read buffer, else returned as is. */
export function retainRead(chunk: Buffer): Buffer {
  return readBufferOf(chunk) !== null ? Buffer.from(chunk) : chunk;
}

// Reads of an accepted socket become 'data' events, as without `onread`: the
// connection and then the tunnel listen for them.
function acceptedOnRead(this: net.Socket, nread: number, buffer: Uint8Array): boolean {
  dispatchRead(this, nread, buffer as Buffer, emitData);
  return true;
}
function emitData(socket: net.Socket, chunk: Buffer): void {
  socket.emit('data', chunk);
}
function acceptedOnClose(this: net.Socket): void {
  releaseReadBuffer(this);
}

/**
 * The socket a `pauseOnConnect` server accepted, re-created (as a
 * `SocketClass`) over the same handle with `onread`, so that its reads use
 * pooled buffers too (node-internals.ts). Nothing was read yet. With pooled
 * reads off, the socket itself, reading as usual.
 */
export function withPooledReads(accepted: net.Socket, SocketClass: typeof net.Socket = net.Socket): net.Socket {
  let wrapped: net.Socket | undefined;
  const socket = (wrapped = rewrapAccepted(accepted, SocketClass, onreadFor(() => wrapped, ACCEPTED_ONREAD)) ?? undefined) ?? null;
  if (socket === null) {
    accepted.resume();
    return initSocketFields(accepted);
  }
  initSocketFields(socket);
  socket.on('close', acceptedOnCloseGuarded); // not `once`: its bound wrapper would stay for the socket's life
  return socket;
}

const ACCEPTED_ONREAD = guard('accepted', 'read', acceptedOnRead, ownerOfSocket) as (this: net.Socket, nread: number, buffer: Uint8Array) => boolean;
const acceptedOnCloseGuarded = guard('accepted', 'close', acceptedOnClose, ownerOfSocket);

/**
 * A new socket of `SocketClass` for wsgate to dial: with pooled reads on, it
 * reads into pooled buffers and hands each read to `onRead` (Node then emits
 * no 'data'); with them off it reads as usual, into 'data' events. `pooled`
 * says which.
 */
export function newDialSocket<S extends net.Socket>(
  SocketClass: new (options: net.SocketConstructorOpts) => S,
  options: net.SocketConstructorOpts,
  onRead: (this: net.Socket, nread: number, buffer: Uint8Array) => boolean,
): { socket: S; pooled: boolean } {
  const pooled = fastPaths().pooledReads;
  if (!pooled) return { socket: new SocketClass(options), pooled };
  let socket: S | undefined;
  socket = new SocketClass({ ...options, onread: onreadFor(() => socket, onRead) } as net.SocketConstructorOpts);
  return { socket, pooled };
}

/** Pool figures, for tests and benchmarks. */
export function readBufferStats(): { free: number; created: number } {
  return { free: free.length, created }; // big buffers: free now, created since start
}
