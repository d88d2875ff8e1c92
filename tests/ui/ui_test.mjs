// Browser test of the admin UI: Debian's Chromium, headless, driven by
// playwright-core against a control plane seeded by tests/ui/seed.py
// (see tests/integration/suite_ui.sh). Progress on stderr; the last stdout
// line is "N passed, N failed". Screenshots of every page at desktop and
// phone width go to $UI_SCREENSHOT_DIR.
import { chromium } from 'playwright-core';
import { readFile, mkdir } from 'node:fs/promises';
import path from 'node:path';

const URL = process.env.CP_URL;
const ADMIN = process.env.CP_ADMIN_TOKEN;
const VIEWER = process.env.CP_VIEWER_TOKEN;
const SHOTS = process.env.UI_SCREENSHOT_DIR || 'ui-screenshots';
const EXE = process.env.CHROMIUM || '/usr/bin/chromium';
const GW = process.env.GW_URL;
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };
const PAGES = ['overview', 'keys', 'teams', 'models', 'credentials', 'dataplanes', 'spend', 'logs', 'audit'];

class Failure extends Error {}
const check = (c, msg) => { if (!c) throw new Failure(msg); };
const eq = (got, want, what) => {
  if (JSON.stringify(got) !== JSON.stringify(want)) throw new Failure(`${what}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
};

async function api(method, p, body, token = ADMIN) {
  const r = await fetch(URL + p, { method, headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  return { status: r.status, doc: text ? JSON.parse(text) : null };
}

const problems = []; // console errors, page errors, CSP violations, failed requests: any fails a test
function watch(page, who) {
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`${who} console: ${m.text()}`); });
  page.on('pageerror', (e) => problems.push(`${who} page error: ${e.message}`));
  page.on('requestfailed', (r) => { if (!r.url().startsWith('blob:')) problems.push(`${who} request failed: ${r.url()} ${r.failure()?.errorText}`); });
}
function noProblems(what) {
  const p = problems.splice(0);
  check(p.length === 0, `${what}: ${p.join(' | ')}`);
}

// One chat completion through the gateway with key; {status, cost, id}.
async function chat(key) {
  const r = await fetch(`${GW}/v1/chat/completions`, { method: 'POST',
    headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ model: 'ui-mock', messages: [{ role: 'user', content: 'hello from the admin UI test' }] }) });
  await r.text();
  return { status: r.status, cost: r.headers.get('x-gateway-cost-usd'), id: r.headers.get('x-gateway-request-id') };
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// Polls fn until it returns a truthy value (bounded; the data plane and the
// usage shipper are asynchronous). Not a timing assertion: only the bound.
async function until(fn, what, seconds = 30) {
  for (let i = 0; i < seconds * 5; i++) {
    const v = await fn();
    if (v) return v;
    await sleep(200);
  }
  throw new Failure(`gave up waiting for ${what}`);
}

let browser;
let admin; // { ctx, page } signed in as admin
const results = [];
const tests = [];
const test = (name, fn) => tests.push([name, fn]);

async function newPage(viewport = DESKTOP, who = 'page') {
  const ctx = await browser.newContext({ viewport, acceptDownloads: true });
  await ctx.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: URL });
  const page = await ctx.newPage();
  watch(page, who);
  return { ctx, page };
}

async function signIn(page, token) {
  await page.goto(URL + '/');
  await page.getByLabel('Admin token').fill(token);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.locator('header.top').waitFor();
}

async function go(page, hash, heading) {
  await page.evaluate((h) => { location.hash = h; }, hash);
  await page.getByRole('heading', { level: 1, name: heading }).waitFor();
  await page.locator('main p.loading').first().waitFor({ state: 'detached', timeout: 10000 }).catch(() => {});
}

// ---------------------------------------------------------------- first load

let firstLoad = '';
test('first_load_is_small_and_same_origin', async () => {
  const { ctx, page } = await newPage(DESKTOP, 'first-load');
  const cdp = await ctx.newCDPSession(page);
  await cdp.send('Network.enable');
  await cdp.send('Network.setCacheDisabled', { cacheDisabled: true });
  let bytes = 0;
  const urls = [];
  cdp.on('Network.loadingFinished', (e) => { bytes += e.encodedDataLength; });
  cdp.on('Network.requestWillBeSent', (e) => urls.push(e.request.url));
  const t0 = Date.now();
  await page.goto(URL + '/');
  await page.getByLabel('Admin token').waitFor();
  const signinMs = Date.now() - t0;
  const signinBytes = bytes;
  const signinReqs = urls.length;
  check(signinBytes > 1000, `sign-in page transferred ${signinBytes} bytes`);
  check(urls.every((u) => u.startsWith(URL + '/')), `only same-origin requests: ${urls.join(' ')}`);
  check(!urls.some((u) => u.includes(ADMIN)), 'no token in any URL');
  // signed in (token already in this tab's session storage): until the overview shows its numbers
  await page.evaluate((t) => sessionStorage.setItem('gw.admin_token', t), ADMIN);
  bytes = 0;
  urls.length = 0;
  const t1 = Date.now();
  await page.reload();
  await page.getByRole('region', { name: 'Spend today' }).waitFor();
  const overviewMs = Date.now() - t1;
  check(urls.every((u) => !u.includes(ADMIN)), 'no token in any URL');
  const nav = await page.evaluate(() => {
    const n = performance.getEntriesByType('navigation')[0];
    return { dcl: Math.round(n.domContentLoadedEventEnd), load: Math.round(n.loadEventEnd) };
  });
  firstLoad = `first load (cache disabled, loopback): sign-in screen ${signinBytes} bytes in ${signinReqs} requests, interactive in ${signinMs} ms; ` +
    `signed-in overview ${bytes} bytes in ${urls.length} requests (incl. API), numbers shown in ${overviewMs} ms ` +
    `(DOMContentLoaded ${nav.dcl} ms, load ${nav.load} ms)`;
  console.error(`# ${firstLoad}`);
  await ctx.close();
  noProblems('first load');
});

