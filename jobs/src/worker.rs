use std::{future::Future, str::FromStr, sync::Arc, time::Duration};

use apalis::prelude::*;
use apalis_cron::CronScheduler;
use sea_orm::DatabaseConnection;
use service::{engine::Engine, tokens::sweep::SweepSettings};

use crate::{
    backup, cleanup_deactivated, database_size, deliver_webhooks, health_check, prune,
    queue::Queue, refresh_token, rotate_keys, sweep_expiring,
};

/// Cron expressions (with seconds) of the recurring jobs.
#[derive(Clone, Debug)]
pub struct Schedules {
    pub sweep: String,
    pub cleanup: String,
    pub rotate_keys: String,
    pub health_check: String,
    pub prune: String,
    pub webhooks: String,
}

impl Default for Schedules {
    fn default() -> Self {
        Self {
            sweep: "0 */5 * * * *".into(),
            cleanup: "0 30 3 * * *".into(),
            rotate_keys: "*/30 * * * * *".into(),
            health_check: "0 * * * * *".into(),
            prune: "0 45 3 * * *".into(),
            webhooks: "*/2 * * * * *".into(),
        }
    }
}

impl Schedules {
    /// Checks every expression, naming the bad one.
    pub fn validate(&self) -> anyhow::Result<()> {
        for (name, expr) in [
            ("sweep", &self.sweep),
            ("cleanup", &self.cleanup),
            ("rotate_keys", &self.rotate_keys),
            ("health_check", &self.health_check),
            ("prune", &self.prune),
            ("webhooks", &self.webhooks),
        ] {
            cron::Schedule::from_str(expr)
                .map_err(|e| anyhow::anyhow!("invalid {name} schedule {expr:?}: {e}"))?;
        }
        Ok(())
    }

    /// When the next sweep fires.
    pub fn next_sweep(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        cron::Schedule::from_str(&self.sweep)
            .ok()
            .and_then(|s| s.upcoming(chrono::Utc).next())
    }
}

/// Settings of the jobs.
#[derive(Clone, Debug)]
pub struct JobSettings {
    pub sweep: SweepSettings,
    pub schedules: Schedules,
    /// Refresh jobs run at once per worker process.
    pub concurrency: usize,
    /// Deactivated accounts are purged after this long.
    pub cleanup_after: Duration,
    /// KEY_ROTATION_DUE when the active key is older than this.
    pub rotation_period: Duration,
    /// Provider call records and refresh attempts are kept this long.
    pub retention: Duration,
    /// Error-rate alert thresholds.
    pub alerts: service::events::alerts::AlertSettings,
    /// Scheduled backups (embedded mode); None when they are off.
    pub backups: Option<backup::BackupSettings>,
    /// When the database size is measured (cron with seconds).
    pub database_size_schedule: String,
    /// When DATABASE_GROWTH is raised.
    pub database_growth: service::ops::size::GrowthSettings,
}

impl JobSettings {
    /// Checks every schedule, naming the bad one.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.schedules.validate()?;
        schedule(&self.database_size_schedule)
            .map_err(|e| anyhow::anyhow!("database size: {e}"))?;
        if let Some(backups) = &self.backups {
            backups.validate()?;
        }
        Ok(())
    }
}

impl Default for JobSettings {
    fn default() -> Self {
        Self {
            sweep: SweepSettings::default(),
            schedules: Schedules::default(),
            concurrency: 32,
            cleanup_after: Duration::from_secs(90 * 24 * 3600),
            rotation_period: Duration::from_secs(90 * 24 * 3600),
            retention: Duration::from_secs(30 * 24 * 3600),
            alerts: service::events::alerts::AlertSettings::default(),
            backups: None,
            database_size_schedule: "0 */15 * * * *".into(),
            database_growth: service::ops::size::GrowthSettings::default(),
        }
    }
}

/// What every job gets.
pub struct JobContext {
    pub db: DatabaseConnection,
    pub engine: Arc<Engine>,
    pub queue: Queue,
    pub settings: JobSettings,
}

fn schedule(expr: &str) -> anyhow::Result<cron::Schedule> {
    cron::Schedule::from_str(expr).map_err(|e| anyhow::anyhow!("invalid schedule {expr:?}: {e}"))
}

