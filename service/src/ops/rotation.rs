//! Encryption key rotation, the Vault-transit way: a new key becomes active, every token
//! is re-encrypted ("rewrapped") in resumable batches while the service runs, then the old
//! key can be retired from the configuration.

use std::{path::Path, time::Duration};

use chrono::{DateTime, Utc};
use entity::oauth_token;
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QuerySelect,
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

/// Appends a new key to the key file and makes it the file's active key (rewritten
/// atomically, mode 0600).
fn append_to_key_file(path: &Path, id: &str, key_b64: &str) -> ServiceResult<()> {
    let current = std::fs::read_to_string(path)
        .map_err(|e| ServiceError::Internal(format!("reading the key file: {e}")))?;
    let mut text: String = current
        .lines()
        .filter(|l| !l.trim_start().starts_with("active"))
        .map(|l| format!("{l}\n"))
        .collect();
    text.push_str(&format!("{id}:{key_b64}\nactive={id}\n"));
    let tmp = path.with_extension("keys.tmp");
    {
        use std::io::Write;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options
            .open(&tmp)
            .map_err(|e| ServiceError::Internal(format!("writing the key file: {e}")))?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| ServiceError::Internal(format!("writing the key file: {e}")))?;
    }
    std::fs::rename(&tmp, path)
        .map_err(|e| ServiceError::Internal(format!("replacing the key file: {e}")))
}

/// Makes a new key active (ADMIN): `key_id` must already be configured on this node (added
/// to TOKENWARDEN_KEYS); without it, in key-file mode, a key is generated and appended to
/// the file. The rewrap runs afterwards in batches (`rewrap_batch`).
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
    caller.require(Role::Admin)?;
    let mut ring: KeyRing = (*engine.vault()).clone();
    let previous = ring.active_key_id().to_owned();
    let id = match key_id {
        Some(id) if ring.contains(id) => id.to_owned(),
        Some(id) => {
            return Err(ServiceError::bad_input(format!(
                "key {id:?} is not configured on this server: add it to TOKENWARDEN_KEYS on \
                 every process first"
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
            append_to_key_file(path, &id, key.expose_secret())?;
            id
        }
    };
    // A key listed last in TOKENWARDEN_KEYS is already active after the restart; rotating
    // to it still records the rotation and lets the rewrap finish the job.
    ring.set_active(&id).map_err(ServiceError::vault)?;
    engine.set_vault(ring);
    let now = Utc::now();
    let txn = db.begin().await?;
    settings::put(&txn, ACTIVE_KEY, id.clone()).await?;
    settings::put(&txn, &activated_setting(&id), now.to_rfc3339()).await?;
    audit::record(
        &txn,
        &caller.actor(),
        AuditAction::EncryptionKeyRotated,
        None,
        json!({ "activeKeyId": id, "previousKeyId": previous }),
    )
    .await?;
    txn.commit().await?;
    status(db, engine, rotation_period).await
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
