//! Token-rejected feedback: an integrator's platform call, made with a token from
//! `accessToken`, failed with an authentication error. tokenwarden checks the token at
//! once with the platform (its user-info call), refreshes it when the platform says it is
//! dead but the grant may live (TikTok answers `access_token_invalid` for expired access
//! tokens too, developers.tiktok.com/doc/tiktok-api-v2-error-handling), or marks the
//! account RECONNECT_REQUIRED; it answers with a usable token or the action to take.
//! Every report is audited (TOKEN_REJECTED) and counted per account and platform: the
//! "users unable to post content" symptom of the maintenance guide, seen from the
//! integrator's side.

use std::sync::Arc;

use chrono::{Duration, Utc};
use entity::{audit_log, social_account};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::json;

use super::{IssuedToken, accounts, accounts::TARGET};
use crate::{
    domain::Platform,
    engine::Engine,
    error::{ServiceError, ServiceResult},
    identity::audit::{self, AuditAction, Target},
    identity::caller::{Caller, Role},
    providers::{ErrorClass, ProviderError, sanitize_message},
    tokens,
    tokens::policy,
    tokens::queue::Trigger,
    tokens::refresh::{self, RefreshKind, RefreshOptions},
    tokens::vault::TokenKind,
};

/// What the platform answered the integrator's call (all optional, for the audit log).
#[derive(Clone, Debug, Default)]
pub struct Rejection {
    /// HTTP status of the failed platform call.
    pub http_status: Option<u16>,
    /// The platform's error code (`access_token_invalid`, `190`...).
    pub error_code: Option<String>,
    /// The platform's message (sanitized before it is stored).
    pub message: Option<String>,
}

/// What tokenwarden found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The platform accepts the current token right now: the failure was not the token's
    /// (a missing permission for that call, a platform hiccup). Use the returned token.
    TokenValid,
    /// The platform refused the token but the grant was alive: refreshed. Use the returned
    /// token.
    Refreshed,
    /// The grant is dead: the account is RECONNECT_REQUIRED (or EXPIRED); the error says
    /// what to do.
    ReconnectRequired,
    /// The platform could not be asked now (unavailable, rate limited, misconfigured):
    /// retry after the error's `retry_after`.
    Unavailable,
}

impl Verdict {
    /// Stable name (audit details, metrics).
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::TokenValid => "token_valid",
            Verdict::Refreshed => "refreshed",
            Verdict::ReconnectRequired => "reconnect_required",
            Verdict::Unavailable => "unavailable",
        }
    }
}

/// The outcome of a token-rejected report.
#[derive(Debug)]
pub struct RejectionReport {
    /// The account as it is now.
    pub account: social_account::Model,
    pub verdict: Verdict,
    /// A usable access token (TokenValid, Refreshed).
    pub token: Option<IssuedToken>,
    /// Why no token could be returned, and what to do.
    pub error: Option<ProviderError>,
    /// Reports for this account in the last 24 hours, this one included.
    pub rejections_last_24h: u64,
}

