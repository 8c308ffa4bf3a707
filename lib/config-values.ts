// How each kind of config value is read and checked: numbers and times,
// listen addresses (with TLS and the PROXY protocol), upstream URLs (with TLS),
// connection rates. Each throws a ConfigError naming its field; config.ts puts
// them together into the resolved model.

import { readFileSync } from 'node:fs';
import { ConfigError } from './core/errors.js';
import { isTargetText } from './http/field-syntax.js';
import { loadPair, type CertificatePair } from './listen/certificates.js';
import { parseConnectionRate, type ConnectionRate } from './limits/client-limits.js';

/** How wsgate talks TLS to an `https://` upstream. */
export interface UpstreamTlsConfig {
  /** CA certificates (files or PEM text) trusted besides Node's store. */
  ca?: string | string[];
  /** Verify the upstream's certificate and name. Default true. */
  verify?: boolean;
  /** The name sent as SNI and checked against the certificate. Default: the upstream URL's host. */
  servername?: string;
}

/** A listen address with options: TLS (`wss://`, `https://`). */
export interface ListenConfig {
  /** `host:port`, `[v6]:port` or a port. */
  address: string | number;
  /** Serve TLS with these certificates; SNI picks one by its DNS names, the first is the default. */
  tls?: { certificates: CertificatePair[] };
  /** Read a PROXY protocol header (v1 or v2, HAProxy's spec) before the request or the ClientHello. Default false. */
  proxyProtocol?: boolean;
}

export interface ResolvedUpstream {
  readonly host: string;
  readonly port: number;
  readonly path: string | null;
  readonly url: string;
  /** `host:port`, or `tls:host:port:servername` for a TLS upstream: the pool key. */
  readonly key: string;
  /** TLS towards it (`https://`, `wss://`), or null. */
  readonly tls: ResolvedUpstreamTls | null;
}

export interface ResolvedUpstreamTls {
  /** CA certificates besides Node's store, or null for Node's alone. */
  readonly ca: readonly Buffer[] | null;
  readonly verify: boolean;
  readonly servername: string;
}

export interface ResolvedListen {
  readonly host: string;
  readonly port: number;
  /** The certificates of a TLS listener (checked readable and matching), or null. */
  readonly tls: { readonly certificates: readonly CertificatePair[] } | null;
  readonly proxyProtocol: boolean;
}

// Host: an IP literal or an RFC 3986 §3.2.2 reg-name (unreserved, sub-delims,
// pct-encoded), as it is written as Host when the client sent none; the path is
// checked by isTargetText (issue #6).
const UPSTREAM_URL = /^(https?|wss?):\/\/(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]+)(?::(\d{1,5}))?(\/[^?#]*)?$/;
export const HOST_NAME = /^(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/;

export function fail(field: string, detail: string): never {
  throw new ConfigError(field, detail);
}

export function seconds(value: unknown, field: string, fallback: number): number {
  if (value === undefined) return fallback * 1000;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    fail(field, `must be a number of seconds >= 0 (0 disables it), got ${JSON.stringify(value)}`);
  }
  return Math.round(value * 1000);
}

export function positiveInt(value: unknown, field: string, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0) {
    fail(field, `must be a positive integer, got ${JSON.stringify(value)}`);
  }
  return value;
}

/** `listen(2)`'s backlog: 1 to 65535 (Linux keeps it in 16 bits before capping it at somaxconn). */
export function listenBacklog(value: unknown, field: string, fallback: number): number {
  const backlog = positiveInt(value, field, fallback);
  if (backlog > 65535) fail(field, `expected at most 65535, got ${backlog}`);
  return backlog;
}

export function nonNegativeInt(value: unknown, field: string, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) {
    fail(field, `must be an integer >= 0, got ${JSON.stringify(value)}`);
  }
  return value;
}

/** Parses `host:port`, `[v6]:port`, `:port` or a bare port. */
export function parseListen(spec: string | number, field: string): { host: string; port: number } {
  const text = String(spec).trim();
  const m = /^(?:(\[[0-9a-fA-F:.]+\]|[^:\s]*):)?(\d{1,5})$/.exec(text);
  if (!m) fail(field, `expected HOST:PORT or PORT, got ${JSON.stringify(spec)}`);
  const port = Number(m[2]);
  if (port > 65535) fail(field, `port out of range: ${port}`);
  let host = m[1] ?? '';
  if (host.startsWith('[')) host = host.slice(1, -1);
  return { host: host || '0.0.0.0', port };
}

export function resolveRate(value: unknown): ConnectionRate | null {
  if (value === undefined) return null;
  const rate = parseConnectionRate(value);
  if (rate === null) fail('connectionRatePerClient', `expected "N/s", "N/m" or a number of connections per second > 0, got ${JSON.stringify(value)}`);
  return rate;
}

