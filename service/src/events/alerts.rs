//! Error-rate alerts (the maintenance guide's "alerts for unusual error patterns"): when a
//! platform's provider error rate over a sliding window crosses the threshold,
//! PROVIDER_DEGRADED is raised once; PROVIDER_RECOVERED once it falls back.

use std::time::Duration;

use entity::token_event;
use sea_orm::{ConnectionTrait, TransactionSession, TransactionTrait};

use crate::{
    domain::Platform,
    error::ServiceResult,
    events::{self, EventBus, EventKind},
    ops::settings,
    providers::calls,
    tokens::failures::FailureView,
};

/// When a platform counts as degraded.
#[derive(Clone, Debug)]
pub struct AlertSettings {
    /// The sliding window.
    pub window: Duration,
    /// Fewer calls than this in the window never raise an alert.
    pub min_calls: u64,
    /// Error rate (0-1) above which the platform is degraded.
    pub error_rate: f64,
}

impl Default for AlertSettings {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(300),
            min_calls: 20,
            error_rate: 0.2,
        }
    }
}

fn state_key(platform: Platform) -> String {
    format!("provider_degraded:{}", platform.as_str())
}

/// Compares each platform's recent error rate with the threshold and raises
/// PROVIDER_DEGRADED / PROVIDER_RECOVERED on transitions (once each). Returns the events.
pub async fn evaluate<D>(
    db: &D,
    bus: &EventBus,
    alert: &AlertSettings,
) -> ServiceResult<Vec<token_event::Model>>
where
    D: ConnectionTrait + TransactionTrait,
{
    let stats = calls::stats(db, alert.window).await?;
    let mut raised = Vec::new();
    for platform in Platform::ALL {
        let (requests, errors) = stats
            .iter()
            .filter(|s| s.platform == platform)
            .fold((0, 0), |(r, e), s| (r + s.requests, e + s.errors));
        let rate = if requests == 0 {
            0.0
        } else {
            errors as f64 / requests as f64
        };
        let degraded = requests >= alert.min_calls && rate > alert.error_rate;
        let was = settings::get(db, &state_key(platform)).await?.as_deref() == Some("1");
        if degraded == was {
            continue;
        }
        let txn = crate::db::begin(db).await?;
        let event = if degraded {
            let view = FailureView {
                code: "PROVIDER_DEGRADED",
                message: format!(
                    "{}: {:.0} % of {requests} calls failed in the last {} s.",
                    platform.display_name(),
                    rate * 100.0,
                    alert.window.as_secs()
                ),
                action: Some(
                    "Refreshes are retried automatically; check the platform's status page and providerStats."
                        .into(),
                ),
            };
            events::record_global(
                &txn,
                EventKind::ProviderDegraded,
                Some(platform),
                Some(&view),
            )
            .await?
        } else {
            events::record_global(&txn, EventKind::ProviderRecovered, Some(platform), None).await?
        };
        settings::put(
            &txn,
            &state_key(platform),
            if degraded { "1" } else { "0" }.into(),
        )
        .await?;
        txn.commit().await?;
        tracing::warn!(platform = %platform, kind = %event.kind, requests, errors, "provider health changed");
        bus.publish(event.clone()).await;
        raised.push(event);
    }
    Ok(raised)
}
