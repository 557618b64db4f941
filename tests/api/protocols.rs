//! Documented protocol behaviour that had no test: the legacy `graphql-ws` WebSocket
//! protocol, SUBSCRIBER_LAGGED for a subscriber that stops reading, the query complexity
//! limit, and the `x-request-id` header (generated, or kept when the client sent one).

use futures::{SinkExt, StreamExt};
use sea_orm::EntityTrait;
use serde_json::{Value, json};
use tokio_tungstenite::{
    connect_async,
    tungstenite::{Message, client::IntoClientRequest},
};

use crate::helpers::{Backend, TestApp, error_code};

const EVENTS: &str = "subscription($since: DateTime) {
  tokenEvents(since: $since) { id kind account { username } }
}";

/// Opens `/graphql/ws` with `protocol` and waits for `connection_ack`.
async fn open(
    app: &TestApp,
    protocol: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let mut request = format!("ws://{}/graphql/ws", app.addr)
        .into_client_request()
        .expect("request");
    request
        .headers_mut()
        .insert("sec-websocket-protocol", protocol.parse().expect("header"));
    let (mut ws, response) = connect_async(request).await.expect("websocket connects");
    assert_eq!(
        response
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok()),
        Some(protocol),
        "the server speaks the protocol asked for"
    );
    ws.send(Message::text(
        json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {}", app.admin_key) } })
            .to_string(),
    ))
    .await
    .expect("init sent");
    loop {
        let message = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next())
            .await
            .expect("an answer to connection_init");
        if let Some(Ok(Message::Text(text))) = message {
            let msg: Value = serde_json::from_str(&text).expect("json");
            if msg["type"] == "connection_ack" {
                return ws;
            }
            assert_ne!(msg["type"], "connection_error", "{msg}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_legacy_graphql_ws_protocol_delivers_events() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let mut ws = open(&app, "graphql-ws").await;
    // graphql-ws (subscriptions-transport-ws) uses `start` and answers with `data`.
    start_events(&mut ws, "start").await;
    app.connect(&app.admin_key, "TIKTOK", "legacy").await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let message = tokio::time::timeout(left, ws.next())
            .await
            .expect("a data frame before the deadline");
        let Some(Ok(Message::Text(text))) = message else {
            continue;
        };
        let msg: Value = serde_json::from_str(&text).expect("json");
        if msg["type"] == "ka" {
            continue;
        }
        assert_eq!(msg["type"], "data", "{msg}");
        assert_eq!(msg["id"], "1");
        let event = &msg["payload"]["data"]["tokenEvents"];
        assert_eq!(event["kind"], "CONNECTED", "{msg}");
        assert_eq!(event["account"]["username"], "legacy");
        break;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_stops_reading_gets_subscriber_lagged() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let mut ws = open(&app, "graphql-transport-ws").await;
    start_events(&mut ws, "subscribe").await;
    // The positive control first: one event arrives, so the subscription is attached.
    app.connect(&app.admin_key, "TIKTOK", "reader").await;
    let first = loop {
        let message = tokio::time::timeout(std::time::Duration::from_secs(15), ws.next())
            .await
            .expect("the first event");
        if let Some(Ok(Message::Text(text))) = message {
            let msg: Value = serde_json::from_str(&text).expect("json");
            if msg["type"] == "next" {
                break msg;
            }
        }
    };
    assert_eq!(
        first["payload"]["data"]["tokenEvents"]["kind"], "CONNECTED",
        "{first}"
    );

    // Then the client stops reading while far more events than the subscriber buffer
    // (service::events::SUBSCRIBER_BUFFER) are published: the socket's buffers fill, the
    // subscription falls behind, and it is stopped with SUBSCRIBER_LAGGED.
    let event_id = crate::helpers::decode_id(
        first["payload"]["data"]["tokenEvents"]["id"]
            .as_str()
            .expect("event id"),
    );
    let template = entity::token_event::Entity::find_by_id(event_id)
        .one(&app.db)
        .await
        .expect("query")
        .expect("the stored event");
    let burst = service::events::SUBSCRIBER_BUFFER * 40;
    for _ in 0..burst {
        app.jobs.engine.events.publish(template.clone()).await;
    }
    let mut lagged = None;
    let mut delivered = 0usize;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while lagged.is_none() {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Ok(Some(Ok(message))) = tokio::time::timeout(left, ws.next()).await else {
            break;
        };
        if let Message::Text(text) = message {
            let msg: Value = serde_json::from_str(&text).expect("json");
            if msg["type"] == "next" {
                if msg["payload"].get("errors").is_some() {
                    lagged = Some(msg["payload"].clone());
                } else {
                    delivered += 1;
                }
            }
        }
    }
    let lagged = lagged.unwrap_or_else(|| {
        panic!("no SUBSCRIBER_LAGGED after {burst} events ({delivered} delivered)")
    });
    assert_eq!(error_code(&lagged), Some("SUBSCRIBER_LAGGED"), "{lagged}");
    assert!(
        lagged["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("after: \"")),
        "the message says where to resume: {lagged}"
    );
    assert!(delivered < burst, "it fell behind: {delivered} of {burst}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_over_the_complexity_limit_are_refused_unexecuted() {
    let app = TestApp::spawn_with(Backend::Sqlite, &["--max-query-complexity", "5"]).await;
    // Positive control: a small query runs.
    let small = app
        .gql_ok(&app.admin_key, "{ viewer { role } }", json!({}))
        .await;
    assert_eq!(small["viewer"]["role"], "ADMIN");
    let big = app
        .gql(
            Some(&app.admin_key),
            "{ a: viewer { role tenant { id name } } b: viewer { role tenant { id name } } }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&big), Some("QUERY_TOO_COMPLEX"), "{big}");
    assert_eq!(big["data"], Value::Null, "nothing was executed: {big}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_has_a_request_id_and_the_clients_is_kept() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let generated = app
        .client
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("sent");
    let id = generated
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .expect("a generated x-request-id");
    assert!(!id.is_empty());
    let kept = app
        .client
        .post(app.url("/graphql"))
        .bearer_auth(&app.admin_key)
        .header("x-request-id", "client-chosen-42")
        .json(&json!({ "query": "{ viewer { role } }" }))
        .send()
        .await
        .expect("sent");
    assert_eq!(
        kept.headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
        Some("client-chosen-42")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_subscriptions_get_keep_alive_pings_and_stay_open() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let mut ws = open(&app, "graphql-transport-ws").await;
    start_events(&mut ws, "subscribe").await;
    // The documented interval is 30 s; a ping frame must arrive well within 45 s.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(45);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, ws.next()).await {
            Ok(Some(Ok(Message::Ping(_)))) => break,
            Ok(Some(Ok(Message::Close(frame)))) => panic!("closed while idle: {frame:?}"),
            Ok(Some(Ok(_))) => {}
            other => panic!("no keep-alive ping within 45 s: {other:?}"),
        }
    }
    // Still open and working after the idle period: an event arrives.
    app.connect(&app.admin_key, "TIKTOK", "idle").await;
    loop {
        let message = tokio::time::timeout(std::time::Duration::from_secs(15), ws.next())
            .await
            .expect("an event after the idle period");
        if let Some(Ok(Message::Text(text))) = message {
            let msg: Value = serde_json::from_str(&text).expect("json");
            if msg["type"] == "next" {
                assert_eq!(msg["payload"]["data"]["tokenEvents"]["kind"], "CONNECTED");
                break;
            }
        }
    }
}

/// Starts the `tokenEvents` subscription (id "1") with `since` = now; `frame` is the
/// protocol's start message type (`subscribe`, or `start` for the legacy protocol).
async fn start_events<S>(ws: &mut S, frame: &str)
where
    S: futures::Sink<Message> + Unpin,
    S::Error: std::fmt::Debug,
{
    ws.send(Message::text(
        json!({ "id": "1", "type": frame, "payload": { "query": EVENTS, "variables": { "since": chrono::Utc::now().to_rfc3339() } } })
            .to_string(),
    ))
    .await
    .expect("subscription started");
}
