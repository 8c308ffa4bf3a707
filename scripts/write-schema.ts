// Writes wsgate.schema.json from lib/config-schema.ts, the source the config
// validation uses (`npm run schema`). test/config-schema.test.ts fails when the
// published file and the source differ.
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { schemaText } from '../lib/config-schema.js';

const target = fileURLToPath(new URL('../../wsgate.schema.json', import.meta.url));
writeFileSync(target, schemaText());
process.stdout.write(`wrote ${target}\n`);
