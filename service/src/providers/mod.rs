//! OAuth providers (TikTok, Instagram): one [`OAuthProvider`] trait, one file per platform.
//!
//! [`Providers`] is the registry the API and the jobs use. Every provider HTTP call:
//! - goes through one shared `reqwest::Client` (timeout from [`ProviderSettings`], no
//!   redirects followed);
//! - takes capacity from the app's rate limits ([`AppLimiter`], see [`limits`]): one budget
//!   per platform + app shared by every process (Redis) plus the per-endpoint limits the
//!   platform documents. Handles from [`Providers::get`] are background work and wait as
//!   long as it takes; handles from [`Providers::get_interactive`] (a person is waiting)
//!   wait up to [`RateLimits::interactive_wait`], then fail with `Transient` /
//!   `rate_limited_local` and a `retry_after` before any HTTP request;
//! - is recorded as a [`ProviderCall`] on the [`CallSink`] with `try_send` (never blocks;
//!   drops are counted);
//! - fails with a classified [`ProviderError`] whose message never contains secrets.
//!
//! Calls refused locally (rate limit, Instagram refresh rules) make no HTTP request and are
//! not recorded.

/// The provider call log and its statistics.
pub mod calls;

mod error;
#[cfg(test)]
mod fuzz;
mod http;
pub mod instagram;
/// Rate limits per app and endpoint, shared through Redis in production.
pub mod limits;
pub mod tiktok;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use url::Url;

pub use self::error::{ErrorClass, ErrorExtras, ProviderError, UsageReport};
pub(crate) use self::error::{
    describe_reason, permission_in, retry_after_header, sanitize_message,
};
pub use self::http::{CallSink, ProviderCall, call_sink};
pub use self::instagram::InstagramProvider;
pub use self::limits::{AppLimiter, Endpoint, Priority, RateLimits, RateQuota};
pub use self::tiktok::TikTokProvider;
pub use crate::domain::Platform;

/// Base URLs of the provider endpoints (real hosts by default, or the sandbox).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderEndpoints {
    /// TikTok authorization page host (`/v2/auth/authorize/`).
    pub tiktok_auth_base: String,
    /// TikTok Open API host (`/v2/oauth/token/`, `/v2/oauth/revoke/`, `/v2/user/info/`).
    pub tiktok_api_base: String,
    /// Instagram OAuth host (`/oauth/authorize`, `/oauth/access_token`).
    pub instagram_auth_base: String,
    /// Instagram Graph host (`/access_token`, `/refresh_access_token`, `/me`).
    pub instagram_graph_base: String,
}

impl Default for ProviderEndpoints {
    fn default() -> Self {
        Self {
            tiktok_auth_base: "https://www.tiktok.com".to_owned(),
            tiktok_api_base: "https://open.tiktokapis.com".to_owned(),
            instagram_auth_base: "https://api.instagram.com".to_owned(),
            instagram_graph_base: "https://graph.instagram.com".to_owned(),
        }
    }
}

impl ProviderEndpoints {
    /// Endpoints of a sandbox mounted at `base` (e.g. `http://127.0.0.1:8080/sandbox`).
    pub fn sandbox(base: &str) -> Self {
        let base = base.trim_end_matches('/');
        Self {
            tiktok_auth_base: format!("{base}/tiktok/auth"),
            tiktok_api_base: format!("{base}/tiktok/api"),
            instagram_auth_base: format!("{base}/instagram/auth"),
            instagram_graph_base: format!("{base}/instagram/graph"),
        }
    }

    /// Checks that every base is an absolute http(s) URL.
    pub fn validate(&self) -> Result<(), ProviderError> {
        for (name, value) in [
            ("tiktok_auth_base", &self.tiktok_auth_base),
            ("tiktok_api_base", &self.tiktok_api_base),
            ("instagram_auth_base", &self.instagram_auth_base),
            ("instagram_graph_base", &self.instagram_graph_base),
        ] {
            let ok = Url::parse(value)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host());
            if !ok {
                return Err(ProviderError::config(
                    "invalid_endpoint",
                    format!("{name} is not an absolute http(s) URL"),
                ));
            }
        }
        Ok(())
    }
}

