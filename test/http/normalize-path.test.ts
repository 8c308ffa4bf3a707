import t from 'tap';
import { normalizeTarget } from '../../lib/http/normalize-path.js';

t.test('normalises what routing and the upstream see', async (t) => {
  const cases: Array<[string, string | null, string?]> = [
    ['/', '/'],
    ['/ws/chat', '/ws/chat'],
    ['/ws/chat?x=1&y=/../', '/ws/chat', '?x=1&y=/../'],
    ['/%77s/x', '/ws/x'],
    ['/a%2db%7E', '/a-b~'],
    ['/a%2fb', '/a%2Fb'],
    ['/a%c3%a9', '/a%C3%A9'],
    ['//a///b//', '/a/b/'],
    ['/a/./b/.', '/a/b/'],
    ['/a/b/../c', '/a/c'],
    ['/ws/../admin', '/admin'],
    ['/ws/%2e%2e/admin', '/admin'],
    ['/ws/%2E%2E', '/'],
    ['/a/..', '/'],
    ['/..', null],
    ['/a/../../b', null],
    ['/%2e%2e/x', null],
    ['/ws/..%2fadmin', null],
    ['/ws/..%5Cadmin', null],
    ['/ws\\..\\admin', null],
    ['/%E0%A4%A', null],
    ['/%zz', null],
    ['/%00', null],
    ['*', null],
    ['admin', null],
    ['', null],
    ['/x#frag', '/x'],
  ];
  for (const [input, path, query = input.includes('?') ? input.slice(input.indexOf('?')) : ''] of cases) {
    const out = normalizeTarget(input);
    if (path === null) t.equal(out, null, `${JSON.stringify(input)} refused`);
    else t.same(out, { path, query }, `${JSON.stringify(input)} -> ${path}`);
  }
});
