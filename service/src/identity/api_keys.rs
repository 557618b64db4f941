use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{Duration, Utc};
use entity::api_key;
use ring::{
    digest,
    rand::{SecureRandom, SystemRandom},
};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, Set,
    TransactionSession, TransactionTrait,
};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use crate::{
    error::{ServiceError, ServiceResult},
    identity::audit::{self, AuditAction, Target},
    identity::caller::{Actor, Caller, Principal, Role},
    identity::tenants,
    pagination::{self, Direction, Page, PageArgs},
};

/// Every generated key starts with this, so leaked keys are easy to recognise and scan for.
pub(crate) const KEY_PREFIX: &str = "tw_";
/// How many leading characters of a key are stored in clear to tell keys apart.
const SHOWN_PREFIX_LEN: usize = 10;
/// `last_used_at` is written at most this often per key, so reads stay reads.
const LAST_USED_GRANULARITY: Duration = Duration::seconds(60);

/// A freshly created key: the plaintext exists only here and is shown to the user once.
pub struct CreatedKey {
    pub key: SecretString,
    pub api_key: api_key::Model,
}

impl std::fmt::Debug for CreatedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedKey")
            .field("key", &"[redacted]")
            .field("api_key", &self.api_key)
            .finish()
    }
}

/// Generates `tw_` + 32 random bytes (base64url) from the system CSPRNG.
pub fn generate_key() -> ServiceResult<SecretString> {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| ServiceError::Internal("the system random generator failed".into()))?;
    Ok(SecretString::from(format!(
        "{KEY_PREFIX}{}",
        URL_SAFE_NO_PAD.encode(bytes)
    )))
}

/// Hex SHA-256 of a key: the only form stored.
pub(crate) fn hash_key(key: &str) -> String {
    hex::encode(digest::digest(&digest::SHA256, key.as_bytes()))
}

fn validate_name(name: &str) -> ServiceResult<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ServiceError::bad_input(
            "an API key name must be 1-100 characters",
        ));
    }
    Ok(name.to_owned())
}

async fn insert_key(
    db: &impl ConnectionTrait,
    actor: &Actor,
    tenant_id: i64,
    name: &str,
    role: Role,
    key: &SecretString,
) -> ServiceResult<api_key::Model> {
    let plain = key.expose_secret();
    let model = api_key::ActiveModel {
        tenant_id: Set(tenant_id),
        name: Set(name.to_owned()),
        role: Set(role),
        key_hash: Set(hash_key(plain)),
        key_prefix: Set(plain.chars().take(SHOWN_PREFIX_LEN).collect()),
        created_at: Set(Utc::now()),
        ..Default::default()
    }
    .insert(db)
    .await?;
    audit::record(
        db,
        actor,
        AuditAction::ApiKeyCreated,
        Some(Target::new("ApiKey", model.id)),
        json!({ "name": model.name, "role": model.role, "keyPrefix": model.key_prefix }),
    )
    .await?;
    Ok(model)
}

/// Creates a key in the caller's tenant (ADMIN). The key and its audit row commit together.
/// OPERATOR keys are refused here (FORBIDDEN): they are made on the command line
/// (`tokenwarden apikey create --role OPERATOR`), so no API key can mint one.
pub async fn create<D>(db: &D, caller: &Caller, name: &str, role: Role) -> ServiceResult<CreatedKey>
where
    D: ConnectionTrait + TransactionTrait,
{
    caller.require(Role::Admin)?;
    if role == Role::Operator {
        return Err(ServiceError::Forbidden(
            "OPERATOR keys are created on the command line only: \
             `tokenwarden apikey create --role OPERATOR`"
                .into(),
        ));
    }
    let name = validate_name(name)?;
    let key = generate_key()?;
    let txn = crate::db::begin(db).await?;
    let api_key = insert_key(&txn, &caller.actor(), caller.tenant_id, &name, role, &key).await?;
    txn.commit().await?;
    Ok(CreatedKey { key, api_key })
}

/// Creates a key for a tenant by name from the command line (creating the tenant if needed).
/// This is the only way to make an OPERATOR key.
pub async fn create_for_tenant<D>(
    db: &D,
    tenant: &str,
    name: &str,
    role: Role,
) -> ServiceResult<CreatedKey>
where
    D: ConnectionTrait + TransactionTrait,
{
    let name = validate_name(name)?;
    let key = generate_key()?;
    let txn = crate::db::begin(db).await?;
    let tenant = tenants::ensure(&txn, tenant).await?;
    // An OPERATOR key is the deployment's business: its creation is audited deployment-wide.
    let scope = (role != Role::Operator).then_some(tenant.id);
    let actor = Actor::system(scope, "cli");
    let api_key = insert_key(&txn, &actor, tenant.id, &name, role, &key).await?;
    txn.commit().await?;
    Ok(CreatedKey { key, api_key })
}

