// HTTP/1.1 keep-alive on both sides: many requests per client connection,
// pipelining, HTTP/1.0 and Connection: close, the upstream pool and its retry.
import t from 'tap';
import http from 'node:http';
import net from 'node:net';
import { once } from 'node:events';
import { Agent, request as undiciRequest } from 'undici';
import WebSocket from 'ws';
import { answeringUpstream, completeResponses, rawClient, rawExchange, rawUpstream, startGateway, waitFor, wsEcho } from '../helpers/net.js';

function named(name: string) {
  return `HTTP/1.1 200 OK\r\nContent-Length: ${name.length}\r\n\r\n${name}`;
}

t.test('one client connection, many requests, each routed on its own to two upstreams', async (t) => {
  const a = await answeringUpstream(t, named('A'));
  const b = await answeringUpstream(t, named('B'));
  const { gw, port } = await startGateway(t, { routes: [`/a/=http://127.0.0.1:${a.port}`, `/b/=http://127.0.0.1:${b.port}`] });
  const agent = new Agent({ connections: 1, pipelining: 1 });
  t.teardown(() => agent.close());
  const bodies: string[] = [];
  for (let i = 0; i < 20; i++) {
    const res = await undiciRequest(`http://127.0.0.1:${port}/${i % 3 === 0 ? 'b' : 'a'}/${i}`, { dispatcher: agent });
    t.equal(res.headers.connection, undefined, 'no Connection: close');
    bodies.push(await res.body.text());
  }
  t.same(bodies, Array.from({ length: 20 }, (_, i) => (i % 3 === 0 ? 'B' : 'A')));
  t.equal(gw.stats().totalConnections, 1, 'one client connection');
  t.equal(a.received.length, 1, 'upstream A: one pooled connection');
  t.equal(b.received.length, 1, 'upstream B: one pooled connection');
});

t.test('10 pipelined requests in one write are answered in order', async (t) => {
  const up = await answeringUpstream(t, (head, socket) => {
    const path = /^GET (\S+)/.exec(head)![1];
    // answer later requests faster, to prove ordering does not follow upstream timing
    const n = Number(path.slice(1));
    setTimeout(() => socket.write(named(`r${n}`)), 10 - n);
  });
  const { port } = await startGateway(t, { routes: [`/=http://127.0.0.1:${up.port}`] });
  const client = await rawClient(port);
  let batch = '';
  for (let i = 0; i < 10; i++) batch += `GET /${i} HTTP/1.1\r\nHost: a\r\n\r\n`;
  client.write(batch);
  await waitFor(() => completeResponses(Buffer.concat(client.chunks)) === 10, 5000, '10 responses');
  const bodies = [...client.text().matchAll(/\r\n\r\n(r\d)/g)].map((m) => m[1]);
  t.same(bodies, ['r0', 'r1', 'r2', 'r3', 'r4', 'r5', 'r6', 'r7', 'r8', 'r9']);
  t.notMatch(client.text(), /Connection: close/);
  client.destroy();
});

t.test('pipelined requests with bodies each reach the upstream whole', async (t) => {
  const up = await answeringUpstream(t, (head, socket) => socket.write(named(/^POST (\S+)/.exec(head)![1])));
  const { port } = await startGateway(t, { routes: [`/=http://127.0.0.1:${up.port}`] });
  const client = await rawClient(port);
  client.write(
    'POST /one HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello' +
      'POST /two HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n' +
      'POST /three HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n',
  );
  await waitFor(() => completeResponses(Buffer.concat(client.chunks)) === 3, 5000);
  t.same([...client.text().matchAll(/\r\n\r\n(\/(?:one|two|three))/g)].map((m) => m[1]), ["/one", "/two", "/three"]);
  const sent = up.received.map((_, i) => up.text(i)).join('');
  t.match(sent, /Content-Length: 5\r\n[\s\S]*\r\n\r\nhello/);
  t.match(sent, /Transfer-Encoding: chunked\r\n[\s\S]*\r\n\r\n3\r\nabc\r\n0\r\n\r\n/);
  client.destroy();
});

