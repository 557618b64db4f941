//! Instagram API with Instagram Login: authorize, code exchange, long-lived exchange,
//! refresh and `/me`.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderName, StatusCode, header};
use axum::response::Response;
use serde_json::{Map, Value, json};

use crate::util::{
    bearer, connection_reset, flag, gateway_timeout, granted_scopes, html_bad_gateway,
    json_response, malformed_ok, no_store, param, parse_params, parse_query, parse_redirect_uri,
    random_b64, redirect, redirect_url, split_scopes, with_header,
};
use crate::{
    CallKind, FaultEndpoint, FaultKind, Gate, INSTAGRAM_CLIENT_ID, INSTAGRAM_CLIENT_SECRET,
    INSTAGRAM_CODE_TTL_S, INSTAGRAM_MIN_REFRESH_AGE_S, Platform, Sandbox, instagram_account_id,
    instagram_user_id,
};

const APP_USAGE: &str = "x-app-usage";
const BUC_USAGE: &str = "x-business-use-case-usage";
/// Scopes that allow reading `/me` (current name first, then the deprecated alias).
const BASIC_SCOPES: [&str; 2] = ["instagram_business_basic", "business_basic"];

struct Code {
    redirect_uri: String,
    user: String,
    scopes: Vec<String>,
    expires_at: i64,
    used: bool,
}

struct Grant {
    user: String,
    scopes: Vec<String>,
    revoked: bool,
}

struct Token {
    grant: u64,
    long_lived: bool,
    issued_at: i64,
    expires_at: i64,
}

/// Instagram codes, grants and tokens.
#[derive(Default)]
pub(crate) struct IgState {
    codes: HashMap<String, Code>,
    grants: HashMap<u64, Grant>,
    tokens: HashMap<String, Token>,
    next_grant: u64,
}

/// Why a Graph access token cannot be used.
enum TokenError {
    Unknown,
    Revoked,
    Expired { expires_at: i64, now: i64 },
}

impl TokenError {
    fn response(&self) -> Response {
        match self {
            Self::Unknown => graph_error(
                StatusCode::BAD_REQUEST,
                190,
                None,
                "Invalid OAuth access token - Cannot parse access token",
            ),
            Self::Revoked => graph_error(
                StatusCode::BAD_REQUEST,
                190,
                Some(460),
                "Error validating access token: The session has been invalidated because the \
                 user changed their password or Facebook has changed the session for security \
                 reasons.",
            ),
            Self::Expired { expires_at, now } => graph_error(
                StatusCode::BAD_REQUEST,
                190,
                Some(463),
                &format!(
                    "Error validating access token: Session has expired at unix time \
                     {expires_at}. The current unix time is {now}."
                ),
            ),
        }
    }
}

impl IgState {
    /// Like [`IgState::revoke_account`]; returns the user whose grants were revoked.
    pub(crate) fn revoke_account_user(&mut self, id: &str) -> Option<String> {
        let user = self
            .grants
            .values()
            .find(|g| {
                !g.revoked
                    && (instagram_user_id(&g.user) == id || instagram_account_id(&g.user) == id)
            })
            .map(|g| g.user.clone());
        self.revoke_account(id);
        user
    }

    /// Removes `permission` from every live grant of an account (app-scoped or
    /// professional id).
    pub(crate) fn remove_permission(&mut self, id: &str, permission: &str) -> bool {
        let mut any = false;
        for g in self.grants.values_mut() {
            let ours = instagram_user_id(&g.user) == id || instagram_account_id(&g.user) == id;
            if ours && !g.revoked && g.scopes.iter().any(|s| s == permission) {
                g.scopes.retain(|s| s != permission);
                any = true;
            }
        }
        any
    }

    /// Revokes every live grant of an account (app-scoped or professional id).
    pub(crate) fn revoke_account(&mut self, id: &str) -> bool {
        let matches =
            |user: &str| instagram_user_id(user) == id || instagram_account_id(user) == id;
        self.codes.retain(|_, c| c.used || !matches(&c.user));
        let mut any = false;
        for g in self.grants.values_mut() {
            if !g.revoked && matches(&g.user) {
                g.revoked = true;
                any = true;
            }
        }
        any
    }

