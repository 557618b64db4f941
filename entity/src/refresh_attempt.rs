//! `refresh_attempts`: one row per refresh attempt of an account, whatever triggered it.

use crate::enums::{ErrorClass, RefreshOutcome, RefreshTrigger};
use sea_orm::entity::prelude::*;

/// An attempt: why it ran (`trigger`), how it ended, and the class and code of its error.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "refresh_attempts")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub tenant_id: i64,
    pub account_id: i64,
    pub attempt: i32,
    pub trigger: RefreshTrigger,
    pub started_at: DateTimeUtc,
    pub finished_at: DateTimeUtc,
    pub outcome: RefreshOutcome,
    pub error_class: Option<ErrorClass>,
    pub error_code: Option<String>,
    pub latency_ms: i32,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
