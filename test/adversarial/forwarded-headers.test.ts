// X-Forwarded-For / Forwarded spoofing (OWASP WSTG; RFC 7239 §8.1; attacks.md
// #25). From a peer not in `trustedProxies` every forwarding claim is dropped
// and replaced by what wsgate saw; from a trusted peer the X-Forwarded-For
// chain is kept and the peer appended, Proto/Host/Forwarded kept, and
// X-Real-IP is the right-most untrusted address of the chain. Same on the
// upgrade path. The client here is 127.0.0.1: `[]` makes it untrusted.
import { eachRow, send, settle } from '../helpers/adversarial.js';
import { answeringUpstream, startGateway, switchingProtocols, upgradeRequest } from '../helpers/net.js';

const FIELDS = ['X-Forwarded-For', 'X-Real-IP', 'X-Forwarded-Proto', 'X-Forwarded-Host', 'Forwarded'] as const;
type Expected = Record<(typeof FIELDS)[number], string | null>;
const REPLACED: Expected = { 'X-Forwarded-For': '127.0.0.1', 'X-Real-IP': '127.0.0.1', 'X-Forwarded-Proto': 'http', 'X-Forwarded-Host': 'app.example', Forwarded: null };
const ALL_CLAIMS = 'X-Forwarded-For: 203.0.113.7\r\nX-Real-IP: 6.6.6.6\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.example\r\nForwarded: for=203.0.113.7;proto=https\r\n';

interface Row {
  name: string;
  trustedProxies?: string[];
  fields: string;
  upgrade?: boolean;
  expect: Expected;
}

