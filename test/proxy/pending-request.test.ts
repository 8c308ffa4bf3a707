// A request waiting for its exchange (lib/proxy/pending-request.ts): how its
// body is framed from the head, a Content-Length body cut from reads as they
// come (split anywhere), and the bytes it keeps (body pieces before an
// exchange, the raw tail behind an upgrade head) surviving the reuse of
// pooled read buffers.
import t from 'tap';
import { once } from 'node:events';
import { PendingRequest } from '../../lib/proxy/pending-request.js';
import { oneReadEach, pooledReader } from '../helpers/pooled-reads.js';
import { parseHead } from '../helpers/heads.js';
import { upgradeRequest } from '../helpers/net.js';

// [head, chunked, Content-Length body bytes to cut]
const FRAMING: Array<[string, boolean, number]> = [
  ['GET / HTTP/1.1\r\nHost: a\r\n\r\n', false, 0],
  ['POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n', false, 10],
  ['POST / HTTP/1.1\r\nHost: a\r\ncontent-length:  7 \r\n\r\n', false, 7],
  ['POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n', false, 0],
  ['POST / HTTP/1.0\r\nContent-Length: 3\r\n\r\n', false, 3],
  ['POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n', true, 0], // llhttp parses chunked bodies
  ['POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n', true, 0],
  [upgradeRequest('/ws/'), false, 0], // what follows an upgrade head is a tail, not a body
  ['GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: h2c\r\nContent-Length: 3\r\n\r\n', false, 0],
];

t.test('the body framing is read off the head: chunked for llhttp, Content-Length cut raw, none after an upgrade head', async (t) => {
  for (const [raw, chunked, rawRemaining] of FRAMING) {
    const pending = new PendingRequest(parseHead(raw));
    const what = JSON.stringify(raw.replace(/\r\n/g, '|'));
    t.equal(pending.chunked, chunked, `chunked: ${what}`);
    t.equal(pending.rawRemaining, rawRemaining, `rawRemaining: ${what}`);
    t.equal(pending.complete, false);
    t.equal(pending.tail, null);
    t.same(pending.body, []);
  }
});

t.test('a request already complete (node parsed it) has nothing left to cut; its tail is given', async (t) => {
  const tail = [Buffer.from('\x81\x05hello', 'latin1')];
  const pending = new PendingRequest(parseHead('POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n'), true, tail);
  t.equal(pending.complete, true);
  t.equal(pending.rawRemaining, 0);
  t.equal(pending.tail, tail);
});

const HEAD10 = 'POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n';
const BODY = '0123456789';
const NEXT = 'GET /next HTTP/1.1\r\nHost: a\r\n\r\n';

/** Cuts `reads` as a connection does while rawRemaining > 0: the body pieces and every byte after the body. */
function cutAll(pending: PendingRequest, reads: Buffer[]): { pieces: Buffer[]; after: Buffer[]; remainingAfter: number[] } {
  const pieces: Buffer[] = [];
  const after: Buffer[] = [];
  const remainingAfter: number[] = [];
  for (const read of reads) {
    if (pending.rawRemaining === 0) {
      after.push(read);
      continue;
    }
    const [piece, rest] = pending.cutRawBody(read);
    pieces.push(piece);
    remainingAfter.push(pending.rawRemaining);
    if (rest !== null) after.push(rest);
  }
  return { pieces, after, remainingAfter };
}

t.test('a Content-Length body is cut across three reads, the next request left whole', async (t) => {
  const pending = new PendingRequest(parseHead(HEAD10));
  const reads = [Buffer.from('012'), Buffer.from('3456'), Buffer.from('789' + NEXT)];
  const first = pending.cutRawBody(reads[0]);
  t.equal(first[0], reads[0], 'a read inside the body is the piece itself');
  t.equal(first[1], null);
  t.equal(pending.rawRemaining, 7);
  const second = pending.cutRawBody(reads[1]);
  t.equal(second[0].toString(), '3456');
  t.equal(second[1], null);
  t.equal(pending.rawRemaining, 3);
  const [piece, rest] = pending.cutRawBody(reads[2]);
  t.equal(piece.toString(), '789');
  t.equal(rest?.toString(), NEXT);
  t.equal(pending.rawRemaining, 0);
  t.equal(piece.buffer, reads[2].buffer, 'the piece is a view of the read, not a copy');
  t.equal(rest!.buffer, reads[2].buffer, 'so is the rest');
  t.equal(rest!.byteOffset, reads[2].byteOffset + 3);
});

