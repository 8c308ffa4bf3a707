// The smallest Node relay, the floor for any Node proxy: accept, connect,
// pipe both ways. No parsing, no header rewrite, no timeouts.
// usage: node naive-relay.js LISTEN_PORT UPSTREAM_PORT
import net from 'node:net';

const [listenPort, upstreamPort] = process.argv.slice(2).map(Number);
net
  .createServer((client) => {
    const upstream = net.connect(upstreamPort, '127.0.0.1');
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    client.pipe(upstream).pipe(client);
  })
  .listen(listenPort, '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));
