// One side of a tunnel that keeps only its TCP handle. Once a tunnel runs
// (tunnel.ts `shedSockets`), it takes both sockets' handles
// (io/node-internals.ts) and lets the two net.Sockets go: an idle tunnel then
// costs its two handles and these two small objects, not two sockets with
// their stream states (bench/RESULTS.md: 12.6 KB of RSS per idle tunnel with
// the sockets, 4.6 KB for two bare handles).
//
// It does what the socket side (tunnel.ts `TunnelSide`) gets from net.Socket:
// - reads arrive in `onread`, into the socket's pooled read buffers when it had
//   them (read-buffers.ts, moved over with the handle), else into buffers Node
//   allocates per read;
// - writes go to the peer's handle (as handle-writes.ts does); a write libuv
//   must hold pins its read buffer, and while more than a socket's high-water
//   mark waits on a handle, the side that feeds it stops reading (backpressure,
//   as `pause()` until 'drain');
// - a FIN read (READ_EOF) shuts the peer's write half down once its queued
//   writes are out (uv_shutdown orders it after them); a side is done when it
//   read a FIN and its own shutdown completed, and then closes;
// - a read or write error resets the peer at once and closes this side;
// - what a client socket's 'close' did for others (its client's count of open
//   connections: `kGone`) runs once this handle is closed.
// Nothing here may throw into Node's callbacks: a bug destroys the tunnel.

import os from 'node:os';
import {
  READ_EOF,
  closeHandle,
  pauseReading,
  queuedBytes,
  readOffset,
  readResult,
  resetHandle,
  resumeReading,
  shutdownHandle,
  startReading,
  type TunnelHandle,
} from '../io/node-internals.js';
import { nextBufferFor, readInto, releaseReadBuffer, type ReadHolder } from '../io/read-buffers.js';
import { WRITE_PENDING, writeToOwnedHandle } from '../io/handle-writes.js';
import { kOwnBuffer, kReadBuffer } from '../io/socket-fields.js';

/** A socket's `writableHighWaterMark`: while more than this waits on a handle, its peer stops reading. */
const HIGH_WATER = 16 * 1024;
const ENOTCONN = -(os.constants.errno.ENOTCONN ?? 107);

/** What a side reports to its tunnel (tunnel.ts). */
export interface HandleSideHost {
  bytesToUpstream: number;
  bytesToDownstream: number;
  lastActive: number;
  readonly wheel: { readonly now: number };
  sideClosed(side: HandleSide): void;
  sideFailed(side: HandleSide): void;
  crashed(err: unknown): void;
}

export class HandleSide implements ReadHolder {
  readonly tunnel: HandleSideHost;
  readonly handle: TunnelHandle;
  /** The client's side: its bytes go upstream. */
  readonly isDownstream: boolean;
  /** Reads go into pooled buffers (`kReadBuffer`, moved here from the socket), not into buffers Node allocates per read. */
  pooled = false;
  /** Run once the handle is closed: what the socket's 'close' did for others. */
  readonly gone: (() => void) | null;
  peer!: HandleSide;
  /** This handle read a FIN. */
  gotEnd = false;
  /** Its write half is shut down (FIN sent). */
  finishedWriting = false;
  /** Its close was counted. */
  isClosed = false;
  /** close() or reset() was called: the handle is going away. */
  closing = false;
  /** A shutdown was asked for. */
  writeEnded = false;
  /** The handle reads (it is stopped while the peer's writes back up, and after a FIN). */
  reading = false;
  /** Writes to this handle backed up: resume the peer once they are out. */
  needDrain = false;
  [kReadBuffer]: ReadHolder[typeof kReadBuffer] = undefined;
  [kOwnBuffer]: ReadHolder[typeof kOwnBuffer] = undefined;

  constructor(tunnel: HandleSideHost, handle: TunnelHandle, isDownstream: boolean, gone: (() => void) | null) {
    this.tunnel = tunnel;
    this.handle = handle;
    this.isDownstream = isDownstream;
    this.gone = gone;
  }

  /** Starts reading; false when the handle would not (the caller closes the tunnel). */
  start(): boolean {
    this.reading = startReading(this.handle, this, sideOnRead);
    return this.reading;
  }

