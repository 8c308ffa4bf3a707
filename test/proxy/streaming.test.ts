// Large bodies both ways: content intact (sha256), and the proxy's memory
// bounded by backpressure when the far side is slow. The memory checks run
// the real CLI as a child process and read its RSS from /proc.
import t from 'tap';
import http from 'node:http';
import net from 'node:net';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import { Agent, request as undiciRequest } from 'undici';
import { probedFastPaths } from '../helpers/fast-paths.js';
import { httpUpstream, startGateway, waitFor } from '../helpers/net.js';
import { CLI } from '../helpers/paths.js';

const MiB = 1024 * 1024;
// On Node >= 22 V8 frees socket read buffers lazily: a bare `net` + `pipe`
// relay grows about 77 MiB moving 512 MiB to a slow peer (bench/RESULTS.md),
// so the 64 MiB goal needs pooled read buffers there (issue: benchmark tuning).
// Until then the bound is a known gap on those versions, reported, not hidden.
/**
 * The RSS growth allowed. With pooled read buffers (a fast path) reads reuse
 * the same memory and 64 MiB is the goal. With that path off (the public-API
 * fallback, WSGATE_FAST_PATHS=off) every read is a new buffer that V8 frees
 * only when its external-memory trigger (64 MiB of dead buffers) starts a GC,
 * as in a bare `net` relay: growth then reaches 32-64 MiB, so the bound is
 * 64 MiB plus a margin, and backpressure is checked apart from the GC by the
 * bytes in flight (upload test).
 */
async function rssBound(): Promise<{ limit: number; why: string }> {
  return (await probedFastPaths()).pooledReads
    ? { limit: 64, why: 'pooled reads' }
    : { limit: 96, why: "pooled reads off: dead read buffers wait for V8's 64 MiB external-memory GC trigger" };
}
/**
 * What the kernel alone may hold between a client and an upstream through a
 * proxy, MiB: the client's send buffer, the proxy's receive buffer from it,
 * the proxy's send buffer to the upstream, the upstream's receive buffer,
 * each at its autotuning maximum (tcp_wmem / tcp_rmem; 32 MiB receive buffers
 * on CI machines), plus 8 MiB for what a proxy with backpressure holds.
 */
function inFlightBound(): number {
  const max = (file: string, fallback: number) => {
    try {
      return Number(readFileSync(file, 'latin1').trim().split(/\s+/)[2]) / MiB || fallback;
    } catch {
      return fallback;
    }
  };
  return 2 * max('/proc/sys/net/ipv4/tcp_wmem', 4) + 2 * max('/proc/sys/net/ipv4/tcp_rmem', 6) + 8;
}

/** A deterministic stream of `size` bytes, in 64 KiB chunks, without holding it all. */
function* pattern(size: number): Generator<Buffer> {
  const block = Buffer.alloc(64 * 1024);
  for (let i = 0; i < block.length; i++) block[i] = (i * 31 + 7) & 0xff;
  for (let sent = 0; sent < size; sent += block.length) {
    const chunk = Buffer.from(block.subarray(0, Math.min(block.length, size - sent)));
    chunk[0] = (sent / block.length) & 0xff; // vary per chunk: a reordering changes the hash
    yield chunk;
  }
}

function patternSha(size: number): string {
  const h = createHash('sha256');
  for (const c of pattern(size)) h.update(c);
  return h.digest('hex');
}

async function streamOut(res: http.ServerResponse, size: number) {
  res.setHeader('Content-Length', size);
  for (const chunk of pattern(size)) {
    if (!res.write(chunk)) await once(res, 'drain');
  }
  res.end();
}

t.test('100 MiB each way through the gateway, sha256 checked', async (t) => {
  const size = 100 * MiB;
  const expected = patternSha(size);
  const port = await httpUpstream(t, async (req, res) => {
    if (req.method === 'POST') {
      const h = createHash('sha256');
      let n = 0;
      for await (const c of req) {
        h.update(c as Buffer);
        n += (c as Buffer).length;
      }
      res.end(`${n} ${h.digest('hex')}`);
    } else {
      await streamOut(res, size);
    }
  });
  const { port: gw } = await startGateway(t, { routes: [`/=http://127.0.0.1:${port}`] });
  const agent = new Agent();
  t.teardown(() => agent.close());
  const down = await undiciRequest(`http://127.0.0.1:${gw}/big`, { dispatcher: agent });
  const h = createHash('sha256');
  let got = 0;
  for await (const c of down.body) {
    h.update(c);
    got += c.length;
  }
  t.equal(got, size, 'download length');
  t.equal(h.digest('hex'), expected, 'download sha256');
  const up = await undiciRequest(`http://127.0.0.1:${gw}/big`, { method: 'POST', body: Readable.from(pattern(size)), headers: { 'content-length': String(size) }, dispatcher: agent });
  t.equal(await up.body.text(), `${size} ${expected}`, 'upload length and sha256 (Content-Length)');
  const chunked = await undiciRequest(`http://127.0.0.1:${gw}/big`, { method: 'POST', body: Readable.from(pattern(size)), dispatcher: agent });
  t.equal(await chunked.body.text(), `${size} ${expected}`, 'upload length and sha256 (chunked)');
});

function rssKiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : 0;
}

async function startCli(t: { teardown(fn: () => unknown): void }, upstreamPort: number) {
  const child = spawn(process.execPath, [CLI, '--listen', '127.0.0.1:0', '--route', `/=http://127.0.0.1:${upstreamPort}`, '--log-level', 'error'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  t.teardown(() => child.kill('SIGKILL'));
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  await waitFor(() => /listening on/.test(out), 10_000, 'cli listening');
  return { child, port: Number(/:(\d+)\n/.exec(out)![1]) };
}

/** Samples the child's RSS until `done` resolves; returns the largest growth over `base` in MiB. */
async function peakGrowth(pid: number, base: number, done: Promise<unknown>): Promise<number> {
  let peak = base;
  let finished = false;
  void done.then(() => (finished = true));
  while (!finished) {
    peak = Math.max(peak, rssKiB(pid));
    await new Promise((r) => setTimeout(r, 20));
  }
  return (peak - base) / 1024;
}

t.test('a slow client downloading 128 MiB keeps the proxy RSS growth under 64 MiB', async (t) => {
  const size = 128 * MiB;
  const port = await httpUpstream(t, (_req, res) => void streamOut(res, size));
  const { child, port: gw } = await startCli(t, port);
  // warm up the code paths, then take the baseline
  const warm = net.connect(gw, '127.0.0.1');
  warm.write('GET /warm HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n');
  warm.resume();
  await once(warm, 'close');
  const base = rssKiB(child.pid!);

  const client = net.connect(gw, '127.0.0.1');
  client.write('GET /big HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n');
  let received = 0;
  const h = createHash('sha256');
  let headDone = false;
  let pending = Buffer.alloc(0);
  client.on('data', (c: Buffer) => {
    if (!headDone) {
      pending = Buffer.concat([pending, c]);
      const end = pending.indexOf('\r\n\r\n');
      if (end === -1) return;
      headDone = true;
      c = pending.subarray(end + 4);
    }
    received += c.length;
    h.update(c);
  });
  // read in short bursts: far slower than the upstream can send
  client.pause();
  const reader = setInterval(() => {
    client.resume();
    setTimeout(() => client.pause(), 3);
  }, 12);
  const done = once(client, 'end');
  const growth = await peakGrowth(child.pid!, base, done);
  clearInterval(reader);
  t.equal(received, size);
  t.equal(h.digest('hex'), patternSha(size));
  const bound = await rssBound();
  t.ok(growth < bound.limit, `RSS grew ${growth.toFixed(1)} MiB (limit ${bound.limit}: ${bound.why})`);
  client.destroy();
});

t.test('a fast client uploading 128 MiB to a slow upstream keeps the proxy RSS growth under 64 MiB', async (t) => {
  // Without backpressure nearly the whole body waits in the proxy (116 MiB of 128 measured with the pause removed):
  // the body is at least 1.5 times what the kernel may hold, so that shows above the bound.
  const bound = inFlightBound();
  const size = Math.max(128, Math.ceil(bound * 1.5)) * MiB;
  let upstreamGot = 0;
  const port = await httpUpstream(t, (req, res) => {
    req.pause();
    const reader = setInterval(() => {
      req.resume();
      setTimeout(() => req.pause(), 3);
    }, 12);
    req.on('data', (c: Buffer) => (upstreamGot += c.length));
    req.on('end', () => {
      clearInterval(reader);
      res.end(`got ${upstreamGot}`);
    });
  });
  const { child, port: gw } = await startCli(t, port);
  const warm = net.connect(gw, '127.0.0.1');
  warm.write('POST /warm HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
  warm.resume();
  await once(warm, 'close');
  upstreamGot = 0;
  const base = rssKiB(child.pid!);

  const client = net.connect(gw, '127.0.0.1');
  let answer = '';
  client.on('data', (c) => (answer += c));
  const done = once(client, 'end');
  // bytes the client has handed the kernel but the upstream has not read yet:
  // socket buffers on both legs plus what the proxy holds. Without
  // backpressure the proxy's share grows toward the whole body.
  let sent = 0;
  let inFlight = 0;
  const writer = (async () => {
    client.write(`POST /big HTTP/1.1\r\nHost: a\r\nContent-Length: ${size}\r\nConnection: close\r\n\r\n`);
    for (const chunk of pattern(size)) {
      const more = client.write(chunk);
      sent += chunk.length;
      inFlight = Math.max(inFlight, sent - client.writableLength - upstreamGot);
      if (!more) await once(client, 'drain');
    }
  })();
  const growth = await peakGrowth(child.pid!, base, Promise.all([done, writer]));
  t.match(answer, new RegExp(`got ${size}$`));
  t.ok(inFlight < bound * MiB, `at most ${(inFlight / MiB).toFixed(1)} MiB in flight between client and upstream (bound ${bound} MiB: socket buffers at their maxima + 8)`);
  const rss = await rssBound();
  t.ok(growth < rss.limit, `RSS grew ${growth.toFixed(1)} MiB (limit ${rss.limit}: ${rss.why})`);
  client.destroy();
});

