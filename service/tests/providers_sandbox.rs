//! The TikTok and Instagram providers against the real sandbox over HTTP: full OAuth flows,
//! rotation, the Instagram 24-hour rule, fault classification, timeouts, call recording.

use std::time::Duration;

use chrono::Utc;
use sandbox::{
    ConfigPatch, FaultKind, INSTAGRAM_CLIENT_ID, INSTAGRAM_CLIENT_SECRET, Platform as SbPlatform,
    Sandbox, SandboxConfig, TIKTOK_CLIENT_KEY, TIKTOK_CLIENT_SECRET, TikTokAppType as SbAppType,
};
use secrecy::{ExposeSecret, SecretString};
use service::providers::{
    AuthorizeRequest, ClientCredentials, Endpoint, ErrorClass, OAuthProvider, PkceEncoding,
    PkcePair, Platform, ProviderCall, ProviderEndpoints, ProviderSettings, Providers, RateLimits,
    RateQuota, RefreshRequest, TikTokAppType, TokenSet, call_sink, new_pkce, new_pkce_with,
    new_state,
};
use tokio::sync::mpsc::Receiver;

const REDIRECT: &str = "https://app.example/oauth/callback";

struct Env {
    sandbox: Sandbox,
    providers: Providers,
    calls: Receiver<ProviderCall>,
}

impl Env {
    async fn start(config: SandboxConfig, settings: ProviderSettings) -> Env {
        Self::start_waiting(config, settings, Duration::from_secs(10)).await
    }

    /// With interactive calls waiting up to `interactive_wait` for rate-limit capacity.
    async fn start_waiting(
        config: SandboxConfig,
        settings: ProviderSettings,
        interactive_wait: Duration,
    ) -> Env {
        let sandbox = Sandbox::new(config);
        let addr = sandbox.spawn(0).await.unwrap();
        let (sink, calls) = call_sink(256);
        let providers = Providers::with_limits(
            settings,
            ProviderEndpoints::sandbox(&format!("http://{addr}/sandbox")),
            Some(ClientCredentials::new(
                TIKTOK_CLIENT_KEY,
                TIKTOK_CLIENT_SECRET,
            )),
            Some(ClientCredentials::new(
                INSTAGRAM_CLIENT_ID,
                INSTAGRAM_CLIENT_SECRET,
            )),
            sink,
            std::sync::Arc::new(RateLimits::local(interactive_wait)),
        )
        .unwrap();
        Env {
            sandbox,
            providers,
            calls,
        }
    }

    async fn default() -> Env {
        Self::start(SandboxConfig::default(), ProviderSettings::default()).await
    }

    fn drain_calls(&mut self) -> Vec<ProviderCall> {
        let mut out = Vec::new();
        while let Ok(call) = self.calls.try_recv() {
            out.push(call);
        }
        out
    }
}

/// Follows the authorize URL like a browser that approves at once, and returns the code
/// exactly as it appears in the redirect (Instagram's `#_` included).
async fn authorize(provider: &dyn OAuthProvider, user: &str, pkce: Option<&PkcePair>) -> String {
    let state = new_state();
    let mut url = provider
        .authorize_url(&AuthorizeRequest {
            redirect_uri: REDIRECT.to_owned(),
            state: state.clone(),
            scopes: vec![],
            pkce_challenge: pkce.map(|p| p.challenge.clone()),
        })
        .unwrap();
    url.query_pairs_mut().append_pair("sandbox_user", user);
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = browser.get(url).send().await.unwrap();
    assert_eq!(resp.status(), 302);
    let location = resp.headers()[reqwest::header::LOCATION]
        .to_str()
        .unwrap()
        .to_owned();
    let location = url::Url::parse(&location).unwrap();
    assert!(location.as_str().starts_with(REDIRECT));
    let query: std::collections::HashMap<_, _> = location.query_pairs().into_owned().collect();
    assert_eq!(query["state"], state);
    match location.fragment() {
        Some(fragment) => format!("{}#{fragment}", query["code"]),
        None => query["code"].clone(),
    }
}

