// One proxied request/response with an upstream:
//
//   DIALING (or a pooled socket) -> AWAITING_RESPONSE -> RELAYING_BODY -> DONE
//                      \-> (valid 101 to a WebSocket request) -> handed to a Tunnel
//
// The request body and the response body are streamed as llhttp delivers them,
// with backpressure both ways, and re-framed by wsgate (Content-Length kept,
// chunked re-chunked without extensions or trailers), so no byte the parser did
// not accept is ever forwarded. Plain requests use keep-alive upstream
// connections from the pool; a connection goes back only after a clean,
// complete exchange. WebSocket handshakes always get a fresh connection.

import { LAST_CHUNK, pushBody, responseFraming, writeBody, type Framing } from '../http/body-framing.js';
import type { ExchangeRequest } from '../http/admission.js';
import { connectError, dialUpstream, discardUpstream, kOwner, releaseUpstream, type UpstreamOwner, type UpstreamSocket } from '../upstream/dialer.js';
import { WsgateError } from '../core/errors.js';
import { checkSwitchingProtocols } from '../http/handshake.js';
import { BodyMode, HeadKind, HeadReader, type HeadReaderHandler, type ParsedHead } from '../http/head-reader.js';
import { buildDownstreamResponseHead, buildInformationalHead, buildUpstreamRequestHead } from '../http/headers.js';
import { WheelTimer, type TimerOwner, type TimerWheel } from '../core/timer-wheel.js';
import type { ResolvedConfig } from '../config.js';
import type { RouteMatch } from '../http/router.js';
import type { UpstreamPool } from '../upstream/pool.js';
import type net from 'node:net';
import { retainRead } from '../io/read-buffers.js';
import { writePieces, writeToSocket } from '../io/handle-writes.js';
import { writeAtTurnEnd } from '../io/turn-writes.js';

export const ExchangePhase = {
  Dialing: 0,
  AwaitingResponse: 1,
  RelayingBody: 2,
  /** Terminal: the response was relayed whole, or the 101 handed both sockets to a tunnel. */
  Done: 3,
  /** Terminal: an error ended it (answered or cut by the connection), or the client went away. */
  Failed: 4,
} as const;
export type ExchangePhase = (typeof ExchangePhase)[keyof typeof ExchangePhase];
const PHASE_NAMES = ['DIALING', 'AWAITING_RESPONSE', 'RELAYING_BODY', 'DONE', 'FAILED'] as const;

/** The changes `#enter` allows (a dead pooled connection is replayed once: AWAITING_RESPONSE -> DIALING). */
const TRANSITIONS: Readonly<Record<ExchangePhase, readonly ExchangePhase[]>> = {
  [ExchangePhase.Dialing]: [ExchangePhase.AwaitingResponse, ExchangePhase.Failed],
  [ExchangePhase.AwaitingResponse]: [ExchangePhase.Dialing, ExchangePhase.RelayingBody, ExchangePhase.Done, ExchangePhase.Failed],
  [ExchangePhase.RelayingBody]: [ExchangePhase.Done, ExchangePhase.Failed],
  [ExchangePhase.Done]: [],
  [ExchangePhase.Failed]: [],
};

/** What the exchange's timer stands for, named when it is armed. */
export const ExchangeTimeout = {
  None: 0,
  /** The upstream connect (connectTimeout, 504). */
  Connect: 1,
  /**
   * The exchange's progress: the client's turn while it owes request body or
   * cannot take response bytes (sendTimeout, cut), the upstream's otherwise
   * (readTimeout, 504). The turn can change without re-arming, so it is read
   * when the timer fires (`#clientsTurn`).
   */
  Progress: 2,
} as const;
export type ExchangeTimeout = (typeof ExchangeTimeout)[keyof typeof ExchangeTimeout];

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
export interface ExchangeOwner {
  /** The client (downstream) socket. */
  readonly socket: net.Socket;
  readonly remoteAddress: string;
  /** The peer is a trusted proxy: its X-Forwarded-* fields are believed. */
  readonly peerTrusted: boolean;
  readonly proto: 'http' | 'https';
  /** The upstream cannot take more request body now. */
  pauseReading(): void;
  /** It can again. */
  resumeReading(): void;
  /** May the connection stay open after this response? Asked when its head is written. */
  mayKeepAlive(): boolean;
  /** The exchange finished: cleanly (`err` null) or with an error to answer or cut. */
  exchangeDone(exchange: Exchange, err: WsgateError | null, keepAlive: boolean): void;
  /** A valid 101: the client socket and `upstream` become a tunnel; `responseHead` is the 101 for the client. */
  startTunnel(route: RouteMatch, upstream: net.Socket, responseHead: string, leftover: Buffer | null): void;
  crashed(err: unknown): void;
}

