//! The database connections themselves: PostgreSQL over TCP sends each statement at once.

use std::os::fd::{BorrowedFd, RawFd};

use sea_orm::{ConnectionTrait, EntityTrait, PaginatorTrait};

use crate::helpers::{Backend, TestApp, postgres_admin_url};

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
