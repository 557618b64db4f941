use std::time::Duration;

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use entity::{sign_in_throttle, user, user_session};
use ring::rand::{SecureRandom, SystemRandom};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set,
    TransactionSession, TransactionTrait,
    sea_query::{Expr, ExprTrait},
};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use crate::{
    error::{ServiceError, ServiceResult},
    identity::{
        api_keys::hash_key,
        audit::{self, AuditAction, Target},
        caller::{Actor, Caller, Principal},
        tenants, users,
    },
    tokens::vault::KeyRing,
};

/// Failures older than this are forgotten (unless a lockout is still running).
const FAILURE_WINDOW: chrono::Duration = chrono::Duration::minutes(15);
/// The longest single lockout.
const MAX_LOCKOUT: Duration = Duration::from_secs(15 * 60);
/// A client address may fail this many times as often as one email before it is locked.
const IP_FACTOR: u32 = 4;

/// Session lifetimes and sign-in throttling.
#[derive(Clone, Copy, Debug)]
pub struct SessionSettings {
    /// A session unused this long ends (each use slides it).
    pub idle_timeout: Duration,
    /// A session ends this long after sign-in, used or not.
    pub absolute_timeout: Duration,
    /// Consecutive failures of one email before it is locked out (a client address gets
    /// four times as many).
    pub max_failures: u32,
    /// The first lockout; each further failure while over the limit doubles it (at most
    /// 15 minutes).
    pub lockout: Duration,
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(30 * 60),
            absolute_timeout: Duration::from_secs(12 * 60 * 60),
            max_failures: 5,
            lockout: Duration::from_secs(30),
        }
    }
}

impl SessionSettings {
    fn idle(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.idle_timeout).unwrap_or(chrono::Duration::minutes(30))
    }

    fn absolute(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.absolute_timeout).unwrap_or(chrono::Duration::hours(12))
    }

    /// `last_seen_at` is written at most this often per session (a tenth of the idle
    /// timeout, at most a minute), so reads stay reads.
    fn touch_granularity(&self) -> chrono::Duration {
        (self.idle() / 10).min(chrono::Duration::minutes(1))
    }
}

/// What a sign-in presents. Debug never shows the password or code.
pub struct SignIn {
    pub email: String,
    pub password: SecretString,
    pub code: String,
}

/// Why a sign-in was refused. The messages are deliberately uninformative.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    /// Unknown email, wrong password or a disabled user (indistinguishable on purpose).
    #[error("invalid email or password")]
    InvalidCredentials,
    /// The password was right but the TOTP or recovery code was wrong or missing.
    #[error("invalid or missing authentication code")]
    InvalidCode,
    /// Too many recent failures for this email or client address.
    #[error("too many failed sign-ins; retry in {retry_after_seconds} s")]
    LockedOut { retry_after_seconds: u64 },
    /// Anything else (database, vault); logged by the caller.
    #[error(transparent)]
    Service(#[from] ServiceError),
}

impl From<sea_orm::DbErr> for SignInError {
    fn from(err: sea_orm::DbErr) -> Self {
        SignInError::Service(err.into())
    }
}

/// A new session: the cookie value exists only here.
pub struct SignedIn {
    pub token: SecretString,
    pub csrf_token: String,
    pub user: user::Model,
    pub tenant: String,
    pub session: user_session::Model,
}

/// A session resolved from its cookie.
#[derive(Clone, Debug)]
pub struct ActiveSession {
    pub caller: Caller,
    pub user: user::Model,
    pub tenant: String,
    pub csrf_token: String,
    pub session_id: i64,
}

fn random_token() -> ServiceResult<String> {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| ServiceError::Internal("the system random generator failed".into()))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

fn email_subject(email: &str) -> String {
    format!("email:{email}")
}

fn ip_subject(ip: &str) -> String {
    format!("ip:{ip}")
}

/// Deletes throttle rows that no longer count: the last failure is older than the failure
/// window and no lockout is running (the prune job; sign-in would reset them anyway).
pub async fn prune_throttle(db: &impl ConnectionTrait, now: DateTime<Utc>) -> ServiceResult<u64> {
    Ok(sign_in_throttle::Entity::delete_many()
        .filter(sign_in_throttle::Column::LastFailureAt.lt(now - FAILURE_WINDOW))
        .filter(
            sign_in_throttle::Column::LockedUntil
                .is_null()
                .or(sign_in_throttle::Column::LockedUntil.lt(now)),
        )
        .exec(db)
        .await?
        .rows_affected)
}

