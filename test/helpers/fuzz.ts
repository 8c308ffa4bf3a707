// Property-based fuzzing helpers (issue #6, attacks.md "Test methods worth
// copying" 4): a model of valid HTTP/1.1 requests, mutations over the places
// smuggling lives (CRLF placement, Transfer-Encoding and Content-Length values,
// chunk lines, control bytes in fields, request-targets, methods, versions),
// random splits, and three oracles that share no code with lib/:
//   - `llhttpParse`: node's HTTPParser driven directly (not lib/http/head-reader.ts);
//   - `rfcParse`: a small strict RFC 9112 parser written here from the grammar;
//   - `referenceTarget`: RFC 3986 §5.2.4 dot-segment removal + unreserved decoding.
// FUZZ_SEED and FUZZ_RUNS (env) replace the fixed seed and the short run counts
// (scripts/fuzz.ts sets them for the long run).

import type { Msg } from './llhttp.js';
import fc from 'fast-check';

export { fc };

/** The seed every property uses: fixed in `npm test`, from FUZZ_SEED in the long run. */
export const FUZZ_SEED = process.env.FUZZ_SEED !== undefined && process.env.FUZZ_SEED !== '' ? Number(process.env.FUZZ_SEED) : 0x5eed6;

/** Runs for one property: `short` in `npm test`, FUZZ_RUNS in the long run. */
export function fuzzRuns(short: number): number {
  const n = Number(process.env.FUZZ_RUNS);
  return Number.isFinite(n) && n > 0 ? n : short;
}

/** fast-check parameters for one property: seed, runs, and the counterexample in the failure message. */
export function fuzzParams(short: number): fc.Parameters<unknown> {
  return { seed: FUZZ_SEED, numRuns: fuzzRuns(short), endOnFailure: process.env.FUZZ_NO_SHRINK === '1' };
}

// ---------------------------------------------------------------- the model

export interface ChunkModel {
  data: Buffer;
  /** Chunk extension as written after the size, e.g. `;a=b` (dropped by wsgate). */
  ext: string;
}

export type BodyModel =
  | { kind: 'none' }
  | { kind: 'length'; data: Buffer }
  | { kind: 'chunked'; codings: string; chunks: ChunkModel[]; lastExt: string; trailers: Array<[string, string]> };

export interface RequestModel {
  method: string;
  target: string;
  version: '1.0' | '1.1';
  /** Every field line but the framing one, in order; values without surrounding whitespace. */
  headers: Array<[string, string]>;
  /** Whitespace written around each value (llhttp strips it: RFC 9112 §5.1 OWS). */
  ows: string[];
  /** Index in `headers` at which the Content-Length or Transfer-Encoding line goes. */
  framingAt: number;
  body: BodyModel;
}

/** One request as a parser sees it. */
export { llhttpParse, type Msg, type ParseResult } from './llhttp.js';

function framingLine(body: BodyModel): [string, string] | null {
  if (body.kind === 'length') return ['Content-Length', String(body.data.length)];
  if (body.kind === 'chunked') return ['Transfer-Encoding', body.codings];
  return null;
}

/** The field lines in wire order, framing included. */
export function modelFields(model: RequestModel): Array<[string, string]> {
  const fields = model.headers.slice();
  const framing = framingLine(model.body);
  if (framing) fields.splice(Math.min(model.framingAt, fields.length), 0, framing);
  return fields;
}

export function serialize(model: RequestModel): Buffer {
  let head = `${model.method} ${model.target} HTTP/${model.version}\r\n`;
  modelFields(model).forEach(([name, value], i) => {
    let ows = model.ows[i % Math.max(1, model.ows.length)] ?? '';
    // llhttp refuses HTAB after a Content-Length or Transfer-Encoding value and misses a Connection token followed by one (RFC 9112 allows OWS): docs/http-semantics.md
    if (/^(content-length|transfer-encoding|(proxy-)?connection)$/i.test(name)) ows = ows.replace(/\t/g, '');
    head += `${name}:${ows === '' ? ' ' : ows}${value}${ows}\r\n`;
  });
  head += '\r\n';
  const parts: Buffer[] = [Buffer.from(head, 'latin1')];
  const body = model.body;
  if (body.kind === 'length') parts.push(body.data);
  if (body.kind === 'chunked') {
    for (const c of body.chunks) parts.push(Buffer.from(`${c.data.length.toString(16)}${c.ext}\r\n`, 'latin1'), c.data, Buffer.from('\r\n'));
    let last = `0${body.lastExt}\r\n`;
    for (const [n, v] of body.trailers) last += `${n}: ${v}\r\n`;
    parts.push(Buffer.from(last + '\r\n', 'latin1'));
  }
  return Buffer.concat(parts);
}

/** The connection stays open after this request (RFC 9112 §9.3): 1.1 without `close`, 1.0 with `keep-alive`. */
export function modelKeepsAlive(model: RequestModel): boolean {
  // llhttp reads Proxy-Connection as Connection (a legacy of node's parser): docs/http-semantics.md
  const tokens = model.headers.filter(([n]) => /^(proxy-)?connection$/i.test(n)).flatMap(([, v]) => v.split(',').map((t) => t.trim().toLowerCase()));
  return model.version === '1.1' ? !tokens.includes('close') : tokens.includes('keep-alive');
}

