//! Benchmarks of tokenwarden against the in-process provider sandbox.
//!
//! `bench sweep` seeds N connected TikTok accounts whose tokens are due, then measures how
//! fast the real workers (scheduled sweep + refresh queue) refresh all of them under a
//! provider rate limit, and compares that with the maintenance guide's sequential loop.
//!
//! PostgreSQL (`BENCH_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/test`) and
//! Redis (`REDIS_URL`, default `redis://127.0.0.1:6379`) must run for the default
//! `postgres-redis` backend. Set `RUST_LOG` to see the service's logs on stderr.

mod fanout;
use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand, ValueEnum};
use entity::{oauth_token, provider_call, refresh_attempt, social_account};
use futures::StreamExt as _;
use sea_orm::{
    ActiveModelTrait as _, ColumnTrait as _, ConnectionTrait as _, DatabaseConnection,
    EntityTrait as _, PaginatorTrait as _, QueryFilter as _, QuerySelect as _, Set,
    sea_query::Expr,
};
use service::{
    Actor,
    domain::{AccountStatus, Platform},
    engine::Engine,
    providers::AuthorizeRequest,
    tokens::refresh::{RefreshKind, RefreshOptions},
};

const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
const TENANT: &str = "default";

#[derive(Parser)]
#[command(name = "bench", about = "tokenwarden benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Time the workers refreshing N due TikTok accounts under a provider rate limit.
    Sweep(SweepArgs),
    /// Open N WebSocket subscriptions to one server and time one event's delivery.
    Fanout(fanout::FanoutArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Backend {
    /// PostgreSQL database + Redis queue (production mode).
    PostgresRedis,
    /// SQLite database + embedded SQLite queue.
    Sqlite,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::PostgresRedis => "postgres-redis",
            Backend::Sqlite => "sqlite",
        }
    }
}

#[derive(clap::Args, Clone, Debug)]
struct SweepArgs {
    /// Due accounts the workers refresh.
    #[arg(long, default_value_t = 20_000)]
    accounts: usize,
    /// Sandbox latency of every provider call, in milliseconds.
    #[arg(long, default_value_t = 20)]
    latency_ms: u64,
    /// Provider calls per second: enforced by the sandbox and configured as tokenwarden's
    /// own TikTok rate limit.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u32).range(1..))]
    rate_limit: u32,
    /// Database and queue.
    #[arg(long, value_enum, default_value_t = Backend::PostgresRedis)]
    backend: Backend,
    /// Accounts refreshed by the guide's sequential loop (for the comparison).
    #[arg(long, default_value_t = 200)]
    sample: usize,
    /// Refresh jobs a worker runs at once (--worker-concurrency).
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// Connections seeded at once.
    #[arg(long, default_value_t = 64)]
    seed_concurrency: usize,
    /// Give up waiting for the workers after this many seconds.
    #[arg(long, default_value_t = 1800)]
    timeout_s: u64,
    /// Connected TikTok accounts whose tokens are not due (inserted directly), so the
    /// sweep's cost against table size shows.
    #[arg(long, default_value_t = 0)]
    idle_accounts: u64,
    /// Deactivated TikTok accounts whose tokens expired long ago (inserted directly).
    #[arg(long, default_value_t = 0)]
    dead_accounts: u64,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if std::env::var_os("RUST_LOG").is_some() {
        tokenwarden::telemetry::init(tokenwarden::config::LogFormat::Text);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    match cli.command {
        Command::Sweep(args) => runtime.block_on(sweep(args)),
        Command::Fanout(args) => runtime.block_on(fanout::fanout(args)),
    }
}

/// A random lowercase-hex suffix for database names and Redis prefixes.
fn unique_name(prefix: &str) -> anyhow::Result<String> {
    let mut bytes = [0u8; 6];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| anyhow::anyhow!("the system random generator failed"))?;
    Ok(format!("{prefix}_{}", hex::encode(bytes)))
}

/// What has to be removed after the run.
#[derive(Default)]
struct Cleanup {
    /// (admin URL, database name) of a PostgreSQL database created for the run.
    database: Option<(String, String)>,
    /// (Redis URL, key prefix).
    redis: Option<(String, String)>,
}

