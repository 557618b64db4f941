//! Fault injection, rate limiting, latency and the control endpoints.

mod common;

use std::time::{Duration, Instant};

use common::{Env, assert_graph_error, assert_oauth_error};
use reqwest::StatusCode;
use sandbox::{FaultKind, Platform, SandboxConfig, Stats, instagram_account_id, instagram_user_id};
use serde_json::Value;

fn fast_timeouts() -> SandboxConfig {
    SandboxConfig {
        timeout_fault_ms: 300,
        ..SandboxConfig::default()
    }
}

#[tokio::test]
async fn tiktok_each_fault_kind_and_refresh_token_survives() {
    let env = Env::start(fast_timeouts()).await;
    let (_access, refresh) = env.tt_tokens("faulty").await;

    env.sb
        .set_faults(Platform::Tiktok, FaultKind::RateLimited, 1);
    let r = env.tt_refresh(&refresh).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(r.str("/error/code"), "rate_limit_exceeded");
    assert!(!r.str("/error/log_id").is_empty());

    let c = env
        .control(
            "faults",
            r#"{"platform":"tiktok","kind":"server_error","count":1}"#,
        )
        .await;
    assert_eq!(c.status, StatusCode::OK, "{}", c.text);
    let r = env.tt_refresh(&refresh).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.str("/error/code"), "internal_error");

    env.sb.set_faults(Platform::Tiktok, FaultKind::Timeout, 1);
    let started = Instant::now();
    let r = env.tt_refresh(&refresh).await;
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT);
    assert!(started.elapsed() >= Duration::from_millis(300));

    env.sb
        .set_faults(Platform::Tiktok, FaultKind::InvalidGrant, 2);
    assert_oauth_error(&env.tt_refresh(&refresh).await, "invalid_grant");
    // Faults hit the exchange too.
    let code = env.tt_code(&[]).await;
    assert_oauth_error(&env.tt_exchange(&code, None).await, "invalid_grant");

    // None of the faulted calls consumed or rotated the refresh token (or the code).
    let r = env.tt_refresh(&refresh).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(env.tt_exchange(&code, None).await.status, StatusCode::OK);

    let s = env.sb.stats().tiktok;
    assert_eq!(s.faults_injected, 5);
    assert_eq!(s.rate_limited, 1);
    assert_eq!(s.reused_refresh_tokens, 0);
    assert_eq!(
        (s.token_calls, s.exchange_calls, s.refresh_calls),
        (8, 3, 5)
    );
    assert_eq!(env.sb.stats().instagram.faults_injected, 0);
}

#[tokio::test]
async fn instagram_each_fault_kind() {
    let env = Env::start(fast_timeouts()).await;
    let (short, long) = env.ig_tokens("faulty").await;
    env.sb.advance_clock(25 * 3600);

    env.sb
        .set_faults(Platform::Instagram, FaultKind::RateLimited, 1);
    let r = env.ig_refresh(&long).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(r.json["error"]["code"].as_u64(), Some(4));
    let usage: Value = serde_json::from_str(r.header("x-app-usage").expect("usage")).expect("json");
    assert_eq!(usage["call_count"].as_u64(), Some(100));

    env.sb
        .set_faults(Platform::Instagram, FaultKind::ServerError, 1);
    let r = env.ig_refresh(&long).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.json["error"]["code"].as_u64(), Some(2));
    assert_eq!(r.json["error"]["is_transient"].as_bool(), Some(true));
    assert_eq!(r.str("/error/type"), "OAuthException");

    env.sb
        .set_faults(Platform::Instagram, FaultKind::Timeout, 1);
    let started = Instant::now();
    assert_eq!(
        env.ig_refresh(&long).await.status,
        StatusCode::GATEWAY_TIMEOUT
    );
    assert!(started.elapsed() >= Duration::from_millis(300));

    env.sb
        .set_faults(Platform::Instagram, FaultKind::InvalidGrant, 2);
    assert_graph_error(&env.ig_refresh(&long).await, 190, Some(460));
    let code = env.ig_code(&[]).await;
    assert_graph_error(&env.ig_exchange(&code).await, 190, Some(460));

    assert_eq!(env.ig_refresh(&long).await.status, StatusCode::OK);
    assert_eq!(env.ig_exchange(&code).await.status, StatusCode::OK);
    let s = env.sb.stats().instagram;
    assert_eq!((s.faults_injected, s.rate_limited), (5, 1));
    assert_eq!(
        (s.token_calls, s.exchange_calls, s.refresh_calls),
        (9, 4, 5)
    );
    // Faults never touch non-token endpoints.
    env.sb
        .set_faults(Platform::Instagram, FaultKind::ServerError, 1);
    assert_graph_error(&env.ig_me(&short).await, 190, Some(463));
    assert_eq!(env.ig_me(&long).await.status, StatusCode::OK);
}

