//! Reconnect links: what `Notification.reconnectLink` hands an integrator to send to an
//! account's owner. Reading one writes nothing: the link is a signed, expiring URL,
//! `<public url>/oauth/reconnect/<token>`. Opening it ([`open`]) checks the signature, the
//! expiry and that the account still exists in that tenant and still needs a reconnect,
//! and only then starts the connection exactly as `startConnection` does (the one-time
//! state row and its CONNECTION_STARTED audit entry, with `"via": "reconnectLink"`).
//!
//! `token = base64url(payload JSON) "." base64url(HMAC-SHA256 tag)`. The payload names the
//! tenant, the account, the platform, the expiry (unix seconds), the key or dashboard user
//! that read the link (the connection is started on its behalf), `redirectAfter`, and the
//! id of the vault key whose derived MAC key signed it ([`KeyRing::mac_sign`]). So a link
//! is keyed by the deployment's own secret, survives a key rotation, and dies when its key
//! is removed from the ring. Links live [`LINK_LIFETIME`] (72 hours: long enough for an
//! email to be read; the state the opened link creates then has the usual 10 minutes).
//!
//! A refused link writes nothing either, and says why with a stable code
//! ([`LinkError::code`]).

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Duration, Utc};
use entity::{enums::Incident, notification, social_account};
use sea_orm::{ConnectionTrait, TransactionTrait};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{
    connections::{LaunchError, Launched, Starter, accounts, begin, check_redirect, launch},
    domain::{AccountStatus, Platform},
    engine::Engine,
    error::{ServiceError, ServiceResult},
    identity::caller::{Actor, Caller, Role},
    tokens::vault::KeyRing,
};

/// How long a reconnect link can be opened.
pub(crate) const LINK_LIFETIME: Duration = Duration::hours(72);
/// The MAC purpose label: a tag made for anything else never verifies as a link.
const PURPOSE: &str = "reconnect-link";
/// Longer tokens are refused before decoding.
const MAX_TOKEN_LEN: usize = 4096;
/// The payload format version.
const VERSION: u8 = 1;

/// A reconnect link to send to the account's owner.
#[derive(Clone, Debug)]
pub struct ReconnectLink {
    pub url: String,
    pub expires_at: DateTime<Utc>,
}

/// What a link carries (signed, not secret: it holds no credential).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Payload {
    v: u8,
    /// The vault key whose MAC key signed the link.
    kid: String,
    /// Tenant, account and platform.
    t: i64,
    a: i64,
    p: String,
    /// Expiry, unix seconds.
    e: i64,
    /// The API key (0 for none) or dashboard user that read the link.
    k: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    u: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    r: Option<String>,
}

/// Why a link was refused. Nothing is written for any of them.
#[derive(Debug)]
pub enum LinkError {
    /// Not a link this deployment signed, altered, signed with a key no longer in the
    /// ring, or naming an account that is not (or no longer) in its tenant.
    Invalid,
    /// Past its expiry.
    Expired,
    /// The account works again, or was disconnected or deactivated since.
    NotNeeded,
    /// The link is fine but the connection could not start (platform no longer
    /// configured, `redirectAfter` no longer allowed, database).
    Failed(Box<ServiceError>),
}

impl LinkError {
    /// The stable code shown on the error page.
    pub fn code(&self) -> &'static str {
        match self {
            LinkError::Invalid => "RECONNECT_LINK_INVALID",
            LinkError::Expired => "RECONNECT_LINK_EXPIRED",
            LinkError::NotNeeded => "RECONNECT_NOT_NEEDED",
            LinkError::Failed(_) => "RECONNECT_FAILED",
        }
    }

    /// What the person who opened the link reads.
    pub fn message(&self) -> &'static str {
        match self {
            LinkError::Invalid => {
                "This reconnect link is not valid. Ask for a new link from whoever sent it."
            }
            LinkError::Expired => "This reconnect link has expired. Ask for a new link.",
            LinkError::NotNeeded => {
                "This account does not need to be reconnected (it works again, or it was \
                 disconnected). Nothing was changed."
            }
            LinkError::Failed(_) => "The reconnection could not be started. Try again later.",
        }
    }
}

