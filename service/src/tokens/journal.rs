//! The refresh journal: rotated tokens the database has not taken yet.
//!
//! Once a platform has answered a refresh, its new tokens are the only ones that work (a
//! rotated-out TikTok refresh token presented again revokes the grant). When storing them
//! fails (the database is failing over, read-only or refusing connections) the sealed
//! result — already encrypted with the vault and bound to its account — is appended to a
//! local file and fsync'd before the store is retried, and a "done" line is appended once
//! the database has it. A process that dies meanwhile leaves the file behind; the next
//! start over the same deployment replays it before anything else refreshes.
//!
//! One file per process (`tokenwarden-journal-<deployment>-<instance>.jsonl`), locked
//! while the process lives, so several processes may share a directory: a replay only
//! reads files whose owner is gone, and only those of its own deployment (database).

use std::{
    collections::BTreeMap,
    fs::{File, OpenOptions},
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    sync::Mutex,
};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A refreshed token set, sealed for its account, waiting to be stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingTokens {
    pub tenant_id: i64,
    pub account_id: i64,
    pub platform: entity::enums::Platform,
    /// The token row version the refresh started from (compare-and-swap).
    pub version: i64,
    pub key_id: String,
    /// Ciphertexts (never plaintext): AES-256-GCM bound to tenant, account and kind.
    pub access_enc: String,
    pub refresh_enc: Option<String>,
    pub expires_at: DateTime<Utc>,
    pub refresh_expires_at: Option<DateTime<Utc>>,
    pub issued_at: DateTime<Utc>,
    pub scopes: Vec<String>,
    /// When the platform answered.
    pub received_at: DateTime<Utc>,
}

/// One line of a journal file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Line {
    Pending(PendingTokens),
    Done { account_id: i64, version: i64 },
}

const PREFIX: &str = "tokenwarden-journal-";

struct Open {
    file: File,
    /// What the file holds that is not done yet, by (account, version).
    pending: BTreeMap<(i64, i64), ()>,
}

/// This process's journal. Without a directory (tools, some tests) nothing is written
/// and results only live in memory while their store is retried.
#[derive(Debug)]
pub struct Journal {
    path: Option<PathBuf>,
    open: Mutex<Option<Open>>,
}

impl std::fmt::Debug for Open {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Open")
            .field("pending", &self.pending.len())
            .finish()
    }
}

impl Journal {
    /// A journal that writes nothing.
    pub fn disabled() -> Self {
        Self {
            path: None,
            open: Mutex::new(None),
        }
    }

    /// The journal of process `instance` of `deployment` in `dir` (created on first use).
    pub(crate) fn in_dir(dir: &Path, deployment: &str, instance: &str) -> Self {
        Self {
            path: Some(dir.join(format!("{PREFIX}{deployment}-{instance}.jsonl"))),
            open: Mutex::new(None),
        }
    }

    /// The file this process writes to, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    fn with_open<T>(
        &self,
        f: impl FnOnce(&mut Open) -> std::io::Result<T>,
    ) -> std::io::Result<Option<T>> {
        let Some(path) = &self.path else {
            return Ok(None);
        };
        let mut guard = self
            .open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if guard.is_none() {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .read(true)
                .open(path)?;
            restrict(&file);
            // Held for the life of the process: replays skip files of live processes.
            file.try_lock().map_err(std::io::Error::other)?;
            sync_dir(path);
            *guard = Some(Open {
                file,
                pending: BTreeMap::new(),
            });
        }
        match guard.as_mut() {
            Some(open) => f(open).map(Some),
            None => Ok(None),
        }
    }

    /// Appends a pending result and fsyncs it. Returns whether it is on disk.
    pub fn append(&self, pending: &PendingTokens) -> std::io::Result<bool> {
        let line = serde_json::to_string(&Line::Pending(pending.clone()))?;
        Ok(self
            .with_open(|open| {
                writeln!(open.file, "{line}")?;
                open.file.sync_all()?;
                open.pending
                    .insert((pending.account_id, pending.version), ());
                Ok(())
            })?
            .is_some())
    }

    /// Notes that a journaled result reached the database; an empty journal is truncated.
    pub fn done(&self, account_id: i64, version: i64) -> std::io::Result<()> {
        self.with_open(|open| {
            open.pending.remove(&(account_id, version));
            if open.pending.is_empty() {
                open.file.set_len(0)?;
            } else {
                let line = serde_json::to_string(&Line::Done {
                    account_id,
                    version,
                })?;
                writeln!(open.file, "{line}")?;
            }
            open.file.sync_all()
        })?;
        Ok(())
    }

    /// Results journaled and not stored yet by this process.
    pub fn pending(&self) -> usize {
        self.open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .as_ref()
            .map_or(0, |open| open.pending.len())
    }
}

