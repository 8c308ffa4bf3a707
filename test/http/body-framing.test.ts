// Body framing on the side wsgate writes (lib/http/body-framing.ts): the framing
// chosen for each response (RFC 9112 §6, RFC 9110 §6.4.1), the transfer codings
// sent upstream, and the exact bytes the writers put on a real socket.
import t from 'tap';
import net from 'node:net';
import { once } from 'node:events';
import { LAST_CHUNK, normalizeTransferCodings, pushBody, responseFraming, writeBody } from '../../lib/http/body-framing.js';
import { parseHead, parseResponseHead } from '../helpers/heads.js';
import { answeringUpstream, rawExchange, startGateway, waitFor, type Teardown } from '../helpers/net.js';

const GET11 = 'GET / HTTP/1.1\r\nHost: a\r\n\r\n';
const GET10 = 'GET / HTTP/1.0\r\n\r\n';
const HEAD11 = 'HEAD / HTTP/1.1\r\nHost: a\r\n\r\n';

// [what, request, response head, framing, contentLength]
const FRAMINGS: Array<[string, string, string, string, number]> = [
  ['Content-Length body', GET11, 'HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n', 'length', 12],
  ['Content-Length: 0', GET11, 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n', 'length', 0],
  ['Content-Length to an HTTP/1.0 client', GET10, 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n', 'length', 5],
  ['chunked to an HTTP/1.1 client: re-chunked', GET11, 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n', 'chunked', 0],
  ['chunked to an HTTP/1.0 client: read until close (it cannot parse chunks)', GET10, 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n', 'close', 0],
  ['neither Content-Length nor Transfer-Encoding: read until close', GET11, 'HTTP/1.1 200 OK\r\n\r\n', 'close', 0],
  ['an HTTP/1.0 response without length: read until close', GET11, 'HTTP/1.0 200 OK\r\nServer: old\r\n\r\n', 'close', 0],
  ['a response to HEAD has no body, whatever its Content-Length (RFC 9110 §9.3.2)', HEAD11, 'HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n', 'none', 0],
  ['a chunked response to HEAD has no body either', HEAD11, 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n', 'none', 0],
  ['204 has no body (RFC 9110 §15.3.5)', GET11, 'HTTP/1.1 204 No Content\r\n\r\n', 'none', 0],
  ['304 has no body, even with the Content-Length it describes (RFC 9110 §15.4.5)', GET11, 'HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n', 'none', 0],
  ['404 with a body is framed like any other', GET11, 'HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\n', 'length', 9],
  ['the field name is matched without regard to case', GET11, 'HTTP/1.1 200 OK\r\ncontent-LENGTH: 3\r\n\r\n', 'length', 3],
];

for (const [what, request, response, framing, contentLength] of FRAMINGS) {
  t.test(`responseFraming: ${what} -> ${framing}`, async (t) => {
    t.same(responseFraming(parseHead(request), parseResponseHead(response)), { framing, contentLength });
  });
}

t.test('responseFraming: Transfer-Encoding wins over Content-Length (RFC 9112 §6.3), as llhttp reads it', async (t) => {
  // llhttp refuses both in one response in strict mode; the choice must still never trust the length.
  const request = parseHead(GET11);
  const response = { ...parseResponseHead('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n') };
  response.rawHeaders = ['Content-Length', '5', 'Transfer-Encoding', 'chunked'];
  t.same(responseFraming(request, response), { framing: 'chunked', contentLength: 0 });
  t.same(responseFraming(parseHead(GET10), response), { framing: 'close', contentLength: 0 });
});

// [value as the client sent it, as sent upstream]
const CODINGS: Array<[string, string]> = [
  ['chunked', 'chunked'],
  ['gzip, chunked', 'gzip, chunked'],
  ['gzip,chunked', 'gzip, chunked'],
  ['gzip,, chunked', 'gzip, chunked'], // empty list members dropped (RFC 9110 §5.6.1)
  [' , gzip ,\tchunked , ', 'gzip, chunked'],
  ['GZip, Chunked', 'GZip, Chunked'], // case kept: the upstream reads codings case-insensitively
];

t.test('normalizeTransferCodings keeps the codings, in order, without empty members or padding', async (t) => {
  for (const [value, sent] of CODINGS) t.equal(normalizeTransferCodings(value), sent, JSON.stringify(value));
});

t.test('LAST_CHUNK is the last-chunk without extensions or trailers', async (t) => {
  t.equal(LAST_CHUNK.toString('latin1'), '0\r\n\r\n');
});

t.test('pushBody appends a Content-Length piece as the very buffer (no copy)', async (t) => {
  const out: Array<string | Buffer> = ['head'];
  const chunk = Buffer.from('hello');
  pushBody(out, chunk, false);
  t.equal(out.length, 2);
  t.equal(out[1], chunk, 'the same Buffer object');
});

// [piece length, the chunk-size line]
const SIZES: Array<[number, string]> = [
  [1, '1'],
  [10, 'a'],
  [15, 'f'],
  [16, '10'],
  [255, 'ff'],
  [4096, '1000'],
  [65536, '10000'],
];

t.test('pushBody frames a chunked piece as size in lower-case hex, CRLF, the piece itself, CRLF', async (t) => {
  for (const [length, size] of SIZES) {
    const chunk = Buffer.alloc(length, 0x61);
    const out: Array<string | Buffer> = [];
    pushBody(out, chunk, true);
    t.equal(out.length, 3, `${length} bytes: three pieces`);
    t.equal(out[0], `${size}\r\n`, `${length} bytes: size line`);
    t.equal(out[1], chunk, `${length} bytes: the piece itself, not a copy`);
    t.equal(Buffer.from(out[2] as Buffer).toString('latin1'), '\r\n');
  }
});

t.test('pushBody never writes a zero-length piece as the last chunk', { todo: 'an empty piece becomes "0\\r\\n\\r\\n", which ends a chunked body early; no caller passes one today' }, async (t) => {
  const out: Array<string | Buffer> = [];
  pushBody(out, Buffer.alloc(0), true);
  const bytes = Buffer.concat(out.map((p) => (typeof p === 'string' ? Buffer.from(p, 'latin1') : p))).toString('latin1');
  t.not(bytes, '0\r\n\r\n');
});

/** A connected client socket and everything its server-side peer receives. */
async function socketPair(t: Teardown): Promise<{ socket: net.Socket; peer: Promise<net.Socket>; got: () => string }> {
  const chunks: Buffer[] = [];
  let resolvePeer!: (s: net.Socket) => void;
  const peer = new Promise<net.Socket>((r) => (resolvePeer = r));
  const server = net.createServer((s) => {
    s.on('data', (d) => chunks.push(d));
    s.on('error', () => {});
    resolvePeer(s);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const socket = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  socket.on('error', () => {});
  await once(socket, 'connect');
  t.teardown(async () => {
    socket.destroy();
    (await peer).destroy();
    await new Promise((r) => server.close(r));
  });
  return { socket, peer, got: () => Buffer.concat(chunks).toString('latin1') };
}

t.test('writeBody puts the exact bytes on the socket: pieces as they are, or each as one chunk', async (t) => {
  const plain = await socketPair(t);
  t.equal(writeBody(plain.socket, Buffer.from('hello '), false), true, 'room left');
  t.equal(writeBody(plain.socket, Buffer.from('world'), false), true);
  await waitFor(() => plain.got().length === 11, 2000, 'plain bytes');
  t.equal(plain.got(), 'hello world');

  const chunked = await socketPair(t);
  writeBody(chunked.socket, Buffer.from('hello '), true);
  writeBody(chunked.socket, Buffer.alloc(26, 'z'), true);
  chunked.socket.write(LAST_CHUNK);
  const expected = '6\r\nhello \r\n1a\r\n' + 'z'.repeat(26) + '\r\n0\r\n\r\n';
  await waitFor(() => chunked.got().length === expected.length, 2000, 'chunked bytes');
  t.equal(chunked.got(), expected);
});

for (const chunked of [false, true]) {
  t.test(`writeBody returns false once the socket's buffer is full (${chunked ? 'chunked' : 'Content-Length'}), and every byte still arrives`, async (t) => {
    const pair = await socketPair(t);
    const peer = await pair.peer;
    peer.pause(); // the far side stops reading: the kernel buffers fill, then the Writable's
    const piece = Buffer.alloc(64 * 1024, 0x62);
    let pieces = 0;
    let roomLeft = true;
    while (roomLeft && pieces < 2000) {
      roomLeft = writeBody(pair.socket, piece, chunked);
      pieces++;
    }
    t.equal(roomLeft, false, `write() said stop after ${pieces} pieces`);
    const drained = once(pair.socket, 'drain');
    peer.resume();
    await drained;
    const perPiece = piece.length + (chunked ? '10000\r\n\r\n'.length : 0);
    await waitFor(() => pair.got().length === pieces * perPiece, 10_000, 'all bytes');
    const got = pair.got();
    t.equal(got.length, pieces * perPiece);
    if (chunked) t.equal(got.slice(0, 8), '10000\r\nb', 'each piece is one chunk');
  });
}

t.test('a response transfer coding other than chunked is not dropped on the way to the client', { todo: 'responseFraming re-chunks any Transfer-Encoding and the head says only "chunked": gzip-coded bytes reach the client unlabelled' }, async (t) => {
  const up = await answeringUpstream(t, 'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n');
  const { port } = await startGateway(t, { routes: [`/=http://127.0.0.1:${up.port}`] });
  const res = await rawExchange(port, GET11);
  t.match(res.text, /\r\nTransfer-Encoding: gzip, chunked\r\n/i);
});