impl From<ServiceError> for LinkError {
    fn from(err: ServiceError) -> Self {
        LinkError::Failed(Box::new(err))
    }
}

/// Whether an account in `status` is one a reconnect link may reconnect.
fn needs_reconnect(account: &social_account::Model) -> bool {
    account.deactivated_at.is_none()
        && account.purged_at.is_none()
        && matches!(
            account.status,
            AccountStatus::ReconnectRequired | AccountStatus::Expired
        )
}

/// The reconnect link of a notification (INTEGRATOR), or `None` when the incident is not
/// one a reconnect fixes or is resolved. Pure: reads and writes nothing. `now` is the
/// issue time (tests pass an earlier one to get an expired link).
pub fn for_notification(
    engine: &Engine,
    caller: &Caller,
    notification: &notification::Model,
    redirect_after: Option<String>,
    now: DateTime<Utc>,
) -> ServiceResult<Option<ReconnectLink>> {
    if notification.incident == Incident::RefreshFailing || notification.resolved_at.is_some() {
        return Ok(None);
    }
    caller.require(Role::Integrator)?;
    if notification.tenant_id != caller.tenant_id {
        return Err(ServiceError::NotFound("notification"));
    }
    let platform: Platform = notification.platform;
    issue(
        engine,
        caller,
        notification.account_id,
        platform,
        redirect_after,
        now,
    )
    .map(Some)
}

/// Signs a reconnect link for `account_id` of the caller's tenant (INTEGRATOR), valid
/// [`LINK_LIFETIME`] from `now`. Checks what `startConnection` would check first (the
/// platform is configured, `redirectAfter` is allowed), so the link does not fail later
/// for a reason known now. Writes nothing.
pub fn issue(
    engine: &Engine,
    caller: &Caller,
    account_id: i64,
    platform: Platform,
    redirect_after: Option<String>,
    now: DateTime<Utc>,
) -> ServiceResult<ReconnectLink> {
    caller.require(Role::Integrator)?;
    super::interactive_provider(engine, platform)?;
    if let Some(target) = &redirect_after {
        check_redirect(&engine.settings.allowed_redirects, target)?;
    }
    let expires_at = now + LINK_LIFETIME;
    let token = sign(
        &engine.vault(),
        Payload {
            v: VERSION,
            kid: String::new(),
            t: caller.tenant_id,
            a: account_id,
            p: platform.as_str().to_owned(),
            e: expires_at.timestamp(),
            k: caller.api_key_id().unwrap_or(0),
            u: caller.user_id(),
            r: redirect_after,
        },
    )?;
    Ok(ReconnectLink {
        url: format!("{}/oauth/reconnect/{token}", engine.settings.public_url),
        expires_at,
    })
}

fn sign(vault: &KeyRing, mut payload: Payload) -> ServiceResult<String> {
    payload.kid = vault.active_key_id().to_owned();
    let body = serde_json::to_vec(&payload)
        .map_err(|e| ServiceError::Internal(format!("reconnect link payload: {e}")))?;
    let body = URL_SAFE_NO_PAD.encode(body);
    let (kid, tag) = vault
        .mac_sign(PURPOSE, body.as_bytes())
        .map_err(ServiceError::vault)?;
    debug_assert_eq!(kid, payload.kid);
    Ok(format!("{body}.{}", URL_SAFE_NO_PAD.encode(tag)))
}

/// Checks a token's form and signature (not its expiry).
fn verify(vault: &KeyRing, token: &str) -> Result<Payload, LinkError> {
    if token.is_empty() || token.len() > MAX_TOKEN_LEN {
        return Err(LinkError::Invalid);
    }
    let (body, tag) = token.split_once('.').ok_or(LinkError::Invalid)?;
    let tag = URL_SAFE_NO_PAD
        .decode(tag)
        .map_err(|_| LinkError::Invalid)?;
    let raw = URL_SAFE_NO_PAD
        .decode(body)
        .map_err(|_| LinkError::Invalid)?;
    // The key id is read before the tag is checked (it names the key to check with); the
    // rest of the payload is trusted only after.
    let payload: Payload = serde_json::from_slice(&raw).map_err(|_| LinkError::Invalid)?;
    vault
        .mac_verify(&payload.kid, PURPOSE, body.as_bytes(), &tag)
        .map_err(|_| LinkError::Invalid)?;
    if payload.v != VERSION {
        return Err(LinkError::Invalid);
    }
    Ok(payload)
}

