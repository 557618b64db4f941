//! Analytics through real HTTP on both backends: refresh attempts per hour by platform and
//! outcome (24 h and 7 d windows), failure reasons ranked and paged, tokens expiring per
//! day, and `accessToken` reads counted per account and per reader per day (one counter row
//! per account, reader and day). Every query sees only the caller's tenant.

use chrono::{DateTime, Duration, DurationRound, Utc};
use entity::enums::{AccountStatus, Platform};
use sea_orm::{ActiveModelTrait, EntityTrait, PaginatorTrait, Set};
use serde_json::{Value, json};
use service::{
    providers::ErrorClass,
    tokens::{
        attempts::{self, NewAttempt, Outcome},
        queue::Trigger,
    },
};

use crate::{
    helpers::{TestApp, decode_id, error_code},
    on_both_backends,
};

on_both_backends!(
    refresh_attempts_per_hour_by_platform_and_outcome,
    failure_reasons_are_ranked_and_paged,
    tokens_expiring_per_day,
    token_reads_per_account_and_reader_per_day,
    analytics_arguments_are_bounded,
    prune_drops_old_read_counters_and_stale_sign_in_throttles,
    manual_refreshes_are_counted_with_their_failure_reason,
);

async fn attempt(
    app: &TestApp,
    account: i64,
    started_at: DateTime<Utc>,
    outcome: Outcome,
    code: Option<&str>,
) {
    let tenant_id = app.tenant_id("default").await;
    attempts::record(
        &app.db,
        NewAttempt {
            tenant_id,
            account_id: account,
            attempt: 1,
            trigger: Trigger::Sweep,
            started_at,
            outcome,
            error_class: code.map(|_| ErrorClass::Transient),
            error_code: code.map(str::to_owned),
        },
    )
    .await
    .expect("attempt recorded");
}

