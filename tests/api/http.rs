//! The HTTP surface: probes, GraphQL over HTTP, limits, hardening.

use serde_json::{Value, json};

use crate::{
    helpers::{Backend, TestApp, error_code},
    on_both_backends,
};

on_both_backends!(probes_answer, oversized_body_is_413, deep_query_is_refused);

async fn probes_answer(app: TestApp) {
    let health = app
        .client
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("sent");
    assert_eq!(health.status(), 200);
    assert!(health.headers().contains_key("x-request-id"));
    let ready = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("sent");
    assert_eq!(ready.status(), 200);
    let body: Value = ready.json().await.expect("json");
    assert_eq!(
        body,
        serde_json::json!({ "status": "ready" }),
        "only an operator sees the checks (tests/api/operator.rs)"
    );
}

async fn oversized_body_is_413(app: TestApp) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    // A raw connection, so the test sees the status even though the server answers before
    // reading the body (a client still writing would otherwise see a reset).
    let body_len = 3 * 1024 * 1024;
    let stream = tokio::net::TcpStream::connect(app.addr)
        .await
        .expect("connect");
    let (mut read, mut write) = stream.into_split();
    let head = format!(
        "POST /graphql HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {}\r\n\
         content-type: application/json\r\ncontent-length: {body_len}\r\n\r\n",
        app.addr, app.admin_key
    );
    write
        .write_all(head.as_bytes())
        .await
        .expect("headers written");
    let writer = tokio::spawn(async move {
        let chunk = vec![b' '; 64 * 1024];
        for _ in 0..(body_len / chunk.len()) {
            if write.write_all(&chunk).await.is_err() {
                break;
            }
        }
    });
    let mut response = vec![0u8; 1024];
    let n = read.read(&mut response).await.expect("response read");
    let status_line = String::from_utf8_lossy(&response[..n]);
    assert!(status_line.starts_with("HTTP/1.1 413"), "{status_line}");
    writer.abort();

    // The server is fine afterwards.
    app.gql_ok(&app.admin_key, "{ viewer { role } }", json!({}))
        .await;
}

async fn deep_query_is_refused(app: TestApp) {
    let mut query = String::from("{ viewer { role } ");
    // 50 levels of nesting through the introspection types.
    query.push_str("__schema { queryType { ");
    for _ in 0..24 {
        query.push_str("fields { type { ");
    }
    query.push_str("name");
    for _ in 0..24 {
        query.push_str(" } }");
    }
    query.push_str(" } } }");
    let body = app.gql(Some(&app.admin_key), &query, json!({})).await;
    assert_eq!(
        error_code(&body),
        Some("GRAPHQL_VALIDATION_FAILED"),
        "{body}"
    );
    let message = body["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(message.contains("too deep"), "clear message: {message}");
    assert_eq!(body["data"], Value::Null, "nothing was executed");
}

#[tokio::test]
async fn get_runs_queries_but_not_mutations() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let response = app
        .client
        .get(app.url("/graphql"))
        .query(&[
            ("query", "query Me { viewer { role } }"),
            ("operationName", "Me"),
        ])
        .bearer_auth(&app.admin_key)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["data"]["viewer"]["role"], "ADMIN");

    let response = app
        .client
        .get(app.url("/graphql"))
        .query(&[(
            "query",
            "mutation { createApiKey(input: {name: \"x\", role: ADMIN}) { key } }",
        )])
        .bearer_auth(&app.admin_key)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "POST");
    let keys = app
        .gql_ok(&app.admin_key, "{ apiKeys { totalCount } }", json!({}))
        .await;
    assert_eq!(
        keys["apiKeys"]["totalCount"], 1,
        "the GET mutation did nothing"
    );
}

#[tokio::test]
async fn graphql_response_json_is_negotiated() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let send = |accept: &'static str, query: &'static str| {
        app.client
            .post(app.url("/graphql"))
            .header("accept", accept)
            .bearer_auth(&app.admin_key)
            .json(&json!({ "query": query }))
            .send()
    };
    let ok = send("application/graphql-response+json", "{ viewer { role } }")
        .await
        .expect("sent");
    assert_eq!(ok.status(), 200);
    assert_eq!(
        ok.headers()["content-type"],
        "application/graphql-response+json"
    );

    let invalid = send("application/graphql-response+json", "{ viewer { nope } }")
        .await
        .expect("sent");
    assert_eq!(
        invalid.status(),
        400,
        "a request error is a 4xx with this media type"
    );
    let body: Value = invalid.json().await.expect("json");
    assert_eq!(error_code(&body), Some("GRAPHQL_VALIDATION_FAILED"));

    let legacy = send("application/json", "{ viewer { nope } }")
        .await
        .expect("sent");
    assert_eq!(legacy.status(), 200, "application/json keeps 200");
    assert_eq!(legacy.headers()["content-type"], "application/json");

    let refused = send("text/html", "{ viewer { role } }")
        .await
        .expect("sent");
    assert_eq!(refused.status(), 406);

    let wrong_type = app
        .client
        .post(app.url("/graphql"))
        .header("content-type", "text/plain")
        .body("{ viewer { role } }")
        .send()
        .await
        .expect("sent");
    assert_eq!(wrong_type.status(), 415);

    let broken = app
        .client
        .post(app.url("/graphql"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("sent");
    assert_eq!(broken.status(), 400);
    let body: Value = broken.json().await.expect("json");
    assert_eq!(error_code(&body), Some("BAD_USER_INPUT"));
}

#[tokio::test]
async fn graphiql_and_introspection_follow_the_production_switch() {
    let dev = TestApp::spawn(Backend::Sqlite).await;
    let page = dev
        .client
        .get(dev.url("/graphiql"))
        .send()
        .await
        .expect("sent");
    assert_eq!(page.status(), 200);
    assert!(page.text().await.expect("html").contains("graphiql"));
    let schema = dev
        .gql_ok(
            &dev.admin_key,
            "{ __schema { queryType { name } } }",
            json!({}),
        )
        .await;
    assert_eq!(schema["__schema"]["queryType"]["name"], "Query");

    let prod = TestApp::spawn_with(Backend::Sqlite, &["--production", "true"]).await;
    // Positive control: the production server answers a normal query.
    let normal = prod
        .gql_ok(&prod.admin_key, "{ viewer { role } }", json!({}))
        .await;
    assert_eq!(normal["viewer"]["role"], "ADMIN");
    let page = prod
        .client
        .get(prod.url("/graphiql"))
        .send()
        .await
        .expect("sent");
    assert_eq!(page.status(), 404);
    let body = prod
        .gql(
            Some(&prod.admin_key),
            "{ __schema { queryType { name } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        body["data"]["__schema"],
        Value::Null,
        "introspection is off: {body}"
    );
    let body = prod
        .gql(Some(&prod.admin_key), "{ viewr { role } }", json!({}))
        .await;
    let message = body["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("viewr"),
        "the unknown field is refused by name: {body}"
    );
    assert!(
        !message.contains("Did you mean"),
        "no suggestions: {message}"
    );
    let body = dev
        .gql(Some(&dev.admin_key), "{ viewr { role } }", json!({}))
        .await;
    let message = body["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("Did you mean"),
        "suggestions in development: {message}"
    );
}

#[tokio::test]
async fn subscriptions_need_a_websocket_upgrade() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let response = app
        .client
        .get(app.url("/graphql/ws"))
        .send()
        .await
        .expect("sent");
    // axum's WebSocketUpgrade rejects a plain GET without the upgrade headers.
    assert_eq!(response.status(), 400, "{}", response.status());
}