fn aged(tokens: &TokenSet, hours: i64) -> RefreshRequest<'_> {
    RefreshRequest {
        issued_at: Utc::now() - chrono::Duration::hours(hours),
        ..tokens.refresh_request()
    }
}

#[tokio::test]
async fn tiktok_flow_rotation_and_reuse_detection() {
    let mut env = Env::default().await;
    let tt = env.providers.get(Platform::TikTok).unwrap();
    let pkce = new_pkce();
    let code = authorize(tt.as_ref(), "alice", Some(&pkce)).await;

    let tokens = tt
        .exchange_code(&code, REDIRECT, Some(&pkce.verifier))
        .await
        .unwrap();
    assert_eq!(tokens.provider_account_id, sandbox::tiktok_open_id("alice"));
    assert_eq!(
        tokens.expires_at - tokens.issued_at,
        chrono::Duration::seconds(sandbox::TIKTOK_ACCESS_TTL_S)
    );
    assert!(tokens.refresh_expires_at.is_some());
    assert!(tokens.scopes.iter().any(|s| s == "user.info.basic"));
    let first_refresh = tokens.refresh_token.clone().unwrap();

    let profile = tt.user_info(&tokens.access_token).await.unwrap();
    assert_eq!(profile.provider_account_id, tokens.provider_account_id);
    assert_eq!(profile.username.as_deref(), Some("alice"));
    assert!(profile.avatar_url.is_some());

    // Refresh rotates the refresh token.
    let refreshed = tt.refresh(&tokens.refresh_request()).await.unwrap();
    let second_refresh = refreshed.refresh_token.clone().unwrap();
    assert_ne!(
        second_refresh.expose_secret(),
        first_refresh.expose_secret()
    );
    assert_ne!(
        refreshed.access_token.expose_secret(),
        tokens.access_token.expose_secret()
    );
    tt.user_info(&refreshed.access_token).await.unwrap();

    // Presenting the rotated-out refresh token: classified as a dead grant.
    let err = tt.refresh(&tokens.refresh_request()).await.unwrap_err();
    assert_eq!(err.class, ErrorClass::GrantDead);
    assert_eq!(err.code, "invalid_grant");
    assert_eq!(err.reason(), Some("refresh_token_reused"));
    assert_eq!(err.http_status, Some(400));
    assert!(err.log_id.is_some());
    assert!(!err.to_string().contains(first_refresh.expose_secret()));
    assert_eq!(env.sandbox.stats().tiktok.reused_refresh_tokens, 1);

    let calls = env.drain_calls();
    let summary: Vec<_> = calls
        .iter()
        .map(|c| (c.operation, c.http_status, c.error_code.as_deref()))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("exchange_code", Some(200), None),
            ("user_info", Some(200), None),
            ("refresh", Some(200), None),
            ("user_info", Some(200), None),
            ("refresh", Some(400), Some("invalid_grant")),
        ]
    );
    assert!(calls.iter().all(|c| c.platform == Platform::TikTok));
    assert_eq!(env.providers.call_sink().dropped(), 0);
}