impl Cleanup {
    async fn run(&self) {
        if let Some((admin_url, name)) = &self.database {
            let dropped = async {
                let admin = sea_orm::Database::connect(admin_url.as_str()).await?;
                admin
                    .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await?;
                admin.close().await?;
                Ok::<_, sea_orm::DbErr>(())
            }
            .await;
            match dropped {
                Ok(()) => eprintln!("cleanup: dropped database {name}"),
                Err(err) => eprintln!("cleanup: could not drop database {name}: {err}"),
            }
        }
        if let Some((url, prefix)) = &self.redis {
            match delete_redis_keys(url, prefix).await {
                Ok(n) => eprintln!("cleanup: deleted {n} Redis keys under {prefix}"),
                Err(err) => eprintln!("cleanup: could not delete Redis keys {prefix}*: {err:#}"),
            }
        }
    }
}

async fn delete_redis_keys(url: &str, prefix: &str) -> anyhow::Result<usize> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await?;
    for chunk in keys.chunks(500) {
        let _: () = redis::cmd("DEL").arg(chunk).query_async(&mut conn).await?;
    }
    Ok(keys.len())
}

async fn sweep(args: SweepArgs) -> anyhow::Result<()> {
    let mut cleanup = Cleanup::default();
    let dir = tempfile::tempdir().context("temp dir")?;
    let result = sweep_in(&args, &dir, &mut cleanup).await;
    cleanup.run().await;
    match result {
        Ok(true) => Ok(()),
        Ok(false) => bail!("correctness checks failed (see above)"),
        Err(err) => Err(err),
    }
}

/// Creates the database (and Redis prefix) and returns the tokenwarden flags selecting them.
async fn prepare_backend(
    args: &SweepArgs,
    dir: &tempfile::TempDir,
    cleanup: &mut Cleanup,
) -> anyhow::Result<Vec<String>> {
    match args.backend {
        Backend::Sqlite => {
            let url = format!("sqlite://{}/tokenwarden.db?mode=rwc", dir.path().display());
            let queue = dir.path().join("jobs.db");
            Ok(vec![
                "--database-url".into(),
                url,
                "--queue-file".into(),
                queue.display().to_string(),
            ])
        }
        Backend::PostgresRedis => {
            let admin_url = std::env::var("BENCH_POSTGRES_URL")
                .unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned());
            let admin = sea_orm::Database::connect(admin_url.as_str())
                .await
                .with_context(|| {
                    format!(
                        "PostgreSQL is not reachable at {admin_url}. Start it with \
                         `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` \
                         or point BENCH_POSTGRES_URL at a server"
                    )
                })?;
            let redis_url =
                std::env::var("REDIS_URL").unwrap_or_else(|_| DEFAULT_REDIS_URL.to_owned());
            let ping = async {
                let client = redis::Client::open(redis_url.as_str())?;
                let mut conn = client.get_multiplexed_async_connection().await?;
                redis::cmd("PING").query_async::<String>(&mut conn).await
            };
            tokio::time::timeout(Duration::from_secs(5), ping)
                .await
                .map_err(|_| anyhow::anyhow!("timed out"))
                .and_then(|r| r.map_err(anyhow::Error::from))
                .with_context(|| {
                    format!(
                        "Redis is not reachable at {redis_url}. Start it with `redis-server \
                         --daemonize yes --bind 127.0.0.1 --port 6379 --save \"\" --appendonly no` \
                         or point REDIS_URL at a server"
                    )
                })?;
            let name = unique_name("tw_bench")?;
            admin
                .execute_unprepared(&format!("CREATE DATABASE {name}"))
                .await
                .with_context(|| format!("could not create the database {name}"))?;
            admin.close().await.ok();
            let base = admin_url
                .rsplit_once('/')
                .map(|(base, _)| base.to_owned())
                .context("BENCH_POSTGRES_URL needs a database path")?;
            cleanup.database = Some((admin_url.clone(), name.clone()));
            let prefix = unique_name("tw_bench")?;
            cleanup.redis = Some((redis_url.clone(), prefix.clone()));
            Ok(vec![
                "--database-url".into(),
                format!("{base}/{name}"),
                "--redis-url".into(),
                redis_url,
                "--redis-prefix".into(),
                prefix,
            ])
        }
    }
}

