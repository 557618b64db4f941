//! `user_sessions`: signed-in dashboard sessions. Only the SHA-256 of the cookie is stored.

use sea_orm::entity::prelude::*;

/// A session. Idle expiry is `last_seen_at` + the configured idle timeout; `expires_at` is
/// the absolute end.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "user_sessions")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub user_id: i64,
    pub tenant_id: i64,
    #[sea_orm(unique)]
    pub token_hash: String,
    /// The CSRF token of this session (not a credential on its own).
    pub csrf_token: String,
    pub created_at: DateTimeUtc,
    pub last_seen_at: DateTimeUtc,
    pub expires_at: DateTimeUtc,
    pub client_ip: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
