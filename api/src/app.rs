use std::{future::Future, sync::Arc};

use jobs::{JobContext, Queue};
use sea_orm::DatabaseConnection;
use service::engine::Engine;
use tokio::net::TcpListener;

use crate::{
    graphql::{AppSchema, build_schema},
    http,
    settings::ApiConfig,
};

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub db: DatabaseConnection,
    pub config: Arc<ApiConfig>,
    pub schema: AppSchema,
    pub engine: Arc<Engine>,
    pub queue: Queue,
    /// Turns true when the server shuts down: WebSockets close with 1001 (going away).
    pub closing: tokio::sync::watch::Receiver<bool>,
    /// Per-API-key token buckets (RATE_LIMITED).
    pub limiter: Arc<crate::limits::KeyRateLimiter>,
    /// Open WebSockets per caller (`TOKENWARDEN_LIMITS_WS_MAX_SOCKETS_PER_KEY`).
    pub sockets: Arc<crate::limits::SocketCounter>,
}

impl axum::extract::FromRef<AppState> for DatabaseConnection {
    fn from_ref(state: &AppState) -> Self {
        state.db.clone()
    }
}

/// Serves only `/healthz` and `/readyz` (for worker processes) until `shutdown`.
pub async fn serve_probes(
    probes: http::Probes,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    tracing::info!(addr = %listener.local_addr()?, "serving /healthz and /readyz");
    axum::serve(listener, http::probe_router(probes))
        .with_graceful_shutdown(shutdown)
        .await
}

/// A ready-to-serve application over parts the caller assembled (the binary's composition
/// root: `tokenwarden::compose`).
pub struct App {
    pub state: AppState,
    closing: tokio::sync::watch::Sender<bool>,
}

impl App {
    /// An app over a migrated database, a running engine and a queue.
    pub fn from_parts(
        db: DatabaseConnection,
        config: ApiConfig,
        engine: Arc<Engine>,
        queue: Queue,
    ) -> App {
        let schema = build_schema(db.clone(), engine.clone(), queue.clone(), &config);
        let (closing, closing_rx) = tokio::sync::watch::channel(false);
        let limiter = Arc::new(crate::limits::KeyRateLimiter::new(&config.limits));
        let sockets = Arc::new(crate::limits::SocketCounter::new(
            config.limits.ws_max_sockets_per_key,
        ));
        App {
            closing,
            state: AppState {
                db,
                config: Arc::new(config),
                schema,
                engine,
                queue,
                closing: closing_rx,
                limiter,
                sockets,
            },
        }
    }

    /// What the workers of this app need (for the embedded all-in-one process).
    pub fn job_context(&self) -> Arc<JobContext> {
        Arc::new(JobContext {
            db: self.state.db.clone(),
            engine: self.state.engine.clone(),
            queue: self.state.queue.clone(),
            settings: self.state.config.jobs.clone(),
        })
    }

    /// The axum router of this app.
    pub fn router(&self) -> axum::Router {
        http::router(self.state.clone())
    }

    /// Serves on `listener` until `shutdown` resolves, then drains in-flight requests.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let router = self.router();
        let closing = self.closing;
        let limits = &self.state.config.limits;
        let limits = http::server::ServerLimits {
            max_connections: limits.max_connections,
            header_read_timeout: limits.header_read_timeout,
        };
        tracing::info!(addr = %listener.local_addr()?, "serving GraphQL at /graphql");
        http::server::serve(listener, router, limits, async move {
            shutdown.await;
            // Open WebSockets close cleanly (1001) so the drain can finish.
            let _ = closing.send(true);
        })
        .await
    }
}
