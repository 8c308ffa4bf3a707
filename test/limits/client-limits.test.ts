// Per-client limits (issue #15): open connections and connection rate per
// client address (after the PROXY protocol), tunnels counted until they
// close, a trusted proxy not counted; refusals are 503 + Connection: close,
// counted and logged at a bounded rate; far past the limits, closed at accept.
import t from 'tap';
import { once } from 'node:events';
import net from 'node:net';
import WebSocket from 'ws';
import { ClientLimits, parseConnectionRate } from '../../lib/limits/client-limits.js';
import { buildProxyHeader } from '../../lib/http/proxy-protocol.js';
import { createGateway, type GatewayConfig } from '../../lib/index.js';
import { answeringUpstream, rawExchange, waitFor, wsEcho, type Teardown } from '../helpers/net.js';

t.test('ClientLimits: open connections, a token bucket per address, and the drop verdict far past them', async (t) => {
  const open = new ClientLimits(2, null);
  t.equal(open.admit('a', 0).verdict, 'admit');
  t.equal(open.admit('a', 0).verdict, 'admit');
  const third = open.admit('a', 0);
  t.equal(third.verdict, 'refuse', 'the third open connection is refused');
  t.match(third.error?.message, /a has 2 connections open \(maxConnectionsPerClient 2\)/);
  t.equal(open.admit('b', 0).verdict, 'admit', 'another address has its own count');
  open.closed('a');
  t.equal(open.admit('a', 0).verdict, 'admit', 'one closed: one more admitted');
  t.equal(open.refused, 1);

  const rate = new ClientLimits(0, { perSecond: 5 });
  for (let i = 0; i < 5; i++) t.equal(rate.admit('a', 1000).verdict, 'admit', `burst ${i + 1} of 5`);
  t.equal(rate.admit('a', 1000).verdict, 'refuse', 'the sixth in the same instant');
  t.equal(rate.admit('a', 1100).verdict, 'refuse', '100 ms later: half a token');
  t.equal(rate.admit('a', 1200).verdict, 'admit', '200 ms later: one token back');
  t.equal(rate.admit('a', 5000).verdict, 'admit', 'refilled');

  const flood = new ClientLimits(1, null);
  flood.admit('x', 0);
  const verdicts = Array.from({ length: 150 }, () => flood.admit('x', 10).verdict);
  t.equal(verdicts.filter((v) => v === 'refuse').length, 100, 'refused with a 503 up to the budget');
  t.equal(verdicts.filter((v) => v === 'drop').length, 50, 'then closed at accept');
  t.equal(flood.admit('x', 1100).verdict, 'refuse', 'a new second: 503s again');

  t.same(parseConnectionRate('10/s'), { perSecond: 10 });
  t.same(parseConnectionRate(' 120 / m '), { perSecond: 2 });
  t.same(parseConnectionRate(2.5), { perSecond: 2.5 });
  for (const bad of ['10', '10/h', '0/s', -1, 0, 's/10', null]) t.equal(parseConnectionRate(bad), null, `refused: ${JSON.stringify(bad)}`);
});

