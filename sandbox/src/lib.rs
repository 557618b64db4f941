//! Faithful simulator of the TikTok Login Kit v2 and "Instagram API with Instagram Login"
//! OAuth endpoints, with fault injection, a controllable clock, latency and rate limiting.
//!
//! Every route lives under `/sandbox/...`; the service maps each real provider host to a
//! prefix (see [`Sandbox::router`]). The sandbox is used by the service's tests and by the
//! embedded demo mode.

mod control;
mod instagram;
mod tiktok;
mod util;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::routing::{get, post};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::json;

/// The only TikTok `client_key` the sandbox accepts.
pub const TIKTOK_CLIENT_KEY: &str = "sandbox-tiktok-client";
/// The secret belonging to [`TIKTOK_CLIENT_KEY`].
pub const TIKTOK_CLIENT_SECRET: &str = "sandbox-tiktok-secret";
/// The only Instagram `client_id` (app id) the sandbox accepts.
pub const INSTAGRAM_CLIENT_ID: &str = "sandbox-instagram-app";
/// The secret belonging to [`INSTAGRAM_CLIENT_ID`].
pub const INSTAGRAM_CLIENT_SECRET: &str = "sandbox-instagram-secret";

/// Minimum age (sandbox clock) of an Instagram long-lived token before it may be refreshed.
pub(crate) const INSTAGRAM_MIN_REFRESH_AGE_S: i64 = 24 * 3600;
/// Default TikTok access-token lifetime: "Access token: 2 hours" (Manage OAuth Access
/// Tokens, developers.tiktok.com/doc/oauth-user-access-token-management, updated
/// 2026-11-05; the older page said 24 hours).
pub const TIKTOK_ACCESS_TTL_S: i64 = 2 * 3600;
/// Default TikTok refresh-token lifetime: "Refresh token: 180 days" (same page; the older
/// page said 365 days).
pub const TIKTOK_REFRESH_TTL_S: i64 = 180 * 86_400;
/// Default Instagram long-lived token lifetime: about 60 days (Instagram API with Instagram
/// Login, long-lived tokens).
pub(crate) const INSTAGRAM_LONG_TTL_S: i64 = 60 * 86_400;
/// Lifetime of a TikTok authorization code.
pub(crate) const TIKTOK_CODE_TTL_S: i64 = 600;
/// Lifetime of an Instagram authorization code.
pub(crate) const INSTAGRAM_CODE_TTL_S: i64 = 3600;

/// OAuth provider simulated by the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    /// TikTok Login Kit v2.
    Tiktok,
    /// Instagram API with Instagram Login.
    Instagram,
}

/// Kind of failure injected into the next calls of a platform (token calls, or one endpoint:
/// see [`FaultEndpoint`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// HTTP 429 with `Retry-After` and the platform's rate-limit body.
    RateLimited,
    /// HTTP 503 with the platform's transient server-error body.
    ServerError,
    /// Hang for `timeout_fault_ms`, then answer 504.
    Timeout,
    /// The platform's dead-grant error (TikTok `invalid_grant`, Instagram 190/460).
    InvalidGrant,
    /// A permission was removed after consent (TikTok `scope_not_authorized`, Instagram
    /// `(#200) Requires instagram_business_content_publish permission`).
    PermissionRemoved,
    /// Instagram 368 "temporarily blocked for policies violations" (TikTok: 503).
    TemporarilyBlocked,
    /// The app's credentials are refused (TikTok `invalid_client`, Instagram 101).
    InvalidClient,
    /// HTTP 502 with an HTML page, as a load balancer in front of the platform answers.
    HtmlServerError,
    /// The connection breaks: headers are sent, then the body is cut off.
    ConnectionReset,
    /// HTTP 200 with a truncated JSON body.
    MalformedBody,
    /// Instagram's legacy error shape `{"error_type","code","error_message"}` for a used
    /// code, as api.instagram.com still answers (TikTok: its `invalid_grant`).
    LegacyError,
    /// Meta code 4 "Application request limit reached" with `X-App-Usage` at 100 %
    /// (TikTok: 429 `rate_limit_exceeded`).
    ThrottledApp,
    /// Meta code 17 "User request limit reached" with `X-Business-Use-Case-Usage` and
    /// `estimated_time_to_regain_access` (minutes) (TikTok: 429).
    ThrottledUser,
    /// Meta code 32 "Page request limit reached" with `X-Business-Use-Case-Usage`
    /// (TikTok: 429).
    ThrottledPage,
    /// Meta code 613 "Calls to this api have exceeded the rate limit" (TikTok: 429).
    ThrottledCustom,
}

