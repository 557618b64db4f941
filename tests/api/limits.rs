//! Cost limits: every limit refuses with its stable code while the server keeps serving
//! (each test ends with a positive control on the same server).

use chrono::Utc;
use entity::provider_call;
use sea_orm::{EntityTrait, Set};
use serde_json::{Value, json};

use crate::{
    helpers::{Backend, TestApp, error_code},
    on_both_backends,
};

const VIEWER: &str = "{ viewer { role tenant { name } } }";

/// The server still answers an ordinary query with this key.
async fn still_serving(app: &TestApp, key: &str) {
    let data = app.gql_ok(key, VIEWER, json!({})).await;
    assert!(data["viewer"]["role"].is_string(), "{data}");
}

async fn complexity_multiplies_by_page_size(app: TestApp) {
    let one = "accounts(first: 100) { nodes { refreshHistory(first: 100) { nodes { outcome attempt latencyMs } } } }";
    // One such field could return 10,000 attempts: about 40,000 potential nodes, accepted.
    app.gql_ok(&app.admin_key, &format!("{{ {one} }}"), json!({}))
        .await;
    // Two of them are over the 50,000 node limit, though each counts only a few fields.
    let body = app
        .gql(
            Some(&app.admin_key),
            &format!("{{ a: {one} b: {one} }}"),
            json!({}),
        )
        .await;
    assert_eq!(error_code(&body), Some("QUERY_TOO_COMPLEX"), "{body}");
    assert_eq!(body["errors"][0]["extensions"]["maxComplexity"], 50_000);
    // The measured attack of the issue: 140 aliases of that field.
    let attack: String = (0..140).map(|i| format!("a{i}: {one} ")).collect();
    let body = app
        .gql(Some(&app.admin_key), &format!("{{ {attack} }}"), json!({}))
        .await;
    assert_eq!(error_code(&body), Some("QUERY_TOO_COMPLEX"), "{body}");
    // Pages default to 20 and never count above 100, whatever `first` says.
    let body = app
        .gql(
            Some(&app.admin_key),
            "{ accounts(first: 1000) { nodes { id } } }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&body), Some("BAD_USER_INPUT"), "{body}");
    still_serving(&app, &app.admin_key).await;
}

async fn root_fields_and_aliases_are_capped(app: TestApp) {
    let roots: String = (0..21)
        .map(|i| format!("v{i}: viewer {{ role }} "))
        .collect();
    let body = app
        .gql(Some(&app.admin_key), &format!("{{ {roots} }}"), json!({}))
        .await;
    assert_eq!(error_code(&body), Some("QUERY_TOO_COMPLEX"), "{body}");
    let aliases: String = (0..31).map(|i| format!("t{i}: __typename ")).collect();
    let body = app
        .gql(
            Some(&app.admin_key),
            &format!("{{ viewer {{ {aliases} }} }}"),
            json!({}),
        )
        .await;
    assert_eq!(error_code(&body), Some("QUERY_TOO_COMPLEX"), "{body}");
    let ok: String = (0..20)
        .map(|i| format!("v{i}: viewer {{ role }} "))
        .collect();
    let data = app
        .gql_ok(&app.admin_key, &format!("{{ {ok} }}"), json!({}))
        .await;
    assert_eq!(data["v19"]["role"], "ADMIN");
}

async fn long_strings_are_bad_input(app: TestApp) {
    let huge = "x".repeat(500 * 1024);
    let query = "query($search: String) { accounts(filter: {search: $search}) { nodes { id } } }";
    let body = app
        .gql(Some(&app.admin_key), query, json!({ "search": huge }))
        .await;
    assert_eq!(error_code(&body), Some("BAD_USER_INPUT"), "{body}");
    let inline = format!(
        "{{ accounts(filter: {{search: \"{}\"}}) {{ nodes {{ id }} }} }}",
        "y".repeat(5000)
    );
    let body = app.gql(Some(&app.admin_key), &inline, json!({})).await;
    assert_eq!(error_code(&body), Some("BAD_USER_INPUT"), "{body}");
    // Nested inside an input object or list, too.
    let body = app
        .gql(
            Some(&app.admin_key),
            "mutation($input: CreateApiKeyInput!) { createApiKey(input: $input) { key } }",
            json!({ "input": { "name": "n".repeat(5000), "role": "VIEWER" } }),
        )
        .await;
    assert_eq!(error_code(&body), Some("BAD_USER_INPUT"), "{body}");
    let data = app
        .gql_ok(&app.admin_key, query, json!({ "search": "abc" }))
        .await;
    assert_eq!(data["accounts"]["nodes"], json!([]));
}

async fn provider_stats_windows_are_bounded(app: TestApp) {
    let operator = app.key_for_tenant("default", "OPERATOR").await;
    for window in ["300000y", "367d", "0s", "99999999999999999999y"] {
        let body = app
            .gql(
                Some(&operator),
                "query($w: String) { providerStats(window: $w) { platform } }",
                json!({ "w": window }),
            )
            .await;
        assert_eq!(
            error_code(&body),
            Some("BAD_USER_INPUT"),
            "{window}: {body}"
        );
    }
    let data = app
        .gql_ok(
            &operator,
            "{ providerStats(window: \"366d\") { platform } }",
            json!({}),
        )
        .await;
    assert!(data["providerStats"].is_array());
}

async fn provider_stats_aggregate_in_the_database(app: TestApp) {
    let operator = app.key_for_tenant("default", "OPERATOR").await;
    let now = Utc::now();
    let row = |latency: i32, error: bool, minutes_ago: i64| provider_call::ActiveModel {
        platform: Set(service::domain::Platform::TikTok),
        operation: Set("refresh".into()),
        http_status: Set(Some(if error { 500 } else { 200 })),
        error_code: Set(error.then(|| "server_error".to_owned())),
        latency_ms: Set(latency),
        occurred_at: Set(now - chrono::Duration::minutes(minutes_ago)),
        ..Default::default()
    };
    // 100 recent calls with latencies 1..=100 ms, every tenth failing; 50 old ones.
    let recent = (1..=100).map(|ms| row(ms, ms % 10 == 0, 1));
    let old = (0..50).map(|_| row(10_000, true, 120));
    provider_call::Entity::insert_many(recent.chain(old))
        .exec(&app.db)
        .await
        .expect("calls inserted");
    let data = app
        .gql_ok(
            &operator,
            "{ providerStats(window: \"1h\") { platform operation requests errors errorRate p50LatencyMs p95LatencyMs } }",
            json!({}),
        )
        .await;
    let rows = data["providerStats"].as_array().expect("rows");
    let refresh: &Value = rows
        .iter()
        .find(|r| r["operation"] == "refresh")
        .unwrap_or_else(|| panic!("{data}"));
    assert_eq!(refresh["platform"], "TIKTOK");
    assert_eq!(refresh["requests"], 100);
    assert_eq!(refresh["errors"], 10);
    assert_eq!(refresh["errorRate"], 0.1);
    assert_eq!(refresh["p50LatencyMs"], 50);
    assert_eq!(refresh["p95LatencyMs"], 95);
    let data = app
        .gql_ok(
            &operator,
            "{ providerStats(window: \"3h\") { operation requests errors } }",
            json!({}),
        )
        .await;
    assert_eq!(data["providerStats"][0]["requests"], 150);
    assert_eq!(data["providerStats"][0]["errors"], 60);
}

on_both_backends!(
    complexity_multiplies_by_page_size,
    root_fields_and_aliases_are_capped,
    long_strings_are_bad_input,
    provider_stats_windows_are_bounded,
    provider_stats_aggregate_in_the_database,
);

#[tokio::test]
async fn each_key_is_rate_limited_with_retry_after() {
    let app = TestApp::spawn_with(
        Backend::Sqlite,
        &["--rate-per-minute", "1", "--rate-burst", "3"],
    )
    .await;
    let key = app.key_for_tenant("default", "VIEWER").await;
    let send = |key: String| {
        let request = app
            .client
            .post(app.url("/graphql"))
            .bearer_auth(key)
            .json(&json!({ "query": VIEWER }));
        async move { request.send().await.expect("sent") }
    };
    for _ in 0..3 {
        assert_eq!(send(key.clone()).await.status(), 200);
    }
    let refused = send(key.clone()).await;
    assert_eq!(refused.status(), 429);
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let body: Value = refused.json().await.expect("json");
    assert_eq!(error_code(&body), Some("RATE_LIMITED"));
    assert_eq!(
        body["errors"][0]["extensions"]["retryAfterSeconds"],
        retry_after
    );
    // Another key has its own budget.
    still_serving(&app, &app.admin_key).await;
}

#[tokio::test]
async fn a_slow_request_times_out_and_the_server_keeps_serving() {
    let app = TestApp::spawn_with(Backend::Sqlite, &["--request-timeout", "300ms"]).await;
    let integrator = app.key_for_tenant("default", "INTEGRATOR").await;
    let ids = app.seed_connected("default", "slow", 1).await;
    // Expiring within minutes: accessToken refreshes first, at a slow platform.
    app.expire_in(&ids, 2).await;
    app.sandbox.update_config(sandbox::ConfigPatch {
        latency_ms: Some(1500),
        ..Default::default()
    });
    let response = app
        .client
        .post(app.url("/graphql"))
        .bearer_auth(&integrator)
        .json(&json!({
            "query": "query($id: ID!) { accessToken(accountId: $id) { token } }",
            "variables": { "id": crate::helpers::global_id("SocialAccount", ids[0]) },
        }))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 504);
    let body: Value = response.json().await.expect("json");
    assert_eq!(error_code(&body), Some("REQUEST_TIMEOUT"), "{body}");
    still_serving(&app, &integrator).await;
}