fn hour_of(t: DateTime<Utc>) -> String {
    t.duration_trunc(Duration::hours(1))
        .expect("truncates")
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// `(hour, platform, outcome) -> count` of a `refreshAttemptsPerHour` answer.
fn buckets(rows: &Value) -> Vec<(String, String, String, u64)> {
    rows.as_array()
        .expect("list")
        .iter()
        .map(|b| {
            let hour = DateTime::parse_from_rfc3339(b["hour"].as_str().expect("hour"))
                .expect("RFC 3339")
                .with_timezone(&Utc);
            (
                hour.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                b["platform"].as_str().expect("platform").to_owned(),
                b["outcome"].as_str().expect("outcome").to_owned(),
                b["count"].as_u64().expect("count"),
            )
        })
        .collect()
}

async fn refresh_attempts_per_hour_by_platform_and_outcome(app: TestApp) {
    let key = app.admin_key.clone();
    let tiktok = app
        .seed_account(
            "default",
            Platform::TikTok,
            "ana",
            AccountStatus::Active,
            Some(20),
        )
        .await;
    let instagram = app
        .seed_account(
            "default",
            Platform::Instagram,
            "ivy",
            AccountStatus::Active,
            Some(200),
        )
        .await;
    let now = Utc::now();
    attempt(&app, tiktok, now, Outcome::Succeeded, None).await;
    let two_hours_ago = now - Duration::hours(2);
    let three_days_ago = now - Duration::days(3);
    for _ in 0..2 {
        attempt(
            &app,
            instagram,
            two_hours_ago,
            Outcome::FailedTransient,
            Some("2"),
        )
        .await;
    }
    attempt(&app, tiktok, two_hours_ago, Outcome::Succeeded, None).await;
    attempt(
        &app,
        tiktok,
        three_days_ago,
        Outcome::FailedPermanent,
        Some("invalid_grant"),
    )
    .await;
    // Another tenant's attempts never show.
    let other = app
        .seed_account(
            "other",
            Platform::TikTok,
            "zed",
            AccountStatus::Active,
            Some(5),
        )
        .await;
    attempts::record(
        &app.db,
        NewAttempt {
            tenant_id: app.tenant_id("other").await,
            account_id: other,
            attempt: 1,
            trigger: Trigger::Sweep,
            started_at: now,
            outcome: Outcome::Succeeded,
            error_class: None,
            error_code: None,
        },
    )
    .await
    .expect("recorded");

    let query = "query($w: AnalyticsWindow!) { refreshAttemptsPerHour(window: $w) { hour platform outcome count } }";
    let day = app
        .gql_ok(&key, query, json!({ "w": "LAST_24_HOURS" }))
        .await;
    let day = buckets(&day["refreshAttemptsPerHour"]);
    assert_eq!(
        day,
        vec![
            (
                hour_of(two_hours_ago),
                "TIKTOK".into(),
                "SUCCEEDED".into(),
                1
            ),
            (
                hour_of(two_hours_ago),
                "INSTAGRAM".into(),
                "FAILED_TRANSIENT".into(),
                2
            ),
            (hour_of(now), "TIKTOK".into(), "SUCCEEDED".into(), 1),
        ],
        "hourly buckets of this tenant, oldest first"
    );
    let week = app.gql_ok(&key, query, json!({ "w": "LAST_7_DAYS" })).await;
    let week = buckets(&week["refreshAttemptsPerHour"]);
    assert_eq!(week.len(), 4, "{week:?}");
    assert_eq!(
        week[0],
        (
            hour_of(three_days_ago),
            "TIKTOK".into(),
            "FAILED_PERMANENT".into(),
            1
        )
    );
    // The default window is 24 hours.
    let default = app
        .gql_ok(&key, "{ refreshAttemptsPerHour { count } }", json!({}))
        .await;
    assert_eq!(
        default["refreshAttemptsPerHour"].as_array().map(Vec::len),
        Some(3)
    );
}

async fn failure_reasons_are_ranked_and_paged(app: TestApp) {
    let key = app.admin_key.clone();
    let tiktok = app
        .seed_account(
            "default",
            Platform::TikTok,
            "tia",
            AccountStatus::RefreshFailing,
            Some(3),
        )
        .await;
    let instagram = app
        .seed_account(
            "default",
            Platform::Instagram,
            "ian",
            AccountStatus::Active,
            Some(300),
        )
        .await;
    let now = Utc::now();
    for _ in 0..3 {
        attempt(
            &app,
            tiktok,
            now - Duration::hours(1),
            Outcome::FailedTransient,
            Some("rate_limit_exceeded"),
        )
        .await;
    }
    attempt(
        &app,
        instagram,
        now - Duration::hours(5),
        Outcome::FailedPermanent,
        Some("190"),
    )
    .await;
    attempt(
        &app,
        instagram,
        now - Duration::hours(4),
        Outcome::FailedTransient,
        None,
    )
    .await;
    attempt(&app, tiktok, now, Outcome::Succeeded, None).await;
    // Outside the 7-day window.
    attempt(
        &app,
        tiktok,
        now - Duration::days(9),
        Outcome::FailedPermanent,
        Some("old"),
    )
    .await;

    let query = "query($first: Int, $after: String) {
        failureReasons(window: LAST_7_DAYS, first: $first, after: $after) {
            pageInfo { hasNextPage hasPreviousPage endCursor }
            edges { cursor node { platform code class count lastSeenAt } }
        } }";
    let all = app.gql_ok(&key, query, json!({ "first": 10 })).await;
    let ranked: Vec<(String, String, u64)> = all["failureReasons"]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| {
            (
                e["node"]["platform"].as_str().expect("platform").to_owned(),
                e["node"]["code"].as_str().expect("code").to_owned(),
                e["node"]["count"].as_u64().expect("count"),
            )
        })
        .collect();
    assert_eq!(
        ranked,
        vec![
            ("TIKTOK".into(), "rate_limit_exceeded".into(), 3),
            ("INSTAGRAM".into(), "190".into(), 1),
            ("INSTAGRAM".into(), "unknown".into(), 1),
        ],
        "most frequent first, ties by code; successes and old failures left out"
    );
    assert_eq!(all["failureReasons"]["pageInfo"]["hasNextPage"], false);

    // Page by page with the cursors.
    let first = app.gql_ok(&key, query, json!({ "first": 2 })).await;
    let page = &first["failureReasons"];
    assert_eq!(page["pageInfo"]["hasNextPage"], true);
    assert_eq!(page["pageInfo"]["hasPreviousPage"], false);
    let next = app
        .gql_ok(
            &key,
            query,
            json!({ "first": 2, "after": page["pageInfo"]["endCursor"] }),
        )
        .await;
    let rest = &next["failureReasons"];
    assert_eq!(rest["edges"].as_array().map(Vec::len), Some(1));
    assert_eq!(rest["edges"][0]["node"]["code"], "unknown");
    assert_eq!(rest["pageInfo"]["hasNextPage"], false);
    assert_eq!(rest["pageInfo"]["hasPreviousPage"], true);

    // Another tenant sees none of it.
    let other = app.key_for_tenant("other", "VIEWER").await;
    let theirs = app.gql_ok(&other, query, json!({})).await;
    assert_eq!(theirs["failureReasons"]["edges"], json!([]));
}

