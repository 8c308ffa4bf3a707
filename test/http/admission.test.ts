// Admission of one request head (lib/http/admission.ts): every refusal decided
// before an upstream is touched, in RFC order (method, version, Host, target,
// framing, WebSocket handshake, route, Origin), and what an admitted request
// carries to its exchange. Heads come from raw bytes through llhttp.
import t from 'tap';
import { LocalAnswer, admitRequest, maxForwards, type ExchangeRequest } from '../../lib/http/admission.js';
import { resolveConfig } from '../../lib/config.js';
import { WsgateError, type ErrorCode } from '../../lib/core/errors.js';
import { errorResponse } from '../../lib/core/responses.js';
import { Router } from '../../lib/http/router.js';
import type { ParsedHead } from '../../lib/http/head-reader.js';
import { parseHead } from '../helpers/heads.js';
import { WS_KEY, upgradeRequest } from '../helpers/net.js';

const router = new Router(
  resolveConfig({
    servers: [
      {
        names: ['a.test'],
        locations: [
          { path: '/', upstream: 'http://127.0.0.1:8001' },
          { path: '/ws/', upstream: 'http://127.0.0.1:8002', allowedOrigins: ['https://app.a.test', '*.trusted.test'] },
          { path: '/plain/', upstream: 'http://127.0.0.1:8003', websocket: false },
          { path: '/api', upstream: 'http://127.0.0.1:8004/v1/' },
        ],
      },
      { names: ['v6.test'], locations: [{ path: '/', upstream: 'http://[::1]:8080' }] },
      { names: ['eighty.test'], locations: [{ path: '/', upstream: 'http://backend.internal' }] },
      { names: ['narrow.test'], locations: [{ path: '/only/', upstream: 'http://127.0.0.1:8005' }] },
    ],
  }),
);

type Tap = { fail(message: string): void };

function admit(raw: string | ParsedHead, afterUpgradeHead?: boolean): ExchangeRequest | WsgateError | LocalAnswer {
  const head = typeof raw === 'string' ? parseHead(raw) : raw;
  return admitRequest(head, router, afterUpgradeHead ?? head.upgrade);
}

function admitted(t: Tap, raw: string | ParsedHead, afterUpgradeHead?: boolean): ExchangeRequest {
  const result = admit(raw, afterUpgradeHead);
  if (result instanceof WsgateError || result instanceof LocalAnswer) {
    t.fail(`refused: ${result instanceof WsgateError ? result.message : 'local answer'}`);
    throw new Error('not admitted');
  }
  return result;
}

const WS = (path = '/ws/', extra = '', host = 'a.test') => upgradeRequest(path, extra, host);

// [behaviour, raw request, code, status, detail the message ends with]
/**
 * A head as an older llhttp hands it over: what Node 20's parser lets through
 * and Node 26's refuses or reads differently itself. Admission must refuse it
 * on its own (defence in depth), so the head is built rather than parsed.
 */
function asOlderParserReads(benign: string, rawHeaders: string[], upgrade: boolean): ParsedHead {
  return { ...parseHead(benign), rawHeaders, upgrade };
}

