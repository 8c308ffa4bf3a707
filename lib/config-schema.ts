// The JSON config's schema: every field wsgate knows, its type and what it
// means, in one place. Two things are built from it: the check that refuses
// any field not in it (`unknownFields`, called by config.ts before anything
// else, naming the field's path and the known name it is closest to), and the
// published `wsgate.schema.json` (`npm run schema` writes it; a test fails
// when the two differ), which editors use through `"$schema"`. Values are
// checked by config.ts itself, with messages that say what was expected.

import { ConfigError } from './core/errors.js';

type Schema = {
  readonly $schema?: string;
  readonly $id?: string;
  readonly title?: string;
  readonly $defs?: Readonly<Record<string, Schema>>;
  readonly type?: string | readonly string[];
  readonly description?: string;
  readonly properties?: Readonly<Record<string, Schema>>;
  readonly additionalProperties?: boolean | Schema;
  readonly required?: readonly string[];
  readonly items?: Schema;
  readonly oneOf?: readonly Schema[];
  readonly $ref?: string;
  readonly minimum?: number;
  readonly maximum?: number;
  readonly minItems?: number;
  readonly pattern?: string;
  readonly enum?: readonly unknown[];
};

const seconds = (description: string): Schema => ({ type: 'number', minimum: 0, description: `${description} Seconds; fractions allowed; 0 disables it.` });
const count = (description: string, minimum: number): Schema => ({ type: 'integer', minimum, description });
const strings = (description: string): Schema => ({ type: 'array', items: { type: 'string' }, description });

const TIMEOUTS: Readonly<Record<string, Schema>> = {
  readTimeout: seconds('Upstream silent while wsgate waits for or reads its response (nginx proxy_read_timeout). Default 60.'),
  sendTimeout: seconds('Client or upstream not taking or giving bytes during an HTTP exchange (nginx proxy_send_timeout). Default 60.'),
  tunnelTimeout: seconds('Upgraded tunnel with no byte either way. Default 3600.'),
  connectTimeout: seconds('Upstream TCP connect. Default 5.'),
};

const UPSTREAM_TLS: Schema = {
  type: 'object',
  description: 'TLS towards an https:// upstream.',
  additionalProperties: false,
  properties: {
    ca: { oneOf: [{ type: 'string' }, { type: 'array', items: { type: 'string' } }], description: 'CA certificates (PEM files or text) trusted besides Node\'s store.' },
    verify: { type: 'boolean', description: 'Verify the upstream certificate and its name. Default true.' },
    servername: { type: 'string', description: 'Name sent as SNI and checked against the certificate. Default: the URL\'s host.' },
  },
};

const LISTEN: Schema = {
  oneOf: [
    { type: 'string', description: '"host:port", "[::1]:port" or ":port".' },
    { type: 'integer', minimum: 0, description: 'A port on all addresses.' },
    {
      type: 'object',
      required: ['address'],
      additionalProperties: false,
      properties: {
        address: { type: ['string', 'integer'], description: '"host:port", "[::1]:port" or a port.' },
        proxyProtocol: { type: 'boolean', description: 'Read a PROXY protocol header (v1 or v2) before the request or the TLS ClientHello. Default false.' },
        tls: {
          type: 'object',
          description: 'Serve TLS (https, wss): SNI picks a certificate by its DNS names; the first is the default.',
          required: ['certificates'],
          additionalProperties: false,
          properties: {
            certificates: {
              type: 'array',
              minItems: 1,
              items: {
                type: 'object',
                required: ['cert', 'key'],
                additionalProperties: false,
                properties: { cert: { type: 'string', description: 'Certificate chain (PEM file).' }, key: { type: 'string', description: 'Its private key (PEM file).' } },
              },
            },
          },
        },
      },
    },
  ],
};

