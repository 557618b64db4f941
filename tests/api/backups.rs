//! Backups with the real binary: `backup create` while the API writes, `verify` on good,
//! damaged and wrongly keyed files, `restore` into an empty directory (and into PostgreSQL)
//! and serving from the restored database with the same keys.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
};

use base64::Engine as _;
use entity::{api_key, audit_log, social_account};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{Value, json};

use crate::{
    binary::{BIN, start, terminate},
    helpers::{Backend, TestApp, fresh_database, global_id},
};

/// Runs the binary in `dir` with only `envs` (and PATH) set.
fn cli(dir: &Path, envs: &[(&str, &str)], args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(envs.iter().copied())
        .output()
        .expect("the binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[track_caller]
fn assert_ok(output: &Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "{what} failed: {}\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}

#[track_caller]
fn assert_fails(output: &Output, what: &str, says: &str) {
    let stderr = text(&output.stderr);
    assert!(
        !output.status.success(),
        "{what} should fail: {}",
        text(&output.stdout)
    );
    assert!(
        stderr.contains(says),
        "{what}: expected {says:?} in {stderr}"
    );
}

/// The app's database and key file, as a CLI environment.
fn source_env(app: &TestApp) -> Vec<(&'static str, String)> {
    vec![
        ("DATABASE_URL", app.config.database.url.expose().to_owned()),
        ("TOKENWARDEN_KEY_FILE", key_file(app).display().to_string()),
    ]
}

fn key_file(app: &TestApp) -> PathBuf {
    app.config
        .security
        .key_file
        .clone()
        .expect("tests use a key file")
}

fn as_refs<'a>(envs: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    envs.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// The names of the `w-` keys of a database and the names its audit log says were created:
/// equal when the copy is consistent (each key commits with its audit entry).
async fn keys_and_audited_names(url: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let db = service::db::connect(url).await.expect("connects");
    let keys = api_key::Entity::find()
        .filter(api_key::Column::Name.starts_with("w-"))
        .all(&db)
        .await
        .expect("keys")
        .into_iter()
        .map(|k| k.name)
        .collect();
    let audited = audit_log::Entity::find()
        .filter(audit_log::Column::Action.eq("API_KEY_CREATED"))
        .all(&db)
        .await
        .expect("audit")
        .into_iter()
        .filter_map(|a| a.details["name"].as_str().map(str::to_owned))
        .filter(|n| n.starts_with("w-"))
        .collect();
    db.close().await.expect("closes");
    (keys, audited)
}

async fn access_token(addr: &str, key: &str, account: i64) -> Value {
    reqwest::Client::new()
        .post(format!("http://{addr}/graphql"))
        .bearer_auth(key)
        .json(&json!({
            "query": "query($id: ID!) { accessToken(accountId: $id) { token } accounts(first: 1) { totalCount } }",
            "variables": { "id": global_id("SocialAccount", account) },
        }))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json")
}

crate::on_both_backends!(backup_while_writing_then_restore_and_serve);

async fn backup_while_writing_then_restore_and_serve(app: TestApp) {
    let accounts = app.seed_connected("default", "bk", 12).await;
    let original = app
        .gql_ok(
            &app.admin_key,
            "query($id: ID!) { accessToken(accountId: $id) { token } }",
            json!({ "id": global_id("SocialAccount", accounts[0]) }),
        )
        .await["accessToken"]["token"]
        .clone();

    // An API client keeps creating keys (each commits with its audit entry) throughout.
    let stop = Arc::new(AtomicBool::new(false));
    let made = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (stop, made) = (stop.clone(), made.clone());
        let (client, url, key) = (
            app.client.clone(),
            app.url("/graphql"),
            app.admin_key.clone(),
        );
        tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let body: Value = client
                    .post(&url)
                    .bearer_auth(&key)
                    .json(&json!({
                        "query": "mutation($n: String!) { createApiKey(input: {name: $n, role: VIEWER}) { key } }",
                        "variables": { "n": format!("w-{i}") },
                    }))
                    .send()
                    .await
                    .expect("request")
                    .json()
                    .await
                    .expect("json");
                assert!(body.get("errors").is_none(), "{body}");
                i += 1;
                made.store(i, Ordering::SeqCst);
            }
        })
    };
    app.wait_for(30, "the writer to start", || {
        let made = made.clone();
        async move { made.load(Ordering::SeqCst) >= 3 }
    })
    .await;

    let work = tempfile::tempdir().expect("dir");
    let file = work.path().join("tokenwarden.twb");
    let env = source_env(&app);
    let created = {
        let (dir, file, env) = (work.path().to_owned(), file.clone(), env.clone());
        tokio::task::spawn_blocking(move || {
            cli(
                &dir,
                &as_refs(&env),
                &["backup", "create", "--to", file.to_str().expect("utf8")],
            )
        })
        .await
        .expect("joins")
    };
    stop.store(true, Ordering::SeqCst);
    writer.await.expect("the writer never failed");
    let printed = assert_ok(&created, "backup create");
    assert!(printed.contains("backup written to"), "{printed}");

    let bytes = std::fs::read(&file).expect("file");
    let end = bytes
        .iter()
        .position(|b| *b == b'\n')
        .expect("a manifest line");
    let manifest: Value = serde_json::from_slice(&bytes[..end]).expect("manifest JSON");
    assert_eq!(manifest["format"], "tokenwarden-backup");
    assert_eq!(manifest["tables"]["social_accounts"], 12);
    assert_eq!(manifest["tables"]["oauth_tokens"], 12);
    assert!(
        manifest["keyIds"].as_array().is_some_and(|k| !k.is_empty()),
        "{manifest}"
    );
    assert_eq!(manifest["dataSha256"].as_str().map(str::len), Some(64));

    let verified = cli(
        work.path(),
        &as_refs(&env),
        &["backup", "verify", "--json", file.to_str().expect("utf8")],
    );
    let report: Value = serde_json::from_str(&assert_ok(&verified, "backup verify")).expect("json");
    assert_eq!(report["decryption"]["tokens"], 24, "{report}");
    assert_eq!(report["decryption"]["tokensDecrypted"], 24);
    assert_eq!(report["decryption"]["canary"], true);
    assert_eq!(report["integrity"], true);

    // Disaster: nothing but the backup and the key file, in an empty directory.
    let fresh = tempfile::tempdir().expect("dir");
    std::fs::copy(key_file(&app), fresh.path().join("tokenwarden.keys")).expect("key copy");
    let restored = cli(
        fresh.path(),
        &[],
        &["backup", "restore", file.to_str().expect("utf8")],
    );
    let printed = assert_ok(&restored, "backup restore");
    assert!(printed.contains("24 of 24 decrypt"), "{printed}");
    let restored_url = format!("sqlite://{}/tokenwarden.db", fresh.path().display());
    let (keys, audited) = keys_and_audited_names(&restored_url).await;
    assert!(
        !keys.is_empty(),
        "the backup has some of the keys written meanwhile"
    );
    assert_eq!(
        keys, audited,
        "every key with its audit entry, and nothing half-written"
    );

    // A second restore over it is refused without --force, then replaces it with it.
    let again = cli(
        fresh.path(),
        &[],
        &["backup", "restore", file.to_str().expect("utf8")],
    );
    assert_fails(&again, "restore over data", "not empty");
    let forced = cli(
        fresh.path(),
        &[],
        &["backup", "restore", "--force", file.to_str().expect("utf8")],
    );
    assert_ok(&forced, "restore --force");

    // The restored database serves at once: same admin key, same decrypted tokens.
    let running = start(fresh.path(), &[], &["serve"]);
    let body = access_token(&running.addr, &app.admin_key, accounts[0]).await;
    assert_eq!(body["data"]["accessToken"]["token"], original, "{body}");
    assert_eq!(body["data"]["accounts"]["totalCount"], 12);
    terminate(running);

    // The same file restores into PostgreSQL too (whatever it was taken from).
    let pg = fresh_database(Backend::Postgres, &fresh).await;
    let into_pg = cli(
        fresh.path(),
        &[
            ("DATABASE_URL", pg.as_str()),
            (
                "TOKENWARDEN_KEY_FILE",
                fresh
                    .path()
                    .join("tokenwarden.keys")
                    .to_str()
                    .expect("utf8"),
            ),
        ],
        &["backup", "restore", file.to_str().expect("utf8")],
    );
    assert_ok(&into_pg, "restore into PostgreSQL");
    let (pg_keys, _) = keys_and_audited_names(&pg).await;
    assert_eq!(pg_keys, keys);
    let db = service::db::connect(&pg).await.expect("connects");
    assert_eq!(
        social_account::Entity::find()
            .count(&db)
            .await
            .expect("count"),
        12
    );
    // Sequences moved past the restored ids: new rows insert.
    service::identity::api_keys::create_for_tenant(
        &db,
        "default",
        "after-restore",
        service::Role::Viewer,
    )
    .await
    .expect("a new key after the restore");
}

