// Real-socket helpers for the tests: a gateway on port 0, raw upstream stubs
// that record the bytes they get, raw clients, and `ws` peers.

import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { once } from 'node:events';
import { WebSocketServer, type ServerOptions } from 'ws';
import { createGateway, type Gateway, type GatewayConfig, type ListenAddress } from '../../lib/index.js';
import { completeResponses } from './llhttp.js';
export { completeResponses };

export interface Teardown {
  teardown(fn: () => unknown): void;
}

export async function startGateway(t: Teardown, config: GatewayConfig): Promise<{ gw: Gateway; port: number; address: ListenAddress }> {
  const gw = createGateway(config);
  const address = await gw.listen(0, '127.0.0.1');
  t.teardown(() => gw.close({ drainMs: 0 }));
  return { gw, port: address.port, address };
}

export interface RawUpstream {
  port: number;
  /** Every byte each accepted connection sent, per connection. */
  received: Buffer[][];
  sockets: net.Socket[];
  /** Resolves with the n-th accepted socket (0-based). */
  connection(n?: number): Promise<net.Socket>;
  /** All bytes received on connection n, as latin1. */
  text(n?: number): string;
  close(): Promise<void>;
}

/** A raw TCP upstream: `onConnection` scripts the answer; every received byte is recorded. */
export async function rawUpstream(t: Teardown, onConnection: (socket: net.Socket, index: number) => void = () => {}): Promise<RawUpstream> {
  const received: Buffer[][] = [];
  const sockets: net.Socket[] = [];
  const waiters: Array<{ n: number; resolve: (s: net.Socket) => void }> = [];
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    const index = sockets.length;
    sockets.push(socket);
    received.push([]);
    socket.on('error', () => {});
    socket.on('data', (chunk) => received[index].push(chunk));
    for (const w of waiters.filter((w) => w.n === index)) w.resolve(socket);
    onConnection(socket, index);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const close = async () => {
    for (const s of sockets) s.destroy();
    await new Promise((r) => server.close(r));
  };
  t.teardown(close);
  return {
    port: (server.address() as net.AddressInfo).port,
    received,
    sockets,
    connection(n = 0) {
      if (sockets[n]) return Promise.resolve(sockets[n]);
      return new Promise((resolve) => waiters.push({ n, resolve }));
    },
    text(n = 0) {
      return Buffer.concat(received[n] ?? []).toString('latin1');
    },
    close,
  };
}


/**
 * Opens a raw client, writes `request` (string or buffers, one write each), and
 * collects bytes until the proxy closes or one complete final response arrived
 * (a keep-alive connection then stays open: `closed` is false).
 */
export async function rawExchange(
  port: number,
  request: string | Buffer | Array<string | Buffer>,
  options: { timeoutMs?: number; endAfterWrite?: boolean; untilClose?: boolean } = {},
): Promise<{ text: string; closed: boolean }> {
  const socket = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
  socket.on('error', () => {});
  await once(socket, 'connect');
  const parts = Array.isArray(request) ? request : [request];
  for (const part of parts) socket.write(part);
  if (options.endAfterWrite) socket.end();
  const chunks: Buffer[] = [];
  socket.on('data', (c) => chunks.push(c));
  // Like any HTTP client: once the proxy has closed its side, close ours.
  socket.on('end', () => socket.end());
  const isHead = /^HEAD /.test(typeof parts[0] === 'string' ? parts[0] : parts[0].toString('latin1'));
  const closed = await new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), options.timeoutMs ?? 5000);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve(true);
    });
    socket.on('data', () => {
      if (options.untilClose || completeResponses(Buffer.concat(chunks), isHead) === 0) return;
      // a complete response: give a closing proxy a moment to say so
      setTimeout(() => {
        clearTimeout(timer);
        resolve(socket.destroyed || socket.readableEnded);
      }, 20);
    });
  });
  socket.destroy();
  return { text: Buffer.concat(chunks).toString('latin1'), closed };
}

/** Connects a raw client and resolves once connected. */
export async function rawClient(port: number): Promise<net.Socket & { chunks: Buffer[]; text(): string }> {
  const socket = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true }) as net.Socket & { chunks: Buffer[]; text(): string };
  socket.chunks = [];
  socket.text = () => Buffer.concat(socket.chunks).toString('latin1');
  socket.on('error', () => {});
  socket.on('data', (c) => socket.chunks.push(c));
  await once(socket, 'connect');
  return socket;
}

