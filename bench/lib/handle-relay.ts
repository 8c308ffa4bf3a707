// An experiment, not product code (#16, "Idle memory"): the smallest relay
// that keeps, per tunnel, only the two libuv TCP handles and no net.Socket.
// It answers one question: what would wsgate's idle tunnel cost if the tunnel
// dropped both sockets after the 101 and drove the handles itself? It blindly
// relays bytes (no parsing), like naive-relay.ts, which keeps the sockets.
//
// It reaches below Node's public API (`process.binding('stream_wrap')` for a
// read's byte count, the handle's `onread` slot, its `owner_symbol`), so it
// lives in bench/, not lib/: in wsgate such a path would have to live in
// lib/io/node-internals.ts with a probe and a public fallback. Writes go
// through that module's `writeToHandle` (its contract probed first).
import net from 'node:net';
import { fastPaths, writeToHandle, type PendingWrite, type StreamHandle } from '../../lib/io/node-internals.js';
import { probeFastPaths } from '../../lib/io/probe.js';

interface TcpHandle extends StreamHandle {
  onread: (arrayBuffer: ArrayBuffer | undefined) => void;
  readStart(): number;
  readStop(): number;
  close(callback?: () => void): void;
}

interface StreamState {
  streamBaseState: Int32Array;
  kReadBytesOrError: number;
  kArrayBufferOffset: number;
}

/** One relayed direction's far end and the bytes waiting for it (before the upstream connects). */
interface Side {
  handle: TcpHandle;
  peer: Side | null;
  waiting: Buffer[];
  closed: boolean;
}

/** Idle tunnels held by their handles only: what the measurement counts. */
export const tunnels = new Set<Side>();

/** Starts the relay on `port` (0: any) to the upstream at `upstreamPort`; resolves to its listening server. */
export async function startHandleRelay(port: number, upstreamPort: number): Promise<net.Server> {
  await probeFastPaths();
  if (fastPaths().handleWrites === 'off') throw new Error('the handles-only relay needs handle writes, which are off here (WSGATE_FAST_PATHS or the probe)');
  const binding = (process as unknown as { binding(name: string): StreamState }).binding('stream_wrap');
  const { streamBaseState, kReadBytesOrError, kArrayBufferOffset } = binding;

  /** The socket's handle, taken from it: the socket is destroyed without closing the handle and can be collected. */
  function takeHandle(socket: net.Socket): TcpHandle {
    const holder = socket as unknown as { _handle: TcpHandle | null };
    const handle = holder._handle!;
    holder._handle = null;
    for (const symbol of Object.getOwnPropertySymbols(handle)) {
      if (symbol.description === 'owner_symbol') (handle as unknown as Record<symbol, unknown>)[symbol] = null;
    }
    socket.destroy();
    return handle;
  }

  function write(to: Side, bytes: Buffer): void {
    if (to.closed) return;
    const result = writeToHandle(to.handle, 0, bytes);
    if (typeof result === 'number') {
      if (result < 0) close(to);
      return;
    }
    const pending = result as PendingWrite;
    pending.buffer = bytes;
    pending.oncomplete = () => {};
  }

  function close(side: Side): void {
    for (const s of [side, side.peer]) {
      if (s === null || s.closed) continue;
      s.closed = true;
      s.handle.readStop();
      s.handle.close();
    }
    tunnels.delete(side);
    if (side.peer !== null) tunnels.delete(side.peer);
  }

  function reading(side: Side): void {
    side.handle.onread = (arrayBuffer) => {
      const nread = streamBaseState[kReadBytesOrError];
      if (nread < 0) return close(side);
      if (nread === 0 || arrayBuffer === undefined) return;
      const bytes = Buffer.from(arrayBuffer, streamBaseState[kArrayBufferOffset], nread);
      if (side.peer === null) side.waiting.push(bytes);
      else write(side.peer, bytes);
    };
    side.handle.readStart();
  }

  const server = net.createServer({ pauseOnConnect: true }, (accepted) => {
    const client: Side = { handle: takeHandle(accepted), peer: null, waiting: [], closed: false };
    tunnels.add(client);
    reading(client);
    const dial = net.connect(upstreamPort, '127.0.0.1', () => {
      if (client.closed) return dial.destroy();
      const upstream: Side = { handle: takeHandle(dial), peer: client, waiting: [], closed: false };
      client.peer = upstream;
      reading(upstream);
      for (const bytes of client.waiting) write(upstream, bytes);
      client.waiting = [];
    });
    dial.once('error', () => close(client));
  });
  server.listen(port, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  return server;
}
