//! The composition root: assembles a process from its [`Config`]: the database, the key ring,
//! the provider clients (real platforms or the sandbox), the token engine and the job queue,
//! then the API server ([`build_app`]) or a worker ([`WorkerApp`]).

use std::{path::PathBuf, sync::Arc};

use anyhow::{Context as _, bail};
use api::App;
use jobs::{JobContext, Queue};
use sea_orm::DatabaseConnection;
use secrecy::{ExposeSecret, SecretString};
use service::{
    engine::{Engine, EngineSettings},
    identity::api_keys::{self, Bootstrap},
    providers::{
        ClientCredentials, ProviderEndpoints, ProviderSettings, Providers, RateLimits, call_sink,
    },
    tokens::vault::KeyRing,
};
use tokio::net::TcpListener;

use crate::config::{Config, providers::TikTokAppTypeArg};

/// The message of the log line that announces demo mode (the sandbox stands in for the
/// platforms).
pub const DEMO_MODE: &str = "demo mode: using the sandbox simulator instead of TikTok and \
     Instagram, so no real account can connect; set TIKTOK_CLIENT_KEY and TIKTOK_CLIENT_SECRET \
     or INSTAGRAM_CLIENT_ID and INSTAGRAM_CLIENT_SECRET for the real platforms \
     (TOKENWARDEN_PRODUCTION=true refuses demo mode)";

/// Whether the provider clients talk to the sandbox: with `TOKENWARDEN_SANDBOX_URL`, or when
/// no platform credentials are configured at all.
pub fn uses_sandbox(config: &Config) -> bool {
    config.providers.sandbox_url.is_some() || !config.providers.has_platform_credentials()
}

/// In production mode, refuses what only a demo or a test may run with, naming every
/// problem at once: the sandbox instead of the platforms, an encryption key generated at
/// start (it would live only on this host), introspection switched on.
pub fn check_production(config: &Config) -> anyhow::Result<()> {
    if !config.server.production {
        return Ok(());
    }
    let mut problems = Vec::new();
    if config.providers.sandbox_url.is_some() {
        problems.push(
            "TOKENWARDEN_SANDBOX_URL is set: the sandbox simulator would stand in for the \
             platforms (unset it)"
                .to_owned(),
        );
    } else if !config.providers.has_platform_credentials() {
        problems.push(
            "no platform credentials: the sandbox simulator would stand in for the platforms \
             (set TIKTOK_CLIENT_KEY and TIKTOK_CLIENT_SECRET, or INSTAGRAM_CLIENT_ID and \
             INSTAGRAM_CLIENT_SECRET)"
                .to_owned(),
        );
    }
    if let KeySource::File(path) = key_source(config)
        && !path.exists()
    {
        problems.push(format!(
            "TOKENWARDEN_KEYS is unset and the key file {} does not exist, so a new key \
             would be generated (set TOKENWARDEN_KEYS; `tokenwarden keygen` prints a key)",
            path.display()
        ));
    }
    if config.server.introspection == Some(true) {
        problems.push(
            "TOKENWARDEN_INTROSPECTION=true: production mode serves no introspection (unset it)"
                .to_owned(),
        );
    }
    if problems.is_empty() {
        return Ok(());
    }
    bail!(
        "production mode (TOKENWARDEN_PRODUCTION=true) refuses to start:\n  - {}",
        problems.join("\n  - ")
    )
}

/// A worker process: database, engine and queue, without the API.
pub struct WorkerApp {
    pub context: Arc<JobContext>,
}

impl WorkerApp {
    /// Connects, runs migrations (as `serve` does, so either may start first on a fresh
    /// database) and starts the engine.
    pub async fn build(config: &Config) -> anyhow::Result<WorkerApp> {
        check_production(config)?;
        api::telemetry::metrics_handle();
        let db = service::db::connect_and_migrate_with(
            config.database.url.expose(),
            &config.database.options(),
        )
        .await
        .with_context(|| {
            format!(
                "could not open the database at {}",
                config.database.redacted()
            )
        })?;
        let engine = build_engine(&db, config).await?;
        let queue = build_queue(config).await?;
        Ok(WorkerApp {
            context: Arc::new(JobContext {
                db,
                engine,
                queue,
                settings: config.job_settings(),
            }),
        })
    }

