//! Identity: who is calling and what they may do. Owns tenants, API keys, the caller
//! (tenant, role, actor label) and the append-only audit log that records what callers did.
//!
//! May call: `error`, `pagination` and the entities. Every other folder may call it.

/// API keys: generation, hashing, authentication, bootstrap.
pub mod api_keys;
/// The append-only audit log.
pub mod audit;
/// Who is calling: tenant, role and actor label, checked by every service function.
pub mod caller;
/// Tenants: lookup and creation.
pub mod tenants;
