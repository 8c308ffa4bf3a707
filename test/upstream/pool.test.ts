// The upstream keep-alive pool (lib/upstream/pool.ts), on real loopback
// connections: newest first (LIFO), capped per address, closed after an idle
// timeout on the timer wheel, retired after maxRequests, and discarded the
// moment an idle upstream speaks, closes or fails.
import t from 'tap';
import net from 'node:net';
import { UpstreamPool, type UpstreamPoolOptions } from '../../lib/upstream/pool.js';
import { dialUpstream, kOwner, type UpstreamOwner, type UpstreamSocket } from '../../lib/upstream/dialer.js';
import { InjectedFault, injectListenerFault, type Crashable } from '../../lib/core/guard.js';
import { TimerWheel } from '../../lib/core/timer-wheel.js';
import { FAST_PATHS_OFF, fastPaths, setFastPathsForTest } from '../../lib/io/node-internals.js';
import { probedFastPaths } from '../helpers/fast-paths.js';
import { rawUpstream, waitFor, type RawUpstream, type Teardown } from '../helpers/net.js';

const probed = await probedFastPaths();

/** An exchange's stand-in: it only waits for the connect. */
class Dialing implements UpstreamOwner {
  isConnected = false;
  connected(): void {
    this.isConnected = true;
  }
  received(): void {}
  upstreamEnded(): void {}
  upstreamClosed(): void {}
  upstreamFailed(): void {}
  upstreamDrained(): void {}
  crashed(): void {}
}

interface Harness {
  pool: UpstreamPool;
  wheel: TimerWheel;
  /** Moves the wheel's clock to `ms` after the start and runs what is due. */
  at(ms: number): void;
  up: RawUpstream;
  key: string;
  crashes: unknown[];
  /** `n` connected upstream sockets, as exchanges hand them back. */
  dial(n: number, home?: Crashable): Promise<UpstreamSocket[]>;
}

const OPTIONS: UpstreamPoolOptions = { maxIdle: 8, idleTimeoutMs: 60_000, maxRequests: 1000 };

async function harness(t: Teardown, options: Partial<UpstreamPoolOptions> = {}): Promise<Harness> {
  const start = 5_000_000;
  const clock = { now: start };
  const wheel = new TimerWheel({ tickMs: 10, autoStart: false, clock: () => clock.now });
  const crashes: unknown[] = [];
  const pool = new UpstreamPool(wheel, { ...OPTIONS, ...options }, (err) => crashes.push(err));
  const up = await rawUpstream(t);
  const sockets: UpstreamSocket[] = [];
  t.teardown(() => {
    pool.close();
    for (const s of sockets) s.destroy();
    wheel.clear();
  });
  return {
    pool,
    wheel,
    at(ms) {
      clock.now = start + ms;
      wheel.advance();
    },
    up,
    key: `127.0.0.1:${up.port}`,
    crashes,
    async dial(n, home = pool) {
      const dialed: UpstreamSocket[] = [];
      for (let i = 0; i < n; i++) {
        const owner = new Dialing();
        const socket = dialUpstream({ host: '127.0.0.1', port: up.port }, owner, home);
        sockets.push(socket);
        await waitFor(() => owner.isConnected, 2000, 'connect');
        await up.connection(sockets.length - 1); // accepted upstream, so the test can act on that side
        socket[kOwner] = null; // the exchange is done with it
        dialed.push(socket);
      }
      return dialed;
    },
  };
}

/** Resolves at 'close' (events.once would reject on an 'error' before it). */
function closed(socket: net.Socket): Promise<unknown> {
  return new Promise((resolve) => socket.once('close', resolve));
}

t.test('an empty pool has nothing to give', async (t) => {
  const h = await harness(t);
  t.equal(h.pool.acquire(h.key), null);
  t.equal(h.pool.acquire('10.0.0.1:80'), null);
  t.equal(h.pool.idleCount, 0);
});

t.test('a released socket comes back from acquire, without an owner, its idle timer cancelled', async (t) => {
  const h = await harness(t);
  const [socket] = await h.dial(1);
  h.pool.release(h.key, socket);
  t.equal(h.pool.idleCount, 1);
  t.equal(h.wheel.size, 1, 'idle timer armed');
  t.not(socket[kOwner], null, 'owned by the pool while idle');
  t.equal(socket.wsgateRequests, 1, 'one request counted');
  t.equal(h.pool.acquire(h.key), socket);
  t.equal(socket[kOwner], null);
  t.equal(h.pool.idleCount, 0);
  t.equal(h.wheel.size, 0, 'idle timer cancelled');
  t.equal(socket.destroyed, false);
  t.equal(h.pool.acquire(h.key), null);
});

