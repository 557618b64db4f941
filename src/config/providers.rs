use std::{net::SocketAddr, time::Duration};

use clap::{Args, ValueEnum};
use secrecy::SecretString;
use service::providers::{DEFAULT_INSTAGRAM_GRAPH_VERSION, TikTokAppType};

/// How the TikTok app is registered in the developer portal.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum TikTokAppTypeArg {
    /// Login Kit for Web: no PKCE (TikTok documents none for web apps).
    #[default]
    Web,
    /// Login Kit for Desktop: PKCE with the hex-encoded SHA-256 challenge.
    Desktop,
}

impl From<TikTokAppTypeArg> for TikTokAppType {
    fn from(arg: TikTokAppTypeArg) -> Self {
        match arg {
            TikTokAppTypeArg::Web => TikTokAppType::Web,
            TikTokAppTypeArg::Desktop => TikTokAppType::Desktop,
        }
    }
}

/// The TikTok and Instagram apps, their hosts, and the sandbox that replaces both in demo
/// mode (see docs/configuration.md, "Providers").
#[derive(Args, Clone, Debug)]
pub struct ProvidersConfig {
    #[command(flatten)]
    pub tiktok: TikTokConfig,

    #[command(flatten)]
    pub instagram: InstagramConfig,

    /// Timeout of one provider HTTP call.
    #[arg(id = "provider_timeout",
        long = "provider-timeout", env = "TOKENWARDEN_PROVIDER_TIMEOUT", value_parser = humantime::parse_duration, default_value = "10s", global = true)]
    pub timeout: Duration,

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
}

impl ProvidersConfig {
    /// Whether real platform credentials are configured (otherwise the sandbox is used).
    pub fn has_platform_credentials(&self) -> bool {
        self.tiktok.client_key.is_some() || self.instagram.client_id.is_some()
    }
}

/// The TikTok app.
#[derive(Args, Clone, Debug)]
pub struct TikTokConfig {
    /// TikTok app client key. With no platform credentials at all, the sandbox is used.
    #[arg(
        id = "tiktok_client_key",
        long = "tiktok-client-key",
        env = "TIKTOK_CLIENT_KEY",
        global = true
    )]
    pub client_key: Option<String>,

    /// TikTok app client secret.
    #[arg(
        id = "tiktok_client_secret",
        long = "tiktok-client-secret",
        env = "TIKTOK_CLIENT_SECRET",
        hide_env_values = true,
        global = true
    )]
    pub client_secret: Option<SecretString>,

    /// TikTok app type as registered in the developer portal: `web` (no PKCE) or `desktop`
    /// (PKCE, hex-encoded S256 challenge). Must match the portal, or every code exchange
    /// fails with "Code verifier or code challenge is invalid".
    #[arg(id = "tiktok_app_type",
        long = "tiktok-app-type", env = "TOKENWARDEN_TIKTOK_APP_TYPE", value_enum, default_value_t = TikTokAppTypeArg::Web, global = true)]
    pub app_type: TikTokAppTypeArg,

    /// TikTok calls per second each process allows itself (0 = unlimited); every `serve`
    /// and `worker` process counts its own calls.
    #[arg(
        id = "tiktok_rate_limit",
        long = "tiktok-rate-limit",
        env = "TOKENWARDEN_TIKTOK_RATE_LIMIT",
        default_value_t = 10,
        global = true
    )]
    pub rate_limit: u32,

    /// TikTok authorize host (default `https://www.tiktok.com`).
    #[arg(
        id = "tiktok_auth_url",
        long = "tiktok-auth-url",
        env = "TOKENWARDEN_TIKTOK_AUTH_URL",
        global = true
    )]
    pub auth_url: Option<String>,

    /// TikTok API host (default `https://open.tiktokapis.com`).
    #[arg(
        id = "tiktok_api_url",
        long = "tiktok-api-url",
        env = "TOKENWARDEN_TIKTOK_API_URL",
        global = true
    )]
    pub api_url: Option<String>,
}

/// The Instagram app (Instagram API with Instagram Login).
#[derive(Args, Clone, Debug)]
pub struct InstagramConfig {
    /// Instagram app id (Instagram API with Instagram Login).
    #[arg(
        id = "instagram_client_id",
        long = "instagram-client-id",
        env = "INSTAGRAM_CLIENT_ID",
        global = true
    )]
    pub client_id: Option<String>,

    /// Instagram app secret.
    #[arg(
        id = "instagram_client_secret",
        long = "instagram-client-secret",
        env = "INSTAGRAM_CLIENT_SECRET",
        hide_env_values = true,
        global = true
    )]
    pub client_secret: Option<SecretString>,

    /// Instagram calls per second each process allows itself (0 = unlimited); every
    /// `serve` and `worker` process counts its own calls.
    #[arg(
        id = "instagram_rate_limit",
        long = "instagram-rate-limit",
        env = "TOKENWARDEN_INSTAGRAM_RATE_LIMIT",
        default_value_t = 5,
        global = true
    )]
    pub rate_limit: u32,

    /// Instagram authorize/exchange host (default `https://api.instagram.com`).
    #[arg(
        id = "instagram_auth_url",
        long = "instagram-auth-url",
        env = "TOKENWARDEN_INSTAGRAM_AUTH_URL",
        global = true
    )]
    pub auth_url: Option<String>,

    /// Instagram Graph host (default `https://graph.instagram.com`).
    #[arg(
        id = "instagram_graph_url",
        long = "instagram-graph-url",
        env = "TOKENWARDEN_INSTAGRAM_GRAPH_URL",
        global = true
    )]
    pub graph_url: Option<String>,

    /// Instagram Graph API version of versioned calls (`graph.instagram.com/<version>/me`).
    #[arg(id = "instagram_graph_version",
        long = "instagram-graph-version", env = "TOKENWARDEN_INSTAGRAM_GRAPH_VERSION", default_value = DEFAULT_INSTAGRAM_GRAPH_VERSION, global = true)]
    pub graph_version: String,
}
