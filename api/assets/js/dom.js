// Small DOM helpers: elements are built with h() (text is always set as text, never as
// HTML), plus the shared pieces every page uses: status badges, time formatting, pagers,
// the confirmation dialog and the live-region announcer.

/** h('td', {class: 'x', onclick}, child, ...): an element with attributes and children. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') {
      el.addEventListener(name.slice(2), value);
    } else if (name === 'dataset') {
      Object.assign(el.dataset, value);
    } else if (value === true) {
      el.setAttribute(name, '');
    } else {
      el.setAttribute(name, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** An SVG element (charts). */
export function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value !== undefined && value !== null) el.setAttribute(name, String(value));
  }
  append(el, children);
  return el;
}

let focusHeading = false;

/** The router calls this on every page change; the first page of a load leaves focus alone. */
export function pageChanged(first) { focusHeading = !first; }

/**
 * Replaces the page content. After a page change focus moves to the new heading (so screen
 * readers announce it); on the first page the skip link stays the first Tab stop.
 */
export function render(main, title, ...children) {
  if (main.stale) return;
  document.title = `${title} · tokenwarden`;
  const heading = h('h1', { tabindex: '-1' }, title);
  main.replaceChildren(heading, ...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  if (focusHeading) heading.focus({ preventScroll: true });
  window.scrollTo(0, 0);
}

/** Says something to screen readers (and shows nothing). */
export function announce(text) {
  const region = document.getElementById('announce');
  region.textContent = '';
  window.setTimeout(() => { region.textContent = text; }, 50);
}

// Status: colour AND icon AND text, never colour alone.
const STATUS = {
  ACTIVE: ['ok', '✓', 'Active'],
  REFRESH_FAILING: ['warn', '!', 'Refresh failing'],
  RECONNECT_REQUIRED: ['bad', '✕', 'Reconnect required'],
  EXPIRED: ['bad', '✕', 'Expired'],
  DISCONNECTED: ['off', '–', 'Disconnected'],
  DEACTIVATED: ['off', '–', 'Deactivated'],
  SUCCEEDED: ['ok', '✓', 'Succeeded'],
  FAILED_TRANSIENT: ['warn', '!', 'Failed (will retry)'],
  FAILED_PERMANENT: ['bad', '✕', 'Failed (permanent)'],
  SKIPPED: ['off', '–', 'Skipped'],
  CONNECTED: ['ok', '✓', 'Connected'],
  REFRESHED: ['ok', '✓', 'Refreshed'],
  REFRESH_FAILED: ['warn', '!', 'Refresh failed'],
  EXPIRING: ['warn', '!', 'Expiring'],
  KEY_ROTATION_DUE: ['warn', '!', 'Key rotation due'],
  PROVIDER_DEGRADED: ['bad', '✕', 'Provider degraded'],
  PROVIDER_RECOVERED: ['ok', '✓', 'Provider recovered'],
  PENDING: ['warn', '…', 'Pending'],
  DELIVERED: ['ok', '✓', 'Delivered'],
  FAILED: ['bad', '✕', 'Failed'],
  VALID: ['ok', '✓', 'Valid'],
  MISSING: ['off', '–', 'No token'],
};

/** The words for a status enum value. */
export function statusLabel(value) {
  return (STATUS[value] || [null, null, humanize(value)])[2];
}

/** A status badge: tone class, an icon and the words. */
export function badge(value, text) {
  const [tone, icon, label] = STATUS[value] || ['off', '•', humanize(value)];
  return h('span', { class: `badge ${tone}` }, h('span', { 'aria-hidden': 'true' }, icon), ' ', text || label);
}

/** Whether a status or event kind is a failure (for highlighting). */
export function isFailure(value) {
  const entry = STATUS[value];
  return entry ? entry[0] === 'bad' || entry[0] === 'warn' : false;
}

export function humanize(value) {
  if (!value) return '';
  const s = String(value).replaceAll('_', ' ').toLowerCase();
  return s.charAt(0).toUpperCase() + s.slice(1);
}

export const PLATFORMS = { TIKTOK: 'TikTok', INSTAGRAM: 'Instagram' };
export function platformName(p) { return PLATFORMS[p] || p || '—'; }

/** "in 3 h", "5 min ago"; a <time> element with the exact time as its title. */
export function when(iso, { relative = true } = {}) {
  if (!iso) return h('span', { class: 'muted' }, '—');
  const date = new Date(iso);
  const text = relative ? relativeTime(date) : date.toLocaleString(undefined, { dateStyle: 'short', timeStyle: 'medium' });
  return h('time', { datetime: iso, title: date.toLocaleString() }, text);
}

export function relativeTime(date, now = Date.now()) {
  const seconds = Math.round((date.getTime() - now) / 1000);
  const abs = Math.abs(seconds);
  let text;
  if (abs < 60) text = `${abs} s`;
  else if (abs < 3600) text = `${Math.round(abs / 60)} min`;
  else if (abs < 86400 * 2) text = `${Math.round(abs / 3600)} h`;
  else text = `${Math.round(abs / 86400)} days`;
  return seconds >= 0 ? `in ${text}` : `${text} ago`;
}

/** A scrollable, labelled table (keyboard users can scroll it: it is focusable). */
export function table(caption, headers, rows, { empty = 'Nothing here yet.' } = {}) {
  const head = h('thead', {}, h('tr', {}, headers.map((text) => h('th', { scope: 'col' }, text))));
  const body = h('tbody', {}, rows.length
    ? rows
    : h('tr', {}, h('td', { colspan: headers.length, class: 'muted' }, empty)));
  return h('div', { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': caption },
    h('table', {}, h('caption', { class: 'visually-hidden' }, caption), head, body));
}

/**
 * Previous/next buttons over a Relay connection. `load({first, after} | {last, before})`
 * reloads the page.
 */
export function pager(pageInfo, size, load, totalCount) {
  const prev = h('button', {
    type: 'button', class: 'secondary', disabled: !pageInfo.hasPreviousPage,
    onclick: () => load({ last: size, before: pageInfo.startCursor }),
  }, '← Previous');
  const next = h('button', {
    type: 'button', class: 'secondary', disabled: !pageInfo.hasNextPage,
    onclick: () => load({ first: size, after: pageInfo.endCursor }),
  }, 'Next →');
  return h('nav', { class: 'pager', 'aria-label': 'Pages' }, prev,
    totalCount === undefined ? null : h('span', { class: 'muted' }, `${totalCount} in all`), next);
}

/** Asks for confirmation in the modal dialog; resolves true when confirmed. */
export function confirmDialog(title, body, okText = 'Confirm', { danger = false } = {}) {
  const dialog = document.getElementById('confirm');
  document.getElementById('confirm-title').textContent = title;
  document.getElementById('confirm-body').replaceChildren(...[body].flat().filter(Boolean));
  const ok = document.getElementById('confirm-ok');
  ok.textContent = okText;
  ok.classList.toggle('danger', danger);
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true });
    dialog.returnValue = '';
    dialog.showModal();
    ok.focus();
  });
}

