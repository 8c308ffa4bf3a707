// PROXY protocol on a listener (issue #15): the header's source is the client
// for everything (X-Forwarded-For, X-Real-IP, tunnel events), on plain and TLS
// listeners; a missing or malformed header closes the connection unanswered;
// a PROXY header on a listener without the option is a 400; sendProxyProtocol
// starts each upstream connection with one; and end to end behind HAProxy
// (mode tcp, send-proxy-v2) the upstream sees the original client address.
import t from 'tap';
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import WebSocket from 'ws';
import { createGateway, type GatewayConfig, type TunnelInfo } from '../../lib/index.js';
import { buildProxyHeader, parseProxyHeader } from '../../lib/http/proxy-protocol.js';
import { answeringUpstream, rawExchange, rawUpstream, upgradeRequest, waitFor, wsEcho, type Teardown } from '../helpers/net.js';
import { makePki } from '../helpers/tls.js';

const CLIENT = { sourceAddress: '203.0.113.7', sourcePort: 40123, destinationAddress: '198.51.100.1', destinationPort: 443 };
const CLIENT6 = { sourceAddress: '2001:db8::7', sourcePort: 40124, destinationAddress: '2001:db8::1', destinationPort: 443 };

async function proxyGateway(t: Teardown, config: GatewayConfig, listen: { proxyProtocol?: boolean; tls?: { certificates: Array<{ cert: string; key: string }> } } = { proxyProtocol: true }) {
  const logs: string[] = [];
  const gw = createGateway({ ...config, logger: { log: (level, message) => logs.push(`${level} ${message}`) } });
  const { port } = await gw.listen({ host: '127.0.0.1', port: 0, ...listen });
  t.teardown(() => gw.close({ drainMs: 0 }));
  return { gw, port, logs };
}

/** An upstream answering 200 with the forwarding fields it received as the body. */
async function forwardedEcho(t: Teardown) {
  return answeringUpstream(t, (head, socket) => {
    const field = (name: string) => new RegExp(`\\r\\n${name}: *([^\\r]*)`, 'i').exec(head)?.[1] ?? '-';
    const body = `xff=${field('x-forwarded-for')} real=${field('x-real-ip')}`;
    socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
  });
}

/** Connects, sends `parts` (one write each, a pause between), resolves with all received once a whole response came, the connection closed, or `ms` passed. */
async function sendParts(port: number, parts: Buffer[], ms = 2000): Promise<{ text: string; closed: boolean }> {
  const socket = net.connect({ port, host: '127.0.0.1', noDelay: true }); // no Nagle: a byte per write goes at once
  socket.on('error', () => {});
  await once(socket, 'connect');
  const chunks: Buffer[] = [];
  const text = () => Buffer.concat(chunks).toString('latin1');
  const done = new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve(true);
    });
    socket.on('data', (c: Buffer) => {
      chunks.push(c);
      const all = text();
      const end = all.indexOf('\r\n\r\n');
      const length = /\r\nContent-Length: (\d+)\r\n/i.exec(`${all.slice(0, end)}\r\n`);
      if (end !== -1 && length !== null && all.length >= end + 4 + Number(length[1])) {
        clearTimeout(timer);
        resolve(false);
      }
    });
  });
  for (const part of parts) {
    if (socket.destroyed) break;
    socket.write(part);
    await new Promise((r) => setTimeout(r, 2));
  }
  const closed = await done;
  socket.destroy();
  return { text: text(), closed };
}

const GET = Buffer.from('GET /x HTTP/1.1\r\nHost: app.test\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n', 'latin1');

