//! OAuth flows bound to the browser that started them: `startConnection` hands out a
//! one-time launch URL; opening it sets the flow's cookie and redirects to the platform; the
//! callback without that cookie (another browser, another flow's cookie) is refused before
//! the state is consumed, so the right browser can still finish.

use entity::{oauth_state, social_account};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{Value, json};

use crate::{
    helpers::{APP_REDIRECT, TestApp},
    on_both_backends,
};

/// Starts a TikTok connection: (launch URL, state).
async fn start(app: &TestApp) -> (String, String) {
    let data = app
        .gql_ok(
            &app.admin_key,
            "mutation($input: StartConnectionInput!) { startConnection(input: $input) { authorizationUrl state } }",
            json!({ "input": { "platform": "TIKTOK", "redirectAfter": APP_REDIRECT } }),
        )
        .await;
    (
        data["startConnection"]["authorizationUrl"]
            .as_str()
            .expect("url")
            .to_owned(),
        data["startConnection"]["state"]
            .as_str()
            .expect("state")
            .to_owned(),
    )
}

async fn state_row(app: &TestApp, state: &str) -> oauth_state::Model {
    let hash = hex::encode(ring::digest::digest(
        &ring::digest::SHA256,
        state.as_bytes(),
    ));
    oauth_state::Entity::find()
        .filter(oauth_state::Column::StateHash.eq(hash))
        .one(&app.db)
        .await
        .expect("query")
        .expect("the state row")
}

/// GETs `url` (with `cookie` if any) and expects a refusal page naming `code`, and the same
/// code as JSON for a client that accepts it.
async fn refused(app: &TestApp, url: &str, cookie: Option<&str>, status: u16, code: &str) {
    for accept in ["text/html", "application/json"] {
        let mut request = app.client.get(url).header("accept", accept);
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        let response = request.send().await.expect("sent");
        assert_eq!(response.status(), status, "{url}");
        assert!(response.headers().get("location").is_none());
        let body = response.text().await.expect("body");
        if accept == "application/json" {
            let body: Value = serde_json::from_str(&body).expect("JSON");
            assert_eq!(body["error"]["code"], code, "{body}");
        } else {
            assert!(body.contains(code), "{body}");
        }
    }
}

on_both_backends!(callbacks_are_bound_to_the_browser_that_launched);

async fn callbacks_are_bound_to_the_browser_that_launched(app: TestApp) {
    let (launch_a, state_a) = start(&app).await;
    let (launch_b, _) = start(&app).await;
    assert!(
        launch_a.starts_with(&app.url("/oauth/start/")),
        "{launch_a}"
    );
    assert!(
        !launch_a.contains(&state_a),
        "the launch secret is not the state"
    );

    // Opening the launch URL binds the flow to this browser.
    let a = app.launch(&launch_a).await;
    let attributes: Vec<&str> = a.set_cookie.split(';').map(str::trim).collect();
    for wanted in ["HttpOnly", "SameSite=Lax", "Path=/oauth"] {
        assert!(attributes.contains(&wanted), "{wanted}: {}", a.set_cookie);
    }
    assert!(
        !attributes.contains(&"Secure"),
        "no Secure over http: {}",
        a.set_cookie
    );
    let max_age: i64 = attributes
        .iter()
        .find_map(|a| a.strip_prefix("Max-Age="))
        .expect("Max-Age")
        .parse()
        .expect("seconds");
    assert!(
        (1..=600).contains(&max_age),
        "as long as the state: {max_age}"
    );
    assert!(
        url::Url::parse(&a.authorize)
            .expect("url")
            .query_pairs()
            .any(|(k, v)| k == "state" && v == state_a.as_str()),
        "the platform gets the state: {}",
        a.authorize
    );
    let b = app.launch(&launch_b).await;
    let name = |cookie: &str| cookie.split_once('=').expect("name=value").0.to_owned();
    let value = |cookie: &str| cookie.split_once('=').expect("name=value").1.to_owned();
    assert_ne!(name(&a.cookie), name(&b.cookie), "one cookie per flow");

    // Flow A is approved at the platform; its callback URL is then opened elsewhere.
    let callback = app
        .follow(&format!("{}&sandbox_user=victim", a.authorize))
        .await;
    refused(&app, &callback, None, 400, "OAUTH_BROWSER_MISMATCH").await;
    refused(
        &app,
        &callback,
        Some(&b.cookie),
        400,
        "OAUTH_BROWSER_MISMATCH",
    )
    .await;
    let forged = format!("{}={}", name(&a.cookie), value(&b.cookie));
    refused(
        &app,
        &callback,
        Some(&forged),
        400,
        "OAUTH_BROWSER_MISMATCH",
    )
    .await;
    assert!(
        state_row(&app, &state_a).await.used_at.is_none(),
        "a refused callback does not consume the state"
    );
    assert_eq!(
        social_account::Entity::find()
            .count(&app.db)
            .await
            .expect("count"),
        0,
        "nothing was connected"
    );

    // The browser that launched it finishes, and its cookie is cleared.
    let response = app.get_with_cookie(&callback, &a.cookie).await;
    assert!(response.status().is_redirection(), "{}", response.status());
    let cleared = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.starts_with(&format!("{}=;", name(&a.cookie))) && v.contains("Max-Age=0"));
    assert!(cleared, "{:?}", response.headers());
    let back = response.headers()["location"].to_str().expect("location");
    assert!(
        back.starts_with(&format!("{APP_REDIRECT}?status=connected")),
        "{back}"
    );
    assert!(state_row(&app, &state_a).await.used_at.is_some());

    // A launch URL works in one browser: another is refused, the same one is sent on again.
    refused(&app, &launch_b, None, 409, "CONNECTION_LINK_USED").await;
    let again = app.get_with_cookie(&launch_b, &b.cookie).await;
    assert_eq!(again.status(), 302);
    assert_eq!(
        again.headers()["location"].to_str().expect("location"),
        b.authorize
    );
    // A used flow's launch URL, and an unknown one, are refused.
    refused(
        &app,
        &launch_a,
        Some(&a.cookie),
        400,
        "CONNECTION_LINK_INVALID",
    )
    .await;
    refused(
        &app,
        &app.url("/oauth/start/not-a-launch-secret"),
        None,
        400,
        "CONNECTION_LINK_INVALID",
    )
    .await;
}
