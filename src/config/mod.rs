//! Everything configurable, from flags or the environment (clap), in one section per
//! concern; each section is a file here and a heading of `--help`. `--help` is the
//! reference: docs/configuration.md explains the same settings under the same headings,
//! and a test below keeps the two in step. Secrets are [`SecretString`]s (or [`SecretUrl`]s),
//! so the derived `Debug` of a whole configuration shows none of them.

use std::{fmt, path::PathBuf, str::FromStr};

use clap::Args;
use secrecy::{ExposeSecret as _, SecretString};

/// Alert thresholds of the health check.
pub mod alerts;
/// Scheduled backups.
pub mod backups;
/// The database URL.
pub mod database;
/// Schedules, refresh windows and worker bounds.
pub mod jobs;
/// Request and query limits of the API.
pub mod limits;
/// The TikTok and Instagram apps and the sandbox.
pub mod providers;
/// The job queue and Redis.
pub mod queue;
/// Encryption keys, the bootstrap key, redirect and webhook allow-lists.
pub mod security;
/// The HTTP server, logging and production hardening.
pub mod server;
/// Dashboard sessions and sign-in throttling.
pub mod sessions;

pub use server::LogFormat;

/// Everything configurable. Each field is a section (a `--help` heading).
#[derive(Args, Clone, Debug)]
pub struct Config {
    #[command(flatten, next_help_heading = "Server")]
    pub server: server::ServerConfig,

    #[command(flatten, next_help_heading = "Limits")]
    pub limits: limits::LimitsConfig,

    #[command(flatten, next_help_heading = "Database")]
    pub database: database::DatabaseConfig,

    #[command(flatten, next_help_heading = "Queue")]
    pub queue: queue::QueueConfig,

    #[command(flatten, next_help_heading = "Providers")]
    pub providers: providers::ProvidersConfig,

    #[command(flatten, next_help_heading = "Security")]
    pub security: security::SecurityConfig,

    #[command(flatten, next_help_heading = "Jobs")]
    pub jobs: jobs::JobsConfig,

    #[command(flatten, next_help_heading = "Dashboard sessions")]
    pub session: sessions::SessionConfig,

    #[command(flatten, next_help_heading = "Alerts")]
    pub alerts: alerts::AlertsConfig,

    #[command(flatten, next_help_heading = "Backups")]
    pub backups: backups::BackupConfig,
}

/// A connection URL that may carry a password (`postgres://user:password@host/db`): a
/// secret whose `Debug` shows the URL with the password replaced.
#[derive(Clone)]
pub struct SecretUrl(SecretString);

impl SecretUrl {
    /// The URL, password included (for connecting only).
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl FromStr for SecretUrl {
    type Err = std::convert::Infallible;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        Ok(SecretUrl(SecretString::from(url)))
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&service::db::redacted_url(self.expose()))
    }
}

#[derive(clap::Parser)]
#[command(args_override_self = true)]
struct ConfigOnly {
    #[command(flatten)]
    config: Config,
}

impl Config {
    /// Parses a configuration from arguments (and the environment), as the binary does.
    /// The first argument is the program name. Used by tests and embedders.
    pub fn try_parse_from<I, T>(args: I) -> Result<Config, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        <ConfigOnly as clap::Parser>::try_parse_from(args).map(|c| c.config)
    }

    /// The public base URL without a trailing slash.
    pub fn public_url(&self) -> String {
        self.server
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.server.listen))
            .trim_end_matches('/')
            .to_owned()
    }

    /// Whether introspection is served: as configured, never in production mode.
    pub fn introspection_enabled(&self) -> bool {
        self.server.introspection.unwrap_or(true) && !self.server.production
    }

    /// Whether GraphiQL is served at `/graphiql`.
    pub fn graphiql_enabled(&self) -> bool {
        !self.server.production
    }

    /// The directory of the refresh journal.
    pub fn journal_dir(&self) -> PathBuf {
        if let Some(dir) = &self.jobs.refresh_journal_dir {
            return dir.clone();
        }
        self.database
            .sqlite_path()
            .and_then(|db| db.parent().map(PathBuf::from))
            .filter(|dir| !dir.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."))
    }

    /// The embedded queue's SQLite file.
    pub fn queue_path(&self) -> PathBuf {
        if let Some(path) = &self.queue.queue_file {
            return path.clone();
        }
        self.database
            .sqlite_path()
            .and_then(|db| db.parent().map(|dir| dir.join("tokenwarden-jobs.db")))
            .unwrap_or_else(|| PathBuf::from("tokenwarden-jobs.db"))
    }

    /// The job settings these flags describe.
    pub fn job_settings(&self) -> ::jobs::JobSettings {
        let jobs = &self.jobs;
        ::jobs::JobSettings {
            sweep: service::tokens::sweep::SweepSettings {
                tiktok_window: jobs.refresh_window_tiktok,
                instagram_window: jobs.refresh_window_instagram,
                claim_for: jobs.sweep_claim,
                ..Default::default()
            },
            schedules: jobs.schedules(),
            concurrency: jobs.worker_concurrency,
            cleanup_after: jobs.cleanup_after,
            rotation_period: jobs.key_rotation_period,
            retention: jobs.retention,
            alerts: self.alerts.settings(),
            backups: self.backups.job_settings(self),
            database_size_schedule: self.database.db_size_schedule.clone(),
            database_growth: self.database.growth(),
        }
    }

    /// The OAuth app configuration these settings need in the TikTok and Meta portals (no
    /// secrets): `config export`, `oauthAppConfig`.
    pub fn oauth_app_config(&self) -> service::ops::app_config::OAuthAppConfig {
        let providers = &self.providers;
        service::ops::app_config::OAuthAppConfig::describe(
            &service::ops::app_config::AppConfigInput {
                public_url: &self.public_url(),
                sandbox: providers.sandbox_url.is_some() || !providers.has_platform_credentials(),
                tiktok_client_key: providers.tiktok.client_key.as_deref(),
                tiktok_client_secret_configured: providers.tiktok.client_secret.is_some(),
                tiktok_app_type: providers.tiktok.app_type.into(),
                instagram_client_id: providers.instagram.client_id.as_deref(),
                instagram_client_secret_configured: providers.instagram.client_secret.is_some(),
                instagram_graph_version: &providers.instagram.graph_version,
            },
        )
    }

    /// The settings of the API server.
    pub fn api(&self) -> api::ApiConfig {
        api::ApiConfig {
            public_url: self.public_url(),
            limits: self.limits.settings(),
            introspection: self.introspection_enabled(),
            graphiql: self.graphiql_enabled(),
            suggestions: !self.server.production,
            session: self.session.settings(),
            jobs: self.job_settings(),
            oauth_app: self.oauth_app_config(),
        }
    }
}

#[cfg(test)]
mod tests;
