// The gateway: listeners, the set of live connections and tunnels, the shared
// timer wheel, config reloads, graceful drain, stats and events. Per-request
// logic lives in connection.ts / exchange.ts / tunnel.ts.

import { EventEmitter } from 'node:events';
import type { IncomingMessage } from 'node:http';
import type net from 'node:net';
import { parseListen, resolveConfig, type GatewayConfig, type ResolvedConfig, type ResolvedListen } from './config.js';
import type { CertificatePair } from './listen/certificates.js';
import { Listeners, type ListenAddress, type Proxied } from './listen/listeners.js';
import type { ProxiedAddresses } from './http/proxy-protocol.js';
import { Connection, type ConnectionHost } from './proxy/connection.js';
import { ConnState } from './proxy/connection-state.js';
import type { TunnelRegistry } from './proxy/exchange.js';
import { ERROR_CODES, WsgateError } from './core/errors.js';
import type { ParsedHead } from './http/head-reader.js';
import { RateLimitedLog, type LogLevel } from './core/log.js';
import { fastPaths, parserUnavailable, type FastPaths } from './io/node-internals.js';
import { describeFastPaths, probeFastPaths } from './io/probe.js';
import { withPooledReads } from './io/read-buffers.js';
import { TurnWriteSocket } from './io/turn-writes.js';
import { initSocketFields } from './io/socket-fields.js';
import { Gatekeeper } from './limits/gatekeeper.js';
import { Router } from './http/router.js';
import { TimerWheel } from './core/timer-wheel.js';
import { TunnelBook, type TunnelInfo, type TunnelCloseInfo } from './tunnels.js';

export type { TunnelInfo, TunnelCloseInfo } from './tunnels.js';
import { UpstreamPool, type UpstreamPoolOptions } from './upstream/pool.js';

export interface ConnectionErrorInfo {
  readonly remoteAddress: string;
  readonly method: string | null;
  readonly path: string | null;
  /** The status answered, or 0 when the connection was cut instead. */
  readonly status: number;
}

export interface GatewayStats {
  /** Open client connections, tunnels included. */
  readonly connections: number;
  /** Open WebSocket tunnels. */
  readonly tunnels: number;
  /** Open tunnels that keep only their two TCP handles, their sockets let go (fast path `handleTunnels`: a third of the memory). */
  readonly tunnelsOnHandles: number;
  readonly totalConnections: number;
  readonly totalTunnels: number;
  /** Tunnel payload bytes client -> upstream, closed and open tunnels. */
  readonly bytesToUpstream: number;
  /** Tunnel payload bytes upstream -> client, closed and open tunnels. */
  readonly bytesToDownstream: number;
  /** Errors thrown while handling a connection (bugs, contained: each ended only its own connection). */
  readonly internalErrors: number;
  /** TLS handshakes that failed on the TLS listeners (old protocol versions, bad certificates, scanners). */
  readonly tlsHandshakeFailures: number;
  /** TLS connections the client closed or reset before its handshake finished (a browser's spare preconnected sockets): not failures. */
  readonly tlsHandshakesAbandoned: number;
  /** Connections on PROXY protocol listeners closed for a missing or malformed header. */
  readonly proxyProtocolErrors: number;
  /** Connections refused (503) or closed at accept for maxConnectionsPerClient or connectionRatePerClient. */
  readonly clientLimitRefusals: number;
  /** The fast paths below Node's public API in effect in this process (io/node-internals.ts). */
  readonly fastPaths: FastPaths;
}

/** What `listen()` takes besides a port or a `host:port` string. */
export interface ListenSpec {
  port?: number;
  host?: string;
  /** Serve TLS with these certificates: files or PEM text; the first pair is the default, SNI picks among them. */
  tls?: { certificates: CertificatePair[] };
  /** Read a PROXY protocol header (v1 or v2) before anything else on each connection. */
  proxyProtocol?: boolean;
  /** Bind with SO_REUSEPORT (Node 22.12+ on Linux), so that several processes serve the same address. */
  reusePort?: boolean;
}

