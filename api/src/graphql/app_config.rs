use async_graphql::{Context, Object, SimpleObject};
use service::{Role, ops::app_config};

use crate::{
    error::{ApiError, ApiResult},
    graphql::context::ContextExt,
};

/// The OAuth app configuration this instance runs with, as the portals must have it
/// (`tokenwarden config export` prints the same; `config check` compares the two).
#[derive(SimpleObject)]
pub struct OAuthAppConfig {
    /// TOKENWARDEN_PUBLIC_URL: every URL below starts with it.
    pub public_url: String,
    /// No platform credentials: the sandbox simulator stands in (demo mode).
    pub sandbox: bool,
    pub tiktok: TikTokAppConfig,
    pub instagram: InstagramAppConfig,
}

/// The TikTok app (developers.tiktok.com, Manage apps). No secrets.
#[derive(SimpleObject)]
pub struct TikTokAppConfig {
    /// TIKTOK_CLIENT_KEY.
    pub client_key: Option<String>,
    pub client_secret_configured: bool,
    /// `web` or `desktop` (TOKENWARDEN_TIKTOK_APP_TYPE).
    pub app_type: String,
    /// `none` (web) or `S256-hex` (desktop).
    pub pkce: String,
    /// Login Kit, Redirect URI.
    pub redirect_uri: String,
    /// Webhooks, Callback URL.
    pub webhook_callback_url: String,
    /// Scopes requested by default.
    pub scopes: Vec<String>,
}

/// The Instagram app (Instagram API with Instagram Login). No secrets.
#[derive(SimpleObject)]
pub struct InstagramAppConfig {
    /// INSTAGRAM_CLIENT_ID.
    pub client_id: Option<String>,
    pub client_secret_configured: bool,
    /// Business login settings, OAuth redirect URI.
    pub redirect_uri: String,
    /// Business login settings, Deauthorize callback URL.
    pub deauthorize_callback_url: String,
    /// Business login settings, Data deletion request URL.
    pub data_deletion_request_url: String,
    /// The deletion status page linked from the data deletion answer.
    pub data_deletion_status_url: String,
    pub scopes: Vec<String>,
    /// TOKENWARDEN_INSTAGRAM_GRAPH_VERSION.
    pub graph_api_version: String,
}

impl From<&app_config::OAuthAppConfig> for OAuthAppConfig {
    fn from(c: &app_config::OAuthAppConfig) -> Self {
        let (t, i) = (&c.tiktok, &c.instagram);
        Self {
            public_url: c.public_url.clone(),
            sandbox: c.sandbox,
            tiktok: TikTokAppConfig {
                client_key: t.client_key.clone(),
                client_secret_configured: t.client_secret_configured,
                app_type: t.app_type.clone(),
                pkce: t.pkce.clone(),
                redirect_uri: t.redirect_uri.clone(),
                webhook_callback_url: t.webhook_callback_url.clone(),
                scopes: t.scopes.clone(),
            },
            instagram: InstagramAppConfig {
                client_id: i.client_id.clone(),
                client_secret_configured: i.client_secret_configured,
                redirect_uri: i.redirect_uri.clone(),
                deauthorize_callback_url: i.deauthorize_callback_url.clone(),
                data_deletion_request_url: i.data_deletion_request_url.clone(),
                data_deletion_status_url: i.data_deletion_status_url.clone(),
                scopes: i.scopes.clone(),
                graph_api_version: i.graph_api_version.clone(),
            },
        }
    }
}

/// The query `config check` sends (every field).
pub const CHECK_QUERY: &str = "{ oauthAppConfig { publicUrl sandbox \
    tiktok { clientKey clientSecretConfigured appType pkce redirectUri webhookCallbackUrl scopes } \
    instagram { clientId clientSecretConfigured redirectUri deauthorizeCallbackUrl \
    dataDeletionRequestUrl dataDeletionStatusUrl scopes graphApiVersion } } }";

/// `oauthAppConfig`.
#[derive(Default)]
pub struct AppConfigQuery;

#[Object]
impl AppConfigQuery {
    /// The OAuth app configuration this instance uses (ADMIN): redirect URIs, callback and
    /// webhook URLs, scopes, TikTok app type. Never secrets.
    async fn oauth_app_config(&self, ctx: &Context<'_>) -> ApiResult<OAuthAppConfig> {
        ctx.caller()?.require(Role::Admin)?;
        let config = ctx.data::<app_config::OAuthAppConfig>().map_err(|_| {
            tracing::error!("the app configuration is missing from the GraphQL context");
            ApiError::internal()
        })?;
        Ok(config.into())
    }
}
