use chrono::{DateTime, Duration, Utc};
use entity::oauth_token;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};

use crate::error::ServiceResult;

/// A token is reported as `Expiring` when less than this remains.
pub const EXPIRING_WITHIN: Duration = Duration::hours(24);

/// The health of an account's access token, derived from its timestamps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenState {
    /// More than a day left.
    Valid,
    /// Less than a day left.
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
        Some(t) if t.expires_at - now < EXPIRING_WITHIN => TokenState::Expiring,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn token(expires_in: Duration, now: DateTime<Utc>) -> oauth_token::Model {
        oauth_token::Model {
            id: 1,
            account_id: 1,
            tenant_id: 1,
            key_id: "k".into(),
            access_token_enc: "x".into(),
            refresh_token_enc: None,
            expires_at: now + expires_in,
            refresh_expires_at: None,
            issued_at: now,
            last_refreshed_at: None,
            scopes: String::new(),
            version: 0,
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
