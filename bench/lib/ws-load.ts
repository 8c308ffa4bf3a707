// The WebSocket load generator: raw `net` sockets, frames built once and
// pre-masked, no `ws` on the hot path, so the generator is never the
// bottleneck. Modes (argv: MODE PORT JSON-OPTIONS):
//   closed     C connections, W messages in flight each, S-byte messages
//   open       C connections, a fixed total rate R msg/s; latency measured from the
//              intended send time, so a stall cannot hide (no coordinated omission)
//   handshake  C concurrent loops of connect, upgrade, one echo, close
//   idle       N connections upgraded, then held silent until SIGTERM
// With `tls` every connection is a TLS one (a full handshake each: no session
// is resumed, so the handshake mode measures the whole TLS cost).
// It prints `go` when the measured window starts and one JSON line of results at its end.

import net from 'node:net';
import tls from 'node:tls';
import { buildFrame, echoFrameLength, upgradeRequest } from './ws-frames.js';

interface Options {
  connections?: number;
  inFlight?: number;
  size?: number;
  seconds?: number;
  warmupSeconds?: number;
  rate?: number;
  tls?: boolean;
  /** handshake mode: handshakes done before the window opens (besides warmupSeconds). */
  warmupHandshakes?: number;
}

const [mode, portText, json] = process.argv.slice(2);
const port = Number(portText);
const options: Options = JSON.parse(json ?? '{}');
const UPGRADE = upgradeRequest('/');

function connectUpgraded(): Promise<{ socket: net.Socket; leftover: Buffer }> {
  return new Promise((resolve, reject) => {
    const socket = options.tls
      ? tls.connect({ port, host: '127.0.0.1', rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] }).setNoDelay(true)
      : net.connect({ port, host: '127.0.0.1', noDelay: true });
    let head: Buffer = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      head = head.length === 0 ? chunk : Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end === -1) return;
      socket.removeListener('data', onData);
      socket.removeListener('error', reject);
      socket.removeAllListeners('close');
      socket.setTimeout(0);
      if (!head.subarray(0, 12).toString('latin1').startsWith('HTTP/1.1 101')) {
        socket.destroy();
        reject(new Error(`no 101: ${head.subarray(0, 60).toString('latin1')}`));
        return;
      }
      resolve({ socket, leftover: head.subarray(end + 4) });
    };
    socket.on('data', onData);
    socket.once('error', reject);
    // a peer that closes or stalls before its 101 must not hang the generator
    socket.once('close', () => reject(new Error('closed before the 101')));
    socket.setTimeout(10_000, () => {
      socket.destroy();
      reject(new Error('no 101 within 10 s'));
    });
    socket.once(options.tls ? 'secureConnect' : 'connect', () => socket.write(UPGRADE));
  });
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