/** What a correct parser reads from `serialize(model)`. */
export function modelMsg(model: RequestModel): Msg {
  const body = model.body;
  return {
    method: model.method,
    url: model.target,
    versionMajor: 1,
    versionMinor: model.version === '1.0' ? 0 : 1,
    rawHeaders: modelFields(model).flat(),
    body: body.kind === 'length' ? body.data : body.kind === 'chunked' ? Buffer.concat(body.chunks.map((c) => c.data)) : Buffer.alloc(0),
    trailers: body.kind === 'chunked' ? body.trailers.flat() : [],
    upgrade: false,
    complete: true,
  };
}

// ---------------------------------------------------------------- arbitraries

const TCHAR = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
// Names the valid model sets itself (framing, routing, upgrades) or that change the request's meaning at a proxy.
const RESERVED_NAMES = new Set(['host', 'content-length', 'transfer-encoding', 'connection', 'upgrade', 'sec-websocket-key', 'sec-websocket-version', 'expect']);

const tokenArb = (max: number) => fc.string({ unit: fc.constantFrom(...TCHAR), minLength: 1, maxLength: max });
// field-vchar = VCHAR / obs-text (RFC 9110 §5.5); SP and HTAB only inside.
const vcharArb = fc.oneof({ weight: 8, arbitrary: fc.integer({ min: 0x21, max: 0x7e }) }, { weight: 1, arbitrary: fc.integer({ min: 0x80, max: 0xff }) }).map((c) => String.fromCharCode(c));
const fieldValueArb = fc
  .array(fc.oneof({ weight: 6, arbitrary: vcharArb }, { weight: 1, arbitrary: fc.constantFrom(' ', '\t') }), { maxLength: 24 })
  .map((cs) => cs.join('').replace(/^[ \t]+|[ \t]+$/g, ''));

const headerArb: fc.Arbitrary<[string, string]> = fc.oneof(
  { weight: 4, arbitrary: fc.tuple(tokenArb(12).filter((n) => !RESERVED_NAMES.has(n.toLowerCase())), fieldValueArb) },
  {
    weight: 3,
    arbitrary: fc.constantFrom<[string, string]>(
      ['Accept', '*/*'],
      ['User-Agent', 'fuzz/1.0'],
      ['X-Forwarded-For', '203.0.113.9'],
      ['X-Real-IP', '203.0.113.9'],
      ['Forwarded', 'for=203.0.113.9'],
      ['Keep-Alive', 'timeout=5'],
      ['TE', 'trailers'],
      ['Proxy-Authorization', 'Basic Zm9vOmJhcg=='],
      ['Cookie', 'a=b; c=d'],
      ['X-Drop', 'nominated'],
      ['x-dup', 'one'],
      ['X-Dup', 'two'],
      ['Authorization', 'Bearer t'],
      ['Trailer', 'X-T'],
      ['Proxy-Connection', 'keep-alive'],
      ['HTTP2-Settings', 'AAMAAABkAARAAAAAAAIAAAAA'],
    ),
  },
);

// Path segments that a valid request may use (none climbs above / once resolved: filtered below).
const SEGMENTS = ['a', 'b', 'ws', 'api', 'v1', 'x.y', '%7E', '%41', '%20', '%2F', '%e2%82%ac', '~', '-_.', '', '.', '..', '%2E', 'a:b', "!$&'()*+,;=@"];
const pathArb = fc
  .array(fc.constantFrom(...SEGMENTS), { minLength: 1, maxLength: 6 })
  .map((segs) => '/' + segs.join('/'))
  .filter((p) => referenceTarget(p) !== null && !referenceTarget(p)!.path.startsWith('/dead/'));
const queryArb = fc.oneof({ weight: 3, arbitrary: fc.constant('') }, { weight: 1, arbitrary: fc.constantFrom('?q=1', '?a=%2F&b=..', '?/../x', '?', '?x=%00') });
const hostArb = fc.constantFrom('fuzz.test', 'FUZZ.Test:8080', 'unknown.example', '127.0.0.1:8000', '[::1]:80', 'fuzz.test.');

function chunksArb(): fc.Arbitrary<ChunkModel[]> {
  const extArb = fc.constantFrom('', '', '', ';a', ';a=b', ';q="x y"', ';a=1;b', ';n=""');
  return fc.array(fc.record({ data: fc.uint8Array({ minLength: 1, maxLength: 24 }).map((a) => Buffer.from(a)), ext: extArb }), { maxLength: 4 });
}

const bodyArb = (version: '1.0' | '1.1'): fc.Arbitrary<BodyModel> =>
  fc.oneof(
    { weight: 3, arbitrary: fc.constant<BodyModel>({ kind: 'none' }) },
    { weight: 2, arbitrary: fc.uint8Array({ maxLength: 64 }).map((a): BodyModel => ({ kind: 'length', data: Buffer.from(a) })) },
    // RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 message is faulty framing; the valid model does not use it.
    ...(version === '1.1'
      ? [
          {
            weight: 2,
            arbitrary: fc
              .record({
                codings: fc.constantFrom('chunked', 'chunked', 'gzip, chunked', 'Chunked'),
                chunks: chunksArb(),
                lastExt: fc.constantFrom('', ';end'),
                trailers: fc.array(fc.tuple(tokenArb(8).filter((n) => !RESERVED_NAMES.has(n.toLowerCase())), fieldValueArb), { maxLength: 2 }),
              })
              .map((b): BodyModel => ({ kind: 'chunked', ...b })),
          },
        ]
      : []),
  );

