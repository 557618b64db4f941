//! Instagram API with Instagram Login: authorize URL, code exchange (short-lived token, then
//! at once the 60-day `ig_exchange_token` exchange), refresh of the long-lived token, `/me`.
//!
//! Instagram has no refresh token: the long-lived access token refreshes itself, at the
//! earliest 24 hours after it was issued and never after it expired. Both rules are checked
//! locally, without a provider call. Instagram has no revocation endpoint either:
//! [`OAuthProvider::revoke`] is a documented no-op (users remove the app in their Instagram
//! settings).

use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use oauth2::basic::BasicClient;
use oauth2::{AuthUrl, ClientId, CsrfToken, RedirectUrl};
use reqwest::header::HeaderMap;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use url::Url;

use super::error::{
    DEFAULT_RATE_LIMIT_WAIT, TEMPORARILY_BLOCKED_WAIT, class_from_status, code_from_status,
    permission_in,
};
use super::http::{HttpCore, RawResponse};
use super::limits::Priority;
use super::{
    AuthorizeRequest, ClientCredentials, ErrorClass, OAuthProvider, PkceEncoding, Platform,
    ProviderEndpoints, ProviderError, ProviderProfile, RefreshRequest, TokenSet, UsageReport,
    check_authorize_request, expiry, invalid_response, join, json_i64, json_string,
    requested_scopes, retry_after_header, split_scopes,
};

/// Scopes requested by default.
pub(crate) const DEFAULT_SCOPES: &[&str] = &[
    "instagram_business_basic",
    "instagram_business_content_publish",
];

/// Minimum age of a long-lived token before Instagram accepts a refresh.
pub(crate) const MIN_REFRESH_AGE_S: i64 = 24 * 3600;

/// Fields read from `/me`.
const ME_FIELDS: &str = "id,user_id,username,name,profile_picture_url";

/// Strips what Instagram appends to the code in the redirect (`#_`, or `%23_` when the
/// fragment was URL-encoded), and surrounding whitespace.
fn clean_code(code: &str) -> &str {
    let code = code.trim();
    let code = code.split_once('#').map_or(code, |(c, _)| c);
    code.strip_suffix("%23_").unwrap_or(code)
}

/// Shared state of all handles of the Instagram provider.
struct Inner {
    core: Arc<HttpCore>,
    creds: ClientCredentials,
    auth_base: String,
    graph_base: String,
    graph_version: String,
}

/// The Instagram provider. Cloning shares the HTTP client, limiter, sink and usage.
#[derive(Clone)]
pub struct InstagramProvider {
    inner: Arc<Inner>,
    priority: Priority,
}

impl std::fmt::Debug for InstagramProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstagramProvider")
            .field("client_id", &self.inner.creds.client_id)
            .field("graph_base", &self.inner.graph_base)
            .field("priority", &self.priority)
            .finish_non_exhaustive()
    }
}

/// Result of the code exchange.
pub(super) struct ShortLived {
    access_token: SecretString,
    user_id: String,
    permissions: Vec<String>,
}

/// Result of the long-lived exchange or a refresh.
pub(super) struct LongLived {
    access_token: SecretString,
    expires_at: chrono::DateTime<Utc>,
    issued_at: chrono::DateTime<Utc>,
    permissions: Option<Vec<String>>,
}

