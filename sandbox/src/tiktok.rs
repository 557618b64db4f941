//! TikTok Login Kit v2: authorize, token (code + refresh), revoke and user info.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderName, StatusCode};
use axum::response::Response;
use serde_json::{Map, Value, json};

use crate::util::{
    bearer, connection_reset, flag, gateway_timeout, granted_scopes, html_bad_gateway,
    json_response, malformed_ok, no_store, param, parse_params, parse_query, parse_redirect_uri,
    pkce_s256_hex, random_b64, random_below, random_hex, redirect, redirect_url, split_scopes,
    too_many, valid_pkce_string, with_header,
};
use crate::{
    CallKind, FaultEndpoint, FaultKind, Gate, Platform, Sandbox, State as SbState,
    TIKTOK_CLIENT_KEY, TIKTOK_CLIENT_SECRET, TIKTOK_CODE_TTL_S, TikTokAppType, tiktok_open_id,
    tiktok_union_id,
};

const LOG_ID_HEADER: &str = "x-tt-logid";

struct Code {
    redirect_uri: String,
    user: String,
    scopes: Vec<String>,
    challenge: Option<String>,
    expires_at: i64,
    used: bool,
}

struct Grant {
    user: String,
    open_id: String,
    scopes: Vec<String>,
    /// Fixed at the code exchange; rotation keeps it.
    refresh_expires_at: i64,
    revoked: bool,
}

struct Access {
    grant: u64,
    expires_at: i64,
}

struct Refresh {
    grant: u64,
    rotated: bool,
}

/// TikTok codes, grants and tokens.
#[derive(Default)]
pub(crate) struct TtState {
    codes: HashMap<String, Code>,
    grants: HashMap<u64, Grant>,
    access: HashMap<String, Access>,
    refresh: HashMap<String, Refresh>,
    next_grant: u64,
}

impl TtState {
    /// Revokes every live grant of `open_id` and drops its pending codes.
    pub(crate) fn revoke_account(&mut self, open_id: &str) -> bool {
        self.codes
            .retain(|_, c| c.used || tiktok_open_id(&c.user) != open_id);
        let mut any = false;
        for g in self.grants.values_mut() {
            if g.open_id == open_id && !g.revoked {
                g.revoked = true;
                any = true;
            }
        }
        any
    }

    /// Removes `scope` from every live grant of `open_id`.
    pub(crate) fn remove_permission(&mut self, open_id: &str, scope: &str) -> bool {
        let mut any = false;
        for g in self.grants.values_mut() {
            if g.open_id == open_id && !g.revoked && g.scopes.iter().any(|s| s == scope) {
                g.scopes.retain(|s| s != scope);
                any = true;
            }
        }
        any
    }

    fn revoke_grant(&mut self, grant: u64) {
        if let Some(g) = self.grants.get_mut(&grant) {
            g.revoked = true;
        }
    }

    /// The live grant behind an access token, or the reason it is unusable.
    fn check_access(&self, token: &str, now: i64) -> Result<&Grant, &'static str> {
        let access = self
            .access
            .get(token)
            .ok_or("The access token is invalid or not found in the request.")?;
        let grant = self
            .grants
            .get(&access.grant)
            .ok_or("The access token is invalid or not found in the request.")?;
        if grant.revoked {
            return Err("The access token has been revoked.");
        }
        if now >= access.expires_at {
            return Err("The access token has expired.");
        }
        Ok(grant)
    }
}

fn log_id() -> String {
    random_hex(16).to_uppercase()
}

fn token_string(prefix: &str) -> String {
    format!("{prefix}.{}!{:04}.va", random_b64(36), random_below(10_000))
}

/// JSON response tagged with a TikTok log id (body field and `x-tt-logid` header).
fn tt_json(status: StatusCode, body: Value, log_id: &str) -> Response {
    with_header(
        json_response(status, body),
        HeaderName::from_static(LOG_ID_HEADER),
        log_id,
    )
}

/// OAuth error: HTTP 400 `{"error","error_description","log_id"}`.
fn oauth_error(error: &str, description: &str) -> Response {
    let id = log_id();
    tt_json(
        StatusCode::BAD_REQUEST,
        json!({"error": error, "error_description": description, "log_id": id}),
        &id,
    )
}

/// API error: `{"data":{},"error":{"code","message","log_id"}}`.
fn api_error(status: StatusCode, code: &str, message: &str) -> Response {
    let id = log_id();
    tt_json(
        status,
        json!({"data": {}, "error": {"code": code, "message": message, "log_id": id}}),
        &id,
    )
}

