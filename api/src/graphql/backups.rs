use async_graphql::{Context, SimpleObject};
use chrono::{DateTime, Utc};
use service::ops::backup::status;

use crate::{
    error::{ApiError, ApiResult},
    graphql::context::ContextExt,
};

/// The scheduled backups and the last one (docs/backups.md#scheduled-backups).
#[derive(SimpleObject)]
pub struct BackupHealth {
    /// Scheduled backups run in this deployment's embedded workers.
    pub scheduled: bool,
    /// When the last scheduled backup finished, whatever its outcome.
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// `daily` or `hourly`: the tier of the last attempt.
    pub last_kind: Option<String>,
    /// The file the last attempt wrote.
    pub last_file: Option<String>,
    pub last_size_bytes: Option<u64>,
    /// The last attempt restored into a scratch database and every ciphertext decrypted.
    pub last_verified: bool,
    /// Tokens in the last attempt, and how many of them decrypted.
    pub last_tokens: Option<u64>,
    pub last_tokens_decrypted: Option<u64>,
    /// Why the last attempt failed (never secrets).
    pub last_error: Option<String>,
    /// When the last backup that was written and verified finished.
    pub last_success_at: Option<DateTime<Utc>>,
    /// No backup was verified for longer than TOKENWARDEN_BACKUP_OVERDUE (BACKUP_OVERDUE).
    pub overdue: bool,
}

/// `systemHealth { backup }`.
pub(crate) async fn backup_health(ctx: &Context<'_>) -> ApiResult<BackupHealth> {
    let db = ctx.db()?;
    let settings = ctx.data::<jobs::JobSettings>().map_err(|_| {
        tracing::error!("job settings missing from the GraphQL context");
        ApiError::internal()
    })?;
    let stored = status::load(db).await?;
    let overdue = match &settings.backups {
        Some(backups) => stored.overdue(
            backups.overdue_after(),
            status::watch_since(db).await?,
            Utc::now(),
        ),
        None => false,
    };
    let last = stored.last_attempt.as_ref();
    Ok(BackupHealth {
        scheduled: settings.backups.is_some(),
        last_attempt_at: last.map(|r| r.finished_at),
        last_kind: last.map(|r| r.kind.clone()),
        last_file: last.and_then(|r| r.file.clone()),
        last_size_bytes: last.and_then(|r| r.size_bytes),
        last_verified: last.is_some_and(|r| r.verified),
        last_tokens: last.and_then(|r| r.tokens),
        last_tokens_decrypted: last.and_then(|r| r.tokens_decrypted),
        last_error: last.and_then(|r| r.error.clone()),
        last_success_at: stored.last_success.as_ref().map(|r| r.finished_at),
        overdue,
    })
}