/** Options for `validRequestArb`. */
export interface ValidOptions {
  /** Also generate absolute-form targets (RFC 9112 §3.2.2). */
  absoluteForm?: boolean;
}

/** Requests every strict HTTP/1.1 parser and wsgate must accept and route to the default server's `/` location. */
export function validRequestArb(options: ValidOptions = {}): fc.Arbitrary<RequestModel> {
  return fc.constantFrom<'1.0' | '1.1'>('1.1', '1.1', '1.1', '1.0').chain((version) =>
    fc
      .record({
        method: fc.constantFrom('GET', 'GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH'),
        path: pathArb,
        query: queryArb,
        absolute: options.absoluteForm ? fc.boolean() : fc.constant(false),
        host: hostArb,
        hostless: version === '1.0' ? fc.boolean() : fc.constant(false),
        connection: fc.constantFrom<string | null>(null, null, null, 'keep-alive', 'close', 'X-Drop', 'keep-alive, X-Drop', 'Keep-Alive, TE', 'Host, Content-Length'),
        expect: fc.constantFrom<string | null>(null, null, null, '100-continue'),
        extra: fc.array(headerArb, { maxLength: 6 }),
        ows: fc.array(fc.constantFrom('', ' ', '  ', '\t', ' \t'), { minLength: 1, maxLength: 4 }),
        framingAt: fc.nat({ max: 10 }),
        hostAt: fc.nat({ max: 10 }),
        body: bodyArb(version),
      })
      .map(({ method, path, query, absolute, host, hostless, connection, expect, extra, ows, framingAt, hostAt, body }): RequestModel => {
        const headers: Array<[string, string]> = extra.slice();
        if (connection !== null) headers.push(['Connection', connection]);
        if (expect !== null) headers.push(['Expect', expect]);
        if (!hostless) headers.splice(Math.min(hostAt, headers.length), 0, ['Host', host]);
        const target = absolute ? `http://${host}${path}${query}` : path + query;
        return { method, target, version, headers, ows, framingAt, body };
      }),
  );
}

// ---------------------------------------------------------------- mutations

/** Transfer-Encoding values from attacks.md #12 and RFC 9112 §6.1 edge cases. */
export const TE_VALUES = ['chunked', ' chunked', 'chunked ', ',chunked', 'chunked,', 'xchunked', 'chunked, identity', 'identity, chunked', '\tchunked', 'chunked\x00', 'gzip', 'CHUNKED', 'chunked;q=1', 'gzip, chunked', 'chunked, chunked', 'chunked , gzip', '"chunked"', ''];
/** Content-Length values from attacks.md #13. */
export const CL_VALUES = ['0', '1', '3', '5', '05', '+5', '-1', '0x5', '5, 5', '5,6', '5 5', '', '99999999999999999999', '1e2', '\x005', '4294967296'];
/** Chunk-size lines from attacks.md #16. */
export const CHUNK_LINES = ['0x1', '+1', '-0', '1 ', '1\t;a', '1;a=b c', '1;"', 'F'.repeat(17), '', '1\r', 'g', '0000000000000001', '1;a="x\\"y"', '1 ;a', '1;a\x00', '1;', '0', '00', '1;a=', '1\n', ';a'];
/** Request-targets from attacks.md #21-24. */
export const TARGETS = ['*', 'admin', 'a.org:80', '/ws/../admin', '/ws/%2e%2e/admin', '/ws/%2E%2E%2Fadmin', '/ws/..%2fadmin', '/ws/..;/admin', '/ws\\..\\admin', '//admin', '/%77s/x', '/ws?/../admin', '/%E0%A4%A', '/%00', '/../x', 'http://internal/x', 'HTTP://Fuzz.Test:80/a', 'http://a@b/', '/a#frag', '/a b', '/a\tb', '/\x7f', '/\xe9', '/dead/x', '/api/x', '/api/../x', '/api', '/a"b<>', '/%', '/%zz', '/a/./b/../../c', 'https://other.test/api/y', '/api/%2e%2e/%2e%2e/x', '/' + 'a'.repeat(9000)];
const METHODS = ['CONNECT', 'get', 'G ET', 'FOO', 'PRI', 'TRACE', 'MKCOL', 'SEARCH', '', 'GET ', 'QUERY', 'PURGE', 'ACL'];
const VERSIONS = ['HTTP/1.2', 'HTTP/2.0', 'HTTP/0.9', 'HTTP/1.10', 'http/1.1', 'HTTP/1.1 ', 'HTTP/1', 'HTTP/1.0', 'HTTP/9.9', ' HTTP/1.1'];
const CRLF_REPLACEMENTS = ['\n', '\r', '\r\r\n', '\n\r', ' \r\n', '\r\n ', '\r\n\t', '\r\n\r\n', '', '\r\n\r', '\r\n\r\n\r\n', '\r\n\x00'];
const CONTROL_BYTES = [0x00, 0x01, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x1b, 0x1f, 0x20, 0x22, 0x28, 0x2c, 0x3a, 0x3b, 0x7f, 0x80, 0x85, 0xa0, 0xff];
const EXTRA_LINES = [
  'Host: other.test',
  'Host: fuzz.test',
  'Host: a@b',
  'Host: a:99999',
  'Host:',
  'Connection: Upgrade\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA',
  'Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
  'Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 1337\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
  'Connection: Upgrade\r\nUpgrade: websocket',
  'Connection: close, X-Forwarded-For',
  'Connection: Host, Content-Length, Transfer-Encoding',
  'Expect: 100-continue',
  'Trailer: X-T',
  'X-Long: ' + 'v'.repeat(17000),
  'Keep-Alive: timeout=1',
];

