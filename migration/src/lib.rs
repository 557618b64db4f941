//! Schema migrations. Every migration must run unchanged on SQLite and PostgreSQL; later
//! features add tables in new files (`mYYYYMMDD_NNNNNN_<what>.rs`) appended to the list.

pub use sea_orm_migration::prelude::*;

mod m20261124_000001_foundation;
mod m20261124_000002_connections;
mod m20261124_000003_jobs;
mod m20261124_000004_events;
mod m20261124_000005_notifications;
mod m20261124_000006_webhooks;
mod m20261201_000020_users;
mod m20261201_000050_sweep_indexes;
mod m20261202_000070_event_order;
mod m20261202_000130_token_reads;
mod m20261202_000200_oauth_state_expiry;
mod m20261202_000210_oauth_browser_binding;
mod m20261204_000300_token_platform;

/// Runs plain SQL statements in order (migrations written as SQL that reads the same on
/// SQLite and PostgreSQL).
async fn execute_all(manager: &SchemaManager<'_>, statements: &[&str]) -> Result<(), DbErr> {
    for sql in statements {
        manager.get_connection().execute_unprepared(sql).await?;
    }
    Ok(())
}

/// Runs the migrations in order.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261124_000001_foundation::Migration),
            Box::new(m20261124_000002_connections::Migration),
            Box::new(m20261124_000003_jobs::Migration),
            Box::new(m20261124_000004_events::Migration),
            Box::new(m20261124_000005_notifications::Migration),
            Box::new(m20261124_000006_webhooks::Migration),
            Box::new(m20261201_000020_users::Migration),
            Box::new(m20261201_000050_sweep_indexes::Migration),
            Box::new(m20261202_000070_event_order::Migration),
            Box::new(m20261202_000130_token_reads::Migration),
            Box::new(m20261202_000200_oauth_state_expiry::Migration),
            Box::new(m20261202_000210_oauth_browser_binding::Migration),
            Box::new(m20261204_000300_token_platform::Migration),
        ]
    }
}