impl InstagramProvider {
    /// A provider on a shared core (see [`super::Providers::new`]); waits for rate capacity.
    pub(crate) fn new(
        core: Arc<HttpCore>,
        creds: ClientCredentials,
        endpoints: &ProviderEndpoints,
        graph_version: &str,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                core,
                creds,
                auth_base: endpoints.instagram_auth_base.clone(),
                graph_base: endpoints.instagram_graph_base.clone(),
                graph_version: graph_version.to_owned(),
            }),
            priority: Priority::Background,
        }
    }

    /// The same provider with calls made at another priority.
    pub(crate) fn with_priority(&self, priority: Priority) -> Self {
        Self {
            inner: self.inner.clone(),
            priority,
        }
    }

    /// `GET /access_token` (ig_exchange_token) or `GET /refresh_access_token`
    /// (ig_refresh_token).
    async fn long_lived_call(
        &self,
        priority: Priority,
        operation: &'static str,
        token: &SecretString,
        refresh: bool,
    ) -> Result<LongLived, ProviderError> {
        let path = if refresh {
            "/refresh_access_token"
        } else {
            "/access_token"
        };
        let mut url = join(&self.inner.graph_base, path)?;
        {
            let mut q = url.query_pairs_mut();
            if refresh {
                q.append_pair("grant_type", "ig_refresh_token");
            } else {
                q.append_pair("grant_type", "ig_exchange_token")
                    .append_pair(
                        "client_secret",
                        self.inner.creds.client_secret.expose_secret(),
                    );
            }
            q.append_pair("access_token", token.expose_secret());
        }
        let request = self.inner.core.http.get(url);
        self.inner
            .core
            .execute(priority, operation, request, parse_long_lived)
            .await
    }
}

#[async_trait]
impl OAuthProvider for InstagramProvider {
    fn platform(&self) -> Platform {
        Platform::Instagram
    }

    fn client_id(&self) -> &str {
        &self.inner.creds.client_id
    }

    fn default_scopes(&self) -> &'static [&'static str] {
        DEFAULT_SCOPES
    }

    fn pkce(&self) -> Option<PkceEncoding> {
        None
    }

    fn supports_revoke(&self) -> bool {
        false
    }

    /// `https://api.instagram.com/oauth/authorize?client_id&redirect_uri&response_type=code&
    /// state&scope` (scopes comma-joined), built with the `oauth2` crate. A PKCE challenge is
    /// ignored.
    fn authorize_url(&self, req: &AuthorizeRequest) -> Result<Url, ProviderError> {
        check_authorize_request(req)?;
        let scopes = requested_scopes(req, DEFAULT_SCOPES);
        let auth_url = join(&self.inner.auth_base, "/oauth/authorize")?;
        let redirect = RedirectUrl::new(req.redirect_uri.clone()).map_err(|_| {
            ProviderError::invalid_input("invalid_redirect_uri", "invalid redirect_uri")
        })?;
        let client = BasicClient::new(ClientId::new(self.inner.creds.client_id.clone()))
            .set_auth_uri(AuthUrl::from_url(auth_url))
            .set_redirect_uri(redirect);
        let state = req.state.clone();
        let (url, _) = client
            .authorize_url(move || CsrfToken::new(state))
            // Instagram wants comma-separated scopes; oauth2 would join them with spaces.
            .add_extra_param("scope", scopes.join(","))
            .url();
        Ok(url)
    }

    /// Exchanges the code (after [`clean_code`]) for a short-lived token, then at once for
    /// the long-lived one. The second call always waits for rate capacity, so an interactive
    /// handle never loses a consumed code.
    async fn exchange_code(
        &self,
        code: &str,
        redirect_uri: &str,
        _pkce_verifier: Option<&SecretString>,
    ) -> Result<TokenSet, ProviderError> {
        let creds = &self.inner.creds;
        let form = [
            ("client_id", creds.client_id.as_str()),
            ("client_secret", creds.client_secret.expose_secret()),
            ("grant_type", "authorization_code"),
            ("redirect_uri", redirect_uri),
            ("code", clean_code(code)),
        ];
        let url = join(&self.inner.auth_base, "/oauth/access_token")?;
        let request = self.inner.core.http.post(url).form(&form);
        let short = self
            .inner
            .core
            .execute(self.priority, "exchange_code", request, parse_short_lived)
            .await?;
        let long = self
            .long_lived_call(
                Priority::Background,
                "exchange_long_lived",
                &short.access_token,
                false,
            )
            .await?;
        Ok(TokenSet {
            access_token: long.access_token,
            refresh_token: None,
            expires_at: long.expires_at,
            refresh_expires_at: Some(long.expires_at),
            scopes: long.permissions.unwrap_or(short.permissions),
            provider_account_id: short.user_id,
            issued_at: long.issued_at,
        })
    }

    /// Refreshes the long-lived token (`current.token`). Refused locally, without a call:
    /// `GrantDead` / `expired` once `expires_at` has passed, `NotRefreshableYet` (with
    /// `retry_after`) while the token is under 24 hours old.
    async fn refresh(&self, current: &RefreshRequest<'_>) -> Result<TokenSet, ProviderError> {
        check_refreshable(current, Utc::now())?;
        let long = self
            .long_lived_call(self.priority, "refresh", current.token, true)
            .await?;
        Ok(TokenSet {
            access_token: long.access_token,
            refresh_token: None,
            expires_at: long.expires_at,
            refresh_expires_at: Some(long.expires_at),
            scopes: long.permissions.unwrap_or_else(|| current.scopes.to_vec()),
            provider_account_id: current.provider_account_id.to_owned(),
            issued_at: long.issued_at,
        })
    }

    /// No-op: Instagram has no token revocation endpoint. Always `Ok(())`, no call made.
    async fn revoke(&self, _access_token: &SecretString) -> Result<(), ProviderError> {
        Ok(())
    }

    /// `GET /<version>/me?fields=...&access_token=...`, as documented
    /// (developers.facebook.com/docs/instagram-platform/reference/me). The token travels in
    /// the query, so the URL is only ever logged or recorded redacted. `provider_account_id`
    /// is the app-scoped `id`, the same id the code exchange returns as `user_id`.
    async fn user_info(
        &self,
        access_token: &SecretString,
    ) -> Result<ProviderProfile, ProviderError> {
        let mut url = join(
            &self.inner.graph_base,
            &format!("/{}/me", self.inner.graph_version),
        )?;
        url.query_pairs_mut()
            .append_pair("fields", ME_FIELDS)
            .append_pair("access_token", access_token.expose_secret());
        let request = self.inner.core.http.get(url);
        self.inner
            .core
            .execute(self.priority, "user_info", request, parse_me)
            .await
            // `/me` needs instagram_business_basic.
            .map_err(|e| e.or_missing_permission(DEFAULT_SCOPES[0]))
    }

    fn last_usage(&self) -> Option<UsageReport> {
        self.inner.core.last_usage()
    }
}

