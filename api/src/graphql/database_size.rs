use async_graphql::SimpleObject;
use chrono::{DateTime, Utc};
use service::ops::size;

/// The database's size and rows per table at the last measurement (every 15 minutes by
/// default; TOKENWARDEN_DB_SIZE_SCHEDULE).
#[derive(SimpleObject)]
pub struct DatabaseSize {
    pub measured_at: DateTime<Utc>,
    pub total_bytes: u64,
    /// Row counts are PostgreSQL's planner estimates; on SQLite they are exact.
    pub rows_estimated: bool,
    /// Growth over TOKENWARDEN_DB_GROWTH_WINDOW (or since the first measurement, if
    /// younger); negative when it shrank. DATABASE_GROWTH above TOKENWARDEN_DB_GROWTH_ALERT.
    pub growth_bytes: i64,
    /// The time `growthBytes` is measured over.
    pub growth_over_seconds: u64,
    /// Every table of the schema (a fixed, small list).
    pub tables: Vec<TableSize>,
}

/// One table.
#[derive(SimpleObject)]
pub struct TableSize {
    pub name: String,
    pub rows: u64,
    /// The table with its indexes, when the database reports it.
    pub bytes: Option<u64>,
}

impl From<size::DatabaseSize> for DatabaseSize {
    fn from(s: size::DatabaseSize) -> Self {
        Self {
            measured_at: s.measured_at,
            total_bytes: s.total_bytes,
            rows_estimated: s.rows_estimated,
            growth_bytes: s.growth_bytes,
            growth_over_seconds: s.growth_over_seconds,
            tables: s
                .tables
                .into_iter()
                .map(|t| TableSize {
                    name: t.name,
                    rows: t.rows,
                    bytes: t.bytes,
                })
                .collect(),
        }
    }
}
