//! OAuth connection state, provider call records, deployment settings, refresh leases.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum OauthStates {
    Table,
    Id,
    StateHash,
    TenantId,
    ApiKeyId,
    Platform,
    PkceVerifierEnc,
    RedirectAfter,
    Scopes,
    CreatedAt,
    ExpiresAt,
    UsedAt,
}

#[derive(DeriveIden)]
enum ProviderCalls {
    Table,
    Id,
    Platform,
    Operation,
    HttpStatus,
    ErrorCode,
    LatencyMs,
    OccurredAt,
}

#[derive(DeriveIden)]
enum Settings {
    Table,
    Name,
    Value,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum OauthTokens {
    Table,
    RefreshLeaseUntil,
    RefreshLeaseOwner,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(OauthStates::Table)
                    .col(big_pk_auto(OauthStates::Id))
                    .col(string_uniq(OauthStates::StateHash))
                    .col(big_integer(OauthStates::TenantId))
                    .col(big_integer(OauthStates::ApiKeyId))
                    .col(string(OauthStates::Platform))
                    .col(text_null(OauthStates::PkceVerifierEnc))
                    .col(text_null(OauthStates::RedirectAfter))
                    .col(text(OauthStates::Scopes))
                    .col(timestamp_with_time_zone(OauthStates::CreatedAt))
                    .col(timestamp_with_time_zone(OauthStates::ExpiresAt))
                    .col(timestamp_with_time_zone_null(OauthStates::UsedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_oauth_states_expires_at")
                    .table(OauthStates::Table)
                    .col(OauthStates::ExpiresAt)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ProviderCalls::Table)
                    .col(big_pk_auto(ProviderCalls::Id))
                    .col(string(ProviderCalls::Platform))
                    .col(string(ProviderCalls::Operation))
                    .col(integer_null(ProviderCalls::HttpStatus))
                    .col(string_null(ProviderCalls::ErrorCode))
                    .col(integer(ProviderCalls::LatencyMs))
                    .col(timestamp_with_time_zone(ProviderCalls::OccurredAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_provider_calls_platform_occurred")
                    .table(ProviderCalls::Table)
                    .col(ProviderCalls::Platform)
                    .col(ProviderCalls::OccurredAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_provider_calls_occurred")
                    .table(ProviderCalls::Table)
                    .col(ProviderCalls::OccurredAt)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Settings::Table)
                    .col(string(Settings::Name).primary_key())
                    .col(text(Settings::Value))
                    .col(timestamp_with_time_zone(Settings::UpdatedAt))
                    .to_owned(),
            )
            .await?;

        // SQLite adds one column per ALTER TABLE.
        manager
            .alter_table(
                Table::alter()
                    .table(OauthTokens::Table)
                    .add_column(timestamp_with_time_zone_null(
                        OauthTokens::RefreshLeaseUntil,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(OauthTokens::Table)
                    .add_column(string_null(OauthTokens::RefreshLeaseOwner))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            OauthTokens::RefreshLeaseOwner,
            OauthTokens::RefreshLeaseUntil,
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
        for table in [
            Settings::Table.into_iden(),
            ProviderCalls::Table.into_iden(),
            OauthStates::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
