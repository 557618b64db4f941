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

use service::identity::sessions::ActiveSession;

use crate::{
    app::AppState,
    error::code,
    graphql::{RequestAuth, accounts::TokenLoader},
    http::auth,
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

async fn authenticate_bearer(
    state: &AppState,
    value: &HeaderValue,
    client_ip: String,
) -> RequestAuth {
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

/// How a request authenticated: an `Authorization: Bearer` key wins; else the dashboard
/// session cookie (whose session comes back too, for the CSRF check).
async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    client_ip: String,
) -> (RequestAuth, Option<ActiveSession>) {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        return (authenticate_bearer(state, value, client_ip).await, None);
    }
    match auth::session_from_headers(state, headers, client_ip).await {
        Ok(Some(session)) => (
            RequestAuth::Authenticated(session.caller.clone()),
            Some(session),
        ),
        Ok(None) => (RequestAuth::Missing, None),
        Err(ServiceError::Unauthenticated(message)) => (RequestAuth::Invalid(message.into()), None),
        Err(err) => {
            tracing::error!(error = %err, "could not check a session");
            (RequestAuth::Unavailable, None)
        }
    }
}

/// The rate limiter's key of a caller: the API key id, or the negated user id for a
/// signed-in user (row ids are positive, so the two never collide).
fn limit_key(caller: &service::Caller) -> i64 {
    match caller.principal {
        service::identity::caller::Principal::ApiKey { id } => id,
        service::identity::caller::Principal::User { id, .. } => -id,
    }
}

