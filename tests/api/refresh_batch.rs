//! Group commit of the refresh path (`service::tokens::batch`): concurrent refreshes share
//! lease statements and store transactions, and every row still keeps its own
//! compare-and-swap, status rule, audit entry and event.

use chrono::Utc;
use entity::{audit_log, oauth_token, social_account, token_event};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, sea_query::Expr};
use secrecy::SecretString;
use service::{
    Actor,
    domain::AccountStatus,
    providers::TokenSet,
    tokens::{
        self,
        batch::{self, LeaseRequest, StoreRequest},
        refresh::{RefreshKind, RefreshOptions},
    },
};

use crate::{helpers::TestApp, on_both_backends};

on_both_backends!(
    concurrent_refreshes_are_stored_once_each,
    a_batch_keeps_each_rows_compare_and_swap_and_status_rule,
    a_batch_of_leases_takes_each_lease_once,
    a_batch_of_loads_answers_each_request_in_order,
);

async fn token(app: &TestApp, account_id: i64) -> oauth_token::Model {
    oauth_token::Entity::find()
        .filter(oauth_token::Column::AccountId.eq(account_id))
        .one(&app.db)
        .await
        .expect("query")
        .expect("token row")
}

async fn account(app: &TestApp, account_id: i64) -> social_account::Model {
    social_account::Entity::find_by_id(account_id)
        .one(&app.db)
        .await
        .expect("query")
        .expect("account row")
}

/// 30 accounts refreshed at once, with a provider slow enough that their leases and their
/// stores overlap: each account is refreshed once, stored at the next version, audited and
/// announced once, and no refresh token is presented twice.
async fn concurrent_refreshes_are_stored_once_each(app: TestApp) {
    let ids = app.seed_connected("default", "batch", 30).await;
    app.expire_in(&ids, 30).await;
    let before: Vec<i64> = {
        let mut v = Vec::new();
        for id in &ids {
            v.push(token(&app, *id).await.version);
        }
        v
    };
    app.sandbox.update_config(sandbox::ConfigPatch {
        latency_ms: Some(200),
        ..Default::default()
    });
    let tenant_id = app.tenant_id("default").await;
    let refreshes: Vec<_> = ids
        .iter()
        .map(|&id| {
            let db = app.jobs.db.clone();
            let engine = app.jobs.engine.clone();
            tokio::spawn(async move {
                let options = RefreshOptions::in_job(Actor::system(Some(tenant_id), "test"));
                tokens::refresh::refresh(&db, &engine, tenant_id, id, options).await
            })
        })
        .collect();
    for refresh in refreshes {
        let report = refresh.await.expect("task").expect("refresh");
        assert_eq!(report.kind, RefreshKind::Refreshed, "{:?}", report.error);
        assert_eq!(report.account.status, AccountStatus::Active);
    }
    for (id, version) in ids.iter().zip(before) {
        let row = token(&app, *id).await;
        assert_eq!(row.version, version + 1, "account {id} stored once");
        assert!(row.refresh_lease_owner.is_none(), "lease released");
        assert!(row.last_refreshed_at.is_some());
        let refreshed = token_event::Entity::find()
            .filter(token_event::Column::AccountId.eq(*id))
            .filter(token_event::Column::Kind.eq("REFRESHED"))
            .all(&app.db)
            .await
            .expect("events");
        assert_eq!(refreshed.len(), 1, "one REFRESHED event for {id}");
        assert!(
            refreshed[0].seq.is_some(),
            "the event has its commit position"
        );
        let audited = audit_log::Entity::find()
            .filter(audit_log::Column::Action.eq("TOKEN_REFRESHED"))
            .filter(audit_log::Column::TargetId.eq(id.to_string()))
            .count(&app.db)
            .await
            .expect("audit");
        assert_eq!(audited, 1, "one audit entry for {id}");
    }
    let stats = app.sandbox.stats().tiktok;
    assert_eq!(stats.reused_refresh_tokens, 0);
}

