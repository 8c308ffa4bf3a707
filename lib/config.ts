// The configuration model, its defaults and its validation. The CLI, the JSON
// config file and the library all build the same `GatewayConfig`; `resolveConfig`
// refuses any field the schema does not know (config-schema.ts), then checks
// every value, and throws a ConfigError naming the first bad one.
//
// Times are in seconds (as nginx and the CLI flags give them); fractions are
// allowed. A timeout of 0 disables it.

import { unknownFields } from './config-schema.js';
import { ConfigError } from './core/errors.js';
import { describeBadValueChar, isFieldValue, isTargetText, isToken } from './http/field-syntax.js';
import type { Logger } from './core/log.js';
import type { ConnectionRate } from './limits/client-limits.js';
import {
  HOST_NAME,
  fail,
  listenBacklog,
  nonNegativeInt,
  parseUpstream,
  positiveInt,
  resolveListen,
  resolveRate,
  seconds,
  type ListenConfig,
  type ResolvedListen,
  type ResolvedUpstream,
  type UpstreamTlsConfig,
} from './config-values.js';

export { parseListen } from './config-values.js';
export type { ListenConfig, ResolvedListen, ResolvedUpstream, ResolvedUpstreamTls, UpstreamTlsConfig } from './config-values.js';
import { DEFAULT_TRUSTED_PROXIES, TrustedProxies, parseTrustedProxy } from './http/trusted-proxies.js';

export interface LocationConfig {
  /** `/prefix/` (longest prefix wins) or `= /exact` (exact match, checked first). */
  path: string;
  /**
   * `http://host:port[/path]` (`ws://` is a synonym), or `https://` (`wss://`) to talk TLS to the
   * upstream. With a path part, the matched prefix is replaced by it.
   */
  upstream: string;
  /** TLS towards an `https://` upstream; fields not given come from the top-level `upstreamTls`. */
  upstreamTls?: UpstreamTlsConfig;
  /** Start each new upstream connection with a PROXY protocol header (HAProxy `send-proxy` / `send-proxy-v2`). Default: none. */
  sendProxyProtocol?: 'v1' | 'v2';
  /** Proxy WebSocket upgrades on this location. Default true. */
  websocket?: boolean;
  /** Upstream silent while wsgate waits for or reads its response (nginx `proxy_read_timeout`). Default 60. */
  readTimeout?: number;
  /** Downstream or upstream not taking or giving bytes during an HTTP exchange (nginx `proxy_send_timeout`). Default 60. */
  sendTimeout?: number;
  /** Upgraded tunnel with no byte either way. Default 3600. */
  tunnelTimeout?: number;
  /** Upstream TCP connect. Default 5. */
  connectTimeout?: number;
  /** Headers set on the upstream request (replacing any the client sent). */
  setHeaders?: Record<string, string>;
  /** Header names removed from the upstream request. */
  removeHeaders?: string[];
  /**
   * Origins allowed to open WebSockets here (Cross-Site WebSocket Hijacking
   * guard, RFC 6455 §10.2): exact origins (`https://app.example.com`) or host
   * wildcards (`*.example.com`, any scheme and port). Others get 403. An upgrade
   * without Origin (a non-browser client) is allowed. Default: no check.
   */
  allowedOrigins?: string[];
}

export interface ServerConfig {
  /** Host names: exact (`example.com`) or leading wildcard (`*.example.com`). Empty: matches nothing by name. */
  names?: string[];
  /** The server for a Host no name matches. Default: the first server. */
  default?: boolean;
  locations: LocationConfig[];
}

export type TimeoutDefaults = Pick<LocationConfig, 'readTimeout' | 'sendTimeout' | 'tunnelTimeout' | 'connectTimeout'>;

