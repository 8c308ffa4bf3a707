// The README's error table, the codes in lib/core/errors.ts and the prebuilt
// answers stay in sync (fastify test/internals/errors.test.js does the same).
import t from 'tap';
import { readFileSync } from 'node:fs';
import { ERROR_CODES, WsgateError, ConfigError } from '../../lib/core/errors.js';
import { errorResponse } from '../../lib/core/responses.js';
import { repoPath } from '../helpers/paths.js';

const readme = readFileSync(repoPath('README.md'), 'utf8');
const table = readme.slice(readme.indexOf('## Errors'), readme.indexOf('## How it works'));
const rows = [...table.matchAll(/^\| `(WSG_ERR_[A-Z_]+)` \| (\d+) \| (\w+) \|/gm)].map((m) => ({ code: m[1], status: Number(m[2]), side: m[3] }));

t.test('every error code is documented in the README with its status and side', async (t) => {
  t.same(
    rows.map((r) => r.code).sort(),
    Object.keys(ERROR_CODES).sort(),
  );
  for (const row of rows) {
    const spec = ERROR_CODES[row.code as keyof typeof ERROR_CODES];
    t.equal(row.status, spec.status, `${row.code} status`);
    t.equal(row.side, spec.side, `${row.code} side`);
  }
});

t.test('every status wsgate answers has a prebuilt response with Connection: close', async (t) => {
  for (const [code, spec] of Object.entries(ERROR_CODES)) {
    if (spec.status === 0) continue;
    const answer = errorResponse(spec.status);
    t.ok(answer, `${code}: prebuilt ${spec.status}`);
    const text = answer!.toString('latin1');
    t.match(text, new RegExp(`^HTTP/1\\.1 ${spec.status} [A-Za-z ]+\\r\\n`));
    t.match(text, /\r\nConnection: (?:upgrade, )?close\r\n\r\n/); // a 426 names its Upgrade too (RFC 9110 §7.8)
    const body = text.slice(text.indexOf('\r\n\r\n') + 4);
    t.match(text, new RegExp(`\\r\\nContent-Length: ${Buffer.byteLength(body)}\\r\\n`));
  }
});

t.test('errors carry code, status and side', async (t) => {
  const err = new WsgateError('WSG_ERR_UPSTREAM_CONNECT_TIMEOUT', '10.0.0.1:80');
  t.equal(err.code, 'WSG_ERR_UPSTREAM_CONNECT_TIMEOUT');
  t.equal(err.status, 504);
  t.equal(err.side, 'upstream');
  t.match(err.message, /connect timed out: 10\.0\.0\.1:80/);
  const cfg = new ConfigError('servers[0].names[1]', 'invalid host name');
  t.equal(cfg.field, 'servers[0].names[1]');
  t.ok(cfg instanceof WsgateError);
});
