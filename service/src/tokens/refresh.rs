//! The refresh use cases: [`refresh`] for a request (`refreshAccountToken`, `accessToken`,
//! `reportTokenRejected`) and [`run_queued`] for a queued job (sweep, retry, bulk). Both are
//! single-flight: one refresh per account at a time in a process (an async mutex), and
//! across processes (a lease on the token row, then a compare-and-swap on its version).
//! The new tokens are stored before anything else can fail, because a rotated-out TikTok
//! refresh token is gone for good. What a result means is the [`policy`]'s decision; this
//! module applies it.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use chrono::Utc;
use entity::{oauth_token, social_account};
use sea_orm::{ConnectionTrait, DatabaseConnection, TransactionSession, TransactionTrait};
use serde_json::json;
use tracing::Instrument;

use crate::{
    connections::accounts::{self, TARGET},
    domain::{AccountStatus, Platform},
    engine::{Engine, LastOutcome},
    error::{ServiceError, ServiceResult},
    events::{self, EventKind, NewEvent},
    identity::audit::{self, AuditAction, Target},
    identity::caller::Actor,
    providers::{ErrorClass, ProviderError},
    tokens,
    tokens::lanes::Lane,
    tokens::policy::{self, Claim, Decision, Observed},
    tokens::queue::{JobQueue, QueuedRefresh, Trigger},
    tokens::sweep::{self, SweepSettings},
    tokens::vault::TokenKind,
};

/// How a refresh is run.
#[derive(Clone, Debug)]
pub struct RefreshOptions {
    /// Who asked, for the audit log.
    pub actor: Actor,
    /// On demand (a caller waits: goes first, fails fast when rate limited) or background
    /// (admitted below the rate limit, waits for capacity). See [`tokens::lanes`].
    pub lane: Lane,
    /// Why the refresh runs (the policy's input, and the attempt's trigger).
    pub trigger: Trigger,
    /// Record the attempt in `refresh_attempts`. Requests do; queued refreshes record their
    /// own attempts (with their retry schedule).
    pub record: bool,
}

impl RefreshOptions {
    /// A refresh on behalf of an API request: goes first, fails fast when rate limited.
    pub fn on_request(actor: Actor) -> Self {
        Self {
            actor,
            lane: Lane::OnDemand,
            trigger: Trigger::Manual,
            record: true,
        }
    }

    /// A refresh from a background job: waits for rate-limit capacity, leaving the
    /// on-demand reserve free. The caller records the attempt.
    pub fn in_job(actor: Actor) -> Self {
        Self::queued(actor, Trigger::Sweep)
    }

    /// A queued refresh (see [`run_queued`]).
    pub fn queued(actor: Actor, trigger: Trigger) -> Self {
        Self {
            actor,
            lane: Lane::Background,
            trigger,
            record: false,
        }
    }
}

/// What a refresh did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefreshKind {
    /// The provider issued new tokens.
    Refreshed,
    /// The tokens were refreshed moments ago (here or in another process); no provider call.
    AlreadyFresh,
    /// The refresh failed; see `error`.
    Failed,
}

/// The account after a refresh, and the failure if there was one.
#[derive(Clone, Debug)]
pub struct RefreshReport {
    pub account: social_account::Model,
    pub kind: RefreshKind,
    pub error: Option<ProviderError>,
}

impl RefreshReport {
    /// The result, as the [`policy`] reads it.
    pub(crate) fn observed(&self) -> Observed<'_> {
        match (&self.kind, &self.error) {
            (RefreshKind::Refreshed, _) => Observed::Refreshed,
            (RefreshKind::AlreadyFresh, _) => Observed::AlreadyFresh,
            (RefreshKind::Failed, Some(error)) => Observed::Failed(error),
            (RefreshKind::Failed, None) => Observed::Failed(&UNKNOWN_FAILURE),
        }
    }
}

/// A failure without its error (never built): transient, so it is retried.
static UNKNOWN_FAILURE: std::sync::LazyLock<ProviderError> = std::sync::LazyLock::new(|| {
    ProviderError::new(ErrorClass::Transient, "unknown", "the refresh failed")
});

