use std::sync::Arc;

use apalis::prelude::*;
use apalis_cron::Tick;
use chrono::Utc;
use service::{ops::settings, tokens::sweep};

use crate::{refresh_token::RefreshToken, worker::JobContext};

/// The setting holding the time of the last completed sweep.
pub const LAST_SWEEP: &str = "last_sweep_at";

/// How many accounts a sweep queued and expired.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub queued: usize,
    pub expired: usize,
}

/// apalis-cron handler.
pub async fn handle(_tick: Tick, ctx: Data<Arc<JobContext>>) -> Result<(), BoxDynError> {
    match run(&ctx).await {
        Ok(report) => {
            if report.queued + report.expired > 0 {
                tracing::info!(queued = report.queued, expired = report.expired, "sweep");
            }
            Ok(())
        }
        Err(err) => {
            tracing::error!(error = %err, "sweep failed");
            Err(err.into())
        }
    }
}

/// Marks unrefreshable tokens EXPIRED, then claims every token inside its refresh window
/// (in batches) and queues one refresh per account. Runs on every worker at once safely:
/// claims make each account queued once.
#[tracing::instrument(skip_all)]
pub async fn run(ctx: &JobContext) -> anyhow::Result<SweepReport> {
    let now = Utc::now();
    // Dead rows leave the candidate index once, in batches; then they cost nothing.
    while sweep::park_dead(&ctx.db, &ctx.settings.sweep, now).await? >= ctx.settings.sweep.batch {}
    let expired = sweep::expire_unrefreshable(&ctx.db, &ctx.engine.events, now)
        .await?
        .len();
    sweep::flag_expiring(&ctx.db, &ctx.engine.events, now).await?;
    let mut queued = 0;
    loop {
        let due = sweep::claim_due(&ctx.db, &ctx.settings.sweep, now).await?;
        if due.is_empty() {
            break;
        }
        for account in due {
            let job = RefreshToken {
                tenant_id: account.tenant_id,
                account_id: account.account_id,
                trigger: "sweep".into(),
            };
            match ctx.queue.push(job, None).await {
                Ok(()) => queued += 1,
                Err(err) => {
                    tracing::warn!(error = %err, account_id = account.account_id, "could not queue a refresh");
                    sweep::release_claim(&ctx.db, account.account_id).await?;
                }
            }
        }
    }
    settings::put(&ctx.db, LAST_SWEEP, Utc::now().to_rfc3339()).await?;
    metrics::counter!("tokenwarden_sweeps_total").increment(1);
    metrics::counter!("tokenwarden_sweep_queued_total").increment(queued as u64);
    metrics::counter!("tokenwarden_sweep_expired_total").increment(expired as u64);
    Ok(SweepReport { queued, expired })
}
