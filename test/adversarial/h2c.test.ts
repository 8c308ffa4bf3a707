// h2c upgrade smuggling (BishopFox h2cSmuggler, 2020; assetnote/h2csmuggler;
// attacks.md #5): wsgate upgrades only to `websocket`, so `h2c` and
// `HTTP2-Settings` (RFC 7540 §3.2, hop-by-hop) never reach the upstream, an
// h2c request is proxied as plain HTTP/1.1 and an upstream's 101 to it is a
// 502. Bytes behind an upgrade head were never parsed, so they are dropped
// and the connection closed; the HTTP/2 preface is never tunnelled.
import { BOTH_MODES, EXPECT_CLOSE, eachRow, send, settle } from '../helpers/adversarial.js';
import { WS_KEY, answeringUpstream, startGateway, switchingProtocols } from '../helpers/net.js';

const OK = 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok';
const H2C_101 = 'HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n';
const PREFACE = 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n';
const SETTINGS = 'HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n';
const WS = `Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${WS_KEY}\r\n`;
const get = (fields: string) => `GET /x HTTP/1.1\r\nHost: a\r\n${fields}\r\n`;

interface Row {
  name: string;
  raw: string;
  answer: string;
  status: number;
  /** What the upstream must receive as the request's last fields, when it is reached. */
  sent?: RegExp;
  /** The connection is closed after the answer. */
  closes: boolean;
}

const rows: Row[] = [
  // h2cSmuggler's request; attacks.md #5
  { name: 'Upgrade: h2c with HTTP2-Settings, then the preface', raw: get(`Upgrade: h2c\r\n${SETTINGS}Connection: Upgrade, HTTP2-Settings\r\n`) + PREFACE, answer: OK, status: 200, sent: /\r\nX-Real-IP: [^\r]*\r\nConnection: keep-alive\r\n\r\n$/, closes: true },
  // h2cSmuggler against an h2c-capable upstream: its 101 must not open a tunnel
  { name: 'an upstream that accepts h2c: 502, no tunnel', raw: get(`Upgrade: h2c\r\n${SETTINGS}Connection: Upgrade, HTTP2-Settings\r\n`) + PREFACE, answer: H2C_101, status: 502, closes: true },
  // RFC 9110 §7.8: token compare is case-insensitive
  { name: 'Upgrade: H2C in capitals', raw: get(`Upgrade: H2C\r\nConnection: Upgrade\r\n`) + PREFACE, answer: H2C_101, status: 502, closes: true },
  // RFC 9110 §7.8: Upgrade without Connection: upgrade is no upgrade (llhttp parses on), and still not forwarded
  { name: 'Upgrade: h2c without Connection: upgrade', raw: get(`Upgrade: h2c\r\n${SETTINGS}`), answer: OK, status: 200, sent: /\r\nX-Real-IP: [^\r]*\r\nConnection: keep-alive\r\n\r\n$/, closes: false },
  // RFC 7540 §3.2.1: HTTP2-Settings is connection-specific even alone
  { name: 'HTTP2-Settings without Upgrade', raw: get(SETTINGS), answer: OK, status: 200, sent: /\r\nX-Real-IP: [^\r]*\r\nConnection: keep-alive\r\n\r\n$/, closes: false },
  // RFC 9110 §7.8: a list offers protocols; wsgate takes websocket and forwards only it
  { name: 'Upgrade: h2c, websocket: forwarded as websocket only', raw: get(`Upgrade: h2c, websocket\r\n${SETTINGS}Connection: Upgrade, HTTP2-Settings\r\n${WS}`) + PREFACE, answer: switchingProtocols(), status: 101, sent: /\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nPRI/, closes: false },
  // the same offer in the other order
  { name: 'Upgrade: websocket, h2c: forwarded as websocket only', raw: get(`Upgrade: websocket, h2c\r\nConnection: Upgrade\r\n${WS}`), answer: switchingProtocols(), status: 101, sent: /\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n$/, closes: false },
  // RFC 9110 §5.3: two Upgrade lines are one list
  { name: 'Upgrade: h2c and Upgrade: websocket on two lines', raw: get(`Upgrade: h2c\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n${WS}`), answer: switchingProtocols(), status: 101, sent: /\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n$/, closes: false },
  // h2c with WebSocket fields: not a WebSocket request, so a websocket 101 is a 502 (RFC 9110 §7.8)
  { name: 'Upgrade: h2c with WebSocket fields, upstream 101 websocket: 502', raw: get(`Upgrade: h2c\r\nConnection: Upgrade\r\n${WS}`), answer: switchingProtocols(), status: 502, closes: true },
  // attacks.md #3, #5: a body behind an h2c upgrade head was never parsed
  { name: 'Upgrade: h2c with a body: 400, nothing upstream', raw: `POST /x HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\nConnection: Upgrade\r\nContent-Length: 5\r\n\r\nhello`, answer: OK, status: 400, closes: true },
  // RFC 9113 §3.4: prior knowledge is not spoken here; asterisk-form and HTTP/2.0 are refused
  { name: 'the HTTP/2 connection preface as a request: 400, nothing upstream', raw: PREFACE, answer: OK, status: 400, closes: true },
];

eachRow(
  rows,
  async (t, row, mode) => {
    const upstream = await answeringUpstream(t, row.answer);
    const { gw, port } = await startGateway(t, { routes: [`/=http://127.0.0.1:${upstream.port}`] });
    const res = await send(port, row.raw, mode, row.status === 101 ? 500 : 3000, row.closes ? EXPECT_CLOSE : undefined);
    await settle();
    t.match(res.text, new RegExp(`^HTTP/1\\.1 ${row.status} `));
    t.equal(res.closed, row.closes, row.closes ? 'closed' : 'kept open');
    t.notMatch(res.text, /h2c/i, 'the client never sees h2c');
    t.notMatch(upstream.text(), /h2c|HTTP2-Settings/i, 'h2c and HTTP2-Settings never reach the upstream');
    if (row.status === 400) t.equal(upstream.received.length, 0, 'no upstream connection');
    else t.match(upstream.text(), row.sent ?? /\r\n\r\n$/, 'what the upstream received');
    if (row.status !== 101) t.notMatch(upstream.text(), /PRI \*/, 'the preface never reaches the upstream');
    t.equal(gw.stats().totalTunnels, row.status === 101 ? 1 : 0);
  },
  BOTH_MODES,
);
