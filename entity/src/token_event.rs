//! `token_events`: the outbox of token events (append-only; `seq` is the commit order).

use crate::enums::{EventKind, Platform};
use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// An event. `tenant_id` is `None` for deployment-wide events (provider health, key rotation).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "token_events")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub tenant_id: Option<i64>,
    pub account_id: Option<i64>,
    pub kind: EventKind,
    pub platform: Option<Platform>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub error_action: Option<String>,
    pub occurred_at: DateTimeUtc,
    /// The commit order, which replay and live delivery follow (assigned as the event's
    /// transaction commits; `None` in the row an insert returns).
    pub seq: Option<i64>,
    /// Set on once-only events (unique): a second insert with the same key does nothing.
    pub once_key: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
