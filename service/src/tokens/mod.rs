/// Token analytics: refresh attempts per hour, failure reasons, expiries, token reads.
pub mod analytics;
/// Refresh attempts and retry scheduling.
pub mod attempts;
/// Group commit of refresh writes: leases and stored results, in batches.
pub mod batch;
/// Provider failures in words: code, message, action.
pub mod failures;
/// Rotated tokens the database has not taken yet, on local disk.
pub mod journal;
/// On-demand refreshes before background ones: a rate-limit reserve.
pub mod lanes;
/// The refresh policy: what a refresh's result means (outcome, status, event, retry, claim).
pub mod policy;
/// The job queue port: how refreshes are asked to run later, and the queue's depth.
pub mod queue;
/// The refresh use cases: on request (single-flight) and queued (`run_queued`).
pub mod refresh;
/// The tenant-wide token health summary.
pub mod summary;
/// Finding and claiming tokens due for a refresh.
pub mod sweep;
/// The token vault: AES-256-GCM key ring.
pub mod vault;
use chrono::{DateTime, Duration, Utc};
use entity::{oauth_token, social_account};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set, sea_query::Expr,
};
use secrecy::SecretString;

use crate::{
    error::{ServiceError, ServiceResult},
    providers::TokenSet,
    tokens::journal::PendingTokens,
    tokens::vault::{Aad, KeyRing, TokenKind},
};

/// A token is `Expiring` when less than a quarter of its lifetime remains, and at most
/// this long: a day for Instagram's 60-day tokens, six hours for TikTok's 24-hour ones.
pub(crate) const EXPIRING_WITHIN: Duration = Duration::hours(24);

/// The health of an account's access token, derived from its timestamps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenState {
    /// Plenty of time left.
    Valid,
    /// Less than a quarter of its lifetime (and under a day) left.
    Expiring,
    /// Past its expiry.
    Expired,
    /// No token stored (never connected, disconnected or purged).
    Missing,
}

/// Classifies a stored token at `now`.
pub fn state(token: Option<&oauth_token::Model>, now: DateTime<Utc>) -> TokenState {
    match token {
        None => TokenState::Missing,
        Some(t) if t.expires_at <= now => TokenState::Expired,
        Some(t) if t.expires_at - now < ((t.expires_at - t.issued_at) / 4).min(EXPIRING_WITHIN) => {
            TokenState::Expiring
        }
        Some(_) => TokenState::Valid,
    }
}

/// The token rows of several accounts of one tenant, in one query (for data loaders).
pub async fn find_by_accounts(
    db: &impl ConnectionTrait,
    tenant_id: i64,
    account_ids: &[i64],
) -> ServiceResult<Vec<oauth_token::Model>> {
    Ok(oauth_token::Entity::find()
        .filter(oauth_token::Column::TenantId.eq(tenant_id))
        .filter(oauth_token::Column::AccountId.is_in(account_ids.iter().copied()))
        .all(db)
        .await?)
}

/// The token row of one account.
pub(crate) async fn find_by_account(
    db: &impl ConnectionTrait,
    account_id: i64,
) -> ServiceResult<Option<oauth_token::Model>> {
    Ok(oauth_token::Entity::find()
        .filter(oauth_token::Column::AccountId.eq(account_id))
        .one(db)
        .await?)
}

/// The ciphertexts of a token set, bound to one account.
pub struct Sealed {
    pub key_id: String,
    pub access: String,
    pub refresh: Option<String>,
}

/// Encrypts a token set for `account` with the active key.
fn seal(vault: &KeyRing, account: &social_account::Model, set: &TokenSet) -> ServiceResult<Sealed> {
    let access = vault
        .encrypt(
            &set.access_token,
            &Aad::new(account.tenant_id, account.id, TokenKind::Access),
        )
        .map_err(ServiceError::vault)?;
    let refresh = set
        .refresh_token
        .as_ref()
        .map(|token| {
            vault.encrypt(
                token,
                &Aad::new(account.tenant_id, account.id, TokenKind::Refresh),
            )
        })
        .transpose()
        .map_err(ServiceError::vault)?;
    Ok(Sealed {
        key_id: vault.active_key_id().to_owned(),
        access,
        refresh,
    })
}

