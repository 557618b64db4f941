//! The database fails while a platform has already rotated an account's tokens: the
//! rotated tokens are kept (retried, journaled) until stored, so the grant survives — a
//! read-only failover, a database refusing connections, and a SIGKILL while the results
//! wait in the journal. Real PostgreSQL, real sandbox, real worker processes.

use std::{path::Path, time::Duration};

use entity::oauth_token;
use sandbox::ConfigPatch;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, sea_query::Expr};
use serde_json::{Value, json};

use crate::{
    helpers::{Backend, TestApp, global_id, postgres_admin_url},
    workers::{production_app, start_worker},
};

const REFRESH: &str = "mutation($id: ID!) { refreshAccountToken(accountId: $id) { refreshed account { status } error { code } } }";

/// The name of a test app's PostgreSQL database.
fn database_name(app: &TestApp) -> String {
    app.config
        .database
        .url
        .expose()
        .rsplit('/')
        .next()
        .expect("database name")
        .to_owned()
}

/// Runs statements on the PostgreSQL server (not the test database).
async fn admin(statements: &[String]) {
    let admin = sea_orm::Database::connect(postgres_admin_url())
        .await
        .expect("admin connection");
    for sql in statements {
        admin.execute_unprepared(sql).await.expect(sql);
    }
}

fn terminate_sessions(db: &str) -> String {
    format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = '{db}' AND pid <> pg_backend_pid()"
    )
}

/// What a failover to a replica looks like: every write fails, every session is new.
async fn read_only(db: &str, on: bool) {
    let set = if on {
        format!("ALTER DATABASE {db} SET default_transaction_read_only = on")
    } else {
        format!("ALTER DATABASE {db} RESET default_transaction_read_only")
    };
    admin(&[set, terminate_sessions(db)]).await;
}

/// The database refuses every connection (down, or unreachable).
async fn refuse_connections(db: &str, refuse: bool) {
    let mut statements = vec![format!(
        "ALTER DATABASE {db} WITH ALLOW_CONNECTIONS {}",
        !refuse
    )];
    if refuse {
        statements.push(terminate_sessions(db));
    }
    admin(&statements).await;
}

async fn token(app: &TestApp, account_id: i64) -> oauth_token::Model {
    oauth_token::Entity::find()
        .filter(oauth_token::Column::AccountId.eq(account_id))
        .one(&app.db)
        .await
        .expect("query")
        .expect("token row")
}

/// Whether a journal file in `dir` holds something.
fn journaled(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.metadata().is_ok_and(|m| m.len() > 0))
    })
}

