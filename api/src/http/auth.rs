//! Dashboard sign-in: `POST /auth/sign-in`, `POST /auth/sign-out`, `GET /auth/session`.
//! The session lives in an HttpOnly, SameSite=Strict cookie (`tw_session`); its CSRF token
//! in a script-readable one (`tw_csrf`) that requests echo in `X-CSRF-Token`.

use std::net::SocketAddr;

use axum::{
    body::Bytes,
    extract::{ConnectInfo, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Value, json};
use service::{
    Role, ServiceError,
    identity::sessions::{self, ActiveSession, SignIn, SignInError},
};

use crate::app::AppState;

/// The session cookie (HttpOnly).
pub(crate) const SESSION_COOKIE: &str = "tw_session";
/// The CSRF cookie (readable by the dashboard's script).
pub(crate) const CSRF_COOKIE: &str = "tw_csrf";
/// The header that must echo the CSRF token on state-changing requests.
pub(crate) const CSRF_HEADER: &str = "x-csrf-token";

/// The value of cookie `name` from the request's `Cookie` headers.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim())
        .filter(|value| !value.is_empty())
}

/// The session named by the request's cookie: `Ok(None)` without a cookie,
/// `Err(Unauthenticated)` for an ended one.
pub(crate) async fn session_from_headers(
    state: &AppState,
    headers: &HeaderMap,
    client_ip: String,
) -> Result<Option<ActiveSession>, ServiceError> {
    let Some(token) = cookie(headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    sessions::authenticate(&state.db, &state.config.session, token, Some(client_ip))
        .await
        .map(Some)
}

/// Whether the request's `X-CSRF-Token` matches the session's.
pub(crate) fn csrf_ok(session: &ActiveSession, headers: &HeaderMap) -> bool {
    headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|presented| sessions::csrf_matches(session, presented.trim()))
}

/// `; Secure` when the public URL is https (cookies then travel over TLS only).
pub(crate) fn secure_suffix(state: &AppState) -> &'static str {
    if state.config.public_url().starts_with("https://") {
        "; Secure"
    } else {
        ""
    }
}

fn set_cookies(state: &AppState, token: &str, csrf: &str, max_age: i64) -> [HeaderValue; 2] {
    let secure = secure_suffix(state);
    let session = format!(
        "{SESSION_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{secure}"
    );
    let csrf = format!("{CSRF_COOKIE}={csrf}; SameSite=Strict; Path=/; Max-Age={max_age}{secure}");
    // Tokens are base64url, so the header values are always valid.
    [
        HeaderValue::from_str(&session).unwrap_or_else(|_| HeaderValue::from_static("")),
        HeaderValue::from_str(&csrf).unwrap_or_else(|_| HeaderValue::from_static("")),
    ]
}

fn json_response(status: StatusCode, body: Value) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn error(status: StatusCode, code: &str) -> Response {
    json_response(status, json!({ "error": { "code": code } }))
}

fn user_json(email: &str, role: Role, tenant: &str) -> Value {
    json!({ "email": email, "role": role, "tenant": tenant })
}

#[derive(Deserialize)]
struct SignInBody {
    email: String,
    password: String,
    #[serde(default)]
    code: Option<String>,
}

/// `POST /auth/sign-in` `{"email","password","code"}`.
pub async fn sign_in(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Bytes,
) -> Response {
    let Ok(body) = serde_json::from_slice::<SignInBody>(&body) else {
        return json_response(
            StatusCode::BAD_REQUEST,
            json!({ "error": {
                "code": "BAD_REQUEST",
                "message": "send {\"email\", \"password\", \"code\"} as JSON"
            } }),
        );
    };
    let attempt = SignIn {
        email: body.email,
        password: SecretString::from(body.password),
        code: body.code.unwrap_or_default(),
    };
    let settings = state.config.session;
    let vault = state.engine.vault();
    let outcome = sessions::sign_in(
        &state.db,
        &vault,
        &settings,
        attempt,
        Some(peer.ip().to_string()),
    )
    .await;
    match outcome {
        Ok(signed_in) => {
            let max_age = i64::try_from(settings.absolute_timeout.as_secs()).unwrap_or(i64::MAX);
            let cookies = set_cookies(
                &state,
                signed_in.cookie_value(),
                &signed_in.csrf_token,
                max_age,
            );
            let mut response = json_response(
                StatusCode::OK,
                json!({
                    "user": user_json(&signed_in.user.email, signed_in.user.role, &signed_in.tenant),
                    "csrfToken": signed_in.csrf_token,
                }),
            );
            for cookie in cookies {
                response.headers_mut().append(header::SET_COOKIE, cookie);
            }
            response
        }
        Err(SignInError::InvalidCredentials) => {
            error(StatusCode::UNAUTHORIZED, "INVALID_CREDENTIALS")
        }
        Err(SignInError::InvalidCode) => error(StatusCode::UNAUTHORIZED, "INVALID_CODE"),
        Err(SignInError::LockedOut {
            retry_after_seconds,
        }) => {
            let mut response = json_response(
                StatusCode::TOO_MANY_REQUESTS,
                json!({ "error": {
                    "code": "LOCKED_OUT",
                    "retryAfterSeconds": retry_after_seconds,
                } }),
            );
            if let Ok(value) = HeaderValue::from_str(&retry_after_seconds.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            response
        }
        Err(SignInError::Service(err)) => {
            tracing::error!(error = %err, "sign-in failed");
            error(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL")
        }
    }
}

/// The response to a request whose session could not be resolved.
fn session_error(err: &ServiceError) -> Response {
    match err {
        ServiceError::Unauthenticated(_) => error(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED"),
        other => {
            tracing::error!(error = %other, "could not check a session");
            error(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL")
        }
    }
}

/// `POST /auth/sign-out` (with `X-CSRF-Token`): ends the session and clears the cookies.
pub async fn sign_out(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let session = match session_from_headers(&state, &headers, peer.ip().to_string()).await {
        Ok(Some(session)) => session,
        Ok(None) => return error(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED"),
        Err(err) => return session_error(&err),
    };
    if !csrf_ok(&session, &headers) {
        return error(StatusCode::FORBIDDEN, "CSRF_FAILED");
    }
    if let Err(err) = sessions::sign_out(&state.db, &session).await {
        tracing::error!(error = %err, "sign-out failed");
        return error(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL");
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    for cookie in set_cookies(&state, "", "", 0) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

/// `GET /auth/session`: who is signed in, and the CSRF token (for a reloaded page).
pub async fn session(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    match session_from_headers(&state, &headers, peer.ip().to_string()).await {
        Ok(Some(session)) => json_response(
            StatusCode::OK,
            json!({
                "user": user_json(&session.user.email, session.user.role, &session.tenant),
                "csrfToken": session.csrf_token,
            }),
        ),
        Ok(None) => error(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED"),
        Err(err) => session_error(&err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_among_others_and_across_headers() {
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, HeaderValue::from_static("a=1; tw_csrf=x"));
        headers.append(header::COOKIE, HeaderValue::from_static("tw_session=abc"));
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&headers, CSRF_COOKIE), Some("x"));
        assert_eq!(cookie(&headers, "missing"), None);
        let mut empty = HeaderMap::new();
        empty.insert(header::COOKIE, HeaderValue::from_static("tw_session="));
        assert_eq!(cookie(&empty, SESSION_COOKIE), None);
    }
}