/// The endpoint a fault is injected into. Faults set without one hit the token calls
/// (code exchanges and refreshes), as before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultEndpoint {
    /// The authorize page (the user's browser): 5xx pages, or a redirect back with
    /// `error=server_error` / `temporarily_unavailable`.
    Authorize,
    /// The code exchange (Instagram: also the long-lived exchange).
    Exchange,
    /// The refresh.
    Refresh,
    /// TikTok `/v2/user/info/`, Instagram `/me`.
    UserInfo,
    /// TikTok `/v2/oauth/revoke/`.
    Revoke,
}

/// How the simulated TikTok app is registered; decides the PKCE rules the sandbox enforces.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TikTokAppType {
    /// Login Kit for Web: PKCE is not documented and not required. A challenge that is sent
    /// anyway is checked like a desktop one (hex S256), TikTok's only documented encoding.
    #[default]
    Web,
    /// Login Kit for Desktop: `code_challenge` (hex SHA-256 of the verifier) with
    /// `code_challenge_method=S256` is required at authorize, `code_verifier` at the exchange.
    Desktop,
}

/// Sandbox configuration. Every field has a default, so partial JSON is accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SandboxConfig {
    /// TikTok access token lifetime in seconds (`expires_in`).
    pub tiktok_access_ttl_s: i64,
    /// TikTok refresh token lifetime in seconds (`refresh_expires_in`), counted from the
    /// authorization-code exchange; rotation does not extend it.
    pub tiktok_refresh_ttl_s: i64,
    /// Instagram short-lived token lifetime in seconds.
    pub instagram_short_ttl_s: i64,
    /// Instagram long-lived token lifetime in seconds.
    pub instagram_ttl_s: i64,
    /// Artificial latency added to every provider endpoint call, in milliseconds.
    pub latency_ms: u64,
    /// Token-bucket limit on token calls per platform and second; `None` = unlimited.
    pub rate_limit_per_s: Option<u32>,
    /// How long a `timeout` fault hangs before answering 504, in milliseconds.
    pub timeout_fault_ms: u64,
    /// `Retry-After` value (seconds) sent with every 429.
    pub retry_after_s: u64,
    /// Return the flat `{"access_token","user_id","permissions":[..]}` shape from the
    /// Instagram code exchange instead of the wrapped `{"data":[..]}` shape.
    pub instagram_flat_exchange: bool,
    /// TikTok app type: which PKCE rules apply.
    pub tiktok_app_type: TikTokAppType,
    /// Origin of the tokenwarden server (`http://127.0.0.1:8080`) that receives the
    /// platform callbacks sent by `POST /sandbox/control/revoke` with `"notify": true`:
    /// TikTok's webhook (`/providers/tiktok/webhook`), Meta's deauthorize and data deletion
    /// callbacks (`/providers/instagram/...`).
    pub callback_base_url: Option<String>,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            tiktok_access_ttl_s: TIKTOK_ACCESS_TTL_S,
            tiktok_refresh_ttl_s: TIKTOK_REFRESH_TTL_S,
            instagram_short_ttl_s: 3_600,
            instagram_ttl_s: INSTAGRAM_LONG_TTL_S,
            latency_ms: 0,
            rate_limit_per_s: None,
            timeout_fault_ms: 30_000,
            retry_after_s: 1,
            instagram_flat_exchange: false,
            tiktok_app_type: TikTokAppType::Web,
            callback_base_url: None,
        }
    }
}

/// Partial update of [`SandboxConfig`]; `None` fields are left unchanged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConfigPatch {
    /// See [`SandboxConfig::tiktok_access_ttl_s`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tiktok_access_ttl_s: Option<i64>,
    /// See [`SandboxConfig::tiktok_refresh_ttl_s`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tiktok_refresh_ttl_s: Option<i64>,
    /// See [`SandboxConfig::instagram_short_ttl_s`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instagram_short_ttl_s: Option<i64>,
    /// See [`SandboxConfig::instagram_ttl_s`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instagram_ttl_s: Option<i64>,
    /// See [`SandboxConfig::latency_ms`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// `Some(None)` (JSON `null`) switches rate limiting off; absent leaves it unchanged.
    #[serde(
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub rate_limit_per_s: Option<Option<u32>>,
    /// See [`SandboxConfig::timeout_fault_ms`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_fault_ms: Option<u64>,
    /// See [`SandboxConfig::retry_after_s`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_s: Option<u64>,
    /// See [`SandboxConfig::instagram_flat_exchange`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instagram_flat_exchange: Option<bool>,
    /// See [`SandboxConfig::tiktok_app_type`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tiktok_app_type: Option<TikTokAppType>,
    /// See [`SandboxConfig::callback_base_url`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback_base_url: Option<String>,
}