    /// The readiness probes of this worker.
    pub fn probes(&self) -> api::http::Probes {
        api::http::Probes {
            db: self.context.db.clone(),
            engine: self.context.engine.clone(),
            queue: self.context.queue.clone(),
        }
    }
}

/// Where the encryption keys come from.
enum KeySource<'a> {
    /// `TOKENWARDEN_KEYS`.
    Listed(&'a str),
    /// A key file: `TOKENWARDEN_KEY_FILE`, else `tokenwarden.keys` next to a SQLite database.
    File(PathBuf),
    /// Neither (PostgreSQL without keys).
    None,
}

fn key_source(config: &Config) -> KeySource<'_> {
    let keys = config
        .security
        .keys
        .as_ref()
        .map(ExposeSecret::expose_secret);
    if let Some(keys) = keys.filter(|k| !k.trim().is_empty()) {
        return KeySource::Listed(keys);
    }
    match key_file_path(config) {
        Some(path) => KeySource::File(path),
        None => KeySource::None,
    }
}

/// Loads the key ring: `TOKENWARDEN_KEYS`, else the key file (created next to a SQLite
/// database when missing, except in production mode). PostgreSQL deployments must configure
/// keys explicitly.
pub fn load_key_ring(config: &Config) -> anyhow::Result<(KeyRing, Option<PathBuf>)> {
    let path = match key_source(config) {
        KeySource::Listed(keys) => {
            let ring = KeyRing::from_config(keys, config.security.active_key.as_deref())
                .context("TOKENWARDEN_KEYS is invalid")?;
            return Ok((ring, None));
        }
        KeySource::File(path) => path,
        KeySource::None => bail!(
            "no encryption keys: set TOKENWARDEN_KEYS (comma-separated id:base64 pairs; \
             `tokenwarden keygen` prints one) or TOKENWARDEN_KEY_FILE"
        ),
    };
    if config.server.production && !path.exists() {
        bail!(
            "production mode does not generate encryption keys: the key file {} does not \
             exist; set TOKENWARDEN_KEYS (`tokenwarden keygen` prints a key)",
            path.display()
        );
    }
    let (ring, created) = KeyRing::load_or_create_file(&path)
        .with_context(|| format!("could not load the key file {}", path.display()))?;
    if created {
        tracing::warn!(
            path = %path.display(),
            "generated a new encryption key file (mode 0600); back it up with the database: \
             tokens cannot be decrypted without it"
        );
    }
    Ok((ring, Some(path)))
}

/// The key file used when `TOKENWARDEN_KEYS` is unset: `TOKENWARDEN_KEY_FILE`, else
/// `tokenwarden.keys` next to a SQLite database; None for PostgreSQL without a key file.
pub fn key_file_path(config: &Config) -> Option<std::path::PathBuf> {
    match (&config.security.key_file, config.database.sqlite_path()) {
        (Some(path), _) => Some(path.clone()),
        (None, Some(db)) => Some(
            db.parent()
                .map(|dir| dir.join("tokenwarden.keys"))
                .unwrap_or_else(|| "tokenwarden.keys".into()),
        ),
        (None, None) => None,
    }
}

/// Loads the configured keys without ever creating a key file (backup verify and restore:
/// a fresh key could decrypt nothing).
pub fn load_existing_key_ring(config: &Config) -> anyhow::Result<KeyRing> {
    let path = match key_source(config) {
        KeySource::Listed(keys) => {
            return KeyRing::from_config(keys, config.security.active_key.as_deref())
                .context("TOKENWARDEN_KEYS is invalid");
        }
        KeySource::File(path) => Some(path),
        KeySource::None => None,
    };
    let path = path.filter(|p| p.exists()).with_context(|| {
        format!(
            "no encryption keys: set TOKENWARDEN_KEYS or put the backed-up key file at {} \
             (TOKENWARDEN_KEY_FILE)",
            key_file_path(config)
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "TOKENWARDEN_KEY_FILE".into())
        )
    })?;
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("could not read the key file {}", path.display()))?;
    KeyRing::parse_key_file(&text)
        .with_context(|| format!("the key file {} is invalid", path.display()))
}