/// Seconds left of a running lockout of any of `subjects`.
async fn locked_for(
    db: &impl ConnectionTrait,
    subjects: &[String],
    now: DateTime<Utc>,
) -> ServiceResult<Option<u64>> {
    let rows = sign_in_throttle::Entity::find()
        .filter(sign_in_throttle::Column::Subject.is_in(subjects.iter().map(String::as_str)))
        .all(db)
        .await?;
    Ok(rows
        .iter()
        .filter_map(|row| row.locked_until)
        .filter(|until| *until > now)
        .map(|until| u64::try_from((until - now).num_seconds()).unwrap_or(0) + 1)
        .max())
}

/// Counts one failure of `subject`; locks it once it reaches `limit` (doubling per further
/// failure). Each step is one atomic update, so concurrent guesses all count.
async fn record_failure(
    db: &impl ConnectionTrait,
    subject: &str,
    limit: u32,
    base: Duration,
    now: DateTime<Utc>,
) -> ServiceResult<()> {
    // Forget stale failures first (never during a lockout).
    sign_in_throttle::Entity::update_many()
        .col_expr(sign_in_throttle::Column::Failures, Expr::value(0))
        .col_expr(
            sign_in_throttle::Column::LockedUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .filter(sign_in_throttle::Column::Subject.eq(subject))
        .filter(sign_in_throttle::Column::LastFailureAt.lt(now - FAILURE_WINDOW))
        .filter(
            sign_in_throttle::Column::LockedUntil
                .is_null()
                .or(sign_in_throttle::Column::LockedUntil.lt(now)),
        )
        .exec(db)
        .await?;
    let bumped = sign_in_throttle::Entity::update_many()
        .col_expr(
            sign_in_throttle::Column::Failures,
            Expr::col(sign_in_throttle::Column::Failures).add(1),
        )
        .col_expr(sign_in_throttle::Column::LastFailureAt, Expr::value(now))
        .filter(sign_in_throttle::Column::Subject.eq(subject))
        .exec(db)
        .await?;
    if bumped.rows_affected == 0 {
        let inserted = sign_in_throttle::ActiveModel {
            subject: Set(subject.to_owned()),
            failures: Set(1),
            last_failure_at: Set(now),
            locked_until: Set(None),
            ..Default::default()
        }
        .insert(db)
        .await;
        if inserted.is_err() {
            // A concurrent first failure inserted the row: count on it.
            sign_in_throttle::Entity::update_many()
                .col_expr(
                    sign_in_throttle::Column::Failures,
                    Expr::col(sign_in_throttle::Column::Failures).add(1),
                )
                .filter(sign_in_throttle::Column::Subject.eq(subject))
                .exec(db)
                .await?;
        }
    }
    let Some(row) = sign_in_throttle::Entity::find()
        .filter(sign_in_throttle::Column::Subject.eq(subject))
        .one(db)
        .await?
    else {
        return Ok(());
    };
    let failures = u32::try_from(row.failures).unwrap_or(0);
    let limit = std::cmp::max(limit, 1);
    if failures >= limit {
        let doublings = std::cmp::min(failures - limit, 16);
        let lock = base
            .saturating_mul(1u32 << doublings)
            .min(MAX_LOCKOUT)
            .max(Duration::from_secs(1));
        let until = now + chrono::Duration::from_std(lock).unwrap_or(FAILURE_WINDOW);
        sign_in_throttle::Entity::update_many()
            .col_expr(
                sign_in_throttle::Column::LockedUntil,
                Expr::value(Some(until)),
            )
            .filter(sign_in_throttle::Column::Id.eq(row.id))
            .exec(db)
            .await?;
    }
    Ok(())
}

async fn audit_failure(
    db: &impl ConnectionTrait,
    tenant_id: Option<i64>,
    email: &str,
    reason: &str,
    client_ip: Option<String>,
) -> ServiceResult<()> {
    audit::record(
        db,
        &Actor {
            tenant_id,
            name: format!("user:{email}"),
            client_ip,
        },
        AuditAction::UserSignInFailed,
        None,
        json!({ "email": email, "reason": reason }),
    )
    .await?;
    Ok(())
}

/// Signs a user in with email, password and a TOTP or recovery code. Every attempt is
/// audited (never with the password or code); failures count towards a lockout of the
/// email and of the client address, and a locked subject is refused before any check.
pub async fn sign_in<D>(
    db: &D,
    vault: &KeyRing,
    settings: &SessionSettings,
    attempt: SignIn,
    client_ip: Option<String>,
) -> Result<SignedIn, SignInError>
where
    D: ConnectionTrait + TransactionTrait,
{
    let now = Utc::now();
    // A malformed email is just an unknown one (no hint which part was wrong).
    let email = users::normalize_email(&attempt.email).unwrap_or_else(|_| {
        attempt
            .email
            .trim()
            .to_lowercase()
            .chars()
            .take(254)
            .collect()
    });
    let mut subjects = vec![email_subject(&email)];
    if let Some(ip) = &client_ip {
        subjects.push(ip_subject(ip));
    }
    let user = users::find_by_email(db, &email).await?;
    let tenant_id = user.as_ref().map(|u| u.tenant_id);
    if let Some(retry_after_seconds) = locked_for(db, &subjects, now).await? {
        audit_failure(db, tenant_id, &email, "LOCKED_OUT", client_ip.clone()).await?;
        return Err(SignInError::LockedOut {
            retry_after_seconds,
        });
    }
    let fail = |reason: &'static str, error: SignInError| {
        let client_ip = client_ip.clone();
        let email = email.clone();
        async move {
            record_failure(
                db,
                &email_subject(&email),
                settings.max_failures,
                settings.lockout,
                now,
            )
            .await?;
            if let Some(ip) = &client_ip {
                record_failure(
                    db,
                    &ip_subject(ip),
                    settings.max_failures.saturating_mul(IP_FACTOR),
                    settings.lockout,
                    now,
                )
                .await?;
            }
            audit_failure(db, tenant_id, &email, reason, client_ip).await?;
            Err::<SignedIn, SignInError>(error)
        }
    };
    let password_ok = users::password_matches(user.as_ref(), &attempt.password).await;
    let user = match user {
        Some(user) if password_ok && user.disabled_at.is_none() => user,
        Some(_) if password_ok => {
            return fail("USER_DISABLED", SignInError::InvalidCredentials).await;
        }
        _ => return fail("INVALID_CREDENTIALS", SignInError::InvalidCredentials).await,
    };
    if !users::accept_code(db, vault, &user, &attempt.code).await? {
        return fail("INVALID_CODE", SignInError::InvalidCode).await;
    }
    let role = user.role;
    let tenant = tenants::find(db, user.tenant_id)
        .await?
        .ok_or_else(|| ServiceError::Internal(format!("user {} has no tenant", user.id)))?;
    let token = random_token()?;
    let csrf_token = random_token()?;
    let txn = crate::db::begin(db).await?;
    // Success clears this email's failures (not the address's: a valid account must not
    // launder guesses against others).
    sign_in_throttle::Entity::delete_many()
        .filter(sign_in_throttle::Column::Subject.eq(email_subject(&email)))
        .exec(&txn)
        .await?;
    // Ended sessions are deleted as new ones begin, so the table stays small.
    user_session::Entity::delete_many()
        .filter(user_session::Column::ExpiresAt.lt(now))
        .exec(&txn)
        .await?;
    let session = user_session::ActiveModel {
        user_id: Set(user.id),
        tenant_id: Set(user.tenant_id),
        token_hash: Set(hash_key(&token)),
        csrf_token: Set(csrf_token.clone()),
        created_at: Set(now),
        last_seen_at: Set(now),
        expires_at: Set(now + settings.absolute()),
        client_ip: Set(client_ip.clone()),
        ..Default::default()
    }
    .insert(&txn)
    .await?;
    let mut active: user::ActiveModel = user.into();
    active.last_sign_in_at = Set(Some(now));
    let user = active.update(&txn).await?;
    audit::record(
        &txn,
        &Actor {
            tenant_id: Some(user.tenant_id),
            name: format!("user:{}", user.email),
            client_ip,
        },
        AuditAction::UserSignedIn,
        Some(Target::new("User", user.id)),
        json!({ "email": user.email, "role": role.as_str() }),
    )
    .await?;
    txn.commit().await?;
    Ok(SignedIn {
        token: SecretString::from(token),
        csrf_token,
        user,
        tenant: tenant.name,
        session,
    })
}

