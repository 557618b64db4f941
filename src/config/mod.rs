//! Everything configurable, from flags or the environment (clap). `--help` is the reference;
//! docs/configuration.md explains the same settings by section.

use std::{fmt, net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, ValueEnum};
use secrecy::SecretString;
use service::db::DEFAULT_DATABASE_URL;

/// Platform settings (TikTok app type, Graph API version).
pub mod providers;
/// Dashboard session settings.
pub mod sessions;

/// Log output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Everything configurable, from flags or the environment. Secrets are redacted in `Debug`.
#[derive(Args, Clone)]
pub struct Config {
    /// Database URL: `sqlite://file.db` (embedded) or `postgres://user@host/db`.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, global = true)]
    pub database_url: String,

    /// Redis URL. Unset = embedded mode (SQLite queue, in-process events).
    #[arg(long, env = "REDIS_URL", global = true)]
    pub redis_url: Option<String>,

    /// Prefix of every Redis key, so several deployments (or tests) share one Redis.
    #[arg(
        long,
        env = "TOKENWARDEN_REDIS_PREFIX",
        default_value = "tokenwarden",
        global = true
    )]
    pub redis_prefix: String,

    /// Address the HTTP server listens on.
    #[arg(
        long,
        env = "TOKENWARDEN_LISTEN",
        default_value = "127.0.0.1:8080",
        global = true
    )]
    pub listen: SocketAddr,

    /// Public base URL (used for OAuth redirect URIs). Default: `http://<listen>`.
    #[arg(long, env = "TOKENWARDEN_PUBLIC_URL", global = true)]
    pub public_url: Option<String>,

    /// When set, an ADMIN key with exactly this value is ensured for tenant `default`.
    #[arg(
        long,
        env = "TOKENWARDEN_BOOTSTRAP_ADMIN_KEY",
        hide_env_values = true,
        global = true
    )]
    pub bootstrap_admin_key: Option<String>,

    /// Log format.
    #[arg(long, env = "TOKENWARDEN_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,

    /// Largest accepted request body in bytes (larger requests get 413).
    #[arg(long, env = "TOKENWARDEN_MAX_BODY_BYTES", default_value_t = 1024 * 1024, global = true)]
    pub max_body_bytes: usize,

    /// Deepest accepted query nesting.
    #[arg(
        long,
        env = "TOKENWARDEN_MAX_QUERY_DEPTH",
        default_value_t = 16,
        global = true
    )]
    pub max_query_depth: usize,

    /// Highest accepted query complexity: the potential nodes of one operation (a field
    /// is one, a connection field its page size times its selection). QUERY_TOO_COMPLEX.
    #[arg(
        long,
        env = "TOKENWARDEN_MAX_QUERY_COMPLEXITY",
        default_value_t = 50_000,
        global = true
    )]
    pub max_query_complexity: usize,

    /// Allow schema introspection (`false` hides the schema from clients).
    #[arg(long, env = "TOKENWARDEN_INTROSPECTION", default_value_t = true, action = clap::ArgAction::Set, global = true)]
    pub introspection: bool,

    /// Production hardening: no introspection, no GraphiQL, no "did you mean" suggestions.
    #[arg(long, env = "TOKENWARDEN_PRODUCTION", default_value_t = false, action = clap::ArgAction::Set, global = true)]
    pub production: bool,

    /// Encryption keys as comma-separated `id:base64` pairs (32-byte AES-256 keys).
    /// Required with PostgreSQL; with SQLite a key file is generated when unset.
    #[arg(long, env = "TOKENWARDEN_KEYS", hide_env_values = true, global = true)]
    pub keys: Option<String>,

    /// The key id new ciphertexts use (default: the last key listed).
    #[arg(long, env = "TOKENWARDEN_ACTIVE_KEY", global = true)]
    pub active_key: Option<String>,

    /// Key file used when TOKENWARDEN_KEYS is unset (default: `tokenwarden.keys` next to
    /// the SQLite database; created with mode 0600).
    #[arg(long, env = "TOKENWARDEN_KEY_FILE", global = true)]
    pub key_file: Option<PathBuf>,

    /// TikTok app client key. With no platform credentials at all, the sandbox is used.
    #[arg(long, env = "TIKTOK_CLIENT_KEY", global = true)]
    pub tiktok_client_key: Option<String>,

    /// TikTok app client secret.
    #[arg(
        long,
        env = "TIKTOK_CLIENT_SECRET",
        hide_env_values = true,
        global = true
    )]
    pub tiktok_client_secret: Option<String>,

    /// Instagram app id (Instagram API with Instagram Login).
    #[arg(long, env = "INSTAGRAM_CLIENT_ID", global = true)]
    pub instagram_client_id: Option<String>,

    /// Instagram app secret.
    #[arg(
        long,
        env = "INSTAGRAM_CLIENT_SECRET",
        hide_env_values = true,
        global = true
    )]
    pub instagram_client_secret: Option<String>,

    /// Use the sandbox at this URL (e.g. `http://127.0.0.1:9000/sandbox`) instead of
    /// starting one; for worker processes and tests.
    #[arg(long, env = "TOKENWARDEN_SANDBOX_URL", global = true)]
    pub sandbox_url: Option<String>,

    /// Where the embedded sandbox listens when it is started (port 0 = any free port).
    #[arg(
        long,
        env = "TOKENWARDEN_SANDBOX_LISTEN",
        default_value = "127.0.0.1:0",
        global = true
    )]
    pub sandbox_listen: SocketAddr,

    /// Allowed `redirectAfter` prefixes, comma separated (e.g. `https://app.example.com/`).
    #[arg(
        long,
        env = "TOKENWARDEN_ALLOWED_REDIRECTS",
        value_delimiter = ',',
        global = true
    )]
    pub allowed_redirects: Vec<String>,

    /// Timeout of one provider HTTP call.
    #[arg(long, env = "TOKENWARDEN_PROVIDER_TIMEOUT", value_parser = humantime::parse_duration, default_value = "10s", global = true)]
    pub provider_timeout: Duration,

    /// TikTok calls per second this deployment allows itself (0 = unlimited).
    #[arg(
        long,
        env = "TOKENWARDEN_TIKTOK_RATE_LIMIT",
        default_value_t = 10,
        global = true
    )]
    pub tiktok_rate_limit: u32,

    /// Instagram calls per second this deployment allows itself (0 = unlimited).
    #[arg(
        long,
        env = "TOKENWARDEN_INSTAGRAM_RATE_LIMIT",
        default_value_t = 5,
        global = true
    )]
    pub instagram_rate_limit: u32,

    /// TikTok authorize host (default `https://www.tiktok.com`).
    #[arg(long, env = "TOKENWARDEN_TIKTOK_AUTH_URL", global = true)]
    pub tiktok_auth_url: Option<String>,

    /// TikTok API host (default `https://open.tiktokapis.com`).
    #[arg(long, env = "TOKENWARDEN_TIKTOK_API_URL", global = true)]
    pub tiktok_api_url: Option<String>,

    /// Instagram authorize/exchange host (default `https://api.instagram.com`).
    #[arg(long, env = "TOKENWARDEN_INSTAGRAM_AUTH_URL", global = true)]
    pub instagram_auth_url: Option<String>,

    /// Instagram Graph host (default `https://graph.instagram.com`).
    #[arg(long, env = "TOKENWARDEN_INSTAGRAM_GRAPH_URL", global = true)]
    pub instagram_graph_url: Option<String>,

    /// SQLite file of the embedded job queue (default: `tokenwarden-jobs.db` next to the
    /// SQLite database, or in the working directory). Unused when REDIS_URL is set.
    #[arg(long, env = "TOKENWARDEN_QUEUE_FILE", global = true)]
    pub queue_file: Option<PathBuf>,

    /// When the refresh sweep runs (cron with seconds).
    #[arg(
        long,
        env = "TOKENWARDEN_SWEEP_SCHEDULE",
        default_value = "0 */5 * * * *",
        global = true
    )]
    pub sweep_schedule: String,

    /// Refresh TikTok access tokens this long before they expire.
    #[arg(long, env = "TOKENWARDEN_REFRESH_WINDOW_TIKTOK", value_parser = humantime::parse_duration, default_value = "1h", global = true)]
    pub refresh_window_tiktok: Duration,

    /// Refresh Instagram tokens this long before they expire.
    #[arg(long, env = "TOKENWARDEN_REFRESH_WINDOW_INSTAGRAM", value_parser = humantime::parse_duration, default_value = "7d", global = true)]
    pub refresh_window_instagram: Duration,

    /// A sweep's claim on an account lasts this long (a lost job is found again after it).
    #[arg(long, env = "TOKENWARDEN_SWEEP_CLAIM", value_parser = humantime::parse_duration, default_value = "10m", global = true)]
    pub sweep_claim: Duration,

    /// Refresh jobs run at once per worker process.
    #[arg(
        long,
        env = "TOKENWARDEN_WORKER_CONCURRENCY",
        default_value_t = 32,
        global = true
    )]
    pub worker_concurrency: usize,

    /// When deactivated accounts are purged (cron with seconds).
    #[arg(
        long,
        env = "TOKENWARDEN_CLEANUP_SCHEDULE",
        default_value = "0 30 3 * * *",
        global = true
    )]
    pub cleanup_schedule: String,

    /// Deactivated accounts lose their tokens and personal data after this long.
    #[arg(long, env = "TOKENWARDEN_CLEANUP_AFTER", value_parser = humantime::parse_duration, default_value = "90d", global = true)]
    pub cleanup_after: Duration,

    /// When unfinished key rotations are resumed and key age is checked (cron).
    #[arg(
        long,
        env = "TOKENWARDEN_ROTATION_SCHEDULE",
        default_value = "*/30 * * * * *",
        global = true
    )]
    pub rotation_schedule: String,

    /// KEY_ROTATION_DUE when the active key is older than this.
    #[arg(long, env = "TOKENWARDEN_KEY_ROTATION_PERIOD", value_parser = humantime::parse_duration, default_value = "90d", global = true)]
    pub key_rotation_period: Duration,

    /// When the health check runs (cron with seconds).
    #[arg(
        long,
        env = "TOKENWARDEN_HEALTH_SCHEDULE",
        default_value = "0 * * * * *",
        global = true
    )]
    pub health_schedule: String,

    /// When old records are pruned (cron with seconds).
    #[arg(
        long,
        env = "TOKENWARDEN_PRUNE_SCHEDULE",
        default_value = "0 45 3 * * *",
        global = true
    )]
    pub prune_schedule: String,

    /// How long one process may hold an account's refresh lease; must exceed the provider
    /// timeout. A crashed process's lease blocks that account's refresh this long.
    #[arg(long, env = "TOKENWARDEN_REFRESH_LEASE", value_parser = humantime::parse_duration, default_value = "2m", global = true)]
    pub refresh_lease: Duration,

    /// Allow webhooks to private, loopback and link-local addresses (off in production).
    #[arg(long, env = "TOKENWARDEN_WEBHOOK_ALLOW_PRIVATE", default_value_t = false, action = clap::ArgAction::Set, global = true)]
    pub webhook_allow_private: bool,

    /// How often due webhook deliveries are sent (cron with seconds).
    #[arg(
        long,
        env = "TOKENWARDEN_WEBHOOK_SCHEDULE",
        default_value = "*/2 * * * * *",
        global = true
    )]
    pub webhook_schedule: String,

    /// PROVIDER_DEGRADED when more than this share (0-1) of a platform's calls fail...
    #[arg(
        long,
        env = "TOKENWARDEN_ALERT_ERROR_RATE",
        default_value_t = 0.2,
        global = true
    )]
    pub alert_error_rate: f64,

    /// ...among at least this many calls...
    #[arg(
        long,
        env = "TOKENWARDEN_ALERT_MIN_CALLS",
        default_value_t = 20,
        global = true
    )]
    pub alert_min_calls: u64,

    /// ...within this sliding window.
    #[arg(long, env = "TOKENWARDEN_ALERT_WINDOW", value_parser = humantime::parse_duration, default_value = "5m", global = true)]
    pub alert_window: Duration,

    /// Platform settings.
    #[command(flatten)]
    pub providers: providers::ProviderConfig,

    /// Provider call records and refresh attempts are kept this long.
    #[arg(long, env = "TOKENWARDEN_RETENTION", value_parser = humantime::parse_duration, default_value = "30d", global = true)]
    pub retention: Duration,

    #[command(flatten)]
    pub limits: LimitsConfig,

    #[command(flatten)]
    pub refresh: RefreshConfig,

    #[command(flatten)]
    pub session: sessions::SessionConfig,
}