/// Runs the refresh workers and every schedule until `shutdown` resolves, then lets running
/// jobs finish. Worker names are unique per process, so restarts and several worker
/// processes never collide.
pub async fn run_workers(
    ctx: Arc<JobContext>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    ctx.settings.validate()?;
    let id = format!(
        "{}-{}",
        std::process::id(),
        service::providers::new_state()
            .chars()
            .take(6)
            .collect::<String>()
    );
    let poll = Duration::from_millis(100);
    let concurrency = ctx.settings.concurrency.max(1);
    let mut monitor = Monitor::new()
        .shutdown_timeout(Duration::from_secs(30))
        // A worker whose backend failed (Redis restarted or flushed, SQLite busy) comes back
        // under a new name; the database still knows every due token.
        .should_restart(|worker, error| {
            tracing::warn!(worker = %worker.name(), restarts = worker.restarts(), ?error, "worker failed; restarting");
            // Throttle restart loops while the backend is down (this path is rare).
            std::thread::sleep(Duration::from_millis(500));
            true
        });

    macro_rules! refresh_worker {
        ($backend:expr) => {{
            let backend = $backend;
            let ctx = ctx.clone();
            let name = format!("refresh-{id}");
            monitor = monitor.register(move |restarts| {
                WorkerBuilder::new(format!("{name}-{restarts}"))
                    .backend(backend.clone().poll_with_interval(poll))
                    .concurrency(concurrency)
                    .data(ctx.clone())
                    .build(refresh_token::handle)
            });
        }};
    }
    match &ctx.queue {
        Queue::Sqlite(storage) => refresh_worker!(storage.clone()),
        Queue::Redis { storage, .. } => refresh_worker!(storage.clone()),
    }

    macro_rules! cron_worker {
        ($name:literal, $expr:expr, $handler:path) => {{
            let scheduler = CronScheduler::new(schedule($expr)?);
            let ctx = ctx.clone();
            let name = format!("{}-{id}", $name);
            monitor = monitor.register(move |restarts| {
                WorkerBuilder::new(format!("{name}-{restarts}"))
                    .backend(scheduler.clone())
                    .data(ctx.clone())
                    .build($handler)
            });
        }};
    }
    let schedules = ctx.settings.schedules.clone();
    cron_worker!("sweep", &schedules.sweep, sweep_expiring::handle);
    cron_worker!("cleanup", &schedules.cleanup, cleanup_deactivated::handle);
    cron_worker!("rotate-keys", &schedules.rotate_keys, rotate_keys::handle);
    cron_worker!(
        "health-check",
        &schedules.health_check,
        health_check::handle
    );
    cron_worker!("prune", &schedules.prune, prune::handle);
    cron_worker!("webhooks", &schedules.webhooks, deliver_webhooks::handle);
    cron_worker!(
        "database-size",
        &ctx.settings.database_size_schedule,
        database_size::handle
    );
    if let Some(backups) = ctx.settings.backups.clone() {
        if let Some(daily) = &backups.daily {
            cron_worker!("backup-daily", daily, backup::handle_daily);
        }
        if let Some(hourly) = &backups.hourly {
            cron_worker!("backup-hourly", hourly, backup::handle_hourly);
        }
        tracing::info!(
            dir = %backups.dir.display(),
            daily = backups.daily.as_deref().unwrap_or("off"),
            hourly = backups.hourly.as_deref().unwrap_or("off"),
            "scheduled backups on"
        );
    }

    tracing::info!(
        queue = ctx.queue.backend().as_str(),
        concurrency,
        sweep = %schedules.sweep,
        "workers started"
    );
    // A worker that starts (a deploy, a restart after an outage) sweeps at once instead of
    // waiting up to one schedule period for its first tick; ticks during this pass skip.
    let first_sweep = {
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let _pass = ctx.engine.sweep_pass.lock().await;
            match sweep_expiring::run(&ctx).await {
                Ok(report) => tracing::info!(
                    queued = report.queued,
                    expired = report.expired,
                    "start-up sweep"
                ),
                Err(err) => tracing::error!(error = %err, "start-up sweep failed"),
            }
        })
    };
    let stopped = monitor
        .run_with_signal(async move {
            shutdown.await;
            Ok(())
        })
        .await;
    // Stopped mid-pass, its claims lapse like a killed worker's (the accounts stay due).
    first_sweep.abort();
    stopped.map_err(|e| anyhow::anyhow!("workers stopped with an error: {e}"))?;
    tracing::info!("workers stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_schedules_are_valid_and_the_sweep_fires_soon() {
        let schedules = Schedules::default();
        schedules.validate().expect("defaults parse");
        let next = schedules.next_sweep().expect("a next sweep");
        let wait = next - chrono::Utc::now();
        assert!(
            wait <= chrono::Duration::minutes(5),
            "every 5 minutes: {wait}"
        );
    }

    #[test]
    fn a_bad_schedule_is_named_in_the_error() {
        let schedules = Schedules {
            prune: "now and then".into(),
            ..Schedules::default()
        };
        let err = schedules.validate().expect_err("refused").to_string();
        assert!(
            err.starts_with("invalid prune schedule \"now and then\""),
            "{err}"
        );
        // Five fields (no seconds) are not what the settings document.
        let schedules = Schedules {
            sweep: "*/5 * * * *".into(),
            ..Schedules::default()
        };
        assert!(schedules.validate().is_err());
        assert!(schedules.next_sweep().is_none());
    }
}
