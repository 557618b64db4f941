//! Background jobs: the sweep refreshes inside the window, once; transient storms retry
//! without asking users to reconnect; dead grants stop at once; cleanup; key rotation;
//! token health and bulk refresh. In all three deployment modes.

use chrono::Utc;
use entity::{oauth_token, refresh_attempt, social_account};
use jobs::refresh_token::{Ran, RefreshToken};
use sandbox::{FaultKind, Platform as SandboxPlatform};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set, sea_query::Expr};
use serde_json::{Value, json};
use service::{
    domain::{AccountStatus, Platform},
    events::EventKind,
    tokens::{attempts::Outcome, queue::Trigger},
};

use crate::{
    helpers::{TestApp, decode_id, error_code, global_id},
    in_every_mode, on_both_backends,
};

in_every_mode!(
    scheduled_sweep_refreshes_due_tokens_once,
    transient_storm_retries_with_backoff_and_never_requires_reconnect,
    revoked_grant_fails_after_one_attempt,
    bulk_refresh_and_token_health,
    rotation_rewraps_everything_and_the_old_key_can_go,
    cleanup_purges_exactly_the_accounts_past_retention,
    instagram_tokens_that_expire_become_expired_not_swept,
    health_check_feeds_system_health_and_prune_keeps_recent_records,
    error_rate_alerts_and_key_rotation_due_are_raised_once,
    tiktok_refresh_tokens_near_their_end_raise_expiring_once,
    many_refreshes_are_queued_in_batches,
);

on_both_backends!(
    a_deactivation_during_a_refresh_wins,
    a_reconnect_during_the_expiry_pass_wins,
    a_refresh_job_cut_short_still_finishes,
);

async fn token(app: &TestApp, account_id: i64) -> oauth_token::Model {
    oauth_token::Entity::find()
        .filter(oauth_token::Column::AccountId.eq(account_id))
        .one(&app.db)
        .await
        .expect("query")
        .expect("token row")
}

async fn attempts(app: &TestApp, account_id: i64) -> Vec<refresh_attempt::Model> {
    refresh_attempt::Entity::find()
        .filter(refresh_attempt::Column::AccountId.eq(account_id))
        .all(&app.db)
        .await
        .expect("attempts")
}

async fn status(app: &TestApp, account_id: i64) -> AccountStatus {
    social_account::Entity::find_by_id(account_id)
        .one(&app.db)
        .await
        .expect("query")
        .expect("account")
        .status
}

/// A sweep job for an account, with the tenant id read from the account's own row.
async fn job(app: &TestApp, account_id: i64) -> RefreshToken {
    let tenant_id = social_account::Entity::find_by_id(account_id)
        .one(&app.db)
        .await
        .expect("query")
        .expect("account")
        .tenant_id;
    RefreshToken {
        tenant_id,
        account_id,
        trigger: Trigger::Sweep,
    }
}

async fn scheduled_sweep_refreshes_due_tokens_once(app: TestApp) {
    let ids = app.seed_connected("default", "sweep", 3).await;
    app.expire_in(&ids[..2], 30).await;
    let before = app.sandbox.stats().tiktok.refresh_calls;
    // Claims: a second sweep right after the first queues nothing.
    let first = jobs::sweep_expiring::run(&app.jobs).await.expect("sweep");
    assert_eq!(first.queued, 2);
    let second = jobs::sweep_expiring::run(&app.jobs).await.expect("sweep");
    assert_eq!(second.queued, 0, "claimed accounts are queued once");

    let _workers = app.start_workers();
    app.wait_for(30, "both due accounts refreshed", || async {
        let mut done = 0;
        for id in &ids[..2] {
            if attempts(&app, *id)
                .await
                .iter()
                .any(|a| a.outcome == Outcome::Succeeded)
            {
                done += 1;
            }
        }
        done == 2
    })
    .await;
    // A later sweep finds nothing due: nothing is refreshed twice.
    let later = jobs::sweep_expiring::run(&app.jobs).await.expect("sweep");
    assert_eq!(later.queued, 0, "refreshed tokens are not due again");
    assert_eq!(
        app.sandbox.stats().tiktok.refresh_calls - before,
        2,
        "each due token once"
    );
    assert_eq!(app.sandbox.stats().tiktok.reused_refresh_tokens, 0);
    for id in &ids[..2] {
        let t = token(&app, *id).await;
        assert!(
            t.expires_at > Utc::now() + chrono::Duration::minutes(110),
            "a fresh 2 h token (TikTok's current lifetime)"
        );
        assert!(t.sweep_claimed_until.is_none(), "claim released");
    }
    assert!(
        attempts(&app, ids[2]).await.is_empty(),
        "the token outside its window is untouched"
    );

    // The history is visible through the API.
    let data = app
        .gql_ok(
            &app.admin_key,
            "query($id: ID!) { account(id: $id) { refreshHistory { edges { node { attempt trigger triggeredBy outcome errorCode latencyMs } } } } }",
            json!({ "id": global_id("SocialAccount", ids[0]) }),
        )
        .await;
    let history = &data["account"]["refreshHistory"]["edges"];
    assert!(history.as_array().is_some_and(|h| !h.is_empty()));
    assert_eq!(history[0]["node"]["outcome"], "SUCCEEDED");
    assert_eq!(history[0]["node"]["attempt"], 1);
    assert_eq!(history[0]["node"]["triggeredBy"], "SWEEP");
    // The deprecated string field still answers, with the stored name.
    assert_eq!(history[0]["node"]["trigger"], "sweep");
    let health = app
        .gql_ok(
            &app.admin_key,
            "{ systemHealth { lastSweepAt } }",
            json!({}),
        )
        .await;
    assert!(health["systemHealth"]["lastSweepAt"].is_string());
}

