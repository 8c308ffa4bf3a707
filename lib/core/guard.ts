// One wrapper for every socket listener wsgate registers: whatever a
// listener throws goes to the socket's owner (a connection, an exchange, a
// tunnel, the pool), never to `uncaughtException`. README and STYLE promise
// that one connection's error never ends the process; before this, one
// exception in an upstream 'connect' listener did.
//
// The owner decides what the error costs: a connection answers 502 if
// nothing was sent yet, else cuts both sides; a tunnel destroys both sides;
// the pool drops the idle socket. Each logs the stack and counts it in stats().
//
// Every guarded listener is named by its table and event, so a test can make
// exactly one of them throw (`injectListenerFault`) and prove the next client
// is served: a boolean check per event while no fault is armed.

import type { EventEmitter } from 'node:events';

/** Whoever answers for a socket's listener errors. */
export interface Crashable {
  crashed(err: unknown): void;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Listener<S> = (this: S, ...args: any[]) => unknown;

/** Every guarded listener, as `table:event`: the test suite injects a fault into each. */
export const GUARDED: Set<string> = new Set();

let faultsArmed = false;
const faults = new Map<string, number>();

/** The error an injected fault throws. */
export class InjectedFault extends Error {
  constructor(readonly where: string) {
    super(`injected fault in ${where}`);
    this.name = 'InjectedFault';
  }
}

/**
 * For tests: the next `count` calls of the listener `table:event` throw an
 * InjectedFault before running. Returns a function that disarms it.
 */
export function injectListenerFault(where: string, count = 1): () => void {
  if (!GUARDED.has(where)) throw new Error(`no guarded listener ${where}`);
  faults.set(where, count);
  faultsArmed = true;
  return () => {
    faults.delete(where);
    faultsArmed = faults.size > 0;
  };
}

function maybeThrow(where: string): void {
  const left = faults.get(where);
  if (left === undefined) return;
  if (left <= 1) faults.delete(where);
  else faults.set(where, left - 1);
  faultsArmed = faults.size > 0;
  throw new InjectedFault(where);
}

/**
 * `listener`, guarded: an exception goes to `ownerOf(this)`'s `crashed`, or
 * destroys the socket when it has no owner (or the owner's handler throws too).
 */
export function guard<S extends EventEmitter & { destroy(error?: Error): unknown }>(
  table: string,
  event: string,
  listener: Listener<S>,
  ownerOf: (socket: S) => Crashable | null | undefined,
): Listener<S> {
  const where = `${table}:${event}`;
  GUARDED.add(where);
  return function guarded(this: S, a?: unknown, b?: unknown, c?: unknown): unknown {
    try {
      if (faultsArmed) maybeThrow(where);
      return listener.call(this, a, b, c);
    } catch (err) {
      contain(this, err, ownerOf);
      return undefined;
    }
  };
}

/** Hands `err` to the socket's owner; never throws. */
export function contain<S extends { destroy(error?: Error): unknown }>(socket: S, err: unknown, ownerOf: (socket: S) => Crashable | null | undefined): void {
  try {
    const owner = ownerOf(socket);
    if (owner != null) {
      owner.crashed(err);
      return;
    }
  } catch {
    // the owner's own handling failed: fall back to closing the socket
  }
  try {
    socket.destroy();
  } catch {
    // nothing more can be done for this socket
  }
}
