//! The refresh policy, as pure functions: whether a queued refresh runs ([`runs`]), and what
//! a refresh's result means for the account ([`decide`]): the outcome recorded, the new
//! status, the event, the retry and the sweep claim. No I/O, no clock, no randomness (the
//! jitter is an input), so the whole policy is a table test: every error class against
//! every account status, plus success, nothing to do and the triggers.
//!
//! The lifecycle applies a [`Decision`] and decides nothing itself: [`super::refresh`] records
//! the status and the event of a failure, the queued refresh records the outcome, schedules
//! the retry and releases the claim.

use std::time::Duration;

use ring::rand::{SecureRandom, SystemRandom};

use entity::enums::{AccountStatus, ErrorClass, RefreshOutcome, RefreshTrigger};

use crate::{events::EventKind, providers::ProviderError};

/// What a refresh ran into.
#[derive(Clone, Copy, Debug)]
pub enum Observed<'a> {
    /// The platform issued new tokens, and they are stored.
    Refreshed,
    /// Refreshed moments ago (here or in another process): no provider call.
    AlreadyFresh,
    /// A queued refresh did not run: the token is not due (and the trigger does not force
    /// it), or the account is no longer refreshable (see [`runs`]).
    NotDue,
    /// The refresh did not start: the platform has no provider here, or the account became
    /// unrefreshable while the refresh waited for its turn.
    Refused(&'a ProviderError),
    /// The refresh failed: at the platform, or before asking it (an expired grant).
    Failed(&'a ProviderError),
}

/// The backoff between retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryRules {
    /// The delay before the first retry; it doubles with each failure in a row.
    pub first: Duration,
    /// The longest delay; also the slow retry of a configuration problem.
    pub cap: Duration,
}

impl Default for RetryRules {
    /// 30 s doubling up to 1 hour.
    fn default() -> Self {
        Self {
            first: Duration::from_secs(30),
            cap: Duration::from_secs(3600),
        }
    }
}

/// The backoff's jitter: a factor between 0.8 and 1.2, drawn by the caller so the policy
/// stays deterministic.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Jitter(f64);

impl Jitter {
    /// No jitter (factor 1).
    pub(crate) const NONE: Jitter = Jitter(1.0);

    /// The factor for a random byte: 0 → 0.8, 255 → 1.2.
    fn from_byte(byte: u8) -> Self {
        Jitter(0.8 + 0.4 * f64::from(byte) / 255.0)
    }

    /// A random factor (none when the system's random source fails).
    pub(crate) fn draw() -> Self {
        let mut byte = [0u8; 1];
        match SystemRandom::new().fill(&mut byte) {
            Ok(()) => Self::from_byte(byte[0]),
            Err(_) => Self::NONE,
        }
    }
}

/// The policy's inputs.
#[derive(Clone, Copy, Debug)]
pub struct Input<'a> {
    pub observed: Observed<'a>,
    /// The account's status when the refresh started.
    pub status: AccountStatus,
    /// Failures in a row including this attempt (1 = the first try after a success).
    pub attempt: u32,
    /// Why the refresh runs: on request (`Manual`) or queued (sweep, retry, bulk).
    pub trigger: RefreshTrigger,
    /// The backoff; the platform's Retry-After comes with the error.
    pub rules: RetryRules,
    pub jitter: Jitter,
}

/// What happens to the account's sweep claim (`oauth_tokens.sweep_claimed_until`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// The success cleared it, with the new tokens.
    ClearedBySuccess,
    /// Release it: nothing is scheduled; the sweep finds the account again when it is due.
    Release,
    /// Kept for the retry: the retry time (`next_refresh_at`) replaces it.
    KeptForRetry,
    /// An on-demand refresh holds no claim; a queued refresh's claim stays with its job.
    NotHeld,
}

/// What a refresh's result means.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Decision {
    /// Recorded with the attempt.
    pub outcome: RefreshOutcome,
    /// The account's new status; `None` leaves it as it is.
    pub status: Option<AccountStatus>,
    /// The event (and notification incident) to record; `None` records none. A failure
    /// with an event is recorded on the account (status, reason, audit, event, incident).
    pub event: Option<EventKind>,
    /// When to try again (queued refreshes only).
    pub retry_in: Option<Duration>,
    pub claim: Claim,
}

/// Statuses whose tokens are kept fresh.
fn is_refreshable(status: AccountStatus) -> bool {
    matches!(
        status,
        AccountStatus::Active | AccountStatus::RefreshFailing
    )
}

