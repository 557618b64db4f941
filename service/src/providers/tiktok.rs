//! TikTok Login Kit v2: authorize URL (with PKCE), code exchange, refresh (rotating refresh
//! tokens), revoke and user info.
//!
//! TikTok names the client id `client_key` and its token endpoint takes form posts, so the
//! calls are plain `reqwest` requests; PKCE values come from the `oauth2` crate
//! ([`super::new_pkce`]).

use std::sync::Arc;

use async_trait::async_trait;
use reqwest::header::HeaderMap;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use url::Url;

use super::error::{DEFAULT_RATE_LIMIT_WAIT, class_from_status, code_from_status};
use super::http::{HttpCore, RawResponse};
use super::limits::Priority;
use super::{
    AuthorizeRequest, ClientCredentials, ErrorClass, OAuthProvider, PkceEncoding, Platform,
    ProviderEndpoints, ProviderError, ProviderProfile, RefreshRequest, TikTokAppType, TokenSet,
    check_authorize_request, expiry, invalid_response, join, json_i64, json_string, permission_in,
    requested_scopes, retry_after_header, split_scopes,
};

/// Scopes requested by default: basic profile, username, and video publishing.
pub(crate) const DEFAULT_SCOPES: &[&str] = &[
    "user.info.basic",
    "user.info.profile",
    "video.publish",
    "video.upload",
];

/// User-info fields requested first (`username` needs `user.info.profile`).
const USER_FIELDS: &str = "open_id,union_id,avatar_url,display_name,username";
/// Fallback fields covered by `user.info.basic` alone.
const USER_FIELDS_BASIC: &str = "open_id,union_id,avatar_url,display_name";

/// Shared state of all handles of the TikTok provider.
struct Inner {
    core: Arc<HttpCore>,
    creds: ClientCredentials,
    auth_base: String,
    api_base: String,
    app_type: TikTokAppType,
}

/// The TikTok provider. Cloning shares the HTTP client, limiter and sink.
#[derive(Clone)]
pub struct TikTokProvider {
    inner: Arc<Inner>,
    priority: Priority,
}

impl std::fmt::Debug for TikTokProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TikTokProvider")
            .field("client_key", &self.inner.creds.client_id)
            .field("api_base", &self.inner.api_base)
            .field("priority", &self.priority)
            .finish_non_exhaustive()
    }
}

impl TikTokProvider {
    /// A provider on a shared core (see [`super::Providers::new`]); waits for rate capacity.
    pub(crate) fn new(
        core: Arc<HttpCore>,
        creds: ClientCredentials,
        endpoints: &ProviderEndpoints,
        app_type: TikTokAppType,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                core,
                creds,
                auth_base: endpoints.tiktok_auth_base.clone(),
                api_base: endpoints.tiktok_api_base.clone(),
                app_type,
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

    /// Posts to the token endpoint and parses the token response.
    async fn token_call(
        &self,
        operation: &'static str,
        form: &[(&str, &str)],
        previous: Option<&RefreshRequest<'_>>,
    ) -> Result<TokenSet, ProviderError> {
        let url = join(&self.inner.api_base, "/v2/oauth/token/")?;
        let request = self
            .inner
            .core
            .http
            .post(url)
            .header(reqwest::header::CACHE_CONTROL, "no-cache")
            .form(form);
        self.inner
            .core
            .execute(self.priority, operation, request, |raw| {
                parse_token_response(raw, previous)
            })
            .await
    }

    /// Calls `/v2/user/info/` with the given fields.
    async fn fetch_user(
        &self,
        access_token: &SecretString,
        fields: &str,
    ) -> Result<ProviderProfile, ProviderError> {
        let mut url = join(&self.inner.api_base, "/v2/user/info/")?;
        url.query_pairs_mut().append_pair("fields", fields);
        let request = self
            .inner
            .core
            .http
            .get(url)
            .bearer_auth(access_token.expose_secret());
        self.inner
            .core
            .execute(self.priority, "user_info", request, parse_user_info)
            .await
    }
}

#[async_trait]
impl OAuthProvider for TikTokProvider {
    fn platform(&self) -> Platform {
        Platform::TikTok
    }