async fn transient_storm_retries_with_backoff_and_never_requires_reconnect(app: TestApp) {
    app.sandbox.update_config(sandbox::ConfigPatch {
        timeout_fault_ms: Some(3_000),
        retry_after_s: Some(600),
        ..Default::default()
    });
    let ids = app.seed_connected("default", "storm", 1).await;
    let id = ids[0];
    app.expire_in(&ids, 30).await;
    for (n, kind) in [
        FaultKind::RateLimited,
        FaultKind::ServerError,
        FaultKind::Timeout,
    ]
    .into_iter()
    .enumerate()
    {
        app.sandbox.set_faults(SandboxPlatform::Tiktok, kind, 1);
        let queued = app.jobs.queue.stats().await.expect("queue depth").pending;
        let ran = jobs::refresh_token::run(&job(&app, id).await, &app.jobs)
            .await
            .expect("job");
        assert_eq!(ran, Ran::Attempted(Outcome::FailedTransient), "{kind:?}");
        assert_eq!(
            app.jobs.queue.stats().await.expect("queue depth").pending,
            queued + 1,
            "the retry is queued (delayed) through the queue port: {kind:?}"
        );
        assert_eq!(
            status(&app, id).await,
            AccountStatus::RefreshFailing,
            "{kind:?}"
        );
        let t = token(&app, id).await;
        assert_eq!(t.failure_count, n as i32 + 1);
        let wait = t.next_refresh_at.expect("retry scheduled") - Utc::now();
        if kind == FaultKind::RateLimited {
            assert!(
                wait >= chrono::Duration::seconds(590),
                "Retry-After honoured: {wait}"
            );
        } else {
            assert!(wait >= chrono::Duration::seconds(20), "backoff: {wait}");
        }
        // Not due again until the retry time: the sweep leaves it alone.
        let swept = jobs::sweep_expiring::run(&app.jobs).await.expect("sweep");
        assert_eq!(swept.queued, 0);
        // Time passes.
        oauth_token::Entity::update_many()
            .col_expr(
                oauth_token::Column::NextRefreshAt,
                Expr::value(Some(Utc::now())),
            )
            .filter(oauth_token::Column::AccountId.eq(id))
            .exec(&app.db)
            .await
            .expect("advance");
    }
    let ran = jobs::refresh_token::run(&job(&app, id).await, &app.jobs)
        .await
        .expect("job");
    assert_eq!(ran, Ran::Attempted(Outcome::Succeeded));
    assert_eq!(status(&app, id).await, AccountStatus::Active);
    let t = token(&app, id).await;
    assert_eq!(t.failure_count, 0);
    assert!(t.next_refresh_at.is_none());
    let history: Vec<(i32, Outcome)> = attempts(&app, id)
        .await
        .into_iter()
        .map(|a| (a.attempt, a.outcome))
        .collect();
    assert_eq!(
        history,
        [
            (1, Outcome::FailedTransient),
            (2, Outcome::FailedTransient),
            (3, Outcome::FailedTransient),
            (4, Outcome::Succeeded),
        ]
    );
    assert_eq!(app.sandbox.stats().tiktok.reused_refresh_tokens, 0);
}

async fn revoked_grant_fails_after_one_attempt(app: TestApp) {
    let ids = app.seed_connected("default", "revoked", 1).await;
    let id = ids[0];
    app.expire_in(&ids, 30).await;
    assert!(app.sandbox.revoke(
        SandboxPlatform::Tiktok,
        &sandbox::tiktok_open_id("revoked0")
    ));
    let calls = app.sandbox.stats().tiktok.refresh_calls;
    let ran = jobs::refresh_token::run(&job(&app, id).await, &app.jobs)
        .await
        .expect("job");
    assert_eq!(ran, Ran::Attempted(Outcome::FailedPermanent));
    assert_eq!(status(&app, id).await, AccountStatus::ReconnectRequired);
    assert!(token(&app, id).await.next_refresh_at.is_none(), "no retry");
    let swept = jobs::sweep_expiring::run(&app.jobs).await.expect("sweep");
    assert_eq!(swept.queued, 0, "a dead grant is not swept again");
    let ran = jobs::refresh_token::run(&job(&app, id).await, &app.jobs)
        .await
        .expect("job");
    assert_eq!(ran, Ran::Attempted(Outcome::Skipped));
    assert_eq!(
        app.sandbox.stats().tiktok.refresh_calls,
        calls + 1,
        "one attempt only"
    );
}

async fn bulk_refresh_and_token_health(app: TestApp) {
    let ids = app.seed_connected("default", "bulk", 3).await;
    app.expire_in(&ids[..1], 10).await;
    let health = app
        .gql_ok(
            &app.admin_key,
            "{ tokenHealth { byStatus { platform status count } expiringNext24h failuresLast24h nextSweepAt queue { pending running failed } } }",
            json!({}),
        )
        .await;
    let summary = &health["tokenHealth"];
    assert_eq!(
        summary["byStatus"],
        json!([{ "platform": "TIKTOK", "status": "ACTIVE", "count": 3 }])
    );
    assert_eq!(
        summary["expiringNext24h"], 3,
        "24 h TikTok tokens all expire within a day"
    );
    assert_eq!(summary["failuresLast24h"], 0);
    assert!(summary["nextSweepAt"].is_string());

    let viewer = app.create_key(&app.admin_key, "v", "VIEWER").await;
    let body = app
        .gql(
            Some(&viewer),
            "mutation { refreshAccounts(filter: {platforms: [TIKTOK]}) }",
            json!({}),
        )
        .await;
    assert_eq!(crate::helpers::error_code(&body), Some("FORBIDDEN"));
    let queued = app
        .gql_ok(
            &app.admin_key,
            "mutation { refreshAccounts(filter: {platforms: [TIKTOK]}) }",
            json!({}),
        )
        .await;
    assert_eq!(queued["refreshAccounts"], 3);
    let again = app
        .gql_ok(&app.admin_key, "mutation { refreshAccounts }", json!({}))
        .await;
    assert_eq!(
        again["refreshAccounts"], 0,
        "queued accounts are not queued again"
    );
    let depth = app
        .gql_ok(
            &app.admin_key,
            "{ tokenHealth { queue { pending } } }",
            json!({}),
        )
        .await;
    assert_eq!(depth["tokenHealth"]["queue"]["pending"], 3);

    let before = app.sandbox.stats().tiktok.refresh_calls;
    let _workers = app.start_workers();
    app.wait_for(30, "the bulk refresh", || async {
        app.sandbox.stats().tiktok.refresh_calls - before == 3
    })
    .await;
    // Another tenant's bulk refresh touches nothing of ours.
    let acme = app.key_for_tenant("acme", "ADMIN").await;
    let theirs = app
        .gql_ok(&acme, "mutation { refreshAccounts }", json!({}))
        .await;
    assert_eq!(theirs["refreshAccounts"], 0);
}

