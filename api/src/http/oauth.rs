//! The browser side of connecting an account (no API key on any of these routes):
//! - `GET /oauth/reconnect/{token}`: a signed reconnect link (`Notification.reconnectLink`);
//!   opening it starts the connection and redirects to the platform;
//! - `GET /oauth/callback/{platform}`: where TikTok and Instagram send the user back; the
//!   one-time `state` is the credential.

use std::{collections::HashMap, net::SocketAddr};

use axum::{
    Json,
    extract::{ConnectInfo, Path, Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{Html, IntoResponse, Redirect, Response},
};
use service::{
    connections::{self, CallbackResult},
    domain::Platform,
};

use crate::{app::AppState, error::ApiError, graphql::ids};

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let escape = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    (
        status,
        Html(format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title></head>\
             <body style=\"font-family:sans-serif;max-width:36em;margin:4em auto\">\
             <h1>{t}</h1><p>{b}</p></body></html>",
            t = escape(title),
            b = escape(body)
        )),
    )
        .into_response()
}

/// Whether the client asked for JSON rather than a page.
fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("application/json") && !accept.contains("text/html"))
}

/// A refusal with a stable code: a small page, or `{"error": {"code", "message"}}` for
/// clients that accept JSON. Never cached.
fn refusal(
    headers: &HeaderMap,
    status: StatusCode,
    code: &str,
    title: &str,
    message: &str,
) -> Response {
    let mut response = if wants_json(headers) {
        (
            status,
            Json(serde_json::json!({ "error": { "code": code, "message": message } })),
        )
            .into_response()
    } else {
        page(status, title, &format!("{message} (code {code})"))
    };
    no_store(&mut response);
    response
}

fn no_store(response: &mut Response) {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// `302 Found` to `location`, never cached.
fn found(location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(value) => {
            let mut response = (StatusCode::FOUND, [(header::LOCATION, value)]).into_response();
            no_store(&mut response);
            response
        }
        Err(_) => page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Connection failed",
            "The platform's address could not be built. Try again later.",
        ),
    }
}

/// `GET /oauth/reconnect/{token}`: verifies the link and, only when it is valid, starts
/// the connection and redirects to the platform. A refused link writes nothing.
pub async fn reconnect(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Response {
    use service::connections::links::{self, LinkError};
    match links::open(
        &state.db,
        &state.engine,
        &token,
        Some(peer.ip().to_string()),
        chrono::Utc::now(),
    )
    .await
    {
        Ok(started) => found(&started.authorization_url),
        Err(err) => {
            let status = match &err {
                LinkError::Invalid => StatusCode::BAD_REQUEST,
                LinkError::Expired => StatusCode::GONE,
                LinkError::NotNeeded => StatusCode::CONFLICT,
                LinkError::Failed(_) => StatusCode::SERVICE_UNAVAILABLE,
            };
            if let LinkError::Failed(cause) = &err {
                tracing::error!(error = %cause, "a reconnect link could not start its connection");
            }
            refusal(
                &headers,
                status,
                err.code(),
                "Reconnect link refused",
                err.message(),
            )
        }
    }
}

fn with_params(base: &str, params: &[(&str, &str)]) -> Option<String> {
    let mut url = url::Url::parse(base).ok()?;
    {
        let mut query = url.query_pairs_mut();
        for (k, v) in params {
            query.append_pair(k, v);
        }
    }
    Some(url.to_string())
}

/// Completes the connection and sends the user to `redirectAfter` (with `status`,
/// `accountId` or `error`), or shows a small page when none was given.
pub async fn callback(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(platform): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let Ok(platform) = platform.parse::<Platform>() else {
        return page(
            StatusCode::NOT_FOUND,
            "Unknown platform",
            "There is no such callback.",
        );
    };
    let Some(oauth_state) = params.get("state") else {
        return page(
            StatusCode::BAD_REQUEST,
            "Connection failed",
            "The callback is missing its state parameter. Start the connection again.",
        );
    };
    let result = match (params.get("code"), params.get("error")) {
        (_, Some(error)) => CallbackResult::Error {
            error: error.clone(),
            description: params.get("error_description").cloned(),
        },
        (Some(code), None) => CallbackResult::Code(code.clone()),
        (None, None) => {
            return page(
                StatusCode::BAD_REQUEST,
                "Connection failed",
                "The callback carries neither a code nor an error. Start the connection again.",
            );
        }
    };
    let completion = connections::complete(
        &state.db,
        &state.engine,
        Some(platform),
        oauth_state,
        result,
        None,
        Some(peer.ip().to_string()),
    )
    .await;
    match (completion.result, completion.redirect_after) {
        (Ok(connected), Some(target)) => {
            let account_id = ids::encode(crate::graphql::accounts::KIND, connected.account.id);
            let status = if connected.reconnected {
                "reconnected"
            } else {
                "connected"
            };
            match with_params(
                &target,
                &[
                    ("status", "connected"),
                    ("result", status),
                    ("accountId", account_id.as_str()),
                    ("platform", platform.as_str()),
                ],
            ) {
                Some(url) => Redirect::to(&url).into_response(),
                None => page(StatusCode::OK, "Connected", "The account is connected."),
            }
        }
        (Ok(connected), None) => {
            let who = connected
                .account
                .username
                .map(|u| format!("@{u}"))
                .unwrap_or_else(|| "The account".to_owned());
            page(
                StatusCode::OK,
                "Connected",
                &format!(
                    "{who} is connected to {}. You can close this window.",
                    platform.display_name()
                ),
            )
        }
        (Err(err), redirect) => {
            let error: ApiError = err.into();
            match redirect.and_then(|target| {
                with_params(
                    &target,
                    &[
                        ("status", "error"),
                        ("error", error.code),
                        ("message", error.message.as_str()),
                    ],
                )
            }) {
                Some(url) => Redirect::to(&url).into_response(),
                None => page(
                    StatusCode::BAD_REQUEST,
                    "Connection failed",
                    &format!(
                        "{} {}",
                        error.message,
                        error.action.as_deref().unwrap_or_default()
                    ),
                ),
            }
        }
    }
}