/// OAuth error kept small until rendered by [`OAuthError::response`].
struct OAuthError {
    error: &'static str,
    description: String,
}

impl OAuthError {
    fn new(error: &'static str, description: impl Into<String>) -> Self {
        Self {
            error,
            description: description.into(),
        }
    }

    fn response(&self) -> Response {
        oauth_error(self.error, &self.description)
    }
}

fn rate_limited(retry_after: u64) -> Response {
    let id = log_id();
    let body = json!({"error": {
        "code": "rate_limit_exceeded",
        "message": "The API rate limit was exceeded. Please retry after a while.",
        "log_id": id,
    }});
    with_header(
        too_many(body, retry_after),
        HeaderName::from_static(LOG_ID_HEADER),
        &id,
    )
}

async fn fault_response(kind: FaultKind, retry_after: u64, timeout_ms: u64) -> Response {
    match kind {
        FaultKind::RateLimited => rate_limited(retry_after),
        FaultKind::ServerError => {
            let id = log_id();
            let body = json!({"error": {
                "code": "internal_error",
                "message": "Something went wrong. Please try again later.",
                "log_id": id,
            }});
            tt_json(StatusCode::SERVICE_UNAVAILABLE, body, &id)
        }
        FaultKind::Timeout => {
            tokio::time::sleep(std::time::Duration::from_millis(timeout_ms)).await;
            gateway_timeout()
        }
        FaultKind::InvalidGrant => oauth_error(
            "invalid_grant",
            "The authorization grant is invalid, expired or revoked.",
        ),
        FaultKind::PermissionRemoved => api_error(
            StatusCode::UNAUTHORIZED,
            "scope_not_authorized",
            "The user did not authorize the scope required for completing this request: video.publish.",
        ),
        FaultKind::TemporarilyBlocked => {
            let id = log_id();
            let body = json!({"error": {
                "code": "internal_error",
                "message": "Something went wrong. Please try again later.",
                "log_id": id,
            }});
            tt_json(StatusCode::SERVICE_UNAVAILABLE, body, &id)
        }
        FaultKind::InvalidClient => {
            oauth_error("invalid_client", "Client key or secret is invalid.")
        }
        FaultKind::HtmlServerError => html_bad_gateway(),
        FaultKind::ConnectionReset => connection_reset(),
        FaultKind::MalformedBody => malformed_ok(),
        // The legacy shape is Instagram's; TikTok answers its v2 dead-grant error.
        FaultKind::LegacyError => oauth_error(
            "invalid_grant",
            "The authorization grant is invalid, expired or revoked.",
        ),
        FaultKind::ThrottledApp
        | FaultKind::ThrottledUser
        | FaultKind::ThrottledPage
        | FaultKind::ThrottledCustom => rate_limited(retry_after),
    }
}

/// Runs the fault gate of a non-token endpoint; `Some` is the response to send instead.
async fn gate_endpoint(sb: &Sandbox, endpoint: FaultEndpoint) -> Option<Response> {
    match sb.gate_endpoint(Platform::Tiktok, endpoint) {
        Gate::Proceed | Gate::RateLimited { .. } => None,
        Gate::Fault {
            kind,
            retry_after,
            timeout_ms,
        } => Some(fault_response(kind, retry_after, timeout_ms).await),
    }
}

/// Runs the fault / rate-limit gate; `Some` is the response to send instead.
async fn gate(sb: &Sandbox, kind: CallKind) -> Option<Response> {
    match sb.gate(Platform::Tiktok, kind) {
        Gate::Proceed => None,
        Gate::RateLimited { retry_after } => Some(rate_limited(retry_after)),
        Gate::Fault {
            kind,
            retry_after,
            timeout_ms,
        } => Some(fault_response(kind, retry_after, timeout_ms).await),
    }
}

/// Error page shown when TikTok cannot redirect back (unknown client, bad redirect_uri).
fn authorize_error(error: &str, description: &str) -> Response {
    oauth_error(error, description)
}