/** One mutation: a function of the serialized bytes (latin1) and a few random numbers. */
export type Mutation = { name: string; apply: (s: string) => string };

function nthIndex(s: string, sub: string, n: number): number {
  const all: number[] = [];
  for (let i = s.indexOf(sub); i !== -1; i = s.indexOf(sub, i + 1)) all.push(i);
  return all.length === 0 ? -1 : all[n % all.length];
}

function headEndOf(s: string): number {
  const i = s.indexOf('\r\n\r\n');
  return i === -1 ? s.length : i + 2;
}

function replaceFieldValue(s: string, lowerName: string, value: string, seed: number, nameVariant?: string): string {
  const end = headEndOf(s);
  const re = new RegExp(`\\r\\n${lowerName}[ \\t]*:[^\\r\\n]*`, 'i');
  const m = re.exec(s.slice(0, end));
  const line = `\r\n${nameVariant ?? pick(['Transfer-Encoding', 'Content-Length'], lowerName === 'transfer-encoding' ? 0 : 1)}: ${value}`;
  if (m && seed % 3 !== 0) return s.slice(0, m.index) + line + s.slice(m.index + m[0].length);
  // add (maybe a second) line right after the request line
  const first = s.indexOf('\r\n');
  return first === -1 ? s : s.slice(0, first) + line + s.slice(first);
}

function pick<T>(list: readonly T[], n: number): T {
  return list[Math.abs(n) % list.length];
}

export const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.tuple(fc.nat(), fc.constantFrom(...CRLF_REPLACEMENTS)).map(([n, rep]) => ({
    name: `CRLF #${n} -> ${JSON.stringify(rep)}`,
    apply: (s: string) => {
      const i = nthIndex(s, '\r\n', n);
      return i === -1 ? s : s.slice(0, i) + rep + s.slice(i + 2);
    },
  })),
  fc.tuple(fc.constantFrom(...TE_VALUES), fc.nat(), fc.constantFrom('Transfer-Encoding', 'transfer-encoding', 'Transfer-Encoding ', 'Transfer_Encoding', 'TE')).map(([v, n, name]) => ({
    name: `TE ${JSON.stringify(name)}: ${JSON.stringify(v)}`,
    apply: (s: string) => replaceFieldValue(s, 'transfer-encoding', v, n, name),
  })),
  fc.tuple(fc.constantFrom(...CL_VALUES), fc.nat(), fc.constantFrom('Content-Length', 'content-length', 'Content-Length ', 'Content-Length\t', 'Content-Lengths')).map(([v, n, name]) => ({
    name: `CL ${JSON.stringify(name)}: ${JSON.stringify(v)}`,
    apply: (s: string) => replaceFieldValue(s, 'content-length', v, n, name),
  })),
  fc.tuple(fc.constantFrom(...CHUNK_LINES), fc.nat()).map(([line, n]) => ({
    name: `chunk line #${n} -> ${JSON.stringify(line)}`,
    apply: (s: string) => {
      const end = headEndOf(s) + 2;
      if (!/\r\ntransfer-encoding:/i.test(s.slice(0, end))) {
        // make it chunked first: the chunk line then goes into a fresh body
        const first = s.indexOf('\r\n');
        return s.slice(0, first) + '\r\nTransfer-Encoding: chunked' + s.slice(first, end) + `${line}\r\nx\r\n0\r\n\r\n`;
      }
      const body = s.slice(end);
      const lines = body.split('\r\n');
      const i = n % Math.max(1, lines.length);
      lines[i] = line;
      return s.slice(0, end) + lines.join('\r\n');
    },
  })),
  fc.tuple(fc.constantFrom(...CONTROL_BYTES), fc.nat(), fc.nat()).map(([byte, line, at]) => ({
    name: `byte 0x${byte.toString(16)} in field line #${line}@${at}`,
    apply: (s: string) => {
      const end = headEndOf(s);
      const lines = s.slice(0, end).split('\r\n');
      if (lines.length < 2) return s;
      const li = 1 + (line % Math.max(1, lines.length - 2));
      const l = lines[li];
      const pos = at % (l.length + 1);
      lines[li] = l.slice(0, pos) + String.fromCharCode(byte) + l.slice(pos);
      return lines.join('\r\n') + s.slice(end);
    },
  })),
  fc.constantFrom(...TARGETS).map((target) => ({
    name: `target ${JSON.stringify(target.slice(0, 40))}`,
    apply: (s: string) => s.replace(/^(\S*) \S*/, (_m, method: string) => `${method} ${target}`),
  })),
  fc.constantFrom(...METHODS).map((method) => ({ name: `method ${JSON.stringify(method)}`, apply: (s: string) => s.replace(/^\S*/, method) })),
  fc.constantFrom(...VERSIONS).map((v) => ({ name: `version ${JSON.stringify(v)}`, apply: (s: string) => s.replace(/ HTTP\/1\.[01]\r\n/, ` ${v}\r\n`) })),
  fc.tuple(fc.constantFrom(...EXTRA_LINES), fc.nat()).map(([line, n]) => ({
    name: `add ${JSON.stringify(line.slice(0, 60))}`,
    apply: (s: string) => {
      const i = nthIndex(s.slice(0, headEndOf(s)), '\r\n', n);
      return i === -1 ? s : s.slice(0, i) + '\r\n' + line + s.slice(i);
    },
  })),
  fc.tuple(fc.nat(), fc.boolean()).map(([n, dup]) => ({
    name: `${dup ? 'duplicate' : 'delete'} field line #${n}`,
    apply: (s: string) => {
      const end = headEndOf(s);
      const lines = s.slice(0, end).split('\r\n');
      if (lines.length < 3) return s;
      const li = 1 + (n % (lines.length - 2));
      if (dup) lines.splice(li, 0, lines[li]);
      else lines.splice(li, 1);
      return lines.join('\r\n') + s.slice(end);
    },
  })),
  fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })).map(([n, b]) => ({
    name: `byte #${n} -> 0x${b.toString(16)}`,
    apply: (s: string) => (s.length === 0 ? s : s.slice(0, n % s.length) + String.fromCharCode(b) + s.slice((n % s.length) + 1)),
  })),
  fc.nat().map((n) => ({ name: `truncate at ${n}`, apply: (s: string) => s.slice(0, n % (s.length + 1)) })),
  fc.constantFrom('GET /x HTTP/1.1\r\nHost: fuzz.test\r\n\r\n', 'G', '\r\n', 'GET /admin HTTP/1.1\r\n\r\n', '0\r\n\r\n', 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc').map((tail) => ({
    name: `append ${JSON.stringify(tail)}`,
    apply: (s: string) => s + tail,
  })),
);