// ---------------------------------------------------------------- sign-in

test('bad_token_is_refused_plainly', async () => {
  const { ctx, page } = await newPage();
  await page.goto(URL + '/');
  await page.getByLabel('Admin token').fill('not-a-token');
  await page.getByRole('button', { name: 'Sign in' }).click();
  const alert = page.getByRole('alert');
  await alert.waitFor();
  check((await alert.textContent()).includes('not valid'), 'message says the token is not valid');
  eq(await page.evaluate(() => sessionStorage.length), 0, 'nothing stored');
  await ctx.close();
  problems.splice(0); // the 401 of /api/me is logged by Chromium as a failed resource: expected here
});

test('admin_signs_in_token_only_in_session_storage', async () => {
  admin = await newPage(DESKTOP, 'admin');
  const { page } = admin;
  await signIn(page, ADMIN);
  check((await page.locator('header .who').textContent()).includes('admin'), 'role shown');
  eq(await page.evaluate(() => sessionStorage.getItem('gw.admin_token')), ADMIN, 'token in sessionStorage');
  eq(await page.evaluate(() => localStorage.length), 0, 'nothing in localStorage');
  check(!page.url().includes(ADMIN), 'token not in the URL');
  const cookies = await admin.ctx.cookies();
  eq(cookies.length, 0, 'no cookies');
  noProblems('sign-in');
});

