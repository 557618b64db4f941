use chrono::Utc;
use entity::{oauth_token, social_account};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, Select, Set, TransactionSession, TransactionTrait,
    sea_query::{Expr, ExprTrait, Func, LikeExpr},
};
use serde_json::json;

use crate::{
    domain::{AccountStatus, Platform},
    error::{ServiceError, ServiceResult},
    identity::audit::{self, AuditAction, Target},
    identity::caller::{Caller, Role},
    pagination::{self, Direction, Page, PageArgs},
};

/// The GraphQL type name of accounts, used as audit target type.
pub(crate) const TARGET: &str = "SocialAccount";

/// Narrows an account listing; empty lists mean "any".
#[derive(Clone, Debug, Default)]
pub struct AccountFilter {
    pub platforms: Vec<Platform>,
    pub statuses: Vec<AccountStatus>,
    /// Case-insensitive substring of username, display name or provider account id.
    pub search: Option<String>,
}

/// The tenant's accounts matching `filter`, as a query other functions can extend.
pub fn select(tenant_id: i64, filter: &AccountFilter) -> Select<social_account::Entity> {
    let mut select =
        social_account::Entity::find().filter(social_account::Column::TenantId.eq(tenant_id));
    if !filter.platforms.is_empty() {
        select =
            select.filter(social_account::Column::Platform.is_in(filter.platforms.iter().copied()));
    }
    if !filter.statuses.is_empty() {
        select =
            select.filter(social_account::Column::Status.is_in(filter.statuses.iter().copied()));
    }
    if let Some(search) = filter
        .search
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let escaped = search
            .to_lowercase()
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        let pattern = format!("%{escaped}%");
        let like = |col: social_account::Column| {
            Expr::expr(Func::lower(Expr::col(col)))
                .like(LikeExpr::new(pattern.clone()).escape('\\'))
        };
        select = select.filter(
            Condition::any()
                .add(like(social_account::Column::Username))
                .add(like(social_account::Column::DisplayName))
                .add(like(social_account::Column::ProviderAccountId)),
        );
    }
    select
}

/// One page of the caller's accounts, oldest first.
pub async fn list(
    db: &impl ConnectionTrait,
    caller: &Caller,
    filter: &AccountFilter,
    page: PageArgs,
) -> ServiceResult<Page<social_account::Model>> {
    let select = select(caller.tenant_id, filter);
    pagination::paginate(
        db,
        select,
        social_account::Column::Id,
        Direction::OldestFirst,
        page,
    )
    .await
}

/// How many of the caller's accounts match `filter`.
pub async fn count(
    db: &impl ConnectionTrait,
    caller: &Caller,
    filter: &AccountFilter,
) -> ServiceResult<u64> {
    Ok(select(caller.tenant_id, filter).count(db).await?)
}

/// One of the caller's accounts; another tenant's account is `NotFound`.
pub async fn get(
    db: &impl ConnectionTrait,
    caller: &Caller,
    id: i64,
) -> ServiceResult<social_account::Model> {
    find(db, caller.tenant_id, id)
        .await?
        .ok_or(ServiceError::NotFound("account"))
}

/// Looks an account up within a tenant.
pub async fn find(
    db: &impl ConnectionTrait,
    tenant_id: i64,
    id: i64,
) -> ServiceResult<Option<social_account::Model>> {
    Ok(social_account::Entity::find_by_id(id)
        .filter(social_account::Column::TenantId.eq(tenant_id))
        .one(db)
        .await?)
}

/// Deactivates an account (ADMIN): it is no longer refreshed and is purged after the
/// retention period. Deactivating a deactivated account changes nothing.
pub async fn deactivate<D>(db: &D, caller: &Caller, id: i64) -> ServiceResult<social_account::Model>
where
    D: ConnectionTrait + TransactionTrait,
{
    caller.require(Role::Admin)?;
    let txn = crate::db::begin(db).await?;
    let account = get(&txn, caller, id).await?;
    if account.deactivated_at.is_some() {
        return Ok(account);
    }
    let previous = account.status;
    let now = Utc::now();
    let mut active: social_account::ActiveModel = account.into();
    active.status = Set(AccountStatus::Deactivated);
    active.deactivated_at = Set(Some(now));
    active.updated_at = Set(now);
    let account = active.update(&txn).await?;
    audit::record(
        &txn,
        &caller.actor(),
        AuditAction::AccountDeactivated,
        Some(Target::new(TARGET, account.id)),
        json!({ "previousStatus": previous, "platform": account.platform }),
    )
    .await?;
    txn.commit().await?;
    Ok(account)
}