t.test('Connection: close and HTTP/1.0 clients are closed after their response; 1.0 keep-alive is honoured', async (t) => {
  const up = await answeringUpstream(t, named('x'));
  const { port } = await startGateway(t, { routes: [`/=http://127.0.0.1:${up.port}`] });
  const close = await rawExchange(port, 'GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n');
  t.match(close.text, /\r\nConnection: close\r\n/);
  t.ok(close.closed, '1.1 with Connection: close is closed');
  const old = await rawExchange(port, 'GET / HTTP/1.0\r\n\r\n');
  t.match(old.text, /\r\nConnection: close\r\n/);
  t.ok(old.closed, '1.0 is closed');
  const client = await rawClient(port);
  client.write('GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n');
  await waitFor(() => completeResponses(Buffer.concat(client.chunks)) === 1);
  t.match(client.text(), /\r\nConnection: keep-alive\r\n/);
  client.write('GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n');
  await waitFor(() => completeResponses(Buffer.concat(client.chunks)) === 2, 3000, 'second 1.0 response on the same connection');
  client.destroy();
});

t.test('a client FIN after a complete request still gets its answer, then the connection closes', async (t) => {
  const up = await answeringUpstream(t, (_h, socket) => setTimeout(() => socket.write(named('late')), 50));
  const { port } = await startGateway(t, { routes: [`/=http://127.0.0.1:${up.port}`] });
  const res = await rawExchange(port, 'GET / HTTP/1.1\r\nHost: a\r\n\r\n', { endAfterWrite: true });
  t.match(res.text, /\r\n\r\nlate$/);
  t.match(res.text, /\r\nConnection: close\r\n/);
});

t.test('an idle keep-alive client connection is closed after keepAliveTimeout', async (t) => {
  const up = await answeringUpstream(t, named('x'));
  const { gw, port } = await startGateway(t, { routes: [`/=http://127.0.0.1:${up.port}`], keepAliveTimeout: 0.4 });
  const client = await rawClient(port);
  client.write('GET / HTTP/1.1\r\nHost: a\r\n\r\n');
  await waitFor(() => completeResponses(Buffer.concat(client.chunks)) === 1);
  const started = Date.now();
  await once(client, 'end');
  const idle = Date.now() - started;
  t.ok(idle >= 300 && idle < 1500, `closed after ${idle} ms idle`);
  t.equal(client.text().match(/HTTP\/1\.1 408/), null, 'no 408 for an idle connection');
  client.destroy();
  await waitFor(() => gw.stats().connections === 0);
});

t.test('keepAliveRequests caps the requests on one client connection', async (t) => {
  const up = await answeringUpstream(t, named('x'));
  const { port } = await startGateway(t, { routes: [`/=http://127.0.0.1:${up.port}`], keepAliveRequests: 3 });
  const client = await rawClient(port);
  client.write('GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n');
  await once(client, 'end');
  t.equal(completeResponses(Buffer.concat(client.chunks)), 3);
  t.equal(client.text().match(/Connection: close/g)?.length, 1, 'the third response says close');
  client.destroy();
});

