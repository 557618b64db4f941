//! `webhooks`: HTTPS endpoints that receive signed token events.

use sea_orm::entity::prelude::*;

/// A webhook. `kinds` is a comma-separated list of event kinds (empty = all); the signing
/// secret is encrypted by the vault.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhooks")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub tenant_id: i64,
    pub url: String,
    pub kinds: String,
    pub description: Option<String>,
    pub secret_enc: String,
    pub created_at: DateTimeUtc,
    /// Since when every delivery has failed (cleared by a success).
    pub failing_since: Option<DateTimeUtc>,
    /// Disabled after failing for 24 hours.
    pub disabled_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
