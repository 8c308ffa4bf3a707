// Helpers for the fault tests: descriptor counts from /proc, a scripted
// upstream that behaves like a real server between faults, raw tunnel
// clients by the thousand, and the wsgate CLI or an upstream as child processes.

import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readdirSync } from 'node:fs';
import net from 'node:net';
import type { Test } from 'tap';
import type { Gateway } from '../../lib/index.js';
import { headEnd, rawExchange, switchingProtocols, upgradeRequest, waitFor, type Teardown } from './net.js';
import { parseResponse } from './llhttp.js';
import { CLI } from './paths.js';
export { parseResponse };

/** Resolves `promise` or rejects after `ms`: every wait in the fault tests is bounded. */
export function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<T>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), ms)));
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * The gateway in front of a `scriptedUpstream` serves the next client normally:
 * one plain request and one tunnel round trip, both clean, nothing left open.
 */
export async function servesNormally(t: Test, port: number, gw: Gateway): Promise<void> {
  const res = await rawExchange(port, 'GET /ok HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n');
  t.match(res.text, /^HTTP\/1\.1 200 OK\r\n[^]*\r\n\r\nup \/ok$/, 'the next request is answered');
  const tunnel = await TunnelClient.open(port, '/ok-ws');
  await tunnel.roundTrip('next tunnel echoes');
  tunnel.socket.end();
  await within(tunnel.socket.gone, 5000, 'clean tunnel close');
  await waitFor(() => gw.stats().connections === 0, 5000, 'no connection left open');
}

/** Open descriptors of this process (`'self'`) or of a child, counted in /proc/PID/fd. */
export function openFds(pid: number | 'self' = 'self'): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/** Waits (bounded) until the descriptor count is back at `baseline` or below. */
export async function fdsBackTo(baseline: number, pid: number | 'self' = 'self', timeoutMs = 8000): Promise<number> {
  let now = openFds(pid);
  try {
    await waitFor(() => (now = openFds(pid)) <= baseline, timeoutMs, 'descriptors back to baseline');
  } catch {
    throw new Error(`descriptors of ${pid} not back to ${baseline}: ${now} open`);
  }
  return now;
}

export interface ScriptedUpstream {
  port: number;
  /** Request heads received, in order of arrival. */
  heads: string[];
  /** Upstream sockets still open. */
  open: Set<net.Socket>;
  /** Connections accepted so far. */
  accepted(): number;
  close(): Promise<void>;
}

/**
 * A raw upstream that reads each request head and hands it to `onRequest`
 * (return true when the script took the socket over). Otherwise it behaves like
 * a real server: a WebSocket handshake gets a valid 101 and then every byte is
 * echoed; any other request gets `200` with a body naming `tag` and the path,
 * then `Connection: close` (or kept alive with `keepAlive`: the gateway pools
 * the connection). A FIN is answered with a FIN, as servers do. By default no
 * pooled connection outlives its request, so each fault meets a fresh one and
 * descriptor counts compare exactly.
 */
