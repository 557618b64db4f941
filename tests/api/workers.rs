//! Separate `tokenwarden worker` processes on PostgreSQL + Redis: scheduled sweeps refresh
//! each due token exactly once with two workers, survive SIGKILL mid-sweep, and survive
//! the loss of every Redis key. The database is the source of truth.

use std::process::Command;

use entity::{refresh_attempt, social_account};
use sandbox::ConfigPatch;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QuerySelect};

use crate::{
    binary::{Running, start_until, terminate},
    helpers::{Backend, TestApp, redis_args, redis_url},
};

/// A PostgreSQL + Redis server plus the environment its worker processes need.
pub(crate) async fn production_app() -> (TestApp, Vec<(String, String)>) {
    let args = redis_args();
    let prefix = args[3].clone();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let app = TestApp::spawn_with(Backend::Postgres, &args).await;
    let env = vec![
        (
            "DATABASE_URL".to_owned(),
            app.config.database.url.expose().to_owned(),
        ),
        ("REDIS_URL".to_owned(), redis_url()),
        ("TOKENWARDEN_REDIS_PREFIX".to_owned(), prefix),
        (
            "TOKENWARDEN_KEY_FILE".to_owned(),
            app.config
                .security
                .key_file
                .clone()
                .expect("key file")
                .display()
                .to_string(),
        ),
        (
            "TOKENWARDEN_SANDBOX_URL".to_owned(),
            format!("http://{}/sandbox", app.sandbox_addr),
        ),
        (
            "TOKENWARDEN_SWEEP_SCHEDULE".to_owned(),
            "*/1 * * * * *".to_owned(),
        ),
        ("TOKENWARDEN_SWEEP_CLAIM".to_owned(), "3s".to_owned()),
        ("TOKENWARDEN_REFRESH_LEASE".to_owned(), "5s".to_owned()),
        ("TOKENWARDEN_PROVIDER_TIMEOUT".to_owned(), "2s".to_owned()),
        ("TOKENWARDEN_TIKTOK_RATE_LIMIT".to_owned(), "0".to_owned()),
        ("TOKENWARDEN_WORKER_CONCURRENCY".to_owned(), "8".to_owned()),
        ("RUST_LOG".to_owned(), "info".to_owned()),
    ];
    (app, env)
}

pub(crate) fn start_worker(env: &[(String, String)]) -> Running {
    let dir = std::env::temp_dir();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    start_until(&dir, &env, &["worker"], "serving /healthz and /readyz")
}

/// Accounts with at least one successful refresh.
async fn refreshed(app: &TestApp) -> u64 {
    refresh_attempt::Entity::find()
        .select_only()
        .column(refresh_attempt::Column::AccountId)
        .distinct()
        .filter(refresh_attempt::Column::Outcome.eq("SUCCEEDED"))
        .count(&app.db)
        .await
        .expect("count")
}

async fn successes(app: &TestApp) -> u64 {
    refresh_attempt::Entity::find()
        .filter(refresh_attempt::Column::Outcome.eq("SUCCEEDED"))
        .count(&app.db)
        .await
        .expect("count")
}

