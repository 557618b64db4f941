use std::time::Duration;

use async_graphql::{Context, Object, SimpleObject};
use service::{Role, domain, provider_calls, settings};

use crate::{
    error::ApiResult,
    graphql::{accounts::Platform, context::ContextExt},
};

/// One platform as this deployment sees it.
#[derive(SimpleObject)]
pub struct ProviderHealth {
    pub platform: Platform,
    /// Credentials are configured (or the sandbox stands in).
    pub configured: bool,
    /// Configured, and fewer than half of its calls failed over the last 5 minutes.
    pub available: bool,
    /// Median latency over the last 5 minutes, when there were calls.
    pub latency_ms: Option<u32>,
}

/// The health checks of the maintenance guide.
#[derive(SimpleObject)]
pub struct SystemHealth {
    /// The database answers.
    pub database: bool,
    /// The configured keys decrypt the canary ("token encryption verification").
    pub encryption: bool,
    /// Why encryption is failing, when it is (never key material).
    pub encryption_error: Option<String>,
    pub providers: Vec<ProviderHealth>,
}

/// `systemHealth`.
#[derive(Default)]
pub struct HealthQuery;

#[Object]
impl HealthQuery {
    /// Database, encryption and provider health (ADMIN).
    async fn system_health(&self, ctx: &Context<'_>) -> ApiResult<SystemHealth> {
        ctx.caller()?.require(Role::Admin)?;
        let db = ctx.db()?;
        let engine = ctx.engine()?;
        let database = db.ping().await.is_ok();
        let canary = settings::check_canary(db, &engine.vault()).await;
        let recent = if database {
            provider_calls::stats(db, Duration::from_secs(300)).await?
        } else {
            Vec::new()
        };
        let providers = domain::Platform::ALL
            .into_iter()
            .map(|platform| {
                let calls: Vec<_> = recent.iter().filter(|s| s.platform == platform).collect();
                let requests: u64 = calls.iter().map(|s| s.requests).sum();
                let errors: u64 = calls.iter().map(|s| s.errors).sum();
                let configured = engine.providers.is_configured(platform);
                ProviderHealth {
                    platform: platform.into(),
                    configured,
                    available: configured && (requests == 0 || errors * 2 < requests),
                    latency_ms: calls.iter().map(|s| s.p50_latency_ms).max(),
                }
            })
            .collect();
        Ok(SystemHealth {
            database,
            encryption: canary.is_ok(),
            encryption_error: canary.err(),
            providers,
        })
    }
}
