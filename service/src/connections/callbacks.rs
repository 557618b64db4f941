//! Inbound platform callbacks: TikTok's webhook (`authorization.removed`) and Meta's
//! Deauthorize and Data Deletion Request callbacks for Instagram.
//!
//! Each one is verified with the app secret before anything is read or changed:
//! - TikTok signs `"<t>.<raw body>"` with HMAC-SHA256 keyed with the client secret and sends
//!   `TikTok-Signature: t=<unix seconds>,s=<hex>` (developers.tiktok.com/doc/webhooks-verification);
//!   timestamps further than [`TIKTOK_TOLERANCE_S`] from now are refused (replays).
//! - Meta sends a form field `signed_request` = `base64url(signature).base64url(payload)`, the
//!   signature being HMAC-SHA256 of the encoded payload keyed with the app secret
//!   (developers.facebook.com/docs/development/create-an-app/app-dashboard/data-deletion-callback).
//!
//! A removed authorization makes every matching account RECONNECT_REQUIRED at once, with its
//! tokens deleted, an event, a notification and an audit entry. Callbacks are delivered at
//! least once: a repeated callback finds the account already in that state and changes
//! nothing. The callbacks are not tenant scoped: the platform speaks for its user, whichever
//! tenants connected that user.

use chrono::Utc;
use entity::{oauth_token, social_account};
use ring::hmac;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set,
    TransactionSession, TransactionTrait,
};
use serde_json::{Value, json};

use crate::{
    connections::accounts::TARGET,
    domain::{AccountStatus, Platform},
    engine::Engine,
    error::ServiceError,
    events::{self, EventKind, NewEvent},
    identity::audit::{self, AuditAction, Target},
    identity::caller::Actor,
    providers::{ErrorClass, ProviderError},
    tokens::failures,
};

/// How far a TikTok webhook timestamp may be from now, in seconds.
pub(crate) const TIKTOK_TOLERANCE_S: i64 = 300;
/// Largest callback body read (TikTok events and signed requests are small).
pub(crate) const MAX_CALLBACK_BYTES: usize = 64 * 1024;

/// Why a callback was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallbackError {
    /// Missing or wrong signature, or a timestamp outside the tolerance: 401, nothing changes.
    #[error("invalid signature: {0}")]
    BadSignature(&'static str),
    /// Signed correctly but not understood: 400.
    #[error("invalid callback: {0}")]
    BadPayload(&'static str),
    /// The platform has no credentials here: 404.
    #[error("{0} is not configured on this server")]
    NotConfigured(&'static str),
    /// Storage failed: 500, so the platform retries.
    #[error("the callback could not be processed: {0}")]
    Internal(String),
}

impl From<ServiceError> for CallbackError {
    fn from(err: ServiceError) -> Self {
        CallbackError::Internal(err.to_string())
    }
}

impl From<sea_orm::DbErr> for CallbackError {
    fn from(err: sea_orm::DbErr) -> Self {
        CallbackError::Internal(err.to_string())
    }
}

/// HMAC-SHA256 of `"<t>.<body>"`, hex: the `s` of a `TikTok-Signature` header.
pub fn tiktok_signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    hex::encode(ctx.sign().as_ref())
}

/// Verifies `TikTok-Signature: t=...,s=...` over `body`; returns the timestamp.
fn verify_tiktok_signature(
    header: Option<&str>,
    body: &[u8],
    secret: &[u8],
    now: i64,
) -> Result<i64, CallbackError> {
    let header = header.ok_or(CallbackError::BadSignature("missing TikTok-Signature"))?;
    let mut t = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.trim().parse::<i64>().ok(),
            Some(("s", v)) => signatures.push(v.trim()),
            _ => {}
        }
    }
    let t = t.ok_or(CallbackError::BadSignature("no timestamp"))?;
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut signed = Vec::with_capacity(body.len() + 12);
    signed.extend_from_slice(t.to_string().as_bytes());
    signed.push(b'.');
    signed.extend_from_slice(body);
    let valid = signatures
        .iter()
        .any(|s| hex::decode(s).is_ok_and(|raw| hmac::verify(&key, &signed, &raw).is_ok()));
    if !valid {
        return Err(CallbackError::BadSignature("signature mismatch"));
    }
    // Checked after the signature, so an attacker learns nothing from the answer.
    if (now - t).abs() > TIKTOK_TOLERANCE_S {
        return Err(CallbackError::BadSignature(
            "timestamp outside the tolerance",
        ));
    }
    Ok(t)
}

