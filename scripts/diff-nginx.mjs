#!/usr/bin/env node
// Differential check against nginx (issue #6).
//
//   npm run build && node scripts/diff-nginx.mjs [--out FILE] [--only SUBSTRING]
//
// Starts Debian nginx (/usr/sbin/nginx; `apt-get install -y nginx` if missing) with a
// temp prefix and config, one process, `-g 'daemon off;'`, and wsgate (dist/lib/index.js)
// with the same routes, both in front of ONE recording raw upstream. Each case's raw
// bytes go to each proxy on a fresh connection; the script records what the client got
// (statuses, whether the proxy closed) and what the upstream received (request line,
// headers without the fields the proxies add, body), normalised, and prints a markdown
// report (stdout, and FILE with --out). Every wait is bounded: a case gets 2 s per proxy.
//
// Normalisation of the upstream's view (so that only meaningful differences remain):
// - header names lower-cased, fields sorted by name (stable: same-name order kept;
//   RFC 9110 §5.3: the order of different field names is not significant);
// - Content-Length / Transfer-Encoding dropped, the body de-chunked: nginx buffers
//   request bodies and sends a Content-Length, wsgate re-chunks; the body bytes and
//   any transfer coding other than `chunked` are compared;
// - `Connection`: `keep-alive`/`close` tokens dropped (each proxy manages its own
//   upstream connection), other tokens kept; `Upgrade` lower-cased;
// - X-Forwarded-For: the proxy's own `127.0.0.1` at the end removed; X-Real-IP
//   `127.0.0.1`, X-Forwarded-Proto `http`, X-Forwarded-Host equal to Host: dropped.
//   What a client sent in them stays visible.

import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const NGINX = '/usr/sbin/nginx';
const CASE_BUDGET_MS = 2000; // per proxy per case
const QUIET_MS = 400; // the answer is over when the proxy has been silent this long
const SETTLE_MS = 150; // after the client side, let the upstream's bytes arrive
const HOST = 'a.test';
const WS_KEY = 'dGhlIHNhbXBsZSBub25jZQ==';
const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

const args = process.argv.slice(2);
const outFile = argValue('--out');
const only = argValue('--only');

function argValue(name) {
  const i = args.indexOf(name);
  if (i === -1) return null;
  if (i + 1 >= args.length) fail(`${name} needs a value`);
  return args[i + 1];
}

function fail(message) {
  process.stderr.write(`diff-nginx: ${message}\n`);
  process.exit(2);
}

// ---------------------------------------------------------------- corpus

const CRLF = '\r\n';
/** A request from lines joined by CRLF, ending with the empty line, then `body`. */
const req = (lines, body = '') => lines.join(CRLF) + CRLF + CRLF + body;
const wsHead = (path, extra = [], first = `GET ${path} HTTP/1.1`) =>
  req([first, `Host: ${HOST}`, 'Upgrade: websocket', 'Connection: Upgrade', `Sec-WebSocket-Key: ${WS_KEY}`, 'Sec-WebSocket-Version: 13', ...extra]);
const FRAME = '\x81\x83\x00\x00\x00\x00foo'; // masked text frame "foo", zero mask
const wait = (ms) => ({ wait: ms });

/**
 * Each case: name, group, steps (strings written as latin1, or { wait: ms }), and an
 * optional note on what RFC 9110/9112/6455 says about the input.
 */