t.test('v1 and v2 headers: the client is the header\'s source, whether header and request come together or byte by byte', async (t) => {
  const upstream = await forwardedEcho(t);
  const { port } = await proxyGateway(t, { routes: [`/=http://127.0.0.1:${upstream.port}`] });
  for (const [name, header] of [['v1', buildProxyHeader('v1', CLIENT)], ['v2', buildProxyHeader('v2', CLIENT)], ['v2 IPv6', buildProxyHeader('v2', CLIENT6)]] as const) {
    const source = name === 'v2 IPv6' ? CLIENT6.sourceAddress : CLIENT.sourceAddress;
    const together = await sendParts(port, [Buffer.concat([header, GET])]);
    t.match(together.text, `xff=${source} real=${source}`, `${name}, one write: the client's own X-Forwarded-For replaced by the header's source`);
    const bytes = Buffer.concat([header, GET]);
    const split = await sendParts(port, [...bytes].map((b) => Buffer.from([b])));
    t.match(split.text, `xff=${source} real=${source}`, `${name}, byte by byte`);
  }
  const local = await sendParts(port, [Buffer.concat([buildProxyHeader('v2', { ...CLIENT, sourceAddress: '::1' }).subarray(0, 12), Buffer.from([0x20, 0x00, 0x00, 0x00]), GET])]);
  t.match(local.text, 'xff=127.0.0.1 real=127.0.0.1', 'v2 LOCAL: the connection\'s own address');
  const unknown = await sendParts(port, [Buffer.concat([Buffer.from('PROXY UNKNOWN\r\n'), GET])]);
  t.match(unknown.text, 'xff=127.0.0.1', 'v1 UNKNOWN: the connection\'s own address');
});

t.test('a WebSocket tunnel behind a v2 header: tunnelOpen names the header\'s client', async (t) => {
  const echo = await wsEcho(t);
  const { gw, port } = await proxyGateway(t, { routes: [`/=http://127.0.0.1:${echo.port}`] });
  const opened = once(gw, 'tunnelOpen') as Promise<[TunnelInfo]>;
  const socket = net.connect(port, '127.0.0.1');
  t.teardown(() => socket.destroy());
  await once(socket, 'connect');
  socket.write(Buffer.concat([buildProxyHeader('v2', CLIENT), Buffer.from(upgradeRequest('/'))]));
  const [info] = await opened;
  t.equal(info.remoteAddress, CLIENT.sourceAddress);
});

t.test('a missing, malformed or late header closes the connection without an answer', async (t) => {
  const upstream = await forwardedEcho(t);
  const { gw, port, logs } = await proxyGateway(t, { routes: [`/=http://127.0.0.1:${upstream.port}`], headTimeout: 0.3 });
  const missing = await sendParts(port, [GET]);
  t.same(missing, { text: '', closed: true }, 'an HTTP request without a header: closed, nothing sent');
  const malformed = await sendParts(port, [Buffer.from('PROXY TCP4 1.2.3.4 nonsense 1 2\r\n'), GET]);
  t.same(malformed, { text: '', closed: true }, 'a malformed v1 header: closed');
  const truncated = await sendParts(port, [buildProxyHeader('v2', CLIENT).subarray(0, 20)], 3000);
  t.same(truncated, { text: '', closed: true }, 'half a v2 header and silence: closed at the head timeout');
  t.equal(gw.stats().proxyProtocolErrors, 3, 'counted');
  t.ok(logs.some((l) => /^warn PROXY protocol header refused: no PROXY protocol header/.test(l)), 'logged with the reason');
  t.equal(upstream.sockets.length, 0, 'nothing reached the upstream');
});

t.test('a PROXY header on a listener without the option is a 400 with Connection: close', async (t) => {
  const upstream = await rawUpstream(t);
  const { port } = await proxyGateway(t, { routes: [`/=http://127.0.0.1:${upstream.port}`] }, {});
  for (const [name, header] of [['v1', buildProxyHeader('v1', CLIENT)], ['v2', buildProxyHeader('v2', CLIENT)]] as const) {
    const res = await rawExchange(port, [header, GET]);
    t.match(res.text, /^HTTP\/1\.1 400 /, `${name}: 400`);
    t.match(res.text, /\r\nConnection: close\r\n/i);
    t.ok(res.closed, 'and closed');
  }
  t.equal(upstream.received.length, 0, 'nothing reached the upstream');
});

