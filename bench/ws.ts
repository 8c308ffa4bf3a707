// The WebSocket scenarios: the raw echo upstream and the load generator run
// pinned to CPU 1, the proxy under test to CPU 0, and the proxy's own CPU time
// is read from /proc over exactly the generator's measured window.

import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { cpuSeconds, processTree, rssKiB } from './lib/proc.js';
import { freePort, hasTaskset, startPeer, stopChild, waitForPort, type PeerName, type PeerOptions, type RunningPeer } from './lib/peers.js';

const IDLE_WINDOW_MS = 3000;
const DIST_BENCH = fileURLToPath(new URL('./lib/', import.meta.url));

export interface WsUpstream {
  port: number;
  stop(): Promise<void>;
  /** SIGKILL, as a crash: calls `onSignal` right after the signal is sent (the storm's clock starts there); resolves when the process is gone. */
  kill(onSignal?: () => void): Promise<void>;
}

function pinnedNode(cpu: number, script: string, args: string[], stdin: 'ignore' | 'pipe' = 'ignore'): ChildProcess {
  const argv = [process.execPath, join(DIST_BENCH, script), ...args];
  const [cmd, ...rest] = hasTaskset ? ['taskset', '-c', String(cpu), ...argv] : argv;
  return spawn(cmd, rest, { stdio: [stdin, 'pipe', 'inherit'] });
}

/** The raw echo upstream on CPU 1, on a free port or on `port` (a restart in place). */
export async function startWsEcho(port?: number): Promise<WsUpstream> {
  port ??= await freePort();
  const child = pinnedNode(1, 'ws-echo-server.js', [String(port)]);
  await waitForPort(port);
  return {
    port,
    stop: () => stopChild(child),
    async kill(onSignal) {
      const exited = child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise((r) => child.once('exit', r));
      child.kill('SIGKILL');
      onSignal?.();
      await exited;
    },
  };
}

/** Runs the generator; calls `onGo` when its measured window opens; resolves with its JSON. */
/** Calls `onLine` with each line of a child's stdout, as it comes. */
function eachLine(child: ChildProcess, onLine: (line: string) => void): void {
  let buffer = '';
  child.stdout!.on('data', (d) => {
    buffer += d;
    let nl: number;
    while ((nl = buffer.indexOf('\n')) !== -1) {
      const line = buffer.slice(0, nl);
      buffer = buffer.slice(nl + 1);
      onLine(line);
    }
  });
}

function runLoad(mode: string, port: number, options: object, onGo: () => void): { child: ChildProcess; result: Promise<Record<string, number>> } {
  const child = pinnedNode(1, 'ws-load.js', [mode, String(port), JSON.stringify(options)]);
  const result = new Promise<Record<string, number>>((resolve, reject) => {
    eachLine(child, (line) => {
      if (line === 'go') onGo();
      else if (line.startsWith('{')) resolve(JSON.parse(line));
    });
    // 'close', not 'exit': stdout may still hold the result line when the process exits
    child.once('close', (code) => reject(new Error(`ws-load ${mode} exited ${code} without a result`)));
  });
  return { child, result };
}

export interface ClosedLoopSpec {
  connections: number;
  inFlight: number;
  size: number;
  seconds: number;
  warmupSeconds: number;
}

async function withPeer<T>(peer: PeerName, options: Omit<PeerOptions, 'upstreamPort'>, upstream: WsUpstream, fn: (p: RunningPeer) => Promise<T>): Promise<T> {
  const running = await startPeer(peer, { ...options, upstreamPort: upstream.port });
  try {
    return await fn(running);
  } finally {
    await running.stop();
  }
}

/** One closed-loop run against a running peer: the generator's figures and the proxy's CPU seconds over its measured window. */
async function closedLoop(running: RunningPeer, pids: number[], spec: ClosedLoopSpec): Promise<{ r: Record<string, number>; cpu: number; gb: number }> {
  let before = 0;
  const load = runLoad('closed', running.port, { ...spec, tls: running.tls }, () => (before = cpuSeconds(pids)));
  const r = await load.result;
  const cpu = cpuSeconds(pids) - before;
  return { r, cpu, gb: (r.messages * spec.size * 2) / 1e9 }; // GB: payload through the proxy, both directions
}

