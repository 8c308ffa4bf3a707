// Sockets that read the way wsgate's do (lib/io/read-buffers.ts), for tests of
// what a read's buffer may be reused for, and a server that makes each message
// one read on the other end.
import net from 'node:net';
import { once } from 'node:events';
import { dispatchRead, onreadFor } from '../../lib/io/read-buffers.js';
import type { Teardown } from './net.js';

/** A server that sends each message in its own write, a little apart (one read each), then ends; resolves to its port. */
export async function oneReadEach(t: Teardown, messages: Buffer[]): Promise<number> {
  const server = net.createServer((socket) => {
    let i = 0;
    const next = (): void => {
      if (i < messages.length) socket.write(messages[i++], () => setTimeout(next, 5));
      else socket.end();
    };
    next();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => server.close());
  return (server.address() as net.AddressInfo).port;
}

/** A client reading into pooled buffers; each read is dispatched to `onChunk`; `buffersUsed`: the buffers read into, `reads` in order. */
export function pooledReader(port: number, onChunk: (chunk: Buffer) => void): { source: net.Socket; buffersUsed: Set<Uint8Array>; reads: Array<{ buffer: Uint8Array; nread: number }> } {
  const buffersUsed = new Set<Uint8Array>();
  const reads: Array<{ buffer: Uint8Array; nread: number }> = [];
  let source: net.Socket | undefined = undefined; // Node asks for the first buffer before net.connect returns
  source = net.connect({
    port,
    host: '127.0.0.1',
    onread: onreadFor(() => source, function (this: net.Socket, nread: number, buffer: Uint8Array) {
        buffersUsed.add(buffer);
        reads.push({ buffer, nread });
        dispatchRead(this, nread, buffer as Buffer, (_s, chunk) => onChunk(chunk));
        return true;
    }),
  });
  return { source, buffersUsed, reads };
}
