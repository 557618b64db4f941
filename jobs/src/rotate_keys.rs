use std::sync::Arc;

use apalis::prelude::*;
use apalis_cron::Tick;
use service::ops::rotation;

use crate::worker::JobContext;

/// Tokens rewrapped per batch.
const BATCH: u64 = 200;

/// apalis-cron handler: resumes any unfinished rewrap, warns when a rotation is due.
pub async fn handle(_tick: Tick, ctx: Data<Arc<JobContext>>) -> Result<(), BoxDynError> {
    match run(&ctx).await {
        Ok(done) => {
            if done > 0 {
                tracing::info!(rewrapped = done, "re-encrypted tokens with the active key");
            }
            Ok(())
        }
        Err(err) => {
            tracing::error!(error = %err, "key rotation job failed");
            Err(err.into())
        }
    }
}

/// Adopts the deployment's active key, rewraps every token still on another key (batches
/// until none are left; resumable after a crash), and raises KEY_ROTATION_DUE in the log
/// when the active key is older than the rotation period. Returns the rewrapped count.
pub async fn run(ctx: &JobContext) -> anyhow::Result<u64> {
    rotation::sync_active_key(&ctx.db, &ctx.engine).await?;
    let mut total = 0;
    loop {
        let done = rotation::rewrap_batch(&ctx.db, &ctx.engine, BATCH).await?;
        total += done;
        if done == 0 {
            break;
        }
    }
    let status = rotation::status(&ctx.db, &ctx.engine, ctx.settings.rotation_period).await?;
    if status.due {
        let raised = format!("key_rotation_due_raised:{}", status.active_key_id);
        if service::ops::settings::get(&ctx.db, &raised)
            .await?
            .is_none()
        {
            let view = service::tokens::failures::FailureView {
                code: "KEY_ROTATION_DUE",
                message: format!(
                    "The active encryption key {} is older than the rotation period.",
                    status.active_key_id
                ),
                action: Some("Rotate it with rotateEncryptionKey.".into()),
            };
            // Once per active key, however many workers run this at the same time.
            let event = service::events::record_global_once(
                &ctx.db,
                service::events::EventKind::KeyRotationDue,
                None,
                Some(&view),
                format!("KEY_ROTATION_DUE:{}", status.active_key_id),
            )
            .await?;
            service::ops::settings::put(&ctx.db, &raised, chrono::Utc::now().to_rfc3339()).await?;
            if let Some(event) = event {
                ctx.engine.events.publish(event).await;
            }
        }
        tracing::warn!(
            code = "KEY_ROTATION_DUE",
            active_key = %status.active_key_id,
            "the active encryption key is older than the rotation period: rotate it"
        );
    }
    Ok(total)
}
