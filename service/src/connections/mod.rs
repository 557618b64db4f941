//! Connecting accounts: start (a one-time launch URL + state), launch (bind the flow to the
//! browser, then the platform's authorize URL), complete (code exchange, profile, scope
//! check, upsert, encrypted tokens), disconnect, and reading access tokens.
//!
//! **Browser binding.** `start` returns `<public url>/oauth/start/<launch secret>`, not the
//! platform's URL. Opening it ([`launch`], once) stores the SHA-256 of a fresh per-flow
//! cookie value in the state row and hands the cookie to the browser with the redirect to
//! the platform. The callback ([`complete`] without a caller) checks that cookie *before* it
//! consumes the state, so a callback URL opened in another browser (an attacker handing a
//! victim their own code, or a victim's code replayed elsewhere) neither consumes nor binds
//! anything, and the browser that started can still finish. The state itself is derived from
//! the launch secret (SHA-256, [`state_of`]), so only hashes are stored.

/// Accounts: listing, filters, deactivation. Tenant-scoped.
pub mod accounts;
/// Inbound platform callbacks: TikTok's webhook, Meta's deauthorize and data deletion.
pub mod callbacks;
/// Reconnect links: signed, expiring URLs that start a reconnection only when opened.
pub mod links;
/// Token-rejected feedback from integrators (`reportTokenRejected`).
pub mod rejected;

use chrono::{Duration, Utc};
use entity::{oauth_state, social_account};
use ring::digest;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set,
    TransactionSession, TransactionTrait, sea_query::Expr,
};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use crate::{
    connections::accounts::TARGET,
    domain::{AccountStatus, Platform},
    engine::Engine,
    error::{ServiceError, ServiceResult},
    events::{self, EventKind, NewEvent},
    identity::audit::{self, AuditAction, Target},
    identity::caller::{Actor, Caller, Role},
    providers::{AuthorizeRequest, ErrorClass, ProviderError, new_pkce_with, new_state},
    tokens,
    tokens::refresh::{self, RefreshOptions},
    tokens::vault::{Aad, TokenKind},
};

/// A started connection: send the user to `authorization_url` (the launch URL on this
/// server, valid once).
#[derive(Clone, Debug)]
pub struct Started {
    pub authorization_url: String,
    pub state: String,
    pub expires_at: chrono::DateTime<Utc>,
    /// The secret inside `authorization_url`.
    pub(crate) launch_secret: String,
}

fn hash_state(state: &str) -> String {
    hex::encode(digest::digest(&digest::SHA256, state.as_bytes()))
}

