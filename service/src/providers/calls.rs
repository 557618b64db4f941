//! The provider call log: written in batches off the call path, read as per-operation
//! statistics (the maintenance guide's "API request logging").

use std::{collections::BTreeMap, time::Duration};

use chrono::{DateTime, Utc};
use entity::provider_call;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, Set,
};
use tokio::{sync::mpsc, task::JoinHandle};

use crate::{domain::Platform, error::ServiceResult, providers::ProviderCall};

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
        platform: Set(call.platform.as_str().to_owned()),
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

/// Statistics of the calls made since `now - window`, per platform and operation.
pub async fn stats(
    db: &impl ConnectionTrait,
    window: Duration,
) -> ServiceResult<Vec<OperationStats>> {
    let since: DateTime<Utc> = Utc::now()
        - chrono::Duration::from_std(window).unwrap_or_else(|_| chrono::Duration::days(365));
    let rows = provider_call::Entity::find()
        .filter(provider_call::Column::OccurredAt.gte(since))
        .order_by_asc(provider_call::Column::Id)
        .all(db)
        .await?;
    let mut groups: BTreeMap<(String, String), Vec<&provider_call::Model>> = BTreeMap::new();
    for row in &rows {
        groups
            .entry((row.platform.clone(), row.operation.clone()))
            .or_default()
            .push(row);
    }
    let mut out = Vec::new();
    for ((platform, operation), calls) in groups {
        let Ok(platform) = platform.parse::<Platform>() else {
            continue;
        };
        let mut latencies: Vec<u32> = calls
            .iter()
            .map(|c| u32::try_from(c.latency_ms).unwrap_or(0))
            .collect();
        latencies.sort_unstable();
        let errors = calls.iter().filter(|c| c.error_code.is_some()).count() as u64;
        let requests = calls.len() as u64;
        out.push(OperationStats {
            platform,
            operation,
            requests,
            errors,
            error_rate: errors as f64 / requests as f64,
            p50_latency_ms: percentile(&latencies, 50),
            p95_latency_ms: percentile(&latencies, 95),
        });
    }
    Ok(out)
}

/// Nearest-rank percentile of sorted values (0 for none).
fn percentile(sorted: &[u32], p: usize) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted[rank.min(sorted.len()) - 1]
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
    fn nearest_rank_percentiles() {
        let values: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&values, 50), 50);
        assert_eq!(percentile(&values, 95), 95);
        assert_eq!(percentile(&[7], 95), 7);
        assert_eq!(percentile(&[], 50), 0);
        assert_eq!(percentile(&[1, 2, 3], 50), 2);
    }
}