async fn rotation_rewraps_everything_and_the_old_key_can_go(app: TestApp) {
    let operator = app.key_for_tenant("default", "OPERATOR").await;
    let ids = app.seed_connected("default", "rot", 3).await;
    // A webhook secret is encrypted with the same keys.
    app.gql_ok(
        &app.admin_key,
        "mutation { registerWebhook(input: {url: \"http://127.0.0.1:9/hook\"}) { secret } }",
        json!({}),
    )
    .await;
    let old = app.jobs.engine.vault().active_key_id().to_owned();
    let viewer = app.create_key(&app.admin_key, "v", "VIEWER").await;
    let body = app
        .gql(
            Some(&viewer),
            "mutation { rotateEncryptionKey { activeKeyId } }",
            json!({}),
        )
        .await;
    assert_eq!(crate::helpers::error_code(&body), Some("FORBIDDEN"));

    let rotated = app
        .gql_ok(
            &operator,
            "mutation { rotateEncryptionKey { activeKeyId remaining due } }",
            json!({}),
        )
        .await;
    let new = rotated["rotateEncryptionKey"]["activeKeyId"]
        .as_str()
        .expect("id")
        .to_owned();
    assert_ne!(new, old);
    assert_eq!(rotated["rotateEncryptionKey"]["remaining"], 3);
    // The rewrap job finishes the rotation (resumable batches).
    let done = jobs::rotate_keys::run(&app.jobs).await.expect("rewrap");
    assert_eq!(done, 4, "three tokens and one webhook secret");
    let status = app
        .gql_ok(
            &operator,
            "{ keyRotation { activeKeyId remaining } }",
            json!({}),
        )
        .await;
    assert_eq!(status["keyRotation"]["remaining"], 0);
    for id in &ids {
        assert_eq!(token(&app, *id).await.key_id, new);
    }

    // Drop the old key from the configuration: a new process with only the new key starts
    // (the canary was rewrapped too) and decrypts every token.
    let key_file = app.config.security.key_file.clone().expect("key file");
    let text = std::fs::read_to_string(&key_file).expect("key file");
    let new_line = text
        .lines()
        .find(|l| l.starts_with(&format!("{new}:")))
        .expect("new key in the file")
        .to_owned();
    let mut config = app.config.clone();
    config.security.keys = Some(new_line.into());
    config.security.key_file = None;
    let engine = tokenwarden::compose::build_engine(&app.db, &config)
        .await
        .expect("starts without the old key");
    assert!(!engine.vault().contains(&old));
    let queue = tokenwarden::compose::build_queue(&config)
        .await
        .expect("queue");
    let fresh = api::App::from_parts(app.db.clone(), config.api(), engine, queue);
    let integrator_tokens: Vec<Value> = {
        let mut out = Vec::new();
        for id in &ids {
            let row = token(&app, *id).await;
            let plain = service::tokens::open(
                &fresh.state.engine.vault(),
                &row,
                service::tokens::vault::TokenKind::Access,
            )
            .expect("decrypts with the new key alone");
            out.push(Value::from(
                secrecy::ExposeSecret::expose_secret(&plain).len(),
            ));
        }
        out
    };
    assert_eq!(integrator_tokens.len(), 3);
    for hook in entity::webhook::Entity::find()
        .all(&app.db)
        .await
        .expect("webhooks")
    {
        fresh
            .state
            .engine
            .vault()
            .decrypt(
                &hook.secret_enc,
                &service::tokens::vault::Aad::new(
                    hook.tenant_id,
                    hook.id,
                    service::tokens::vault::TokenKind::WebhookSecret,
                ),
            )
            .expect("the webhook secret decrypts with the new key alone");
    }
    // Deployment-wide: in the operators' audit log (tests/api/operator.rs: no tenant's).
    let audit = app
        .gql_ok(
            &operator,
            "{ auditLog(filter: {actions: [ENCRYPTION_KEY_ROTATED]}) { totalCount nodes { details } } }",
            json!({}),
        )
        .await;
    assert_eq!(audit["auditLog"]["totalCount"], 1);
    assert_eq!(
        audit["auditLog"]["nodes"][0]["details"]["previousKeyId"],
        old.as_str()
    );
}

