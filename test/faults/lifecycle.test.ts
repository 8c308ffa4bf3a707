// The graceful life cycle under load: close({ drainMs }), SIGTERM, reload()
// and SIGHUP with 1,000 open tunnels and slow HTTP requests in flight. Nothing
// in flight is dropped, nothing hangs, and the deadline is kept.
import t from 'tap';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createGateway } from '../../lib/index.js';
import { rawExchange, waitFor, type Teardown } from '../helpers/net.js';
import {
  TunnelClient,
  echoAll,
  fdsBackTo,
  openFds,
  openTunnels,
  parseResponse,
  requestInFlight,
  scriptedUpstream,
  startCli,
  tryConnect,
  within,
} from '../helpers/faults.js';

const TUNNELS = 1000;
const IN_FLIGHT = 20;
const SLOW_MS = 300;
const BODY_BYTES = 256 * 1024;

function slowBody(tag: string, path: string): string {
  const start = `${tag} ${path} `;
  return start + 'z'.repeat(BODY_BYTES - start.length);
}

/**
 * An upstream that echoes tunnels and answers `GET /slow*` after SLOW_MS with a
 * 256 KiB body (`/slow-chunked*` in 64 KiB chunks, else with Content-Length).
 */
function loadUpstream(t: Teardown, tag: string) {
  return scriptedUpstream(
    t,
    (head, socket) => {
      const path = /^GET (\/slow\S*) /.exec(head)?.[1];
      if (path === undefined) return false;
      setTimeout(() => {
        const body = slowBody(tag, path);
        if (!path.startsWith('/slow-chunked')) {
          socket.end(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`);
          return;
        }
        socket.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n');
        for (let i = 0; i < body.length; i += 65536) {
          const piece = body.slice(i, i + 65536);
          socket.write(`${piece.length.toString(16)}\r\n${piece}\r\n`);
        }
        socket.end('0\r\n\r\n');
      }, SLOW_MS);
      return true;
    },
    { tag },
  );
}

const slowPath = (i: number) => (i % 2 === 0 ? `/slow/${i}` : `/slow-chunked/${i}`);

/** IN_FLIGHT slow requests, resolved once the upstream holds every one of them. */
async function startSlowRequests(port: number, upstream: { heads: string[] }) {
  const before = upstream.heads.filter((h) => h.startsWith('GET /slow')).length;
  const requests = await Promise.all(
    Array.from({ length: IN_FLIGHT }, (_, i) => requestInFlight(port, `GET ${slowPath(i)} HTTP/1.1\r\nHost: a\r\n\r\n`)),
  );
  await waitFor(() => upstream.heads.filter((h) => h.startsWith('GET /slow')).length === before + IN_FLIGHT, 10_000, 'the upstream holds every slow request');
  return requests;
}

/** How many of the slow requests got their complete 200 with the full body from `tag`. */
async function fullResponses(requests: Array<{ response: Promise<Buffer> }>, tag: string): Promise<number> {
  const responses = await within(Promise.all(requests.map((r) => r.response)), 15_000, 'every in-flight response');
  return responses.filter((bytes, i) => {
    const res = parseResponse(bytes);
    return res.complete && res.status === 200 && res.body.toString('latin1') === slowBody(tag, slowPath(i));
  }).length;
}

t.test(`close({ drainMs }) with ${TUNNELS} tunnels and requests in flight: requests complete, new connections are refused, tunnels close at the deadline`, async (t) => {
  const upstream = await loadUpstream(t, 'A');
  const baseline = openFds();
  const gw = createGateway({ routes: [`/=http://127.0.0.1:${upstream.port}`] });
  t.teardown(() => gw.close({ drainMs: 0 }));
  const { port } = await gw.listen(0, '127.0.0.1');

  const tunnels = await openTunnels(port, TUNNELS);
  t.equal(await echoAll(tunnels, 'before'), TUNNELS, 'every tunnel echoes');
  const idle = await requestInFlight(port, ''); // connected, no request yet
  const requests = await startSlowRequests(port, upstream);
  const reasons = new Map<string, number>();
  gw.on('tunnelClose', (info) => reasons.set(info.reason, (reasons.get(info.reason) ?? 0) + 1));

  const DRAIN_MS = 2500;
  const started = Date.now();
  const closing = gw.close({ drainMs: DRAIN_MS });
  t.equal(await fullResponses(requests, 'A'), IN_FLIGHT, 'every in-flight request got its full response');
  t.ok(Date.now() - started < DRAIN_MS, 'the requests finished before the deadline');
  await within(Promise.all(requests.map((r) => r.client.gone)), 5000, 'their connections are closed after the response');
  t.equal(await tryConnect(port), 'ECONNREFUSED', 'a new connection is refused');
  await within(idle.client.gone, 3000, 'a connection with no request in progress is closed at once');
  t.equal(await echoAll(tunnels.slice(0, 100), 'draining'), 100, 'tunnels still echo during the drain');
  t.equal(tunnels.filter((c) => c.socket.destroyed).length, 0, 'no tunnel closed before the deadline');

  await within(closing, DRAIN_MS + 10_000, 'close() resolves');
  const elapsed = Date.now() - started;
  t.ok(elapsed >= DRAIN_MS - 100 && elapsed < DRAIN_MS + 5000, `close() resolved at the deadline (${elapsed} ms)`);
  await within(Promise.all(tunnels.map((c) => c.socket.gone)), 5000, 'every tunnel client sees its connection closed');
  t.same([...reasons], [['shutdown', TUNNELS]], 'every tunnel closed as shutdown');
  t.same(gw.stats().connections, 0);
  await waitFor(() => upstream.open.size === 0, 5000, 'every upstream socket closed');
  t.ok((await fdsBackTo(baseline)) <= baseline, 'descriptors back to where they were before listen()');
});

t.test(`SIGTERM on the CLI with ${TUNNELS} tunnels and requests in flight: requests complete, exit code 0 at the drain deadline`, async (t) => {
  const upstream = await loadUpstream(t, 'A');
  const cli = await startCli(t, ['--listen', '127.0.0.1:0', '--route', `/=http://127.0.0.1:${upstream.port}`, '--drain-timeout', '3']);
  const tunnels = await openTunnels(cli.port, TUNNELS);
  t.equal(await echoAll(tunnels, 'before'), TUNNELS, 'every tunnel echoes');
  const requests = await startSlowRequests(cli.port, upstream);

  const started = Date.now();
  cli.child.kill('SIGTERM');
  t.equal(await fullResponses(requests, 'A'), IN_FLIGHT, 'every in-flight request got its full response');
  t.equal(cli.child.exitCode, null, 'still draining');
  t.equal(await tryConnect(cli.port), 'ECONNREFUSED', 'a new connection is refused while draining');
  t.equal(await echoAll(tunnels.slice(0, 100), 'draining'), 100, 'tunnels still echo during the drain');

  t.equal(await within(cli.exit, 15_000, 'the CLI exits'), 0, 'exit code 0');
  const elapsed = Date.now() - started;
  t.ok(elapsed >= 2900 && elapsed < 12_000, `exited at the drain deadline (${elapsed} ms)`);
  await within(Promise.all(tunnels.map((c) => c.socket.gone)), 5000, 'every tunnel client sees its connection closed');
  await waitFor(() => upstream.open.size === 0, 5000, 'every upstream socket closed');
  t.match(cli.stderr(), /SIGTERM: draining/);
});

t.test(`reload(config) under ${TUNNELS} tunnels and requests in flight drops nothing; new requests use the new config`, async (t) => {
  const a = await loadUpstream(t, 'A');
  const b = await loadUpstream(t, 'B');
  const gw = createGateway({ routes: [`/=http://127.0.0.1:${a.port}`] });
  t.teardown(() => gw.close({ drainMs: 0 }));
  const { port } = await gw.listen(0, '127.0.0.1');
  let closes = 0;
  gw.on('tunnelClose', () => closes++);

  const tunnels = await openTunnels(port, TUNNELS);
  const requests = await startSlowRequests(port, a);
  // reload while every tunnel has a message in flight
  const echoing = echoAll(tunnels, 'during');
  gw.reload({ routes: [`/=http://127.0.0.1:${b.port}`] });
  t.equal(await echoing, TUNNELS, 'every tunnel echoed across the reload');
  t.equal(await fullResponses(requests, 'A'), IN_FLIGHT, 'in-flight requests completed on the old upstream');

  const fresh = await rawExchange(port, 'GET /new HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n');
  t.match(fresh.text, /\r\n\r\nB \/new$/, 'a new request goes to the new upstream');
  const upgradesAtB = b.heads.filter((h) => /\r\nupgrade: websocket/i.test(h)).length;
  const newTunnel = await TunnelClient.open(port);
  await newTunnel.roundTrip('new tunnel');
  t.equal(b.heads.filter((h) => /\r\nupgrade: websocket/i.test(h)).length, upgradesAtB + 1, 'a new tunnel opens to the new upstream');
  t.equal(await echoAll(tunnels, 'after'), TUNNELS, 'the old tunnels still echo');
  t.equal(closes, 0, 'no tunnel was closed');
  t.equal(gw.stats().tunnels, TUNNELS + 1);
  for (const c of [...tunnels, newTunnel]) c.socket.destroy();
  await waitFor(() => gw.stats().tunnels === 0, 10_000, 'tunnels released');
});

t.test(`SIGHUP on the CLI under ${TUNNELS} tunnels and requests in flight drops nothing; new requests use the new config`, async (t) => {
  const a = await loadUpstream(t, 'A');
  const b = await loadUpstream(t, 'B');
  const file = join(mkdtempSync(join(tmpdir(), 'wsgate-faults-')), 'wsgate.json');
  const configFor = (port: number) => JSON.stringify({ listen: ['127.0.0.1:0'], routes: [`/=http://127.0.0.1:${port}`] });
  writeFileSync(file, configFor(a.port));
  const cli = await startCli(t, ['--config', file, '--drain-timeout', '1']);

  const tunnels = await openTunnels(cli.port, TUNNELS);
  const requests = await startSlowRequests(cli.port, a);
  const fdsBefore = openFds(cli.pid);
  writeFileSync(file, configFor(b.port));
  const echoing = echoAll(tunnels, 'during');
  cli.child.kill('SIGHUP');
  await waitFor(() => /config reloaded/.test(cli.stderr()), 10_000, 'the reload is logged');
  t.equal(await echoing, TUNNELS, 'every tunnel echoed across the reload');
  t.equal(await fullResponses(requests, 'A'), IN_FLIGHT, 'in-flight requests completed on the old upstream');
  const fresh = await rawExchange(cli.port, 'GET /new HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n');
  t.match(fresh.text, /\r\n\r\nB \/new$/, 'a new request goes to the new upstream');
  t.equal(await echoAll(tunnels, 'after'), TUNNELS, 'the old tunnels still echo');
  t.notMatch(cli.stderr(), /tunnel closed|error/, 'nothing was closed or failed');
  t.ok((await fdsBackTo(fdsBefore, cli.pid)) <= fdsBefore, 'the reload leaked no descriptor in the daemon');

  cli.child.kill('SIGTERM');
  t.equal(await within(cli.exit, 15_000, 'the CLI exits'), 0, 'exit code 0');
  await within(Promise.all(tunnels.map((c) => c.socket.gone)), 5000, 'every tunnel client sees its connection closed');
});
