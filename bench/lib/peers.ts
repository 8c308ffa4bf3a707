// The proxies under test, each started fresh, pinned to CPU 0 when taskset
// exists, relaying one route to one upstream port with one worker:
//   direct       no proxy (the floor)
//   wsgate       this project's CLI (on the Node binary given)
//   wsgate-off   the same with every fast path off (WSGATE_FAST_PATHS=off): the public-API fallbacks
//   wsgate-sockets  the same with tunnels kept on their sockets (WSGATE_FAST_PATHS=no-handle-tunnels): the A/B of handle tunnels
//   nginx        stock nginx, WebSocket-ready config
//   nginx-64k    the same with 64k proxy buffers
//   haproxy      HAProxy in http mode
//   node-naive   the smallest Node relay: net + pipe, no parsing
//   http-proxy   the npm package http-proxy on node:http (ws: true, keep-alive agent)
//   fastify-http-proxy  fastify + @fastify/http-proxy (undici for HTTP, ws for upgrades)
//   wsgate-2w    wsgate --workers 2, and nginx-2w with worker_processes 2: both
//                on CPUs 0 and 1, the second shared with the load generator
//                and upstream (on a 2-core machine there is no core to spare)
// A peer whose program is missing is skipped with a note, never faked.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const PEER_NAMES = ['direct', 'wsgate', 'wsgate-off', 'wsgate-sockets', 'wsgate-node20', 'wsgate-2w', 'nginx', 'nginx-64k', 'nginx-2w', 'haproxy', 'node-naive', 'http-proxy', 'fastify-http-proxy'] as const;
export type PeerName = (typeof PEER_NAMES)[number];

export interface RunningPeer {
  readonly name: string;
  /** Port clients connect to. */
  readonly port: number;
  /** It serves TLS on that port. */
  readonly tls: boolean;
  /** Root pid whose process tree is measured; null for `direct`. */
  readonly pid: number | null;
  stop(): Promise<void>;
}

export interface PeerOptions {
  upstreamPort: number;
  /** Node binary for `wsgate` (the headline, Node 24 when available). */
  node: string;
  /** Node binary for `wsgate-node20` (the machine's Node). */
  node20: string;
  /** Extra arguments for wsgate's node (e.g. --max-semi-space-size=64). */
  nodeFlags?: string[];
  /** wsgate CLI to run (A/B experiments against another build); default this checkout's dist. */
  cli?: string;
  /**
   * Client connections the peer must hold at once (the idle and storm
   * scenarios' tunnels); raises nginx's worker_connections (default 19,000; two
   * per tunnel and a sixteenth spare) and HAProxy's maxconn (default 9,000) when
   * more are needed. Unset: the defaults.
   */
  maxConnections?: number;
  /** Serve TLS with this certificate (one EC P-256 pair for every peer; `combined`: both in one file, for HAProxy). */
  tls?: { cert: string; key: string; combined: string };
}

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const CLI = join(ROOT, 'dist/lib/cli.js');
const NAIVE = join(ROOT, 'dist/bench/lib/naive-relay.js');
/** The embedded Node proxies and the package each needs (devDependencies). */
const NODE_PROXIES = {
  'http-proxy': { script: join(ROOT, 'dist/bench/lib/http-proxy-peer.js'), packages: ['http-proxy'] },
  'fastify-http-proxy': { script: join(ROOT, 'dist/bench/lib/fastify-http-proxy-peer.js'), packages: ['fastify', '@fastify/http-proxy'] },
} as const;

export const hasTaskset = spawnSync('sh', ['-c', 'command -v taskset'], { stdio: 'ignore' }).status === 0;

export function which(cmd: string): string | null {
  const r = spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' });
  if (r.status === 0 && r.stdout.trim()) return r.stdout.trim();
  for (const dir of ['/usr/sbin', '/usr/local/sbin', '/sbin']) if (existsSync(join(dir, cmd))) return join(dir, cmd);
  return null;
}

/** Runs `argv` pinned to `cpu` (a CPU list like "0,1" for several; when taskset exists). */
export function pinned(cpu: number | string, argv: string[], options: { stdio?: 'ignore' | 'pipe'; env?: NodeJS.ProcessEnv } = {}): ChildProcess {
  const [cmd, ...args] = hasTaskset ? ['taskset', '-c', String(cpu), ...argv] : argv;
  return spawn(cmd, args, { stdio: ['ignore', options.stdio ?? 'ignore', 'pipe'], env: options.env ?? process.env });
}

