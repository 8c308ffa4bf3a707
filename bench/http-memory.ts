// Scenario `http-memory`: a 1 GiB download to a client that reads slowly, and
// a 1 GiB upload to an upstream that reads slowly, through wsgate (CLI, fresh
// process). Backpressure must keep the proxy's RSS growth far below the body
// size: the goal is under 64 MiB. RSS is sampled every 20 ms from /proc.

import { once } from 'node:events';
import http from 'node:http';
import net from 'node:net';
import { cpuSeconds, rssKiB } from './lib/proc.js';
import { startPeer, type PeerOptions } from './lib/peers.js';

export interface MemoryResult {
  downloadGrowthMiB: number;
  uploadGrowthMiB: number;
  downloadMBps: number;
  uploadMBps: number;
  /** Proxy CPU seconds per GB moved, download and upload. */
  downloadCpuSPerGB: number;
  uploadCpuSPerGB: number;
  bytes: number;
}

function* pattern(size: number): Generator<Buffer> {
  const block = Buffer.alloc(64 * 1024, 0x61);
  for (let sent = 0; sent < size; sent += block.length) yield block.subarray(0, Math.min(block.length, size - sent));
}

/** Reads in short bursts so the reader is slower than the writer. */
function slowly(stream: NodeJS.ReadableStream & { pause(): unknown; resume(): unknown }): () => void {
  stream.pause();
  const timer = setInterval(() => {
    stream.resume();
    setTimeout(() => stream.pause(), 3);
  }, 12);
  return () => clearInterval(timer);
}

async function sampleGrowth(pid: number, base: number, done: Promise<unknown>): Promise<number> {
  let peak = base;
  let finished = false;
  void done.then(() => (finished = true));
  while (!finished) {
    peak = Math.max(peak, rssKiB([pid]));
    await new Promise((r) => setTimeout(r, 20));
  }
  return (peak - base) / 1024;
}

export async function measureMemory(options: Omit<PeerOptions, 'upstreamPort'>, size: number): Promise<MemoryResult> {
  let uploaded = 0;
  const origin = http.createServer(async (req, res) => {
    if (req.method === 'POST') {
      const stop = slowly(req);
      req.on('data', (c: Buffer) => (uploaded += c.length));
      await once(req, 'end');
      stop();
      res.end(String(uploaded));
      return;
    }
    res.setHeader('Content-Length', size);
    for (const chunk of pattern(size)) if (!res.write(chunk)) await once(res, 'drain');
    res.end();
  });
  origin.listen(0, '127.0.0.1');
  await once(origin, 'listening');
  const peer = await startPeer('wsgate', { ...options, upstreamPort: (origin.address() as net.AddressInfo).port });
  try {
    const pid = peer.pid!;
    const base = rssKiB([pid]);

    // download
    const client = net.connect(peer.port, '127.0.0.1');
    client.write('GET /big HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n');
    let got = 0;
    client.on('data', (c: Buffer) => (got += c.length));
    const stop = slowly(client);
    let started = Date.now();
    let cpu0 = cpuSeconds([pid]);
    const downloadGrowthMiB = await sampleGrowth(pid, base, once(client, 'end'));
    const downloadMBps = got / 1e6 / ((Date.now() - started) / 1000);
    const downloadCpuSPerGB = (cpuSeconds([pid]) - cpu0) / (size / 1e9);
    stop();
    client.destroy();
    if (got < size) throw new Error(`download incomplete: ${got} of ${size}`);

    // upload
    const base2 = rssKiB([pid]);
    uploaded = 0;
    const up = net.connect(peer.port, '127.0.0.1');
    let answer = '';
    up.on('data', (c) => (answer += c));
    const ended = once(up, 'end');
    started = Date.now();
    cpu0 = cpuSeconds([pid]);
    const writer = (async () => {
      up.write(`POST /big HTTP/1.1\r\nHost: bench\r\nContent-Length: ${size}\r\nConnection: close\r\n\r\n`);
      for (const chunk of pattern(size)) if (!up.write(chunk)) await once(up, 'drain');
    })();
    const uploadGrowthMiB = await sampleGrowth(pid, base2, Promise.all([ended, writer]));
    const uploadMBps = size / 1e6 / ((Date.now() - started) / 1000);
    const uploadCpuSPerGB = (cpuSeconds([pid]) - cpu0) / (size / 1e9);
    up.destroy();
    if (!answer.endsWith(String(size))) throw new Error(`upload incomplete: ${answer.slice(-40)}`);
    return { downloadGrowthMiB, uploadGrowthMiB, downloadMBps, uploadMBps, downloadCpuSPerGB, uploadCpuSPerGB, bytes: size };
  } finally {
    await peer.stop();
    origin.closeAllConnections();
    origin.close();
  }
}
