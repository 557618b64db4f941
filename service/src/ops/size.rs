//! Database size and growth (the maintenance guide's "monitor database size"): the size and
//! the rows of every table, measured on a schedule and stored for `systemHealth` and
//! `/metrics`, a bounded history of samples, and DATABASE_GROWTH when the database grew more
//! than a threshold within a window.
//!
//! SQLite: `page_count × page_size`, exact `count(*)` per table and, where SQLite has the
//! `dbstat` table, bytes per table (with its indexes). PostgreSQL: `pg_database_size`, and
//! per table `pg_total_relation_size` with the planner's live-row estimate
//! (`pg_stat_user_tables.n_live_tup`): constant cost whatever the table size.

use std::{collections::BTreeMap, time::Duration};

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbBackend, Statement, TransactionSession, TransactionTrait};
use serde::{Deserialize, Serialize};

use crate::{
    error::{ServiceError, ServiceResult},
    events::{self, EventBus, EventKind},
    ops::settings,
    tokens::failures::FailureView,
};

const SNAPSHOT: &str = "database_size";
const HISTORY: &str = "database_size_history";
const GROWTH_RAISED: &str = "database_growth_raised";
/// Samples kept in the history (older ones are dropped first).
const MAX_SAMPLES: usize = 200;

/// One table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TableSize {
    pub name: String,
    pub rows: u64,
    /// Bytes of the table and its indexes, when the database tells.
    pub bytes: Option<u64>,
}

/// A measurement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseSize {
    pub measured_at: DateTime<Utc>,
    pub total_bytes: u64,
    /// Row counts are the planner's estimates (PostgreSQL), not exact counts.
    pub rows_estimated: bool,
    pub tables: Vec<TableSize>,
    /// Growth over the growth window (or since the oldest sample, if younger).
    pub growth_bytes: i64,
    /// The time the growth is measured over.
    pub growth_over_seconds: u64,
}

/// When the database counts as growing too fast.
#[derive(Clone, Debug)]
pub struct GrowthSettings {
    /// DATABASE_GROWTH when it grew more than this many bytes within `window` (0 = never).
    pub threshold_bytes: u64,
    pub window: Duration,
}