/// Refuses accounts that cannot be refreshed or read at all.
pub(crate) fn ensure_usable_status(account: &social_account::Model) -> ServiceResult<()> {
    let status: AccountStatus = account.status;
    match status {
        AccountStatus::Active | AccountStatus::RefreshFailing => Ok(()),
        AccountStatus::ReconnectRequired | AccountStatus::Expired => Err(ServiceError::Provider(
            account.platform,
            ProviderError::new(
                ErrorClass::GrantDead,
                account
                    .status_reason
                    .clone()
                    .unwrap_or_else(|| status.as_str().to_lowercase()),
                "the account must be reconnected before its tokens can be used",
            ),
        )),
        AccountStatus::Disconnected => Err(ServiceError::bad_input(
            "the account is disconnected; connect it again",
        )),
        AccountStatus::Deactivated => Err(ServiceError::bad_input(
            "the account is deactivated; reactivate it first",
        )),
    }
}

/// Refreshes the tokens of one account of `tenant_id` now. Concurrent calls for the same
/// account share one provider call; a call within `min_refresh_interval` of a success
/// returns without calling the provider.
///
/// The refresh runs in a task of its own: if the caller goes away (an HTTP client
/// disconnects, a worker is torn down), the provider call and the storing of its rotated
/// tokens still complete. Dropping it halfway could lose a refresh token for good.
pub async fn refresh(
    db: &DatabaseConnection,
    engine: &Arc<Engine>,
    tenant_id: i64,
    account_id: i64,
    options: RefreshOptions,
) -> ServiceResult<RefreshReport> {
    let db = db.clone();
    let engine = engine.clone();
    tokio::spawn(
        async move { refresh_detached(&db, &engine, tenant_id, account_id, options).await },
    )
    .await
    .map_err(|err| ServiceError::Internal(format!("the refresh task failed: {err}")))?
}

async fn refresh_detached(
    db: &DatabaseConnection,
    engine: &Engine,
    tenant_id: i64,
    account_id: i64,
    options: RefreshOptions,
) -> ServiceResult<RefreshReport> {
    let asked_at = Instant::now();
    let slot = engine.locks.slot(account_id);
    let mut last = slot.lock().await;
    let account = accounts::find(db, tenant_id, account_id)
        .await?
        .ok_or(ServiceError::NotFound("account"))?;
    if let Some(shared) = shared_result(last.as_ref(), asked_at, &account) {
        return Ok(shared);
    }
    ensure_usable_status(&account)?;
    let token = tokens::find_by_account(db, account_id)
        .await?
        .ok_or_else(|| ServiceError::bad_input("the account has no tokens; reconnect it"))?;
    let status: AccountStatus = account.status;
    let attempt = token.failure_count + 1;
    let started_at = Utc::now();
    let report = refresh_locked(db, engine, account, token, &options).await?;
    *last = Some(LastOutcome {
        at: Instant::now(),
        error: report.error.clone(),
    });
    if options.record {
        let decision = decide(report.observed(), status, attempt, options.trigger);
        let error = report.error.as_ref();
        let recorded = tokens::attempts::record(
            db,
            attempt_row(
                &report.account,
                attempt,
                options.trigger,
                started_at,
                &decision,
                error,
            ),
        )
        .await;
        // The tokens are stored; a lost history row must not fail the refresh.
        if let Err(err) = recorded {
            tracing::warn!(account_id, error = %err, "could not record the refresh attempt");
        }
    }
    Ok(report)
}

/// The result of another caller's refresh that finished while this one waited for the
/// account's lock: shared instead of refreshing again.
fn shared_result(
    last: Option<&LastOutcome>,
    asked_at: Instant,
    account: &social_account::Model,
) -> Option<RefreshReport> {
    let outcome = last.filter(|o| o.at >= asked_at)?;
    Some(RefreshReport {
        account: account.clone(),
        kind: if outcome.error.is_some() {
            RefreshKind::Failed
        } else {
            RefreshKind::AlreadyFresh
        },
        error: outcome.error.clone(),
    })
}

/// The policy's decision for a refresh of an account in `status` (jitter drawn here).
fn decide(
    observed: Observed<'_>,
    status: AccountStatus,
    attempt: i32,
    trigger: Trigger,
) -> Decision {
    policy::decide(policy::Input {
        observed,
        status,
        attempt: u32::try_from(attempt).unwrap_or(1),
        trigger,
        rules: policy::RetryRules::default(),
        jitter: policy::Jitter::draw(),
    })
}

