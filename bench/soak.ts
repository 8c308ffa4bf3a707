// npm run build && node dist/bench/soak.js [--minutes 30] [--tunnels 2000] [--out bench/results/soak]
//
// Soak test (issue #6, "Hardening"): the wsgate CLI in a child process, in
// front of the raw WebSocket echo upstream (lib/ws-echo-server.ts, a child) and
// a node:http keep-alive upstream (in this process), holds `--tunnels`
// WebSocket tunnels with churn plus bounded HTTP keep-alive traffic from a
// load child (lib/soak-load.ts). Every `--interval` seconds it samples the
// gateway's RSS and open descriptors from /proc, its JS heap and event-loop
// delay from a preload (lib/soak-probe.ts, so lib/ stays untouched), and the
// load's counters; writes OUT.csv, OUT-{rss,heap,fds,loop}.svg and OUT.md; and
// judges the trend after the warm-up (lib/soak-verdict.ts). Exit code 0 on
// pass, 1 on fail, 130 when interrupted. The gateway is pinned to CPU 0, the
// echo upstream and the load to CPU 1, as in `npm run bench`.

import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { cpus } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { lineChart, type LineSeries } from './lib/line-chart.js';
import { freePort, hasTaskset, stopChild } from './lib/peers.js';
import { cpuSeconds, rssKiB } from './lib/proc.js';
import { judge, RELATIVE, type Trend } from './lib/soak-verdict.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const LIB = fileURLToPath(new URL('./lib/', import.meta.url));
const PROBE = pathToFileURL(join(LIB, 'soak-probe.js')).href;
const RAMP_TIMEOUT_MS = 150_000; // the load gives up waiting at 120 s
const START_TIMEOUT_MS = 10_000;
const REPORT_TIMEOUT_MS = 3_000;

const args = yargs(hideBin(process.argv))
  .option('minutes', { type: 'number', default: 30, describe: 'measured duration after the tunnels are open' })
  .option('tunnels', { type: 'number', default: 2000, describe: 'WebSocket tunnels held open' })
  .option('out', { type: 'string', default: join(relative(process.cwd(), ROOT) || '.', 'bench/results/soak'), describe: 'output prefix: OUT.csv, OUT.md, OUT-METRIC.svg' })
  .option('interval', { type: 'number', default: 10, describe: 'seconds between samples' })
  .option('churn', { type: 'number', describe: 'tunnels closed and replaced per second (default tunnels / 40: each lives ~40 s)' })
  .option('http-rate', { type: 'number', default: 200, describe: 'HTTP requests per second in total' })
  .option('http-connections', { type: 'number', default: 4, describe: 'HTTP keep-alive connections' })
  .option('node', { type: 'string', default: process.execPath, describe: 'Node binary for the gateway' })
  .option('cli', { type: 'string', default: join(ROOT, 'dist/lib/cli.js'), describe: 'wsgate CLI to run' })
  .option('charts-from', { type: 'string', describe: 'only judge OUT.csv of an earlier run again and redraw OUT.md and the charts (give its --minutes and --tunnels)' })
  .check((a) => {
    if (!(a.minutes > 0 && a.tunnels > 0 && a.interval > 0)) throw new Error('--minutes, --tunnels, --interval must be > 0');
    if (!((a.httpRate as number) >= 0 && (a.httpConnections as number) >= 1)) throw new Error('--http-rate must be >= 0, --http-connections >= 1');
    if (a.tunnels > 8000) throw new Error('--tunnels above 8000 would take the gateway past ~16,000 descriptors (limit 20,000)');
    return true;
  })
  .strict()
  .parseSync();

const churnPerSec = args.churn ?? args.tunnels / 40;
const out = resolve(args.out);
const runSeconds = args.minutes * 60;
const warmupSeconds = runSeconds / 6;
const shortRun = args.minutes < 30;
const command = `npm run build && node dist/bench/soak.js ${process.argv.slice(2).join(' ')}`.trim();
const loadOptions = { tunnels: args.tunnels, churnPerSec, frames: 3, frameSize: 64, pingPerSec: Math.max(1, args.tunnels / 10), httpConnections: args.httpConnections, httpRate: args.httpRate, httpBodySize: 1024, wsPath: '/ws/', httpPath: '/api/' };

// ---- children -------------------------------------------------------------

const children: ChildProcess[] = [];
const deadline = Date.now() + RAMP_TIMEOUT_MS + runSeconds * 1000 + 60_000;