fn double_option<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<u32>>, D::Error> {
    Option::<u32>::deserialize(d).map(Some)
}

impl SandboxConfig {
    fn apply(&mut self, patch: ConfigPatch) {
        let ConfigPatch {
            tiktok_access_ttl_s,
            tiktok_refresh_ttl_s,
            instagram_short_ttl_s,
            instagram_ttl_s,
            latency_ms,
            rate_limit_per_s,
            timeout_fault_ms,
            retry_after_s,
            instagram_flat_exchange,
            tiktok_app_type,
            callback_base_url,
        } = patch;
        set(&mut self.tiktok_access_ttl_s, tiktok_access_ttl_s);
        set(&mut self.tiktok_refresh_ttl_s, tiktok_refresh_ttl_s);
        set(&mut self.instagram_short_ttl_s, instagram_short_ttl_s);
        set(&mut self.instagram_ttl_s, instagram_ttl_s);
        set(&mut self.latency_ms, latency_ms);
        set(&mut self.rate_limit_per_s, rate_limit_per_s);
        set(&mut self.timeout_fault_ms, timeout_fault_ms);
        set(&mut self.retry_after_s, retry_after_s);
        set(&mut self.instagram_flat_exchange, instagram_flat_exchange);
        set(&mut self.tiktok_app_type, tiktok_app_type);
        if callback_base_url.is_some() {
            self.callback_base_url = callback_base_url;
        }
    }
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}

/// Call counters of one platform.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformStats {
    /// Every call to a token endpoint (exchanges + refreshes), faulted/limited ones included.
    pub token_calls: u64,
    /// Code exchanges (TikTok `authorization_code`; Instagram code and long-lived exchanges).
    pub exchange_calls: u64,
    /// Refresh calls (TikTok `refresh_token` grant; Instagram `refresh_access_token`).
    pub refresh_calls: u64,
    /// Rotated-out refresh tokens presented again (TikTok only).
    pub reused_refresh_tokens: u64,
    /// Calls to the provider revoke endpoint (TikTok only; Instagram has none).
    pub revoke_calls: u64,
    /// Calls to the user endpoint (TikTok `/v2/user/info/`, Instagram `/me`).
    pub user_info_calls: u64,
    /// Injected faults served (any kind).
    pub faults_injected: u64,
    /// 429 responses served (rate-limit faults and token-bucket rejections).
    pub rate_limited: u64,
}

/// Call counters of both platforms (`GET /sandbox/control/stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// TikTok counters.
    pub tiktok: PlatformStats,
    /// Instagram counters.
    pub instagram: PlatformStats,
}

impl Stats {
    /// Counters of one platform.
    pub fn platform(&self, platform: Platform) -> &PlatformStats {
        match platform {
            Platform::Tiktok => &self.tiktok,
            Platform::Instagram => &self.instagram,
        }
    }

    fn platform_mut(&mut self, platform: Platform) -> &mut PlatformStats {
        match platform {
            Platform::Tiktok => &mut self.tiktok,
            Platform::Instagram => &mut self.instagram,
        }
    }
}

/// Deterministic TikTok `open_id` of a sandbox user name.
pub fn tiktok_open_id(user: &str) -> String {
    format!("tt-open-{user}")
}

/// Deterministic TikTok `union_id` of a sandbox user name.
pub(crate) fn tiktok_union_id(user: &str) -> String {
    format!("tt-union-{user}")
}

/// Deterministic Instagram app-scoped user id of a sandbox user name: the `user_id` of the
/// code exchange and the `id` of `/me`.
pub fn instagram_user_id(user: &str) -> String {
    format!(
        "2{:016}",
        util::numeric_hash(&format!("ig-asid:{user}"), 16)
    )
}

/// Deterministic Instagram professional account id of a sandbox user name: the `user_id`
/// field of `/me` (as on the real API, it differs from the app-scoped id).
pub fn instagram_account_id(user: &str) -> String {
    format!(
        "17841{:012}",
        util::numeric_hash(&format!("ig-user:{user}"), 12)
    )
}

