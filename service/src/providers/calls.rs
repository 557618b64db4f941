//! The provider call log: written in batches off the call path, read as per-operation
//! statistics (the maintenance guide's "API request logging").

use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::provider_call;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, FromQueryResult, QueryFilter,
    QueryOrder, QuerySelect, Set, sea_query::Expr,
};
use tokio::{sync::mpsc, task::JoinHandle};

use crate::{
    domain::Platform,
    error::{ServiceError, ServiceResult},
    providers::ProviderCall,
};

/// Largest batch written in one statement.
const BATCH: usize = 500;
/// A partial batch is written at least this often.
const FLUSH_EVERY: Duration = Duration::from_millis(500);

/// Drains `calls` into `provider_calls` in batches until every sender is gone. Errors are
/// logged and the batch dropped: the log must never hold up provider calls.
pub fn spawn_writer(
    db: DatabaseConnection,
    mut calls: mpsc::Receiver<ProviderCall>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            let first = calls.recv().await;
            let Some(first) = first else { break };
            batch.push(first);
            let deadline = tokio::time::sleep(FLUSH_EVERY);
            tokio::pin!(deadline);
            while batch.len() < BATCH {
                tokio::select! {
                    next = calls.recv() => match next {
                        Some(call) => batch.push(call),
                        None => break,
                    },
                    () = &mut deadline => break,
                }
            }
            write(&db, std::mem::take(&mut batch)).await;
        }
    })
}

async fn write(db: &DatabaseConnection, batch: Vec<ProviderCall>) {
    let count = batch.len();
    for call in &batch {
        let outcome = if call.error_code.is_some() {
            "error"
        } else {
            "ok"
        };
        metrics::counter!(
            "tokenwarden_provider_calls_total",
            "platform" => call.platform.as_str(),
            "operation" => call.operation,
            "outcome" => outcome
        )
        .increment(1);
        metrics::histogram!(
            "tokenwarden_provider_call_seconds",
            "platform" => call.platform.as_str(),
            "operation" => call.operation
        )
        .record(f64::from(call.latency_ms) / 1000.0);
    }
    let rows = batch.into_iter().map(|call| provider_call::ActiveModel {
        platform: Set(call.platform),
        operation: Set(call.operation.to_owned()),
        http_status: Set(call.http_status.map(i32::from)),
        error_code: Set(call.error_code),
        latency_ms: Set(i32::try_from(call.latency_ms).unwrap_or(i32::MAX)),
        occurred_at: Set(call.at),
        ..Default::default()
    });
    if let Err(err) = provider_call::Entity::insert_many(rows).exec(db).await {
        tracing::warn!(error = %err, count, "could not write provider call records");
    }
}

/// Request counts, error rate and latency percentiles of one platform operation.
#[derive(Clone, Debug, PartialEq)]
pub struct OperationStats {
    pub platform: Platform,
    pub operation: String,
    pub requests: u64,
    pub errors: u64,
    pub error_rate: f64,
    pub p50_latency_ms: u32,
    pub p95_latency_ms: u32,
}

/// The longest `providerStats` window: beyond it there is nothing left to aggregate (call
/// records are pruned after the retention period, 30 days by default).
pub(crate) const MAX_WINDOW: Duration = Duration::from_secs(366 * 24 * 3600);

/// Longest window text accepted (`"366d"`, `"1h 30m"`...).
const MAX_WINDOW_TEXT: usize = 32;

/// Parses a window such as `15m`, `1h` or `7d`: positive, at most [`MAX_WINDOW`]. Never
/// panics or overflows, whatever the input (fuzzed in tests/api/fuzz.rs).
pub(crate) fn parse_window(text: &str) -> ServiceResult<Duration> {
    let invalid = || {
        let shown: String = text.chars().take(MAX_WINDOW_TEXT).collect();
        ServiceError::bad_input(format!(
            "window {shown:?} is not a duration like 15m, 1h or 7d (at most 366d)"
        ))
    };
    if text.len() > MAX_WINDOW_TEXT {
        return Err(invalid());
    }
    let window = humantime::parse_duration(text.trim()).map_err(|_| invalid())?;
    if window.is_zero() || window > MAX_WINDOW {
        return Err(invalid());
    }
    Ok(window)
}

