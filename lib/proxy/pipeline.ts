// The requests of one client connection, in the order they were read. llhttp
// reads every request on the connection; each becomes a PendingRequest in the
// queue, and they are answered in order (pipelining, RFC 9112 §9.3.2). The
// front request's body goes to its exchange as it arrives; the others keep
// theirs until their turn. Reading pauses while a request waits behind
// another, so the queue holds at most what one socket read brought.
//
// After an upgrade head, or after a malformed message, the bytes are no
// longer HTTP: parsing stops for good, and what follows an upgrade head is
// held for the 101 (or dropped by a refusal).

import { WsgateError } from '../core/errors.js';
import { BodyMode, HeadKind, HeadReader, type HeadReaderHandler, type ParsedHead } from '../http/head-reader.js';
import type { Exchange } from './exchange.js';
import { PendingRequest } from './pending-request.js';

/** The connection a pipeline reads for (connection.ts). */
export interface PipelineOwner {
  /** The exchange serving the front request, or null. */
  readonly exchange: Exchange | null;
  /** Stop reading the socket: a request waits behind another, or enough bytes are held behind an upgrade head. */
  pauseReading(): void;
}

export class Pipeline implements HeadReaderHandler {
  readonly #owner: PipelineOwner;
  /** Null once parsing stopped: after an upgrade head, a malformed message, or the connection's end. */
  #reader: HeadReader | null;
  /** Requests read and not yet answered; [0] is the one an exchange serves. */
  queue: PendingRequest[] = [];
  /** The request llhttp is delivering the body of, or null between messages. */
  #parsing: PendingRequest | null = null;

  constructor(owner: PipelineOwner, maxHeadSize: number, maxHeaders: number) {
    this.#owner = owner;
    this.#reader = new HeadReader(HeadKind.Request, this, maxHeadSize, maxHeaders);
  }

  /** The request being served (or next to be). */
  get front(): PendingRequest | undefined {
    return this.queue[0];
  }

  /** Bytes are still parsed as HTTP. */
  get parsing(): boolean {
    return this.#reader !== null;
  }

  /** A head something else already parsed (node:http's 'upgrade'), with the bytes after it: no parsing here. */
  adopt(head: ParsedHead, rest: Buffer): void {
    this.stop();
    this.queue.push(new PendingRequest(head, true, rest.length > 0 ? [rest] : []));
  }

  /**
   * Reads one chunk from the socket: heads, bodies, and bytes held behind an
   * upgrade head. Returns the error when the chunk held a malformed message:
   * parsing has then stopped, the broken request is gone from the queue, and
   * the requests read whole before it stay to be answered first.
   */
  read(chunk: Buffer): WsgateError | null {
    if (this.#reader === null) {
      // After an upgrade head, or after a parse error: bytes are not HTTP.
      const last = this.queue[this.queue.length - 1];
      if (last?.tail && last.hold(chunk)) this.#owner.pauseReading();
      return null;
    }
    let rest: Buffer | null = chunk;
    while (rest !== null) {
      const reader: HeadReader | null = this.#reader; // the last piece's callbacks may have stopped it
      if (reader === null) return null;
      const raw = this.#parsing;
      if (raw !== null && raw.rawRemaining > 0) {
        rest = this.#rawBody(raw, reader, rest);
        continue;
      }
      let consumed: number;
      try {
        consumed = reader.execute(rest);
      } catch (err) {
        return this.#failed(err instanceof WsgateError ? err : new WsgateError('WSG_ERR_BAD_REQUEST', String(err)));
      }
      const last = this.queue[this.queue.length - 1];
      if (last?.head.upgrade && last.tail === null) {
        // llhttp stopped at the end of an upgrade head: what follows is not HTTP.
        // Hold it until the 101 or the refusal.
        last.tail = [];
        if (consumed < rest.length && last.hold(rest.subarray(consumed))) this.#owner.pauseReading();
        this.stop();
        return null;
      }
      // llhttp stops early only at an upgrade head or before a raw body.
      if (consumed < rest.length && !(this.#parsing !== null && this.#parsing.rawRemaining > 0)) {
        return this.#failed(new WsgateError('WSG_ERR_INTERNAL', 'request parser stopped mid-chunk'));
      }
      rest = consumed < rest.length ? rest.subarray(consumed) : null;
    }
    return null;
  }

  /** Stops parsing for good (the parser goes back to its pool). */
  stop(): void {
    this.#reader?.release();
    this.#reader = null;
  }

  /** Stops parsing and forgets every request: the connection is over. */
  clear(): void {
    this.stop();
    this.#parsing = null;
    this.queue = [];
  }

  // --- request parser callbacks ---

  onHead(head: ParsedHead): BodyMode {
    const pending = new PendingRequest(head);
    this.queue.push(pending);
    this.#parsing = pending;
    // A request waiting behind another: stop reading until its turn (bounded pipelining).
    if (this.queue.length > 1) this.#owner.pauseReading();
    if (pending.rawRemaining > 0) return BodyMode.Raw;
    // RFC 9112 §6.3: a request with neither Content-Length nor Transfer-Encoding has no body.
    // An upgrade head stays with llhttp, which stops after it.
    return pending.chunked || pending.head.upgrade ? BodyMode.Parse : BodyMode.None;
  }

  onBody(chunk: Buffer): void {
    const pending = this.#parsing;
    if (pending === null) return;
    const exchange = this.#owner.exchange;
    if (exchange !== null && pending === this.queue[0]) exchange.sendBody(chunk);
    else pending.keepBody(chunk);
  }

  onMessageComplete(): void {
    const pending = this.#parsing;
    // llhttp ends a message at the head when told the body is raw; it ends when the last raw byte is relayed.
    if (pending === null || pending.rawRemaining > 0) return;
    this.#parsing = null;
    pending.complete = true;
    const exchange = this.#owner.exchange;
    if (exchange !== null && pending === this.queue[0]) exchange.endBody();
  }

  /** Delivers the next piece of a Content-Length body; returns the bytes after it (the next request), if any. */
  #rawBody(pending: PendingRequest, reader: HeadReader, bytes: Buffer): Buffer | null {
    const [piece, rest] = pending.cutRawBody(bytes);
    this.onBody(piece);
    if (pending.rawRemaining > 0) return null;
    reader.restart();
    this.onMessageComplete();
    return rest;
  }

  /** Whatever follows a malformed message cannot be framed: parsing stops, and the broken request leaves the queue. */
  #failed(err: WsgateError): WsgateError {
    this.stop();
    if (this.#parsing !== null) this.queue.pop();
    this.#parsing = null;
    return err;
  }
}
