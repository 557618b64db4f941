//! What the HTTP layer is configured with. The binary assembles it from its flags and
//! environment (`tokenwarden::config`); this crate never reads either.

use service::identity::sessions::SessionSettings;

use crate::limits::LimitSettings;

/// The settings of the API server, already resolved (no defaults left to apply).
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// Public base URL, without a trailing slash (OAuth redirect URIs, cookie `Secure`).
    pub public_url: String,
    /// Request, query and connection limits.
    pub limits: LimitSettings,
    /// Whether clients may introspect the schema.
    pub introspection: bool,
    /// Whether GraphiQL is served at `/graphiql`.
    pub graphiql: bool,
    /// Whether errors suggest field names ("did you mean").
    pub suggestions: bool,
    /// Dashboard session lifetimes and sign-in throttling.
    pub session: SessionSettings,
    /// The job settings resolvers report (next sweep, key rotation period) and the
    /// all-in-one process's workers run with.
    pub jobs: jobs::JobSettings,
    /// The OAuth app configuration this instance runs with (`oauthAppConfig`).
    pub oauth_app: service::ops::app_config::OAuthAppConfig,
}

impl ApiConfig {
    /// The public base URL without a trailing slash.
    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    /// Whether GraphiQL is served at `/graphiql`.
    pub fn graphiql_enabled(&self) -> bool {
        self.graphiql
    }
}
