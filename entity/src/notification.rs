//! `notifications`: what end users are told about their accounts, one per incident.

use crate::enums::{Incident, Platform};
use sea_orm::entity::prelude::*;

/// A notification. An incident stays open (`resolved_at` null) until the account works again.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "notifications")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub tenant_id: i64,
    pub account_id: i64,
    pub incident: Incident,
    pub platform: Platform,
    pub message: String,
    pub action: Option<String>,
    pub created_at: DateTimeUtc,
    pub acknowledged_at: Option<DateTimeUtc>,
    pub resolved_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
