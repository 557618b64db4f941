//! Purging long-deactivated accounts (the maintenance guide's "cleanup process for inactive
//! accounts"): tokens and personal data go (the username also from the messages kept about
//! the account), the audit trail stays.

use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::{oauth_token, social_account};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set,
    TransactionSession, TransactionTrait,
};
use serde_json::json;

use crate::{
    connections::accounts::TARGET,
    error::ServiceResult,
    identity::audit::{self, AuditAction, Target},
    identity::caller::Actor,
};

/// Deletes the tokens and personal data (username, display name, avatar, provider account
/// id; the username also from its events, notifications and audit details) of accounts
/// deactivated more than `after` ago, one transaction per account with its
/// ACCOUNT_PURGED audit entry. Returns the purged account ids.
pub async fn purge_deactivated<D>(
    db: &D,
    after: Duration,
    now: DateTime<Utc>,
) -> ServiceResult<Vec<i64>>
where
    D: ConnectionTrait + TransactionTrait,
{
    let cutoff =
        now - chrono::Duration::from_std(after).unwrap_or_else(|_| chrono::Duration::days(90));
    let accounts = social_account::Entity::find()
        .filter(social_account::Column::DeactivatedAt.lt(cutoff))
        .filter(social_account::Column::PurgedAt.is_null())
        .all(db)
        .await?;
    let mut purged = Vec::with_capacity(accounts.len());
    for account in accounts {
        let txn = crate::db::begin(db).await?;
        // Several workers may run the cleanup at once: only the one that marks the account
        // purged goes on.
        let claimed = social_account::Entity::update_many()
            .col_expr(
                social_account::Column::PurgedAt,
                sea_orm::sea_query::Expr::value(Some(now)),
            )
            .filter(social_account::Column::Id.eq(account.id))
            .filter(social_account::Column::PurgedAt.is_null())
            .exec(&txn)
            .await?;
        if claimed.rows_affected != 1 {
            txn.rollback().await?;
            continue;
        }
        let tokens = oauth_token::Entity::delete_many()
            .filter(oauth_token::Column::AccountId.eq(account.id))
            .exec(&txn)
            .await?
            .rows_affected;
        crate::connections::accounts::scrub_personal_data(&txn, &account).await?;
        let deactivated_at = account.deactivated_at;
        let platform = account.platform;
        let id = account.id;
        let mut active: social_account::ActiveModel = account.into();
        active.username = Set(None);
        active.display_name = Set(None);
        active.avatar_url = Set(None);
        active.provider_account_id = Set(format!("purged-{id}"));
        active.status_reason = Set(None);
        active.purged_at = Set(Some(now));
        active.updated_at = Set(now);
        let updated = active.update(&txn).await?;
        audit::record(
            &txn,
            &Actor::system(Some(updated.tenant_id), "system"),
            AuditAction::AccountPurged,
            Some(Target::new(TARGET, updated.id)),
            json!({ "platform": platform, "deactivatedAt": deactivated_at, "tokensDeleted": tokens }),
        )
        .await?;
        txn.commit().await?;
        purged.push(updated.id);
    }
    Ok(purged)
}
