//! Encryption key rotation, the Vault-transit way: a new key becomes active, every token
//! is re-encrypted ("rewrapped") in resumable batches while the service runs, then the old
//! key can be retired from the configuration.

use std::{path::Path, time::Duration};

use chrono::{DateTime, Utc};
use entity::oauth_token;
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QuerySelect, Set,
    TransactionSession, TransactionTrait, sea_query::Expr,
};
use secrecy::ExposeSecret;
use serde_json::json;

use crate::{
    engine::Engine,
    error::{ServiceError, ServiceResult},
    identity::audit::{self, AuditAction},
    identity::caller::{Caller, Role},
    ops::settings,
    tokens::vault::{Aad, KeyRing, TokenKind},
};

/// The setting that names the deployment's active key (shared by every process).
pub const ACTIVE_KEY: &str = "vault_active_key";

fn activated_setting(key_id: &str) -> String {
    format!("vault_key_activated_at:{key_id}")
}

/// Where a rotation stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RotationStatus {
    pub active_key_id: String,
    pub activated_at: Option<DateTime<Utc>>,
    /// Tokens still encrypted with another key.
    pub remaining: u64,
    /// The active key is older than the rotation period.
    pub due: bool,
}

/// The setting that serves as the deployment-wide rotation lock (a lease: a crashed
/// holder's lock is taken over after [`LOCK_LEASE`]).
const ROTATION_LOCK: &str = "vault_rotation_lock";
/// How long a rotation may hold the lock.
const LOCK_LEASE: chrono::Duration = chrono::Duration::minutes(2);

/// Rotations of this process, one at a time (the database lock orders processes).
static LOCAL_ROTATION: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Takes the deployment-wide rotation lock: inserts the lock row, or takes over one whose
/// lease ran out. Returns the token that releases it.
async fn acquire_lock(db: &impl ConnectionTrait) -> ServiceResult<String> {
    use sea_orm::sea_query::OnConflict;
    let now = Utc::now();
    let token = format!("{}:{}", now.timestamp_micros(), random_hex(8)?);
    let inserted = entity::setting::Entity::insert(entity::setting::ActiveModel {
        name: Set(ROTATION_LOCK.to_owned()),
        value: Set(token.clone()),
        updated_at: Set(now),
    })
    .on_conflict(
        OnConflict::column(entity::setting::Column::Name)
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    if inserted == 1 {
        return Ok(token);
    }
    let taken_over = entity::setting::Entity::update_many()
        .col_expr(entity::setting::Column::Value, Expr::value(token.clone()))
        .col_expr(entity::setting::Column::UpdatedAt, Expr::value(now))
        .filter(entity::setting::Column::Name.eq(ROTATION_LOCK))
        .filter(entity::setting::Column::UpdatedAt.lt(now - LOCK_LEASE))
        .exec(db)
        .await?;
    if taken_over.rows_affected == 1 {
        return Ok(token);
    }
    Err(ServiceError::bad_input(
        "another key rotation is running in this deployment; retry in a few seconds",
    ))
}

async fn release_lock(db: &impl ConnectionTrait, token: &str) {
    let released = entity::setting::Entity::delete_many()
        .filter(entity::setting::Column::Name.eq(ROTATION_LOCK))
        .filter(entity::setting::Column::Value.eq(token))
        .exec(db)
        .await;
    if let Err(err) = released {
        tracing::warn!(error = %err, "could not release the key rotation lock; it expires by itself");
    }
}

fn random_hex(len: usize) -> ServiceResult<String> {
    let mut bytes = vec![0u8; len];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| ServiceError::Internal("the system random generator failed".into()))?;
    Ok(hex::encode(bytes))
}

fn file_error(what: &str, e: &std::io::Error) -> ServiceError {
    ServiceError::Internal(format!("{what} the key file: {e}"))
}

