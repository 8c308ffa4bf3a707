#!/usr/bin/env node
// wsgate daemon: yargs -> config -> gateway. Exit codes: 0 after a graceful
// drain (SIGTERM/SIGINT), 2 for bad flags or config, 1 when a listener fails.

import { readFileSync } from 'node:fs';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { validateConfig, type GatewayConfig, type ListenConfig } from './config.js';
import { ConfigError } from './core/errors.js';
import { createGateway, type Gateway } from './gateway.js';
import { createStreamLogger, LOG_LEVELS, type LogLevel } from './core/log.js';
import { parserUnavailable } from './io/node-internals.js';
import { availableParallelism } from 'node:os';
import { supervise, workerMode, WORKER_ENV, type PrimaryMessage, type WorkerMessage } from './supervisor.js';

interface CliArgs {
  listen?: string[];
  tlsListen?: string[];
  tlsCert?: string[];
  tlsKey?: string[];
  upstreamCa?: string[];
  proxyProtocol: boolean;
  route?: string[];
  config?: string;
  tunnelTimeout?: number;
  readTimeout?: number;
  sendTimeout?: number;
  connectTimeout?: number;
  headTimeout?: number;
  maxConnections?: number;
  backlog?: number;
  maxConnectionsPerClient?: number;
  connectionRatePerClient?: string;
  trustedProxy?: string[];
  drainTimeout: number;
  logLevel: LogLevel;
  check: boolean;
  workers: string;
}

function parseArgs(argv: string[]): CliArgs {
  return yargs(argv)
    .scriptName('wsgate')
    .usage('$0 --listen HOST:PORT --route [HOST]/PATH=http://UPSTREAM ... [options]')
    .example(
      '$0 --listen 127.0.0.1:8000 --route /ws/=http://127.0.0.1:8080 --route /=http://127.0.0.1:3000',
      'WebSockets on /ws/ to :8080, everything else to :3000',
    )
    .option('listen', { type: 'string', array: true, describe: 'address to listen on, HOST:PORT or PORT (repeatable)' })
    .option('tls-listen', { type: 'string', array: true, describe: 'address to serve TLS (https, wss) on, HOST:PORT (repeatable)' })
    .option('tls-cert', { type: 'string', array: true, describe: 'certificate (PEM chain) for --tls-listen; repeatable, paired in order with --tls-key; SNI picks by DNS name, the first is the default' })
    .option('tls-key', { type: 'string', array: true, describe: 'private key (PEM) of the --tls-cert in the same position' })
    .option('upstream-ca', { type: 'string', array: true, describe: 'CA certificate (PEM) trusted for https:// upstreams besides Node\'s store (repeatable)' })
    .option('proxy-protocol', { type: 'boolean', default: false, describe: 'every listener reads a PROXY protocol header (v1 or v2) first: wsgate behind an L4 balancer' })
    .option('route', { type: 'string', array: true, describe: '[HOST]/PATH=URL; =/PATH=URL for an exact match (repeatable)' })
    .option('config', { type: 'string', describe: 'JSON config file (see README); flags add to it' })
    .option('tunnel-timeout', { type: 'number', describe: 'idle WebSocket tunnel timeout, seconds (default 3600; 0 = none)' })
    .option('read-timeout', { type: 'number', describe: 'upstream silent during an exchange, seconds (default 60)' })
    .option('send-timeout', { type: 'number', describe: 'peer not taking bytes during an exchange, seconds (default 60)' })
    .option('connect-timeout', { type: 'number', describe: 'upstream connect timeout, seconds (default 5)' })
    .option('head-timeout', { type: 'number', describe: 'time to receive a request head, seconds (default 10)' })
    .option('max-connections', { type: 'number', describe: 'open client connections beyond which new ones get 503 (default 0: no limit)' })
    .option('backlog', { type: 'number', describe: 'connections the kernel queues on each listener before they are accepted (default 511; capped by net.core.somaxconn)' })
    .option('max-connections-per-client', { type: 'number', describe: 'open connections (tunnels included) one client address may hold; more get 503 (default 0: no limit)' })
    .option('connection-rate-per-client', { type: 'string', describe: 'connections one client address may open, N/s or N/m; faster ones get 503 (default: no limit)' })
    .option('trusted-proxy', { type: 'string', array: true, describe: 'address or CIDR whose X-Forwarded-* are believed (repeatable; default: nobody; 127.0.0.1 for a local front proxy)' })
    .option('drain-timeout', { type: 'number', default: 10, describe: 'on SIGTERM/SIGINT, seconds open tunnels may finish' })
    .option('workers', { type: 'string', default: '1', describe: 'worker processes serving the same listeners: a number, or auto (one per core); SO_REUSEPORT where Node has it, node:cluster elsewhere' })
    .option('check', { type: 'boolean', default: false, describe: 'validate the config and flags, print "configuration ok" or every error, exit 0 or 2; binds nothing' })
    .option('log-level', { choices: LOG_LEVELS, default: 'info' as LogLevel, describe: 'least severe log level written to stderr' })
    .strict()
    .help()
    .version()
    .fail((message, err) => {
      process.stderr.write(`wsgate: ${message ?? err?.message}\nRun wsgate --help for usage.\n`);
      process.exit(2);
    })
    .parseSync() as unknown as CliArgs;
}

