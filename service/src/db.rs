use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr,
    SqliteTransactionMode, TransactionOptions, TransactionTrait,
};

/// The database URL used when none is configured: a SQLite file in the working directory,
/// created if missing.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://tokenwarden.db?mode=rwc";

/// How connections are opened, beyond the URL.
#[derive(Clone, Debug, Default)]
pub struct DbOptions {
    /// Log statements slower than this at WARN (sqlx's slow-statement log); None = off.
    pub slow_statement: Option<Duration>,
}

/// Opens a pool to SQLite or PostgreSQL. For SQLite, `mode=rwc` is added when missing so a
/// fresh file is created, and foreign keys plus WAL are switched on.
pub async fn connect(url: &str) -> Result<DatabaseConnection, DbErr> {
    connect_with(url, &DbOptions::default()).await
}

/// [`connect`] with options.
pub async fn connect_with(url: &str, db_options: &DbOptions) -> Result<DatabaseConnection, DbErr> {
    let url = normalize_url(url);
    let mut options = ConnectOptions::new(url.clone());
    options
        .max_connections(if is_sqlite(&url) { 8 } else { 20 })
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(10))
        .sqlx_logging(false)
        // Per connection, so every pooled connection waits for a writer instead of failing.
        .map_sqlx_sqlite_opts(|opts| opts.busy_timeout(Duration::from_secs(10)));
    if let Some(threshold) = db_options.slow_statement {
        // Only slow statements: every other statement stays unlogged.
        options
            .sqlx_logging(true)
            .sqlx_logging_level(log::LevelFilter::Off)
            .sqlx_slow_statements_logging_settings(log::LevelFilter::Warn, threshold);
    }
    let db = Database::connect(options).await?;
    if db.get_database_backend() == DbBackend::Sqlite {
        db.execute_unprepared("PRAGMA foreign_keys = ON; PRAGMA journal_mode = WAL;")
            .await?;
    }
    Ok(db)
}

/// Starts a transaction that may write. On SQLite it takes the write lock at `BEGIN`
/// (`BEGIN IMMEDIATE`): a deferred transaction that reads and then writes fails at once with
/// "database is locked" when another connection wrote meanwhile, whereas an immediate one
/// waits for the lock (busy timeout). PostgreSQL ignores the mode. Use this instead of
/// `TransactionTrait::begin` (clippy's `disallowed-methods` enforces it).
pub async fn begin<D: TransactionTrait>(db: &D) -> Result<D::Transaction, DbErr> {
    db.begin_with_options(TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..TransactionOptions::default()
    })
    .await
}

/// Connects and brings the schema up to date.
pub async fn connect_and_migrate(url: &str) -> Result<DatabaseConnection, DbErr> {
    let db = connect(url).await?;
    migrate(&db).await?;
    Ok(db)
}

/// [`connect_and_migrate`] with options.
pub async fn connect_and_migrate_with(
    url: &str,
    options: &DbOptions,
) -> Result<DatabaseConnection, DbErr> {
    let db = connect_with(url, options).await?;
    migrate(&db).await?;
    Ok(db)
}

/// Applies pending migrations, one process at a time: `serve` and `worker` processes that
/// start together on a fresh database would otherwise create the same tables at once. The
/// whole run is one transaction holding a lock: a PostgreSQL advisory lock, SQLite's write
/// lock (`BEGIN IMMEDIATE`). Whoever waited then finds nothing left to apply.
pub async fn migrate(db: &DatabaseConnection) -> Result<(), DbErr> {
    let txn = begin(db).await?;
    if db.get_database_backend() == DbBackend::Postgres {
        txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
            .await?;
    }
    Migrator::up(&txn, None).await?;
    txn.commit().await
}

/// The PostgreSQL advisory lock key of migrations ("tokenwar" in ASCII).
const MIGRATION_LOCK: i64 = 0x746f_6b65_6e77_6172;

/// Whether the URL names a SQLite database.
fn is_sqlite(url: &str) -> bool {
    url.starts_with("sqlite:")
}

/// The URL with credentials replaced, safe to log.
pub fn redacted_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(parsed) => parsed.to_string(),
        Err(_) => "<unparseable database url>".to_owned(),
    }
}

fn normalize_url(url: &str) -> String {
    if is_sqlite(url) && !url.contains("mode=") && !url.contains(":memory:") {
        let separator = if url.contains('?') { '&' } else { '?' };
        format!("{url}{separator}mode=rwc")
    } else {
        url.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_get_create_mode() {
        assert_eq!(normalize_url("sqlite://a.db"), "sqlite://a.db?mode=rwc");
        assert_eq!(
            normalize_url("sqlite://a.db?mode=ro"),
            "sqlite://a.db?mode=ro"
        );
        assert_eq!(normalize_url("postgres://x/y"), "postgres://x/y");
    }

    #[test]
    fn passwords_are_redacted() {
        let shown = redacted_url("postgres://user:hunter2@db:5432/tw");
        assert!(!shown.contains("hunter2"));
        assert!(shown.contains("user"));
    }
}
