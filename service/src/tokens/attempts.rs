//! Refresh attempts: every try, whatever triggered it, with its outcome; and the retry
//! schedule of failing accounts (the delay is the [`super::policy`]'s).

use chrono::{DateTime, Utc};
use entity::{oauth_token, refresh_attempt};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set, sea_query::Expr,
};

use crate::{
    error::ServiceResult,
    identity::caller::Caller,
    pagination::{self, Direction, Page, PageArgs},
    providers::ErrorClass,
    tokens::queue::Trigger,
};

/// How an attempt ended.
pub use entity::enums::RefreshOutcome as Outcome;

/// One finished attempt, ready to store.
#[derive(Clone, Debug)]
pub struct NewAttempt {
    pub tenant_id: i64,
    pub account_id: i64,
    pub attempt: i32,
    pub trigger: Trigger,
    pub started_at: DateTime<Utc>,
    pub outcome: Outcome,
    pub error_class: Option<ErrorClass>,
    pub error_code: Option<String>,
}

/// Stores an attempt.
pub async fn record(
    db: &impl ConnectionTrait,
    attempt: NewAttempt,
) -> ServiceResult<refresh_attempt::Model> {
    Ok(row(attempt, Utc::now()).insert(db).await?)
}

/// The row of an attempt that finished at `finished`, ready to insert (several at once:
/// [`crate::tokens::batch::record_attempt`]).
pub(crate) fn row(attempt: NewAttempt, finished: DateTime<Utc>) -> refresh_attempt::ActiveModel {
    let latency = (finished - attempt.started_at)
        .num_milliseconds()
        .clamp(0, i64::from(i32::MAX));
    refresh_attempt::ActiveModel {
        tenant_id: Set(attempt.tenant_id),
        account_id: Set(attempt.account_id),
        attempt: Set(attempt.attempt),
        trigger: Set(attempt.trigger),
        started_at: Set(attempt.started_at),
        finished_at: Set(finished),
        outcome: Set(attempt.outcome),
        error_class: Set(attempt.error_class),
        error_code: Set(attempt.error_code),
        latency_ms: Set(latency as i32),
        ..Default::default()
    }
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

/// After a transient failure: counts it and sets when the next try is due.
pub(crate) async fn schedule_retry(
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
