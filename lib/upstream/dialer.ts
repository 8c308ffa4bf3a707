// Upstream TCP (or TLS) connect, and the one set of listeners an upstream socket keeps
// for its whole HTTP life. Whoever owns the socket at the moment (an exchange,
// or the pool while it is idle) is `socket[kOwner]`; the listeners dispatch to
// it, so handing a socket from an exchange to the pool and back costs two
// assignments, not a dozen addListener/removeListener calls per request
// (undici keeps `socket[kParser]` the same way). A tunnel takes the socket
// over the same way: its side becomes the owner (tunnel.ts).
//
// The connect timeout lives on the owner's timer-wheel entry, so this file
// only opens the socket and says what a failed connect means. A TLS upstream
// is connected once its handshake is done and its certificate verified
// (against Node's CA store plus the location's own CAs); a verification
// failure is a failed connect, with OpenSSL's reason.

import net from 'node:net';
import tls from 'node:tls';
import { WsgateError } from '../core/errors.js';
import { dispatchRead, newDialSocket, releaseReadBuffer } from '../io/read-buffers.js';
import { guard, type Crashable } from '../core/guard.js';
import { initSocketFields, kHome, kOwner, ownerOfSocket } from '../io/socket-fields.js';
import { TurnWriteSocket } from '../io/turn-writes.js';

export interface UpstreamAddress {
  readonly host: string;
  readonly port: number;
  /** Talk TLS to it, or null. */
  readonly tls?: { readonly ca: readonly Buffer[] | null; readonly verify: boolean; readonly servername: string } | null;
}

/** What an upstream socket's events go to. */
export interface UpstreamOwner {
  connected(): void;
  received(chunk: Buffer): void;
  /** FIN. */
  upstreamEnded(): void;
  /** The socket closed (after FIN, an error, or a destroy). */
  upstreamClosed(): void;
  upstreamFailed(err: NodeJS.ErrnoException): void;
  upstreamDrained(): void;
  /** A bug while handling `received`: end this socket's business, never the process. */
  crashed(err: unknown): void;
}

export { kOwner };

export type UpstreamSocket = net.Socket & {
  [kOwner]: UpstreamOwner | null;
  /** Requests completed on this connection (pool retirement). */
  wsgateRequests?: number;
};

/**
 * Opens a half-close-capable, no-delay socket to `address`, owned by `owner`;
 * errors arrive through it. `home` answers for a listener that throws while
 * nobody owns the socket (core/guard.ts).
 */
export function dialUpstream(address: UpstreamAddress, owner: UpstreamOwner, home: Crashable): UpstreamSocket {
  if (address.tls != null) return dialTls(address, address.tls, owner, home);
  // What net.connect() does, with the socket class that may hold writes back (turn-writes.ts).
  const options = { host: address.host, port: address.port, allowHalfOpen: true, noDelay: true };
  // read-buffers.ts: reads into pooled buffers (no buffer per read) when they are on, else 'data' events.
  const { socket: created, pooled } = newDialSocket(TurnWriteSocket, options, upstreamOnReadGuarded);
  const socket = initSocketFields(created as UpstreamSocket);
  socket.connect(options);
  socket[kOwner] = owner;
  (socket as unknown as { [kHome]: Crashable | null })[kHome] = home;
  for (const [event, listener] of UPSTREAM_LISTENERS) socket.on(event, listener);
  if (!pooled) socket.on('data', upstreamOnDataGuarded);
  socket.on('close', upstreamReleaseBufferGuarded); // 'close' comes once: `once` would add a bound wrapper per socket
  return socket;
}

function dialTls(address: UpstreamAddress, options: NonNullable<UpstreamAddress['tls']>, owner: UpstreamOwner, home: Crashable): UpstreamSocket {
  // allowHalfOpen reaches the TLSSocket (node's tls.connect passes it on), though @types/node omits it.
  const connectOptions = {
    host: address.host,
    port: address.port,
    // RFC 6066 §3: no IP literal as SNI; Node then checks the certificate's IP names.
    servername: net.isIP(options.servername) === 0 ? options.servername : undefined,
    ca: options.ca === null ? undefined : [...tls.rootCertificates, ...options.ca.map((b) => b.toString())],
    rejectUnauthorized: options.verify,
    ALPNProtocols: ['http/1.1'],
    allowHalfOpen: true,
  };
  const socket = initSocketFields(tls.connect(connectOptions as tls.ConnectionOptions) as unknown as UpstreamSocket);
  socket.setNoDelay(true);
  socket[kOwner] = owner;
  (socket as unknown as { [kHome]: Crashable | null })[kHome] = home;
  // Connected once the handshake is done and the certificate checked.
  for (const [event, listener] of UPSTREAM_LISTENERS) socket.on(event === 'connect' ? 'secureConnect' : event, listener);
  socket.on('data', upstreamOnDataGuarded);
  return socket;
}

