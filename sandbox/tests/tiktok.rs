//! TikTok Login Kit v2 flows over real HTTP.

mod common;

use common::{
    Env, REDIRECT, TT_SCOPES, VERIFIER, assert_oauth_error, challenge, challenge_base64url, qp,
};
use reqwest::StatusCode;
use sandbox::{SandboxConfig, TIKTOK_CLIENT_KEY, TIKTOK_CLIENT_SECRET, TikTokAppType};

const BASIC_FIELDS: &str = "open_id,union_id,avatar_url,display_name";

#[tokio::test]
async fn full_flow_refresh_rotates_and_reuse_is_detected() {
    let env = Env::start(SandboxConfig::default()).await;
    let ch = challenge(VERIFIER);
    let r = env
        .tt_authorize(&[("code_challenge", &ch), ("code_challenge_method", "S256")])
        .await;
    let loc = r.location();
    assert_eq!(
        loc.as_str().split('?').next(),
        Some(REDIRECT),
        "redirects to the registered URI"
    );
    assert_eq!(qp(&loc, "scopes").as_deref(), Some(TT_SCOPES));
    assert_eq!(qp(&loc, "state").as_deref(), Some("st-1"));
    assert_eq!(loc.fragment(), None);
    let code = qp(&loc, "code").expect("code");

    let r = env.tt_exchange(&code, Some(VERIFIER)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.str("/open_id"), "tt-open-demo");
    assert_eq!(r.str("/scope"), TT_SCOPES);
    assert_eq!(r.str("/token_type"), "Bearer");
    assert_eq!(
        r.json["expires_in"].as_i64(),
        Some(sandbox::TIKTOK_ACCESS_TTL_S)
    );
    assert_eq!(
        r.json["refresh_expires_in"].as_i64(),
        Some(sandbox::TIKTOK_REFRESH_TTL_S)
    );
    let access1 = r.str("/access_token").to_owned();
    let refresh1 = r.str("/refresh_token").to_owned();
    assert!(access1.starts_with("act.") && refresh1.starts_with("rft."));

    let u = env.tt_user(&access1, BASIC_FIELDS).await;
    assert_eq!(u.status, StatusCode::OK, "{}", u.text);
    assert_eq!(u.str("/data/user/open_id"), "tt-open-demo");
    assert_eq!(u.str("/data/user/union_id"), "tt-union-demo");
    assert_eq!(u.str("/data/user/display_name"), "demo");
    assert!(u.str("/data/user/avatar_url").starts_with("https://"));
    assert_eq!(u.str("/error/code"), "ok");
    assert!(!u.str("/error/log_id").is_empty());

    env.sb.advance_clock(100);
    let r = env.tt_refresh(&refresh1).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let access2 = r.str("/access_token").to_owned();
    let refresh2 = r.str("/refresh_token").to_owned();
    assert_ne!(access2, access1);
    assert_ne!(refresh2, refresh1);
    assert_eq!(
        r.json["expires_in"].as_i64(),
        Some(sandbox::TIKTOK_ACCESS_TTL_S)
    );
    // The refresh lifetime is fixed at the code exchange and does not extend on rotation.
    assert_eq!(
        r.json["refresh_expires_in"].as_i64(),
        Some(sandbox::TIKTOK_REFRESH_TTL_S - 100)
    );
    assert_eq!(r.str("/open_id"), "tt-open-demo");
    assert_eq!(
        env.tt_user(&access2, BASIC_FIELDS).await.status,
        StatusCode::OK
    );

    // Rotated-out token presented again: rejected, counted, and the grant is killed.
    let r = env.tt_refresh(&refresh1).await;
    assert_oauth_error(&r, "invalid_grant");
    let stats = env.sb.stats().tiktok;
    assert_eq!(stats.reused_refresh_tokens, 1);
    assert_eq!(
        (stats.token_calls, stats.exchange_calls, stats.refresh_calls),
        (3, 1, 2)
    );
    assert_oauth_error(&env.tt_refresh(&refresh2).await, "invalid_grant");
    let u = env.tt_user(&access2, BASIC_FIELDS).await;
    assert_eq!(u.status, StatusCode::UNAUTHORIZED);
    assert_eq!(u.str("/error/code"), "access_token_invalid");
    assert_eq!(env.sb.stats().tiktok.reused_refresh_tokens, 1);
    assert_eq!(env.sb.stats().tiktok.user_info_calls, 3);
}

