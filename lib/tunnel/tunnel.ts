// An upgraded connection: two sockets spliced both ways. Chunks go from one
// socket's reads straight to the other's handle (handle-writes.ts), never
// copied or re-framed; when a write reports a full buffer the source pauses
// until 'drain' (ws `socketOnData` / `receiverOnDrain`). Each direction half-closes on its own
// (Go `switchProtocolCopier` calls CloseWrite on EOF): a FIN from one side ends
// the other side's write half, and the tunnel is over when both halves are.
// A reset or error on either side destroys the other at once.
//
// The tunnel adds no listener: each socket keeps the one set it got when
// wsgate took it (the client's from its connection, the upstream's from the
// dialer), and those dispatch to whoever owns the socket now. Taking a socket
// over is one assignment (`socket[kConnection]` / `socket[kOwner]` becomes a
// TunnelSide), where removing and adding a dozen listeners per handshake cost
// about 3 % of its instructions (bench/RESULTS.md, "Handshake instructions").
//
// Idle detection stamps a number per chunk; the timer wheel asks later.
//
// Once running (the turn after it is built, when both sockets are at rest:
// nothing queued, no FIN pending), a tunnel keeps only the two TCP handles and
// lets the sockets go (`shedSockets`, handle-side.ts), where the probe turned
// handle tunnels on and wsgate accepted the client socket itself (a socket
// handed in through the API may have other holders). An idle tunnel's heap
// then drops from 3.7 to 1.4 KB (bench/RESULTS.md). Otherwise, or where either
// socket is not at rest, it stays on its sockets for its whole life.

import type net from 'node:net';
import type { TimerOwner, TimerWheel } from '../core/timer-wheel.js';
import { WheelTimer } from '../core/timer-wheel.js';
import { moveReadBuffers, shrinkIdleReadBuffer, writeHeld } from '../io/read-buffers.js';
import { writeToSocket } from '../io/handle-writes.js';
import { fastPaths, takeHandle, takeableHandle } from '../io/node-internals.js';
import { kConnection, kOwnSocket, kOwner, kTurnWrites, takeGone } from '../io/socket-fields.js';
import { HandleSide } from './handle-side.js';

export type TunnelCloseReason = 'done' | 'idle' | 'downstream-error' | 'upstream-error' | 'shutdown' | 'internal-error';

export interface TunnelEndpoints {
  readonly downstream: net.Socket;
  readonly upstream: net.Socket;
}

/** Called once, after both sockets are closed. */
export type TunnelCloseCallback = (tunnel: Tunnel, reason: TunnelCloseReason) => void;
/** A listener of the tunnel threw (a bug): both sides are being destroyed; log and count it. */
export type TunnelCrashCallback = (tunnel: Tunnel, err: unknown) => void;

/** A socket as the tunnel holds it: its events go to `[kConnection]` (a client socket) or `[kOwner]` (an upstream socket). */
type OwnedSocket = net.Socket & { [kConnection]: unknown; [kOwner]: unknown; [kTurnWrites]?: unknown; [kOwnSocket]?: boolean };

