use async_graphql::{Context, Enum, ID, InputObject, Json, Object, SimpleObject};
use chrono::{DateTime, Utc};
use entity::audit_log;
use service::identity::audit;

use crate::{
    error::{ApiError, ApiResult},
    graphql::{
        accounts,
        context::ContextExt,
        ids,
        paging::{self, IdConnection},
    },
};

/// The global-id type name of audit entries.
pub(crate) const KIND: &str = "AuditEntry";

/// Everything the audit log records.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "service::identity::audit::AuditAction")]
pub enum AuditAction {
    ApiKeyCreated,
    ApiKeyRevoked,
    ConnectionStarted,
    AccountConnected,
    AccountReconnected,
    AccountDisconnected,
    AccountDeactivated,
    AccountReactivated,
    AccountPurged,
    /// The platform reported that the user removed the app; the tokens were deleted.
    AccountDeauthorized,
    /// The platform asked for the user's data to be deleted; tokens and personal data were
    /// deleted.
    AccountDataDeleted,
    TokenRefreshed,
    TokenRefreshFailed,
    AccessTokenRead,
    /// An integrator reported that the platform refused a token; details say what
    /// tokenwarden found and did.
    TokenRejected,
    EncryptionKeyRotated,
    WebhookRegistered,
    WebhookDeleted,
    WebhookDisabled,
    UserCreated,
    UserDisabled,
    UserSignedIn,
    UserSignInFailed,
    UserSignedOut,
}

/// One audit entry. `details` never contains secrets.
#[derive(SimpleObject)]
pub struct AuditEntry {
    pub id: ID,
    pub action: AuditAction,
    /// `api_key:<id>`, `user:<email>`, `cli`, `bootstrap` or `system`.
    pub actor: String,
    /// The type of the object acted on (`SocialAccount`, `ApiKey`...).
    pub target_type: Option<String>,
    /// The global id of the object acted on.
    pub target_id: Option<ID>,
    pub details: Json<serde_json::Value>,
    pub client_ip: Option<String>,
    pub occurred_at: DateTime<Utc>,
    /// The entry belongs to no tenant: an operator action such as a key rotation (only
    /// OPERATOR callers see these).
    pub deployment_wide: bool,
    #[graphql(skip)]
    pub row_id: i64,
}

impl TryFrom<audit_log::Model> for AuditEntry {
    type Error = ApiError;

    fn try_from(model: audit_log::Model) -> ApiResult<Self> {
        let action = model.action;
        let target_id = match (&model.target_type, &model.target_id) {
            (Some(kind), Some(id)) => Some(match id.parse::<i64>() {
                Ok(row) => ids::encode(kind, row),
                Err(_) => ID(id.clone()),
            }),
            (_, id) => id.clone().map(ID),
        };
        Ok(Self {
            id: ids::encode(KIND, model.id),
            action: action.into(),
            actor: model.actor,
            target_type: model.target_type,
            target_id,
            details: Json(model.details),
            client_ip: model.client_ip,
            occurred_at: model.occurred_at,
            deployment_wide: model.tenant_id.is_none(),
            row_id: model.id,
        })
    }
}

/// Narrows the audit log.
#[derive(InputObject, Default)]
pub struct AuditFilter {
    pub actions: Option<Vec<AuditAction>>,
    /// Only entries about this account.
    pub account_id: Option<ID>,
    /// Only entries by this actor (e.g. `api_key:3`).
    pub actor: Option<String>,
    /// Entries at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Entries before this time.
    pub until: Option<DateTime<Utc>>,
}

impl TryFrom<AuditFilter> for audit::AuditFilter {
    type Error = ApiError;

    fn try_from(filter: AuditFilter) -> ApiResult<Self> {
        Ok(Self {
            actions: filter
                .actions
                .unwrap_or_default()
                .into_iter()
                .map(Into::into)
                .collect(),
            account_id: filter
                .account_id
                .map(|id| ids::decode(&id, accounts::KIND))
                .transpose()?,
            actor: filter.actor,
            since: filter.since,
            until: filter.until,
        })
    }
}

/// Extra fields of the audit connection.
pub struct AuditTotals {
    filter: audit::AuditFilter,
}

#[Object]
impl AuditTotals {
    /// How many entries match the filter (all pages).
    async fn total_count(&self, ctx: &Context<'_>) -> ApiResult<u64> {
        Ok(audit::count(ctx.db()?, ctx.caller()?, &self.filter).await?)
    }
}

/// Audit queries.
#[derive(Default)]
pub struct AuditQuery;

#[Object]
impl AuditQuery {
    /// The tenant's audit log, newest first. An OPERATOR also sees the deployment-wide
    /// entries (`deploymentWide: true`).
    #[graphql(
        complexity = "crate::graphql::limits::connection_cost(first, last, child_complexity)"
    )]
    async fn audit_log(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
        filter: Option<AuditFilter>,
    ) -> async_graphql::Result<IdConnection<AuditEntry, AuditTotals>> {
        let db = ctx.db()?;
        let caller = ctx.caller()?;
        let filter: audit::AuditFilter = filter.unwrap_or_default().try_into()?;
        let totals = AuditTotals {
            filter: filter.clone(),
        };
        paging::relay(
            after,
            before,
            first,
            last,
            totals,
            |e: &AuditEntry| e.row_id,
            |page| async move {
                let page = audit::list(db, caller, &filter, page).await?;
                page.try_map(AuditEntry::try_from)
            },
        )
        .await
    }
}
