//! Authentication and roles: "a new user runs the server and asks who they are".

use serde_json::json;

use crate::{
    helpers::{TestApp, error_code},
    on_both_backends,
};

on_both_backends!(
    bootstrap_key_is_admin,
    missing_key_is_unauthenticated,
    unknown_or_malformed_key_is_unauthenticated,
    revoked_key_is_unauthenticated,
    viewer_cannot_create_keys,
);

async fn bootstrap_key_is_admin(app: TestApp) {
    let data = app
        .gql_ok(
            &app.admin_key,
            "{ viewer { role tenant { id name } apiKey { id name } } }",
            json!({}),
        )
        .await;
    assert_eq!(data["viewer"]["role"], "ADMIN");
    assert_eq!(data["viewer"]["tenant"]["name"], "default");
    assert_eq!(data["viewer"]["apiKey"]["name"], "bootstrap");
}

async fn missing_key_is_unauthenticated(app: TestApp) {
    let body = app.gql(None, "{ viewer { role } }", json!({})).await;
    assert_eq!(error_code(&body), Some("UNAUTHENTICATED"));
    assert_eq!(body["data"], serde_json::Value::Null);
}

async fn unknown_or_malformed_key_is_unauthenticated(app: TestApp) {
    let body = app
        .gql(Some("tw_not-a-key"), "{ viewer { role } }", json!({}))
        .await;
    assert_eq!(error_code(&body), Some("UNAUTHENTICATED"));

    let response = app
        .client
        .post(app.url("/graphql"))
        .header("authorization", "Basic dXNlcjpwYXNz")
        .json(&json!({ "query": "{ viewer { role } }" }))
        .send()
        .await
        .expect("sent");
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(error_code(&body), Some("UNAUTHENTICATED"));
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("Bearer")),
        "the message says what to send: {body}"
    );
}

async fn revoked_key_is_unauthenticated(app: TestApp) {
    let key = app
        .create_key(&app.admin_key, "short-lived", "VIEWER")
        .await;
    let data = app
        .gql_ok(&key, "{ viewer { role apiKey { id } } }", json!({}))
        .await;
    assert_eq!(data["viewer"]["role"], "VIEWER");
    let id = data["viewer"]["apiKey"]["id"].clone();

    let revoked = app
        .gql_ok(
            &app.admin_key,
            "mutation($id: ID!) { revokeApiKey(id: $id) { revokedAt } }",
            json!({ "id": id }),
        )
        .await;
    assert!(revoked["revokeApiKey"]["revokedAt"].is_string());

    let body = app.gql(Some(&key), "{ viewer { role } }", json!({})).await;
    assert_eq!(error_code(&body), Some("UNAUTHENTICATED"));
}

async fn viewer_cannot_create_keys(app: TestApp) {
    let viewer = app.create_key(&app.admin_key, "read-only", "VIEWER").await;
    let body = app
        .gql(
            Some(&viewer),
            "mutation { createApiKey(input: {name: \"escalate\", role: ADMIN}) { key } }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&body), Some("FORBIDDEN"));

    let integrator = app.create_key(&app.admin_key, "bot", "INTEGRATOR").await;
    let body = app
        .gql(Some(&integrator), "{ apiKeys { totalCount } }", json!({}))
        .await;
    assert_eq!(error_code(&body), Some("FORBIDDEN"));

    // Nothing was created by the refused attempt.
    let data = app
        .gql_ok(&app.admin_key, "{ apiKeys { totalCount } }", json!({}))
        .await;
    assert_eq!(data["apiKeys"]["totalCount"], 3);
}
