//! `users`: dashboard users (password + TOTP). Only hashes and ciphertexts are stored.

use crate::enums::Role;
use sea_orm::entity::prelude::*;

/// A user row. `email` is lowercase and unique across tenants (it is what a user signs in with).
#[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "users")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub tenant_id: i64,
    #[sea_orm(unique)]
    pub email: String,
    pub role: Role,
    /// Argon2id PHC string.
    pub password_hash: String,
    /// The TOTP secret, encrypted by the vault (kind `totp_secret`, id = user id).
    pub totp_secret_enc: String,
    /// The last TOTP time step accepted, so a code works once.
    pub totp_last_step: Option<i64>,
    pub created_at: DateTimeUtc,
    pub last_sign_in_at: Option<DateTimeUtc>,
    pub disabled_at: Option<DateTimeUtc>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("tenant_id", &self.tenant_id)
            .field("email", &self.email)
            .field("role", &self.role)
            .field("last_sign_in_at", &self.last_sign_in_at)
            .field("disabled_at", &self.disabled_at)
            .finish_non_exhaustive()
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::tenant::Entity",
        from = "Column::TenantId",
        to = "super::tenant::Column::Id"
    )]
    Tenant,
}

impl Related<super::tenant::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Tenant.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