#[tokio::test]
async fn control_revoke_kills_grants() {
    let env = Env::start(SandboxConfig::default()).await;
    let (access, refresh) = env.tt_tokens("bob").await;
    let r = env
        .control(
            "revoke",
            r#"{"platform":"tiktok","providerAccountId":"tt-open-bob"}"#,
        )
        .await;
    assert_eq!(r.json, serde_json::json!({"revoked": true, "notified": []}));
    assert_oauth_error(&env.tt_refresh(&refresh).await, "invalid_grant");
    let u = env.tt_user(&access, "open_id").await;
    assert_eq!(u.status, StatusCode::UNAUTHORIZED);
    assert_eq!(u.str("/error/code"), "access_token_invalid");
    assert!(!env.sb.revoke(Platform::Tiktok, "tt-open-bob"));
    // The user can authorize again and gets a fresh, working grant.
    let (access, _) = env.tt_tokens("bob").await;
    assert_eq!(env.tt_user(&access, "open_id").await.status, StatusCode::OK);

    let (short, long) = env.ig_tokens("bob").await;
    let (_, other) = env.ig_tokens("carl").await;
    assert!(
        env.sb
            .revoke(Platform::Instagram, &instagram_user_id("bob"))
    );
    assert_graph_error(&env.ig_me(&long).await, 190, Some(460));
    assert_graph_error(&env.ig_long(&short).await, 190, Some(460));
    env.sb.advance_clock(25 * 3600);
    assert_graph_error(&env.ig_refresh(&long).await, 190, Some(460));
    assert_eq!(env.ig_me(&other).await.status, StatusCode::OK);
    // The professional account id is accepted too.
    let r = env
        .control(
            "revoke",
            &format!(
                r#"{{"platform":"instagram","providerAccountId":"{}"}}"#,
                instagram_account_id("carl")
            ),
        )
        .await;
    assert_eq!(r.json["revoked"], Value::Bool(true));
    assert_graph_error(&env.ig_me(&other).await, 190, Some(460));
}

#[tokio::test]
async fn rate_limit_bucket_returns_429_with_retry_after() {
    let env = Env::start(SandboxConfig::default()).await;
    // Burst = rate, so with 1/s the second call inside the same second is refused.
    let r = env
        .control("config", r#"{"rate_limit_per_s":1,"retry_after_s":7}"#)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["rate_limit_per_s"].as_u64(), Some(1));

    assert_oauth_error(&env.tt_refresh("rft.unknown").await, "invalid_grant");
    let r = env.tt_refresh("rft.unknown").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text);
    assert_eq!(r.header("retry-after"), Some("7"));
    assert_eq!(r.str("/error/code"), "rate_limit_exceeded");

    // Buckets are per platform: Instagram still has its token.
    assert_graph_error(&env.ig_refresh("IGAAunknown").await, 190, None);
    let r = env.ig_refresh("IGAAunknown").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text);
    assert_eq!(r.header("retry-after"), Some("7"));
    assert_eq!(r.json["error"]["code"].as_u64(), Some(4));
    let usage: Value = serde_json::from_str(r.header("x-app-usage").expect("usage")).expect("json");
    assert_eq!(usage["call_count"].as_u64(), Some(100));

    let stats = env.sb.stats();
    assert_eq!(stats.tiktok.rate_limited, 1);
    assert_eq!(stats.instagram.rate_limited, 1);
    assert_eq!(stats.tiktok.token_calls, 2);
    assert_eq!(stats.tiktok.faults_injected, 0);

    // null switches the limiter off again.
    let r = env.control("config", r#"{"rate_limit_per_s":null}"#).await;
    assert_eq!(r.json["rate_limit_per_s"], Value::Null);
    for _ in 0..5 {
        assert_oauth_error(&env.tt_refresh("rft.unknown").await, "invalid_grant");
    }
}

