// A test PKI made with Debian's openssl: one CA, and leaf certificates for
// the names a test asks for, signed by it (keys: EC P-256, quick to make).
// Everything lives in a temp dir removed at teardown.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Teardown } from './net.js';

export interface Leaf {
  readonly cert: string;
  readonly key: string;
  readonly certPem: string;
  readonly keyPem: string;
}

export interface Pki {
  readonly dir: string;
  readonly caCert: string;
  readonly caPem: string;
  /** A certificate for `names` (DNS names, or IP addresses) signed by the CA. */
  leaf(name: string, names: readonly string[]): Leaf;
  /** A self-signed certificate (no CA vouches for it). */
  selfSigned(name: string, names: readonly string[]): Leaf;
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

function sanOf(names: readonly string[]): string {
  return names.map((n) => (/^[\d.]+$|:/.test(n) ? `IP:${n}` : `DNS:${n}`)).join(',');
}

export function makePki(t: Teardown): Pki {
  const dir = mkdtempSync(join(tmpdir(), 'wsgate-pki-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=wsgate test CA'], dir);
  let serial = 1;
  const read = (name: string): Leaf => ({
    cert: join(dir, `${name}.pem`),
    key: join(dir, `${name}.key`),
    certPem: readFileSync(join(dir, `${name}.pem`), 'utf8'),
    keyPem: readFileSync(join(dir, `${name}.key`), 'utf8'),
  });
  return {
    dir,
    caCert: join(dir, 'ca.pem'),
    caPem: readFileSync(join(dir, 'ca.pem'), 'utf8'),
    leaf(name, names) {
      writeFileSync(join(dir, `${name}.ext`), `subjectAltName=${sanOf(names)}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n`);
      openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${names[0]}`], dir);
      openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-set_serial', String(serial++), '-days', '2', '-out', `${name}.pem`, '-extfile', `${name}.ext`], dir);
      return read(name);
    },
    selfSigned(name, names) {
      openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.pem`, '-days', '2', '-subj', `/CN=${names[0]}`, '-addext', `subjectAltName=${sanOf(names)}`], dir);
      return read(name);
    },
  };
}
