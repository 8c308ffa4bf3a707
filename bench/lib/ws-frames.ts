// WebSocket framing for the benchmark tools (RFC 6455 §5.2): just enough to
// build a masked client frame once and to unmask and echo frames on the server.

import { createHash } from 'node:crypto';

export const BENCH_KEY = 'dGhlIHNhbXBsZSBub25jZQ==';
const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

export function acceptFor(key: string): string {
  return createHash('sha1').update(key + GUID).digest('base64');
}

export function upgradeRequest(path = '/'): Buffer {
  return Buffer.from(
    `GET ${path} HTTP/1.1\r\nHost: bench\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${BENCH_KEY}\r\n\r\n`,
    'latin1',
  );
}

function headerLength(payload: number, masked: boolean): number {
  return (payload < 126 ? 2 : payload < 65536 ? 4 : 10) + (masked ? 4 : 0);
}

/** A binary frame with `payload` bytes; masked (client to server) with a fixed key, pre-masked once. */
export function buildFrame(payload: number, masked: boolean): Buffer {
  const head = headerLength(payload, masked);
  const frame = Buffer.alloc(head + payload);
  frame[0] = 0x82; // FIN + binary
  let offset = 2;
  if (payload < 126) frame[1] = payload;
  else if (payload < 65536) {
    frame[1] = 126;
    frame.writeUInt16BE(payload, 2);
    offset = 4;
  } else {
    frame[1] = 127;
    frame.writeBigUInt64BE(BigInt(payload), 2);
    offset = 10;
  }
  if (masked) {
    frame[1] |= 0x80;
    const key = [0x12, 0x34, 0x56, 0x78];
    for (let i = 0; i < 4; i++) frame[offset + i] = key[i];
    offset += 4;
    for (let i = 0; i < payload; i++) frame[offset + i] = ((i * 7) & 0xff) ^ key[i & 3];
  } else {
    for (let i = 0; i < payload; i++) frame[offset + i] = (i * 7) & 0xff;
  }
  return frame;
}

/** Size on the wire of the server's (unmasked) echo of a `payload`-byte message. */
export function echoFrameLength(payload: number): number {
  return headerLength(payload, false) + payload;
}
