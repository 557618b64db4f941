//! Property tests ("fuzzing" with proptest) of the TikTok and Instagram response parsers:
//! arbitrary bytes and arbitrary JSON shaped like the platforms' answers never panic, and
//! whatever they return is well-formed. `PROPTEST_CASES` sets the number of cases
//! (256 by default; docs/testing.md says how long they have been run).

use chrono::Utc;
use proptest::prelude::*;
use reqwest::header::{HeaderMap, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};

use super::{RefreshRequest, http::RawResponse, instagram, tiktok};

/// Keys the parsers look at, so generated objects often hit the interesting paths.
const KEYS: &[&str] = &[
    "access_token",
    "refresh_token",
    "expires_in",
    "refresh_expires_in",
    "scope",
    "open_id",
    "data",
    "user",
    "error",
    "code",
    "message",
    "log_id",
    "error_description",
    "error_subcode",
    "error_user_msg",
    "type",
    "fbtrace_id",
    "id",
    "user_id",
    "username",
    "name",
    "permissions",
    "token_type",
    "profile_picture_url",
    "display_name",
    "avatar_url",
];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        prop_oneof![
            Just(String::new()),
            Just("ok".to_owned()),
            "[0-9]{1,20}",
            "-?[0-9]{1,25}",
            ".{0,40}",
        ]
        .prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![prop::sample::select(KEYS).prop_map(str::to_owned), ".{0,8}"],
                    inner
                ),
                0..8
            )
            .prop_map(|members| Value::Object(members.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A body: arbitrary text, or JSON (compact) of a platform-shaped value.
fn body() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,200}",
        prop::collection::vec(any::<u8>(), 0..200)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        json_value().prop_map(|v| v.to_string()),
    ]
}

fn status() -> impl Strategy<Value = u16> {
    prop_oneof![
        Just(200u16),
        Just(400),
        Just(401),
        Just(429),
        Just(500),
        100u16..600
    ]
}

fn headers() -> impl Strategy<Value = HeaderMap> {
    prop::option::of(prop_oneof!["[0-9]{1,25}", ".{0,30}"]).prop_map(|retry_after| {
        let mut headers = HeaderMap::new();
        if let Some(value) = retry_after.and_then(|v| HeaderValue::from_str(&v).ok()) {
            headers.insert("retry-after", value);
        }
        headers
    })
}

fn raw() -> impl Strategy<Value = RawResponse> {
    (status(), headers(), body()).prop_map(|(status, headers, body)| RawResponse {
        status,
        headers,
        body,
        received_at: Utc::now(),
    })
}

proptest! {
    #[test]
    fn tiktok_token_responses_never_panic(raw in raw(), with_previous in any::<bool>()) {
        let token = SecretString::from("previous-refresh-token".to_owned());
        let scopes = vec!["user.info.basic".to_owned()];
        let previous = RefreshRequest {
            token: &token,
            issued_at: Utc::now(),
            expires_at: Utc::now(),
            provider_account_id: "open-id",
            scopes: &scopes,
        };
        // A 400 with `{"error":""}` is classified with an empty code (found by this test);
        // the property is that nothing panics and that a success is well-formed.
        if let Ok(set) = tiktok::parse_token_response(&raw, with_previous.then_some(&previous)) {
            prop_assert!(!set.access_token.expose_secret().is_empty());
            prop_assert!(set.expires_at >= set.issued_at);
            prop_assert!(!set.provider_account_id.is_empty());
        }
    }

    #[test]
    fn tiktok_user_info_and_errors_never_panic(raw in raw()) {
        if let Ok(profile) = tiktok::parse_user_info(&raw) {
            prop_assert!(!profile.provider_account_id.is_empty());
        }
        let _ = tiktok::classify(Some(raw.status), &raw.headers, &raw.body);
        let _ = tiktok::classify(None, &raw.headers, &raw.body);
    }

    #[test]
    fn instagram_responses_never_panic(raw in raw()) {
        let _ = instagram::parse_short_lived(&raw);
        let _ = instagram::parse_long_lived(&raw);
        if let Ok(profile) = instagram::parse_me(&raw) {
            prop_assert!(!profile.provider_account_id.is_empty());
        }
        let _ = instagram::classify(Some(raw.status), &raw.headers, &raw.body);
        let _ = instagram::classify(None, &raw.headers, &raw.body);
    }

    #[test]
    fn provider_stats_windows_parse_without_panic_and_stay_bounded(
        text in prop_oneof![
            ".{0,40}",
            "[0-9]{1,30} ?(ns|us|ms|s|m|min|h|d|w|M|y|years|days)",
            "([0-9]{1,20}(s|m|h|d|y) ?){1,6}",
        ]
    ) {
        if let Ok(window) = super::calls::parse_window(&text) {
            prop_assert!(!window.is_zero());
            prop_assert!(window <= std::time::Duration::from_secs(366 * 86_400));
        }
    }
}
