use async_graphql::{Context, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use service::{
    Role,
    connections::{self, CallbackResult},
    domain,
    tokens::failures,
    tokens::refresh::{self, RefreshKind, RefreshOptions},
};

use crate::{
    error::ApiResult,
    graphql::{
        accounts::{self, Platform, SocialAccount},
        context::ContextExt,
        ids,
    },
};

/// Input of `startConnection`.
#[derive(InputObject)]
pub struct StartConnectionInput {
    pub platform: Platform,
    /// Where to send the user after the callback; must match TOKENWARDEN_ALLOWED_REDIRECTS.
    pub redirect_after: Option<String>,
    /// Scopes to request; default: the platform's scopes this service needs.
    pub scopes: Option<Vec<String>>,
}

/// Send the user to `authorizationUrl`; valid once, for ten minutes.
#[derive(SimpleObject)]
pub struct StartConnectionPayload {
    /// The link that starts the user's browser on its way: a one-time URL on this server
    /// (`/oauth/start/...`). Opening it binds the connection to that browser and redirects
    /// to the platform's consent page; the callback is accepted only in the same browser.
    pub authorization_url: String,
    /// The OAuth `state` the platform will send back (for `completeConnection`).
    pub state: String,
    pub expires_at: DateTime<Utc>,
}

/// A connected account.
#[derive(SimpleObject)]
pub struct CompleteConnectionPayload {
    pub account: SocialAccount,
    /// True when the account was connected before (same row, same history).
    pub reconnected: bool,
}

/// Why a token operation failed and what to do.
#[derive(SimpleObject, Clone)]
pub struct TokenError {
    /// RECONNECT_REQUIRED, RATE_LIMITED, PROVIDER_UNAVAILABLE, PROVIDER_MISCONFIGURED or
    /// NOT_REFRESHABLE_YET.
    pub code: String,
    pub message: String,
    /// What the user or operator should do, if anything.
    pub action: Option<String>,
    /// When a retry makes sense, in seconds.
    pub retry_after_seconds: Option<u64>,
}

impl TokenError {
    /// A provider failure as the client sees it: code, sentence, action, retry hint.
    pub fn describe(
        error: &service::providers::ProviderError,
        platform: domain::Platform,
        username: Option<&str>,
    ) -> Self {
        let view = failures::describe(error, platform, username);
        TokenError {
            code: view.code.to_owned(),
            message: view.message,
            action: view.action,
            retry_after_seconds: error.retry_after.map(|d| d.as_secs().max(1)),
        }
    }
}

/// The outcome of `refreshAccountToken`.
#[derive(SimpleObject)]
pub struct RefreshAccountTokenPayload {
    pub account: SocialAccount,
    /// True when the provider issued new tokens now; false when they were already fresh
    /// or the refresh failed (see `error`).
    pub refreshed: bool,
    pub error: Option<TokenError>,
}

/// A usable access token. Reading it is audited (ACCESS_TOKEN_READ).
#[derive(SimpleObject)]
pub struct AccessToken {
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

/// Provider call statistics of one platform operation.
#[derive(SimpleObject)]
pub struct ProviderStat {
    pub platform: Platform,
    /// exchange_code, exchange_long_lived, refresh, revoke or user_info.
    pub operation: String,
    pub requests: u64,
    pub errors: u64,
    /// Errors / requests, 0 to 1.
    pub error_rate: f64,
    pub p50_latency_ms: u32,
    pub p95_latency_ms: u32,
}

/// Token queries.
#[derive(Default)]
pub struct ConnectionsQuery;

#[Object]
impl ConnectionsQuery {
    /// A usable access token for posting (INTEGRATOR). Refreshed first when under five
    /// minutes remain. The only way a token leaves the service; every read is audited.
    /// Refused in `GET` requests.
    async fn access_token(&self, ctx: &Context<'_>, account_id: ID) -> ApiResult<AccessToken> {
        if ctx.data_opt::<crate::http::ViaGet>().is_some() {
            return Err(crate::error::ApiError::bad_input(
                "accessToken is refused over GET (URLs end up in logs and caches): use POST",
            ));
        }
        let row = ids::decode(&account_id, accounts::KIND)?;
        let issued =
            connections::access_token(ctx.db()?, ctx.engine()?, ctx.caller()?, row).await?;
        Ok(AccessToken {
            token: issued.token.expose_secret().to_owned(),
            expires_at: issued.expires_at,
        })
    }

    /// Provider call statistics per platform and operation over `window` (a duration such
    /// as `15m`, `1h`, `7d`; default `1h`, at most `366d`). Deployment-wide (OPERATOR).
    async fn provider_stats(
        &self,
        ctx: &Context<'_>,
        window: Option<String>,
    ) -> ApiResult<Vec<ProviderStat>> {
        let stats =
            service::ops::health::provider_stats(ctx.db()?, ctx.caller()?, window.as_deref())
                .await?;
        Ok(stats
            .into_iter()
            .map(|s| ProviderStat {
                platform: s.platform.into(),
                operation: s.operation,
                requests: s.requests,
                errors: s.errors,
                error_rate: s.error_rate,
                p50_latency_ms: s.p50_latency_ms,
                p95_latency_ms: s.p95_latency_ms,
            })
            .collect())
    }
}

/// Connection mutations.
#[derive(Default)]
pub struct ConnectionsMutation;

#[Object]
impl ConnectionsMutation {
    /// Starts connecting a TikTok or Instagram account (INTEGRATOR).
    async fn start_connection(
        &self,
        ctx: &Context<'_>,
        input: StartConnectionInput,
    ) -> ApiResult<StartConnectionPayload> {
        let started = connections::start(
            ctx.db()?,
            ctx.engine()?,
            ctx.caller()?,
            input.platform.into(),
            input.redirect_after,
            input.scopes,
        )
        .await?;
        Ok(StartConnectionPayload {
            authorization_url: started.authorization_url,
            state: started.state,
            expires_at: started.expires_at,
        })
    }

    /// Completes a connection from a single-page app that received `code` and `state` on
    /// its own redirect URI. Must be called with the key that started it.
    async fn complete_connection(
        &self,
        ctx: &Context<'_>,
        state: String,
        code: String,
    ) -> ApiResult<CompleteConnectionPayload> {
        let caller = ctx.caller()?;
        caller.require(Role::Integrator)?;
        let completion = connections::complete(
            ctx.db()?,
            ctx.engine()?,
            None,
            &state,
            CallbackResult::Code(code),
            connections::Proof::Caller(caller),
            caller.client_ip.clone(),
        )
        .await;
        let connected = completion.result?;
        Ok(CompleteConnectionPayload {
            account: connected.account.into(),
            reconnected: connected.reconnected,
        })
    }

    /// Refreshes an account's tokens now (INTEGRATOR). Concurrent calls share one provider
    /// call; a call within 10 s of a successful refresh returns without calling the
    /// provider. Failures come back in `error` with what to do.
    async fn refresh_account_token(
        &self,
        ctx: &Context<'_>,
        account_id: ID,
    ) -> ApiResult<RefreshAccountTokenPayload> {
        let row = ids::decode(&account_id, accounts::KIND)?;
        let caller = ctx.caller()?;
        caller.require(Role::Integrator)?;
        let db = ctx.db()?;
        // Tenant check first: another tenant's account is NOT_FOUND.
        let account = service::connections::accounts::get(db, caller, row).await?;
        let platform: domain::Platform = account.platform;
        let report = match refresh::refresh(
            db,
            ctx.engine()?,
            caller.tenant_id,
            account.id,
            RefreshOptions::on_request(caller.actor()),
        )
        .await
        {
            Ok(report) => report,
            Err(service::ServiceError::Provider(platform, error)) => {
                // Not refreshable in its current state (e.g. reconnect required).
                let error = TokenError::describe(&error, platform, account.username.as_deref());
                return Ok(RefreshAccountTokenPayload {
                    account: account.into(),
                    refreshed: false,
                    error: Some(error),
                });
            }
            Err(err) => return Err(err.into()),
        };
        let error = report
            .error
            .as_ref()
            .map(|error| TokenError::describe(error, platform, report.account.username.as_deref()));
        Ok(RefreshAccountTokenPayload {
            refreshed: report.kind == RefreshKind::Refreshed,
            account: report.account.into(),
            error,
        })
    }

    /// Disconnects an account (INTEGRATOR): revokes the grant at the provider where
    /// possible, deletes the tokens, sets DISCONNECTED.
    async fn disconnect_account(
        &self,
        ctx: &Context<'_>,
        account_id: ID,
    ) -> ApiResult<SocialAccount> {
        let row = ids::decode(&account_id, accounts::KIND)?;
        Ok(
            connections::disconnect(ctx.db()?, ctx.engine()?, ctx.caller()?, row)
                .await?
                .into(),
        )
    }
}
