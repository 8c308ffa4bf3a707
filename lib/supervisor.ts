// `--workers N`: the primary process. It forks N workers that each run the
// whole gateway on the same listen addresses, and keeps them running:
//
// - where Node has `reusePort` (22.12+ on Linux) each worker binds every
//   address itself with SO_REUSEPORT and the kernel spreads connections;
//   elsewhere node:cluster's primary accepts and hands connections round-robin
//   (WSGATE_WORKER_MODE=cluster|reuseport picks one, for measuring both);
// - a worker that dies is restarted, after a backoff that doubles with each
//   death in the last minute (100 ms up to 10 s), and logged;
// - SIGTERM/SIGINT go to every worker (each drains), and the primary exits 0
//   once all have exited 0; a second one kills them all; SIGHUP goes to every
//   worker (each reloads its config and certificates);
// - one TLS session ticket key set for all workers, sent at start and rotated
//   every 12 hours, so a ticket from one worker resumes on another.
//
// The primary prints the `listening on` lines once every worker listens, as a
// single process would. Port 0 is resolved here first: all workers share the
// port it picked.

import cluster, { type Worker } from 'node:cluster';
import { fork, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import type { Logger } from './core/log.js';
import type { ResolvedListen } from './config.js';

export type WorkerMode = 'reuseport' | 'cluster';

/** What a worker tells the primary. */
export type WorkerMessage = { readonly type: 'listening'; readonly urls: readonly string[] };
/** What the primary tells a worker. */
export type PrimaryMessage = { readonly type: 'ticketKeys'; readonly keys: string };

/** The environment variables a worker reads (set by the primary). */
export const WORKER_ENV = {
  /** Set in a worker: it serves instead of supervising. */
  worker: 'WSGATE_WORKER',
  /** JSON array of the listen ports the primary resolved (port 0 made concrete), in config order. */
  ports: 'WSGATE_WORKER_PORTS',
  /** `reuseport` or `cluster`. */
  mode: 'WSGATE_WORKER_MODE',
} as const;

const TICKET_ROTATION_MS = 12 * 3600_000;
const BACKOFF_MIN_MS = 100;
const BACKOFF_MAX_MS = 10_000;

/** reusePort on net.Server.listen: Node 22.12+ on Linux (and 23.1+). */
export function reusePortAvailable(version = process.versions.node, platform = process.platform): boolean {
  const [major, minor] = version.split('.').map(Number);
  return platform === 'linux' && (major > 22 || (major === 22 && minor >= 12));
}

export function workerMode(env: NodeJS.ProcessEnv = process.env): WorkerMode {
  const asked = env[WORKER_ENV.mode];
  if (asked === 'cluster' || asked === 'reuseport') return asked;
  return reusePortAvailable() ? 'reuseport' : 'cluster';
}

/** A concrete port for each listen address (port 0: one the kernel picks now, shared by all workers). */
async function resolvePorts(listen: readonly ResolvedListen[]): Promise<number[]> {
  const ports: number[] = [];
  for (const spec of listen) {
    if (spec.port !== 0) {
      ports.push(spec.port);
      continue;
    }
    const probe = net.createServer();
    await new Promise<void>((resolve, reject) => {
      probe.once('error', reject);
      probe.listen({ host: spec.host, port: 0 }, resolve);
    });
    ports.push((probe.address() as net.AddressInfo).port);
    await new Promise((resolve) => probe.close(resolve));
  }
  return ports;
}

interface Slot {
  readonly index: number;
  proc: ChildProcess | Worker | null;
  pid: number;
  /** Deaths in the last minute, for the backoff. */
  deaths: number[];
  listening: boolean;
}

/**
 * Runs the primary: forks `count` workers running `script` with `argv`, and
 * supervises them until a stop signal. Never returns (exits the process).
 */
export async function supervise(options: { count: number; script: string; argv: readonly string[]; listen: readonly ResolvedListen[]; logger: Logger; onListening(urls: readonly string[]): void }): Promise<void> {
  const { count, script, argv, logger } = options;
  const mode = workerMode();
  let ports: number[];
  try {
    ports = await resolvePorts(options.listen);
  } catch (err) {
    process.stderr.write(`wsgate: cannot listen: ${(err as Error).message}\n`);
    process.exit(1);
  }
  let ticketKeys = randomBytes(48).toString('base64');
  const env = { ...process.env, [WORKER_ENV.worker]: '1', [WORKER_ENV.ports]: JSON.stringify(ports), [WORKER_ENV.mode]: mode };
  if (mode === 'cluster') cluster.setupPrimary({ exec: script, args: [...argv] });
  const slots: Slot[] = Array.from({ length: count }, (_, index) => ({ index, proc: null, pid: 0, deaths: [], listening: false }));
  let stopping = false;
  let announced = false;
  let exitCode = 0;

  const send = (slot: Slot, message: PrimaryMessage) => {
    try {
      slot.proc?.send(message);
    } catch {
      // a worker on its way out: it gets the keys when restarted
    }
  };

  const start = (slot: Slot) => {
    const proc = mode === 'cluster' ? cluster.fork(env) : fork(script, [...argv], { env, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    const child = mode === 'cluster' ? (proc as Worker).process : (proc as ChildProcess);
    slot.proc = proc;
    slot.pid = child.pid ?? 0;
    slot.listening = false;
    // Messages from a worker: 'message' on a cluster Worker and on a forked ChildProcess alike.
    proc.on('message', (message: WorkerMessage) => {
      if (message?.type !== 'listening') return;
      slot.listening = true;
      if (!announced && slots.every((s) => s.listening)) {
        announced = true;
        options.onListening(message.urls);
        logger.log('info', `${count} workers listening`, { mode, pids: slots.map((s) => s.pid).join(',') });
      }
    });
    send(slot, { type: 'ticketKeys', keys: ticketKeys });
    child.once('exit', (code, signal) => {
      slot.proc = null;
      if (stopping) {
        if (code !== 0) exitCode = 1;
        if (slots.every((s) => s.proc === null)) process.exit(exitCode);
        return;
      }
      const now = Date.now();
      slot.deaths = [...slot.deaths.filter((at) => now - at < 60_000), now];
      const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** (slot.deaths.length - 1));
      logger.log('error', `worker ${slot.index} (pid ${slot.pid}) exited (${signal ?? `code ${code}`}); restarting in ${delay} ms`, { worker: slot.index, pid: slot.pid, code: code ?? undefined, signal: signal ?? undefined });
      setTimeout(() => {
        if (!stopping) start(slot);
      }, delay).unref();
    });
  };

  for (const slot of slots) start(slot);

  const rotation = setInterval(() => {
    ticketKeys = randomBytes(48).toString('base64');
    for (const slot of slots) send(slot, { type: 'ticketKeys', keys: ticketKeys });
  }, TICKET_ROTATION_MS);
  rotation.unref();

  const stop = (signal: NodeJS.Signals) => {
    if (stopping) {
      logger.log('warn', `second ${signal}: killing the workers`);
      for (const slot of slots) slot.proc && killWorker(slot, 'SIGKILL');
      process.exit(1);
    }
    stopping = true;
    logger.log('info', `${signal}: draining ${count} workers`);
    if (slots.every((s) => s.proc === null)) process.exit(exitCode);
    for (const slot of slots) if (slot.proc !== null) killWorker(slot, 'SIGTERM');
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGHUP', () => {
    logger.log('info', `SIGHUP: reloading ${count} workers`);
    for (const slot of slots) if (slot.proc !== null) killWorker(slot, 'SIGHUP');
  });
}

function killWorker(slot: Slot, signal: NodeJS.Signals): void {
  try {
    process.kill(slot.pid, signal);
  } catch {
    // gone already: its exit handler runs
  }
}