export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise((r) => server.close(r));
  return port;
}

export async function waitForPort(port: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`port ${port} did not open`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** SIGTERM, then SIGKILL after 3 s; resolves when the process is gone. */
export async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
  await exited;
  clearTimeout(timer);
}

const backlogFlag = new Map<string, boolean>();
/** Whether this wsgate CLI has `--backlog` (asked once per build, from its --help). */
function knowsBacklog(cli: string): boolean {
  if (!backlogFlag.has(cli)) backlogFlag.set(cli, spawnSync(process.execPath, [cli, '--help'], { encoding: 'utf8' }).stdout.includes('--backlog'));
  return backlogFlag.get(cli)!;
}

/** Whether the peer can run here; a string says why not. */
export function peerAvailable(name: PeerName, options: Pick<PeerOptions, 'node' | 'tls'>): true | string {
  if (options.tls !== undefined && (name === 'direct' || name === 'node-naive')) return 'no TLS listener';
  if (name === 'nginx' || name === 'nginx-64k' || name === 'nginx-2w') return which('nginx') ? true : 'nginx not installed (scripts/install-peers.sh)';
  if (name === 'haproxy') return which('haproxy') ? true : 'haproxy not installed (scripts/install-peers.sh)';
  if (name === 'wsgate' && !existsSync(options.node)) return `node binary ${options.node} missing`;
  if (name === 'http-proxy' || name === 'fastify-http-proxy') {
    if (!existsSync(options.node)) return `node binary ${options.node} missing`;
    const missing = NODE_PROXIES[name].packages.find((p) => !existsSync(join(ROOT, 'node_modules', p, 'package.json')));
    if (missing) return `${missing} not installed (npm install)`;
  }
  return true;
}

function nginxConfig(dir: string, port: number, upstreamPort: number, bigBuffers: boolean, tls: PeerOptions['tls'], workers = 1, maxConnections = 0): string {
  // Each tunnel is two connections (client and upstream) in the one worker, and
  // nginx starts closing connections that wait for a request ("worker_connections
  // are not enough, reusing connections", a warning) once fewer than 1/16 of
  // worker_connections are free: at 19,000 the 8,907th tunnel's client was
  // turned away with a bare FIN (idle and storm, 9,000 tunnels: 93 failed to open).
  const connections = Math.max(19000, Math.ceil((2 * maxConnections * 16) / 15) + 1000);
  // the descriptors they need; above the hard limit nginx keeps the limit it has
  const descriptors = Math.max(20000, 2 * maxConnections + 2000);
  return `worker_processes ${workers};
daemon off;
master_process ${workers > 1 ? 'on' : 'off'};
pid ${dir}/nginx.pid;
error_log ${dir}/error.log error;
worker_rlimit_nofile ${descriptors};
events { worker_connections ${connections}; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  map $http_upgrade $connection_upgrade { default upgrade; '' ''; }
  upstream backend { server 127.0.0.1:${upstreamPort}; keepalive 256; }
  server {
    listen 127.0.0.1:${port}${tls ? ' ssl' : ''} backlog=4096;
${tls ? `    ssl_certificate ${tls.cert};\n    ssl_certificate_key ${tls.key};\n    ssl_protocols TLSv1.2 TLSv1.3;\n` : ''}
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_set_header Host $host;
      proxy_read_timeout 3600s;
      proxy_send_timeout 3600s;
${bigBuffers ? '      proxy_buffer_size 64k; proxy_buffers 4 64k; proxy_busy_buffers_size 64k;\n' : ''}    }
  }
}
`;
}

function haproxyConfig(port: number, upstreamPort: number, tls: PeerOptions['tls'], maxConnections = 0): string {
  // maxconn counts client connections; HAProxy sizes its descriptor limit from it (about two each)
  return `global
  maxconn ${Math.max(9000, maxConnections + 500)}
  nbthread 1
defaults
  mode http
  timeout connect 5s
  timeout client 1h
  timeout server 1h
  timeout tunnel 1h
  option http-keep-alive
frontend in
  bind 127.0.0.1:${port}${tls ? ` ssl crt ${tls.combined} alpn http/1.1` : ''}
  default_backend out
backend out
  http-reuse always
  server s1 127.0.0.1:${upstreamPort}
`;
}

