use std::{path::Path, time::Duration};

use apalis::prelude::*;
use apalis_redis::{Config as RedisConfig, RedisStorage};
use apalis_sqlite::{
    Config as SqliteConfig, SqliteConnectOptions, SqlitePoolOptions, SqliteStorage,
};

use service::tokens::queue::{JobQueue, QueueDepth, QueueError, QueuedRefresh};

use crate::refresh_token::RefreshToken;

/// Where jobs go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueBackend {
    /// `REDIS_URL` unset: an apalis-sqlite queue in a file of its own.
    Embedded,
    /// `REDIS_URL` set: apalis-redis, keys under the deployment's prefix.
    Redis,
}

impl QueueBackend {
    /// The backend a deployment uses given its Redis URL.
    pub fn for_redis_url(redis_url: Option<&str>) -> Self {
        match redis_url {
            Some(url) if !url.trim().is_empty() => QueueBackend::Redis,
            _ => QueueBackend::Embedded,
        }
    }

    /// A short name for logs and health output.
    pub fn as_str(self) -> &'static str {
        match self {
            QueueBackend::Embedded => "embedded",
            QueueBackend::Redis => "redis",
        }
    }
}

/// How many refresh jobs wait, run and have failed for good.
pub type QueueStats = QueueDepth;

/// A handle to enqueue refresh jobs: cheap to clone, usable from any process.
#[derive(Clone)]
pub enum Queue {
    Sqlite(SqliteStorage<RefreshToken>),
    Redis {
        storage: RedisStorage<RefreshToken>,
        prefix: String,
    },
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Queue::Sqlite(_) => "Queue::Sqlite",
            Queue::Redis { .. } => "Queue::Redis",
        })
    }
}

/// The queue name of refresh jobs (Redis keys start with `<prefix>:refresh-token`).
const REFRESH_QUEUE: &str = "refresh-token";
/// Jobs fetched per poll: the default (10) caps a worker at 10 jobs per poll interval.
const FETCH_BATCH: usize = 100;
/// Jobs written per round trip by [`JobQueue::enqueue_many`] (one Redis pipeline, one
/// SQLite transaction).
const PUSH_BATCH: usize = 500;
/// An enqueue that takes longer than this counts as a failed one (Redis unreachable).
const PUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Waits at most [`PUSH_TIMEOUT`] for a queue call; an error or no answer is a
/// [`QueueError`].
async fn bounded<T>(call: impl Future<Output = anyhow::Result<T>>) -> Result<T, QueueError> {
    match tokio::time::timeout(PUSH_TIMEOUT, call).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(err)) => Err(QueueError(format!("{err:#}"))),
        Err(_) => Err(QueueError(format!(
            "no answer within {} s",
            PUSH_TIMEOUT.as_secs()
        ))),
    }
}

/// The service's queue port. Every call is bounded by [`PUSH_TIMEOUT`].
impl JobQueue for Queue {
    async fn enqueue(&self, job: QueuedRefresh, delay: Option<Duration>) -> Result<(), QueueError> {
        bounded(self.push(job.into(), delay)).await
    }

    async fn enqueue_many(&self, jobs: &[QueuedRefresh]) -> Result<(), QueueError> {
        for chunk in jobs.chunks(PUSH_BATCH) {
            let chunk = chunk.iter().copied().map(RefreshToken::from).collect();
            bounded(self.push_many(chunk)).await?;
        }
        Ok(())
    }

    async fn depth(&self) -> Result<QueueDepth, QueueError> {
        bounded(self.stats()).await
    }

    async fn reachable(&self) -> Option<bool> {
        self.redis_ok().await
    }
}

