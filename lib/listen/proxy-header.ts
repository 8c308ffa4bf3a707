// Reading a connection's PROXY protocol header (http/proxy-protocol.ts) on a
// listener that asks for it, before the request or the TLS ClientHello. A
// malformed or missing header closes the connection without an answer: the
// peer is a balancer, not a client, and what it sent cannot be framed.

import type net from 'node:net';
import { parseProxyHeader, type ProxiedAddresses } from '../http/proxy-protocol.js';

/** What reading a connection's PROXY header gave: who the client is, and the bytes that followed the header. */
export type ProxyHeaderRead = { readonly addresses: ProxiedAddresses | null; readonly rest: Buffer } | { readonly error: string };

// A v2 header is at most 16 + 65535 bytes.
const MAX_HEADER = 16 + 0xffff;

/**
 * Reads the PROXY header from a freshly accepted `socket` (flowing), then
 * pauses it and calls `done` once: with the addresses and the bytes after
 * the header, or with why there is none (malformed, missing, too slow, or
 * the peer left). The caller destroys the socket on an error.
 */
export function readProxyHeader(socket: net.Socket, timeoutMs: number, done: (read: ProxyHeaderRead) => void): void {
  let buffered: Buffer = Buffer.alloc(0);
  let finished = false;
  const finish = (read: ProxyHeaderRead): void => {
    if (finished) return;
    finished = true;
    clearTimeout(timer);
    socket.removeListener('data', onData);
    socket.removeListener('end', onGone);
    socket.removeListener('close', onGone);
    socket.removeListener('error', onGone);
    socket.pause();
    done(read);
  };
  const onData = (chunk: Buffer): void => {
    buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
    const header = parseProxyHeader(buffered);
    if (header.kind === 'ok') finish({ addresses: header.addresses, rest: buffered.subarray(header.length) });
    else if (header.kind === 'invalid') finish({ error: header.reason });
    else if (buffered.length > MAX_HEADER) finish({ error: 'PROXY header too long' });
  };
  const onGone = (): void => finish({ error: 'closed before its PROXY header' });
  const timer = setTimeout(() => finish({ error: `no PROXY header within ${timeoutMs} ms` }), timeoutMs > 0 ? timeoutMs : 10_000);
  socket.on('data', onData);
  socket.on('end', onGone);
  socket.on('close', onGone);
  socket.on('error', onGone);
  socket.resume();
}
