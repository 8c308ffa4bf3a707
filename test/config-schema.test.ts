// Config that says no (issue #15): every unknown field is refused with its
// path and, where one is close, the field meant; the published JSON Schema is
// the validation's own source and accepts every shipped example.
import t from 'tap';
import { readdirSync, readFileSync } from 'node:fs';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { ConfigError, resolveConfig } from '../lib/index.js';
import { validateConfig, type GatewayConfig } from '../lib/config.js';
import { CONFIG_SCHEMA, schemaText } from '../lib/config-schema.js';
import { repoPath } from './helpers/paths.js';

const LOC = { path: '/', upstream: 'http://127.0.0.1:1' };

// [config, the one problem expected]
const TYPOS: Array<[string, unknown, string]> = [
  ['misspelt top-level timeout', { readTimout: 3, routes: ['/=http://127.0.0.1:1'] }, 'readTimout: unknown field (did you mean readTimeout?)'],
  ['misspelt location timeout', { servers: [{ locations: [{ ...LOC, tunelTimeout: 5 }] }] }, 'servers[0].locations[0].tunelTimeout: unknown field (did you mean tunnelTimeout?)'],
  ['wrong case', { servers: [{ locations: [{ ...LOC, ReadTimeout: 5 }] }] }, 'servers[0].locations[0].ReadTimeout: unknown field (did you mean readTimeout?)'],
  ['transposed letters', { servers: [{ locations: [{ ...LOC, websokcet: false }] }] }, 'servers[0].locations[0].websokcet: unknown field (did you mean websocket?)'],
  ['singular of a list', { servers: [{ name: ['a.test'], locations: [LOC] }] }, 'servers[0].name: unknown field (did you mean names?)'],
  ['nginx directive name', { servers: [{ locations: [{ ...LOC, proxy_read_timeout: 5 }] }] }, 'servers[0].locations[0].proxy_read_timeout: unknown field'],
  ['a location field on a server', { servers: [{ upstream: 'http://127.0.0.1:1', locations: [LOC] }] }, 'servers[0].upstream: unknown field here (upstream goes in a location)'],
  ['a server field at the top level', { names: ['a.test'], routes: ['/=http://127.0.0.1:1'] }, 'names: unknown field here (names goes in a server)'],
  ['a top-level field in a location', { servers: [{ locations: [{ ...LOC, maxConnections: 5 }] }] }, 'servers[0].locations[0].maxConnections: unknown field here (maxConnections goes in the top level)'],
  ['second server, second location', { servers: [{ locations: [LOC] }, { names: ['b.test'], locations: [{ path: '/a/', upstream: 'http://127.0.0.1:1' }, { ...LOC, setHeader: {} }] }] }, 'servers[1].locations[1].setHeader: unknown field (did you mean setHeaders?)'],
  ['trailing s', { trustedProxy: ['10.0.0.0/8'], routes: ['/=http://127.0.0.1:1'] }, 'trustedProxy: unknown field (did you mean trustedProxies?)'],
];

t.test('each unknown field is refused with its path and the field meant', async (t) => {
  for (const [name, config, problem] of TYPOS) {
    let err: unknown;
    try {
      resolveConfig(config as unknown as GatewayConfig);
    } catch (e) {
      err = e;
    }
    t.ok(err instanceof ConfigError, `${name}: a ConfigError`);
    t.equal((err as ConfigError).problem, problem, name);
    t.same(validateConfig(config as unknown as GatewayConfig), [problem], `${name}: validateConfig lists it`);
  }
});

t.test('validateConfig lists every unknown field at once, and a bad value when there is none', async (t) => {
  t.same(validateConfig({ readTimout: 1, servers: [{ locations: [{ ...LOC, tunelTimeout: 5 }] }] } as unknown as GatewayConfig), [
    'readTimout: unknown field (did you mean readTimeout?)',
    'servers[0].locations[0].tunelTimeout: unknown field (did you mean tunnelTimeout?)',
  ]);
  t.same(validateConfig({ routes: ['/=http://127.0.0.1:1'], readTimeout: -1 }), ['readTimeout: must be a number of seconds >= 0 (0 disables it), got -1']);
  t.same(validateConfig({ routes: ['/=http://127.0.0.1:1'] }), []);
});

t.test('the fields a JSON file holds: "$schema" is allowed, the library-only logger only at the top', async (t) => {
  t.same(validateConfig({ $schema: './wsgate.schema.json', routes: ['/=http://127.0.0.1:1'] } as unknown as GatewayConfig), []);
  t.doesNotThrow(() => resolveConfig({ routes: ['/=http://127.0.0.1:1'], logger: { log() {} } }));
  t.same(validateConfig({ servers: [{ locations: [{ ...LOC, logger: {} }] }] } as unknown as GatewayConfig), ['servers[0].locations[0].logger: unknown field']);
  // setHeaders and the routes object take any name
  t.same(validateConfig({ routes: { '/': 'http://127.0.0.1:1' }, servers: [{ names: ['x.test'], locations: [{ ...LOC, setHeaders: { 'X-Anything': 'v' } }] }] }), []);
});

t.test('wsgate.schema.json is what lib/config-schema.ts says (npm run schema writes it)', async (t) => {
  t.equal(readFileSync(repoPath('wsgate.schema.json'), 'utf8'), schemaText());
  const pkg = JSON.parse(readFileSync(repoPath('package.json'), 'utf8')) as { files: string[] };
  t.ok(pkg.files.includes('wsgate.schema.json'), 'shipped in the package');
});

t.test('the JSON Schema accepts every example and rejects the typo table', async (t) => {
  const ajv = new Ajv2020({ allErrors: true, strict: true, allowUnionTypes: true });
  const validate = ajv.compile(CONFIG_SCHEMA);
  const dir = repoPath('examples');
  const examples = readdirSync(dir).filter((f) => f.endsWith('.json'));
  t.ok(examples.length >= 4, 'examples found');
  for (const file of examples) {
    const config = JSON.parse(readFileSync(`${dir}/${file}`, 'utf8')) as GatewayConfig;
    t.ok(validate(config), `schema accepts examples/${file}: ${ajv.errorsText(validate.errors)}`);
    t.same(validateConfig(config), [], `wsgate accepts examples/${file}`);
  }
  for (const [name, config] of TYPOS) t.notOk(validate(config), `schema rejects: ${name}`);
});