/// Joins a base URL and an absolute path.
pub(crate) fn join(base: &str, path: &str) -> Result<Url, ProviderError> {
    Url::parse(&format!("{}{path}", base.trim_end_matches('/')))
        .map_err(|_| ProviderError::config("invalid_endpoint", "invalid provider endpoint URL"))
}

/// App credentials of one platform (TikTok calls the id `client_key`).
#[derive(Debug, Clone)]
pub struct ClientCredentials {
    /// Public client id / client key.
    pub client_id: String,
    /// Client secret (redacted in `Debug`).
    pub client_secret: SecretString,
}

impl ClientCredentials {
    /// Credentials from an id and a secret.
    pub fn new(client_id: impl Into<String>, client_secret: impl Into<String>) -> Self {
        Self {
            client_id: client_id.into(),
            client_secret: SecretString::from(client_secret.into()),
        }
    }
}

/// How a TikTok app is registered in the developer portal; decides PKCE.
///
/// TikTok documents PKCE only for desktop and mobile apps: Login Kit for Desktop sends
/// `code_challenge` + `code_challenge_method=S256` where the challenge is the **hex**
/// encoding of SHA-256(verifier) ("You must use hex encoding of SHA256 to generate the code
/// challenge", developers.tiktok.com/doc/login-kit-desktop), and the token endpoint marks
/// `code_verifier` "Required for mobile and desktop app only"
/// (developers.tiktok.com/doc/oauth-user-access-token-management). Login Kit for Web lists
/// `client_key`, `scope`, `response_type`, `redirect_uri` and `state` only: a web app is a
/// confidential client (the code exchange carries the client secret) and sends no PKCE.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum TikTokAppType {
    /// Login Kit for Web: no PKCE (not documented for web apps); `state` guards the flow.
    #[default]
    Web,
    /// Login Kit for Desktop: PKCE with the hex-encoded SHA-256 challenge.
    Desktop,
}

impl TikTokAppType {
    /// The PKCE challenge encoding TikTok expects from this app type, if any.
    pub fn pkce(self) -> Option<PkceEncoding> {
        match self {
            TikTokAppType::Web => None,
            TikTokAppType::Desktop => Some(PkceEncoding::Hex),
        }
    }
}

/// Instagram Graph API version used for versioned calls (`/me`), as Meta documents
/// `https://graph.instagram.com/v26.0/me` (developers.facebook.com/docs/instagram-platform/reference/me).
pub const DEFAULT_INSTAGRAM_GRAPH_VERSION: &str = "v26.0";

/// HTTP and rate-limit settings shared by the providers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderSettings {
    /// Total timeout of one provider HTTP call.
    pub timeout: Duration,
    /// The TikTok app's budget, for the whole deployment (0 = unlimited, which also switches
    /// off the documented per-endpoint limits).
    pub tiktok_rate_limit: RateQuota,
    /// The Instagram app's budget, for the whole deployment (0 = unlimited).
    pub instagram_rate_limit: RateQuota,
    /// How the TikTok app is registered (decides PKCE).
    pub tiktok_app_type: TikTokAppType,
    /// Graph API version of versioned Instagram calls (`v26.0`).
    pub instagram_graph_version: String,
}

impl Default for ProviderSettings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            tiktok_rate_limit: RateQuota::per_second(10),
            instagram_rate_limit: RateQuota::per_second(5),
            tiktok_app_type: TikTokAppType::Web,
            instagram_graph_version: DEFAULT_INSTAGRAM_GRAPH_VERSION.to_owned(),
        }
    }
}

impl ProviderSettings {
    /// The app budget of one platform.
    pub fn rate_limit(&self, platform: Platform) -> RateQuota {
        match platform {
            Platform::TikTok => self.tiktok_rate_limit,
            Platform::Instagram => self.instagram_rate_limit,
        }
    }
}

