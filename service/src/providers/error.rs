//! Provider errors, their classification, and Meta usage headers.
//!
//! Every failure of a provider call becomes a [`ProviderError`] with an [`ErrorClass`] that
//! tells the caller what to do next (retry later, ask the user to reconnect, fix the
//! configuration...). Messages are sanitized: no tokens, secrets or raw bodies.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::header::{HeaderMap, RETRY_AFTER};

pub use entity::enums::ErrorClass;

/// The code of a call our own rate limiter refused before sending it (see
/// [`super::limits`]).
pub(crate) const LOCAL_RATE_LIMIT: &str = "rate_limited_local";

/// A classified provider failure. `Display` and `Debug` are safe to log and to show.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{class} ({code}): {message}")]
pub struct ProviderError {
    /// What the failure means.
    pub class: ErrorClass,
    /// Stable code: the provider's (`invalid_grant`, `190/460`, `rate_limit_exceeded`) or
    /// ours (`timeout`, `network`, `http_503`, `rate_limited_local`, `expired`...).
    pub code: String,
    /// Human-readable, sanitized message (no secrets, no token echo).
    pub message: String,
    /// How long to wait before retrying, when known.
    pub retry_after: Option<Duration>,
    /// HTTP status of the provider response, if one was received.
    pub http_status: Option<u16>,
    /// Provider request id (TikTok `log_id`, Meta `fbtrace_id`) for support tickets.
    pub log_id: Option<String>,
    /// Stable reason of a dead grant (`password_changed`, `app_removed`, `expired`...).
    pub reason: Option<&'static str>,
    /// Rarely present details, boxed to keep the error small: see [`ProviderError::usage`]
    /// and [`ProviderError::missing_permission`].
    pub extras: Option<Box<ErrorExtras>>,
}

/// Rarely present details of a [`ProviderError`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ErrorExtras {
    /// Meta app/business usage reported with the response.
    pub usage: Option<UsageReport>,
    /// The permission / scope the grant lacks, when a call failed because the user did not
    /// grant it or removed it after consenting (`instagram_business_basic`, `user.info.basic`).
    pub missing_permission: Option<String>,
}

impl ProviderError {
    /// A new error without status, ids or hints. The message is sanitized.
    pub fn new(class: ErrorClass, code: impl Into<String>, message: impl AsRef<str>) -> Self {
        Self {
            class,
            code: code.into(),
            message: sanitize_message(message.as_ref()),
            retry_after: None,
            http_status: None,
            log_id: None,
            reason: None,
            extras: None,
        }
    }

    /// Meta app/business usage reported with the response, if any.
    pub fn usage(&self) -> Option<&UsageReport> {
        self.extras.as_ref().and_then(|x| x.usage.as_ref())
    }

    /// Sets the usage report unless one is already set.
    pub(crate) fn or_usage(mut self, usage: Option<UsageReport>) -> Self {
        if self.usage().is_none() && usage.is_some() {
            self.extras.get_or_insert_with(Box::default).usage = usage;
        }
        self
    }

    /// The permission / scope the grant lacks, if known.
    pub(crate) fn missing_permission(&self) -> Option<&str> {
        self.extras
            .as_ref()
            .and_then(|x| x.missing_permission.as_deref())
    }

    /// Names the missing permission.
    pub(crate) fn with_missing_permission(mut self, permission: Option<String>) -> Self {
        if permission.is_some() {
            self.extras
                .get_or_insert_with(Box::default)
                .missing_permission = permission;
        }
        self
    }

    /// Names `permission` as missing when the error is a removed permission that names none.
    pub(crate) fn or_missing_permission(self, permission: &str) -> Self {
        let removed = matches!(
            self.reason,
            Some("permission_revoked" | "scope_not_authorized")
        );
        if removed && self.missing_permission().is_none() {
            self.with_missing_permission(Some(permission.to_owned()))
        } else {
            self
        }
    }

    /// Sets `retry_after`.
    pub(crate) fn with_retry_after(mut self, retry_after: Option<Duration>) -> Self {
        self.retry_after = retry_after;
        self
    }

    /// Sets `http_status`.
    pub(crate) fn with_status(mut self, status: Option<u16>) -> Self {
        self.http_status = status;
        self
    }