/// `GET /v2/auth/authorize/` — approves at once and redirects back with a code.
pub(crate) async fn authorize(State(sb): State<Sandbox>, RawQuery(q): RawQuery) -> Response {
    sb.latency().await;
    let p = parse_query(q.as_deref());
    if param(&p, "client_key") != Some(TIKTOK_CLIENT_KEY) {
        return authorize_error("invalid_client", "client_key is missing or unknown.");
    }
    let Some(base) = param(&p, "redirect_uri").and_then(parse_redirect_uri) else {
        return authorize_error(
            "invalid_request",
            "redirect_uri is missing or not an absolute http(s) URL.",
        );
    };
    let state = param(&p, "state");
    let fail = |error: &str, description: &str| {
        redirect(&redirect_url(
            &base,
            &[
                ("error", Some(error)),
                ("error_description", Some(description)),
                ("state", state),
            ],
            None,
        ))
    };
    if param(&p, "response_type") != Some("code") {
        return fail("unsupported_response_type", "response_type must be 'code'.");
    }
    if let Gate::Fault { kind, .. } = sb.gate_endpoint(Platform::Tiktok, FaultEndpoint::Authorize) {
        // RFC 6749 §4.1.2.1: the authorization server tells the client by redirect.
        return match kind {
            FaultKind::TemporarilyBlocked | FaultKind::RateLimited => fail(
                "temporarily_unavailable",
                "The service is temporarily unavailable. Please try again later.",
            ),
            FaultKind::HtmlServerError | FaultKind::ConnectionReset => html_bad_gateway(),
            _ => fail(
                "server_error",
                "Something went wrong. Please try again later.",
            ),
        };
    }
    let requested = split_scopes(param(&p, "scope").unwrap_or_default());
    if requested.is_empty() {
        return fail("invalid_scope", "scope is required.");
    }
    let challenge = param(&p, "code_challenge");
    let app_type = sb.lock().config.tiktok_app_type;
    match (challenge, param(&p, "code_challenge_method")) {
        (None, None) if app_type == TikTokAppType::Desktop => {
            return fail(
                "invalid_request",
                "code_challenge and code_challenge_method=S256 are required for desktop apps.",
            );
        }
        (None, None) => {}
        (Some(c), Some("S256")) if valid_pkce_string(c) => {}
        (Some(_), Some("S256")) => {
            return fail("invalid_request", "code_challenge is malformed.");
        }
        _ => {
            return fail(
                "invalid_request",
                "code_challenge requires code_challenge_method=S256.",
            );
        }
    }
    if flag(&p, "sandbox_deny") {
        return fail(
            "access_denied",
            "The user denied the authorization request.",
        );
    }
    let user = param(&p, "sandbox_user").unwrap_or("demo").to_owned();
    let scopes = granted_scopes(&requested, param(&p, "sandbox_grant"));
    let code = random_b64(48);
    {
        let mut st = sb.lock();
        let now = st.now();
        st.tiktok.codes.retain(|_, c| c.expires_at + 3600 > now);
        st.tiktok.codes.insert(
            code.clone(),
            Code {
                redirect_uri: param(&p, "redirect_uri").unwrap_or_default().to_owned(),
                user,
                scopes: scopes.clone(),
                challenge: challenge.map(str::to_owned),
                expires_at: now + TIKTOK_CODE_TTL_S,
                used: false,
            },
        );
    }
    let scopes = scopes.join(",");
    redirect(&redirect_url(
        &base,
        &[
            ("code", Some(&code)),
            ("scopes", Some(&scopes)),
            ("state", state),
        ],
        None,
    ))
}

fn check_client(p: &HashMap<String, String>) -> Result<(), OAuthError> {
    match (param(p, "client_key"), param(p, "client_secret")) {
        (Some(TIKTOK_CLIENT_KEY), Some(TIKTOK_CLIENT_SECRET)) => Ok(()),
        (Some(_), Some(_)) => Err(OAuthError::new(
            "invalid_client",
            "Client key or secret is invalid.",
        )),
        _ => Err(OAuthError::new(
            "invalid_request",
            "client_key and client_secret are required.",
        )),
    }
}

/// Mints an access + refresh token pair for `grant_id` and renders the token response.
fn issue_tokens(st: &mut SbState, grant_id: u64, now: i64) -> Result<Value, OAuthError> {
    let access_ttl = st.config.tiktok_access_ttl_s;
    let tt = &mut st.tiktok;
    let grant = tt
        .grants
        .get(&grant_id)
        .ok_or_else(|| OAuthError::new("invalid_grant", "The grant no longer exists."))?;
    let (open_id, scope, refresh_expires_in) = (
        grant.open_id.clone(),
        grant.scopes.join(","),
        grant.refresh_expires_at - now,
    );
    let access_token = token_string("act");
    let refresh_token = token_string("rft");
    tt.access.insert(
        access_token.clone(),
        Access {
            grant: grant_id,
            expires_at: now + access_ttl,
        },
    );
    tt.refresh.insert(
        refresh_token.clone(),
        Refresh {
            grant: grant_id,
            rotated: false,
        },
    );
    Ok(json!({
        "open_id": open_id,
        "scope": scope,
        "access_token": access_token,
        "expires_in": access_ttl,
        "refresh_token": refresh_token,
        "refresh_expires_in": refresh_expires_in,
        "token_type": "Bearer",
    }))
}

