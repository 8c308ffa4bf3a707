// An upgraded connection: two sockets spliced both ways. Chunks go from one
// socket's 'data' straight to the other's handle (handle-writes.ts), never
// copied or re-framed; when a write reports a full buffer the source pauses
// until 'drain' (ws `socketOnData` / `receiverOnDrain`). Each direction half-closes on its own
// (Go `switchProtocolCopier` calls CloseWrite on EOF): a FIN from one side ends
// the other side's write half, and the tunnel is over when both halves are.
// A reset or error on either side destroys the other at once.
//
// Idle detection stamps a number per chunk; the timer wheel asks later.

import type net from 'node:net';
import type { TimerOwner, TimerWheel } from '../core/timer-wheel.js';
import { WheelTimer } from '../core/timer-wheel.js';
import { writeHeld } from '../io/read-buffers.js';
import { writeToSocket } from '../io/handle-writes.js';
import { guard } from '../core/guard.js';
import { kGotEnd, kTunnel, ownerOfSocket } from '../io/socket-fields.js';

export type TunnelCloseReason = 'done' | 'idle' | 'downstream-error' | 'upstream-error' | 'shutdown' | 'internal-error';

export interface TunnelEndpoints {
  readonly downstream: net.Socket;
  readonly upstream: net.Socket;
}

/** Called once, after both sockets are closed. */
export type TunnelCloseCallback = (tunnel: Tunnel, reason: TunnelCloseReason) => void;
/** A listener of the tunnel threw (a bug): both sides are being destroyed; log and count it. */
export type TunnelCrashCallback = (tunnel: Tunnel, err: unknown) => void;


type TunnelSocket = net.Socket & { [kTunnel]: Tunnel; [kGotEnd]: boolean };

export class Tunnel implements TimerOwner {
  readonly downstream: TunnelSocket;
  readonly upstream: TunnelSocket;
  readonly startedAt: number;
  /** Payload bytes relayed client -> upstream (after the handshake). */
  bytesToUpstream = 0;
  /** Payload bytes relayed upstream -> client (after the 101 head). */
  bytesToDownstream = 0;
  lastActive: number;
  readonly timeoutMs: number;
  readonly wheel: TimerWheel;
  readonly #timer: WheelTimer;
  readonly #onClose: TunnelCloseCallback;
  readonly #onCrash: TunnelCrashCallback;
  #openSockets = 2;
  /** Sides whose close was counted: 1 downstream, 2 upstream. */
  #closedSides = 0;
  #reason: TunnelCloseReason | null = null;

