// One client (downstream) connection, top to bottom (states: connection-state.ts):
//
//   READING_HEAD -> (validate, route) -> PROXYING (an Exchange) -+-> READING_HEAD (keep-alive)
//                                                                +-> TUNNEL (valid 101)
//                                                                +-> LINGERING -> CLOSED
//
// The requests it reads wait in its Pipeline (pipeline.ts) and are served one
// at a time, in order. A bad head is answered with a prebuilt 4xx and
// `Connection: close`. Nothing here throws to the
// caller: every failure becomes an answer (or a cut connection) and a log line.

import type net from 'node:net';
import type { ResolvedConfig } from '../config.js';
import { LocalAnswer, admitRequest } from '../http/admission.js';
import { WsgateError } from '../core/errors.js';
import { ConnState, ConnTimeout, nextState } from './connection-state.js';
import { Exchange, type ExchangeContext, type ExchangeOwner, type TunnelRegistry } from './exchange.js';
import type { ParsedHead } from '../http/head-reader.js';
import { Pipeline, type PipelineOwner } from './pipeline.js';
import type { PendingRequest } from './pending-request.js';
import { guard } from '../core/guard.js';
import { kConnection, ownerOfSocket } from '../io/socket-fields.js';
import { errorResponse } from '../core/responses.js';
import type { Router } from '../http/router.js';
import type { ProxiedAddresses } from '../http/proxy-protocol.js';
import { WheelTimer, type TimerOwner, type TimerWheel } from '../core/timer-wheel.js';
import type { UpstreamPool } from '../upstream/pool.js';

/** What a connection needs from its gateway (gateway.ts implements it). */
export interface ConnectionHost {
  readonly wheel: TimerWheel;
  readonly pool: UpstreamPool;
  /** The gateway is draining: finish the current request, then close. */
  readonly isClosing: boolean;
  /** Registers the tunnels this connection's exchanges build. */
  readonly tunnels: TunnelRegistry;
  connectionFailed(conn: Connection, err: WsgateError): void;
  connectionClosed(conn: Connection): void;
  /** The connection's socket went to a tunnel, which the registry is told of next. */
  connectionHandedOver(conn: Connection): void;
}

// After the last response byte, keep reading (and discarding) for a while
// before closing, so the client's unread data cannot turn our FIN into an RST
// that destroys the response in flight (nginx `lingering_timeout`).
const LINGER_MS = 5000;

/**
 * What a client socket's events go to: its Connection, then the tunnel side
 * that takes it over (tunnel.ts); null in between. The listeners below are the
 * socket's only ones for its whole life.
 */
export interface DownstreamOwner {
  received(chunk: Buffer): void;
  /** FIN */
  ended(): void;
  drained(): void;
  failed(err: Error): void;
  closed(): void;
}

type DownstreamSocket = net.Socket & { [kConnection]: DownstreamOwner | null };

export class Connection implements TimerOwner, ExchangeOwner, PipelineOwner, DownstreamOwner {
  readonly host: ConnectionHost;
  readonly socket: DownstreamSocket;
  /** Config and routes as they were when this connection arrived; a reload does not touch it. */
  readonly config: ResolvedConfig;
  readonly router: Router;
  readonly wheel: TimerWheel;
  readonly remoteAddress: string;
  /** The peer is a trusted proxy: its X-Forwarded-* fields are believed (trusted-proxies.ts). */
  readonly peerTrusted: boolean;
  readonly proto: 'http' | 'https';
  state: ConnState = ConnState.ReadingHead;
  /** Head of the request being served (or the last one read). */
  head: ParsedHead | null = null;
  exchange: Exchange | null = null;
  requestsServed = 0;
  /** The requests read, in order; [0] is the one being served. */
  readonly #pipeline: Pipeline;
  readonly #context: ExchangeContext;
  #timer: WheelTimer;
  /** The timeout the timer is armed for. */
  #timeout: ConnTimeout = ConnTimeout.None;
  /** A parse error behind a request still being answered: reported when its turn comes. */
  #deferredError: WsgateError | null = null;
  /** The client sent FIN: answer what was asked, then close. */
  #clientEnded = false;
  /** What a PROXY header said, or null. */
  readonly #proxied: ProxiedAddresses | null;

