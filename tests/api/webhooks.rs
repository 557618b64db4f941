//! Signed webhooks: a receiver verifies the signature, a failing receiver gets retries with
//! the same delivery id, a webhook failing for 24 hours is disabled, private targets need
//! the opt-in.

use std::sync::{Arc, Mutex};

use axum::{Router, body::Bytes, extract::State, http::HeaderMap, routing::post};
use chrono::Utc;
use entity::{webhook, webhook_delivery};
use sandbox::Platform as SandboxPlatform;
use sea_orm::{EntityTrait, sea_query::Expr};
use serde_json::{Value, json};

use crate::{
    helpers::{Backend, TestApp, error_code},
    on_both_backends,
};

#[derive(Clone, Default)]
struct Receiver {
    /// (signature header, delivery id header, body) of every request.
    seen: Arc<Mutex<Vec<(String, String, String)>>>,
    /// The `tokenwarden-event` header of every request.
    events: Arc<Mutex<Vec<String>>>,
    /// Answer 500 this many more times.
    failures: Arc<Mutex<u32>>,
}

async fn receive(
    State(r): State<Receiver>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::http::StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    r.events
        .lock()
        .expect("lock")
        .push(header("tokenwarden-event"));
    r.seen.lock().expect("lock").push((
        header("tokenwarden-signature"),
        header("tokenwarden-delivery"),
        String::from_utf8_lossy(&body).into_owned(),
    ));
    let mut failures = r.failures.lock().expect("lock");
    if *failures > 0 {
        *failures -= 1;
        axum::http::StatusCode::INTERNAL_SERVER_ERROR
    } else {
        axum::http::StatusCode::NO_CONTENT
    }
}