t.test('acquire takes the newest idle socket first (LIFO: the oldest age out)', async (t) => {
  const h = await harness(t);
  const [a, b, c] = await h.dial(3);
  for (const s of [a, b, c]) h.pool.release(h.key, s);
  t.equal(h.pool.idleCount, 3);
  t.equal(h.pool.acquire(h.key), c);
  t.equal(h.pool.acquire(h.key), b);
  t.equal(h.pool.acquire(h.key), a);
  t.equal(h.pool.acquire(h.key), null);
});

t.test('idle sockets are kept per upstream address', async (t) => {
  const h = await harness(t);
  const [a, b] = await h.dial(2);
  h.pool.release('10.0.0.1:80', a); // any key: the pool does not look at the socket's address
  h.pool.release(h.key, b);
  t.equal(h.pool.acquire(h.key), b);
  t.equal(h.pool.acquire(h.key), null);
  t.equal(h.pool.acquire('10.0.0.1:80'), a);
});

t.test('maxIdle caps the idle sockets per address: one more is closed, not pooled', async (t) => {
  const h = await harness(t, { maxIdle: 2 });
  const [a, b, c, d] = await h.dial(4);
  h.pool.release(h.key, a);
  h.pool.release(h.key, b);
  h.pool.release(h.key, c);
  t.equal(c.destroyed, true, 'the third is closed');
  t.equal(c[kOwner], null);
  t.equal(h.pool.idleCount, 2);
  h.pool.release('other:1', d);
  t.equal(d.destroyed, false, 'another address has its own cap');
  t.equal(h.pool.idleCount, 3);
  t.equal(h.pool.acquire(h.key), b);
  t.equal(h.pool.acquire(h.key), a);
  await waitFor(() => h.up.sockets[2].destroyed || h.up.sockets[2].readableEnded, 2000, 'the upstream sees the third closed');
});

t.test('maxIdle 0 disables pooling: every released socket is closed', async (t) => {
  const h = await harness(t, { maxIdle: 0 });
  const [a] = await h.dial(1);
  h.pool.release(h.key, a);
  t.equal(a.destroyed, true);
  t.equal(h.pool.idleCount, 0);
  t.equal(h.wheel.size, 0);
});

t.test('a socket is retired at its maxRequests-th release', async (t) => {
  const h = await harness(t, { maxRequests: 3 });
  const [socket] = await h.dial(1);
  for (let request = 1; request <= 2; request++) {
    h.pool.release(h.key, socket);
    t.equal(socket.wsgateRequests, request);
    t.equal(h.pool.acquire(h.key), socket, `reused after request ${request}`);
  }
  h.pool.release(h.key, socket);
  t.equal(socket.wsgateRequests, 3);
  t.equal(socket.destroyed, true, 'retired after the third');
  t.equal(h.pool.acquire(h.key), null);
  const once1 = await harness(t, { maxRequests: 1 });
  const [single] = await once1.dial(1);
  once1.pool.release(once1.key, single);
  t.equal(single.destroyed, true, 'maxRequests 1: one request per connection');
});

t.test('an idle socket is closed when its idle timeout comes due on the wheel, oldest first', async (t) => {
  const h = await harness(t, { idleTimeoutMs: 500 });
  const [a, b] = await h.dial(2);
  h.at(0);
  h.pool.release(h.key, a);
  h.at(300);
  h.pool.release(h.key, b);
  h.at(490);
  t.equal(h.pool.idleCount, 2, 'nothing due yet');
  h.at(500);
  t.equal(a.destroyed, true, 'a: 500 ms idle');
  t.equal(b.destroyed, false, 'b: 200 ms idle');
  t.equal(h.pool.idleCount, 1);
  h.at(790);
  t.equal(b.destroyed, false);
  h.at(800);
  t.equal(b.destroyed, true);
  t.equal(h.pool.idleCount, 0);
  t.equal(h.wheel.size, 0);
  t.equal(h.pool.acquire(h.key), null);
  await waitFor(() => h.up.sockets.every((s) => s.destroyed || s.readableEnded), 2000, 'the upstream sees both closed');
});

t.test('idleTimeoutMs 0 keeps an idle socket until the upstream closes it', async (t) => {
  const h = await harness(t, { idleTimeoutMs: 0 });
  const [socket] = await h.dial(1);
  h.pool.release(h.key, socket);
  t.equal(h.wheel.size, 0, 'no timer');
  h.at(24 * 3600 * 1000);
  t.equal(h.pool.idleCount, 1);
  t.equal(h.pool.acquire(h.key), socket);
});

t.test('a released socket that is already closed or half-closed is not pooled', async (t) => {
  const h = await harness(t);
  const [destroyed, ended] = await h.dial(2);
  destroyed.destroy();
  h.pool.release(h.key, destroyed);
  t.equal(h.pool.idleCount, 0, 'destroyed');
  ended.end();
  h.pool.release(h.key, ended);
  t.equal(h.pool.idleCount, 0, 'our side ended (not writable)');
  t.equal(ended.destroyed, true);
});

