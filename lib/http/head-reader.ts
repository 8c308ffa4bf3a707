// Incremental HTTP/1.1 head reader on Node's own llhttp binding (the parser
// `node:http` uses, reached through io/node-internals.ts), in strict mode: none of
// llhttp's lenient flags, each of which its README calls a smuggling risk.
// Bytes may arrive split at any offset; `execute` takes each chunk as it comes.
// Parsers are pooled like node's `parsers` FreeList.

import { WsgateError, type ErrorCode } from '../core/errors.js';
import { initializeParser, methodName, newParser, parserSlots, type NativeParser, type ParserSlots } from '../io/node-internals.js';

export const HeadKind = {
  Request: 0,
  Response: 1,
} as const;
export type HeadKind = (typeof HeadKind)[keyof typeof HeadKind];

/** llhttp's on_headers_complete return values: 0 parse the body, 1 no body, 2 no body and pause as for an upgrade. */
export const BodyMode = {
  Parse: 0,
  None: 1,
  Raw: 2,
} as const;
export type BodyMode = (typeof BodyMode)[keyof typeof BodyMode];

export interface ParsedHead {
  versionMajor: number;
  versionMinor: number;
  /** Alternating names and values, as sent (node's `rawHeaders`). */
  rawHeaders: string[];
  /** Request only. */
  method: string;
  /** Request only: the request-target as sent. */
  url: string;
  /** Response only. */
  statusCode: number;
  statusMessage: string;
  /** llhttp saw `Connection: upgrade` + `Upgrade` (request) or a 101 (response) and stopped at the head's end. */
  upgrade: boolean;
  shouldKeepAlive: boolean;
}

/** What the reader calls back into; one object per owner, so there is no closure per connection. */
export interface HeadReaderHandler {
  /**
   * A further message starts (its first byte was read) after one whose head
   * was read. The first message's start is not reported: llhttp calls into JS
   * for it only when this is wanted, and then only from the first head on.
   */
  onMessageBegin?(): void;
  /**
   * The head is complete. Return what llhttp does next: `BodyMode.Parse` the
   * body, `BodyMode.None` (the message has none: a response to HEAD), or
   * `BodyMode.Raw`: stop right after the head (`execute` returns its end) and
   * let the caller relay the body bytes itself (it then ends the message
   * itself too: no onMessageComplete follows).
   */
  onHead(head: ParsedHead): BodyMode;
  onBody(chunk: Buffer): void;
  onMessageComplete(trailers: string[]): void;
}

const kReader = Symbol('wsgate head reader');
const pool: NativeParser[] = [];
/** The parser's callback slots, read once the first parser is needed. */
let SLOTS: ParserSlots | null = null;
const POOL_MAX = 1000;

type Owned = NativeParser & { [kReader]: HeadReader | null };

function parserOnMessageBegin(this: Owned): void {
  this[kReader]?.handler.onMessageBegin?.();
}
function parserOnHeaders(this: Owned, headers: string[], url: string): void {
  this[kReader]?.onHeaders(headers, url);
}
function parserOnHeadersComplete(
  this: Owned,
  versionMajor: number,
  versionMinor: number,
  headers: string[] | undefined,
  method: number | undefined,
  url: string | undefined,
  statusCode: number | undefined,
  statusMessage: string | undefined,
  upgrade: boolean,
  shouldKeepAlive: boolean,
): number {
  const reader = this[kReader];
  if (!reader) return 0;
  return reader.onHeadersComplete(versionMajor, versionMinor, headers, method, url, statusCode, statusMessage, upgrade, shouldKeepAlive);
}
function parserOnBody(this: Owned, chunk: Buffer): void {
  this[kReader]?.handler.onBody(chunk);
}
function parserOnMessageComplete(this: Owned): void {
  this[kReader]?.onMessageComplete();
}

function acquireParser(): Owned {
  const slots = (SLOTS ??= parserSlots());
  const parser = (pool.pop() ?? newParser()) as Owned;
  // Not a function: llhttp's on_message_begin then makes no call into JS (see onHeadersComplete).
  parser[slots.onMessageBegin] = null;
  parser[slots.onHeaders] = parserOnHeaders;
  parser[slots.onHeadersComplete] = parserOnHeadersComplete;
  parser[slots.onBody] = parserOnBody;
  parser[slots.onMessageComplete] = parserOnMessageComplete;
  return parser;
}


export class HeadReader {
  readonly handler: HeadReaderHandler;
  readonly kind: HeadKind;
  /** Bytes of the head so far; llhttp enforces the limit itself (HPE_HEADER_OVERFLOW). */
  readonly maxHeadSize: number;
  readonly maxHeaders: number;
  head: ParsedHead | null = null;
  #parser: Owned | null;
  #headers: string[] = [];
  #url = '';

  constructor(kind: HeadKind, handler: HeadReaderHandler, maxHeadSize: number, maxHeaders: number) {
    this.kind = kind;
    this.handler = handler;
    this.maxHeadSize = maxHeadSize;
    this.maxHeaders = maxHeaders;
    const parser = acquireParser();
    // A fresh async resource per use, as node's server makes one per connection:
    // AsyncLocalStorage stores its context on it (a shared or frozen one breaks that).
    initializeParser(parser, kind === HeadKind.Request, maxHeadSize);
    parser[kReader] = this;
    this.#parser = parser;
  }

