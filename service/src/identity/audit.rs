use chrono::{DateTime, Utc};
use entity::audit_log;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    Select, Set,
};
use serde_json::Value;

use crate::{
    error::ServiceResult,
    identity::caller::{Actor, Caller},
    pagination::{self, Direction, Page, PageArgs},
};

pub use entity::enums::AuditAction;

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
    Ok(entry(actor, action, target, details, Utc::now())
        .insert(db)
        .await?)
}

/// An audit entry ready to insert (several at once: `insert_many`). Same rules as
/// [`record`]: the change's transaction, no secrets in `details`.
pub(crate) fn entry(
    actor: &Actor,
    action: AuditAction,
    target: Option<Target>,
    details: Value,
    occurred_at: DateTime<Utc>,
) -> audit_log::ActiveModel {
    let (target_type, target_id) = match target {
        Some(t) => (Some(t.kind.to_owned()), Some(t.id)),
        None => (None, None),
    };
    audit_log::ActiveModel {
        tenant_id: Set(actor.tenant_id),
        actor: Set(actor.name.clone()),
        action: Set(action),
        target_type: Set(target_type),
        target_id: Set(target_id),
        details: Set(details),
        client_ip: Set(actor.client_ip.clone()),
        occurred_at: Set(occurred_at),
        ..Default::default()
    }
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
        select = select.filter(audit_log::Column::Action.is_in(filter.actions.iter().copied()));
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
