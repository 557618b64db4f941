//! `oauth_tokens.platform`: the account's platform, copied onto its token row (an
//! account's platform never changes), so that each platform's sweep queries scan only that
//! platform's tokens inside that platform's refresh window (and, with `id` in the index,
//! each claim of a sweep pass starts where the previous one ended).
//!
//! Without it the candidate index (`expires_at` of unscheduled tokens) mixed the
//! platforms: with a 7-day Instagram window and 24-hour TikTok tokens, every TikTok token
//! lies inside the Instagram horizon, so the Instagram claim and the dead-row pass walked
//! every live TikTok token on every sweep (O(table), not O(due)).
//!
//! The column is `NOT NULL DEFAULT ''` (SQLite cannot add a NOT NULL column without a
//! default): the backfill below sets every existing row, every insert sets it, and `''`
//! matches no platform (a row written without it would fail to load, loudly).
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &[&str] = &[
    "ALTER TABLE oauth_tokens ADD COLUMN platform VARCHAR(16) NOT NULL DEFAULT ''",
    "UPDATE oauth_tokens SET platform = (SELECT a.platform FROM social_accounts a \
     WHERE a.id = oauth_tokens.account_id)",
    "DROP INDEX IF EXISTS idx_oauth_tokens_candidates",
    // Due by window, per platform: ORDER BY expires_at, id LIMIT n over one platform's
    // live, unscheduled tokens, from where the sweep pass's previous claim ended.
    "CREATE INDEX IF NOT EXISTS idx_oauth_tokens_candidates ON oauth_tokens \
     (platform, expires_at, id) WHERE next_refresh_at IS NULL",
];

const DOWN: &[&str] = &[
    "DROP INDEX IF EXISTS idx_oauth_tokens_candidates",
    "CREATE INDEX IF NOT EXISTS idx_oauth_tokens_candidates ON oauth_tokens (expires_at) \
     WHERE next_refresh_at IS NULL",
    "ALTER TABLE oauth_tokens DROP COLUMN platform",
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