/// What a token call should do after the fault / rate-limit checks.
pub(crate) enum Gate {
    Proceed,
    RateLimited {
        retry_after: u64,
    },
    Fault {
        kind: FaultKind,
        retry_after: u64,
        timeout_ms: u64,
    },
}

/// Classification of a token call for the stats.
#[derive(Clone, Copy)]
pub(crate) enum CallKind {
    Exchange,
    Refresh,
    Other,
}

/// Token bucket over real time; capacity = rate (one second of burst).
#[derive(Default)]
pub(crate) struct Bucket {
    tokens: f64,
    last: Option<Instant>,
}

impl Bucket {
    fn refill(&mut self, rate: u32, now: Instant) {
        let cap = f64::from(rate);
        self.tokens = match self.last {
            None => cap,
            Some(last) => (self.tokens + now.duration_since(last).as_secs_f64() * cap).min(cap),
        };
        self.last = Some(now);
    }

    fn try_take(&mut self, rate: Option<u32>, now: Instant) -> bool {
        let Some(rate) = rate else { return true };
        self.refill(rate, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn usage_percent(&mut self, rate: Option<u32>, now: Instant) -> u32 {
        match rate {
            None => 0,
            Some(0) => 100,
            Some(rate) => {
                self.refill(rate, now);
                let used = 1.0 - self.tokens / f64::from(rate);
                (used * 100.0).round().clamp(0.0, 100.0) as u32
            }
        }
    }
}

/// All mutable sandbox state, behind one mutex (never held across an await).
pub(crate) struct State {
    pub(crate) config: SandboxConfig,
    pub(crate) clock_offset: i64,
    pub(crate) faults: HashMap<(Platform, Option<FaultEndpoint>), (FaultKind, u32)>,
    pub(crate) stats: Stats,
    pub(crate) buckets: HashMap<Platform, Bucket>,
    pub(crate) tiktok: tiktok::TtState,
    pub(crate) instagram: instagram::IgState,
}

impl State {
    fn new(config: SandboxConfig) -> Self {
        Self {
            config,
            clock_offset: 0,
            faults: HashMap::new(),
            stats: Stats::default(),
            buckets: HashMap::new(),
            tiktok: tiktok::TtState::default(),
            instagram: instagram::IgState::default(),
        }
    }

    /// Sandbox clock: wall clock (unix seconds) plus the offset.
    pub(crate) fn now(&self) -> i64 {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        wall.saturating_add(self.clock_offset)
    }

    /// Takes one pending fault for `endpoint` (then, for token calls, one set without an
    /// endpoint) and counts it.
    fn take_fault(
        &mut self,
        platform: Platform,
        endpoint: Option<FaultEndpoint>,
        token_call: bool,
    ) -> Gate {
        let keys = [
            endpoint.map(|e| (platform, Some(e))),
            token_call.then_some((platform, None)),
        ];
        let Some(key) = keys
            .into_iter()
            .flatten()
            .find(|k| self.faults.contains_key(k))
        else {
            return Gate::Proceed;
        };
        let Some((fault, remaining)) = self.faults.get_mut(&key) else {
            return Gate::Proceed;
        };
        let fault = *fault;
        *remaining = remaining.saturating_sub(1);
        if *remaining == 0 {
            self.faults.remove(&key);
        }
        let stats = self.stats.platform_mut(platform);
        stats.faults_injected += 1;
        if matches!(
            fault,
            FaultKind::RateLimited
                | FaultKind::ThrottledApp
                | FaultKind::ThrottledUser
                | FaultKind::ThrottledPage
                | FaultKind::ThrottledCustom
        ) {
            stats.rate_limited += 1;
        }
        Gate::Fault {
            kind: fault,
            retry_after: self.config.retry_after_s,
            timeout_ms: self.config.timeout_fault_ms,
        }
    }

    pub(crate) fn usage_percent(&mut self, platform: Platform) -> u32 {
        let rate = self.config.rate_limit_per_s;
        self.buckets
            .entry(platform)
            .or_default()
            .usage_percent(rate, Instant::now())
    }
}

struct Inner {
    initial: SandboxConfig,
    state: Mutex<State>,
}

/// Handle to one simulated TikTok + Instagram provider. Cheap to clone (shared state).
#[derive(Clone)]
pub struct Sandbox {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("config", &self.lock().config)
            .finish_non_exhaustive()
    }
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new(SandboxConfig::default())
    }
}

