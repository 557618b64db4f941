//! Token analytics for the dashboard and integrators (the maintenance guide's "analytics of
//! token usage and refresh patterns"): refresh attempts per hour by platform and outcome,
//! failure reasons ranked, tokens expiring per day, and access-token reads per account and
//! per reader per day.
//!
//! Every query is one SQL aggregate over a bounded window (at most [`MAX_DAYS`]), filtered by
//! the caller's tenant and read through an index on `(tenant_id, time)`. Token reads are
//! counted as they happen with one upsert of a daily counter row ([`record_read`]), never a
//! row per read. May call: identity (caller), nothing else.

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, Utc};
use entity::{api_key, oauth_token, refresh_attempt, social_account, token_read};
use sea_orm::{
    ConnectionTrait, DbBackend, EntityTrait, QueryResult,
    sea_query::{Alias, Expr, ExprTrait, OnConflict, Order, Query},
};

use crate::{
    domain::Platform,
    error::{ServiceError, ServiceResult},
    identity::caller::{Caller, Principal},
    pagination::{MAX_PAGE_SIZE, Page},
    tokens::{attempts::Outcome, sweep::refreshable_statuses},
};

/// The longest window any analytics query reads.
pub const MAX_DAYS: u32 = 31;

/// A window ending now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Window {
    Last24Hours,
    Last7Days,
    Last30Days,
}

impl Window {
    /// How far back the window reaches.
    pub fn duration(self) -> Duration {
        match self {
            Window::Last24Hours => Duration::hours(24),
            Window::Last7Days => Duration::days(7),
            Window::Last30Days => Duration::days(30),
        }
    }

    /// The UTC days the window touches, today included.
    pub fn days(self) -> u32 {
        match self {
            Window::Last24Hours => 2,
            Window::Last7Days => 8,
            Window::Last30Days => 31,
        }
    }
}

/// Refresh attempts of one platform with one outcome in one hour.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttemptBucket {
    /// The start of the hour (UTC).
    pub hour: DateTime<Utc>,
    pub platform: Platform,
    pub outcome: Outcome,
    pub count: u64,
}

/// How often one failure code ended refreshes of one platform.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailureReason {
    pub platform: Platform,
    /// The provider's (or tokenwarden's) error code, `unknown` when none was recorded.
    pub code: String,
    /// The error class (`transient`, `grant_dead`, ...), when recorded.
    pub class: Option<String>,
    pub count: u64,
    pub last_seen_at: DateTime<Utc>,
}

/// Refreshable accounts whose access token expires on one UTC day.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpiryBucket {
    pub day: NaiveDate,
    pub platform: Platform,
    pub count: u64,
}

/// Access-token reads of one account (or by one reader), on one day or over the window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadCount {
    /// The UTC day; `None` when counted over the whole window.
    pub day: Option<NaiveDate>,
    /// The account (per-account counts) or `None` (per-reader counts).
    pub account_id: Option<i64>,
    /// The reader (per-reader counts): `api_key:<id>` or `user:<email>`.
    pub reader: Option<String>,
    /// The reader's API key, when it is one.
    pub api_key_id: Option<i64>,
    /// That key's name (if it still exists).
    pub api_key_name: Option<String>,
    /// The account (per-account counts), loaded with the page.
    pub account: Option<social_account::Model>,
    pub reads: u64,
}

/// What token reads are counted by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadsBy {
    Account,
    Reader,
}

/// Forward offset pagination of a ranking (aggregates have no stable row id).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OffsetArgs {
    /// Rows to skip.
    pub offset: u64,
    pub first: Option<u64>,
}

impl OffsetArgs {
    fn limit(self) -> ServiceResult<u64> {
        let size = self.first.unwrap_or(crate::pagination::DEFAULT_PAGE_SIZE);
        if size > MAX_PAGE_SIZE {
            return Err(ServiceError::bad_input(format!(
                "page size {size} is too large: at most {MAX_PAGE_SIZE}"
            )));
        }
        Ok(size)
    }
}

/// The start of `t`'s UTC day.
fn day_start(day: NaiveDate) -> DateTime<Utc> {
    day.and_time(NaiveTime::MIN).and_utc()
}

