// Times the overview page in headless Chromium against a running control
// plane (e.g. after tests/ui/bench_overview.py filled spend_log): reloads it
// three times with the cache off and prints when the numbers are on screen.
// Not part of `make test`; prints, asserts nothing.
//   CP_URL=http://... CP_ADMIN_TOKEN=... node tests/ui/overview_load.mjs
import { chromium } from 'playwright-core';

const URL = process.env.CP_URL, TOKEN = process.env.CP_ADMIN_TOKEN;
const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
const page = await ctx.newPage();
const cdp = await ctx.newCDPSession(page);
await cdp.send('Network.setCacheDisabled', { cacheDisabled: true });
await page.goto(URL + '/');
await page.evaluate((t) => sessionStorage.setItem('gw.admin_token', t), TOKEN);
for (let i = 0; i < 3; i++) {
  const t0 = Date.now();
  await page.reload();
  await page.getByRole('region', { name: 'Spend today' }).waitFor();
  await page.locator('main p.loading').first().waitFor({ state: 'detached', timeout: 10000 }).catch(() => {});
  console.log(`overview rendered in ${Date.now() - t0} ms`);
}
await browser.close();
