#!/usr/bin/env node
// Reads TAP logs written by `npm test` (tap's TAP reporter output) and prints
// the plain `N passed, N failed` line CI reads. A test is one named t.test()
// of a test file (the first level of subtests); a file that fails without a
// failing subtest (a crash, a timeout) counts as one failure.
//
// usage: node scripts/tap-summary.mjs LOG [LOG...]
import { readFileSync } from 'node:fs';

let passed = 0;
let failed = 0;
let skipped = 0;
const failures = [];

for (const file of process.argv.slice(2)) {
  const lines = readFileSync(file, 'utf8').split('\n');
  let fileFailures = 0;
  let fileName = '';
  for (const line of lines) {
    // a file's own subtests are indented by exactly four spaces
    const sub = /^ {4}(not ok|ok) \d+ - (.*?)(?: # (SKIP|TODO)\b.*| # time=.*)?$/.exec(line);
    if (sub) {
      if (sub[3] === 'SKIP' || sub[3] === 'TODO') skipped++;
      else if (sub[1] === 'ok') passed++;
      else {
        failed++;
        fileFailures++;
        failures.push(`${file}: ${sub[2]}`);
      }
      continue;
    }
    const top = /^(not ok|ok) \d+ - (\S+)/.exec(line);
    if (top) {
      fileName = top[2];
      if (top[1] === 'not ok' && fileFailures === 0) {
        failed++;
        failures.push(`${file}: ${fileName} (failed outside a subtest)`);
      }
      fileFailures = 0;
    }
  }
}

for (const f of failures) console.log(`FAILED ${f}`);
if (skipped) console.log(`${skipped} skipped (a fast path this run has off, or a test marked SKIP)`);
console.log(`${passed} passed, ${failed} failed`);