/// Handles a report that a token from `accessToken` was refused by the platform
/// (INTEGRATOR, tenant-scoped). See the module documentation.
pub async fn report_token_rejected(
    db: &DatabaseConnection,
    engine: &Arc<Engine>,
    caller: &Caller,
    account_id: i64,
    rejection: Rejection,
) -> ServiceResult<RejectionReport> {
    caller.require(Role::Integrator)?;
    let account = accounts::get(db, caller, account_id).await?;
    let platform: Platform = account.platform;
    let (verdict, error) = match check_and_mend(db, engine, caller, &account, platform).await {
        Ok(verdict) => (verdict, None),
        Err(ServiceError::Provider(_, error)) => {
            let verdict = if error.is_grant_dead() {
                Verdict::ReconnectRequired
            } else {
                Verdict::Unavailable
            };
            (verdict, Some(error))
        }
        Err(other) => return Err(other),
    };
    let account = accounts::get(db, caller, account.id).await?;
    let token = match verdict {
        Verdict::TokenValid | Verdict::Refreshed => {
            let row = tokens::find_by_account(db, account.id)
                .await?
                .ok_or_else(|| {
                    ServiceError::bad_input("the account has no tokens; reconnect it")
                })?;
            Some(IssuedToken {
                token: tokens::open(&engine.vault(), &row, TokenKind::Access)?,
                expires_at: row.expires_at,
            })
        }
        Verdict::ReconnectRequired | Verdict::Unavailable => None,
    };
    let reported_code = rejection
        .error_code
        .as_deref()
        .map(|c| sanitize_message(c).chars().take(100).collect::<String>());
    audit::record(
        db,
        &caller.actor(),
        AuditAction::TokenRejected,
        Some(Target::new(TARGET, account.id)),
        json!({
            "platform": platform.as_str(),
            "reported": {
                "httpStatus": rejection.http_status,
                "errorCode": reported_code,
                "message": rejection.message.as_deref().map(sanitize_message),
            },
            "verdict": verdict.as_str(),
            "errorCode": error.as_ref().map(|e| e.code.clone()),
            "status": account.status,
            // A token that leaves the service is a token read.
            "tokenReturned": token.is_some(),
            "expiresAt": token.as_ref().map(|t| t.expires_at),
        }),
    )
    .await?;
    metrics::counter!(
        "tokenwarden_token_rejected_total",
        "platform" => platform.as_str(),
        "verdict" => verdict.as_str()
    )
    .increment(1);
    let rejections_last_24h = audit_log::Entity::find()
        .filter(audit_log::Column::TenantId.eq(caller.tenant_id))
        .filter(audit_log::Column::TargetType.eq(TARGET))
        .filter(audit_log::Column::TargetId.eq(account.id.to_string()))
        .filter(audit_log::Column::Action.eq(AuditAction::TokenRejected))
        .filter(audit_log::Column::OccurredAt.gt(Utc::now() - Duration::hours(24)))
        .count(db)
        .await?;
    Ok(RejectionReport {
        account,
        verdict,
        token,
        error,
        rejections_last_24h,
    })
}

/// Asks the platform about the current token; refreshes it or marks the account when the
/// platform refuses it. `Err(Provider)` carries what to tell the integrator.
async fn check_and_mend(
    db: &DatabaseConnection,
    engine: &Arc<Engine>,
    caller: &Caller,
    account: &social_account::Model,
    platform: Platform,
) -> ServiceResult<Verdict> {
    // RECONNECT_REQUIRED / EXPIRED accounts answer with their action at once.
    refresh::ensure_usable_status(account)?;
    let token = tokens::find_by_account(db, account.id)
        .await?
        .ok_or_else(|| ServiceError::bad_input("the account has no tokens; reconnect it"))?;
    let access = tokens::open(&engine.vault(), &token, TokenKind::Access)?;
    let provider = engine
        .providers
        .get_interactive(platform)
        .map_err(|e| ServiceError::Provider(platform, e))?;
    let refused = match provider.user_info(&access).await {
        Ok(_) => return Ok(Verdict::TokenValid),
        Err(error) if error.is_grant_dead() => error,
        Err(error) => return Err(ServiceError::Provider(platform, error)),
    };
    // The platform refused the token: a refresh tells an expired access token (the grant
    // lives) from a dead grant (the refresh fails too and marks the account).
    let report = refresh::refresh(
        db,
        engine,
        caller.tenant_id,
        account.id,
        RefreshOptions::on_request(caller.actor()),
    )
    .await?;
    let now_token = tokens::find_by_account(db, account.id).await?;
    let replaced = now_token.is_some_and(|t| t.version != token.version);
    match (report.kind, report.error) {
        (RefreshKind::Refreshed, _) => Ok(Verdict::Refreshed),
        (RefreshKind::AlreadyFresh, _) if replaced => Ok(Verdict::Refreshed),
        (_, Some(error)) if error.class != ErrorClass::NotRefreshableYet => {
            // Dead: the refresh marked the account. Transient or configuration: the
            // integrator retries later, the operator fixes the app.
            Err(ServiceError::Provider(platform, error))
        }
        _ => {
            // The platform refuses this token and no refresh can replace it (Instagram
            // under 24 hours, or refreshed moments ago and still refused): the user must
            // reconnect.
            let account = accounts::find(db, account.tenant_id, account.id)
                .await?
                .ok_or(ServiceError::NotFound("account"))?;
            let decision = policy::decide(policy::Input {
                observed: policy::Observed::Failed(&refused),
                status: account.status,
                attempt: u32::try_from(token.failure_count + 1).unwrap_or(1),
                trigger: Trigger::Manual,
                rules: policy::RetryRules::default(),
                jitter: policy::Jitter::NONE,
            });
            refresh::record_failure(db, engine, account, &refused, &decision, &caller.actor())
                .await?;
            Err(ServiceError::Provider(platform, refused))
        }
    }
}
