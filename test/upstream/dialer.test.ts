// The upstream dialer (lib/upstream/dialer.ts): one set of listeners per
// upstream socket that dispatch to whoever owns it now (`socket[kOwner]`),
// what happens to events and bytes nobody owns, handing the socket to a
// tunnel, and the errors a failed connect maps to. Every test runs with pooled
// reads (`onread`, when the probe turned them on) and with the fast paths off
// ('data' events): the two read paths must behave the same.
import t from 'tap';
import net from 'node:net';
import { once } from 'node:events';
import { connectError, dialUpstream, discardUpstream, kOwner, type UpstreamOwner, type UpstreamSocket } from '../../lib/upstream/dialer.js';
import { InjectedFault, injectListenerFault, type Crashable } from '../../lib/core/guard.js';
import { FAST_PATHS_OFF, fastPaths, setFastPathsForTest, type FastPaths } from '../../lib/io/node-internals.js';
import { probedFastPaths } from '../helpers/fast-paths.js';
import { randomBytes, rawUpstream, sha256, waitFor, type Teardown } from '../helpers/net.js';

const probed = await probedFastPaths();

/** Records every call, in order; received bytes are copied (they may be a slice of a pooled read). */
class Recorder implements UpstreamOwner, Crashable {
  events: string[] = [];
  bytes: Buffer[] = [];
  errors: NodeJS.ErrnoException[] = [];
  crashes: unknown[] = [];
  throwOnReceive: Error | null = null;
  connected(): void {
    this.events.push('connected');
  }
  received(chunk: Buffer): void {
    this.events.push('received');
    this.bytes.push(Buffer.from(chunk));
    if (this.throwOnReceive) throw this.throwOnReceive;
  }
  upstreamEnded(): void {
    this.events.push('ended');
  }
  upstreamClosed(): void {
    this.events.push('closed');
  }
  upstreamFailed(err: NodeJS.ErrnoException): void {
    this.events.push(`failed:${err.code}`);
    this.errors.push(err);
  }
  upstreamDrained(): void {
    this.events.push('drained');
  }
  crashed(err: unknown): void {
    this.events.push('crashed');
    this.crashes.push(err);
  }
  text(): string {
    return Buffer.concat(this.bytes).toString('latin1');
  }
  /** The events with consecutive 'received' folded into one (how reads are split is the kernel's business). */
  folded(): string[] {
    return this.events.filter((e, i) => e !== 'received' || this.events[i - 1] !== 'received');
  }
}

/** Dials `port` on loopback; the socket is destroyed at teardown. */
function dial(t: Teardown, port: number, owner: UpstreamOwner, home: Crashable = new Recorder()): UpstreamSocket {
  const socket = dialUpstream({ host: '127.0.0.1', port }, owner, home);
  t.teardown(() => socket.destroy());
  return socket;
}

/** Resolves at 'close' (events.once would reject on the 'error' before it). */
function closed(socket: net.Socket): Promise<unknown> {
  return new Promise((resolve) => socket.once('close', resolve));
}

/** A port nothing listens on (listened on, then closed). */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as net.AddressInfo).port;
  await new Promise((r) => server.close(r));
  return port;
}

const MODES: Array<[string, FastPaths]> = [
  ['pooled reads', probed],
  ['fast paths off', FAST_PATHS_OFF],
];