#[tokio::test]
async fn tiktok_pkce_mismatch_and_revoke() {
    let env = Env::start(
        SandboxConfig {
            tiktok_app_type: SbAppType::Desktop,
            ..SandboxConfig::default()
        },
        ProviderSettings {
            tiktok_app_type: TikTokAppType::Desktop,
            ..ProviderSettings::default()
        },
    )
    .await;
    let tt = env.providers.get(Platform::TikTok).unwrap();
    assert_eq!(tt.pkce(), Some(PkceEncoding::Hex));

    let pkce = new_pkce_with(PkceEncoding::Hex);
    let code = authorize(tt.as_ref(), "bob", Some(&pkce)).await;
    let wrong = new_pkce_with(PkceEncoding::Hex);
    let err = tt
        .exchange_code(&code, REDIRECT, Some(&wrong.verifier))
        .await
        .unwrap_err();
    assert_eq!(
        (err.class, err.code.as_str()),
        (ErrorClass::Config, "invalid_request")
    );
    assert_eq!(err.message, "Code verifier or code challenge is invalid.");
    // The RFC 7636 (base64url) challenge is refused the same way.
    let b64 = new_pkce();
    let code = authorize(tt.as_ref(), "bob", Some(&b64)).await;
    let err = tt
        .exchange_code(&code, REDIRECT, Some(&b64.verifier))
        .await
        .unwrap_err();
    assert_eq!(err.code, "invalid_request");
    let code = authorize(tt.as_ref(), "bob", Some(&pkce)).await;
    tt.exchange_code(&code, REDIRECT, Some(&pkce.verifier))
        .await
        .unwrap();

    let code = authorize(tt.as_ref(), "bob", Some(&pkce)).await;
    let tokens = tt
        .exchange_code(&code, REDIRECT, Some(&pkce.verifier))
        .await
        .unwrap();
    assert!(tt.supports_revoke());
    tt.revoke(&tokens.access_token).await.unwrap();
    assert_eq!(env.sandbox.stats().tiktok.revoke_calls, 1);
    let err = tt.user_info(&tokens.access_token).await.unwrap_err();
    assert_eq!(
        (err.class, err.code.as_str(), err.http_status),
        (ErrorClass::GrantDead, "access_token_invalid", Some(401))
    );
    let err = tt.refresh(&tokens.refresh_request()).await.unwrap_err();
    assert_eq!(err.class, ErrorClass::GrantDead);
    // Revoking an already-dead token is fine.
    tt.revoke(&tokens.access_token).await.unwrap();

    // Revocation on the platform side (user removed the app).
    let code = authorize(tt.as_ref(), "carol", Some(&pkce)).await;
    let tokens = tt
        .exchange_code(&code, REDIRECT, Some(&pkce.verifier))
        .await
        .unwrap();
    assert!(
        env.sandbox
            .revoke(SbPlatform::Tiktok, &tokens.provider_account_id)
    );
    let err = tt.refresh(&tokens.refresh_request()).await.unwrap_err();
    assert_eq!(
        (err.class, err.reason()),
        (ErrorClass::GrantDead, Some("revoked"))
    );
}

#[tokio::test]
async fn tiktok_faults_are_classified() {
    let mut env = Env::default().await;
    let tt = env.providers.get(Platform::TikTok).unwrap();
    let code = authorize(tt.as_ref(), "dave", None).await;
    let tokens = tt.exchange_code(&code, REDIRECT, None).await.unwrap();

    env.sandbox
        .set_faults(SbPlatform::Tiktok, FaultKind::RateLimited, 1);
    let err = tt.refresh(&tokens.refresh_request()).await.unwrap_err();
    assert_eq!(err.class, ErrorClass::Transient);
    assert_eq!(err.code, "rate_limit_exceeded");
    assert_eq!(err.http_status, Some(429));
    assert_eq!(err.retry_after, Some(Duration::from_secs(1)));

    env.sandbox
        .set_faults(SbPlatform::Tiktok, FaultKind::ServerError, 1);
    let err = tt.refresh(&tokens.refresh_request()).await.unwrap_err();
    assert_eq!(
        (err.class, err.code.as_str(), err.http_status),
        (ErrorClass::Transient, "internal_error", Some(503))
    );

    env.sandbox
        .set_faults(SbPlatform::Tiktok, FaultKind::InvalidGrant, 1);
    let err = tt.refresh(&tokens.refresh_request()).await.unwrap_err();
    assert_eq!(
        (err.class, err.code.as_str()),
        (ErrorClass::GrantDead, "invalid_grant")
    );

    // Faults consumed: the grant still works.
    tt.refresh(&tokens.refresh_request()).await.unwrap();
    let codes: Vec<_> = env
        .drain_calls()
        .into_iter()
        .map(|c| (c.http_status, c.error_code))
        .collect();
    assert_eq!(
        codes[1..],
        [
            (Some(429), Some("rate_limit_exceeded".to_owned())),
            (Some(503), Some("internal_error".to_owned())),
            (Some(400), Some("invalid_grant".to_owned())),
            (Some(200), None),
        ]
    );
}

