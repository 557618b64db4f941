//! Refresh attempts: every try, whatever triggered it, with its outcome; and the retry
//! schedule of failing accounts (exponential backoff with jitter, honouring Retry-After).

use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::{oauth_token, refresh_attempt};
use ring::rand::{SecureRandom, SystemRandom};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set, sea_query::Expr,
};

use crate::{
    error::ServiceResult,
    identity::caller::Caller,
    pagination::{self, Direction, Page, PageArgs},
    providers::{ErrorClass, ProviderError},
    tokens::refresh::RefreshKind,
};

/// How an attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// New tokens stored.
    Succeeded,
    /// A transient failure; a retry is scheduled.
    FailedTransient,
    /// A dead grant or a configuration problem; no automatic retry will help.
    FailedPermanent,
    /// Nothing to do (already fresh, not due, not refreshable yet).
    Skipped,
}

impl Outcome {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "SUCCEEDED",
            Outcome::FailedTransient => "FAILED_TRANSIENT",
            Outcome::FailedPermanent => "FAILED_PERMANENT",
            Outcome::Skipped => "SKIPPED",
        }
    }
}

impl std::str::FromStr for Outcome {
    type Err = crate::ServiceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            Outcome::Succeeded,
            Outcome::FailedTransient,
            Outcome::FailedPermanent,
            Outcome::Skipped,
        ]
        .into_iter()
        .find(|o| o.as_str() == s)
        .ok_or_else(|| crate::ServiceError::Internal(format!("unknown outcome {s:?}")))
    }
}

/// The outcome of a finished refresh, as recorded: failures that no retry will mend
/// (dead grant, configuration, bad input) are permanent; a refresh the platform does not
/// allow yet (Instagram's first day) or that was not needed is skipped.
pub fn outcome_of(kind: &RefreshKind, error: Option<&ProviderError>) -> Outcome {
    match (kind, error) {
        (RefreshKind::Refreshed, _) => Outcome::Succeeded,
        (RefreshKind::AlreadyFresh, _) => Outcome::Skipped,
        (RefreshKind::Failed, Some(error)) => match error.class {
            ErrorClass::Transient => Outcome::FailedTransient,
            ErrorClass::NotRefreshableYet => Outcome::Skipped,
            ErrorClass::GrantDead | ErrorClass::Config | ErrorClass::InvalidInput => {
                Outcome::FailedPermanent
            }
        },
        (RefreshKind::Failed, None) => Outcome::FailedTransient,
    }
}

/// One finished attempt, ready to store.
#[derive(Clone, Debug)]
pub struct NewAttempt {
    pub tenant_id: i64,
    pub account_id: i64,
    pub attempt: i32,
    pub trigger: &'static str,
    pub started_at: DateTime<Utc>,
    pub outcome: Outcome,
    pub error_class: Option<String>,
    pub error_code: Option<String>,
}

/// Stores an attempt.
pub async fn record(
    db: &impl ConnectionTrait,
    attempt: NewAttempt,
) -> ServiceResult<refresh_attempt::Model> {
    let finished = Utc::now();
    let latency = (finished - attempt.started_at)
        .num_milliseconds()
        .clamp(0, i64::from(i32::MAX));
    Ok(refresh_attempt::ActiveModel {
        tenant_id: Set(attempt.tenant_id),
        account_id: Set(attempt.account_id),
        attempt: Set(attempt.attempt),
        trigger: Set(attempt.trigger.to_owned()),
        started_at: Set(attempt.started_at),
        finished_at: Set(finished),
        outcome: Set(attempt.outcome.as_str().to_owned()),
        error_class: Set(attempt.error_class),
        error_code: Set(attempt.error_code),
        latency_ms: Set(latency as i32),
        ..Default::default()
    }
    .insert(db)
    .await?)
}

