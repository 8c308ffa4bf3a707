// Upstream TCP connect. The connect timeout lives on the caller's timer-wheel
// entry (one timer per connection, whatever its phase), so this file only
// opens the socket and says what a failed connect means.

import net from 'node:net';
import { WsgateError } from './errors.js';

export interface UpstreamAddress {
  readonly host: string;
  readonly port: number;
}

/** Opens a half-close-capable, no-delay socket to `address`; errors arrive as 'error' events. */
export function dialUpstream(address: UpstreamAddress): net.Socket {
  const socket = net.connect({ host: address.host, port: address.port, allowHalfOpen: true, noDelay: true });
  return socket;
}

/** Maps a socket error raised before the connection was established. */
export function connectError(err: NodeJS.ErrnoException, address: UpstreamAddress): WsgateError {
  const where = `${address.host}:${address.port}`;
  if (err.code === 'ETIMEDOUT') return new WsgateError('WSG_ERR_UPSTREAM_CONNECT_TIMEOUT', where, { cause: err });
  return new WsgateError('WSG_ERR_UPSTREAM_CONNECT', `${where}: ${err.code ?? err.message}`, { cause: err });
}
