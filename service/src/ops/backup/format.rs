//! The backup file: one line of JSON (the manifest), then a gzip stream of JSON lines (the
//! data). The data holds, table after table, a header object naming the columns and their
//! value types, then one JSON array per row. The manifest's SHA-256 covers the uncompressed
//! data, so a damaged file is found even where gzip's own CRC would not look.

use std::{
    collections::BTreeMap,
    fs::File,
    io::{self, BufRead, BufReader, BufWriter, Read, Write},
    path::Path,
};

use base64::Engine as _;
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, SecondsFormat, Utc};
use sea_orm::Value;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::BackupError;

/// The `format` field of every manifest.
pub(crate) const FORMAT: &str = "tokenwarden-backup";
/// The version of the layout described in this module.
pub(crate) const FORMAT_VERSION: u32 = 1;
/// The longest accepted line (manifest or row): a hostile file cannot make a reader buffer
/// more than this.
const MAX_LINE: u64 = 64 * 1024 * 1024;
/// The longest accepted manifest line.
const MAX_MANIFEST: u64 = 1024 * 1024;

/// What a backup holds, readable without decompressing it (`head -1 FILE`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    pub format_version: u32,
    /// The tokenwarden version that wrote it.
    pub tokenwarden_version: String,
    /// The last migration applied to the database it was taken from.
    pub schema_version: String,
    pub created_at: DateTime<Utc>,
    /// `sqlite` or `postgres`: where it was taken from (it restores into either).
    pub source: String,
    /// Rows per table.
    pub tables: BTreeMap<String, u64>,
    /// The encryption key ids its ciphertexts name: restoring needs every one of them.
    pub key_ids: Vec<String>,
    /// Hex SHA-256 of the uncompressed data.
    pub data_sha256: String,
    /// Length of the uncompressed data.
    pub data_bytes: u64,
    /// Always `gzip`.
    pub compression: String,
}

impl Manifest {
    /// Every row of every table.
    pub fn total_rows(&self) -> u64 {
        self.tables.values().sum()
    }
}

/// The header line that starts each table's rows.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct TableHeader {
    pub table: String,
    pub columns: Vec<String>,
    /// The value type of each column ([`tag`]); empty when the table has no rows.
    pub types: Vec<String>,
}

/// Writes the data stream, hashing what it writes.
pub(crate) struct DataWriter {
    out: flate2::write::GzEncoder<BufWriter<File>>,
    hash: ring::digest::Context,
    bytes: u64,
    line: Vec<u8>,
}

impl DataWriter {
    pub fn create(path: &Path) -> Result<Self, BackupError> {
        let file = File::create(path).map_err(|e| BackupError::io(path, e))?;
        Ok(Self {
            out: flate2::write::GzEncoder::new(BufWriter::new(file), flate2::Compression::new(6)),
            hash: ring::digest::Context::new(&ring::digest::SHA256),
            bytes: 0,
            line: Vec::with_capacity(4096),
        })
    }

    pub fn line<T: Serialize>(&mut self, value: &T) -> Result<(), BackupError> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, value)
            .map_err(|e| BackupError::Internal(format!("encoding a row: {e}")))?;
        self.line.push(b'\n');
        self.hash.update(&self.line);
        self.bytes += self.line.len() as u64;
        self.out
            .write_all(&self.line)
            .map_err(|e| BackupError::Io(format!("writing the backup: {e}")))
    }

    /// Finishes the gzip stream and syncs the file; returns (hex SHA-256, bytes).
    pub fn finish(self) -> Result<(String, u64), BackupError> {
        let io = |e: io::Error| BackupError::Io(format!("writing the backup: {e}"));
        let buffered = self.out.finish().map_err(io)?;
        let file = buffered.into_inner().map_err(|e| io(e.into_error()))?;
        file.sync_all().map_err(io)?;
        Ok((hex::encode(self.hash.finish().as_ref()), self.bytes))
    }
}

/// One line of the data stream.
pub(crate) enum DataLine {
    Header(TableHeader),
    Row(Vec<Json>),
}

