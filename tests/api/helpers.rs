//! `TestApp`: a running server over a fresh database, plus request helpers.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use api::App;
use chrono::Utc;
use entity::{oauth_token, social_account};
use sea_orm::{ActiveModelTrait, ConnectionTrait, DatabaseConnection, Set};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokenwarden::Config;
use tokio::{net::TcpListener, sync::oneshot};

/// The PostgreSQL server tests create their databases on.
pub fn postgres_admin_url() -> String {
    std::env::var("TOKENWARDEN_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// Which database a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs each named `async fn(TestApp)` once on SQLite and once on PostgreSQL.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use $crate::helpers::{Backend, TestApp};

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(TestApp::spawn(Backend::Sqlite).await).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(TestApp::spawn(Backend::Postgres).await).await
            }
        }
    )*};
}

/// The Redis server tests use, with a fresh key prefix per test.
pub fn redis_url() -> String {
    std::env::var("TOKENWARDEN_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// Arguments that switch a test server to production mode (Redis queue) with its own
/// key prefix. Panics with how to start Redis when it is down.
pub fn redis_args() -> Vec<String> {
    let url = redis_url();
    let addr = url
        .trim_start_matches("redis://")
        .split('/')
        .next()
        .unwrap_or("127.0.0.1:6379")
        .to_owned();
    if std::net::TcpStream::connect(&addr).is_err() {
        panic!(
            "Redis is not reachable at {url}. Start it with `redis-server --daemonize yes \
             --bind 127.0.0.1 --port 6379 --save \"\" --appendonly no` or point \
             TOKENWARDEN_TEST_REDIS_URL at a server"
        );
    }
    vec![
        "--redis-url".into(),
        url,
        "--redis-prefix".into(),
        redis_prefix(),
    ]
}

/// Runs each named `async fn(TestApp)` in the three deployment modes: SQLite with the
/// embedded queue, PostgreSQL with the embedded queue, PostgreSQL with Redis.
#[macro_export]
macro_rules! in_every_mode {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use $crate::helpers::{Backend, TestApp, redis_args};

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(TestApp::spawn(Backend::Sqlite).await).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(TestApp::spawn(Backend::Postgres).await).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres_redis() {
                let args = redis_args();
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                super::$name(TestApp::spawn_with(Backend::Postgres, &args).await).await
            }
        }
    )*};
}

/// A fresh Redis key prefix for one test, `tw_test_<unix seconds>_r_<random>`. The first call
/// in a test process deletes the keys of prefixes older than [`STALE_TEST_DATABASE_SECS`]
/// (nothing else removes a finished test's keys, and a day of runs used to leave a million
/// behind).
pub fn redis_prefix() -> String {
    static SWEEP: std::sync::Once = std::sync::Once::new();
    SWEEP.call_once(drop_stale_redis_prefixes);
    format!(
        "{TEST_DATABASE_PREFIX}{}_{}",
        unix_seconds(),
        unique_name("r")
    )
}

