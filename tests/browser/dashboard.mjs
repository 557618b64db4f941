// The dashboard end to end in Debian's Chromium (no browser download): sign in with password
// + TOTP (a wrong code first), overview with its analytics,
// accounts and a bulk refresh, a RECONNECT_REQUIRED arriving in the live feed after a
// sandbox revoke (and again after a dropped socket, exactly once), every other page, phone
// width, GraphiQL offline; no request may leave 127.0.0.1. Saves a screenshot per page.
//
// node tests/browser/dashboard.mjs <base url>
// Environment (set by tests/api/dashboard.rs):
//   TW_SANDBOX_URL   the sandbox base (http://127.0.0.1:N/sandbox)
//   TW_ADMIN_KEY     an ADMIN API key (to trigger refreshes as an integration would)
//   TW_ACCOUNTS      JSON [{id, username, platform, providerAccountId}] of connected accounts
//   TW_SCREENSHOTS   where to save PNGs
//   TW_EMAIL, TW_PASSWORD, TW_TOTP_SECRET   a user to sign in as (else: API key sign-in)
//   CHROMIUM         the browser (default /usr/bin/chromium)

import { chromium } from 'playwright-core';
import { createHmac } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import path from 'node:path';

const base = process.argv[2];
if (!base) {
  console.error('usage: node dashboard.mjs <base url>');
  process.exit(2);
}
const env = process.env;
const shots = env.TW_SCREENSHOTS || 'screenshots';
const accounts = JSON.parse(env.TW_ACCOUNTS || '[]');
mkdirSync(shots, { recursive: true });

const step = (text) => console.log(`--- ${text}`);
// Never hang CI: give up (and say where) after four minutes.
setTimeout(() => {
  console.error('the browser test timed out after 240 s');
  process.exit(1);
}, 240000).unref();
function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
}

/** RFC 6238 TOTP (SHA-1, 6 digits, 30 s) from a base32 secret. */
function totp(secretBase32, offsetSteps = 0) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const c of secretBase32.replace(/=+$/, '').toUpperCase()) {
    const v = alphabet.indexOf(c);
    if (v < 0) continue;
    bits += v.toString(2).padStart(5, '0');
  }
  const key = Buffer.from(bits.match(/.{8}/g).map((b) => parseInt(b, 2)));
  const counter = Math.floor(Date.now() / 30000) + offsetSteps;
  const msg = Buffer.alloc(8);
  msg.writeBigUInt64BE(BigInt(counter));
  const mac = createHmac('sha1', key).update(msg).digest();
  const off = mac[mac.length - 1] & 0xf;
  const code = ((mac.readUInt32BE(off) & 0x7fffffff) % 1000000).toString().padStart(6, '0');
  return code;
}

