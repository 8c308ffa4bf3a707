// The PROXY protocol wire format (HAProxy's spec, v1 and v2), from raw bytes:
// every family the spec names, TLVs skipped, every truncation incomplete (never
// invalid, never ok), malformed headers refused with a reason, and the headers
// wsgate builds read back as what they say.
import t from 'tap';
import { V2_SIGNATURE, buildProxyHeader, parseProxyHeader } from '../../lib/http/proxy-protocol.js';

const v1 = (text: string) => Buffer.from(text, 'latin1');

function v2(command: number, family: number, addresses: Buffer, tlvs: Buffer = Buffer.alloc(0)): Buffer {
  const length = Buffer.alloc(2);
  length.writeUInt16BE(addresses.length + tlvs.length);
  return Buffer.concat([V2_SIGNATURE, Buffer.from([0x20 | command, family]), length, addresses, tlvs]);
}

function ipv4Block(src: number[], dst: number[], sport: number, dport: number): Buffer {
  const b = Buffer.alloc(12);
  Buffer.from(src).copy(b, 0);
  Buffer.from(dst).copy(b, 4);
  b.writeUInt16BE(sport, 8);
  b.writeUInt16BE(dport, 10);
  return b;
}

function ipv6Block(src: string, dst: string, sport: number, dport: number): Buffer {
  const b = Buffer.alloc(36);
  Buffer.from(src, 'hex').copy(b, 0);
  Buffer.from(dst, 'hex').copy(b, 16);
  b.writeUInt16BE(sport, 32);
  b.writeUInt16BE(dport, 34);
  return b;
}

const TLV = Buffer.from([0x01, 0x00, 0x02, 0x68, 0x32, 0x04, 0x00, 0x00]); // PP2_TYPE_ALPN "h2", PP2_TYPE_NOOP empty

// [name, bytes, addresses or null, header length]
const GOOD: Array<[string, Buffer, object | null, number]> = [
  ['v1 TCP4', v1('PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n'), { sourceAddress: '192.0.2.1', sourcePort: 56324, destinationAddress: '198.51.100.2', destinationPort: 443 }, 45],
  ['v1 TCP6', v1('PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n'), { sourceAddress: '2001:db8::1', sourcePort: 1, destinationAddress: '2001:db8::2', destinationPort: 65535 }, 44],
  ['v1 UNKNOWN', v1('PROXY UNKNOWN\r\n'), null, 15],
  ['v1 UNKNOWN with addresses (ignored)', v1('PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n'), null, 59],
  ['v1 port 0', v1('PROXY TCP4 10.0.0.1 10.0.0.2 0 0\r\n'), { sourceAddress: '10.0.0.1', sourcePort: 0, destinationAddress: '10.0.0.2', destinationPort: 0 }, 34],
  ['v2 PROXY TCP4', v2(1, 0x11, ipv4Block([192, 0, 2, 1], [198, 51, 100, 2], 56324, 443)), { sourceAddress: '192.0.2.1', destinationAddress: '198.51.100.2', sourcePort: 56324, destinationPort: 443 }, 28],
  ['v2 PROXY TCP6', v2(1, 0x21, ipv6Block('20010db8000000000000000000000001', '20010db8000000000000000000000002', 5, 6)), { sourceAddress: '2001:db8::1', destinationAddress: '2001:db8::2', sourcePort: 5, destinationPort: 6 }, 52],
  ['v2 TCP4 with TLVs (skipped)', v2(1, 0x11, ipv4Block([10, 1, 2, 3], [10, 0, 0, 1], 1000, 80), TLV), { sourceAddress: '10.1.2.3', destinationAddress: '10.0.0.1', sourcePort: 1000, destinationPort: 80 }, 36],
  ['v2 LOCAL (a health check): own addresses', v2(0, 0x00, Buffer.alloc(0)), null, 16],
  ['v2 LOCAL with TCP4 addresses: ignored', v2(0, 0x11, ipv4Block([1, 2, 3, 4], [5, 6, 7, 8], 1, 2)), null, 28],
  ['v2 PROXY UNSPEC', v2(1, 0x00, Buffer.alloc(0)), null, 16],
  ['v2 PROXY UDP4: own addresses', v2(1, 0x12, ipv4Block([1, 2, 3, 4], [5, 6, 7, 8], 1, 2)), null, 28],
  ['v2 PROXY UNIX stream: own addresses', v2(1, 0x31, Buffer.alloc(216)), null, 232],
];

t.test('every family of v1 and v2 reads as the spec says', async (t) => {
  for (const [name, bytes, addresses, length] of GOOD) {
    const withRequest = Buffer.concat([bytes, v1('GET / HTTP/1.1\r\n\r\n')]);
    const header = parseProxyHeader(withRequest);
    t.same(header, { kind: 'ok', version: bytes[0] === 0x50 ? 1 : 2, length: bytes.length, addresses }, name);
    t.equal(length, bytes.length, `${name}: the table's length`);
  }
});