/// Waits until `target` accounts are refreshed; on timeout, stops the worker and panics
/// with the stuck accounts and the worker's last log lines.
async fn wait_or_dump(app: &TestApp, worker: &mut Running, secs: u64, what: &str, target: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while refreshed(app).await < target {
        if std::time::Instant::now() > deadline {
            let _ = Command::new("kill")
                .args(["-TERM", &worker.child.id().to_string()])
                .status();
            let logs = worker.remaining_output();
            panic!(
                "timed out waiting for {what} ({} of {target}); stuck: {}\nworker logs:\n{}",
                refreshed(app).await,
                stuck_accounts(app).await,
                logs.iter()
                    .rev()
                    .take(40)
                    .rev()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// The accounts without a successful refresh, with their token and attempts (diagnostics).
async fn stuck_accounts(app: &TestApp) -> String {
    let done: Vec<i64> = refresh_attempt::Entity::find()
        .select_only()
        .column(refresh_attempt::Column::AccountId)
        .filter(refresh_attempt::Column::Outcome.eq("SUCCEEDED"))
        .into_tuple()
        .all(&app.db)
        .await
        .expect("done");
    let stuck = social_account::Entity::find()
        .filter(social_account::Column::Id.is_not_in(done))
        .all(&app.db)
        .await
        .expect("stuck");
    let mut out = String::new();
    for account in stuck.iter().take(3) {
        let token = entity::oauth_token::Entity::find()
            .filter(entity::oauth_token::Column::AccountId.eq(account.id))
            .one(&app.db)
            .await
            .expect("token");
        let attempts = refresh_attempt::Entity::find()
            .filter(refresh_attempt::Column::AccountId.eq(account.id))
            .all(&app.db)
            .await
            .expect("attempts");
        out.push_str(&format!(
            "\n{} {}: token={:?} attempts={:?}",
            account.id,
            account.status,
            token.map(|t| (
                t.expires_at,
                t.next_refresh_at,
                t.sweep_claimed_until,
                t.refresh_lease_until,
                t.failure_count
            )),
            attempts
                .iter()
                .map(|a| (&a.outcome, &a.error_code))
                .collect::<Vec<_>>()
        ));
    }
    out
}

async fn broken_accounts(app: &TestApp) -> u64 {
    social_account::Entity::find()
        .filter(social_account::Column::Status.ne("ACTIVE"))
        .count(&app.db)
        .await
        .expect("count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_worker_processes_refresh_each_due_token_once() {
    let (app, env) = production_app().await;
    let ids = app.seed_connected("default", "pair", 6).await;
    app.expire_in(&ids[..5], 30).await;
    let before = app.sandbox.stats().tiktok.refresh_calls;
    let mut a = start_worker(&env);
    let b = start_worker(&env);
    wait_or_dump(
        &app,
        &mut a,
        60,
        "five due tokens refreshed by the workers' sweeps",
        5,
    )
    .await;
    // Several more sweeps run on both workers (counted, not waited for): nothing is
    // refreshed twice. The claim lasts 3 s, so sweeps past it would re-queue a token whose
    // claim was wrongly kept.
    let after_refresh = [sweeps(&a.addr).await, sweeps(&b.addr).await];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let now = [sweeps(&a.addr).await, sweeps(&b.addr).await];
        if now[0] >= after_refresh[0] + 4 && now[1] >= after_refresh[1] + 4 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "four more sweeps on each worker within 60 s: {after_refresh:?} -> {now:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(
        app.sandbox.stats().tiktok.refresh_calls - before,
        5,
        "exactly once each"
    );
    assert_eq!(successes(&app).await, 5);
    assert_eq!(app.sandbox.stats().tiktok.reused_refresh_tokens, 0);
    let operator = app.key_for_tenant("default", "OPERATOR").await;
    let ready = reqwest::Client::new()
        .get(format!("http://{}/readyz", a.addr))
        .bearer_auth(&operator)
        .send()
        .await
        .expect("readyz")
        .json::<serde_json::Value>()
        .await
        .expect("json");
    assert_eq!(ready["checks"]["redis"], "ok", "{ready}");
    let mut exposition = String::new();
    for worker in [&a, &b] {
        let text = reqwest::get(format!("http://{}/metrics", worker.addr))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        assert!(text.contains("tokenwarden_sweeps_total"), "{text}");
        exposition.push_str(&text);
    }
    assert!(
        exposition.contains(
            "tokenwarden_refresh_attempts_total{platform=\"tiktok\",outcome=\"SUCCEEDED\"}"
        ),
        "{exposition}"
    );
    assert!(terminate(a).success());
    assert!(terminate(b).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_sweep_then_restart_refreshes_everything_without_reuse() {
    let (app, env) = production_app().await;
    let total = 2000;
    let clock = std::time::Instant::now();
    let ids = app.seed_connected("default", "bulk", total).await;
    eprintln!("seeded {total} accounts in {:?}", clock.elapsed());
    app.expire_in(&ids, 30).await;
    app.sandbox.update_config(ConfigPatch {
        latency_ms: Some(5),
        ..Default::default()
    });
    let mut first = start_worker(&env);
    wait_or_dump(&app, &mut first, 120, "a good part of the sweep done", 400).await;
    // Park new provider calls, let the ones in flight land, then kill -9.
    app.sandbox.update_config(ConfigPatch {
        latency_ms: Some(5_000),
        ..Default::default()
    });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let status = Command::new("kill")
        .args(["-KILL", &first.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let _ = first.child.wait();
    let done_at_kill = refreshed(&app).await;
    eprintln!(
        "killed after {:?} with {done_at_kill} refreshed",
        clock.elapsed()
    );
    assert!(
        done_at_kill < total as u64,
        "killed mid-sweep ({done_at_kill} done)"
    );
    app.sandbox.update_config(ConfigPatch {
        latency_ms: Some(0),
        ..Default::default()
    });

    let mut second = start_worker(&env);
    wait_or_dump(
        &app,
        &mut second,
        240,
        "every account refreshed after the restart",
        total as u64,
    )
    .await;
    eprintln!("all refreshed after {:?}", clock.elapsed());
    let stats = app.sandbox.stats().tiktok;
    assert_eq!(
        stats.reused_refresh_tokens, 0,
        "no refresh token was lost or presented twice"
    );
    assert_eq!(broken_accounts(&app).await, 0);
    assert!(terminate(second).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_every_redis_key_loses_no_work() {
    let (app, env) = production_app().await;
    let prefix = env
        .iter()
        .find(|(k, _)| k == "TOKENWARDEN_REDIS_PREFIX")
        .map(|(_, v)| v.clone())
        .expect("prefix");
    let total = 300;
    let ids = app.seed_connected("default", "flush", total).await;
    app.expire_in(&ids, 30).await;
    app.sandbox.update_config(ConfigPatch {
        latency_ms: Some(30),
        ..Default::default()
    });
    let mut env = env;
    env.retain(|(k, _)| k != "TOKENWARDEN_WORKER_CONCURRENCY");
    env.push(("TOKENWARDEN_WORKER_CONCURRENCY".into(), "2".into()));
    let worker = start_worker(&env);
    app.wait_for(60, "some refreshes done", || async {
        refreshed(&app).await >= 50
    })
    .await;
    // Flush this deployment's keys (other tests share the server).
    let client = redis::Client::open(redis_url()).expect("redis url");
    // KEYS walks the whole shared keyspace: allow it more than the default half second.
    let config = redis::AsyncConnectionConfig::new()
        .set_response_timeout(Some(std::time::Duration::from_secs(30)));
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .expect("redis connection");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .expect("keys");
    assert!(!keys.is_empty(), "the queue lives under the prefix");
    let _: () = redis::cmd("DEL")
        .arg(&keys)
        .query_async(&mut conn)
        .await
        .expect("del");
    let done_at_flush = refreshed(&app).await;
    assert!(done_at_flush < total as u64);
    app.sandbox.update_config(ConfigPatch {
        latency_ms: Some(0),
        ..Default::default()
    });
    let mut worker = worker;
    wait_or_dump(
        &app,
        &mut worker,
        120,
        "the next sweeps to finish the work",
        total as u64,
    )
    .await;
    assert_eq!(app.sandbox.stats().tiktok.reused_refresh_tokens, 0);
    assert_eq!(broken_accounts(&app).await, 0);
    assert!(terminate(worker).success());
}

/// How many sweeps a worker process has run, from its /metrics.
async fn sweeps(addr: &str) -> u64 {
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    text.lines()
        .filter(|line| line.starts_with("tokenwarden_sweeps_total"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|value| value as u64)
        .sum()
}