/** GraphQL as an integration would call it (from Node, not the browser). */
async function api(query, variables = {}) {
  const res = await fetch(`${base}/graphql`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${env.TW_ADMIN_KEY}` },
    body: JSON.stringify({ query, variables }),
  });
  const body = await res.json();
  if (body.errors) throw new Error(`GraphQL: ${JSON.stringify(body.errors)}`);
  return body.data;
}

async function revokeAndRefresh(account) {
  const res = await fetch(`${env.TW_SANDBOX_URL}/control/revoke`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ platform: account.platform.toLowerCase(), providerAccountId: account.providerAccountId }),
  });
  check(res.ok, `sandbox revoke answered ${res.status}`);
  const data = await api(`mutation($id: ID!) { refreshAccountToken(accountId: $id) { refreshed error { code } } }`,
    { id: account.id });
  check(data.refreshAccountToken.error && data.refreshAccountToken.error.code === 'RECONNECT_REQUIRED',
    `a refresh after the revoke fails with RECONNECT_REQUIRED: ${JSON.stringify(data)}`);
}

const browser = await chromium.launch({
  executablePath: env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
    '--disable-sync', '--no-first-run', '--disable-dev-shm-usage'],
});
const outside = [];
const problems = [];
let failed = false;
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  // Nothing may leave 127.0.0.1: record and refuse anything else.
  await context.route('**/*', (route) => {
    const url = new URL(route.request().url());
    if (url.hostname !== '127.0.0.1' && url.protocol !== 'data:' && url.protocol !== 'blob:') {
      outside.push(route.request().url());
      return route.abort();
    }
    return route.continue();
  });
  const page = await context.newPage();
  page.on('websocket', (ws) => {
    if (new URL(ws.url()).hostname !== '127.0.0.1') outside.push(ws.url());
  });
  page.on('console', (msg) => {
    if (msg.type() === 'error') problems.push(`console: ${msg.text()}`);
  });
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  const shot = async (name) => {
    const text = await page.locator('body').innerText();
    check(!/\b(null|undefined|NaN|\[object Object\])\b/.test(text), `${name} shows no placeholder junk: ${text.slice(0, 2000)}`);
    await page.screenshot({ path: path.join(shots, `${name}.png`), animations: 'disabled', fullPage: true });
  };
  const heading = (text) => page.getByRole('heading', { level: 1, name: text }).waitFor();

  step('sign-in page');
  await page.goto(`${base}/`);
  await heading('tokenwarden');
  check(await page.locator('#email').getAttribute('autocomplete') === 'username', 'email autocomplete');
  check(await page.locator('#password').getAttribute('autocomplete') === 'current-password', 'password autocomplete');
  check(await page.locator('#code').getAttribute('autocomplete') === 'one-time-code', 'code autocomplete');
  await shot('sign-in');

  if (env.TW_EMAIL) {
    step('a wrong code is refused');
    await page.getByLabel('Email').fill(env.TW_EMAIL);
    await page.getByLabel('Password', { exact: true }).fill(env.TW_PASSWORD);
    const good = totp(env.TW_TOTP_SECRET);
    const wrong = good === '000000' ? '111111' : '000000';
    await page.getByLabel('Authentication code').fill(wrong);
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    await page.getByRole('alert').filter({ hasText: /code/i }).waitFor();
    await shot('sign-in-refused');
    step('sign in with password + TOTP');
    await page.getByLabel('Password', { exact: true }).fill(env.TW_PASSWORD);
    await page.getByLabel('Authentication code').fill(totp(env.TW_TOTP_SECRET));
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  } else {
    step('a wrong API key is refused');
    await page.getByText('Sign in with an API key instead').click();
    await page.getByLabel('API key').fill('tw_wrong');
    await page.getByRole('button', { name: 'Use this key' }).click();
    await page.getByRole('alert').filter({ hasText: /refused/ }).waitFor();
    step('sign in with an API key');
    await page.getByLabel('API key').fill(env.TW_ADMIN_KEY);
    await page.getByRole('button', { name: 'Use this key' }).click();
  }

  step('overview');
  await heading('Overview');
  await page.getByRole('heading', { name: 'Accounts by status' }).waitFor();
  await page.getByRole('heading', { name: 'Tokens expiring over the next 7 days' }).waitFor();
  await page.getByRole('heading', { name: 'System health' }).waitFor();
  await page.getByRole('table', { name: 'System health checks' }).getByRole('rowheader', { name: 'Last backup' }).waitFor();
  await page.getByRole('heading', { name: 'Refreshes per platform' }).waitFor();
  await page.getByRole('heading', { name: 'Refresh attempts per hour' }).waitFor();
  await page.getByRole('heading', { name: 'Failure reasons, last 7 days' }).waitFor();
  await page.getByRole('heading', { name: 'Encryption key' }).waitFor();
  // The reads the Rust test made as an integration, per account and per key.
  const reads = page.getByRole('region', { name: 'Most read accounts, last 7 days' });
  for (const a of accounts.slice(2)) await reads.getByRole('link', { name: new RegExp(`@${a.username}\\b`) }).waitFor();
  await page.getByRole('region', { name: 'Most active readers, last 7 days' }).getByText(/API key/).first().waitFor();
  // Status by icon and words, not colour alone.
  await page.getByRole('region', { name: 'Accounts by status and platform' }).getByText('Reconnect required').waitFor();
  await shot('overview-before');

  step('live feed: RECONNECT_REQUIRED after a sandbox revoke, without reloading');
  const [first, second, ...rest] = accounts;
  check(first && second && rest.length, 'the Rust test seeds at least three accounts');
  await page.getByRole('link', { name: /^Live feed/ }).click();
  await heading('Live feed');
  await page.locator('#feed-state').filter({ hasText: 'Live' }).waitFor();
  await page.evaluate(() => { window.notReloaded = true; });
  await revokeAndRefresh(first);
  const firstRow = page.locator(`#feed-rows tr[data-kind="RECONNECT_REQUIRED"]`).filter({ hasText: `@${first.username}` });
  await firstRow.first().waitFor({ timeout: 15000 });
  check(await page.evaluate(() => window.notReloaded === true), 'the page was not reloaded');
  check(await firstRow.first().evaluate((tr) => tr.classList.contains('failure')), 'failures stand out');
  await shot('live-feed');

  step('live feed resumes after a dropped connection without losing or repeating events');
  await page.evaluate(() => window.tokenwarden.feed.subscription.drop());
  await revokeAndRefresh(second);
  const secondRow = page.locator(`#feed-rows tr[data-kind="RECONNECT_REQUIRED"]`).filter({ hasText: `@${second.username}` });
  await secondRow.first().waitFor({ timeout: 20000 });
  check(await page.evaluate(() => window.notReloaded === true), 'still the same page');
  check(await page.evaluate(() => window.tokenwarden.feed.subscription.reconnects) >= 1, 'the socket reconnected');
  const ids = await page.locator('#feed-rows tr[data-id]').evaluateAll((trs) => trs.map((tr) => tr.dataset.id));
  check(new Set(ids).size === ids.length, `no event shown twice: ${ids}`);
  check(await secondRow.count() === 1, 'the missed event arrived once');

  step('overview after the failures: ranked reasons and hourly attempts');
  await page.getByRole('link', { name: 'Overview', exact: true }).click();
  await heading('Overview');
  const reasons = page.getByRole('region', { name: 'Failure reasons, most frequent first' });
  await reasons.getByRole('row').filter({ hasText: 'TikTok' }).first().waitFor();
  const hourly = await page.locator('#hourly-total').textContent();
  check(/[1-9]\d* failed/.test(hourly), `the hourly chart counts the failures: ${hourly}`);
  await shot('overview');

  step('accounts and a bulk refresh');
  await page.getByRole('link', { name: 'Accounts', exact: true }).click();
  await heading('Accounts');
  for (const a of accounts) await page.getByRole('link', { name: `@${a.username}` }).waitFor();
  for (const a of rest) {
    await page.getByLabel(`Select @${a.username}`).check();
  }
  await page.getByText(`${rest.length} selected`).waitFor();
  await page.getByRole('group', { name: 'Bulk actions' }).getByRole('button', { name: 'Refresh', exact: true }).click();
  const dialog = page.getByRole('dialog');
  await dialog.getByRole('heading', { name: `Refresh ${rest.length} accounts?` }).waitFor();
  await shot('accounts-confirm');
  await dialog.getByRole('button', { name: 'Refresh' }).click();
  const summary = page.locator('#bulk-result').getByText(/^Refreshed \d+, already fresh \d+, not refreshable yet \d+, failed \d+\.$/);
  await summary.waitFor();
  const [, done, fresh, notYet, bad] = (await summary.textContent()).match(/(\d+)\D+(\d+)\D+(\d+)\D+(\d+)/).map(Number);
  check(done >= 1 && done + fresh + notYet === rest.length && bad === 0, `the selected accounts refreshed: ${await summary.textContent()}`);
  await shot('accounts');

  step('filters and search');
  await page.getByLabel('Search').fill(rest[0].username);
  await page.getByRole('button', { name: 'Apply' }).click();
  await page.waitForURL(/q=/);
  await page.getByRole('link', { name: `@${rest[0].username}` }).waitFor();
  check(await page.getByRole('link', { name: `@${first.username}` }).count() === 0, 'search narrows the list');

  step('account page');
  await page.getByRole('link', { name: `@${first.username}` }).count();
  await page.goto(`${base}/#/accounts/${encodeURIComponent(first.id)}`);
  await page.getByRole('heading', { name: 'Refresh history' }).waitFor();
  await page.locator('tr.failure').first().waitFor();
  await page.getByRole('button', { name: 'Create a reconnect link' }).click();
  await page.getByLabel('Reconnect link (send it to the account owner)').waitFor();
  const link = await page.getByLabel('Reconnect link (send it to the account owner)').inputValue();
  check(link.includes('/oauth/start/'), `a reconnect link (a launch URL on tokenwarden): ${link}`);
  await page.getByText('Reconnect required').first().waitFor();
  await shot('account');

  step('audit log');
  await page.getByRole('link', { name: 'Audit log' }).click();
  await heading('Audit log');
  await page.getByRole('cell', { name: 'Token refresh failed' }).first().waitFor();
  if (env.TW_EMAIL) await page.getByRole('cell', { name: 'User signed in' }).first().waitFor();
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    page.getByRole('button', { name: 'Export CSV' }).click(),
  ]);
  const csvPath = path.join(shots, 'audit.csv');
  await download.saveAs(csvPath);
  await shot('audit');

  step('notifications');
  await page.getByRole('link', { name: 'Notifications' }).click();
  await heading('Notifications');
  await page.getByText(`@${first.username}`).first().waitFor();
  await shot('notifications');

  step('webhooks: register (secret shown once)');
  await page.getByRole('link', { name: 'Webhooks' }).click();
  await heading('Webhooks');
  await page.getByLabel('URL').fill('http://127.0.0.1:9/hook');
  await page.getByLabel('Reconnect required').check();
  await page.getByRole('button', { name: 'Register' }).click();
  await page.getByLabel('Signing secret').waitFor();
  await page.getByRole('button', { name: 'Deliveries' }).first().click();
  await page.getByRole('heading', { name: /^Deliveries to/ }).waitFor();
  await shot('webhooks');

  step('API keys: create (shown once) and revoke');
  await page.getByRole('link', { name: 'API keys' }).click();
  await heading('API keys');
  await page.getByLabel('Name').fill('browser test');
  await page.getByLabel('Role').selectOption('VIEWER');
  await page.getByRole('button', { name: 'Create key' }).click();
  const newKey = await page.getByLabel('New API key').inputValue();
  check(newKey.length > 20, 'the new key is shown');
  await page.getByRole('button', { name: 'Revoke browser test' }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Revoke' }).click();
  await page.getByText('Revoked “browser test”.').waitFor();
  await shot('api-keys');

  if (await page.locator('#nav-users').isVisible()) {
    step('users');
    await page.getByRole('link', { name: 'Users' }).click();
    await heading('Users');
    if (env.TW_EMAIL) await page.getByRole('cell', { name: env.TW_EMAIL }).waitFor();
    await shot('users');
  }

  step('every form control has a label');
  for (const [hash, title] of [['#/accounts', 'Accounts'], ['#/audit', 'Audit log'], ['#/webhooks', 'Webhooks'], ['#/keys', 'API keys']]) {
    await page.goto(`${base}/${hash}`);
    await heading(title);
    await page.locator('main table').first().waitFor();
    const unlabelled = await page.evaluate(() => [...document.querySelectorAll('main input, main select, main textarea')]
      .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label') && !el.getAttribute('aria-labelledby'))
      .map((el) => el.outerHTML));
    check(unlabelled.length === 0, `unlabelled controls on ${hash}: ${unlabelled.join(' ')}`);
  }

  step('keyboard: skip link and visible focus');
  await page.goto(`${base}/#/overview`);
  await page.reload();
  await heading('Overview');
  await page.keyboard.press('Tab');
  const focused = await page.evaluate(() => document.activeElement && document.activeElement.textContent);
  check(focused === 'Skip to content', `the first Tab reaches the skip link, got ${focused}`);
  const outline = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
  check(outline !== 'none', 'the focused element has a visible outline');
  await page.keyboard.press('Enter');
  check(await page.evaluate(() => document.activeElement.id) === 'main', 'the skip link moves focus to the content');
  await page.getByRole('link', { name: 'Accounts', exact: true }).press('Enter');
  await heading('Accounts');
  check(await page.evaluate(() => document.activeElement.tagName) === 'H1', 'a page change moves focus to its heading');

  step('phone width (390 px)');
  await page.setViewportSize({ width: 390, height: 844 });
  for (const [hash, title, name] of [['#/overview', 'Overview', 'overview-phone'], ['#/accounts', 'Accounts', 'accounts-phone'], ['#/live', 'Live feed', 'live-feed-phone']]) {
    await page.goto(`${base}/${hash}`);
    await heading(title);
    await page.locator('main table').first().waitFor();
    const width = await page.evaluate(() => document.documentElement.scrollWidth);
    check(width <= 390, `${hash} fits 390 px (scroll width ${width})`);
    await shot(name);
  }
  await page.getByRole('button', { name: 'Menu' }).click();
  await page.getByRole('link', { name: 'Audit log' }).click();
  await heading('Audit log');
  await page.setViewportSize({ width: 1280, height: 900 });

  step('GraphiQL offline');
  // The same tab: GraphiQL reuses the dashboard's sign-in.
  const gq = page;
  await gq.goto(`${base}/graphiql`);
  await gq.locator('.graphiql-container').waitFor({ timeout: 20000 });
  await gq.getByRole('button', { name: /Execute query/i }).click();
  await gq.locator('.result-window').getByText('"tenant"').waitFor({ timeout: 20000 });
  await gq.screenshot({ path: path.join(shots, 'graphiql.png') });

  step('sign out');
  await page.goto(`${base}/#/overview`);
  await heading('Overview');
  await page.getByRole('button', { name: 'Sign out' }).click();
  await heading('tokenwarden');
  await page.getByText('You are signed out.').waitFor();

  check(outside.length === 0, `requests left 127.0.0.1: ${outside.join(', ')}`);
  const csp = problems.filter((p) => /Content Security Policy|page error/.test(p));
  check(csp.length === 0, `the pages ran into errors: ${csp.join('\n')}`);
  console.log(`ok: screenshots in ${shots}`);
} catch (err) {
  failed = true;
  console.error(err && err.stack ? err.stack : err);
  if (problems.length) console.error(`browser messages:\n${problems.join('\n')}`);
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