/// The local refresh rules: not expired, at least 24 hours old.
fn check_refreshable(
    current: &RefreshRequest<'_>,
    now: chrono::DateTime<Utc>,
) -> Result<(), ProviderError> {
    if now >= current.expires_at {
        return Err(ProviderError::new(
            ErrorClass::GrantDead,
            "expired",
            "the Instagram token expired before it was refreshed; the user must reconnect",
        )
        .with_reason(Some("expired")));
    }
    let ready_at = current.issued_at + chrono::Duration::seconds(MIN_REFRESH_AGE_S);
    if now < ready_at {
        let wait = (ready_at - now).to_std().ok();
        return Err(ProviderError::new(
            ErrorClass::NotRefreshableYet,
            "not_refreshable_yet",
            "Instagram tokens can be refreshed only once they are 24 hours old",
        )
        .with_retry_after(wait));
    }
    Ok(())
}

/// Whether an Instagram JSON body is an error (Graph or legacy OAuth shape).
fn has_error(v: &Value) -> bool {
    v.get("error").is_some_and(Value::is_object) || v.get("error_type").is_some()
}

/// Parses the code exchange: wrapped `{"data":[{..}]}` or flat `{..}`; `permissions` as a
/// comma-separated string or an array.
pub(super) fn parse_short_lived(raw: &RawResponse) -> Result<ShortLived, ProviderError> {
    if !raw.is_success() {
        return Err(classify(Some(raw.status), &raw.headers, &raw.body));
    }
    let v: Value = serde_json::from_str(&raw.body)
        .map_err(|_| invalid_response("code exchange response is not JSON"))?;
    if has_error(&v) {
        return Err(classify(Some(raw.status), &raw.headers, &raw.body));
    }
    let entry = match v.get("data") {
        Some(Value::Array(items)) => items
            .first()
            .ok_or_else(|| invalid_response("empty data array"))?,
        Some(obj @ Value::Object(_)) => obj,
        _ => &v,
    };
    let access_token = entry
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| invalid_response("missing access_token"))?;
    let user_id =
        json_string(entry.get("user_id")).ok_or_else(|| invalid_response("missing user_id"))?;
    Ok(ShortLived {
        access_token: SecretString::from(access_token.to_owned()),
        user_id,
        permissions: parse_permissions(entry.get("permissions")).unwrap_or_default(),
    })
}

