import t from 'tap';
import { resolveConfig } from '../../lib/config.js';
import { Router, hostName } from '../../lib/http/router.js';

const router = new Router(
  resolveConfig({
    servers: [
      { names: ['a.test'], locations: [{ path: '/', upstream: 'http://127.0.0.1:1' }, { path: '/ws/', upstream: 'http://127.0.0.1:2/' }] },
      { names: ['*.b.test', '*.x.b.test'], locations: [{ path: '/', upstream: 'http://127.0.0.1:3' }] },
      {
        names: ['c.test'],
        default: true,
        locations: [
          { path: '/api', upstream: 'http://127.0.0.1:4/v1/' },
          { path: '= /api', upstream: 'http://127.0.0.1:5/exact' },
          { path: '/static/', upstream: 'http://127.0.0.1:6' },
        ],
      },
    ],
  }),
);

function route(host: string | null, path: string, query = '') {
  const m = router.match(host, path, query);
  return m && `${m.location.upstream.port} ${m.upstreamTarget}`;
}

t.test('server by Host name: exact, longest wildcard, default', async (t) => {
  t.equal(route('a.test', '/x'), '1 /x');
  t.equal(route('A.TEST:8080', '/x'), '1 /x');
  t.equal(route('a.test.', '/x'), '1 /x', 'trailing dot');
  t.equal(route('q.b.test', '/x'), '3 /x');
  t.equal(route('q.x.b.test', '/x'), '3 /x');
  t.equal(route('b.test', '/static/x'), '6 /static/x', 'wildcard needs a label: default server');
  t.equal(route(null, '/static/x'), '6 /static/x');
  t.equal(route('unknown', '/nothing'), null, 'default server has no / location: 404');
});

t.test('locations: exact first, then the longest prefix; proxy_pass URI rewrite', async (t) => {
  t.equal(route('a.test', '/ws/chat', '?r=1'), '2 /chat?r=1');
  t.equal(route('a.test', '/ws'), '1 /ws', '/ws is not under /ws/');
  t.equal(route('c.test', '/api'), '5 /exact');
  t.equal(route('c.test', '/api/users'), '4 /v1/users', 'no // where prefix and base both carry the slash');
  t.equal(route('c.test', '/apix'), '4 /v1/x', 'nginx semantics: prefix replaced verbatim');
  t.equal(route('c.test', '/api../x'), '4 null', 'a rewrite that climbs out of the base path is refused');
  t.equal(route('c.test', '/api..'), '4 null');
});

t.test('hostName strips port, trailing dot and case; keeps IPv6 brackets', async (t) => {
  t.equal(hostName('Example.COM:80'), 'example.com');
  t.equal(hostName('[::1]:8080'), '[::1]');
  t.equal(hostName('example.com.'), 'example.com');
});

t.test('the last Host remembered does not leak into the next lookup', async (t) => {
  // The router keeps its last Host's server (keep-alive connections repeat it):
  // alternating hosts, repeated ones and one server-less router must still route each by its own Host.
  const sequence: Array<[string | null, string, string | null]> = [
    ['a.test', '/x', '1 /x'],
    ['a.test', '/x', '1 /x'],
    ['q.b.test', '/x', '3 /x'],
    ['a.test', '/ws/y', '2 /y'],
    ['unknown', '/static/z', '6 /static/z'],
    ['unknown', '/x', null],
    [null, '/static/z', '6 /static/z'],
    ['A.TEST', '/x', '1 /x'],
    ['q.b.test', '/x', '3 /x'],
  ];
  for (const [host, path, expected] of sequence) t.equal(route(host, path), expected, `${host} ${path}`);
  const unnamed = new Router(resolveConfig({ servers: [{ locations: [{ path: '/', upstream: 'http://127.0.0.1:7' }] }] }));
  t.equal(unnamed.match('any.test', '/p', '')?.location.upstream.port, 7, 'a router without server names: the default server');
});
