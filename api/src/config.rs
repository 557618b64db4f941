use std::{fmt, net::SocketAddr};

use clap::{Args, ValueEnum};
use secrecy::SecretString;
use service::db::DEFAULT_DATABASE_URL;

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

    /// Highest accepted query complexity (one point per field).
    #[arg(
        long,
        env = "TOKENWARDEN_MAX_QUERY_COMPLEXITY",
        default_value_t = 1000,
        global = true
    )]
    pub max_query_complexity: usize,

    /// Allow schema introspection (`false` hides the schema from clients).
    #[arg(long, env = "TOKENWARDEN_INTROSPECTION", default_value_t = true, action = clap::ArgAction::Set, global = true)]
    pub introspection: bool,

    /// Production hardening: no introspection, no GraphiQL, no "did you mean" suggestions.
    #[arg(long, env = "TOKENWARDEN_PRODUCTION", default_value_t = false, action = clap::ArgAction::Set, global = true)]
    pub production: bool,
}

#[derive(clap::Parser)]
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

    /// Whether GraphiQL is served at `/`.
    pub fn graphiql_enabled(&self) -> bool {
        !self.production
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
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_query_depth", &self.max_query_depth)
            .field("max_query_complexity", &self.max_query_complexity)
            .field("introspection", &self.introspection)
            .field("production", &self.production)
            .finish()
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
        ])
        .expect("valid arguments");
        let shown = format!("{config:?}");
        for secret in ["super-secret-key", "dbpass", "redispass"] {
            assert!(!shown.contains(secret), "{secret} leaked in {shown}");
        }
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