/// The OAuth `state` of a launch secret: `base64url(SHA-256("tokenwarden/v1/oauth-state\0"
/// || secret))`. Knowing the state (it travels through the platform) reveals nothing of the
/// secret.
fn state_of(launch_secret: &str) -> String {
    use base64::Engine as _;
    let mut input = b"tokenwarden/v1/oauth-state\0".to_vec();
    input.extend_from_slice(launch_secret.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(digest::digest(&digest::SHA256, &input).as_ref())
}

/// The name of the browser cookie of the flow with `state`: `tw_oauth_` and 16 hex digits
/// of the state's hash, so concurrent flows in one browser each keep their own.
pub fn browser_cookie_name(state: &str) -> String {
    let hash = hash_state(state);
    format!("tw_oauth_{}", &hash[..16])
}

/// Checks `redirect_after` against the allow-list: the same origin (scheme, host and
/// port) as an allowed entry, and a path equal to the entry's path or below it by whole
/// segments (`/settings` allows `/settings` and `/settings/social`, never
/// `/settings-evil`). Both URLs are parsed first, so `..`, `%2e%2e` and default ports are
/// resolved before the comparison. No allow-list = no redirects.
pub(crate) fn check_redirect(allowed: &[String], redirect_after: &str) -> ServiceResult<()> {
    let refused = || {
        let shown: String = redirect_after.chars().take(200).collect();
        ServiceError::bad_input(format!(
            "redirectAfter {shown:?} is not allowed: it must be on the origin of an entry of \
             TOKENWARDEN_ALLOWED_REDIRECTS, at or below its path"
        ))
    };
    let target = url::Url::parse(redirect_after).map_err(|_| refused())?;
    if target.username() != "" || target.password().is_some() || target.cannot_be_a_base() {
        return Err(refused());
    }
    let ok = allowed.iter().any(|entry| {
        url::Url::parse(entry).is_ok_and(|allowed| {
            allowed.origin() == target.origin()
                && !matches!(target.origin(), url::Origin::Opaque(_))
                && path_within(allowed.path(), target.path())
        })
    });
    if ok { Ok(()) } else { Err(refused()) }
}

/// Whether `path` is `base` or below it by whole segments.
fn path_within(base: &str, path: &str) -> bool {
    if base.ends_with('/') {
        return path.starts_with(base);
    }
    path == base
        || path
            .strip_prefix(base)
            .is_some_and(|rest| rest.starts_with('/'))
}

fn valid_scope(scope: &str) -> bool {
    !scope.is_empty()
        && scope.len() <= 100
        && scope
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Starts a connection (INTEGRATOR): stores a one-time state bound to the caller's tenant
/// and key (with the PKCE verifier, encrypted) and returns the provider's authorize URL.
pub async fn start<D>(
    db: &D,
    engine: &Engine,
    caller: &Caller,
    platform: Platform,
    redirect_after: Option<String>,
    scopes: Option<Vec<String>>,
) -> ServiceResult<Started>
where
    D: ConnectionTrait + TransactionTrait,
{
    caller.require(Role::Integrator)?;
    let starter = Starter {
        tenant_id: caller.tenant_id,
        api_key_id: caller.api_key_id().unwrap_or(0),
        user_id: caller.user_id(),
        actor: caller.actor(),
    };
    begin(
        db,
        engine,
        &starter,
        platform,
        redirect_after,
        scopes,
        json!({}),
    )
    .await
}

/// Whom a pending connection belongs to: its tenant, the key (0 for none) or dashboard
/// user that started it, and the actor of its CONNECTION_STARTED audit entry.
pub(crate) struct Starter {
    pub tenant_id: i64,
    pub api_key_id: i64,
    pub user_id: Option<i64>,
    pub actor: Actor,
}

/// The common part of every start (`startConnection`, an opened reconnect link): checks,
/// the state row and its audit entry (`details` are merged into the entry's details).
pub(crate) async fn begin<D>(
    db: &D,
    engine: &Engine,
    starter: &Starter,
    platform: Platform,
    redirect_after: Option<String>,
    scopes: Option<Vec<String>>,
    details: serde_json::Value,
) -> ServiceResult<Started>
where
    D: ConnectionTrait + TransactionTrait,
{
    let provider = interactive_provider(engine, platform)?;
    if let Some(target) = &redirect_after {
        check_redirect(&engine.settings.allowed_redirects, target)?;
    }
    let scopes: Vec<String> = match scopes {
        Some(list) if !list.is_empty() => {
            if let Some(bad) = list.iter().find(|s| !valid_scope(s)) {
                return Err(ServiceError::bad_input(format!("invalid scope {bad:?}")));
            }
            list
        }
        _ => provider
            .default_scopes()
            .iter()
            .map(|s| (*s).to_owned())
            .collect(),
    };
    let launch_secret = new_state();
    let state = state_of(&launch_secret);
    let pkce = provider.pkce().map(new_pkce_with);
    let vault = engine.vault();
    let verifier = pkce
        .as_ref()
        .map(|p| {
            vault.encrypt(
                &p.verifier,
                &Aad::new(starter.tenant_id, 0, TokenKind::PkceVerifier),
            )
        })
        .transpose()
        .map_err(ServiceError::vault)?;
    // Fails now rather than at launch when the provider cannot build its URL.
    provider
        .authorize_url(&AuthorizeRequest {
            redirect_uri: engine.redirect_uri(platform),
            state: state.clone(),
            scopes: scopes.clone(),
            pkce_challenge: pkce.as_ref().map(|p| p.challenge.clone()),
        })
        .map_err(|e| ServiceError::Provider(platform, e))?;
    let now = Utc::now();
    let expires_at = now
        + Duration::from_std(engine.settings.state_ttl).unwrap_or_else(|_| Duration::minutes(10));
    let txn = crate::db::begin(db).await?;
    let row = oauth_state::ActiveModel {
        state_hash: Set(hash_state(&state)),
        launch_hash: Set(Some(hash_state(&launch_secret))),
        browser_hash: Set(None),
        launched_at: Set(None),
        tenant_id: Set(starter.tenant_id),
        api_key_id: Set(starter.api_key_id),
        user_id: Set(starter.user_id),
        platform: Set(platform),
        pkce_verifier_enc: Set(verifier),
        redirect_after: Set(redirect_after.clone()),
        scopes: Set(scopes.join(",")),
        created_at: Set(now),
        expires_at: Set(expires_at),
        used_at: Set(None),
        ..Default::default()
    }
    .insert(&txn)
    .await?;
    let mut entry = json!({ "platform": platform.as_str(), "scopes": scopes, "redirectAfter": redirect_after, "stateId": row.id });
    if let (Some(entry), serde_json::Value::Object(extra)) = (entry.as_object_mut(), details) {
        entry.extend(extra);
    }
    audit::record(
        &txn,
        &starter.actor,
        AuditAction::ConnectionStarted,
        None,
        entry,
    )
    .await?;
    txn.commit().await?;
    Ok(Started {
        authorization_url: format!("{}/oauth/start/{launch_secret}", engine.settings.public_url),
        state,
        expires_at,
        launch_secret,
    })
}

/// A launched connection: set the cookie, then send the browser to `authorization_url`
/// (the platform's).
#[derive(Debug)]
pub struct Launched {
    pub authorization_url: String,
    /// The per-flow cookie ([`browser_cookie_name`]) and its value.
    pub cookie_name: String,
    pub cookie_value: SecretString,
    /// When the cookie (and the state) stop mattering.
    pub expires_at: chrono::DateTime<Utc>,
}

/// Why a launch URL was refused. Nothing is written for either.
#[derive(Debug)]
pub enum LaunchError {
    /// Unknown, expired, or its connection already finished.
    Invalid,
    /// Already opened in another browser (a flow is bound to the first one).
    OpenedElsewhere,
    /// The connection could not continue (platform no longer configured, database).
    Failed(Box<ServiceError>),
}

impl LaunchError {
    /// The stable code shown on the error page.
    pub fn code(&self) -> &'static str {
        match self {
            LaunchError::Invalid => "CONNECTION_LINK_INVALID",
            LaunchError::OpenedElsewhere => "CONNECTION_LINK_USED",
            LaunchError::Failed(_) => "CONNECTION_FAILED",
        }
    }

    /// What the person who opened the link reads.
    pub fn message(&self) -> &'static str {
        match self {
            LaunchError::Invalid => {
                "This connection link is invalid, expired or already used. Start the \
                 connection again."
            }
            LaunchError::OpenedElsewhere => {
                "This connection link was already opened in another browser; it works in one \
                 browser only. Start the connection again."
            }
            LaunchError::Failed(_) => "The connection could not continue. Try again later.",
        }
    }
}

