//! Priority between the two kinds of refresh. An on-demand refresh (`accessToken`,
//! `refreshAccountToken`) has a caller waiting; background refreshes (sweep, retries, bulk)
//! can wait. Two small mechanisms in front of the provider's own rate limiter (caller
//! side), per platform:
//!
//! - **A reserve.** Background work is admitted at most at `1 - reserve` of the platform's
//!   configured rate, with at most half a second of burst, so the provider bucket refills
//!   faster than background work drains it and normally has capacity for on-demand calls.
//! - **Yield.** An on-demand refresh that still finds the bucket empty waits for it (up to
//!   [`ON_DEMAND_WAIT`]) instead of failing at once, and while it waits no background
//!   refresh is admitted: it gets the next permit. So one tenant's bulk refresh cannot make
//!   another tenant's `accessToken` fail with RATE_LIMITED.
//!
//! Both are per process: with several worker processes sharing one app limit, each admits
//! up to its own share.

use std::{
    num::NonZeroU32,
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::{domain::Platform, providers::Providers};

/// The share of each platform's rate limit kept for on-demand refreshes by default.
pub(crate) const DEFAULT_RESERVE: f64 = 0.05;
/// How long an on-demand refresh waits for rate-limit capacity before it fails with
/// RATE_LIMITED.
pub(crate) const ON_DEMAND_WAIT: Duration = Duration::from_secs(2);

/// Which lane a refresh runs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    /// A caller is waiting: goes first, fails fast when the platform limit is reached.
    OnDemand,
    /// Sweep, retry or bulk work: admitted below the limit, waits for capacity.
    Background,
}

/// The background gates of the configured platforms, and the on-demand refreshes
/// waiting for capacity.
#[derive(Debug, Default)]
pub struct Lanes {
    tiktok: Option<DefaultDirectRateLimiter>,
    instagram: Option<DefaultDirectRateLimiter>,
    waiting: [AtomicUsize; 2],
}

/// An on-demand refresh waiting for rate-limit capacity; background work yields until it
/// is dropped.
#[derive(Debug)]
pub struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// `(per second, burst)` of background admissions for a platform limit of `per_second`
/// calls with `reserve` kept free; `None` when the platform is unlimited.
fn background_quota(per_second: u32, reserve: f64) -> Option<(f64, u32)> {
    if per_second == 0 {
        return None;
    }
    let reserve = reserve.clamp(0.0, 0.9);
    let rate = (f64::from(per_second) * (1.0 - reserve)).max(0.5);
    // Half a second of background burst at most: the provider bucket (one second of
    // burst) keeps at least half of its capacity for on-demand refreshes.
    let burst = ((rate / 2.0).floor() as u32).max(1);
    Some((rate, burst))
}

fn gate(per_second: u32, reserve: f64) -> Option<DefaultDirectRateLimiter> {
    let (rate, burst) = background_quota(per_second, reserve)?;
    let quota = Quota::with_period(Duration::from_secs_f64(1.0 / rate))?
        .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN));
    Some(RateLimiter::direct(quota))
}

impl Lanes {
    /// Gates for the platforms of `providers`, keeping `reserve` (0–0.9) of each limit free.
    pub fn new(providers: &Providers, reserve: f64) -> Self {
        let limit = |platform| {
            providers
                .rate_limiter(platform)
                .ok()
                .and_then(|limiter| limiter.app_quota())
                .filter(|quota| quota.is_limited())
                // Calls per second of the app's quota; slower quotas count as 1/s.
                .map(|quota| {
                    let per_second = f64::from(quota.count) / quota.period.as_secs_f64().max(1e-3);
                    (per_second.floor() as u32).max(1)
                })
                .unwrap_or(0)
        };
        Self {
            tiktok: gate(limit(Platform::TikTok), reserve),
            instagram: gate(limit(Platform::Instagram), reserve),
            waiting: Default::default(),
        }
    }

    fn waiting_count(&self, platform: Platform) -> &AtomicUsize {
        match platform {
            Platform::TikTok => &self.waiting[0],
            Platform::Instagram => &self.waiting[1],
        }
    }

    /// Waits until a background refresh may call `platform`: within the background share,
    /// and not while an on-demand refresh waits for capacity.
    pub(crate) async fn admit_background(&self, platform: Platform) {
        let gate = match platform {
            Platform::TikTok => &self.tiktok,
            Platform::Instagram => &self.instagram,
        };
        if let Some(gate) = gate {
            gate.until_ready().await;
        }
        while self.waiting_count(platform).load(Ordering::SeqCst) > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Marks an on-demand refresh of `platform` as waiting for capacity until the returned
    /// guard is dropped.
    pub(crate) fn on_demand_waiting(&self, platform: Platform) -> Waiting<'_> {
        let count = self.waiting_count(platform);
        count.fetch_add(1, Ordering::SeqCst);
        Waiting(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn background_work_leaves_a_share_and_half_the_burst_free() {
        assert_eq!(background_quota(0, DEFAULT_RESERVE), None, "unlimited");
        assert_eq!(background_quota(2000, 0.05), Some((1900.0, 950)));
        let (rate, burst) = background_quota(5, 0.05).expect("limited");
        assert!((rate - 4.75).abs() < 1e-9);
        assert_eq!(burst, 2);
        // Even a limit of one call per second keeps some room.
        assert_eq!(background_quota(1, 0.05), Some((0.95, 1)));
        // A reserve is never all of the limit.
        let (rate, burst) = background_quota(10, 5.0).expect("limited");
        assert!((rate - 1.0).abs() < 1e-9, "{rate}");
        assert_eq!(burst, 1);
    }
}
