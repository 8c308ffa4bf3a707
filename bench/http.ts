// Scenario `http`: keep-alive GET requests with wrk through each peer to a
// static upstream (nginx `return 200` when installed, else a Node server),
// wrk and upstream pinned to CPU 1, the proxy to CPU 0. Reports requests/s,
// latency percentiles, and the proxy's own CPU time per request.

import { spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cpuSeconds, processTree } from './lib/proc.js';
import { freePort, pinned, startPeer, waitForPort, which, type PeerName, type PeerOptions } from './lib/peers.js';

export interface HttpResult {
  reqPerSec: number;
  cpuUsPerReq: number | null;
  p50Ms: number;
  p99Ms: number;
}

export interface HttpUpstream {
  port: number;
  kind: string;
  stop(): Promise<void>;
}

export async function startHttpUpstream(): Promise<HttpUpstream> {
  const port = await freePort();
  let child: ChildProcess;
  let kind: string;
  const nginx = which('nginx');
  if (nginx) {
    const dir = mkdtempSync(join(tmpdir(), 'wsgate-bench-origin-'));
    writeFileSync(
      join(dir, 'nginx.conf'),
      `worker_processes 1; daemon off; master_process off; pid ${dir}/nginx.pid; error_log ${dir}/error.log error;
events { worker_connections 4096; }
http { access_log off; client_body_temp_path ${dir}/body; proxy_temp_path ${dir}/proxy; fastcgi_temp_path ${dir}/f; uwsgi_temp_path ${dir}/u; scgi_temp_path ${dir}/s;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:${port} backlog=4096; location / { return 200 "hello from the origin\\n"; } } }
`,
    );
    child = pinned(1, [nginx, '-p', dir, '-c', join(dir, 'nginx.conf')]);
    kind = 'nginx return 200';
  } else {
    const code = `require('http').createServer({keepAliveTimeout: 60000}, (q, r) => r.end('hello from the origin\\n')).listen(${port}, '127.0.0.1')`;
    child = pinned(1, [process.execPath, '-e', code]);
    kind = 'node http';
  }
  await waitForPort(port);
  return {
    port,
    kind,
    stop: async () => {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    },
  };
}

function parseLatency(text: string, label: string): number {
  const m = new RegExp(`^\\s*${label}%\\s+([\\d.]+)(us|ms|s)`, 'm').exec(text);
  if (!m) return NaN;
  const value = Number(m[1]);
  return m[2] === 'us' ? value / 1000 : m[2] === 's' ? value * 1000 : value;
}

export async function runWrk(port: number, seconds: number, connections: number): Promise<{ reqPerSec: number; p50Ms: number; p99Ms: number; requests: number }> {
  const child = pinned(1, ['wrk', '-t1', `-c${connections}`, `-d${seconds}s`, '--latency', `http://127.0.0.1:${port}/`], { stdio: 'pipe' });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  const code = await new Promise<number | null>((r) => child.once('exit', r));
  if (code !== 0) throw new Error(`wrk failed (${code}): ${out}`);
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(out);
  const total = /(\d+) requests in/.exec(out);
  const errors = /Non-2xx or 3xx responses: (\d+)/.exec(out);
  if (errors) throw new Error(`wrk saw ${errors[1]} error responses`);
  return { reqPerSec: Number(rps?.[1] ?? NaN), p50Ms: parseLatency(out, '50'), p99Ms: parseLatency(out, '99'), requests: Number(total?.[1] ?? 0) };
}

export const hasWrk = (): boolean => spawnSync('sh', ['-c', 'command -v wrk'], { stdio: 'ignore' }).status === 0;

/** One measurement of one peer: fresh process, warm-up, then a timed wrk run. */
export async function measureHttp(peer: PeerName, options: Omit<PeerOptions, 'upstreamPort'>, upstream: HttpUpstream, seconds: number): Promise<HttpResult> {
  const running = await startPeer(peer, { ...options, upstreamPort: upstream.port });
  try {
    await runWrk(running.port, 1, 64); // warm-up (wrk's shortest run): JIT, pools
    const pids = running.pid === null ? [] : processTree(running.pid);
    const before = cpuSeconds(pids);
    const result = await runWrk(running.port, seconds, 64);
    const cpu = cpuSeconds(pids) - before;
    return {
      reqPerSec: result.reqPerSec,
      cpuUsPerReq: running.pid === null ? null : (cpu * 1e6) / result.requests,
      p50Ms: result.p50Ms,
      p99Ms: result.p99Ms,
    };
  } finally {
    await running.stop();
  }
}