/// Reactivates a deactivated account (ADMIN). Its status follows its tokens: ACTIVE with a
/// live token, EXPIRED with an expired one, DISCONNECTED without tokens.
pub async fn reactivate<D>(db: &D, caller: &Caller, id: i64) -> ServiceResult<social_account::Model>
where
    D: ConnectionTrait + TransactionTrait,
{
    caller.require(Role::Admin)?;
    let txn = crate::db::begin(db).await?;
    let account = get(&txn, caller, id).await?;
    if account.deactivated_at.is_none() {
        return Err(ServiceError::bad_input("the account is not deactivated"));
    }
    let token = oauth_token::Entity::find()
        .filter(oauth_token::Column::AccountId.eq(account.id))
        .one(&txn)
        .await?;
    let now = Utc::now();
    let status = match token {
        Some(token) if token.expires_at > now => AccountStatus::Active,
        Some(_) => AccountStatus::Expired,
        None => AccountStatus::Disconnected,
    };
    let mut active: social_account::ActiveModel = account.into();
    active.status = Set(status);
    active.deactivated_at = Set(None);
    active.updated_at = Set(now);
    let account = active.update(&txn).await?;
    // A sweep parked the token while the account was deactivated: it is a candidate again.
    oauth_token::Entity::update_many()
        .col_expr(
            oauth_token::Column::NextRefreshAt,
            sea_orm::sea_query::Expr::value(Option::<chrono::DateTime<Utc>>::None),
        )
        .filter(oauth_token::Column::AccountId.eq(account.id))
        .filter(oauth_token::Column::NextRefreshAt.eq(crate::tokens::sweep::parked_at()))
        .exec(&txn)
        .await?;
    audit::record(
        &txn,
        &caller.actor(),
        AuditAction::AccountReactivated,
        Some(Target::new(TARGET, account.id)),
        json!({ "status": account.status, "platform": account.platform }),
    )
    .await?;
    txn.commit().await?;
    Ok(account)
}

/// What a purged account's `@username` becomes in the messages kept about it.
pub(crate) const PURGED_MENTION: &str = "a purged account";

/// Rows read per statement while scrubbing.
const SCRUB_BATCH: u64 = 500;

/// Removes a purged account's usernames from everything kept about it: event messages,
/// notification messages and actions, and the details of its audit entries (`username`
/// and `displayName` members become null; `@name` mentions become "a purged account").
/// Every username the account had counts (its audit entries remember renames). Run it
/// in the purge's transaction, before the account row forgets the name. Reads in
/// batches of [`SCRUB_BATCH`] rows of this account; writes only rows that change.
pub(crate) async fn scrub_personal_data(
    db: &impl ConnectionTrait,
    account: &social_account::Model,
) -> ServiceResult<()> {
    use entity::{audit_log, notification, token_event};
    let mut names: Vec<String> = account.username.iter().cloned().collect();
    let audit_rows = || {
        audit_log::Entity::find()
            .filter(audit_log::Column::TargetType.eq(TARGET))
            .filter(audit_log::Column::TargetId.eq(account.id.to_string()))
            .order_by_asc(audit_log::Column::Id)
            .limit(SCRUB_BATCH)
    };
    let mut after = 0;
    loop {
        let rows = audit_rows()
            .filter(audit_log::Column::Id.gt(after))
            .all(db)
            .await?;
        for row in &rows {
            after = row.id;
            if let Some(name) = row.details.get("username").and_then(|v| v.as_str())
                && !names.iter().any(|n| n == name)
            {
                names.push(name.to_owned());
            }
        }
        if (rows.len() as u64) < SCRUB_BATCH {
            break;
        }
    }
    names.retain(|n| !n.is_empty());
    let mut after = 0;
    loop {
        let rows = audit_rows()
            .filter(audit_log::Column::Id.gt(after))
            .all(db)
            .await?;
        for row in &rows {
            after = row.id;
            let mut details = row.details.clone();
            scrub_json(&mut details, &names);
            if details != row.details {
                audit_log::Entity::update_many()
                    .col_expr(audit_log::Column::Details, Expr::value(details))
                    .filter(audit_log::Column::Id.eq(row.id))
                    .exec(db)
                    .await?;
            }
        }
        if (rows.len() as u64) < SCRUB_BATCH {
            break;
        }
    }
    if names.is_empty() {
        return Ok(());
    }
    let mut after = 0;
    loop {
        let rows = token_event::Entity::find()
            .filter(token_event::Column::AccountId.eq(account.id))
            .filter(token_event::Column::ErrorMessage.is_not_null())
            .filter(token_event::Column::Id.gt(after))
            .order_by_asc(token_event::Column::Id)
            .limit(SCRUB_BATCH)
            .all(db)
            .await?;
        for row in &rows {
            after = row.id;
            let message = row
                .error_message
                .as_deref()
                .map(|m| scrub_mentions(m, &names));
            let action = row
                .error_action
                .as_deref()
                .map(|m| scrub_mentions(m, &names));
            if message.as_deref() != row.error_message.as_deref()
                || action.as_deref() != row.error_action.as_deref()
            {
                token_event::Entity::update_many()
                    .col_expr(token_event::Column::ErrorMessage, Expr::value(message))
                    .col_expr(token_event::Column::ErrorAction, Expr::value(action))
                    .filter(token_event::Column::Id.eq(row.id))
                    .exec(db)
                    .await?;
            }
        }
        if (rows.len() as u64) < SCRUB_BATCH {
            break;
        }
    }
    let mut after = 0;
    loop {
        let rows = notification::Entity::find()
            .filter(notification::Column::AccountId.eq(account.id))
            .filter(notification::Column::Id.gt(after))
            .order_by_asc(notification::Column::Id)
            .limit(SCRUB_BATCH)
            .all(db)
            .await?;
        for row in &rows {
            after = row.id;
            let message = scrub_mentions(&row.message, &names);
            let action = row.action.as_deref().map(|a| scrub_mentions(a, &names));
            if message != row.message || action != row.action {
                notification::Entity::update_many()
                    .col_expr(notification::Column::Message, Expr::value(message))
                    .col_expr(notification::Column::Action, Expr::value(action))
                    .filter(notification::Column::Id.eq(row.id))
                    .exec(db)
                    .await?;
            }
        }
        if (rows.len() as u64) < SCRUB_BATCH {
            break;
        }
    }
    Ok(())
}

