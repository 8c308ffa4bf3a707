// One client (downstream) connection, top to bottom:
//
//   READING_HEAD -> (validate, route) -> PROXYING (an Exchange) -> TUNNEL | LINGERING -> CLOSED
//
// The head is read incrementally (head-reader.ts) under the head timeout; a bad
// head is answered with a prebuilt 4xx and `Connection: close`. A routed
// request goes to an Exchange, which either finishes an HTTP response or hands
// both sockets to a Tunnel on a valid 101. Nothing here throws to the caller:
// every failure becomes an answer (or a cut connection) and a log line.

import type net from 'node:net';
import type { ResolvedConfig } from './config.js';
import { WsgateError } from './errors.js';
import { Exchange, ExchangePhase } from './exchange.js';
import { checkUpgradeRequest } from './handshake.js';
import { HeadKind, HeadReader, countHeader, findHeader, type HeadReaderHandler, type ParsedHead } from './head-reader.js';
import { asksForWebSocket } from './headers.js';
import { normalizeTarget } from './normalize-path.js';
import { errorResponse } from './responses.js';
import type { RouteMatch, Router } from './router.js';
import { WheelTimer, type TimerOwner, type TimerWheel } from './timer-wheel.js';

export const ConnState = {
  ReadingHead: 0,
  Proxying: 1,
  Tunnel: 2,
  Lingering: 3,
  Closed: 4,
} as const;
export type ConnState = (typeof ConnState)[keyof typeof ConnState];

/** What a connection needs from its gateway (gateway.ts implements it). */
export interface ConnectionHost {
  readonly wheel: TimerWheel;
  connectionFailed(conn: Connection, err: WsgateError): void;
  connectionClosed(conn: Connection): void;
  tunnelStarting(conn: Connection, route: RouteMatch, upstream: net.Socket, responseHead: string, leftover: Buffer | null, early: Buffer[]): void;
}

// After the last response byte, keep reading (and discarding) for a while
// before closing, so the client's unread data cannot turn our FIN into an RST
// that destroys the response in flight (nginx `lingering_timeout`).
const LINGER_MS = 5000;

const kConnection = Symbol('wsgate connection');
type DownstreamSocket = net.Socket & { [kConnection]: Connection };

// Thrown from the parser's message-complete callback to stop llhttp there:
// this connection serves one request, and bytes after it are never parsed.
const STOP_PARSING = Symbol('stop parsing');

export class Connection implements TimerOwner, HeadReaderHandler {
  readonly host: ConnectionHost;
  readonly socket: DownstreamSocket;
  /** Config and routes as they were when this connection arrived; a reload does not touch it. */
  readonly config: ResolvedConfig;
  readonly router: Router;
  readonly wheel: TimerWheel;
  readonly remoteAddress: string;
  readonly proto: 'http' | 'https';
  state: ConnState = ConnState.ReadingHead;
  head: ParsedHead | null = null;
  exchange: Exchange | null = null;
  #reader: HeadReader | null;
  #timer: WheelTimer;
  /** Raw bytes after an upgrade head, held until the 101. */
  #early: Buffer[] = [];
  #headComplete = false;
  #requestComplete = false;

  constructor(host: ConnectionHost, socket: net.Socket, config: ResolvedConfig, router: Router) {
    this.host = host;
    this.socket = socket as DownstreamSocket;
    this.config = config;
    this.router = router;
    this.wheel = host.wheel;
    this.remoteAddress = socket.remoteAddress ?? '';
    this.proto = (socket as { encrypted?: boolean }).encrypted ? 'https' : 'http';
    this.#reader = new HeadReader(HeadKind.Request, this, config.maxHeadSize, config.maxHeaders);
    this.#timer = new WheelTimer(this);
    this.socket[kConnection] = this;
    socket.on('error', socketOnError);
    socket.on('close', socketOnClose);
  }

