//! Browser-bound connections: `startConnection` hands out a one-time launch URL; opening
//! it binds the flow to that browser with a cookie. `oauth_states` gains the SHA-256 of the
//! launch secret (`launch_hash`, unique), the SHA-256 of the browser cookie
//! (`browser_hash`) and when it was launched (`launched_at`). One column per statement, so
//! SQLite can add them too; rows started before this migration have no launch secret and
//! can no longer be completed in a browser (they expire within minutes).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum OauthStates {
    Table,
    LaunchHash,
    BrowserHash,
    LaunchedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            string_null(OauthStates::LaunchHash),
            string_null(OauthStates::BrowserHash),
            timestamp_with_time_zone_null(OauthStates::LaunchedAt),
        ] {
            let mut column = column;
            manager
                .alter_table(
                    Table::alter()
                        .table(OauthStates::Table)
                        .add_column(&mut column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_index(
                Index::create()
                    .name("idx_oauth_states_launch_hash")
                    .table(OauthStates::Table)
                    .col(OauthStates::LaunchHash)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("idx_oauth_states_launch_hash")
                    .table(OauthStates::Table)
                    .to_owned(),
            )
            .await?;
        for column in [
            OauthStates::LaunchedAt,
            OauthStates::BrowserHash,
            OauthStates::LaunchHash,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(OauthStates::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
