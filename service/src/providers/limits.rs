//! Provider rate limits as the platforms count them: per app (client id), shared by every
//! process of the deployment, and per endpoint where the platform limits per endpoint.
//!
//! - **Where the count lives.** Production ([`RateLimits::redis`]): one GCRA state per
//!   limit in Redis, updated by one Lua script, so N `serve` and `worker` processes together
//!   stay within the app's limit. Embedded ([`RateLimits::local`]): in-process `governor`
//!   limiters. When Redis does not answer, a process falls back to its own local limiters
//!   (logged) rather than stopping provider calls.
//! - **What is limited.** The app-wide budget the operator configures
//!   (`TOKENWARDEN_TIKTOK_RATE_LIMIT`, e.g. `10/s` or `600/min`), plus the per-endpoint
//!   limits the platform documents: TikTok limits `/v2/user/info/` to 600 requests in a
//!   one-minute sliding window, "set and enforced separately" per API
//!   (developers.tiktok.com/doc/tiktok-api-v2-rate-limit). Meta documents no per-endpoint
//!   numbers for Instagram Login; it reports the app's usage in headers instead.
//! - **Who waits.** [`Priority::Interactive`] (a person is waiting: the OAuth callback,
//!   `accessToken`, `reportTokenRejected`, disconnect) waits up to
//!   [`RateLimits::interactive_wait`] for capacity, then fails with `rate_limited_local`
//!   before any HTTP request. [`Priority::Background`] (jobs) waits as long as it takes.
//! - **Meta usage headers.** `X-App-Usage` / `X-Business-Use-Case-Usage` percentages slow
//!   background calls from [`USAGE_SLOW_PERCENT`] on (each background call then counts
//!   several times against the app budget), so on-demand work keeps capacity; once Meta
//!   throttles with an `estimated_time_to_regain_access` (minutes, per
//!   developers.facebook.com/docs/graph-api/overview/rate-limiting), every call of the app
//!   waits until then (interactive ones fail at once with that `retry_after`) instead of
//!   calling Meta while it refuses.

use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::Utc;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use super::Platform;
use super::error::{ErrorClass, ProviderError, UsageReport};

/// Which platform endpoint a call goes to (for the limits a platform sets per endpoint).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// Code exchange, long-lived exchange and refresh (the token endpoints).
    Token,
    /// TikTok `/v2/oauth/revoke/`.
    Revoke,
    /// TikTok `/v2/user/info/`, Instagram `/me`.
    UserInfo,
}

impl Endpoint {
    /// Stable name (Redis key part, logs).
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Token => "token",
            Endpoint::Revoke => "revoke",
            Endpoint::UserInfo => "user_info",
        }
    }
}

/// Who is waiting for a provider call; decides how long it may wait for capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Priority {
    /// A person is waiting (OAuth callback, `accessToken`, disconnect): waits up to
    /// [`RateLimits::interactive_wait`], then fails with `rate_limited_local`. Not slowed by
    /// Meta's usage headers below 100 %.
    Interactive,
    /// Background work (refresh jobs, sweeps): waits as long as it takes, and is slowed
    /// down from [`USAGE_SLOW_PERCENT`] of Meta's reported usage on.
    Background,
}

/// From this percentage of Meta's reported usage on, background calls are slowed down.
pub(crate) const USAGE_SLOW_PERCENT: u32 = 75;

/// A rate: `count` calls per `period`, in bursts of up to `burst` (`count` 0 = unlimited).
///
/// Parsed from `10`, `10/s`, `600/min`, `5000/h` (the bare number is per second); the
/// burst is one period's worth, as `governor`'s quotas have it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateQuota {
    /// Calls per period; 0 switches the limit off.
    pub count: u32,
    /// The period.
    pub period: Duration,
    /// Calls allowed at once.
    pub burst: u32,
}

impl RateQuota {
    /// `count` calls per second, bursts of `count`.
    pub const fn per_second(count: u32) -> Self {
        Self {
            count,
            period: Duration::from_secs(1),
            burst: count,
        }
    }

    /// No limit.
    pub const fn unlimited() -> Self {
        Self::per_second(0)
    }

    /// At most `count` calls in **any** window of `window` (a sliding window, as TikTok
    /// counts): bursts of a tenth of `count`, and the rest spread so that burst + refill
    /// never exceeds `count` within one window.
    fn sliding_window(count: u32, window: Duration) -> Self {
        let burst = (count / 10).max(1);
        let spread = count.saturating_sub(burst).max(1);
        Self {
            count: spread,
            period: window,
            burst,
        }
    }

