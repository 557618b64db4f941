//! The queue port ([`JobQueue`]): how the token lifecycle asks for a refresh to run later
//! (a sweep, a retry, a bulk refresh), and how health reads the queue. The service only
//! needs "queue this account, maybe after a delay", "how deep is it" and "does it answer";
//! `jobs` implements it over apalis (Redis in production, SQLite embedded). Nothing else
//! pushes jobs.

use std::{future::Future, time::Duration};

/// Why a refresh runs (only `Manual` is never queued: a caller waits for it).
pub use entity::enums::RefreshTrigger as Trigger;

/// One refresh to run later.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueuedRefresh {
    pub tenant_id: i64,
    pub account_id: i64,
    pub trigger: Trigger,
}

/// The queue could not take a job (Redis down, SQLite queue locked, timed out).
#[derive(Debug, thiserror::Error)]
#[error("the refresh queue is unavailable: {0}")]
pub struct QueueError(pub String);

/// How many queued refreshes wait, run and have failed for good (deployment-wide).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueDepth {
    pub pending: u64,
    pub running: u64,
    pub failed: u64,
}

/// The job queue port: everything the service asks of the queue. The sweep, a bulk
/// refresh and a retry enqueue through it; `tokenHealth` and `systemHealth` read it.
/// Implementations bound every call (a queue that does not answer is an error, not a hang).
pub trait JobQueue: Send + Sync {
    /// Queues a refresh, to run after `delay` if given.
    fn enqueue(
        &self,
        job: QueuedRefresh,
        delay: Option<Duration>,
    ) -> impl Future<Output = Result<(), QueueError>> + Send;

    /// Queues several refreshes to run now, in as few round trips as the queue allows
    /// (one write per batch, not per job). On `Err` any of them may or may not be queued:
    /// the caller releases their claims, and a job queued twice finds its account already
    /// refreshed and skips.
    fn enqueue_many(
        &self,
        jobs: &[QueuedRefresh],
    ) -> impl Future<Output = Result<(), QueueError>> + Send;

    /// The refresh jobs waiting, running and failed for good.
    fn depth(&self) -> impl Future<Output = Result<QueueDepth, QueueError>> + Send;

    /// Whether the queue's server answers; `None` when the queue has no server of its own
    /// (the embedded queue lives in a local file).
    fn reachable(&self) -> impl Future<Output = Option<bool>> + Send;
}