const CASES = [
  // --- baseline and routes
  { group: 'baseline', name: 'plain GET /', steps: [req(['GET / HTTP/1.1', `Host: ${HOST}`])] },
  { group: 'baseline', name: 'GET /ws/x without upgrade', steps: [req(['GET /ws/x HTTP/1.1', `Host: ${HOST}`])] },
  { group: 'baseline', name: 'POST with Content-Length body', steps: [req(['POST /form HTTP/1.1', `Host: ${HOST}`, 'Content-Type: text/plain', 'Content-Length: 5'], 'hello')] },
  { group: 'baseline', name: 'POST without body or length', steps: [req(['POST /empty HTTP/1.1', `Host: ${HOST}`])] },
  { group: 'websocket', name: 'WebSocket handshake, then a frame', steps: [wsHead('/ws/chat'), wait(300), FRAME] },
  { group: 'websocket', name: 'WebSocket handshake pipelined with a frame (one write)', steps: [wsHead('/ws/chat') + FRAME] },
  { group: 'websocket', name: 'WebSocket: `Upgrade: WebSocket`, `Connection: keep-alive, Upgrade`', steps: [req(['GET /ws/ff HTTP/1.1', `Host: ${HOST}`, 'Connection: keep-alive, Upgrade', 'Upgrade: WebSocket', `Sec-WebSocket-Key: ${WS_KEY}`, 'Sec-WebSocket-Version: 13', 'Origin: https://evil.example', 'Sec-WebSocket-Protocol: chat'])] },
  { group: 'rewrite', name: '/api/x → /v1/x', steps: [req(['GET /api/x?q=1 HTTP/1.1', `Host: ${HOST}`])] },
  { group: 'rewrite', name: '/api (no trailing slash)', steps: [req(['GET /api HTTP/1.1', `Host: ${HOST}`])] },
  { group: 'rewrite', name: '/api/../x', steps: [req(['GET /api/../x HTTP/1.1', `Host: ${HOST}`])] },
  { group: 'rewrite', name: '/api//x', steps: [req(['GET /api//x HTTP/1.1', `Host: ${HOST}`])] },
  { group: 'rewrite', name: '/api../x', steps: [req(['GET /api../x HTTP/1.1', `Host: ${HOST}`])] },
  { group: 'rewrite', name: '/apix', steps: [req(['GET /apix HTTP/1.1', `Host: ${HOST}`])] },
  { group: 'rewrite', name: '/api/%2e%2e/x', steps: [req(['GET /api/%2e%2e/x HTTP/1.1', `Host: ${HOST}`])] },

  // --- smuggling: CL/TE
  { group: 'smuggling', name: 'CL.TE (CL 6 + TE chunked)', steps: [req(['POST / HTTP/1.1', `Host: ${HOST}`, 'Content-Length: 6', 'Transfer-Encoding: chunked'], '0\r\n\r\nG')] },
  { group: 'smuggling', name: 'TE.CL (TE chunked + CL 3)', steps: [req(['POST / HTTP/1.1', `Host: ${HOST}`, 'Transfer-Encoding: chunked', 'Content-Length: 3'], '8\r\nSMUGGLED\r\n0\r\n\r\n')] },
  { group: 'smuggling', name: 'TE `,chunked`', steps: [req(['POST / HTTP/1.1', `Host: ${HOST}`, 'Transfer-Encoding: ,chunked'], '3\r\nabc\r\n0\r\n\r\n')] },
  { group: 'smuggling', name: 'TE `xchunked`', steps: [req(['POST / HTTP/1.1', `Host: ${HOST}`, 'Transfer-Encoding: xchunked'], '3\r\nabc\r\n0\r\n\r\n')] },
  { group: 'smuggling', name: 'TE `chunked, identity`', steps: [req(['POST / HTTP/1.1', `Host: ${HOST}`, 'Transfer-Encoding: chunked, identity'], '3\r\nabc\r\n0\r\n\r\n')] },
  { group: 'smuggling', name: 'two `Transfer-Encoding: chunked` lines', steps: [req(['POST / HTTP/1.1', `Host: ${HOST}`, 'Transfer-Encoding: chunked', 'Transfer-Encoding: chunked'], '3\r\nabc\r\n0\r\n\r\n')] },
  { group: 'smuggling', name: '`Transfer-Encoding : chunked` (SP before colon)', steps: [req(['POST / HTTP/1.1', `Host: ${HOST}`, 'Transfer-Encoding : chunked', 'Content-Length: 3'], 'abc')] },
  { group: 'smuggling', name: 'two identical `Content-Length: 3`', steps: [req(['POST / HTTP/1.1', `Host: ${HOST}`, 'Content-Length: 3', 'Content-Length: 3'], 'abc')] },
  { group: 'smuggling', name: '`Content-Length: 3, 4`', steps: [req(['POST / HTTP/1.1', `Host: ${HOST}`, 'Content-Length: 3, 4'], 'abcd')] },
  { group: 'smuggling', name: '`Content-Length: +3`', steps: [req(['POST / HTTP/1.1', `Host: ${HOST}`, 'Content-Length: +3'], 'abc')] },
  { group: 'smuggling', name: 'empty `Transfer-Encoding:` + CL 3', steps: [req(['POST / HTTP/1.1', `Host: ${HOST}`, 'Transfer-Encoding: ', 'Content-Length: 3'], 'abc')] },
  { group: 'smuggling', name: '`Transfer-Encoding: identity` + CL 3', steps: [req(['POST / HTTP/1.1', `Host: ${HOST}`, 'Transfer-Encoding: identity', 'Content-Length: 3'], 'abc')] },
  { group: 'smuggling', name: '`Content-Length: 3<HTAB>` (legal OWS)', steps: [req(['POST / HTTP/1.1', `Host: ${HOST}`, 'Content-Length: 3\t'], 'abc')] },
  { group: 'smuggling', name: 'chunk size `0x3`', steps: [req(['POST / HTTP/1.1', `Host: ${HOST}`, 'Transfer-Encoding: chunked'], '0x3\r\nabc\r\n0\r\n\r\n')] },
  { group: 'smuggling', name: 'bare LF after chunk data', steps: [req(['POST / HTTP/1.1', `Host: ${HOST}`, 'Transfer-Encoding: chunked'], '3\r\nabc\n0\r\n\r\n')] },
  { group: 'smuggling', name: 'TE chunked in HTTP/1.0', steps: [req(['POST / HTTP/1.0', `Host: ${HOST}`, 'Transfer-Encoding: chunked'], '3\r\nabc\r\n0\r\n\r\n')] },
  { group: 'smuggling', name: 'chunked trailers, then a pipelined GET', steps: [req(['POST /first HTTP/1.1', `Host: ${HOST}`, 'Transfer-Encoding: chunked'], '0\r\nX-T: v\r\n\r\n') + req(['GET /second HTTP/1.1', `Host: ${HOST}`])] },

  // --- legal but odd bodies
  { group: 'body', name: 'chunked with extensions and trailers', steps: [req(['POST /c HTTP/1.1', `Host: ${HOST}`, 'Transfer-Encoding: chunked', 'Trailer: X-Sum'], '3;name=val\r\nabc\r\n2;x\r\nde\r\n0\r\nX-Sum: 5\r\n\r\n')] },
  { group: 'body', name: 'chunk size `00A` upper case', steps: [req(['POST /c HTTP/1.1', `Host: ${HOST}`, 'Transfer-Encoding: chunked'], '00A\r\n0123456789\r\n0\r\n\r\n')] },
  { group: 'body', name: '`Transfer-Encoding: gzip, chunked`', steps: [req(['POST /gz HTTP/1.1', `Host: ${HOST}`, 'Transfer-Encoding: gzip, chunked'], '3\r\nabc\r\n0\r\n\r\n')] },
  { group: 'body', name: '`Transfer-Encoding: Chunked` (case)', steps: [req(['POST /c HTTP/1.1', `Host: ${HOST}`, 'Transfer-Encoding: Chunked'], '3\r\nabc\r\n0\r\n\r\n')] },
  { group: 'body', name: 'Expect: 100-continue, body after 300 ms', steps: [req(['POST /e HTTP/1.1', `Host: ${HOST}`, 'Expect: 100-continue', 'Content-Length: 5']), wait(300), 'hello'] },
  { group: 'body', name: 'Expect: 100-continue, body at once', steps: [req(['POST /e HTTP/1.1', `Host: ${HOST}`, 'Expect: 100-continue', 'Content-Length: 5'], 'hello')] },
  { group: 'body', name: 'Expect: 100-continue on HTTP/1.0', steps: [req(['POST /e HTTP/1.0', `Host: ${HOST}`, 'Expect: 100-continue', 'Content-Length: 5'], 'hello')] },
  { group: 'body', name: '`Expect: something-else`', steps: [req(['GET /e HTTP/1.1', `Host: ${HOST}`, 'Expect: something-else'])] },
  { group: 'body', name: 'GET with a body', steps: [req(['GET /g HTTP/1.1', `Host: ${HOST}`, 'Content-Length: 3'], 'abc')] },
  { group: 'body', name: '`Trailer: x` on a GET (no body)', steps: [req(['GET /t HTTP/1.1', `Host: ${HOST}`, 'Trailer: x'])] },

  // --- header syntax
  { group: 'headers', name: 'obs-fold `X-A: a` + ` b`', steps: [req(['GET / HTTP/1.1', `Host: ${HOST}`, 'X-A: a', ' b'])] },
  { group: 'headers', name: 'obs-fold hiding `Transfer-Encoding`', steps: [req(['POST / HTTP/1.1', `Host: ${HOST}`, 'X-A: a', ' Transfer-Encoding: chunked', 'Content-Length: 3'], 'abc')] },
  { group: 'headers', name: 'SP before colon `X-A : b`', steps: [req(['GET / HTTP/1.1', `Host: ${HOST}`, 'X-A : b'])] },
  { group: 'headers', name: 'bare LF line endings', steps: [`GET /lf HTTP/1.1\nHost: ${HOST}\nX-A: b\n\n`] },
  { group: 'headers', name: 'bare CR inside a field (`X: a\\rTransfer-Encoding: chunked`)', steps: [`POST / HTTP/1.1\r\nHost: ${HOST}\r\nX: a\rTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nabc`] },
  { group: 'headers', name: '`\\r\\n\\rX-Smuggled` (CVE-2025-23167)', steps: [`GET / HTTP/1.1\r\nHost: ${HOST}\r\nX-Test: v\r\n\rX-Smuggled: yes\r\n\r\n`] },
  { group: 'headers', name: 'NUL in a field value', steps: [req(['GET / HTTP/1.1', `Host: ${HOST}`, 'X-A: v\x00alue'])] },
  { group: 'headers', name: 'NUL in Host', steps: [req(['GET / HTTP/1.1', `Host: a\x00.evil`])] },
  { group: 'headers', name: 'obs-text in a field name (`Header\\x85`)', steps: [req(['GET / HTTP/1.1', `Host: ${HOST}`, 'Header\x85: v'])] },
  { group: 'headers', name: 'obs-text in a field value (latin1 `caf\\xe9`)', steps: [req(['GET / HTTP/1.1', `Host: ${HOST}`, 'X-Name: caf\xe9'])] },
  { group: 'headers', name: 'field name with `_` (`X_Under: 1`)', steps: [req(['GET / HTTP/1.1', `Host: ${HOST}`, 'X_Under: 1'])] },
  { group: 'headers', name: 'empty field value `X-Empty:`', steps: [req(['GET / HTTP/1.1', `Host: ${HOST}`, 'X-Empty:'])] },
  { group: 'headers', name: 'duplicate ordinary fields (Accept, Cookie, X-Dup)', steps: [req(['GET / HTTP/1.1', `Host: ${HOST}`, 'Accept: text/html', 'Cookie: a=1', 'X-Dup: 1', 'Accept: */*', 'Cookie: b=2', 'X-Dup: 2'])] },
  { group: 'headers', name: 'a 10,000-byte field value', steps: [req(['GET / HTTP/1.1', `Host: ${HOST}`, `X-Long: ${'x'.repeat(10_000)}`])] },
  { group: 'headers', name: 'a 20,000-byte head', steps: [req(['GET / HTTP/1.1', `Host: ${HOST}`, `X-Long1: ${'y'.repeat(7000)}`, `X-Long2: ${'y'.repeat(7000)}`, `X-Long3: ${'y'.repeat(6000)}`])] },
  { group: 'headers', name: '120 header fields', steps: [req(['GET / HTTP/1.1', `Host: ${HOST}`, ...Array.from({ length: 119 }, (_, i) => `X-F${i}: ${i}`)])] },
  { group: 'headers', name: '`Connection: close, X-Secret` nominates a field', steps: [req(['GET / HTTP/1.1', `Host: ${HOST}`, 'Connection: close, X-Secret', 'X-Secret: s', 'X-Kept: k'])] },
  { group: 'headers', name: '`Connection: keep-alive, Authorization`', steps: [req(['GET / HTTP/1.1', `Host: ${HOST}`, 'Connection: keep-alive, Authorization', 'Authorization: Bearer t'])] },
  { group: 'headers', name: '`Connection: Host, Content-Length` on a POST', steps: [req(['POST / HTTP/1.1', `Host: ${HOST}`, 'Connection: Host, Content-Length', 'Content-Length: 3'], 'abc')] },
  { group: 'headers', name: '`Connection: X-Forwarded-For` + XFF', steps: [req(['GET / HTTP/1.1', `Host: ${HOST}`, 'Connection: X-Forwarded-For', 'X-Forwarded-For: 9.9.9.9'])] },
  { group: 'headers', name: 'hop-by-hop: Keep-Alive, Proxy-Connection, TE, Proxy-Authorization', steps: [req(['GET / HTTP/1.1', `Host: ${HOST}`, 'Keep-Alive: timeout=5', 'Proxy-Connection: keep-alive', 'TE: trailers', 'Proxy-Authorization: Basic eDp5'])] },
  { group: 'headers', name: 'forwarding claims: XFF, X-Real-IP, X-Forwarded-Host/Proto, Forwarded', steps: [req(['GET / HTTP/1.1', `Host: ${HOST}`, 'X-Forwarded-For: 1.2.3.4', 'X-Real-IP: 5.6.7.8', 'X-Forwarded-Host: evil.example', 'X-Forwarded-Proto: https', 'Forwarded: for=1.2.3.4'])] },

  // --- Host
  { group: 'host', name: 'two different Host fields', steps: [req(['GET / HTTP/1.1', `Host: ${HOST}`, 'Host: b.test'])] },
  { group: 'host', name: 'two identical Host fields', steps: [req(['GET / HTTP/1.1', `Host: ${HOST}`, `Host: ${HOST}`])] },
  { group: 'host', name: 'no Host, HTTP/1.1', steps: [req(['GET / HTTP/1.1'])] },
  { group: 'host', name: 'no Host, HTTP/1.0', steps: [req(['GET /old HTTP/1.0'])] },
  { group: 'host', name: 'Host with port and upper case (`A.Test:8080`)', steps: [req(['GET / HTTP/1.1', 'Host: A.Test:8080'])] },
  { group: 'host', name: 'Host with trailing dot (`a.test.`)', steps: [req(['GET / HTTP/1.1', 'Host: a.test.'])] },
  { group: 'host', name: 'Host `a@b.test` (userinfo)', steps: [req(['GET / HTTP/1.1', 'Host: a@b.test'])] },
  { group: 'host', name: 'Host `a.test:99999`', steps: [req(['GET / HTTP/1.1', 'Host: a.test:99999'])] },
  { group: 'host', name: 'empty Host', steps: [req(['GET / HTTP/1.1', 'Host: '])] },
  { group: 'host', name: 'Host `[::1]:80` (IPv6 literal)', steps: [req(['GET / HTTP/1.1', 'Host: [::1]:80'])] },

  // --- request-target forms
  { group: 'target', name: 'absolute-form `http://internal/x` with Host public', steps: [req(['GET http://internal/x HTTP/1.1', 'Host: public.test'])] },
  { group: 'target', name: 'absolute-form `https://a.test/x`', steps: [req(['GET https://a.test/x HTTP/1.1', `Host: ${HOST}`])] },
  { group: 'target', name: 'absolute-form with port and upper case `http://A.TEST:81/x`', steps: [req(['GET http://A.TEST:81/x HTTP/1.1', `Host: ${HOST}`])] },
  { group: 'target', name: 'absolute-form with an empty path `GET http://a.test`', steps: [req(['GET http://a.test HTTP/1.1', `Host: ${HOST}`])] },
  { group: 'target', name: 'absolute-form `OPTIONS http://a.test` (empty path)', steps: [req(['OPTIONS http://a.test HTTP/1.1', `Host: ${HOST}`])] },
  { group: 'target', name: 'asterisk-form `OPTIONS *`', steps: [req(['OPTIONS * HTTP/1.1', `Host: ${HOST}`])] },
  { group: 'target', name: '`GET *`', steps: [req(['GET * HTTP/1.1', `Host: ${HOST}`])] },
  { group: 'target', name: '`CONNECT a.test:443`', steps: [req(['CONNECT a.test:443 HTTP/1.1', 'Host: a.test:443'])] },
  { group: 'target', name: '`CONNECT /x` (origin-form)', steps: [req(['CONNECT /x HTTP/1.1', `Host: ${HOST}`])] },
  { group: 'target', name: 'authority-form with GET `GET a.test:80`', steps: [req(['GET a.test:80 HTTP/1.1', `Host: ${HOST}`])] },
  { group: 'target', name: '`GET admin` (no leading slash)', steps: [req(['GET admin HTTP/1.1', `Host: ${HOST}`])] },
  { group: 'target', name: 'query string `/x?a=1&b=%2F&c=/../y`', steps: [req(['GET /x?a=1&b=%2F&c=/../y HTTP/1.1', `Host: ${HOST}`])] },
  { group: 'target', name: 'fragment `/x#frag`', steps: [req(['GET /x#frag HTTP/1.1', `Host: ${HOST}`])] },
  { group: 'target', name: 'encoded unreserved `/%7Euser/%41b`', steps: [req(['GET /%7Euser/%41b HTTP/1.1', `Host: ${HOST}`])] },
  { group: 'target', name: 'encoded reserved `/a%2Fb/c%20d/%3F`', steps: [req(['GET /a%2Fb/c%20d/%3F HTTP/1.1', `Host: ${HOST}`])] },
  { group: 'target', name: 'lower-case escape `/a%3fb`', steps: [req(['GET /a%3fb HTTP/1.1', `Host: ${HOST}`])] },
  { group: 'target', name: 'dot segments `/a/./b/../c`', steps: [req(['GET /a/./b/../c HTTP/1.1', `Host: ${HOST}`])] },
  { group: 'target', name: 'path climbing above root `/../x`', steps: [req(['GET /../x HTTP/1.1', `Host: ${HOST}`])] },
  { group: 'target', name: '`/ws/../admin`', steps: [req(['GET /ws/../admin HTTP/1.1', `Host: ${HOST}`])] },
  { group: 'target', name: '`/ws/%2e%2e/admin`', steps: [req(['GET /ws/%2e%2e/admin HTTP/1.1', `Host: ${HOST}`])] },
  { group: 'target', name: '`/ws/%2E%2E%2Fadmin`', steps: [req(['GET /ws/%2E%2E%2Fadmin HTTP/1.1', `Host: ${HOST}`])] },
  { group: 'target', name: '`/ws/..%2fadmin`', steps: [req(['GET /ws/..%2fadmin HTTP/1.1', `Host: ${HOST}`])] },
  { group: 'target', name: '`/ws/..;/admin`', steps: [req(['GET /ws/..;/admin HTTP/1.1', `Host: ${HOST}`])] },
  { group: 'target', name: '`/ws\\..\\admin` (backslashes)', steps: [req(['GET /ws\\..\\admin HTTP/1.1', `Host: ${HOST}`])] },
  { group: 'target', name: '`//x` (double slash)', steps: [req(['GET //x HTTP/1.1', `Host: ${HOST}`])] },
  { group: 'target', name: '`/%77s/x` (encoded ws prefix)', steps: [req(['GET /%77s/x HTTP/1.1', `Host: ${HOST}`])] },
  { group: 'target', name: 'WebSocket via `/%77s/chat`', steps: [wsHead('/%77s/chat')] },
  { group: 'target', name: '`/ws?/../admin`', steps: [req(['GET /ws?/../admin HTTP/1.1', `Host: ${HOST}`])] },
  { group: 'target', name: 'malformed escape `/%E0%A4%A`', steps: [req(['GET /%E0%A4%A HTTP/1.1', `Host: ${HOST}`])] },
  { group: 'target', name: '`/%00`', steps: [req(['GET /%00 HTTP/1.1', `Host: ${HOST}`])] },
  { group: 'target', name: 'UTF-8 escapes `/caf%C3%A9`', steps: [req(['GET /caf%C3%A9 HTTP/1.1', `Host: ${HOST}`])] },
  { group: 'target', name: 'raw `"<>{}|` in the target', steps: [req(['GET /a"<>{}|^` HTTP/1.1', `Host: ${HOST}`])] },
  { group: 'target', name: 'an 8,000-byte path', steps: [req([`GET /${'p'.repeat(8000)} HTTP/1.1`, `Host: ${HOST}`])] },
  { group: 'target', name: 'runs of SP in the request-line', steps: [req(['GET  /sp  HTTP/1.1', `Host: ${HOST}`])] },

  // --- methods
  { group: 'method', name: 'QUERY with a body', steps: [req(['QUERY /q HTTP/1.1', `Host: ${HOST}`, 'Content-Type: text/plain', 'Content-Length: 5'], 'a=1&b')] },
  { group: 'method', name: 'PURGE', steps: [req(['PURGE /cache HTTP/1.1', `Host: ${HOST}`])] },
  { group: 'method', name: 'LOCK with a body', steps: [req(['LOCK /dav HTTP/1.1', `Host: ${HOST}`, 'Content-Length: 7'], '<lock/>')] },
  { group: 'method', name: 'PROPFIND with Depth', steps: [req(['PROPFIND /dav HTTP/1.1', `Host: ${HOST}`, 'Depth: 1'])] },
  { group: 'method', name: 'unknown method `FOO`', steps: [req(['FOO / HTTP/1.1', `Host: ${HOST}`])] },
  { group: 'method', name: 'lower-case `get`', steps: [req(['get / HTTP/1.1', `Host: ${HOST}`])] },
  { group: 'method', name: 'HEAD', steps: [req(['HEAD /h HTTP/1.1', `Host: ${HOST}`])] },
  { group: 'method', name: 'HEAD with a bad target `/%zz`', steps: [req(['HEAD /%zz HTTP/1.1', `Host: ${HOST}`])] },
  { group: 'method', name: 'TRACE', steps: [req(['TRACE /t HTTP/1.1', `Host: ${HOST}`])] },
  { group: 'method', name: 'TRACE with `Max-Forwards: 0`', steps: [req(['TRACE /t HTTP/1.1', `Host: ${HOST}`, 'Max-Forwards: 0'])] },
  { group: 'method', name: 'OPTIONS with `Max-Forwards: 0`', steps: [req(['OPTIONS /o HTTP/1.1', `Host: ${HOST}`, 'Max-Forwards: 0'])] },
  { group: 'method', name: 'OPTIONS with `Max-Forwards: 5`', steps: [req(['OPTIONS /o HTTP/1.1', `Host: ${HOST}`, 'Max-Forwards: 5'])] },
  { group: 'method', name: 'DELETE with a body', steps: [req(['DELETE /d HTTP/1.1', `Host: ${HOST}`, 'Content-Length: 2'], 'id')] },
  { group: 'method', name: 'PATCH chunked', steps: [req(['PATCH /p HTTP/1.1', `Host: ${HOST}`, 'Transfer-Encoding: chunked'], '2\r\n{}\r\n0\r\n\r\n')] },

  // --- versions, keep-alive, pipelining
  { group: 'version', name: 'HTTP/1.0 without keep-alive', steps: [req(['GET /ten HTTP/1.0', `Host: ${HOST}`])] },
  { group: 'version', name: 'HTTP/1.0 keep-alive, two requests pipelined', steps: [req(['GET /ka1 HTTP/1.0', `Host: ${HOST}`, 'Connection: keep-alive']) + req(['GET /ka2 HTTP/1.0', `Host: ${HOST}`, 'Connection: keep-alive'])] },
  { group: 'version', name: 'HTTP/1.1: three pipelined requests', steps: [req(['GET /p1 HTTP/1.1', `Host: ${HOST}`]) + req(['POST /p2 HTTP/1.1', `Host: ${HOST}`, 'Content-Length: 2'], 'hi') + req(['GET /p3 HTTP/1.1', `Host: ${HOST}`])] },
  { group: 'version', name: 'bytes after `Connection: close`', steps: [req(['GET /c1 HTTP/1.1', `Host: ${HOST}`, 'Connection: close']) + req(['GET /c2 HTTP/1.1', `Host: ${HOST}`])] },
  { group: 'version', name: '`HTTP/1.2`', steps: [req(['GET /v HTTP/1.2', `Host: ${HOST}`])] },
  { group: 'version', name: '`HTTP/2.0` in an HTTP/1 request-line', steps: [req(['GET /v HTTP/2.0', `Host: ${HOST}`])] },
  { group: 'version', name: 'HTTP/0.9 `GET /`', steps: ['GET /\r\n'] },
  { group: 'version', name: 'HTTP/2 prior-knowledge preface', steps: ['PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'] },
  { group: 'version', name: 'lower-case `http/1.1`', steps: [req(['GET /v http/1.1', `Host: ${HOST}`])] },
  { group: 'version', name: 'leading CRLF before the request-line', steps: ['\r\n' + req(['GET /lead HTTP/1.1', `Host: ${HOST}`])] },

  // --- WebSocket handshakes
  { group: 'websocket', name: 'no Sec-WebSocket-Key', steps: [req(['GET /ws/a HTTP/1.1', `Host: ${HOST}`, 'Connection: Upgrade', 'Upgrade: websocket', 'Sec-WebSocket-Version: 13'])] },
  { group: 'websocket', name: 'Sec-WebSocket-Version: 1337', steps: [req(['GET /ws/a HTTP/1.1', `Host: ${HOST}`, 'Connection: Upgrade', 'Upgrade: websocket', `Sec-WebSocket-Key: ${WS_KEY}`, 'Sec-WebSocket-Version: 1337'])] },
  { group: 'websocket', name: 'key not 16 bytes', steps: [req(['GET /ws/a HTTP/1.1', `Host: ${HOST}`, 'Connection: Upgrade', 'Upgrade: websocket', 'Sec-WebSocket-Key: c2hvcnQ=', 'Sec-WebSocket-Version: 13'])] },
  { group: 'websocket', name: 'POST upgrade with a body and a smuggled GET', steps: [req(['POST /ws/a HTTP/1.1', `Host: ${HOST}`, 'Upgrade: websocket', 'Connection: Upgrade', `Sec-WebSocket-Key: ${WS_KEY}`, 'Sec-WebSocket-Version: 13', 'Content-Length: 5'], 'hello') + req(['GET /admin HTTP/1.1', `Host: ${HOST}`])] },
  { group: 'websocket', name: 'upgrade on HTTP/1.0', steps: [wsHead('/ws/a', [], 'GET /ws/a HTTP/1.0')] },
  { group: 'websocket', name: '`Upgrade: websocket` without `Connection: upgrade`', steps: [req(['GET /ws/a HTTP/1.1', `Host: ${HOST}`, 'Upgrade: websocket', `Sec-WebSocket-Key: ${WS_KEY}`, 'Sec-WebSocket-Version: 13'])] },
  { group: 'websocket', name: 'h2c upgrade with HTTP2-Settings', steps: [req(['GET /ws/a HTTP/1.1', `Host: ${HOST}`, 'Upgrade: h2c', 'HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA', 'Connection: Upgrade, HTTP2-Settings'])] },
  { group: 'websocket', name: 'h2c upgrade on `/`', steps: [req(['GET / HTTP/1.1', `Host: ${HOST}`, 'Upgrade: h2c', 'HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA', 'Connection: Upgrade, HTTP2-Settings'])] },
  { group: 'websocket', name: 'WebSocket handshake on HTTP-only `/`', steps: [wsHead('/plain')] },
  { group: 'websocket', name: '`Upgrade: websocket/13`', steps: [req(['GET /ws/a HTTP/1.1', `Host: ${HOST}`, 'Upgrade: websocket/13', 'Connection: Upgrade', `Sec-WebSocket-Key: ${WS_KEY}`, 'Sec-WebSocket-Version: 13'])] },
  { group: 'websocket', name: 'WebSocket handshake with a query and Sec-WebSocket-Extensions', steps: [wsHead('/ws/q?token=abc', ['Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits'])] },
];