/** A node child with the probe preloaded (its watchdog ends it if this process dies), pinned to `cpu`. */
function spawnNode(cpu: number, node: string, argv: string[], env: Record<string, string> = {}, extraFd = false): ChildProcess {
  const full = [node, '--import', PROBE, ...argv];
  const [cmd, ...rest] = hasTaskset ? ['taskset', '-c', String(cpu), ...full] : full;
  const child = spawn(cmd, rest, {
    stdio: extraFd ? ['ignore', 'pipe', 'pipe', 'pipe'] : ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env, SOAK_DEADLINE: String(deadline) },
  });
  children.push(child);
  return child;
}

/** Calls `onLine` for every line `stream` writes. */
function lines(stream: NodeJS.ReadableStream, onLine: (line: string) => void): void {
  let buffer = '';
  stream.setEncoding('utf8');
  stream.on('data', (d: string) => {
    buffer += d;
    let nl: number;
    while ((nl = buffer.indexOf('\n')) !== -1) {
      const line = buffer.slice(0, nl);
      buffer = buffer.slice(nl + 1);
      onLine(line);
    }
    if (buffer.length > 65536) buffer = ''; // never a line this long from our children
  });
}

/** Resolves when `child` prints a line matching `re`; rejects on exit or after `ms`. */
function waitForLine(child: ChildProcess, name: string, re: RegExp, ms: number): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} not ready within ${ms / 1000} s`)), ms);
    lines(child.stdout!, (line) => {
      if (re.test(line)) {
        clearTimeout(timer);
        resolvePromise(line);
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited (${code ?? signal}) before it was ready`));
    });
  });
}

/** The last `n` lines a child wrote to stderr, and how many. */
function tailStderr(child: ChildProcess, n = 10): { lines: string[]; count: number } {
  const tail = { lines: [] as string[], count: 0 };
  lines(child.stderr!, (line) => {
    tail.count++;
    tail.lines.push(line.slice(0, 300));
    if (tail.lines.length > n) tail.lines.shift();
  });
  return tail;
}

function startHttpUpstream(): Promise<http.Server> {
  const body = Buffer.from('hello from the soak origin\n');
  const server = http.createServer({ keepAliveTimeout: 120_000 }, (req, res) => {
    let received = 0;
    req.on('data', (c: Buffer) => (received += c.length));
    req.on('end', () => {
      const answer = req.method === 'POST' ? Buffer.from(`received ${received} bytes\n`) : body;
      res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': answer.length });
      res.end(answer);
    });
  });
  return new Promise((r) => server.listen(0, '127.0.0.1', () => r(server)));
}

// ---- samples --------------------------------------------------------------

interface ProbeReport {
  heapUsedMiB: number;
  heapFloorMiB: number;
  heapTotalMiB: number;
  externalMiB: number;
  loopP50Ms: number;
  loopP99Ms: number;
  loopMaxMs: number;
  resources: number;
}

interface LoadReport {
  open: number;
  opening: number;
  closing: number;
  tunnelsOpened: number;
  tunnelsCompleted: number;
  tunnelErrors: number;
  echoes: number;
  httpRequests: number;
  httpErrors: number;
  httpReconnects: number;
  errorKinds: Record<string, number>;
}

interface Sample extends ProbeReport, Omit<LoadReport, 'errorKinds' | 'opening' | 'closing'> {
  t: number;
  rssMiB: number;
  /** RSS less V8's heap reservation: what the young generation's resizing does not move. */
  rssOutsideHeapMiB: number;
  fds: number;
  cpuPct: number;
  logLines: number;
}

const COLUMNS: Array<[keyof Sample, string, number]> = [
  ['t', 't_s', 1],
  ['rssMiB', 'rss_mib', 2],
  ['rssOutsideHeapMiB', 'rss_outside_heap_mib', 2],
  ['heapUsedMiB', 'heap_used_mib', 2],
  ['heapFloorMiB', 'heap_floor_mib', 2],
  ['heapTotalMiB', 'heap_total_mib', 2],
  ['externalMiB', 'external_mib', 2],
  ['fds', 'fds', 0],
  ['loopP50Ms', 'loop_p50_ms', 3],
  ['loopP99Ms', 'loop_p99_ms', 3],
  ['loopMaxMs', 'loop_max_ms', 3],
  ['resources', 'active_resources', 0],
  ['cpuPct', 'cpu_pct', 1],
  ['open', 'tunnels_open', 0],
  ['tunnelsOpened', 'tunnels_opened', 0],
  ['tunnelsCompleted', 'tunnels_completed', 0],
  ['tunnelErrors', 'tunnel_errors', 0],
  ['echoes', 'echoes', 0],
  ['httpRequests', 'http_requests', 0],
  ['httpErrors', 'http_errors', 0],
  ['httpReconnects', 'http_reconnects', 0],
  ['logLines', 'gateway_log_lines', 0],
];