  /**
   * `proxied`: the addresses a PROXY protocol header gave (listen/proxy-header.ts):
   * the client is its source, for forwarded fields, logs, limits and trust alike.
   */
  constructor(host: ConnectionHost, socket: net.Socket, config: ResolvedConfig, router: Router, proxied: ProxiedAddresses | null = null) {
    this.host = host;
    this.socket = socket as DownstreamSocket;
    this.config = config;
    this.router = router;
    this.wheel = host.wheel;
    this.#proxied = proxied;
    this.remoteAddress = proxied?.sourceAddress ?? socket.remoteAddress ?? '';
    this.peerTrusted = config.trustedProxies.contains(this.remoteAddress);
    this.proto = (socket as { encrypted?: boolean }).encrypted ? 'https' : 'http';
    this.#context = { pool: host.pool, wheel: host.wheel, config, tunnels: host.tunnels };
    this.#pipeline = new Pipeline(this, config.maxHeadSize, config.maxHeaders);
    this.#timer = new WheelTimer(this);
    this.socket[kConnection] = this;
    socket.on('error', connectionOnError);
    socket.on('close', connectionOnClose);
  }

  /** Starts reading heads from the socket (accepted connections); `initial`: bytes already read from it (after a PROXY header). */
  start(initial: Buffer | null = null): void {
    this.#listen();
    // A socket something else read from first (a PROXY header) was left paused.
    if (this.socket.isPaused()) this.socket.resume();
    this.#arm(ConnTimeout.Head); // the first head's clock starts at accept
    if (initial !== null) this.received(initial);
  }

  /** The TCP endpoints this connection stands for: the PROXY header's, else the socket's own (for `sendProxyProtocol`). */
  endpoints(): ProxiedAddresses {
    if (this.#proxied !== null) return this.#proxied;
    const socket = this.socket;
    return { sourceAddress: this.remoteAddress, sourcePort: socket.remotePort ?? 0, destinationAddress: socket.localAddress ?? '', destinationPort: socket.localPort ?? 0 };
  }

  /** Starts from a head node's http server already parsed (`handleUpgrade`). */
  startParsed(head: ParsedHead, rest: Buffer): void {
    this.#pipeline.adopt(head, rest);
    this.#listen();
    this.socket.pause(); // what follows the upgrade head waits for the 101
    this.#next();
  }

  #listen(): void {
    const socket = this.socket;
    socket.setNoDelay(true);
    for (const [event, listener] of READING_LISTENERS) socket.on(event, listener);
  }

  // --- socket events ---