async fn cleanup_purges_exactly_the_accounts_past_retention(app: TestApp) {
    let ids = app.seed_connected("default", "old", 3).await;
    let set_deactivated = |id: i64, days: i64| {
        let db = app.db.clone();
        async move {
            social_account::Entity::update_many()
                .col_expr(social_account::Column::Status, Expr::value("DEACTIVATED"))
                .col_expr(
                    social_account::Column::DeactivatedAt,
                    Expr::value(Some(Utc::now() - chrono::Duration::days(days))),
                )
                .filter(social_account::Column::Id.eq(id))
                .exec(&db)
                .await
                .expect("deactivated");
        }
    };
    set_deactivated(ids[0], 91).await;
    set_deactivated(ids[1], 89).await;
    // Messages kept about the account name it, under this name and a former one.
    let tenant_id = app.tenant_id("default").await;
    let name = social_account::Entity::find_by_id(ids[0])
        .one(&app.db)
        .await
        .expect("q")
        .and_then(|a| a.username)
        .expect("username");
    entity::token_event::ActiveModel {
        tenant_id: Set(Some(tenant_id)),
        account_id: Set(Some(ids[0])),
        kind: Set(EventKind::ReconnectRequired),
        platform: Set(Some(Platform::TikTok)),
        error_code: Set(Some("RECONNECT_REQUIRED".into())),
        error_message: Set(Some(format!(
            "TikTok access for @{name} expired before it could be refreshed."
        ))),
        error_action: Set(Some("Reconnect the account.".into())),
        occurred_at: Set(Utc::now()),
        ..Default::default()
    }
    .insert(&app.db)
    .await
    .expect("event");
    entity::notification::ActiveModel {
        tenant_id: Set(tenant_id),
        account_id: Set(ids[0]),
        incident: Set(entity::enums::Incident::Expired),
        platform: Set(Platform::TikTok),
        message: Set(format!(
            "TikTok access for @{name} (formerly @first.name) expired."
        )),
        action: Set(Some("Reconnect the account.".into())),
        created_at: Set(Utc::now()),
        acknowledged_at: Set(None),
        resolved_at: Set(None),
        ..Default::default()
    }
    .insert(&app.db)
    .await
    .expect("notification");
    service::identity::audit::record(
        &app.db,
        &service::identity::caller::Actor::system(Some(tenant_id), "system"),
        service::identity::audit::AuditAction::AccountReconnected,
        Some(service::identity::audit::Target::new(
            "SocialAccount",
            ids[0],
        )),
        json!({ "platform": "tiktok", "username": "first.name" }),
    )
    .await
    .expect("audit");
    assert_eq!(
        crate::helpers::mentions_of(&app.db, ids[0], &name)
            .await
            .len(),
        2
    );
    let purged = jobs::cleanup_deactivated::run(&app.jobs)
        .await
        .expect("cleanup");
    assert_eq!(purged, 1);
    let gone = social_account::Entity::find_by_id(ids[0])
        .one(&app.db)
        .await
        .expect("q")
        .expect("row");
    assert!(gone.username.is_none() && gone.display_name.is_none());
    assert!(gone.purged_at.is_some());
    assert!(!gone.provider_account_id.contains(&name));
    for name in [name.as_str(), "first.name"] {
        assert_eq!(
            crate::helpers::mentions_of(&app.db, ids[0], name).await,
            Vec::<String>::new(),
            "{name} is scrubbed"
        );
    }
    let note = entity::notification::Entity::find()
        .filter(entity::notification::Column::AccountId.eq(ids[0]))
        .one(&app.db)
        .await
        .expect("q")
        .expect("notification");
    assert_eq!(
        note.message,
        "TikTok access for a purged account (formerly a purged account) expired."
    );
    assert!(
        oauth_token::Entity::find()
            .filter(oauth_token::Column::AccountId.eq(ids[0]))
            .one(&app.db)
            .await
            .expect("q")
            .is_none()
    );
    for kept in &ids[1..] {
        assert!(
            token(&app, *kept).await.id > 0,
            "tokens of younger accounts stay"
        );
    }
    let audit = app
        .gql_ok(
            &app.admin_key,
            "query($id: ID!) { auditLog(filter: {accountId: $id}) { nodes { action actor } } }",
            json!({ "id": global_id("SocialAccount", ids[0]) }),
        )
        .await;
    assert_eq!(audit["auditLog"]["nodes"][0]["action"], "ACCOUNT_PURGED");
    assert_eq!(
        jobs::cleanup_deactivated::run(&app.jobs)
            .await
            .expect("again"),
        0
    );
}

async fn instagram_tokens_that_expire_become_expired_not_swept(app: TestApp) {
    let id = crate::helpers::decode_id(&app.connect(&app.admin_key, "INSTAGRAM", "late").await);
    oauth_token::Entity::update_many()
        .col_expr(
            oauth_token::Column::ExpiresAt,
            Expr::value(Utc::now() - chrono::Duration::minutes(1)),
        )
        .col_expr(
            oauth_token::Column::IssuedAt,
            Expr::value(Utc::now() - chrono::Duration::days(61)),
        )
        .filter(oauth_token::Column::AccountId.eq(id))
        .exec(&app.db)
        .await
        .expect("expired");
    let report = jobs::sweep_expiring::run(&app.jobs).await.expect("sweep");
    assert_eq!(
        report.queued, 0,
        "an expired Instagram token is never refreshed"
    );
    assert_eq!(report.expired, 1);
    assert_eq!(status(&app, id).await, AccountStatus::Expired);
    assert_eq!(app.sandbox.stats().instagram.refresh_calls, 0);
}