  /**
   * Feeds one chunk. Returns the number of bytes consumed: less than the chunk
   * only when llhttp stopped at the end of an upgrade head (the rest belongs to
   * the tunnel). Throws a WsgateError on malformed or oversized input.
   */
  execute(chunk: Buffer): number {
    const parser = this.#parser;
    if (parser === null) throw new Error('HeadReader used after release');
    if (chunk.length === 0) return 0;
    const ret = parser.execute(chunk);
    if (typeof ret !== 'number') throw this.#parseError(ret);
    return ret;
  }

  /** After a message whose body the caller relayed itself (`BodyMode.Raw`): the next bytes start a new message. */
  restart(): void {
    const parser = this.#parser;
    if (parser === null) throw new Error('HeadReader used after release');
    initializeParser(parser, this.kind === HeadKind.Request, this.maxHeadSize);
    this.head = null;
  }

  /** The peer closed: an until-close body ends here; a message cut short is an error. */
  finish(): void {
    const parser = this.#parser;
    if (parser === null) return;
    const ret = parser.finish();
    if (ret !== undefined) throw this.#parseError(ret);
  }

  release(): void {
    const parser = this.#parser;
    if (parser === null) return;
    this.#parser = null;
    parser[kReader] = null;
    if (pool.length < POOL_MAX) {
      parser.remove?.();
      parser.free();
      pool.push(parser);
    } else {
      parser.close();
    }
  }

  onHeaders(headers: string[], url: string): void {
    for (let i = 0; i < headers.length; i++) this.#headers.push(headers[i]);
    this.#url += url;
    if (this.#headers.length > this.maxHeaders * 2) this.#tooManyHeaders();
  }

  onHeadersComplete(
    versionMajor: number,
    versionMinor: number,
    headers: string[] | undefined,
    method: number | undefined,
    url: string | undefined,
    statusCode: number | undefined,
    statusMessage: string | undefined,
    upgrade: boolean,
    shouldKeepAlive: boolean,
  ): BodyMode {
    let rawHeaders = headers;
    if (rawHeaders === undefined) rawHeaders = this.#headers;
    else if (this.#headers.length > 0) rawHeaders = this.#headers.concat(rawHeaders);
    this.#headers = [];
    if (rawHeaders.length > this.maxHeaders * 2) this.#tooManyHeaders();
    const head: ParsedHead = {
      versionMajor,
      versionMinor,
      rawHeaders,
      method: method === undefined ? '' : (methodName(method) ?? ''), // '' is refused at admission
      url: this.#url + (url ?? ''),
      statusCode: statusCode ?? 0,
      statusMessage: statusMessage ?? '',
      upgrade,
      shouldKeepAlive,
    };
    this.#url = '';
    this.head = head;
    const parser = this.#parser!;
    if (this.handler.onMessageBegin !== undefined) parser[SLOTS!.onMessageBegin] = parserOnMessageBegin;
    const mode = this.handler.onHead(head);
    // Only a parsed body needs llhttp to say where the message ends. Without
    // one the message ends with its head: said here, and llhttp's own
    // on_message_complete makes no call into JS (one fewer per GET).
    parser[SLOTS!.onMessageComplete] = mode === BodyMode.Parse ? parserOnMessageComplete : null;
    if (mode === BodyMode.None) this.onMessageComplete();
    return mode;
  }

  onMessageComplete(): void {
    const trailers = this.#headers;
    this.#headers = [];
    this.#url = ''; // llhttp hands the trailers over with the message's URL again
    this.handler.onMessageComplete(trailers);
  }

  #tooManyHeaders(): never {
    throw new WsgateError(
      this.kind === HeadKind.Request ? 'WSG_ERR_TOO_MANY_HEADERS' : 'WSG_ERR_UPSTREAM_BAD_RESPONSE',
      `more than ${this.maxHeaders} header fields`,
    );
  }

  #parseError(err: Error & { code: string }): WsgateError {
    let code: ErrorCode;
    if (this.kind === HeadKind.Response) code = 'WSG_ERR_UPSTREAM_BAD_RESPONSE';
    else if (err.code === 'HPE_HEADER_OVERFLOW') code = 'WSG_ERR_HEAD_TOO_LARGE';
    else code = 'WSG_ERR_BAD_REQUEST';
    return new WsgateError(code, `${err.code}: ${(err as { reason?: string }).reason ?? err.message}`, { cause: err });
  }
}

/** Value of the first header named `lowerName` (case-insensitive), or undefined. */
export function findHeader(rawHeaders: readonly string[], lowerName: string): string | undefined {
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i];
    if (name.length === lowerName.length && name.toLowerCase() === lowerName) return rawHeaders[i + 1];
  }
  return undefined;
}

/** How many header lines are named `lowerName`. */
export function countHeader(rawHeaders: readonly string[], lowerName: string): number {
  let n = 0;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i];
    if (name.length === lowerName.length && name.toLowerCase() === lowerName) n++;
  }
  return n;
}
