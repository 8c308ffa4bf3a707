// The trusted-proxy list: which peers' forwarding fields are believed, and how
// the real client is read from a trusted X-Forwarded-For chain.
import t from 'tap';
import { ConfigError, createGateway } from '../../lib/index.js';
import { TrustedProxies } from '../../lib/http/trusted-proxies.js';
import { answeringUpstream, rawExchange, startGateway, waitFor } from '../helpers/net.js';

t.test('addresses and CIDRs of both families, IPv4-mapped peers included', async (t) => {
  const trusted = new TrustedProxies(['10.0.0.0/8', '192.168.1.7', '2001:db8::/32', '::1']);
  t.ok(trusted.contains('10.200.3.4'));
  t.ok(trusted.contains('::ffff:10.1.2.3'), 'IPv4-mapped address of a trusted IPv4 subnet');
  t.ok(trusted.contains('192.168.1.7'));
  t.notOk(trusted.contains('192.168.1.8'));
  t.ok(trusted.contains('2001:db8:1::5'));
  t.ok(trusted.contains('::1'));
  t.notOk(trusted.contains('127.0.0.1'), 'loopback is trusted only when listed');
  t.notOk(trusted.contains('not-an-address'));
  t.notOk(new TrustedProxies([]).contains('127.0.0.1'), 'the empty list trusts nobody');
});

t.test('the real client is the right-most untrusted address of the chain (nginx real_ip_recursive)', async (t) => {
  const trusted = new TrustedProxies(['10.0.0.0/8']);
  t.equal(trusted.realClient('', '10.0.0.1'), '10.0.0.1', 'no chain: the peer itself');
  t.equal(trusted.realClient('203.0.113.9', '10.0.0.1'), '203.0.113.9');
  t.equal(trusted.realClient('1.1.1.1, 203.0.113.9, 10.0.0.2', '10.0.0.1'), '203.0.113.9', 'a client-written entry left of it is not believed');
  t.equal(trusted.realClient('10.0.0.3, 10.0.0.2', '10.0.0.1'), '10.0.0.3', 'all trusted: the left-most');
  t.equal(trusted.realClient('203.0.113.9, ,10.0.0.2', '10.0.0.1'), '203.0.113.9', 'empty list elements are skipped');
  t.equal(trusted.realClient('203.0.113.9, junk', '10.0.0.1'), '10.0.0.1', 'a non-address stops the walk');
  t.equal(trusted.realClient('203.0.113.9', '198.51.100.1'), '198.51.100.1', 'an untrusted peer is the client');
});

t.test('config: trustedProxies entries are validated and named in the error', async (t) => {
  const routes = ['/=http://127.0.0.1:1'];
  for (const [value, field] of [
    ['10.0.0.0/33', 'trustedProxies[0]'],
    ['::1/129', 'trustedProxies[0]'],
    ['example.com', 'trustedProxies[0]'],
    ['10.0.0.0/8x', 'trustedProxies[0]'],
  ] as const) {
    const err = (() => {
      try {
        createGateway({ routes, trustedProxies: [value] });
      } catch (e) {
        return e;
      }
      return null;
    })();
    t.ok(err instanceof ConfigError, `${value} refused`);
    t.equal((err as ConfigError).field, field);
  }
  t.throws(() => createGateway({ routes, trustedProxies: '10.0.0.0/8' as unknown as string[] }), ConfigError);
  const gw = createGateway({ routes, trustedProxies: ['10.0.0.0/8', 'fd00::/8', '127.0.0.1'] });
  await gw.close({ drainMs: 0 });
});

t.test('through the proxy: a trusted peer\'s chain is appended to and believed; an untrusted peer\'s is replaced', async (t) => {
  const upstream = await answeringUpstream(t, 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n');
  const spoofed =
    'GET /p HTTP/1.1\r\nHost: app.example\r\nX-Forwarded-For: 198.51.100.4, 203.0.113.7\r\nX-Real-IP: 6.6.6.6\r\n' +
    'X-Forwarded-Proto: https\r\nX-Forwarded-Host: public.example\r\nForwarded: for=203.0.113.7;proto=https\r\n\r\n';
  const trusted = await startGateway(t, { routes: [`/=http://127.0.0.1:${upstream.port}`], trustedProxies: ['127.0.0.1'] });
  await rawExchange(trusted.port, spoofed);
  const untrusted = await startGateway(t, { routes: [`/=http://127.0.0.1:${upstream.port}`], trustedProxies: ['10.0.0.0/8'] });
  await rawExchange(untrusted.port, spoofed);
  // issue #15: the default trusts nobody, loopback included
  const byDefault = await startGateway(t, { routes: [`/=http://127.0.0.1:${upstream.port}`] });
  await rawExchange(byDefault.port, spoofed);
  await waitFor(() => upstream.received.length === 3 && upstream.text(2).endsWith('\r\n\r\n'));

  const viaTrusted = upstream.text(0);
  t.match(viaTrusted, /\r\nX-Forwarded-For: 198\.51\.100\.4, 203\.0\.113\.7, 127\.0\.0\.1\r\n/, 'chain kept, peer appended');
  t.match(viaTrusted, /\r\nX-Real-IP: 203\.0\.113\.7\r\n/, 'X-Real-IP: right-most untrusted address of the chain');
  t.match(viaTrusted, /\r\nX-Forwarded-Proto: https\r\n/, 'the trusted terminator\'s scheme kept');
  t.match(viaTrusted, /\r\nX-Forwarded-Host: public\.example\r\n/);
  t.match(viaTrusted, /\r\nForwarded: for=203\.0\.113\.7;proto=https\r\n/);
  t.equal(viaTrusted.match(/\r\nX-Forwarded-For:/gi)?.length, 1);

  const viaUntrusted = upstream.text(1);
  t.match(viaUntrusted, /\r\nX-Forwarded-For: 127\.0\.0\.1\r\n/, 'chain replaced by the peer');
  t.match(viaUntrusted, /\r\nX-Real-IP: 127\.0\.0\.1\r\n/);
  t.match(viaUntrusted, /\r\nX-Forwarded-Proto: http\r\n/);
  t.match(viaUntrusted, /\r\nX-Forwarded-Host: app\.example\r\n/);
  t.notMatch(viaUntrusted, /Forwarded: for|6\.6\.6\.6|203\.0\.113\.7|public\.example/, 'no client claim survives');

  const viaDefault = upstream.text(2);
  t.match(viaDefault, /\r\nX-Forwarded-For: 127\.0\.0\.1\r\n/, 'default: a loopback peer\'s chain is replaced, not appended to');
  t.notMatch(viaDefault, /Forwarded: for|6\.6\.6\.6|203\.0\.113\.7|public\.example/, 'default: no client claim survives');
});