/// A key line `id:base64` of the app's key file.
fn key_line(app: &TestApp) -> (String, String) {
    let text = std::fs::read_to_string(key_file(app)).expect("key file");
    let line = text
        .lines()
        .find(|l| !l.starts_with('#') && l.contains(':'))
        .expect("a key line");
    let (id, key) = line.split_once(':').expect("id:key");
    (id.trim().to_owned(), key.trim().to_owned())
}

fn random_key() -> String {
    let mut bytes = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).expect("random");
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_refuses_damaged_files_and_wrong_keys() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    app.seed_connected("default", "vf", 4).await;
    let work = tempfile::tempdir().expect("dir");
    let dir = work.path();
    let file = dir.join("good.twb");
    let env = source_env(&app);
    let env = as_refs(&env);
    assert_ok(
        &cli(
            dir,
            &env,
            &["backup", "create", "--to", file.to_str().expect("utf8")],
        ),
        "create",
    );
    let good = std::fs::read(&file).expect("file");
    let verify = |path: &Path, env: &[(&str, &str)]| {
        cli(
            dir,
            env,
            &["backup", "verify", path.to_str().expect("utf8")],
        )
    };
    let printed = assert_ok(&verify(&file, &env), "verify");
    assert!(printed.contains("tokens: 8 of 8 decrypt"), "{printed}");
    assert!(
        !printed.contains(&key_line(&app).1),
        "no key material printed"
    );

    // One flipped byte in the compressed data, or a truncated file: damaged.
    let start = good.iter().position(|b| *b == b'\n').expect("manifest") + 1;
    let mut flipped = good.clone();
    let middle = start + (good.len() - start) / 2;
    flipped[middle] ^= 0x5a;
    let bad = dir.join("flipped.twb");
    std::fs::write(&bad, &flipped).expect("write");
    assert_fails(&verify(&bad, &env), "flipped byte", "damaged");
    let cut = dir.join("cut.twb");
    std::fs::write(&cut, &good[..start + (good.len() - start) * 2 / 3]).expect("write");
    assert_fails(&verify(&cut, &env), "truncated file", "damaged");
    // A manifest whose checksum was edited no longer matches the data.
    let mut tampered = good.clone();
    let field = b"\"dataSha256\":\"";
    let at = good
        .windows(field.len())
        .position(|w| w == field)
        .expect("checksum field")
        + field.len();
    tampered[at] = if tampered[at] == b'0' { b'1' } else { b'0' };
    let tampered_path = dir.join("tampered.twb");
    std::fs::write(&tampered_path, &tampered).expect("write");
    assert_fails(&verify(&tampered_path, &env), "edited manifest", "checksum");
    let junk = dir.join("junk.twb");
    std::fs::write(&junk, b"not a backup\n").expect("write");
    assert_fails(&verify(&junk, &env), "not a backup", "damaged");

    // Keys: another key id is missing; the right id with other key material decrypts nothing.
    let (id, _) = key_line(&app);
    let other = format!("other1:{}", random_key());
    assert_fails(
        &verify(&file, &[("TOKENWARDEN_KEYS", other.as_str())]),
        "another key",
        &format!("keys not configured: {id}"),
    );
    let impostor = format!("{id}:{}", random_key());
    assert_fails(
        &verify(&file, &[("TOKENWARDEN_KEYS", impostor.as_str())]),
        "wrong key material",
        "do not decrypt",
    );

    // A restore with the wrong keys changes nothing; with the right ones it needs no --force.
    let empty = tempfile::tempdir().expect("dir");
    let refused = cli(
        empty.path(),
        &[("TOKENWARDEN_KEYS", impostor.as_str())],
        &["backup", "restore", file.to_str().expect("utf8")],
    );
    assert_fails(&refused, "restore with wrong keys", "nothing was restored");
    let no_keys = cli(
        empty.path(),
        &[],
        &["backup", "restore", file.to_str().expect("utf8")],
    );
    assert_fails(&no_keys, "restore without keys", "no encryption keys");
    assert!(
        !empty.path().join("tokenwarden.keys").exists(),
        "verify and restore never generate a key"
    );
    let keys = std::fs::read_to_string(key_file(&app)).expect("keys");
    std::fs::write(empty.path().join("tokenwarden.keys"), keys).expect("write");
    assert_ok(
        &cli(
            empty.path(),
            &[],
            &["backup", "restore", file.to_str().expect("utf8")],
        ),
        "restore with the right keys",
    );
}

