// What the harness hands a Node proxy peer's script (http-proxy-peer.ts,
// fastify-http-proxy-peer.ts): one JSON argument.

export interface PeerArgs {
  port: number;
  upstreamPort: number;
  /** TLS: certificate and key files; both or neither. */
  cert?: string;
  key?: string;
}

/** The peer's arguments, from argv[2]. */
export function peerArgs(): PeerArgs {
  return JSON.parse(process.argv[2] ?? '{}') as PeerArgs;
}
