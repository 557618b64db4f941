//! The recurring health check's findings (the maintenance guide's "system health checks"),
//! stored where every process can read them, and what `systemHealth` makes of them: which
//! platforms are available, when the sweep and the check last ran ([`system`]).

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection};
use serde::{Deserialize, Serialize};

use crate::{
    domain::Platform,
    engine::Engine,
    error::ServiceResult,
    identity::caller::{Caller, Role},
    ops::{rotation, settings, size},
    providers::calls::{self, OperationStats},
    tokens::queue::JobQueue,
};

/// The setting holding the latest snapshot.
pub(crate) const SNAPSHOT: &str = "health_snapshot";

/// The setting holding when the sweep last completed (RFC 3339).
pub(crate) const LAST_SWEEP: &str = "last_sweep_at";

/// Provider calls are judged over this window.
pub(crate) const CALLS_WINDOW: Duration = Duration::from_secs(300);

/// One provider probe.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProviderProbe {
    pub platform: Platform,
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
        self.providers.iter().find(|p| p.platform == platform)
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

/// Records that a sweep pass completed now.
pub async fn record_sweep(db: &impl ConnectionTrait, at: DateTime<Utc>) -> ServiceResult<()> {
    settings::put(db, LAST_SWEEP, at.to_rfc3339()).await
}

/// When the sweep last completed; `None` before the first one (or an unreadable value).
async fn last_sweep(db: &impl ConnectionTrait) -> ServiceResult<Option<DateTime<Utc>>> {
    Ok(settings::get(db, LAST_SWEEP)
        .await?
        .and_then(|at| DateTime::parse_from_rfc3339(&at).ok())
        .map(|at| at.with_timezone(&Utc)))
}

/// One platform as this deployment sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderStatus {
    pub platform: Platform,
    /// Credentials are configured (or the sandbox stands in).
    pub configured: bool,
    /// Configured, reachable at the last health check (or not probed yet), and fewer than
    /// half of its calls failed over [`CALLS_WINDOW`].
    pub available: bool,
    /// The last probe's latency, else the slowest median of its recent calls.
    pub latency_ms: Option<u32>,
}

/// Judges one platform from its configuration, its last probe and its recent calls.
fn provider_status(
    platform: Platform,
    configured: bool,
    probe: Option<&ProviderProbe>,
    recent: &[OperationStats],
) -> ProviderStatus {
    let calls: Vec<&OperationStats> = recent.iter().filter(|s| s.platform == platform).collect();
    let requests: u64 = calls.iter().map(|s| s.requests).sum();
    let errors: u64 = calls.iter().map(|s| s.errors).sum();
    ProviderStatus {
        platform,
        configured,
        available: configured
            && probe.is_none_or(|p| p.available)
            && (requests == 0 || errors * 2 < requests),
        latency_ms: probe
            .and_then(|p| p.latency_ms)
            .or_else(|| calls.iter().map(|s| s.p50_latency_ms).max()),
    }
}

/// `systemHealth`: the deployment as an ADMIN of any tenant sees it.
#[derive(Debug)]
pub struct SystemHealth {
    /// The database answers.
    pub database: bool,
    /// The configured keys decrypt the canary.
    pub encryption: bool,
    /// The queue's server answers; `None` for the embedded queue.
    pub redis: Option<bool>,
    /// Every platform, in display order.
    pub providers: Vec<ProviderStatus>,
    pub last_sweep_at: Option<DateTime<Utc>>,
    pub last_health_check_at: Option<DateTime<Utc>>,
    /// The last size measurement.
    pub database_size: Option<size::DatabaseSize>,
    /// The deployment's own business: FORBIDDEN unless the caller is an OPERATOR.
    pub operator: ServiceResult<OperatorHealth>,
}

/// What only an OPERATOR sees.
#[derive(Debug)]
pub struct OperatorHealth {
    /// Why the canary does not decrypt (never key material).
    pub encryption_error: Option<String>,
    pub key_rotation: rotation::RotationStatus,
}

/// Checks the database, the encryption canary and the queue now, and reads the last health
/// check, the provider calls of the last 5 minutes, the last sweep and the database size
/// (ADMIN). With the database down, only the live checks answer.
pub async fn system(
    db: &DatabaseConnection,
    engine: &Engine,
    caller: &Caller,
    queue: &impl JobQueue,
    rotation_period: Duration,
) -> ServiceResult<SystemHealth> {
    caller.require(Role::Admin)?;
    let database = db.ping().await.is_ok();
    let canary = settings::check_canary(db, &engine.vault()).await;
    let (recent, snapshot) = if database {
        (calls::stats(db, CALLS_WINDOW).await?, load(db).await?)
    } else {
        (Vec::new(), None)
    };
    let providers = Platform::ALL
        .into_iter()
        .map(|platform| {
            let probe = snapshot.as_ref().and_then(|s| s.provider(platform));
            provider_status(
                platform,
                engine.providers.is_configured(platform),
                probe,
                &recent,
            )
        })
        .collect();
    let operator = rotation::status_for(db, engine, caller, rotation_period)
        .await
        .map(|key_rotation| OperatorHealth {
            encryption_error: canary.as_ref().err().cloned(),
            key_rotation,
        });
    Ok(SystemHealth {
        database,
        encryption: canary.is_ok(),
        redis: queue.reachable().await,
        providers,
        last_sweep_at: last_sweep(db).await?,
        last_health_check_at: snapshot.map(|s| s.checked_at),
        database_size: size::load(db).await?,
        operator,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn calls(platform: Platform, requests: u64, errors: u64, p50: u32) -> OperationStats {
        OperationStats {
            platform,
            operation: "refresh".into(),
            requests,
            errors,
            error_rate: 0.0,
            p50_latency_ms: p50,
            p95_latency_ms: p50,
        }
    }

    fn probe(available: bool, latency_ms: Option<u32>) -> ProviderProbe {
        ProviderProbe {
            platform: Platform::TikTok,
            available,
            latency_ms,
        }
    }

    #[test]
    fn a_platform_is_available_when_configured_reachable_and_mostly_answering() {
        let tiktok = Platform::TikTok;
        let judge = |configured, probe: Option<ProviderProbe>, recent: &[OperationStats]| {
            let status = provider_status(tiktok, configured, probe.as_ref(), recent);
            (status.available, status.latency_ms)
        };
        #[rustfmt::skip]
        let table = [
            // configured, last probe,                 calls (requests, errors)  → available, latency
            (true,  None,                     vec![],                            (true,  None)),
            (false, None,                     vec![],                            (false, None)),
            (true,  Some(probe(true, Some(40))), vec![calls(tiktok, 10, 4, 90)], (true,  Some(40))),
            (true,  Some(probe(false, None)), vec![],                            (false, None)),
            (true,  None,                     vec![calls(tiktok, 10, 5, 90)],    (false, Some(90))),
            (true,  None,                     vec![calls(tiktok, 6, 2, 30), calls(tiktok, 4, 2, 70)], (true, Some(70))),
            // Another platform's failures do not count.
            (true,  None,                     vec![calls(Platform::Instagram, 10, 10, 5)], (true, None)),
        ];
        for (configured, last, recent, want) in table {
            assert_eq!(
                judge(configured, last.clone(), &recent),
                want,
                "{configured} {last:?} {recent:?}"
            );
        }
    }
}
