//! The domain layer: plain async functions over `&impl ConnectionTrait`, used by the API
//! resolvers and by the background jobs alike. Every tenant-owned read and write takes the
//! caller (or its tenant id) and filters by tenant here, never in resolvers.

/// Accounts: listing, filters, deactivation. Tenant-scoped.
pub mod accounts;
/// Error-rate alerts on provider calls.
pub mod alerts;
/// API keys: generation, hashing, authentication, bootstrap.
pub mod api_keys;
/// Refresh attempts and retry scheduling.
pub mod attempts;
/// The append-only audit log.
pub mod audit;
/// Who is calling: tenant, role and actor label, checked by every service function.
pub mod caller;
/// Purging long-deactivated accounts.
pub mod cleanup;
/// Connecting accounts, disconnecting them, reading access tokens.
pub mod connections;
/// Connecting to SQLite or PostgreSQL and running migrations.
pub mod db;
/// Shared domain enums (platform, account status).
pub mod domain;
/// Long-lived token machinery: key ring, providers, refresh locks, settings.
pub mod engine;
/// The one error type of the service layer.
pub mod error;
/// Token events: outbox, replay and the cross-process bus.
pub mod events;
/// Provider failures in words: code, message, action.
pub mod failures;
/// Health check snapshots shared across processes.
pub mod health;
/// End-user notifications, one per incident.
pub mod notifications;
/// Keyset (Relay) pagination over id-ordered tables.
pub mod pagination;
/// The provider call log and its statistics.
pub mod provider_calls;
/// OAuth providers (TikTok, Instagram): one trait, one file per platform.
pub mod providers;
/// Single-flight token refresh.
pub mod refresh;
/// Encryption key rotation and rewrapping.
pub mod rotation;
/// Deployment settings and the vault canary.
pub mod settings;
/// Finding and claiming tokens due for a refresh.
pub mod sweep;
/// Tenants: lookup and creation.
pub mod tenants;
/// The tenant-wide token health summary.
pub mod token_health;
/// Token rows: lookups and health (no decryption here).
pub mod tokens;
/// The token vault: AES-256-GCM key ring.
pub mod vault;
/// Signed webhooks and their deliveries.
pub mod webhooks;

pub use caller::{Actor, Caller, Role};
pub use error::{ServiceError, ServiceResult};
