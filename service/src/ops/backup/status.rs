//! The outcome of the scheduled backups, stored where every process can read it
//! (`systemHealth`, `/metrics`), and the BACKUP_FAILED / BACKUP_OVERDUE events.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, TransactionSession, TransactionTrait};
use serde::{Deserialize, Serialize};

use crate::{
    error::{ServiceError, ServiceResult},
    events::{self, EventBus, EventKind},
    ops::settings,
    tokens::failures::FailureView,
};

/// The setting holding the last attempt.
const LAST_ATTEMPT: &str = "backup_last_attempt";
/// The setting holding the last backup that was written and verified.
const LAST_SUCCESS: &str = "backup_last_success";
/// When scheduled backups were first expected (the overdue clock before any backup).
const WATCH_SINCE: &str = "backup_watch_since";
/// The reference time BACKUP_OVERDUE was last raised for (once per reference).
const OVERDUE_RAISED: &str = "backup_overdue_raised";

/// One scheduled backup and its verification.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupRun {
    /// `daily` or `hourly`.
    pub kind: String,
    /// The file written (absent when the backup itself failed).
    pub file: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub size_bytes: Option<u64>,
    pub rows: Option<u64>,
    /// The backup restored into a scratch database and every ciphertext decrypted.
    pub verified: bool,
    pub tokens: Option<u64>,
    pub tokens_decrypted: Option<u64>,
    /// What went wrong (never secrets).
    pub error: Option<String>,
}

impl BackupRun {
    /// Written and verified.
    pub fn succeeded(&self) -> bool {
        self.verified && self.error.is_none()
    }
}

/// The last attempt and the last success.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackupStatus {
    pub last_attempt: Option<BackupRun>,
    pub last_success: Option<BackupRun>,
}

impl BackupStatus {
    /// No verified backup for longer than `overdue_after` (counted from `since` when there
    /// was never one).
    pub fn overdue(
        &self,
        overdue_after: Duration,
        since: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> bool {
        let reference = self.last_success.as_ref().map(|r| r.finished_at).or(since);
        reference.is_some_and(|at| {
            now.signed_duration_since(at).to_std().unwrap_or_default() > overdue_after
        })
    }
}

fn parse<T: for<'de> Deserialize<'de>>(json: Option<String>) -> Option<T> {
    json.and_then(|j| serde_json::from_str(&j).ok())
}

/// The stored status.
pub async fn load(db: &impl ConnectionTrait) -> ServiceResult<BackupStatus> {
    Ok(BackupStatus {
        last_attempt: parse(settings::get(db, LAST_ATTEMPT).await?),
        last_success: parse(settings::get(db, LAST_SUCCESS).await?),
    })
}

/// When the overdue clock started, if scheduled backups ever ran here.
pub async fn watch_since(db: &impl ConnectionTrait) -> ServiceResult<Option<DateTime<Utc>>> {
    Ok(settings::get(db, WATCH_SINCE)
        .await?
        .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
        .map(|t| t.with_timezone(&Utc)))
}

/// Records a run; a failed one raises BACKUP_FAILED (in the same transaction), published
/// after the commit.
pub async fn record<D>(db: &D, bus: &EventBus, run: &BackupRun) -> ServiceResult<()>
where
    D: ConnectionTrait + TransactionTrait,
{
    let json = serde_json::to_string(run)
        .map_err(|e| ServiceError::Internal(format!("backup status: {e}")))?;
    let txn = crate::db::begin(db).await?;
    settings::put(&txn, LAST_ATTEMPT, json.clone()).await?;
    let event = if run.succeeded() {
        settings::put(&txn, LAST_SUCCESS, json).await?;
        None
    } else {
        let view = FailureView {
            code: "BACKUP_FAILED",
            message: format!(
                "The {} backup{} failed: {}",
                run.kind,
                run.file
                    .as_deref()
                    .map(|f| format!(" {f}"))
                    .unwrap_or_default(),
                run.error.as_deref().unwrap_or("it did not verify")
            ),
            action: Some(
                "Check the log line `scheduled backup failed`, the backup directory's free space \
                 and the keys; run `tokenwarden backup verify` on the file."
                    .into(),
            ),
        };
        Some(events::record_global(&txn, EventKind::BackupFailed, None, Some(&view)).await?)
    };
    txn.commit().await?;
    if let Some(event) = event {
        bus.publish(event).await;
    }
    Ok(())
}

/// Raises BACKUP_OVERDUE once when no backup was verified for longer than `overdue_after`
/// (once per last success; again after the next success goes stale). Returns whether it
/// raised one now.
pub async fn check_overdue<D>(
    db: &D,
    bus: &EventBus,
    overdue_after: Duration,
) -> ServiceResult<bool>
where
    D: ConnectionTrait + TransactionTrait,
{
    let now = Utc::now();
    let since = match watch_since(db).await? {
        Some(since) => since,
        None => {
            settings::put(db, WATCH_SINCE, now.to_rfc3339()).await?;
            now
        }
    };
    let status = load(db).await?;
    if !status.overdue(overdue_after, Some(since), now) {
        return Ok(false);
    }
    let reference = status
        .last_success
        .as_ref()
        .map(|r| r.finished_at)
        .unwrap_or(since)
        .to_rfc3339();
    if settings::get(db, OVERDUE_RAISED).await?.as_deref() == Some(reference.as_str()) {
        return Ok(false);
    }
    let view = FailureView {
        code: "BACKUP_OVERDUE",
        message: match &status.last_success {
            Some(run) => format!(
                "No backup was verified since {} (more than {}).",
                run.finished_at.to_rfc3339(),
                humantime::format_duration(overdue_after)
            ),
            None => format!(
                "No backup was verified in the {} since scheduled backups started.",
                humantime::format_duration(overdue_after)
            ),
        },
        action: Some(
            "Check that the workers run and the log for `scheduled backup failed`; make one with \
             `tokenwarden backup create`."
                .into(),
        ),
    };
    let txn = crate::db::begin(db).await?;
    let event = events::record_global(&txn, EventKind::BackupOverdue, None, Some(&view)).await?;
    settings::put(&txn, OVERDUE_RAISED, reference).await?;
    txn.commit().await?;
    tracing::warn!(code = "BACKUP_OVERDUE", "{}", view.message);
    bus.publish(event).await;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(finished_at: DateTime<Utc>, verified: bool) -> BackupRun {
        BackupRun {
            kind: "hourly".into(),
            file: Some("f.twb".into()),
            started_at: finished_at,
            finished_at,
            size_bytes: Some(10),
            rows: Some(1),
            verified,
            tokens: Some(0),
            tokens_decrypted: Some(0),
            error: None,
        }
    }

    #[test]
    fn overdue_counts_from_the_last_success_or_the_start() {
        let now = Utc::now();
        let hour = Duration::from_secs(3600);
        let ago = |m: i64| now - chrono::Duration::minutes(m);
        let never = BackupStatus::default();
        assert!(!never.overdue(hour, None, now), "no clock, no alarm");
        assert!(!never.overdue(hour, Some(ago(30)), now));
        assert!(never.overdue(hour, Some(ago(61)), now));
        let recent = BackupStatus {
            last_success: Some(run(ago(10), true)),
            last_attempt: Some(run(ago(1), false)),
        };
        assert!(!recent.overdue(hour, Some(ago(600)), now));
        let stale = BackupStatus {
            last_success: Some(run(ago(90), true)),
            last_attempt: None,
        };
        assert!(stale.overdue(hour, Some(ago(600)), now));
    }
}
