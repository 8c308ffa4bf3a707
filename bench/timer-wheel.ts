// Micro-benchmark: the timer wheel against one `setTimeout` per entry, at
// 100k and 1M synthetic idle entries (the tunnel timeout of idle connections).
// For each: heap used per entry, CPU while idle (entries armed for an hour,
// nothing fires), and CPU to stamp activity on every entry once (the wheel
// writes a number; a per-socket timer is re-armed with `refresh()`).
// usage: node dist/bench/timer-wheel.js [N ...]   (runs each N in a fresh process)

import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { TimerWheel, WheelTimer, type TimerOwner } from '../lib/core/timer-wheel.js';

const HOUR = 3_600_000;

class IdleOwner implements TimerOwner {
  // A double from the start (as Tunnel does): a Smi 0 here would change the
  // field's representation on the first stamp of Date.now()-sized values.
  lastActive = Date.now();
  onTimerExpired(now: number): number {
    return this.lastActive + HOUR > now ? this.lastActive + HOUR : 0;
  }
}

function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

async function measure(kind: string, n: number): Promise<Record<string, number | string>> {
  globalThis.gc?.();
  const heap0 = process.memoryUsage().heapUsed;
  let stamp: () => void;
  let dispose: () => void;
  if (kind === 'wheel') {
    const wheel = new TimerWheel({ tickMs: 100 });
    const owners: IdleOwner[] = [];
    for (let i = 0; i < n; i++) {
      const owner = new IdleOwner();
      owners.push(owner);
      wheel.arm(new WheelTimer(owner), HOUR);
    }
    stamp = () => {
      for (const o of owners) o.lastActive = wheel.now;
    };
    dispose = () => wheel.clear();
  } else if (kind === 'objects only') {
    // the same number of small objects and no timer at all: the floor for heap and idle CPU
    const owners: IdleOwner[] = [];
    for (let i = 0; i < n; i++) owners.push(new IdleOwner());
    stamp = () => {
      const now = Date.now();
      for (const o of owners) o.lastActive = now;
    };
    dispose = () => (owners.length = 0);
  } else {
    const timers: NodeJS.Timeout[] = [];
    for (let i = 0; i < n; i++) timers.push(setTimeout(() => {}, HOUR));
    stamp = () => {
      for (const t of timers) t.refresh();
    };
    dispose = () => timers.forEach((t) => clearTimeout(t));
  }
  globalThis.gc?.();
  const bytesPerEntry = (process.memoryUsage().heapUsed - heap0) / n;
  // let the allocation's concurrent GC work finish before measuring idle CPU
  await new Promise((r) => setTimeout(r, 2000));
  globalThis.gc?.();
  // and let that GC's concurrent sweeping finish too: its threads' CPU, which
  // grows with the heap, once made 1M entries look 15× costlier while idle
  await new Promise((r) => setTimeout(r, 1500));
  const idle0 = cpuMs();
  await new Promise((r) => setTimeout(r, 3000));
  const idleCpuMsPerSec = (cpuMs() - idle0) / 3;
  const s0 = cpuMs();
  stamp();
  const stampNsPerEntry = ((cpuMs() - s0) * 1e6) / n;
  dispose();
  return { kind, entries: n, bytesPerEntry: Math.round(bytesPerEntry), idleCpuMsPerSec: Number(idleCpuMsPerSec.toFixed(2)), activityNsPerEntry: Number(stampNsPerEntry.toFixed(1)) };
}

const [mode, kind, nText] = process.argv.slice(2);
if (mode === '--child') {
  measure(kind, Number(nText)).then((r) => process.stdout.write(`${JSON.stringify(r)}\n`));
} else {
  const sizes = process.argv.slice(2).map(Number).filter((x) => x > 0);
  const rows: string[] = [];
  for (const n of sizes.length ? sizes : [100_000, 1_000_000]) {
    for (const k of ['objects only', 'wheel', 'setTimeout']) {
      const r = spawnSync(process.execPath, ['--expose-gc', fileURLToPath(import.meta.url), '--child', k, String(n)], { encoding: 'utf8' });
      const result = JSON.parse(r.stdout.trim());
      rows.push(`| ${result.kind} | ${result.entries} | ${result.bytesPerEntry} | ${result.idleCpuMsPerSec} | ${result.activityNsPerEntry} |`);
    }
  }
  process.stdout.write(`| timers | entries | heap bytes/entry | idle CPU ms/s | activity ns/entry |\n| --- | ---: | ---: | ---: | ---: |\n${rows.join('\n')}\n`);
}