export async function startPeer(name: PeerName, options: PeerOptions): Promise<RunningPeer> {
  if (name === 'direct') return { name, port: options.upstreamPort, pid: null, tls: false, stop: async () => {} };
  const port = await freePort();
  let child: ChildProcess;
  const route = `/=http://127.0.0.1:${options.upstreamPort}`;
  switch (name) {
    case 'wsgate':
    case 'wsgate-off':
    case 'wsgate-sockets':
    case 'wsgate-node20':
    case 'wsgate-2w': {
      const node = name === 'wsgate-node20' ? options.node20 : options.node;
      const fastPaths = name === 'wsgate-off' ? 'off' : name === 'wsgate-sockets' ? 'no-handle-tunnels' : '';
      const env = { ...process.env, WSGATE_FAST_PATHS: fastPaths };
      const listen = options.tls ? ['--tls-listen', `127.0.0.1:${port}`, '--tls-cert', options.tls.cert, '--tls-key', options.tls.key] : ['--listen', `127.0.0.1:${port}`];
      const workers = name === 'wsgate-2w' ? ['--workers', '2'] : [];
      // The same listen backlog as the other peers (nginx `backlog=4096`), where the CLI has the flag (an older build in an A/B may not).
      const backlog = knowsBacklog(options.cli ?? CLI) ? ['--backlog', '4096'] : [];
      child = pinned(name === 'wsgate-2w' ? '0,1' : 0, [node, ...(options.nodeFlags ?? []), options.cli ?? CLI, ...listen, ...workers, ...backlog, '--route', route, '--log-level', 'error'], { env });
      break;
    }
    case 'node-naive':
      child = pinned(0, [options.node, NAIVE, String(port), String(options.upstreamPort)]);
      break;
    case 'http-proxy':
    case 'fastify-http-proxy': {
      const peerArgs = { port, upstreamPort: options.upstreamPort, cert: options.tls?.cert, key: options.tls?.key };
      child = pinned(0, [options.node, NODE_PROXIES[name].script, JSON.stringify(peerArgs)]);
      break;
    }
    case 'nginx':
    case 'nginx-64k':
    case 'nginx-2w': {
      const dir = mkdtempSync(join(tmpdir(), 'wsgate-bench-nginx-'));
      const workers = name === 'nginx-2w' ? 2 : 1;
      writeFileSync(join(dir, 'nginx.conf'), nginxConfig(dir, port, options.upstreamPort, name === 'nginx-64k', options.tls, workers, options.maxConnections));
      child = pinned(workers > 1 ? '0,1' : 0, [which('nginx')!, '-p', dir, '-c', join(dir, 'nginx.conf')]);
      break;
    }
    case 'haproxy': {
      const dir = mkdtempSync(join(tmpdir(), 'wsgate-bench-haproxy-'));
      writeFileSync(join(dir, 'haproxy.cfg'), haproxyConfig(port, options.upstreamPort, options.tls, options.maxConnections));
      child = pinned(0, [which('haproxy')!, '-f', join(dir, 'haproxy.cfg'), '-db']);
      break;
    }
  }
  let stderr = '';
  child.stderr?.on('data', (d) => (stderr += d));
  try {
    await waitForPort(port);
  } catch (err) {
    child.kill('SIGKILL');
    throw new Error(`${name} did not start: ${stderr.slice(0, 500)}`, { cause: err });
  }
  return { name, port, pid: child.pid!, tls: options.tls !== undefined, stop: () => stopChild(child) };
}

/** A self-signed EC P-256 certificate for the TLS scenarios (openssl), in a temp dir. */
export function makeBenchCertificate(): NonNullable<PeerOptions['tls']> {
  const dir = mkdtempSync(join(tmpdir(), 'wsgate-bench-tls-'));
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  const r = spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=bench.test', '-addext', 'subjectAltName=DNS:bench.test,IP:127.0.0.1'], { stdio: 'ignore' });
  if (r.status !== 0) throw new Error('openssl could not make the bench certificate');
  const combined = join(dir, 'combined.pem');
  writeFileSync(combined, readFileSync(cert, 'utf8') + readFileSync(key, 'utf8'));
  return { cert, key, combined };
}