/// Best effort, bounded: SCANs `tw_test_*` for at most two seconds and UNLINKs the keys whose
/// prefix carries a creation time older than the stale limit. Keys without a time are left.
fn drop_stale_redis_prefixes() {
    let Ok(client) = redis::Client::open(redis_url()) else {
        return;
    };
    let Ok(mut conn) = client.get_connection_with_timeout(std::time::Duration::from_secs(2)) else {
        return;
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    let now = unix_seconds();
    let mut cursor: u64 = 0;
    loop {
        let Ok((next, keys)): Result<(u64, Vec<String>), _> = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{TEST_DATABASE_PREFIX}*"))
            .arg("COUNT")
            .arg(1000)
            .query(&mut conn)
        else {
            return;
        };
        let stale: Vec<&String> = keys
            .iter()
            .filter(|key| is_stale_test_name(key, now))
            .collect();
        if !stale.is_empty() {
            let _: Result<(), _> = redis::cmd("UNLINK").arg(&stale).query(&mut conn);
        }
        cursor = next;
        if cursor == 0 || std::time::Instant::now() > deadline {
            return;
        }
    }
}

/// Whether a test database name or Redis key (`tw_test_<unix seconds>_...`) belongs to a run
/// older than the stale limit. A name without a time is not ours to judge.
fn is_stale_test_name(name: &str, now: u64) -> bool {
    name.strip_prefix(TEST_DATABASE_PREFIX)
        .and_then(|rest| rest.split('_').next())
        .and_then(|secs| secs.parse::<u64>().ok())
        .is_some_and(|created| now.saturating_sub(created) > STALE_TEST_DATABASE_SECS)
}

/// A unique name for a test database.
pub fn unique_name(prefix: &str) -> String {
    let mut bytes = [0u8; 6];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .expect("system random");
    format!("{prefix}_{}", hex::encode(bytes))
}

/// Creates a fresh, empty database and returns its URL. PostgreSQL must be running:
/// the panic message says how to start it.
pub async fn fresh_database(backend: Backend, dir: &TempDir) -> String {
    match backend {
        Backend::Sqlite => format!("sqlite://{}/tokenwarden.db?mode=rwc", dir.path().display()),
        Backend::Postgres => {
            let admin_url = postgres_admin_url();
            let admin = sea_orm::Database::connect(&admin_url)
                .await
                .unwrap_or_else(|err| {
                    panic!(
                        "PostgreSQL is not reachable at {admin_url} ({err}). Start it with \
                     `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` \
                     or point TOKENWARDEN_TEST_POSTGRES_URL at a server"
                    )
                });
            drop_stale_databases(&admin).await;
            let name = format!(
                "{TEST_DATABASE_PREFIX}{}_{}",
                unix_seconds(),
                unique_name("db")
            );
            admin
                .execute_unprepared(&format!("CREATE DATABASE {name}"))
                .await
                .expect("create test database");
            let base = admin_url
                .rsplit_once('/')
                .map(|(base, _)| base.to_owned())
                .expect("database url with a path");
            format!("{base}/{name}")
        }
    }
}

/// Test databases are named `tw_test_<unix seconds>_db_<random>`, so any run can tell how old
/// one is.
const TEST_DATABASE_PREFIX: &str = "tw_test_";

/// No test runs this long: a test database older than this belongs to a finished run.
const STALE_TEST_DATABASE_SECS: u64 = 20 * 60;

fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or_default()
}

/// Drops the databases of earlier runs, so repeated runs do not fill the disk. Best effort:
/// concurrent tests may race to drop the same database, and the loser's error is ignored.
async fn drop_stale_databases(admin: &sea_orm::DatabaseConnection) {
    use sea_orm::{ConnectionTrait, Statement};
    let Ok(rows) = admin
        .query_all_raw(Statement::from_string(
            admin.get_database_backend(),
            format!("SELECT datname FROM pg_database WHERE datname LIKE '{TEST_DATABASE_PREFIX}%'"),
        ))
        .await
    else {
        return;
    };
    let now = unix_seconds();
    for row in rows {
        let Ok(name) = row.try_get::<String>("", "datname") else {
            continue;
        };
        if is_stale_test_name(&name, now) {
            let _ = admin
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .await;
        }
    }
}

/// Counts the SQL statements a connection runs.
#[derive(Clone, Default)]
pub struct QueryCounter(Arc<AtomicUsize>);

impl QueryCounter {
    pub fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// Where tests send users after a connection (allowed by the test configuration).
pub const APP_REDIRECT: &str = "https://app.example.test/connected";

/// A running server.
pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    /// The bootstrap ADMIN key of tenant `default`.
    pub admin_key: String,
    pub db: DatabaseConnection,
    pub queries: QueryCounter,
    /// The job context of this server (to run workers in-process).
    pub jobs: Arc<jobs::JobContext>,
    /// The configuration the server runs with.
    pub config: Config,
    /// The provider simulator this server talks to.
    pub sandbox: sandbox::Sandbox,
    pub sandbox_addr: SocketAddr,
    _dir: TempDir,
    shutdown: Option<oneshot::Sender<()>>,
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> TestApp {
        Self::spawn_with(backend, &[]).await
    }

