//! Background jobs: refresh attempts, sweep claims and retry times on tokens, purge marks.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum RefreshAttempts {
    Table,
    Id,
    TenantId,
    AccountId,
    Attempt,
    Trigger,
    StartedAt,
    FinishedAt,
    Outcome,
    ErrorClass,
    ErrorCode,
    LatencyMs,
}

#[derive(DeriveIden)]
enum OauthTokens {
    Table,
    NextRefreshAt,
    FailureCount,
    SweepClaimedUntil,
}

#[derive(DeriveIden)]
enum SocialAccounts {
    Table,
    PurgedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(RefreshAttempts::Table)
                    .col(big_pk_auto(RefreshAttempts::Id))
                    .col(big_integer(RefreshAttempts::TenantId))
                    .col(big_integer(RefreshAttempts::AccountId))
                    .col(integer(RefreshAttempts::Attempt))
                    .col(string(RefreshAttempts::Trigger))
                    .col(timestamp_with_time_zone(RefreshAttempts::StartedAt))
                    .col(timestamp_with_time_zone(RefreshAttempts::FinishedAt))
                    .col(string(RefreshAttempts::Outcome))
                    .col(string_null(RefreshAttempts::ErrorClass))
                    .col(string_null(RefreshAttempts::ErrorCode))
                    .col(integer(RefreshAttempts::LatencyMs))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_refresh_attempts_account")
                    .table(RefreshAttempts::Table)
                    .col(RefreshAttempts::AccountId)
                    .col(RefreshAttempts::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_refresh_attempts_tenant_started")
                    .table(RefreshAttempts::Table)
                    .col(RefreshAttempts::TenantId)
                    .col(RefreshAttempts::StartedAt)
                    .to_owned(),
            )
            .await?;
        for column in [
            timestamp_with_time_zone_null(OauthTokens::NextRefreshAt),
            integer(OauthTokens::FailureCount).default(0).to_owned(),
            timestamp_with_time_zone_null(OauthTokens::SweepClaimedUntil),
        ] {
            let mut column = column;
            manager
                .alter_table(
                    Table::alter()
                        .table(OauthTokens::Table)
                        .add_column(&mut column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(SocialAccounts::Table)
                    .add_column(timestamp_with_time_zone_null(SocialAccounts::PurgedAt))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(SocialAccounts::Table)
                    .drop_column(SocialAccounts::PurgedAt)
                    .to_owned(),
            )
            .await?;
        for column in [
            OauthTokens::SweepClaimedUntil,
            OauthTokens::FailureCount,
            OauthTokens::NextRefreshAt,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(OauthTokens::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .drop_table(Table::drop().table(RefreshAttempts::Table).to_owned())
            .await
    }
}
