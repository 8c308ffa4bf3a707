// The reconnect-storm load (scenario `storm`): N clients each hold one
// upgraded WebSocket tunnel through the peer to the echo upstream; when the
// harness kills the upstream every tunnel closes, and each client starts
// reconnecting the moment its own tunnel closes, retrying with a backoff
// (50 ms, doubling to 1 s, no jitter: the herd stays a herd) until an upgrade
// succeeds and one echo comes back byte-exact. Raw `net` sockets, frames built
// once, like ws-load.ts.
//
// usage: node storm-load.js PORT '{"clients":N,"deadlineSeconds":60}'
// stdout `ready {"open":N,"failedToOpen":F,"openSeconds":S}`: the tunnels are held;
// stdin  `kill EPOCH_MS`: the harness has just killed the upstream (Date.now() there);
// stdout one JSON line of results, once every held client is back or the
//        deadline (kill + deadlineSeconds) has passed; then it holds the
//        sockets until SIGTERM, so their teardown is not in the harness's CPU window.

import net from 'node:net';
import { buildFrame, upgradeRequest } from './ws-frames.js';

interface Options {
  clients?: number;
  deadlineSeconds?: number;
  /** One attempt (connect, 101, echo) that takes longer fails and is retried. */
  attemptTimeoutMs?: number;
  /** Attempts in flight while the tunnels are first opened (not during the storm: there every client goes at once). */
  openConcurrency?: number;
}

const [portText, json] = process.argv.slice(2);
const port = Number(portText);
const { clients = 1000, deadlineSeconds = 60, attemptTimeoutMs = 5000, openConcurrency = 100 }: Options = JSON.parse(json ?? '{}');

const FIRST_BACKOFF_MS = 50;
const MAX_BACKOFF_MS = 1000;
const UPGRADE = upgradeRequest('/');
const PROBE = buildFrame(16, true);
/** The upstream's echo of PROBE as the client must see it: unmasked, the same bytes. */
const ECHO = buildFrame(16, false);
const OPCODE_CLOSE = 0x8;
/** STORM_DEBUG=1: a failure's kind also shows the first bytes received (every such failure is then its own kind). */
const DEBUG = Boolean(process.env.STORM_DEBUG);

type Attempt = { ok: true; socket: net.Socket; handshakeMs: number; echoMs: number } | { ok: false; reason: string };

