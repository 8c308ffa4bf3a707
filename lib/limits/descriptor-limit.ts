// How many descriptors this process may still open: the guard that refuses a
// new client connection (503, gateway.ts) before the descriptor table is full.
//
// Issue #6 (attacks.md row 35, EMFILE): with a full table, accept() fails and
// libuv's "EMFILE trick" (src/unix/stream.c `uv__emfile_trick`) closes its spare
// descriptor, accepts the waiting connections and closes them at once, without
// telling node. The turned-away clients got a bare FIN, and wsgate logged
// nothing. So wsgate must say no while it still can: a refused socket costs the
// one descriptor it already has, for as long as its 503 takes to be read.
//
// Counting, not listing: reading /proc/self/fd on every accept costs 0.35 ms at
// 1,000 descriptors and 4 ms at 10,000 (readdir). Instead the gateway counts
// what it holds in O(1) (`reserved`, two per client connection: its own
// descriptor and the upstream one it will need), and the rest of the process
// (stdio, epoll, the embedding application's files) is measured now and then:
// when the estimate is past half the ceiling, at most once a second. On Linux
// 6.2+ that measure is a stat() of /proc/self/fd (its size is the number of open
// descriptors, ~3 µs whatever the count), else a readdir. Without a readable
// limit (not Linux, no /proc) there is no guard.

import { readFileSync, readdirSync, statSync } from 'node:fs';

/** What the gateway holds, counted two ways. */
export interface DescriptorHolder {
  /** Descriptors held or promised (each client connection counts two), in O(1): what admission adds up. */
  descriptorsReserved(): number;
  /** Descriptors held right now, as exactly as the holder knows; may walk its connections. */
  descriptorsHeld(): number;
}

/** Descriptors kept free of client connections: upstream dials already promised, logs, config reads, DNS, refusals in flight. */
export const MAX_RESERVE = 32;
/** How often the rest of the process is measured while the gateway is past half the ceiling. */
const MEASURE_INTERVAL_MS = 1000;

/** The soft RLIMIT_NOFILE (node raises it to the hard limit at startup), or Infinity when it cannot be read. */
export function readDescriptorLimit(limitsText?: string): number {
  let text = limitsText;
  if (text === undefined) {
    try {
      text = readFileSync('/proc/self/limits', 'latin1');
    } catch {
      return Infinity;
    }
  }
  // "Max open files            1048576              1048576              files"
  const m = /^Max open files\s+(\d+)\s/m.exec(text);
  return m ? Number(m[1]) : Infinity;
}

let statCounts: boolean | null = null; // stat() of /proc/self/fd gives the count (Linux 6.2+)

/** Descriptors this process has open now, from /proc/self/fd. */
export function countOpenDescriptors(): number {
  if (statCounts !== false) {
    const size = statSync('/proc/self/fd').size;
    if (size > 0) {
      statCounts = true;
      return size;
    }
    statCounts = false;
  }
  return readdirSync('/proc/self/fd').length - 1; // less the descriptor readdir itself held
}

export interface DescriptorLimitOptions {
  /** Default: the soft RLIMIT_NOFILE of this process. */
  limit?: number;
  /** Default: 32, or a quarter of the limit when that is smaller. */
  reserve?: number;
  /** Default: `countOpenDescriptors`. */
  countOpen?: () => number;
  /** Default: `Date.now`. */
  clock?: () => number;
}

export class DescriptorLimit {
  /** The soft RLIMIT_NOFILE; Infinity: no guard. */
  readonly limit: number;
  readonly reserve: number;
  /** Client connections are refused once the estimate would pass this. */
  readonly ceiling: number;
  /** Descriptors of the process that are not the gateway's, as last measured; -1: never measured. */
  #others = -1;
  #measuredAt = 0;
  #countOpen: () => number;
  #clock: () => number;

  constructor(options: DescriptorLimitOptions = {}) {
    this.limit = options.limit ?? readDescriptorLimit();
    this.reserve = options.reserve ?? Math.min(MAX_RESERVE, Math.floor(this.limit / 4));
    this.ceiling = this.limit - this.reserve;
    this.#countOpen = options.countOpen ?? countOpenDescriptors;
    this.#clock = options.clock ?? Date.now;
  }

  /** Descriptors in use as last estimated: the holder's reservation plus the rest of the process. */
  estimate(holder: DescriptorHolder): number {
    return holder.descriptorsReserved() + Math.max(0, this.#others);
  }

  /**
   * May a client connection that was just accepted (one descriptor, not yet in
   * `holder`'s count) join? It will need one more for its upstream.
   */
  admits(holder: DescriptorHolder): boolean {
    if (this.limit === Infinity) return true;
    const reserved = holder.descriptorsReserved() + 2;
    if (this.#others < 0 || (reserved + this.#others > this.ceiling / 2 && this.#clock() - this.#measuredAt >= MEASURE_INTERVAL_MS)) {
      this.#measure(holder);
    }
    return reserved + this.#others <= this.ceiling;
  }

  #measure(holder: DescriptorHolder): void {
    let open: number;
    try {
      open = this.#countOpen();
    } catch {
      this.#measuredAt = this.#clock();
      if (this.#others < 0) this.#others = 0; // no /proc: count only what the gateway holds
      return;
    }
    this.#measuredAt = this.#clock();
    // less the socket being admitted, which no holder counts yet
    this.#others = Math.max(0, open - 1 - holder.descriptorsHeld());
  }
}