impl Queue {
    /// Opens (and sets up) the embedded queue in its own SQLite file.
    pub async fn sqlite(path: &Path) -> anyhow::Result<Queue> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        SqliteStorage::setup(&pool)
            .await
            .map_err(|e| anyhow::anyhow!("setting up the job queue: {e}"))?;
        Ok(Queue::Sqlite(
            SqliteStorage::new(&pool).with_config(
                SqliteConfig::default()
                    .queue(REFRESH_QUEUE)
                    .batch_size(FETCH_BATCH)
                    .persist_results(false),
            ),
        ))
    }

    /// Connects to Redis; every key lives under `prefix`.
    pub async fn redis(url: &str, prefix: &str) -> anyhow::Result<Queue> {
        let conn = apalis_redis::connect(url)
            .await
            .map_err(|e| anyhow::anyhow!("connecting to Redis: {e}"))?;
        let config = RedisConfig::default()
            .queue(format!("{prefix}:{REFRESH_QUEUE}"))
            .batch_size(FETCH_BATCH)
            .persist_results(false);
        Ok(Queue::Redis {
            storage: RedisStorage::new(conn).with_config(config),
            prefix: prefix.to_owned(),
        })
    }

    /// Which backend this is.
    pub fn backend(&self) -> QueueBackend {
        match self {
            Queue::Sqlite(_) => QueueBackend::Embedded,
            Queue::Redis { .. } => QueueBackend::Redis,
        }
    }

    /// Enqueues a refresh, optionally delayed (unbounded: the service enqueues through
    /// [`JobQueue::enqueue`]).
    pub(crate) async fn push(
        &self,
        job: RefreshToken,
        delay: Option<Duration>,
    ) -> anyhow::Result<()> {
        let mut task = TaskBuilder::new(job);
        if let Some(delay) = delay {
            task = task.run_after(delay);
        }
        let task = task.build();
        match self {
            Queue::Sqlite(storage) => storage
                .clone()
                .push_task(task)
                .await
                .map_err(|e| anyhow::anyhow!("{e}")),
            Queue::Redis { storage, .. } => storage
                .clone()
                .push_task(task)
                .await
                .map_err(|e| anyhow::anyhow!("{e}")),
        }
    }

    /// Enqueues several refreshes to run now, in one write (unbounded: the service
    /// enqueues through [`JobQueue::enqueue_many`], in chunks of [`PUSH_BATCH`]).
    pub(crate) async fn push_many(&self, jobs: Vec<RefreshToken>) -> anyhow::Result<()> {
        match self {
            Queue::Sqlite(storage) => storage
                .clone()
                .push_bulk(jobs)
                .await
                .map_err(|e| anyhow::anyhow!("{e}")),
            Queue::Redis { storage, .. } => storage
                .clone()
                .push_bulk(jobs)
                .await
                .map_err(|e| anyhow::anyhow!("{e}")),
        }
    }

    /// Pending, running and permanently failed refresh jobs.
    pub async fn stats(&self) -> anyhow::Result<QueueStats> {
        match self {
            Queue::Sqlite(storage) => {
                let stats = storage
                    .fetch_by_queue()
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                let get = |name: &str| {
                    stats
                        .iter()
                        .find(|s| s.title == name)
                        .and_then(|s| s.value.parse::<u64>().ok())
                        .unwrap_or(0)
                };
                Ok(QueueStats {
                    pending: get("PENDING_JOBS"),
                    running: get("RUNNING_JOBS"),
                    failed: get("FAILED_JOBS") + get("KILLED_JOBS"),
                })
            }
            Queue::Redis { storage, .. } => {
                // `Metrics::fetch_by_queue` is broken in apalis-redis 1.0.0: count the keys.
                let mut storage = storage.clone();
                let config = storage.get_config().clone();
                let mut conn = storage.get_connection().clone();
                let active: u64 = redis::cmd("LLEN")
                    .arg(config.active_jobs_list())
                    .query_async(&mut conn)
                    .await?;
                let scheduled: u64 = redis::cmd("ZCARD")
                    .arg(config.scheduled_jobs_set())
                    .query_async(&mut conn)
                    .await?;
                let dead: u64 = redis::cmd("SCARD")
                    .arg(config.dead_jobs_set())
                    .query_async(&mut conn)
                    .await?;
                let workers: Vec<String> = redis::cmd("ZRANGE")
                    .arg(config.workers_set())
                    .arg(0)
                    .arg(-1)
                    .query_async(&mut conn)
                    .await?;
                let mut running = 0;
                for worker in workers {
                    let n: u64 = redis::cmd("SCARD")
                        .arg(format!("{}:{worker}", config.inflight_jobs_set()))
                        .query_async(&mut conn)
                        .await?;
                    running += n;
                }
                Ok(QueueStats {
                    pending: active + scheduled,
                    running,
                    failed: dead,
                })
            }
        }
    }

    /// Pings Redis (Some(reachable)); None for the embedded queue.
    pub async fn redis_ok(&self) -> Option<bool> {
        match self {
            Queue::Sqlite(_) => None,
            Queue::Redis { storage, .. } => {
                let mut storage = storage.clone();
                let mut conn = storage.get_connection().clone();
                let pong: Result<String, _> = redis::cmd("PING").query_async(&mut conn).await;
                Some(pong.is_ok())
            }
        }
    }

    /// The deployment's Redis key prefix, if Redis is used.
    pub fn redis_prefix(&self) -> Option<&str> {
        match self {
            Queue::Sqlite(_) => None,
            Queue::Redis { prefix, .. } => Some(prefix),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(account_id: i64) -> RefreshToken {
        serde_json::from_value(serde_json::json!({
            "tenant_id": 1,
            "account_id": account_id,
            "trigger": "sweep",
        }))
        .expect("a refresh job payload")
    }

    #[test]
    fn refresh_payloads_keep_their_json_and_refuse_unknown_triggers() {
        use service::tokens::queue::Trigger;
        for (trigger, name) in [
            (Trigger::Sweep, "sweep"),
            (Trigger::Retry, "retry"),
            (Trigger::Bulk, "bulk"),
        ] {
            let payload = RefreshToken {
                tenant_id: 1,
                account_id: 2,
                trigger,
            };
            let json = serde_json::json!({"tenant_id": 1, "account_id": 2, "trigger": name});
            assert_eq!(serde_json::to_value(&payload).ok(), Some(json.clone()));
            assert_eq!(
                serde_json::from_value::<RefreshToken>(json).ok(),
                Some(payload)
            );
        }
        let unknown = serde_json::json!({"tenant_id": 1, "account_id": 2, "trigger": "swept"});
        assert!(
            serde_json::from_value::<RefreshToken>(unknown).is_err(),
            "an unknown trigger must not decode (it used to run as a sweep)"
        );
    }

    #[test]
    fn redis_is_used_only_when_a_url_is_set() {
        assert_eq!(QueueBackend::for_redis_url(None), QueueBackend::Embedded);
        assert_eq!(
            QueueBackend::for_redis_url(Some("  ")),
            QueueBackend::Embedded
        );
        assert_eq!(
            QueueBackend::for_redis_url(Some("redis://127.0.0.1:6379")),
            QueueBackend::Redis
        );
    }

    #[tokio::test]
    async fn the_embedded_queue_counts_what_is_pushed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let queue = Queue::sqlite(&dir.path().join("jobs.db"))
            .await
            .expect("queue");
        assert_eq!(queue.backend(), QueueBackend::Embedded);
        assert_eq!(queue.redis_ok().await, None);
        assert_eq!(queue.stats().await.expect("stats").pending, 0);
        queue.push(job(1), None).await.expect("pushed");
        queue
            .push(job(2), Some(Duration::from_secs(3600)))
            .await
            .expect("pushed delayed");
        assert_eq!(queue.stats().await.expect("stats").pending, 2);
    }

    #[tokio::test]
    async fn the_redis_queue_counts_what_is_pushed_under_its_prefix() {
        let url = std::env::var("TOKENWARDEN_TEST_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
        let prefix = format!("tw_jobs_test_{}", std::process::id());
        let queue = Queue::redis(&url, &prefix).await.unwrap_or_else(|err| {
            panic!(
                "Redis is not reachable at {url} ({err}). Start it with `redis-server \
                 --daemonize yes` or point TOKENWARDEN_TEST_REDIS_URL at a server"
            )
        });
        assert_eq!(queue.redis_ok().await, Some(true));
        assert_eq!(queue.redis_prefix(), Some(prefix.as_str()));
        let before = queue.stats().await.expect("stats").pending;
        queue.push(job(1), None).await.expect("pushed");
        queue
            .push(job(2), Some(Duration::from_secs(3600)))
            .await
            .expect("pushed delayed");
        assert_eq!(queue.stats().await.expect("stats").pending, before + 2);
        // Leave nothing behind in the shared Redis (best effort: KEYS can be slow while
        // other suites fill it).
        let client = redis::Client::open(url.as_str()).expect("redis url");
        if let Ok(mut conn) = client.get_multiplexed_async_connection().await {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{prefix}*"))
                .query_async(&mut conn)
                .await
                .unwrap_or_default();
            for key in keys {
                let _: Result<(), _> = redis::cmd("DEL").arg(key).query_async(&mut conn).await;
            }
        }
    }
}