test('overview_shows_seeded_numbers', async () => {
  const { page } = admin;
  await go(page, '#/overview', 'Overview');
  await page.getByRole('region', { name: 'Spend today' }).waitFor();
  const o = (await api('GET', '/api/overview?days=14')).doc;
  const month = await page.getByRole('region', { name: 'Spend this month' }).locator('.big').textContent();
  const want = '$' + Number(o.month.cost_usd).toLocaleString('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  eq(month, want, 'month spend card');
  const req = await page.getByRole('region', { name: 'Requests (14 d)' }).locator('.big').textContent();
  eq(req, Number(o.range.requests).toLocaleString('en-US'), 'requests card');
  check(o.range.requests > 100, 'seeded traffic is in range');
  eq(await page.locator('svg.chart').count() >= 3, true, 'three charts drawn');
  const top = await page.getByRole('list', { name: 'Top teams' }).textContent();
  check(top.includes(o.top_teams[0].name), `top teams lists ${o.top_teams[0].name}`);
  await page.getByRole('combobox', { name: 'Time range' }).selectOption('30');
  await page.getByRole('region', { name: 'Requests (30 d)' }).waitFor();
  noProblems('overview');
});

// ---------------------------------------------------------------- keys

let issued = null;
let issuedSecret = null;
let served = null; // the gateway's answer to the issued key
test('issue_key_reveals_once_and_copies', async () => {
  const { page } = admin;
  await go(page, '#/keys', 'Keys');
  await page.getByRole('button', { name: 'Issue key' }).click();
  const dlg = page.getByRole('dialog', { name: 'Issue a key' });
  await dlg.getByLabel('Name').fill('ui-test-key');
  await dlg.getByLabel('Team').selectOption({ label: 'Search' });
  await dlg.getByLabel('Requests / minute').fill('60');
  await dlg.getByLabel('Budget (USD)').fill('25');
  await dlg.getByLabel('Budget period').selectOption('monthly');
  await page.screenshot({ path: path.join(SHOTS, 'issue-key-dialog-desktop.png') });
  await dlg.getByRole('button', { name: 'Issue key' }).click();
  const reveal = page.getByRole('dialog', { name: 'Key ui-test-key issued' });
  await reveal.waitFor();
  const secret = await reveal.getByLabel('New secret').inputValue();
  check(/^sk-gw-[A-Za-z0-9_-]{43}$/.test(secret), `revealed key looks like a key: ${secret.slice(0, 8)}…`);
  await reveal.getByRole('button', { name: 'Copy' }).click();
  await reveal.getByText('Copied').waitFor();
  await page.screenshot({ path: path.join(SHOTS, 'key-reveal-desktop.png') });
  eq(await page.evaluate(() => navigator.clipboard.readText()), secret, 'clipboard holds the key');
  await reveal.getByRole('button', { name: 'Done' }).click();
  await reveal.waitFor({ state: 'detached' });
  check(!(await page.content()).includes(secret), 'the secret is gone from the page once closed');
  check(!(await page.evaluate(() => JSON.stringify(sessionStorage) + JSON.stringify(localStorage))).includes(secret), 'never stored');
  const list = (await api('GET', '/api/keys?q=ui-test-key')).doc.data;
  eq(list.length, 1, 'one key issued');
  issued = list[0];
  issuedSecret = secret;
  check(secret.startsWith(issued.key_prefix), 'prefix matches');
  eq([issued.rpm_limit, Number(issued.budget_usd), issued.budget_period, issued.status], [60, 25, 'monthly', 'active'], 'limits as entered');
  await page.getByRole('row', { name: /ui-test-key/ }).waitFor();
  await page.evaluate(() => navigator.clipboard.writeText(''));
  noProblems('issue key');
});

test('issued_key_works_and_its_request_shows_in_log_and_spend', async () => {
  const { page } = admin;
  served = await until(async () => { const r = await chat(issuedSecret); return r.status === 200 ? r : null; },
    'the gateway to accept the new key');
  check(served.id && Number(served.cost) > 0, `the gateway priced the request: ${JSON.stringify(served)}`);
  await until(async () => (await api('GET', `/api/spend/logs?key_id=${issued.id}`)).doc.total >= 1, 'usage to reach spend_log');
  await go(page, `#/logs/${issued.id}`, 'Request log');
  const row = page.getByRole('row', { name: new RegExp(served.id) });
  await row.waitFor();
  check((await row.textContent()).includes('ui-mock'), 'the row names the model');
  await go(page, '#/spend', 'Spend explorer');
  await page.getByLabel('Group by').selectOption('key');
  const keyRow = page.getByRole('row', { name: /ui-test-key/ });
  await keyRow.waitFor();
  const cost = await keyRow.locator('td[data-label="Cost"]').textContent();
  const n = Number(served.cost);
  eq(cost, '$' + n.toLocaleString('en-US', { minimumFractionDigits: n < 1 ? 4 : 2, maximumFractionDigits: n < 1 ? 4 : 2 }), 'the key\'s cost in the explorer');
  eq(await keyRow.locator('td[data-label="Requests"]').textContent(), '1', 'one request');
  await page.getByLabel('Group by').selectOption('day');
  noProblems('traffic');
});

test('search_and_filters_narrow_the_key_list', async () => {
  const { page } = admin;
  await go(page, '#/keys', 'Keys');
  await page.getByRole('searchbox', { name: 'Search' }).fill('support');
  await page.waitForFunction(() => document.querySelectorAll('main tbody tr').length === 1);
  check((await page.locator('main tbody').textContent()).includes('support-bot'), 'search finds support-bot');
  await page.getByRole('searchbox', { name: 'Search' }).fill('');
  await page.getByLabel('Status').selectOption('revoked');
  await page.waitForFunction(() => [...document.querySelectorAll('main tbody tr')].every((r) => r.textContent.includes('revoked')) &&
    document.querySelectorAll('main tbody tr').length === 1);
  check((await page.locator('main tbody').textContent()).includes('legacy-batch'), 'the revoked seed key');
  await page.getByLabel('Status').selectOption('');
  await page.getByLabel('Team').selectOption({ label: 'Search' });
  await page.waitForFunction(() => document.querySelectorAll('main tbody tr').length === 3);
  await page.getByLabel('Team').selectOption('');
  noProblems('filters');
});

test('edit_key_limits_scopes_and_budget', async () => {
  const { page } = admin;
  await go(page, `#/keys/${issued.id}`, /ui-test-key/);
  await page.getByRole('button', { name: 'Edit' }).click();
  const dlg = page.getByRole('dialog', { name: 'Edit ui-test-key' });
  await dlg.getByLabel('Requests / minute').fill('123');
  await dlg.getByLabel('Models (scopes)').fill('ui-mock, claude-haiku');
  await dlg.getByLabel('Budget (USD)').fill('30');
  await dlg.getByRole('button', { name: 'Save' }).click();
  await dlg.waitFor({ state: 'detached' });
  await page.getByText('123 rpm').waitFor();
  const k = (await api('GET', `/api/keys/${issued.id}`)).doc;
  eq([k.rpm_limit, k.models, Number(k.budget_usd), k.team_id], [123, ['ui-mock', 'claude-haiku'], 30, issued.team_id], 'saved');
  noProblems('edit key');
});

test('key_detail_has_usage_chart', async () => {
  const { page } = admin;
  const seeded = (await api('GET', '/api/keys?q=search-prod')).doc.data[0];
  await go(page, `#/keys/${seeded.id}`, /search-prod/);
  await page.getByRole('img', { name: 'Spend per day for this key' }).waitFor();
  check((await page.locator('main table tbody tr').count()) > 0, 'recent requests listed');
  noProblems('key detail');
});

test('rotate_key_shows_new_secret', async () => {
  const { page } = admin;
  const before = (await api('GET', '/api/keys?q=search-staging')).doc.data[0];
  await go(page, '#/keys', 'Keys');
  await page.getByRole('button', { name: 'Rotate search-staging' }).click();
  await page.getByRole('dialog', { name: 'Rotate search-staging?' }).getByRole('button', { name: 'Rotate key' }).click();
  const reveal = page.getByRole('dialog', { name: 'New secret for search-staging' });
  const secret = await reveal.getByLabel('New secret').inputValue();
  const after = (await api('GET', `/api/keys/${before.id}`)).doc;
  check(secret.startsWith(after.key_prefix) && after.key_prefix !== before.key_prefix, 'a new secret with a new prefix');
  await reveal.getByRole('button', { name: 'Done' }).click();
  noProblems('rotate');
});

test('revoke_key_with_confirmation', async () => {
  const { page } = admin;
  await go(page, '#/keys', 'Keys');
  await page.getByRole('button', { name: 'Revoke ui-test-key' }).click();
  const dlg = page.getByRole('dialog', { name: 'Revoke ui-test-key?' });
  await dlg.getByRole('button', { name: 'Cancel' }).click();
  eq((await api('GET', `/api/keys/${issued.id}`)).doc.status, 'active', 'cancel changes nothing');
  await page.getByRole('button', { name: 'Revoke ui-test-key' }).click();
  await page.getByRole('dialog', { name: 'Revoke ui-test-key?' }).getByRole('button', { name: 'Revoke key' }).click();
  await page.getByRole('row', { name: /ui-test-key.*revoked/ }).waitFor();
  eq((await api('GET', `/api/keys/${issued.id}`)).doc.status, 'revoked', 'revoked in the API');
  eq(await page.getByRole('button', { name: 'Revoke ui-test-key' }).count(), 0, 'no revoke button on a revoked key');
  const refused = await until(async () => { const r = await chat(issuedSecret); return r.status === 401 ? r : null; },
    'the gateway to refuse the revoked key');
  eq(refused.status, 401, 'the next request with the revoked key is refused');
  noProblems('revoke');
});

test('api_errors_are_shown_plainly', async () => {
  const { page } = admin;
  await go(page, '#/teams', 'Teams');
  await page.getByRole('button', { name: 'New team' }).click();
  const dlg = page.getByRole('dialog', { name: 'New team' });
  await dlg.getByLabel('Name').fill('Search');
  await dlg.getByRole('button', { name: 'Create team' }).click();
  const alert = dlg.getByRole('alert');
  await alert.waitFor();
  const text = await alert.textContent();
  check(text.includes('409') && text.includes('already exists'), `409 shown: ${text}`);
  await dlg.getByRole('button', { name: 'Cancel' }).click();
  problems.splice(0); // Chromium logs the 409 response as a console error: expected here
});

// ---------------------------------------------------------------- spend

test('spend_by_team_filter_and_csv_export', async () => {
  const { page } = admin;
  await go(page, '#/spend', 'Spend explorer');
  await page.getByLabel('Group by').selectOption('model');
  await page.getByLabel('Team', { exact: true }).selectOption({ label: 'Support' });
  const teams = (await api('GET', '/api/teams')).doc.data;
  const support = teams.find((t) => t.name === 'Support');
  const from = await page.getByLabel('From').inputValue();
  const to = await page.getByLabel('To (inclusive)').inputValue();
  const end = new Date(new Date(`${to}T00:00:00Z`).getTime() + 86400000).toISOString().slice(0, 10);
  const want = (await api('GET', `/api/spend?group_by=model&team_id=${support.id}&from=${from}T00:00:00Z&to=${end}T00:00:00Z`)).doc;
  const all = (await api('GET', `/api/spend?group_by=model&from=${from}T00:00:00Z&to=${end}T00:00:00Z`)).doc;
  check(want.totals.requests > 0 && want.totals.requests < all.totals.requests, 'the team has some but not all spend');
  await page.waitForFunction((n) => document.querySelectorAll('main tbody tr').length === n, want.data.length);
  const shownTotal = await page.getByRole('region', { name: 'Requests' }).locator('.big').textContent();
  eq(shownTotal, Number(want.totals.requests).toLocaleString('en-US'), 'requests of the team only');
  const [dl] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Export CSV' }).click()]);
  check(dl.suggestedFilename().endsWith('.csv') && dl.suggestedFilename().includes('Support'), `file name ${dl.suggestedFilename()}`);
  const csv = (await readFile(await dl.path(), 'utf8')).trim().split('\r\n');
  eq(csv[0], 'model,id,requests,prompt_tokens,completion_tokens,cached_tokens,cost_usd', 'CSV header');
  eq(csv.length - 1, want.data.length, 'one CSV row per group');
  const sum = csv.slice(1).reduce((a, l) => a + Number(l.split(',')[6]), 0);
  check(Math.abs(sum - Number(want.totals.cost_usd)) < 1e-6, `CSV costs add up to the API total (${sum} vs ${want.totals.cost_usd})`);
  await page.getByLabel('Group by').selectOption('day');
  await page.getByRole('img', { name: 'Spend per day in USD' }).waitFor();
  await page.getByLabel('Team', { exact: true }).selectOption('');
  noProblems('spend');
});

test('request_log_filters_and_pages', async () => {
  const { page } = admin;
  await go(page, '#/logs', 'Request log');
  await page.getByLabel('Key', { exact: true }).selectOption(''); // an earlier visit filtered one key
  const total = (await api('GET', '/api/spend/logs?limit=1')).doc.total;
  await page.getByText(`1–50 of ${total.toLocaleString('en-US')}`).waitFor();
  await page.getByRole('button', { name: 'Next' }).click();
  await page.getByText(`51–100 of ${total.toLocaleString('en-US')}`).waitFor();
  await page.getByLabel('Status').fill('429');
  await page.getByLabel('Status').press('Tab');
  const n429 = (await api('GET', '/api/spend/logs?status=429&limit=1')).doc.total;
  check(n429 > 0, 'seeded some 429s');
  await page.getByText(`of ${n429.toLocaleString('en-US')}`).waitFor();
  const statuses = await page.locator('main tbody td[data-label="Status"]').allTextContents();
  check(statuses.length > 0 && statuses.every((s) => s === '429'), `only 429 rows: ${statuses.slice(0, 5)}`);
  await page.getByLabel('Status').fill('');
  await page.getByLabel('Status').press('Tab');
  noProblems('logs');
});

// ---------------------------------------------------------------- viewer

test('models_page_shows_ab_win_rates', async () => {
  const { page } = admin;
  await go(page, '#/models', 'Models & deployments');
  const panel = page.getByRole('region', { name: 'Evaluated A/B' });
  await panel.getByRole('heading', { name: 'Evaluated A/B' }).waitFor();
  const rows = await panel.locator('tbody tr').allInnerTexts();
  eq(rows.length, 2, 'one row per variant');
  // 30 wins + 3 ties of 40 = 78.8%; the canary 7 + 1.5 = 21.3%
  check(rows[0].includes('ui-mock') && rows[0].includes('78.8%') && rows[0].includes('30 / 3 / 7') && rows[0].includes('40'),
    `variant A row: ${rows[0]}`);
  check(rows[1].includes('ui-mock-canary') && rows[1].includes('21.3%') && rows[1].includes('7 / 3 / 30'), `variant B row: ${rows[1]}`);
  eq(await panel.locator('meter').count(), 2, 'a meter per variant');
  noProblems('models');
});

test('viewer_sees_everything_but_cannot_write', async () => {
  const v = await newPage(DESKTOP, 'viewer');
  const { page } = v;
  await signIn(page, VIEWER);
  check((await page.locator('header .who').textContent()).includes('read-only'), 'viewer badge');
  for (const [hash, heading, write] of [['#/keys', 'Keys', 'Issue key'], ['#/teams', 'Teams', 'New team'],
    ['#/models', 'Models & deployments', 'New model alias'], ['#/credentials', 'Provider credentials', 'Add credential']]) {
    await go(page, hash, heading);
    await page.locator('main table, main .empty').first().waitFor();
    eq(await page.getByRole('button', { name: write }).count(), 0, `${heading}: no "${write}" for a viewer`);
    eq(await page.locator('main button.danger').count(), 0, `${heading}: no destructive buttons for a viewer`);
  }
  await go(page, '#/keys', 'Keys');
  check((await page.locator('main tbody tr').count()) >= 5, 'the viewer reads the keys');
  eq(await page.getByRole('button', { name: /^(Revoke|Rotate) / }).count(), 0, 'no revoke/rotate for a viewer');
  const someKey = (await api('GET', '/api/keys?status=active')).doc.data[0];
  await go(page, `#/keys/${someKey.id}`, new RegExp(someKey.name));
  eq(await page.getByRole('button', { name: /Edit|Revoke|Rotate/ }).count(), 0, 'no write buttons on a key page');
  // the API refuses a viewer's write whatever the page shows
  const status = await page.evaluate(async (id) => {
    const r = await fetch(`/api/keys/${id}/revoke`, { method: 'POST', headers: { Authorization: `Bearer ${sessionStorage.getItem('gw.admin_token')}` } });
    return r.status;
  }, someKey.id);
  eq(status, 403, 'viewer revoke refused by the API');
  // and the UI's API client words that refusal plainly
  const plain = await page.evaluate(async (id) => {
    const lib = await import('/lib.js');
    try { await lib.api('POST', `/api/keys/${id}/revoke`); return 'no error'; } catch (e) { return e.plain; }
  }, someKey.id);
  eq(plain, 'Not allowed (HTTP 403): this admin token is read-only (role viewer)', 'the 403 as the UI shows it');
  eq((await api('GET', `/api/keys/${someKey.id}`)).doc.status, 'active', 'still active');
  await v.ctx.close();
  problems.splice(0); // the 403 above is logged by Chromium
});

test('revoked_token_returns_to_sign_in', async () => {
  const tok = (await api('POST', '/api/admin-tokens', { name: 'ui-short-lived', role: 'viewer' })).doc;
  const v = await newPage(DESKTOP, 'short');
  await signIn(v.page, tok.token);
  eq((await api('POST', `/api/admin-tokens/${tok.id}/revoke`)).status, 200, 'revoked');
  await v.page.evaluate(() => { location.hash = '#/teams'; });
  await v.page.getByLabel('Admin token').waitFor();
  check((await v.page.getByRole('alert').textContent()).includes('sign in again'), 'says why');
  eq(await v.page.evaluate(() => sessionStorage.length), 0, 'token forgotten');
  await v.ctx.close();
  problems.splice(0);
});

// ---------------------------------------------------------------- screenshots

for (const [label, viewport] of [['desktop', DESKTOP], ['phone', PHONE]]) {
  test(`every_page_renders_${label}`, async () => {
    const { ctx, page } = await newPage(viewport, label);
    await page.goto(URL + '/');
    await page.getByLabel('Admin token').waitFor();
    await page.screenshot({ path: path.join(SHOTS, `signin-${label}.png`) });
    await signIn(page, ADMIN);
    for (const id of PAGES) {
      await page.evaluate((h) => { location.hash = h; }, `#/${id}`);
      await page.locator('main h1').first().waitFor();
      await page.locator('main p.loading').first().waitFor({ state: 'detached', timeout: 10000 });
      eq(await page.locator('main .alert.error').count(), 0, `${id}: no error shown`);
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      check(overflow <= 1, `${id} at ${label} width scrolls sideways by ${overflow}px`);
      await page.screenshot({ path: path.join(SHOTS, `${id}-${label}.png`), fullPage: true });
    }
    if (label === 'phone') {
      await page.evaluate(() => { location.hash = '#/keys'; });
      await page.getByRole('button', { name: /^Revoke / }).first().click();
      await page.getByRole('dialog').waitFor();
      await page.screenshot({ path: path.join(SHOTS, 'revoke-confirm-phone.png') });
      await page.getByRole('dialog').getByRole('button', { name: 'Cancel' }).click();
      await page.getByRole('button', { name: 'Menu' }).click();
      await page.getByRole('link', { name: 'Spend' }).waitFor();
      await page.screenshot({ path: path.join(SHOTS, 'menu-phone.png') });
    }
    await ctx.close();
    noProblems(`${label} pages`);
  });
}

async function main() {
  await mkdir(SHOTS, { recursive: true });
  browser = await chromium.launch({ executablePath: EXE, headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
  let passed = 0;
  let failed = 0;
  for (const [name, fn] of tests) {
    try {
      await fn();
      passed++;
      console.error(`ok - ${name}`);
    } catch (e) {
      failed++;
      console.error(`not ok - ${name}: ${e instanceof Failure ? e.message : e.stack}`);
      if (admin) await admin.page.screenshot({ path: path.join(SHOTS, `FAILED-${name}.png`), fullPage: true }).catch(() => {});
    }
  }
  await browser.close();
  if (firstLoad) console.error(`# ${firstLoad}`);
  console.log(`${passed} passed, ${failed} failed`);
  process.exitCode = failed ? 1 : 0;
}
main().catch((e) => { console.error(e); console.log('0 passed, 1 failed'); process.exitCode = 1; });