    /// Whether the quota limits anything.
    pub(crate) fn is_limited(&self) -> bool {
        self.count > 0 && !self.period.is_zero()
    }

    /// Time between two calls at the sustained rate.
    fn interval(&self) -> Duration {
        (self.period / self.count.max(1)).max(Duration::from_micros(1))
    }
}

impl std::fmt::Display for RateQuota {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let unit = match self.period.as_secs() {
            60 => "min",
            3600 => "h",
            _ => "s",
        };
        write!(f, "{}/{unit}", self.count)
    }
}

impl FromStr for RateQuota {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (count, unit) = s.split_once('/').unwrap_or((s, "s"));
        let count: u32 = count.trim().parse().map_err(|_| {
            format!("{s:?} is not a rate: use calls per period, e.g. 10/s, 600/min or 5000/h")
        })?;
        let period = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            other => return Err(format!("unknown rate period {other:?}: use s, min or h")),
        };
        Ok(Self {
            count,
            period,
            burst: count,
        })
    }
}

/// The limits that the platform documents per endpoint.
fn documented_endpoint_limits(platform: Platform) -> Vec<(Endpoint, RateQuota)> {
    match platform {
        // "/v2/user/info/ 600 ... based on a one minute sliding window"
        // (developers.tiktok.com/doc/tiktok-api-v2-rate-limit). The token and revoke
        // endpoints have no documented limit: the app-wide budget covers them.
        Platform::TikTok => vec![(
            Endpoint::UserInfo,
            RateQuota::sliding_window(600, Duration::from_secs(60)),
        )],
        // Meta rate-limits Instagram Login apps by usage (headers), not per endpoint.
        Platform::Instagram => Vec::new(),
    }
}

/// The GCRA script: every key's theoretical arrival time (TAT) moves by `cost` intervals,
/// all or none. Returns 0 when the call may go, else the microseconds to wait.
/// KEYS: limit keys. ARGV: cost, then per key its interval and capacity (burst × interval)
/// in microseconds. Redis' own clock is used, so processes on different hosts agree.
const GCRA_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local cost = tonumber(ARGV[1])
local wait = 0
local tats = {}
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[2 * i])
  local capacity = tonumber(ARGV[2 * i + 1])
  local tat = tonumber(redis.call('GET', key) or '0') or 0
  if tat < now then tat = now end
  local new_tat = tat + cost * interval
  local over = new_tat - now - capacity
  if over > wait then wait = over end
  tats[i] = new_tat
end
if wait > 0 then return math.ceil(wait) end
for i, key in ipairs(KEYS) do
  local ttl = math.ceil((tats[i] - now) / 1000) + 1000
  redis.call('SET', key, string.format('%.0f', tats[i]), 'PX', string.format('%.0f', ttl))
end
return 0
";

/// Where the counts live.
enum Backend {
    /// In this process only (embedded mode).
    Local,
    /// In Redis, shared by every process with the same prefix.
    Redis {
        conn: redis::aio::ConnectionManager,
        prefix: String,
        script: redis::Script,
        /// Whether the last Redis call failed (logs only the transitions).
        degraded: AtomicBool,
    },
}

/// The deployment's rate-limit store and waiting policy, shared by every app's limiter.
pub struct RateLimits {
    backend: Backend,
    interactive_wait: Duration,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let backend = match &self.backend {
            Backend::Local => "local",
            Backend::Redis { .. } => "redis",
        };
        f.debug_struct("RateLimits")
            .field("backend", &backend)
            .field("interactive_wait", &self.interactive_wait)
            .finish()
    }
}

/// How long Redis may take to answer a limiter call before the local limiters decide.
const REDIS_TIMEOUT: Duration = Duration::from_millis(500);

impl RateLimits {
    /// Limits counted in this process (embedded mode, tests).
    pub fn local(interactive_wait: Duration) -> Self {
        Self {
            backend: Backend::Local,
            interactive_wait,
        }
    }

