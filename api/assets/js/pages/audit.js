// Audit log: filters, pages and a CSV export of everything that matches (bounded).

import { h, render, notice, when, table, pager, field, humanize, errorText, detailsText } from '../dom.js';
import { gql } from '../gql.js';

const PAGE = 50;
const EXPORT_LIMIT = 10000;
const ACTIONS = [
  'API_KEY_CREATED', 'API_KEY_REVOKED', 'CONNECTION_STARTED', 'ACCOUNT_CONNECTED', 'ACCOUNT_RECONNECTED',
  'ACCOUNT_DISCONNECTED', 'ACCOUNT_DEACTIVATED', 'ACCOUNT_REACTIVATED', 'ACCOUNT_PURGED', 'TOKEN_REFRESHED',
  'TOKEN_REFRESH_FAILED', 'ACCESS_TOKEN_READ', 'ENCRYPTION_KEY_ROTATED', 'WEBHOOK_REGISTERED',
  'WEBHOOK_DELETED', 'WEBHOOK_DISABLED',
];

const QUERY = `query Audit($first: Int, $after: String, $last: Int, $before: String, $filter: AuditFilter) {
  auditLog(first: $first, after: $after, last: $last, before: $before, filter: $filter) {
    totalCount
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    nodes { id action actor targetType targetId details clientIp occurredAt }
  }
}`;

export async function show(main, _arg, { params }) {
  const filter = {
    actions: params.get('action') ? [params.get('action')] : null,
    actor: params.get('actor') || null,
    accountId: params.get('account') || null,
    since: params.get('since') || null,
    until: params.get('until') || null,
  };
  const list = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  const exportStatus = h('div', { role: 'status' });

  async function load(page = { first: PAGE }) {
    let data;
    try {
      data = await gql(QUERY, { ...page, filter });
    } catch (err) {
      list.replaceChildren(notice(errorText(err), 'error'));
      return;
    }
    const conn = data.auditLog;
    const rows = conn.nodes.map((e) => h('tr', {},
      h('td', {}, when(e.occurredAt, { relative: false })),
      h('td', {}, humanize(e.action)),
      h('td', { class: 'mono' }, e.actor),
      h('td', {}, e.targetType ? `${e.targetType} ` : '', e.targetId ? h('span', { class: 'mono' }, e.targetId) : ''),
      h('td', { class: 'mono' }, e.clientIp || '—'),
      h('td', { class: 'mono' }, detailsText(e.details))));
    list.replaceChildren(
      table('Audit entries, newest first', ['Time', 'Action', 'Actor', 'Target', 'Client IP', 'Details'], rows, { empty: 'No entries match.' }),
      pager(conn.pageInfo, PAGE, load, conn.totalCount));
  }

  async function exportCsv() {
    const lines = [['occurredAt', 'action', 'actor', 'targetType', 'targetId', 'clientIp', 'details']];
    let after = null;
    try {
      for (;;) {
        const data = await gql(QUERY, { first: 100, after, filter });
        for (const e of data.auditLog.nodes) {
          lines.push([e.occurredAt, e.action, e.actor, e.targetType, e.targetId, e.clientIp, JSON.stringify(e.details)]);
        }
        exportStatus.replaceChildren(notice(`Exporting… ${lines.length - 1} of ${data.auditLog.totalCount}`));
        if (!data.auditLog.pageInfo.hasNextPage || lines.length > EXPORT_LIMIT) break;
        after = data.auditLog.pageInfo.endCursor;
      }
    } catch (err) {
      exportStatus.replaceChildren(notice(errorText(err), 'error'));
      return;
    }
    const csv = lines.map((cols) => cols.map(csvCell).join(',')).join('\r\n');
    const url = URL.createObjectURL(new Blob([csv], { type: 'text/csv' }));
    const a = h('a', { href: url, download: `tokenwarden-audit-${new Date().toISOString().slice(0, 10)}.csv` });
    document.body.append(a);
    a.click();
    a.remove();
    window.setTimeout(() => URL.revokeObjectURL(url), 10000);
    const capped = lines.length > EXPORT_LIMIT ? ` (capped at ${EXPORT_LIMIT}; narrow the filters for the rest)` : '';
    exportStatus.replaceChildren(notice(`Exported ${lines.length - 1} entries${capped}.`, 'success'));
  }

  render(main, 'Audit log', filterForm(filter),
    h('div', { class: 'spread' }, exportStatus,
      h('button', { type: 'button', class: 'secondary', id: 'export-csv', onclick: exportCsv }, 'Export CSV')),
    list);
  await load();
}

/** RFC 4180 quoting; cells starting with = + - @ are prefixed so spreadsheets do not run them. */
function csvCell(value) {
  let s = value === null || value === undefined ? '' : String(value);
  if (/^[=+\-@\t\r]/.test(s)) s = `'${s}`;
  return /[",\r\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
}

function filterForm(filter) {
  const action = h('select', { id: 'audit-action' }, h('option', { value: '' }, 'Any action'),
    ACTIONS.map((a) => h('option', { value: a, selected: filter.actions && filter.actions[0] === a }, humanize(a))));
  const actor = h('input', { type: 'text', id: 'audit-actor', value: filter.actor || '', placeholder: 'api_key:3, user:…' });
  const since = h('input', { type: 'datetime-local', id: 'audit-since', value: local(filter.since) });
  const until = h('input', { type: 'datetime-local', id: 'audit-until', value: local(filter.until) });
  return h('form', {
    class: 'card row', role: 'search', 'aria-label': 'Filter the audit log',
    onsubmit: (event) => {
      event.preventDefault();
      const q = new URLSearchParams();
      if (action.value) q.set('action', action.value);
      if (actor.value.trim()) q.set('actor', actor.value.trim());
      if (filter.accountId) q.set('account', filter.accountId);
      if (since.value) q.set('since', new Date(since.value).toISOString());
      if (until.value) q.set('until', new Date(until.value).toISOString());
      window.location.hash = `#/audit${q.toString() ? `?${q}` : ''}`;
    },
  }, field('Action', action), field('Actor', actor), field('From', since), field('Until', until),
  filter.accountId ? h('p', {}, 'One account only. ', h('a', { href: '#/audit' }, 'Show all')) : null,
  h('button', { type: 'submit' }, 'Apply'));
}

function local(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
}