    fn client_id(&self) -> &str {
        &self.inner.creds.client_id
    }

    fn default_scopes(&self) -> &'static [&'static str] {
        DEFAULT_SCOPES
    }

    /// Desktop apps: hex-encoded S256 (Login Kit for Desktop). Web apps: none; see
    /// [`TikTokAppType`] for the documentation behind both.
    fn pkce(&self) -> Option<PkceEncoding> {
        self.inner.app_type.pkce()
    }

    fn supports_revoke(&self) -> bool {
        true
    }

    /// `https://www.tiktok.com/v2/auth/authorize/?client_key&scope&response_type=code&
    /// redirect_uri&state[&code_challenge&code_challenge_method=S256]` (scopes comma-joined).
    fn authorize_url(&self, req: &AuthorizeRequest) -> Result<Url, ProviderError> {
        check_authorize_request(req)?;
        let scopes = requested_scopes(req, DEFAULT_SCOPES);
        let mut url = join(&self.inner.auth_base, "/v2/auth/authorize/")?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("client_key", &self.inner.creds.client_id)
                .append_pair("scope", &scopes.join(","))
                .append_pair("response_type", "code")
                .append_pair("redirect_uri", &req.redirect_uri)
                .append_pair("state", &req.state);
            // Web apps send no PKCE (see TikTokAppType), whatever the caller passed.
            if let Some(challenge) = req
                .pkce_challenge
                .as_ref()
                .filter(|_| self.pkce().is_some())
            {
                q.append_pair("code_challenge", challenge)
                    .append_pair("code_challenge_method", "S256");
            }
        }
        Ok(url)
    }

    async fn exchange_code(
        &self,
        code: &str,
        redirect_uri: &str,
        pkce_verifier: Option<&SecretString>,
    ) -> Result<TokenSet, ProviderError> {
        let creds = &self.inner.creds;
        let mut form = vec![
            ("client_key", creds.client_id.as_str()),
            ("client_secret", creds.client_secret.expose_secret()),
            ("code", code.trim()),
            ("grant_type", "authorization_code"),
            ("redirect_uri", redirect_uri),
        ];
        if let Some(verifier) = pkce_verifier {
            form.push(("code_verifier", verifier.expose_secret()));
        }
        self.token_call("exchange_code", &form, None).await
    }

    /// Refreshes with the refresh token. TikTok may rotate it: the returned set holds the
    /// new one (or the old one when the response repeats none). Presenting a rotated-out
    /// refresh token fails with `GrantDead` / `invalid_grant`.
    async fn refresh(&self, current: &RefreshRequest<'_>) -> Result<TokenSet, ProviderError> {
        let creds = &self.inner.creds;
        let form = [
            ("client_key", creds.client_id.as_str()),
            ("client_secret", creds.client_secret.expose_secret()),
            ("grant_type", "refresh_token"),
            ("refresh_token", current.token.expose_secret()),
        ];
        self.token_call("refresh", &form, Some(current)).await
    }

    /// Revokes the grant behind `access_token`. A token TikTok refuses (expired, unknown) is
    /// an error: the revocation is then unconfirmed.
    async fn revoke(&self, access_token: &SecretString) -> Result<(), ProviderError> {
        let creds = &self.inner.creds;
        let form = [
            ("client_key", creds.client_id.as_str()),
            ("client_secret", creds.client_secret.expose_secret()),
            ("token", access_token.expose_secret()),
        ];
        let url = join(&self.inner.api_base, "/v2/oauth/revoke/")?;
        let request = self.inner.core.http.post(url).form(&form);
        let result = self
            .inner
            .core
            .execute(
                self.priority,
                "revoke",
                request,
                |raw| match serde_json::from_str::<Value>(&raw.body) {
                    Ok(v) if raw.is_success() && !has_error(&v) => Ok(()),
                    _ if raw.is_success() && raw.body.trim().is_empty() => Ok(()),
                    _ => Err(classify(Some(raw.status), &raw.headers, &raw.body)),
                },
            )
            .await;
        // A dead-grant answer does not prove the grant is gone (an expired access token is
        // refused the same way): the caller records "unconfirmed", never "revoked".
        result
    }

    /// Reads the profile. Asks for `username` first; when the grant lacks
    /// `user.info.profile`, retries once with the basic fields.
    ///
    /// `access_token_invalid` is classified `GrantDead`; TikTok also answers it for an
    /// expired access token, so a caller holding a live refresh token should refresh first.
    async fn user_info(
        &self,
        access_token: &SecretString,
    ) -> Result<ProviderProfile, ProviderError> {
        match self.fetch_user(access_token, USER_FIELDS).await {
            Err(e) if e.code == "scope_not_authorized" => self
                .fetch_user(access_token, USER_FIELDS_BASIC)
                .await
                .map_err(|e| e.or_missing_permission("user.info.basic")),
            other => other,
        }
    }
}

