// The soak's load (bench/soak.ts), on raw `net` sockets like ws-load.ts.
// usage: node soak-load.js PORT JSON-OPTIONS
//   WebSocket: opens `tunnels` tunnels (connect, upgrade, echo `frames` frames),
//   then churns at `churnPerSec`: the oldest tunnel is closed (close frame, wait
//   for the upstream's close and FIN) and a fresh one opened in its place, so
//   about `tunnels` stay open; held tunnels echo one frame each in turn at
//   `pingPerSec` in total.
//   HTTP: `httpConnections` keep-alive connections, one request in flight each,
//   `httpRate` requests/s in total, GET and POST (with a body) alternating; a
//   connection the gateway closes (keepAliveRequests) is reopened.
// Every step has a 10 s deadline, at most `maxOpening` tunnels are being opened
// at once, and rates are token buckets holding at most one second of work, so a
// stall never turns into a burst. Prints `ready` once the tunnels are open (or
// after 120 s), then one JSON line of cumulative counters every second. Exits
// on SIGTERM/SIGINT (the probe's watchdog covers a dead harness).

import net from 'node:net';
import { buildFrame, echoFrameLength, upgradeRequest } from './ws-frames.js';

interface Options {
  tunnels: number;
  churnPerSec: number;
  frames: number;
  frameSize: number;
  pingPerSec: number;
  maxOpening: number;
  httpConnections: number;
  httpRate: number;
  httpBodySize: number;
  wsPath: string;
  httpPath: string;
}

const [portText, json] = process.argv.slice(2);
const port = Number(portText);
const options: Options = {
  tunnels: 2000,
  churnPerSec: 50,
  frames: 3,
  frameSize: 64,
  pingPerSec: 200,
  maxOpening: 200,
  httpConnections: 4,
  httpRate: 200,
  httpBodySize: 1024,
  wsPath: '/ws/',
  httpPath: '/api/',
  ...(JSON.parse(json ?? '{}') as Partial<Options>),
};
const STEP_TIMEOUT_MS = 10_000;
const READY_TIMEOUT_MS = 120_000;
const UPGRADE = upgradeRequest(options.wsPath);
const FRAME = buildFrame(options.frameSize, true);
const ECHO_LENGTH = echoFrameLength(options.frameSize);
const CLOSE_FRAME = Buffer.from([0x88, 0x80, 0, 0, 0, 0]); // masked, empty payload

const counters = {
  tunnelsOpened: 0, // 101 received and the first frames echoed
  tunnelsCompleted: 0, // closed cleanly after the close handshake
  tunnelErrors: 0,
  echoes: 0,
  httpRequests: 0,
  httpErrors: 0,
  httpReconnects: 0,
};
const errorKinds: Record<string, number> = {};

function countError(kind: string, http: boolean): void {
  if (http) counters.httpErrors++;
  else counters.tunnelErrors++;
  errorKinds[kind] = (errorKinds[kind] ?? 0) + 1;
}

type Phase = 'handshake' | 'greeting' | 'open' | 'closing' | 'done';

/** Tunnels in `open` phase, oldest first (a Set keeps insertion order). */
const openTunnels = new Set<Tunnel>();
/** Every tunnel not yet done, for the deadline sweep. */
const liveTunnels = new Set<Tunnel>();
let opening = 0;
let closing = 0;

class Tunnel {
  phase: Phase = 'handshake';
  deadline = Date.now() + STEP_TIMEOUT_MS;
  #head: Buffer | null = null;
  /** Echo bytes still expected. */
  #expected = 0;
  #greetingsLeft = options.frames;
  #closeBytes = 0;
  /** Chosen for closing while an echo was on its way: close once it is back. */
  #closeWhenEchoed = false;
  readonly socket: net.Socket;

