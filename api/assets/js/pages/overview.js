// Overview: token health by status, what expires over the next 7 days (inline SVG chart),
// refresh outcomes per platform over 24 h and 7 days, queue, system health, sweep, keys.

import { h, svg, render, badge, notice, when, table, platformName, statusLabel, PLATFORMS } from '../dom.js';
import { gql, gqlRaw, session } from '../gql.js';

const SUMMARY = `query Overview {
  tokenHealth {
    byStatus { platform status count }
    expiringNext24h failuresLast24h nextSweepAt
    queue { pending running failed }
  }
}`;

const ADMIN = `query OverviewAdmin {
  systemHealth {
    database encryption redis lastSweepAt lastHealthCheckAt
    providers { platform configured available latencyMs }
  }
}`;

/** Deployment-wide details: FORBIDDEN below the OPERATOR role. */
const OPERATOR = `query OverviewOperator {
  systemHealth { encryptionError keyRotation { activeKeyId activatedAt remaining due } }
  day: providerStats(window: "24h") { platform operation requests errors }
  week: providerStats(window: "7d") { platform operation requests errors }
}`;

const EXPIRING = `query Expiring($after: String) {
  accounts(first: 100, after: $after, filter: { statuses: [ACTIVE, REFRESH_FAILING] }) {
    pageInfo { hasNextPage endCursor }
    nodes { platform tokenHealth { expiresAt } }
  }
}`;

const STATUSES = ['ACTIVE', 'REFRESH_FAILING', 'RECONNECT_REQUIRED', 'EXPIRED', 'DISCONNECTED', 'DEACTIVATED'];
/** The expiry chart reads at most this many accounts (5 pages). */
const EXPIRY_SAMPLE = 500;

export async function show(main) {
  render(main, 'Overview', h('p', { class: 'muted' }, 'Loading…'));
  const [summary, admin, operator, expiring] = await Promise.all([
    gql(SUMMARY), gqlRaw(ADMIN), session.role === 'OPERATOR' ? gqlRaw(OPERATOR) : null, expiries(),
  ]);
  const health = summary.tokenHealth;
  render(main, 'Overview',
    h('div', { class: 'grid' },
      statusCard(health),
      h('section', { class: 'card', 'aria-labelledby': 'h-next' },
        h('h2', { id: 'h-next' }, 'Next 24 hours'),
        h('dl', { class: 'stats' },
          stat('Expiring', health.expiringNext24h),
          stat('Failed refreshes', health.failuresLast24h),
          h('div', {}, h('dt', {}, 'Next sweep'), h('dd', { class: 'small' }, when(health.nextSweepAt))))),
      h('section', { class: 'card', 'aria-labelledby': 'h-queue' },
        h('h2', { id: 'h-queue' }, 'Refresh queue'),
        h('dl', { class: 'stats' },
          stat('Pending', health.queue.pending),
          stat('Running', health.queue.running),
          stat('Failed', health.queue.failed)))),
    expiryCard(expiring),
    adminCards(admin, operator && operator.data));
  const analytics = await analyticsSection();
  if (analytics) main.append(analytics);
}

function stat(label, value) {
  return h('div', {}, h('dt', {}, label), h('dd', {}, String(value)));
}

function statusCard(health) {
  const totals = new Map(STATUSES.map((s) => [s, { TIKTOK: 0, INSTAGRAM: 0 }]));
  for (const row of health.byStatus) {
    const entry = totals.get(row.status);
    if (entry) entry[row.platform] = (entry[row.platform] || 0) + row.count;
  }
  const rows = STATUSES.map((status) => {
    const t = totals.get(status);
    return h('tr', {}, h('th', { scope: 'row' },
      h('a', { href: `#/accounts?status=${status}`, class: 'plain-link', title: `Show the ${statusLabel(status).toLowerCase()} accounts` }, badge(status))),
    h('td', {}, String(t.TIKTOK)), h('td', {}, String(t.INSTAGRAM)));
  });
  return h('section', { class: 'card', 'aria-labelledby': 'h-status' },
    h('h2', { id: 'h-status' }, 'Accounts by status'),
    table('Accounts by status and platform', ['Status', 'TikTok', 'Instagram'], rows));
}

