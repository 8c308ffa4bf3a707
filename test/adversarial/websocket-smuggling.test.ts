// WebSocket smuggling (0ang3el/websocket-smuggle, 2019; attacks.md #1-#4, #6-#9):
// only a 101 with `Upgrade: websocket`, `Connection: upgrade` and the right
// Sec-WebSocket-Accept, to a request that asked for a WebSocket, opens a
// tunnel. Anything else is relayed (or 502) and closed, and the request the
// client pipelines behind its handshake never reaches the upstream.
import type net from 'node:net';
import { BOTH_MODES, EXPECT_CLOSE, assertNothingUpstream, assertRefused, eachRow, send, settle, write } from '../helpers/adversarial.js';
import { WS_ACCEPT, WS_KEY, answeringUpstream, headEnd, rawClient, rawUpstream, startGateway, switchingProtocols, upgradeRequest, waitFor } from '../helpers/net.js';

const SMUGGLED = 'GET /internal HTTP/1.1\r\nHost: a\r\n\r\n';
const WRONG_ACCEPT = 'AAAAAAAAAAAAAAAAAAAAAAAAAAA=';

interface Answer {
  name: string;
  /** The upstream's answer to the handshake, or what it does instead. */
  answer: string | ((socket: net.Socket) => void);
  /** The status the client gets; 101 rows are the controls that must tunnel. */
  status: number;
  request?: string;
  checkWebSocketAccept?: boolean;
}