fn is_live(session: &user_session::Model, settings: &SessionSettings, now: DateTime<Utc>) -> bool {
    session.expires_at > now && session.last_seen_at + settings.idle() > now
}

/// Resolves a session cookie to its user's caller, sliding the idle expiry. An unknown,
/// ended or disabled user's session is `Unauthenticated` (and an ended one is deleted).
pub async fn authenticate(
    db: &impl ConnectionTrait,
    settings: &SessionSettings,
    token: &str,
    client_ip: Option<String>,
) -> ServiceResult<ActiveSession> {
    const INVALID: &str = "the session has ended; sign in again";
    let now = Utc::now();
    let Some(session) = user_session::Entity::find()
        .filter(user_session::Column::TokenHash.eq(hash_key(token)))
        .one(db)
        .await?
    else {
        return Err(ServiceError::Unauthenticated(INVALID));
    };
    if !is_live(&session, settings, now) {
        user_session::Entity::delete_by_id(session.id)
            .exec(db)
            .await?;
        return Err(ServiceError::Unauthenticated(INVALID));
    }
    let Some(user) = user::Entity::find_by_id(session.user_id).one(db).await? else {
        return Err(ServiceError::Unauthenticated(INVALID));
    };
    if user.disabled_at.is_some() {
        return Err(ServiceError::Unauthenticated(INVALID));
    }
    let role = user.role;
    let tenant = tenants::find(db, user.tenant_id)
        .await?
        .ok_or_else(|| ServiceError::Internal(format!("user {} has no tenant", user.id)))?;
    if now - session.last_seen_at > settings.touch_granularity() {
        // Best effort: a failed bookkeeping write must not fail the request.
        let touched = user_session::Entity::update_many()
            .col_expr(user_session::Column::LastSeenAt, Expr::value(now))
            .filter(user_session::Column::Id.eq(session.id))
            .exec(db)
            .await;
        if let Err(err) = touched {
            tracing::warn!(session_id = session.id, error = %err, "could not slide a session");
        }
    }
    Ok(ActiveSession {
        caller: Caller {
            tenant_id: user.tenant_id,
            role,
            principal: Principal::User {
                id: user.id,
                email: user.email.clone(),
                session_id: session.id,
            },
            client_ip,
        },
        tenant: tenant.name,
        csrf_token: session.csrf_token,
        session_id: session.id,
        user,
    })
}