impl From<ServiceError> for LaunchError {
    fn from(err: ServiceError) -> Self {
        LaunchError::Failed(Box::new(err))
    }
}

impl From<sea_orm::DbErr> for LaunchError {
    fn from(err: sea_orm::DbErr) -> Self {
        LaunchError::Failed(Box::new(err.into()))
    }
}

/// Opens a launch URL: binds the flow to this browser (the SHA-256 of a fresh cookie value
/// goes into the state row; the first browser wins) and returns the platform's authorize
/// URL with the cookie to set. `cookie` looks up a cookie of the request by name: the
/// browser that launched may open the URL again (it gets the same binding), any other is
/// refused.
pub async fn launch(
    db: &impl ConnectionTrait,
    engine: &Engine,
    launch_secret: &str,
    cookie: impl Fn(&str) -> Option<String>,
) -> Result<Launched, LaunchError> {
    if launch_secret.is_empty() || launch_secret.len() > 200 {
        return Err(LaunchError::Invalid);
    }
    let now = Utc::now();
    let row = oauth_state::Entity::find()
        .filter(oauth_state::Column::LaunchHash.eq(hash_state(launch_secret)))
        .one(db)
        .await?
        .ok_or(LaunchError::Invalid)?;
    if row.used_at.is_some() || row.expires_at <= now {
        return Err(LaunchError::Invalid);
    }
    let state = state_of(launch_secret);
    let cookie_name = browser_cookie_name(&state);
    let cookie_value = match (&row.browser_hash, cookie(&cookie_name)) {
        (None, _) => {
            let value = new_state();
            let bound = oauth_state::Entity::update_many()
                .col_expr(
                    oauth_state::Column::BrowserHash,
                    Expr::value(hash_state(&value)),
                )
                .col_expr(oauth_state::Column::LaunchedAt, Expr::value(Some(now)))
                .filter(oauth_state::Column::Id.eq(row.id))
                .filter(oauth_state::Column::BrowserHash.is_null())
                .filter(oauth_state::Column::UsedAt.is_null())
                .exec(db)
                .await?;
            if bound.rows_affected != 1 {
                return Err(LaunchError::OpenedElsewhere);
            }
            value
        }
        (Some(bound), Some(presented)) if *bound == hash_state(&presented) => presented,
        (Some(_), _) => return Err(LaunchError::OpenedElsewhere),
    };
    let authorization_url = authorize_url(engine, &row, &state)?;
    Ok(Launched {
        authorization_url,
        cookie_name,
        cookie_value: SecretString::from(cookie_value),
        expires_at: row.expires_at,
    })
}

