// The dashboard shell: session check, hash routing (#/page/arg), navigation state and the
// live-feed badge. Each page is its own module under pages/, loaded when first visited;
// a page exports `show(main, arg)` and may return a function that cleans up.

import { session, restoreSession, signOut, whenSignedOut, gql, hasField, forgetProbes } from './gql.js';
import { feed } from './feed.js';
import { h, render, notice, errorText, pageChanged } from './dom.js';

const PAGES = {
  'sign-in': './pages/signin.js',
  overview: './pages/overview.js',
  accounts: './pages/accounts.js',
  account: './pages/account.js',
  live: './pages/live.js',
  audit: './pages/audit.js',
  notifications: './pages/notifications.js',
  webhooks: './pages/webhooks.js',
  keys: './pages/keys.js',
  users: './pages/users.js',
};

const main = document.getElementById('main');
let cleanup = null;
let signedIn = false;
let routes = 0;

/** Where the app goes after signing in. */
export async function enter() {
  signedIn = true;
  await showChrome();
  feed.start();
  const target = window.location.hash && !window.location.hash.startsWith('#/sign-in')
    ? window.location.hash : '#/overview';
  if (window.location.hash === target) route();
  else window.location.hash = target;
}

async function showChrome() {
  document.getElementById('nav').hidden = false;
  document.getElementById('menu-toggle').hidden = false;
  document.getElementById('who').hidden = false;
  let who = '';
  try {
    const data = await gql('query Who { viewer { role tenant { name } } }');
    session.role = data.viewer.role;
    session.tenant = data.viewer.tenant.name;
    who = session.user && session.user.email
      ? `${session.user.email} · ${data.viewer.role.toLowerCase()} · ${data.viewer.tenant.name}`
      : `API key · ${data.viewer.role.toLowerCase()} · ${data.viewer.tenant.name}`;
  } catch (err) {
    who = session.user ? session.user.email : 'API key';
  }
  document.getElementById('who-name').textContent = who;
  const users = (session.role === 'ADMIN' || session.role === 'OPERATOR') && await hasField('users', '(first: 1) { edges { cursor } }');
  document.getElementById('nav-users').hidden = !users;
}

function hideChrome() {
  document.getElementById('nav').hidden = true;
  document.getElementById('menu-toggle').hidden = true;
  document.getElementById('who').hidden = true;
}

async function leave(message) {
  signedIn = false;
  feed.stop();
  forgetProbes();
  await signOut();
  hideChrome();
  session.notice = message || null;
  if (window.location.hash === '#/sign-in') route();
  else window.location.hash = '#/sign-in';
}

async function route() {
  const [path, query = ''] = window.location.hash.replace(/^#\/?/, '').split('?');
  const [name, ...rest] = path.split('/');
  const params = new URLSearchParams(query);
  let page = name || 'overview';
  if (!signedIn) page = 'sign-in';
  else if (page === 'sign-in') page = 'overview';
  if (page === 'accounts' && rest.length) page = 'account';
  if (!PAGES[page]) page = 'overview';
  for (const link of document.querySelectorAll('#nav a')) {
    const current = link.getAttribute('href') === `#/${page === 'account' ? 'accounts' : page}`;
    if (current) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  closeMenu();
  pageChanged(routes === 0);
  routes += 1;
  if (cleanup) { cleanup(); cleanup = null; }
  if (page === 'live') feed.unseenFailures = 0;
  updateBadge();
  const view = viewFor(routes);
  try {
    const module = await import(PAGES[page]);
    const done = (await module.show(view, decodeURIComponent(rest.join('/')), { enter, params })) || null;
    // A page that finished after the next route began (slow queries, then "Sign out")
    // must not keep running: its view is stale and draws nothing.
    if (view.stale) { if (done) done(); } else cleanup = done;
  } catch (err) {
    render(view, 'Something went wrong', notice(errorText(err), 'error'));
  }
}

// The page's handle on <main>, valid while its route is the current one: once another
// route has started, it changes nothing (a slow page cannot draw over the next one).
function viewFor(route) {
  const mutators = new Set(['replaceChildren', 'append', 'appendChild', 'prepend', 'insertBefore', 'replaceChild', 'removeChild']);
  return new Proxy(main, {
    get(target, prop) {
      if (prop === 'stale') return route !== routes;
      const value = Reflect.get(target, prop);
      if (typeof value !== 'function') return value;
      if (mutators.has(prop) && route !== routes) return () => {};
      return value.bind(target);
    },
    set(target, prop, value) {
      if (route === routes) Reflect.set(target, prop, value);
      return true;
    },
  });
}

function updateBadge() {
  const badgeEl = document.getElementById('live-badge');
  const n = feed.unseenFailures;
  badgeEl.hidden = n === 0;
  badgeEl.textContent = n ? `${n} new ${n === 1 ? 'failure' : 'failures'}` : '';
}

function closeMenu() {
  document.getElementById('nav').classList.remove('open');
  document.getElementById('menu-toggle').setAttribute('aria-expanded', 'false');
}

document.getElementById('menu-toggle').addEventListener('click', (event) => {
  const nav = document.getElementById('nav');
  const open = !nav.classList.contains('open');
  nav.classList.toggle('open', open);
  event.currentTarget.setAttribute('aria-expanded', String(open));
});
// The skip link must not change the route (#main is not a page).
document.querySelector('.skip').addEventListener('click', (event) => {
  event.preventDefault();
  main.focus();
});
document.getElementById('sign-out').addEventListener('click', () => leave('You are signed out.'));
document.addEventListener('keydown', (event) => {
  if (event.key === 'Escape') closeMenu();
});
window.addEventListener('hashchange', route);
feed.listen(() => {
  if (window.location.hash.startsWith('#/live')) feed.unseenFailures = 0;
  updateBadge();
});
whenSignedOut((message) => {
  if (signedIn) leave(`Signed out: ${message}`);
});

// For the browser tests and curious operators: the feed of this tab.
window.tokenwarden = { feed };

(async () => {
  if (await restoreSession()) {
    await enter();
  } else {
    hideChrome();
    route();
  }
})().catch((err) => {
  main.replaceChildren(h('h1', {}, 'tokenwarden'), notice(errorText(err), 'error'));
});