/// Builds the provider clients. In demo mode ([`uses_sandbox`]) both platforms use the
/// sandbox: the one at `TOKENWARDEN_SANDBOX_URL`, or one started here; the log says so.
async fn build_providers(
    config: &Config,
) -> anyhow::Result<(
    Providers,
    tokio::sync::mpsc::Receiver<service::providers::ProviderCall>,
)> {
    let providers = &config.providers;
    let settings = ProviderSettings {
        timeout: providers.timeout,
        tiktok_rate_limit: providers.tiktok.rate_limit,
        instagram_rate_limit: providers.instagram.rate_limit,
        tiktok_app_type: providers.tiktok.app_type.into(),
        instagram_graph_version: providers.instagram.graph_version.clone(),
    };
    let (sink, calls) = call_sink(10_000);
    // One budget per app for the whole deployment: in Redis when there is one.
    let wait = providers.rate_limit_wait;
    let limits = Arc::new(match config.queue.redis() {
        Some(url) => RateLimits::redis(url, &config.queue.redis_prefix, wait)
            .await
            .map_err(|err| anyhow::anyhow!("{err}"))?,
        None => RateLimits::local(wait),
    });
    let providers = if uses_sandbox(config) {
        let base = match &providers.sandbox_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => {
                let listener = TcpListener::bind(providers.sandbox_listen)
                    .await
                    .with_context(|| {
                        format!(
                            "could not start the sandbox on {}",
                            providers.sandbox_listen
                        )
                    })?;
                let addr = listener.local_addr()?;
                let router = sandbox::Sandbox::new(sandbox::SandboxConfig {
                    tiktok_app_type: match providers.tiktok.app_type {
                        TikTokAppTypeArg::Web => sandbox::TikTokAppType::Web,
                        TikTokAppTypeArg::Desktop => sandbox::TikTokAppType::Desktop,
                    },
                    // The demo sandbox tells this server when it revokes a grant.
                    callback_base_url: Some(config.public_url()),
                    ..sandbox::SandboxConfig::default()
                })
                .router();
                tokio::spawn(async move {
                    if let Err(err) = axum::serve(listener, router).await {
                        tracing::error!(error = %err, "the sandbox stopped");
                    }
                });
                format!("http://{addr}/sandbox")
            }
        };
        tracing::warn!(sandbox = %base, "{DEMO_MODE}");
        Providers::with_limits(
            settings,
            ProviderEndpoints::sandbox(&base),
            Some(ClientCredentials::new(
                sandbox::TIKTOK_CLIENT_KEY,
                sandbox::TIKTOK_CLIENT_SECRET,
            )),
            Some(ClientCredentials::new(
                sandbox::INSTAGRAM_CLIENT_ID,
                sandbox::INSTAGRAM_CLIENT_SECRET,
            )),
            sink,
            limits,
        )
    } else {
        let defaults = ProviderEndpoints::default();
        let endpoints = ProviderEndpoints {
            tiktok_auth_base: providers
                .tiktok
                .auth_url
                .clone()
                .unwrap_or(defaults.tiktok_auth_base),
            tiktok_api_base: providers
                .tiktok
                .api_url
                .clone()
                .unwrap_or(defaults.tiktok_api_base),
            instagram_auth_base: providers
                .instagram
                .auth_url
                .clone()
                .unwrap_or(defaults.instagram_auth_base),
            instagram_graph_base: providers
                .instagram
                .graph_url
                .clone()
                .unwrap_or(defaults.instagram_graph_base),
        };
        let pair =
            |id: &Option<String>, secret: &Option<SecretString>, what: &str| match (id, secret) {
                (Some(id), Some(secret)) => Ok(Some(ClientCredentials {
                    client_id: id.clone(),
                    client_secret: secret.clone(),
                })),
                (None, None) => Ok(None),
                _ => Err(anyhow::anyhow!(
                    "{what}: set both the client id/key and the secret"
                )),
            };
        Providers::with_limits(
            settings,
            endpoints,
            pair(
                &providers.tiktok.client_key,
                &providers.tiktok.client_secret,
                "TikTok",
            )?,
            pair(
                &providers.instagram.client_id,
                &providers.instagram.client_secret,
                "Instagram",
            )?,
            sink,
            limits,
        )
    }
    .map_err(|err| anyhow::anyhow!("invalid provider configuration: {err}"))?;
    Ok((providers, calls))
}

