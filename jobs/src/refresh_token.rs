//! The refresh job: one account's queued refresh (sweep, retry or bulk). The payload
//! carries ids only; the whole flow — load, skip when not due, refresh, record, retry or
//! release the claim — is one service use case, [`refresh::run_queued`].

use std::sync::Arc;

use apalis::prelude::*;
use serde::{Deserialize, Serialize};
use service::tokens::{
    queue::{QueuedRefresh, Trigger},
    refresh,
};

pub use service::tokens::refresh::Ran;

use crate::worker::JobContext;

/// Refresh one account's tokens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshToken {
    pub tenant_id: i64,
    pub account_id: i64,
    /// Sweep, retry or bulk; serialized by name (`"sweep"`). An unknown name fails to
    /// decode.
    pub trigger: Trigger,
}

impl From<QueuedRefresh> for RefreshToken {
    fn from(job: QueuedRefresh) -> Self {
        Self {
            tenant_id: job.tenant_id,
            account_id: job.account_id,
            trigger: job.trigger,
        }
    }
}

impl From<&RefreshToken> for QueuedRefresh {
    /// Requests refresh in place and never queue `manual`; a queued one runs as a sweep.
    fn from(job: &RefreshToken) -> Self {
        Self {
            tenant_id: job.tenant_id,
            account_id: job.account_id,
            trigger: match job.trigger {
                Trigger::Manual => Trigger::Sweep,
                trigger => trigger,
            },
        }
    }
}

/// apalis handler: infrastructure errors fail the job (logged); provider failures are
/// recorded by the service and never fail it.
pub async fn handle(job: RefreshToken, ctx: Data<Arc<JobContext>>) -> Result<(), BoxDynError> {
    match run(&job, &ctx).await {
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

/// Runs the job: [`refresh::run_queued`] over this deployment's queue.
#[tracing::instrument(skip_all, fields(account_id = job.account_id, trigger = %job.trigger))]
pub async fn run(job: &RefreshToken, ctx: &JobContext) -> anyhow::Result<Ran> {
    Ok(refresh::run_queued(
        &ctx.db,
        &ctx.engine,
        &ctx.queue,
        &ctx.settings.sweep,
        job.into(),
    )
    .await?)
}