export interface GatewayConfig extends TimeoutDefaults {
  /** Listen addresses `host:port`, `[::1]:port`, a bare port, or an object with TLS. Used by the CLI and by `listen()` without arguments. */
  listen?: Array<string | number | ListenConfig>;
  /** Defaults for every `https://` location's `upstreamTls` (the CLI's `--upstream-ca`). */
  upstreamTls?: UpstreamTlsConfig;
  /** Full server/location table. */
  servers?: ServerConfig[];
  /** Shorthand, as `--route`: `[HOST]/path=URL` strings, or `{ "/path": URL }`. Merged into `servers`. */
  routes?: string[] | Record<string, string>;
  /** Time to receive a complete request head (slowloris guard); then 408. Default 10. */
  headTimeout?: number;
  /** Largest request head in bytes; then 431. Default 16384. */
  maxHeadSize?: number;
  /** Most header fields in a request head; then 431. Default 100. */
  maxHeaders?: number;
  /** Open client connections (tunnels included) beyond which new ones get 503 and are closed; 0 means no limit. Default 0. */
  maxConnections?: number;
  /**
   * Connections the kernel queues on each listener before wsgate accepts them
   * (`listen(2)` backlog, nginx `listen ... backlog=`). Default 511; the kernel
   * caps it at net.core.somaxconn. Raise it for reconnect storms.
   */
  listenBacklog?: number;
  /** Open connections (tunnels included) one client address may hold; more get 503. 0: no limit. Default 0. */
  maxConnectionsPerClient?: number;
  /** Connections one client address may open: `"N/s"`, `"N/m"` or a number per second; faster ones get 503. Default: no limit. */
  connectionRatePerClient?: string | number;
  /** Idle time allowed between requests on a client keep-alive connection (nginx `keepalive_timeout`). Default 75. */
  keepAliveTimeout?: number;
  /** Requests served on one client connection before it is closed (nginx `keepalive_requests`). Default 1000. */
  keepAliveRequests?: number;
  /** Idle keep-alive connections kept per upstream address (nginx `keepalive`); 0 closes each after its request. Default 256. */
  upstreamKeepAlive?: number;
  /** Close an idle upstream connection after this long. Default 60. */
  upstreamIdleTimeout?: number;
  /** Requests sent on one upstream connection before it is retired. Default 1000. */
  upstreamMaxRequests?: number;
  /**
   * Peers (addresses and CIDRs) whose X-Forwarded-For, X-Real-IP, X-Forwarded-Proto/-Host and Forwarded are
   * believed and appended to; from any other peer they are replaced. Default: nobody (as Caddy and Envoy).
   * A local front proxy that forwards raw TCP or terminates TLS (stunnel, an L4 balancer) is trusted with
   * `["127.0.0.1"]`.
   */
  trustedProxies?: string[];
  /** Refuse a 101 whose Sec-WebSocket-Accept does not match the key (RFC 6455 §4.1), with 502. Default true. */
  checkWebSocketAccept?: boolean;
  /** Where log lines go. Default: none (the CLI logs to stderr). */
  logger?: Logger | null;
}

export interface ResolvedLocation {
  readonly exact: boolean;
  /** The matched path (prefix or exact). */
  readonly path: string;
  readonly upstream: ResolvedUpstream;
  /** A PROXY protocol header to start each new upstream connection with, or null. */
  readonly sendProxyProtocol: 'v1' | 'v2' | null;
  readonly websocket: boolean;
  readonly readTimeoutMs: number;
  readonly sendTimeoutMs: number;
  readonly tunnelTimeoutMs: number;
  readonly connectTimeoutMs: number;
  readonly setHeaders: ReadonlyArray<readonly [string, string]>;
  /** Lower-cased names to drop, including those replaced by setHeaders. */
  readonly removeHeaders: ReadonlySet<string>;
  /** null: no Origin check. */
  readonly allowedOrigins: { readonly exact: ReadonlySet<string>; readonly hostSuffixes: readonly string[] } | null;
}

export interface ResolvedServer {
  readonly names: readonly string[];
  readonly isDefault: boolean;
  readonly locations: readonly ResolvedLocation[];
}

export interface ResolvedConfig {
  readonly listen: readonly ResolvedListen[];
  readonly servers: readonly ResolvedServer[];
  readonly headTimeoutMs: number;
  readonly maxHeadSize: number;
  readonly maxHeaders: number;
  readonly checkWebSocketAccept: boolean;
  readonly maxConnections: number;
  readonly listenBacklog: number;
  readonly maxConnectionsPerClient: number;
  readonly connectionRatePerClient: ConnectionRate | null;
  readonly trustedProxies: TrustedProxies;
  readonly keepAliveTimeoutMs: number;
  readonly keepAliveRequests: number;
  readonly upstreamKeepAlive: number;
  readonly upstreamIdleTimeoutMs: number;
  readonly upstreamMaxRequests: number;
  readonly logger: Logger | null;
}

export const DEFAULTS = {
  readTimeout: 60,
  sendTimeout: 60,
  tunnelTimeout: 3600,
  connectTimeout: 5,
  headTimeout: 10,
  maxHeadSize: 16384,
  maxHeaders: 100,
  listenBacklog: 511,
  keepAliveTimeout: 75,
  keepAliveRequests: 1000,
  upstreamKeepAlive: 256,
  upstreamIdleTimeout: 60,
  upstreamMaxRequests: 1000,
} as const;

