// Property-based fuzzing of lib/http/head-reader.ts on its own (issue #6 "Fuzzing"):
// random valid requests split at random offsets, and mutated ones (CRLF
// placement, TE/CL values, chunk lines, control bytes, targets, methods,
// versions). Oracles: the generating model, node's llhttp driven directly,
// and an RFC 9112 grammar written in test/helpers/fuzz.ts.
// Fixed seed here; `npm run fuzz` runs the same properties much longer.
import assert from 'node:assert/strict';
import t from 'tap';
import { BodyMode, HeadKind, HeadReader, type ParsedHead } from '../../lib/http/head-reader.js';
import { WsgateError } from '../../lib/core/errors.js';
import { cutsArb, fc, fuzzParams, hitsKnownBug, llhttpParse, modelKeepsAlive, modelMsg, mutatedArb, rfcParse, serialize, splitAt, validRequestArb, type Msg } from '../helpers/fuzz.js';

const MAX_HEADERS = 12;

interface ReadResult {
  messages: Msg[];
  /** WsgateError code thrown, or null. */
  error: string | null;
  /** Anything thrown that is not a WsgateError (a bug). */
  crash: unknown;
}

/** Feeds `chunks` to a fresh HeadReader as a connection does; stops after an upgrade message. */
function readAll(chunks: Buffer[], maxHeadSize = 16384): ReadResult {
  const messages: Msg[] = [];
  let body: Buffer[] = [];
  let current: Msg | null = null;
  const reader = new HeadReader(
    HeadKind.Request,
    {
      onHead(head: ParsedHead) {
        current = { method: head.method, url: head.url, versionMajor: head.versionMajor, versionMinor: head.versionMinor, rawHeaders: head.rawHeaders.slice(), body: Buffer.alloc(0), trailers: [], upgrade: head.upgrade, complete: false };
        messages.push(current);
        body = [];
        return BodyMode.Parse;
      },
      onBody(chunk: Buffer) {
        body.push(Buffer.from(chunk));
      },
      onMessageComplete(trailers: string[]) {
        if (current === null) return;
        current.trailers = trailers.slice();
        current.complete = true;
        current.body = Buffer.concat(body);
      },
    },
    maxHeadSize,
    MAX_HEADERS,
  );
  let error: string | null = null;
  let crash: unknown = null;
  try {
    for (const chunk of chunks) {
      if (chunk.length === 0) continue; // a socket never delivers an empty chunk
      const consumed = reader.execute(chunk);
      const last = messages[messages.length - 1];
      if (consumed < chunk.length || (last?.upgrade && last.complete)) break;
    }
  } catch (err) {
    if (err instanceof WsgateError) error = err.code;
    else crash = err;
  } finally {
    reader.release();
  }
  const last = messages[messages.length - 1] as Msg | undefined;
  if (last && !last.complete) last.body = Buffer.concat(body);
  return { messages, error, crash };
}

/** Comparable form of a message (bodies as hex). */
function view(m: Msg) {
  return { ...m, body: m.body.toString('hex') };
}

/** What the reader should report for llhttp's verdict on the same bytes. */
function expectedError(parsed: ReturnType<typeof llhttpParse>): string | null {
  const overfull = parsed.messages.findIndex((m) => m.rawHeaders.length > MAX_HEADERS * 2);
  if (overfull !== -1) return 'WSG_ERR_TOO_MANY_HEADERS';
  if (parsed.error === null) return null;
  return parsed.error === 'HPE_HEADER_OVERFLOW' ? 'WSG_ERR_HEAD_TOO_LARGE' : 'WSG_ERR_BAD_REQUEST';
}

t.test('valid requests, pipelined and split at random offsets, read back exactly as generated', async (t) => {
  await fc.assert(
    fc.property(fc.array(validRequestArb({ absoluteForm: true }), { minLength: 1, maxLength: 3 }), cutsArb, (models, cuts) => {
      const bytes = Buffer.concat(models.map(serialize));
      fc.pre(!hitsKnownBug(bytes));
      const got = readAll(splitAt(bytes, cuts));
      if (got.crash) throw got.crash;
      // Bytes after a request that closes the connection are an error (llhttp strict: no data after close).
      const closing = models.findIndex((m) => !modelKeepsAlive(m));
      const read = closing === -1 ? models : models.slice(0, closing + 1);
      const expected = read.map(modelMsg).map(view);
      // fields beyond MAX_HEADERS are refused with 431, never silently dropped
      const tooMany = read.findIndex((m) => modelMsg(m).rawHeaders.length > MAX_HEADERS * 2);
      if (tooMany !== -1) {
        assert.deepStrictEqual(got.error, 'WSG_ERR_TOO_MANY_HEADERS');
        assert.deepStrictEqual(got.messages.slice(0, tooMany).map(view), expected.slice(0, tooMany));
        return;
      }
      assert.deepStrictEqual(got.error, read.length < models.length ? 'WSG_ERR_BAD_REQUEST' : null);
      assert.deepStrictEqual(got.messages.map(view), expected);
    }),
    fuzzParams(1500),
  );
  t.pass(`${fuzzParams(1500).numRuns} runs, seed ${fuzzParams(1500).seed}`);
});

