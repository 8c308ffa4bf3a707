// Connections answered 503 before their request is read: over maxConnections
// (nginx answers 503 from limit_conn), or near the descriptor limit (issue #6:
// past it libuv would close new connections unseen, so refuse them while we
// can). A refused socket holds its descriptor until it closes: they are counted.

import type net from 'node:net';
import { DescriptorLimit, type DescriptorHolder } from './descriptor-limit.js';
import type { WsgateError } from '../core/errors.js';
import type { LogLevel } from '../core/log.js';
import { errorResponse } from '../core/responses.js';
import { WheelTimer, type TimerWheel } from '../core/timer-wheel.js';

// How long a refused client may take to read its 503 before it is closed.
const REFUSAL_GRACE_MS = 1000;
// Refusals for want of descriptors are logged at most this often, with a count.
const DESCRIPTOR_LOG_INTERVAL_MS = 1000;

/** What refusing needs from the gateway. */
export interface RefusalHost {
  readonly wheel: TimerWheel;
  log(level: LogLevel, message: string, fields?: Record<string, unknown>): void;
  /** Reports the refusal as a connection error (the gateway's event). */
  refused(err: WsgateError, remoteAddress: string): void;
}

export class Refusals {
  readonly descriptors = new DescriptorLimit();
  /** Refused sockets not closed yet: each still holds its descriptor. */
  open = 0;
  readonly #host: RefusalHost;
  readonly #holder: DescriptorHolder;
  /** Refused for want of descriptors since the last log line. */
  #sinceLog = 0;
  readonly #logTimer = new WheelTimer({ onTimerExpired: (now) => (this.#logDescriptorRefusals() ? now + DESCRIPTOR_LOG_INTERVAL_MS : 0) });

  /** `holder` counts what the gateway holds, `open` included. */
  constructor(host: RefusalHost, holder: DescriptorHolder) {
    this.#host = host;
    this.#holder = holder;
  }

  /** There are descriptors left for one more client connection and its upstream. */
  admitsOneMore(): boolean {
    return this.descriptors.admits(this.#holder);
  }

  /** A prebuilt 503 and close, without reading the request; `log`: one line for this refusal. */
  refuse(socket: net.Socket, err: WsgateError, log: boolean): void {
    const remoteAddress = socket.remoteAddress ?? '';
    if (log) this.#host.log('warn', err.message, { code: err.code, status: 503, remote: remoteAddress });
    this.#host.refused(err, remoteAddress);
    socket.on('error', () => {});
    if (!socket.closed) {
      this.open++;
      socket.once('close', () => this.open--);
    }
    socket.end(errorResponse(503)!);
    // A client that never reads or closes gets a short grace on the wheel, then is gone.
    this.#host.wheel.arm(new WheelTimer({ onTimerExpired: () => (socket.destroy(), 0) }), REFUSAL_GRACE_MS);
  }

  /** Near the descriptor limit: the same 503, logged at once and then at most once a second with a count. */
  refuseForDescriptors(socket: net.Socket, err: WsgateError): void {
    this.#sinceLog++;
    if (!this.#logTimer.isArmed && this.#logDescriptorRefusals()) this.#host.wheel.arm(this.#logTimer, DESCRIPTOR_LOG_INTERVAL_MS);
    this.refuse(socket, err, false);
    // A flood answered faster than its clients close would fill the table with refusals and
    // leave the rest to libuv's silent close: past half the reserve, a refused socket's
    // descriptor is freed as soon as its 503 is in the kernel (an RST may follow the 503 if
    // the client's request was already in; better than a FIN with no answer at all).
    if (this.open > this.descriptors.reserve / 2 && socket.writableLength === 0) socket.destroy();
  }

  /** `~N of LIMIT in use, R kept free`, for the error detail. */
  describeUse(): string {
    const d = this.descriptors;
    return `~${d.estimate(this.#holder)} of ${d.limit} in use, ${d.reserve} kept free`;
  }

  /** One line for the refusals since the last; false when there were none. */
  #logDescriptorRefusals(): boolean {
    if (this.#sinceLog === 0) return false;
    const d = this.descriptors;
    this.#host.log('warn', 'descriptor limit reached: new connections get 503', {
      code: 'WSG_ERR_DESCRIPTOR_LIMIT',
      status: 503,
      refused: this.#sinceLog,
      fds: d.estimate(this.#holder),
      limit: d.limit,
      reserve: d.reserve,
    });
    this.#sinceLog = 0;
    return true;
  }
}