// ---------------------------------------------------------------- recording upstream

let currentTag = null;
/** tag -> { requests: [], connections: number } */
const upstreamLog = new Map();
const openUpstreamSockets = new Set();

function logFor(tag) {
  let entry = upstreamLog.get(tag);
  if (entry === undefined) upstreamLog.set(tag, (entry = { events: [], connections: 0 }));
  return entry;
}

const upstreamServer = net.createServer({ allowHalfOpen: false }, upstreamOnConnection);

function upstreamOnConnection(socket) {
  openUpstreamSockets.add(socket);
  logFor(currentTag).connections++;
  const state = { buf: Buffer.alloc(0), mode: 'http', tag: currentTag };
  socket.on('data', (chunk) => {
    state.buf = Buffer.concat([state.buf, chunk]);
    if (state.mode === 'tunnel') {
      logFor(currentTag).events.push({ kind: 'tunnel', data: state.buf.toString('latin1') });
      state.buf = Buffer.alloc(0);
      return;
    }
    upstreamParse(socket, state);
  });
  socket.on('error', () => {});
  socket.on('close', () => {
    openUpstreamSockets.delete(socket);
    if (state.mode === 'http' && state.buf.length > 0) logFor(currentTag).events.push({ kind: 'incomplete', data: state.buf.toString('latin1') });
  });
}