async function expiries() {
  const byDay = Array.from({ length: 7 }, () => ({ TIKTOK: 0, INSTAGRAM: 0 }));
  // The server's per-day counts (UTC days), when it has them.
  const buckets = await gqlRaw('query ExpiringTokens { expiringTokens(days: 7) { day platform count } }').catch(() => null);
  if (buckets && !buckets.errors.length && buckets.data) {
    const now = new Date();
    const start = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate()));
    for (const b of buckets.data.expiringTokens) {
      const day = Math.round((Date.parse(`${b.day}T00:00:00Z`) - start) / 86400000);
      if (day >= 0 && day < 7 && byDay[day][b.platform] !== undefined) byDay[day][b.platform] += b.count;
    }
    return { byDay, start, complete: true, read: 0, utc: true };
  }
  const start = new Date();
  start.setHours(0, 0, 0, 0);
  let after = null;
  let read = 0;
  let complete = true;
  for (;;) {
    const data = await gql(EXPIRING, { after });
    for (const node of data.accounts.nodes) {
      read += 1;
      const at = node.tokenHealth.expiresAt && new Date(node.tokenHealth.expiresAt);
      if (!at) continue;
      const day = Math.floor((at - start) / 86400000);
      if (day >= 0 && day < 7) byDay[day][node.platform] += 1;
    }
    if (!data.accounts.pageInfo.hasNextPage) break;
    if (read >= EXPIRY_SAMPLE) { complete = false; break; }
    after = data.accounts.pageInfo.endCursor;
  }
  return { byDay, start, complete, read };
}

function expiryCard({ byDay, start, complete, read, utc = false }) {
  const width = 640;
  const height = 200;
  const left = 32;
  const bottom = 28;
  const max = Math.max(1, ...byDay.map((d) => d.TIKTOK + d.INSTAGRAM));
  const step = (width - left) / 7;
  const scale = (height - bottom - 10) / max;
  const label = (i) => {
    const d = new Date(start.getTime() + i * 86400000);
    return i === 0 ? 'Today' : d.toLocaleDateString(undefined, { weekday: 'short', day: 'numeric', ...(utc ? { timeZone: 'UTC' } : {}) });
  };
  const bars = byDay.flatMap((d, i) => {
    const x = left + i * step + step * 0.2;
    const w = step * 0.6;
    const tt = d.TIKTOK * scale;
    const ig = d.INSTAGRAM * scale;
    const base = height - bottom;
    return [
      svg('rect', { x, y: base - tt, width: w, height: tt, class: 'bar-tiktok' },
        svg('title', {}, `${label(i)}: ${d.TIKTOK} TikTok`)),
      svg('rect', { x, y: base - tt - ig, width: w, height: ig, class: 'bar-instagram' },
        svg('title', {}, `${label(i)}: ${d.INSTAGRAM} Instagram`)),
      svg('text', { x: x + w / 2, y: base - tt - ig - 3, 'text-anchor': 'middle' }, String(d.TIKTOK + d.INSTAGRAM)),
      svg('text', { x: x + w / 2, y: height - 10, 'text-anchor': 'middle' }, label(i)),
    ];
  });
  const axis = [
    svg('line', { x1: left, y1: height - bottom, x2: width, y2: height - bottom, stroke: '#6b7280' }),
    svg('text', { x: left - 4, y: 14, 'text-anchor': 'end' }, String(max)),
    svg('text', { x: left - 4, y: height - bottom, 'text-anchor': 'end' }, '0'),
  ];
  const chart = svg('svg', {
    viewBox: `0 0 ${width} ${height}`, class: 'chart', role: 'img',
    'aria-labelledby': 'h-expiry', 'aria-describedby': 'expiry-table',
  }, ...axis, ...bars);
  // The same numbers as a table, for screen readers and exact values.
  const rows = byDay.map((d, i) => h('tr', {}, h('th', { scope: 'row' }, label(i)),
    h('td', {}, String(d.TIKTOK)), h('td', {}, String(d.INSTAGRAM))));
  const details = h('details', { id: 'expiry-table' }, h('summary', {}, 'Show as a table'),
    table('Tokens expiring per day', ['Day', 'TikTok', 'Instagram'], rows));
  return h('section', { class: 'card', 'aria-labelledby': 'h-expiry' },
    h('h2', { id: 'h-expiry' }, 'Tokens expiring over the next 7 days'),
    chart,
    h('ul', { class: 'legend' },
      Object.entries(PLATFORMS).map(([key, name]) => h('li', {}, h('span', { class: `swatch ${key.toLowerCase()}`, 'aria-hidden': 'true' }), name))),
    complete ? null : h('p', { class: 'muted' }, `Counted over the first ${read} refreshable accounts.`),
    details);
}

