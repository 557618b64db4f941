//! Shared HTTP plumbing of the providers: rate limiting, call recording, usage tracking.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use chrono::{DateTime, Utc};
use reqwest::header::HeaderMap;
use tokio::sync::mpsc;

use super::Platform;
use super::error::{ErrorClass, ProviderError, USAGE_WARN_PERCENT, UsageReport};
use super::limits::{AppLimiter, Endpoint, Priority};

/// One HTTP call to a provider, for the call log (written in batches by a background task).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderCall {
    /// Platform called.
    pub platform: Platform,
    /// `exchange_code`, `exchange_long_lived`, `refresh`, `revoke` or `user_info`.
    pub operation: &'static str,
    /// The URL called, with every credential in its query redacted ([`redact_url`]).
    pub url: String,
    /// HTTP status, `None` for transport failures (timeout, connection refused).
    pub http_status: Option<u16>,
    /// [`ProviderError::code`] of a failed call.
    pub error_code: Option<String>,
    /// Wall time of the call in milliseconds.
    pub latency_ms: u32,
    /// When the call started.
    pub at: DateTime<Utc>,
}

/// Query parameters that carry credentials (Meta puts tokens and the app secret in query
/// strings: `?access_token=`, `?client_secret=`).
const SECRET_PARAMS: &[&str] = &[
    "access_token",
    "client_secret",
    "code",
    "code_verifier",
    "refresh_token",
    "token",
    "input_token",
    "fb_exchange_token",
];

/// `url` with the value of every credential-carrying query parameter replaced by
/// `[redacted]`. Every URL that is logged or recorded goes through this.
fn redact_url(url: &url::Url) -> String {
    let mut out = url.clone();
    out.set_fragment(None);
    if url.query().is_some() {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let secret = SECRET_PARAMS.iter().any(|p| k.eq_ignore_ascii_case(p));
                let v = if secret {
                    "[redacted]".to_owned()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        out.query_pairs_mut().clear().extend_pairs(pairs);
    }
    out.to_string()
}

/// Non-blocking sender of [`ProviderCall`] records. A full or closed channel drops the record
/// and counts it; recording never slows a provider call down. Cheap to clone.
#[derive(Debug, Clone)]
pub struct CallSink {
    tx: Option<mpsc::Sender<ProviderCall>>,
    dropped: Arc<AtomicU64>,
}

/// Creates a bounded call sink and the receiver the batch writer drains.
/// A `capacity` of 0 is raised to 1.
pub fn call_sink(capacity: usize) -> (CallSink, mpsc::Receiver<ProviderCall>) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    (
        CallSink {
            tx: Some(tx),
            dropped: Arc::new(AtomicU64::new(0)),
        },
        rx,
    )
}

