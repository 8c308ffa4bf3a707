// Typed errors: one stable code per failure, the HTTP status wsgate answers
// with, and the side at fault (undici `UND_ERR_*`, pingora `ErrorSource`).

export type ErrorSide = 'downstream' | 'upstream' | 'config' | 'internal';

export interface ErrorSpec {
  readonly status: number;
  readonly side: ErrorSide;
  readonly message: string;
}

/** Every code wsgate can produce. The README's error table is checked against this list by a test. */
export const ERROR_CODES = {
  WSG_ERR_BAD_REQUEST: { status: 400, side: 'downstream', message: 'malformed request' },
  WSG_ERR_BAD_PATH: { status: 400, side: 'downstream', message: 'request path is malformed or climbs above /' },
  WSG_ERR_MISSING_HOST: { status: 400, side: 'downstream', message: 'HTTP/1.1 request without exactly one Host header' },
  WSG_ERR_BAD_WEBSOCKET_HANDSHAKE: { status: 400, side: 'downstream', message: 'invalid WebSocket upgrade request' },
  WSG_ERR_WEBSOCKET_VERSION: { status: 426, side: 'downstream', message: 'WebSocket version other than 13' },
  WSG_ERR_HTTP_VERSION: { status: 505, side: 'downstream', message: 'HTTP major version other than 1' },
  WSG_ERR_ORIGIN_NOT_ALLOWED: { status: 403, side: 'downstream', message: 'WebSocket upgrade from an Origin the location does not allow' },
  WSG_ERR_METHOD_NOT_ALLOWED: { status: 405, side: 'downstream', message: 'method not proxied (CONNECT, TRACE, or one llhttp cannot name)' },
  WSG_ERR_NO_ROUTE: { status: 404, side: 'downstream', message: 'no server/location matches the request' },
  WSG_ERR_HEAD_TIMEOUT: { status: 408, side: 'downstream', message: 'request head not received in time' },
  WSG_ERR_HEAD_TOO_LARGE: { status: 431, side: 'downstream', message: 'request head larger than maxHeadSize' },
  WSG_ERR_TOO_MANY_HEADERS: { status: 431, side: 'downstream', message: 'request has more header fields than maxHeaders' },
  WSG_ERR_UPSTREAM_CONNECT: { status: 502, side: 'upstream', message: 'upstream connection refused or reset' },
  WSG_ERR_UPSTREAM_BAD_RESPONSE: { status: 502, side: 'upstream', message: 'upstream sent an invalid response' },
  WSG_ERR_UPSTREAM_CLOSED: { status: 502, side: 'upstream', message: 'upstream closed the connection before a complete response head' },
  WSG_ERR_UPSTREAM_CONNECT_TIMEOUT: { status: 504, side: 'upstream', message: 'upstream connect timed out' },
  WSG_ERR_UPSTREAM_TIMEOUT: { status: 504, side: 'upstream', message: 'upstream did not answer within readTimeout' },
  WSG_ERR_TOO_MANY_CONNECTIONS: { status: 503, side: 'internal', message: 'maxConnections reached' },
  WSG_ERR_DESCRIPTOR_LIMIT: { status: 503, side: 'internal', message: 'too few file descriptors left (RLIMIT_NOFILE)' },
  WSG_ERR_CLIENT_LIMIT: { status: 503, side: 'downstream', message: 'client over maxConnectionsPerClient or connectionRatePerClient' },
  WSG_ERR_DOWNSTREAM_TIMEOUT: { status: 0, side: 'downstream', message: 'downstream stalled past sendTimeout' },
  WSG_ERR_UPSTREAM_ABORTED: { status: 0, side: 'upstream', message: 'upstream connection reset or closed mid-response' },
  WSG_ERR_PROXY_PROTOCOL: { status: 0, side: 'downstream', message: 'missing or malformed PROXY protocol header' },
  WSG_ERR_INTERNAL: { status: 502, side: 'internal', message: 'unexpected error while handling the connection (a bug: please report it)' },
  WSG_ERR_CONFIG: { status: 0, side: 'config', message: 'invalid configuration' },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERROR_CODES;

/** An error of one connection: it carries the status wsgate answered (0 when no answer could be sent). */
export class WsgateError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly side: ErrorSide;
  constructor(code: ErrorCode, detail?: string, options?: { cause?: unknown }) {
    const spec = ERROR_CODES[code];
    super(detail ? `${spec.message}: ${detail}` : spec.message, options);
    this.name = 'WsgateError';
    this.code = code;
    this.status = spec.status;
    this.side = spec.side;
  }
}

/** A configuration error names the offending field, e.g. `servers[0].locations[1].upstream`. */
export class ConfigError extends WsgateError {
  readonly field: string;
  /** What is wrong with it. */
  readonly detail: string;
  constructor(field: string, detail: string) {
    super('WSG_ERR_CONFIG', `${field}: ${detail}`);
    this.name = 'ConfigError';
    this.field = field;
    this.detail = detail;
  }

  /** `field: detail`, as `wsgate --check` lists it. */
  get problem(): string {
    return `${this.field}: ${this.detail}`;
  }
}