/// Decrypts one token of a row.
pub fn open(
    vault: &KeyRing,
    row: &oauth_token::Model,
    kind: TokenKind,
) -> ServiceResult<SecretString> {
    let ciphertext = match kind {
        TokenKind::Refresh => row.refresh_token_enc.as_deref().ok_or_else(|| {
            ServiceError::Internal(format!("account {} has no refresh token", row.account_id))
        })?,
        _ => row.access_token_enc.as_str(),
    };
    vault
        .decrypt(ciphertext, &Aad::new(row.tenant_id, row.account_id, kind))
        .map_err(ServiceError::vault)
}

/// Inserts or replaces the tokens of an account (connect / reconnect). A reconnect that
/// returns no refresh token keeps the stored one: a token is never overwritten with
/// nothing.
pub async fn store_connected(
    db: &impl ConnectionTrait,
    vault: &KeyRing,
    account: &social_account::Model,
    set: &TokenSet,
) -> ServiceResult<oauth_token::Model> {
    let sealed = seal(vault, account, set)?;
    let now = Utc::now();
    let scopes = set.scopes.join(",");
    match find_by_account(db, account.id).await? {
        Some(existing) => {
            let version = existing.version;
            let refresh_expires_at = set.refresh_expires_at.or(existing.refresh_expires_at);
            let keep_refresh = existing.refresh_token_enc.clone();
            let mut row: oauth_token::ActiveModel = existing.into();
            row.key_id = Set(sealed.key_id);
            row.access_token_enc = Set(sealed.access);
            row.refresh_token_enc = Set(sealed.refresh.or(keep_refresh));
            row.expires_at = Set(set.expires_at);
            row.refresh_expires_at = Set(refresh_expires_at);
            row.issued_at = Set(set.issued_at);
            row.last_refreshed_at = Set(None);
            row.scopes = Set(scopes);
            row.version = Set(version + 1);
            row.refresh_lease_until = Set(None);
            row.refresh_lease_owner = Set(None);
            row.next_refresh_at = Set(None);
            row.failure_count = Set(0);
            row.sweep_claimed_until = Set(None);
            row.updated_at = Set(now);
            Ok(row.update(db).await?)
        }
        None => Ok(oauth_token::ActiveModel {
            account_id: Set(account.id),
            tenant_id: Set(account.tenant_id),
            platform: Set(account.platform),
            key_id: Set(sealed.key_id),
            access_token_enc: Set(sealed.access),
            refresh_token_enc: Set(sealed.refresh),
            expires_at: Set(set.expires_at),
            refresh_expires_at: Set(set.refresh_expires_at),
            issued_at: Set(set.issued_at),
            last_refreshed_at: Set(None),
            scopes: Set(scopes),
            version: Set(0),
            refresh_lease_until: Set(None),
            refresh_lease_owner: Set(None),
            next_refresh_at: Set(None),
            failure_count: Set(0),
            sweep_claimed_until: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        }
        .insert(db)
        .await?),
    }
}

/// Seals refreshed tokens for `account`, to be stored over the row at `version`.
pub fn seal_refreshed(
    vault: &KeyRing,
    account: &social_account::Model,
    version: i64,
    set: &TokenSet,
) -> ServiceResult<PendingTokens> {
    let sealed = seal(vault, account, set)?;
    Ok(PendingTokens {
        tenant_id: account.tenant_id,
        account_id: account.id,
        platform: account.platform,
        version,
        key_id: sealed.key_id,
        access_enc: sealed.access,
        refresh_enc: sealed.refresh,
        expires_at: set.expires_at,
        refresh_expires_at: set.refresh_expires_at,
        issued_at: set.issued_at,
        scopes: set.scopes.clone(),
        received_at: set.issued_at,
    })
}

