use std::sync::Arc;

use apalis::prelude::*;
use apalis_cron::Tick;
use chrono::Utc;
use service::{ops::health, tokens::sweep};

pub use service::tokens::sweep::SweepReport;

use crate::worker::JobContext;

/// apalis-cron handler.
pub async fn handle(_tick: Tick, ctx: Data<Arc<JobContext>>) -> Result<(), BoxDynError> {
    // One scheduled pass at a time per process: a tick during a pass skips.
    let Ok(_pass) = ctx.engine.sweep_pass.try_lock() else {
        tracing::debug!("the previous sweep pass is still running; skipping this tick");
        return Ok(());
    };
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

/// One sweep pass ([`sweep::run`]) over this deployment's queue, then records when it ran.
#[tracing::instrument(skip_all)]
pub async fn run(ctx: &JobContext) -> anyhow::Result<SweepReport> {
    let report = sweep::run(&ctx.db, &ctx.engine.events, &ctx.settings.sweep, &ctx.queue).await?;
    if report.queue_backoff_until.is_none() {
        health::record_sweep(&ctx.db, Utc::now()).await?;
        metrics::counter!("tokenwarden_sweeps_total").increment(1);
    }
    metrics::counter!("tokenwarden_sweep_queued_total").increment(report.queued as u64);
    metrics::counter!("tokenwarden_sweep_expired_total").increment(report.expired as u64);
    Ok(report)
}
