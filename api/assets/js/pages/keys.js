// API keys: create one (the key is shown once) and revoke.

import { h, render, notice, when, table, pager, field, copyBox, confirmDialog, errorText, badge } from '../dom.js';
import { gql } from '../gql.js';

const PAGE = 25;
const LIST = `query Keys($first: Int, $after: String, $last: Int, $before: String) {
  apiKeys(first: $first, after: $after, last: $last, before: $before) {
    totalCount
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    nodes { id name role keyPrefix createdAt lastUsedAt revokedAt }
  }
}`;

export async function show(main) {
  const result = h('div', {});
  const list = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));

  async function load(page = { first: PAGE }) {
    let data;
    try {
      data = await gql(LIST, page);
    } catch (err) {
      list.replaceChildren(notice(errorText(err), 'error'));
      return;
    }
    const conn = data.apiKeys;
    const rows = conn.nodes.map((k) => h('tr', {},
      h('td', {}, k.name), h('td', {}, k.role), h('td', { class: 'mono' }, `${k.keyPrefix}…`),
      h('td', {}, when(k.createdAt)), h('td', {}, when(k.lastUsedAt)),
      h('td', {}, k.revokedAt ? badge('DISCONNECTED', 'Revoked') : badge('SUCCEEDED', 'Active')),
      h('td', {}, k.revokedAt ? '' : h('button', {
        type: 'button', class: 'danger', 'aria-label': `Revoke ${k.name}`, onclick: () => revoke(k),
      }, 'Revoke'))));
    list.replaceChildren(table('API keys', ['Name', 'Role', 'Prefix', 'Created', 'Last used', 'State', ''], rows),
      pager(conn.pageInfo, PAGE, load, conn.totalCount));
  }

  async function revoke(k) {
    const ok = await confirmDialog(`Revoke “${k.name}”?`,
      h('p', {}, 'Requests and subscriptions with this key fail from now on. This cannot be undone.'), 'Revoke', { danger: true });
    if (!ok) return;
    try {
      await gql('mutation Revoke($id: ID!) { revokeApiKey(id: $id) { id } }', { id: k.id });
      result.replaceChildren(notice(`Revoked “${k.name}”.`, 'success'));
      await load();
    } catch (err) { result.replaceChildren(notice(errorText(err), 'error')); }
  }

  const name = h('input', { type: 'text', id: 'key-name', required: true, maxlength: '100' });
  const role = h('select', { id: 'key-role' }, ['VIEWER', 'INTEGRATOR', 'ADMIN'].map((r) => h('option', { value: r }, r)));
  const form = h('form', {
    class: 'card row', 'aria-labelledby': 'h-create',
    onsubmit: async (event) => {
      event.preventDefault();
      try {
        const data = await gql(`mutation Create($input: CreateApiKeyInput!) {
          createApiKey(input: $input) { key apiKey { name } } }`, { input: { name: name.value.trim(), role: role.value } });
        result.replaceChildren(notice(`Created “${data.createApiKey.apiKey.name}”. Copy the key now: it is shown only this once.`, 'success'),
          copyBox('New API key', data.createApiKey.key));
        form.reset();
        await load();
      } catch (err) { result.replaceChildren(notice(errorText(err), 'error')); }
    },
  }, h('h2', { id: 'h-create', class: 'visually-hidden' }, 'Create a key'),
  field('Name', name), field('Role', role), h('button', { type: 'submit' }, 'Create key'));

  render(main, 'API keys', form, result, list);
  await load();
}