/// Reads a backup file: the manifest at once, then the data line by line, hashing it.
pub(crate) struct DataReader {
    data: BufReader<flate2::bufread::GzDecoder<BufReader<File>>>,
    hash: ring::digest::Context,
    bytes: u64,
    buf: Vec<u8>,
}

/// Reads one `\n`-terminated line of at most `max` bytes; false at the end.
fn read_bounded(reader: &mut impl BufRead, buf: &mut Vec<u8>, max: u64) -> io::Result<bool> {
    buf.clear();
    let n = reader.take(max + 1).read_until(b'\n', buf)?;
    if n == 0 {
        return Ok(false);
    }
    if buf.last() != Some(&b'\n') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            if n as u64 > max {
                "line too long"
            } else {
                "unexpected end of file"
            },
        ));
    }
    Ok(true)
}

/// Reads only the manifest of a backup file.
pub fn read_manifest(path: &Path) -> Result<Manifest, BackupError> {
    Ok(DataReader::open(path)?.0)
}

impl DataReader {
    pub fn open(path: &Path) -> Result<(Manifest, Self), BackupError> {
        let file = File::open(path).map_err(|e| BackupError::io(path, e))?;
        let mut reader = BufReader::new(file);
        let mut line = Vec::new();
        let corrupt = |why: String| BackupError::Corrupt(format!("{}: {why}", path.display()));
        match read_bounded(&mut reader, &mut line, MAX_MANIFEST) {
            Ok(true) => {}
            Ok(false) => return Err(corrupt("the file is empty".into())),
            Err(e) => return Err(corrupt(format!("no manifest line ({e})"))),
        }
        let manifest: Manifest = serde_json::from_slice(&line).map_err(|e| {
            corrupt(format!(
                "the first line is not a tokenwarden backup manifest ({e})"
            ))
        })?;
        if manifest.format != FORMAT {
            return Err(corrupt(format!(
                "not a tokenwarden backup (format {:?})",
                manifest.format
            )));
        }
        if manifest.format_version != FORMAT_VERSION || manifest.compression != "gzip" {
            return Err(BackupError::Incompatible(format!(
                "backup format {} ({}) is not supported by this version (format {FORMAT_VERSION}, gzip)",
                manifest.format_version, manifest.compression
            )));
        }
        let data = BufReader::with_capacity(64 * 1024, flate2::bufread::GzDecoder::new(reader));
        Ok((
            manifest,
            Self {
                data,
                hash: ring::digest::Context::new(&ring::digest::SHA256),
                bytes: 0,
                buf: Vec::with_capacity(4096),
            },
        ))
    }

    /// The next line, or None at the end of the data.
    pub fn next(&mut self) -> Result<Option<DataLine>, BackupError> {
        let more = read_bounded(&mut self.data, &mut self.buf, MAX_LINE)
            .map_err(|e| BackupError::Corrupt(format!("the data is damaged ({e})")))?;
        if !more {
            return Ok(None);
        }
        self.hash.update(&self.buf);
        self.bytes += self.buf.len() as u64;
        let json: Json = serde_json::from_slice(&self.buf)
            .map_err(|e| BackupError::Corrupt(format!("a data line is not JSON ({e})")))?;
        match json {
            Json::Array(values) => Ok(Some(DataLine::Row(values))),
            object @ Json::Object(_) => serde_json::from_value(object)
                .map(|h| Some(DataLine::Header(h)))
                .map_err(|e| BackupError::Corrupt(format!("a table header is damaged ({e})"))),
            _ => Err(BackupError::Corrupt("unexpected data line".into())),
        }
    }

    /// The hex SHA-256 and length of everything read.
    pub fn finish(self) -> (String, u64) {
        (hex::encode(self.hash.finish().as_ref()), self.bytes)
    }
}