/// Whether a session is still live and its user enabled (long-lived connections re-check
/// this; it does not slide the session).
pub(crate) async fn is_active(
    db: &impl ConnectionTrait,
    settings: &SessionSettings,
    session_id: i64,
) -> ServiceResult<bool> {
    let Some(session) = user_session::Entity::find_by_id(session_id).one(db).await? else {
        return Ok(false);
    };
    if !is_live(&session, settings, Utc::now()) {
        return Ok(false);
    }
    Ok(user::Entity::find_by_id(session.user_id)
        .one(db)
        .await?
        .is_some_and(|u| u.disabled_at.is_none()))
}

/// Whether the caller's credential still holds: its API key unrevoked, or its session live
/// (long-lived connections re-check this every few seconds).
pub async fn still_active(
    db: &impl ConnectionTrait,
    settings: &SessionSettings,
    caller: &Caller,
) -> ServiceResult<bool> {
    match &caller.principal {
        Principal::ApiKey { id } => crate::identity::api_keys::is_active(db, *id).await,
        Principal::User { session_id, .. } => is_active(db, settings, *session_id).await,
    }
}

/// Ends a session (sign-out) and audits it.
pub async fn sign_out<D>(db: &D, session: &ActiveSession) -> ServiceResult<()>
where
    D: ConnectionTrait + TransactionTrait,
{
    let txn = crate::db::begin(db).await?;
    user_session::Entity::delete_by_id(session.session_id)
        .exec(&txn)
        .await?;
    audit::record(
        &txn,
        &session.caller.actor(),
        AuditAction::UserSignedOut,
        Some(Target::new("User", session.user.id)),
        json!({ "email": session.user.email }),
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

/// Compares a presented CSRF token with the session's in constant time.
pub fn csrf_matches(session: &ActiveSession, presented: &str) -> bool {
    let expected = session.csrf_token.as_bytes();
    let presented = presented.as_bytes();
    expected.len() == presented.len()
        && expected
            .iter()
            .zip(presented)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// For the sign-in request type: keep the password out of Debug output.
impl std::fmt::Debug for SignIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignIn")
            .field("email", &self.email)
            .finish_non_exhaustive()
    }
}

/// The secret of a new session, for the cookie.
impl SignedIn {
    /// The cookie value (opaque).
    pub fn cookie_value(&self) -> &str {
        self.token.expose_secret()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn touch_granularity_follows_short_idle_timeouts() {
        let settings = SessionSettings {
            idle_timeout: Duration::from_secs(2),
            ..SessionSettings::default()
        };
        assert_eq!(
            settings.touch_granularity(),
            chrono::Duration::milliseconds(200)
        );
        assert_eq!(
            SessionSettings::default().touch_granularity(),
            chrono::Duration::minutes(1)
        );
    }

    #[test]
    fn sign_in_debug_hides_secrets() {
        let attempt = SignIn {
            email: "a@b.c".into(),
            password: SecretString::from("hunter2hunter2"),
            code: "123456".into(),
        };
        let shown = format!("{attempt:?}");
        assert!(!shown.contains("hunter2") && !shown.contains("123456"));
    }
}
