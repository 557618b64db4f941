// The session and a tiny GraphQL client over fetch.
//
// Two ways to be signed in:
// - a user session (POST /auth/sign-in): an HttpOnly cookie the browser sends by itself,
//   plus a CSRF token this module sends as X-CSRF-Token on every request;
// - an API key typed into the sign-in page, kept in sessionStorage (this tab only) and
//   sent as `Authorization: Bearer`.

const KEY_STORAGE = 'tw.apiKey';

export const session = {
  /** 'user' | 'key' | null */
  mode: null,
  csrfToken: null,
  apiKey: null,
  user: null,
};

/** A GraphQL or HTTP failure; `code` is the `extensions.code` of the first error. */
export class GqlError extends Error {
  constructor(message, code, errors = []) {
    super(message);
    this.code = code;
    this.errors = errors;
  }
}

let onSignedOut = () => {};
/** Called when the server says the session or key is no longer valid. */
export function whenSignedOut(callback) { onSignedOut = callback; }

/** Asks the server for an existing session (cookie) or restores this tab's API key. */
export async function restoreSession() {
  const key = window.sessionStorage.getItem(KEY_STORAGE);
  if (key) {
    session.mode = 'key';
    session.apiKey = key;
    return true;
  }
  try {
    const res = await fetch('/auth/session', { credentials: 'same-origin' });
    if (res.ok) {
      const body = await res.json();
      useUserSession(body);
      return true;
    }
  } catch (_) {
    // The server does not offer sessions: API keys only.
  }
  return false;
}

function useUserSession(body) {
  session.mode = 'user';
  session.csrfToken = body.csrfToken;
  session.user = body.user;
  session.apiKey = null;
}

/** Signs in with email, password and a TOTP (or recovery) code. Throws with a message. */
export async function signIn(email, password, code) {
  let res;
  try {
    res = await fetch('/auth/sign-in', {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ email, password, code }),
    });
  } catch (_) {
    throw new GqlError('The server could not be reached.', 'NETWORK');
  }
  const body = await res.json().catch(() => ({}));
  if (res.ok) {
    useUserSession(body);
    return;
  }
  const code_ = body.error && body.error.code;
  const messages = {
    INVALID_CREDENTIALS: 'The email or password is wrong.',
    INVALID_CODE: 'The authentication code is wrong or already used. Enter the current code from your app.',
    LOCKED_OUT: `Too many failed attempts. Try again in ${body.error && body.error.retryAfterSeconds} seconds.`,
    BAD_REQUEST: 'Fill in every field.',
  };
  if (res.status === 404) {
    throw new GqlError('This server does not offer password sign-in; use an API key.', 'NOT_FOUND');
  }
  throw new GqlError(messages[code_] || `Sign-in failed (HTTP ${res.status}).`, code_);
}

/** Checks an API key with a `viewer` query and keeps it for this tab. */
export async function signInWithKey(key) {
  session.mode = 'key';
  session.apiKey = key;
  try {
    const data = await gql('query SignIn { viewer { role } }');
    window.sessionStorage.setItem(KEY_STORAGE, key);
    return data;
  } catch (err) {
    session.mode = null;
    session.apiKey = null;
    throw err;
  }
}

export async function signOut() {
  if (session.mode === 'user') {
    await fetch('/auth/sign-out', {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'X-CSRF-Token': session.csrfToken || '' },
    }).catch(() => {});
  }
  window.sessionStorage.removeItem(KEY_STORAGE);
  session.mode = null;
  session.apiKey = null;
  session.csrfToken = null;
  session.user = null;
}

function authHeaders() {
  if (session.mode === 'key') return { Authorization: `Bearer ${session.apiKey}` };
  if (session.mode === 'user') return { 'X-CSRF-Token': session.csrfToken || '' };
  return {};
}

/** The `connection_init` payload for the WebSocket. */
export function connectionParams() {
  if (session.mode === 'key') return { authorization: `Bearer ${session.apiKey}` };
  if (session.mode === 'user') return { csrfToken: session.csrfToken };
  return {};
}

/** Runs a request; returns `{data, errors}` as the server sent them. */
export async function gqlRaw(query, variables = {}) {
  let res;
  try {
    res = await fetch('/graphql', {
      method: 'POST',
      credentials: 'same-origin',
      headers: {
        'Content-Type': 'application/json',
        Accept: 'application/json',
        ...authHeaders(),
      },
      body: JSON.stringify({ query, variables }),
    });
  } catch (_) {
    throw new GqlError('The server could not be reached.', 'NETWORK');
  }
  let body;
  try {
    body = await res.json();
  } catch (_) {
    throw new GqlError(`The server answered HTTP ${res.status}.`, 'HTTP');
  }
  const errors = body.errors || [];
  const code = errors[0] && errors[0].extensions && errors[0].extensions.code;
  if (code === 'UNAUTHENTICATED' || code === 'CSRF_FAILED') {
    onSignedOut(errors[0].message);
    throw new GqlError(errors[0].message, code, errors);
  }
  return { data: body.data || null, errors };
}

/** Runs a request; throws a GqlError on any error. */
export async function gql(query, variables = {}) {
  const { data, errors } = await gqlRaw(query, variables);
  if (errors.length) {
    const code = errors[0].extensions && errors[0].extensions.code;
    throw new GqlError([...new Set(errors.map((e) => e.message))].join('; '), code, errors);
  }
  return data;
}

const probes = new Map();
/**
 * Whether the server has a query field (and the caller may use it): the dashboard hides
 * pages for fields a server does not have yet (introspection may be off in production).
 */
export function hasField(name, selection) {
  if (!probes.has(name)) {
    probes.set(name, gqlRaw(`query Probe { ${name}${selection} }`)
      .then(({ errors }) => errors.length === 0)
      .catch(() => false));
  }
  return probes.get(name);
}

export function forgetProbes() { probes.clear(); }
