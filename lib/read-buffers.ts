// Pooled read buffers (net `onread`) for upstream sockets and for the sockets
// wsgate accepts itself. By default every socket read gets a fresh ArrayBuffer;
// V8 frees those lazily, as external memory, so relaying 128 MiB between a fast
// and a slow peer left 70+ MiB of dead read buffers on Node 24. Here a socket
// reads into a buffer from a small free list, and the buffer is read into
// again only when nothing refers to it any more:
// - a write that forwards a slice of it (`writeHeld`) pins it until the write completes;
// - a slice kept for later (a queued body piece, bytes after an upgrade head)
//   is copied out (`retainRead`): those are rare and short;
// - llhttp copies bodies out itself, so what it reads needs neither.
//
// A read is dispatched synchronously (`dispatchRead`); writes of its bytes
// happen during that dispatch, so `writeHeld` knows which buffer they pin.

import net from 'node:net';

const BUFFER_SIZE = 64 * 1024; // what libuv asks for per read; one read fills at most this
const MAX_FREE = 32; // 2 MiB kept for reuse; more are left to the GC

class ReadBuffer {
  readonly bytes = Buffer.allocUnsafeSlow(BUFFER_SIZE);
  /** Writes of a slice of `bytes` that have not completed. */
  pending = 0;
  /** A socket still reads into it. */
  reading = true;
}

const free: ReadBuffer[] = [];
const owners = new WeakMap<ArrayBufferLike, ReadBuffer>();
const kReadBuffer = Symbol('wsgate read buffer');
const kHeld = Symbol('wsgate held writes');

type ReadingSocket = net.Socket & { [kReadBuffer]?: ReadBuffer };

/** The buffer whose bytes are being dispatched, while a read callback runs. */
let dispatching: ReadBuffer | null = null;
/** The socket whose read callback just returned: Node asks for its next buffer right after. */
let lastReader: ReadingSocket | null = null;

let created = 0;

function take(): ReadBuffer {
  let rb = free.pop();
  if (rb === undefined) {
    rb = new ReadBuffer();
    created++;
  }
  rb.reading = true;
  owners.set(rb.bytes.buffer, rb);
  return rb;
}

function recycle(rb: ReadBuffer): void {
  if (free.length < MAX_FREE) free.push(rb);
}

/**
 * `onread.buffer`: Node calls it once when the socket starts reading and then
 * after every read callback, for the buffer the next read goes into.
 */
export function nextReadBuffer(): Buffer {
  const socket = lastReader;
  lastReader = null;
  if (socket === null) return take().bytes; // first read of a socket: claimed by its first callback
  const current = socket[kReadBuffer];
  if (current === undefined) return take().bytes; // released already: never throw inside node's read path
  if (current.pending === 0) return current.bytes;
  current.reading = false; // recycled when its last write completes
  const next = take();
  socket[kReadBuffer] = next;
  return next.bytes;
}

/** Runs `dispatch(chunk)` for one read of `nread` bytes into `buffer`; writes of its bytes go through `writeHeld`. */
export function dispatchRead<S extends net.Socket>(target: S, nread: number, buffer: Buffer, dispatch: (socket: S, chunk: Buffer) => void): void {
  const socket = target as S & ReadingSocket;
  let rb = socket[kReadBuffer];
  if (rb === undefined || rb.bytes !== buffer) {
    rb = owners.get(buffer.buffer)!;
    socket[kReadBuffer] = rb;
  }
  dispatching = rb;
  try {
    dispatch(socket, buffer.subarray(0, nread));
  } finally {
    dispatching = null;
    lastReader = socket;
  }
}

/** The socket closed: its read buffer returns to the pool once its writes are done. */
export function releaseReadBuffer(socket: ReadingSocket): void {
  const rb = socket[kReadBuffer];
  if (rb === undefined) return;
  socket[kReadBuffer] = undefined;
  rb.reading = false;
  if (rb.pending === 0) recycle(rb);
}

/** Completed writes of held slices, in write order (a Writable completes writes in order). */
class HeldWrites {
  readonly buffers: ReadBuffer[] = [];
  readonly onWritten = (err?: Error | null): void => {
    const rb = this.buffers.shift()!;
    // After a failed write the memory is no longer read by the kernel either,
    // but a buffer that saw an error is simply left to the GC.
    if (--rb.pending === 0 && !rb.reading && !err) recycle(rb);
  };
}

type HoldingSocket = net.Socket & { [kHeld]?: HeldWrites };

/**
 * `dest.write(chunk)` for a slice of the read being dispatched: its buffer is
 * not read into again until this write completes. Outside a dispatch it is a
 * plain write.
 */
export function writeHeld(dest: net.Socket, chunk: Buffer): boolean {
  const rb = dispatching;
  if (rb === null) return dest.write(chunk);
  const socket = dest as HoldingSocket;
  const held = (socket[kHeld] ??= new HeldWrites());
  rb.pending++;
  held.buffers.push(rb);
  return socket.write(chunk, held.onWritten);
}

/** A slice to keep past the read's dispatch: copied out of a pooled buffer, else returned as is. */
export function retainRead(chunk: Buffer): Buffer {
  const rb = dispatching;
  return rb !== null && chunk.buffer === rb.bytes.buffer ? Buffer.from(chunk) : chunk;
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

type InternalSocket = net.Socket & { _handle?: { readStart?: unknown } | null };

/**
 * The socket a `pauseOnConnect` server accepted, re-created over the same
 * handle with `onread` (net.Server has no such option), so that its reads use
 * pooled buffers too. Nothing was read yet. Where the handle is not reachable
 * (a Node without `_handle`), the socket itself, reading as usual.
 */
export function withPooledReads(accepted: net.Socket): net.Socket {
  const internal = accepted as InternalSocket;
  const handle = internal._handle;
  if (handle == null || typeof handle.readStart !== 'function') {
    accepted.resume();
    return accepted;
  }
  internal._handle = null;
  accepted.destroy(); // only the wrapper: it has no handle to close; the server's count drops with it
  const options = { handle, allowHalfOpen: true, readable: true, writable: true, onread: { buffer: nextReadBuffer, callback: acceptedOnRead } };
  return new net.Socket(options as net.SocketConstructorOpts);
}

/** Pool figures, for tests and benchmarks. */
export function readBufferStats(): { free: number; created: number } {
  return { free: free.length, created };
}