async fn sweep_in(
    args: &SweepArgs,
    dir: &tempfile::TempDir,
    cleanup: &mut Cleanup,
) -> anyhow::Result<bool> {
    // 1. The provider sandbox: fast and unlimited while seeding.
    let sandbox = sandbox::Sandbox::new(sandbox::SandboxConfig::default());
    let sandbox_addr = sandbox.spawn(0).await.context("starting the sandbox")?;

    // 2. Database, queue and app.
    let mut flags = prepare_backend(args, dir, cleanup).await?;
    let key_file = dir.path().join("tokenwarden.keys");
    let admin_key = format!("tw_bench_admin_{}", unique_name("k")?);
    flags.extend(
        [
            "--listen",
            "127.0.0.1:0",
            "--bootstrap-admin-key",
            &admin_key,
            "--sandbox-url",
            &format!("http://{sandbox_addr}/sandbox"),
            "--key-file",
            &key_file.display().to_string(),
            "--tiktok-rate-limit",
            &args.rate_limit.to_string(),
            "--instagram-rate-limit",
            "0",
            "--worker-concurrency",
            &args.concurrency.to_string(),
            "--provider-timeout",
            "10s",
            "--sweep-schedule",
            "* * * * * *",
        ]
        .map(str::to_owned),
    );
    let mut config =
        tokenwarden::Config::try_parse_from(std::iter::once("bench".to_owned()).chain(flags))
            .context("tokenwarden configuration")?;
    if args.backend == Backend::Sqlite {
        // An inherited REDIS_URL must not switch the SQLite run to Redis.
        config.queue.redis_url = None;
    }
    let mut app = tokenwarden::build_app(&config)
        .await
        .context("building the tokenwarden app")?;
    // The bench's own queries (progress polling, checks) go through an uncounted clone;
    // the workers' connection counts every statement it runs.
    let db = app.state.db.clone();
    let statements = Statements::default();
    app.state.db.set_metric_callback(statements.callback());
    let engine = app.state.engine.clone();
    let tenant_id = service::identity::tenants::ensure(&db, TENANT).await?.id;
    println!(
        "bench sweep: backend={} accounts={} idle={} dead={} sample={} latency_ms={} rate_limit={} concurrency={}",
        args.backend.name(),
        args.accounts,
        args.idle_accounts,
        args.dead_accounts,
        args.sample,
        args.latency_ms,
        args.rate_limit,
        args.concurrency
    );

    // 3. Seed N + S connected accounts.
    let total = args.accounts + args.sample;
    let clock = Instant::now();
    let ids = seed_connected(&db, &engine, tenant_id, total, args.seed_concurrency).await?;
    let seed_s = clock.elapsed().as_secs_f64();
    eprintln!("seeded {total} accounts in {seed_s:.2} s");
    let (main_ids, sample_ids) = ids.split_at(args.accounts);
    if args.idle_accounts + args.dead_accounts > 0 {
        let clock = Instant::now();
        seed_rows(&db, tenant_id, args.idle_accounts, Seeded::Idle).await?;
        seed_rows(&db, tenant_id, args.dead_accounts, Seeded::Dead).await?;
        // See the ANALYZE below.
        db.execute_unprepared("ANALYZE").await?;
        eprintln!(
            "inserted {} idle and {} dead accounts in {:.2} s",
            args.idle_accounts,
            args.dead_accounts,
            clock.elapsed().as_secs_f64()
        );
        // Dead rows are parked once, by the first sweep after they appear: time it apart.
        let context = app.job_context();
        let clock = Instant::now();
        let report = jobs::sweep_expiring::run(&context).await?;
        println!(
            "warm-up sweep (parks dead rows once): {:.2} s, queued={} expired={}",
            clock.elapsed().as_secs_f64(),
            report.queued,
            report.expired
        );
    }
    // Fresh tables have no planner statistics yet (autovacuum analyzes them a minute or so
    // later); production tables have them. Without, PostgreSQL plans the sweep's
    // correlated NOT EXISTS as a nested loop over both tables (seconds per statement at
    // 20 000 rows), which measures the missing statistics instead of the sweep.
    db.execute_unprepared("ANALYZE").await?;
    expire_in(&db, main_ids, 30).await?;
    sandbox.update_config(sandbox::ConfigPatch {
        latency_ms: Some(args.latency_ms),
        rate_limit_per_s: Some(Some(args.rate_limit)),
        ..Default::default()
    });
    let before = sandbox.stats().tiktok;

    // 4. The real system: scheduled sweeps + the refresh queue.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let context = app.job_context();
    let started_at = Utc::now();
    let clock = Instant::now();
    let cpu_before = Cpu::read(&db).await;
    let statements_before = statements.snapshot();
    let commits_before = Commits::read(&db).await;
    let workers = tokio::spawn(jobs::run_workers(context.clone(), async {
        let _ = stopped.await;
    }));
    let deadline = clock + Duration::from_secs(args.timeout_s);
    let mut last_report = Instant::now();
    loop {
        let done = refreshed(&db).await?;
        if done >= args.accounts as u64 {
            break;
        }
        if workers.is_finished() {
            bail!(
                "the workers stopped early ({done} of {} refreshed)",
                args.accounts
            );
        }
        if Instant::now() > deadline {
            bail!(
                "timed out after {} s ({done} of {} refreshed)",
                args.timeout_s,
                args.accounts
            );
        }
        if last_report.elapsed() >= Duration::from_secs(5) {
            eprintln!(
                "  {:>6.1} s: {done}/{} refreshed",
                clock.elapsed().as_secs_f64(),
                args.accounts
            );
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let system_s = clock.elapsed().as_secs_f64();
    let finished_at = Utc::now();
    let cpu_after = Cpu::read(&db).await;
    let statements_after = statements.snapshot();
    let commits_after = Commits::read(&db).await;
    drop(stop);
    match workers.await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => eprintln!("workers stopped with an error: {err:#}"),
        Err(err) => eprintln!("the workers task failed: {err}"),
    }
    let after_system = sandbox.stats().tiktok;

    // 5. The maintenance guide: one refresh after another.
    expire_in(&db, sample_ids, 30).await?;
    let clock = Instant::now();
    for &id in sample_ids {
        let options = RefreshOptions::in_job(Actor::system(Some(tenant_id), "bench"));
        let report = service::tokens::refresh::refresh(&db, &engine, tenant_id, id, options)
            .await
            .with_context(|| format!("sequential refresh of account {id}"))?;
        if report.kind != RefreshKind::Refreshed {
            bail!(
                "sequential refresh of account {id}: {:?} {:?}",
                report.kind,
                report.error
            );
        }
    }
    let sequential_s = clock.elapsed().as_secs_f64();

    // 6. Correctness.
    let stats = sandbox.stats().tiktok;
    // The seeded dead rows are deactivated on purpose; any other account must be ACTIVE.
    let not_active = social_account::Entity::find()
        .filter(social_account::Column::Status.ne("ACTIVE"))
        .filter(social_account::Column::DeactivatedAt.is_null())
        .count(&db)
        .await?;
    let ok = stats.reused_refresh_tokens == 0 && not_active == 0;

    // Where the time went.
    let diagnostics = Diagnostics::load(&db, started_at, finished_at).await?;

    // 7. Report.
    let n = args.accounts as f64;
    let rate = n / system_s;
    let s = args.sample as f64;
    let sequential_per_account = if args.sample > 0 {
        sequential_s / s
    } else {
        f64::NAN
    };
    let ratio = sequential_per_account / (system_s / n);
    let efficiency = rate / f64::from(args.rate_limit);
    println!();
    println!(
        "{:<22} {:>9} {:>9} {:>11}",
        "phase", "accounts", "seconds", "accounts/s"
    );
    for (phase, count, secs) in [
        ("seed (connect)", total, seed_s),
        ("system (workers)", args.accounts, system_s),
        ("sequential (guide)", args.sample, sequential_s),
    ] {
        println!(
            "{phase:<22} {count:>9} {secs:>9.2} {:>11.1}",
            count as f64 / secs
        );
    }
    println!();
    diagnostics.print(system_s);
    cpu_before.print_since(&cpu_after, args.accounts);
    Statements::print_since(&statements_before, &statements_after, args.accounts);
    commits_before.print_since(&commits_after, args.accounts);
    println!(
        "provider (during workers): refresh_calls={} rate_limited_429={} faults={}",
        after_system.refresh_calls - before.refresh_calls,
        after_system.rate_limited - before.rate_limited,
        after_system.faults_injected - before.faults_injected,
    );
    println!(
        "correctness: reused_refresh_tokens={} non_active_accounts={} refresh_calls_total={} -> {}",
        stats.reused_refresh_tokens,
        not_active,
        stats.refresh_calls,
        if ok { "OK" } else { "FAILED" }
    );
    println!(
        "sweep: accounts={} backend={} latency_ms={} rate_limit={} elapsed_s={system_s:.2} \
         rate={rate:.1}/s ratio_vs_sequential={ratio:.1} efficiency={efficiency:.2}",
        args.accounts,
        args.backend.name(),
        args.latency_ms,
        args.rate_limit,
    );
    drop(context);
    drop(app);
    db.close().await.ok();
    Ok(ok)
}

/// Accounts with at least one successful refresh.
async fn refreshed(db: &DatabaseConnection) -> anyhow::Result<u64> {
    Ok(refresh_attempt::Entity::find()
        .select_only()
        .column(refresh_attempt::Column::AccountId)
        .distinct()
        .filter(refresh_attempt::Column::Outcome.eq("SUCCEEDED"))
        .count(db)
        .await?)
}

/// Connects `count` TikTok accounts straight through the provider client (authorize,
/// code exchange, encrypted storage), as the API tests' `seed_connected` does. Returns the
/// account ids in seeding order.
async fn seed_connected(
    db: &DatabaseConnection,
    engine: &Arc<Engine>,
    tenant_id: i64,
    count: usize,
    concurrency: usize,
) -> anyhow::Result<Vec<i64>> {
    let redirect = engine.redirect_uri(Platform::TikTok);
    let provider = engine
        .providers
        .get(Platform::TikTok)
        .map_err(|e| anyhow::anyhow!("TikTok provider: {e:?}"))?;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let run = unique_name("u")?;
    let seeded: Vec<anyhow::Result<i64>> = futures::stream::iter(0..count)
        .map(|i| {
            let provider = provider.clone();
            let redirect = redirect.clone();
            let client = client.clone();
            let run = run.clone();
            async move {
                let url = provider
                    .authorize_url(&AuthorizeRequest {
                        redirect_uri: redirect.clone(),
                        state: "seed".into(),
                        scopes: vec!["user.info.basic".into(), "video.publish".into()],
                        pkce_challenge: None,
                    })
                    .map_err(|e| anyhow::anyhow!("authorize url: {e:?}"))?;
                let user = format!("{run}_{i}");
                let response = client
                    .get(format!("{url}&sandbox_user={user}"))
                    .send()
                    .await?;
                let location = response
                    .headers()
                    .get("location")
                    .context("the sandbox authorize did not redirect")?
                    .to_str()?
                    .to_owned();
                let code = url::Url::parse(&location)?
                    .query_pairs()
                    .find(|(k, _)| k == "code")
                    .map(|(_, v)| v.into_owned())
                    .with_context(|| format!("no code in {location}"))?;
                let set = provider
                    .exchange_code(&code, &redirect, None)
                    .await
                    .map_err(|e| anyhow::anyhow!("code exchange: {e:?}"))?;
                let now = Utc::now();
                let account = social_account::ActiveModel {
                    tenant_id: Set(tenant_id),
                    platform: Set(Platform::TikTok),
                    provider_account_id: Set(set.provider_account_id.clone()),
                    username: Set(Some(user)),
                    display_name: Set(None),
                    avatar_url: Set(None),
                    status: Set(AccountStatus::Active),
                    status_reason: Set(None),
                    deactivated_at: Set(None),
                    connected_at: Set(Some(now)),
                    purged_at: Set(None),
                    created_at: Set(now),
                    updated_at: Set(now),
                    ..Default::default()
                }
                .insert(db)
                .await?;
                service::tokens::store_connected(db, &engine.vault(), &account, &set)
                    .await
                    .map_err(|e| anyhow::anyhow!("storing tokens: {e}"))?;
                Ok(account.id)
            }
        })
        .buffered(concurrency.max(1))
        .collect()
        .await;
    seeded.into_iter().collect()
}

/// Accounts inserted straight into the tables (no provider involved).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Seeded {
    /// ACTIVE, token valid for another 20 hours: never due during the run.
    Idle,
    /// DEACTIVATED 100 days ago, tokens expired long ago.
    Dead,
}

