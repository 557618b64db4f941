//! Identity: who is calling and what they may do. Owns tenants, API keys, dashboard users
//! and their sessions, the caller (tenant, role, actor label) and the append-only audit log
//! that records what callers did.
//!
//! May call: `error`, `pagination`, `tokens::vault` (TOTP secrets are encrypted like
//! tokens) and the entities. Every other folder may call it.

/// API keys: generation, hashing, authentication, bootstrap.
pub mod api_keys;
/// The append-only audit log.
pub mod audit;
/// Who is calling: tenant, role and actor label, checked by every service function.
pub mod caller;
/// Dashboard sessions: sign-in (password + TOTP, throttled), cookies, expiry, sign-out.
pub mod sessions;
/// Tenants: lookup and creation.
pub mod tenants;
/// Dashboard users: Argon2id passwords, TOTP secrets, recovery codes.
pub mod users;