export interface CloseOptions {
  /** How long open tunnels and exchanges may run before they are destroyed. Default 10000; 0 destroys at once. */
  drainMs?: number;
}

export interface GatewayEvents {
  tunnelOpen: [TunnelInfo];
  tunnelClose: [TunnelCloseInfo];
  connectionError: [WsgateError, ConnectionErrorInfo];
  error: [Error];
  listening: [ListenAddress];
}

function poolOptions(config: ResolvedConfig): UpstreamPoolOptions {
  return { maxIdle: config.upstreamKeepAlive, idleTimeoutMs: config.upstreamIdleTimeoutMs, maxRequests: config.upstreamMaxRequests };
}

export class Gateway extends EventEmitter<GatewayEvents> implements ConnectionHost {
  readonly wheel: TimerWheel;
  readonly pool: UpstreamPool;
  #config: ResolvedConfig;
  #router: Router;
  /** The gateway's log as a function, for the parts that log through it. */
  readonly #write = (level: LogLevel, message: string, fields?: Record<string, unknown>): void => this.#log(level, message, fields);
  readonly #listeners = new Listeners({
    accepted: (socket, proxied) => this.#accepted(socket, proxied),
    failed: (err) => this.#emitError(err),
    handshakeFailed: (err, socket) => this.#handshakeFailed(err, socket),
    proxyHeaderFailed: (reason, socket) => this.#proxyHeaderFailed(reason, socket),
  });
  #connections = new Set<Connection>();
  readonly #tunnels = new TunnelBook({
    opened: (info) => {
      if (this.listenerCount('tunnelOpen') > 0) this.emit('tunnelOpen', info);
    },
    closed: (info) => this.emit('tunnelClose', info),
    crashed: (err, info) => this.#internalError(err, { tunnel: info?.id, remote: info?.remoteAddress }),
    stillborn: () => this.#afterConnectionClose?.(),
    log: this.#write,
  });
  #closing: Promise<void> | null = null;
  #totalConnections = 0;
  #internalErrors = 0;
  readonly #gate: Gatekeeper;

  constructor(config: GatewayConfig) {
    super();
    this.#config = resolveConfig(config);
    this.#router = new Router(this.#config);
    this.wheel = new TimerWheel({ tickMs: 100 });
    this.pool = new UpstreamPool(this.wheel, poolOptions(this.#config), (err) => this.#internalError(err, {}));
    // Two descriptors per client connection (its own and its upstream's, open or to come),
    // two per tunnel, plus idle pooled upstreams, listeners and refusals still in flight.
    this.#gate = new Gatekeeper(
      {
        wheel: this.wheel,
        log: this.#write,
        refused: (err, remoteAddress) => {
          if (this.listenerCount('connectionError') > 0) this.emit('connectionError', err, { remoteAddress, method: null, path: null, status: 503 });
        },
      },
      {
        descriptorsReserved: () => this.#listeners.count + 2 * (this.#connections.size + this.#tunnels.size) + this.pool.idleCount + this.#gate.refusals.open,
        descriptorsHeld: () => {
          let held = this.#listeners.count + 2 * this.#tunnels.size + this.pool.idleCount + this.#gate.refusals.open;
          for (const conn of this.#connections) held += conn.exchange === null ? 1 : 2;
          return held;
        },
      },
      () => this.#connections.size + this.#tunnels.size,
      this.#config,
    );
  }

  get isClosing(): boolean {
    return this.#closing !== null;
  }

  get config(): ResolvedConfig {
    return this.#config;
  }

  /** Addresses listened on so far. */
  get addresses(): readonly ListenAddress[] {
    return this.#listeners.addresses;
  }

  /**
   * Listens on one address: `listen(port, host?)`, `listen('host:port')` or
   * `listen({ port, host, tls? })` (`tls: { certificates: [{ cert, key }] }`:
   * files or PEM text). Without arguments, listens on every `config.listen`
   * address (127.0.0.1:8000 when there is none). Resolves to the (first) bound address.
   */
  async listen(spec?: number | string | ListenSpec, host?: string): Promise<ListenAddress> {
    if (this.#closing) throw new Error('gateway is closed');
    let targets: ResolvedListen[];
    if (spec === undefined) {
      targets = this.#config.listen.length > 0 ? [...this.#config.listen] : [{ host: '127.0.0.1', port: 8000, tls: null, proxyProtocol: false }];
    } else if (typeof spec === 'number') {
      targets = [{ host: host ?? '127.0.0.1', port: spec, tls: null, proxyProtocol: false }];
    } else if (typeof spec === 'string') {
      targets = [{ ...parseListen(spec, 'listen'), tls: null, proxyProtocol: false }];
    } else {
      targets = [{ host: spec.host ?? '127.0.0.1', port: spec.port ?? 0, tls: spec.tls ?? null, proxyProtocol: spec.proxyProtocol ?? false }];
    }
    const reusePort = typeof spec === 'object' && spec.reusePort === true;
    await this.#probe();
    const bound: ListenAddress[] = [];
    for (const target of targets) {
      const entry = await this.#listeners.open({ ...target, handshakeTimeoutMs: this.#config.headTimeoutMs, backlog: this.#config.listenBacklog, reusePort });
      this.emit('listening', entry);
      bound.push(entry);
    }
    return bound[0];
  }

  #probed = false;

  /** Picks the fast paths that work on this Node, once, and says which in one log line. */
  async #probe(): Promise<void> {
    if (this.#probed) return;
    const unavailable = parserUnavailable();
    if (unavailable !== null) throw new Error(`wsgate ${unavailable}`);
    await probeFastPaths();
    if (this.#probed) return;
    this.#probed = true;
    this.#log('info', describeFastPaths());
  }

  /**
   * A new connection on one of our listeners (a TLS one after its handshake;
   * `proxied`: what its PROXY header said); nothing it does may throw into the server.
   */
  #accepted(socket: net.Socket, proxied: Proxied | null): void {
    try {
      if (proxied !== null) {
        // Already reading (its header was read): no pooled reads for it.
        this.#adopt(socket, proxied.addresses, true)?.start(proxied.initial);
        return;
      }
      // A TLS socket reads through its TLSWrap: no pooled reads for it either.
      this.#adopt((socket as { encrypted?: boolean }).encrypted ? socket : withPooledReads(socket, TurnWriteSocket), null, true)?.start();
    } catch (err) {
      this.#internalErrors++;
      this.#log('error', `cannot set up a connection: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`, { code: 'WSG_ERR_INTERNAL' });
      socket.on('error', () => {});
      socket.destroy();
    }
  }

  /** Takes a raw accepted socket (from your own net or tls server; create it with `allowHalfOpen: true`). */
  handleSocket(socket: net.Socket): void {
    this.#adopt(socket)?.start();
  }

  /** For a `node:http` server's 'upgrade' event: `server.on('upgrade', (req, socket, head) => gw.handleUpgrade(req, socket, head))`. */
  handleUpgrade(req: IncomingMessage, socket: net.Socket, head: Buffer): void {
    const conn = this.#adopt(socket);
    if (conn === null) return;
    const parsed: ParsedHead = {
      versionMajor: req.httpVersionMajor,
      versionMinor: req.httpVersionMinor,
      rawHeaders: req.rawHeaders,
      method: req.method ?? 'GET',
      url: req.url ?? '/',
      statusCode: 0,
      statusMessage: '',
      upgrade: true,
      shouldKeepAlive: false,
    };
    try {
      conn.startParsed(parsed, head ?? Buffer.alloc(0));
    } catch (err) {
      conn.crashed(err);
    }
  }

  /**
   * Wraps an accepted socket in a Connection; null (socket destroyed) while
   * closing or if that fails. `own`: accepted on our own listener (a socket
   * handed in through the API may have other holders: its tunnel keeps it).
   */
  #adopt(socket: net.Socket, proxied: ProxiedAddresses | null = null, own = false): Connection | null {
    let conn: Connection | null = null;
    initSocketFields(socket, own);
    // maxConnections, the descriptor limit, per-client limits (limits/gatekeeper.ts).
    if (!this.#closing && !this.#gate.admit(socket, proxied?.sourceAddress ?? socket.remoteAddress ?? '')) return null;
    if (!this.#closing) {
      try {
        conn = new Connection(this, socket, this.#config, this.#router, proxied);
      } catch (err) {
        this.#internalErrors++;
        this.#log('error', `cannot set up a connection: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`, { code: 'WSG_ERR_INTERNAL' });
      }
    }
    if (conn === null) {
      socket.on('error', () => {});
      socket.destroy();
      return null;
    }
    this.#connections.add(conn);
    this.#totalConnections++;
    return conn;
  }

  /**
   * TLS session ticket keys (48 bytes) for every TLS listener, open and to
   * come: processes that share one set resume each other's sessions.
   */
  setTicketKeys(keys: Buffer): void {
    if (keys.length !== 48) throw new RangeError(`session ticket keys are 48 bytes, got ${keys.length}`);
    this.#listeners.setTicketKeys(keys);
  }

  /** New connections use `config` from now on; open connections and tunnels keep what they started with. */
  /**
   * New connections use `config` from now on; open connections and tunnels
   * keep what they started with. TLS listeners re-read their certificates
   * (the `config.listen` entry with the same host and port as asked when it
   * was opened): new handshakes use them. A config that does not resolve
   * (a bad certificate included) throws, and nothing changes.
   */
  reload(config: GatewayConfig): void {
    const resolved = resolveConfig(config);
    const router = new Router(resolved);
    const errors = this.#listeners.reloadCertificates((asked) => {
      const entry = resolved.listen.find((l) => l.tls !== null && l.port === asked.port && l.host === asked.host);
      return entry?.tls?.certificates ?? null;
    });
    for (const err of errors) this.#log('error', err.message, { code: 'WSG_ERR_CONFIG' });
    this.#config = resolved;
    this.#router = router;
    this.pool.options = poolOptions(resolved);
    this.#gate.configure(resolved);
    this.#log('info', 'config reloaded', { servers: resolved.servers.length });
  }

  /**
   * TLS handshakes that fail: counted, and logged at most once a second
   * (scanners make many). A client that closed or reset its connection
   * before finishing the handshake did not fail one: browsers open spare
   * connections and drop them (nginx: "client closed connection while SSL
   * handshaking", at info); those are counted apart and logged at debug.
   */
  #handshakeFailed(err: Error, socket: net.Socket): void {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ECONNRESET' || code === 'EPIPE') {
      this.#tlsHandshakesAbandoned++;
      this.#abandonedLog.log('debug', `TLS handshake abandoned by the client: ${err.message}`, { code, remote: socket.remoteAddress, abandoned: this.#tlsHandshakesAbandoned });
      return;
    }
    this.#tlsHandshakeFailures++;
    this.#handshakeLog.log('info', `TLS handshake failed: ${err.message}`, { code, remote: socket.remoteAddress, failures: this.#tlsHandshakeFailures });
  }

  /** A PROXY protocol listener's connection without a valid header: closed unanswered, counted, logged at most once a second. */
  #proxyHeaderFailed(reason: string, socket: net.Socket): void {
    this.#proxyProtocolErrors++;
    this.#proxyHeaderLog.log('warn', `PROXY protocol header refused: ${reason}`, { code: 'WSG_ERR_PROXY_PROTOCOL', remote: socket.remoteAddress, refused: this.#proxyProtocolErrors });
  }

  #tlsHandshakeFailures = 0;
  #tlsHandshakesAbandoned = 0;
  #proxyProtocolErrors = 0;
  readonly #handshakeLog = new RateLimitedLog(this.#write);
  readonly #abandonedLog = new RateLimitedLog(this.#write);
  readonly #proxyHeaderLog = new RateLimitedLog(this.#write);

  stats(): GatewayStats {
    const bytes = this.#tunnels.bytes();
    return {
      connections: this.#connections.size + this.#tunnels.size,
      tunnels: this.#tunnels.size,
      tunnelsOnHandles: bytes.onHandles,
      totalConnections: this.#totalConnections,
      totalTunnels: this.#tunnels.total,
      bytesToUpstream: bytes.toUpstream,
      bytesToDownstream: bytes.toDownstream,
      internalErrors: this.#internalErrors,
      tlsHandshakeFailures: this.#tlsHandshakeFailures,
      tlsHandshakesAbandoned: this.#tlsHandshakesAbandoned,
      proxyProtocolErrors: this.#proxyProtocolErrors,
      clientLimitRefusals: this.#gate.clientRefusals,
      fastPaths: fastPaths(),
    };
  }

  /**
   * Stops accepting, closes connections still waiting for a head, lets
   * exchanges and tunnels finish, and destroys what is left after `drainMs`.
   */
  close(options: CloseOptions = {}): Promise<void> {
    if (this.#closing) return this.#closing;
    const drainMs = options.drainMs ?? 10_000;
    this.#closing = new Promise<void>((resolve) => {
      let listening = true;
      const maybeDone = () => {
        if (!listening && this.#connections.size === 0 && this.#tunnels.size === 0) {
          clearTimeout(deadline);
          this.removeListener('tunnelClose', maybeDone);
          this.#afterConnectionClose = null;
          this.wheel.clear();
          resolve();
        }
      };
      this.#listeners.close(() => {
        listening = false;
        maybeDone();
      });
      this.pool.close();
      // Connections between requests (or still waiting for their first head) close now;
      // those in an exchange finish it and then close instead of keeping alive.
      for (const conn of this.#connections) {
        if (conn.state === ConnState.ReadingHead) conn.socket.destroy();
      }
      const deadline = setTimeout(() => {
        for (const conn of this.#connections) conn.socket.destroy();
        this.#tunnels.destroyAll('shutdown');
      }, drainMs);
      this.#afterConnectionClose = maybeDone;
      this.on('tunnelClose', maybeDone);
      maybeDone();
    });
    return this.#closing;
  }

  #afterConnectionClose: (() => void) | null = null;

  // --- ConnectionHost ---

  connectionFailed(conn: Connection, err: WsgateError): void {
    if (err.code === 'WSG_ERR_INTERNAL') this.#internalErrors++;
    const info: ConnectionErrorInfo = {
      remoteAddress: conn.remoteAddress,
      method: conn.head?.method ?? null,
      path: conn.head?.url.slice(0, 200) ?? null,
      status: err.status,
    };
    const level: LogLevel = err.side === 'upstream' || err.code === 'WSG_ERR_INTERNAL' ? 'error' : 'warn';
    this.#log(level, err.message, { code: err.code, status: err.status || undefined, remote: info.remoteAddress, method: info.method ?? undefined, path: info.path ?? undefined });
    if (this.listenerCount('connectionError') > 0) this.emit('connectionError', err, info);
  }

  connectionClosed(conn: Connection): void {
    this.#connections.delete(conn);
    this.#afterConnectionClose?.();
  }

  connectionHandedOver(conn: Connection): void {
    this.#connections.delete(conn);
  }

  /** Where exchanges register the tunnels they build (proxy/exchange.ts `#upgrade`). */
  get tunnels(): TunnelRegistry {
    return this.#tunnels;
  }

  /** A bug outside any connection's own error path: logged with its stack, counted. */
  #internalError(err: unknown, fields: Record<string, unknown>): void {
    this.#internalErrors++;
    this.#log('error', `${ERROR_CODES.WSG_ERR_INTERNAL.message}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`, { code: 'WSG_ERR_INTERNAL', ...fields });
  }

  #log(level: LogLevel, message: string, fields?: Record<string, unknown>): void {
    this.#config.logger?.log(level, message, fields);
  }

  #emitError(err: Error): void {
    this.#log('error', `listener error: ${err.message}`, { code: (err as NodeJS.ErrnoException).code });
    if (this.listenerCount('error') > 0) this.emit('error', err);
  }
}

export function createGateway(config: GatewayConfig): Gateway {
  return new Gateway(config);
}