function adminCards({ data, errors }, ops) {
  if (!data || !data.systemHealth) {
    const forbidden = errors.some((e) => e.extensions && e.extensions.code === 'FORBIDDEN');
    return notice(forbidden
      ? 'System health needs the ADMIN role.'
      : `System health is unavailable: ${errors.map((e) => e.message).join('; ')}`, forbidden ? 'info' : 'error');
  }
  const sys = data.systemHealth;
  const yes = (ok, good = 'OK', bad = 'Failing') => badge(ok ? 'SUCCEEDED' : 'FAILED', ok ? good : bad);
  const checks = [
    ['Database', yes(sys.database)],
    ['Token encryption', h('span', {}, yes(sys.encryption), ops && ops.systemHealth.encryptionError ? ` ${ops.systemHealth.encryptionError}` : '')],
    ['Redis', sys.redis === null ? h('span', { class: 'muted' }, 'Not used (embedded mode)') : yes(sys.redis)],
    ...sys.providers.map((p) => [platformName(p.platform),
      h('span', {}, p.configured ? yes(p.available, 'Available', 'Unavailable') : badge('MISSING', 'Not configured'),
        p.latencyMs === null ? '' : ` ${p.latencyMs} ms`)]),
    ['Last sweep', when(sys.lastSweepAt)],
    ['Last health check', when(sys.lastHealthCheckAt)],
  ];
  const system = h('section', { class: 'card', 'aria-labelledby': 'h-system' },
    h('h2', { id: 'h-system' }, 'System health'),
    table('System health checks', ['Check', 'State'],
      checks.map(([name, value]) => h('tr', {}, h('th', { scope: 'row' }, name), h('td', {}, value)))));
  if (!ops) {
    return h('div', { class: 'grid' }, system,
      notice('Refresh statistics and the encryption key are deployment-wide: they need the OPERATOR role.', 'info'));
  }
  const rot = ops.systemHealth.keyRotation;
  return h('div', { class: 'grid' },
    system,
    refreshCard(ops.day, ops.week),
    h('section', { class: 'card', 'aria-labelledby': 'h-keys' },
      h('h2', { id: 'h-keys' }, 'Encryption key'),
      h('p', {}, rot.due ? badge('KEY_ROTATION_DUE', 'Rotation due') : badge('SUCCEEDED', 'Rotation not due')),
      h('dl', { class: 'stats' },
        h('div', {}, h('dt', {}, 'Active key'), h('dd', { class: 'mono' }, rot.activeKeyId)),
        h('div', {}, h('dt', {}, 'Activated'), h('dd', {}, when(rot.activatedAt))),
        stat('Tokens on older keys', rot.remaining))));
}

function refreshCard(day, week) {
  const pick = (stats, platform) => {
    const row = stats.find((s) => s.platform === platform && s.operation === 'refresh');
    return row ? { ok: row.requests - row.errors, failed: row.errors } : { ok: 0, failed: 0 };
  };
  const rows = [['24 hours', day], ['7 days', week]].flatMap(([window, stats]) => Object.keys(PLATFORMS).map((p) => {
    const n = pick(stats, p);
    return h('tr', {}, h('th', { scope: 'row' }, platformName(p), h('div', { class: 'muted' }, window)),
      h('td', {}, String(n.ok)), h('td', {}, failedCell(n.failed)));
  }));
  return h('section', { class: 'card', 'aria-labelledby': 'h-refresh' },
    h('h2', { id: 'h-refresh' }, 'Refreshes per platform'),
    table('Refresh calls per platform over 24 hours and 7 days', ['Platform', 'Succeeded', 'Failed'], rows));
}

function failedCell(n) {
  return n ? badge('FAILED', String(n)) : '0';
}

const ANALYTICS = `query Analytics {
  hourly: refreshAnalytics(hours: 24) { hour platform outcome count }
  weekly: refreshAnalytics(hours: 168) { platform outcome count }
  failureReasons(days: 7, first: 10) { code platform count }
  tokenReadAnalytics(days: 7) { byAccount { accountId count } byReader { actor count } }
}`;

