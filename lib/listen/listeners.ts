// How wsgate accepts connections: one server per listen address, every
// accepted socket handed to one callback. Plain sockets arrive paused (the
// gateway re-creates each to read into pooled buffers, io/read-buffers.ts);
// TLS ones after their handshake (certificates.ts picks the certificate by
// SNI). On a listener with `proxyProtocol`, the PROXY header
// (proxy-header.ts) is read first, before the request or the ClientHello,
// and says who the client is. All are half-open capable: a client's FIN ends
// only its write half of a tunnel.

import net from 'node:net';
import tls from 'node:tls';
import { CertificateStore, TLS_SERVER_OPTIONS, type CertificatePair } from './certificates.js';
import type { ProxiedAddresses } from '../http/proxy-protocol.js';
import { readProxyHeader } from './proxy-header.js';

export interface ListenAddress {
  readonly host: string;
  readonly port: number;
  /** `http://host:port/`, or `https://` for a TLS listener. */
  readonly url: string;
  readonly tls: boolean;
  /** The listener reads a PROXY protocol header first. */
  readonly proxyProtocol: boolean;
}

export interface ListenOptions {
  readonly host: string;
  readonly port: number;
  /** Serve TLS with these certificates (the first pair is the default), or null. */
  readonly tls: { readonly certificates: readonly CertificatePair[] } | null;
  /** Read a PROXY protocol header (v1 or v2) before anything else. */
  readonly proxyProtocol: boolean;
  /** How long a TLS handshake, or a PROXY header, may take. */
  readonly handshakeTimeoutMs: number;
  /** Connections the kernel queues before they are accepted (`listen(2)` backlog). */
  readonly backlog: number;
  /** Bind with SO_REUSEPORT (Node 22.12+ on Linux): worker processes each bind the same address. */
  readonly reusePort?: boolean;
}

/** Who a connection is from, when a PROXY header said so. */
export interface Proxied {
  /** The client's addresses, or null (LOCAL, UNKNOWN): the connection's own apply. */
  readonly addresses: ProxiedAddresses | null;
  /** Bytes after the header, already read (plain listeners; a TLS one hands them to the handshake). */
  readonly initial: Buffer | null;
}

/** What a listener reports besides accepted sockets. */
export interface ListenerEvents {
  /** A new connection; `proxied`: what its PROXY header said (null on a listener without the option). */
  accepted(socket: net.Socket, proxied: Proxied | null): void;
  /** A listener's error after it was bound. */
  failed(err: Error): void;
  /** A TLS handshake that failed (a scanner, an old client, a client that does not trust us). */
  handshakeFailed(err: Error, socket: net.Socket): void;
  /** A connection on a PROXY protocol listener without a valid header: closed unanswered. */
  proxyHeaderFailed(reason: string, socket: net.Socket): void;
}

interface TlsServer {
  readonly server: tls.Server;
  /** The host and port it was opened with (port 0 for any). */
  readonly asked: { readonly host: string; readonly port: number };
  store: CertificateStore;
}

export class Listeners {
  readonly #servers: net.Server[] = [];
  readonly #addresses: ListenAddress[] = [];
  readonly #tls: TlsServer[] = [];
  readonly #events: ListenerEvents;
  /**
   * TLS connections behind a PROXY header, by their TCP peer (`address|port`):
   * the TLS socket node builds over the raw one reports the same peer.
   */
  readonly #proxiedTls = new Map<string, ProxiedAddresses | null>();

  constructor(events: ListenerEvents) {
    this.#events = events;
  }

  /** Addresses bound so far. */
  get addresses(): readonly ListenAddress[] {
    return this.#addresses;
  }

  /** Open listening sockets (each holds a descriptor). */
  get count(): number {
    return this.#servers.length;
  }

