//! Scheduled backups (embedded mode): a daily and an hourly tier, each backup verified right
//! after it is written, old files of each tier removed beyond its retention, the outcome
//! stored for `systemHealth` and `/metrics`, BACKUP_FAILED on a failure. The overdue check
//! (BACKUP_OVERDUE) runs with the health check.

use std::{path::PathBuf, str::FromStr, sync::Arc, time::Duration};

use apalis::prelude::*;
use apalis_cron::Tick;
use chrono::Utc;
use service::ops::backup::{self, status::BackupRun};

use crate::worker::JobContext;

/// Where and when scheduled backups run.
#[derive(Clone, Debug)]
pub struct BackupSettings {
    /// The backup directory (created when missing).
    pub dir: PathBuf,
    /// Cron (with seconds) of the daily tier; None turns it off.
    pub daily: Option<String>,
    /// Cron (with seconds) of the hourly tier; None turns it off.
    pub hourly: Option<String>,
    /// Files of each tier kept (the newest).
    pub keep_daily: usize,
    pub keep_hourly: usize,
    /// BACKUP_OVERDUE when no backup was verified for this long; None: twice the shortest
    /// interval of the enabled tiers.
    pub overdue_after: Option<Duration>,
}

impl BackupSettings {
    /// Checks the schedules, naming the bad one.
    pub fn validate(&self) -> anyhow::Result<()> {
        for (name, expr) in [
            ("daily backup", &self.daily),
            ("hourly backup", &self.hourly),
        ] {
            if let Some(expr) = expr {
                cron::Schedule::from_str(expr)
                    .map_err(|e| anyhow::anyhow!("invalid {name} schedule {expr:?}: {e}"))?;
            }
        }
        Ok(())
    }

    /// How long without a verified backup counts as overdue.
    pub fn overdue_after(&self) -> Duration {
        if let Some(after) = self.overdue_after {
            return after;
        }
        let interval = |expr: &Option<String>| {
            let schedule = cron::Schedule::from_str(expr.as_deref()?).ok()?;
            let mut next = schedule.upcoming(Utc);
            let (a, b) = (next.next()?, next.next()?);
            (b - a).to_std().ok()
        };
        [interval(&self.daily), interval(&self.hourly)]
            .into_iter()
            .flatten()
            .min()
            .map_or(Duration::from_secs(2 * 24 * 3600), |i| i * 2)
    }
}

/// The two tiers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tier {
    Daily,
    Hourly,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Daily => "daily",
            Tier::Hourly => "hourly",
        }
    }
}

/// apalis-cron handler of the daily tier.
pub(crate) async fn handle_daily(
    _tick: Tick,
    ctx: Data<Arc<JobContext>>,
) -> Result<(), BoxDynError> {
    handle(&ctx, Tier::Daily).await
}

/// apalis-cron handler of the hourly tier.
pub(crate) async fn handle_hourly(
    _tick: Tick,
    ctx: Data<Arc<JobContext>>,
) -> Result<(), BoxDynError> {
    handle(&ctx, Tier::Hourly).await
}

async fn handle(ctx: &JobContext, tier: Tier) -> Result<(), BoxDynError> {
    match run(ctx, tier).await {
        Ok(run) if run.succeeded() => Ok(()),
        // A failed backup is recorded and raised as an event; the job itself did its work.
        Ok(_) => Ok(()),
        Err(err) => {
            tracing::error!(error = %err, "backup job failed");
            Err(err.into())
        }
    }
}

/// Writes a backup of `tier`, verifies it with the running keys, prunes the tier, and
/// records the outcome (BACKUP_FAILED when it failed). Errors only when even the outcome
/// cannot be recorded.
pub async fn run(ctx: &JobContext, tier: Tier) -> anyhow::Result<BackupRun> {
    let Some(settings) = &ctx.settings.backups else {
        anyhow::bail!("scheduled backups are not configured");
    };
    let started_at = Utc::now();
    let file = settings.dir.join(format!(
        "tokenwarden-{}-{}.twb",
        tier.as_str(),
        started_at.format("%Y%m%dT%H%M%S%.3fZ")
    ));
    let mut run = BackupRun {
        kind: tier.as_str().into(),
        file: None,
        started_at,
        finished_at: started_at,
        size_bytes: None,
        rows: None,
        verified: false,
        tokens: None,
        tokens_decrypted: None,
        error: None,
    };
    match write_and_verify(ctx, &settings.dir, &file, &mut run).await {
        Ok(()) => {}
        Err(err) => run.error = Some(err),
    }
    run.finished_at = Utc::now();
    if run.succeeded() {
        tracing::info!(
            file = %file.display(),
            bytes = run.size_bytes,
            rows = run.rows,
            tokens = run.tokens,
            "scheduled backup written and verified"
        );
        let keep = match tier {
            Tier::Daily => settings.keep_daily,
            Tier::Hourly => settings.keep_hourly,
        };
        if let Err(err) = prune(&settings.dir, tier, keep) {
            tracing::warn!(error = %err, "could not remove old backups");
        }
    } else {
        metrics::counter!("tokenwarden_backup_failures_total").increment(1);
        tracing::error!(
            code = "BACKUP_FAILED",
            file = %file.display(),
            error = run.error.as_deref().unwrap_or_default(),
            "scheduled backup failed"
        );
    }
    backup::status::record(&ctx.db, &ctx.engine.events, &run).await?;
    Ok(run)
}

