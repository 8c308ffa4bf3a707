// Keep-alive upstream connections for plain HTTP, per upstream address (nginx
// `keepalive N` in an upstream block). While a socket waits here its owner is
// its IdleEntry, and anything it does (data, FIN, error) disqualifies it.
// Idle sockets are taken newest first (LIFO: the oldest age out), capped per
// address, closed after an idle timeout on the shared timer wheel, and retired
// after a number of requests. Only a socket whose last exchange completed
// cleanly is ever given back (exchange.ts decides).

import { discardUpstream, kOwner, type UpstreamOwner, type UpstreamSocket } from './dialer.js';
import { WheelTimer, type TimerOwner, type TimerWheel } from '../core/timer-wheel.js';

export interface UpstreamPoolOptions {
  /** Idle connections kept per upstream address; 0 disables pooling. */
  maxIdle: number;
  /** Close an idle connection after this long (ms); 0 keeps it until the upstream closes it. */
  idleTimeoutMs: number;
  /** Retire a connection after this many requests. */
  maxRequests: number;
}

class IdleEntry implements TimerOwner, UpstreamOwner {
  readonly socket: UpstreamSocket;
  readonly key: string;
  readonly timer: WheelTimer;
  readonly pool: UpstreamPool;
  constructor(pool: UpstreamPool, key: string, socket: UpstreamSocket) {
    this.pool = pool;
    this.key = key;
    this.socket = socket;
    this.timer = new WheelTimer(this);
  }
  onTimerExpired(): number {
    this.pool.discard(this);
    return 0;
  }
  // An idle upstream spoke (bytes nobody asked for), closed or failed: it cannot be reused.
  connected(): void {}
  received(): void {
    this.pool.discard(this);
  }
  upstreamEnded(): void {
    this.pool.discard(this);
  }
  upstreamClosed(): void {
    this.pool.discard(this);
  }
  upstreamFailed(): void {
    this.pool.discard(this);
  }
  upstreamDrained(): void {}
  /** A listener of this idle socket threw (core/guard.ts): the socket goes, the bug is reported. */
  crashed(err: unknown): void {
    this.pool.discard(this);
    this.pool.crashed(err);
  }
}

export class UpstreamPool {
  /** Replaced on reload; idle sockets already pooled stay until they time out. */
  options: UpstreamPoolOptions;
  readonly #wheel: TimerWheel;
  readonly #idle = new Map<string, IdleEntry[]>();
  #idleCount = 0;
  #closed = false;

  readonly #onCrash: (err: unknown) => void;

  /** `onCrash`: a listener of an upstream socket nobody owned threw (core/guard.ts): log and count it. */
  constructor(wheel: TimerWheel, options: UpstreamPoolOptions, onCrash: (err: unknown) => void = () => {}) {
    this.#wheel = wheel;
    this.options = options;
    this.#onCrash = onCrash;
  }

  /** For a socket being discarded, whose listener threw: the socket is destroyed; the bug reported. */
  crashed(err: unknown): void {
    this.#onCrash(err);
  }

  get idleCount(): number {
    return this.#idleCount;
  }

  /** A live idle connection to `key` (`host:port`), now without an owner, or null. */
  acquire(key: string): UpstreamSocket | null {
    const list = this.#idle.get(key);
    while (list !== undefined && list.length > 0) {
      const entry = list.pop()!;
      this.#idleCount--;
      this.#wheel.cancel(entry.timer);
      const socket = entry.socket;
      socket[kOwner] = null;
      if (!socket.destroyed && socket.readable && socket.writable) return socket;
      discardUpstream(socket);
    }
    return null;
  }

  /** Gives back a socket whose exchange completed cleanly; it is closed instead when the pool is full or closed. */
  release(key: string, socket: UpstreamSocket): void {
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
      discardUpstream(socket);
      return;
    }
    if (list === undefined) {
      list = [];
      this.#idle.set(key, list);
    }
    const entry = new IdleEntry(this, key, socket);
    socket[kOwner] = entry;
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
    this.#wheel.cancel(entry.timer);
    discardUpstream(entry.socket);
  }

  /** Closes every idle connection; later releases close their socket. */
  close(): void {
    this.#closed = true;
    for (const list of this.#idle.values()) {
      for (const entry of list) {
        this.#wheel.cancel(entry.timer);
        discardUpstream(entry.socket);
      }
    }
    this.#idle.clear();
    this.#idleCount = 0;
  }
}
