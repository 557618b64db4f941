// Live feed: the session's tokenEvents subscription (see feed.js). Failures stand out (a
// red bar, an icon and the words) and are announced to screen readers as they arrive.

import { h, render, badge, when, platformName, isFailure, announce, statusLabel } from '../dom.js';
import { feed } from '../feed.js';

const STATES = {
  idle: ['MISSING', 'Not connected'],
  connecting: ['PENDING', 'Connecting…'],
  reconnecting: ['PENDING', 'Connection lost: reconnecting (missed events will be replayed)…'],
  live: ['SUCCEEDED', 'Live'],
  denied: ['FAILED', 'Refused by the server'],
  stopped: ['MISSING', 'Stopped'],
};

export function show(main) {
  const state = h('p', { id: 'feed-state', role: 'status' });
  const onlyFailures = h('input', { type: 'checkbox', id: 'only-failures', onchange: () => draw() });
  const body = h('tbody', { id: 'feed-rows' });
  const tableEl = h('div', { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': 'Token events, newest first' },
    h('table', {}, h('thead', {}, h('tr', {},
      ['Time', 'Event', 'Platform', 'Account', 'What to do'].map((x) => h('th', { scope: 'col' }, x)))), body));

  function row(e, fresh) {
    const account = e.account
      ? h('a', { href: `#/accounts/${encodeURIComponent(e.account.id)}` }, e.account.username ? `@${e.account.username}` : e.account.id)
      : h('span', { class: 'muted' }, '—');
    const cls = [isFailure(e.kind) ? 'failure' : '', fresh ? 'fresh' : ''].join(' ').trim() || null;
    return h('tr', { class: cls, dataset: { kind: e.kind, id: e.id } },
      h('td', {}, when(e.occurredAt, { relative: false })),
      h('td', {}, badge(e.kind)),
      h('td', {}, platformName(e.platform)),
      h('td', {}, account),
      h('td', {}, e.error ? [h('strong', {}, e.error.code), ` ${e.error.message}`, e.error.action ? h('div', {}, e.error.action) : null] : ''));
  }

  function visible(e) { return !onlyFailures.checked || isFailure(e.kind); }

  function draw() {
    const rows = feed.events.filter(visible).map((e) => row(e, false));
    body.replaceChildren(...(rows.length ? rows : [h('tr', {}, h('td', { colspan: 5, class: 'muted' },
      'No events in the last hour yet. New ones appear here as they happen.'))]));
  }

  function drawState() {
    const [tone, text] = STATES[feed.state] || STATES.idle;
    const detail = feed.state === 'denied' && feed.detail ? `: ${feed.detail}` : '';
    state.replaceChildren(badge(tone, `${text}${detail}`), ` ${feed.events.length} events shown.`);
  }

  draw();
  drawState();
  const stop = feed.listen((event) => {
    drawState();
    if (!event) return;
    if (!visible(event)) return;
    const empty = body.querySelector('td[colspan]');
    if (empty) empty.parentElement.remove();
    body.prepend(row(event, true));
    while (body.children.length > 500) body.lastElementChild.remove();
    if (isFailure(event.kind)) {
      const who = event.account && event.account.username ? ` for @${event.account.username}` : '';
      announce(`${statusLabel(event.kind)}${who}${event.error ? `: ${event.error.message}` : ''}`);
    }
  });

  render(main, 'Live feed',
    h('p', {}, 'Token events of your tenant as they happen, starting with the last hour.'),
    state,
    h('div', { class: 'checks' }, h('label', { for: 'only-failures' }, onlyFailures, 'Show failures only')),
    tableEl);
  return stop;
}
