//! The real `tokenwarden` binary: fresh directory, one command, graceful shutdown, CLI.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use serde_json::{Value, json};

use crate::helpers::{Backend, fresh_database};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_tokenwarden");

/// A running binary with its address and the lines it printed.
pub(crate) struct Running {
    pub(crate) child: Child,
    pub(crate) addr: String,
    stdout: Vec<String>,
    /// The log lines (stderr) printed before the address.
    startup_logs: Vec<Value>,
    /// Everything printed later: (is stdout, line).
    rest: Option<mpsc::Receiver<(bool, String)>>,
}

impl Running {
    /// Every line printed after startup, up to now (call after the process exited).
    pub(crate) fn remaining_output(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        if let Some(rx) = &self.rest {
            // The reader threads end at EOF, which follows the exit.
            while let Ok((_, line)) = rx.recv_timeout(Duration::from_secs(5)) {
                lines.push(line);
            }
        }
        lines
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Never leave a server behind, even when an assertion failed.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the binary in `dir` with JSON logs on port 0 and waits for its address.
#[allow(
    clippy::zombie_processes,
    reason = "the child moves into `Running`, whose Drop kills and waits"
)]
pub(crate) fn start(dir: &std::path::Path, envs: &[(&str, &str)], args: &[&str]) -> Running {
    start_until(dir, envs, args, "serving GraphQL at /graphql")
}

/// Starts the binary and waits for the JSON log line `message` that carries `addr`.
pub(crate) fn start_until(
    dir: &std::path::Path,
    envs: &[(&str, &str)],
    args: &[&str],
    message: &str,
) -> Running {
    spawn(dir, envs, args).wait_for(message)
}

/// Starts the binary in `dir` with JSON logs on port 0, without waiting for it to serve.
#[allow(
    clippy::zombie_processes,
    reason = "the child moves into `Running`, whose Drop kills and waits"
)]
pub(crate) fn spawn(dir: &std::path::Path, envs: &[(&str, &str)], args: &[&str]) -> Running {
    let mut child = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TOKENWARDEN_LISTEN", "127.0.0.1:0")
        .env("TOKENWARDEN_LOG_FORMAT", "json")
        .envs(envs.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary starts");
    let (tx, rx) = mpsc::channel::<(bool, String)>();
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let tx2 = tx.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send((true, line));
        }
    });
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx2.send((false, line));
        }
    });
    Running {
        child,
        addr: String::new(),
        stdout: Vec::new(),
        startup_logs: Vec::new(),
        rest: Some(rx),
    }
}

impl Running {
    /// Waits for the JSON log line `message` that carries `addr`.
    pub(crate) fn wait_for(mut self, message: &str) -> Running {
        let rx = self.rest.as_ref().expect("output not consumed yet");
        loop {
            let (is_stdout, line) = rx
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| {
                    panic!(
                        "no {message:?} logged; stdout so far: {:?}; logs: {:?}",
                        self.stdout, self.startup_logs
                    )
                });
            if is_stdout {
                self.stdout.push(line);
                continue;
            }
            let Ok(log) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if log["message"] != message {
                self.startup_logs.push(log);
                continue;
            }
            self.addr = log["addr"].as_str().expect("addr field").to_owned();
            // Drain anything already printed on stdout (the generated key comes first).
            while let Ok((true, line)) = rx.try_recv() {
                self.stdout.push(line);
            }
            return self;
        }
    }
}

pub(crate) fn terminate(running: Running) -> std::process::ExitStatus {
    terminate_ref(&mut { running })
}