/// Polls without the test app's database (which may be down).
async fn wait_until(secs: u64, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while !check() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {secs} s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Starts `refreshAccountToken` in the background.
fn refresh_in_background(app: &TestApp, account_id: i64) -> tokio::task::JoinHandle<Value> {
    let request = app
        .client
        .post(app.url("/graphql"))
        .bearer_auth(&app.admin_key)
        .json(&json!({ "query": REFRESH, "variables": { "id": global_id("SocialAccount", account_id) } }));
    tokio::spawn(async move {
        request
            .send()
            .await
            .expect("request sent")
            .json::<Value>()
            .await
            .expect("json")
    })
}

/// Makes the next refresh a real one (past the minimum interval between refreshes).
async fn allow_next_refresh(app: &TestApp, account_id: i64) {
    oauth_token::Entity::update_many()
        .col_expr(
            oauth_token::Column::LastRefreshedAt,
            Expr::value(Some(chrono::Utc::now() - chrono::Duration::hours(1))),
        )
        .filter(oauth_token::Column::AccountId.eq(account_id))
        .exec(&app.db)
        .await
        .expect("update");
}

/// The grant works after the outage: a real refresh succeeds without presenting a
/// rotated-out refresh token.
async fn assert_grant_survived(app: &TestApp, account_id: i64) {
    allow_next_refresh(app, account_id).await;
    let calls = app.sandbox.stats().tiktok.refresh_calls;
    let data = app
        .gql_ok(
            &app.admin_key,
            REFRESH,
            json!({ "id": global_id("SocialAccount", account_id) }),
        )
        .await;
    assert_eq!(data["refreshAccountToken"]["refreshed"], true, "{data}");
    assert_eq!(data["refreshAccountToken"]["account"]["status"], "ACTIVE");
    assert_eq!(app.sandbox.stats().tiktok.refresh_calls, calls + 1);
    assert_eq!(
        app.sandbox.stats().tiktok.reused_refresh_tokens,
        0,
        "no rotated-out refresh token was presented"
    );
}

/// How the database fails.
#[derive(Clone, Copy)]
enum Outage {
    /// A failover to a replica: reads work, every write fails.
    ReadOnly,
    /// Down or unreachable: every connection is refused.
    Refusing,
}

impl Outage {
    async fn begin(self, db: &str) {
        match self {
            Outage::ReadOnly => read_only(db, true).await,
            Outage::Refusing => refuse_connections(db, true).await,
        }
    }

    async fn end(self, db: &str) {
        match self {
            // The promoted primary: every session is new.
            Outage::ReadOnly => read_only(db, false).await,
            Outage::Refusing => refuse_connections(db, false).await,
        }
    }
}

/// A refresh is at the platform when the database fails; the platform rotates the
/// tokens, storing them fails and they go to the journal; the database comes back a few
/// seconds later and the request completes with the new tokens stored.
async fn outage_during_refresh(outage: Outage) {
    // The platform takes 3 s to answer: time to fail the database while it works.
    let app = TestApp::spawn_with(Backend::Postgres, &["--provider-timeout", "10s"]).await;
    let db = database_name(&app);
    let id = app.seed_connected("default", "failover", 1).await[0];
    app.sandbox.update_config(ConfigPatch {
        latency_ms: Some(3_000),
        ..Default::default()
    });
    let calls = app.sandbox.stats().tiktok.refresh_calls;
    let request = refresh_in_background(&app, id);
    app.wait_for(60, "the refresh lease taken", || async {
        token(&app, id).await.refresh_lease_owner.is_some()
    })
    .await;
    outage.begin(&db).await;
    assert_eq!(
        app.sandbox.stats().tiktok.refresh_calls,
        calls,
        "the database failed before the platform answered"
    );
    let journal = app.journal_dir();
    wait_until(60, "the rotated tokens journaled", || journaled(&journal)).await;
    assert_eq!(app.sandbox.stats().tiktok.refresh_calls, calls + 1);
    app.sandbox.update_config(ConfigPatch {
        latency_ms: Some(0),
        ..Default::default()
    });
    // A real failover takes 10-30 s; a few seconds of failing stores show the same shape.
    tokio::time::sleep(Duration::from_secs(3)).await;
    outage.end(&db).await;
    let body = tokio::time::timeout(Duration::from_secs(30), request)
        .await
        .expect("the request completes once the database is back")
        .expect("task");
    assert!(body.get("errors").is_none(), "{body}");
    assert_eq!(
        body["data"]["refreshAccountToken"]["refreshed"], true,
        "{body}"
    );
    assert_eq!(
        body["data"]["refreshAccountToken"]["account"]["status"],
        "ACTIVE"
    );
    let stored = token(&app, id).await;
    assert_eq!(stored.version, 1, "the rotated tokens were stored");
    assert!(stored.refresh_lease_owner.is_none(), "lease released");
    assert!(!journaled(&journal), "the journal is emptied once stored");
    assert_grant_survived(&app, id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_failover_mid_refresh_keeps_the_rotated_tokens() {
    outage_during_refresh(Outage::ReadOnly).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_refusing_connections_mid_refresh_keeps_the_rotated_tokens() {
    outage_during_refresh(Outage::Refusing).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_results_wait_in_the_journal_then_restart_keeps_the_grant() {
    let (app, mut env) = production_app().await;
    let db = database_name(&app);
    env.retain(|(k, _)| k != "TOKENWARDEN_PROVIDER_TIMEOUT");
    env.push(("TOKENWARDEN_PROVIDER_TIMEOUT".into(), "10s".into()));
    let journal = tempfile::tempdir().expect("journal dir");
    env.push((
        "TOKENWARDEN_REFRESH_JOURNAL_DIR".into(),
        journal.path().display().to_string(),
    ));
    let id = app.seed_connected("default", "journal", 1).await[0];
    app.sandbox.update_config(ConfigPatch {
        latency_ms: Some(3_000),
        ..Default::default()
    });
    app.expire_in(&[id], 30).await;
    let worker = start_worker(&env);
    app.wait_for(60, "the worker's sweep to start the refresh", || async {
        token(&app, id).await.refresh_lease_owner.is_some()
    })
    .await;
    Outage::Refusing.begin(&db).await;
    wait_until(60, "the rotated tokens journaled", || {
        journaled(journal.path())
    })
    .await;
    let status = std::process::Command::new("kill")
        .args(["-KILL", &worker.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    drop(worker);
    Outage::Refusing.end(&db).await;
    app.sandbox.update_config(ConfigPatch {
        latency_ms: Some(0),
        ..Default::default()
    });
    assert_eq!(
        token(&app, id).await.version,
        0,
        "nothing stored before the kill"
    );

    // The next start stores the journaled tokens before it refreshes anything.
    let worker = start_worker(&env);
    let stored = token(&app, id).await;
    assert_eq!(stored.version, 1, "replayed during startup");
    assert!(!journaled(journal.path()), "the replayed journal is gone");
    let account = entity::social_account::Entity::find_by_id(id)
        .one(&app.db)
        .await
        .expect("query")
        .expect("account");
    assert_eq!(account.status, service::domain::AccountStatus::Active);
    drop(worker);
    assert_grant_survived(&app, id).await;
}
