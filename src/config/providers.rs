//! Settings of how tokenwarden talks to the platforms (app type, API versions, shared rate
//! limits, inbound callbacks). Flattened into [`crate::Config`].

use clap::{Args, ValueEnum};
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

/// Platform settings (see docs/configuration.md, "Platforms").
#[derive(Args, Clone, Debug)]
pub struct ProviderConfig {
    /// TikTok app type as registered in the developer portal: `web` (no PKCE) or `desktop`
    /// (PKCE, hex-encoded S256 challenge). Must match the portal, or every code exchange
    /// fails with "Code verifier or code challenge is invalid".
    #[arg(long, env = "TOKENWARDEN_TIKTOK_APP_TYPE", value_enum, default_value_t = TikTokAppTypeArg::Web, global = true)]
    pub tiktok_app_type: TikTokAppTypeArg,

    /// Instagram Graph API version of versioned calls (`graph.instagram.com/<version>/me`).
    #[arg(long, env = "TOKENWARDEN_INSTAGRAM_GRAPH_VERSION", default_value = DEFAULT_INSTAGRAM_GRAPH_VERSION, global = true)]
    pub instagram_graph_version: String,
}
