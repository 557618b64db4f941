//! Dashboard users through real HTTP: password + TOTP sign-in, lockout, the session and
//! CSRF cookies, cookie-authenticated GraphQL and WebSockets (tenant-scoped, CSRF-checked),
//! sign-out, idle and absolute expiry, and the `user` CLI of the real binary.

use entity::enums::{AccountStatus, Platform};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use sea_orm::EntityTrait;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tokio_tungstenite::{
    connect_async,
    tungstenite::{Message, client::IntoClientRequest},
};

use crate::{
    helpers::{Backend, TestApp, error_code, global_id},
    on_both_backends,
};

const PASSWORD: &str = "correct horse battery staple";

/// A created user and what was shown once at creation.
pub(crate) struct TestUser {
    pub(crate) email: String,
    pub(crate) totp: totp_rs::Totp,
    pub(crate) recovery_codes: Vec<String>,
}

impl TestUser {
    /// The current TOTP code, computed from the otpauth URI as an authenticator app does.
    pub(crate) fn code(&self) -> String {
        self.totp.generate_current().to_string()
    }
}

/// Creates a user as the CLI does.
pub(crate) async fn create_user(app: &TestApp, tenant: &str, email: &str, role: &str) -> TestUser {
    let created = service::identity::users::create(
        &app.db,
        &app.jobs.engine.vault(),
        tenant,
        email,
        role.parse().expect("role"),
        SecretString::from(PASSWORD),
    )
    .await
    .expect("user created");
    let uri = created.otpauth_uri.expose_secret();
    assert!(uri.starts_with("otpauth://totp/"), "{uri}");
    TestUser {
        email: created.user.email.clone(),
        totp: totp_rs::Totp::from_url(uri).expect("otpauth URI parses"),
        recovery_codes: created
            .recovery_codes
            .iter()
            .map(|c| c.expose_secret().to_owned())
            .collect(),
    }
}

/// A signed-in session: the two cookies.
pub(crate) struct Session {
    pub(crate) cookie: String,
    pub(crate) csrf: String,
}

impl Session {
    fn header(&self) -> String {
        format!("tw_session={}; tw_csrf={}", self.cookie, self.csrf)
    }
}

async fn post_sign_in(base: &str, email: &str, password: &str, code: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{base}/auth/sign-in"))
        .json(&json!({ "email": email, "password": password, "code": code }))
        .send()
        .await
        .expect("sign-in sent")
}

/// The `Set-Cookie` header setting `name`.
fn set_cookie<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} cookie: {:?}", response.headers()))
}

fn cookie_value(header: &str) -> String {
    header
        .split(';')
        .next()
        .and_then(|pair| pair.split_once('='))
        .map(|(_, v)| v.to_owned())
        .expect("cookie value")
}

/// Signs in with `code` and returns the session.
pub(crate) async fn sign_in_with(base: &str, user: &TestUser, code: &str) -> Session {
    let response = post_sign_in(base, &user.email, PASSWORD, code).await;
    assert_eq!(response.status(), 200);
    let cookie = cookie_value(set_cookie(&response, "tw_session"));
    let csrf = cookie_value(set_cookie(&response, "tw_csrf"));
    Session { cookie, csrf }
}

/// POSTs GraphQL with the session cookie and (optionally) a CSRF header.
async fn gql_cookie(
    app: &TestApp,
    session: &Session,
    csrf: Option<&str>,
    query: &str,
    variables: Value,
) -> (u16, Value) {
    let mut request = app
        .client
        .post(app.url("/graphql"))
        .header("cookie", session.header())
        .json(&json!({ "query": query, "variables": variables }));
    if let Some(csrf) = csrf {
        request = request.header("x-csrf-token", csrf);
    }
    let response = request.send().await.expect("sent");
    let status = response.status().as_u16();
    (status, response.json().await.expect("json"))
}

async fn session_status(app: &TestApp, session: &Session) -> u16 {
    app.client
        .get(app.url("/auth/session"))
        .header("cookie", session.header())
        .send()
        .await
        .expect("sent")
        .status()
        .as_u16()
}