const REFUSALS: Array<[string, string | ParsedHead, ErrorCode, number, string]> = [
  // Methods (RFC 9110 §9.3.6; cross-site tracing)
  ['CONNECT is refused: a reverse proxy opens no tunnels to any host', 'CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n', 'WSG_ERR_METHOD_NOT_ALLOWED', 405, ': CONNECT'],
  ['TRACE is refused: it would echo cookies and credentials', 'TRACE / HTTP/1.1\r\nHost: a.test\r\n\r\n', 'WSG_ERR_METHOD_NOT_ALLOWED', 405, ': TRACE'],
  // Versions llhttp reads but wsgate does not speak
  ['HTTP/2.0 in a request-line gets 505', 'GET / HTTP/2.0\r\nHost: a.test\r\n\r\n', 'WSG_ERR_HTTP_VERSION', 505, ': HTTP/2.0'],
  ['a request-line without a version (HTTP/0.9) gets 505', 'GET /x\r\n\r\n', 'WSG_ERR_HTTP_VERSION', 505, ': HTTP/0.9'],
  // Host (RFC 9112 §3.2)
  ['an HTTP/1.1 request without Host is a 400', 'GET / HTTP/1.1\r\nAccept: */*\r\n\r\n', 'WSG_ERR_MISSING_HOST', 400, ': 0 Host fields'],
  ['two Host fields are a 400, even when they agree', 'GET / HTTP/1.1\r\nHost: a.test\r\nHost: a.test\r\n\r\n', 'WSG_ERR_MISSING_HOST', 400, ': 2 Host fields'],
  ['a Host with a space is a 400', 'GET / HTTP/1.1\r\nHost: a b\r\n\r\n', 'WSG_ERR_MISSING_HOST', 400, ': invalid Host "a b"'],
  ['a Host with a slash is a 400', 'GET / HTTP/1.1\r\nHost: a.test/x\r\n\r\n', 'WSG_ERR_MISSING_HOST', 400, ': invalid Host "a.test/x"'],
  ['a Host with userinfo is a 400', 'GET / HTTP/1.1\r\nHost: user@a.test\r\n\r\n', 'WSG_ERR_MISSING_HOST', 400, ': invalid Host "user@a.test"'],
  ['an empty Host is a 400 (as nginx answers it)', 'GET / HTTP/1.1\r\nHost: \r\n\r\n', 'WSG_ERR_MISSING_HOST', 400, ': invalid Host ""'],
  ['an absolute-form authority is checked as the Host it replaces', 'GET http://a.test@evil.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n', 'WSG_ERR_MISSING_HOST', 400, ': invalid Host "a.test@evil.test"'],
  // Target (normalize-path.ts)
  ['a path that climbs above / is a 400', 'GET /a/../../etc/passwd HTTP/1.1\r\nHost: a.test\r\n\r\n', 'WSG_ERR_BAD_PATH', 400, ': "/a/../../etc/passwd"'],
  ['an encoded climb is a 400 too', 'GET /%2e%2e/x HTTP/1.1\r\nHost: a.test\r\n\r\n', 'WSG_ERR_BAD_PATH', 400, ': "/%2e%2e/x"'],
  ['a backslash in the path is a 400', 'GET /a\\b HTTP/1.1\r\nHost: a.test\r\n\r\n', 'WSG_ERR_BAD_PATH', 400, ': "/a\\\\b"'],
  // Framing (RFC 9112 §6.1, §7.1)
  ['Transfer-Encoding in an HTTP/1.0 request is a 400', 'POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n', 'WSG_ERR_BAD_REQUEST', 400, ': Transfer-Encoding in an HTTP/1.0 request'],
  ['a Transfer-Encoding that does not end in chunked is a 400', 'POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: gzip\r\n\r\n', 'WSG_ERR_BAD_REQUEST', 400, ': Transfer-Encoding "gzip"'],
  ['chunked with a parameter, then chunked again, is a 400', 'POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked;q=1, chunked\r\n\r\n', 'WSG_ERR_BAD_REQUEST', 400, ': Transfer-Encoding "chunked;q=1, chunked"'],
  ['a quoted "chunked" before chunked is a 400', 'POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: "chunked", chunked\r\n\r\n', 'WSG_ERR_BAD_REQUEST', 400, ': Transfer-Encoding "\\"chunked\\", chunked"'],
  [
    'an empty Transfer-Encoding beside Content-Length is a 400 (llhttp on Node 20 ignores it, an upstream may not)',
    asOlderParserReads('POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3\r\n\r\n', ['Host', 'a.test', 'Transfer-Encoding', '', 'Content-Length', '3'], false),
    'WSG_ERR_BAD_REQUEST',
    400,
    ': Transfer-Encoding ""',
  ],
  // WebSocket handshake (RFC 6455 §4.1, §4.4)
  [
    'Connection: upgrade<TAB> asks for a WebSocket that llhttp (Node 20) did not read as an upgrade: 400',
    asOlderParserReads(
      'GET /ws/ HTTP/1.1\r\nHost: a.test\r\n\r\n',
      ['Host', 'a.test', 'Connection', 'upgrade\t', 'Upgrade', 'websocket', 'Sec-WebSocket-Version', '13', 'Sec-WebSocket-Key', WS_KEY],
      false,
    ),
    'WSG_ERR_BAD_REQUEST',
    400,
    ': Connection/Upgrade read differently by the parser',
  ],
  ['a WebSocket upgrade by POST is a bad handshake', WS().replace('GET ', 'POST '), 'WSG_ERR_BAD_WEBSOCKET_HANDSHAKE', 400, ': method POST'],
  ['a WebSocket upgrade over HTTP/1.0 is a bad handshake', WS().replace('HTTP/1.1', 'HTTP/1.0'), 'WSG_ERR_BAD_WEBSOCKET_HANDSHAKE', 400, ': HTTP/1.0'],
  ['a WebSocket upgrade with a body is a bad handshake (its bytes would be smuggled)', WS('/ws/', 'Content-Length: 5\r\n'), 'WSG_ERR_BAD_WEBSOCKET_HANDSHAKE', 400, ': upgrade request with a body'],
  ['a WebSocket upgrade without Sec-WebSocket-Key is a bad handshake', WS().replace(`Sec-WebSocket-Key: ${WS_KEY}\r\n`, ''), 'WSG_ERR_BAD_WEBSOCKET_HANDSHAKE', 400, ': missing or repeated Sec-WebSocket-Key'],
  ['two Sec-WebSocket-Key fields are a bad handshake', WS('/ws/', `Sec-WebSocket-Key: ${WS_KEY}\r\n`), 'WSG_ERR_BAD_WEBSOCKET_HANDSHAKE', 400, ': missing or repeated Sec-WebSocket-Key'],
  ['a key that is not 16 bytes of base64 is a bad handshake', WS().replace(WS_KEY, 'c2hvcnQ='), 'WSG_ERR_BAD_WEBSOCKET_HANDSHAKE', 400, ': Sec-WebSocket-Key is not 16 bytes of base64'],
  ['a WebSocket upgrade without Sec-WebSocket-Version is a bad handshake', WS().replace('Sec-WebSocket-Version: 13\r\n', ''), 'WSG_ERR_BAD_WEBSOCKET_HANDSHAKE', 400, ': no Sec-WebSocket-Version'],
  ['Sec-WebSocket-Version 8 gets 426 with the version wsgate speaks', WS().replace('Sec-WebSocket-Version: 13', 'Sec-WebSocket-Version: 8'), 'WSG_ERR_WEBSOCKET_VERSION', 426, ': Sec-WebSocket-Version "8"'],
  // Routing
  ['a path no location matches is a 404 naming host and path', 'GET /elsewhere HTTP/1.1\r\nHost: narrow.test\r\n\r\n', 'WSG_ERR_NO_ROUTE', 404, ': narrow.test/elsewhere'],
  ['a rewrite that leaves the upstream base path is a 400 naming path and upstream', 'GET /api../x HTTP/1.1\r\nHost: a.test\r\n\r\n', 'WSG_ERR_BAD_PATH', 400, ': /api../x leaves the upstream path of http://127.0.0.1:8004/v1/'],
  // Origin (RFC 6455 §10.2)
  ['a WebSocket from an Origin the location does not allow is a 403', WS('/ws/', 'Origin: https://evil.test\r\n'), 'WSG_ERR_ORIGIN_NOT_ALLOWED', 403, ': "https://evil.test"'],
  ['Origin: null (a sandboxed page) is a 403 where origins are listed', WS('/ws/', 'Origin: null\r\n'), 'WSG_ERR_ORIGIN_NOT_ALLOWED', 403, ': "null"'],
  ['a wildcard needs a label before its suffix', WS('/ws/', 'Origin: https://trusted.test\r\n'), 'WSG_ERR_ORIGIN_NOT_ALLOWED', 403, ': "https://trusted.test"'],
  // A body behind an upgrade head llhttp never parsed
  ['an h2c upgrade with a body is a 400: the body was never parsed', 'POST / HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\nContent-Length: 3\r\n\r\n', 'WSG_ERR_BAD_REQUEST', 400, ': upgrade request with a body'],
];

