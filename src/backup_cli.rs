//! `tokenwarden backup create|verify|restore`: glue between the command line and
//! `service::ops::backup`. Prints reports; never prints key material or tokens.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;
use service::ops::backup::{self, Manifest};
use tokenwarden::{Config, compose};

#[derive(Subcommand)]
pub(crate) enum BackupCommand {
    /// Write an online, consistent, compressed backup of the configured database to FILE
    /// (safe while the server runs; the file is replaced atomically).
    Create {
        /// Where to write the backup.
        #[arg(long, value_name = "FILE")]
        to: PathBuf,
    },
    /// Restore FILE into a scratch SQLite database, check its checksum and integrity, and
    /// decrypt every token with the configured keys. Exits non-zero on a damaged file, a
    /// missing key or any ciphertext that does not decrypt.
    Verify {
        file: PathBuf,
        /// Where the scratch database goes (default: the system temp directory).
        #[arg(long, value_name = "DIR")]
        scratch_dir: Option<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Restore FILE into the configured database (DATABASE_URL; by default
    /// `tokenwarden.db` in the working directory). Refuses a database with data unless
    /// --force; refuses keys that do not decrypt the backup. Stop the servers first.
    Restore {
        file: PathBuf,
        /// Replace the contents of a database that already holds data.
        #[arg(long)]
        force: bool,
    },
}

pub(crate) async fn run(config: Config, command: BackupCommand) -> anyhow::Result<()> {
    match command {
        BackupCommand::Create { to } => {
            let db = service::db::connect(config.database.url.expose())
                .await
                .with_context(|| {
                    format!(
                        "could not open the database at {}",
                        config.database.redacted()
                    )
                })?;
            let created = backup::create(&db, &to).await?;
            println!(
                "backup written to {} ({} bytes)",
                created.path.display(),
                created.file_bytes
            );
            print_manifest(&created.manifest);
            Ok(())
        }
        BackupCommand::Verify {
            file,
            scratch_dir,
            json,
        } => {
            let vault = compose::load_existing_key_ring(&config)?;
            let scratch = scratch_dir.unwrap_or_else(std::env::temp_dir);
            let report = backup::verify(&file, &vault, &scratch).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("backup {}", file.display());
                print_manifest(&report.manifest);
                println!(
                    "  checksum and row counts: ok; integrity: {}",
                    if report.integrity { "ok" } else { "FAILED" }
                );
                let d = &report.decryption;
                println!(
                    "  tokens: {} of {} decrypt; other secrets: {} of {} decrypt; canary: {}",
                    d.tokens_decrypted,
                    d.tokens,
                    d.secrets_decrypted,
                    d.secrets,
                    match d.canary {
                        Some(true) => "ok",
                        Some(false) => "FAILED",
                        None => "none",
                    }
                );
            }
            match report.problem() {
                None => {
                    if !json {
                        println!("OK: the backup restores and decrypts with the configured keys");
                    }
                    Ok(())
                }
                Some(problem) => anyhow::bail!("verification failed: {problem}"),
            }
        }
        BackupCommand::Restore { file, force } => {
            let vault = compose::load_existing_key_ring(&config)?;
            // Check the file before touching (or creating) the target.
            backup::read_manifest(&file)?;
            let db = service::db::connect_and_migrate(config.database.url.expose())
                .await
                .with_context(|| {
                    format!(
                        "could not open the database at {}",
                        config.database.redacted()
                    )
                })?;
            let restored = backup::restore(&db, &file, &vault, force).await?;
            db.close().await?;
            println!(
                "restored {} into {}{}",
                file.display(),
                config.database.redacted(),
                if restored.replaced.is_empty() {
                    String::new()
                } else {
                    format!(" (replaced the rows of {})", restored.replaced.join(", "))
                }
            );
            print_manifest(&restored.manifest);
            println!(
                "  tokens: {} of {} decrypt with the configured keys; it can serve now",
                restored.decryption.tokens_decrypted, restored.decryption.tokens
            );
            Ok(())
        }
    }
}

fn print_manifest(manifest: &Manifest) {
    println!(
        "  created {} by tokenwarden {} from {}; schema {}",
        manifest.created_at.to_rfc3339(),
        manifest.tokenwarden_version,
        manifest.source,
        manifest.schema_version
    );
    let tables = manifest
        .tables
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(t, n)| format!("{t} {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    println!("  {} rows: {tables}", manifest.total_rows());
    println!(
        "  keys needed: {}; data SHA-256 {}",
        if manifest.key_ids.is_empty() {
            "none".to_owned()
        } else {
            manifest.key_ids.join(", ")
        },
        manifest.data_sha256
    );
}
