use std::sync::Arc;

use apalis::prelude::*;
use apalis_cron::Tick;
use service::ops::size::{self, DatabaseSize, GrowthSettings};

use crate::worker::JobContext;

/// apalis-cron handler (every 15 minutes by default).
pub async fn handle(_tick: Tick, ctx: Data<Arc<JobContext>>) -> Result<(), BoxDynError> {
    match run(&ctx).await {
        Ok(_) => Ok(()),
        Err(err) => {
            tracing::error!(error = %err, "database size check failed");
            Err(err.into())
        }
    }
}

/// Measures the database size and rows per table, stores them for `systemHealth` and
/// `/metrics`, and raises DATABASE_GROWTH when it grew more than the threshold.
pub async fn run(ctx: &JobContext) -> anyhow::Result<DatabaseSize> {
    let growth: &GrowthSettings = &ctx.settings.database_growth;
    Ok(size::sample(&ctx.db, &ctx.engine.events, growth).await?)
}