/// A journal file left behind by a process of `deployment` that is gone, locked for the
/// caller until it is dropped or [`Leftover::finish`]ed.
pub struct Leftover {
    pub path: PathBuf,
    file: File,
    /// The results in it that were never marked done.
    pub pending: Vec<PendingTokens>,
}

impl Leftover {
    /// Deletes the file once every result in it is handled.
    pub fn finish(self) -> std::io::Result<()> {
        std::fs::remove_file(&self.path)?;
        sync_dir(&self.path);
        drop(self.file);
        Ok(())
    }
}

/// The journal files in `dir` of dead processes of `deployment`. Files of live
/// processes (locked) are skipped; a torn last line (a crash mid-write) is ignored.
pub(crate) fn leftovers(dir: &Path, deployment: &str) -> std::io::Result<Vec<Leftover>> {
    let prefix = format!("{PREFIX}{deployment}-");
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.starts_with(&prefix) || !name.ends_with(".jsonl") {
            continue;
        }
        let path = entry.path();
        let file = OpenOptions::new().read(true).write(true).open(&path)?;
        if file.try_lock().is_err() {
            continue; // Its process is alive and will store these itself.
        }
        let mut pending: BTreeMap<(i64, i64), PendingTokens> = BTreeMap::new();
        for line in BufReader::new(&file).lines() {
            let line = line?;
            match serde_json::from_str::<Line>(&line) {
                Ok(Line::Pending(p)) => {
                    pending.insert((p.account_id, p.version), p);
                }
                Ok(Line::Done {
                    account_id,
                    version,
                }) => {
                    pending.remove(&(account_id, version));
                }
                Err(err) => {
                    tracing::warn!(path = %path.display(), error = %err, "skipping a torn journal line");
                }
            }
        }
        found.push(Leftover {
            path,
            file,
            pending: pending.into_values().collect(),
        });
    }
    Ok(found)
}

#[cfg(unix)]
fn restrict(file: &File) {
    use std::os::unix::fs::PermissionsExt;
    let _ = file.set_permissions(std::fs::Permissions::from_mode(0o600));
}

#[cfg(not(unix))]
fn restrict(_file: &File) {}

/// Makes a created or removed directory entry durable.
fn sync_dir(path: &Path) {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && let Ok(dir) = File::open(dir)
    {
        let _ = dir.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(account_id: i64, version: i64) -> PendingTokens {
        let now = Utc::now();
        PendingTokens {
            tenant_id: 1,
            account_id,
            platform: entity::enums::Platform::TikTok,
            version,
            key_id: "k1".into(),
            access_enc: "tw1.a".into(),
            refresh_enc: Some("tw1.r".into()),
            expires_at: now,
            refresh_expires_at: None,
            issued_at: now,
            scopes: vec!["user.info.basic".into()],
            received_at: now,
        }
    }

    #[test]
    fn only_dead_processes_files_of_the_same_deployment_are_replayed() {
        let dir = tempfile::tempdir().expect("dir");
        let live = Journal::in_dir(dir.path(), "dep", "live");
        assert!(live.append(&pending(1, 0)).expect("append"));
        {
            let dead = Journal::in_dir(dir.path(), "dep", "dead");
            dead.append(&pending(2, 0)).expect("append");
            dead.append(&pending(3, 4)).expect("append");
            dead.done(2, 0).expect("done");
            let other = Journal::in_dir(dir.path(), "other", "x");
            other.append(&pending(9, 0)).expect("append");
        }
        // A torn line from a crash mid-write is skipped.
        let dead_path = dir.path().join(format!("{PREFIX}dep-dead.jsonl"));
        let mut file = OpenOptions::new()
            .append(true)
            .open(&dead_path)
            .expect("open");
        write!(file, "{{\"op\":\"pending\",\"tenant").expect("write");
        drop(file);

        let found = leftovers(dir.path(), "dep").expect("leftovers");
        assert_eq!(found.len(), 1, "the live process's file is locked");
        let left: Vec<(i64, i64)> = found[0]
            .pending
            .iter()
            .map(|p| (p.account_id, p.version))
            .collect();
        assert_eq!(left, vec![(3, 4)]);
        found
            .into_iter()
            .next()
            .expect("one")
            .finish()
            .expect("finish");
        assert!(!dead_path.exists());
        assert!(leftovers(dir.path(), "dep").expect("again").is_empty());
        assert_eq!(live.pending(), 1);
        live.done(1, 0).expect("done");
        assert_eq!(live.pending(), 0);
        let len = std::fs::metadata(live.path().expect("path"))
            .expect("meta")
            .len();
        assert_eq!(len, 0, "an empty journal is truncated");
    }

    #[test]
    fn a_disabled_journal_writes_nothing() {
        let journal = Journal::disabled();
        assert!(!journal.append(&pending(1, 0)).expect("append"));
        journal.done(1, 0).expect("done");
    }
}
