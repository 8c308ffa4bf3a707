// One proxied request/response with an upstream, in the order the protocol
// runs (phases: exchange-state.ts):
//
//   start: a pooled socket, or dial one             -> DIALING
//   connected: write the rewritten head (+ body so far) -> AWAITING_RESPONSE
//   onHead: judge the response head
//     a valid 101 to a WebSocket request: #upgrade writes the 101 and builds
//     the Tunnel from both sockets, right there       -> DONE
//     anything else: relayed, head then body          -> RELAYING_BODY -> DONE
//   any error                                         -> FAILED (answered or cut by the connection)
//
// Both bodies stream as llhttp delivers them, with backpressure both ways:
// the request through request-writer.ts, the response through
// response-relay.ts. Plain requests use keep-alive upstream connections from
// the pool; a connection goes back only after a clean, complete exchange.
// WebSocket handshakes always get a fresh connection.

import type net from 'node:net';
import type { ResolvedConfig } from '../config.js';
import { ExchangePhase, ExchangeTimeout, nextPhase } from './exchange-state.js';
import { endRequestBody, writeRequest, writeRequestBody, type RequestClient } from './request-writer.js';
import { ResponseRelay, type RelayOwner } from './response-relay.js';
import type { ExchangeRequest } from '../http/admission.js';
import { responseFraming } from '../http/body-framing.js';
import { checkSwitchingProtocols } from '../http/handshake.js';
import { BodyMode, HeadKind, HeadReader, type HeadReaderHandler, type ParsedHead } from '../http/head-reader.js';
import { buildDownstreamResponseHead, buildInformationalHead } from '../http/headers.js';
import type { RouteMatch } from '../http/router.js';
import { buildProxyHeader, type ProxiedAddresses } from '../http/proxy-protocol.js';
import { connectError, dialUpstream, discardUpstream, kOwner, type UpstreamOwner, type UpstreamSocket } from '../upstream/dialer.js';
import type { UpstreamPool } from '../upstream/pool.js';
import { Tunnel, type TunnelCloseCallback, type TunnelCrashCallback } from '../tunnel/tunnel.js';
import { retainRead } from '../io/read-buffers.js';
import { WsgateError } from '../core/errors.js';
import { WheelTimer, type TimerOwner, type TimerWheel } from '../core/timer-wheel.js';

// Largest response head wsgate accepts from an upstream (bigger: 502).
const MAX_RESPONSE_HEAD = 64 * 1024;
// RFC 9110 §9.2.2: methods whose repetition has the same effect; with no body
// they can be replayed on a fresh connection when a pooled one turns out dead.
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

/**
 * What an exchange reports to: the client connection it serves
 * (connection.ts implements it). Narrow on purpose: the pool, the wheel and
 * the config are handed in (ExchangeContext), not reached through it.
 */
export interface ExchangeOwner extends RequestClient {
  /** The client (downstream) socket. */
  readonly socket: net.Socket;
  /** The upstream cannot take more request body now. */
  pauseReading(): void;
  /** It can again. */
  resumeReading(): void;
  /** May the connection stay open after this response? Asked when its head is written. */
  mayKeepAlive(): boolean;
  /** The exchange finished: cleanly (`err` null) or with an error to answer or cut. */
  exchangeDone(exchange: Exchange, err: WsgateError | null, keepAlive: boolean): void;
  /**
   * A valid 101 arrived: the connection lets go of the client socket (no
   * listener of its own is left on it) and returns the bytes the client sent
   * after its upgrade head, for the tunnel to forward first.
   */
  handOver(): Buffer[];
  crashed(err: unknown): void;
  /** The client connection's TCP endpoints (a PROXY header's when one came), for a PROXY header upstream. */
  endpoints(): ProxiedAddresses;
}

/** Where the tunnels that exchanges build are registered (gateway.ts): stats, events, drain. */
export interface TunnelRegistry {
  readonly closed: TunnelCloseCallback;
  readonly crashed: TunnelCrashCallback;
  /** A tunnel was built (it may be closed already, when both sides were gone). */
  opened(tunnel: Tunnel, remoteAddress: string, path: string, route: RouteMatch): void;
}