async fn start_receiver(failures: u32) -> (String, Receiver) {
    let receiver = Receiver::default();
    *receiver.failures.lock().expect("lock") = failures;
    let app = Router::new()
        .route("/hook", post(receive))
        .with_state(receiver.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/hook"), receiver)
}

const REGISTER: &str = "mutation($url: String!) { registerWebhook(input: {url: $url, kinds: [RECONNECT_REQUIRED], description: \"ops\"}) { secret webhook { id url kinds } } }";
const DELIVERIES: &str = "query($id: ID!) { webhookDeliveries(webhookId: $id) { nodes { id status attempts lastStatusCode nextAttemptAt deliveredAt } } }";

on_both_backends!(deliveries_are_signed_retried_and_disabled_after_a_day);

async fn deliveries_are_signed_retried_and_disabled_after_a_day(app: TestApp) {
    let (url, receiver) = start_receiver(1).await;
    let data = app
        .gql_ok(&app.admin_key, REGISTER, json!({ "url": url }))
        .await;
    let secret = data["registerWebhook"]["secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    let hook_id = data["registerWebhook"]["webhook"]["id"].clone();
    assert!(secret.starts_with("whsec_"));

    let account = app.connect(&app.admin_key, "TIKTOK", "hooked").await;
    assert!(
        app.sandbox
            .revoke(SandboxPlatform::Tiktok, &sandbox::tiktok_open_id("hooked"))
    );
    app.gql_ok(
        &app.admin_key,
        "mutation($id: ID!) { refreshAccountToken(accountId: $id) { refreshed } }",
        json!({ "id": account }),
    )
    .await;

    // First attempt: the receiver answers 500; the delivery stays pending with a retry.
    assert_eq!(
        jobs::deliver_webhooks::run(&app.jobs)
            .await
            .expect("deliver"),
        1
    );
    let deliveries = app
        .gql_ok(&app.admin_key, DELIVERIES, json!({ "id": hook_id }))
        .await;
    let first = &deliveries["webhookDeliveries"]["nodes"][0];
    assert_eq!(first["status"], "PENDING", "{deliveries}");
    assert_eq!(first["attempts"], 1);
    assert_eq!(first["lastStatusCode"], 500);
    assert!(first["nextAttemptAt"].is_string());
    assert_eq!(
        jobs::deliver_webhooks::run(&app.jobs)
            .await
            .expect("deliver"),
        0,
        "not due yet"
    );

    // Time passes; the retry succeeds.
    webhook_delivery::Entity::update_many()
        .col_expr(
            webhook_delivery::Column::NextAttemptAt,
            Expr::value(Utc::now()),
        )
        .exec(&app.db)
        .await
        .expect("due now");
    assert_eq!(
        jobs::deliver_webhooks::run(&app.jobs)
            .await
            .expect("deliver"),
        1
    );
    let deliveries = app
        .gql_ok(&app.admin_key, DELIVERIES, json!({ "id": hook_id }))
        .await;
    let done = &deliveries["webhookDeliveries"]["nodes"][0];
    assert_eq!(done["status"], "DELIVERED");
    assert_eq!(done["attempts"], 2);

    let seen = receiver.seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].1, seen[1].1, "retries carry the same delivery id");
    for (signature, _, body) in &seen {
        // Verified as a receiver would, without tokenwarden's code: t=<unix>,v1=<hex HMAC>.
        let (t, v1) = signature
            .split_once(',')
            .and_then(|(t, v1)| Some((t.strip_prefix("t=")?, v1.strip_prefix("v1=")?)))
            .unwrap_or_else(|| panic!("t=<unix>,v1=<hex>: {signature}"));
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
        let expected = ring::hmac::sign(&key, format!("{t}.{body}").as_bytes());
        assert_eq!(v1, hex::encode(expected.as_ref()), "the signature verifies");
        let sent_at = t.parse::<i64>().expect("unix seconds");
        assert!(
            (Utc::now().timestamp() - sent_at).abs() < 300,
            "the timestamp is the time of sending, fresh for replay checks: {t}"
        );
        assert!(service::events::webhooks::verify("wrong", signature, body).is_none());
    }
    let kinds = receiver.events.lock().expect("lock").clone();
    assert_eq!(
        kinds,
        ["RECONNECT_REQUIRED", "RECONNECT_REQUIRED"],
        "the event header names the event"
    );
    let body: Value = serde_json::from_str(&seen[1].2).expect("json");
    assert_eq!(body["event"]["kind"], "RECONNECT_REQUIRED");
    assert_eq!(body["event"]["error"]["action"], "Reconnect the account.");

    // A receiver that keeps failing for 24 hours: the webhook is disabled, with an audit entry.
    let (bad_url, _bad) = start_receiver(u32::MAX).await;
    let data = app
        .gql_ok(&app.admin_key, REGISTER, json!({ "url": bad_url }))
        .await;
    let bad_id = data["registerWebhook"]["webhook"]["id"].clone();
    let other = app.connect(&app.admin_key, "TIKTOK", "hooked2").await;
    assert!(
        app.sandbox
            .revoke(SandboxPlatform::Tiktok, &sandbox::tiktok_open_id("hooked2"))
    );
    app.gql_ok(
        &app.admin_key,
        "mutation($id: ID!) { refreshAccountToken(accountId: $id) { refreshed } }",
        json!({ "id": other }),
    )
    .await;
    let day_ago = Utc::now() - chrono::Duration::hours(25);
    webhook::Entity::update_many()
        .col_expr(webhook::Column::FailingSince, Expr::value(Some(day_ago)))
        .exec(&app.db)
        .await
        .expect("failing since");
    webhook_delivery::Entity::update_many()
        .col_expr(webhook_delivery::Column::CreatedAt, Expr::value(day_ago))
        .exec(&app.db)
        .await
        .expect("old deliveries");
    jobs::deliver_webhooks::run(&app.jobs)
        .await
        .expect("deliver");
    let hooks = app
        .gql_ok(
            &app.admin_key,
            "{ webhooks { nodes { id disabledAt } } }",
            json!({}),
        )
        .await;
    let bad = hooks["webhooks"]["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .find(|h| h["id"] == bad_id)
        .expect("the failing webhook");
    assert!(bad["disabledAt"].is_string(), "{hooks}");
    let audit = app
        .gql_ok(
            &app.admin_key,
            "{ auditLog(filter: {actions: [WEBHOOK_DISABLED]}) { totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(audit["auditLog"]["totalCount"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_targets_need_the_opt_in_and_webhooks_are_admin_only() {
    let app = TestApp::spawn_with(Backend::Sqlite, &["--webhook-allow-private", "false"]).await;
    for url in [
        "http://127.0.0.1:9/hook",
        "http://localhost/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.8/",
    ] {
        let body = app
            .gql(Some(&app.admin_key), REGISTER, json!({ "url": url }))
            .await;
        assert_eq!(error_code(&body), Some("BAD_USER_INPUT"), "{url}: {body}");
    }
    let viewer = app.create_key(&app.admin_key, "v", "VIEWER").await;
    let body = app
        .gql(Some(&viewer), "{ webhooks { nodes { id } } }", json!({}))
        .await;
    assert_eq!(error_code(&body), Some("FORBIDDEN"));

    let allowed = TestApp::spawn(Backend::Sqlite).await;
    let data = allowed
        .gql_ok(
            &allowed.admin_key,
            REGISTER,
            json!({ "url": "http://127.0.0.1:9/hook" }),
        )
        .await;
    let id = data["registerWebhook"]["webhook"]["id"].clone();
    let acme = allowed.key_for_tenant("acme", "ADMIN").await;
    let body = allowed
        .gql(
            Some(&acme),
            "mutation($id: ID!) { deleteWebhook(id: $id) { id } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(error_code(&body), Some("NOT_FOUND"));
    let mine = allowed
        .gql_ok(
            &allowed.admin_key,
            "mutation($id: ID!) { deleteWebhook(id: $id) { url } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(mine["deleteWebhook"]["url"], "http://127.0.0.1:9/hook");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_turns_private_after_registration_is_not_called() {
    // The production guard: private targets are refused.
    let app = crate::helpers::TestApp::spawn_with(
        crate::helpers::Backend::Sqlite,
        &["--webhook-allow-private", "false"],
    )
    .await;
    let (loopback_url, receiver) = start_receiver(0).await;
    // Positive control of the guard at registration: the loopback receiver is refused...
    let refused = app
        .gql(
            Some(&app.admin_key),
            REGISTER,
            json!({ "url": loopback_url }),
        )
        .await;
    assert_eq!(
        crate::helpers::error_code(&refused),
        Some("BAD_USER_INPUT"),
        "{refused}"
    );
    // ...and a public address is accepted (no DNS needed for an IP literal).
    let data = app
        .gql_ok(
            &app.admin_key,
            REGISTER,
            json!({ "url": "http://93.184.216.34/hook" }),
        )
        .await;
    let hook_id = data["registerWebhook"]["webhook"]["id"].clone();
    // Later the target points at a private address (what a DNS change or rebinding does):
    // the delivery-time check refuses it before any request is sent.
    webhook::Entity::update_many()
        .col_expr(webhook::Column::Url, Expr::value(loopback_url.clone()))
        .exec(&app.db)
        .await
        .expect("retargeted");
    let account = app.connect(&app.admin_key, "TIKTOK", "rebound").await;
    assert!(
        app.sandbox
            .revoke(SandboxPlatform::Tiktok, &sandbox::tiktok_open_id("rebound"))
    );
    app.gql_ok(
        &app.admin_key,
        "mutation($id: ID!) { refreshAccountToken(accountId: $id) { refreshed } }",
        json!({ "id": account }),
    )
    .await;
    assert_eq!(
        jobs::deliver_webhooks::run(&app.jobs)
            .await
            .expect("deliver"),
        1,
        "one delivery attempted"
    );
    assert!(
        receiver.seen.lock().expect("lock").is_empty(),
        "the private target was never called"
    );
    let stored = webhook_delivery::Entity::find()
        .all(&app.db)
        .await
        .expect("deliveries");
    assert_eq!(stored.len(), 1);
    assert_eq!(
        stored[0].status,
        entity::enums::DeliveryStatus::Pending,
        "retried later, not delivered"
    );
    assert!(
        stored[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("private") || e.contains("not allowed")),
        "the refusal is recorded: {:?}",
        stored[0].last_error
    );
    let _ = hook_id;
}
