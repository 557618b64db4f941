use std::{path::PathBuf, time::Duration};

use clap::Args;

/// Scheduled backups (docs/backups.md#scheduled-backups): embedded mode only (no
/// REDIS_URL), in the process that runs the workers.
#[derive(Args, Clone, Debug)]
pub struct BackupConfig {
    /// Run scheduled backups in embedded mode (no REDIS_URL). With PostgreSQL they also
    /// need TOKENWARDEN_BACKUP_DIR.
    #[arg(long, env = "TOKENWARDEN_BACKUPS", default_value_t = true, action = clap::ArgAction::Set, global = true)]
    pub backups: bool,

    /// Where scheduled backups go (default: `backups/` next to the SQLite database).
    #[arg(long, env = "TOKENWARDEN_BACKUP_DIR", global = true)]
    pub backup_dir: Option<PathBuf>,

    /// When the daily backup runs (cron with seconds; `off` turns the tier off).
    #[arg(
        long,
        env = "TOKENWARDEN_BACKUP_DAILY_SCHEDULE",
        default_value = "0 0 2 * * *",
        global = true
    )]
    pub backup_daily_schedule: String,

    /// When the hourly backup runs (cron with seconds; `off` turns the tier off).
    #[arg(
        long,
        env = "TOKENWARDEN_BACKUP_HOURLY_SCHEDULE",
        default_value = "0 15 * * * *",
        global = true
    )]
    pub backup_hourly_schedule: String,

    /// Daily backups kept (the newest).
    #[arg(
        long,
        env = "TOKENWARDEN_BACKUP_KEEP_DAILY",
        default_value_t = 7,
        global = true
    )]
    pub backup_keep_daily: usize,

    /// Hourly backups kept (the newest).
    #[arg(
        long,
        env = "TOKENWARDEN_BACKUP_KEEP_HOURLY",
        default_value_t = 24,
        global = true
    )]
    pub backup_keep_hourly: usize,

    /// BACKUP_OVERDUE when no backup was verified for this long (default: twice the
    /// interval of the most frequent tier, 2h with the default schedules).
    #[arg(long, env = "TOKENWARDEN_BACKUP_OVERDUE", value_parser = humantime::parse_duration, global = true)]
    pub backup_overdue: Option<Duration>,
}

fn tier(expr: &str) -> Option<String> {
    let expr = expr.trim();
    (!expr.is_empty() && !expr.eq_ignore_ascii_case("off")).then(|| expr.to_owned())
}

impl BackupConfig {
    /// The job settings, or None when scheduled backups are off: turned off, production
    /// mode (Redis), no tier, or no directory (PostgreSQL without TOKENWARDEN_BACKUP_DIR).
    pub fn job_settings(&self, config: &super::Config) -> Option<::jobs::backup::BackupSettings> {
        if !self.backups || config.queue.redis().is_some() {
            return None;
        }
        let dir = self.backup_dir.clone().or_else(|| {
            config.database.sqlite_path().map(|db| {
                db.parent()
                    .filter(|d| !d.as_os_str().is_empty())
                    .map_or_else(|| PathBuf::from("backups"), |d| d.join("backups"))
            })
        })?;
        let (daily, hourly) = (
            tier(&self.backup_daily_schedule),
            tier(&self.backup_hourly_schedule),
        );
        (daily.is_some() || hourly.is_some()).then_some(::jobs::backup::BackupSettings {
            dir,
            daily,
            hourly,
            keep_daily: self.backup_keep_daily,
            keep_hourly: self.backup_keep_hourly,
            overdue_after: self.backup_overdue,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn scheduled_backups_run_in_embedded_mode_only() {
        let config =
            Config::try_parse_from(["tw", "--database-url", "sqlite://data/tw.db"]).expect("valid");
        let settings = config.job_settings().backups.expect("on by default");
        assert_eq!(settings.dir, std::path::PathBuf::from("data/backups"));
        assert_eq!(settings.hourly.as_deref(), Some("0 15 * * * *"));

        let config = Config::try_parse_from([
            "tw",
            "--database-url",
            "sqlite://tw.db",
            "--redis-url",
            "redis://127.0.0.1",
        ])
        .expect("valid");
        assert!(config.job_settings().backups.is_none(), "production mode");

        let config =
            Config::try_parse_from(["tw", "--database-url", "postgres://h/db"]).expect("valid");
        assert!(config.job_settings().backups.is_none(), "no directory");
        let config = Config::try_parse_from([
            "tw",
            "--database-url",
            "postgres://h/db",
            "--backup-dir",
            "/var/backups/tw",
            "--backup-hourly-schedule",
            "off",
        ])
        .expect("valid");
        let settings = config.job_settings().backups.expect("a directory given");
        assert_eq!(settings.hourly, None);
        assert_eq!(settings.daily.as_deref(), Some("0 0 2 * * *"));
    }
}