async fn write_and_verify(
    ctx: &JobContext,
    dir: &std::path::Path,
    file: &std::path::Path,
    run: &mut BackupRun,
) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| {
        format!(
            "could not create the backup directory {}: {e}",
            dir.display()
        )
    })?;
    let created = backup::create(&ctx.db, file)
        .await
        .map_err(|e| e.to_string())?;
    run.file = Some(file.display().to_string());
    run.size_bytes = Some(created.file_bytes);
    run.rows = Some(created.manifest.total_rows());
    let verification = backup::verify(file, &ctx.engine.vault(), dir)
        .await
        .map_err(|e| format!("verification: {e}"))?;
    run.tokens = Some(verification.decryption.tokens);
    run.tokens_decrypted = Some(verification.decryption.tokens_decrypted);
    run.verified = verification.ok();
    match verification.problem() {
        None => Ok(()),
        Some(problem) => Err(format!("verification: {problem}")),
    }
}

/// Removes the oldest files of a tier beyond `keep` (names sort by time).
fn prune(dir: &std::path::Path, tier: Tier, keep: usize) -> std::io::Result<usize> {
    let prefix = format!("tokenwarden-{}-", tier.as_str());
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".twb"))
        })
        .collect();
    files.sort();
    let excess = files.len().saturating_sub(keep.max(1));
    for old in &files[..excess] {
        std::fs::remove_file(old)?;
    }
    Ok(excess)
}

/// Raises BACKUP_OVERDUE when due (called by the health check, every minute).
pub async fn check_overdue(ctx: &JobContext) -> anyhow::Result<()> {
    if let Some(settings) = &ctx.settings.backups {
        backup::status::check_overdue(&ctx.db, &ctx.engine.events, settings.overdue_after())
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(daily: Option<&str>, hourly: Option<&str>) -> BackupSettings {
        BackupSettings {
            dir: PathBuf::from("backups"),
            daily: daily.map(Into::into),
            hourly: hourly.map(Into::into),
            keep_daily: 7,
            keep_hourly: 24,
            overdue_after: None,
        }
    }

    #[test]
    fn overdue_defaults_to_twice_the_shortest_interval() {
        let both = settings(Some("0 0 2 * * *"), Some("0 15 * * * *"));
        assert_eq!(both.overdue_after(), Duration::from_secs(2 * 3600));
        let daily = settings(Some("0 0 2 * * *"), None);
        assert_eq!(daily.overdue_after(), Duration::from_secs(2 * 24 * 3600));
        let bad = settings(Some("every day"), None);
        assert!(
            bad.validate()
                .expect_err("refused")
                .to_string()
                .contains("daily backup")
        );
    }

    #[test]
    fn prune_keeps_the_newest_of_a_tier_only() {
        let dir = tempfile::tempdir().expect("dir");
        for name in [
            "tokenwarden-hourly-20261201T010000.000Z.twb",
            "tokenwarden-hourly-20261201T020000.000Z.twb",
            "tokenwarden-hourly-20261201T030000.000Z.twb",
            "tokenwarden-daily-20261201T020000.000Z.twb",
            "other.twb",
        ] {
            std::fs::write(dir.path().join(name), b"x").expect("write");
        }
        assert_eq!(prune(dir.path(), Tier::Hourly, 2).expect("prunes"), 1);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "other.twb",
                "tokenwarden-daily-20261201T020000.000Z.twb",
                "tokenwarden-hourly-20261201T020000.000Z.twb",
                "tokenwarden-hourly-20261201T030000.000Z.twb",
            ]
        );
    }
}