/** `/ws/` to a WebSocket echo, anything else to a 200. */
async function upstreams(t: Teardown): Promise<string[]> {
  const echo = await wsEcho(t);
  const page = await answeringUpstream(t, 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
  return [`/ws/=http://127.0.0.1:${echo.port}`, `/=http://127.0.0.1:${page.port}`];
}

async function limitedGateway(t: Teardown, config: Omit<GatewayConfig, 'routes'>, proxyProtocol = false) {
  const logs: string[] = [];
  const gw = createGateway({ routes: await upstreams(t), ...config, logger: { log: (level, message) => logs.push(`${level} ${message}`) } });
  const { port } = await gw.listen({ host: '127.0.0.1', port: 0, proxyProtocol });
  t.teardown(() => gw.close({ drainMs: 0 }));
  return { gw, port, logs };
}

async function openTunnel(t: Teardown, port: number, localAddress = '127.0.0.1'): Promise<WebSocket> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/ws/`, { localAddress });
  t.teardown(() => ws.terminate());
  await once(ws, 'open');
  return ws;
}

t.test('maxConnectionsPerClient: tunnels count until they close; another address is not affected', async (t) => {
  const { gw, port, logs } = await limitedGateway(t, { maxConnectionsPerClient: 2 });
  const a = await openTunnel(t, port);
  await openTunnel(t, port);
  const refused = await rawExchange(port, 'GET / HTTP/1.1\r\nHost: a\r\n\r\n');
  t.match(refused.text, /^HTTP\/1\.1 503 /, 'a third connection from the same address: 503');
  t.match(refused.text, /\r\nConnection: close\r\n/i);
  const other = await openTunnel(t, port, '127.0.0.2');
  t.ok(other.readyState === WebSocket.OPEN, '127.0.0.2 has its own limit');
  a.close();
  await once(a, 'close');
  await waitFor(() => gw.stats().tunnels === 2, 2000, 'tunnel a closed');
  await openTunnel(t, port);
  t.pass('a tunnel closed: the address may open one more');
  t.equal(gw.stats().clientLimitRefusals, 1);
  t.ok(logs.some((l) => l.startsWith('warn ') && l.includes('127.0.0.1 has 2 connections open (maxConnectionsPerClient 2)')), 'logged');
});

t.test('connectionRatePerClient: a burst past the rate gets 503s, logged at most once a second with a count', async (t) => {
  const { gw, port, logs } = await limitedGateway(t, { connectionRatePerClient: '3/s' });
  const results = [];
  for (let i = 0; i < 6; i++) results.push(await rawExchange(port, 'GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n'));
  const statuses = results.map((r) => /^HTTP\/1\.1 (\d+)/.exec(r.text)?.[1]);
  t.same(statuses.slice(3), ['503', '503', '503'], `three served, then 503: ${statuses.join(' ')}`);
  t.ok(statuses.slice(0, 3).every((s) => s !== '503'), 'the first three pass');
  t.equal(gw.stats().clientLimitRefusals, 3);
  t.equal(logs.filter((l) => /connectionRatePerClient/.test(l)).length, 1, 'one log line for the burst');
});

t.test('behind the PROXY protocol each client has its own budget; a trusted proxy is not counted', async (t) => {
  const { port } = await limitedGateway(t, { maxConnectionsPerClient: 1 }, true);
  const viaBalancer = async (source: string) => {
    const socket = net.connect(port, '127.0.0.1');
    t.teardown(() => socket.destroy());
    await once(socket, 'connect');
    socket.write(Buffer.concat([buildProxyHeader('v1', { sourceAddress: source, sourcePort: 1000, destinationAddress: '10.0.0.1', destinationPort: 80 }), Buffer.from('GET / HTTP/1.1\r\nHost: a\r\n\r\n')]));
    return new Promise<string>((resolve) => {
      let text = '';
      socket.on('data', (d) => {
        text += d.toString('latin1');
        if (text.includes('\r\n\r\n')) resolve(text);
      });
      socket.on('close', () => resolve(text));
    });
  };
  t.notMatch(await viaBalancer('192.0.2.1'), /^HTTP\/1\.1 503/, 'client 1, first connection');
  t.notMatch(await viaBalancer('192.0.2.2'), /^HTTP\/1\.1 503/, 'client 2, first connection: its own budget');
  t.match(await viaBalancer('192.0.2.1'), /^HTTP\/1\.1 503/, 'client 1, second connection (the first still open): 503');

  const trusted = await limitedGateway(t, { maxConnectionsPerClient: 1, trustedProxies: ['127.0.0.1'] });
  await openTunnel(t, trusted.port);
  await openTunnel(t, trusted.port);
  t.pass('a trusted proxy (127.0.0.1) opens two though the limit is one');
});

t.test('a client far past its limits is closed at accept without an answer', async (t) => {
  const { gw, port } = await limitedGateway(t, { maxConnectionsPerClient: 1 });
  await openTunnel(t, port);
  let answered = 0;
  let unanswered = 0;
  for (let batch = 0; batch < 4; batch++) {
    const results = await Promise.all(Array.from({ length: 40 }, () => rawExchange(port, 'GET / HTTP/1.1\r\nHost: a\r\n\r\n', { timeoutMs: 2000 })));
    for (const r of results) (r.text.startsWith('HTTP/1.1 503') ? answered++ : r.text === '' ? unanswered++ : null);
  }
  t.equal(answered + unanswered, 160, 'every extra connection refused');
  t.ok(answered >= 100, `503s up to the budget (${answered})`);
  t.ok(unanswered > 0, `then closed at accept (${unanswered})`);
  t.equal(gw.stats().clientLimitRefusals, 160);
});