async fn tokens_expiring_per_day(app: TestApp) {
    let key = app.admin_key.clone();
    let now = Utc::now();
    // Hours from now -> counted on that UTC day.
    let live = [
        (Platform::TikTok, 1),
        (Platform::TikTok, 30),
        (Platform::Instagram, 30),
        (Platform::Instagram, 100),
    ];
    for (i, (platform, hours)) in live.iter().enumerate() {
        app.seed_account(
            "default",
            *platform,
            &format!("u{i}"),
            AccountStatus::Active,
            Some(*hours),
        )
        .await;
    }
    app.seed_account(
        "default",
        Platform::TikTok,
        "failing",
        AccountStatus::RefreshFailing,
        Some(30),
    )
    .await;
    // Not counted: expired already, not refreshable, beyond 7 days, another tenant.
    app.seed_account(
        "default",
        Platform::TikTok,
        "gone",
        AccountStatus::Active,
        Some(-1),
    )
    .await;
    app.seed_account(
        "default",
        Platform::TikTok,
        "off",
        AccountStatus::Deactivated,
        Some(30),
    )
    .await;
    app.seed_account(
        "default",
        Platform::Instagram,
        "far",
        AccountStatus::Active,
        Some(24 * 9),
    )
    .await;
    app.seed_account(
        "other",
        Platform::TikTok,
        "theirs",
        AccountStatus::Active,
        Some(30),
    )
    .await;

    let mut expected = std::collections::BTreeMap::<(String, String), u64>::new();
    for (platform, hours) in live.iter().chain([(Platform::TikTok, 30)].iter()) {
        let day = (now + Duration::hours(*hours)).date_naive().to_string();
        *expected
            .entry((day, platform.as_str().to_uppercase()))
            .or_default() += 1;
    }
    let data = app
        .gql_ok(
            &key,
            "{ expiringTokens(days: 7) { day platform count } }",
            json!({}),
        )
        .await;
    let got: std::collections::BTreeMap<(String, String), u64> = data["expiringTokens"]
        .as_array()
        .expect("list")
        .iter()
        .map(|b| {
            (
                (
                    b["day"].as_str().expect("day").to_owned(),
                    b["platform"].as_str().expect("platform").to_owned(),
                ),
                b["count"].as_u64().expect("count"),
            )
        })
        .collect();
    assert_eq!(got, expected);
    let one_day = app
        .gql_ok(&key, "{ expiringTokens(days: 1) { day count } }", json!({}))
        .await;
    for bucket in one_day["expiringTokens"].as_array().expect("list") {
        assert_eq!(bucket["day"], now.date_naive().to_string());
    }
}

