// Where the proxy, the client and the upstream could disagree on where a
// message ends or what it is: each row a bug found by fuzzing, by the fault
// suite or by the adversarial tables, with the bytes that showed it.
import t from 'tap';
import net from 'node:net';
import { once } from 'node:events';
import { EXPECT_CLOSE, parseRequests, send } from '../helpers/adversarial.js';
import { answeringUpstream, rawClient, rawUpstream, startGateway, switchingProtocols, upgradeRequest, waitFor } from '../helpers/net.js';

const OK = 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok';

// Found by fuzzing: llhttp hands trailers over with the message's URL again,
// which was appended to the next request's target (`GET /first/second`).
t.test('a chunked request with trailers does not leak its target into the next request', async (t) => {
  const upstream = await answeringUpstream(t, OK);
  const { port } = await startGateway(t, { routes: [`/=http://127.0.0.1:${upstream.port}`] });
  const client = await rawClient(port);
  client.write('POST /first HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\nX-T: v\r\n\r\nGET /second HTTP/1.1\r\nHost: a\r\n\r\n');
  await waitFor(() => parseRequests(upstream.received.map((r) => Buffer.concat(r).toString('latin1')).join('')).length === 2, 5000, 'two requests upstream');
  const urls = parseRequests(upstream.received.map((r) => Buffer.concat(r).toString('latin1')).join('')).map((r) => r.url);
  t.same(urls, ['/first', '/second']);
  client.destroy();
});

// Found by fuzzing: node's `methods` list stops matching llhttp's numbers after SOURCE.
t.test('QUERY (and other methods past SOURCE) reach the upstream by name', async (t) => {
  const upstream = await answeringUpstream(t, OK);
  const { port } = await startGateway(t, { routes: [`/=http://127.0.0.1:${upstream.port}`] });
  const res = await send(port, 'QUERY /q HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n');
  t.match(res.text, /^HTTP\/1\.1 200 /);
  t.match(upstream.text(0), /^QUERY \/q HTTP\/1\.1\r\n/);
});

// attacks.md #36 (Kettle, response queue poisoning): a request whose body never
// came was answered early (417); its upstream connection still expects the body.
t.test('Expect: 100-continue answered before the body: that upstream connection is never reused', async (t) => {
  const upstream = await rawUpstream(t, (socket) => {
    socket.once('data', (d: Buffer) => {
      if (d.toString('latin1').startsWith('POST')) socket.write('HTTP/1.1 417 Expectation Failed\r\nContent-Length: 0\r\n\r\n');
      else socket.write(OK);
    });
  });
  const { gw, port } = await startGateway(t, { routes: [`/=http://127.0.0.1:${upstream.port}`] });
  const first = await rawClient(port);
  first.write('POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2000\r\n\r\n');
  await waitFor(() => first.text().includes('417'), 5000, 'the 417');
  t.equal(gw.pool.idleCount, 0, 'not pooled');
  const again = await send(port, 'GET /again HTTP/1.1\r\nHost: a\r\n\r\n');
  t.match(again.text, /^HTTP\/1\.1 200 /, 'the next request is answered');
  t.equal(upstream.received.length, 2, 'on a fresh upstream connection');
  t.notMatch(upstream.text(0), /GET \/again/, 'nothing else was written behind the unfinished POST');
  first.destroy();
});

// RFC 9110 §5.6.1: `close` followed by OWS is still `close`; llhttp kept the connection alive.
t.test('Connection: close<TAB> closes the client connection after the response', async (t) => {
  const upstream = await answeringUpstream(t, OK);
  const { port } = await startGateway(t, { routes: [`/=http://127.0.0.1:${upstream.port}`] });
  const res = await send(port, 'GET / HTTP/1.1\r\nHost: a\r\nConnection: close\t\r\n\r\n', undefined, undefined, EXPECT_CLOSE);
  t.match(res.text, /^HTTP\/1\.1 200 [^]*\r\nConnection: close\r\n/i);
  t.ok(res.closed, 'closed');
});

