//! Classification rows from the platforms' documentation, end to end: the sandbox answers a
//! refresh with the documented error, and the account ends where the documentation says.

use chrono::Utc;
use entity::oauth_token;
use sandbox::{FaultKind, Platform as SandboxPlatform};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
use serde_json::{Value, json};

use crate::{
    helpers::{Backend, TestApp, decode_id},
    on_both_backends,
};

on_both_backends!(
    instagram_permission_removed_requires_reconnect_naming_it,
    tiktok_scope_removed_requires_reconnect_naming_it,
    instagram_368_is_transient_with_a_long_wait,
    invalid_client_is_a_configuration_error,
    revoke_with_an_expired_access_token_refreshes_first,
    broken_answers_are_transient,
    faults_on_every_endpoint_of_a_connection,
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

/// HTML 5xx pages, connections reset mid-body, malformed 200 bodies and throttling: the
/// refresh is retried later, the user is never asked to reconnect, and no refresh token is
/// presented twice.
async fn broken_answers_are_transient(app: TestApp) {
    let tiktok = app.connect(&app.admin_key, "TIKTOK", "broken").await;
    let instagram = app.connect(&app.admin_key, "INSTAGRAM", "brokenig").await;
    age(&app, &instagram, 25).await;
    for (platform, id) in [
        (SandboxPlatform::Tiktok, &tiktok),
        (SandboxPlatform::Instagram, &instagram),
    ] {
        for (kind, code) in [
            (FaultKind::HtmlServerError, "PROVIDER_UNAVAILABLE"),
            (FaultKind::ConnectionReset, "PROVIDER_UNAVAILABLE"),
            (FaultKind::MalformedBody, "PROVIDER_UNAVAILABLE"),
            (FaultKind::ThrottledApp, "RATE_LIMITED"),
        ] {
            app.sandbox.set_faults(platform, kind, 1);
            let out = refresh(&app, id).await;
            assert_eq!(out["error"]["code"], code, "{platform:?} {kind:?}: {out}");
            assert_eq!(out["account"]["status"], "REFRESH_FAILING", "{kind:?}");
        }
        let out = refresh(&app, id).await;
        assert_eq!(out["refreshed"], true, "{platform:?} recovers: {out}");
        assert_eq!(out["account"]["status"], "ACTIVE");
    }
    assert_eq!(app.sandbox.stats().tiktok.reused_refresh_tokens, 0);
}

/// Meta's throttling codes 4, 17, 32 and 613: RATE_LIMITED, never a reconnect, retried when
/// Meta says (`estimated_time_to_regain_access`, in minutes); until then tokenwarden does
/// not call Meta at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_throttling_codes_wait_as_meta_says() {
    for (kind, wait, blocks) in [
        (FaultKind::ThrottledApp, 60, false),
        (FaultKind::ThrottledUser, 5 * 60, true),
        (FaultKind::ThrottledPage, 10 * 60, true),
        (FaultKind::ThrottledCustom, 15 * 60, true),
    ] {
        let app = TestApp::spawn(Backend::Sqlite).await;
        let id = app.connect(&app.admin_key, "INSTAGRAM", "busy").await;
        age(&app, &id, 25).await;
        app.sandbox.set_faults(SandboxPlatform::Instagram, kind, 1);
        let out = refresh(&app, &id).await;
        assert_eq!(out["error"]["code"], "RATE_LIMITED", "{kind:?}: {out}");
        assert_eq!(out["error"]["retryAfterSeconds"], wait, "{kind:?}: {out}");
        assert_eq!(out["account"]["status"], "REFRESH_FAILING");
        let calls = app.sandbox.stats().instagram.refresh_calls;
        let out = refresh(&app, &id).await;
        let after = app.sandbox.stats().instagram.refresh_calls;
        if blocks {
            assert_eq!(out["error"]["code"], "RATE_LIMITED", "{kind:?}: {out}");
            assert_eq!(after, calls, "{kind:?}: no call while Meta throttles");
        } else {
            assert_eq!(out["refreshed"], true, "{kind:?}: {out}");
        }
    }
}

/// Faults on the authorize page, the user-info call of the callback, the code exchange
/// (Instagram's legacy error shape) and the revoke call of a disconnect.
async fn faults_on_every_endpoint_of_a_connection(app: TestApp) {
    use sandbox::FaultEndpoint;
    for (platform, name, kind, endpoint, code) in [
        (
            SandboxPlatform::Tiktok,
            "TIKTOK",
            FaultKind::ServerError,
            FaultEndpoint::Authorize,
            "PROVIDER_UNAVAILABLE",
        ),
        (
            SandboxPlatform::Instagram,
            "INSTAGRAM",
            FaultKind::TemporarilyBlocked,
            FaultEndpoint::Authorize,
            "PROVIDER_UNAVAILABLE",
        ),
        (
            SandboxPlatform::Tiktok,
            "TIKTOK",
            FaultKind::HtmlServerError,
            FaultEndpoint::UserInfo,
            "PROVIDER_UNAVAILABLE",
        ),
        (
            SandboxPlatform::Instagram,
            "INSTAGRAM",
            FaultKind::MalformedBody,
            FaultEndpoint::UserInfo,
            "PROVIDER_UNAVAILABLE",
        ),
        (
            SandboxPlatform::Instagram,
            "INSTAGRAM",
            FaultKind::LegacyError,
            FaultEndpoint::Exchange,
            "RECONNECT_REQUIRED",
        ),
    ] {
        app.sandbox.set_faults_at(platform, Some(endpoint), kind, 1);
        let params = app.connect_flow(&app.admin_key, name, "faulty", "").await;
        assert_eq!(
            params["status"], "error",
            "{kind:?} at {endpoint:?}: {params:?}"
        );
        assert_eq!(
            params["error"], code,
            "{kind:?} at {endpoint:?}: {params:?}"
        );
    }
    let accounts = app
        .gql_ok(&app.admin_key, "{ accounts { totalCount } }", json!({}))
        .await;
    assert_eq!(
        accounts["accounts"]["totalCount"], 0,
        "no half-connected account"
    );

    // The revoke call of a disconnect fails: the account is disconnected anyway and the
    // revocation recorded as unconfirmed.
    let id = app.connect(&app.admin_key, "TIKTOK", "leaving").await;
    app.sandbox.set_faults_at(
        SandboxPlatform::Tiktok,
        Some(FaultEndpoint::Revoke),
        FaultKind::ConnectionReset,
        1,
    );
    let out = app
        .gql_ok(
            &app.admin_key,
            "mutation($id: ID!) { disconnectAccount(accountId: $id) { status } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(out["disconnectAccount"]["status"], "DISCONNECTED");
    let audit = app
        .gql_ok(
            &app.admin_key,
            "{ auditLog(filter: {actions: [ACCOUNT_DISCONNECTED]}) { nodes { details } } }",
            json!({}),
        )
        .await;
    let revocation = &audit["auditLog"]["nodes"][0]["details"]["providerRevocation"];
    assert_eq!(revocation["unconfirmed"], true, "{revocation}");
}