/// Builds the token engine: key ring (checked against the database canary), provider
/// clients, and the background writer of the provider call log.
pub async fn build_engine(db: &DatabaseConnection, config: &Config) -> anyhow::Result<Arc<Engine>> {
    let (vault, key_file) = load_key_ring(config)?;
    service::ops::settings::ensure_canary(db, &vault)
        .await
        .map_err(|err| anyhow::anyhow!("{err}"))?;
    let (providers, calls) = build_providers(config).await?;
    service::providers::calls::spawn_writer(db.clone(), calls);
    let settings = EngineSettings {
        public_url: config.public_url(),
        allowed_redirects: config.security.allowed_redirects.clone(),
        key_file,
        webhook_allow_private: config.security.webhook_allow_private,
        refresh_lease: config.jobs.refresh_lease.max(config.providers.timeout * 2),
        lease_wait: config.jobs.refresh_lease.max(config.providers.timeout * 2),
        ..EngineSettings::default()
    };
    let events = match config.queue.redis() {
        Some(url) => service::events::EventBus::with_redis(url, &config.queue.redis_prefix)
            .await
            .map_err(|err| anyhow::anyhow!("{err}"))?,
        None => service::events::EventBus::local(),
    }
    // Published rows come back from their insert without their commit position.
    .with_store(db.clone());
    let deployment = service::ops::settings::deployment_id(db)
        .await
        .map_err(|err| anyhow::anyhow!("{err}"))?;
    let journal_dir = config.journal_dir();
    let engine = Arc::new(
        Engine::new(vault, providers, settings, events).with_journal_dir(&journal_dir, &deployment),
    );
    // Adopt a rotation made by another process.
    service::ops::rotation::sync_active_key(db, &engine)
        .await
        .map_err(|err| anyhow::anyhow!("{err}"))?;
    // Rotated tokens a dead process could not store go in before anything else refreshes.
    let replayed = service::tokens::refresh::replay_journal(
        db,
        &engine,
        &journal_dir,
        &deployment,
        std::time::Duration::from_secs(60),
    )
    .await
    .map_err(|err| {
        anyhow::anyhow!(
            "replaying the refresh journal in {}: {err}",
            journal_dir.display()
        )
    })?;
    if replayed > 0 {
        tracing::warn!(
            replayed,
            "stored refreshed tokens left in the journal by a previous process"
        );
    }
    Ok(engine)
}

/// Opens the job queue: Redis when REDIS_URL is set, else the embedded SQLite queue.
pub async fn build_queue(config: &Config) -> anyhow::Result<Queue> {
    match config.queue.redis() {
        Some(url) => Queue::redis(url, &config.queue.redis_prefix)
            .await
            .with_context(|| {
                format!(
                    "Redis is unreachable at {}: start it or unset REDIS_URL for embedded mode",
                    service::db::redacted_url(url)
                )
            }),
        None => {
            let path = config.queue_path();
            Queue::sqlite(&path)
                .await
                .with_context(|| format!("could not open the job queue {}", path.display()))
        }
    }
}

/// Builds the API server: connects to the database, runs migrations, ensures the bootstrap
/// admin key and starts the token engine. A generated key is printed to stdout once (never
/// logged).
pub async fn build_app(config: &Config) -> anyhow::Result<App> {
    check_production(config)?;
    api::telemetry::metrics_handle();
    let db = service::db::connect_and_migrate_with(
        config.database.url.expose(),
        &config.database.options(),
    )
    .await
    .with_context(|| {
        format!(
            "could not open the database at {}",
            config.database.redacted()
        )
    })?;
    bootstrap(&db, config).await?;
    let engine = build_engine(&db, config).await?;
    let queue = build_queue(config).await?;
    Ok(App::from_parts(db, config.api(), engine, queue))
}

async fn bootstrap(db: &DatabaseConnection, config: &Config) -> anyhow::Result<()> {
    let outcome = api_keys::bootstrap(db, config.security.bootstrap_admin_key.as_ref())
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
