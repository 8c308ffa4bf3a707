// Host + location matching with nginx semantics:
// - server: exact name, then the longest `*.suffix` wildcard, then the default server;
// - location: `= /exact` first, then the longest matching prefix; none: 404.
// The upstream URI follows proxy_pass: with a path part in the upstream URL the
// matched prefix is replaced by it (`/ws/` -> `http://b/` maps `/ws/chat` to
// `/chat`); without one the (normalised) path passes unchanged.

import type { ResolvedConfig, ResolvedLocation, ResolvedServer } from '../config.js';
import { normalizeTarget } from './normalize-path.js';

export interface RouteMatch {
  readonly server: ResolvedServer;
  readonly location: ResolvedLocation;
  /** Path + query to send upstream; null when the rewrite would leave the upstream's base path (400). */
  readonly upstreamTarget: string | null;
}

interface CompiledServer {
  readonly server: ResolvedServer;
  readonly exact: Map<string, ResolvedLocation>;
  /** Prefix locations, longest first. */
  readonly prefixes: readonly ResolvedLocation[];
}

export class Router {
  #byName = new Map<string, CompiledServer>();
  /** Wildcard suffixes (`.example.com`), longest first. */
  #wildcards: Array<[string, CompiledServer]> = [];
  #default: CompiledServer;

  constructor(config: ResolvedConfig) {
    let fallback: CompiledServer | undefined;
    for (const server of config.servers) {
      const compiled = compileServer(server);
      if (server.isDefault) fallback = compiled;
      for (const name of server.names) {
        if (name.startsWith('*.')) this.#wildcards.push([name.slice(1), compiled]);
        else if (!this.#byName.has(name)) this.#byName.set(name, compiled);
      }
    }
    this.#wildcards.sort((a, b) => b[0].length - a[0].length);
    this.#default = fallback ?? compileServer(config.servers[0]);
    this.#lastServer = this.#default;
  }

  /** `host` is the Host header value (port allowed) or null; `path` is normalised. */
  match(host: string | null, path: string, query: string): RouteMatch | null {
    const compiled = this.#findServer(host);
    // (Map lookups intern the fresh key string first: skipped where there is nothing to find.)
    const location = (compiled.exact.size > 0 ? compiled.exact.get(path) : undefined) ?? findPrefix(compiled.prefixes, path);
    if (location === undefined) return null;
    const upstreamPath = rewritePath(location, path);
    return { server: compiled.server, location, upstreamTarget: upstreamPath === null ? null : upstreamPath + query };
  }

  #findServer(host: string | null): CompiledServer {
    if (host === null || host === '' || (this.#byName.size === 0 && this.#wildcards.length === 0)) return this.#default;
    // Keep-alive connections send one Host over and over: the last answer, by string equality (no interning).
    if (host === this.#lastHost) return this.#lastServer;
    const server = this.#lookUp(host);
    this.#lastHost = host;
    this.#lastServer = server;
    return server;
  }

  /** The Host the last lookup was for (null: none yet), and its server. */
  #lastHost: string | null = null;
  #lastServer: CompiledServer;

  #lookUp(host: string): CompiledServer {
    const name = hostName(host);
    const exact = this.#byName.get(name);
    if (exact !== undefined) return exact;
    for (const [suffix, compiled] of this.#wildcards) {
      if (name.length > suffix.length && name.endsWith(suffix)) return compiled;
    }
    return this.#default;
  }
}

function compileServer(server: ResolvedServer): CompiledServer {
  const exact = new Map<string, ResolvedLocation>();
  const prefixes: ResolvedLocation[] = [];
  for (const loc of server.locations) {
    if (loc.exact) exact.set(loc.path, loc);
    else prefixes.push(loc);
  }
  prefixes.sort((a, b) => b.path.length - a.path.length);
  return { server, exact, prefixes };
}

function findPrefix(prefixes: readonly ResolvedLocation[], path: string): ResolvedLocation | undefined {
  for (const loc of prefixes) if (path.startsWith(loc.path)) return loc;
  return undefined;
}

function rewritePath(location: ResolvedLocation, path: string): string | null {
  const base = location.upstream.path;
  if (base === null) return path;
  if (location.exact) return base;
  let rest = path.slice(location.path.length);
  // `location /api { proxy_pass http://u/v1/; }` would send `/v1//users` for
  // `/api/users` and `/v1/../x` for `/api../x` (the "off-by-slash" class of
  // misrouting): merge the slash, and refuse a result that climbs out of `base`.
  if (base.endsWith('/') && rest.startsWith('/')) rest = rest.slice(1);
  const rewritten = base + rest;
  const normalized = normalizeTarget(rewritten);
  const inside = normalized !== null && (normalized.path === base || normalized.path.startsWith(base.endsWith('/') ? base : base + '/'));
  if (!inside) return null;
  return normalized!.path;
}

/** Lower-cased host without port and without a trailing dot (`Example.COM.:80` -> `example.com`). */
export function hostName(host: string): string {
  let end = host.length;
  if (host.charCodeAt(0) === 0x5b /* [ */) {
    const close = host.indexOf(']');
    return (close === -1 ? host : host.slice(0, close + 1)).toLowerCase();
  }
  const colon = host.indexOf(':');
  if (colon !== -1) end = colon;
  if (end > 0 && host.charCodeAt(end - 1) === 0x2e /* . */) end--;
  return host.slice(0, end).toLowerCase();
}
