// Path normalisation against prefix routing (Orange Tsai, "Breaking Parser
// Logic", Black Hat 2018; GrrrDog weird_proxies; attacks.md #22, #23). wsgate
// routes on the normalised path and sends that same path (README "Paths"), so
// a path is routed by what it means or refused with 400, never routed by its
// raw prefix. Each row asserts which upstream got it and the exact path sent.
import { eachRow, send, settle } from '../helpers/adversarial.js';
import { answeringUpstream, startGateway, type RawUpstream } from '../helpers/net.js';

type Upstream = 'ws' | 'admin' | 'root' | 'api';
interface Row {
  name: string;
  target: string;
  /** Which upstream gets it, with the path it must see; or the status of a refusal. */
  to: Upstream | 400;
  path?: string;
  host?: string;
}

const rows: Row[] = [
  // Orange Tsai BH2018; attacks.md #22: a dot segment climbs out of the prefix
  { name: '/ws/../admin goes to /admin', target: '/ws/../admin', to: 'admin', path: '/admin' },
  // attacks.md #22: an encoded dot is a dot (RFC 3986 §2.3)
  { name: '/ws/%2e%2e/admin goes to /admin', target: '/ws/%2e%2e/admin', to: 'admin', path: '/admin' },
  // RFC 3986 §6.2.2.2: half-encoded dots are dots too
  { name: '/ws/.%2E/admin goes to /admin', target: '/ws/.%2E/admin', to: 'admin', path: '/admin' },
  // attacks.md #22: an encoded slash glued to dots is refused
  { name: '/ws/%2E%2E%2Fadmin is refused', target: '/ws/%2E%2E%2Fadmin', to: 400 },
  // attacks.md #22
  { name: '/ws/..%2fadmin is refused', target: '/ws/..%2fadmin', to: 400 },
  // attacks.md #22: an encoded backslash glued to dots (IIS, Windows upstreams)
  { name: '/ws/..%5cadmin is refused', target: '/ws/..%5cadmin', to: 400 },
  // attacks.md #22: a raw backslash
  { name: '/ws\\..\\admin is refused', target: '/ws\\..\\admin', to: 400 },
  // Orange Tsai BH2018 (Tomcat `..;`): RFC 3986 makes `..;` a plain segment: it stays on /ws/, unchanged
  { name: '/ws/..;/admin stays on /ws/ as sent', target: '/ws/..;/admin', to: 'ws', path: '/ws/..;/admin' },
  // nginx merge_slashes; attacks.md #22
  { name: '//admin goes to /admin', target: '//admin', to: 'admin', path: '/admin' },
  // RFC 3986 §2.3: an encoded unreserved character is that character
  { name: '/%77s/x goes to /ws/x', target: '/%77s/x', to: 'ws', path: '/ws/x' },
  // attacks.md #22: the `/ws/` prefix is not a string prefix of `/wsadmin`
  { name: '/wsadmin is not /ws/', target: '/wsadmin', to: 'root', path: '/wsadmin' },
  // RFC 3986 §3.4: dots in the query are not path segments
  { name: '/ws?/../admin is /ws with a query', target: '/ws?/../admin', to: 'root', path: '/ws?/../admin' },
  // attacks.md #22: a path that climbs above /
  { name: '/ws/../../admin is refused', target: '/ws/../../admin', to: 400 },
  // attacks.md #22
  { name: '/%2e%2e/admin is refused', target: '/%2e%2e/admin', to: 400 },
  // double encoding: one decode by the upstream gives `%2e`, a literal, not a dot
  { name: '/ws/%252e%252e/admin stays on /ws/ as sent', target: '/ws/%252e%252e/admin', to: 'ws', path: '/ws/%252e%252e/admin' },
  // RFC 3986 §5.2.4
  { name: '/admin/../ws/x goes to /ws/x', target: '/admin/../ws/x', to: 'ws', path: '/ws/x' },
  // RFC 3986 §5.2.4: leaving the prefix by its last segment
  { name: '/ws/.. goes to /', target: '/ws/..', to: 'root', path: '/' },
  // RFC 9112 §3.2.2: absolute-form is normalised the same way
  { name: 'absolute-form http://a/ws/../admin goes to /admin', target: 'http://a/ws/../admin', to: 'admin', path: '/admin' },
  // nginx `location /api { proxy_pass http://u/v1/; }`; attacks.md #23: control
  { name: 'rewrite: /api/users goes to /v1/users', host: 'rw.test', target: '/api/users', to: 'api', path: '/v1/users' },
  // attacks.md #23 (off-by-slash): /v1/../x would leave /v1/
  { name: 'rewrite: /api../x is refused', host: 'rw.test', target: '/api../x', to: 400 },
  // attacks.md #23
  { name: 'rewrite: /api.. is refused', host: 'rw.test', target: '/api..', to: 400 },
  // attacks.md #23: the encoded-slash variant
  { name: 'rewrite: /api..%2fx is refused', host: 'rw.test', target: '/api..%2fx', to: 400 },
  // attacks.md #23: no `//` in what is sent
  { name: 'rewrite: /api//x goes to /v1/x', host: 'rw.test', target: '/api//x', to: 'api', path: '/v1/x' },
  // nginx prefix semantics: `location /api` matches /apix; the rewrite stays inside /v1/
  { name: 'rewrite: /apix goes to /v1/x, inside /v1/', host: 'rw.test', target: '/apix', to: 'api', path: '/v1/x' },
  // attacks.md #23: dot segments resolve before the location is chosen
  { name: 'rewrite: /api/../x goes to / unrewritten', host: 'rw.test', target: '/api/../x', to: 'root', path: '/x' },
  // attacks.md #23
  { name: 'rewrite: /api/%2e%2e/x goes to / unrewritten', host: 'rw.test', target: '/api/%2e%2e/x', to: 'root', path: '/x' },
];

eachRow(rows, async (t, row) => {
  const names: Upstream[] = ['ws', 'admin', 'root', 'api'];
  const ups = {} as Record<Upstream, RawUpstream>;
  for (const name of names) ups[name] = await answeringUpstream(t, `HTTP/1.1 200 OK\r\nContent-Length: ${name.length}\r\n\r\n${name}`);
  const url = (name: Upstream, path = '') => `http://127.0.0.1:${ups[name].port}${path}`;
  const { port } = await startGateway(t, {
    servers: [
      { locations: [{ path: '/ws/', upstream: url('ws') }, { path: '/admin', upstream: url('admin') }, { path: '/', upstream: url('root') }] },
      { names: ['rw.test'], locations: [{ path: '/api', upstream: url('api', '/v1/') }, { path: '/', upstream: url('root') }] },
    ],
  });
  const res = await send(port, `GET ${row.target} HTTP/1.1\r\nHost: ${row.host ?? 'a'}\r\n\r\n`);
  await settle();
  if (row.to === 400) {
    t.match(res.text, /^HTTP\/1\.1 400 /);
  } else {
    t.match(res.text, new RegExp(`^HTTP/1\\.1 200 OK\\r\\n[^]*\\r\\n\\r\\n${row.to}$`), `routed to ${row.to}`);
    t.equal(/^GET (\S*) HTTP\/1\.1\r\n/.exec(ups[row.to].text())?.[1], row.path, 'the path the upstream received');
  }
  for (const name of names) if (name !== row.to) t.equal(ups[name].received.length, 0, `nothing reached ${name}`);
});
