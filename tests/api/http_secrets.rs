//! Responses that may carry secrets: never cached, never requested over GET.

use serde_json::{Value, json};

use crate::{
    helpers::{TestApp, error_code, global_id},
    on_both_backends,
};

async fn graphql_responses_are_not_stored(app: TestApp) {
    let post = app
        .client
        .post(app.url("/graphql"))
        .bearer_auth(&app.admin_key)
        .json(&json!({ "query": "{ viewer { role } }" }))
        .send()
        .await
        .expect("sent");
    assert_eq!(post.headers()["cache-control"], "no-store");
    let get = app
        .client
        .get(app.url("/graphql?query=%7B%20viewer%20%7B%20role%20%7D%20%7D"))
        .bearer_auth(&app.admin_key)
        .send()
        .await
        .expect("sent");
    assert_eq!(get.status(), 200);
    assert_eq!(get.headers()["cache-control"], "no-store");
    let refused = app
        .client
        .post(app.url("/graphql"))
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .expect("sent");
    assert_eq!(refused.headers()["cache-control"], "no-store");
}

async fn access_tokens_are_refused_over_get(app: TestApp) {
    let integrator = app.key_for_tenant("default", "INTEGRATOR").await;
    let ids = app.seed_connected("default", "getter", 1).await;
    let id = global_id("SocialAccount", ids[0]);
    let query = format!("{{ t: accessToken(accountId: \"{id}\") {{ token }} }}");
    let get: Value = app
        .client
        .get(app.url("/graphql"))
        .query(&[("query", query.as_str())])
        .bearer_auth(&integrator)
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(error_code(&get), Some("BAD_USER_INPUT"), "{get}");
    assert!(get["data"].is_null() || get["data"]["t"].is_null(), "{get}");
    let post = app.gql_ok(&integrator, &query, json!({})).await;
    assert!(post["t"]["token"].as_str().is_some_and(|t| !t.is_empty()));
}

on_both_backends!(
    graphql_responses_are_not_stored,
    access_tokens_are_refused_over_get
);
