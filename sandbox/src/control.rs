//! `/sandbox/control/...`: faults, config, revoke, clock, reset and stats (JSON in/out).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::util::json_response;
use crate::{ConfigPatch, FaultEndpoint, FaultKind, Platform, Sandbox};

fn bad_request(message: &str) -> Response {
    json_response(
        StatusCode::BAD_REQUEST,
        json!({"error": "bad_request", "message": message}),
    )
}

fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("invalid JSON body: {e}"))
}

fn ok_json<T: serde::Serialize>(value: &T) -> Response {
    match serde_json::to_value(value) {
        Ok(v) => json_response(StatusCode::OK, v),
        Err(e) => json_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"error": "internal", "message": e.to_string()}),
        ),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultsReq {
    platform: Platform,
    kind: FaultKind,
    count: u32,
    /// Absent: the token calls (code exchanges and refreshes).
    #[serde(default)]
    endpoint: Option<FaultEndpoint>,
}

/// `POST /sandbox/control/faults {"platform","kind","count","endpoint"?}`.
pub(crate) async fn faults(State(sb): State<Sandbox>, body: Bytes) -> Response {
    let req: FaultsReq = match parse(&body) {
        Ok(r) => r,
        Err(msg) => return bad_request(&msg),
    };
    sb.set_faults_at(req.platform, req.endpoint, req.kind, req.count);
    json_response(
        StatusCode::OK,
        json!({"platform": req.platform, "kind": req.kind, "count": req.count, "endpoint": req.endpoint}),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PermissionReq {
    platform: Platform,
    #[serde(rename = "providerAccountId", alias = "provider_account_id")]
    provider_account_id: String,
    permission: String,
}

/// `POST /sandbox/control/remove-permission {"platform","providerAccountId","permission"}`
/// -> `{"removed":bool}`: the user took a permission back after consenting.
pub(crate) async fn remove_permission(State(sb): State<Sandbox>, body: Bytes) -> Response {
    let req: PermissionReq = match parse(&body) {
        Ok(r) => r,
        Err(msg) => return bad_request(&msg),
    };
    let removed = sb.remove_permission(req.platform, &req.provider_account_id, &req.permission);
    json_response(StatusCode::OK, json!({ "removed": removed }))
}

/// `GET /sandbox/control/config`.
pub(crate) async fn get_config(State(sb): State<Sandbox>) -> Response {
    ok_json(&sb.config())
}

/// `POST /sandbox/control/config` with any subset of the config fields; returns the result.
pub(crate) async fn patch_config(State(sb): State<Sandbox>, body: Bytes) -> Response {
    let patch: ConfigPatch = match parse(&body) {
        Ok(p) => p,
        Err(msg) => return bad_request(&msg),
    };
    sb.update_config(patch);
    ok_json(&sb.config())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeReq {
    platform: Platform,
    #[serde(rename = "providerAccountId", alias = "provider_account_id")]
    provider_account_id: String,
    /// Send the platform's callbacks to `callback_base_url`.
    #[serde(default)]
    notify: bool,
    /// TikTok `authorization.removed` reason code (0-5, default 1).
    #[serde(default)]
    reason: Option<i64>,
    /// Instagram: also send the data deletion callback.
    #[serde(default, rename = "dataDeletion", alias = "data_deletion")]
    data_deletion: bool,
}

/// `POST /sandbox/control/revoke {"platform","providerAccountId","notify"?,"reason"?,
/// "dataDeletion"?}` -> `{"revoked":bool,"notified":[{"url","status"}]}`.
pub(crate) async fn revoke(State(sb): State<Sandbox>, body: Bytes) -> Response {
    let req: RevokeReq = match parse(&body) {
        Ok(r) => r,
        Err(msg) => return bad_request(&msg),
    };
    if !req.notify {
        let revoked = sb.revoke(req.platform, &req.provider_account_id);
        return json_response(
            StatusCode::OK,
            json!({ "revoked": revoked, "notified": [] }),
        );
    }
    let (revoked, sent) = sb
        .revoke_and_notify(
            req.platform,
            &req.provider_account_id,
            req.reason,
            req.data_deletion,
        )
        .await;
    let notified: Vec<_> = sent
        .into_iter()
        .map(|(url, status)| json!({ "url": url, "status": status }))
        .collect();
    json_response(
        StatusCode::OK,
        json!({ "revoked": revoked, "notified": notified }),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClockReq {
    advance_s: i64,
}

/// `POST /sandbox/control/clock {"advance_s":N}` -> `{"offset_s","now"}`.
pub(crate) async fn clock(State(sb): State<Sandbox>, body: Bytes) -> Response {
    let req: ClockReq = match parse(&body) {
        Ok(r) => r,
        Err(msg) => return bad_request(&msg),
    };
    sb.advance_clock(req.advance_s);
    let st = sb.lock();
    json_response(
        StatusCode::OK,
        json!({"offset_s": st.clock_offset, "now": st.now()}),
    )
}

/// `POST /sandbox/control/reset` (body ignored).
pub(crate) async fn reset(State(sb): State<Sandbox>) -> Response {
    sb.reset();
    json_response(StatusCode::OK, json!({"ok": true}))
}

/// `GET /sandbox/control/stats`.
pub(crate) async fn stats(State(sb): State<Sandbox>) -> Response {
    ok_json(&sb.stats())
}
