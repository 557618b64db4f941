//! `audit_log`: append-only record of every change and every token read.

use crate::enums::AuditAction;
use sea_orm::entity::prelude::*;

/// One audit entry. `details` never holds secrets. `tenant_id` is `None` only for
/// deployment-wide actions (for example an encryption key rotation).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_log")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub tenant_id: Option<i64>,
    pub actor: String,
    pub action: AuditAction,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub details: Json,
    pub client_ip: Option<String>,
    pub occurred_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
