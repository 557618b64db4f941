use argon2::{
    Argon2,
    password_hash::{PasswordHasher, PasswordVerifier, phc::PasswordHash},
};
use chrono::Utc;
use entity::{user, user_recovery_code, user_session};
use ring::rand::{SecureRandom, SystemRandom};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, Set, TransactionSession, TransactionTrait,
    sea_query::{Expr, ExprTrait},
};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use crate::{
    error::{ServiceError, ServiceResult},
    identity::{
        api_keys::hash_key,
        audit::{self, AuditAction, Target},
        caller::{Actor, Caller, Role},
        tenants,
    },
    pagination::{self, Direction, Page, PageArgs},
    tokens::vault::{Aad, KeyRing, TokenKind},
};

/// How many recovery codes a new user gets.
pub(crate) const RECOVERY_CODES: usize = 10;
/// Shortest accepted password (NIST SP 800-63B allows 8; an admin console deserves more).
pub(crate) const MIN_PASSWORD_CHARS: usize = 12;
/// Longest accepted password, so hashing stays bounded.
pub(crate) const MAX_PASSWORD_BYTES: usize = 1024;
/// The issuer shown by authenticator apps.
const TOTP_ISSUER: &str = "tokenwarden";
/// Alphabet of recovery codes (RFC 4648 base32, lowercase): 32 symbols, 5 bits each.
const RECOVERY_ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// A freshly created user: the TOTP URI and recovery codes exist only here, shown once.
pub struct CreatedUser {
    pub user: user::Model,
    /// `otpauth://totp/...` with the secret, for an authenticator app.
    pub otpauth_uri: SecretString,
    pub recovery_codes: Vec<SecretString>,
}

impl std::fmt::Debug for CreatedUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedUser")
            .field("user", &self.user)
            .field("otpauth_uri", &"[redacted]")
            .field("recovery_codes", &"[redacted]")
            .finish()
    }
}

/// Lowercases and checks an email address (the sign-in name; unique across tenants).
pub(crate) fn normalize_email(email: &str) -> ServiceResult<String> {
    let email = email.trim().to_lowercase();
    let valid = email.len() <= 254
        && email
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
        && !email
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == ':');
    if valid {
        Ok(email)
    } else {
        Err(ServiceError::bad_input(format!(
            "invalid email address {email:?}"
        )))
    }
}

fn validate_password(password: &SecretString) -> ServiceResult<()> {
    let password = password.expose_secret();
    if password.chars().count() < MIN_PASSWORD_CHARS || password.len() > MAX_PASSWORD_BYTES {
        return Err(ServiceError::bad_input(format!(
            "a password must be {MIN_PASSWORD_CHARS} characters to {MAX_PASSWORD_BYTES} bytes long"
        )));
    }
    Ok(())
}

fn random_bytes<const N: usize>() -> ServiceResult<[u8; N]> {
    let mut bytes = [0u8; N];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| ServiceError::Internal("the system random generator failed".into()))?;
    Ok(bytes)
}

/// Argon2id (default parameters: 19 MiB, 2 passes) with a random salt, as a PHC string.
/// Runs on the blocking pool: it takes tens of milliseconds on purpose.
async fn hash_password(password: SecretString) -> ServiceResult<String> {
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.expose_secret().as_bytes())
            .map(|hash| hash.to_string())
            .map_err(|err| ServiceError::Internal(format!("password hashing failed: {err}")))
    })
    .await
    .map_err(|err| ServiceError::Internal(format!("password hashing task failed: {err}")))?
}

/// Checks a password against a PHC string on the blocking pool. With no stored hash
/// (unknown user) a dummy hash is checked, so both cases take the same time.
async fn verify_password(password: SecretString, stored: Option<String>) -> bool {
    static DUMMY: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let result = tokio::task::spawn_blocking(move || {
        let (stored, real) = match stored {
            Some(stored) => (Some(stored), true),
            None => (
                DUMMY
                    .get_or_init(|| {
                        Argon2::default()
                            .hash_password(b"tokenwarden-dummy-password")
                            .ok()
                            .map(|h| h.to_string())
                    })
                    .clone(),
                false,
            ),
        };
        let Some(stored) = stored else {
            return false;
        };
        let Ok(parsed) = PasswordHash::new(&stored) else {
            return false;
        };
        let ok = Argon2::default()
            .verify_password(password.expose_secret().as_bytes(), &parsed)
            .is_ok();
        ok && real
    })
    .await;
    result.unwrap_or(false)
}