    /// Sets `reason`.
    pub(crate) fn with_reason(mut self, reason: Option<&'static str>) -> Self {
        self.reason = reason;
        self
    }

    /// A configuration error (e.g. a platform without credentials).
    pub fn config(code: &str, message: impl AsRef<str>) -> Self {
        Self::new(ErrorClass::Config, code, message)
    }

    /// An invalid-input error.
    pub fn invalid_input(code: &str, message: impl AsRef<str>) -> Self {
        Self::new(ErrorClass::InvalidInput, code, message)
    }

    /// Stable reason of a dead grant, if known (e.g. `password_changed`).
    pub fn reason(&self) -> Option<&'static str> {
        self.reason
    }

    /// Human description of [`ProviderError::reason`], for messages such as
    /// "Instagram access for @name was revoked because the password was changed".
    pub fn reason_description(&self) -> Option<&'static str> {
        self.reason.map(describe_reason)
    }

    /// Whether our own rate limiter refused the call before anything was sent: the
    /// platform saw nothing, so this says nothing about the account.
    pub(crate) fn is_local_rate_limit(&self) -> bool {
        self.code == LOCAL_RATE_LIMIT
    }

    /// Whether the user must reconnect.
    pub fn is_grant_dead(&self) -> bool {
        self.class == ErrorClass::GrantDead
    }

    /// Classifies a transport error (no response). The URL, which may hold a token in its
    /// query, is never included.
    pub(crate) fn from_transport(err: &reqwest::Error) -> Self {
        if err.is_timeout() {
            Self::new(
                ErrorClass::Transient,
                "timeout",
                "the provider did not answer in time",
            )
        } else if err.is_builder() {
            Self::new(
                ErrorClass::Config,
                "request_build",
                "invalid provider request",
            )
        } else if err.is_connect() {
            Self::new(
                ErrorClass::Transient,
                "network",
                "could not connect to the provider",
            )
        } else {
            Self::new(
                ErrorClass::Transient,
                "network",
                "network error while calling the provider",
            )
        }
    }
}

/// The first permission or scope name in a provider message: Meta's `instagram_*` /
/// `pages_*` / `business_*` permissions, TikTok's dotted scopes (`video.publish`).
pub(crate) fn permission_in(message: &str) -> Option<String> {
    message
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .map(|w| w.trim_matches('.'))
        .find(|w| {
            let meta = ["instagram_", "pages_", "business_"]
                .iter()
                .any(|p| w.starts_with(p) && w.len() > p.len());
            let tiktok = ["user.", "video.", "artist.", "research."]
                .iter()
                .any(|p| w.starts_with(p) && w.len() > p.len());
            meta || tiktok
        })
        .map(str::to_owned)
}

/// How long to wait after Meta's code 368 ("temporarily blocked for policies violations"):
/// long, as Mixpost waits an hour at the app level when Meta blocks or throttles it.
pub(crate) const TEMPORARILY_BLOCKED_WAIT: Duration = Duration::from_secs(3600);

/// Human description of a dead-grant reason code.
pub(crate) fn describe_reason(reason: &str) -> &'static str {
    match reason {
        "app_removed" => "the user removed the app",
        "user_checkpointed" => "the account is checkpointed and the user must log in to Instagram",
        "password_changed" => "the password was changed",
        "expired" => "the token expired",
        "user_unconfirmed" => "the account is unconfirmed",
        "invalid_token" => "the token is invalid",
        "session_invalid" => "the session was invalidated",
        "permission_revoked" => "a required permission was revoked",
        "scope_not_authorized" => "the user did not grant a required permission",
        "invalid_code" => "the authorization code is invalid, used or expired",
        "refresh_token_reused" => "a rotated-out refresh token was reused",
        "revoked" => "the authorization was revoked",
        "user_disconnected" => "the user disconnected the app",
        "account_deleted" => "the account was deleted",
        "age_changed" => "the account holder's age changed",
        "account_banned" => "the account was banned",
        "developer_revoked" => "the app's developer revoked the authorization",
        "authorization_removed" => "the authorization was removed",
        "data_deleted" => "the user asked for their data to be deleted",
        _ => "the authorization is no longer valid",
    }
}

/// Maximum length of a provider message kept in an error.
const MAX_MESSAGE_CHARS: usize = 300;
/// Runs of token-like characters at least this long are redacted from messages.
const TOKEN_LIKE_MIN_LEN: usize = 24;