t.test('TLS behind a PROXY header: the header comes before the ClientHello', async (t) => {
  const pki = makePki(t);
  const leaf = pki.leaf('pp', ['pp.test', '127.0.0.1']);
  const upstream = await forwardedEcho(t);
  const { port } = await proxyGateway(t, { routes: [`/=http://127.0.0.1:${upstream.port}`] }, { proxyProtocol: true, tls: { certificates: [{ cert: leaf.cert, key: leaf.key }] } });
  for (const version of ['v1', 'v2'] as const) {
    const raw = net.connect(port, '127.0.0.1');
    await once(raw, 'connect');
    raw.write(buildProxyHeader(version, CLIENT));
    const secure = tls.connect({ socket: raw, ca: pki.caPem, servername: 'pp.test' });
    await once(secure, 'secureConnect');
    secure.write(GET);
    const [body] = await new Promise<[string]>((resolve) => {
      let text = '';
      secure.on('data', (d) => {
        text += d.toString('latin1');
        if (/real=\S+$/.test(text)) resolve([text]);
      });
    });
    t.match(body, `xff=${CLIENT.sourceAddress} real=${CLIENT.sourceAddress}`, `${version} then TLS: the header's client`);
    secure.destroy();
  }
});

t.test('sendProxyProtocol: each new upstream connection starts with a header naming the client; reused only by that client connection', async (t) => {
  for (const version of ['v1', 'v2'] as const) {
    // One answer per request head, however the bytes were split into reads (the PROXY header first skipped).
    const upstream = await rawUpstream(t, (socket) => {
      let seen = '';
      let headerSkipped = false;
      let start = Buffer.alloc(0);
      socket.on('data', (chunk: Buffer) => {
        if (!headerSkipped) {
          start = Buffer.concat([start, chunk]);
          const header = parseProxyHeader(start);
          if (header.kind === 'incomplete') return;
          headerSkipped = true;
          chunk = header.kind === 'ok' ? start.subarray(header.length) : start;
        }
        seen += chunk.toString('latin1');
        for (let end = seen.indexOf('\r\n\r\n'); end !== -1; end = seen.indexOf('\r\n\r\n')) {
          seen = seen.slice(end + 4);
          socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
        }
      });
    });
    const { port } = await proxyGateway(t, { servers: [{ locations: [{ path: '/', upstream: `http://127.0.0.1:${upstream.port}`, sendProxyProtocol: version }] }] }, { proxyProtocol: true });
    const client = net.connect(port, '127.0.0.1');
    t.teardown(() => client.destroy());
    await once(client, 'connect');
    client.write(Buffer.concat([buildProxyHeader('v1', CLIENT), Buffer.from('GET /a HTTP/1.1\r\nHost: a\r\n\r\n')]));
    let answered = '';
    client.on('data', (d: Buffer) => (answered += d.toString('latin1')));
    await waitFor(() => upstream.received.length === 1 && upstream.text(0).includes('GET /a'), 2000, 'first request');
    await waitFor(() => answered.endsWith('ok'), 2000, 'first response');
    const first = Buffer.concat(upstream.received[0]);
    const expected = buildProxyHeader(version, CLIENT);
    t.ok(first.subarray(0, expected.length).equals(expected), `${version}: the upstream connection starts with the client's header`);
    // A second request on the same client connection reuses that upstream connection, without a second header.
    client.write('GET /b HTTP/1.1\r\nHost: a\r\n\r\n');
    await waitFor(() => upstream.text(0).includes('GET /b'), 2000, 'second request');
    t.equal(upstream.received.length, 1, `${version}: same client connection, same upstream connection`);
    const carried = Buffer.concat(upstream.received[0]);
    t.equal(carried.indexOf(expected, expected.length), -1, 'one header on it, at its start only');
    // Another client connection never gets it.
    const other = net.connect(port, '127.0.0.1');
    t.teardown(() => other.destroy());
    await once(other, 'connect');
    other.write(Buffer.concat([buildProxyHeader('v1', { ...CLIENT, sourceAddress: '192.0.2.99' }), Buffer.from('GET /c HTTP/1.1\r\nHost: a\r\n\r\n')]));
    const own = buildProxyHeader(version, { ...CLIENT, sourceAddress: '192.0.2.99' });
    // The connection is accepted before its first bytes arrive: wait for the bytes, not only the connection.
    await waitFor(() => upstream.received.length === 2 && Buffer.concat(upstream.received[1]).length >= own.length, 2000, 'a second upstream connection and its header');
    t.ok(Buffer.concat(upstream.received[1]).subarray(0, own.length).equals(own), `${version}: its own header`);
  }
});