class Latencies {
  #values = new Float64Array(1 << 20);
  #n = 0;
  add(ms: number): void {
    if (this.#n === this.#values.length) {
      const bigger = new Float64Array(this.#values.length * 2);
      bigger.set(this.#values);
      this.#values = bigger;
    }
    this.#values[this.#n++] = ms;
  }
  summary(): { p50Ms: number; p99Ms: number; p999Ms: number } {
    const sorted = this.#values.subarray(0, this.#n).sort();
    return { p50Ms: percentile(sorted, 50), p99Ms: percentile(sorted, 99), p999Ms: percentile(sorted, 99.9) };
  }
}

/** Waits out the warm-up, announces `go`, measures for `seconds`; returns the window's length in seconds. */
/**
 * Warm-up, then the measured window. `warmedUp` (optional) must also say yes
 * before the window opens, checked every 100 ms for at most `WARMUP_MAX_SECONDS`:
 * the handshake modes warm up by a count of handshakes, since V8 goes on
 * compiling a proxy's connection path for its first ~20,000 (a TLS handshake
 * takes 5x as long as a plain one, so one second of warm-up is 700 of them).
 */
const WARMUP_MAX_SECONDS = 90;
async function measuredWindow(warmupSeconds: number, seconds: number, setMeasuring: (on: boolean) => void, warmedUp: () => boolean = () => true): Promise<number> {
  await new Promise((r) => setTimeout(r, warmupSeconds * 1000));
  const deadline = performance.now() + WARMUP_MAX_SECONDS * 1000;
  while (!warmedUp() && performance.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  setMeasuring(true);
  process.stdout.write('go\n');
  const started = performance.now();
  await new Promise((r) => setTimeout(r, seconds * 1000));
  setMeasuring(false);
  return (performance.now() - started) / 1000;
}

async function closedLoop(): Promise<void> {
  const { connections = 100, inFlight = 1, size = 64, seconds = 5, warmupSeconds = 1 } = options;
  const frame = buildFrame(size, true);
  const echoLength = echoFrameLength(size);
  let measuring = false;
  let messages = 0;
  const latencies = new Latencies();
  const sockets: net.Socket[] = [];
  for (let i = 0; i < connections; i += 50) {
    const batch = await Promise.all(Array.from({ length: Math.min(50, connections - i) }, connectUpgraded));
    for (const { socket } of batch) sockets.push(socket);
  }
  for (const socket of sockets) {
    const sent: number[] = [];
    let pending = 0;
    socket.on('data', (chunk: Buffer) => {
      pending += chunk.length;
      let burst = 0;
      while (pending >= echoLength) {
        pending -= echoLength;
        const t0 = sent.shift()!;
        if (measuring) {
          messages++;
          latencies.add(performance.now() - t0);
        }
        burst++;
      }
      if (burst > 0) {
        socket.cork();
        for (let i = 0; i < burst; i++) {
          sent.push(performance.now());
          socket.write(frame);
        }
        socket.uncork();
      }
    });
    socket.on('error', () => {});
    socket.cork();
    for (let i = 0; i < inFlight; i++) {
      sent.push(performance.now());
      socket.write(frame);
    }
    socket.uncork();
  }
  const elapsed = await measuredWindow(warmupSeconds, seconds, (on) => (measuring = on));
  process.stdout.write(`${JSON.stringify({ messages, seconds: elapsed, msgsPerSec: messages / elapsed, mbPerSec: (messages * size * 2) / 1e6 / elapsed, ...latencies.summary() })}\n`);
  for (const s of sockets) s.destroy();
}

async function openLoop(): Promise<void> {
  const { connections = 50, rate = 10000, size = 64, seconds = 5, warmupSeconds = 1 } = options;
  const frame = buildFrame(size, true);
  const echoLength = echoFrameLength(size);
  const sockets: Array<{ socket: net.Socket; intended: number[] }> = [];
  for (let i = 0; i < connections; i += 50) {
    const batch = await Promise.all(Array.from({ length: Math.min(50, connections - i) }, connectUpgraded));
    for (const { socket } of batch) sockets.push({ socket, intended: [] });
  }
  let measuringFrom = Infinity;
  let measuringTo = Infinity;
  let messages = 0;
  const latencies = new Latencies();
  for (const entry of sockets) {
    let pending = 0;
    entry.socket.on('data', (chunk: Buffer) => {
      pending += chunk.length;
      const now = performance.now();
      while (pending >= echoLength) {
        pending -= echoLength;
        const intended = entry.intended.shift()!;
        if (intended >= measuringFrom && intended < measuringTo) {
          messages++;
          latencies.add(now - intended);
        }
      }
    });
    entry.socket.on('error', () => {});
  }
  // Schedule by intended time: every tick sends all messages due by now.
  const interval = 1000 / rate;
  const start = performance.now();
  measuringFrom = start + warmupSeconds * 1000;
  measuringTo = measuringFrom + seconds * 1000;
  let next = start;
  let index = 0;
  let announced = false;
  await new Promise<void>((resolve) => {
    const tick = () => {
      const now = performance.now();
      if (!announced && now >= measuringFrom) {
        announced = true;
        process.stdout.write('go\n');
      }
      while (next <= now && next < measuringTo) {
        const entry = sockets[index++ % sockets.length];
        entry.intended.push(next);
        entry.socket.write(frame);
        next += interval;
      }
      if (next >= measuringTo) resolve();
      else setImmediate(tick);
    };
    tick();
  });
  await new Promise((r) => setTimeout(r, 500)); // let the last echoes arrive
  process.stdout.write(`${JSON.stringify({ messages, offered: rate * seconds, seconds, msgsPerSec: messages / seconds, ...latencies.summary() })}\n`);
  for (const s of sockets) s.socket.destroy();
}

async function handshakes(): Promise<void> {
  const { connections = 20, seconds = 5, warmupSeconds = 1, size = 16, warmupHandshakes = 0 } = options;
  const frame = buildFrame(size, true);
  const echoLength = echoFrameLength(size);
  let measuring = false;
  let stop = false;
  let count = 0;
  let warm = 0;
  let failures = 0;
  const one = async () => {
    const { socket, leftover } = await connectUpgraded();
    await new Promise<void>((resolve) => {
      let got = leftover.length;
      const check = () => {
        if (got >= echoLength) {
          socket.removeListener('data', onData);
          resolve();
        }
      };
      const onData = (c: Buffer) => {
        got += c.length;
        check();
      };
      socket.on('data', onData);
      socket.write(frame);
      check();
    });
    socket.end(Buffer.from([0x88, 0x80, 0, 0, 0, 0])); // masked close frame, then FIN
    socket.destroy();
  };
  const loop = async () => {
    while (!stop) {
      try {
        await one();
        if (measuring) count++;
        else warm++;
      } catch {
        failures++;
        await new Promise((r) => setTimeout(r, 10));
      }
    }
  };
  const loops = Array.from({ length: connections }, loop);
  const elapsed = await measuredWindow(warmupSeconds, seconds, (on) => (measuring = on), () => warm >= warmupHandshakes);
  stop = true;
  await Promise.all(loops);
  process.stdout.write(`${JSON.stringify({ handshakes: count, seconds: elapsed, handshakesPerSec: count / elapsed, failures, warmupHandshakes: warm })}\n`);
}

async function idle(): Promise<void> {
  const { connections = 1000 } = options;
  const sockets: net.Socket[] = [];
  let failures = 0;
  let lastError = '';
  for (let i = 0; i < connections; i += 100) {
    const batch = await Promise.allSettled(Array.from({ length: Math.min(100, connections - i) }, connectUpgraded));
    for (const r of batch) {
      if (r.status === 'rejected') {
        failures++;
        lastError = String((r.reason as Error).message);
        continue;
      }
      r.value.socket.on('error', () => {});
      sockets.push(r.value.socket);
    }
  }
  process.stdout.write('go\n');
  process.stdout.write(`${JSON.stringify({ open: sockets.length, failures, lastError })}\n`);
  await new Promise((r) => process.once('SIGTERM', r));
  for (const s of sockets) s.destroy();
  process.exit(0);
}

const run = { closed: closedLoop, open: openLoop, handshake: handshakes, idle }[mode];
if (!run) {
  process.stderr.write(`unknown mode ${mode}\n`);
  process.exit(2);
}
run().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`ws-load: ${(err as Error).stack}\n`);
    process.exit(1);
  },
);
