//! The GraphQL schema. One file per domain, each with its Query / Mutation objects, merged
//! in `schema.rs`.

/// Accounts: listing, filters, deactivation, token health.
pub mod accounts;
/// API keys (ADMIN).
pub mod admin;
/// Analytics: refresh attempts per hour, failure reasons, expiries, token reads.
pub mod analytics;
/// `oauthAppConfig`: the OAuth app configuration the portals need.
pub mod app_config;
/// The audit log.
pub mod audit;
/// Backup status in `systemHealth`.
pub mod backups;
/// Connecting, refreshing and disconnecting accounts; access tokens; provider stats.
pub mod connections;
/// Per-request context: database, caller, data loaders.
pub mod context;
/// Database size in `systemHealth`.
pub mod database_size;
/// Token events: the `tokenEvents` subscription.
pub mod events;
/// `systemHealth`.
pub mod health;
/// Global ids and pagination cursors.
pub mod ids;
/// Cost checks: string lengths, root fields, aliases, complexity.
pub mod limits;
/// Token health summary, bulk refresh, key rotation.
pub mod maintenance;
/// The Relay `Node` interface and `node(id)`.
pub mod node;
/// Relay connection plumbing shared by every list.
pub mod paging;
/// `reportTokenRejected`: integrators report tokens the platform refused.
pub mod rejections;
/// Schema assembly and limits.
pub mod schema;
/// Dashboard users (ADMIN).
pub mod users;
/// `viewer`: who am I.
pub mod viewer;
/// Signed webhooks.
pub mod webhooks;

pub use context::{ContextExt, RequestAuth};
pub use schema::AppSchema;
pub(crate) use schema::build_schema;
