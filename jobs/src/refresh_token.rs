use std::sync::Arc;

use apalis::prelude::*;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use service::{
    Actor,
    connections::accounts,
    domain::Platform,
    providers::ErrorClass,
    tokens,
    tokens::attempts::{self, NewAttempt, Outcome},
    tokens::queue::QueuedRefresh,
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

/// Runs the same single-flight refresh the API uses, records the attempt, and schedules a
/// retry (exponential backoff with jitter, honouring Retry-After) after transient failures.
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
    let started_at = Utc::now();
    let attempt = token.failure_count + 1;
    let record = |outcome: Outcome, class: Option<String>, code: Option<String>| NewAttempt {
        tenant_id: account.tenant_id,
        account_id: account.id,
        attempt,
        trigger: match job.trigger.as_str() {
            "retry" => "retry",
            "bulk" => "bulk",
            _ => "sweep",
        },
        started_at,
        outcome,
        error_class: class,
        error_code: code,
    };
    let forced = job.trigger == "bulk";
    if refresh::ensure_usable_status(&account).is_err()
        || (!forced && !sweep::is_due(&ctx.settings.sweep, platform, &token, started_at))
    {
        // Refreshed meanwhile (another job, the API) or no longer refreshable.
        attempts::record(db, record(Outcome::Skipped, None, None)).await?;
        sweep::release_claim(db, account.id).await?;
        return Ok(Ran::Attempted(Outcome::Skipped));
    }
    let options = RefreshOptions::in_job(Actor::system(Some(account.tenant_id), "worker"));
    let report =
        match refresh::refresh(db, &ctx.engine, account.tenant_id, account.id, options).await {
            Ok(report) => report,
            Err(service::ServiceError::Provider(_, error)) => {
                attempts::record(
                    db,
                    record(
                        Outcome::Skipped,
                        Some(error.class.as_str().into()),
                        Some(error.code),
                    ),
                )
                .await?;
                sweep::release_claim(db, account.id).await?;
                return Ok(Ran::Attempted(Outcome::Skipped));
            }
            Err(err) => return Err(err.into()),
        };
    let outcome = attempts::outcome_of(&report.kind, report.error.as_ref());
    let error = report.error.as_ref();
    metrics::counter!(
        "tokenwarden_refresh_attempts_total",
        "platform" => platform.as_str(),
        "outcome" => outcome.as_str()
    )
    .increment(1);
    attempts::record(
        db,
        record(
            outcome,
            error.map(|e| e.class.as_str().to_owned()),
            error.map(|e| e.code.clone()),
        ),
    )
    .await?;
    let retry = match (outcome, error) {
        (Outcome::FailedTransient, e) => Some(attempts::backoff(
            attempt as u32,
            e.and_then(|e| e.retry_after),
        )),
        // The operator must fix the app configuration; check again later, slowly.
        (Outcome::FailedPermanent, Some(e)) if e.class != ErrorClass::GrantDead => {
            Some(attempts::backoff(u32::MAX, None))
        }
        _ => None,
    };
    match retry {
        Some(delay) => {
            let at = Utc::now()
                + chrono::Duration::from_std(delay).unwrap_or_else(|_| chrono::Duration::hours(1));
            attempts::schedule_retry(db, account.id, attempt, at).await?;
            let retry = RefreshToken {
                trigger: "retry".into(),
                ..job.clone()
            };
            // If the queue loses it, the sweep finds the account again once `at` passes.
            if let Err(err) = ctx.queue.push(retry, Some(delay)).await {
                tracing::warn!(error = %err, "could not queue a retry; the sweep will find it");
            }
        }
        // A success already cleared the claim with the new tokens.
        None if outcome == Outcome::Succeeded => {}
        None => sweep::release_claim(db, account.id).await?,
    }
    Ok(Ran::Attempted(outcome))
}