function buildConfig(args: CliArgs): GatewayConfig {
  let config: GatewayConfig = {};
  if (args.config !== undefined) {
    let text: string;
    try {
      text = readFileSync(args.config, 'utf8');
    } catch (err) {
      throw new ConfigError('--config', `cannot read ${args.config}: ${(err as Error).message}`);
    }
    try {
      config = JSON.parse(text) as GatewayConfig;
    } catch (err) {
      throw new ConfigError('--config', `${args.config} is not valid JSON: ${(err as Error).message}`);
    }
    if (config === null || typeof config !== 'object' || Array.isArray(config)) throw new ConfigError('--config', 'must hold a JSON object');
  }
  config = { ...config };
  const tlsListen = tlsListeners(args);
  if (args.listen !== undefined || tlsListen.length > 0) config.listen = [...(args.listen ?? []), ...tlsListen];
  if (args.upstreamCa !== undefined) config.upstreamTls = { ...config.upstreamTls, ca: args.upstreamCa };
  if (args.route !== undefined) {
    const fromFile = config.routes === undefined ? [] : Array.isArray(config.routes) ? config.routes : Object.entries(config.routes).map(([p, u]) => `${p}=${u}`);
    config.routes = [...fromFile, ...args.route];
  }
  if (args.tunnelTimeout !== undefined) config.tunnelTimeout = args.tunnelTimeout;
  if (args.readTimeout !== undefined) config.readTimeout = args.readTimeout;
  if (args.sendTimeout !== undefined) config.sendTimeout = args.sendTimeout;
  if (args.connectTimeout !== undefined) config.connectTimeout = args.connectTimeout;
  if (args.headTimeout !== undefined) config.headTimeout = args.headTimeout;
  if (args.maxConnections !== undefined) config.maxConnections = args.maxConnections;
  if (args.backlog !== undefined) config.listenBacklog = args.backlog;
  if (args.maxConnectionsPerClient !== undefined) config.maxConnectionsPerClient = args.maxConnectionsPerClient;
  if (args.connectionRatePerClient !== undefined) config.connectionRatePerClient = args.connectionRatePerClient;
  if (args.trustedProxy !== undefined) config.trustedProxies = args.trustedProxy.filter((entry) => entry !== 'none');
  if (config.listen === undefined || config.listen.length === 0) config.listen = ['127.0.0.1:8000'];
  if (args.proxyProtocol) config.listen = config.listen.map((entry) => (typeof entry === 'object' ? { ...entry, proxyProtocol: true } : { address: entry, proxyProtocol: true }));
  return config;
}

/** `--tls-listen` addresses, each serving every `--tls-cert` / `--tls-key` pair. */
function tlsListeners(args: CliArgs): ListenConfig[] {
  if (args.tlsListen === undefined) {
    if ((args.tlsCert ?? args.tlsKey) !== undefined) throw new ConfigError('--tls-cert', 'needs --tls-listen');
    return [];
  }
  const certs = args.tlsCert ?? [];
  const keys = args.tlsKey ?? [];
  if (certs.length === 0) throw new ConfigError('--tls-listen', 'needs --tls-cert and --tls-key');
  if (certs.length !== keys.length) throw new ConfigError('--tls-key', `${certs.length} --tls-cert but ${keys.length} --tls-key: they pair in order`);
  const certificates = certs.map((cert, i) => ({ cert, key: keys[i] }));
  return args.tlsListen.map((address) => ({ address, tls: { certificates } }));
}