impl Sandbox {
    /// Creates a sandbox; `config` is also what [`Sandbox::reset`] returns to.
    pub fn new(config: SandboxConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                initial: config.clone(),
                state: Mutex::new(State::new(config)),
            }),
        }
    }

    /// Routes with FULL paths starting with `/sandbox/...` (merge into the host app as is).
    pub fn router(&self) -> Router {
        const TT_AUTH: &str = "/sandbox/tiktok/auth";
        const TT_API: &str = "/sandbox/tiktok/api";
        const IG_AUTH: &str = "/sandbox/instagram/auth";
        const IG_GRAPH: &str = "/sandbox/instagram/graph";
        const CONTROL: &str = "/sandbox/control";
        Router::new()
            .route(
                &format!("{TT_AUTH}/v2/auth/authorize/"),
                get(tiktok::authorize),
            )
            .route(&format!("{TT_API}/v2/oauth/token/"), post(tiktok::token))
            .route(&format!("{TT_API}/v2/oauth/revoke/"), post(tiktok::revoke))
            .route(&format!("{TT_API}/v2/user/info/"), get(tiktok::user_info))
            .route(
                &format!("{IG_AUTH}/oauth/authorize"),
                get(instagram::authorize),
            )
            .route(
                &format!("{IG_AUTH}/oauth/access_token"),
                post(instagram::exchange),
            )
            .route(
                &format!("{IG_GRAPH}/access_token"),
                get(instagram::long_lived),
            )
            .route(
                &format!("{IG_GRAPH}/{{version}}/access_token"),
                get(instagram::long_lived),
            )
            .route(
                &format!("{IG_GRAPH}/refresh_access_token"),
                get(instagram::refresh),
            )
            .route(
                &format!("{IG_GRAPH}/{{version}}/refresh_access_token"),
                get(instagram::refresh),
            )
            .route(&format!("{IG_GRAPH}/me"), get(instagram::me))
            .route(&format!("{IG_GRAPH}/{{version}}/me"), get(instagram::me))
            .route(&format!("{CONTROL}/faults"), post(control::faults))
            .route(
                &format!("{CONTROL}/config"),
                get(control::get_config).post(control::patch_config),
            )
            .route(&format!("{CONTROL}/revoke"), post(control::revoke))
            .route(
                &format!("{CONTROL}/remove-permission"),
                post(control::remove_permission),
            )
            .route(&format!("{CONTROL}/clock"), post(control::clock))
            .route(&format!("{CONTROL}/reset"), post(control::reset))
            .route(&format!("{CONTROL}/stats"), get(control::stats))
            .with_state(self.clone())
    }

    /// Binds 127.0.0.1:port (0 = any), serves [`Sandbox::router`] in a tokio task and
    /// returns the bound address.
    pub async fn spawn(&self, port: u16) -> std::io::Result<SocketAddr> {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).await?;
        let addr = listener.local_addr()?;
        let app = self.router();
        tokio::spawn(async move {
            // The server only stops when the runtime shuts down; nothing to report to.
            let _ = axum::serve(listener, app).await;
        });
        Ok(addr)
    }

    /// Snapshot of the call counters (same data as `GET /sandbox/control/stats`).
    pub fn stats(&self) -> Stats {
        self.lock().stats
    }

    /// The next `count` token calls of `platform` fail with `kind` (replaces any pending
    /// token-call fault of that platform; `count` 0 clears it).
    pub fn set_faults(&self, platform: Platform, kind: FaultKind, count: u32) {
        self.set_faults_at(platform, None, kind, count);
    }

    /// The next `count` calls of `platform` to `endpoint` (`None`: any token call) fail
    /// with `kind`; `count` 0 clears the fault.
    pub fn set_faults_at(
        &self,
        platform: Platform,
        endpoint: Option<FaultEndpoint>,
        kind: FaultKind,
        count: u32,
    ) {
        let mut st = self.lock();
        if count == 0 {
            st.faults.remove(&(platform, endpoint));
        } else {
            st.faults.insert((platform, endpoint), (kind, count));
        }
    }

    /// Removes `permission` from every live grant of a provider account, as when the user
    /// unticks it in the platform's settings after consenting. Returns whether a grant had
    /// it.
    pub fn remove_permission(
        &self,
        platform: Platform,
        provider_account_id: &str,
        permission: &str,
    ) -> bool {
        let mut st = self.lock();
        match platform {
            Platform::Tiktok => st.tiktok.remove_permission(provider_account_id, permission),
            Platform::Instagram => st
                .instagram
                .remove_permission(provider_account_id, permission),
        }
    }

    /// Revokes every live grant of a provider account (TikTok `open_id`; Instagram
    /// app-scoped id or professional account id) and drops its pending codes.
    /// Returns whether a live grant was revoked.
    pub fn revoke(&self, platform: Platform, provider_account_id: &str) -> bool {
        let mut st = self.lock();
        match platform {
            Platform::Tiktok => st.tiktok.revoke_account(provider_account_id),
            Platform::Instagram => st.instagram.revoke_account(provider_account_id),
        }
    }

    /// Like [`Sandbox::revoke`], but also tells the app, correctly signed, at
    /// [`SandboxConfig::callback_base_url`]: TikTok's `authorization.removed` webhook with
    /// `reason` (default 1, the user disconnected), or Meta's deauthorize callback (and the
    /// data deletion callback when `data_deletion`). Returns whether a grant was revoked and
    /// each callback's URL and HTTP status (`None`: not delivered).
    pub(crate) async fn revoke_and_notify(
        &self,
        platform: Platform,
        provider_account_id: &str,
        reason: Option<i64>,
        data_deletion: bool,
    ) -> (bool, Vec<(String, Option<u16>)>) {
        let (revoked, user_id, base) = {
            let mut st = self.lock();
            let base = st.config.callback_base_url.clone();
            match platform {
                Platform::Tiktok => (
                    st.tiktok.revoke_account(provider_account_id),
                    Some(provider_account_id.to_owned()),
                    base,
                ),
                Platform::Instagram => {
                    let user = st.instagram.revoke_account_user(provider_account_id);
                    (
                        user.is_some(),
                        user.map(|u| instagram_user_id(&u))
                            .or_else(|| Some(provider_account_id.to_owned())),
                        base,
                    )
                }
            }
        };
        let (Some(base), Some(user_id)) = (base, user_id) else {
            return (revoked, Vec::new());
        };
        let base = base.trim_end_matches('/');
        let now = self.now();
        let client = reqwest::Client::new();
        let mut sent = Vec::new();
        match platform {
            Platform::Tiktok => {
                let content = json!({ "reason": reason.unwrap_or(1) }).to_string();
                let body = json!({
                    "client_key": TIKTOK_CLIENT_KEY,
                    "event": "authorization.removed",
                    "create_time": now,
                    "user_openid": user_id,
                    "content": content,
                })
                .to_string();
                let signature = util::tiktok_signature(TIKTOK_CLIENT_SECRET, now, &body);
                let url = format!("{base}/providers/tiktok/webhook");
                let status = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("tiktok-signature", format!("t={now},s={signature}"))
                    .body(body)
                    .send()
                    .await
                    .ok()
                    .map(|r| r.status().as_u16());
                sent.push((url, status));
            }
            Platform::Instagram => {
                let payload =
                    json!({"algorithm": "HMAC-SHA256", "issued_at": now, "user_id": user_id});
                let signed = util::signed_request(INSTAGRAM_CLIENT_SECRET, &payload);
                let mut paths = vec!["deauthorize"];
                if data_deletion {
                    paths.push("data-deletion");
                }
                for path in paths {
                    let url = format!("{base}/providers/instagram/{path}");
                    let status = client
                        .post(&url)
                        .form(&[("signed_request", signed.as_str())])
                        .send()
                        .await
                        .ok()
                        .map(|r| r.status().as_u16());
                    sent.push((url, status));
                }
            }
        }
        (revoked, sent)
    }

    /// Applies a partial configuration update (changing the rate limit refills the buckets).
    pub fn update_config(&self, patch: ConfigPatch) {
        let mut st = self.lock();
        let rate_changed = patch
            .rate_limit_per_s
            .is_some_and(|r| r != st.config.rate_limit_per_s);
        st.config.apply(patch);
        if rate_changed {
            st.buckets.clear();
        }
    }

    /// Current configuration.
    pub fn config(&self) -> SandboxConfig {
        self.lock().config.clone()
    }

    /// Moves the sandbox clock by `secs` (may be negative); drives every expiry rule.
    pub fn advance_clock(&self, secs: i64) {
        let mut st = self.lock();
        st.clock_offset = st.clock_offset.saturating_add(secs);
    }

    /// Current sandbox time in unix seconds (wall clock plus the offset).
    pub fn now(&self) -> i64 {
        self.lock().now()
    }

    /// Forgets all codes, tokens, faults and stats, zeroes the clock offset and restores the
    /// configuration given to [`Sandbox::new`].
    pub fn reset(&self) {
        let mut st = self.lock();
        *st = State::new(self.inner.initial.clone());
    }

    /// Locks the state; a poisoned lock is recovered (the state stays usable).
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Sleeps for the configured latency.
    pub(crate) async fn latency(&self) {
        let ms = self.lock().config.latency_ms;
        if ms > 0 {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }

    /// Counts a token call and decides whether it is rate limited or faulted.
    pub(crate) fn gate(&self, platform: Platform, kind: CallKind) -> Gate {
        let mut guard = self.lock();
        let st = &mut *guard;
        let stats = st.stats.platform_mut(platform);
        stats.token_calls += 1;
        match kind {
            CallKind::Exchange => stats.exchange_calls += 1,
            CallKind::Refresh => stats.refresh_calls += 1,
            CallKind::Other => {}
        }
        let retry_after = st.config.retry_after_s;
        let allowed = st
            .buckets
            .entry(platform)
            .or_default()
            .try_take(st.config.rate_limit_per_s, Instant::now());
        if !allowed {
            stats.rate_limited += 1;
            return Gate::RateLimited { retry_after };
        }
        let endpoint = match kind {
            CallKind::Exchange => Some(FaultEndpoint::Exchange),
            CallKind::Refresh => Some(FaultEndpoint::Refresh),
            CallKind::Other => None,
        };
        st.take_fault(platform, endpoint, true)
    }

    /// Decides whether a call to a non-token endpoint (authorize, user info, revoke) is
    /// faulted; such calls are not rate limited by the sandbox.
    pub(crate) fn gate_endpoint(&self, platform: Platform, endpoint: FaultEndpoint) -> Gate {
        self.lock().take_fault(platform, Some(endpoint), false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_limits_and_refills() {
        let mut b = Bucket::default();
        let t0 = Instant::now();
        assert!(b.try_take(Some(2), t0));
        assert!(b.try_take(Some(2), t0));
        assert!(!b.try_take(Some(2), t0));
        assert_eq!(b.usage_percent(Some(2), t0), 100);
        assert!(b.try_take(Some(2), t0 + Duration::from_millis(600)));
        assert!(b.try_take(None, t0));
        assert!(!Bucket::default().try_take(Some(0), t0));
    }

    #[test]
    fn ids_are_deterministic_and_distinct() {
        assert_eq!(tiktok_open_id("alice"), "tt-open-alice");
        assert_eq!(instagram_user_id("alice"), instagram_user_id("alice"));
        assert_ne!(instagram_user_id("alice"), instagram_user_id("bob"));
        assert_ne!(instagram_user_id("alice"), instagram_account_id("alice"));
        assert_eq!(instagram_user_id("alice").len(), 17);
        assert!(instagram_account_id("alice").starts_with("17841"));
    }

    #[test]
    fn config_patch_null_disables_rate_limit() {
        let mut cfg = SandboxConfig {
            rate_limit_per_s: Some(5),
            ..SandboxConfig::default()
        };
        let patch: ConfigPatch = serde_json::from_str(r#"{"latency_ms":5}"#).unwrap_or_default();
        cfg.apply(patch);
        assert_eq!((cfg.rate_limit_per_s, cfg.latency_ms), (Some(5), 5));
        let patch: ConfigPatch =
            serde_json::from_str(r#"{"rate_limit_per_s":null}"#).unwrap_or_default();
        cfg.apply(patch);
        assert_eq!(cfg.rate_limit_per_s, None);
        assert!(serde_json::from_str::<ConfigPatch>(r#"{"latency":5}"#).is_err());
    }

    #[test]
    fn enums_use_documented_serde_names() {
        let json = serde_json::to_string(&(Platform::Tiktok, FaultKind::InvalidGrant));
        assert_eq!(json.ok().as_deref(), Some(r#"["tiktok","invalid_grant"]"#));
        let json = serde_json::to_string(&(Platform::Instagram, FaultKind::RateLimited));
        assert_eq!(
            json.ok().as_deref(),
            Some(r#"["instagram","rate_limited"]"#)
        );
    }
}
