// The fast paths this Node should get from the start-up probe
// (lib/io/node-internals.ts), as a table per Node line: tests that depend on a
// fast path skip when the probe (or WSGATE_FAST_PATHS=off) turned it off, and
// test/io/node-internals.test.ts checks the probe against this table.
import { fastPathsForcedOff, fastPathsTurnedOff, type FastPaths, type WriteContract } from '../../lib/io/node-internals.js';
import { probeFastPaths } from '../../lib/io/probe.js';

/** The handle-write contract each supported Node line uses (Node changed it in 24.22). */
export function expectedWriteContract(version: string = process.versions.node): WriteContract {
  const [major, minor] = version.split('.').map(Number);
  if (major <= 22) return 'request-object';
  if (major === 24) return minor >= 22 ? 'null-request' : 'request-object';
  return 'null-request'; // 26 and later, until a release changes it again (then this table and the probe learn it)
}

/** What the probe should turn on here. */
export function expectedFastPaths(): FastPaths {
  if (fastPathsForcedOff()) return { handleWrites: 'off', pooledReads: false, turnWrites: false, handleTunnels: false };
  const off = fastPathsTurnedOff();
  const handleWrites = off.has('handleWrites') ? 'off' : expectedWriteContract();
  return {
    handleWrites,
    pooledReads: !off.has('pooledReads'),
    turnWrites: handleWrites !== 'off' && !off.has('turnWrites'),
    handleTunnels: handleWrites !== 'off' && !off.has('handleTunnels'),
  };
}

/** Runs the probe (once per process) and returns what it chose. */
export async function probedFastPaths(): Promise<FastPaths> {
  return (await probeFastPaths()).paths;
}
