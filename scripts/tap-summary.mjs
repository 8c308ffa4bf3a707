#!/usr/bin/env node
// Reads TAP logs written by `npm test` (tap's TAP reporter output) and prints
// the plain `N passed, N failed` line CI reads. A test is one named t.test()
// of a test file (the first level of subtests); a file that fails without a
// failing subtest (a crash, a timeout) counts as one failure.
//
// Under each FAILED line it prints the failing assertions inside that test
// with tap's diagnostics (found, wanted, message, at), so a CI log alone says
// what went wrong.
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
  let since = 0; // where the current first-level subtest's lines begin
  lines.forEach((line, at) => {
    if (/^ {4}# Subtest: /.test(line)) since = at;
    // a file's own subtests are indented by exactly four spaces
    const sub = /^ {4}(not ok|ok) \d+ - (.*?)(?: # (SKIP|TODO)\b.*| # time=.*)?$/.exec(line);
    if (sub) {
      if (sub[3] === 'SKIP' || sub[3] === 'TODO') skipped++;
      else if (sub[1] === 'ok') passed++;
      else {
        failed++;
        fileFailures++;
        failures.push(`${file}: ${sub[2]}\n${details(lines.slice(since, at))}`);
      }
      return;
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
  });
}

/** The failing assertions among a subtest's lines, each with its YAML block, at most 60 lines. */
function details(lines) {
  const out = [];
  for (let i = 0; i < lines.length; i++) {
    if (!/^\s+not ok \d+ - /.test(lines[i])) continue;
    out.push(lines[i]);
    if (/^\s+---$/.test(lines[i + 1] ?? '')) {
      for (i++; i < lines.length && !/^\s+\.\.\.$/.test(lines[i]); i++) out.push(lines[i]);
    }
  }
  const shown = out.slice(0, 60).map((l) => `    ${l.trim().length > 300 ? `${l.trim().slice(0, 300)}...` : l.trimEnd()}`);
  if (out.length > 60) shown.push(`    (${out.length - 60} more lines)`);
  return shown.join('\n');
}

for (const f of failures) console.log(`FAILED ${f}`);
if (skipped) console.log(`${skipped} skipped (a fast path this run has off, or a test marked SKIP)`);
console.log(`${passed} passed, ${failed} failed`);