async fn token_reads_per_account_and_reader_per_day(app: TestApp) {
    let admin = app.admin_key.clone();
    let a = app.connect(&admin, "TIKTOK", "reader_a").await;
    let b = app.connect(&admin, "INSTAGRAM", "reader_b").await;
    let poster = app.create_key(&admin, "poster", "INTEGRATOR").await;
    let read = |key: String, id: String| {
        let app = &app;
        async move {
            app.gql_ok(
                &key,
                "query($id: ID!) { accessToken(accountId: $id) { expiresAt } }",
                json!({ "id": id }),
            )
            .await;
        }
    };
    for _ in 0..3 {
        read(poster.clone(), a.clone()).await;
    }
    read(admin.clone(), a.clone()).await;
    for _ in 0..2 {
        read(poster.clone(), b.clone()).await;
    }
    // One counter row per account, reader and day, not a row per read.
    let rows = entity::token_read::Entity::find()
        .count(&app.db)
        .await
        .expect("counted");
    assert_eq!(rows, 3);
    // Yesterday's reads (as the counter would have left them).
    let today = Utc::now().date_naive();
    entity::token_read::ActiveModel {
        tenant_id: Set(app.tenant_id("default").await),
        account_id: Set(decode_id(&b)),
        reader: Set("user:old@example.com".into()),
        api_key_id: Set(None),
        day: Set(today - Duration::days(1)),
        reads: Set(7),
        last_read_at: Set(Utc::now() - Duration::days(1)),
        ..Default::default()
    }
    .insert(&app.db)
    .await
    .expect("inserted");

    let query =
        "query($by: TokenReadsBy!, $days: Int! = 7, $perDay: Boolean! = true, $account: ID, $first: Int) {
        tokenReads(by: $by, days: $days, perDay: $perDay, accountId: $account, first: $first) {
            pageInfo { hasNextPage }
            nodes { day reads reader apiKeyId apiKeyName account { id username } }
        } }";
    let per_account = app
        .gql_ok(&admin, query, json!({ "by": "ACCOUNT", "days": 1 }))
        .await;
    let nodes = &per_account["tokenReads"]["nodes"];
    assert_eq!(nodes.as_array().map(Vec::len), Some(2), "{nodes}");
    assert_eq!(nodes[0]["account"]["id"], json!(a));
    assert_eq!(nodes[0]["reads"], 4);
    assert_eq!(nodes[0]["day"], today.to_string());
    assert_eq!(nodes[1]["account"]["username"], "reader_b");
    assert_eq!(nodes[1]["reads"], 2);

    // Per day over two days: yesterday's row comes after today's.
    let two_days = app
        .gql_ok(&admin, query, json!({ "by": "ACCOUNT", "days": 2 }))
        .await;
    let days: Vec<(String, u64)> = two_days["tokenReads"]["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| {
            (
                n["day"].as_str().expect("day").to_owned(),
                n["reads"].as_u64().expect("reads"),
            )
        })
        .collect();
    let yesterday = (today - Duration::days(1)).to_string();
    assert_eq!(
        days,
        vec![
            (today.to_string(), 4),
            (today.to_string(), 2),
            (yesterday, 7)
        ]
    );
    // Totals over the window rank the accounts.
    let totals = app
        .gql_ok(
            &admin,
            query,
            json!({ "by": "ACCOUNT", "days": 2, "perDay": false }),
        )
        .await;
    let nodes = &totals["tokenReads"]["nodes"];
    assert_eq!(nodes[0]["account"]["id"], json!(b));
    assert_eq!(nodes[0]["reads"], 9);
    assert_eq!(nodes[0]["day"], Value::Null);

    // Per reader: the API keys by name.
    let per_reader = app
        .gql_ok(&admin, query, json!({ "by": "READER", "days": 1 }))
        .await;
    let nodes = &per_reader["tokenReads"]["nodes"];
    assert_eq!(nodes.as_array().map(Vec::len), Some(2), "{nodes}");
    assert_eq!(nodes[0]["apiKeyName"], "poster");
    assert_eq!(nodes[0]["reads"], 5);
    assert!(
        nodes[0]["reader"]
            .as_str()
            .is_some_and(|r| r.starts_with("api_key:"))
    );
    assert!(nodes[0]["apiKeyId"].is_string());
    assert_eq!(nodes[1]["reads"], 1);
    assert_eq!(nodes[1]["account"], Value::Null);

    // One account's readers.
    let one = app
        .gql_ok(
            &admin,
            query,
            json!({ "by": "READER", "days": 1, "account": b }),
        )
        .await;
    assert_eq!(one["tokenReads"]["nodes"].as_array().map(Vec::len), Some(1));
    assert_eq!(one["tokenReads"]["nodes"][0]["reads"], 2);
    let paged = app
        .gql_ok(
            &admin,
            query,
            json!({ "by": "READER", "days": 1, "first": 1 }),
        )
        .await;
    assert_eq!(paged["tokenReads"]["pageInfo"]["hasNextPage"], true);

    // Another tenant sees nothing.
    let other = app.key_for_tenant("other", "VIEWER").await;
    let theirs = app
        .gql_ok(&other, query, json!({ "by": "ACCOUNT", "days": 7 }))
        .await;
    assert_eq!(theirs["tokenReads"]["nodes"], json!([]));
}

