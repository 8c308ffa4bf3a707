// The row runner of test/adversarial/: one top-level t.test per row (CI counts
// them), raw bytes sent in one write or one byte per write, and the checks a
// refusal always makes. Sources of the rows: ../shared/research/attacks.md.

import type net from 'node:net';
import t, { type Test } from 'tap';
import { completeResponses, rawClient, type RawUpstream } from './net.js';
import { parseRequests } from './llhttp.js';
export { parseRequests };

export type WriteMode = 'one write' | 'one byte per write';
export const BOTH_MODES: readonly WriteMode[] = ['one write', 'one byte per write'];

/** Registers `body` as one top-level subtest per row, and per write mode when `modes` has several. */
export function eachRow<R extends { name: string }>(
  rows: readonly R[],
  body: (t: Test, row: R, mode: WriteMode) => Promise<void>,
  modes: readonly WriteMode[] = ['one write'],
): void {
  for (const row of rows) {
    for (const mode of modes) t.test(modes.length > 1 ? `${row.name} [${mode}]` : row.name, (tt) => body(tt, row, mode));
  }
}

export const settle = (ms = 50) => new Promise((r) => setTimeout(r, ms));

/**
 * How long `send` waits for a close after a complete response: 30 ms where
 * the caller does not look at `closed`, or expects the connection kept open,
 * and `EXPECT_CLOSE` where it checks a close. The FIN can trail the response
 * by more than 30 ms when two test files share two loaded cores (CI saw it: a
 * 400 with `Connection: close` whose FIN came later); a close ends the wait at
 * once, so the longer grace costs only a connection wrongly kept open.
 */
export const EXPECT_CLOSE = 1000;
const QUICK_LOOK = 30;

/**
 * Opens a raw client, sends `raw` (latin1) as `mode` says, and collects bytes
 * until the gateway closes, a complete final response arrived (then up to
 * `closeGraceMs` more, to see a close), or `timeoutMs`.
 */
export async function send(
  port: number,
  raw: string | Buffer,
  mode: WriteMode = 'one write',
  timeoutMs = 3000,
  closeGraceMs = QUICK_LOOK,
): Promise<{ text: string; closed: boolean }> {
  const client = await rawClient(port);
  client.setNoDelay(true);
  client.on('end', () => client.end());
  const head = /^HEAD /.test(raw.toString());
  const done = new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), timeoutMs);
    client.once('close', () => {
      clearTimeout(timer);
      resolve(true);
    });
    client.on('data', () => {
      if (completeResponses(Buffer.concat(client.chunks), head) === 0) return;
      setTimeout(() => resolve(client.destroyed || client.readableEnded), closeGraceMs);
    });
  });
  await write(client, raw, mode);
  const closed = await done;
  client.destroy();
  return { text: client.text(), closed };
}

/** Writes `raw` (latin1) to `socket` in one write, or one byte per macrotask so the gateway reads them one by one. */
export async function write(socket: net.Socket, raw: string | Buffer, mode: WriteMode): Promise<void> {
  const bytes = typeof raw === 'string' ? Buffer.from(raw, 'latin1') : raw;
  if (mode === 'one write') {
    socket.write(bytes);
    return;
  }
  for (let i = 0; i < bytes.length && socket.writable; i++) {
    socket.write(bytes.subarray(i, i + 1));
    await new Promise((r) => setImmediate(r));
  }
}

/** The gateway answered `status` with `Connection: close` and closed the connection. */
export function assertRefused(t: Test, res: { text: string; closed: boolean }, status = 400): void {
  t.match(res.text, new RegExp(`^HTTP/1\\.1 ${status} `), `answered ${status}`);
  t.match(res.text, /\r\nConnection: (?:[\w-]+, )*close\r\n/, 'Connection: close');
  t.ok(res.closed, 'connection closed');
}

/** After a short settle, the upstream has had no connection at all. */
export async function assertNothingUpstream(t: Test, upstream: RawUpstream): Promise<void> {
  await settle();
  t.equal(upstream.received.length, 0, 'no upstream connection');
}


export const completeRequests = (bytes: string): number => parseRequests(bytes).length;
