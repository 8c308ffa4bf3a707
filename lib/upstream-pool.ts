// Keep-alive upstream connections for plain HTTP, per upstream address (nginx
// `keepalive N` in an upstream block). An idle socket waits here with its own
// listeners; anything it does while idle (data, FIN, error) disqualifies it.
// Idle sockets are taken newest first (LIFO: the oldest age out), capped per
// address, closed after an idle timeout on the shared timer wheel, and retired
// after a number of requests. Only a socket whose last exchange completed
// cleanly is ever given back (exchange.ts decides).

import type net from 'node:net';
import { WheelTimer, type TimerOwner, type TimerWheel } from './timer-wheel.js';

export interface UpstreamPoolOptions {
  /** Idle connections kept per upstream address; 0 disables pooling. */
  maxIdle: number;
  /** Close an idle connection after this long (ms); 0 keeps it until the upstream closes it. */
  idleTimeoutMs: number;
  /** Retire a connection after this many requests. */
  maxRequests: number;
}

const kIdle = Symbol('wsgate idle upstream');

class IdleEntry implements TimerOwner {
  readonly socket: PooledSocket;
  readonly key: string;
  readonly timer: WheelTimer;
  readonly pool: UpstreamPool;
  constructor(pool: UpstreamPool, key: string, socket: PooledSocket) {
    this.pool = pool;
    this.key = key;
    this.socket = socket;
    this.timer = new WheelTimer(this);
  }
  onTimerExpired(): number {
    this.pool.discard(this);
    return 0;
  }
}

export type PooledSocket = net.Socket & { [kIdle]?: IdleEntry | null; wsgateRequests?: number };

export class UpstreamPool {
  /** Replaced on reload; idle sockets already pooled stay until they time out. */
  options: UpstreamPoolOptions;
  readonly #wheel: TimerWheel;
  readonly #idle = new Map<string, IdleEntry[]>();
  #idleCount = 0;
  #closed = false;

  constructor(wheel: TimerWheel, options: UpstreamPoolOptions) {
    this.#wheel = wheel;
    this.options = options;
  }

  get idleCount(): number {
    return this.#idleCount;
  }

  /** A live idle connection to `key` (`host:port`), or null. */
  acquire(key: string): PooledSocket | null {
    const list = this.#idle.get(key);
    while (list !== undefined && list.length > 0) {
      const entry = list.pop()!;
      this.#idleCount--;
      this.#forget(entry);
      const socket = entry.socket;
      if (!socket.destroyed && socket.readable && socket.writable) return socket;
      socket.on('error', ignoreError);
      socket.destroy();
    }
    return null;
  }

  /** Gives back a socket whose exchange completed cleanly; it is closed instead when the pool is full or closed. */
  release(key: string, socket: PooledSocket): void {
    const requests = (socket.wsgateRequests ?? 0) + 1;
    socket.wsgateRequests = requests;
    let list = this.#idle.get(key);
    if (
      this.#closed ||
      this.options.maxIdle <= 0 ||
      requests >= this.options.maxRequests ||
      socket.destroyed ||
      !socket.readable ||
      !socket.writable ||
      (list !== undefined && list.length >= this.options.maxIdle)
    ) {
      socket.on('error', ignoreError);
      socket.destroy();
      return;
    }
    if (list === undefined) {
      list = [];
      this.#idle.set(key, list);
    }
    const entry = new IdleEntry(this, key, socket);
    socket[kIdle] = entry;
    socket.on('data', idleOnEvent);
    socket.on('end', idleOnEvent);
    socket.on('error', idleOnEvent);
    socket.on('close', idleOnEvent);
    socket.resume(); // so that a FIN or unsolicited bytes are seen at once
    list.push(entry);
    this.#idleCount++;
    this.#wheel.arm(entry.timer, this.options.idleTimeoutMs);
  }

  /** Removes and closes an idle connection (timed out, or did something while idle). */
  discard(entry: IdleEntry): void {
    const list = this.#idle.get(entry.key);
    const i = list?.indexOf(entry) ?? -1;
    if (i !== -1) {
      list!.splice(i, 1);
      this.#idleCount--;
      if (list!.length === 0) this.#idle.delete(entry.key);
    }
    this.#forget(entry);
    entry.socket.on('error', ignoreError);
    entry.socket.destroy();
  }

  /** Closes every idle connection; later releases close their socket. */
  close(): void {
    this.#closed = true;
    for (const list of this.#idle.values()) {
      for (const entry of list) {
        this.#forget(entry);
        entry.socket.on('error', ignoreError);
        entry.socket.destroy();
      }
    }
    this.#idle.clear();
    this.#idleCount = 0;
  }

  #forget(entry: IdleEntry): void {
    this.#wheel.cancel(entry.timer);
    const socket = entry.socket;
    socket[kIdle] = null;
    socket.removeListener('data', idleOnEvent);
    socket.removeListener('end', idleOnEvent);
    socket.removeListener('error', idleOnEvent);
    socket.removeListener('close', idleOnEvent);
    socket.pause();
  }
}

/** An idle upstream spoke (bytes nobody asked for), closed or failed: it cannot be reused. */
function idleOnEvent(this: PooledSocket): void {
  const entry = this[kIdle];
  if (entry) entry.pool.discard(entry);
}

function ignoreError(): void {
  // a socket being thrown away: its last error (ECONNRESET, EPIPE) concerns nobody
}
