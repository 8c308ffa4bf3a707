// Header rewriting between the two sides. A proxy is a new connection on each
// side, so connection-specific ("hop-by-hop") fields end here and wsgate writes
// its own (RFC 9110 §7.6.1), then adds the forwarding fields nginx users set by
// hand (X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host, X-Real-IP).

import type { ResolvedLocation } from '../config.js';
import type { ParsedHead } from './head-reader.js';
import { reasonPhrase } from '../core/responses.js';
import type { TrustedProxies } from './trusted-proxies.js';

// Always hop-by-hop, whether or not Connection names them (RFC 9110 §7.6.1).
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection', // non-standard but still sent by libcurl and old browsers
  'te',
  'trailer',
  'transfer-encoding', // wsgate frames the body itself (RFC 9112 §6.1)
  'upgrade',
  'proxy-authorization', // credentials for this proxy, not for the upstream
  'proxy-authenticate',
  'http2-settings', // h2c upgrade parameters (RFC 7540 §3.2.1): never forwarded
]);

// Fields a client may name in Connection that a proxy must still not drop:
// dropping them would change the message's routing or framing
// (N. Davison, "Abusing HTTP hop-by-hop request headers", 2019).
const NOT_NOMINABLE = new Set(['host', 'content-length']);

// Forwarding claims: wsgate writes its own, building on a trusted peer's
// (trusted-proxies.ts); an untrusted peer's are dropped, Forwarded included.
const FORWARDING = new Set(['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-real-ip', 'forwarded']);

const NO_TOKENS: ReadonlySet<string> = new Set();

// What a header name means to the rewrite (names not listed are forwarded as
// they are). Looked up by length, then compared: a Map keyed by strings would
// first intern each header name node made for this request (a V8 runtime call,
// ~650 instructions a lookup; RESULTS.md, "HTTP request instructions").
const Field = { None: 0, HopByHop: 1, ContentLength: 2, Host: 3, Forwarding: 4, Expect: 5, MaxForwards: 6 } as const;
type Field = (typeof Field)[keyof typeof Field];
const FIELDS_BY_LENGTH: Array<Array<readonly [string, Field]> | undefined> = [];
for (const entry of [
  ...[...HOP_BY_HOP].map((name) => [name, Field.HopByHop] as const),
  ...[...FORWARDING].map((name) => [name, Field.Forwarding] as const),
  ['content-length', Field.ContentLength] as const,
  ['host', Field.Host] as const,
  ['expect', Field.Expect] as const,
  ['max-forwards', Field.MaxForwards] as const,
]) {
  (FIELDS_BY_LENGTH[entry[0].length] ??= []).push(entry);
}

/** A lower-cased name's meaning to the rewrite. */
function fieldOf(lower: string): Field {
  const candidates = FIELDS_BY_LENGTH[lower.length];
  if (candidates !== undefined) for (const [name, field] of candidates) if (name === lower) return field;
  return Field.None;
}

// The Connection values nearly every peer sends, read without splitting.
// These sets are shared: addTokens copies one before adding to it.
const COMMON_TOKENS = new Map<string, Set<string>>(
  ['keep-alive', 'Keep-Alive', 'close', 'Close', 'upgrade', 'Upgrade'].map((value) => [value, new Set([value.toLowerCase()])]),
);
const SHARED_TOKENS = new Set<ReadonlySet<string>>(COMMON_TOKENS.values());

function addTokens(tokens: Set<string> | null, value: string): Set<string> {
  if (tokens === null) {
    const common = COMMON_TOKENS.get(value);
    if (common !== undefined) return common;
  }
  const set = tokens === null ? new Set<string>() : SHARED_TOKENS.has(tokens) ? new Set(tokens) : tokens;
  for (const part of value.split(',')) {
    const token = part.trim().toLowerCase();
    if (token !== '') set.add(token);
  }
  return set;
}

/** Lower-cased tokens of every Connection field (RFC 9110 §7.6.1: a comma-separated list, possibly on several lines). */
export function connectionTokens(rawHeaders: readonly string[]): ReadonlySet<string> {
  let tokens: Set<string> | null = null;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    if (rawHeaders[i].length === 10 && rawHeaders[i].toLowerCase() === 'connection') tokens = addTokens(tokens, rawHeaders[i + 1]);
  }
  return tokens ?? NO_TOKENS;
}

/** What routing and framing need from a request head, read in one pass. */
export interface RequestHeaderInfo {
  hostCount: number;
  /** The first Host value. */
  host: string | undefined;
  /** Connection tokens, lower-cased. */
  connection: ReadonlySet<string>;
  /** An Upgrade field lists `websocket`. */
  upgradeWebSocket: boolean;
  transferEncoding: string | undefined;
  contentLength: string | undefined;
}