export async function scriptedUpstream(
  t: Teardown,
  onRequest: (head: string, socket: net.Socket) => boolean = () => false,
  { tag = 'up', keepAlive = false }: { tag?: string; keepAlive?: boolean } = {},
): Promise<ScriptedUpstream> {
  const heads: string[] = [];
  const open = new Set<net.Socket>();
  let accepted = 0;
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    accepted++;
    open.add(socket);
    socket.on('close', () => open.delete(socket));
    socket.on('error', () => {});
    socket.on('end', () => socket.end());
    let buf = '';
    const onData = (chunk: Buffer) => {
      buf += chunk.toString('latin1');
      for (;;) {
        const end = headEnd(buf);
        if (end === -1) return;
        const head = buf.slice(0, end);
        buf = buf.slice(end);
        heads.push(head);
        if (onRequest(head, socket)) {
          socket.removeListener('data', onData);
          return;
        }
        if (/\r\nupgrade: websocket/i.test(head)) {
          socket.removeListener('data', onData);
          socket.write(switchingProtocols());
          if (buf.length > 0) socket.write(buf, 'latin1');
          socket.on('data', (c) => socket.write(c));
          return;
        }
        const path = head.split(' ')[1];
        const body = `${tag} ${path}`;
        if (keepAlive) {
          socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
        } else {
          socket.end(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`);
          return;
        }
      }
    };
    socket.on('data', onData);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const close = async () => {
    for (const s of open) s.destroy();
    await new Promise((r) => server.close(r));
  };
  t.teardown(close);
  return { port: (server.address() as net.AddressInfo).port, heads, open, accepted: () => accepted, close };
}

/** A raw client: records what it receives, answers the proxy's FIN with its own (as HTTP and WebSocket clients do). */
export interface RawPeer extends net.Socket {
  chunks: Buffer[];
  text(): string;
  /** Resolves once the socket is closed (never rejects). */
  gone: Promise<void>;
  /** The error the socket saw, if any (ECONNRESET: the peer reset). */
  error: NodeJS.ErrnoException | null;
}

export async function connectRaw(port: number, { endOnEnd = true } = {}): Promise<RawPeer> {
  const socket = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true }) as RawPeer;
  socket.chunks = [];
  socket.text = () => Buffer.concat(socket.chunks).toString('latin1');
  socket.gone = new Promise((r) => socket.once('close', () => r()));
  socket.error = null;
  socket.on('error', (err) => (socket.error = err));
  socket.on('data', (c) => socket.chunks.push(c));
  if (endOnEnd) socket.on('end', () => socket.end());
  await within(once(socket, 'connect'), OPEN_TIMEOUT_MS, `connect to ${port}`);
  return socket;
}

const OPEN_TIMEOUT_MS = 15_000;

/** A raw WebSocket tunnel through the proxy to an echoing upstream. */
export class TunnelClient {
  #head = '';
  #tail = '';
  #waiter: { text: string; resolve: () => void } | null = null;
  constructor(readonly socket: RawPeer) {}

  /** Writes the handshake and resolves on the 101 head. */
  static async open(port: number, path = '/ws/'): Promise<TunnelClient> {
    const client = new TunnelClient(await connectRaw(port));
    const { socket } = client;
    socket.removeAllListeners('data');
    let timer: NodeJS.Timeout | undefined;
    await new Promise<void>((resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`no 101 within ${OPEN_TIMEOUT_MS} ms: ${JSON.stringify(socket.text())}`)), OPEN_TIMEOUT_MS);
      socket.on('data', (chunk: Buffer) => {
        socket.chunks.push(chunk);
        if (client.#head === '') {
          const text = socket.text();
          const end = headEnd(text);
          if (end === -1) return;
          client.#head = text.slice(0, end);
          client.#tail = text.slice(end);
          if (!client.#head.startsWith('HTTP/1.1 101 ')) reject(new Error(`no tunnel: ${client.#head}`));
          else resolve();
        } else {
          client.#tail = (client.#tail + chunk.toString('latin1')).slice(-256);
        }
        if (client.#waiter !== null && client.#tail.endsWith(client.#waiter.text)) {
          const w = client.#waiter;
          client.#waiter = null;
          w.resolve();
        }
      });
      socket.once('close', () => reject(new Error(`closed before the 101: ${socket.text()}`)));
      socket.write(upgradeRequest(path));
    }).finally(() => clearTimeout(timer));
    return client;
  }

  get head(): string {
    return this.#head;
  }

  /** Sends `text` and resolves when the echo has come back (or rejects after `timeoutMs`). */
  roundTrip(text: string, timeoutMs = 10_000): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no echo of ${text}`)), timeoutMs);
      this.#waiter = {
        text,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      };
      this.socket.write(text);
    });
  }
}

/** Opens `n` tunnels, `batch` handshakes at a time. */
export async function openTunnels(port: number, n: number, path = '/ws/', batch = 100): Promise<TunnelClient[]> {
  const clients: TunnelClient[] = [];
  for (let i = 0; i < n; i += batch) {
    clients.push(...(await Promise.all(Array.from({ length: Math.min(batch, n - i) }, () => TunnelClient.open(port, path)))));
  }
  return clients;
}

/** Every tunnel echoes a payload of its own. Resolves with how many did. */
export async function echoAll(clients: TunnelClient[], label: string): Promise<number> {
  const results = await Promise.allSettled(clients.map((c, i) => c.roundTrip(`<${label}:${i}>`)));
  return results.filter((r) => r.status === 'fulfilled').length;
}

export interface Child {
  child: ChildProcess;
  pid: number;
  stdout(): string;
  stderr(): string;
  exit: Promise<number | null>;
}

function track(child: ChildProcess, t: Teardown): Child {
  let out = '';
  let err = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (err += d));
  const exit = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return { child, pid: child.pid!, stdout: () => out, stderr: () => err, exit };
}

async function waitForLine(c: Child, pattern: RegExp, what: string): Promise<RegExpMatchArray> {
  const deadline = Date.now() + 15_000;
  let m: RegExpMatchArray | null;
  while ((m = c.stdout().match(pattern)) === null) {
    if (c.child.exitCode !== null || Date.now() > deadline) throw new Error(`${what} did not start: ${c.stderr()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return m;
}

