//! Background jobs on apalis: the refresh queue (apalis-redis in production, apalis-sqlite
//! embedded) and the recurring maintenance tasks of the guide (apalis-cron). One file per
//! job; the domain work itself lives in `service`.
//!
//! The database is the source of truth: jobs only carry ids, failures are recorded and
//! retried by scheduling (not by apalis' own retries), and a sweep finds every due token
//! again if the queue loses its contents.

/// Scheduled backups (embedded mode), verified after writing.
pub mod backup;
/// Purges accounts deactivated longer than the retention period.
pub mod cleanup_deactivated;
/// Measures the database size and raises DATABASE_GROWTH.
pub mod database_size;
/// Sends due webhook deliveries (signed, retried with backoff).
pub mod deliver_webhooks;
/// The recurring health check (database, Redis, encryption, providers).
pub mod health_check;
/// Deletes old provider call records and refresh attempts.
pub mod prune;
/// The refresh queue over Redis or SQLite: the service's `JobQueue` port.
pub mod queue;
/// Refreshes one account (the job the queue carries): decode, call the service, report.
pub mod refresh_token;
/// Rewraps tokens after a key rotation; warns when a rotation is due.
pub mod rotate_keys;
/// Finds tokens entering their refresh window and queues them.
pub mod sweep_expiring;
/// Wires the workers and schedules together.
pub mod worker;

pub use queue::{Queue, QueueBackend, QueueStats};
pub use worker::{JobContext, JobSettings, Schedules, run_workers};
