// Tunnel writes straight to a socket's libuv handle, below the Writable.
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
// - taken whole inside the call (the queue on the handle stays empty): done,
//   and the same request object serves the next write (Node only binds one to
//   a native write request when the write has to wait);
// - not taken whole: libuv keeps the rest and sends it before anything written
//   later (through here or through the Writable), and calls `req.oncomplete`
//   when it is sent; until then the read buffer the chunk lives in stays
//   pinned (read-buffers.ts). As with write(), the result says whether the
//   caller should stop reading, and 'drain' is emitted once the queue empties.
// `end()` still goes through the Writable: libuv's shutdown waits for writes
// queued on the handle, so a FIN never overtakes a byte (uv_shutdown(3)).
//
// The request class is Node's own WriteWrap; it is not exported, so the first
// tunnel write goes through write() and lends us the class of the request Node
// builds for it. Where that does not work (a Node whose sockets write another
// way) every write simply stays on write().

import type net from 'node:net';
import { getSystemErrorName } from 'node:util';
import { holdDispatched, releaseHeld, writeHeld, type HeldReadBuffer } from './read-buffers.js';
import { kNeedDrain } from './socket-fields.js';

interface StreamHandle {
  writeBuffer(req: object, data: Uint8Array): number;
  readonly writeQueueSize: number;
}

interface WriteRequest {
  oncomplete: ((this: WriteRequest, status: number) => void) | null;
  /** The socket written to, while the write waits. */
  socket: DirectSocket | null;
  /** The read buffer the bytes live in, pinned while the write waits. */
  held: HeldReadBuffer | null;
  /** The bytes themselves: libuv reads them from memory the GC must not free meanwhile (node keeps `req.buffer` too). */
  buffer: Buffer | null;
}

type WriteRequestClass = new () => WriteRequest;


type DirectSocket = net.Socket & {
  _handle?: StreamHandle | null;
  [kNeedDrain]?: boolean;
};

/** undefined: not learnt yet; null: this Node's sockets do not write through `writeBuffer`. */
let WriteWrap: WriteRequestClass | null | undefined;
/** A request no native write holds: reused until a write has to wait with it. */
let spare: WriteRequest | null = null;

/**
 * `socket.write(chunk)` for a tunnel: straight to the handle when nothing is
 * queued in the Writable. Returns false when the caller should pause its
 * source until 'drain', as write() does.
 */
export function writeToSocket(socket: net.Socket, chunk: Buffer): boolean {
  const dest = socket as DirectSocket;
  const handle = dest._handle;
  if (WriteWrap === null || handle == null || dest.writableLength !== 0 || dest.destroyed || dest.writableEnded || dest.connecting) {
    return writeThroughStream(dest, chunk);
  }
  if (WriteWrap === undefined) return learnWriteWrap(dest, handle, chunk); // nothing queued: this write reaches the handle
  const req = spare ?? new WriteWrap();
  spare = null;
  const err = handle.writeBuffer(req, chunk);
  if (err !== 0) {
    dest.destroy(writeError(err)); // req is not reused: a failed write may have bound it
    return false;
  }
  if (handle.writeQueueSize === 0) {
    spare = req;
    return true;
  }
  // Not all taken (or queued behind earlier writes): libuv holds the rest, and req until it is sent.
  req.oncomplete = directWriteOnComplete;
  req.socket = dest;
  req.held = holdDispatched();
  req.buffer = chunk;
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

// A write() whose bytes may wait in the Writable: its read buffer is pinned by writeHeld.
function writeThroughStream(dest: DirectSocket, chunk: Buffer): boolean {
  return writeHeld(dest, chunk);
}

/** One write() through the stream, watching which request class Node hands the handle. */
function learnWriteWrap(dest: DirectSocket, handle: StreamHandle, chunk: Buffer): boolean {
  const proto = Object.getPrototypeOf(handle) as StreamHandle;
  const original = proto.writeBuffer;
  if (typeof original !== 'function' || typeof handle.writeQueueSize !== 'number') {
    WriteWrap = null;
    return writeThroughStream(dest, chunk);
  }
  WriteWrap = null; // unless this write shows one
  Object.defineProperty(handle, 'writeBuffer', {
    configurable: true,
    writable: true,
    value(this: StreamHandle, req: object, data: Uint8Array): number {
      delete (handle as Partial<StreamHandle>).writeBuffer;
      const Class = (req as { constructor?: unknown }).constructor;
      if (typeof Class === 'function' && Class !== Object) WriteWrap = Class as WriteRequestClass;
      return original.call(this, req, data);
    },
  });
  try {
    return writeThroughStream(dest, chunk);
  } finally {
    delete (handle as Partial<StreamHandle>).writeBuffer; // not reached when the Writable buffered the chunk
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