  constructor() {
    opening++;
    liveTunnels.add(this);
    this.socket = net.connect({ port, host: '127.0.0.1', noDelay: true });
    this.socket.on('connect', () => this.socket.write(UPGRADE));
    this.socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    this.socket.on('error', (err: NodeJS.ErrnoException) => this.fail(`ws ${this.phase}: ${err.code ?? err.message}`));
    this.socket.on('close', () => this.#onClose());
  }

  #onData(chunk: Buffer): void {
    if (this.phase === 'handshake') {
      const head: Buffer = this.#head === null ? chunk : Buffer.concat([this.#head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end === -1) {
        this.#head = head.length > 8192 ? null : head;
        if (head.length > 8192) this.fail('ws handshake: head too long');
        return;
      }
      this.#head = null;
      if (!head.subarray(0, 12).toString('latin1').startsWith('HTTP/1.1 101')) {
        this.fail(`ws handshake: ${head.subarray(0, 12).toString('latin1')}`);
        return;
      }
      this.phase = 'greeting';
      this.#send();
      chunk = head.subarray(end + 4);
      if (chunk.length === 0) return;
    }
    if (this.phase === 'closing') {
      this.#closeBytes += chunk.length;
      return;
    }
    this.#expected -= chunk.length;
    if (this.#expected < 0) {
      this.fail(`ws ${this.phase}: unexpected bytes`);
      return;
    }
    if (this.#expected > 0) return;
    counters.echoes++;
    if (this.phase === 'greeting') {
      if (--this.#greetingsLeft > 0) {
        this.#send();
        return;
      }
      this.phase = 'open';
      opening--;
      counters.tunnelsOpened++;
      openTunnels.add(this);
    }
    this.deadline = Infinity;
    if (this.#closeWhenEchoed) this.#sendClose();
  }

  #send(): void {
    this.#expected = ECHO_LENGTH;
    this.deadline = Date.now() + STEP_TIMEOUT_MS;
    this.socket.write(FRAME);
  }

  /** A held tunnel echoes one frame, unless one is already on its way. */
  ping(): void {
    if (this.#expected === 0) this.#send();
  }

  /**
   * Starts the close handshake once no echo is on its way: ws-echo-server.ts
   * drops the echoes of frames it reads in the same chunk as a close frame.
   */
  close(): void {
    openTunnels.delete(this);
    if (this.#expected > 0) this.#closeWhenEchoed = true;
    else this.#sendClose();
  }

  #sendClose(): void {
    this.phase = 'closing';
    closing++;
    this.deadline = Date.now() + STEP_TIMEOUT_MS;
    this.socket.end(CLOSE_FRAME);
  }

  fail(kind: string): void {
    if (this.phase === 'done') return;
    countError(kind, false);
    this.#finish();
    this.socket.destroy();
  }

  #onClose(): void {
    if (this.phase === 'done') return;
    if (this.phase !== 'closing') {
      this.fail(`ws ${this.phase}: closed by the peer`);
      return;
    }
    // the upstream answers the close frame with its own (2 bytes), then FIN
    if (this.#closeBytes < 2) {
      this.fail('ws closing: no close frame');
      return;
    }
    counters.tunnelsCompleted++;
    this.#finish();
  }

  #finish(): void {
    if (this.phase === 'handshake' || this.phase === 'greeting') opening--;
    if (this.phase === 'closing') closing--;
    openTunnels.delete(this);
    liveTunnels.delete(this);
    this.phase = 'done';
  }
}

/** Tops the tunnels up to the target, at most `maxOpening` in progress. */
function refill(): void {
  while (openTunnels.size + opening < options.tunnels && opening < options.maxOpening) new Tunnel();
}

function sweepDeadlines(): void {
  const now = Date.now();
  for (const t of liveTunnels) if (t.deadline < now) t.fail(`ws ${t.phase}: timeout`);
  for (const c of httpConnections) if (c.deadline < now) c.fail('http: timeout');
}

/** Tokens accrue at `rate`/s, at most one second's worth (and at least one token, for rates below 1/s). */
class Bucket {
  #tokens = 0;
  #last = performance.now();
  constructor(readonly rate: number) {}
  take(): boolean {
    const now = performance.now();
    this.#tokens = Math.min(Math.max(1, this.rate), this.#tokens + ((now - this.#last) / 1000) * this.rate);
    this.#last = now;
    if (this.#tokens < 1) return false;
    this.#tokens--;
    return true;
  }
}

const HTTP_BODY = Buffer.alloc(options.httpBodySize, 'x');

class HttpConnection {
  socket: net.Socket | null = null;
  busy = false;
  /** The last response said `Connection: close`: wait for the FIN, send nothing more. */
  closedByPeer = false;
  deadline = Infinity;
  #sent = 0;
  #buffer: Buffer | null = null;

  connect(): void {
    const socket = net.connect({ port, host: '127.0.0.1', noDelay: true });
    this.socket = socket;
    this.closedByPeer = false;
    this.busy = true; // until connected
    this.deadline = Date.now() + STEP_TIMEOUT_MS;
    socket.on('connect', () => {
      this.busy = false;
      this.deadline = Infinity;
    });
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('error', (err: NodeJS.ErrnoException) => this.fail(`http: ${err.code ?? err.message}`));
    socket.on('close', () => {
      if (this.socket !== socket) return;
      if (this.busy) countError('http: closed mid-request', true);
      else counters.httpReconnects++;
      this.socket = null;
    });
  }