/** Refresh attempts per hour, failure reasons and token reads, when the server has them. */
async function analyticsSection() {
  let res;
  try {
    res = await gqlRaw(ANALYTICS);
  } catch (_) {
    return null;
  }
  if (!res.data) return null; // an older server without the analytics fields
  const d = res.data;
  const failed = (o) => o.startsWith('FAILED');
  const cards = [];
  if (d.hourly) cards.push(hourlyCard(d.hourly, failed));
  if (d.hourly && d.weekly) {
    const sum = (rows, platform) => rows.filter((r) => r.platform === platform && r.outcome !== 'SKIPPED')
      .reduce((acc, r) => { acc[failed(r.outcome) ? 'bad' : 'ok'] += r.count; return acc; }, { ok: 0, bad: 0 });
    const rows = [['24 hours', d.hourly], ['7 days', d.weekly]].flatMap(([w, list]) => Object.keys(PLATFORMS).map((p) => {
      const n = sum(list, p);
      return h('tr', {}, h('th', { scope: 'row' }, platformName(p), h('div', { class: 'muted' }, w)),
        h('td', {}, String(n.ok)), h('td', {}, failedCell(n.bad)));
    }));
    cards.push(h('section', { class: 'card', 'aria-labelledby': 'h-attempts' },
      h('h2', { id: 'h-attempts' }, 'Refresh attempts per platform'),
      table('Refresh attempts per platform over 24 hours and 7 days', ['Platform', 'Succeeded', 'Failed'], rows)));
  }
  if (d.failureReasons) {
    cards.push(h('section', { class: 'card', 'aria-labelledby': 'h-reasons' },
      h('h2', { id: 'h-reasons' }, 'Failure reasons, last 7 days'),
      table('Failure reasons, most frequent first', ['Reason', 'Platform', 'Failures'],
        d.failureReasons.map((r) => h('tr', {}, h('th', { scope: 'row', class: 'mono' }, r.code),
          h('td', {}, platformName(r.platform)), h('td', {}, String(r.count)))),
        { empty: 'No failures in the last 7 days.' })));
  }
  if (d.tokenReadAnalytics) {
    const top = (rows, key) => [...rows.reduce((m, r) => m.set(r[key], (m.get(r[key]) || 0) + r.count), new Map())]
      .sort((a, b) => b[1] - a[1]).slice(0, 5);
    const accounts = top(d.tokenReadAnalytics.byAccount, 'accountId');
    const readers = top(d.tokenReadAnalytics.byReader, 'actor');
    cards.push(h('section', { class: 'card', 'aria-labelledby': 'h-reads' },
      h('h2', { id: 'h-reads' }, 'Token reads, last 7 days'),
      table('Most read accounts', ['Account', 'Reads'], accounts.map(([id, n]) => h('tr', {},
        h('td', {}, h('a', { href: `#/accounts/${encodeURIComponent(id)}` }, 'Account')), h('td', {}, String(n)))),
      { empty: 'No access token was read.' }),
      table('Most active readers', ['Reader', 'Reads'], readers.map(([actor, n]) => h('tr', {},
        h('td', { class: 'mono' }, actor), h('td', {}, String(n)))), { empty: 'No reader.' })));
  }
  if (!cards.length) return null;
  return h('section', { 'aria-labelledby': 'h-analytics' },
    h('h2', { id: 'h-analytics' }, 'Analytics'),
    h('div', { class: 'grid' }, cards));
}

function hourlyCard(rows, failed) {
  const now = Date.now();
  const hours = Array.from({ length: 24 }, () => ({ ok: 0, bad: 0 }));
  for (const r of rows) {
    const i = 23 - Math.floor((now - Date.parse(r.hour)) / 3600000);
    if (i < 0 || i > 23 || r.outcome === 'SKIPPED') continue;
    hours[i][failed(r.outcome) ? 'bad' : 'ok'] += r.count;
  }
  const width = 640;
  const height = 180;
  const left = 32;
  const bottom = 24;
  const max = Math.max(1, ...hours.map((x) => x.ok + x.bad));
  const step = (width - left) / 24;
  const scale = (height - bottom - 10) / max;
  const base = height - bottom;
  const bars = hours.flatMap((x, i) => {
    const bx = left + i * step + 2;
    const w = step - 4;
    const label = i === 23 ? 'this hour' : `${23 - i} h ago`;
    return [
      svg('rect', { x: bx, y: base - x.ok * scale, width: w, height: x.ok * scale, class: 'bar-ok' },
        svg('title', {}, `${label}: ${x.ok} succeeded`)),
      svg('rect', { x: bx, y: base - (x.ok + x.bad) * scale, width: w, height: x.bad * scale, class: 'bar-bad' },
        svg('title', {}, `${label}: ${x.bad} failed`)),
    ];
  });
  const axis = [
    svg('line', { x1: left, y1: base, x2: width, y2: base, stroke: '#6b7280' }),
    svg('text', { x: left - 4, y: 14, 'text-anchor': 'end' }, String(max)),
    svg('text', { x: left - 4, y: base, 'text-anchor': 'end' }, '0'),
    svg('text', { x: left, y: height - 6 }, '24 h ago'),
    svg('text', { x: width, y: height - 6, 'text-anchor': 'end' }, 'now'),
  ];
  const totals = hours.reduce((a, x) => ({ ok: a.ok + x.ok, bad: a.bad + x.bad }), { ok: 0, bad: 0 });
  return h('section', { class: 'card wide', 'aria-labelledby': 'h-hourly' },
    h('h2', { id: 'h-hourly' }, 'Refresh attempts per hour'),
    svg('svg', { viewBox: `0 0 ${width} ${height}`, class: 'chart', role: 'img', 'aria-labelledby': 'h-hourly hourly-total' }, ...axis, ...bars),
    h('ul', { class: 'legend' },
      h('li', {}, h('span', { class: 'swatch ok', 'aria-hidden': 'true' }), 'Succeeded'),
      h('li', {}, h('span', { class: 'swatch bad', 'aria-hidden': 'true' }), 'Failed')),
    h('p', { id: 'hourly-total' }, `${totals.ok} succeeded and ${totals.bad} failed in the last 24 hours.`));
}
