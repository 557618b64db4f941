//! The recurring health check's findings (the maintenance guide's "system health checks"),
//! stored where every process can read them.

use chrono::{DateTime, Utc};
use sea_orm::ConnectionTrait;
use serde::{Deserialize, Serialize};

use crate::{
    domain::Platform,
    error::ServiceResult,
    identity::caller::{Caller, Role},
    ops::settings,
    providers::calls::{self, OperationStats},
};

/// The setting holding the latest snapshot.
pub const SNAPSHOT: &str = "health_snapshot";

/// One provider probe.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProviderProbe {
    pub platform: String,
    pub available: bool,
    pub latency_ms: Option<u32>,
}

/// What the last health check found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthSnapshot {
    pub checked_at: DateTime<Utc>,
    pub database: bool,
    /// None in embedded mode (no Redis).
    pub redis: Option<bool>,
    pub encryption: bool,
    pub providers: Vec<ProviderProbe>,
}

impl HealthSnapshot {
    /// The probe of one platform.
    pub fn provider(&self, platform: Platform) -> Option<&ProviderProbe> {
        self.providers
            .iter()
            .find(|p| p.platform == platform.as_str())
    }
}

/// Stores a snapshot.
pub async fn save(db: &impl ConnectionTrait, snapshot: &HealthSnapshot) -> ServiceResult<()> {
    let json = serde_json::to_string(snapshot)
        .map_err(|e| crate::ServiceError::Internal(format!("health snapshot: {e}")))?;
    settings::put(db, SNAPSHOT, json).await
}

/// The latest snapshot, if a health check ever ran.
pub async fn load(db: &impl ConnectionTrait) -> ServiceResult<Option<HealthSnapshot>> {
    Ok(settings::get(db, SNAPSHOT)
        .await?
        .and_then(|json| serde_json::from_str(&json).ok()))
}

/// Provider call statistics over `window` (default one hour; see
/// [`calls::parse_window`]), deployment-wide: OPERATOR only.
pub async fn provider_stats(
    db: &impl ConnectionTrait,
    caller: &Caller,
    window: Option<&str>,
) -> ServiceResult<Vec<OperationStats>> {
    caller.require(Role::Operator)?;
    let window = match window {
        None => std::time::Duration::from_secs(3600),
        Some(text) => calls::parse_window(text)?,
    };
    calls::stats(db, window).await
}
