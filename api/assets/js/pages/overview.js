// Overview: token health by status, what expires over the next 7 days (inline SVG chart),
// refresh outcomes per platform over 24 h and 7 days, queue, system health, sweep, keys.

import { h, svg, render, badge, notice, when, table, platformName, statusLabel, PLATFORMS } from '../dom.js';
import { gql, gqlRaw } from '../gql.js';

const SUMMARY = `query Overview {
  tokenHealth {
    byStatus { platform status count }
    expiringNext24h failuresLast24h nextSweepAt
    queue { pending running failed }
  }
}`;

const ADMIN = `query OverviewAdmin {
  systemHealth {
    database encryption encryptionError redis lastSweepAt lastHealthCheckAt
    providers { platform configured available latencyMs }
    keyRotation { activeKeyId activatedAt remaining due }
  }
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
  const [summary, admin, expiring] = await Promise.all([
    gql(SUMMARY), gqlRaw(ADMIN), expiries(),
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
    adminCards(admin));
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

function expiryCard({ byDay, start, complete, read }) {
  const width = 640;
  const height = 200;
  const left = 32;
  const bottom = 28;
  const max = Math.max(1, ...byDay.map((d) => d.TIKTOK + d.INSTAGRAM));
  const step = (width - left) / 7;
  const scale = (height - bottom - 10) / max;
  const label = (i) => {
    const d = new Date(start.getTime() + i * 86400000);
    return i === 0 ? 'Today' : d.toLocaleDateString(undefined, { weekday: 'short', day: 'numeric' });
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

function adminCards({ data, errors }) {
  if (!data || !data.systemHealth) {
    const forbidden = errors.some((e) => e.extensions && e.extensions.code === 'FORBIDDEN');
    return notice(forbidden
      ? 'System health, refresh statistics and key rotation need the ADMIN role.'
      : `System health is unavailable: ${errors.map((e) => e.message).join('; ')}`, forbidden ? 'info' : 'error');
  }
  const sys = data.systemHealth;
  const yes = (ok, good = 'OK', bad = 'Failing') => badge(ok ? 'SUCCEEDED' : 'FAILED', ok ? good : bad);
  const checks = [
    ['Database', yes(sys.database)],
    ['Token encryption', h('span', {}, yes(sys.encryption), sys.encryptionError ? ` ${sys.encryptionError}` : '')],
    ['Redis', sys.redis === null ? h('span', { class: 'muted' }, 'Not used (embedded mode)') : yes(sys.redis)],
    ...sys.providers.map((p) => [platformName(p.platform),
      h('span', {}, p.configured ? yes(p.available, 'Available', 'Unavailable') : badge('MISSING', 'Not configured'),
        p.latencyMs === null ? '' : ` ${p.latencyMs} ms`)]),
    ['Last sweep', when(sys.lastSweepAt)],
    ['Last health check', when(sys.lastHealthCheckAt)],
  ];
  const rot = sys.keyRotation;
  return h('div', { class: 'grid' },
    h('section', { class: 'card', 'aria-labelledby': 'h-system' },
      h('h2', { id: 'h-system' }, 'System health'),
      table('System health checks', ['Check', 'State'],
        checks.map(([name, value]) => h('tr', {}, h('th', { scope: 'row' }, name), h('td', {}, value))))),
    refreshCard(data.day, data.week),
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
