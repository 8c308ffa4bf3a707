// lib/core/guard.ts: no exception from a socket listener reaches the process.
// For every guarded listener (connection, upstream, accepted-socket reads,
// tunnel; every event each listens to), a fault is injected that makes it
// throw once while a workload runs that fires every one of them; then the
// gateway must still serve the next client, count the error, and log it with
// its stack. A listener the workload never reached fails the test: it proves
// nothing about that listener.
import t from 'tap';
import net from 'node:net';
import { once } from 'node:events';
import { createGateway, type Gateway } from '../../lib/index.js';
import { GUARDED, injectListenerFault } from '../../lib/core/guard.js';
import { probedFastPaths } from '../helpers/fast-paths.js';
import { headEnd, rawExchange, switchingProtocols, upgradeRequest, waitFor } from '../helpers/net.js';

// Past what the kernel buffers take without backpressure (send buffers autotune up to
// net.ipv4.tcp_wmem max, 4 MiB here): the drain listeners must fire.
const BIG = 8 * 1024 * 1024;

/** A raw upstream whose behaviour is picked by the request path. */
async function scriptedUpstream(t: { teardown(fn: () => unknown): void }): Promise<number> {
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    socket.on('error', () => {});
    let buffered = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      for (;;) {
        const end = headEnd(buffered.toString('latin1'));
        if (end < 0) return;
        const head = buffered.subarray(0, end).toString('latin1');
        const path = head.split(' ')[1];
        const length = Number(/content-length: *(\d+)/i.exec(head)?.[1] ?? 0);
        if (path === '/upload') {
          // Reads nothing for a while: the proxy's writes to this socket back up.
          socket.removeListener('data', onData);
          socket.pause();
          let got = buffered.length - end;
          setTimeout(() => {
            socket.on('data', (d: Buffer) => {
              got += d.length;
              if (got >= length) socket.end('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok');
            });
            socket.resume();
          }, 300);
          return;
        }
        if (buffered.length < end + length) return;
        buffered = buffered.subarray(end + length);
        if (path === '/page' || path === '/ok') socket.write('HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\npage');
        else if (path === '/big') socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${BIG}\r\n\r\n`), socket.write(Buffer.alloc(BIG, 0x62));
        else if (path === '/reset') socket.resetAndDestroy();
        else if (path === '/until-close') socket.end('HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nread until close');
        else if (path === '/ws/echo') {
          socket.removeListener('data', onData);
          socket.write(switchingProtocols());
          // Echo, after a pause long enough for every buffer on the way to fill.
          socket.pause();
          setTimeout(() => {
            if (buffered.length > 0) socket.write(buffered);
            socket.pipe(socket);
          }, 300);
          return;
        } else if (path === '/ws/reset') {
          socket.removeListener('data', onData);
          socket.write(switchingProtocols());
          setTimeout(() => socket.resetAndDestroy(), 50);
          return;
        } else socket.write('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n');
      }
    };
    socket.on('data', onData);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => server.close());
  return (server.address() as net.AddressInfo).port;
}

/** Resolves (never rejects) once `socket` closed, or after `ms`. */
function settled(socket: net.Socket, ms = 3000): Promise<void> {
  return new Promise((resolve) => {
    if (socket.destroyed) return resolve();
    const timer = setTimeout(() => {
      socket.destroy();
      resolve();
    }, ms);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

async function client(port: number, bytes: string | Buffer): Promise<net.Socket> {
  const socket = net.connect(port, '127.0.0.1');
  socket.on('error', () => {});
  await once(socket, 'connect').catch(() => {});
  socket.write(bytes);
  return socket;
}

/** Sends `request`, then resets the connection as soon as the first bytes come back (or after 3 s, or at its close). */
async function resetOnFirstBytes(port: number, request: string): Promise<void> {
  const s = await client(port, request);
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, 3000);
    s.once('data', () => {
      clearTimeout(timer);
      resolve();
    });
    s.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
  if (!s.destroyed) s.resetAndDestroy();
}

/** Fires every guarded listener at least once: keep-alive HTTP, backpressure both ways, resets, tunnels. */
async function workload(port: number): Promise<void> {
  const steps: Array<Promise<void>> = [];
  // Two requests on one connection (the second reuses the pooled upstream), then FIN.
  steps.push(
    (async () => {
      const s = await client(port, 'GET /page HTTP/1.1\r\nHost: a\r\n\r\n');
      await new Promise((r) => setTimeout(r, 50));
      if (!s.destroyed) s.write('GET /page HTTP/1.1\r\nHost: a\r\n\r\n');
      await new Promise((r) => setTimeout(r, 50));
      if (!s.destroyed) s.end();
      s.resume();
      await settled(s);
    })(),
  );
  // A large response to a client that reads late: the client side drains.
  steps.push(
    (async () => {
      const s = await client(port, 'GET /big HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n');
      s.pause();
      await new Promise((r) => setTimeout(r, 300));
      s.resume();
      await settled(s);
    })(),
  );
  // A large request body to an upstream that reads late: the upstream side drains.
  steps.push(
    (async () => {
      const s = await client(port, `POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: ${BIG}\r\nConnection: close\r\n\r\n`);
      if (!s.destroyed) s.write(Buffer.alloc(BIG, 0x61));
      s.resume();
      await settled(s);
    })(),
  );
  // A body read until the upstream's FIN.
  steps.push(rawExchange(port, 'GET /until-close HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n').then(() => {}, () => {}));
  // An upstream that resets; a client that resets mid-head.
  steps.push(rawExchange(port, 'GET /reset HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n').then(() => {}, () => {}));
  // A client that resets as soon as a large response starts: the gateway's writes to it
  // fail (EPIPE / ECONNRESET), an error on the connection's socket however the timing goes.
  steps.push(resetOnFirstBytes(port, 'GET /big HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n'));
  steps.push(
    (async () => {
      const s = await client(port, 'GET /page HTTP/1.1\r\nHo');
      await new Promise((r) => setTimeout(r, 50));
      s.resetAndDestroy();
    })(),
  );
  // A tunnel with backpressure, closed cleanly (FIN both ways).
  steps.push(
    (async () => {
      const s = await client(port, upgradeRequest('/ws/echo'));
      let got = 0;
      s.on('data', (d: Buffer) => (got += d.length));
      await new Promise((r) => setTimeout(r, 50));
      if (!s.destroyed) s.write(Buffer.alloc(BIG, 0x63));
      const deadline = Date.now() + 3000;
      while (got < BIG && !s.destroyed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      if (!s.destroyed) s.end();
      await settled(s);
    })(),
  );
  // A tunnel the client resets, and one the upstream resets.
  // Reset only once the tunnel is up (the 101 arrived), however slow the machine.
  steps.push(resetOnFirstBytes(port, upgradeRequest('/ws/echo')));
  steps.push(
    (async () => {
      const s = await client(port, upgradeRequest('/ws/reset'));
      s.resume();
      await settled(s);
    })(),
  );
  await Promise.all(steps);
}

async function servesNext(gw: Gateway, port: number): Promise<void> {
  const res = await rawExchange(port, 'GET /ok HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n');
  if (!/^HTTP\/1\.1 200 OK\r\n[^]*\r\n\r\npage$/.test(res.text)) throw new Error(`next request got ${JSON.stringify(res.text.slice(0, 80))}`);
  await waitFor(() => gw.stats().connections === 0, 5000, 'no connection left open');
}

const paths = await probedFastPaths();

t.test('every guarded listener fires in the workload, and the workload alone is served cleanly', async (t) => {
  const upstream = await scriptedUpstream(t);
  const gw = createGateway({ routes: [`/=http://127.0.0.1:${upstream}`], logger: { log: () => {} } });
  const { port } = await gw.listen(0, '127.0.0.1');
  t.teardown(() => gw.close({ drainMs: 0 }));
  await workload(port);
  await servesNext(gw, port);
  t.equal(gw.stats().internalErrors, 0, 'no internal error without a fault');
});

