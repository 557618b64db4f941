//! Small shared helpers: randomness, parameter parsing, PKCE, responses.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use axum::Json;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::digest::{SHA256, digest};
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::{Value, json};
use url::Url;

/// `n` random bytes from the OS RNG; falls back to a hashed counter if the RNG fails.
pub(crate) fn random_bytes(n: usize) -> Vec<u8> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut buf = vec![0u8; n];
    if SystemRandom::new().fill(&mut buf).is_err() {
        for (block, chunk) in buf.chunks_mut(32).enumerate() {
            let seed = format!(
                "{}:{block}:{:?}",
                COUNTER.fetch_add(1, Ordering::Relaxed),
                SystemTime::now()
            );
            let d = digest(&SHA256, seed.as_bytes());
            chunk.copy_from_slice(&d.as_ref()[..chunk.len()]);
        }
    }
    buf
}

/// Random URL-safe base64 string of `n` random bytes.
pub(crate) fn random_b64(n: usize) -> String {
    URL_SAFE_NO_PAD.encode(random_bytes(n))
}

/// Random lowercase hex string of `n` random bytes.
pub(crate) fn random_hex(n: usize) -> String {
    hex::encode(random_bytes(n))
}

/// Random number in `0..modulus`.
pub(crate) fn random_below(modulus: u64) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&random_bytes(8));
    u64::from_be_bytes(a) % modulus.max(1)
}

/// Stable number with at most `digits` decimal digits derived from `seed`.
pub(crate) fn numeric_hash(seed: &str, digits: u32) -> u64 {
    let d = digest(&SHA256, seed.as_bytes());
    let mut a = [0u8; 8];
    a.copy_from_slice(&d.as_ref()[..8]);
    u64::from_be_bytes(a) % 10u64.pow(digits)
}

/// HTTP 502 with an HTML page, as a load balancer answers when the platform is down.
pub(crate) fn html_bad_gateway() -> Response {
    let page = "<html><head><title>502 Bad Gateway</title></head><body><center>\
                <h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>";
    (
        StatusCode::BAD_GATEWAY,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        page,
    )
        .into_response()
}

/// HTTP 200 whose body breaks off after a few bytes: the client sees the connection reset
/// while it reads the body.
pub(crate) fn connection_reset() -> Response {
    let chunks: Vec<Result<&'static [u8], std::io::Error>> = vec![
        Ok(b"{\"data\":"),
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "connection reset by the sandbox",
        )),
    ];
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        axum::body::Body::from_stream(futures::stream::iter(chunks)),
    )
        .into_response()
}

/// HTTP 200 with a truncated JSON body.
pub(crate) fn malformed_ok() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        "{\"access_token\":\"act.trunc",
    )
        .into_response()
}

/// Parses `application/x-www-form-urlencoded` data (query or body); first value wins.
pub(crate) fn parse_params(raw: &[u8]) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(raw) {
        out.entry(k.into_owned()).or_insert_with(|| v.into_owned());
    }
    out
}

/// Parses an optional raw query string.
pub(crate) fn parse_query(raw: Option<&str>) -> HashMap<String, String> {
    parse_params(raw.unwrap_or_default().as_bytes())
}

/// A non-empty parameter value.
pub(crate) fn param<'a>(p: &'a HashMap<String, String>, key: &str) -> Option<&'a str> {
    p.get(key).map(String::as_str).filter(|s| !s.is_empty())
}

/// Splits a scope list (comma and/or whitespace separated), dropping empties and duplicates.
pub(crate) fn split_scopes(s: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for scope in s.split(|c: char| c == ',' || c.is_whitespace()) {
        if !scope.is_empty() && !out.iter().any(|x| x == scope) {
            out.push(scope.to_owned());
        }
    }
    out
}

/// Requested scopes narrowed by the sandbox-only `sandbox_grant` list, if given.
pub(crate) fn granted_scopes(requested: &[String], grant: Option<&str>) -> Vec<String> {
    match grant {
        None => requested.to_vec(),
        Some(g) => {
            let allowed = split_scopes(g);
            requested
                .iter()
                .filter(|s| allowed.contains(s))
                .cloned()
                .collect()
        }
    }
}

/// Whether a sandbox flag parameter is set (`1`, `true`, `yes`).
pub(crate) fn flag(p: &HashMap<String, String>, key: &str) -> bool {
    matches!(param(p, key), Some("1" | "true" | "yes"))
}

/// RFC 7636 S256: `BASE64URL(SHA256(verifier))` without padding.
#[cfg(test)]
pub(crate) fn pkce_s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest(&SHA256, verifier.as_bytes()))
}

/// `TikTok-Signature` value `s`: hex HMAC-SHA256 of `"<t>.<body>"` keyed with the client
/// secret (developers.tiktok.com/doc/webhooks-verification).
pub(crate) fn tiktok_signature(secret: &str, t: i64, body: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    hex::encode(ring::hmac::sign(&key, format!("{t}.{body}").as_bytes()).as_ref())
}