async fn execute(
    state: &AppState,
    auth: RequestAuth,
    media: MediaType,
    request: Request,
) -> HttpResponse {
    let mut request = request;
    if let RequestAuth::Authenticated(caller) = &auth {
        if let Err(wait) = state.limiter.check(limit_key(caller)) {
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
pub(crate) async fn post_handler(
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
    let (auth, session) = authenticate(&state, &headers, peer.ip().to_string()).await;
    // A cookie rides along with any cross-site form post, so a session's POSTs must prove
    // they come from the dashboard's own script.
    if let Some(session) = &session
        && !auth::csrf_ok(session, &headers)
    {
        return request_error(
            StatusCode::FORBIDDEN,
            media,
            "CSRF_FAILED",
            "a request authenticated by the session cookie must send the X-CSRF-Token header",
        );
    }
    execute(&state, auth, media, request).await
}

/// `GET /graphql?query=...&variables=...&operationName=...`: queries only.
pub(crate) async fn get_handler(
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
    let (auth, _) = authenticate(&state, &headers, peer.ip().to_string()).await;
    execute(&state, auth, media, request).await
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

/// The origin (`scheme://host[:port]`) of the public URL, which a cookie-authenticated
/// WebSocket's `Origin` header must equal.
fn public_origin(state: &AppState) -> Option<String> {
    url::Url::parse(state.config.public_url())
        .ok()
        .map(|url| url.origin().ascii_serialization())
}

/// Why a WebSocket's `connection_init` was refused with close code 4403.
const CSRF_REFUSED: &str = "a session-authenticated socket needs the dashboard's Origin and {\"csrfToken\"} in connection_init";

/// Authenticates a `connection_init` payload: `{"authorization": "Bearer <key>"}` (wins),
/// else the session cookie of the upgrade request, which also needs a matching `Origin`
/// and `{"csrfToken": ...}`. `Err(Some(reason))` closes with 4403.
async fn authenticate_socket(
    state: &AppState,
    upgrade_headers: &HeaderMap,
    payload: &serde_json::Value,
    client_ip: String,
) -> Result<RequestAuth, Option<&'static str>> {
    let bearer = payload
        .get("authorization")
        .or_else(|| payload.get("Authorization"))
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    if !bearer.is_empty() {
        return Ok(match HeaderValue::from_str(bearer) {
            Ok(value) => authenticate_bearer(state, &value, client_ip).await,
            Err(_) => {
                RequestAuth::Invalid("malformed authorization: expected `Bearer <api key>`".into())
            }
        });
    }
    let mut cookie_only = HeaderMap::new();
    for value in upgrade_headers.get_all(header::COOKIE) {
        cookie_only.append(header::COOKIE, value.clone());
    }
    let (auth, session) = authenticate(state, &cookie_only, client_ip).await;
    let Some(session) = session else {
        return Ok(auth);
    };
    let origin_ok = upgrade_headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .zip(public_origin(state))
        .is_some_and(|(origin, expected)| origin == expected);
    let csrf_ok = payload
        .get("csrfToken")
        .and_then(|v| v.as_str())
        .is_some_and(|token| service::identity::sessions::csrf_matches(&session, token));
    if origin_ok && csrf_ok {
        Ok(auth)
    } else {
        Err(Some(CSRF_REFUSED))
    }
}

/// The close codes `/graphql/ws` sends besides the protocol's own (docs/api.md lists them).
mod close {
    /// The server is shutting down.
    pub(crate) const GOING_AWAY: u16 = 1001;
    /// A message over the size limit.
    pub(crate) const MESSAGE_TOO_BIG: u16 = 1009;
    /// The CSRF/Origin check of a session socket failed, or its key was revoked or its
    /// session ended.
    pub const FORBIDDEN: u16 = 4403;
    /// No `connection_init` within the init timeout (graphql-transport-ws's code).
    pub(crate) const INIT_TIMEOUT: u16 = 4408;
    /// The caller already holds the most sockets allowed.
    pub(crate) const TOO_MANY_SOCKETS: u16 = 4429;
}

/// The one frame field the socket limits need from client and server messages.
#[derive(serde::Deserialize)]
struct Frame {
    #[serde(rename = "type")]
    kind: String,
    id: Option<String>,
}

/// What the reading and the writing half of one socket share.
#[derive(Default)]
struct SocketShared {
    /// Whether the client sent `connection_init` (else 4408 at the deadline).
    init_received: std::sync::atomic::AtomicBool,
    /// Ids of the operations running on this socket.
    operations: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Set when `connection_init` was refused: the protocol's own close frame is replaced
    /// by this code and reason.
    refusal: std::sync::OnceLock<(u16, String)>,
    /// The caller, once `connection_init` authenticated it: a revoked key's or ended
    /// session's socket is closed (4403) within seconds.
    caller: std::sync::OnceLock<service::Caller>,
    /// This socket's place in the per-caller socket limit.
    slot: std::sync::Mutex<Option<crate::limits::SocketSlot>>,
}

impl SocketShared {
    fn operations(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        self.operations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Whether the upgrade asked for the legacy `graphql-ws` protocol (subscriptions-transport-ws)
/// rather than `graphql-transport-ws`, in the order async-graphql picks them.
fn legacy_protocol(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .find(|p| *p == "graphql-transport-ws" || *p == "graphql-ws")
        == Some("graphql-ws")
}

/// Whether a socket read failed on the message size limit.
fn too_big(err: &axum::Error) -> bool {
    std::error::Error::source(err)
        .and_then(|e| e.downcast_ref::<tungstenite::Error>())
        .is_some_and(|e| {
            matches!(
                e,
                tungstenite::Error::Capacity(
                    tungstenite::error::CapacityError::MessageTooLong { .. }
                )
            )
        })
}

/// The `error` frame refusing operation `id` (the socket stays open).
fn too_many_subscriptions(legacy: bool, id: &str, max: usize) -> axum::extract::ws::Message {
    let error = json!({
        "message": format!("this socket runs {max} subscriptions already; complete one first or open another socket"),
        "extensions": { "code": "TOO_MANY_SUBSCRIPTIONS" },
    });
    // graphql-transport-ws sends a list of errors, subscriptions-transport-ws one error.
    let payload = if legacy { error } else { json!([error]) };
    axum::extract::ws::Message::text(
        json!({ "type": "error", "id": id, "payload": payload }).to_string(),
    )
}

/// `/graphql/ws`: subscriptions over graphql-transport-ws (and the legacy graphql-ws).
/// The key comes in the `connection_init` payload: `{"authorization": "Bearer <key>"}`;
/// the dashboard instead sends its session cookie with the upgrade and
/// `{"csrfToken": ...}` in the payload (see `authenticate_socket`).
/// Bounded: `connection_init` within the init timeout (4408), sockets per caller (4429),
/// subscriptions per socket (TOO_MANY_SUBSCRIPTIONS), message size (1009), and small
/// buffers (4 KiB) so thousands of idle subscribers stay cheap.
pub async fn subscriptions(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    upgrade_headers: HeaderMap,
    protocol: async_graphql_axum::GraphQLProtocol,
    upgrade: axum::extract::ws::WebSocketUpgrade,
) -> HttpResponse {
    let limits = &state.config.limits;
    upgrade
        .read_buffer_size(4 * 1024)
        .write_buffer_size(4 * 1024)
        .max_message_size(limits.ws_max_message_bytes)
        .max_frame_size(limits.ws_max_message_bytes)
        .protocols(async_graphql::http::ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |socket| async move {
            use axum::extract::ws::{CloseFrame, Message};
            use futures::{SinkExt, StreamExt};
            use std::sync::atomic::Ordering;
            let schema = state.schema.clone();
            let legacy = legacy_protocol(&upgrade_headers);
            let max_subscriptions = state.config.limits.ws_max_subscriptions;
            let init_timeout = state.config.limits.ws_init_timeout;
            let max_message = state.config.limits.ws_max_message_bytes;
            // The GraphQL protocol writes into a channel; a forwarder interleaves WebSocket
            // keep-alive pings every 30 s, so idle subscribers stay connected through
            // proxies and dead peers are noticed.
            let (mut socket_tx, socket_rx) = socket.split();
            let (tx, mut rx) = futures::channel::mpsc::channel::<Message>(32);
            let shared = std::sync::Arc::new(SocketShared::default());

            // Reading half: notes `connection_init`, counts operations, and answers a
            // subscription over the limit itself instead of passing it on.
            let inbound = {
                let shared = shared.clone();
                let replies = tx.clone();
                socket_rx.filter_map(move |message| {
                    let shared = shared.clone();
                    let mut replies = replies.clone();
                    async move {
                        let frame = match &message {
                            Ok(Message::Text(text)) => serde_json::from_str::<Frame>(text).ok(),
                            Err(err) => {
                                // The read ends the socket; say why when it was the size limit.
                                if too_big(err) {
                                    let reason = format!("message too big: at most {max_message} bytes");
                                    let _ = replies
                                        .send(Message::Close(Some(CloseFrame {
                                            code: close::MESSAGE_TOO_BIG,
                                            reason: reason.into(),
                                        })))
                                        .await;
                                }
                                None
                            }
                            _ => None,
                        };
                        let Some(Frame { kind, id }) = frame else {
                            return Some(message);
                        };
                        let refused = match (kind.as_str(), id) {
                            ("connection_init", _) => {
                                shared.init_received.store(true, Ordering::Relaxed);
                                None
                            }
                            ("subscribe" | "start", Some(id)) => {
                                let mut operations = shared.operations();
                                if !operations.contains(&id) && operations.len() >= max_subscriptions {
                                    Some(id)
                                } else {
                                    operations.insert(id);
                                    None
                                }
                            }
                            ("complete" | "stop", Some(id)) => {
                                shared.operations().remove(&id);
                                None
                            }
                            _ => None,
                        };
                        match refused {
                            Some(id) => {
                                let _ = replies
                                    .send(too_many_subscriptions(legacy, &id, max_subscriptions))
                                    .await;
                                None
                            }
                            None => Some(message),
                        }
                    }
                })
            };

            // Writing half.
            let db = state.db.clone();
            let settings = state.config.session;
            let closing = until_closing(state.closing.clone());
            let watched = shared.clone();
            let forwarder = tokio::spawn(async move {
                tokio::pin!(closing);
                let mut ping = tokio::time::interval(std::time::Duration::from_secs(30));
                ping.tick().await;
                let mut key_check = tokio::time::interval(std::time::Duration::from_secs(5));
                key_check.tick().await;
                let init_deadline = tokio::time::sleep(init_timeout);
                tokio::pin!(init_deadline);
                let mut init_checked = false;
                let mut close_sent = false;
                let close_with = |code: u16, reason: String| {
                    Message::Close(Some(CloseFrame {
                        code,
                        reason: reason.into(),
                    }))
                };
                loop {
                    tokio::select! {
                        () = &mut closing => {
                            let close = close_with(close::GOING_AWAY, "the server is shutting down".into());
                            let _ = socket_tx.send(close).await;
                            break;
                        }
                        () = &mut init_deadline, if !init_checked => {
                            init_checked = true;
                            if !watched.init_received.load(Ordering::Relaxed) {
                                let close = close_with(close::INIT_TIMEOUT, "Connection initialisation timeout".into());
                                let _ = socket_tx.send(close).await;
                                break;
                            }
                        }
                        _ = key_check.tick() => {
                            if let Some(caller) = watched.caller.get()
                                && !service::identity::sessions::still_active(&db, &settings, caller).await.unwrap_or(true)
                            {
                                let reason = match caller.principal {
                                    service::identity::caller::Principal::ApiKey { .. } => "the API key was revoked",
                                    service::identity::caller::Principal::User { .. } => "the session ended",
                                };
                                let _ = socket_tx.send(close_with(close::FORBIDDEN, reason.into())).await;
                                break;
                            }
                        }
                        message = rx.next() => match message {
                            Some(message) => {
                                let message = match (message, watched.refusal.get()) {
                                    (Message::Close(_), Some((code, reason))) => {
                                        close_with(*code, reason.clone())
                                    }
                                    (message, _) => message,
                                };
                                match &message {
                                    Message::Close(_) => close_sent = true,
                                    // An operation the server ended frees its place.
                                    Message::Text(text)
                                        if text.starts_with("{\"type\":\"complete\"")
                                            || text.starts_with("{\"type\":\"error\"") =>
                                    {
                                        if let Ok(Frame { id: Some(id), .. }) = serde_json::from_str::<Frame>(text) {
                                            watched.operations().remove(&id);
                                        }
                                    }
                                    _ => {}
                                }
                                if socket_tx.send(message).await.is_err() {
                                    break;
                                }
                            }
                            None => {
                                // The legacy protocol refuses with a text frame only.
                                if let (false, Some((code, reason))) = (close_sent, watched.refusal.get()) {
                                    let _ = socket_tx.send(close_with(*code, reason.clone())).await;
                                }
                                break;
                            }
                        },
                        _ = ping.tick() => {
                            let frame = Message::Ping(Vec::new().into());
                            if socket_tx.send(frame).await.is_err() {
                                break;
                            }
                        }
                    }
                }
                let _ = socket_tx.close().await;
            });

            let refused = shared.clone();
            let serve = async_graphql_axum::GraphQLWebSocket::new_with_pair(tx, inbound, schema, protocol)
                .on_connection_init(move |payload| async move {
                    let auth = match authenticate_socket(
                        &state,
                        &upgrade_headers,
                        &payload,
                        peer.ip().to_string(),
                    )
                    .await
                    {
                        Ok(auth) => auth,
                        Err(reason) => {
                            if let Some(reason) = reason {
                                let _ = refused.refusal.set((close::FORBIDDEN, reason.to_owned()));
                            }
                            return Err(async_graphql::Error::new(CSRF_REFUSED));
                        }
                    };
                    match auth {
                        RequestAuth::Authenticated(caller) => {
                            let Some(slot) = state.sockets.try_open(limit_key(&caller)) else {
                                let reason = format!(
                                    "too many sockets: this API key or user holds {} open already",
                                    state.sockets.max()
                                );
                                let _ = refused.refusal.set((close::TOO_MANY_SOCKETS, reason.clone()));
                                return Err(async_graphql::Error::new(reason));
                            };
                            *refused
                                .slot
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(slot);
                            let _ = refused.caller.set(caller.clone());
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
                .serve();
            // Whichever half ends first ends the socket: a client that left, or a close
            // the server sent (timeout, revoked key, shutdown) that the client ignores.
            let mut forwarder = forwarder;
            tokio::select! {
                () = serve => {
                    let _ = forwarder.await;
                }
                _ = &mut forwarder => {}
            }
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
