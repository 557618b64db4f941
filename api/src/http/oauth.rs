//! The browser side of connecting an account (no API key on any of these routes):
//! - `GET /oauth/start/{secret}`: the launch URL `startConnection` returns; opening it sets
//!   the flow's cookie (`tw_oauth_<id>`: `HttpOnly; SameSite=Lax; Path=/oauth`, `Secure`
//!   when the public URL is https, until the state expires) and redirects to the platform;
//! - `GET /oauth/reconnect/{token}`: a signed reconnect link (`Notification.reconnectLink`);
//!   opening it starts the connection, then does the same;
//! - `GET /oauth/callback/{platform}`: where TikTok and Instagram send the user back; the
//!   one-time `state` and the flow's cookie are the credential, and a callback without the
//!   cookie is refused before the state is consumed.

use std::{collections::HashMap, net::SocketAddr};

use axum::{
    Json,
    extract::{ConnectInfo, Path, Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{Html, IntoResponse, Redirect, Response},
};
use secrecy::ExposeSecret;
use service::{
    ServiceError,
    connections::{self, CallbackResult, Launched, Proof},
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

/// The flow's cookie, valid as long as its state.
fn flow_cookie(state: &AppState, name: &str, value: &str, max_age: i64) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!(
        "{name}={value}; Max-Age={max_age}; Path=/oauth; HttpOnly; SameSite=Lax{}",
        crate::http::auth::secure_suffix(state)
    ))
    .ok()
}

/// The redirect to the platform, with the cookie that binds the flow to this browser.
fn to_platform(state: &AppState, launched: &Launched) -> Response {
    let max_age = (launched.expires_at - chrono::Utc::now())
        .num_seconds()
        .max(1);
    let mut response = found(&launched.authorization_url);
    if let Some(cookie) = flow_cookie(
        state,
        &launched.cookie_name,
        launched.cookie_value.expose_secret(),
        max_age,
    ) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

/// `GET /oauth/start/{secret}`: binds the connection to this browser and redirects to the
/// platform. Opening it again from the same browser redirects again; from another browser
/// it is refused (`CONNECTION_LINK_USED`).
pub async fn start(
    State(state): State<AppState>,
    Path(secret): Path<String>,
    headers: HeaderMap,
) -> Response {
    use service::connections::LaunchError;
    let presented = |name: &str| crate::http::auth::cookie(&headers, name).map(str::to_owned);
    match connections::launch(&state.db, &state.engine, &secret, presented).await {
        Ok(launched) => to_platform(&state, &launched),
        Err(err) => {
            let status = match &err {
                LaunchError::Invalid => StatusCode::BAD_REQUEST,
                LaunchError::OpenedElsewhere => StatusCode::CONFLICT,
                LaunchError::Failed(_) => StatusCode::SERVICE_UNAVAILABLE,
            };
            if let LaunchError::Failed(cause) = &err {
                tracing::error!(error = %cause, "a connection could not be launched");
            }
            refusal(
                &headers,
                status,
                err.code(),
                "Connection failed",
                err.message(),
            )
        }
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
        Ok(launched) => to_platform(&state, &launched),
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
    headers: HeaderMap,
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
    let cookie_name = connections::browser_cookie_name(oauth_state);
    let cookie = crate::http::auth::cookie(&headers, &cookie_name);
    let completion = connections::complete(
        &state.db,
        &state.engine,
        Some(platform),
        oauth_state,
        result,
        Proof::Browser(cookie),
        Some(peer.ip().to_string()),
    )
    .await;
    if let Err(err @ ServiceError::WrongBrowser) = &completion.result {
        // Nothing was consumed: the browser that started can still finish.
        let message = err.to_string();
        return refusal(
            &headers,
            StatusCode::BAD_REQUEST,
            crate::error::code::OAUTH_BROWSER_MISMATCH,
            "Connection failed",
            &message,
        );
    }
    let mut response = finished(platform, completion);
    // The state is used up: the cookie has done its job.
    if cookie.is_some()
        && let Some(clear) = flow_cookie(&state, &cookie_name, "", 0)
    {
        response.headers_mut().append(header::SET_COOKIE, clear);
    }
    no_store(&mut response);
    response
}

/// The answer to a completed (or failed) callback.
fn finished(platform: Platform, completion: connections::Completion) -> Response {
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
                        "{} {} (code {})",
                        error.message,
                        error.action.as_deref().unwrap_or_default(),
                        error.code
                    ),
                ),
            }
        }
    }
}