/// Tokens returned by a code exchange or a refresh. `Debug` redacts the tokens.
///
/// For Instagram, `refresh_token` is `None`: the long-lived access token is refreshed
/// itself, until `expires_at` (also given as `refresh_expires_at`).
#[derive(Debug, Clone)]
pub struct TokenSet {
    /// Access token.
    pub access_token: SecretString,
    /// Refresh token (TikTok; rotated on refresh).
    pub refresh_token: Option<SecretString>,
    /// Access-token expiry, from `expires_in` at the time of the response.
    pub expires_at: DateTime<Utc>,
    /// Last moment a refresh can succeed, when the provider says.
    pub refresh_expires_at: Option<DateTime<Utc>>,
    /// Granted scopes / permissions.
    pub scopes: Vec<String>,
    /// Provider account id (TikTok `open_id`, Instagram app-scoped `user_id`).
    pub provider_account_id: String,
    /// When the provider response was received.
    pub issued_at: DateTime<Utc>,
}

impl TokenSet {
    /// The refresh input for these tokens (refresh token, else the access token).
    pub fn refresh_request(&self) -> RefreshRequest<'_> {
        RefreshRequest {
            token: self.refresh_token.as_ref().unwrap_or(&self.access_token),
            issued_at: self.issued_at,
            expires_at: self.expires_at,
            provider_account_id: &self.provider_account_id,
            scopes: &self.scopes,
        }
    }
}

/// What a refresh needs to know about the current tokens.
#[derive(Debug, Clone, Copy)]
pub struct RefreshRequest<'a> {
    /// TikTok: the refresh token. Instagram: the long-lived access token.
    pub token: &'a SecretString,
    /// When the current token was issued (Instagram refuses refreshes under 24 hours).
    pub issued_at: DateTime<Utc>,
    /// When the current access token expires (Instagram cannot refresh expired tokens).
    pub expires_at: DateTime<Utc>,
    /// Provider account id, kept when the refresh response does not repeat it.
    pub provider_account_id: &'a str,
    /// Current scopes, kept when the refresh response does not repeat them.
    pub scopes: &'a [String],
}

/// Parameters of an authorization URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizeRequest {
    /// Where the provider sends the user back (must match the app settings exactly).
    pub redirect_uri: String,
    /// Opaque CSRF state (see [`new_state`]).
    pub state: String,
    /// Scopes to request; empty = the provider's default scopes.
    pub scopes: Vec<String>,
    /// PKCE S256 challenge (see [`new_pkce`]); ignored by providers without PKCE.
    pub pkce_challenge: Option<String>,
}

/// How the S256 challenge is encoded from SHA-256(verifier).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PkceEncoding {
    /// RFC 7636 §4.2: BASE64URL without padding (43 characters).
    Base64Url,
    /// TikTok desktop: lowercase hex (64 characters).
    Hex,
}

/// The S256 challenge of `verifier` in `encoding`.
pub fn pkce_challenge(verifier: &str, encoding: PkceEncoding) -> String {
    use base64::Engine as _;
    let digest = ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes());
    match encoding {
        PkceEncoding::Base64Url => {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref())
        }
        PkceEncoding::Hex => hex::encode(digest.as_ref()),
    }
}

/// A PKCE pair: the challenge goes into the authorize URL, the verifier into the exchange.
#[derive(Debug)]
pub struct PkcePair {
    /// S256 code challenge.
    pub challenge: String,
    /// Code verifier (keep secret until the exchange).
    pub verifier: SecretString,
}

/// New random PKCE S256 pair with the RFC 7636 (base64url) challenge.
pub fn new_pkce() -> PkcePair {
    new_pkce_with(PkceEncoding::Base64Url)
}

/// New random PKCE S256 pair (verifier from the `oauth2` crate) with the challenge in
/// `encoding`.
pub fn new_pkce_with(encoding: PkceEncoding) -> PkcePair {
    let (_, verifier) = oauth2::PkceCodeChallenge::new_random_sha256();
    PkcePair {
        challenge: pkce_challenge(verifier.secret(), encoding),
        verifier: SecretString::from(verifier.secret().to_owned()),
    }
}