function upstreamParse(socket, state) {
  while (state.mode === 'http' && state.buf.length > 0) {
    const headEnd = state.buf.indexOf('\r\n\r\n');
    if (headEnd === -1) {
      if (state.buf.length > 1 << 20) return upstreamGarbage(socket, state);
      return;
    }
    const lines = state.buf.subarray(0, headEnd).toString('latin1').split('\r\n');
    const requestLine = lines[0];
    const m = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+) (\S+) HTTP\/1\.[01]$/.exec(requestLine);
    if (m === null) return upstreamGarbage(socket, state);
    const headers = [];
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(':');
      if (colon <= 0) headers.push(['(no colon)', line]);
      else headers.push([line.slice(0, colon), line.slice(colon + 1).trim()]);
    }
    const get = (name) => headers.filter(([n]) => n.toLowerCase() === name).map(([, v]) => v);
    let offset = headEnd + 4;
    let body = '';
    let trailers = [];
    let framing = 'none';
    const te = get('transfer-encoding').join(',');
    const cl = get('content-length');
    if (te !== '' && /(^|,)\s*chunked\s*$/i.test(te)) {
      const chunked = dechunk(state.buf, offset);
      if (chunked === null) return; // need more
      if (chunked === 'bad') return upstreamGarbage(socket, state);
      body = chunked.body;
      trailers = chunked.trailers;
      offset = chunked.end;
      framing = 'chunked';
    } else if (cl.length > 0) {
      const n = Number(cl[0]);
      if (!Number.isSafeInteger(n) || n < 0) return upstreamGarbage(socket, state);
      if (state.buf.length < offset + n) return;
      body = state.buf.subarray(offset, offset + n).toString('latin1');
      offset += n;
      framing = 'length';
    }
    state.buf = state.buf.subarray(offset);
    const request = { kind: 'request', requestLine, method: m[1], headers, body, trailers, framing };
    logFor(currentTag).events.push(request);
    const upgrade = get('upgrade').join(',').toLowerCase();
    const key = get('sec-websocket-key')[0];
    if (/\bwebsocket\b/.test(upgrade) && key !== undefined) {
      const accept = createHash('sha1').update(key + WS_GUID).digest('base64');
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
      state.mode = 'tunnel';
      if (state.buf.length > 0) logFor(currentTag).events.push({ kind: 'tunnel', data: state.buf.toString('latin1') });
      state.buf = Buffer.alloc(0);
      return;
    }
    const close = /\bclose\b/i.test(get('connection').join(','));
    const payload = m[1] === 'HEAD' ? '' : 'ok';
    socket.write(`HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n${close ? 'Connection: close\r\n' : ''}\r\n${payload}`);
    if (close) {
      state.mode = 'closed';
      socket.end();
    }
  }
}