/// `permissions` / `scope` as a comma-separated string or an array of strings.
fn parse_permissions(v: Option<&Value>) -> Option<Vec<String>> {
    match v? {
        Value::String(s) => Some(split_scopes(s)),
        Value::Array(items) => Some(
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
        ),
        _ => None,
    }
}

/// Parses `{"access_token","token_type","expires_in"}`.
pub(super) fn parse_long_lived(raw: &RawResponse) -> Result<LongLived, ProviderError> {
    if !raw.is_success() {
        return Err(classify(Some(raw.status), &raw.headers, &raw.body));
    }
    let v: Value = serde_json::from_str(&raw.body)
        .map_err(|_| invalid_response("token response is not JSON"))?;
    if has_error(&v) {
        return Err(classify(Some(raw.status), &raw.headers, &raw.body));
    }
    let access_token = v
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| invalid_response("missing access_token"))?;
    let expires_in =
        json_i64(v.get("expires_in")).ok_or_else(|| invalid_response("missing expires_in"))?;
    Ok(LongLived {
        access_token: SecretString::from(access_token.to_owned()),
        expires_at: expiry(raw.received_at, expires_in)?,
        issued_at: raw.received_at,
        permissions: parse_permissions(v.get("permissions")),
    })
}

/// Parses `/me`.
pub(super) fn parse_me(raw: &RawResponse) -> Result<ProviderProfile, ProviderError> {
    if !raw.is_success() {
        return Err(classify(Some(raw.status), &raw.headers, &raw.body));
    }
    let v: Value =
        serde_json::from_str(&raw.body).map_err(|_| invalid_response("/me is not JSON"))?;
    if has_error(&v) {
        return Err(classify(Some(raw.status), &raw.headers, &raw.body));
    }
    let text = |k: &str| json_string(v.get(k));
    Ok(ProviderProfile {
        provider_account_id: text("id")
            .or_else(|| text("user_id"))
            .ok_or_else(|| invalid_response("missing id"))?,
        username: text("username"),
        display_name: text("name"),
        avatar_url: text("profile_picture_url"),
    })
}

/// Dead-grant reason of an OAuthException 190 subcode.
fn reason_for_subcode(subcode: Option<i64>) -> &'static str {
    match subcode {
        Some(458) => "app_removed",
        Some(459) => "user_checkpointed",
        Some(460) => "password_changed",
        Some(463) => "expired",
        Some(464) => "user_unconfirmed",
        Some(492) => "session_invalid",
        _ => "invalid_token",
    }
}

/// Meta error codes meaning "throttled".
fn is_rate_limit_code(code: i64) -> bool {
    matches!(code, 4 | 17 | 32 | 341 | 613 | 80002)
}

/// Whether a message is about our app configuration (secret, app id, redirect URI).
fn mentions_config(msg: &str) -> bool {
    [
        "redirect_uri",
        "redirect uri",
        "client secret",
        "client_secret",
        "client_id",
        "application id",
        "platform app",
    ]
    .iter()
    .any(|w| msg.contains(w))
}