/// `column` truncated to its UTC hour, as RFC 3339 text, in the backend's dialect.
fn hour_of(backend: DbBackend, column: &str) -> String {
    match backend {
        DbBackend::Postgres => {
            format!("to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:00:00\"Z\"')")
        }
        _ => format!("strftime('%Y-%m-%dT%H:00:00Z', {column})"),
    }
}

/// `column`'s UTC day as `YYYY-MM-DD`, in the backend's dialect.
fn day_of(backend: DbBackend, column: &str) -> String {
    match backend {
        DbBackend::Postgres => format!("to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD')"),
        _ => format!("strftime('%Y-%m-%d', {column})"),
    }
}

fn count_of(row: &QueryResult, column: &str) -> ServiceResult<u64> {
    let n: i64 = row.try_get("", column)?;
    Ok(u64::try_from(n).unwrap_or(0))
}

fn parse_day(text: &str) -> ServiceResult<NaiveDate> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| ServiceError::Internal(format!("bad day bucket {text:?}")))
}

/// Refresh attempts per hour, platform and outcome over `window` (oldest hour first; empty
/// hours are left out). At most 31 × 24 hours × 2 platforms × 4 outcomes rows.
pub async fn attempts_per_hour(
    db: &impl ConnectionTrait,
    caller: &Caller,
    window: Window,
    now: DateTime<Utc>,
) -> ServiceResult<Vec<AttemptBucket>> {
    let backend = db.get_database_backend();
    let hour = hour_of(backend, "refresh_attempts.started_at");
    let mut select = Query::select();
    select
        .expr_as(Expr::cust(hour.clone()), Alias::new("bucket"))
        .column((social_account::Entity, social_account::Column::Platform))
        .column((refresh_attempt::Entity, refresh_attempt::Column::Outcome))
        .expr_as(Expr::cust("COUNT(*)"), Alias::new("n"))
        .from(refresh_attempt::Entity)
        .inner_join(
            social_account::Entity,
            Expr::col((social_account::Entity, social_account::Column::Id))
                .equals((refresh_attempt::Entity, refresh_attempt::Column::AccountId)),
        )
        .and_where(
            Expr::col((refresh_attempt::Entity, refresh_attempt::Column::TenantId))
                .eq(caller.tenant_id),
        )
        .and_where(
            Expr::col((refresh_attempt::Entity, refresh_attempt::Column::StartedAt))
                .gte(now - window.duration()),
        )
        .add_group_by([
            Expr::cust(hour.clone()),
            Expr::col((social_account::Entity, social_account::Column::Platform)),
            Expr::col((refresh_attempt::Entity, refresh_attempt::Column::Outcome)),
        ])
        .order_by_expr(Expr::cust(hour), Order::Asc);
    let mut out = Vec::new();
    for row in db.query_all(&select).await? {
        let bucket: String = row.try_get("", "bucket")?;
        let platform: Platform = row.try_get("", "platform")?;
        let outcome: Outcome = row.try_get("", "outcome")?;
        let hour = DateTime::parse_from_rfc3339(&bucket)
            .map_err(|_| ServiceError::Internal(format!("bad hour bucket {bucket:?}")))?
            .with_timezone(&Utc);
        out.push(AttemptBucket {
            hour,
            platform,
            outcome,
            count: count_of(&row, "n")?,
        });
    }
    out.sort_by_key(|b| (b.hour, b.platform, b.outcome.as_str()));
    Ok(out)
}