function upstreamGarbage(socket, state) {
  logFor(currentTag).events.push({ kind: 'garbage', data: state.buf.toString('latin1') });
  state.buf = Buffer.alloc(0);
  state.mode = 'closed';
  socket.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
}

/** RFC 9112 §7.1 chunked body from `offset`: { body, trailers, end }, null (incomplete) or 'bad'. */
function dechunk(buf, offset) {
  let body = '';
  for (;;) {
    const lineEnd = buf.indexOf('\r\n', offset);
    if (lineEnd === -1) return null;
    const sizeText = buf.subarray(offset, lineEnd).toString('latin1').split(';')[0].trim();
    if (!/^[0-9a-fA-F]+$/.test(sizeText)) return 'bad';
    const size = parseInt(sizeText, 16);
    offset = lineEnd + 2;
    if (size === 0) {
      const trailers = [];
      for (;;) {
        const end = buf.indexOf('\r\n', offset);
        if (end === -1) return null;
        const line = buf.subarray(offset, end).toString('latin1');
        offset = end + 2;
        if (line === '') return { body, trailers, end: offset };
        trailers.push(line);
      }
    }
    if (buf.length < offset + size + 2) return null;
    body += buf.subarray(offset, offset + size).toString('latin1');
    if (buf[offset + size] !== 13 || buf[offset + size + 1] !== 10) return 'bad';
    offset += size + 2;
  }
}