async fn audit_actions(app: &TestApp, action: &str) -> Vec<Value> {
    let data = app
        .gql_ok(
            &app.admin_key,
            "query($filter: AuditFilter) { auditLog(first: 100, filter: $filter) { nodes { actor details clientIp } } }",
            json!({ "filter": { "actions": [action] } }),
        )
        .await;
    data["auditLog"]["nodes"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

async fn sign_in_with_password_and_totp(app: TestApp) {
    let base = app.url("");
    let user = create_user(&app, "default", "Ops@Example.test", "ADMIN").await;
    assert_eq!(user.email, "ops@example.test");
    assert_eq!(user.recovery_codes.len(), 10);

    // Wrong password and unknown email look the same; a wrong or missing code differs.
    let wrong = post_sign_in(&base, &user.email, "not the password!!", &user.code()).await;
    assert_eq!(wrong.status(), 401);
    let body: Value = wrong.json().await.expect("json");
    assert_eq!(body["error"]["code"], "INVALID_CREDENTIALS");
    let unknown = post_sign_in(&base, "nobody@example.test", PASSWORD, "123456").await;
    assert_eq!(unknown.status(), 401);
    let body: Value = unknown.json().await.expect("json");
    assert_eq!(body["error"]["code"], "INVALID_CREDENTIALS");
    let bad_code = user.totp.generate(0).to_string();
    let refused = post_sign_in(&base, &user.email, PASSWORD, &bad_code).await;
    assert_eq!(refused.status(), 401);
    let body: Value = refused.json().await.expect("json");
    assert_eq!(body["error"]["code"], "INVALID_CODE");
    let missing = post_sign_in(&base, &user.email, PASSWORD, "").await;
    let body: Value = missing.json().await.expect("json");
    assert_eq!(body["error"]["code"], "INVALID_CODE");

    // The right code signs in; the cookies carry the promised attributes.
    let code = user.code();
    let response = post_sign_in(&base, "OPS@example.test", PASSWORD, &code).await;
    assert_eq!(response.status(), 200);
    let session_cookie = set_cookie(&response, "tw_session").to_owned();
    let csrf_cookie = set_cookie(&response, "tw_csrf").to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(session_cookie.contains(attribute), "{session_cookie}");
    }
    assert!(
        !session_cookie.contains("Secure"),
        "plain http: {session_cookie}"
    );
    assert!(csrf_cookie.contains("SameSite=Strict") && csrf_cookie.contains("Path=/"));
    assert!(
        !csrf_cookie.contains("HttpOnly"),
        "script-readable: {csrf_cookie}"
    );
    let body: Value = response.json().await.expect("json");
    assert_eq!(
        body["user"],
        json!({ "email": "ops@example.test", "role": "ADMIN", "tenant": "default" })
    );
    assert_eq!(
        body["csrfToken"].as_str(),
        Some(cookie_value(&csrf_cookie).as_str())
    );
    let session = Session {
        cookie: cookie_value(&session_cookie),
        csrf: cookie_value(&csrf_cookie),
    };
    // Only the hash of the cookie is stored.
    let stored = entity::user_session::Entity::find()
        .all(&app.db)
        .await
        .expect("sessions");
    assert_eq!(stored.len(), 1);
    assert_ne!(stored[0].token_hash, session.cookie);

    // A TOTP code works once.
    let replay = post_sign_in(&base, &user.email, PASSWORD, &code).await;
    let body: Value = replay.json().await.expect("json");
    assert_eq!(
        body["error"]["code"], "INVALID_CODE",
        "a code is not reusable"
    );

    // A recovery code works once, in place of a TOTP code.
    let recovery = &user.recovery_codes[0];
    sign_in_with(&base, &user, &recovery.to_uppercase()).await;
    let again = post_sign_in(&base, &user.email, PASSWORD, recovery).await;
    let body: Value = again.json().await.expect("json");
    assert_eq!(
        body["error"]["code"], "INVALID_CODE",
        "recovery codes are single-use"
    );

    // GET /auth/session answers who is signed in.
    let current: Value = app
        .client
        .get(app.url("/auth/session"))
        .header("cookie", session.header())
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(current["user"]["email"], "ops@example.test");
    assert_eq!(current["csrfToken"].as_str(), Some(session.csrf.as_str()));
    let anonymous = app
        .client
        .get(app.url("/auth/session"))
        .send()
        .await
        .expect("sent");
    assert_eq!(anonymous.status(), 401);

    // Every attempt is audited, never with the password or the code.
    let failed = audit_actions(&app, "USER_SIGN_IN_FAILED").await;
    let reasons: Vec<&str> = failed
        .iter()
        .filter_map(|e| e["details"]["reason"].as_str())
        .collect();
    assert!(reasons.contains(&"INVALID_CREDENTIALS") && reasons.contains(&"INVALID_CODE"));
    let succeeded = audit_actions(&app, "USER_SIGNED_IN").await;
    assert_eq!(succeeded.len(), 2);
    assert_eq!(succeeded[0]["actor"], "user:ops@example.test");
    assert_eq!(succeeded[0]["clientIp"], "127.0.0.1");
    let all = format!("{failed:?}{succeeded:?}");
    assert!(!all.contains(PASSWORD) && !all.contains(&code) && !all.contains(recovery));
}

async fn repeated_failures_lock_out(app: TestApp) {
    let base = app.url("");
    let user = create_user(&app, "default", "locked@example.test", "VIEWER").await;
    for _ in 0..5 {
        let response = post_sign_in(&base, &user.email, "wrong password 123", "000000").await;
        assert_eq!(response.status(), 401);
    }
    // Now even the right credentials wait.
    let response = post_sign_in(&base, &user.email, PASSWORD, &user.code()).await;
    assert_eq!(response.status(), 429);
    assert!(response.headers().get("retry-after").is_some());
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], "LOCKED_OUT");
    let retry = body["error"]["retryAfterSeconds"]
        .as_u64()
        .expect("seconds");
    assert!((1..=31).contains(&retry), "{body}");
    // Another user from the same address is not locked yet (the address allows more).
    let other = create_user(&app, "default", "other@example.test", "VIEWER").await;
    sign_in_with(&base, &other, &other.code()).await;
    let reasons: Vec<String> = audit_actions(&app, "USER_SIGN_IN_FAILED")
        .await
        .iter()
        .filter_map(|e| e["details"]["reason"].as_str().map(str::to_owned))
        .collect();
    assert!(reasons.iter().any(|r| r == "LOCKED_OUT"), "{reasons:?}");
}

