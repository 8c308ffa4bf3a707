// The `npm start` demo page, opened in a real browser (Debian chromium via
// playwright-core): the page comes through wsgate's `location /`, its
// WebSocket through `location /ws/`, and the echoes show up on the page.
import t from 'tap';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { startDemo } from '../scripts/demo.js';

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
