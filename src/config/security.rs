use std::path::PathBuf;

use clap::Args;
use secrecy::SecretString;

/// Encryption keys, the bootstrap key, and the allow-lists for redirects and webhooks.
#[derive(Args, Clone, Debug)]
pub struct SecurityConfig {
    /// Encryption keys as comma-separated `id:base64` pairs (32-byte AES-256 keys).
    /// Required with PostgreSQL; with SQLite a key file is generated when unset.
    #[arg(long, env = "TOKENWARDEN_KEYS", hide_env_values = true, global = true)]
    pub keys: Option<SecretString>,

    /// The key id new ciphertexts use (default: the last key listed).
    #[arg(long, env = "TOKENWARDEN_ACTIVE_KEY", global = true)]
    pub active_key: Option<String>,

    /// Key file used when TOKENWARDEN_KEYS is unset (default: `tokenwarden.keys` next to
    /// the SQLite database; created with mode 0600).
    #[arg(long, env = "TOKENWARDEN_KEY_FILE", global = true)]
    pub key_file: Option<PathBuf>,

    /// When set, an ADMIN key with exactly this value is ensured for tenant `default`.
    #[arg(
        long,
        env = "TOKENWARDEN_BOOTSTRAP_ADMIN_KEY",
        hide_env_values = true,
        global = true
    )]
    pub bootstrap_admin_key: Option<SecretString>,

    /// Allowed `redirectAfter` prefixes, comma separated (e.g. `https://app.example.com/`).
    #[arg(
        long,
        env = "TOKENWARDEN_ALLOWED_REDIRECTS",
        value_delimiter = ',',
        global = true
    )]
    pub allowed_redirects: Vec<String>,

    /// Allow webhooks to private, loopback and link-local addresses (keep it off in
    /// production).
    #[arg(long, env = "TOKENWARDEN_WEBHOOK_ALLOW_PRIVATE", default_value_t = false, action = clap::ArgAction::Set, global = true)]
    pub webhook_allow_private: bool,
}
