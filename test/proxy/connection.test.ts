// The client side of a connection: reading the head under its limits, the
// error answers, Host and path handling, and routing end to end.
import t from 'tap';
import { spawn } from 'node:child_process';
import net from 'node:net';
import { once } from 'node:events';
import { answeringUpstream, rawClient, rawExchange, rawUpstream, startGateway, switchingProtocols, upgradeRequest, waitFor } from '../helpers/net.js';

const OK = 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok';

function statusOf(text: string): number {
  return Number(/^HTTP\/1\.1 (\d{3}) /.exec(text)?.[1] ?? 0);
}

t.test('error answers: each is short, has Connection: close and closes the connection', async (t) => {
  const upstream = await answeringUpstream(t, OK);
  const { port } = await startGateway(t, {
    routes: [`/ok/=http://127.0.0.1:${upstream.port}`],
    maxHeaders: 10,
    maxHeadSize: 1024,
    headTimeout: 0.3,
  });
  const cases: Array<[number, string | string[], string]> = [
    [400, 'GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n', 'NUL in a header value'],
    [400, 'GET / HTTP/1.1\r\nHost: a\r\nX : b\r\n\r\n', 'space before the colon'],
    [400, 'GET / HTTP/1.1\nHost: a\n\n', 'bare LF'],
    [400, 'GET /ok/ HTTP/1.1\r\n\r\n', 'HTTP/1.1 without Host'],
    [400, 'GET /ok/ HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n', 'two Host fields'],
    [400, 'GET /ok/../../etc HTTP/1.1\r\nHost: a\r\n\r\n', 'a path above /'],
    [400, 'GET /ok/%E0%A4%A HTTP/1.1\r\nHost: a\r\n\r\n', 'a malformed escape'],
    [400, 'POST /ok/ HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG', 'CL and TE together'],
    [400, 'POST /ok/ HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello', 'two Content-Lengths'],
    [400, 'GARBAGE\r\n\r\n', 'not HTTP'],
    [404, 'GET /nope HTTP/1.1\r\nHost: a\r\n\r\n', 'no location'],
    [431, `GET /ok/ HTTP/1.1\r\nHost: a\r\nX: ${'a'.repeat(2000)}\r\n\r\n`, 'head over maxHeadSize'],
    [431, `GET /ok/ HTTP/1.1\r\nHost: a\r\n${Array.from({ length: 11 }, (_, i) => `H${i}: v\r\n`).join('')}\r\n`, 'more than maxHeaders'],
    [408, 'GET /ok/ HTTP/1.1\r\nHost: a\r\n', 'head never finished'],
  ];
  for (const [status, request, why] of cases) {
    const res = await rawExchange(port, request, { timeoutMs: 3000 });
    t.equal(statusOf(res.text), status, `${status} for ${why}`);
    t.match(res.text, /\r\nConnection: close\r\n/, `${why}: Connection: close`);
    t.match(res.text, /\r\nContent-Length: \d+\r\nConnection: close\r\n\r\n\d{3} [A-Za-z ]+\n$/, `${why}: short body`);
  }
  t.equal(upstream.received.length, 0, 'no bad request reached the upstream');
});

t.test('a head of exactly maxHeaders fields passes, one more is 431', async (t) => {
  const upstream = await answeringUpstream(t, OK);
  const { port } = await startGateway(t, { routes: [`/=http://127.0.0.1:${upstream.port}`], maxHeaders: 100 });
  const fields = (n: number) => Array.from({ length: n }, (_, i) => `H${i}: v\r\n`).join('');
  const ok = await rawExchange(port, `GET / HTTP/1.1\r\nHost: a\r\n${fields(99)}\r\n`);
  t.equal(statusOf(ok.text), 200, '100 fields');
  const over = await rawExchange(port, `GET / HTTP/1.1\r\nHost: a\r\n${fields(100)}\r\n`);
  t.equal(statusOf(over.text), 431, '101 fields');
});

t.test('a request head split at every byte offset is read the same', async (t) => {
  const upstream = await answeringUpstream(t, OK);
  const { port } = await startGateway(t, { routes: [`/=http://127.0.0.1:${upstream.port}`] });
  const request = 'GET /split/path?q=1 HTTP/1.1\r\nHost: split.test\r\nUser-Agent: splitter\r\nAccept: */*\r\n\r\n';
  for (let i = 1; i < request.length; i++) {
    const client = await rawClient(port);
    client.setNoDelay(true);
    client.write(request.slice(0, i));
    await new Promise((r) => setTimeout(r, 2));
    client.write(request.slice(i));
    await waitFor(() => client.text().endsWith('\r\n\r\nok'), 3000, `response for split ${i}`);
    client.destroy();
    if (statusOf(client.text()) !== 200) t.fail(`split at ${i}: ${client.text().slice(0, 40)}`);
  }
  const all = upstream.received.map((_, n) => upstream.text(n)).join('');
  const heads = all.split('\r\n\r\n').filter((h) => h !== '');
  t.equal(heads.length, request.length - 1, 'one request upstream per split');
  const first = heads[0];
  for (let n = 0; n < heads.length; n++) {
    if (heads[n] !== first) t.fail(`split ${n + 1} sent different bytes upstream`);
  }
  t.match(first, /^GET \/split\/path\?q=1 HTTP\/1\.1\r\nHost: split\.test\r\nUser-Agent: splitter\r\nAccept: \*\/\*\r\n/);
});