fn b64url_decode(part: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let trimmed = part.trim().trim_end_matches('=');
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(trimmed)
        .ok()
}

/// `signed_request` for `payload` (what Meta sends; used by tests and the sandbox).
pub fn sign_request(secret: &[u8], payload: &Value) -> String {
    use base64::Engine as _;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let encoded = engine.encode(payload.to_string());
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let sig = hmac::sign(&key, encoded.as_bytes());
    format!("{}.{encoded}", engine.encode(sig.as_ref()))
}

/// A verified Meta `signed_request`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRequest {
    /// The app-scoped user id.
    pub user_id: String,
    /// `issued_at`, unix seconds, when present.
    pub issued_at: Option<i64>,
}

/// Verifies and decodes a Meta `signed_request`.
fn parse_signed_request(raw: &str, secret: &[u8]) -> Result<SignedRequest, CallbackError> {
    let (sig, payload) = raw
        .trim()
        .split_once('.')
        .ok_or(CallbackError::BadSignature("malformed signed_request"))?;
    let sig = b64url_decode(sig).ok_or(CallbackError::BadSignature("malformed signature"))?;
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    hmac::verify(&key, payload.trim().as_bytes(), &sig)
        .map_err(|_| CallbackError::BadSignature("signature mismatch"))?;
    let json =
        b64url_decode(payload).ok_or(CallbackError::BadPayload("payload is not base64url"))?;
    let value: Value = serde_json::from_slice(&json)
        .map_err(|_| CallbackError::BadPayload("payload is not JSON"))?;
    let algorithm = value.get("algorithm").and_then(Value::as_str).unwrap_or("");
    if !algorithm.eq_ignore_ascii_case("HMAC-SHA256") {
        return Err(CallbackError::BadSignature("unsupported algorithm"));
    }
    let user_id = match value.get("user_id") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err(CallbackError::BadPayload("no user_id")),
    };
    if user_id.len() > 64 {
        return Err(CallbackError::BadPayload("user_id too long"));
    }
    Ok(SignedRequest {
        user_id,
        issued_at: value.get("issued_at").and_then(Value::as_i64),
    })
}

/// The `content.reason` codes of TikTok's `authorization.removed`
/// (developers.tiktok.com/doc/webhooks-events), as stable reasons.
fn tiktok_removal_reason(code: i64) -> &'static str {
    match code {
        1 => "user_disconnected",
        2 => "account_deleted",
        3 => "age_changed",
        4 => "account_banned",
        5 => "developer_revoked",
        _ => "authorization_removed",
    }
}

/// What a callback did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackOutcome {
    /// Accounts changed now (empty for a repeated callback or an unknown user).
    pub changed: Vec<i64>,
    /// Accounts that matched, changed or not.
    pub matched: usize,
}

fn secret_of(engine: &Engine, platform: Platform) -> Result<Vec<u8>, CallbackError> {
    engine
        .providers
        .client_secret(platform)
        .map(|s| secrecy::ExposeSecret::expose_secret(s).as_bytes().to_vec())
        .ok_or(CallbackError::NotConfigured(platform.display_name()))
}