fn attempt_row(
    account: &social_account::Model,
    attempt: i32,
    trigger: Trigger,
    started_at: chrono::DateTime<Utc>,
    decision: &Decision,
    error: Option<&ProviderError>,
) -> tokens::attempts::NewAttempt {
    tokens::attempts::NewAttempt {
        tenant_id: account.tenant_id,
        account_id: account.id,
        attempt,
        trigger,
        started_at,
        outcome: decision.outcome,
        error_class: error.map(|e| e.class),
        error_code: error.map(|e| e.code.clone()),
    }
}

/// What a queued refresh did (for logs and tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ran {
    /// Recorded in `refresh_attempts` with this outcome.
    Attempted(tokens::attempts::Outcome),
    /// The account or its tokens are gone: nothing to record.
    Nothing,
}

/// Runs a queued refresh (sweep, retry or bulk) from start to end: loads the account and
/// its tokens once, skips them unless [`policy::runs`] (not due, no longer refreshable),
/// refreshes through the same single-flight path as requests (waiting for rate-limit
/// capacity), records the attempt, and applies the [`policy`]'s decision: the retry (in
/// the database, then on `queue`) or the release of the sweep claim.
///
/// In one detached task: a worker torn down mid-job (a backend hiccup restarts it) can
/// neither lose rotated tokens nor stop between recording the outcome and scheduling the
/// retry. `Err` is an infrastructure failure (the database); provider failures are
/// recorded, never returned.
pub async fn run_queued<Q>(
    db: &DatabaseConnection,
    engine: &Arc<Engine>,
    queue: &Q,
    settings: &SweepSettings,
    job: QueuedRefresh,
) -> ServiceResult<Ran>
where
    Q: JobQueue + Clone + 'static,
{
    let (db, engine, queue, settings) =
        (db.clone(), engine.clone(), queue.clone(), settings.clone());
    tokio::spawn(
        async move { queued_detached(&db, &engine, &queue, &settings, job).await }
            .in_current_span(),
    )
    .await
    .map_err(|err| ServiceError::Internal(format!("the refresh task failed: {err}")))?
}

async fn queued_detached(
    db: &DatabaseConnection,
    engine: &Engine,
    queue: &impl JobQueue,
    settings: &SweepSettings,
    job: QueuedRefresh,
) -> ServiceResult<Ran> {
    let asked_at = Instant::now();
    let Some((account, token)) =
        tokens::batch::load(engine, db, job.tenant_id, job.account_id).await?
    else {
        return Ok(Ran::Nothing);
    };
    let platform: Platform = account.platform;
    let status: AccountStatus = account.status;
    let started_at = Utc::now();
    let attempt = token.failure_count + 1;
    let due = sweep::is_due(settings, platform, &token, started_at);
    let (decision, account, error) = if !policy::runs(job.trigger, status, due) {
        // Refreshed meanwhile (another job, the API) or no longer refreshable.
        (
            decide(Observed::NotDue, status, attempt, job.trigger),
            account,
            None,
        )
    } else {
        let actor = Actor::system(Some(account.tenant_id), "worker");
        let options = RefreshOptions::queued(actor, job.trigger);
        let slot = engine.locks.slot(account.id);
        let mut last = slot.lock().await;
        let refreshed = match shared_result(last.as_ref(), asked_at, &account) {
            Some(shared) => Ok(shared),
            None => {
                let report = refresh_locked(db, engine, account.clone(), token, &options).await;
                if let Ok(report) = &report {
                    *last = Some(LastOutcome {
                        at: Instant::now(),
                        error: report.error.clone(),
                    });
                }
                report
            }
        };
        drop(last);
        match refreshed {
            Ok(report) => {
                let decision = decide(report.observed(), status, attempt, job.trigger);
                metrics::counter!(
                    "tokenwarden_refresh_attempts_total",
                    "platform" => platform.as_str(),
                    "outcome" => decision.outcome.as_str()
                )
                .increment(1);
                (decision, report.account, report.error)
            }
            // Refused before starting: no provider for the platform.
            Err(ServiceError::Provider(_, error)) => (
                decide(Observed::Refused(&error), status, attempt, job.trigger),
                account,
                Some(error),
            ),
            Err(err) => return Err(err),
        }
    };
    tokens::batch::record_attempt(
        engine,
        db,
        attempt_row(
            &account,
            attempt,
            job.trigger,
            started_at,
            &decision,
            error.as_ref(),
        ),
    )
    .await?;
    match (decision.claim, decision.retry_in) {
        (Claim::KeptForRetry, Some(delay)) => {
            let at = Utc::now()
                + chrono::Duration::from_std(delay).unwrap_or_else(|_| chrono::Duration::hours(1));
            tokens::attempts::schedule_retry(db, account.id, attempt, at).await?;
            let retry = QueuedRefresh {
                trigger: Trigger::Retry,
                ..job
            };
            // If the queue loses it, the sweep finds the account again once `at` passes.
            if let Err(err) = queue.enqueue(retry, Some(delay)).await {
                tracing::warn!(error = %err, "could not queue a retry; the sweep will find it");
            }
        }
        (Claim::Release, _) => sweep::release_claim(db, account.id).await?,
        // A success cleared the claim with the new tokens; nothing else holds one.
        (Claim::ClearedBySuccess | Claim::NotHeld | Claim::KeptForRetry, _) => {}
    }
    Ok(Ran::Attempted(decision.outcome))
}