t.test('mutated requests: only 400/431 errors, the same verdict and messages for any split as for one write and as llhttp alone', async (t) => {
  await fc.assert(
    fc.property(mutatedArb, cutsArb, ({ bytes }, cuts) => {
      fc.pre(!hitsKnownBug(bytes));
      const whole = readAll([bytes]);
      const split = readAll(splitAt(bytes, cuts));
      for (const r of [whole, split]) {
        if (r.crash) throw r.crash;
        if (r.error !== null && !['WSG_ERR_BAD_REQUEST', 'WSG_ERR_HEAD_TOO_LARGE', 'WSG_ERR_TOO_MANY_HEADERS'].includes(r.error)) throw new Error(`unexpected ${r.error}`);
      }
      const oracle = llhttpParse([bytes]);
      const expected = expectedError(oracle);
      assert.deepStrictEqual(whole.error, expected, 'one write: llhttp verdict');
      assert.deepStrictEqual(split.error, expected, 'split: same verdict');
      const complete = (r: { messages: Msg[] }) => r.messages.filter((m) => m.complete).map(view);
      assert.deepStrictEqual(complete(split), complete(whole), 'split: same messages');
      if (expected !== 'WSG_ERR_TOO_MANY_HEADERS') assert.deepStrictEqual(complete(whole), complete(oracle), 'llhttp: same messages');
    }),
    fuzzParams(2000),
  );
  t.pass(`${fuzzParams(2000).numRuns} runs, seed ${fuzzParams(2000).seed}`);
});

/**
 * Where llhttp (strict) accepts what RFC 9112's grammar does not. Each entry is
 * documented in docs/http-semantics.md with what wsgate does about it.
 */
const LLHTTP_LENIENCIES: Array<[string, (m: Msg, reason: string) => boolean]> = [
  // llhttp's URL scanner allows `"<>\^\`{|}`, `#`, malformed `%`, `*` for any method; admission refuses or normalises them.
  ['request-target outside RFC 3986', (_m, reason) => reason.startsWith('request-target')],
  // RFC 9112 §3: recipients MAY split the request-line on whitespace runs.
  ['request-line with runs of SP', (_m, reason) => reason.startsWith('request-line') && / {2}/.test(reason)],
  // `1;a=`: wsgate drops chunk extensions, so the value never travels.
  ['empty chunk-extension value', (_m, reason) => /^chunk line ".*=(;.*)?"$/.test(reason)],
  // A bare CR or LF between messages is skipped like the CRLF RFC 9112 §2.2 allows.
  ['stray CR or LF before a request-line', (_m, reason) => reason === 'bare CR or LF before the request-line'],
  // llhttp accepts `chunked` with parameters or more than once as long as the list ends in `chunked`;
  // admission refuses those (400), since an upstream may read the body as chunked twice.
  ['chunked with parameters or applied twice', (_m, reason) => reason.startsWith('transfer-coding') || reason.startsWith('Transfer-Encoding')],
  // llhttp ignores an empty `Transfer-Encoding:` field (the body is framed by Content-Length or absent).
  [
    'empty Transfer-Encoding value',
    (m, reason) =>
      (reason === 'Transfer-Encoding and Content-Length' || reason.startsWith('transfer-coding')) &&
      m.rawHeaders.some((v, i) => i % 2 === 1 && m.rawHeaders[i - 1].toLowerCase() === 'transfer-encoding' && v.trim() === ''),
  ],
];

t.test('every message the reader accepts is valid by the RFC 9112 grammar and reads the same by it', async (t) => {
  await fc.assert(
    fc.property(mutatedArb, ({ bytes }) => {
      fc.pre(!hitsKnownBug(bytes));
      const got = readAll([bytes]);
      if (got.crash) throw got.crash;
      let at = 0;
      for (const m of got.messages) {
        if (!m.complete || m.upgrade) break;
        const rfc = rfcParse(bytes, at);
        if (rfc.kind !== 'ok') {
          const reason = rfc.kind === 'invalid' ? rfc.reason : 'incomplete';
          const lenient = LLHTTP_LENIENCIES.find(([, applies]) => applies(m, reason));
          if (lenient) break;
          throw new Error(`reader accepted ${JSON.stringify(bytes.subarray(at, at + 300).toString('latin1'))}; RFC 9112: ${reason}`);
        }
        assert.deepStrictEqual(view(m), view(rfc.msg), 'same reading');
        at = rfc.end;
      }
    }),
    fuzzParams(2000),
  );
  t.pass(`${fuzzParams(2000).numRuns} runs, seed ${fuzzParams(2000).seed}`);
});