export interface MutatedInput {
  bytes: Buffer;
  mutations: string[];
}

/** A valid request (or two, pipelined), then 1-3 mutations over the bytes. */
export const mutatedArb: fc.Arbitrary<MutatedInput> = fc
  .tuple(fc.array(validRequestArb({ absoluteForm: true }), { minLength: 1, maxLength: 2 }), fc.array(mutationArb, { minLength: 1, maxLength: 3 }))
  .map(([models, mutations]) => {
    let s = Buffer.concat(models.map(serialize)).toString('latin1');
    for (const m of mutations) s = m.apply(s);
    return { bytes: Buffer.from(s, 'latin1'), mutations: mutations.map((m) => m.name) };
  });

/** Cut points for `splitAt`; any number in range works for any length. */
export const cutsArb = fc.array(fc.nat({ max: 1 << 20 }), { maxLength: 6 });

/** `bytes` cut at `cuts` (each taken modulo the length): the writes a client makes. */
export function splitAt(bytes: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].filter((p) => p > 0 && p < bytes.length).sort((a, b) => a - b);
  const out: Buffer[] = [];
  let from = 0;
  for (const p of points) {
    out.push(bytes.subarray(from, p));
    from = p;
  }
  out.push(bytes.subarray(from));
  return out.filter((b) => b.length > 0);
}

// oracle 1, llhttp driven directly: helpers/llhttp.ts (llhttpParse)

// ---------------------------------------------------------------- known lib bugs

/**
 * lib/ bugs the properties found and that are reported, not yet fixed (the
 * fuzz files may not edit lib/). While listed, inputs that hit them are
 * skipped (`fc.pre`) so that `npm test` stays green; FUZZ_KNOWN_BUGS=1 runs
 * them anyway. Each entry: docs/http-semantics.md "Bugs", with its repro.
 */
// All four found so far are fixed (test/adversarial/desync.test.ts, request-smuggling rows): empty, CONNECT
// forwarded and pooled, QUERY named `undefined`, trailers leaking the target. Add new ones here as they are reported.
export const KNOWN_BUGS: Array<{ id: string; hits: (bytes: Buffer) => boolean }> = [];

/** True when `bytes` hit a known, reported lib bug (and FUZZ_KNOWN_BUGS is not set). */
export function hitsKnownBug(bytes: Buffer): boolean {
  if (process.env.FUZZ_KNOWN_BUGS === '1') return false;
  return KNOWN_BUGS.some((b) => b.hits(bytes));
}

// ---------------------------------------------------------------- oracle 2: RFC 9112 from the grammar

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const PCHAR = "(?:[A-Za-z0-9\\-._~!$&'()*+,;=:@]|%[0-9A-Fa-f]{2})";
const ORIGIN_FORM = new RegExp(`^(?:/${PCHAR}*)+(?:\\?(?:${PCHAR}|[/?])*)?$`);
const ABSOLUTE_FORM = new RegExp(`^[A-Za-z][A-Za-z0-9+.\\-]*://(?:${PCHAR}|[\\[\\]])*(?:/${PCHAR}*)*(?:\\?(?:${PCHAR}|[/?])*)?$`);
const AUTHORITY_FORM = /^(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})+:[0-9]*$|^\[[0-9A-Fa-f:.]+\]:[0-9]*$/;
// field-value = *field-content, no leading or trailing whitespace once OWS is stripped (RFC 9110 §5.5)
const FIELD_VALUE = /^(?:[\x21-\x7e\x80-\xff](?:[\x20\x09\x21-\x7e\x80-\xff]*[\x21-\x7e\x80-\xff])?)?$/;
const CHUNK_EXT_QUOTED = '"(?:[\\t \\x21\\x23-\\x5b\\x5d-\\x7e\\x80-\\xff]|\\\\[\\t \\x21-\\x7e\\x80-\\xff])*"';
const CHUNK_LINE = new RegExp(`^([0-9A-Fa-f]+)((?:[ \\t]*;[ \\t]*[!#$%&'*+\\-.^_\`|~0-9A-Za-z]+(?:[ \\t]*=[ \\t]*(?:[!#$%&'*+\\-.^_\`|~0-9A-Za-z]+|${CHUNK_EXT_QUOTED}))?)*)$`);

