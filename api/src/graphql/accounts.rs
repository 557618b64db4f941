use std::collections::HashMap;

use async_graphql::{
    ComplexObject, Context, Enum, ID, InputObject, Object, SimpleObject,
    dataloader::{DataLoader, Loader},
};
use chrono::{DateTime, Utc};
use entity::{oauth_token, social_account};
use sea_orm::DatabaseConnection;
use service::{connections::accounts, tokens};

use crate::{
    error::{ApiError, ApiResult},
    graphql::{
        context::ContextExt,
        ids,
        paging::{self, IdConnection},
    },
};

/// The global-id type name of accounts.
pub(crate) const KIND: &str = "SocialAccount";

/// A social platform.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "service::domain::Platform")]
pub enum Platform {
    #[graphql(name = "TIKTOK")]
    TikTok,
    Instagram,
}

/// The lifecycle state of a connected account.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "service::domain::AccountStatus")]
pub enum AccountStatus {
    /// Tokens are valid and refreshed on schedule.
    Active,
    /// Refreshes fail with transient errors and are being retried.
    RefreshFailing,
    /// The grant is dead: the user must reconnect the account.
    ReconnectRequired,
    /// The token expired before it could be refreshed: the user must reconnect.
    Expired,
    /// Disconnected on request; tokens deleted.
    Disconnected,
    /// Deactivated by an admin; purged after the retention period.
    Deactivated,
}

/// The health of an account's access token.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "service::tokens::TokenState")]
pub enum TokenState {
    /// More than a day left.
    Valid,
    /// Less than a day left.
    Expiring,
    /// Past its expiry.
    Expired,
    /// No token stored.
    Missing,
}

/// Token timestamps of an account (never the token itself).
#[derive(SimpleObject)]
pub struct TokenHealth {
    pub state: TokenState,
    pub expires_at: Option<DateTime<Utc>>,
    pub refresh_expires_at: Option<DateTime<Utc>>,
    pub issued_at: Option<DateTime<Utc>>,
    pub last_refreshed_at: Option<DateTime<Utc>>,
    pub scopes: Vec<String>,
}

/// Loads token rows of many accounts of one tenant in one query.
pub struct TokenLoader {
    pub db: DatabaseConnection,
    pub tenant_id: i64,
}

impl Loader<i64> for TokenLoader {
    type Value = oauth_token::Model;
    type Error = ApiError;

    async fn load(&self, keys: &[i64]) -> Result<HashMap<i64, Self::Value>, Self::Error> {
        let rows = tokens::find_by_accounts(&self.db, self.tenant_id, keys).await?;
        Ok(rows.into_iter().map(|t| (t.account_id, t)).collect())
    }
}

/// A connected TikTok or Instagram account.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct SocialAccount {
    #[graphql(skip)]
    pub model: social_account::Model,
    /// Global id.
    pub id: ID,
    /// The platform's id of the account (TikTok open_id, Instagram user id).
    pub provider_account_id: String,
    pub username: Option<String>,
    pub display_name: Option<String>,
    pub avatar_url: Option<String>,
    /// Why the account is in its status (the last error code), if anything.
    pub status_reason: Option<String>,
    pub deactivated_at: Option<DateTime<Utc>>,
    pub connected_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<social_account::Model> for SocialAccount {
    fn from(model: social_account::Model) -> Self {
        Self {
            id: ids::encode(KIND, model.id),
            provider_account_id: model.provider_account_id.clone(),
            username: model.username.clone(),
            display_name: model.display_name.clone(),
            avatar_url: model.avatar_url.clone(),
            status_reason: model.status_reason.clone(),
            deactivated_at: model.deactivated_at,
            connected_at: model.connected_at,
            created_at: model.created_at,
            updated_at: model.updated_at,
            model,
        }
    }
}

#[ComplexObject]
impl SocialAccount {
    async fn platform(&self) -> Platform {
        self.model.platform.into()
    }

    async fn status(&self) -> AccountStatus {
        self.model.status.into()
    }