t.test('upstream pool: capped per address, idle connections time out, upstream Connection: close is honoured', async (t) => {
  let open = 0;
  const up = await answeringUpstream(t, (head, socket) => {
    const path = /^GET (\S+)/.exec(head)![1];
    setTimeout(() => socket.write(path === '/close' ? 'HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\nc' : named('k')), 30);
  });
  const server = net.createServer();
  void server;
  const { gw, port } = await startGateway(t, { routes: [`/=http://127.0.0.1:${up.port}`], upstreamKeepAlive: 2, upstreamIdleTimeout: 0.5 });
  // 4 concurrent clients: 4 upstream connections, only 2 stay pooled
  await Promise.all([1, 2, 3, 4].map(() => rawExchange(port, 'GET / HTTP/1.1\r\nHost: a\r\n\r\n')));
  t.equal(up.received.length, 4);
  await waitFor(() => gw.pool.idleCount === 2, 2000, 'two idle');
  const openNow = () => up.sockets.filter((s) => !s.destroyed && s.readable).length;
  await waitFor(() => openNow() === 2, 2000, 'the others closed');
  open = openNow();
  t.equal(open, 2);
  await waitFor(() => gw.pool.idleCount === 0 && openNow() === 0, 3000, 'idle timeout closed them');
  // Connection: close from the upstream: that connection is not reused
  await rawExchange(port, 'GET /close HTTP/1.1\r\nHost: a\r\n\r\n');
  t.equal(gw.pool.idleCount, 0);
});

t.test('a connection is never reused after an incomplete or failed exchange', async (t) => {
  const up = await answeringUpstream(t, (head, socket) => {
    const path = /^GET (\S+)/.exec(head)![1];
    if (path === '/until-close') socket.write('HTTP/1.1 200 OK\r\n\r\nbody then FIN');
    else if (path === '/extra') socket.write(named('e') + 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nextra');
    // The start of a second response behind a chunked one and behind a 204, in the same write: no head follows.
    else if (path === '/chunked-extra') socket.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\nHTTP/1.1 2');
    else if (path === '/204-extra') socket.write('HTTP/1.1 204 No Content\r\n\r\nHTTP/1.');
    else socket.write(named('ok'));
    if (path === '/until-close') socket.end();
  });
  const { gw, port } = await startGateway(t, { routes: [`/=http://127.0.0.1:${up.port}`] });
  await rawExchange(port, 'GET /until-close HTTP/1.1\r\nHost: a\r\n\r\n', { untilClose: true });
  t.equal(gw.pool.idleCount, 0, 'read-until-close body: not pooled');
  const extra = await rawExchange(port, 'GET /extra HTTP/1.1\r\nHost: a\r\n\r\n');
  t.notMatch(extra.text, /extra/, 'unsolicited bytes never reach the client');
  await new Promise((r) => setTimeout(r, 50));
  t.equal(gw.pool.idleCount, 0, 'unsolicited response: not pooled');
  for (const path of ['/chunked-extra', '/204-extra']) {
    const answer = await rawExchange(port, `GET ${path} HTTP/1.1\r\nHost: a\r\n\r\n`);
    t.match(answer.text, /^HTTP\/1\.1 20[04] /, `${path}: the response is relayed`);
    await new Promise((r) => setTimeout(r, 50));
    t.equal(gw.pool.idleCount, 0, `${path}: the start of an unsolicited response after it: not pooled`);
  }
  await rawExchange(port, 'GET /fine HTTP/1.1\r\nHost: a\r\n\r\n');
  await waitFor(() => gw.pool.idleCount === 1);
  t.pass('a clean exchange is pooled');
});

t.test('a bodiless idempotent request on a pooled connection the upstream just closed is retried once', async (t) => {
  // Each upstream connection answers one request, then drops the next without a word:
  // the race where an idle keep-alive connection is closed as a request is sent.
  const up = await rawUpstream(t, (socket) => {
    let n = 0;
    let buf = '';
    socket.on('data', (c) => {
      buf += c.toString('latin1');
      while (buf.includes('\r\n\r\n')) {
        buf = buf.slice(buf.indexOf('\r\n\r\n') + 4);
        if (n++ === 0) socket.write(named('fresh'));
        else socket.destroy();
      }
    });
  });
  const { port } = await startGateway(t, { routes: [`/=http://127.0.0.1:${up.port}`] });
  const first = await rawExchange(port, 'GET / HTTP/1.1\r\nHost: a\r\n\r\n');
  t.match(first.text, /fresh$/);
  const second = await rawExchange(port, 'GET / HTTP/1.1\r\nHost: a\r\n\r\n');
  t.match(second.text, /^HTTP\/1\.1 200 OK\r\n[\s\S]*fresh$/, 'GET retried on a fresh connection');
  t.equal(up.received.length, 2);
  // a POST with a body is not replayed
  const post = await rawExchange(port, 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi');
  t.match(post.text, /^HTTP\/1\.1 502 Bad Gateway\r\n/, 'POST is not retried');
});

t.test('socket.io style: polling requests, then an upgrade on the same connection', async (t) => {
  const echo = await wsEcho(t);
  echo.server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    res.setHeader('Content-Type', 'text/plain');
    res.end(`poll ${req.url}`);
  });
  const { gw, port } = await startGateway(t, { routes: [`/socket.io/=http://127.0.0.1:${echo.port}`] });
  const client = await rawClient(port);
  client.write('GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: a\r\n\r\n');
  await waitFor(() => completeResponses(Buffer.concat(client.chunks)) === 1);
  client.write('POST /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n40');
  await waitFor(() => completeResponses(Buffer.concat(client.chunks)) === 2);
  t.match(client.text(), /poll \/socket\.io\/\?EIO=4&transport=polling/);
  // now upgrade the very same TCP connection, with ws's client on top of it
  const ws = new WebSocket(`ws://127.0.0.1:${port}/socket.io/?EIO=4&transport=websocket`, {
    createConnection: () => {
      client.removeAllListeners('data');
      return client;
    },
  });
  await once(ws, 'open');
  const got = new Promise<string>((r) => ws.once('message', (d) => r(d.toString())));
  ws.send('2probe');
  t.equal(await got, '2probe');
  t.equal(gw.stats().totalConnections, 1, 'one TCP connection for polling and the upgrade');
  t.equal(gw.stats().tunnels, 1);
  ws.terminate();
});

