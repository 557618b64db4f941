//! Backups: an online, consistent, portable copy of the database in one compressed file
//! with a manifest ([`format`]), its verification and its restore.
//!
//! The copy is a logical dump through sea-orm, the same on both backends, so a backup of a
//! PostgreSQL deployment restores into SQLite (how `verify` checks it: in a scratch file)
//! and an embedded deployment moves to PostgreSQL by restoring its backup there. Consistency:
//! on SQLite the dump reads a `VACUUM INTO` snapshot taken in one statement; on PostgreSQL
//! it reads inside one `REPEATABLE READ, READ ONLY` transaction (one snapshot for every
//! table). Writers are never blocked.
//!
//! A restore loads the file into the target inside one transaction, then checks the checksum,
//! the row counts and that the configured keys decrypt every ciphertext, and commits only
//! then: a damaged file or the wrong keys leave the target as it was.
//!
//! May call: `tokens::vault`, `ops::settings`, `events`, `db`.

pub mod format;
/// The scheduled backups' outcome and their events.
pub mod status;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use chrono::Utc;
use entity::{oauth_state, oauth_token, user, webhook};
use migration::MigratorTrait;
use sea_orm::{
    AccessMode, ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait,
    IdenStatic, IsolationLevel, Iterable, ModelTrait, PrimaryKeyToColumn, PrimaryKeyTrait,
    QueryFilter, QueryOrder, QuerySelect, Statement, TransactionTrait, Value,
    sea_query::{Alias, Expr, Query},
};
use serde::Serialize;

pub use format::{Manifest, read_manifest};

use crate::{
    ops::settings,
    tokens::vault::{Aad, KeyRing, TokenKind},
};
use format::{DataLine, DataReader, DataWriter, TableHeader};

/// Why a backup, a verification or a restore failed. The messages name files, tables and
/// key ids, never secrets.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The file is damaged, truncated or not a backup.
    #[error("the backup is damaged: {0}")]
    Corrupt(String),
    /// Made by a version whose format or schema this one cannot load.
    #[error("{0}")]
    Incompatible(String),
    /// The restore target holds data and `force` was not given.
    #[error(
        "the target database is not empty (rows in {0}); restore with --force to replace its contents"
    )]
    NotEmpty(String),
    /// The configured keys cannot decrypt the backup.
    #[error("{0}")]
    Keys(String),
    /// Reading or writing a file failed.
    #[error("{0}")]
    Io(String),
    #[error("database error: {0}")]
    Db(#[from] DbErr),
    #[error("{0}")]
    Internal(String),
}

impl BackupError {
    fn io(path: &Path, err: std::io::Error) -> Self {
        BackupError::Io(format!("{}: {err}", path.display()))
    }
}

/// Rows read per query while dumping.
const PAGE: u64 = 1000;
/// Bound values per INSERT while restoring (below SQLite's and PostgreSQL's limits).
const VALUES_PER_INSERT: usize = 20_000;

/// A table the backup holds.
struct TableInfo {
    name: &'static str,
    columns: Vec<&'static str>,
    /// An auto-increment `id`, whose PostgreSQL sequence is moved past the restored rows.
    serial_pk: Option<&'static str>,
}

fn info<E: EntityTrait>() -> TableInfo {
    let pk = E::PrimaryKey::iter()
        .next()
        .map(|k| k.into_column().as_str());
    TableInfo {
        name: E::default().table_name(),
        columns: E::Column::iter().map(|c| c.as_str()).collect(),
        serial_pk: pk.filter(|_| <E::PrimaryKey as PrimaryKeyTrait>::auto_increment()),
    }
}

/// Lists every table once, parents before children: the dump order, the restore order,
/// and (reversed) the order `--force` empties a target in. A table missing here is caught
/// by the `every_table_is_backed_up` test.
macro_rules! tables {
    ($($entity:ident),* $(,)?) => {
        fn tables() -> Vec<TableInfo> {
            vec![$(info::<entity::$entity::Entity>()),*]
        }

        async fn dump_tables<C: ConnectionTrait>(db: &C, dump: &mut Dump) -> Result<(), BackupError> {
            $(dump_table::<entity::$entity::Entity, C>(db, dump).await?;)*
            Ok(())
        }
    };
}

