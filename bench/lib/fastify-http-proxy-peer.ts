// Peer `fastify-http-proxy`: fastify 5 with @fastify/http-proxy 11, as its
// README registers it: `upstream`, `websocket: true`, logger off. HTTP goes
// through @fastify/reply-from on an undici pool; an upgrade is accepted by a
// `ws` server at once (101 before the upstream is dialled) and relayed message
// by message over a second `ws` client to the upstream: WebSocket terminated
// on both sides, not a byte tunnel.
// usage: node fastify-http-proxy-peer.js '{"port":N,"upstreamPort":N,"cert":PATH?,"key":PATH?}'
import { readFileSync } from 'node:fs';
import fastifyHttpProxy from '@fastify/http-proxy';
import Fastify, { type FastifyInstance } from 'fastify';
import { peerArgs } from './peer-args.js';

const args = peerArgs();
const https = args.cert && args.key ? { cert: readFileSync(args.cert), key: readFileSync(args.key) } : null;
// the https server's instance type differs only in its raw server type, which nothing here reads
const app: FastifyInstance = https ? (Fastify({ logger: false, https }) as unknown as FastifyInstance) : Fastify({ logger: false });
await app.register(fastifyHttpProxy, { upstream: `http://127.0.0.1:${args.upstreamPort}`, websocket: true });
await app.listen({ port: args.port, host: '127.0.0.1', backlog: 4096 });
process.on('SIGTERM', () => process.exit(0));