/// `POST /providers/tiktok/webhook`: verifies the signature, then handles
/// `authorization.removed`; other events are acknowledged and ignored.
pub async fn tiktok_webhook<D>(
    db: &D,
    engine: &Engine,
    signature: Option<&str>,
    body: &[u8],
) -> Result<CallbackOutcome, CallbackError>
where
    D: ConnectionTrait + TransactionTrait,
{
    if body.len() > MAX_CALLBACK_BYTES {
        return Err(CallbackError::BadPayload("body too large"));
    }
    let secret = secret_of(engine, Platform::TikTok)?;
    verify_tiktok_signature(signature, body, &secret, Utc::now().timestamp())?;
    let event: Value =
        serde_json::from_slice(body).map_err(|_| CallbackError::BadPayload("body is not JSON"))?;
    let ours = engine.providers.client_id(Platform::TikTok);
    if event.get("client_key").and_then(Value::as_str) != ours {
        return Err(CallbackError::BadPayload("client_key is not this app's"));
    }
    if event.get("event").and_then(Value::as_str) != Some("authorization.removed") {
        return Ok(CallbackOutcome {
            changed: Vec::new(),
            matched: 0,
        });
    }
    let open_id = event
        .get("user_openid")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty() && s.len() <= 128)
        .ok_or(CallbackError::BadPayload("no user_openid"))?;
    // `content` is a JSON string: {"reason": <0-5>}.
    let reason_code = event
        .get("content")
        .and_then(|c| match c {
            Value::String(s) => serde_json::from_str::<Value>(s).ok(),
            other => Some(other.clone()),
        })
        .and_then(|c| c.get("reason").and_then(Value::as_i64))
        .unwrap_or(0);
    let reason = tiktok_removal_reason(reason_code);
    deauthorize(
        db,
        engine,
        Platform::TikTok,
        &[open_id.to_owned()],
        reason,
        json!({ "source": "tiktok_webhook", "event": "authorization.removed", "reasonCode": reason_code }),
    )
    .await
}

/// `POST /providers/instagram/deauthorize`: the user removed the app.
pub async fn instagram_deauthorize<D>(
    db: &D,
    engine: &Engine,
    signed_request: &str,
) -> Result<CallbackOutcome, CallbackError>
where
    D: ConnectionTrait + TransactionTrait,
{
    let secret = secret_of(engine, Platform::Instagram)?;
    let request = parse_signed_request(signed_request, &secret)?;
    deauthorize(
        db,
        engine,
        Platform::Instagram,
        &[request.user_id],
        "app_removed",
        json!({ "source": "meta_deauthorize", "issuedAt": request.issued_at }),
    )
    .await
}

/// What the data deletion callback answers: Meta shows `url` to the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletionReceipt {
    /// The app-scoped user id the request was for.
    pub user_id: String,
    /// Alphanumeric code that also authenticates the status page.
    pub confirmation_code: String,
    /// Accounts whose tokens and personal data were deleted now.
    pub purged: usize,
}

fn deletion_code(secret: &[u8], user_id: &str, at: i64) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let tag = hmac::sign(&key, format!("data-deletion:{user_id}:{at}").as_bytes());
    format!("{at:010x}{}", &hex::encode(tag.as_ref())[..24])
}

/// `POST /providers/instagram/data-deletion`: deauthorizes (tokens deleted, event,
/// notification) and purges the personal data of every account of the user, at once.
pub async fn instagram_data_deletion<D>(
    db: &D,
    engine: &Engine,
    signed_request: &str,
) -> Result<DeletionReceipt, CallbackError>
where
    D: ConnectionTrait + TransactionTrait,
{
    let secret = secret_of(engine, Platform::Instagram)?;
    let request = parse_signed_request(signed_request, &secret)?;
    deauthorize(
        db,
        engine,
        Platform::Instagram,
        std::slice::from_ref(&request.user_id),
        "data_deleted",
        json!({ "source": "meta_data_deletion", "issuedAt": request.issued_at }),
    )
    .await?;
    let now = Utc::now();
    let accounts = social_account::Entity::find()
        .filter(social_account::Column::Platform.eq(Platform::Instagram))
        .filter(social_account::Column::ProviderAccountId.eq(request.user_id.as_str()))
        .all(db)
        .await?;
    let purged = accounts.len();
    for account in accounts {
        let txn = crate::db::begin(db).await?;
        oauth_token::Entity::delete_many()
            .filter(oauth_token::Column::AccountId.eq(account.id))
            .exec(&txn)
            .await?;
        crate::connections::accounts::scrub_personal_data(&txn, &account).await?;
        let id = account.id;
        let tenant_id = account.tenant_id;
        let mut active: social_account::ActiveModel = account.into();
        active.username = Set(None);
        active.display_name = Set(None);
        active.avatar_url = Set(None);
        active.provider_account_id = Set(format!("purged-{id}"));
        active.purged_at = Set(Some(now));
        active.updated_at = Set(now);
        active.update(&txn).await?;
        audit::record(
            &txn,
            &Actor::system(Some(tenant_id), "instagram"),
            AuditAction::AccountDataDeleted,
            Some(Target::new(TARGET, id)),
            json!({ "platform": "instagram", "source": "meta_data_deletion" }),
        )
        .await?;
        txn.commit().await?;
    }
    Ok(DeletionReceipt {
        confirmation_code: deletion_code(&secret, &request.user_id, now.timestamp()),
        user_id: request.user_id,
        purged,
    })
}

