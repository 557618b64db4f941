use async_graphql::{Context, ID, Object, SimpleObject};
use service::{identity::api_keys, identity::tenants};

use crate::{
    error::{ApiError, ApiResult},
    graphql::{admin::Role, context::ContextExt, ids},
};

/// The global-id type name of tenants.
pub const TENANT_KIND: &str = "Tenant";

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

/// Who is calling.
#[derive(SimpleObject)]
pub struct Viewer {
    pub role: Role,
    pub tenant: Tenant,
    pub api_key: ViewerKey,
}

/// `viewer`.
#[derive(Default)]
pub struct ViewerQuery;

#[Object]
impl ViewerQuery {
    /// The caller: role, tenant and key.
    async fn viewer(&self, ctx: &Context<'_>) -> ApiResult<Viewer> {
        let db = ctx.db()?;
        let caller = ctx.caller()?;
        let tenant = tenants::find(db, caller.tenant_id)
            .await?
            .ok_or_else(ApiError::internal)?;
        let key = api_keys::find(db, caller, caller.api_key_id).await?;
        Ok(Viewer {
            role: caller.role.into(),
            tenant: Tenant {
                id: ids::encode(TENANT_KIND, tenant.id),
                name: tenant.name,
            },
            api_key: ViewerKey {
                id: ids::encode(super::admin::KIND, key.id),
                name: key.name,
            },
        })
    }
}
