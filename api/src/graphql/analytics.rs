//! Analytics queries: refresh attempts per hour, failure reasons ranked, tokens expiring per
//! day, access-token reads per account and per reader. Bounded windows, SQL aggregates in
//! `service::tokens::analytics`; rankings are Relay connections (offset cursors: aggregates
//! have no row id), fixed-size time series are plain lists.

use async_graphql::{
    Context, Enum, ID, InputValueError, InputValueResult, Object, Scalar, ScalarType, SimpleObject,
    Value,
    connection::{self, Connection, CursorType, Edge, EmptyFields},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, NaiveDate, Utc};
use service::{
    pagination::Page,
    tokens::analytics::{self, OffsetArgs, ReadsQuery},
};

use crate::{
    error::{ApiError, ApiResult},
    graphql::{
        accounts::{self, Platform, SocialAccount},
        admin,
        context::ContextExt,
        ids,
        maintenance::RefreshOutcome,
    },
};

/// A UTC calendar day, `YYYY-MM-DD`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Date(pub NaiveDate);

#[Scalar(name = "Date")]
impl ScalarType for Date {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(s) => NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .map(Date)
                .map_err(|_| InputValueError::custom(format!("{s:?} is not a YYYY-MM-DD date"))),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.format("%Y-%m-%d").to_string())
    }
}

/// A window ending now.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "service::tokens::analytics::Window")]
pub enum AnalyticsWindow {
    Last24Hours,
    Last7Days,
    Last30Days,
}

/// What token reads are counted by.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "service::tokens::analytics::ReadsBy")]
pub enum TokenReadsBy {
    /// One count per account read.
    Account,
    /// One count per reader (API key or user).
    Reader,
}

/// Refresh attempts of one platform with one outcome in one hour.
#[derive(SimpleObject)]
pub struct RefreshAttemptBucket {
    /// The start of the hour (UTC).
    pub hour: DateTime<Utc>,
    pub platform: Platform,
    pub outcome: RefreshOutcome,
    pub count: u64,
}

/// How often one failure code ended refreshes of one platform.
#[derive(SimpleObject)]
pub struct FailureReason {
    pub platform: Platform,
    /// The platform's (or tokenwarden's) error code; `unknown` when none was recorded.
    pub code: String,
    /// `transient`, `grant_dead`, `config`, `not_refreshable_yet` or `invalid_input`.
    pub class: Option<String>,
    pub count: u64,
    pub last_seen_at: DateTime<Utc>,
}

/// Refreshable accounts whose access token expires on one UTC day.
#[derive(SimpleObject)]
pub struct ExpiryBucket {
    pub day: Date,
    pub platform: Platform,
    pub count: u64,
}

/// Access-token reads of one account, or by one reader, on one day or over the window.
#[derive(SimpleObject)]
pub struct TokenReadCount {
    /// The UTC day; null for totals over the window (`perDay: false`).
    pub day: Option<Date>,
    /// The account read (counts by ACCOUNT).
    pub account: Option<SocialAccount>,
    /// Who read (counts by READER), as in the audit log: `api_key:<id>` or `user:<email>`.
    pub reader: Option<String>,
    /// The reader's API key, when it is one.
    pub api_key_id: Option<ID>,
    /// That key's name, if the key still exists.
    pub api_key_name: Option<String>,
    pub reads: u64,
}

impl From<analytics::ReadCount> for TokenReadCount {
    fn from(r: analytics::ReadCount) -> Self {
        Self {
            day: r.day.map(Date),
            account: r.account.map(Into::into),
            reader: r.reader,
            api_key_id: r.api_key_id.map(|id| ids::encode(admin::KIND, id)),
            api_key_name: r.api_key_name,
            reads: r.reads,
        }
    }
}

/// A cursor over the rows of a ranking: its position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OffsetCursor(pub u64);

impl CursorType for OffsetCursor {
    type Error = String;

    fn decode_cursor(s: &str) -> Result<Self, Self::Error> {
        let invalid = || format!("{s:?} is not a valid cursor");
        let bytes = URL_SAFE_NO_PAD.decode(s).map_err(|_| invalid())?;
        let text = String::from_utf8(bytes).map_err(|_| invalid())?;
        text.strip_prefix("offset:")
            .and_then(|n| n.parse().ok())
            .map(OffsetCursor)
            .ok_or_else(invalid)
    }

    fn encode_cursor(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("offset:{}", self.0))
    }
}

/// A ranking page as a Relay connection (forwards only: `first` / `after`).
pub type RankConnection<N> = Connection<OffsetCursor, N, EmptyFields>;

