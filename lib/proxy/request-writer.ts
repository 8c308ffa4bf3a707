// The request's way to the upstream: the rewritten head (headers.ts) and the
// body read so far leave in one writev, at the end of the turn where it can
// (turn-writes.ts); later body pieces follow as llhttp delivers them,
// re-framed by wsgate (Content-Length kept, chunked re-chunked without
// extensions or trailers), so no byte the parser did not accept is forwarded.

import type net from 'node:net';
import type { ExchangeRequest } from '../http/admission.js';
import { LAST_CHUNK, pushBody, writeBody } from '../http/body-framing.js';
import { buildUpstreamRequestHead } from '../http/headers.js';
import type { TrustedProxies } from '../http/trusted-proxies.js';
import { writePieces } from '../io/handle-writes.js';
import { writeAtTurnEnd } from '../io/turn-writes.js';

/** Who sent the request, as the forwarded headers tell it. */
export interface RequestClient {
  readonly remoteAddress: string;
  /** The peer is a trusted proxy: its X-Forwarded-* fields are believed. */
  readonly peerTrusted: boolean;
  readonly proto: 'http' | 'https';
}

/**
 * Writes the head and the body pieces `queued` so far (with the last chunk
 * when `ended` and chunked), after `proxyHeader` on a fresh connection to an
 * upstream that asked for one. Bytes that followed an upgrade head are not
 * among them: they wait for the 101, so an upstream that refuses the upgrade
 * never sees them.
 */
export function writeRequest(
  upstream: net.Socket,
  request: ExchangeRequest,
  client: RequestClient,
  trustedProxies: TrustedProxies,
  keepAlive: boolean,
  queued: readonly Buffer[],
  ended: boolean,
  proxyHeader: Buffer | null = null,
): void {
  const head = buildUpstreamRequestHead(request.head, {
    target: request.route.upstreamTarget!,
    location: request.route.location,
    host: request.host,
    clientHost: request.clientHost,
    connection: request.connection,
    remoteAddress: client.remoteAddress,
    trustedPeer: client.peerTrusted ? trustedProxies : null,
    proto: client.proto,
    webSocket: request.webSocket,
    contentLength: request.contentLength,
    transferCodings: request.transferCodings,
    keepAlive,
  });
  const pieces: Array<string | Buffer> = proxyHeader === null ? [head] : [proxyHeader, head];
  if (!request.webSocket) {
    for (const chunk of queued) pushBody(pieces, chunk, request.chunked);
    if (ended && request.chunked) pieces.push(LAST_CHUNK);
  }
  if (!writeAtTurnEnd(upstream, pieces)) writePieces(upstream, pieces);
}

/** One more body piece; false when the upstream cannot take more now. */
export function writeRequestBody(upstream: net.Socket, request: ExchangeRequest, chunk: Buffer): boolean {
  return writeBody(upstream, chunk, request.chunked);
}

/** The client's message is complete: the last chunk, when chunked. */
export function endRequestBody(upstream: net.Socket, request: ExchangeRequest): void {
  if (request.chunked) upstream.write(LAST_CHUNK);
}
