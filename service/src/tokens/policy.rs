//! The refresh policy, as one pure function: what a refresh attempt's result means for the
//! account. No I/O, no clock, no randomness (the jitter is an input), so the whole table
//! — every error class against every account status — is a unit test.
//!
//! The lifecycle ([`super::refresh`]) applies a [`Decision`]: the account's status, the
//! event, the attempt's outcome, the retry and the sweep claim. Nothing else decides them.

use std::time::Duration;

use crate::{
    domain::AccountStatus,
    events::EventKind,
    providers::{ErrorClass, ProviderError},
    tokens::attempts::Outcome as RefreshOutcome,
};

/// The code of a refusal by this process's own rate limiter (no request was sent).
pub const LOCAL_RATE_LIMIT: &str = "rate_limited_local";

/// What a refresh attempt ran into.
#[derive(Clone, Copy, Debug)]
pub enum Observed<'a> {
    /// The platform issued new tokens, and they are stored.
    Refreshed,
    /// Nothing to do: refreshed moments ago (here or elsewhere), or not due.
    NothingToDo,
    /// The refresh failed (at the platform, or before it: an expired grant).
    Failed(&'a ProviderError),
}

/// The policy's inputs.
#[derive(Clone, Copy, Debug)]
pub struct Input<'a> {
    pub observed: Observed<'a>,
    /// The account's status when the result is applied (a deactivation meanwhile counts).
    pub status: AccountStatus,
    /// Failures in a row including this attempt (1 = the first failure).
    pub attempt: u32,
    /// Backoff jitter factor, 0.8–1.2 (drawn by the caller).
    pub jitter: f64,
}

/// What to do with the sweep claim of the account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// The success cleared it together with the new tokens.
    ClearedWithTokens,
    /// Release it: nothing is scheduled, the sweep may find the account again when due.
    Release,
    /// Replace it by the retry time (`next_refresh_at`).
    Retry,
}

/// What the attempt means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Recorded with the attempt.
    pub outcome: RefreshOutcome,
    /// The account's new status; `None` leaves it as it is.
    pub status: Option<AccountStatus>,
    /// The event (and notification incident) to record; `None` records none.
    pub event: Option<EventKind>,
    /// When to try again.
    pub retry_in: Option<Duration>,
    pub claim: Claim,
}

/// Statuses whose tokens are kept fresh.
pub fn is_refreshable(status: AccountStatus) -> bool {
    matches!(
        status,
        AccountStatus::Active | AccountStatus::RefreshFailing
    )
}

/// Delay before retry number `failures` (1 = first retry): 30 s doubling up to 1 h, times
/// `jitter`, never sooner than the provider's Retry-After.
pub fn backoff(failures: u32, retry_after: Option<Duration>, jitter: f64) -> Duration {
    let base = 30u64
        .saturating_mul(1 << failures.saturating_sub(1).min(7))
        .min(3600);
    let delay = Duration::from_secs_f64(base as f64 * jitter.clamp(0.5, 1.5));
    retry_after.map_or(delay, |wait| delay.max(wait))
}