/// Whether a TikTok JSON body carries an error (`"error": "<code>"` or
/// `"error": {"code": "<not ok>"}`).
fn has_error(v: &Value) -> bool {
    match v.get("error") {
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Object(o)) => o
            .get("code")
            .and_then(Value::as_str)
            .is_some_and(|c| !c.is_empty() && c != "ok"),
        _ => false,
    }
}

/// Parses a token response (code exchange or refresh). `previous` fills in what a refresh
/// response may omit.
pub(super) fn parse_token_response(
    raw: &RawResponse,
    previous: Option<&RefreshRequest<'_>>,
) -> Result<TokenSet, ProviderError> {
    if !raw.is_success() {
        return Err(classify(Some(raw.status), &raw.headers, &raw.body));
    }
    let v: Value = serde_json::from_str(&raw.body)
        .map_err(|_| invalid_response("token response is not JSON"))?;
    if has_error(&v) {
        return Err(classify(Some(raw.status), &raw.headers, &raw.body));
    }
    let obj = v
        .get("data")
        .filter(|d| d.get("access_token").is_some())
        .unwrap_or(&v);
    let access_token = obj
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| invalid_response("missing access_token"))?;
    let expires_in =
        json_i64(obj.get("expires_in")).ok_or_else(|| invalid_response("missing expires_in"))?;
    let refresh_token = obj
        .get("refresh_token")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(|s| SecretString::from(s.to_owned()))
        .or_else(|| previous.map(|p| p.token.clone()));
    let refresh_expires_at = json_i64(obj.get("refresh_expires_in"))
        .map(|secs| expiry(raw.received_at, secs))
        .transpose()?;
    let scopes = obj
        .get("scope")
        .and_then(Value::as_str)
        .map(split_scopes)
        .or_else(|| previous.map(|p| p.scopes.to_vec()))
        .unwrap_or_default();
    let provider_account_id = json_string(obj.get("open_id"))
        .or_else(|| previous.map(|p| p.provider_account_id.to_owned()))
        .ok_or_else(|| invalid_response("missing open_id"))?;
    Ok(TokenSet {
        access_token: SecretString::from(access_token.to_owned()),
        refresh_token,
        expires_at: expiry(raw.received_at, expires_in)?,
        refresh_expires_at,
        scopes,
        provider_account_id,
        issued_at: raw.received_at,
    })
}

/// Parses `/v2/user/info/`.
pub(super) fn parse_user_info(raw: &RawResponse) -> Result<ProviderProfile, ProviderError> {
    if !raw.is_success() {
        return Err(classify(Some(raw.status), &raw.headers, &raw.body));
    }
    let v: Value =
        serde_json::from_str(&raw.body).map_err(|_| invalid_response("user info is not JSON"))?;
    if has_error(&v) {
        return Err(classify(Some(raw.status), &raw.headers, &raw.body));
    }
    let user = v
        .pointer("/data/user")
        .ok_or_else(|| invalid_response("missing data.user"))?;
    let text = |k: &str| json_string(user.get(k));
    Ok(ProviderProfile {
        provider_account_id: text("open_id").ok_or_else(|| invalid_response("missing open_id"))?,
        username: text("username"),
        display_name: text("display_name"),
        avatar_url: text("avatar_url"),
    })
}

