// Users (ADMIN): who may sign in to the dashboard. Created with `tokenwarden user create`.

import { h, render, notice, when, table, pager, badge, errorText } from '../dom.js';
import { gql } from '../gql.js';

const PAGE = 25;
const LIST = `query Users($first: Int, $after: String) {
  users(first: $first, after: $after) {
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    nodes { email role totpEnabled lastSignInAt disabled }
  }
}`;

export async function show(main) {
  const list = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  async function load(page = { first: PAGE }) {
    if (page.last) page = { first: PAGE }; // users pages forward only
    let data;
    try {
      data = await gql(LIST, page);
    } catch (err) {
      list.replaceChildren(notice(errorText(err), 'error'));
      return;
    }
    const rows = data.users.nodes.map((u) => h('tr', {},
      h('td', {}, u.email), h('td', {}, u.role),
      h('td', {}, u.totpEnabled ? badge('SUCCEEDED', 'On') : badge('FAILED', 'Off')),
      h('td', {}, when(u.lastSignInAt)),
      h('td', {}, u.disabled ? badge('DISCONNECTED', 'Disabled') : badge('SUCCEEDED', 'Active'))));
    list.replaceChildren(table('Users', ['Email', 'Role', 'Two-factor', 'Last sign-in', 'State'], rows),
      pager(data.users.pageInfo, PAGE, load));
  }
  render(main, 'Users',
    h('p', {}, 'Create users with ', h('code', {}, 'tokenwarden user create --tenant T --email E --role ROLE'), '.'),
    list);
  await load();
}