/// Refreshes `account` (usable, checked by the caller) from its token row `token`, with
/// the account's lock held.
async fn refresh_locked<D>(
    db: &D,
    engine: &Engine,
    account: social_account::Model,
    token: oauth_token::Model,
    options: &RefreshOptions,
) -> ServiceResult<RefreshReport>
where
    D: ConnectionTrait + TransactionTrait,
{
    let platform: Platform = account.platform;
    let status: AccountStatus = account.status;
    let attempt = token.failure_count + 1;
    let decide =
        |error: &ProviderError| decide(Observed::Failed(error), status, attempt, options.trigger);
    let now = Utc::now();
    let min_interval = chrono::Duration::from_std(engine.settings.min_refresh_interval)
        .unwrap_or_else(|_| chrono::Duration::seconds(10));
    if token
        .last_refreshed_at
        .is_some_and(|at| now - at < min_interval)
    {
        return Ok(RefreshReport {
            account,
            kind: RefreshKind::AlreadyFresh,
            error: None,
        });
    }

    // Dead before we even ask: the refresh token (TikTok) or the token itself
    // (Instagram) has expired.
    let refreshable_until = match platform {
        Platform::TikTok => token.refresh_expires_at,
        Platform::Instagram => Some(token.expires_at),
    };
    if refreshable_until.is_some_and(|until| until <= now) {
        let error = ProviderError::new(
            ErrorClass::GrantDead,
            "expired",
            format!(
                "the {} token expired before it could be refreshed",
                platform.display_name()
            ),
        );
        let decision = decide(&error);
        let account =
            record_failure(db, engine, account, &error, &decision, &options.actor).await?;
        return Ok(failed(account, error));
    }

    let provider = match options.lane {
        Lane::Background => engine.providers.get(platform),
        Lane::OnDemand => engine.providers.get_interactive(platform),
    }
    .map_err(|e| ServiceError::Provider(platform, e))?;
    if options.lane == Lane::Background {
        engine.lanes.admit_background(platform).await;
    }

    if !tokens::batch::take_lease(engine, db, account.id, token.version).await? {
        // Another process is refreshing this account: wait for its result instead of
        // presenting the same refresh token a second time.
        return wait_for_other_process(db, engine, account, token.version).await;
    }

    let vault = engine.vault();
    let kind = match platform {
        Platform::TikTok => TokenKind::Refresh,
        Platform::Instagram => TokenKind::Access,
    };
    let current = match tokens::open(&vault, &token, kind) {
        Ok(current) => current,
        Err(err) => {
            tokens::release_lease(db, account.id, &engine.instance).await?;
            return Err(err);
        }
    };
    let scopes: Vec<String> = token
        .scopes
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let request = crate::providers::RefreshRequest {
        token: &current,
        issued_at: token.issued_at,
        expires_at: token.expires_at,
        provider_account_id: &account.provider_account_id,
        scopes: &scopes,
    };
    match refresh_call(engine, platform, options.lane, provider.as_ref(), &request).await {
        Ok(set) => {
            let account =
                store_success(db, engine, account, token.version, &set, &options.actor).await?;
            Ok(RefreshReport {
                account,
                kind: RefreshKind::Refreshed,
                error: None,
            })
        }
        Err(error) => {
            tokens::release_lease(db, account.id, &engine.instance).await?;
            let decision = decide(&error);
            let account =
                record_failure(db, engine, account, &error, &decision, &options.actor).await?;
            Ok(failed(account, error))
        }
    }
}

