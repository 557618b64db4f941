//! `provider_calls`: one row per HTTP call to TikTok or Instagram (deployment-wide).

use crate::enums::Platform;
use sea_orm::entity::prelude::*;

/// A provider call: what, how it ended, how long it took.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "provider_calls")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub platform: Platform,
    pub operation: String,
    pub http_status: Option<i32>,
    pub error_code: Option<String>,
    pub latency_ms: i32,
    pub occurred_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