const BACKUP_HEALTH: &str = "{ systemHealth { lastHealthCheckAt backup { scheduled lastAttemptAt lastKind \
    lastFile lastSizeBytes lastVerified lastTokens lastTokensDecrypted lastError lastSuccessAt overdue } } }";

async fn backup_health(app: &TestApp) -> Value {
    app.gql_ok(&app.admin_key, BACKUP_HEALTH, json!({})).await["systemHealth"].clone()
}

async fn events_of(app: &TestApp, kind: &str) -> Vec<entity::token_event::Model> {
    entity::token_event::Entity::find()
        .filter(entity::token_event::Column::Kind.eq(kind))
        .all(&app.db)
        .await
        .expect("events")
}

fn hourly_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                        n.starts_with("tokenwarden-hourly-") && n.ends_with(".twb")
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// A short hourly schedule: each backup is written, verified with the running keys, shown in
/// `systemHealth` and `/metrics`, and old ones are pruned to the retention.
async fn scheduled_backups_are_verified_reported_and_pruned(backend: Backend) {
    let backups = tempfile::tempdir().expect("dir");
    let dir = backups.path().to_str().expect("utf8").to_owned();
    let app = TestApp::spawn_with(
        backend,
        &[
            "--backup-dir",
            &dir,
            "--backup-daily-schedule",
            "off",
            "--backup-hourly-schedule",
            "*/1 * * * * *",
            "--backup-keep-hourly",
            "2",
        ],
    )
    .await;
    app.seed_connected("default", "sched", 3).await;
    let before = backup_health(&app).await;
    assert_eq!(before["backup"]["scheduled"], true);
    assert_eq!(before["backup"]["lastAttemptAt"], Value::Null);

    let stop = app.start_workers();
    let mut seen = BTreeSet::new();
    app.wait_for(60, "three verified scheduled backups", || {
        let files = hourly_files(backups.path());
        seen.extend(files);
        let done = seen.len() >= 3;
        async move { done }
    })
    .await;
    app.wait_for(30, "a verified backup in systemHealth", || async {
        backup_health(&app).await["backup"]["lastVerified"] == true
    })
    .await;
    let _ = stop.send(());

    let health = backup_health(&app).await;
    let backup = &health["backup"];
    assert_eq!(backup["lastKind"], "hourly");
    assert_eq!(backup["lastError"], Value::Null, "{health}");
    assert_eq!(backup["lastTokens"], 6);
    assert_eq!(backup["lastTokensDecrypted"], 6);
    assert_eq!(backup["overdue"], false);
    assert!(backup["lastSizeBytes"].as_u64().is_some_and(|b| b > 0));
    assert!(backup["lastSuccessAt"].is_string());
    assert!(events_of(&app, "BACKUP_FAILED").await.is_empty());

    // Retention: the tier keeps its newest two (the newest may still be in flight).
    app.wait_for(30, "the tier pruned to its retention", || {
        let n = hourly_files(backups.path()).len();
        async move { n <= 3 }
    })
    .await;
    let last = backup["lastFile"].as_str().expect("file").to_owned();
    let env = source_env(&app);
    let verified = cli(backups.path(), &as_refs(&env), &["backup", "verify", &last]);
    assert_ok(
        &verified,
        "the scheduled backup verifies from the command line too",
    );

    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for gauge in [
        "tokenwarden_backup_last_success_timestamp_seconds",
        "tokenwarden_backup_last_verified 1",
        "tokenwarden_backup_last_success_size_bytes",
    ] {
        assert!(metrics.contains(gauge), "{gauge} in {metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_backups_sqlite() {
    scheduled_backups_are_verified_reported_and_pruned(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_backups_postgres() {
    scheduled_backups_are_verified_reported_and_pruned(Backend::Postgres).await;
}

/// A backup directory that cannot be created: every run raises BACKUP_FAILED, and with no
/// verified backup for longer than the overdue period, BACKUP_OVERDUE is raised once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_and_overdue_backups_raise_events() {
    let work = tempfile::tempdir().expect("dir");
    let blocked = work.path().join("not-a-directory");
    std::fs::write(&blocked, b"a file where the backup directory should be").expect("write");
    let app = TestApp::spawn_with(
        Backend::Sqlite,
        &[
            "--backup-dir",
            blocked.to_str().expect("utf8"),
            "--backup-daily-schedule",
            "off",
            "--backup-hourly-schedule",
            "*/2 * * * * *",
            "--backup-overdue",
            "1s",
            "--health-schedule",
            "*/1 * * * * *",
        ],
    )
    .await;
    let stop = app.start_workers();
    app.wait_for(60, "BACKUP_FAILED and BACKUP_OVERDUE", || async {
        !events_of(&app, "BACKUP_FAILED").await.is_empty()
            && !events_of(&app, "BACKUP_OVERDUE").await.is_empty()
    })
    .await;
    // Later health checks do not raise it again while nothing changes.
    for _ in 0..2 {
        let checked = backup_health(&app).await["lastHealthCheckAt"].clone();
        let app_ref = &app;
        app.wait_for(30, "another health check", move || {
            let checked = checked.clone();
            async move { backup_health(app_ref).await["lastHealthCheckAt"] != checked }
        })
        .await;
    }
    let _ = stop.send(());
    assert_eq!(
        events_of(&app, "BACKUP_OVERDUE").await.len(),
        1,
        "raised once"
    );
    let failed = &events_of(&app, "BACKUP_FAILED").await[0];
    assert_eq!(failed.error_code.as_deref(), Some("BACKUP_FAILED"));
    assert!(failed.tenant_id.is_none(), "deployment-wide");
    let message = failed.error_message.clone().unwrap_or_default();
    assert!(message.contains("backup directory"), "{message}");

    let health = backup_health(&app).await;
    assert_eq!(health["backup"]["lastVerified"], false);
    assert_eq!(health["backup"]["overdue"], true);
    assert!(health["backup"]["lastError"].is_string(), "{health}");
    assert_eq!(health["backup"]["lastSuccessAt"], Value::Null);
}

const SIZE_HEALTH: &str = "{ systemHealth { databaseSize { measuredAt totalBytes rowsEstimated growthBytes \
    growthOverSeconds tables { name rows bytes } } } }";

async fn database_size(app: &TestApp) -> Value {
    app.gql_ok(&app.admin_key, SIZE_HEALTH, json!({})).await["systemHealth"]["databaseSize"].clone()
}

/// Size and rows per table in `systemHealth` and `/metrics`; DATABASE_GROWTH once when the
/// database grew more than the threshold within the window.
async fn database_size_and_growth_alert(backend: Backend) {
    let app = TestApp::spawn_with(
        backend,
        &[
            "--db-size-schedule",
            "*/1 * * * * *",
            "--db-growth-alert",
            "64KiB",
            "--db-growth-window",
            "1h",
        ],
    )
    .await;
    app.seed_connected("default", "size", 5).await;
    assert_eq!(database_size(&app).await, Value::Null, "not measured yet");
    let stop = app.start_workers();
    app.wait_for(30, "a first measurement", || async {
        database_size(&app).await.is_object()
    })
    .await;
    let first = database_size(&app).await;
    assert!(
        first["totalBytes"].as_u64().is_some_and(|b| b > 0),
        "{first}"
    );
    let accounts = first["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .find(|t| t["name"] == "social_accounts")
        .cloned()
        .expect("social_accounts listed");
    if backend == Backend::Sqlite {
        assert_eq!(first["rowsEstimated"], false);
        assert_eq!(accounts["rows"], 5, "exact on SQLite");
    } else {
        assert_eq!(first["rowsEstimated"], true);
    }
    assert!(events_of(&app, "DATABASE_GROWTH").await.is_empty());

    // A megabyte of incompressible data: more than the threshold.
    let mut ballast = vec![0u8; 1024 * 1024];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut ballast).expect("random");
    service::ops::settings::put(
        &app.db,
        "test_ballast",
        base64::engine::general_purpose::STANDARD.encode(&ballast),
    )
    .await
    .expect("ballast stored");
    app.wait_for(30, "DATABASE_GROWTH", || async {
        !events_of(&app, "DATABASE_GROWTH").await.is_empty()
    })
    .await;
    // Later measurements within the window do not raise it again.
    for _ in 0..2 {
        let measured = database_size(&app).await["measuredAt"].clone();
        let app_ref = &app;
        app.wait_for(30, "another measurement", move || {
            let measured = measured.clone();
            async move { database_size(app_ref).await["measuredAt"] != measured }
        })
        .await;
    }
    let _ = stop.send(());
    let raised = events_of(&app, "DATABASE_GROWTH").await;
    assert_eq!(raised.len(), 1, "once per window");
    assert_eq!(raised[0].error_code.as_deref(), Some("DATABASE_GROWTH"));
    let size = database_size(&app).await;
    assert!(
        size["growthBytes"].as_i64().is_some_and(|g| g > 64 * 1024),
        "{size}"
    );

    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for gauge in [
        "tokenwarden_database_size_bytes ",
        "tokenwarden_database_rows{table=\"social_accounts\"}",
        "tokenwarden_database_growth_bytes ",
    ] {
        assert!(metrics.contains(gauge), "{gauge} in {metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_size_and_growth_sqlite() {
    database_size_and_growth_alert(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_size_and_growth_postgres() {
    database_size_and_growth_alert(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_export_and_check_against_a_running_instance() {
    let dir = tempfile::tempdir().expect("dir");
    let exported = cli(
        dir.path(),
        &[
            ("TOKENWARDEN_PUBLIC_URL", "https://tw.example.test/"),
            ("TOKENWARDEN_TIKTOK_APP_TYPE", "desktop"),
            ("TIKTOK_CLIENT_KEY", "awtestclientkey"),
            ("TIKTOK_CLIENT_SECRET", "tt-secret-never-shown"),
        ],
        &["config", "export"],
    );
    let printed = assert_ok(&exported, "config export");
    assert!(!printed.contains("tt-secret-never-shown"), "{printed}");
    let config: Value = serde_json::from_str(&printed).expect("json");
    assert_eq!(config["sandbox"], false);
    assert_eq!(config["tiktok"]["clientKey"], "awtestclientkey");
    assert_eq!(config["tiktok"]["clientSecretConfigured"], true);
    assert_eq!(config["tiktok"]["appType"], "desktop");
    assert_eq!(config["tiktok"]["pkce"], "S256-hex");
    assert_eq!(
        config["tiktok"]["redirectUri"],
        "https://tw.example.test/oauth/callback/tiktok"
    );
    assert_eq!(
        config["tiktok"]["webhookCallbackUrl"],
        "https://tw.example.test/providers/tiktok/webhook"
    );
    assert_eq!(
        config["instagram"]["deauthorizeCallbackUrl"],
        "https://tw.example.test/providers/instagram/deauthorize"
    );
    assert_eq!(
        config["instagram"]["dataDeletionRequestUrl"],
        "https://tw.example.test/providers/instagram/data-deletion"
    );
    assert!(
        config["tiktok"]["scopes"]
            .as_array()
            .is_some_and(|s| !s.is_empty())
    );

    // The running instance answers the same for the same settings, and check says so.
    let app = TestApp::spawn_with(Backend::Sqlite, &["--tiktok-app-type", "desktop"]).await;
    let viewer = app.create_key(&app.admin_key, "viewer", "VIEWER").await;
    let refused = app
        .gql(Some(&viewer), "{ oauthAppConfig { publicUrl } }", json!({}))
        .await;
    assert_eq!(crate::helpers::error_code(&refused), Some("FORBIDDEN"));
    let public = format!("http://{}", app.addr);
    let check = |app_type: &'static str| {
        cli(
            dir.path(),
            &[
                ("TOKENWARDEN_PUBLIC_URL", public.as_str()),
                // The test server runs with the sandbox's credentials, as real apps do.
                ("TIKTOK_CLIENT_KEY", sandbox::TIKTOK_CLIENT_KEY),
                ("TIKTOK_CLIENT_SECRET", sandbox::TIKTOK_CLIENT_SECRET),
                ("INSTAGRAM_CLIENT_ID", sandbox::INSTAGRAM_CLIENT_ID),
                ("INSTAGRAM_CLIENT_SECRET", sandbox::INSTAGRAM_CLIENT_SECRET),
                ("TOKENWARDEN_TIKTOK_APP_TYPE", app_type),
                ("TOKENWARDEN_API_KEY", app.admin_key.as_str()),
            ],
            &["config", "check", "--url", public.as_str()],
        )
    };
    let same = tokio::task::block_in_place(|| check("desktop"));
    let printed = assert_ok(&same, "config check");
    assert!(printed.contains("matches"), "{printed}");
    let differs = tokio::task::block_in_place(|| check("web"));
    assert_fails(&differs, "config check with another app type", "differ");
    let table = text(&differs.stdout);
    assert!(
        table.contains("tiktok.appType") && table.contains("tiktok.pkce"),
        "{table}"
    );
}