/** What an exchange works with, shared by every exchange of a connection. */
export interface ExchangeContext {
  readonly pool: UpstreamPool;
  readonly wheel: TimerWheel;
  readonly config: ResolvedConfig;
}

export class Exchange implements TimerOwner, HeadReaderHandler, UpstreamOwner {
  readonly conn: ExchangeOwner;
  readonly request: ExchangeRequest;
  readonly #pool: UpstreamPool;
  readonly #wheel: TimerWheel;
  readonly #config: ResolvedConfig;
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
  #framing: Framing = 'close';
  #switching = false;
  /** The response head told the client the connection stays open. */
  #keepAlive = false;
  /** The upstream sent something after its complete response: never reuse that connection. */
  #unsolicited = false;
  #responseComplete = false;
  /**
   * Content-Length body bytes still to relay as they come off the socket (no
   * parser, no copy: `subarray`s of the upstream's own buffers); -1 when the
   * body is parsed by llhttp instead (chunked, read-until-close).
   */
  #rawRemaining = -1;
  /** Any response byte came from the upstream (no retry after that). */
  #anyResponseByte = false;
  /** The socket came from the pool (it may have died while idle). */
  #reused = false;
  #retried = false;
  /** Upstream paused because the client's buffer is full: the wait is on the client (sendTimeout). */
  #waitingOnDownstream = false;
  /** Pieces for the client while an upstream read is parsed (`#pieces`), else null. */
  #gathered: Array<string | Buffer> | null = null;
  readonly #pieces: Array<string | Buffer> = [];

  constructor(conn: ExchangeOwner, context: ExchangeContext, request: ExchangeRequest) {
    this.conn = conn;
    this.request = request;
    this.#pool = context.pool;
    this.#wheel = context.wheel;
    this.#config = context.config;
    this.#key = request.route.location.upstream.key;
    this.#timer = new WheelTimer(this);
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
    if (!writeBody(this.upstream!, chunk, this.request.chunked)) this.conn.pauseReading();
  }

  /** The client's request message is complete. */
  endBody(): void {
    this.#requestEnded = true;
    if (this.phase !== ExchangePhase.Dialing && !this.isOver && this.request.chunked) {
      this.upstream!.write(LAST_CHUNK);
    }
  }