fn totp_for(secret: Vec<u8>, email: &str) -> ServiceResult<totp_rs::Totp> {
    totp_rs::Builder::new()
        .with_algorithm(totp_rs::Algorithm::SHA1)
        .with_digits(6)
        .with_step_duration(30)
        .with_skew(1)
        .with_secret(secret)
        .with_account_name(email)
        .with_issuer(Some(TOTP_ISSUER))
        .build()
        .map_err(|err| ServiceError::Internal(format!("TOTP setup failed: {err}")))
}

fn totp_aad(user: &user::Model) -> Aad {
    Aad::new(user.tenant_id, user.id, TokenKind::TotpSecret)
}

/// A recovery code: 12 characters in three groups, `abcd-efgh-ijkl` (60 bits).
fn generate_recovery_code() -> ServiceResult<SecretString> {
    let bytes = random_bytes::<12>()?;
    let chars: Vec<char> = bytes
        .iter()
        .map(|b| RECOVERY_ALPHABET[usize::from(*b & 31)] as char)
        .collect();
    let groups: Vec<String> = chars.chunks(4).map(|c| c.iter().collect()).collect();
    Ok(SecretString::from(groups.join("-")))
}

/// The stored form of a recovery code: SHA-256 of it without dashes and spaces, lowercase.
fn hash_recovery_code(code: &str) -> String {
    let normalized: String = code
        .chars()
        .filter(|c| !matches!(c, '-' | ' '))
        .flat_map(char::to_lowercase)
        .collect();
    hash_key(&normalized)
}

/// Creates a user in `tenant` (created if needed) from the command line. Every user gets a
/// TOTP secret: sign-in always asks for a code. Returns the otpauth URI and the recovery
/// codes, which are never shown again.
pub async fn create<D>(
    db: &D,
    vault: &KeyRing,
    tenant: &str,
    email: &str,
    role: Role,
    password: SecretString,
) -> ServiceResult<CreatedUser>
where
    D: ConnectionTrait + TransactionTrait,
{
    let email = normalize_email(email)?;
    validate_password(&password)?;
    if user::Entity::find()
        .filter(user::Column::Email.eq(email.as_str()))
        .one(db)
        .await?
        .is_some()
    {
        return Err(ServiceError::bad_input(format!(
            "a user with the email {email} already exists"
        )));
    }
    let password_hash = hash_password(password).await?;
    let secret = random_bytes::<20>()?.to_vec();
    let totp = totp_for(secret.clone(), &email)?;
    let otpauth_uri = SecretString::from(
        totp.to_url()
            .map_err(|err| ServiceError::Internal(format!("TOTP URI failed: {err}")))?,
    );
    let secret_b32 = SecretString::from(totp.secret().to_base32());
    let codes = (0..RECOVERY_CODES)
        .map(|_| generate_recovery_code())
        .collect::<ServiceResult<Vec<_>>>()?;

    let txn = crate::db::begin(db).await?;
    let tenant = tenants::ensure(&txn, tenant).await?;
    let inserted = user::ActiveModel {
        tenant_id: Set(tenant.id),
        email: Set(email.clone()),
        role: Set(role),
        password_hash: Set(password_hash),
        totp_secret_enc: Set(String::new()),
        totp_last_step: Set(None),
        created_at: Set(Utc::now()),
        last_sign_in_at: Set(None),
        disabled_at: Set(None),
        ..Default::default()
    }
    .insert(&txn)
    .await?;
    // The ciphertext is bound to the row id, known only after the insert.
    let enc = vault
        .encrypt(&secret_b32, &totp_aad(&inserted))
        .map_err(ServiceError::vault)?;
    let mut active: user::ActiveModel = inserted.into();
    active.totp_secret_enc = Set(enc);
    let user = active.update(&txn).await?;
    for code in &codes {
        user_recovery_code::ActiveModel {
            user_id: Set(user.id),
            code_hash: Set(hash_recovery_code(code.expose_secret())),
            used_at: Set(None),
            ..Default::default()
        }
        .insert(&txn)
        .await?;
    }
    audit::record(
        &txn,
        &Actor::system(Some(tenant.id), "cli"),
        AuditAction::UserCreated,
        Some(Target::new("User", user.id)),
        json!({ "email": user.email, "role": user.role }),
    )
    .await?;
    txn.commit().await?;
    Ok(CreatedUser {
        user,
        otpauth_uri,
        recovery_codes: codes,
    })
}

