// HTTP writes held back until the end of the event-loop turn.
//
// One turn of the loop hands wsgate every socket that became readable
// (epoll). Writing each request head upstream and each complete response to
// its client as soon as its read is parsed interleaves parsing with system
// calls, and every write wakes a peer that went back to sleep since the last
// one: on these machines that wake-up (`sock_def_readable`, an IPI to the
// other CPU) was a fifth of the proxy's time in the `http` benchmark. Held back
// to the end of the turn (`setImmediate`: right after the poll phase), the
// turn's writes leave together and wake each peer once: 23-26 -> 20 µs of CPU
// per request, 25 % more requests/s (bench/RESULTS.md). The same for tunnel
// frames measured no gain, so tunnels write at once.
//
// Held-back bytes stay in order with everything else written to the socket:
// - writes to the handle (handle-writes.ts) see the held-back ones and go
//   through the Writable instead;
// - the Writable's own writes, its end (FIN) and destroy go through the
//   TurnWriteSocket methods below, which send the held-back bytes first.
// So a socket that may hold writes back must be a TurnWriteSocket; for any
// other socket (or before Node's write request class is known)
// `writeAtTurnEnd` declines and the caller writes at once.

import net from 'node:net';
import { handleIsFree, writeHeldBackPieces } from './handle-writes.js';
import { fastPaths, socketClassWithWriteHook } from './node-internals.js';
import { holdReadBuffer, type HeldReadBuffer } from './read-buffers.js';
import { kTurnWrites } from './socket-fields.js';

interface TurnWrite {
  readonly pieces: ReadonlyArray<string | Buffer>;
  /** The read buffer a piece is a slice of, pinned until written. */
  readonly held: HeldReadBuffer | null;
}

type TurnSocket = net.Socket & { [kTurnWrites]: TurnWrite[] | null };

/** Sockets with writes held back, in the order of their first one. */
let holding: TurnSocket[] = [];
let flushScheduled = false;

/**
 * A net.Socket whose own writes, end and destroy send its held-back writes
 * first (the hooks are node-internals.ts's; where this Node lacks them the
 * probe turns turn writes off and this is a plain net.Socket).
 */
export const TurnWriteSocket: typeof net.Socket = socketClassWithWriteHook(flushTurnWrites);

/**
 * Holds `pieces` (latin1 strings and buffers, in order) back to be written
 * in one `writev` at the end of this turn. Returns false, holding nothing, when
 * the socket cannot hold writes back: the caller writes at once. `pieces` may
 * be reused once this returns.
 */
export function writeAtTurnEnd(socket: net.Socket, pieces: ReadonlyArray<string | Buffer>): boolean {
  const dest = socket as TurnSocket;
  // Bytes waiting in the Writable would be overtaken by a write to the handle.
  if (!fastPaths().turnWrites || !(dest instanceof TurnWriteSocket) || !handleIsFree(dest)) return false;
  const write: TurnWrite = { pieces: pieces.slice(), held: holdReadBuffer(pieces) };
  const writes = dest[kTurnWrites];
  if (writes === null) {
    dest[kTurnWrites] = [write];
    holding.push(dest);
  } else {
    writes.push(write);
  }
  if (!flushScheduled) {
    flushScheduled = true;
    setImmediate(flushAll);
  }
  return true;
}

/** Writes what `socket` holds back, now. */
export function flushTurnWrites(socket: net.Socket): void {
  const dest = socket as TurnSocket;
  const writes = dest[kTurnWrites];
  if (writes == null) return;
  dest[kTurnWrites] = null;
  for (let i = 0; i < writes.length; i++) writeHeldBackPieces(dest, writes[i].pieces, writes[i].held);
}

function flushAll(): void {
  flushScheduled = false;
  const sockets = holding;
  holding = [];
  for (let i = 0; i < sockets.length; i++) {
    try {
      flushTurnWrites(sockets[i]);
    } catch (err) {
      // One socket's failure must not keep the others' bytes back, nor end the process.
      sockets[i].destroy(err as Error);
    }
  }
}