#[tokio::test]
async fn pkce_is_enforced() {
    let env = Env::start(SandboxConfig::default()).await;
    let ch = challenge(VERIFIER);
    let pkce = [
        ("code_challenge", ch.as_str()),
        ("code_challenge_method", "S256"),
    ];
    let code = env.tt_code(&pkce).await;

    let wrong = "wrong-verifier-0123456789-abcdefghijklmnopqrstuvwxyz-ABCDEF";
    for verifier in [Some(wrong), None] {
        let r = env.tt_exchange(&code, verifier).await;
        assert_oauth_error(&r, "invalid_request");
        assert_eq!(
            r.str("/error_description"),
            "Code verifier or code challenge is invalid."
        );
    }
    // Failed attempts do not burn the code; the right verifier still works.
    let r = env.tt_exchange(&code, Some(VERIFIER)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);

    // Only S256 is supported.
    let loc = env
        .tt_authorize(&[
            ("code_challenge", VERIFIER),
            ("code_challenge_method", "plain"),
        ])
        .await
        .location();
    assert_eq!(qp(&loc, "error").as_deref(), Some("invalid_request"));
    assert_eq!(qp(&loc, "state").as_deref(), Some("st-1"));
    assert_eq!(qp(&loc, "code"), None);

    // The RFC 7636 base64url encoding is not what TikTok checks.
    let b64 = challenge_base64url(VERIFIER);
    let code = env
        .tt_code(&[("code_challenge", &b64), ("code_challenge_method", "S256")])
        .await;
    let r = env.tt_exchange(&code, Some(VERIFIER)).await;
    assert_oauth_error(&r, "invalid_request");
    assert_eq!(
        r.str("/error_description"),
        "Code verifier or code challenge is invalid."
    );
}

#[tokio::test]
async fn desktop_apps_must_use_pkce_web_apps_need_not() {
    let env = Env::start(SandboxConfig {
        tiktok_app_type: TikTokAppType::Desktop,
        ..SandboxConfig::default()
    })
    .await;
    let loc = env.tt_authorize(&[]).await.location();
    assert_eq!(qp(&loc, "error").as_deref(), Some("invalid_request"));
    assert_eq!(qp(&loc, "code"), None);
    let ch = challenge(VERIFIER);
    let code = env
        .tt_code(&[("code_challenge", &ch), ("code_challenge_method", "S256")])
        .await;
    let r = env.tt_exchange(&code, Some(VERIFIER)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);

    let web = Env::start(SandboxConfig::default()).await;
    let code = web.tt_code(&[]).await;
    assert_eq!(web.tt_exchange(&code, None).await.status, StatusCode::OK);
}

#[tokio::test]
async fn codes_are_one_time_bound_to_redirect_uri_and_expire() {
    let env = Env::start(SandboxConfig::default()).await;
    let code = env.tt_code(&[]).await;
    assert_eq!(env.tt_exchange(&code, None).await.status, StatusCode::OK);
    let r = env.tt_exchange(&code, None).await;
    assert_oauth_error(&r, "invalid_grant");
    assert!(r.str("/error_description").contains("used"), "{}", r.text);

    let code = env.tt_code(&[]).await;
    let r = env
        .tt_token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "https://app.example/other"),
        ])
        .await;
    assert_oauth_error(&r, "invalid_grant");

    let code = env.tt_code(&[]).await;
    env.sb.advance_clock(601);
    let r = env.tt_exchange(&code, None).await;
    assert_oauth_error(&r, "invalid_grant");
    assert!(
        r.str("/error_description").contains("expired"),
        "{}",
        r.text
    );

    assert_oauth_error(
        &env.tt_exchange("no-such-code", None).await,
        "invalid_grant",
    );
}

