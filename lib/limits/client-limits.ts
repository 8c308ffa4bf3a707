// Limits per client address (nginx limit_conn / limit_req by $binary_remote_addr,
// HAProxy's stick tables): how many connections one client may hold open,
// tunnels included, and how many it may open per second. The address is the
// client's after the PROXY protocol; a trusted proxy's connections are not
// counted (it carries many clients: limit at that proxy).
//
// The rate is a token bucket per address: `rate` tokens a second, as many at
// most, one per connection. A client far past its limits (more refusals in a
// second than its limit allows connections, and at least 100) is closed at
// accept without an answer: writing 503s would cost more than it is worth.

import { WsgateError } from '../core/errors.js';

/** A connection rate: `perSecond` connections a second (from "N/s" or "N/m"). */
export interface ConnectionRate {
  readonly perSecond: number;
}

interface Client {
  open: number;
  tokens: number;
  /** When `tokens` was last brought up to date (ms). */
  at: number;
  /** Refusals in the second starting at `refusedSince`. */
  refused: number;
  refusedSince: number;
}

/** The verdict on a new connection. */
export type ClientVerdict = 'admit' | 'refuse' | 'drop';

// Forgotten clients: swept when the table grows past this (an entry is kept while a connection is open or its bucket refills).
const SWEEP_AT = 65_536;

export class ClientLimits {
  #maxOpen: number;
  #rate: number;
  readonly #clients = new Map<string, Client>();
  /** Connections refused or dropped for a per-client limit, since start. */
  refused = 0;

  /** `maxOpen` 0 and `rate` null: no limit. */
  constructor(maxOpen: number, rate: ConnectionRate | null) {
    this.#maxOpen = maxOpen;
    this.#rate = rate?.perSecond ?? 0;
  }

  /** New limits (a reload): counts of open connections are kept. */
  configure(maxOpen: number, rate: ConnectionRate | null): void {
    this.#maxOpen = maxOpen;
    this.#rate = rate?.perSecond ?? 0;
  }

  get enabled(): boolean {
    return this.#maxOpen > 0 || this.#rate > 0;
  }

  /** Whether `address` may open one more connection now; `admit` counts it open (call `closed` when it closes). */
  admit(address: string, now: number): { verdict: ClientVerdict; error: WsgateError | null } {
    let client = this.#clients.get(address);
    if (client === undefined) {
      if (this.#clients.size >= SWEEP_AT) this.#sweep(now);
      client = { open: 0, tokens: this.#rate, at: now, refused: 0, refusedSince: now };
      this.#clients.set(address, client);
    }
    let error: WsgateError | null = null;
    if (this.#maxOpen > 0 && client.open >= this.#maxOpen) {
      error = new WsgateError('WSG_ERR_CLIENT_LIMIT', `${address} has ${client.open} connections open (maxConnectionsPerClient ${this.#maxOpen})`);
    } else if (this.#rate > 0) {
      client.tokens = Math.min(this.#rate, client.tokens + ((now - client.at) * this.#rate) / 1000);
      client.at = now;
      if (client.tokens < 1) error = new WsgateError('WSG_ERR_CLIENT_LIMIT', `${address} opens connections faster than ${this.#rate}/s (connectionRatePerClient)`);
      else client.tokens -= 1;
    }
    if (error === null) {
      client.open++;
      return { verdict: 'admit', error: null };
    }
    this.refused++;
    if (now - client.refusedSince >= 1000) {
      client.refusedSince = now;
      client.refused = 0;
    }
    client.refused++;
    const budget = Math.max(100, this.#maxOpen, this.#rate);
    return { verdict: client.refused > budget ? 'drop' : 'refuse', error };
  }

  /** A connection `admit` counted has closed (or its tunnel has). */
  closed(address: string): void {
    const client = this.#clients.get(address);
    if (client !== undefined && client.open > 0) client.open--;
  }

  /** Open connections counted for `address` (tests, stats). */
  openFor(address: string): number {
    return this.#clients.get(address)?.open ?? 0;
  }

  /** Forgets clients with nothing open whose bucket is full again. */
  #sweep(now: number): void {
    for (const [address, client] of this.#clients) {
      const full = this.#rate === 0 || client.tokens + ((now - client.at) * this.#rate) / 1000 >= this.#rate;
      if (client.open === 0 && full) this.#clients.delete(address);
    }
  }
}

/** Parses "N/s", "N/m" or a number (per second); null when `text` is none of them. */
export function parseConnectionRate(value: unknown): ConnectionRate | null {
  if (typeof value === 'number') return Number.isFinite(value) && value > 0 ? { perSecond: value } : null;
  if (typeof value !== 'string') return null;
  const m = /^\s*(\d+(?:\.\d+)?)\s*\/\s*(s|m)\s*$/.exec(value);
  if (m === null || Number(m[1]) <= 0) return null;
  return { perSecond: m[2] === 's' ? Number(m[1]) : Number(m[1]) / 60 };
}