/// Inserts `count` accounts with their tokens in a few set-based statements (a recursive
/// series, so it runs on SQLite and PostgreSQL alike). Timestamps are bound values, so
/// they are stored exactly as the service stores them.
async fn seed_rows(
    db: &DatabaseConnection,
    tenant_id: i64,
    count: u64,
    kind: Seeded,
) -> anyhow::Result<()> {
    use sea_orm::{Statement, Value};
    const CHUNK: u64 = 50_000;
    let now = Utc::now();
    let day = chrono::Duration::days(1);
    let (label, status, deactivated_at, expires_at, refresh_expires_at, issued_at) = match kind {
        Seeded::Idle => (
            "idle",
            AccountStatus::Active,
            None,
            now + chrono::Duration::hours(20),
            now + day * 300,
            now - chrono::Duration::hours(4),
        ),
        Seeded::Dead => (
            "dead",
            AccountStatus::Deactivated,
            Some(now - day * 100),
            now - day * 100,
            now - day * 10,
            now - day * 101,
        ),
    };
    let backend = db.get_database_backend();
    let run = unique_name(label)?;
    let mut start = 0;
    while start < count {
        let n = CHUNK.min(count - start);
        let series = format!(
            "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < {n})"
        );
        let accounts = format!(
            "{series} INSERT INTO social_accounts (tenant_id, platform, provider_account_id, \
             username, status, deactivated_at, connected_at, created_at, updated_at) \
             SELECT $1, 'tiktok', $2 || '-' || ({start} + n), $2 || '-' || ({start} + n), $3, \
             $4, $5, $5, $5 FROM g"
        );
        db.execute_raw(Statement::from_sql_and_values(
            backend,
            accounts,
            [
                Value::from(tenant_id),
                Value::from(run.clone()),
                Value::from(status),
                Value::from(deactivated_at),
                Value::from(now - day * 200),
            ],
        ))
        .await?;
        start += n;
    }
    let tokens = "INSERT INTO oauth_tokens (account_id, tenant_id, platform, key_id, \
         access_token_enc, expires_at, refresh_expires_at, issued_at, scopes, version, \
         failure_count, created_at, updated_at) \
         SELECT id, tenant_id, platform, 'seed', 'x', $1, $2, $3, '', 0, 0, $4, $4 \
         FROM social_accounts WHERE provider_account_id LIKE $5";
    db.execute_raw(Statement::from_sql_and_values(
        backend,
        tokens,
        [
            Value::from(expires_at),
            Value::from(Some(refresh_expires_at)),
            Value::from(issued_at),
            Value::from(now),
            Value::from(format!("{run}-%")),
        ],
    ))
    .await?;
    Ok(())
}

