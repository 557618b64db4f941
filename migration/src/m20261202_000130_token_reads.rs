//! Analytics: `token_reads`, a daily counter per account and reader of access-token reads
//! (one upsert per read: `INSERT ... ON CONFLICT (account_id, reader, day) DO UPDATE`),
//! plus the indexes the bounded analytics windows and the prune job read through.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum TokenReads {
    Table,
    Id,
    TenantId,
    AccountId,
    Reader,
    ApiKeyId,
    Day,
    Reads,
    LastReadAt,
}

#[derive(DeriveIden)]
enum SocialAccounts {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Tenants {
    Table,
    Id,
}

/// Plain SQL: the same on SQLite and PostgreSQL.
const INDEXES: &[&str] = &[
    // The expiry chart: one tenant's tokens by expiry.
    "CREATE INDEX IF NOT EXISTS idx_oauth_tokens_tenant_expires ON oauth_tokens \
     (tenant_id, expires_at)",
    // The prune job deletes stale throttle rows by age.
    "CREATE INDEX IF NOT EXISTS idx_sign_in_throttle_last_failure ON sign_in_throttle \
     (last_failure_at)",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(TokenReads::Table)
                    .col(big_pk_auto(TokenReads::Id))
                    .col(big_integer(TokenReads::TenantId))
                    .col(big_integer(TokenReads::AccountId))
                    .col(string(TokenReads::Reader))
                    .col(big_integer_null(TokenReads::ApiKeyId))
                    .col(date(TokenReads::Day))
                    .col(big_integer(TokenReads::Reads).default(0))
                    .col(timestamp_with_time_zone(TokenReads::LastReadAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(TokenReads::Table, TokenReads::TenantId)
                            .to(Tenants::Table, Tenants::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(TokenReads::Table, TokenReads::AccountId)
                            .to(SocialAccounts::Table, SocialAccounts::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // The upsert's conflict target.
        manager
            .create_index(
                Index::create()
                    .name("idx_token_reads_counter")
                    .table(TokenReads::Table)
                    .col(TokenReads::AccountId)
                    .col(TokenReads::Reader)
                    .col(TokenReads::Day)
                    .unique()
                    .to_owned(),
            )
            .await?;
        // Windowed reads of one tenant.
        manager
            .create_index(
                Index::create()
                    .name("idx_token_reads_tenant_day")
                    .table(TokenReads::Table)
                    .col(TokenReads::TenantId)
                    .col(TokenReads::Day)
                    .to_owned(),
            )
            .await?;
        for sql in INDEXES {
            manager.get_connection().execute_unprepared(sql).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for sql in [
            "DROP INDEX IF EXISTS idx_oauth_tokens_tenant_expires",
            "DROP INDEX IF EXISTS idx_sign_in_throttle_last_failure",
        ] {
            manager.get_connection().execute_unprepared(sql).await?;
        }
        manager
            .drop_table(Table::drop().table(TokenReads::Table).to_owned())
            .await
    }
}
