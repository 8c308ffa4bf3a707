// A request llhttp has read (at least its head), waiting in its connection's
// queue for an exchange or being served by one (pipelining, RFC 9112 §9.3.2).
// It keeps what arrives for it until the exchange can take it: body pieces,
// and after an upgrade head the raw bytes behind it, held until the 101.

import { findHeader, type ParsedHead } from '../http/head-reader.js';
import { retainRead } from '../io/read-buffers.js';

// Bytes held behind an upgrade head before reading pauses. A paused node
// socket reads up to its highWaterMark the same way, so a reset or FIN while
// the upgrade waits is still seen at once.
const HELD_MAX = 64 * 1024;

export class PendingRequest {
  readonly head: ParsedHead;
  /** Body pieces that came before an exchange took the request. */
  body: Buffer[] = [];
  /** The whole message has been read. */
  complete: boolean;
  /** After an upgrade head: the raw bytes that followed it. */
  tail: Buffer[] | null;
  /**
   * Bytes of a Content-Length body still to come. Such a body is cut from the
   * socket's reads as they are (llhttp would copy every piece of it); only
   * chunked bodies go through llhttp.
   */
  rawRemaining: number;
  /** The body is chunked (Transfer-Encoding): llhttp parses it. */
  readonly chunked: boolean;
  #heldBytes = 0;

  constructor(head: ParsedHead, complete = false, tail: Buffer[] | null = null) {
    this.head = head;
    this.complete = complete;
    this.tail = tail;
    this.chunked = findHeader(head.rawHeaders, 'transfer-encoding') !== undefined;
    this.rawRemaining = head.upgrade || complete || this.chunked ? 0 : contentLengthBody(head.rawHeaders);
  }

  /** Keeps a body piece until an exchange takes the request. */
  keepBody(chunk: Buffer): void {
    this.body.push(retainRead(chunk));
  }

  /** Keeps bytes that came after the upgrade head; true once enough are held that reading should pause. */
  hold(chunk: Buffer): boolean {
    (this.tail ??= []).push(retainRead(chunk));
    this.#heldBytes += chunk.length;
    return this.#heldBytes >= HELD_MAX;
  }

  /** Cuts the next piece of the Content-Length body from `bytes`: the piece, and what follows the body (or null). */
  cutRawBody(bytes: Buffer): [Buffer, Buffer | null] {
    const n = Math.min(this.rawRemaining, bytes.length);
    this.rawRemaining -= n;
    if (n === bytes.length) return [bytes, null];
    return [bytes.subarray(0, n), bytes.subarray(n)];
  }
}

/**
 * Length of a body framed by Content-Length (no Transfer-Encoding), 0 for none.
 * llhttp has already refused a Content-Length that is not one plain number,
 * or one beside Transfer-Encoding (RFC 9112 §6.3).
 */
function contentLengthBody(rawHeaders: readonly string[]): number {
  const value = findHeader(rawHeaders, 'content-length');
  return value === undefined ? 0 : Number(value.trim());
}
