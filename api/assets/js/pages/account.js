// One account: its state, refresh history, audit entries, events (replayed and live) and a
// reconnect link to copy.

import { h, render, badge, notice, when, table, copyBox, platformName, errorText, isFailure, humanize, detailsText } from '../dom.js';
import { gql } from '../gql.js';
import { Subscription } from '../ws.js';

const QUERY = `query Account($id: ID!) {
  account(id: $id) {
    id platform providerAccountId username displayName status statusReason
    connectedAt deactivatedAt createdAt
    tokenHealth { state expiresAt refreshExpiresAt issuedAt lastRefreshedAt scopes }
    refreshHistory(first: 20) {
      nodes { id attempt triggeredBy startedAt outcome errorClass errorCode latencyMs }
    }
  }
  auditLog(first: 20, filter: { accountId: $id }) {
    totalCount
    nodes { id action actor occurredAt clientIp details }
  }
}`;

const EVENTS = `subscription AccountEvents($filter: TokenEventFilter, $after: ID, $since: DateTime) {
  tokenEvents(filter: $filter, after: $after, since: $since) {
    id kind occurredAt error { code message action }
  }
}`;

const SHOWN_EVENTS = 50;

export async function show(main, id) {
  render(main, 'Account', h('p', { class: 'muted' }, 'Loading…'));
  let data;
  try {
    data = await gql(QUERY, { id });
  } catch (err) {
    render(main, 'Account', notice(errorText(err), 'error'), h('p', {}, h('a', { href: '#/accounts' }, 'Back to accounts')));
    return null;
  }
  const a = data.account;
  const name = a.username ? `@${a.username}` : a.displayName || a.providerAccountId;
  const t = a.tokenHealth;
  const facts = [
    ['Platform', platformName(a.platform)],
    ['Status', h('span', {}, badge(a.status), a.statusReason ? h('span', { class: 'mono' }, ` ${a.statusReason}`) : '')],
    ['Platform account id', h('span', { class: 'mono' }, a.providerAccountId)],
    ['Token', badge(t.state)],
    ['Expires', when(t.expiresAt)],
    ['Refresh token expires', when(t.refreshExpiresAt)],
    ['Last refresh', when(t.lastRefreshedAt)],
    ['Connected', when(a.connectedAt)],
    ['Scopes', t.scopes.length ? t.scopes.join(', ') : '—'],
  ];
  const history = a.refreshHistory.nodes.map((r) => h('tr', { class: r.outcome.startsWith('FAILED') ? 'failure' : null },
    h('td', {}, when(r.startedAt)), h('td', {}, badge(r.outcome)), h('td', {}, String(r.attempt)),
    h('td', {}, r.triggeredBy.toLowerCase()), h('td', { class: 'mono' }, [r.errorClass, r.errorCode].filter(Boolean).join(' ') || '—'),
    h('td', {}, `${r.latencyMs} ms`)));
  const audit = data.auditLog.nodes.map((e) => h('tr', {},
    h('td', {}, when(e.occurredAt)), h('td', {}, humanize(e.action)), h('td', { class: 'mono' }, e.actor),
    h('td', { class: 'mono' }, detailsText(e.details))));

  const eventsBody = h('tbody', {}, h('tr', { id: 'no-events' }, h('td', { colspan: 3, class: 'muted' }, 'No events in the last 30 days.')));
  const eventsTable = h('div', { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': 'Events of this account' },
    h('table', {}, h('thead', {}, h('tr', {}, ['Time', 'Event', 'Details'].map((x) => h('th', { scope: 'col' }, x)))), eventsBody));
  const link = h('div', {});
  const makeLink = h('button', {
    type: 'button', class: 'secondary',
    onclick: async () => {
      makeLink.disabled = true;
      try {
        const res = await gql(`mutation Reconnect($input: StartConnectionInput!) {
          startConnection(input: $input) { authorizationUrl expiresAt } }`, { input: { platform: a.platform } });
        link.replaceChildren(copyBox('Reconnect link (send it to the account owner)', res.startConnection.authorizationUrl),
          h('p', { class: 'muted' }, 'Valid once, until ', when(res.startConnection.expiresAt, { relative: false }), '.'));
      } catch (err) {
        link.replaceChildren(notice(errorText(err), 'error'));
      } finally {
        makeLink.disabled = false;
      }
    },
  }, 'Create a reconnect link');

  render(main, `${name} · ${platformName(a.platform)}`,
    h('p', {}, h('a', { href: '#/accounts' }, '← All accounts')),
    h('div', { class: 'grid' },
      h('section', { class: 'card', 'aria-labelledby': 'h-facts' }, h('h2', { id: 'h-facts' }, 'State'),
        table('Account state', ['', ''], facts.map(([k, v]) => h('tr', {}, h('th', { scope: 'row' }, k), h('td', {}, v))))),
      h('section', { class: 'card', 'aria-labelledby': 'h-reconnect' }, h('h2', { id: 'h-reconnect' }, 'Reconnect'),
        h('p', {}, 'A reconnect link lets the owner grant access again (for example after a password change).'),
        makeLink, link)),
    h('section', { 'aria-labelledby': 'h-history' }, h('h2', { id: 'h-history' }, 'Refresh history'),
      table('Refresh history', ['Started', 'Outcome', 'Attempt', 'Trigger', 'Error', 'Latency'], history, { empty: 'No refresh attempts yet.' })),
    h('section', { 'aria-labelledby': 'h-events' }, h('h2', { id: 'h-events' }, 'Events'), eventsTable),
    h('section', { 'aria-labelledby': 'h-audit' }, h('h2', { id: 'h-audit' }, 'Audit entries'),
      table('Audit entries of this account', ['Time', 'Action', 'Actor', 'Details'], audit, { empty: 'No audit entries.' }),
      h('p', {}, h('a', { href: `#/audit?account=${encodeURIComponent(a.id)}` }, `All ${data.auditLog.totalCount} audit entries`))));

  // Events: replay the last 30 days, then follow live ones; resume after the last one seen.
  let lastId = null;
  const since = new Date(Date.now() - 30 * 86400000).toISOString();
  const sub = new Subscription(EVENTS,
    () => ({ filter: { accountIds: [a.id] }, ...(lastId ? { after: lastId } : { since }) }),
    {
      next: ({ tokenEvents: e }) => {
        lastId = e.id;
        const empty = eventsBody.querySelector('#no-events');
        if (empty) empty.remove();
        eventsBody.prepend(h('tr', { class: isFailure(e.kind) ? 'failure' : null },
          h('td', {}, when(e.occurredAt)), h('td', {}, badge(e.kind)),
          h('td', {}, e.error ? `${e.error.message}${e.error.action ? ` ${e.error.action}` : ''}` : '')));
        while (eventsBody.children.length > SHOWN_EVENTS) eventsBody.lastElementChild.remove();
      },
    }).start();
  return () => sub.stop();
}