/// Request, socket and connection limits. Every limit refuses with a stable
/// `extensions.code` (or WebSocket close code) and leaves the server serving.
#[derive(clap::Args, Clone, Debug)]
pub struct LimitsConfig {
    /// Most fields at the root of one operation (aliases included): QUERY_TOO_COMPLEX.
    #[arg(
        long,
        env = "TOKENWARDEN_LIMITS_MAX_ROOT_FIELDS",
        default_value_t = 20,
        global = true
    )]
    pub max_root_fields: usize,

    /// Most aliased fields in one document: QUERY_TOO_COMPLEX.
    #[arg(
        long,
        env = "TOKENWARDEN_LIMITS_MAX_ALIASES",
        default_value_t = 30,
        global = true
    )]
    pub max_aliases: usize,

    /// Longest string argument or variable, in bytes: BAD_USER_INPUT.
    #[arg(
        long,
        env = "TOKENWARDEN_LIMITS_MAX_STRING_BYTES",
        default_value_t = 4096,
        global = true
    )]
    pub max_string_bytes: usize,

    /// A request running longer than this is cancelled: REQUEST_TIMEOUT (HTTP 504).
    #[arg(long, env = "TOKENWARDEN_LIMITS_REQUEST_TIMEOUT", value_parser = humantime::parse_duration, default_value = "30s", global = true)]
    pub request_timeout: Duration,

    /// Requests per minute one API key may make on average (0 = unlimited): RATE_LIMITED
    /// (HTTP 429, `Retry-After`, `extensions.retryAfterSeconds`).
    #[arg(
        long,
        env = "TOKENWARDEN_LIMITS_RATE_PER_MINUTE",
        default_value_t = 600,
        global = true
    )]
    pub rate_per_minute: u32,

    /// Requests one API key may make at once before the per-minute rate applies.
    #[arg(
        long,
        env = "TOKENWARDEN_LIMITS_RATE_BURST",
        default_value_t = 60,
        global = true
    )]
    pub rate_burst: u32,
}