/// The state of a data deletion request, for its status page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletionStatus {
    /// When the request was received.
    pub requested_at: chrono::DateTime<Utc>,
    /// Whether tokenwarden holds no tokens or personal data of the user.
    pub completed: bool,
}

/// The status of the deletion that answered `confirmation_code` for `user_id`; `None` when
/// the code is not one this server issued for that user.
pub async fn deletion_status(
    db: &impl ConnectionTrait,
    engine: &Engine,
    user_id: &str,
    confirmation_code: &str,
) -> Result<Option<DeletionStatus>, CallbackError> {
    let secret = secret_of(engine, Platform::Instagram)?;
    let Some(at) = confirmation_code
        .get(..10)
        .and_then(|h| i64::from_str_radix(h, 16).ok())
    else {
        return Ok(None);
    };
    let expected = deletion_code(&secret, user_id, at);
    let same = expected.len() == confirmation_code.len()
        && expected
            .bytes()
            .zip(confirmation_code.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if !same {
        return Ok(None);
    }
    let remaining = social_account::Entity::find()
        .filter(social_account::Column::Platform.eq(Platform::Instagram))
        .filter(social_account::Column::ProviderAccountId.eq(user_id))
        .one(db)
        .await?;
    Ok(Some(DeletionStatus {
        requested_at: chrono::DateTime::from_timestamp(at, 0).unwrap_or_else(Utc::now),
        completed: remaining.is_none(),
    }))
}

/// Marks every account of `platform` with one of `provider_ids` RECONNECT_REQUIRED with
/// `reason`, deleting its tokens, with an event, a notification and an audit entry each.
/// Accounts already RECONNECT_REQUIRED for this reason without tokens are left alone
/// (repeated callbacks); disconnected and deactivated accounts only lose leftover tokens.
pub async fn deauthorize<D>(
    db: &D,
    engine: &Engine,
    platform: Platform,
    provider_ids: &[String],
    reason: &'static str,
    details: Value,
) -> Result<CallbackOutcome, CallbackError>
where
    D: ConnectionTrait + TransactionTrait,
{
    let accounts = social_account::Entity::find()
        .filter(social_account::Column::Platform.eq(platform))
        .filter(social_account::Column::ProviderAccountId.is_in(provider_ids.iter().cloned()))
        .all(db)
        .await?;
    let matched = accounts.len();
    let mut changed = Vec::new();
    let error = ProviderError::new(
        ErrorClass::GrantDead,
        reason,
        format!(
            "{} reported that the authorization was removed",
            platform.display_name()
        ),
    )
    .with_reason(Some(reason));
    for account in accounts {
        // No refresh of this account may run while its tokens are deleted.
        let slot = engine.locks.slot(account.id);
        let _guard = slot.lock().await;
        let Some(account) = social_account::Entity::find_by_id(account.id)
            .one(db)
            .await?
        else {
            continue;
        };
        let status: AccountStatus = account.status;
        let txn = crate::db::begin(db).await?;
        let deleted = oauth_token::Entity::delete_many()
            .filter(oauth_token::Column::AccountId.eq(account.id))
            .exec(&txn)
            .await?
            .rows_affected;
        let already = status == AccountStatus::ReconnectRequired
            && account.status_reason.as_deref() == Some(reason);
        let inactive = matches!(
            status,
            AccountStatus::Disconnected | AccountStatus::Deactivated
        );
        if (already && deleted == 0) || inactive {
            txn.commit().await?;
            continue;
        }
        let view = failures::describe(&error, platform, account.username.as_deref());
        let previous = account.status;
        let mut active: social_account::ActiveModel = account.into();
        active.status = Set(AccountStatus::ReconnectRequired);
        active.status_reason = Set(Some(reason.to_owned()));
        active.updated_at = Set(Utc::now());
        let updated = active.update(&txn).await?;
        let mut details = details.clone();
        details["platform"] = json!(platform.as_str());
        details["reason"] = json!(reason);
        details["previousStatus"] = json!(previous);
        details["tokensDeleted"] = json!(deleted);
        audit::record(
            &txn,
            &Actor::system(Some(updated.tenant_id), platform.as_str()),
            AuditAction::AccountDeauthorized,
            Some(Target::new(TARGET, updated.id)),
            details,
        )
        .await?;
        let event = events::record(
            &txn,
            NewEvent {
                tenant_id: updated.tenant_id,
                account_id: updated.id,
                platform,
                kind: EventKind::ReconnectRequired,
                error: Some(&view),
            },
        )
        .await?;
        crate::events::notifications::open_incident(
            &txn,
            updated.tenant_id,
            updated.id,
            platform,
            EventKind::ReconnectRequired,
            &view,
        )
        .await?;
        txn.commit().await?;
        engine.events.publish(event).await;
        changed.push(updated.id);
    }
    Ok(CallbackOutcome { changed, matched })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known answer: HMAC-SHA256("secret", "1700000000.{\"a\":1}").
    #[test]
    fn tiktok_signature_known_answer() {
        let body = br#"{"a":1}"#;
        let sig = tiktok_signature(b"secret", 1_700_000_000, body);
        assert_eq!(
            sig,
            "49f24e537407743fa4a0242bb63b94b9a47ee99cbbe071ccd8a22550ae411686"
        );
        let header = format!("t=1700000000,s={sig}");
        assert_eq!(
            verify_tiktok_signature(Some(&header), body, b"secret", 1_700_000_100),
            Ok(1_700_000_000)
        );
        // Wrong secret, changed body, stale timestamp, missing header.
        for (header, body, secret, now) in [
            (header.as_str(), &body[..], &b"other"[..], 1_700_000_000),
            (
                header.as_str(),
                &br#"{"a":2}"#[..],
                &b"secret"[..],
                1_700_000_000,
            ),
            (header.as_str(), &body[..], &b"secret"[..], 1_700_000_301),
            ("t=1700000000", &body[..], &b"secret"[..], 1_700_000_000),
        ] {
            assert!(matches!(
                verify_tiktok_signature(Some(header), body, secret, now),
                Err(CallbackError::BadSignature(_))
            ));
        }
        assert!(verify_tiktok_signature(None, body, b"secret", 0).is_err());
    }

    /// Known answer: the signed_request of {"algorithm":"HMAC-SHA256","issued_at":1700000000,
    /// "user_id":"123"} with the secret "appsecret".
    #[test]
    fn signed_request_known_answer() {
        let payload =
            json!({"algorithm": "HMAC-SHA256", "issued_at": 1_700_000_000, "user_id": "123"});
        let signed = sign_request(b"appsecret", &payload);
        assert_eq!(
            signed,
            "O7i2tel-6hQs2GolWAjKC7NnzmFHRnJ7ubzQM79QaFI.eyJhbGdvcml0aG0iOiJITUFDLVNIQTI1NiIsImlzc3VlZF9hdCI6MTcwMDAwMDAwMCwidXNlcl9pZCI6IjEyMyJ9"
        );
        assert_eq!(
            parse_signed_request(&signed, b"appsecret"),
            Ok(SignedRequest {
                user_id: "123".into(),
                issued_at: Some(1_700_000_000)
            })
        );
        assert!(matches!(
            parse_signed_request(&signed, b"wrong"),
            Err(CallbackError::BadSignature(_))
        ));
        let (sig, _) = signed.split_once('.').unwrap_or_default();
        let forged = format!("{sig}.{}", {
            use base64::Engine as _;
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(r#"{"algorithm":"HMAC-SHA256","user_id":"999"}"#)
        });
        assert!(parse_signed_request(&forged, b"appsecret").is_err());
        assert!(parse_signed_request("garbage", b"appsecret").is_err());
        assert_eq!(tiktok_removal_reason(1), "user_disconnected");
        assert_eq!(tiktok_removal_reason(9), "authorization_removed");
    }

    #[test]
    fn deletion_codes_are_alphanumeric_and_bound_to_the_user() {
        let code = deletion_code(b"s", "123", 1_700_000_000);
        assert!(code.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(code, deletion_code(b"s", "124", 1_700_000_000));
    }
}
