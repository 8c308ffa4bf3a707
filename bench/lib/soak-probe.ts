// Preloaded with `node --import` into every child of the soak (bench/soak.ts),
// so lib/ stays untouched:
//   - a watchdog: when the harness is gone (this process was re-parented) or
//     SOAK_DEADLINE (epoch ms) has passed, SIGTERM itself (wsgate drains and
//     exits), then exit hard 15 s later; so no child outlives a killed harness.
//   - in the gateway only (SOAK_PROBE_FD set): on each SIGUSR2 from the harness
//     (so the report lines up with its /proc sample) one JSON line on that
//     descriptor with the JS heap and the event-loop delay since the previous
//     report. heapFloorMiB is the least heapUsed seen by a 1 s sampler over
//     that time: close to the live heap after a GC, where a single heapUsed
//     reading lands anywhere on the allocation sawtooth.
// Timers are unref'd and signal handlers hold no reference: the probe never
// keeps a process alive.

import { writeSync } from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';

const MIB = 1024 * 1024;
const RESOLUTION_MS = 10; // monitorEventLoopDelay's default; every recorded value includes it
const parentPid = process.ppid;
const deadline = Number(process.env.SOAK_DEADLINE ?? Infinity);
const fd = process.env.SOAK_PROBE_FD === undefined ? null : Number(process.env.SOAK_PROBE_FD);

let terminating = false;
setInterval(() => {
  if (terminating || (process.ppid === parentPid && Date.now() < deadline)) return;
  terminating = true;
  process.kill(process.pid, 'SIGTERM');
  setTimeout(() => process.exit(1), 15_000).unref();
}, 1000).unref();

if (fd !== null) {
  const delay = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
  delay.enable();
  let heapFloor = Infinity;
  setInterval(() => {
    heapFloor = Math.min(heapFloor, process.memoryUsage().heapUsed);
  }, 1000).unref();
  const beyondResolution = (ns: number) => Math.max(0, ns / 1e6 - RESOLUTION_MS);
  process.on('SIGUSR2', () => {
    const m = process.memoryUsage();
    heapFloor = Math.min(heapFloor, m.heapUsed);
    const report = {
      t: Date.now(),
      heapUsedMiB: m.heapUsed / MIB,
      heapFloorMiB: heapFloor / MIB,
      heapTotalMiB: m.heapTotal / MIB,
      externalMiB: m.external / MIB,
      loopP50Ms: beyondResolution(delay.percentile(50)),
      loopP99Ms: beyondResolution(delay.percentile(99)),
      loopMaxMs: beyondResolution(delay.max),
      resources: process.getActiveResourcesInfo().length,
    };
    delay.reset();
    heapFloor = Infinity;
    try {
      writeSync(fd, `${JSON.stringify(report)}\n`);
    } catch {
      // the harness is gone (the watchdog ends this process) or slow to read (it waits for the next report)
    }
  });
}
