use std::sync::Arc;

use apalis::prelude::*;
use apalis_cron::Tick;

use crate::worker::JobContext;

/// Deliveries attempted per batch.
const BATCH: u64 = 20;

/// apalis-cron handler (every 2 seconds by default).
pub async fn handle(_tick: Tick, ctx: Data<Arc<JobContext>>) -> Result<(), BoxDynError> {
    match run(&ctx).await {
        Ok(_) => Ok(()),
        Err(err) => {
            tracing::error!(error = %err, "webhook delivery failed");
            Err(err.into())
        }
    }
}

/// Sends every due delivery (claimed in the database, so several workers never send one
/// twice at once); returns how many were attempted.
pub async fn run(ctx: &JobContext) -> anyhow::Result<usize> {
    let client = service::events::webhooks::http_client(ctx.engine.settings.webhook_allow_private)?;
    let mut total = 0;
    loop {
        let done =
            service::events::webhooks::deliver_due(&ctx.db, &ctx.engine, &client, BATCH).await?;
        total += done;
        if (done as u64) < BATCH {
            break;
        }
    }
    Ok(total)
}