/// Appends a new key to the key file and makes it the file's active key. The new contents
/// go to an exclusively created temporary file (mode 0600) next to it, which is synced,
/// renamed over the key file, and the directory synced: a crash leaves the old file or the
/// new one, never a mix. Lines are kept exactly, except the `active=` line.
fn append_to_key_file(path: &Path, id: &str, key_b64: &str) -> ServiceResult<()> {
    use std::io::Write;
    let current = std::fs::read_to_string(path).map_err(|e| file_error("reading", &e))?;
    let mut text: String = current
        .lines()
        .filter(|l| crate::tokens::vault::active_line(l).is_none())
        .map(|l| format!("{l}\n"))
        .collect();
    text.push_str(&format!("{id}:{key_b64}\nactive={id}\n"));
    let text = zeroize::Zeroizing::new(text);
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("tokenwarden.keys");
    let tmp = dir.join(format!(".{name}.{}.tmp", random_hex(8)?));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp).map_err(|e| file_error("writing", &e))?;
    let written = file
        .write_all(text.as_bytes())
        .and_then(|()| file.sync_all());
    drop(file);
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(file_error("writing", &e));
    }
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(file_error("replacing", &e));
    }
    // The rename is durable only once the directory entry is.
    #[cfg(unix)]
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| file_error("syncing the directory of", &e))?;
    Ok(())
}

/// Makes a new key active (OPERATOR; the audit entry is deployment-wide): `key_id` must already be configured on this node (added
/// to TOKENWARDEN_KEYS) and must not be the active key; without it, in key-file mode, a key
/// is generated and appended to the file. One rotation runs at a time in the deployment
/// (a lock row in `settings`); a concurrent one in another process is refused with
/// BAD_USER_INPUT. The rewrap runs afterwards in batches (`rewrap_batch`).
pub async fn rotate<D>(
    db: &D,
    engine: &Engine,
    caller: &Caller,
    key_id: Option<&str>,
    rotation_period: Duration,
) -> ServiceResult<RotationStatus>
where
    D: ConnectionTrait + TransactionTrait,
{
    caller.require(Role::Operator)?;
    let _local = LOCAL_ROTATION.lock().await;
    let lock = acquire_lock(db).await?;
    let rotated = rotate_locked(db, engine, caller, key_id).await;
    release_lock(db, &lock).await;
    rotated?;
    status(db, engine, rotation_period).await
}

async fn rotate_locked<D>(
    db: &D,
    engine: &Engine,
    caller: &Caller,
    key_id: Option<&str>,
) -> ServiceResult<()>
where
    D: ConnectionTrait + TransactionTrait,
{
    // Another process may have rotated since this one last looked.
    sync_active_key(db, engine).await?;
    let mut ring: KeyRing = (*engine.vault()).clone();
    let previous = ring.active_key_id().to_owned();
    let id = match key_id {
        Some(id) if id == previous => {
            return Err(ServiceError::bad_input(format!(
                "key {id:?} is already the active key: rotate to a new key"
            )));
        }
        Some(id) if ring.contains(id) => id.to_owned(),
        Some(id) => {
            return Err(ServiceError::bad_input(format!(
                "key {:?} is not configured on this server: add it to TOKENWARDEN_KEYS on \
                 every process first",
                id.chars().take(64).collect::<String>()
            )));
        }
        None => {
            let Some(path) = engine.settings.key_file.as_deref() else {
                return Err(ServiceError::bad_input(
                    "keys come from TOKENWARDEN_KEYS: add a new key (`tokenwarden keygen`) on \
                     every process, then rotate to it by id",
                ));
            };
            let (id, key) = KeyRing::generate_key().map_err(ServiceError::vault)?;
            ring.add_key(&id, &key).map_err(ServiceError::vault)?;
            // The file first: once the database names the key, every restart must find it.
            append_to_key_file(path, &id, key.expose_secret())?;
            id
        }
    };
    ring.set_active(&id).map_err(ServiceError::vault)?;
    let now = Utc::now();
    let txn = crate::db::begin(db).await?;
    audit::record(
        &txn,
        &caller.deployment_actor(),
        AuditAction::EncryptionKeyRotated,
        None,
        json!({ "activeKeyId": id, "previousKeyId": previous }),
    )
    .await?;
    settings::put(&txn, ACTIVE_KEY, id.clone()).await?;
    settings::put(&txn, &activated_setting(&id), now.to_rfc3339()).await?;
    txn.commit().await?;
    engine.set_vault(ring);
    Ok(())
}

