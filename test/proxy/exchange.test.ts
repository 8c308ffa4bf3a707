// Plain HTTP requests through the gateway: bodies both ways, framing,
// interim responses, header rewrite, and failures mid-response.
import t from 'tap';
import { Readable } from 'node:stream';
import { request as undiciRequest, Agent } from 'undici';
import { answeringUpstream, httpUpstream, rawClient, rawExchange, randomBytes, sha256, startGateway, waitFor } from '../helpers/net.js';

type Tap = { teardown(fn: () => unknown): void };

function dispatcher(t: Tap) {
  const agent = new Agent({ keepAliveTimeout: 10, pipelining: 0 });
  t.teardown(() => agent.close());
  return agent;
}

t.test('GET through the gateway with undici: status, headers and body relayed', async (t) => {
  const port = await httpUpstream(t, (req, res) => {
    res.setHeader('X-Upstream', 'yes');
    res.setHeader('Set-Cookie', ['a=1', 'b=2']);
    res.end(`you asked for ${req.url}`);
  });
  const { port: gwPort } = await startGateway(t, { routes: [`/=http://127.0.0.1:${port}`] });
  const res = await undiciRequest(`http://127.0.0.1:${gwPort}/hello?x=1`, { dispatcher: dispatcher(t) });
  t.equal(res.statusCode, 200);
  t.equal(res.headers['x-upstream'], 'yes');
  t.same(res.headers['set-cookie'], ['a=1', 'b=2']);
  t.equal(res.headers.connection, 'close');
  t.equal(await res.body.text(), 'you asked for /hello?x=1');
});

t.test('POST bodies stream upstream intact, with Content-Length and chunked', async (t) => {
  const port = await httpUpstream(t, async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    res.setHeader('X-Framing', req.headers['transfer-encoding'] ?? `length ${req.headers['content-length']}`);
    res.end(sha256(chunks));
  });
  const { port: gwPort } = await startGateway(t, { routes: [`/=http://127.0.0.1:${port}`] });
  const payload = randomBytes(5 * 1024 * 1024 + 3);
  const withLength = await undiciRequest(`http://127.0.0.1:${gwPort}/up`, { method: 'POST', body: payload, dispatcher: dispatcher(t) });
  t.equal(withLength.headers['x-framing'], `length ${payload.length}`);
  t.equal(await withLength.body.text(), sha256(payload));
  async function* pieces() {
    for (let i = 0; i < payload.length; i += 100_000) yield payload.subarray(i, i + 100_000);
  }
  const chunked = await undiciRequest(`http://127.0.0.1:${gwPort}/up`, { method: 'POST', body: Readable.from(pieces()), dispatcher: dispatcher(t) });
  t.equal(chunked.headers['x-framing'], 'chunked');
  t.equal(await chunked.body.text(), sha256(payload));
});

t.test('response bodies: Content-Length, chunked and read-until-close all arrive whole', async (t) => {
  const big = randomBytes(3 * 1024 * 1024);
  const port = await httpUpstream(t, (req, res) => {
    if (req.url === '/length') {
      res.setHeader('Content-Length', big.length);
      res.end(big);
    } else {
      res.write(big.subarray(0, 1000));
      setTimeout(() => res.end(big.subarray(1000)), 20);
    }
  });
  const close = await answeringUpstream(t, (_head, socket) => {
    socket.write('HTTP/1.1 200 OK\r\n\r\n');
    socket.end(big);
  });
  const { port: gwPort } = await startGateway(t, { routes: [`/close=http://127.0.0.1:${close.port}`, `/=http://127.0.0.1:${port}`] });
  for (const path of ['/length', '/chunked', '/close']) {
    const res = await undiciRequest(`http://127.0.0.1:${gwPort}${path}`, { dispatcher: dispatcher(t) });
    const body = Buffer.from(await res.body.arrayBuffer());
    t.equal(sha256(body), sha256(big), `${path} body`);
  }
});

