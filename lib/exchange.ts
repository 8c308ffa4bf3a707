// One proxied request/response on a fresh upstream connection:
//
//   DIALING -> AWAITING_RESPONSE -> RELAYING_BODY -> DONE
//                      \-> (valid 101 to a WebSocket request) -> handed to a Tunnel
//
// The request body and the response body are streamed as llhttp delivers them,
// with backpressure both ways, and re-framed by wsgate (Content-Length kept,
// chunked re-chunked without extensions or trailers), so no byte the parser did
// not accept is ever forwarded. The client connection closes after the
// response (`Connection: close`); the HTTP keep-alive work replaces this seam.

import type net from 'node:net';
import type { Connection } from './connection.js';
import { dialUpstream, connectError } from './dialer.js';
import { WsgateError } from './errors.js';
import { checkSwitchingProtocols } from './handshake.js';
import { HeadKind, HeadReader, findHeader, type HeadReaderHandler, type ParsedHead } from './head-reader.js';
import { buildDownstreamResponseHead, buildInformationalHead, buildUpstreamRequestHead, type DownstreamResponseOptions } from './headers.js';
import type { RouteMatch } from './router.js';
import { WheelTimer, type TimerOwner } from './timer-wheel.js';

export const ExchangePhase = {
  Dialing: 0,
  AwaitingResponse: 1,
  RelayingBody: 2,
  Done: 3,
} as const;
export type ExchangePhase = (typeof ExchangePhase)[keyof typeof ExchangePhase];

const kExchange = Symbol('wsgate exchange');
type UpstreamSocket = net.Socket & { [kExchange]: Exchange };

const CRLF = Buffer.from('\r\n', 'latin1');
const LAST_CHUNK = Buffer.from('0\r\n\r\n', 'latin1');
// Largest response head wsgate accepts from an upstream (bigger: 502).
const MAX_RESPONSE_HEAD = 64 * 1024;

export interface ExchangeRequest {
  readonly head: ParsedHead;
  readonly route: RouteMatch;
  readonly webSocket: boolean;
  /** Host to send upstream and the one the client gave (null if none). */
  readonly host: string;
  readonly clientHost: string | null;
  /** Request body framing as llhttp read it. */
  readonly chunked: boolean;
  readonly contentLength: number;
}

export class Exchange implements TimerOwner, HeadReaderHandler {
  readonly conn: Connection;
  readonly request: ExchangeRequest;
  readonly upstream: UpstreamSocket;
  phase: ExchangePhase = ExchangePhase.Dialing;
  /** Some response byte reached the client: an error can no longer be answered, only cut. */
  responseStarted = false;
  #reader: HeadReader;
  #timer: WheelTimer;
  #lastActive = 0;
  /** Body pieces that arrived before the upstream connection was up. */
  #queued: Buffer[] = [];
  #requestEnded = false;
  #framing: DownstreamResponseOptions['framing'] = 'close';
  #switching = false;
  /** Upstream paused because the client's buffer is full: the wait is on the client (sendTimeout). */
  #waitingOnDownstream = false;

