// Prebuilt error answers (node `_http_server.js` keeps `badRequestResponse` the
// same way): short, `Connection: close`, built once at load time.

const REASONS: Record<number, string> = {
  400: 'Bad Request',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  408: 'Request Timeout',
  431: 'Request Header Fields Too Large',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
};

function buildResponse(status: number, headOnly: boolean): Buffer {
  const reason = REASONS[status];
  const body = `${status} ${reason}\n`;
  return Buffer.from(
    `HTTP/1.1 ${status} ${reason}\r\n` +
      'Content-Type: text/plain; charset=utf-8\r\n' +
      `Content-Length: ${Buffer.byteLength(body)}\r\n` +
      'Connection: close\r\n' +
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
