use async_graphql::{Context, Enum, ID, Object, SimpleObject};
use chrono::{DateTime, Utc};
use entity::refresh_attempt;
use jobs::{JobSettings, Queue};
use service::{ops::rotation, tokens::queue::JobQueue, tokens::summary};

use crate::{
    error::{ApiError, ApiResult},
    graphql::{
        accounts::{AccountFilter, AccountStatus, Platform},
        context::ContextExt,
        ids,
    },
};

/// The global-id type name of refresh attempts.
pub(crate) const ATTEMPT_KIND: &str = "RefreshAttempt";

/// How a refresh attempt ended.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "service::tokens::attempts::Outcome")]
pub enum RefreshOutcome {
    Succeeded,
    FailedTransient,
    FailedPermanent,
    Skipped,
}

/// Why a refresh ran.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "entity::enums::RefreshTrigger")]
pub enum RefreshTrigger {
    /// The sweep found the token inside its refresh window.
    Sweep,
    /// A retry after a transient failure.
    Retry,
    /// A bulk `refreshAccounts`.
    Bulk,
    /// A request: `refreshAccountToken`, the dashboard, or `accessToken` refreshing a
    /// token about to expire.
    Manual,
}

/// One refresh attempt of an account.
#[derive(SimpleObject)]
pub struct RefreshAttempt {
    pub id: ID,
    /// 1 for the first try after a success, then 2, 3... while failures last.
    pub attempt: i32,
    /// `sweep`, `retry`, `bulk` (jobs) or `manual` (requests).
    #[graphql(deprecation = "Use `triggeredBy`: the same value as an enum.")]
    pub trigger: String,
    /// Why the refresh ran.
    pub triggered_by: RefreshTrigger,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub outcome: RefreshOutcome,
    pub error_class: Option<String>,
    pub error_code: Option<String>,
    pub latency_ms: i32,
    #[graphql(skip)]
    pub row_id: i64,
}

impl TryFrom<refresh_attempt::Model> for RefreshAttempt {
    type Error = ApiError;

    fn try_from(m: refresh_attempt::Model) -> ApiResult<Self> {
        Ok(Self {
            id: ids::encode(ATTEMPT_KIND, m.id),
            attempt: m.attempt,
            trigger: m.trigger.as_str().to_owned(),
            triggered_by: m.trigger.into(),
            started_at: m.started_at,
            finished_at: m.finished_at,
            outcome: m.outcome.into(),
            error_class: m.error_class.map(|c| c.as_str().to_owned()),
            error_code: m.error_code,
            latency_ms: m.latency_ms,
            row_id: m.id,
        })
    }
}

/// Accounts per platform and status.
#[derive(SimpleObject)]
pub struct StatusCount {
    pub platform: Platform,
    pub status: AccountStatus,
    pub count: u64,
}

/// Refresh jobs in the queue.
#[derive(SimpleObject)]
pub struct QueueDepth {
    pub pending: u64,
    pub running: u64,
    pub failed: u64,
}

/// The tenant's token health at a glance.
#[derive(SimpleObject)]
pub struct TokenHealthSummary {
    pub by_status: Vec<StatusCount>,
    /// Refreshable accounts whose access token expires within 24 hours.
    #[graphql(name = "expiringNext24h")]
    pub expiring_next_24h: u64,
    /// Failed refresh attempts in the last 24 hours.
    #[graphql(name = "failuresLast24h")]
    pub failures_last_24h: u64,
    pub next_sweep_at: Option<DateTime<Utc>>,
    /// The refresh queue (deployment-wide).
    pub queue: QueueDepth,
}

/// Where the encryption key rotation stands.
#[derive(SimpleObject)]
pub struct KeyRotation {
    pub active_key_id: String,
    pub activated_at: Option<DateTime<Utc>>,
    /// Tokens still encrypted with another key (0 = the old key can be retired).
    pub remaining: u64,
    /// The active key is older than the rotation period (KEY_ROTATION_DUE).
    pub due: bool,
}

