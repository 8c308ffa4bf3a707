// How a message body is framed on the side wsgate writes it (RFC 9112 §6):
// the framing chosen for a response to the client, and the writers that apply
// it (Content-Length bodies pass as they are; chunked ones are re-chunked,
// without extensions or trailers).

import type net from 'node:net';
import { findHeader, type ParsedHead } from './head-reader.js';
import type { DownstreamResponseOptions } from './headers.js';
import { writeHeld } from '../io/read-buffers.js';

export type Framing = DownstreamResponseOptions['framing'];

const CRLF = Buffer.from('\r\n', 'latin1');
export const LAST_CHUNK = Buffer.from('0\r\n\r\n', 'latin1');

/**
 * The framing of the response to `request`: none for HEAD, 204 and 304 (RFC
 * 9110 §6.4.1); chunked re-chunked for HTTP/1.1 clients, read-until-close for
 * HTTP/1.0 ones (which cannot parse chunks); else its Content-Length, or close.
 */
export function responseFraming(request: ParsedHead, response: ParsedHead): { framing: Framing; contentLength: number } {
  const status = response.statusCode;
  if (request.method === 'HEAD' || status === 204 || status === 304) return { framing: 'none', contentLength: 0 };
  if (findHeader(response.rawHeaders, 'transfer-encoding') !== undefined) {
    return { framing: request.versionMinor === 0 ? 'close' : 'chunked', contentLength: 0 };
  }
  const length = findHeader(response.rawHeaders, 'content-length');
  if (length !== undefined) return { framing: 'length', contentLength: Number(length) };
  return { framing: 'close', contentLength: 0 };
}

/** A request's `Transfer-Encoding` as sent upstream: its codings (ending in `chunked`, llhttp checked) without empty list members. */
export function normalizeTransferCodings(value: string): string {
  return value
    .split(',')
    .map((c) => c.trim())
    .filter((c) => c !== '')
    .join(', ');
}

/** Appends one body piece to `out`, framed as a chunk when `chunked` (for one writev). */
export function pushBody(out: Array<string | Buffer>, chunk: Buffer, chunked: boolean): void {
  if (!chunked) {
    out.push(chunk);
    return;
  }
  out.push(chunk.length.toString(16) + '\r\n', chunk, CRLF);
}

/** Writes one body piece, as a chunk when `chunked`; returns what the last write() returned (backpressure). */
export function writeBody(socket: net.Socket, chunk: Buffer, chunked: boolean): boolean {
  if (!chunked) return writeHeld(socket, chunk); // may be a slice of a pooled read (read-buffers.ts)
  socket.write(chunk.length.toString(16) + '\r\n', 'latin1');
  writeHeld(socket, chunk);
  return socket.write(CRLF);
}
