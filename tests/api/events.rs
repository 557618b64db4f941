//! Token events through real WebSocket subscriptions (graphql-transport-ws): failures reach
//! subscribers with an actionable message, across nodes through Redis, replay after a
//! reconnect without gaps or duplicates, and stay within the tenant.

use futures::{SinkExt, StreamExt};
use sandbox::Platform as SandboxPlatform;
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream, connect_async,
    tungstenite::{Message, client::IntoClientRequest},
};

use crate::{
    helpers::{TestApp, error_code},
    on_both_backends,
};

type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

const EVENTS: &str = "subscription($filter: TokenEventFilter, $after: ID, $since: DateTime) {
  tokenEvents(filter: $filter, after: $after, since: $since) {
    id kind platform account { username status } error { code message action }
  }
}";

/// Opens a graphql-transport-ws connection to `addr` authenticated with `key` and starts
/// one subscription. Returns the socket, or the server's refusal.
///
/// Without `after` or `since`, it subscribes with `since` = now, so the server replays
/// whatever happens between this call and the moment the subscription is attached: a test
/// never has to guess how long attaching takes.
async fn subscribe(addr: &str, key: &str, mut variables: Value) -> Result<Ws, String> {
    if variables.get("after").is_none() && variables.get("since").is_none() {
        variables["since"] = json!(chrono::Utc::now().to_rfc3339());
    }
    let mut request = format!("ws://{addr}/graphql/ws")
        .into_client_request()
        .expect("request");
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().expect("header"),
    );
    let (mut ws, _) = connect_async(request).await.expect("websocket connects");
    ws.send(Message::text(
        json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {key}") } })
            .to_string(),
    ))
    .await
    .expect("init sent");
    loop {
        match tokio::time::timeout(std::time::Duration::from_secs(5), ws.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => {
                let msg: Value = serde_json::from_str(&text).expect("json");
                if msg["type"] == "connection_ack" {
                    break;
                }
            }
            Ok(Some(Ok(Message::Close(frame)))) => {
                return Err(frame
                    .map(|f| format!("{} {}", f.code, f.reason))
                    .unwrap_or_default());
            }
            Ok(Some(Ok(_))) => {}
            other => return Err(format!("no ack: {other:?}")),
        }
    }
    ws.send(Message::text(
        json!({ "id": "1", "type": "subscribe", "payload": { "query": EVENTS, "variables": variables } })
            .to_string(),
    ))
    .await
    .expect("subscribe sent");
    Ok(ws)
}

/// The next `tokenEvents` payload (or error list), or None after `secs` of silence.
async fn next_event(ws: &mut Ws, secs: u64) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, ws.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => {
                let msg: Value = serde_json::from_str(&text).expect("json");
                match msg["type"].as_str() {
                    Some("next") => {
                        let payload = &msg["payload"];
                        if payload.get("errors").is_some() {
                            return Some(payload.clone());
                        }
                        return Some(payload["data"]["tokenEvents"].clone());
                    }
                    Some("ping") => {
                        let _ = ws
                            .send(Message::text(json!({ "type": "pong" }).to_string()))
                            .await;
                    }
                    Some("error") => return Some(msg["payload"].clone()),
                    _ => {}
                }
            }
            Ok(Some(Ok(_))) => {}
            _ => return None,
        }
    }
}

const REFRESH: &str =
    "mutation($id: ID!) { refreshAccountToken(accountId: $id) { refreshed error { code } } }";

on_both_backends!(
    a_revoked_grant_reaches_subscribers_with_what_to_do,
    reconnecting_with_after_replays_exactly_once_then_goes_live,
    subscriptions_stay_within_the_tenant
);