async fn client_address_is_locked_out_across_emails(app: TestApp) {
    let base = app.url("");
    // Five emails x four failures = 20 failures from one address: it is locked.
    for i in 0..20 {
        let email = format!("guess{}@example.test", i % 5);
        let response = post_sign_in(&base, &email, "wrong password 123", "000000").await;
        assert_eq!(response.status(), 401, "attempt {i}");
    }
    let user = create_user(&app, "default", "fresh@example.test", "VIEWER").await;
    let response = post_sign_in(&base, &user.email, PASSWORD, &user.code()).await;
    assert_eq!(response.status(), 429, "the address is locked out");
}

async fn cookie_requests_need_csrf_and_see_only_their_tenant(app: TestApp) {
    let base = app.url("");
    app.seed_account(
        "default",
        Platform::TikTok,
        "default_account",
        AccountStatus::Active,
        Some(5),
    )
    .await;
    let acme_account = app
        .seed_account(
            "acme",
            Platform::TikTok,
            "acme_account",
            AccountStatus::Active,
            Some(5),
        )
        .await;
    let user = create_user(&app, "acme", "admin@acme.test", "ADMIN").await;
    let session = sign_in_with(&base, &user, &user.code()).await;
    let query = "{ viewer { role tenant { name } apiKey { id } user { email } } accounts { nodes { username } } }";

    // Without the header, or with a wrong one, a cookie POST is refused.
    let (status, body) = gql_cookie(&app, &session, None, query, json!({})).await;
    assert_eq!(status, 403);
    assert_eq!(error_code(&body), Some("CSRF_FAILED"));
    let (status, body) = gql_cookie(&app, &session, Some("not-the-token"), query, json!({})).await;
    assert_eq!(status, 403);
    assert_eq!(error_code(&body), Some("CSRF_FAILED"));

    // With it, the user is the caller: their tenant only.
    let (status, body) = gql_cookie(&app, &session, Some(&session.csrf), query, json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("errors").is_none(), "{body}");
    let data = &body["data"];
    assert_eq!(data["viewer"]["role"], "ADMIN");
    assert_eq!(data["viewer"]["tenant"]["name"], "acme");
    assert_eq!(data["viewer"]["apiKey"], Value::Null);
    assert_eq!(data["viewer"]["user"]["email"], "admin@acme.test");
    assert_eq!(
        data["accounts"]["nodes"],
        json!([{ "username": "acme_account" }])
    );

    // A GET query needs no CSRF header (GET cannot mutate).
    let response = app
        .client
        .get(app.url("/graphql"))
        .query(&[("query", "{ viewer { user { email } } }")])
        .header("cookie", session.header())
        .send()
        .await
        .expect("sent");
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["data"]["viewer"]["user"]["email"], "admin@acme.test");

    // A mutation is audited under the user's name.
    let (_, body) = gql_cookie(
        &app,
        &session,
        Some(&session.csrf),
        "mutation($id: ID!) { deactivateAccount(id: $id) { status } }",
        json!({ "id": global_id("SocialAccount", acme_account) }),
    )
    .await;
    assert!(body.get("errors").is_none(), "{body}");
    let (_, body) = gql_cookie(
        &app,
        &session,
        Some(&session.csrf),
        "{ auditLog(first: 5, filter: { actions: [ACCOUNT_DEACTIVATED] }) { nodes { actor } } users(first: 10) { totalCount nodes { email role totpEnabled disabled lastSignInAt } } }",
        json!({}),
    )
    .await;
    assert_eq!(
        body["data"]["auditLog"]["nodes"][0]["actor"], "user:admin@acme.test",
        "{body}"
    );
    let users = &body["data"]["users"];
    assert_eq!(users["totalCount"], 1);
    assert_eq!(users["nodes"][0]["email"], "admin@acme.test");
    assert_eq!(users["nodes"][0]["totpEnabled"], true);
    assert_eq!(users["nodes"][0]["disabled"], false);
    assert!(users["nodes"][0]["lastSignInAt"].is_string());

    // A VIEWER user may not list users; the bearer key of another tenant wins over a cookie.
    let viewer = create_user(&app, "acme", "viewer@acme.test", "VIEWER").await;
    let viewer_session = sign_in_with(&base, &viewer, &viewer.code()).await;
    let (_, body) = gql_cookie(
        &app,
        &viewer_session,
        Some(&viewer_session.csrf),
        "{ users { totalCount } }",
        json!({}),
    )
    .await;
    assert_eq!(error_code(&body), Some("FORBIDDEN"), "{body}");
    let response = app
        .client
        .post(app.url("/graphql"))
        .header("cookie", session.header())
        .bearer_auth(&app.admin_key)
        .json(&json!({ "query": "{ viewer { tenant { name } user { email } } }" }))
        .send()
        .await
        .expect("sent");
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["data"]["viewer"]["tenant"]["name"], "default");
    assert_eq!(body["data"]["viewer"]["user"], Value::Null);
}