const LOCATION: Schema = {
  type: 'object',
  description: 'One location: requests whose path matches go to its upstream.',
  required: ['path', 'upstream'],
  additionalProperties: false,
  properties: {
    path: { type: 'string', description: '"/prefix/" (longest prefix wins) or "= /exact" (exact match, checked first).' },
    upstream: { type: 'string', description: 'http://host:port[/path] (ws:// is a synonym), or https:// (wss://) for TLS to the upstream. With a path part, the matched prefix is replaced by it.' },
    upstreamTls: { $ref: '#/$defs/upstreamTls' },
    sendProxyProtocol: { enum: ['v1', 'v2'], description: 'Start each new upstream connection with a PROXY protocol header (HAProxy send-proxy / send-proxy-v2). Default: none.' },
    websocket: { type: 'boolean', description: 'Proxy WebSocket upgrades on this location. Default true.' },
    ...TIMEOUTS,
    setHeaders: { type: 'object', additionalProperties: { type: 'string' }, description: 'Header fields set on the upstream request, replacing any the client sent.' },
    removeHeaders: strings('Header names removed from the upstream request.'),
    allowedOrigins: strings('Origins allowed to open WebSockets here (exact, or *.example.com); others get 403. Default: no check.'),
  },
};

const SERVER: Schema = {
  type: 'object',
  description: 'A virtual server: the host names it answers and its locations.',
  required: ['locations'],
  additionalProperties: false,
  properties: {
    names: strings('Host names: exact (example.com) or leading wildcard (*.example.com).'),
    default: { type: 'boolean', description: 'The server for a Host no name matches. Default: the first server.' },
    locations: { type: 'array', items: { $ref: '#/$defs/location' }, minItems: 1 },
  },
};

/** The whole config file. */
export const CONFIG_SCHEMA = {
  $schema: 'https://json-schema.org/draft/2020-12/schema',
  title: 'wsgate configuration',
  type: 'object',
  additionalProperties: false,
  properties: {
    $schema: { type: 'string', description: 'This schema, for editors.' },
    listen: { type: 'array', items: { $ref: '#/$defs/listen' }, description: 'Addresses to listen on: "host:port", "[::1]:port", a port, or { "address", "tls" }.' },
    upstreamTls: { $ref: '#/$defs/upstreamTls', description: 'Defaults for every https:// location\'s upstreamTls.' },
    servers: { type: 'array', items: { $ref: '#/$defs/server' } },
    routes: {
      description: 'Shorthand, as --route: "[HOST]/path=URL" strings, or an object of path to URL. Merged into servers.',
      oneOf: [{ type: 'array', items: { type: 'string' } }, { type: 'object', additionalProperties: { type: 'string' } }],
    },
    ...TIMEOUTS,
    headTimeout: seconds('Time to receive a complete request head (slowloris guard); then 408. Default 10.'),
    maxHeadSize: count('Largest request head in bytes; then 431. Default 16384.', 1),
    maxHeaders: count('Most header fields in a request head; then 431. Default 100.', 1),
    maxConnections: count('Open client connections beyond which new ones get 503; 0: no limit. Default 0.', 0),
    listenBacklog: { ...count('Connections the kernel queues on each listener before wsgate accepts them (listen(2) backlog; the kernel caps it at net.core.somaxconn). Default 511.', 1), maximum: 65535 },
    maxConnectionsPerClient: count('Open connections (tunnels included) one client address may hold; more get 503. 0: no limit. Default 0.', 0),
    connectionRatePerClient: {
      oneOf: [{ type: 'string', pattern: '^\\s*\\d+(\\.\\d+)?\\s*/\\s*(s|m)\\s*$' }, { type: 'number', minimum: 0 }],
      description: 'Connections one client address may open: "N/s", "N/m" or a number per second; faster ones get 503. Default: no limit.',
    },
    keepAliveTimeout: seconds('Idle time between requests on a client keep-alive connection (nginx keepalive_timeout). Default 75.'),
    keepAliveRequests: count('Requests served on one client connection before it is closed. Default 1000.', 1),
    upstreamKeepAlive: count('Idle keep-alive connections kept per upstream address; 0 closes each after its request. Default 256.', 0),
    upstreamIdleTimeout: seconds('Close an idle upstream connection after this long. Default 60.'),
    upstreamMaxRequests: count('Requests sent on one upstream connection before it is retired. Default 1000.', 1),
    trustedProxies: strings('Peers (addresses, CIDRs) whose X-Forwarded-* and Forwarded are believed and appended to. Default: none.'),
    checkWebSocketAccept: { type: 'boolean', description: 'Refuse a 101 whose Sec-WebSocket-Accept does not match the key, with 502. Default true.' },
  },
  $defs: { server: SERVER, location: LOCATION, listen: LISTEN, upstreamTls: UPSTREAM_TLS },
} as const satisfies Schema & { $defs: Record<string, Schema> };