for (const [mode, paths] of MODES) {
  const skip = mode === 'pooled reads' && !probed.pooledReads && 'pooled reads are off on this Node or forced off';

  t.test(mode, { skip }, async (t) => {
    const before = fastPaths();
    setFastPathsForTest(paths);
    t.teardown(() => setFastPathsForTest(before));

    t.test('connects with the owner set, half-close allowed and no requests counted', async (t) => {
      const up = await rawUpstream(t);
      const owner = new Recorder();
      const socket = dial(t, up.port, owner);
      t.equal(socket[kOwner], owner);
      t.equal(socket.wsgateRequests, 0);
      t.equal(socket.allowHalfOpen, true);
      await waitFor(() => owner.events.length > 0, 2000, 'connect');
      t.same(owner.events, ['connected']);
      t.equal(socket.remotePort, up.port);
    });

    t.test('bytes from the upstream reach received() whole and in order', async (t) => {
      const payload = randomBytes(1024 * 1024 + 7);
      const up = await rawUpstream(t, (s) => {
        s.write(payload.subarray(0, 100));
        setTimeout(() => s.write(payload.subarray(100)), 10);
      });
      const owner = new Recorder();
      dial(t, up.port, owner);
      await waitFor(() => Buffer.concat(owner.bytes).length >= payload.length, 5000, 'all bytes');
      t.equal(sha256(owner.bytes), sha256(payload));
      t.same(owner.folded(), ['connected', 'received']);
    });

    t.test('the upstream\'s FIN is upstreamEnded, and the socket can still write (half-close)', async (t) => {
      const up = await rawUpstream(t, (s) => s.end('last words'));
      const owner = new Recorder();
      const socket = dial(t, up.port, owner);
      await waitFor(() => owner.events.includes('ended'), 2000, 'FIN');
      t.same(owner.folded(), ['connected', 'received', 'ended']);
      t.equal(owner.text(), 'last words');
      t.equal(socket.writable, true, 'our side is still open');
      socket.end('reply after FIN');
      await waitFor(() => up.text() === 'reply after FIN', 2000, 'the reply');
      t.equal(up.text(), 'reply after FIN');
    });

    t.test('a refused connect is upstreamFailed with ECONNREFUSED, then upstreamClosed', async (t) => {
      const owner = new Recorder();
      const socket = dial(t, await closedPort(), owner);
      await closed(socket);
      t.same(owner.events, ['failed:ECONNREFUSED', 'closed']);
      t.equal(owner.errors[0].syscall, 'connect');
    });

    t.test('a reset mid-connection is upstreamFailed with ECONNRESET', async (t) => {
      const up = await rawUpstream(t, (s) => setTimeout(() => s.resetAndDestroy(), 20));
      const owner = new Recorder();
      const socket = dial(t, up.port, owner);
      await closed(socket);
      t.same(owner.events, ['connected', 'failed:ECONNRESET', 'closed']);
    });

    t.test('an exception in received() goes to the owner\'s crashed(), never to the process', async (t) => {
      const up = await rawUpstream(t, (s) => s.write('boom'));
      const owner = new Recorder();
      const bug = new Error('bug in received');
      owner.throwOnReceive = bug;
      dial(t, up.port, owner);
      await waitFor(() => owner.events.includes('crashed'), 2000, 'crashed');
      t.same(owner.events.slice(0, 3), ['connected', 'received', 'crashed']);
      t.equal(owner.crashes[0], bug);
    });

    t.test('bytes that arrive while nobody owns the socket destroy it: the connection is out of step', async (t) => {
      let speak!: () => void;
      const up = await rawUpstream(t, (s) => (speak = () => s.write('unsolicited')));
      const owner = new Recorder();
      const socket = dial(t, up.port, owner);
      await waitFor(() => owner.events.includes('connected'), 2000, 'connect');
      socket[kOwner] = null; // as the pool leaves it between acquire and the next owner
      speak();
      await closed(socket);
      t.equal(socket.destroyed, true);
      t.same(owner.events, ['connected'], 'the former owner hears nothing');
      const far = await up.connection(0);
      await waitFor(() => far.destroyed || far.readableEnded, 2000, 'the upstream sees the close');
    });

    t.test('discardUpstream closes the socket; its owner hears nothing more', async (t) => {
      const up = await rawUpstream(t);
      const owner = new Recorder();
      const socket = dial(t, up.port, owner);
      await waitFor(() => owner.events.includes('connected'), 2000, 'connect');
      discardUpstream(socket);
      t.equal(socket[kOwner], null);
      t.equal(socket.destroyed, true);
      await closed(socket);
      t.same(owner.events, ['connected'], 'no upstreamEnded for a socket thrown away');
      const far = await up.connection(0);
      await waitFor(() => far.readableEnded || far.destroyed, 2000, 'the upstream sees FIN');
    });

    t.test('a new owner (a tunnel side) takes the socket over by assignment: no listener added or removed, the old owner hears nothing more', async (t) => {
      let speak!: (text: string) => void;
      const up = await rawUpstream(t, (s) => (speak = (text) => s.write(text)));
      const owner = new Recorder();
      const socket = dial(t, up.port, owner);
      await waitFor(() => owner.events.includes('connected'), 2000, 'connect');
      const events = ['connect', 'data', 'end', 'error', 'close', 'drain'];
      const before = events.map((e) => socket.listenerCount(e));
      const next = new Recorder();
      socket[kOwner] = next;
      speak('frame after the 101');
      await waitFor(() => next.text().length === 19, 2000, 'the new owner\'s bytes');
      t.equal(next.text(), 'frame after the 101');
      socket.on('error', () => {});
      (await up.connection(0)).resetAndDestroy();
      await closed(socket);
      t.same(next.folded(), ['received', 'failed:ECONNRESET', 'closed'], 'bytes, the reset and the close reach the new owner');
      t.same(owner.events, ['connected'], 'nothing reaches the old one');
      t.same(events.map((e) => socket.listenerCount(e) - (e === 'error' ? 1 : 0)), before, 'the same listeners as before');
    });

    t.test('a listener that throws while nobody owns the socket is answered by its home', async (t) => {
      const up = await rawUpstream(t);
      const owner = new Recorder();
      const home = new Recorder();
      const socket = dial(t, up.port, owner, home);
      await waitFor(() => owner.events.includes('connected'), 2000, 'connect');
      const disarm = injectListenerFault('upstream:close');
      t.teardown(disarm);
      discardUpstream(socket);
      await waitFor(() => home.crashes.length > 0, 2000, 'home told');
      t.ok(home.crashes[0] instanceof InjectedFault);
      t.equal((home.crashes[0] as InjectedFault).where, 'upstream:close');
      t.same(owner.events, ['connected'], 'not the former owner');
    });

    t.test('a listener that throws while owned is answered by the owner', async (t) => {
      const up = await rawUpstream(t);
      const owner = new Recorder();
      const home = new Recorder();
      const disarm = injectListenerFault('upstream:connect');
      t.teardown(disarm);
      dial(t, up.port, owner, home);
      await waitFor(() => owner.crashes.length > 0, 2000, 'owner told');
      t.equal((owner.crashes[0] as InjectedFault).where, 'upstream:connect');
      t.notOk(owner.events.includes('connected'), 'the listener threw before calling connected()');
      t.same(home.crashes, [], 'the home is not asked');
    });

    t.test('a write buffer that empties after backing up is upstreamDrained', async (t) => {
      const up = await rawUpstream(t);
      const owner = new Recorder();
      const socket = dial(t, up.port, owner);
      await waitFor(() => owner.events.includes('connected'), 2000, 'connect');
      const far = await up.connection(0);
      far.pause();
      const chunk = Buffer.alloc(64 * 1024, 1);
      let writes = 0;
      while (socket.write(chunk) && writes < 2000) writes++;
      t.ok(writes < 2000, `write() said stop after ${writes + 1} writes`);
      t.notOk(owner.events.includes('drained'));
      far.resume();
      await waitFor(() => owner.events.includes('drained'), 5000, 'drain');
      t.same(owner.events, ['connected', 'drained']);
    });
  });
}