/** Closed-loop echo: CPU µs per message, CPU s per GB, msgs/s, MB/s, latency. */
export async function measureClosed(peer: PeerName, options: Omit<PeerOptions, 'upstreamPort'>, upstream: WsUpstream, spec: ClosedLoopSpec) {
  return withPeer(peer, options, upstream, async (running) => {
    const pids = running.pid === null ? [] : processTree(running.pid);
    const { r, cpu, gb } = await closedLoop(running, pids, spec);
    return {
      msgsPerSec: r.msgsPerSec,
      mbPerSec: r.mbPerSec,
      cpuUsPerMsg: running.pid === null ? null : (cpu * 1e6) / r.messages,
      cpuSPerGB: running.pid === null ? null : cpu / gb,
      p50Ms: r.p50Ms,
      p99Ms: r.p99Ms,
      p999Ms: r.p999Ms,
    };
  });
}

export async function measureHandshake(peer: PeerName, options: Omit<PeerOptions, 'upstreamPort'>, upstream: WsUpstream, seconds: number, warmupSeconds: number, warmupHandshakes = 0) {
  return withPeer(peer, options, upstream, async (running) => {
    const pids = running.pid === null ? [] : processTree(running.pid);
    let before = 0;
    const load = runLoad('handshake', running.port, { connections: 20, seconds, warmupSeconds, warmupHandshakes, tls: options.tls !== undefined }, () => (before = cpuSeconds(pids)));
    const r = await load.result;
    const cpu = cpuSeconds(pids) - before;
    return {
      handshakesPerSec: r.handshakesPerSec,
      cpuUsPerHandshake: running.pid === null ? null : (cpu * 1e6) / r.handshakes,
      failures: r.failures,
      warmupHandshakes: r.warmupHandshakes,
    };
  });
}

/** Open loop at a fixed rate: latency percentiles from the intended send times. */
export async function measureLatency(peer: PeerName, options: Omit<PeerOptions, 'upstreamPort'>, upstream: WsUpstream, rate: number, seconds: number, warmupSeconds: number) {
  return withPeer(peer, options, upstream, async (running) => {
    const load = runLoad('open', running.port, { connections: 50, rate, size: 64, seconds, warmupSeconds }, () => {});
    const r = await load.result;
    return { msgsPerSec: r.msgsPerSec, p50Ms: r.p50Ms, p99Ms: r.p99Ms, p999Ms: r.p999Ms };
  });
}

/** Idle tunnels on a fresh process: RSS KB per tunnel, and CPU while idle. */
export async function measureIdle(peer: PeerName, options: Omit<PeerOptions, 'upstreamPort'>, upstream: WsUpstream, tunnels: number) {
  return withPeer(peer, { ...options, maxConnections: tunnels }, upstream, async (running) => {
    if (running.pid === null) return { kbPerTunnel: null, idleCpuPctPer1k: null, open: 0, failed: 0 };
    const pids = processTree(running.pid);
    await new Promise((r) => setTimeout(r, 300));
    const base = rssKiB(pids);
    let opened: () => void = () => {};
    const ready = new Promise<void>((r) => (opened = r));
    const load = runLoad('idle', running.port, { connections: tunnels }, () => opened());
    const r = await Promise.race([load.result, ready.then(() => load.result)]);
    await new Promise((res) => setTimeout(res, 1000)); // let allocations settle
    const after = rssKiB(pids);
    const cpu0 = cpuSeconds(pids);
    await new Promise((res) => setTimeout(res, IDLE_WINDOW_MS));
    const idleCpu = cpuSeconds(pids) - cpu0;
    await stopChild(load.child);
    return {
      kbPerTunnel: (after - base) / r.open,
      idleCpuPctPer1k: ((idleCpu / (IDLE_WINDOW_MS / 1000)) * 100 * 1000) / r.open,
      open: r.open,
      failed: r.failures,
    };
  });
}

/**
 * The same process before and after a heavy run: bulk CPU per GB on the fresh
 * process, then `tunnels` idle tunnels opened and closed again, then the same
 * bulk load once more; and the RSS the process kept after those tunnels closed.
 * (A Node process that held 9,000 connections keeps much of that memory, and
 * was seen to spend more CPU per GB afterwards.)
 */
export async function measureAfterIdle(peer: PeerName, options: Omit<PeerOptions, 'upstreamPort'>, upstream: WsUpstream, tunnels: number, spec: ClosedLoopSpec) {
  return withPeer(peer, { ...options, maxConnections: tunnels }, upstream, async (running) => {
    if (running.pid === null) return { cpuSPerGBAfter: null, cpuSPerGB: null, afterOverFresh: null, rssKeptMiB: null, open: 0 };
    const pids = processTree(running.pid);
    const bulk = async () => {
      const { cpu, gb } = await closedLoop(running, pids, spec);
      return cpu / gb;
    };
    const fresh = await bulk();
    const rssBefore = rssKiB(pids);
    const load = runLoad('idle', running.port, { connections: tunnels }, () => {});
    const r = await load.result; // printed once every tunnel is open (or failed)
    await new Promise((res) => setTimeout(res, 1000));
    await stopChild(load.child); // the tunnels close
    await new Promise((res) => setTimeout(res, 2000));
    const rssKept = rssKiB(pids) - rssBefore;
    const after = await bulk();
    return { cpuSPerGBAfter: after, cpuSPerGB: fresh, afterOverFresh: after / fresh, rssKeptMiB: rssKept / 1024, open: r.open };
  });
}