impl Default for GrowthSettings {
    fn default() -> Self {
        Self {
            threshold_bytes: 256 * 1024 * 1024,
            window: Duration::from_secs(24 * 3600),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Sample {
    at: DateTime<Utc>,
    bytes: u64,
}

async fn scalar_u64(db: &impl ConnectionTrait, sql: &str) -> ServiceResult<u64> {
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await?
        .ok_or_else(|| ServiceError::Internal(format!("no answer to {sql}")))?;
    let value: i64 = row.try_get_by_index(0)?;
    Ok(u64::try_from(value).unwrap_or_default())
}

/// Measures the database now.
async fn measure(db: &impl ConnectionTrait) -> ServiceResult<(u64, bool, Vec<TableSize>)> {
    let names = crate::ops::backup::table_names();
    match db.get_database_backend() {
        DbBackend::Postgres => {
            let total =
                scalar_u64(db, "SELECT pg_database_size(current_database())::bigint").await?;
            let rows = db
                .query_all_raw(Statement::from_string(
                    DbBackend::Postgres,
                    "SELECT relname::text, n_live_tup::bigint, pg_total_relation_size(relid)::bigint \
                     FROM pg_stat_user_tables WHERE schemaname = current_schema()",
                ))
                .await?;
            let mut found = BTreeMap::new();
            for row in rows {
                let name: String = row.try_get_by_index(0)?;
                let live: i64 = row.try_get_by_index(1)?;
                let bytes: i64 = row.try_get_by_index(2)?;
                found.insert(name, (live.max(0) as u64, bytes.max(0) as u64));
            }
            let tables = names
                .into_iter()
                .map(|name| {
                    let (rows, bytes) = found.get(name).copied().unwrap_or_default();
                    TableSize {
                        name: name.to_owned(),
                        rows,
                        bytes: Some(bytes),
                    }
                })
                .collect();
            Ok((total, true, tables))
        }
        _ => {
            let pages = scalar_u64(db, "PRAGMA page_count").await?;
            let page_size = scalar_u64(db, "PRAGMA page_size").await?;
            // `dbstat` exists only when SQLite was built with it; without it, no bytes.
            let per_table: BTreeMap<String, u64> = match db
                .query_all_raw(Statement::from_string(
                    DbBackend::Sqlite,
                    "SELECT m.tbl_name, SUM(d.pgsize) FROM dbstat d \
                     JOIN sqlite_master m ON m.name = d.name GROUP BY m.tbl_name",
                ))
                .await
            {
                Ok(rows) => rows
                    .into_iter()
                    .filter_map(|r| {
                        let name: String = r.try_get_by_index(0).ok()?;
                        let bytes: i64 = r.try_get_by_index(1).ok()?;
                        Some((name, bytes.max(0) as u64))
                    })
                    .collect(),
                Err(_) => BTreeMap::new(),
            };
            let mut tables = Vec::with_capacity(names.len());
            for name in names {
                let rows = scalar_u64(db, &format!("SELECT count(*) FROM \"{name}\"")).await?;
                tables.push(TableSize {
                    name: name.to_owned(),
                    rows,
                    bytes: per_table.get(name).copied(),
                });
            }
            Ok((pages * page_size, false, tables))
        }
    }
}

/// The growth over `window` given the history (oldest first) and the current size: against
/// the newest sample at least `window` old, else the oldest sample.
fn growth(history: &[Sample], now: Sample, window: Duration) -> (i64, u64) {
    let window = chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX);
    let base = history
        .iter()
        .rev()
        .find(|s| now.at - s.at >= window)
        .or_else(|| history.first());
    match base {
        Some(base) => (
            now.bytes as i64 - base.bytes as i64,
            (now.at - base.at).to_std().unwrap_or_default().as_secs(),
        ),
        None => (0, 0),
    }
}

/// Keeps what the growth computation needs: the newest sample older than the window and
/// everything after it, at most [`MAX_SAMPLES`].
fn trim(history: &mut Vec<Sample>, now: DateTime<Utc>, window: Duration) {
    let window = chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX);
    if let Some(base) = history.iter().rposition(|s| now - s.at >= window) {
        history.drain(..base);
    }
    if history.len() > MAX_SAMPLES {
        let excess = history.len() - MAX_SAMPLES;
        history.drain(..excess);
    }
}

/// Measures the database, stores the measurement and the sample, and raises DATABASE_GROWTH
/// (once per window) when it grew more than the threshold. Returns the measurement.
pub async fn sample<D>(
    db: &D,
    bus: &EventBus,
    growth_settings: &GrowthSettings,
) -> ServiceResult<DatabaseSize>
where
    D: ConnectionTrait + TransactionTrait,
{
    let (total_bytes, rows_estimated, tables) = measure(db).await?;
    let now = Utc::now();
    let mut history: Vec<Sample> = settings::get(db, HISTORY)
        .await?
        .and_then(|j| serde_json::from_str(&j).ok())
        .unwrap_or_default();
    let current = Sample {
        at: now,
        bytes: total_bytes,
    };
    let (growth_bytes, growth_over_seconds) = growth(&history, current, growth_settings.window);
    history.push(current);
    trim(&mut history, now, growth_settings.window);
    let size = DatabaseSize {
        measured_at: now,
        total_bytes,
        rows_estimated,
        tables,
        growth_bytes,
        growth_over_seconds,
    };
    let encode = |v: &dyn erased::Json| v.json();
    let txn = crate::db::begin(db).await?;
    settings::put(&txn, SNAPSHOT, encode(&size)?).await?;
    settings::put(&txn, HISTORY, encode(&history)?).await?;
    let too_fast = growth_settings.threshold_bytes > 0
        && growth_bytes > 0
        && growth_bytes as u64 > growth_settings.threshold_bytes;
    let raised_recently = settings::get(&txn, GROWTH_RAISED)
        .await?
        .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
        .is_some_and(|t| {
            (now - t.with_timezone(&Utc)).to_std().unwrap_or_default() < growth_settings.window
        });
    let event = if too_fast && !raised_recently {
        let view = FailureView {
            code: "DATABASE_GROWTH",
            message: format!(
                "The database grew by {} to {} in the last {} (threshold {}).",
                human_bytes(growth_bytes as u64),
                human_bytes(total_bytes),
                humantime::format_duration(Duration::from_secs(growth_over_seconds)),
                human_bytes(growth_settings.threshold_bytes)
            ),
            action: Some(
                "See which tables grew in systemHealth { databaseSize { tables { name rows bytes } } }; \
                 check TOKENWARDEN_RETENTION and the cleanup settings."
                    .into(),
            ),
        };
        tracing::warn!(code = "DATABASE_GROWTH", "{}", view.message);
        settings::put(&txn, GROWTH_RAISED, now.to_rfc3339()).await?;
        Some(events::record_global(&txn, EventKind::DatabaseGrowth, None, Some(&view)).await?)
    } else {
        None
    };
    txn.commit().await?;
    if let Some(event) = event {
        bus.publish(event).await;
    }
    Ok(size)
}

/// Object-safe JSON encoding for the two stored values.
mod erased {
    use crate::error::{ServiceError, ServiceResult};

