//! Shared HTTP helpers for the sandbox integration tests.
#![allow(dead_code)]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::header::HeaderMap;
use reqwest::redirect::Policy;
use reqwest::{Client, RequestBuilder, StatusCode};
use sandbox::{
    INSTAGRAM_CLIENT_ID, INSTAGRAM_CLIENT_SECRET, Sandbox, SandboxConfig, TIKTOK_CLIENT_KEY,
    TIKTOK_CLIENT_SECRET,
};
use serde_json::Value;
use url::Url;

/// Redirect URI used by every test client.
pub const REDIRECT: &str = "https://app.example/oauth/callback";
/// A syntactically valid PKCE verifier.
pub const VERIFIER: &str = "sandbox-test-verifier-0123456789-abcdefghijklmnopqrstuvwxyz";
/// Scopes requested on TikTok.
pub const TT_SCOPES: &str = "user.info.basic,video.list";
/// Scopes requested on Instagram.
pub const IG_SCOPES: &str = "instagram_business_basic,instagram_business_content_publish";

/// One HTTP exchange, decoded.
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
    pub json: Value,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn location(&self) -> Url {
        assert_eq!(
            self.status,
            StatusCode::FOUND,
            "expected 302: {}",
            self.text
        );
        Url::parse(self.header("location").expect("Location header")).expect("Location URL")
    }

    pub fn str(&self, pointer: &str) -> &str {
        self.json
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no string at {pointer} in {}", self.text))
    }
}

/// Query parameter of a URL.
pub fn qp(url: &Url, key: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

/// RFC 7636 S256 challenge.
/// TikTok's (desktop) S256 challenge: hex SHA-256 of the verifier.
pub fn challenge(verifier: &str) -> String {
    hex::encode(ring::digest::digest(
        &ring::digest::SHA256,
        verifier.as_bytes(),
    ))
}

/// The RFC 7636 S256 challenge (base64url), which TikTok rejects.
pub fn challenge_base64url(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        verifier.as_bytes(),
    ))
}

/// A running sandbox plus a non-redirect-following client.
pub struct Env {
    pub sb: Sandbox,
    pub base: String,
    pub http: Client,
}

impl Env {
    pub async fn start(config: SandboxConfig) -> Self {
        let sb = Sandbox::new(config);
        let addr = sb.spawn(0).await.expect("spawn sandbox");
        let http = Client::builder()
            .redirect(Policy::none())
            .build()
            .expect("client");
        Self {
            sb,
            base: format!("http://{addr}/sandbox"),
            http,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn send(rb: RequestBuilder) -> Resp {
        let r = rb.send().await.expect("request");
        let status = r.status();
        let headers = r.headers().clone();
        let text = r.text().await.expect("body");
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            text,
            json,
        }
    }

    pub async fn control(&self, path: &str, body: &str) -> Resp {
        Self::send(
            self.http
                .post(self.url(&format!("/control/{path}")))
                .header("content-type", "application/json")
                .body(body.to_owned()),
        )
        .await
    }

    // ---- TikTok ----

    pub async fn tt_authorize(&self, extra: &[(&str, &str)]) -> Resp {
        let mut q = vec![
            ("client_key", TIKTOK_CLIENT_KEY),
            ("scope", TT_SCOPES),
            ("response_type", "code"),
            ("redirect_uri", REDIRECT),
            ("state", "st-1"),
        ];
        q.extend_from_slice(extra);
        Self::send(
            self.http
                .get(self.url("/tiktok/auth/v2/auth/authorize/"))
                .query(&q),
        )
        .await
    }

    pub async fn tt_code(&self, extra: &[(&str, &str)]) -> String {
        let loc = self.tt_authorize(extra).await.location();
        qp(&loc, "code").expect("code in redirect")
    }

    pub async fn tt_token(&self, form: &[(&str, &str)]) -> Resp {
        let mut f = vec![
            ("client_key", TIKTOK_CLIENT_KEY),
            ("client_secret", TIKTOK_CLIENT_SECRET),
        ];
        f.extend_from_slice(form);
        Self::send(
            self.http
                .post(self.url("/tiktok/api/v2/oauth/token/"))
                .form(&f),
        )
        .await
    }

    pub async fn tt_exchange(&self, code: &str, verifier: Option<&str>) -> Resp {
        let mut f = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
        ];
        if let Some(v) = verifier {
            f.push(("code_verifier", v));
        }
        self.tt_token(&f).await
    }