t.test('connectError: a connect timeout is a 504, anything else a 502 naming the address and code', async (t) => {
  const address = { host: '10.0.0.9', port: 8080 };
  const err = (code: string | undefined, message = 'boom') => Object.assign(new Error(message), { code }) as NodeJS.ErrnoException;
  // [code, wsgate code, status, message]
  const cases: Array<[string | undefined, string, number, string]> = [
    ['ETIMEDOUT', 'WSG_ERR_UPSTREAM_CONNECT_TIMEOUT', 504, 'upstream connect timed out: 10.0.0.9:8080'],
    ['ECONNREFUSED', 'WSG_ERR_UPSTREAM_CONNECT', 502, 'upstream connection refused or reset: 10.0.0.9:8080: ECONNREFUSED'],
    ['ECONNRESET', 'WSG_ERR_UPSTREAM_CONNECT', 502, 'upstream connection refused or reset: 10.0.0.9:8080: ECONNRESET'],
    ['EHOSTUNREACH', 'WSG_ERR_UPSTREAM_CONNECT', 502, 'upstream connection refused or reset: 10.0.0.9:8080: EHOSTUNREACH'],
    ['ENOTFOUND', 'WSG_ERR_UPSTREAM_CONNECT', 502, 'upstream connection refused or reset: 10.0.0.9:8080: ENOTFOUND'],
    [undefined, 'WSG_ERR_UPSTREAM_CONNECT', 502, 'upstream connection refused or reset: 10.0.0.9:8080: boom'], // no code: the message
  ];
  for (const [code, wsgCode, status, message] of cases) {
    const cause = err(code);
    const mapped = connectError(cause, address);
    t.equal(mapped.code, wsgCode, String(code));
    t.equal(mapped.status, status);
    t.equal(mapped.side, 'upstream');
    t.equal(mapped.message, message);
    t.equal(mapped.cause, cause, 'the socket error is kept as the cause');
  }
  t.equal(connectError(err('ECONNREFUSED'), { host: '::1', port: 1 }).message, 'upstream connection refused or reset: ::1:1: ECONNREFUSED');
});

t.test('a real refused connect maps to WSG_ERR_UPSTREAM_CONNECT', async (t) => {
  const owner = new Recorder();
  const port = await closedPort();
  const socket = dial(t, port, owner);
  await closed(socket);
  const mapped = connectError(owner.errors[0], { host: '127.0.0.1', port });
  t.equal(mapped.code, 'WSG_ERR_UPSTREAM_CONNECT');
  t.equal(mapped.message, `upstream connection refused or reset: 127.0.0.1:${port}: ECONNREFUSED`);
});