    /// The account's refresh attempts, newest first.
    #[graphql(
        complexity = "crate::graphql::limits::connection_cost(first, None, child_complexity)"
    )]
    async fn refresh_history(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<
        IdConnection<
            crate::graphql::maintenance::RefreshAttempt,
            async_graphql::connection::EmptyFields,
        >,
    > {
        let db = ctx.db()?;
        let caller = ctx.caller()?;
        let account_id = self.model.id;
        paging::relay(
            after,
            None,
            first,
            None,
            async_graphql::connection::EmptyFields,
            |a: &crate::graphql::maintenance::RefreshAttempt| a.row_id,
            |page| async move {
                let page = service::tokens::attempts::list(db, caller, account_id, page).await?;
                page.try_map(crate::graphql::maintenance::RefreshAttempt::try_from)
            },
        )
        .await
    }

    /// Token expiry and refresh timestamps. Loaded in one query per page.
    async fn token_health(&self, ctx: &Context<'_>) -> ApiResult<TokenHealth> {
        let loader = ctx.data::<DataLoader<TokenLoader>>().map_err(|_| {
            tracing::error!("token loader missing from the GraphQL context");
            ApiError::internal()
        })?;
        let token = loader.load_one(self.model.id).await?;
        let state = tokens::state(token.as_ref(), Utc::now()).into();
        Ok(match token {
            Some(t) => TokenHealth {
                state,
                expires_at: Some(t.expires_at),
                refresh_expires_at: t.refresh_expires_at,
                issued_at: Some(t.issued_at),
                last_refreshed_at: t.last_refreshed_at,
                scopes: t
                    .scopes
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect(),
            },
            None => TokenHealth {
                state,
                expires_at: None,
                refresh_expires_at: None,
                issued_at: None,
                last_refreshed_at: None,
                scopes: Vec::new(),
            },
        })
    }
}

/// Narrows an account listing; omitted or empty fields mean "any".
#[derive(InputObject, Default)]
pub struct AccountFilter {
    pub platforms: Option<Vec<Platform>>,
    pub statuses: Option<Vec<AccountStatus>>,
    /// Case-insensitive substring of username, display name or provider account id.
    pub search: Option<String>,
}

impl From<AccountFilter> for accounts::AccountFilter {
    fn from(filter: AccountFilter) -> Self {
        Self {
            platforms: filter
                .platforms
                .unwrap_or_default()
                .into_iter()
                .map(Into::into)
                .collect(),
            statuses: filter
                .statuses
                .unwrap_or_default()
                .into_iter()
                .map(Into::into)
                .collect(),
            search: filter.search,
        }
    }
}

/// Extra fields of the accounts connection.
pub struct AccountTotals {
    filter: accounts::AccountFilter,
}

#[Object]
impl AccountTotals {
    /// How many accounts match the filter (all pages).
    async fn total_count(&self, ctx: &Context<'_>) -> ApiResult<u64> {
        Ok(accounts::count(ctx.db()?, ctx.caller()?, &self.filter).await?)
    }
}

/// Account queries.
#[derive(Default)]
pub struct AccountsQuery;

#[Object]
impl AccountsQuery {
    /// The tenant's accounts, oldest first.
    #[graphql(
        complexity = "crate::graphql::limits::connection_cost(first, last, child_complexity)"
    )]
    async fn accounts(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
        filter: Option<AccountFilter>,
    ) -> async_graphql::Result<IdConnection<SocialAccount, AccountTotals>> {
        let db = ctx.db()?;
        let caller = ctx.caller()?;
        let filter: accounts::AccountFilter = filter.unwrap_or_default().into();
        let totals = AccountTotals {
            filter: filter.clone(),
        };
        paging::relay(
            after,
            before,
            first,
            last,
            totals,
            |a: &SocialAccount| a.model.id,
            |page| async move {
                Ok(accounts::list(db, caller, &filter, page)
                    .await?
                    .map(SocialAccount::from))
            },
        )
        .await
    }

    /// One account by global id; NOT_FOUND when it does not exist in the caller's tenant.
    async fn account(&self, ctx: &Context<'_>, id: ID) -> ApiResult<SocialAccount> {
        let row = ids::decode(&id, KIND)?;
        Ok(accounts::get(ctx.db()?, ctx.caller()?, row).await?.into())
    }
}

/// Account mutations.
#[derive(Default)]
pub struct AccountsMutation;

#[Object]
impl AccountsMutation {
    /// Deactivates an account (ADMIN): no more refreshes; purged after the retention period.
    async fn deactivate_account(&self, ctx: &Context<'_>, id: ID) -> ApiResult<SocialAccount> {
        let row = ids::decode(&id, KIND)?;
        Ok(accounts::deactivate(ctx.db()?, ctx.caller()?, row)
            .await?
            .into())
    }

    /// Reactivates a deactivated account (ADMIN).
    async fn reactivate_account(&self, ctx: &Context<'_>, id: ID) -> ApiResult<SocialAccount> {
        let row = ids::decode(&id, KIND)?;
        Ok(accounts::reactivate(ctx.db()?, ctx.caller()?, row)
            .await?
            .into())
    }
}