/// The type tag of a value, stored once per column in the table header.
pub(crate) fn tag(value: &Value) -> Result<&'static str, BackupError> {
    Ok(match value {
        Value::Bool(_) => "bool",
        Value::TinyInt(_) => "i8",
        Value::SmallInt(_) => "i16",
        Value::Int(_) => "i32",
        Value::BigInt(_) => "i64",
        Value::TinyUnsigned(_) => "u8",
        Value::SmallUnsigned(_) => "u16",
        Value::Unsigned(_) => "u32",
        Value::BigUnsigned(_) => "u64",
        Value::Float(_) => "f32",
        Value::Double(_) => "f64",
        Value::String(_) => "string",
        Value::Char(_) => "char",
        Value::Bytes(_) => "bytes",
        Value::Json(_) => "json",
        Value::ChronoDate(_) => "date",
        Value::ChronoTime(_) => "time",
        Value::ChronoDateTime(_) => "datetime",
        Value::ChronoDateTimeUtc(_) => "datetime_utc",
        Value::ChronoDateTimeWithTimeZone(_) => "datetime_tz",
        other => {
            return Err(BackupError::Internal(format!(
                "a column type the backup cannot hold: {other:?}"
            )));
        }
    })
}

const NAIVE_DATETIME: &str = "%Y-%m-%dT%H:%M:%S%.f";
const NAIVE_TIME: &str = "%H:%M:%S%.f";

/// A value as JSON (the type is in the header).
pub(crate) fn to_json(value: &Value) -> Json {
    fn or_null<T>(v: &Option<T>, f: impl FnOnce(&T) -> Json) -> Json {
        v.as_ref().map_or(Json::Null, f)
    }
    match value {
        Value::Bool(v) => or_null(v, |v| Json::from(*v)),
        Value::TinyInt(v) => or_null(v, |v| Json::from(*v)),
        Value::SmallInt(v) => or_null(v, |v| Json::from(*v)),
        Value::Int(v) => or_null(v, |v| Json::from(*v)),
        Value::BigInt(v) => or_null(v, |v| Json::from(*v)),
        Value::TinyUnsigned(v) => or_null(v, |v| Json::from(*v)),
        Value::SmallUnsigned(v) => or_null(v, |v| Json::from(*v)),
        Value::Unsigned(v) => or_null(v, |v| Json::from(*v)),
        Value::BigUnsigned(v) => or_null(v, |v| Json::from(*v)),
        Value::Float(v) => or_null(v, |v| Json::from(*v)),
        Value::Double(v) => or_null(v, |v| Json::from(*v)),
        Value::String(v) => or_null(v, |v| Json::from(v.as_str())),
        Value::Char(v) => or_null(v, |v| Json::from(v.to_string())),
        Value::Bytes(v) => or_null(v, |v| {
            Json::from(base64::engine::general_purpose::STANDARD.encode(v))
        }),
        Value::Json(v) => or_null(v, |v| (**v).clone()),
        Value::ChronoDate(v) => or_null(v, |v| Json::from(v.format("%Y-%m-%d").to_string())),
        Value::ChronoTime(v) => or_null(v, |v| Json::from(v.format(NAIVE_TIME).to_string())),
        Value::ChronoDateTime(v) => {
            or_null(v, |v| Json::from(v.format(NAIVE_DATETIME).to_string()))
        }
        Value::ChronoDateTimeUtc(v) => or_null(v, |v| {
            Json::from(v.to_rfc3339_opts(SecondsFormat::AutoSi, true))
        }),
        Value::ChronoDateTimeWithTimeZone(v) => or_null(v, |v| {
            Json::from(v.to_rfc3339_opts(SecondsFormat::AutoSi, false))
        }),
        // `tag` refused every other type before any row was written.
        _ => Json::Null,
    }
}

