//! GraphQL over HTTP (https://graphql.github.io/graphql-over-http/): JSON `POST`, query-only
//! `GET`, and `application/graphql-response+json` negotiation.

use std::{collections::HashMap, net::SocketAddr};

use async_graphql::{
    Request, Response, ServerError, Value, Variables,
    dataloader::DataLoader,
    parser::{parse_query, types::OperationType},
};
use axum::{
    body::Bytes,
    extract::{ConnectInfo, Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response as HttpResponse},
};
use serde_json::json;
use service::{ServiceError, identity::api_keys};

use crate::{
    app::AppState,
    error::code,
    graphql::{RequestAuth, accounts::TokenLoader},
};

const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";
const APPLICATION_JSON: &str = "application/json";

/// The response media type the client asked for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum MediaType {
    /// `application/graphql-response+json`: request errors get 4xx statuses.
    GraphqlResponse,
    /// `application/json`: always 200 once the request was understood.
    Json,
}

impl MediaType {
    fn as_str(self) -> &'static str {
        match self {
            MediaType::GraphqlResponse => GRAPHQL_RESPONSE_JSON,
            MediaType::Json => APPLICATION_JSON,
        }
    }
}

/// Picks the response media type from `Accept`; `None` when nothing acceptable is offered.
fn negotiate(headers: &HeaderMap) -> Option<MediaType> {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Some(MediaType::Json);
    };
    let mut best: Option<(f32, MediaType)> = None;
    for part in accept.split(',') {
        let mut pieces = part.split(';').map(str::trim);
        let media = pieces.next().unwrap_or_default().to_ascii_lowercase();
        let q = pieces
            .filter_map(|p| p.strip_prefix("q="))
            .find_map(|q| q.parse::<f32>().ok())
            .unwrap_or(1.0);
        let candidate = match media.as_str() {
            GRAPHQL_RESPONSE_JSON => MediaType::GraphqlResponse,
            APPLICATION_JSON | "application/*" | "*/*" => MediaType::Json,
            _ => continue,
        };
        if q > 0.0 && best.is_none_or(|(best_q, _)| q > best_q) {
            best = Some((q, candidate));
        }
    }
    best.map(|(_, media)| media)
}

/// GraphQL responses may carry access tokens: no cache (browser, proxy) may keep them.
const NO_STORE: HeaderValue = HeaderValue::from_static("no-store");

/// A JSON error body in GraphQL response shape, for failures before execution.
fn request_error(status: StatusCode, media: MediaType, code: &str, message: &str) -> HttpResponse {
    request_error_with(
        status,
        media,
        json!({ "message": message, "extensions": { "code": code } }),
    )
}

fn request_error_with(
    status: StatusCode,
    media: MediaType,
    error: serde_json::Value,
) -> HttpResponse {
    let body = json!({ "errors": [error] });
    (
        status,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(media.as_str()),
            ),
            (header::CACHE_CONTROL, NO_STORE),
        ],
        body.to_string(),
    )
        .into_response()
}

/// Marks a request that came as `GET`: fields that return secrets refuse to run in it
/// (URLs end up in logs, histories and caches).
#[derive(Clone, Copy, Debug)]
pub struct ViaGet;

/// Gives every error a stable `extensions.code`: request-level errors (no path: parse,
/// validation, depth and complexity limits) get GRAPHQL_VALIDATION_FAILED, field errors
/// without one get BAD_USER_INPUT.
fn ensure_codes(errors: &mut [ServerError]) {
    for error in errors {
        let has_code = error
            .extensions
            .as_ref()
            .is_some_and(|ext| ext.get("code").is_some());
        if !has_code {
            let code = if error.path.is_empty() {
                "GRAPHQL_VALIDATION_FAILED"
            } else {
                "BAD_USER_INPUT"
            };
            error
                .extensions
                .get_or_insert_with(Default::default)
                .set("code", code);
        }
    }
}

async fn authenticate(state: &AppState, headers: &HeaderMap, client_ip: String) -> RequestAuth {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return RequestAuth::Missing;
    };
    let presented = value.to_str().ok().and_then(|v| {
        let (scheme, key) = v.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
    });
    let Some(key) = presented.filter(|k| !k.is_empty()) else {
        return RequestAuth::Invalid(
            "malformed Authorization header: expected `Bearer <api key>`".into(),
        );
    };
    match api_keys::authenticate(&state.db, key, Some(client_ip)).await {
        Ok(caller) => RequestAuth::Authenticated(caller),
        Err(ServiceError::Unauthenticated(message)) => RequestAuth::Invalid(message.into()),
        Err(err) => {
            tracing::error!(error = %err, "could not check an API key");
            RequestAuth::Unavailable
        }
    }
}

