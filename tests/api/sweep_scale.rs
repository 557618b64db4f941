//! The sweep at table size: 70,000 deactivated accounts whose tokens expired long ago do
//! not stop it (no query binds an id list), and a due account is still refreshed within
//! one schedule period.

use entity::refresh_attempt;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};

use crate::helpers::{Backend, TestApp};

const DEAD: i64 = 70_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seventy_thousand_dead_accounts_do_not_stop_the_sweep() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let tenant = app.tenant_id("default").await;
    app.db
        .execute_unprepared(&format!(
            "INSERT INTO social_accounts (tenant_id, platform, provider_account_id, username, \
             status, deactivated_at, connected_at, created_at, updated_at) \
             SELECT {tenant}, 'tiktok', 'dead-' || g, 'dead' || g, 'DEACTIVATED', \
             now() - interval '100 days', now() - interval '400 days', now(), now() \
             FROM generate_series(1, {DEAD}) g"
        ))
        .await
        .expect("dead accounts");
    app.db
        .execute_unprepared(&format!(
            "INSERT INTO oauth_tokens (account_id, tenant_id, platform, key_id, \
             access_token_enc, expires_at, refresh_expires_at, issued_at, scopes, version, \
             failure_count, created_at, updated_at) \
             SELECT id, {tenant}, platform, 'seed', 'x', now() - interval '100 days', \
             now() - interval '10 days', now() - interval '101 days', '', 0, 0, now(), now() \
             FROM social_accounts WHERE status = 'DEACTIVATED'"
        ))
        .await
        .expect("dead tokens");
    let due = app.seed_connected("default", "due", 1).await[0];
    app.expire_in(&[due], 30).await;

    let report = jobs::sweep_expiring::run(&app.jobs).await.expect("sweep");
    assert_eq!(report.queued, 1, "only the due account");
    assert_eq!(
        report.expired, 0,
        "deactivated accounts are not expired again"
    );
    // The next sweep does not look at the dead rows again (they are parked).
    let again = jobs::sweep_expiring::run(&app.jobs).await.expect("sweep");
    assert_eq!(again.queued, 0);

    let _workers = app.start_workers();
    app.wait_for(60, "the due account refreshed", || async {
        refresh_attempt::Entity::find()
            .filter(refresh_attempt::Column::AccountId.eq(due))
            .filter(refresh_attempt::Column::Outcome.eq("SUCCEEDED"))
            .one(&app.db)
            .await
            .expect("attempts")
            .is_some()
    })
    .await;
}