#[tokio::test]
async fn timeout_is_transient() {
    let mut env = Env::start(
        SandboxConfig {
            timeout_fault_ms: 2000,
            ..SandboxConfig::default()
        },
        ProviderSettings {
            timeout: Duration::from_millis(500),
            ..ProviderSettings::default()
        },
    )
    .await;
    let tt = env.providers.get(Platform::TikTok).unwrap();
    let code = authorize(tt.as_ref(), "erin", None).await;
    let tokens = tt.exchange_code(&code, REDIRECT, None).await.unwrap();
    env.drain_calls();

    env.sandbox
        .set_faults(SbPlatform::Tiktok, FaultKind::Timeout, 1);
    // The sandbox holds the answer for 2 s; the 500 ms client timeout ends the call as a
    // `timeout` (no upper-bound timing assertion: the code says which way it ended).
    let err = tt.refresh(&tokens.refresh_request()).await.unwrap_err();
    assert_eq!(
        (err.class, err.code.as_str()),
        (ErrorClass::Transient, "timeout")
    );
    assert_eq!(err.http_status, None);

    let calls = env.drain_calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].operation, "refresh");
    assert_eq!(calls[0].http_status, None);
    assert_eq!(calls[0].error_code.as_deref(), Some("timeout"));
    assert!(calls[0].latency_ms >= 400, "{}", calls[0].latency_ms);
}

#[tokio::test]
async fn instagram_flow_and_24h_rule() {
    let mut env = Env::default().await;
    let ig = env.providers.get(Platform::Instagram).unwrap();
    assert_eq!(ig.pkce(), None);
    let code = authorize(ig.as_ref(), "alice", None).await;
    assert!(code.ends_with("#_"), "{code}");

    let tokens = ig.exchange_code(&code, REDIRECT, None).await.unwrap();
    assert!(tokens.refresh_token.is_none());
    assert_eq!(
        tokens.provider_account_id,
        sandbox::instagram_user_id("alice")
    );
    assert_eq!(
        tokens.expires_at - tokens.issued_at,
        chrono::Duration::seconds(5_184_000)
    );
    assert_eq!(tokens.refresh_expires_at, Some(tokens.expires_at));
    assert_eq!(
        tokens.scopes,
        vec![
            "instagram_business_basic",
            "instagram_business_content_publish"
        ]
    );
    assert_eq!(env.sandbox.stats().instagram.exchange_calls, 2);
    assert!(ig.last_usage().is_some());

    let profile = ig.user_info(&tokens.access_token).await.unwrap();
    assert_eq!(profile.provider_account_id, tokens.provider_account_id);
    assert_eq!(profile.username.as_deref(), Some("alice"));

    // Under 24 h: refused locally, no provider call.
    let err = ig.refresh(&tokens.refresh_request()).await.unwrap_err();
    assert_eq!(err.class, ErrorClass::NotRefreshableYet);
    assert!(err.retry_after.is_some());
    assert_eq!(env.sandbox.stats().instagram.refresh_calls, 0);

    // We think it is old enough but the provider does not: its 400/100 is classified.
    let err = ig.refresh(&aged(&tokens, 25)).await.unwrap_err();
    assert_eq!(
        (err.class, err.code.as_str(), err.http_status),
        (ErrorClass::NotRefreshableYet, "100", Some(400))
    );
    assert_eq!(env.sandbox.stats().instagram.refresh_calls, 1);

    // A day later on the provider's clock the refresh succeeds.
    env.sandbox.advance_clock(25 * 3600);
    let refreshed = ig.refresh(&aged(&tokens, 25)).await.unwrap();
    assert_ne!(
        refreshed.access_token.expose_secret(),
        tokens.access_token.expose_secret()
    );
    assert_eq!(refreshed.provider_account_id, tokens.provider_account_id);
    assert_eq!(refreshed.scopes, tokens.scopes);
    assert!(refreshed.refresh_token.is_none());

    // Already expired: dead locally, no provider call.
    let expired = RefreshRequest {
        expires_at: Utc::now() - chrono::Duration::seconds(1),
        ..aged(&refreshed, 2000)
    };
    let err = ig.refresh(&expired).await.unwrap_err();
    assert_eq!(
        (err.class, err.code.as_str(), err.reason()),
        (ErrorClass::GrantDead, "expired", Some("expired"))
    );
    assert_eq!(env.sandbox.stats().instagram.refresh_calls, 2);

    // Revoke is a no-op without a call.
    ig.revoke(&refreshed.access_token).await.unwrap();
    let ops: Vec<_> = env.drain_calls().iter().map(|c| c.operation).collect();
    assert_eq!(
        ops,
        vec![
            "exchange_code",
            "exchange_long_lived",
            "user_info",
            "refresh",
            "refresh"
        ]
    );
}

