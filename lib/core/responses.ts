// Prebuilt error answers (node `_http_server.js` keeps `badRequestResponse` the
// same way): short, `Connection: close`, built once at load time.

const REASONS: Record<number, string> = {
  400: 'Bad Request',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  408: 'Request Timeout',
  426: 'Upgrade Required',
  431: 'Request Header Fields Too Large',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
  505: 'HTTP Version Not Supported',
};

// Fields some answers must carry.
const EXTRA: Record<number, string> = {
  // RFC 9110 §15.5.6: a 405 lists what is allowed (what wsgate forwards).
  405: 'Allow: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, QUERY\r\n',
  // RFC 6455 §4.4 and RFC 9110 §15.5.22, §7.8: the versions understood, in an Upgrade answer.
  426: 'Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n',
};

function buildResponse(status: number, headOnly: boolean): Buffer {
  const reason = REASONS[status];
  const body = `${status} ${reason}\n`;
  return Buffer.from(
    `HTTP/1.1 ${status} ${reason}\r\n` +
      'Content-Type: text/plain; charset=utf-8\r\n' +
      `Content-Length: ${Buffer.byteLength(body)}\r\n` +
      (EXTRA[status] ?? '') +
      (status === 426 ? 'Connection: upgrade, close\r\n' : 'Connection: close\r\n') +
      '\r\n' +
      (headOnly ? '' : body),
    'latin1',
  );
}

const STATUSES = Object.keys(REASONS).map(Number);
const PREBUILT = new Map<number, Buffer>(STATUSES.map((s) => [s, buildResponse(s, false)]));
// The answer to a HEAD request has the same fields and no body (RFC 9110 §9.3.2).
const PREBUILT_HEAD = new Map<number, Buffer>(STATUSES.map((s) => [s, buildResponse(s, true)]));

/** The prebuilt answer for `status` (without its body for a HEAD request); undefined for a status wsgate never answers itself. */
export function errorResponse(status: number, head = false): Buffer | undefined {
  return (head ? PREBUILT_HEAD : PREBUILT).get(status);
}

export function reasonPhrase(status: number): string {
  return REASONS[status] ?? '';
}