// RFC 9110 §9.3.2: the answer to HEAD has no content, error answers included (found by fuzzing).
t.test('an error answer to HEAD carries no body', async (t) => {
  const upstream = await answeringUpstream(t, OK);
  const { port } = await startGateway(t, { routes: [`/=http://127.0.0.1:${upstream.port}`] });
  const res = await send(port, 'HEAD /%zz HTTP/1.1\r\nHost: a\r\n\r\n', undefined, undefined, EXPECT_CLOSE);
  t.match(res.text, /^HTTP\/1\.1 400 Bad Request\r\n[^]*Content-Length: \d+\r\n[^]*\r\n\r\n$/);
  t.ok(res.closed);
});

// RFC 9110 §8.6: a 1xx carries no Content-Length; the upstream's was passed on in the 101.
t.test('a 101 with Content-Length reaches the client without it', async (t) => {
  const upstream = await answeringUpstream(t, switchingProtocols(undefined, 'Content-Length: 5\r\n'));
  const { port } = await startGateway(t, { routes: [`/=http://127.0.0.1:${upstream.port}`] });
  const client = await rawClient(port);
  client.write(upgradeRequest('/'));
  await waitFor(() => client.text().includes('\r\n\r\n'), 5000, 'the 101');
  t.match(client.text(), /^HTTP\/1\.1 101 /);
  t.notMatch(client.text(), /content-length/i);
  client.destroy();
});

// attacks.md #6; the fault suite found the handshake timed by sendTimeout (the client's turn) instead.
t.test('an upstream silent after a WebSocket handshake is a 504 after readTimeout', async (t) => {
  const upstream = await rawUpstream(t);
  const { port } = await startGateway(t, { routes: [`/=http://127.0.0.1:${upstream.port}`], readTimeout: 0.4, sendTimeout: 5 });
  const started = Date.now();
  const res = await send(port, upgradeRequest('/'), 'one write', 4000);
  t.match(res.text, /^HTTP\/1\.1 504 /);
  t.ok(Date.now() - started < 3000, `after ${Date.now() - started} ms`);
});

// RFC 9112 §6.3 item 8: a body read until close is only complete at a clean close;
// when the upstream resets mid-body the client must see a reset, never a clean FIN.
t.test('a read-until-close body cut by an upstream reset ends with a reset at the client', async (t) => {
  const upstream = await rawUpstream(t, (socket) => {
    socket.once('data', () => {
      socket.write('HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nfirst half');
      setTimeout(() => socket.resetAndDestroy(), 100);
    });
  });
  const { port } = await startGateway(t, { routes: [`/=http://127.0.0.1:${upstream.port}`] });
  const client = net.connect(port, '127.0.0.1');
  await once(client, 'connect');
  let text = '';
  let error: NodeJS.ErrnoException | null = null;
  let ended = false;
  client.on('data', (d: Buffer) => (text += d.toString('latin1')));
  client.on('end', () => (ended = true));
  client.on('error', (err) => (error = err));
  const closed = new Promise((r) => client.once('close', r)); // events.once would reject on the reset
  client.write('GET / HTTP/1.1\r\nHost: a\r\n\r\n');
  await closed;
  t.match(text, /first half$/);
  t.equal((error as NodeJS.ErrnoException | null)?.code, 'ECONNRESET', 'the client sees a reset');
  t.notOk(ended, 'no clean end of stream');
});

// nginx `underscores_in_headers off`: CGI-style backends read `X_Forwarded_For` as
// X-Forwarded-For, which would get around the forwarding rewrite (found by diff-nginx).
t.test('header names with an underscore are not forwarded; an HTTP/1.0 Expect is not passed on', async (t) => {
  const upstream = await answeringUpstream(t, OK);
  const { port } = await startGateway(t, { routes: [`/=http://127.0.0.1:${upstream.port}`], trustedProxies: [] });
  await send(port, 'GET /u HTTP/1.1\r\nHost: a\r\nX_Forwarded_For: 6.6.6.6\r\nX-Keep: 1\r\n\r\n');
  // RFC 9110 §10.1.1: a server ignores 100-continue from an HTTP/1.0 client
  await send(port, 'POST /e HTTP/1.0\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello');
  const all = () => upstream.received.map((_, i) => upstream.text(i)).join('');
  await waitFor(() => all().endsWith('hello'), 5000, 'both requests upstream');
  const [get, post] = all().split(/(?=POST \/e )/);
  t.notMatch(get, /X_Forwarded_For|6\.6\.6\.6/);
  t.match(get, /\r\nX-Keep: 1\r\n/);
  t.match(post, /^POST \/e HTTP\/1\.1\r\n/);
  t.notMatch(post, /\r\nExpect:/i);
});

