// The response's way to the client. What one upstream read yields for the
// client (head, body pieces, chunk framing) is gathered while the read is
// parsed and leaves in one writev, as nginx sends head and body together; a
// complete response waits for the end of the turn (turn-writes.ts) so that
// pipelined answers share a write. A Content-Length body is relayed raw:
// `subarray`s of the upstream's own read buffers, no parser, no copy. When the
// client's socket is full the owner pauses the upstream until it drains.

import type net from 'node:net';
import { LAST_CHUNK, pushBody, writeBody, type Framing } from '../http/body-framing.js';
import { writePieces, writeToSocket } from '../io/handle-writes.js';
import { writeAtTurnEnd } from '../io/turn-writes.js';

/** The exchange a relay writes for. */
export interface RelayOwner {
  /** The client cannot take more now: pause the upstream until it drains (the wait is the client's). */
  waitForClient(): void;
}

export class ResponseRelay {
  readonly #client: net.Socket;
  readonly #owner: RelayOwner;
  /** How the body is framed towards the client (body-framing.ts). */
  framing: Framing = 'close';
  /**
   * Content-Length body bytes still to relay as they come off the socket; -1
   * when the body is parsed by llhttp instead (chunked, read-until-close).
   */
  rawRemaining = -1;
  /** The whole response went to the client's socket (or waits for the end of the turn). */
  complete = false;
  /** Pieces for the client while an upstream read is parsed (`#pieces`), else null. */
  #gathered: Array<string | Buffer> | null = null;
  readonly #pieces: Array<string | Buffer> = [];

  constructor(client: net.Socket, owner: RelayOwner) {
    this.#client = client;
    this.#owner = owner;
  }

  /** An upstream read is about to be parsed: what it yields is gathered until `flush`. */
  gather(): void {
    this.#gathered = this.#pieces;
  }

  /**
   * Sends what the read yielded. Sent even when the read also held garbage:
   * what came before it was a valid response. `relaying`: the body is still
   * coming, so a full socket pauses the upstream.
   */
  flush(relaying: boolean): void {
    const pieces = this.#pieces;
    this.#gathered = null;
    if (pieces.length === 0) return;
    // A complete response waits for the end of the turn; one still coming needs the write's backpressure now.
    if (!this.complete || !writeAtTurnEnd(this.#client, pieces)) {
      const roomLeft = writePieces(this.#client, pieces);
      if (!roomLeft && relaying && !this.complete) this.#owner.waitForClient();
    }
    pieces.length = 0;
  }

  /**
   * One piece for the client (a head): gathered while a read is parsed, else
   * written at once, straight to the socket's handle where it can
   * (handle-writes.ts). False when the client's socket is full.
   */
  send(piece: string | Buffer): boolean {
    if (this.#gathered !== null) {
      this.#gathered.push(piece);
      return true;
    }
    return typeof piece === 'string' ? this.#client.write(piece, 'latin1') : writeToSocket(this.#client, piece);
  }

  /** A body piece llhttp parsed, framed for the client. */
  body(chunk: Buffer): void {
    if (this.#gathered !== null) {
      pushBody(this.#gathered, chunk, this.framing === 'chunked');
      return; // flush() decides once the read is parsed
    }
    if (!writeBody(this.#client, chunk, this.framing === 'chunked')) this.#owner.waitForClient();
  }

  /** Content-Length body bytes straight from the upstream's buffer; true when `bytes` ran past the declared length (never relayed). */
  raw(bytes: Buffer): boolean {
    const remaining = this.rawRemaining;
    const overrun = bytes.length > remaining;
    const body = overrun ? bytes.subarray(0, remaining) : bytes;
    this.rawRemaining = remaining - body.length;
    if (this.rawRemaining === 0) this.complete = true;
    if (!this.send(body) && !this.complete) this.#owner.waitForClient();
    return overrun;
  }

  /** llhttp read the end of a parsed body: the last chunk, when re-chunked. */
  end(): void {
    this.complete = true;
    if (this.framing === 'chunked') this.send(LAST_CHUNK);
  }
}