/// Whether a queued refresh runs: the account must be refreshable and its token due; a bulk
/// refresh (`refreshAccounts`) runs whether due or not.
pub fn runs(trigger: RefreshTrigger, status: AccountStatus, due: bool) -> bool {
    is_refreshable(status) && (due || trigger == RefreshTrigger::Bulk)
}

/// The delay before retry number `failures` (1 = the first retry): `rules.first` doubling
/// up to `rules.cap`, times the jitter, never sooner than the platform's Retry-After.
pub fn backoff(
    rules: RetryRules,
    failures: u32,
    retry_after: Option<Duration>,
    jitter: Jitter,
) -> Duration {
    let doubled = rules
        .first
        .saturating_mul(1 << failures.saturating_sub(1).min(7));
    let delay = doubled.min(rules.cap).mul_f64(jitter.0);
    retry_after.map_or(delay, |wait| delay.max(wait))
}

/// The policy. Rules, in order:
///
/// - A success makes a refreshable account `ACTIVE` with a `REFRESHED` event; an account
///   deactivated or disconnected meanwhile keeps its status (its tokens are stored, not
///   served). The store clears the claim.
/// - Nothing to do (fresh already, not due, refused before starting, or our own rate
///   limit used up so that nothing was sent): `SKIPPED`, the status left as it is, the
///   claim released.
/// - A failure records its outcome by class: transient → `FAILED_TRANSIENT`; too young to
///   refresh (Instagram's first day) → `SKIPPED`; dead grant, configuration, bad input →
///   `FAILED_PERMANENT`.
/// - A failure of an account that is no longer refreshable changes nothing else: the
///   deactivation, disconnect or dead grant recorded before wins.
/// - Transient (network, timeout, 5xx, 429 from the platform): `REFRESH_FAILING`,
///   `REFRESH_FAILED`, a retry with backoff.
/// - Too young: nothing else; the sweep's window knows when it is old enough.
/// - Dead grant: `RECONNECT_REQUIRED` (`EXPIRED` for the code `expired`), no retry.
/// - Configuration or bad input: the operator must act; the status stays (its reason
///   becomes the code), `REFRESH_FAILED`, a slow retry at the cap (about hourly).
/// - Only queued refreshes retry; an on-demand refresh (`Manual`) reports the failure to
///   its caller and holds no claim.
pub(crate) fn decide(input: Input<'_>) -> Decision {
    let queued = input.trigger != RefreshTrigger::Manual;
    let nothing = |outcome| Decision {
        outcome,
        status: None,
        event: None,
        retry_in: None,
        claim: if queued {
            Claim::Release
        } else {
            Claim::NotHeld
        },
    };
    let error = match input.observed {
        Observed::Refreshed => {
            let served = is_refreshable(input.status);
            return Decision {
                outcome: RefreshOutcome::Succeeded,
                status: served.then_some(AccountStatus::Active),
                event: served.then_some(EventKind::Refreshed),
                retry_in: None,
                claim: Claim::ClearedBySuccess,
            };
        }
        Observed::AlreadyFresh | Observed::NotDue | Observed::Refused(_) => {
            return nothing(RefreshOutcome::Skipped);
        }
        // Our own limiter refused before anything was sent (an on-demand refresh that
        // waited its limit): the platform saw nothing and the account is fine.
        Observed::Failed(error) if error.is_local_rate_limit() => {
            return nothing(RefreshOutcome::Skipped);
        }
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
        return nothing(outcome);
    }
    let expired = error.code == "expired";
    let (status, event, retry_in) = match error.class {
        ErrorClass::Transient => (
            Some(AccountStatus::RefreshFailing),
            Some(EventKind::RefreshFailed),
            Some(backoff(
                input.rules,
                input.attempt,
                error.retry_after,
                input.jitter,
            )),
        ),
        ErrorClass::NotRefreshableYet => (None, None, None),
        ErrorClass::GrantDead if expired => {
            (Some(AccountStatus::Expired), Some(EventKind::Expired), None)
        }
        ErrorClass::GrantDead => (
            Some(AccountStatus::ReconnectRequired),
            Some(EventKind::ReconnectRequired),
            None,
        ),
        ErrorClass::Config | ErrorClass::InvalidInput => (
            None,
            Some(EventKind::RefreshFailed),
            Some(backoff(input.rules, u32::MAX, None, input.jitter)),
        ),
    };
    let retry_in = retry_in.filter(|_| queued);
    Decision {
        outcome,
        status,
        event,
        retry_in,
        claim: match (queued, retry_in) {
            (false, _) => Claim::NotHeld,
            (true, Some(_)) => Claim::KeptForRetry,
            (true, None) => Claim::Release,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use AccountStatus::{
        Active, Deactivated, Disconnected, Expired, ReconnectRequired, RefreshFailing,
    };
    use Claim::{ClearedBySuccess, KeptForRetry, NotHeld, Release};
    use EventKind as E;
    use RefreshOutcome::{
        FailedPermanent as PERMANENT, FailedTransient as TRANSIENT, Skipped as SKIPPED,
        Succeeded as SUCCEEDED,
    };
    use RefreshTrigger::{Bulk, Manual, Retry, Sweep};

    const fn secs(secs: u64) -> Option<Duration> {
        Some(Duration::from_secs(secs))
    }

    fn error(class: ErrorClass, code: &str, retry_after: Option<u64>) -> ProviderError {
        ProviderError::new(class, code, "test")
            .with_retry_after(retry_after.map(Duration::from_secs))
    }

    /// What a refresh ran into, by name (the errors live for the whole test).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Seen {
        Refreshed,
        AlreadyFresh,
        NotDue,
        /// No provider configured for the platform.
        Refused,
        /// `http_503`.
        Transient,
        /// 429 with `Retry-After: 600`.
        RateLimited,
        /// Our own limiter refused before sending (`rate_limited_local`).
        LocalLimit,
        /// Instagram under 24 hours.
        TooYoung,
        /// `invalid_grant`.
        Revoked,
        /// The refresh token expired before the refresh.
        ExpiredGrant,
        /// `invalid_client`.
        Config,
        /// `invalid_request`.
        BadInput,
    }

    struct Errors {
        refused: ProviderError,
        transient: ProviderError,
        rate_limited: ProviderError,
        local_limit: ProviderError,
        too_young: ProviderError,
        revoked: ProviderError,
        expired: ProviderError,
        config: ProviderError,
        bad_input: ProviderError,
    }

    impl Errors {
        fn new() -> Self {
            Self {
                refused: error(ErrorClass::Config, "not_configured", None),
                transient: error(ErrorClass::Transient, "http_503", None),
                rate_limited: error(ErrorClass::Transient, "rate_limit_exceeded", Some(600)),
                local_limit: error(ErrorClass::Transient, "rate_limited_local", Some(1)),
                too_young: error(ErrorClass::NotRefreshableYet, "too_young", None),
                revoked: error(ErrorClass::GrantDead, "invalid_grant", None),
                expired: error(ErrorClass::GrantDead, "expired", None),
                config: error(ErrorClass::Config, "invalid_client", None),
                bad_input: error(ErrorClass::InvalidInput, "invalid_request", None),
            }
        }

        fn observed(&self, seen: Seen) -> Observed<'_> {
            match seen {
                Seen::Refreshed => Observed::Refreshed,
                Seen::AlreadyFresh => Observed::AlreadyFresh,
                Seen::NotDue => Observed::NotDue,
                Seen::Refused => Observed::Refused(&self.refused),
                Seen::Transient => Observed::Failed(&self.transient),
                Seen::RateLimited => Observed::Failed(&self.rate_limited),
                Seen::LocalLimit => Observed::Failed(&self.local_limit),
                Seen::TooYoung => Observed::Failed(&self.too_young),
                Seen::Revoked => Observed::Failed(&self.revoked),
                Seen::ExpiredGrant => Observed::Failed(&self.expired),
                Seen::Config => Observed::Failed(&self.config),
                Seen::BadInput => Observed::Failed(&self.bad_input),
            }
        }
    }

    type Row = (
        AccountStatus,
        Seen,
        RefreshTrigger,
        u32,
        RefreshOutcome,
        Option<AccountStatus>,
        Option<EventKind>,
        Option<Duration>,
        Claim,
    );

    /// The policy. Jitter 1; the backoff of attempt n is 30 s × 2^(n-1), at most 1 h.
    #[rustfmt::skip]
    const TABLE: &[Row] = &[
        // status            seen                 trigger attempt → outcome   new status                event                      retry in  claim
        // Success: a refreshable account is ACTIVE again; any other keeps its status.
        (Active,            Seen::Refreshed,     Sweep,  1,  SUCCEEDED, Some(Active),            Some(E::Refreshed),         None,     ClearedBySuccess),
        (RefreshFailing,    Seen::Refreshed,     Retry,  4,  SUCCEEDED, Some(Active),            Some(E::Refreshed),         None,     ClearedBySuccess),
        (RefreshFailing,    Seen::Refreshed,     Manual, 2,  SUCCEEDED, Some(Active),            Some(E::Refreshed),         None,     ClearedBySuccess),
        (ReconnectRequired, Seen::Refreshed,     Sweep,  1,  SUCCEEDED, None,                    None,                       None,     ClearedBySuccess),
        (Expired,           Seen::Refreshed,     Sweep,  1,  SUCCEEDED, None,                    None,                       None,     ClearedBySuccess),
        (Disconnected,      Seen::Refreshed,     Manual, 1,  SUCCEEDED, None,                    None,                       None,     ClearedBySuccess),
        (Deactivated,       Seen::Refreshed,     Bulk,   1,  SUCCEEDED, None,                    None,                       None,     ClearedBySuccess),
        // Nothing to do.
        (Active,            Seen::AlreadyFresh,  Sweep,  1,  SKIPPED,   None,                    None,                       None,     Release),
        (Active,            Seen::AlreadyFresh,  Manual, 1,  SKIPPED,   None,                    None,                       None,     NotHeld),
        (Active,            Seen::NotDue,        Sweep,  1,  SKIPPED,   None,                    None,                       None,     Release),
        (RefreshFailing,    Seen::NotDue,        Retry,  3,  SKIPPED,   None,                    None,                       None,     Release),
        (Deactivated,       Seen::NotDue,        Bulk,   1,  SKIPPED,   None,                    None,                       None,     Release),
        (Active,            Seen::Refused,       Sweep,  1,  SKIPPED,   None,                    None,                       None,     Release),
        (ReconnectRequired, Seen::Refused,       Retry,  2,  SKIPPED,   None,                    None,                       None,     Release),
        (Active,            Seen::Refused,       Manual, 1,  SKIPPED,   None,                    None,                       None,     NotHeld),
        // Transient: retried with backoff; Retry-After wins when longer.
        (Active,            Seen::Transient,     Sweep,  1,  TRANSIENT, Some(RefreshFailing),    Some(E::RefreshFailed),     secs(30),    KeptForRetry),
        (RefreshFailing,    Seen::Transient,     Retry,  3,  TRANSIENT, Some(RefreshFailing),    Some(E::RefreshFailed),     secs(120),   KeptForRetry),
        (RefreshFailing,    Seen::Transient,     Retry,  9,  TRANSIENT, Some(RefreshFailing),    Some(E::RefreshFailed),     secs(3600),  KeptForRetry),
        (Active,            Seen::Transient,     Bulk,   1,  TRANSIENT, Some(RefreshFailing),    Some(E::RefreshFailed),     secs(30),    KeptForRetry),
        (Active,            Seen::Transient,     Manual, 1,  TRANSIENT, Some(RefreshFailing),    Some(E::RefreshFailed),     None,     NotHeld),
        (Active,            Seen::RateLimited,   Sweep,  1,  TRANSIENT, Some(RefreshFailing),    Some(E::RefreshFailed),     secs(600),   KeptForRetry),
        (RefreshFailing,    Seen::RateLimited,   Retry,  7,  TRANSIENT, Some(RefreshFailing),    Some(E::RefreshFailed),     secs(1920),  KeptForRetry),
        // Our own rate limit, nothing sent: not the account's failure (no REFRESH_FAILING
        // because another tenant's bulk refresh used the app's capacity).
        (Active,            Seen::LocalLimit,    Manual, 1,  SKIPPED,   None,                    None,                       None,     NotHeld),
        (RefreshFailing,    Seen::LocalLimit,    Manual, 2,  SKIPPED,   None,                    None,                       None,     NotHeld),
        (Active,            Seen::LocalLimit,    Sweep,  1,  SKIPPED,   None,                    None,                       None,     Release),
        (ReconnectRequired, Seen::Transient,     Retry,  2,  TRANSIENT, None,                    None,                       None,     Release),
        (Expired,           Seen::Transient,     Retry,  2,  TRANSIENT, None,                    None,                       None,     Release),
        (Disconnected,      Seen::Transient,     Sweep,  1,  TRANSIENT, None,                    None,                       None,     Release),
        (Deactivated,       Seen::Transient,     Sweep,  1,  TRANSIENT, None,                    None,                       None,     Release),
        (Deactivated,       Seen::Transient,     Manual, 1,  TRANSIENT, None,                    None,                       None,     NotHeld),
        // Too young (Instagram's first day): nothing is wrong.
        (Active,            Seen::TooYoung,      Bulk,   1,  SKIPPED,   None,                    None,                       None,     Release),
        (RefreshFailing,    Seen::TooYoung,      Retry,  2,  SKIPPED,   None,                    None,                       None,     Release),
        (RefreshFailing,    Seen::TooYoung,      Manual, 2,  SKIPPED,   None,                    None,                       None,     NotHeld),
        (ReconnectRequired, Seen::TooYoung,      Sweep,  1,  SKIPPED,   None,                    None,                       None,     Release),
        (Expired,           Seen::TooYoung,      Sweep,  1,  SKIPPED,   None,                    None,                       None,     Release),
        (Disconnected,      Seen::TooYoung,      Sweep,  1,  SKIPPED,   None,                    None,                       None,     Release),
        (Deactivated,       Seen::TooYoung,      Sweep,  1,  SKIPPED,   None,                    None,                       None,     Release),
        // Dead grant: reconnect, no retry.
        (Active,            Seen::Revoked,       Sweep,  1,  PERMANENT, Some(ReconnectRequired), Some(E::ReconnectRequired), None,     Release),
        (RefreshFailing,    Seen::Revoked,       Retry,  5,  PERMANENT, Some(ReconnectRequired), Some(E::ReconnectRequired), None,     Release),
        (Active,            Seen::Revoked,       Manual, 1,  PERMANENT, Some(ReconnectRequired), Some(E::ReconnectRequired), None,     NotHeld),
        (Active,            Seen::ExpiredGrant,  Sweep,  1,  PERMANENT, Some(Expired),           Some(E::Expired),           None,     Release),
        (RefreshFailing,    Seen::ExpiredGrant,  Manual, 3,  PERMANENT, Some(Expired),           Some(E::Expired),           None,     NotHeld),
        (ReconnectRequired, Seen::Revoked,       Sweep,  1,  PERMANENT, None,                    None,                       None,     Release),
        (Expired,           Seen::Revoked,       Sweep,  1,  PERMANENT, None,                    None,                       None,     Release),
        (Expired,           Seen::ExpiredGrant,  Sweep,  1,  PERMANENT, None,                    None,                       None,     Release),
        (Disconnected,      Seen::Revoked,       Sweep,  1,  PERMANENT, None,                    None,                       None,     Release),
        (Deactivated,       Seen::Revoked,       Manual, 1,  PERMANENT, None,                    None,                       None,     NotHeld),
        // Configuration: the operator must act; the status stays, a slow retry.
        (Active,            Seen::Config,        Sweep,  1,  PERMANENT, None,                    Some(E::RefreshFailed),     secs(3600),  KeptForRetry),
        (RefreshFailing,    Seen::Config,        Retry,  2,  PERMANENT, None,                    Some(E::RefreshFailed),     secs(3600),  KeptForRetry),
        (Active,            Seen::Config,        Manual, 1,  PERMANENT, None,                    Some(E::RefreshFailed),     None,     NotHeld),
        (ReconnectRequired, Seen::Config,        Sweep,  1,  PERMANENT, None,                    None,                       None,     Release),
        (Expired,           Seen::Config,        Sweep,  1,  PERMANENT, None,                    None,                       None,     Release),
        (Disconnected,      Seen::Config,        Sweep,  1,  PERMANENT, None,                    None,                       None,     Release),
        (Deactivated,       Seen::Config,        Sweep,  1,  PERMANENT, None,                    None,                       None,     Release),
        // Bad input: like configuration.
        (Active,            Seen::BadInput,      Bulk,   1,  PERMANENT, None,                    Some(E::RefreshFailed),     secs(3600),  KeptForRetry),
        (RefreshFailing,    Seen::BadInput,      Retry,  2,  PERMANENT, None,                    Some(E::RefreshFailed),     secs(3600),  KeptForRetry),
        (RefreshFailing,    Seen::BadInput,      Manual, 2,  PERMANENT, None,                    Some(E::RefreshFailed),     None,     NotHeld),
        (ReconnectRequired, Seen::BadInput,      Sweep,  1,  PERMANENT, None,                    None,                       None,     Release),
        (Expired,           Seen::BadInput,      Sweep,  1,  PERMANENT, None,                    None,                       None,     Release),
        (Disconnected,      Seen::BadInput,      Sweep,  1,  PERMANENT, None,                    None,                       None,     Release),
        (Deactivated,       Seen::BadInput,      Sweep,  1,  PERMANENT, None,                    None,                       None,     Release),
    ];

    #[test]
    fn the_table() {
        let errors = Errors::new();
        for &(status, seen, trigger, attempt, outcome, new_status, event, retry_in, claim) in TABLE
        {
            let got = decide(Input {
                observed: errors.observed(seen),
                status,
                attempt,
                trigger,
                rules: RetryRules::default(),
                jitter: Jitter::NONE,
            });
            let want = Decision {
                outcome,
                status: new_status,
                event,
                retry_in,
                claim,
            };
            assert_eq!(
                got, want,
                "{status:?} × {seen:?} × {trigger:?} × attempt {attempt}"
            );
        }
    }

    /// Every error class meets every status in the table, and every trigger and result
    /// appears (a new class or status does not compile until the matches here name it).
    #[test]
    fn the_table_covers_every_class_status_and_trigger() {
        let errors = Errors::new();
        let class_of = |seen| match errors.observed(seen) {
            Observed::Failed(error) => Some(error.class),
            _ => None,
        };
        for status in AccountStatus::ALL {
            match status {
                Active | RefreshFailing | ReconnectRequired | Expired | Disconnected
                | Deactivated => {}
            }
            for class in [
                ErrorClass::Transient,
                ErrorClass::NotRefreshableYet,
                ErrorClass::GrantDead,
                ErrorClass::Config,
                ErrorClass::InvalidInput,
            ] {
                match class {
                    ErrorClass::Transient
                    | ErrorClass::NotRefreshableYet
                    | ErrorClass::GrantDead
                    | ErrorClass::Config
                    | ErrorClass::InvalidInput => {}
                }
                assert!(
                    TABLE
                        .iter()
                        .any(|row| row.0 == status && class_of(row.1) == Some(class)),
                    "{status:?} × {class:?} is missing from the table"
                );
            }
            assert!(
                TABLE
                    .iter()
                    .any(|row| row.0 == status && row.1 == Seen::Refreshed),
                "{status:?} × success"
            );
        }
        for trigger in [Manual, Sweep, Retry, Bulk] {
            assert!(TABLE.iter().any(|row| row.2 == trigger), "{trigger:?}");
        }
        for seen in [Seen::AlreadyFresh, Seen::NotDue, Seen::Refused] {
            assert!(TABLE.iter().any(|row| row.1 == seen), "{seen:?}");
        }
    }

    #[test]
    fn a_queued_refresh_runs_when_due_and_bulk_runs_anyway() {
        #[rustfmt::skip]
        let table = [
            // trigger status          due    → runs
            (Sweep, Active,            true,  true),
            (Sweep, Active,            false, false),
            (Retry, RefreshFailing,    true,  true),
            (Retry, RefreshFailing,    false, false),
            (Bulk,  Active,            false, true),
            (Bulk,  RefreshFailing,    false, true),
            (Bulk,  Deactivated,       false, false),
            (Sweep, ReconnectRequired, true,  false),
            (Sweep, Expired,           true,  false),
            (Retry, Disconnected,      true,  false),
            (Bulk,  Deactivated,       true,  false),
        ];
        for (trigger, status, due, want) in table {
            assert_eq!(
                runs(trigger, status, due),
                want,
                "{trigger:?} {status:?} due={due}"
            );
        }
    }

    #[test]
    fn backoff_grows_is_capped_jittered_and_honours_retry_after() {
        let rules = RetryRules::default();
        let delay = |failures| backoff(rules, failures, None, Jitter::NONE).as_secs();
        assert_eq!(
            [
                delay(1),
                delay(2),
                delay(3),
                delay(7),
                delay(8),
                delay(30),
                delay(u32::MAX)
            ],
            [30, 60, 120, 1920, 3600, 3600, 3600]
        );
        assert_eq!(
            backoff(rules, 1, None, Jitter::from_byte(0)),
            Duration::from_secs(24)
        );
        assert_eq!(
            backoff(rules, 1, None, Jitter::from_byte(255)),
            Duration::from_secs(36)
        );
        assert_eq!(
            backoff(rules, 1, secs(600), Jitter::NONE),
            Duration::from_secs(600)
        );
        assert_eq!(
            backoff(rules, 8, secs(600), Jitter::NONE),
            Duration::from_secs(3600)
        );
        for _ in 0..20 {
            let drawn = backoff(rules, 3, None, Jitter::draw()).as_secs_f64();
            assert!((96.0..=144.0).contains(&drawn), "{drawn}");
        }
    }
}