/// One group's counts, aggregated by the database.
#[derive(Debug, FromQueryResult)]
struct GroupCounts {
    platform: Platform,
    operation: String,
    requests: i64,
    errors: i64,
}

/// Most (platform, operation) groups reported; the code knows about ten.
const MAX_GROUPS: u64 = 100;

/// Statistics of the calls made since `now - window`, per platform and operation. The
/// database aggregates (one grouped count, then one indexed row per percentile and
/// group): memory stays bounded whatever the window holds.
pub async fn stats(
    db: &impl ConnectionTrait,
    window: Duration,
) -> ServiceResult<Vec<OperationStats>> {
    let window = chrono::Duration::from_std(window.min(MAX_WINDOW))
        .unwrap_or_else(|_| chrono::Duration::days(366));
    let now = Utc::now();
    let since: DateTime<Utc> = now.checked_sub_signed(window).unwrap_or(now);
    let groups = provider_call::Entity::find()
        .select_only()
        .column(provider_call::Column::Platform)
        .column(provider_call::Column::Operation)
        .column_as(provider_call::Column::Id.count(), "requests")
        .column_as(
            Expr::cust("SUM(CASE WHEN error_code IS NULL THEN 0 ELSE 1 END)"),
            "errors",
        )
        .filter(provider_call::Column::OccurredAt.gte(since))
        .group_by(provider_call::Column::Platform)
        .group_by(provider_call::Column::Operation)
        .order_by_asc(provider_call::Column::Platform)
        .order_by_asc(provider_call::Column::Operation)
        .limit(MAX_GROUPS)
        .into_model::<GroupCounts>()
        .all(db)
        .await?;
    let mut out = Vec::with_capacity(groups.len());
    for group in groups {
        let platform = group.platform;
        let requests = u64::try_from(group.requests).unwrap_or(0);
        if requests == 0 {
            continue;
        }
        let errors = u64::try_from(group.errors).unwrap_or(0);
        let latency = |p: u64| {
            let rank = (p * requests).div_ceil(100).max(1);
            provider_call::Entity::find()
                .select_only()
                .column(provider_call::Column::LatencyMs)
                .filter(provider_call::Column::Platform.eq(platform))
                .filter(provider_call::Column::Operation.eq(group.operation.as_str()))
                .filter(provider_call::Column::OccurredAt.gte(since))
                .order_by_asc(provider_call::Column::LatencyMs)
                .offset(rank - 1)
                .limit(1)
                .into_tuple::<i32>()
                .one(db)
        };
        let p50 = latency(50).await?.unwrap_or(0);
        let p95 = latency(95).await?.unwrap_or(0);
        out.push(OperationStats {
            platform,
            operation: group.operation,
            requests,
            errors,
            error_rate: errors as f64 / requests as f64,
            p50_latency_ms: u32::try_from(p50).unwrap_or(0),
            p95_latency_ms: u32::try_from(p95).unwrap_or(0),
        });
    }
    Ok(out)
}

/// Deletes call records older than `before` (retention).
pub async fn prune(db: &impl ConnectionTrait, before: DateTime<Utc>) -> ServiceResult<u64> {
    Ok(provider_call::Entity::delete_many()
        .filter(provider_call::Column::OccurredAt.lt(before))
        .exec(db)
        .await?
        .rows_affected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_bounded() {
        assert_eq!(parse_window("15m").ok(), Some(Duration::from_secs(900)));
        assert_eq!(parse_window("366d").ok(), Some(MAX_WINDOW));
        for bad in [
            "300000y",
            "367d",
            "0s",
            "",
            "soon",
            "99999999999999999999999y",
        ] {
            assert!(
                matches!(parse_window(bad), Err(ServiceError::BadInput(_))),
                "{bad}"
            );
        }
        assert!(parse_window(&"1".repeat(10_000)).is_err());
    }
}