fn terminate_ref(running: &mut Running) -> std::process::ExitStatus {
    let status = Command::new("kill")
        .args(["-TERM", &running.child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    for _ in 0..100 {
        if let Some(status) = running.child.try_wait().expect("wait") {
            return status;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = running.child.kill();
    panic!("the server did not stop within 10 s of SIGTERM");
}

async fn viewer_role(addr: &str, key: Option<&str>) -> Value {
    let mut request = reqwest::Client::new()
        .post(format!("http://{addr}/graphql"))
        .json(&json!({ "query": "{ viewer { role } }" }));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    request
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json")
}

#[tokio::test]
async fn fresh_directory_one_command_prints_a_key_that_works() {
    let dir = tempfile::tempdir().expect("dir");
    let running = start(dir.path(), &[], &[]);
    let key = running
        .stdout
        .iter()
        .find_map(|line| {
            line.trim()
                .strip_prefix("tw_")
                .map(|rest| format!("tw_{rest}"))
        })
        .unwrap_or_else(|| panic!("the generated key is printed: {:?}", running.stdout));
    assert!(
        dir.path().join("tokenwarden.db").exists(),
        "SQLite file created"
    );

    let health = reqwest::get(format!("http://{}/healthz", running.addr))
        .await
        .expect("sent");
    assert_eq!(health.status(), 200);
    let body = viewer_role(&running.addr, Some(&key)).await;
    assert_eq!(body["data"]["viewer"]["role"], "ADMIN");
    let body = viewer_role(&running.addr, None).await;
    assert_eq!(body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");

    let status = terminate(running);
    assert!(status.success(), "graceful shutdown exits 0: {status:?}");

    // A restart generates no second key: keys exist now.
    let running = start(dir.path(), &[], &["serve"]);
    assert!(
        running.stdout.iter().all(|l| !l.contains("tw_")),
        "no key printed on restart: {:?}",
        running.stdout
    );
    let body = viewer_role(&running.addr, Some(&key)).await;
    assert_eq!(body["data"]["viewer"]["role"], "ADMIN");
    terminate(running);
}

#[tokio::test]
async fn postgres_with_bootstrap_key_and_cli_key_management() {
    let dir = tempfile::tempdir().expect("dir");
    let url = fresh_database(Backend::Postgres, &dir).await;

    // PostgreSQL has no file to keep a generated key next to: keys must be configured.
    let refused = Command::new(BIN)
        .args(["serve"])
        .current_dir(dir.path())
        .env_clear()
        .env("DATABASE_URL", &url)
        .env("TOKENWARDEN_LISTEN", "127.0.0.1:0")
        .output()
        .expect("binary runs");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("TOKENWARDEN_KEYS"),
        "a clear startup error: {stderr}"
    );

    let keygen = Command::new(BIN)
        .arg("keygen")
        .output()
        .expect("keygen runs");
    let keys = String::from_utf8(keygen.stdout)
        .expect("utf8")
        .trim()
        .to_owned();
    assert!(keys.contains(':'), "{keys}");
    let bootstrap = "tw_bootstrap_for_binary_test_0123456789";
    let envs = [
        ("DATABASE_URL", url.as_str()),
        ("TOKENWARDEN_BOOTSTRAP_ADMIN_KEY", bootstrap),
        ("TOKENWARDEN_KEYS", keys.as_str()),
    ];
    let running = start(dir.path(), &envs, &["serve"]);
    assert!(running.stdout.iter().all(|l| !l.contains(bootstrap)));
    let body = viewer_role(&running.addr, Some(bootstrap)).await;
    assert_eq!(body["data"]["viewer"]["role"], "ADMIN");

    let cli = |args: &[&str]| {
        let output = Command::new(BIN)
            .args(args)
            .env("DATABASE_URL", &url)
            .output()
            .expect("cli runs");
        assert!(output.status.success(), "{args:?}: {output:?}");
        String::from_utf8(output.stdout).expect("utf8")
    };
    let created = cli(&[
        "apikey", "create", "--tenant", "acme", "--role", "VIEWER", "--name", "ops",
    ]);
    let key = created.lines().last().expect("key line").trim().to_owned();
    assert!(key.starts_with("tw_"), "{created}");
    let body = viewer_role(&running.addr, Some(&key)).await;
    assert_eq!(body["data"]["viewer"]["role"], "VIEWER");

    // The command line is the only maker of OPERATOR keys.
    let made = cli(&["apikey", "create", "--role", "OPERATOR", "--name", "deploy"]);
    let operator = made.lines().last().expect("key line").trim().to_owned();
    let body = viewer_role(&running.addr, Some(&operator)).await;
    assert_eq!(body["data"]["viewer"]["role"], "OPERATOR", "{body}");

    let listed = cli(&["apikey", "list"]);
    assert!(
        listed.contains("ops") && listed.contains("VIEWER") && listed.contains("OPERATOR"),
        "{listed}"
    );
    assert!(!listed.contains(&key), "list never shows keys");
    let id = created
        .split_whitespace()
        .nth(3)
        .expect("id in the created line")
        .to_owned();
    cli(&["apikey", "revoke", &id]);
    let body = viewer_role(&running.addr, Some(&key)).await;
    assert_eq!(body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");

    let schema = cli(&["schema"]);
    assert!(schema.contains("type Query"));
    terminate(running);
}

/// Both probes of a process answer 200.
async fn probes_ready(addr: &str) {
    for path in ["/healthz", "/readyz"] {
        let response = reqwest::get(format!("http://{addr}{path}"))
            .await
            .expect("sent");
        assert_eq!(response.status(), 200, "{path}");
    }
}

#[tokio::test]
async fn a_worker_on_a_fresh_database_migrates_it_and_serves_probes() {
    let dir = tempfile::tempdir().expect("dir");
    let url = format!("sqlite://{}", dir.path().join("w.db").display());
    // No `migrate` and no `serve` first: the worker migrates like `serve` does.
    let worker = start_until(
        dir.path(),
        &[("DATABASE_URL", &url)],
        &["worker"],
        "serving /healthz and /readyz",
    );
    probes_ready(&worker.addr).await;
    assert!(terminate(worker).success());
}

#[tokio::test]
async fn serve_and_worker_started_together_on_a_fresh_postgres_database_both_run() {
    let dir = tempfile::tempdir().expect("dir");
    let url = fresh_database(Backend::Postgres, &dir).await;
    let keys = keygen();
    // Separate processes share Redis (the production layout); `redis_args` also checks that
    // Redis is up and picks a key prefix of this test's own.
    let redis = crate::helpers::redis_args();
    let env = [
        ("DATABASE_URL", url.as_str()),
        ("TOKENWARDEN_KEYS", &keys),
        ("REDIS_URL", &redis[1]),
        ("TOKENWARDEN_REDIS_PREFIX", &redis[3]),
    ];
    // Both migrate the empty database and store its canary at once: the migration lock
    // makes one wait, and the one that stores its canary second checks it against the first.
    let serve = spawn(dir.path(), &env, &["serve"]);
    let worker = spawn(dir.path(), &env, &["worker"]);
    let serve = serve.wait_for("serving GraphQL at /graphql");
    let worker = worker.wait_for("serving /healthz and /readyz");
    probes_ready(&serve.addr).await;
    probes_ready(&worker.addr).await;
    assert!(terminate(worker).success());
    assert!(terminate(serve).success());
}

/// GraphQL as a key, through the binary.
async fn gql(addr: &str, key: &str, query: &str, variables: Value) -> Value {
    reqwest::Client::new()
        .post(format!("http://{addr}/graphql"))
        .bearer_auth(key)
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json")
}

#[tokio::test]
async fn demo_mode_connects_and_keeps_tokens_off_disk_and_out_of_logs() {
    let dir = tempfile::tempdir().expect("dir");
    let mut running = start(
        dir.path(),
        &[("RUST_LOG", "debug,hyper=info,h2=info,rustls=info")],
        &[],
    );
    // No credentials: the binary says at start that the sandbox stands in for the platforms.
    let demo = running
        .startup_logs
        .iter()
        .find(|log| log["message"] == tokenwarden::compose::DEMO_MODE)
        .unwrap_or_else(|| panic!("no demo mode line in {:?}", running.startup_logs));
    assert_eq!(demo["level"], "WARN");
    assert!(
        demo["sandbox"]
            .as_str()
            .is_some_and(|url| url.ends_with("/sandbox"))
    );
    let key = running
        .stdout
        .iter()
        .find_map(|line| {
            line.trim()
                .strip_prefix("tw_")
                .map(|rest| format!("tw_{rest}"))
        })
        .expect("generated key");
    let addr = running.addr.clone();
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");

    let started = gql(
        &addr,
        &key,
        "mutation { startConnection(input: {platform: TIKTOK}) { authorizationUrl } }",
        json!({}),
    )
    .await;
    let launch = started["data"]["startConnection"]["authorizationUrl"]
        .as_str()
        .unwrap_or_else(|| panic!("{started}"))
        .to_owned();
    // The launch URL sets the flow's cookie and redirects to the (embedded) sandbox.
    let launched = no_redirects.get(&launch).send().await.expect("launch");
    assert_eq!(launched.status(), 302, "{launch}");
    let authorize = launched.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    let cookie = launched.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .split(';')
        .next()
        .expect("name=value")
        .to_owned();
    let to_callback = no_redirects
        .get(&authorize)
        .send()
        .await
        .expect("sandbox authorize");
    let callback = to_callback.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    let page = no_redirects
        .get(&callback)
        .header("cookie", &cookie)
        .send()
        .await
        .expect("callback");
    assert_eq!(page.status(), 200);
    assert!(
        page.text()
            .await
            .expect("html")
            .contains("is connected to TikTok")
    );

    let accounts = gql(
        &addr,
        &key,
        "{ accounts { nodes { id status } } }",
        json!({}),
    )
    .await;
    let id = accounts["data"]["accounts"]["nodes"][0]["id"].clone();
    assert_eq!(accounts["data"]["accounts"]["nodes"][0]["status"], "ACTIVE");
    let access = "query($id: ID!) { accessToken(accountId: $id) { token } }";
    let first = gql(&addr, &key, access, json!({ "id": id })).await;
    let token1 = first["data"]["accessToken"]["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let refreshed = gql(
        &addr,
        &key,
        "mutation($id: ID!) { refreshAccountToken(accountId: $id) { refreshed error { code } } }",
        json!({ "id": id }),
    )
    .await;
    assert_eq!(
        refreshed["data"]["refreshAccountToken"]["refreshed"], true,
        "{refreshed}"
    );
    let second = gql(&addr, &key, access, json!({ "id": id })).await;
    let token2 = second["data"]["accessToken"]["token"]
        .as_str()
        .expect("token")
        .to_owned();
    assert_ne!(token1, token2);

    assert!(terminate_ref(&mut running).success());
    let logs = running.remaining_output().join("\n");
    assert!(
        logs.contains("latency_ms"),
        "access logs were captured: {logs}"
    );
    for secret in [&token1, &token2, &key] {
        assert!(
            !logs.contains(secret.as_str()),
            "a secret leaked into the logs"
        );
        for entry in std::fs::read_dir(dir.path()).expect("dir") {
            let path = entry.expect("entry").path();
            let bytes = std::fs::read(&path).expect("file");
            let found = bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
            assert!(
                !found,
                "a secret is stored in plaintext in {}",
                path.display()
            );
        }
    }
    assert!(
        dir.path().join("tokenwarden.keys").exists(),
        "key file next to the database"
    );
}

/// Runs the binary to completion with `envs` over a fresh SQLite directory.
fn run_to_exit(envs: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().expect("temp dir");
    Command::new(BIN)
        .args(args)
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TOKENWARDEN_LISTEN", "127.0.0.1:0")
        .envs(envs.iter().copied())
        .output()
        .expect("binary runs")
}

#[test]
fn unreachable_redis_is_a_clear_startup_error() {
    // Port 1 on loopback: nothing listens there.
    let output = run_to_exit(&[("REDIS_URL", "redis://127.0.0.1:1")], &[]);
    assert!(!output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("error:") && stderr.contains("connecting to Redis"),
        "the error names Redis: {stderr}"
    );
}

#[test]
fn a_bad_cron_schedule_is_a_clear_startup_error() {
    let output = run_to_exit(&[("TOKENWARDEN_SWEEP_SCHEDULE", "every now and then")], &[]);
    assert!(!output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("invalid sweep schedule \"every now and then\""),
        "the error names the schedule: {stderr}"
    );
}

/// A new encryption key from `tokenwarden keygen`, as `id:base64`.
fn keygen() -> String {
    let output = Command::new(BIN)
        .arg("keygen")
        .output()
        .expect("keygen runs");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout)
        .expect("utf8")
        .trim()
        .to_owned()
}

#[test]
fn production_mode_refuses_the_sandbox_a_generated_key_and_introspection() {
    for command in [&[][..], &["serve"], &["worker"]] {
        let dir = tempfile::tempdir().expect("temp dir");
        let output = Command::new(BIN)
            .args(command)
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("TOKENWARDEN_LISTEN", "127.0.0.1:0")
            .env("TOKENWARDEN_PRODUCTION", "true")
            .env("TOKENWARDEN_INTROSPECTION", "true")
            .output()
            .expect("binary runs");
        assert!(!output.status.success(), "{command:?}: {output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        for expected in [
            "production mode (TOKENWARDEN_PRODUCTION=true) refuses to start",
            "no platform credentials: the sandbox simulator would stand in",
            "a new key would be generated",
            "TOKENWARDEN_INTROSPECTION=true",
        ] {
            assert!(
                stderr.contains(expected),
                "{command:?}: {expected:?} in {stderr}"
            );
        }
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .expect("dir")
            .map(|entry| entry.expect("entry").file_name())
            .collect();
        assert!(left.is_empty(), "{command:?}: nothing is created: {left:?}");
    }

    // Credentials do not make an explicit sandbox acceptable.
    let keys = keygen();
    let output = run_to_exit(
        &[
            ("TOKENWARDEN_PRODUCTION", "true"),
            ("TOKENWARDEN_KEYS", &keys),
            ("TIKTOK_CLIENT_KEY", "tiktok-app"),
            ("TIKTOK_CLIENT_SECRET", "tiktok-secret"),
            ("TOKENWARDEN_SANDBOX_URL", "http://127.0.0.1:1/sandbox"),
        ],
        &[],
    );
    assert!(!output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("TOKENWARDEN_SANDBOX_URL is set"),
        "{stderr}"
    );
    assert!(!stderr.contains("key would be generated"), "{stderr}");
}

#[tokio::test]
async fn production_mode_starts_with_platform_credentials_and_configured_keys() {
    let dir = tempfile::tempdir().expect("dir");
    let keys = keygen();
    // Nothing listens on port 1: the platforms are never called while starting.
    let running = start(
        dir.path(),
        &[
            ("TOKENWARDEN_PRODUCTION", "true"),
            ("TOKENWARDEN_KEYS", &keys),
            ("TIKTOK_CLIENT_KEY", "tiktok-app"),
            ("TIKTOK_CLIENT_SECRET", "tiktok-secret"),
            ("TOKENWARDEN_TIKTOK_AUTH_URL", "http://127.0.0.1:1"),
            ("TOKENWARDEN_TIKTOK_API_URL", "http://127.0.0.1:1"),
        ],
        &[],
    );
    assert!(
        !running.startup_logs.iter().any(|log| log["message"]
            .as_str()
            .is_some_and(|m| m.contains("demo mode"))),
        "no demo mode: {:?}",
        running.startup_logs
    );
    assert!(
        !dir.path().join("tokenwarden.keys").exists(),
        "no key file is generated"
    );
    let graphiql = reqwest::get(format!("http://{}/graphiql", running.addr))
        .await
        .expect("sent");
    assert_eq!(graphiql.status(), 404, "no GraphiQL in production");
    assert_eq!(
        viewer_role(&running.addr, None).await["errors"][0]["extensions"]["code"],
        "UNAUTHENTICATED"
    );
    assert!(terminate(running).success());
}

/// `TOKENWARDEN_DB_SLOW_STATEMENT`: a statement slower than the threshold is logged at WARN
/// with its SQL (sqlx's slow-statement log, through the binary's log filter); statements under
/// it are not logged at all.
#[tokio::test]
async fn statements_over_the_slow_statement_threshold_are_logged() {
    const SLOW: &str = "slow statement: execution time exceeded alert threshold";
    let keys = keygen();
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let dir = tempfile::tempdir().expect("dir");
        let url = fresh_database(backend, &dir).await;
        let slow_lines = |threshold: &str| {
            let env = [
                ("DATABASE_URL", url.as_str()),
                ("TOKENWARDEN_KEYS", keys.as_str()),
                ("TOKENWARDEN_DB_SLOW_STATEMENT", threshold),
            ];
            let running = start(dir.path(), &env, &["serve"]);
            let lines: Vec<Value> = running
                .startup_logs
                .iter()
                .filter(|log| log["message"] == SLOW)
                .cloned()
                .collect();
            assert!(terminate(running).success());
            lines
        };
        // Every statement takes longer than a nanosecond: migrating the fresh database and
        // loading the key canary log each of them.
        let logged = slow_lines("1ns");
        assert!(!logged.is_empty(), "{backend:?}: slow statements logged");
        for line in &logged {
            assert_eq!(line["level"], "WARN", "{line}");
            assert_eq!(line["target"], "sqlx::query", "{line}");
            assert!(
                line["summary"].as_str().is_some_and(|s| !s.is_empty()),
                "{line}"
            );
            assert!(line["elapsed_secs"].is_number(), "{line}");
        }
        // None of the startup statements takes an hour, and fast statements are never logged.
        let logged = slow_lines("1h");
        assert!(logged.is_empty(), "{backend:?}: {logged:?}");
    }
}