    pub async fn tt_refresh(&self, refresh_token: &str) -> Resp {
        self.tt_token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ])
        .await
    }

    /// Authorize + exchange; returns (access_token, refresh_token).
    pub async fn tt_tokens(&self, user: &str) -> (String, String) {
        let code = self.tt_code(&[("sandbox_user", user)]).await;
        let r = self.tt_exchange(&code, None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        (
            r.str("/access_token").to_owned(),
            r.str("/refresh_token").to_owned(),
        )
    }

    pub async fn tt_user(&self, access_token: &str, fields: &str) -> Resp {
        Self::send(
            self.http
                .get(self.url("/tiktok/api/v2/user/info/"))
                .query(&[("fields", fields)])
                .bearer_auth(access_token),
        )
        .await
    }

    // ---- Instagram ----

    pub async fn ig_authorize(&self, extra: &[(&str, &str)]) -> Resp {
        let mut q = vec![
            ("client_id", INSTAGRAM_CLIENT_ID),
            ("redirect_uri", REDIRECT),
            ("response_type", "code"),
            ("scope", IG_SCOPES),
            ("state", "ig-st"),
        ];
        q.extend_from_slice(extra);
        Self::send(
            self.http
                .get(self.url("/instagram/auth/oauth/authorize"))
                .query(&q),
        )
        .await
    }

    pub async fn ig_code(&self, extra: &[(&str, &str)]) -> String {
        let loc = self.ig_authorize(extra).await.location();
        qp(&loc, "code").expect("code in redirect")
    }

    pub async fn ig_exchange(&self, code: &str) -> Resp {
        Self::send(
            self.http
                .post(self.url("/instagram/auth/oauth/access_token"))
                .form(&[
                    ("client_id", INSTAGRAM_CLIENT_ID),
                    ("client_secret", INSTAGRAM_CLIENT_SECRET),
                    ("grant_type", "authorization_code"),
                    ("redirect_uri", REDIRECT),
                    ("code", code),
                ]),
        )
        .await
    }

    pub async fn ig_long(&self, short: &str) -> Resp {
        Self::send(
            self.http
                .get(self.url("/instagram/graph/access_token"))
                .query(&[
                    ("grant_type", "ig_exchange_token"),
                    ("client_secret", INSTAGRAM_CLIENT_SECRET),
                    ("access_token", short),
                ]),
        )
        .await
    }

    pub async fn ig_refresh(&self, token: &str) -> Resp {
        Self::send(
            self.http
                .get(self.url("/instagram/graph/refresh_access_token"))
                .query(&[("grant_type", "ig_refresh_token"), ("access_token", token)]),
        )
        .await
    }

    pub async fn ig_me(&self, token: &str) -> Resp {
        Self::send(
            self.http
                .get(self.url("/instagram/graph/me"))
                .query(&[("fields", "user_id,username"), ("access_token", token)]),
        )
        .await
    }

    /// Authorize + code exchange + long-lived exchange; returns (short, long).
    pub async fn ig_tokens(&self, user: &str) -> (String, String) {
        let code = self.ig_code(&[("sandbox_user", user)]).await;
        let r = self.ig_exchange(&code).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let short = r.str("/data/0/access_token").to_owned();
        let r = self.ig_long(&short).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        (short, r.str("/access_token").to_owned())
    }
}

/// Asserts a TikTok OAuth error body.
pub fn assert_oauth_error(r: &Resp, error: &str) {
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(r.str("/error"), error, "{}", r.text);
    assert!(!r.str("/error_description").is_empty());
    assert!(!r.str("/log_id").is_empty());
}

/// Asserts a Graph API error body (HTTP 400, OAuthException, code, optional subcode).
pub fn assert_graph_error(r: &Resp, code: u64, subcode: Option<u64>) {
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(r.str("/error/type"), "OAuthException");
    assert_eq!(r.json["error"]["code"].as_u64(), Some(code), "{}", r.text);
    assert_eq!(
        r.json["error"]["error_subcode"].as_u64(),
        subcode,
        "{}",
        r.text
    );
    assert!(!r.str("/error/fbtrace_id").is_empty());
    assert!(!r.str("/error/message").is_empty());
}
