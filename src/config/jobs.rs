use std::{path::PathBuf, time::Duration};

use clap::Args;

/// Schedules (cron with seconds, UTC), refresh windows and the bounds of the background
/// work, and where refreshed tokens wait while the database cannot take them.
#[derive(Args, Clone, Debug)]
pub struct JobsConfig {
    /// When the refresh sweep runs (cron with seconds).
    #[arg(
        long,
        env = "TOKENWARDEN_SWEEP_SCHEDULE",
        default_value = "0 */5 * * * *",
        global = true
    )]
    pub sweep_schedule: String,

    /// Refresh TikTok access tokens this long before they expire.
    #[arg(long, env = "TOKENWARDEN_REFRESH_WINDOW_TIKTOK", value_parser = humantime::parse_duration, default_value = "1h", global = true)]
    pub refresh_window_tiktok: Duration,

    /// Refresh Instagram tokens this long before they expire.
    #[arg(long, env = "TOKENWARDEN_REFRESH_WINDOW_INSTAGRAM", value_parser = humantime::parse_duration, default_value = "7d", global = true)]
    pub refresh_window_instagram: Duration,

    /// A sweep's claim on an account lasts this long (a lost job is found again after it).
    #[arg(long, env = "TOKENWARDEN_SWEEP_CLAIM", value_parser = humantime::parse_duration, default_value = "10m", global = true)]
    pub sweep_claim: Duration,

    /// Refresh jobs run at once per worker process.
    #[arg(
        long,
        env = "TOKENWARDEN_WORKER_CONCURRENCY",
        default_value_t = 32,
        global = true
    )]
    pub worker_concurrency: usize,

    /// How long one process may hold an account's refresh lease; must exceed the provider
    /// timeout. A crashed process's lease blocks that account's refresh this long.
    #[arg(long, env = "TOKENWARDEN_REFRESH_LEASE", value_parser = humantime::parse_duration, default_value = "2m", global = true)]
    pub refresh_lease: Duration,

    /// Directory of the refresh journal: refreshed tokens (encrypted) that the database
    /// could not store yet are fsync'd here and replayed by the next start. Default: next
    /// to the SQLite database, or the working directory. Keep it on local, persistent disk.
    #[arg(long, env = "TOKENWARDEN_REFRESH_JOURNAL_DIR", global = true)]
    pub refresh_journal_dir: Option<PathBuf>,

    /// How long a graceful shutdown waits for refreshed tokens to reach the database
    /// (they are in the journal either way).
    #[arg(long, env = "TOKENWARDEN_REFRESH_DRAIN", value_parser = humantime::parse_duration, default_value = "10s", global = true)]
    pub refresh_drain: Duration,

    /// When deactivated accounts are purged (cron with seconds).
    #[arg(
        long,
        env = "TOKENWARDEN_CLEANUP_SCHEDULE",
        default_value = "0 30 3 * * *",
        global = true
    )]
    pub cleanup_schedule: String,

    /// Deactivated accounts lose their tokens and personal data after this long.
    #[arg(long, env = "TOKENWARDEN_CLEANUP_AFTER", value_parser = humantime::parse_duration, default_value = "90d", global = true)]
    pub cleanup_after: Duration,

    /// When unfinished key rotations are resumed and key age is checked (cron).
    #[arg(
        long,
        env = "TOKENWARDEN_ROTATION_SCHEDULE",
        default_value = "*/30 * * * * *",
        global = true
    )]
    pub rotation_schedule: String,

    /// KEY_ROTATION_DUE when the active key is older than this.
    #[arg(long, env = "TOKENWARDEN_KEY_ROTATION_PERIOD", value_parser = humantime::parse_duration, default_value = "90d", global = true)]
    pub key_rotation_period: Duration,

    /// When the health check runs (cron with seconds).
    #[arg(
        long,
        env = "TOKENWARDEN_HEALTH_SCHEDULE",
        default_value = "0 * * * * *",
        global = true
    )]
    pub health_schedule: String,

    /// When old records are pruned (cron with seconds).
    #[arg(
        long,
        env = "TOKENWARDEN_PRUNE_SCHEDULE",
        default_value = "0 45 3 * * *",
        global = true
    )]
    pub prune_schedule: String,

    /// Provider call records and refresh attempts are kept this long.
    #[arg(long, env = "TOKENWARDEN_RETENTION", value_parser = humantime::parse_duration, default_value = "30d", global = true)]
    pub retention: Duration,

    /// How often due webhook deliveries are sent (cron with seconds).
    #[arg(
        long,
        env = "TOKENWARDEN_WEBHOOK_SCHEDULE",
        default_value = "*/2 * * * * *",
        global = true
    )]
    pub webhook_schedule: String,
}

impl JobsConfig {
    /// The schedules these flags describe.
    pub fn schedules(&self) -> jobs::Schedules {
        jobs::Schedules {
            sweep: self.sweep_schedule.clone(),
            cleanup: self.cleanup_schedule.clone(),
            rotate_keys: self.rotation_schedule.clone(),
            health_check: self.health_schedule.clone(),
            prune: self.prune_schedule.clone(),
            webhooks: self.webhook_schedule.clone(),
        }
    }
}
