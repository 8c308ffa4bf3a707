// Admission of one request head: everything decided before an upstream is
// touched, in RFC order: Host (RFC 9112 §3.2), request-target form and path
// (§3.2.2, normalize-path.ts), the WebSocket handshake pre-check (RFC 6455
// §4.1), routing (router.ts), and the Origin allow-list (RFC 6455 §10.2).
// Either an ExchangeRequest to proxy or the typed error to answer.

import { normalizeTransferCodings } from './body-framing.js';
import { WsgateError } from '../core/errors.js';
import { checkUpgradeRequest, originAllowed } from './handshake.js';
import { findHeader, type ParsedHead } from './head-reader.js';
import { asksForWebSocket, scanRequestHeaders } from './headers.js';
import { normalizeTarget } from './normalize-path.js';
import type { RouteMatch, Router } from './router.js';

// RFC 9110 §5.6.2 token.
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9a-z]+$/;

// Characters of a host (reg-name, IP literal, port) as RFC 3986 §3.2.2 allows them.
const HOST_CHARS = /^[A-Za-z0-9.\-_~!$&'()*+,;=:[\]%]+$/;

/** A request wsgate answers itself (`OPTIONS` with `Max-Forwards: 0`, RFC 9110 §7.6.2). */
export class LocalAnswer {
  constructor(readonly response: Buffer) {}
}

// RFC 9110 §7.6.2: at Max-Forwards 0 the recipient answers as the final recipient.
// What it can say of itself: the methods it forwards (the 405's Allow).
const OPTIONS_ANSWER = new LocalAnswer(
  Buffer.from('HTTP/1.1 200 OK\r\nAllow: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, QUERY\r\nContent-Length: 0\r\nConnection: close\r\n\r\n', 'latin1'),
);

/** An admitted request: what its exchange needs to proxy it. */
export interface ExchangeRequest {
  readonly head: ParsedHead;
  readonly route: RouteMatch;
  readonly webSocket: boolean;
  /** Host to send upstream and the one the client gave (null if none). */
  readonly host: string;
  readonly clientHost: string | null;
  /** The request's Connection tokens. */
  readonly connection: ReadonlySet<string>;
  /** Request body framing as llhttp read it. */
  readonly chunked: boolean;
  /** With `chunked`: the Transfer-Encoding to send upstream (codings kept, ending in `chunked`). */
  readonly transferCodings: string | null;
  readonly contentLength: number;
}

/**
 * `afterUpgradeHead`: llhttp (or node's server) stopped at the end of this
 * head because it asked to upgrade, so whatever follows was never parsed.
 */
export function admitRequest(head: ParsedHead, router: Router, afterUpgradeHead: boolean): ExchangeRequest | WsgateError | LocalAnswer {
  // CONNECT asks for a tunnel to any host (RFC 9110 §9.3.6): not a reverse proxy's
  // job, and a 2xx to it would turn a pooled upstream connection into a tunnel.
  if (head.method === 'CONNECT' || head.method === '') return new WsgateError('WSG_ERR_METHOD_NOT_ALLOWED', head.method || 'unknown method');
  // TRACE echoes the request, cookies and credentials included (cross-site tracing); nginx refuses it too.
  if (head.method === 'TRACE') return new WsgateError('WSG_ERR_METHOD_NOT_ALLOWED', 'TRACE');
  // llhttp takes `GET /x` without a version as HTTP/0.9, and reads HTTP/2.0 or 3.0 request-lines.
  if (head.versionMajor !== 1) return new WsgateError('WSG_ERR_HTTP_VERSION', `HTTP/${head.versionMajor}.${head.versionMinor}`);
  const info = scanRequestHeaders(head.rawHeaders);
  const hostCount = info.hostCount;
  // RFC 9112 §3.2: a 1.1 request has exactly one Host; none or several is a 400.
  if (hostCount > 1 || (hostCount === 0 && head.versionMinor >= 1)) {
    return new WsgateError('WSG_ERR_MISSING_HOST', `${hostCount} Host fields`);
  }
  let clientHost = hostCount === 1 ? info.host!.trim() : null;
  let target = head.url;
  // RFC 9112 §3.2.4: `OPTIONS *` asks about the server, not a resource; so does an
  // absolute-form OPTIONS with an empty path, which the last proxy sends as `*`.
  let asterisk = head.method === 'OPTIONS' && target === '*';
  const absolute = /^https?:\/\/([^/?#]*)/i.exec(target);
  if (absolute) {
    // RFC 9112 §3.2.2: with absolute-form the authority replaces Host.
    clientHost = absolute[1];
    target = target.slice(absolute[0].length);
    if (target === '' && head.method === 'OPTIONS') asterisk = true;
    target ||= '/';
    if (!target.startsWith('/')) target = '/' + target;
  }
  if (asterisk) {
    target = '/'; // routed as the server's root location
    if (maxForwards(head.rawHeaders) === 0) return OPTIONS_ANSWER;
  } else if (head.method === 'OPTIONS' && maxForwards(head.rawHeaders) === 0) {
    return OPTIONS_ANSWER;
  }
  if (clientHost !== null && !HOST_CHARS.test(clientHost)) {
    return new WsgateError('WSG_ERR_MISSING_HOST', `invalid Host ${JSON.stringify(clientHost)}`);
  }
  const normalized = normalizeTarget(target);
  if (normalized === null) return new WsgateError('WSG_ERR_BAD_PATH', JSON.stringify(head.url.slice(0, 200)));

  const { transferEncoding, contentLength } = info;
  if (transferEncoding !== undefined) {
    // RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 means faulty framing (nginx: 400);
    // a Transfer-Encoding without codings is ignored by llhttp, which framed the body
    // by Content-Length: forwarding it would let the upstream frame it otherwise.
    if (head.versionMinor === 0) return new WsgateError('WSG_ERR_BAD_REQUEST', 'Transfer-Encoding in an HTTP/1.0 request');
    if (!chunkedOnceAndLast(transferEncoding)) return new WsgateError('WSG_ERR_BAD_REQUEST', `Transfer-Encoding ${JSON.stringify(transferEncoding.slice(0, 100))}`);
  }
  let webSocket = asksForWebSocket(info);
  // llhttp decides where the head ends; if it did not read the same upgrade
  // (e.g. `Connection: upgrade<TAB>`), the bytes after it are parsed as HTTP.
  if (webSocket && !head.upgrade) return new WsgateError('WSG_ERR_BAD_REQUEST', 'Connection/Upgrade read differently by the parser');
  if (webSocket) {
    const bad = checkUpgradeRequest(head);
    if (bad) return bad;
  }
  let route = router.match(clientHost, normalized.path, normalized.query);
  if (route === null) return new WsgateError('WSG_ERR_NO_ROUTE', `${clientHost ?? ''}${normalized.path}`);
  if (route.upstreamTarget === null) {
    return new WsgateError('WSG_ERR_BAD_PATH', `${normalized.path} leaves the upstream path of ${route.location.upstream.url}`);
  }
  if (asterisk) route = { ...route, upstreamTarget: '*' };
  // A location without WebSockets forwards the request as plain HTTP (Upgrade stripped).
  if (!route.location.websocket) webSocket = false;
  if (webSocket) {
    const origin = findHeader(head.rawHeaders, 'origin');
    if (!originAllowed(origin, route.location.allowedOrigins)) return new WsgateError('WSG_ERR_ORIGIN_NOT_ALLOWED', JSON.stringify(origin));
  }
  // An upgrade wsgate will not perform (`Upgrade: h2c`, or WebSockets off here):
  // a body after such a head was never parsed, so it cannot be forwarded.
  if (!webSocket && afterUpgradeHead && (transferEncoding !== undefined || (contentLength !== undefined && Number(contentLength) > 0))) {
    return new WsgateError('WSG_ERR_BAD_REQUEST', 'upgrade request with a body');
  }

  const upstream = route.location.upstream;
  return {
    head,
    route,
    webSocket,
    host: clientHost ?? (upstream.host.includes(':') ? `[${upstream.host}]` : upstream.host) + (upstream.port === 80 ? '' : `:${upstream.port}`),
    clientHost,
    connection: info.connection,
    chunked: transferEncoding !== undefined,
    transferCodings: transferEncoding === undefined ? null : normalizeTransferCodings(transferEncoding),
    contentLength: contentLength === undefined ? 0 : Number(contentLength),
  };
}

/**
 * RFC 9112 §6.1/§7.1: `chunked` is applied exactly once, last, and takes no
 * parameters; every coding is a token. llhttp accepts e.g. `chunked;q=1, chunked`
 * or `"chunked", chunked`, which an upstream may read as chunked twice, and it
 * ignores an empty value altogether. wsgate forwards only plain token lists.
 */
function chunkedOnceAndLast(value: string): boolean {
  const codings = value.split(',').map((c) => c.trim().toLowerCase()).filter((c) => c !== '');
  if (codings.length === 0 || codings[codings.length - 1] !== 'chunked') return false;
  for (let i = 0; i < codings.length - 1; i++) {
    if (codings[i] === 'chunked' || !TOKEN.test(codings[i])) return false;
  }
  return true;
}

/** The Max-Forwards value (RFC 9110 §7.6.2: 1*DIGIT), or null when absent or not a number. */
export function maxForwards(rawHeaders: readonly string[]): number | null {
  const value = findHeader(rawHeaders, 'max-forwards')?.trim();
  return value !== undefined && /^[0-9]{1,9}$/.test(value) ? Number(value) : null;
}