/// The refresh engine: where rotated tokens wait while the database cannot take them.
#[derive(Args, Clone, Debug)]
pub struct RefreshConfig {
    /// Directory of the refresh journal: refreshed tokens (encrypted) that the database
    /// could not store yet are fsync'd here and replayed by the next start. Default: next
    /// to the SQLite database, or the working directory. Keep it on local, persistent disk.
    #[arg(long, env = "TOKENWARDEN_REFRESH_JOURNAL_DIR", global = true)]
    pub refresh_journal_dir: Option<PathBuf>,

    /// How long a graceful shutdown waits for refreshed tokens to reach the database
    /// (they are in the journal either way).
    #[arg(long, env = "TOKENWARDEN_REFRESH_DRAIN", value_parser = humantime::parse_duration, default_value = "10s", global = true)]
    pub refresh_drain: Duration,
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

    /// The bootstrap key as a secret.
    pub fn bootstrap_key(&self) -> Option<SecretString> {
        self.bootstrap_admin_key
            .as_deref()
            .map(|key| SecretString::from(key.to_owned()))
    }

    /// The public base URL without a trailing slash.
    pub fn public_url(&self) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.listen))
            .trim_end_matches('/')
            .to_owned()
    }

    /// Whether introspection is served.
    pub fn introspection_enabled(&self) -> bool {
        self.introspection && !self.production
    }

    /// Whether real platform credentials are configured (otherwise the sandbox is used).
    pub fn has_platform_credentials(&self) -> bool {
        self.tiktok_client_key.is_some() || self.instagram_client_id.is_some()
    }

    /// The SQLite database file, when the database is SQLite on disk.
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        let rest = self
            .database_url
            .strip_prefix("sqlite://")
            .or_else(|| self.database_url.strip_prefix("sqlite:"))?;
        let path = rest.split('?').next().unwrap_or_default();
        (!path.is_empty() && !path.contains(":memory:")).then(|| PathBuf::from(path))
    }

    /// The Redis URL, when one is set (production mode).
    pub fn redis(&self) -> Option<&str> {
        self.redis_url.as_deref().filter(|u| !u.trim().is_empty())
    }

    /// The directory of the refresh journal.
    pub fn journal_dir(&self) -> PathBuf {
        if let Some(dir) = &self.refresh.refresh_journal_dir {
            return dir.clone();
        }
        self.sqlite_path()
            .and_then(|db| db.parent().map(PathBuf::from))
            .filter(|dir| !dir.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."))
    }

    /// The embedded queue's SQLite file.
    pub fn queue_path(&self) -> PathBuf {
        if let Some(path) = &self.queue_file {
            return path.clone();
        }
        self.sqlite_path()
            .and_then(|db| db.parent().map(|dir| dir.join("tokenwarden-jobs.db")))
            .unwrap_or_else(|| PathBuf::from("tokenwarden-jobs.db"))
    }

    /// The job settings these flags describe.
    pub fn job_settings(&self) -> jobs::JobSettings {
        jobs::JobSettings {
            sweep: service::tokens::sweep::SweepSettings {
                tiktok_window: self.refresh_window_tiktok,
                instagram_window: self.refresh_window_instagram,
                claim_for: self.sweep_claim,
                ..Default::default()
            },
            schedules: jobs::Schedules {
                sweep: self.sweep_schedule.clone(),
                cleanup: self.cleanup_schedule.clone(),
                rotate_keys: self.rotation_schedule.clone(),
                health_check: self.health_schedule.clone(),
                prune: self.prune_schedule.clone(),
                webhooks: self.webhook_schedule.clone(),
            },
            concurrency: self.worker_concurrency,
            cleanup_after: self.cleanup_after,
            rotation_period: self.key_rotation_period,
            retention: self.retention,
            alerts: service::events::alerts::AlertSettings {
                window: self.alert_window,
                min_calls: self.alert_min_calls,
                error_rate: self.alert_error_rate,
            },
        }
    }

    /// Whether GraphiQL is served at `/graphiql`.
    pub fn graphiql_enabled(&self) -> bool {
        !self.production
    }

    /// The settings of the API server.
    pub fn api(&self) -> api::ApiConfig {
        api::ApiConfig {
            public_url: self.public_url(),
            limits: api::limits::LimitSettings {
                max_body_bytes: self.max_body_bytes,
                max_query_depth: self.max_query_depth,
                max_query_complexity: self.max_query_complexity,
                max_root_fields: self.limits.max_root_fields,
                max_aliases: self.limits.max_aliases,
                max_string_bytes: self.limits.max_string_bytes,
                request_timeout: self.limits.request_timeout,
                rate_per_minute: self.limits.rate_per_minute,
                rate_burst: self.limits.rate_burst,
            },
            introspection: self.introspection_enabled(),
            graphiql: self.graphiql_enabled(),
            suggestions: !self.production,
            session: self.session.settings(),
            jobs: self.job_settings(),
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field(
                "database_url",
                &service::db::redacted_url(&self.database_url),
            )
            .field(
                "redis_url",
                &self.redis_url.as_deref().map(service::db::redacted_url),
            )
            .field("redis_prefix", &self.redis_prefix)
            .field("listen", &self.listen)
            .field("public_url", &self.public_url)
            .field(
                "bootstrap_admin_key",
                &self.bootstrap_admin_key.as_ref().map(|_| "[redacted]"),
            )
            .field("log_format", &self.log_format)
            .field("refresh", &self.refresh)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_query_depth", &self.max_query_depth)
            .field("max_query_complexity", &self.max_query_complexity)
            .field("introspection", &self.introspection)
            .field("production", &self.production)
            .field("keys", &self.keys.as_ref().map(|_| "[redacted]"))
            .field("active_key", &self.active_key)
            .field("key_file", &self.key_file)
            .field("tiktok_client_key", &self.tiktok_client_key)
            .field(
                "tiktok_client_secret",
                &self.tiktok_client_secret.as_ref().map(|_| "[redacted]"),
            )
            .field("instagram_client_id", &self.instagram_client_id)
            .field(
                "instagram_client_secret",
                &self.instagram_client_secret.as_ref().map(|_| "[redacted]"),
            )
            .field("sandbox_url", &self.sandbox_url)
            .field("sandbox_listen", &self.sandbox_listen)
            .field("allowed_redirects", &self.allowed_redirects)
            .field("provider_timeout", &self.provider_timeout)
            .field("tiktok_rate_limit", &self.tiktok_rate_limit)
            .field("instagram_rate_limit", &self.instagram_rate_limit)
            .field("limits", &self.limits)
            .field("providers", &self.providers)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_secrets() {
        let config = Config::try_parse_from([
            "tw",
            "--bootstrap-admin-key",
            "super-secret-key",
            "--database-url",
            "postgres://u:dbpass@h/db",
            "--redis-url",
            "redis://:redispass@h:6379",
            "--keys",
            "k1:c2VjcmV0LWtleS1tYXRlcmlhbA==",
            "--tiktok-client-secret",
            "tt-secret-value",
            "--instagram-client-secret",
            "ig-secret-value",
        ])
        .expect("valid arguments");
        let shown = format!("{config:?}");
        for secret in [
            "super-secret-key",
            "dbpass",
            "redispass",
            "c2VjcmV0LWtleS1tYXRlcmlhbA",
            "tt-secret-value",
            "ig-secret-value",
        ] {
            assert!(!shown.contains(secret), "{secret} leaked in {shown}");
        }
    }

    #[test]
    fn sqlite_path_is_read_from_the_url() {
        let config =
            Config::try_parse_from(["tw", "--database-url", "sqlite://data/tw.db?mode=rwc"])
                .expect("valid");
        assert_eq!(config.sqlite_path(), Some(PathBuf::from("data/tw.db")));
        let config =
            Config::try_parse_from(["tw", "--database-url", "postgres://h/db"]).expect("valid");
        assert_eq!(config.sqlite_path(), None);
    }

    #[test]
    fn production_disables_introspection_and_graphiql() {
        let config = Config::try_parse_from(["tw", "--production", "true"]).expect("valid");
        assert!(!config.introspection_enabled());
        assert!(!config.graphiql_enabled());
        let config = Config::try_parse_from(["tw", "--listen", "127.0.0.1:9000"]).expect("valid");
        assert!(config.introspection_enabled());
        assert_eq!(config.public_url(), "http://127.0.0.1:9000");
    }
}
