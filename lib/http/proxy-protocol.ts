// PROXY protocol (HAProxy, "The PROXY protocol", versions 1 and 2), the
// wire format: the header an L4 balancer sends before the client's first
// byte, saying who the client is (read by listen/proxy-header.ts on a listener
// with `proxyProtocol`), and the header wsgate sends to an upstream that asks
// for it (`sendProxyProtocol`).
//
// v1: "PROXY TCP4|TCP6|UNKNOWN src dst sport dport\r\n", at most 107 bytes.
// v2: a 12-byte signature, version/command, family, a 16-bit length, the
// addresses, then TLVs (skipped). LOCAL (health checks) and UNKNOWN/UNSPEC
// mean "use the connection's own addresses".

import net from 'node:net';

export const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V1_PREFIX = Buffer.from('PROXY ', 'latin1');
const V1_MAX = 107;

export interface ProxiedAddresses {
  readonly sourceAddress: string;
  readonly sourcePort: number;
  readonly destinationAddress: string;
  readonly destinationPort: number;
}

export type ProxyHeader =
  | { readonly kind: 'incomplete' }
  | { readonly kind: 'invalid'; readonly reason: string }
  /** `addresses` null: LOCAL, UNKNOWN or a family without TCP addresses: the connection's own apply. */
  | { readonly kind: 'ok'; readonly version: 1 | 2; readonly length: number; readonly addresses: ProxiedAddresses | null };

const INCOMPLETE: ProxyHeader = { kind: 'incomplete' };
const invalid = (reason: string): ProxyHeader => ({ kind: 'invalid', reason });

/** Reads a PROXY header from the start of `bytes` (all that arrived so far). */
export function parseProxyHeader(bytes: Buffer): ProxyHeader {
  if (bytes.length === 0) return INCOMPLETE;
  if (bytes[0] === 0x0d) return parseV2(bytes);
  if (bytes[0] === 0x50) return parseV1(bytes);
  return invalid('no PROXY protocol header');
}

function startsWith(bytes: Buffer, prefix: Buffer): boolean | null {
  const n = Math.min(bytes.length, prefix.length);
  if (!bytes.subarray(0, n).equals(prefix.subarray(0, n))) return false;
  return n === prefix.length ? true : null; // null: so far so good
}

function parseV1(bytes: Buffer): ProxyHeader {
  const prefix = startsWith(bytes, V1_PREFIX);
  if (prefix === false) return invalid('no PROXY protocol header');
  const end = bytes.indexOf('\r\n', 0, 'latin1');
  if (end === -1 || end + 2 > V1_MAX) return bytes.length >= V1_MAX ? invalid('v1 header longer than 107 bytes') : INCOMPLETE;
  if (prefix === null) return INCOMPLETE;
  const line = bytes.toString('latin1', V1_PREFIX.length, end);
  const parts = line.split(' ');
  if (parts[0] === 'UNKNOWN') return { kind: 'ok', version: 1, length: end + 2, addresses: null }; // the rest is ignored (spec 2.1)
  if (parts.length !== 5) return invalid(`v1: expected "TCP4|TCP6 src dst sport dport", got ${JSON.stringify(line.slice(0, 60))}`);
  const [proto, src, dst, sport, dport] = parts;
  const family = proto === 'TCP4' ? 4 : proto === 'TCP6' ? 6 : 0;
  if (family === 0) return invalid(`v1: unknown protocol ${JSON.stringify(proto.slice(0, 16))}`);
  if (net.isIP(src) !== family || net.isIP(dst) !== family) return invalid(`v1: ${proto} addresses expected, got ${JSON.stringify(`${src} ${dst}`.slice(0, 90))}`);
  const sourcePort = v1Port(sport);
  const destinationPort = v1Port(dport);
  if (sourcePort < 0 || destinationPort < 0) return invalid(`v1: bad port in ${JSON.stringify(`${sport} ${dport}`.slice(0, 20))}`);
  return { kind: 'ok', version: 1, length: end + 2, addresses: { sourceAddress: src, sourcePort, destinationAddress: dst, destinationPort } };
}

/** A decimal port 0-65535 without leading zeros, or -1. */
function v1Port(text: string): number {
  if (!/^(0|[1-9]\d{0,4})$/.test(text)) return -1;
  const port = Number(text);
  return port <= 65535 ? port : -1;
}

