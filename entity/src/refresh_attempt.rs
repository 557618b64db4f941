//! `refresh_attempts`: one row per refresh attempt of an account, whatever triggered it.

use sea_orm::entity::prelude::*;

/// An attempt. `outcome` is SUCCEEDED, FAILED_TRANSIENT, FAILED_PERMANENT or SKIPPED;
/// `trigger` is `sweep`, `retry`, `bulk` (jobs) or `manual` (`refreshAccountToken`, or
/// `accessToken` refreshing a token about to expire).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "refresh_attempts")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub tenant_id: i64,
    pub account_id: i64,
    pub attempt: i32,
    pub trigger: String,
    pub started_at: DateTimeUtc,
    pub finished_at: DateTimeUtc,
    pub outcome: String,
    pub error_class: Option<String>,
    pub error_code: Option<String>,
    pub latency_ms: i32,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
