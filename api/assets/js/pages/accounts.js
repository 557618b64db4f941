// Accounts: filter, search and page through the tenant's accounts; select several and
// refresh, deactivate, reactivate or disconnect them after a confirmation.

import {
  h, render, badge, notice, when, table, pager, confirmDialog, field, announce,
  platformName, statusLabel, errorText, PLATFORMS,
} from '../dom.js';
import { gql, gqlRaw, session } from '../gql.js';

const PAGE = 25;
/** Accounts per bulk request (the server accepts at most 20 root fields per operation). */
const BATCH = 20;
const STATUSES = ['ACTIVE', 'REFRESH_FAILING', 'RECONNECT_REQUIRED', 'EXPIRED', 'DISCONNECTED', 'DEACTIVATED'];

const LIST = `query Accounts($first: Int, $after: String, $last: Int, $before: String, $filter: AccountFilter) {
  accounts(first: $first, after: $after, last: $last, before: $before, filter: $filter) {
    totalCount
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    nodes {
      id platform username displayName status statusReason
      tokenHealth { state expiresAt lastRefreshedAt }
      refreshHistory(first: 1) { nodes { attempt outcome } }
    }
  }
}`;

/** What each bulk action calls, per account, and who may do it. */
const ACTIONS = {
  refresh: {
    label: 'Refresh', verb: 'refresh', done: 'Refreshed', role: 'INTEGRATOR',
    field: (v) => `refreshAccountToken(accountId: $${v}) { refreshed error { code message } }`,
  },
  deactivate: {
    label: 'Deactivate', verb: 'deactivate', done: 'Deactivated', role: 'ADMIN', danger: true,
    field: (v) => `deactivateAccount(id: $${v}) { id status }`,
    warning: 'They stop being refreshed and are purged after the retention period.',
  },
  reactivate: {
    label: 'Reactivate', verb: 'reactivate', done: 'Reactivated', role: 'ADMIN',
    field: (v) => `reactivateAccount(id: $${v}) { id status }`,
  },
  disconnect: {
    label: 'Disconnect', verb: 'disconnect', done: 'Disconnected', role: 'INTEGRATOR', danger: true,
    field: (v) => `disconnectAccount(accountId: $${v}) { id status }`,
    warning: 'Their grants are revoked at the platform and their tokens deleted; the users must connect again.',
  },
};