  /**
   * Takes over both sockets. `toUpstream` / `toDownstream` are bytes that
   * arrived with the handshake and must go first, in order.
   */
  constructor(
    endpoints: TunnelEndpoints,
    toUpstream: readonly Buffer[],
    toDownstream: Buffer | null,
    timeoutMs: number,
    wheel: TimerWheel,
    onClose: TunnelCloseCallback,
    onCrash: TunnelCrashCallback,
  ) {
    const downstream = endpoints.downstream as TunnelSocket;
    const upstream = endpoints.upstream as TunnelSocket;
    this.downstream = downstream;
    this.upstream = upstream;
    this.wheel = wheel;
    this.timeoutMs = timeoutMs;
    this.#onClose = onClose;
    this.#onCrash = onCrash;
    this.startedAt = Date.now();
    this.lastActive = 0;
    this.#timer = new WheelTimer(this);

    downstream[kTunnel] = this;
    upstream[kTunnel] = this;
    downstream[kGotEnd] = false;
    upstream[kGotEnd] = false;
    downstream.setNoDelay(true);
    upstream.setNoDelay(true);

    for (const chunk of toUpstream) {
      this.bytesToUpstream += chunk.length;
      upstream.write(chunk);
    }
    if (toDownstream !== null && toDownstream.length > 0) {
      this.bytesToDownstream += toDownstream.length;
      writeHeld(downstream, toDownstream); // a slice of the upstream read that carried the 101
    }

    for (const [event, listener] of DOWNSTREAM_LISTENERS) downstream.on(event, listener);
    for (const [event, listener] of UPSTREAM_LISTENERS) upstream.on(event, listener);
    wheel.arm(this.#timer, timeoutMs);
    this.lastActive = wheel.now;
    // Either socket may already have closed while the handshake finished.
    if (downstream.destroyed) this.socketClosed(downstream);
    if (upstream.destroyed) this.socketClosed(upstream);
    if (!downstream.destroyed) downstream.resume();
    if (!upstream.destroyed) upstream.resume();
  }

  get isClosed(): boolean {
    return this.#openSockets === 0;
  }

  /** Closes both sides now (gateway drain deadline). */
  destroy(reason: TunnelCloseReason = 'shutdown'): void {
    this.#reason ??= reason;
    this.downstream.destroy();
    this.upstream.destroy();
  }

  onTimerExpired(now: number): number {
    if (this.#openSockets === 0) return 0;
    const deadline = this.lastActive + this.timeoutMs;
    if (deadline > now) return deadline;
    this.destroy('idle');
    return 0;
  }

  peerOf(socket: TunnelSocket): TunnelSocket {
    return socket === this.downstream ? this.upstream : this.downstream;
  }

  /** A listener threw: destroy both sides (core/guard.ts); the close is still reported once. */
  crashed(err: unknown): void {
    this.#reason ??= 'internal-error';
    try {
      this.#onCrash(this, err);
    } finally {
      this.downstream.destroy();
      this.upstream.destroy();
      // A 'close' whose listener threw was not counted.
      if (this.downstream.closed) this.socketClosed(this.downstream);
      if (this.upstream.closed) this.socketClosed(this.upstream);
    }
  }

  socketClosed(socket: TunnelSocket): void {
    const side = socket === this.downstream ? 1 : 2;
    if ((this.#closedSides & side) !== 0) return;
    this.#closedSides |= side;
    // A side that closed before both of its halves were done (error, reset,
    // destroy) takes the other with it; a side that finished cleanly leaves
    // the other to finish its own last bytes.
    const peer = this.peerOf(socket);
    if (!socket[kGotEnd] || !socket.writableFinished) {
      if (this.#reason === null) this.#reason = socket === this.downstream ? 'downstream-error' : 'upstream-error';
      peer.destroy();
    }
    if (--this.#openSockets === 0) {
      this.wheel.cancel(this.#timer);
      this.#onClose(this, this.#reason ?? 'done');
    }
  }

  noteError(socket: TunnelSocket): void {
    if (this.#reason === null) this.#reason = socket === this.downstream ? 'downstream-error' : 'upstream-error';
    // Mirror an abortive close: the other side learns at once, as through a plain TCP path.
    const peer = this.peerOf(socket);
    if (!peer.destroyed) peer.resetAndDestroy();
  }
}

function downstreamOnData(this: TunnelSocket, chunk: Buffer): void {
  const tunnel = this[kTunnel];
  tunnel.bytesToUpstream += chunk.length;
  tunnel.lastActive = tunnel.wheel.now;
  if (!writeToSocket(tunnel.upstream, chunk)) this.pause();
}

function upstreamOnData(this: TunnelSocket, chunk: Buffer): void {
  const tunnel = this[kTunnel];
  tunnel.bytesToDownstream += chunk.length;
  tunnel.lastActive = tunnel.wheel.now;
  if (!writeToSocket(tunnel.downstream, chunk)) this.pause();
}

/** The writer drained: let its peer read again. */
function socketOnDrain(this: TunnelSocket): void {
  const peer = this[kTunnel].peerOf(this);
  if (!peer.destroyed) peer.resume();
}

/** Half-close: this side sent FIN, so end the peer's write half once its buffer is flushed. */
function socketOnEnd(this: TunnelSocket): void {
  this[kGotEnd] = true;
  const tunnel = this[kTunnel];
  tunnel.lastActive = tunnel.wheel.now;
  const peer = tunnel.peerOf(this);
  if (!peer.destroyed) peer.end();
  // With allowHalfOpen, node destroys a socket once both halves are done.
  if (this.writableFinished && !this.destroyed) this.destroy();
}

function downstreamOnError(this: TunnelSocket): void {
  this[kTunnel].noteError(this);
}
const upstreamOnError = downstreamOnError;

function socketOnClose(this: TunnelSocket): void {
  this[kTunnel].socketClosed(this);
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type TunnelListener = readonly [string, (this: TunnelSocket, ...args: any[]) => unknown];
const DOWNSTREAM_LISTENERS: readonly TunnelListener[] = [
  ['data', guard('tunnel', 'downstream-data', downstreamOnData, ownerOfSocket)],
  ['drain', guard('tunnel', 'drain', socketOnDrain, ownerOfSocket)],
  ['end', guard('tunnel', 'end', socketOnEnd, ownerOfSocket)],
  ['error', guard('tunnel', 'error', downstreamOnError, ownerOfSocket)],
  ['close', guard('tunnel', 'close', socketOnClose, ownerOfSocket)],
];
const UPSTREAM_LISTENERS: readonly TunnelListener[] = [
  ['data', guard('tunnel', 'upstream-data', upstreamOnData, ownerOfSocket)],
  ...DOWNSTREAM_LISTENERS.slice(1).map(([event, listener]): TunnelListener => [event, event === 'error' ? guard('tunnel', 'upstream-error', upstreamOnError, ownerOfSocket) : listener]),
];