/// Makes provider text safe to log: strips control characters, redacts long token-like
/// runs (anything that could be an echoed token or secret) and caps the length.
pub(crate) fn sanitize_message(raw: &str) -> String {
    let is_token_char = |c: char| {
        c.is_ascii_alphanumeric()
            || matches!(c, '-' | '_' | '.' | '~' | '+' | '/' | '=' | '%' | '|' | '!')
    };
    let mut out = String::with_capacity(raw.len().min(MAX_MESSAGE_CHARS));
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.chars().count() >= TOKEN_LIKE_MIN_LEN && run.chars().any(|c| c.is_ascii_digit()) {
            out.push_str("[redacted]");
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in raw.chars() {
        if is_token_char(c) {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(if c.is_control() { ' ' } else { c });
        }
    }
    flush(&mut run, &mut out);
    let trimmed = out.trim();
    if trimmed.chars().count() > MAX_MESSAGE_CHARS {
        let mut cut: String = trimmed.chars().take(MAX_MESSAGE_CHARS).collect();
        cut.push('…');
        cut
    } else {
        trimmed.to_owned()
    }
}

/// Parses `Retry-After` (delta seconds or HTTP date).
pub(crate) fn retry_after_header(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = DateTime::parse_from_rfc2822(value)
        .ok()?
        .with_timezone(&Utc);
    (at - Utc::now()).to_std().ok().or(Some(Duration::ZERO))
}

/// Percent usage reported by Meta in `X-App-Usage` / `X-Business-Use-Case-Usage`
/// (maximum over all entries). 100 means the app is rate limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageReport {
    /// Percent of the call-count budget used.
    pub call_count: u32,
    /// Percent of the total-time budget used.
    pub total_time: u32,
    /// Percent of the CPU-time budget used.
    pub total_cputime: u32,
    /// `estimated_time_to_regain_access` of the business-use-case header, if throttled.
    pub regain_access_after: Option<Duration>,
    /// When the response carrying the headers was received.
    pub observed_at: DateTime<Utc>,
}

/// Usage at or above this percent is treated as rate limited.
pub(crate) const USAGE_LIMIT_PERCENT: u32 = 100;
/// Usage at or above this percent is logged as a warning.
pub(crate) const USAGE_WARN_PERCENT: u32 = 80;

impl UsageReport {
    /// Highest of the three percentages.
    pub(crate) fn max_percent(&self) -> u32 {
        self.call_count.max(self.total_time).max(self.total_cputime)
    }

    /// Whether the app is at or above its limit.
    pub fn is_exhausted(&self) -> bool {
        self.max_percent() >= USAGE_LIMIT_PERCENT
    }

    /// Reads `X-App-Usage` and `X-Business-Use-Case-Usage`; `None` when neither parses.
    pub(crate) fn from_headers(headers: &HeaderMap, observed_at: DateTime<Utc>) -> Option<Self> {
        let mut report: Option<UsageReport> = None;
        let mut merge = |entry: &serde_json::Value| {
            let pct = |k: &str| {
                entry
                    .get(k)
                    .and_then(|v| v.as_f64().or_else(|| v.as_str()?.parse().ok()))
                    .map(|f| f.clamp(0.0, 10_000.0).round() as u32)
            };
            let (Some(cc), tt, tc) = (pct("call_count"), pct("total_time"), pct("total_cputime"))
            else {
                return;
            };
            let regain = pct("estimated_time_to_regain_access")
                .filter(|m| *m > 0)
                .map(|m| Duration::from_secs(u64::from(m) * 60));
            let r = report.get_or_insert(UsageReport {
                call_count: 0,
                total_time: 0,
                total_cputime: 0,
                regain_access_after: None,
                observed_at,
            });
            r.call_count = r.call_count.max(cc);
            r.total_time = r.total_time.max(tt.unwrap_or(0));
            r.total_cputime = r.total_cputime.max(tc.unwrap_or(0));
            r.regain_access_after = r.regain_access_after.max(regain);
        };
        if let Some(v) = header_json(headers, "x-app-usage") {
            merge(&v);
        }
        if let Some(v) = header_json(headers, "x-business-use-case-usage") {
            // {"<business id>": [{"type": "...", "call_count": .., ...}], ...}
            if let Some(map) = v.as_object() {
                for entries in map.values() {
                    for entry in entries.as_array().into_iter().flatten() {
                        merge(entry);
                    }
                }
            }
        }
        report
    }
}

