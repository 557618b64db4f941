use std::time::Duration;

use async_graphql::{ComplexObject, Context, Object, SimpleObject};
use chrono::{DateTime, Utc};
use service::{Role, domain, ops::health, ops::rotation, ops::settings, providers::calls};

use crate::{
    error::{ApiError, ApiResult},
    graphql::{
        accounts::Platform, backups::BackupHealth, context::ContextExt,
        database_size::DatabaseSize, maintenance::KeyRotation,
    },
};

/// One platform as this deployment sees it.
#[derive(SimpleObject)]
pub struct ProviderHealth {
    pub platform: Platform,
    /// Credentials are configured (or the sandbox stands in).
    pub configured: bool,
    /// Configured, reachable at the last health check, and fewer than half of its calls
    /// failed over the last 5 minutes.
    pub available: bool,
    /// Latency of the last health check probe (or the median of recent calls).
    pub latency_ms: Option<u32>,
}

/// The health checks of the maintenance guide. Every tenant's ADMIN sees whether the
/// deployment works; the details that are the deployment's own business (why encryption
/// fails, the key rotation) are OPERATOR fields, FORBIDDEN to others.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct SystemHealth {
    /// The database answers.
    pub database: bool,
    /// The configured keys decrypt the canary ("token encryption verification").
    pub encryption: bool,
    /// Redis answers; null in embedded mode (no Redis).
    pub redis: Option<bool>,
    pub providers: Vec<ProviderHealth>,
    /// When the refresh sweep last completed.
    pub last_sweep_at: Option<DateTime<Utc>>,
    /// When the recurring health check last ran.
    pub last_health_check_at: Option<DateTime<Utc>>,
    #[graphql(skip)]
    pub details: Result<OperatorDetails, ApiError>,
    /// Scheduled backups and the last one.
    pub backup: BackupHealth,
    /// Size and rows per table at the last measurement; null before the first one.
    pub database_size: Option<DatabaseSize>,
}

/// What only an OPERATOR sees.
pub struct OperatorDetails {
    encryption_error: Option<String>,
    key_rotation: KeyRotation,
}

#[ComplexObject]
impl SystemHealth {
    /// Why encryption is failing, when it is (never key material). OPERATOR.
    async fn encryption_error(&self) -> ApiResult<Option<&str>> {
        match &self.details {
            Ok(details) => Ok(details.encryption_error.as_deref()),
            Err(err) => Err(err.clone()),
        }
    }

    /// The active key and the rewrap progress. OPERATOR (null with a FORBIDDEN error
    /// for others).
    async fn key_rotation(&self) -> ApiResult<Option<&KeyRotation>> {
        match &self.details {
            Ok(details) => Ok(Some(&details.key_rotation)),
            Err(err) => Err(err.clone()),
        }
    }
}

/// `systemHealth`.
#[derive(Default)]
pub struct HealthQuery;

#[Object]
impl HealthQuery {
    /// Database, encryption and provider health (ADMIN; the details need OPERATOR).
    async fn system_health(&self, ctx: &Context<'_>) -> ApiResult<SystemHealth> {
        let caller = ctx.caller()?;
        caller.require(Role::Admin)?;
        let db = ctx.db()?;
        let engine = ctx.engine()?;
        let database = db.ping().await.is_ok();
        let canary = settings::check_canary(db, &engine.vault()).await;
        let recent = if database {
            calls::stats(db, Duration::from_secs(300)).await?
        } else {
            Vec::new()
        };
        let snapshot = if database {
            health::load(db).await?
        } else {
            None
        };
        let providers = domain::Platform::ALL
            .into_iter()
            .map(|platform| {
                let calls: Vec<_> = recent.iter().filter(|s| s.platform == platform).collect();
                let requests: u64 = calls.iter().map(|s| s.requests).sum();
                let errors: u64 = calls.iter().map(|s| s.errors).sum();
                let configured = engine.providers.is_configured(platform);
                let probe = snapshot.as_ref().and_then(|s| s.provider(platform));
                ProviderHealth {
                    platform: platform.into(),
                    configured,
                    available: configured
                        && probe.is_none_or(|p| p.available)
                        && (requests == 0 || errors * 2 < requests),
                    latency_ms: probe
                        .and_then(|p| p.latency_ms)
                        .or_else(|| calls.iter().map(|s| s.p50_latency_ms).max()),
                }
            })
            .collect();
        let queue = ctx
            .data::<jobs::Queue>()
            .map_err(|_| ApiError::internal())?;
        let period = ctx
            .data::<jobs::JobSettings>()
            .map_err(|_| ApiError::internal())?
            .rotation_period;
        let last_sweep_at = settings::get(db, jobs::sweep_expiring::LAST_SWEEP)
            .await?
            .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
            .map(|t| t.with_timezone(&Utc));
        let details = match rotation::status_for(db, engine, caller, period).await {
            Ok(status) => Ok(OperatorDetails {
                encryption_error: canary.as_ref().err().cloned(),
                key_rotation: status.into(),
            }),
            Err(err) => Err(ApiError::from(err)),
        };
        Ok(SystemHealth {
            database,
            encryption: canary.is_ok(),
            redis: queue.redis_ok().await,
            providers,
            last_sweep_at,
            last_health_check_at: snapshot.map(|s| s.checked_at),
            details,
            backup: crate::graphql::backups::backup_health(ctx).await?,
            database_size: service::ops::size::load(db).await?.map(Into::into),
        })
    }
}