/** One pass over the fields; only names of a length that can matter are lower-cased. */
export function scanRequestHeaders(rawHeaders: readonly string[]): RequestHeaderInfo {
  const info: RequestHeaderInfo = { hostCount: 0, host: undefined, connection: NO_TOKENS, upgradeWebSocket: false, transferEncoding: undefined, contentLength: undefined };
  let tokens: Set<string> | null = null;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i];
    switch (name.length) {
      case 4:
        if (name.toLowerCase() === 'host') {
          if (info.hostCount++ === 0) info.host = rawHeaders[i + 1];
        }
        break;
      case 7:
        if (!info.upgradeWebSocket && name.toLowerCase() === 'upgrade') info.upgradeWebSocket = listsWebSocket(rawHeaders[i + 1]);
        break;
      case 10:
        if (name.toLowerCase() === 'connection') tokens = addTokens(tokens, rawHeaders[i + 1]);
        break;
      case 14:
        if (info.contentLength === undefined && name.toLowerCase() === 'content-length') info.contentLength = rawHeaders[i + 1];
        break;
      case 17:
        // Several lines form one list (RFC 9110 §5.3), as llhttp reads them.
        if (name.toLowerCase() === 'transfer-encoding') {
          info.transferEncoding = info.transferEncoding === undefined ? rawHeaders[i + 1] : `${info.transferEncoding}, ${rawHeaders[i + 1]}`;
        }
        break;
    }
  }
  if (tokens !== null) info.connection = tokens;
  return info;
}

function listsWebSocket(value: string): boolean {
  // A protocol token may carry a version (`websocket/13` is not WebSocket as RFC 6455 registers it).
  for (const part of value.split(',')) if (part.trim().toLowerCase() === 'websocket') return true;
  return false;
}

/** True when any Upgrade field lists the `websocket` token (RFC 6455 §4.1, RFC 9110 §7.8). */
export function upgradeListsWebSocket(rawHeaders: readonly string[]): boolean {
  for (let i = 0; i < rawHeaders.length; i += 2) {
    if (rawHeaders[i].length === 7 && rawHeaders[i].toLowerCase() === 'upgrade' && listsWebSocket(rawHeaders[i + 1])) return true;
  }
  return false;
}

/** The client asks for a WebSocket: `Connection` lists `upgrade` and `Upgrade` lists `websocket`. */
export function asksForWebSocket(info: RequestHeaderInfo): boolean {
  return info.upgradeWebSocket && info.connection.has('upgrade');
}

export interface UpstreamRequestOptions {
  /** Path and query to send. */
  target: string;
  location: ResolvedLocation;
  /** Host to send: the client's (nginx `$host`), or the upstream's own when the client sent none (HTTP/1.0). */
  host: string;
  /** Host as the client sent it (Host field or absolute-form authority), or null. */
  clientHost: string | null;
  /** The request's Connection tokens (`scanRequestHeaders`). */
  connection: ReadonlySet<string>;
  remoteAddress: string;
  /** The trusted-proxy list when the peer is on it, else null: its forwarding fields are then replaced. */
  trustedPeer: TrustedProxies | null;
  proto: 'http' | 'https';
  webSocket: boolean;
  /** Body length to declare when not chunked. */
  contentLength: number;
  /** The request's transfer codings ending in `chunked` (e.g. `gzip, chunked`), or null for none. */
  transferCodings: string | null;
  /** Ask the upstream to keep the connection open (it goes back to the pool). */
  keepAlive: boolean;
}

