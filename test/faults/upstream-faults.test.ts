// Upstream faults injected with real sockets: resets at every phase, silence,
// garbage, half heads, and an upstream process killed with SIGKILL. After each
// fault the gateway serves the next client normally and its process holds no
// more descriptors than before.
import t from 'tap';
import type net from 'node:net';
import type { LocationConfig } from '../../lib/index.js';
import { completeResponses, rawExchange, startGateway, switchingProtocols, upgradeRequest, waitFor } from '../helpers/net.js';
import { connectRaw, fdsBackTo, openFds, openTunnels, scriptedUpstream, servesNormally, startEchoUpstreamProcess, within } from '../helpers/faults.js';

const HTTP_FAULT = 'GET /fault HTTP/1.1\r\nHost: a\r\n\r\n';
const WS_FAULT = upgradeRequest('/fault');

interface UpstreamFault {
  title: string;
  webSocket: boolean;
  /** The upstream got the faulty request head. */
  respond(up: net.Socket): void;
  /** Then, once the client has received this text, `then` runs. */
  clientSees?: string;
  then?(up: net.Socket): void;
  /** The status the client is answered with, or 'cut': closed without a complete response. */
  expect: number | 'cut' | 'reset';
  code: string | RegExp;
  location?: Partial<LocationConfig>;
  /** For timeouts: the answer comes no earlier than this. */
  notBeforeMs?: number;
}

const HALF_101 = 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConn';
const HALF_200 = 'HTTP/1.1 200 OK\r\nContent-Le';
// The half head may be read before the reset (closed early) or lost with it (reset).
const HALF_HEAD_RESET = /^WSG_ERR_UPSTREAM_(CLOSED|CONNECT)$/;

const faults: UpstreamFault[] = [
  // attacks.md #10 (RST before S answers); node-http-proxy #1439, http-proxy-3 #5 (ECONNRESET crash)
  { title: 'upstream resets a WebSocket handshake before any response byte: 502', webSocket: true, respond: (up) => up.resetAndDestroy(), expect: 502, code: 'WSG_ERR_UPSTREAM_CONNECT' },
  // attacks.md #10 "mid-101"
  { title: 'upstream resets after half a 101 head: 502, no tunnel', webSocket: true, respond: (up) => (up.write(HALF_101), up.resetAndDestroy()), expect: 502, code: HALF_HEAD_RESET },
  // attacks.md #6: S closes without a complete answer -> 502
  { title: 'upstream closes (FIN) after half a 101 head: 502', webSocket: true, respond: (up) => up.end(HALF_101), expect: 502, code: 'WSG_ERR_UPSTREAM_CLOSED' },
  // attacks.md #10; Envoy websocket_integration_test "...UpstreamDisconnect"
  {
    title: 'upstream resets mid-tunnel: the client connection is reset too',
    webSocket: true,
    respond: (up) => up.write(switchingProtocols() + 'tunnel data'),
    clientSees: 'tunnel data',
    then: (up) => up.resetAndDestroy(),
    expect: 'reset',
    code: '',
  },
  // attacks.md #37: malformed upstream responses -> 502
  { title: 'upstream answers a handshake with garbage: 502', webSocket: true, respond: (up) => up.write('\x16\x03\x01\x02\x00garbage\r\n\r\n'), expect: 502, code: 'WSG_ERR_UPSTREAM_BAD_RESPONSE' },
  // attacks.md #10; http-proxy-3 #5
  { title: 'upstream resets a plain request before any response byte: 502', webSocket: false, respond: (up) => up.resetAndDestroy(), expect: 502, code: 'WSG_ERR_UPSTREAM_CONNECT' },
  // attacks.md #6: "S silent close -> 502"
  { title: 'upstream closes (FIN) after half a response head: 502', webSocket: false, respond: (up) => up.end(HALF_200), expect: 502, code: 'WSG_ERR_UPSTREAM_CLOSED' },
  // attacks.md #10 mid-head on the response side
  { title: 'upstream resets after half a response head: 502', webSocket: false, respond: (up) => (up.write(HALF_200), up.resetAndDestroy()), expect: 502, code: HALF_HEAD_RESET },
  // nginx proxy_read_timeout; README readTimeout: "before any response byte: 504"
  { title: 'upstream accepts a request and never answers: 504 after readTimeout', webSocket: false, respond: () => {}, expect: 504, code: 'WSG_ERR_UPSTREAM_TIMEOUT', location: { readTimeout: 0.4 }, notBeforeMs: 350 },
  // attacks.md #37
  { title: 'upstream answers garbage: 502', webSocket: false, respond: (up) => up.write('SSH-2.0-OpenSSH_9.2\r\n\r\n'), expect: 502, code: 'WSG_ERR_UPSTREAM_BAD_RESPONSE' },
  // attacks.md #37: CL+TE in a response
  { title: 'upstream answers with Content-Length and Transfer-Encoding both: 502', webSocket: false, respond: (up) => up.write('HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n'), expect: 502, code: 'WSG_ERR_UPSTREAM_BAD_RESPONSE' },
  // attacks.md #10 mid-body; README WSG_ERR_UPSTREAM_ABORTED: never a complete-looking response
  {
    title: 'upstream resets mid Content-Length body: the client is cut, never handed a complete response',
    webSocket: false,
    respond: (up) => up.write('HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nfirst half'),
    clientSees: 'first half',
    then: (up) => up.resetAndDestroy(),
    expect: 'cut',
    code: 'WSG_ERR_UPSTREAM_ABORTED',
  },
  // same, chunked: the last chunk must never be made up
  {
    title: 'upstream resets mid chunked body: the client is cut before a last chunk',
    webSocket: false,
    respond: (up) => up.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\nfirst half\r\n'),
    clientSees: 'first half',
    then: (up) => up.resetAndDestroy(),
    expect: 'cut',
    code: 'WSG_ERR_UPSTREAM_ABORTED',
  },
  // attacks.md #6: S closes (FIN) mid-body
  {
    title: 'upstream closes (FIN) mid Content-Length body: the client is cut',
    webSocket: false,
    respond: (up) => up.write('HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nfirst half'),
    clientSees: 'first half',
    then: (up) => up.end(),
    expect: 'cut',
    code: 'WSG_ERR_UPSTREAM_ABORTED',
  },
  // nginx proxy_read_timeout applies between two reads of the body too
  {
    title: 'upstream stalls mid body: the client is cut after readTimeout',
    webSocket: false,
    respond: (up) => up.write('HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nfirst half'),
    expect: 'cut',
    code: 'WSG_ERR_UPSTREAM_TIMEOUT',
    location: { readTimeout: 0.4 },
    notBeforeMs: 350,
  },
];