// ---------------------------------------------------------------- normalisation

const LOOPBACK = '127.0.0.1';

/** The upstream's view of one case as comparable text lines. */
function upstreamView(tag) {
  const entry = upstreamLog.get(tag);
  if (entry === undefined || entry.events.length === 0) return ['(nothing)'];
  const out = [];
  for (const ev of entry.events) {
    if (ev.kind !== 'request') {
      out.push(`[${ev.kind}] ${show(ev.data)}`);
      continue;
    }
    out.push(show(ev.requestLine));
    const hostValue = (ev.headers.find(([n]) => n.toLowerCase() === 'host') ?? [])[1] ?? '';
    const fields = [];
    for (const [rawName, rawValue] of ev.headers) {
      const name = rawName.toLowerCase();
      let value = rawValue;
      if (name === 'content-length') continue;
      if (name === 'transfer-encoding') {
        const codings = value.split(',').map((s) => s.trim().toLowerCase()).filter((s) => s !== '' && s !== 'chunked');
        if (codings.length === 0) continue;
        value = codings.join(', ');
        fields.push(['transfer-codings', value]);
        continue;
      }
      if (name === 'connection') {
        const tokens = value.split(',').map((s) => s.trim().toLowerCase()).filter((s) => s !== '' && s !== 'keep-alive' && s !== 'close');
        if (tokens.length === 0) continue;
        value = tokens.join(', ');
      }
      if (name === 'upgrade') value = value.toLowerCase();
      if (name === 'x-forwarded-for') {
        if (value === LOOPBACK) continue;
        if (value.endsWith(`, ${LOOPBACK}`)) value = value.slice(0, -(LOOPBACK.length + 2));
      }
      if (name === 'x-real-ip' && value === LOOPBACK) continue;
      if (name === 'x-forwarded-proto' && value === 'http') continue;
      if (name === 'x-forwarded-host' && value === hostValue) continue;
      fields.push([name, value]);
    }
    fields.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    for (const [name, value] of fields) out.push(`  ${name}: ${show(value)}`);
    if (ev.body !== '') out.push(`  body(${ev.body.length}): ${show(ev.body)}`);
    for (const t of ev.trailers) out.push(`  trailer: ${show(t)}`);
  }
  return out;
}

/** Printable latin1: escapes for CR, LF, TAB, backslash and other bytes; long runs shortened. */
function show(text) {
  let s = '';
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 13) s += '\\r';
    else if (c === 10) s += '\\n';
    else if (c === 9) s += '\\t';
    else if (c === 92) s += '\\\\';
    else if (c >= 0x20 && c < 0x7f) s += text[i];
    else s += `\\x${c.toString(16).padStart(2, '0')}`;
  }
  return s.replace(/(.)\1{39,}/g, (run, ch) => `${ch.repeat(8)}…(${run.length}×${ch})`);
}

/** Statuses of every response in what the client received, and how the connection ended. */
function clientSummary(result) {
  const text = result.data.toString('latin1');
  const statuses = [...text.matchAll(/HTTP\/1\.[01] (\d{3})/g)].map((m) => m[1]);
  let s = statuses.length > 0 ? statuses.join(' ') : '—';
  if (result.closed) s += ' ·closed';
  else if (statuses.length === 0) s += ' (no answer in 2 s)';
  return s;
}