/// Applies the deployment's active key (set by a rotation on any process) to this process.
pub async fn sync_active_key(db: &impl ConnectionTrait, engine: &Engine) -> ServiceResult<()> {
    if let Some(id) = settings::get(db, ACTIVE_KEY).await? {
        let ring = engine.vault();
        if ring.active_key_id() != id {
            if !ring.contains(&id) {
                return Err(ServiceError::Internal(format!(
                    "the deployment's active key {id:?} is not configured on this process"
                )));
            }
            let mut ring = (*ring).clone();
            ring.set_active(&id).map_err(ServiceError::vault)?;
            engine.set_vault(ring);
        }
    }
    Ok(())
}

/// Re-encrypts up to `batch` tokens (and the canary) that use another key than the active
/// one. Each row is written only if its version is unchanged, so a concurrent refresh always
/// wins. Returns how many rows were rewrapped; call until it returns 0.
pub async fn rewrap_batch(
    db: &impl ConnectionTrait,
    engine: &Engine,
    batch: u64,
) -> ServiceResult<u64> {
    let ring = engine.vault();
    let active = ring.active_key_id().to_owned();
    if let Some(canary) = settings::get(db, settings::CANARY).await?
        && ring.needs_rewrap(&canary)
    {
        let rewrapped = ring.encrypt_canary().map_err(ServiceError::vault)?;
        settings::put(db, settings::CANARY, rewrapped).await?;
    }
    // Webhook signing secrets are encrypted with the same keys.
    let mut done = 0;
    let prefix = format!("{}.{active}.", crate::tokens::vault::CIPHERTEXT_PREFIX);
    let hooks = entity::webhook::Entity::find()
        .filter(entity::webhook::Column::SecretEnc.not_like(format!("{prefix}%")))
        .limit(batch)
        .all(db)
        .await?;
    for hook in hooks {
        let rewrapped = ring
            .rewrap(
                &hook.secret_enc,
                &Aad::new(hook.tenant_id, hook.id, TokenKind::WebhookSecret),
            )
            .map_err(ServiceError::vault)?;
        let written = entity::webhook::Entity::update_many()
            .col_expr(entity::webhook::Column::SecretEnc, Expr::value(rewrapped))
            .filter(entity::webhook::Column::Id.eq(hook.id))
            .filter(entity::webhook::Column::SecretEnc.eq(hook.secret_enc.as_str()))
            .exec(db)
            .await?;
        done += written.rows_affected;
    }
    // So are the dashboard users' TOTP secrets.
    let users = entity::user::Entity::find()
        .filter(entity::user::Column::TotpSecretEnc.not_like(format!("{prefix}%")))
        .limit(batch)
        .all(db)
        .await?;
    for user in users {
        let rewrapped = ring
            .rewrap(
                &user.totp_secret_enc,
                &Aad::new(user.tenant_id, user.id, TokenKind::TotpSecret),
            )
            .map_err(ServiceError::vault)?;
        let written = entity::user::Entity::update_many()
            .col_expr(entity::user::Column::TotpSecretEnc, Expr::value(rewrapped))
            .filter(entity::user::Column::Id.eq(user.id))
            .filter(entity::user::Column::TotpSecretEnc.eq(user.totp_secret_enc.as_str()))
            .exec(db)
            .await?;
        done += written.rows_affected;
    }
    let rows = oauth_token::Entity::find()
        .filter(oauth_token::Column::KeyId.ne(active.as_str()))
        .limit(batch)
        .all(db)
        .await?;
    for row in rows {
        let access = ring
            .rewrap(
                &row.access_token_enc,
                &Aad::new(row.tenant_id, row.account_id, TokenKind::Access),
            )
            .map_err(ServiceError::vault)?;
        let refresh = row
            .refresh_token_enc
            .as_deref()
            .map(|c| {
                ring.rewrap(
                    c,
                    &Aad::new(row.tenant_id, row.account_id, TokenKind::Refresh),
                )
            })
            .transpose()
            .map_err(ServiceError::vault)?;
        let written = oauth_token::Entity::update_many()
            .col_expr(oauth_token::Column::AccessTokenEnc, Expr::value(access))
            .col_expr(oauth_token::Column::RefreshTokenEnc, Expr::value(refresh))
            .col_expr(oauth_token::Column::KeyId, Expr::value(active.clone()))
            .filter(oauth_token::Column::Id.eq(row.id))
            .filter(oauth_token::Column::Version.eq(row.version))
            .exec(db)
            .await?;
        done += written.rows_affected;
    }
    Ok(done)
}

