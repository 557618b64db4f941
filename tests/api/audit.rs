//! The audit log: newest first, filters, pagination, tenant scoping.

use serde_json::json;

use crate::{
    helpers::{TestApp, error_code},
    on_both_backends,
};

on_both_backends!(audit_log_filters_and_pages, audit_log_is_tenant_scoped);

async fn audit_log_filters_and_pages(app: TestApp) {
    for name in ["k1", "k2", "k3"] {
        app.create_key(&app.admin_key, name, "VIEWER").await;
    }
    let start = chrono::Utc::now();
    let data = app
        .gql_ok(
            &app.admin_key,
            "{ apiKeys(last: 1) { nodes { id } } }",
            json!({}),
        )
        .await;
    let k3 = data["apiKeys"]["nodes"][0]["id"].clone();
    app.gql_ok(
        &app.admin_key,
        "mutation($id: ID!) { revokeApiKey(id: $id) { id } }",
        json!({ "id": k3 }),
    )
    .await;

    let query = "query($filter: AuditFilter, $after: String) {
      auditLog(first: 2, after: $after, filter: $filter) {
        totalCount pageInfo { hasNextPage endCursor }
        nodes { action actor details clientIp occurredAt }
      }
    }";
    let page1 = app.gql_ok(&app.admin_key, query, json!({})).await;
    let log = &page1["auditLog"];
    assert_eq!(
        log["totalCount"], 5,
        "bootstrap + 3 creations + 1 revocation"
    );
    assert_eq!(log["nodes"][0]["action"], "API_KEY_REVOKED", "newest first");
    assert_eq!(log["nodes"][1]["details"]["name"], "k3");
    assert_eq!(log["nodes"][0]["clientIp"], "127.0.0.1");
    assert_eq!(log["pageInfo"]["hasNextPage"], true);
    let page2 = app
        .gql_ok(
            &app.admin_key,
            query,
            json!({ "after": log["pageInfo"]["endCursor"] }),
        )
        .await;
    assert_eq!(page2["auditLog"]["nodes"][0]["details"]["name"], "k2");

    let revoked = app
        .gql_ok(
            &app.admin_key,
            query,
            json!({ "filter": { "actions": ["API_KEY_REVOKED"] } }),
        )
        .await;
    assert_eq!(revoked["auditLog"]["totalCount"], 1);

    let by_bootstrap = app
        .gql_ok(
            &app.admin_key,
            query,
            json!({ "filter": { "actor": "bootstrap" } }),
        )
        .await;
    assert_eq!(by_bootstrap["auditLog"]["totalCount"], 1);

    let since = app
        .gql_ok(
            &app.admin_key,
            query,
            json!({ "filter": { "since": start.to_rfc3339() } }),
        )
        .await;
    assert_eq!(
        since["auditLog"]["totalCount"], 1,
        "only the revocation is after `start`"
    );
    let until = app
        .gql_ok(
            &app.admin_key,
            query,
            json!({ "filter": { "until": start.to_rfc3339() } }),
        )
        .await;
    assert_eq!(until["auditLog"]["totalCount"], 4);

    let body = app
        .gql(
            Some(&app.admin_key),
            query,
            json!({ "filter": { "since": "yesterday" } }),
        )
        .await;
    assert_eq!(
        error_code(&body),
        Some("BAD_USER_INPUT"),
        "a bad date is refused: {body}"
    );
}

async fn audit_log_is_tenant_scoped(app: TestApp) {
    app.create_key(&app.admin_key, "default-only", "VIEWER")
        .await;
    let acme = app.key_for_tenant("acme", "VIEWER").await;
    let data = app
        .gql_ok(
            &acme,
            "{ auditLog { totalCount nodes { actor details } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        data["auditLog"]["totalCount"], 1,
        "only acme's own key creation"
    );
    assert_eq!(data["auditLog"]["nodes"][0]["actor"], "cli");
}
