use std::path::PathBuf;

use clap::Args;

use super::SecretUrl;

/// The job queue and Redis: where jobs wait and how events cross processes.
#[derive(Args, Clone, Debug)]
pub struct QueueConfig {
    /// Redis URL. Unset = embedded mode (SQLite queue, in-process events).
    #[arg(long, env = "REDIS_URL", hide_env_values = true, global = true)]
    pub redis_url: Option<SecretUrl>,

    /// Prefix of every Redis key, so several deployments (or tests) share one Redis.
    #[arg(
        long,
        env = "TOKENWARDEN_REDIS_PREFIX",
        default_value = "tokenwarden",
        global = true
    )]
    pub redis_prefix: String,

    /// SQLite file of the embedded job queue (default: `tokenwarden-jobs.db` next to the
    /// SQLite database, or in the working directory). Unused when REDIS_URL is set.
    #[arg(long, env = "TOKENWARDEN_QUEUE_FILE", global = true)]
    pub queue_file: Option<PathBuf>,
}

impl QueueConfig {
    /// The Redis URL, when one is set (production mode).
    pub fn redis(&self) -> Option<&str> {
        self.redis_url
            .as_ref()
            .map(SecretUrl::expose)
            .filter(|url| !url.trim().is_empty())
    }
}
