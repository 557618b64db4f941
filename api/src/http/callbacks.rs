//! Inbound platform callbacks (the service does the work, see
//! `service::connections::callbacks`):
//! - `POST /providers/tiktok/webhook`: TikTok's webhook (portal: Webhooks, Callback URL);
//! - `POST /providers/instagram/deauthorize`: Meta's Deauthorize callback URL;
//! - `POST /providers/instagram/data-deletion`: Meta's Data Deletion Request URL;
//! - `GET /providers/instagram/data-deletion/status`: the status page its answer links to.
//!
//! A bad signature gets 401 and changes nothing; a storage failure gets 500 so the platform
//! retries.

use std::collections::HashMap;

use axum::{
    Json,
    body::Bytes,
    extract::{Query, State},
    http::{HeaderMap, StatusCode},
    response::{Html, IntoResponse, Response},
};
use serde_json::json;
use service::connections::callbacks::{self, CallbackError};

use crate::app::AppState;

fn refusal(err: &CallbackError) -> Response {
    let status = match err {
        CallbackError::BadSignature(_) => StatusCode::UNAUTHORIZED,
        CallbackError::BadPayload(_) => StatusCode::BAD_REQUEST,
        CallbackError::NotConfigured(_) => StatusCode::NOT_FOUND,
        CallbackError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    if status.is_server_error() {
        tracing::error!(error = %err, "platform callback failed");
    } else {
        tracing::warn!(error = %err, "platform callback refused");
    }
    let message = match err {
        CallbackError::Internal(_) => "the callback could not be processed; retry".to_owned(),
        other => other.to_string(),
    };
    (status, Json(json!({ "error": message }))).into_response()
}

/// The `signed_request` field of a form body.
fn signed_request(body: &Bytes) -> Result<String, CallbackError> {
    url::form_urlencoded::parse(body)
        .find(|(k, _)| k == "signed_request")
        .map(|(_, v)| v.into_owned())
        .ok_or(CallbackError::BadPayload("no signed_request"))
}

/// `POST /providers/tiktok/webhook`.
pub async fn tiktok_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let signature = headers
        .get("tiktok-signature")
        .and_then(|v| v.to_str().ok());
    match callbacks::tiktok_webhook(&state.db, &state.engine, signature, &body).await {
        Ok(outcome) => {
            Json(json!({ "ok": true, "accountsChanged": outcome.changed.len() })).into_response()
        }
        Err(err) => refusal(&err),
    }
}

/// `POST /providers/instagram/deauthorize`.
pub async fn instagram_deauthorize(State(state): State<AppState>, body: Bytes) -> Response {
    let result = match signed_request(&body) {
        Ok(sr) => callbacks::instagram_deauthorize(&state.db, &state.engine, &sr).await,
        Err(err) => Err(err),
    };
    match result {
        Ok(outcome) => {
            Json(json!({ "ok": true, "accountsChanged": outcome.changed.len() })).into_response()
        }
        Err(err) => refusal(&err),
    }
}

/// `POST /providers/instagram/data-deletion` -> `{"url", "confirmation_code"}`.
pub async fn instagram_data_deletion(State(state): State<AppState>, body: Bytes) -> Response {
    let result = match signed_request(&body) {
        Ok(sr) => callbacks::instagram_data_deletion(&state.db, &state.engine, &sr).await,
        Err(err) => Err(err),
    };
    match result {
        Ok(receipt) => {
            let mut url = match url::Url::parse(&format!(
                "{}/providers/instagram/data-deletion/status",
                state.config.public_url()
            )) {
                Ok(url) => url,
                Err(_) => {
                    return refusal(&CallbackError::Internal("invalid public URL".into()));
                }
            };
            url.query_pairs_mut()
                .append_pair("id", &receipt.user_id)
                .append_pair("code", &receipt.confirmation_code);
            Json(json!({ "url": url.as_str(), "confirmation_code": receipt.confirmation_code }))
                .into_response()
        }
        Err(err) => refusal(&err),
    }
}

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

/// `GET /providers/instagram/data-deletion/status?id=<user id>&code=<confirmation code>`.
pub async fn deletion_status(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let (Some(id), Some(code)) = (params.get("id"), params.get("code")) else {
        return page(
            StatusCode::BAD_REQUEST,
            "Unknown request",
            "This link is incomplete.",
        );
    };
    match callbacks::deletion_status(&state.db, &state.engine, id, code).await {
        Ok(Some(status)) if status.completed => page(
            StatusCode::OK,
            "Your data was deleted",
            &format!(
                "Confirmation code {code}: on {}, at your request through Instagram, we deleted \
                 the access tokens and the profile data (username, name, picture) we held for \
                 your Instagram account. Nothing about it remains.",
                status.requested_at.format("%Y-%m-%d %H:%M UTC")
            ),
        ),
        Ok(Some(status)) => page(
            StatusCode::OK,
            "Deletion in progress",
            &format!(
                "Confirmation code {code}: your request from {} was received and the deletion \
                 of your data has not finished yet. Check this page again later.",
                status.requested_at.format("%Y-%m-%d %H:%M UTC")
            ),
        ),
        Ok(None) => page(
            StatusCode::NOT_FOUND,
            "Unknown request",
            "No data deletion request matches this link.",
        ),
        Err(err) => refusal(&err),
    }
}
