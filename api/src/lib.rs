//! The HTTP and GraphQL surface: the axum router and the async-graphql schema, built from
//! parts the binary assembled (database, engine, queue, [`ApiConfig`]). This crate reads no
//! flags or environment and knows nothing of the sandbox. Resolvers are thin: they check the
//! caller and call `service` functions.

/// The application state and the server loop.
pub mod app;
/// The one error type the API shows clients, with stable `extensions.code`s.
pub mod error;
/// The GraphQL schema, one file per domain.
pub mod graphql;
/// HTTP routes: GraphQL over HTTP, the dashboard, GraphiQL, health checks.
pub mod http;
/// Request and connection limits: settings and the per-key rate limiter.
pub mod limits;
/// The resolved settings of the API server.
pub mod settings;
/// Prometheus metrics of this process.
pub mod telemetry;

pub use app::{App, AppState};
pub use settings::ApiConfig;