/// Failed refreshes over `window` grouped by platform and error code, most frequent first.
pub async fn failure_reasons(
    db: &impl ConnectionTrait,
    caller: &Caller,
    window: Window,
    now: DateTime<Utc>,
    page: OffsetArgs,
) -> ServiceResult<Page<FailureReason>> {
    let limit = page.limit()?;
    let code = "COALESCE(refresh_attempts.error_code, 'unknown')";
    let mut select = Query::select();
    select
        .column((social_account::Entity, social_account::Column::Platform))
        .expr_as(Expr::cust(code), Alias::new("code"))
        .expr_as(
            Expr::cust("MAX(refresh_attempts.error_class)"),
            Alias::new("class"),
        )
        .expr_as(Expr::cust("COUNT(*)"), Alias::new("n"))
        .expr_as(
            Expr::cust("MAX(refresh_attempts.started_at)"),
            Alias::new("last_seen"),
        )
        .from(refresh_attempt::Entity)
        .inner_join(
            social_account::Entity,
            Expr::col((social_account::Entity, social_account::Column::Id))
                .equals((refresh_attempt::Entity, refresh_attempt::Column::AccountId)),
        )
        .and_where(
            Expr::col((refresh_attempt::Entity, refresh_attempt::Column::TenantId))
                .eq(caller.tenant_id),
        )
        .and_where(
            Expr::col((refresh_attempt::Entity, refresh_attempt::Column::StartedAt))
                .gte(now - window.duration()),
        )
        .and_where(
            Expr::col((refresh_attempt::Entity, refresh_attempt::Column::Outcome))
                .is_in([Outcome::FailedTransient, Outcome::FailedPermanent]),
        )
        .add_group_by([
            Expr::col((social_account::Entity, social_account::Column::Platform)),
            Expr::cust(code),
        ])
        .order_by_expr(Expr::cust("COUNT(*)"), Order::Desc)
        .order_by_expr(Expr::cust(code), Order::Asc)
        .order_by(
            (social_account::Entity, social_account::Column::Platform),
            Order::Asc,
        )
        .limit(limit + 1)
        .offset(page.offset);
    let rows = db.query_all(&select).await?;
    let mut items = Vec::with_capacity(rows.len());
    for row in &rows {
        let platform: Platform = row.try_get("", "platform")?;
        let last_seen_at: DateTime<Utc> = row.try_get("", "last_seen")?;
        items.push(FailureReason {
            platform,
            code: row.try_get("", "code")?,
            class: row.try_get("", "class")?,
            count: count_of(row, "n")?,
            last_seen_at,
        });
    }
    Ok(offset_page(items, page.offset, limit))
}

fn offset_page<T>(mut items: Vec<T>, offset: u64, limit: u64) -> Page<T> {
    let has_next = items.len() as u64 > limit;
    items.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    Page {
        items,
        has_previous: offset > 0,
        has_next,
    }
}

/// Refreshable accounts whose access token expires on each of the next `days` UTC days
/// (today first; tokens already expired are not counted). Empty days are left out.
pub async fn expiring_per_day(
    db: &impl ConnectionTrait,
    caller: &Caller,
    days: u32,
    now: DateTime<Utc>,
) -> ServiceResult<Vec<ExpiryBucket>> {
    if days == 0 || days > MAX_DAYS {
        return Err(ServiceError::bad_input(format!(
            "days must be 1 to {MAX_DAYS}"
        )));
    }
    let backend = db.get_database_backend();
    let day = day_of(backend, "oauth_tokens.expires_at");
    let end = day_start(now.date_naive()) + Duration::days(i64::from(days));
    let mut select = Query::select();
    select
        .expr_as(Expr::cust(day.clone()), Alias::new("bucket"))
        .column((social_account::Entity, social_account::Column::Platform))
        .expr_as(Expr::cust("COUNT(*)"), Alias::new("n"))
        .from(oauth_token::Entity)
        .inner_join(
            social_account::Entity,
            Expr::col((social_account::Entity, social_account::Column::Id))
                .equals((oauth_token::Entity, oauth_token::Column::AccountId)),
        )
        .and_where(
            Expr::col((oauth_token::Entity, oauth_token::Column::TenantId)).eq(caller.tenant_id),
        )
        .and_where(Expr::col((oauth_token::Entity, oauth_token::Column::ExpiresAt)).gt(now))
        .and_where(Expr::col((oauth_token::Entity, oauth_token::Column::ExpiresAt)).lt(end))
        .and_where(
            Expr::col((social_account::Entity, social_account::Column::Status))
                .is_in(refreshable_statuses()),
        )
        .add_group_by([
            Expr::cust(day.clone()),
            Expr::col((social_account::Entity, social_account::Column::Platform)),
        ])
        .order_by_expr(Expr::cust(day), Order::Asc);
    let mut out = Vec::new();
    for row in db.query_all(&select).await? {
        let bucket: String = row.try_get("", "bucket")?;
        let platform: Platform = row.try_get("", "platform")?;
        out.push(ExpiryBucket {
            day: parse_day(&bucket)?,
            platform,
            count: count_of(&row, "n")?,
        });
    }
    out.sort_by_key(|b| (b.day, b.platform));
    Ok(out)
}

