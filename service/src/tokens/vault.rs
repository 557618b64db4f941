//! Token vault: AES-256-GCM encryption of OAuth tokens at rest, using `ring`.
//!
//! A [`KeyRing`] holds several 256-bit keys by id, one of them active. Every encryption uses
//! the active key and a fresh random 96-bit nonce, and produces the versioned text format
//! `tw1.<key_id>.<base64url-nopad(nonce || ciphertext || tag)>`, so a ciphertext names the key
//! that can open it and old keys can stay in the ring while rows are re-wrapped
//! ([`KeyRing::rewrap`]) after a rotation.
//!
//! Every ciphertext is bound to its database row through [`Aad`] (tenant, account, token
//! kind): a ciphertext copied into another row fails to decrypt.
//!
//! Each key also yields a MAC key (HKDF-SHA256 of the key bytes, [`KeyRing::mac_sign`]) for
//! the signed links the service hands out (reconnect links), so those are keyed by the same
//! deployment secret, rotate with it, and never share bytes with the encryption itself.
//!
//! Key material never appears in `Debug` output, errors or logs: the ring prints only key ids.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use base64::engine::{DecodePaddingMode, general_purpose::STANDARD};
use ring::aead::{self, AES_256_GCM, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use ring::{hkdf, hmac};
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

/// Version prefix of the ciphertext text format.
pub(crate) const CIPHERTEXT_PREFIX: &str = "tw1";
/// Length in bytes of an AES-256-GCM key.
pub(crate) const KEY_LEN: usize = 32;
/// NIST SP 800-38D: at most 2^32 encryptions with random 96-bit nonces per key.
pub(crate) const MAX_ENCRYPTIONS_PER_KEY: u64 = 1 << 32;
/// Above this many encryptions with one key, a warning asks the operator to rotate.
pub(crate) const ENCRYPTION_WARN_THRESHOLD: u64 = 1 << 31;

/// Length of the GCM authentication tag.
const TAG_LEN: usize = 16;
/// Longest accepted key id.
const MAX_KEY_ID_LEN: usize = 64;
/// Plaintext of the canary ciphertext.
const CANARY_PLAINTEXT: &[u8] = b"tokenwarden-canary-v1";
/// AAD of the canary ciphertext (distinct from every token AAD).
const CANARY_AAD: &[u8] = b"tokenwarden/v1/canary";
/// AAD used by [`KeyRing::self_test`].
#[cfg(test)]
const SELF_TEST_AAD: &[u8] = b"tokenwarden/v1/self-test";

/// HKDF salt and info of the MAC key derived from each encryption key.
const MAC_SALT: &[u8] = b"tokenwarden/v1/mac-salt";
const MAC_INFO: &[u8] = b"tokenwarden/v1/link-mac";

/// Standard base64 that accepts keys with or without `=` padding.
const KEY_B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Errors of the token vault. Messages never contain key material or plaintext and are safe to
/// show to operators.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// The key configuration (env value or key file) is invalid.
    #[error("invalid token-encryption key configuration: {0}")]
    InvalidConfig(String),
    /// The ciphertext names a key id that is not in the ring.
    #[error("ciphertext was encrypted with key id {0:?}, which is not in the key ring")]
    UnknownKey(String),
    /// Authentication failed: wrong key, ciphertext bound to another row, or tampered data.
    #[error("token decryption failed")]
    Decrypt,
    /// The ciphertext is not in the `tw1.<key_id>.<payload>` format.
    #[error("malformed token ciphertext")]
    Format,
    /// The key reached the NIST random-nonce limit; rotate to a new key.
    #[error("key {0:?} reached its encryption limit; rotate to a new key")]
    KeyExhausted(String),
    /// The system random number generator failed.
    #[error("secure random number generator failed")]
    Random,
    /// Encryption failed inside the AEAD implementation.
    #[error("token encryption failed")]
    Encrypt,
    /// Reading or writing the key file failed.
    #[error("key file error: {0}")]
    Io(String),
}

/// Which token of a connection a ciphertext holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenKind {
    /// The access token.
    Access,
    /// The refresh token.
    Refresh,
    /// The PKCE verifier of a pending authorization (account id 0).
    PkceVerifier,
    /// A webhook signing secret (account id = webhook id).
    WebhookSecret,
    /// A dashboard user's TOTP secret (account id = user id).
    TotpSecret,
}