function firstHeads(result) {
  const text = result.data.toString('latin1');
  const heads = [];
  let at = 0;
  for (;;) {
    const start = text.indexOf('HTTP/1.', at);
    if (start === -1) break;
    const end = text.indexOf('\r\n\r\n', start);
    const head = text.slice(start, end === -1 ? undefined : end);
    heads.push(head.split('\r\n').filter((l) => !/^(date|server|content-type|etag|last-modified):/i.test(l)).join(' | '));
    if (end === -1) break;
    at = end + 4;
  }
  return heads;
}

// ---------------------------------------------------------------- client

/** Writes the steps to 127.0.0.1:port; resolves with what came back, bounded by CASE_BUDGET_MS. */
function runClient(port, steps) {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    const chunks = [];
    let closed = false;
    let lastActivity = Date.now();
    let stepsDone = false;
    let finished = false;
    const started = Date.now();
    const finish = () => {
      if (finished) return;
      finished = true;
      clearInterval(poll);
      socket.destroy();
      resolve({ data: Buffer.concat(chunks), closed });
    };
    const poll = setInterval(() => {
      const now = Date.now();
      if (now - started >= CASE_BUDGET_MS) return finish();
      if (stepsDone && chunks.length > 0 && now - lastActivity >= QUIET_MS) finish();
    }, 25);
    socket.on('data', (d) => {
      chunks.push(d);
      lastActivity = Date.now();
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      closed = true;
      // Give nothing more time: the proxy closed the connection.
      setTimeout(finish, 0);
    });
    socket.once('connect', async () => {
      for (const step of steps) {
        if (closed || finished) break;
        if (typeof step === 'string') socket.write(Buffer.from(step, 'latin1'));
        else await new Promise((r) => setTimeout(r, step.wait));
      }
      stepsDone = true;
      lastActivity = Math.max(lastActivity, Date.now());
    });
  });
}

// ---------------------------------------------------------------- the two proxies

function nginxConfig(dir, port, upstreamPort) {
  const common = [
    'proxy_http_version 1.1;',
    'proxy_set_header Host $host;',
    'proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;',
    'proxy_set_header X-Real-IP $remote_addr;',
    'proxy_set_header X-Forwarded-Proto $scheme;',
    'proxy_set_header X-Forwarded-Host $host;',
  ];
  const block = (lines) => lines.map((l) => `      ${l}`).join('\n');
  return `worker_processes 1;
master_process off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log info;
events { worker_connections 1024; }
http {
  access_log ${dir}/access.log;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  # The WebSocket pair (nginx.org/en/docs/http/websocket.html); '' keeps the upstream pool usable.
  map $http_upgrade $connection_upgrade { default upgrade; '' ''; }
  upstream up { server 127.0.0.1:${upstreamPort}; keepalive 16; }
  server {
    listen 127.0.0.1:${port} default_server;
    server_name ${HOST};
    location /ws/ {
      proxy_pass http://up;
${block([...common, 'proxy_set_header Upgrade $http_upgrade;', 'proxy_set_header Connection $connection_upgrade;', 'proxy_read_timeout 3600s;'])}
    }
    location /api/ {
      proxy_pass http://up/v1/;
${block([...common, 'proxy_set_header Connection "";'])}
    }
    location / {
      proxy_pass http://up;
${block([...common, 'proxy_set_header Connection "";'])}
    }
  }
}
`;
}

function wsgateConfig(upstreamPort) {
  const up = `http://127.0.0.1:${upstreamPort}`;
  return {
    servers: [
      {
        names: [HOST],
        default: true,
        locations: [
          { path: '/ws/', upstream: up, tunnelTimeout: 3600 },
          { path: '/api/', upstream: `${up}/v1/`, websocket: false },
          { path: '/', upstream: up, websocket: false },
        ],
      },
    ],
  };
}

async function freePort() {
  const server = net.createServer();
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address();
  await new Promise((r) => server.close(r));
  return port;
}

async function waitForPort(port, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`port ${port} did not open within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function importGateway() {
  // The lead rebuilds dist/ often: a momentarily missing or broken build is retried.
  const url = new URL('../dist/lib/index.js', import.meta.url);
  for (let attempt = 1; ; attempt++) {
    try {
      return await import(`${url.href}?t=${attempt}`);
    } catch (err) {
      if (attempt >= 10) throw err;
      process.stderr.write(`diff-nginx: dist/lib/index.js not loadable (${err.message}); retrying\n`);
      await new Promise((r) => setTimeout(r, 3000));
    }
  }
}

// ---------------------------------------------------------------- main

let nginxChild = null;
let gateway = null;
let tempDir = null;

function cleanup() {
  if (nginxChild !== null && nginxChild.exitCode === null && nginxChild.signalCode === null) {
    try {
      process.kill(nginxChild.pid, 'SIGKILL');
    } catch {}
  }
  for (const s of openUpstreamSockets) s.destroy();
  if (tempDir !== null) rmSync(tempDir, { recursive: true, force: true });
  tempDir = null;
}

process.on('SIGINT', () => {
  cleanup();
  process.exit(130);
});

function readNew(file, from) {
  try {
    const size = statSync(file).size;
    if (size <= from) return { text: '', size };
    return { text: readFileSync(file).subarray(from).toString('latin1'), size };
  } catch {
    return { text: '', size: from };
  }
}

/** nginx's reason for a refusal, from its error log (info level). */
function nginxReasons(text) {
  return text
    .split('\n')
    .map((l) => /\[(?:info|error|warn|crit|alert)\] \d+#\d+: \*\d+ (.*?)(?:, client: .*)?$/.exec(l)?.[1])
    .filter((r) => r !== undefined && !/closed keepalive connection|client closed connection while waiting|client .* closed keepalive|upstream prematurely closed/.test(r))
    .map((r) => r.replace(/ while reading client request (line|headers)/, ''));
}

async function main() {
  if (!existsSync(NGINX)) fail(`${NGINX} missing: apt-get install -y nginx`);
  const nginxVersion = spawnSync(NGINX, ['-v'], { encoding: 'utf8' }).stderr.trim();
  const { createGateway } = await importGateway();

  await new Promise((r) => upstreamServer.listen(0, '127.0.0.1', r));
  const upstreamPort = upstreamServer.address().port;

  tempDir = mkdtempSync(join(tmpdir(), 'wsgate-diff-nginx-'));
  const nginxPort = await freePort();
  const conf = nginxConfig(tempDir, nginxPort, upstreamPort);
  writeFileSync(join(tempDir, 'nginx.conf'), conf);
  nginxChild = spawn(NGINX, ['-p', `${tempDir}/`, '-e', join(tempDir, 'error.log'), '-c', join(tempDir, 'nginx.conf'), '-g', 'daemon off;'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let nginxStderr = '';
  nginxChild.stderr.on('data', (d) => (nginxStderr += d));
  try {
    await waitForPort(nginxPort, 10_000);
  } catch (err) {
    throw new Error(`nginx did not start: ${nginxStderr.slice(0, 500)}`, { cause: err });
  }

  const config = wsgateConfig(upstreamPort);
  gateway = createGateway(config);
  const wsgateErrors = [];
  gateway.on('connectionError', (err) => wsgateErrors.push(err.code));
  const { port: wsgatePort } = await gateway.listen(0, '127.0.0.1');

  const errorLog = join(tempDir, 'error.log');
  let errorLogSize = readNew(errorLog, 0).size;
  const cases = only === null ? CASES : CASES.filter((c) => c.name.includes(only) || c.group === only);
  const results = [];
  for (const [index, c] of cases.entries()) {
    const row = { index: index + 1, case: c };
    for (const proxy of ['nginx', 'wsgate']) {
      const tag = `${index}:${proxy}`;
      currentTag = tag;
      wsgateErrors.length = 0;
      const client = await runClient(proxy === 'nginx' ? nginxPort : wsgatePort, c.steps);
      await new Promise((r) => setTimeout(r, SETTLE_MS));
      let reasons = [];
      if (proxy === 'nginx') {
        const log = readNew(errorLog, errorLogSize);
        errorLogSize = log.size;
        reasons = nginxReasons(log.text);
      } else reasons = [...wsgateErrors];
      const ports = (line) => line.replaceAll(`:${upstreamPort}`, ':UPSTREAM').replaceAll(`:${nginxPort}`, ':NGINX').replaceAll(`:${wsgatePort}`, ':WSGATE');
      row[proxy] = { client: clientSummary(client), heads: firstHeads(client).map(ports), view: upstreamView(tag).map(ports), reasons: reasons.map((r) => show(r).slice(0, 160)) };
    }
    currentTag = null;
    row.sameStatus = row.nginx.client === row.wsgate.client;
    row.sameUpstream = row.nginx.view.join('\n') === row.wsgate.view.join('\n');
    results.push(row);
    process.stderr.write(`${row.index}/${cases.length} ${c.name}: nginx ${row.nginx.client} | wsgate ${row.wsgate.client} | upstream ${row.sameUpstream ? 'same' : 'DIFFERENT'}\n`);
  }

  const commit = spawnSync('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).stdout.trim();
  const dirty = spawnSync('git', ['-C', ROOT, 'status', '--porcelain', 'lib'], { encoding: 'utf8' }).stdout.trim() !== '';
  const report = renderReport(results, { nginxVersion, commit: `${commit}${dirty ? ' (lib/ has uncommitted changes)' : ''}`, conf, config, upstreamPort });
  process.stdout.write(report);
  if (outFile !== null) writeFileSync(outFile, report);

  await gateway.close({ drainMs: 0 });
  cleanup();
  await new Promise((r) => upstreamServer.close(r));
}

// ---------------------------------------------------------------- report

const cell = (s) => s.replace(/\|/g, '\\|').replace(/`/g, "'");