fn sealed_for(
    app: &TestApp,
    account: &social_account::Model,
    version: i64,
    access: &str,
) -> tokens::journal::PendingTokens {
    let now = Utc::now();
    let set = TokenSet {
        access_token: SecretString::from(access.to_owned()),
        refresh_token: Some(SecretString::from(format!("{access}-refresh"))),
        expires_at: now + chrono::Duration::hours(24),
        refresh_expires_at: Some(now + chrono::Duration::days(365)),
        scopes: vec!["user.info.basic".into()],
        provider_account_id: account.provider_account_id.clone(),
        issued_at: now,
    };
    tokens::seal_refreshed(&app.jobs.engine.vault(), account, version, &set).expect("sealed")
}

/// One batch with a current row, a row that changed under its refresh (stale version), an
/// account deactivated meanwhile, and a second result of the first account: the current
/// row is stored and served, the stale one is left alone, the deactivated account's tokens
/// are stored but it stays DEACTIVATED without an event, and the duplicate is refused (its
/// caller retries alone).
async fn a_batch_keeps_each_rows_compare_and_swap_and_status_rule(app: TestApp) {
    let ids = app.seed_connected("default", "cas", 3).await;
    let (current, stale, deactivated) = (ids[0], ids[1], ids[2]);
    social_account::Entity::update_many()
        .col_expr(
            social_account::Column::Status,
            Expr::value(AccountStatus::Deactivated),
        )
        .col_expr(
            social_account::Column::DeactivatedAt,
            Expr::value(Some(Utc::now())),
        )
        .filter(social_account::Column::Id.eq(deactivated))
        .exec(&app.db)
        .await
        .expect("deactivated");
    let actor = Actor::system(Some(account(&app, current).await.tenant_id), "test");
    let mut requests = Vec::new();
    for (id, access) in [
        (current, "a1"),
        (stale, "b1"),
        (deactivated, "c1"),
        (current, "a2"),
    ] {
        let acc = account(&app, id).await;
        let mut version = token(&app, id).await.version;
        if id == stale {
            version -= 1;
        }
        requests.push(StoreRequest {
            sealed: sealed_for(&app, &acc, version, access),
            actor: actor.clone(),
        });
    }
    let versions: Vec<i64> = {
        let mut v = Vec::new();
        for id in [current, stale, deactivated] {
            v.push(token(&app, id).await.version);
        }
        v
    };
    let answers =
        batch::store_refreshed_many(&app.jobs.db, &app.jobs.engine.events, &requests).await;
    assert_eq!(answers.len(), 4);
    let served = answers[0].clone().expect("stored").expect("current row");
    assert_eq!(served.status, AccountStatus::Active);
    assert!(
        answers[1].clone().expect("no error").is_none(),
        "stale: CAS"
    );
    let kept = answers[2]
        .clone()
        .expect("stored")
        .expect("deactivated row");
    assert_eq!(
        kept.status,
        AccountStatus::Deactivated,
        "a deactivation wins"
    );
    assert!(
        answers[3].is_err(),
        "a second result of one account is refused"
    );

    assert_eq!(token(&app, current).await.version, versions[0] + 1);
    assert_eq!(token(&app, stale).await.version, versions[1], "left alone");
    assert_eq!(token(&app, deactivated).await.version, versions[2] + 1);
    // The stored ciphertext decrypts to the first result, not the duplicate.
    let row = token(&app, current).await;
    let access = tokens::open(
        &app.jobs.engine.vault(),
        &row,
        tokens::vault::TokenKind::Access,
    )
    .expect("decrypts");
    assert_eq!(secrecy::ExposeSecret::expose_secret(&access), "a1");

    let events = |id: i64| {
        token_event::Entity::find()
            .filter(token_event::Column::AccountId.eq(id))
            .filter(token_event::Column::Kind.eq("REFRESHED"))
            .count(&app.db)
    };
    assert_eq!(events(current).await.expect("events"), 1);
    assert_eq!(events(stale).await.expect("events"), 0);
    assert_eq!(events(deactivated).await.expect("events"), 0, "not served");
    let audits = audit_log::Entity::find()
        .filter(audit_log::Column::Action.eq("TOKEN_REFRESHED"))
        .all(&app.db)
        .await
        .expect("audit");
    let of = |id: i64| {
        audits
            .iter()
            .filter(|a| a.target_id.as_deref() == Some(id.to_string().as_str()))
            .map(|a| a.details["served"].clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(of(current), vec![serde_json::json!(true)]);
    assert!(of(stale).is_empty());
    assert_eq!(of(deactivated), vec![serde_json::json!(false)]);
}

/// One lease statement for several tokens: a free lease at the current version is taken,
/// a stale version or a lease held by someone else is not, and an account asked for twice
/// gets it once.
async fn a_batch_of_leases_takes_each_lease_once(app: TestApp) {
    let ids = app.seed_connected("default", "lease", 3).await;
    let (free, stale, held) = (ids[0], ids[1], ids[2]);
    let lease = std::time::Duration::from_secs(60);
    assert_eq!(
        batch::take_leases(
            &app.jobs.db,
            &[LeaseRequest {
                account_id: held,
                version: token(&app, held).await.version,
            }],
            "someone-else",
            lease,
        )
        .await
        .expect("statement"),
        vec![true]
    );
    let requests = [
        LeaseRequest {
            account_id: free,
            version: token(&app, free).await.version,
        },
        LeaseRequest {
            account_id: stale,
            version: token(&app, stale).await.version - 1,
        },
        LeaseRequest {
            account_id: held,
            version: token(&app, held).await.version,
        },
        LeaseRequest {
            account_id: free,
            version: token(&app, free).await.version,
        },
    ];
    let taken = batch::take_leases(&app.jobs.db, &requests, "me", lease)
        .await
        .expect("statement");
    assert_eq!(taken, vec![true, false, false, false]);
    assert_eq!(
        token(&app, free).await.refresh_lease_owner.as_deref(),
        Some("me")
    );
    assert_eq!(token(&app, stale).await.refresh_lease_owner, None);
    assert_eq!(
        token(&app, held).await.refresh_lease_owner.as_deref(),
        Some("someone-else")
    );
}

/// One query loads several accounts with their tokens: each request gets its own answer in
/// order, an account of another tenant, one without tokens and a missing id are not found,
/// and an account asked for twice is answered twice. Concurrent loads through the engine
/// each get their own account.
async fn a_batch_of_loads_answers_each_request_in_order(app: TestApp) {
    use entity::enums::{AccountStatus as Stored, Platform};

    let default = app.tenant_id("default").await;
    let other = app.tenant_id("other").await;
    let first = app
        .seed_account(
            "default",
            Platform::TikTok,
            "first",
            Stored::Active,
            Some(5),
        )
        .await;
    let second = app
        .seed_account(
            "default",
            Platform::Instagram,
            "second",
            Stored::Active,
            Some(9),
        )
        .await;
    let tokenless = app
        .seed_account(
            "default",
            Platform::TikTok,
            "tokenless",
            Stored::Active,
            None,
        )
        .await;
    let theirs = app
        .seed_account("other", Platform::TikTok, "theirs", Stored::Active, Some(5))
        .await;
    let requests = [
        (default, second),
        (default, theirs),
        (default, first),
        (default, tokenless),
        (default, i64::MAX),
        (other, theirs),
        (default, second),
    ];
    let loaded = batch::load_many(&app.jobs.db, &requests)
        .await
        .expect("query");
    let ids: Vec<Option<(i64, i64)>> = loaded
        .iter()
        .map(|found| found.as_ref().map(|(a, t)| (a.id, t.account_id)))
        .collect();
    assert_eq!(
        ids,
        vec![
            Some((second, second)),
            None,
            Some((first, first)),
            None,
            None,
            Some((theirs, theirs)),
            Some((second, second)),
        ]
    );
    assert_eq!(
        batch::load_many(&app.jobs.db, &[]).await.expect("empty"),
        Vec::new()
    );

    let loads: Vec<_> = [first, second, theirs, tokenless]
        .into_iter()
        .cycle()
        .take(40)
        .map(|id| {
            let db = app.jobs.db.clone();
            let engine = app.jobs.engine.clone();
            tokio::spawn(async move {
                let found = batch::load(&engine, &db, default, id).await.expect("load");
                (id, found.map(|(account, _)| account.id))
            })
        })
        .collect();
    for load in loads {
        let (asked, found) = load.await.expect("task");
        let expected = (asked == first || asked == second).then_some(asked);
        assert_eq!(found, expected, "load of {asked}");
    }
}
