// Where the repository is, for tests that read its files (README, examples,
// lib/'s sources) or start the built CLI. Tests run compiled, from
// dist/test/ (see package.json's tap config), and could run from test/ under
// a TypeScript loader: the root is the nearest folder above this file that
// holds package.json, so both work.

import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

function findRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error(`no package.json above ${fileURLToPath(import.meta.url)}`);
    dir = up;
  }
  return dir;
}

/** The repository's root folder. */
export const ROOT = findRoot();

/** A path inside the repository. */
export const repoPath = (...parts: string[]): string => join(ROOT, ...parts);

/** The built CLI (`npm test` builds it first). */
export const CLI = repoPath('dist', 'lib', 'cli.js');