/** A message box: role=alert for errors, role=status otherwise. */
export function notice(text, kind = 'info') {
  return h('div', { class: `notice ${kind}`, role: kind === 'error' ? 'alert' : 'status' }, text);
}

/** A labelled form control. */
export function field(label, control, hint) {
  const id = control.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  control.id = id;
  const hintEl = hint ? h('small', { id: `${id}-hint`, class: 'muted' }, hint) : null;
  if (hintEl) control.setAttribute('aria-describedby', hintEl.id);
  return h('div', { class: 'field' }, h('label', { for: id }, label), control, hintEl);
}

/** A read-only secret or link with a Copy button. */
export function copyBox(label, value) {
  const input = h('input', {
    type: 'text', readonly: true, value, class: 'mono', spellcheck: 'false',
    id: `c-${Math.random().toString(36).slice(2, 9)}`,
  });
  const status = h('span', { class: 'muted', role: 'status' });
  const button = h('button', {
    type: 'button', class: 'secondary',
    onclick: async () => {
      input.select();
      try {
        await navigator.clipboard.writeText(value);
        status.textContent = 'Copied.';
      } catch (_) {
        status.textContent = 'Press Ctrl+C to copy.';
      }
    },
  }, 'Copy');
  const row = h('div', { class: 'copy' }, input, button, status);
  return h('div', { class: 'field' }, h('label', { for: input.id }, label), row);
}

/** The message of a failed request, for notices. */
export function errorText(err) {
  return err && err.message ? err.message : String(err);
}

/** An audit entry's details as `key: value` pairs (nulls left out). */
export function detailsText(details) {
  if (!details || typeof details !== 'object') return details === null || details === undefined ? '' : String(details);
  return Object.entries(details)
    .filter(([, v]) => v !== null && v !== undefined)
    .map(([k, v]) => `${k}: ${typeof v === 'object' ? JSON.stringify(v) : v}`)
    .join(', ');
}