async fn health_check_feeds_system_health_and_prune_keeps_recent_records(app: TestApp) {
    let ids = app.seed_connected("default", "hc", 2).await;
    app.expire_in(&ids, 30).await;
    for id in &ids {
        jobs::refresh_token::run(&job(&app, *id).await, &app.jobs)
            .await
            .expect("job");
    }
    let snapshot = jobs::health_check::run(&app.jobs)
        .await
        .expect("health check");
    assert!(snapshot.database && snapshot.encryption);
    let redis_mode = app.config.queue.redis().is_some();
    assert_eq!(
        snapshot.redis,
        redis_mode.then_some(true),
        "Redis is checked only where it is configured"
    );
    assert!(
        snapshot.providers.iter().all(|p| p.available),
        "{snapshot:?}"
    );
    let health = app
        .gql_ok(
            &app.admin_key,
            "{ systemHealth { lastHealthCheckAt redis providers { platform available latencyMs } } }",
            json!({}),
        )
        .await;
    assert!(health["systemHealth"]["lastHealthCheckAt"].is_string());
    assert_eq!(
        health["systemHealth"]["redis"],
        if redis_mode { json!(true) } else { Value::Null }
    );
    assert_eq!(health["systemHealth"]["providers"][0]["available"], true);

    // One old attempt; the recent ones stay.
    refresh_attempt::Entity::update_many()
        .col_expr(
            refresh_attempt::Column::StartedAt,
            Expr::value(Utc::now() - chrono::Duration::days(40)),
        )
        .filter(refresh_attempt::Column::AccountId.eq(ids[0]))
        .exec(&app.db)
        .await
        .expect("aged");
    let deleted = jobs::prune::run(&app.jobs).await.expect("prune");
    assert!(deleted >= 1);
    assert!(attempts(&app, ids[0]).await.is_empty());
    assert_eq!(attempts(&app, ids[1]).await.len(), 1);
}

async fn error_rate_alerts_and_key_rotation_due_are_raised_once(app: TestApp) {
    use entity::{provider_call, token_event};
    use sea_orm::ActiveModelTrait;

    let calls = |errors: usize, ok: usize| {
        let db = app.db.clone();
        async move {
            for i in 0..(errors + ok) {
                provider_call::ActiveModel {
                    platform: sea_orm::Set(Platform::TikTok),
                    operation: sea_orm::Set("refresh".into()),
                    http_status: sea_orm::Set(Some(if i < errors { 503 } else { 200 })),
                    error_code: sea_orm::Set((i < errors).then(|| "http_503".to_owned())),
                    latency_ms: sea_orm::Set(10),
                    occurred_at: sea_orm::Set(Utc::now()),
                    ..Default::default()
                }
                .insert(&db)
                .await
                .expect("call");
            }
        }
    };
    let kinds = || {
        let db = app.db.clone();
        async move {
            token_event::Entity::find()
                .all(&db)
                .await
                .expect("events")
                .into_iter()
                .map(|e| e.kind)
                .collect::<Vec<_>>()
        }
    };
    // 10 of 30 calls failed: over 20 % of at least 20 calls.
    calls(10, 20).await;
    jobs::health_check::run(&app.jobs).await.expect("check");
    jobs::health_check::run(&app.jobs)
        .await
        .expect("check again");
    assert_eq!(kinds().await, [EventKind::ProviderDegraded], "raised once");
    calls(0, 100).await;
    jobs::health_check::run(&app.jobs).await.expect("check");
    assert_eq!(
        kinds().await,
        [EventKind::ProviderDegraded, EventKind::ProviderRecovered]
    );
    // Every tenant's subscribers replay deployment-wide events.
    let acme = app.tenant_id("acme").await;
    let seen = service::events::replay(
        &app.db,
        acme,
        &Default::default(),
        Default::default(),
        None,
        10,
    )
    .await
    .expect("replay");
    assert_eq!(seen.len(), 2, "{seen:?}");

    // An active key older than the rotation period raises KEY_ROTATION_DUE once.
    let active = app.jobs.engine.vault().active_key_id().to_owned();
    service::ops::settings::put(
        &app.db,
        &format!("vault_key_activated_at:{active}"),
        (Utc::now() - chrono::Duration::days(100)).to_rfc3339(),
    )
    .await
    .expect("old key");
    jobs::rotate_keys::run(&app.jobs)
        .await
        .expect("rotation check");
    jobs::rotate_keys::run(&app.jobs)
        .await
        .expect("rotation check again");
    let all = kinds().await;
    assert_eq!(
        all.iter()
            .filter(|k| **k == EventKind::KeyRotationDue)
            .count(),
        1,
        "{all:?}"
    );
    let operator = app.key_for_tenant("default", "OPERATOR").await;
    let status = app
        .gql_ok(&operator, "{ keyRotation { due } }", json!({}))
        .await;
    assert_eq!(status["keyRotation"]["due"], true);
}