/// A JSON value back as a typed database value.
pub(crate) fn from_json(tag: &str, json: Json) -> Result<Value, String> {
    fn int<T: TryFrom<i64>>(json: &Json) -> Result<Option<T>, String> {
        match json {
            Json::Null => Ok(None),
            j => j
                .as_i64()
                .and_then(|v| T::try_from(v).ok())
                .map(Some)
                .ok_or_else(|| format!("{j} is not an integer of this column's size")),
        }
    }
    fn uint<T: TryFrom<u64>>(json: &Json) -> Result<Option<T>, String> {
        match json {
            Json::Null => Ok(None),
            j => j
                .as_u64()
                .and_then(|v| T::try_from(v).ok())
                .map(Some)
                .ok_or_else(|| format!("{j} is not an unsigned integer of this column's size")),
        }
    }
    fn text(json: &Json) -> Result<Option<&str>, String> {
        match json {
            Json::Null => Ok(None),
            Json::String(s) => Ok(Some(s)),
            j => Err(format!("{j} is not a string")),
        }
    }
    fn parsed<T, E: std::fmt::Display>(
        json: &Json,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Result<Option<T>, String> {
        text(json)?
            .map(|s| parse(s).map_err(|e| format!("{s:?}: {e}")))
            .transpose()
    }
    Ok(match tag {
        "bool" => Value::Bool(match &json {
            Json::Null => None,
            j => Some(j.as_bool().ok_or_else(|| format!("{j} is not a boolean"))?),
        }),
        "i8" => Value::TinyInt(int(&json)?),
        "i16" => Value::SmallInt(int(&json)?),
        "i32" => Value::Int(int(&json)?),
        "i64" => Value::BigInt(int(&json)?),
        "u8" => Value::TinyUnsigned(uint(&json)?),
        "u16" => Value::SmallUnsigned(uint(&json)?),
        "u32" => Value::Unsigned(uint(&json)?),
        "u64" => Value::BigUnsigned(uint(&json)?),
        "f32" | "f64" => {
            let v = match &json {
                Json::Null => None,
                j => Some(j.as_f64().ok_or_else(|| format!("{j} is not a number"))?),
            };
            if tag == "f32" {
                Value::Float(v.map(|v| v as f32))
            } else {
                Value::Double(v)
            }
        }
        "string" => Value::String(text(&json)?.map(str::to_owned)),
        "char" => Value::Char(
            text(&json)?
                .map(|s| s.chars().next().ok_or("an empty character"))
                .transpose()?,
        ),
        "bytes" => Value::Bytes(parsed(&json, |s| {
            base64::engine::general_purpose::STANDARD.decode(s)
        })?),
        "json" => Value::Json(match json {
            Json::Null => None,
            j => Some(Box::new(j)),
        }),
        "date" => Value::ChronoDate(parsed(&json, |s| NaiveDate::parse_from_str(s, "%Y-%m-%d"))?),
        "time" => Value::ChronoTime(parsed(&json, |s| NaiveTime::parse_from_str(s, NAIVE_TIME))?),
        "datetime" => Value::ChronoDateTime(parsed(&json, |s| {
            NaiveDateTime::parse_from_str(s, NAIVE_DATETIME)
        })?),
        "datetime_utc" => Value::ChronoDateTimeUtc(parsed(&json, |s| {
            DateTime::parse_from_rfc3339(s).map(|t| t.with_timezone(&Utc))
        })?),
        "datetime_tz" => {
            Value::ChronoDateTimeWithTimeZone(parsed(&json, DateTime::parse_from_rfc3339)?)
        }
        other => return Err(format!("unknown value type {other:?}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_through_json() {
        let now = Utc::now();
        let values = [
            Value::Bool(Some(true)),
            Value::Int(Some(-7)),
            Value::BigInt(Some(i64::MAX)),
            Value::BigInt(None),
            Value::Double(Some(0.25)),
            Value::String(Some("héllo \"x\"\n".into())),
            Value::String(None),
            Value::Bytes(Some(vec![0, 1, 255])),
            Value::Json(Some(Box::new(serde_json::json!({"a": [1, null]})))),
            Value::ChronoDateTimeUtc(Some(now)),
            Value::ChronoDateTimeUtc(None),
            Value::ChronoDate(Some(now.date_naive())),
            Value::ChronoDateTime(Some(now.naive_utc())),
        ];
        for value in values {
            let tag = tag(&value).expect("supported");
            let back = from_json(tag, to_json(&value)).expect("decodes");
            assert_eq!(back, value, "{tag}");
        }
    }

    #[test]
    fn a_value_of_the_wrong_shape_is_refused() {
        assert!(from_json("i32", serde_json::json!(1u64 << 40)).is_err());
        assert!(from_json("datetime_utc", serde_json::json!("yesterday")).is_err());
        assert!(from_json("nonsense", Json::Null).is_err());
    }
}
