//! Deployment-wide named values, and the vault canary: a known value encrypted at first
//! start, decrypted by readiness checks ("token encryption verification").

use chrono::Utc;
use entity::setting;
use sea_orm::{ConnectionTrait, EntityTrait, Set, sea_query::OnConflict};

use crate::{
    error::{ServiceError, ServiceResult},
    tokens::vault::KeyRing,
};

/// The name of the canary setting.
pub(crate) const CANARY: &str = "vault_canary";

/// Reads a setting.
pub async fn get(db: &impl ConnectionTrait, name: &str) -> ServiceResult<Option<String>> {
    Ok(setting::Entity::find_by_id(name.to_owned())
        .one(db)
        .await?
        .map(|s| s.value))
}

/// Writes a setting: one upsert, so processes (or sweep passes) writing the same new
/// setting at once do not fail on its primary key.
pub async fn put(db: &impl ConnectionTrait, name: &str, value: String) -> ServiceResult<()> {
    setting::Entity::insert(setting::ActiveModel {
        name: Set(name.to_owned()),
        value: Set(value),
        updated_at: Set(Utc::now()),
    })
    .on_conflict(
        OnConflict::column(setting::Column::Name)
            .update_columns([setting::Column::Value, setting::Column::UpdatedAt])
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(())
}

/// The name of the deployment id setting.
pub(crate) const DEPLOYMENT_ID: &str = "deployment_id";

/// A random id of this deployment (its database), made on first start: it names local
/// files that belong to this database (the refresh journal), so files of another
/// deployment sharing a directory are never replayed into this one.
pub async fn deployment_id(db: &impl ConnectionTrait) -> ServiceResult<String> {
    if let Some(id) = get(db, DEPLOYMENT_ID).await? {
        return Ok(id);
    }
    let id: String = crate::providers::new_state()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(12)
        .collect();
    match put(db, DEPLOYMENT_ID, id.clone()).await {
        Ok(()) => Ok(id),
        // Another process made it first.
        Err(err) => get(db, DEPLOYMENT_ID).await?.ok_or(err),
    }
}

/// Stores the canary on first start, then checks that the configured keys decrypt it: a
/// missing or wrong key is reported at startup, not at the first refresh.
pub async fn ensure_canary(db: &impl ConnectionTrait, vault: &KeyRing) -> ServiceResult<()> {
    let stored = match get(db, CANARY).await? {
        Some(stored) => stored,
        None => {
            let canary = vault.encrypt_canary().map_err(ServiceError::vault)?;
            match put(db, CANARY, canary).await {
                Ok(()) => return Ok(()),
                // Another process started at the same moment and stored its canary first:
                // ours must decrypt that one.
                Err(err) => get(db, CANARY).await?.ok_or(err)?,
            }
        }
    };
    vault.verify_canary(&stored).map_err(|err| {
        ServiceError::Internal(format!(
            "the configured encryption keys cannot decrypt this database's canary ({err}); \
             check TOKENWARDEN_KEYS / the key file"
        ))
    })
}

/// Decrypts the canary now (readiness and `systemHealth`).
pub async fn check_canary(db: &impl ConnectionTrait, vault: &KeyRing) -> Result<(), String> {
    match get(db, CANARY).await {
        Ok(Some(stored)) => vault.verify_canary(&stored).map_err(|e| e.to_string()),
        Ok(None) => Err("no canary stored yet".to_owned()),
        Err(err) => Err(format!("database: {err}")),
    }
}