async fn tiktok_refresh_tokens_near_their_end_raise_expiring_once(app: TestApp) {
    use entity::token_event;

    let ids = app.seed_connected("default", "ending", 2).await;
    oauth_token::Entity::update_many()
        .col_expr(
            oauth_token::Column::RefreshExpiresAt,
            Expr::value(Some(Utc::now() + chrono::Duration::days(3))),
        )
        .filter(oauth_token::Column::AccountId.eq(ids[0]))
        .exec(&app.db)
        .await
        .expect("ending soon");
    jobs::sweep_expiring::run(&app.jobs).await.expect("sweep");
    jobs::sweep_expiring::run(&app.jobs)
        .await
        .expect("sweep again");
    let events = token_event::Entity::find()
        .filter(token_event::Column::Kind.eq("EXPIRING"))
        .all(&app.db)
        .await
        .expect("events");
    assert_eq!(events.len(), 1, "once: {events:?}");
    assert_eq!(events[0].account_id, Some(ids[0]));
    assert!(
        events[0]
            .error_message
            .as_deref()
            .is_some_and(|m| m.contains("cannot be extended"))
    );
    assert_eq!(
        events[0].error_action.as_deref(),
        Some("Reconnect the account before it expires.")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_whose_refreshes_keep_failing_raise_expiring_once() {
    use entity::token_event;

    let app = TestApp::spawn(crate::helpers::Backend::Sqlite).await;
    let ids = app.seed_connected("default", "failing", 2).await;
    // Five refreshes failed in a row for the first account, four for the second.
    for (id, failures) in [(ids[0], 5), (ids[1], 4)] {
        oauth_token::Entity::update_many()
            .col_expr(oauth_token::Column::FailureCount, Expr::value(failures))
            .filter(oauth_token::Column::AccountId.eq(id))
            .exec(&app.db)
            .await
            .expect("failures");
    }
    jobs::sweep_expiring::run(&app.jobs).await.expect("sweep");
    jobs::sweep_expiring::run(&app.jobs)
        .await
        .expect("sweep again");
    let events = token_event::Entity::find()
        .filter(token_event::Column::Kind.eq("EXPIRING"))
        .all(&app.db)
        .await
        .expect("events");
    assert_eq!(
        events.len(),
        1,
        "once, for the first account only: {events:?}"
    );
    assert_eq!(events[0].account_id, Some(ids[0]));
    assert!(
        events[0]
            .error_message
            .as_deref()
            .is_some_and(|m| m.contains("could not be refreshed 5 times in a row")),
        "{events:?}"
    );
}

const ACCESS: &str = "query($id: ID!) { accessToken(accountId: $id) { token } }";
const REFRESH: &str = "mutation($id: ID!) { refreshAccountToken(accountId: $id) { refreshed account { status } error { code } } }";

/// Sends a GraphQL request as the admin in the background.
fn in_background(app: &TestApp, query: &str, account_id: i64) -> tokio::task::JoinHandle<Value> {
    let request = app
        .client
        .post(app.url("/graphql"))
        .bearer_auth(&app.admin_key)
        .json(&json!({ "query": query, "variables": { "id": global_id("SocialAccount", account_id) } }));
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

/// Deactivates an account through the API once its refresh is at the platform.
async fn deactivate_mid_refresh(app: &TestApp, account_id: i64) {
    app.wait_for(30, "the refresh lease taken", || async {
        token(app, account_id).await.refresh_lease_owner.is_some()
    })
    .await;
    let data = app
        .gql_ok(
            &app.admin_key,
            "mutation($id: ID!) { deactivateAccount(id: $id) { status } }",
            json!({ "id": global_id("SocialAccount", account_id) }),
        )
        .await;
    assert_eq!(data["deactivateAccount"]["status"], "DEACTIVATED");
}

async fn a_deactivation_during_a_refresh_wins(app: TestApp) {
    let ids = app.seed_connected("default", "race", 2).await;
    let (rotated, failing) = (ids[0], ids[1]);
    // Inside accessToken's 5-minute margin: reading the token refreshes it first.
    app.expire_in(&ids, 2).await;
    // The platform takes its time: the deactivation lands while it works.
    app.sandbox.update_config(sandbox::ConfigPatch {
        latency_ms: Some(1_500),
        ..Default::default()
    });

    // The platform rotates the tokens of an account deactivated meanwhile: they are
    // stored (the old refresh token is dead), but not served.
    let read = in_background(&app, ACCESS, rotated);
    deactivate_mid_refresh(&app, rotated).await;
    let body = read.await.expect("task");
    assert_eq!(error_code(&body), Some("BAD_USER_INPUT"), "{body}");
    assert!(body["data"].is_null(), "no token served: {body}");
    assert_eq!(
        token(&app, rotated).await.version,
        1,
        "the rotated tokens were stored"
    );
    let account = social_account::Entity::find_by_id(rotated)
        .one(&app.db)
        .await
        .expect("query")
        .expect("account");
    assert_eq!(account.status, AccountStatus::Deactivated);
    assert!(account.deactivated_at.is_some());
    let again = app
        .gql(
            Some(&app.admin_key),
            ACCESS,
            json!({ "id": global_id("SocialAccount", rotated) }),
        )
        .await;
    assert_eq!(error_code(&again), Some("BAD_USER_INPUT"), "{again}");

    // A refresh failing at the platform does not bring a deactivated account back.
    app.sandbox
        .set_faults(SandboxPlatform::Tiktok, FaultKind::ServerError, 1);
    let refresh = in_background(&app, REFRESH, failing);
    deactivate_mid_refresh(&app, failing).await;
    let body = refresh.await.expect("task");
    let payload = &body["data"]["refreshAccountToken"];
    assert_eq!(payload["refreshed"], false, "{body}");
    assert_eq!(payload["error"]["code"], "PROVIDER_UNAVAILABLE", "{body}");
    assert_eq!(status(&app, failing).await, AccountStatus::Deactivated);

    // Reactivated, the account serves the tokens the platform rotated, and the grant works.
    app.sandbox.update_config(sandbox::ConfigPatch {
        latency_ms: Some(0),
        ..Default::default()
    });
    let data = app
        .gql_ok(
            &app.admin_key,
            "mutation($id: ID!) { reactivateAccount(id: $id) { status } }",
            json!({ "id": global_id("SocialAccount", rotated) }),
        )
        .await;
    assert_eq!(data["reactivateAccount"]["status"], "ACTIVE");
    let data = app
        .gql_ok(
            &app.admin_key,
            ACCESS,
            json!({ "id": global_id("SocialAccount", rotated) }),
        )
        .await;
    assert!(data["accessToken"]["token"].is_string());
    assert_eq!(app.sandbox.stats().tiktok.reused_refresh_tokens, 0);
}

async fn a_reconnect_during_the_expiry_pass_wins(app: TestApp) {
    use entity::token_event;
    use service::tokens::sweep;

    let id = decode_id(&app.connect(&app.admin_key, "INSTAGRAM", "back").await);
    oauth_token::Entity::update_many()
        .col_expr(
            oauth_token::Column::ExpiresAt,
            Expr::value(Utc::now() - chrono::Duration::minutes(1)),
        )
        .col_expr(
            oauth_token::Column::IssuedAt,
            Expr::value(Utc::now() - chrono::Duration::days(61)),
        )
        .filter(oauth_token::Column::AccountId.eq(id))
        .exec(&app.db)
        .await
        .expect("expired");
    // The expiry pass finds the account...
    let now = Utc::now();
    let found = sweep::find_unrefreshable(&app.db, now, 10)
        .await
        .expect("found");
    assert_eq!(found.iter().map(|f| f.account_id).collect::<Vec<_>>(), [id]);
    // ...the user reconnects before the pass reaches it...
    let again = app
        .connect_flow(&app.admin_key, "INSTAGRAM", "back", "")
        .await;
    assert_eq!(again["result"], "reconnected");
    // ...and the pass leaves the fresh connection alone.
    let expired = sweep::expire_one(&app.db, &app.jobs.engine.events, found[0], now)
        .await
        .expect("expiry pass");
    assert!(expired.is_none(), "{expired:?}");
    assert_eq!(status(&app, id).await, AccountStatus::Active);
    let t = token(&app, id).await;
    assert!(t.next_refresh_at.is_none(), "not parked");
    assert!(t.expires_at > Utc::now() + chrono::Duration::days(50));
    let report = jobs::sweep_expiring::run(&app.jobs).await.expect("sweep");
    assert_eq!(report.expired, 0);
    let events = token_event::Entity::find()
        .filter(token_event::Column::Kind.eq("EXPIRED"))
        .all(&app.db)
        .await
        .expect("events");
    assert!(events.is_empty(), "{events:?}");
}

/// A worker torn down while the platform works (the job's future dropped) loses nothing: the
/// queued refresh runs in one detached task that stores the rotated tokens, records the
/// attempt and gives the claim back.
async fn a_refresh_job_cut_short_still_finishes(app: TestApp) {
    let ids = app.seed_connected("default", "cut", 1).await;
    let id = ids[0];
    app.expire_in(&ids, 30).await;
    assert_eq!(
        jobs::sweep_expiring::run(&app.jobs)
            .await
            .expect("sweep")
            .queued,
        1
    );
    app.sandbox.update_config(sandbox::ConfigPatch {
        latency_ms: Some(1_500),
        ..Default::default()
    });
    let job = job(&app, id).await;
    let cut = tokio::time::timeout(
        std::time::Duration::from_millis(500),
        jobs::refresh_token::run(&job, &app.jobs),
    )
    .await;
    assert!(cut.is_err(), "the job was cut short mid-refresh: {cut:?}");
    app.wait_for(30, "the refresh finished without its job", || async {
        attempts(&app, id)
            .await
            .iter()
            .any(|a| a.outcome == Outcome::Succeeded)
    })
    .await;
    let t = token(&app, id).await;
    assert_eq!(t.version, 1, "the rotated tokens were stored");
    assert!(t.sweep_claimed_until.is_none(), "claim released");
    assert_eq!(status(&app, id).await, AccountStatus::Active);
    assert_eq!(app.sandbox.stats().tiktok.reused_refresh_tokens, 0);
}

/// A TCP forwarder to Redis that can be switched off and on again at the same address:
/// what Redis going down and coming back looks like to a client.
struct RedisForwarder {
    addr: std::net::SocketAddr,
    up: std::sync::Arc<tokio::sync::watch::Sender<bool>>,
}

impl RedisForwarder {
    async fn start() -> Self {
        // Fails with how to start Redis when it is down.
        crate::helpers::redis_args();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let forwarder = Self {
            addr: listener.local_addr().expect("addr"),
            up: std::sync::Arc::new(tokio::sync::watch::channel(true).0),
        };
        forwarder.serve(listener);
        forwarder
    }

    fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let target = crate::helpers::redis_url()
            .trim_start_matches("redis://")
            .split('/')
            .next()
            .unwrap_or("127.0.0.1:6379")
            .to_owned();
        let mut down = self.up.subscribe();
        tokio::spawn(async move {
            loop {
                let mut conn_down = down.clone();
                tokio::select! {
                    _ = down.wait_for(|up| !*up) => break,
                    accepted = listener.accept() => {
                        let Ok((mut client, _)) = accepted else { break };
                        let target = target.clone();
                        tokio::spawn(async move {
                            let Ok(mut server) = tokio::net::TcpStream::connect(&target).await else {
                                return;
                            };
                            tokio::select! {
                                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                                _ = conn_down.wait_for(|up| !*up) => {}
                            }
                        });
                    }
                }
            }
        });
    }

    /// Closes every connection and refuses new ones.
    fn stop(&self) {
        self.up.send_replace(false);
    }

    async fn restart(&self) {
        self.up.send_replace(true);
        let listener = tokio::net::TcpListener::bind(self.addr)
            .await
            .expect("bind the same address again");
        self.serve(listener);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_enqueue_backs_the_sweep_off() {
    let app = TestApp::spawn(crate::helpers::Backend::Postgres).await;
    let redis = RedisForwarder::start().await;
    let prefix = crate::helpers::redis_prefix();
    let ctx = jobs::JobContext {
        db: app.db.clone(),
        engine: app.jobs.engine.clone(),
        queue: jobs::Queue::redis(&redis.url(), &prefix)
            .await
            .expect("queue"),
        settings: app.jobs.settings.clone(),
    };
    let ids = app.seed_connected("default", "down", 2).await;
    app.expire_in(&ids, 30).await;

    // Redis goes down: the sweep stops (it used to release and reclaim the same rows
    // forever), gives the claims back and backs off.
    redis.stop();
    let report = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        jobs::sweep_expiring::run(&ctx),
    )
    .await
    .expect("the sweep stops")
    .expect("sweep");
    assert_eq!(report.queued, 0);
    let until = report.queue_backoff_until.expect("backing off");
    for id in &ids {
        assert!(
            token(&app, *id).await.sweep_claimed_until.is_none(),
            "the claim is released: the account stays due"
        );
    }
    let next = jobs::sweep_expiring::run(&ctx).await.expect("sweep");
    assert_eq!(next.queued, 0);
    assert!(next.queue_backoff_until >= Some(until), "{next:?}");

    // Redis is back: once the backoff has passed, a sweep queues both accounts.
    redis.restart().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut queued = 0;
    while queued < ids.len() {
        assert!(
            std::time::Instant::now() < deadline,
            "the sweep never queued again"
        );
        queued += jobs::sweep_expiring::run(&ctx).await.expect("sweep").queued;
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(queued, ids.len(), "each account once");
    // An enqueue that timed out may still have landed: the queue is at least once (a
    // duplicate job finds the token fresh and skips it).
    let depth = ctx.queue.stats().await.expect("stats");
    assert!(depth.pending >= ids.len() as u64, "{depth:?}");

    // Leave nothing behind in the shared Redis (best effort: it is busy with other tests).
    let client = redis::Client::open(crate::helpers::redis_url().as_str()).expect("redis url");
    if let Ok(mut conn) = client.get_multiplexed_async_connection().await {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}*"))
            .query_async(&mut conn)
            .await
            .unwrap_or_default();
        for key in keys {
            let _: Result<(), _> = redis::cmd("DEL").arg(key).query_async(&mut conn).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_refresh_leaves_room_for_another_tenants_on_demand_refresh() {
    // Five provider calls per second for the whole app.
    let app = TestApp::spawn_with(
        crate::helpers::Backend::Postgres,
        &["--tiktok-rate-limit", "5"],
    )
    .await;
    let ours = app.seed_connected("default", "bulk", 15).await;
    let theirs = app.seed_connected("acme", "urgent", 2).await;
    let acme = app.key_for_tenant("acme", "INTEGRATOR").await;
    let queued = app
        .gql_ok(&app.admin_key, "mutation { refreshAccounts }", json!({}))
        .await;
    assert_eq!(queued["refreshAccounts"], ours.len());
    let before = app.sandbox.stats().tiktok.refresh_calls;
    let _workers = app.start_workers();
    app.wait_for(30, "the bulk refresh under way", || async {
        app.sandbox.stats().tiktok.refresh_calls - before >= 3
    })
    .await;
    // Three seconds of queued work at the limit: the other tenant's requests go first.
    for id in &theirs {
        let data = app
            .gql_ok(
                &acme,
                REFRESH,
                json!({ "id": global_id("SocialAccount", *id) }),
            )
            .await;
        let payload = &data["refreshAccountToken"];
        assert_eq!(payload["error"], Value::Null, "not RATE_LIMITED: {data}");
        assert_eq!(payload["refreshed"], true);
    }
    app.wait_for(60, "the bulk refresh done", || async {
        app.sandbox.stats().tiktok.refresh_calls - before >= (ours.len() + theirs.len()) as u64
    })
    .await;
    assert_eq!(app.sandbox.stats().tiktok.reused_refresh_tokens, 0);
}

/// `enqueue_many` writes in batches (one Redis pipeline, one SQLite transaction each):
/// more jobs than one batch holds are all queued, each once.
async fn many_refreshes_are_queued_in_batches(app: TestApp) {
    use service::tokens::queue::{JobQueue, QueuedRefresh};

    let before = app.jobs.queue.stats().await.expect("stats").pending;
    let jobs: Vec<QueuedRefresh> = (0..1_201)
        .map(|i| QueuedRefresh {
            tenant_id: 1,
            account_id: 1_000_000 + i,
            trigger: if i % 2 == 0 {
                Trigger::Sweep
            } else {
                Trigger::Bulk
            },
        })
        .collect();
    app.jobs.queue.enqueue_many(&jobs).await.expect("queued");
    app.jobs
        .queue
        .enqueue_many(&[])
        .await
        .expect("nothing to queue");
    let depth = app.jobs.queue.stats().await.expect("stats");
    assert_eq!(depth.pending - before, 1_201, "{depth:?}");
}

/// A worker process that starts sweeps at once: due accounts are refreshed without waiting
/// for the first tick of the schedule (here once a year).
async fn a_starting_worker_sweeps_at_once(app: TestApp) {
    let ids = app.seed_connected("default", "startup", 2).await;
    app.expire_in(&ids, 30).await;
    let _workers = app.start_workers();
    app.wait_for(30, "the due accounts refreshed", || async {
        let mut done = 0;
        for id in &ids {
            if attempts(&app, *id)
                .await
                .iter()
                .any(|a| a.outcome == Outcome::Succeeded)
            {
                done += 1;
            }
        }
        done == ids.len()
    })
    .await;
    assert_eq!(app.sandbox.stats().tiktok.reused_refresh_tokens, 0);
}

const YEARLY: [&str; 2] = ["--sweep-schedule", "0 0 0 1 1 *"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_starting_worker_sweeps_at_once_sqlite() {
    let app = TestApp::spawn_with(crate::helpers::Backend::Sqlite, &YEARLY).await;
    a_starting_worker_sweeps_at_once(app).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_starting_worker_sweeps_at_once_postgres_redis() {
    let mut args: Vec<String> = crate::helpers::redis_args();
    args.extend(YEARLY.map(str::to_owned));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let app = TestApp::spawn_with(crate::helpers::Backend::Postgres, &args).await;
    a_starting_worker_sweeps_at_once(app).await
}
