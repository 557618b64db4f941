//! Reconnect links (`Notification.reconnectLink`): reading one writes nothing; opening it
//! starts the reconnection (state row and audit entry then) and sends the browser to the
//! platform; altered, expired and other tenants' links are refused with a stable code and
//! write nothing either.

use entity::{audit_log, oauth_state};
use sandbox::Platform as SandboxPlatform;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{Value, json};
use service::identity::caller::{Caller, Principal};

use crate::{
    helpers::{TestApp, decode_id},
    on_both_backends,
};

const REFRESH: &str =
    "mutation($id: ID!) { refreshAccountToken(accountId: $id) { refreshed error { code } } }";
const LINK: &str = "{ notifications(first: 1) { nodes { incident reconnectLink { authorizationUrl expiresAt } } } }";

/// oauth_state rows and audit entries: what a read must not add to.
async fn written(app: &TestApp) -> (u64, u64) {
    (
        oauth_state::Entity::find()
            .count(&app.db)
            .await
            .expect("count"),
        audit_log::Entity::find()
            .count(&app.db)
            .await
            .expect("count"),
    )
}

/// Connects `user` on TikTok and kills its grant: the account needs a reconnect and has an
/// open RECONNECT_REQUIRED notification. Returns the account's global id.
async fn needing_reconnect(app: &TestApp, user: &str) -> String {
    let id = app.connect(&app.admin_key, "TIKTOK", user).await;
    assert!(
        app.sandbox
            .revoke(SandboxPlatform::Tiktok, &sandbox::tiktok_open_id(user))
    );
    let refreshed = app
        .gql_ok(&app.admin_key, REFRESH, json!({ "id": id }))
        .await;
    assert_eq!(
        refreshed["refreshAccountToken"]["error"]["code"], "RECONNECT_REQUIRED",
        "{refreshed}"
    );
    id
}

/// GETs a link without following redirects: status, Location, body.
async fn open(app: &TestApp, url: &str, accept: &str) -> (u16, Option<String>, String) {
    let response = app
        .client
        .get(url)
        .header("accept", accept)
        .send()
        .await
        .expect("request sent");
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (status, location, response.text().await.expect("body"))
}

/// A link for the default tenant's admin key, signed by the server's own keys at `issued`.
fn signed_link(
    app: &TestApp,
    tenant_id: i64,
    account_id: i64,
    issued: chrono::DateTime<chrono::Utc>,
) -> String {
    let caller = Caller {
        tenant_id,
        role: service::Role::Integrator,
        principal: Principal::ApiKey { id: 1 },
        client_ip: None,
    };
    service::connections::links::issue(
        &app.jobs.engine,
        &caller,
        account_id,
        service::domain::Platform::TikTok,
        None,
        issued,
    )
    .expect("link issued")
    .url
}

async fn refused(app: &TestApp, url: &str, status: u16, code: &str) {
    let before = written(app).await;
    let (got, location, body) = open(app, url, "text/html").await;
    assert_eq!(got, status, "{url}: {body}");
    assert!(location.is_none(), "a refused link redirects nowhere");
    assert!(body.contains(code), "the page names {code}: {body}");
    let (got, _, body) = open(app, url, "application/json").await;
    assert_eq!(got, status);
    let body: Value = serde_json::from_str(&body).expect("JSON error");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert_eq!(written(app).await, before, "a refused link writes nothing");
}

on_both_backends!(reconnect_links_write_nothing_until_opened);

