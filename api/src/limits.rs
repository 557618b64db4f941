//! Cost bounds of requests and connections: the settings (`TOKENWARDEN_LIMITS_*` and
//! `TOKENWARDEN_MAX_*`) and the per-API-key rate limiter. The GraphQL cost checks live in `graphql::limits`; the socket
//! and connection bounds in `http`. docs/api.md (Limits) lists every limit with its error code.

use std::{num::NonZeroU32, time::Duration};

use governor::{
    Quota, RateLimiter,
    clock::{Clock, DefaultClock},
    state::keyed::DefaultKeyedStateStore,
};

/// Request, socket and connection limits. Every limit refuses with a stable
/// `extensions.code` (or WebSocket close code) and leaves the server serving. The flags
/// that set them are in the binary's `config::limits`.
#[derive(Clone, Debug)]
pub struct LimitSettings {
    /// Largest accepted request body in bytes: HTTP 413.
    pub max_body_bytes: usize,
    /// Deepest accepted query nesting.
    pub max_query_depth: usize,
    /// Highest query complexity (potential nodes of one operation): QUERY_TOO_COMPLEX.
    pub max_query_complexity: usize,
    /// Most fields at the root of one operation (aliases included): QUERY_TOO_COMPLEX.
    pub max_root_fields: usize,
    /// Most aliased fields in one document: QUERY_TOO_COMPLEX.
    pub max_aliases: usize,
    /// Longest string argument or variable, in bytes: BAD_USER_INPUT.
    pub max_string_bytes: usize,
    /// A request running longer than this is cancelled: REQUEST_TIMEOUT (HTTP 504).
    pub request_timeout: Duration,
    /// Requests per minute one API key may make on average (0 = unlimited): RATE_LIMITED.
    pub rate_per_minute: u32,
    /// Requests one API key may make at once before the per-minute rate applies.
    pub rate_burst: u32,
}

/// Keys tracked before idle buckets are dropped (a full bucket needs no state).
const MAX_TRACKED_KEYS: usize = 10_000;

/// A token bucket per API key, in this process.
pub struct KeyRateLimiter {
    limiter: Option<RateLimiter<i64, DefaultKeyedStateStore<i64>, DefaultClock>>,
    clock: DefaultClock,
}

impl KeyRateLimiter {
    /// A limiter for `settings` (none when the rate is 0).
    pub fn new(settings: &LimitSettings) -> Self {
        let limiter = NonZeroU32::new(settings.rate_per_minute).map(|rate| {
            let burst = NonZeroU32::new(settings.rate_burst).unwrap_or(NonZeroU32::MIN);
            RateLimiter::keyed(Quota::per_minute(rate).allow_burst(burst))
        });
        Self {
            limiter,
            clock: DefaultClock::default(),
        }
    }

    /// `Ok` when `key_id` may make a request now, else how long until it may.
    pub fn check(&self, key_id: i64) -> Result<(), Duration> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        if limiter.len() > MAX_TRACKED_KEYS {
            limiter.retain_recent();
        }
        limiter
            .check_key(&key_id)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }
}

/// Whole seconds to announce in `Retry-After` (at least 1).
pub fn retry_after_seconds(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(rate: u32, burst: u32) -> LimitSettings {
        LimitSettings {
            max_body_bytes: 1024 * 1024,
            max_query_depth: 16,
            max_query_complexity: 50_000,
            max_root_fields: 20,
            max_aliases: 30,
            max_string_bytes: 4096,
            request_timeout: Duration::from_secs(30),
            rate_per_minute: rate,
            rate_burst: burst,
        }
    }

    #[test]
    fn each_key_has_its_own_bucket() {
        let limiter = KeyRateLimiter::new(&settings(1, 2));
        assert!(limiter.check(1).is_ok());
        assert!(limiter.check(1).is_ok());
        let wait = limiter.check(1).expect_err("the burst is spent");
        assert!(retry_after_seconds(wait) >= 1 && retry_after_seconds(wait) <= 60);
        assert!(limiter.check(2).is_ok(), "another key is unaffected");
    }

    #[test]
    fn zero_means_unlimited() {
        let limiter = KeyRateLimiter::new(&settings(0, 0));
        for _ in 0..1000 {
            assert!(limiter.check(1).is_ok());
        }
    }
}