export type RfcResult = { kind: 'ok'; msg: Msg; end: number; notes: string[] } | { kind: 'incomplete' } | { kind: 'invalid'; reason: string };

function splitLine(s: string, from: number): { line: string; next: number } | null {
  const i = s.indexOf('\r\n', from);
  if (i === -1) return null;
  return { line: s.slice(from, i), next: i + 2 };
}

/**
 * Reads one request from `bytes` at `start` by RFC 9112's grammar, strictly.
 * `notes` lists what is allowed by RFC 9112 but worth knowing (e.g. `te-http10`).
 */
export function rfcParse(bytes: Buffer, start = 0): RfcResult {
  const s = bytes.toString('latin1');
  const notes: string[] = [];
  // RFC 9112 §2.2: empty lines before a request-line are ignored
  while (s.startsWith('\r\n', start)) start += 2;
  if (s[start] === '\r' || s[start] === '\n') return { kind: 'invalid', reason: 'bare CR or LF before the request-line' };
  const rl = splitLine(s, start);
  if (rl === null) return /[\r\n]/.test(s.slice(start)) ? { kind: 'invalid', reason: 'bare CR or LF in request line' } : { kind: 'incomplete' };
  const m = /^([^ ]+) ([^ ]+) HTTP\/([0-9])\.([0-9])$/.exec(rl.line);
  if (!m) return { kind: 'invalid', reason: `request-line ${JSON.stringify(rl.line.slice(0, 80))}` };
  const [, method, target, maj, min] = m;
  if (!TOKEN.test(method)) return { kind: 'invalid', reason: 'method not a token' };
  let formOk: boolean;
  if (method === 'CONNECT') formOk = AUTHORITY_FORM.test(target);
  else if (target === '*') formOk = method === 'OPTIONS';
  else formOk = ORIGIN_FORM.test(target) || ABSOLUTE_FORM.test(target);
  if (!formOk) return { kind: 'invalid', reason: `request-target ${JSON.stringify(target.slice(0, 80))}` };
  const rawHeaders: string[] = [];
  let at = rl.next;
  for (;;) {
    const fl = splitLine(s, at);
    if (fl === null) return { kind: 'incomplete' };
    at = fl.next;
    if (fl.line === '') break;
    const f = /^([^:]*):[ \t]*(.*?)[ \t]*$/s.exec(fl.line);
    if (!f || !TOKEN.test(f[1])) return { kind: 'invalid', reason: `field-name in ${JSON.stringify(fl.line.slice(0, 60))}` };
    if (/[\r\n]/.test(f[2]) || !FIELD_VALUE.test(f[2])) return { kind: 'invalid', reason: `field-value in ${JSON.stringify(fl.line.slice(0, 60))}` };
    rawHeaders.push(f[1], f[2]);
  }
  const te = fieldValues(rawHeaders, 'transfer-encoding');
  const cl = fieldValues(rawHeaders, 'content-length');
  const msg: Msg = { method, url: target, versionMajor: Number(maj), versionMinor: Number(min), rawHeaders, body: Buffer.alloc(0), trailers: [], upgrade: false, complete: true };
  if (te.length > 0) {
    // RFC 9112 §6.1: a list (empty elements ignored, RFC 9110 §5.6.1) ending in chunked, chunked once.
    if (cl.length > 0) return { kind: 'invalid', reason: 'Transfer-Encoding and Content-Length' };
    const codings = te.join(',').split(',').map((c) => c.trim()).filter((c) => c !== '');
    if (codings.length === 0 || !codings.every((c) => TOKEN.test(c))) return { kind: 'invalid', reason: 'transfer-coding not a token' };
    const chunkedAt = codings.map((c) => c.toLowerCase()).indexOf('chunked');
    if (chunkedAt !== codings.length - 1) return { kind: 'invalid', reason: 'chunked not final (or repeated)' };
    if (msg.versionMinor === 0 && msg.versionMajor === 1) notes.push('te-http10');
    const parts: Buffer[] = [];
    for (;;) {
      const cl0 = splitLine(s, at);
      if (cl0 === null) return /[\r\n]/.test(s.slice(at, at + 40)) ? { kind: 'invalid', reason: 'bare CR/LF in chunk line' } : { kind: 'incomplete' };
      const cm = CHUNK_LINE.exec(cl0.line);
      if (!cm) return { kind: 'invalid', reason: `chunk line ${JSON.stringify(cl0.line.slice(0, 40))}` };
      if (cm[1].replace(/^0+/, '').length > 15) return { kind: 'invalid', reason: 'chunk size too large' };
      const size = parseInt(cm[1], 16);
      at = cl0.next;
      if (size === 0) break;
      if (bytes.length < at + size + 2) return { kind: 'incomplete' };
      parts.push(bytes.subarray(at, at + size));
      if (s.slice(at + size, at + size + 2) !== '\r\n') return { kind: 'invalid', reason: 'no CRLF after chunk data' };
      at += size + 2;
    }
    for (;;) {
      const tl = splitLine(s, at);
      if (tl === null) return { kind: 'incomplete' };
      at = tl.next;
      if (tl.line === '') break;
      const f = /^([^:]*):[ \t]*(.*?)[ \t]*$/s.exec(tl.line);
      if (!f || !TOKEN.test(f[1]) || !FIELD_VALUE.test(f[2])) return { kind: 'invalid', reason: `trailer line ${JSON.stringify(tl.line.slice(0, 40))}` };
      msg.trailers.push(f[1], f[2]);
    }
    msg.body = Buffer.concat(parts);
  } else if (cl.length > 0) {
    // RFC 9110 §8.6: 1*DIGIT; several differing values are an error (identical lists we refuse too, as llhttp does).
    if (cl.length > 1 || !/^[0-9]+$/.test(cl[0])) return { kind: 'invalid', reason: `Content-Length ${JSON.stringify(cl.join(','))}` };
    const n = Number(cl[0]);
    if (bytes.length < at + n) return { kind: 'incomplete' };
    msg.body = bytes.subarray(at, at + n);
    at += n;
  }
  return { kind: 'ok', msg, end: at, notes };
}