  /** Binds `host:port` (port 0: any free one); rejects with the bind error, or with why a certificate is unusable. */
  open(options: ListenOptions): Promise<ListenAddress> {
    const { host, port, proxyProtocol } = options;
    const tlsEntry = options.tls === null ? null : this.#tlsServer(options.tls.certificates, options.handshakeTimeoutMs, { host, port });
    let server: net.Server;
    if (proxyProtocol) {
      server = net.createServer({ allowHalfOpen: true, noDelay: true }, (socket) => this.#readHeader(socket, tlsEntry, options.handshakeTimeoutMs));
    } else if (tlsEntry !== null) {
      server = tlsEntry.server;
    } else {
      // No `noDelay` here: the connection sets it once it has its socket
      // (proxy/connection.ts), and with pooled reads that is a new net.Socket
      // over the handle, which does not know node set it: a second setsockopt.
      server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (socket) => this.#events.accepted(socket, null));
    }
    server.on('error', this.#events.failed);
    return new Promise((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      server.once('error', onError);
      // `reusePort` is Node 22.12+; @types/node 20 does not name it.
      server.listen({ host, port, backlog: options.backlog, ...(options.reusePort === true ? { reusePort: true } : {}) } as net.ListenOptions, () => {
        server.removeListener('error', onError);
        const address = server.address() as net.AddressInfo;
        const shownHost = address.family === 'IPv6' ? `[${address.address}]` : address.address;
        const scheme = tlsEntry === null ? 'http' : 'https';
        const bound: ListenAddress = { host: address.address, port: address.port, url: `${scheme}://${shownHost}:${address.port}/`, tls: tlsEntry !== null, proxyProtocol };
        this.#servers.push(server);
        this.#addresses.push(bound);
        if (tlsEntry !== null) {
          this.#tls.push(tlsEntry);
          if (this.#ticketKeys !== null) tlsEntry.server.setTicketKeys(this.#ticketKeys);
        }
        resolve(bound);
      });
    });
  }

  /**
   * A TLS server for `certificates`. Not allowHalfOpen: a client whose FIN
   * comes with its last handshake message would leave the socket in its
   * handshake for good. Half-open from the handshake on (`#tlsAccepted`).
   */
  #tlsServer(certificates: readonly CertificatePair[], handshakeTimeoutMs: number, asked: TlsServer['asked']): TlsServer {
    const store = new CertificateStore(certificates, 'tls.certificates');
    const server = tls.createServer({
      ...TLS_SERVER_OPTIONS,
      noDelay: true,
      handshakeTimeout: handshakeTimeoutMs > 0 ? handshakeTimeoutMs : 120_000,
      ...store.defaultPair,
      SNICallback: (servername, done) => done(null, entry.store.select(servername)),
    });
    const entry: TlsServer = { server, asked, store };
    server.on('secureConnection', this.#tlsAccepted);
    server.on('tlsClientError', this.#tlsFailed);
    return entry;
  }

  readonly #tlsAccepted = (socket: tls.TLSSocket): void => {
    socket.allowHalfOpen = true; // read when the client's FIN comes: a tunnel's other direction goes on
    let proxied: Proxied | null = null;
    if (this.#proxiedTls.size > 0) {
      const key = `${socket.remoteAddress}|${socket.remotePort}`;
      if (this.#proxiedTls.has(key)) {
        proxied = { addresses: this.#proxiedTls.get(key)!, initial: null };
        this.#proxiedTls.delete(key);
      }
    }
    this.#events.accepted(socket, proxied);
  };

  /** With a 'tlsClientError' listener node leaves the socket open: it is ours to destroy. */
  readonly #tlsFailed = (err: Error, socket: tls.TLSSocket): void => {
    socket.destroy();
    this.#events.handshakeFailed(err, socket);
  };

  /** A connection on a PROXY protocol listener: its header first, then TLS or HTTP. */
  #readHeader(socket: net.Socket, tlsEntry: TlsServer | null, timeoutMs: number): void {
    readProxyHeader(socket, timeoutMs, (read) => {
      if ('error' in read) {
        socket.destroy();
        this.#events.proxyHeaderFailed(read.error, socket);
        return;
      }
      if (tlsEntry === null) {
        this.#events.accepted(socket, { addresses: read.addresses, initial: read.rest.length > 0 ? read.rest : null });
        return;
      }
      // The ClientHello (or its start) may have come with the header: it goes back first.
      const key = `${socket.remoteAddress}|${socket.remotePort}`;
      this.#proxiedTls.set(key, read.addresses);
      socket.once('close', () => this.#proxiedTls.delete(key));
      if (read.rest.length > 0) socket.unshift(read.rest);
      tlsEntry.server.emit('connection', socket); // documented: injects a connection into a TLS server
    });
  }

  /** Session ticket keys (48 bytes) for every TLS listener, now and opened later: workers share one set. */
  setTicketKeys(keys: Buffer): void {
    this.#ticketKeys = keys;
    for (const entry of this.#tls) entry.server.setTicketKeys(keys);
  }

  #ticketKeys: Buffer | null = null;

  /**
   * New handshakes on each TLS listener use the certificates `pairsFor` gives
   * for the host and port it was opened with (null: leave it as it is); open
   * connections keep theirs. A listener whose new pairs fail to load keeps
   * its old ones: the errors are returned.
   */
  reloadCertificates(pairsFor: (asked: { host: string; port: number }) => readonly CertificatePair[] | null): Error[] {
    const errors: Error[] = [];
    for (const entry of this.#tls) {
      const pairs = pairsFor(entry.asked);
      if (pairs === null) continue;
      try {
        const store = new CertificateStore(pairs, 'tls.certificates');
        entry.server.setSecureContext(store.defaultPair);
        entry.store = store;
      } catch (err) {
        errors.push(new Error(`${entry.asked.host}:${entry.asked.port}: ${(err as Error).message}; keeping the certificates in use`));
      }
    }
    return errors;
  }

  /** Stops accepting on every address; `closed` runs once all are closed (never inside this call). */
  close(closed: () => void): void {
    let open = this.#servers.length;
    if (open === 0) {
      process.nextTick(closed);
      return;
    }
    for (const server of this.#servers) {
      server.close(() => {
        if (--open === 0) closed();
      });
    }
  }
}
