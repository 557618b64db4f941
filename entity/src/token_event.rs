//! `token_events`: the outbox of token events (append-only, ordered ids).

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// An event. `kind` is a `TokenEventKind` name (`CONNECTED`, `RECONNECT_REQUIRED`, ...);
/// `tenant_id` is `None` for deployment-wide events (provider health, key rotation).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "token_events")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub tenant_id: Option<i64>,
    pub account_id: Option<i64>,
    pub kind: String,
    pub platform: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub error_action: Option<String>,
    pub occurred_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