async fn ranking<N, Fut>(
    after: Option<String>,
    first: Option<i32>,
    fetch: impl FnOnce(OffsetArgs) -> Fut,
) -> async_graphql::Result<RankConnection<N>>
where
    N: async_graphql::OutputType,
    Fut: std::future::Future<Output = ApiResult<Page<N>>>,
{
    connection::query(
        after,
        None,
        first,
        None,
        |after: Option<OffsetCursor>, _before: Option<OffsetCursor>, first, _last| async move {
            let offset = after.map_or(0, |c| c.0 + 1);
            let page = fetch(OffsetArgs {
                offset,
                first: first.map(|n| n as u64),
            })
            .await?;
            let mut connection = Connection::new(page.has_previous, page.has_next);
            connection.edges.extend(
                page.items
                    .into_iter()
                    .zip(offset..)
                    .map(|(node, at)| Edge::new(OffsetCursor(at), node)),
            );
            Ok::<_, async_graphql::Error>(connection)
        },
    )
    .await
}

fn days_arg(days: i32) -> ApiResult<u32> {
    u32::try_from(days)
        .ok()
        .filter(|d| (1..=analytics::MAX_DAYS).contains(d))
        .ok_or_else(|| ApiError::bad_input(format!("days must be 1 to {}", analytics::MAX_DAYS)))
}

/// Analytics queries (any role; the caller's tenant only).
#[derive(Default)]
pub struct AnalyticsQuery;

#[Object]
impl AnalyticsQuery {
    /// Refresh attempts per hour, platform and outcome over `window`, oldest hour first;
    /// hours without attempts are left out.
    async fn refresh_attempts_per_hour(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "AnalyticsWindow::Last24Hours")] window: AnalyticsWindow,
    ) -> ApiResult<Vec<RefreshAttemptBucket>> {
        let rows =
            analytics::attempts_per_hour(ctx.db()?, ctx.caller()?, window.into(), Utc::now())
                .await?;
        Ok(rows
            .into_iter()
            .map(|b| RefreshAttemptBucket {
                hour: b.hour,
                platform: b.platform.into(),
                outcome: b.outcome.into(),
                count: b.count,
            })
            .collect())
    }

    /// Why refreshes failed over `window`: one row per platform and error code, most
    /// frequent first.
    #[graphql(
        complexity = "crate::graphql::limits::connection_cost(first, None, child_complexity)"
    )]
    async fn failure_reasons(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "AnalyticsWindow::Last7Days")] window: AnalyticsWindow,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<RankConnection<FailureReason>> {
        let db = ctx.db()?;
        let caller = ctx.caller()?;
        ranking(after, first, |page| async move {
            let page =
                analytics::failure_reasons(db, caller, window.into(), Utc::now(), page).await?;
            Ok(page.map(|r| FailureReason {
                platform: r.platform.into(),
                code: r.code,
                class: r.class,
                count: r.count,
                last_seen_at: r.last_seen_at,
            }))
        })
        .await
    }

    /// Refreshable accounts whose access token expires on each of the next `days` UTC days
    /// (today first, 1 to 31); days without expiries are left out.
    async fn expiring_tokens(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 7)] days: i32,
    ) -> ApiResult<Vec<ExpiryBucket>> {
        let days = days_arg(days)?;
        let rows = analytics::expiring_per_day(ctx.db()?, ctx.caller()?, days, Utc::now()).await?;
        Ok(rows
            .into_iter()
            .map(|b| ExpiryBucket {
                day: Date(b.day),
                platform: b.platform.into(),
                count: b.count,
            })
            .collect())
    }

    /// How often `accessToken` was read over the last `days` UTC days (today included, 1 to
    /// 31), per account or per reader; per day (newest first) or totals over the window
    /// (`perDay: false`); the most reads first. `accountId` narrows to one account.
    #[graphql(
        complexity = "crate::graphql::limits::connection_cost(first, None, child_complexity)"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn token_reads(
        &self,
        ctx: &Context<'_>,
        by: TokenReadsBy,
        #[graphql(default = 7)] days: i32,
        #[graphql(default = true)] per_day: bool,
        account_id: Option<ID>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<RankConnection<TokenReadCount>> {
        let query = ReadsQuery {
            by: by.into(),
            days: days_arg(days)?,
            per_day,
            account_id: account_id
                .map(|id| ids::decode(&id, accounts::KIND))
                .transpose()?,
        };
        let db = ctx.db()?;
        let caller = ctx.caller()?;
        ranking(after, first, |page| async move {
            let page = analytics::reads(db, caller, query, Utc::now(), page).await?;
            Ok(page.map(TokenReadCount::from))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_cursors_round_trip_and_refuse_garbage() {
        let c = OffsetCursor(41);
        assert_eq!(OffsetCursor::decode_cursor(&c.encode_cursor()), Ok(c));
        assert!(OffsetCursor::decode_cursor("bm9wZQ").is_err());
        assert!(OffsetCursor::decode_cursor("%%%").is_err());
    }

    #[test]
    fn days_are_bounded() {
        assert!(days_arg(0).is_err());
        assert!(days_arg(32).is_err());
        assert_eq!(days_arg(7).ok(), Some(7));
    }
}
