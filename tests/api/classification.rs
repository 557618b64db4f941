//! Classification rows from the platforms' documentation, end to end: the sandbox answers a
//! refresh with the documented error, and the account ends where the documentation says.

use chrono::Utc;
use entity::oauth_token;
use sandbox::{FaultKind, Platform as SandboxPlatform};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
use serde_json::{Value, json};

use crate::{
    helpers::{TestApp, decode_id},
    on_both_backends,
};

on_both_backends!(
    instagram_permission_removed_requires_reconnect_naming_it,
    tiktok_scope_removed_requires_reconnect_naming_it,
    instagram_368_is_transient_with_a_long_wait,
    invalid_client_is_a_configuration_error,
    revoke_with_an_expired_access_token_refreshes_first,
);

const REFRESH: &str = "mutation($id: ID!) { refreshAccountToken(accountId: $id) { refreshed account { status statusReason } error { code message action retryAfterSeconds } } }";

async fn refresh(app: &TestApp, id: &str) -> Value {
    app.gql_ok(&app.admin_key, REFRESH, json!({ "id": id }))
        .await["refreshAccountToken"]
        .clone()
}

/// Instagram refuses refreshes under 24 hours: age the token in both clocks.
async fn age(app: &TestApp, id: &str, hours: i64) {
    oauth_token::Entity::update_many()
        .col_expr(
            oauth_token::Column::IssuedAt,
            Expr::value(Utc::now() - chrono::Duration::hours(hours)),
        )
        .filter(oauth_token::Column::AccountId.eq(decode_id(id)))
        .exec(&app.db)
        .await
        .expect("aged");
    app.sandbox.advance_clock(hours * 3600);
}

async fn instagram_permission_removed_requires_reconnect_naming_it(app: TestApp) {
    let id = app.connect(&app.admin_key, "INSTAGRAM", "shop").await;
    age(&app, &id, 25).await;
    app.sandbox
        .set_faults(SandboxPlatform::Instagram, FaultKind::PermissionRemoved, 1);
    let out = refresh(&app, &id).await;
    assert_eq!(out["account"]["status"], "RECONNECT_REQUIRED", "{out}");
    assert_eq!(out["error"]["code"], "RECONNECT_REQUIRED");
    assert_eq!(
        out["error"]["action"],
        "Reconnect the account and grant the instagram_business_content_publish permission."
    );
}

async fn tiktok_scope_removed_requires_reconnect_naming_it(app: TestApp) {
    let id = app.connect(&app.admin_key, "TIKTOK", "scoped").await;
    app.sandbox
        .set_faults(SandboxPlatform::Tiktok, FaultKind::PermissionRemoved, 1);
    let out = refresh(&app, &id).await;
    assert_eq!(out["account"]["status"], "RECONNECT_REQUIRED", "{out}");
    assert_eq!(
        out["error"]["action"],
        "Reconnect the account and grant the video.publish permission."
    );
}

async fn instagram_368_is_transient_with_a_long_wait(app: TestApp) {
    let id = app.connect(&app.admin_key, "INSTAGRAM", "blocked").await;
    age(&app, &id, 25).await;
    app.sandbox
        .set_faults(SandboxPlatform::Instagram, FaultKind::TemporarilyBlocked, 1);
    let out = refresh(&app, &id).await;
    assert_eq!(out["account"]["status"], "REFRESH_FAILING", "{out}");
    assert_ne!(out["error"]["code"], "RECONNECT_REQUIRED");
    assert!(
        out["error"]["retryAfterSeconds"]
            .as_i64()
            .is_some_and(|s| s >= 3600),
        "{out}"
    );
}

async fn invalid_client_is_a_configuration_error(app: TestApp) {
    let id = app.connect(&app.admin_key, "TIKTOK", "cfg").await;
    app.sandbox
        .set_faults(SandboxPlatform::Tiktok, FaultKind::InvalidClient, 1);
    let out = refresh(&app, &id).await;
    assert_eq!(out["error"]["code"], "PROVIDER_MISCONFIGURED", "{out}");
    assert_eq!(
        out["account"]["status"], "ACTIVE",
        "users need not reconnect"
    );
}

async fn revoke_with_an_expired_access_token_refreshes_first(app: TestApp) {
    let id = app.connect(&app.admin_key, "TIKTOK", "expired").await;
    oauth_token::Entity::update_many()
        .col_expr(
            oauth_token::Column::ExpiresAt,
            Expr::value(Utc::now() - chrono::Duration::minutes(5)),
        )
        .filter(oauth_token::Column::AccountId.eq(decode_id(&id)))
        .exec(&app.db)
        .await
        .expect("expired");
    app.gql_ok(
        &app.admin_key,
        "mutation($id: ID!) { disconnectAccount(accountId: $id) { status } }",
        json!({ "id": id }),
    )
    .await;
    let audit = app
        .gql_ok(
            &app.admin_key,
            "{ auditLog(filter: {actions: [ACCOUNT_DISCONNECTED]}) { nodes { details } } }",
            json!({}),
        )
        .await;
    let revocation = &audit["auditLog"]["nodes"][0]["details"]["providerRevocation"];
    assert_eq!(revocation["revoked"], true, "{revocation}");
    assert_eq!(revocation["refreshedFirst"], true, "{revocation}");

    // When the refresh fails too, the revocation is recorded as unconfirmed.
    let id = app.connect(&app.admin_key, "TIKTOK", "dead").await;
    oauth_token::Entity::update_many()
        .col_expr(
            oauth_token::Column::ExpiresAt,
            Expr::value(Utc::now() - chrono::Duration::minutes(5)),
        )
        .filter(oauth_token::Column::AccountId.eq(decode_id(&id)))
        .exec(&app.db)
        .await
        .expect("expired");
    app.sandbox
        .set_faults(SandboxPlatform::Tiktok, FaultKind::InvalidGrant, 1);
    app.gql_ok(
        &app.admin_key,
        "mutation($id: ID!) { disconnectAccount(accountId: $id) { status } }",
        json!({ "id": id }),
    )
    .await;
    let audit = app
        .gql_ok(
            &app.admin_key,
            "{ auditLog(filter: {actions: [ACCOUNT_DISCONNECTED]}) { nodes { details } } }",
            json!({}),
        )
        .await;
    let revocation = &audit["auditLog"]["nodes"][0]["details"]["providerRevocation"];
    assert_eq!(revocation["revoked"], false, "{revocation}");
    assert_eq!(revocation["unconfirmed"], true, "{revocation}");
}
