// Header and request splitting (attacks.md #19, #26, #27). What wsgate writes
// upstream comes from the config or from the request: config values that could
// split a line are refused when the config is read, with the field named;
// request bytes are forwarded as llhttp parsed them, never decoded into a
// line break. Hop-by-hop nomination (RFC 9110 §7.6.1) cannot take away
// Host, framing or wsgate's own forwarding fields.
import { createGateway, type GatewayConfig, type LocationConfig } from '../../lib/index.js';
import { eachRow, send, settle } from '../helpers/adversarial.js';
import { answeringUpstream, startGateway, switchingProtocols, upgradeRequest } from '../helpers/net.js';

const U = 'http://127.0.0.1:1';
const at = (loc: Partial<LocationConfig>): GatewayConfig => ({ servers: [{ locations: [{ path: '/', upstream: U, ...loc }] }] });
const FIELD = 'servers[0].locations[0]';

const configs: Array<{ name: string; config: GatewayConfig; field: string | null }> = [
  // control: a clean config is accepted, so each refusal below is the value's doing
  { name: 'control: clean setHeaders and upstream path are accepted', config: at({ upstream: `${U}/v1/`, setHeaders: { 'X-A': 'a b' } }), field: null },
  // CVE-2018-12116 class; RFC 9110 §5.5: a field value never holds CR or LF
  { name: 'setHeaders value with CR LF', config: at({ setHeaders: { 'X-A': 'a\r\nX-Injected: yes' } }), field: `${FIELD}.setHeaders.X-A` },
  // RFC 9112 §2.2: a bare LF ends a line for lenient parsers
  { name: 'setHeaders value with LF', config: at({ setHeaders: { 'X-A': 'a\nX-Injected: yes' } }), field: `${FIELD}.setHeaders.X-A` },
  // RFC 9110 §5.5; HTTP Garden server 2: NUL truncates in C upstreams
  { name: 'setHeaders value with NUL', config: at({ setHeaders: { 'X-A': 'a\0b' } }), field: `${FIELD}.setHeaders.X-A` },
  // RFC 9110 §5.1: a field name is a token
  { name: 'setHeaders name with CR LF and a colon', config: at({ setHeaders: { 'X-A: b\r\nX': 'v' } }), field: `${FIELD}.setHeaders` },
  // RFC 9110 §5.1
  { name: 'removeHeaders name with CR LF', config: at({ removeHeaders: ['X\r\nY'] }), field: `${FIELD}.removeHeaders[0]` },
  // attacks.md #19: a route rewrite from config must not split the request line
  { name: 'upstream path with CR LF', config: at({ upstream: `${U}/a\r\nX-Injected: y` }), field: `${FIELD}.upstream` },
  // attacks.md #19
  { name: 'upstream path with LF', config: at({ upstream: `${U}/a\nb` }), field: `${FIELD}.upstream` },
  // attacks.md #19
  { name: 'upstream host with CR LF', config: at({ upstream: 'http://127.0.0.1\r\nX: y:1/' }), field: `${FIELD}.upstream` },
  // attacks.md #19
  { name: 'location path with CR LF', config: at({ path: '/a\r\nX' }), field: `${FIELD}.path` },
  // RFC 9110 §7.2: a host name has no CR LF
  { name: 'server name with CR LF', config: { servers: [{ names: ['a\r\nb'], locations: [{ path: '/', upstream: U }] }] }, field: 'servers[0].names[0]' },
  // attacks.md #19, the CLI form
  { name: 'routes shorthand with CR LF', config: { routes: [`/=${U}/a\r\nX: y`] }, field: 'routes[0]' },
  // Issue #6. Control: what RFC 9110 §5.5 allows in a value (HTAB, SP, obs-text) and a percent-encoded path stay accepted
  { name: 'control: setHeaders value with HTAB and obs-text, upstream path with percent-escapes are accepted', config: at({ upstream: `${U}/a%0D%0Ab/`, setHeaders: { 'X-A': 'a\tcaf\u00e9 \u00ff' } }), field: null },
  // CVE-2018-12116; attacks.md #19: U+010D U+010A are written as latin1 0x0D 0x0A, splitting the header
  { name: 'setHeaders value with U+010D U+010A (CR LF once narrowed to latin1)', config: at({ setHeaders: { 'X-A': 'a\u010D\u010AX-Injected: yes' } }), field: `${FIELD}.setHeaders.X-A` },
  // RFC 9110 §5.5: a field value holds no control character but HTAB, and no DEL
  { name: 'setHeaders value with a control character or DEL', config: at({ setHeaders: { 'X-A': 'a\x0bb\x7f' } }), field: `${FIELD}.setHeaders.X-A` },
  // CVE-2018-12116; attacks.md #19: the request line split by a rewrite to a non-latin1 path
  { name: 'routes shorthand with U+010D U+010A in the upstream path', config: { routes: [`/=${U}/a\u010D\u010AX-Injected:\u0120yes\u010D\u010AZ:\u0120/`] }, field: 'routes[0].upstream' },
  // CVE-2018-12116; attacks.md #19: the same in a location's upstream
  { name: 'upstream path with U+010D U+010A', config: at({ upstream: `${U}/a\u010D\u010AX-Injected:\u0120yes/` }), field: `${FIELD}.upstream` },
  // RFC 9112 §3.2: a request-target is visible ASCII; HTTP Garden server 2: NUL truncates in C upstreams
  { name: 'upstream path with NUL', config: at({ upstream: `${U}/a\0b/` }), field: `${FIELD}.upstream` },
  // RFC 9112 §3.2; HTTP Garden server 2
  { name: 'routes shorthand with NUL in the upstream path', config: { routes: [`/=${U}/a\0b/`] }, field: 'routes[0].upstream' },
  // RFC 9112 §3.2: a request-target has no control character or DEL
  { name: 'upstream path with a control character or DEL', config: at({ upstream: `${U}/a\x01b\x7f/` }), field: `${FIELD}.upstream` },
  // CVE-2018-12116; attacks.md #19: the upstream host becomes Host for a request without one
  { name: 'upstream host with U+010D U+010A and U+013A (latin1 colon)', config: at({ upstream: 'http://a\u010D\u010AX-Injected\u013A\u0120y:1/' }), field: `${FIELD}.upstream` },
  // RFC 3986 §3.2.2: a reg-name has no NUL
  { name: 'upstream host with NUL', config: at({ upstream: 'http://a\0b:1/' }), field: `${FIELD}.upstream` },
  // CVE-2018-12116; attacks.md #19: a location path is matched against, and rewritten from, ASCII request paths
  { name: 'location path with U+010D U+010A', config: at({ path: '/a\u010D\u010AX' }), field: `${FIELD}.path` },
  // RFC 9112 §3.2: a location path with a control character or DEL can never match a request-target
  { name: 'location path with a control character or DEL', config: at({ path: '/a\x01\x7f' }), field: `${FIELD}.path` },
  // attacks.md #19, the CLI form: a bad host in a route names the route, not an internal servers entry
  { name: 'routes shorthand with U+010D in the host', config: { routes: [`a\u010Db/=${U}`] }, field: 'routes[0]' },
  // RFC 9110 §7.2; IDN names are given as A-labels: U+212A (Kelvin sign) lower-cases to an ASCII k
  { name: 'server name with U+212A', config: { servers: [{ names: ['\u212Aey.example'], locations: [{ path: '/', upstream: U }] }] }, field: 'servers[0].names[0]' },
];