/// CPU time of this process (service + in-process sandbox) and of the PostgreSQL
/// backends serving its database, in clock ticks (100 per second on Linux).
struct Cpu {
    process: Option<u64>,
    /// pid → ticks of each backend connected to the bench database.
    backends: BTreeMap<i64, u64>,
}

impl Cpu {
    /// utime + stime (fields 14 and 15) of `/proc/<pid>/stat`.
    fn ticks(pid: &str) -> Option<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name may hold spaces; fields after it are plain.
        let rest = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
    }

    async fn read(db: &DatabaseConnection) -> Self {
        let mut backends = BTreeMap::new();
        if db.get_database_backend() == sea_orm::DbBackend::Postgres {
            let pids = db
                .query_all_raw(sea_orm::Statement::from_string(
                    sea_orm::DbBackend::Postgres,
                    "SELECT pid::bigint AS pid FROM pg_stat_activity WHERE datname = current_database()",
                ))
                .await
                .unwrap_or_default();
            for row in pids {
                if let Ok(pid) = row.try_get::<i64>("", "pid")
                    && let Some(ticks) = Self::ticks(&pid.to_string())
                {
                    backends.insert(pid, ticks);
                }
            }
        }
        Self {
            process: Self::ticks("self"),
            backends,
        }
    }

    fn print_since(&self, after: &Cpu, refreshes: usize) {
        let per = |ticks: u64| ticks as f64 * 10.0 / refreshes.max(1) as f64;
        let process = after
            .process
            .zip(self.process)
            .map(|(a, b)| format!("{:.2}", per(a.saturating_sub(b))))
            .unwrap_or_else(|| "-".into());
        // A backend that appeared during the run counts from zero.
        let backends: u64 = after
            .backends
            .iter()
            .map(|(pid, ticks)| ticks.saturating_sub(*self.backends.get(pid).unwrap_or(&0)))
            .sum();
        let backends = if after.backends.is_empty() {
            "-".to_owned()
        } else {
            format!("{:.2}", per(backends))
        };
        println!(
            "cpu ms per refresh: bench process (service + sandbox)={process} postgres backends={backends}"
        );
    }
}

