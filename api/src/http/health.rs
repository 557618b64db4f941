use axum::{Json, extract::State, http::StatusCode, response::IntoResponse};
use sea_orm::DatabaseConnection;
use serde_json::{Value, json};

use crate::app::AppState;

/// Liveness: the process is up and serving.
pub async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

fn answer(checks: Value) -> (StatusCode, Json<Value>) {
    let ready = checks
        .as_object()
        .is_some_and(|c| c.values().all(|v| v == "ok"));
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let word = if ready { "ready" } else { "unavailable" };
    (status, Json(json!({ "status": word, "checks": checks })))
}

async fn database_check(db: &DatabaseConnection) -> &'static str {
    match db.ping().await {
        Ok(()) => "ok",
        Err(err) => {
            tracing::warn!(error = %err, "readiness check: database unreachable");
            "unreachable"
        }
    }
}

/// Readiness of an API process: the database answers and the configured keys decrypt the
/// canary. 503 naming the failing check otherwise.
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let database = database_check(&state.db).await;
    let encryption = match service::settings::check_canary(&state.db, &state.engine.vault()).await {
        Ok(()) => "ok".to_owned(),
        Err(err) => {
            tracing::warn!(error = %err, "readiness check: encryption canary failed");
            format!("failing: {err}")
        }
    };
    answer(json!({ "database": database, "encryption": encryption }))
}

/// Readiness of a process without an API (worker): the database answers.
pub async fn readyz_database(State(db): State<DatabaseConnection>) -> impl IntoResponse {
    answer(json!({ "database": database_check(&db).await }))
}
