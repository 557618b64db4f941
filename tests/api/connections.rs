//! Connections end to end against the sandbox: connect, reconnect, refresh (single-flight,
//! dead grants, transient storms), access tokens, disconnect, state and redirect checks.

use chrono::Utc;
use entity::{oauth_state, oauth_token};
use sandbox::{FaultKind, Platform as SandboxPlatform};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, sea_query::Expr};
use serde_json::{Value, json};

use crate::{
    helpers::{APP_REDIRECT, TestApp, error_code},
    on_both_backends,
};

on_both_backends!(
    both_platforms_connect_and_reconnect_keeps_the_account,
    hundred_concurrent_refreshes_make_one_provider_call,
    concurrent_refreshes_on_two_nodes_make_one_provider_call,
    single_page_apps_complete_with_the_same_key,
    revoked_grants_require_reconnect,
    transient_failures_never_require_reconnect,
    instagram_young_tokens_are_not_refreshed,
    access_token_is_gated_audited_and_refreshed_near_expiry,
    disconnect_revokes_and_deletes_tokens,
    states_are_one_time_bound_and_expiring,
    new_operations_are_tenant_scoped,
    provider_calls_feed_stats_and_health,
);

const ACCOUNT: &str = "query($id: ID!) { account(id: $id) { id status statusReason username providerAccountId platform tokenHealth { state expiresAt refreshExpiresAt lastRefreshedAt scopes } } }";
const REFRESH: &str = "mutation($id: ID!) { refreshAccountToken(accountId: $id) { refreshed account { status } error { code message action retryAfterSeconds } } }";
const ACCESS: &str = "query($id: ID!) { accessToken(accountId: $id) { token expiresAt } }";

async fn account(app: &TestApp, id: &str) -> Value {
    app.gql_ok(&app.admin_key, ACCOUNT, json!({ "id": id }))
        .await["account"]
        .clone()
}

async fn refresh(app: &TestApp, key: &str, id: &str) -> Value {
    app.gql_ok(key, REFRESH, json!({ "id": id })).await["refreshAccountToken"].clone()
}

/// Makes the stored token look `hours` old, in the database and in the sandbox's clock.
async fn age_token(app: &TestApp, id: &str, hours: i64) {
    let row = crate::helpers::decode_id(id);
    oauth_token::Entity::update_many()
        .col_expr(
            oauth_token::Column::IssuedAt,
            Expr::value(Utc::now() - chrono::Duration::hours(hours)),
        )
        .filter(oauth_token::Column::AccountId.eq(row))
        .exec(&app.db)
        .await
        .expect("token aged");
    app.sandbox.advance_clock(hours * 3600);
}

