// Tunnel chunks and HTTP heads and bodies written straight to a socket's
// libuv handle, below the Writable.
//
// A net.Socket write() goes through the Writable (state, a callback, a
// nextTick to report it), then builds a request object per write and hands
// the bytes to the handle, which tries the write at once. For a tunnel's small
// frames the kernel nearly always takes the bytes inside that call, so all the
// machinery around it is pure cost: profiles of the `small` benchmark put the
// Writable at about half of wsgate's JavaScript per message.
//
// Here a chunk goes to `handle.writeBuffer(req, chunk)` directly whenever the
// socket's Writable holds nothing (so nothing queued there can be overtaken):
// - taken whole inside the call (the queue on the handle stays empty): done;
// - not taken whole: libuv keeps the rest and sends it before anything written
//   later (through here or through the Writable), and calls `req.oncomplete`
//   when it is sent; until then the read buffer the chunk lives in stays
//   pinned (read-buffers.ts). As with write(), the result says whether the
//   caller should stop reading, and 'drain' is emitted once the queue empties.
// `end()` still goes through the Writable: libuv's shutdown waits for writes
// queued on the handle, so a FIN never overtakes a byte (uv_shutdown(3)).
//
// The request class is Node's own WriteWrap; it is not exported, so the first
// such write goes through write() and lends us the class of the request Node
// builds for it. Where that does not work (a Node whose sockets write another
// way) every write simply stays on write(). Each write gets a new request, as
// in Node: see afterDirectWrite for why one is never reused.

import type net from 'node:net';
import { getSystemErrorName } from 'node:util';
import { holdDispatched, releaseHeld, writeHeld, type HeldReadBuffer } from './read-buffers.js';
import { kNeedDrain, kTurnWrites } from './socket-fields.js';

interface StreamHandle {
  writeBuffer(req: object, data: Uint8Array): number;
  writeLatin1String(req: object, data: string): number;
  writev(req: object, chunks: unknown[], allBuffers: boolean): number;
  readonly writeQueueSize: number;
}

/** The handle methods Node's own writes go through: whichever a write uses shows the request class. */
const WRITE_METHODS = ['writeBuffer', 'writeLatin1String', 'writev'] as const;

interface WriteRequest {
  oncomplete: ((this: WriteRequest, status: number) => void) | null;
  /** The socket written to, while the write waits. */
  socket: DirectSocket | null;
  /** The read buffer the bytes live in, pinned while the write waits. */
  held: HeldReadBuffer | null;
  /** The bytes themselves: libuv reads them from memory the GC must not free meanwhile (node keeps `req.buffer` too). */
  buffer: unknown;
}

type WriteRequestClass = new () => WriteRequest;

type DirectSocket = net.Socket & {
  _handle?: StreamHandle | null;
  [kNeedDrain]?: boolean;
  [kTurnWrites]?: unknown;
};

/** undefined: not learnt yet; null: this Node's sockets do not write through the handle methods above. */
let WriteWrap: WriteRequestClass | null | undefined;

/**
 * `socket.write(chunk)` for a tunnel: straight to the handle when nothing is
 * queued in the Writable. Returns false when the caller should pause its
 * source until 'drain', as write() does.
 */
export function writeToSocket(socket: net.Socket, chunk: Buffer): boolean {
  const dest = socket as DirectSocket;
  const handle = directHandle(dest);
  // Through the Writable, a write's read buffer is pinned by writeHeld.
  if (handle === null) return writeHeld(dest, chunk);
  if (WriteWrap === undefined) return learnWriteWrap(handle, () => writeHeld(dest, chunk));
  return writeBufferToHandle(dest, handle, chunk, undefined);
}

/**
 * Writes `pieces` (latin1 strings and buffers, in order) as one `writev`: an
 * HTTP head and the body bytes that came with it leave in one system call, as
 * nginx sends them. Straight to the handle when nothing is queued in the
 * Writable, else corked through it. Returns false when the caller should
 * pause its source until 'drain'. `pieces` may be reused once this returns.
 */
export function writePieces(socket: net.Socket, pieces: ReadonlyArray<string | Buffer>): boolean {
  const dest = socket as DirectSocket;
  if (pieces.length === 1 && typeof pieces[0] !== 'string') return writeToSocket(dest, pieces[0]);
  const handle = directHandle(dest);
  if (handle === null) return writePiecesThroughStream(dest, pieces);
  if (WriteWrap === undefined) return learnWriteWrap(handle, () => writePiecesThroughStream(dest, pieces));
  return writePiecesToHandle(dest, handle, pieces, undefined);
}

/**
 * For turn-writes.ts: writes pieces held back until the end of the event-loop
 * turn. They were written before anything the Writable got since (its writes
 * send them first), so they go to the handle even if the Writable has ended
 * meanwhile: they belong before its FIN. `held` is the read buffer they pin.
 */
export function writeHeldBackPieces(socket: net.Socket, pieces: ReadonlyArray<string | Buffer>, held: HeldReadBuffer | null): void {
  const dest = socket as DirectSocket;
  const handle = dest._handle;
  if (handle == null || WriteWrap == null) {
    if (held !== null) releaseHeld(held, false); // the socket is gone: nothing reads the bytes
    return;
  }
  writePiecesToHandle(dest, handle, pieces, held);
}