  /** The client's socket drained: resume reading the upstream response. */
  downstreamDrained(): void {
    this.#waitingOnDownstream = false;
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
    if (this.#timeout === ExchangeTimeout.Connect) {
      this.#fail(new WsgateError('WSG_ERR_UPSTREAM_CONNECT_TIMEOUT', `${location.upstream.host}:${location.upstream.port}`));
      return 0;
    }
    const clientsTurn = this.#clientsTurn();
    const limit = clientsTurn ? location.sendTimeoutMs : location.readTimeoutMs;
    if (limit <= 0) return now + 1000; // disabled: look again later (the wait may change sides)
    const deadline = this.#lastActive + limit;
    if (deadline > now) return deadline;
    this.#fail(
      clientsTurn
        ? new WsgateError('WSG_ERR_DOWNSTREAM_TIMEOUT', `no progress for ${limit} ms`)
        : new WsgateError('WSG_ERR_UPSTREAM_TIMEOUT', `no response bytes for ${limit} ms`),
    );
    return 0;
  }

  // --- upstream socket events (through the named listeners below) ---

  connected(): void {
    this.#enter(ExchangePhase.AwaitingResponse);
    const { request } = this;
    const location = request.route.location;
    this.#reader?.release();
    this.#reader = new HeadReader(HeadKind.Response, this, MAX_RESPONSE_HEAD, this.#config.maxHeaders * 2);
    const head = buildUpstreamRequestHead(request.head, {
      target: request.route.upstreamTarget!,
      location,
      host: request.host,
      clientHost: request.clientHost,
      connection: request.connection,
      remoteAddress: this.conn.remoteAddress,
      trustedPeer: this.conn.peerTrusted ? this.#config.trustedProxies : null,
      proto: this.conn.proto,
      webSocket: request.webSocket,
      contentLength: request.contentLength,
      transferCodings: request.transferCodings,
      keepAlive: this.#pool.options.maxIdle > 0,
    });
    // The head and the body read so far leave in one writev.
    const pieces: Array<string | Buffer> = [head];
    // Bytes that followed an upgrade head wait for the 101 (Connection keeps
    // them): an upstream that refuses the upgrade never sees them.
    if (!request.webSocket) {
      for (const chunk of this.#queued) pushBody(pieces, chunk, request.chunked);
      if (this.#requestEnded && request.chunked) pieces.push(LAST_CHUNK);
    }
    this.#queued = [];
    if (!writeAtTurnEnd(this.upstream!, pieces)) writePieces(this.upstream!, pieces);
    this.#lastActive = this.#wheel.now;
    this.#arm(ExchangeTimeout.Progress, Math.max(1, Math.min(location.readTimeoutMs || Infinity, location.sendTimeoutMs || Infinity, 1_000_000)));
    if (!request.webSocket && !this.#requestEnded) this.conn.resumeReading();
  }

  received(chunk: Buffer): void {
    if (this.isOver) {
      this.#unsolicited = true;
      return;
    }
    this.#anyResponseByte = true;
    this.#lastActive = this.#wheel.now;
    if (this.#rawRemaining > 0) {
      this.#relayRaw(chunk);
      if (this.#responseComplete) this.#complete();
      return;
    }
    let consumed = chunk.length;
    // Whatever one upstream read yields for the client (head, body pieces,
    // chunk framing) leaves in one writev, as nginx sends head and body together.
    let failure: unknown = null;
    const pieces = (this.#gathered = this.#pieces);
    try {
      consumed = this.#reader!.execute(chunk);
      if (this.#rawRemaining > 0 && consumed < chunk.length) this.#relayRaw(chunk.subarray(consumed));
    } catch (err) {
      failure = err;
    }
    this.#gathered = null;
    if (pieces.length > 0) {
      // Sent even when the read also held garbage: what came before it was a
      // valid response. A complete response waits for the end of the turn
      // (turn-writes.ts); one still coming needs the write's backpressure now.
      if (!this.#responseComplete || !writeAtTurnEnd(this.conn.socket, pieces)) {
        const roomLeft = writePieces(this.conn.socket, pieces);
        if (!roomLeft && this.phase === ExchangePhase.RelayingBody && !this.#responseComplete) {
          this.#waitingOnDownstream = true;
          this.upstream!.pause();
        }
      }
      pieces.length = 0;
    }
    if (failure !== null) {
      // Garbage after a complete response only disqualifies the connection.
      if (!this.#responseComplete) {
        this.#fail(failure);
        return;
      }
      this.#unsolicited = true;
    }
    if (this.#switching) this.#startTunnel(consumed < chunk.length ? chunk.subarray(consumed) : null);
    else if (this.#responseComplete) this.#complete();
  }

  upstreamEnded(): void {
    if (this.isOver) return;
    if (this.#mayRetry()) return;
    if (this.#rawRemaining < 0) {
      try {
        this.#reader?.finish(); // completes a read-until-close body, or throws
      } catch {
        // fall through: not a complete message
      }
    }
    if (this.#responseComplete) {
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
    if (this.#responseComplete) this.#unsolicited = true;
  }

  onHead(head: ParsedHead): BodyMode {
    if (this.#responseComplete) {
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
      if (request.head.versionMinor >= 1) this.#toDownstream(buildInformationalHead(head));
      return BodyMode.Parse;
    }
    const http10 = request.head.versionMinor === 0;
    const { framing, contentLength } = responseFraming(request.head, head);
    this.#framing = framing;
    // A WebSocket request refused by the upstream is never followed by more
    // HTTP on this connection: its bytes after the head were not parsed.
    // `request.connection` is wsgate's own reading of Connection (OWS-trimmed), which may see a `close` llhttp did not.
    this.#keepAlive = framing !== 'close' && !request.webSocket && !request.connection.has('close') && this.conn.mayKeepAlive();
    this.#enter(ExchangePhase.RelayingBody);
    this.responseStarted = true;
    this.#toDownstream(buildDownstreamResponseHead(head, { framing, contentLength, upgrade: false, keepAlive: this.#keepAlive, http10 }));
    if (framing === 'none') return BodyMode.None;
    if (framing === 'length' && contentLength > 0) {
      this.#rawRemaining = contentLength;
      return BodyMode.Raw;
    }
    return BodyMode.Parse;
  }

  onBody(chunk: Buffer): void {
    if (this.phase !== ExchangePhase.RelayingBody || this.#responseComplete) return;
    let roomLeft: boolean;
    if (this.#gathered !== null) {
      pushBody(this.#gathered, chunk, this.#framing === 'chunked');
      roomLeft = true; // received() decides once the read is parsed
    } else {
      roomLeft = writeBody(this.conn.socket, chunk, this.#framing === 'chunked');
    }
    if (!roomLeft) {
      this.#waitingOnDownstream = true;
      this.upstream!.pause();
    }
  }

  onMessageComplete(): void {
    // an interim 1xx, the 101, unsolicited, or a raw body (llhttp stopped at its head)
    if (this.phase !== ExchangePhase.RelayingBody || this.#responseComplete || this.#rawRemaining >= 0) return;
    this.#responseComplete = true;
    if (this.#framing === 'chunked') this.#toDownstream(LAST_CHUNK);
  }

  // --- internals ---

  /**
   * One piece for the client: gathered while a read is parsed (received()
   * sends them together), else written at once, straight to the socket's
   * handle where it can (handle-writes.ts). Returns false when the upstream
   * should pause until the client drains.
   */
  #toDownstream(piece: string | Buffer): boolean {
    if (this.#gathered !== null) {
      this.#gathered.push(piece);
      return true;
    }
    return typeof piece === 'string' ? this.conn.socket.write(piece, 'latin1') : writeToSocket(this.conn.socket, piece);
  }

  /** Relays Content-Length body bytes straight from the upstream's buffer. */
  #relayRaw(bytes: Buffer): void {
    const remaining = this.#rawRemaining;
    let body = bytes;
    if (bytes.length > remaining) {
      body = bytes.subarray(0, remaining);
      this.#unsolicited = true; // bytes past the declared length: never relayed
    }
    this.#rawRemaining = remaining - body.length;
    if (this.#rawRemaining === 0) this.#responseComplete = true;
    if (!this.#toDownstream(body) && !this.#responseComplete) {
      this.#waitingOnDownstream = true;
      this.upstream!.pause();
    }
  }

  /** Whose turn: the client's while it owes request body or cannot take response bytes (proxy_send_timeout); else the upstream's (proxy_read_timeout). */
  #clientsTurn(): boolean {
    return this.#waitingOnDownstream || (!this.#requestEnded && !this.#anyResponseByte);
  }

  /** The one place the phase changes: checked against TRANSITIONS. */
  #enter(next: ExchangePhase): void {
    if (!TRANSITIONS[this.phase].includes(next)) {
      throw new WsgateError('WSG_ERR_INTERNAL', `exchange phase ${PHASE_NAMES[this.phase]} -> ${PHASE_NAMES[next]} is not allowed`);
    }
    this.phase = next;
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
      this.#requestEnded && !this.#unsolicited && this.#framing !== 'close' && !upstream.destroyed && upstream.writableLength === 0;
    this.#finish();
    upstream[kOwner] = null;
    if (reusable) this.#pool.release(this.#key, upstream);
    else discardUpstream(upstream);
    this.conn.exchangeDone(this, null, this.#keepAlive);
  }

  #startTunnel(leftover: Buffer | null): void {
    const head = this.#reader!.head!;
    this.#finish();
    const upstream = this.upstream!;
    releaseUpstream(upstream);
    upstream.pause();
    const responseHead = buildDownstreamResponseHead(head, { framing: 'none', contentLength: 0, upgrade: true, keepAlive: false, http10: false });
    this.conn.startTunnel(this.request.route, upstream, responseHead, leftover);
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
