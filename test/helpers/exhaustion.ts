// Helpers for the resource-exhaustion tests: the real CLI as a child process
// (optionally under a low descriptor limit), or the library embedded in a small
// application that can fill its own descriptor table; its RSS, descriptors and
// CPU time read from /proc, and a raw WebSocket upstream light enough for
// thousands of tunnels.

import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { switchingProtocols, waitFor, type Teardown } from './net.js';
import { CLI, repoPath } from './paths.js';

export const MiB = 1024 * 1024;
export { CLI };
const LIBRARY = repoPath('dist', 'lib', 'index.js');

export interface ChildGateway {
  child: ChildProcess;
  pid: number;
  port: number;
  stdout(): string;
  stderr(): string;
  alive(): boolean;
  rssKiB(): number;
  fds(): number;
  /** User + system CPU time in clock ticks (/proc/PID/stat). */
  cpuTicks(): number;
}

/**
 * Starts `node dist/lib/cli.js --listen 127.0.0.1:0 ...args` and resolves once it
 * printed its address. `fdLimit` runs it under `ulimit -n` (bash then execs
 * node, so the pid is the gateway's). Killed at teardown.
 */
export function startCliGateway(t: Teardown, args: string[], options: { fdLimit?: number } = {}): Promise<ChildGateway> {
  return startChild(t, [CLI, '--listen', '127.0.0.1:0', ...args], options.fdLimit, 'ignore');
}

// An application embedding the gateway (argv: library, upstream port). On stdin,
// `fill` opens /dev/null until the descriptor table is full (EMFILE) and `free`
// closes those again; each prints `filled N` / `freed` when done.
const EMBEDDING_APP = `
import { openSync, closeSync } from 'node:fs';
const { createGateway, createStreamLogger } = await import(process.argv[1]);
const gateway = createGateway({ routes: ['/=http://127.0.0.1:' + process.argv[2]], logger: createStreamLogger('info') });
const { port } = await gateway.listen(0, '127.0.0.1');
console.log('listening on http://127.0.0.1:' + port);
const files = [];
process.stdin.setEncoding('latin1').on('data', (text) => {
  for (const command of text.split('\\n')) {
    if (command === 'fill') {
      try { for (;;) files.push(openSync('/dev/null', 'r')); } catch {}
      console.log('filled ' + files.length);
    } else if (command === 'free') {
      for (const fd of files.splice(0)) closeSync(fd);
      console.log('freed');
    }
  }
});
`;

/** The library in EMBEDDING_APP under `ulimit -n fdLimit`, proxying to `upstreamPort`; `command('fill' | 'free')` resolves once done. */
export async function startEmbeddedGateway(t: Teardown, upstreamPort: number, fdLimit: number): Promise<ChildGateway & { command(name: 'fill' | 'free'): Promise<void> }> {
  const gw = await startChild(t, ['--input-type=module', '-e', EMBEDDING_APP, LIBRARY, String(upstreamPort)], fdLimit, 'pipe');
  let done = 0;
  return {
    ...gw,
    async command(name) {
      done++;
      gw.child.stdin!.write(name + '\n');
      await waitFor(() => (gw.stdout().match(/^(filled \d+|freed)$/gm) ?? []).length >= done, 5000, `the app to ${name}`);
    },
  };
}

async function startChild(t: Teardown, argv: string[], fdLimit: number | undefined, stdin: 'ignore' | 'pipe'): Promise<ChildGateway> {
  const stdio: ['ignore' | 'pipe', 'pipe', 'pipe'] = [stdin, 'pipe', 'pipe'];
  const child =
    fdLimit === undefined
      ? spawn(process.execPath, argv, { stdio })
      : spawn('bash', ['-c', `ulimit -n ${fdLimit} && exec "$0" "$@"`, process.execPath, ...argv], { stdio });
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (err += d));
  const alive = () => child.exitCode === null && child.signalCode === null;
  await waitFor(() => /listening on http:\/\/[^\n]+:\d+\n/.test(out) || !alive(), 15_000, 'the CLI gateway to listen');
  if (!alive()) throw new Error(`gateway exited ${child.exitCode}: ${err}`);
  const pid = child.pid!;
  return {
    child,
    pid,
    port: Number(/listening on http:\/\/[^\n]+:(\d+)\n/.exec(out)![1]),
    stdout: () => out,
    stderr: () => err,
    alive,
    rssKiB: () => rssKiB(pid),
    fds: () => fdCount(pid),
    cpuTicks: () => {
      // fields after the parenthesised command: utime is the 14th, stime the 15th field
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      return Number(fields[11]) + Number(fields[12]);
    },
  };
}

export function rssKiB(pid: number | 'self'): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : 0;
}

export function fdCount(pid: number | 'self'): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/** The soft RLIMIT_NOFILE of this process. */
export function fdLimit(): number {
  const m = /Max open files\s+(\d+)/.exec(readFileSync('/proc/self/limits', 'utf8'));
  return m ? Number(m[1]) : 1024;
}

/** Samples `sample()` every 20 ms until `done` settles; resolves with the largest value seen. */
export async function peakWhile(sample: () => number, done: Promise<unknown>): Promise<number> {
  let peak = sample();
  let finished = false;
  void done.then(
    () => (finished = true),
    () => (finished = true),
  );
  while (!finished) {
    peak = Math.max(peak, sample());
    await new Promise((r) => setTimeout(r, 20));
  }
  return Math.max(peak, sample());
}

export function statusOf(text: string): number {
  return Number(/^HTTP\/1\.1 (\d{3}) /.exec(text)?.[1] ?? 0);
}

/**
 * A raw WebSocket upstream for many tunnels: answers the first head on each
 * connection with a valid 101 (for `upgradeRequest`'s key), then echoes every
 * byte; a FIN is answered with a FIN. No per-connection recording.
 */
export async function echoTunnelUpstream(t: Teardown) {
  const sockets = new Set<net.Socket>();
  const counts = { accepted: 0, upgraded: 0, ended: 0, errors: 0 };
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    counts.accepted++;
    sockets.add(socket);
    let head = '';
    socket.on('error', () => counts.errors++);
    socket.on('close', () => sockets.delete(socket));
    socket.on('end', () => {
      counts.ended++;
      socket.end();
    });
    const onHead = (chunk: Buffer) => {
      head += chunk.toString('latin1');
      const end = head.indexOf('\r\n\r\n');
      if (end === -1) return;
      socket.removeListener('data', onHead);
      counts.upgraded++;
      socket.write(switchingProtocols());
      if (head.length > end + 4) socket.write(head.slice(end + 4), 'latin1');
      socket.on('data', (c) => socket.write(c));
    };
    socket.on('data', onHead);
  });
  server.listen({ port: 0, host: '127.0.0.1', backlog: 4096 });
  await once(server, 'listening');
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    return new Promise((r) => server.close(r));
  });
  return { port: (server.address() as net.AddressInfo).port, counts, sockets };
}

/** Runs `fn` over `items` with at most `width` at a time. */
export async function inBatches<T, R>(items: readonly T[], width: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i], i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(width, items.length) }, worker));
  return results;
}