export async function show(main, _arg, { params }) {
  const filter = {
    platforms: params.get('platform') ? [params.get('platform')] : null,
    statuses: params.get('status') ? [params.get('status')] : null,
    search: params.get('q') || null,
  };
  const selected = new Set();
  const names = new Map();
  let page = { first: PAGE };
  const result = h('div', { id: 'bulk-result' });
  const listArea = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  const count = h('span', { id: 'selected-count', role: 'status' }, 'None selected');
  const buttons = Object.entries(ACTIONS).map(([name, action]) => h('button', {
    type: 'button', class: action.danger ? 'danger' : 'secondary', dataset: { action: name },
    disabled: true, onclick: () => runBulk(name),
  }, action.label));
  const bar = h('div', { class: 'card spread', role: 'group', 'aria-label': 'Bulk actions' },
    count, h('div', { class: 'row bulk' }, buttons,
      h('button', { type: 'button', class: 'secondary', onclick: refreshMatching }, 'Refresh all matching')));

  function updateSelection() {
    const n = selected.size;
    count.textContent = n ? `${n} selected` : 'None selected';
    for (const b of buttons) b.disabled = n === 0;
  }

  async function load(next) {
    page = next || page;
    listArea.setAttribute('aria-busy', 'true');
    let data;
    try {
      data = await gql(LIST, { ...page, filter });
    } catch (err) {
      listArea.replaceChildren(notice(errorText(err), 'error'));
      return;
    } finally {
      listArea.removeAttribute('aria-busy');
    }
    const conn = data.accounts;
    selected.clear();
    updateSelection();
    const boxes = [];
    const all = h('input', {
      type: 'checkbox', id: 'select-all', 'aria-label': 'Select every account on this page',
      onchange: () => {
        for (const box of boxes) {
          box.checked = all.checked;
          if (all.checked) selected.add(box.value); else selected.delete(box.value);
        }
        updateSelection();
      },
    });
    const rows = conn.nodes.map((a) => {
      const name = a.username ? `@${a.username}` : a.displayName || a.id;
      names.set(a.id, `${name} (${platformName(a.platform)})`);
      const box = h('input', {
        type: 'checkbox', value: a.id, 'aria-label': `Select ${name} (${platformName(a.platform)})`,
        onchange: () => {
          if (box.checked) selected.add(a.id); else selected.delete(a.id);
          all.checked = selected.size === boxes.length;
          updateSelection();
        },
      });
      boxes.push(box);
      const last = a.refreshHistory.nodes[0];
      const failures = last && last.outcome.startsWith('FAILED') ? last.attempt : 0;
      return h('tr', { class: a.status === 'RECONNECT_REQUIRED' || a.status === 'EXPIRED' ? 'failure' : null },
        h('td', {}, box),
        h('td', {}, h('a', { href: `#/accounts/${encodeURIComponent(a.id)}` }, name),
          a.displayName && a.username && a.displayName !== a.username ? h('div', { class: 'muted' }, a.displayName) : null),
        h('td', {}, platformName(a.platform)),
        h('td', {}, badge(a.status), a.statusReason ? h('div', { class: 'muted mono' }, a.statusReason) : null),
        h('td', {}, a.tokenHealth.expiresAt ? when(a.tokenHealth.expiresAt) : badge('MISSING')),
        h('td', {}, when(a.tokenHealth.lastRefreshedAt)),
        h('td', {}, failures ? badge('FAILED', String(failures)) : '0'));
    });
    const headRow = ['', 'Account', 'Platform', 'Status', 'Expires', 'Last refresh', 'Failures'];
    const tbl = table('Accounts', headRow, rows, { empty: 'No account matches.' });
    tbl.classList.add('selectable');
    tbl.querySelector('th').replaceChildren(all);
    listArea.replaceChildren(tbl, pager(conn.pageInfo, PAGE, load, conn.totalCount));
  }

  async function runBulk(name) {
    const action = ACTIONS[name];
    const ids = [...selected];
    if (!ids.length) return;
    const ok = await confirmDialog(
      `${action.label} ${ids.length} ${ids.length === 1 ? 'account' : 'accounts'}?`,
      [h('p', {}, `This will ${action.verb} the selected accounts.`), action.warning ? h('p', {}, action.warning) : null],
      action.label, { danger: !!action.danger });
    if (!ok) return;
    result.replaceChildren(notice(`Working on ${ids.length} ${ids.length === 1 ? 'account' : 'accounts'}…`));
    // Aliased mutations, one per account, in requests of at most BATCH (the server caps
    // root fields per operation).
    const failed = [];
    let done = 0;
    let fresh = 0;
    let notYet = 0;
    for (let start = 0; start < ids.length; start += BATCH) {
      const chunk = ids.slice(start, start + BATCH);
      const vars = {};
      const decl = chunk.map((id, i) => { vars[`id${i}`] = id; return `$id${i}: ID!`; }).join(', ');
      const body = chunk.map((_, i) => `a${i}: ${action.field(`id${i}`)}`).join('\n');
      let response;
      try {
        response = await gqlRaw(`mutation Bulk(${decl}) {\n${body}\n}`, vars);
      } catch (err) {
        result.replaceChildren(notice(errorText(err), 'error'));
        return;
      }
      const errorsByAlias = new Map(response.errors.map((e) => [e.path ? e.path[0] : null, e.message]));
      const requestError = response.errors.find((e) => !e.path);
      chunk.forEach((id, i) => {
        const alias = `a${i}`;
        const value = response.data && response.data[alias];
        const label = names.get(id) || id;
        if (errorsByAlias.has(alias) || !value) {
          failed.push(`${label}: ${errorsByAlias.get(alias) || (requestError && requestError.message) || 'no answer'}`);
        } else if (name === 'refresh' && value.error && value.error.code === 'NOT_REFRESHABLE_YET') {
          notYet += 1;
        } else if (name === 'refresh' && value.error) {
          failed.push(`${label}: ${value.error.code} — ${value.error.message}`);
        } else if (name === 'refresh' && !value.refreshed) {
          fresh += 1;
        } else {
          done += 1;
        }
      });
    }
    const summary = name === 'refresh'
      ? `Refreshed ${done}, already fresh ${fresh}, not refreshable yet ${notYet}, failed ${failed.length}.`
      : `${action.done} ${done} of ${ids.length}.`;
    result.replaceChildren(notice(summary, failed.length ? 'warn' : 'success'),
      failed.length ? h('ul', { class: 'notice error' }, failed.map((f) => h('li', {}, f))) : '');
    announce(summary);
    await load();
  }

  async function refreshMatching() {
    const ok = await confirmDialog('Refresh every matching account?',
      h('p', {}, 'Queues a refresh of every refreshable account matching the filters (all pages). Workers run them in the background.'),
      'Queue refreshes');
    if (!ok) return;
    try {
      const data = await gql('mutation RefreshMatching($filter: AccountFilter) { refreshAccounts(filter: $filter) }', { filter });
      result.replaceChildren(notice(`Queued ${data.refreshAccounts} refreshes.`, 'success'));
    } catch (err) {
      result.replaceChildren(notice(errorText(err), 'error'));
    }
  }

  render(main, 'Accounts', filterForm(filter), result,
    session.role === 'VIEWER' ? null : bar, listArea);
  await load();
}

function filterForm(filter) {
  const platform = h('select', { id: 'filter-platform' },
    h('option', { value: '' }, 'Any platform'),
    Object.entries(PLATFORMS).map(([v, n]) => h('option', { value: v, selected: filter.platforms && filter.platforms[0] === v }, n)));
  const status = h('select', { id: 'filter-status' },
    h('option', { value: '' }, 'Any status'),
    STATUSES.map((s) => h('option', { value: s, selected: filter.statuses && filter.statuses[0] === s }, statusLabel(s))));
  const search = h('input', { type: 'search', id: 'filter-search', value: filter.search || '', placeholder: 'username or id' });
  return h('form', {
    class: 'card row', role: 'search', 'aria-label': 'Filter accounts',
    onsubmit: (event) => {
      event.preventDefault();
      const q = new URLSearchParams();
      if (platform.value) q.set('platform', platform.value);
      if (status.value) q.set('status', status.value);
      if (search.value.trim()) q.set('q', search.value.trim());
      window.location.hash = `#/accounts${q.toString() ? `?${q}` : ''}`;
    },
  }, field('Platform', platform), field('Status', status), field('Search', search),
  h('button', { type: 'submit' }, 'Apply'));
}
