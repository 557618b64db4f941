use async_graphql::{Context, ID, Interface, Object};
use service::{connections::accounts, identity::api_keys, identity::audit};

use crate::{
    error::ApiResult,
    graphql::{
        accounts::SocialAccount, admin::ApiKey, audit::AuditEntry, context::ContextExt, ids,
    },
};

/// Anything with a global id, fetchable with `node(id)`.
#[derive(Interface)]
#[graphql(field(name = "id", ty = "&ID"))]
#[allow(clippy::large_enum_variant)]
pub enum Node {
    SocialAccount(SocialAccount),
    ApiKey(ApiKey),
    AuditEntry(AuditEntry),
}

/// `node(id)`.
#[derive(Default)]
pub struct NodeQuery;

#[Object]
impl NodeQuery {
    /// Any object by global id, or null when it does not exist in the caller's tenant.
    async fn node(&self, ctx: &Context<'_>, id: ID) -> ApiResult<Option<Node>> {
        let db = ctx.db()?;
        let caller = ctx.caller()?;
        let (kind, row) = ids::decode_any(&id)?;
        Ok(match kind.as_str() {
            super::accounts::KIND => accounts::find(db, caller.tenant_id, row)
                .await?
                .map(|m| Node::SocialAccount(m.into())),
            super::admin::KIND => match api_keys::find(db, caller, row).await {
                Ok(model) if caller.role.includes(service::Role::Admin) => {
                    Some(Node::ApiKey(model.try_into()?))
                }
                _ => None,
            },
            super::audit::KIND => match audit::find(db, caller, row).await? {
                Some(model) => Some(Node::AuditEntry(model.try_into()?)),
                None => None,
            },
            _ => None,
        })
    }
}