interface Metric {
  key: keyof Sample;
  file: string;
  name: string;
  unit: string;
  /** The absolute floor of the allowed growth (bench/README.md, "Soak"). */
  floor: number;
  /** Drawn in grey beside the judged series. */
  context?: Array<[keyof Sample, string]>;
}

const METRICS: Metric[] = [
  { key: 'rssMiB', file: 'rss', name: 'RSS', unit: 'MiB', floor: 8, context: [['rssOutsideHeapMiB', 'RSS − V8 heap total']] },
  { key: 'heapFloorMiB', file: 'heap', name: 'JS heap (floor)', unit: 'MiB', floor: 4, context: [['heapUsedMiB', 'heapUsed at the sample']] },
  { key: 'fds', file: 'fds', name: 'open descriptors', unit: 'fds', floor: 40 },
  { key: 'loopP99Ms', file: 'loop', name: 'event-loop delay p99', unit: 'ms', floor: 5, context: [['loopP50Ms', 'p50']] },
];

// ---- run ------------------------------------------------------------------

let interrupted = false;
let wake: (() => void) | null = null;
process.on('SIGINT', () => {
  if (interrupted) {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    process.exit(130);
  }
  interrupted = true;
  process.stderr.write('\nsoak: interrupted; stopping the children (again to kill them)\n');
  wake?.();
});
process.on('SIGTERM', () => {
  interrupted = true;
  wake?.();
});
process.on('exit', () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

function sleep(ms: number): Promise<void> {
  return new Promise((r) => {
    const timer = setTimeout(() => {
      wake = null;
      r();
    }, ms);
    wake = () => {
      clearTimeout(timer);
      wake = null;
      r();
    };
  });
}

function fmt(v: number, digits: number): string {
  return Number.isFinite(v) ? v.toFixed(digits) : '-';
}

async function main(): Promise<number> {
  mkdirSync(dirname(out), { recursive: true });
  const httpServer = await startHttpUpstream();
  const httpPort = (httpServer.address() as AddressInfo).port;

  const echoPort = await freePort();
  const echo = spawnNode(1, process.execPath, [join(LIB, 'ws-echo-server.js'), String(echoPort)]);
  echo.stderr!.resume();
  await waitForLine(echo, 'echo upstream', /^ready$/, START_TIMEOUT_MS);

  const gatewayPort = await freePort();
  const gateway = spawnNode(
    0,
    args.node,
    [args.cli, '--listen', `127.0.0.1:${gatewayPort}`, '--route', `/ws/=http://127.0.0.1:${echoPort}`, '--route', `/=http://127.0.0.1:${httpPort}`, '--log-level', 'warn', '--drain-timeout', '2'],
    { SOAK_PROBE_FD: '3' },
    true,
  );
  const gatewayLog = tailStderr(gateway);
  const gatewayExit = new Promise<string>((r) => gateway.once('exit', (code, signal) => r(`gateway exited (${code ?? signal})`)));
  await waitForLine(gateway, 'gateway', /^listening on /, START_TIMEOUT_MS);
  gateway.stdout!.resume();
  const pid = gateway.pid!;
  let probeWaiter: ((r: ProbeReport | null) => void) | null = null;
  lines(gateway.stdio[3] as NodeJS.ReadableStream, (line) => {
    try {
      probeWaiter?.(JSON.parse(line) as ProbeReport);
    } catch {
      // a torn line: that sample goes without heap figures
    }
    probeWaiter = null;
  });
  const probe = (): Promise<ProbeReport | null> =>
    new Promise((r) => {
      const timer = setTimeout(() => {
        probeWaiter = null;
        r(null);
      }, REPORT_TIMEOUT_MS);
      probeWaiter = (report) => {
        clearTimeout(timer);
        r(report);
      };
      process.kill(pid, 'SIGUSR2');
    });

  process.stderr.write(`soak: gateway pid ${pid} on :${gatewayPort}, ws echo :${echoPort}, http origin :${httpPort}; opening ${args.tunnels} tunnels\n`);
  const load = spawnNode(1, process.execPath, [join(LIB, 'soak-load.js'), String(gatewayPort), JSON.stringify(loadOptions)]);
  const loadLog = tailStderr(load);
  // a holder, not a `let`: TypeScript does not see the assignment in the callback
  const latest: { load: LoadReport | null } = { load: null };
  const loadReady = waitForLine(load, 'load', /^ready$/, RAMP_TIMEOUT_MS);
  lines(load.stdout!, (line) => {
    if (line.startsWith('{')) latest.load = JSON.parse(line) as LoadReport;
  });
  const loadExit = new Promise<string>((r) => load.once('exit', (code, signal) => r(`load exited (${code ?? signal}): ${loadLog.lines.join(' | ')}`)));
  const rampStarted = Date.now();
  await loadReady;
  process.stderr.write(`soak: ramp done in ${((Date.now() - rampStarted) / 1000).toFixed(1)} s; sampling every ${args.interval} s for ${args.minutes} min\n`);

  writeFileSync(`${out}.csv`, `${COLUMNS.map((c) => c[1]).join(',')}\n`);
  const samples: Sample[] = [];
  const failures: string[] = [];
  let died: string | null = null;
  void gatewayExit.then((why) => {
    died ??= why;
    wake?.();
  });
  void loadExit.then((why) => {
    died ??= why;
    wake?.();
  });
  const started = Date.now();
  let lastCpu = cpuSeconds([pid]);
  let lastCpuAt = started;
  for (let i = 0; ; i++) {
    const due = started + i * args.interval * 1000;
    if (due > started + runSeconds * 1000 + 500) break;
    await sleep(Math.max(0, due - Date.now()));
    if (interrupted || died) break;
    const report = await probe();
    const now = Date.now();
    const cpu = cpuSeconds([pid]);
    let fds = NaN;
    try {
      fds = readdirSync(`/proc/${pid}/fd`).length;
    } catch {
      // gone: `died` says why
    }
    const l = latest.load;
    const rssMiB = rssKiB([pid]) / 1024;
    const sample: Sample = {
      t: (now - started) / 1000,
      rssMiB,
      rssOutsideHeapMiB: rssMiB - (report?.heapTotalMiB ?? NaN),
      fds,
      cpuPct: i === 0 ? NaN : ((cpu - lastCpu) / ((now - lastCpuAt) / 1000)) * 100,
      heapUsedMiB: report?.heapUsedMiB ?? NaN,
      heapFloorMiB: report?.heapFloorMiB ?? NaN,
      heapTotalMiB: report?.heapTotalMiB ?? NaN,
      externalMiB: report?.externalMiB ?? NaN,
      loopP50Ms: report?.loopP50Ms ?? NaN,
      loopP99Ms: report?.loopP99Ms ?? NaN,
      loopMaxMs: report?.loopMaxMs ?? NaN,
      resources: report?.resources ?? NaN,
      open: l?.open ?? NaN,
      tunnelsOpened: l?.tunnelsOpened ?? NaN,
      tunnelsCompleted: l?.tunnelsCompleted ?? NaN,
      tunnelErrors: l?.tunnelErrors ?? NaN,
      echoes: l?.echoes ?? NaN,
      httpRequests: l?.httpRequests ?? NaN,
      httpErrors: l?.httpErrors ?? NaN,
      httpReconnects: l?.httpReconnects ?? NaN,
      logLines: gatewayLog.count,
    };
    lastCpu = cpu;
    lastCpuAt = now;
    samples.push(sample);
    appendFileSync(`${out}.csv`, `${COLUMNS.map(([k, , d]) => (Number.isFinite(sample[k]) ? sample[k].toFixed(d) : '')).join(',')}\n`);
    process.stderr.write(
      `[${fmt(sample.t, 0).padStart(5)} s] rss ${fmt(sample.rssMiB, 1)} MiB  heap ${fmt(sample.heapFloorMiB, 1)}/${fmt(sample.heapUsedMiB, 1)} MiB  fds ${sample.fds}  ` +
        `loop p99 ${fmt(sample.loopP99Ms, 2)} ms  cpu ${fmt(sample.cpuPct, 0)}%  tunnels: ${sample.open} open, ${sample.tunnelsCompleted} done, ${sample.tunnelErrors} errors  ` +
        `http: ${sample.httpRequests} requests, ${sample.httpErrors} errors\n`,
    );
  }

  const gatewayAlive = gateway.exitCode === null && gateway.signalCode === null;
  const diedDuringRun: string | null = died; // stopping the children below sets `died` too
  const finalLoad = latest.load;
  for (const child of [...children].reverse()) await stopChild(child);
  httpServer.closeAllConnections();
  await new Promise((r) => httpServer.close(r));

  if (interrupted) failures.push('interrupted');
  if (diedDuringRun) failures.push(diedDuringRun);
  if (!gatewayAlive && !diedDuringRun) failures.push('the gateway was not running at the end');
  const pass = report(samples, failures, finalLoad, gatewayLog, `\`${command}\` on ${new Date(started).toISOString()}`);
  process.stderr.write(`soak: wrote ${out}.csv, ${out}.md, ${out}-{${METRICS.map((m) => m.file).join(',')}}.svg\n`);
  return interrupted ? 130 : pass ? 0 : 1;
}

/** Judges `samples`, prints the verdict table, writes OUT.md and the charts; true on pass. */
function report(samples: Sample[], failures: string[], finalLoad: LoadReport | null, gatewayLog: { lines: string[]; count: number }, source: string): boolean {
  const trends = new Map<Metric, Trend>();
  for (const m of METRICS) {
    const trend = judge(samples.map((s) => [s.t, s[m.key]]), warmupSeconds, m.floor);
    trends.set(m, trend);
    if (!trend.pass) failures.push(trend.samples < 3 ? `${m.name}: only ${trend.samples} samples after the warm-up` : `${m.name} grew ${fmt(trend.growth, 2)} ${m.unit} (allowed ${fmt(trend.allowed, 2)})`);
  }
  const silent = samples.filter((s) => !Number.isFinite(s.heapUsedMiB)).length;
  if (silent > 0) failures.push(`the gateway did not answer the probe within ${REPORT_TIMEOUT_MS / 1000} s in ${silent} of ${samples.length} samples (event loop blocked?)`);
  const after = samples.filter((s) => s.t >= warmupSeconds);
  // a stall: an interval that should have seen at least 2 completions saw none
  const checkTunnels = churnPerSec * args.interval >= 2;
  const checkHttp = args.httpRate * args.interval >= 2;
  for (let i = 1; i < after.length; i++) {
    if ((checkTunnels && !(after[i].tunnelsCompleted > after[i - 1].tunnelsCompleted)) || (checkHttp && !(after[i].httpRequests > after[i - 1].httpRequests))) {
      failures.push(`the load stalled between ${fmt(after[i - 1].t, 0)} s and ${fmt(after[i].t, 0)} s`);
      break;
    }
  }
  const openLevel = after.length ? [...after.map((s) => s.open)].sort((a, b) => a - b)[Math.floor(after.length / 2)] : 0;
  if (!(openLevel >= 0.9 * args.tunnels)) failures.push(`median open tunnels ${openLevel} < 90% of ${args.tunnels}`);
  const errors = (finalLoad?.tunnelErrors ?? 0) + (finalLoad?.httpErrors ?? 0);
  const operations = (finalLoad?.tunnelsCompleted ?? 0) + (finalLoad?.httpRequests ?? 0);
  if (errors > 0.001 * operations) failures.push(`${errors} errors in ${operations} tunnels and requests (> 0.1%)`);
  const pass = failures.length === 0;

  const at = (t: number) => samples.find((s) => s.t >= t) ?? samples[samples.length - 1];
  const first = samples[0];
  const warm = at(warmupSeconds);
  const last = samples[samples.length - 1];
  const label = `${args.minutes} min, ${args.tunnels} tunnels${shortRun ? ' (short run)' : ''}`;
  let text = `wsgate soak: ${label}; churn ${fmt(churnPerSec, 1)} tunnels/s (3 echoes each, ${loadOptions.pingPerSec} pings/s on held tunnels), HTTP ${args.httpRate} req/s on ${args.httpConnections} keep-alive connections\n`;
  text += `judged from ${fmt(warmupSeconds, 0)} s to the end (${trends.get(METRICS[0])!.samples} samples); allowed growth = max(${RELATIVE * 100}% of the level, floor)\n\n`;
  text += `${'metric'.padEnd(28)}${'t=0'.padStart(10)}${'warm-up end'.padStart(13)}${'end'.padStart(10)}${'level'.padStart(10)}${'growth'.padStart(10)}${'allowed'.padStart(10)}  verdict\n`;
  for (const m of METRICS) {
    const tr = trends.get(m)!;
    const d = m.unit === 'fds' ? 0 : 2;
    const v = (s: Sample | undefined) => (s ? fmt(s[m.key], d) : '-');
    text += `${`${m.name} (${m.unit})`.padEnd(28)}${v(first).padStart(10)}${v(warm).padStart(13)}${v(last).padStart(10)}${fmt(tr.level, d).padStart(10)}${fmt(tr.growth, d).padStart(10)}${fmt(tr.allowed, d).padStart(10)}  ${tr.pass ? 'ok' : 'FAIL'}\n`;
  }
  if (finalLoad) {
    const f = finalLoad;
    text += `\ntunnels: ${f.tunnelsOpened} opened, ${f.tunnelsCompleted} completed, ${f.tunnelErrors} errors, ${f.echoes} echoes, median ${openLevel} open; `;
    text += `HTTP: ${f.httpRequests} requests, ${f.httpErrors} errors, ${f.httpReconnects} reconnects; gateway log lines: ${gatewayLog.count}\n`;
    if (Object.keys(f.errorKinds).length) text += `errors by kind: ${Object.entries(f.errorKinds).map(([k, n]) => `${k} ×${n}`).join(', ')}\n`;
  }
  if (gatewayLog.lines.length) text += `last gateway log lines:\n${gatewayLog.lines.map((l) => `  ${l}`).join('\n')}\n`;
  text += `\n${pass ? 'PASS' : `FAIL: ${failures.join('; ')}`}\n`;
  process.stdout.write(`\n${text}`);

  const machine = `${cpus().length} × ${cpus()[0]?.model ?? '?'}, harness node ${process.version}, gateway node ${args.node}`;
  writeFileSync(`${out}.md`, `${source}, ${machine}\n\n\`\`\`\n${text}\`\`\`\n`);
  for (const m of METRICS) {
    const tr = trends.get(m)!;
    const series: LineSeries[] = [
      ...(m.context ?? []).map(([key, name]): LineSeries => ({ label: name, points: samples.map((s) => [s.t / 60, s[key]]), color: '#9aa5ae' })),
      { label: m.name, points: samples.map((s) => [s.t / 60, s[m.key]]), color: '#2a7ab0' },
    ];
    if (tr.samples >= 2) {
      const x0 = warmupSeconds;
      const x1 = last.t;
      series.push({ label: `trend: ${tr.growth >= 0 ? '+' : ''}${fmt(tr.growth, 2)} (allowed ${fmt(tr.allowed, 2)})`, points: [[x0 / 60, tr.intercept + tr.slope * x0], [x1 / 60, tr.intercept + tr.slope * x1]], color: '#c0392b', dashed: true });
    }
    writeFileSync(
      `${out}-${m.file}.svg`,
      lineChart(`wsgate soak, ${label}: ${m.name} — ${tr.pass ? 'ok' : 'FAIL'}`, { xLabel: 'minutes', yLabel: m.unit, series, shadeTo: warmupSeconds / 60, shadeLabel: 'warm-up' }),
    );
  }
  return pass;
}

/** --charts-from: judges a CSV of an earlier run again and redraws OUT.md and the charts (pass the run's --minutes and --tunnels). */
function redraw(file: string): number {
  const [header, ...rows] = readFileSync(file, 'utf8').trim().split('\n');
  const keyOf = new Map(COLUMNS.map(([key, column]) => [column, key]));
  const columns = header.split(',').map((c) => keyOf.get(c));
  const samples = rows.map((row) => {
    const sample = {} as Sample;
    row.split(',').forEach((v, i) => {
      const key = columns[i];
      if (key !== undefined) (sample as unknown as Record<string, number>)[key] = v === '' ? NaN : Number(v);
    });
    return sample;
  });
  const last = samples[samples.length - 1];
  const finalLoad = last ? { ...last, opening: 0, closing: 0, errorKinds: {} } : null;
  const pass = report(samples, [], finalLoad, { lines: [], count: last?.logLines ?? 0 }, `redrawn from ${relative(ROOT, resolve(file))} by \`${command}\``);
  process.stderr.write(`soak: wrote ${out}.md, ${out}-{${METRICS.map((m) => m.file).join(',')}}.svg\n`);
  return pass ? 0 : 1;
}

(args.chartsFrom ? Promise.resolve(redraw(args.chartsFrom)) : main()).then(
  (code) => process.exit(code),
  async (err) => {
    process.stderr.write(`soak: ${(err as Error).stack}\n`);
    for (const child of [...children].reverse()) await stopChild(child);
    process.exit(1);
  },
);