    fn check_token(&self, token: &str, now: i64) -> Result<(&Token, &Grant), TokenError> {
        let t = self.tokens.get(token).ok_or(TokenError::Unknown)?;
        let g = self.grants.get(&t.grant).ok_or(TokenError::Unknown)?;
        if g.revoked {
            return Err(TokenError::Revoked);
        }
        if now >= t.expires_at {
            return Err(TokenError::Expired {
                expires_at: t.expires_at,
                now,
            });
        }
        Ok((t, g))
    }

    fn mint(&mut self, grant: u64, long_lived: bool, now: i64, ttl: i64) -> String {
        let token = format!("IGAA{}", random_b64(96));
        self.tokens.insert(
            token.clone(),
            Token {
                grant,
                long_lived,
                issued_at: now,
                expires_at: now + ttl,
            },
        );
        token
    }
}

/// Graph error body `{"error":{"message","type","code","error_subcode"?,"fbtrace_id"}}`.
fn graph_error(status: StatusCode, code: u32, subcode: Option<u32>, message: &str) -> Response {
    let mut err = json!({
        "message": message,
        "type": "OAuthException",
        "code": code,
        "fbtrace_id": random_b64(15),
    });
    if let Some(subcode) = subcode {
        err["error_subcode"] = json!(subcode);
    }
    if matches!(code, 1 | 2 | 4 | 17 | 32 | 613) {
        err["is_transient"] = json!(true);
    }
    json_response(status, json!({ "error": err }))
}

/// Graph error kept small until rendered by [`GraphError::response`] (HTTP 400).
struct GraphError {
    code: u32,
    message: String,
}

impl GraphError {
    fn response(&self) -> Response {
        graph_error(StatusCode::BAD_REQUEST, self.code, None, &self.message)
    }
}

fn param_error(message: impl Into<String>) -> GraphError {
    GraphError {
        code: 100,
        message: message.into(),
    }
}

fn app_usage(percent: u32) -> String {
    json!({"call_count": percent, "total_time": percent / 2, "total_cputime": percent / 4})
        .to_string()
}

fn rate_limited(retry_after: u64) -> Response {
    let resp = graph_error(
        StatusCode::TOO_MANY_REQUESTS,
        4,
        None,
        "(#4) Application request limit reached",
    );
    let resp = with_header(resp, header::RETRY_AFTER, &retry_after.to_string());
    with_header(resp, HeaderName::from_static(APP_USAGE), &app_usage(100))
}

/// A throttling error (HTTP 400, as the Graph API answers them) with the business use case
/// usage header saying when access returns (`estimated_time_to_regain_access`, minutes).
fn throttled(code: u32, message: &str, regain_minutes: u32) -> Response {
    let resp = graph_error(StatusCode::BAD_REQUEST, code, None, message);
    let buc = json!({ "17841400000000000": [{
        "type": "instagram",
        "call_count": 100,
        "total_cputime": 40,
        "total_time": 60,
        "estimated_time_to_regain_access": regain_minutes,
    }]});
    let resp = with_header(resp, HeaderName::from_static(BUC_USAGE), &buc.to_string());
    with_header(resp, HeaderName::from_static(APP_USAGE), &app_usage(100))
}

async fn fault_response(kind: FaultKind, retry_after: u64, timeout_ms: u64) -> Response {
    match kind {
        FaultKind::RateLimited => rate_limited(retry_after),
        FaultKind::ServerError => graph_error(
            StatusCode::SERVICE_UNAVAILABLE,
            2,
            None,
            "Service temporarily unavailable",
        ),
        FaultKind::Timeout => {
            tokio::time::sleep(std::time::Duration::from_millis(timeout_ms)).await;
            gateway_timeout()
        }
        FaultKind::InvalidGrant => TokenError::Revoked.response(),
        FaultKind::PermissionRemoved => graph_error(
            StatusCode::FORBIDDEN,
            200,
            None,
            "(#200) Requires instagram_business_content_publish permission to manage the object",
        ),
        FaultKind::TemporarilyBlocked => graph_error(
            StatusCode::BAD_REQUEST,
            368,
            None,
            "The action attempted has been deemed abusive or is otherwise disallowed",
        ),
        FaultKind::InvalidClient => graph_error(
            StatusCode::BAD_REQUEST,
            101,
            None,
            "Error validating client secret.",
        ),
        FaultKind::HtmlServerError => html_bad_gateway(),
        FaultKind::ConnectionReset => connection_reset(),
        FaultKind::MalformedBody => malformed_ok(),
        FaultKind::LegacyError => json_response(
            StatusCode::BAD_REQUEST,
            json!({
                "error_type": "OAuthException",
                "code": 400,
                "error_message": "Matching code was not found or was already used",
            }),
        ),
        FaultKind::ThrottledApp => with_header(
            graph_error(
                StatusCode::BAD_REQUEST,
                4,
                None,
                "(#4) Application request limit reached",
            ),
            HeaderName::from_static(APP_USAGE),
            &app_usage(100),
        ),
        FaultKind::ThrottledUser => throttled(17, "(#17) User request limit reached", 5),
        FaultKind::ThrottledPage => throttled(32, "(#32) Page request limit reached", 10),
        FaultKind::ThrottledCustom => throttled(
            613,
            "(#613) Calls to this api have exceeded the rate limit.",
            15,
        ),
    }
}