function resolveLocation(loc: LocationConfig, defaults: TimeoutDefaults & { upstreamTls?: UpstreamTlsConfig }, field: string): ResolvedLocation {
  if (loc === null || typeof loc !== 'object') fail(field, 'must be an object');
  if (typeof loc.path !== 'string') fail(`${field}.path`, 'must be a string such as "/ws/" or "= /health"');
  let path = loc.path.trim();
  let exact = false;
  if (path.startsWith('=')) {
    exact = true;
    path = path.slice(1).trim();
  }
  if (!path.startsWith('/') || !isTargetText(path) || /[?#%\\]/.test(path)) {
    fail(`${field}.path`, `must start with / and hold only visible ASCII without ?, #, % or \\, got ${JSON.stringify(loc.path)}`);
  }
  if (loc.upstreamTls !== undefined && (loc.upstreamTls === null || typeof loc.upstreamTls !== 'object')) fail(`${field}.upstreamTls`, 'must be an object');
  const upstream = parseUpstream(loc.upstream, loc.upstreamTls, defaults.upstreamTls, field);
  if (loc.websocket !== undefined && typeof loc.websocket !== 'boolean') fail(`${field}.websocket`, 'must be a boolean');

  const setHeaders: Array<[string, string]> = [];
  const removeHeaders = new Set<string>();
  if (loc.setHeaders !== undefined) {
    if (loc.setHeaders === null || typeof loc.setHeaders !== 'object' || Array.isArray(loc.setHeaders)) {
      fail(`${field}.setHeaders`, 'must be an object of header name to value');
    }
    for (const [name, value] of Object.entries(loc.setHeaders)) {
      if (!isToken(name)) fail(`${field}.setHeaders`, `invalid header name ${JSON.stringify(name)}`);
      if (typeof value !== 'string') fail(`${field}.setHeaders.${name}`, 'must be a string');
      if (!isFieldValue(value)) {
        fail(`${field}.setHeaders.${name}`, `${describeBadValueChar(value)}: a value holds only HTAB, SP, visible ASCII and U+0080-U+00FF`);
      }
      setHeaders.push([name, value]);
      removeHeaders.add(name.toLowerCase());
    }
  }
  if (loc.removeHeaders !== undefined) {
    if (!Array.isArray(loc.removeHeaders)) fail(`${field}.removeHeaders`, 'must be an array of header names');
    loc.removeHeaders.forEach((name, i) => {
      if (typeof name !== 'string' || !isToken(name)) fail(`${field}.removeHeaders[${i}]`, `invalid header name ${JSON.stringify(name)}`);
      removeHeaders.add(name.toLowerCase());
    });
  }
  for (const name of ['host', 'content-length', 'transfer-encoding', 'connection', 'upgrade']) {
    if (removeHeaders.has(name)) fail(`${field}`, `header ${name} is managed by wsgate and cannot be set or removed`);
  }

  let allowedOrigins: ResolvedLocation['allowedOrigins'] = null;
  if (loc.allowedOrigins !== undefined) {
    if (!Array.isArray(loc.allowedOrigins)) fail(`${field}.allowedOrigins`, 'must be an array of origins');
    const exactOrigins = new Set<string>();
    const hostSuffixes: string[] = [];
    loc.allowedOrigins.forEach((origin, i) => {
      const text = typeof origin === 'string' ? origin.trim().toLowerCase() : '';
      if (/^\*\.[a-z0-9.-]+$/.test(text)) hostSuffixes.push(text.slice(1));
      else if (/^https?:\/\/[a-z0-9.-]+(:\d{1,5})?$/.test(text) || /^https?:\/\/\[[0-9a-f:.]+\](:\d{1,5})?$/.test(text)) exactOrigins.add(text);
      else fail(`${field}.allowedOrigins[${i}]`, `expected an origin like https://app.example.com or *.example.com, got ${JSON.stringify(origin)}`);
    });
    allowedOrigins = { exact: exactOrigins, hostSuffixes };
  }

  if (loc.sendProxyProtocol !== undefined && loc.sendProxyProtocol !== 'v1' && loc.sendProxyProtocol !== 'v2') {
    fail(`${field}.sendProxyProtocol`, `must be "v1" or "v2", got ${JSON.stringify(loc.sendProxyProtocol)}`);
  }
  return {
    exact,
    path,
    upstream,
    sendProxyProtocol: loc.sendProxyProtocol ?? null,
    allowedOrigins,
    websocket: loc.websocket ?? true,
    readTimeoutMs: seconds(loc.readTimeout, `${field}.readTimeout`, (defaults.readTimeout ?? DEFAULTS.readTimeout)),
    sendTimeoutMs: seconds(loc.sendTimeout, `${field}.sendTimeout`, (defaults.sendTimeout ?? DEFAULTS.sendTimeout)),
    tunnelTimeoutMs: seconds(loc.tunnelTimeout, `${field}.tunnelTimeout`, (defaults.tunnelTimeout ?? DEFAULTS.tunnelTimeout)),
    connectTimeoutMs: seconds(loc.connectTimeout, `${field}.connectTimeout`, (defaults.connectTimeout ?? DEFAULTS.connectTimeout)),
    setHeaders,
    removeHeaders,
  };
}

/** Splits `[HOST]/path=URL` (the `--route` syntax); `=/path=URL` is an exact location. */
export function parseRoute(spec: string, field: string): { host: string | null; path: string; upstream: string } {
  const m = /^(.*?)=((?:http|ws|https|wss):\/\/.*)$/.exec(spec);
  if (!m) fail(field, `expected [HOST]/PATH=http://UPSTREAM, got ${JSON.stringify(spec)}`);
  let target = m[1];
  let exact = '';
  if (target.startsWith('=')) {
    exact = '= ';
    target = target.slice(1);
  }
  const slash = target.indexOf('/');
  if (slash === -1) fail(field, `path must start with /, got ${JSON.stringify(spec)}`);
  const host = target.slice(0, slash);
  return { host: host === '' ? null : host, path: exact + target.slice(slash), upstream: m[2] };
}

// Where a location (or a server's name) built from the `routes` shorthand came from, for error messages.
const ROUTE_FIELD = new WeakMap<LocationConfig | ServerConfig, string>();

function routesToServers(routes: GatewayConfig['routes']): ServerConfig[] {
  if (routes === undefined) return [];
  let specs: string[];
  if (Array.isArray(routes)) specs = routes;
  else if (routes !== null && typeof routes === 'object') specs = Object.entries(routes).map(([p, u]) => `${p}=${u}`);
  else fail('routes', 'must be an array of "[HOST]/path=URL" strings or an object of path to URL');
  const byHost = new Map<string, ServerConfig>();
  specs.forEach((spec, i) => {
    if (typeof spec !== 'string') fail(`routes[${i}]`, 'must be a string');
    const route = parseRoute(spec, `routes[${i}]`);
    const key = route.host ?? '';
    let server = byHost.get(key);
    if (!server) {
      server = { names: route.host ? [route.host] : [], default: route.host === null ? true : undefined, locations: [] };
      byHost.set(key, server);
      ROUTE_FIELD.set(server, `routes[${i}]`);
    }
    server.locations.push({ path: route.path, upstream: route.upstream });
    ROUTE_FIELD.set(server.locations[server.locations.length - 1], `routes[${i}]`);
  });
  return [...byHost.values()];
}

export function resolveConfig(input: GatewayConfig): ResolvedConfig {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) fail('config', 'must be an object');
  const unknown = unknownFields(input);
  if (unknown.length > 0) throw unknown[0];
  const defaults: TimeoutDefaults & { upstreamTls?: UpstreamTlsConfig } = input;
  if (input.upstreamTls !== undefined && (input.upstreamTls === null || typeof input.upstreamTls !== 'object')) fail('upstreamTls', 'must be an object');
  for (const key of ['readTimeout', 'sendTimeout', 'tunnelTimeout', 'connectTimeout'] as const) {
    seconds(input[key], key, DEFAULTS[key]);
  }
  if (input.servers !== undefined && !Array.isArray(input.servers)) fail('servers', 'must be an array');
  const fromRoutes = routesToServers(input.routes);
  const serverInputs = [...(input.servers ?? []), ...fromRoutes];
  if (serverInputs.length === 0) fail('servers', 'at least one route or server is required');

  const servers: ResolvedServer[] = [];
  let defaultCount = 0;
  serverInputs.forEach((server, i) => {
    const field = i < (input.servers?.length ?? 0) ? `servers[${i}]` : 'routes';
    if (server === null || typeof server !== 'object') fail(field, 'must be an object');
    if (server.names !== undefined && !Array.isArray(server.names)) fail(`${field}.names`, 'must be an array of host names');
    const names = (server.names ?? []).map((name, j) => {
      // Checked before lower-casing too: U+212A (Kelvin sign) lower-cases to an ASCII k.
      const lower = typeof name === 'string' && isTargetText(name) ? name.toLowerCase() : '';
      if (!HOST_NAME.test(lower)) fail(ROUTE_FIELD.get(server) ?? `${field}.names[${j}]`, `invalid host name ${JSON.stringify(name)}`);
      return lower;
    });
    if (!Array.isArray(server.locations) || server.locations.length === 0) {
      fail(`${field}.locations`, 'must be a non-empty array');
    }
    const seen = new Set<string>();
    const locations = server.locations.map((loc, j) => {
      const locField = ROUTE_FIELD.get(loc) ?? `${field}.locations[${j}]`;
      const resolved = resolveLocation(loc, defaults, locField);
      const key = (resolved.exact ? '=' : '') + resolved.path;
      if (seen.has(key)) fail(ROUTE_FIELD.has(loc) ? locField : `${locField}.path`, `duplicate location ${JSON.stringify(loc.path)}`);
      seen.add(key);
      return resolved;
    });
    if (server.default === true) defaultCount++;
    servers.push({ names, isDefault: server.default === true, locations });
  });
  if (defaultCount > 1) fail('servers', 'more than one server is marked default');
  if (defaultCount === 0) servers[0] = { ...servers[0], isDefault: true };

  if (input.listen !== undefined && !Array.isArray(input.listen)) fail('listen', 'must be an array of "host:port" strings, ports or listen objects');
  const listen = (input.listen ?? []).map((spec, i) => resolveListen(spec, `listen[${i}]`));
  if (input.checkWebSocketAccept !== undefined && typeof input.checkWebSocketAccept !== 'boolean') {
    fail('checkWebSocketAccept', 'must be a boolean');
  }
  const logger = input.logger ?? null;
  if (logger !== null && (typeof logger !== 'object' || typeof logger.log !== 'function')) {
    fail('logger', 'must be an object with a log(level, message, fields) method');
  }
  const trusted = input.trustedProxies ?? DEFAULT_TRUSTED_PROXIES;
  if (!Array.isArray(trusted)) fail('trustedProxies', 'must be an array of addresses or CIDRs');
  trusted.forEach((entry, i) => {
    if (parseTrustedProxy(entry) === null) fail(`trustedProxies[${i}]`, `expected an address or CIDR like 10.0.0.0/8, got ${JSON.stringify(entry)}`);
  });
  const maxHeadSize = positiveInt(input.maxHeadSize, 'maxHeadSize', DEFAULTS.maxHeadSize);
  return {
    listen,
    servers,
    headTimeoutMs: seconds(input.headTimeout, 'headTimeout', DEFAULTS.headTimeout),
    maxHeadSize,
    maxHeaders: positiveInt(input.maxHeaders, 'maxHeaders', DEFAULTS.maxHeaders),
    checkWebSocketAccept: input.checkWebSocketAccept ?? true,
    maxConnections: nonNegativeInt(input.maxConnections, 'maxConnections', 0),
    listenBacklog: listenBacklog(input.listenBacklog, 'listenBacklog', DEFAULTS.listenBacklog),
    maxConnectionsPerClient: nonNegativeInt(input.maxConnectionsPerClient, 'maxConnectionsPerClient', 0),
    connectionRatePerClient: resolveRate(input.connectionRatePerClient),
    trustedProxies: new TrustedProxies(trusted),
    keepAliveTimeoutMs: seconds(input.keepAliveTimeout, 'keepAliveTimeout', DEFAULTS.keepAliveTimeout),
    keepAliveRequests: positiveInt(input.keepAliveRequests, 'keepAliveRequests', DEFAULTS.keepAliveRequests),
    upstreamKeepAlive: nonNegativeInt(input.upstreamKeepAlive, 'upstreamKeepAlive', DEFAULTS.upstreamKeepAlive),
    upstreamIdleTimeoutMs: seconds(input.upstreamIdleTimeout, 'upstreamIdleTimeout', DEFAULTS.upstreamIdleTimeout),
    upstreamMaxRequests: positiveInt(input.upstreamMaxRequests, 'upstreamMaxRequests', DEFAULTS.upstreamMaxRequests),
    logger,
  };
}

/**
 * Everything wrong with `input`: every unknown field, then the first bad
 * value (values are checked in order, and a later one may depend on an
 * earlier). Empty when resolveConfig accepts it.
 */
export function validateConfig(input: GatewayConfig): string[] {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) return ['config: must be an object'];
  const problems = unknownFields(input).map((err) => err.problem);
  if (problems.length > 0) return problems;
  try {
    resolveConfig(input);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    problems.push(err.problem);
  }
  return problems;
}
