// Writes held back until the end of the event-loop turn (lib/io/turn-writes.ts):
// they must leave in that turn, before anything written to the socket after
// them (to the handle, through the Writable, its FIN, its close), and a slice
// of a pooled read they hold must not be read into meanwhile.
import t from 'tap';
import net from 'node:net';
import { once } from 'node:events';
import { handleWritesEnabled, writePieces, writeToSocket } from '../../lib/io/handle-writes.js';
import { dispatchRead, onreadFor } from '../../lib/io/read-buffers.js';
import { initSocketFields, kTurnWrites } from '../../lib/io/socket-fields.js';
import { TurnWriteSocket, writeAtTurnEnd } from '../../lib/io/turn-writes.js';
import { probedFastPaths } from '../helpers/fast-paths.js';
import { randomBytes, sha256, waitFor } from '../helpers/net.js';

// Every test here needs held-back writes, which need handle writes.
const paths = await probedFastPaths();
const skip = !paths.turnWrites && 'turn writes are off on this Node or forced off';

interface Far {
  got(): Buffer;
  ended: Promise<unknown>;
}

/** A TurnWriteSocket connected to a server socket that records what arrives. */
async function turnPair(t: { teardown(fn: () => unknown): void }): Promise<{ near: net.Socket; far: Far }> {
  const server = net.createServer({ allowHalfOpen: true });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const accepted = once(server, 'connection');
  const near = initSocketFields(new TurnWriteSocket({ allowHalfOpen: true }));
  near.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  await once(near, 'connect');
  const [socket] = (await accepted) as [net.Socket];
  const chunks: Buffer[] = [];
  socket.on('data', (d: Buffer) => chunks.push(d));
  socket.on('error', () => {});
  const far: Far = { got: () => Buffer.concat(chunks), ended: once(socket, 'end') };
  t.teardown(() => {
    near.destroy();
    socket.destroy();
    server.close();
  });
  return { near, far };
}

const turnEnd = () => new Promise<void>((resolve) => setImmediate(resolve));
const held = (socket: net.Socket) => (socket as net.Socket & { [kTurnWrites]: unknown })[kTurnWrites] !== null;

t.test('held-back writes leave at the end of the turn, in order with writes to the handle and through the Writable', { skip }, async (t) => {
  const { near, far } = await turnPair(t);
  t.ok(handleWritesEnabled(), 'handle writes are on');
  const expected: Buffer[] = [];
  let heldBack = 0;
  let heldButNotThere = 0;
  let stillHeld = 0;
  for (let turn = 0; turn < 40; turn++) {
    for (let i = 0; i < 12; i++) {
      const piece = Buffer.from(`<${turn}.${i}:${'x'.repeat((turn * 7 + i * 13) % 40)}>`, 'latin1');
      expected.push(piece);
      switch ((turn + i) % 5) {
        case 0:
        case 1:
          if (writeAtTurnEnd(near, [piece.toString('latin1', 0, 3), piece.subarray(3)])) {
            heldBack++;
            if (!held(near)) heldButNotThere++;
          } else {
            writePieces(near, [piece]);
          }
          break;
        case 2:
          writeToSocket(near, piece);
          break;
        case 3:
          near.write(piece);
          break;
        default:
          writePieces(near, [piece.toString('latin1')]);
      }
    }
    await turnEnd();
    await turnEnd();
    if (held(near)) stillHeld++;
  }
  t.equal(stillHeld, 0, 'nothing was held back past the end of its turn');
  t.ok(heldBack > 100, `${heldBack} writes were held back`);
  t.equal(heldButNotThere, 0, 'each one waited on its socket');
  const total = Buffer.concat(expected);
  await waitFor(() => far.got().length >= total.length, 5000, 'all bytes');
  t.ok(far.got().equals(total), 'every byte, in the order written');
});

t.test('end() sends the held-back bytes before the FIN', { skip }, async (t) => {
  const { near, far } = await turnPair(t);
  t.ok(writeAtTurnEnd(near, ['HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n', Buffer.from('hi')]), 'held back');
  near.end();
  await far.ended;
  t.equal(far.got().toString('latin1'), 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi');
});

t.test('destroy() sends the held-back bytes before the close', { skip }, async (t) => {
  const { near, far } = await turnPair(t);
  t.ok(writeAtTurnEnd(near, ['last words']), 'held back');
  near.destroy();
  await far.ended;
  t.equal(far.got().toString('latin1'), 'last words');
});

t.test('writeAtTurnEnd declines where order could not be kept; the caller then writes at once', { skip }, async (t) => {
  const { near } = await turnPair(t);
  near.cork();
  near.write('queued in the Writable');
  t.notOk(writeAtTurnEnd(near, ['x']), 'bytes wait in the Writable');
  near.uncork();
  const plain = net.connect((near.remotePort as number) ?? 1, '127.0.0.1');
  plain.on('error', () => {});
  t.notOk(writeAtTurnEnd(plain, ['x']), 'a plain net.Socket (its writes would not send held-back bytes first)');
  plain.destroy();
  near.end();
  t.notOk(writeAtTurnEnd(near, ['x']), 'after end()');
});

t.test('a held-back slice pins its read buffer: reads later in the same turn go elsewhere, and every byte arrives intact', { skip }, async (t) => {
  const { near, far } = await turnPair(t);
  const payload = randomBytes(4 * 1024 * 1024);
  // A source that sends one burst: libuv reads it in a row of full 64 KiB reads, many within one turn.
  const server = net.createServer((s) => s.end(payload));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => server.close());
  let heldBack = 0;
  let reads = 0;
  const buffersUsed = new Set<Uint8Array>();
  let source: net.Socket | undefined = undefined; // Node asks for the first buffer before net.connect returns
  source = net.connect({
    port: (server.address() as net.AddressInfo).port,
    host: '127.0.0.1',
    onread: onreadFor(() => source, function (this: net.Socket, nread: number, buffer: Uint8Array) {
        reads++;
        buffersUsed.add(buffer);
        dispatchRead(this, nread, buffer as Buffer, (_s, chunk) => {
          if (writeAtTurnEnd(near, [chunk])) heldBack++;
          else writeToSocket(near, chunk);
        });
        return true;
    }),
  });
  await once(source, 'end');
  await waitFor(() => far.got().length >= payload.length, 10_000, 'all bytes');
  t.equal(sha256(far.got()), sha256(payload), `${payload.length} bytes intact after ${reads} reads (${heldBack} held back)`);
  t.ok(heldBack > 0, 'some reads were held back');
  t.ok(buffersUsed.size > 1, `reads went into ${buffersUsed.size} buffers while slices were held`);
  source.destroy();
});
