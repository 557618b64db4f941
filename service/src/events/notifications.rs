//! End-user notifications (the maintenance guide's "notification system for users with
//! expired tokens"): one per incident per account, saying what happened and what to do,
//! never repeated while the incident lasts, resolved when the account works again.

use chrono::Utc;
use entity::{enums::Incident, notification};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set,
    TransactionSession, TransactionTrait, sea_query::Expr,
};

use crate::{
    domain::Platform,
    error::{ServiceError, ServiceResult},
    events::EventKind,
    identity::caller::Caller,
    pagination::{self, Direction, Page, PageArgs},
    tokens::failures::FailureView,
};

/// The incident an event opens, if any.
fn incident_of(kind: EventKind) -> Option<Incident> {
    match kind {
        EventKind::ReconnectRequired => Some(Incident::ReconnectRequired),
        EventKind::Expired => Some(Incident::Expired),
        EventKind::RefreshFailed => Some(Incident::RefreshFailing),
        _ => None,
    }
}

/// Opens an incident for an account unless the same one is already open. Call it in the
/// transaction of the failure. Returns the new notification, if one was created.
pub(crate) async fn open_incident(
    db: &impl ConnectionTrait,
    tenant_id: i64,
    account_id: i64,
    platform: Platform,
    kind: EventKind,
    view: &FailureView,
) -> ServiceResult<Option<notification::Model>> {
    let Some(incident) = incident_of(kind) else {
        return Ok(None);
    };
    let open = notification::Entity::find()
        .filter(notification::Column::AccountId.eq(account_id))
        .filter(notification::Column::Incident.eq(incident))
        .filter(notification::Column::ResolvedAt.is_null())
        .one(db)
        .await?;
    if open.is_some() {
        return Ok(None);
    }
    Ok(Some(
        notification::ActiveModel {
            tenant_id: Set(tenant_id),
            account_id: Set(account_id),
            incident: Set(incident),
            platform: Set(platform),
            message: Set(view.message.clone()),
            action: Set(view.action.clone()),
            created_at: Set(Utc::now()),
            acknowledged_at: Set(None),
            resolved_at: Set(None),
            ..Default::default()
        }
        .insert(db)
        .await?,
    ))
}

/// Closes an account's open incidents (it works again).
pub(crate) async fn resolve(db: &impl ConnectionTrait, account_id: i64) -> ServiceResult<()> {
    notification::Entity::update_many()
        .col_expr(
            notification::Column::ResolvedAt,
            Expr::value(Some(Utc::now())),
        )
        .filter(notification::Column::AccountId.eq(account_id))
        .filter(notification::Column::ResolvedAt.is_null())
        .exec(db)
        .await?;
    Ok(())
}

/// The caller's tenant's notifications, newest first; `unread` keeps unacknowledged ones.
pub async fn list(
    db: &impl ConnectionTrait,
    caller: &Caller,
    unread: Option<bool>,
    page: PageArgs,
) -> ServiceResult<Page<notification::Model>> {
    let mut select =
        notification::Entity::find().filter(notification::Column::TenantId.eq(caller.tenant_id));
    match unread {
        Some(true) => select = select.filter(notification::Column::AcknowledgedAt.is_null()),
        Some(false) => select = select.filter(notification::Column::AcknowledgedAt.is_not_null()),
        None => {}
    }
    pagination::paginate(
        db,
        select,
        notification::Column::Id,
        Direction::NewestFirst,
        page,
    )
    .await
}

/// Marks one of the caller's notifications as read (VIEWER and up; repeatable).
pub async fn acknowledge<D>(db: &D, caller: &Caller, id: i64) -> ServiceResult<notification::Model>
where
    D: ConnectionTrait + TransactionTrait,
{
    let txn = crate::db::begin(db).await?;
    let found = notification::Entity::find_by_id(id)
        .filter(notification::Column::TenantId.eq(caller.tenant_id))
        .one(&txn)
        .await?
        .ok_or(ServiceError::NotFound("notification"))?;
    let updated = if found.acknowledged_at.is_some() {
        found
    } else {
        let mut active: notification::ActiveModel = found.into();
        active.acknowledged_at = Set(Some(Utc::now()));
        active.update(&txn).await?
    };
    txn.commit().await?;
    Ok(updated)
}