impl TokenKind {
    /// Stable lowercase name used in the AAD.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Access => "access",
            TokenKind::Refresh => "refresh",
            TokenKind::PkceVerifier => "pkce_verifier",
            TokenKind::WebhookSecret => "webhook_secret",
            TokenKind::TotpSecret => "totp_secret",
        }
    }
}

/// Additional authenticated data binding a ciphertext to one row and token kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Aad {
    /// Tenant that owns the connection.
    pub tenant_id: i64,
    /// Connected-account row id.
    pub account_id: i64,
    /// Access or refresh token.
    pub kind: TokenKind,
}

impl Aad {
    /// Builds the AAD for one token of one account.
    pub fn new(tenant_id: i64, account_id: i64, kind: TokenKind) -> Self {
        Self {
            tenant_id,
            account_id,
            kind,
        }
    }

    /// The AAD bytes: `tokenwarden/v1/tenant=<t>/account=<a>/kind=<access|refresh>`.
    fn to_bytes(self) -> Vec<u8> {
        format!(
            "tokenwarden/v1/tenant={}/account={}/kind={}",
            self.tenant_id,
            self.account_id,
            self.kind.as_str()
        )
        .into_bytes()
    }
}

/// One key of the ring with its in-memory encryption counter.
struct KeyEntry {
    key: LessSafeKey,
    /// HMAC-SHA256 key derived from the same bytes (HKDF), for signed links.
    mac: hmac::Key,
    encryptions: AtomicU64,
}

/// A set of AES-256-GCM keys by id, one of them active for new encryptions.
///
/// Cloning is cheap and clones share the encryption counters.
#[derive(Clone)]
pub struct KeyRing {
    keys: BTreeMap<String, Arc<KeyEntry>>,
    active: String,
    rng: SystemRandom,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("active", &self.active)
            .field("keys", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Whether `id` is a valid key id (`[A-Za-z0-9_-]{1,64}`).
fn valid_key_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_KEY_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Validates a key id for configuration purposes.
fn check_key_id(id: &str) -> Result<(), VaultError> {
    if valid_key_id(id) {
        Ok(())
    } else {
        Err(VaultError::InvalidConfig(format!(
            "key id {:?} must be 1-{MAX_KEY_ID_LEN} characters of [A-Za-z0-9_-]",
            truncate_for_message(id)
        )))
    }
}

/// Shortens user-supplied text quoted in error messages.
fn truncate_for_message(s: &str) -> String {
    s.chars().take(MAX_KEY_ID_LEN).collect()
}

/// Decodes a standard-base64 key and builds the `ring` key.
/// The key id named by an `active=<id>` key-file line, or `None` for any other line (a key
/// whose id merely starts with "active", such as `active2025:...`, is a key line).
pub(crate) fn active_line(line: &str) -> Option<&str> {
    line.trim()
        .strip_prefix("active")
        .and_then(|rest| rest.trim_start().strip_prefix('='))
        .map(str::trim)
}

/// Decodes a standard-base64 key into its encryption key and its derived MAC key.
fn decode_key(id: &str, key_b64: &str) -> Result<(LessSafeKey, hmac::Key), VaultError> {
    let bytes = Zeroizing::new(KEY_B64.decode(key_b64.trim()).map_err(|_| {
        VaultError::InvalidConfig(format!("key {id:?} is not valid standard base64"))
    })?);
    if bytes.len() != KEY_LEN {
        return Err(VaultError::InvalidConfig(format!(
            "key {id:?} must decode to {KEY_LEN} bytes, got {}",
            bytes.len()
        )));
    }
    let unbound = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| {
        VaultError::InvalidConfig(format!("key {id:?} was rejected by AES-256-GCM"))
    })?;
    let mac: hmac::Key = hkdf::Salt::new(hkdf::HKDF_SHA256, MAC_SALT)
        .extract(&bytes)
        .expand(&[MAC_INFO], hmac::HMAC_SHA256)
        .map_err(|_| VaultError::InvalidConfig(format!("key {id:?}: MAC derivation failed")))?
        .into();
    Ok((LessSafeKey::new(unbound), mac))
}

/// The MAC input: the purpose, length-prefixed, then the message.
fn mac_input(purpose: &str, message: &[u8]) -> Vec<u8> {
    let mut input = Vec::with_capacity(8 + purpose.len() + message.len());
    input.extend_from_slice(&(purpose.len() as u64).to_be_bytes());
    input.extend_from_slice(purpose.as_bytes());
    input.extend_from_slice(message);
    input
}

/// Splits an `id:base64key` entry.
fn split_entry(entry: &str, position: usize) -> Result<(&str, &str), VaultError> {
    let (id, key) = entry.split_once(':').ok_or_else(|| {
        VaultError::InvalidConfig(format!("entry {position} is not in id:base64key form"))
    })?;
    Ok((id.trim(), key.trim()))
}

impl KeyRing {
    /// Builds a ring from `keys` = comma-separated `id:base64key` pairs (standard base64 of 32
    /// bytes). `active` (`None` or empty) defaults to the last listed id.
    pub fn from_config(keys: &str, active: Option<&str>) -> Result<KeyRing, VaultError> {
        let mut entries = Vec::new();
        for (i, entry) in keys.split(',').map(str::trim).enumerate() {
            if entry.is_empty() {
                continue;
            }
            entries.push(split_entry(entry, i + 1)?);
        }
        Self::from_entries(&entries, active)
    }