tables!(
    tenant,
    api_key,
    user,
    user_recovery_code,
    user_session,
    sign_in_throttle,
    social_account,
    oauth_token,
    oauth_state,
    refresh_attempt,
    token_read,
    provider_call,
    token_event,
    notification,
    webhook,
    webhook_delivery,
    audit_log,
    setting,
);

/// The names of every table a backup holds, in restore order.
pub(crate) fn table_names() -> Vec<&'static str> {
    tables().into_iter().map(|t| t.name).collect()
}

/// The last migration this binary knows: the schema version it writes and can restore.
pub fn schema_version() -> String {
    migration::Migrator::migrations()
        .last()
        .map(|m| m.name().to_owned())
        .unwrap_or_default()
}

/// The last migration applied to a database.
async fn applied_schema_version(db: &impl ConnectionTrait) -> Result<String, BackupError> {
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT version FROM seaql_migrations ORDER BY version DESC LIMIT 1",
        ))
        .await?
        .ok_or_else(|| BackupError::Internal("the database has no migrations applied".into()))?;
    Ok(row.try_get::<String>("", "version")?)
}

struct Dump {
    out: DataWriter,
    tables: BTreeMap<String, u64>,
    key_ids: BTreeSet<String>,
}

/// Dumps one table in primary-key order, a page at a time.
async fn dump_table<E, C>(db: &C, dump: &mut Dump) -> Result<(), BackupError>
where
    E: EntityTrait,
    C: ConnectionTrait,
{
    let table = E::default().table_name();
    let columns: Vec<E::Column> = E::Column::iter().collect();
    let pk = E::PrimaryKey::iter()
        .next()
        .ok_or_else(|| BackupError::Internal(format!("{table} has no primary key")))?
        .into_column();
    // Vault ciphertexts live in `*_enc` columns; the key ids they name go to the manifest.
    let encrypted: Vec<bool> = columns
        .iter()
        .map(|c| c.as_str().ends_with("_enc"))
        .collect();
    let mut types: Option<Vec<&'static str>> = None;
    let mut last: Option<Value> = None;
    let mut count = 0u64;
    loop {
        let mut select = E::find().order_by_asc(pk).limit(PAGE);
        if let Some(last) = last.take() {
            select = select.filter(pk.gt(last));
        }
        let rows = select.all(db).await?;
        if types.is_none() {
            let tags = match rows.first() {
                Some(row) => columns
                    .iter()
                    .map(|c| format::tag(&row.get(*c)))
                    .collect::<Result<Vec<_>, _>>()?,
                None => Vec::new(),
            };
            dump.out.line(&TableHeader {
                table: table.to_owned(),
                columns: columns.iter().map(|c| c.as_str().to_owned()).collect(),
                types: tags.iter().map(|t| (*t).to_owned()).collect(),
            })?;
            types = Some(tags);
        }
        let tags = types.as_deref().unwrap_or_default();
        for row in &rows {
            let mut values = Vec::with_capacity(columns.len());
            for (i, column) in columns.iter().enumerate() {
                let value = row.get(*column);
                if format::tag(&value)? != tags[i] {
                    return Err(BackupError::Internal(format!(
                        "{table}.{} changed type between rows",
                        column.as_str()
                    )));
                }
                if encrypted[i]
                    && let Value::String(Some(text)) = &value
                    && let Some(id) = KeyRing::key_id_of(text)
                {
                    dump.key_ids.insert(id.to_owned());
                }
                values.push(format::to_json(&value));
            }
            dump.out.line(&values)?;
        }
        count += rows.len() as u64;
        if (rows.len() as u64) < PAGE {
            break;
        }
        last = rows.last().map(|row| row.get(pk));
    }
    dump.tables.insert(table.to_owned(), count);
    Ok(())
}

/// Removes temporary files when dropped (success or not).
struct TempFiles(Vec<PathBuf>);

impl Drop for TempFiles {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn suffix() -> String {
    crate::providers::new_state()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(10)
        .collect()
}

/// A path next to `path` (same directory, so renames stay on one filesystem).
fn sibling(path: &Path, what: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "backup".into());
    path.with_file_name(format!(".{name}.{}.{what}", suffix()))
}