/** Where each field name belongs, to say so when one is put in the wrong place. */
const PLACES = new Map<string, string[]>();
for (const [place, schema] of [['the top level', CONFIG_SCHEMA], ['a server', SERVER], ['a location', LOCATION]] as const) {
  for (const name of Object.keys(schema.properties ?? {})) PLACES.set(name, [...(PLACES.get(name) ?? []), place]);
}

/** Fields the library takes that a JSON file cannot hold. */
const LIBRARY_ONLY = new Set(['logger']);

/**
 * Every field of `input` that the schema does not know, as an error naming
 * its path (`servers[0].locations[0].tunelTimeout: unknown field (did you
 * mean tunnelTimeout?)`). Types are not checked here.
 */
export function unknownFields(input: unknown): ConfigError[] {
  const found: ConfigError[] = [];
  walk(input, CONFIG_SCHEMA, '', found, true);
  return found;
}

function resolve(schema: Schema): Schema {
  if (schema.$ref === undefined) return schema;
  const name = schema.$ref.slice('#/$defs/'.length) as keyof typeof CONFIG_SCHEMA.$defs;
  return CONFIG_SCHEMA.$defs[name];
}

function walk(value: unknown, schemaIn: Schema, path: string, found: ConfigError[], top = false): void {
  const schema = resolve(schemaIn);
  if (value === null || typeof value !== 'object') return;
  if (Array.isArray(value)) {
    const items = schema.items ?? schema.oneOf?.find((s) => s.type === 'array')?.items;
    if (items !== undefined) value.forEach((item, i) => walk(item, items, `${path}[${i}]`, found));
    return;
  }
  const objectSchema = schema.properties !== undefined ? schema : schema.oneOf?.find((s) => s.type === 'object');
  if (objectSchema === undefined) return;
  const known = objectSchema.properties ?? {};
  for (const [key, child] of Object.entries(value)) {
    const where = path === '' ? key : `${path}.${key}`;
    const childSchema = known[key];
    if (childSchema !== undefined) {
      walk(child, childSchema, where, found);
    } else if (objectSchema.additionalProperties === false && !(top && LIBRARY_ONLY.has(key))) {
      const near = nearest(key, Object.keys(known).filter((k) => k !== '$schema'));
      const home = near === null ? PLACES.get(key) : undefined;
      const hint = near !== null ? ` (did you mean ${near}?)` : home !== undefined ? ` here (${key} goes in ${home.join(' or ')})` : '';
      found.push(new ConfigError(where, `unknown field${hint}`));
    }
  }
}

/** The known name `key` is most likely a slip for: same letters in another case, or at most a third of them wrong. */
function nearest(key: string, names: readonly string[]): string | null {
  let best: string | null = null;
  let bestDistance = Infinity;
  for (const name of names) {
    if (name.toLowerCase() === key.toLowerCase()) return name;
    const d = distance(key.toLowerCase(), name.toLowerCase());
    if (d < bestDistance) {
      best = name;
      bestDistance = d;
    }
  }
  return best !== null && bestDistance <= Math.max(2, Math.floor(key.length / 3)) ? best : null;
}

/** Edit distance with adjacent transpositions (optimal string alignment). */
function distance(a: string, b: string): number {
  const rows: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) rows[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let d = Math.min(rows[i - 1][j] + 1, rows[i][j - 1] + 1, rows[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d = Math.min(d, rows[i - 2][j - 2] + 1);
      rows[i][j] = d;
    }
  }
  return rows[a.length][b.length];
}

/** The published file's text (wsgate.schema.json). */
export function schemaText(): string {
  return `${JSON.stringify(CONFIG_SCHEMA, null, 2)}\n`;
}
