// TLS in and out (issue #15): wss:// and https:// clients on a TLS listener
// (SNI choosing between certificates, TLS 1.2+ only, ALPN http/1.1 only), a
// certificate reload under open tunnels, and https:// upstreams verified
// against Node's CA store plus the location's own CA.
import t from 'tap';
import { once } from 'node:events';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import { Agent, request } from 'undici';
import WebSocket, { WebSocketServer } from 'ws';
import { ConfigError, createGateway, type Gateway, type GatewayConfig, type LogLevel } from '../../lib/index.js';
import { makePki, type Leaf, type Pki } from '../helpers/tls.js';
import { answeringUpstream, waitFor, wsEcho, type Teardown } from '../helpers/net.js';

interface Started {
  gw: Gateway;
  port: number;
  logs: Array<{ level: LogLevel; message: string }>;
}

async function tlsGateway(t: Teardown, certificates: Leaf[], config: GatewayConfig): Promise<Started> {
  const logs: Started['logs'] = [];
  const gw = createGateway({ ...config, logger: { log: (level, message) => logs.push({ level, message }) } });
  const address = await gw.listen({ host: '127.0.0.1', port: 0, tls: { certificates: certificates.map(({ cert, key }) => ({ cert, key })) } });
  t.teardown(() => gw.close({ drainMs: 0 }));
  return { gw, port: address.port, logs };
}

/** The TLS facts of one handshake: the certificate's names, the protocol, ALPN. */
async function handshake(port: number, options: tls.ConnectionOptions): Promise<{ names: string; protocol: string | null; alpn: string | false | null }> {
  const socket = tls.connect({ host: '127.0.0.1', port, ...options });
  try {
    await once(socket, 'secureConnect');
    return { names: socket.getPeerCertificate().subjectaltname ?? '', protocol: socket.getProtocol(), alpn: socket.alpnProtocol };
  } finally {
    socket.destroy();
  }
}

/** A `ws` client over TLS trusting the test CA (certificate a names 127.0.0.1 too). */
function wssClient(port: number, path: string): WebSocket {
  return new WebSocket(`wss://127.0.0.1:${port}${path}`, { ca: pki.caPem });
}

async function echo(ws: WebSocket, text: string): Promise<string> {
  const got = new Promise<string>((resolve) => ws.once('message', (d) => resolve(d.toString())));
  ws.send(text);
  return got;
}

let pki: Pki;
let a: Leaf;
let b: Leaf;
t.before(() => {
  pki = makePki(t);
  a = pki.leaf('a', ['a.test', '127.0.0.1']);
  b = pki.leaf('b', ['*.b.test', 'b.test']);
});

t.test('wss:// through a TLS listener: the tunnel echoes, and the upstream is told https', async (t) => {
  const upstream = await wsEcho(t);
  const { gw, port } = await tlsGateway(t, [a], { routes: [`/ws/=http://127.0.0.1:${upstream.port}`] });
  const forwarded = once(upstream.wss, 'connection');
  const ws = wssClient(port, '/ws/');
  t.teardown(() => ws.terminate());
  await once(ws, 'open');
  const [, req] = (await forwarded) as [unknown, { headers: Record<string, string> }];
  t.equal(req.headers['x-forwarded-proto'], 'https', 'X-Forwarded-Proto: https');
  t.equal(await echo(ws, 'over tls'), 'over tls');
  t.equal(gw.stats().tunnels, 1);
  const big = Buffer.alloc(1 << 20, 7);
  const back = new Promise<Buffer>((resolve) => ws.once('message', (d) => resolve(d as Buffer)));
  ws.send(big);
  t.ok((await back).equals(big), '1 MiB message intact both ways over TLS');
});