export interface CliOptions {
  /** Run under `ulimit -n` (descriptor-limit tests). */
  fdLimit?: number;
  /** Flags for node itself, before the script (`--require`, `--pending-deprecation`). */
  nodeFlags?: string[];
  /** Added to the environment, which is this process's minus NODE_OPTIONS (tap's own loaders ride there). */
  env?: NodeJS.ProcessEnv;
}

/** Spawns `node [nodeFlags] dist/lib/cli.js args`, tracked (killed at teardown), without waiting for it to listen. */
export function spawnCli(t: Teardown, args: string[], { fdLimit, nodeFlags = [], env = {} }: CliOptions = {}): Child {
  const { NODE_OPTIONS: _, ...inherited } = process.env;
  const options = { stdio: ['ignore', 'pipe', 'pipe'] as Array<'ignore' | 'pipe'>, env: { ...inherited, ...env } };
  const child =
    fdLimit === undefined
      ? spawn(process.execPath, [...nodeFlags, CLI, ...args], options)
      : // exec keeps the PID: the limit and the signals apply to node itself
        spawn('/bin/sh', ['-c', `ulimit -n ${fdLimit} && exec "$0" "$@"`, process.execPath, ...nodeFlags, CLI, ...args], options);
  return track(child, t);
}

/**
 * Starts the CLI (spawnCli) and resolves once it printed its `listening on`
 * lines (one per listener, printed together), with the first port and all.
 */
export async function startCli(t: Teardown, args: string[], options: CliOptions = {}): Promise<Child & { port: number; ports: number[] }> {
  const c = spawnCli(t, args, options);
  const m = await waitForLine(c, /listening on https?:\/\/[^:]+:(\d+)/, 'wsgate');
  await new Promise((r) => setTimeout(r, 50)); // the other listeners' lines follow at once
  const ports = [...c.stdout().matchAll(/listening on https?:\/\/[^:]+:(\d+)/g)].map((line) => Number(line[1]));
  return { ...c, port: Number(m[1]), ports };
}

// A WebSocket echo upstream in its own process (raw net, no dependencies), so
// that it can be killed with SIGKILL: the kernel then closes its sockets.
const ECHO_UPSTREAM = `
const net = require('node:net');
const { createHash } = require('node:crypto');
const server = net.createServer((socket) => {
  socket.on('error', () => {});
  let buf = '';
  const onData = (chunk) => {
    buf += chunk.toString('latin1');
    const end = buf.indexOf('\\r\\n\\r\\n');
    if (end === -1) return;
    socket.removeListener('data', onData);
    const key = /\\r\\nsec-websocket-key: *([^\\r]+)/i.exec(buf)[1];
    const accept = createHash('sha1').update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
    socket.write('HTTP/1.1 101 Switching Protocols\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\nSec-WebSocket-Accept: ' + accept + '\\r\\n\\r\\n');
    if (buf.length > end + 4) socket.write(buf.slice(end + 4), 'latin1');
    socket.pipe(socket);
  };
  socket.on('data', onData);
});
server.listen(0, '127.0.0.1', () => console.log('port ' + server.address().port));
`;

export async function startEchoUpstreamProcess(t: Teardown): Promise<Child & { port: number }> {
  const child = spawn(process.execPath, ['-e', ECHO_UPSTREAM], { stdio: ['ignore', 'pipe', 'pipe'] });
  const c = track(child, t);
  const m = await waitForLine(c, /port (\d+)/, 'echo upstream');
  return { ...c, port: Number(m[1]) };
}

/** Resolves once `socket` is closed, whatever the reason (unlike `once`, an 'error' does not reject). */
export function closed(socket: net.Socket): Promise<void> {
  if (socket.destroyed) return Promise.resolve();
  return new Promise((r) => socket.once('close', () => r()));
}


/** Connects, sends `request`, resolves with everything received once a complete response arrived or the connection closed. */
export async function requestInFlight(port: number, request: string): Promise<{ client: RawPeer; response: Promise<Buffer> }> {
  const client = await connectRaw(port);
  const response = new Promise<Buffer>((resolve) => {
    const check = () => {
      const bytes = Buffer.concat(client.chunks);
      if (parseResponse(bytes).complete) resolve(bytes);
    };
    client.on('data', check);
    client.once('close', () => resolve(Buffer.concat(client.chunks)));
  });
  client.write(request);
  return { client, response };
}

/** Tries a new TCP connection: resolves with the error code, or 'connected'. */
export function tryConnect(port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
    s.once('connect', () => {
      s.destroy();
      resolve('connected');
    });
  });
}
