use std::sync::Arc;

use axum::{
    Json,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::IntoResponse,
};
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

/// Prometheus metrics of this process (refresh outcomes, sweeps, provider calls), plus the
/// deployment-wide gauges read from the database at each scrape (backups, database size), so every
/// process reports them.
pub async fn metrics(State(probes): State<Probes>) -> impl IntoResponse {
    stored_gauges(&probes.db).await;
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::telemetry::render_metrics(),
    )
}

/// Sets the gauges whose values live in the database. A failing read leaves them as they
/// were (the scrape still answers).
async fn stored_gauges(db: &DatabaseConnection) {
    let seconds = |t: chrono::DateTime<chrono::Utc>| t.timestamp_millis() as f64 / 1000.0;
    match service::ops::backup::status::load(db).await {
        Ok(status) => {
            if let Some(run) = &status.last_attempt {
                metrics::gauge!("tokenwarden_backup_last_attempt_timestamp_seconds")
                    .set(seconds(run.finished_at));
                metrics::gauge!("tokenwarden_backup_last_verified").set(if run.succeeded() {
                    1.0
                } else {
                    0.0
                });
            }
            if let Some(run) = &status.last_success {
                metrics::gauge!("tokenwarden_backup_last_success_timestamp_seconds")
                    .set(seconds(run.finished_at));
                if let Some(bytes) = run.size_bytes {
                    metrics::gauge!("tokenwarden_backup_last_success_size_bytes").set(bytes as f64);
                }
            }
        }
        Err(err) => tracing::debug!(error = %err, "metrics: could not read the backup status"),
    }
    match service::ops::size::load(db).await {
        Ok(Some(size)) => {
            metrics::gauge!("tokenwarden_database_size_bytes").set(size.total_bytes as f64);
            metrics::gauge!("tokenwarden_database_growth_bytes").set(size.growth_bytes as f64);
            for table in &size.tables {
                metrics::gauge!("tokenwarden_database_rows", "table" => table.name.clone())
                    .set(table.rows as f64);
                if let Some(bytes) = table.bytes {
                    metrics::gauge!("tokenwarden_database_table_bytes", "table" => table.name.clone())
                        .set(bytes as f64);
                }
            }
        }
        Ok(None) => {}
        Err(err) => tracing::debug!(error = %err, "metrics: could not read the database size"),
    }
}

/// Liveness: the process is up and serving.
pub async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// Whether the request carries the bearer key of an OPERATOR (a database error or any
/// other key counts as no).
async fn is_operator(db: &DatabaseConnection, headers: &HeaderMap) -> bool {
    let Some(key) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, key)| key.trim())
        .filter(|key| !key.is_empty())
    else {
        return false;
    };
    service::identity::api_keys::authenticate(db, key, None)
        .await
        .is_ok_and(|caller| caller.is_operator())
}

/// Readiness: the database answers, the configured keys decrypt the canary, and Redis
/// answers when it is used; 200 `{"status":"ready"}` or 503 `{"status":"unavailable"}`.
/// Which check fails, and why, is shown only to an OPERATOR key (`Authorization: Bearer`),
/// logged, and exported on `/metrics` as `tokenwarden_ready{check}` (1 ok, 0 failing).
pub async fn readyz(State(probes): State<Probes>, headers: HeaderMap) -> impl IntoResponse {
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
    for (name, state) in &checks {
        metrics::gauge!("tokenwarden_ready", "check" => name.clone()).set(if state == "ok" {
            1.0
        } else {
            0.0
        });
    }
    let ready = checks.values().all(|v| v == "ok");
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let word = if ready { "ready" } else { "unavailable" };
    let body = if is_operator(&probes.db, &headers).await {
        json!({ "status": word, "checks": checks })
    } else {
        json!({ "status": word })
    };
    (status, [(header::CACHE_CONTROL, "no-store")], Json(body))
}
