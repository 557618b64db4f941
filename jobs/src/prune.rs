use std::sync::Arc;

use apalis::prelude::*;
use apalis_cron::Tick;
use chrono::Utc;

use crate::worker::JobContext;

/// apalis-cron handler (daily by default).
pub async fn handle(_tick: Tick, ctx: Data<Arc<JobContext>>) -> Result<(), BoxDynError> {
    match run(&ctx).await {
        Ok(deleted) => {
            tracing::info!(deleted, "pruned old records");
            Ok(())
        }
        Err(err) => {
            tracing::error!(error = %err, "prune failed");
            Err(err.into())
        }
    }
}

/// Deletes provider call records, refresh attempts, token-read counters and connection
/// states (by expiry) older than the retention period, and sign-in throttle rows that no
/// longer count.
pub async fn run(ctx: &JobContext) -> anyhow::Result<u64> {
    let before = Utc::now()
        - chrono::Duration::from_std(ctx.settings.retention)
            .unwrap_or_else(|_| chrono::Duration::days(30));
    let calls = service::providers::calls::prune(&ctx.db, before).await?;
    let attempts = service::tokens::attempts::prune(&ctx.db, before).await?;
    let reads = service::tokens::analytics::prune(&ctx.db, before).await?;
    let states = service::connections::prune_states(&ctx.db, before).await?;
    let throttles = service::identity::sessions::prune_throttle(&ctx.db, Utc::now()).await?;
    Ok(calls + attempts + reads + states + throttles)
}
