use chrono::Utc;
use entity::{oauth_token, social_account};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, EntityTrait, PaginatorTrait,
    QueryFilter, Select, Set, TransactionSession, TransactionTrait,
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
pub const TARGET: &str = "SocialAccount";

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
        select = select.filter(
            social_account::Column::Platform.is_in(filter.platforms.iter().map(|p| p.as_str())),
        );
    }
    if !filter.statuses.is_empty() {
        select = select.filter(
            social_account::Column::Status.is_in(filter.statuses.iter().map(|s| s.as_str())),
        );
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
    let previous = account.status.clone();
    let now = Utc::now();
    let mut active: social_account::ActiveModel = account.into();
    active.status = Set(AccountStatus::Deactivated.as_str().to_owned());
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
    active.status = Set(status.as_str().to_owned());
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
