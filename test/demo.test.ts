// The `npm start` demo page, opened in a real browser (Debian chromium via
// playwright-core): the page comes through wsgate's `location /`, its
// WebSocket through `location /ws/`, and the echoes show up on the page.
import t from 'tap';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync } from 'node:fs';
import { chromium } from 'playwright-core';
import { startDemo } from '../scripts/demo.js';
import { makePki } from './helpers/tls.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

t.test('the demo page shows echoes through wsgate in Chromium', { skip: existsSync(CHROMIUM) ? false : `${CHROMIUM} not installed (.ci/run installs it)` }, async (t) => {
  const demo = await startDemo({ proxy: 0, app: 0, echo: 0 }, true);
  t.teardown(() => demo.close());
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--no-first-run', '--disable-quic',
    ],
  });
  t.teardown(() => browser.close());
  const page = await browser.newPage();
  await page.goto(demo.url);
  await page.waitForSelector('#status:text("open")', { timeout: 10_000 });
  await page.waitForSelector('#log li.echo:text("< hello from the browser")', { timeout: 10_000 });
  await page.fill('#message', 'typed by a person');
  await page.click('#send');
  await page.waitForSelector('#log li.echo:text("< typed by a person")', { timeout: 10_000 });
  const items = await page.$$eval('#log li', (lis) => lis.map((li) => li.textContent));
  t.same(items, ['> hello from the browser', '< hello from the browser', '> typed by a person', '< typed by a person']);
  t.equal(demo.gateway.stats().tunnels, 1, 'the page holds one tunnel');
  await page.screenshot({ path: join(tmpdir(), 'wsgate-demo.png') });
  await page.close();
});

const CERTUTIL = '/usr/bin/certutil';

// The same page over https:// and wss:// through a TLS listener, in a Chromium that trusts
// the test CA the way a user's would: the CA in the NSS database of its $HOME (certutil).
t.test('the demo page over https:// in Chromium trusting the test CA', { skip: !existsSync(CHROMIUM) ? `${CHROMIUM} not installed (.ci/run installs it)` : !existsSync(CERTUTIL) && 'certutil not installed (.ci/run installs libnss3-tools)' }, async (t) => {
  const pki = makePki(t);
  const leaf = pki.leaf('demo', ['localhost', '127.0.0.1']);
  const demo = await startDemo({ proxy: 0, app: 0, echo: 0 }, true, { certificates: [{ cert: leaf.cert, key: leaf.key }] });
  t.teardown(() => demo.close());
  t.match(demo.url, /^https:\/\/127\.0\.0\.1:\d+\/$/);
  const home = mkdtempSync(join(tmpdir(), 'wsgate-chromium-home-'));
  const nssdb = join(home, '.pki', 'nssdb');
  mkdirSync(nssdb, { recursive: true });
  execFileSync(CERTUTIL, ['-d', `sql:${nssdb}`, '-N', '--empty-password']);
  execFileSync(CERTUTIL, ['-d', `sql:${nssdb}`, '-A', '-t', 'C,,', '-n', 'wsgate test CA', '-i', pki.caCert]);
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    env: { ...process.env, HOME: home },
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--no-first-run', '--disable-quic',
    ],
  });
  t.teardown(() => browser.close());
  const page = await browser.newPage();
  const response = await page.goto(demo.url);
  t.equal(response?.status(), 200, 'the page loads over https without a certificate error');
  const security = await response?.securityDetails();
  t.equal(security?.protocol, 'TLS 1.3');
  await page.waitForSelector('#status:text("open")', { timeout: 10_000 });
  await page.waitForSelector('#log li.echo:text("< hello from the browser")', { timeout: 10_000 });
  t.equal(await page.evaluate(() => location.protocol), 'https:');
  t.equal(demo.gateway.stats().tunnels, 1, 'the page holds one wss:// tunnel');
  t.equal(demo.gateway.stats().tlsHandshakeFailures, 0, 'no handshake refused');
  await page.close();
});