/// New random CSRF `state` value (via the `oauth2` crate).
pub fn new_state() -> String {
    oauth2::CsrfToken::new_random().secret().to_owned()
}

/// Public profile of a connected account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderProfile {
    /// Provider account id (TikTok `open_id`, Instagram app-scoped id).
    pub provider_account_id: String,
    /// Handle, without `@`.
    pub username: Option<String>,
    /// Display name.
    pub display_name: Option<String>,
    /// Avatar URL.
    pub avatar_url: Option<String>,
}

/// One OAuth platform. Object safe: used as `Arc<dyn OAuthProvider>`.
#[async_trait]
pub trait OAuthProvider: Send + Sync + std::fmt::Debug {
    /// The platform.
    fn platform(&self) -> Platform;

    /// The app's client id / client key.
    fn client_id(&self) -> &str;

    /// Scopes requested when [`AuthorizeRequest::scopes`] is empty.
    fn default_scopes(&self) -> &'static [&'static str];

    /// The PKCE challenge encoding the authorize URL and the exchange use; `None` = no PKCE.
    fn pkce(&self) -> Option<PkceEncoding>;

    /// Whether the provider has a revocation endpoint.
    fn supports_revoke(&self) -> bool;

    /// The URL to send the user to.
    fn authorize_url(&self, req: &AuthorizeRequest) -> Result<Url, ProviderError>;

    /// Exchanges an authorization code for tokens.
    async fn exchange_code(
        &self,
        code: &str,
        redirect_uri: &str,
        pkce_verifier: Option<&SecretString>,
    ) -> Result<TokenSet, ProviderError>;

    /// Refreshes the tokens.
    async fn refresh(&self, current: &RefreshRequest<'_>) -> Result<TokenSet, ProviderError>;

    /// Revokes the grant behind an access token (no-op where unsupported).
    async fn revoke(&self, access_token: &SecretString) -> Result<(), ProviderError>;

    /// Reads the profile of the token's account.
    async fn user_info(
        &self,
        access_token: &SecretString,
    ) -> Result<ProviderProfile, ProviderError>;

    /// Latest Meta usage report seen (Instagram), if any.
    fn last_usage(&self) -> Option<UsageReport> {
        None
    }
}

/// Both handles of one configured platform.
#[derive(Debug)]
struct Registered {
    creds: ClientCredentials,
    background: Arc<dyn OAuthProvider>,
    interactive: Arc<dyn OAuthProvider>,
    limiter: Arc<AppLimiter>,
}

/// Registry of the configured providers.
#[derive(Debug)]
pub struct Providers {
    tiktok: Option<Registered>,
    instagram: Option<Registered>,
    sink: CallSink,
    endpoints: ProviderEndpoints,
}

impl Providers {
    /// Builds the providers of the platforms that have credentials, sharing one HTTP client,
    /// with rate limits counted in this process (interactive calls wait up to 10 s).
    pub fn new(
        settings: ProviderSettings,
        endpoints: ProviderEndpoints,
        tiktok: Option<ClientCredentials>,
        instagram: Option<ClientCredentials>,
        sink: CallSink,
    ) -> Result<Self, ProviderError> {
        let limits = Arc::new(RateLimits::local(Duration::from_secs(10)));
        Self::with_limits(settings, endpoints, tiktok, instagram, sink, limits)
    }