async fn reconnect_links_write_nothing_until_opened(app: TestApp) {
    let id = needing_reconnect(&app, "faded").await;
    let before = written(&app).await;
    let mut url = String::new();
    for _ in 0..10 {
        let data = app.gql_ok(&app.admin_key, LINK, json!({})).await;
        let node = &data["notifications"]["nodes"][0];
        assert_eq!(node["incident"], "RECONNECT_REQUIRED");
        url = node["reconnectLink"]["authorizationUrl"]
            .as_str()
            .expect("a reconnect link")
            .to_owned();
        assert!(node["reconnectLink"]["expiresAt"].is_string());
    }
    // Many links in one request too.
    let aliases: String = (0..20)
        .map(|i| format!("n{i}: notifications(first: 1) {{ nodes {{ reconnectLink {{ authorizationUrl }} }} }} "))
        .collect();
    app.gql_ok(&app.admin_key, &format!("{{ {aliases} }}"), json!({}))
        .await;
    assert_eq!(
        written(&app).await,
        before,
        "reading reconnect links writes no oauth_state and no audit rows"
    );
    assert!(
        url.starts_with(&app.url("/oauth/reconnect/")),
        "the link opens on this server: {url}"
    );

    // Refused links write nothing: altered, expired, another tenant's, another deployment's.
    let token = url.rsplit('/').next().expect("token");
    let (body, tag) = token.split_once('.').expect("payload.tag");
    let flipped = if tag.starts_with('A') { "B" } else { "A" };
    let altered = format!(
        "{}/oauth/reconnect/{body}.{flipped}{}",
        app.url(""),
        &tag[1..]
    );
    refused(&app, &altered, 400, "RECONNECT_LINK_INVALID").await;
    refused(
        &app,
        &app.url("/oauth/reconnect/not-a-link"),
        400,
        "RECONNECT_LINK_INVALID",
    )
    .await;
    let tenant = app.tenant_id("default").await;
    let account = decode_id(&id);
    let expired = signed_link(
        &app,
        tenant,
        account,
        chrono::Utc::now() - chrono::Duration::hours(73),
    );
    refused(&app, &expired, 410, "RECONNECT_LINK_EXPIRED").await;
    let acme = app.tenant_id("acme").await;
    let foreign = signed_link(&app, acme, account, chrono::Utc::now());
    refused(&app, &foreign, 400, "RECONNECT_LINK_INVALID").await;

    // Opening the real link starts the connection now, binds it to this browser and
    // sends the browser to the platform.
    let launched = app.launch(&url).await;
    let authorize = launched.authorize.clone();
    assert!(
        authorize.starts_with(&format!("http://{}/sandbox/", app.sandbox_addr)),
        "to the platform's authorize page: {authorize}"
    );
    let (states, audits) = written(&app).await;
    assert_eq!((states, audits), (before.0 + 1, before.1 + 1));
    let started = audit_log::Entity::find()
        .filter(audit_log::Column::Action.eq("CONNECTION_STARTED"))
        .all(&app.db)
        .await
        .expect("audit");
    let last = started.last().expect("an entry");
    assert_eq!(last.details["via"], "reconnectLink", "{:?}", last.details);
    assert_eq!(last.details["accountId"], account);

    // Completing the flow reconnects the same account.
    let callback = app.follow(&format!("{authorize}&sandbox_user=faded")).await;
    assert!(
        callback.starts_with(&app.url("/oauth/callback/tiktok")),
        "{callback}"
    );
    let elsewhere = app.client.get(&callback).send().await.expect("callback");
    assert_eq!(
        elsewhere.status(),
        400,
        "only the browser that opened the link"
    );
    let page = app.get_with_cookie(&callback, &launched.cookie).await;
    assert_eq!(page.status(), 200);
    let data = app
        .gql_ok(
            &app.admin_key,
            "query($id: ID!) { account(id: $id) { status } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(data["account"]["status"], "ACTIVE");
    let reconnected = audit_log::Entity::find()
        .filter(audit_log::Column::Action.eq("ACCOUNT_RECONNECTED"))
        .count(&app.db)
        .await
        .expect("audit");
    assert_eq!(reconnected, 1);

    // The account works again: the same link is now refused, and writes nothing.
    refused(&app, &url, 409, "RECONNECT_NOT_NEEDED").await;
    let data = app.gql_ok(&app.admin_key, LINK, json!({})).await;
    assert!(
        data["notifications"]["nodes"][0]["reconnectLink"].is_null(),
        "a resolved incident has no link: {data}"
    );

    // Started connections are pruned once expired for the retention period.
    oauth_state::Entity::update_many()
        .col_expr(
            oauth_state::Column::ExpiresAt,
            sea_orm::sea_query::Expr::value(chrono::Utc::now() - chrono::Duration::days(40)),
        )
        .exec(&app.db)
        .await
        .expect("aged");
    jobs::prune::run(&app.jobs).await.expect("prune");
    assert_eq!(written(&app).await.0, 0, "expired states are pruned");
}
