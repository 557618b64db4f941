//! Inbound platform callbacks end to end: the sandbox revokes a grant and sends TikTok's
//! signed `authorization.removed` webhook or Meta's signed deauthorize / data deletion
//! callbacks to the server; forged, stale and repeated callbacks change nothing.

use entity::oauth_token;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};
use service::connections::callbacks::{sign_request, tiktok_signature};

use crate::{
    helpers::{TestApp, decode_id, error_code},
    on_both_backends,
};

on_both_backends!(
    tiktok_authorization_removed_requires_reconnect_at_once,
    tiktok_webhooks_with_bad_or_stale_signatures_change_nothing,
    instagram_deauthorize_and_data_deletion,
);

const ACCOUNT: &str =
    "query($id: ID!) { account(id: $id) { status statusReason username tokenHealth { state } } }";

async fn account(app: &TestApp, id: &str) -> Value {
    app.gql_ok(&app.admin_key, ACCOUNT, json!({ "id": id }))
        .await["account"]
        .clone()
}

async fn tokens_of(app: &TestApp, id: &str) -> usize {
    oauth_token::Entity::find()
        .filter(oauth_token::Column::AccountId.eq(decode_id(id)))
        .all(&app.db)
        .await
        .expect("tokens")
        .len()
}

async fn audit_count(app: &TestApp, action: &str) -> usize {
    let data = app
        .gql_ok(
            &app.admin_key,
            &format!("{{ auditLog(filter: {{actions: [{action}]}}) {{ totalCount }} }}"),
            json!({}),
        )
        .await;
    data["auditLog"]["totalCount"].as_u64().expect("count") as usize
}

async fn sandbox_revoke(app: &TestApp, body: Value) -> Value {
    app.client
        .post(format!(
            "http://{}/sandbox/control/revoke",
            app.sandbox_addr
        ))
        .json(&body)
        .send()
        .await
        .expect("sandbox answers")
        .json()
        .await
        .expect("json")
}

fn tiktok_body(open_id: &str, reason: i64, at: i64) -> String {
    json!({
        "client_key": sandbox::TIKTOK_CLIENT_KEY,
        "event": "authorization.removed",
        "create_time": at,
        "user_openid": open_id,
        "content": json!({ "reason": reason }).to_string(),
    })
    .to_string()
}

async fn post_tiktok(app: &TestApp, body: &str, signature: &str) -> reqwest::StatusCode {
    app.client
        .post(app.url("/providers/tiktok/webhook"))
        .header("TikTok-Signature", signature)
        .body(body.to_owned())
        .send()
        .await
        .expect("sent")
        .status()
}

