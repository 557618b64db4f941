//! Events once and in commit order.
//!
//! `seq` orders events by commit, which replay and live delivery follow; `id` is only the
//! identity. On PostgreSQL ids are taken at insert, so a transaction that took id 10 can
//! commit after the one that took id 11, and a subscriber resuming after 11 would never see
//! 10. A deferred constraint trigger therefore gives each event its `seq` while its
//! transaction commits, under a transaction-scoped advisory lock that is released only
//! once the commit is visible: an event's `seq` is higher than that of every event already
//! visible, so "everything after seq N" never misses one. SQLite has one writer at a time,
//! so its ids already follow commits and `seq` is the id.
//!
//! `once_key` (unique; null for ordinary events) makes a once-only event (EXPIRING,
//! KEY_ROTATION_DUE, PROVIDER_DEGRADED/RECOVERED) insert once however many workers raise it
//! at the same time: the others' inserts do nothing.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The advisory lock that orders event commits (any constant, per database).
pub const COMMIT_ORDER_LOCK: i64 = 0x7477_6576; // "twev"

const COMMON_UP: &[&str] = &[
    "ALTER TABLE token_events ADD COLUMN seq BIGINT",
    "ALTER TABLE token_events ADD COLUMN once_key VARCHAR(255)",
    "UPDATE token_events SET seq = id",
    "CREATE UNIQUE INDEX IF NOT EXISTS idx_token_events_seq ON token_events (seq)",
    "CREATE UNIQUE INDEX IF NOT EXISTS idx_token_events_once ON token_events (once_key)",
];

const SQLITE_UP: &[&str] = &["CREATE TRIGGER IF NOT EXISTS token_events_commit_order \
     AFTER INSERT ON token_events FOR EACH ROW WHEN NEW.seq IS NULL \
     BEGIN UPDATE token_events SET seq = NEW.id WHERE id = NEW.id; END"];

fn postgres_up() -> Vec<String> {
    vec![
        "CREATE SEQUENCE IF NOT EXISTS token_events_commit_seq".into(),
        "SELECT setval('token_events_commit_seq', \
         COALESCE((SELECT MAX(id) FROM token_events), 0) + 1, false)"
            .into(),
        format!(
            "CREATE OR REPLACE FUNCTION token_events_commit_order() RETURNS trigger \
             LANGUAGE plpgsql AS $$ BEGIN \
             PERFORM pg_advisory_xact_lock({COMMIT_ORDER_LOCK}); \
             UPDATE token_events SET seq = nextval('token_events_commit_seq') WHERE id = NEW.id; \
             RETURN NULL; END $$"
        ),
        "CREATE CONSTRAINT TRIGGER token_events_commit_order AFTER INSERT ON token_events \
         DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION token_events_commit_order()"
            .into(),
    ]
}

const SQLITE_DOWN: &[&str] = &["DROP TRIGGER IF EXISTS token_events_commit_order"];

const POSTGRES_DOWN: &[&str] = &[
    "DROP TRIGGER IF EXISTS token_events_commit_order ON token_events",
    "DROP FUNCTION IF EXISTS token_events_commit_order()",
    "DROP SEQUENCE IF EXISTS token_events_commit_seq",
];

const COMMON_DOWN: &[&str] = &[
    "DROP INDEX IF EXISTS idx_token_events_once",
    "DROP INDEX IF EXISTS idx_token_events_seq",
    "ALTER TABLE token_events DROP COLUMN once_key",
    "ALTER TABLE token_events DROP COLUMN seq",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for sql in COMMON_UP {
            db.execute_unprepared(sql).await?;
        }
        match manager.get_database_backend() {
            DbBackend::Postgres => {
                for sql in postgres_up() {
                    db.execute_unprepared(&sql).await?;
                }
            }
            _ => {
                for sql in SQLITE_UP {
                    db.execute_unprepared(sql).await?;
                }
            }
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let specific = match manager.get_database_backend() {
            DbBackend::Postgres => POSTGRES_DOWN,
            _ => SQLITE_DOWN,
        };
        for sql in specific.iter().chain(COMMON_DOWN) {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }
}
