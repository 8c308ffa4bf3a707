// Request-target normalisation. Routing and the upstream see the same path:
// wsgate routes on the normalised path and forwards that same normalised path,
// so a prefix check can never be bypassed by a form the upstream reads
// differently (Orange Tsai, "Breaking Parser Logic", Black Hat 2018).
//
// - Percent-encoded unreserved characters are decoded (RFC 3986 §2.3, §6.2.2.2),
//   so `/%77s/` routes as `/ws/`; every other escape stays as sent, upper-cased.
// - Dot segments are removed (RFC 3986 §5.2.4); a path that climbs above `/` is refused.
// - Repeated slashes are merged, as nginx's `merge_slashes on` does.
// - Malformed escapes, NUL, backslashes and encoded `/` or `\` next to dots are
//   refused rather than guessed at.

export interface NormalizedTarget {
  /** Normalised path, always starting with `/`. */
  path: string;
  /** Query including its leading `?`, or ''. Passed through unchanged. */
  query: string;
}

const HEX = '0123456789ABCDEF';

function isUnreserved(code: number): boolean {
  return (
    (code >= 0x41 && code <= 0x5a) || // A-Z
    (code >= 0x61 && code <= 0x7a) || // a-z
    (code >= 0x30 && code <= 0x39) || // 0-9
    code === 0x2d || code === 0x2e || code === 0x5f || code === 0x7e // - . _ ~
  );
}

function hexValue(code: number): number {
  if (code >= 0x30 && code <= 0x39) return code - 0x30;
  if (code >= 0x41 && code <= 0x46) return code - 0x37;
  if (code >= 0x61 && code <= 0x66) return code - 0x57;
  return -1;
}

/** Returns null for a target wsgate refuses (answered 400). Accepts origin-form only. */
export function normalizeTarget(target: string): NormalizedTarget | null {
  if (target.length === 0 || target.charCodeAt(0) !== 0x2f /* / */) return null;
  let end = target.length;
  const q = target.indexOf('?');
  const h = target.indexOf('#');
  if (h !== -1) end = h; // a fragment is never sent (RFC 9112 §3.2.1); drop it defensively
  if (q !== -1 && q < end) end = q;
  const query = q !== -1 && (h === -1 || q < h) ? target.slice(q, h === -1 ? target.length : h) : '';
  const raw = target.slice(0, end);

  // Fast path: nothing to decode, no dot segment, no repeated slash.
  if (raw.indexOf('%') === -1 && raw.indexOf('/.') === -1 && raw.indexOf('//') === -1 && raw.indexOf('\\') === -1) {
    return { path: raw, query };
  }

  // 1. Decode unreserved escapes; keep the rest, upper-cased.
  let decoded = '';
  for (let i = 0; i < raw.length; i++) {
    const c = raw.charCodeAt(i);
    if (c === 0x5c /* \ */) return null; // Windows-style separators: refuse, never guess
    if (c !== 0x25 /* % */) {
      decoded += raw[i];
      continue;
    }
    if (i + 2 >= raw.length) return null;
    const hi = hexValue(raw.charCodeAt(i + 1));
    const lo = hexValue(raw.charCodeAt(i + 2));
    if (hi < 0 || lo < 0) return null;
    const byte = hi * 16 + lo;
    if (byte === 0) return null; // %00
    if (isUnreserved(byte)) decoded += String.fromCharCode(byte);
    else decoded += '%' + HEX[hi] + HEX[lo];
    i += 2;
  }

  // 2. Merge slashes and resolve dot segments.
  const segments = decoded.split('/');
  const out: string[] = [];
  for (let i = 1; i < segments.length; i++) {
    const seg = segments[i];
    const last = i === segments.length - 1;
    if (seg === '' && !last) continue; // merge_slashes
    if (seg === '.') {
      if (last) out.push('');
      continue;
    }
    if (seg === '..') {
      if (out.length === 0) return null; // climbs above /
      out.pop();
      if (last) out.push('');
      continue;
    }
    // An encoded separator glued to dots (`..%2F`, `%2E%2E%5C`) is how traversal
    // hides from a router; an upstream that decodes it would climb. Refuse it.
    if (/(^|%2F|%5C)\.\.?(%2F|%5C|$)/.test(seg) && /%2F|%5C/.test(seg)) return null;
    out.push(seg);
  }
  return { path: '/' + out.join('/'), query };
}
