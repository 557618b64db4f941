use std::{fmt, str::FromStr};

use chrono::{DateTime, Utc};
use entity::audit_log;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    Select, Set,
};
use serde_json::Value;

use crate::{
    error::{ServiceError, ServiceResult},
    identity::caller::{Actor, Caller},
    pagination::{self, Direction, Page, PageArgs},
};

macro_rules! audit_actions {
    ($($variant:ident => $name:literal: $doc:literal,)*) => {
        /// Everything the audit log records. Names are stable: clients filter on them.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum AuditAction {
            $(#[doc = $doc] $variant,)*
        }

        impl AuditAction {
            /// Every action.
            pub const ALL: &'static [AuditAction] = &[$(AuditAction::$variant,)*];

            /// The stored name, e.g. `API_KEY_CREATED`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(AuditAction::$variant => $name,)*
                }
            }
        }
    };
}

audit_actions! {
    ApiKeyCreated => "API_KEY_CREATED": "An API key was created.",
    ApiKeyRevoked => "API_KEY_REVOKED": "An API key was revoked.",
    ConnectionStarted => "CONNECTION_STARTED": "An OAuth connection was started.",
    AccountConnected => "ACCOUNT_CONNECTED": "A new account was connected.",
    AccountReconnected => "ACCOUNT_RECONNECTED": "An existing account was connected again.",
    AccountDisconnected => "ACCOUNT_DISCONNECTED": "An account was disconnected and its tokens deleted.",
    AccountDeactivated => "ACCOUNT_DEACTIVATED": "An account was deactivated.",
    AccountReactivated => "ACCOUNT_REACTIVATED": "A deactivated account was reactivated.",
    AccountPurged => "ACCOUNT_PURGED": "A long-deactivated account's tokens and personal data were deleted.",
    AccountDeauthorized => "ACCOUNT_DEAUTHORIZED": "The platform reported that the user removed the app; the tokens were deleted.",
    AccountDataDeleted => "ACCOUNT_DATA_DELETED": "The platform asked for the user's data to be deleted; tokens and personal data were deleted.",
    TokenRefreshed => "TOKEN_REFRESHED": "A token was refreshed at the provider.",
    TokenRefreshFailed => "TOKEN_REFRESH_FAILED": "A token refresh failed.",
    AccessTokenRead => "ACCESS_TOKEN_READ": "An access token was read through the API.",
    TokenRejected => "TOKEN_REJECTED": "An integrator reported that the platform refused a token; details say what tokenwarden found and did.",
    EncryptionKeyRotated => "ENCRYPTION_KEY_ROTATED": "A new encryption key became active.",
    WebhookRegistered => "WEBHOOK_REGISTERED": "A webhook was registered.",
    WebhookDeleted => "WEBHOOK_DELETED": "A webhook was deleted.",
    WebhookDisabled => "WEBHOOK_DISABLED": "A webhook failing for 24 hours was disabled.",
    UserCreated => "USER_CREATED": "A dashboard user was created.",
    UserDisabled => "USER_DISABLED": "A dashboard user was disabled and their sessions ended.",
    UserSignedIn => "USER_SIGNED_IN": "A dashboard user signed in.",
    UserSignInFailed => "USER_SIGN_IN_FAILED": "A sign-in was refused (details say why; never the password or code).",
    UserSignedOut => "USER_SIGNED_OUT": "A dashboard user signed out.",
}

impl fmt::Display for AuditAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AuditAction {
    type Err = ServiceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AuditAction::ALL
            .iter()
            .copied()
            .find(|action| action.as_str() == s)
            .ok_or_else(|| ServiceError::Internal(format!("unknown audit action {s:?}")))
    }
}

/// What an audit entry is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The GraphQL type name, e.g. `SocialAccount` or `ApiKey`.
    pub kind: &'static str,
    pub id: String,
}

impl Target {
    /// A target by type name and numeric id.
    pub fn new(kind: &'static str, id: i64) -> Self {
        Self {
            kind,
            id: id.to_string(),
        }
    }
}

/// Appends an audit entry. Call it with the transaction of the change it records, so the
/// change and its audit row commit together. `details` must not contain secrets.
pub async fn record(
    db: &impl ConnectionTrait,
    actor: &Actor,
    action: AuditAction,
    target: Option<Target>,
    details: Value,
) -> ServiceResult<audit_log::Model> {
    let (target_type, target_id) = match target {
        Some(t) => (Some(t.kind.to_owned()), Some(t.id)),
        None => (None, None),
    };
    Ok(audit_log::ActiveModel {
        tenant_id: Set(actor.tenant_id),
        actor: Set(actor.name.clone()),
        action: Set(action.as_str().to_owned()),
        target_type: Set(target_type),
        target_id: Set(target_id),
        details: Set(details),
        client_ip: Set(actor.client_ip.clone()),
        occurred_at: Set(Utc::now()),
        ..Default::default()
    }
    .insert(db)
    .await?)
}

/// Filter of the audit listing; every field narrows the result.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    pub actions: Vec<AuditAction>,
    pub account_id: Option<i64>,
    pub actor: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

/// The entries `caller` may read: its tenant's, and for an OPERATOR also the
/// deployment-wide ones (no tenant: key rotations and other operator actions).
fn visible_to(caller: &Caller) -> sea_orm::Condition {
    let own = sea_orm::Condition::any().add(audit_log::Column::TenantId.eq(caller.tenant_id));
    if caller.is_operator() {
        own.add(audit_log::Column::TenantId.is_null())
    } else {
        own
    }
}

fn select(caller: &Caller, filter: &AuditFilter) -> Select<audit_log::Entity> {
    let mut select = audit_log::Entity::find().filter(visible_to(caller));
    if !filter.actions.is_empty() {
        select = select
            .filter(audit_log::Column::Action.is_in(filter.actions.iter().map(|a| a.as_str())));
    }
    if let Some(account_id) = filter.account_id {
        select = select
            .filter(audit_log::Column::TargetType.eq("SocialAccount"))
            .filter(audit_log::Column::TargetId.eq(account_id.to_string()));
    }
    if let Some(actor) = &filter.actor {
        select = select.filter(audit_log::Column::Actor.eq(actor.as_str()));
    }
    if let Some(since) = filter.since {
        select = select.filter(audit_log::Column::OccurredAt.gte(since));
    }
    if let Some(until) = filter.until {
        select = select.filter(audit_log::Column::OccurredAt.lt(until));
    }
    select
}

/// The caller's tenant's audit log, newest first; an OPERATOR also sees the
/// deployment-wide entries.
pub async fn list(
    db: &impl ConnectionTrait,
    caller: &Caller,
    filter: &AuditFilter,
    page: PageArgs,
) -> ServiceResult<Page<audit_log::Model>> {
    let select = select(caller, filter);
    pagination::paginate(
        db,
        select,
        audit_log::Column::Id,
        Direction::NewestFirst,
        page,
    )
    .await
}

/// One audit entry the caller may read (see [`list`]).
pub async fn find(
    db: &impl ConnectionTrait,
    caller: &Caller,
    id: i64,
) -> ServiceResult<Option<audit_log::Model>> {
    Ok(audit_log::Entity::find_by_id(id)
        .filter(visible_to(caller))
        .one(db)
        .await?)
}

/// How many of the audit entries the caller may read match `filter`.
pub async fn count(
    db: &impl ConnectionTrait,
    caller: &Caller,
    filter: &AuditFilter,
) -> ServiceResult<u64> {
    Ok(select(caller, filter).count(db).await?)
}
