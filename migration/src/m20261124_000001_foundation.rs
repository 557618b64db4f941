//! Tenants, API keys, social accounts, OAuth tokens and the audit log.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Tenants {
    Table,
    Id,
    Name,
    CreatedAt,
}

#[derive(DeriveIden)]
enum ApiKeys {
    Table,
    Id,
    TenantId,
    Name,
    Role,
    KeyHash,
    KeyPrefix,
    CreatedAt,
    LastUsedAt,
    RevokedAt,
}

#[derive(DeriveIden)]
enum SocialAccounts {
    Table,
    Id,
    TenantId,
    Platform,
    ProviderAccountId,
    Username,
    DisplayName,
    AvatarUrl,
    Status,
    StatusReason,
    DeactivatedAt,
    ConnectedAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum OauthTokens {
    Table,
    Id,
    AccountId,
    TenantId,
    KeyId,
    AccessTokenEnc,
    RefreshTokenEnc,
    ExpiresAt,
    RefreshExpiresAt,
    IssuedAt,
    LastRefreshedAt,
    Scopes,
    Version,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum AuditLog {
    Table,
    Id,
    TenantId,
    Actor,
    Action,
    TargetType,
    TargetId,
    Details,
    ClientIp,
    OccurredAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Tenants::Table)
                    .col(big_pk_auto(Tenants::Id))
                    .col(string_uniq(Tenants::Name))
                    .col(timestamp_with_time_zone(Tenants::CreatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ApiKeys::Table)
                    .col(big_pk_auto(ApiKeys::Id))
                    .col(big_integer(ApiKeys::TenantId))
                    .col(string(ApiKeys::Name))
                    .col(string(ApiKeys::Role))
                    .col(string_uniq(ApiKeys::KeyHash))
                    .col(string(ApiKeys::KeyPrefix))
                    .col(timestamp_with_time_zone(ApiKeys::CreatedAt))
                    .col(timestamp_with_time_zone_null(ApiKeys::LastUsedAt))
                    .col(timestamp_with_time_zone_null(ApiKeys::RevokedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(ApiKeys::Table, ApiKeys::TenantId)
                            .to(Tenants::Table, Tenants::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_api_keys_tenant")
                    .table(ApiKeys::Table)
                    .col(ApiKeys::TenantId)
                    .col(ApiKeys::Id)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(SocialAccounts::Table)
                    .col(big_pk_auto(SocialAccounts::Id))
                    .col(big_integer(SocialAccounts::TenantId))
                    .col(string(SocialAccounts::Platform))
                    .col(string(SocialAccounts::ProviderAccountId))
                    .col(string_null(SocialAccounts::Username))
                    .col(string_null(SocialAccounts::DisplayName))
                    .col(string_null(SocialAccounts::AvatarUrl))
                    .col(string(SocialAccounts::Status))
                    .col(string_null(SocialAccounts::StatusReason))
                    .col(timestamp_with_time_zone_null(SocialAccounts::DeactivatedAt))
                    .col(timestamp_with_time_zone_null(SocialAccounts::ConnectedAt))
                    .col(timestamp_with_time_zone(SocialAccounts::CreatedAt))
                    .col(timestamp_with_time_zone(SocialAccounts::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(SocialAccounts::Table, SocialAccounts::TenantId)
                            .to(Tenants::Table, Tenants::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("uq_social_accounts_provider")
                    .table(SocialAccounts::Table)
                    .col(SocialAccounts::TenantId)
                    .col(SocialAccounts::Platform)
                    .col(SocialAccounts::ProviderAccountId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_social_accounts_tenant_status")
                    .table(SocialAccounts::Table)
                    .col(SocialAccounts::TenantId)
                    .col(SocialAccounts::Status)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_social_accounts_status")
                    .table(SocialAccounts::Table)
                    .col(SocialAccounts::Status)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_social_accounts_deactivated_at")
                    .table(SocialAccounts::Table)
                    .col(SocialAccounts::DeactivatedAt)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(OauthTokens::Table)
                    .col(big_pk_auto(OauthTokens::Id))
                    .col(big_integer_uniq(OauthTokens::AccountId))
                    .col(big_integer(OauthTokens::TenantId))
                    .col(string(OauthTokens::KeyId))
                    .col(text(OauthTokens::AccessTokenEnc))
                    .col(text_null(OauthTokens::RefreshTokenEnc))
                    .col(timestamp_with_time_zone(OauthTokens::ExpiresAt))
                    .col(timestamp_with_time_zone_null(OauthTokens::RefreshExpiresAt))
                    .col(timestamp_with_time_zone(OauthTokens::IssuedAt))
                    .col(timestamp_with_time_zone_null(OauthTokens::LastRefreshedAt))
                    .col(text(OauthTokens::Scopes))
                    .col(big_integer(OauthTokens::Version).default(0))
                    .col(timestamp_with_time_zone(OauthTokens::CreatedAt))
                    .col(timestamp_with_time_zone(OauthTokens::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(OauthTokens::Table, OauthTokens::AccountId)
                            .to(SocialAccounts::Table, SocialAccounts::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_oauth_tokens_expires_at")
                    .table(OauthTokens::Table)
                    .col(OauthTokens::ExpiresAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_oauth_tokens_key_id")
                    .table(OauthTokens::Table)
                    .col(OauthTokens::KeyId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(AuditLog::Table)
                    .col(big_pk_auto(AuditLog::Id))
                    .col(big_integer_null(AuditLog::TenantId))
                    .col(string(AuditLog::Actor))
                    .col(string(AuditLog::Action))
                    .col(string_null(AuditLog::TargetType))
                    .col(string_null(AuditLog::TargetId))
                    .col(json_binary(AuditLog::Details))
                    .col(string_null(AuditLog::ClientIp))
                    .col(timestamp_with_time_zone(AuditLog::OccurredAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_audit_log_tenant_occurred")
                    .table(AuditLog::Table)
                    .col(AuditLog::TenantId)
                    .col(AuditLog::OccurredAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_audit_log_tenant_target")
                    .table(AuditLog::Table)
                    .col(AuditLog::TenantId)
                    .col(AuditLog::TargetType)
                    .col(AuditLog::TargetId)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            AuditLog::Table.into_iden(),
            OauthTokens::Table.into_iden(),
            SocialAccounts::Table.into_iden(),
            ApiKeys::Table.into_iden(),
            Tenants::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