/** One `write*` call on the handle for all of `pieces`; `held`: the buffer they pin, undefined for the one being dispatched. */
function writePiecesToHandle(dest: DirectSocket, handle: StreamHandle, pieces: ReadonlyArray<string | Buffer>, held: HeldReadBuffer | null | undefined): boolean {
  const first = pieces[0];
  if (pieces.length === 1 && typeof first !== 'string') return writeBufferToHandle(dest, handle, first, held);
  const req = new WriteWrap!();
  if (pieces.length === 1) return afterDirectWrite(dest, handle, req, handle.writeLatin1String(req, first as string), null, held);
  const chunks: unknown[] = new Array(pieces.length * 2);
  for (let i = 0; i < pieces.length; i++) {
    chunks[2 * i] = pieces[i];
    chunks[2 * i + 1] = typeof pieces[i] === 'string' ? 'latin1' : 'buffer';
  }
  return afterDirectWrite(dest, handle, req, handle.writev(req, chunks, false), chunks, held);
}

function writeBufferToHandle(dest: DirectSocket, handle: StreamHandle, chunk: Buffer, held: HeldReadBuffer | null | undefined): boolean {
  const req = new WriteWrap!();
  return afterDirectWrite(dest, handle, req, handle.writeBuffer(req, chunk), chunk, held);
}

/**
 * Bytes written to the socket's handle now would go out in order: it is open
 * and connected, and its Writable neither holds bytes nor has ended.
 */
export function handleIsFree(socket: net.Socket): boolean {
  const dest = socket as DirectSocket;
  return dest._handle != null && dest.writableLength === 0 && !dest.destroyed && !dest.writableEnded && !dest.connecting;
}

/**
 * The handle to write to directly, or null when the write must go through the
 * Writable: it holds bytes, or writes held back for the end of the turn wait
 * (turn-writes.ts: the Writable sends those first).
 */
function directHandle(dest: DirectSocket): StreamHandle | null {
  if (WriteWrap === null || dest[kTurnWrites] != null || !handleIsFree(dest)) return null;
  return dest._handle!;
}

/**
 * After `handle.write*(req, ...)` returned `err`: done when the kernel took
 * everything inside the call, else waiting in libuv with `bytes` kept alive,
 * and their read buffer pinned: `held`, or the one being dispatched when undefined.
 */
function afterDirectWrite(dest: DirectSocket, handle: StreamHandle, req: WriteRequest, err: number, bytes: unknown, held: HeldReadBuffer | null | undefined): boolean {
  if (err !== 0) {
    if (held != null) releaseHeld(held, true);
    dest.destroy(writeError(err));
    return false;
  }
  // An empty queue: every byte is in the kernel. The write may still have been
  // queued for a moment (libuv finished it inside the call but reports it on
  // the next turn), so `req` is never reused: native code may still hold it,
  // and finds no `oncomplete` on it.
  if (handle.writeQueueSize === 0) {
    if (held != null) releaseHeld(held, false);
    return true;
  }
  // Not all taken (or queued behind earlier writes): libuv holds the rest, and req until it is sent.
  // Strings were copied by the handle; buffers are read from where they are.
  req.oncomplete = directWriteOnComplete;
  req.socket = dest;
  req.held = held === undefined ? holdDispatched() : held;
  req.buffer = bytes;
  if (handle.writeQueueSize < dest.writableHighWaterMark) return true;
  dest[kNeedDrain] = true;
  return false;
}

function directWriteOnComplete(this: WriteRequest, status: number): void {
  const dest = this.socket!;
  const held = this.held;
  this.socket = null;
  this.held = null;
  this.buffer = null;
  this.oncomplete = null;
  if (held !== null) releaseHeld(held, status < 0);
  if (status < 0) {
    if (!dest.destroyed) dest.destroy(writeError(status)); // ECANCELED after our own destroy lands on a destroyed socket
    return;
  }
  if (dest[kNeedDrain] === true && dest._handle != null && dest._handle.writeQueueSize === 0) {
    dest[kNeedDrain] = false;
    dest.emit('drain');
  }
}

function writePiecesThroughStream(dest: DirectSocket, pieces: ReadonlyArray<string | Buffer>): boolean {
  let roomLeft = true;
  dest.cork();
  for (const piece of pieces) roomLeft = typeof piece === 'string' ? dest.write(piece, 'latin1') : writeHeld(dest, piece);
  dest.uncork();
  return roomLeft;
}

/** One write through the stream, watching which request class Node hands the handle. */
function learnWriteWrap(handle: StreamHandle, write: () => boolean): boolean {
  const proto = Object.getPrototypeOf(handle) as StreamHandle;
  if (WRITE_METHODS.some((name) => typeof proto[name] !== 'function') || typeof handle.writeQueueSize !== 'number') {
    WriteWrap = null;
    return write();
  }
  WriteWrap = null; // unless this write shows one
  const forget = () => {
    for (const name of WRITE_METHODS) delete (handle as Partial<StreamHandle>)[name];
  };
  for (const name of WRITE_METHODS) {
    const original = proto[name] as (this: StreamHandle, req: object, ...rest: unknown[]) => number;
    Object.defineProperty(handle, name, {
      configurable: true,
      writable: true,
      value(this: StreamHandle, req: object, ...rest: unknown[]): number {
        forget();
        const Class = (req as { constructor?: unknown }).constructor;
        if (typeof Class === 'function' && Class !== Object) WriteWrap = Class as WriteRequestClass;
        return original.call(this, req, ...rest);
      },
    });
  }
  try {
    return write();
  } finally {
    forget(); // not called when the Writable kept the bytes
  }
}

function writeError(status: number): NodeJS.ErrnoException {
  const code = getSystemErrorName(status);
  const err: NodeJS.ErrnoException = new Error(`write ${code}`);
  err.code = code;
  err.errno = status;
  err.syscall = 'write';
  return err;
}

/** Whether tunnel writes go to the handle directly (for tests and benchmarks). */
export function handleWritesEnabled(): boolean {
  return WriteWrap != null;
}