for (const [behaviour, raw, code, status, detail] of REFUSALS) {
  t.test(behaviour, async (t) => {
    const result = admit(raw);
    t.ok(result instanceof WsgateError, 'refused');
    const err = result as WsgateError;
    t.equal(err.code, code);
    t.equal(err.status, status);
    t.ok(err.message.endsWith(detail), `message ${JSON.stringify(err.message)} ends with ${JSON.stringify(detail)}`);
    t.ok(errorResponse(err.status) !== undefined, `a prebuilt ${status} answer exists`);
  });
}

t.test('chunked twice, on one line or two, is a 400 even where the parser let it through', async (t) => {
  // llhttp refuses these itself today; admission does not rely on it.
  const head = parseHead('POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n');
  for (const rawHeaders of [
    ['Host', 'a.test', 'Transfer-Encoding', 'chunked', 'Transfer-Encoding', 'chunked'],
    ['Host', 'a.test', 'Transfer-Encoding', 'chunked, chunked'],
    ['Host', 'a.test', 'Transfer-Encoding', 'chunked, gzip'],
  ]) {
    const err = admit({ ...head, rawHeaders }) as WsgateError;
    t.equal(err.code, 'WSG_ERR_BAD_REQUEST', JSON.stringify(rawHeaders));
    t.match(err.message, /^malformed request: Transfer-Encoding "chunked, (chunked|gzip)"$/);
  }
});