/// [`status`] for an API caller: deployment-wide, so OPERATOR only.
pub async fn status_for(
    db: &impl ConnectionTrait,
    engine: &Engine,
    caller: &Caller,
    rotation_period: Duration,
) -> ServiceResult<RotationStatus> {
    caller.require(Role::Operator)?;
    status(db, engine, rotation_period).await
}

/// The active key, its age, and how many tokens still use other keys.
pub async fn status(
    db: &impl ConnectionTrait,
    engine: &Engine,
    rotation_period: Duration,
) -> ServiceResult<RotationStatus> {
    let ring = engine.vault();
    let active = ring.active_key_id().to_owned();
    let remaining = oauth_token::Entity::find()
        .filter(oauth_token::Column::KeyId.ne(active.as_str()))
        .count(db)
        .await?;
    let activated_at = match settings::get(db, &activated_setting(&active)).await? {
        Some(text) => DateTime::parse_from_rfc3339(&text)
            .ok()
            .map(|t| t.with_timezone(&Utc)),
        None => {
            // Keys generated by this service are named k<unix seconds>-<random>.
            active
                .strip_prefix('k')
                .and_then(|s| s.split('-').next())
                .and_then(|s| s.parse::<i64>().ok())
                .and_then(|secs| DateTime::from_timestamp(secs, 0))
        }
    };
    let period =
        chrono::Duration::from_std(rotation_period).unwrap_or_else(|_| chrono::Duration::days(90));
    let due = activated_at.is_some_and(|at| Utc::now() - at > period);
    Ok(RotationStatus {
        active_key_id: active,
        activated_at,
        remaining,
        due,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_updates_keep_keys_whose_id_starts_with_active() {
        let dir = std::env::temp_dir().join(format!("tw-rotation-{}", random_hex(6).expect("rng")));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("tokenwarden.keys");
        let key = "A".repeat(43) + "=";
        std::fs::write(
            &path,
            format!("# keys\nactive2025:{key}\nactive = active2025\n"),
        )
        .expect("write");
        append_to_key_file(&path, "k2", &key).expect("appended");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.contains(&format!("active2025:{key}\n")), "{text}");
        assert!(text.contains("active=k2\n"), "{text}");
        assert_eq!(text.matches("active=").count(), 1, "{text}");
        let ring = KeyRing::parse_key_file(&text).expect("parses");
        assert_eq!(ring.active_key_id(), "k2");
        assert!(ring.contains("active2025"));
        let leftovers = std::fs::read_dir(&dir).expect("dir").count();
        assert_eq!(leftovers, 1, "no temporary file is left behind");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
