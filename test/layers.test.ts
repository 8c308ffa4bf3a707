// The folder list of lib/ is the architecture, and imports run one way:
//   lib/ (face, config, gateway) -> listen/, proxy/ -> http/, upstream/, tunnel/, limits/ -> io/ -> core/
// A file may import its own folder and any folder below it, never one above
// it or a sibling layer (the tunnel knows nothing of HTTP), and no import
// cycle exists anywhere. The one exception: the config model's types
// (`import type` from lib/config.ts), which every layer reads.
import t from 'tap';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { repoPath } from './helpers/paths.js';

const LIB = repoPath('lib');

/** Layer rank per folder: an import must go to the same folder or a higher rank. */
const RANK: Record<string, number> = {
  '.': 0,
  listen: 1,
  proxy: 1,
  http: 2,
  upstream: 2,
  tunnel: 2,
  limits: 2,
  io: 3,
  core: 4,
};

interface Import {
  readonly from: string;
  readonly to: string;
  readonly typeOnly: boolean;
  readonly line: number;
}

function libFiles(): string[] {
  return readdirSync(LIB, { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))
    .map((f) => normalize(f));
}

function importsOf(file: string): Import[] {
  const text = readFileSync(join(LIB, file), 'utf8');
  const found: Import[] = [];
  const pattern = /^\s*(import|export)\s+(type\s+)?[^;]*?from\s+'(\.{1,2}\/[^']+)\.js'/gms;
  for (const m of text.matchAll(pattern)) {
    const to = normalize(join(dirname(file), `${m[3]}.ts`));
    const line = text.slice(0, m.index).split('\n').length;
    found.push({ from: file, to, typeOnly: m[2] !== undefined, line });
  }
  return found;
}

const folderOf = (file: string) => (dirname(file) === '.' ? '.' : dirname(file).split('/')[0]);

const files = libFiles();
const graph = new Map(files.map((f) => [f, importsOf(f)]));

t.test('every folder of lib/ has a layer', async (t) => {
  const folders = [...new Set(files.map(folderOf))].sort();
  for (const folder of folders) t.ok(folder in RANK, `lib/${folder} has a rank`);
});

t.test('imports run down the layers, never up or sideways', async (t) => {
  const against: string[] = [];
  for (const [file, imports] of graph) {
    for (const imp of imports) {
      t.ok(graph.has(imp.to), `lib/${file}:${imp.line} imports lib/${imp.to}, which exists`);
      const from = folderOf(file);
      const to = folderOf(imp.to);
      if (from === to) continue;
      if (imp.typeOnly && imp.to === 'config.ts') continue; // the config model's types
      if (!(RANK[to] > RANK[from])) against.push(`lib/${file}:${imp.line} -> lib/${imp.to} (${from} may not import ${to})`);
    }
  }
  t.same(against, [], 'no import against the layers');
});

t.test('no import cycle (type imports included)', async (t) => {
  const cycles: string[] = [];
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (file: string) => {
    state.set(file, 'open');
    stack.push(file);
    for (const imp of graph.get(file) ?? []) {
      if (imp.typeOnly && imp.to === 'config.ts') continue;
      const s = state.get(imp.to);
      if (s === 'open') cycles.push([...stack.slice(stack.indexOf(imp.to)), imp.to].map((f) => relative('.', f)).join(' -> '));
      else if (s === undefined && graph.has(imp.to)) visit(imp.to);
    }
    stack.pop();
    state.set(file, 'done');
  };
  for (const file of files) if (!state.has(file)) visit(file);
  t.same(cycles, [], 'the import graph of lib/ has no cycle');
});

t.test('the checker sees imports: the gateway imports the request path, the request path the protocol steps', async (t) => {
  t.ok(graph.get('gateway.ts')!.some((i) => i.to === join('proxy', 'connection.ts')));
  t.ok(graph.get(join('proxy', 'exchange.ts'))!.some((i) => i.to === join('http', 'headers.ts')));
  t.ok(graph.get(join('tunnel', 'tunnel.ts'))!.every((i) => !i.to.startsWith('http')), 'the tunnel imports nothing of HTTP');
});
