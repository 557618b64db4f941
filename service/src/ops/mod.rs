//! Operations: what keeps the deployment itself healthy. Owns the recurring health check's
//! findings, the purge of long-deactivated accounts, encryption key rotation, backups and
//! the deployment-wide settings (including the vault canary).
//!
//! May call: `identity`, `tokens` (the vault and token rows), `events`.

/// The OAuth app configuration the platform portals need (no secrets).
pub mod app_config;
/// Backups: create, verify and restore.
pub mod backup;
/// Purging long-deactivated accounts.
pub mod cleanup;
/// Health check snapshots shared across processes, and `systemHealth` from them.
pub mod health;
/// Encryption key rotation and rewrapping.
pub mod rotation;
/// Deployment settings and the vault canary.
pub mod settings;
/// Database size, rows per table and growth alerts.
pub mod size;
