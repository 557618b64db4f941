//! API keys: created once, stored hashed, listed, revoked, audited.

use entity::{api_key, audit_log};
use sea_orm::EntityTrait;
use serde_json::json;

use crate::{
    helpers::{TestApp, error_code},
    on_both_backends,
};

on_both_backends!(
    created_key_works_is_audited_and_never_stored_in_plaintext,
    key_listing_is_a_relay_connection,
    keys_of_other_tenants_are_invisible,
    bad_key_input_is_rejected,
);

async fn created_key_works_is_audited_and_never_stored_in_plaintext(app: TestApp) {
    let data = app
        .gql_ok(
            &app.admin_key,
            "mutation { createApiKey(input: {name: \"poster\", role: INTEGRATOR}) { key apiKey { id name role keyPrefix } } }",
            json!({}),
        )
        .await;
    let key = data["createApiKey"]["key"]
        .as_str()
        .expect("key")
        .to_owned();
    assert!(key.starts_with("tw_"));
    assert_eq!(data["createApiKey"]["apiKey"]["role"], "INTEGRATOR");
    assert!(
        key.starts_with(
            data["createApiKey"]["apiKey"]["keyPrefix"]
                .as_str()
                .expect("prefix")
        )
    );

    let me = app
        .gql_ok(&key, "{ viewer { role apiKey { name } } }", json!({}))
        .await;
    assert_eq!(me["viewer"]["role"], "INTEGRATOR");
    assert_eq!(me["viewer"]["apiKey"]["name"], "poster");

    let audit = app
        .gql_ok(
            &app.admin_key,
            "{ auditLog(filter: {actions: [API_KEY_CREATED]}) { edges { node { action actor targetType targetId details } } } }",
            json!({}),
        )
        .await;
    let entries = audit["auditLog"]["edges"].as_array().expect("edges");
    let entry = entries
        .iter()
        .map(|e| &e["node"])
        .find(|n| n["details"]["name"] == "poster")
        .expect("an audit entry for the new key");
    assert_eq!(entry["targetType"], "ApiKey");
    assert_eq!(entry["targetId"], data["createApiKey"]["apiKey"]["id"]);
    assert!(
        entry["actor"]
            .as_str()
            .is_some_and(|a| a.starts_with("api_key:"))
    );

    // Neither key appears anywhere in the rows.
    let keys = api_key::Entity::find().all(&app.db).await.expect("rows");
    let audits = audit_log::Entity::find().all(&app.db).await.expect("rows");
    let dump = format!("{keys:?}{audits:?}");
    assert!(!dump.contains(&key), "the new key is stored in plaintext");
    assert!(
        !dump.contains(&app.admin_key),
        "the bootstrap key is stored in plaintext"
    );
    assert!(keys.iter().all(|k| k.key_hash.len() == 64));
}

async fn key_listing_is_a_relay_connection(app: TestApp) {
    for name in ["a", "b", "c", "d"] {
        app.create_key(&app.admin_key, name, "VIEWER").await;
    }
    let query = "query($after: String) { apiKeys(first: 2, after: $after) { totalCount pageInfo { hasNextPage endCursor } nodes { name } } }";
    let first = app.gql_ok(&app.admin_key, query, json!({})).await;
    assert_eq!(first["apiKeys"]["totalCount"], 5);
    assert_eq!(
        first["apiKeys"]["nodes"],
        json!([{ "name": "bootstrap" }, { "name": "a" }])
    );
    assert_eq!(first["apiKeys"]["pageInfo"]["hasNextPage"], true);
    let cursor = first["apiKeys"]["pageInfo"]["endCursor"].clone();
    let second = app
        .gql_ok(&app.admin_key, query, json!({ "after": cursor }))
        .await;
    assert_eq!(
        second["apiKeys"]["nodes"],
        json!([{ "name": "b" }, { "name": "c" }])
    );
}

async fn keys_of_other_tenants_are_invisible(app: TestApp) {
    let other_admin = app.key_for_tenant("acme", "ADMIN").await;
    let listing = app
        .gql_ok(
            &other_admin,
            "{ apiKeys { totalCount nodes { name } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        listing["apiKeys"]["totalCount"], 1,
        "acme sees only its own key"
    );

    // The bootstrap key of tenant default (its id read from the key itself) cannot be
    // revoked or fetched from acme.
    let id = app
        .gql_ok(&app.admin_key, "{ viewer { apiKey { id } } }", json!({}))
        .await["viewer"]["apiKey"]["id"]
        .clone();
    assert!(id.is_string(), "{id}");
    let body = app
        .gql(
            Some(&other_admin),
            "mutation($id: ID!) { revokeApiKey(id: $id) { id } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(error_code(&body), Some("NOT_FOUND"));
    let node = app
        .gql_ok(
            &other_admin,
            "query($id: ID!) { node(id: $id) { id } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(node["node"], serde_json::Value::Null);
    // And the default tenant's key still works.
    app.gql_ok(&app.admin_key, "{ viewer { role } }", json!({}))
        .await;
}

async fn bad_key_input_is_rejected(app: TestApp) {
    let body = app
        .gql(
            Some(&app.admin_key),
            "mutation { createApiKey(input: {name: \"  \", role: VIEWER}) { key } }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&body), Some("BAD_USER_INPUT"));
    let body = app
        .gql(
            Some(&app.admin_key),
            "mutation { createApiKey(input: {name: \"x\", role: ROOT}) { key } }",
            json!({}),
        )
        .await;
    assert_eq!(
        error_code(&body),
        Some("GRAPHQL_VALIDATION_FAILED"),
        "an unknown role is refused by validation: {body}"
    );
    let body = app
        .gql(
            Some(&app.admin_key),
            "mutation { revokeApiKey(id: \"garbage\") { id } }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&body), Some("BAD_USER_INPUT"));
}
