//! The domain layer: plain async functions over `&impl ConnectionTrait`, used by the API
//! resolvers and by the background jobs alike. Every tenant-owned read and write takes the
//! caller (or its tenant id) and filters by tenant here, never in resolvers.

/// Accounts: listing, filters, deactivation. Tenant-scoped.
pub mod accounts;
/// API keys: generation, hashing, authentication, bootstrap.
pub mod api_keys;
/// The append-only audit log.
pub mod audit;
/// Who is calling: tenant, role and actor label, checked by every service function.
pub mod caller;
/// Connecting to SQLite or PostgreSQL and running migrations.
pub mod db;
/// Shared domain enums (platform, account status).
pub mod domain;
/// The one error type of the service layer.
pub mod error;
/// Keyset (Relay) pagination over id-ordered tables.
pub mod pagination;
/// OAuth providers (TikTok, Instagram): one trait, one file per platform.
pub mod providers;
/// Tenants: lookup and creation.
pub mod tenants;
/// Token rows: lookups and health (no decryption here).
pub mod tokens;
/// The token vault: AES-256-GCM key ring.
pub mod vault;

pub use caller::{Actor, Caller, Role};
pub use error::{ServiceError, ServiceResult};