/// Opens a reconnect link: verifies it at `now` and starts the connection for its account
/// (the state row and the CONNECTION_STARTED audit entry are written here, and only
/// here), bound to this browser at once, as if its launch URL had been opened. Returns the
/// launched connection: the caller sets its cookie and sends the browser to the platform.
pub async fn open<D>(
    db: &D,
    engine: &Engine,
    token: &str,
    client_ip: Option<String>,
    now: DateTime<Utc>,
) -> Result<Launched, LinkError>
where
    D: ConnectionTrait + TransactionTrait,
{
    let payload = verify(&engine.vault(), token)?;
    if payload.e <= now.timestamp() {
        return Err(LinkError::Expired);
    }
    let platform: Platform = payload.p.parse().map_err(|_| LinkError::Invalid)?;
    let account = accounts::find(db, payload.t, payload.a)
        .await?
        .ok_or(LinkError::Invalid)?;
    if account.platform != platform {
        return Err(LinkError::Invalid);
    }
    if !needs_reconnect(&account) {
        return Err(LinkError::NotNeeded);
    }
    let name = match payload.u {
        Some(user_id) => crate::identity::users::actor_name(db, user_id).await?,
        None => format!("api_key:{}", payload.k),
    };
    let starter = Starter {
        tenant_id: payload.t,
        api_key_id: payload.k,
        user_id: payload.u,
        actor: Actor {
            tenant_id: Some(payload.t),
            name,
            client_ip,
        },
    };
    let started = begin(
        db,
        engine,
        &starter,
        platform,
        payload.r,
        None,
        json!({ "via": "reconnectLink", "accountId": account.id }),
    )
    .await?;
    launch(db, engine, &started.launch_secret, |_| None)
        .await
        .map_err(|err| match err {
            LaunchError::Failed(cause) => LinkError::Failed(cause),
            other => LinkError::Failed(Box::new(ServiceError::Internal(format!(
                "a connection just started could not be launched: {other:?}"
            )))),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(byte: u8) -> KeyRing {
        use base64::engine::general_purpose::STANDARD;
        KeyRing::from_config(&format!("k1:{}", STANDARD.encode([byte; 32])), None).unwrap()
    }

    fn payload() -> Payload {
        Payload {
            v: VERSION,
            kid: String::new(),
            t: 1,
            a: 42,
            p: "tiktok".into(),
            e: 2_000_000_000,
            k: 7,
            u: None,
            r: Some("https://app.example.com/x".into()),
        }
    }

    #[test]
    fn links_verify_only_unaltered_and_with_the_same_key() {
        let vault = ring(1);
        let token = sign(&vault, payload()).unwrap();
        let back = verify(&vault, &token).unwrap();
        assert_eq!(back.a, 42);
        assert_eq!(back.kid, "k1");
        assert!(matches!(verify(&ring(2), &token), Err(LinkError::Invalid)));
        // Any other payload with the same tag is refused.
        let (_, tag) = token.split_once('.').unwrap();
        let forged = Payload {
            a: 43,
            kid: "k1".into(),
            ..payload()
        };
        let forged = format!(
            "{}.{tag}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap())
        );
        assert!(matches!(verify(&vault, &forged), Err(LinkError::Invalid)));
        for bad in ["", ".", "abc", "a.b", &"x".repeat(5000), &token[1..]] {
            assert!(
                matches!(verify(&vault, bad), Err(LinkError::Invalid)),
                "{bad}"
            );
        }
        // Every single-character change is caught.
        let bytes = token.as_bytes();
        for i in 0..bytes.len() {
            let mut changed = bytes.to_vec();
            changed[i] = if changed[i] == b'A' { b'B' } else { b'A' };
            if let Ok(text) = String::from_utf8(changed)
                && text != token
            {
                assert!(verify(&vault, &text).is_err(), "changed at {i}");
            }
        }
    }
}