/// The platform's authorize URL of a pending connection (the PKCE challenge is recomputed
/// from the stored verifier).
fn authorize_url(engine: &Engine, row: &oauth_state::Model, state: &str) -> ServiceResult<String> {
    let platform: Platform = row.platform;
    let provider = engine
        .providers
        .get_interactive(platform)
        .map_err(|e| ServiceError::Provider(platform, e))?;
    let challenge = match (provider.pkce(), &row.pkce_verifier_enc) {
        (Some(encoding), Some(ciphertext)) => {
            let verifier = engine
                .vault()
                .decrypt(
                    ciphertext,
                    &Aad::new(row.tenant_id, 0, TokenKind::PkceVerifier),
                )
                .map_err(ServiceError::vault)?;
            Some(crate::providers::pkce_challenge(
                verifier.expose_secret(),
                encoding,
            ))
        }
        _ => None,
    };
    let url = provider
        .authorize_url(&AuthorizeRequest {
            redirect_uri: engine.redirect_uri(platform),
            state: state.to_owned(),
            scopes: row
                .scopes
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            pkce_challenge: challenge,
        })
        .map_err(|e| ServiceError::Provider(platform, e))?;
    Ok(url.to_string())
}

/// Deletes connection states that expired before `before` (the prune job): used or not,
/// they can never be used again. Returns how many were deleted.
pub async fn prune_states(
    db: &impl ConnectionTrait,
    before: chrono::DateTime<Utc>,
) -> ServiceResult<u64> {
    Ok(oauth_state::Entity::delete_many()
        .filter(oauth_state::Column::ExpiresAt.lt(before))
        .exec(db)
        .await?
        .rows_affected)
}

/// What the provider sent back to the callback.
#[derive(Debug)]
pub enum CallbackResult {
    /// The user approved: an authorization code.
    Code(String),
    /// The user denied or the provider failed (`error`, `error_description`).
    Error {
        error: String,
        description: Option<String>,
    },
}

/// A completed connection.
#[derive(Clone, Debug)]
pub struct Connected {
    pub account: social_account::Model,
    pub reconnected: bool,
}

/// The outcome of a callback: where to send the user, and what happened.
#[derive(Debug)]
pub struct Completion {
    /// The `redirectAfter` of the state, when the state was valid and had one.
    pub redirect_after: Option<String>,
    pub result: ServiceResult<Connected>,
}