/// Parses a header value as JSON.
fn header_json(headers: &HeaderMap, name: &str) -> Option<serde_json::Value> {
    serde_json::from_str(headers.get(name)?.to_str().ok()?).ok()
}

/// Default wait for a rate limit without any hint.
pub(crate) const DEFAULT_RATE_LIMIT_WAIT: Duration = Duration::from_secs(60);

/// Classification fallback when the body has no recognizable error code.
pub(crate) fn class_from_status(status: Option<u16>) -> ErrorClass {
    match status {
        None => ErrorClass::Transient,
        Some(408 | 425 | 429) => ErrorClass::Transient,
        Some(s) if s >= 500 => ErrorClass::Transient,
        // A bare 401 (no error code of the platform's) comes from proxies, WAFs and
        // gateways as often as from the platform: never a dead grant on the status alone.
        // Dead grants are recognised by the platform's own codes (`invalid_grant`, 190...).
        Some(401) => ErrorClass::Transient,
        Some(300..=399 | 403 | 404 | 405) => ErrorClass::Config,
        Some(_) => ErrorClass::InvalidInput,
    }
}

/// Fallback code for a status without a provider code.
pub(crate) fn code_from_status(status: Option<u16>) -> String {
    status.map_or_else(|| "unknown_error".to_owned(), |s| format!("http_{s}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn sanitize_redacts_token_like_runs() {
        let msg = "Invalid token IGAAb3c4d5e6f7g8h9i0jKLMNOPqrstuv123 provided\n\t";
        let s = sanitize_message(msg);
        assert_eq!(s, "Invalid token [redacted] provided");
        let plain = "Error validating access token: The session has been invalidated.";
        assert_eq!(sanitize_message(plain), plain);
        assert!(sanitize_message(&"a ".repeat(400)).chars().count() <= MAX_MESSAGE_CHARS + 1);
    }

    #[test]
    fn permissions_are_found_in_messages() {
        assert_eq!(
            permission_in("(#200) Requires instagram_business_content_publish permission")
                .as_deref(),
            Some("instagram_business_content_publish")
        );
        assert_eq!(
            permission_in("The user did not authorize the scope user.info.profile.").as_deref(),
            Some("user.info.profile")
        );
        assert_eq!(
            permission_in("(#10) Application does not have permission"),
            None
        );
    }

    #[test]
    fn retry_after_parsing() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after_header(&h), None);
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after_header(&h), Some(Duration::from_secs(7)));
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after_header(&h), Some(Duration::ZERO));
    }

    #[test]
    fn usage_headers() {
        let mut h = HeaderMap::new();
        let now = Utc::now();
        assert_eq!(UsageReport::from_headers(&h, now), None);
        h.insert(
            "x-app-usage",
            HeaderValue::from_static(r#"{"call_count":28,"total_time":25,"total_cputime":101}"#),
        );
        let r = UsageReport::from_headers(&h, now).unwrap();
        assert_eq!((r.call_count, r.max_percent()), (28, 101));
        assert!(r.is_exhausted());
        h.insert(
            "x-business-use-case-usage",
            HeaderValue::from_static(
                r#"{"17841400000000000":[{"type":"instagram","call_count":100,"total_cputime":5,"total_time":7,"estimated_time_to_regain_access":3}]}"#,
            ),
        );
        let r = UsageReport::from_headers(&h, now).unwrap();
        assert_eq!(r.call_count, 100);
        assert_eq!(r.regain_access_after, Some(Duration::from_secs(180)));
        h.insert("x-app-usage", HeaderValue::from_static("not json"));
        h.remove("x-business-use-case-usage");
        assert_eq!(UsageReport::from_headers(&h, now), None);
    }

    #[test]
    fn status_fallbacks() {
        assert_eq!(class_from_status(None), ErrorClass::Transient);
        assert_eq!(class_from_status(Some(503)), ErrorClass::Transient);
        assert_eq!(class_from_status(Some(401)), ErrorClass::Transient);
        assert_eq!(class_from_status(Some(400)), ErrorClass::InvalidInput);
        assert_eq!(code_from_status(Some(503)), "http_503");
    }
}
