//! The token event outbox: append-only, ordered ids, written in the same transaction as the
//! state change it reports.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum TokenEvents {
    Table,
    Id,
    TenantId,
    AccountId,
    Kind,
    Platform,
    ErrorCode,
    ErrorMessage,
    ErrorAction,
    OccurredAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(TokenEvents::Table)
                    .col(big_pk_auto(TokenEvents::Id))
                    .col(big_integer_null(TokenEvents::TenantId))
                    .col(big_integer_null(TokenEvents::AccountId))
                    .col(string(TokenEvents::Kind))
                    .col(string_null(TokenEvents::Platform))
                    .col(string_null(TokenEvents::ErrorCode))
                    .col(text_null(TokenEvents::ErrorMessage))
                    .col(text_null(TokenEvents::ErrorAction))
                    .col(timestamp_with_time_zone(TokenEvents::OccurredAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_token_events_tenant_id")
                    .table(TokenEvents::Table)
                    .col(TokenEvents::TenantId)
                    .col(TokenEvents::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_token_events_tenant_occurred")
                    .table(TokenEvents::Table)
                    .col(TokenEvents::TenantId)
                    .col(TokenEvents::OccurredAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(TokenEvents::Table).to_owned())
            .await
    }
}
