// Log lines: one line per event, `time level message key=value ...`, so that
// grep and awk work on them as on nginx's error log.

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export interface Logger {
  log(level: LogLevel, message: string, fields?: Record<string, unknown>): void;
}

const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

function formatValue(value: unknown): string {
  const text = typeof value === 'string' ? value : JSON.stringify(value);
  return /[\s"=]/.test(text) ? JSON.stringify(text) : text;
}

export function formatLogLine(level: LogLevel, message: string, fields?: Record<string, unknown>): string {
  let line = `${new Date().toISOString()} ${level} ${message}`;
  if (fields) {
    for (const key of Object.keys(fields)) {
      const value = fields[key];
      if (value !== undefined) line += ` ${key}=${formatValue(value)}`;
    }
  }
  return line + '\n';
}

/** A logger writing to a stream (stderr by default), dropping lines below `minLevel`. */
export function createStreamLogger(minLevel: LogLevel = 'info', stream: NodeJS.WritableStream = process.stderr): Logger {
  const min = RANK[minLevel];
  return {
    log(level, message, fields) {
      if (RANK[level] >= min) stream.write(formatLogLine(level, message, fields));
    },
  };
}

export const LOG_LEVELS = Object.keys(RANK) as LogLevel[];

/**
 * Log lines for events a peer can cause at will (failed TLS handshakes, bad
 * PROXY headers, refused clients): at most one per `intervalMs`, each saying
 * how many were left out since the last.
 */
export class RateLimitedLog {
  readonly #write: (level: LogLevel, message: string, fields?: Record<string, unknown>) => void;
  readonly #intervalMs: number;
  #last = -Infinity;
  #suppressed = 0;

  constructor(write: (level: LogLevel, message: string, fields?: Record<string, unknown>) => void, intervalMs = 1000) {
    this.#write = write;
    this.#intervalMs = intervalMs;
  }

  log(level: LogLevel, message: string, fields?: Record<string, unknown>): void {
    const now = Date.now();
    if (now - this.#last < this.#intervalMs) {
      this.#suppressed++;
      return;
    }
    this.#last = now;
    const suppressed = this.#suppressed;
    this.#suppressed = 0;
    this.#write(level, message, suppressed > 0 ? { ...fields, suppressed } : fields);
  }
}
