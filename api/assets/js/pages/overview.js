// Overview: token health by status (colour, icon and text), what expires over the next 7
// days (inline SVG chart), refresh successes and failures per platform over 24 h and 7 days,
// refresh attempts per hour, failure reasons, queue depth, system health, last sweep, key
// rotation, token reads per account and reader. Analytics come from the GraphQL analytics
// queries (SQL aggregates over bounded windows).

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
    backup { scheduled lastAttemptAt lastSuccessAt lastVerified lastTokens lastTokensDecrypted lastError overdue }
  }
}`;

/** Deployment-wide details: FORBIDDEN below the OPERATOR role. */
const OPERATOR = `query OverviewOperator {
  systemHealth { encryptionError keyRotation { activeKeyId activatedAt remaining due } }
}`;

const ANALYTICS = `query Analytics {
  expiringTokens(days: 7) { day platform count }
  day: refreshAttemptsPerHour(window: LAST_24_HOURS) { hour platform outcome count }
  week: refreshAttemptsPerHour(window: LAST_7_DAYS) { platform outcome count }
  failureReasons(window: LAST_7_DAYS, first: 10) { nodes { platform code class count lastSeenAt } }
  byAccount: tokenReads(by: ACCOUNT, days: 7, perDay: false, first: 5) {
    nodes { reads account { id username platform } }
  }
  byReader: tokenReads(by: READER, days: 7, perDay: false, first: 5) { nodes { reads reader apiKeyName } }
  today: tokenReads(by: ACCOUNT, days: 1, perDay: false, first: 100) { pageInfo { hasNextPage } nodes { reads } }
}`;

const STATUSES = ['ACTIVE', 'REFRESH_FAILING', 'RECONNECT_REQUIRED', 'EXPIRED', 'DISCONNECTED', 'DEACTIVATED'];

export async function show(main) {
  render(main, 'Overview', h('p', { class: 'muted' }, 'Loading…'));
  const [summary, admin, operator, analytics] = await Promise.all([
    gql(SUMMARY), gqlRaw(ADMIN), session.role === 'OPERATOR' ? gqlRaw(OPERATOR) : null, gql(ANALYTICS),
  ]);
  const health = summary.tokenHealth;
  const failed = (o) => o.startsWith('FAILED');
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
    expiryCard(expiries(analytics.expiringTokens)),
    h('div', { class: 'grid' },
      perPlatformCard(analytics.day, analytics.week, failed),
      reasonsCard(analytics.failureReasons.nodes)),
    hourlyCard(analytics.day, failed),
    adminCards(admin, operator && operator.data),
    readsCard(analytics));
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

/** The server's per-UTC-day counts as seven days from today. */
function expiries(buckets) {
  const byDay = Array.from({ length: 7 }, () => ({ TIKTOK: 0, INSTAGRAM: 0 }));
  const now = new Date();
  const start = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate()));
  for (const b of buckets) {
    const day = Math.round((Date.parse(`${b.day}T00:00:00Z`) - start) / 86400000);
    if (day >= 0 && day < 7 && byDay[day][b.platform] !== undefined) byDay[day][b.platform] += b.count;
  }
  return { byDay, start };
}

function expiryCard({ byDay, start }) {
  const width = 640;
  const height = 200;
  const left = 32;
  const bottom = 28;
  const max = Math.max(1, ...byDay.map((d) => d.TIKTOK + d.INSTAGRAM));
  const step = (width - left) / 7;
  const scale = (height - bottom - 10) / max;
  const label = (i) => {
    const d = new Date(start.getTime() + i * 86400000);
    return i === 0 ? 'Today' : d.toLocaleDateString(undefined, { weekday: 'short', day: 'numeric', timeZone: 'UTC' });
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
    h('p', { class: 'muted small' }, 'Refreshable accounts by the UTC day their access token expires.'),
    details);
}

/** The last verified backup, in words as well as colour (docs/backups.md). */
function backupState(b) {
  if (!b) return h('span', { class: 'muted' }, 'Unknown');
  const failed = b.lastError ? ` Last attempt failed: ${b.lastError}` : '';
  if (!b.lastSuccessAt) {
    return b.scheduled
      ? h('span', {}, badge(b.overdue ? 'FAILED' : 'MISSING', b.overdue ? 'Overdue' : 'None yet'), failed)
      : h('span', { class: 'muted' }, 'Not scheduled here (run tokenwarden backup create)');
  }
  const verified = b.lastVerified
    ? ` verified, ${b.lastTokensDecrypted ?? 0} of ${b.lastTokens ?? 0} tokens decrypt`
    : ' not verified';
  return h('span', {}, badge(b.overdue || b.lastError ? 'FAILED' : 'SUCCEEDED', b.overdue ? 'Overdue' : 'OK'),
    ' ', when(b.lastSuccessAt), verified, failed);
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
    ['Last backup', backupState(sys.backup)],
  ];
  const system = h('section', { class: 'card', 'aria-labelledby': 'h-system' },
    h('h2', { id: 'h-system' }, 'System health'),
    table('System health checks', ['Check', 'State'],
      checks.map(([name, value]) => h('tr', {}, h('th', { scope: 'row' }, name), h('td', {}, value)))));
  if (!ops) {
    return h('div', { class: 'grid' }, system,
      h('section', { class: 'card', 'aria-labelledby': 'h-keys' },
        h('h2', { id: 'h-keys' }, 'Encryption key'),
        notice('The encryption key and its rotation are deployment-wide: they need the OPERATOR role.', 'info')));
  }
  const rot = ops.systemHealth.keyRotation;
  return h('div', { class: 'grid' },
    system,
    h('section', { class: 'card', 'aria-labelledby': 'h-keys' },
      h('h2', { id: 'h-keys' }, 'Encryption key'),
      h('p', {}, rot.due ? badge('KEY_ROTATION_DUE', 'Rotation due') : badge('SUCCEEDED', 'Rotation not due')),
      h('dl', { class: 'stats' },
        h('div', {}, h('dt', {}, 'Active key'), h('dd', { class: 'mono' }, rot.activeKeyId)),
        h('div', {}, h('dt', {}, 'Activated'), h('dd', {}, when(rot.activatedAt))),
        stat('Tokens on older keys', rot.remaining))));
}

function failedCell(n) {
  return n ? badge('FAILED', String(n)) : '0';
}

/** Successes and failures per platform over 24 hours and 7 days (refresh attempts). */
function perPlatformCard(day, week, failed) {
  const sum = (rows, platform) => rows.filter((r) => r.platform === platform && r.outcome !== 'SKIPPED')
    .reduce((acc, r) => { acc[failed(r.outcome) ? 'bad' : 'ok'] += r.count; return acc; }, { ok: 0, bad: 0 });
  const rows = [['24 hours', day], ['7 days', week]].flatMap(([w, list]) => Object.keys(PLATFORMS).map((p) => {
    const n = sum(list, p);
    return h('tr', {}, h('th', { scope: 'row' }, platformName(p), h('div', { class: 'muted' }, w)),
      h('td', {}, String(n.ok)), h('td', {}, failedCell(n.bad)));
  }));
  return h('section', { class: 'card', 'aria-labelledby': 'h-attempts' },
    h('h2', { id: 'h-attempts' }, 'Refreshes per platform'),
    table('Refresh attempts per platform over 24 hours and 7 days', ['Platform', 'Succeeded', 'Failed'], rows));
}

function reasonsCard(reasons) {
  return h('section', { class: 'card', 'aria-labelledby': 'h-reasons' },
    h('h2', { id: 'h-reasons' }, 'Failure reasons, last 7 days'),
    table('Failure reasons, most frequent first', ['Reason', 'Platform', 'Failures', 'Last seen'],
      reasons.map((r) => h('tr', {},
        h('th', { scope: 'row' }, h('span', { class: 'mono' }, r.code), r.class ? h('div', { class: 'muted' }, r.class.replace(/_/g, ' ')) : null),
        h('td', {}, platformName(r.platform)), h('td', {}, failedCell(r.count)), h('td', { class: 'small' }, when(r.lastSeenAt)))),
      { empty: 'No failed refreshes in the last 7 days.' }));
}

/** Who read access tokens, and which, over 7 days. */
function readsCard(d) {
  const today = d.today.nodes.reduce((n, r) => n + r.reads, 0);
  const accountCell = (a) => (a
    ? h('a', { href: `#/accounts/${encodeURIComponent(a.id)}` }, `@${a.username || a.id}`, h('span', { class: 'muted' }, ` ${platformName(a.platform)}`))
    : h('span', { class: 'muted' }, 'Removed account'));
  return h('section', { class: 'card', 'aria-labelledby': 'h-reads' },
    h('h2', { id: 'h-reads' }, 'Token reads, last 7 days'),
    h('p', {}, `${today}${d.today.pageInfo.hasNextPage ? '+' : ''} access token ${today === 1 ? 'read' : 'reads'} today.`),
    h('div', { class: 'grid' },
      table('Most read accounts, last 7 days', ['Account', 'Reads'],
        d.byAccount.nodes.map((r) => h('tr', {}, h('td', {}, accountCell(r.account)), h('td', {}, String(r.reads)))),
        { empty: 'No access token was read.' }),
      table('Most active readers, last 7 days', ['Reader', 'Reads'],
        d.byReader.nodes.map((r) => h('tr', {},
          h('td', {}, r.apiKeyName ? `API key “${r.apiKeyName}”` : r.reader.replace(/^user:/, ''),
            h('div', { class: 'muted mono small' }, r.reader)),
          h('td', {}, String(r.reads)))),
        { empty: 'No reader.' })));
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
