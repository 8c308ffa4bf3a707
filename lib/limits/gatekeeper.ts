// The checks a new connection passes before anything reads it, in order:
// maxConnections (all open connections, tunnels included), the descriptor
// limit (issue #6: past it libuv would close new connections unseen), and the
// per-client limits (client-limits.ts). One that fails is answered with a 503
// and closed (refusals.ts), or, far past its client's limits, closed at once.

import type net from 'node:net';
import { ClientLimits, type ConnectionRate } from './client-limits.js';
import type { DescriptorHolder } from './descriptor-limit.js';
import { Refusals, type RefusalHost } from './refusals.js';
import { WsgateError } from '../core/errors.js';
import { RateLimitedLog } from '../core/log.js';
import { whenGone } from '../io/socket-fields.js';

/** The limits, from the config (replaced on reload). */
export interface GateLimits {
  readonly maxConnections: number;
  readonly maxConnectionsPerClient: number;
  readonly connectionRatePerClient: ConnectionRate | null;
  /** Their connections are not counted per client: they carry many clients (http/trusted-proxies.ts). */
  readonly trustedProxies: { contains(address: string): boolean };
}

export class Gatekeeper {
  readonly refusals: Refusals;
  readonly #clients: ClientLimits;
  readonly #clientLog: RateLimitedLog;
  readonly #openConnections: () => number;
  #limits: GateLimits;

  /** `openConnections`: client connections open now, tunnels included; `holder` counts descriptors held (refusals.ts). */
  constructor(host: RefusalHost, holder: DescriptorHolder, openConnections: () => number, limits: GateLimits) {
    this.refusals = new Refusals(host, holder);
    this.#clients = new ClientLimits(limits.maxConnectionsPerClient, limits.connectionRatePerClient);
    this.#clientLog = new RateLimitedLog((level, message, fields) => host.log(level, message, fields));
    this.#openConnections = openConnections;
    this.#limits = limits;
  }

  /** New limits (a reload); per-client counts of open connections are kept. */
  configure(limits: GateLimits): void {
    this.#limits = limits;
    this.#clients.configure(limits.maxConnectionsPerClient, limits.connectionRatePerClient);
  }

  /** Connections refused or closed at accept for a per-client limit, since start. */
  get clientRefusals(): number {
    return this.#clients.refused;
  }

  /**
   * Whether the connection `socket` from `client` (its address after the PROXY
   * protocol) may be served. When not, it has been answered or closed here.
   * An admitted one counts against its client until its socket closes.
   */
  admit(socket: net.Socket, client: string): boolean {
    const max = this.#limits.maxConnections;
    if (max > 0 && this.#openConnections() >= max) {
      this.refusals.refuse(socket, new WsgateError('WSG_ERR_TOO_MANY_CONNECTIONS', `${max} open`), true);
      return false;
    }
    if (!this.refusals.admitsOneMore()) {
      this.refusals.refuseForDescriptors(socket, new WsgateError('WSG_ERR_DESCRIPTOR_LIMIT', this.refusals.describeUse()));
      return false;
    }
    if (!this.#clients.enabled || this.#limits.trustedProxies.contains(client)) return true;
    const { verdict, error } = this.#clients.admit(client, Date.now());
    if (verdict === 'admit') {
      whenGone(socket, () => this.#clients.closed(client)); // follows the socket into its tunnel, even one on handles
      return true;
    }
    this.#clientLog.log('warn', error!.message, { code: 'WSG_ERR_CLIENT_LIMIT', status: verdict === 'refuse' ? 503 : 0, remote: client, refused: this.#clients.refused });
    if (verdict === 'refuse') {
      this.refusals.refuse(socket, error!, false);
    } else {
      socket.on('error', () => {});
      socket.destroy();
    }
    return false;
  }
}