/// The policy. Rules, in order:
///
/// - A success makes a refreshable account `ACTIVE` with a `REFRESHED` event; an account
///   deactivated or disconnected meanwhile keeps its status (its tokens are stored, not
///   served).
/// - Nothing to do: `SKIPPED`, the claim released.
/// - A failure on an account that is no longer refreshable changes nothing but the attempt:
///   the deactivation, disconnect or dead grant recorded meanwhile wins.
/// - Transient (network, 5xx, 429, a bare 401, an unparseable success): `REFRESH_FAILING`,
///   a retry with backoff. This process's own rate limiter refusing is not the account's
///   fault: no status change, no event.
/// - Not refreshable yet (Instagram under 24 h): `SKIPPED`; the sweep's window knows when.
/// - A dead grant: `RECONNECT_REQUIRED` (or `EXPIRED` for an expired one), no retry.
/// - Configuration or invalid input: the operator must act; the status stays, a slow retry
///   (about hourly).
pub fn decide(input: Input<'_>) -> Decision {
    let keep = |outcome| Decision {
        outcome,
        status: None,
        event: None,
        retry_in: None,
        claim: Claim::Release,
    };
    let error = match input.observed {
        Observed::Refreshed => {
            let served = is_refreshable(input.status);
            return Decision {
                outcome: RefreshOutcome::Succeeded,
                status: served.then_some(AccountStatus::Active),
                event: served.then_some(EventKind::Refreshed),
                retry_in: None,
                claim: Claim::ClearedWithTokens,
            };
        }
        Observed::NothingToDo => return keep(RefreshOutcome::Skipped),
        Observed::Failed(error) => error,
    };
    let outcome = match error.class {
        ErrorClass::Transient => RefreshOutcome::FailedTransient,
        ErrorClass::NotRefreshableYet => RefreshOutcome::Skipped,
        ErrorClass::GrantDead | ErrorClass::Config | ErrorClass::InvalidInput => {
            RefreshOutcome::FailedPermanent
        }
    };
    if !is_refreshable(input.status) {
        return keep(outcome);
    }
    let retry = |failures| Decision {
        outcome,
        status: None,
        event: Some(EventKind::RefreshFailed),
        retry_in: Some(backoff(failures, error.retry_after, input.jitter)),
        claim: Claim::Retry,
    };
    match error.class {
        ErrorClass::Transient if error.code == LOCAL_RATE_LIMIT => Decision {
            event: None,
            ..retry(input.attempt)
        },
        ErrorClass::Transient => Decision {
            status: Some(AccountStatus::RefreshFailing),
            ..retry(input.attempt)
        },
        ErrorClass::NotRefreshableYet => keep(outcome),
        ErrorClass::GrantDead => {
            let expired = error.code == "expired";
            Decision {
                outcome,
                status: Some(if expired {
                    AccountStatus::Expired
                } else {
                    AccountStatus::ReconnectRequired
                }),
                event: Some(if expired {
                    EventKind::Expired
                } else {
                    EventKind::ReconnectRequired
                }),
                retry_in: None,
                claim: Claim::Release,
            }
        }
        // The status stays; the error code becomes its reason. Checked again slowly.
        ErrorClass::Config | ErrorClass::InvalidInput => retry(u32::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(class: ErrorClass, code: &str, retry_after: Option<u64>) -> ProviderError {
        ProviderError::new(class, code, "test").with_retry_after(retry_after.map(Duration::from_secs))
    }

    fn decide_for(observed: Observed<'_>, status: AccountStatus, attempt: u32) -> Decision {
        decide(Input {
            observed,
            status,
            attempt,
            jitter: 1.0,
        })
    }

    const MIN: Duration = Duration::from_secs(60);

    /// Every error class (and the special codes) against every status.
    #[test]
    fn the_table() {
        use AccountStatus::*;
        use EventKind as E;
        use RefreshOutcome as O;
        let transient = error(ErrorClass::Transient, "http_503", None);
        let rate_limited = error(ErrorClass::Transient, "rate_limit_exceeded", Some(600));
        let local = error(ErrorClass::Transient, LOCAL_RATE_LIMIT, Some(1));
        let young = error(ErrorClass::NotRefreshableYet, "too_young", None);
        let revoked = error(ErrorClass::GrantDead, "invalid_grant", None);
        let expired = error(ErrorClass::GrantDead, "expired", None);
        let config = error(ErrorClass::Config, "invalid_client", None);
        let input = error(ErrorClass::InvalidInput, "invalid_request", None);
        // (error, outcome, status, event, retry in, claim) for a refreshable account on
        // its third failure in a row.
        let live: [(&ProviderError, O, Option<AccountStatus>, Option<E>, Option<Duration>, Claim); 8] = [
            (&transient, O::FailedTransient, Some(RefreshFailing), Some(E::RefreshFailed), Some(2 * MIN), Claim::Retry),
            (&rate_limited, O::FailedTransient, Some(RefreshFailing), Some(E::RefreshFailed), Some(10 * MIN), Claim::Retry),
            (&local, O::FailedTransient, None, None, Some(2 * MIN), Claim::Retry),
            (&young, O::Skipped, None, None, None, Claim::Release),
            (&revoked, O::FailedPermanent, Some(ReconnectRequired), Some(E::ReconnectRequired), None, Claim::Release),
            (&expired, O::FailedPermanent, Some(Expired), Some(E::Expired), None, Claim::Release),
            (&config, O::FailedPermanent, None, Some(E::RefreshFailed), Some(60 * MIN), Claim::Retry),
            (&input, O::FailedPermanent, None, Some(E::RefreshFailed), Some(60 * MIN), Claim::Retry),
        ];
        for status in AccountStatus::ALL {
            for (error, outcome, new_status, event, retry_in, claim) in live {
                let got = decide_for(Observed::Failed(error), status, 3);
                let want = if is_refreshable(status) {
                    Decision { outcome, status: new_status, event, retry_in, claim }
                } else {
                    // Deactivated, disconnected, reconnect required or expired meanwhile:
                    // that status wins; only the attempt is recorded.
                    Decision { outcome, status: None, event: None, retry_in: None, claim: Claim::Release }
                };
                assert_eq!(got, want, "{status:?} × {:?}/{}", error.class, error.code);
            }
            let success = decide_for(Observed::Refreshed, status, 3);
            assert_eq!(success.outcome, O::Succeeded);
            assert_eq!(success.claim, Claim::ClearedWithTokens);
            assert_eq!(success.retry_in, None);
            if is_refreshable(status) {
                assert_eq!((success.status, success.event), (Some(Active), Some(E::Refreshed)));
            } else {
                assert_eq!((success.status, success.event), (None, None), "{status:?}: stored, not served");
            }
            assert_eq!(
                decide_for(Observed::NothingToDo, status, 1),
                Decision { outcome: O::Skipped, status: None, event: None, retry_in: None, claim: Claim::Release }
            );
        }
        // Every class is in the table (a new class does not compile until it is).
        for (error, ..) in live {
            match error.class {
                ErrorClass::Transient
                | ErrorClass::NotRefreshableYet
                | ErrorClass::GrantDead
                | ErrorClass::Config
                | ErrorClass::InvalidInput => {}
            }
        }
        for class in [
            ErrorClass::Transient,
            ErrorClass::NotRefreshableYet,
            ErrorClass::GrantDead,
            ErrorClass::Config,
            ErrorClass::InvalidInput,
        ] {
            assert!(live.iter().any(|(e, ..)| e.class == class), "{class:?}");
        }
    }

    #[test]
    fn backoff_grows_is_capped_and_honours_retry_after() {
        let secs = |failures| backoff(failures, None, 1.0).as_secs();
        assert_eq!([secs(1), secs(2), secs(3), secs(7), secs(8), secs(30)], [30, 60, 120, 1920, 3600, 3600]);
        assert_eq!(backoff(1, None, 0.8), Duration::from_secs(24));
        assert_eq!(backoff(1, None, 1.2), Duration::from_secs(36));
        assert_eq!(backoff(1, Some(Duration::from_secs(600)), 1.0), Duration::from_secs(600));
    }
}
