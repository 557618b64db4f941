//! The domain layer: plain async functions over `&impl ConnectionTrait`, used by the API
//! resolvers and by the background jobs alike. Every tenant-owned read and write takes the
//! caller (or its tenant id) and filters by tenant here, never in resolvers.
//!
//! One folder per area; each folder's module doc says what it owns and what it may call:
//! - [`identity`]: tenants, API keys, the caller, the audit log;
//! - [`tokens`]: the vault, token rows and the refresh lifecycle (refresh, sweep, attempts);
//! - [`connections`]: the OAuth connect flows and the accounts they create;
//! - [`providers`]: the TikTok and Instagram clients and their call log;
//! - [`events`]: the outbox and bus, notifications, webhooks and alerts;
//! - [`ops`]: health checks, cleanup, key rotation, settings.
//!
//! Shared plumbing sits at the top: [`db`], [`error`], [`pagination`], [`domain`] and the
//! long-lived [`engine`].

pub mod connections;
/// Connecting to SQLite or PostgreSQL and running migrations.
pub mod db;
/// Platform and account status, re-exported from `entity::enums`.
pub mod domain;
/// Long-lived token machinery: key ring, providers, refresh locks, settings.
pub mod engine;
/// The one error type of the service layer.
pub mod error;
pub mod events;
pub mod identity;
pub mod ops;
/// Keyset (Relay) pagination over id-ordered tables.
pub mod pagination;
pub mod providers;
pub mod tokens;

pub use error::{ServiceError, ServiceResult};
pub use identity::caller::{Actor, Caller, Role};
