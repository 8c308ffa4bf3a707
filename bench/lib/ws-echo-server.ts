// A minimal WebSocket echo upstream on raw sockets, for the benchmarks: it
// answers any upgrade with a 101, then echoes every frame back unmasked.
// usage: node ws-echo-server.js PORT
import net from 'node:net';
import { acceptFor } from './ws-frames.js';

const port = Number(process.argv[2]);

class EchoConnection {
  #head = '';
  #upgraded = false;
  #pending: Buffer | null = null;
  constructor(readonly socket: net.Socket) {}

  onData(chunk: Buffer): void {
    if (!this.#upgraded) {
      this.#head += chunk.toString('latin1');
      const end = this.#head.indexOf('\r\n\r\n');
      if (end === -1) return;
      const key = /\r\nsec-websocket-key: *([^\r]+)/i.exec(this.#head)?.[1]?.trim() ?? '';
      this.socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptFor(key)}\r\n\r\n`);
      this.#upgraded = true;
      const rest = Buffer.from(this.#head.slice(end + 4), 'latin1');
      this.#head = '';
      if (rest.length === 0) return;
      chunk = rest;
    }
    let buf = this.#pending === null ? chunk : Buffer.concat([this.#pending, chunk]);
    this.#pending = null;
    const out: Buffer[] = [];
    while (buf.length >= 2) {
      let len = buf[1] & 0x7f;
      let offset = 2;
      if (len === 126) {
        if (buf.length < 4) break;
        len = buf.readUInt16BE(2);
        offset = 4;
      } else if (len === 127) {
        if (buf.length < 10) break;
        len = Number(buf.readBigUInt64BE(2));
        offset = 10;
      }
      const masked = (buf[1] & 0x80) !== 0;
      const total = offset + (masked ? 4 : 0) + len;
      if (buf.length < total) break;
      const opcode = buf[0] & 0x0f;
      if (opcode === 0x8) {
        this.socket.end(Buffer.from([0x88, 0x00]));
        return;
      }
      const header = Buffer.from(buf.subarray(0, offset));
      header[1] &= 0x7f;
      const payload = Buffer.from(buf.subarray(offset + (masked ? 4 : 0), total));
      if (masked) {
        const k0 = buf[offset], k1 = buf[offset + 1], k2 = buf[offset + 2], k3 = buf[offset + 3];
        for (let i = 0; i < len; i++) payload[i] ^= (i & 3) === 0 ? k0 : (i & 3) === 1 ? k1 : (i & 3) === 2 ? k2 : k3;
      }
      out.push(header, payload);
      buf = buf.subarray(total);
    }
    if (buf.length > 0) this.#pending = Buffer.from(buf);
    if (out.length > 0) {
      this.socket.cork();
      for (const b of out) this.socket.write(b);
      this.socket.uncork();
    }
  }
}

net
  .createServer({ noDelay: true }, (socket) => {
    const conn = new EchoConnection(socket);
    socket.on('data', (c) => conn.onData(c));
    socket.on('error', () => socket.destroy());
  })
  // backlog as the peers' (Node's default is 511): in the storm scenario every
  // proxy dials the restarted upstream at once, and at 511 the upstream's
  // full accept queue dropped SYNs (TcpExtListenOverflows), adding the 1 s SYN
  // retransmission to the proxy's handshakes
  .listen({ port, host: '127.0.0.1', backlog: 4096 }, () => process.stdout.write('ready\n'));
process.on('SIGTERM', () => process.exit(0));