async fn execute(
    state: &AppState,
    headers: &HeaderMap,
    peer: SocketAddr,
    media: MediaType,
    request: Request,
) -> HttpResponse {
    let auth = authenticate(state, headers, peer.ip().to_string()).await;
    let mut request = request;
    if let RequestAuth::Authenticated(caller) = &auth {
        if let Err(wait) = state.limiter.check(caller.api_key_id) {
            let seconds = crate::limits::retry_after_seconds(wait);
            let mut response = request_error_with(
                StatusCode::TOO_MANY_REQUESTS,
                media,
                json!({
                    "message": format!("this API key made too many requests; retry in {seconds} s"),
                    "extensions": { "code": code::RATE_LIMITED, "retryAfterSeconds": seconds },
                }),
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            return response;
        }
        request = request.data(DataLoader::new(
            TokenLoader {
                db: state.db.clone(),
                tenant_id: caller.tenant_id,
            },
            tokio::spawn,
        ));
    }
    let timeout = state.config.limits.request_timeout;
    let Ok(mut response): Result<Response, _> =
        tokio::time::timeout(timeout, state.schema.execute(request.data(auth))).await
    else {
        tracing::warn!(?timeout, "a GraphQL request timed out");
        return request_error(
            StatusCode::GATEWAY_TIMEOUT,
            media,
            code::REQUEST_TIMEOUT,
            &format!(
                "the request took longer than {} and was cancelled",
                humantime::format_duration(timeout)
            ),
        );
    };
    ensure_codes(&mut response.errors);
    let request_failed = response.data == Value::Null
        && !response.errors.is_empty()
        && response.errors.iter().all(|e| e.path.is_empty());
    let status = if media == MediaType::GraphqlResponse && request_failed {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    match serde_json::to_string(&response) {
        Ok(body) => (
            status,
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(media.as_str()),
                ),
                (header::CACHE_CONTROL, NO_STORE),
            ],
            body,
        )
            .into_response(),
        Err(err) => {
            tracing::error!(error = %err, "could not serialize a GraphQL response");
            request_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                media,
                "INTERNAL",
                "internal error",
            )
        }
    }
}

/// `POST /graphql` with an `application/json` body `{query, operationName?, variables?}`.
pub async fn post_handler(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> HttpResponse {
    let Some(media) = negotiate(&headers) else {
        return (
            StatusCode::NOT_ACCEPTABLE,
            "supported response types: application/graphql-response+json, application/json",
        )
            .into_response();
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        });
    if content_type.as_deref() != Some(APPLICATION_JSON) {
        return request_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            media,
            "BAD_USER_INPUT",
            "send GraphQL requests as Content-Type: application/json",
        );
    }
    let request: Request = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(err) => {
            return request_error(
                StatusCode::BAD_REQUEST,
                media,
                "BAD_USER_INPUT",
                &format!("the body is not a GraphQL request: {err}"),
            );
        }
    };
    execute(&state, &headers, peer, media, request).await
}