    /// Spawns with extra command-line style configuration flags.
    pub async fn spawn_with(backend: Backend, extra: &[&str]) -> TestApp {
        if std::env::var_os("TEST_LOG").is_some() {
            tokenwarden::telemetry::init(tokenwarden::config::LogFormat::Text);
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let url = fresh_database(backend, &dir).await;
        let admin_key = format!("tw_test_admin_{}", unique_name("k"));
        let sandbox = sandbox::Sandbox::new(sandbox::SandboxConfig::default());
        let sandbox_addr = sandbox.spawn(0).await.expect("sandbox starts");
        // The sandbox plays the platforms, configured the way real ones are (credentials and
        // hosts), so the server runs as in production, where demo mode is refused.
        let endpoints = service::providers::ProviderEndpoints::sandbox(&format!(
            "http://{sandbox_addr}/sandbox"
        ));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
        let addr = listener.local_addr().expect("local addr");
        let public_url = format!("http://{addr}");
        // Platform callbacks from the sandbox go to this server.
        sandbox.update_config(sandbox::ConfigPatch {
            callback_base_url: Some(public_url.clone()),
            ..Default::default()
        });
        // The key exists before the start, as production mode requires.
        let key_file = dir.path().join("tokenwarden.keys");
        service::tokens::vault::KeyRing::load_or_create_file(&key_file).expect("key file");
        let key_file = key_file.to_str().expect("utf8 path").to_owned();
        let queue_file = dir.path().join("jobs.db");
        let queue_file = queue_file.to_str().expect("utf8 path").to_owned();
        let journal_dir = dir.path().join("journal");
        let journal_dir = journal_dir.to_str().expect("utf8 path").to_owned();
        let mut args = vec![
            "tokenwarden",
            "--database-url",
            url.as_str(),
            "--listen",
            "127.0.0.1:0",
            "--public-url",
            public_url.as_str(),
            "--bootstrap-admin-key",
            admin_key.as_str(),
            "--tiktok-client-key",
            sandbox::TIKTOK_CLIENT_KEY,
            "--tiktok-client-secret",
            sandbox::TIKTOK_CLIENT_SECRET,
            "--tiktok-auth-url",
            endpoints.tiktok_auth_base.as_str(),
            "--tiktok-api-url",
            endpoints.tiktok_api_base.as_str(),
            "--instagram-client-id",
            sandbox::INSTAGRAM_CLIENT_ID,
            "--instagram-client-secret",
            sandbox::INSTAGRAM_CLIENT_SECRET,
            "--instagram-auth-url",
            endpoints.instagram_auth_base.as_str(),
            "--instagram-graph-url",
            endpoints.instagram_graph_base.as_str(),
            "--key-file",
            key_file.as_str(),
            "--queue-file",
            queue_file.as_str(),
            "--refresh-journal-dir",
            journal_dir.as_str(),
            "--allowed-redirects",
            APP_REDIRECT,
            "--provider-timeout",
            "2s",
            // Seeding thousands of accounts must not wait for the production rate limit.
            "--tiktok-rate-limit",
            "0",
            "--instagram-rate-limit",
            "0",
            // Tests poll the API in tight loops; tests/api/limits.rs switches the limiter on.
            "--rate-per-minute",
            "0",
        ];
        // Test receivers listen on loopback; a test can still ask for the production guard.
        if !extra.contains(&"--webhook-allow-private") {
            args.extend_from_slice(&["--webhook-allow-private", "true"]);
        }
        args.extend_from_slice(extra);
        let config = Config::try_parse_from(args).expect("test configuration");

        let app = tokenwarden::build_app(&config).await.expect("app starts");
        let db = app.state.db.clone();
        let job_context = app.job_context();
        let queries = QueryCounter::default();
        let app = {
            // Rebuild over a connection that counts statements, for the data loader tests.
            let mut counted = service::db::connect(&url).await.expect("second connection");
            let counter = queries.0.clone();
            counted.set_metric_callback(move |_| {
                counter.fetch_add(1, Ordering::SeqCst);
            });
            App::from_parts(
                counted,
                (*app.state.config).clone(),
                app.state.engine.clone(),
                app.state.queue.clone(),
            )
        };
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            app.serve(listener, async {
                let _ = rx.await;
            })
            .await
            .expect("server runs");
        });
        TestApp {
            addr,
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("http client"),
            admin_key,
            db,
            queries,
            jobs: job_context,
            config,
            sandbox,
            sandbox_addr,
            _dir: dir,
            shutdown: Some(tx),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// POSTs a GraphQL request and returns the JSON body (asserting HTTP 200).
    pub async fn gql(&self, key: Option<&str>, query: &str, variables: Value) -> Value {
        let mut request = self
            .client
            .post(self.url("/graphql"))
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.expect("request sent");
        assert_eq!(response.status(), 200, "GraphQL over HTTP answers 200");
        response.json().await.expect("JSON body")
    }

    /// Like `gql`, but asserts there are no errors and returns `data`.
    pub async fn gql_ok(&self, key: &str, query: &str, variables: Value) -> Value {
        let body = self.gql(Some(key), query, variables).await;
        assert!(body.get("errors").is_none(), "unexpected errors: {body}");
        body["data"].clone()
    }

    /// Creates a key of `role` in the admin's tenant and returns it.
    pub async fn create_key(&self, admin_key: &str, name: &str, role: &str) -> String {
        let data = self
            .gql_ok(
                admin_key,
                "mutation($input: CreateApiKeyInput!) { createApiKey(input: $input) { key } }",
                json!({ "input": { "name": name, "role": role } }),
            )
            .await;
        data["createApiKey"]["key"]
            .as_str()
            .expect("key")
            .to_owned()
    }

    /// Creates a key for another tenant (as the CLI does) and returns it.
    pub async fn key_for_tenant(&self, tenant: &str, role: &str) -> String {
        let created = service::identity::api_keys::create_for_tenant(
            &self.db,
            tenant,
            "test",
            role.parse().expect("role"),
        )
        .await
        .expect("key created");
        secrecy::ExposeSecret::expose_secret(&created.key).to_owned()
    }

    /// The tenant id of a tenant name.
    pub async fn tenant_id(&self, name: &str) -> i64 {
        service::identity::tenants::ensure(&self.db, name)
            .await
            .expect("tenant")
            .id
    }

    /// Inserts an account row directly, bypassing the OAuth flow (use `connect` for a real
    /// connection), for states the flow cannot reach; when `expires_in_hours` is given, also
    /// a token row. `platform` and `status` are stored names (`tiktok`, `ACTIVE`). Returns
    /// the row id.
    pub async fn seed_account(
        &self,
        tenant: &str,
        platform: entity::enums::Platform,
        username: &str,
        status: entity::enums::AccountStatus,
        expires_in_hours: Option<i64>,
    ) -> i64 {
        let tenant_id = self.tenant_id(tenant).await;
        let now = Utc::now();
        let account = social_account::ActiveModel {
            tenant_id: Set(tenant_id),
            platform: Set(platform),
            provider_account_id: Set(format!("{platform}-{username}")),
            username: Set(Some(username.to_owned())),
            display_name: Set(Some(format!("{username} display"))),
            avatar_url: Set(None),
            status: Set(status),
            status_reason: Set(None),
            deactivated_at: Set(None),
            connected_at: Set(Some(now)),
            purged_at: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        }
        .insert(&self.db)
        .await
        .expect("account inserted");
        if let Some(hours) = expires_in_hours {
            oauth_token::ActiveModel {
                account_id: Set(account.id),
                tenant_id: Set(tenant_id),
                platform: Set(platform),
                key_id: Set("seed".into()),
                access_token_enc: Set("tw1.seed.not-a-real-ciphertext".into()),
                refresh_token_enc: Set(None),
                expires_at: Set(now + chrono::Duration::hours(hours)),
                refresh_expires_at: Set(None),
                // A 24-hour token, as TikTok issues.
                issued_at: Set(now + chrono::Duration::hours(hours - 24)),
                last_refreshed_at: Set(None),
                scopes: Set("user.info.basic,video.publish".into()),
                version: Set(0),
                refresh_lease_until: Set(None),
                refresh_lease_owner: Set(None),
                next_refresh_at: Set(None),
                failure_count: Set(0),
                sweep_claimed_until: Set(None),
                created_at: Set(now),
                updated_at: Set(now),
                ..Default::default()
            }
            .insert(&self.db)
            .await
            .expect("token inserted");
        }
        account.id
    }
}

impl TestApp {
    /// The directory of this server's refresh journal.
    pub fn journal_dir(&self) -> std::path::PathBuf {
        self._dir.path().join("journal")
    }