/// Meta `signed_request`: `base64url(HMAC-SHA256(encoded payload)).base64url(payload)`.
pub(crate) fn signed_request(secret: &str, payload: &Value) -> String {
    let encoded = URL_SAFE_NO_PAD.encode(payload.to_string());
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let sig = ring::hmac::sign(&key, encoded.as_bytes());
    format!("{}.{encoded}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
}

/// TikTok desktop S256: lowercase `HEX(SHA256(verifier))` ("You must use hex encoding of
/// SHA256 to generate the code challenge", developers.tiktok.com/doc/login-kit-desktop).
pub(crate) fn pkce_s256_hex(verifier: &str) -> String {
    hex::encode(digest(&SHA256, verifier.as_bytes()))
}

/// RFC 7636 verifier syntax: 43..=128 unreserved characters.
pub(crate) fn valid_pkce_string(s: &str) -> bool {
    (43..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// An absolute http(s) redirect URI.
pub(crate) fn parse_redirect_uri(s: &str) -> Option<Url> {
    Url::parse(s)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
}

/// `Authorization: Bearer <token>` value, if any.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_owned())
}

/// JSON response with the given status.
pub(crate) fn json_response(status: StatusCode, body: Value) -> Response {
    (status, Json(body)).into_response()
}

/// Sets a header (silently skipped if the value is not a valid header value).
pub(crate) fn with_header(mut resp: Response, name: HeaderName, value: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().insert(name, v);
    }
    resp
}

/// Adds `Cache-Control: no-store` and `Pragma: no-cache` (RFC 6749 §5.1).
pub(crate) fn no_store(resp: Response) -> Response {
    let resp = with_header(resp, header::CACHE_CONTROL, "no-store");
    with_header(resp, header::PRAGMA, "no-cache")
}

/// 429 carrying `Retry-After`.
pub(crate) fn too_many(body: Value, retry_after: u64) -> Response {
    let resp = json_response(StatusCode::TOO_MANY_REQUESTS, body);
    with_header(resp, header::RETRY_AFTER, &retry_after.to_string())
}

/// Non-JSON 504, like a gateway that gave up waiting for the backend.
pub(crate) fn gateway_timeout() -> Response {
    (
        StatusCode::GATEWAY_TIMEOUT,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "upstream request timeout",
    )
        .into_response()
}

/// 302 to `url`.
pub(crate) fn redirect(url: &Url) -> Response {
    match HeaderValue::from_str(url.as_str()) {
        Ok(location) => {
            let mut resp = StatusCode::FOUND.into_response();
            resp.headers_mut().insert(header::LOCATION, location);
            resp
        }
        Err(_) => json_response(
            StatusCode::BAD_REQUEST,
            json!({"error": "invalid_request", "error_description": "redirect_uri is not usable"}),
        ),
    }
}

/// `base` with extra query pairs appended (a `None` value is skipped) and the fragment set.
pub(crate) fn redirect_url(
    base: &Url,
    pairs: &[(&str, Option<&str>)],
    fragment: Option<&str>,
) -> Url {
    let mut url = base.clone();
    url.set_fragment(None);
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in pairs {
            if let Some(v) = v {
                q.append_pair(k, v);
            }
        }
    }
    url.set_fragment(fragment);
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_matches_rfc7636_appendix_b() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert!(valid_pkce_string(verifier));
        assert_eq!(
            pkce_s256(verifier),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert_eq!(
            pkce_s256_hex(verifier),
            "13d31e961a1ad8ec2f16b10c4c982e0876a878ad6df144566ee1894acb70f9c3"
        );
        assert!(!valid_pkce_string("short"));
    }

    /// The same known answers as the service's verifiers.
    #[test]
    fn callback_signatures_known_answers() {
        assert_eq!(
            tiktok_signature("secret", 1_700_000_000, r#"{"a":1}"#),
            "49f24e537407743fa4a0242bb63b94b9a47ee99cbbe071ccd8a22550ae411686"
        );
        let payload =
            json!({"algorithm": "HMAC-SHA256", "issued_at": 1_700_000_000, "user_id": "123"});
        assert_eq!(
            signed_request("appsecret", &payload),
            "O7i2tel-6hQs2GolWAjKC7NnzmFHRnJ7ubzQM79QaFI.eyJhbGdvcml0aG0iOiJITUFDLVNIQTI1NiIsImlzc3VlZF9hdCI6MTcwMDAwMDAwMCwidXNlcl9pZCI6IjEyMyJ9"
        );
    }

    #[test]
    fn scopes_split_and_narrow() {
        let req = split_scopes("a,b, c,,a");
        assert_eq!(req, ["a", "b", "c"]);
        assert_eq!(granted_scopes(&req, Some("c,a,z")), ["a", "c"]);
        assert_eq!(granted_scopes(&req, None), req);
    }

    #[test]
    fn redirect_url_appends_pairs_and_fragment() {
        let base = parse_redirect_uri("https://app.example/cb?x=1#frag");
        assert!(base.is_some());
        if let Some(base) = base {
            let url = redirect_url(&base, &[("code", Some("a b")), ("state", None)], Some("_"));
            assert_eq!(url.as_str(), "https://app.example/cb?x=1&code=a+b#_");
        }
        assert!(parse_redirect_uri("javascript:alert(1)").is_none());
    }
}