const LOOPBACK = ['127.0.0.0/8', '::1'];
const rows: Row[] = [
  // OWASP WSTG: an untrusted client claims to be loopback
  { name: 'untrusted: X-Forwarded-For is replaced by the peer', trustedProxies: [], fields: 'X-Forwarded-For: 10.9.8.7\r\n', expect: REPLACED },
  // attacks.md #25: two XFF lines are one list (RFC 9110 §5.3), both dropped
  { name: 'untrusted: two X-Forwarded-For lines are replaced', trustedProxies: [], fields: 'X-Forwarded-For: 10.9.8.7\r\nX-Forwarded-For: 10.0.0.1\r\n', expect: REPLACED },
  // RFC 9110 §5.1: field names are case-insensitive
  { name: 'untrusted: a lower-case x-forwarded-for is replaced', trustedProxies: [], fields: 'x-forwarded-for: 10.9.8.7\r\n', expect: REPLACED },
  // attacks.md #25
  { name: 'untrusted: X-Real-IP is replaced by the peer', trustedProxies: [], fields: 'X-Real-IP: 10.9.8.7\r\n', expect: REPLACED },
  // attacks.md #25: a spoofed scheme would turn off the upstream's https redirects
  { name: 'untrusted: X-Forwarded-Proto is replaced by http', trustedProxies: [], fields: 'X-Forwarded-Proto: https\r\n', expect: REPLACED },
  // attacks.md #25: a spoofed host poisons password-reset links and caches
  { name: 'untrusted: X-Forwarded-Host is replaced by Host', trustedProxies: [], fields: 'X-Forwarded-Host: evil.example\r\n', expect: REPLACED },
  // RFC 7239 §8.1
  { name: 'untrusted: Forwarded is dropped', trustedProxies: [], fields: 'Forwarded: for=10.9.8.7;proto=https;host=evil.example\r\n', expect: REPLACED },
  // attacks.md #25: same on the upgrade path
  { name: 'untrusted upgrade: every claim is replaced', trustedProxies: [], fields: ALL_CLAIMS, upgrade: true, expect: REPLACED },
  // a list that names other proxies leaves loopback untrusted
  { name: 'trustedProxies [10.0.0.0/8]: a loopback peer is untrusted', trustedProxies: ['10.0.0.0/8'], fields: ALL_CLAIMS, expect: REPLACED },
  // the default trusts nobody (issue #15): a loopback peer's claims are replaced too
  { name: 'default: X-Forwarded-For from a loopback peer is replaced, not appended to', fields: ALL_CLAIMS, expect: REPLACED },
  { name: 'default upgrade: every claim from a loopback peer is replaced', fields: ALL_CLAIMS, upgrade: true, expect: REPLACED },
  // trusting loopback (a TLS terminator on the same host)
  { name: 'trusted: the chain is kept and the peer appended', trustedProxies: LOOPBACK, fields: 'X-Forwarded-For: 203.0.113.7\r\n', expect: { ...REPLACED, 'X-Forwarded-For': '203.0.113.7, 127.0.0.1', 'X-Real-IP': '203.0.113.7' } },
  // an explicit single address
  { name: "trusted by address ['127.0.0.1']: the chain is kept", trustedProxies: ['127.0.0.1'], fields: 'X-Forwarded-For: 203.0.113.7\r\n', expect: { ...REPLACED, 'X-Forwarded-For': '203.0.113.7, 127.0.0.1', 'X-Real-IP': '203.0.113.7' } },
  // RFC 9110 §5.3: two lines are one chain; the client-written left entry is not the real IP
  { name: 'trusted: two X-Forwarded-For lines form one chain', trustedProxies: LOOPBACK, fields: 'X-Forwarded-For: 198.51.100.4\r\nX-Forwarded-For: 203.0.113.7\r\n', expect: { ...REPLACED, 'X-Forwarded-For': '198.51.100.4, 203.0.113.7, 127.0.0.1', 'X-Real-IP': '203.0.113.7' } },
  // nginx real_ip_recursive: trusted hops are skipped from the right
  { name: 'trusted: X-Real-IP skips trusted hops of the chain', trustedProxies: LOOPBACK, fields: 'X-Forwarded-For: 203.0.113.7, 127.0.0.5\r\n', expect: { ...REPLACED, 'X-Forwarded-For': '203.0.113.7, 127.0.0.5, 127.0.0.1', 'X-Real-IP': '203.0.113.7' } },
  // a non-address in the chain: nothing left of it is believed
  { name: 'trusted: a non-address in the chain stops X-Real-IP at the peer', trustedProxies: LOOPBACK, fields: 'X-Forwarded-For: 203.0.113.7, junk\r\n', expect: { ...REPLACED, 'X-Forwarded-For': '203.0.113.7, junk, 127.0.0.1', 'X-Real-IP': '127.0.0.1' } },
  // X-Real-IP is derived, never taken from the request, even from a trusted peer
  { name: 'trusted: a client X-Real-IP is replaced by the derived one', trustedProxies: LOOPBACK, fields: 'X-Real-IP: 6.6.6.6\r\n', expect: REPLACED },
  // the trusted terminator's scheme, host and Forwarded are kept
  { name: 'trusted: X-Forwarded-Proto, -Host and Forwarded are kept', trustedProxies: LOOPBACK, fields: ALL_CLAIMS, expect: { 'X-Forwarded-For': '203.0.113.7, 127.0.0.1', 'X-Real-IP': '203.0.113.7', 'X-Forwarded-Proto': 'https', 'X-Forwarded-Host': 'evil.example', Forwarded: 'for=203.0.113.7;proto=https' } },
  // same on the upgrade path
  { name: 'trusted upgrade: the chain is kept and the peer appended', trustedProxies: LOOPBACK, fields: ALL_CLAIMS, upgrade: true, expect: { 'X-Forwarded-For': '203.0.113.7, 127.0.0.1', 'X-Real-IP': '203.0.113.7', 'X-Forwarded-Proto': 'https', 'X-Forwarded-Host': 'evil.example', Forwarded: 'for=203.0.113.7;proto=https' } },
];

eachRow(rows, async (t, row) => {
  const upstream = await answeringUpstream(t, row.upgrade ? switchingProtocols() : 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
  const { port } = await startGateway(t, { routes: [`/=http://127.0.0.1:${upstream.port}`], trustedProxies: row.trustedProxies });
  const raw = row.upgrade ? upgradeRequest('/ws', row.fields, 'app.example') : `GET / HTTP/1.1\r\nHost: app.example\r\n${row.fields}\r\n`;
  const res = await send(port, raw, 'one write', row.upgrade ? 300 : 3000);
  await settle();
  t.match(res.text, row.upgrade ? /^HTTP\/1\.1 101 / : /^HTTP\/1\.1 200 /);
  const head = upstream.text();
  t.match(head, /\r\n\r\n$/, 'the upstream got the head');
  for (const name of FIELDS) {
    const values = [...head.matchAll(new RegExp(`\\r\\n${name}: ([^\\r]*)`, 'gi'))].map((m) => m[1]);
    t.same(values, row.expect[name] === null ? [] : [row.expect[name]], name);
  }
});
