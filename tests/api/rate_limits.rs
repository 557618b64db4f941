//! Provider rate limits as the platforms count them: a burst of new users all get connected
//! (their callbacks wait for capacity instead of failing), and processes sharing Redis
//! share one budget per app.

use serde_json::json;

use crate::helpers::{APP_REDIRECT, Backend, TestApp, redis_args};

/// Starts a TikTok connection on `app`, opens its launch URL and follows the sandbox's
/// authorize page as `user`: returns the callback URL the user's browser is sent to, and
/// the flow's cookie that browser holds.
async fn callback_url(app: &TestApp, user: &str) -> (String, String) {
    let data = app
        .gql_ok(
            &app.admin_key,
            "mutation($input: StartConnectionInput!) { startConnection(input: $input) { authorizationUrl } }",
            json!({ "input": { "platform": "TIKTOK", "redirectAfter": APP_REDIRECT } }),
        )
        .await;
    let authorize = data["startConnection"]["authorizationUrl"]
        .as_str()
        .expect("authorization url");
    let launched = app.launch(authorize).await;
    let callback = app
        .follow(&format!("{}&sandbox_user={user}", launched.authorize))
        .await;
    (callback, launched.cookie)
}

/// The query parameters of the app URL the callback redirects to.
async fn finish(
    app: &TestApp,
    (callback, cookie): &(String, String),
) -> std::collections::HashMap<String, String> {
    let back = app.follow_with(callback, cookie).await;
    assert!(back.starts_with(APP_REDIRECT), "{back}");
    url::Url::parse(&back)
        .expect("url")
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Demo-like configuration with a low app budget (20 calls a second, two per connection):
/// fifty people who approved within the same second all end up connected, because their
/// callbacks wait for capacity; and TikTok (the sandbox, refusing more than 25 calls a
/// second) never has to refuse a call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_connections_within_one_second_all_succeed() {
    let app = TestApp::spawn_with(Backend::Sqlite, &["--tiktok-rate-limit", "20/s"]).await;
    app.sandbox.update_config(sandbox::ConfigPatch {
        rate_limit_per_s: Some(Some(25)),
        ..Default::default()
    });
    let mut callbacks = Vec::new();
    for i in 0..50 {
        callbacks.push(callback_url(&app, &format!("burst{i}")).await);
    }
    let app = &app;
    let results = futures::future::join_all(callbacks.iter().map(|url| finish(app, url))).await;
    for params in &results {
        assert_eq!(
            params.get("status").map(String::as_str),
            Some("connected"),
            "every callback succeeds: {params:?}"
        );
    }
    let stats = app.sandbox.stats().tiktok;
    assert_eq!(stats.exchange_calls, 50);
    assert_eq!(stats.user_info_calls, 50);
    assert_eq!(stats.rate_limited, 0, "TikTok never had to refuse a call");
}

/// Two server processes with the same Redis prefix share the TikTok app's budget of six
/// calls an hour: three connections (two calls each) get through, whichever process takes
/// the callback, and the fourth is refused before any call reaches TikTok. Counted per
/// process, four would have got through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_one_app_limit_in_redis() {
    let mut args = redis_args();
    args.extend(["--tiktok-rate-limit".to_owned(), "6/h".to_owned()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let app = TestApp::spawn_with(Backend::Postgres, &args).await;
    let (second, _stop) = app.second_node().await;
    let mut outcomes = Vec::new();
    for i in 0..4 {
        let mut callback = callback_url(&app, &format!("shared{i}")).await;
        if i % 2 == 1 {
            // The load balancer sends this user's callback to the other process (cookies
            // are per host, not per port: the browser sends the flow's cookie there too).
            callback.0 = callback
                .0
                .replace(&app.addr.to_string(), &second.to_string());
        }
        let params = finish(&app, &callback).await;
        outcomes.push((params["status"].clone(), params.get("error").cloned()));
    }
    let connected = |s: &str| (s.to_owned(), None::<String>);
    assert_eq!(
        outcomes,
        vec![
            connected("connected"),
            connected("connected"),
            connected("connected"),
            ("error".to_owned(), Some("RATE_LIMITED".to_owned())),
        ]
    );
    let stats = app.sandbox.stats().tiktok;
    assert_eq!(
        (stats.exchange_calls, stats.user_info_calls),
        (3, 3),
        "the refused connection made no call"
    );
}