/// The caller's tenant's keys, oldest first (ADMIN).
pub async fn list(
    db: &impl ConnectionTrait,
    caller: &Caller,
    page: PageArgs,
) -> ServiceResult<Page<api_key::Model>> {
    caller.require(Role::Admin)?;
    let select = api_key::Entity::find().filter(api_key::Column::TenantId.eq(caller.tenant_id));
    pagination::paginate(
        db,
        select,
        api_key::Column::Id,
        Direction::OldestFirst,
        page,
    )
    .await
}

/// How many keys the caller's tenant has, revoked ones included (ADMIN).
pub async fn count(db: &impl ConnectionTrait, caller: &Caller) -> ServiceResult<u64> {
    caller.require(Role::Admin)?;
    Ok(api_key::Entity::find()
        .filter(api_key::Column::TenantId.eq(caller.tenant_id))
        .count(db)
        .await?)
}

/// Whether a key still exists and is not revoked (long-lived connections re-check this).
pub(crate) async fn is_active(db: &impl ConnectionTrait, id: i64) -> ServiceResult<bool> {
    Ok(api_key::Entity::find_by_id(id)
        .one(db)
        .await?
        .is_some_and(|k| k.revoked_at.is_none()))
}

/// Every key of every tenant (command line only).
pub async fn list_all(db: &impl ConnectionTrait) -> ServiceResult<Vec<api_key::Model>> {
    Ok(api_key::Entity::find().all(db).await?)
}

/// Finds one of the caller's tenant's keys.
pub async fn find(
    db: &impl ConnectionTrait,
    caller: &Caller,
    id: i64,
) -> ServiceResult<api_key::Model> {
    api_key::Entity::find_by_id(id)
        .filter(api_key::Column::TenantId.eq(caller.tenant_id))
        .one(db)
        .await?
        .ok_or(ServiceError::NotFound("API key"))
}

async fn revoke_model(
    db: &impl ConnectionTrait,
    actor: &Actor,
    key: api_key::Model,
) -> ServiceResult<api_key::Model> {
    if key.revoked_at.is_some() {
        return Ok(key);
    }
    let mut active: api_key::ActiveModel = key.into();
    active.revoked_at = Set(Some(Utc::now()));
    let key = active.update(db).await?;
    audit::record(
        db,
        actor,
        AuditAction::ApiKeyRevoked,
        Some(Target::new("ApiKey", key.id)),
        json!({ "name": key.name, "keyPrefix": key.key_prefix }),
    )
    .await?;
    Ok(key)
}

/// Revokes one of the caller's tenant's keys (ADMIN; an OPERATOR key only by an
/// OPERATOR). Revoking twice is a no-op.
pub async fn revoke<D>(db: &D, caller: &Caller, id: i64) -> ServiceResult<api_key::Model>
where
    D: ConnectionTrait + TransactionTrait,
{
    caller.require(Role::Admin)?;
    let txn = crate::db::begin(db).await?;
    let key = find(&txn, caller, id).await?;
    if key.role == Role::Operator {
        caller.require(Role::Operator)?;
    }
    let key = revoke_model(&txn, &caller.actor(), key).await?;
    txn.commit().await?;
    Ok(key)
}

/// Revokes any key by id (command line only).
pub async fn revoke_any<D>(db: &D, id: i64) -> ServiceResult<api_key::Model>
where
    D: ConnectionTrait + TransactionTrait,
{
    let txn = crate::db::begin(db).await?;
    let key = api_key::Entity::find_by_id(id)
        .one(&txn)
        .await?
        .ok_or(ServiceError::NotFound("API key"))?;
    let actor = Actor::system(Some(key.tenant_id), "cli");
    let key = revoke_model(&txn, &actor, key).await?;
    txn.commit().await?;
    Ok(key)
}