/// What `create` wrote.
#[derive(Clone, Debug)]
pub struct Created {
    pub path: PathBuf,
    pub manifest: Manifest,
    /// Size of the file on disk.
    pub file_bytes: u64,
}

/// Writes a backup of the live database to `to` (replacing it atomically: the file appears
/// complete or not at all). Safe while the server runs and writes.
pub async fn create(db: &DatabaseConnection, to: &Path) -> Result<Created, BackupError> {
    let mut temp = TempFiles(Vec::new());
    let data_path = sibling(to, "data");
    temp.0.push(data_path.clone());
    let mut dump = Dump {
        out: DataWriter::create(&data_path)?,
        tables: BTreeMap::new(),
        key_ids: BTreeSet::new(),
    };
    let backend = db.get_database_backend();
    let (schema_version, source) = match backend {
        DbBackend::Sqlite => {
            // One statement copies a consistent snapshot; the dump then reads the copy.
            let snapshot = sibling(to, "snapshot.db");
            temp.0.push(snapshot.clone());
            let quoted = snapshot.to_string_lossy().replace('\'', "''");
            db.execute_unprepared(&format!("VACUUM INTO '{quoted}'"))
                .await?;
            let copy =
                sea_orm::Database::connect(format!("sqlite://{}?mode=ro", snapshot.display()))
                    .await?;
            let version = applied_schema_version(&copy).await;
            let dumped = match version {
                Ok(_) => dump_with_canary(&copy, &mut dump).await,
                Err(_) => Ok(()),
            };
            copy.close().await?;
            dumped?;
            (version?, "sqlite")
        }
        _ => {
            let txn = db
                .begin_with_config(
                    Some(IsolationLevel::RepeatableRead),
                    Some(AccessMode::ReadOnly),
                )
                .await?;
            let version = applied_schema_version(&txn).await?;
            dump_with_canary(&txn, &mut dump).await?;
            txn.commit().await?;
            (version, "postgres")
        }
    };
    let Dump {
        out,
        tables,
        key_ids,
    } = dump;
    let (data_sha256, data_bytes) = out.finish()?;
    let manifest = Manifest {
        format: format::FORMAT.into(),
        format_version: format::FORMAT_VERSION,
        tokenwarden_version: env!("CARGO_PKG_VERSION").into(),
        schema_version,
        created_at: Utc::now(),
        source: source.into(),
        tables,
        key_ids: key_ids.into_iter().collect(),
        data_sha256,
        data_bytes,
        compression: "gzip".into(),
    };
    let partial = sibling(to, "partial");
    temp.0.push(partial.clone());
    let file_bytes = assemble(&manifest, &data_path, &partial)?;
    std::fs::rename(&partial, to).map_err(|e| BackupError::io(to, e))?;
    if let Some(dir) = to.parent().filter(|d| !d.as_os_str().is_empty())
        && let Ok(dir) = std::fs::File::open(dir)
    {
        let _ = dir.sync_all();
    }
    Ok(Created {
        path: to.to_owned(),
        manifest,
        file_bytes,
    })
}

/// Dumps every table, and notes the canary's key.
async fn dump_with_canary<C: ConnectionTrait>(db: &C, dump: &mut Dump) -> Result<(), BackupError> {
    dump_tables(db, dump).await?;
    if let Some(canary) = settings::get(db, settings::CANARY)
        .await
        .map_err(|e| BackupError::Internal(e.to_string()))?
        && let Some(id) = KeyRing::key_id_of(&canary)
    {
        dump.key_ids.insert(id.to_owned());
    }
    Ok(())
}

