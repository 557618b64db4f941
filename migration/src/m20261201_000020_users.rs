//! Dashboard users: password + TOTP accounts, their recovery codes, sessions and the
//! sign-in throttle; oauth_states learn which user started a connection.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    TenantId,
    Email,
    Role,
    PasswordHash,
    TotpSecretEnc,
    TotpLastStep,
    CreatedAt,
    LastSignInAt,
    DisabledAt,
}

#[derive(DeriveIden)]
enum UserRecoveryCodes {
    Table,
    Id,
    UserId,
    CodeHash,
    UsedAt,
}

#[derive(DeriveIden)]
enum UserSessions {
    Table,
    Id,
    UserId,
    TenantId,
    TokenHash,
    CsrfToken,
    CreatedAt,
    LastSeenAt,
    ExpiresAt,
    ClientIp,
}

#[derive(DeriveIden)]
enum SignInThrottle {
    Table,
    Id,
    Subject,
    Failures,
    LastFailureAt,
    LockedUntil,
}

#[derive(DeriveIden)]
enum OauthStates {
    Table,
    UserId,
}

#[derive(DeriveIden)]
enum Tenants {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .col(big_pk_auto(Users::Id))
                    .col(big_integer(Users::TenantId))
                    .col(string_uniq(Users::Email))
                    .col(string(Users::Role))
                    .col(text(Users::PasswordHash))
                    .col(text(Users::TotpSecretEnc))
                    .col(big_integer_null(Users::TotpLastStep))
                    .col(timestamp_with_time_zone(Users::CreatedAt))
                    .col(timestamp_with_time_zone_null(Users::LastSignInAt))
                    .col(timestamp_with_time_zone_null(Users::DisabledAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Users::Table, Users::TenantId)
                            .to(Tenants::Table, Tenants::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_users_tenant")
                    .table(Users::Table)
                    .col(Users::TenantId)
                    .col(Users::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(UserRecoveryCodes::Table)
                    .col(big_pk_auto(UserRecoveryCodes::Id))
                    .col(big_integer(UserRecoveryCodes::UserId))
                    .col(string(UserRecoveryCodes::CodeHash))
                    .col(timestamp_with_time_zone_null(UserRecoveryCodes::UsedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(UserRecoveryCodes::Table, UserRecoveryCodes::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_user_recovery_codes_user")
                    .table(UserRecoveryCodes::Table)
                    .col(UserRecoveryCodes::UserId)
                    .col(UserRecoveryCodes::CodeHash)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(UserSessions::Table)
                    .col(big_pk_auto(UserSessions::Id))
                    .col(big_integer(UserSessions::UserId))
                    .col(big_integer(UserSessions::TenantId))
                    .col(string_uniq(UserSessions::TokenHash))
                    .col(string(UserSessions::CsrfToken))
                    .col(timestamp_with_time_zone(UserSessions::CreatedAt))
                    .col(timestamp_with_time_zone(UserSessions::LastSeenAt))
                    .col(timestamp_with_time_zone(UserSessions::ExpiresAt))
                    .col(string_null(UserSessions::ClientIp))
                    .foreign_key(
                        ForeignKey::create()
                            .from(UserSessions::Table, UserSessions::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_user_sessions_user")
                    .table(UserSessions::Table)
                    .col(UserSessions::UserId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_user_sessions_expires")
                    .table(UserSessions::Table)
                    .col(UserSessions::ExpiresAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(SignInThrottle::Table)
                    .col(big_pk_auto(SignInThrottle::Id))
                    .col(string_uniq(SignInThrottle::Subject))
                    .col(integer(SignInThrottle::Failures).default(0))
                    .col(timestamp_with_time_zone(SignInThrottle::LastFailureAt))
                    .col(timestamp_with_time_zone_null(SignInThrottle::LockedUntil))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(OauthStates::Table)
                    .add_column(big_integer_null(OauthStates::UserId))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(OauthStates::Table)
                    .drop_column(OauthStates::UserId)
                    .to_owned(),
            )
            .await?;
        for table in [
            SignInThrottle::Table.into_iden(),
            UserSessions::Table.into_iden(),
            UserRecoveryCodes::Table.into_iden(),
            Users::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
