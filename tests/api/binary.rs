//! The real `tokenwarden` binary: fresh directory, one command, graceful shutdown, CLI.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use serde_json::{Value, json};

use crate::helpers::{Backend, fresh_database};

const BIN: &str = env!("CARGO_BIN_EXE_tokenwarden");

/// A running binary with its address and the lines it printed.
struct Running {
    child: Child,
    addr: String,
    stdout: Vec<String>,
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
fn start(dir: &std::path::Path, envs: &[(&str, &str)], args: &[&str]) -> Running {
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
    let mut printed = Vec::new();
    loop {
        let (is_stdout, line) = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("no address logged; stdout so far: {printed:?}"));
        if is_stdout {
            printed.push(line);
            continue;
        }
        let Ok(log) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if log["message"] == "serving GraphQL at /graphql" {
            let addr = log["addr"].as_str().expect("addr field").to_owned();
            // Drain anything already printed on stdout (the generated key comes first).
            while let Ok((true, line)) = rx.try_recv() {
                printed.push(line);
            }
            return Running {
                child,
                addr,
                stdout: printed,
            };
        }
    }
}

fn terminate(mut running: Running) -> std::process::ExitStatus {
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
    let bootstrap = "tw_bootstrap_for_binary_test_0123456789";
    let envs = [
        ("DATABASE_URL", url.as_str()),
        ("TOKENWARDEN_BOOTSTRAP_ADMIN_KEY", bootstrap),
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

    let listed = cli(&["apikey", "list"]);
    assert!(
        listed.contains("ops") && listed.contains("VIEWER"),
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

#[tokio::test]
async fn worker_serves_probes() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("w.db");
    let url = format!("sqlite://{}", db.display());
    let migrate = Command::new(BIN)
        .args(["migrate"])
        .env("DATABASE_URL", &url)
        .output()
        .expect("migrate runs");
    assert!(migrate.status.success(), "{migrate:?}");

    #[allow(
        clippy::zombie_processes,
        reason = "the child moves into `Running`, whose Drop kills and waits"
    )]
    let mut child = Command::new(BIN)
        .args(["worker"])
        .env("DATABASE_URL", &url)
        .env("TOKENWARDEN_LISTEN", "127.0.0.1:0")
        .env("TOKENWARDEN_LOG_FORMAT", "json")
        .stderr(Stdio::piped())
        .spawn()
        .expect("worker starts");
    let stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let addr = stderr
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str::<Value>(&l).ok())
        .find(|l| l["message"] == "serving /healthz and /readyz")
        .and_then(|l| l["addr"].as_str().map(str::to_owned))
        .expect("worker logs its address");
    for path in ["/healthz", "/readyz"] {
        let response = reqwest::get(format!("http://{addr}{path}"))
            .await
            .expect("sent");
        assert_eq!(response.status(), 200, "{path}");
    }
    let running = Running {
        child,
        addr,
        stdout: Vec::new(),
    };
    assert!(terminate(running).success());
}