for (const where of [...GUARDED].sort()) {
  // Which read path is in use depends on the probe: 'data' events or pooled reads.
  const unused = paths.pooledReads ? where === 'upstream:data' : where === 'upstream:read' || where.startsWith('accepted:');
  t.test(`a throw in ${where} ends one connection, not the process; the next client is served`, { skip: unused && 'not used with this Node fast paths' }, async (t) => {
    const upstream = await scriptedUpstream(t);
    const lines: string[] = [];
    const gw = createGateway({ routes: [`/=http://127.0.0.1:${upstream}`], logger: { log: (level, message) => lines.push(`${level} ${message}`) } });
    const { port } = await gw.listen(0, '127.0.0.1');
    t.teardown(() => gw.close({ drainMs: 0 }));
    const disarm = injectListenerFault(where);
    try {
      // Some events hang on timing (the mid-head reset is not always seen as an error):
      // the workload runs again, up to five times, until the armed listener fired.
      for (let round = 0; round < 5 && gw.stats().internalErrors === 0; round++) await workload(port);
    } finally {
      disarm();
    }
    // Never counted means the workload never reached this listener: the test proves nothing and fails.
    await waitFor(() => gw.stats().internalErrors >= 1, 10_000, `the fault in ${where} fired and was counted`);
    t.ok(lines.some((l) => l.startsWith('error ') && l.includes(`injected fault in ${where}`) && l.includes('guard.')), 'logged at error level with its stack');
    await servesNext(gw, port);
    await gw.close({ drainMs: 0 });
    await waitFor(() => gw.stats().connections === 0, 3000, 'closed');
    await new Promise((r) => setTimeout(r, 100)); // the last sockets' events are over before the next fault is armed
  });
}
