// Cross-Site WebSocket Hijacking (RFC 6455 §10.2; Schneider 2013; ASVS v4
// 4.4.2; attacks.md #28): a location's `allowedOrigins` lists the pages that
// may open WebSockets there. Another Origin gets 403 before any upstream
// connection; an upgrade without Origin (not a browser) passes, as the README
// documents; locations without a list and plain HTTP requests are not checked.
import { EXPECT_CLOSE, eachRow, send, settle } from '../helpers/adversarial.js';
import { answeringUpstream, startGateway, switchingProtocols, upgradeRequest } from '../helpers/net.js';

const rows: Array<{ name: string; origin: string | null; status: 101 | 403 | 200; path?: string; plain?: boolean }> = [
  // control: an exact allowed origin
  { name: 'an allowed origin passes', origin: 'https://app.example.com', status: 101 },
  // RFC 6454 §4: scheme and host compare case-insensitively
  { name: 'an allowed origin in capitals passes', origin: 'HTTPS://APP.EXAMPLE.COM', status: 101 },
  // README allowedOrigins: `*.example.com` allows any scheme and port
  { name: 'a wildcard subdomain with a port passes', origin: 'http://a.trusted.test:8080', status: 101 },
  // README allowedOrigins
  { name: 'a deeper wildcard subdomain passes', origin: 'https://a.b.trusted.test', status: 101 },
  // README allowedOrigins: no Origin is not a browser, so no CSWSH
  { name: 'no Origin passes', origin: null, status: 101 },
  // RFC 6455 §10.2
  { name: 'another site is refused', origin: 'https://evil.example', status: 403 },
  // RFC 6454 §7.3: `null` is sandboxed iframes, file: and data: pages
  { name: 'Origin: null is refused', origin: 'null', status: 403 },
  // suffix-match bypass: the allowed host as a prefix of the attacker's
  { name: 'the allowed host as a prefix of another is refused', origin: 'https://app.example.com.evil.example', status: 403 },
  // suffix-match bypass: a wildcard needs a dot boundary
  { name: 'a host ending in the wildcard without a dot is refused', origin: 'https://eviltrusted.test', status: 403 },
  // README allowedOrigins: `*.trusted.test` does not match trusted.test
  { name: 'the wildcard apex is refused', origin: 'https://trusted.test', status: 403 },
  // RFC 6454 §5: scheme is part of the origin
  { name: 'an allowed host on another scheme is refused', origin: 'http://app.example.com', status: 403 },
  // RFC 6454 §5: port is part of the origin
  { name: 'an allowed host on another port is refused', origin: 'https://app.example.com:8443', status: 403 },
  // RFC 6454 §6.2: an origin has no path
  { name: 'an origin with a path is refused', origin: 'https://app.example.com/', status: 403 },
  // RFC 3986 §3.2.1: userinfo makes evil.example the host
  { name: 'an allowed host as userinfo is refused', origin: 'https://app.example.com@evil.example', status: 403 },
  // a location without allowedOrigins is not checked
  { name: 'a location without a list takes any origin', origin: 'https://evil.example', status: 101, path: '/open/' },
  // RFC 6455 §10.2 guards WebSockets; plain HTTP is CORS, the upstream's business
  { name: 'a plain GET from another origin is not checked', origin: 'https://evil.example', status: 200, plain: true },
];

eachRow(rows, async (t, row) => {
  const upstream = await answeringUpstream(t, (head, socket) => socket.write(/\r\nUpgrade:/i.test(head) ? switchingProtocols() : 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'));
  const { port } = await startGateway(t, {
    servers: [
      {
        locations: [
          { path: '/ws/', upstream: `http://127.0.0.1:${upstream.port}`, allowedOrigins: ['https://app.example.com', '*.trusted.test'] },
          { path: '/open/', upstream: `http://127.0.0.1:${upstream.port}` },
        ],
      },
    ],
  });
  const origin = row.origin === null ? '' : `Origin: ${row.origin}\r\n`;
  const path = row.path ?? '/ws/';
  const raw = row.plain ? `GET ${path} HTTP/1.1\r\nHost: a\r\n${origin}\r\n` : upgradeRequest(path, origin);
  const res = await send(port, raw, 'one write', row.status === 101 ? 300 : 3000, row.status === 403 ? EXPECT_CLOSE : undefined);
  await settle();
  t.match(res.text, new RegExp(`^HTTP/1\\.1 ${row.status} `));
  if (row.status === 403) {
    t.match(res.text, /\r\nConnection: close\r\n/);
    t.ok(res.closed, 'closed');
    t.equal(upstream.received.length, 0, 'no upstream connection');
  } else {
    t.match(upstream.text(), new RegExp(`^GET ${path} HTTP/1\\.1\\r\\n`), 'the request reached the upstream');
    if (row.origin !== null) t.ok(upstream.text().includes(`\r\nOrigin: ${row.origin}\r\n`), 'with its Origin unchanged');
  }
});