  received(chunk: Buffer): void {
    if (this.state === ConnState.Lingering || this.state === ConnState.Closed) return; // discard
    // The first bytes of a head after an idle keep-alive wait: the head's clock starts.
    if (this.state === ConnState.ReadingHead && this.#timeout === ConnTimeout.KeepAlive) this.#arm(ConnTimeout.Head);
    const err = this.#pipeline.read(chunk);
    if (err !== null) this.#parseFailed(err);
    else if (this.exchange === null) this.#next();
  }

  ended(): void {
    this.#clientEnded = true;
    if (this.state === ConnState.Lingering || this.state === ConnState.ReadingHead) {
      // Finished, idle, or gave up before a whole head: nothing to answer.
      this.socket.destroy();
      return;
    }
    const exchange = this.exchange;
    const current = this.#pipeline.front;
    if (this.state === ConnState.Proxying && exchange !== null && current !== undefined) {
      // A WebSocket client that leaves before the 101 gave up on it; an HTTP
      // client may half-close after its request and still read the answer.
      if (exchange.request.webSocket || !current.complete) {
        exchange.abort();
        this.socket.destroy();
      }
    }
  }

  closed(): void {
    if (this.state === ConnState.Tunnel || this.state === ConnState.Closed) return;
    this.#enter(ConnState.Closed);
    this.#pipeline.clear();
    this.exchange?.abort();
    this.exchange = null;
    this.host.connectionClosed(this);
  }

  drained(): void {
    if (this.exchange !== null && !this.exchange.isOver) this.exchange.downstreamDrained();
  }

  failed(): void {
    // 'close' follows; the error itself (ECONNRESET, EPIPE) is the client's business.
  }

  onTimerExpired(): number {
    const fired = this.#timeout;
    this.#timeout = ConnTimeout.None;
    switch (fired) {
      case ConnTimeout.Head:
        this.fail(new WsgateError('WSG_ERR_HEAD_TIMEOUT', `no complete head after ${this.config.headTimeoutMs} ms`));
        break;
      case ConnTimeout.KeepAlive: // an idle keep-alive connection just closes
      case ConnTimeout.Linger:
        this.socket.destroy();
        break;
    }
    return 0;
  }

  // --- used by the exchange ---

  /** Used by the exchange and the pipeline. */
  pauseReading(): void {
    this.socket.pause();
  }

  /**
   * May the connection stay open after the current response? Asked when the
   * response head is written, to say so in it (RFC 9112 §9.3).
   */
  mayKeepAlive(): boolean {
    const current = this.#pipeline.front;
    return (
      current !== undefined &&
      // after an upgrade head the bytes that follow are not parsed HTTP: no next request
      current.tail === null &&
      current.complete &&
      current.head.shouldKeepAlive &&
      !this.#clientEnded &&
      !this.host.isClosing &&
      this.requestsServed + 1 < this.config.keepAliveRequests
    );
  }

  /** The exchange can take more request body. */
  resumeReading(): void {
    if (this.#pipeline.queue.length <= 1 && this.#pipeline.parsing) this.socket.resume();
  }

  /** The current request's exchange finished; `keepAlive`: its response head promised the client another request. */
  exchangeDone(exchange: Exchange, err: WsgateError | null, keepAlive: boolean): void {
    if (exchange !== this.exchange) return;
    this.exchange = null;
    this.requestsServed++;
    if (err !== null) {
      this.fail(err, exchange.responseStarted);
      return;
    }
    this.#pipeline.queue.shift();
    if (!keepAlive || this.socket.destroyed) {
      this.#linger();
      return;
    }
    this.#enter(ConnState.ReadingHead, ConnTimeout.KeepAlive);
    if (this.#pipeline.queue.length > 0 || this.#deferredError !== null) this.#next();
    else if (this.#pipeline.parsing) this.socket.resume();
  }

  handOver(): Buffer[] {
    this.#enter(ConnState.Tunnel);
    // The tunnel keeps the socket for hours, not this connection: the
    // socket's listeners stay and go to the tunnel, which takes it next.
    this.socket[kConnection] = null;
    const early = this.#pipeline.front?.tail ?? [];
    this.#pipeline.clear();
    this.exchange = null;
    this.host.connectionHandedOver(this);
    return early;
  }

  /**
   * Answers `err` with its prebuilt response when nothing was sent yet, else
   * cuts the connection (a client must never take a truncated body for a whole one).
   */
  fail(err: WsgateError, responseStarted = false): void {
    if (this.state === ConnState.Closed || this.state === ConnState.Lingering) return;
    this.host.connectionFailed(this, err);
    const exchange = this.exchange;
    this.exchange = null;
    exchange?.abort();
    const answer = responseStarted ? undefined : errorResponse(err.status, this.#pipeline.front?.head.method === 'HEAD');
    if (answer === undefined || this.socket.destroyed || !this.socket.writable) {
      // A response cut short ends with a reset, not a FIN: after a body read
      // until close a FIN would make the truncated body look complete.
      if (responseStarted && !this.socket.destroyed) this.socket.resetAndDestroy();
      else this.socket.destroy();
      return;
    }
    this.socket.write(answer);
    this.#linger();
  }

  /**
   * Last line of defence: a bug while handling one connection (a listener
   * threw: core/guard.ts) ends that connection, never the process. Answered
   * with a 502 when nothing was sent yet, else both sides are cut; logged with
   * its stack and counted (stats().internalErrors).
   */
  crashed(err: unknown): void {
    const error = new WsgateError('WSG_ERR_INTERNAL', err instanceof Error ? (err.stack ?? err.message) : String(err), { cause: err });
    if ((this.state === ConnState.ReadingHead || this.state === ConnState.Proxying) && !this.socket.destroyed) {
      try {
        this.fail(error, this.exchange?.responseStarted ?? false);
        return;
      } catch {
        // answering failed too: cut it below
      }
    } else {
      this.host.connectionFailed(this, error);
    }
    try {
      this.exchange?.abort();
    } catch {
      // the exchange's socket is destroyed with it below at the latest
    }
    const upstream = this.exchange?.upstream;
    this.exchange = null;
    upstream?.destroy();
    this.socket.destroy();
    // A 'close' whose listener threw was not handled: forget the connection now.
    if (this.socket.closed && this.state !== ConnState.Closed && this.state !== ConnState.Tunnel) this.closed();
  }

  // --- internals ---

  /** The one place the state changes: checked against the table in connection-state.ts, with the timeout the new state runs. */
  #enter(next: ConnState, timeout: ConnTimeout = ConnTimeout.None): void {
    this.state = nextState(this.state, next);
    this.#arm(timeout);
  }

  /** Arms the timer for `kind` (None cancels it). */
  #arm(kind: ConnTimeout): void {
    this.#timeout = kind;
    if (kind === ConnTimeout.None) {
      this.wheel.cancel(this.#timer);
      return;
    }
    const ms = kind === ConnTimeout.Head ? this.config.headTimeoutMs : kind === ConnTimeout.KeepAlive ? this.config.keepAliveTimeoutMs : LINGER_MS;
    this.wheel.arm(this.#timer, ms);
  }

  /** The pipeline read a malformed message (it has stopped parsing): requests read whole before it are answered first. */
  #parseFailed(err: WsgateError): void {
    if (this.#pipeline.queue.length === 0) {
      // The broken message is the one being proxied, or nothing is ahead of it.
      this.fail(err, this.exchange?.responseStarted ?? false);
      return;
    }
    this.#deferredError = err;
    this.socket.pause();
    this.#next();
  }

  /** Starts the next queued request, if its head is here. */
  #next(): void {
    if (this.exchange !== null || this.state === ConnState.Lingering || this.state === ConnState.Closed) return;
    const pending = this.#pipeline.front;
    if (pending === undefined) {
      if (this.#deferredError !== null) this.fail(this.#deferredError);
      return;
    }
    this.#enter(ConnState.Proxying);
    this.head = pending.head;
    this.#dispatch(pending);
  }

  /** Admits one request (admission.ts), then starts its exchange. */
  #dispatch(pending: PendingRequest): void {
    const admitted = admitRequest(pending.head, this.router, pending.tail !== null);
    if (admitted instanceof WsgateError) {
      this.fail(admitted);
      return;
    }
    if (admitted instanceof LocalAnswer) {
      this.socket.write(admitted.response);
      this.#linger();
      return;
    }
    const exchange = new Exchange(this, this.#context, admitted);
    this.exchange = exchange;
    if (admitted.webSocket) {
      exchange.start();
      return;
    }
    // Not an upgrade wsgate performs: bytes after an upgrade head are dropped, never sent.
    if (pending.tail !== null) pending.tail = [];
    for (const chunk of pending.body) exchange.sendBody(chunk);
    pending.body = [];
    if (pending.complete) exchange.endBody();
    exchange.start();
  }

  #linger(): void {
    if (this.state === ConnState.Lingering || this.state === ConnState.Closed) return;
    this.#enter(ConnState.Lingering, ConnTimeout.Linger);
    this.#pipeline.clear();
    const socket = this.socket;
    socket.end();
    socket.resume();
  }
}

function socketOnData(this: DownstreamSocket, chunk: Buffer): void {
  this[kConnection]?.received(chunk);
}
function socketOnEnd(this: DownstreamSocket): void {
  this[kConnection]?.ended();
}
function socketOnDrain(this: DownstreamSocket): void {
  this[kConnection]?.drained();
}
function socketOnError(this: DownstreamSocket, err: Error): void {
  this[kConnection]?.failed(err);
}
function socketOnClose(this: DownstreamSocket): void {
  this[kConnection]?.closed();
}

// Attached once the connection starts reading, and kept by the tunnel that takes the socket over.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const READING_LISTENERS: ReadonlyArray<readonly [string, (this: DownstreamSocket, ...args: any[]) => unknown]> = [
  ['data', guard('connection', 'data', socketOnData, ownerOfSocket)],
  ['end', guard('connection', 'end', socketOnEnd, ownerOfSocket)],
  ['drain', guard('connection', 'drain', socketOnDrain, ownerOfSocket)],
];
// Kept from accept to close.
const connectionOnError = guard('connection', 'error', socketOnError, ownerOfSocket);
const connectionOnClose = guard('connection', 'close', socketOnClose, ownerOfSocket);