impl CallSink {
    /// A sink that discards every record (tests, tools).
    pub fn noop() -> Self {
        Self {
            tx: None,
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Records a call with `try_send`; never blocks.
    pub fn record(&self, call: ProviderCall) {
        if let Some(tx) = &self.tx
            && tx.try_send(call).is_err()
        {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records dropped because the channel was full or closed.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// The rate-limited endpoint of an operation.
pub(crate) fn endpoint_of(operation: &str) -> Endpoint {
    match operation {
        "user_info" => Endpoint::UserInfo,
        "revoke" => Endpoint::Revoke,
        _ => Endpoint::Token,
    }
}

/// A received provider response, body read as text.
#[derive(Debug)]
pub(crate) struct RawResponse {
    pub(crate) status: u16,
    pub(crate) headers: HeaderMap,
    pub(crate) body: String,
    pub(crate) received_at: DateTime<Utc>,
}

impl RawResponse {
    /// Whether the status is 2xx.
    pub(crate) fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// State shared by all handles of one provider: HTTP client, limiter (with the usage), sink.
#[derive(Debug)]
pub(crate) struct HttpCore {
    pub(crate) platform: Platform,
    pub(crate) http: reqwest::Client,
    pub(crate) limiter: Arc<AppLimiter>,
    pub(crate) sink: CallSink,
}

impl HttpCore {
    /// New core for one platform.
    pub(crate) fn new(
        platform: Platform,
        http: reqwest::Client,
        limiter: Arc<AppLimiter>,
        sink: CallSink,
    ) -> Self {
        Self {
            platform,
            http,
            limiter,
            sink,
        }
    }

    /// Latest usage report seen in any response.
    pub(crate) fn last_usage(&self) -> Option<UsageReport> {
        self.limiter.last_usage()
    }

    /// Acquires rate-limit capacity for the operation's endpoint as `priority` allows,
    /// sends the request, reads the body, hands it to `handle`, and records the call.
    /// Transport failures become `Transient` errors.
    pub(crate) async fn execute<T>(
        &self,
        priority: Priority,
        operation: &'static str,
        request: reqwest::RequestBuilder,
        handle: impl FnOnce(&RawResponse) -> Result<T, ProviderError>,
    ) -> Result<T, ProviderError> {
        let request = request.build().map_err(|_| {
            ProviderError::new(
                ErrorClass::Config,
                "request_build",
                "invalid provider request",
            )
        })?;
        let url = redact_url(request.url());
        self.limiter
            .acquire(endpoint_of(operation), priority)
            .await?;
        let at = Utc::now();
        let started = Instant::now();
        let raw = match self.http.execute(request).await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let headers = resp.headers().clone();
                match resp.text().await {
                    Ok(body) => Ok(RawResponse {
                        status,
                        headers,
                        body,
                        received_at: Utc::now(),
                    }),
                    Err(e) => Err(ProviderError::from_transport(&e).with_status(Some(status))),
                }
            }
            Err(e) => Err(ProviderError::from_transport(&e)),
        };
        let latency_ms = u32::try_from(started.elapsed().as_millis()).unwrap_or(u32::MAX);
        let received_status = raw.as_ref().ok().map(|r| r.status);
        let result = raw.and_then(|raw| {
            let usage = UsageReport::from_headers(&raw.headers, raw.received_at);
            if let Some(usage) = usage {
                self.note_usage(operation, usage);
            }
            handle(&raw).map_err(|mut e| {
                e.http_status = e.http_status.or(Some(raw.status));
                e.or_usage(usage)
            })
        });
        let (http_status, error_code) = match &result {
            Ok(_) => (received_status, None),
            Err(e) => (e.http_status, Some(e.code.clone())),
        };
        match &result {
            Ok(_) => tracing::debug!(
                platform = self.platform.as_str(),
                operation,
                url = %url,
                latency_ms,
                "provider call succeeded"
            ),
            Err(e) => tracing::info!(
                platform = self.platform.as_str(),
                operation,
                url = %url,
                latency_ms,
                http_status = e.http_status,
                class = e.class.as_str(),
                code = %e.code,
                log_id = e.log_id.as_deref(),
                reason = e.reason,
                "provider call failed: {}",
                e.message
            ),
        }
        self.sink.record(ProviderCall {
            platform: self.platform,
            operation,
            url,
            http_status,
            error_code,
            latency_ms,
            at,
        });
        result
    }

    /// Stores the latest usage and warns when it is high.
    fn note_usage(&self, operation: &'static str, usage: UsageReport) {
        if usage.max_percent() >= USAGE_WARN_PERCENT {
            tracing::warn!(
                platform = self.platform.as_str(),
                operation,
                call_count = usage.call_count,
                total_time = usage.total_time,
                total_cputime = usage.total_cputime,
                "provider app usage is high"
            );
        }
        self.limiter.note_usage(usage);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call() -> ProviderCall {
        ProviderCall {
            platform: Platform::TikTok,
            operation: "refresh",
            url: "https://x.test/refresh".into(),
            http_status: Some(200),
            error_code: None,
            latency_ms: 3,
            at: Utc::now(),
        }
    }

    #[test]
    fn urls_are_redacted() {
        let url = url::Url::parse(
            "https://graph.instagram.com/v26.0/me?fields=id,username&access_token=IGAAsecret123&Client_Secret=s3&x=1#frag",
        )
        .unwrap();
        let shown = redact_url(&url);
        assert!(!shown.contains("IGAAsecret123"), "{shown}");
        assert!(!shown.contains("s3"), "{shown}");
        assert!(shown.contains("fields=id%2Cusername"), "{shown}");
        assert!(shown.contains("access_token=%5Bredacted%5D"), "{shown}");
        assert!(!shown.contains("frag"));
        let plain = url::Url::parse("https://open.tiktokapis.com/v2/oauth/token/").unwrap();
        assert_eq!(redact_url(&plain), plain.as_str());
    }

    #[tokio::test]
    async fn sink_never_blocks_and_counts_drops() {
        let (sink, mut rx) = call_sink(1);
        sink.record(call());
        sink.record(call());
        assert_eq!(sink.dropped(), 1);
        assert_eq!(rx.recv().await.unwrap().operation, "refresh");
        drop(rx);
        sink.record(call());
        assert_eq!(sink.dropped(), 2);
        CallSink::noop().record(call());
    }
}