/** Closes a socket nobody needs any more; its last error (ECONNRESET, EPIPE) concerns nobody. */
export function discardUpstream(socket: UpstreamSocket): void {
  socket[kOwner] = null;
  socket.destroy();
}

/** Maps a socket error raised before the connection was established. */
export function connectError(err: NodeJS.ErrnoException, address: UpstreamAddress): WsgateError {
  const where = `${address.host}:${address.port}`;
  if (err.code === 'ETIMEDOUT') return new WsgateError('WSG_ERR_UPSTREAM_CONNECT_TIMEOUT', where, { cause: err });
  // A TLS upstream whose certificate did not verify: say why (OpenSSL's code and message).
  if (isTlsVerifyError(err)) return new WsgateError('WSG_ERR_UPSTREAM_CONNECT', `${where}: TLS certificate not accepted: ${err.code}: ${err.message}`, { cause: err });
  return new WsgateError('WSG_ERR_UPSTREAM_CONNECT', `${where}: ${err.code ?? err.message}`, { cause: err });
}

function upstreamOnConnect(this: UpstreamSocket): void {
  this[kOwner]?.connected();
}
// With pooled reads Node emits no 'data': reads arrive here, for the owner.
function upstreamOnRead(this: net.Socket, nread: number, buffer: Uint8Array): boolean {
  dispatchRead(this as UpstreamSocket, nread, buffer as Buffer, upstreamDispatch);
  return true; // keep reading: owners pause() when their writes back up
}
function upstreamDispatch(socket: UpstreamSocket, chunk: Buffer): void {
  const owner = socket[kOwner];
  if (owner === null) {
    socket.destroy(); // bytes nobody waits for: the connection is out of step
    return;
  }
  try {
    owner.received(chunk);
  } catch (err) {
    owner.crashed(err);
  }
}
// Without pooled reads, reads come as 'data' events: the same dispatch, minus the buffer bookkeeping.
function upstreamOnData(this: UpstreamSocket, chunk: Buffer): void {
  const owner = this[kOwner];
  if (owner === null) {
    this.destroy(); // bytes nobody waits for: the connection is out of step
    return;
  }
  owner.received(chunk);
}
function upstreamReleaseBuffer(this: UpstreamSocket): void {
  releaseReadBuffer(this);
}
function upstreamOnEnd(this: UpstreamSocket): void {
  this[kOwner]?.upstreamEnded();
}
function upstreamOnError(this: UpstreamSocket, err: NodeJS.ErrnoException): void {
  this[kOwner]?.upstreamFailed(err); // with no owner the error is dropped: the socket is being thrown away
}
function upstreamOnClose(this: UpstreamSocket): void {
  this[kOwner]?.upstreamClosed();
}
function upstreamOnDrain(this: UpstreamSocket): void {
  this[kOwner]?.upstreamDrained();
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
const UPSTREAM_LISTENERS: ReadonlyArray<readonly [string, (this: UpstreamSocket, ...args: any[]) => unknown]> = [
  ['connect', guard('upstream', 'connect', upstreamOnConnect, ownerOfSocket)],
  ['end', guard('upstream', 'end', upstreamOnEnd, ownerOfSocket)],
  ['error', guard('upstream', 'error', upstreamOnError, ownerOfSocket)],
  ['close', guard('upstream', 'close', upstreamOnClose, ownerOfSocket)],
  ['drain', guard('upstream', 'drain', upstreamOnDrain, ownerOfSocket)],
];
const upstreamOnReadGuarded = guard('upstream', 'read', upstreamOnRead, ownerOfSocket) as (this: net.Socket, nread: number, buffer: Uint8Array) => boolean;
const upstreamOnDataGuarded = guard('upstream', 'data', upstreamOnData, ownerOfSocket);
const upstreamReleaseBufferGuarded = guard('upstream', 'release', upstreamReleaseBuffer, ownerOfSocket);

function isTlsVerifyError(err: NodeJS.ErrnoException): boolean {
  return err.code === 'ERR_TLS_CERT_ALTNAME_INVALID' || (typeof err.code === 'string' && /CERT|SELF_SIGNED|UNABLE_TO_(GET|VERIFY)/.test(err.code) && !err.code.startsWith('ERR_SSL'));
}