t.test('a method llhttp cannot name is refused with 405', async (t) => {
  const head = { ...parseHead('GET / HTTP/1.1\r\nHost: a.test\r\n\r\n'), method: '' };
  const err = admit(head) as WsgateError;
  t.equal(err.code, 'WSG_ERR_METHOD_NOT_ALLOWED');
  t.equal(err.message, 'method not proxied (CONNECT, TRACE, or one llhttp cannot name): unknown method');
});

t.test('an admitted GET carries its route, target, Host and framing', async (t) => {
  const req = admitted(t, 'GET /api/users?page=2 HTTP/1.1\r\nHost: a.test\r\nConnection: keep-alive, X-Trace\r\n\r\n');
  t.equal(req.route.location.upstream.port, 8004);
  t.equal(req.route.upstreamTarget, '/v1/users?page=2');
  t.equal(req.host, 'a.test');
  t.equal(req.clientHost, 'a.test');
  t.equal(req.webSocket, false);
  t.same([...req.connection].sort(), ['keep-alive', 'x-trace']);
  t.equal(req.chunked, false);
  t.equal(req.transferCodings, null);
  t.equal(req.contentLength, 0);
});

t.test('a Host is trimmed and kept as the client wrote it (case, port)', async (t) => {
  const req = admitted(t, 'GET / HTTP/1.1\r\nHost:  A.Test:8443 \r\n\r\n');
  t.equal(req.host, 'A.Test:8443');
  t.equal(req.clientHost, 'A.Test:8443');
  t.equal(req.route.location.upstream.port, 8001, 'routed by its lower-cased name without port');
  t.equal(admitted(t, 'GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n').host, '[::1]:8080', 'an IPv6 literal is a valid Host');
});

t.test('Content-Length and chunked bodies: framing as llhttp read it, codings normalised for upstream', async (t) => {
  const length = admitted(t, 'POST /x HTTP/1.1\r\nHost: a.test\r\nContent-Length: 42\r\n\r\n');
  t.equal(length.chunked, false);
  t.equal(length.contentLength, 42);
  t.equal(length.transferCodings, null);
  const chunked = admitted(t, 'POST /x HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n');
  t.equal(chunked.chunked, true);
  t.equal(chunked.transferCodings, 'chunked');
  t.equal(chunked.contentLength, 0);
  const coded = admitted(t, 'POST /x HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: gzip,,chunked\r\n\r\n');
  t.equal(coded.transferCodings, 'gzip, chunked');
  const twoLines = admitted(t, 'POST /x HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n');
  t.equal(twoLines.transferCodings, 'gzip, chunked', 'several lines form one list (RFC 9110 §5.3)');
});

