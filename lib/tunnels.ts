// The gateway's book of open tunnels: exchanges register each tunnel they
// build here (proxy/exchange.ts `#upgrade`, through TunnelRegistry); it numbers
// them, keeps what `tunnelOpen` / `tunnelClose` report, counts bytes of closed
// ones for stats(), and destroys them all at the end of a drain.

import type { TunnelRegistry } from './proxy/exchange.js';
import type { RouteMatch } from './http/router.js';
import type { LogLevel } from './core/log.js';
import type { Tunnel, TunnelCloseReason } from './tunnel/tunnel.js';

export interface TunnelInfo {
  readonly id: number;
  /** Client address. */
  readonly remoteAddress: string;
  /** Request path as the client sent it. */
  readonly path: string;
  /** Upstream URL of the matched location. */
  readonly upstream: string;
}

export interface TunnelCloseInfo extends TunnelInfo {
  readonly reason: TunnelCloseReason;
  readonly bytesToUpstream: number;
  readonly bytesToDownstream: number;
  readonly durationMs: number;
}

/** What the book reports to (gateway.ts). */
export interface TunnelBookHost {
  opened(info: TunnelInfo): void;
  closed(info: TunnelCloseInfo): void;
  /** A tunnel's listener threw (a bug): log and count it. */
  crashed(err: unknown, info: TunnelInfo | undefined): void;
  /** A tunnel was built with both sides gone already: a drain may have been waiting on it. */
  stillborn(): void;
  log(level: LogLevel, message: string, fields?: Record<string, unknown>): void;
}

export class TunnelBook implements TunnelRegistry {
  readonly #host: TunnelBookHost;
  readonly #open = new Map<Tunnel, TunnelInfo>();
  #nextId = 1;
  /** Tunnels opened since start. */
  total = 0;
  #closedBytesToUpstream = 0;
  #closedBytesToDownstream = 0;

  constructor(host: TunnelBookHost) {
    this.#host = host;
  }

  /** Open tunnels. */
  get size(): number {
    return this.#open.size;
  }

  /** Payload bytes both ways, closed and open tunnels, and how many open ones keep only their handles. */
  bytes(): { toUpstream: number; toDownstream: number; onHandles: number } {
    let toUpstream = this.#closedBytesToUpstream;
    let toDownstream = this.#closedBytesToDownstream;
    let onHandles = 0;
    for (const tunnel of this.#open.keys()) {
      toUpstream += tunnel.bytesToUpstream;
      toDownstream += tunnel.bytesToDownstream;
      if (tunnel.onHandles) onHandles++;
    }
    return { toUpstream, toDownstream, onHandles };
  }

  /** Destroys every open tunnel (the end of a drain). */
  destroyAll(reason: TunnelCloseReason): void {
    for (const tunnel of this.#open.keys()) tunnel.destroy(reason);
  }

  opened(tunnel: Tunnel, remoteAddress: string, path: string, route: RouteMatch): void {
    if (tunnel.isClosed) {
      this.#host.stillborn(); // both sides were gone already; the close callback ran
      return;
    }
    const info: TunnelInfo = { id: this.#nextId++, remoteAddress, path, upstream: route.location.upstream.url };
    this.#open.set(tunnel, info);
    this.total++;
    this.#host.log('debug', 'tunnel open', { id: info.id, remote: info.remoteAddress, path: info.path, upstream: info.upstream });
    this.#host.opened(info);
  }

  /** One callback for every tunnel (a closure per tunnel would stay for its life). */
  readonly closed = (tunnel: Tunnel, reason: TunnelCloseReason): void => {
    const opened = this.#open.get(tunnel);
    this.#closedBytesToUpstream += tunnel.bytesToUpstream;
    this.#closedBytesToDownstream += tunnel.bytesToDownstream;
    if (opened === undefined) return;
    this.#open.delete(tunnel);
    const info: TunnelCloseInfo = {
      ...opened,
      reason,
      bytesToUpstream: tunnel.bytesToUpstream,
      bytesToDownstream: tunnel.bytesToDownstream,
      durationMs: Date.now() - tunnel.startedAt,
    };
    this.#host.log(reason === 'idle' || reason === 'done' ? 'debug' : 'info', 'tunnel closed', { id: info.id, reason, up: info.bytesToUpstream, down: info.bytesToDownstream, ms: info.durationMs });
    this.#host.closed(info);
  };

  /** A tunnel listener threw: the tunnel is destroyed; the host logs and counts the bug. */
  readonly crashed = (tunnel: Tunnel, err: unknown): void => {
    this.#host.crashed(err, this.#open.get(tunnel));
  };
}
