use async_graphql::{ComplexObject, Context, Object, SimpleObject};
use chrono::{DateTime, Utc};
use service::ops::health;

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
        let queue = ctx
            .data::<jobs::Queue>()
            .map_err(|_| ApiError::internal())?;
        let period = ctx
            .data::<jobs::JobSettings>()
            .map_err(|_| ApiError::internal())?
            .rotation_period;
        let health = health::system(ctx.db()?, ctx.engine()?, ctx.caller()?, queue, period).await?;
        Ok(SystemHealth {
            database: health.database,
            encryption: health.encryption,
            redis: health.redis,
            providers: health
                .providers
                .into_iter()
                .map(|p| ProviderHealth {
                    platform: p.platform.into(),
                    configured: p.configured,
                    available: p.available,
                    latency_ms: p.latency_ms,
                })
                .collect(),
            last_sweep_at: health.last_sweep_at,
            last_health_check_at: health.last_health_check_at,
            details: health
                .operator
                .map(|o| OperatorDetails {
                    encryption_error: o.encryption_error,
                    key_rotation: o.key_rotation.into(),
                })
                .map_err(ApiError::from),
            backup: crate::graphql::backups::backup_health(ctx).await?,
            database_size: health.database_size.map(Into::into),
        })
    }
}