// ---------------------------------------------------------------- oracle 3: the path an upstream should get

const UNRESERVED = /[A-Za-z0-9\-._~]/;

/**
 * RFC 3986 §6.2.2.2 (decode percent-encoded unreserved characters, upper-case
 * the other escapes), §5.2.4 (remove dot segments), with repeated slashes
 * merged (nginx `merge_slashes`), the fragment dropped (RFC 9112 §3.2.1) and
 * null for what climbs above `/`, a malformed escape, `%00` or a backslash.
 * Written from the RFC, not from lib/http/normalize-path.ts.
 */
export function referenceTarget(target: string): { path: string; query: string } | null {
  const hash = target.indexOf('#');
  const noFrag = hash === -1 ? target : target.slice(0, hash);
  const q = noFrag.indexOf('?');
  const rawPath = q === -1 ? noFrag : noFrag.slice(0, q);
  const query = q === -1 ? '' : noFrag.slice(q);
  if (!rawPath.startsWith('/') || rawPath.includes('\\')) return null;
  let decoded = '';
  for (let i = 0; i < rawPath.length; i++) {
    if (rawPath[i] !== '%') {
      decoded += rawPath[i];
      continue;
    }
    const hex = rawPath.slice(i + 1, i + 3);
    if (!/^[0-9A-Fa-f]{2}$/.test(hex)) return null;
    const ch = String.fromCharCode(parseInt(hex, 16));
    if (ch === '\0') return null;
    decoded += UNRESERVED.test(ch) ? ch : '%' + hex.toUpperCase();
    i += 2;
  }
  // §5.2.4, on merged slashes; climbing above the root is refused, not clamped
  let input = decoded.replace(/\/{2,}/g, '/');
  let output = '';
  while (input.length > 0) {
    if (input.startsWith('/./')) input = input.slice(2);
    else if (input === '/.') input = '/';
    else if (input.startsWith('/../') || input === '/..') {
      if (output === '') return null;
      output = output.slice(0, output.lastIndexOf('/'));
      input = input === '/..' ? '/' : input.slice(3);
    } else {
      const next = input.indexOf('/', 1);
      const seg = next === -1 ? input : input.slice(0, next);
      output += seg;
      input = next === -1 ? '' : input.slice(next);
    }
  }
  return { path: output || '/', query };
}

// ---------------------------------------------------------------- the upstream's view of a request

/** Fields wsgate manages and that are compared separately (RFC 9110 §7.6.1 hop-by-hop, framing, routing, forwarding). */
export const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'proxy-authorization', 'proxy-authenticate', 'http2-settings']);
const FORWARDING = new Set(['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-real-ip', 'forwarded']);
const MANAGED = new Set([...HOP_BY_HOP, ...FORWARDING, 'host', 'content-length']);

function connectionTokens(raw: string[]): Set<string> {
  const tokens = new Set<string>();
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i].toLowerCase() === 'connection') for (const t of raw[i + 1].split(',')) if (t.trim() !== '') tokens.add(t.trim().toLowerCase());
  }
  return tokens;
}

function fieldValues(raw: string[], lower: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) if (raw[i].toLowerCase() === lower) out.push(raw[i + 1]);
  return out;
}