t.test('absolute-form: the authority replaces Host (RFC 9112 §3.2.2) and routes', async (t) => {
  const req = admitted(t, 'GET http://eighty.test/x?y=1 HTTP/1.1\r\nHost: a.test\r\n\r\n');
  t.equal(req.clientHost, 'eighty.test');
  t.equal(req.host, 'eighty.test');
  t.equal(req.route.location.upstream.host, 'backend.internal');
  t.equal(req.route.upstreamTarget, '/x?y=1');
  const bare = admitted(t, 'GET HTTP://a.test HTTP/1.1\r\nHost: a.test\r\n\r\n');
  t.equal(bare.route.upstreamTarget, '/', 'an empty path is /');
  const query = admitted(t, 'GET http://a.test?q=1 HTTP/1.1\r\nHost: a.test\r\n\r\n');
  t.equal(query.route.upstreamTarget, '/?q=1', 'a query without a path gets its /');
});

t.test('HTTP/1.0 without Host: the default server, and the upstream host:port as Host', async (t) => {
  const req = admitted(t, 'GET / HTTP/1.0\r\n\r\n');
  t.equal(req.clientHost, null);
  t.equal(req.host, '127.0.0.1:8001');
  t.equal(req.route.location.upstream.port, 8001, 'first server is the default');
});

t.test('the Host sent upstream for a client without one: brackets for IPv6, no :80', async (t) => {
  const base = parseHead('GET / HTTP/1.0\r\n\r\n');
  const v6 = new Router(resolveConfig({ routes: ['/=http://[::1]:8080'] }));
  const eighty = new Router(resolveConfig({ routes: ['/=http://backend.internal:80/'] }));
  t.equal((admitRequest(base, v6, false) as ExchangeRequest).host, '[::1]:8080');
  t.equal((admitRequest(base, eighty, false) as ExchangeRequest).host, 'backend.internal');
});

const OPTIONS_ANSWER =
  'HTTP/1.1 200 OK\r\nAllow: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, QUERY\r\nContent-Length: 0\r\nConnection: close\r\n\r\n';

// [request, answered locally]
const OPTIONS: Array<[string, boolean]> = [
  ['OPTIONS * HTTP/1.1\r\nHost: a.test\r\nMax-Forwards: 0\r\n\r\n', true],
  ['OPTIONS /x HTTP/1.1\r\nHost: a.test\r\nMax-Forwards: 0\r\n\r\n', true],
  ['OPTIONS /x HTTP/1.1\r\nHost: a.test\r\nMax-Forwards:  0 \r\n\r\n', true],
  ['OPTIONS http://a.test HTTP/1.1\r\nHost: a.test\r\nMax-Forwards: 0\r\n\r\n', true],
  ['OPTIONS * HTTP/1.1\r\nHost: a.test\r\nMax-Forwards: 1\r\n\r\n', false],
  ['OPTIONS /x HTTP/1.1\r\nHost: a.test\r\n\r\n', false],
  ['OPTIONS /x HTTP/1.1\r\nHost: a.test\r\nMax-Forwards: zero\r\n\r\n', false],
  ['GET /x HTTP/1.1\r\nHost: a.test\r\nMax-Forwards: 0\r\n\r\n', false], // only OPTIONS (and TRACE, refused) use it
];

t.test('OPTIONS with Max-Forwards: 0 is answered by wsgate itself (RFC 9110 §7.6.2); others go upstream', async (t) => {
  for (const [raw, local] of OPTIONS) {
    const result = admit(raw);
    if (local) {
      t.ok(result instanceof LocalAnswer, `answered locally: ${JSON.stringify(raw)}`);
      t.equal((result as LocalAnswer).response.toString('latin1'), OPTIONS_ANSWER);
    } else {
      t.notOk(result instanceof LocalAnswer || result instanceof WsgateError, `forwarded: ${JSON.stringify(raw)}`);
    }
  }
});

t.test('OPTIONS * is routed as the server root and forwarded with the target *', async (t) => {
  const star = admitted(t, 'OPTIONS * HTTP/1.1\r\nHost: a.test\r\n\r\n');
  t.equal(star.route.location.path, '/');
  t.equal(star.route.upstreamTarget, '*');
  const absolute = admitted(t, 'OPTIONS http://a.test HTTP/1.1\r\nHost: a.test\r\nMax-Forwards: 3\r\n\r\n');
  t.equal(absolute.route.upstreamTarget, '*', 'absolute-form with an empty path is the last proxy\'s OPTIONS * (RFC 9112 §3.2.4)');
  const path = admitted(t, 'OPTIONS /x HTTP/1.1\r\nHost: a.test\r\n\r\n');
  t.equal(path.route.upstreamTarget, '/x');
});

