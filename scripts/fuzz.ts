// The long fuzz run (issue #6): the properties of test/fuzz/*.fuzz.test.ts with
// many more runs and a seed of your choice. Prints the seed first; a failure
// prints fast-check's seed, path and (shrunk) counterexample.
//
//   npm run fuzz                          # 20000 runs per property, random seed
//   npm run fuzz -- --runs 5000 --seed 42 --only proxy
//   FUZZ_SEED=42 FUZZ_RUNS=5000 npm run fuzz
//   npm run fuzz -- --known-bugs          # do not skip the reported lib bugs (KNOWN_BUGS)
import { spawnSync } from 'node:child_process';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    runs: { type: 'string' },
    seed: { type: 'string' },
    only: { type: 'string' },
    'known-bugs': { type: 'boolean', default: false },
    'no-shrink': { type: 'boolean', default: false },
  },
});

const seed = values.seed ?? process.env.FUZZ_SEED ?? String(Math.floor(Math.random() * 2 ** 31));
const runs = values.runs ?? process.env.FUZZ_RUNS ?? '20000';
const files = ['test/fuzz/head-reader.fuzz.test.ts', 'test/fuzz/proxy.fuzz.test.ts'].filter((f) => values.only === undefined || f.includes(values.only));
if (files.length === 0) {
  console.error(`--only ${values.only}: no such fuzz file (head-reader, proxy)`);
  process.exit(2);
}
console.log(`fuzz: seed ${seed}, ${runs} runs per property, ${files.join(' ')}`);
const result = spawnSync('npx', ['tap', '--timeout=0', '--jobs=1', ...files], {
  stdio: 'inherit',
  env: {
    ...process.env,
    FUZZ_SEED: seed,
    FUZZ_RUNS: runs,
    FUZZ_KNOWN_BUGS: values['known-bugs'] ? '1' : '',
    FUZZ_NO_SHRINK: values['no-shrink'] ? '1' : '',
  },
});
console.log(`fuzz: seed ${seed} ${result.status === 0 ? 'passed' : 'FAILED (rerun with --seed ' + seed + ')'}`);
process.exit(result.status ?? 1);