async fn sign_out_ends_the_session(app: TestApp) {
    let base = app.url("");
    let user = create_user(&app, "default", "leaving@example.test", "INTEGRATOR").await;
    let session = sign_in_with(&base, &user, &user.code()).await;
    assert_eq!(session_status(&app, &session).await, 200);

    let without_csrf = app
        .client
        .post(app.url("/auth/sign-out"))
        .header("cookie", session.header())
        .send()
        .await
        .expect("sent");
    assert_eq!(without_csrf.status(), 403);
    let body: Value = without_csrf.json().await.expect("json");
    assert_eq!(body["error"]["code"], "CSRF_FAILED");
    assert_eq!(session_status(&app, &session).await, 200, "still signed in");

    let signed_out = app
        .client
        .post(app.url("/auth/sign-out"))
        .header("cookie", session.header())
        .header("x-csrf-token", &session.csrf)
        .send()
        .await
        .expect("sent");
    assert_eq!(signed_out.status(), 204);
    let cleared = set_cookie(&signed_out, "tw_session");
    assert!(
        cleared.starts_with("tw_session=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
    assert_eq!(session_status(&app, &session).await, 401);
    let (status, body) = gql_cookie(
        &app,
        &session,
        Some(&session.csrf),
        "{ viewer { role } }",
        json!({}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(error_code(&body), Some("UNAUTHENTICATED"));
    assert_eq!(audit_actions(&app, "USER_SIGNED_OUT").await.len(), 1);

    // Disabling a user ends their sessions too.
    let session = sign_in_with(&base, &user, &user.recovery_codes[0]).await;
    service::identity::users::disable_by_email(&app.db, &user.email)
        .await
        .expect("disabled");
    assert_eq!(session_status(&app, &session).await, 401);
    let refused = post_sign_in(&base, &user.email, PASSWORD, &user.recovery_codes[1]).await;
    let body: Value = refused.json().await.expect("json");
    assert_eq!(body["error"]["code"], "INVALID_CREDENTIALS");
}

async fn cookie_websocket_needs_origin_and_csrf(app: TestApp) {
    let base = app.url("");
    let user = create_user(&app, "default", "live@example.test", "VIEWER").await;
    let session = sign_in_with(&base, &user, &user.code()).await;
    let open = |origin: Option<String>, csrf: Option<String>| {
        let addr = app.addr;
        let cookie = session.header();
        async move {
            let mut request = format!("ws://{addr}/graphql/ws")
                .into_client_request()
                .expect("request");
            let headers = request.headers_mut();
            headers.insert(
                "sec-websocket-protocol",
                "graphql-transport-ws".parse().expect("h"),
            );
            headers.insert("cookie", cookie.parse().expect("h"));
            if let Some(origin) = origin {
                headers.insert("origin", origin.parse().expect("h"));
            }
            let (mut ws, _) = connect_async(request).await.expect("websocket connects");
            let payload = match csrf {
                Some(token) => json!({ "csrfToken": token }),
                None => json!({}),
            };
            ws.send(Message::text(
                json!({ "type": "connection_init", "payload": payload }).to_string(),
            ))
            .await
            .expect("init sent");
            loop {
                match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
                    Ok(Some(Ok(Message::Text(text)))) if text.contains("connection_ack") => {
                        return Ok(ws);
                    }
                    Ok(Some(Ok(Message::Close(frame)))) => {
                        return Err(frame.map(|f| u16::from(f.code)));
                    }
                    Ok(Some(Ok(_))) => {}
                    _ => return Err(None),
                }
            }
        }
    };
    let origin = format!("http://{}", app.addr);
    assert_eq!(
        open(Some(origin.clone()), None).await.err(),
        Some(Some(4403)),
        "no csrfToken"
    );
    assert_eq!(
        open(
            Some("http://evil.example".into()),
            Some(session.csrf.clone())
        )
        .await
        .err(),
        Some(Some(4403)),
        "foreign origin"
    );
    assert_eq!(
        open(None, Some(session.csrf.clone())).await.err(),
        Some(Some(4403)),
        "no origin"
    );
    let mut ws = open(Some(origin), Some(session.csrf.clone()))
        .await
        .expect("origin + csrf are accepted");
    ws.send(Message::text(
        json!({ "id": "1", "type": "subscribe", "payload": { "query": "subscription { tokenEvents { id } }" } })
            .to_string(),
    ))
    .await
    .expect("subscribe sent");
    // Signing out closes the socket (4403) within seconds.
    let signed_out = app
        .client
        .post(app.url("/auth/sign-out"))
        .header("cookie", session.header())
        .header("x-csrf-token", &session.csrf)
        .send()
        .await
        .expect("sent");
    assert_eq!(signed_out.status(), 204);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let mut closed_with = None;
    while tokio::time::Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(1), ws.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => {
                closed_with = frame.map(|f| u16::from(f.code));
                break;
            }
            Ok(None) | Ok(Some(Err(_))) => break,
            _ => {}
        }
    }
    assert_eq!(
        closed_with,
        Some(4403),
        "a signed-out session's socket closes"
    );
}

on_both_backends!(
    sign_in_with_password_and_totp,
    repeated_failures_lock_out,
    client_address_is_locked_out_across_emails,
    cookie_requests_need_csrf_and_see_only_their_tenant,
    sign_out_ends_the_session,
    cookie_websocket_needs_origin_and_csrf,
);

async fn idle_and_absolute_expiry(backend: Backend) {
    let app = TestApp::spawn_with(
        backend,
        &[
            "--session-idle-timeout",
            "1500ms",
            "--session-absolute-timeout",
            "4s",
        ],
    )
    .await;
    let base = app.url("");
    let user = create_user(&app, "default", "brief@example.test", "VIEWER").await;

    // Idle: unused for longer than the idle timeout, the session ends.
    let idle = sign_in_with(&base, &user, &user.code()).await;
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_eq!(session_status(&app, &idle).await, 401, "idle expiry");

    // Sliding: used every 500 ms it lives past the idle timeout, but not past the absolute.
    let busy = sign_in_with(&base, &user, &user.recovery_codes[0]).await;
    let started = tokio::time::Instant::now();
    while started.elapsed() < Duration::from_millis(3300) {
        assert_eq!(
            session_status(&app, &busy).await,
            200,
            "use slides the idle expiry"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(session_status(&app, &busy).await, 401, "absolute expiry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_expire_idle_and_absolute_sqlite() {
    idle_and_absolute_expiry(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_expire_idle_and_absolute_postgres() {
    idle_and_absolute_expiry(Backend::Postgres).await;
}

#[tokio::test]
async fn cli_creates_lists_and_disables_users() {
    use std::{io::Write, process::Command, process::Stdio};

    use crate::binary::{BIN, start, terminate};

    let dir = tempfile::tempdir().expect("dir");
    let url = format!("sqlite://{}", dir.path().join("tw.db").display());
    let cli = |args: &[&str], stdin: Option<&str>| {
        let mut child = Command::new(BIN)
            .args(args)
            .current_dir(dir.path())
            .env("DATABASE_URL", &url)
            .env_remove("TOKENWARDEN_USER_PASSWORD")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cli runs");
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(input.as_bytes())
                .expect("stdin written");
        }
        let output = child.wait_with_output().expect("cli ends");
        (
            output.status.success(),
            String::from_utf8(output.stdout).expect("utf8"),
            String::from_utf8(output.stderr).expect("utf8"),
        )
    };
    let (ok, created, stderr) = cli(
        &[
            "user",
            "create",
            "--tenant",
            "acme",
            "--email",
            "cli@acme.test",
            "--role",
            "ADMIN",
        ],
        Some(&format!("{PASSWORD}\n")),
    );
    assert!(ok, "{stderr}");
    let uri = created
        .lines()
        .find(|l| l.starts_with("otpauth://totp/"))
        .expect("otpauth URI printed");
    let totp = totp_rs::Totp::from_url(uri).expect("parses");
    let codes: Vec<&str> = created
        .lines()
        .filter(|l| l.len() == 14 && l.matches('-').count() == 2)
        .collect();
    assert_eq!(codes.len(), 10, "{created}");
    assert!(!created.contains(PASSWORD));

    let (ok, _, stderr) = cli(
        &[
            "user",
            "create",
            "--email",
            "weak@acme.test",
            "--role",
            "VIEWER",
        ],
        Some("short\n"),
    );
    assert!(!ok && stderr.contains("password"), "{stderr}");

    let running = start(dir.path(), &[("DATABASE_URL", url.as_str())], &["serve"]);
    let base = format!("http://{}", running.addr);
    let response = post_sign_in(
        &base,
        "cli@acme.test",
        PASSWORD,
        &totp.generate_current().to_string(),
    )
    .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["user"]["tenant"], "acme");
    assert_eq!(body["user"]["role"], "ADMIN");

    let (ok, listed, _) = cli(&["user", "list"], None);
    assert!(
        ok && listed.contains("cli@acme.test") && listed.contains("ADMIN"),
        "{listed}"
    );
    assert!(!listed.contains("otpauth") && !listed.contains(codes[0]));
    let (ok, disabled, stderr) = cli(&["user", "disable", "--email", "cli@acme.test"], None);
    assert!(ok, "{stderr}");
    assert!(disabled.contains("disabled"), "{disabled}");
    let response = post_sign_in(&base, "cli@acme.test", PASSWORD, codes[0]).await;
    assert_eq!(response.status(), 401);
    terminate(running);
}
