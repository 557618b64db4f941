//! The HTTP and GraphQL surface: configuration, the axum router, the async-graphql schema.
//! Resolvers are thin: they check the caller and call `service` functions.

/// Startup: connects, migrates, bootstraps and serves.
pub mod app;
/// Configuration from flags and environment (clap).
pub mod config;
/// The one error type the API shows clients, with stable `extensions.code`s.
pub mod error;
/// The GraphQL schema, one file per domain.
pub mod graphql;
/// HTTP routes: GraphQL over HTTP, the dashboard, GraphiQL, health checks.
pub mod http;
/// Request and connection limits: settings and the per-key rate limiter.
pub mod limits;
/// Dashboard session settings (their own clap section).
pub mod session_config;
/// Logging setup.
pub mod telemetry;

pub use app::{App, AppState};
pub use config::Config;