/// Writes the manifest line and the compressed data into `partial`, synced.
fn assemble(manifest: &Manifest, data: &Path, partial: &Path) -> Result<u64, BackupError> {
    use std::io::Write as _;
    let mut line = serde_json::to_vec(manifest)
        .map_err(|e| BackupError::Internal(format!("encoding the manifest: {e}")))?;
    line.push(b'\n');
    let mut out = std::fs::File::create(partial).map_err(|e| BackupError::io(partial, e))?;
    out.write_all(&line)
        .map_err(|e| BackupError::io(partial, e))?;
    let mut input = std::fs::File::open(data).map_err(|e| BackupError::io(data, e))?;
    let copied = std::io::copy(&mut input, &mut out).map_err(|e| BackupError::io(partial, e))?;
    out.sync_all().map_err(|e| BackupError::io(partial, e))?;
    Ok(line.len() as u64 + copied)
}

/// What the configured keys make of a database's ciphertexts (never their contents).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Decryption {
    /// Access and refresh token ciphertexts.
    pub tokens: u64,
    pub tokens_decrypted: u64,
    /// Other ciphertexts: webhook signing secrets, TOTP secrets, PKCE verifiers.
    pub secrets: u64,
    pub secrets_decrypted: u64,
    /// The canary decrypts (None when the database has none).
    pub canary: Option<bool>,
    /// Ciphertexts that did not decrypt, by the key id they name.
    pub failed_by_key: BTreeMap<String, u64>,
}

impl Decryption {
    /// Every ciphertext decrypts.
    fn all_decrypt(&self) -> bool {
        self.tokens == self.tokens_decrypted
            && self.secrets == self.secrets_decrypted
            && self.canary != Some(false)
    }

    fn check(&mut self, vault: &KeyRing, ciphertext: &str, aad: Aad, token: bool) {
        let ok = vault.decrypt(ciphertext, &aad).is_ok();
        let (all, decrypted) = if token {
            (&mut self.tokens, &mut self.tokens_decrypted)
        } else {
            (&mut self.secrets, &mut self.secrets_decrypted)
        };
        *all += 1;
        if ok {
            *decrypted += 1;
        } else {
            let key = KeyRing::key_id_of(ciphertext).unwrap_or("(unreadable)");
            *self.failed_by_key.entry(key.to_owned()).or_default() += 1;
        }
    }
}

/// Decrypts every ciphertext of a database with `vault` (a page at a time) and counts.
async fn check_decryption(
    db: &impl ConnectionTrait,
    vault: &KeyRing,
) -> Result<Decryption, BackupError> {
    let mut report = Decryption::default();
    let mut after = 0i64;
    loop {
        let rows = oauth_token::Entity::find()
            .filter(oauth_token::Column::Id.gt(after))
            .order_by_asc(oauth_token::Column::Id)
            .limit(PAGE)
            .all(db)
            .await?;
        for row in &rows {
            let aad = |kind| Aad::new(row.tenant_id, row.account_id, kind);
            report.check(vault, &row.access_token_enc, aad(TokenKind::Access), true);
            if let Some(refresh) = &row.refresh_token_enc {
                report.check(vault, refresh, aad(TokenKind::Refresh), true);
            }
        }
        match rows.last() {
            Some(row) if rows.len() as u64 == PAGE => after = row.id,
            _ => break,
        }
    }
    let mut after = 0i64;
    loop {
        let rows = webhook::Entity::find()
            .filter(webhook::Column::Id.gt(after))
            .order_by_asc(webhook::Column::Id)
            .limit(PAGE)
            .all(db)
            .await?;
        for row in &rows {
            let aad = Aad::new(row.tenant_id, row.id, TokenKind::WebhookSecret);
            report.check(vault, &row.secret_enc, aad, false);
        }
        match rows.last() {
            Some(row) if rows.len() as u64 == PAGE => after = row.id,
            _ => break,
        }
    }
    let mut after = 0i64;
    loop {
        let rows = user::Entity::find()
            .filter(user::Column::Id.gt(after))
            .order_by_asc(user::Column::Id)
            .limit(PAGE)
            .all(db)
            .await?;
        for row in &rows {
            let aad = Aad::new(row.tenant_id, row.id, TokenKind::TotpSecret);
            report.check(vault, &row.totp_secret_enc, aad, false);
        }
        match rows.last() {
            Some(row) if rows.len() as u64 == PAGE => after = row.id,
            _ => break,
        }
    }
    let mut after = 0i64;
    loop {
        let rows = oauth_state::Entity::find()
            .filter(oauth_state::Column::Id.gt(after))
            .filter(oauth_state::Column::PkceVerifierEnc.is_not_null())
            .order_by_asc(oauth_state::Column::Id)
            .limit(PAGE)
            .all(db)
            .await?;
        for row in &rows {
            if let Some(verifier) = &row.pkce_verifier_enc {
                let aad = Aad::new(row.tenant_id, 0, TokenKind::PkceVerifier);
                report.check(vault, verifier, aad, false);
            }
        }
        match rows.last() {
            Some(row) if rows.len() as u64 == PAGE => after = row.id,
            _ => break,
        }
    }
    if let Some(canary) = settings::get(db, settings::CANARY)
        .await
        .map_err(|e| BackupError::Internal(e.to_string()))?
    {
        let ok = vault.verify_canary(&canary).is_ok();
        if !ok {
            let key = KeyRing::key_id_of(&canary).unwrap_or("(unreadable)");
            *report.failed_by_key.entry(key.to_owned()).or_default() += 1;
        }
        report.canary = Some(ok);
    }
    Ok(report)
}

