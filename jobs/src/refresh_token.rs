use std::sync::Arc;

use apalis::prelude::*;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use service::{
    Actor,
    connections::accounts,
    domain::{AccountStatus, Platform},
    providers::ProviderError,
    tokens,
    tokens::attempts::{self, NewAttempt, Outcome},
    tokens::policy::{self, Claim, Decision, Observed},
    tokens::queue::{QueuedRefresh, Trigger},
    tokens::refresh::{self, RefreshOptions},
    tokens::sweep,
};

use crate::worker::JobContext;

/// The job name in logs.
pub const NAME: &str = "refresh-token";

/// Refresh one account's tokens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshToken {
    pub tenant_id: i64,
    pub account_id: i64,
    /// `sweep`, `retry` or `bulk`.
    pub trigger: String,
}

impl From<QueuedRefresh> for RefreshToken {
    fn from(job: QueuedRefresh) -> Self {
        Self {
            tenant_id: job.tenant_id,
            account_id: job.account_id,
            trigger: job.trigger.as_str().to_owned(),
        }
    }
}

/// What one run did (for logs and tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ran {
    Attempted(Outcome),
    /// The account or its tokens are gone, or it is no longer refreshable.
    Nothing,
}

/// apalis handler: runs the job and turns infrastructure errors into job failures (so
/// apalis retries them); provider failures are handled inside and never fail the job.
pub async fn handle(job: RefreshToken, ctx: Data<Arc<JobContext>>) -> Result<(), BoxDynError> {
    // Detached: tearing a worker down (a backend hiccup restarts it) must not cut a job
    // short between recording its outcome and scheduling its retry.
    let context: Arc<JobContext> = (*ctx).clone();
    let task = job.clone();
    let outcome = tokio::spawn(async move { run(&task, &context).await })
        .await
        .map_err(|err| anyhow::anyhow!("refresh job task: {err}"));
    match outcome.and_then(|result| result) {
        Ok(ran) => {
            tracing::debug!(account_id = job.account_id, ?ran, "refresh job done");
            Ok(())
        }
        Err(err) => {
            tracing::error!(account_id = job.account_id, error = %err, "refresh job failed");
            Err(err.into())
        }
    }
}

/// Runs the same single-flight refresh the API uses, records the attempt, and applies the
/// [`policy`]'s decision: the retry (backoff with jitter, honouring Retry-After) and the
/// sweep claim.
#[tracing::instrument(skip_all, fields(account_id = job.account_id, trigger = %job.trigger))]
pub async fn run(job: &RefreshToken, ctx: &JobContext) -> anyhow::Result<Ran> {
    let db = &ctx.db;
    let Some(account) = accounts::find(db, job.tenant_id, job.account_id).await? else {
        return Ok(Ran::Nothing);
    };
    let Some(token) = tokens::find_by_account(db, account.id).await? else {
        return Ok(Ran::Nothing);
    };
    let platform: Platform = account.platform.parse()?;
    let status: AccountStatus = account.status.parse()?;
    let trigger = match job.trigger.as_str() {
        "retry" => Trigger::Retry,
        "bulk" => Trigger::Bulk,
        _ => Trigger::Sweep,
    };
    let started_at = Utc::now();
    let attempt = token.failure_count + 1;
    let decide = |observed| {
        policy::decide(policy::Input {
            observed,
            status,
            attempt: u32::try_from(attempt).unwrap_or(1),
            trigger,
            rules: policy::RetryRules::default(),
            jitter: policy::Jitter::draw(),
        })
    };
    let record = |outcome: Outcome, error: Option<&ProviderError>| NewAttempt {
        tenant_id: account.tenant_id,
        account_id: account.id,
        attempt,
        trigger: trigger.as_str(),
        started_at,
        outcome,
        error_class: error.map(|e| e.class.as_str().to_owned()),
        error_code: error.map(|e| e.code.clone()),
    };
    let due = sweep::is_due(&ctx.settings.sweep, platform, &token, started_at);
    if !policy::runs(trigger, status, due) {
        // Refreshed meanwhile (another job, the API) or no longer refreshable.
        let decision = decide(Observed::NotDue);
        attempts::record(db, record(decision.outcome, None)).await?;
        apply(ctx, job, &decision, attempt).await?;
        return Ok(Ran::Attempted(decision.outcome));
    }
    let mut options = RefreshOptions::in_job(Actor::system(Some(account.tenant_id), "worker"));
    options.trigger = trigger;
    let report =
        match refresh::refresh(db, &ctx.engine, account.tenant_id, account.id, options).await {
            Ok(report) => report,
            Err(service::ServiceError::Provider(_, error)) => {
                let decision = decide(Observed::Refused(&error));
                attempts::record(db, record(decision.outcome, Some(&error))).await?;
                apply(ctx, job, &decision, attempt).await?;
                return Ok(Ran::Attempted(decision.outcome));
            }
            Err(err) => return Err(err.into()),
        };
    let decision = decide(report.observed());
    metrics::counter!(
        "tokenwarden_refresh_attempts_total",
        "platform" => platform.as_str(),
        "outcome" => decision.outcome.as_str()
    )
    .increment(1);
    attempts::record(db, record(decision.outcome, report.error.as_ref())).await?;
    apply(ctx, job, &decision, attempt).await?;
    Ok(Ran::Attempted(decision.outcome))
}

/// Schedules the decided retry (in the database, then on the queue) or releases the claim.
async fn apply(
    ctx: &JobContext,
    job: &RefreshToken,
    decision: &Decision,
    attempt: i32,
) -> anyhow::Result<()> {
    let db = &ctx.db;
    match (decision.claim, decision.retry_in) {
        (Claim::KeptForRetry, Some(delay)) => {
            let at = Utc::now()
                + chrono::Duration::from_std(delay).unwrap_or_else(|_| chrono::Duration::hours(1));
            attempts::schedule_retry(db, job.account_id, attempt, at).await?;
            let retry = RefreshToken {
                trigger: "retry".into(),
                ..job.clone()
            };
            // If the queue loses it, the sweep finds the account again once `at` passes.
            if let Err(err) = ctx.queue.push(retry, Some(delay)).await {
                tracing::warn!(error = %err, "could not queue a retry; the sweep will find it");
            }
        }
        (Claim::Release, _) => sweep::release_claim(db, job.account_id).await?,
        // A success cleared the claim with the new tokens.
        (Claim::ClearedBySuccess | Claim::NotHeld | Claim::KeptForRetry, _) => {}
    }
    Ok(())
}