/// Class and dead-grant reason of a Meta error code.
fn class_for_code(
    code: i64,
    subcode: Option<i64>,
    message: &str,
    status: Option<u16>,
) -> (ErrorClass, Option<&'static str>) {
    let msg = message.to_ascii_lowercase();
    match code {
        190 => (ErrorClass::GrantDead, Some(reason_for_subcode(subcode))),
        102 => (ErrorClass::GrantDead, Some("session_invalid")),
        c if is_rate_limit_code(c) => (ErrorClass::Transient, None),
        1 | 2 if mentions_config(&msg) => (ErrorClass::Config, None),
        1 | 2 => (ErrorClass::Transient, None),
        // "Permission not granted or removed" (Graph API error handling): the user must
        // reconnect and grant it. 101 (invalid app id) stays a configuration error.
        10 | 200..=299 => (ErrorClass::GrantDead, Some("permission_revoked")),
        101 => (ErrorClass::Config, None),
        // "Temporarily blocked for policies violations": wait long, never reconnect.
        368 => (ErrorClass::Transient, None),
        100 | 400 => {
            let refresh_too_early = msg.contains("refresh")
                && ["yet", "24 hour", "too soon", "too early", "at least"]
                    .iter()
                    .any(|w| msg.contains(w));
            if refresh_too_early {
                (ErrorClass::NotRefreshableYet, None)
            } else if mentions_config(&msg) {
                (ErrorClass::Config, None)
            } else if msg.contains("authorization code") || msg.contains("matching code") {
                (ErrorClass::GrantDead, Some("invalid_code"))
            } else {
                (ErrorClass::InvalidInput, None)
            }
        }
        _ => (class_from_status(status), None),
    }
}

