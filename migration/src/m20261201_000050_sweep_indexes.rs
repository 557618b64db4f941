//! Indexes that keep every sweep query proportional to the due rows, not the table.
//!
//! Tokens whose account can no longer be refreshed (deactivated, expired, reconnect
//! required) are *parked* by the sweep: their `next_refresh_at` is set to a far-future
//! sentinel, so they leave the partial index of refresh candidates (`next_refresh_at IS
//! NULL`) and never match a retry time. Reconnecting, reactivating or refreshing clears it.
//! Plain SQL: partial indexes read the same on SQLite and PostgreSQL.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &[&str] = &[
    // Due by window: ORDER BY expires_at LIMIT n over live, unscheduled tokens.
    "CREATE INDEX IF NOT EXISTS idx_oauth_tokens_candidates ON oauth_tokens (expires_at) \
     WHERE next_refresh_at IS NULL",
    // Due retries (and never the parked sentinel, which lies in the far future).
    "CREATE INDEX IF NOT EXISTS idx_oauth_tokens_retry ON oauth_tokens (next_refresh_at)",
    // TikTok refresh tokens ending (expiry pass, EXPIRING notices).
    "CREATE INDEX IF NOT EXISTS idx_oauth_tokens_refresh_expiry ON oauth_tokens \
     (refresh_expires_at) WHERE next_refresh_at IS NULL",
    // Accounts that keep failing (EXPIRING notices).
    "CREATE INDEX IF NOT EXISTS idx_oauth_tokens_failures ON oauth_tokens (failure_count)",
    // "Was EXPIRING already raised for this connection?"
    "CREATE INDEX IF NOT EXISTS idx_token_events_account_kind ON token_events \
     (account_id, kind, occurred_at)",
];

const DOWN: &[&str] = &[
    "DROP INDEX IF EXISTS idx_oauth_tokens_candidates",
    "DROP INDEX IF EXISTS idx_oauth_tokens_retry",
    "DROP INDEX IF EXISTS idx_oauth_tokens_refresh_expiry",
    "DROP INDEX IF EXISTS idx_oauth_tokens_failures",
    "DROP INDEX IF EXISTS idx_token_events_account_kind",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::execute_all(manager, UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::execute_all(manager, DOWN).await
    }
}
