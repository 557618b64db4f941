use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use apalis::prelude::*;
use apalis_cron::Tick;
use chrono::Utc;
use service::{
    domain::Platform,
    ops::health::{self, HealthSnapshot, ProviderProbe},
    ops::settings,
};

use crate::worker::JobContext;

/// apalis-cron handler (every minute by default).
pub async fn handle(_tick: Tick, ctx: Data<Arc<JobContext>>) -> Result<(), BoxDynError> {
    match run(&ctx).await {
        Ok(snapshot) => {
            if !snapshot.database || snapshot.redis == Some(false) || !snapshot.encryption {
                tracing::warn!(?snapshot, "health check found a problem");
            }
            Ok(())
        }
        Err(err) => {
            tracing::error!(error = %err, "health check failed");
            Err(err.into())
        }
    }
}

/// Checks the database, Redis, the encryption canary and each provider's reachability, and
/// stores the snapshot for `systemHealth` and `/readyz` on every process.
pub async fn run(ctx: &JobContext) -> anyhow::Result<HealthSnapshot> {
    let database = ctx.db.ping().await.is_ok();
    let redis = ctx.queue.redis_ok().await;
    let encryption = settings::check_canary(&ctx.db, &ctx.engine.vault())
        .await
        .is_ok();
    let endpoints = ctx.engine.providers.endpoints().clone();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let mut providers = Vec::new();
    for platform in Platform::ALL {
        if !ctx.engine.providers.is_configured(platform) {
            continue;
        }
        let base = match platform {
            Platform::TikTok => &endpoints.tiktok_api_base,
            Platform::Instagram => &endpoints.instagram_graph_base,
        };
        let started = Instant::now();
        // Any HTTP answer means the platform is reachable; only transport failures and
        // 5xx count as unavailable.
        let available = client
            .get(base)
            .send()
            .await
            .is_ok_and(|r| !r.status().is_server_error());
        providers.push(ProviderProbe {
            platform,
            available,
            latency_ms: available
                .then(|| started.elapsed().as_millis().min(u128::from(u32::MAX)) as u32),
        });
    }
    let snapshot = HealthSnapshot {
        checked_at: Utc::now(),
        database,
        redis,
        encryption,
        providers,
    };
    if database {
        health::save(&ctx.db, &snapshot).await?;
        service::events::alerts::evaluate(&ctx.db, &ctx.engine.events, &ctx.settings.alerts)
            .await?;
        crate::backup::check_overdue(ctx).await?;
    }
    Ok(snapshot)
}
