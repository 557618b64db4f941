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

    /// A WebSocket that has not sent `connection_init` this long after opening is closed
    /// with 4408 (graphql-transport-ws: "Connection initialisation timeout").
    #[arg(long, env = "TOKENWARDEN_LIMITS_WS_INIT_TIMEOUT", value_parser = humantime::parse_duration, default_value = "10s", global = true)]
    pub ws_init_timeout: Duration,

    /// Most subscriptions running at once on one WebSocket; one more is refused with an
    /// `error` frame, TOO_MANY_SUBSCRIPTIONS (the socket stays open).
    #[arg(
        long,
        env = "TOKENWARDEN_LIMITS_WS_MAX_SUBSCRIPTIONS",
        default_value_t = 25,
        global = true
    )]
    pub ws_max_subscriptions: usize,

    /// Most WebSockets one API key (or signed-in user) may hold open on one `serve`
    /// process; one more is closed with 4429 at `connection_init`.
    #[arg(
        long,
        env = "TOKENWARDEN_LIMITS_WS_MAX_SOCKETS_PER_KEY",
        default_value_t = 50,
        global = true
    )]
    pub ws_max_sockets_per_key: usize,

    /// Largest WebSocket message (and frame) a client may send, in bytes; a larger one
    /// closes the socket with 1009 (message too big).
    #[arg(
        long,
        env = "TOKENWARDEN_LIMITS_WS_MAX_MESSAGE_BYTES",
        default_value_t = 64 * 1024,
        global = true
    )]
    pub ws_max_message_bytes: usize,

    /// Time a client has to send a request's headers, which is also how long an idle
    /// keep-alive HTTP connection stays open; then the connection is closed.
    #[arg(long, env = "TOKENWARDEN_LIMITS_HEADER_READ_TIMEOUT", value_parser = humantime::parse_duration, default_value = "10s", global = true)]
    pub header_read_timeout: Duration,

    /// Most TCP connections (WebSockets included) one `serve` process holds at once; one
    /// more is answered HTTP 503 with `Retry-After` and closed.
    #[arg(
        long,
        env = "TOKENWARDEN_LIMITS_MAX_CONNECTIONS",
        default_value_t = 4096,
        global = true
    )]
    pub max_connections: usize,
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
            ws_init_timeout: self.ws_init_timeout,
            ws_max_subscriptions: self.ws_max_subscriptions,
            ws_max_sockets_per_key: self.ws_max_sockets_per_key,
            ws_max_message_bytes: self.ws_max_message_bytes,
            header_read_timeout: self.header_read_timeout,
            max_connections: self.max_connections,
        }
    }
}