/// Every user of every tenant, oldest first (command line only).
pub async fn list_all(db: &impl ConnectionTrait) -> ServiceResult<Vec<user::Model>> {
    Ok(user::Entity::find()
        .order_by_asc(user::Column::Id)
        .all(db)
        .await?)
}

/// The caller's tenant's users, oldest first (ADMIN).
pub async fn list(
    db: &impl ConnectionTrait,
    caller: &Caller,
    page: PageArgs,
) -> ServiceResult<Page<user::Model>> {
    caller.require(Role::Admin)?;
    let select = user::Entity::find().filter(user::Column::TenantId.eq(caller.tenant_id));
    pagination::paginate(db, select, user::Column::Id, Direction::OldestFirst, page).await
}

/// How many users the caller's tenant has (ADMIN).
pub async fn count(db: &impl ConnectionTrait, caller: &Caller) -> ServiceResult<u64> {
    caller.require(Role::Admin)?;
    Ok(user::Entity::find()
        .filter(user::Column::TenantId.eq(caller.tenant_id))
        .count(db)
        .await?)
}

/// One user of the caller's tenant.
pub async fn find(
    db: &impl ConnectionTrait,
    caller: &Caller,
    id: i64,
) -> ServiceResult<user::Model> {
    user::Entity::find_by_id(id)
        .filter(user::Column::TenantId.eq(caller.tenant_id))
        .one(db)
        .await?
        .ok_or(ServiceError::NotFound("user"))
}

/// A user by (normalized) email, any tenant.
pub(crate) async fn find_by_email(
    db: &impl ConnectionTrait,
    email: &str,
) -> ServiceResult<Option<user::Model>> {
    Ok(user::Entity::find()
        .filter(user::Column::Email.eq(email))
        .one(db)
        .await?)
}

/// The audit actor label of a user: `user:<email>` (or `user:<id>` once deleted).
pub(crate) async fn actor_name(db: &impl ConnectionTrait, id: i64) -> ServiceResult<String> {
    Ok(match user::Entity::find_by_id(id).one(db).await? {
        Some(user) => format!("user:{}", user.email),
        None => format!("user:{id}"),
    })
}

/// Disables a user by email and ends their sessions (command line only). Disabling twice
/// is a no-op.
pub async fn disable_by_email<D>(db: &D, email: &str) -> ServiceResult<user::Model>
where
    D: ConnectionTrait + TransactionTrait,
{
    let email = normalize_email(email)?;
    let txn = crate::db::begin(db).await?;
    let user = find_by_email(&txn, &email)
        .await?
        .ok_or(ServiceError::NotFound("user"))?;
    if user.disabled_at.is_some() {
        return Ok(user);
    }
    let mut active: user::ActiveModel = user.into();
    active.disabled_at = Set(Some(Utc::now()));
    let user = active.update(&txn).await?;
    user_session::Entity::delete_many()
        .filter(user_session::Column::UserId.eq(user.id))
        .exec(&txn)
        .await?;
    audit::record(
        &txn,
        &Actor::system(Some(user.tenant_id), "cli"),
        AuditAction::UserDisabled,
        Some(Target::new("User", user.id)),
        json!({ "email": user.email }),
    )
    .await?;
    txn.commit().await?;
    Ok(user)
}

