// Notifications: incidents the tenant should act on; acknowledge them, get a reconnect link.

import { h, render, notice, when, pager, badge, copyBox, platformName, errorText, announce } from '../dom.js';
import { gql } from '../gql.js';

const PAGE = 20;
const QUERY = `query Notifications($first: Int, $after: String, $last: Int, $before: String, $unread: Boolean) {
  notifications(first: $first, after: $after, last: $last, before: $before, unread: $unread) {
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    nodes {
      id incident platform message action reconnectRequired createdAt acknowledgedAt resolvedAt
      account { id username }
    }
  }
}`;

export async function show(main, _arg, { params }) {
  const unread = params.get('unread') === '1';
  const list = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  let current = { first: PAGE };

  async function load(page = current) {
    current = page;
    let data;
    try {
      data = await gql(QUERY, { ...page, unread: unread || null });
    } catch (err) {
      list.replaceChildren(notice(errorText(err), 'error'));
      return;
    }
    const conn = data.notifications;
    const items = conn.nodes.map(item);
    list.replaceChildren(items.length ? h('ul', { class: 'plain' }, items) : notice('No notifications.'),
      pager(conn.pageInfo, PAGE, load));
  }

  function item(n) {
    const extra = h('div', {});
    const state = n.resolvedAt ? badge('SUCCEEDED', 'Resolved') : n.acknowledgedAt ? badge('MISSING', 'Acknowledged') : badge(n.incident);
    const ack = n.acknowledgedAt ? null : h('button', {
      type: 'button', class: 'secondary',
      onclick: async () => {
        try {
          await gql('mutation Ack($id: ID!) { acknowledgeNotification(id: $id) { id } }', { id: n.id });
          announce('Notification acknowledged.');
          await load();
        } catch (err) { extra.replaceChildren(notice(errorText(err), 'error')); }
      },
    }, 'Acknowledge');
    const reconnect = n.reconnectRequired && !n.resolvedAt && n.platform ? h('button', {
      type: 'button', class: 'secondary',
      onclick: async () => {
        try {
          const res = await gql(`mutation Reconnect($input: StartConnectionInput!) {
            startConnection(input: $input) { authorizationUrl } }`, { input: { platform: n.platform } });
          extra.replaceChildren(copyBox('Reconnect link', res.startConnection.authorizationUrl));
        } catch (err) { extra.replaceChildren(notice(errorText(err), 'error')); }
      },
    }, 'Create a reconnect link') : null;
    return h('li', { class: `card${!n.resolvedAt && !n.acknowledgedAt ? ' unread' : ''}` },
      h('div', { class: 'spread' }, h('h2', {}, state, ' ', platformName(n.platform),
        n.account ? [' · ', h('a', { href: `#/accounts/${encodeURIComponent(n.account.id)}` }, n.account.username ? `@${n.account.username}` : 'account')] : ''),
      when(n.createdAt)),
      h('p', {}, n.message), n.action ? h('p', {}, h('strong', {}, 'What to do: '), n.action) : null,
      h('div', { class: 'row' }, ack, reconnect), extra);
  }

  const filter = h('p', {}, unread
    ? h('a', { href: '#/notifications' }, 'Show all notifications')
    : h('a', { href: '#/notifications?unread=1' }, 'Show unread only'));
  render(main, 'Notifications', filter, list);
  await load();
}
