#!/usr/bin/env node
// `npm test` runs the tests compiled to dist/test/ (tap starts plain
// JavaScript in a fraction of the time a TypeScript loader takes per file).
// tsc never deletes what it emitted for a source that is gone, so a test
// file removed or renamed in test/ would go on running from dist/test/.
// This removes each compiled file whose source no longer exists; run before
// tsc (package.json's pretest).
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const built = join(root, 'dist', 'test');
if (existsSync(built)) {
  for (const file of readdirSync(built, { recursive: true, encoding: 'utf8' })) {
    const source = /^(.*)\.(?:js|js\.map|d\.ts|d\.ts\.map)$/.exec(file);
    if (source && !existsSync(join(root, 'test', `${source[1]}.ts`))) {
      rmSync(join(built, file));
      console.log(`removed ${relative(root, join(built, file))} (its source is gone)`);
    }
  }
}