const answers: Answer[] = [
  // 0ang3el sc.1 (Varnish, Envoy <= 1.8); attacks.md #1
  { name: 'upstream 426 Upgrade Required', answer: 'HTTP/1.1 426 Upgrade Required\r\nContent-Length: 0\r\n\r\n', status: 426 },
  // 0ang3el sc.1; attacks.md #1
  { name: 'upstream 403 Forbidden', answer: 'HTTP/1.1 403 Forbidden\r\nContent-Length: 6\r\n\r\nno way', status: 403 },
  // 0ang3el sc.2 (a health check that answers 200); attacks.md #2
  { name: 'upstream 200 OK', answer: 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok', status: 200 },
  // node-http-proxy #624; attacks.md #6
  { name: 'upstream 404 with a body', answer: 'HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nnah', status: 404 },
  // node-http-proxy #1468, #1439; attacks.md #6
  { name: 'upstream closes without an answer', answer: (socket) => socket.end(), status: 502 },
  // node-http-proxy #1439 (ECONNRESET crash); attacks.md #6, #10
  { name: 'upstream resets the handshake', answer: (socket) => socket.resetAndDestroy(), status: 502 },
  // Go reverseproxy: the 101 must echo the requested protocol; attacks.md #2
  { name: 'a 101 with Upgrade: h2c', answer: 'HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n', status: 502 },
  // RFC 6455 §4.1 (client step 2: Upgrade must be websocket); attacks.md #2 (nginx checks only the status)
  { name: 'a 101 without Upgrade', answer: 'HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\r\n', status: 502 },
  // RFC 6455 §4.1: `websocket/13` is not the registered token
  { name: 'a 101 with Upgrade: websocket/13', answer: `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket/13\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${WS_ACCEPT}\r\n\r\n`, status: 502 },
  // RFC 6455 §4.1 (client step 3: Connection must list upgrade)
  { name: 'a 101 without Connection: upgrade', answer: `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: ${WS_ACCEPT}\r\n\r\n`, status: 502 },
  // RFC 6455 §4.1 (client step 4); HAProxy websocket.vtc c3
  { name: 'a 101 whose Sec-WebSocket-Accept does not match', answer: switchingProtocols(WRONG_ACCEPT), status: 502 },
  // RFC 6455 §4.1 (client step 4); HAProxy websocket.vtc c3
  { name: 'a 101 without Sec-WebSocket-Accept', answer: 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n', status: 502 },
  // RFC 9110 §7.8: a server must not switch to a protocol the client did not offer; attacks.md #7
  { name: 'a 101 to a request that did not ask to upgrade', answer: switchingProtocols(), status: 502, request: 'GET /ws HTTP/1.1\r\nHost: a\r\n\r\n' },
  // control: a valid 101 tunnels, so the pipelined bytes do reach the upstream (as tunnel data)
  { name: 'control: a valid 101 is tunnelled', answer: switchingProtocols(), status: 101 },
  // README checkWebSocketAccept: false is for odd upstreams: a wrong accept is tunnelled
  { name: 'checkWebSocketAccept: false tunnels a 101 with a wrong Sec-WebSocket-Accept', answer: switchingProtocols(WRONG_ACCEPT), status: 101, checkWebSocketAccept: false },
];

eachRow(
  answers,
  async (t, row, mode) => {
    const upstream = await answeringUpstream(t, (_head, socket) => (typeof row.answer === 'string' ? socket.write(row.answer) : row.answer(socket)));
    const { gw, port } = await startGateway(t, { routes: [`/=http://127.0.0.1:${upstream.port}`], checkWebSocketAccept: row.checkWebSocketAccept });
    const client = await rawClient(port);
    // the smuggled request rides behind the handshake, and again after the answer
    await write(client, (row.request ?? upgradeRequest('/ws')) + SMUGGLED, mode);
    await waitFor(() => headEnd(client.text()) !== -1, 3000, 'an answer');
    await settle();
    if (client.writable) client.write('GET /internal-after HTTP/1.1\r\nHost: a\r\n\r\n');
    t.match(client.text(), new RegExp(`^HTTP/1\\.1 ${row.status} `));
    if (row.status === 101) {
      await waitFor(() => upstream.text().includes('/internal-after'), 2000, 'tunnel data upstream');
      t.match(upstream.text(), /\r\n\r\nGET \/internal HTTP/, 'pipelined bytes follow the head');
      t.equal(gw.stats().totalTunnels, 1);
    } else {
      t.match(client.text(), /\r\nConnection: close\r\n/);
      await waitFor(() => client.readableEnded || client.destroyed, 2000, 'client closed');
      await waitFor(() => upstream.sockets.every((s) => s.readableEnded || s.destroyed), 2000, 'upstream closed');
      t.notMatch(upstream.text(), /internal/, 'the smuggled request never reaches the upstream');
      t.equal(upstream.received.length, 1, 'one upstream connection');
      t.equal(gw.stats().totalTunnels, 0, 'no tunnel');
    }
    client.destroy();
  },
  BOTH_MODES,
);

// Handshakes refused before any upstream connection: 400 (README: WSG_ERR_BAD_WEBSOCKET_HANDSHAKE),
// or 426 with `Sec-WebSocket-Version: 13` for another version (RFC 6455 §4.4, WSG_ERR_WEBSOCKET_VERSION).
const handshake = (extra: string, start = 'GET /ws HTTP/1.1') => `${start}\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n${extra}\r\n`;
const KEY = `Sec-WebSocket-Key: ${WS_KEY}\r\n`;
const V13 = 'Sec-WebSocket-Version: 13\r\n';
const badHandshakes: Array<{ name: string; raw: string; status?: number }> = [
  // HAProxy websocket.vtc c2; attacks.md #4
  { name: 'no Sec-WebSocket-Key', raw: handshake(V13) },
  // RFC 6455 §4.1: the key is 16 random bytes, base64
  { name: 'a Sec-WebSocket-Key of 17 bytes', raw: handshake(`${V13}Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAAA=\r\n`) },
  // RFC 6455 §11.3.1: the key must not appear more than once
  { name: 'two Sec-WebSocket-Key fields', raw: handshake(V13 + KEY + KEY) },
  // RFC 6455 §4.4: another version is answered 426 with `Sec-WebSocket-Version: 13`; attacks.md #4
  { name: 'Sec-WebSocket-Version: 1337', raw: handshake(`Sec-WebSocket-Version: 1337\r\n${KEY}`), status: 426 },
  // RFC 6455 §4.1: version 13 is required
  { name: 'no Sec-WebSocket-Version', raw: handshake(KEY) },
  // RFC 6455 §4.1: the handshake is a GET; 0ang3el sc.2 (POST to a health URL); attacks.md #2
  { name: 'a POST with Content-Length: 0', raw: handshake(`${V13 + KEY}Content-Length: 0\r\n`, 'POST /ws/health?u=http://evil/ HTTP/1.1') },
  // attacks.md #3: the body and the request behind it would become tunnel bytes
  { name: 'a POST with a body and a request behind it', raw: handshake(`${V13 + KEY}Content-Length: 5\r\n`, 'POST /ws HTTP/1.1') + 'hello' + SMUGGLED },
  // attacks.md #3
  { name: 'a GET with Content-Length: 5', raw: handshake(`${V13 + KEY}Content-Length: 5\r\n`) + 'hello' + SMUGGLED },
  // attacks.md #3
  { name: 'a GET with a chunked body', raw: handshake(`${V13 + KEY}Transfer-Encoding: chunked\r\n`) + '5\r\nhello\r\n0\r\n\r\n' + SMUGGLED },
  // RFC 6455 §4.1: HTTP/1.1 or later
  { name: 'an HTTP/1.0 handshake', raw: handshake(V13 + KEY, 'GET /ws HTTP/1.0') },
];

eachRow(
  badHandshakes,
  async (t, row, mode) => {
    const upstream = await rawUpstream(t);
    const { port } = await startGateway(t, { routes: [`/=http://127.0.0.1:${upstream.port}`] });
    const res = await send(port, row.raw, mode, undefined, EXPECT_CLOSE);
    assertRefused(t, res, row.status);
    if (row.status === 426) t.match(res.text, /\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n/, 'says which version it speaks');
    await assertNothingUpstream(t, upstream);
  },
  BOTH_MODES,
);

// Tunnels are byte-transparent: no framing added either way (Envoy
// BidirectionalNoContentLengthNoTransferEncoding; attacks.md #9), and bytes
// pipelined with either side's head arrive after it, in order (nginx-tests
// proxy_websocket.t "handshake pipelined"; Envoy EarlyData; attacks.md #8).
const tunnels = [
  // attacks.md #8: a masked frame behind the handshake, a frame behind the 101
  { name: 'frames pipelined with both heads arrive in order', early: '\x81\x83\0\0\0\0foo', upstreamEarly: '\x81\x05world' },
  // attacks.md #9: raw bytes that look like HTTP framing are not reframed
  { name: 'no Content-Length or chunk framing is added to tunnel bytes', early: '', upstreamEarly: '' },
];

eachRow(
  tunnels,
  async (t, row, mode) => {
    const upstream = await answeringUpstream(t, (_head, socket) => socket.write(Buffer.from(switchingProtocols() + row.upstreamEarly, 'latin1')));
    const { port } = await startGateway(t, { routes: [`/=http://127.0.0.1:${upstream.port}`] });
    const client = await rawClient(port);
    await write(client, upgradeRequest('/ws') + row.early, mode);
    await waitFor(() => client.text().endsWith('\r\n\r\n' + row.upstreamEarly), 3000, 'the 101 and the early bytes');
    await waitFor(() => upstream.text().endsWith('\r\n\r\n' + row.early), 3000, 'the handshake and the early bytes');
    await write(client, '0\r\n\r\n', mode);
    (await upstream.connection()).write('HTTP/1.1 200 OK\r\n\r\n');
    await waitFor(() => upstream.text().endsWith(row.early + '0\r\n\r\n') && client.text().endsWith(row.upstreamEarly + 'HTTP/1.1 200 OK\r\n\r\n'), 3000, 'tunnel bytes');
    const [clientHead, upstreamHead] = [client.text(), upstream.text()].map((s) => s.slice(0, headEnd(s)));
    t.notMatch(upstreamHead, /content-length|transfer-encoding/i, 'the upstream handshake has no body framing');
    t.notMatch(clientHead, /content-length|transfer-encoding/i, 'the 101 has no body framing');
    t.equal(upstream.text().slice(upstreamHead.length), row.early + '0\r\n\r\n', 'upstream got exactly the client bytes');
    t.equal(client.text().slice(clientHead.length), row.upstreamEarly + 'HTTP/1.1 200 OK\r\n\r\n', 'client got exactly the upstream bytes');
    client.destroy();
  },
  BOTH_MODES,
);