async function main(): Promise<void> {
  const args = parseArgs(hideBin(process.argv));
  // Node's HTTP parser is the one internal wsgate cannot do without: say so in one line.
  const unavailable = parserUnavailable();
  if (unavailable !== null) {
    process.stderr.write(`wsgate: ${unavailable}\n`);
    process.exit(1);
  }
  if (args.check) check(args);
  const workers = workerCount(args.workers);
  const logger = createStreamLogger(args.logLevel);
  const isWorker = process.env[WORKER_ENV.worker] === '1';
  let gateway: Gateway;
  try {
    gateway = createGateway({ ...buildConfig(args), logger });
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`wsgate: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }

  if (workers > 1 && !isWorker) {
    await supervise({
      count: workers,
      script: process.argv[1],
      argv: process.argv.slice(2),
      listen: gateway.config.listen,
      logger,
      onListening: (urls) => process.stdout.write(urls.map((url) => `listening on ${url}\n`).join('')),
    });
    return;
  }
  if (isWorker) {
    // Listening before anything else: the primary sends the ticket keys at once, and a
    // message with no listener is dropped. Keys that come before the TLS listeners open are kept for them.
    process.on('message', (message: PrimaryMessage) => {
      if (message?.type === 'ticketKeys') gateway.setTicketKeys(Buffer.from(message.keys, 'base64'));
    });
  }
  // A worker binds the ports its primary resolved, with SO_REUSEPORT in that mode.
  const ports = isWorker ? (JSON.parse(process.env[WORKER_ENV.ports] ?? '[]') as number[]) : [];
  const reusePort = isWorker && workerMode() === 'reuseport';
  const urls: string[] = [];
  try {
    for (const [i, spec] of gateway.config.listen.entries()) {
      const address = await gateway.listen({ host: spec.host, port: ports[i] ?? spec.port, tls: spec.tls === null ? undefined : { certificates: [...spec.tls.certificates] }, proxyProtocol: spec.proxyProtocol, reusePort });
      urls.push(address.url.replace(/\/$/, ''));
    }
  } catch (err) {
    process.stderr.write(`wsgate: cannot listen: ${(err as Error).message}\n`);
    process.exit(1);
  }
  if (isWorker) {
    process.send?.({ type: 'listening', urls } satisfies WorkerMessage);
  } else {
    process.stdout.write(urls.map((url) => `listening on ${url}\n`).join(''));
  }

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) {
      logger.log('warn', `second ${signal}: exiting now`);
      process.exit(1);
    }
    stopping = true;
    logger.log('info', `${signal}: draining`, { drainMs: args.drainTimeout * 1000 });
    gateway.close({ drainMs: args.drainTimeout * 1000 }).then(() => {
      logger.log('info', 'drained, exiting');
      process.exit(0);
    });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  // A worker whose primary is gone (killed) drains and exits too.
  if (isWorker) process.on('disconnect', () => stop('primary gone'));
  process.on('SIGHUP', () => {
    try {
      gateway.reload({ ...buildConfig(args), logger });
    } catch (err) {
      logger.log('error', `reload failed, keeping the running config: ${(err as Error).message}`);
    }
  });
}

/** `--workers`: a count, or `auto` (one per core); exits 2 on anything else. */
function workerCount(text: string): number {
  if (text === 'auto') return availableParallelism();
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1 || n > 1024) {
    process.stderr.write(`wsgate: invalid configuration: --workers: expected a number from 1 to 1024 or auto, got ${JSON.stringify(text)}\n`);
    process.exit(2);
  }
  return n;
}

/** `--check` (nginx -t, haproxy -c): every problem, or `configuration ok`; exits 0 or 2 without binding anything. */
function check(args: CliArgs): never {
  let problems: string[];
  try {
    problems = validateConfig(buildConfig(args));
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    problems = [err.problem];
  }
  if (problems.length === 0) {
    process.stdout.write('configuration ok\n');
    process.exit(0);
  }
  for (const problem of problems) process.stderr.write(`wsgate: invalid configuration: ${problem}\n`);
  process.exit(2);
}

main().catch((err) => {
  process.stderr.write(`wsgate: ${(err as Error).stack ?? err}\n`);
  process.exit(1);
});
