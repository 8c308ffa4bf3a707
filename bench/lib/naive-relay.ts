// The smallest Node relay, the floor for any Node proxy: accept, connect,
// pipe both ways. No parsing, no header rewrite, no timeouts.
// usage: node naive-relay.js LISTEN_PORT UPSTREAM_PORT
// (bench/tunnel-memory.ts starts it in its own process with `startNaiveRelay`.)
import { once } from 'node:events';
import net from 'node:net';
import { fileURLToPath } from 'node:url';

/** Listens on `listenPort` (0: any) and relays each connection to `upstreamPort`; resolves to the server. */
export async function startNaiveRelay(listenPort: number, upstreamPort: number): Promise<net.Server> {
  const server = net.createServer((client) => {
    const upstream = net.connect(upstreamPort, '127.0.0.1');
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    client.pipe(upstream).pipe(client);
  });
  server.listen(listenPort, '127.0.0.1');
  await once(server, 'listening');
  return server;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [listenPort, upstreamPort] = process.argv.slice(2).map(Number);
  await startNaiveRelay(listenPort, upstreamPort);
  process.on('SIGTERM', () => process.exit(0));
}
