//! Accounts: listing, filters, pagination, tenant isolation, deactivation, data loading.

use entity::enums::{AccountStatus, Platform};
use serde_json::{Value, json};

use crate::{
    helpers::{TestApp, error_code, global_id},
    on_both_backends,
};

on_both_backends!(
    listing_filters_and_counts,
    pagination_forward_and_backward,
    other_tenants_accounts_are_invisible,
    deactivate_and_reactivate_are_audited,
    roles_guard_account_mutations,
    token_health_loads_in_constant_queries,
);

const LIST: &str =
    "query($filter: AccountFilter, $first: Int, $after: String, $last: Int, $before: String) {
  accounts(filter: $filter, first: $first, after: $after, last: $last, before: $before) {
    totalCount
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    nodes { id username platform status providerAccountId tokenHealth { state } }
  }
}";

fn usernames(data: &Value) -> Vec<String> {
    data["accounts"]["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| n["username"].as_str().expect("username").to_owned())
        .collect()
}

async fn seed_default(app: &TestApp) {
    app.seed_account(
        "default",
        Platform::TikTok,
        "alice",
        AccountStatus::Active,
        Some(48),
    )
    .await;
    app.seed_account(
        "default",
        Platform::Instagram,
        "Bob_Shop",
        AccountStatus::Active,
        Some(2),
    )
    .await;
    app.seed_account(
        "default",
        Platform::TikTok,
        "carol",
        AccountStatus::ReconnectRequired,
        Some(-1),
    )
    .await;
    app.seed_account(
        "default",
        Platform::Instagram,
        "dave%",
        AccountStatus::Expired,
        None,
    )
    .await;
    app.seed_account(
        "default",
        Platform::TikTok,
        "erin",
        AccountStatus::RefreshFailing,
        Some(1),
    )
    .await;
}

async fn listing_filters_and_counts(app: TestApp) {
    seed_default(&app).await;
    let key = app.create_key(&app.admin_key, "viewer", "VIEWER").await;

    let all = app.gql_ok(&key, LIST, json!({})).await;
    assert_eq!(all["accounts"]["totalCount"], 5);
    assert_eq!(
        usernames(&all),
        ["alice", "Bob_Shop", "carol", "dave%", "erin"]
    );
    let states: Vec<&str> = all["accounts"]["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| n["tokenHealth"]["state"].as_str().expect("state"))
        .collect();
    assert_eq!(
        states,
        ["VALID", "EXPIRING", "EXPIRED", "MISSING", "EXPIRING"]
    );

    let tiktok = app
        .gql_ok(&key, LIST, json!({ "filter": { "platforms": ["TIKTOK"] } }))
        .await;
    assert_eq!(usernames(&tiktok), ["alice", "carol", "erin"]);
    assert_eq!(tiktok["accounts"]["totalCount"], 3);

    let broken = app
        .gql_ok(
            &key,
            LIST,
            json!({ "filter": { "statuses": ["RECONNECT_REQUIRED", "EXPIRED"] } }),
        )
        .await;
    assert_eq!(usernames(&broken), ["carol", "dave%"]);

    let both = app
        .gql_ok(
            &key,
            LIST,
            json!({ "filter": { "platforms": ["INSTAGRAM"], "statuses": ["ACTIVE"] } }),
        )
        .await;
    assert_eq!(usernames(&both), ["Bob_Shop"]);

    let search = app
        .gql_ok(&key, LIST, json!({ "filter": { "search": "bob_s" } }))
        .await;
    assert_eq!(
        usernames(&search),
        ["Bob_Shop"],
        "search is case-insensitive"
    );
    let percent = app
        .gql_ok(&key, LIST, json!({ "filter": { "search": "%" } }))
        .await;
    assert_eq!(usernames(&percent), ["dave%"], "LIKE wildcards are literal");
    let underscore = app
        .gql_ok(&key, LIST, json!({ "filter": { "search": "_" } }))
        .await;
    assert_eq!(usernames(&underscore), ["Bob_Shop"]);
}

async fn pagination_forward_and_backward(app: TestApp) {
    seed_default(&app).await;
    let key = &app.admin_key;
    let page1 = app.gql_ok(key, LIST, json!({ "first": 2 })).await;
    assert_eq!(usernames(&page1), ["alice", "Bob_Shop"]);
    assert_eq!(page1["accounts"]["pageInfo"]["hasNextPage"], true);
    assert_eq!(page1["accounts"]["pageInfo"]["hasPreviousPage"], false);
    assert_eq!(
        page1["accounts"]["totalCount"], 5,
        "totalCount counts all pages"
    );

    let after = page1["accounts"]["pageInfo"]["endCursor"].clone();
    let page2 = app
        .gql_ok(key, LIST, json!({ "first": 2, "after": after }))
        .await;
    assert_eq!(usernames(&page2), ["carol", "dave%"]);
    let after = page2["accounts"]["pageInfo"]["endCursor"].clone();
    let page3 = app
        .gql_ok(key, LIST, json!({ "first": 2, "after": after }))
        .await;
    assert_eq!(usernames(&page3), ["erin"]);
    assert_eq!(page3["accounts"]["pageInfo"]["hasNextPage"], false);

    let last = app.gql_ok(key, LIST, json!({ "last": 2 })).await;
    assert_eq!(usernames(&last), ["dave%", "erin"]);
    assert_eq!(last["accounts"]["pageInfo"]["hasPreviousPage"], true);
    let before = last["accounts"]["pageInfo"]["startCursor"].clone();
    let prev = app
        .gql_ok(key, LIST, json!({ "last": 2, "before": before }))
        .await;
    assert_eq!(usernames(&prev), ["Bob_Shop", "carol"]);

    let body = app.gql(Some(key), LIST, json!({ "first": 1000 })).await;
    assert_eq!(error_code(&body), Some("BAD_USER_INPUT"), "{body}");
    let body = app
        .gql(Some(key), LIST, json!({ "first": 1, "after": "nonsense" }))
        .await;
    assert_eq!(error_code(&body), Some("BAD_USER_INPUT"), "{body}");
}

async fn other_tenants_accounts_are_invisible(app: TestApp) {
    seed_default(&app).await;
    let theirs = app
        .seed_account(
            "acme",
            Platform::TikTok,
            "acme-brand",
            AccountStatus::Active,
            Some(48),
        )
        .await;
    let acme = app.key_for_tenant("acme", "ADMIN").await;

    let mine = app.gql_ok(&app.admin_key, LIST, json!({})).await;
    assert!(!usernames(&mine).contains(&"acme-brand".to_owned()));
    let listing = app.gql_ok(&acme, LIST, json!({})).await;
    assert_eq!(usernames(&listing), ["acme-brand"]);
    assert_eq!(listing["accounts"]["totalCount"], 1);
    let search = app
        .gql_ok(&acme, LIST, json!({ "filter": { "search": "alice" } }))
        .await;
    assert_eq!(search["accounts"]["totalCount"], 0);

    // Alice's real id, read from the row her tenant sees (never a guessed id).
    let alice = app
        .gql_ok(
            &app.admin_key,
            "{ accounts(filter: {search: \"alice\"}) { nodes { id username } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        alice["accounts"]["nodes"][0]["username"], "alice",
        "{alice}"
    );
    let alice = alice["accounts"]["nodes"][0]["id"].clone();
    // Positive control: the owner reads it.
    let owner = app
        .gql_ok(
            &app.admin_key,
            "query($id: ID!) { account(id: $id) { id } }",
            json!({ "id": alice }),
        )
        .await;
    assert_eq!(owner["account"]["id"], alice);
    let body = app
        .gql(
            Some(&acme),
            "query($id: ID!) { account(id: $id) { id } }",
            json!({ "id": alice }),
        )
        .await;
    assert_eq!(error_code(&body), Some("NOT_FOUND"));
    let node = app
        .gql_ok(
            &acme,
            "query($id: ID!) { node(id: $id) { id } }",
            json!({ "id": alice }),
        )
        .await;
    assert_eq!(node["node"], Value::Null);
    for mutation in ["deactivateAccount", "reactivateAccount"] {
        let body = app
            .gql(
                Some(&acme),
                &format!("mutation($id: ID!) {{ {mutation}(id: $id) {{ id }} }}"),
                json!({ "id": alice }),
            )
            .await;
        assert_eq!(error_code(&body), Some("NOT_FOUND"), "{mutation}: {body}");
    }

    let own = global_id("SocialAccount", theirs);
    let node = app
        .gql_ok(
            &acme,
            "query($id: ID!) { node(id: $id) { id ... on SocialAccount { username } } }",
            json!({ "id": own }),
        )
        .await;
    assert_eq!(node["node"]["username"], "acme-brand");
}

async fn deactivate_and_reactivate_are_audited(app: TestApp) {
    let id = app
        .seed_account(
            "default",
            Platform::TikTok,
            "alice",
            AccountStatus::Active,
            Some(48),
        )
        .await;
    let expired = app
        .seed_account(
            "default",
            Platform::Instagram,
            "old",
            AccountStatus::Active,
            Some(-2),
        )
        .await;
    let gid = global_id("SocialAccount", id);
    let data = app
        .gql_ok(
            &app.admin_key,
            "mutation($id: ID!) { deactivateAccount(id: $id) { id status deactivatedAt } }",
            json!({ "id": gid }),
        )
        .await;
    assert_eq!(data["deactivateAccount"]["status"], "DEACTIVATED");
    assert!(data["deactivateAccount"]["deactivatedAt"].is_string());

    let filtered = app
        .gql_ok(
            &app.admin_key,
            LIST,
            json!({ "filter": { "statuses": ["DEACTIVATED"] } }),
        )
        .await;
    assert_eq!(usernames(&filtered), ["alice"]);

    let data = app
        .gql_ok(
            &app.admin_key,
            "mutation($id: ID!) { reactivateAccount(id: $id) { status deactivatedAt } }",
            json!({ "id": gid }),
        )
        .await;
    assert_eq!(data["reactivateAccount"]["status"], "ACTIVE");
    assert_eq!(data["reactivateAccount"]["deactivatedAt"], Value::Null);

    let body = app
        .gql(
            Some(&app.admin_key),
            "mutation($id: ID!) { reactivateAccount(id: $id) { status } }",
            json!({ "id": gid }),
        )
        .await;
    assert_eq!(
        error_code(&body),
        Some("BAD_USER_INPUT"),
        "not deactivated: {body}"
    );

    // An account whose token expired while deactivated comes back EXPIRED.
    let old = global_id("SocialAccount", expired);
    for mutation in ["deactivateAccount", "reactivateAccount"] {
        app.gql_ok(
            &app.admin_key,
            &format!("mutation($id: ID!) {{ {mutation}(id: $id) {{ id }} }}"),
            json!({ "id": old }),
        )
        .await;
    }
    let status = app
        .gql_ok(
            &app.admin_key,
            "query($id: ID!) { account(id: $id) { status } }",
            json!({ "id": old }),
        )
        .await;
    assert_eq!(status["account"]["status"], "EXPIRED");

    let audit = app
        .gql_ok(
            &app.admin_key,
            "query($id: ID!) { auditLog(filter: {accountId: $id}) { totalCount nodes { action targetId details } } }",
            json!({ "id": gid }),
        )
        .await;
    assert_eq!(audit["auditLog"]["totalCount"], 2);
    assert_eq!(
        audit["auditLog"]["nodes"][0]["action"],
        "ACCOUNT_REACTIVATED"
    );
    assert_eq!(
        audit["auditLog"]["nodes"][1]["action"],
        "ACCOUNT_DEACTIVATED"
    );
    assert_eq!(
        audit["auditLog"]["nodes"][1]["details"]["previousStatus"],
        "ACTIVE"
    );
    assert_eq!(audit["auditLog"]["nodes"][0]["targetId"], gid);
}

async fn roles_guard_account_mutations(app: TestApp) {
    let id = app
        .seed_account(
            "default",
            Platform::TikTok,
            "alice",
            AccountStatus::Active,
            Some(48),
        )
        .await;
    let gid = global_id("SocialAccount", id);
    for role in ["VIEWER", "INTEGRATOR"] {
        let key = app.create_key(&app.admin_key, role, role).await;
        let body = app
            .gql(
                Some(&key),
                "mutation($id: ID!) { deactivateAccount(id: $id) { id } }",
                json!({ "id": gid }),
            )
            .await;
        assert_eq!(error_code(&body), Some("FORBIDDEN"), "{role}: {body}");
        // Reading is fine for every role.
        let data = app
            .gql_ok(
                &key,
                "query($id: ID!) { account(id: $id) { status } }",
                json!({ "id": gid }),
            )
            .await;
        assert_eq!(
            data["account"]["status"], "ACTIVE",
            "{role} changed nothing"
        );
    }
    let key_id = app
        .gql_ok(&app.admin_key, "{ viewer { apiKey { id } } }", json!({}))
        .await["viewer"]["apiKey"]["id"]
        .clone();
    assert!(key_id.is_string(), "the admin's own ApiKey id: {key_id}");
    let body = app
        .gql(
            Some(&app.admin_key),
            "mutation($id: ID!) { deactivateAccount(id: $id) { id } }",
            json!({ "id": key_id }),
        )
        .await;
    assert_eq!(
        error_code(&body),
        Some("BAD_USER_INPUT"),
        "wrong id type: {body}"
    );
}

async fn token_health_loads_in_constant_queries(app: TestApp) {
    for i in 0..12 {
        app.seed_account(
            "default",
            Platform::TikTok,
            &format!("user{i:02}"),
            AccountStatus::Active,
            Some(30),
        )
        .await;
    }
    let query = "query($first: Int) { accounts(first: $first) { nodes { username tokenHealth { state expiresAt scopes } } } }";
    // Warm up: the first request of a key also records its last use.
    app.gql_ok(&app.admin_key, "{ viewer { role } }", json!({}))
        .await;
    let mut costs = Vec::new();
    for first in [2, 12] {
        let before = app.queries.get();
        let data = app
            .gql_ok(&app.admin_key, query, json!({ "first": first }))
            .await;
        assert_eq!(
            data["accounts"]["nodes"].as_array().map(Vec::len),
            Some(first)
        );
        assert_eq!(
            data["accounts"]["nodes"][0]["tokenHealth"]["state"],
            "VALID"
        );
        costs.push(app.queries.get() - before);
    }
    assert_eq!(
        costs[0], costs[1],
        "a bigger page costs no extra queries: {costs:?}"
    );
}