t.test('acquire skips an idle socket that died before its close event ran', async (t) => {
  const h = await harness(t);
  const [a, b] = await h.dial(2);
  h.pool.release(h.key, a);
  h.pool.release(h.key, b);
  b.destroy(); // 'close' comes on a later tick
  t.equal(h.pool.acquire(h.key), a, 'the live one');
  t.equal(h.pool.idleCount, 0);
  t.equal(h.wheel.size, 0);
});

t.test('close() closes every idle socket, and later releases close theirs', async (t) => {
  const h = await harness(t);
  const [a, b, c] = await h.dial(3);
  h.pool.release(h.key, a);
  h.pool.release('other:1', b);
  h.pool.close();
  t.equal(h.pool.idleCount, 0);
  t.equal(h.wheel.size, 0);
  t.ok(a.destroyed && b.destroyed, 'both closed');
  h.pool.release(h.key, c);
  t.equal(c.destroyed, true);
  t.equal(h.pool.acquire(h.key), null);
});

t.test('options replaced on reload apply to later releases; pooled sockets stay', async (t) => {
  const h = await harness(t);
  const [a, b] = await h.dial(2);
  h.pool.release(h.key, a);
  h.pool.options = { maxIdle: 0, idleTimeoutMs: 1000, maxRequests: 10 };
  h.pool.release(h.key, b);
  t.equal(b.destroyed, true, 'maxIdle 0 now');
  t.equal(h.pool.acquire(h.key), a, 'the one pooled before stays');
});

const MODES = [
  ['pooled reads', probed],
  ['fast paths off', FAST_PATHS_OFF],
] as const;

for (const [mode, paths] of MODES) {
  const skip = mode === 'pooled reads' && !probed.pooledReads && 'pooled reads are off on this Node or forced off';
  t.test(`an idle socket is discarded when its upstream does anything (${mode})`, { skip }, async (t) => {
    const before = fastPaths();
    setFastPathsForTest(paths); // the read path is chosen when the socket is dialed
    t.teardown(() => setFastPathsForTest(before));
    // [what the upstream does, how]
    const acts: Array<[string, (s: net.Socket) => void]> = [
      ['sends bytes nobody asked for', (s) => s.write('HTTP/1.1 200 OK\r\n\r\n')],
      ['closes (FIN)', (s) => s.end()],
      ['resets', (s) => s.resetAndDestroy()],
    ];
    for (const [what, act] of acts) {
      const h = await harness(t);
      const [quiet, loud] = await h.dial(2);
      h.pool.release(h.key, quiet);
      h.pool.release(h.key, loud);
      act(await h.up.connection(1));
      await closed(loud);
      t.equal(h.pool.idleCount, 1, `${what}: that one is gone`);
      t.equal(h.wheel.size, 1, `${what}: its timer cancelled`);
      t.equal(h.pool.acquire(h.key), quiet, `${what}: the quiet one is still there`);
      t.same(h.crashes, [], `${what}: no crash reported`);
    }
  });
}

t.test('a listener that throws on an idle socket discards that socket', async (t) => {
  const h = await harness(t);
  const [socket, other] = await h.dial(2);
  h.pool.release(h.key, other);
  h.pool.release(h.key, socket);
  const disarm = injectListenerFault('upstream:end');
  t.teardown(disarm);
  (await h.up.connection(0)).end();
  await closed(socket);
  t.equal(h.pool.idleCount, 1);
  t.equal(h.pool.acquire(h.key), other, 'the other idle socket is untouched');
});

t.test('a listener that throws on an idle socket is reported through onCrash (logged and counted)', async (t) => {
  const h = await harness(t);
  const [socket] = await h.dial(1);
  h.pool.release(h.key, socket);
  const disarm = injectListenerFault('upstream:end');
  t.teardown(disarm);
  (await h.up.connection(0)).end();
  await closed(socket);
  await waitFor(() => h.crashes.length > 0, 1000, 'onCrash').catch(() => {});
  t.equal(h.crashes.length, 1);
  t.ok(h.crashes[0] instanceof InjectedFault);
});

t.test('a listener that throws on a socket being discarded is reported through onCrash', async (t) => {
  const h = await harness(t);
  const [socket] = await h.dial(1); // the pool is the socket's home
  h.pool.release(h.key, socket);
  const disarm = injectListenerFault('upstream:close');
  t.teardown(disarm);
  h.pool.close(); // discarded: nobody owns it when 'close' comes
  await closed(socket);
  await waitFor(() => h.crashes.length > 0, 2000, 'onCrash');
  t.ok(h.crashes[0] instanceof InjectedFault);
  t.equal((h.crashes[0] as InjectedFault).where, 'upstream:close');
});

t.test('pool.crashed hands the error to onCrash as it is', async (t) => {
  const h = await harness(t);
  const err = new Error('listener bug');
  h.pool.crashed(err);
  t.same(h.crashes, [err]);
  t.equal(h.crashes[0], err);
});