#[tokio::test]
async fn latency_is_added_to_provider_calls() {
    let env = Env::start(SandboxConfig::default()).await;
    let (access, _) = env.tt_tokens("slow").await;
    let r = env.control("config", r#"{"latency_ms":250}"#).await;
    assert_eq!(r.json["latency_ms"].as_u64(), Some(250));
    for call in 0..2 {
        let started = Instant::now();
        let status = if call == 0 {
            env.tt_user(&access, "open_id").await.status
        } else {
            env.tt_refresh("rft.unknown").await.status
        };
        assert!(status == StatusCode::OK || status == StatusCode::BAD_REQUEST);
        assert!(
            started.elapsed() >= Duration::from_millis(250),
            "call {call} took {:?}",
            started.elapsed()
        );
    }
    let started = Instant::now();
    env.ig_authorize(&[]).await.location();
    assert!(started.elapsed() >= Duration::from_millis(250));
}

#[tokio::test]
async fn control_endpoints_validate_input_and_report_state() {
    let env = Env::start(SandboxConfig::default()).await;
    for (path, body) in [
        ("faults", "{not json"),
        (
            "faults",
            r#"{"platform":"myspace","kind":"timeout","count":1}"#,
        ),
        (
            "faults",
            r#"{"platform":"tiktok","kind":"meltdown","count":1}"#,
        ),
        ("config", r#"{"latency":5}"#),
        ("config", r#"{"latency_ms":"slow"}"#),
        ("revoke", r#"{"platform":"tiktok"}"#),
        ("clock", r#"{"advance":5}"#),
    ] {
        let r = env.control(path, body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path} {body}");
        assert_eq!(r.str("/error"), "bad_request");
        assert!(!r.str("/message").is_empty());
    }

    let before = env.sb.now();
    let r = env.control("clock", r#"{"advance_s":7200}"#).await;
    assert_eq!(r.json["offset_s"].as_i64(), Some(7200));
    assert!(env.sb.now() >= before + 7200);

    let (access, _) = env.tt_tokens("stat").await;
    let r = Env::send(env.http.get(env.url("/control/stats"))).await;
    assert_eq!(r.status, StatusCode::OK);
    let http_stats: Stats = serde_json::from_value(r.json.clone()).expect("stats shape");
    assert_eq!(http_stats, env.sb.stats());
    assert_eq!(http_stats.tiktok.exchange_calls, 1);
    for key in [
        "token_calls",
        "exchange_calls",
        "refresh_calls",
        "reused_refresh_tokens",
        "revoke_calls",
        "user_info_calls",
        "faults_injected",
        "rate_limited",
    ] {
        assert!(r.json["tiktok"][key].is_u64(), "tiktok.{key}");
        assert!(r.json["instagram"][key].is_u64(), "instagram.{key}");
    }

    env.control("config", r#"{"tiktok_access_ttl_s":5}"#).await;
    env.sb
        .set_faults(Platform::Tiktok, FaultKind::ServerError, 3);
    let r = env.control("reset", "").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(env.sb.stats(), Stats::default());
    assert_eq!(env.sb.config(), SandboxConfig::default());
    assert_eq!(
        env.tt_user(&access, "open_id").await.status,
        StatusCode::UNAUTHORIZED
    );
    // Faults were cleared too.
    let (_, refresh) = env.tt_tokens("stat").await;
    assert_eq!(env.tt_refresh(&refresh).await.status, StatusCode::OK);
    let r = Env::send(env.http.get(env.url("/control/config"))).await;
    assert_eq!(
        r.json["tiktok_access_ttl_s"].as_i64(),
        Some(sandbox::TIKTOK_ACCESS_TTL_S)
    );
}
