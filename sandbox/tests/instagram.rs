//! Instagram API with Instagram Login flows over real HTTP.

mod common;

use common::{Env, IG_SCOPES, REDIRECT, assert_graph_error, qp};
use reqwest::StatusCode;
use sandbox::{
    ConfigPatch, INSTAGRAM_CLIENT_ID, SandboxConfig, instagram_account_id, instagram_user_id,
};
use serde_json::Value;

const HOUR: i64 = 3600;

#[tokio::test]
async fn full_flow_long_lived_refresh_24h_rule_and_expiry() {
    let env = Env::start(SandboxConfig::default()).await;
    let loc = env.ig_authorize(&[]).await.location();
    assert_eq!(loc.fragment(), Some("_"), "Instagram appends #_");
    assert_eq!(qp(&loc, "state").as_deref(), Some("ig-st"));
    assert!(loc.as_str().starts_with(REDIRECT));
    let code = qp(&loc, "code").expect("code");

    let r = env.ig_exchange(&code).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.str("/data/0/user_id"), instagram_user_id("demo"));
    assert_eq!(r.str("/data/0/permissions"), IG_SCOPES);
    let short = r.str("/data/0/access_token").to_owned();

    let me = env.ig_me(&short).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.text);
    assert_eq!(me.str("/username"), "demo");
    assert_eq!(me.str("/user_id"), instagram_account_id("demo"));
    assert_eq!(me.str("/id"), instagram_user_id("demo"));
    let usage: Value =
        serde_json::from_str(me.header("x-app-usage").expect("X-App-Usage")).expect("json");
    assert_eq!(usage["call_count"].as_u64(), Some(0));

    let r = env.ig_long(&short).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.str("/token_type"), "bearer");
    assert_eq!(r.json["expires_in"].as_i64(), Some(5_184_000));
    assert!(r.header("x-app-usage").is_some());
    let long = r.str("/access_token").to_owned();
    assert_ne!(long, short);

    // Too young to refresh.
    let r = env.ig_refresh(&long).await;
    assert_graph_error(&r, 100, None);
    assert!(r.str("/error/message").contains("24 hours"), "{}", r.text);

    env.sb.advance_clock(25 * HOUR);
    let r = env.ig_refresh(&long).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.str("/token_type"), "bearer");
    assert_eq!(r.json["expires_in"].as_i64(), Some(5_184_000));
    let refreshed = r.str("/access_token").to_owned();
    assert_ne!(refreshed, long);
    // Instagram does not revoke the old token on refresh.
    assert_eq!(env.ig_me(&long).await.status, StatusCode::OK);
    // The short-lived token expired after 1 h.
    assert_graph_error(&env.ig_long(&short).await, 190, Some(463));

    // 60 days after issue the first long-lived token is dead; the refreshed one is not.
    env.sb.advance_clock(5_184_000 - 25 * HOUR);
    assert_graph_error(&env.ig_refresh(&long).await, 190, Some(463));
    assert_graph_error(&env.ig_me(&long).await, 190, Some(463));
    let r = env.ig_refresh(&refreshed).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);

    let stats = env.sb.stats().instagram;
    assert_eq!(stats.exchange_calls, 3);
    assert_eq!(stats.refresh_calls, 4);
    assert_eq!(stats.token_calls, 7);
    assert_eq!(stats.user_info_calls, 3);
}

#[tokio::test]
async fn flat_exchange_shape_is_switchable() {
    let env = Env::start(SandboxConfig::default()).await;
    env.sb.update_config(ConfigPatch {
        instagram_flat_exchange: Some(true),
        ..ConfigPatch::default()
    });
    let code = env.ig_code(&[("sandbox_user", "erin")]).await;
    let r = env.ig_exchange(&code).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.json.get("data").is_none());
    let expected: u64 = instagram_user_id("erin").parse().expect("numeric id");
    assert_eq!(r.json["user_id"].as_u64(), Some(expected));
    assert_eq!(
        r.json["permissions"],
        serde_json::json!([
            "instagram_business_basic",
            "instagram_business_content_publish"
        ])
    );
    let me = env.ig_me(r.str("/access_token")).await;
    assert_eq!(me.str("/username"), "erin");
}

#[tokio::test]
async fn authorize_variants_and_exchange_errors() {
    let env = Env::start(SandboxConfig::default()).await;
    let loc = env.ig_authorize(&[("sandbox_deny", "1")]).await.location();
    assert_eq!(qp(&loc, "error").as_deref(), Some("access_denied"));
    assert_eq!(qp(&loc, "error_reason").as_deref(), Some("user_denied"));
    assert!(qp(&loc, "error_description").is_some());
    assert_eq!(qp(&loc, "state").as_deref(), Some("ig-st"));
    assert_eq!(qp(&loc, "code"), None);

    // Codes are one-time; a code with the `#_` suffix left on is not a valid code.
    let code = env.ig_code(&[]).await;
    assert_graph_error(&env.ig_exchange(&format!("{code}#_")).await, 100, None);
    assert_eq!(env.ig_exchange(&code).await.status, StatusCode::OK);
    let r = env.ig_exchange(&code).await;
    assert_graph_error(&r, 100, None);
    assert!(r.str("/error/message").contains("used"), "{}", r.text);

    let code = env.ig_code(&[]).await;
    let r = Env::send(
        env.http
            .post(env.url("/instagram/auth/oauth/access_token"))
            .form(&[
                ("client_id", INSTAGRAM_CLIENT_ID),
                ("client_secret", "wrong"),
                ("grant_type", "authorization_code"),
                ("redirect_uri", REDIRECT),
                ("code", &code),
            ]),
    )
    .await;
    assert_graph_error(&r, 101, None);

    // sandbox_grant narrows the scopes; without instagram_business_basic /me is refused.
    let loc = env
        .ig_authorize(&[("sandbox_grant", "instagram_business_content_publish")])
        .await
        .location();
    let r = env.ig_exchange(&qp(&loc, "code").expect("code")).await;
    assert_eq!(
        r.str("/data/0/permissions"),
        "instagram_business_content_publish"
    );
    assert_graph_error(&env.ig_me(r.str("/data/0/access_token")).await, 10, None);

    assert_graph_error(&env.ig_me("IGAAnot-a-token").await, 190, None);
    let (short, _long) = env.ig_tokens("frank").await;
    env.sb.advance_clock(30 * HOUR);
    // Only long-lived tokens can be refreshed (the short one has also expired by now).
    assert_graph_error(&env.ig_refresh(&short).await, 190, Some(463));
}

#[tokio::test]
async fn refresh_of_short_lived_token_is_refused() {
    let env = Env::start(SandboxConfig {
        instagram_short_ttl_s: 10 * 24 * HOUR,
        ..SandboxConfig::default()
    })
    .await;
    let (short, _long) = env.ig_tokens("gina").await;
    env.sb.advance_clock(25 * HOUR);
    let r = env.ig_refresh(&short).await;
    assert_graph_error(&r, 100, None);
    assert!(r.str("/error/message").contains("long-lived"), "{}", r.text);
}
