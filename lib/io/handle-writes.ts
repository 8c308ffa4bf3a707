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
// Which handle-write contract this Node follows, and whether handle writes are
// on at all, is node-internals.ts's business (chosen by its start-up probe);
// with them off every write here goes through the Writable.

import type net from 'node:net';
import { getSystemErrorName } from 'node:util';
import { fastPaths, handleQueueSize, hasHandle, writableHandle, writeToHandle, type PendingWrite, type StreamHandle } from './node-internals.js';
import { holdReadBuffer, releaseHeld, writeHeld, type HeldReadBuffer } from './read-buffers.js';
import { kNeedDrain, kTurnWrites } from './socket-fields.js';

type WriteRequest = OwnedWrite<DirectSocket>;

/** A write request that carries its writer and the read buffer it pins. */
type OwnedWrite<O> = PendingWrite & { socket: O | null; held: HeldReadBuffer | null };

/**
 * A pending write completed with `status`: the request lets go of its bytes
 * and its writer, its read buffer is released (left to the GC after a
 * failure), and the writer is returned.
 */
function settleWrite<O>(req: OwnedWrite<O>, status: number): O {
  const owner = req.socket!;
  const held = req.held;
  req.socket = null;
  req.held = null;
  req.buffer = null;
  req.oncomplete = null;
  if (held !== null) releaseHeld(held, status < 0);
  return owner;
}

type DirectSocket = net.Socket & {
  [kNeedDrain]?: boolean;
  [kTurnWrites]?: unknown;
};

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
  const handle = writableHandle(dest);
  if (handle === null) {
    if (held !== null) releaseHeld(held, false); // the socket is gone: nothing reads the bytes
    return;
  }
  writePiecesToHandle(dest, handle, pieces, held);
}

/** One `write*` call on the handle for all of `pieces`; `held`: the buffer they pin, undefined to find it from the pieces. */
function writePiecesToHandle(dest: DirectSocket, handle: StreamHandle, pieces: ReadonlyArray<string | Buffer>, held: HeldReadBuffer | null | undefined): boolean {
  const first = pieces[0];
  if (pieces.length === 1 && typeof first !== 'string') return writeBufferToHandle(dest, handle, first, held);
  if (pieces.length === 1) return afterDirectWrite(dest, writeToHandle(handle, 1, first), null, held);
  const chunks: unknown[] = new Array(pieces.length * 2);
  for (let i = 0; i < pieces.length; i++) {
    chunks[2 * i] = pieces[i];
    chunks[2 * i + 1] = typeof pieces[i] === 'string' ? 'latin1' : 'buffer';
  }
  return afterDirectWrite(dest, writeToHandle(handle, 2, chunks), chunks, held);
}

function writeBufferToHandle(dest: DirectSocket, handle: StreamHandle, chunk: Buffer, held: HeldReadBuffer | null | undefined): boolean {
  return afterDirectWrite(dest, writeToHandle(handle, 0, chunk), chunk, held);
}

/**
 * Bytes written to the socket's handle now would go out in order: it is open
 * and connected, and its Writable neither holds bytes nor has ended.
 */
export function handleIsFree(socket: net.Socket): boolean {
  const dest = socket as DirectSocket;
  return hasHandle(dest) && dest.writableLength === 0 && !dest.destroyed && !dest.writableEnded && !dest.connecting;
}

/**
 * The handle to write to directly, or null when the write must go through the
 * Writable: it holds bytes, or writes held back for the end of the turn wait
 * (turn-writes.ts: the Writable sends those first).
 */
function directHandle(dest: DirectSocket): StreamHandle | null {
  if (dest[kTurnWrites] != null || !handleIsFree(dest)) return null;
  return writableHandle(dest);
}

/**
 * After a write to the handle: done when the kernel took everything inside
 * the call, else waiting in libuv with `bytes` kept alive, and their read
 * buffer pinned: `held`, or the one `bytes` are a slice of when undefined.
 */
function afterDirectWrite(dest: DirectSocket, result: number | PendingWrite, bytes: unknown, held: HeldReadBuffer | null | undefined): boolean {
  if (typeof result === 'number') {
    if (result !== 0) {
      if (held != null) releaseHeld(held, true);
      dest.destroy(writeError(result));
      return false;
    }
    if (held != null) releaseHeld(held, false);
    return true;
  }
  // Not all taken (or queued behind earlier writes): libuv holds the rest, and
  // the request until it is sent. Strings were copied by the handle; buffers
  // are read from where they are.
  const req = result as WriteRequest;
  req.oncomplete = directWriteOnComplete;
  req.socket = dest;
  req.held = held === undefined ? holdReadBuffer(bytes) : held;
  req.buffer = bytes;
  if (handleQueueSize(dest) < dest.writableHighWaterMark) return true;
  dest[kNeedDrain] = true;
  return false;
}

function directWriteOnComplete(this: PendingWrite, status: number): void {
  const dest = settleWrite(this as WriteRequest, status);
  if (status < 0) {
    if (!dest.destroyed) dest.destroy(writeError(status)); // ECANCELED after our own destroy lands on a destroyed socket
    return;
  }
  if (dest[kNeedDrain] === true && hasHandle(dest) && handleQueueSize(dest) === 0) {
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

function writeError(status: number): NodeJS.ErrnoException {
  const code = getSystemErrorName(status);
  const err: NodeJS.ErrnoException = new Error(`write ${code}`);
  err.code = code;
  err.errno = status;
  err.syscall = 'write';
  return err;
}

/** Whether writes go to the handle directly (for tests and benchmarks). */
export function handleWritesEnabled(): boolean {
  return fastPaths().handleWrites !== 'off';
}

// --- writes to a tunnel's taken handle (tunnel/handle-side.ts) ----------------------

/** `writeToOwnedHandle`: the write waits in libuv; `done` runs when it completes. */
export const WRITE_PENDING = 1;

type HandleWrite<O> = OwnedWrite<O> & { done: ((owner: O, status: number) => void) | null };

/**
 * `chunk` to a taken handle: 0 when every byte is in the kernel, a negative
 * errno when it failed, else WRITE_PENDING: libuv holds the request (and
 * `chunk`, whose read buffer stays pinned) until it is sent, then
 * `done(owner, status)` runs with the buffer already released.
 */
export function writeToOwnedHandle<O>(handle: StreamHandle, chunk: Buffer, owner: O, done: (owner: O, status: number) => void): number {
  const result = writeToHandle(handle, 0, chunk);
  if (typeof result === 'number') return result;
  const req = result as HandleWrite<O>;
  req.oncomplete = ownedHandleWriteDone;
  req.socket = owner;
  req.held = holdReadBuffer(chunk);
  req.buffer = chunk;
  req.done = done;
  return WRITE_PENDING;
}

function ownedHandleWriteDone(this: PendingWrite, status: number): void {
  const req = this as HandleWrite<unknown>;
  const done = req.done!;
  req.done = null;
  done(settleWrite(req, status), status);
}
