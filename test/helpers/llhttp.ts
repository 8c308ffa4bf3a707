// The one hand driver of node's llhttp (HTTPParser from _http_common) for the
// tests: an oracle independent of lib/http/head-reader.ts. Strict (no lenient
// flags), as node's server parses. Every helper that needs "what would node
// make of these bytes" reads it from llhttpParse.

import { createRequire } from 'node:module';

export interface Msg {
  method: string;
  url: string;
  versionMajor: number;
  versionMinor: number;
  /** Alternating names and values. */
  rawHeaders: string[];
  body: Buffer;
  trailers: string[];
  /** llhttp stopped after this message for an upgrade (or CONNECT). */
  upgrade: boolean;
  complete: boolean;
}


const require = createRequire(import.meta.url);
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { HTTPParser, methods: httpMethods } = require('_http_common') as { HTTPParser: any; methods: string[] }; // eslint-disable-line @typescript-eslint/no-explicit-any
// llhttp's method enum (llhttp 9.3 `llhttp_method_t`): node's exported `methods` is the HTTP-only list,
// index-aligned only up to SOURCE (33); node's own server maps through its internal `allMethods`.
const methods = [...httpMethods.slice(0, 34), 'PRI', 'DESCRIBE', 'ANNOUNCE', 'SETUP', 'PLAY', 'PAUSE', 'TEARDOWN', 'GET_PARAMETER', 'SET_PARAMETER', 'REDIRECT', 'RECORD', 'FLUSH', 'QUERY'];

export interface ParseResult {
  /** Every message whose head was read, the last possibly incomplete. */
  messages: Msg[];
  /** llhttp's error code, or null. */
  error: string | null;
  /** Bytes consumed (less than the input after an upgrade). */
  consumed: number;
}

/**
 * Parses `chunks` as a stream of requests (or responses) with node's llhttp,
 * strict (no lenient flags), with a head limit. Stops after an upgrade
 * message as node's server does. `headResponse(i)`: response i has no body.
 */
export function llhttpParse(chunks: Buffer[], kind: 'request' | 'response' = 'request', maxHeadSize = 16384, headResponse: (i: number, status: number) => boolean = () => false): ParseResult & { statuses: number[] } {
  const parser = new HTTPParser();
  parser.initialize(kind === 'request' ? HTTPParser.REQUEST : HTTPParser.RESPONSE, {}, maxHeadSize, HTTPParser.kLenientNone);
  const messages: Msg[] = [];
  const statuses: number[] = [];
  let pendingHeaders: string[] = [];
  let pendingUrl = '';
  let current: (Msg & { parts: Buffer[] }) | null = null;
  parser[HTTPParser.kOnHeaders] = (headers: string[], url: string) => {
    pendingHeaders.push(...headers);
    pendingUrl += url;
  };
  parser[HTTPParser.kOnHeadersComplete] = (versionMajor: number, versionMinor: number, headers: string[] | undefined, method: number | undefined, url: string | undefined, statusCode: number, _statusMessage: string, upgrade: boolean) => {
    const rawHeaders = pendingHeaders.concat(headers ?? []);
    current = { method: method === undefined ? '' : methods[method], url: pendingUrl + (url ?? ''), versionMajor, versionMinor, rawHeaders, body: Buffer.alloc(0), trailers: [], upgrade, complete: false, parts: [] };
    pendingHeaders = [];
    pendingUrl = '';
    messages.push(current);
    if (kind === 'response') {
      statuses.push(statusCode);
      if (statusCode >= 200 && headResponse(statuses.filter((s) => s >= 200).length - 1, statusCode)) return 1;
    }
    return 0;
  };
  parser[HTTPParser.kOnBody] = (b: Buffer) => current?.parts.push(Buffer.from(b));
  parser[HTTPParser.kOnMessageComplete] = () => {
    if (current === null) return;
    current.trailers = pendingHeaders;
    pendingHeaders = [];
    pendingUrl = ''; // node's parserOnMessageComplete does the same after trailers
    current.complete = true;
    current.body = Buffer.concat(current.parts);
  };
  let error: string | null = null;
  let consumed = 0;
  try {
    for (const chunk of chunks) {
      const ret = chunk.length === 0 ? 0 : parser.execute(chunk);
      if (typeof ret !== 'number') {
        error = ret.code;
        break;
      }
      consumed += ret;
      const last = messages[messages.length - 1];
      if (ret < chunk.length || (last?.upgrade && last.complete)) break; // upgrade: the rest is not HTTP
    }
  } finally {
    parser.close();
  }
  for (const m of messages) if (!m.complete) m.body = Buffer.concat((m as Msg & { parts: Buffer[] }).parts);
  return { messages: messages.map(({ parts: _parts, ...m }: Msg & { parts?: Buffer[] }) => m), error, consumed, statuses };
}

/** The complete requests in `bytes` (latin1): target, raw headers, body (latin1). */
export function parseRequests(bytes: string): Array<{ url: string; headers: string[]; body: string }> {
  return llhttpParse([Buffer.from(bytes, 'latin1')])
    .messages.filter((m) => m.complete)
    .map((m) => ({ url: m.url, headers: m.rawHeaders, body: m.body.toString('latin1') }));
}

/** The first final (non-1xx) response in `bytes`: status, decoded body, and whether it is complete (status 0: none yet). */
export function parseResponse(bytes: Buffer): { status: number; body: Buffer; complete: boolean } {
  const { messages, statuses } = llhttpParse([bytes], 'response', 0);
  const i = statuses.findIndex((s) => s >= 200);
  if (i === -1) return { status: 0, body: Buffer.alloc(0), complete: false };
  return { status: statuses[i], body: messages[i].body, complete: messages[i].complete };
}

/** Counts complete final (non-1xx) responses in `bytes`. `headRequest`: the first has no body. */
export function completeResponses(bytes: Buffer, headRequest = false): number {
  const { messages, statuses } = llhttpParse([bytes], 'response', 0, (i) => headRequest && i === 0);
  return messages.filter((m, i) => m.complete && statuses[i] >= 200).length;
}