t.test('a read that ends exactly at the body\'s end leaves nothing after it', async (t) => {
  const pending = new PendingRequest(parseHead(HEAD10));
  const read = Buffer.from(BODY);
  const [piece, rest] = pending.cutRawBody(read);
  t.equal(piece, read);
  t.equal(rest, null);
  t.equal(pending.rawRemaining, 0);
});

t.test('a Content-Length body split at every offset, in two and three reads, is cut to exactly its bytes', async (t) => {
  const stream = Buffer.from(BODY + NEXT, 'latin1');
  let splits = 0;
  for (let a = 1; a < stream.length; a++) {
    for (let b = a; b <= stream.length; b++) {
      const reads = [stream.subarray(0, a), stream.subarray(a, b), stream.subarray(b)].filter((r) => r.length > 0);
      const pending = new PendingRequest(parseHead(HEAD10));
      const cut = cutAll(pending, reads);
      const { remainingAfter } = cut;
      const body = Buffer.concat(cut.pieces).toString('latin1');
      const after = Buffer.concat(cut.after).toString('latin1');
      if (body !== BODY || after !== NEXT || pending.rawRemaining !== 0 || remainingAfter.some((r, i) => i > 0 && r > remainingAfter[i - 1])) {
        t.fail(`split at ${a}/${b}: body ${JSON.stringify(body)}, after ${JSON.stringify(after)}, remaining ${remainingAfter}`);
        return;
      }
      splits++;
    }
  }
  t.ok(splits > 800, `${splits} splits cut exactly`);
});

t.test('with nothing left to cut, every byte belongs to what follows', async (t) => {
  const pending = new PendingRequest(parseHead('GET / HTTP/1.1\r\nHost: a\r\n\r\n'));
  const [piece, rest] = pending.cutRawBody(Buffer.from(NEXT));
  t.equal(piece.length, 0);
  t.equal(rest?.toString(), NEXT);
  t.equal(pending.rawRemaining, 0);
});

t.test('hold keeps tail bytes in order and says to pause once 64 KiB are held', async (t) => {
  const pending = new PendingRequest(parseHead(upgradeRequest('/ws/')));
  t.equal(pending.tail, null, 'no tail until the first bytes after the head');
  t.equal(pending.hold(Buffer.from('\x81\x02hi', 'latin1')), false);
  t.equal(pending.tail!.length, 1);
  t.equal(pending.hold(Buffer.alloc(64 * 1024 - 5, 1)), false, 'one byte short of 64 KiB: keep reading');
  t.equal(pending.hold(Buffer.from('x')), true, '64 KiB held: pause');
  t.equal(pending.hold(Buffer.from('y')), true, 'still past it');
  const held = Buffer.concat(pending.tail!);
  t.equal(held.length, 64 * 1024 + 1);
  t.equal(held.subarray(0, 4).toString('latin1'), '\x81\x02hi');
  t.equal(held.subarray(-2).toString('latin1'), 'xy');
});

t.test('hold appends to a tail given at construction, counting only what it held itself', async (t) => {
  const given = [Buffer.alloc(60 * 1024)];
  const pending = new PendingRequest(parseHead(upgradeRequest('/ws/')), true, given);
  t.equal(pending.hold(Buffer.alloc(4 * 1024 - 1)), false, 'the given bytes are not counted');
  t.equal(pending.tail, given);
  t.equal(given.length, 2);
});

t.test('outside a read dispatch, kept bytes are the very buffers given (nothing to copy)', async (t) => {
  const pending = new PendingRequest(parseHead(HEAD10));
  const piece = Buffer.from('01234');
  pending.keepBody(piece);
  t.equal(pending.body[0], piece);
  const tail = Buffer.from('tail');
  pending.hold(tail);
  t.equal(pending.tail![0], tail);
});


for (const what of ['body pieces', 'tail bytes'] as const) {
  t.test(`${what} kept during a pooled read are copies: the next read into the same buffer leaves them intact`, async (t) => {
    const messages = Array.from({ length: 6 }, (_, i) => Buffer.alloc(200 + i * 10, 0x61 + i));
    const port = await oneReadEach(t, messages);
    const pending = new PendingRequest(parseHead(what === 'tail bytes' ? upgradeRequest('/ws/') : HEAD10));
    const { source: socket, buffersUsed } = pooledReader(port, (chunk) => (what === 'tail bytes' ? pending.hold(chunk) : pending.keepBody(chunk)));
    t.teardown(() => socket.destroy());
    await once(socket, 'end');
    const kept = what === 'tail bytes' ? pending.tail! : pending.body;
    t.equal(buffersUsed.size, 1, 'every read went into the same buffer');
    t.equal(kept.length, messages.length, 'one piece per read');
    t.ok(Buffer.concat(kept).equals(Buffer.concat(messages)), 'what was kept is what was read');
  });
}
