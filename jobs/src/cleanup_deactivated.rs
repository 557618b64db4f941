use std::sync::Arc;

use apalis::prelude::*;
use apalis_cron::Tick;
use chrono::Utc;

use crate::worker::JobContext;

/// apalis-cron handler (daily by default).
pub async fn handle(_tick: Tick, ctx: Data<Arc<JobContext>>) -> Result<(), BoxDynError> {
    match run(&ctx).await {
        Ok(purged) => {
            if purged > 0 {
                tracing::info!(purged, "purged long-deactivated accounts");
            }
            Ok(())
        }
        Err(err) => {
            tracing::error!(error = %err, "cleanup failed");
            Err(err.into())
        }
    }
}

/// Purges accounts deactivated longer than `cleanup_after`; returns how many.
pub async fn run(ctx: &JobContext) -> anyhow::Result<usize> {
    Ok(
        service::ops::cleanup::purge_deactivated(&ctx.db, ctx.settings.cleanup_after, Utc::now())
            .await?
            .len(),
    )
}