/// An account's attempts, newest first (tenant-scoped).
pub async fn list(
    db: &impl ConnectionTrait,
    caller: &Caller,
    account_id: i64,
    page: PageArgs,
) -> ServiceResult<Page<refresh_attempt::Model>> {
    let select = refresh_attempt::Entity::find()
        .filter(refresh_attempt::Column::TenantId.eq(caller.tenant_id))
        .filter(refresh_attempt::Column::AccountId.eq(account_id));
    pagination::paginate(
        db,
        select,
        refresh_attempt::Column::Id,
        Direction::NewestFirst,
        page,
    )
    .await
}

/// Delay before retry number `failures` (1 = first retry): 30 s doubling up to 1 h, with
/// ±20 % jitter, and never sooner than the provider's Retry-After.
pub fn backoff(failures: u32, retry_after: Option<Duration>) -> Duration {
    let base = 30u64
        .saturating_mul(1 << failures.saturating_sub(1).min(7))
        .min(3600);
    let mut byte = [0u8; 1];
    let jitter = match SystemRandom::new().fill(&mut byte) {
        Ok(()) => 0.8 + 0.4 * f64::from(byte[0]) / 255.0,
        Err(_) => 1.0,
    };
    let delay = Duration::from_secs_f64(base as f64 * jitter);
    retry_after.map_or(delay, |wait| delay.max(wait))
}

/// After a transient failure: counts it and sets when the next try is due.
pub async fn schedule_retry(
    db: &impl ConnectionTrait,
    account_id: i64,
    failures: i32,
    at: DateTime<Utc>,
) -> ServiceResult<()> {
    oauth_token::Entity::update_many()
        .col_expr(oauth_token::Column::FailureCount, Expr::value(failures))
        .col_expr(oauth_token::Column::NextRefreshAt, Expr::value(Some(at)))
        .col_expr(
            oauth_token::Column::SweepClaimedUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .filter(oauth_token::Column::AccountId.eq(account_id))
        .exec(db)
        .await?;
    Ok(())
}

/// Deletes attempts older than `before` (retention).
pub async fn prune(db: &impl ConnectionTrait, before: DateTime<Utc>) -> ServiceResult<u64> {
    Ok(refresh_attempt::Entity::delete_many()
        .filter(refresh_attempt::Column::StartedAt.lt(before))
        .exec(db)
        .await?
        .rows_affected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_follow_the_error_class() {
        let failed = |class| Some(ProviderError::new(class, "c", "m"));
        let table = [
            (RefreshKind::Refreshed, None, Outcome::Succeeded),
            (RefreshKind::AlreadyFresh, None, Outcome::Skipped),
            (
                RefreshKind::Failed,
                failed(ErrorClass::Transient),
                Outcome::FailedTransient,
            ),
            (
                RefreshKind::Failed,
                failed(ErrorClass::NotRefreshableYet),
                Outcome::Skipped,
            ),
            (
                RefreshKind::Failed,
                failed(ErrorClass::GrantDead),
                Outcome::FailedPermanent,
            ),
            (
                RefreshKind::Failed,
                failed(ErrorClass::Config),
                Outcome::FailedPermanent,
            ),
            (
                RefreshKind::Failed,
                failed(ErrorClass::InvalidInput),
                Outcome::FailedPermanent,
            ),
            (RefreshKind::Failed, None, Outcome::FailedTransient),
        ];
        for (kind, error, expected) in table {
            assert_eq!(
                outcome_of(&kind, error.as_ref()),
                expected,
                "{kind:?} {error:?}"
            );
        }
    }

    #[test]
    fn backoff_grows_is_capped_jittered_and_honours_retry_after() {
        for _ in 0..20 {
            let first = backoff(1, None).as_secs_f64();
            assert!((24.0..=36.0).contains(&first), "{first}");
            let third = backoff(3, None).as_secs_f64();
            assert!((96.0..=144.0).contains(&third), "{third}");
            let late = backoff(30, None).as_secs_f64();
            assert!(late <= 3600.0 * 1.2, "{late}");
        }
        assert!(backoff(1, Some(Duration::from_secs(600))) >= Duration::from_secs(600));
    }
}