/** What an exchange works with, shared by every exchange of a connection. */
export interface ExchangeContext {
  readonly pool: UpstreamPool;
  readonly wheel: TimerWheel;
  readonly config: ResolvedConfig;
  readonly tunnels: TunnelRegistry;
}

export class Exchange implements TimerOwner, HeadReaderHandler, UpstreamOwner, RelayOwner {
  readonly conn: ExchangeOwner;
  readonly request: ExchangeRequest;
  readonly #pool: UpstreamPool;
  readonly #wheel: TimerWheel;
  readonly #config: ResolvedConfig;
  readonly #tunnels: TunnelRegistry;
  upstream: UpstreamSocket | null = null;
  phase: ExchangePhase = ExchangePhase.Dialing;
  #timeout: ExchangeTimeout = ExchangeTimeout.None;
  /** Some response byte reached the client: an error can no longer be answered, only cut. */
  responseStarted = false;
  readonly #key: string;
  #reader: HeadReader | null = null;
  readonly #timer: WheelTimer;
  #lastActive = 0;
  /** Body pieces that arrived before the upstream connection was up. */
  #queued: Buffer[] = [];
  #requestEnded = false;
  /** The response's way to the client: gathered writes, raw Content-Length bodies, backpressure. */
  readonly #relay: ResponseRelay;
  #switching = false;
  /** The response head told the client the connection stays open. */
  #keepAlive = false;
  /** The upstream sent something after its complete response: never reuse that connection. */
  #unsolicited = false;
  /** Any response byte came from the upstream (no retry after that). */
  #anyResponseByte = false;
  /** The socket came from the pool (it may have died while idle). */
  #reused = false;
  #retried = false;

  constructor(conn: ExchangeOwner, context: ExchangeContext, request: ExchangeRequest) {
    this.conn = conn;
    this.request = request;
    this.#pool = context.pool;
    this.#wheel = context.wheel;
    this.#config = context.config;
    this.#tunnels = context.tunnels;
    const location = request.route.location;
    // A connection that carried a PROXY header speaks for one client connection: reused only by it.
    this.#key = location.sendProxyProtocol === null ? location.upstream.key : `${location.upstream.key}|${conn.remoteAddress}|${conn.endpoints().sourcePort}`;
    this.#timer = new WheelTimer(this);
    this.#relay = new ResponseRelay(conn.socket, this);
  }

  /** Takes a pooled connection or dials one; call after the first body pieces were handed over. */
  start(): void {
    // A handshake has no body (admission refused one): once its head is written
    // the upstream owes the answer, so silence is a readTimeout (504).
    if (this.request.webSocket) this.#requestEnded = true;
    const pooled = this.request.webSocket ? null : this.#pool.acquire(this.#key);
    if (pooled !== null) {
      this.#reused = true;
      pooled[kOwner] = this;
      this.upstream = pooled;
      this.connected();
    } else {
      this.#dial();
    }
  }

  /** A request body piece from the client's parser. */
  sendBody(chunk: Buffer): void {
    if (this.phase === ExchangePhase.Dialing) {
      this.#queued.push(retainRead(chunk));
      return;
    }
    if (this.isOver || this.request.webSocket) return;
    this.#lastActive = this.#wheel.now;
    if (!writeRequestBody(this.upstream!, this.request, chunk)) this.conn.pauseReading();
  }

