use std::sync::Arc;

use axum::{Json, extract::State, http::StatusCode, response::IntoResponse};
use jobs::Queue;
use sea_orm::DatabaseConnection;
use serde_json::{Value, json};
use service::engine::Engine;

use crate::app::AppState;

/// What readiness checks look at, for API and worker processes alike.
#[derive(Clone)]
pub struct Probes {
    pub db: DatabaseConnection,
    pub engine: Arc<Engine>,
    pub queue: Queue,
}

impl axum::extract::FromRef<AppState> for Probes {
    fn from_ref(state: &AppState) -> Self {
        Probes {
            db: state.db.clone(),
            engine: state.engine.clone(),
            queue: state.queue.clone(),
        }
    }
}

/// Prometheus metrics of this process (refresh outcomes, sweeps, provider calls).
pub async fn metrics() -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::telemetry::render_metrics(),
    )
}

/// Liveness: the process is up and serving.
pub async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// Readiness: the database answers, the configured keys decrypt the canary, and Redis
/// answers when it is used. 503 naming the failing check otherwise.
pub async fn readyz(State(probes): State<Probes>) -> impl IntoResponse {
    let mut checks = serde_json::Map::new();
    let database = match probes.db.ping().await {
        Ok(()) => "ok".to_owned(),
        Err(err) => {
            tracing::warn!(error = %err, "readiness check: database unreachable");
            "unreachable".to_owned()
        }
    };
    checks.insert("database".into(), Value::from(database));
    let encryption =
        match service::ops::settings::check_canary(&probes.db, &probes.engine.vault()).await {
            Ok(()) => "ok".to_owned(),
            Err(err) => {
                tracing::warn!(error = %err, "readiness check: encryption canary failed");
                format!("failing: {err}")
            }
        };
    checks.insert("encryption".into(), Value::from(encryption));
    if let Some(redis) = probes.queue.redis_ok().await {
        checks.insert(
            "redis".into(),
            Value::from(if redis { "ok" } else { "unreachable" }),
        );
    }
    let ready = checks.values().all(|v| v == "ok");
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let word = if ready { "ready" } else { "unavailable" };
    (status, Json(json!({ "status": word, "checks": checks })))
}
