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
    app.config.security.key_file.clone().expect("tests use a key file")
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
