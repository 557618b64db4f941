// Sign-in: email + password + authenticator code (POST /auth/sign-in), or an API key.

import { h, render, field, notice, errorText } from '../dom.js';
import { session, signIn, signInWithKey } from '../gql.js';

export function show(main, _arg, { enter }) {
  const status = h('div', { id: 'sign-in-status' });
  if (session.notice) {
    status.replaceChildren(notice(session.notice));
    session.notice = null;
  }
  const email = h('input', { type: 'email', name: 'username', autocomplete: 'username', required: true, id: 'email' });
  const password = h('input', { type: 'password', name: 'password', autocomplete: 'current-password', required: true, id: 'password' });
  const code = h('input', {
    type: 'text', name: 'code', autocomplete: 'one-time-code', inputmode: 'numeric',
    required: true, id: 'code', maxlength: '32', spellcheck: 'false',
  });
  const submit = h('button', { type: 'submit' }, 'Sign in');
  const form = h('form', {
    class: 'card narrow', 'aria-labelledby': 'sign-in-title',
    onsubmit: async (event) => {
      event.preventDefault();
      submit.disabled = true;
      status.replaceChildren(notice('Signing in…'));
      try {
        await signIn(email.value.trim(), password.value, code.value.replace(/\s+/g, ''));
        await enter();
      } catch (err) {
        status.replaceChildren(notice(errorText(err), 'error'));
        code.value = '';
        (err.code === 'INVALID_CODE' ? code : password).focus();
      } finally {
        submit.disabled = false;
      }
    },
  },
  h('h2', { id: 'sign-in-title' }, 'Sign in'),
  field('Email', email),
  field('Password', password),
  field('Authentication code', code, 'The 6-digit code from your authenticator app, or a recovery code.'),
  submit);

  const key = h('input', { type: 'password', autocomplete: 'off', id: 'api-key', required: true, spellcheck: 'false' });
  const keySubmit = h('button', { type: 'submit', class: 'secondary' }, 'Use this key');
  const keyForm = h('form', {
    onsubmit: async (event) => {
      event.preventDefault();
      keySubmit.disabled = true;
      try {
        await signInWithKey(key.value.trim());
        await enter();
      } catch (err) {
        status.replaceChildren(notice(`The key was refused: ${errorText(err)}`, 'error'));
        key.focus();
      } finally {
        keySubmit.disabled = false;
      }
    },
  }, field('API key', key, 'Kept in this tab only, until you sign out or close it.'), keySubmit);
  const details = h('details', { class: 'card narrow' }, h('summary', {}, 'Sign in with an API key instead'), keyForm);

  render(main, 'tokenwarden', status, form, details);
  email.focus();
}
