// The fields wsgate keeps on a net.Socket, under symbols (undici
// `lib/core/symbols.js`), and one function that gives a socket all of them,
// always in the same order, as soon as wsgate has it.
//
// V8 gives an object a hidden class per order in which its properties were
// added. Sockets that gained these fields one by one, in whatever order their
// life took (a connection, a pool, a tunnel, a first read, a first pinned
// write), ended up with many hidden classes, and every line reading one of
// them went megamorphic: the largest user-space entry in `perf` of the small
// benchmark. One order for all keeps those reads monomorphic.

import type net from 'node:net';

/** Whoever this client socket's events go to: its Connection, then a tunnel side (connection.ts). */
export const kConnection = Symbol('wsgate connection');
/** Whoever an upstream socket's events go to: an exchange, the pool or a tunnel side (dialer.ts). */
export const kOwner = Symbol('wsgate upstream owner');
/** The buffer this socket reads into now, and the one it owns (read-buffers.ts). */
export const kReadBuffer = Symbol('wsgate read buffer');
export const kOwnBuffer = Symbol('wsgate own read buffer');
/** Read buffers pinned by writes through the Writable (read-buffers.ts). */
export const kHeld = Symbol('wsgate held writes');
/** A write to the handle said "stop": emit 'drain' when its queue empties (handle-writes.ts). */
export const kNeedDrain = Symbol('wsgate need drain');
/** Writes waiting for the end of this event-loop turn (turn-writes.ts), or null. */
export const kTurnWrites = Symbol('wsgate turn writes');
/** Who answers for this socket's listener errors when nobody owns it (an upstream socket being discarded: its pool). */
export const kHome = Symbol('wsgate home');

/**
 * What must happen when this client socket is gone (limits/gatekeeper.ts: its
 * client's count of open connections). It runs on the socket's 'close', or,
 * when a tunnel took the socket's handle and let the socket go
 * (tunnel/handle-side.ts), once that handle is closed.
 */
export const kGone = Symbol('wsgate gone');
/** wsgate accepted this socket on its own listener: nobody else holds it, so a tunnel may take its handle. */
export const kOwnSocket = Symbol('wsgate own socket');

interface Fields {
  [kConnection]: unknown;
  [kOwner]: unknown;
  [kReadBuffer]: unknown;
  [kOwnBuffer]: unknown;
  [kHeld]: unknown;
  [kNeedDrain]: boolean;
  [kTurnWrites]: unknown;
  [kHome]: unknown;
  [kGone]: (() => void) | null;
  [kOwnSocket]: boolean;
  /** Requests completed on an upstream connection (upstream-pool.ts). */
  wsgateRequests: number;
}

/** Gives `socket` every wsgate field, in one order; call it before setting any of them. `own`: see kOwnSocket. */
export function initSocketFields<S extends net.Socket>(socket: S, own = false): S {
  const fields = socket as S & Fields;
  fields[kConnection] = null;
  fields[kOwner] = null;
  fields[kReadBuffer] = undefined;
  fields[kOwnBuffer] = undefined;
  fields[kHeld] = undefined;
  fields[kNeedDrain] = false;
  fields[kTurnWrites] = null;
  fields[kHome] = null;
  fields[kGone] = null;
  fields[kOwnSocket] = own;
  fields.wsgateRequests = 0;
  return socket;
}

/** Runs `fn` once the socket is gone (its 'close', or its tunnel's handle closed: `kGone`). Call after initSocketFields. */
export function whenGone(socket: net.Socket, fn: () => void): void {
  const fields = socket as net.Socket & Fields;
  const before = fields[kGone];
  const gone = before === null ? fn : () => (before(), fn());
  fields[kGone] = gone;
  if (before === null) socket.once('close', runGone);
}

function runGone(this: net.Socket): void {
  const fields = this as net.Socket & Fields;
  const gone = fields[kGone];
  fields[kGone] = null;
  gone?.();
}

/** Takes the socket's `kGone` work away from it (a tunnel that keeps only its handle runs it later); null when there is none. */
export function takeGone(socket: net.Socket): (() => void) | null {
  const fields = socket as net.Socket & Partial<Fields>;
  const gone = fields[kGone] ?? null;
  fields[kGone] = null;
  return gone;
}

/** Whoever answers for this socket's listener errors (core/guard.ts): its connection or tunnel side, or its upstream owner. */
export function ownerOfSocket(socket: net.Socket): { crashed(err: unknown): void } | null {
  const fields = socket as net.Socket & Partial<Fields>;
  return (fields[kConnection] ?? fields[kOwner] ?? fields[kHome] ?? null) as { crashed(err: unknown): void } | null;
}
