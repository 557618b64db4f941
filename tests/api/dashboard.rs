//! The dashboard: embedded assets with their headers, GraphiQL offline and behind the
//! production switch, and the whole UI driven in Debian's Chromium by
//! `tests/browser/dashboard.mjs` (Playwright, no browser download), signed in as a user with
//! password + TOTP.

use entity::enums::{AccountStatus, Platform};
use std::{path::PathBuf, process::Command, time::Duration};

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[tokio::test]
async fn assets_are_embedded_with_types_caching_and_a_strict_policy() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let page = app.client.get(app.url("/")).send().await.expect("sent");
    assert_eq!(page.status(), 200);
    let headers = page.headers().clone();
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(headers["cache-control"], "no-cache");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    let csp = headers["content-security-policy"].to_str().expect("ascii");
    assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"));
    assert!(
        !csp.contains("unsafe"),
        "the dashboard needs nothing inline: {csp}"
    );
    let html = page.text().await.expect("html");
    assert!(html.contains("/assets/js/app.js"));
    assert!(!html.contains("https://"), "no CDN: {html}");

    let js = app
        .client
        .get(app.url("/assets/js/app.js"))
        .send()
        .await
        .expect("sent");
    assert_eq!(js.status(), 200);
    assert_eq!(
        js.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    let etag = js.headers()["etag"].clone();
    let again = app
        .client
        .get(app.url("/assets/js/app.js"))
        .header("if-none-match", etag)
        .send()
        .await
        .expect("sent");
    assert_eq!(again.status(), 304, "revalidation with the ETag");

    let vendor = app
        .client
        .get(app.url("/assets/vendor/graphiql-3.9.0/graphiql.min.js"))
        .send()
        .await
        .expect("sent");
    assert_eq!(vendor.status(), 200);
    assert!(
        vendor.headers()["cache-control"]
            .to_str()
            .expect("ascii")
            .contains("immutable")
    );
    for missing in [
        "/assets/nope.js",
        "/assets/index.html",
        "/assets/../Cargo.toml",
    ] {
        let response = app.client.get(app.url(missing)).send().await.expect("sent");
        assert_eq!(response.status(), 404, "{missing}");
    }
    let graphiql = app
        .client
        .get(app.url("/graphiql"))
        .send()
        .await
        .expect("sent");
    assert_eq!(graphiql.status(), 200);
    let html = graphiql.text().await.expect("html");
    assert!(html.contains("/assets/vendor/graphiql-3.9.0/graphiql.min.js"));
    assert!(
        !html.contains("https://"),
        "GraphiQL loads without internet"
    );
}

#[tokio::test]
async fn production_serves_the_dashboard_but_not_graphiql() {
    let app = TestApp::spawn_with(Backend::Sqlite, &["--production", "true"]).await;
    let page = app.client.get(app.url("/")).send().await.expect("sent");
    assert_eq!(page.status(), 200);
    for hidden in ["/graphiql", "/assets/vendor/graphiql-3.9.0/graphiql.min.js"] {
        let response = app.client.get(app.url(hidden)).send().await.expect("sent");
        assert_eq!(response.status(), 404, "{hidden} is off in production");
    }
}

/// What the browser test needs, or a failure saying how to install it (never a skip).
fn browser_prerequisites() -> PathBuf {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "Chromium is missing at {chromium}: install it with `apt-get install -y chromium` \
         (or point CHROMIUM at a Chromium binary)"
    );
    let browser = repo().join("tests/browser");
    assert!(
        browser
            .join("node_modules/playwright-core/package.json")
            .exists(),
        "playwright-core is missing: run `npm ci --prefix tests/browser` (Node.js 20+)"
    );
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|out| out.status.success()),
        "Node.js is missing: install it with `apt-get install -y nodejs npm`"
    );
    browser
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_works_in_chromium() {
    let browser = browser_prerequisites();
    let app = TestApp::spawn(Backend::Sqlite).await;
    let key = app.admin_key.clone();
    // Accounts connected through the sandbox's OAuth flow (real grants that can be revoked);
    // the first two get revoked by the script (TikTok: Instagram tokens cannot be refreshed
    // in their first day), the others are bulk-refreshed.
    let mut accounts = Vec::new();
    for (platform, user) in [
        ("TIKTOK", "alice"),
        ("TIKTOK", "ben"),
        ("TIKTOK", "carl"),
        ("INSTAGRAM", "dana"),
    ] {
        let id = app.connect(&key, platform, user).await;
        let data = app
            .gql_ok(
                &key,
                "query($id: ID!) { account(id: $id) { id username platform providerAccountId } }",
                json!({ "id": id }),
            )
            .await;
        accounts.push(data["account"].clone());
    }
    // Some history for the overview: an expired and a deactivated account.
    app.seed_account(
        "default",
        Platform::TikTok,
        "erin",
        AccountStatus::Expired,
        Some(-2),
    )
    .await;
    app.seed_account(
        "default",
        Platform::Instagram,
        "fred",
        AccountStatus::Deactivated,
        None,
    )
    .await;

    // Token reads for the overview's analytics (as an integration posting would).
    for account in accounts.iter().skip(2) {
        app.gql_ok(
            &key,
            "query($id: ID!) { accessToken(accountId: $id) { expiresAt } }",
            json!({ "id": account["id"] }),
        )
        .await;
    }
    // The operator signs in as a user with password + TOTP, created as the CLI does.
    let password = "correct horse battery staple";
    let created = service::identity::users::create(
        &app.db,
        &app.jobs.engine.vault(),
        "default",
        "operator@example.com",
        service::Role::Admin,
        SecretString::from(password),
    )
    .await
    .expect("user created");
    let uri = created.otpauth_uri.expose_secret().to_owned();
    let totp_secret = uri
        .split(['?', '&'])
        .find_map(|part| part.strip_prefix("secret="))
        .expect("the otpauth URI carries the secret")
        .to_owned();

    let shots = repo().join("target/screenshots");
    let script = browser.join("dashboard.mjs");
    let base = app.url("");
    let sandbox = format!("http://{}/sandbox", app.sandbox_addr);
    let accounts = Value::Array(accounts).to_string();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(&script)
            .arg(&base)
            .env("TW_SANDBOX_URL", sandbox)
            .env("TW_ADMIN_KEY", key)
            .env("TW_EMAIL", &created.user.email)
            .env("TW_PASSWORD", password)
            .env("TW_TOTP_SECRET", totp_secret)
            .env("TW_ACCOUNTS", accounts)
            .env("TW_SCREENSHOTS", &shots)
            .output()
    });
    let output = tokio::time::timeout(Duration::from_secs(300), output)
        .await
        .expect("the browser test finishes within 5 minutes")
        .expect("join")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the browser test failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
}