/// Calls the provider. An on-demand refresh that finds the local rate limit used up
/// waits for capacity (background refreshes yield meanwhile) up to
/// [`tokens::lanes::ON_DEMAND_WAIT`]; such a refusal happens before anything is sent, so
/// trying again never presents a token twice.
async fn refresh_call(
    engine: &Engine,
    platform: Platform,
    lane: Lane,
    provider: &dyn crate::providers::OAuthProvider,
    request: &crate::providers::RefreshRequest<'_>,
) -> Result<crate::providers::TokenSet, ProviderError> {
    let deadline = Instant::now() + tokens::lanes::ON_DEMAND_WAIT;
    let mut waiting = None;
    loop {
        match provider.refresh(request).await {
            Err(error) if lane == Lane::OnDemand && error.is_local_rate_limit() => {
                let wait = error
                    .retry_after
                    .unwrap_or(Duration::from_millis(50))
                    .clamp(Duration::from_millis(1), Duration::from_millis(250));
                if Instant::now() + wait > deadline {
                    return Err(error);
                }
                waiting.get_or_insert_with(|| engine.lanes.on_demand_waiting(platform));
                tokio::time::sleep(wait).await;
            }
            result => return result,
        }
    }
}

/// Polls the token row until the other process's refresh lands (new version: fresh) or
/// its lease ends without one (it failed: report that, without calling the provider).
async fn wait_for_other_process(
    db: &impl ConnectionTrait,
    engine: &Engine,
    account: social_account::Model,
    version: i64,
) -> ServiceResult<RefreshReport> {
    let deadline = Instant::now() + engine.settings.lease_wait;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let Some(current) = tokens::find_by_account(db, account.id).await? else {
            return Err(ServiceError::bad_input(
                "the account's tokens were deleted meanwhile",
            ));
        };
        if current.version != version {
            let account = accounts::find(db, account.tenant_id, account.id)
                .await?
                .unwrap_or(account);
            return Ok(RefreshReport {
                account,
                kind: RefreshKind::AlreadyFresh,
                error: None,
            });
        }
        if current
            .refresh_lease_until
            .is_none_or(|until| until < Utc::now())
        {
            break;
        }
    }
    let account = accounts::find(db, account.tenant_id, account.id)
        .await?
        .unwrap_or(account);
    let mut error = ProviderError::new(
        ErrorClass::Transient,
        "refresh_in_progress",
        "another process's refresh of this account did not complete; retry shortly",
    );
    error.retry_after = Some(Duration::from_secs(5));
    Ok(failed(account, error))
}

fn failed(account: social_account::Model, error: ProviderError) -> RefreshReport {
    RefreshReport {
        account,
        kind: RefreshKind::Failed,
        error: Some(error),
    }
}

/// Stores new tokens, retrying with backoff for as long as the process lives: the
/// platform has already rotated them, so they are the only ones that work. The caller holds
/// the account's refresh lock meanwhile (and its database lease stays on the row), so
/// nobody presents the old refresh token. After the first failed try the sealed result is
/// also journaled to local disk (fsync'd), where the next start finds it should this
/// process die before the database is back.
async fn store_success<D>(
    db: &D,
    engine: &Engine,
    account: social_account::Model,
    version: i64,
    set: &crate::providers::TokenSet,
    actor: &Actor,
) -> ServiceResult<social_account::Model>
where
    D: ConnectionTrait + TransactionTrait,
{
    let sealed = tokens::seal_refreshed(&engine.vault(), &account, version, set)?;
    let _storing = engine.stores.enter();
    let mut journaled = false;
    let mut failures: u32 = 0;
    loop {
        // First in a batch with the process's other results; after a failure alone, so
        // one bad row cannot hold a batch back.
        let result = if failures == 0 {
            tokens::batch::store(engine, db, &sealed, actor).await
        } else {
            persist_refreshed(db, &engine.events, &sealed, actor).await
        };
        match result {
            Ok(stored) => {
                if journaled && let Err(err) = engine.journal.done(account.id, version) {
                    // Harmless: a replay of a stored result fails its compare-and-swap.
                    tracing::warn!(account_id = account.id, error = %err, "could not mark a journaled result done");
                }
                if failures > 0 {
                    tracing::info!(
                        account_id = account.id,
                        failures,
                        "refreshed tokens stored after the database came back"
                    );
                }
                return match stored {
                    Some(updated) => Ok(updated),
                    // A reconnect or disconnect replaced the tokens meanwhile: report the
                    // account as it is now, not as it was before the refresh.
                    None => Ok(accounts::find(db, account.tenant_id, account.id)
                        .await
                        .ok()
                        .flatten()
                        .unwrap_or(account)),
                };
            }
            Err(err) => {
                failures += 1;
                if !journaled {
                    match engine.journal.append(&sealed) {
                        Ok(on_disk) => journaled = on_disk,
                        Err(jerr) => {
                            tracing::error!(account_id = account.id, error = %jerr, "could not journal refreshed tokens; keeping them in memory")
                        }
                    }
                }
                metrics::counter!("tokenwarden_refresh_store_retries_total").increment(1);
                tracing::error!(
                    account_id = account.id,
                    failures,
                    journaled,
                    error = %err,
                    "could not store refreshed tokens; keeping them and retrying"
                );
                tokio::time::sleep(store_backoff(failures)).await;
            }
        }
    }
}

