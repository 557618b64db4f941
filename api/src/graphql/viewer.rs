use async_graphql::{Context, ID, Object, SimpleObject};
use service::identity::{api_keys, caller::Principal, tenants};

use crate::{
    error::{ApiError, ApiResult},
    graphql::{admin::Role, context::ContextExt, ids},
};

/// The global-id type name of tenants.
pub(crate) const TENANT_KIND: &str = "Tenant";

/// A tenant.
#[derive(SimpleObject)]
pub struct Tenant {
    pub id: ID,
    pub name: String,
}

/// The key making the request.
#[derive(SimpleObject)]
pub struct ViewerKey {
    pub id: ID,
    pub name: String,
}

/// The signed-in dashboard user making the request.
#[derive(SimpleObject)]
pub struct ViewerUser {
    pub id: ID,
    pub email: String,
}

/// Who is calling: an API key, or a dashboard user signed in with a session cookie.
#[derive(SimpleObject)]
pub struct Viewer {
    pub role: Role,
    pub tenant: Tenant,
    /// The key of the request; null when a signed-in user calls.
    pub api_key: Option<ViewerKey>,
    /// The signed-in user; null when an API key calls.
    pub user: Option<ViewerUser>,
}

/// `viewer`.
#[derive(Default)]
pub struct ViewerQuery;

#[Object]
impl ViewerQuery {
    /// The caller: role, tenant and key or user.
    async fn viewer(&self, ctx: &Context<'_>) -> ApiResult<Viewer> {
        let db = ctx.db()?;
        let caller = ctx.caller()?;
        let tenant = tenants::find(db, caller.tenant_id)
            .await?
            .ok_or_else(ApiError::internal)?;
        let api_key = match caller.principal {
            Principal::ApiKey { id } => {
                let key = api_keys::find(db, caller, id).await?;
                Some(ViewerKey {
                    id: ids::encode(super::admin::KIND, key.id),
                    name: key.name,
                })
            }
            Principal::User { .. } => None,
        };
        let user = match &caller.principal {
            Principal::User { id, email, .. } => Some(ViewerUser {
                id: ids::encode(super::users::KIND, *id),
                email: email.clone(),
            }),
            Principal::ApiKey { .. } => None,
        };
        Ok(Viewer {
            role: caller.role.into(),
            tenant: Tenant {
                id: ids::encode(TENANT_KIND, tenant.id),
                name: tenant.name,
            },
            api_key,
            user,
        })
    }
}