/// Whether `c` can continue a username (TikTok and Instagram: letters, digits, `.`, `_`).
fn username_char(c: char) -> bool {
    c.is_alphanumeric() || c == '.' || c == '_'
}

/// Replaces every whole `@name` mention of `names` in `text` (`@shop` but not
/// `@shopkeeper`; a trailing full stop ends the mention).
fn scrub_mentions(text: &str, names: &[String]) -> String {
    let mut out = text.to_owned();
    for name in names {
        let mention = format!("@{name}");
        let mut result = String::with_capacity(out.len());
        let mut rest = out.as_str();
        while let Some(at) = rest.find(&mention) {
            let tail = &rest[at + mention.len()..];
            let mut next = tail.chars();
            let whole = match next.next() {
                None => true,
                // "@shop." at the end of a sentence is a mention of @shop.
                Some('.') => !next.next().is_some_and(username_char),
                Some(c) => !username_char(c),
            };
            result.push_str(&rest[..at]);
            result.push_str(if whole { PURGED_MENTION } else { &mention });
            rest = tail;
        }
        result.push_str(rest);
        out = result;
    }
    out
}

/// Nulls `username` / `displayName` members and replaces mentions of `names` inside
/// strings, at any depth.
fn scrub_json(value: &mut serde_json::Value, names: &[String]) {
    use serde_json::Value;
    match value {
        Value::String(s) if s.contains('@') => *s = scrub_mentions(s, names),
        Value::Array(items) => items.iter_mut().for_each(|v| scrub_json(v, names)),
        Value::Object(members) => {
            for (key, member) in members.iter_mut() {
                if matches!(key.as_str(), "username" | "displayName") {
                    *member = Value::Null;
                } else {
                    scrub_json(member, names);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrubbing_nulls_names_and_replaces_whole_mentions_at_any_depth() {
        let names = vec!["shop".to_owned(), "old.shop".to_owned()];
        let mut details = json!({
            "platform": "tiktok",
            "username": "shop",
            "scopes": ["user.info.basic"],
            "error": { "message": "TikTok access for @shop stopped working.", "displayName": "Shop" },
            "notes": ["@shop", "@shopkeeper stays", "was @old.shop.", "mail a@shop.example"],
        });
        scrub_json(&mut details, &names);
        assert_eq!(
            details,
            json!({
                "platform": "tiktok",
                "username": null,
                "scopes": ["user.info.basic"],
                "error": { "message": "TikTok access for a purged account stopped working.", "displayName": null },
                "notes": ["a purged account", "@shopkeeper stays", "was a purged account.", "mail a@shop.example"],
            })
        );
    }
}
