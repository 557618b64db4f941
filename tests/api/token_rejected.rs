//! `reportTokenRejected`: an integrator's platform call failed with an auth error; the
//! service checks the token with the platform at once, refreshes it or asks for a reconnect,
//! and answers with a usable token or the action to take.

use sandbox::Platform as SandboxPlatform;
use serde_json::{Value, json};

use crate::{
    helpers::{TestApp, error_code},
    on_both_backends,
};

on_both_backends!(
    a_live_token_is_confirmed_and_handed_back,
    an_expired_token_is_refreshed,
    a_revoked_token_requires_a_reconnect,
    a_permission_removed_after_consent_is_named,
);

const REPORT: &str = "mutation($input: ReportTokenRejectedInput!) { reportTokenRejected(input: $input) { verdict token { token expiresAt } error { code message action retryAfterSeconds } rejectionsLast24h account { status statusReason } } }";

async fn report(app: &TestApp, id: &str) -> Value {
    app.gql_ok(
        &app.admin_key,
        REPORT,
        json!({ "input": { "accountId": id, "httpStatus": 401, "errorCode": "access_token_invalid", "message": "The access token is invalid or not found in the request." } }),
    )
    .await["reportTokenRejected"]
        .clone()
}

async fn access_token(app: &TestApp, id: &str) -> String {
    app.gql_ok(
        &app.admin_key,
        "query($id: ID!) { accessToken(accountId: $id) { token } }",
        json!({ "id": id }),
    )
    .await["accessToken"]["token"]
        .as_str()
        .expect("token")
        .to_owned()
}

async fn a_live_token_is_confirmed_and_handed_back(app: TestApp) {
    let id = app.connect(&app.admin_key, "TIKTOK", "poster").await;
    let token = access_token(&app, &id).await;
    let calls = app.sandbox.stats().tiktok;
    let out = report(&app, &id).await;
    assert_eq!(out["verdict"], "TOKEN_VALID", "{out}");
    assert_eq!(
        out["token"]["token"],
        token.as_str(),
        "the same, working token"
    );
    assert_eq!(out["error"], Value::Null);
    assert_eq!(out["account"]["status"], "ACTIVE");
    assert_eq!(out["rejectionsLast24h"], 1);
    let after = app.sandbox.stats().tiktok;
    assert_eq!(
        after.user_info_calls,
        calls.user_info_calls + 1,
        "checked at once"
    );
    assert_eq!(
        after.refresh_calls, calls.refresh_calls,
        "no refresh needed"
    );

    // Audited and counted per account; what the platform said is kept, sanitized.
    let again = report(&app, &id).await;
    assert_eq!(again["rejectionsLast24h"], 2);
    let audit = app
        .gql_ok(
            &app.admin_key,
            "{ auditLog(filter: {actions: [TOKEN_REJECTED]}) { totalCount nodes { details } } }",
            json!({}),
        )
        .await;
    assert_eq!(audit["auditLog"]["totalCount"], 2);
    let details = &audit["auditLog"]["nodes"][0]["details"];
    assert_eq!(details["verdict"], "token_valid", "{details}");
    assert_eq!(details["reported"]["errorCode"], "access_token_invalid");
    assert_eq!(details["tokenReturned"], true);
    assert!(
        !details.to_string().contains(&token),
        "no token in the audit log"
    );

    // Another tenant cannot report on this account.
    let other = app.key_for_tenant("other", "INTEGRATOR").await;
    let body = app
        .gql(
            Some(&other),
            REPORT,
            json!({ "input": { "accountId": id } }),
        )
        .await;
    assert_eq!(error_code(&body), Some("NOT_FOUND"), "{body}");
}

async fn an_expired_token_is_refreshed(app: TestApp) {
    let id = app.connect(&app.admin_key, "TIKTOK", "late").await;
    let token = access_token(&app, &id).await;
    // TikTok's clock says the access token has expired; the refresh token still lives.
    app.sandbox.advance_clock(sandbox::TIKTOK_ACCESS_TTL_S + 60);
    let out = report(&app, &id).await;
    assert_eq!(out["verdict"], "REFRESHED", "{out}");
    let fresh = out["token"]["token"].as_str().expect("a new token");
    assert_ne!(fresh, token);
    assert_eq!(out["account"]["status"], "ACTIVE");
    assert_eq!(app.sandbox.stats().tiktok.refresh_calls, 1);
    // The new token works at the platform.
    let out = report(&app, &id).await;
    assert_eq!(out["verdict"], "TOKEN_VALID", "{out}");
    assert_eq!(out["token"]["token"], fresh);
    assert_eq!(app.sandbox.stats().tiktok.reused_refresh_tokens, 0);
}

async fn a_revoked_token_requires_a_reconnect(app: TestApp) {
    let id = app.connect(&app.admin_key, "TIKTOK", "gone").await;
    assert!(
        app.sandbox
            .revoke(SandboxPlatform::Tiktok, &sandbox::tiktok_open_id("gone"))
    );
    let out = report(&app, &id).await;
    assert_eq!(out["verdict"], "RECONNECT_REQUIRED", "{out}");
    assert_eq!(out["token"], Value::Null);
    assert_eq!(out["error"]["code"], "RECONNECT_REQUIRED");
    assert_eq!(out["error"]["action"], "Reconnect the account.");
    assert_eq!(out["account"]["status"], "RECONNECT_REQUIRED");

    // Asked again: the answer comes at once, without calling TikTok.
    let calls = app.sandbox.stats().tiktok;
    let out = report(&app, &id).await;
    assert_eq!(out["verdict"], "RECONNECT_REQUIRED", "{out}");
    assert_eq!(out["rejectionsLast24h"], 2);
    let after = app.sandbox.stats().tiktok;
    assert_eq!(
        (after.user_info_calls, after.refresh_calls),
        (calls.user_info_calls, calls.refresh_calls)
    );
}

async fn a_permission_removed_after_consent_is_named(app: TestApp) {
    let id = app.connect(&app.admin_key, "INSTAGRAM", "shop").await;
    assert!(app.sandbox.remove_permission(
        SandboxPlatform::Instagram,
        &sandbox::instagram_user_id("shop"),
        "instagram_business_basic"
    ));
    let out = report(&app, &id).await;
    assert_eq!(out["verdict"], "RECONNECT_REQUIRED", "{out}");
    assert_eq!(
        out["error"]["action"],
        "Reconnect the account and grant the instagram_business_basic permission."
    );
    assert_eq!(out["account"]["status"], "RECONNECT_REQUIRED");
}