/// Counts one access-token read of `account_id` by the caller: one upsert of today's counter
/// row for this account and reader.
pub(crate) async fn record_read(
    db: &impl ConnectionTrait,
    caller: &Caller,
    account_id: i64,
    now: DateTime<Utc>,
) -> ServiceResult<()> {
    let api_key_id = match caller.principal {
        Principal::ApiKey { id } => Some(id),
        Principal::User { .. } => None,
    };
    let row = token_read::ActiveModel {
        tenant_id: sea_orm::Set(caller.tenant_id),
        account_id: sea_orm::Set(account_id),
        reader: sea_orm::Set(caller.actor_name()),
        api_key_id: sea_orm::Set(api_key_id),
        day: sea_orm::Set(now.date_naive()),
        reads: sea_orm::Set(1),
        last_read_at: sea_orm::Set(now),
        ..Default::default()
    };
    token_read::Entity::insert(row)
        .on_conflict(
            OnConflict::columns([
                token_read::Column::AccountId,
                token_read::Column::Reader,
                token_read::Column::Day,
            ])
            .value(
                token_read::Column::Reads,
                Expr::col((token_read::Entity, token_read::Column::Reads)).add(1),
            )
            .update_column(token_read::Column::LastReadAt)
            .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// Which token reads to count, and how.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadsQuery {
    pub by: ReadsBy,
    /// The last `days` UTC days, today included (1 to [`MAX_DAYS`]).
    pub days: u32,
    /// One row per day (newest day first), or totals over the window.
    pub per_day: bool,
    /// Only this account's reads.
    pub account_id: Option<i64>,
}

/// Access-token reads per account or per reader, per day or over the window; the most
/// reads first (within a day).
pub async fn reads(
    db: &impl ConnectionTrait,
    caller: &Caller,
    query: ReadsQuery,
    now: DateTime<Utc>,
    page: OffsetArgs,
) -> ServiceResult<Page<ReadCount>> {
    let ReadsQuery {
        by,
        days,
        per_day,
        account_id,
    } = query;
    if days == 0 || days > MAX_DAYS {
        return Err(ServiceError::bad_input(format!(
            "days must be 1 to {MAX_DAYS}"
        )));
    }
    let limit = page.limit()?;
    let since = now.date_naive() - Duration::days(i64::from(days) - 1);
    let total = "CAST(SUM(token_reads.reads) AS BIGINT)";
    let mut select = Query::select();
    select
        .expr_as(Expr::cust(total), Alias::new("n"))
        .from(token_read::Entity)
        .and_where(
            Expr::col((token_read::Entity, token_read::Column::TenantId)).eq(caller.tenant_id),
        )
        .and_where(Expr::col((token_read::Entity, token_read::Column::Day)).gte(since));
    if let Some(account) = account_id {
        select
            .and_where(Expr::col((token_read::Entity, token_read::Column::AccountId)).eq(account));
    }
    if per_day {
        select
            .column((token_read::Entity, token_read::Column::Day))
            .add_group_by([Expr::col((token_read::Entity, token_read::Column::Day))])
            .order_by((token_read::Entity, token_read::Column::Day), Order::Desc);
    }
    select.order_by_expr(Expr::cust(total), Order::Desc);
    match by {
        ReadsBy::Account => {
            select
                .column((token_read::Entity, token_read::Column::AccountId))
                .add_group_by([Expr::col((
                    token_read::Entity,
                    token_read::Column::AccountId,
                ))])
                .order_by(
                    (token_read::Entity, token_read::Column::AccountId),
                    Order::Asc,
                );
        }
        ReadsBy::Reader => {
            select
                .column((token_read::Entity, token_read::Column::Reader))
                .expr_as(
                    Expr::cust("MAX(token_reads.api_key_id)"),
                    Alias::new("api_key_id"),
                )
                .add_group_by([Expr::col((token_read::Entity, token_read::Column::Reader))])
                .order_by((token_read::Entity, token_read::Column::Reader), Order::Asc);
        }
    }
    select.limit(limit + 1).offset(page.offset);
    let rows = db.query_all(&select).await?;
    let mut items = Vec::with_capacity(rows.len());
    for row in &rows {
        items.push(read_count(row, by, per_day)?);
    }
    let mut page = offset_page(items, page.offset, limit);
    attach_names(db, caller, &mut page.items).await?;
    Ok(page)
}

/// Loads the accounts and API key names of one page (at most a page of ids, one query each).
async fn attach_names(
    db: &impl ConnectionTrait,
    caller: &Caller,
    items: &mut [ReadCount],
) -> ServiceResult<()> {
    use sea_orm::{ColumnTrait, QueryFilter};
    let account_ids: Vec<i64> = items.iter().filter_map(|r| r.account_id).collect();
    if !account_ids.is_empty() {
        let accounts = social_account::Entity::find()
            .filter(social_account::Column::TenantId.eq(caller.tenant_id))
            .filter(social_account::Column::Id.is_in(account_ids))
            .all(db)
            .await?;
        for item in items.iter_mut() {
            item.account = accounts
                .iter()
                .find(|a| Some(a.id) == item.account_id)
                .cloned();
        }
    }
    let key_ids: Vec<i64> = items.iter().filter_map(|r| r.api_key_id).collect();
    if !key_ids.is_empty() {
        let keys = api_key::Entity::find()
            .filter(api_key::Column::TenantId.eq(caller.tenant_id))
            .filter(api_key::Column::Id.is_in(key_ids))
            .all(db)
            .await?;
        for item in items.iter_mut() {
            item.api_key_name = keys
                .iter()
                .find(|k| Some(k.id) == item.api_key_id)
                .map(|k| k.name.clone());
        }
    }
    Ok(())
}

fn read_count(row: &QueryResult, by: ReadsBy, per_day: bool) -> ServiceResult<ReadCount> {
    let day = if per_day {
        Some(row.try_get::<NaiveDate>("", "day")?)
    } else {
        None
    };
    let (account_id, reader, api_key_id) = match by {
        ReadsBy::Account => (Some(row.try_get::<i64>("", "account_id")?), None, None),
        ReadsBy::Reader => (
            None,
            Some(row.try_get::<String>("", "reader")?),
            row.try_get::<Option<i64>>("", "api_key_id")?,
        ),
    };
    Ok(ReadCount {
        day,
        account_id,
        reader,
        api_key_id,
        api_key_name: None,
        account: None,
        reads: count_of(row, "n")?,
    })
}

/// Deletes token-read counters of days before `before` (the prune job).
pub async fn prune(db: &impl ConnectionTrait, before: DateTime<Utc>) -> ServiceResult<u64> {
    use sea_orm::{ColumnTrait, QueryFilter};
    Ok(token_read::Entity::delete_many()
        .filter(token_read::Column::Day.lt(before.date_naive()))
        .exec(db)
        .await?
        .rows_affected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_bounded() {
        for w in [Window::Last24Hours, Window::Last7Days, Window::Last30Days] {
            assert!(w.days() <= MAX_DAYS);
            assert!(w.duration() <= Duration::days(i64::from(w.days())));
        }
    }

    #[test]
    fn buckets_are_utc_text_in_both_dialects() {
        assert!(hour_of(DbBackend::Postgres, "t").contains("AT TIME ZONE 'UTC'"));
        assert!(day_of(DbBackend::Postgres, "t").contains("AT TIME ZONE 'UTC'"));
        assert_eq!(
            hour_of(DbBackend::Sqlite, "t"),
            "strftime('%Y-%m-%dT%H:00:00Z', t)"
        );
    }

    #[test]
    fn offset_pages_know_their_neighbours() {
        let page = offset_page(vec![1, 2, 3], 0, 2);
        assert_eq!(page.items, vec![1, 2]);
        assert!(page.has_next && !page.has_previous);
        let page = offset_page(vec![3], 2, 2);
        assert!(!page.has_next && page.has_previous);
    }
}
