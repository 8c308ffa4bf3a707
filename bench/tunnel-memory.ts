// What one idle tunnel costs in memory, and where it goes: the gateway runs in
// a fresh child process (the Node binary of your choice), N tunnels are opened
// through it to a raw upstream that answers every upgrade with a 101, and the
// child reports the growth of each memory figure per tunnel: RSS, V8 heap
// (used, and each space's size: new space growing is V8 widening its nursery
// during the burst, not live objects), external memory (read buffers), and,
// with --snapshot, the heap objects per tunnel by constructor. With --message
// BYTES each tunnel first carries that many bytes up and back (the upstream
// echoes them), so the figures are those of tunnels idle after a message of
// that size rather than right after the handshake. With --relay the child is not
// wsgate but a blind relay, for comparison: `sockets` keeps two net.Sockets piped
// (the bare relay, lib/naive-relay.ts), `handles` keeps only the two TCP handles (lib/handle-relay.ts,
// an experiment below Node's public API).
// usage: node dist/bench/tunnel-memory.js [--tunnels N] [--message BYTES] [--node PATH] [--snapshot] [--node-flags "..."] [--relay wsgate|sockets|handles] [--settle-ms MS]

import { fork } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import v8 from 'node:v8';

type Figures = Record<string, number>;

const SWITCHING = 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n';
const UPGRADE = 'GET /ws HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n';

function memoryFigures(): Figures {
  const m: Figures = { ...process.memoryUsage() };
  for (const space of v8.getHeapSpaceStatistics()) m[space.space_name] = space.space_size;
  return m;
}

/** Self size and count of heap objects by constructor, from a snapshot file. */
function objectsByConstructor(file: string): Map<string, { count: number; bytes: number }> {
  const snap = JSON.parse(readFileSync(file, 'utf8')) as {
    snapshot: { meta: { node_fields: string[]; node_types: [string[]] } };
    nodes: number[];
    strings: string[];
  };
  const fields = snap.snapshot.meta.node_fields;
  const types = snap.snapshot.meta.node_types[0];
  const [iType, iName, iSize] = ['type', 'name', 'self_size'].map((f) => fields.indexOf(f));
  const out = new Map<string, { count: number; bytes: number }>();
  for (let i = 0; i < snap.nodes.length; i += fields.length) {
    const type = types[snap.nodes[i + iType]];
    const key = type === 'object' || type === 'closure' ? `${type} ${snap.strings[snap.nodes[i + iName]]}` : type;
    const entry = out.get(key) ?? { count: 0, bytes: 0 };
    entry.count++;
    entry.bytes += snap.nodes[i + iSize];
    out.set(key, entry);
  }
  return out;
}

/** The process under measurement: wsgate, or a relay to compare it with; resolves to its port. */
async function startRelay(kind: string, upstreamPort: number): Promise<number> {
  if (kind === 'handles' || kind === 'sockets') {
    const server =
      kind === 'handles'
        ? await (await import('./lib/handle-relay.js')).startHandleRelay(0, upstreamPort)
        : await (await import('./lib/naive-relay.js')).startNaiveRelay(0, upstreamPort);
    return (server.address() as net.AddressInfo).port;
  }
  const { createGateway } = await import('../lib/index.js');
  const gw = createGateway({ routes: { '/': `http://127.0.0.1:${upstreamPort}` }, checkWebSocketAccept: false });
  return (await gw.listen(0, '127.0.0.1')).port;
}