eachRow(configs, async (t, row) => {
  if (row.field === null) {
    t.doesNotThrow(() => createGateway(row.config));
    return;
  }
  const err = t.throws(() => createGateway(row.config), { name: 'ConfigError', code: 'WSG_ERR_CONFIG' });
  // exactly: a pattern would also pass for a longer field (`routes[0]` in `routes[0].upstream`)
  t.equal((err as { field?: string }).field, row.field, 'names the field');
});

// Request-derived values: sent as the client's bytes, never decoded into a line break.
const OK = 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok';
const requests: Array<{ name: string; raw: string; status: number; sent?: RegExp; notSent?: RegExp; answer?: string }> = [
  // attacks.md #19: percent-escapes stay escapes (upper-cased by normalisation), never CR LF
  { name: 'an encoded CR LF in the path stays encoded', raw: 'GET /ws/%0d%0aX:%20y HTTP/1.1\r\nHost: a\r\n\r\n', status: 200, sent: /^GET \/ws\/%0D%0AX:%20y HTTP\/1\.1\r\n/, notSent: /\r\nX:/ },
  // CVE-2018-12116: UTF-8 bytes in the target are refused, never narrowed to latin1 CR LF
  { name: 'UTF-8 of U+010D U+010A in the request-target is refused', raw: 'GET /\xc4\x8d\xc4\x8aX: HTTP/1.1\r\nHost: a\r\n\r\n', status: 400 },
  // CVE-2018-12116: obs-text in a value goes through byte for byte (latin1 both ways)
  { name: 'UTF-8 of U+010D U+010A in a header value passes byte for byte', raw: 'GET / HTTP/1.1\r\nHost: a\r\nX-U: a\xc4\x8d\xc4\x8aX-B: b\r\n\r\n', status: 200, sent: /\r\nX-U: a\xc4\x8d\xc4\x8aX-B: b\r\n/, notSent: /\r\nX-B:/ },
  // attacks.md #19: an encoded CR LF in Host is not decoded
  { name: 'an encoded CR LF in Host stays encoded', raw: 'GET / HTTP/1.1\r\nHost: a%0d%0aX:y\r\n\r\n', status: 200, sent: /\r\nHost: a%0d%0aX:y\r\n/, notSent: /\r\nX:y/ },
  // N. Davison 2019; attacks.md #26: nominating X-Forwarded-For cannot drop wsgate's own
  { name: 'Connection: close, X-Forwarded-For', raw: 'GET / HTTP/1.1\r\nHost: a\r\nConnection: close, X-Forwarded-For\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n', status: 200, sent: /\r\nX-Forwarded-For: 127\.0\.0\.1\r\n/, notSent: /6\.6\.6\.6|X-Forwarded-For:[^]*X-Forwarded-For:/ },
  // N. Davison 2019; attacks.md #26: nominating X-Real-IP and X-Forwarded-Proto
  { name: 'Connection: X-Real-IP, X-Forwarded-Proto', raw: 'GET / HTTP/1.1\r\nHost: a\r\nConnection: X-Real-IP, X-Forwarded-Proto\r\n\r\n', status: 200, sent: /\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: a\r\nX-Real-IP: 127\.0\.0\.1\r\n/ },
  // RFC 9110 §7.6.1; attacks.md #26: a nominated end-to-end field is hop-by-hop
  { name: 'Connection: keep-alive, Authorization drops Authorization', raw: 'GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Authorization\r\nAuthorization: Basic eDp5\r\n\r\n', status: 200, sent: /^GET \/ HTTP\/1\.1\r\nHost: a\r\n/, notSent: /Authorization/ },
  // attacks.md #26: nominating Transfer-Encoding cannot unframe a chunked body
  { name: 'Connection: Transfer-Encoding keeps the chunked framing', raw: 'POST / HTTP/1.1\r\nHost: a\r\nConnection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n', status: 200, sent: /\r\nTransfer-Encoding: chunked\r\n[^]*\r\n\r\n3\r\nabc\r\n0\r\n\r\n$/ },
  // attacks.md #26 on the upgrade path: nominating Host keeps Host
  { name: 'an upgrade with Connection: Upgrade, Host keeps Host', raw: upgradeRequest('/ws', '', 'a').replace('Connection: Upgrade', 'Connection: Upgrade, Host'), status: 101, answer: switchingProtocols(), sent: /^GET \/ws HTTP\/1\.1\r\nHost: a\r\n/ },
  // node-http-proxy #1647 (ERR_HTTP_TRAILER_INVALID crash); attacks.md #27
  { name: 'Trailer on a GET is dropped, no crash', raw: 'GET / HTTP/1.1\r\nHost: a\r\nTrailer: x\r\n\r\n', status: 200, sent: /^GET \/ HTTP\/1\.1\r\n/, notSent: /Trailer/ },
];

eachRow(requests, async (t, row) => {
  const upstream = await answeringUpstream(t, row.answer ?? OK);
  const { port } = await startGateway(t, { routes: [`/=http://127.0.0.1:${upstream.port}`] });
  const res = await send(port, row.raw, 'one write', row.status === 101 ? 300 : 3000);
  await settle();
  t.match(res.text, new RegExp(`^HTTP/1\\.1 ${row.status} `));
  if (row.status === 400) t.equal(upstream.received.length, 0, 'no upstream connection');
  if (row.sent) t.match(upstream.text(), row.sent, 'sent upstream');
  if (row.notSent) t.notMatch(upstream.text(), row.notSent, 'not sent upstream');
  // the gateway still serves: nothing above crashed it
  const again = await send(port, 'GET /again HTTP/1.1\r\nHost: a\r\n\r\n');
  t.match(again.text, /^HTTP\/1\.1 \d{3} /, 'the gateway still answers');
});