    /// Starts a graceful shutdown of the server (as SIGTERM does in the binary).
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Runs the workers and schedules of this server in-process until the returned sender
    /// is dropped.
    pub fn start_workers(&self) -> oneshot::Sender<()> {
        let (tx, rx) = oneshot::channel::<()>();
        let context = self.jobs.clone();
        tokio::spawn(async move {
            jobs::run_workers(context, async {
                let _ = rx.await;
            })
            .await
            .expect("workers run");
        });
        tx
    }

    /// Connects `count` TikTok accounts straight through the provider client (authorize,
    /// code exchange, encrypted storage), without the browser flow: fast seeding for the
    /// job tests. Returns the account row ids.
    pub async fn seed_connected(&self, tenant: &str, prefix: &str, count: usize) -> Vec<i64> {
        use futures::StreamExt;
        use service::domain::Platform;

        let tenant_id = self.tenant_id(tenant).await;
        let engine = self.jobs.engine.clone();
        let redirect = engine.redirect_uri(Platform::TikTok);
        let client = self.client.clone();
        let db = self.db.clone();
        futures::stream::iter(0..count)
            .map(|i| {
                let engine = engine.clone();
                let redirect = redirect.clone();
                let client = client.clone();
                let db = db.clone();
                async move {
                    let provider = engine.providers.get(Platform::TikTok).expect("tiktok");
                    let url = provider
                        .authorize_url(&service::providers::AuthorizeRequest {
                            redirect_uri: redirect.clone(),
                            state: "seed".into(),
                            scopes: vec!["user.info.basic".into(), "video.publish".into()],
                            pkce_challenge: None,
                        })
                        .expect("authorize url");
                    let user = format!("{prefix}{i}");
                    let location = client
                        .get(format!("{url}&sandbox_user={user}"))
                        .send()
                        .await
                        .expect("authorize")
                        .headers()["location"]
                        .to_str()
                        .expect("location")
                        .to_owned();
                    let code = url::Url::parse(&location)
                        .expect("url")
                        .query_pairs()
                        .find(|(k, _)| k == "code")
                        .map(|(_, v)| v.into_owned())
                        .expect("code");
                    let set = provider
                        .exchange_code(&code, &redirect, None)
                        .await
                        .expect("exchange");
                    let now = Utc::now();
                    let account = social_account::ActiveModel {
                        tenant_id: Set(tenant_id),
                        platform: Set(service::domain::Platform::TikTok),
                        provider_account_id: Set(set.provider_account_id.clone()),
                        username: Set(Some(user)),
                        display_name: Set(None),
                        avatar_url: Set(None),
                        status: Set(service::domain::AccountStatus::Active),
                        status_reason: Set(None),
                        deactivated_at: Set(None),
                        connected_at: Set(Some(now)),
                        purged_at: Set(None),
                        created_at: Set(now),
                        updated_at: Set(now),
                        ..Default::default()
                    }
                    .insert(&db)
                    .await
                    .expect("account");
                    service::tokens::store_connected(&db, &engine.vault(), &account, &set)
                        .await
                        .expect("tokens");
                    account.id
                }
            })
            .buffer_unordered(16)
            .collect()
            .await
    }