t.test('every truncation of a good header is incomplete, never ok or invalid', async (t) => {
  for (const [name, bytes] of GOOD) {
    let wrong = 0;
    for (let n = 0; n < bytes.length; n++) if (parseProxyHeader(bytes.subarray(0, n)).kind !== 'incomplete') wrong++;
    t.equal(wrong, 0, `${name}: ${bytes.length} truncations`);
  }
});

t.test('malformed and missing headers are refused with a reason', async (t) => {
  const bad: Array<[string, Buffer, RegExp]> = [
    ['an HTTP request', v1('GET / HTTP/1.1\r\n\r\n'), /no PROXY protocol header/],
    ['a TLS ClientHello', Buffer.from([0x16, 0x03, 0x01, 0x00, 0xa5]), /no PROXY protocol header/],
    ['lower-case proxy', v1('proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n'), /no PROXY protocol header/],
    ['v1 unknown protocol', v1('PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n'), /unknown protocol/],
    ['v1 TCP4 with IPv6 addresses', v1('PROXY TCP4 ::1 ::2 1 2\r\n'), /TCP4 addresses expected/],
    ['v1 TCP6 with IPv4 addresses', v1('PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n'), /TCP6 addresses expected/],
    ['v1 a host name', v1('PROXY TCP4 example.com 5.6.7.8 1 2\r\n'), /TCP4 addresses expected/],
    ['v1 port past 65535', v1('PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n'), /bad port/],
    ['v1 port with a leading zero', v1('PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n'), /bad port/],
    ['v1 a missing field', v1('PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n'), /expected/],
    ['v1 two spaces', v1('PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n'), /expected/],
    ['v1 LF only, past 107 bytes', v1(`PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n${'x'.repeat(100)}`), /longer than 107/],
    ['v1 over 107 bytes', v1(`PROXY UNKNOWN ${'x'.repeat(100)}\r\n`), /longer than 107/],
    ['v2 version 1', Buffer.concat([V2_SIGNATURE, Buffer.from([0x11, 0x11, 0, 12]), Buffer.alloc(12)]), /version 1/],
    ['v2 command 2', Buffer.concat([V2_SIGNATURE, Buffer.from([0x22, 0x11, 0, 12]), Buffer.alloc(12)]), /command 2/],
    ['v2 unknown family', Buffer.concat([V2_SIGNATURE, Buffer.from([0x21, 0x41, 0, 0])]), /family\/protocol 0x41/],
    ['v2 TCP4 with 8 address bytes', Buffer.concat([V2_SIGNATURE, Buffer.from([0x21, 0x11, 0, 8]), Buffer.alloc(8)]), /8 address bytes/],
    ['v2 TCP6 with 12 address bytes', Buffer.concat([V2_SIGNATURE, Buffer.from([0x21, 0x21, 0, 12]), Buffer.alloc(12)]), /12 address bytes/],
    ['a broken v2 signature', Buffer.concat([V2_SIGNATURE.subarray(0, 11), Buffer.from([0x0b, 0x21, 0x11])]), /no PROXY protocol header/],
  ];
  for (const [name, bytes, reason] of bad) {
    const header = parseProxyHeader(bytes);
    t.equal(header.kind, 'invalid', name);
    if (header.kind === 'invalid') t.match(header.reason, reason, `${name}: ${header.reason}`);
  }
});

t.test('the headers wsgate sends read back as what they say', async (t) => {
  const cases = [
    { sourceAddress: '203.0.113.7', sourcePort: 51000, destinationAddress: '10.0.0.1', destinationPort: 8000 },
    { sourceAddress: '2001:db8::7', sourcePort: 1, destinationAddress: '::1', destinationPort: 65535 },
  ];
  for (const addresses of cases) {
    for (const version of ['v1', 'v2'] as const) {
      const bytes = buildProxyHeader(version, addresses);
      t.same(parseProxyHeader(bytes), { kind: 'ok', version: version === 'v1' ? 1 : 2, length: bytes.length, addresses }, `${version} ${addresses.sourceAddress}`);
    }
  }
  const mapped = buildProxyHeader('v1', { sourceAddress: '::ffff:192.0.2.9', sourcePort: 5, destinationAddress: '::ffff:127.0.0.1', destinationPort: 6 });
  t.equal(mapped.toString('latin1'), 'PROXY TCP4 192.0.2.9 127.0.0.1 5 6\r\n', 'IPv4-mapped addresses go as TCP4');
  const mixed = { sourceAddress: '192.0.2.9', sourcePort: 5, destinationAddress: '::1', destinationPort: 6 };
  t.equal(buildProxyHeader('v1', mixed).toString('latin1'), 'PROXY UNKNOWN\r\n', 'mixed families: UNKNOWN');
  t.same(parseProxyHeader(buildProxyHeader('v2', mixed)), { kind: 'ok', version: 2, length: 16, addresses: null }, 'mixed families v2: UNSPEC');
});