async fn a_revoked_grant_reaches_subscribers_with_what_to_do(app: TestApp) {
    let id = app.connect(&app.admin_key, "TIKTOK", "gone").await;
    let viewer = app.create_key(&app.admin_key, "watcher", "VIEWER").await;
    let mut ws = subscribe(
        &app.addr.to_string(),
        &viewer,
        json!({ "filter": { "kinds": ["RECONNECT_REQUIRED"] } }),
    )
    .await
    .expect("subscribed");
    assert!(
        app.sandbox
            .revoke(SandboxPlatform::Tiktok, &sandbox::tiktok_open_id("gone"))
    );
    app.gql_ok(&app.admin_key, REFRESH, json!({ "id": id }))
        .await;
    let event = next_event(&mut ws, 10).await.expect("an event");
    assert_eq!(event["kind"], "RECONNECT_REQUIRED", "{event}");
    assert_eq!(event["account"]["username"], "gone");
    assert_eq!(event["account"]["status"], "RECONNECT_REQUIRED");
    assert_eq!(event["error"]["code"], "RECONNECT_REQUIRED");
    assert_eq!(event["error"]["action"], "Reconnect the account.");
    assert!(
        event["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("@gone"))
    );
}

async fn reconnecting_with_after_replays_exactly_once_then_goes_live(app: TestApp) {
    let addr = app.addr.to_string();
    let mut ws = subscribe(&addr, &app.admin_key, json!({}))
        .await
        .expect("subscribed");
    let id = app.connect(&app.admin_key, "TIKTOK", "story").await;
    let connected = next_event(&mut ws, 10).await.expect("connected event");
    assert_eq!(connected["kind"], "CONNECTED");
    drop(ws);

    // Missed while disconnected: two refreshes and a disconnect.
    for _ in 0..2 {
        app.db
            .execute_unprepared("UPDATE oauth_tokens SET last_refreshed_at = NULL")
            .await
            .expect("forget the last refresh");
        app.gql_ok(&app.admin_key, REFRESH, json!({ "id": id }))
            .await;
    }
    app.gql_ok(
        &app.admin_key,
        "mutation($id: ID!) { disconnectAccount(accountId: $id) { id } }",
        json!({ "id": id }),
    )
    .await;

    let mut ws = subscribe(&addr, &app.admin_key, json!({ "after": connected["id"] }))
        .await
        .expect("resubscribed");
    let mut kinds = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..3 {
        let event = next_event(&mut ws, 10).await.expect("replayed event");
        kinds.push(event["kind"].as_str().expect("kind").to_owned());
        ids.push(event["id"].clone());
    }
    assert_eq!(kinds, ["REFRESHED", "REFRESHED", "DISCONNECTED"]);
    // Then live: the reconnect arrives once, with nothing replayed twice.
    app.connect(&app.admin_key, "TIKTOK", "story").await;
    let live = next_event(&mut ws, 10).await.expect("live event");
    assert_eq!(live["kind"], "CONNECTED");
    assert!(!ids.contains(&live["id"]));
    assert!(
        next_event(&mut ws, 1).await.is_none(),
        "no duplicates at the seam"
    );
}

async fn subscriptions_stay_within_the_tenant(app: TestApp) {
    let acme = app.key_for_tenant("acme", "VIEWER").await;
    let acme_admin = app.key_for_tenant("acme", "ADMIN").await;
    let mut theirs = subscribe(&app.addr.to_string(), &acme, json!({}))
        .await
        .expect("subscribed");
    // Another tenant's event, then one of acme's own: the subscription must receive its own
    // (positive control: events flow and the subscription is attached) and nothing before it.
    app.connect(&app.admin_key, "INSTAGRAM", "private").await;
    app.connect(&acme_admin, "TIKTOK", "acmeown").await;
    let first = next_event(&mut theirs, 10)
        .await
        .expect("the tenant's own event arrives");
    assert_eq!(first["kind"], "CONNECTED", "{first}");
    assert_eq!(
        first["account"]["username"], "acmeown",
        "another tenant's events are invisible: {first}"
    );
    assert!(
        next_event(&mut theirs, 1).await.is_none(),
        "nothing else arrives"
    );

    let refused = subscribe(&app.addr.to_string(), "tw_not-a-key", json!({})).await;
    let Err(refused) = refused else {
        panic!("an invalid key is refused")
    };
    assert!(
        refused.starts_with("1002 "),
        "closed with graphql-transport-ws code 1002 and a reason: {refused}"
    );

    // A revoked key's subscription ends.
    let key = app.create_key(&app.admin_key, "short", "VIEWER").await;
    let mut ws = subscribe(&app.addr.to_string(), &key, json!({}))
        .await
        .expect("subscribed");
    let me = app
        .gql_ok(&key, "{ viewer { apiKey { id } } }", json!({}))
        .await;
    app.gql_ok(
        &app.admin_key,
        "mutation($id: ID!) { revokeApiKey(id: $id) { id } }",
        json!({ "id": me["viewer"]["apiKey"]["id"] }),
    )
    .await;
    // The socket is closed with 4403 (an UNAUTHENTICATED error may come first).
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    let mut closed_with = None;
    while tokio::time::Instant::now() < deadline {
        match tokio::time::timeout(std::time::Duration::from_secs(1), ws.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => {
                closed_with = frame.map(|f| u16::from(f.code));
                break;
            }
            Ok(Some(Ok(Message::Text(text)))) if text.contains("errors") => {
                assert!(text.contains("UNAUTHENTICATED"), "{text}");
            }
            Ok(None) | Ok(Some(Err(_))) => break,
            _ => {}
        }
    }
    assert_eq!(closed_with, Some(4403), "a revoked key's socket is closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_cross_nodes_through_redis() {
    let args = crate::helpers::redis_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let app = TestApp::spawn_with(crate::helpers::Backend::Postgres, &args).await;
    let id = app.connect(&app.admin_key, "TIKTOK", "roaming").await;
    let (node_b, _stop) = app.second_node().await;
    let mut ws = subscribe(
        &node_b.to_string(),
        &app.admin_key,
        json!({ "filter": { "kinds": ["RECONNECT_REQUIRED"] } }),
    )
    .await
    .expect("subscribed on node B");
    assert!(
        app.sandbox
            .revoke(SandboxPlatform::Tiktok, &sandbox::tiktok_open_id("roaming"))
    );
    // The failure happens on node A.
    app.gql_ok(&app.admin_key, REFRESH, json!({ "id": id }))
        .await;
    let event = next_event(&mut ws, 10)
        .await
        .expect("event relayed through Redis");
    assert_eq!(event["kind"], "RECONNECT_REQUIRED");
    assert_eq!(event["account"]["username"], "roaming");
    assert_eq!(event["error"]["action"], "Reconnect the account.");
}

const NOTIFICATIONS: &str = "query($unread: Boolean) { notifications(unread: $unread) { edges { node { id incident platform message action reconnectRequired resolvedAt acknowledgedAt account { username } } } } }";

fn notifications(data: &Value) -> Vec<Value> {
    data["notifications"]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| e["node"].clone())
        .collect()
}

on_both_backends!(one_notification_per_incident);

async fn one_notification_per_incident(app: TestApp) {
    let id = app.connect(&app.admin_key, "TIKTOK", "wobbly").await;
    for _ in 0..10 {
        app.sandbox
            .set_faults(SandboxPlatform::Tiktok, sandbox::FaultKind::ServerError, 1);
        let result = app
            .gql_ok(&app.admin_key, REFRESH, json!({ "id": id }))
            .await;
        assert_eq!(
            result["refreshAccountToken"]["error"]["code"],
            "PROVIDER_UNAVAILABLE"
        );
    }
    let data = app.gql_ok(&app.admin_key, NOTIFICATIONS, json!({})).await;
    let list = notifications(&data);
    assert_eq!(
        list.len(),
        1,
        "ten transient failures, one notification: {list:?}"
    );
    assert_eq!(list[0]["incident"], "REFRESH_FAILING");
    assert_eq!(list[0]["reconnectRequired"], false);

    // It recovers: the incident closes. Then the grant dies: a new, actionable one.
    let ok = app
        .gql_ok(&app.admin_key, REFRESH, json!({ "id": id }))
        .await;
    assert_eq!(ok["refreshAccountToken"]["refreshed"], true, "{ok}");
    assert!(
        app.sandbox
            .revoke(SandboxPlatform::Tiktok, &sandbox::tiktok_open_id("wobbly"))
    );
    app.db
        .execute_unprepared("UPDATE oauth_tokens SET last_refreshed_at = NULL")
        .await
        .expect("forget the last refresh");
    app.gql_ok(&app.admin_key, REFRESH, json!({ "id": id }))
        .await;
    app.gql_ok(&app.admin_key, REFRESH, json!({ "id": id }))
        .await;
    let data = app.gql_ok(&app.admin_key, NOTIFICATIONS, json!({})).await;
    let list = notifications(&data);
    assert_eq!(list.len(), 2, "{list:?}");
    let dead = &list[0];
    assert_eq!(dead["incident"], "RECONNECT_REQUIRED");
    assert_eq!(dead["reconnectRequired"], true);
    assert_eq!(dead["platform"], "TIKTOK");
    assert_eq!(dead["action"], "Reconnect the account.");
    assert!(
        dead["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("TikTok access for @wobbly")),
        "{dead}"
    );
    assert!(
        list[1]["resolvedAt"].is_string(),
        "the transient incident was resolved"
    );
    // The reconnect link starts a connection when opened, usable at once.
    let link = app
        .gql_ok(
            &app.admin_key,
            "{ notifications(first: 1) { nodes { reconnectLink { authorizationUrl } } } }",
            json!({}),
        )
        .await;
    let url = link["notifications"]["nodes"][0]["reconnectLink"]["authorizationUrl"]
        .as_str()
        .expect("a reconnect link");
    let launched = app.launch(url).await;
    let callback = app
        .follow(&format!("{}&sandbox_user=wobbly", launched.authorize))
        .await;
    assert!(callback.contains("/oauth/callback/tiktok"), "{callback}");

    // Read it; the unread filter follows.
    app.gql_ok(
        &app.admin_key,
        "mutation($id: ID!) { acknowledgeNotification(id: $id) { acknowledgedAt } }",
        json!({ "id": dead["id"] }),
    )
    .await;
    let unread = app
        .gql_ok(&app.admin_key, NOTIFICATIONS, json!({ "unread": true }))
        .await;
    assert_eq!(notifications(&unread).len(), 1);

    // Reconnecting closes the incident; other tenants see nothing and cannot acknowledge.
    app.connect(&app.admin_key, "TIKTOK", "wobbly").await;
    let data = app.gql_ok(&app.admin_key, NOTIFICATIONS, json!({})).await;
    assert!(
        notifications(&data)
            .iter()
            .all(|n| n["resolvedAt"].is_string())
    );
    let acme = app.key_for_tenant("acme", "ADMIN").await;
    let theirs = app.gql_ok(&acme, NOTIFICATIONS, json!({})).await;
    assert!(notifications(&theirs).is_empty());
    let body = app
        .gql(
            Some(&acme),
            "mutation($id: ID!) { acknowledgeNotification(id: $id) { id } }",
            json!({ "id": dead["id"] }),
        )
        .await;
    assert_eq!(error_code(&body), Some("NOT_FOUND"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_subscriptions_with_going_away() {
    let mut app = TestApp::spawn(crate::helpers::Backend::Sqlite).await;
    let mut ws = subscribe(&app.addr.to_string(), &app.admin_key, json!({}))
        .await
        .expect("subscribed");
    app.begin_shutdown();
    let mut code = None;
    while let Ok(Some(message)) =
        tokio::time::timeout(std::time::Duration::from_secs(10), ws.next()).await
    {
        if let Ok(Message::Close(frame)) = message {
            code = frame.map(|f| u16::from(f.code));
            break;
        }
    }
    assert_eq!(
        code,
        Some(1001),
        "the socket is closed with 1001 (going away)"
    );
}

/// Records a REFRESHED event for `account` in `db` (a transaction or the pool).
async fn refreshed_event(
    db: &impl sea_orm::ConnectionTrait,
    account: &entity::social_account::Model,
) -> entity::token_event::Model {
    service::events::record(
        db,
        service::events::NewEvent {
            tenant_id: account.tenant_id,
            account_id: account.id,
            platform: service::domain::Platform::TikTok,
            kind: service::events::EventKind::Refreshed,
            error: None,
        },
    )
    .await
    .expect("event recorded")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_gets_an_event_that_committed_after_one_with_a_higher_id() {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    // PostgreSQL takes ids at insert: two transactions can commit in the other order.
    // (SQLite has one writer at a time, so its ids follow commits.)
    let app = TestApp::spawn(crate::helpers::Backend::Postgres).await;
    app.connect(&app.admin_key, "TIKTOK", "order").await;
    let account = entity::social_account::Entity::find()
        .one(&app.db)
        .await
        .expect("query")
        .expect("the account");
    let slow = service::db::begin(&app.db).await.expect("begin");
    let early = refreshed_event(&slow, &account).await;
    let fast = service::db::begin(&app.db).await.expect("begin");
    let late = refreshed_event(&fast, &account).await;
    assert!(early.id < late.id, "the slow transaction took the lower id");
    fast.commit().await.expect("commit");
    app.jobs.engine.events.publish(late.clone()).await;

    // A subscriber resuming after the CONNECTED event sees the fast one; it stops after
    // processing it.
    let connected = entity::token_event::Entity::find()
        .filter(entity::token_event::Column::Kind.eq("CONNECTED"))
        .one(&app.db)
        .await
        .expect("query")
        .expect("the connected event");
    let addr = app.addr.to_string();
    let after = crate::helpers::global_id("TokenEvent", connected.id);
    let mut ws = subscribe(&addr, &app.admin_key, json!({ "after": after }))
        .await
        .expect("subscribed");
    let seen = next_event(&mut ws, 10).await.expect("the committed event");
    assert_eq!(
        crate::helpers::decode_id(seen["id"].as_str().expect("id")),
        late.id
    );
    drop(ws);

    // The slow transaction commits afterwards; the subscriber resumes after the last
    // event it processed and still receives it.
    slow.commit().await.expect("commit");
    app.jobs.engine.events.publish(early.clone()).await;
    let mut ws = subscribe(&addr, &app.admin_key, json!({ "after": seen["id"] }))
        .await
        .expect("resubscribed");
    let resumed = next_event(&mut ws, 10)
        .await
        .expect("the event that committed late");
    assert_eq!(
        crate::helpers::decode_id(resumed["id"].as_str().expect("id")),
        early.id
    );
    assert!(next_event(&mut ws, 1).await.is_none(), "and nothing twice");
}

on_both_backends!(
    expiring_is_raised_once_however_many_sweeps_run_at_once,
    provider_health_transitions_are_raised_once_by_concurrent_evaluations
);

async fn count_events(app: &TestApp, kind: &str) -> u64 {
    use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
    entity::token_event::Entity::find()
        .filter(entity::token_event::Column::Kind.eq(kind))
        .count(&app.db)
        .await
        .expect("count")
}

async fn expiring_is_raised_once_however_many_sweeps_run_at_once(app: TestApp) {
    use sea_orm::{EntityTrait, sea_query::Expr};
    app.seed_connected("default", "soon", 3).await;
    // Every TikTok refresh token ends tomorrow: each account is due one EXPIRING.
    let tomorrow = chrono::Utc::now() + chrono::Duration::days(1);
    entity::oauth_token::Entity::update_many()
        .col_expr(
            entity::oauth_token::Column::RefreshExpiresAt,
            Expr::value(tomorrow),
        )
        .exec(&app.db)
        .await
        .expect("refresh tokens end tomorrow");
    let now = chrono::Utc::now();
    let sweeps = (0..8).map(|_| {
        let db = app.db.clone();
        let bus = app.jobs.engine.events.clone();
        tokio::spawn(async move { service::tokens::sweep::flag_expiring(&db, &bus, now).await })
    });
    let mut raised = 0;
    for sweep in futures::future::join_all(sweeps).await {
        raised += sweep.expect("joined").expect("sweep");
    }
    assert_eq!(raised, 3, "the sweeps together raised one per account");
    assert_eq!(count_events(&app, "EXPIRING").await, 3);
    // And a later sweep raises nothing more.
    let again = service::tokens::sweep::flag_expiring(&app.db, &app.jobs.engine.events, now)
        .await
        .expect("sweep");
    assert_eq!(again, 0);
}

async fn provider_health_transitions_are_raised_once_by_concurrent_evaluations(app: TestApp) {
    use sea_orm::{ActiveValue::Set, EntityTrait};
    let failing = (0..30).map(|_| entity::provider_call::ActiveModel {
        platform: Set(service::domain::Platform::TikTok),
        operation: Set("refresh".into()),
        http_status: Set(Some(503)),
        error_code: Set(Some("PROVIDER_UNAVAILABLE".into())),
        latency_ms: Set(5),
        occurred_at: Set(chrono::Utc::now()),
        ..Default::default()
    });
    entity::provider_call::Entity::insert_many(failing)
        .exec(&app.db)
        .await
        .expect("failed calls");
    let evaluate_at_once = || {
        let evaluations = (0..8).map(|_| {
            let db = app.db.clone();
            let bus = app.jobs.engine.events.clone();
            tokio::spawn(async move {
                service::events::alerts::evaluate(&db, &bus, &Default::default()).await
            })
        });
        futures::future::join_all(evaluations)
    };
    for evaluation in evaluate_at_once().await {
        evaluation.expect("joined").expect("evaluation");
    }
    assert_eq!(count_events(&app, "PROVIDER_DEGRADED").await, 1);
    // The errors age out of the window: one PROVIDER_RECOVERED, however many evaluate.
    entity::provider_call::Entity::delete_many()
        .exec(&app.db)
        .await
        .expect("calls cleared");
    for evaluation in evaluate_at_once().await {
        evaluation.expect("joined").expect("evaluation");
    }
    assert_eq!(count_events(&app, "PROVIDER_RECOVERED").await, 1);
    assert_eq!(count_events(&app, "PROVIDER_DEGRADED").await, 1);
}
