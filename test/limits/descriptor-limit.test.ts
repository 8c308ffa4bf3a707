// The descriptor guard: the limit read from /proc/self/limits, the reserve, and
// when the rest of the process is measured.
import t from 'tap';
import { readdirSync } from 'node:fs';
import { DescriptorLimit, countOpenDescriptors, readDescriptorLimit, type DescriptorHolder } from '../../lib/limits/descriptor-limit.js';

const LIMITS = `Limit                     Soft Limit           Hard Limit           Units
Max processes             63432                63432                processes
Max open files            1024                 524288               files
Max locked memory         8388608              8388608              bytes
`;

/** A gateway holding `connections` client connections (two each reserved, `withUpstream` of them holding two). */
function holder(state: { connections: number; withUpstream: number }): DescriptorHolder {
  return {
    descriptorsReserved: () => 1 + 2 * state.connections,
    descriptorsHeld: () => 1 + state.connections + state.withUpstream,
  };
}

t.test('the soft limit is read from "Max open files"; no such line means no limit', async (t) => {
  t.equal(readDescriptorLimit(LIMITS), 1024);
  t.equal(readDescriptorLimit('Max processes 10 10 processes\n'), Infinity);
  t.ok(readDescriptorLimit() > 0, `this process: ${readDescriptorLimit()}`);
});

t.test('the reserve is 32 descriptors, or a quarter of a limit under 128', async (t) => {
  t.equal(new DescriptorLimit({ limit: 1024, countOpen: () => 0 }).reserve, 32);
  t.equal(new DescriptorLimit({ limit: 64, countOpen: () => 0 }).reserve, 16);
  t.equal(new DescriptorLimit({ limit: 64, countOpen: () => 0 }).ceiling, 48);
});

t.test('admits a connection while its two descriptors fit under limit - reserve, counting the rest of the process as measured', async (t) => {
  let open = 21; // 20 of the process + the socket being admitted
  const d = new DescriptorLimit({ limit: 64, countOpen: () => open, clock: () => 0 });
  const state = { connections: 0, withUpstream: 0 };
  const h = holder(state);
  let admitted = 0;
  while (d.admits(h)) {
    state.connections++;
    admitted++;
  }
  // others = 21 - 1 - 1 (the listener) = 19; 1 + 2n + 2 + 19 <= 48 -> n <= 13
  t.equal(admitted, 14);
  t.equal(d.estimate(h), 1 + 2 * 14 + 19);
  open = 0;
  t.notOk(d.admits(h), 'no new measure within the second');
});

t.test('past half the ceiling the rest of the process is measured again, at most once a second', async (t) => {
  let now = 0;
  let measures = 0;
  let others = 10;
  const state = { connections: 0, withUpstream: 0 };
  const h = holder(state);
  const d = new DescriptorLimit({ limit: 1000, reserve: 0, clock: () => now, countOpen: () => (measures++, others + 1 + h.descriptorsHeld()) });
  t.ok(d.admits(h));
  t.equal(measures, 1, 'measured on the first admission');
  state.connections = 300;
  state.withUpstream = 100;
  now = 5000;
  t.ok(d.admits(h), 'below half: 1 + 600 + 2 + 10 > 500, measured');
  t.equal(measures, 2);
  others = 500; // the application opened 490 files
  now = 5500;
  t.ok(d.admits(h), 'within the second: the old measure stands');
  t.equal(measures, 2);
  now = 6000;
  t.notOk(d.admits(h), 'a second later: measured again, 603 + 500 > 1000');
  t.equal(measures, 3);
  t.equal(d.estimate(h), 601 + 500);
});

t.test('no limit or no /proc: no guard, or only what the gateway holds counts', async (t) => {
  const h = holder({ connections: 1e6, withUpstream: 0 });
  t.ok(new DescriptorLimit({ limit: Infinity }).admits(h));
  const small = holder({ connections: 10, withUpstream: 0 });
  const d = new DescriptorLimit({ limit: 64, countOpen: () => { throw new Error('ENOENT'); } });
  t.ok(d.admits(small), '1 + 20 + 2 <= 48');
  t.notOk(d.admits(holder({ connections: 23, withUpstream: 0 })), '1 + 46 + 2 > 48');
});

t.test('countOpenDescriptors agrees with a listing of /proc/self/fd', async (t) => {
  const listed = readdirSync('/proc/self/fd').length - 1;
  t.ok(Math.abs(countOpenDescriptors() - listed) <= 1, `${countOpenDescriptors()} counted, ${listed} listed`);
});
