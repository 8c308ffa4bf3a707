// Prebuilt error answers (node `_http_server.js` keeps `badRequestResponse` the
// same way): short, `Connection: close`, built once at load time.

const REASONS: Record<number, string> = {
  400: 'Bad Request',
  403: 'Forbidden',
  404: 'Not Found',
  408: 'Request Timeout',
  431: 'Request Header Fields Too Large',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
};

function buildResponse(status: number): Buffer {
  const reason = REASONS[status];
  const body = `${status} ${reason}\n`;
  return Buffer.from(
    `HTTP/1.1 ${status} ${reason}\r\n` +
      'Content-Type: text/plain; charset=utf-8\r\n' +
      `Content-Length: ${Buffer.byteLength(body)}\r\n` +
      'Connection: close\r\n' +
      '\r\n' +
      body,
    'latin1',
  );
}

const PREBUILT = new Map<number, Buffer>(Object.keys(REASONS).map((s) => [Number(s), buildResponse(Number(s))]));

/** The prebuilt answer for `status`; undefined for a status wsgate never answers itself. */
export function errorResponse(status: number): Buffer | undefined {
  return PREBUILT.get(status);
}

export function reasonPhrase(status: number): string {
  return REASONS[status] ?? '';
}
