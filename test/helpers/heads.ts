// Parsed heads from raw bytes, through the same llhttp reader the gateway uses
// (lib/http/head-reader.ts), so tests of the steps after it (admission, body
// framing, pending requests) start from what a socket really delivers.

import { BodyMode, HeadKind, HeadReader, type ParsedHead } from '../../lib/http/head-reader.js';

/**
 * The head of `raw` (a request, or a response with `kind` Response). Stops at
 * the end of the head: whatever follows is not parsed. Throws the reader's
 * WsgateError for bytes llhttp refuses, and an Error when no head completes.
 */
export function parseHead(raw: string | Buffer, kind: HeadKind = HeadKind.Request): ParsedHead {
  let head = null as ParsedHead | null;
  const reader = new HeadReader(
    kind,
    {
      onHead(h) {
        head = h;
        return BodyMode.Raw; // stop right after the head
      },
      onBody() {},
      onMessageComplete() {},
    },
    16384,
    100,
  );
  try {
    reader.execute(typeof raw === 'string' ? Buffer.from(raw, 'latin1') : raw);
  } finally {
    reader.release();
  }
  if (head === null) throw new Error(`no complete head in ${JSON.stringify(String(raw).slice(0, 80))}`);
  return head;
}

/** The head of a response. */
export function parseResponseHead(raw: string | Buffer): ParsedHead {
  return parseHead(raw, HeadKind.Response);
}