    /// Like [`Providers::new`], with the rate limits counted in `limits` (shared through
    /// Redis in production).
    pub fn with_limits(
        settings: ProviderSettings,
        endpoints: ProviderEndpoints,
        tiktok: Option<ClientCredentials>,
        instagram: Option<ClientCredentials>,
        sink: CallSink,
        limits: Arc<RateLimits>,
    ) -> Result<Self, ProviderError> {
        endpoints.validate()?;
        let version = settings.instagram_graph_version.as_str();
        let valid_version = version.strip_prefix('v').is_some_and(|rest| {
            rest.split_once('.').is_some_and(|(major, minor)| {
                [major, minor]
                    .iter()
                    .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            })
        });
        if !valid_version {
            return Err(ProviderError::config(
                "invalid_graph_version",
                "the Instagram Graph API version must look like v26.0",
            ));
        }
        for creds in tiktok.iter().chain(instagram.iter()) {
            if creds.client_id.trim().is_empty() || creds.client_secret.expose_secret().is_empty() {
                return Err(ProviderError::config(
                    "invalid_credentials",
                    "client id and client secret must not be empty",
                ));
            }
        }
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("tokenwarden/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|_| ProviderError::config("http_client", "cannot build the HTTP client"))?;
        let core = |platform: Platform, creds: &ClientCredentials| {
            let limiter = Arc::new(AppLimiter::new(
                limits.clone(),
                platform,
                &creds.client_id,
                settings.rate_limit(platform),
            ));
            let core = Arc::new(http::HttpCore::new(
                platform,
                http.clone(),
                limiter.clone(),
                sink.clone(),
            ));
            (core, limiter)
        };
        let tiktok = tiktok.map(|creds| {
            let (core, limiter) = core(Platform::TikTok, &creds);
            let p = TikTokProvider::new(core, creds.clone(), &endpoints, settings.tiktok_app_type);
            Registered {
                creds,
                interactive: Arc::new(p.with_priority(Priority::Interactive)),
                background: Arc::new(p),
                limiter,
            }
        });
        let instagram = instagram.map(|creds| {
            let (core, limiter) = core(Platform::Instagram, &creds);
            let p = InstagramProvider::new(
                core,
                creds.clone(),
                &endpoints,
                &settings.instagram_graph_version,
            );
            Registered {
                creds,
                interactive: Arc::new(p.with_priority(Priority::Interactive)),
                background: Arc::new(p),
                limiter,
            }
        });
        Ok(Self {
            tiktok,
            instagram,
            sink,
            endpoints,
        })
    }

    fn registered(&self, platform: Platform) -> Result<&Registered, ProviderError> {
        match platform {
            Platform::TikTok => self.tiktok.as_ref(),
            Platform::Instagram => self.instagram.as_ref(),
        }
        .ok_or_else(|| {
            ProviderError::config(
                "not_configured",
                format!(
                    "{} is not configured (no client credentials)",
                    platform.as_str()
                ),
            )
        })
    }

    /// The provider of `platform` for background work: its calls wait for rate-limit
    /// capacity as long as it takes, and yield to on-demand work when Meta's usage is high.
    pub fn get(&self, platform: Platform) -> Result<Arc<dyn OAuthProvider>, ProviderError> {
        self.registered(platform).map(|r| r.background.clone())
    }

    /// The provider of `platform` for a person waiting (OAuth callback, `accessToken`):
    /// its calls wait up to [`RateLimits::interactive_wait`] for capacity, then fail with
    /// `rate_limited_local` before any HTTP request.
    pub fn get_interactive(
        &self,
        platform: Platform,
    ) -> Result<Arc<dyn OAuthProvider>, ProviderError> {
        self.registered(platform).map(|r| r.interactive.clone())
    }

    /// The rate limiter of `platform`'s app (shared by both handles).
    pub fn rate_limiter(&self, platform: Platform) -> Result<Arc<AppLimiter>, ProviderError> {
        self.registered(platform).map(|r| r.limiter.clone())
    }

    /// The app secret of `platform` (verifies the platform's callbacks), if configured.
    pub(crate) fn client_secret(&self, platform: Platform) -> Option<&SecretString> {
        self.registered(platform)
            .ok()
            .map(|r| &r.creds.client_secret)
    }

    /// The app's client id / client key of `platform`, if configured.
    pub fn client_id(&self, platform: Platform) -> Option<&str> {
        self.registered(platform)
            .ok()
            .map(|r| r.creds.client_id.as_str())
    }

    /// Whether `platform` has credentials.
    pub fn is_configured(&self, platform: Platform) -> bool {
        self.registered(platform).is_ok()
    }

    /// The configured platforms.
    pub fn configured(&self) -> Vec<Platform> {
        [Platform::TikTok, Platform::Instagram]
            .into_iter()
            .filter(|p| self.is_configured(*p))
            .collect()
    }

    /// The call sink the providers record to.
    pub fn call_sink(&self) -> &CallSink {
        &self.sink
    }

    /// The endpoints in use.
    pub fn endpoints(&self) -> &ProviderEndpoints {
        &self.endpoints
    }
}

/// Scopes to request: the request's, else the defaults.
pub(crate) fn requested_scopes(req: &AuthorizeRequest, defaults: &[&str]) -> Vec<String> {
    if req.scopes.is_empty() {
        defaults.iter().map(|s| (*s).to_owned()).collect()
    } else {
        req.scopes.clone()
    }
}

/// Validates the common authorize parameters.
pub(crate) fn check_authorize_request(req: &AuthorizeRequest) -> Result<(), ProviderError> {
    let ok = Url::parse(&req.redirect_uri)
        .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host());
    if !ok {
        return Err(ProviderError::invalid_input(
            "invalid_redirect_uri",
            "redirect_uri must be an absolute http(s) URL",
        ));
    }
    if req.state.trim().is_empty() {
        return Err(ProviderError::invalid_input(
            "missing_state",
            "state must not be empty",
        ));
    }
    Ok(())
}

