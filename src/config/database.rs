use std::path::PathBuf;

use clap::Args;
use service::db::DEFAULT_DATABASE_URL;

use super::SecretUrl;

/// Where the data lives.
#[derive(Args, Clone, Debug)]
pub struct DatabaseConfig {
    /// Database URL: `sqlite://file.db` (embedded) or `postgres://user@host/db`.
    #[arg(
        id = "database_url",
        long = "database-url",
        env = "DATABASE_URL",
        default_value = DEFAULT_DATABASE_URL,
        hide_env_values = true,
        global = true
    )]
    pub url: SecretUrl,
}

impl DatabaseConfig {
    /// The URL without its password, for logs and errors.
    pub fn redacted(&self) -> String {
        service::db::redacted_url(self.url.expose())
    }

    /// The SQLite database file, when the database is SQLite on disk.
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        let url = self.url.expose();
        let rest = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))?;
        let path = rest.split('?').next().unwrap_or_default();
        (!path.is_empty() && !path.contains(":memory:")).then(|| PathBuf::from(path))
    }
}
