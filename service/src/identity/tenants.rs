use chrono::Utc;
use entity::tenant;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};

use crate::error::{ServiceError, ServiceResult};

/// The tenant the bootstrap admin key belongs to.
pub(crate) const DEFAULT_TENANT: &str = "default";

/// Validates a tenant name: 1-64 characters of `[a-z0-9_-]`.
pub(crate) fn validate_name(name: &str) -> ServiceResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ServiceError::bad_input(format!(
            "invalid tenant name {name:?}: use 1-64 characters of a-z, 0-9, '-' and '_'"
        )))
    }
}

/// Finds a tenant by name.
async fn find_by_name(
    db: &impl ConnectionTrait,
    name: &str,
) -> ServiceResult<Option<tenant::Model>> {
    Ok(tenant::Entity::find()
        .filter(tenant::Column::Name.eq(name))
        .one(db)
        .await?)
}

/// Finds a tenant by id.
pub async fn find(db: &impl ConnectionTrait, id: i64) -> ServiceResult<Option<tenant::Model>> {
    Ok(tenant::Entity::find_by_id(id).one(db).await?)
}

/// Returns the tenant with this name, creating it if needed (safe against a concurrent
/// creation: a unique violation re-reads the winner's row).
pub async fn ensure(db: &impl ConnectionTrait, name: &str) -> ServiceResult<tenant::Model> {
    validate_name(name)?;
    if let Some(existing) = find_by_name(db, name).await? {
        return Ok(existing);
    }
    let inserted = tenant::ActiveModel {
        name: Set(name.to_owned()),
        created_at: Set(Utc::now()),
        ..Default::default()
    }
    .insert(db)
    .await;
    match inserted {
        Ok(model) => Ok(model),
        Err(err) => find_by_name(db, name).await?.ok_or(ServiceError::Db(err)),
    }
}