// RFC 9110 §15.5.6: a 405 says what is allowed.
t.test('the 405 to CONNECT lists the methods wsgate forwards', async (t) => {
  const upstream = await answeringUpstream(t, OK);
  const { port } = await startGateway(t, { routes: [`/=http://127.0.0.1:${upstream.port}`] });
  const res = await send(port, 'CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n');
  t.match(res.text, /^HTTP\/1\.1 405 [^]*\r\nAllow: GET, HEAD, POST[^\r]*\r\n/);
  t.equal(upstream.received.length, 0);
});

// RFC 9110 §5.6.1 OWS: wsgate read `upgrade<TAB>` as upgrade while llhttp 9.3 (Node 20) did not and
// went on parsing the bytes after the head as HTTP (found by fuzzing). Node 24's llhttp reads it as
// an upgrade too. Either way the two readings must agree: a 400, or a handshake whose following
// bytes are never parsed as a request.
t.test('Connection: upgrade<TAB>: refused where the parser disagrees, never a smuggled request', async (t) => {
  const upstream = await answeringUpstream(t, OK);
  const { port } = await startGateway(t, { routes: [`/=http://127.0.0.1:${upstream.port}`] });
  const res = await send(
    port,
    'GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\t\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n',
    undefined,
    undefined,
    EXPECT_CLOSE,
  );
  t.match(res.text, /^HTTP\/1\.1 (400|200) /, 'refused, or the upgrade relayed (the stub answers 200)');
  await new Promise((r) => setTimeout(r, 50));
  t.notMatch(upstream.received.map((_, i) => upstream.text(i)).join(''), /GET \/smuggled/, 'the bytes after the head never reach the upstream');
  t.ok(res.closed, 'closed');
});

// RFC 9112 §3.2.4: OPTIONS about the server is sent as `OPTIONS *`, also when the client used an
// absolute-form with an empty path (found by diff-nginx; nginx sends `/` there).
t.test('OPTIONS *, and absolute-form OPTIONS with an empty path, reach the upstream as OPTIONS *', async (t) => {
  const upstream = await answeringUpstream(t, OK);
  const { port } = await startGateway(t, { routes: [`/=http://127.0.0.1:${upstream.port}`] });
  for (const request of ['OPTIONS * HTTP/1.1\r\nHost: a.test\r\n\r\n', 'OPTIONS http://a.test HTTP/1.1\r\nHost: a.test\r\n\r\n', 'OPTIONS http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n']) {
    t.match((await send(port, request)).text, /^HTTP\/1\.1 200 /, request.split('\r\n')[0]);
  }
  const lines = upstream.received.map((_, i) => upstream.text(i)).join('').match(/^OPTIONS \S+ HTTP\/1\.1/gm);
  t.same(lines, ['OPTIONS * HTTP/1.1', 'OPTIONS * HTTP/1.1', 'OPTIONS / HTTP/1.1']);
});

// RFC 9110 §7.6.2: an intermediary decrements Max-Forwards on OPTIONS and answers itself at 0 (found by diff-nginx).
t.test('OPTIONS with Max-Forwards: 0 is answered by wsgate; a larger value is decremented', async (t) => {
  const upstream = await answeringUpstream(t, OK);
  const { port } = await startGateway(t, { routes: [`/=http://127.0.0.1:${upstream.port}`] });
  const local = await send(port, 'OPTIONS /o HTTP/1.1\r\nHost: a\r\nMax-Forwards: 0\r\n\r\n');
  t.match(local.text, /^HTTP\/1\.1 200 OK\r\nAllow: GET, HEAD, POST[^\r]*\r\n/);
  t.equal(upstream.received.length, 0, 'not forwarded');
  const forwarded = await send(port, 'OPTIONS /o HTTP/1.1\r\nHost: a\r\nMax-Forwards: 5\r\n\r\n');
  t.match(forwarded.text, /^HTTP\/1\.1 200 /);
  t.match(upstream.text(0), /\r\nMax-Forwards: 4\r\n/);
  const get = await send(port, 'GET /g HTTP/1.1\r\nHost: a\r\nMax-Forwards: 0\r\n\r\n');
  t.match(get.text, /^HTTP\/1\.1 200 /, 'other methods are forwarded (RFC 9110 §7.6.2 covers TRACE and OPTIONS)');
});
