// Client faults injected with real sockets: resets at every phase, clients
// that vanish without a FIN (silent, or no longer reading) and are reclaimed
// by the timeouts, and half-closes at awkward moments. After each fault the
// gateway serves the next client normally and its process holds no more
// descriptors than before.
import t, { type Test } from 'tap';
import type net from 'node:net';
import type { GatewayConfig, LocationConfig } from '../../lib/index.js';
import { completeResponses, startGateway, switchingProtocols, upgradeRequest, waitFor } from '../helpers/net.js';
import { closed, connectRaw, fdsBackTo, openFds, openTunnels, scriptedUpstream, servesNormally, within, type RawPeer } from '../helpers/faults.js';

const HTTP_FAULT = 'GET /fault HTTP/1.1\r\nHost: a\r\n\r\n';
const WS_FAULT = upgradeRequest('/fault');
const BIG_POST = 'POST /fault HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n';

/** Writes to `socket` for as long as it takes bytes; stops (and stays stopped) once it blocks or closes. */
function flood(socket: net.Socket): void {
  const chunk = Buffer.alloc(64 * 1024, 0x61);
  const write = () => {
    while (!socket.destroyed && socket.writable) if (!socket.write(chunk)) return void socket.once('drain', write);
  };
  write();
}

interface ClientFault {
  title: string;
  /** What the client sends first. */
  request: string;
  /** The upstream's script once it has the faulty request head (default: silence). */
  upstream?(up: net.Socket): void;
  /** Wait for this before the fault: the upstream has the request, or the client saw these bytes. */
  waitFor: 'nothing' | 'upstream' | { clientSees: string };
  /** The fault itself. */
  fault(client: RawPeer): void;
  location?: Partial<LocationConfig>;
  config?: Partial<GatewayConfig>;
  /** The upstream is never contacted. */
  noUpstream?: boolean;
  /** The reported error code, if the fault is reported. */
  code?: string;
  /** A timeout reclaims the connection: not before this many ms. */
  notBeforeMs?: number;
  /** Extra checks once the connection is gone. */
  check?(t: Test, client: RawPeer, upstreamBytes: number): void;
}

const reset = (c: RawPeer) => c.resetAndDestroy();
const silent = () => {};