async fn both_platforms_connect_and_reconnect_keeps_the_account(app: TestApp) {
    let tiktok = app.connect(&app.admin_key, "TIKTOK", "alice").await;
    let instagram = app.connect(&app.admin_key, "INSTAGRAM", "shop").await;

    let tt = account(&app, &tiktok).await;
    assert_eq!(tt["platform"], "TIKTOK");
    assert_eq!(tt["status"], "ACTIVE");
    assert_eq!(tt["providerAccountId"], sandbox::tiktok_open_id("alice"));
    assert_eq!(tt["tokenHealth"]["state"], "VALID");
    assert!(tt["tokenHealth"]["refreshExpiresAt"].is_string());
    let ig = account(&app, &instagram).await;
    assert_eq!(ig["platform"], "INSTAGRAM");
    assert_eq!(ig["username"], "shop");
    assert_eq!(ig["tokenHealth"]["state"], "VALID");
    let days_left = chrono::DateTime::parse_from_rfc3339(
        ig["tokenHealth"]["expiresAt"].as_str().expect("date"),
    )
    .expect("rfc3339")
    .signed_duration_since(Utc::now())
    .num_days();
    assert!(
        (58..=60).contains(&days_left),
        "a 60-day long-lived token: {days_left}"
    );

    // Reconnecting the same TikTok user reuses the row and its history.
    let again = app
        .connect_flow(&app.admin_key, "TIKTOK", "alice", "")
        .await;
    assert_eq!(again["accountId"], tiktok);
    assert_eq!(again["result"], "reconnected");
    let listing = app
        .gql_ok(&app.admin_key, "{ accounts { totalCount } }", json!({}))
        .await;
    assert_eq!(listing["accounts"]["totalCount"], 2);
    let audit = app
        .gql_ok(
            &app.admin_key,
            "query($id: ID!) { auditLog(filter: {accountId: $id}) { nodes { action details } } }",
            json!({ "id": tiktok }),
        )
        .await;
    let actions: Vec<&str> = audit["auditLog"]["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| n["action"].as_str().expect("action"))
        .collect();
    assert_eq!(actions, ["ACCOUNT_RECONNECTED", "ACCOUNT_CONNECTED"]);
}

async fn hundred_concurrent_refreshes_make_one_provider_call(app: TestApp) {
    let id = app.connect(&app.admin_key, "TIKTOK", "busy").await;
    let before = app.sandbox.stats().tiktok;
    let calls = (0..100).map(|_| refresh(&app, &app.admin_key, &id));
    let results = futures::future::join_all(calls).await;
    let after = app.sandbox.stats().tiktok;
    assert_eq!(
        after.refresh_calls - before.refresh_calls,
        1,
        "exactly one provider call"
    );
    assert_eq!(after.reused_refresh_tokens, 0);
    assert!(results.iter().all(|r| r["error"].is_null()), "{results:?}");
    assert_eq!(results.iter().filter(|r| r["refreshed"] == true).count(), 1);

    // The stored refresh token is the rotated one: another refresh later still works.
    app.db
        .execute_unprepared("UPDATE oauth_tokens SET last_refreshed_at = NULL")
        .await
        .expect("forget the last refresh time");
    let again = refresh(&app, &app.admin_key, &id).await;
    assert_eq!(again["refreshed"], true, "{again}");
    assert_eq!(app.sandbox.stats().tiktok.reused_refresh_tokens, 0);
}

async fn concurrent_refreshes_on_two_nodes_make_one_provider_call(app: TestApp) {
    let id = app.connect(&app.admin_key, "TIKTOK", "shared").await;
    let (other, _stop) = app.second_node().await;
    // Slow provider, so the two nodes' refreshes overlap.
    app.sandbox.update_config(sandbox::ConfigPatch {
        latency_ms: Some(400),
        ..Default::default()
    });
    let before = app.sandbox.stats().tiktok.refresh_calls;
    let send = |addr: String| {
        let client = app.client.clone();
        let key = app.admin_key.clone();
        let id = id.clone();
        async move {
            let body: Value = client
                .post(format!("http://{addr}/graphql"))
                .bearer_auth(key)
                .json(&json!({ "query": REFRESH, "variables": { "id": id } }))
                .send()
                .await
                .expect("sent")
                .json()
                .await
                .expect("json");
            body["data"]["refreshAccountToken"].clone()
        }
    };
    let here = app.addr.to_string();
    let there = other.to_string();
    let calls = (0..40).map(|i| {
        send(if i % 2 == 0 {
            here.clone()
        } else {
            there.clone()
        })
    });
    let results = futures::future::join_all(calls).await;
    let stats = app.sandbox.stats().tiktok;
    assert_eq!(
        stats.refresh_calls - before,
        1,
        "one provider call across both nodes"
    );
    assert_eq!(stats.reused_refresh_tokens, 0);
    // The node that lost the race waited for the winner's tokens instead of failing.
    assert!(results.iter().all(|r| r["error"].is_null()), "{results:?}");
    assert_eq!(results.iter().filter(|r| r["refreshed"] == true).count(), 1);
    assert!(results.iter().all(|r| r["account"]["status"] == "ACTIVE"));
    assert_eq!(account(&app, &id).await["status"], "ACTIVE");
}

/// Starts a connection and lets the sandbox approve it; returns the state and the code a
/// single-page app would receive.
async fn approved_code(app: &TestApp, key: &str, platform: &str, user: &str) -> (String, String) {
    let data = app
        .gql_ok(
            key,
            "mutation($p: Platform!) { startConnection(input: {platform: $p}) { authorizationUrl state } }",
            json!({ "p": platform }),
        )
        .await;
    let authorize = data["startConnection"]["authorizationUrl"]
        .as_str()
        .expect("url");
    let state = data["startConnection"]["state"]
        .as_str()
        .expect("state")
        .to_owned();
    let launched = app.launch(authorize).await;
    let callback = app
        .follow(&format!("{}&sandbox_user={user}", launched.authorize))
        .await;
    let param = |name: &str| {
        url::Url::parse(&callback)
            .expect("url")
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    assert_eq!(
        param("state").as_deref(),
        Some(state.as_str()),
        "the platform sends back the state startConnection returned"
    );
    (state, param("code").expect("code"))
}

async fn single_page_apps_complete_with_the_same_key(app: TestApp) {
    let integrator = app.create_key(&app.admin_key, "spa", "INTEGRATOR").await;
    let (state, code) = approved_code(&app, &integrator, "INSTAGRAM", "spa_user").await;
    let complete = "mutation($s: String!, $c: String!) { completeConnection(state: $s, code: $c) { reconnected account { username status platform } } }";
    // Another key of the same tenant cannot use it.
    let body = app
        .gql(
            Some(&app.admin_key),
            complete,
            json!({ "s": state, "c": code }),
        )
        .await;
    assert_eq!(error_code(&body), Some("BAD_USER_INPUT"), "{body}");
    // The state was consumed by that attempt: start again, with the right key this time.
    let (state, code) = approved_code(&app, &integrator, "INSTAGRAM", "spa_user").await;
    let data = app
        .gql_ok(
            &integrator,
            complete,
            json!({ "s": state, "c": format!("{code}#_") }),
        )
        .await;
    assert_eq!(
        data["completeConnection"]["account"]["username"],
        "spa_user"
    );
    assert_eq!(data["completeConnection"]["account"]["status"], "ACTIVE");
    assert_eq!(data["completeConnection"]["reconnected"], false);
}

async fn revoked_grants_require_reconnect(app: TestApp) {
    let tiktok = app.connect(&app.admin_key, "TIKTOK", "gone").await;
    assert!(
        app.sandbox
            .revoke(SandboxPlatform::Tiktok, &sandbox::tiktok_open_id("gone"))
    );
    let result = refresh(&app, &app.admin_key, &tiktok).await;
    assert_eq!(result["error"]["code"], "RECONNECT_REQUIRED", "{result}");
    assert_eq!(result["error"]["action"], "Reconnect the account.");
    assert_eq!(result["account"]["status"], "RECONNECT_REQUIRED");

    let instagram = app.connect(&app.admin_key, "INSTAGRAM", "brand").await;
    age_token(&app, &instagram, 25).await;
    let ig = account(&app, &instagram).await;
    assert!(app.sandbox.revoke(
        SandboxPlatform::Instagram,
        ig["providerAccountId"].as_str().expect("id")
    ));
    let result = refresh(&app, &app.admin_key, &instagram).await;
    assert_eq!(result["error"]["code"], "RECONNECT_REQUIRED", "{result}");
    assert_eq!(
        result["error"]["message"],
        "Instagram access for @brand stopped working because the password was changed."
    );
    assert_eq!(
        account(&app, &instagram).await["status"],
        "RECONNECT_REQUIRED"
    );

    // One attempt only; a dead grant is not retried on the next request either.
    let calls = app.sandbox.stats().tiktok.refresh_calls;
    let result = refresh(&app, &app.admin_key, &tiktok).await;
    assert_eq!(result["error"]["code"], "RECONNECT_REQUIRED");
    assert_eq!(app.sandbox.stats().tiktok.refresh_calls, calls);
    let failed = app
        .gql_ok(
            &app.admin_key,
            "{ auditLog(filter: {actions: [TOKEN_REFRESH_FAILED]}) { totalCount nodes { details } } }",
            json!({}),
        )
        .await;
    assert_eq!(failed["auditLog"]["totalCount"], 2);
    assert_eq!(
        failed["auditLog"]["nodes"][0]["details"]["errorClass"],
        "grant_dead"
    );
}

async fn transient_failures_never_require_reconnect(app: TestApp) {
    app.sandbox.update_config(sandbox::ConfigPatch {
        timeout_fault_ms: Some(3_000),
        ..Default::default()
    });
    let id = app.connect(&app.admin_key, "TIKTOK", "flaky").await;
    for (kind, code) in [
        (FaultKind::RateLimited, "RATE_LIMITED"),
        (FaultKind::ServerError, "PROVIDER_UNAVAILABLE"),
        (FaultKind::Timeout, "PROVIDER_UNAVAILABLE"),
    ] {
        app.sandbox.set_faults(SandboxPlatform::Tiktok, kind, 1);
        let result = refresh(&app, &app.admin_key, &id).await;
        assert_eq!(result["error"]["code"], code, "{kind:?}: {result}");
        assert_eq!(result["account"]["status"], "REFRESH_FAILING", "{kind:?}");
        if kind == FaultKind::RateLimited {
            assert_eq!(
                result["error"]["retryAfterSeconds"], 1,
                "Retry-After is passed on"
            );
        }
    }
    let recovered = refresh(&app, &app.admin_key, &id).await;
    assert_eq!(recovered["refreshed"], true, "{recovered}");
    assert_eq!(recovered["account"]["status"], "ACTIVE");
    assert_eq!(app.sandbox.stats().tiktok.reused_refresh_tokens, 0);
}

async fn instagram_young_tokens_are_not_refreshed(app: TestApp) {
    let id = app.connect(&app.admin_key, "INSTAGRAM", "fresh").await;
    let before = app.sandbox.stats().instagram.refresh_calls;
    let result = refresh(&app, &app.admin_key, &id).await;
    assert_eq!(result["error"]["code"], "NOT_REFRESHABLE_YET", "{result}");
    assert_eq!(result["account"]["status"], "ACTIVE");
    assert_eq!(
        app.sandbox.stats().instagram.refresh_calls,
        before,
        "no provider call"
    );

    age_token(&app, &id, 25).await;
    let result = refresh(&app, &app.admin_key, &id).await;
    assert_eq!(result["refreshed"], true, "{result}");
    assert_eq!(app.sandbox.stats().instagram.refresh_calls, before + 1);
}

async fn access_token_is_gated_audited_and_refreshed_near_expiry(app: TestApp) {
    let id = app.connect(&app.admin_key, "TIKTOK", "poster").await;
    let viewer = app.create_key(&app.admin_key, "viewer", "VIEWER").await;
    let body = app.gql(Some(&viewer), ACCESS, json!({ "id": id })).await;
    assert_eq!(error_code(&body), Some("FORBIDDEN"));

    let integrator = app
        .create_key(&app.admin_key, "poster-bot", "INTEGRATOR")
        .await;
    let data = app.gql_ok(&integrator, ACCESS, json!({ "id": id })).await;
    let token = data["accessToken"]["token"]
        .as_str()
        .expect("token")
        .to_owned();
    // The token works at the provider.
    let info = app
        .client
        .get(format!(
            "{}/tiktok/api/v2/user/info/?fields=open_id,display_name",
            sandbox_base(&app)
        ))
        .bearer_auth(&token)
        .send()
        .await
        .expect("sent");
    assert_eq!(info.status(), 200);

    let reads = app
        .gql_ok(
            &app.admin_key,
            "{ auditLog(filter: {actions: [ACCESS_TOKEN_READ]}) { totalCount nodes { actor } } }",
            json!({}),
        )
        .await;
    assert_eq!(reads["auditLog"]["totalCount"], 1);

    // Under five minutes left: the read refreshes first.
    app.db
        .execute_unprepared(&format!(
            "UPDATE oauth_tokens SET expires_at = '{}'",
            (Utc::now() + chrono::Duration::minutes(2)).format("%Y-%m-%d %H:%M:%S%.f +00:00")
        ))
        .await
        .expect("token nearly expired");
    let before = app.sandbox.stats().tiktok.refresh_calls;
    let data = app.gql_ok(&integrator, ACCESS, json!({ "id": id })).await;
    assert_eq!(app.sandbox.stats().tiktok.refresh_calls, before + 1);
    assert_ne!(data["accessToken"]["token"], token.as_str(), "a new token");
    let expires = chrono::DateTime::parse_from_rfc3339(
        data["accessToken"]["expiresAt"].as_str().expect("date"),
    )
    .expect("rfc3339");
    // A fresh token of TikTok's current lifetime (2 hours).
    assert!(expires.signed_duration_since(Utc::now()).num_minutes() >= 110);
}

fn sandbox_base(app: &TestApp) -> String {
    // The sandbox URL the server was configured with.
    let addr = app.sandbox_addr;
    format!("http://{addr}/sandbox")
}

async fn disconnect_revokes_and_deletes_tokens(app: TestApp) {
    let id = app.connect(&app.admin_key, "TIKTOK", "leaving").await;
    let data = app
        .gql_ok(
            &app.admin_key,
            "mutation($id: ID!) { disconnectAccount(accountId: $id) { status tokenHealth { state } } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(data["disconnectAccount"]["status"], "DISCONNECTED");
    assert_eq!(data["disconnectAccount"]["tokenHealth"]["state"], "MISSING");
    assert_eq!(app.sandbox.stats().tiktok.revoke_calls, 1);
    assert_eq!(
        oauth_token::Entity::find()
            .all(&app.db)
            .await
            .expect("rows")
            .len(),
        0,
        "tokens deleted"
    );
    let body = app
        .gql(Some(&app.admin_key), ACCESS, json!({ "id": id }))
        .await;
    assert_eq!(error_code(&body), Some("BAD_USER_INPUT"), "{body}");
    let audit = app
        .gql_ok(
            &app.admin_key,
            "{ auditLog(filter: {actions: [ACCOUNT_DISCONNECTED]}) { nodes { details } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        audit["auditLog"]["nodes"][0]["details"]["providerRevocation"]["revoked"],
        true
    );

    // Connecting again brings the same account back.
    let again = app.connect(&app.admin_key, "TIKTOK", "leaving").await;
    assert_eq!(again, id);
    assert_eq!(account(&app, &id).await["status"], "ACTIVE");
}

async fn states_are_one_time_bound_and_expiring(app: TestApp) {
    // Forged.
    let response = app
        .client
        .get(app.url("/oauth/callback/tiktok?code=abc&state=forged"))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 400);
    assert!(
        response
            .text()
            .await
            .expect("html")
            .contains("invalid, expired or already used")
    );

    // Replayed: the callback URL works once.
    let data = app
        .gql_ok(
            &app.admin_key,
            "mutation { startConnection(input: {platform: TIKTOK, redirectAfter: \"https://app.example.test/connected?tab=social\"}) { authorizationUrl } }",
            json!({}),
        )
        .await;
    let authorize = data["startConnection"]["authorizationUrl"]
        .as_str()
        .expect("url");
    let launched = app.launch(authorize).await;
    let callback = app
        .follow(&format!("{}&sandbox_user=replay", launched.authorize))
        .await;
    let first = app.follow_with(&callback, &launched.cookie).await;
    assert!(
        first.starts_with("https://app.example.test/connected?tab=social&status=connected"),
        "{first}"
    );
    let second = app.get_with_cookie(&callback, &launched.cookie).await;
    assert_eq!(second.status(), 400, "a used state is refused");
    assert!(second.text().await.expect("html").contains("already used"));

    // Expired.
    let data = app
        .gql_ok(
            &app.admin_key,
            "mutation { startConnection(input: {platform: TIKTOK}) { authorizationUrl state } }",
            json!({}),
        )
        .await;
    let authorize = data["startConnection"]["authorizationUrl"]
        .as_str()
        .expect("url")
        .to_owned();
    let launched = app.launch(&authorize).await;
    oauth_state::Entity::update_many()
        .col_expr(
            oauth_state::Column::ExpiresAt,
            Expr::value(Utc::now() - chrono::Duration::minutes(1)),
        )
        .exec(&app.db)
        .await
        .expect("expire states");
    let callback = app
        .follow(&format!("{}&sandbox_user=late", launched.authorize))
        .await;
    let response = app.get_with_cookie(&callback, &launched.cookie).await;
    assert_eq!(response.status(), 400, "expired state refused");
    let again = app.client.get(&authorize).send().await.expect("sent");
    assert_eq!(again.status(), 400, "an expired launch URL is refused");

    // Denied by the user.
    let params = app
        .connect_flow(&app.admin_key, "INSTAGRAM", "shy", "&sandbox_deny=1")
        .await;
    assert_eq!(params["status"], "error");
    assert_eq!(params["error"], "ACCESS_DENIED");

    // Missing permissions are named.
    let params = app
        .connect_flow(
            &app.admin_key,
            "TIKTOK",
            "partial",
            "&sandbox_grant=user.info.basic",
        )
        .await;
    assert_eq!(params["error"], "MISSING_SCOPES", "{params:?}");
    assert!(params["message"].contains("video.publish"), "{params:?}");

    // Redirects outside the allow-list.
    for target in [
        "https://evil.example.com/",
        "https://app.example.test.evil.com/connected",
    ] {
        let body = app
            .gql(
                Some(&app.admin_key),
                "mutation($t: String!) { startConnection(input: {platform: TIKTOK, redirectAfter: $t}) { state } }",
                json!({ "t": target }),
            )
            .await;
        assert_eq!(
            error_code(&body),
            Some("BAD_USER_INPUT"),
            "{target}: {body}"
        );
    }
    let _ = APP_REDIRECT;
}

async fn new_operations_are_tenant_scoped(app: TestApp) {
    let id = app.connect(&app.admin_key, "TIKTOK", "private").await;
    let acme = app.key_for_tenant("acme", "ADMIN").await;
    for (query, field) in [
        (REFRESH, "refreshAccountToken"),
        (ACCESS, "accessToken"),
        (
            "mutation($id: ID!) { disconnectAccount(accountId: $id) { id } }",
            "disconnectAccount",
        ),
    ] {
        let body = app.gql(Some(&acme), query, json!({ "id": id })).await;
        assert_eq!(error_code(&body), Some("NOT_FOUND"), "{field}: {body}");
    }
    assert_eq!(
        account(&app, &id).await["status"],
        "ACTIVE",
        "acme changed nothing"
    );

    // A state started by one tenant cannot be completed by another.
    let (state, code) = approved_code(&app, &app.admin_key, "TIKTOK", "stolen").await;
    let body = app
        .gql(
            Some(&acme),
            "mutation($s: String!, $c: String!) { completeConnection(state: $s, code: $c) { account { id } } }",
            json!({ "s": state, "c": code }),
        )
        .await;
    assert_eq!(error_code(&body), Some("BAD_USER_INPUT"), "{body}");
    let listing = app
        .gql_ok(&acme, "{ accounts { totalCount } }", json!({}))
        .await;
    assert_eq!(listing["accounts"]["totalCount"], 0);
}

async fn provider_calls_feed_stats_and_health(app: TestApp) {
    app.connect(&app.admin_key, "TIKTOK", "measured").await;
    app.sandbox
        .set_faults(SandboxPlatform::Tiktok, FaultKind::ServerError, 1);
    let failed = app
        .gql_ok(
            &app.admin_key,
            "mutation { startConnection(input: {platform: TIKTOK}) { authorizationUrl } }",
            json!({}),
        )
        .await;
    let authorize = failed["startConnection"]["authorizationUrl"]
        .as_str()
        .expect("url");
    let launched = app.launch(authorize).await;
    let callback = app
        .follow(&format!("{}&sandbox_user=unlucky", launched.authorize))
        .await;
    let page = app.get_with_cookie(&callback, &launched.cookie).await;
    assert_eq!(page.status(), 400);

    let operator = app.key_for_tenant("default", "OPERATOR").await;
    let query = "{ providerStats(window: \"1h\") { platform operation requests errors errorRate p50LatencyMs p95LatencyMs } }";
    let mut stats = Value::Null;
    for _ in 0..50 {
        stats = app.gql_ok(&operator, query, json!({})).await;
        let exchange = stats["providerStats"].as_array().and_then(|rows| {
            rows.iter()
                .find(|r| r["operation"] == "exchange_code")
                .cloned()
        });
        if exchange.as_ref().is_some_and(|e| e["requests"] == 2) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let rows = stats["providerStats"].as_array().expect("rows");
    let exchange = rows
        .iter()
        .find(|r| r["platform"] == "TIKTOK" && r["operation"] == "exchange_code")
        .unwrap_or_else(|| panic!("exchange stats: {stats}"));
    assert_eq!(exchange["requests"], 2);
    assert_eq!(exchange["errors"], 1);
    assert_eq!(exchange["errorRate"], 0.5);
    assert!(rows.iter().any(|r| r["operation"] == "user_info"));

    let body = app
        .gql(
            Some(&operator),
            "{ providerStats(window: \"soon\") { requests } }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&body), Some("BAD_USER_INPUT"));
    let viewer = app.create_key(&app.admin_key, "v", "VIEWER").await;
    let body = app
        .gql(Some(&viewer), "{ providerStats { requests } }", json!({}))
        .await;
    assert_eq!(error_code(&body), Some("FORBIDDEN"));

    let health = app
        .gql_ok(
            &operator,
            "{ systemHealth { database encryption encryptionError providers { platform configured available latencyMs } } }",
            json!({}),
        )
        .await;
    assert_eq!(health["systemHealth"]["database"], true);
    assert_eq!(health["systemHealth"]["encryption"], true);
    assert_eq!(health["systemHealth"]["providers"][0]["configured"], true);
    let ready: Value = app
        .client
        .get(app.url("/readyz"))
        .bearer_auth(&operator)
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(ready["checks"]["encryption"], "ok");
}

#[tokio::test]
async fn a_wrong_key_is_a_clear_startup_error() {
    let app = TestApp::spawn(crate::helpers::Backend::Sqlite).await;
    let (id, key) = service::tokens::vault::KeyRing::generate_key().expect("key");
    let mut config = app.config.clone();
    config.security.keys =
        Some(format!("{id}:{}", secrecy::ExposeSecret::expose_secret(&key)).into());
    let err = match tokenwarden::build_app(&config).await {
        Ok(_) => panic!("a key that cannot decrypt the canary must not start"),
        Err(err) => format!("{err:#}"),
    };
    assert!(err.contains("canary"), "{err}");
    assert!(
        !err.contains(secrecy::ExposeSecret::expose_secret(&key)),
        "no key material in errors"
    );
}