/// Writes refreshed (sealed) tokens if the row is still at their version
/// (compare-and-swap) and clears the lease. Returns whether the write happened.
pub(crate) async fn store_refreshed(
    db: &impl ConnectionTrait,
    sealed: &PendingTokens,
) -> ServiceResult<bool> {
    let now = Utc::now();
    let version = sealed.version;
    let mut update = oauth_token::Entity::update_many()
        .col_expr(
            oauth_token::Column::KeyId,
            Expr::value(sealed.key_id.clone()),
        )
        .col_expr(
            oauth_token::Column::AccessTokenEnc,
            Expr::value(sealed.access_enc.clone()),
        )
        .col_expr(
            oauth_token::Column::ExpiresAt,
            Expr::value(sealed.expires_at),
        )
        .col_expr(oauth_token::Column::IssuedAt, Expr::value(sealed.issued_at))
        .col_expr(oauth_token::Column::LastRefreshedAt, Expr::value(Some(now)))
        .col_expr(oauth_token::Column::Version, Expr::value(version + 1))
        .col_expr(
            oauth_token::Column::RefreshLeaseUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(
            oauth_token::Column::RefreshLeaseOwner,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            oauth_token::Column::NextRefreshAt,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(oauth_token::Column::FailureCount, Expr::value(0))
        .col_expr(
            oauth_token::Column::SweepClaimedUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(oauth_token::Column::UpdatedAt, Expr::value(now));
    // Never overwrite a stored token with nothing.
    if let Some(refresh) = &sealed.refresh_enc {
        update = update.col_expr(
            oauth_token::Column::RefreshTokenEnc,
            Expr::value(Some(refresh.clone())),
        );
    }
    if let Some(at) = sealed.refresh_expires_at {
        update = update.col_expr(oauth_token::Column::RefreshExpiresAt, Expr::value(Some(at)));
    }
    if !sealed.scopes.is_empty() {
        update = update.col_expr(
            oauth_token::Column::Scopes,
            Expr::value(sealed.scopes.join(",")),
        );
    }
    let result = update
        .filter(oauth_token::Column::AccountId.eq(sealed.account_id))
        .filter(oauth_token::Column::Version.eq(version))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Takes the database refresh lease of a token at `version`, so no other process
/// refreshes it meanwhile. Returns whether this process now holds it.
pub(crate) async fn take_lease(
    db: &impl ConnectionTrait,
    account_id: i64,
    version: i64,
    owner: &str,
    lease: std::time::Duration,
) -> ServiceResult<bool> {
    let now = Utc::now();
    let until = now + Duration::from_std(lease).unwrap_or_else(|_| Duration::minutes(2));
    let result = oauth_token::Entity::update_many()
        .col_expr(
            oauth_token::Column::RefreshLeaseUntil,
            Expr::value(Some(until)),
        )
        .col_expr(
            oauth_token::Column::RefreshLeaseOwner,
            Expr::value(Some(owner.to_owned())),
        )
        .filter(oauth_token::Column::AccountId.eq(account_id))
        .filter(oauth_token::Column::Version.eq(version))
        .filter(
            sea_orm::Condition::any()
                .add(oauth_token::Column::RefreshLeaseUntil.is_null())
                .add(oauth_token::Column::RefreshLeaseUntil.lt(now)),
        )
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Gives a lease back without changing the tokens (after a failed refresh).
pub(crate) async fn release_lease(
    db: &impl ConnectionTrait,
    account_id: i64,
    owner: &str,
) -> ServiceResult<()> {
    oauth_token::Entity::update_many()
        .col_expr(
            oauth_token::Column::RefreshLeaseUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(
            oauth_token::Column::RefreshLeaseOwner,
            Expr::value(Option::<String>::None),
        )
        .filter(oauth_token::Column::AccountId.eq(account_id))
        .filter(oauth_token::Column::RefreshLeaseOwner.eq(owner))
        .exec(db)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(expires_in: Duration, now: DateTime<Utc>) -> oauth_token::Model {
        token_issued(
            expires_in,
            now - Duration::hours(24) + expires_in.max(Duration::zero()),
            now,
        )
    }

    fn token_issued(
        expires_in: Duration,
        issued_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> oauth_token::Model {
        oauth_token::Model {
            id: 1,
            account_id: 1,
            tenant_id: 1,
            platform: crate::domain::Platform::TikTok,
            key_id: "k".into(),
            access_token_enc: "x".into(),
            refresh_token_enc: None,
            expires_at: now + expires_in,
            refresh_expires_at: None,
            issued_at,
            last_refreshed_at: None,
            scopes: String::new(),
            version: 0,
            refresh_lease_until: None,
            refresh_lease_owner: None,
            next_refresh_at: None,
            failure_count: 0,
            sweep_claimed_until: None,
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn state_follows_expiry() {
        let now = Utc::now();
        assert_eq!(state(None, now), TokenState::Missing);
        assert_eq!(
            state(Some(&token(Duration::days(3), now)), now),
            TokenState::Valid
        );
        assert_eq!(
            state(Some(&token(Duration::hours(2), now)), now),
            TokenState::Expiring
        );
        assert_eq!(
            state(Some(&token(Duration::seconds(-1), now)), now),
            TokenState::Expired
        );
    }
}