    /// Moves account tokens' expiry to `minutes` from now (inside the TikTok window of 1 h
    /// when under 60).
    pub async fn expire_in(&self, account_ids: &[i64], minutes: i64) {
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
        oauth_token::Entity::update_many()
            .col_expr(
                oauth_token::Column::ExpiresAt,
                Expr::value(Utc::now() + chrono::Duration::minutes(minutes)),
            )
            .filter(oauth_token::Column::AccountId.is_in(account_ids.iter().copied()))
            .exec(&self.db)
            .await
            .expect("expiry moved");
    }

    /// Polls `check` every 100 ms until it is true or `secs` pass (then panics with `what`).
    pub async fn wait_for<F, Fut>(&self, secs: u64, what: &str, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        while std::time::Instant::now() < deadline {
            if check().await {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("timed out after {secs} s waiting for {what}");
    }

    /// A second server process over the same database and sandbox, with its own engine
    /// (own refresh locks, own provider clients): what another node would be.
    pub async fn second_node(&self) -> (SocketAddr, oneshot::Sender<()>) {
        let engine = tokenwarden::compose::build_engine(&self.db, &self.config)
            .await
            .expect("second engine");
        let queue = tokenwarden::compose::build_queue(&self.config)
            .await
            .expect("queue");
        let app = App::from_parts(self.db.clone(), self.config.api(), engine, queue);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            app.serve(listener, async {
                let _ = rx.await;
            })
            .await
            .expect("second node runs");
        });
        (addr, tx)
    }