  send(): void {
    const n = this.#sent++;
    this.busy = true;
    this.deadline = Date.now() + STEP_TIMEOUT_MS;
    this.#buffer = null;
    const path = `${options.httpPath}${n}`;
    if (n % 2 === 0) this.socket!.write(`GET ${path} HTTP/1.1\r\nHost: soak\r\n\r\n`);
    else {
      this.socket!.cork();
      this.socket!.write(`POST ${path} HTTP/1.1\r\nHost: soak\r\nContent-Type: application/octet-stream\r\nContent-Length: ${HTTP_BODY.length}\r\n\r\n`);
      this.socket!.write(HTTP_BODY);
      this.socket!.uncork();
    }
  }

  #onData(chunk: Buffer): void {
    if (!this.busy) {
      this.fail('http: bytes while idle');
      return;
    }
    const buf: Buffer = this.#buffer === null ? chunk : Buffer.concat([this.#buffer, chunk]);
    const end = buf.indexOf('\r\n\r\n');
    if (end === -1) {
      this.#buffer = buf;
      return;
    }
    const head = buf.subarray(0, end).toString('latin1');
    const length = /\r\ncontent-length: *(\d+)/i.exec(head);
    if (length === null) {
      this.fail('http: no content-length');
      return;
    }
    const total = end + 4 + Number(length[1]);
    if (buf.length < total) {
      this.#buffer = buf;
      return;
    }
    this.#buffer = null;
    if (buf.length > total) {
      this.fail('http: extra bytes');
      return;
    }
    if (!head.startsWith('HTTP/1.1 200')) {
      this.fail(`http: ${head.slice(0, 12)}`);
      return;
    }
    counters.httpRequests++;
    this.busy = false;
    // the gateway closes after keepAliveRequests: let it, the next tick reconnects
    this.closedByPeer = /\r\nconnection: *close/i.test(head);
    this.deadline = this.closedByPeer ? Date.now() + STEP_TIMEOUT_MS : Infinity;
  }

  fail(kind: string): void {
    countError(kind, true);
    const socket = this.socket;
    this.socket = null;
    this.busy = false;
    this.deadline = Infinity;
    socket?.destroy();
  }
}

// no HTTP traffic, no idle connections (wsgate would answer them 408 after headTimeout)
const httpConnections = Array.from({ length: options.httpRate > 0 ? options.httpConnections : 0 }, () => new HttpConnection());

function report(): void {
  process.stdout.write(`${JSON.stringify({ t: Date.now(), open: openTunnels.size, opening, closing, ...counters, errorKinds })}\n`);
}

async function main(): Promise<void> {
  const started = Date.now();
  setInterval(sweepDeadlines, 1000);
  refill();
  const ramp = setInterval(refill, 50);
  while (openTunnels.size < options.tunnels && Date.now() - started < READY_TIMEOUT_MS) await new Promise((r) => setTimeout(r, 100));
  clearInterval(ramp);
  process.stdout.write('ready\n');
  report();
  setInterval(report, 1000);

  const churn = new Bucket(options.churnPerSec);
  const pings = new Bucket(options.pingPerSec);
  const requests = new Bucket(options.httpRate);
  let pingCursor = openTunnels.values();
  let nextHttp = 0;
  setInterval(() => {
    while (openTunnels.size > 0 && churn.take()) openTunnels.values().next().value!.close();
    refill();
    for (let i = 0; i < openTunnels.size && pings.take(); i++) {
      let next = pingCursor.next();
      if (next.done) {
        pingCursor = openTunnels.values();
        next = pingCursor.next();
      }
      if (!next.done) next.value.ping();
    }
    for (const c of httpConnections) if (c.socket === null) c.connect();
    for (let i = 0; i < httpConnections.length; i++) {
      const c = httpConnections[nextHttp++ % httpConnections.length];
      if (c.socket !== null && !c.busy && !c.closedByPeer && requests.take()) c.send();
    }
  }, 20);
}

function exit(): void {
  report();
  for (const t of liveTunnels) t.socket.destroy();
  for (const c of httpConnections) c.socket?.destroy();
  process.exit(0);
}
process.on('SIGTERM', exit);
process.on('SIGINT', exit);

main().catch((err) => {
  process.stderr.write(`soak-load: ${(err as Error).stack}\n`);
  process.exit(1);
});