/// Runs the fault gate of a non-token endpoint; `Some` is the response to send instead.
async fn gate_endpoint(sb: &Sandbox, endpoint: FaultEndpoint) -> Option<Response> {
    match sb.gate_endpoint(Platform::Instagram, endpoint) {
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
    match sb.gate(Platform::Instagram, kind) {
        Gate::Proceed => None,
        Gate::RateLimited { retry_after } => Some(rate_limited(retry_after)),
        Gate::Fault {
            kind,
            retry_after,
            timeout_ms,
        } => Some(fault_response(kind, retry_after, timeout_ms).await),
    }
}

/// Adds `X-App-Usage` (percent of the token-call bucket in use) unless already present.
fn with_app_usage(sb: &Sandbox, resp: Response) -> Response {
    if resp.headers().contains_key(APP_USAGE) {
        return resp;
    }
    let percent = sb.lock().usage_percent(Platform::Instagram);
    with_header(
        resp,
        HeaderName::from_static(APP_USAGE),
        &app_usage(percent),
    )
}

/// `GET /oauth/authorize` — approves at once; redirects with `?code=..&state=..#_`.
pub(crate) async fn authorize(State(sb): State<Sandbox>, RawQuery(q): RawQuery) -> Response {
    sb.latency().await;
    let p = parse_query(q.as_deref());
    if param(&p, "client_id") != Some(INSTAGRAM_CLIENT_ID) {
        return graph_error(StatusCode::BAD_REQUEST, 101, None, "Invalid platform app");
    }
    let Some(base) = param(&p, "redirect_uri").and_then(parse_redirect_uri) else {
        return param_error("Invalid redirect_uri: it must be an absolute http(s) URL.").response();
    };
    let state = param(&p, "state");
    let fail = |error: &str, reason: &str, description: &str| {
        redirect(&redirect_url(
            &base,
            &[
                ("error", Some(error)),
                ("error_reason", Some(reason)),
                ("error_description", Some(description)),
                ("state", state),
            ],
            None,
        ))
    };
    if param(&p, "response_type") != Some("code") {
        return fail(
            "unsupported_response_type",
            "invalid_response_type",
            "response_type must be 'code'.",
        );
    }
    let requested = split_scopes(param(&p, "scope").unwrap_or_default());
    if requested.is_empty() {
        return fail("invalid_scope", "missing_scope", "scope is required.");
    }
    if let Gate::Fault { kind, .. } =
        sb.gate_endpoint(Platform::Instagram, FaultEndpoint::Authorize)
    {
        return match kind {
            FaultKind::TemporarilyBlocked | FaultKind::RateLimited => fail(
                "temporarily_unavailable",
                "temporarily_unavailable",
                "The service is temporarily unavailable. Please try again later.",
            ),
            FaultKind::HtmlServerError | FaultKind::ConnectionReset => html_bad_gateway(),
            _ => fail(
                "server_error",
                "server_error",
                "An unexpected error occurred. Please try again later.",
            ),
        };
    }
    if flag(&p, "sandbox_deny") {
        return fail(
            "access_denied",
            "user_denied",
            "The user denied your request.",
        );
    }
    let user = param(&p, "sandbox_user").unwrap_or("demo").to_owned();
    let scopes = granted_scopes(&requested, param(&p, "sandbox_grant"));
    let code = random_b64(96);
    {
        let mut st = sb.lock();
        let now = st.now();
        st.instagram.codes.retain(|_, c| c.expires_at + 3600 > now);
        st.instagram.codes.insert(
            code.clone(),
            Code {
                redirect_uri: param(&p, "redirect_uri").unwrap_or_default().to_owned(),
                user,
                scopes,
                expires_at: now + INSTAGRAM_CODE_TTL_S,
                used: false,
            },
        );
    }
    redirect(&redirect_url(
        &base,
        &[("code", Some(&code)), ("state", state)],
        Some("_"),
    ))
}

fn check_secret(p: &HashMap<String, String>) -> Result<(), GraphError> {
    match param(p, "client_secret") {
        Some(INSTAGRAM_CLIENT_SECRET) => Ok(()),
        Some(_) => Err(GraphError {
            code: 101,
            message: "Error validating client secret.".into(),
        }),
        None => Err(param_error("Missing client_secret parameter.")),
    }
}

fn exchange_code(sb: &Sandbox, p: &HashMap<String, String>) -> Result<Value, GraphError> {
    match param(p, "client_id") {
        Some(INSTAGRAM_CLIENT_ID) => {}
        Some(_) => {
            return Err(GraphError {
                code: 101,
                message: "Error validating application. Invalid application ID.".into(),
            });
        }
        None => return Err(param_error("Missing client_id parameter.")),
    }
    check_secret(p)?;
    if param(p, "grant_type") != Some("authorization_code") {
        return Err(param_error(
            "Invalid grant_type: must be authorization_code.",
        ));
    }
    let (Some(code), Some(redirect_uri)) = (param(p, "code"), param(p, "redirect_uri")) else {
        return Err(param_error("Missing code or redirect_uri parameter."));
    };
    let mut guard = sb.lock();
    let st = &mut *guard;
    let now = st.now();
    let c = st
        .instagram
        .codes
        .get_mut(code)
        .ok_or_else(|| param_error("Invalid authorization code"))?;
    if c.used {
        return Err(param_error("This authorization code has been used"));
    }
    if now >= c.expires_at {
        return Err(param_error("This authorization code has expired"));
    }
    if c.redirect_uri != redirect_uri {
        return Err(param_error(
            "Error validating verification code. Please make sure your redirect_uri is \
             identical to the one you used in the OAuth dialog request",
        ));
    }
    c.used = true;
    let (user, scopes) = (c.user.clone(), c.scopes.clone());
    let ig = &mut st.instagram;
    ig.next_grant += 1;
    let grant = ig.next_grant;
    ig.grants.insert(
        grant,
        Grant {
            user: user.clone(),
            scopes: scopes.clone(),
            revoked: false,
        },
    );
    let token = ig.mint(grant, false, now, st.config.instagram_short_ttl_s);
    let user_id = instagram_user_id(&user);
    Ok(if st.config.instagram_flat_exchange {
        // The legacy flat shape carries user_id as a JSON number.
        let numeric: Value = user_id.parse::<u64>().map_or(json!(user_id), |n| json!(n));
        json!({"access_token": token, "user_id": numeric, "permissions": scopes})
    } else {
        json!({"data": [{
            "access_token": token,
            "user_id": user_id,
            "permissions": scopes.join(","),
        }]})
    })
}

/// `POST /oauth/access_token` — code -> short-lived token.
pub(crate) async fn exchange(State(sb): State<Sandbox>, body: Bytes) -> Response {
    sb.latency().await;
    let p = parse_params(&body);
    let resp = match gate(&sb, CallKind::Exchange).await {
        Some(resp) => resp,
        None => match exchange_code(&sb, &p) {
            Ok(body) => no_store(json_response(StatusCode::OK, body)),
            Err(e) => e.response(),
        },
    };
    with_app_usage(&sb, resp)
}

/// Shared body of the long-lived exchange and the refresh.
fn long_lived_token(sb: &Sandbox, p: &HashMap<String, String>, refresh: bool) -> Response {
    let expected = if refresh {
        "ig_refresh_token"
    } else {
        "ig_exchange_token"
    };
    if param(p, "grant_type") != Some(expected) {
        return param_error(format!("Invalid grant_type: must be {expected}.")).response();
    }
    if !refresh && let Err(e) = check_secret(p) {
        return e.response();
    }
    let Some(token) = param(p, "access_token") else {
        return param_error("Missing access_token parameter.").response();
    };
    let mut guard = sb.lock();
    let st = &mut *guard;
    let now = st.now();
    let (grant, long_lived, issued_at) = match st.instagram.check_token(token, now) {
        Ok((t, _)) => (t.grant, t.long_lived, t.issued_at),
        Err(e) => return e.response(),
    };
    if refresh {
        if !long_lived {
            return param_error("Only long-lived access tokens can be refreshed.").response();
        }
        let age = now - issued_at;
        if age < INSTAGRAM_MIN_REFRESH_AGE_S {
            return param_error(format!(
                "The access token cannot be refreshed yet: a long-lived token must be at least \
                 24 hours old (this one is {age} seconds old)."
            ))
            .response();
        }
    } else if long_lived {
        return param_error("Only short-lived access tokens can be exchanged.").response();
    }
    let ttl = st.config.instagram_ttl_s;
    let new_token = st.instagram.mint(grant, true, now, ttl);
    no_store(json_response(
        StatusCode::OK,
        json!({"access_token": new_token, "token_type": "bearer", "expires_in": ttl}),
    ))
}

/// `GET /access_token?grant_type=ig_exchange_token` — short-lived -> long-lived.
pub(crate) async fn long_lived(State(sb): State<Sandbox>, RawQuery(q): RawQuery) -> Response {
    sb.latency().await;
    let p = parse_query(q.as_deref());
    let resp = match gate(&sb, CallKind::Exchange).await {
        Some(resp) => resp,
        None => long_lived_token(&sb, &p, false),
    };
    with_app_usage(&sb, resp)
}

/// `GET /refresh_access_token?grant_type=ig_refresh_token` — new long-lived token; the old
/// one stays valid until its own expiry.
pub(crate) async fn refresh(State(sb): State<Sandbox>, RawQuery(q): RawQuery) -> Response {
    sb.latency().await;
    let p = parse_query(q.as_deref());
    let resp = match gate(&sb, CallKind::Refresh).await {
        Some(resp) => resp,
        None => long_lived_token(&sb, &p, true),
    };
    with_app_usage(&sb, resp)
}

fn me_body(sb: &Sandbox, p: &HashMap<String, String>, headers: &HeaderMap) -> Response {
    let mut st = sb.lock();
    st.stats.instagram.user_info_calls += 1;
    let Some(token) = param(p, "access_token")
        .map(str::to_owned)
        .or_else(|| bearer(headers))
    else {
        return graph_error(
            StatusCode::BAD_REQUEST,
            2500,
            None,
            "An active access token must be used to query information about the current user.",
        );
    };
    let now = st.now();
    let grant = match st.instagram.check_token(&token, now) {
        Ok((_, g)) => g,
        Err(e) => return e.response(),
    };
    if !grant
        .scopes
        .iter()
        .any(|s| BASIC_SCOPES.contains(&s.as_str()))
    {
        return graph_error(
            StatusCode::BAD_REQUEST,
            10,
            None,
            "(#10) Application does not have permission for this action",
        );
    }
    let user = &grant.user;
    let mut out = Map::new();
    for field in param(p, "fields").unwrap_or("id").split(',').map(str::trim) {
        let value = match field {
            "" => continue,
            "id" => json!(instagram_user_id(user)),
            "user_id" => json!(instagram_account_id(user)),
            "username" | "name" => json!(user),
            "account_type" => json!("BUSINESS"),
            "profile_picture_url" => {
                json!(format!(
                    "https://sandbox.invalid/instagram/avatar/{user}.jpg"
                ))
            }
            "followers_count" | "follows_count" | "media_count" => json!(0),
            other => {
                return param_error(format!(
                    "(#100) Tried accessing nonexisting field ({other}) on node type (User)"
                ))
                .response();
            }
        };
        out.insert(field.to_owned(), value);
    }
    out.insert("id".to_owned(), json!(instagram_user_id(user)));
    json_response(StatusCode::OK, Value::Object(out))
}

/// `GET /me?fields=...&access_token=...` (an `Authorization: Bearer` header also works).
pub(crate) async fn me(
    State(sb): State<Sandbox>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    sb.latency().await;
    let p = parse_query(q.as_deref());
    let resp = match gate_endpoint(&sb, FaultEndpoint::UserInfo).await {
        Some(resp) => {
            sb.lock().stats.instagram.user_info_calls += 1;
            resp
        }
        None => me_body(&sb, &p, &headers),
    };
    with_app_usage(&sb, resp)
}