t.test('a bad request pipelined behind a good one: the good one is answered, then 400 and close', async (t) => {
  const up = await answeringUpstream(t, named('good'));
  const { port } = await startGateway(t, { routes: [`/=http://127.0.0.1:${up.port}`] });
  const res = await rawExchange(port, 'GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n', { untilClose: true });
  t.match(res.text, /^HTTP\/1\.1 200 OK\r\n[\s\S]*\r\n\r\ngoodHTTP\/1\.1 400 Bad Request\r\n/);
  t.ok(res.closed);
  t.equal(up.text().match(/GET/g)?.length, 1, 'the bad request never reached the upstream');
});

t.test('request body stalls past sendTimeout: the upstream request is aborted', async (t) => {
  let upstreamClosed = false;
  const up = await rawUpstream(t, (socket) => socket.on('end', () => (upstreamClosed = true)));
  const { port } = await startGateway(t, { routes: [`/=http://127.0.0.1:${up.port}`], sendTimeout: 0.4, readTimeout: 5 });
  const client = await rawClient(port);
  client.write('POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nonly some');
  const started = Date.now();
  await once(client, 'end');
  const elapsed = Date.now() - started;
  t.ok(elapsed >= 350 && elapsed < 2000, `cut after ${elapsed} ms`);
  client.destroy();
  await waitFor(() => upstreamClosed);
  t.match(up.text(), /only some$/);
});

t.test('an upstream that stalls mid-body past readTimeout: the client is cut', async (t) => {
  const up = await answeringUpstream(t, (_h, socket) => socket.write('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial'));
  const { port } = await startGateway(t, { routes: [`/=http://127.0.0.1:${up.port}`], readTimeout: 0.4 });
  const res = await rawExchange(port, 'GET / HTTP/1.1\r\nHost: a\r\n\r\n', { untilClose: true, timeoutMs: 3000 });
  t.ok(res.closed, 'closed');
  t.match(res.text, /\r\n\r\npartial$/, 'no fake completion');
});