/// Class and dead-grant reason of a TikTok error code.
fn class_for_code(
    code: &str,
    message: &str,
    status: Option<u16>,
) -> (ErrorClass, Option<&'static str>) {
    let msg = message.to_ascii_lowercase();
    match code {
        "invalid_grant" => {
            let reason = if msg.contains("already been used") || msg.contains("reuse") {
                "refresh_token_reused"
            } else if msg.contains("revoked") {
                "revoked"
            } else if msg.contains("expired") {
                "expired"
            } else {
                "invalid_token"
            };
            (ErrorClass::GrantDead, Some(reason))
        }
        "access_token_invalid" => {
            let reason = if msg.contains("revoked") {
                "revoked"
            } else if msg.contains("expired") {
                "expired"
            } else {
                "invalid_token"
            };
            (ErrorClass::GrantDead, Some(reason))
        }
        "scope_not_authorized" => (ErrorClass::GrantDead, Some("scope_not_authorized")),
        "invalid_client"
        | "unauthorized_client"
        | "unsupported_grant_type"
        | "invalid_scope"
        | "scope_permission_missed" => (ErrorClass::Config, None),
        "invalid_request" => {
            // "Code verifier or code challenge is invalid": the PKCE rules of the
            // configured app type do not match the portal (TOKENWARDEN_TIKTOK_APP_TYPE).
            if [
                "redirect",
                "client_key",
                "client_secret",
                "code verifier",
                "code challenge",
            ]
            .iter()
            .any(|w| msg.contains(w))
            {
                (ErrorClass::Config, None)
            } else {
                (ErrorClass::InvalidInput, None)
            }
        }
        "invalid_params" | "unsupported_response_type" => (ErrorClass::InvalidInput, None),
        "rate_limit_exceeded" | "internal_error" | "server_error" | "temporarily_unavailable" => {
            (ErrorClass::Transient, None)
        }
        _ => (class_from_status(status), None),
    }
}

