//! Error-rate alerts (the maintenance guide's "alerts for unusual error patterns"): when a
//! platform's provider error rate over a sliding window crosses the threshold,
//! PROVIDER_DEGRADED is raised once; PROVIDER_RECOVERED once it falls back. Each
//! transition's once key names the transition before it, so workers evaluating at the same
//! time raise it once.

use std::time::Duration;

use entity::token_event;
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, TransactionSession,
    TransactionTrait,
};

use crate::{
    domain::Platform,
    error::ServiceResult,
    events::{self, EventBus, EventKind},
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

/// The platform's last PROVIDER_DEGRADED or PROVIDER_RECOVERED event.
async fn last_transition(
    db: &impl ConnectionTrait,
    platform: Platform,
) -> ServiceResult<Option<token_event::Model>> {
    Ok(token_event::Entity::find()
        .filter(token_event::Column::AccountId.is_null())
        .filter(token_event::Column::TenantId.is_null())
        .filter(token_event::Column::Platform.eq(platform))
        .filter(token_event::Column::Kind.is_in([
            EventKind::ProviderDegraded.as_str(),
            EventKind::ProviderRecovered.as_str(),
        ]))
        .order_by_desc(token_event::Column::Id)
        .one(db)
        .await?)
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
        let last = last_transition(db, platform).await?;
        let was = last
            .as_ref()
            .is_some_and(|e| e.kind == EventKind::ProviderDegraded);
        if degraded == was {
            continue;
        }
        // The transition after `last`: whoever inserts it first raises it.
        let once_key = format!(
            "PROVIDER_HEALTH:{}:after:{}",
            platform.as_str(),
            last.map_or(0, |e| e.id)
        );
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
            events::record_global_once(
                &txn,
                EventKind::ProviderDegraded,
                Some(platform),
                Some(&view),
                once_key,
            )
            .await?
        } else {
            events::record_global_once(
                &txn,
                EventKind::ProviderRecovered,
                Some(platform),
                None,
                once_key,
            )
            .await?
        };
        txn.commit().await?;
        let Some(event) = event else {
            continue; // another worker raised this transition
        };
        tracing::warn!(platform = %platform, kind = %event.kind, requests, errors, "provider health changed");
        bus.publish(event.clone()).await;
        raised.push(event);
    }
    Ok(raised)
}