t.test('an upgrade head split at every byte offset still becomes a tunnel', async (t) => {
  const upstream = await answeringUpstream(t, (_head, socket) => {
    socket.write(switchingProtocols());
    socket.on('data', (c) => {
      if (c.toString('latin1').endsWith('PING')) socket.write('PONG');
    });
  });
  const { port } = await startGateway(t, { routes: [`/=http://127.0.0.1:${upstream.port}`] });
  const request = upgradeRequest('/ws');
  for (let i = 1; i < request.length; i += 3) {
    const client = await rawClient(port);
    client.setNoDelay(true);
    client.write(request.slice(0, i));
    await new Promise((r) => setTimeout(r, 2));
    client.write(request.slice(i));
    await waitFor(() => client.text().includes('\r\n\r\n'), 3000, `101 for split ${i}`);
    client.write('PING');
    await waitFor(() => client.text().endsWith('PONG'), 3000, `tunnel for split ${i}`);
    client.destroy();
  }
  t.pass('every split became a working tunnel');
});

t.test('slowloris: a head trickled byte by byte gets 408 at the head timeout', async (t) => {
  const upstream = await rawUpstream(t);
  const { port } = await startGateway(t, { routes: [`/=http://127.0.0.1:${upstream.port}`], headTimeout: 0.5 });
  const client = await rawClient(port);
  const started = Date.now();
  const request = 'GET / HTTP/1.1\r\nHost: a\r\nX-Slow: ' + 'z'.repeat(100);
  let i = 0;
  const trickle = setInterval(() => {
    if (!client.destroyed && client.writable && i < request.length) client.write(request[i++]);
  }, 50);
  await once(client, 'end');
  clearInterval(trickle);
  const elapsed = Date.now() - started;
  t.equal(statusOf(client.text()), 408);
  t.ok(elapsed >= 450 && elapsed < 1500, `408 after ${elapsed} ms`);
  t.equal(upstream.received.length, 0);
  client.destroy();
});

t.test('routing by Host: exact, wildcard, default; exact location before longest prefix', async (t) => {
  const names = ['default', 'exact', 'wild', 'prefix-long', 'exact-loc'];
  const ups = await Promise.all(names.map((name) => answeringUpstream(t, `HTTP/1.1 200 OK\r\nContent-Length: ${name.length}\r\n\r\n${name}`)));
  const [def, exact, wild, longer, exactLoc] = ups;
  const { port } = await startGateway(t, {
    servers: [
      { default: true, locations: [{ path: '/', upstream: `http://127.0.0.1:${def.port}` }] },
      { names: ['api.example.com'], locations: [{ path: '/', upstream: `http://127.0.0.1:${exact.port}` }] },
      {
        names: ['*.example.com'],
        locations: [
          { path: '/', upstream: `http://127.0.0.1:${wild.port}` },
          { path: '/app/v2/', upstream: `http://127.0.0.1:${longer.port}` },
          { path: '= /app/v2/health', upstream: `http://127.0.0.1:${exactLoc.port}` },
        ],
      },
    ],
  });
  const get = async (host: string, path: string) => {
    const res = await rawExchange(port, `GET ${path} HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
    return res.text.slice(res.text.indexOf('\r\n\r\n') + 4);
  };
  t.equal(await get('other.test', '/x'), 'default');
  t.equal(await get('API.Example.COM:8000', '/x'), 'exact', 'case and port ignored');
  t.equal(await get('www.example.com', '/x'), 'wild');
  t.equal(await get('example.com', '/x'), 'default', '*.example.com does not match example.com');
  t.equal(await get('a.b.example.com', '/app/v2/x'), 'prefix-long');
  t.equal(await get('a.example.com', '/app/v2/health'), 'exact-loc');
  t.equal(await get('a.example.com', '/app/v2/health/more'), 'prefix-long');
  t.equal(await get('a.example.com', '/app/%76%32/x'), 'prefix-long', 'routes on the decoded unreserved path');
  t.equal(await get('a.example.com', '/app/v3/../v2/x'), 'prefix-long', 'routes on the resolved path');
});

t.test('proxy_pass URI rewrite: with a path the prefix is replaced, without one the path passes', async (t) => {
  const withPath = await answeringUpstream(t, OK);
  const withoutPath = await answeringUpstream(t, OK);
  const { port } = await startGateway(t, {
    routes: [`/ws/=http://127.0.0.1:${withPath.port}/`, `/api/=http://127.0.0.1:${withoutPath.port}`],
  });
  await rawExchange(port, 'GET /ws/chat?room=1 HTTP/1.1\r\nHost: a\r\n\r\n');
  await rawExchange(port, 'GET /api/users/./7//x HTTP/1.1\r\nHost: a\r\n\r\n');
  t.match(withPath.text(), /^GET \/chat\?room=1 HTTP\/1\.1\r\n/);
  t.match(withoutPath.text(), /^GET \/api\/users\/7\/x HTTP\/1\.1\r\n/, 'normalised path goes upstream');
});