function parseV2(bytes: Buffer): ProxyHeader {
  const signature = startsWith(bytes, V2_SIGNATURE);
  if (signature === false) return invalid('no PROXY protocol header');
  if (signature === null || bytes.length < 16) return INCOMPLETE;
  const versionCommand = bytes[12];
  if (versionCommand >> 4 !== 2) return invalid(`v2: version ${versionCommand >> 4}`);
  const command = versionCommand & 0x0f;
  if (command > 1) return invalid(`v2: command ${command}`);
  const familyProtocol = bytes[13];
  const length = bytes.readUInt16BE(14);
  const total = 16 + length;
  // The address block must hold the family's addresses.
  const needed = familyProtocol === 0x11 || familyProtocol === 0x12 ? 12 : familyProtocol === 0x21 || familyProtocol === 0x22 ? 36 : familyProtocol === 0x31 || familyProtocol === 0x32 ? 216 : 0;
  if (![0x00, 0x11, 0x12, 0x21, 0x22, 0x31, 0x32].includes(familyProtocol)) return invalid(`v2: family/protocol 0x${familyProtocol.toString(16)}`);
  if (length < needed) return invalid(`v2: ${length} address bytes for family 0x${familyProtocol.toString(16)}, ${needed} needed`);
  if (bytes.length < total) return INCOMPLETE;
  // LOCAL (a health check from the balancer itself), UNSPEC, UDP and UNIX: the connection's own addresses.
  if (command === 0 || (familyProtocol !== 0x11 && familyProtocol !== 0x21)) return { kind: 'ok', version: 2, length: total, addresses: null };
  const block = bytes.subarray(16, total);
  if (familyProtocol === 0x11) {
    return {
      kind: 'ok',
      version: 2,
      length: total,
      addresses: { sourceAddress: ipv4(block, 0), destinationAddress: ipv4(block, 4), sourcePort: block.readUInt16BE(8), destinationPort: block.readUInt16BE(10) },
    };
  }
  return {
    kind: 'ok',
    version: 2,
    length: total,
    addresses: { sourceAddress: ipv6(block, 0), destinationAddress: ipv6(block, 16), sourcePort: block.readUInt16BE(32), destinationPort: block.readUInt16BE(34) },
  };
}

const ipv4 = (b: Buffer, at: number): string => `${b[at]}.${b[at + 1]}.${b[at + 2]}.${b[at + 3]}`;

function ipv6(b: Buffer, at: number): string {
  const groups: string[] = [];
  for (let i = 0; i < 8; i++) groups.push(b.readUInt16BE(at + 2 * i).toString(16));
  const text = groups.join(':');
  // The shortest form Node prints (RFC 5952), via the address parser.
  const list = new net.SocketAddress({ address: text, family: 'ipv6' });
  return list.address;
}

/** The header wsgate sends to an upstream: `v1` text or `v2` binary, for a TCP connection from `source` to `destination`. */
export function buildProxyHeader(version: 'v1' | 'v2', given: ProxiedAddresses): Buffer {
  // A dual-stack listener reports IPv4 clients as ::ffff:a.b.c.d: they are IPv4.
  const a = { ...given, sourceAddress: unmapped(given.sourceAddress), destinationAddress: unmapped(given.destinationAddress) };
  const family = net.isIPv4(a.sourceAddress) && net.isIPv4(a.destinationAddress) ? 4 : net.isIPv6(a.sourceAddress) && net.isIPv6(a.destinationAddress) ? 6 : 0;
  if (version === 'v1') {
    if (family === 0) return Buffer.from('PROXY UNKNOWN\r\n', 'latin1');
    return Buffer.from(`PROXY TCP${family} ${a.sourceAddress} ${a.destinationAddress} ${a.sourcePort} ${a.destinationPort}\r\n`, 'latin1');
  }
  if (family === 0) return Buffer.concat([V2_SIGNATURE, Buffer.from([0x21, 0x00, 0x00, 0x00])]);
  const addressLength = family === 4 ? 12 : 36;
  const out = Buffer.alloc(16 + addressLength);
  V2_SIGNATURE.copy(out, 0);
  out[12] = 0x21; // version 2, PROXY
  out[13] = family === 4 ? 0x11 : 0x21; // TCP over IPv4 / IPv6
  out.writeUInt16BE(addressLength, 14);
  const size = family === 4 ? 4 : 16;
  writeAddress(out, 16, a.sourceAddress, family);
  writeAddress(out, 16 + size, a.destinationAddress, family);
  out.writeUInt16BE(a.sourcePort, 16 + 2 * size);
  out.writeUInt16BE(a.destinationPort, 18 + 2 * size);
  return out;
}

function unmapped(address: string): string {
  return address.startsWith('::ffff:') && net.isIPv4(address.slice(7)) ? address.slice(7) : address;
}

function writeAddress(out: Buffer, at: number, address: string, family: 4 | 6): void {
  if (family === 4) {
    address.split('.').forEach((part, i) => (out[at + i] = Number(part)));
    return;
  }
  // Expand "::" to eight groups.
  const [head, tail = ''] = address.includes('::') ? address.split('::') : [address, undefined];
  const h = head === '' ? [] : head.split(':');
  const tl = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = address.includes('::') ? [...h, ...new Array<string>(8 - h.length - tl.length).fill('0'), ...tl] : h;
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), at + 2 * i));
}