  /** Starts reading a head from the socket (accepted connections). */
  start(): void {
    const socket = this.socket;
    socket.setNoDelay(true);
    for (const [event, listener] of READING_LISTENERS) socket.on(event, listener);
    this.wheel.arm(this.#timer, this.config.headTimeoutMs);
  }

  /** Starts from a head node's http server already parsed (`handleUpgrade`). */
  startParsed(head: ParsedHead, rest: Buffer): void {
    this.#reader?.release();
    this.#reader = null;
    const socket = this.socket;
    socket.setNoDelay(true);
    for (const [event, listener] of READING_LISTENERS) socket.on(event, listener);
    this.#headComplete = true;
    this.#requestComplete = true;
    this.head = head;
    if (rest.length > 0) this.#early.push(rest);
    this.#dispatch();
  }

  // --- socket events ---

  received(chunk: Buffer): void {
    switch (this.state) {
      case ConnState.ReadingHead:
      case ConnState.Proxying:
        break;
      default:
        return; // lingering: discard
    }
    if (this.#headComplete && this.#reader === null) {
      // Upgrade request: everything after the head waits for the 101.
      this.#early.push(chunk);
      return;
    }
    if (this.#requestComplete) return;
    const reader = this.#reader!;
    const wasComplete = this.#headComplete;
    let consumed = chunk.length;
    try {
      consumed = reader.execute(chunk);
    } catch (err) {
      if (err !== STOP_PARSING) {
        this.fail(err instanceof WsgateError ? err : new WsgateError('WSG_ERR_BAD_REQUEST', String(err)));
        return;
      }
    }
    if (wasComplete || !this.#headComplete) return;
    // The head completed in this chunk.
    if (this.head!.upgrade) {
      // llhttp stopped at the end of the head: what follows is not HTTP.
      reader.release();
      this.#reader = null;
      this.#requestComplete = true;
      if (consumed < chunk.length) this.#early.push(chunk.subarray(consumed));
    }
    this.#dispatch();
  }

  ended(): void {
    if (this.state === ConnState.Lingering || this.state === ConnState.ReadingHead) {
      // Client finished (or gave up before a whole head: nothing to answer).
      this.socket.destroy();
      return;
    }
    if (this.state === ConnState.Proxying && this.exchange !== null) {
      // A WebSocket client that leaves before the 101 gave up on it; an HTTP
      // client may half-close after its request and still read the answer.
      if (this.exchange.request.webSocket || !this.#requestComplete) {
        this.exchange.abort();
        this.socket.destroy();
      }
    }
  }

  closed(): void {
    if (this.state === ConnState.Tunnel || this.state === ConnState.Closed) return;
    this.state = ConnState.Closed;
    this.wheel.cancel(this.#timer);
    this.#reader?.release();
    this.#reader = null;
    this.exchange?.abort();
    this.host.connectionClosed(this);
  }

  drained(): void {
    if (this.exchange !== null && this.exchange.phase !== ExchangePhase.Done) this.exchange.downstreamDrained();
  }

  onTimerExpired(): number {
    if (this.state === ConnState.ReadingHead) {
      this.fail(new WsgateError('WSG_ERR_HEAD_TIMEOUT', `no complete head after ${this.config.headTimeoutMs} ms`));
    } else if (this.state === ConnState.Lingering) {
      this.socket.destroy();
    }
    return 0;
  }

  // --- request parser callbacks ---

  onHead(head: ParsedHead): boolean {
    this.head = head;
    this.#headComplete = true;
    return false;
  }

  onBody(chunk: Buffer): void {
    if (this.exchange !== null) this.exchange.sendBody(chunk);
    else this.#early.push(chunk);
  }

  onMessageComplete(): void {
    this.#requestComplete = true;
    this.pauseReading();
    if (this.exchange !== null) this.exchange.endBody();
    // One request per connection: stop llhttp before it reads a pipelined one.
    // (After an upgrade head llhttp stops by itself and reports where.)
    if (!this.head!.upgrade) throw STOP_PARSING;
  }

  // --- used by the exchange ---

  pauseReading(): void {
    this.socket.pause();
  }

  resumeReading(): void {
    if (!this.#requestComplete) this.socket.resume();
  }

  exchangeDone(exchange: Exchange, err: WsgateError | null): void {
    if (err !== null) {
      this.fail(err, exchange.responseStarted);
      return;
    }
    this.#linger();
  }

  startTunnel(route: RouteMatch, upstream: net.Socket, responseHead: string, leftover: Buffer | null): void {
    this.state = ConnState.Tunnel;
    this.wheel.cancel(this.#timer);
    const socket = this.socket;
    for (const [event, listener] of READING_LISTENERS) socket.removeListener(event, listener);
    socket.removeListener('error', socketOnError);
    socket.removeListener('close', socketOnClose);
    const early = this.#early;
    this.#early = [];
    this.exchange = null;
    this.host.tunnelStarting(this, route, upstream, responseHead, leftover, early);
  }

  /**
   * Answers `err` with its prebuilt response when nothing was sent yet, else
   * cuts the connection (a client must never take a truncated body for a whole one).
   */
  fail(err: WsgateError, responseStarted = false): void {
    if (this.state === ConnState.Closed || this.state === ConnState.Lingering) return;
    this.host.connectionFailed(this, err);
    this.exchange?.abort();
    const answer = responseStarted ? undefined : errorResponse(err.status);
    if (answer === undefined || this.socket.destroyed || !this.socket.writable) {
      this.socket.destroy();
      return;
    }
    this.socket.write(answer);
    this.#linger();
  }

  /** Last line of defence: a bug while handling one connection ends that connection, never the process. */
  crashed(err: unknown): void {
    const error = new WsgateError('WSG_ERR_INTERNAL', err instanceof Error ? (err.stack ?? err.message) : String(err), { cause: err });
    this.host.connectionFailed(this, error);
    this.exchange?.abort();
    this.socket.destroy();
  }

  // --- internals ---

  /** Validates and routes the complete head, then starts its exchange. */
  #dispatch(): void {
    this.state = ConnState.Proxying;
    this.wheel.cancel(this.#timer);
    this.socket.pause();
    const head = this.head!;

    const hostCount = countHeader(head.rawHeaders, 'host');
    // RFC 9112 §3.2: a 1.1 request has exactly one Host; none or several is a 400.
    if (hostCount > 1 || (hostCount === 0 && head.versionMinor >= 1)) {
      this.fail(new WsgateError('WSG_ERR_MISSING_HOST', `${hostCount} Host fields`));
      return;
    }
    let clientHost = hostCount === 1 ? findHeader(head.rawHeaders, 'host')!.trim() : null;
    let target = head.url;
    const absolute = /^https?:\/\/([^/?#]*)/i.exec(target);
    if (absolute) {
      // RFC 9112 §3.2.2: with absolute-form the authority replaces Host.
      clientHost = absolute[1];
      target = target.slice(absolute[0].length) || '/';
      if (!target.startsWith('/')) target = '/' + target;
    }
    if (clientHost !== null && !/^[A-Za-z0-9.\-_~!$&'()*+,;=:[\]%]+$/.test(clientHost)) {
      this.fail(new WsgateError('WSG_ERR_MISSING_HOST', `invalid Host ${JSON.stringify(clientHost)}`));
      return;
    }
    const normalized = normalizeTarget(target);
    if (normalized === null) {
      this.fail(new WsgateError('WSG_ERR_BAD_PATH', JSON.stringify(head.url.slice(0, 200))));
      return;
    }

    let webSocket = asksForWebSocket(head);
    if (webSocket) {
      const bad = checkUpgradeRequest(head);
      if (bad) {
        this.fail(bad);
        return;
      }
    }
    const route = this.router.match(clientHost, normalized.path, normalized.query);
    if (route === null) {
      this.fail(new WsgateError('WSG_ERR_NO_ROUTE', `${clientHost ?? ''}${normalized.path}`));
      return;
    }
    if (route.upstreamTarget === null) {
      this.fail(new WsgateError('WSG_ERR_BAD_PATH', `${normalized.path} leaves the upstream path of ${route.location.upstream.url}`));
      return;
    }
    // A location without WebSockets forwards the request as plain HTTP (Upgrade stripped).
    if (!route.location.websocket) webSocket = false;
    const transferEncoding = findHeader(head.rawHeaders, 'transfer-encoding');
    const contentLength = findHeader(head.rawHeaders, 'content-length');
    if (!webSocket && this.#reader === null) {
      // Handed over after an upgrade head (llhttp or node's server stopped
      // there, e.g. `Upgrade: h2c`), but this is not an upgrade wsgate will
      // perform: the bytes after the head are not parsed HTTP, so they are
      // dropped, never sent; a body it would have to forward unparsed is refused.
      this.#early = [];
      if (transferEncoding !== undefined || (contentLength !== undefined && Number(contentLength) > 0)) {
        this.fail(new WsgateError('WSG_ERR_BAD_REQUEST', 'upgrade request with a body'));
        return;
      }
    }

    const upstream = route.location.upstream;
    const exchange = new Exchange(this, {
      head,
      route,
      webSocket,
      host: clientHost ?? (upstream.host.includes(':') ? `[${upstream.host}]` : upstream.host) + (upstream.port === 80 ? '' : `:${upstream.port}`),
      clientHost,
      chunked: transferEncoding !== undefined,
      contentLength: contentLength === undefined ? 0 : Number(contentLength),
    });
    this.exchange = exchange;
    if (!webSocket) {
      for (const chunk of this.#early) exchange.sendBody(chunk);
      this.#early = [];
      if (this.#requestComplete) exchange.endBody();
    }
  }

  #linger(): void {
    if (this.state === ConnState.Lingering || this.state === ConnState.Closed) return;
    this.state = ConnState.Lingering;
    this.#reader?.release();
    this.#reader = null;
    this.#early = [];
    const socket = this.socket;
    socket.end();
    socket.resume();
    this.wheel.arm(this.#timer, LINGER_MS);
  }
}

function socketOnData(this: DownstreamSocket, chunk: Buffer): void {
  const conn = this[kConnection];
  try {
    conn.received(chunk);
  } catch (err) {
    conn.crashed(err);
  }
}
function socketOnEnd(this: DownstreamSocket): void {
  this[kConnection].ended();
}
function socketOnDrain(this: DownstreamSocket): void {
  this[kConnection].drained();
}
function socketOnError(this: DownstreamSocket): void {
  // 'close' follows; the error itself (ECONNRESET, EPIPE) is the client's business.
}
function socketOnClose(this: DownstreamSocket): void {
  this[kConnection].closed();
}

// Attached once the connection starts reading; removed when a tunnel takes the socket over.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const READING_LISTENERS: ReadonlyArray<readonly [string, (this: DownstreamSocket, ...args: any[]) => void]> = [
  ['data', socketOnData],
  ['end', socketOnEnd],
  ['drain', socketOnDrain],
];
