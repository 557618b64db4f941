//! User notifications: one per incident per account.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Notifications {
    Table,
    Id,
    TenantId,
    AccountId,
    Incident,
    Platform,
    Message,
    Action,
    CreatedAt,
    AcknowledgedAt,
    ResolvedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Notifications::Table)
                    .col(big_pk_auto(Notifications::Id))
                    .col(big_integer(Notifications::TenantId))
                    .col(big_integer(Notifications::AccountId))
                    .col(string(Notifications::Incident))
                    .col(string(Notifications::Platform))
                    .col(text(Notifications::Message))
                    .col(text_null(Notifications::Action))
                    .col(timestamp_with_time_zone(Notifications::CreatedAt))
                    .col(timestamp_with_time_zone_null(Notifications::AcknowledgedAt))
                    .col(timestamp_with_time_zone_null(Notifications::ResolvedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_notifications_tenant")
                    .table(Notifications::Table)
                    .col(Notifications::TenantId)
                    .col(Notifications::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_notifications_account_open")
                    .table(Notifications::Table)
                    .col(Notifications::AccountId)
                    .col(Notifications::ResolvedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Notifications::Table).to_owned())
            .await
    }
}