/** Waits until `predicate()` holds, polling; rejects after `timeoutMs`. */
export async function waitFor(predicate: () => boolean, timeoutMs = 5000, what = 'condition'): Promise<void> {
  const start = Date.now();
  while (!predicate()) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

export async function wsServer(t: Teardown, options: ServerOptions = {}): Promise<{ wss: WebSocketServer; port: number; server: http.Server }> {
  const server = http.createServer();
  const wss = new WebSocketServer({ server, ...options });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(async () => {
    for (const c of wss.clients) c.terminate();
    wss.close();
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });
  return { wss, server, port: (server.address() as net.AddressInfo).port };
}

/** A `ws` echo server: every message is sent back as is. */
export async function wsEcho(t: Teardown, options: ServerOptions = {}) {
  const peer = await wsServer(t, options);
  peer.wss.on('connection', (socket) => socket.on('message', (data, isBinary) => socket.send(data, { binary: isBinary })));
  return peer;
}

export const WS_KEY = 'dGhlIHNhbXBsZSBub25jZQ==';
export const WS_ACCEPT = 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=';

export function upgradeRequest(path = '/ws/', extra = '', host = 'example.test'): string {
  return (
    `GET ${path} HTTP/1.1\r\nHost: ${host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
    `Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${WS_KEY}\r\n${extra}\r\n`
  );
}

export function switchingProtocols(accept = WS_ACCEPT, extra = ''): string {
  return `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n${extra}\r\n`;
}

export function sha256(data: Buffer | Buffer[]): string {
  const h = createHash('sha256');
  for (const d of Array.isArray(data) ? data : [data]) h.update(d);
  return h.digest('hex');
}

export { randomBytes };

/** Index of the end of the first head in `text` (after CRLFCRLF), or -1. */
export function headEnd(text: string): number {
  const i = text.indexOf('\r\n\r\n');
  return i === -1 ? -1 : i + 4;
}

/**
 * An upstream stub that answers `response` to every complete request on each
 * connection (keep-alive: the gateway pools upstream connections). Requests are
 * framed by Content-Length or a chunked body's last chunk; an upgrade request
 * is answered once and the connection then left to the test.
 */
export async function answeringUpstream(t: Teardown, response: string | ((head: string, socket: net.Socket) => void)) {
  return rawUpstream(t, (socket) => {
    let buf = '';
    let upgraded = false;
    socket.on('data', (chunk) => {
      if (upgraded) return;
      buf += chunk.toString('latin1');
      for (;;) {
        const end = headEnd(buf);
        if (end === -1) return;
        const head = buf.slice(0, end);
        let total = end;
        const length = /\r\ncontent-length: *(\d+)/i.exec(head);
        if (/\r\ntransfer-encoding:[^\r]*chunked/i.test(head)) {
          const last = buf.indexOf('\r\n0\r\n\r\n', end - 2);
          if (last === -1) return;
          total = last + 7;
        } else if (length) {
          total = end + Number(length[1]);
          if (buf.length < total) return;
        }
        buf = buf.slice(total);
        if (/\r\nupgrade:/i.test(head)) upgraded = true;
        if (typeof response === 'string') socket.write(response);
        else response(head, socket);
        if (upgraded) return;
      }
    });
  });
}

/**
 * Writes 64 KiB chunks to `socket` until no 'drain' comes for `quietMs`: every
 * buffer on the path is full and the far side has stopped reading. Bounded by
 * `limit` bytes. Returns how much was written and whether it blocked.
 */
export async function writeUntilBlocked(socket: net.Socket, limit: number, quietMs: number, fill = 1): Promise<{ written: number; blocked: boolean }> {
  const chunk = Buffer.alloc(64 * 1024, fill);
  let written = 0;
  while (written < limit) {
    written += chunk.length;
    if (socket.write(chunk)) continue;
    const drained = await Promise.race([once(socket, 'drain').then(() => true), new Promise((r) => setTimeout(() => r(false), quietMs))]);
    if (!drained) return { written, blocked: true };
  }
  return { written, blocked: false };
}

/** A `node:http` upstream on port 0, closed at teardown. */
export async function httpUpstream(t: Teardown, handler: http.RequestListener): Promise<number> {
  const server = http.createServer(handler);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => {
    server.closeAllConnections();
    return new Promise((r) => server.close(r));
  });
  return (server.address() as net.AddressInfo).port;
}
