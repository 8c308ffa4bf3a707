// Which peers may speak for the client. Forwarding fields (X-Forwarded-For,
// X-Real-IP, X-Forwarded-Proto/-Host, Forwarded) are claims anyone can write;
// only a proxy we run ourselves is believed (RFC 7239 §8.1, OWASP WSTG
// "X-Forwarded-For spoofing"). Everyone else's are replaced.

import net from 'node:net';

export class TrustedProxies {
  readonly #list = new net.BlockList();
  readonly #empty: boolean;

  /** `entries`: addresses and CIDRs, IPv4 or IPv6, already validated by `parseTrustedProxy`. */
  constructor(entries: readonly string[]) {
    this.#empty = entries.length === 0;
    for (const entry of entries) {
      const parsed = parseTrustedProxy(entry)!;
      if (parsed.prefix === null) this.#list.addAddress(parsed.address, parsed.family);
      else this.#list.addSubnet(parsed.address, parsed.prefix, parsed.family);
    }
  }

  /** True when `address` (as a socket reports it; IPv4-mapped IPv6 included) is a trusted proxy. */
  contains(address: string): boolean {
    if (this.#empty) return false;
    const family = net.isIP(address);
    if (family === 0) return false;
    return this.#list.check(address, family === 4 ? 'ipv4' : 'ipv6');
  }

  /**
   * The client as the trusted chain reports it: the right-most address of
   * `X-Forwarded-For, peer` that is not a trusted proxy (nginx `real_ip_recursive on`).
   * Entries that are not addresses stop the walk: nothing left of them can be believed.
   */
  realClient(forwardedFor: string, peer: string): string {
    let candidate = peer;
    let end = forwardedFor.length;
    while (end > 0 && this.contains(candidate)) {
      const comma = forwardedFor.lastIndexOf(',', end - 1);
      const entry = forwardedFor.slice(comma + 1, end).trim();
      end = comma < 0 ? 0 : comma;
      if (entry === '') continue;
      if (net.isIP(entry) === 0) break;
      candidate = entry;
    }
    return candidate;
  }
}

/** Loopback: a TLS terminator or load balancer on the same host. `[]` trusts nobody. */
/**
 * Nobody, by default (Caddy and Envoy do the same): behind anything local that
 * forwards raw TCP (stunnel, an SSH or cloud tunnel agent, an L4 balancer on
 * the same host) every client would arrive from loopback, and any client's own
 * X-Forwarded-For would be believed.
 */
export const DEFAULT_TRUSTED_PROXIES: readonly string[] = [];

/** `10.0.0.0/8`, `::1`, `2001:db8::/32`; null when `entry` is neither an address nor a CIDR. */
export function parseTrustedProxy(entry: string): { address: string; prefix: number | null; family: 'ipv4' | 'ipv6' } | null {
  if (typeof entry !== 'string') return null;
  const slash = entry.indexOf('/');
  const address = slash < 0 ? entry : entry.slice(0, slash);
  const version = net.isIP(address);
  if (version === 0) return null;
  const family = version === 4 ? 'ipv4' : 'ipv6';
  if (slash < 0) return { address, prefix: null, family };
  const digits = entry.slice(slash + 1);
  if (!/^\d{1,3}$/.test(digits)) return null;
  const prefix = Number(digits);
  if (prefix > (version === 4 ? 32 : 128)) return null;
  return { address, prefix, family };
}
