//! `reportTokenRejected`: an integrator tells tokenwarden that a platform call made with a
//! token from `accessToken` failed with an authentication error.

use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject};
use secrecy::ExposeSecret;
use service::connections::rejected::{self, Rejection};

use crate::{
    error::{ApiError, ApiResult},
    graphql::{
        accounts::{self, SocialAccount},
        connections::{AccessToken, TokenError},
        context::ContextExt,
        ids,
    },
};

/// What the platform answered the call that failed. Stored in the audit log, sanitized.
#[derive(InputObject)]
pub struct ReportTokenRejectedInput {
    /// The account whose token was refused.
    pub account_id: ID,
    /// HTTP status of the failed platform call (e.g. 401).
    pub http_status: Option<u16>,
    /// The platform's error code (`access_token_invalid`, `190`...).
    pub error_code: Option<String>,
    /// The platform's error message.
    pub message: Option<String>,
}

/// What tokenwarden found when it checked the token with the platform.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "service::connections::rejected::Verdict")]
pub enum TokenVerdict {
    /// The platform accepts the current token right now: the failure was not the token's
    /// (a missing permission for that call, a platform hiccup). Use `token`.
    TokenValid,
    /// The platform refused the token but the grant was alive: refreshed. Use `token`.
    Refreshed,
    /// The grant is dead: the account is RECONNECT_REQUIRED or EXPIRED; see `error.action`.
    ReconnectRequired,
    /// The platform could not be asked now: retry after `error.retryAfterSeconds`.
    Unavailable,
}

/// The outcome of `reportTokenRejected`.
#[derive(SimpleObject)]
pub struct ReportTokenRejectedPayload {
    /// The account as it is now.
    pub account: SocialAccount,
    pub verdict: TokenVerdict,
    /// A usable access token (TOKEN_VALID, REFRESHED). Returning it is audited.
    pub token: Option<AccessToken>,
    /// Why there is no token, and what to do (RECONNECT_REQUIRED, UNAVAILABLE).
    pub error: Option<TokenError>,
    /// Reports for this account in the last 24 hours, this one included.
    #[graphql(name = "rejectionsLast24h")]
    pub rejections_last_24h: u64,
}

/// Token-rejected feedback.
#[derive(Default)]
pub struct RejectionsMutation;

#[Object]
impl RejectionsMutation {
    /// Reports that a platform call made with a token from `accessToken` failed with an
    /// authentication error (INTEGRATOR). tokenwarden checks the token with the platform at
    /// once, refreshes it or marks the account RECONNECT_REQUIRED, and returns a usable
    /// token or what to do. Audited (TOKEN_REJECTED) and counted per account.
    async fn report_token_rejected(
        &self,
        ctx: &Context<'_>,
        input: ReportTokenRejectedInput,
    ) -> ApiResult<ReportTokenRejectedPayload> {
        let row = ids::decode(&input.account_id, accounts::KIND)?;
        let too_long = |s: &Option<String>| s.as_ref().is_some_and(|s| s.len() > 2000);
        if too_long(&input.error_code) || too_long(&input.message) {
            return Err(ApiError::bad_input(
                "errorCode and message are limited to 2000 bytes",
            ));
        }
        let report = rejected::report_token_rejected(
            ctx.db()?,
            ctx.engine()?,
            ctx.caller()?,
            row,
            Rejection {
                http_status: input.http_status,
                error_code: input.error_code,
                message: input.message,
            },
        )
        .await?;
        let platform: service::domain::Platform = report.account.platform;
        let error = report
            .error
            .as_ref()
            .map(|e| TokenError::describe(e, platform, report.account.username.as_deref()));
        Ok(ReportTokenRejectedPayload {
            verdict: report.verdict.into(),
            token: report.token.map(|t| AccessToken {
                token: t.token.expose_secret().to_owned(),
                expires_at: t.expires_at,
            }),
            error,
            rejections_last_24h: report.rejections_last_24h,
            account: report.account.into(),
        })
    }
}
