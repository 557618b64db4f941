//! Background jobs (apalis). The refresh sweep and maintenance jobs arrive with the jobs
//! issue; for now this crate names the queue backend the deployment uses, so `api` and the
//! binary are already wired to it.

/// Where jobs and events go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueBackend {
    /// `REDIS_URL` unset: apalis-sqlite queue and in-process events.
    Embedded,
    /// `REDIS_URL` set: apalis-redis queue and Redis pub/sub events.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_url_selects_redis() {
        assert_eq!(QueueBackend::for_redis_url(None), QueueBackend::Embedded);
        assert_eq!(
            QueueBackend::for_redis_url(Some(" ")),
            QueueBackend::Embedded
        );
        assert_eq!(
            QueueBackend::for_redis_url(Some("redis://127.0.0.1")),
            QueueBackend::Redis
        );
    }
}