t.test('a client that leaves mid-head gets nothing and frees its connection', async (t) => {
  const upstream = await rawUpstream(t);
  const { gw, port } = await startGateway(t, { routes: [`/=http://127.0.0.1:${upstream.port}`] });
  const client = await rawClient(port);
  client.write('GET / HTTP/1.1\r\nHo');
  await waitFor(() => gw.stats().connections === 1);
  client.end();
  await waitFor(() => gw.stats().connections === 0, 3000);
  t.equal(client.text(), '');
  client.destroy();
});

t.test('upstream connect timeout is a 504', async (t) => {
  // A listener with a full accept queue that never accepts: the SYN is dropped and connect hangs.
  const py = spawn('python3', ['-c', 'import socket,time\ns=socket.socket()\ns.bind(("127.0.0.1",0))\ns.listen(0)\nprint(s.getsockname()[1],flush=True)\ntime.sleep(30)'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  t.teardown(() => py.kill());
  const [line] = (await once(py.stdout!, 'data')) as [Buffer];
  const blackhole = Number(line.toString().trim());
  const fillers: net.Socket[] = [];
  for (let i = 0; i < 4; i++) {
    const s = net.connect(blackhole, '127.0.0.1');
    s.on('error', () => {});
    fillers.push(s);
  }
  t.teardown(() => fillers.forEach((s) => s.destroy()));
  await new Promise((r) => setTimeout(r, 200));
  const { port } = await startGateway(t, { routes: [`/=http://127.0.0.1:${blackhole}`], connectTimeout: 0.5 });
  const started = Date.now();
  const res = await rawExchange(port, 'GET / HTTP/1.1\r\nHost: a\r\n\r\n', { timeoutMs: 5000 });
  const elapsed = Date.now() - started;
  t.equal(statusOf(res.text), 504);
  t.ok(elapsed >= 450 && elapsed < 2500, `504 after ${elapsed} ms`);
});

t.test('upstream silent past readTimeout is a 504; closing without an answer is a 502', async (t) => {
  const silent = await rawUpstream(t);
  const closer = await rawUpstream(t, (socket) => socket.once('data', () => socket.end()));
  const garbage = await rawUpstream(t, (socket) => socket.once('data', () => socket.write('SSH-2.0-OpenSSH\r\n\r\n')));
  const { port } = await startGateway(t, {
    routes: [`/silent/=http://127.0.0.1:${silent.port}`, `/closer/=http://127.0.0.1:${closer.port}`, `/garbage/=http://127.0.0.1:${garbage.port}`],
    readTimeout: 0.4,
  });
  const started = Date.now();
  const a = await rawExchange(port, 'GET /silent/ HTTP/1.1\r\nHost: a\r\n\r\n');
  t.equal(statusOf(a.text), 504);
  t.ok(Date.now() - started >= 350);
  const b = await rawExchange(port, 'GET /closer/ HTTP/1.1\r\nHost: a\r\n\r\n');
  t.equal(statusOf(b.text), 502);
  const c = await rawExchange(port, upgradeRequest('/garbage/'));
  t.equal(statusOf(c.text), 502);
});

t.test('no connection error reaches the process: a thousand resets mid-request', async (t) => {
  const upstream = await answeringUpstream(t, OK);
  const { gw, port } = await startGateway(t, { routes: [`/=http://127.0.0.1:${upstream.port}`] });
  let uncaught = 0;
  const onUncaught = () => uncaught++;
  process.on('uncaughtException', onUncaught);
  t.teardown(() => process.removeListener('uncaughtException', onUncaught));
  const pieces = ['GET / HT', 'GET / HTTP/1.1\r\nHost: a\r\n\r\n', upgradeRequest('/'), 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nabc'];
  for (let round = 0; round < 250; round++) {
    await Promise.all(
      pieces.map(async (piece) => {
        const client = await rawClient(port);
        client.write(piece);
        await new Promise((r) => setImmediate(r));
        client.resetAndDestroy();
      }),
    );
  }
  await waitFor(() => gw.stats().connections === 0, 10000, 'all connections closed');
  t.equal(uncaught, 0);
  const res = await rawExchange(port, 'GET / HTTP/1.1\r\nHost: a\r\n\r\n');
  t.equal(statusOf(res.text), 200, 'still serving');
});