/// Splits a scope list separated by commas and/or spaces.
pub(crate) fn split_scopes(s: &str) -> Vec<String> {
    s.split([',', ' '])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A malformed success response.
pub(crate) fn invalid_response(what: &str) -> ProviderError {
    ProviderError::new(
        ErrorClass::Transient,
        "invalid_response",
        format!("unexpected provider response: {what}"),
    )
}

/// `received_at + expires_in`, rejecting negative or absurd lifetimes.
pub(crate) fn expiry(
    received_at: DateTime<Utc>,
    expires_in: i64,
) -> Result<DateTime<Utc>, ProviderError> {
    if !(0..=10 * 365 * 86_400).contains(&expires_in) {
        return Err(invalid_response("expires_in out of range"));
    }
    chrono::Duration::try_seconds(expires_in)
        .and_then(|d| received_at.checked_add_signed(d))
        .ok_or_else(|| invalid_response("expires_in out of range"))
}

/// A JSON value as an integer (number or numeric string).
pub(crate) fn json_i64(v: Option<&serde_json::Value>) -> Option<i64> {
    let v = v?;
    v.as_i64()
        .or_else(|| v.as_f64().map(|f| f as i64))
        .or_else(|| v.as_str()?.trim().parse().ok())
}

/// A JSON value as a non-empty string (numbers are formatted).
pub(crate) fn json_string(v: Option<&serde_json::Value>) -> Option<String> {
    match v? {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        let d = ProviderEndpoints::default();
        assert_eq!(d.tiktok_api_base, "https://open.tiktokapis.com");
        d.validate().unwrap();
        let s = ProviderEndpoints::sandbox("http://127.0.0.1:9/sandbox/");
        assert_eq!(
            s.instagram_graph_base,
            "http://127.0.0.1:9/sandbox/instagram/graph"
        );
        assert_eq!(s.tiktok_auth_base, "http://127.0.0.1:9/sandbox/tiktok/auth");
        let bad = ProviderEndpoints::sandbox("not a url");
        assert_eq!(bad.validate().unwrap_err().class, ErrorClass::Config);
        assert_eq!(
            join("https://x.test/", "/v2/a/").unwrap().as_str(),
            "https://x.test/v2/a/"
        );
    }

    #[test]
    fn platform_names() {
        assert_eq!(Platform::TikTok.as_str(), "tiktok");
        assert_eq!(
            "instagram".parse::<Platform>().ok(),
            Some(Platform::Instagram)
        );
    }

    #[test]
    fn debug_redacts_secrets() {
        let creds = ClientCredentials::new("app-id", "super-secret-value");
        assert!(!format!("{creds:?}").contains("super-secret-value"));
        let now = Utc::now();
        let tokens = TokenSet {
            access_token: SecretString::from("access-secret-1".to_owned()),
            refresh_token: Some(SecretString::from("refresh-secret-2".to_owned())),
            expires_at: now,
            refresh_expires_at: None,
            scopes: vec!["user.info.basic".to_owned()],
            provider_account_id: "acct".to_owned(),
            issued_at: now,
        };
        let dbg = format!("{tokens:?} {:?}", tokens.refresh_request());
        assert!(!dbg.contains("access-secret-1"));
        assert!(!dbg.contains("refresh-secret-2"));
        assert!(dbg.contains("acct"));
        let pkce = new_pkce();
        assert!(!format!("{pkce:?}").contains(pkce.verifier.expose_secret()));

        let providers = Providers::new(
            ProviderSettings::default(),
            ProviderEndpoints::default(),
            Some(creds.clone()),
            Some(ClientCredentials::new("ig-app", "ig-secret-value")),
            CallSink::noop(),
        )
        .unwrap();
        let dbg = format!(
            "{providers:?} {:?}",
            providers.get(Platform::Instagram).unwrap()
        );
        assert!(!dbg.contains("super-secret-value"));
        assert!(!dbg.contains("ig-secret-value"));
        assert!(dbg.contains("app-id"));
    }

    #[test]
    fn registry() {
        let providers = Providers::new(
            ProviderSettings::default(),
            ProviderEndpoints::default(),
            None,
            Some(ClientCredentials::new("ig-app", "s")),
            CallSink::noop(),
        )
        .unwrap();
        assert_eq!(providers.configured(), vec![Platform::Instagram]);
        let err = providers.get(Platform::TikTok).unwrap_err();
        assert_eq!(
            (err.class, err.code.as_str()),
            (ErrorClass::Config, "not_configured")
        );
        let ig = providers.get_interactive(Platform::Instagram).unwrap();
        assert_eq!(ig.platform(), Platform::Instagram);
        assert!(!ig.supports_revoke());
        assert_eq!(
            providers
                .rate_limiter(Platform::Instagram)
                .unwrap()
                .app_quota(),
            Some(RateQuota::per_second(5))
        );
        assert!(
            Providers::new(
                ProviderSettings::default(),
                ProviderEndpoints::default(),
                Some(ClientCredentials::new("", "s")),
                None,
                CallSink::noop(),
            )
            .is_err()
        );
    }

    #[test]
    fn helpers() {
        assert_eq!(split_scopes("a,b c,,"), vec!["a", "b", "c"]);
        let now = Utc::now();
        assert_eq!(
            expiry(now, 60).unwrap(),
            now + chrono::Duration::seconds(60)
        );
        assert!(expiry(now, -1).is_err());
        assert_eq!(json_i64(Some(&serde_json::json!("42"))), Some(42));
        assert_eq!(
            json_string(Some(&serde_json::json!(17841400000000000u64))).as_deref(),
            Some("17841400000000000")
        );
        let pkce = new_pkce();
        assert_eq!(pkce.challenge.len(), 43);
        assert_eq!(new_pkce_with(PkceEncoding::Hex).challenge.len(), 64);
        assert_ne!(new_state(), new_state());
    }

    /// Known answers: the RFC 7636 Appendix B verifier, in both encodings.
    #[test]
    fn pkce_known_answers() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert_eq!(
            pkce_challenge(verifier, PkceEncoding::Base64Url),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert_eq!(
            pkce_challenge(verifier, PkceEncoding::Hex),
            "13d31e961a1ad8ec2f16b10c4c982e0876a878ad6df144566ee1894acb70f9c3"
        );
        let pair = new_pkce_with(PkceEncoding::Hex);
        assert_eq!(
            pair.challenge,
            pkce_challenge(pair.verifier.expose_secret(), PkceEncoding::Hex)
        );
        assert_eq!(TikTokAppType::Web.pkce(), None);
        assert_eq!(TikTokAppType::Desktop.pkce(), Some(PkceEncoding::Hex));
    }
}