    /// Opens a launch URL (`startConnection`'s `authorizationUrl`, or a reconnect link) the
    /// way a browser does: asserts the redirect to the platform and keeps the flow's cookie.
    pub async fn launch(&self, url: &str) -> Launch {
        let response = self.client.get(url).send().await.expect("request sent");
        assert_eq!(
            response.status(),
            302,
            "{url} should redirect to the platform: {:?}",
            response.headers()
        );
        let authorize = response.headers()["location"]
            .to_str()
            .expect("location")
            .to_owned();
        let set_cookie = response
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with("tw_oauth_"))
            .unwrap_or_else(|| panic!("{url} sets the flow's cookie"))
            .to_owned();
        let cookie = set_cookie
            .split(';')
            .next()
            .expect("name=value")
            .trim()
            .to_owned();
        Launch {
            authorize,
            cookie,
            set_cookie,
        }
    }

    /// GETs `url` sending `cookie` (`name=value`), without following redirects.
    pub async fn get_with_cookie(&self, url: &str, cookie: &str) -> reqwest::Response {
        self.client
            .get(url)
            .header("cookie", cookie)
            .send()
            .await
            .expect("request sent")
    }

    /// Like `follow`, as the browser holding `cookie`.
    pub async fn follow_with(&self, url: &str, cookie: &str) -> String {
        let response = self.get_with_cookie(url, cookie).await;
        assert!(
            response.status().is_redirection(),
            "{url} should redirect, got {}: {:?}",
            response.status(),
            response.text().await
        );
        response.headers()["location"]
            .to_str()
            .expect("location")
            .to_owned()
    }