    /// Builds a ring from parsed `(id, base64key)` pairs.
    fn from_entries(entries: &[(&str, &str)], active: Option<&str>) -> Result<KeyRing, VaultError> {
        let mut keys = BTreeMap::new();
        let mut last = None;
        for (id, key_b64) in entries {
            check_key_id(id)?;
            if keys.contains_key(*id) {
                return Err(VaultError::InvalidConfig(format!(
                    "duplicate key id {id:?}"
                )));
            }
            let (key, mac) = decode_key(id, key_b64)?;
            keys.insert(
                (*id).to_owned(),
                Arc::new(KeyEntry {
                    key,
                    mac,
                    encryptions: AtomicU64::new(0),
                }),
            );
            last = Some(*id);
        }
        let Some(last) = last else {
            return Err(VaultError::InvalidConfig("no keys configured".to_owned()));
        };
        let active = active
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .unwrap_or(last);
        if !keys.contains_key(active) {
            return Err(VaultError::InvalidConfig(format!(
                "active key id {:?} is not among the configured keys",
                truncate_for_message(active)
            )));
        }
        Ok(KeyRing {
            keys,
            active: active.to_owned(),
            rng: SystemRandom::new(),
        })
    }

    /// Parses the key-file format: one `id:base64key` per line, `#` comments and blank lines
    /// ignored, an optional `active=<id>` line (otherwise the last key is active).
    pub fn parse_key_file(text: &str) -> Result<KeyRing, VaultError> {
        let mut entries = Vec::new();
        let mut active = None;
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(id) = active_line(line) {
                if active.replace(id).is_some() {
                    return Err(VaultError::InvalidConfig(
                        "more than one active= line in key file".to_owned(),
                    ));
                }
                continue;
            }
            entries.push(split_entry(line, i + 1)?);
        }
        Self::from_entries(&entries, active)
    }

