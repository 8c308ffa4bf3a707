// Request smuggling on the HTTP path (attacks.md #11-#18, #20, #21, #24, the
// llhttp CVEs of 2022-2025), each request sent in one write and one byte per
// write. A bad head is answered 400 + Connection: close before any upstream
// connection exists. A bad body can only be seen after its head went upstream
// when it trickles in; then that upstream connection is aborted before it
// holds a complete request (README "How it works"). Then the upstream side
// (#36, #37): a desynchronised or malformed response is a 502 or a cut, and
// its connection is never reused.
import type { Test } from 'tap';
import { BOTH_MODES, EXPECT_CLOSE, assertRefused, completeRequests, eachRow, parseRequests, send, settle, type WriteMode } from '../helpers/adversarial.js';
import { answeringUpstream, startGateway, waitFor } from '../helpers/net.js';

const OK = 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok';
const chunkedPost = (chunks: string) => `POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n${chunks}`;

interface Refused {
  name: string;
  raw: string;
  /** The answer, when not 400. */
  status?: number;
  /** The head is valid, the body is not (it may start upstream when trickled). */
  body?: boolean;
}

const refused: Refused[] = [
  // RFC 9112 §6.3; attacks.md #11
  { name: 'CL.TE: Content-Length with Transfer-Encoding', raw: 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG' },
  // RFC 9112 §6.3; attacks.md #11
  { name: 'TE.CL: Transfer-Encoding first', raw: 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 6\r\n\r\n0\r\n\r\nG' },
  // CVE-2018-7159; attacks.md #13
  { name: 'two different Content-Length values', raw: 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!' },
  // HAProxy CVE-2023-40225 (HTTP Garden transducer 1); attacks.md #13
  { name: 'two identical Content-Length fields', raw: 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello' },
  // HAProxy CVE-2023-40225: an empty Content-Length before a real one; attacks.md #13
  { name: 'empty Content-Length then Content-Length: 43', raw: 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\nContent-Length: 43\r\n\r\nhello' },
  // HTTP Garden server 10; attacks.md #13
  { name: 'Content-Length list', raw: 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\nhello!' },
  // HTTP Garden transducer 5; attacks.md #13
  { name: 'signed Content-Length', raw: 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello' },
  // HTTP Garden transducer 11; attacks.md #13
  { name: 'hex Content-Length', raw: 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\nhello' },
  // HTTP Garden server 16; attacks.md #13
  { name: 'Content-Length with an inner space', raw: 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5 5\r\n\r\nhello' },
  // RFC 9110 §8.6: 1*DIGIT; a negative length must not wrap
  { name: 'negative Content-Length', raw: 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n' },
  // RFC 9110 §8.6: a length that overflows 64 bits
  { name: 'Content-Length past 2^64', raw: 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n' },
  // CVE-2022-32213; attacks.md #12
  { name: 'Transfer-Encoding not ending in chunked', raw: 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n' },
  // CVE-2022-32213; attacks.md #12
  { name: 'Transfer-Encoding: chunked, identity', raw: 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n' },
  // CVE-2022-32213; attacks.md #12
  { name: 'Transfer-Encoding: xchunked', raw: 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n' },
  // HTTP Garden transducer 9; attacks.md #12
  { name: 'Transfer-Encoding: chunked followed by NUL', raw: 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\x00\r\n\r\n0\r\n\r\n' },
  // CVE-2020-8287; attacks.md #12
  { name: 'two Transfer-Encoding chunked lines', raw: 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n' },
  // CVE-2021-22959; attacks.md #12, #14
  { name: 'whitespace before the colon of Transfer-Encoding', raw: 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n' },
  // CVE-2021-22959; attacks.md #14
  { name: 'whitespace before the colon of Content-Length', raw: 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\nhello' },
  // CVE-2022-32215; attacks.md #14
  { name: 'obs-fold line', raw: 'GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n Transfer-Encoding: chunked\r\n\r\n' },
  // CVE-2024-27982; attacks.md #14
  { name: 'leading whitespace on the first field', raw: 'POST / HTTP/1.1\r\n\tContent-Length: 1\r\nHost: a\r\n\r\nx' },
  // CVE-2023-30589; attacks.md #15
  { name: 'bare CR inside a field', raw: 'GET / HTTP/1.1\r\nHost: a\r\nX: a\rTransfer-Encoding: chunked\r\n\r\n' },
  // CVE-2022-32214; attacks.md #15
  { name: 'bare LF line endings', raw: 'GET / HTTP/1.1\nHost: a\n\n' },
  // CVE-2022-35256: a field line not ended by CR LF
  { name: 'one field line ended by a bare LF', raw: 'POST / HTTP/1.1\r\nHost: a\r\nX: a\nContent-Length: 5\r\n\r\nhello' },
  // CVE-2025-23167; attacks.md #15
  { name: 'CR LF CR before a field', raw: 'GET / HTTP/1.1\r\nHost: a\r\nX-Test: v\r\n\rX-Smuggled: yes\r\n\r\n' },
  // HTTP Garden server 2; attacks.md #18
  { name: 'NUL in a header value', raw: 'GET / HTTP/1.1\r\nHost: a\x00.evil\r\n\r\n' },
  // HTTP Garden transducer 10; attacks.md #18
  { name: 'LF inside a header name', raw: 'GET / HTTP/1.1\r\nHost: a\r\nTe\nst: x\r\n\r\n' },
  // HTTP Garden transducer 6; attacks.md #18
  { name: 'control byte in a header name', raw: 'GET / HTTP/1.1\r\nHost: a\r\nHeader\x85: v\r\n\r\n' },
  // RFC 9112 §3.2; attacks.md #20
  { name: 'two Host fields', raw: 'GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n' },
  // RFC 9112 §3.2; attacks.md #20
  { name: 'HTTP/1.1 without Host', raw: 'GET / HTTP/1.1\r\n\r\n' },
  // RFC 3986 §3.2.2: userinfo is not part of Host; attacks.md #20
  { name: 'Host with userinfo', raw: 'GET / HTTP/1.1\r\nHost: a@b\r\n\r\n' },
  // HAProxy h1_request_target_validation.vtc; attacks.md #21
  { name: 'asterisk-form GET', raw: 'GET * HTTP/1.1\r\nHost: a\r\n\r\n' },
  // HAProxy h1_request_target_validation.vtc; attacks.md #21
  { name: 'request-target without a slash', raw: 'GET admin HTTP/1.1\r\nHost: a\r\n\r\n' },
  // HAProxy h1_request_target_validation.vtc; attacks.md #21
  { name: 'authority-form GET', raw: 'GET a.org:80 HTTP/1.1\r\nHost: a\r\n\r\n' },
  // HAProxy h1_request_target_validation.vtc; attacks.md #21
  { name: 'OPTIONS */x', raw: 'OPTIONS */x HTTP/1.1\r\nHost: a\r\n\r\n' },
  // RFC 9110 §9.3.6: wsgate is not a forward proxy; attacks.md #21
  { name: 'CONNECT', raw: 'CONNECT a.org:80 HTTP/1.1\r\nHost: a.org:80\r\n\r\n', status: 405 },
  // RFC 9110 §6.2, §15.6.6: HTTP/2.0 in an HTTP/1 request-line was forwarded as HTTP/1.1 (found by diff-nginx)
  { name: 'HTTP/2.0 request-line', raw: 'GET /v HTTP/2.0\r\nHost: a\r\n\r\n', status: 505 },
  // llhttp reads a request-line without a version as HTTP/0.9, and went on to read fields after it (found by fuzzing)
  { name: 'request-line without a version, then fields', raw: 'PATCH http://a/a!HTTP/1.0\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc', status: 505 },
  // Cross-site tracing: TRACE echoes cookies and credentials; nginx refuses it too
  { name: 'TRACE', raw: 'TRACE / HTTP/1.1\r\nHost: a\r\nCookie: secret=1\r\n\r\n', status: 405 },
  // RFC 9110 §9.3.6; a 2xx to it turned a pooled upstream connection into a tunnel (found by fuzzing)
  { name: 'CONNECT with an origin-form target', raw: 'CONNECT /x HTTP/1.1\r\nHost: a\r\n\r\n', status: 405 },
  // RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 is faulty framing; llhttp parsed it as chunked and kept the connection
  { name: 'HTTP/1.0 with Transfer-Encoding', raw: 'POST / HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n' },
  // RFC 9112 §7.1: chunked takes no parameters and is applied once; llhttp accepts this list (found by fuzzing)
  { name: 'chunked with a parameter, then chunked again', raw: 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;q=1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n' },
  // RFC 9112 §7: a transfer-coding is a token; llhttp accepts a quoted one before chunked (found by fuzzing)
  { name: 'a quoted "chunked", then chunked', raw: 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: "chunked"\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n' },
  // llhttp ignores an empty Transfer-Encoding and frames by Content-Length; forwarded re-chunked, it desynced the upstream (found by fuzzing)
  { name: 'empty Transfer-Encoding beside Content-Length', raw: 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \r\nContent-Length: 3\r\n\r\nabc' },
  // RFC 9112 §2.3: the version is case-sensitive
  { name: 'lower-case HTTP version', raw: 'GET / http/1.1\r\nHost: a\r\n\r\n' },
  // RFC 9112 §3.2: a space inside the request-target
  { name: 'space inside the request-target', raw: 'GET /a b HTTP/1.1\r\nHost: a\r\n\r\n' },
  // CVE-2024-21536; attacks.md #24
  { name: 'malformed percent-encoding', raw: 'GET /%E0%A4%A HTTP/1.1\r\nHost: a\r\n\r\n' },
  // attacks.md #24
  { name: 'encoded NUL in the path', raw: 'GET /%00 HTTP/1.1\r\nHost: a\r\n\r\n' },
  // HTTP Garden transducer 2; attacks.md #16
  { name: 'invalid chunk size', raw: chunkedPost('1these-bytes\r\nx\r\n0\r\n\r\n'), body: true },
  // HTTP Garden transducer 3; attacks.md #16
  { name: 'hex-prefixed chunk size', raw: chunkedPost('0x1\r\nx\r\n0\r\n\r\n'), body: true },
  // HTTP Garden transducer 7; attacks.md #16
  { name: 'signed chunk size', raw: chunkedPost('+1\r\nx\r\n0\r\n\r\n'), body: true },
  // HTTP Garden transducer 7; attacks.md #16
  { name: 'negative zero chunk size', raw: chunkedPost('-0\r\n\r\n'), body: true },
  // HTTP Garden transducer 13; attacks.md #16
  { name: 'chunk size with an underscore', raw: chunkedPost('0_2e\r\n\r\n'), body: true },
  // HTTP Garden server 1; attacks.md #16
  { name: 'chunk size overflow', raw: chunkedPost(`${'F'.repeat(17)}\r\nx\r\n0\r\n\r\n`), body: true },
  // HTTP Garden transducer 19; attacks.md #16
  { name: 'chunk size then CR CR', raw: chunkedPost('2\r\r;a\r\nxx\r\n0\r\n\r\n'), body: true },
  // Go CVE-2025-22871; attacks.md #16
  { name: 'bare LF after chunk data', raw: chunkedPost('a\r\n0123456789\n0\r\n\r\n'), body: true },
  // HTTP Garden server 17; attacks.md #16
  { name: 'empty chunk size', raw: chunkedPost('\r\nx\r\n0\r\n\r\n'), body: true },
  // llhttp lenient spaces_after_chunk_size (off in strict mode); attacks.md #16
  { name: 'space after the chunk size', raw: chunkedPost('1 \r\nx\r\n0\r\n\r\n'), body: true },
  // CVE-2023-30589 class: bare LF inside a chunk extension
  { name: 'bare LF in a chunk extension', raw: chunkedPost('1;a=b\nc\r\nx\r\n0\r\n\r\n'), body: true },
  // llhttp quoted-string chunk extensions: CR LF is not allowed inside one
  { name: 'CR LF inside a quoted chunk extension', raw: chunkedPost('1;a="b\r\nc"\r\nx\r\n0\r\n\r\n'), body: true },
  // llhttp lenient optional_crlf_after_chunk (off in strict mode)
  { name: 'chunk data without its CR LF', raw: chunkedPost('1\r\nxy0\r\n\r\n'), body: true },
  // RFC 9112 §7.1.2: a trailer can never frame the message
  { name: 'Content-Length in a trailer', raw: chunkedPost('0\r\nContent-Length: 5\r\n\r\n'), body: true },
];

async function refusedRow(t: Test, row: Refused, mode: WriteMode) {
  const upstream = await answeringUpstream(t, OK);
  const { port } = await startGateway(t, { routes: [`/=http://127.0.0.1:${upstream.port}`] });
  assertRefused(t, await send(port, row.raw, mode, undefined, EXPECT_CLOSE), row.status);
  await settle();
  // A request longer than a socket's first, small read (lib/io/read-buffers.ts)
  // reaches the parser in pieces even in one write, as a trickled one does:
  // its head may be forwarded before the bad body is seen, but never a whole request.
  if (row.body && (mode === 'one byte per write' || row.raw.length > 1024)) {
    t.equal(completeRequests(upstream.text()), 0, 'the upstream never holds a complete request');
    await waitFor(() => upstream.sockets.every((s) => s.readableEnded || s.destroyed), 2000, 'upstream connection aborted');
  } else {
    t.equal(upstream.received.length, 0, 'no upstream connection');
  }
}

eachRow(refused, refusedRow, BOTH_MODES);
// CVE-2024-22019; attacks.md #17: a 20 KB chunk extension (trickled it would only take longer)
eachRow([{ name: 'chunk-extension flood', raw: chunkedPost(`1;${'a'.repeat(20000)}\r\nx\r\n0\r\n\r\n`), body: true }], refusedRow);

// Inputs llhttp accepts: wsgate forwards its own framing, never the client's bytes.
const normalised: Array<{ name: string; raw: string; head: RegExp; body?: string }> = [
  // attacks.md #12: llhttp accepts `,chunked` as chunked; extensions and trailers dropped
  { name: 'a leading comma in Transfer-Encoding: upstream sees exactly "chunked"', raw: 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ,chunked\r\n\r\n3;ext=1\r\nabc\r\n0\r\nTrailer: x\r\n\r\n', head: /\r\nTransfer-Encoding: chunked\r\n/, body: 'abc' },
  // attacks.md #12; RFC 9110 §5.5: a leading tab is OWS
  { name: 'a tab before chunked: upstream sees exactly "chunked"', raw: 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \tchunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n', head: /\r\nTransfer-Encoding: chunked\r\n/, body: 'abc' },
  // RFC 9112 §6.1: codings before chunked are kept
  { name: 'Transfer-Encoding: gzip, chunked keeps its coding', raw: 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nzz\r\n0\r\n\r\n', head: /\r\nTransfer-Encoding: gzip, chunked\r\n/, body: 'zz' },
  // RFC 9112 §3.2.2; attacks.md #20: with absolute-form the authority replaces Host
  { name: 'absolute-form target: its authority is the Host sent upstream', raw: 'GET http://internal/x HTTP/1.1\r\nHost: public\r\n\r\n', head: /^GET \/x HTTP\/1\.1\r\nHost: internal\r\n/ },
];

eachRow(
  normalised,
  async (t, row, mode) => {
    const upstream = await answeringUpstream(t, OK);
    const { port } = await startGateway(t, { routes: [`/=http://127.0.0.1:${upstream.port}`] });
    const res = await send(port, row.raw, mode);
    t.match(res.text, /^HTTP\/1\.1 200 OK\r\n/);
    await settle();
    const sent = parseRequests(upstream.text());
    t.equal(sent.length, 1, 'exactly one request upstream');
    t.match(upstream.text(), row.head);
    t.equal(sent[0]?.body, row.body ?? '', 'the body as parsed');
    t.notMatch(upstream.text(), /;ext|Trailer:/, 'nothing llhttp dropped is forwarded');
  },
  BOTH_MODES,
);

// #36/#37: the upstream's first answer; every later request gets GOOD.
const GOOD = 'HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ngood';
const STRAY = 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstray';
const responses: Array<{ name: string; answer: string; status: number; method?: string; idleStray?: boolean; cut?: boolean; reused?: boolean }> = [
  // positive control: a clean exchange goes back to the pool and is reused
  { name: 'a clean response: its connection is reused', answer: OK, status: 200, reused: true },
  // Kettle "response queue poisoning"; HTTP Garden server 47; attacks.md #36
  { name: 'two responses to one request', answer: OK + STRAY, status: 200 },
  // HTTP Garden server 48; attacks.md #36
  { name: 'a body longer than its Content-Length', answer: `${OK}stray`, status: 200 },
  // RFC 9110 §15.3.5; attacks.md #36
  { name: 'a body after 204', answer: 'HTTP/1.1 204 No Content\r\n\r\nstray', status: 204 },
  // RFC 9110 §15.4.5; attacks.md #36
  { name: 'a body after 304', answer: 'HTTP/1.1 304 Not Modified\r\n\r\nstray', status: 304 },
  // RFC 9110 §9.3.2; attacks.md #36
  { name: 'a body to HEAD', method: 'HEAD', answer: 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstray', status: 200 },
  // RFC 9112 §7.1: nothing may follow the last chunk
  { name: 'bytes after the last chunk', answer: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\nstray', status: 200 },
  // attacks.md #36: an unsolicited response while the connection is idle in the pool
  { name: 'bytes while idle in the pool', answer: OK, status: 200, idleStray: true },
  // RFC 9112 §6.3; attacks.md #37
  { name: 'a response with Content-Length and Transfer-Encoding', answer: 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nstray\r\n0\r\n\r\n', status: 502 },
  // RFC 9112 §6.3; attacks.md #37
  { name: 'a response with two Content-Length values', answer: 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nstray!', status: 502 },
  // RFC 9112 §5.2; attacks.md #37
  { name: 'a response with obs-fold', answer: 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX: a\r\n b\r\n\r\nstray', status: 502 },
  // RFC 9112 §2.2; attacks.md #37
  { name: 'a response with bare LF line endings', answer: 'HTTP/1.1 200 OK\nContent-Length: 5\n\nstray', status: 502 },
  // RFC 9112 §4: status-code = 3DIGIT; attacks.md #37
  { name: 'a four-digit status code', answer: 'HTTP/1.1 2000 OK\r\nContent-Length: 5\r\n\r\nstray', status: 502 },
  // HTTP Garden; attacks.md #37
  { name: 'a response with NUL in a field value', answer: 'HTTP/1.1 200 OK\r\nX: a\0b\r\nContent-Length: 5\r\n\r\nstray', status: 502 },
  // RFC 9112 §7.1: a malformed chunk once the head was relayed: the client is cut
  { name: 'a response with an invalid chunk size', answer: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5x\r\nstray\r\n0\r\n\r\n', status: 200, cut: true },
];

eachRow(responses, async (t, row) => {
  let answered = false;
  const upstream = await answeringUpstream(t, (_head, socket) => {
    if (answered) return void socket.write(GOOD);
    answered = true;
    socket.write(row.answer);
    if (row.idleStray) setTimeout(() => socket.write(STRAY), 30);
  });
  const { port } = await startGateway(t, { routes: [`/=http://127.0.0.1:${upstream.port}`] });
  const res = await send(port, `${row.method ?? 'GET'} /first HTTP/1.1\r\nHost: a\r\n\r\n`, undefined, undefined, row.status === 502 || row.cut ? EXPECT_CLOSE : undefined);
  t.match(res.text, new RegExp(`^HTTP/1\\.1 ${row.status} `));
  t.notMatch(res.text, /stray/, 'no stray byte reaches the client');
  if (row.status === 502 || row.cut) t.ok(res.closed, 'client connection closed');
  await settle(100);
  const next = await send(port, 'GET /next HTTP/1.1\r\nHost: a\r\n\r\n');
  t.match(next.text, /^HTTP\/1\.1 200 OK\r\n[^]*\r\n\r\ngood$/, 'the next request sees its own response only');
  if (row.reused) {
    t.equal(upstream.received.length, 1, 'one upstream connection served both');
  } else {
    t.equal(upstream.received.length, 2, 'the next request went on a fresh upstream connection');
    t.ok(upstream.sockets[0].destroyed || upstream.sockets[0].readableEnded, 'the first upstream connection was closed');
    t.notMatch(upstream.text(0), /next/, 'and never reused');
  }
});