/// 100 ms doubling up to 2 s: the database is written within 2 s of coming back.
fn store_backoff(failures: u32) -> Duration {
    Duration::from_millis(
        100u64
            .saturating_mul(1 << failures.min(5).saturating_sub(1))
            .min(2000),
    )
}

/// In one transaction: stores sealed tokens (compare-and-swap on their version), marks the
/// account ACTIVE unless it was deactivated or disconnected meanwhile (then the tokens are
/// stored but not served), audits, records the event. `None` when the token row changed
/// under the refresh (a reconnect's tokens win) or is gone.
pub(crate) async fn persist_refreshed<D>(
    db: &D,
    bus: &crate::events::EventBus,
    sealed: &tokens::journal::PendingTokens,
    actor: &Actor,
) -> ServiceResult<Option<social_account::Model>>
where
    D: ConnectionTrait + TransactionTrait,
{
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
    let txn = crate::db::begin(db).await?;
    if !tokens::store_refreshed(&txn, sealed).await? {
        txn.rollback().await?;
        tracing::warn!(
            account_id = sealed.account_id,
            "token row changed during refresh; keeping the newer tokens"
        );
        return Ok(None);
    }
    let now = Utc::now();
    let revived = social_account::Entity::update_many()
        .col_expr(
            social_account::Column::Status,
            Expr::value(AccountStatus::Active),
        )
        .col_expr(
            social_account::Column::StatusReason,
            Expr::value(Option::<String>::None),
        )
        .col_expr(social_account::Column::UpdatedAt, Expr::value(now))
        .filter(social_account::Column::Id.eq(sealed.account_id))
        .filter(social_account::Column::Status.is_in(crate::tokens::sweep::refreshable_statuses()))
        .filter(social_account::Column::DeactivatedAt.is_null())
        .exec(&txn)
        .await?
        .rows_affected
        == 1;
    let Some(updated) = social_account::Entity::find_by_id(sealed.account_id)
        .one(&txn)
        .await?
    else {
        txn.rollback().await?;
        return Ok(None);
    };
    audit::record(
        &txn,
        actor,
        AuditAction::TokenRefreshed,
        Some(Target::new(TARGET, updated.id)),
        json!({
            "platform": updated.platform,
            "expiresAt": sealed.expires_at,
            "refreshExpiresAt": sealed.refresh_expires_at,
            "served": revived,
        }),
    )
    .await?;
    let event = if revived {
        let event = events::record(
            &txn,
            NewEvent {
                tenant_id: updated.tenant_id,
                account_id: updated.id,
                platform: updated.platform,
                kind: EventKind::Refreshed,
                error: None,
            },
        )
        .await?;
        crate::events::notifications::resolve(&txn, updated.id).await?;
        Some(event)
    } else {
        tracing::info!(
            account_id = updated.id,
            status = %updated.status,
            "refreshed tokens stored; the account was deactivated or disconnected meanwhile, so they are not served"
        );
        None
    };
    txn.commit().await?;
    if let Some(event) = event {
        bus.publish(event).await;
    }
    Ok(Some(updated))
}