async fn analytics_arguments_are_bounded(app: TestApp) {
    let key = app.admin_key.clone();
    for (query, what) in [
        ("{ expiringTokens(days: 0) { count } }", "zero days"),
        (
            "{ expiringTokens(days: 32) { count } }",
            "more than 31 days",
        ),
        (
            "{ tokenReads(by: ACCOUNT, days: 400) { nodes { reads } } }",
            "a year of reads",
        ),
        (
            "{ failureReasons(first: 500) { nodes { count } } }",
            "a page over 100",
        ),
        (
            "{ failureReasons(after: \"nope\") { nodes { count } } }",
            "a forged cursor",
        ),
    ] {
        let body = app.gql(Some(&key), query, json!({})).await;
        assert_eq!(error_code(&body), Some("BAD_USER_INPUT"), "{what}: {body}");
    }
}

async fn prune_drops_old_read_counters_and_stale_sign_in_throttles(app: TestApp) {
    use entity::sign_in_throttle;
    let account = app
        .seed_account(
            "default",
            Platform::TikTok,
            "pruned",
            AccountStatus::Active,
            Some(10),
        )
        .await;
    let tenant_id = app.tenant_id("default").await;
    let now = Utc::now();
    for (reader, age) in [("api_key:1", 40), ("api_key:2", 1)] {
        entity::token_read::ActiveModel {
            tenant_id: Set(tenant_id),
            account_id: Set(account),
            reader: Set(reader.into()),
            api_key_id: Set(None),
            day: Set((now - Duration::days(age)).date_naive()),
            reads: Set(3),
            last_read_at: Set(now - Duration::days(age)),
            ..Default::default()
        }
        .insert(&app.db)
        .await
        .expect("counter");
    }
    // Stale (goes), recent (stays), stale but still locked out (stays).
    for (subject, failed_ago, locked_for) in [
        ("email:stale@example.com", Duration::hours(3), None),
        ("email:recent@example.com", Duration::minutes(1), None),
        (
            "email:locked@example.com",
            Duration::hours(1),
            Some(Duration::minutes(5)),
        ),
    ] {
        sign_in_throttle::ActiveModel {
            subject: Set(subject.into()),
            failures: Set(6),
            last_failure_at: Set(now - failed_ago),
            locked_until: Set(locked_for.map(|d| now + d)),
            ..Default::default()
        }
        .insert(&app.db)
        .await
        .expect("throttle");
    }
    let deleted = jobs::prune::run(&app.jobs).await.expect("prune");
    assert_eq!(deleted, 2);
    let readers: Vec<String> = entity::token_read::Entity::find()
        .all(&app.db)
        .await
        .expect("counters")
        .into_iter()
        .map(|r| r.reader)
        .collect();
    assert_eq!(readers, ["api_key:2"]);
    let mut subjects: Vec<String> = sign_in_throttle::Entity::find()
        .all(&app.db)
        .await
        .expect("throttles")
        .into_iter()
        .map(|r| r.subject)
        .collect();
    subjects.sort();
    assert_eq!(
        subjects,
        ["email:locked@example.com", "email:recent@example.com"]
    );
}

