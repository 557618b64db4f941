//! `oauth_states`: pending OAuth authorizations (one-time, short-lived).

use crate::enums::Platform;
use sea_orm::entity::prelude::*;

/// A started connection. Only the SHA-256 of the `state` value, of the launch secret and of
/// the browser cookie are stored; the PKCE verifier is encrypted by the vault.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "oauth_states")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    #[sea_orm(unique)]
    pub state_hash: String,
    pub tenant_id: i64,
    /// The key that started it; 0 when a dashboard user did (see `user_id`).
    pub api_key_id: i64,
    /// The dashboard user that started it, if a user did.
    pub user_id: Option<i64>,
    pub platform: Platform,
    pub pkce_verifier_enc: Option<String>,
    pub redirect_after: Option<String>,
    /// Requested scopes, comma separated.
    pub scopes: String,
    pub created_at: DateTimeUtc,
    pub expires_at: DateTimeUtc,
    pub used_at: Option<DateTimeUtc>,
    /// SHA-256 of the launch secret of `/oauth/start/<secret>` (none for rows started
    /// before browser binding).
    #[sea_orm(unique)]
    pub launch_hash: Option<String>,
    /// SHA-256 of the per-flow cookie of the browser that opened the launch URL.
    pub browser_hash: Option<String>,
    pub launched_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