t.test('HEAD, 204 and 304 carry no body; HEAD keeps its Content-Length', async (t) => {
  const port = await httpUpstream(t, (req, res) => {
    if (req.url === '/204') {
      res.statusCode = 204;
      res.end();
    } else if (req.url === '/304') {
      res.statusCode = 304;
      res.end();
    } else {
      res.setHeader('Content-Length', 11);
      res.end(req.method === 'HEAD' ? undefined : 'hello world');
    }
  });
  const { port: gwPort } = await startGateway(t, { routes: [`/=http://127.0.0.1:${port}`] });
  const head = await rawExchange(gwPort, 'HEAD / HTTP/1.1\r\nHost: a\r\n\r\n');
  t.match(head.text, /^HTTP\/1\.1 200 OK\r\n/);
  t.match(head.text, /\r\nContent-Length: 11\r\n/);
  t.ok(head.text.endsWith('\r\n\r\n'), 'no body after a HEAD response');
  for (const status of ['204', '304']) {
    const res = await rawExchange(gwPort, `GET /${status} HTTP/1.1\r\nHost: a\r\n\r\n`);
    t.match(res.text, new RegExp(`^HTTP/1\\.1 ${status} `));
    t.ok(res.text.endsWith('\r\n\r\n'), `no body after ${status}`);
  }
});

t.test('Expect: 100-continue and 103 Early Hints are relayed before the final response', async (t) => {
  const port = await httpUpstream(t, (req, res) => {
    res.writeEarlyHints({ link: '</style.css>; rel=preload; as=style' });
    req.resume();
    req.on('end', () => res.end('done'));
  });
  const { port: gwPort } = await startGateway(t, { routes: [`/=http://127.0.0.1:${port}`] });
  const client = await rawClient(gwPort);
  client.write('POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n');
  await waitFor(() => client.text().includes('100 Continue'), 3000, '100 Continue');
  client.write('body');
  await waitFor(() => client.text().endsWith('\r\n\r\ndone'), 5000, 'the final response');
  const text = client.text();
  t.match(text, /^HTTP\/1\.1 100 Continue\r\n\r\n/);
  t.match(text, /HTTP\/1\.1 103 Early Hints\r\nlink: <\/style\.css>; rel=preload; as=style\r\n\r\n/i);
  t.match(text, /HTTP\/1\.1 200 OK\r\n[\s\S]*\r\n\r\ndone$/);
  client.destroy();
});