export interface StormResult {
  figures: {
    secondsToAllBack: number | null;
    back: number;
    clients: number;
    handshakeP50Ms: number | null;
    handshakeP99Ms: number | null;
    echoP99Ms: number | null;
    failedAttempts: number;
    attempts: number;
    cpuS: number | null;
    secondsToLastBack: number | null;
    secondsToFirstClose: number | null;
    neverClosed: number;
    failedToOpen: number;
    openSeconds: number;
    restartSeconds: number;
  };
  failureKinds: Record<string, number>;
  lastOpenError: string;
}

/** Reads a child's stdout line by line; `next(test)` resolves with the first line (from now on) that passes. */
function lineWaiter(child: ChildProcess): (test: (line: string) => boolean, timeoutMs: number, what: string) => Promise<string> {
  const waiting: Array<{ test: (line: string) => boolean; resolve: (line: string) => void }> = [];
  const gone: Array<(err: Error) => void> = [];
  eachLine(child, (line) => {
    const i = waiting.findIndex((w) => w.test(line));
    if (i !== -1) waiting.splice(i, 1)[0].resolve(line);
  });
  child.once('close', (code) => {
    for (const reject of gone) reject(new Error(`storm-load exited ${code}`));
  });
  return (test, timeoutMs, what) =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`storm-load: no ${what} within ${timeoutMs / 1000} s`)), timeoutMs);
      waiting.push({ test, resolve: (line) => (clearTimeout(timer), resolve(line)) });
      gone.push((err) => (clearTimeout(timer), reject(err)));
    });
}

/**
 * Reconnect storm: `clients` tunnels held through the peer; the echo upstream
 * is killed (SIGKILL) and started again on the same port at once, every
 * tunnel closes, and every client reconnects (storm-load.ts). Figures: seconds
 * from the kill until all are back (null when some were not back within
 * `deadlineSeconds`), the handshake percentiles of the attempts that
 * succeeded, the failed attempts, and the peer's CPU seconds from the kill
 * until the last client was back (or the deadline).
 */
export async function measureStorm(peer: PeerName, options: Omit<PeerOptions, 'upstreamPort'>, clients: number, deadlineSeconds: number): Promise<StormResult> {
  let upstream = await startWsEcho();
  try {
    return await withPeer(peer, { ...options, maxConnections: clients }, upstream, async (running) => {
      const pids = running.pid === null ? [] : processTree(running.pid);
      const load = pinnedNode(1, 'storm-load.js', [String(running.port), JSON.stringify({ clients, deadlineSeconds })], 'pipe');
      load.stdin!.on('error', () => {}); // a load that died is reported by its exit
      const next = lineWaiter(load);
      try {
        const ready = JSON.parse((await next((l) => l.startsWith('ready '), 300_000, 'ready line')).slice(6)) as { open: number; failedToOpen: number; lastOpenError: string; openSeconds: number };
        await new Promise((r) => setTimeout(r, 500)); // the last opens' work settles before the window
        const result = next((l) => l.startsWith('{'), (deadlineSeconds + 30) * 1000, 'result');
        result.catch(() => {}); // awaited below; a load that dies meanwhile must not be an unhandled rejection
        const cpu0 = cpuSeconds(pids);
        const killed = upstream.port;
        await upstream.kill(() => load.stdin!.write(`kill ${Date.now()}\n`));
        const restartStarted = performance.now();
        upstream = await startWsEcho(killed);
        const restartSeconds = (performance.now() - restartStarted) / 1000;
        const r = JSON.parse(await result) as Omit<StormResult['figures'], 'cpuS' | 'failedToOpen' | 'openSeconds' | 'restartSeconds'> & { failureKinds: Record<string, number> };
        const cpu = cpuSeconds(pids) - cpu0;
        const { failureKinds, ...figures } = r;
        return {
          figures: { ...figures, cpuS: running.pid === null ? null : cpu, failedToOpen: ready.failedToOpen, openSeconds: ready.openSeconds, restartSeconds },
          failureKinds,
          lastOpenError: ready.lastOpenError,
        };
      } finally {
        await stopChild(load);
      }
    });
  } finally {
    await upstream.stop();
  }
}