/// Stores the results journaled by processes of this deployment that died before the
/// database took them (see [`tokens::journal`]). Runs at startup, before anything else
/// refreshes; retried while the database is unreachable, up to `patience`.
pub async fn replay_journal(
    db: &DatabaseConnection,
    engine: &Engine,
    dir: &std::path::Path,
    deployment: &str,
    patience: Duration,
) -> ServiceResult<usize> {
    let leftovers = tokens::journal::leftovers(dir, deployment)
        .map_err(|err| ServiceError::Internal(format!("reading the refresh journal: {err}")))?;
    let deadline = Instant::now() + patience;
    let mut stored = 0;
    for leftover in leftovers {
        for pending in &leftover.pending {
            let actor = Actor::system(Some(pending.tenant_id), "journal");
            let mut failures = 0;
            loop {
                match persist_refreshed(db, &engine.events, pending, &actor).await {
                    Ok(Some(_)) => {
                        stored += 1;
                        break;
                    }
                    Ok(None) => break,
                    Err(err) if Instant::now() < deadline => {
                        failures += 1;
                        tracing::warn!(account_id = pending.account_id, error = %err, "replaying the refresh journal; retrying");
                        tokio::time::sleep(store_backoff(failures)).await;
                    }
                    Err(err) => return Err(err),
                }
            }
        }
        tracing::info!(path = %leftover.path.display(), results = leftover.pending.len(), "refresh journal replayed");
        leftover
            .finish()
            .map_err(|err| ServiceError::Internal(format!("removing a replayed journal: {err}")))?;
    }
    Ok(stored)
}

/// Applies a failed refresh to the account as the [`policy`] decided: its status (unchanged
/// when the decision names none), the error code as the status reason, the audit entry, the
/// event and the notification incident. A decision without an event changes nothing (a
/// token too young to refresh). Only while the account is still refreshable.
pub(crate) async fn record_failure<D>(
    db: &D,
    engine: &Engine,
    account: social_account::Model,
    error: &ProviderError,
    decision: &Decision,
    actor: &Actor,
) -> ServiceResult<social_account::Model>
where
    D: ConnectionTrait + TransactionTrait,
{
    let Some(kind) = decision.event else {
        return Ok(account);
    };
    let current: AccountStatus = account.status;
    let platform: Platform = account.platform;
    let view = crate::tokens::failures::describe(error, platform, account.username.as_deref());
    let status = decision.status.unwrap_or(current);
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
    let txn = crate::db::begin(db).await?;
    // Only while the account is still refreshable: a deactivation or disconnect that
    // happened during the provider call wins over the failure.
    let applied = social_account::Entity::update_many()
        .col_expr(social_account::Column::Status, Expr::value(status))
        .col_expr(
            social_account::Column::StatusReason,
            Expr::value(Some(error.code.clone())),
        )
        .col_expr(social_account::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(social_account::Column::Id.eq(account.id))
        .filter(social_account::Column::Status.is_in(crate::tokens::sweep::refreshable_statuses()))
        .filter(social_account::Column::DeactivatedAt.is_null())
        .exec(&txn)
        .await?
        .rows_affected
        == 1;
    let updated = social_account::Entity::find_by_id(account.id)
        .one(&txn)
        .await?
        .unwrap_or(account);
    if !applied {
        txn.commit().await?;
        tracing::info!(
            account_id = updated.id,
            status = %updated.status,
            "refresh failed after the account was deactivated or disconnected; its status stays"
        );
        return Ok(updated);
    }
    audit::record(
        &txn,
        actor,
        AuditAction::TokenRefreshFailed,
        Some(Target::new(TARGET, updated.id)),
        json!({
            "platform": updated.platform,
            "errorClass": error.class.as_str(),
            "errorCode": error.code,
            "reason": error.reason(),
            "httpStatus": error.http_status,
            "status": updated.status,
        }),
    )
    .await?;
    let event = events::record(
        &txn,
        NewEvent {
            tenant_id: updated.tenant_id,
            account_id: updated.id,
            platform,
            kind,
            error: Some(&view),
        },
    )
    .await?;
    crate::events::notifications::open_incident(
        &txn,
        updated.tenant_id,
        updated.id,
        platform,
        kind,
        &view,
    )
    .await?;
    txn.commit().await?;
    engine.events.publish(event).await;
    Ok(updated)
}