  /** The client's request message is complete. */
  endBody(): void {
    this.#requestEnded = true;
    // The whole request is sent: the upstream owes the answer (unless the client is the one not reading).
    if (this.#timeout === ExchangeTimeout.Send && !this.#anyResponseByte) this.#timeout = ExchangeTimeout.Read;
    if (this.phase !== ExchangePhase.Dialing && !this.isOver) endRequestBody(this.upstream!, this.request);
  }

  /** The client's socket drained: resume reading the upstream response. */
  downstreamDrained(): void {
    if (this.#timeout === ExchangeTimeout.Send && this.#anyResponseByte) this.#timeout = ExchangeTimeout.Read; // the upstream's turn again
    this.#lastActive = this.#wheel.now;
    if (this.upstream !== null && !this.upstream.destroyed) this.upstream.resume();
  }

  /** The client went away or the gateway is shutting down: drop the upstream side. */
  abort(): void {
    if (this.isOver) return;
    this.#finish(ExchangePhase.Failed);
    if (this.upstream !== null) discardUpstream(this.upstream);
  }

  crashed(err: unknown): void {
    this.conn.crashed(err);
  }

  /** The exchange is over (DONE or FAILED). */
  get isOver(): boolean {
    return this.phase >= ExchangePhase.Done;
  }

  onTimerExpired(now: number): number {
    if (this.isOver) return 0;
    const location = this.request.route.location;
    switch (this.#timeout) {
      case ExchangeTimeout.Connect:
        this.#fail(new WsgateError('WSG_ERR_UPSTREAM_CONNECT_TIMEOUT', `${location.upstream.host}:${location.upstream.port}`));
        return 0;
      case ExchangeTimeout.Read:
      case ExchangeTimeout.Send: {
        const send = this.#timeout === ExchangeTimeout.Send;
        const limit = send ? location.sendTimeoutMs : location.readTimeoutMs;
        if (limit <= 0) return now + 1000; // this side's limit is off: look again later (the turn may change sides)
        const deadline = this.#lastActive + limit;
        if (deadline > now) return deadline;
        this.#fail(
          send
            ? new WsgateError('WSG_ERR_DOWNSTREAM_TIMEOUT', `no progress for ${limit} ms`)
            : new WsgateError('WSG_ERR_UPSTREAM_TIMEOUT', `no response bytes for ${limit} ms`),
        );
        return 0;
      }
      default:
        return 0;
    }
  }

  // --- upstream socket events (through the named listeners below) ---

  connected(): void {
    this.#enter(ExchangePhase.AwaitingResponse);
    const { request } = this;
    const location = request.route.location;
    this.#reader?.release();
    this.#reader = new HeadReader(HeadKind.Response, this, MAX_RESPONSE_HEAD, this.#config.maxHeaders * 2);
    // The head and the body read so far leave in one writev.
    // A fresh connection to an upstream that asked for it starts with the PROXY header.
    const version = request.route.location.sendProxyProtocol;
    const proxyHeader = version !== null && !this.#reused ? buildProxyHeader(version, this.conn.endpoints()) : null;
    writeRequest(this.upstream!, request, this.conn, this.#config.trustedProxies, this.#pool.options.maxIdle > 0, this.#queued, this.#requestEnded, proxyHeader);
    this.#queued = [];
    this.#lastActive = this.#wheel.now;
    // The client's turn while it owes request body; then the upstream's.
    // Armed for the shorter limit; the kind says which applies when it fires.
    this.#arm(
      this.#requestEnded ? ExchangeTimeout.Read : ExchangeTimeout.Send,
      Math.max(1, Math.min(location.readTimeoutMs || Infinity, location.sendTimeoutMs || Infinity, 1_000_000)),
    );
    if (!request.webSocket && !this.#requestEnded) this.conn.resumeReading();
  }

  received(chunk: Buffer): void {
    if (this.isOver) {
      this.#unsolicited = true;
      return;
    }
    if (!this.#anyResponseByte) {
      this.#anyResponseByte = true;
      if (this.#timeout === ExchangeTimeout.Send) this.#timeout = ExchangeTimeout.Read; // the response has begun: the upstream's turn
    }
    this.#lastActive = this.#wheel.now;
    const relay = this.#relay;
    if (relay.rawRemaining > 0) {
      if (relay.raw(chunk)) this.#unsolicited = true;
      if (relay.complete) this.#complete();
      return;
    }
    let consumed = chunk.length;
    let failure: unknown = null;
    relay.gather();
    try {
      consumed = this.#reader!.execute(chunk);
      if (relay.rawRemaining > 0 && consumed < chunk.length && relay.raw(chunk.subarray(consumed))) this.#unsolicited = true;
    } catch (err) {
      failure = err;
    }
    relay.flush(this.phase === ExchangePhase.RelayingBody);
    if (failure !== null) {
      // Garbage after a complete response only disqualifies the connection.
      if (!relay.complete) {
        this.#fail(failure);
        return;
      }
      this.#unsolicited = true;
    }
    if (this.#switching) this.#upgrade(consumed < chunk.length ? chunk.subarray(consumed) : null);
    else if (relay.complete) this.#complete();
  }

  /** A close without FIN or error ends the response as a FIN does. */
  upstreamClosed(): void {
    this.upstreamEnded();
  }

  upstreamEnded(): void {
    if (this.isOver) return;
    if (this.#mayRetry()) return;
    if (this.#relay.rawRemaining < 0) {
      try {
        this.#reader?.finish(); // completes a read-until-close body, or throws
      } catch {
        // fall through: not a complete message
      }
    }
    if (this.#relay.complete) {
      this.#complete();
      return;
    }
    this.#fail(
      this.responseStarted
        ? new WsgateError('WSG_ERR_UPSTREAM_ABORTED', 'upstream closed mid-response')
        : new WsgateError('WSG_ERR_UPSTREAM_CLOSED'),
    );
  }

  upstreamFailed(err: NodeJS.ErrnoException): void {
    if (this.isOver) return;
    if (this.phase === ExchangePhase.Dialing) this.#fail(connectError(err, this.request.route.location.upstream));
    else if (this.#mayRetry()) return;
    else if (this.responseStarted) this.#fail(new WsgateError('WSG_ERR_UPSTREAM_ABORTED', err.code ?? err.message, { cause: err }));
    else this.#fail(new WsgateError('WSG_ERR_UPSTREAM_CONNECT', `reset before a response: ${err.code ?? err.message}`, { cause: err }));
  }

  upstreamDrained(): void {
    this.#lastActive = this.#wheel.now;
    if (!this.#requestEnded) this.conn.resumeReading();
  }

  // --- response parser callbacks ---

  onMessageBegin(): void {
    // A second response after the complete one: the upstream is out of step.
    if (this.#relay.complete) this.#unsolicited = true;
  }

  onHead(head: ParsedHead): BodyMode {
    const relay = this.#relay;
    if (relay.complete) {
      this.#unsolicited = true; // a response nobody asked for: never relayed
      return BodyMode.None;
    }
    const { request } = this;
    const status = head.statusCode;
    if (status === 101) {
      // RFC 9110 §15.2.2: a server may only switch to a protocol the client asked for.
      if (!request.webSocket) throw new WsgateError('WSG_ERR_UPSTREAM_BAD_RESPONSE', '101 to a request that did not ask to upgrade');
      const bad = checkSwitchingProtocols(request.head, head, this.#config.checkWebSocketAccept);
      if (bad) throw bad;
      this.#switching = true;
      return BodyMode.Parse;
    }
    if (status < 200) {
      // Interim responses go to HTTP/1.1 clients only (RFC 9110 §15.2); llhttp then reads the next head.
      if (request.head.versionMinor >= 1) relay.send(buildInformationalHead(head));
      return BodyMode.Parse;
    }
    const http10 = request.head.versionMinor === 0;
    const { framing, contentLength } = responseFraming(request.head, head);
    relay.framing = framing;
    // A WebSocket request refused by the upstream is never followed by more
    // HTTP on this connection: its bytes after the head were not parsed.
    // `request.connection` is wsgate's own reading of Connection (OWS-trimmed), which may see a `close` llhttp did not.
    this.#keepAlive = framing !== 'close' && !request.webSocket && !request.connection.has('close') && this.conn.mayKeepAlive();
    this.#enter(ExchangePhase.RelayingBody);
    this.responseStarted = true;
    relay.send(buildDownstreamResponseHead(head, { framing, contentLength, upgrade: false, keepAlive: this.#keepAlive, http10 }));
    if (framing === 'none') return BodyMode.None;
    if (framing === 'length' && contentLength > 0) {
      relay.rawRemaining = contentLength;
      return BodyMode.Raw;
    }
    return BodyMode.Parse;
  }

  onBody(chunk: Buffer): void {
    if (this.phase === ExchangePhase.RelayingBody && !this.#relay.complete) this.#relay.body(chunk);
  }

  onMessageComplete(): void {
    // an interim 1xx, the 101, unsolicited, or a raw body (llhttp stopped at its head)
    const relay = this.#relay;
    if (this.phase === ExchangePhase.RelayingBody && !relay.complete && relay.rawRemaining < 0) relay.end();
  }

  /** The client's buffer is full (response-relay.ts): the upstream pauses until it drains, and the wait is the client's (sendTimeout). */
  waitForClient(): void {
    this.#timeout = ExchangeTimeout.Send;
    this.upstream!.pause();
  }

  // --- internals ---

  /** The one place the phase changes: checked against the table in exchange-state.ts. */
  #enter(next: ExchangePhase): void {
    this.phase = nextPhase(this.phase, next);
  }

  #arm(kind: ExchangeTimeout, ms: number): void {
    this.#timeout = kind;
    this.#wheel.arm(this.#timer, ms);
  }

  #dial(): void {
    if (this.phase !== ExchangePhase.Dialing) this.#enter(ExchangePhase.Dialing); // a replay after a dead pooled connection
    this.upstream = dialUpstream(this.request.route.location.upstream, this, this.#pool);
    this.#arm(ExchangeTimeout.Connect, this.request.route.location.connectTimeoutMs);
  }

  /**
   * A pooled connection died before any response byte: the upstream closed it
   * while it sat idle. Replay a bodiless idempotent request once on a fresh one.
   */
  #mayRetry(): boolean {
    const { request } = this;
    const replayable = this.#reused && !this.#retried && !this.#anyResponseByte && !request.chunked && request.contentLength === 0;
    if (!replayable || !IDEMPOTENT.has(request.head.method)) return false;
    this.#retried = true;
    this.#reused = false;
    discardUpstream(this.upstream!);
    this.#reader?.release();
    this.#reader = null;
    this.#dial();
    return true;
  }

  #complete(): void {
    const upstream = this.upstream!;
    // Reuse only after a clean exchange: whole request sent, whole response
    // read, nothing extra, and the upstream did not ask to close (RFC 9112 §9.3).
    // A connection that carried an upgrade request is never reused (attacks.md #1).
    const reusable =
      !this.request.webSocket &&
      this.#reader!.head!.shouldKeepAlive &&
      this.#requestEnded && !this.#unsolicited && this.#relay.framing !== 'close' && !upstream.destroyed && upstream.writableLength === 0;
    this.#finish();
    upstream[kOwner] = null;
    if (reusable) this.#pool.release(this.#key, upstream);
    else discardUpstream(upstream);
    this.conn.exchangeDone(this, null, this.#keepAlive);
  }

  /**
   * The 101 judged valid in onHead: the client gets it, and both sockets
   * become a Tunnel, here. `leftover`: upstream bytes that came after the 101
   * head in the same read (the first WebSocket frames).
   */
  #upgrade(leftover: Buffer | null): void {
    const head = this.#reader!.head!;
    this.#finish();
    const upstream = this.upstream!;
    upstream[kOwner] = null; // the tunnel's, next
    upstream.pause();
    const early = this.conn.handOver();
    const downstream = this.conn.socket;
    downstream.write(buildDownstreamResponseHead(head, { framing: 'none', contentLength: 0, upgrade: true, keepAlive: false, http10: false }), 'latin1');
    const { route } = this.request;
    const tunnel = new Tunnel({ downstream, upstream }, early, leftover, route.location.tunnelTimeoutMs, this.#wheel, this.#tunnels.closed, this.#tunnels.crashed);
    this.#tunnels.opened(tunnel, this.conn.remoteAddress, this.request.head.url, route);
  }

  /** Ends the exchange in a terminal phase: DONE, or FAILED. */
  #finish(terminal: ExchangePhase = ExchangePhase.Done): void {
    this.#enter(terminal);
    this.#timeout = ExchangeTimeout.None;
    this.#wheel.cancel(this.#timer);
    this.#reader?.release();
    this.#queued = [];
  }

  #fail(err: unknown): void {
    if (this.isOver) return;
    this.#finish(ExchangePhase.Failed);
    if (this.upstream !== null) discardUpstream(this.upstream);
    const error = err instanceof WsgateError ? err : new WsgateError('WSG_ERR_UPSTREAM_BAD_RESPONSE', String(err), { cause: err });
    this.conn.exchangeDone(this, error, false);
  }
}