/// The key ids a backup needs that `vault` does not have.
fn missing_keys(manifest: &Manifest, vault: &KeyRing) -> Vec<String> {
    manifest
        .key_ids
        .iter()
        .filter(|id| !vault.contains(id))
        .cloned()
        .collect()
}

/// Tables of `db` that hold rows.
async fn non_empty_tables(db: &impl ConnectionTrait) -> Result<Vec<&'static str>, BackupError> {
    let mut found = Vec::new();
    for table in tables() {
        let row = db
            .query_one_raw(Statement::from_string(
                db.get_database_backend(),
                format!("SELECT 1 AS present FROM \"{}\" LIMIT 1", table.name),
            ))
            .await?;
        if row.is_some() {
            found.push(table.name);
        }
    }
    Ok(found)
}

/// Loads the backup into `db` (one transaction, already begun by the caller), checking the
/// checksum and the row counts. Returns the manifest.
async fn load(db: &impl ConnectionTrait, path: &Path) -> Result<Manifest, BackupError> {
    let (manifest, mut reader) = DataReader::open(path)?;
    let ours = schema_version();
    if manifest.schema_version != ours {
        return Err(BackupError::Incompatible(format!(
            "the backup has schema version {} (tokenwarden {}), this binary {ours}: restore it \
             with the tokenwarden version that made it, then start this version to migrate",
            manifest.schema_version, manifest.tokenwarden_version
        )));
    }
    let known = tables();
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut current: Option<(&TableInfo, TableHeader)> = None;
    let mut batch: Vec<Vec<Value>> = Vec::new();
    loop {
        let line = reader.next()?;
        let flush = matches!(line, None | Some(DataLine::Header(_)))
            || current
                .as_ref()
                .is_some_and(|(_, h)| (batch.len() + 1) * h.columns.len() > VALUES_PER_INSERT);
        if flush && let Some((_, header)) = &current {
            insert(db, header, std::mem::take(&mut batch)).await?;
        }
        match line {
            None => break,
            Some(DataLine::Header(header)) => {
                let table = known
                    .iter()
                    .find(|t| t.name == header.table)
                    .ok_or_else(|| {
                        BackupError::Incompatible(format!(
                            "the backup holds a table this version does not know: {}",
                            header.table
                        ))
                    })?;
                let mut theirs: Vec<&str> = header.columns.iter().map(String::as_str).collect();
                let mut mine = table.columns.clone();
                theirs.sort_unstable();
                mine.sort_unstable();
                if theirs != mine {
                    return Err(BackupError::Incompatible(format!(
                        "the columns of {} differ from this version's",
                        table.name
                    )));
                }
                if counts.insert(header.table.clone(), 0).is_some() {
                    return Err(BackupError::Corrupt(format!(
                        "{} appears twice",
                        header.table
                    )));
                }
                current = Some((table, header));
            }
            Some(DataLine::Row(values)) => {
                let Some((_, header)) = &current else {
                    return Err(BackupError::Corrupt("rows before any table header".into()));
                };
                if values.len() != header.columns.len() || header.types.len() != values.len() {
                    return Err(BackupError::Corrupt(format!(
                        "a row of {} has the wrong number of values",
                        header.table
                    )));
                }
                let row = values
                    .into_iter()
                    .zip(&header.types)
                    .map(|(json, tag)| format::from_json(tag, json))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| {
                        BackupError::Corrupt(format!("a value of {} is damaged: {e}", header.table))
                    })?;
                batch.push(row);
                if let Some(count) = counts.get_mut(&header.table) {
                    *count += 1;
                }
            }
        }
    }
    let (sha256, bytes) = reader.finish();
    if sha256 != manifest.data_sha256 || bytes != manifest.data_bytes {
        return Err(BackupError::Corrupt(format!(
            "the checksum does not match the manifest (read {bytes} bytes, SHA-256 {sha256}; \
             the manifest says {} bytes, {})",
            manifest.data_bytes, manifest.data_sha256
        )));
    }
    if counts != manifest.tables {
        return Err(BackupError::Corrupt(
            "the row counts do not match the manifest".into(),
        ));
    }
    if db.get_database_backend() == DbBackend::Postgres {
        for table in &known {
            if let Some(pk) = table.serial_pk {
                db.execute_unprepared(&format!(
                    "SELECT setval(pg_get_serial_sequence('\"{t}\"', '{pk}'), \
                     COALESCE((SELECT MAX(\"{pk}\") FROM \"{t}\"), 0) + 1, false)",
                    t = table.name
                ))
                .await?;
            }
        }
    }
    Ok(manifest)
}

