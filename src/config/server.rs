use std::net::SocketAddr;

use clap::{Args, ValueEnum};

/// Log output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// The HTTP server and the process itself.
#[derive(Args, Clone, Debug)]
pub struct ServerConfig {
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

    /// Log format.
    #[arg(long, env = "TOKENWARDEN_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,

    /// Allow schema introspection (`false` hides the schema from clients). Default: on,
    /// off in production mode, where `true` refuses to start.
    #[arg(long, env = "TOKENWARDEN_INTROSPECTION", action = clap::ArgAction::Set, global = true)]
    pub introspection: Option<bool>,

    /// Production mode: refuses to start with the sandbox (no platform credentials, or
    /// TOKENWARDEN_SANDBOX_URL), with a generated encryption key, or with introspection on;
    /// serves no introspection, GraphiQL or "did you mean" suggestions.
    #[arg(long, env = "TOKENWARDEN_PRODUCTION", default_value_t = false, action = clap::ArgAction::Set, global = true)]
    pub production: bool,
}
