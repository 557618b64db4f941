//! TikTok PKCE per app type, end to end: startConnection, its launch URL, the sandbox's
//! authorize page, our callback, the code exchange.

use serde_json::json;

use crate::helpers::{APP_REDIRECT, Backend, TestApp};

async fn authorization_url(app: &TestApp) -> url::Url {
    let data = app
        .gql_ok(
            &app.admin_key,
            "mutation($input: StartConnectionInput!) { startConnection(input: $input) { authorizationUrl } }",
            json!({ "input": { "platform": "TIKTOK", "redirectAfter": APP_REDIRECT } }),
        )
        .await;
    let launched = app
        .launch(
            data["startConnection"]["authorizationUrl"]
                .as_str()
                .expect("url"),
        )
        .await;
    url::Url::parse(&launched.authorize).expect("absolute url")
}

fn param(url: &url::Url, key: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

fn desktop_sandbox(app: &TestApp) {
    app.sandbox.update_config(sandbox::ConfigPatch {
        tiktok_app_type: Some(sandbox::TikTokAppType::Desktop),
        ..Default::default()
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_apps_connect_without_pkce() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let url = authorization_url(&app).await;
    assert_eq!(param(&url, "code_challenge"), None, "{url}");
    assert_eq!(param(&url, "code_challenge_method"), None);
    app.connect(&app.admin_key, "TIKTOK", "webuser").await;

    // A web-configured tokenwarden against a desktop app: TikTok refuses the authorization
    // and the user is told so instead of getting a broken account.
    desktop_sandbox(&app);
    let params = app
        .connect_flow(&app.admin_key, "TIKTOK", "webuser2", "")
        .await;
    assert_eq!(params["status"], "error", "{params:?}");
}

async fn desktop_apps_use_hex_pkce(app: TestApp) {
    desktop_sandbox(&app);
    let url = authorization_url(&app).await;
    let challenge = param(&url, "code_challenge").expect("a challenge");
    assert_eq!(challenge.len(), 64, "hex SHA-256: {challenge}");
    assert!(challenge.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(
        param(&url, "code_challenge_method").as_deref(),
        Some("S256")
    );
    let id = app.connect(&app.admin_key, "TIKTOK", "desk").await;
    let data = app
        .gql_ok(
            &app.admin_key,
            "query($id: ID!) { account(id: $id) { status } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(data["account"]["status"], "ACTIVE");
    // Instagram has no PKCE either way.
    let ig = app.connect(&app.admin_key, "INSTAGRAM", "shop").await;
    assert!(!ig.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn desktop_apps_use_hex_pkce_sqlite() {
    desktop_apps_use_hex_pkce(
        TestApp::spawn_with(Backend::Sqlite, &["--tiktok-app-type", "desktop"]).await,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn desktop_apps_use_hex_pkce_postgres() {
    desktop_apps_use_hex_pkce(
        TestApp::spawn_with(Backend::Postgres, &["--tiktok-app-type", "desktop"]).await,
    )
    .await
}