async fn insert(
    db: &impl ConnectionTrait,
    header: &TableHeader,
    rows: Vec<Vec<Value>>,
) -> Result<(), BackupError> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut insert = Query::insert();
    insert
        .into_table(Alias::new(header.table.as_str()))
        .columns(header.columns.iter().map(|c| Alias::new(c.as_str())));
    for row in rows {
        insert
            .values(row.into_iter().map(Expr::val))
            .map_err(|e| BackupError::Internal(format!("building an insert: {e}")))?;
    }
    db.execute(&insert).await?;
    Ok(())
}

/// What a restore did.
#[derive(Clone, Debug)]
pub struct Restored {
    pub manifest: Manifest,
    pub decryption: Decryption,
    /// Tables that held rows before (emptied because of `force`).
    pub replaced: Vec<&'static str>,
}

/// Restores a backup into `db` (migrated to this binary's schema). Refuses a target with
/// rows unless `force` (which empties it first), and refuses a backup the configured keys
/// cannot fully decrypt: the restored database must serve at once with these keys. Nothing
/// changes unless everything checks out.
pub async fn restore(
    db: &DatabaseConnection,
    path: &Path,
    vault: &KeyRing,
    force: bool,
) -> Result<Restored, BackupError> {
    let manifest = read_manifest(path)?;
    let missing = missing_keys(&manifest, vault);
    if !missing.is_empty() {
        return Err(BackupError::Keys(format!(
            "the backup needs encryption keys {} that are not configured (configured: {}); \
             set TOKENWARDEN_KEYS or TOKENWARDEN_KEY_FILE to the keys backed up with it",
            missing.join(", "),
            vault.key_ids().join(", ")
        )));
    }
    let replaced = non_empty_tables(db).await?;
    if !replaced.is_empty() && !force {
        return Err(BackupError::NotEmpty(replaced.join(", ")));
    }
    let txn = crate::db::begin(db).await?;
    for table in tables().iter().rev() {
        txn.execute_unprepared(&format!("DELETE FROM \"{}\"", table.name))
            .await?;
    }
    let manifest = load(&txn, path).await?;
    let decryption = check_decryption(&txn, vault).await?;
    if !decryption.all_decrypt() {
        // Dropping the transaction rolls it back.
        return Err(BackupError::Keys(format!(
            "the configured keys do not decrypt every ciphertext of the backup ({}); \
             nothing was restored",
            describe_failures(&decryption)
        )));
    }
    txn.commit().await?;
    Ok(Restored {
        manifest,
        decryption,
        replaced,
    })
}