/// Statements the workers' database connection ran, by kind (`SELECT social_accounts`,
/// `UPDATE oauth_tokens`, ...), from sea-orm's per-statement callback. Transaction
/// control (BEGIN, COMMIT) does not pass through it: [`Commits`] counts those.
#[derive(Clone, Default)]
struct Statements(Arc<std::sync::Mutex<BTreeMap<String, u64>>>);

impl Statements {
    fn callback(&self) -> impl Fn(&sea_orm::metric::Info<'_>) + Send + Sync + 'static {
        let counts = self.0.clone();
        move |info| {
            let kind = statement_kind(&info.statement.sql);
            let mut counts = counts.lock().unwrap_or_else(|p| p.into_inner());
            *counts.entry(kind).or_insert(0) += 1;
        }
    }

    fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn print_since(
        before: &BTreeMap<String, u64>,
        after: &BTreeMap<String, u64>,
        refreshes: usize,
    ) {
        let per = |n: u64| n as f64 / refreshes.max(1) as f64;
        let mut rows: Vec<(String, u64)> = after
            .iter()
            .map(|(k, v)| (k.clone(), v.saturating_sub(*before.get(k).unwrap_or(&0))))
            .filter(|(_, v)| *v > 0)
            .collect();
        rows.sort_by_key(|row| std::cmp::Reverse(row.1));
        let total: u64 = rows.iter().map(|(_, v)| v).sum();
        let detail: Vec<String> = rows
            .iter()
            .map(|(k, v)| format!("{k}={:.2}", per(*v)))
            .collect();
        println!(
            "statements per refresh (workers' connection): total={:.2} {}",
            per(total),
            detail.join(" ")
        );
    }
}

/// `SELECT oauth_tokens`, `UPDATE social_accounts`, ...: the verb and the first table.
fn statement_kind(sql: &str) -> String {
    let words: Vec<&str> = sql.split_whitespace().take(400).collect();
    let verb = words.first().map(|w| w.to_uppercase()).unwrap_or_default();
    let after = match verb.as_str() {
        "SELECT" => "FROM",
        "UPDATE" => "UPDATE",
        "INSERT" => "INTO",
        "DELETE" => "FROM",
        _ => return verb,
    };
    let table = words
        .iter()
        .position(|w| w.eq_ignore_ascii_case(after))
        .and_then(|i| words.get(i + 1))
        .map(|t| t.trim_matches(|c: char| c == '"' || c == '(' || c == ','))
        .unwrap_or("?");
    format!("{verb} {table}")
}

/// Transactions committed and rolled back in the run's database (`pg_stat_database`:
/// every autocommit statement is a transaction of its own). PostgreSQL only.
struct Commits(Option<(i64, i64)>);

impl Commits {
    async fn read(db: &DatabaseConnection) -> Self {
        if db.get_database_backend() != sea_orm::DbBackend::Postgres {
            return Self(None);
        }
        // The statistics are updated when a backend's transaction ends; force a fresh view.
        let row = db
            .query_one_raw(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Postgres,
                "SELECT xact_commit::bigint AS c, xact_rollback::bigint AS r                  FROM pg_stat_database WHERE datname = current_database()",
            ))
            .await
            .ok()
            .flatten();
        Self(row.and_then(|row| {
            Some((
                row.try_get::<i64>("", "c").ok()?,
                row.try_get::<i64>("", "r").ok()?,
            ))
        }))
    }

