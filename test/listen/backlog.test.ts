// The listen(2) backlog: what the kernel holds for a listener before wsgate
// accepts (a reconnect storm fills it). Read back from the kernel with `ss`,
// whose Send-Q column of a listening socket is its backlog.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createGateway } from '../../lib/index.js';
import { startCli } from '../helpers/faults.js';
import { startGateway } from '../helpers/net.js';

const somaxconn = Number(readFileSync('/proc/sys/net/core/somaxconn', 'utf8'));

/** The backlog of the socket listening on 127.0.0.1:port, from `ss -ltn`. */
function backlogOf(port: number): number {
  const out = execFileSync('ss', ['-ltnH', `sport = :${port}`], { encoding: 'utf8' });
  const fields = out.trim().split(/\s+/); // State Recv-Q Send-Q Local Peer
  return Number(fields[2]);
}

t.test('the default backlog is 511, as nginx and Node', async (t) => {
  const { port } = await startGateway(t, { routes: ['/=http://127.0.0.1:9'] });
  t.equal(backlogOf(port), Math.min(511, somaxconn));
});

t.test('listenBacklog sets it on every listener, up to net.core.somaxconn', async (t) => {
  const { port } = await startGateway(t, { routes: ['/=http://127.0.0.1:9'], listenBacklog: 2048 });
  t.equal(backlogOf(port), Math.min(2048, somaxconn));
});

t.test('--backlog N on the CLI', async (t) => {
  const c = await startCli(t, ['--listen', '127.0.0.1:0', '--listen', '127.0.0.1:0', '--route', '/=http://127.0.0.1:9', '--backlog', '1000']);
  t.equal(c.ports.length, 2);
  for (const port of c.ports) t.equal(backlogOf(port), Math.min(1000, somaxconn), `listener ${port}`);
});

t.test('a backlog out of range is refused at start, naming the field', async (t) => {
  for (const listenBacklog of [0, -1, 1.5, 70000, '100']) {
    t.throws(() => createGateway({ routes: ['/=http://127.0.0.1:9'], listenBacklog: listenBacklog as number }), /listenBacklog/, String(listenBacklog));
  }
});
