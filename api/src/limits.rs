//! Cost bounds of requests and connections: the settings (`TOKENWARDEN_LIMITS_*` and
//! `TOKENWARDEN_MAX_*`) and the per-API-key rate limiter. The GraphQL cost checks live in `graphql::limits`; the socket
//! and connection bounds in `http`. docs/api.md (Limits) lists every limit with its error code.

use std::{
    collections::HashMap,
    num::NonZeroU32,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

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
    /// A WebSocket that has not sent `connection_init` this long after opening is closed
    /// with 4408 (graphql-transport-ws: "Connection initialisation timeout").
    pub ws_init_timeout: Duration,
    /// Most subscriptions running at once on one WebSocket; one more gets an `error`
    /// frame, TOO_MANY_SUBSCRIPTIONS (the socket stays open).
    pub ws_max_subscriptions: usize,
    /// Most WebSockets one API key (or signed-in user) may hold open in this process; one
    /// more is closed with 4429 at `connection_init`.
    pub ws_max_sockets_per_key: usize,
    /// Largest WebSocket message (and frame) a client may send, in bytes: close 1009.
    pub ws_max_message_bytes: usize,
    /// Time a client has to send a request's headers; also the idle keep-alive timeout.
    pub header_read_timeout: Duration,
    /// Most TCP connections (WebSockets included) this process holds at once; one more
    /// is answered HTTP 503 with `Retry-After` and closed.
    pub max_connections: usize,
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

/// Open WebSockets per caller (API key, or signed-in user) in this process.
pub struct SocketCounter {
    max: usize,
    open: Arc<Mutex<HashMap<i64, usize>>>,
}

/// One counted socket; dropping it frees the place.
pub struct SocketSlot {
    key: i64,
    open: Arc<Mutex<HashMap<i64, usize>>>,
}

impl SocketCounter {
    /// At most `max` sockets per caller.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            open: Arc::default(),
        }
    }

    /// The most sockets one caller may hold.
    pub fn max(&self) -> usize {
        self.max
    }

    /// A place for one more socket of `key`, or `None` when it holds `max` already.
    pub(crate) fn try_open(&self, key: i64) -> Option<SocketSlot> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(key).or_default();
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(SocketSlot {
            key,
            open: self.open.clone(),
        })
    }
}

impl Drop for SocketSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.key);
            }
        }
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
            ws_init_timeout: Duration::from_secs(10),
            ws_max_subscriptions: 25,
            ws_max_sockets_per_key: 50,
            ws_max_message_bytes: 64 * 1024,
            header_read_timeout: Duration::from_secs(10),
            max_connections: 4096,
        }
    }

    #[test]
    fn sockets_are_counted_per_caller_and_freed_on_drop() {
        let counter = SocketCounter::new(2);
        let a = counter.try_open(1).expect("first");
        let _b = counter.try_open(1).expect("second");
        assert!(counter.try_open(1).is_none(), "a third is refused");
        assert!(
            counter.try_open(-1).is_some(),
            "another caller is unaffected"
        );
        drop(a);
        assert!(
            counter.try_open(1).is_some(),
            "a closed socket frees its place"
        );
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