#[tokio::test]
async fn instagram_flat_exchange_and_bad_code() {
    let env = Env::default().await;
    env.sandbox.update_config(ConfigPatch {
        instagram_flat_exchange: Some(true),
        ..ConfigPatch::default()
    });
    let ig = env.providers.get(Platform::Instagram).unwrap();
    let code = authorize(ig.as_ref(), "bob", None).await;
    let tokens = ig.exchange_code(&code, REDIRECT, None).await.unwrap();
    assert_eq!(
        tokens.provider_account_id,
        sandbox::instagram_user_id("bob")
    );
    assert_eq!(tokens.scopes.len(), 2);

    // The code is single-use.
    let err = ig.exchange_code(&code, REDIRECT, None).await.unwrap_err();
    assert_eq!(
        (err.class, err.reason()),
        (ErrorClass::GrantDead, Some("invalid_code"))
    );
    let code = authorize(ig.as_ref(), "bob", None).await;
    let err = ig
        .exchange_code(&code, "https://other.example/cb", None)
        .await
        .unwrap_err();
    assert_eq!(err.class, ErrorClass::Config);
}

#[tokio::test]
async fn instagram_faults_and_revocation() {
    let env = Env::default().await;
    let ig = env.providers.get(Platform::Instagram).unwrap();
    let code = authorize(ig.as_ref(), "carol", None).await;
    let tokens = ig.exchange_code(&code, REDIRECT, None).await.unwrap();
    env.sandbox.advance_clock(25 * 3600);
    let req = aged(&tokens, 25);

    env.sandbox
        .set_faults(SbPlatform::Instagram, FaultKind::RateLimited, 1);
    let err = ig.refresh(&req).await.unwrap_err();
    assert_eq!(
        (err.class, err.code.as_str(), err.http_status),
        (ErrorClass::Transient, "4", Some(429))
    );
    assert_eq!(err.retry_after, Some(Duration::from_secs(1)));
    assert_eq!(err.usage().map(|u| u.call_count), Some(100));
    assert!(ig.last_usage().is_some_and(|u| u.is_exhausted()));

    env.sandbox
        .set_faults(SbPlatform::Instagram, FaultKind::ServerError, 1);
    let err = ig.refresh(&req).await.unwrap_err();
    assert_eq!(
        (err.class, err.code.as_str(), err.http_status),
        (ErrorClass::Transient, "2", Some(503))
    );

    env.sandbox
        .set_faults(SbPlatform::Instagram, FaultKind::InvalidGrant, 1);
    let err = ig.refresh(&req).await.unwrap_err();
    assert_eq!(
        (err.class, err.code.as_str()),
        (ErrorClass::GrantDead, "190/460")
    );
    assert_eq!(err.reason(), Some("password_changed"));
    assert!(err.log_id.is_some());

    ig.refresh(&req).await.unwrap();

    assert!(
        env.sandbox
            .revoke(SbPlatform::Instagram, &tokens.provider_account_id)
    );
    let err = ig.user_info(&tokens.access_token).await.unwrap_err();
    assert_eq!(
        (err.class, err.code.as_str(), err.reason_description()),
        (
            ErrorClass::GrantDead,
            "190/460",
            Some("the password was changed")
        )
    );
}