    /// Runs the whole browser flow: startConnection, its launch URL (the flow's cookie),
    /// the provider's authorize page (the sandbox approves at once as `user`), our
    /// callback with the cookie, and the final redirect to the app. Returns the final
    /// redirect URL's query parameters.
    pub async fn connect_flow(
        &self,
        key: &str,
        platform: &str,
        user: &str,
        extra_authorize: &str,
    ) -> std::collections::HashMap<String, String> {
        let data = self
            .gql_ok(
                key,
                "mutation($input: StartConnectionInput!) { startConnection(input: $input) { authorizationUrl state } }",
                json!({ "input": { "platform": platform, "redirectAfter": APP_REDIRECT } }),
            )
            .await;
        let launch = data["startConnection"]["authorizationUrl"]
            .as_str()
            .expect("authorization url");
        assert!(
            launch.starts_with(&self.url("/oauth/start/")),
            "startConnection hands out a launch URL on this server: {launch}"
        );
        let launched = self.launch(launch).await;
        let callback = self
            .follow(&format!(
                "{}&sandbox_user={user}{extra_authorize}",
                launched.authorize
            ))
            .await;
        assert!(
            callback.starts_with(&self.url("/oauth/callback/")),
            "the provider sends the user to our callback: {callback}"
        );
        let back = self.follow_with(&callback, &launched.cookie).await;
        assert!(back.starts_with(APP_REDIRECT), "then to the app: {back}");
        url::Url::parse(&back)
            .expect("url")
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    /// Connects an account and returns its global id.
    pub async fn connect(&self, key: &str, platform: &str, user: &str) -> String {
        let params = self.connect_flow(key, platform, user, "").await;
        assert_eq!(
            params.get("status").map(String::as_str),
            Some("connected"),
            "{params:?}"
        );
        params["accountId"].clone()
    }

    /// GETs a URL without following redirects and returns the `Location` it redirects to.
    pub async fn follow(&self, url: &str) -> String {
        let response = self.client.get(url).send().await.expect("request sent");
        assert!(
            response.status().is_redirection(),
            "{url} should redirect, got {}: {:?}",
            response.status(),
            response.text().await
        );
        response.headers()["location"]
            .to_str()
            .expect("location")
            .to_owned()
    }
}

/// A connection on its way through the browser (see `TestApp::launch`).
pub struct Launch {
    /// The platform's authorize URL the launch URL redirected to.
    pub authorize: String,
    /// The flow's cookie as the browser sends it back: `name=value`.
    pub cookie: String,
    /// The whole `Set-Cookie` header (attributes included).
    pub set_cookie: String,
}

/// The global id of a row, as the API encodes it.
pub fn global_id(kind: &str, id: i64) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{kind}:{id}"))
}

/// The row id inside a global id.
pub fn decode_id(id: &str) -> i64 {
    use base64::Engine;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(id)
        .expect("base64 id");
    String::from_utf8(raw)
        .expect("utf8")
        .split_once(':')
        .and_then(|(_, n)| n.parse().ok())
        .expect("numeric id")
}

/// The `extensions.code` of the first error, if any.
pub fn error_code(body: &Value) -> Option<&str> {
    body["errors"][0]["extensions"]["code"].as_str()
}

/// Every stored text about account row `account` that still names `username`: event
/// messages and actions, notification messages and actions, audit details (as JSON).
pub async fn mentions_of(db: &DatabaseConnection, account: i64, username: &str) -> Vec<String> {
    use entity::{audit_log, notification, token_event};
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let named = |text: &str| {
        text.contains(&format!("@{username}")) || text.contains(&format!("\"{username}\""))
    };
    let mut found = Vec::new();
    for event in token_event::Entity::find()
        .filter(token_event::Column::AccountId.eq(account))
        .all(db)
        .await
        .expect("events")
    {
        found.extend(event.error_message.into_iter().chain(event.error_action));
    }
    for note in notification::Entity::find()
        .filter(notification::Column::AccountId.eq(account))
        .all(db)
        .await
        .expect("notifications")
    {
        found.push(note.message);
        found.extend(note.action);
    }
    for entry in audit_log::Entity::find()
        .filter(audit_log::Column::TargetType.eq("SocialAccount"))
        .filter(audit_log::Column::TargetId.eq(account.to_string()))
        .all(db)
        .await
        .expect("audit")
    {
        found.push(entry.details.to_string());
    }
    found.retain(|text| named(text));
    found
}