fn exchange_code(st: &mut SbState, p: &HashMap<String, String>) -> Result<Value, OAuthError> {
    let (Some(code), Some(redirect_uri)) = (param(p, "code"), param(p, "redirect_uri")) else {
        return Err(OAuthError::new(
            "invalid_request",
            "code and redirect_uri are required.",
        ));
    };
    let now = st.now();
    let invalid = |msg: &str| OAuthError::new("invalid_grant", msg);
    let c = st
        .tiktok
        .codes
        .get_mut(code)
        .ok_or_else(|| invalid("Authorization code is invalid."))?;
    if c.used {
        return Err(invalid("Authorization code has already been used."));
    }
    if now >= c.expires_at {
        return Err(invalid("Authorization code is expired."));
    }
    if c.redirect_uri != redirect_uri {
        return Err(invalid(
            "redirect_uri does not match the one used in the authorization request.",
        ));
    }
    if let Some(challenge) = &c.challenge {
        // TikTok's answer to a missing verifier or a challenge in the wrong encoding.
        let pkce_error = || {
            OAuthError::new(
                "invalid_request",
                "Code verifier or code challenge is invalid.",
            )
        };
        match param(p, "code_verifier") {
            Some(v) if valid_pkce_string(v) && pkce_s256_hex(v) == *challenge => {}
            _ => return Err(pkce_error()),
        }
    }
    c.used = true;
    let (user, scopes) = (c.user.clone(), c.scopes.clone());
    let refresh_expires_at = now + st.config.tiktok_refresh_ttl_s;
    st.tiktok.next_grant += 1;
    let grant_id = st.tiktok.next_grant;
    st.tiktok.grants.insert(
        grant_id,
        Grant {
            open_id: tiktok_open_id(&user),
            user,
            scopes,
            refresh_expires_at,
            revoked: false,
        },
    );
    issue_tokens(st, grant_id, now)
}

fn refresh_grant(st: &mut SbState, p: &HashMap<String, String>) -> Result<Value, OAuthError> {
    let Some(token) = param(p, "refresh_token") else {
        return Err(OAuthError::new(
            "invalid_request",
            "refresh_token is required.",
        ));
    };
    let now = st.now();
    let invalid = |msg: &str| OAuthError::new("invalid_grant", msg);
    let (grant_id, rotated) = st
        .tiktok
        .refresh
        .get(token)
        .map(|r| (r.grant, r.rotated))
        .ok_or_else(|| invalid("Refresh token is invalid."))?;
    if rotated {
        // RFC 9700 §4.14.2: a rotated-out refresh token came back; kill the whole grant.
        st.stats.tiktok.reused_refresh_tokens += 1;
        st.tiktok.revoke_grant(grant_id);
        return Err(invalid(
            "Refresh token has already been used; the authorization has been revoked.",
        ));
    }
    let grant = st
        .tiktok
        .grants
        .get(&grant_id)
        .ok_or_else(|| invalid("Refresh token is invalid."))?;
    if grant.revoked {
        return Err(invalid("Refresh token has been revoked."));
    }
    if now >= grant.refresh_expires_at {
        return Err(invalid("Refresh token is expired."));
    }
    if let Some(r) = st.tiktok.refresh.get_mut(token) {
        r.rotated = true;
    }
    issue_tokens(st, grant_id, now)
}

/// `POST /v2/oauth/token/` — authorization_code and refresh_token grants.
pub(crate) async fn token(State(sb): State<Sandbox>, body: Bytes) -> Response {
    sb.latency().await;
    let p = parse_params(&body);
    let grant_type = param(&p, "grant_type");
    let kind = match grant_type {
        Some("authorization_code") => CallKind::Exchange,
        Some("refresh_token") => CallKind::Refresh,
        _ => CallKind::Other,
    };
    if let Some(resp) = gate(&sb, kind).await {
        return resp;
    }
    if let Err(e) = check_client(&p) {
        return e.response();
    }
    let result = {
        let mut st = sb.lock();
        match grant_type {
            Some("authorization_code") => exchange_code(&mut st, &p),
            Some("refresh_token") => refresh_grant(&mut st, &p),
            Some(_) => Err(OAuthError::new(
                "unsupported_grant_type",
                "grant_type must be authorization_code or refresh_token.",
            )),
            None => Err(OAuthError::new(
                "invalid_request",
                "grant_type is required.",
            )),
        }
    };
    match result {
        Ok(body) => {
            let id = log_id();
            no_store(tt_json(StatusCode::OK, body, &id))
        }
        Err(e) => e.response(),
    }
}