/// Classifies a TikTok error response: OAuth errors `{"error","error_description","log_id"}`
/// and API errors `{"error":{"code","message","log_id"}}`, else by HTTP status. `status`
/// `None` means no response. 429 and 5xx are always `Transient`; `Retry-After` is honoured
/// (60 s assumed for a rate limit without one).
pub(crate) fn classify(status: Option<u16>, headers: &HeaderMap, body: &str) -> ProviderError {
    let v: Option<Value> = serde_json::from_str(body).ok();
    let text = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let (code, message, log_id) = match v.as_ref() {
        Some(root) => match root.get("error") {
            Some(Value::String(e)) => (
                Some(e.clone()),
                text(root.get("error_description")),
                text(root.get("log_id")),
            ),
            Some(Value::Object(o)) => (
                text(o.get("code")),
                text(o.get("message")),
                text(o.get("log_id")),
            ),
            _ => (None, None, text(root.get("log_id"))),
        },
        None => (None, None, None),
    };
    let code = code.filter(|c| c != "ok");
    let log_id = log_id.or_else(|| {
        headers
            .get("x-tt-logid")
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned)
    });
    let (mut class, reason) = match code.as_deref() {
        Some(c) => class_for_code(c, message.as_deref().unwrap_or(""), status),
        None => (class_from_status(status), None),
    };
    let overloaded = status.is_some_and(|s| s == 429 || s >= 500);
    if overloaded && class != ErrorClass::GrantDead {
        class = ErrorClass::Transient;
    }
    let rate_limited = status == Some(429) || code.as_deref() == Some("rate_limit_exceeded");
    let retry_after = match class {
        ErrorClass::Transient => {
            retry_after_header(headers).or_else(|| rate_limited.then_some(DEFAULT_RATE_LIMIT_WAIT))
        }
        _ => None,
    };
    let message = message.unwrap_or_else(|| match status {
        Some(s) => format!("TikTok returned HTTP {s}"),
        None => "no response from TikTok".to_owned(),
    });
    let mut err = ProviderError::new(
        class,
        code.unwrap_or_else(|| code_from_status(status)),
        message,
    )
    .with_retry_after(retry_after)
    .with_status(status)
    .with_reason(reason);
    if err.reason == Some("scope_not_authorized") {
        let permission = permission_in(&err.message);
        err = err.with_missing_permission(permission);
    }
    err.log_id = log_id;
    err
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderValue, RETRY_AFTER};
    use std::time::Duration;

    fn no_headers() -> HeaderMap {
        HeaderMap::new()
    }

    #[test]
    fn classify_oauth_errors() {
        let e = classify(
            Some(400),
            &no_headers(),
            r#"{"error":"invalid_grant","error_description":"Refresh token is invalid or expired.","log_id":"20230714083023D8E9A1D6F3E0C4060C1E"}"#,
        );
        assert_eq!(e.class, ErrorClass::GrantDead);
        assert_eq!(e.code, "invalid_grant");
        assert_eq!(e.reason(), Some("expired"));
        assert_eq!(
            e.log_id.as_deref(),
            Some("20230714083023D8E9A1D6F3E0C4060C1E")
        );
        assert_eq!(e.http_status, Some(400));
        assert_eq!(e.retry_after, None);

        // TikTok sometimes answers token errors with HTTP 200.
        let e = classify(
            Some(200),
            &no_headers(),
            r#"{"error":"invalid_grant","error_description":"Authorization code is expired.","log_id":"2022"}"#,
        );
        assert_eq!(e.class, ErrorClass::GrantDead);

        let e = classify(
            Some(400),
            &no_headers(),
            r#"{"error":"invalid_grant","error_description":"Refresh token has already been used; the authorization has been revoked.","log_id":"x"}"#,
        );
        assert_eq!(e.reason(), Some("refresh_token_reused"));

        for body in [
            r#"{"error":"invalid_client","error_description":"Client key or secret is incorrect.","log_id":"x"}"#,
            r#"{"error":"invalid_request","error_description":"Redirect URI is not matched with the registered one.","log_id":"x"}"#,
            r#"{"error":"invalid_scope","error_description":"The scope is not authorized for this client.","log_id":"x"}"#,
            r#"{"error":"unsupported_grant_type","error_description":"grant_type must be authorization_code or refresh_token.","log_id":"x"}"#,
        ] {
            assert_eq!(
                classify(Some(400), &no_headers(), body).class,
                ErrorClass::Config,
                "{body}"
            );
        }
        let e = classify(
            Some(400),
            &no_headers(),
            r#"{"error":"invalid_request","error_description":"The request parameters are malformed.","log_id":"x"}"#,
        );
        assert_eq!(e.class, ErrorClass::InvalidInput);
    }

    #[test]
    fn classify_api_errors() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("30"));
        let e = classify(
            Some(429),
            &h,
            r#"{"error":{"code":"rate_limit_exceeded","message":"API rate limit exceeded, please retry later.","log_id":"202206221854370101130062072500FFA2"}}"#,
        );
        assert_eq!(e.class, ErrorClass::Transient);
        assert_eq!(e.code, "rate_limit_exceeded");
        assert_eq!(e.retry_after, Some(Duration::from_secs(30)));
        // Without Retry-After a default wait is assumed.
        let e = classify(Some(429), &no_headers(), "");
        assert_eq!(
            (e.class, e.code.as_str()),
            (ErrorClass::Transient, "http_429")
        );
        assert!(e.retry_after.is_some());

        let e = classify(
            Some(401),
            &no_headers(),
            r#"{"data":{},"error":{"code":"access_token_invalid","message":"The access token is invalid or not found in the request.","log_id":"20220829194722CBE87ED59D524E01D33F"}}"#,
        );
        assert_eq!(
            (e.class, e.code.as_str()),
            (ErrorClass::GrantDead, "access_token_invalid")
        );
        assert_eq!(e.reason(), Some("invalid_token"));

        let e = classify(
            Some(401),
            &no_headers(),
            r#"{"data":{},"error":{"code":"scope_not_authorized","message":"The user did not authorize the scope required for completing this request.","log_id":"x"}}"#,
        );
        assert_eq!(e.class, ErrorClass::GrantDead);
        assert_eq!(e.reason(), Some("scope_not_authorized"));

        let e = classify(
            Some(400),
            &no_headers(),
            r#"{"data":{},"error":{"code":"invalid_params","message":"The fields parameter is required.","log_id":"x"}}"#,
        );
        assert_eq!(e.class, ErrorClass::InvalidInput);

        let e = classify(
            Some(503),
            &no_headers(),
            r#"{"error":{"code":"internal_error","message":"Something went wrong. Please try again later.","log_id":"x"}}"#,
        );
        assert_eq!(
            (e.class, e.code.as_str()),
            (ErrorClass::Transient, "internal_error")
        );
        let e = classify(Some(502), &no_headers(), "<html>Bad Gateway</html>");
        assert_eq!(
            (e.class, e.code.as_str()),
            (ErrorClass::Transient, "http_502")
        );
        assert_eq!(e.message, "TikTok returned HTTP 502");
        // A success envelope is not an error code.
        let e = classify(
            Some(404),
            &no_headers(),
            r#"{"data":{},"error":{"code":"ok","message":"","log_id":"x"}}"#,
        );
        assert_eq!((e.class, e.code.as_str()), (ErrorClass::Config, "http_404"));
    }

    #[test]
    fn classify_never_echoes_tokens() {
        let e = classify(
            Some(400),
            &no_headers(),
            r#"{"error":"invalid_grant","error_description":"Refresh token rft.9f8e7d6c5b4a39281706f5e4d3c2b1a0!1234.va is invalid","log_id":"x"}"#,
        );
        assert!(!e.to_string().contains("9f8e7d6c5b4a"), "{e}");
    }

    fn raw(status: u16, body: &str) -> RawResponse {
        RawResponse {
            status,
            headers: HeaderMap::new(),
            body: body.to_owned(),
            received_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn a_bare_401_or_a_broken_success_body_is_never_a_dead_grant() {
        // A proxy or WAF answering 401 without TikTok's error body.
        for body in ["", "<html>401 Unauthorized</html>", "{}"] {
            let e = classify(Some(401), &no_headers(), body);
            assert_eq!(e.class, ErrorClass::Transient, "{body:?}");
        }
        // TikTok's own code still kills the grant.
        let e = classify(
            Some(400),
            &no_headers(),
            r#"{"error":"invalid_grant","error_description":"Refresh token is invalid."}"#,
        );
        assert_eq!(e.class, ErrorClass::GrantDead);
        // A 200 whose body cannot be read: the rotation may have happened; retry, never
        // ask for a reconnect.
        for body in ["", "not json", r#"{"data":{}}"#, r#"{"access_token":"x"}"#] {
            let e = parse_token_response(&raw(200, body), None).unwrap_err();
            assert_eq!(e.class, ErrorClass::Transient, "{body:?}");
        }
    }

    #[test]
    fn token_response_parsing() {
        let r = raw(
            200,
            r#"{"access_token":"act.example","expires_in":86400,"open_id":"open-1","refresh_expires_in":31536000,"refresh_token":"rft.example","scope":"user.info.basic,video.publish","token_type":"Bearer"}"#,
        );
        let t = parse_token_response(&r, None).unwrap();
        assert_eq!(t.access_token.expose_secret(), "act.example");
        assert_eq!(
            t.refresh_token.as_ref().unwrap().expose_secret(),
            "rft.example"
        );
        assert_eq!(
            t.expires_at - t.issued_at,
            chrono::Duration::seconds(86_400)
        );
        assert_eq!(
            t.refresh_expires_at.unwrap() - t.issued_at,
            chrono::Duration::seconds(31_536_000)
        );
        assert_eq!(t.scopes, vec!["user.info.basic", "video.publish"]);
        assert_eq!(t.provider_account_id, "open-1");

        // A refresh response without refresh token / open_id keeps the previous values.
        let old = SecretString::from("rft.old".to_owned());
        let scopes = vec!["user.info.basic".to_owned()];
        let prev = RefreshRequest {
            token: &old,
            issued_at: chrono::Utc::now(),
            expires_at: chrono::Utc::now(),
            provider_account_id: "open-1",
            scopes: &scopes,
        };
        let t = parse_token_response(
            &raw(
                200,
                r#"{"data":{"access_token":"act.2","expires_in":3600}}"#,
            ),
            Some(&prev),
        )
        .unwrap();
        assert_eq!(t.refresh_token.unwrap().expose_secret(), "rft.old");
        assert_eq!(t.provider_account_id, "open-1");
        assert_eq!(t.scopes, scopes);

        let e = parse_token_response(&raw(200, r#"{"expires_in":1}"#), None).unwrap_err();
        assert_eq!(e.code, "invalid_response");
        let e = parse_token_response(
            &raw(
                200,
                r#"{"error":"invalid_grant","error_description":"x","log_id":"y"}"#,
            ),
            None,
        )
        .unwrap_err();
        assert_eq!(e.class, ErrorClass::GrantDead);
    }

    #[test]
    fn user_info_parsing() {
        let p = parse_user_info(&raw(
            200,
            r#"{"data":{"user":{"open_id":"o1","union_id":"u1","avatar_url":"https://a/b.jpeg","display_name":"Alice","username":"alice"}},"error":{"code":"ok","message":"","log_id":"x"}}"#,
        ))
        .unwrap();
        assert_eq!(p.provider_account_id, "o1");
        assert_eq!(p.username.as_deref(), Some("alice"));
        assert_eq!(p.display_name.as_deref(), Some("Alice"));
        assert_eq!(p.avatar_url.as_deref(), Some("https://a/b.jpeg"));
    }

    fn provider() -> TikTokProvider {
        let core = Arc::new(HttpCore::new(
            Platform::TikTok,
            reqwest::Client::new(),
            Arc::new(super::super::AppLimiter::new(
                Arc::new(super::super::RateLimits::local(std::time::Duration::ZERO)),
                Platform::TikTok,
                "test-app",
                super::super::RateQuota::unlimited(),
            )),
            super::super::CallSink::noop(),
        ));
        TikTokProvider::new(
            core,
            ClientCredentials::new("ck-123", "tiktok-secret-xyz"),
            &ProviderEndpoints::default(),
            TikTokAppType::Desktop,
        )
    }

    #[test]
    fn authorize_url_params() {
        let p = provider();
        let url = p
            .authorize_url(&AuthorizeRequest {
                redirect_uri: "https://app.example/cb/tiktok".to_owned(),
                state: "st-1".to_owned(),
                scopes: vec![],
                pkce_challenge: Some(
                    "13d31e961a1ad8ec2f16b10c4c982e0876a878ad6df144566ee1894acb70f9c3".to_owned(),
                ),
            })
            .unwrap();
        assert!(
            url.as_str()
                .starts_with("https://www.tiktok.com/v2/auth/authorize/?")
        );
        let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(q["client_key"], "ck-123");
        assert_eq!(
            q["scope"],
            "user.info.basic,user.info.profile,video.publish,video.upload"
        );
        assert_eq!(q["response_type"], "code");
        assert_eq!(q["redirect_uri"], "https://app.example/cb/tiktok");
        assert_eq!(q["state"], "st-1");
        assert_eq!(
            q["code_challenge"],
            "13d31e961a1ad8ec2f16b10c4c982e0876a878ad6df144566ee1894acb70f9c3"
        );
        assert_eq!(q["code_challenge_method"], "S256");
        assert!(!q.contains_key("client_id"));
        assert!(!url.as_str().contains("tiktok-secret-xyz"));

        let url = p
            .authorize_url(&AuthorizeRequest {
                redirect_uri: "https://app.example/cb".to_owned(),
                state: "s".to_owned(),
                scopes: vec!["user.info.basic".to_owned()],
                pkce_challenge: None,
            })
            .unwrap();
        let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(q["scope"], "user.info.basic");
        assert!(!q.contains_key("code_challenge"));

        let bad = p.authorize_url(&AuthorizeRequest {
            redirect_uri: "/relative".to_owned(),
            state: "s".to_owned(),
            scopes: vec![],
            pkce_challenge: None,
        });
        assert_eq!(bad.unwrap_err().class, ErrorClass::InvalidInput);
        assert!(!format!("{p:?}").contains("tiktok-secret-xyz"));
    }
}
