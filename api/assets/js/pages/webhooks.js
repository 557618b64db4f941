// Webhooks: register (the signing secret is shown once), delete, and see deliveries.

import { h, render, notice, when, table, pager, badge, field, copyBox, confirmDialog, errorText, humanize } from '../dom.js';
import { gql } from '../gql.js';

const KINDS = ['CONNECTED', 'REFRESHED', 'REFRESH_FAILED', 'RECONNECT_REQUIRED', 'EXPIRING', 'EXPIRED',
  'DISCONNECTED', 'KEY_ROTATION_DUE', 'PROVIDER_DEGRADED', 'PROVIDER_RECOVERED'];
const PAGE = 20;

const LIST = `query Webhooks($first: Int, $after: String, $last: Int, $before: String) {
  webhooks(first: $first, after: $after, last: $last, before: $before) {
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    nodes { id url kinds description createdAt failingSince disabledAt }
  }
}`;
const DELIVERIES = `query Deliveries($id: ID!, $after: String) {
  webhookDeliveries(webhookId: $id, first: 20, after: $after) {
    pageInfo { hasNextPage endCursor }
    nodes { id eventId status attempts lastStatusCode lastError nextAttemptAt deliveredAt }
  }
}`;

export async function show(main) {
  const result = h('div', {});
  const list = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  const deliveries = h('section', { 'aria-live': 'polite' });

  async function load(page = { first: PAGE }) {
    let data;
    try {
      data = await gql(LIST, page);
    } catch (err) {
      list.replaceChildren(notice(errorText(err), 'error'));
      return;
    }
    const rows = data.webhooks.nodes.map((w) => h('tr', { class: w.disabledAt ? 'failure' : null },
      h('td', { class: 'mono' }, w.url, w.description ? h('div', { class: 'muted' }, w.description) : null),
      h('td', {}, w.kinds.length ? w.kinds.map(humanize).join(', ') : 'All events'),
      h('td', {}, w.disabledAt ? badge('FAILED', 'Disabled') : w.failingSince ? badge('REFRESH_FAILED', 'Failing') : badge('SUCCEEDED', 'Working')),
      h('td', {}, when(w.createdAt)),
      h('td', {}, h('div', { class: 'row' },
        h('button', { type: 'button', class: 'secondary', onclick: () => showDeliveries(w) }, 'Deliveries'),
        h('button', { type: 'button', class: 'danger', onclick: () => remove(w) }, 'Delete')))));
    list.replaceChildren(table('Webhooks', ['URL', 'Events', 'State', 'Created', ''], rows, { empty: 'No webhooks yet.' }),
      pager(data.webhooks.pageInfo, PAGE, load));
  }

  async function showDeliveries(w, after = null) {
    let data;
    try {
      data = await gql(DELIVERIES, { id: w.id, after });
    } catch (err) {
      deliveries.replaceChildren(notice(errorText(err), 'error'));
      return;
    }
    const conn = data.webhookDeliveries;
    const rows = conn.nodes.map((d) => h('tr', { class: d.status === 'FAILED' ? 'failure' : null },
      h('td', { class: 'mono' }, d.id), h('td', {}, badge(d.status)), h('td', {}, String(d.attempts)),
      h('td', {}, d.lastStatusCode === null ? '—' : String(d.lastStatusCode)), h('td', {}, d.lastError || '—'),
      h('td', {}, d.deliveredAt ? when(d.deliveredAt) : when(d.nextAttemptAt))));
    const heading = h('h2', { tabindex: '-1' }, `Deliveries to ${w.url}`);
    deliveries.replaceChildren(heading,
      table('Deliveries, newest first', ['Delivery', 'Status', 'Attempts', 'HTTP status', 'Last error', 'Delivered / next try'], rows, { empty: 'No deliveries yet.' }),
      conn.pageInfo.hasNextPage ? h('button', { type: 'button', class: 'secondary', onclick: () => showDeliveries(w, conn.pageInfo.endCursor) }, 'Older deliveries') : '');
    heading.focus();
  }

  async function remove(w) {
    if (!await confirmDialog('Delete this webhook?', h('p', { class: 'mono' }, w.url), 'Delete', { danger: true })) return;
    try {
      await gql('mutation DeleteWebhook($id: ID!) { deleteWebhook(id: $id) { id } }', { id: w.id });
      result.replaceChildren(notice('Webhook deleted.', 'success'));
      deliveries.replaceChildren();
      await load();
    } catch (err) { result.replaceChildren(notice(errorText(err), 'error')); }
  }

  const url = h('input', { type: 'url', id: 'webhook-url', required: true, placeholder: 'https://example.com/hooks/tokenwarden' });
  const description = h('input', { type: 'text', id: 'webhook-description', maxlength: '200' });
  const boxes = KINDS.map((k) => h('label', {}, h('input', { type: 'checkbox', value: k }), humanize(k)));
  const form = h('form', {
    class: 'card', 'aria-labelledby': 'h-register',
    onsubmit: async (event) => {
      event.preventDefault();
      const kinds = boxes.map((l) => l.querySelector('input')).filter((i) => i.checked).map((i) => i.value);
      try {
        const data = await gql(`mutation Register($input: RegisterWebhookInput!) {
          registerWebhook(input: $input) { secret webhook { id } } }`,
        { input: { url: url.value.trim(), kinds, description: description.value.trim() || null } });
        result.replaceChildren(notice('Webhook registered. Copy its signing secret now: it is not shown again.', 'success'),
          copyBox('Signing secret', data.registerWebhook.secret));
        form.reset();
        await load();
      } catch (err) { result.replaceChildren(notice(errorText(err), 'error')); }
    },
  }, h('h2', { id: 'h-register' }, 'Register a webhook'),
  field('URL', url), field('Description (optional)', description),
  h('fieldset', {}, h('legend', {}, 'Events (none checked: all)'), h('div', { class: 'checks' }, boxes)),
  h('button', { type: 'submit' }, 'Register'));

  render(main, 'Webhooks', result, list, deliveries, form);
  await load();
}
