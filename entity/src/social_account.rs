//! `social_accounts`: one connected TikTok or Instagram account of a tenant.

use crate::enums::{AccountStatus, Platform};
use sea_orm::entity::prelude::*;

/// A connected account and where it stands in its lifecycle (`status`).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "social_accounts")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub tenant_id: i64,
    pub platform: Platform,
    pub provider_account_id: String,
    pub username: Option<String>,
    pub display_name: Option<String>,
    pub avatar_url: Option<String>,
    pub status: AccountStatus,
    /// Why the account is in its status (error code of the last failure), if anything.
    pub status_reason: Option<String>,
    pub deactivated_at: Option<DateTimeUtc>,
    pub connected_at: Option<DateTimeUtc>,
    /// When tokens and personal data of this (long deactivated) account were deleted.
    pub purged_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::tenant::Entity",
        from = "Column::TenantId",
        to = "super::tenant::Column::Id"
    )]
    Tenant,
    #[sea_orm(has_one = "super::oauth_token::Entity")]
    OauthToken,
}

impl Related<super::tenant::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Tenant.def()
    }
}

impl Related<super::oauth_token::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::OauthToken.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