/// Classifies an Instagram error: Graph `{"error":{"message","type","code","error_subcode",
/// "fbtrace_id","is_transient"}}` or legacy `{"error_type","code","error_message"}`, else by
/// HTTP status. 190 is `GrantDead` with the subcode as [`ProviderError::reason`]; throttling
/// codes, 1/2, 429 and 5xx are `Transient`; usage headers at 100% make any other error a rate
/// limit. The code is `"<code>/<subcode>"` or `"<code>"`.
pub(crate) fn classify(status: Option<u16>, headers: &HeaderMap, body: &str) -> ProviderError {
    let v: Option<Value> = serde_json::from_str(body).ok();
    let text = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let mut code = None;
    let mut subcode = None;
    let mut message = None;
    let mut log_id = None;
    let mut transient_flag = false;
    if let Some(root) = v.as_ref() {
        if let Some(e) = root.get("error").filter(|e| e.is_object()) {
            code = json_i64(e.get("code"));
            subcode = json_i64(e.get("error_subcode"));
            message = text(e.get("error_user_msg")).or_else(|| text(e.get("message")));
            log_id = text(e.get("fbtrace_id"));
            transient_flag = e.get("is_transient").and_then(Value::as_bool) == Some(true);
        } else if root.get("error_type").is_some() || root.get("error_message").is_some() {
            code = json_i64(root.get("code"));
            message = text(root.get("error_message"));
        }
    }
    let usage = UsageReport::from_headers(headers, Utc::now());
    let (mut class, reason) = match code {
        Some(c) => class_for_code(c, subcode, message.as_deref().unwrap_or(""), status),
        None => (class_from_status(status), None),
    };
    let overloaded = status.is_some_and(|s| s == 429 || s >= 500);
    let usage_exhausted = usage.is_some_and(|u| u.is_exhausted());
    if class != ErrorClass::GrantDead && (overloaded || transient_flag || usage_exhausted) {
        class = ErrorClass::Transient;
    }
    let rate_limited =
        status == Some(429) || usage_exhausted || code.is_some_and(is_rate_limit_code);
    let blocked = code == Some(368);
    let retry_after = match class {
        ErrorClass::Transient => retry_after_header(headers)
            .or_else(|| usage.and_then(|u| u.regain_access_after))
            .or_else(|| blocked.then_some(TEMPORARILY_BLOCKED_WAIT))
            .or_else(|| rate_limited.then_some(DEFAULT_RATE_LIMIT_WAIT)),
        _ => None,
    };
    let code_str = match (code, subcode) {
        (Some(c), Some(s)) => format!("{c}/{s}"),
        (Some(c), None) => c.to_string(),
        _ => code_from_status(status),
    };
    let message = message.unwrap_or_else(|| match status {
        Some(s) => format!("Instagram returned HTTP {s}"),
        None => "no response from Instagram".to_owned(),
    });
    let mut err = ProviderError::new(class, code_str, message)
        .with_retry_after(retry_after)
        .with_status(status)
        .with_reason(reason);
    if err.reason == Some("permission_revoked") {
        let permission = permission_in(&err.message);
        err = err.with_missing_permission(permission);
    }
    err.log_id = log_id;
    err.or_usage(usage)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderValue, RETRY_AFTER};
    use std::time::Duration;

    fn no_headers() -> HeaderMap {
        HeaderMap::new()
    }

    fn graph(code: i64, subcode: Option<i64>, message: &str) -> String {
        let mut e = serde_json::json!({
            "message": message,
            "type": "OAuthException",
            "code": code,
            "fbtrace_id": "AQvQbQ8dZ9hJ3x",
        });
        if let Some(s) = subcode {
            e["error_subcode"] = s.into();
        }
        serde_json::json!({ "error": e }).to_string()
    }

    #[test]
    fn classify_190_subcodes() {
        let cases = [
            (
                Some(460),
                "password_changed",
                "Error validating access token: The session has been invalidated because the user changed their password or Facebook has changed the session for security reasons.",
            ),
            (
                Some(458),
                "app_removed",
                "Error validating access token: The user has not authorized application 1234567890.",
            ),
            (
                Some(463),
                "expired",
                "Error validating access token: Session has expired on Tuesday, 01-Apr-25 10:00:00 PDT. The current time is Wednesday, 02-Apr-25 10:00:00 PDT.",
            ),
            (
                Some(467),
                "invalid_token",
                "Error validating access token: The access token is invalid.",
            ),
            (
                None,
                "invalid_token",
                "Invalid OAuth access token - Cannot parse access token",
            ),
        ];
        for (subcode, reason, message) in cases {
            let e = classify(Some(400), &no_headers(), &graph(190, subcode, message));
            assert_eq!(e.class, ErrorClass::GrantDead, "{message}");
            assert_eq!(e.reason(), Some(reason));
            assert_eq!(
                e.code,
                subcode.map_or("190".to_owned(), |s| format!("190/{s}"))
            );
            assert_eq!(e.log_id.as_deref(), Some("AQvQbQ8dZ9hJ3x"));
            assert_eq!(e.retry_after, None);
        }
        let e = classify(Some(400), &no_headers(), &graph(190, Some(460), "x"));
        assert_eq!(e.reason_description(), Some("the password was changed"));
    }

    #[test]
    fn classify_transient_and_rate_limits() {
        for code in [1, 2, 4, 17, 32, 613] {
            let e = classify(
                Some(400),
                &no_headers(),
                &graph(code, None, "(#4) Application request limit reached"),
            );
            assert_eq!(e.class, ErrorClass::Transient, "code {code}");
        }
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("12"));
        h.insert(
            "x-app-usage",
            HeaderValue::from_static(r#"{"call_count":100,"total_time":50,"total_cputime":25}"#),
        );
        let e = classify(
            Some(429),
            &h,
            &graph(4, None, "(#4) Application request limit reached"),
        );
        assert_eq!((e.class, e.code.as_str()), (ErrorClass::Transient, "4"));
        assert_eq!(e.retry_after, Some(Duration::from_secs(12)));
        assert_eq!(e.usage().map(|u| u.call_count), Some(100));

        // Usage at 100% turns an otherwise-permanent error into a rate limit.
        let mut h = HeaderMap::new();
        h.insert(
            "x-business-use-case-usage",
            HeaderValue::from_static(
                r#"{"1784":[{"type":"instagram","call_count":100,"total_cputime":1,"total_time":1,"estimated_time_to_regain_access":5}]}"#,
            ),
        );
        let e = classify(Some(400), &h, &graph(100, None, "Unsupported get request."));
        assert_eq!(e.class, ErrorClass::Transient);
        assert_eq!(e.retry_after, Some(Duration::from_secs(300)));

        let body = r#"{"error":{"message":"Service temporarily unavailable","type":"OAuthException","is_transient":true,"code":2,"fbtrace_id":"x"}}"#;
        let e = classify(Some(503), &no_headers(), body);
        assert_eq!((e.class, e.code.as_str()), (ErrorClass::Transient, "2"));
        let e = classify(Some(500), &no_headers(), "upstream connect error");
        assert_eq!(
            (e.class, e.code.as_str()),
            (ErrorClass::Transient, "http_500")
        );
        let e = classify(None, &no_headers(), "");
        assert_eq!(e.class, ErrorClass::Transient);
    }

    #[test]
    fn classify_config_input_and_refresh_rules() {
        let e = classify(
            Some(400),
            &no_headers(),
            &graph(
                10,
                None,
                "(#10) Application does not have permission for this action",
            ),
        );
        // Code 10: permission not granted or removed (Graph API error handling).
        assert_eq!(
            (e.class, e.reason()),
            (ErrorClass::GrantDead, Some("permission_revoked"))
        );
        let e = classify(
            Some(400),
            &no_headers(),
            &graph(368, None, "The action attempted has been deemed abusive"),
        );
        assert_eq!(e.class, ErrorClass::Transient);
        assert_eq!(e.retry_after, Some(TEMPORARILY_BLOCKED_WAIT));
        let e = classify(
            Some(403),
            &no_headers(),
            &graph(
                200,
                None,
                "(#200) Requires instagram_business_basic permission",
            ),
        );
        assert_eq!(
            (e.class, e.reason()),
            (ErrorClass::GrantDead, Some("permission_revoked"))
        );
        let e = classify(
            Some(400),
            &no_headers(),
            &graph(1, None, "Error validating client secret."),
        );
        assert_eq!(e.class, ErrorClass::Config);
        let e = classify(
            Some(400),
            &no_headers(),
            &graph(
                101,
                None,
                "Error validating application. Invalid application ID.",
            ),
        );
        assert_eq!(e.class, ErrorClass::Config);
        let e = classify(
            Some(400),
            &no_headers(),
            &graph(
                100,
                None,
                "The access token cannot be refreshed yet: a long-lived token must be at least 24 hours old (this one is 5 seconds old).",
            ),
        );
        assert_eq!(
            (e.class, e.code.as_str()),
            (ErrorClass::NotRefreshableYet, "100")
        );
        let e = classify(
            Some(400),
            &no_headers(),
            &graph(100, None, "Invalid authorization code"),
        );
        assert_eq!(
            (e.class, e.reason()),
            (ErrorClass::GrantDead, Some("invalid_code"))
        );
        let e = classify(
            Some(400),
            &no_headers(),
            &graph(
                100,
                Some(33),
                "Unsupported get request. Object with ID '123' does not exist",
            ),
        );
        assert_eq!(
            (e.class, e.code.as_str()),
            (ErrorClass::InvalidInput, "100/33")
        );

        // Legacy api.instagram.com shape.
        let e = classify(
            Some(400),
            &no_headers(),
            r#"{"error_type": "OAuthException", "code": 400, "error_message": "Matching code was not found or was already used"}"#,
        );
        assert_eq!((e.class, e.code.as_str()), (ErrorClass::GrantDead, "400"));
        let e = classify(
            Some(400),
            &no_headers(),
            r#"{"error_type":"OAuthException","code":400,"error_message":"Error validating verification code. Please make sure your redirect_uri is identical to the one you used in the OAuth dialog request"}"#,
        );
        assert_eq!(e.class, ErrorClass::Config);
    }

    #[test]
    fn strips_code_suffix() {
        assert_eq!(clean_code("AQBx-abc#_"), "AQBx-abc");
        assert_eq!(clean_code(" AQBx-abc%23_ "), "AQBx-abc");
        assert_eq!(clean_code("AQBx-abc"), "AQBx-abc");
    }

    fn raw(body: &str) -> RawResponse {
        RawResponse {
            status: 200,
            headers: HeaderMap::new(),
            body: body.to_owned(),
            received_at: Utc::now(),
        }
    }

    #[test]
    fn wrapped_and_flat_exchange_responses() {
        let wrapped = parse_short_lived(&raw(
            r#"{"data":[{"access_token":"IGAAshort","user_id":"25025320","permissions":"instagram_business_basic,instagram_business_content_publish"}]}"#,
        ))
        .unwrap();
        assert_eq!(wrapped.user_id, "25025320");
        assert_eq!(wrapped.permissions.len(), 2);
        assert_eq!(wrapped.access_token.expose_secret(), "IGAAshort");
        let flat = parse_short_lived(&raw(
            r#"{"access_token":"IGAAflat","user_id":17841400000000000,"permissions":["instagram_business_basic"]}"#,
        ))
        .unwrap();
        assert_eq!(flat.user_id, "17841400000000000");
        assert_eq!(flat.permissions, vec!["instagram_business_basic"]);
        assert!(parse_short_lived(&raw(r#"{"data":[]}"#)).is_err());
        assert!(parse_short_lived(&raw(r#"{"user_id":1}"#)).is_err());

        let long = parse_long_lived(&raw(
            r#"{"access_token":"IGAAlong","token_type":"bearer","expires_in":5183944}"#,
        ))
        .unwrap();
        assert_eq!(
            long.expires_at - long.issued_at,
            chrono::Duration::seconds(5_183_944)
        );
    }

    #[test]
    fn local_refresh_rules() {
        let token = SecretString::from("IGAAlong".to_owned());
        let now = Utc::now();
        let scopes = Vec::new();
        let req = |issued_h: i64, expires_h: i64| RefreshRequest {
            token: &token,
            issued_at: now - chrono::Duration::hours(issued_h),
            expires_at: now + chrono::Duration::hours(expires_h),
            provider_account_id: "1",
            scopes: &scopes,
        };
        let e = check_refreshable(&req(1, 100), now).unwrap_err();
        assert_eq!(e.class, ErrorClass::NotRefreshableYet);
        assert_eq!(e.retry_after, Some(Duration::from_secs(23 * 3600)));
        let e = check_refreshable(&req(2000, -1), now).unwrap_err();
        assert_eq!(
            (e.class, e.code.as_str()),
            (ErrorClass::GrantDead, "expired")
        );
        check_refreshable(&req(25, 100), now).unwrap();
    }

    fn provider() -> InstagramProvider {
        let core = Arc::new(HttpCore::new(
            Platform::Instagram,
            reqwest::Client::new(),
            Arc::new(super::super::AppLimiter::new(
                Arc::new(super::super::RateLimits::local(std::time::Duration::ZERO)),
                Platform::Instagram,
                "test-app",
                super::super::RateQuota::unlimited(),
            )),
            super::super::CallSink::noop(),
        ));
        InstagramProvider::new(
            core,
            ClientCredentials::new("ig-app-1", "ig-secret-xyz"),
            &ProviderEndpoints::default(),
            super::super::DEFAULT_INSTAGRAM_GRAPH_VERSION,
        )
    }

    #[test]
    fn authorize_url_params() {
        let p = provider();
        let url = p
            .authorize_url(&AuthorizeRequest {
                redirect_uri: "https://app.example/cb/instagram".to_owned(),
                state: "st-9".to_owned(),
                scopes: vec![],
                pkce_challenge: None,
            })
            .unwrap();
        assert!(
            url.as_str()
                .starts_with("https://api.instagram.com/oauth/authorize?")
        );
        let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(q["client_id"], "ig-app-1");
        assert_eq!(q["redirect_uri"], "https://app.example/cb/instagram");
        assert_eq!(q["response_type"], "code");
        assert_eq!(
            q["scope"],
            "instagram_business_basic,instagram_business_content_publish"
        );
        assert_eq!(q["state"], "st-9");
        assert!(!url.as_str().contains("ig-secret-xyz"));
        assert!(!format!("{p:?}").contains("ig-secret-xyz"));
    }

    #[tokio::test]
    async fn revoke_is_a_noop() {
        let p = provider();
        assert!(!p.supports_revoke());
        p.revoke(&SecretString::from("t".to_owned())).await.unwrap();
    }
}
