// Resource exhaustion (issue #6, ../shared/research/attacks.md rows 29-35):
// slow heads, slow readers, many idle tunnels, oversized heads, descriptor
// exhaustion and the connection cap. Memory and descriptor checks run the real
// CLI as a child process and read its RSS and fds from /proc, so the load
// (clients, upstreams) never counts against the gateway's figures.
import t from 'tap';
import net from 'node:net';
import { once } from 'node:events';
import { answeringUpstream, rawClient, rawExchange, rawUpstream, startGateway, switchingProtocols, upgradeRequest, waitFor } from '../helpers/net.js';
import { MiB, echoTunnelUpstream, fdCount, fdLimit, inBatches, peakWhile, startCliGateway, startEmbeddedGateway, statusOf } from '../helpers/exhaustion.js';

const OK = 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** `promise`, or undefined after `ms` (the timer does not outlive it). */
function within<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), ms);
  });
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}

/** Waits (bounded) for a log line of the child gateway: its stderr pipe may lag the socket events. */
async function logged(gw: { stderr(): string }, pattern: RegExp): Promise<void> {
  await waitFor(() => pattern.test(gw.stderr()), 3000, `a log line ${pattern}`).catch(() => {});
}

/** Resolves true once `socket` closes, false after `ms`. */
function closedWithin(socket: net.Socket, ms: number): Promise<boolean> {
  if (socket.destroyed) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

// Row 29, CVE-2018-12122 (slowloris): a head trickled one byte at a time.
t.test('slowloris: a head trickled one byte per 50 ms gets 408 and Connection: close at headTimeout', async (t) => {
  const upstream = await rawUpstream(t);
  const { gw, port } = await startGateway(t, { routes: [`/=http://127.0.0.1:${upstream.port}`], headTimeout: 0.5 });
  const client = await rawClient(port);
  const request = 'GET / HTTP/1.1\r\nHost: a\r\nX-Slow: ' + 'z'.repeat(200);
  let i = 0;
  const started = Date.now();
  const trickle = setInterval(() => {
    if (client.chunks.length === 0 && i < request.length) client.write(request[i++]);
  }, 50);
  t.teardown(() => clearInterval(trickle));
  await within(once(client, 'end'), 5000);
  clearInterval(trickle);
  const elapsed = Date.now() - started;
  t.equal(statusOf(client.text()), 408, '408 Request Timeout');
  t.match(client.text(), /\r\nConnection: close\r\n/);
  t.ok(client.readableEnded, 'the gateway closed its side');
  t.ok(elapsed >= 450 && elapsed < 2000, `answered after ${elapsed} ms (headTimeout 500 ms, ${i} bytes trickled)`);
  t.equal(upstream.received.length, 0, 'the upstream never saw a connection');
  client.destroy();
  await waitFor(() => gw.stats().connections === 0, 3000, 'connection freed');
});

// Row 29 (CVE-2018-12122; slowhttptest -H): many slow heads at once.
t.test('slowloris: 200 sockets trickling heads at once all get 408 at headTimeout and the gateway fds recover', async (t) => {
  const SOCKETS = 200;
  const upstream = await rawUpstream(t);
  const gw = await startCliGateway(t, ['--route', `/=http://127.0.0.1:${upstream.port}`, '--head-timeout', '1', '--log-level', 'error']);
  await sleep(100);
  const baseFds = gw.fds();
  const request = 'GET / HTTP/1.1\r\nHost: a\r\nX-Slow: ' + 'z'.repeat(400);
  const connectedAt = new Array<number>(SOCKETS).fill(0);
  const clients = await inBatches(Array.from({ length: SOCKETS }), 50, async (_, n) => {
    const c = await rawClient(gw.port);
    connectedAt[n] = Date.now();
    c.setNoDelay(true);
    return c;
  });
  t.teardown(() => clients.forEach((c) => c.destroy()));
  const sent = new Array<number>(SOCKETS).fill(0);
  const endedAt = new Array<number>(SOCKETS).fill(0);
  clients.forEach((c, n) => c.once('end', () => (endedAt[n] = Date.now())));
  const trickle = setInterval(() => {
    clients.forEach((c, n) => {
      if (c.chunks.length > 0 || c.destroyed || sent[n] >= request.length) return;
      c.write(request[sent[n]++]);
    });
  }, 100);
  t.teardown(() => clearInterval(trickle));
  await sleep(500);
  const heldFds = gw.fds();
  t.ok(heldFds >= baseFds + SOCKETS, `all ${SOCKETS} held open at once (gateway fds ${baseFds} -> ${heldFds})`);
  await waitFor(() => endedAt.every((e) => e > 0), 10_000, 'every slow socket answered').catch(() => {});
  clearInterval(trickle);
  const answered = clients.filter((c) => statusOf(c.text()) === 408 && /\r\nConnection: close\r\n/.test(c.text())).length;
  t.equal(answered, SOCKETS, '408 with Connection: close on every socket');
  // headTimeout runs from the accept; the wheel ticks every 100 ms
  const waits = endedAt.map((e, n) => e - connectedAt[n]);
  const slowest = Math.max(...waits);
  const fastest = Math.min(...waits);
  t.ok(fastest >= 880, `none cut before headTimeout (earliest ${fastest} ms after its connect)`);
  t.ok(slowest < 3000, `all answered soon after headTimeout (latest ${slowest} ms after its connect)`);
  for (const c of clients) c.destroy();
  await waitFor(() => gw.fds() <= baseFds + 2, 5000, 'gateway fds back to baseline').catch(() => {});
  t.ok(gw.fds() <= baseFds + 2, `gateway fds recovered (${baseFds} before, ${gw.fds()} after)`);
  t.equal(upstream.received.length, 0, 'no slow head reached the upstream');
  t.ok(gw.alive());
});

/** A request head of exactly `size` bytes with `fields` header fields (Host included), padded in its last field. */
function headOf(size: number, fields = 2, extra = ''): string {
  let head = `GET / HTTP/1.1\r\nHost: a\r\n${extra}`;
  for (let i = 2; i < fields; i++) head += `H${i}: v\r\n`;
  const pad = size - head.length - 'X: \r\n\r\n'.length;
  if (pad < 0) throw new Error('head too small for its fields');
  return `${head}X: ${'a'.repeat(pad)}\r\n\r\n`;
}

// Row 33 (node maxHeaderSize 16 KiB -> 431): the default maxHeadSize is 16384.
t.test('a request head of exactly maxHeadSize (16384) bytes is proxied; a 17 KB header line gets 431 and close', async (t) => {
  const upstream = await answeringUpstream(t, OK);
  const { gw, port } = await startGateway(t, { routes: [`/=http://127.0.0.1:${upstream.port}`] });
  t.equal(gw.config.maxHeadSize, 16384, 'default maxHeadSize');
  const exact = headOf(16384);
  t.equal(exact.length, 16384);
  const ok = await rawExchange(port, exact);
  t.equal(statusOf(ok.text), 200, 'a 16384-byte head');
  const split = await rawExchange(port, [exact.slice(0, 8000), exact.slice(8000)]);
  t.equal(statusOf(split.text), 200, 'the same head in two writes');
  const huge = `GET / HTTP/1.1\r\nHost: a\r\nX-Big: ${'b'.repeat(17 * 1024)}\r\n\r\n`;
  const over = await rawExchange(port, huge, { untilClose: true });
  t.equal(statusOf(over.text), 431, 'a 17 KiB header line');
  t.match(over.text, /\r\nConnection: close\r\n/);
  t.ok(over.closed, 'closed after the 431');
  // a head that never ends: refused once past the limit, not buffered while it grows
  const endless = await rawClient(port);
  endless.write('GET / HTTP/1.1\r\nHost: a\r\n');
  for (let i = 0; i < 64 && endless.chunks.length === 0; i++) {
    endless.write(`X-${i}: ${'c'.repeat(1000)}\r\n`);
    await sleep(5);
  }
  await waitFor(() => endless.readableEnded, 5000, 'the gateway to end the endless head').catch(() => {});
  t.ok(endless.readableEnded, 'a head growing without end is ended by the gateway');
  t.equal(statusOf(endless.text()), 431, 'with a 431');
  endless.destroy();
  const requests = upstream.received.map((_, n) => upstream.text(n)).join('').match(/^GET \/ HTTP\/1\.1\r\n/gm) ?? [];
  t.equal(requests.length, 2, 'only the two good heads went upstream');
});

// Row 34, ws CVE-2024-37890 / GHSA-3h5v-q93c-6h6q: headers past a count limit
// silently dropped left the WebSocket key undefined. wsgate counts every field
// line of the head (Host included) against maxHeaders (default 100) and refuses
// the excess outright, so a truncated set is never forwarded.
t.test('100 header fields (the default maxHeaders) are proxied, 101 get 431; 2000 fillers before the WebSocket headers get 431', async (t) => {
  const upstream = await answeringUpstream(t, OK);
  const { gw, port } = await startGateway(t, { routes: [`/=http://127.0.0.1:${upstream.port}`] });
  t.equal(gw.config.maxHeaders, 100, 'default maxHeaders');
  const fields = (n: number) => `GET / HTTP/1.1\r\nHost: a\r\n${Array.from({ length: n - 1 }, (_, i) => `H${i}: v\r\n`).join('')}\r\n`;
  const ok = await rawExchange(port, fields(100));
  t.equal(statusOf(ok.text), 200, '100 fields, Host included');
  t.match(upstream.text(), /\r\nH98: v\r\n/, 'the last field went upstream');
  const over = await rawExchange(port, fields(101), { untilClose: true });
  t.equal(statusOf(over.text), 431, '101 fields');
  t.match(over.text, /\r\nConnection: close\r\n/);
  t.ok(over.closed);
  const fillers = Array.from({ length: 2000 }, (_, i) => `h${i}: x\r\n`).join('');
  const ws = await rawExchange(port, upgradeRequest('/', '', 'a').replace('\r\n', `\r\n${fillers}`), { untilClose: true });
  t.equal(statusOf(ws.text), 431, '2000 fillers then the WebSocket headers');
  t.ok(ws.closed);
  const requests = upstream.received.map((_, n) => upstream.text(n)).join('').match(/^GET \/ HTTP\/1\.1\r\n/gm) ?? [];
  t.equal(requests.length, 1, 'only the 100-field request reached the upstream');
});

// Row 33, second half: an upstream response head of 64 KB (or thousands of
// fields) is a bad response (502), never a crash; wsgate's response limits are
// 64 KiB and 2 x maxHeaders fields.
t.test('an oversized upstream response head is a 502 and the gateway keeps serving', async (t) => {
  const heads: Record<string, string> = {
    fields100: `HTTP/1.1 200 OK\r\n${Array.from({ length: 99 }, (_, i) => `H${i}: v\r\n`).join('')}Content-Length: 2\r\n\r\nok`,
    big: `HTTP/1.1 200 OK\r\nX-Big: ${'b'.repeat(64 * 1024)}\r\nContent-Length: 2\r\n\r\nok`,
    many: `HTTP/1.1 200 OK\r\n${Array.from({ length: 2000 }, (_, i) => `h${i}: x\r\n`).join('')}Content-Length: 2\r\n\r\nok`,
    upgrade: `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-Big: ${'b'.repeat(70 * 1024)}\r\n\r\n`,
  };
  const upstream = await answeringUpstream(t, (head, socket) => {
    const which = /^GET \/(\w+)/.exec(head)![1];
    socket.write(heads[which]);
  });
  const { gw, port } = await startGateway(t, { routes: [`/=http://127.0.0.1:${upstream.port}`] });
  const errors: string[] = [];
  gw.on('connectionError', (err) => errors.push(err.code));
  const fine = await rawExchange(port, 'GET /fields100 HTTP/1.1\r\nHost: a\r\n\r\n');
  t.equal(statusOf(fine.text), 200, 'a 100-field response head is relayed');
  t.match(fine.text, /\r\nH98: v\r\n/);
  for (const which of ['big', 'many']) {
    const res = await rawExchange(port, `GET /${which} HTTP/1.1\r\nHost: a\r\n\r\n`, { untilClose: true });
    t.equal(statusOf(res.text), 502, `${which}: 502`);
    t.notMatch(res.text, /bbbb|h1999/, `${which}: nothing of the bad head reaches the client`);
  }
  const ws = await rawExchange(port, upgradeRequest('/upgrade', '', 'a'), { untilClose: true });
  t.equal(statusOf(ws.text), 502, 'a 101 with a 70 KB head: 502, no tunnel');
  t.same(errors, ['WSG_ERR_UPSTREAM_BAD_RESPONSE', 'WSG_ERR_UPSTREAM_BAD_RESPONSE', 'WSG_ERR_UPSTREAM_BAD_RESPONSE']);
  t.equal(gw.stats().tunnels, 0);
  const again = await rawExchange(port, 'GET /fields100 HTTP/1.1\r\nHost: a\r\n\r\n');
  t.equal(statusOf(again.text), 200, 'still serving');
});

// Row 32 (Envoy WebSocketConnectionIdleTimeout; nginx limit_conn): the
// connection cap counts idle heads, keep-alive connections and tunnels alike.
t.test('maxConnections: the N+1-th connection gets 503 with Connection: close; after one closes a new one is served', async (t) => {
  const upstream = await answeringUpstream(t, (head, socket) => {
    if (/\r\nupgrade:/i.test(head)) {
      socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n');
      socket.on('data', (c) => socket.write(c));
      socket.on('end', () => socket.end());
    } else socket.write(OK);
  });
  const { gw, port } = await startGateway(t, { routes: [`/=http://127.0.0.1:${upstream.port}`], maxConnections: 3 });
  const errors: string[] = [];
  gw.on('connectionError', (err) => errors.push(err.code));
  const idleHead = await rawClient(port);
  idleHead.write('GET / HTTP/1.1\r\nHo');
  const keepAlive = await rawClient(port);
  keepAlive.write('GET / HTTP/1.1\r\nHost: a\r\n\r\n');
  await waitFor(() => keepAlive.text().endsWith('\r\n\r\nok'), 3000, 'keep-alive answer');
  const tunnel = await rawClient(port);
  tunnel.write(upgradeRequest('/', '', 'a'));
  await waitFor(() => tunnel.text().includes('\r\n\r\n'), 3000, '101');
  t.teardown(() => [idleHead, keepAlive, tunnel].forEach((s) => s.destroy()));
  await waitFor(() => gw.stats().connections === 3, 3000, 'three open');
  t.equal(gw.stats().tunnels, 1);
  const refused = await rawExchange(port, 'GET / HTTP/1.1\r\nHost: a\r\n\r\n', { untilClose: true, timeoutMs: 3000 });
  t.match(refused.text, /^HTTP\/1\.1 503 Service Unavailable\r\n/, 'the fourth: 503');
  t.match(refused.text, /\r\nConnection: close\r\n/);
  t.ok(refused.closed, 'and closed');
  // a refused client that keeps its side open is not kept half-open: after the
  // gateway's grace (1 s) its socket is gone and a late write meets a reset
  const lingering = await rawClient(port);
  await waitFor(() => lingering.readableEnded, 3000, 'the 503 and FIN');
  t.match(lingering.text(), /^HTTP\/1\.1 503 /);
  await sleep(1600);
  // (a released socket answers the first late write with a reset, the next write then fails)
  lingering.write('late');
  await sleep(200);
  lingering.write('later');
  t.ok(await closedWithin(lingering, 3000), 'the refused socket was released by the gateway');
  t.same(errors, ['WSG_ERR_TOO_MANY_CONNECTIONS', 'WSG_ERR_TOO_MANY_CONNECTIONS']);
  tunnel.write('still here');
  await waitFor(() => tunnel.text().endsWith('still here'), 3000, 'the open tunnel still echoes');
  tunnel.end();
  await waitFor(() => gw.stats().connections === 2, 3000, 'a slot freed');
  const served = await rawExchange(port, 'GET / HTTP/1.1\r\nHost: a\r\n\r\n');
  t.equal(statusOf(served.text), 200, 'a new connection is served');
  idleHead.destroy();
  keepAlive.destroy();
  await waitFor(() => gw.stats().connections === 0, 3000, 'all closed');
});

/**
 * Writes 64 KiB chunks to `socket` as fast as it drains, up to `limit` bytes or
 * until it closes. `progress.written` counts what was handed to the kernel side;
 * `progress.lastDrainAt` is when the far side last took bytes.
 */
function flood(socket: net.Socket, limit: number) {
  const chunk = Buffer.alloc(64 * 1024, 0x61);
  const progress = { written: 0, lastDrainAt: Date.now(), closedAt: 0 };
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  void closed.then(() => (progress.closedAt = Date.now()));
  const pump = () => {
    while (!socket.destroyed && progress.written < limit) {
      progress.written += chunk.length;
      if (!socket.write(chunk)) return;
    }
  };
  socket.on('drain', () => {
    progress.lastDrainAt = Date.now();
    pump();
  });
  pump();
  return { progress, closed };
}

// Row 31 (nginx send_timeout; slowhttptest -X "slow read"): the upstream
// streams 256 MiB to a client that never reads. Backpressure must stop the
// gateway reading the upstream, and sendTimeout must end the exchange.
t.test('slow read: a client that never reads a 256 MiB response is cut at sendTimeout; gateway RSS grows < 64 MiB', async (t) => {
  const size = 256 * MiB;
  let stream: ReturnType<typeof flood> | null = null;
  const upstream = await answeringUpstream(t, (head, socket) => {
    if (head.startsWith('GET /warm ')) {
      socket.write(OK);
      return;
    }
    socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${size}\r\n\r\n`);
    stream = flood(socket, size);
  });
  const gw = await startCliGateway(t, ['--route', `/=http://127.0.0.1:${upstream.port}`, '--send-timeout', '1', '--read-timeout', '30', '--log-level', 'warn']);
  const warm = await rawExchange(gw.port, 'GET /warm HTTP/1.1\r\nHost: a\r\n\r\n');
  t.equal(statusOf(warm.text), 200);
  await sleep(100);
  const base = gw.rssKiB();
  const client = net.connect({ port: gw.port, host: '127.0.0.1' });
  client.on('error', () => {});
  await once(client, 'connect');
  client.pause(); // never read: only the kernel buffers and node's 16 KiB readable buffer fill
  client.write('GET /big HTTP/1.1\r\nHost: a\r\n\r\n');
  await waitFor(() => stream !== null, 5000, 'the upstream to start streaming');
  const { progress, closed } = stream!;
  const ended = within(closed, 15_000);
  const peak = await peakWhile(() => gw.rssKiB(), ended);
  t.ok(progress.closedAt > 0, 'the gateway closed the upstream connection');
  const growth = (peak - base) / 1024;
  t.ok(growth < 64, `gateway RSS grew ${growth.toFixed(1)} MiB (base ${(base / 1024).toFixed(1)} MiB) while the upstream pushed ${(progress.written / MiB).toFixed(1)} MiB`);
  t.ok(progress.written < size, 'backpressure: the upstream could not push the whole body');
  const stalledFor = progress.closedAt - progress.lastDrainAt;
  t.ok(stalledFor >= 800 && stalledFor < 5000, `cut ${stalledFor} ms after the last progress (sendTimeout 1 s)`);
  await logged(gw, /WSG_ERR_DOWNSTREAM_TIMEOUT/);
  t.match(gw.stderr(), /WSG_ERR_DOWNSTREAM_TIMEOUT/, 'logged as a downstream timeout');
  // the client, reading at last, finds a cut response, never a complete-looking one
  let received = 0;
  client.on('data', (c: Buffer) => (received += c.length));
  client.resume();
  t.ok(await closedWithin(client, 10_000), 'the client connection was closed');
  t.ok(received < size, `the client got ${(received / MiB).toFixed(1)} MiB of the ${size / MiB} MiB body`);
  t.ok(gw.alive());
});

// Row 31, inside a tunnel: the upstream floods a client that stopped reading.
// The tunnel pauses the upstream on write() === false, and, no byte moving
// either way, tunnelTimeout closes both sides.
t.test('slow read in a tunnel: an upstream flooding a client that stopped reading is held by backpressure, closed at tunnelTimeout', async (t) => {
  const size = 256 * MiB;
  let stream: ReturnType<typeof flood> | null = null;
  const upstream = await answeringUpstream(t, (_head, socket) => {
    socket.write(switchingProtocols());
    socket.on('end', () => socket.end());
    if (_head.startsWith('GET /warm ')) socket.on('data', (c) => socket.write(c));
    else stream = flood(socket, size);
  });
  const gw = await startCliGateway(t, ['--route', `/=http://127.0.0.1:${upstream.port}`, '--tunnel-timeout', '1', '--log-level', 'debug']);
  const warm = await rawClient(gw.port);
  warm.write(upgradeRequest('/warm', '', 'a'));
  await waitFor(() => warm.text().includes('\r\n\r\n'), 5000, 'warm-up 101');
  warm.write('ping');
  await waitFor(() => warm.text().endsWith('ping'), 5000, 'warm-up echo');
  warm.end();
  await waitFor(() => /tunnel closed[^\n]*reason=done/.test(gw.stderr()), 5000, 'warm-up tunnel closed');
  await sleep(100);
  const base = gw.rssKiB();
  const client = net.connect({ port: gw.port, host: '127.0.0.1' });
  client.on('error', () => {});
  await once(client, 'connect');
  client.pause();
  client.write(upgradeRequest('/', '', 'a'));
  await waitFor(() => stream !== null, 5000, 'the upstream to start flooding');
  const { progress, closed } = stream!;
  const peak = await peakWhile(() => gw.rssKiB(), within(closed, 15_000));
  t.ok(progress.closedAt > 0, 'the tunnel was closed');
  const growth = (peak - base) / 1024;
  t.ok(growth < 64, `gateway RSS grew ${growth.toFixed(1)} MiB while the upstream pushed ${(progress.written / MiB).toFixed(1)} MiB`);
  t.ok(progress.written < size, 'backpressure: the upstream could not push 256 MiB');
  const stalledFor = progress.closedAt - progress.lastDrainAt;
  t.ok(stalledFor >= 800 && stalledFor < 5000, `closed ${stalledFor} ms after the last byte moved (tunnelTimeout 1 s)`);
  await logged(gw, /tunnel closed[^\n]*reason=idle/);
  t.match(gw.stderr(), /tunnel closed[^\n]*reason=idle/, 'closed as idle');
  client.resume();
  t.ok(await closedWithin(client, 10_000), 'the client side was closed too');
  t.ok(gw.alive());
});

// Row 31, the other direction: a client floods an upstream that stopped reading.
t.test('slow read in a tunnel: a client flooding an upstream that stopped reading is held by backpressure, closed at tunnelTimeout', async (t) => {
  const size = 256 * MiB;
  const upstream = await answeringUpstream(t, (_head, socket) => {
    socket.write(switchingProtocols());
    socket.pause(); // takes the 101's request head, then never reads again
  });
  const gw = await startCliGateway(t, ['--route', `/=http://127.0.0.1:${upstream.port}`, '--tunnel-timeout', '1', '--log-level', 'debug']);
  await sleep(100);
  const base = gw.rssKiB();
  const client = await rawClient(gw.port);
  client.write(upgradeRequest('/', '', 'a'));
  await waitFor(() => client.text().includes('\r\n\r\n'), 5000, '101');
  t.match(client.text(), /^HTTP\/1\.1 101 /);
  const { progress, closed } = flood(client, size);
  const peak = await peakWhile(() => gw.rssKiB(), within(closed, 15_000));
  t.ok(progress.closedAt > 0, 'the tunnel was closed');
  const growth = (peak - base) / 1024;
  t.ok(growth < 64, `gateway RSS grew ${growth.toFixed(1)} MiB while the client pushed ${(progress.written / MiB).toFixed(1)} MiB`);
  t.ok(progress.written < size, 'backpressure: the client could not push 256 MiB');
  const stalledFor = progress.closedAt - progress.lastDrainAt;
  t.ok(stalledFor >= 800 && stalledFor < 5000, `closed ${stalledFor} ms after the last byte moved (tunnelTimeout 1 s)`);
  await logged(gw, /tunnel closed[^\n]*reason=idle/);
  t.match(gw.stderr(), /tunnel closed[^\n]*reason=idle/, 'closed as idle');
  // the upstream, reading at last, finds the end of the tunnel behind the buffered bytes
  const up = upstream.sockets[0];
  up.resume();
  await waitFor(() => up.readableEnded || up.destroyed, 10_000, 'upstream side closed').catch(() => {});
  t.ok(up.readableEnded || up.destroyed, 'the upstream side was closed too');
  t.ok(gw.alive());
});

// Row 35 (node net.Server 'error' "accept EMFILE"): more clients than the
// gateway has descriptors. libuv meets a full table by accepting and closing the
// waiting connections itself without telling node (`uv__emfile_trick`): before
// issue #6 the turned-away clients got a bare FIN and the gateway logged nothing.
// Now it refuses them with a 503 while it still has descriptors to do so
// (lib/limits/descriptor-limit.ts), logs that once a second, and every client it did
// admit can still dial its upstream.
t.test('EMFILE: under ulimit -n 64 each of 100 clients past the limit is served or gets 503 with Connection: close, refusals are logged once a second, and the gateway recovers', async (t) => {
  const upstream = await answeringUpstream(t, (head, socket) => {
    if (/\r\nupgrade:/i.test(head)) socket.write(switchingProtocols());
    else socket.write(OK);
  });
  const gw = await startCliGateway(t, ['--route', `/=http://127.0.0.1:${upstream.port}`, '--head-timeout', '30', '--log-level', 'info'], { fdLimit: 64 });
  await sleep(100);
  const baseFds = gw.fds();
  t.ok(baseFds < 40, `the gateway starts with ${baseFds} descriptors of 64`);
  // two clients accepted first; they send their requests later
  const plain = await rawClient(gw.port);
  const upgrade = await rawClient(gw.port);
  await waitFor(() => gw.fds() >= baseFds + 2, 5000, 'the two early clients accepted');
  const EXCESS = 100;
  const started = Date.now();
  // silent clients that never close by themselves (allowHalfOpen): what holds a descriptor longest
  const fillers = await inBatches(Array.from({ length: EXCESS }), 25, () => rawClient(gw.port));
  t.teardown(() => [plain, upgrade, ...fillers].forEach((s) => s.destroy()));
  const isAnswered = (c: net.Socket) => c.destroyed || c.readableEnded;
  await waitFor(() => fillers.filter(isAnswered).length + gw.fds() - baseFds - 2 >= EXCESS, 10_000, 'every client admitted or turned away').catch(() => {});
  await sleep(300);
  const turnedAway = fillers.filter(isAnswered);
  const admitted = fillers.filter((c) => !isAnswered(c));
  t.ok(turnedAway.length > 0 && admitted.length > 0, `${admitted.length} clients admitted, ${turnedAway.length} turned away (gateway fds ${gw.fds()} of 64)`);
  const silent = turnedAway.filter((c) => statusOf(c.text()) !== 503 || !/\r\nConnection: close\r\n/.test(c.text()));
  t.equal(silent.length, 0, `every turned-away client got 503 with Connection: close (${silent.length} closed without one)`);
  t.ok(gw.alive(), 'alive at the limit');
  // no busy loop on the listening socket at the limit (clock ticks: 100/s)
  const cpuBefore = gw.cpuTicks();
  const late = await inBatches(Array.from({ length: 20 }), 5, () => rawClient(gw.port));
  t.teardown(() => late.forEach((s) => s.destroy()));
  await sleep(1000);
  const cpu = gw.cpuTicks() - cpuBefore;
  t.ok(cpu < 50, `gateway CPU over 1 s at the limit with 20 more clients: ${cpu * 10} ms`);
  t.ok(late.every((c) => statusOf(c.text()) === 503), 'later clients get 503 too');
  // refusals: one line at once, then at most one a second with the count since the last
  await sleep(1200);
  const lines = gw.stderr().match(/^.* warn descriptor limit reached: [^\n]*$/gm) ?? [];
  t.ok(lines.length >= 1 && lines.length <= Math.ceil((Date.now() - started) / 1000) + 1, `${lines.length} log lines over ${Date.now() - started} ms:\n${lines.join('\n')}`);
  t.ok(lines.every((l) => /code=WSG_ERR_DESCRIPTOR_LIMIT status=503 refused=\d+ fds=\d+ limit=64 reserve=\d+/.test(l)), 'each line has the code, the count, and the limit');
  const refused = lines.reduce((sum, l) => sum + Number(/refused=(\d+)/.exec(l)![1]), 0);
  t.equal(refused, turnedAway.length + late.length, 'the counts add up to the clients turned away');
  // every admitted client is served: its upstream descriptor was kept for it
  plain.write('GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n');
  upgrade.write(upgradeRequest('/', '', 'a'));
  for (const c of admitted) c.write('GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n');
  await waitFor(() => [plain, ...admitted].every((c) => c.readableEnded) && upgrade.text().includes('\r\n\r\n'), 5000, 'admitted clients answered').catch(() => {});
  t.equal(statusOf(plain.text()), 200, 'an early client is served');
  t.match(upgrade.text(), /^HTTP\/1\.1 101 /, 'an early upgrade becomes a tunnel');
  t.equal(admitted.filter((c) => statusOf(c.text()) === 200).length, admitted.length, `all ${admitted.length} admitted clients are served`);
  t.notMatch(gw.stderr(), /EMFILE/, 'no dial ran out of descriptors');
  t.ok(gw.alive(), 'alive after serving them');
  for (const c of [plain, upgrade, ...fillers, ...late]) c.destroy();
  await waitFor(() => gw.fds() <= baseFds + admitted.length + 1, 5000, 'descriptors freed').catch(() => {});
  const res = await rawExchange(gw.port, 'GET / HTTP/1.1\r\nHost: a\r\n\r\n');
  t.equal(statusOf(res.text), 200, 'a new client is served normally');
  const ws = await rawClient(gw.port);
  ws.write(upgradeRequest('/', '', 'a'));
  await waitFor(() => ws.text().includes('\r\n\r\n'), 5000, 'a new upgrade answered').catch(() => {});
  t.match(ws.text(), /^HTTP\/1\.1 101 /, 'and a new tunnel opens');
  ws.destroy();
  t.ok(gw.alive());
});

// Row 35, "S connect under EMFILE": descriptors the gateway cannot count (the
// embedding application's) fill the table after a client was admitted. Its
// upstream dial fails with EMFILE: 502, logged with the cause, and the process
// lives and serves again once the application frees them.
t.test('EMFILE on an upstream dial (the embedding application filled the table): 502 with the cause logged, then served again', async (t) => {
  const upstream = await answeringUpstream(t, OK);
  const gw = await startEmbeddedGateway(t, upstream.port, 64);
  await sleep(100);
  const baseFds = gw.fds();
  const client = await rawClient(gw.port);
  t.teardown(() => client.destroy());
  await waitFor(() => gw.fds() > baseFds, 5000, 'the client accepted');
  await gw.command('fill');
  client.write('GET / HTTP/1.1\r\nHost: a\r\n\r\n');
  await waitFor(() => client.readableEnded, 5000, 'the answer').catch(() => {});
  t.equal(statusOf(client.text()), 502, `a request that cannot dial: ${client.text().split('\r\n')[0]}`);
  t.match(client.text(), /\r\nConnection: close\r\n/);
  await logged(gw, /EMFILE/);
  t.match(gw.stderr(), / error [^\n]*EMFILE[^\n]*code=WSG_ERR_UPSTREAM_CONNECT status=502/, 'the failed dial is logged with its cause');
  t.equal(upstream.received.length, 0, 'nothing reached the upstream');
  t.ok(gw.alive(), 'alive with a full table');
  await gw.command('free');
  const res = await rawExchange(gw.port, 'GET / HTTP/1.1\r\nHost: a\r\n\r\n');
  t.equal(statusOf(res.text), 200, 'served again once descriptors are free');
  t.ok(gw.alive());
});

interface TunnelClient {
  socket: net.Socket;
  head: string;
  echoed: string;
  gotEnd: boolean;
  closed: boolean;
  hadError: boolean;
}

/** Opens a raw client, sends the upgrade, resolves once its 101 head is in. */
async function openTunnel(port: number): Promise<TunnelClient> {
  const socket = net.connect({ port, host: '127.0.0.1' });
  const client: TunnelClient = { socket, head: '', echoed: '', gotEnd: false, closed: false, hadError: false };
  socket.on('error', () => (client.hadError = true));
  socket.on('end', () => (client.gotEnd = true));
  socket.on('close', () => (client.closed = true));
  await once(socket, 'connect');
  socket.write(upgradeRequest('/', '', 'a'));
  await new Promise<void>((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      client.head += chunk.toString('latin1');
      const end = client.head.indexOf('\r\n\r\n');
      if (end === -1) return;
      socket.removeListener('data', onData);
      socket.removeListener('close', onClose);
      client.echoed = client.head.slice(end + 4);
      client.head = client.head.slice(0, end + 4);
      socket.on('data', (c: Buffer) => (client.echoed += c.toString('latin1')));
      resolve();
    };
    const onClose = () => reject(new Error(`closed before its 101: ${JSON.stringify(client.head)}`));
    socket.on('data', onData);
    socket.once('close', onClose);
  });
  return client;
}

// Row 32 (Envoy WebSocketConnectionIdleTimeout; "5000 handshakes then
// silence"): thousands of idle tunnels must cost little memory each, stay
// usable, and close cleanly. The count is derived from this process's
// descriptor limit: each tunnel holds two descriptors here (client and
// upstream) and two in the gateway.
t.test('many idle tunnels: as many as the descriptor limit allows all open, each still echoes, and all close cleanly', async (t) => {
  const limit = fdLimit();
  const reserve = Math.min(400, Math.floor(limit / 5)); // descriptors for everything else in this process
  const count = Math.min(9000, Math.floor((limit - fdCount('self') - reserve) / 2));
  t.ok(count >= 100, `${count} tunnels for a descriptor limit of ${limit}`);
  const upstream = await echoTunnelUpstream(t);
  const gw = await startCliGateway(t, ['--route', `/=http://127.0.0.1:${upstream.port}`, '--log-level', 'warn']);
  // warm the handshake and tunnel paths, then take the baseline
  const warm = await inBatches(Array.from({ length: 50 }), 25, () => openTunnel(gw.port));
  for (const c of warm) c.socket.end();
  await waitFor(() => warm.every((c) => c.closed), 10_000, 'warm-up tunnels closed');
  await sleep(200);
  const baseRss = gw.rssKiB();
  const baseFds = gw.fds();
  const started = Date.now();
  const clients = await inBatches(Array.from({ length: count }), 200, () => openTunnel(gw.port));
  t.teardown(() => clients.forEach((c) => c.socket.destroy()));
  const openMs = Date.now() - started;
  t.equal(clients.filter((c) => /^HTTP\/1\.1 101 /.test(c.head)).length, count, `${count} tunnels open in ${openMs} ms`);
  t.ok(gw.fds() >= baseFds + 2 * count, `the gateway holds ${gw.fds()} descriptors`);
  await sleep(500); // idle
  const rss = gw.rssKiB();
  const perTunnel = (rss - baseRss) / count;
  t.comment(`RSS ${(baseRss / 1024).toFixed(1)} MiB -> ${(rss / 1024).toFixed(1)} MiB with ${count} idle tunnels: ${perTunnel.toFixed(1)} KiB per tunnel`);
  t.ok(perTunnel < 64, `${perTunnel.toFixed(1)} KiB of gateway RSS per idle tunnel`);
  t.equal(clients.filter((c) => c.closed).length, 0, 'none closed while idle');
  // each tunnel still carries a byte both ways
  await inBatches(clients, 500, async (c, n) => {
    const byte = String.fromCharCode(97 + (n % 26));
    c.socket.write(byte);
    await waitFor(() => c.echoed.length > 0 || c.closed, 15_000, 'an echo');
  });
  t.equal(clients.filter((c, n) => c.echoed === String.fromCharCode(97 + (n % 26))).length, count, 'every tunnel echoed its byte');
  // close cleanly: the client's FIN goes upstream, the upstream's FIN comes back
  for (const c of clients) c.socket.end();
  await waitFor(() => clients.every((c) => c.closed), 20_000, 'every tunnel closed').catch(() => {});
  t.equal(clients.filter((c) => c.closed && c.gotEnd && !c.hadError).length, count, 'every client saw a FIN, no reset');
  t.equal(upstream.counts.ended, count + warm.length, 'every upstream connection got its FIN');
  await waitFor(() => gw.fds() <= baseFds + 2, 10_000, 'gateway descriptors freed').catch(() => {});
  t.ok(gw.fds() <= baseFds + 2, `gateway descriptors back to ${gw.fds()} (base ${baseFds})`);
  t.notMatch(gw.stderr(), / (warn|error) /, 'nothing logged above info');
  t.ok(gw.alive());
  t.comment(`whole case: ${Date.now() - started} ms`);
});
