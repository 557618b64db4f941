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
    // Each at the next commit position, as real events would be.
    let base = template.seq.expect("a committed event has its position");
    for i in 1..=burst as i64 {
        let mut event = template.clone();
        event.seq = Some(base + i);
        app.jobs.engine.events.publish(event).await;
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

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens `/graphql/ws` with `protocol` without sending anything.
async fn connect_ws(app: &TestApp, protocol: &str) -> Ws {
    let mut request = format!("ws://{}/graphql/ws", app.addr)
        .into_client_request()
        .expect("request");
    request
        .headers_mut()
        .insert("sec-websocket-protocol", protocol.parse().expect("header"));
    connect_async(request).await.expect("websocket connects").0
}

/// Sends `connection_init` with `key` and returns the first answer that is not a
/// keep-alive: the parsed text frame, or the close frame's code and reason.
async fn init_with(ws: &mut Ws, key: &str) -> Result<Value, (u16, String)> {
    ws.send(Message::text(
        json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {key}") } })
            .to_string(),
    ))
    .await
    .expect("init sent");
    loop {
        match next_frame(ws).await {
            Frame::Text(msg) if msg["type"] == "ka" => {}
            Frame::Text(msg) => return Ok(msg),
            Frame::Closed(code, reason) => return Err((code, reason)),
        }
    }
}

enum Frame {
    Text(Value),
    Closed(u16, String),
}

/// The next text or close frame (pings skipped), within 15 s.
async fn next_frame(ws: &mut Ws) -> Frame {
    loop {
        let message = tokio::time::timeout(std::time::Duration::from_secs(15), ws.next())
            .await
            .expect("a frame within 15 s");
        match message {
            Some(Ok(Message::Text(text))) => {
                return Frame::Text(serde_json::from_str(&text).expect("json"));
            }
            Some(Ok(Message::Close(frame))) => {
                let (code, reason) = frame
                    .map(|f| (u16::from(f.code), f.reason.to_string()))
                    .unwrap_or((1005, String::new()));
                return Frame::Closed(code, reason);
            }
            Some(Ok(_)) => {}
            other => panic!("the socket ended without a close frame: {other:?}"),
        }
    }
}

/// The close code and reason the server ends `ws` with (text frames before it skipped).
async fn close_code(ws: &mut Ws) -> (u16, String) {
    loop {
        if let Frame::Closed(code, reason) = next_frame(ws).await {
            return (code, reason);
        }
    }
}

/// Subscribes `id` to every token event from now on (graphql-transport-ws); `since`
/// makes an event raised before the subscription is attached arrive too.
async fn subscribe(ws: &mut Ws, id: &str) {
    ws.send(Message::text(
        json!({ "id": id, "type": "subscribe", "payload": {
            "query": "subscription($since: DateTime) { tokenEvents(since: $since) { kind } }",
            "variables": { "since": chrono::Utc::now().to_rfc3339() },
        } })
        .to_string(),
    ))
    .await
    .expect("subscribe sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_that_never_sends_connection_init_is_closed_with_4408() {
    let app = TestApp::spawn_with(Backend::Sqlite, &["--ws-init-timeout", "1s"]).await;
    for protocol in ["graphql-transport-ws", "graphql-ws"] {
        let mut silent = connect_ws(&app, protocol).await;
        let (code, reason) = close_code(&mut silent).await;
        assert_eq!(code, 4408, "{protocol}: {reason}");
        assert_eq!(reason, "Connection initialisation timeout");
    }
    // The server keeps serving: a socket that does send connection_init is acknowledged
    // and not closed at the deadline.
    let mut ws = open(&app, "graphql-transport-ws").await;
    subscribe(&mut ws, "1").await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    app.connect(&app.admin_key, "TIKTOK", "after").await;
    match next_frame(&mut ws).await {
        Frame::Text(msg) => assert_eq!(msg["payload"]["data"]["tokenEvents"]["kind"], "CONNECTED"),
        Frame::Closed(code, reason) => panic!("closed: {code} {reason}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_over_the_per_socket_limit_is_refused_and_the_socket_stays_open() {
    let app = TestApp::spawn_with(Backend::Sqlite, &["--ws-max-subscriptions", "2"]).await;
    let mut ws = open(&app, "graphql-transport-ws").await;
    subscribe(&mut ws, "1").await;
    subscribe(&mut ws, "2").await;
    subscribe(&mut ws, "3").await;
    let refused = match next_frame(&mut ws).await {
        Frame::Text(msg) => msg,
        Frame::Closed(code, reason) => panic!("closed: {code} {reason}"),
    };
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(refused["id"], "3");
    assert_eq!(
        refused["payload"][0]["extensions"]["code"], "TOO_MANY_SUBSCRIPTIONS",
        "{refused}"
    );
    // Completing one frees its place: a new subscription runs, and both receive events.
    ws.send(Message::text(
        json!({ "id": "1", "type": "complete" }).to_string(),
    ))
    .await
    .expect("complete sent");
    subscribe(&mut ws, "4").await;
    app.connect(&app.admin_key, "TIKTOK", "limit").await;
    let mut got = std::collections::BTreeSet::new();
    while got.len() < 2 {
        match next_frame(&mut ws).await {
            Frame::Text(msg) if msg["type"] == "complete" => assert_eq!(msg["id"], "1"),
            Frame::Text(msg) => {
                assert_eq!(msg["type"], "next", "{msg}");
                got.insert(msg["id"].as_str().expect("id").to_owned());
            }
            Frame::Closed(code, reason) => panic!("closed: {code} {reason}"),
        }
    }
    assert_eq!(got.into_iter().collect::<Vec<_>>(), ["2", "4"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_over_the_per_key_limit_are_closed_with_4429() {
    let app = TestApp::spawn_with(Backend::Sqlite, &["--ws-max-sockets-per-key", "2"]).await;
    let first = open(&app, "graphql-transport-ws").await;
    let _second = open(&app, "graphql-transport-ws").await;
    for protocol in ["graphql-transport-ws", "graphql-ws"] {
        let mut third = connect_ws(&app, protocol).await;
        let answer = init_with(&mut third, &app.admin_key).await;
        let (code, reason) = match answer {
            Err(closed) => closed,
            // The legacy protocol sends connection_error first, then the close.
            Ok(msg) => {
                assert_eq!(msg["type"], "connection_error", "{protocol}: {msg}");
                close_code(&mut third).await
            }
        };
        assert_eq!(code, 4429, "{protocol}: {reason}");
        assert!(reason.contains("too many sockets"), "{reason}");
    }
    // Another key is not affected.
    let viewer = app.create_key(&app.admin_key, "other", "VIEWER").await;
    let mut other = connect_ws(&app, "graphql-transport-ws").await;
    let ack = init_with(&mut other, &viewer)
        .await
        .expect("another key's socket");
    assert_eq!(ack["type"], "connection_ack");
    // A closed socket frees its place.
    drop(first);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let mut again = connect_ws(&app, "graphql-transport-ws").await;
        match init_with(&mut again, &app.admin_key).await {
            Ok(ack) if ack["type"] == "connection_ack" => break,
            other => assert!(
                tokio::time::Instant::now() < deadline,
                "the place of the closed socket was not freed: {other:?}"
            ),
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_over_the_size_limit_closes_the_socket_with_1009() {
    let app = TestApp::spawn_with(Backend::Sqlite, &["--ws-max-message-bytes", "2048"]).await;
    let mut ws = open(&app, "graphql-transport-ws").await;
    let padding = "x".repeat(4096);
    let _ = ws
        .send(Message::text(
            json!({ "id": "1", "type": "subscribe", "payload": { "query": format!("# {padding}\nsubscription {{ tokenEvents {{ kind }} }}") } })
                .to_string(),
        ))
        .await;
    let (code, _) = close_code(&mut ws).await;
    assert_eq!(code, 1009, "message too big");
    // The server keeps serving sockets (`open` waits for the acknowledgement).
    open(&app, "graphql-transport-ws").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_are_answered_503_and_a_freed_place_is_reused() {
    let app = TestApp::spawn_with(Backend::Sqlite, &["--max-connections", "2"]).await;
    // Two WebSockets hold both places (an upgraded connection keeps its place).
    let first = open(&app, "graphql-transport-ws").await;
    let _second = open(&app, "graphql-transport-ws").await;
    let fresh = || {
        reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .expect("client")
    };
    let refused = fresh()
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("an answer, not a reset");
    assert_eq!(refused.status(), 503);
    assert_eq!(
        refused
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    drop(first);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let status = fresh()
            .get(app.url("/healthz"))
            .send()
            .await
            .map(|r| r.status().as_u16());
        if matches!(status, Ok(200)) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the closed socket's place was not freed: {status:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_and_idle_keep_alive_connections_are_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::spawn_with(Backend::Sqlite, &["--header-read-timeout", "1s"]).await;
    // Headers never finished: the server hangs up.
    let mut slow = tokio::net::TcpStream::connect(app.addr)
        .await
        .expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("partial headers");
    let mut buf = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(15),
        slow.read_to_end(&mut buf),
    )
    .await
    .expect("closed within 15 s");
    assert!(
        read.is_err() || !String::from_utf8_lossy(&buf).contains("200 OK"),
        "no answer to half a request"
    );
    // A complete request is answered; the idle keep-alive connection is then closed.
    let mut idle = tokio::net::TcpStream::connect(app.addr)
        .await
        .expect("connect");
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("request");
    let mut buf = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(15),
        idle.read_to_end(&mut buf),
    )
    .await
    .expect("closed within 15 s");
    assert!(read.is_ok(), "{read:?}");
    let answer = String::from_utf8_lossy(&buf);
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
}