function renderReport(results, meta) {
  const differing = results.filter((r) => !r.sameStatus || !r.sameUpstream);
  const out = [];
  out.push('# wsgate vs nginx: differential report');
  out.push('');
  out.push(`Generated by \`node scripts/diff-nginx.mjs\` on ${new Date().toISOString().slice(0, 10)}: ${meta.nginxVersion}, Node ${process.version}, wsgate at ${meta.commit}.`);
  out.push(`${results.length} cases, ${differing.length} with a difference (client answer or upstream view).`);
  out.push('Both proxies sit in front of one recording upstream (answers `200 ok`, or a `101` to a WebSocket handshake).');
  out.push('Client column: the status of every response received, `·closed` when the proxy closed the connection');
  out.push('(otherwise the client closed it after 400 ms of silence or 2 s). Upstream column: whether the normalised');
  out.push('upstream views are equal (normalisation: the header comment of `scripts/diff-nginx.mjs`).');
  out.push('Configuration: `/ws/` WebSocket + HTTP, `/api/` → `/v1/` (prefix rewrite), `/` HTTP only; nginx with');
  out.push('`proxy_http_version 1.1`, the `Upgrade`/`Connection` map on `/ws/`, `Host $host`, `X-Forwarded-For`');
  out.push('`$proxy_add_x_forwarded_for`, `X-Real-IP`, `X-Forwarded-Proto`/`-Host`, an upstream keepalive pool; wsgate with');
  out.push('its defaults (loopback is a trusted proxy) and `websocket: false` on `/` and `/api/`.');
  out.push('');
  out.push('| # | case | nginx | wsgate | upstream |');
  out.push('| ---: | --- | --- | --- | --- |');
  for (const r of results) {
    const up = r.sameUpstream ? 'same' : `**different**`;
    const statusCell = (s) => (r.sameStatus ? s : `**${s}**`);
    out.push(`| ${r.index} | ${cell(r.case.group)}: ${cell(r.case.name)} | ${statusCell(cell(r.nginx.client))} | ${statusCell(cell(r.wsgate.client))} | ${up} |`);
  }
  out.push('');
  out.push('## Differences');
  out.push('');
  for (const r of differing) {
    out.push(`### ${r.index}. ${r.case.name}`);
    out.push('');
    out.push('Request:');
    out.push('```');
    for (const step of r.case.steps) {
      const text = typeof step === 'string' ? show(step) : `(wait ${step.wait} ms)`;
      out.push(text.length <= 1200 ? text : `${text.slice(0, 600)} … ${text.slice(-200)}`);
    }
    out.push('```');
    for (const proxy of ['nginx', 'wsgate']) {
      const p = r[proxy];
      out.push(`**${proxy}**: client got ${p.client}${p.reasons.length > 0 ? `; ${proxy === 'nginx' ? 'error log' : 'connectionError'}: ${p.reasons.map((x) => `\`${x}\``).join(', ')}` : ''}`);
      out.push('');
      out.push('```');
      for (const h of p.heads) out.push(`< ${show(h)}`);
      const view = p.view.length <= 30 ? p.view : [...p.view.slice(0, 12), `  … ${p.view.length - 17} more lines …`, ...p.view.slice(-5)];
      for (const line of view) out.push(line);
      out.push('```');
      out.push('');
    }
  }
  out.push('## Configurations');
  out.push('');
  out.push('nginx (temp prefix; run as `nginx -p DIR -e DIR/error.log -c DIR/nginx.conf -g \'daemon off;\'`):');
  out.push('```nginx');
  out.push(meta.conf.replaceAll(String(meta.upstreamPort), 'UPSTREAM').replace(/listen 127\.0\.0\.1:\d+/, 'listen 127.0.0.1:PORT').replace(/\/tmp\/wsgate-diff-nginx-\w+/g, 'DIR').trimEnd());
  out.push('```');
  out.push('wsgate (`createGateway`):');
  out.push('```json');
  out.push(JSON.stringify(meta.config, null, 2).replaceAll(String(meta.upstreamPort), 'UPSTREAM'));
  out.push('```');
  out.push('');
  return out.join('\n');
}

main().catch((err) => {
  process.stderr.write(`diff-nginx: ${err.stack ?? err}\n`);
  cleanup();
  process.exit(1);
});