async fn tiktok_authorization_removed_requires_reconnect_at_once(app: TestApp) {
    let id = app.connect(&app.admin_key, "TIKTOK", "leaver").await;
    let answer = sandbox_revoke(
        &app,
        json!({ "platform": "tiktok", "providerAccountId": sandbox::tiktok_open_id("leaver"), "notify": true, "reason": 1 }),
    )
    .await;
    assert_eq!(answer["revoked"], true, "{answer}");
    assert_eq!(answer["notified"][0]["status"], 200, "{answer}");

    let acct = account(&app, &id).await;
    assert_eq!(acct["status"], "RECONNECT_REQUIRED", "{acct}");
    assert_eq!(acct["statusReason"], "user_disconnected");
    assert_eq!(tokens_of(&app, &id).await, 0, "tokens deleted");
    assert_eq!(audit_count(&app, "ACCOUNT_DEAUTHORIZED").await, 1);
    let body = app
        .gql(
            Some(&app.admin_key),
            "query($id: ID!) { accessToken(accountId: $id) { token } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(error_code(&body), Some("RECONNECT_REQUIRED"), "{body}");
    let notes = app
        .gql_ok(
            &app.admin_key,
            "{ notifications { nodes { incident message } } }",
            json!({}),
        )
        .await;
    let nodes = notes["notifications"]["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 1, "{notes}");
    assert!(
        nodes[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("disconnected the app")),
        "{notes}"
    );

    // TikTok delivers at least once: the same webhook again changes nothing.
    let now = chrono::Utc::now().timestamp();
    let body = tiktok_body(&sandbox::tiktok_open_id("leaver"), 1, now);
    let sig = format!(
        "t={now},s={}",
        tiktok_signature(
            sandbox::TIKTOK_CLIENT_SECRET.as_bytes(),
            now,
            body.as_bytes()
        )
    );
    for _ in 0..2 {
        assert_eq!(post_tiktok(&app, &body, &sig).await, 200);
    }
    assert_eq!(audit_count(&app, "ACCOUNT_DEAUTHORIZED").await, 1);

    // Reconnecting brings the account back.
    app.connect(&app.admin_key, "TIKTOK", "leaver").await;
    assert_eq!(account(&app, &id).await["status"], "ACTIVE");
}

async fn tiktok_webhooks_with_bad_or_stale_signatures_change_nothing(app: TestApp) {
    let id = app.connect(&app.admin_key, "TIKTOK", "stays").await;
    let open_id = sandbox::tiktok_open_id("stays");
    let now = chrono::Utc::now().timestamp();
    let body = tiktok_body(&open_id, 5, now);
    let secret = sandbox::TIKTOK_CLIENT_SECRET.as_bytes();
    let good = tiktok_signature(secret, now, body.as_bytes());
    let stale_at = now - 600;
    let stale_body = tiktok_body(&open_id, 5, stale_at);
    for (body, header) in [
        (
            body.clone(),
            format!(
                "t={now},s={}",
                tiktok_signature(b"not-the-secret", now, body.as_bytes())
            ),
        ),
        (body.clone(), format!("t={},s={good}", now + 1)),
        (body.replace("stays", "other"), format!("t={now},s={good}")),
        (body.clone(), String::new()),
        // Correctly signed, but replayed ten minutes later.
        (
            stale_body.clone(),
            format!(
                "t={stale_at},s={}",
                tiktok_signature(secret, stale_at, stale_body.as_bytes())
            ),
        ),
    ] {
        assert_eq!(post_tiktok(&app, &body, &header).await, 401, "{header}");
    }
    assert_eq!(account(&app, &id).await["status"], "ACTIVE");
    assert_eq!(tokens_of(&app, &id).await, 1);
    assert_eq!(audit_count(&app, "ACCOUNT_DEAUTHORIZED").await, 0);

    // Other events are acknowledged and ignored; the good one is applied.
    let other = body.replace("authorization.removed", "video.publish.completed");
    let sig = format!(
        "t={now},s={}",
        tiktok_signature(secret, now, other.as_bytes())
    );
    assert_eq!(post_tiktok(&app, &other, &sig).await, 200);
    assert_eq!(account(&app, &id).await["status"], "ACTIVE");
    assert_eq!(
        post_tiktok(&app, &body, &format!("t={now},s={good}")).await,
        200
    );
    let acct = account(&app, &id).await;
    assert_eq!(acct["status"], "RECONNECT_REQUIRED");
    assert_eq!(acct["statusReason"], "developer_revoked");
}

async fn post_form(app: &TestApp, path: &str, signed: &str) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .form(&[("signed_request", signed)])
        .send()
        .await
        .expect("sent")
}

async fn instagram_deauthorize_and_data_deletion(app: TestApp) {
    let id = app.connect(&app.admin_key, "INSTAGRAM", "shop").await;
    let user_id = sandbox::instagram_user_id("shop");
    let secret = sandbox::INSTAGRAM_CLIENT_SECRET.as_bytes();
    let now = chrono::Utc::now().timestamp();
    let payload = json!({ "algorithm": "HMAC-SHA256", "issued_at": now, "user_id": user_id });

    // Forged: 401, nothing changes.
    let forged = sign_request(b"not-the-secret", &payload);
    for path in [
        "/providers/instagram/deauthorize",
        "/providers/instagram/data-deletion",
    ] {
        assert_eq!(post_form(&app, path, &forged).await.status(), 401);
    }
    assert_eq!(account(&app, &id).await["status"], "ACTIVE");
    assert_eq!(tokens_of(&app, &id).await, 1);

    // The sandbox removes the app and calls the deauthorize URL.
    let answer = sandbox_revoke(
        &app,
        json!({ "platform": "instagram", "providerAccountId": user_id, "notify": true }),
    )
    .await;
    assert_eq!(answer["notified"][0]["status"], 200, "{answer}");
    let acct = account(&app, &id).await;
    assert_eq!(acct["status"], "RECONNECT_REQUIRED", "{acct}");
    assert_eq!(acct["statusReason"], "app_removed");
    assert_eq!(tokens_of(&app, &id).await, 0);
    assert_eq!(audit_count(&app, "ACCOUNT_DEAUTHORIZED").await, 1);
    // Repeated: no second entry.
    let signed = sign_request(secret, &payload);
    assert_eq!(
        post_form(&app, "/providers/instagram/deauthorize", &signed)
            .await
            .status(),
        200
    );
    assert_eq!(audit_count(&app, "ACCOUNT_DEAUTHORIZED").await, 1);

    // Data deletion: personal data purged, answered with a status URL and a code; the
    // username goes from the event, notification and audit texts as well.
    let row = crate::helpers::decode_id(&id);
    assert!(
        !crate::helpers::mentions_of(&app.db, row, "shop")
            .await
            .is_empty(),
        "before the purge, @shop is named"
    );
    let answer: Value = post_form(&app, "/providers/instagram/data-deletion", &signed)
        .await
        .json()
        .await
        .expect("json");
    let code = answer["confirmation_code"].as_str().expect("code");
    assert!(code.bytes().all(|b| b.is_ascii_alphanumeric()), "{answer}");
    let url = answer["url"].as_str().expect("url");
    assert!(
        url.starts_with(&app.url("/providers/instagram/data-deletion/status")),
        "{url}"
    );
    let acct = account(&app, &id).await;
    assert_eq!(acct["username"], Value::Null, "{acct}");
    assert_eq!(
        crate::helpers::mentions_of(&app.db, row, "shop").await,
        Vec::<String>::new()
    );
    let notes = app
        .gql_ok(
            &app.admin_key,
            "{ notifications(first: 5) { nodes { message } } }",
            json!({}),
        )
        .await;
    assert!(
        notes.to_string().contains("a purged account"),
        "the message still reads: {notes}"
    );
    assert_eq!(audit_count(&app, "ACCOUNT_DATA_DELETED").await, 1);
    let page = app.client.get(url).send().await.expect("status page");
    assert_eq!(page.status(), 200);
    let text = page.text().await.expect("html");
    assert!(
        text.contains("was deleted") && text.contains(code),
        "{text}"
    );
    // A made-up code shows nothing.
    let bad = url.replace(code, "0000000000aaaaaaaaaaaaaaaaaaaaaaaa");
    assert_eq!(
        app.client.get(bad).send().await.expect("page").status(),
        404
    );
    // Repeated deletion requests are answered again, without new purges.
    let again = post_form(&app, "/providers/instagram/data-deletion", &signed).await;
    assert_eq!(again.status(), 200);
    assert_eq!(audit_count(&app, "ACCOUNT_DATA_DELETED").await, 1);
}
