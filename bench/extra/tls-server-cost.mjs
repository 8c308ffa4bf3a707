// What a bare Node TLS server costs per full handshake, against the same
// server over plain TCP: the TLS part of a handshake that Node itself costs,
// without wsgate (RESULTS.md, "TLS", session 7). The server runs on the Node
// given as SRV (default: this one) pinned to CPU 0; this client on CPU 1.
// usage: taskset -c 1 node bench/extra/tls-server-cost.mjs [N] [SRV]
// Prints one JSON line per server kind and round: server CPU µs per connection.
import { execFileSync, fork } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';

if (process.argv[2] === 'serve') {
  const [, , , mode, dir] = process.argv;
  const onConn = (c) => {
    c.on('data', (d) => c.end(d));
    c.on('error', () => {});
  };
  const opts = { cert: readFileSync(join(dir, 'cert.pem')), key: readFileSync(join(dir, 'key.pem')), minVersion: 'TLSv1.2', ALPNProtocols: ['http/1.1'] };
  const s = mode === 'tcp' ? net.createServer(onConn) : tls.createServer(opts, onConn);
  s.on('tlsClientError', (_e, c) => c.destroy());
  s.listen(0, '127.0.0.1', () => process.send(s.address().port));
  process.on('message', () => {
    const u = process.cpuUsage();
    process.send(u.user + u.system);
  });
} else {
  const N = Number(process.argv[2] ?? 3000);
  const SRV = process.argv[3] ?? process.execPath;
  const dir = mkdtempSync(join(tmpdir(), 'tls-cost-'));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-days', '1', '-subj', '/CN=localhost'], { stdio: 'ignore' });
  const run = async (mode) => {
    const srv = fork(new URL(import.meta.url).pathname, ['serve', mode, dir], { execPath: SRV, execArgv: [] });
    const [port] = await once(srv, 'message');
    execFileSync('taskset', ['-pc', '0', String(srv.pid)], { stdio: 'ignore' });
    const cpu = async () => {
      srv.send('cpu');
      return (await once(srv, 'message'))[0];
    };
    const one = () =>
      new Promise((resolve, reject) => {
        const o = { port, host: '127.0.0.1', rejectUnauthorized: false };
        const s = mode === 'tcp' ? net.connect(o, () => s.write('x')) : tls.connect(o, () => s.write('x'));
        s.on('data', () => {});
        s.on('end', () => (s.destroy(), resolve()));
        s.on('error', reject);
      });
    for (let i = 0; i < 200; i++) await one();
    const before = await cpu();
    let left = N;
    await Promise.all(Array.from({ length: 20 }, async () => { while (left-- > 0) await one(); }));
    const after = await cpu();
    srv.kill();
    return { server: mode, node: SRV, cpuUsPerConnection: Math.round((after - before) / N) };
  };
  for (let round = 0; round < 2; round++) for (const mode of ['tcp', 'tls']) console.log(JSON.stringify(await run(mode)));
}