fn describe_failures(d: &Decryption) -> String {
    d.failed_by_key
        .iter()
        .map(|(key, n)| format!("{n} under key {key}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What `verify` found.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verification {
    pub manifest: Manifest,
    /// The data matched the checksum and the row counts and loaded into a scratch database.
    pub loaded: bool,
    /// SQLite's `integrity_check` and `foreign_key_check` of the scratch copy passed.
    pub integrity: bool,
    pub decryption: Decryption,
    /// Key ids the backup names that are not configured.
    pub missing_keys: Vec<String>,
}

impl Verification {
    /// Whether the backup restores and serves with the configured keys.
    pub fn ok(&self) -> bool {
        self.loaded
            && self.integrity
            && self.missing_keys.is_empty()
            && self.decryption.all_decrypt()
    }

    /// Why it is not ok, for logs and events (never secrets).
    pub fn problem(&self) -> Option<String> {
        if self.ok() {
            return None;
        }
        let mut parts = Vec::new();
        if !self.integrity {
            parts.push("the restored copy fails SQLite's integrity check".to_owned());
        }
        if !self.missing_keys.is_empty() {
            parts.push(format!(
                "keys not configured: {}",
                self.missing_keys.join(", ")
            ));
        }
        if !self.decryption.all_decrypt() {
            parts.push(format!(
                "ciphertexts that do not decrypt: {}",
                describe_failures(&self.decryption)
            ));
        }
        Some(parts.join("; "))
    }
}

/// Restores a backup into a scratch SQLite file in `scratch_dir` (removed afterwards),
/// checks its integrity and decrypts every ciphertext with `vault`. Errors on a damaged or
/// incompatible file; key problems are in the result (`ok()` is false).
pub async fn verify(
    path: &Path,
    vault: &KeyRing,
    scratch_dir: &Path,
) -> Result<Verification, BackupError> {
    let scratch = scratch_dir.join(format!(".tokenwarden-verify-{}.db", suffix()));
    let _cleanup = TempFiles(vec![
        scratch.clone(),
        PathBuf::from(format!("{}-wal", scratch.display())),
        PathBuf::from(format!("{}-shm", scratch.display())),
    ]);
    let db =
        crate::db::connect_and_migrate(&format!("sqlite://{}?mode=rwc", scratch.display())).await?;
    let result = verify_in(&db, path, vault).await;
    db.close().await?;
    result
}

async fn verify_in(
    db: &DatabaseConnection,
    path: &Path,
    vault: &KeyRing,
) -> Result<Verification, BackupError> {
    let txn = crate::db::begin(db).await?;
    let manifest = load(&txn, path).await?;
    txn.commit().await?;
    let mut integrity = true;
    for pragma in ["PRAGMA integrity_check", "PRAGMA foreign_key_check"] {
        let rows = db
            .query_all_raw(Statement::from_string(DbBackend::Sqlite, pragma))
            .await?;
        let fine = match pragma {
            "PRAGMA integrity_check" => {
                rows.len() == 1
                    && rows[0].try_get_by_index::<String>(0).ok().as_deref() == Some("ok")
            }
            _ => rows.is_empty(),
        };
        integrity &= fine;
    }
    let decryption = check_decryption(db, vault).await?;
    Ok(Verification {
        missing_keys: missing_keys(&manifest, vault),
        manifest,
        loaded: true,
        integrity,
        decryption,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_table_is_backed_up() {
        let db = crate::db::connect_and_migrate("sqlite::memory:")
            .await
            .expect("migrates");
        let rows = db
            .query_all_raw(Statement::from_string(
                DbBackend::Sqlite,
                "SELECT name FROM sqlite_master WHERE type = 'table' \
                 AND name NOT LIKE 'sqlite_%' AND name != 'seaql_migrations' ORDER BY name",
            ))
            .await
            .expect("lists tables");
        let mut schema: Vec<String> = rows
            .iter()
            .map(|r| r.try_get_by_index::<String>(0).expect("name"))
            .collect();
        let mut backed_up: Vec<String> = table_names().into_iter().map(str::to_owned).collect();
        schema.sort();
        backed_up.sort();
        assert_eq!(
            backed_up, schema,
            "add new tables to the tables! list of ops::backup (parents first)"
        );
    }
}
