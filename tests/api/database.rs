//! The database itself: PostgreSQL over TCP sends each statement at once, and migrations
//! fill in what they add to existing rows.

use std::os::fd::{BorrowedFd, RawFd};

use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, EntityTrait, PaginatorTrait, Statement};

use crate::helpers::{Backend, TestApp, fresh_database, postgres_admin_url};

/// `oauth_tokens.platform` (added by `m20261204_000300_token_platform`) is copied from
/// each existing token's account, on both databases.
async fn the_token_platform_migration_fills_in_existing_rows(backend: Backend) {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = fresh_database(backend, &dir).await;
    let db = sea_orm::Database::connect(&url).await.expect("connect");
    let total = Migrator::migrations().len();
    Migrator::up(&db, Some((total - 1) as u32))
        .await
        .expect("the migrations before it");
    let b = db.get_database_backend();
    for sql in [
        "INSERT INTO tenants (name, created_at) VALUES ('t', '2026-12-01 00:00:00+00:00')",
        "INSERT INTO social_accounts (tenant_id, platform, provider_account_id, status, \
         created_at, updated_at) VALUES \
         ((SELECT id FROM tenants WHERE name = 't'), 'tiktok', 'tt', 'ACTIVE', '2026-12-01 00:00:00+00:00', '2026-12-01 00:00:00+00:00'), \
         ((SELECT id FROM tenants WHERE name = 't'), 'instagram', 'ig', 'ACTIVE', '2026-12-01 00:00:00+00:00', '2026-12-01 00:00:00+00:00')",
        "INSERT INTO oauth_tokens (account_id, tenant_id, key_id, access_token_enc, \
         expires_at, issued_at, scopes, version, failure_count, created_at, updated_at) \
         SELECT id, tenant_id, 'k', 'x', '2026-12-02 00:00:00+00:00', '2026-12-01 00:00:00+00:00', '', 0, \
         0, '2026-12-01 00:00:00+00:00', '2026-12-01 00:00:00+00:00' FROM social_accounts",
    ] {
        db.execute_raw(Statement::from_string(b, sql))
            .await
            .unwrap_or_else(|err| panic!("{sql}: {err}"));
    }
    Migrator::up(&db, None)
        .await
        .expect("the platform migration");
    let tokens = entity::oauth_token::Entity::find()
        .find_also_related(entity::social_account::Entity)
        .all(&db)
        .await
        .expect("tokens load with their platform");
    assert_eq!(tokens.len(), 2);
    for (token, account) in tokens {
        let account = account.expect("account");
        assert_eq!(
            token.platform, account.platform,
            "{}",
            account.provider_account_id
        );
    }
    Migrator::down(&db, Some(1)).await.expect("and back down");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_platform_migration_fills_in_existing_rows_sqlite() {
    the_token_platform_migration_fills_in_existing_rows(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_platform_migration_fills_in_existing_rows_postgres() {
    the_token_platform_migration_fills_in_existing_rows(Backend::Postgres).await
}

/// Every TCP connection of this process to PostgreSQL has Nagle's algorithm off
/// (`TCP_NODELAY`). With it on (sqlx 0.9.0), a statement larger than one TCP segment (a
/// store batch of refreshed tokens) waited about 40 ms for the server's delayed ACK,
/// which capped the refresh rate at half the provider limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_connections_send_without_delay() {
    let app = TestApp::spawn(Backend::Postgres).await;
    // Use the server's pool and the test's own connection, so both have sockets open.
    app.gql_ok(
        &app.admin_key,
        "{ accounts(first: 1) { totalCount } }",
        serde_json::json!({}),
    )
    .await;
    entity::social_account::Entity::find()
        .count(&app.db)
        .await
        .expect("query");
    app.db
        .execute_unprepared(&format!("SELECT '{}'", "x".repeat(200_000)))
        .await
        .expect("a statement larger than one segment");

    let port = url::Url::parse(&postgres_admin_url())
        .expect("PostgreSQL URL")
        .port()
        .unwrap_or(5432);
    let mut checked = 0;
    for entry in std::fs::read_dir("/proc/self/fd").expect("/proc/self/fd") {
        let Some(fd) = entry
            .ok()
            .and_then(|e| e.file_name().to_str()?.parse::<RawFd>().ok())
        else {
            continue;
        };
        // SAFETY: only borrowed for the two getsockopt calls below, while the
        // connections it may belong to are kept open by `app`.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let socket = socket2::SockRef::from(&fd);
        let Some(peer) = socket.peer_addr().ok().and_then(|a| a.as_socket()) else {
            continue;
        };
        if peer.port() != port {
            continue;
        }
        assert!(
            socket.tcp_nodelay().expect("TCP_NODELAY readable"),
            "a connection to PostgreSQL at {peer} has Nagle's algorithm on"
        );
        checked += 1;
    }
    assert!(
        checked >= 2,
        "found {checked} PostgreSQL connections to check"
    );
}
