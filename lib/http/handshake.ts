// The WebSocket handshake checks on both sides of the proxy (RFC 6455 §4).
// wsgate tunnels only when the client really asked for a WebSocket and the
// upstream really agreed: a 101 that echoes `Upgrade: websocket` and the
// client's key. Anything else is an ordinary response and the connection is
// never spliced, which closes the WebSocket-smuggling hole (0ang3el,
// "websocket-smuggle", 2019) where a proxy trusts a refused upgrade.

import { hash } from 'node:crypto';
import { WsgateError } from '../core/errors.js';
import type { ResolvedLocation } from '../config.js';
import { connectionTokens, upgradeListsWebSocket } from './headers.js';
import { countHeader, findHeader, type ParsedHead } from './head-reader.js';

const WEBSOCKET_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'; // RFC 6455 §1.3
// RFC 6455 §4.1: the key is the base64 of 16 bytes: 22 characters and `==`.
const KEY_PATTERN = /^[A-Za-z0-9+/]{21}[AQgw]==$/;

/** Pre-check of an upgrade request; returns null when it may go upstream. */
export function checkUpgradeRequest(head: ParsedHead): WsgateError | null {
  // RFC 6455 §4.1: the handshake is a GET of HTTP/1.1 or later.
  if (head.method !== 'GET') return new WsgateError('WSG_ERR_BAD_WEBSOCKET_HANDSHAKE', `method ${head.method}`);
  if (head.versionMajor !== 1 || head.versionMinor < 1) {
    return new WsgateError('WSG_ERR_BAD_WEBSOCKET_HANDSHAKE', `HTTP/${head.versionMajor}.${head.versionMinor}`);
  }
  // A body would become tunnel bytes the upstream never framed: a smuggled request.
  const length = findHeader(head.rawHeaders, 'content-length');
  if ((length !== undefined && length.trim() !== '0') || findHeader(head.rawHeaders, 'transfer-encoding') !== undefined) {
    return new WsgateError('WSG_ERR_BAD_WEBSOCKET_HANDSHAKE', 'upgrade request with a body');
  }
  if (countHeader(head.rawHeaders, 'sec-websocket-key') !== 1) {
    return new WsgateError('WSG_ERR_BAD_WEBSOCKET_HANDSHAKE', 'missing or repeated Sec-WebSocket-Key');
  }
  const key = findHeader(head.rawHeaders, 'sec-websocket-key')!.trim();
  if (!KEY_PATTERN.test(key)) return new WsgateError('WSG_ERR_BAD_WEBSOCKET_HANDSHAKE', 'Sec-WebSocket-Key is not 16 bytes of base64');
  const version = findHeader(head.rawHeaders, 'sec-websocket-version');
  if (version === undefined) return new WsgateError('WSG_ERR_BAD_WEBSOCKET_HANDSHAKE', 'no Sec-WebSocket-Version');
  // RFC 6455 §4.4: another version is answered 426 with the version wsgate speaks.
  if (version.trim() !== '13') return new WsgateError('WSG_ERR_WEBSOCKET_VERSION', `Sec-WebSocket-Version ${JSON.stringify(version)}`);
  return null;
}

export function acceptFor(key: string): string {
  return hash('sha1', key + WEBSOCKET_GUID, 'base64'); // one-shot: no Hash object per handshake
}

/** Post-check of the upstream's 101; returns null when the pair may become a tunnel. */
export function checkSwitchingProtocols(request: ParsedHead, response: ParsedHead, checkAccept: boolean): WsgateError | null {
  if (!upgradeListsWebSocket(response.rawHeaders)) {
    return new WsgateError('WSG_ERR_UPSTREAM_BAD_RESPONSE', '101 without Upgrade: websocket');
  }
  if (!connectionTokens(response.rawHeaders).has('upgrade')) {
    return new WsgateError('WSG_ERR_UPSTREAM_BAD_RESPONSE', '101 without Connection: upgrade');
  }
  if (checkAccept) {
    const key = findHeader(request.rawHeaders, 'sec-websocket-key')!.trim();
    const accept = findHeader(response.rawHeaders, 'sec-websocket-accept');
    if (accept === undefined || accept.trim() !== acceptFor(key)) {
      return new WsgateError('WSG_ERR_UPSTREAM_BAD_RESPONSE', '101 whose Sec-WebSocket-Accept does not match the key');
    }
  }
  return null;
}

/**
 * Cross-Site WebSocket Hijacking guard (RFC 6455 §10.2): a browser always sends
 * Origin with a WebSocket handshake, so a page on another site is refused.
 * No Origin (a non-browser client) passes.
 */
export function originAllowed(origin: string | undefined, allowed: ResolvedLocation['allowedOrigins']): boolean {
  if (allowed === null || origin === undefined) return true;
  const value = origin.trim().toLowerCase();
  if (allowed.exact.has(value)) return true;
  const m = /^https?:\/\/([^/:]+|\[[^\]]+\])(?::\d+)?$/.exec(value);
  if (m === null) return false; // `null` (sandboxed or file pages) and anything malformed
  const host = m[1];
  return allowed.hostSuffixes.some((suffix) => host.length > suffix.length && host.endsWith(suffix));
}