/** One try: connect, upgrade, one echo. Never rejects; a failure says why in a few words (they are counted by kind). */
function attempt(): Promise<Attempt> {
  return new Promise((resolve) => {
    const started = performance.now();
    let handshakeMs = -1;
    let buffered: Buffer = Buffer.alloc(0);
    let settled = false;
    const socket = net.connect({ port, host: '127.0.0.1', noDelay: true });
    const settle = (result: Attempt) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.removeListener('data', socketOnData);
      socket.removeListener('close', socketOnClose);
      if (!result.ok) socket.destroy();
      resolve(result);
    };
    const fail = (reason: string) => settle({ ok: false, reason });
    const timer = setTimeout(() => fail(handshakeMs < 0 ? 'no 101 in time' : 'no echo in time'), attemptTimeoutMs);
    let errorCode = ''; // ECONNREFUSED (nothing listening), ECONNRESET, ...
    const socketOnClose = () => fail(`${errorCode || 'closed'} before the ${handshakeMs < 0 ? '101' : 'echo'}${DEBUG ? ` (${buffered.length} B: ${JSON.stringify(buffered.subarray(0, 40).toString('latin1'))})` : ''}`);
    const socketOnData = (chunk: Buffer) => {
      buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
      if (handshakeMs < 0) {
        const end = buffered.indexOf('\r\n\r\n');
        if (end === -1) {
          if (buffered.length > 16384) fail('response head too long');
          return;
        }
        const status = buffered.subarray(0, 12).toString('latin1');
        if (!status.startsWith('HTTP/1.1 101')) {
          fail(`status ${status.slice(9, 12) || '?'}`);
          return;
        }
        handshakeMs = performance.now() - started;
        buffered = buffered.subarray(end + 4);
        socket.write(PROBE);
        if (buffered.length === 0) return;
      }
      // A close frame (e.g. the message-relaying proxy's 1011 when it cannot
      // reach the upstream after its 101) or any other byte is not the echo.
      if (buffered[0] !== ECHO[0]) {
        fail((buffered[0] & 0x0f) === OPCODE_CLOSE ? 'close frame instead of the echo' : 'echo mismatch');
        return;
      }
      if (buffered.length < ECHO.length) return;
      if (buffered.length > ECHO.length || !buffered.equals(ECHO)) {
        fail('echo mismatch');
        return;
      }
      settle({ ok: true, socket, handshakeMs, echoMs: performance.now() - started });
    };
    socket.on('error', (err: NodeJS.ErrnoException) => (errorCode ||= err.code ?? 'error')); // 'close' follows and says it
    socket.on('close', socketOnClose);
    socket.on('data', socketOnData);
    socket.once('connect', () => socket.write(UPGRADE));
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let killAt = Infinity; // epoch ms
let deadline = Infinity; // epoch ms
let firstCloseAt = Infinity;
let lastBackAt = 0;
let held = 0;
let closed = 0;
let back = 0;
let attempts = 0;
let failedAttempts = 0;
const failureKinds: Record<string, number> = {};
const handshakeMs: number[] = [];
const echoMs: number[] = [];
const sockets = new Set<net.Socket>();
let finished = false;
let announceDone: () => void = () => {};
const done = new Promise<void>((r) => (announceDone = r));

/** A held tunnel: it waits for its close (FIN, reset, or a WebSocket close frame), then reconnects. */
function hold(socket: net.Socket, onClosed: () => void): void {
  sockets.add(socket);
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    sockets.delete(socket);
    socket.destroy();
    onClosed();
  };
  // Idle tunnel: any data starts a frame; only a close frame is expected.
  socket.on('data', (chunk: Buffer) => {
    if ((chunk[0] & 0x0f) === OPCODE_CLOSE) close();
  });
  socket.on('close', close);
}

async function reconnect(): Promise<void> {
  closed++;
  firstCloseAt = Math.min(firstCloseAt, Date.now());
  let backoff = FIRST_BACKOFF_MS;
  while (!finished && Date.now() < deadline) {
    attempts++;
    const r = await attempt();
    if (finished) {
      if (r.ok) r.socket.destroy();
      return;
    }
    if (r.ok) {
      handshakeMs.push(r.handshakeMs);
      echoMs.push(r.echoMs);
      lastBackAt = Date.now();
      back++;
      sockets.add(r.socket);
      r.socket.on('close', () => sockets.delete(r.socket)); // held until the end; a second close is not followed
      if (back === held) announceDone();
      return;
    }
    failedAttempts++;
    failureKinds[r.reason] = (failureKinds[r.reason] ?? 0) + 1;
    await sleep(backoff);
    backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
  }
}

function percentile(values: number[], p: number): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

async function main(): Promise<void> {
  // Open phase: every client upgrades and round-trips one echo, `openConcurrency` at a time.
  const openStarted = performance.now();
  let next = 0;
  let failedToOpen = 0;
  let lastOpenError = '';
  const opener = async () => {
    while (next < clients) {
      next++;
      const r = await attempt();
      if (r.ok) {
        held++;
        hold(r.socket, () => void reconnect());
      } else {
        failedToOpen++;
        lastOpenError = r.reason;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(openConcurrency, clients) }, opener));
  process.stdout.write(`ready ${JSON.stringify({ open: held, failedToOpen, lastOpenError, openSeconds: (performance.now() - openStarted) / 1000 })}\n`);

  let input = '';
  process.stdin.setEncoding('latin1');
  process.stdin.on('data', (d: string) => {
    input += d;
    const m = /^kill (\d+)\n/m.exec(input);
    if (m && killAt === Infinity) {
      killAt = Number(m[1]);
      deadline = killAt + deadlineSeconds * 1000;
      setTimeout(announceDone, Math.max(0, deadline - Date.now())).unref();
    }
  });
  process.stdin.once('end', () => process.exit(1)); // the harness is gone
  if (held === 0) announceDone();
  await done;
  finished = true;
  const allBack = held > 0 && back === held;
  process.stdout.write(
    `${JSON.stringify({
      clients: held,
      back,
      // from the kill to the last client's echo; null when some did not come back in time
      secondsToAllBack: allBack ? (lastBackAt - killAt) / 1000 : null,
      secondsToLastBack: back > 0 ? (lastBackAt - killAt) / 1000 : null,
      secondsToFirstClose: Number.isFinite(firstCloseAt) ? (firstCloseAt - killAt) / 1000 : null,
      neverClosed: held - closed, // tunnels the peer kept open after their upstream died
      attempts,
      failedAttempts,
      failureKinds,
      handshakeP50Ms: percentile(handshakeMs, 50),
      handshakeP99Ms: percentile(handshakeMs, 99),
      echoP99Ms: percentile(echoMs, 99),
    })}\n`,
  );
  await new Promise((r) => process.once('SIGTERM', r));
  for (const s of sockets) s.destroy();
  process.exit(0);
}

main().catch((err) => {
  process.stderr.write(`storm-load: ${(err as Error).stack}\n`);
  process.exit(1);
});
