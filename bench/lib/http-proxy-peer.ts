// Peer `http-proxy`: the npm package most Node users embed (http-proxy 1.18,
// on `node:http`), set up as its README shows: one `createProxyServer` with
// `ws: true`, `request` events through `proxy.web`, `upgrade` events through
// `proxy.ws`, a keep-alive agent for the upstream side, and an `error`
// listener (without one, an upstream error throws and ends the process).
// usage: node http-proxy-peer.js '{"port":N,"upstreamPort":N,"cert":PATH?,"key":PATH?}'
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type net from 'node:net';
import httpProxy from 'http-proxy';
import { peerArgs } from './peer-args.js';

const args = peerArgs();
const proxy = httpProxy.createProxyServer({
  target: `http://127.0.0.1:${args.upstreamPort}`,
  ws: true,
  agent: new http.Agent({ keepAlive: true, maxSockets: 256 }),
});

// A failed exchange answers 502 when no head was sent yet; an upgrade's socket
// (or a response already under way) is destroyed.
proxy.on('error', (_err, _req, res) => {
  if (res instanceof http.ServerResponse) {
    if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain', connection: 'close' });
    res.end('bad gateway\n');
  } else {
    (res as net.Socket).destroy();
  }
});

const onRequest = (req: http.IncomingMessage, res: http.ServerResponse) => proxy.web(req, res);
const server = args.cert && args.key ? https.createServer({ cert: readFileSync(args.cert), key: readFileSync(args.key) }, onRequest) : http.createServer(onRequest);
server.on('upgrade', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
  socket.on('error', () => socket.destroy());
  proxy.ws(req, socket, head);
});
server.listen({ port: args.port, host: '127.0.0.1', backlog: 4096 });
process.on('SIGTERM', () => process.exit(0));