    /// Limits counted in Redis under `<prefix>:rate:...`, shared by every process with the
    /// same prefix.
    pub async fn redis(
        url: &str,
        prefix: &str,
        interactive_wait: Duration,
    ) -> Result<Self, ProviderError> {
        let unreachable = |e: redis::RedisError| {
            ProviderError::config(
                "rate_limit_store",
                format!("connecting to Redis for the shared rate limits: {e}"),
            )
        };
        let client = redis::Client::open(url).map_err(unreachable)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT))
            .set_number_of_retries(1);
        let conn = client
            .get_connection_manager_with_config(config)
            .await
            .map_err(unreachable)?;
        Ok(Self {
            backend: Backend::Redis {
                conn,
                prefix: prefix.to_owned(),
                script: redis::Script::new(GCRA_SCRIPT),
                degraded: AtomicBool::new(false),
            },
            interactive_wait,
        })
    }

    /// How long an interactive call waits for capacity.
    pub fn interactive_wait(&self) -> Duration {
        self.interactive_wait
    }
}

/// One configured limit of an app: its quota, its Redis key, its local limiter.
struct Limit {
    quota: RateQuota,
    key: String,
    local: DefaultDirectRateLimiter,
}

impl Limit {
    fn new(quota: RateQuota, key: String) -> Option<Self> {
        if !quota.is_limited() {
            return None;
        }
        let burst = NonZeroU32::new(quota.burst.max(1))?;
        let local = RateLimiter::direct(Quota::with_period(quota.interval())?.allow_burst(burst));
        Some(Self { quota, key, local })
    }

    /// Takes `cost` cells locally, or says how long to wait.
    fn take_local(&self, cost: u32) -> Result<(), Duration> {
        let n = NonZeroU32::new(cost.clamp(1, self.quota.burst.max(1))).unwrap_or(NonZeroU32::MIN);
        match self.local.check_n(n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(not_until.wait_time_from(DefaultClock::default().now())),
            // Cannot happen (n is capped at the burst); wait one interval.
            Err(_) => Err(self.quota.interval()),
        }
    }
}

/// The limiter of one app (platform + client id): the app-wide budget plus the documented
/// per-endpoint limits, and the latest Meta usage seen. Shared by all handles of the app.
pub struct AppLimiter {
    platform: Platform,
    app: Option<Limit>,
    endpoints: Vec<(Endpoint, Limit)>,
    limits: Arc<RateLimits>,
    usage: Mutex<Option<UsageReport>>,
}