/** The request head wsgate writes upstream, as a latin1 string (header values are latin1 as node decodes them). */
export function buildUpstreamRequestHead(head: ParsedHead, options: UpstreamRequestOptions): string {
  const { location } = options;
  const nominated = options.connection;
  const remove = location.removeHeaders;
  let out = `${head.method} ${options.target} HTTP/1.1\r\nHost: ${options.host}\r\n`;
  const trusted = options.trustedPeer;
  let forwardedFor = '';
  let forwardedProto: string | null = null;
  let forwardedHost: string | null = null;
  const raw = head.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i];
    const lower = name.toLowerCase();
    const field = fieldOf(lower);
    if (field === Field.HopByHop || field === Field.ContentLength || field === Field.Host) continue;
    if (nominated.size > 0 && nominated.has(lower) && !NOT_NOMINABLE.has(lower)) continue;
    // CGI-style backends read `X_Forwarded_For` as X-Forwarded-For: underscores would
    // get around the forwarding rewrite below (nginx `underscores_in_headers off`).
    if (lower.includes('_')) continue;
    // RFC 9110 §10.1.1: an HTTP/1.0 client's 100-continue is ignored, not passed on in a 1.1 request.
    if (field === Field.Expect && head.versionMinor === 0) continue;
    // RFC 9110 §7.6.2: each intermediary decrements an OPTIONS request's Max-Forwards (0 is answered at admission).
    if (field === Field.MaxForwards && head.method === 'OPTIONS' && /^\s*[0-9]{1,9}\s*$/.test(raw[i + 1])) {
      out += `${name}: ${Number(raw[i + 1]) - 1}\r\n`;
      continue;
    }
    if (field === Field.Forwarding) {
      if (trusted === null || lower === 'x-real-ip') continue; // X-Real-IP is derived from the chain below
      if (lower === 'x-forwarded-for') {
        forwardedFor += (forwardedFor === '' ? '' : ', ') + raw[i + 1].trim();
        continue;
      }
      if (lower === 'x-forwarded-proto') {
        forwardedProto ??= raw[i + 1].trim();
        continue;
      }
      if (lower === 'x-forwarded-host') {
        forwardedHost ??= raw[i + 1].trim();
        continue;
      }
    }
    if (remove.size > 0 && remove.has(lower)) continue;
    out += `${name}: ${raw[i + 1]}\r\n`;
  }
  const remote = options.remoteAddress;
  out += `X-Forwarded-For: ${forwardedFor === '' ? remote : `${forwardedFor}, ${remote}`}\r\n`;
  out += `X-Forwarded-Proto: ${forwardedProto || options.proto}\r\n`;
  const forwardedHostOut = forwardedHost || options.clientHost;
  if (forwardedHostOut !== null) out += `X-Forwarded-Host: ${forwardedHostOut}\r\n`;
  out += `X-Real-IP: ${trusted === null ? remote : trusted.realClient(forwardedFor, remote)}\r\n`;
  for (const [name, value] of location.setHeaders) out += `${name}: ${value}\r\n`;
  if (options.transferCodings !== null) out += `Transfer-Encoding: ${options.transferCodings}\r\n`;
  else if (options.contentLength > 0 || (options.contentLength === 0 && methodExpectsBody(head.method))) {
    out += `Content-Length: ${options.contentLength}\r\n`;
  }
  if (options.webSocket) out += 'Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n';
  else out += options.keepAlive ? 'Connection: keep-alive\r\n\r\n' : 'Connection: close\r\n\r\n';
  return out;
}

function methodExpectsBody(method: string): boolean {
  return method === 'POST' || method === 'PUT' || method === 'PATCH';
}

export interface DownstreamResponseOptions {
  /** Body framing wsgate will use towards the client. */
  framing: 'length' | 'chunked' | 'close' | 'none';
  /** Declared Content-Length, with framing 'length'. */
  contentLength: number;
  /** The 101 of a WebSocket handshake: Upgrade/Connection are written back. */
  upgrade: boolean;
  /** The client connection stays open after this response. */
  keepAlive: boolean;
  /** The client spoke HTTP/1.0, whose connections close unless they say keep-alive (RFC 9112 §9.3). */
  http10: boolean;
}

/** The response head wsgate writes to the client: the upstream's status and fields, hop-by-hop fields replaced by its own. */
export function buildDownstreamResponseHead(head: ParsedHead, options: DownstreamResponseOptions): string {
  const nominated = connectionTokens(head.rawHeaders);
  const status = head.statusCode;
  let out = `HTTP/1.1 ${status} ${head.statusMessage || reasonPhrase(status)}\r\n`;
  const raw = head.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i];
    const lower = name.toLowerCase();
    // A response without a body (HEAD, 304) keeps the Content-Length it describes (RFC 9110 §8.6).
    // A 101 has no content at all (RFC 9110 §8.6: no Content-Length in a 1xx).
    const field = fieldOf(lower);
    if (field === Field.HopByHop || (field === Field.ContentLength && (options.framing !== 'none' || options.upgrade))) continue;
    if (nominated.size > 0 && nominated.has(lower) && !NOT_NOMINABLE.has(lower)) continue;
    out += `${name}: ${raw[i + 1]}\r\n`;
  }
  if (options.upgrade) return out + 'Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n';
  if (options.framing === 'length') out += `Content-Length: ${options.contentLength}\r\n`;
  else if (options.framing === 'chunked') out += 'Transfer-Encoding: chunked\r\n';
  if (!options.keepAlive) return out + 'Connection: close\r\n\r\n';
  return out + (options.http10 ? 'Connection: keep-alive\r\n\r\n' : '\r\n');
}

/** A 1xx interim response (100 Continue, 103 Early Hints) relayed before the final one (RFC 9110 §15.2). */
export function buildInformationalHead(head: ParsedHead): string {
  const nominated = connectionTokens(head.rawHeaders);
  let out = `HTTP/1.1 ${head.statusCode} ${head.statusMessage || reasonPhrase(head.statusCode)}\r\n`;
  const raw = head.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    const lower = raw[i].toLowerCase();
    if (fieldOf(lower) === Field.HopByHop || nominated.has(lower)) continue;
    out += `${raw[i]}: ${raw[i + 1]}\r\n`;
  }
  return out + '\r\n';
}