    pub(super) trait Json {
        fn json(&self) -> ServiceResult<String>;
    }

    impl<T: serde::Serialize> Json for T {
        fn json(&self) -> ServiceResult<String> {
            serde_json::to_string(self)
                .map_err(|e| ServiceError::Internal(format!("database size: {e}")))
        }
    }
}

/// The last measurement, if one was made.
pub async fn load(db: &impl ConnectionTrait) -> ServiceResult<Option<DatabaseSize>> {
    Ok(settings::get(db, SNAPSHOT)
        .await?
        .and_then(|json| serde_json::from_str(&json).ok()))
}

/// `1.5 MiB`-style sizes for messages.
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(minutes_ago: i64, bytes: u64, now: DateTime<Utc>) -> Sample {
        Sample {
            at: now - chrono::Duration::minutes(minutes_ago),
            bytes,
        }
    }

    #[test]
    fn growth_compares_with_the_sample_one_window_back() {
        let now = Utc::now();
        let hour = Duration::from_secs(3600);
        let history = [at(180, 100, now), at(70, 400, now), at(30, 900, now)];
        // The newest sample at least an hour old is the one 70 minutes ago.
        assert_eq!(growth(&history, at(0, 1000, now), hour), (600, 70 * 60));
        // Younger than the window: against the oldest sample.
        let young = [at(20, 500, now)];
        assert_eq!(growth(&young, at(0, 450, now), hour), (-50, 20 * 60));
        assert_eq!(growth(&[], at(0, 450, now), hour), (0, 0));
    }

    #[test]
    fn the_history_keeps_one_sample_beyond_the_window() {
        let now = Utc::now();
        let mut history = vec![
            at(300, 1, now),
            at(200, 2, now),
            at(61, 3, now),
            at(10, 4, now),
        ];
        trim(&mut history, now, Duration::from_secs(3600));
        assert_eq!(history, [at(61, 3, now), at(10, 4, now)]);
        let mut many: Vec<Sample> = (0..500).map(|i| at(500 - i, i as u64, now)).collect();
        trim(&mut many, now, Duration::from_secs(365 * 24 * 3600));
        assert_eq!(many.len(), MAX_SAMPLES);
        assert_eq!(many.last().map(|s| s.bytes), Some(499));
    }

    #[test]
    fn sizes_read_like_people_write_them() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(256 * 1024 * 1024), "256.0 MiB");
    }
}