#[tokio::test]
async fn authorize_sandbox_params_and_oauth_errors() {
    let env = Env::start(SandboxConfig::default()).await;
    let loc = env.tt_authorize(&[("sandbox_deny", "1")]).await.location();
    assert_eq!(qp(&loc, "error").as_deref(), Some("access_denied"));
    assert!(qp(&loc, "error_description").is_some());
    assert_eq!(qp(&loc, "state").as_deref(), Some("st-1"));
    assert_eq!(qp(&loc, "code"), None);

    let loc = env
        .tt_authorize(&[
            ("sandbox_user", "alice"),
            ("sandbox_grant", "user.info.basic"),
        ])
        .await
        .location();
    assert_eq!(qp(&loc, "scopes").as_deref(), Some("user.info.basic"));
    let r = env
        .tt_exchange(&qp(&loc, "code").expect("code"), None)
        .await;
    assert_eq!(r.str("/open_id"), "tt-open-alice");
    assert_eq!(r.str("/scope"), "user.info.basic");
    let access = r.str("/access_token").to_owned();
    let u = env.tt_user(&access, "open_id,display_name").await;
    assert_eq!(u.str("/data/user/display_name"), "alice");
    let u = env.tt_user(&access, "open_id,bio_description").await;
    assert_eq!(u.status, StatusCode::UNAUTHORIZED);
    assert_eq!(u.str("/error/code"), "scope_not_authorized");
    let u = env.tt_user(&access, "open_id,shoe_size").await;
    assert_eq!(u.status, StatusCode::BAD_REQUEST);
    assert_eq!(u.str("/error/code"), "invalid_params");

    // Unknown client: TikTok cannot redirect back, so it answers with an error itself.
    let r = Env::send(
        env.http
            .get(env.url("/tiktok/auth/v2/auth/authorize/"))
            .query(&[
                ("client_key", "nope"),
                ("scope", TT_SCOPES),
                ("response_type", "code"),
                ("redirect_uri", REDIRECT),
            ]),
    )
    .await;
    assert_oauth_error(&r, "invalid_client");

    let r = Env::send(
        env.http
            .post(env.url("/tiktok/api/v2/oauth/token/"))
            .form(&[
                ("client_key", TIKTOK_CLIENT_KEY),
                ("client_secret", "wrong"),
                ("grant_type", "refresh_token"),
                ("refresh_token", "x"),
            ]),
    )
    .await;
    assert_oauth_error(&r, "invalid_client");
    let r = env.tt_token(&[("grant_type", "password")]).await;
    assert_oauth_error(&r, "unsupported_grant_type");
    let r = env.tt_token(&[("grant_type", "authorization_code")]).await;
    assert_oauth_error(&r, "invalid_request");
    let r = env.tt_token(&[]).await;
    assert_oauth_error(&r, "invalid_request");
}

#[tokio::test]
async fn access_token_expires_but_refresh_still_works() {
    let env = Env::start(SandboxConfig::default()).await;
    let (access, refresh) = env.tt_tokens("carol").await;
    env.sb.advance_clock(sandbox::TIKTOK_ACCESS_TTL_S + 1);
    let u = env.tt_user(&access, "open_id").await;
    assert_eq!(u.status, StatusCode::UNAUTHORIZED);
    assert_eq!(u.str("/error/code"), "access_token_invalid");
    let r = env.tt_refresh(&refresh).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let u = env.tt_user(r.str("/access_token"), "open_id").await;
    assert_eq!(u.str("/data/user/open_id"), "tt-open-carol");

    // Refresh tokens die at refresh_expires_in (counted from the code exchange).
    let refresh2 = r.str("/refresh_token").to_owned();
    env.sb.advance_clock(sandbox::TIKTOK_REFRESH_TTL_S);
    assert_oauth_error(&env.tt_refresh(&refresh2).await, "invalid_grant");
    assert_eq!(env.sb.stats().tiktok.reused_refresh_tokens, 0);
}

#[tokio::test]
async fn revoke_endpoint_kills_the_grant() {
    let env = Env::start(SandboxConfig::default()).await;
    let (access, refresh) = env.tt_tokens("dave").await;
    let r = Env::send(
        env.http
            .post(env.url("/tiktok/api/v2/oauth/revoke/"))
            .form(&[
                ("client_key", TIKTOK_CLIENT_KEY),
                ("client_secret", TIKTOK_CLIENT_SECRET),
                ("token", &access),
            ]),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json, serde_json::json!({}));
    assert_eq!(
        env.tt_user(&access, "open_id").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_oauth_error(&env.tt_refresh(&refresh).await, "invalid_grant");
    let r = Env::send(
        env.http
            .post(env.url("/tiktok/api/v2/oauth/revoke/"))
            .form(&[("token", access.as_str())]),
    )
    .await;
    assert_oauth_error(&r, "invalid_request");
    assert_eq!(env.sb.stats().tiktok.revoke_calls, 2);
}
