use std::time::Duration;

use clap::Args;

/// What one request may cost (see `api::limits`). Every limit refuses with a stable
/// `extensions.code` (or WebSocket close code) and leaves the server serving.
#[derive(Args, Clone, Debug)]
pub struct LimitsConfig {
    /// Largest accepted request body in bytes (larger requests get 413).
    #[arg(long, env = "TOKENWARDEN_MAX_BODY_BYTES", default_value_t = 1024 * 1024, global = true)]
    pub max_body_bytes: usize,

    /// Deepest accepted query nesting.
    #[arg(
        long,
        env = "TOKENWARDEN_MAX_QUERY_DEPTH",
        default_value_t = 16,
        global = true
    )]
    pub max_query_depth: usize,

    /// Highest accepted query complexity: the potential nodes of one operation (a field
    /// is one, a connection field its page size times its selection). QUERY_TOO_COMPLEX.
    #[arg(
        long,
        env = "TOKENWARDEN_MAX_QUERY_COMPLEXITY",
        default_value_t = 50_000,
        global = true
    )]
    pub max_query_complexity: usize,

    /// Most fields at the root of one operation (aliases included): QUERY_TOO_COMPLEX.
    #[arg(
        long,
        env = "TOKENWARDEN_LIMITS_MAX_ROOT_FIELDS",
        default_value_t = 20,
        global = true
    )]
    pub max_root_fields: usize,

    /// Most aliased fields in one document: QUERY_TOO_COMPLEX.
    #[arg(
        long,
        env = "TOKENWARDEN_LIMITS_MAX_ALIASES",
        default_value_t = 30,
        global = true
    )]
    pub max_aliases: usize,

    /// Longest string argument or variable, in bytes: BAD_USER_INPUT.
    #[arg(
        long,
        env = "TOKENWARDEN_LIMITS_MAX_STRING_BYTES",
        default_value_t = 4096,
        global = true
    )]
    pub max_string_bytes: usize,

    /// A request running longer than this is cancelled: REQUEST_TIMEOUT (HTTP 504).
    #[arg(long, env = "TOKENWARDEN_LIMITS_REQUEST_TIMEOUT", value_parser = humantime::parse_duration, default_value = "30s", global = true)]
    pub request_timeout: Duration,

    /// Requests per minute one API key may make on average (0 = unlimited): RATE_LIMITED
    /// (HTTP 429, `Retry-After`, `extensions.retryAfterSeconds`).
    #[arg(
        long,
        env = "TOKENWARDEN_LIMITS_RATE_PER_MINUTE",
        default_value_t = 600,
        global = true
    )]
    pub rate_per_minute: u32,

    /// Requests one API key may make at once before the per-minute rate applies.
    #[arg(
        long,
        env = "TOKENWARDEN_LIMITS_RATE_BURST",
        default_value_t = 60,
        global = true
    )]
    pub rate_burst: u32,
}

impl LimitsConfig {
    /// The limits the API enforces.
    pub fn settings(&self) -> api::limits::LimitSettings {
        api::limits::LimitSettings {
            max_body_bytes: self.max_body_bytes,
            max_query_depth: self.max_query_depth,
            max_query_complexity: self.max_query_complexity,
            max_root_fields: self.max_root_fields,
            max_aliases: self.max_aliases,
            max_string_bytes: self.max_string_bytes,
            request_timeout: self.request_timeout,
            rate_per_minute: self.rate_per_minute,
            rate_burst: self.rate_burst,
        }
    }
}
