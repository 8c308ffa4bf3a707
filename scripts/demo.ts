// `npm start`: the nginx setup wsgate replaces, on one machine.
//   demo app (HTTP, :3000)  <- location /
//   echo server (WebSocket, :8080) <- location /ws/
//   wsgate (:8000) in front of both, with no extra settings.
// Ports: DEMO_PROXY_PORT, DEMO_APP_PORT, DEMO_ECHO_PORT (0 picks a free one).

import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { pathToFileURL } from 'node:url';
import { WebSocketServer } from 'ws';
import { createGateway, createStreamLogger, type Gateway } from '../lib/index.js';

export const DEMO_PAGE = `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>wsgate demo</title>
<style>
 body { font: 16px/1.4 system-ui, sans-serif; max-width: 40em; margin: 2em auto; }
 #status { font-weight: bold; } #log { border: 1px solid #ccc; min-height: 8em; padding: .5em; list-style: none; }
 #log li.sent { color: #555; } #log li.echo { color: #060; }
</style></head>
<body>
<h1>wsgate demo</h1>
<p>This page came from the demo app through wsgate (<code>location /</code>). Its WebSocket goes to
<code>ws://HOST/ws/</code> (<code>wss://</code> when the page came over https), which wsgate tunnels to the echo server (<code>location /ws/</code>).</p>
<p>WebSocket: <span id="status">connecting</span></p>
<form id="form"><input id="message" autocomplete="off" value="hello through wsgate"> <button id="send">Send</button></form>
<ul id="log"></ul>
<script>
  const status = document.getElementById('status');
  const log = document.getElementById('log');
  function add(cls, text) { const li = document.createElement('li'); li.className = cls; li.textContent = text; log.appendChild(li); }
  const socket = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws/');
  socket.onopen = () => { status.textContent = 'open'; socket.send('hello from the browser'); add('sent', '> hello from the browser'); };
  socket.onmessage = (event) => add('echo', '< ' + event.data);
  socket.onclose = (event) => { status.textContent = 'closed (' + event.code + ')'; };
  socket.onerror = () => { status.textContent = 'error'; };
  document.getElementById('form').onsubmit = (event) => {
    event.preventDefault();
    const text = document.getElementById('message').value;
    socket.send(text); add('sent', '> ' + text);
  };
</script>
</body>
</html>
`;

export interface Demo {
  readonly url: string;
  readonly gateway: Gateway;
  readonly appPort: number;
  readonly echoPort: number;
  close(): Promise<void>;
}

function listen(server: http.Server, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve((server.address() as AddressInfo).port));
  });
}

export async function startDemo(
  ports: { proxy?: number; app?: number; echo?: number } = {},
  quiet = false,
  /** Serve the page over TLS (https:// and wss://) with these certificates. */
  tls?: { certificates: Array<{ cert: string; key: string }> },
): Promise<Demo> {
  const app = http.createServer((req, res) => {
    if (req.url === '/' || req.url === '/index.html') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(DEMO_PAGE);
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found\n');
    }
  });
  const echoHttp = http.createServer((_req, res) => {
    res.writeHead(426, { 'content-type': 'text/plain' });
    res.end('WebSocket only\n');
  });
  const echo = new WebSocketServer({ server: echoHttp });
  echo.on('connection', (socket) => {
    socket.on('message', (data, isBinary) => socket.send(data, { binary: isBinary }));
  });
  const appPort = await listen(app, ports.app ?? 3000);
  const echoPort = await listen(echoHttp, ports.echo ?? 8080);

  const gateway = createGateway({
    routes: [`/ws/=http://127.0.0.1:${echoPort}`, `/=http://127.0.0.1:${appPort}`],
    logger: quiet ? null : createStreamLogger('info'),
  });
  const address = await gateway.listen({ port: ports.proxy ?? 8000, host: '127.0.0.1', tls });
  return {
    url: address.url,
    gateway,
    appPort,
    echoPort,
    async close() {
      await gateway.close({ drainMs: 0 });
      for (const client of echo.clients) client.terminate();
      echo.close();
      await Promise.all([new Promise((r) => app.close(r)), new Promise((r) => echoHttp.close(r))]);
      app.closeAllConnections();
    },
  };
}

async function main(): Promise<void> {
  const port = (name: string, fallback: number) => (process.env[name] === undefined ? fallback : Number(process.env[name]));
  const demo = await startDemo({ proxy: port('DEMO_PROXY_PORT', 8000), app: port('DEMO_APP_PORT', 3000), echo: port('DEMO_ECHO_PORT', 8080) });
  const proxyPort = new URL(demo.url).port;
  process.stdout.write(
    `demo app        http://127.0.0.1:${demo.appPort}/\n` +
      `echo server     ws://127.0.0.1:${demo.echoPort}/\n` +
      `wsgate          equivalent to: wsgate --listen 127.0.0.1:${proxyPort} --route /ws/=http://127.0.0.1:${demo.echoPort} --route /=http://127.0.0.1:${demo.appPort}\n` +
      `\nopen ${demo.url} in a browser (Ctrl-C to stop)\n`,
  );
  const stop = () => {
    demo.close().then(() => process.exit(0));
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().catch((err) => {
    process.stderr.write(`demo: ${(err as Error).message}\n`);
    process.exit(1);
  });
}