/// `GET /graphql?query=...&variables=...&operationName=...`: queries only.
pub async fn get_handler(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> HttpResponse {
    let Some(media) = negotiate(&headers) else {
        return (
            StatusCode::NOT_ACCEPTABLE,
            "supported response types: application/graphql-response+json, application/json",
        )
            .into_response();
    };
    let Some(query) = params.get("query") else {
        return request_error(
            StatusCode::BAD_REQUEST,
            media,
            "BAD_USER_INPUT",
            "missing the `query` parameter",
        );
    };
    let operation_name = params.get("operationName").filter(|n| !n.is_empty());
    if let Ok(document) = parse_query(query) {
        let operation = document
            .operations
            .iter()
            .find(|(name, _)| match operation_name {
                Some(wanted) => name.is_some_and(|n| n.as_str() == wanted),
                None => true,
            })
            .map(|(_, op)| op.node.ty);
        if matches!(
            operation,
            Some(OperationType::Mutation | OperationType::Subscription)
        ) {
            let mut response = request_error(
                StatusCode::METHOD_NOT_ALLOWED,
                media,
                "BAD_USER_INPUT",
                "only queries may be sent with GET; use POST for mutations",
            );
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
            return response;
        }
    }
    let mut request = Request::new(query.clone()).data(ViaGet);
    if let Some(name) = operation_name {
        request = request.operation_name(name.clone());
    }
    if let Some(raw) = params.get("variables").filter(|v| !v.is_empty()) {
        match serde_json::from_str::<serde_json::Value>(raw) {
            Ok(json) => request = request.variables(Variables::from_json(json)),
            Err(_) => {
                return request_error(
                    StatusCode::BAD_REQUEST,
                    media,
                    "BAD_USER_INPUT",
                    "the `variables` parameter is not valid JSON",
                );
            }
        }
    }
    execute(&state, &headers, peer, media, request).await
}

/// Resolves once the server starts shutting down.
async fn until_closing(mut closing: tokio::sync::watch::Receiver<bool>) {
    loop {
        let done = *closing.borrow_and_update();
        if done {
            return;
        }
        if closing.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// `/graphql/ws`: subscriptions over graphql-transport-ws (and the legacy graphql-ws).
/// The key comes in the `connection_init` payload: `{"authorization": "Bearer <key>"}`.
/// Buffers are small (4 KiB) so thousands of idle subscribers stay cheap.
pub async fn subscriptions(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    protocol: async_graphql_axum::GraphQLProtocol,
    upgrade: axum::extract::ws::WebSocketUpgrade,
) -> HttpResponse {
    upgrade
        .read_buffer_size(4 * 1024)
        .write_buffer_size(4 * 1024)
        .max_message_size(64 * 1024)
        .protocols(async_graphql::http::ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |socket| async move {
            use futures::{SinkExt, StreamExt};
            let schema = state.schema.clone();
            // The GraphQL protocol writes into a channel; a forwarder interleaves WebSocket
            // keep-alive pings every 30 s, so idle subscribers stay connected through
            // proxies and dead peers are noticed.
            let (mut socket_tx, socket_rx) = socket.split();
            let (tx, mut rx) = futures::channel::mpsc::channel::<axum::extract::ws::Message>(32);
            // The key of this connection, once `connection_init` authenticated it: a revoked
            // key's socket is closed (4403) within seconds.
            let key_id = std::sync::Arc::new(std::sync::OnceLock::<i64>::new());
            let watched = key_id.clone();
            let db = state.db.clone();
            let closing = until_closing(state.closing.clone());
            tokio::spawn(async move {
                tokio::pin!(closing);
                let mut ping = tokio::time::interval(std::time::Duration::from_secs(30));
                ping.tick().await;
                let mut key_check = tokio::time::interval(std::time::Duration::from_secs(5));
                key_check.tick().await;
                loop {
                    tokio::select! {
                        () = &mut closing => {
                            let close = axum::extract::ws::Message::Close(Some(axum::extract::ws::CloseFrame {
                                code: 1001,
                                reason: "the server is shutting down".into(),
                            }));
                            let _ = socket_tx.send(close).await;
                            break;
                        }
                        _ = key_check.tick() => {
                            if let Some(id) = watched.get()
                                && !service::identity::api_keys::is_active(&db, *id).await.unwrap_or(true)
                            {
                                let close = axum::extract::ws::Message::Close(Some(axum::extract::ws::CloseFrame {
                                    code: 4403,
                                    reason: "the API key was revoked".into(),
                                }));
                                let _ = socket_tx.send(close).await;
                                break;
                            }
                        }
                        message = rx.next() => match message {
                            Some(message) => {
                                if socket_tx.send(message).await.is_err() {
                                    break;
                                }
                            }
                            None => break,
                        },
                        _ = ping.tick() => {
                            let frame = axum::extract::ws::Message::Ping(Vec::new().into());
                            if socket_tx.send(frame).await.is_err() {
                                break;
                            }
                        }
                    }
                }
                let _ = socket_tx.close().await;
            });
            async_graphql_axum::GraphQLWebSocket::new_with_pair(tx, socket_rx, schema, protocol)
                .on_connection_init(move |payload| async move {
                    let header = payload
                        .get("authorization")
                        .or_else(|| payload.get("Authorization"))
                        .and_then(|v| v.as_str())
                        .unwrap_or_default()
                        .to_owned();
                    let mut headers = HeaderMap::new();
                    if let Ok(value) = HeaderValue::from_str(&header) {
                        headers.insert(header::AUTHORIZATION, value);
                    }
                    match authenticate(&state, &headers, peer.ip().to_string()).await {
                        RequestAuth::Authenticated(caller) => {
                            let _ = key_id.set(caller.api_key_id);
                            let mut data = async_graphql::Data::default();
                            data.insert(DataLoader::new(
                                TokenLoader {
                                    db: state.db.clone(),
                                    tenant_id: caller.tenant_id,
                                },
                                tokio::spawn,
                            ));
                            data.insert(RequestAuth::Authenticated(caller));
                            Ok(data)
                        }
                        RequestAuth::Missing => Err(async_graphql::Error::new(
                            "authentication required: send {\"authorization\": \"Bearer <api key>\"} in connection_init",
                        )),
                        RequestAuth::Invalid(message) => Err(async_graphql::Error::new(message)),
                        RequestAuth::Unavailable => {
                            Err(async_graphql::Error::new("internal error; retry later"))
                        }
                    }
                })
                .serve()
                .await
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_str(value).expect("header"),
        );
        headers
    }

    #[test]
    fn negotiation_prefers_the_higher_quality() {
        assert!(negotiate(&HeaderMap::new()) == Some(MediaType::Json));
        assert!(negotiate(&accept(GRAPHQL_RESPONSE_JSON)) == Some(MediaType::GraphqlResponse));
        assert!(
            negotiate(&accept(
                "application/json;q=0.9, application/graphql-response+json"
            )) == Some(MediaType::GraphqlResponse)
        );
        assert!(
            negotiate(&accept(
                "application/json, application/graphql-response+json;q=0.5"
            )) == Some(MediaType::Json)
        );
        assert!(negotiate(&accept("text/html")).is_none());
    }
}
