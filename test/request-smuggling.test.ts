// Request smuggling on the HTTP path: each row sends the raw bytes of one
// attack and expects 400 + Connection: close, with nothing of the request at
// the upstream. Sources per row; ../shared/research/attacks.md has the details.
import t from 'tap';
import { answeringUpstream, rawExchange, startGateway } from './helpers/net.js';

const rows: Array<[string, string, string]> = [
  // [source, name, raw request]
  ['RFC 9112 §6.3; attacks.md #11', 'CL.TE: Content-Length with Transfer-Encoding', 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG'],
  ['RFC 9112 §6.3; attacks.md #11', 'TE.CL: Transfer-Encoding first', 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 6\r\n\r\n0\r\n\r\nG'],
  ['CVE-2018-7159; attacks.md #13', 'two different Content-Length values', 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!'],
  ['attacks.md #13', 'Content-Length list', 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\nhello!'],
  ['attacks.md #13', 'signed Content-Length', 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello'],
  ['CVE-2022-32213; attacks.md #12', 'Transfer-Encoding not ending in chunked', 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n'],
  ['CVE-2022-32213; attacks.md #12', 'Transfer-Encoding: xchunked', 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n'],
  ['CVE-2020-8287; attacks.md #12', 'two Transfer-Encoding chunked lines', 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'],
  ['HTTP Garden; attacks.md #16', 'invalid chunk size', 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1these-bytes\r\nx\r\n0\r\n\r\n'],
  ['HTTP Garden; attacks.md #16', 'hex-prefixed chunk size', 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0x1\r\nx\r\n0\r\n\r\n'],
  ['HTTP Garden; attacks.md #16', 'chunk size overflow', `POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n${'F'.repeat(17)}\r\nx\r\n0\r\n\r\n`],
  ['CVE-2022-32215; attacks.md #14', 'obs-fold line', 'GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n Transfer-Encoding: chunked\r\n\r\n'],
  ['CVE-2021-22959; attacks.md #14', 'whitespace before the colon', 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\nhello'],
  ['CVE-2024-27982; attacks.md #14', 'leading whitespace on the first field', 'POST / HTTP/1.1\r\n\tContent-Length: 1\r\nHost: a\r\n\r\nx'],
  ['CVE-2023-30589; attacks.md #15', 'bare CR inside a field', 'GET / HTTP/1.1\r\nHost: a\r\nX: a\rTransfer-Encoding: chunked\r\n\r\n'],
  ['CVE-2022-32214; attacks.md #15', 'bare LF line endings', 'GET / HTTP/1.1\nHost: a\n\n'],
  ['CVE-2025-23167; attacks.md #15', 'CR LF CR before a field', 'GET / HTTP/1.1\r\nHost: a\r\nX-Test: v\r\n\rX-Smuggled: yes\r\n\r\n'],
  ['HTTP Garden; attacks.md #18', 'NUL in a header value', 'GET / HTTP/1.1\r\nHost: a\x00.evil\r\n\r\n'],
  ['HTTP Garden; attacks.md #18', 'control byte in a header name', 'GET / HTTP/1.1\r\nHost: a\r\nHeader\x85: v\r\n\r\n'],
  ['RFC 9112 §3.2; attacks.md #20', 'two Host fields', 'GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n'],
  ['RFC 9112 §3.2; attacks.md #20', 'HTTP/1.1 without Host', 'GET / HTTP/1.1\r\n\r\n'],
  ['HAProxy h1_request_target_validation.vtc; attacks.md #21', 'asterisk-form GET', 'GET * HTTP/1.1\r\nHost: a\r\n\r\n'],
  ['HAProxy h1_request_target_validation.vtc; attacks.md #21', 'request-target without a slash', 'GET admin HTTP/1.1\r\nHost: a\r\n\r\n'],
  ['CVE-2024-21536; attacks.md #24', 'malformed percent-encoding', 'GET /%E0%A4%A HTTP/1.1\r\nHost: a\r\n\r\n'],
];

t.test('each smuggling input is answered 400 and closed, and nothing reaches the upstream', async (t) => {
  const upstream = await answeringUpstream(t, 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
  const { port } = await startGateway(t, { routes: [`/=http://127.0.0.1:${upstream.port}`] });
  for (const [source, name, raw] of rows) {
    const res = await rawExchange(port, raw, { untilClose: true, timeoutMs: 3000 });
    t.match(res.text, /^HTTP\/1\.1 400 Bad Request\r\n/, `${name} (${source}): 400`);
    t.match(res.text, /\r\nConnection: close\r\n/, `${name}: Connection: close`);
    t.ok(res.closed, `${name}: closed`);
  }
  t.equal(upstream.received.length, 0, 'no upstream connection was ever opened');
});

t.test('the same inputs split after the head: still 400, no upstream bytes of the bad part', async (t) => {
  const upstream = await answeringUpstream(t, 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
  const { port } = await startGateway(t, { routes: [`/=http://127.0.0.1:${upstream.port}`] });
  for (const [, name, raw] of rows) {
    const cut = Math.max(1, raw.indexOf('\r\n') + 2);
    const res = await rawExchange(port, [raw.slice(0, cut), raw.slice(cut)], { untilClose: true, timeoutMs: 3000 });
    t.match(res.text, /^HTTP\/1\.1 400 Bad Request\r\n/, `${name} split: 400`);
  }
  t.equal(upstream.received.length, 0);
});

t.test('a leading comma in Transfer-Encoding is normalised: upstream sees exactly "chunked"', async (t) => {
  // attacks.md #12: llhttp accepts `,chunked` as chunked; wsgate never forwards it verbatim.
  const upstream = await answeringUpstream(t, 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
  const { port } = await startGateway(t, { routes: [`/=http://127.0.0.1:${upstream.port}`] });
  const res = await rawExchange(port, 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ,chunked\r\n\r\n3;ext=1\r\nabc\r\n0\r\nTrailer: x\r\n\r\n');
  t.match(res.text, /^HTTP\/1\.1 200 OK/);
  t.match(upstream.text(), /\r\nTransfer-Encoding: chunked\r\n/);
  t.match(upstream.text(), /\r\n\r\n3\r\nabc\r\n0\r\n\r\n$/, 'chunk extensions and trailers dropped');
});

t.test('Transfer-Encoding: gzip, chunked keeps its coding', async (t) => {
  const upstream = await answeringUpstream(t, 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
  const { port } = await startGateway(t, { routes: [`/=http://127.0.0.1:${upstream.port}`] });
  await rawExchange(port, 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nzz\r\n0\r\n\r\n');
  t.match(upstream.text(), /\r\nTransfer-Encoding: gzip, chunked\r\n/);
});