/// Whether a password matches the user's (or, with no user, a dummy hash: same timing).
pub(crate) async fn password_matches(user: Option<&user::Model>, password: &SecretString) -> bool {
    if password.expose_secret().len() > MAX_PASSWORD_BYTES {
        return false;
    }
    verify_password(password.clone(), user.map(|u| u.password_hash.clone())).await
}

/// Accepts a TOTP code (each time step at most once) or an unused recovery code (then
/// spends it). Both checks are single atomic updates, so two concurrent sign-ins cannot
/// both use one code.
pub(crate) async fn accept_code(
    db: &impl ConnectionTrait,
    vault: &KeyRing,
    user: &user::Model,
    code: &str,
) -> ServiceResult<bool> {
    let code = code.trim();
    if code.is_empty() || code.len() > 64 {
        return Ok(false);
    }
    if code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()) {
        let secret_b32 = vault
            .decrypt(&user.totp_secret_enc, &totp_aad(user))
            .map_err(ServiceError::vault)?;
        let secret =
            totp_rs::Secret::try_from_base32(secret_b32.expose_secret()).map_err(|_| {
                ServiceError::Internal(format!("user {} has a bad TOTP secret", user.id))
            })?;
        let totp = totp_for(secret.as_ref().to_vec(), &user.email)?;
        let now = u64::try_from(Utc::now().timestamp()).unwrap_or_default();
        let Some(step) = totp.check(code, now) else {
            return Ok(false);
        };
        let step = i64::try_from(step).unwrap_or(i64::MAX);
        let claimed = user::Entity::update_many()
            .col_expr(user::Column::TotpLastStep, Expr::value(step))
            .filter(user::Column::Id.eq(user.id))
            .filter(
                user::Column::TotpLastStep
                    .is_null()
                    .or(user::Column::TotpLastStep.lt(step)),
            )
            .exec(db)
            .await?;
        return Ok(claimed.rows_affected == 1);
    }
    let spent = user_recovery_code::Entity::update_many()
        .col_expr(
            user_recovery_code::Column::UsedAt,
            Expr::value(Some(Utc::now())),
        )
        .filter(user_recovery_code::Column::UserId.eq(user.id))
        .filter(user_recovery_code::Column::CodeHash.eq(hash_recovery_code(code)))
        .filter(user_recovery_code::Column::UsedAt.is_null())
        .exec(db)
        .await?;
    Ok(spent.rows_affected == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_lowercased_and_checked() {
        assert_eq!(
            normalize_email("  Ops@Example.TEST ").ok().as_deref(),
            Some("ops@example.test")
        );
        for bad in [
            "",
            "ops",
            "@example.test",
            "ops@localhost",
            "o ps@x.y",
            "a:b@x.y",
        ] {
            assert!(normalize_email(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn recovery_codes_are_grouped_and_hash_without_formatting() {
        let code = generate_recovery_code().expect("code");
        let code = code.expose_secret();
        assert_eq!(code.len(), 14);
        assert_eq!(code.matches('-').count(), 2);
        assert_eq!(
            hash_recovery_code(code),
            hash_recovery_code(&code.replace('-', "").to_uppercase())
        );
    }

    #[test]
    fn short_passwords_are_refused() {
        assert!(validate_password(&SecretString::from("short")).is_err());
        assert!(validate_password(&SecretString::from("long enough password")).is_ok());
    }

    #[tokio::test]
    async fn argon2id_hashes_verify() {
        let hash = hash_password(SecretString::from("correct horse battery"))
            .await
            .expect("hash");
        assert!(hash.starts_with("$argon2id$"));
        let stored = Some(hash);
        assert!(verify_password(SecretString::from("correct horse battery"), stored.clone()).await);
        assert!(!verify_password(SecretString::from("wrong horse battery"), stored).await);
        assert!(!verify_password(SecretString::from("anything"), None).await);
    }
}