    /// Loads the embedded-mode key file, or creates it with one fresh key when it does not
    /// exist. Returns the ring and whether the file was created. New files are created
    /// atomically (`create_new`) with mode 0600 on unix.
    pub fn load_or_create_file(path: &Path) -> Result<(KeyRing, bool), VaultError> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                warn_if_permissive(path);
                Ok((Self::parse_key_file(&text)?, false))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::create_file(path),
            Err(e) => Err(io_error("cannot read", path, &e)),
        }
    }

    /// Creates a key file with one fresh key; if another process won the race, loads its file.
    fn create_file(path: &Path) -> Result<(KeyRing, bool), VaultError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| io_error("cannot create directory for", path, &e))?;
        }
        let (id, key) = Self::generate_key()?;
        let contents = Zeroizing::new(format!(
            "# tokenwarden token-encryption keys: one id:base64key per line.\n\
             # The last key (or the one named by an active=<id> line) encrypts new tokens.\n\
             # Keep this file secret and backed up: without it stored tokens cannot be read.\n\
             {id}:{}\n",
            key.expose_secret()
        ));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = match options.open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let text =
                    std::fs::read_to_string(path).map_err(|e| io_error("cannot read", path, &e))?;
                return Ok((Self::parse_key_file(&text)?, false));
            }
            Err(e) => return Err(io_error("cannot create", path, &e)),
        };
        let written = file
            .write_all(contents.as_bytes())
            .and_then(|()| file.sync_all());
        if let Err(e) = written {
            drop(file);
            // Do not leave a truncated key file behind; the next start creates a fresh one.
            let _ = std::fs::remove_file(path);
            return Err(io_error("cannot write", path, &e));
        }
        tracing::info!(path = %path.display(), key_id = %id, "created token-encryption key file");
        Ok((Self::parse_key_file(&contents)?, true))
    }

    /// Generates a fresh key for rotation: id `k<unix-timestamp>-<random hex>` and 32 random bytes as
    /// standard base64.
    pub fn generate_key() -> Result<(String, SecretString), VaultError> {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        SystemRandom::new()
            .fill(bytes.as_mut())
            .map_err(|_| VaultError::Random)?;
        // `k<unix seconds>-<random>`: the age is readable, and two keys made in the same
        // second still differ.
        let mut suffix = [0u8; 3];
        SystemRandom::new()
            .fill(&mut suffix)
            .map_err(|_| VaultError::Random)?;
        let id = format!(
            "k{}-{}",
            chrono::Utc::now().timestamp(),
            hex::encode(suffix)
        );
        Ok((id, SecretString::from(STANDARD.encode(bytes.as_ref()))))
    }

    /// Id of the key used for new encryptions.
    pub fn active_key_id(&self) -> &str {
        &self.active
    }

    /// All key ids, sorted.
    pub fn key_ids(&self) -> Vec<&str> {
        self.keys.keys().map(String::as_str).collect()
    }

    /// Whether the ring holds key `id`.
    pub fn contains(&self, id: &str) -> bool {
        self.keys.contains_key(id)
    }

    /// Adds a key (standard base64 of 32 bytes) without activating it.
    pub(crate) fn add_key(&mut self, id: &str, key_b64: &SecretString) -> Result<(), VaultError> {
        check_key_id(id)?;
        if self.keys.contains_key(id) {
            return Err(VaultError::InvalidConfig(format!(
                "duplicate key id {id:?}"
            )));
        }
        let (key, mac) = decode_key(id, key_b64.expose_secret())?;
        self.keys.insert(
            id.to_owned(),
            Arc::new(KeyEntry {
                key,
                mac,
                encryptions: AtomicU64::new(0),
            }),
        );
        Ok(())
    }

    /// Makes an existing key the active one.
    pub(crate) fn set_active(&mut self, id: &str) -> Result<(), VaultError> {
        if !self.keys.contains_key(id) {
            return Err(VaultError::UnknownKey(truncate_for_message(id)));
        }
        id.clone_into(&mut self.active);
        Ok(())
    }

    /// Returns this ring with a new key added and made active (key rotation).
    #[cfg(test)]
    fn with_new_active(mut self, id: &str, key_b64: &SecretString) -> Result<KeyRing, VaultError> {
        self.add_key(id, key_b64)?;
        self.set_active(id)?;
        Ok(self)
    }

    /// Removes a retired key. The active key cannot be removed.
    #[cfg(test)]
    fn remove_key(&mut self, id: &str) -> Result<(), VaultError> {
        if id == self.active {
            return Err(VaultError::InvalidConfig(format!(
                "cannot remove the active key {id:?}"
            )));
        }
        self.keys
            .remove(id)
            .map(|_| ())
            .ok_or_else(|| VaultError::UnknownKey(truncate_for_message(id)))
    }

    /// Encryptions performed with key `id` since this process loaded it.
    #[cfg(test)]
    fn encryption_count(&self, id: &str) -> Option<u64> {
        self.keys
            .get(id)
            .map(|e| e.encryptions.load(Ordering::Relaxed))
    }

    /// In-memory encryption counts of all keys, by id.
    #[cfg(test)]
    fn encryption_counts(&self) -> Vec<(String, u64)> {
        self.keys
            .iter()
            .map(|(id, e)| (id.clone(), e.encryptions.load(Ordering::Relaxed)))
            .collect()
    }

    /// Encrypts a token with the active key, bound to `aad`.
    pub fn encrypt(&self, plaintext: &SecretString, aad: &Aad) -> Result<String, VaultError> {
        self.encrypt_with(
            &self.active,
            plaintext.expose_secret().as_bytes(),
            &aad.to_bytes(),
        )
    }

    /// Decrypts a token ciphertext produced by [`KeyRing::encrypt`] for the same `aad`.
    pub fn decrypt(&self, ciphertext: &str, aad: &Aad) -> Result<SecretString, VaultError> {
        let plaintext = self.decrypt_raw(ciphertext, &aad.to_bytes())?;
        let text = String::from_utf8(plaintext.to_vec()).map_err(|_| VaultError::Format)?;
        Ok(SecretString::from(text))
    }

    /// The key id named by a ciphertext, if it is in the `tw1` format.
    pub fn key_id_of(ciphertext: &str) -> Option<&str> {
        let mut parts = ciphertext.splitn(3, '.');
        let (Some(CIPHERTEXT_PREFIX), Some(id), Some(_)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        valid_key_id(id).then_some(id)
    }

    /// Whether the ciphertext was encrypted with a key other than the active one.
    pub(crate) fn needs_rewrap(&self, ciphertext: &str) -> bool {
        Self::key_id_of(ciphertext) != Some(self.active.as_str())
    }

    /// Decrypts with the key the ciphertext names and re-encrypts with the active key (key
    /// rotation). A ciphertext already under the active key is verified and returned unchanged.
    pub fn rewrap(&self, ciphertext: &str, aad: &Aad) -> Result<String, VaultError> {
        let aad_bytes = aad.to_bytes();
        let plaintext = self.decrypt_raw(ciphertext, &aad_bytes)?;
        if !self.needs_rewrap(ciphertext) {
            return Ok(ciphertext.to_owned());
        }
        self.encrypt_with(&self.active, &plaintext, &aad_bytes)
    }

    /// Signs `message` for `purpose` (a fixed label such as `reconnect-link`, so a tag made
    /// for one purpose never verifies for another) with the MAC key of the active key.
    /// Returns the key id (to name in the signed text) and the HMAC-SHA256 tag.
    pub(crate) fn mac_sign(
        &self,
        purpose: &str,
        message: &[u8],
    ) -> Result<(String, Vec<u8>), VaultError> {
        let entry = self
            .keys
            .get(&self.active)
            .ok_or_else(|| VaultError::UnknownKey(self.active.clone()))?;
        let tag = hmac::sign(&entry.mac, &mac_input(purpose, message));
        Ok((self.active.clone(), tag.as_ref().to_vec()))
    }

    /// Checks a tag made by [`KeyRing::mac_sign`] with key `id` (in constant time). Fails
    /// when the ring no longer holds that key.
    pub(crate) fn mac_verify(
        &self,
        id: &str,
        purpose: &str,
        message: &[u8],
        tag: &[u8],
    ) -> Result<(), VaultError> {
        let entry = self
            .keys
            .get(id)
            .ok_or_else(|| VaultError::UnknownKey(truncate_for_message(id)))?;
        hmac::verify(&entry.mac, &mac_input(purpose, message), tag).map_err(|_| VaultError::Decrypt)
    }

    /// Encrypts the fixed canary value with the active key, for storing at setup and checking
    /// later with [`KeyRing::verify_canary`].
    pub(crate) fn encrypt_canary(&self) -> Result<String, VaultError> {
        self.encrypt_with(&self.active, CANARY_PLAINTEXT, CANARY_AAD)
    }

    /// Checks that a stored canary still decrypts to the canary value ("token encryption
    /// verification" of readiness checks).
    pub(crate) fn verify_canary(&self, stored: &str) -> Result<(), VaultError> {
        let plaintext = self.decrypt_raw(stored, CANARY_AAD)?;
        if plaintext.as_slice() == CANARY_PLAINTEXT {
            Ok(())
        } else {
            Err(VaultError::Decrypt)
        }
    }

    /// Encrypts and decrypts a random value with every key of the ring.
    #[cfg(test)]
    fn self_test(&self) -> Result<(), VaultError> {
        for id in self.keys.keys() {
            let mut value = Zeroizing::new([0u8; 32]);
            self.rng
                .fill(value.as_mut())
                .map_err(|_| VaultError::Random)?;
            let ciphertext = self.encrypt_with(id, value.as_ref(), SELF_TEST_AAD)?;
            let back = self.decrypt_raw(&ciphertext, SELF_TEST_AAD)?;
            if back.as_slice() != value.as_ref() {
                return Err(VaultError::Decrypt);
            }
        }
        Ok(())
    }

    /// Encrypts `plaintext` with key `id` into the `tw1` text format.
    fn encrypt_with(&self, id: &str, plaintext: &[u8], aad: &[u8]) -> Result<String, VaultError> {
        let entry = self
            .keys
            .get(id)
            .ok_or_else(|| VaultError::UnknownKey(id.to_owned()))?;
        let previous = entry.encryptions.fetch_add(1, Ordering::Relaxed);
        if previous >= MAX_ENCRYPTIONS_PER_KEY {
            return Err(VaultError::KeyExhausted(id.to_owned()));
        }
        let count = previous + 1;
        if count == ENCRYPTION_WARN_THRESHOLD
            || (count > ENCRYPTION_WARN_THRESHOLD && count % (1 << 24) == 0)
        {
            tracing::warn!(
                key_id = %id,
                encryptions = count,
                limit = MAX_ENCRYPTIONS_PER_KEY,
                "token-encryption key is approaching the random-nonce limit; rotate keys"
            );
        }
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| VaultError::Random)?;
        let mut buf = Zeroizing::new(Vec::with_capacity(NONCE_LEN + plaintext.len() + TAG_LEN));
        buf.extend_from_slice(&nonce);
        buf.extend_from_slice(plaintext);
        let tag = entry
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(aad),
                &mut buf[NONCE_LEN..],
            )
            .map_err(|_| VaultError::Encrypt)?;
        buf.extend_from_slice(tag.as_ref());
        Ok(format!(
            "{CIPHERTEXT_PREFIX}.{id}.{}",
            URL_SAFE_NO_PAD.encode(buf.as_slice())
        ))
    }

    /// Parses, looks up the key and opens a `tw1` ciphertext.
    fn decrypt_raw(&self, ciphertext: &str, aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        let mut parts = ciphertext.trim().splitn(3, '.');
        let (Some(CIPHERTEXT_PREFIX), Some(id), Some(payload)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(VaultError::Format);
        };
        if !valid_key_id(id) {
            return Err(VaultError::Format);
        }
        let entry = self
            .keys
            .get(id)
            .ok_or_else(|| VaultError::UnknownKey(id.to_owned()))?;
        let mut bytes = Zeroizing::new(
            URL_SAFE_NO_PAD
                .decode(payload)
                .map_err(|_| VaultError::Format)?,
        );
        if bytes.len() < NONCE_LEN + TAG_LEN {
            return Err(VaultError::Format);
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&bytes[..NONCE_LEN]);
        let plaintext = entry
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(aad),
                &mut bytes[NONCE_LEN..],
            )
            .map_err(|_| VaultError::Decrypt)?;
        Ok(Zeroizing::new(plaintext.to_vec()))
    }
}