  constructor(conn: Connection, request: ExchangeRequest) {
    this.conn = conn;
    this.request = request;
    this.#reader = new HeadReader(HeadKind.Response, this, MAX_RESPONSE_HEAD, conn.config.maxHeaders * 2);
    this.#timer = new WheelTimer(this);
    const upstream = dialUpstream(request.route.location.upstream) as UpstreamSocket;
    upstream[kExchange] = this;
    this.upstream = upstream;
    for (const [event, listener] of UPSTREAM_LISTENERS) upstream.on(event, listener);
    conn.wheel.arm(this.#timer, request.route.location.connectTimeoutMs);
    this.#lastActive = conn.wheel.now;
  }

  /** A request body piece from the client's parser. */
  sendBody(chunk: Buffer): void {
    if (this.phase === ExchangePhase.Dialing) {
      this.#queued.push(chunk);
      return;
    }
    if (this.phase === ExchangePhase.Done || this.request.webSocket) return;
    this.#lastActive = this.conn.wheel.now;
    if (!this.#writeBody(this.upstream, chunk, this.request.chunked)) this.conn.pauseReading();
  }

  /** The client's request message is complete. */
  endBody(): void {
    this.#requestEnded = true;
    if (this.phase !== ExchangePhase.Dialing && this.phase !== ExchangePhase.Done && this.request.chunked) {
      this.upstream.write(LAST_CHUNK);
    }
  }

  /** The client's socket drained: resume reading the upstream response. */
  downstreamDrained(): void {
    this.#waitingOnDownstream = false;
    this.#lastActive = this.conn.wheel.now;
    if (!this.upstream.destroyed) this.upstream.resume();
  }

  /** The client went away or the gateway is shutting down: drop the upstream side. */
  abort(): void {
    if (this.phase === ExchangePhase.Done) return;
    this.#finish();
    this.upstream.destroy();
  }

  onTimerExpired(now: number): number {
    if (this.phase === ExchangePhase.Done) return 0;
    const location = this.request.route.location;
    if (this.phase === ExchangePhase.Dialing) {
      this.#fail(new WsgateError('WSG_ERR_UPSTREAM_CONNECT_TIMEOUT', `${location.upstream.host}:${location.upstream.port}`));
      return 0;
    }
    const limit = this.#waitingOnDownstream ? location.sendTimeoutMs : location.readTimeoutMs;
    if (limit <= 0) return now + 1000; // disabled: look again later (the wait may change kind)
    const deadline = this.#lastActive + limit;
    if (deadline > now) return deadline;
    this.#fail(
      this.#waitingOnDownstream
        ? new WsgateError('WSG_ERR_DOWNSTREAM_TIMEOUT', `no progress for ${limit} ms`)
        : new WsgateError('WSG_ERR_UPSTREAM_TIMEOUT', `no response bytes for ${limit} ms`),
    );
    return 0;
  }

  // --- upstream socket events (through the named listeners below) ---

  connected(): void {
    this.phase = ExchangePhase.AwaitingResponse;
    const { request } = this;
    const location = request.route.location;
    const head = buildUpstreamRequestHead(request.head, {
      target: request.route.upstreamTarget!,
      location,
      host: request.host,
      clientHost: request.clientHost,
      remoteAddress: this.conn.remoteAddress,
      proto: this.conn.proto,
      webSocket: request.webSocket,
      contentLength: request.contentLength,
      chunked: request.chunked,
    });
    const upstream = this.upstream;
    upstream.cork();
    upstream.write(head, 'latin1');
    // Bytes that followed an upgrade head wait for the 101 (Connection keeps
    // them): an upstream that refuses the upgrade never sees them.
    if (!request.webSocket) {
      for (const chunk of this.#queued) this.#writeBody(upstream, chunk, request.chunked);
      if (this.#requestEnded && request.chunked) upstream.write(LAST_CHUNK);
    }
    this.#queued = [];
    upstream.uncork();
    this.#lastActive = this.conn.wheel.now;
    this.conn.wheel.arm(this.#timer, Math.max(1, location.readTimeoutMs || location.sendTimeoutMs || 1000));
    if (!request.webSocket && !this.#requestEnded) this.conn.resumeReading();
  }

  received(chunk: Buffer): void {
    if (this.phase === ExchangePhase.Done) return;
    this.#lastActive = this.conn.wheel.now;
    let consumed: number;
    try {
      consumed = this.#reader.execute(chunk);
    } catch (err) {
      this.#fail(err);
      return;
    }
    if (this.#switching) this.#startTunnel(consumed < chunk.length ? chunk.subarray(consumed) : null);
  }

  upstreamEnded(): void {
    if (this.phase === ExchangePhase.Done) return;
    try {
      this.#reader.finish(); // completes a read-until-close body, or throws
    } catch {
      // fall through: not a complete message
    }
    if ((this.phase as ExchangePhase) !== ExchangePhase.Done) {
      this.#fail(
        this.responseStarted
          ? new WsgateError('WSG_ERR_UPSTREAM_ABORTED', 'upstream closed mid-response')
          : new WsgateError('WSG_ERR_UPSTREAM_CLOSED'),
      );
    }
  }

  upstreamFailed(err: NodeJS.ErrnoException): void {
    if (this.phase === ExchangePhase.Done) return;
    if (this.phase === ExchangePhase.Dialing) this.#fail(connectError(err, this.request.route.location.upstream));
    else if (this.responseStarted) this.#fail(new WsgateError('WSG_ERR_UPSTREAM_ABORTED', err.code ?? err.message, { cause: err }));
    else this.#fail(new WsgateError('WSG_ERR_UPSTREAM_CONNECT', `reset before a response: ${err.code ?? err.message}`, { cause: err }));
  }

  upstreamDrained(): void {
    this.#lastActive = this.conn.wheel.now;
    if (!this.#requestEnded) this.conn.resumeReading();
  }

  // --- response parser callbacks ---

  onHead(head: ParsedHead): boolean {
    const { request } = this;
    const status = head.statusCode;
    if (status === 101) {
      // RFC 9110 §15.2.2: a server may only switch to a protocol the client asked for.
      if (!request.webSocket) throw new WsgateError('WSG_ERR_UPSTREAM_BAD_RESPONSE', '101 to a request that did not ask to upgrade');
      const bad = checkSwitchingProtocols(request.head, head, this.conn.config.checkWebSocketAccept);
      if (bad) throw bad;
      this.#switching = true;
      return false;
    }
    if (status < 200) {
      // Interim responses go to HTTP/1.1 clients only (RFC 9110 §15.2); llhttp then reads the next head.
      if (request.head.versionMinor >= 1) this.conn.socket.write(buildInformationalHead(head), 'latin1');
      return false;
    }
    const noBody = request.head.method === 'HEAD' || status === 204 || status === 304;
    let framing: DownstreamResponseOptions['framing'];
    let contentLength = 0;
    const length = findHeader(head.rawHeaders, 'content-length');
    if (noBody) framing = 'none';
    else if (findHeader(head.rawHeaders, 'transfer-encoding') !== undefined) framing = request.head.versionMinor >= 1 ? 'chunked' : 'close';
    else if (length !== undefined) {
      framing = 'length';
      contentLength = Number(length);
    } else framing = 'close';
    this.#framing = framing;
    this.phase = ExchangePhase.RelayingBody;
    this.responseStarted = true;
    this.conn.socket.write(buildDownstreamResponseHead(head, { framing, contentLength, upgrade: false }), 'latin1');
    return noBody;
  }

  onBody(chunk: Buffer): void {
    if (this.phase !== ExchangePhase.RelayingBody) return;
    if (!this.#writeBody(this.conn.socket, chunk, this.#framing === 'chunked')) {
      this.#waitingOnDownstream = true;
      this.upstream.pause();
    }
  }

  onMessageComplete(): void {
    if (this.phase !== ExchangePhase.RelayingBody) return; // an interim 1xx, or the 101 itself
    if (this.#framing === 'chunked') this.conn.socket.write(LAST_CHUNK);
    this.#finish();
    this.upstream.destroy();
    this.conn.exchangeDone(this, null);
  }

  // --- internals ---

  #writeBody(socket: net.Socket, chunk: Buffer, chunked: boolean): boolean {
    if (!chunked) return socket.write(chunk);
    socket.write(chunk.length.toString(16) + '\r\n', 'latin1');
    socket.write(chunk);
    return socket.write(CRLF);
  }

  #startTunnel(leftover: Buffer | null): void {
    const head = this.#reader.head!;
    this.#finish();
    const upstream = this.upstream;
    for (const [event, listener] of UPSTREAM_LISTENERS) upstream.removeListener(event, listener);
    upstream.pause();
    this.conn.startTunnel(this.request.route, upstream, buildDownstreamResponseHead(head, { framing: 'none', contentLength: 0, upgrade: true }), leftover);
  }

  #finish(): void {
    this.phase = ExchangePhase.Done;
    this.conn.wheel.cancel(this.#timer);
    this.#reader.release();
    this.#queued = [];
  }

  #fail(err: unknown): void {
    if (this.phase === ExchangePhase.Done) return;
    this.#finish();
    this.upstream.destroy();
    const error = err instanceof WsgateError ? err : new WsgateError('WSG_ERR_UPSTREAM_BAD_RESPONSE', String(err), { cause: err });
    this.conn.exchangeDone(this, error);
  }
}

function upstreamOnConnect(this: UpstreamSocket): void {
  this[kExchange].connected();
}
function upstreamOnData(this: UpstreamSocket, chunk: Buffer): void {
  const exchange = this[kExchange];
  try {
    exchange.received(chunk);
  } catch (err) {
    exchange.conn.crashed(err);
  }
}
function upstreamOnEnd(this: UpstreamSocket): void {
  this[kExchange].upstreamEnded();
}
function upstreamOnError(this: UpstreamSocket, err: NodeJS.ErrnoException): void {
  this[kExchange].upstreamFailed(err);
}
function upstreamOnClose(this: UpstreamSocket): void {
  // A close without 'end' or 'error' (destroyed elsewhere) still ends the exchange.
  this[kExchange].upstreamEnded();
}
function upstreamOnDrain(this: UpstreamSocket): void {
  this[kExchange].upstreamDrained();
}

// Attached while the exchange owns the upstream socket; removed when a tunnel takes it over.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const UPSTREAM_LISTENERS: ReadonlyArray<readonly [string, (this: UpstreamSocket, ...args: any[]) => void]> = [
  ['connect', upstreamOnConnect],
  ['data', upstreamOnData],
  ['end', upstreamOnEnd],
  ['error', upstreamOnError],
  ['close', upstreamOnClose],
  ['drain', upstreamOnDrain],
];