/** The authority the client addressed: absolute-form wins over Host (RFC 9112 §3.2.2); null when none. */
export function clientAuthority(msg: Msg): string | null {
  const abs = /^https?:\/\/([^/?#]*)/i.exec(msg.url);
  if (abs) return abs[1];
  const hosts = fieldValues(msg.rawHeaders, 'host');
  return hosts.length === 1 ? hosts[0].trim() : null;
}

/** Host name for server matching: lower-cased, port and trailing dot ignored. */
export function hostName(authority: string | null): string {
  if (authority === null) return '';
  const name = authority.startsWith('[') ? authority.slice(0, authority.indexOf(']') + 1) : authority.replace(/:[0-9]*$/, '');
  return name.toLowerCase().replace(/\.$/, '');
}

export interface ForwardRule {
  /** Upstream `host:port` wsgate sends as Host when the client sent none (HTTP/1.0). */
  upstreamAuthority: string;
  /** [server name, location prefix, upstream path replacing it] for prefix rewrites. */
  rewrites: Array<[string, string, string]>;
}

/**
 * Differences between what the upstream got (`got`, re-parsed) and what the
 * client asked (`sent`): method, normalised target, header set modulo the
 * documented rewrite (README "What it does", RFC 9110 §7.6.1), body bytes.
 * Empty when they mean the same request.
 */
export function forwardedMismatches(sent: Msg, got: Msg, rule: ForwardRule): string[] {
  const problems: string[] = [];
  if (got.method !== sent.method) problems.push(`method ${got.method} != ${sent.method}`);
  if (got.versionMajor !== 1 || got.versionMinor !== 1) problems.push(`upstream version ${got.versionMajor}.${got.versionMinor}`);
  const authority = clientAuthority(sent);
  const absolute = /^https?:\/\/[^/?#]*/i.exec(sent.url);
  let target = absolute ? sent.url.slice(absolute[0].length) || '/' : sent.url;
  if (!target.startsWith('/')) target = '/' + target;
  const ref = referenceTarget(target);
  // RFC 9112 §3.2.4: OPTIONS about the server goes upstream as `*`
  const asterisk = sent.method === 'OPTIONS' && (sent.url === '*' || (absolute !== null && sent.url.length === absolute[0].length));
  if (asterisk) {
    if (got.url !== '*') problems.push(`target ${JSON.stringify(got.url)} != "*"`);
  } else if (ref === null) problems.push(`forwarded a target the reference refuses: ${JSON.stringify(sent.url)}`);
  else {
    let path = ref.path;
    for (const [server, prefix, replacement] of rule.rewrites) {
      if (hostName(authority) === server && path.startsWith(prefix)) path = replacement + path.slice(prefix.length);
    }
    if (got.url !== path + ref.query) problems.push(`target ${JSON.stringify(got.url)} != ${JSON.stringify(path + ref.query)}`);
  }
  const hosts = fieldValues(got.rawHeaders, 'host');
  const expectHost = authority ?? rule.upstreamAuthority;
  if (hosts.length !== 1 || hosts[0] !== expectHost) problems.push(`Host ${JSON.stringify(hosts)} != ${JSON.stringify(expectHost)}`);
  // pass-through fields: same names, values and order
  const nominated = connectionTokens(sent.rawHeaders);
  const keep = (raw: string[]) => {
    const out: string[] = [];
    for (let i = 0; i < raw.length; i += 2) {
      const lower = raw[i].toLowerCase();
      if (MANAGED.has(lower) || nominated.has(lower)) continue;
      // README: names with `_` are not forwarded; an HTTP/1.0 client's Expect is ignored (RFC 9110 §10.1.1);
      // an OPTIONS request's Max-Forwards is decremented (RFC 9110 §7.6.2)
      if (lower.includes('_') || (lower === 'expect' && sent.versionMinor === 0) || (lower === 'max-forwards' && sent.method === 'OPTIONS')) continue;
      out.push(`${raw[i]}: ${raw[i + 1]}`);
    }
    return out;
  };
  const sentFields = keep(sent.rawHeaders);
  const gotFields = keep(got.rawHeaders);
  if (JSON.stringify(sentFields) !== JSON.stringify(gotFields)) problems.push(`fields ${JSON.stringify(gotFields)} != ${JSON.stringify(sentFields)}`);
  for (let i = 0; i < got.rawHeaders.length; i += 2) {
    const lower = got.rawHeaders[i].toLowerCase();
    if (nominated.has(lower) && !['host', 'content-length', 'connection', 'upgrade', 'transfer-encoding'].includes(lower) && !FORWARDING.has(lower)) {
      problems.push(`forwarded ${got.rawHeaders[i]}, which the client's Connection nominated`);
    }
    if (HOP_BY_HOP.has(lower) && !['connection', 'upgrade', 'transfer-encoding'].includes(lower)) problems.push(`forwarded hop-by-hop ${got.rawHeaders[i]}`);
  }
  const xff = fieldValues(got.rawHeaders, 'x-forwarded-for');
  if (xff.length !== 1 || !/(^|, )127\.0\.0\.1$/.test(xff[0])) problems.push(`X-Forwarded-For ${JSON.stringify(xff)}`);
  // framing: the body means the same bytes; chunked stays chunked with the same codings
  if (!got.body.equals(sent.body)) problems.push(`body ${JSON.stringify(got.body.toString('latin1').slice(0, 80))} != ${JSON.stringify(sent.body.toString('latin1').slice(0, 80))}`);
  const sentTe = fieldValues(sent.rawHeaders, 'transfer-encoding');
  const gotTe = fieldValues(got.rawHeaders, 'transfer-encoding');
  if (sentTe.length > 0) {
    const codings = sentTe.join(',').split(',').map((c) => c.trim()).filter((c) => c !== '').join(', ');
    if (gotTe.length !== 1 || gotTe[0] !== codings) problems.push(`Transfer-Encoding ${JSON.stringify(gotTe)} != ${JSON.stringify(codings)}`);
  } else if (gotTe.length > 0) problems.push(`added Transfer-Encoding ${JSON.stringify(gotTe)}`);
  // a WebSocket upgrade is forwarded only when the client asked for one
  const gotUpgrade = fieldValues(got.rawHeaders, 'upgrade');
  if (gotUpgrade.length > 0) {
    const asked = fieldValues(sent.rawHeaders, 'upgrade').some((v) => v.split(',').some((t) => t.trim().toLowerCase() === 'websocket')) && nominated.has('upgrade');
    if (!asked || gotUpgrade.join() !== 'websocket') problems.push(`Upgrade ${JSON.stringify(gotUpgrade)} forwarded`);
  }
  return problems;
}