    fn print_since(&self, after: &Commits, refreshes: usize) {
        if let (Some((c0, r0)), Some((c1, r1))) = (self.0, after.0) {
            let per = |n: i64| n as f64 / refreshes.max(1) as f64;
            println!(
                "transactions per refresh (pg_stat_database, whole database incl. the bench's polling): commits={:.2} rollbacks={:.2}",
                per(c1 - c0),
                per(r1 - r0)
            );
        }
    }
}

/// Moves the tokens' expiry to `minutes` from now (inside the 1 h TikTok window).
async fn expire_in(db: &DatabaseConnection, ids: &[i64], minutes: i64) -> anyhow::Result<()> {
    let at = Utc::now() + chrono::Duration::minutes(minutes);
    for chunk in ids.chunks(1000) {
        oauth_token::Entity::update_many()
            .col_expr(oauth_token::Column::ExpiresAt, Expr::value(at))
            .filter(oauth_token::Column::AccountId.is_in(chunk.iter().copied()))
            .exec(db)
            .await?;
    }
    Ok(())
}

/// (started_at, finished_at, outcome, error_code, latency_ms) of an attempt.
type AttemptRow = (DateTime<Utc>, DateTime<Utc>, String, Option<String>, i32);

/// Timings read back from `refresh_attempts` and `provider_calls` of the workers' run.
struct Diagnostics {
    /// Attempts by outcome (and error code).
    outcomes: BTreeMap<String, usize>,
    first_start: Option<DateTime<Utc>>,
    last_finish: Option<DateTime<Utc>>,
    started_at: DateTime<Utc>,
    /// Job duration (attempt latency) of successful attempts, ms, sorted.
    job_ms: Vec<i32>,
    /// Provider refresh call latency (HTTP incl. sandbox latency), ms, sorted.
    provider_ms: Vec<i32>,
    /// Successful attempts finished per second since the start.
    per_second: BTreeMap<i64, usize>,
}