impl std::fmt::Debug for AppLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppLimiter")
            .field("platform", &self.platform)
            .field("app", &self.app.as_ref().map(|l| l.quota))
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl AppLimiter {
    /// The limiter of the app `client_id` of `platform` with the app-wide budget `app`.
    /// An unlimited `app` budget (0) switches off the endpoint limits too (tests, tools).
    pub fn new(
        limits: Arc<RateLimits>,
        platform: Platform,
        client_id: &str,
        app: RateQuota,
    ) -> Self {
        let key = |what: &str| format!("rate:{}:{client_id}:{what}", platform.as_str());
        let endpoints = if app.is_limited() {
            documented_endpoint_limits(platform)
                .into_iter()
                .filter_map(|(e, q)| Limit::new(q, key(e.as_str())).map(|l| (e, l)))
                .collect()
        } else {
            Vec::new()
        };
        Self {
            platform,
            app: Limit::new(app, key("app")),
            endpoints,
            limits,
            usage: Mutex::new(None),
        }
    }

    /// The app-wide budget.
    pub(crate) fn app_quota(&self) -> Option<RateQuota> {
        self.app.as_ref().map(|l| l.quota)
    }

    /// Waits for capacity for one call to `endpoint` as `priority` allows, and takes it.
    /// Fails with `Transient` / `rate_limited_local` (and the wait as `retry_after`) when an
    /// interactive call would have to wait longer than the interactive wait.
    pub(crate) async fn acquire(
        &self,
        endpoint: Endpoint,
        priority: Priority,
    ) -> Result<(), ProviderError> {
        let deadline = match priority {
            Priority::Interactive => {
                Some(tokio::time::Instant::now() + self.limits.interactive_wait)
            }
            Priority::Background => None,
        };
        loop {
            let wait = match self.usage_wait() {
                Some(wait) => wait,
                None => match self.try_take(endpoint, self.cost(priority)).await {
                    Ok(()) => return Ok(()),
                    Err(wait) => wait,
                },
            };
            let wait = wait.max(Duration::from_millis(1));
            if let Some(deadline) = deadline
                && tokio::time::Instant::now() + wait > deadline
            {
                return Err(self.refused(wait));
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// Takes capacity now or fails with `rate_limited_local` (never waits).
    pub async fn try_acquire(&self, endpoint: Endpoint) -> Result<(), ProviderError> {
        if let Some(wait) = self.usage_wait() {
            return Err(self.refused(wait));
        }
        self.try_take(endpoint, 1)
            .await
            .map_err(|wait| self.refused(wait))
    }

    /// Records the usage Meta reported with a response.
    pub(crate) fn note_usage(&self, usage: UsageReport) {
        *self.usage.lock().unwrap_or_else(PoisonError::into_inner) = Some(usage);
    }

    /// The latest usage Meta reported.
    pub fn last_usage(&self) -> Option<UsageReport> {
        *self.usage.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// While Meta reports 100 % with an `estimated_time_to_regain_access`: how long until
    /// then. (100 % without an estimate only slows background calls down, see
    /// [`AppLimiter::cost`].)
    fn usage_wait(&self) -> Option<Duration> {
        let usage = self.last_usage().filter(UsageReport::is_exhausted)?;
        let regain = usage.regain_access_after?;
        let until = usage.observed_at + chrono::Duration::from_std(regain).ok()?;
        (until - Utc::now()).to_std().ok().filter(|d| !d.is_zero())
    }

    /// How many cells a call costs: 1, and more for background calls while Meta's usage is
    /// high (at 90 % a background call counts 3 times, at 95 % 5 times), so on-demand work
    /// keeps most of the budget.
    fn cost(&self, priority: Priority) -> u32 {
        if priority == Priority::Interactive {
            return 1;
        }
        let Some(percent) = self.last_usage().map(|u| u.max_percent()) else {
            return 1;
        };
        if percent < USAGE_SLOW_PERCENT {
            return 1;
        }
        let left = 100u32.saturating_sub(percent).max(1);
        (100 - USAGE_SLOW_PERCENT).div_ceil(left)
    }

    /// Takes `cost` cells of every limit that applies to `endpoint` (app-wide + endpoint),
    /// in Redis when shared (falling back to the local limiters when Redis fails).
    async fn try_take(&self, endpoint: Endpoint, cost: u32) -> Result<(), Duration> {
        let applicable: Vec<&Limit> = self
            .endpoints
            .iter()
            .filter(|(e, _)| *e == endpoint)
            .map(|(_, l)| l)
            .chain(self.app.as_ref())
            .collect();
        if applicable.is_empty() {
            return Ok(());
        }
        // More than a burst could never be taken at once.
        let cost = applicable
            .iter()
            .map(|l| l.quota.burst.max(1))
            .fold(cost.max(1), u32::min);
        if let Backend::Redis {
            conn,
            prefix,
            script,
            degraded,
        } = &self.limits.backend
        {
            let mut invocation = script.prepare_invoke();
            invocation.arg(cost);
            for limit in &applicable {
                let interval = limit.quota.interval().as_micros() as u64;
                let capacity = interval.saturating_mul(u64::from(limit.quota.burst.max(1)));
                invocation
                    .key(format!("{prefix}:{}", limit.key))
                    .arg(interval)
                    .arg(capacity);
            }
            let mut conn = conn.clone();
            let answer =
                tokio::time::timeout(REDIS_TIMEOUT, invocation.invoke_async::<i64>(&mut conn))
                    .await;
            match answer {
                Ok(Ok(wait_us)) => {
                    if degraded.swap(false, Ordering::Relaxed) {
                        tracing::info!(
                            platform = self.platform.as_str(),
                            "shared rate limits: Redis answers again"
                        );
                    }
                    return if wait_us <= 0 {
                        Ok(())
                    } else {
                        Err(Duration::from_micros(wait_us.unsigned_abs()))
                    };
                }
                Ok(Err(err)) => {
                    if !degraded.swap(true, Ordering::Relaxed) {
                        tracing::warn!(platform = self.platform.as_str(), error = %err, "shared rate limits: Redis failed; counting in this process until it answers");
                    }
                }
                Err(_) => {
                    if !degraded.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            platform = self.platform.as_str(),
                            "shared rate limits: Redis timed out; counting in this process until it answers"
                        );
                    }
                }
            }
        }
        for limit in applicable {
            limit.take_local(cost)?;
        }
        Ok(())
    }

    fn refused(&self, wait: Duration) -> ProviderError {
        metrics::counter!("tokenwarden_provider_rate_limited_local_total", "platform" => self.platform.as_str()).increment(1);
        ProviderError::new(
            ErrorClass::Transient,
            super::error::LOCAL_RATE_LIMIT,
            format!(
                "the {} app's rate limit is reached; retry shortly",
                self.platform.display_name()
            ),
        )
        .with_retry_after(Some(wait.max(Duration::from_millis(1))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(app: RateQuota, wait: Duration) -> AppLimiter {
        AppLimiter::new(
            Arc::new(RateLimits::local(wait)),
            Platform::TikTok,
            "ck",
            app,
        )
    }

    #[test]
    fn quotas_parse() {
        assert_eq!("10".parse::<RateQuota>(), Ok(RateQuota::per_second(10)));
        let q: RateQuota = "600/min".parse().unwrap();
        assert_eq!(
            (q.count, q.period, q.burst),
            (600, Duration::from_secs(60), 600)
        );
        assert_eq!(q.to_string(), "600/min");
        assert_eq!(
            "5/h".parse::<RateQuota>().unwrap().period,
            Duration::from_secs(3600)
        );
        assert!(!"0".parse::<RateQuota>().unwrap().is_limited());
        assert!("ten".parse::<RateQuota>().is_err());
        assert!("10/day".parse::<RateQuota>().is_err());
        // Burst + refill within one window never exceeds the documented count.
        let s = RateQuota::sliding_window(600, Duration::from_secs(60));
        assert_eq!(s.burst + s.count, 600);
    }

    #[tokio::test]
    async fn interactive_calls_wait_then_fail_background_calls_wait() {
        let l = limiter(RateQuota::per_second(2), Duration::ZERO);
        l.acquire(Endpoint::Token, Priority::Interactive)
            .await
            .unwrap();
        l.acquire(Endpoint::Token, Priority::Interactive)
            .await
            .unwrap();
        let err = l
            .acquire(Endpoint::Token, Priority::Interactive)
            .await
            .unwrap_err();
        assert_eq!(
            (err.class, err.code.as_str()),
            (ErrorClass::Transient, "rate_limited_local")
        );
        assert!(err.retry_after.is_some_and(|d| d <= Duration::from_secs(1)));
        tokio::time::timeout(
            Duration::from_secs(3),
            l.acquire(Endpoint::Token, Priority::Background),
        )
        .await
        .unwrap()
        .unwrap();
        let waiting = limiter(RateQuota::per_second(1), Duration::from_secs(5));
        waiting
            .acquire(Endpoint::Token, Priority::Interactive)
            .await
            .unwrap();
        // Within the interactive wait: waits instead of failing.
        waiting
            .acquire(Endpoint::Token, Priority::Interactive)
            .await
            .unwrap();
        let unlimited = limiter(RateQuota::unlimited(), Duration::ZERO);
        for _ in 0..1000 {
            unlimited.try_acquire(Endpoint::UserInfo).await.unwrap();
        }
    }

    #[tokio::test]
    async fn tiktok_user_info_has_its_own_limit() {
        let l = limiter(RateQuota::per_second(1000), Duration::ZERO);
        for _ in 0..60 {
            l.try_acquire(Endpoint::UserInfo).await.unwrap();
        }
        // The burst of the documented 600-per-minute window is spent; tokens still flow.
        assert!(l.try_acquire(Endpoint::UserInfo).await.is_err());
        l.try_acquire(Endpoint::Token).await.unwrap();
    }

    #[tokio::test]
    async fn meta_usage_slows_background_and_stops_at_100() {
        let l = limiter(RateQuota::per_second(10), Duration::ZERO);
        let usage = |pct: u32, regain: Option<u64>| UsageReport {
            call_count: pct,
            total_time: 0,
            total_cputime: 0,
            regain_access_after: regain.map(|m| Duration::from_secs(m * 60)),
            observed_at: Utc::now(),
        };
        assert_eq!(l.cost(Priority::Background), 1);
        l.note_usage(usage(90, None));
        assert_eq!(l.cost(Priority::Background), 3);
        assert_eq!(l.cost(Priority::Interactive), 1);
        l.note_usage(usage(99, None));
        assert_eq!(l.cost(Priority::Background), 25);
        // 100 % without an estimate: interactive calls still go.
        l.note_usage(usage(100, None));
        l.acquire(Endpoint::Token, Priority::Interactive)
            .await
            .unwrap();
        l.note_usage(usage(100, Some(3)));
        let err = l
            .acquire(Endpoint::Token, Priority::Interactive)
            .await
            .unwrap_err();
        let wait = err.retry_after.unwrap();
        assert!(
            wait > Duration::from_secs(170) && wait <= Duration::from_secs(180),
            "{wait:?}"
        );
    }
}