export function resolveListen(spec: string | number | ListenConfig, field: string): ResolvedListen {
  if (typeof spec === 'string' || typeof spec === 'number') return { ...parseListen(spec, field), tls: null, proxyProtocol: false };
  if (spec === null || typeof spec !== 'object' || Array.isArray(spec)) fail(field, `expected HOST:PORT, PORT or { "address": ... }, got ${JSON.stringify(spec)}`);
  if (typeof spec.address !== 'string' && typeof spec.address !== 'number') fail(`${field}.address`, 'must be "host:port" or a port');
  const address = parseListen(spec.address, `${field}.address`);
  if (spec.proxyProtocol !== undefined && typeof spec.proxyProtocol !== 'boolean') fail(`${field}.proxyProtocol`, 'must be a boolean');
  const proxyProtocol = spec.proxyProtocol ?? false;
  if (spec.tls === undefined) return { ...address, tls: null, proxyProtocol };
  if (spec.tls === null || typeof spec.tls !== 'object' || !Array.isArray(spec.tls.certificates) || spec.tls.certificates.length === 0) {
    fail(`${field}.tls.certificates`, 'must be a non-empty array of { "cert": FILE, "key": FILE }');
  }
  const certificates = spec.tls.certificates.map((pair, i) => {
    const where = `${field}.tls.certificates[${i}]`;
    if (pair === null || typeof pair !== 'object' || typeof pair.cert !== 'string' || typeof pair.key !== 'string') fail(where, 'must be { "cert": FILE, "key": FILE }');
    loadPair(pair, where); // readable, a certificate, and its key: refused now, not at the first handshake
    return { cert: pair.cert, key: pair.key };
  });
  return { ...address, tls: { certificates }, proxyProtocol };
}

export function parseUpstream(url: unknown, tlsInput: UpstreamTlsConfig | undefined, defaults: UpstreamTlsConfig | undefined, field: string): ResolvedUpstream {
  if (typeof url !== 'string') fail(`${field}.upstream`, 'must be a URL string like http://127.0.0.1:8080');
  const m = UPSTREAM_URL.exec(url);
  if (!m) fail(`${field}.upstream`, `expected http(s)://HOST[:PORT][/PATH], got ${JSON.stringify(url)}`);
  if (m[4] !== undefined && !isTargetText(m[4])) {
    fail(`${field}.upstream`, `the path must be visible ASCII (percent-encode anything else), got ${JSON.stringify(url)}`);
  }
  const secure = m[1] === 'https' || m[1] === 'wss';
  const port = m[3] === undefined ? (secure ? 443 : 80) : Number(m[3]);
  if (port < 1 || port > 65535) fail(`${field}.upstream`, `port out of range: ${port}`);
  let host = m[2];
  if (host.startsWith('[')) host = host.slice(1, -1);
  if (!secure) {
    if (tlsInput !== undefined) fail(`${field}.upstreamTls`, `only for an https:// upstream, not ${JSON.stringify(url)}`);
    return { host, port, path: m[4] ?? null, url, key: `${host}:${port}`, tls: null };
  }
  const tls = resolveUpstreamTls({ ...defaults, ...tlsInput }, host, tlsInput !== undefined ? `${field}.upstreamTls` : 'upstreamTls');
  return { host, port, path: m[4] ?? null, url, key: `tls:${host}:${port}:${tls.servername}`, tls };
}

function resolveUpstreamTls(input: UpstreamTlsConfig, host: string, field: string): ResolvedUpstreamTls {
  if (input.verify !== undefined && typeof input.verify !== 'boolean') fail(`${field}.verify`, 'must be a boolean');
  if (input.servername !== undefined && (typeof input.servername !== 'string' || !HOST_NAME.test(input.servername.toLowerCase()))) {
    fail(`${field}.servername`, `must be a host name, got ${JSON.stringify(input.servername)}`);
  }
  let ca: Buffer[] | null = null;
  if (input.ca !== undefined) {
    const sources = Array.isArray(input.ca) ? input.ca : [input.ca];
    ca = sources.map((source, i) => {
      const where = Array.isArray(input.ca) ? `${field}.ca[${i}]` : `${field}.ca`;
      if (typeof source !== 'string') fail(where, 'must be a file name or PEM text');
      if (source.trimStart().startsWith('-----BEGIN')) return Buffer.from(source);
      try {
        return readFileSync(source);
      } catch (err) {
        return fail(where, `cannot read ${source}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      }
    });
  }
  // An IP literal is not sent as SNI (RFC 6066 §3); Node checks it against the certificate's IP names.
  const servername = input.servername ?? host;
  return { ca, verify: input.verify ?? true, servername };
}