/// What proves that a callback belongs to the flow: the browser's cookie (the callback
/// route) or the API caller that started it (`completeConnection`).
#[derive(Clone, Copy, Debug)]
pub enum Proof<'a> {
    /// The value of the flow's cookie ([`browser_cookie_name`]), if the browser sent one.
    Browser(Option<&'a str>),
    /// The key or user that called `startConnection`.
    Caller(&'a Caller),
}

/// Consumes a state: valid only once, before it expires, and only with its proof, which is
/// checked first: a refused proof leaves the state unconsumed. Forged, replayed and expired
/// states all get the same answer.
async fn consume_state(
    db: &impl ConnectionTrait,
    state: &str,
    proof: Proof<'_>,
) -> ServiceResult<oauth_state::Model> {
    let invalid = || {
        ServiceError::bad_input(
            "this connection link is invalid, expired or already used; start the connection again",
        )
    };
    if state.is_empty() || state.len() > 200 {
        return Err(invalid());
    }
    let hash = hash_state(state);
    let now = Utc::now();
    let pending = oauth_state::Entity::find()
        .filter(oauth_state::Column::StateHash.eq(hash.as_str()))
        .filter(oauth_state::Column::UsedAt.is_null())
        .filter(oauth_state::Column::ExpiresAt.gt(now))
        .one(db)
        .await?
        .ok_or_else(invalid)?;
    let mut claim = oauth_state::Entity::update_many()
        .col_expr(oauth_state::Column::UsedAt, Expr::value(Some(now)))
        .filter(oauth_state::Column::Id.eq(pending.id))
        .filter(oauth_state::Column::UsedAt.is_null())
        .filter(oauth_state::Column::ExpiresAt.gt(now));
    match proof {
        Proof::Browser(cookie) => {
            let presented = cookie.map(hash_state);
            match (&pending.browser_hash, presented) {
                (Some(bound), Some(presented)) if *bound == presented => {
                    claim = claim.filter(oauth_state::Column::BrowserHash.eq(presented));
                }
                _ => return Err(ServiceError::WrongBrowser),
            }
        }
        Proof::Caller(caller) => {
            if caller.tenant_id != pending.tenant_id
                || caller.api_key_id().unwrap_or(0) != pending.api_key_id
                || caller.user_id() != pending.user_id
            {
                return Err(ServiceError::bad_input(
                    "this connection was started with another API key or user",
                ));
            }
        }
    }
    let claimed = claim.exec(db).await?;
    if claimed.rows_affected != 1 {
        return Err(invalid());
    }
    oauth_state::Entity::find()
        .filter(oauth_state::Column::StateHash.eq(hash.as_str()))
        .one(db)
        .await?
        .ok_or_else(invalid)
}

/// Completes a connection from the provider's callback (proof: the flow's browser cookie)
/// or from `completeConnection` (proof: the key that started it).
pub async fn complete<D>(
    db: &D,
    engine: &Engine,
    platform: Option<Platform>,
    state: &str,
    result: CallbackResult,
    proof: Proof<'_>,
    client_ip: Option<String>,
) -> Completion
where
    D: ConnectionTrait + TransactionTrait,
{
    let caller = match proof {
        Proof::Caller(caller) => Some(caller),
        Proof::Browser(_) => None,
    };
    let row = match consume_state(db, state, proof).await {
        Ok(row) => row,
        Err(err) => {
            return Completion {
                redirect_after: None,
                result: Err(err),
            };
        }
    };
    let redirect_after = row.redirect_after.clone();
    let result = finish(db, engine, platform, &row, result, caller, client_ip).await;
    Completion {
        redirect_after,
        result,
    }
}

/// The audit actor label of whoever started a pending connection.
async fn started_by(db: &impl ConnectionTrait, row: &oauth_state::Model) -> ServiceResult<String> {
    match row.user_id {
        Some(user_id) => crate::identity::users::actor_name(db, user_id).await,
        None => Ok(format!("api_key:{}", row.api_key_id)),
    }
}

async fn finish<D>(
    db: &D,
    engine: &Engine,
    platform: Option<Platform>,
    row: &oauth_state::Model,
    result: CallbackResult,
    caller: Option<&Caller>,
    client_ip: Option<String>,
) -> ServiceResult<Connected>
where
    D: ConnectionTrait + TransactionTrait,
{
    let state_platform: Platform = row.platform;
    if platform.is_some_and(|p| p != state_platform) {
        return Err(ServiceError::bad_input(
            "this connection was started for another platform",
        ));
    }
    if let Some(caller) = caller
        && (caller.tenant_id != row.tenant_id
            || caller.api_key_id().unwrap_or(0) != row.api_key_id
            || caller.user_id() != row.user_id)
    {
        return Err(ServiceError::bad_input(
            "this connection was started with another API key or user",
        ));
    }
    let code = match result {
        CallbackResult::Code(code) => code,
        CallbackResult::Error { error, description } => {
            let message = if error == "access_denied" {
                format!(
                    "the user declined to connect their {} account",
                    state_platform.display_name()
                )
            } else {
                format!(
                    "{} reported an error: {error}{}",
                    state_platform.display_name(),
                    description.map(|d| format!(" ({d})")).unwrap_or_default()
                )
            };
            // RFC 6749 §4.1.2.1: `server_error` and `temporarily_unavailable` are the
            // platform's own trouble; the user can simply try again.
            let class = match error.as_str() {
                "server_error" | "temporarily_unavailable" => ErrorClass::Transient,
                _ => ErrorClass::InvalidInput,
            };
            return Err(ServiceError::Provider(
                state_platform,
                ProviderError::new(class, error, message),
            ));
        }
    };
    let provider = engine
        .providers
        .get_interactive(state_platform)
        .map_err(|e| ServiceError::Provider(state_platform, e))?;
    let vault = engine.vault();
    let verifier: Option<SecretString> = row
        .pkce_verifier_enc
        .as_deref()
        .map(|c| vault.decrypt(c, &Aad::new(row.tenant_id, 0, TokenKind::PkceVerifier)))
        .transpose()
        .map_err(ServiceError::vault)?;
    let set = provider
        .exchange_code(
            &code,
            &engine.redirect_uri(state_platform),
            verifier.as_ref(),
        )
        .await
        .map_err(|e| ServiceError::Provider(state_platform, e))?;
    let requested: Vec<&str> = row.scopes.split(',').filter(|s| !s.is_empty()).collect();
    let missing: Vec<String> = requested
        .iter()
        .filter(|s| !set.scopes.iter().any(|g| g == *s))
        .map(|s| (*s).to_owned())
        .collect();
    if !missing.is_empty() {
        return Err(ServiceError::MissingScopes(missing));
    }
    let profile = provider
        .user_info(&set.access_token)
        .await
        .map_err(|e| ServiceError::Provider(state_platform, e))?;

    let actor = Actor {
        tenant_id: Some(row.tenant_id),
        name: started_by(db, row).await?,
        client_ip,
    };
    let txn = crate::db::begin(db).await?;
    let now = Utc::now();
    let existing = social_account::Entity::find()
        .filter(social_account::Column::TenantId.eq(row.tenant_id))
        .filter(social_account::Column::Platform.eq(state_platform))
        .filter(social_account::Column::ProviderAccountId.eq(set.provider_account_id.as_str()))
        .one(&txn)
        .await?;
    let reconnected = existing.is_some();
    let account = match existing {
        Some(found) => {
            let mut active: social_account::ActiveModel = found.into();
            active.username = Set(profile.username.clone());
            active.display_name = Set(profile.display_name.clone());
            active.avatar_url = Set(profile.avatar_url.clone());
            active.status = Set(AccountStatus::Active);
            active.status_reason = Set(None);
            active.deactivated_at = Set(None);
            active.connected_at = Set(Some(now));
            active.updated_at = Set(now);
            active.update(&txn).await?
        }
        None => {
            social_account::ActiveModel {
                tenant_id: Set(row.tenant_id),
                platform: Set(state_platform),
                provider_account_id: Set(set.provider_account_id.clone()),
                username: Set(profile.username.clone()),
                display_name: Set(profile.display_name.clone()),
                avatar_url: Set(profile.avatar_url.clone()),
                status: Set(AccountStatus::Active),
                status_reason: Set(None),
                deactivated_at: Set(None),
                connected_at: Set(Some(now)),
                purged_at: Set(None),
                created_at: Set(now),
                updated_at: Set(now),
                ..Default::default()
            }
            .insert(&txn)
            .await?
        }
    };
    let token = tokens::store_connected(&txn, &vault, &account, &set).await?;
    audit::record(
        &txn,
        &actor,
        if reconnected {
            AuditAction::AccountReconnected
        } else {
            AuditAction::AccountConnected
        },
        Some(Target::new(TARGET, account.id)),
        json!({
            "platform": state_platform.as_str(),
            "username": account.username,
            "scopes": set.scopes,
            "expiresAt": token.expires_at,
        }),
    )
    .await?;
    let event = events::record(
        &txn,
        NewEvent {
            tenant_id: account.tenant_id,
            account_id: account.id,
            platform: state_platform,
            kind: EventKind::Connected,
            error: None,
        },
    )
    .await?;
    crate::events::notifications::resolve(&txn, account.id).await?;
    txn.commit().await?;
    engine.events.publish(event).await;
    Ok(Connected {
        account,
        reconnected,
    })
}

/// Disconnects an account (INTEGRATOR): revokes the grant where the provider can, deletes
/// the tokens, sets DISCONNECTED. A failed revocation is recorded, not fatal: the tokens
/// are deleted either way.
pub async fn disconnect<D>(
    db: &D,
    engine: &Engine,
    caller: &Caller,
    account_id: i64,
) -> ServiceResult<social_account::Model>
where
    D: ConnectionTrait + TransactionTrait,
{
    caller.require(Role::Integrator)?;
    let account = accounts::get(db, caller, account_id).await?;
    let platform: Platform = account.platform;
    // No refresh of this account may run while its tokens are deleted.
    let slot = engine.locks.slot(account.id);
    let _guard = slot.lock().await;
    let token = tokens::find_by_account(db, account.id).await?;
    let mut revoke = json!(null);
    if let (Some(token), Ok(provider)) = (&token, engine.providers.get_interactive(platform))
        && provider.supports_revoke()
    {
        revoke = revoke_at_provider(engine, provider.as_ref(), &account, token).await;
    }
    let txn = crate::db::begin(db).await?;
    if let Some(token) = token {
        entity::oauth_token::Entity::delete_by_id(token.id)
            .exec(&txn)
            .await?;
    }
    let now = Utc::now();
    let previous = account.status;
    let mut active: social_account::ActiveModel = account.into();
    active.status = Set(AccountStatus::Disconnected);
    active.status_reason = Set(None);
    active.updated_at = Set(now);
    let account = active.update(&txn).await?;
    audit::record(
        &txn,
        &caller.actor(),
        AuditAction::AccountDisconnected,
        Some(Target::new(TARGET, account.id)),
        json!({ "platform": platform.as_str(), "previousStatus": previous, "providerRevocation": revoke }),
    )
    .await?;
    let event = events::record(
        &txn,
        NewEvent {
            tenant_id: account.tenant_id,
            account_id: account.id,
            platform,
            kind: EventKind::Disconnected,
            error: None,
        },
    )
    .await?;
    txn.commit().await?;
    engine.events.publish(event).await;
    Ok(account)
}

/// Revokes the grant behind the stored tokens. TikTok revokes by access token: when it has
/// expired, the refresh token gets a fresh one first (TikTok's behaviour with an expired
/// token is not documented). The answer is `{"revoked": true}` only when the platform
/// accepted a live token; otherwise `{"revoked": false, "unconfirmed": true, "error": ...}`.
async fn revoke_at_provider(
    engine: &Engine,
    provider: &dyn crate::providers::OAuthProvider,
    account: &social_account::Model,
    token: &entity::oauth_token::Model,
) -> serde_json::Value {
    let vault = engine.vault();
    let unconfirmed = |code: &str, step: &str| json!({ "revoked": false, "unconfirmed": true, "error": code, "step": step });
    let Ok(mut access) = tokens::open(&vault, token, TokenKind::Access) else {
        return unconfirmed("undecryptable", "open");
    };
    let mut refreshed_first = false;
    if token.expires_at <= Utc::now() + Duration::seconds(30) {
        let refresh = match tokens::open(&vault, token, TokenKind::Refresh) {
            Ok(refresh) => refresh,
            Err(_) => return unconfirmed("access_token_expired", "refresh"),
        };
        let scopes: Vec<String> = token.scopes.split(',').map(str::to_owned).collect();
        let request = crate::providers::RefreshRequest {
            token: &refresh,
            issued_at: token.issued_at,
            expires_at: token.expires_at,
            provider_account_id: &account.provider_account_id,
            scopes: &scopes,
        };
        match provider.refresh(&request).await {
            Ok(set) => {
                access = set.access_token;
                refreshed_first = true;
            }
            Err(e) => return unconfirmed(&e.code, "refresh"),
        }
    }
    match provider.revoke(&access).await {
        Ok(()) => json!({ "revoked": true, "refreshedFirst": refreshed_first }),
        Err(e) => unconfirmed(&e.code, "revoke"),
    }
}

/// An access token handed to an integrator.
pub struct IssuedToken {
    pub token: SecretString,
    pub expires_at: chrono::DateTime<Utc>,
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedToken")
            .field("token", &"[redacted]")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Returns a usable access token (INTEGRATOR), refreshing first when little time remains.
/// Every read is audited as ACCESS_TOKEN_READ before the token is returned.
pub async fn access_token(
    db: &sea_orm::DatabaseConnection,
    engine: &std::sync::Arc<Engine>,
    caller: &Caller,
    account_id: i64,
) -> ServiceResult<IssuedToken> {
    caller.require(Role::Integrator)?;
    let account = accounts::get(db, caller, account_id).await?;
    refresh::ensure_usable_status(&account)?;
    let mut token = tokens::find_by_account(db, account.id)
        .await?
        .ok_or_else(|| ServiceError::bad_input("the account has no tokens; reconnect it"))?;
    let margin = Duration::from_std(engine.settings.access_token_margin)
        .unwrap_or_else(|_| Duration::minutes(5));
    let mut refresh_error = None;
    if token.expires_at - Utc::now() < margin {
        let options = RefreshOptions::on_request(caller.actor());
        let report = refresh::refresh(db, engine, caller.tenant_id, account.id, options).await?;
        refresh_error = report.error;
        token = tokens::find_by_account(db, account.id)
            .await?
            .ok_or_else(|| ServiceError::bad_input("the account has no tokens; reconnect it"))?;
        // Deactivated or disconnected while the refresh ran: its new tokens are stored,
        // never served.
        refresh::ensure_usable_status(&accounts::get(db, caller, account.id).await?)?;
    }
    if token.expires_at <= Utc::now() {
        let platform: Platform = account.platform;
        return Err(ServiceError::Provider(
            platform,
            refresh_error.unwrap_or_else(|| {
                ProviderError::new(
                    ErrorClass::GrantDead,
                    "expired",
                    "the access token has expired; reconnect the account",
                )
            }),
        ));
    }
    let plain = tokens::open(&engine.vault(), &token, TokenKind::Access)?;
    audit::record(
        db,
        &caller.actor(),
        AuditAction::AccessTokenRead,
        Some(Target::new(TARGET, account.id)),
        json!({ "expiresAt": token.expires_at, "refreshed": token.last_refreshed_at.is_some_and(|t| Utc::now() - t < margin) }),
    )
    .await?;
    tokens::analytics::record_read(db, caller, account.id, Utc::now()).await?;
    Ok(IssuedToken {
        token: plain,
        expires_at: token.expires_at,
    })
}

/// The platform's provider for a person waiting on a connection, or BAD_USER_INPUT when the
/// platform is not configured here.
pub(crate) fn interactive_provider(
    engine: &Engine,
    platform: Platform,
) -> ServiceResult<std::sync::Arc<dyn crate::providers::OAuthProvider>> {
    engine.providers.get_interactive(platform).map_err(|_| {
        ServiceError::bad_input(format!(
            "{} is not configured on this server",
            platform.display_name()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_match_by_origin_and_whole_path_segments() {
        let allowed = vec![
            "https://app.example.com/settings".to_owned(),
            "https://admin.example.com/oauth/".to_owned(),
            "http://localhost:3000".to_owned(),
        ];
        let table: &[(&str, bool)] = &[
            ("https://app.example.com/settings", true),
            ("https://app.example.com/settings/", true),
            ("https://app.example.com/settings/social?x=1#top", true),
            ("https://app.example.com:443/settings/social", true),
            ("https://APP.example.com/settings", true),
            ("https://app.example.com/settings-evil", false),
            ("https://app.example.com/settingsevil/x", false),
            ("https://app.example.com/settings/../admin", false),
            ("https://app.example.com/settings/%2e%2e/admin", false),
            ("https://app.example.com/setting", false),
            ("https://app.example.com/", false),
            ("https://app.example.com/other", false),
            ("https://admin.example.com/oauth/", true),
            ("https://admin.example.com/oauth/done", true),
            ("https://admin.example.com/oauth", false),
            ("https://admin.example.com/oauthx", false),
            ("http://localhost:3000/", true),
            ("http://localhost:3000/anything/below", true),
            ("http://localhost:3001/", false),
            ("https://localhost:3000/", false),
            ("https://evil.example.com/settings", false),
            ("https://app.example.com.evil.com/settings", false),
            ("http://app.example.com/settings", false),
            ("https://app.example.com:8443/settings", false),
            ("https://user@app.example.com/settings", false),
            ("https://user:pw@app.example.com/settings", false),
            ("javascript:alert(1)", false),
            ("data:text/html,hi", false),
            ("/settings", false),
            ("//app.example.com/settings", false),
            ("", false),
        ];
        for (target, ok) in table {
            assert_eq!(
                check_redirect(&allowed, target).is_ok(),
                *ok,
                "{target:?} should be {}",
                if *ok { "allowed" } else { "refused" }
            );
        }
        assert!(check_redirect(&[], "https://app.example.com/settings").is_err());
    }

    #[test]
    fn scopes_are_plain_tokens() {
        assert!(valid_scope("video.publish"));
        assert!(valid_scope("instagram_business_basic"));
        assert!(!valid_scope("a b"));
        assert!(!valid_scope(""));
    }
}
