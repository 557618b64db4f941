use std::{future::Future, net::SocketAddr, sync::Arc};

use anyhow::Context as _;
use sea_orm::DatabaseConnection;
use secrecy::ExposeSecret;
use service::api_keys::{self, Bootstrap};
use tokio::net::TcpListener;

use crate::{
    config::Config,
    graphql::{AppSchema, build_schema},
    http,
};

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub db: DatabaseConnection,
    pub config: Arc<Config>,
    pub schema: AppSchema,
}

impl axum::extract::FromRef<AppState> for DatabaseConnection {
    fn from_ref(state: &AppState) -> Self {
        state.db.clone()
    }
}

/// Serves only `/healthz` and `/readyz` (for worker processes) until `shutdown`.
pub async fn serve_probes(
    db: DatabaseConnection,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    tracing::info!(addr = %listener.local_addr()?, "serving /healthz and /readyz");
    axum::serve(listener, http::probe_router(db))
        .with_graceful_shutdown(shutdown)
        .await
}

/// A ready-to-serve application: database connected and migrated, admin key ensured.
pub struct App {
    pub state: AppState,
}

impl App {
    /// Connects to the database, runs migrations and ensures the bootstrap admin key.
    /// A generated key is printed to stdout once (never logged).
    pub async fn build(config: Config) -> anyhow::Result<App> {
        let db = service::db::connect_and_migrate(&config.database_url)
            .await
            .with_context(|| {
                format!(
                    "could not open the database at {}",
                    service::db::redacted_url(&config.database_url)
                )
            })?;
        bootstrap(&db, &config).await?;
        Ok(App::from_parts(db, config))
    }

    /// An app over an existing, migrated database (no bootstrap).
    pub fn from_parts(db: DatabaseConnection, config: Config) -> App {
        let schema = build_schema(db.clone(), &config);
        App {
            state: AppState {
                db,
                config: Arc::new(config),
                schema,
            },
        }
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
        tracing::info!(addr = %listener.local_addr()?, "serving GraphQL at /graphql");
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await
    }
}

async fn bootstrap(db: &DatabaseConnection, config: &Config) -> anyhow::Result<()> {
    let outcome = api_keys::bootstrap(db, config.bootstrap_key().as_ref())
        .await
        .map_err(|err| anyhow::anyhow!("could not bootstrap the admin key: {err}"))?;
    match outcome {
        Bootstrap::Generated(key) => {
            tracing::info!(
                "generated the first ADMIN key for tenant `default` (printed once on stdout)"
            );
            println!(
                "\nNo API keys existed, so an ADMIN key for tenant `default` was created.\n\
                 It is shown only this once; store it now:\n\n    {}\n",
                key.expose_secret()
            );
        }
        Bootstrap::Inserted => tracing::info!("bootstrap ADMIN key installed for tenant `default`"),
        Bootstrap::Revoked => {
            tracing::warn!("TOKENWARDEN_BOOTSTRAP_ADMIN_KEY names a revoked key; it stays revoked")
        }
        Bootstrap::AlreadyPresent | Bootstrap::NotNeeded => {}
    }
    Ok(())
}
