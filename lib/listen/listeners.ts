// How wsgate accepts connections: one server per listen address, every
// accepted socket handed to one callback. Plain sockets arrive paused (the
// gateway re-creates each to read into pooled buffers, io/read-buffers.ts);
// TLS ones after their handshake (certificates.ts picks the certificate by
// SNI). All are half-open capable: a client's FIN ends only its write half of
// a tunnel.

import net from 'node:net';
import tls from 'node:tls';
import { CertificateStore, TLS_SERVER_OPTIONS, type CertificatePair } from './certificates.js';

export interface ListenAddress {
  readonly host: string;
  readonly port: number;
  /** `http://host:port/`, or `https://` for a TLS listener. */
  readonly url: string;
  readonly tls: boolean;
}

/** A TLS listener's certificates (the first pair is the default) and how long a handshake may take. */
export interface TlsListen {
  readonly certificates: readonly CertificatePair[];
  readonly handshakeTimeoutMs: number;
}

/** What a listener reports besides accepted sockets. */
export interface ListenerEvents {
  accepted(socket: net.Socket): void;
  /** A listener's error after it was bound. */
  failed(err: Error): void;
  /** A TLS handshake that failed (a scanner, an old client, a bad certificate on the client's side). */
  handshakeFailed(err: Error, socket: tls.TLSSocket): void;
}

interface TlsServer {
  readonly server: tls.Server;
  /** The host and port it was opened with (port 0 for any). */
  readonly asked: { readonly host: string; readonly port: number };
  readonly address: ListenAddress;
  store: CertificateStore;
}

export class Listeners {
  readonly #servers: net.Server[] = [];
  readonly #addresses: ListenAddress[] = [];
  readonly #tls: TlsServer[] = [];
  readonly #events: ListenerEvents;

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

  /**
   * Binds `host:port` (port 0: any free one), serving TLS when `tlsListen` is
   * given; rejects with the bind error, or with why a certificate is unusable.
   */
  open(host: string, port: number, tlsListen: TlsListen | null = null): Promise<ListenAddress> {
    let server: net.Server;
    let entry: Pick<TlsServer, 'server' | 'store'> | null = null;
    if (tlsListen === null) {
      server = net.createServer({ allowHalfOpen: true, noDelay: true, pauseOnConnect: true }, this.#events.accepted);
    } else {
      const store = new CertificateStore(tlsListen.certificates, 'tls.certificates');
      // Not allowHalfOpen here: a client whose FIN comes with its last handshake
      // message would leave the socket in its handshake for good. Half-open
      // from the handshake on (`tlsAccepted`).
      const tlsServer = tls.createServer({
        ...TLS_SERVER_OPTIONS,
        noDelay: true,
        handshakeTimeout: tlsListen.handshakeTimeoutMs > 0 ? tlsListen.handshakeTimeoutMs : 120_000,
        ...store.defaultPair,
        SNICallback: (servername, done) => done(null, current.store.select(servername)),
      });
      tlsServer.on('secureConnection', this.#tlsAccepted);
      tlsServer.on('tlsClientError', this.#tlsFailed);
      const current = (entry = { server: tlsServer, store });
      server = tlsServer;
    }
    server.on('error', this.#events.failed);
    return new Promise((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      server.once('error', onError);
      server.listen({ host, port }, () => {
        server.removeListener('error', onError);
        const address = server.address() as net.AddressInfo;
        const shownHost = address.family === 'IPv6' ? `[${address.address}]` : address.address;
        const scheme = entry === null ? 'http' : 'https';
        const bound: ListenAddress = { host: address.address, port: address.port, url: `${scheme}://${shownHost}:${address.port}/`, tls: entry !== null };
        this.#servers.push(server);
        this.#addresses.push(bound);
        if (entry !== null) this.#tls.push(Object.assign(entry, { asked: { host, port }, address: bound }));
        resolve(bound);
      });
    });
  }

  readonly #tlsAccepted = (socket: tls.TLSSocket): void => {
    socket.allowHalfOpen = true; // read when the client's FIN comes: a tunnel's other direction goes on
    this.#events.accepted(socket);
  };

  /** With a 'tlsClientError' listener node leaves the socket open: it is ours to destroy. */
  readonly #tlsFailed = (err: Error, socket: tls.TLSSocket): void => {
    socket.destroy();
    this.#events.handshakeFailed(err, socket);
  };

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
        errors.push(new Error(`${entry.address.url}: ${(err as Error).message}; keeping the certificates in use`));
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
