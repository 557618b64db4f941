//! The tenant-wide token health summary (the maintenance guide's "token refresh
//! monitoring"): how many accounts are in which state, what is about to expire, what failed.

use chrono::{DateTime, Utc};
use entity::{oauth_token, refresh_attempt, social_account};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QuerySelect, QueryTrait,
};

use crate::{
    domain::{AccountStatus, Platform},
    error::ServiceResult,
    identity::caller::Caller,
    tokens::attempts::Outcome,
};

/// Accounts per platform and status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusCount {
    pub platform: Platform,
    pub status: AccountStatus,
    pub count: u64,
}

/// The summary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    pub by_status: Vec<StatusCount>,
    /// Refreshable accounts whose access token expires within 24 hours.
    pub expiring_next_24h: u64,
    /// Failed refresh attempts in the last 24 hours.
    pub failures_last_24h: u64,
}

/// The caller's tenant's summary at `now`.
pub async fn summary(
    db: &impl ConnectionTrait,
    caller: &Caller,
    now: DateTime<Utc>,
) -> ServiceResult<Summary> {
    let rows: Vec<(Platform, AccountStatus, i64)> = social_account::Entity::find()
        .select_only()
        .column(social_account::Column::Platform)
        .column(social_account::Column::Status)
        .column_as(social_account::Column::Id.count(), "count")
        .filter(social_account::Column::TenantId.eq(caller.tenant_id))
        .group_by(social_account::Column::Platform)
        .group_by(social_account::Column::Status)
        .into_tuple()
        .all(db)
        .await?;
    let mut by_status: Vec<StatusCount> = rows
        .into_iter()
        .map(|(platform, status, count)| StatusCount {
            platform,
            status,
            count: u64::try_from(count).unwrap_or(0),
        })
        .collect();
    by_status.sort_by_key(|s| (s.platform, s.status.as_str()));
    let live = social_account::Entity::find()
        .select_only()
        .column(social_account::Column::Id)
        .filter(social_account::Column::TenantId.eq(caller.tenant_id))
        .filter(social_account::Column::Status.is_in(crate::tokens::sweep::refreshable_statuses()))
        .into_query();
    let expiring_next_24h = oauth_token::Entity::find()
        .filter(oauth_token::Column::TenantId.eq(caller.tenant_id))
        .filter(oauth_token::Column::AccountId.in_subquery(live))
        .filter(oauth_token::Column::ExpiresAt.gt(now))
        .filter(oauth_token::Column::ExpiresAt.lte(now + chrono::Duration::hours(24)))
        .count(db)
        .await?;
    let failures_last_24h = refresh_attempt::Entity::find()
        .filter(refresh_attempt::Column::TenantId.eq(caller.tenant_id))
        .filter(refresh_attempt::Column::StartedAt.gte(now - chrono::Duration::hours(24)))
        .filter(refresh_attempt::Column::Outcome.is_in([
            Outcome::FailedTransient.as_str(),
            Outcome::FailedPermanent.as_str(),
        ]))
        .count(db)
        .await?;
    Ok(Summary {
        by_status,
        expiring_next_24h,
        failures_last_24h,
    })
}