impl Diagnostics {
    async fn load(
        db: &DatabaseConnection,
        started_at: DateTime<Utc>,
        finished_at: DateTime<Utc>,
    ) -> anyhow::Result<Self> {
        let attempts: Vec<AttemptRow> = refresh_attempt::Entity::find()
            .select_only()
            .column(refresh_attempt::Column::StartedAt)
            .column(refresh_attempt::Column::FinishedAt)
            .column(refresh_attempt::Column::Outcome)
            .column(refresh_attempt::Column::ErrorCode)
            .column(refresh_attempt::Column::LatencyMs)
            .into_tuple()
            .all(db)
            .await?;
        let mut outcomes = BTreeMap::new();
        let mut job_ms = Vec::new();
        let mut per_second = BTreeMap::new();
        let mut first_start: Option<DateTime<Utc>> = None;
        let mut last_finish: Option<DateTime<Utc>> = None;
        for (start, finish, outcome, code, latency) in attempts {
            let key = match code {
                Some(code) => format!("{outcome}/{code}"),
                None => outcome.clone(),
            };
            *outcomes.entry(key).or_insert(0) += 1;
            first_start = Some(first_start.map_or(start, |f| f.min(start)));
            last_finish = Some(last_finish.map_or(finish, |l| l.max(finish)));
            if outcome == "SUCCEEDED" {
                job_ms.push(latency);
                *per_second
                    .entry((finish - started_at).num_seconds())
                    .or_insert(0) += 1;
            }
        }
        job_ms.sort_unstable();
        let mut provider_ms: Vec<i32> = provider_call::Entity::find()
            .select_only()
            .column(provider_call::Column::LatencyMs)
            .filter(provider_call::Column::Operation.eq("refresh"))
            .filter(provider_call::Column::OccurredAt.gte(started_at))
            .filter(provider_call::Column::OccurredAt.lte(finished_at))
            .into_tuple()
            .all(db)
            .await?;
        provider_ms.sort_unstable();
        Ok(Self {
            outcomes,
            first_start,
            last_finish,
            started_at,
            job_ms,
            provider_ms,
            per_second,
        })
    }

    fn print(&self, system_s: f64) {
        let pct = |v: &[i32], p: f64| -> String {
            if v.is_empty() {
                return "-".into();
            }
            let i = ((v.len() - 1) as f64 * p).round() as usize;
            v[i].to_string()
        };
        let since = |t: Option<DateTime<Utc>>| {
            t.map(|t| {
                format!(
                    "{:.2}",
                    (t - self.started_at).num_milliseconds() as f64 / 1e3
                )
            })
            .unwrap_or_else(|| "-".into())
        };
        println!(
            "timeline: first job started at +{} s, last attempt finished at +{} s (measured {system_s:.2} s)",
            since(self.first_start),
            since(self.last_finish)
        );
        println!(
            "job duration ms (successful attempts, incl. DB work + provider wait): p50={} p90={} p99={} max={}",
            pct(&self.job_ms, 0.5),
            pct(&self.job_ms, 0.9),
            pct(&self.job_ms, 0.99),
            pct(&self.job_ms, 1.0)
        );
        println!(
            "provider refresh call ms (HTTP only, after the local rate-limit wait): p50={} p90={} p99={} n={}",
            pct(&self.provider_ms, 0.5),
            pct(&self.provider_ms, 0.9),
            pct(&self.provider_ms, 0.99),
            self.provider_ms.len()
        );
        let outcomes: Vec<String> = self
            .outcomes
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        println!("attempts: {}", outcomes.join(" "));
        let seconds: Vec<String> = self
            .per_second
            .iter()
            .map(|(s, n)| format!("{s}:{n}"))
            .collect();
        println!("successes per second (second:count): {}", seconds.join(" "));
    }
}