async fn manual_refreshes_are_counted_with_their_failure_reason(app: TestApp) {
    let key = app.admin_key.clone();
    let refresh =
        "mutation($id: ID!) { refreshAccountToken(accountId: $id) { refreshed error { code } } }";
    let history = |id: String| {
        let (app, key) = (&app, key.clone());
        async move {
            let data = app
                .gql_ok(
                    &key,
                    "query($id: ID!) { account(id: $id) { refreshHistory(first: 10) { nodes { triggeredBy outcome errorCode } } } }",
                    json!({ "id": id }),
                )
                .await;
            data["account"]["refreshHistory"]["nodes"].clone()
        }
    };
    let fine = app.connect(&key, "TIKTOK", "fine").await;
    let ok = app.gql_ok(&key, refresh, json!({ "id": fine })).await;
    assert_eq!(ok["refreshAccountToken"]["refreshed"], true);
    assert_eq!(
        history(fine.clone()).await,
        json!([{ "triggeredBy": "MANUAL", "outcome": "SUCCEEDED", "errorCode": null }])
    );

    // Revoked at the platform: a manual refresh fails for good.
    let dead = app.connect(&key, "TIKTOK", "dead").await;
    let account = app
        .gql_ok(
            &key,
            "query($id: ID!) { account(id: $id) { providerAccountId } }",
            json!({ "id": dead }),
        )
        .await;
    let revoked = app
        .client
        .post(format!(
            "http://{}/sandbox/control/revoke",
            app.sandbox_addr
        ))
        .json(&json!({
            "platform": "tiktok",
            "providerAccountId": account["account"]["providerAccountId"],
        }))
        .send()
        .await
        .expect("sandbox answers");
    assert!(revoked.status().is_success());
    let failed = app.gql_ok(&key, refresh, json!({ "id": dead })).await;
    assert_eq!(
        failed["refreshAccountToken"]["error"]["code"],
        "RECONNECT_REQUIRED"
    );
    let nodes = history(dead).await;
    assert_eq!(nodes.as_array().map(Vec::len), Some(1), "{nodes}");
    assert_eq!(nodes[0]["triggeredBy"], "MANUAL");
    assert_eq!(nodes[0]["outcome"], "FAILED_PERMANENT");
    let code = nodes[0]["errorCode"]
        .as_str()
        .expect("a recorded code")
        .to_owned();

    let data = app
        .gql_ok(
            &key,
            "{ refreshAttemptsPerHour { platform outcome count }
               failureReasons { nodes { platform code class count } } }",
            json!({}),
        )
        .await;
    let mut outcomes: Vec<(String, u64)> = data["refreshAttemptsPerHour"]
        .as_array()
        .expect("list")
        .iter()
        .map(|b| {
            (
                b["outcome"].as_str().expect("outcome").to_owned(),
                b["count"].as_u64().expect("count"),
            )
        })
        .collect();
    outcomes.sort();
    assert_eq!(
        outcomes,
        [
            ("FAILED_PERMANENT".to_owned(), 1),
            ("SUCCEEDED".to_owned(), 1)
        ]
    );
    assert_eq!(
        data["failureReasons"]["nodes"],
        json!([{ "platform": "TIKTOK", "code": code, "class": "grant_dead", "count": 1 }])
    );
}