const faults: ClientFault[] = [
  // attacks.md #10: RST mid-head
  { title: 'client resets mid-head: no upstream connection is made', request: 'GET /fault HTTP/1.1\r\nHost: a\r\nX-Hal', waitFor: 'nothing', fault: reset, noUpstream: true },
  // attacks.md #10; node-http-proxy #1286 (client abort leaked the upstream request)
  { title: 'client resets after its request head, before any response: the upstream socket is closed', request: HTTP_FAULT, waitFor: 'upstream', fault: reset },
  // attacks.md #10 "mid-101": the client leaves while the upstream considers the handshake
  { title: 'client resets after its handshake, before the 101: the upstream socket is closed', request: WS_FAULT, waitFor: 'upstream', fault: reset },
  // attacks.md #10; redbird #188 (upstream socket left open after the client reset)
  {
    title: 'client resets mid-tunnel: the upstream socket is closed',
    request: WS_FAULT,
    upstream: (up) => up.write(switchingProtocols() + 'tunnel data'),
    waitFor: { clientSees: 'tunnel data' },
    fault: reset,
  },
  // attacks.md #10 mid-body: the upstream must never see a complete request
  {
    title: 'client resets mid request body: the upstream never gets the whole body',
    request: BIG_POST + 'x'.repeat(1000),
    waitFor: 'upstream',
    fault: reset,
    check: (t, _c, upstreamBytes) => t.ok(upstreamBytes < 100_000, `upstream got ${upstreamBytes} body bytes of 100000`),
  },
  // attacks.md #10 mid-body, response side: the upstream connection is dropped, not pooled
  {
    title: 'client resets mid response body: the upstream socket is closed',
    request: HTTP_FAULT,
    upstream: (up) => (up.write('HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n'), flood(up)),
    waitFor: { clientSees: 'aaaa' },
    fault: reset,
  },
  // attacks.md #32; Envoy WebSocketConnectionIdleTimeout: a client gone without a FIN leaves a silent tunnel
  {
    title: 'client vanishes mid-tunnel without a FIN: tunnelTimeout reclaims both sides',
    request: WS_FAULT,
    upstream: (up) => up.write(switchingProtocols()),
    waitFor: { clientSees: '\r\n\r\n' },
    fault: silent,
    location: { tunnelTimeout: 0.5 },
    notBeforeMs: 450,
  },
  // attacks.md #31 "same inside a tunnel": a client that stops reading blocks the flood, then the tunnel idles out
  {
    title: 'client stops reading a flooding tunnel: backpressure, then tunnelTimeout reclaims both sides',
    request: WS_FAULT,
    upstream: (up) => (up.write(switchingProtocols()), flood(up)),
    waitFor: { clientSees: 'aaaa' },
    fault: (c) => c.pause(),
    location: { tunnelTimeout: 0.5 },
    notBeforeMs: 450,
  },
  // attacks.md #30 slow body; nginx proxy_send_timeout
  {
    title: 'client goes silent mid request body: cut after sendTimeout, the upstream socket closed',
    request: BIG_POST + 'x'.repeat(1000),
    waitFor: 'upstream',
    fault: silent,
    location: { sendTimeout: 0.5 },
    code: 'WSG_ERR_DOWNSTREAM_TIMEOUT',
    notBeforeMs: 450,
  },
  // attacks.md #31 slow read; nginx send_timeout
  {
    title: 'client stops reading a large response: cut after sendTimeout, the upstream socket closed',
    request: HTTP_FAULT,
    upstream: (up) => (up.write('HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n'), flood(up)),
    waitFor: { clientSees: 'aaaa' },
    fault: (c) => c.pause(),
    location: { sendTimeout: 0.5 },
    code: 'WSG_ERR_DOWNSTREAM_TIMEOUT',
    notBeforeMs: 450,
  },
  // nginx keepalive_timeout: an idle keep-alive client is closed without a 408
  {
    title: 'client goes silent between keep-alive requests: closed after keepAliveTimeout, nothing sent',
    request: HTTP_FAULT,
    upstream: (up) => up.end('HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\ndone'),
    waitFor: { clientSees: 'done' },
    fault: silent,
    config: { keepAliveTimeout: 0.5 },
    notBeforeMs: 450,
    check: (t, c) => t.ok(c.text().endsWith('\r\n\r\ndone'), 'nothing after the response'),
  },
  // attacks.md #10 "C end() after bye!", here before the 101: the upgrade may be given up
  // (as nginx treats an early client close as an abort) or completed, but never left hanging
  {
    title: 'client sends bye! and FIN right behind its handshake: both sides are released',
    request: WS_FAULT + 'bye!',
    upstream: (up) => {
      const got: Buffer[] = [];
      up.on('data', (c) => got.push(c));
      up.removeAllListeners('end'); // the scripted upstream's own end() would go first and drop the answer
      up.once('end', () => up.end(`upstream saw ${Buffer.concat(got).toString()}`));
      up.write(switchingProtocols());
    },
    waitFor: 'nothing',
    fault: (c) => c.end(),
    check: (t, c) => {
      if (c.text() === '') t.pass('the upgrade was given up');
      else t.match(c.text(), /^HTTP\/1\.1 101 [^]*\r\n\r\nupstream saw bye!$/, 'completed: bye! arrived before the FIN');
    },
  },
  // RFC 9112 §9.6: a client may half-close after its request; the answer still comes
  {
    title: 'client half-closes after a complete request: the whole response still arrives',
    request: HTTP_FAULT,
    upstream: (up) => up.end('HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n\r\nanswered'),
    waitFor: 'nothing',
    fault: (c) => c.end(),
    check: (t, c) => t.equal(completeResponses(Buffer.concat(c.chunks)), 1, 'one complete response'),
  },
  // attacks.md #10 "mid-body" with a FIN: an incomplete body is never completed upstream
  {
    title: 'client half-closes mid request body: the upstream never gets the whole body',
    request: BIG_POST + 'x'.repeat(1000),
    waitFor: 'upstream',
    fault: (c) => c.end(),
    check: (t, _c, upstreamBytes) => t.ok(upstreamBytes < 100_000, `upstream got ${upstreamBytes} body bytes of 100000`),
  },
];