t.test('maxForwards reads 1*DIGIT, trimmed; anything else is null', async (t) => {
  const cases: Array<[string[], number | null]> = [
    [['Max-Forwards', '0'], 0],
    [['max-forwards', ' 10 '], 10],
    [['Max-Forwards', '123456789'], 123456789],
    [['Max-Forwards', '1234567890'], null], // more than 9 digits
    [['Max-Forwards', '-1'], null],
    [['Max-Forwards', '1.5'], null],
    [['Max-Forwards', ''], null],
    [['Host', 'a'], null],
    [['Max-Forwards', '2', 'Max-Forwards', '0'], 2], // the first one counts
  ];
  for (const [raw, expected] of cases) t.equal(maxForwards(raw), expected, JSON.stringify(raw));
});

t.test('a valid WebSocket handshake is admitted as a WebSocket', async (t) => {
  const req = admitted(t, WS());
  t.equal(req.webSocket, true);
  t.equal(req.route.location.upstream.port, 8002);
  t.equal(req.route.upstreamTarget, '/ws/');
  t.ok(req.connection.has('upgrade'));
});

t.test('Origin: allowed exactly, by wildcard, or absent (a non-browser client)', async (t) => {
  t.equal(admitted(t, WS('/ws/', 'Origin: https://app.a.test\r\n')).webSocket, true, 'exact origin');
  t.equal(admitted(t, WS('/ws/', 'Origin: HTTPS://APP.A.TEST\r\n')).webSocket, true, 'compared without case');
  t.equal(admitted(t, WS('/ws/', 'Origin: http://x.trusted.test:8080\r\n')).webSocket, true, 'wildcard: any scheme and port');
  t.equal(admitted(t, WS()).webSocket, true, 'no Origin');
  t.equal(admitted(t, WS('/', 'Origin: https://evil.test\r\n')).webSocket, true, 'a location without a list checks nothing');
});

t.test('Origin is checked only for WebSocket upgrades: a plain request from any Origin passes', async (t) => {
  const req = admitted(t, 'GET /ws/ HTTP/1.1\r\nHost: a.test\r\nOrigin: https://evil.test\r\n\r\n');
  t.equal(req.webSocket, false);
});

t.test('on a location with websocket: false an upgrade is forwarded as plain HTTP', async (t) => {
  const req = admitted(t, WS('/plain/'));
  t.equal(req.webSocket, false);
  t.equal(req.route.location.upstream.port, 8003);
});

t.test('an upgrade wsgate will not perform passes as plain HTTP when it has no body', async (t) => {
  const h2c = admitted(t, 'GET / HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n');
  t.equal(h2c.webSocket, false);
  const zero = admitted(t, 'GET / HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade\r\nUpgrade: h2c\r\nContent-Length: 0\r\n\r\n');
  t.equal(zero.contentLength, 0, 'Content-Length: 0 is no body');
});

t.test('a body is refused only behind a head llhttp stopped at (afterUpgradeHead)', async (t) => {
  const raw = 'POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3\r\n\r\n';
  t.equal(admitted(t, raw, false).contentLength, 3);
  const err = admit(raw, true) as WsgateError;
  t.equal(err.code, 'WSG_ERR_BAD_REQUEST');
  t.equal(err.message, 'malformed request: upgrade request with a body');
});

t.test('a refused method is refused before its Host is looked at', async (t) => {
  const err = admit('TRACE / HTTP/1.1\r\n\r\n') as WsgateError;
  t.equal(err.code, 'WSG_ERR_METHOD_NOT_ALLOWED', 'not WSG_ERR_MISSING_HOST');
});

t.test('an invalid Host is a 400 even on an OPTIONS wsgate would answer itself (RFC 9112 §3.2: MUST)', { todo: 'the Max-Forwards: 0 answer is returned before the Host value is checked: 200 instead of 400' }, async (t) => {
  const err = admit('OPTIONS * HTTP/1.1\r\nHost: a b\r\nMax-Forwards: 0\r\n\r\n');
  t.ok(err instanceof WsgateError, 'refused');
  t.equal((err as WsgateError).code, 'WSG_ERR_MISSING_HOST');
});