async function gatewayChild(): Promise<void> {
  const address = { port: await startRelay(process.argv[4] ?? 'wsgate', Number(process.argv[3])) };
  let snapshotBefore: string | null = null;
  process.on('message', (message: string) => {
    globalThis.gc?.();
    globalThis.gc?.();
    if (message === 'figures') process.send!({ figures: memoryFigures() });
    if (message === 'snapshot-before') process.send!({ snapshot: (snapshotBefore = v8.writeHeapSnapshot(join(tmpdir(), `wsgate-tm-before-${process.pid}.heapsnapshot`))) });
    if (message === 'snapshot-after') process.send!({ snapshot: v8.writeHeapSnapshot(join(tmpdir(), `wsgate-tm-after-${process.pid}.heapsnapshot`)) });
  });
  process.send!({ port: address.port, snapshotBefore });
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const option = (name: string, fallback: string) => {
    const at = args.indexOf(name);
    return at >= 0 ? args[at + 1] : fallback;
  };
  const tunnels = Number(option('--tunnels', '4000'));
  const nodeBinary = option('--node', process.execPath);
  const snapshot = args.includes('--snapshot');
  const nodeFlags = option('--node-flags', '').split(' ').filter(Boolean);
  const message = Buffer.alloc(Number(option('--message', '0')), 'm');
  const relay = option('--relay', 'wsgate');
  const settleMs = Number(option('--settle-ms', '1000')); // how long the tunnels sit idle before the figures

  const upstream = net.createServer({ allowHalfOpen: true }, (socket) => {
    socket.on('error', () => {});
    socket.once('data', () => {
      socket.write(SWITCHING);
      socket.on('data', (d: Buffer) => socket.write(d)); // the tunnel's bytes: echoed
    });
  });
  upstream.listen(0, '127.0.0.1');
  await once(upstream, 'listening');
  const child = fork(fileURLToPath(import.meta.url), ['child', String((upstream.address() as net.AddressInfo).port), relay], {
    execPath: nodeBinary,
    execArgv: ['--expose-gc', ...nodeFlags],
  });
  const next = async () => ((await once(child, 'message')) as [Record<string, unknown>])[0];
  const ask = async (what: string) => {
    child.send(what);
    return next();
  };
  const { port } = (await next()) as { port: number };
  await new Promise((r) => setTimeout(r, 300));
  const before = ((await ask('figures')) as { figures: Figures }).figures;
  const snapBefore = snapshot ? ((await ask('snapshot-before')) as { snapshot: string }).snapshot : null;

  const clients: net.Socket[] = [];
  for (let opened = 0; opened < tunnels; ) {
    const batch = Math.min(100, tunnels - opened);
    await Promise.all(
      Array.from({ length: batch }, () =>
        new Promise<void>((resolve, reject) => {
          const socket = net.connect(port, '127.0.0.1', () => socket.write(UPGRADE));
          socket.once('data', (d: Buffer) => {
            if (!d.toString('latin1').startsWith('HTTP/1.1 101')) return reject(new Error(d.toString('latin1')));
            if (message.length === 0) return resolve();
            let echoed = 0;
            socket.on('data', (e: Buffer) => {
              echoed += e.length;
              if (echoed >= message.length) resolve();
            });
            socket.write(message);
          });
          socket.once('error', reject);
          clients.push(socket);
        }),
      ),
    );
    opened += batch;
  }
  await new Promise((r) => setTimeout(r, settleMs));
  const after = ((await ask('figures')) as { figures: Figures }).figures;
  const perTunnelKB = (key: string) => ((after[key] - before[key]) / tunnels / 1024).toFixed(2);
  const version = (await import('node:child_process')).execFileSync(nodeBinary, ['--version']).toString().trim();
  const idleAfter = message.length > 0 ? `, idle after one ${message.length} B message each way` : '';
  console.log(`${tunnels} idle tunnels through ${relay === 'wsgate' ? 'wsgate' : `the ${relay} relay`} on Node ${version}${nodeFlags.length ? ` (${nodeFlags.join(' ')})` : ''}${idleAfter}: growth per tunnel, KB`);
  console.log('| rss | heap used | new space | old space | external (read buffers) |');
  console.log('| ---: | ---: | ---: | ---: | ---: |');
  console.log(`| ${perTunnelKB('rss')} | ${perTunnelKB('heapUsed')} | ${perTunnelKB('new_space')} | ${perTunnelKB('old_space')} | ${perTunnelKB('external')} |`);

  if (snapBefore !== null) {
    const snapAfter = ((await ask('snapshot-after')) as { snapshot: string }).snapshot;
    const a = objectsByConstructor(snapBefore);
    const b = objectsByConstructor(snapAfter);
    const rows = [...b]
      .map(([key, v]) => ({ key, count: v.count - (a.get(key)?.count ?? 0), bytes: v.bytes - (a.get(key)?.bytes ?? 0) }))
      .filter((r) => r.bytes / tunnels >= 8)
      .sort((x, y) => y.bytes - x.bytes);
    console.log('\nheap objects added per tunnel (self size, from two heap snapshots):\n');
    console.log('| objects | per tunnel | bytes per tunnel |');
    console.log('| --- | ---: | ---: |');
    for (const r of rows) console.log(`| ${r.key} | ${(r.count / tunnels).toFixed(2)} | ${(r.bytes / tunnels).toFixed(0)} |`);
    rmSync(snapBefore, { force: true });
    rmSync(snapAfter, { force: true });
  }
  child.kill();
  for (const socket of clients) socket.destroy();
  upstream.close();
}

if (process.argv[2] === 'child') await gatewayChild();
else await main();
