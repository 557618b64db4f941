//! `oauth_tokens`: the encrypted tokens of an account (at most one row per account).

use crate::enums::Platform;
use sea_orm::entity::prelude::*;

/// Encrypted token columns hold the vault's versioned ciphertext (`tw1.<key id>.<data>`),
/// never plaintext. `version` is bumped on every write for compare-and-swap.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "oauth_tokens")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    #[sea_orm(unique)]
    pub account_id: i64,
    pub tenant_id: i64,
    /// The account's platform (copied: it never changes), so sweep queries stay per platform.
    pub platform: Platform,
    pub key_id: String,
    pub access_token_enc: String,
    pub refresh_token_enc: Option<String>,
    pub expires_at: DateTimeUtc,
    pub refresh_expires_at: Option<DateTimeUtc>,
    pub issued_at: DateTimeUtc,
    pub last_refreshed_at: Option<DateTimeUtc>,
    /// Granted scopes, comma separated.
    pub scopes: String,
    pub version: i64,
    /// While set and in the future, one process holds the right to refresh this token.
    pub refresh_lease_until: Option<DateTimeUtc>,
    /// Who holds the refresh lease (process id + random), for diagnostics.
    pub refresh_lease_owner: Option<String>,
    /// When a failed refresh is retried (set after transient failures).
    pub next_refresh_at: Option<DateTimeUtc>,
    /// Consecutive failed refreshes.
    pub failure_count: i32,
    /// While in the future, a sweep has queued this token's refresh.
    pub sweep_claimed_until: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::social_account::Entity",
        from = "Column::AccountId",
        to = "super::social_account::Column::Id",
        on_delete = "Cascade"
    )]
    SocialAccount,
}

impl Related<super::social_account::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::SocialAccount.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