export class Tunnel implements TimerOwner {
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
  #down: TunnelSide | HandleSide;
  #up: TunnelSide | HandleSide;
  #openSockets = 2;
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
    const downstream = endpoints.downstream;
    const upstream = endpoints.upstream;
    this.wheel = wheel;
    this.timeoutMs = timeoutMs;
    this.#onClose = onClose;
    this.#onCrash = onCrash;
    this.startedAt = Date.now();
    this.lastActive = 0;
    this.#timer = new WheelTimer(this);
    const down = (this.#down = new TunnelSide(this, downstream, true));
    const up = (this.#up = new TunnelSide(this, upstream, false));
    down.peer = up;
    up.peer = down;

    // From here on the sockets' listeners (connection.ts, upstream/dialer.ts) dispatch to the sides.
    (downstream as OwnedSocket)[kConnection] = down;
    (upstream as OwnedSocket)[kOwner] = up;
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

    wheel.arm(this.#timer, timeoutMs);
    this.lastActive = wheel.now;
    // Either socket may already have closed while the handshake finished.
    if (downstream.destroyed) this.sideClosed(down);
    if (upstream.destroyed) this.sideClosed(up);
    if (!downstream.destroyed) downstream.resume();
    if (!upstream.destroyed) upstream.resume();
    if (fastPaths().handleTunnels && (downstream as OwnedSocket)[kOwnSocket] === true) process.nextTick(shedSockets, this);
  }

  get isClosed(): boolean {
    return this.#openSockets === 0;
  }

  /** The tunnel keeps only its two handles (handle-side.ts), no sockets. */
  get onHandles(): boolean {
    return this.#down instanceof HandleSide;
  }

  /** Closes both sides now (gateway drain deadline). */
  destroy(reason: TunnelCloseReason = 'shutdown'): void {
    this.#reason ??= reason;
    this.#down.destroy();
    this.#up.destroy();
  }

  /**
   * Takes both sockets' handles and lets the sockets go, when both are at
   * rest: open, nothing queued in them or held for the end of the turn, no
   * FIN read. Else the tunnel stays on its sockets.
   */
  shedSockets(): void {
    const down = this.#down;
    const up = this.#up;
    if (!(down instanceof TunnelSide) || !(up instanceof TunnelSide)) return;
    if (this.#openSockets !== 2 || this.#reason !== null || down.gotEnd || up.gotEnd) return;
    const downstream = down.socket as OwnedSocket;
    const upstream = up.socket as OwnedSocket;
    if (downstream[kTurnWrites] != null || upstream[kTurnWrites] != null || downstream.isPaused() || upstream.isPaused()) return;
    const downHandle = takeableHandle(downstream);
    const upHandle = takeableHandle(upstream);
    if (downHandle === null || upHandle === null) return;
    const newDown = new HandleSide(this, downHandle, true, takeGone(downstream));
    const newUp = new HandleSide(this, upHandle, false, null);
    newDown.pooled = moveReadBuffers(downstream, newDown);
    newUp.pooled = moveReadBuffers(upstream, newUp);
    if (newDown.pooled) shrinkIdleReadBuffer(newDown, downHandle);
    if (newUp.pooled) shrinkIdleReadBuffer(newUp, upHandle);
    newDown.peer = newUp;
    newUp.peer = newDown;
    takeHandle(downstream, downHandle);
    takeHandle(upstream, upHandle);
    this.#down = newDown;
    this.#up = newUp;
    if (!newDown.start() || !newUp.start()) this.destroy('internal-error');
  }

  onTimerExpired(now: number): number {
    if (this.#openSockets === 0) return 0;
    const deadline = this.lastActive + this.timeoutMs;
    if (deadline > now) return deadline;
    this.destroy('idle');
    return 0;
  }

  /** A listener threw (core/guard.ts): destroy both sides; the close is still reported once. */
  crashed(err: unknown): void {
    this.#reason ??= 'internal-error';
    try {
      this.#onCrash(this, err);
    } finally {
      const down = this.#down;
      const up = this.#up;
      down.destroy();
      up.destroy();
      // A socket 'close' whose listener threw was not counted (a handle's close always is).
      if (down instanceof TunnelSide && down.socket.closed) this.sideClosed(down);
      if (up instanceof TunnelSide && up.socket.closed) this.sideClosed(up);
    }
  }

  /** One side's socket (or handle) closed. */
  sideClosed(side: TunnelSide | HandleSide): void {
    if (side.isClosed) return;
    side.isClosed = true;
    // A side that closed before both of its halves were done (error, reset,
    // destroy) takes the other with it; a side that finished cleanly leaves
    // the other to finish its own last bytes.
    if (!side.gotEnd || !side.finishedWriting) {
      if (this.#reason === null) this.#reason = side.isDownstream ? 'downstream-error' : 'upstream-error';
      side.peer.destroy();
    }
    if (--this.#openSockets === 0) {
      this.wheel.cancel(this.#timer);
      this.#onClose(this, this.#reason ?? 'done');
    }
  }

  /** One side's socket (or handle) failed (reset, EPIPE). */
  sideFailed(side: TunnelSide | HandleSide): void {
    if (this.#reason === null) this.#reason = side.isDownstream ? 'downstream-error' : 'upstream-error';
    // Mirror an abortive close: the other side learns at once, as through a plain TCP path.
    side.peer.reset();
  }
}

function shedSockets(tunnel: Tunnel): void {
  try {
    tunnel.shedSockets();
  } catch (err) {
    tunnel.crashed(err);
  }
}

/**
 * What one socket's events do once the tunnel owns it. It answers to the
 * names both listener sets call: the client socket's (connection.ts) and the
 * upstream socket's (upstream/dialer.ts).
 */
class TunnelSide {
  readonly tunnel: Tunnel;
  readonly socket: net.Socket;
  /** The client's side: its bytes go upstream. */
  readonly isDownstream: boolean;
  peer!: TunnelSide;
  /** This socket's peer sent FIN. */
  gotEnd = false;
  /** Its close was counted. */
  isClosed = false;

  constructor(tunnel: Tunnel, socket: net.Socket, isDownstream: boolean) {
    this.tunnel = tunnel;
    this.socket = socket;
    this.isDownstream = isDownstream;
  }

  /** Its write half is done (FIN sent). */
  get finishedWriting(): boolean {
    return this.socket.writableFinished;
  }

  destroy(): void {
    this.socket.destroy();
  }

  /** An abortive close (RST). */
  reset(): void {
    const socket = this.socket;
    if (!socket.destroyed) socket.resetAndDestroy();
  }

  received(chunk: Buffer): void {
    const tunnel = this.tunnel;
    if (this.isDownstream) tunnel.bytesToUpstream += chunk.length;
    else tunnel.bytesToDownstream += chunk.length;
    tunnel.lastActive = tunnel.wheel.now;
    if (!writeToSocket(this.peer.socket, chunk)) this.socket.pause();
  }

  /** This socket's writes drained: let its peer read again. */
  drained(): void {
    const peer = this.peer.socket;
    if (!peer.destroyed) peer.resume();
  }

  /** Half-close: this side sent FIN, so end the peer's write half once its buffer is flushed. */
  ended(): void {
    this.gotEnd = true;
    const tunnel = this.tunnel;
    tunnel.lastActive = tunnel.wheel.now;
    const peer = this.peer.socket;
    if (!peer.destroyed) peer.end();
    // With allowHalfOpen, node destroys a socket once both halves are done.
    const socket = this.socket;
    if (socket.writableFinished && !socket.destroyed) socket.destroy();
  }

  failed(): void {
    this.tunnel.sideFailed(this);
  }

  closed(): void {
    this.tunnel.sideClosed(this);
  }

  crashed(err: unknown): void {
    this.tunnel.crashed(err);
  }

  // The upstream socket's names for the same events (upstream/dialer.ts `UpstreamOwner`).
  connected(): void {}
  upstreamEnded(): void {
    this.ended();
  }
  upstreamClosed(): void {
    this.closed();
  }
  upstreamFailed(): void {
    this.failed();
  }
  upstreamDrained(): void {
    this.drained();
  }
}