t.test('https:// through a TLS listener with undici: keep-alive requests', async (t) => {
  const upstream = await answeringUpstream(t, (head, socket) => {
    const proto = /\r\nx-forwarded-proto: *([^\r]*)/i.exec(head)?.[1] ?? '';
    socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${proto.length}\r\n\r\n${proto}`);
  });
  const { port } = await tlsGateway(t, [a], { routes: [`/=http://127.0.0.1:${upstream.port}`] });
  const agent = new Agent({ connect: { ca: pki.caPem, servername: 'a.test' } });
  t.teardown(() => agent.close());
  for (let i = 0; i < 3; i++) {
    const res = await request(`https://127.0.0.1:${port}/page`, { dispatcher: agent });
    t.equal(res.statusCode, 200);
    t.equal(await res.body.text(), 'https', `request ${i}: upstream saw https`);
  }
  t.equal(upstream.sockets.length, 1, 'one pooled upstream connection');
});

t.test('SNI picks the certificate: exact name, wildcard, and the first for no SNI or an unknown name', async (t) => {
  const upstream = await wsEcho(t);
  const { port } = await tlsGateway(t, [a, b], { routes: [`/=http://127.0.0.1:${upstream.port}`] });
  const trust = { ca: pki.caPem };
  t.match((await handshake(port, { ...trust, servername: 'a.test' })).names, /DNS:a\.test/, 'a.test: a');
  t.match((await handshake(port, { ...trust, servername: 'b.test' })).names, /DNS:\*\.b\.test/, 'b.test: b (exact SAN)');
  t.match((await handshake(port, { ...trust, servername: 'x.b.test' })).names, /DNS:\*\.b\.test/, 'x.b.test: b (wildcard)');
  t.match((await handshake(port, { ...trust, servername: 'X.B.TEST' })).names, /DNS:\*\.b\.test/, 'names compare case-insensitively');
  t.match((await handshake(port, { ...trust, servername: 'y.x.b.test', rejectUnauthorized: false })).names, /DNS:a\.test/, 'a wildcard covers one label only: default');
  t.match((await handshake(port, { ...trust, servername: 'unknown.test', rejectUnauthorized: false })).names, /DNS:a\.test/, 'unknown name: the first');
  t.match((await handshake(port, { ...trust })).names, /DNS:a\.test/, 'no SNI (an IP address): the first');
});

t.test('TLS 1.2 and 1.3 only; ALPN offers http/1.1 only, never h2', async (t) => {
  const upstream = await wsEcho(t);
  const { gw, port, logs } = await tlsGateway(t, [a], { routes: [`/=http://127.0.0.1:${upstream.port}`] });
  const trust = { ca: pki.caPem, servername: 'a.test' };
  t.equal((await handshake(port, { ...trust, maxVersion: 'TLSv1.2' })).protocol, 'TLSv1.2');
  t.equal((await handshake(port, trust)).protocol, 'TLSv1.3');
  await t.rejects(handshake(port, { ...trust, minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT:@SECLEVEL=0' }), 'TLS 1.1 is refused');
  await waitFor(() => gw.stats().tlsHandshakeFailures >= 1, 2000, 'the failure counted');
  t.ok(logs.some((l) => /TLS handshake failed/.test(l.message)), 'and logged');
  t.equal((await handshake(port, { ...trust, ALPNProtocols: ['h2', 'http/1.1'] })).alpn, 'http/1.1', 'h2 and http/1.1 offered: http/1.1');
  let h2Only: string | false | null = null;
  try {
    h2Only = (await handshake(port, { ...trust, ALPNProtocols: ['h2'] })).alpn;
  } catch {
    h2Only = 'refused';
  }
  t.not(h2Only, 'h2', `h2 alone offered: never h2 (got ${String(h2Only)})`);
  t.equal((await handshake(port, trust)).alpn, false, 'no ALPN offered: none chosen');
});

t.test('a client that leaves before its handshake finishes abandoned it: counted apart, not as a failure (browsers drop spare connections)', async (t) => {
  const upstream = await wsEcho(t);
  const { gw, port, logs } = await tlsGateway(t, [a], { routes: [`/=http://127.0.0.1:${upstream.port}`] });
  const closed = (act: (socket: net.Socket) => void) =>
    new Promise<void>((resolve) => {
      const socket = net.connect(port, '127.0.0.1', () => act(socket));
      socket.on('error', () => {});
      socket.on('close', () => resolve());
    });
  await closed((s) => s.end()); // connects and leaves at once, as Chromium's preconnected sockets do
  await closed((s) => s.resetAndDestroy()); // a reset before any byte
  await closed((s) => { s.write(Buffer.from([0x16, 0x03, 0x01, 0x00, 0x40, 0x01])); setTimeout(() => s.end(), 20); }); // half a ClientHello, then gone
  await waitFor(() => gw.stats().tlsHandshakesAbandoned === 3, 2000, 'three abandoned');
  t.equal(gw.stats().tlsHandshakeFailures, 0, 'none counted as a failure');
  t.notOk(logs.some((l) => /TLS handshake failed/.test(l.message)), 'none logged as a failure');
  await closed((s) => s.write('GET / HTTP/1.1\r\nHost: a\r\n\r\n')); // not TLS at all: a failure
  await waitFor(() => gw.stats().tlsHandshakeFailures === 1, 2000, 'plain HTTP on the TLS port: a failure');
  t.equal(gw.stats().tlsHandshakesAbandoned, 3);
});

t.test('a plain HTTP request on the TLS port is not served; a bad client certificate chain fails the handshake only', async (t) => {
  const upstream = await wsEcho(t);
  const { gw, port } = await tlsGateway(t, [a], { routes: [`/=http://127.0.0.1:${upstream.port}`] });
  await t.rejects(handshake(port, { servername: 'a.test' }), 'a client that does not trust the CA refuses the certificate');
  const ws = wssClient(port, '/');
  t.teardown(() => ws.terminate());
  await once(ws, 'open');
  t.equal(await echo(ws, 'still serving'), 'still serving');
  t.equal(gw.stats().internalErrors, 0);
});

t.test('a listener with a key that is not its certificate\'s, or an unreadable file, is refused with the reason', async (t) => {
  const gw = createGateway({ routes: ['/=http://127.0.0.1:1'] });
  t.teardown(() => gw.close({ drainMs: 0 }));
  await t.rejects(gw.listen({ port: 0, host: '127.0.0.1', tls: { certificates: [{ cert: a.cert, key: b.key }] } }), /does not belong to the certificate/);
  await t.rejects(gw.listen({ port: 0, host: '127.0.0.1', tls: { certificates: [{ cert: `${pki.dir}/missing.pem`, key: a.key }] } }), /cannot read the certificate .*missing\.pem: ENOENT/);
  let err: unknown;
  try {
    createGateway({ routes: ['/=http://127.0.0.1:1'], listen: [{ address: '127.0.0.1:0', tls: { certificates: [{ cert: a.cert, key: b.key }] } }] });
  } catch (e) {
    err = e;
  }
  t.ok(err instanceof ConfigError, 'a ConfigError at createGateway');
  t.match((err as ConfigError).problem, /^listen\[0\]\.tls\.certificates\[0\]: the key .* does not belong/);
  t.throws(() => createGateway({ routes: ['/=http://127.0.0.1:1'], listen: [{ address: '127.0.0.1:0', tls: { certificates: [] } }] }), /listen\[0\]\.tls\.certificates: must be a non-empty array/);
});

t.test('reload: new handshakes get the new certificate, open wss tunnels keep echoing; a bad pair keeps the old', async (t) => {
  const upstream = await wsEcho(t);
  const a2 = pki.leaf('a2', ['a.test', '127.0.0.1']);
  const routes = [`/=http://127.0.0.1:${upstream.port}`];
  const listen = (leaf: Leaf) => [{ address: '127.0.0.1:0', tls: { certificates: [{ cert: leaf.cert, key: leaf.key }] } }];
  const gw = createGateway({ routes, listen: listen(a) });
  t.teardown(() => gw.close({ drainMs: 0 }));
  const { port } = await gw.listen();
  const serial = async () => {
    const s = tls.connect({ host: '127.0.0.1', port, ca: pki.caPem, servername: 'a.test' });
    await once(s, 'secureConnect');
    const n = s.getPeerCertificate().serialNumber;
    s.destroy();
    return n;
  };
  const before = await serial();
  const ws = wssClient(port, '/');
  t.teardown(() => ws.terminate());
  await once(ws, 'open');
  t.equal(await echo(ws, 'before'), 'before');

  gw.reload({ routes, listen: listen(a2) });
  const after = await serial();
  t.not(after, before, 'a new handshake gets the reloaded certificate');
  t.equal(await echo(ws, 'after reload'), 'after reload', 'the open tunnel is untouched');

  t.throws(() => gw.reload({ routes, listen: [{ address: '127.0.0.1:0', tls: { certificates: [{ cert: a.cert, key: b.key }] } }] }), /does not belong/);
  t.equal(await serial(), after, 'a refused reload keeps the certificate in use');
  t.equal(await echo(ws, 'still'), 'still');
});

/** An https (and wss) upstream with a certificate from `leaf`. */
async function httpsUpstream(t: Teardown, leaf: Leaf): Promise<number> {
  const server = https.createServer({ cert: leaf.certPem, key: leaf.keyPem }, (req, res) => {
    res.setHeader('content-type', 'text/plain');
    res.end(`secure upstream saw ${req.url} host=${req.headers.host}`);
  });
  const wss = new WebSocketServer({ server });
  wss.on('connection', (socket) => socket.on('message', (d, binary) => socket.send(d, { binary })));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => {
    for (const c of wss.clients) c.terminate();
    server.closeAllConnections();
    server.close();
  });
  return (server.address() as { port: number }).port;
}

async function plainGateway(t: Teardown, config: GatewayConfig): Promise<Started> {
  const logs: Started['logs'] = [];
  const gw = createGateway({ ...config, logger: { log: (level, message) => logs.push({ level, message }) } });
  const address = await gw.listen(0, '127.0.0.1');
  t.teardown(() => gw.close({ drainMs: 0 }));
  return { gw, port: address.port, logs };
}

t.test('https:// upstream: verified with the location CA; without it a 502 with the reason in the log', async (t) => {
  const up = pki.leaf('up', ['upstream.test', '127.0.0.1']);
  const upPort = await httpsUpstream(t, up);
  const trusted = await plainGateway(t, { servers: [{ locations: [{ path: '/', upstream: `https://127.0.0.1:${upPort}`, upstreamTls: { ca: pki.caCert } }] }] });
  const ok = await request(`http://127.0.0.1:${trusted.port}/x`);
  t.equal(ok.statusCode, 200);
  t.equal(await ok.body.text(), 'secure upstream saw /x host=127.0.0.1:' + trusted.port, 'served over TLS');

  const untrusted = await plainGateway(t, { routes: [`/=https://127.0.0.1:${upPort}`] });
  const refused = await request(`http://127.0.0.1:${untrusted.port}/x`);
  t.equal(refused.statusCode, 502, 'a certificate Node does not trust: 502');
  t.match(refused.headers.connection, /close/);
  await refused.body.text();
  t.ok(untrusted.logs.some((l) => l.level === 'error' && /TLS certificate not accepted: UNABLE_TO_VERIFY_LEAF_SIGNATURE/.test(l.message)), 'the log says why');

  const wrongName = await plainGateway(t, { servers: [{ locations: [{ path: '/', upstream: `https://127.0.0.1:${upPort}`, upstreamTls: { ca: pki.caCert, servername: 'other.test' } }] }] });
  const mismatch = await request(`http://127.0.0.1:${wrongName.port}/x`);
  t.equal(mismatch.statusCode, 502, 'a name the certificate does not hold: 502');
  await mismatch.body.text();
  t.ok(wrongName.logs.some((l) => /ERR_TLS_CERT_ALTNAME_INVALID/.test(l.message)), 'the log names the mismatch');

  const unverified = await plainGateway(t, { servers: [{ locations: [{ path: '/', upstream: `https://127.0.0.1:${upPort}`, upstreamTls: { verify: false } }] }] });
  const anyway = await request(`http://127.0.0.1:${unverified.port}/y`);
  t.equal(anyway.statusCode, 200, 'verify: false accepts it');
  await anyway.body.text();
});

t.test('wss:// upstream: the tunnel runs over TLS both sides; the top-level upstreamTls (--upstream-ca) applies', async (t) => {
  const up = pki.leaf('up2', ['upstream.test']);
  const upPort = await httpsUpstream(t, up);
  const { port, gw } = await tlsGateway(t, [a], { upstreamTls: { ca: pki.caCert, servername: 'upstream.test' }, routes: [`/ws/=wss://127.0.0.1:${upPort}`] });
  const ws = wssClient(port, '/ws/');
  t.teardown(() => ws.terminate());
  await once(ws, 'open');
  t.equal(await echo(ws, 'tls both ways'), 'tls both ways');
  const big = Buffer.alloc(3 << 20, 9);
  const back = new Promise<Buffer>((resolve) => ws.once('message', (d) => resolve(d as Buffer)));
  ws.send(big);
  t.ok((await back).equals(big), '3 MiB intact through TLS on both sides');
  ws.close();
  await once(ws, 'close');
  await waitFor(() => gw.stats().tunnels === 0, 2000, 'tunnel closed');
});

t.test('upstreamTls on an http:// location, and a bad CA file, are config errors', async (t) => {
  t.throws(() => createGateway({ servers: [{ locations: [{ path: '/', upstream: 'http://127.0.0.1:1', upstreamTls: { verify: false } }] }] }), /servers\[0\]\.locations\[0\]\.upstreamTls: only for an https:\/\/ upstream/);
  t.throws(() => createGateway({ servers: [{ locations: [{ path: '/', upstream: 'https://127.0.0.1:1', upstreamTls: { ca: '/nonexistent/ca.pem' } }] }] }), /upstreamTls\.ca: cannot read \/nonexistent\/ca\.pem: ENOENT/);
  t.throws(() => createGateway({ upstreamTls: { ca: '/nonexistent/ca.pem' }, routes: ['/=https://127.0.0.1:1'] }), /^.*upstreamTls\.ca: cannot read/);
});
