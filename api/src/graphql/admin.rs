use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use entity::api_key;
use secrecy::ExposeSecret;
use service::identity::api_keys;

use crate::{
    error::{ApiError, ApiResult},
    graphql::{
        context::ContextExt,
        ids,
        paging::{self, IdConnection},
    },
};

/// The global-id type name of API keys.
pub(crate) const KIND: &str = "ApiKey";

/// What a key may do.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "service::Role")]
pub enum Role {
    /// Runs the deployment: ADMIN in its tenant plus the deployment-wide operations
    /// (key rotation, provider statistics, detailed system health, deployment-wide audit
    /// entries). Created on the command line only.
    Operator,
    /// Everything within its tenant.
    Admin,
    /// Connect, refresh and disconnect accounts; read access tokens.
    Integrator,
    /// Read only.
    Viewer,
}

/// An API key. The key itself is shown only once, by `createApiKey`.
#[derive(SimpleObject)]
pub struct ApiKey {
    pub id: ID,
    pub name: String,
    pub role: Role,
    /// The first characters of the key, to tell keys apart.
    pub key_prefix: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    #[graphql(skip)]
    pub row_id: i64,
}

impl TryFrom<api_key::Model> for ApiKey {
    type Error = ApiError;

    fn try_from(model: api_key::Model) -> ApiResult<Self> {
        let role = model.role;
        Ok(Self {
            id: ids::encode(KIND, model.id),
            name: model.name,
            role: role.into(),
            key_prefix: model.key_prefix,
            created_at: model.created_at,
            last_used_at: model.last_used_at,
            revoked_at: model.revoked_at,
            row_id: model.id,
        })
    }
}

/// Input of `createApiKey`.
#[derive(InputObject)]
pub struct CreateApiKeyInput {
    /// A name to recognise the key by (1-100 characters).
    pub name: String,
    pub role: Role,
}

/// The new key: `key` is shown this once and never again.
#[derive(SimpleObject)]
pub struct CreateApiKeyPayload {
    pub key: String,
    pub api_key: ApiKey,
}

/// Extra fields of the API key connection.
pub struct ApiKeyTotals;

#[Object]
impl ApiKeyTotals {
    /// How many keys the tenant has, revoked ones included.
    async fn total_count(&self, ctx: &Context<'_>) -> ApiResult<u64> {
        Ok(api_keys::count(ctx.db()?, ctx.caller()?).await?)
    }
}

/// API key queries (ADMIN).
#[derive(Default)]
pub struct AdminQuery;

#[Object]
impl AdminQuery {
    /// The tenant's API keys, oldest first (ADMIN).
    #[graphql(
        complexity = "crate::graphql::limits::connection_cost(first, last, child_complexity)"
    )]
    async fn api_keys(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> async_graphql::Result<IdConnection<ApiKey, ApiKeyTotals>> {
        let db = ctx.db()?;
        let caller = ctx.caller()?;
        paging::relay(
            after,
            before,
            first,
            last,
            ApiKeyTotals,
            |k: &ApiKey| k.row_id,
            |page| async move {
                let page = api_keys::list(db, caller, page).await?;
                page.try_map(ApiKey::try_from)
            },
        )
        .await
    }
}

/// API key mutations (ADMIN).
#[derive(Default)]
pub struct AdminMutation;

#[Object]
impl AdminMutation {
    /// Creates a key in the caller's tenant (ADMIN). The key is in the payload once; only
    /// its SHA-256 is stored. OPERATOR keys are refused (FORBIDDEN): the command line
    /// makes them.
    async fn create_api_key(
        &self,
        ctx: &Context<'_>,
        input: CreateApiKeyInput,
    ) -> ApiResult<CreateApiKeyPayload> {
        let created =
            api_keys::create(ctx.db()?, ctx.caller()?, &input.name, input.role.into()).await?;
        Ok(CreateApiKeyPayload {
            key: created.key.expose_secret().to_owned(),
            api_key: created.api_key.try_into()?,
        })
    }

    /// Revokes a key; requests with it fail with UNAUTHENTICATED from then on.
    async fn revoke_api_key(&self, ctx: &Context<'_>, id: ID) -> ApiResult<ApiKey> {
        let row = ids::decode(&id, KIND)?;
        api_keys::revoke(ctx.db()?, ctx.caller()?, row)
            .await?
            .try_into()
    }
}
