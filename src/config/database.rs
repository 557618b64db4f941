use std::{path::PathBuf, time::Duration};

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

    /// Statements slower than this are logged at WARN (`slow statement: execution time
    /// exceeded alert threshold`, with the SQL); 0 turns the log off.
    #[arg(long, env = "TOKENWARDEN_DB_SLOW_STATEMENT", value_parser = humantime::parse_duration, default_value = "1s", global = true)]
    pub db_slow_statement: Duration,

    /// When the database size and the rows per table are measured (cron with seconds).
    #[arg(
        long,
        env = "TOKENWARDEN_DB_SIZE_SCHEDULE",
        default_value = "0 */15 * * * *",
        global = true
    )]
    pub db_size_schedule: String,

    /// DATABASE_GROWTH when the database grew more than this (bytes, or with KB, MB, GB,
    /// KiB, MiB, GiB) within the growth window; 0 turns the alert off.
    #[arg(long, env = "TOKENWARDEN_DB_GROWTH_ALERT", value_parser = parse_bytes, default_value = "256MiB", global = true)]
    pub db_growth_alert: u64,

    /// The window of the growth alert.
    #[arg(long, env = "TOKENWARDEN_DB_GROWTH_WINDOW", value_parser = humantime::parse_duration, default_value = "24h", global = true)]
    pub db_growth_window: Duration,
}

/// `256MiB`, `1.5 GB`, `65536`: a size in bytes.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size (e.g. 256MiB)"))?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        other => {
            return Err(format!(
                "unknown size unit {other:?} (B, KB, MB, GB, KiB, MiB, GiB)"
            ));
        }
    };
    Ok((number * factor as f64) as u64)
}

impl DatabaseConfig {
    /// The URL without its password, for logs and errors.
    pub fn redacted(&self) -> String {
        service::db::redacted_url(self.url.expose())
    }

    /// How connections are opened (the slow-statement log).
    pub fn options(&self) -> service::db::DbOptions {
        service::db::DbOptions {
            slow_statement: (!self.db_slow_statement.is_zero()).then_some(self.db_slow_statement),
        }
    }

    /// The growth alert's settings.
    pub fn growth(&self) -> service::ops::size::GrowthSettings {
        service::ops::size::GrowthSettings {
            threshold_bytes: self.db_growth_alert,
            window: self.db_growth_window,
        }
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

#[cfg(test)]
mod tests {
    use super::parse_bytes;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_bytes("65536"), Ok(65536));
        assert_eq!(parse_bytes("256MiB"), Ok(256 << 20));
        assert_eq!(parse_bytes("1.5 GB"), Ok(1_500_000_000));
        assert_eq!(parse_bytes("64KiB"), Ok(65536));
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("3 parsecs").is_err());
    }
}