for (const fault of faults) {
  t.test(fault.title, async (t) => {
    let faulty: net.Socket | null = null;
    const upstream = await scriptedUpstream(t, (head, socket) => {
      if (!head.startsWith('GET /fault ')) return false;
      faulty = socket;
      fault.respond(socket);
      return true;
    });
    const { gw, port } = await startGateway(t, {
      servers: [{ locations: [{ path: '/', upstream: `http://127.0.0.1:${upstream.port}`, ...fault.location }] }],
    });
    const errors: string[] = [];
    gw.on('connectionError', (err) => errors.push(err.code));
    await servesNormally(t, port, gw); // warm up: listeners, pool, lazily opened descriptors
    const baseline = openFds();

    const client = await connectRaw(port);
    const started = Date.now();
    client.write(fault.webSocket ? WS_FAULT : HTTP_FAULT);
    if (fault.then) {
      await waitFor(() => client.text().includes(fault.clientSees!), 5000, 'the first bytes reach the client');
      await waitFor(() => faulty !== null, 5000, 'the upstream has the request');
      fault.then(faulty!);
    }
    await within(client.gone, 10_000, 'the client connection is closed');
    const elapsed = Date.now() - started;
    const bytes = Buffer.concat(client.chunks);
    if (fault.expect === 'cut') {
      t.equal(completeResponses(bytes), 0, 'no complete response reached the client');
    } else if (fault.expect === 'reset') {
      t.match(client.text(), /^HTTP\/1\.1 101 /, 'the tunnel was open');
      t.equal(client.error?.code, 'ECONNRESET', 'the client connection was reset');
    } else {
      t.match(client.text(), new RegExp(`^HTTP/1\\.1 ${fault.expect} `), `answered ${fault.expect}`);
      t.match(client.text(), /\r\nConnection: close\r\n/);
      t.equal(completeResponses(bytes), 1, 'exactly one response');
    }
    if (fault.notBeforeMs !== undefined) t.ok(elapsed >= fault.notBeforeMs && elapsed < 5000, `after ${elapsed} ms`);
    if (fault.code !== '') t.match(errors, [fault.code], 'reported with its code');
    t.equal(errors.length, fault.code === '' ? 0 : 1, 'one connectionError per fault');
    await waitFor(() => upstream.open.size === 0, 5000, 'the faulty upstream socket is closed');

    await servesNormally(t, port, gw);
    t.same(gw.stats().tunnels, 0);
    t.ok((await fdsBackTo(baseline)) <= baseline, 'descriptors back to where they started');
  });
}

t.test('the upstream process is killed with SIGKILL under 100 open tunnels: every client is closed promptly', async (t) => {
  const echo = await startEchoUpstreamProcess(t);
  const other = await scriptedUpstream(t);
  const { gw, port } = await startGateway(t, {
    routes: [`/ws/=http://127.0.0.1:${echo.port}`, `/=http://127.0.0.1:${other.port}`],
  });
  await servesNormally(t, port, gw);
  const baseline = openFds();
  const closes: string[] = [];
  gw.on('tunnelClose', (info) => closes.push(info.reason));

  const tunnels = await openTunnels(port, 100, '/ws/');
  t.equal(gw.stats().tunnels, 100);
  await Promise.all(tunnels.map((c, i) => c.roundTrip(`before kill ${i}`)));
  t.pass('100 tunnels echo through the child process');

  const killedAt = Date.now();
  process.kill(echo.pid, 'SIGKILL');
  await within(Promise.all(tunnels.map((c) => c.socket.gone)), 5000, 'every client closed');
  const ms = Date.now() - killedAt;
  t.ok(ms < 5000, `all 100 clients closed ${ms} ms after the kill`);
  t.equal(await echo.exit, null, 'the upstream died of the signal');
  await waitFor(() => gw.stats().tunnels === 0 && gw.stats().connections === 0, 5000, 'no tunnel left');
  t.equal(closes.length, 100, 'every tunnel reported closed');

  // the dead upstream is refused cleanly, the other location is served as before
  const refused = await rawExchange(port, upgradeRequest('/ws/'));
  t.match(refused.text, /^HTTP\/1\.1 502 /);
  await servesNormally(t, port, gw);
  t.ok((await fdsBackTo(baseline)) <= baseline, 'descriptors back to where they started');
});