t.test('request header rewrite: hop-by-hop stripped, forwarding headers replaced (untrusted peer), location headers applied', async (t) => {
  const upstream = await answeringUpstream(t, 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n');
  const { port } = await startGateway(t, {
    trustedProxies: [],
    servers: [
      {
        locations: [
          {
            path: '/',
            upstream: `http://127.0.0.1:${upstream.port}`,
            setHeaders: { 'X-Api-Key': 'secret', 'User-Agent': 'wsgate-test' },
            removeHeaders: ['Cookie'],
          },
        ],
      },
    ],
  });
  await rawExchange(
    port,
    'GET /p HTTP/1.1\r\nHost: Public.Example:8443\r\nConnection: keep-alive, X-Private\r\nKeep-Alive: timeout=5\r\n' +
      'Proxy-Connection: keep-alive\r\nTE: trailers\r\nTrailer: X\r\nX-Private: drop me\r\nX-Keep: kept\r\n' +
      'X-Forwarded-For: 203.0.113.7\r\nX-Real-IP: 6.6.6.6\r\nX-Forwarded-Proto: https\r\nCookie: sid=1\r\nUser-Agent: curl\r\n\r\n',
  );
  const sent = upstream.text();
  t.match(sent, /^GET \/p HTTP\/1\.1\r\nHost: Public\.Example:8443\r\n/, 'Host as the client sent it');
  for (const gone of ['Keep-Alive', 'Proxy-Connection', 'TE:', 'Trailer', 'X-Private', 'Cookie', 'User-Agent: curl', '6.6.6.6', 'X-Forwarded-Proto: https', '203.0.113.7']) {
    t.notMatch(sent, new RegExp(`\\r\\n${gone}`, 'i'), `${gone} removed`);
  }
  t.match(sent, /\r\nX-Keep: kept\r\n/);
  t.match(sent, /\r\nX-Forwarded-For: 127\.0\.0\.1\r\n/, 'X-Forwarded-For replaced by the peer address');
  t.match(sent, /\r\nX-Forwarded-Proto: http\r\n/);
  t.match(sent, /\r\nX-Forwarded-Host: Public\.Example:8443\r\n/);
  t.match(sent, /\r\nX-Real-IP: 127\.0\.0\.1\r\n/);
  t.match(sent, /\r\nX-Api-Key: secret\r\n/);
  t.match(sent, /\r\nUser-Agent: wsgate-test\r\n/);
  t.match(sent, /\r\nConnection: keep-alive\r\n\r\n$/, 'wsgate asks to keep the upstream connection');
  t.equal(sent.match(/\r\nConnection:/gi)?.length, 1);
});

t.test('Connection cannot nominate Host or Content-Length away', async (t) => {
  const upstream = await answeringUpstream(t, 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n');
  const { port } = await startGateway(t, { routes: [`/=http://127.0.0.1:${upstream.port}`] });
  await rawExchange(port, 'POST / HTTP/1.1\r\nHost: a\r\nConnection: Host, Content-Length\r\nContent-Length: 3\r\n\r\nabc');
  await waitFor(() => upstream.text().endsWith('abc'));
  t.match(upstream.text(), /\r\nContent-Length: 3\r\n/);
  t.match(upstream.text(), /^POST \/ HTTP\/1\.1\r\nHost: a\r\n/);
});

t.test('an HTTP/1.0 client gets an unframed body and a close', async (t) => {
  const port = await httpUpstream(t, (_req, res) => {
    res.write('part one, ');
    res.end('part two');
  });
  const { port: gwPort } = await startGateway(t, { routes: [`/=http://127.0.0.1:${port}`] });
  const res = await rawExchange(gwPort, 'GET / HTTP/1.0\r\n\r\n');
  t.match(res.text, /^HTTP\/1\.1 200 OK\r\n/);
  t.notMatch(res.text, /Transfer-Encoding/i);
  t.ok(res.text.endsWith('\r\n\r\npart one, part two'));
});

t.test('an upstream that dies mid-response: the client is cut, never handed a complete-looking response', async (t) => {
  const upstream = await answeringUpstream(t, (_head, socket) => {
    socket.write('HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n' + 'x'.repeat(1000));
    setTimeout(() => socket.destroy(), 50);
  });
  const chunkedUpstream = await answeringUpstream(t, (_head, socket) => {
    socket.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n');
    setTimeout(() => socket.end(), 50);
  });
  const { port } = await startGateway(t, { routes: [`/c=http://127.0.0.1:${chunkedUpstream.port}`, `/=http://127.0.0.1:${upstream.port}`] });
  const res = await undiciRequest(`http://127.0.0.1:${port}/`, { dispatcher: dispatcher(t) });
  t.equal(res.statusCode, 200);
  await t.rejects(res.body.text(), 'body read fails: the response was cut');
  const raw = await rawExchange(port, 'GET /c HTTP/1.1\r\nHost: a\r\n\r\n');
  t.match(raw.text, /5\r\nhello\r\n$/);
  t.notMatch(raw.text, /0\r\n\r\n$/, 'no fake last chunk');
});

t.test('a client that vanishes mid-response frees the upstream connection', async (t) => {
  let upstreamClosed = false;
  const upstream = await answeringUpstream(t, (_head, socket) => {
    socket.write('HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n');
    const timer = setInterval(() => socket.write(Buffer.alloc(16384)), 5);
    socket.on('close', () => {
      clearInterval(timer);
      upstreamClosed = true;
    });
  });
  const { gw, port } = await startGateway(t, { routes: [`/=http://127.0.0.1:${upstream.port}`] });
  const client = await rawClient(port);
  client.write('GET / HTTP/1.1\r\nHost: a\r\n\r\n');
  await waitFor(() => client.text().length > 50000);
  client.resetAndDestroy();
  await waitFor(() => upstreamClosed, 3000, 'upstream closed');
  await waitFor(() => gw.stats().connections === 0);
  t.pass('both sides closed');
});
