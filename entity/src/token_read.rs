//! `token_reads`: how often each reader took an account's access token, one counter row per
//! account, reader and UTC day (an upsert per read, never a row per read).

use sea_orm::entity::prelude::*;

/// Reads of one account's access token by one reader on one day. `reader` is the caller's
/// actor name: `api_key:<id>` or `user:<email>`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "token_reads")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub tenant_id: i64,
    pub account_id: i64,
    pub reader: String,
    /// The API key, when the reader is one (for per-key analytics).
    pub api_key_id: Option<i64>,
    pub day: Date,
    pub reads: i64,
    pub last_read_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
