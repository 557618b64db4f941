// GraphiQL at /graphiql, from the vendored UMD bundles (no CDN). It reuses the dashboard's
// sign-in: the session cookie (plus its CSRF token) or the API key kept for this tab.
(async function () {
  'use strict';
  const origin = window.location.origin;
  const wsUrl = origin.replace(/^http/, 'ws') + '/graphql/ws';
  const apiKey = window.sessionStorage.getItem('tw.apiKey');
  const headers = {};
  const wsConnectionParams = {};
  if (apiKey) {
    headers.Authorization = 'Bearer ' + apiKey;
    wsConnectionParams.authorization = 'Bearer ' + apiKey;
  } else {
    try {
      const res = await fetch('/auth/session', { credentials: 'same-origin' });
      if (res.ok) {
        const session = await res.json();
        headers['X-CSRF-Token'] = session.csrfToken;
        wsConnectionParams.csrfToken = session.csrfToken;
      }
    } catch (_) {
      // Not signed in: add an Authorization header in the Headers tab.
    }
  }
  const fetcher = GraphiQL.createFetcher({
    url: origin + '/graphql',
    subscriptionUrl: wsUrl,
    headers,
    wsConnectionParams,
  });
  const defaultHeaders = apiKey || headers['X-CSRF-Token']
    ? ''
    : JSON.stringify({ Authorization: 'Bearer <api key>' }, null, 2);
  const root = ReactDOM.createRoot(document.getElementById('graphiql'));
  root.render(React.createElement(GraphiQL, {
    fetcher,
    defaultHeaders,
    defaultQuery: '# Signed in through the dashboard, or set an Authorization header below.\n{\n  viewer { role tenant { name } }\n  tokenHealth { byStatus { platform status count } expiringNext24h }\n}\n',
    shouldPersistHeaders: false,
  }));
})();