/// An I/O error message naming the path and the error kind only.
fn io_error(what: &str, path: &Path, e: &std::io::Error) -> VaultError {
    VaultError::Io(format!("{what} {}: {e}", path.display()))
}

/// Warns when the key file is readable by group or others.
fn warn_if_permissive(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    mode = format!("{mode:o}"),
                    "token-encryption key file is accessible by other users; chmod 600 it"
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_b64(byte: u8) -> String {
        STANDARD.encode([byte; KEY_LEN])
    }

    fn ring(spec: &[(&str, u8)]) -> KeyRing {
        let cfg = spec
            .iter()
            .map(|(id, b)| format!("{id}:{}", key_b64(*b)))
            .collect::<Vec<_>>()
            .join(",");
        KeyRing::from_config(&cfg, None).unwrap()
    }

    fn aad() -> Aad {
        Aad::new(1, 42, TokenKind::Access)
    }

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    fn temp_path(name: &str) -> std::path::PathBuf {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        std::env::temp_dir()
            .join(format!("tw-vault-{}-{nanos}", std::process::id()))
            .join(name)
    }

    #[test]
    fn roundtrip_and_format() {
        let r = ring(&[("a", 1), ("b", 2)]);
        assert_eq!(r.active_key_id(), "b");
        let ct = r.encrypt(&secret("tok-123"), &aad()).unwrap();
        assert!(ct.starts_with("tw1.b."), "{ct}");
        assert_eq!(KeyRing::key_id_of(&ct), Some("b"));
        assert!(!ct.contains("tok-123"));
        assert_eq!(r.decrypt(&ct, &aad()).unwrap().expose_secret(), "tok-123");
        // Fresh nonce each time.
        let ct2 = r.encrypt(&secret("tok-123"), &aad()).unwrap();
        assert_ne!(ct, ct2);
        assert_eq!(r.encryption_count("b"), Some(2));
        assert_eq!(r.encryption_count("a"), Some(0));
        // Empty plaintext works too.
        let empty = r.encrypt(&secret(""), &aad()).unwrap();
        assert_eq!(r.decrypt(&empty, &aad()).unwrap().expose_secret(), "");
    }

    #[test]
    fn mac_tags_are_bound_to_key_and_purpose() {
        let r = ring(&[("a", 1), ("b", 2)]);
        let (id, tag) = r.mac_sign("reconnect-link", b"payload").unwrap();
        assert_eq!(id, "b");
        assert_eq!(tag.len(), 32);
        r.mac_verify("b", "reconnect-link", b"payload", &tag)
            .unwrap();
        assert!(
            r.mac_verify("b", "reconnect-link", b"payloaD", &tag)
                .is_err()
        );
        assert!(r.mac_verify("b", "other", b"payload", &tag).is_err());
        assert!(
            r.mac_verify("a", "reconnect-link", b"payload", &tag)
                .is_err()
        );
        assert!(
            r.mac_verify("gone", "reconnect-link", b"payload", &tag)
                .is_err()
        );
        // The same key bytes give the same MAC key; other bytes do not.
        let same = ring(&[("b", 2)]);
        same.mac_verify("b", "reconnect-link", b"payload", &tag)
            .unwrap();
        let other = ring(&[("b", 3)]);
        assert!(
            other
                .mac_verify("b", "reconnect-link", b"payload", &tag)
                .is_err()
        );
        // After a rotation the old key still verifies what it signed.
        let (new_id, new_key) = KeyRing::generate_key().unwrap();
        let rotated = r.with_new_active(&new_id, &new_key).unwrap();
        rotated
            .mac_verify("b", "reconnect-link", b"payload", &tag)
            .unwrap();
        assert_eq!(rotated.mac_sign("x", b"y").unwrap().0, new_id);
    }

    #[test]
    fn aad_binds_row_and_kind() {
        let r = ring(&[("a", 1)]);
        let ct = r.encrypt(&secret("tok"), &aad()).unwrap();
        for other in [
            Aad::new(2, 42, TokenKind::Access),
            Aad::new(1, 43, TokenKind::Access),
            Aad::new(1, 42, TokenKind::Refresh),
        ] {
            assert!(matches!(r.decrypt(&ct, &other), Err(VaultError::Decrypt)));
        }
        assert_eq!(
            Aad::new(3, 4, TokenKind::Refresh).to_bytes(),
            b"tokenwarden/v1/tenant=3/account=4/kind=refresh"
        );
    }

    #[test]
    fn tamper_and_format_errors() {
        let r = ring(&[("a", 1)]);
        let ct = r.encrypt(&secret("tok"), &aad()).unwrap();
        let payload = ct.rsplit('.').next().unwrap();
        let mut bytes = URL_SAFE_NO_PAD.decode(payload).unwrap();
        for i in [0, NONCE_LEN, bytes.len() - 1] {
            bytes[i] ^= 1;
            let bad = format!("tw1.a.{}", URL_SAFE_NO_PAD.encode(&bytes));
            assert!(matches!(r.decrypt(&bad, &aad()), Err(VaultError::Decrypt)));
            bytes[i] ^= 1;
        }
        for bad in [
            "",
            "tw1",
            "tw1.a",
            "tw2.a.AAAA",
            "tw1.a.!!!",
            "tw1.a.AAAA",
            "tw1.a b.AAAA",
        ] {
            assert!(
                matches!(r.decrypt(bad, &aad()), Err(VaultError::Format)),
                "{bad}"
            );
        }
        assert_eq!(KeyRing::key_id_of("nope"), None);
    }

    #[test]
    fn unknown_key() {
        let r1 = ring(&[("a", 1)]);
        let r2 = ring(&[("b", 1)]);
        let ct = r1.encrypt(&secret("tok"), &aad()).unwrap();
        match r2.decrypt(&ct, &aad()) {
            Err(VaultError::UnknownKey(id)) => assert_eq!(id, "a"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn rotation_rewrap() {
        let old = ring(&[("old", 1)]);
        let ct = old.encrypt(&secret("refresh-tok"), &aad()).unwrap();
        let (new_id, new_key) = KeyRing::generate_key().unwrap();
        let rotated = old.clone().with_new_active(&new_id, &new_key).unwrap();
        assert_eq!(rotated.active_key_id(), new_id);
        assert!(rotated.needs_rewrap(&ct));
        let rewrapped = rotated.rewrap(&ct, &aad()).unwrap();
        assert_eq!(KeyRing::key_id_of(&rewrapped), Some(new_id.as_str()));
        assert!(!rotated.needs_rewrap(&rewrapped));
        assert_eq!(rotated.rewrap(&rewrapped, &aad()).unwrap(), rewrapped);

        let mut only_new = rotated.clone();
        only_new.remove_key("old").unwrap();
        assert!(!only_new.contains("old"));
        assert_eq!(
            only_new
                .decrypt(&rewrapped, &aad())
                .unwrap()
                .expose_secret(),
            "refresh-tok"
        );
        assert!(matches!(
            only_new.decrypt(&ct, &aad()),
            Err(VaultError::UnknownKey(_))
        ));
        assert!(only_new.clone().remove_key(&new_id).is_err());
        // Rewrap keeps the AAD binding.
        assert!(matches!(
            rotated.rewrap(&ct, &Aad::new(9, 9, TokenKind::Access)),
            Err(VaultError::Decrypt)
        ));
    }

    #[test]
    fn config_parsing_errors() {
        let good = key_b64(7);
        let cases = [
            (String::new(), None),
            ("a".to_owned(), None),
            ("a:not base64!".to_owned(), None),
            (format!("a:{}", STANDARD.encode([1u8; 16])), None),
            (format!("a:{good},a:{good}"), None),
            (format!("a:{good}"), Some("b")),
            (format!("bad.id:{good}"), None),
        ];
        for (cfg, active) in cases {
            let err = KeyRing::from_config(&cfg, active).unwrap_err();
            assert!(
                matches!(err, VaultError::InvalidConfig(_)),
                "{cfg}: {err:?}"
            );
            assert!(!err.to_string().contains(&good), "key leaked: {err}");
        }
        let r =
            KeyRing::from_config(&format!(" a:{good} , b:{} ,", key_b64(8)), Some("a")).unwrap();
        assert_eq!(r.active_key_id(), "a");
        assert_eq!(r.key_ids(), vec!["a", "b"]);
        // Unpadded base64 is accepted as well.
        let unpadded = good.trim_end_matches('=');
        assert!(KeyRing::from_config(&format!("c:{unpadded}"), None).is_ok());
    }

    #[test]
    fn key_file_created_0600_and_reloaded() {
        let path = temp_path("keys/tokenwarden.keys");
        let (r1, created) = KeyRing::load_or_create_file(&path).unwrap();
        assert!(created);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let ct = r1.encrypt(&secret("tok"), &aad()).unwrap();
        let (r2, created) = KeyRing::load_or_create_file(&path).unwrap();
        assert!(!created);
        assert_eq!(r2.active_key_id(), r1.active_key_id());
        assert_eq!(r2.decrypt(&ct, &aad()).unwrap().expose_secret(), "tok");

        // active= line selects a non-last key.
        let text = format!(
            "# comment\n\na:{}\nactive = a\nb:{}\n",
            key_b64(1),
            key_b64(2)
        );
        let r3 = KeyRing::parse_key_file(&text).unwrap();
        assert_eq!(r3.active_key_id(), "a");
        let _ = std::fs::remove_dir_all(path.parent().unwrap().parent().unwrap());
    }

    #[test]
    fn canary_and_self_test() {
        let r = ring(&[("a", 1), ("b", 2)]);
        let canary = r.encrypt_canary().unwrap();
        r.verify_canary(&canary).unwrap();
        let other = ring(&[("b", 3)]);
        assert!(matches!(
            other.verify_canary(&canary),
            Err(VaultError::Decrypt)
        ));
        // A token ciphertext is not a valid canary.
        let tok = r.encrypt(&secret("x"), &aad()).unwrap();
        assert!(r.verify_canary(&tok).is_err());
        r.self_test().unwrap();
        assert_eq!(r.encryption_count("a"), Some(1));
        assert!(r.encryption_counts().iter().all(|(_, n)| *n >= 1));
    }

    #[test]
    fn debug_is_redacted() {
        let key = key_b64(9);
        let r = KeyRing::from_config(&format!("main:{key}"), None).unwrap();
        let dbg = format!("{r:?}");
        assert!(dbg.contains("main"));
        assert!(!dbg.contains(&key));
        let (_, generated) = KeyRing::generate_key().unwrap();
        assert!(!format!("{generated:?}").contains(generated.expose_secret()));
    }
}