#[tokio::test]
async fn rate_limit_priorities() {
    let mut env = Env::start_waiting(
        SandboxConfig::default(),
        ProviderSettings {
            tiktok_rate_limit: RateQuota::per_second(1),
            ..ProviderSettings::default()
        },
        Duration::ZERO,
    )
    .await;
    let fast = env.providers.get_interactive(Platform::TikTok).unwrap();
    let waiting = env.providers.get(Platform::TikTok).unwrap();
    let bogus = SecretString::from("not-a-token".to_owned());

    let err = fast.user_info(&bogus).await.unwrap_err();
    assert_eq!(err.class, ErrorClass::GrantDead);
    let err = fast.user_info(&bogus).await.unwrap_err();
    assert_eq!(
        (err.class, err.code.as_str()),
        (ErrorClass::Transient, "rate_limited_local")
    );
    assert!(err.retry_after.is_some());
    assert!(err.http_status.is_none());
    // Refused locally: one recorded call only.
    assert_eq!(env.drain_calls().len(), 1);

    // The waiting handle shares the bucket and gets through once capacity returns.
    let started = std::time::Instant::now();
    let err = waiting.user_info(&bogus).await.unwrap_err();
    assert_eq!(err.class, ErrorClass::GrantDead);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(
        env.providers
            .rate_limiter(Platform::TikTok)
            .unwrap()
            .try_acquire(Endpoint::Token)
            .await
            .is_err()
    );
}

/// Collects everything logged while it is the default subscriber.
#[derive(Clone, Default)]
struct LogBuffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn instagram_me_is_versioned_and_tokens_never_reach_logs_or_records() {
    let logs = LogBuffer::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let mut env = Env::start(
        SandboxConfig::default(),
        ProviderSettings {
            instagram_graph_version: "v25.0".into(),
            ..ProviderSettings::default()
        },
    )
    .await;
    let ig = env.providers.get(Platform::Instagram).unwrap();
    let code = authorize(ig.as_ref(), "quiet", None).await;
    let tokens = ig.exchange_code(&code, REDIRECT, None).await.unwrap();
    ig.user_info(&tokens.access_token).await.unwrap();
    // A failing call logs at info level, with its URL.
    env.sandbox
        .revoke(SbPlatform::Instagram, &tokens.provider_account_id);
    let err = ig.user_info(&tokens.access_token).await.unwrap_err();
    assert!(err.is_grant_dead());
    let secret = tokens.access_token.expose_secret();
    assert!(!err.to_string().contains(secret));
    assert!(!format!("{err:?}").contains(secret));

    let calls = env.drain_calls();
    let me: Vec<_> = calls
        .iter()
        .filter(|c| c.operation == "user_info")
        .collect();
    assert_eq!(me.len(), 2);
    for call in &calls {
        assert!(!call.url.contains(secret), "{}", call.url);
        assert!(!call.url.contains(INSTAGRAM_CLIENT_SECRET), "{}", call.url);
        assert!(!call.url.contains(&code), "{}", call.url);
    }
    assert!(
        me[0].url.contains("/instagram/graph/v25.0/me?"),
        "{}",
        me[0].url
    );
    assert!(
        me[0].url.contains("access_token=%5Bredacted%5D"),
        "{}",
        me[0].url
    );
    let text = String::from_utf8_lossy(
        &logs
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    )
    .into_owned();
    assert!(text.contains("v25.0/me"), "the URL is logged: {text}");
    assert!(!text.contains(secret), "token in logs: {text}");
    assert!(!text.contains(INSTAGRAM_CLIENT_SECRET), "secret in logs");

    // An invalid version is refused at startup.
    let bad = Providers::new(
        ProviderSettings {
            instagram_graph_version: "latest".into(),
            ..ProviderSettings::default()
        },
        ProviderEndpoints::default(),
        None,
        None,
        service::providers::CallSink::noop(),
    );
    assert!(bad.is_err());
}
