// The certificates a TLS listener serves, and which one a handshake gets:
// the pair whose subjectAltName DNS names match the client's SNI name, exact
// first, then a wildcard (`*.example.com` covers one label, RFC 6125 §6.4.3);
// the first pair for a client without SNI or with a name none covers.
//
// A pair is checked when it is loaded: both files readable, the certificate
// parseable, the key the certificate's own. A reload that fails keeps the
// pairs in use and says why.

import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import tls from 'node:tls';
import { ConfigError } from '../core/errors.js';

/** A certificate (chain) and its key: file paths, or the PEM text itself. */
export interface CertificatePair {
  readonly cert: string;
  readonly key: string;
}

/** What the TLS listeners share: protocol versions and ALPN (HTTP/1.1 only: a client offering h2 gets HTTP/1.1). */
export const TLS_SERVER_OPTIONS = {
  minVersion: 'TLSv1.2',
  maxVersion: 'TLSv1.3',
  ALPNProtocols: ['http/1.1'],
} as const satisfies tls.TlsOptions;

interface Loaded {
  readonly context: tls.SecureContext;
  readonly cert: Buffer;
  readonly key: Buffer;
  /** Lower-cased DNS names of its subjectAltName (or its CN when it has none). */
  readonly names: readonly string[];
}

const isPemText = (source: string): boolean => source.trimStart().startsWith('-----BEGIN');
/** How a message names a source: its path, or "the PEM text given". */
const label = (source: string): string => (isPemText(source) ? 'the PEM text given' : source);

function pem(source: string, what: string, field: string): Buffer {
  if (isPemText(source)) return Buffer.from(source);
  try {
    return readFileSync(source);
  } catch (err) {
    throw new ConfigError(field, `cannot read the ${what} ${source}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/** Reads and checks one pair; throws a ConfigError saying which file is wrong and why. */
export function loadPair(pair: CertificatePair, field: string): Loaded {
  const cert = pem(pair.cert, 'certificate', field);
  const key = pem(pair.key, 'key', field);
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(cert);
  } catch (err) {
    throw new ConfigError(field, `${label(pair.cert)} is not a PEM certificate: ${(err as Error).message}`);
  }
  let privateKey;
  try {
    privateKey = createPrivateKey(key);
  } catch (err) {
    throw new ConfigError(field, `${label(pair.key)} is not a PEM private key: ${(err as Error).message}`);
  }
  if (!x509.checkPrivateKey(privateKey)) throw new ConfigError(field, `the key ${label(pair.key)} does not belong to the certificate ${label(pair.cert)}`);
  let context: tls.SecureContext;
  try {
    context = tls.createSecureContext({ cert, key, minVersion: TLS_SERVER_OPTIONS.minVersion, maxVersion: TLS_SERVER_OPTIONS.maxVersion });
  } catch (err) {
    throw new ConfigError(field, `${label(pair.cert)}: ${(err as Error).message}`);
  }
  return { context, cert, key, names: dnsNames(x509) };
}

function dnsNames(x509: X509Certificate): string[] {
  const san = x509.subjectAltName;
  if (san !== undefined) {
    return san
      .split(', ')
      .filter((entry) => entry.startsWith('DNS:'))
      .map((entry) => entry.slice(4).toLowerCase());
  }
  const cn = /(?:^|\n)CN=([^\n]+)/.exec(x509.subject);
  return cn === null ? [] : [cn[1].toLowerCase()];
}

export class CertificateStore {
  readonly #first: tls.SecureContext;
  /** The first pair, with the protocol versions: a server's own (no SNI) context. */
  readonly defaultPair: { readonly cert: Buffer; readonly key: Buffer; readonly minVersion: tls.SecureVersion; readonly maxVersion: tls.SecureVersion };
  readonly #exact = new Map<string, tls.SecureContext>();
  /** `*.example.com` under `example.com`. */
  readonly #wildcard = new Map<string, tls.SecureContext>();

  /** Loads every pair (in order: the first is the default); throws on the first bad one. */
  constructor(pairs: readonly CertificatePair[], field: string) {
    if (pairs.length === 0) throw new ConfigError(field, `at least one certificate and key are needed`);
    const loaded = pairs.map((pair, i) => loadPair(pair, `${field}[${i}]`));
    this.#first = loaded[0].context;
    this.defaultPair = { cert: loaded[0].cert, key: loaded[0].key, minVersion: TLS_SERVER_OPTIONS.minVersion, maxVersion: TLS_SERVER_OPTIONS.maxVersion };
    for (const { context, names } of loaded) {
      for (const name of names) {
        if (name.startsWith('*.')) {
          if (!this.#wildcard.has(name.slice(2))) this.#wildcard.set(name.slice(2), context);
        } else if (!this.#exact.has(name)) {
          this.#exact.set(name, context);
        }
      }
    }
  }

  /** The context for a handshake that named `servername` (empty: no SNI). */
  select(servername: string): tls.SecureContext {
    const name = servername.toLowerCase().replace(/\.$/, '');
    const exact = this.#exact.get(name);
    if (exact !== undefined) return exact;
    const dot = name.indexOf('.');
    if (dot > 0) {
      const wildcard = this.#wildcard.get(name.slice(dot + 1));
      if (wildcard !== undefined) return wildcard;
    }
    return this.#first;
  }

}