for (const fault of faults) {
  t.test(fault.title, async (t) => {
    let faulty: net.Socket | null = null;
    let upstreamBytes = 0;
    const upstream = await scriptedUpstream(t, (head, socket) => {
      if (!/^[A-Z]+ \/fault /.test(head)) return false;
      faulty = socket;
      socket.on('data', (c) => (upstreamBytes += c.length));
      (fault.upstream ?? silent)(socket);
      return true;
    });
    const { gw, port } = await startGateway(t, {
      ...fault.config,
      servers: [{ locations: [{ path: '/', upstream: `http://127.0.0.1:${upstream.port}`, ...fault.location }] }],
    });
    const errors: string[] = [];
    gw.on('connectionError', (err) => errors.push(err.code));
    await servesNormally(t, port, gw); // warm up: listeners, pool, lazily opened descriptors
    const baseline = openFds();
    const acceptedBefore = upstream.accepted();

    const client = await connectRaw(port, { endOnEnd: false });
    const started = Date.now();
    client.write(fault.request);
    if (fault.waitFor === 'upstream') await waitFor(() => faulty !== null, 5000, 'the upstream has the request');
    else if (fault.waitFor !== 'nothing') {
      const text = fault.waitFor.clientSees;
      await waitFor(() => client.text().includes(text), 5000, 'the client got the first bytes');
    }
    const faultySocket = faulty as net.Socket | null;
    const upstreamGone = faultySocket === null ? Promise.resolve() : closed(faultySocket);
    fault.fault(client);

    // the gateway lets go of both sides
    await within(upstreamGone, 10_000, 'the upstream socket is closed');
    if (!client.destroyed) {
      client.once('end', () => client.end());
      if (client.readableEnded) client.end();
      client.resume();
      await within(client.gone, 10_000, 'the client connection is closed');
    }
    const elapsed = Date.now() - started;
    await waitFor(() => gw.stats().connections === 0, 5000, 'the connection is released');
    if (fault.noUpstream) t.equal(upstream.accepted(), acceptedBefore, 'the upstream was never contacted');
    if (fault.notBeforeMs !== undefined) t.ok(elapsed >= fault.notBeforeMs && elapsed < 5000, `reclaimed after ${elapsed} ms`);
    t.same(errors, fault.code === undefined ? [] : [fault.code], 'reported as expected');
    fault.check?.(t, client, upstreamBytes);

    await servesNormally(t, port, gw);
    t.ok((await fdsBackTo(baseline)) <= baseline, 'descriptors back to where they started');
  });
}

t.test('500 clients vanish from their tunnels at once: all are reclaimed by tunnelTimeout', async (t) => {
  const upstream = await scriptedUpstream(t);
  const { gw, port } = await startGateway(t, {
    servers: [{ locations: [{ path: '/', upstream: `http://127.0.0.1:${upstream.port}`, tunnelTimeout: 1 }] }],
  });
  await servesNormally(t, port, gw);
  const baseline = openFds();
  const reasons = new Map<string, number>();
  gw.on('tunnelClose', (info) => reasons.set(info.reason, (reasons.get(info.reason) ?? 0) + 1));

  const tunnels = await openTunnels(port, 500, '/ws/');
  // On a loaded machine opening 500 takes longer than their 1 s timeout: the first may be reclaimed already.
  t.equal(gw.stats().tunnels + (reasons.get('idle') ?? 0), 500, 'every tunnel open, or already closed as idle');
  const opened = Date.now();
  // every client just stops: no byte, no FIN
  await within(Promise.all(tunnels.map((c) => c.socket.gone)), 15_000, 'every silent tunnel closed');
  const ms = Date.now() - opened;
  t.ok(ms >= 900, `reclaimed after ${ms} ms`);
  await waitFor(() => gw.stats().tunnels === 0 && upstream.open.size === 0, 5000, 'both sides released');
  t.same([...reasons], [['idle', 500]], 'every tunnel closed as idle');
  await servesNormally(t, port, gw);
  t.ok((await fdsBackTo(baseline)) <= baseline, 'descriptors back to where they started');
});