  /** Bytes this handle read (from its endpoint): to the peer's handle. */
  received(chunk: Buffer): void {
    const tunnel = this.tunnel;
    if (this.isDownstream) tunnel.bytesToUpstream += chunk.length;
    else tunnel.bytesToDownstream += chunk.length;
    tunnel.lastActive = tunnel.wheel.now;
    if (!this.peer.write(chunk)) this.pause();
  }

  /** Writes `chunk` to this handle; false when the peer should stop reading until it drains. */
  write(chunk: Buffer): boolean {
    if (this.closing || this.writeEnded) return true; // as a write to a destroyed socket: dropped
    const result = writeToOwnedHandle(this.handle, chunk, this, sideWriteDone);
    if (result !== WRITE_PENDING) {
      if (result < 0) this.failed();
      return true;
    }
    if (queuedBytes(this.handle) < HIGH_WATER) return true;
    this.needDrain = true;
    return false;
  }

  /** A write libuv held completed. */
  written(status: number): void {
    if (status < 0) {
      if (!this.closing) this.failed();
      return;
    }
    if (this.needDrain && queuedBytes(this.handle) === 0) {
      this.needDrain = false;
      this.peer.resume();
    }
  }

  pause(): void {
    if (!this.reading) return;
    this.reading = false;
    pauseReading(this.handle);
  }

  resume(): void {
    if (this.reading || this.closing || this.gotEnd) return;
    this.reading = true;
    resumeReading(this.handle);
  }

  /** This handle read a FIN: the peer's write half ends once its queued bytes are out. */
  ended(): void {
    this.gotEnd = true;
    this.pause();
    const tunnel = this.tunnel;
    tunnel.lastActive = tunnel.wheel.now;
    this.peer.endWrites();
    if (this.finishedWriting) this.close();
  }

  /** Sends FIN after the bytes queued on this handle. */
  endWrites(): void {
    if (this.writeEnded || this.closing) return;
    this.writeEnded = true;
    const now = shutdownHandle(this.handle, this, sideShutDown);
    if (now !== 0) this.shutDown(now === 1 ? 0 : now);
  }

  shutDown(status: number): void {
    if (status < 0 && status !== ENOTCONN) {
      if (!this.closing) this.failed();
      return;
    }
    this.finishedWriting = true;
    if (this.gotEnd) this.close();
  }

  /** A read or write failed (reset, EPIPE): the peer learns at once, as through a plain TCP path. */
  failed(): void {
    this.tunnel.sideFailed(this);
    this.close();
  }

  /** Closes the handle (FIN if not sent yet); counted once libuv has closed it. */
  close(): void {
    if (this.closing) return;
    this.closing = true;
    this.reading = false;
    closeHandle(this.handle, this, sideClosed);
  }

  /** Closes the handle with a reset (RST). */
  reset(): void {
    if (this.closing) return;
    this.closing = true;
    this.reading = false;
    resetHandle(this.handle, this, sideClosed);
  }

  destroy(): void {
    this.close();
  }
}

/** A read of the side's handle, a FIN or an error. Never throws. */
function sideOnRead(side: HandleSide, arrayBuffer: ArrayBuffer | undefined): Uint8Array | undefined {
  try {
    const nread = readResult();
    if (nread > 0) {
      if (side.pooled) {
        side.received(readInto(side, nread));
        return nextBufferFor(side); // the next read goes into it
      }
      if (arrayBuffer === undefined) throw new Error('a read of a handle without pooled buffers brought no memory');
      side.received(Buffer.from(arrayBuffer, readOffset(), nread));
      return undefined;
    }
    if (nread === READ_EOF) side.ended();
    else if (nread < 0) side.failed();
  } catch (err) {
    side.tunnel.crashed(err);
  }
  return undefined;
}

function sideWriteDone(side: HandleSide, status: number): void {
  try {
    side.written(status);
  } catch (err) {
    side.tunnel.crashed(err);
  }
}

function sideShutDown(side: HandleSide, status: number): void {
  try {
    side.shutDown(status);
  } catch (err) {
    side.tunnel.crashed(err);
  }
}

function sideClosed(side: HandleSide): void {
  let thrown: unknown = null;
  try {
    releaseReadBuffer(side);
    const gone = side.gone;
    if (gone !== null) gone();
  } catch (err) {
    thrown = err ?? new Error('a close hook threw');
  }
  try {
    side.tunnel.sideClosed(side); // counted whatever happened above
  } catch (err) {
    thrown ??= err ?? new Error('a tunnel close threw');
  }
  if (thrown !== null) side.tunnel.crashed(thrown);
}