/** A free TCP port on 127.0.0.1 (bound and released). */
async function freePort(): Promise<number> {
  const server = net.createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  await new Promise((r) => server.close(r));
  return port;
}

const haproxy = (() => {
  try {
    execFileSync('haproxy', ['-v'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

t.test('behind HAProxy (mode tcp, send-proxy-v2): the upstream sees the original client address', { skip: !haproxy && 'haproxy is not installed (CI installs it)' }, async (t) => {
  const upstream = await forwardedEcho(t);
  const echo = await wsEcho(t);
  const { gw, port } = await proxyGateway(t, { routes: [`/ws/=http://127.0.0.1:${echo.port}`, `/=http://127.0.0.1:${upstream.port}`] });
  const front = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'wsgate-haproxy-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const cfg = join(dir, 'haproxy.cfg');
  writeFileSync(
    cfg,
    ['defaults', '  mode tcp', '  timeout connect 5s', '  timeout client 30s', '  timeout server 30s', 'frontend fe', `  bind 127.0.0.1:${front}`, '  default_backend be', 'backend be', `  server wsgate 127.0.0.1:${port} send-proxy-v2`, ''].join('\n'),
  );
  const proc = spawn('haproxy', ['-f', cfg, '-db'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr!.on('data', (d) => (stderr += d));
  t.teardown(() => proc.kill('SIGKILL'));
  await waitFor(
    () => {
      if (proc.exitCode !== null) throw new Error(`haproxy exited: ${stderr}`);
      return execFileSync('sh', ['-c', `ss -ltn 'sport = :${front}' | tail -n +2`]).toString().trim() !== '';
    },
    10_000,
    'haproxy listening',
  );
  // The client connects from 127.0.0.2: HAProxy's peer address, not wsgate's (which is HAProxy, 127.0.0.1).
  const socket = net.connect({ port: front, host: '127.0.0.1', localAddress: '127.0.0.2' });
  t.teardown(() => socket.destroy());
  await once(socket, 'connect');
  socket.write(GET);
  const text = await new Promise<string>((resolve) => {
    let got = '';
    socket.on('data', (d) => {
      got += d.toString('latin1');
      if (/real=\S+$/.test(got)) resolve(got);
    });
  });
  t.match(text, 'xff=127.0.0.2 real=127.0.0.2', 'X-Forwarded-For and X-Real-IP: the client HAProxy saw');
  const opened = once(gw, 'tunnelOpen') as Promise<[TunnelInfo]>;
  const ws = new WebSocket(`ws://127.0.0.1:${front}/ws/`, { localAddress: '127.0.0.2' });
  t.teardown(() => ws.terminate());
  await once(ws, 'open');
  t.equal((await opened)[0].remoteAddress, '127.0.0.2', 'the tunnel is the client\'s too');
  const reply = new Promise<string>((resolve) => ws.once('message', (d) => resolve(d.toString())));
  ws.send('through haproxy');
  t.equal(await reply, 'through haproxy');
  t.equal(gw.stats().proxyProtocolErrors, 0);
});