impl From<rotation::RotationStatus> for KeyRotation {
    fn from(s: rotation::RotationStatus) -> Self {
        Self {
            active_key_id: s.active_key_id,
            activated_at: s.activated_at,
            remaining: s.remaining,
            due: s.due,
        }
    }
}

fn queue_of<'a>(ctx: &'a Context<'_>) -> ApiResult<&'a Queue> {
    ctx.data::<Queue>().map_err(|_| {
        tracing::error!("queue missing from the GraphQL context");
        ApiError::internal()
    })
}

fn job_settings<'a>(ctx: &'a Context<'_>) -> ApiResult<&'a JobSettings> {
    ctx.data::<JobSettings>().map_err(|_| {
        tracing::error!("job settings missing from the GraphQL context");
        ApiError::internal()
    })
}

/// Token health and key rotation queries.
#[derive(Default)]
pub struct MaintenanceQuery;

#[Object]
impl MaintenanceQuery {
    /// Counts by status and platform, what expires in the next 24 hours, recent failures,
    /// the next sweep and the queue depth.
    async fn token_health(&self, ctx: &Context<'_>) -> ApiResult<TokenHealthSummary> {
        let summary = summary::summary(ctx.db()?, ctx.caller()?, Utc::now()).await?;
        let stats = queue_of(ctx)?.depth().await.map_err(|err| {
            tracing::error!(error = %err, "could not read the queue depth");
            ApiError::internal()
        })?;
        Ok(TokenHealthSummary {
            by_status: summary
                .by_status
                .into_iter()
                .map(|s| StatusCount {
                    platform: s.platform.into(),
                    status: s.status.into(),
                    count: s.count,
                })
                .collect(),
            expiring_next_24h: summary.expiring_next_24h,
            failures_last_24h: summary.failures_last_24h,
            next_sweep_at: job_settings(ctx)?.schedules.next_sweep(),
            queue: QueueDepth {
                pending: stats.pending,
                running: stats.running,
                failed: stats.failed,
            },
        })
    }

    /// The active encryption key and the rewrap progress. Deployment-wide (OPERATOR).
    async fn key_rotation(&self, ctx: &Context<'_>) -> ApiResult<KeyRotation> {
        let period = job_settings(ctx)?.rotation_period;
        Ok(
            rotation::status_for(ctx.db()?, ctx.engine()?, ctx.caller()?, period)
                .await?
                .into(),
        )
    }
}

/// Bulk refresh and key rotation.
#[derive(Default)]
pub struct MaintenanceMutation;

#[Object]
impl MaintenanceMutation {
    /// Queues a refresh of every refreshable account matching `filter` (INTEGRATOR),
    /// except accounts already queued. Returns how many were queued.
    async fn refresh_accounts(
        &self,
        ctx: &Context<'_>,
        filter: Option<AccountFilter>,
    ) -> ApiResult<u64> {
        let filter: service::connections::accounts::AccountFilter =
            filter.unwrap_or_default().into();
        Ok(service::tokens::sweep::refresh_many(
            ctx.db()?,
            &job_settings(ctx)?.sweep,
            queue_of(ctx)?,
            ctx.caller()?,
            &filter,
        )
        .await?)
    }

    /// Makes a new encryption key active (OPERATOR; audited deployment-wide); tokens are
    /// re-encrypted in the background. `keyId` names a key already configured on every process
    /// (TOKENWARDEN_KEYS); without it, in key-file mode, a new key is generated.
    async fn rotate_encryption_key(
        &self,
        ctx: &Context<'_>,
        key_id: Option<String>,
    ) -> ApiResult<KeyRotation> {
        let period = job_settings(ctx)?.rotation_period;
        Ok(rotation::rotate(
            ctx.db()?,
            ctx.engine()?,
            ctx.caller()?,
            key_id.as_deref(),
            period,
        )
        .await?
        .into())
    }
}