/// Compares two byte strings without an early exit, so timing does not reveal where they
/// differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Resolves a presented bearer key to a caller. Unknown and revoked keys are
/// `Unauthenticated`. The lookup is by hash (the key itself is never compared or stored),
/// and the hashes are compared in constant time.
pub async fn authenticate(
    db: &impl ConnectionTrait,
    presented: &str,
    client_ip: Option<String>,
) -> ServiceResult<Caller> {
    const INVALID: &str = "invalid or revoked API key";
    let hash = hash_key(presented);
    let Some(key) = api_key::Entity::find()
        .filter(api_key::Column::KeyHash.eq(hash.as_str()))
        .one(db)
        .await?
    else {
        return Err(ServiceError::Unauthenticated(INVALID));
    };
    if !constant_time_eq(key.key_hash.as_bytes(), hash.as_bytes()) || key.revoked_at.is_some() {
        return Err(ServiceError::Unauthenticated(INVALID));
    }
    let role = key.role;
    let now = Utc::now();
    if key
        .last_used_at
        .is_none_or(|used| now - used > LAST_USED_GRANULARITY)
    {
        // Best effort: a failed bookkeeping write must not fail the request.
        let touched = api_key::Entity::update_many()
            .col_expr(
                api_key::Column::LastUsedAt,
                sea_orm::sea_query::Expr::value(now),
            )
            .filter(api_key::Column::Id.eq(key.id))
            .exec(db)
            .await;
        if let Err(err) = touched {
            tracing::warn!(api_key_id = key.id, error = %err, "could not record key use");
        }
    }
    Ok(Caller {
        tenant_id: key.tenant_id,
        role,
        principal: Principal::ApiKey { id: key.id },
        client_ip,
    })
}

/// What bootstrapping did, so the binary can tell the operator.
#[derive(Debug)]
pub enum Bootstrap {
    /// The configured key already existed.
    AlreadyPresent,
    /// The configured key was inserted.
    Inserted,
    /// The configured key exists but was revoked; it stays revoked.
    Revoked,
    /// No key was configured and none existed: this one was generated (print it once).
    Generated(SecretString),
    /// No key was configured and keys exist: nothing to do.
    NotNeeded,
}

/// Ensures an ADMIN key for tenant `default`: exactly `configured` when given, otherwise a
/// generated one when the database has no keys at all.
pub async fn bootstrap<D>(db: &D, configured: Option<&SecretString>) -> ServiceResult<Bootstrap>
where
    D: ConnectionTrait + TransactionTrait,
{
    let txn = crate::db::begin(db).await?;
    let outcome = match configured {
        Some(key) => {
            if key.expose_secret().trim().is_empty() {
                return Err(ServiceError::bad_input(
                    "TOKENWARDEN_BOOTSTRAP_ADMIN_KEY is set but empty",
                ));
            }
            let existing = api_key::Entity::find()
                .filter(api_key::Column::KeyHash.eq(hash_key(key.expose_secret())))
                .one(&txn)
                .await?;
            match existing {
                Some(found) if found.revoked_at.is_some() => Bootstrap::Revoked,
                Some(_) => Bootstrap::AlreadyPresent,
                None => {
                    let tenant = tenants::ensure(&txn, tenants::DEFAULT_TENANT).await?;
                    let actor = Actor::system(Some(tenant.id), "bootstrap");
                    insert_key(&txn, &actor, tenant.id, "bootstrap", Role::Admin, key).await?;
                    Bootstrap::Inserted
                }
            }
        }
        None => {
            if api_key::Entity::find().count(&txn).await? > 0 {
                Bootstrap::NotNeeded
            } else {
                let tenant = tenants::ensure(&txn, tenants::DEFAULT_TENANT).await?;
                let actor = Actor::system(Some(tenant.id), "bootstrap");
                let key = generate_key()?;
                insert_key(&txn, &actor, tenant.id, "bootstrap", Role::Admin, &key).await?;
                Bootstrap::Generated(key)
            }
        }
    };
    txn.commit().await?;
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_random_prefixed_and_long() {
        let a = generate_key().expect("key");
        let b = generate_key().expect("key");
        assert!(a.expose_secret().starts_with(KEY_PREFIX));
        assert_eq!(a.expose_secret().len(), KEY_PREFIX.len() + 43);
        assert_ne!(a.expose_secret(), b.expose_secret());
    }

    #[test]
    fn constant_time_eq_compares_whole_strings() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    #[test]
    fn hash_is_sha256_hex() {
        // FIPS 180-2 test vector.
        assert_eq!(
            hash_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn created_key_debug_is_redacted() {
        let key = generate_key().expect("key");
        let plain = key.expose_secret().to_owned();
        let created = CreatedKey {
            key,
            api_key: api_key::Model {
                id: 1,
                tenant_id: 1,
                name: "n".into(),
                role: Role::Admin,
                key_hash: hash_key(&plain),
                key_prefix: plain.chars().take(SHOWN_PREFIX_LEN).collect(),
                created_at: Utc::now(),
                last_used_at: None,
                revoked_at: None,
            },
        };
        assert!(!format!("{created:?}").contains(&plain));
    }
}