/// `POST /v2/oauth/revoke/` — revokes the whole grant of an access (or refresh) token.
pub(crate) async fn revoke(State(sb): State<Sandbox>, body: Bytes) -> Response {
    sb.latency().await;
    let p = parse_params(&body);
    sb.lock().stats.tiktok.revoke_calls += 1;
    if let Some(resp) = gate_endpoint(&sb, FaultEndpoint::Revoke).await {
        return resp;
    }
    if let Err(e) = check_client(&p) {
        return e.response();
    }
    let Some(token) = param(&p, "token") else {
        return oauth_error("invalid_request", "token is required.");
    };
    {
        let mut st = sb.lock();
        let grant = st
            .tiktok
            .access
            .get(token)
            .map(|a| a.grant)
            .or_else(|| st.tiktok.refresh.get(token).map(|r| r.grant));
        // RFC 7009: an unknown token is not an error.
        if let Some(grant) = grant {
            st.tiktok.revoke_grant(grant);
        }
    }
    let id = log_id();
    tt_json(StatusCode::OK, json!({}), &id)
}

/// Scope a user-info field needs, or `None` for an unknown field.
fn field_scope(field: &str) -> Option<&'static str> {
    match field {
        "open_id" | "union_id" | "avatar_url" | "avatar_url_100" | "avatar_large_url"
        | "display_name" => Some("user.info.basic"),
        "bio_description" | "profile_deep_link" | "is_verified" | "username" => {
            Some("user.info.profile")
        }
        "follower_count" | "following_count" | "likes_count" | "video_count" => {
            Some("user.info.stats")
        }
        _ => None,
    }
}

fn field_value(field: &str, grant: &Grant) -> Value {
    let user = &grant.user;
    match field {
        "open_id" => json!(grant.open_id),
        "union_id" => json!(tiktok_union_id(user)),
        "avatar_url" | "avatar_url_100" | "avatar_large_url" => {
            json!(format!("https://sandbox.invalid/tiktok/avatar/{user}.jpeg"))
        }
        "display_name" => json!(user),
        "bio_description" => json!(format!("Sandbox user {user}")),
        "profile_deep_link" => json!(format!("https://sandbox.invalid/tiktok/@{user}")),
        "is_verified" => json!(false),
        "username" => json!(user),
        _ => json!(0),
    }
}

/// `GET /v2/user/info/?fields=...` with `Authorization: Bearer <access_token>`.
pub(crate) async fn user_info(
    State(sb): State<Sandbox>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    sb.latency().await;
    let p = parse_query(q.as_deref());
    sb.lock().stats.tiktok.user_info_calls += 1;
    if let Some(resp) = gate_endpoint(&sb, FaultEndpoint::UserInfo).await {
        return resp;
    }
    let st = sb.lock();
    let Some(token) = bearer(&headers) else {
        return api_error(
            StatusCode::UNAUTHORIZED,
            "access_token_invalid",
            "The access token is invalid or not found in the request.",
        );
    };
    let now = st.now();
    let grant = match st.tiktok.check_access(&token, now) {
        Ok(g) => g,
        Err(msg) => return api_error(StatusCode::UNAUTHORIZED, "access_token_invalid", msg),
    };
    let Some(fields) = param(&p, "fields") else {
        return api_error(
            StatusCode::BAD_REQUEST,
            "invalid_params",
            "The fields parameter is required.",
        );
    };
    let mut user = Map::new();
    for field in fields.split(',').map(str::trim).filter(|f| !f.is_empty()) {
        let Some(scope) = field_scope(field) else {
            return api_error(
                StatusCode::BAD_REQUEST,
                "invalid_params",
                &format!("Field '{field}' is not supported."),
            );
        };
        if !grant.scopes.iter().any(|s| s == scope) {
            return api_error(
                StatusCode::UNAUTHORIZED,
                "scope_not_authorized",
                &format!("The user did not authorize the scope required for field '{field}'."),
            );
        }
        user.insert(field.to_owned(), field_value(field, grant));
    }
    drop(st);
    let id = log_id();
    tt_json(
        StatusCode::OK,
        json!({"data": {"user": user}, "error": {"code": "ok", "message": "", "log_id": id}}),
        &id,
    )
}
