//! Known-answer vectors for what tokenwarden signs or encrypts, computed independently of
//! this code (Python's `hmac`/`hashlib` and `cryptography`'s AESGCM), so a test fails if
//! the construction changes, not only if signing and verifying drift apart together.

use secrecy::{ExposeSecret, SecretString};
use service::{
    events::webhooks,
    tokens::vault::{Aad, KeyRing, TokenKind},
};

/// `Tokenwarden-Signature` for a fixed secret, timestamp and body:
/// `hmac.new(b"whsec_known_answer", b'1764547200.{"kind":"REFRESHED"}', sha256).hexdigest()`.
#[test]
fn webhook_signature_known_answer() {
    let secret = SecretString::from("whsec_known_answer".to_owned());
    let header = webhooks::signature(&secret, 1_764_547_200, r#"{"kind":"REFRESHED"}"#);
    assert_eq!(
        header,
        "t=1764547200,v1=2707107215fdbc15b182adddcc785469851b4a58c13b9a2d9d0ad69fb0b931f6"
    );
}

/// A `tw1` token ciphertext made outside tokenwarden (AES-256-GCM, key bytes 0..32, nonce
/// bytes 100..112, AAD `tokenwarden/v1/tenant=7/account=42/kind=refresh`) decrypts, and only
/// under its own AAD.
#[test]
fn token_ciphertext_known_answer() {
    let ring = KeyRing::from_config("kat2026:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", None)
        .expect("key ring");
    let stored = "tw1.kat2026.ZGVmZ2hpamtsbW5vOn2qSBKHOelQTz6GqRIPj2-2aWHuAoRIYgNuqSzMIXSbsA2Z-0g";
    assert_eq!(KeyRing::key_id_of(stored), Some("kat2026"));
    let plain = ring
        .decrypt(stored, &Aad::new(7, 42, TokenKind::Refresh))
        .expect("decrypts");
    assert_eq!(plain.expose_secret(), "rft.known-answer-token");
    // The AAD binds tenant, account and kind: any other one fails.
    for aad in [
        Aad::new(8, 42, TokenKind::Refresh),
        Aad::new(7, 43, TokenKind::Refresh),
        Aad::new(7, 42, TokenKind::Access),
    ] {
        assert!(ring.decrypt(stored, &aad).is_err());
    }
    // And what tokenwarden writes has the same shape: prefix, key id, 12-byte nonce + tag.
    let sealed = ring
        .encrypt(
            &SecretString::from("rft.known-answer-token".to_owned()),
            &Aad::new(7, 42, TokenKind::Refresh),
        )
        .expect("encrypts");
    assert!(sealed.starts_with("tw1.kat2026."), "{sealed}");
    assert_eq!(
        sealed.len(),
        stored.len(),
        "same length for the same plaintext"
    );
}
